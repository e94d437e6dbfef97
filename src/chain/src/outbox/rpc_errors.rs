//! Classification of a node's refusal text for `eth_sendRawTransaction` (already known, nonce too
//! low, fee refusals such as underpriced), which decides between waiting, replacing and
//! reconciling. Anything not matched here (insufficient funds, …) is a hard refusal, whose code
//! [`broadcast_refusal`] decides (as [`simulation_revert`] does for a refused gas measurement).

use crate::error::ErrorCode;
use crate::revert::{self, RevertScope};
use crate::rpc::RpcFailure;

pub(super) fn fee_refusal(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("underpriced")
        || m.contains("fee too low")
        || m.contains("less than block base fee")
        || m.contains("max fee per gas less than")
        || m.contains("feecap")
        || m.contains("fee cap")
}
pub(super) fn already_known(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("already known")
        || m.contains("already imported")
        || m.contains("known transaction")
        || m.contains("already exists")
}
pub(super) fn nonce_too_low(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("nonce too low") || m.contains("nonce is too low") || m.contains("stale")
}

/// (code, message) of a gas measurement the node refused as a revert: the decoded revert data,
/// else the node's message classified as a revert reason.
pub(super) fn simulation_revert(scope: RevertScope, f: &RpcFailure) -> (ErrorCode, String) {
    let r = match f {
        RpcFailure::Node { data: Some(d), .. } if !d.is_empty() => revert::decode(scope, d),
        other => revert::decode_reason(scope, &other.message()),
    };
    (r.code, r.message)
}

/// (code, message) of a hard refusal of a first broadcast: decoded revert data, a revert reason
/// in the node's message, else the RPC failure's own code (e.g. insufficient funds ⇒ `RPC_ERROR`).
pub(super) fn broadcast_refusal(scope: RevertScope, f: &RpcFailure) -> (ErrorCode, String) {
    match f {
        RpcFailure::Node { data: Some(d), .. } if !d.is_empty() => {
            let r = revert::decode(scope, d);
            (r.code, r.message)
        }
        RpcFailure::Node { message, .. } if f.is_revert() => {
            let r = revert::decode_reason(scope, message);
            (r.code, r.message)
        }
        other => {
            let e = other.clone().into_error();
            (e.error_code(), e.to_string())
        }
    }
}
