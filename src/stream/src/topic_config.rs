//! [`TopicStreamConfig`]: the schema of a topic's `stream:` block in the Data Event Map.
//!
//! The core keeps the block as a raw value; the node hands it here (as JSON) and reports any
//! error as `<file>: topics[i].stream.<key>: <reason>`. Unknown keys are rejected; every key is
//! optional (an empty block `stream: {}` streams the topic with the defaults).
//!
//! ```yaml
//! stream:
//!   chunk:                       # when a chunk is sealed (first limit reached wins)
//!     max_bytes: 1048576         # plaintext bytes (default 1 MiB)
//!     max_messages: 10000        # packages (default 10 000)
//!     max_age: 60                # seconds since the chunk's first package (default 60)
//!   recipients:                  # X25519 public keys (64 hex) the chunk key is wrapped to,
//!     owner: "…"                 # besides the machine's own key (always a recipient)
//!     operator: "…"
//!   destinations:                # where ciphertexts are uploaded; default [{kind: local}]
//!     - {kind: local}            # keep in the chain directory (or `dir:` to copy)
//!     - {kind: s3, endpoint: "http://127.0.0.1:9000", bucket: chunks, access_key_id: …, secret_access_key: …}
//!     - {kind: walrus, publisher_url: …, aggregator_url: …}
//!   backfill: true               # a new chain also streams the packages logged before it
//!                                # (default); false: it starts with the next package
//!   sale:                        # offered on peaqOS Machine Markets as one stream listing
//!     price: "0.05"              # per chunk, a decimal (string or number)
//!     currency: USDC
//!     listing_id: lst_battery    # optional; default derived from the topic
//!     supports_live: true        # default true
//!     payment_rails:             # at least one (ORCHESTRATION.md §2.2 listing rails)
//!       - {type: transfer, chain: "eip155:3338", token: USDC, pay_to: "0x…", token_address: "0x…"}
//!       - {type: x402, chain: base, token: USDC, facilitator_url: "https://…"}
//! ```
//!
//! The first destination's storage reference is written into the chunk envelope's
//! `storageRef`; every destination has its own durable upload queue (see [`crate::storage`]).
//!
//! Credentials (`secret_access_key`, `session_token`, `publisher_token`) written as
//! `env:NAME` are read from the environment variable `NAME` at start (so the policy file need
//! not hold secrets); a missing variable is an error naming the key.

use serde::Deserialize;

use crate::crypto;
use crate::storage::DestinationConfig;
use crate::writer::{ChunkPolicy, Recipients};

/// Owner / operator X25519 public keys (hex, optional `0x`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipientsConfig {
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub operator: Option<String>,
}

fn default_destinations() -> Vec<DestinationConfig> {
    vec![DestinationConfig::default()]
}

/// One topic's `stream:` block.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicStreamConfig {
    #[serde(default)]
    pub chunk: ChunkPolicy,
    #[serde(default)]
    pub recipients: RecipientsConfig,
    #[serde(default = "default_destinations")]
    pub destinations: Vec<DestinationConfig>,
    /// A new chain also streams the packages logged before it was configured (default true);
    /// false: it starts with the next package.
    #[serde(default = "default_true")]
    pub backfill: bool,
    /// Offered for sale on Machine Markets (one stream listing per topic).
    #[serde(default)]
    pub sale: Option<SaleConfig>,
}

/// A topic's `sale:` block: its stream listing on peaqOS Machine Markets.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaleConfig {
    /// Price per chunk: a canonical decimal (`0`, `0.05`, `12`), written as a string or a number.
    #[serde(deserialize_with = "decimal_text")]
    pub price: String,
    /// `USDC`, `USD`, `PEAQ`, …: 1..16 letters or digits.
    pub currency: String,
    /// The listing's id; default: derived from the topic name.
    #[serde(default)]
    pub listing_id: Option<String>,
    /// The topic is also sold live (new chunks as they are sealed); default true.
    #[serde(default = "default_true")]
    pub supports_live: bool,
    /// Decimals of the currency's minor unit, in which the sale's revenue event carries its
    /// value (ISO 4217: USD, EUR 2; JPY 0); default 2. The price must be whole in it.
    #[serde(default = "default_minor_units")]
    pub currency_minor_units: u32,
    pub payment_rails: Vec<PaymentRailConfig>,
}

