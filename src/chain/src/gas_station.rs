//! The peaq Gas Station's funding call, as SDK 0.12.1 `gas_station.fund_from_gas_station` makes
//! it, and the durable record of its idempotency key.
//!
//! `POST {faucet_base_url}/faucet/fund` with `{"ownerAddress", "targetWalletAddress", "chainId",
//! "twoFactorCode", "requestId"}` (no auth header, 30 s timeout). Success needs HTTP 2xx **and**
//! one of the two envelopes `{"status":"success","code":"SUCCESS","data":{"txHash","fundedAmount"}}`
//! or `{"status":"skipped","code":"SUFFICIENT_BALANCE","data":{"currentBalance","minGasBalance"}}`.
//! A non-2xx JSON body `{"code","message"}` is the faucet's refusal: the SDK's own message for the
//! codes it knows (`INVALID_2FA`, `2FA_NOT_CONFIGURED`, `2FA_NOT_ACTIVE`, `2FA_LOCKED`,
//! `DUPLICATE_REQUEST`, `REQUEST_ALREADY_PROCESSED`, `RATE_LIMITED`, `CAP_EXCEEDED_OWNER`,
//! `CAP_EXCEEDED_WALLET`, `TRANSFER_FAILED`), the server's for any other code, which passes
//! through. Client codes as the SDK's: `NETWORK_ERROR`, `INVALID_RESPONSE` (not JSON),
//! `UNEXPECTED_RESPONSE` (wrong envelope).
//!
//! The one-time 2FA code ([`TwoFactorCode`]) is held only in memory, zeroized when dropped, never
//! in `Debug`, a log line, an error or a file.
//!
//! **Idempotency** ([`FundingLedger`], `<data_dir>/gas_station/`): the SDK's `requestId` (a UUID
//! v4) is written durably (`pending.json`, fsync) *before* the request is sent. A request whose
//! answer never came, or came in a shape that says nothing (`NETWORK_ERROR`, `INVALID_RESPONSE`,
//! `UNEXPECTED_RESPONSE`, `DUPLICATE_REQUEST`: the station may have funded), keeps its id, so the
//! next call — also after a restart — sends the same `requestId` and the station answers
//! `REQUEST_ALREADY_PROCESSED` instead of funding twice. A final answer (funded, skipped, or a
//! refusal with a code) moves the record to `done/<requestId>.json` and frees the slot.

use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy::primitives::Address;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::error::{redact_url, ChainError, ErrorCode, Result};

/// The SDK's timeout of a faucet call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Most bytes of a faucet answer read (a hostile server cannot exhaust the robot).
const MAX_BODY: usize = 64 * 1024;
/// Longest 2FA code accepted (TOTP codes are 6–8 digits).
const MAX_CODE_LEN: usize = 64;
/// Longest owner address / chain id accepted.
const MAX_TEXT_LEN: usize = 128;

/// The SDK's messages of the faucet codes of `/faucet/fund` (`_FUND_ERRORS`).
const FUND_ERRORS: &[(ErrorCode, &str)] = &[
    (ErrorCode::Invalid2fa, "Invalid 2FA code"),
    (ErrorCode::TwoFactorNotConfigured, "2FA not configured for this owner — call setup_faucet_2fa first"),
    (ErrorCode::TwoFactorNotActive, "2FA not yet activated — call confirm_faucet_2fa first"),
    (ErrorCode::TwoFactorLocked, "2FA locked after too many invalid attempts"),
    (ErrorCode::DuplicateRequest, "Request ID is already being processed"),
    (ErrorCode::RequestAlreadyProcessed, "Request ID has already been completed"),
    (ErrorCode::RateLimited, "Faucet rate limit exceeded"),
    (ErrorCode::CapExceededOwner, "Owner daily funding cap exceeded"),
    (ErrorCode::CapExceededWallet, "Wallet daily funding cap exceeded"),
    (ErrorCode::TransferFailed, "On-chain transfer failed"),
];

