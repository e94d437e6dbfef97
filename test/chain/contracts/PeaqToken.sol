// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {HarnessOwnable} from "./Common.sol";

/// @title Stand-in for the PEAQ ERC-20 precompile (0x…0809, "Erc20Balances").
/// @notice Placed with `anvil_setCode` at 0x0000000000000000000000000000000000000809 and set
/// up with `harnessInit(admin)`. On peaq this precompile exposes the NATIVE balance; a contract
/// cannot move native balances of other accounts, so this stand-in keeps its own ledger that
/// the harness fills with `harnessSetBalance` (owner only). Gas is still paid in native anvil
/// ETH, so "PEAQ token balance" and "native balance" are two separate numbers here.
/// ERC-20 surface: name/symbol/decimals/totalSupply/balanceOf/allowance/approve/transfer/
/// transferFrom with OpenZeppelin ERC-20 errors. `approve`/`transfer` honour batch forwarding.
contract PeaqToken is HarnessOwnable {
    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    error ERC20InsufficientBalance(address sender, uint256 balance, uint256 needed);
    error ERC20InsufficientAllowance(address spender, uint256 allowance, uint256 needed);
    error ERC20InvalidReceiver(address receiver);
    error ERC20InvalidSpender(address spender);

    mapping(address => uint256) private _balances;
    mapping(address => mapping(address => uint256)) private _allowances;
    uint256 private _totalSupply;

    function harnessInit(address admin) external {
        _initOwner(admin);
    }

    /// @notice Harness only: set an account's token balance (adjusts totalSupply).
    function harnessSetBalance(address account, uint256 amount) external onlyOwner {
        _totalSupply = _totalSupply - _balances[account] + amount;
        uint256 previous = _balances[account];
        _balances[account] = amount;
        if (amount > previous) emit Transfer(address(0), account, amount - previous);
        else if (previous > amount) emit Transfer(account, address(0), previous - amount);
    }

    function name() external pure returns (string memory) {
        return "peaq";
    }

    function symbol() external pure returns (string memory) {
        return "PEAQ";
    }

    function decimals() external pure returns (uint8) {
        return 18;
    }

    function totalSupply() external view returns (uint256) {
        return _totalSupply;
    }

    function balanceOf(address account) external view returns (uint256) {
        return _balances[account];
    }

    function allowance(address owner_, address spender) external view returns (uint256) {
        return _allowances[owner_][spender];
    }

    function approve(address spender, uint256 value) external returns (bool) {
        if (spender == address(0)) revert ERC20InvalidSpender(address(0));
        address owner_ = _sender();
        _allowances[owner_][spender] = value;
        emit Approval(owner_, spender, value);
        return true;
    }

    function transfer(address to, uint256 value) external returns (bool) {
        _move(_sender(), to, value);
        return true;
    }

    function transferFrom(address from, address to, uint256 value) external returns (bool) {
        address spender = _sender();
        uint256 current = _allowances[from][spender];
        if (current != type(uint256).max) {
            if (current < value) revert ERC20InsufficientAllowance(spender, current, value);
            _allowances[from][spender] = current - value;
        }
        _move(from, to, value);
        return true;
    }

    function _move(address from, address to, uint256 value) private {
        if (to == address(0)) revert ERC20InvalidReceiver(address(0));
        uint256 balance = _balances[from];
        if (balance < value) revert ERC20InsufficientBalance(from, balance, value);
        _balances[from] = balance - value;
        _balances[to] += value;
        emit Transfer(from, to, value);
    }
}
