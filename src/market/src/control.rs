//! The seller's control socket (ORCHESTRATION.md §2.3): a WebSocket to
//! `ws(s)://<host><base path>/api/v1/machines/{machineId}/control-socket`, authenticated with the
//! `x-machine-agent-id` / `x-machine-agent-token` headers (nothing in the URL). The server greets
//! with `control.connected` and then pushes `{type, payload, createdAt}` notifications
//! (`purchase.created`, `purchase.payment_proof.recorded`, …).
//!
//! [`run`] keeps the socket up: it reconnects with exponential backoff and jitter
//! ([`crate::agent::backoff_delay`]) and reports [`Signal::Connected`] after every (re)connect, so
//! the caller polls what it may have missed while disconnected. Never logs the token.
use peaqos_http::rustls;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

use crate::agent::{backoff_delay, AgentCredentials, HeartbeatPolicy};
use crate::error::{MarketError, Result};

/// What the socket tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// (Re)connected: poll whatever may have been missed.
    Connected,
    /// A notification about a purchase (`purchase.*`), with its id.
    Purchase { kind: String, purchase_id: String },
    /// Disconnected (the reason, without secrets); a reconnect follows.
    Disconnected(String),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Frame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    payload: Option<serde_json::Value>,
}

/// `ws(s)://…/api/v1/machines/{id}/control-socket` from the orchestration base URL.
pub fn socket_url(base_url: &str, machine_id: &str) -> Result<String> {
    let bad = |m: &str| MarketError::Config { field: "orchestration_url", message: m.to_string() };
    let base = base_url.trim().trim_end_matches('/');
    let rest = if let Some(r) = base.strip_prefix("https://") {
        format!("wss://{r}")
    } else if let Some(r) = base.strip_prefix("http://") {
        format!("ws://{r}")
    } else {
        return Err(bad("must be an http(s) URL"));
    };
    if !machine_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.~".contains(&b)) || machine_id.is_empty() {
        return Err(MarketError::validation("machineId", "must be a non-blank id of letters, digits and _-.~"));
    }
    Ok(format!("{rest}/api/v1/machines/{machine_id}/control-socket"))
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn connect_stream(url: &str) -> std::result::Result<Box<dyn Io>, String> {
    let u = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    let host = u.host_str().ok_or("no host")?.to_string();
    let tls = u.scheme() == "wss";
    let port = u.port().unwrap_or(if tls { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(|e| e.to_string())?;
    if !tls {
        return Ok(Box::new(tcp));
    }
    let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host).map_err(|e| e.to_string())?;
    let s = tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await.map_err(|e| e.to_string())?;
    Ok(Box::new(s))
}

/// One connection: until it drops or `shutdown`. `Ok(true)` = it had connected.
async fn session(
    url: &str,
    creds: &AgentCredentials,
    tx: &mpsc::Sender<Signal>,
    shutdown: &mut watch::Receiver<bool>,
) -> std::result::Result<(), String> {
    let mut req = url.into_client_request().map_err(|e| e.to_string())?;
    let h = req.headers_mut();
    h.insert("x-machine-agent-id", HeaderValue::from_str(&creds.agent_id).map_err(|e| e.to_string())?);
    let mut token = HeaderValue::from_str(creds.token.expose()).map_err(|_| "agent token is not a header value")?;
    token.set_sensitive(true);
    h.insert("x-machine-agent-token", token);
    let stream = connect_stream(url).await?;
    let (mut ws, _) = tokio_tungstenite::client_async(req, stream).await.map_err(|e| e.to_string())?;
    let _ = tx.send(Signal::Connected).await;
    loop {
        tokio::select! {
            _ = shutdown.changed() => {
                let _ = ws.close(None).await;
                return Ok(());
            }
            msg = ws.next() => {
                let text = match msg {
                    None => return Err("closed by the server".into()),
                    Some(Err(e)) => return Err(e.to_string()),
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Close(_))) => return Err("closed by the server".into()),
                    Some(Ok(_)) => continue,
                };
                let Ok(f) = serde_json::from_str::<Frame>(&text) else {
                    tracing::warn!("market control socket: a message that is not a JSON notification was ignored");
                    continue;
                };
                if !f.kind.starts_with("purchase.") {
                    continue;
                }
                let id = f.payload.as_ref().and_then(|p| p.get("purchaseId")).and_then(|v| v.as_str());
                match id {
                    Some(id) => {
                        let _ = tx.send(Signal::Purchase { kind: f.kind, purchase_id: id.to_string() }).await;
                    }
                    None => tracing::warn!(kind = %f.kind, "market control socket: notification without payload.purchaseId"),
                }
            }
        }
    }
}

/// Keep the control socket of `creds`' machine up until `shutdown` turns true; signals go to `tx`.
pub async fn run(
    base_url: String,
    creds: AgentCredentials,
    policy: HeartbeatPolicy,
    tx: mpsc::Sender<Signal>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let url = socket_url(&base_url, &creds.machine_id)?;
    let mut failures = 0u32;
    loop {
        if *shutdown.borrow() || shutdown.has_changed().is_err() {
            return Ok(());
        }
        let started = tokio::time::Instant::now();
        let why = match session(&url, &creds, &tx, &mut shutdown).await {
            Ok(()) => return Ok(()),
            Err(why) => why,
        };
        // a session that lasted resets the backoff
        failures = if started.elapsed() > Duration::from_secs(30) { 1 } else { failures.saturating_add(1) };
        let d = backoff_delay(&policy, failures);
        tracing::warn!(retry_in_ms = d.as_millis() as u64, reason = %why, "market control socket disconnected");
        let _ = tx.send(Signal::Disconnected(why)).await;
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = shutdown.changed() => {}
        }
    }
}