fn default_minor_units() -> u32 {
    2
}

/// One way a buyer may pay (the listing rails of ORCHESTRATION.md §2.2 / the SDK's
/// `X402ListingRail`, `TransferListingRail`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum PaymentRailConfig {
    /// A direct token transfer to `pay_to`, verified at destination-chain finality.
    Transfer {
        chain: String,
        token: String,
        pay_to: String,
        #[serde(default)]
        token_address: Option<String>,
        /// Decimals of the token's base unit; default 6 for USDC/USDT, 18 for a native
        /// transfer (no `token_address`), required otherwise.
        #[serde(default)]
        token_decimals: Option<u32>,
    },
    /// An x402 payment, optionally through a facilitator.
    X402 {
        chain: String,
        token: String,
        #[serde(default)]
        facilitator_url: Option<String>,
    },
}

/// A decimal written as a YAML string or number, kept as its text.
fn decimal_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!("expected a decimal (string or number), got {other}"))),
    }
}

/// `0|[1-9][0-9]*` optionally followed by `.` and 1..18 digits.
fn is_canonical_decimal(s: &str) -> bool {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let int_ok = int == "0" || (!int.is_empty() && !int.starts_with('0') && int.bytes().all(|b| b.is_ascii_digit()));
    let frac_ok = frac.is_none_or(|f| (1..=18).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()));
    int_ok && frac_ok && int.len() <= 30
}

