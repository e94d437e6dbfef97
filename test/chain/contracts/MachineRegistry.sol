// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Decimal} from "./Common.sol";
import {
    Gen2Peer, DIDDocument, VerificationMethod, ServiceEndpoint
} from "./Gen2Types.sol";

/// @title Stand-in for the gen-2 MachineRegistry (ERC-721 subset + on-chain DID document).
/// @notice Set up with `harnessInit(infoDesk, admin)`.
/// * `computeTokenId = uint256(keccak256(abi.encode(machineType, credentialSubject)))`.
/// * Minting happens only through `onMachineOnboarded(machineId, operator, data)` called by
///   MachineStateAndSync, `data = abi.encode(DIDDocument, string machineType, bytes
///   credentialSubject, address manufacturer)`; the token goes to `operator` (the activating
///   signer), who is owner and operator. `DIDDocument.id` is ignored on input and computed on
///   read as `did:peaq:<decimal tokenId>`. Authentication indices are stored unchecked at mint
///   (like the real contract), checked by `setAuthentication`.
/// * Reads of a missing token revert `ERC721NonexistentToken(tokenId)`.
/// * DID setters are allowed to the owner or the DID controller (`NotOwnerOrController`).
/// * Transfers/approvals are not implemented (subset).
contract MachineRegistry is Gen2Peer {
    error ERC721NonexistentToken(uint256 tokenId);
    error ERC721InvalidOwner(address owner);
    error ERC721InvalidSender(address sender);
    error NotOwnerOrController();
    error InvalidAuthenticationIndex();
    error InvalidDIDFormat();

    event Transfer(address indexed from, address indexed to, uint256 indexed tokenId);
    event MachineMinted(uint256 indexed tokenId, address indexed to, address indexed controller, string machineType);
    event ControllerUpdated(uint256 indexed tokenId, address indexed oldController, address indexed newController);
    event ServiceEndpointsUpdated(uint256 indexed tokenId);
    event VerificationMethodsUpdated(uint256 indexed tokenId);
    event AuthenticationUpdated(uint256 indexed tokenId);

    struct Machine {
        address owner;
        address controller;
        address manufacturer;
        string machineType;
        bytes credentialSubject;
    }

    mapping(uint256 => Machine) private _machines;
    mapping(uint256 => VerificationMethod[]) private _verificationMethods;
    mapping(uint256 => uint256[]) private _authentication;
    mapping(uint256 => ServiceEndpoint[]) private _serviceEndpoints;
    mapping(address => uint256) private _balances;

    function name() external pure returns (string memory) {
        return "peaqOS Machine";
    }

    function symbol() external pure returns (string memory) {
        return "PEAQM";
    }

    function computeTokenId(string calldata machineType_, bytes calldata credentialSubject_)
        public
        pure
        returns (uint256)
    {
        return uint256(keccak256(abi.encode(machineType_, credentialSubject_)));
    }

    function didFromTokenId(uint256 tokenId_) public pure returns (string memory) {
        return string.concat("did:peaq:", Decimal.toString(tokenId_));
    }

    /// @notice Parses `did:peaq:<decimal>` (no leading zeros, no sign, fits uint256).
    function tokenIdFromDid(string calldata didString_) external pure returns (uint256 id) {
        bytes memory s = bytes(didString_);
        bytes memory prefix = bytes("did:peaq:");
        if (s.length <= prefix.length || s.length > prefix.length + 78) revert InvalidDIDFormat();
        for (uint256 i = 0; i < prefix.length; i++) {
            if (s[i] != prefix[i]) revert InvalidDIDFormat();
        }
        if (s[prefix.length] == "0" && s.length > prefix.length + 1) revert InvalidDIDFormat();
        for (uint256 i = prefix.length; i < s.length; i++) {
            uint8 c = uint8(s[i]);
            if (c < 48 || c > 57) revert InvalidDIDFormat();
            if (id > (type(uint256).max - (c - 48)) / 10) revert InvalidDIDFormat();
            id = id * 10 + (c - 48);
        }
    }

    function onMachineOnboarded(uint256 machineId, address operator, bytes calldata data) external onlyStateAndSync {
        (DIDDocument memory doc, string memory machineType_, bytes memory credentialSubject_, address manufacturer_) =
            abi.decode(data, (DIDDocument, string, bytes, address));
        if (operator == address(0)) revert ERC721InvalidOwner(address(0));
        Machine storage m = _machines[machineId];
        if (m.owner != address(0)) revert ERC721InvalidSender(address(0));
        m.owner = operator;
        m.controller = doc.controller;
        m.manufacturer = manufacturer_;
        m.machineType = machineType_;
        m.credentialSubject = credentialSubject_;
        for (uint256 i = 0; i < doc.verificationMethods.length; i++) {
            _verificationMethods[machineId].push(doc.verificationMethods[i]);
        }
        _authentication[machineId] = doc.authentication;
        for (uint256 i = 0; i < doc.serviceEndpoints.length; i++) {
            _serviceEndpoints[machineId].push(doc.serviceEndpoints[i]);
        }
        _balances[operator] += 1;
        emit Transfer(address(0), operator, machineId);
        emit MachineMinted(machineId, operator, doc.controller, machineType_);
    }

    function ownerOf(uint256 tokenId) public view returns (address) {
        return _existing(tokenId).owner;
    }

    function balanceOf(address owner_) external view returns (uint256) {
        if (owner_ == address(0)) revert ERC721InvalidOwner(address(0));
        return _balances[owner_];
    }

    function operatorOf(uint256 tokenId) external view returns (address) {
        return _existing(tokenId).owner;
    }

    function controllerOf(uint256 tokenId) external view returns (address) {
        return _existing(tokenId).controller;
    }

    function machineTypeOf(uint256 tokenId) external view returns (string memory) {
        return _existing(tokenId).machineType;
    }

    function credentialSubjectOf(uint256 tokenId) external view returns (bytes memory) {
        return _existing(tokenId).credentialSubject;
    }

    function manufacturerOf(uint256 tokenId) external view returns (address) {
        return _existing(tokenId).manufacturer;
    }

    function verificationMethodsOf(uint256 tokenId) external view returns (VerificationMethod[] memory) {
        _existing(tokenId);
        return _verificationMethods[tokenId];
    }

    function authenticationOf(uint256 tokenId) external view returns (uint256[] memory) {
        _existing(tokenId);
        return _authentication[tokenId];
    }

    function serviceEndpointsOf(uint256 tokenId) external view returns (ServiceEndpoint[] memory) {
        _existing(tokenId);
        return _serviceEndpoints[tokenId];
    }

    function didDocument(uint256 tokenId) external view returns (DIDDocument memory doc) {
        doc.id = didFromTokenId(tokenId);
        doc.controller = _existing(tokenId).controller;
        doc.verificationMethods = _verificationMethods[tokenId];
        doc.authentication = _authentication[tokenId];
        doc.serviceEndpoints = _serviceEndpoints[tokenId];
    }

    function tokenURI(uint256 tokenId) external view returns (string memory) {
        _existing(tokenId);
        return didFromTokenId(tokenId);
    }

    function setController(uint256 tokenId, address newController) external {
        Machine storage m = _ownerOrController(tokenId);
        if (newController == address(0)) revert InvalidAddress();
        address old = m.controller;
        m.controller = newController;
        emit ControllerUpdated(tokenId, old, newController);
    }

    function setVerificationMethods(uint256 tokenId, VerificationMethod[] calldata newVerificationMethods) external {
        _ownerOrController(tokenId);
        delete _verificationMethods[tokenId];
        for (uint256 i = 0; i < newVerificationMethods.length; i++) {
            _verificationMethods[tokenId].push(newVerificationMethods[i]);
        }
        emit VerificationMethodsUpdated(tokenId);
    }

    function setAuthentication(uint256 tokenId, uint256[] calldata newAuthentication) external {
        _ownerOrController(tokenId);
        uint256 count = _verificationMethods[tokenId].length;
        for (uint256 i = 0; i < newAuthentication.length; i++) {
            if (newAuthentication[i] >= count) revert InvalidAuthenticationIndex();
        }
        _authentication[tokenId] = newAuthentication;
        emit AuthenticationUpdated(tokenId);
    }

    function setServiceEndpoints(uint256 tokenId, ServiceEndpoint[] calldata newServiceEndpoints) external {
        _ownerOrController(tokenId);
        delete _serviceEndpoints[tokenId];
        for (uint256 i = 0; i < newServiceEndpoints.length; i++) {
            _serviceEndpoints[tokenId].push(newServiceEndpoints[i]);
        }
        emit ServiceEndpointsUpdated(tokenId);
    }

    function _existing(uint256 tokenId) private view returns (Machine storage m) {
        m = _machines[tokenId];
        if (m.owner == address(0)) revert ERC721NonexistentToken(tokenId);
    }

    function _ownerOrController(uint256 tokenId) private view returns (Machine storage m) {
        m = _existing(tokenId);
        address caller = _sender();
        if (caller != m.owner && caller != m.controller) revert NotOwnerOrController();
    }
}
