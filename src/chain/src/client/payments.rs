//! Payments the machine makes (Machine Markets orders): an ERC-20 `transfer`, or a native-value
//! transfer, signed by the machine key and stored in the outbox at most once per idempotency key,
//! so a payment is never sent twice, also across crashes (see `Outbox::enqueue_once`).
use alloy::primitives::{Address, Bytes, U256};
use alloy::sol_types::SolCall;
use serde_json::{json, Map};

use super::ChainClient;
use crate::bindings::IERC20;
use crate::error::Result;
use crate::revert::RevertScope;

/// The calldata of `transfer(to, amount)` (what the SDK's `transfer_token` sends).
pub fn erc20_transfer_calldata(to: Address, amount: U256) -> Bytes {
    IERC20::transferCall { to, amount }.abi_encode().into()
}

/// One payment: `amount` base units of the ERC-20 at `token` (or of the native currency when
/// `token` is `None`) to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payment {
    pub token: Option<Address>,
    pub to: Address,
    pub amount: U256,
}

impl ChainClient {
    /// Enqueue `payment` from the machine's address, once per `key`: a repeated call (also after a
    /// restart) returns the intent stored first. Returns (intent id, newly stored).
    pub fn enqueue_payment_once(&self, key: &str, payment: &Payment) -> Result<(String, bool)> {
        let (to, value, input) = match payment.token {
            Some(token) => (token, U256::ZERO, erc20_transfer_calldata(payment.to, payment.amount)),
            None => (payment.to, payment.amount, Bytes::new()),
        };
        let mut journal = Map::new();
        journal.insert(
            "payment".into(),
            json!({
                "to": format!("{:#x}", payment.to),
                "token": payment.token.map(|t| format!("{t:#x}")),
                "amount": payment.amount.to_string(),
            }),
        );
        let req = self.tx_request(
            "market_payment",
            self.signer_address(),
            to,
            value,
            input,
            RevertScope::EventsGen2,
            journal,
        );
        self.outbox().enqueue_once(key, req)
    }

    /// `balanceOf(owner)` of the ERC-20 at `token`, at the latest block.
    pub async fn erc20_balance(&self, token: Address, owner: Address) -> Result<U256> {
        self.view_call(token, IERC20::balanceOfCall { owner }, RevertScope::EventsGen2).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_calldata_is_the_erc20_selector_and_two_words() {
        let to: Address = "0x90F79bf6EB2c4f870365E785982E1f101E93b906".parse().unwrap();
        let d = erc20_transfer_calldata(to, U256::from(1_500_000u64));
        assert_eq!(&d[..4], &[0xa9, 0x05, 0x9c, 0xbb]);
        assert_eq!(d.len(), 4 + 64);
        assert_eq!(&d[16..36], to.as_slice());
        assert_eq!(U256::from_be_slice(&d[36..68]), U256::from(1_500_000u64));
    }
}
