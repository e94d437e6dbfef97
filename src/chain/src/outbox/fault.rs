//! Test fault injection: crash points (`PEAQOS_CHAIN_FAULT=abort_after_sign|broadcast|merge`)
//! compiled only with the `fault-injection` feature; without it [`fault_point`] is a no-op.

/// Test fault injection: where `PEAQOS_CHAIN_FAULT=abort_after_<point>` aborts the process. Only
/// in builds with the `fault-injection` feature (this crate's own tests); release builds have none.
#[derive(Debug, Clone, Copy)]
pub(super) enum AbortAfter {
    Sign,
    Broadcast,
    Merge,
}

#[cfg(feature = "fault-injection")]
pub(super) fn fault_point(p: AbortAfter) {
    if let Ok(v) = std::env::var("PEAQOS_CHAIN_FAULT") {
        let hit = matches!(
            (p, v.as_str()),
            (AbortAfter::Sign, "abort_after_sign")
                | (AbortAfter::Broadcast, "abort_after_broadcast")
                | (AbortAfter::Merge, "abort_after_merge")
        );
        if hit {
            eprintln!("PEAQOS_CHAIN_FAULT={v}: aborting");
            std::process::abort();
        }
    }
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(super) fn fault_point(_p: AbortAfter) {}
