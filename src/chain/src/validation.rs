//! `submit_event` parameter validation, exactly as SDK 0.12.1 `validate_submit_event_params`
//! (SPEC §3.8; identical in 0.11.2).
//!
//! Order (first failure wins): machine_id → event_type → value type guard (`TYPE_ERROR`, the
//! SDK's `TypeError`) → value ≥ 0 → trust_level → source_chain_id → raw_data non-empty →
//! source_tx_hash length 66 → timestamp > 0 → trust 1 needs source_tx_hash → currency.
//! Currency: [`Currency::Omitted`] is the single-submit smart default (`"USD"` for revenue, `""`
//! for activity, resolved by [`resolve_single`]); batch submits require it per event
//! ([`resolve_batch_item`]); [`Currency::Null`] is always rejected.
//!
//! Inputs arrive from ROS as text, so the loosely-typed wrappers ([`MachineIdInput`],
//! [`ValueInput`]) keep what the SDK would have seen (a Python `int` vs a `float`/`str`).

use alloy::primitives::{keccak256, Address, B256, U256};

use crate::error::{ChainError, Result};

/// The EventRegistry's `MAX_METADATA_SIZE` (contracts 2.0 and 1.0 on EVM): the most metadata
/// bytes one event carries.
pub const MAX_METADATA_SIZE: usize = 1024;

/// Batch precompile array limit (2^9).
pub const MAX_BATCH_EVENTS: usize = 512;

/// `SUPPORTED_CHAINS` values of SDK `constants.py` plus 0.
pub const VALID_SOURCE_CHAIN_IDS: [i128; 7] = [0, 3338, 1, 8453, 137, 42161, 10];

/// SDK address rule: `0x` + exactly 40 hex digits (either case), nothing around them
/// (`0X…`, no prefix, whitespace are refused).
pub fn parse_address(field: &str, s: &str) -> Result<Address> {
    let ok = s.len() == 42 && s.starts_with("0x") && s.as_bytes()[2..].iter().all(u8::is_ascii_hexdigit);
    if !ok {
        return Err(ChainError::validation(field, "address", format!("{field} must be 0x followed by 40 hex digits")));
    }
    s.parse::<Address>()
        .map_err(|_| ChainError::validation(field, "address", format!("{field} must be 0x followed by 40 hex digits")))
}

/// Machine id as received. `from_decimal` applies SDK `parse_machine_id` (canonical decimal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineIdInput(pub U256);

impl MachineIdInput {
    /// SDK `parse_machine_id`: ASCII digits, no sign/whitespace/leading zeros, ≤ 2^256-1.
    pub fn from_decimal(field: &str, s: &str) -> Result<Self> {
        let canonical = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
        if !canonical {
            return Err(ChainError::validation(
                field,
                "canonical uint256 decimal string",
                format!("{field} must be a canonical uint256 decimal string"),
            ));
        }
        U256::from_str_radix(s, 10).map(MachineIdInput).map_err(|_| {
            ChainError::validation(field, "0 <= value < 2**256", format!("{field} must be between 0 and 2**256 - 1"))
        })
    }
}

/// Event value as received. Only [`ValueInput::Int`] passes the type guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueInput {
    /// An integer: sign + magnitude (negative values fail the `>= 0` rule, not the type guard).
    Int { negative: bool, magnitude: U256 },
    /// Anything else, with the Python type name the SDK would print (`float`, `str`, `bool`).
    NotInt { type_name: String },
}

impl ValueInput {
    pub fn from_u128(v: u128) -> Self {
        ValueInput::Int { negative: false, magnitude: U256::from(v) }
    }
    pub fn from_i128(v: i128) -> Self {
        ValueInput::Int { negative: v < 0, magnitude: U256::from(v.unsigned_abs()) }
    }
    /// Parse text from a ROS field: a canonical decimal integer (`"123"`, `"0"`, `"-1"`: no
    /// sign `+`, no whitespace, no leading zeros, no `-0`) is an int; `"1.5"`, `"1e3"` are
    /// `float`; anything else (`" 5"`, `"05"`, `"+5"`, `"5\n"`) is `str`, which the SDK's type
    /// guard refuses, as it refuses anything but a Python int.
    pub fn parse(text: &str) -> Self {
        let (neg, digits) = match text.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, text),
        };
        let integer_shaped = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
        let canonical = integer_shaped && (digits == "0" || !digits.starts_with('0')) && !(neg && digits == "0");
        if canonical {
            if let Ok(m) = U256::from_str_radix(digits, 10) {
                return ValueInput::Int { negative: neg, magnitude: m };
            }
        }
        let t = text;
        let float_shaped = !integer_shaped && !t.bytes().any(|b| b.is_ascii_whitespace() || b == b'+');
        if float_shaped && t.parse::<f64>().is_ok() {
            return ValueInput::NotInt { type_name: "float".into() };
        }
        ValueInput::NotInt { type_name: "str".into() }
    }
}

