//! How a chain call's outcome becomes a ROS response: a `ChainError` becomes a
//! [`Refusal`] (`success: false`, the SDK's `error_code`, the request field it is about, spelled
//! as in the `.srv`, and a message); and the parsers of request fields (canonical decimals,
//! addresses, hex).
use std::future::Future;
use std::sync::Arc;

use alloy::primitives::{Address, U256};
use peaqos_chain::validation::MachineIdInput;
use peaqos_chain::ChainError;
use tokio::runtime::Runtime;

use crate::answer::{Refusal, Refuse};

/// A chain call's failed answer: `field` is the request field concerned ([`request_field`]); a
/// failed submit also names its intent and transaction ([`Refuse::with_intent`]).
fn fail<R: Default + Refuse>(e: &ChainError, field: String) -> R {
    let r = match e {
        ChainError::Tx { intent_id, tx_hash, .. } => R::default().with_intent(intent_id.clone(), tx_hash.clone()),
        ChainError::Faucet { request_id, .. } => R::default().with_request(request_id.clone()),
        _ => R::default(),
    };
    r.refused(Refusal::chain(e, field))
}

/// How one service's request spells the fields the chain client names: `(from, to)`, where
/// `from` is the client's field name (the SDK's) or `code:<CODE>` for an error that carries no
/// field (a revert about the machine the request names).
pub(super) type Renames = &'static [(&'static str, &'static str)];

/// Reverts about the machine or the event a request names (reverts carry no field).
pub(super) const MACHINE_REVERTS: Renames = &[
    ("code:MACHINE_NOT_FOUND", "machine_id"),
    ("code:NOT_OWNER_OR_CONTROLLER", "machine_id"),
    ("code:SUBSCRIPTION_NOT_ELIGIBLE", "machine_id"),
    ("code:METADATA_TOO_LARGE", "metadata"),
    ("code:INVALID_CURRENCY_SHAPE", "currency"),
    ("code:FUTURE_TIMESTAMP", "timestamp"),
];

/// The request field an error is about, spelled as in the service's `.srv` (issue 14 #4).
pub(super) fn request_field(e: &ChainError, renames: Renames) -> String {
    let field = e.field();
    let code_key = format!("code:{}", e.code());
    let key = if field.is_empty() { code_key.as_str() } else { field };
    renames.iter().find(|(from, _)| *from == key).map_or(field, |(_, to)| *to).to_owned()
}

/// Run `f` on the tokio runtime; the returned future can be awaited by rclrs's executor.
pub(super) fn on_runtime<R, F>(rt: &Arc<Runtime>, renames: Renames, f: F) -> impl Future<Output = R> + Send + 'static
where
    R: Default + Refuse + Send + 'static,
    F: Future<Output = Result<R, ChainError>> + Send + 'static,
{
    let handle = rt.spawn(f);
    async move {
        match handle.await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => fail(&e, request_field(&e, renames)),
            Err(e) => {
                fail(&ChainError::validation("", "internal", format!("the request task failed: {e}")), String::new())
            }
        }
    }
}

/// A uint256 request field: a canonical decimal, exactly as the SDK's `parse_machine_id`.
pub(super) fn u256(field: &str, s: &str) -> Result<U256, ChainError> {
    MachineIdInput::from_decimal(field, s).map(|m| m.0)
}

/// An address request field: `0x` + 40 hex digits, as the SDK (no trimming, no `0X`).
pub(super) fn address(field: &str, s: &str) -> Result<Address, ChainError> {
    peaqos_chain::validation::parse_address(field, s)
}

/// Empty = not given; anything else must be an address.
pub(super) fn opt_address(field: &str, s: &str) -> Result<Option<Address>, ChainError> {
    if s.is_empty() {
        Ok(None)
    } else {
        address(field, s).map(Some)
    }
}

/// A bytes request field: `0x` + an even number of hex digits, nothing around them.
pub(super) fn hex_bytes(field: &str, s: &str) -> Result<Vec<u8>, ChainError> {
    let bad = || ChainError::validation(field, "hex", format!("{field} must be 0x-prefixed hex"));
    hex::decode(s.strip_prefix("0x").ok_or_else(bad)?).map_err(|_| bad())
}

pub(super) fn hx<T: std::fmt::LowerHex>(v: T) -> String {
    format!("{v:#x}")
}
