//! Classification of a node's refusal text for `eth_sendRawTransaction` (already known, nonce too
//! low, fee refusals such as underpriced), which decides between waiting, replacing and
//! reconciling. Anything not matched here (insufficient funds, …) is a hard refusal.

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
