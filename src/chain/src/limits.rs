//! Operational limits (SDK `check_operational_limits`, `rate_limit_tracker`), checked before an
//! intent is stored: `value > max_value_per_tx` ⇒ `VALUE_CAP_EXCEEDED`; a sliding window per
//! (deployment, machine) with `count >= rate_limit_max_events` ⇒ `RATE_LIMITED`. A batch projects
//! its own per-machine counts. The whole check is skipped when all three limits are 0. Slots are
//! reserved at enqueue time (so concurrent submits cannot overshoot) and released if the intent
//! fails; anchored to wall-clock, process-local (as in the SDK).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use alloy::primitives::U256;

use crate::config::OperationalLimits;
use crate::error::{ChainError, Result};
use crate::validation::ValidEvent;

/// Reserved slots, to release if the submission fails.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reservation {
    slots: Vec<(String, U256, Instant)>,
}

impl Reservation {
    /// No slot reserved (limits disabled or no window configured).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[derive(Debug)]
pub struct RateLimiter {
    limits: OperationalLimits,
    deployment: String,
    windows: Mutex<HashMap<(String, U256), VecDeque<Instant>>>,
}

impl RateLimiter {
    pub fn new(limits: OperationalLimits, deployment: &str) -> Self {
        RateLimiter { limits, deployment: deployment.into(), windows: Mutex::new(HashMap::new()) }
    }

    fn disabled(&self) -> bool {
        self.limits.max_value_per_tx == 0
            && self.limits.rate_limit_max_events == 0
            && self.limits.rate_limit_window_seconds == 0
    }

    /// Check every event and reserve slots atomically; nothing is reserved on error.
    pub fn reserve(&self, events: &[ValidEvent]) -> Result<Reservation> {
        if self.disabled() {
            return Ok(Reservation::default());
        }
        let cap = self.limits.max_value_per_tx;
        let window_on = self.limits.rate_limit_max_events > 0 && self.limits.rate_limit_window_seconds > 0;
        let window = Duration::from_secs(self.limits.rate_limit_window_seconds);
        let now = Instant::now();
        let mut w = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let mut projected: HashMap<U256, u64> = HashMap::new();
        for e in events {
            if cap > 0 && e.value > U256::from(cap) {
                return Err(ChainError::ValueCapExceeded { value: e.value.to_string(), cap: cap.to_string() });
            }
            if window_on {
                let base = match projected.get(&e.machine_id) {
                    Some(c) => *c,
                    None => {
                        let q = w.entry((self.deployment.clone(), e.machine_id)).or_default();
                        while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
                            q.pop_front();
                        }
                        q.len() as u64
                    }
                };
                if base >= self.limits.rate_limit_max_events {
                    return Err(ChainError::RateLimited {
                        machine_id: e.machine_id.to_string(),
                        count: base,
                        max_events: self.limits.rate_limit_max_events,
                        window_seconds: self.limits.rate_limit_window_seconds,
                    });
                }
                projected.insert(e.machine_id, base + 1);
            }
        }
        let mut r = Reservation::default();
        if window_on {
            for e in events {
                w.entry((self.deployment.clone(), e.machine_id)).or_default().push_back(now);
                r.slots.push((self.deployment.clone(), e.machine_id, now));
            }
        }
        Ok(r)
    }

    /// Give reserved slots back (the submission failed).
    pub fn release(&self, r: Reservation) {
        let mut w = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        for (d, m, t) in r.slots {
            if let Some(q) = w.get_mut(&(d, m)) {
                if let Some(pos) = q.iter().position(|x| *x == t) {
                    q.remove(pos);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::B256;

    fn ev(m: u64, v: u64) -> ValidEvent {
        ValidEvent {
            machine_id: U256::from(m),
            event_type: 0,
            value: U256::from(v),
            currency: "USD".into(),
            timestamp: U256::from(1),
            data_hash: B256::ZERO,
            trust_level: 0,
            source_chain_id: U256::ZERO,
            source_tx_hash: B256::ZERO,
            metadata: vec![],
        }
    }

    #[test]
    fn cap_window_and_release() {
        let l = RateLimiter::new(
            OperationalLimits { max_value_per_tx: 100, rate_limit_max_events: 2, rate_limit_window_seconds: 60 },
            "d",
        );
        assert_eq!(l.reserve(&[ev(1, 101)]).unwrap_err().code(), "VALUE_CAP_EXCEEDED");
        let r1 = l.reserve(&[ev(1, 1)]).unwrap();
        // batch projecting over the limit reserves nothing
        assert_eq!(l.reserve(&[ev(1, 1), ev(1, 1)]).unwrap_err().code(), "RATE_LIMITED");
        l.reserve(&[ev(1, 1)]).unwrap();
        let e = l.reserve(&[ev(1, 1)]).unwrap_err();
        assert_eq!(e.to_string(), "Machine 1: 2/2 events in 60s");
        l.reserve(&[ev(2, 1)]).unwrap();
        l.release(r1);
        l.reserve(&[ev(1, 1)]).unwrap();
        let off = RateLimiter::new(OperationalLimits::default(), "d");
        for _ in 0..10 {
            off.reserve(&[ev(1, u64::MAX)]).unwrap();
        }
    }
}
