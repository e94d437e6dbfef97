//! peaqOS Machine Markets, seller side (ROS-free): the robot onboards itself into the peaqOS
//! orchestration API and stays visibly alive (issue 11; the groundwork).
//!
//! * [`wire`] — every request/response shape used, in one module (the API is a draft contract).
//! * [`client`] — the one HTTP client: auth modes, timeouts, envelopes, typed [`error`]s.
//! * [`control`] — the control socket (WebSocket, agent headers), reconnecting with backoff.
//! * [`delivery`] — the optional local delivery endpoint: bought ciphertexts over HTTP, bearer
//!   token per purchase, HTTP Range.
//! * [`secret`] — API key and agent token: from env or a 0600 file, never logged.
//! * [`state`] — durable state under the node's data dir (via `peaqos_base::fsio`).
//! * [`onboard`] — identity challenge → EIP-191 proof → `POST /machines` → `PATCH active`,
//!   idempotent and resumable.
//! * [`agent`] — agent enrollment (once) and the lease-driven heartbeat with backoff.
//! * [`offers`] — one stream listing per topic for sale, and the delivery capabilities behind them.
//! * [`purchases`] — the durable purchase state machine: seen → quoted → paid → access
//!   prepared → delivered → recorded, grants for exactly the purchased chunks, never before
//!   payment.
//! * [`settle`] — the seller's own on-chain check of a payment, and one revenue event per sale
//!   through the chain client's outbox; [`money`] — exact decimal amounts.
//! * [`seller`] — the life cycle a node runs: onboarding at start or on request, heartbeat,
//!   recovery, and a health snapshot.
//!
//! Not here yet: runtime endpoint upserts.
pub mod agent;
pub mod buyer;
pub mod client;
pub mod control;
pub mod delivery;
pub mod error;
pub mod money;
pub mod offers;
pub mod onboard;
pub mod purchases;
pub mod secret;
pub mod seller;
pub mod settle;
pub mod state;
pub mod wire;

pub use client::{Auth, ClientConfig, OrchestrationClient};
pub use error::{ApiCode, MarketError, Result};
pub use secret::Secret;
