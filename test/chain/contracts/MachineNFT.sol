// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {HarnessOwnable, Decimal} from "./Common.sol";

interface IIdentityRegistryView {
    function getOwnerIfExists(uint256 machineId) external view returns (address owner_, bool exists_);
    function isAuthorizedOrOwner(address caller, uint256 machineId) external view returns (bool);
}

interface IIdentityStakingView {
    function isStaked(uint256 machineId) external view returns (bool);
}

/// @title Stand-in for the gen-1 MachineNFT (separate tokenId sequence from machine ids).
/// @notice Set up with `initialize(identityRegistry, identityStaking, owner)` (real ABI).
/// `mint(machineId, recipient)` checks, in order: `InvalidAddress()` for a zero recipient,
/// `MachineNotFound()`, `MachineNotBonded()` (IdentityStaking.isStaked), `AlreadyMinted()`,
/// `NotMachineOwner()` unless the caller is the machine's owner or operator,
/// `RecipientMustBeMachineOwner()` unless recipient == registry owner. Token ids count from 1.
/// Emits `Transfer(0, recipient, tokenId)` and `MachineMinted(tokenId, machineId, recipient)`.
/// ERC-721 `approve` / `getApproved` / `transferFrom` (what the ONFT adapter of a bridge needs:
/// the owner approves it, it pulls the token); no operators, no safe transfers (subset).
contract MachineNFT is HarnessOwnable {
    error AlreadyMinted();
    error MachineNotBonded();
    error MachineNotFound();
    error NotMachineOwner();
    error RecipientMustBeMachineOwner();
    error InvalidAddress();
    error ERC721NonexistentToken(uint256 tokenId);
    error ERC721InvalidOwner(address owner);
    error ERC721InvalidApprover(address approver);
    error ERC721IncorrectOwner(address sender, uint256 tokenId, address owner);
    error ERC721InsufficientApproval(address operator, uint256 tokenId);
    error ERC721InvalidReceiver(address receiver);

    event Transfer(address indexed from, address indexed to, uint256 indexed tokenId);
    event Approval(address indexed owner, address indexed approved, uint256 indexed tokenId);
    event MachineMinted(uint256 indexed tokenId, uint256 indexed machineId, address indexed recipient);
    event IdentityRegistrySet(address indexed registry);
    event IdentityStakingSet(address indexed staking);

    address private _registry;
    address private _staking;
    uint256 private _minted;
    mapping(uint256 => uint256) private _tokenIdOf;
    mapping(uint256 => uint256) private _machineIdOf;
    mapping(uint256 => address) private _owners;
    mapping(address => uint256) private _balances;
    mapping(uint256 => address) private _approvals;

    function initialize(address _identityRegistry, address _identityStaking, address _owner) external {
        if (_identityRegistry == address(0) || _identityStaking == address(0)) revert InvalidAddress();
        _initOwner(_owner);
        _registry = _identityRegistry;
        _staking = _identityStaking;
        emit IdentityRegistrySet(_identityRegistry);
        emit IdentityStakingSet(_identityStaking);
    }

    function mint(uint256 machineId, address recipient) external {
        if (recipient == address(0)) revert InvalidAddress();
        (address machineOwner, bool exists) = IIdentityRegistryView(_registry).getOwnerIfExists(machineId);
        if (!exists) revert MachineNotFound();
        if (!IIdentityStakingView(_staking).isStaked(machineId)) revert MachineNotBonded();
        if (_tokenIdOf[machineId] != 0) revert AlreadyMinted();
        if (!IIdentityRegistryView(_registry).isAuthorizedOrOwner(_sender(), machineId)) revert NotMachineOwner();
        if (recipient != machineOwner) revert RecipientMustBeMachineOwner();
        uint256 tokenId = ++_minted;
        _tokenIdOf[machineId] = tokenId;
        _machineIdOf[tokenId] = machineId;
        _owners[tokenId] = recipient;
        _balances[recipient] += 1;
        emit Transfer(address(0), recipient, tokenId);
        emit MachineMinted(tokenId, machineId, recipient);
    }

    function approve(address to, uint256 tokenId) external {
        address o = _owners[tokenId];
        if (o == address(0)) revert ERC721NonexistentToken(tokenId);
        address caller = _sender();
        if (caller != o) revert ERC721InvalidApprover(caller);
        _approvals[tokenId] = to;
        emit Approval(o, to, tokenId);
    }

    function getApproved(uint256 tokenId) external view returns (address) {
        if (_owners[tokenId] == address(0)) revert ERC721NonexistentToken(tokenId);
        return _approvals[tokenId];
    }

    function transferFrom(address from, address to, uint256 tokenId) external {
        address o = _owners[tokenId];
        if (o == address(0)) revert ERC721NonexistentToken(tokenId);
        if (o != from) revert ERC721IncorrectOwner(from, tokenId, o);
        if (to == address(0)) revert ERC721InvalidReceiver(address(0));
        address caller = _sender();
        if (caller != o && _approvals[tokenId] != caller) revert ERC721InsufficientApproval(caller, tokenId);
        delete _approvals[tokenId];
        _balances[from] -= 1;
        _balances[to] += 1;
        _owners[tokenId] = to;
        emit Transfer(from, to, tokenId);
    }

    function tokenIdOf(uint256 machineId) external view returns (uint256) {
        return _tokenIdOf[machineId];
    }

    function machineIdOf(uint256 tokenId) external view returns (uint256) {
        if (_owners[tokenId] == address(0)) revert ERC721NonexistentToken(tokenId);
        return _machineIdOf[tokenId];
    }

    function ownerOf(uint256 tokenId) external view returns (address) {
        address o = _owners[tokenId];
        if (o == address(0)) revert ERC721NonexistentToken(tokenId);
        return o;
    }

    function balanceOf(address owner_) external view returns (uint256) {
        if (owner_ == address(0)) revert ERC721InvalidOwner(address(0));
        return _balances[owner_];
    }

    function totalMinted() external view returns (uint256) {
        return _minted;
    }

    function name() external pure returns (string memory) {
        return "peaqOS Machine NFT";
    }

    function symbol() external pure returns (string memory) {
        return "PEAQNFT";
    }

    function tokenURI(uint256 tokenId) external view returns (string memory) {
        if (_owners[tokenId] == address(0)) revert ERC721NonexistentToken(tokenId);
        return Decimal.toString(tokenId);
    }

    function paused() external pure returns (bool) {
        return false;
    }
}