/// Currency argument: omitted (smart default, single only), explicit null, or a string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Currency {
    #[default]
    Omitted,
    Null,
    Code(String),
}

/// SDK `SubmitEventParams`, with integer fields wide enough to carry invalid values to the
/// validator (so the error is the SDK's, not a parse failure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitEventParams {
    pub machine_id: MachineIdInput,
    pub event_type: i64,
    pub value: ValueInput,
    pub timestamp: i64,
    pub raw_data: Option<Vec<u8>>,
    pub trust_level: i64,
    pub source_chain_id: i128,
    pub source_tx_hash: Option<String>,
    pub metadata: Vec<u8>,
    pub currency: Currency,
}

/// A validated event, ready for encoding (`submitEvent` arguments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidEvent {
    pub machine_id: U256,
    pub event_type: u8,
    pub value: U256,
    pub currency: String,
    pub timestamp: U256,
    pub data_hash: B256,
    pub trust_level: u8,
    pub source_chain_id: U256,
    pub source_tx_hash: B256,
    pub metadata: Vec<u8>,
}

/// SDK `compute_data_hash`: keccak256(raw_data), or zero when there is no raw data.
pub fn data_hash(raw_data: Option<&[u8]>) -> B256 {
    raw_data.map(keccak256).unwrap_or(B256::ZERO)
}

