//! Gas: the low-balance watch (`~/status` `gas_*`, `/diagnostics` "peaqos_node: gas") and
//! `~/fund_from_gas_station`, which relays an operator's one-time 2FA code to the Gas Station.
//! The arithmetic and the funding itself are `peaqos_chain`'s ([`ChainClient::gas_report`],
//! [`ChainClient::fund_from_gas_station`]); this file maps the `gas.*` / `gas_station.*`
//! parameters and the service onto them.
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use alloy::primitives::U256;
use peaqos_chain::client::{GasPolicy, GasReport, GasStationSettings};
use peaqos_chain::gas_station::{FundOutcome, TwoFactorCode};
use peaqos_chain::{ChainClient, ChainError};
use ros_env::diagnostic_msgs::msg::{DiagnosticStatus, KeyValue};
use ros_env::peaqos_node::srv::*;

use super::answer::*;
use super::Registrar;
use crate::params::{param_err, ParamSet};
use crate::StartError;

/// The `gas.*` and `gas_station.*` parameters.
#[derive(Debug, Clone)]
pub struct GasParams {
    pub policy: GasPolicy,
    pub check_interval: Duration,
    /// `chain_id` empty here = the network's name, filled in by [`register`].
    pub station: GasStationSettings,
}

impl GasParams {
    pub fn declare(node: &ParamSet) -> Result<GasParams, StartError> {
        let reserve = node.read_only::<Arc<str>>(
            "gas.reserve_wei",
            Arc::from("1000000000000000000"),
            "Native balance (wei, a decimal string) kept above what the queued transactions need; below it /diagnostics warns (peaqos_node: gas).",
        )?;
        let reserve_wei = u256("gas.reserve_wei", &reserve).map_err(|e| param_err("gas.reserve_wei", e))?;
        let intent_gas: i64 = node.read_only_in(
            "gas.intent_gas",
            300_000,
            "Gas a queued transaction is assumed to use until the outbox has measured it (21000..30000000).",
            rclrs::ParameterRange { lower: Some(21_000), upper: Some(30_000_000), step: None },
        )?;
        let interval: f64 = node.read_only_in(
            "gas.check_interval",
            30.0,
            "Seconds between readings of the machine's balance (0.1..3600); a funding reads it at once.",
            rclrs::ParameterRange { lower: Some(0.1), upper: Some(3600.0), step: None },
        )?;
        let check_interval =
            peaqos_core::duration::seconds(interval, false).map_err(|e| param_err("gas.check_interval", e))?;
        let url = node.read_only::<Arc<str>>(
            "gas_station.url",
            Arc::from(""),
            "Gas Station base URL for ~/fund_from_gas_station (the SDK's docs: https://depinstation.peaq.xyz); empty = the service refuses.",
        )?;
        let owner = node.read_only::<Arc<str>>(
            "gas_station.owner_address",
            Arc::from(""),
            "The 2FA-enrolled owner the Gas Station funds for (its own address, EVM or SS58). Never a secret.",
        )?;
        let chain_id = node.read_only::<Arc<str>>(
            "gas_station.chain_id",
            Arc::from(""),
            "The station's chain identifier (e.g. peaq); empty = the chain.network name.",
        )?;
        let timeout: f64 = node.read_only_in(
            "gas_station.timeout",
            30.0,
            "Seconds a Gas Station request may take (the SDK's 30); a lost answer keeps its request id for the next call.",
            rclrs::ParameterRange { lower: Some(1.0), upper: Some(600.0), step: None },
        )?;
        let timeout =
            peaqos_core::duration::seconds(timeout, false).map_err(|e| param_err("gas_station.timeout", e))?;
        Ok(GasParams {
            policy: GasPolicy { reserve_wei, intent_gas: intent_gas as u64 },
            check_interval,
            station: GasStationSettings {
                url: url.trim().to_owned(),
                owner_address: owner.trim().to_owned(),
                chain_id: chain_id.trim().to_owned(),
                timeout,
            },
        })
    }
}