/// The request field a faucet code is about (empty: none).
fn field_of(code: ErrorCode) -> &'static str {
    match code.as_str() {
        "INVALID_2FA" | "2FA_LOCKED" => "two_factor_code",
        "2FA_NOT_CONFIGURED" | "2FA_NOT_ACTIVE" | "CAP_EXCEEDED_OWNER" | "INVALID_OWNER_ADDRESS" => "owner_address",
        "DUPLICATE_REQUEST" | "REQUEST_ALREADY_PROCESSED" => "request_id",
        "CAP_EXCEEDED_WALLET" => "target_wallet_address",
        "NETWORK_ERROR" | "INVALID_RESPONSE" | "UNEXPECTED_RESPONSE" => "faucet_base_url",
        _ => "",
    }
}

/// Whether an error leaves the station's handling of the request unknown: then its request id is
/// kept and the next call repeats it.
pub fn outcome_unknown(code: ErrorCode) -> bool {
    matches!(code.as_str(), "NETWORK_ERROR" | "INVALID_RESPONSE" | "UNEXPECTED_RESPONSE" | "DUPLICATE_REQUEST")
}

fn faucet(code: ErrorCode, status: u16, message: impl Into<String>) -> ChainError {
    ChainError::Faucet {
        code,
        field: field_of(code).into(),
        status,
        message: message.into(),
        request_id: String::new(),
    }
}

/// One line of at most `max` characters, control characters replaced (server text is untrusted).
fn one_line(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

/// A one-time 2FA (TOTP) code typed by an operator: in memory only, zeroized on drop, redacted
/// in `Debug`.
pub struct TwoFactorCode(Zeroizing<String>);

impl TwoFactorCode {
    /// The code as given (the SDK's rule: a non-empty string), at most 64 printable characters.
    pub fn new(code: String) -> Result<Self> {
        let code = Zeroizing::new(code);
        if code.is_empty() {
            return Err(ChainError::validation(
                "two_factor_code",
                "non-empty string",
                "two_factor_code must be a non-empty string",
            ));
        }
        if code.len() > MAX_CODE_LEN || code.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(ChainError::validation(
                "two_factor_code",
                "at most 64 printable characters",
                "two_factor_code must be the authenticator's code: at most 64 printable characters, no spaces",
            ));
        }
        Ok(TwoFactorCode(code))
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for TwoFactorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TwoFactorCode(<redacted>)")
    }
}

/// A non-empty text setting of at most 128 characters without spaces or control characters
/// (owner address — an EVM or SS58 address —, chain id).
pub fn check_text(field: &str, v: &str) -> Result<()> {
    if v.is_empty() || v.len() > MAX_TEXT_LEN || v.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ChainError::validation(
            field,
            "non-empty string",
            format!("{field} must be a non-empty string of at most {MAX_TEXT_LEN} characters without spaces"),
        ));
    }
    Ok(())
}

/// The faucet's answer to a funding request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case", deny_unknown_fields)]
pub enum FundOutcome {
    /// `{"status":"success","code":"SUCCESS"}`: the station sent `funded_amount` (decimal wei).
    #[serde(rename = "success")]
    Funded { tx_hash: String, funded_amount: String },
    /// `{"status":"skipped","code":"SUFFICIENT_BALANCE"}`: the wallet already holds enough.
    Skipped { current_balance: String, min_gas_balance: String },
}

/// One funding request.
#[derive(Debug)]
pub struct FundRequest<'a> {
    pub owner_address: &'a str,
    pub target_wallet_address: Address,
    pub chain_id: &'a str,
    pub two_factor_code: &'a TwoFactorCode,
    pub request_id: &'a str,
}

/// The wire body of `/faucet/fund`, in the SDK's key order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FundBody<'a> {
    owner_address: &'a str,
    target_wallet_address: &'a str,
    chain_id: &'a str,
    two_factor_code: &'a str,
    request_id: &'a str,
}

