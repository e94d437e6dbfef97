// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {HarnessOwnable} from "./Common.sol";

/// @title Stand-in for the gen-2 InfoDesk (peer registry and protocol parameters).
/// @notice Set up with `initialize(owner)`, then `setPeer` for the six peer keys,
/// `setPeaqToken(0x…0809)`, `setLocalChainId(1)` (peaq's protocol chain id) by the harness.
/// Only the members the SDK/CLI read are implemented.
contract InfoDesk is HarnessOwnable {
    error InvalidAddress();
    error PeaqTokenAlreadySet();

    event PeerSet(bytes32 indexed key, address indexed addr);
    event PeerUnset(bytes32 indexed key, address indexed previous);
    event PeaqTokenSet(address indexed addr);
    event LocalChainIdSet(uint16 value);
    event TierPriceUsdSet(uint8 indexed tier, uint256 usdPrice);

    mapping(bytes32 => address) private _peers;
    address private _peaqToken;
    uint16 private _localChainId;
    mapping(uint8 => uint256) private _tierPriceUsd;

    function initialize(address initialOwner) external {
        _initOwner(initialOwner);
    }

    function peer(bytes32 key) external view returns (address) {
        return _peers[key];
    }

    function setPeer(bytes32 key, address addr) external onlyOwner {
        if (addr == address(0)) revert InvalidAddress();
        _peers[key] = addr;
        emit PeerSet(key, addr);
    }

    function unsetPeer(bytes32 key) external onlyOwner {
        address previous = _peers[key];
        delete _peers[key];
        emit PeerUnset(key, previous);
    }

    function peaqToken() external view returns (address) {
        return _peaqToken;
    }

    function setPeaqToken(address addr) external onlyOwner {
        if (addr == address(0)) revert InvalidAddress();
        if (_peaqToken != address(0)) revert PeaqTokenAlreadySet();
        _peaqToken = addr;
        emit PeaqTokenSet(addr);
    }

    function localChainId() external view returns (uint16) {
        return _localChainId;
    }

    function setLocalChainId(uint16 value) external onlyOwner {
        _localChainId = value;
        emit LocalChainIdSet(value);
    }

    function tierPriceUsd(uint8 tier) external view returns (uint256) {
        return _tierPriceUsd[tier];
    }

    function setTierPriceUsd(uint8 tier, uint256 usdPrice) external onlyOwner {
        _tierPriceUsd[tier] = usdPrice;
        emit TierPriceUsdSet(tier, usdPrice);
    }
}
