// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {HarnessOwnable} from "./Common.sol";

/// @title Stand-in for the gen-1 MachineNFTBase (the ONFT on the bridge's destination chain).
/// @notice Placed on a second chain by a test, set up with `harnessInit(admin)`; the test plays
/// LayerZero and calls `harnessMint(to, tokenId)` when it sees `ONFTSent` on the source chain.
/// `ownerOf` of a token that has not arrived reverts `ERC721NonexistentToken(tokenId)`, as the
/// real contract (what SDK 0.11.2 `wait_for_bridge_arrival` polls).
contract MachineNFTBase is HarnessOwnable {
    error ERC721NonexistentToken(uint256 tokenId);

    event Transfer(address indexed from, address indexed to, uint256 indexed tokenId);

    mapping(uint256 => address) private _owners;

    function harnessInit(address admin) external {
        _initOwner(admin);
    }

    function harnessMint(address to, uint256 tokenId) external onlyOwner {
        _owners[tokenId] = to;
        emit Transfer(address(0), to, tokenId);
    }

    function ownerOf(uint256 tokenId) external view returns (address) {
        address o = _owners[tokenId];
        if (o == address(0)) revert ERC721NonexistentToken(tokenId);
        return o;
    }
}