/// The latest balance reading, for `~/status` and `/diagnostics`.
#[derive(Debug, Default)]
struct Reading {
    report: Option<GasReport>,
    error: Option<String>,
    at: Option<SystemTime>,
}

/// The gas watch's state, shared with the status service and the diagnostics timer.
pub struct GasView {
    reading: Mutex<Reading>,
    refresh: tokio::sync::Notify,
}

/// What `~/status` says of gas.
#[derive(Debug, Default)]
pub struct GasStatus {
    pub balance_wei: String,
    pub required_wei: String,
    pub low: bool,
    pub pending_intents: u64,
    pub error: String,
}

fn kv(key: &str, value: impl ToString) -> KeyValue {
    KeyValue { key: key.to_owned(), value: value.to_string() }
}

impl GasView {
    fn lock(&self) -> std::sync::MutexGuard<'_, Reading> {
        self.reading.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn status(&self) -> GasStatus {
        let r = self.lock();
        GasStatus {
            balance_wei: r.report.as_ref().map(|g| g.balance.to_string()).unwrap_or_default(),
            required_wei: r.report.as_ref().map(|g| g.required.to_string()).unwrap_or_default(),
            low: r.report.as_ref().is_some_and(GasReport::low),
            pending_intents: r.report.as_ref().map_or(0, |g| g.pending_intents as u64),
            error: r.error.clone().unwrap_or_default(),
        }
    }

    /// "peaqos_node: gas": OK while the balance covers the queued work and the reserve, WARN
    /// while it does not, STALE before the first reading.
    pub fn diagnostic_status(&self, hardware_id: &str) -> DiagnosticStatus {
        let r = self.lock();
        let error = r.error.clone().unwrap_or_default();
        let (level, message) = match &r.report {
            None => (DiagnosticStatus::STALE, format!("balance not read yet{}", if error.is_empty() { String::new() } else { format!(": {error}") })),
            Some(g) if g.low() => (
                DiagnosticStatus::WARN,
                format!(
                    "balance {} wei is below the {} wei its {} queued transaction(s) and the reserve need: fund {} (~/fund_from_gas_station)",
                    g.balance,
                    g.required,
                    g.pending_intents,
                    g.address.to_checksum(None)
                ),
            ),
            Some(g) => (DiagnosticStatus::OK, format!("balance {} wei covers {} wei", g.balance, g.required)),
        };
        let g = r.report.as_ref();
        let at =
            r.at.map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .unwrap_or_default();
        DiagnosticStatus {
            level,
            name: "peaqos_node: gas".into(),
            message,
            hardware_id: hardware_id.to_owned(),
            values: vec![
                kv("address", g.map(|g| g.address.to_checksum(None)).unwrap_or_default()),
                kv("balance_wei", g.map(|g| g.balance.to_string()).unwrap_or_default()),
                kv("required_wei", g.map(|g| g.required.to_string()).unwrap_or_default()),
                kv("reserve_wei", g.map(|g| g.reserve.to_string()).unwrap_or_default()),
                kv("pending_intents", g.map_or(0, |g| g.pending_intents)),
                kv("pending_value_wei", g.map(|g| g.pending_value.to_string()).unwrap_or_default()),
                kv("pending_gas", g.map_or(0, |g| g.pending_gas)),
                kv("fee_per_gas_wei", g.map_or(0, |g| g.fee_per_gas)),
                kv("low", g.is_some_and(GasReport::low)),
                kv("checked_at", at),
                kv("error", error),
            ],
        }
    }

    /// Take a reading: keep the report (logging a change of `low`), or the error beside the last one.
    fn record(&self, r: peaqos_chain::Result<GasReport>) {
        let mut cur = self.lock();
        match r {
            Ok(g) => {
                let was_low = cur.report.as_ref().map(GasReport::low);
                match (was_low, g.low()) {
                    (Some(false) | None, true) => tracing::warn!(
                        "gas: balance {} wei of {} is below the {} wei its {} queued transaction(s) and the reserve need",
                        g.balance,
                        g.address.to_checksum(None),
                        g.required,
                        g.pending_intents
                    ),
                    (Some(true), false) => {
                        tracing::info!("gas: balance {} wei covers {} wei again", g.balance, g.required)
                    }
                    _ => {}
                }
                cur.report = Some(g);
                cur.error = None;
            }
            Err(e) => {
                if cur.error.is_none() {
                    tracing::warn!("gas: cannot read the balance: {e}");
                }
                cur.error = Some(peaqos_core::text::one_line(&format!("{}: {e}", e.code()), 300));
            }
        }
        cur.at = Some(SystemTime::now());
    }
}

