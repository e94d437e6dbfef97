// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {HarnessOwnable, Decimal} from "./Common.sol";

interface IStakeSink {
    function stakeNative(uint256 machineId, address owner_) external payable;
}

/// @title Stand-in for the gen-1 IdentityRegistry (soulbound identity NFT, tokenId == machineId).
/// @notice Set up with `initialize(owner)`, `setIdentityStaking(staking)`,
/// `setDIDPrecompile(0x…0800)`; `minBond()` starts at 1 ether (1 PEAQ), `MIN_BOND_FLOOR()` is
/// 0.1 ether. Machine ids are sequential from 1.
/// * `register()` payable: caller becomes owner (and wallet) of a new machine.
/// * `registerFor(machineAddress)` payable: the MACHINE address becomes the registry-level
///   owner (`ownerOf`, `machineIdOfOwner(machineAddress)`), the caller becomes its operator
///   (`operatorOf`, `OperatorSet`). This follows the CLI (looks the machine up with
///   `machineIdOfOwner(machineAddress)`) and MachineNFT's `RecipientMustBeMachineOwner`; the
///   live contract's rule is UNVERIFIED (SPEC §3.2).
/// * both: `msg.value != minBond()` → `IncorrectBondAmount()`; a target that already has a
///   machine → `AlreadyRegistered()`; zero machine address → `InvalidMachineAddress()`. The bond
///   is forwarded to IdentityStaking (`Staked`); events `Transfer`, `Registered(id, "", owner)`.
/// * status: 1 Pending after registration, 4 Deactivated after `deactivateMachine` (owner only).
/// * `isAuthorizedOrOwner(caller, id)` = caller is the owner or the operator.
/// * transfers revert `IdentityNFTSoulbound()`.
contract IdentityRegistry is HarnessOwnable {
    error AlreadyRegistered();
    error IncorrectBondAmount();
    error InvalidMachineAddress();
    error MachineNotFound();
    error NotMachineOwner();
    error ContractNotConfigured();
    error IdentityNFTSoulbound();
    error InvalidAddress();
    error InvalidStatus();
    error BondBelowFloor();
    error ERC721NonexistentToken(uint256 tokenId);
    error ERC721InvalidOwner(address owner);

    event Transfer(address indexed from, address indexed to, uint256 indexed tokenId);
    event Registered(uint256 indexed machineId, string machineURI, address indexed owner);
    event OperatorSet(uint256 indexed machineId, address indexed operator);
    event MachineDeactivated(uint256 indexed machineId, address indexed owner);
    event MachineReactivated(uint256 indexed machineId, address indexed owner);
    event MinBondChanged(uint256 indexed newMinBond);
    event IdentityStakingSet(address indexed staking);

    uint8 private constant STATUS_PENDING = 1;
    uint8 private constant STATUS_DEACTIVATED = 4;

    struct Machine {
        address owner;
        address operator;
        address wallet;
        uint8 status;
    }

    mapping(uint256 => Machine) private _machines;
    mapping(address => uint256) private _machineIdOfOwner;
    mapping(address => uint256) private _balances;
    uint256 private _total;
    uint256 private _minBond;
    address private _staking;
    address private _didPrecompile;

    function initialize(address initialOwner) external {
        _initOwner(initialOwner);
        _minBond = 1 ether;
    }

    function setIdentityStaking(address _stakingAddr) external onlyOwner {
        if (_stakingAddr == address(0)) revert InvalidAddress();
        _staking = _stakingAddr;
        emit IdentityStakingSet(_stakingAddr);
    }

    function setDIDPrecompile(address _did) external onlyOwner {
        _didPrecompile = _did;
    }

    function setMinBond(uint256 _newMinBond) external onlyOwner {
        if (_newMinBond < MIN_BOND_FLOOR()) revert BondBelowFloor();
        _minBond = _newMinBond;
        emit MinBondChanged(_newMinBond);
    }

    function register() external payable returns (uint256) {
        address caller = _sender();
        return _register(caller, caller);
    }

    function registerFor(address machineAddress) external payable returns (uint256) {
        if (machineAddress == address(0)) revert InvalidMachineAddress();
        return _register(machineAddress, _sender());
    }

    function _register(address machineOwner, address operator) private returns (uint256 machineId) {
        if (_staking == address(0)) revert ContractNotConfigured();
        if (_machineIdOfOwner[machineOwner] != 0) revert AlreadyRegistered();
        if (msg.value != _minBond) revert IncorrectBondAmount();
        machineId = ++_total;
        _machines[machineId] = Machine(machineOwner, operator, machineOwner, STATUS_PENDING);
        _machineIdOfOwner[machineOwner] = machineId;
        _balances[machineOwner] += 1;
        IStakeSink(_staking).stakeNative{value: msg.value}(machineId, machineOwner);
        emit Transfer(address(0), machineOwner, machineId);
        emit OperatorSet(machineId, operator);
        emit Registered(machineId, "", machineOwner);
    }

    function deactivateMachine(uint256 machineId) external {
        Machine storage m = _ownedBy(machineId, _sender());
        if (m.status == STATUS_DEACTIVATED) revert InvalidStatus();
        m.status = STATUS_DEACTIVATED;
        emit MachineDeactivated(machineId, m.owner);
    }

    function reactivateMachine(uint256 machineId) external {
        Machine storage m = _ownedBy(machineId, _sender());
        if (m.status != STATUS_DEACTIVATED) revert InvalidStatus();
        m.status = STATUS_PENDING;
        emit MachineReactivated(machineId, m.owner);
    }

    function MIN_BOND_FLOOR() public pure returns (uint256) {
        return 0.1 ether;
    }

    function minBond() external view returns (uint256) {
        return _minBond;
    }

    function machineIdOfOwner(address addr) external view returns (uint256) {
        return _machineIdOfOwner[addr];
    }

    function machineExists(uint256 machineId) public view returns (bool) {
        return _machines[machineId].owner != address(0);
    }

    function getOwnerIfExists(uint256 machineId) external view returns (address owner_, bool exists_) {
        owner_ = _machines[machineId].owner;
        exists_ = owner_ != address(0);
    }

    function ownerOf(uint256 tokenId) external view returns (address) {
        address o = _machines[tokenId].owner;
        if (o == address(0)) revert ERC721NonexistentToken(tokenId);
        return o;
    }

    function balanceOf(address owner_) external view returns (uint256) {
        if (owner_ == address(0)) revert ERC721InvalidOwner(address(0));
        return _balances[owner_];
    }

    function operatorOf(uint256 machineId) external view returns (address) {
        return _existing(machineId).operator;
    }

    function machineWalletOf(uint256 machineId) external view returns (address) {
        return _existing(machineId).wallet;
    }

    function getMachineStatus(uint256 machineId) external view returns (uint8) {
        return _machines[machineId].status;
    }

    function machineStatus(uint256 machineId) external view returns (uint8) {
        return _machines[machineId].status;
    }

    function isDeactivated(uint256 machineId) external view returns (bool) {
        return _machines[machineId].status == STATUS_DEACTIVATED;
    }

    function isVerified(uint256 machineId) external view returns (bool) {
        return _machines[machineId].status == 2;
    }

    function isAuthorizedOrOwner(address caller, uint256 machineId) external view returns (bool) {
        Machine storage m = _machines[machineId];
        return m.owner != address(0) && (caller == m.owner || caller == m.operator);
    }

    function verifyOwnership(uint256 machineId, address claimedOwner) external view returns (bool) {
        address o = _machines[machineId].owner;
        return o != address(0) && o == claimedOwner;
    }

    function getVerificationInfo(uint256 machineId)
        external
        view
        returns (address owner_, address wallet_, bool exists_, uint8 status_)
    {
        Machine storage m = _machines[machineId];
        return (m.owner, m.wallet, m.owner != address(0), m.status);
    }

    function totalMachines() external view returns (uint256) {
        return _total;
    }

    function getDIDPrecompile() external view returns (address) {
        return _didPrecompile;
    }

    function name() external pure returns (string memory) {
        return "peaqOS Identity";
    }

    function symbol() external pure returns (string memory) {
        return "PEAQID";
    }

    function tokenURI(uint256 machineId) external view returns (string memory) {
        _existing(machineId);
        return Decimal.toString(machineId);
    }

    function transferFrom(address, address, uint256) external pure {
        revert IdentityNFTSoulbound();
    }

    function _existing(uint256 machineId) private view returns (Machine storage m) {
        m = _machines[machineId];
        if (m.owner == address(0)) revert MachineNotFound();
    }

    function _ownedBy(uint256 machineId, address caller) private view returns (Machine storage m) {
        m = _existing(machineId);
        if (caller != m.owner) revert NotMachineOwner();
    }
}
