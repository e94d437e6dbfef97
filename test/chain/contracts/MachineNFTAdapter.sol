// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {HarnessOwnable} from "./Common.sol";

interface IERC721Pull {
    function ownerOf(uint256 tokenId) external view returns (address);
    function transferFrom(address from, address to, uint256 tokenId) external;
}

/// @title Stand-in for the gen-1 MachineNFTAdapter (LayerZero v2 ONFT adapter on peaq, SDK 0.11.2).
/// @notice Set up with `harnessInit(nft, admin)`; the LayerZero fee of a send is what
/// `harnessSetFee(native)` sets (per destination eid when `harnessSetPeer(eid, peer)` names a peer;
/// an eid without a peer: `NoPeer(eid)`). No endpoint, no message: `send` locks the token in the
/// adapter (`transferFrom` owner → adapter, so the owner must have approved the adapter) and emits
/// `ONFTSent(guid, dstEid, from, tokenId)`; the test plays the DVNs and mints the token on the
/// destination chain. Checks of `send`, in order: `NoPeer(dstEid)`, `InvalidReceiver()` for a zero
/// `to`, `LzTokenUnavailable()` for a non-zero lzTokenFee, `NotEnoughNative(msg.value)` unless
/// `msg.value == fee.nativeFee >= quote`, `OnlyNFTOwner(caller, owner)`, then the NFT's own
/// transfer checks. `quoteSend` returns `(fee, 0)`, plus 1 wei per byte of extra options.
contract MachineNFTAdapter is HarnessOwnable {
    struct SendParam {
        uint32 dstEid;
        bytes32 to;
        uint256 tokenId;
        bytes extraOptions;
        bytes composeMsg;
        bytes onftCmd;
    }

    struct MessagingFee {
        uint256 nativeFee;
        uint256 lzTokenFee;
    }

    struct MessagingReceipt {
        bytes32 guid;
        uint64 nonce;
        MessagingFee fee;
    }

    error NoPeer(uint32 eid);
    error InvalidReceiver();
    error LzTokenUnavailable();
    error NotEnoughNative(uint256 msgValue);
    error OnlyNFTOwner(address caller, address owner);

    event ONFTSent(bytes32 indexed guid, uint32 dstEid, address indexed fromAddress, uint256 tokenId);
    event PeerSet(uint32 eid, bytes32 peer);

    address private _nft;
    uint256 private _fee;
    uint64 private _nonce;
    mapping(uint32 => bytes32) private _peers;

    function harnessInit(address nft, address admin) external {
        _initOwner(admin);
        _nft = nft;
    }

    function harnessSetFee(uint256 nativeFee) external onlyOwner {
        _fee = nativeFee;
    }

    function harnessSetPeer(uint32 eid, bytes32 peer) external onlyOwner {
        _peers[eid] = peer;
        emit PeerSet(eid, peer);
    }

    function token() external view returns (address) {
        return _nft;
    }

    function peers(uint32 eid) external view returns (bytes32) {
        return _peers[eid];
    }

    function approvalRequired() external pure returns (bool) {
        return true;
    }

    function quoteSend(SendParam calldata p, bool payInLzToken) public view returns (MessagingFee memory) {
        if (_peers[p.dstEid] == bytes32(0)) revert NoPeer(p.dstEid);
        if (payInLzToken) revert LzTokenUnavailable();
        return MessagingFee(_fee + p.extraOptions.length, 0);
    }

    function send(SendParam calldata p, MessagingFee calldata fee, address refundAddress)
        external
        payable
        returns (MessagingReceipt memory receipt)
    {
        refundAddress;
        if (_peers[p.dstEid] == bytes32(0)) revert NoPeer(p.dstEid);
        if (p.to == bytes32(0)) revert InvalidReceiver();
        if (fee.lzTokenFee != 0) revert LzTokenUnavailable();
        uint256 quoted = quoteSend(p, false).nativeFee;
        if (msg.value != fee.nativeFee || msg.value < quoted) revert NotEnoughNative(msg.value);
        address caller = _sender();
        address o = IERC721Pull(_nft).ownerOf(p.tokenId);
        if (o != caller) revert OnlyNFTOwner(caller, o);
        IERC721Pull(_nft).transferFrom(caller, address(this), p.tokenId);
        uint64 n = ++_nonce;
        bytes32 guid = keccak256(abi.encode(n, p.dstEid, p.to, p.tokenId));
        receipt = MessagingReceipt(guid, n, fee);
        emit ONFTSent(guid, p.dstEid, caller, p.tokenId);
    }
}