/// Start the balance watch and register `~/fund_from_gas_station`.
pub(super) fn register(reg: &mut Registrar, mut params: GasParams) -> Result<Arc<GasView>, StartError> {
    let view = Arc::new(GasView { reading: Mutex::new(Reading::default()), refresh: tokio::sync::Notify::new() });
    if params.station.chain_id.is_empty() {
        params.station.chain_id = reg.client.config().network.name().to_owned();
    }
    let (client, watch, policy, every) = (reg.client.clone(), Arc::clone(&view), params.policy, params.check_interval);
    let weak = Arc::downgrade(&watch);
    drop(watch);
    reg.runtime.spawn(async move {
        loop {
            let Some(v) = weak.upgrade() else { return };
            v.record(client.gas_report(&policy).await);
            let _ = tokio::time::timeout(every, v.refresh.notified()).await;
        }
    });

    const FUND: Renames = &[
        ("owner_address", "gas_station.owner_address"),
        ("faucet_base_url", "gas_station.url"),
        ("chain_id", "gas_station.chain_id"),
    ];
    let (station, refresh) = (Arc::new(params.station), Arc::clone(&view));
    service!(reg, "~/fund_from_gas_station", FundFromGasStation, renames: FUND, clone: (station, refresh), |c, req| {
        fund(c, req, &station, &refresh).await
    });
    Ok(view)
}

async fn fund(
    c: ChainClient,
    mut req: FundFromGasStation_Request,
    s: &GasStationSettings,
    view: &GasView,
) -> Result<FundFromGasStation_Response, ChainError> {
    // The code leaves the request at once, into memory that is wiped after use.
    let code = TwoFactorCode::new(std::mem::take(&mut req.two_factor_code))?;
    for (field, v, what) in [
        ("gas_station.url", &s.url, "the Gas Station's base URL"),
        ("gas_station.owner_address", &s.owner_address, "the 2FA-enrolled owner's address"),
    ] {
        if v.is_empty() {
            return Err(ChainError::Config {
                code: peaqos_chain::ErrorCode::ConfigInvalid,
                field: field.into(),
                message: format!("no Gas Station is configured: set the parameter {field} to {what}"),
            });
        }
    }
    let result = c.fund_from_gas_station(s, code).await;
    view.refresh.notify_one();
    let f = result?;
    let mut r = FundFromGasStation_Response {
        success: true,
        request_id: f.request_id.clone(),
        repeated: f.repeated,
        balance_wei: f.balance.map(|b| b.to_string()).unwrap_or_default(),
        block_number: f.included_block.unwrap_or(0),
        ..Default::default()
    };
    match f.outcome {
        FundOutcome::Funded { tx_hash, funded_amount } => {
            r.message = format!("funded {funded_amount} wei (request {})", f.request_id);
            r.status = "success".into();
            r.tx_hash = tx_hash;
            r.funded_amount = funded_amount;
        }
        FundOutcome::Skipped { current_balance, min_gas_balance } => {
            r.message =
                format!("skipped: the station found {current_balance} wei, at least its minimum {min_gas_balance}");
            r.status = "skipped".into();
            r.current_balance = current_balance;
            r.min_gas_balance = min_gas_balance;
        }
    }
    Ok(r)
}

/// A wei amount parameter: a canonical decimal uint256.
fn u256(field: &str, s: &str) -> Result<U256, ChainError> {
    let s = s.trim();
    if s == "0" {
        return Ok(U256::ZERO);
    }
    super::answer::u256(field, s)
}