/// The Gas Station client (one base URL).
#[derive(Debug, Clone)]
pub struct GasStation {
    base: String,
    http: reqwest::Client,
}

impl GasStation {
    /// A client of the station at `faucet_base_url` (http or https; one trailing `/` trimmed as
    /// the SDK's `rstrip`).
    pub fn new(faucet_base_url: &str, timeout: Duration) -> Result<Self> {
        crate::rpc::install_crypto_provider();
        let ok = ["http://", "https://"]
            .iter()
            .any(|p| faucet_base_url.strip_prefix(p).is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/')));
        if !ok {
            return Err(ChainError::validation(
                "faucet_base_url",
                "http(s) URL",
                "faucet_base_url must be an absolute http(s) URL of the Gas Station",
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| faucet(ErrorCode::NetworkError, 0, format!("cannot build the HTTP client: {e}")))?;
        Ok(GasStation { base: faucet_base_url.trim_end_matches('/').to_string(), http })
    }

    /// `POST {base}/faucet/fund` (SDK 0.12.1 `fund_from_gas_station`).
    pub async fn fund(&self, req: &FundRequest<'_>) -> Result<FundOutcome> {
        check_text("owner_address", req.owner_address)?;
        check_text("chain_id", req.chain_id)?;
        check_text("request_id", req.request_id)?;
        let url = format!("{}/faucet/fund", self.base);
        let shown = format!("{}/faucet/fund", redact_url(&self.base));
        let target = req.target_wallet_address.to_checksum(None);
        let body = FundBody {
            owner_address: req.owner_address,
            target_wallet_address: &target,
            chain_id: req.chain_id,
            two_factor_code: req.two_factor_code.expose(),
            request_id: req.request_id,
        };
        // The body holds the code: its bytes are wiped once sent (the HTTP stack's copy is not ours).
        let bytes = Zeroizing::new(serde_json::to_vec(&body).unwrap_or_default());
        let network =
            || faucet(ErrorCode::NetworkError, 0, format!("fund_from_gas_station: network request to {shown} failed"));
        let mut resp = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(bytes.to_vec())
            .send()
            .await
            .map_err(|_| network())?;
        let status = resp.status();
        let mut raw = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    if raw.len() + c.len() > MAX_BODY {
                        return Err(faucet(
                            ErrorCode::InvalidResponse,
                            status.as_u16(),
                            format!("Faucet at {shown} returned more than {MAX_BODY} bytes"),
                        ));
                    }
                    raw.extend_from_slice(&c);
                }
                Ok(None) => break,
                Err(_) => return Err(network()),
            }
        }
        parse_fund_answer(status.as_u16(), &raw, &shown)
    }
}