fn currency_shape_ok(c: &str) -> bool {
    // Python `\A[A-Z0-9]{3,10}\Z`: no trailing newline accepted.
    (3..=10).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// `validate_submit_event_params` (currency `Omitted` passes, as the SDK sentinel does).
// Over 100 lines: the SDK's checks, flat and in its order, to read beside `validate_submit_event_params`.
pub fn validate(p: &SubmitEventParams) -> Result<()> {
    if p.machine_id.0.is_zero() {
        return Err(ChainError::validation("machine_id", "> 0", "machine_id must be a positive integer"));
    }
    if !(0..=1).contains(&p.event_type) {
        return Err(ChainError::validation("event_type", "0 or 1", "event_type must be 0 or 1"));
    }
    match &p.value {
        ValueInput::NotInt { type_name } => {
            return Err(ChainError::Type {
                field: "value".into(),
                message: format!(
                    "value must be a subunit integer (e.g. HK$1.23 → value=123, currency='HKD'); got {type_name}. Use ISO 4217 minor units; partner is responsible for conversion."
                ),
            })
        }
        ValueInput::Int { negative: true, .. } => {
            return Err(ChainError::validation("value", ">= 0", "value must be non-negative"))
        }
        ValueInput::Int { .. } => {}
    }
    if !(0..=2).contains(&p.trust_level) {
        return Err(ChainError::validation("trust_level", "0, 1, or 2", "trust_level must be 0, 1, or 2"));
    }
    if !VALID_SOURCE_CHAIN_IDS.contains(&p.source_chain_id) {
        return Err(ChainError::validation(
            "source_chain_id",
            "supported chain",
            "source_chain_id must be a supported chain ID (0, 3338, or 8453)",
        ));
    }
    if matches!(&p.raw_data, Some(d) if d.is_empty()) {
        return Err(ChainError::validation("raw_data", "non-empty", "raw_data must not be empty when provided"));
    }
    if let Some(h) = &p.source_tx_hash {
        // Python len() counts code points.
        if h.chars().count() != 66 {
            return Err(ChainError::validation(
                "source_tx_hash",
                "32 bytes",
                "source_tx_hash must be a 0x-prefixed 32-byte hex string (66 chars)",
            ));
        }
    }
    if p.timestamp <= 0 {
        return Err(ChainError::validation("timestamp", "> 0", "timestamp must be a positive integer"));
    }
    if p.trust_level == 1 && p.source_tx_hash.is_none() {
        return Err(ChainError::validation(
            "source_tx_hash",
            "required when trust_level is 1",
            "source_tx_hash is required when trust_level is 1 (on-chain verifiable)",
        ));
    }
    match &p.currency {
        Currency::Omitted => {}
        Currency::Null => {
            return Err(ChainError::validation(
                "currency",
                "must be a string (None forbidden)",
                "currency must not be None; omit the kwarg to use the smart default (single-event only) or pass an explicit string",
            ))
        }
        Currency::Code(c) => {
            if p.event_type == 0 && !currency_shape_ok(c) {
                return Err(ChainError::validation(
                    "currency",
                    "^[A-Z0-9]{3,10}$",
                    "revenue events require currency matching ^[A-Z0-9]{3,10}$ (uppercase alphanumeric, 3-10 chars)",
                ));
            }
            if p.event_type == 1 && !c.is_empty() {
                return Err(ChainError::validation(
                    "currency",
                    "must be \"\"",
                    "activity events require an empty currency string",
                ));
            }
        }
    }
    Ok(())
}

fn finish(p: &SubmitEventParams, currency: String) -> Result<ValidEvent> {
    let value = match &p.value {
        ValueInput::Int { magnitude, .. } => *magnitude,
        ValueInput::NotInt { .. } => unreachable!("validated"),
    };
    let source_tx_hash = match &p.source_tx_hash {
        None => B256::ZERO,
        // The SDK does not check hex content; web3 then fails to encode non-hex. We refuse it here
        // with the same field so nothing undecodable is stored.
        Some(h) => h.parse::<B256>().map_err(|_| {
            ChainError::validation(
                "source_tx_hash",
                "32 bytes",
                "source_tx_hash must be a 0x-prefixed 32-byte hex string (66 chars)",
            )
        })?,
    };
    Ok(ValidEvent {
        machine_id: p.machine_id.0,
        event_type: p.event_type as u8,
        value,
        currency,
        timestamp: U256::from(p.timestamp as u64),
        data_hash: data_hash(p.raw_data.as_deref()),
        trust_level: p.trust_level as u8,
        source_chain_id: U256::from(p.source_chain_id as u128),
        source_tx_hash,
        metadata: p.metadata.clone(),
    })
}

/// Single `submit_event`: validate, then apply the smart currency default.
pub fn resolve_single(p: &SubmitEventParams) -> Result<ValidEvent> {
    validate(p)?;
    let currency = match &p.currency {
        Currency::Code(c) => c.clone(),
        _ => {
            if p.event_type == 0 {
                "USD".to_string()
            } else {
                String::new()
            }
        }
    };
    finish(p, currency)
}

/// One item of `batch_submit_events`: currency is required (no smart default), checked before
/// the other rules as the SDK's `_coerce_params` does.
pub fn resolve_batch_item(p: &SubmitEventParams) -> Result<ValidEvent> {
    if p.currency == Currency::Omitted {
        return Err(ChainError::validation(
            "currency",
            "required (no smart default in batch mode)",
            "currency is required per event in batch_submit_events (no smart default in batch mode; use single-event submit_event for the omit-and-default ergonomics). Construct SubmitEventParams with an explicit currency ('USD'/'HKD'/etc for revenue, '' for activity).",
        ));
    }
    validate(p)?;
    let Currency::Code(c) = &p.currency else { unreachable!("validated") };
    finish(p, c.clone())
}

/// Validate a whole batch (non-empty; every item before anything is sent).
pub fn resolve_batch(items: &[SubmitEventParams]) -> Result<Vec<ValidEvent>> {
    if items.is_empty() {
        return Err(ChainError::validation("events", "non-empty list", "events must contain at least one item"));
    }
    items.iter().map(resolve_batch_item).collect()
}

/// `validate_event` service: validate like a single submit and return the data hash
/// (keccak256(raw_data) or zero).
pub fn validate_event(p: &SubmitEventParams) -> Result<B256> {
    resolve_single(p).map(|e| e.data_hash)
}
