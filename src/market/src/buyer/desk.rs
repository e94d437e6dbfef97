//! What the ROS layer sees of the buyer: a goal in, progress out, a result at the end.
//!
//! The node maps [`OrderDesk`] onto the `~/market_order` action (goal → [`OrderDesk::place`],
//! feedback and result ← [`OrderDesk::watch`], cancel → [`OrderDesk::cancel`]) and onto the
//! `~/market_order_status` service (by order key). Nothing here carries a key or a token.
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// One order as a robot node asks for it (the action's goal).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderGoal {
    /// What to buy; the search's `serviceType`.
    pub service_type: String,
    /// A listed service id; empty: the best quote of the search.
    pub service_id: String,
    pub operation: String,
    /// The operation's input, a JSON object (empty: `{}`).
    pub input_json: String,
    /// The most to pay, a decimal in `currency` (empty: only the delegation limits apply).
    pub budget: String,
    /// The budget's currency (empty: the delegation policy's).
    pub currency: String,
    /// The caller's idempotency key: a goal whose key was used answers that same order.
    pub client_key: String,
}

/// The steps an order reports as feedback, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Accepted,
    Searched,
    Quoted,
    Ordered,
    PaymentIntent,
    Paid,
    ProofAccepted,
    Executing,
    Done,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Accepted => "accepted",
            Step::Searched => "searched",
            Step::Quoted => "quoted",
            Step::Ordered => "ordered",
            Step::PaymentIntent => "payment_intent",
            Step::Paid => "paid",
            Step::ProofAccepted => "proof_accepted",
            Step::Executing => "executing",
            Step::Done => "done",
        }
    }
}

/// How an order ended (the action's result).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderResult {
    pub success: bool,
    /// A named code; empty on success.
    pub error_code: String,
    pub error_field: String,
    pub message: String,
    pub order_key: String,
    pub order_id: String,
    pub state: String,
    pub payment_reference: String,
    pub amount: String,
    pub currency: String,
    pub run_json: String,
    pub outcome_json: String,
    pub handoff_json: String,
}

/// An order's progress as last published: its step, and the result once it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderProgress {
    pub order_key: String,
    pub order_id: String,
    pub step: Step,
    pub detail: String,
    /// `Some` once the order reached an end state (executed, handoff, failed, cancelled).
    pub result: Option<OrderResult>,
    /// Every step this order reported since the node started, in order, with its detail: a
    /// watch channel keeps only the latest value, so a watcher that was slower than two steps
    /// finds the one it missed here (at most one entry per step; empty in a desk that keeps none).
    pub trail: Vec<(Step, String)>,
}

/// The buyer as the node drives it.
pub trait OrderDesk: Send + Sync + 'static {
    /// Store the goal durably and start the order; returns its order key (`ord-…`). A goal with a
    /// `client_key` already used returns that order's key. Refuses a malformed goal (the error
    /// names the field) before anything is stored.
    fn place(&self, goal: OrderGoal) -> Result<String>;
    /// The order's progress, updated at every step until it ends; `None` for an unknown key.
    fn watch(&self, order_key: &str) -> Option<tokio::sync::watch::Receiver<OrderProgress>>;
    /// Cancel an order: honoured before its payment was signed, refused after (the error says
    /// why, with code `PAYMENT_SENT`), a no-op for an order that already ended.
    fn cancel(&self, order_key: &str) -> Result<()>;
}