/// A path-safe id: 1..128 of `[A-Za-z0-9_.~-]`.
pub fn is_listing_id(s: &str) -> bool {
    (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.~".contains(&b))
}

impl SaleConfig {
    fn check(&self) -> Result<(), ConfigError> {
        let err = |key: &str, reason: String| ConfigError { key: format!("sale.{key}"), reason };
        if !is_canonical_decimal(&self.price) {
            return Err(err(
                "price",
                format!("must be a decimal like 0.05 (no sign, exponent or leading zeros), got {:?}", self.price),
            ));
        }
        if !(1..=16).contains(&self.currency.len()) || !self.currency.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(err("currency", format!("must be 1..16 letters or digits, got {:?}", self.currency)));
        }
        if self.currency_minor_units > 18 {
            return Err(err("currency_minor_units", format!("must be 0..=18, got {}", self.currency_minor_units)));
        }
        if let Some((_, frac)) = self.price.split_once('.') {
            if frac.len() > self.currency_minor_units as usize {
                return Err(err(
                    "price",
                    format!(
                        "{} has more decimals than the currency's minor unit ({}; set sale.currency_minor_units)",
                        self.price, self.currency_minor_units
                    ),
                ));
            }
        }
        if let Some(id) = &self.listing_id {
            if !is_listing_id(id) {
                return Err(err("listing_id", format!("must be 1..128 of A-Z a-z 0-9 _ - . ~, got {id:?}")));
            }
        }
        if self.payment_rails.is_empty() {
            return Err(err("payment_rails", "at least one payment rail is required".into()));
        }
        for (i, r) in self.payment_rails.iter().enumerate() {
            let non_empty = |k: &str, v: &str| {
                if v.trim().is_empty() {
                    Err(err(&format!("payment_rails[{i}].{k}"), "must not be empty".into()))
                } else {
                    Ok(())
                }
            };
            match r {
                PaymentRailConfig::Transfer { chain, token, pay_to, token_address, token_decimals } => {
                    non_empty("chain", chain)?;
                    non_empty("token", token)?;
                    non_empty("pay_to", pay_to)?;
                    if let Some(a) = token_address {
                        non_empty("token_address", a)?;
                    }
                    if let Some(d) = token_decimals.filter(|d| *d > 36) {
                        return Err(err(
                            &format!("payment_rails[{i}].token_decimals"),
                            format!("must be 0..=36, got {d}"),
                        ));
                    }
                }
                PaymentRailConfig::X402 { chain, token, facilitator_url } => {
                    non_empty("chain", chain)?;
                    non_empty("token", token)?;
                    if let Some(u) = facilitator_url {
                        if !(u.starts_with("http://") || u.starts_with("https://")) {
                            return Err(err(
                                &format!("payment_rails[{i}].facilitator_url"),
                                "must be an http:// or https:// URL".into(),
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

fn default_true() -> bool {
    true
}

impl Default for TopicStreamConfig {
    fn default() -> Self {
        Self {
            chunk: ChunkPolicy::default(),
            recipients: RecipientsConfig::default(),
            destinations: default_destinations(),
            backfill: true,
            sale: None,
        }
    }
}

/// The longest `chunk.max_age` (one year): longer is refused as absurd.
pub const MAX_CHUNK_AGE: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

/// A `stream:` block error: the key path below `stream` (e.g. `chunk.max_bytes`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigError {
    /// Key path below the block, e.g. `destinations[1].bucket`; empty for the block itself.
    pub key: String,
    pub reason: String,
}

impl TopicStreamConfig {
    /// Parse and check a block (JSON form of the YAML value). `null` means defaults.
    pub fn from_value(v: &serde_json::Value) -> Result<Self, ConfigError> {
        if v.is_null() {
            return Ok(Self::default());
        }
        if !v.is_object() {
            // serde would read a struct from a sequence too (`stream: []`).
            return Err(ConfigError {
                key: String::new(),
                reason: format!("must be a mapping (`{{}}` for the defaults), got {v}"),
            });
        }
        let cfg: TopicStreamConfig = serde_path_to_error::deserialize(v).map_err(|e| {
            let key = e.path().to_string();
            ConfigError { key: if key == "." { String::new() } else { key }, reason: e.into_inner().to_string() }
        })?;
        cfg.check()?;
        Ok(cfg)
    }

    /// Replace `env:NAME` credentials by the value of the environment variable `NAME`.
    pub fn resolve_env_secrets(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        use crate::storage::Secret;
        let resolve = |s: &mut Secret, key: String| -> Result<(), ConfigError> {
            if let Some(name) = s.0.strip_prefix("env:") {
                let v = env(name).filter(|v| !v.is_empty()).ok_or_else(|| ConfigError {
                    key: key.clone(),
                    reason: format!("environment variable {name} is not set"),
                })?;
                *s = Secret(v);
            }
            Ok(())
        };
        for (i, d) in self.destinations.iter_mut().enumerate() {
            match d {
                DestinationConfig::S3 { secret_access_key, session_token, .. } => {
                    resolve(secret_access_key, format!("destinations[{i}].secret_access_key"))?;
                    if let Some(t) = session_token {
                        resolve(t, format!("destinations[{i}].session_token"))?;
                    }
                }
                DestinationConfig::Walrus { publisher_token: Some(t), .. } => {
                    resolve(t, format!("destinations[{i}].publisher_token"))?
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn check(&self) -> Result<(), ConfigError> {
        let err = |key: &str, reason: &str| ConfigError { key: key.into(), reason: reason.into() };
        if self.chunk.max_bytes == 0 {
            return Err(err("chunk.max_bytes", "must be at least 1"));
        }
        if self.chunk.max_messages == 0 {
            return Err(err("chunk.max_messages", "must be at least 1"));
        }
        if self.chunk.max_age.is_zero() || self.chunk.max_age > MAX_CHUNK_AGE {
            return Err(err(
                "chunk.max_age",
                &format!("must be more than 0 and at most {} seconds", MAX_CHUNK_AGE.as_secs()),
            ));
        }
        self.recipients().map_err(|(k, r)| err(&k, &r))?;
        if self.destinations.is_empty() {
            return Err(err("destinations", "at least one destination is required (omit the key for local storage)"));
        }
        for (i, d) in self.destinations.iter().enumerate() {
            match d {
                DestinationConfig::S3 { endpoint, bucket, .. } => {
                    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                        return Err(err(&format!("destinations[{i}].endpoint"), "must be an http:// or https:// URL"));
                    }
                    if bucket.is_empty() {
                        return Err(err(&format!("destinations[{i}].bucket"), "must not be empty"));
                    }
                }
                DestinationConfig::Walrus { publisher_url, aggregator_url, .. } => {
                    for (k, u) in [("publisher_url", publisher_url), ("aggregator_url", aggregator_url)] {
                        if !(u.starts_with("http://") || u.starts_with("https://")) {
                            return Err(err(&format!("destinations[{i}].{k}"), "must be an http:// or https:// URL"));
                        }
                    }
                }
                DestinationConfig::Local { .. } => {}
            }
        }
        if let Some(sale) = &self.sale {
            sale.check()?;
        }
        Ok(())
    }

    /// Parsed recipients; an error names `recipients.<owner|operator>`.
    pub fn recipients(&self) -> Result<Recipients, (String, String)> {
        let p = |v: &Option<String>, k: &str| {
            v.as_deref()
                .map(|h| crypto::parse_x25519_public(h, k))
                .transpose()
                .map_err(|e| (format!("recipients.{k}"), format!("expected a 32-byte X25519 public key in hex: {e}")))
        };
        Ok(Recipients {
            owner: p(&self.recipients.owner, "owner")?,
            operator: p(&self.recipients.operator, "operator")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_full_block() {
        let d = TopicStreamConfig::from_value(&json!({})).unwrap();
        assert_eq!(d, TopicStreamConfig::default());
        let c = TopicStreamConfig::from_value(&json!({
            "chunk": {"max_bytes": 10, "max_messages": 3, "max_age": 0.5},
            "recipients": {"owner": "11".repeat(32)},
            "destinations": [{"kind": "local"}, {"kind": "s3", "endpoint": "http://127.0.0.1:1", "bucket": "b",
                              "access_key_id": "a", "secret_access_key": "s"}]
        }))
        .unwrap();
        assert_eq!(c.chunk.max_messages, 3);
        assert_eq!(c.destinations.len(), 2);
        assert_eq!(c.recipients().unwrap().owner, Some([0x11; 32]));
    }

    #[test]
    fn env_secrets() {
        let mut c = TopicStreamConfig::from_value(
            &json!({"destinations": [{"kind": "s3", "endpoint": "http://h", "bucket": "b",
            "access_key_id": "a", "secret_access_key": "env:S3_SECRET"}]}),
        )
        .unwrap();
        let e = c.clone().resolve_env_secrets(&|_| None).unwrap_err();
        assert_eq!(e.key, "destinations[0].secret_access_key");
        c.resolve_env_secrets(&|n| (n == "S3_SECRET").then(|| "xyz".to_string())).unwrap();
        match &c.destinations[0] {
            DestinationConfig::S3 { secret_access_key, .. } => assert_eq!(secret_access_key.0, "xyz"),
            _ => unreachable!(),
        }
    }

    #[test]
    fn errors_name_the_key() {
        let e = |v| TopicStreamConfig::from_value(&v).unwrap_err();
        assert_eq!(e(json!({"chunk": {"max_byte": 1}})).key, "chunk.max_byte");
        assert!(e(json!({"chunk": {"max_byte": 1}})).reason.contains("max_byte"));
        assert_eq!(e(json!({"chunk": {"max_bytes": "x"}})).key, "chunk.max_bytes");
        assert_eq!(e(json!({"chunk": {"max_messages": 0}})).key, "chunk.max_messages");
        assert_eq!(e(json!({"recipients": {"owner": "zz"}})).key, "recipients.owner");
        assert_eq!(e(json!({"destinations": []})).key, "destinations");
        assert!(e(json!({"destinations": [{"kind": "ftp"}]})).key.starts_with("destinations[0]"));
        assert_eq!(e(json!({"destinations": [{"kind": "s3", "endpoint": "x", "bucket": "b", "access_key_id": "a", "secret_access_key": "s"}]})).key, "destinations[0].endpoint");
        for not_a_map in [json!([]), json!(5), json!("x"), json!([{"chunk": {}}])] {
            let x = e(not_a_map.clone());
            assert!(x.key.is_empty() && x.reason.contains("must be a mapping"), "{not_a_map}: {x:?}");
        }
        let low = e(json!({"recipients": {"owner": "00".repeat(32)}}));
        assert!(low.key == "recipients.owner" && low.reason.contains("low-order"), "{low:?}");
        let b = e(json!({"bogus": 1}));
        assert!(b.key == "bogus" || b.key.is_empty(), "{b:?}");
        assert!(b.reason.contains("bogus"));
    }

    #[test]
    fn sale_block_is_strict_and_errors_name_the_key() {
        let rails = json!([{"type": "transfer", "chain": "eip155:3338", "token": "USDC", "pay_to": "0xabc"},
                           {"type": "x402", "chain": "base", "token": "USDC", "facilitator_url": "https://f"}]);
        let ok = TopicStreamConfig::from_value(
            &json!({"sale": {"price": 0.05, "currency": "USDC", "payment_rails": rails}}),
        )
        .unwrap();
        let sale = ok.sale.unwrap();
        assert_eq!((sale.price.as_str(), sale.supports_live, sale.payment_rails.len()), ("0.05", true, 2));
        assert!(TopicStreamConfig::from_value(&json!({})).unwrap().sale.is_none());
        let e = |sale: serde_json::Value| TopicStreamConfig::from_value(&json!({"sale": sale})).unwrap_err();
        let base = json!({"price": "1", "currency": "USDC", "payment_rails": rails});
        let with = |k: &str, v: serde_json::Value| {
            let mut b = base.clone();
            b[k] = v;
            b
        };
        for (sale, key) in [
            (with("price", json!("-1")), "sale.price"),
            (with("price", json!("01.5")), "sale.price"),
            (with("price", json!("1e3")), "sale.price"),
            (with("price", json!(true)), "sale.price"),
            (with("currency", json!("")), "sale.currency"),
            (with("currency", json!("US D")), "sale.currency"),
            (with("listing_id", json!("a/b")), "sale.listing_id"),
            (with("payment_rails", json!([])), "sale.payment_rails"),
            (
                with("payment_rails", json!([{"type": "transfer", "chain": "c", "token": "t", "pay_to": " "}])),
                "sale.payment_rails[0].pay_to",
            ),
            (
                with("payment_rails", json!([{"type": "x402", "chain": "c", "token": "t", "facilitator_url": "f"}])),
                "sale.payment_rails[0].facilitator_url",
            ),
        ] {
            assert_eq!(e(sale.clone()).key, key, "{sale}");
        }
        let unknown = e(with("prize", json!(1)));
        assert!(unknown.key.starts_with("sale") && unknown.reason.contains("prize"), "{unknown:?}");
        let bad_rail = e(with("payment_rails", json!([{"type": "mpp", "chain": "c", "token": "t"}])));
        assert!(bad_rail.key.starts_with("sale.payment_rails[0]") && bad_rail.reason.contains("mpp"), "{bad_rail:?}");
        let extra = e(with("payment_rails", json!([{"type": "x402", "chain": "c", "token": "t", "pay_to": "x"}])));
        assert!(extra.key.starts_with("sale.payment_rails[0]") && extra.reason.contains("pay_to"), "{extra:?}");
        assert!(e(json!({"currency": "USDC", "payment_rails": rails})).reason.contains("price"));
    }
}