/// The SDK's reading of a `/faucet/fund` answer: JSON first (`INVALID_RESPONSE`), then the
/// status (refusal codes), then the envelope (`UNEXPECTED_RESPONSE`).
pub fn parse_fund_answer(status: u16, raw: &[u8], shown_url: &str) -> Result<FundOutcome> {
    let body: Value = serde_json::from_slice(raw).map_err(|_| {
        faucet(ErrorCode::InvalidResponse, status, format!("Faucet at {shown_url} returned a non-JSON response"))
    })?;
    if !(200..300).contains(&status) {
        return Err(refusal(status, &body));
    }
    let bad = || faucet(ErrorCode::UnexpectedResponse, status, "fund_from_gas_station: unexpected response envelope");
    let data = body.get("data").and_then(Value::as_object).ok_or_else(bad)?;
    let s = |k: &str| data.get(k).and_then(Value::as_str).map(str::to_owned);
    match (body.get("status").and_then(Value::as_str), body.get("code").and_then(Value::as_str)) {
        (Some("success"), Some("SUCCESS")) => match (s("txHash"), s("fundedAmount")) {
            (Some(tx_hash), Some(funded_amount)) => Ok(FundOutcome::Funded { tx_hash, funded_amount }),
            _ => Err(bad()),
        },
        (Some("skipped"), Some("SUFFICIENT_BALANCE")) => match (s("currentBalance"), s("minGasBalance")) {
            (Some(current_balance), Some(min_gas_balance)) => {
                Ok(FundOutcome::Skipped { current_balance, min_gas_balance })
            }
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

/// SDK `_map_faucet_error`: a known code gets the SDK's message, another code the server's
/// (bounded, one line), a body without a code `UNEXPECTED_RESPONSE`.
fn refusal(status: u16, body: &Value) -> ChainError {
    let Some(code) = body.get("code").and_then(Value::as_str).filter(|c| !c.is_empty()) else {
        return faucet(ErrorCode::UnexpectedResponse, status, "fund_from_gas_station: unexpected error response");
    };
    let code_text = one_line(code, 64);
    let code = ErrorCode::parse(&code_text);
    if let Some((_, m)) = FUND_ERRORS.iter().find(|(c, _)| *c == code) {
        return faucet(code, status, *m);
    }
    match body.get("message").and_then(Value::as_str).filter(|m| !m.is_empty()) {
        Some(m) => faucet(code, status, format!("fund_from_gas_station: {}", one_line(m, 300))),
        None => faucet(code, status, format!("fund_from_gas_station: faucet error {code_text}")),
    }
}

/// A UUID v4 (the SDK's `str(uuid.uuid4())`): 122 random bits from the OS.
pub fn uuid4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// A funding request sent (or about to be) whose final answer is not known yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingFunding {
    pub request_id: String,
    pub owner_address: String,
    pub target_wallet_address: Address,
    pub chain_id: String,
    pub created_at: String,
    /// Calls that sent this request id.
    pub attempts: u32,
}

/// The final record of a funding request (`done/<request_id>.json`); never the 2FA code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FundingRecord {
    #[serde(flatten)]
    pub request: PendingFunding,
    pub finished_at: String,
    /// `funded`, `skipped`, `refused` (a faucet code) or `abandoned` (the settings changed while
    /// its outcome was unknown).
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<FundOutcome>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub code: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// `<data_dir>/gas_station/`: `pending.json` (at most one request in flight) and `done/`.
#[derive(Debug, Clone)]
pub struct FundingLedger {
    dir: PathBuf,
}

fn store_err(path: &Path, e: impl std::fmt::Display) -> ChainError {
    ChainError::store(ErrorCode::StoreIo, path, e)
}

fn fs_err(e: peaqos_base::fsio::FsError) -> ChainError {
    let code = if e.is_disk_full() { ErrorCode::StoreFull } else { ErrorCode::StoreIo };
    ChainError::store(code, &e.path.clone(), e)
}

impl FundingLedger {
    pub fn open(data_dir: &Path) -> Result<Self> {
        let dir = peaqos_base::layout::gas_station_dir(data_dir);
        peaqos_base::fsio::create_private_dir(&dir.join("done")).map_err(fs_err)?;
        Ok(FundingLedger { dir })
    }

    fn pending_path(&self) -> PathBuf {
        self.dir.join("pending.json")
    }

    /// The request in flight, if any.
    pub fn pending(&self) -> Result<Option<PendingFunding>> {
        let p = self.pending_path();
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
                ChainError::store(ErrorCode::StoreCorrupt, &p, format!("not a pending funding record: {e}"))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(store_err(&p, e)),
        }
    }

    fn save_pending(&self, p: &PendingFunding) -> Result<()> {
        let path = self.pending_path();
        let bytes = serde_json::to_vec_pretty(p).map_err(|e| store_err(&path, e))?;
        peaqos_base::fsio::write_atomic(&path, &bytes).map_err(fs_err)
    }

    /// The request id to send, durable before it returns: the pending request's when it was made
    /// for the same owner, wallet and chain (`true`: a repeat), else a new one (a pending request
    /// for other settings is recorded `abandoned` first).
    pub fn begin(&self, owner_address: &str, target: Address, chain_id: &str) -> Result<(PendingFunding, bool)> {
        if let Some(mut p) = self.pending()? {
            if p.owner_address == owner_address && p.target_wallet_address == target && p.chain_id == chain_id {
                p.attempts = p.attempts.saturating_add(1);
                self.save_pending(&p)?;
                return Ok((p, true));
            }
            tracing::warn!(
                request_id = %p.request_id,
                "gas station: the pending funding request was made for other settings; recorded as abandoned"
            );
            self.finish(
                &p,
                "abandoned",
                None,
                "",
                "the owner, wallet or chain id changed while its outcome was unknown",
            )?;
        }
        let p = PendingFunding {
            request_id: uuid4(),
            owner_address: owner_address.to_owned(),
            target_wallet_address: target,
            chain_id: chain_id.to_owned(),
            created_at: crate::journal::py_utc_now(),
            attempts: 1,
        };
        self.save_pending(&p)?;
        Ok((p, false))
    }

    /// Record the final answer (`done/<id>.json`, durable) and free the pending slot.
    pub fn finish(
        &self,
        p: &PendingFunding,
        result: &str,
        outcome: Option<FundOutcome>,
        code: &str,
        message: &str,
    ) -> Result<()> {
        let rec = FundingRecord {
            request: p.clone(),
            finished_at: crate::journal::py_utc_now(),
            result: result.into(),
            outcome,
            code: code.into(),
            message: message.into(),
        };
        let safe_id: String =
            p.request_id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
        let path = self.dir.join("done").join(format!("{safe_id}.json"));
        let bytes = serde_json::to_vec_pretty(&rec).map_err(|e| store_err(&path, e))?;
        peaqos_base::fsio::write_atomic(&path, &bytes).map_err(fs_err)?;
        let pending = self.pending_path();
        match std::fs::remove_file(&pending) {
            Ok(()) => peaqos_base::fsio::sync_dir(&self.dir).map_err(fs_err),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(store_err(&pending, e)),
        }
    }

    /// Final records, oldest first by their finish time.
    pub fn done(&self) -> Result<Vec<FundingRecord>> {
        let dir = self.dir.join("done");
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir).map_err(|e| store_err(&dir, e))? {
            let path = e.map_err(|e| store_err(&dir, e))?.path();
            if path.extension().is_some_and(|x| x == "json") {
                let b = std::fs::read(&path).map_err(|e| store_err(&path, e))?;
                let r: FundingRecord = serde_json::from_slice(&b)
                    .map_err(|e| ChainError::store(ErrorCode::StoreCorrupt, &path, e.to_string()))?;
                out.push(r);
            }
        }
        out.sort_by(|a, b| a.finished_at.cmp(&b.finished_at));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: Result<FundOutcome>) -> (String, String) {
        let e = r.unwrap_err();
        (e.code().to_owned(), e.to_string())
    }

    #[test]
    fn answers_are_read_as_the_sdk_reads_them() {
        let ok = br#"{"status":"success","code":"SUCCESS","data":{"txHash":"0xab","fundedAmount":"5"}}"#;
        assert_eq!(
            parse_fund_answer(200, ok, "u").unwrap(),
            FundOutcome::Funded { tx_hash: "0xab".into(), funded_amount: "5".into() }
        );
        let skip =
            br#"{"status":"skipped","code":"SUFFICIENT_BALANCE","data":{"currentBalance":"9","minGasBalance":"1"}}"#;
        assert!(matches!(parse_fund_answer(200, skip, "u").unwrap(), FundOutcome::Skipped { .. }));
        assert_eq!(code(parse_fund_answer(200, b"<html>", "u")).0, "INVALID_RESPONSE");
        assert_eq!(code(parse_fund_answer(502, b"oops", "u")).0, "INVALID_RESPONSE");
        assert_eq!(
            code(parse_fund_answer(200, br#"{"status":"success","code":"SUCCESS"}"#, "u")).0,
            "UNEXPECTED_RESPONSE"
        );
        assert_eq!(
            code(parse_fund_answer(
                200,
                br#"{"status":"success","code":"SUCCESS","data":{"txHash":1,"fundedAmount":"5"}}"#,
                "u"
            ))
            .0,
            "UNEXPECTED_RESPONSE"
        );
        assert_eq!(code(parse_fund_answer(400, br#"{"message":"x"}"#, "u")).0, "UNEXPECTED_RESPONSE");
        // every documented code with the SDK's message, whatever the server says
        for (c, m) in FUND_ERRORS {
            let body = format!(r#"{{"code":"{}","message":"server words"}}"#, c.as_str());
            assert_eq!(code(parse_fund_answer(400, body.as_bytes(), "u")), (c.as_str().to_owned(), m.to_string()));
        }
        // another code passes through with the server's message, bounded and on one line
        let long = format!(r#"{{"code":"NEW_CODE","message":"a\nb{}"}}"#, "x".repeat(1000));
        let (c, m) = code(parse_fund_answer(418, long.as_bytes(), "u"));
        assert_eq!(c, "NEW_CODE");
        assert!(m.starts_with("fund_from_gas_station: a b") && m.chars().count() < 340, "{m}");
        assert_eq!(
            code(parse_fund_answer(418, br#"{"code":"NEW_CODE"}"#, "u")).1,
            "fund_from_gas_station: faucet error NEW_CODE"
        );
    }

    #[test]
    fn refusals_name_their_field() {
        let e = parse_fund_answer(401, br#"{"code":"INVALID_2FA"}"#, "u").unwrap_err();
        assert_eq!(e.field(), "two_factor_code");
        let e = parse_fund_answer(429, br#"{"code":"CAP_EXCEEDED_OWNER"}"#, "u").unwrap_err();
        assert_eq!(e.field(), "owner_address");
        assert!(TwoFactorCode::new(String::new()).unwrap_err().field() == "two_factor_code");
        assert!(TwoFactorCode::new("12 34".into()).is_err());
        assert_eq!(format!("{:?}", TwoFactorCode::new("123456".into()).unwrap()), "TwoFactorCode(<redacted>)");
        assert!(GasStation::new("ftp://x", DEFAULT_TIMEOUT).is_err());
        assert!(GasStation::new("http://", DEFAULT_TIMEOUT).is_err());
        assert!(GasStation::new("http://127.0.0.1:1/", DEFAULT_TIMEOUT).is_ok());
    }

    #[test]
    fn uuid4_has_the_version_and_variant_bits() {
        let u = uuid4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"), "{u}");
        assert_ne!(u, uuid4());
    }

    #[test]
    fn a_pending_request_id_survives_a_restart_and_is_repeated() {
        let d = tempfile::tempdir().unwrap();
        let target = Address::repeat_byte(7);
        let (p, repeated) = FundingLedger::open(d.path()).unwrap().begin("0xowner", target, "peaq").unwrap();
        assert!(!repeated);
        // a restart: a new ledger on the same directory
        let l = FundingLedger::open(d.path()).unwrap();
        let (q, repeated) = l.begin("0xowner", target, "peaq").unwrap();
        assert!(repeated && q.request_id == p.request_id && q.attempts == 2);
        l.finish(&q, "funded", Some(FundOutcome::Funded { tx_hash: "0x1".into(), funded_amount: "1".into() }), "", "")
            .unwrap();
        assert!(l.pending().unwrap().is_none());
        let (r, repeated) = l.begin("0xowner", target, "peaq").unwrap();
        assert!(!repeated && r.request_id != p.request_id);
        // other settings abandon the pending one
        let (s, repeated) = l.begin("0xother", target, "peaq").unwrap();
        assert!(!repeated && s.request_id != r.request_id);
        let done = l.done().unwrap();
        assert_eq!(done.iter().map(|d| d.result.as_str()).collect::<Vec<_>>(), ["funded", "abandoned"]);
        let text = std::fs::read_to_string(d.path().join("gas_station/pending.json")).unwrap();
        assert!(text.contains(&s.request_id));
    }
}
