//! One step of an order, by state (ORCHESTRATION.md §5 "Robot as buyer"): search → order →
//! payment intent → limits → pay through the outbox → proof → execute. Each step writes the
//! record of the state it reached; a step that fails leaves the record as it was, so a retry (or
//! a restart) does the same step again, and every step is safe to do again:
//! * the payment goes through `ChainClient::enqueue_payment_once` keyed by the order, so it is
//!   stored once and never signed twice;
//! * a proof is re-submitted as is (the server answers the same payment);
//! * an order created just before a crash is looked up (`GET /market/orders`) before a new one is
//!   created;
//! * execute is re-sent (the server answers the saved execution).
use serde_json::Value;

use super::desk::Step;
use super::driver::{now, result_of, today, Buyer};
use super::pairing::Session;
use super::pay;
use super::record::{OrderRecord, OrderState};
use crate::error::{MarketError, Result};
use crate::money::Amount;
use crate::wire::{self, Execution};

/// The order waits (shown as its feedback detail) and is tried again later.
fn waiting(message: impl Into<String>) -> MarketError {
    MarketError::Refused { code: "WAITING", field: String::new(), message: message.into() }
}

fn refuse(code: &'static str, field: &str, message: String) -> MarketError {
    MarketError::Refused { code, field: field.to_string(), message }
}

impl Buyer {
    /// The machine record (`mach_…`) and a live agent session.
    async fn session(&self) -> Result<Session> {
        let machine = self.inner.market.load_machine()?;
        let Some(machine_id) = machine.and_then(|m| m.machine_id) else {
            return Err(waiting("the machine is not onboarded into Machine Markets yet"));
        };
        self.inner.pairing.session(&machine_id).await
    }

    pub(super) async fn step(&self, rec: OrderRecord) -> Result<()> {
        let mut next = match rec.state {
            OrderState::Requested => self.search(rec).await?,
            OrderState::Quoted => OrderRecord { state: OrderState::Ordering, ..rec },
            OrderState::Ordering => self.create_order(rec).await?,
            OrderState::Ordered => self.payment_intent(rec).await?,
            OrderState::PaymentDue => return self.commit_spend(rec).await,
            OrderState::Paying => self.pay(rec).await?,
            OrderState::Paid => self.prove(rec).await?,
            OrderState::ProofAccepted => OrderRecord { state: OrderState::Executing, ..rec },
            OrderState::Executing => self.execute(rec).await?,
            _ => return Ok(()),
        };
        next.waiting = None;
        next.updated_at = now();
        self.update(next)
    }

    /// `POST /market/search` as this agent.
    pub(super) async fn run_search(
        &self,
        service_type: &str,
        operation: &str,
        budget: Option<Amount>,
        currency: &str,
    ) -> Result<wire::MarketSearch> {
        let s = self.session().await?;
        let currency = if currency.is_empty() { self.inner.policy.currency.clone() } else { currency.to_string() };
        let req = wire::MarketSearchRequest {
            machine_id: Some(s.machine_id.clone()),
            agent_pairing_id: Some(s.pairing_id.clone()),
            operation: (!operation.is_empty()).then(|| operation.to_string()),
            service_type: (!service_type.is_empty()).then(|| service_type.to_string()),
            max_results: Some(20),
            budget: budget.map(|b| wire::BudgetWire {
                max: Some(b.to_number()),
                currency: (!currency.is_empty()).then(|| currency.clone()),
                ..Default::default()
            }),
        };
        self.inner.client.market_search(&s.token, &req).await
    }

    /// Search without ordering (`~/market_search`): the search id and its quotes, best first,
    /// each marked whether the delegation policy allows it.
    pub async fn search_quotes(
        &self,
        service_type: &str,
        operation: &str,
        budget: &str,
        currency: &str,
    ) -> Result<(String, Vec<Value>)> {
        let budget = (!budget.is_empty()).then(|| Amount::parse(budget, "budget")).transpose();
        let budget = budget.map_err(|m| MarketError::validation("budget", m))?;
        if service_type.trim().is_empty() {
            return Err(MarketError::validation("service_type", "must not be empty"));
        }
        let mut found = self.run_search(service_type, operation, budget, currency).await?;
        found.quotes.sort_by(|a, b| b.score.total_cmp(&a.score));
        let quotes = found
            .quotes
            .iter()
            .map(|q| {
                serde_json::json!({
                    "quoteId": q.id, "serviceId": q.service_id, "skillKey": q.skill_key,
                    "providerKey": q.provider_key, "executionMode": q.execution_mode, "operation": q.operation,
                    "score": q.score, "amount": q.pricing.amount, "currency": q.pricing.currency,
                    "rail": q.payment.default_rail,
                    "allowed": self.inner.policy.check_service(&q.service_id, &q.skill_key).is_ok(),
                })
            })
            .collect();
        Ok((found.id, quotes))
    }

    async fn search(&self, mut rec: OrderRecord) -> Result<OrderRecord> {
        let g = &rec.goal;
        let budget = (!g.budget.is_empty()).then(|| Amount::parse(&g.budget, "budget")).transpose();
        let budget = budget.map_err(|m| MarketError::validation("budget", m))?;
        let found = self.run_search(&g.service_type, &g.operation, budget, &g.currency).await?;
        self.announce(&rec, Step::Searched, format!("search {}: {} quote(s)", found.id, found.quotes.len()));
        let mut quotes: Vec<_> =
            found.quotes.into_iter().filter(|q| g.service_id.is_empty() || q.service_id == g.service_id).collect();
        if quotes.is_empty() {
            let what =
                if g.service_id.is_empty() { format!("type {:?}", g.service_type) } else { g.service_id.clone() };
            return Err(refuse("NO_MATCH", "service_type", format!("no quote for {what} / {:?}", g.operation)));
        }
        quotes.sort_by(|a, b| b.score.total_cmp(&a.score));
        let mut refusal = None;
        for q in quotes {
            if let Err(e) = self.inner.policy.check_service(&q.service_id, &q.skill_key) {
                refusal.get_or_insert(e);
                continue;
            }
            let price = q.pricing.amount.as_ref().map(|n| Amount::from_number(n, "pricing.amount")).transpose();
            let price = price.map_err(|m| MarketError::shape("market search", m))?;
            if let (Some(p), Some(b)) = (price, budget) {
                if p > b {
                    refusal.get_or_insert(refuse(
                        "BUDGET_EXCEEDED",
                        "budget",
                        format!("quote {} asks {p}, the budget is {b}", q.id),
                    ));
                    continue;
                }
            }
            rec.search_id = Some(found.id.clone());
            rec.quote_id = Some(q.id);
            rec.service_id = Some(q.service_id);
            rec.skill_key = Some(q.skill_key);
            rec.quote_amount = price.map(|p| p.to_string());
            rec.quote_currency = q.pricing.currency.or(q.payment.token);
            rec.state = OrderState::Quoted;
            return Ok(rec);
        }
        Err(refusal.unwrap_or_else(|| refuse("NO_MATCH", "service_type", "no quote fits".into())))
    }

    async fn create_order(&self, mut rec: OrderRecord) -> Result<OrderRecord> {
        let s = self.session().await?;
        // A crash may have created the order after `Ordering` was written: look for it first
        // (platform auth; without an API key the server refuses and a new order is created, an
        // unpaid duplicate at worst).
        let existing = match self.inner.client.list_orders(&s.machine_id).await {
            Ok(list) => list
                .into_iter()
                .find(|o| o.quote_id.is_some() && o.quote_id == rec.quote_id && o.agent_pairing_id == s.pairing_id),
            Err(e) if e.is_retryable() => return Err(e),
            Err(_) => None,
        };
        let order = match existing {
            Some(o) => {
                tracing::info!(order = %rec.key, id = %o.id, "market: found the order created before the restart");
                o
            }
            None => {
                let g = &rec.goal;
                let input: Option<Value> = (!g.input_json.trim().is_empty())
                    .then(|| serde_json::from_str(&g.input_json))
                    .transpose()
                    .map_err(|e| MarketError::validation("input_json", e.to_string()))?;
                let budget = rec.quote_amount.as_deref().and_then(|a| Amount::parse(a, "amount").ok());
                let req = wire::CreateOrderRequest {
                    machine_id: s.machine_id.clone(),
                    agent_pairing_id: s.pairing_id.clone(),
                    service_id: rec.service_id.clone().unwrap_or_default(),
                    search_id: rec.search_id.clone(),
                    quote_id: rec.quote_id.clone(),
                    operation: Some(g.operation.clone()),
                    input,
                    budget: budget.map(|b| wire::BudgetWire {
                        amount: Some(b.to_number()),
                        currency: rec.quote_currency.clone(),
                        ..Default::default()
                    }),
                };
                self.inner.client.create_order(&s.token, &req).await?
            }
        };
        rec.payment_required = order.payment.required && order.payment.default_rail != "not-required";
        rec.order_id = Some(order.id);
        rec.state = OrderState::Ordered;
        Ok(rec)
    }

    async fn payment_intent(&self, mut rec: OrderRecord) -> Result<OrderRecord> {
        if !rec.payment_required {
            rec.state = OrderState::Executing;
            return Ok(rec);
        }
        // Refuse what the limits cannot allow before the server even prepares a payment (checked
        // again, exactly, before the payment is signed).
        if let (Some(q), Some(c)) = (&rec.quote_amount, &rec.quote_currency) {
            let quoted = Amount::parse(q, "quote").map_err(|m| MarketError::validation("quote", m))?;
            let budget =
                (!rec.goal.budget.is_empty()).then(|| Amount::parse(&rec.goal.budget, "budget").ok()).flatten();
            self.inner.policy.check_spend(quoted, c, self.spent_today(c), budget)?;
        }
        let s = self.session().await?;
        let order_id = rec.order_id.clone().unwrap_or_default();
        let payer = self.inner.chain.signer_address().to_checksum(None);
        let req = wire::PaymentIntentRequest {
            rail: Some(wire::RailRequest { payer_address: Some(payer.clone()), ..Default::default() }),
            amount: rec.quote_amount.as_deref().and_then(|a| Amount::parse(a, "amount").ok()).map(Amount::to_number),
            currency: rec.quote_currency.clone(),
        };
        let payment = self.inner.client.payment_intent(&s.token, &order_id, &req).await?;
        let chain_id = self.inner.chain.config().chain_id;
        rec.payment = Some(pay::plan(&payment, &rec, chain_id, &payer, &today())?);
        rec.state = OrderState::PaymentDue;
        Ok(rec)
    }

    /// The delegation limits and the budget, then `Paying`, atomically with the other orders'
    /// spends and with a cancel.
    async fn commit_spend(&self, mut rec: OrderRecord) -> Result<()> {
        let _one = self.inner.spend.lock().await;
        let Some(plan) = rec.payment.as_mut() else {
            return Err(MarketError::validation("payment", "no payment plan"));
        };
        plan.day = today();
        let amount =
            Amount::parse(&plan.amount, "payment.amount").map_err(|m| MarketError::validation("payment.amount", m))?;
        let budget = (!rec.goal.budget.is_empty()).then(|| Amount::parse(&rec.goal.budget, "budget").ok()).flatten();
        let spent = self.spent_today(&plan.currency);
        self.inner.policy.check_spend(amount, &plan.currency, spent, budget)?;
        rec.state = OrderState::Paying;
        rec.waiting = None;
        rec.updated_at = now();
        if self.commit_payment(rec)? {
            Ok(())
        } else {
            Err(waiting("cancel requested"))
        }
    }

    async fn pay(&self, mut rec: OrderRecord) -> Result<OrderRecord> {
        let plan = rec.payment.clone().ok_or_else(|| MarketError::validation("payment", "no payment plan"))?;
        let key = format!("market-pay:{}", rec.key);
        let (intent, new) =
            self.inner.chain.enqueue_payment_once(&key, &pay::transfer(&plan)?).map_err(MarketError::from_chain)?;
        if new {
            tracing::info!(order = %rec.key, intent = %intent, amount = %plan.amount, currency = %plan.currency, to = %plan.pay_to, "market: payment stored in the outbox");
        }
        if rec.intent_id.as_deref() != Some(intent.as_str()) {
            rec.intent_id = Some(intent.clone());
            self.update(rec.clone())?;
        }
        match self.inner.chain.outbox().wait(&intent, self.inner.cfg.payment_wait).await {
            Ok(outcome) => {
                rec.tx_hash = Some(format!("{:#x}", outcome.tx_hash));
                rec.state = OrderState::Paid;
                Ok(rec)
            }
            Err(e) if e.code() == "RECEIPT_AWAIT_FAILED" => Err(waiting(format!("payment {intent} not included yet"))),
            Err(e) => {
                if let Some(p) = rec.payment.as_mut() {
                    p.failed = true; // nothing moved: it no longer counts against the limits
                }
                rec.updated_at = now();
                self.update(rec)?;
                Err(refuse("PAYMENT_FAILED", "payment", format!("the payment transaction failed: {e}")))
            }
        }
    }

    async fn prove(&self, mut rec: OrderRecord) -> Result<OrderRecord> {
        let s = self.session().await?;
        let plan = rec.payment.clone().ok_or_else(|| MarketError::validation("payment", "no payment plan"))?;
        let tx = rec.tx_hash.clone().unwrap_or_default();
        let order_id = rec.order_id.clone().unwrap_or_default();
        let payment = if plan.escrow {
            self.inner.client.escrow_lock(&s.token, &order_id, &pay::escrow_lock(&plan, &tx)).await?
        } else {
            self.inner.client.payment_proof(&s.token, &order_id, &pay::proof(&plan, &tx)).await?
        };
        rec.payment_status = Some(payment.status);
        rec.state = OrderState::ProofAccepted;
        Ok(rec)
    }

    async fn execute(&self, mut rec: OrderRecord) -> Result<OrderRecord> {
        let s = self.session().await?;
        let order_id = rec.order_id.clone().unwrap_or_default();
        let input: Option<Value> = (!rec.goal.input_json.trim().is_empty())
            .then(|| serde_json::from_str(&rec.goal.input_json))
            .transpose()
            .map_err(|e| MarketError::validation("input_json", e.to_string()))?;
        let ex = self.inner.client.execute_order(&s.token, &order_id, &wire::ExecuteRequest { input }).await?;
        let (state, mut result) = match &ex {
            Execution::Native { outcome, .. } => {
                let failed = outcome.get("status").and_then(Value::as_str) == Some("failed");
                let err = failed.then(|| {
                    let why =
                        outcome.get("errorMessage").and_then(Value::as_str).unwrap_or("the service reported a failure");
                    refuse("EXECUTION_FAILED", "outcome", why.to_string())
                });
                (OrderState::Executed, result_of(&rec, OrderState::Executed, err.as_ref()))
            }
            Execution::Handoff { .. } => (OrderState::Handoff, result_of(&rec, OrderState::Handoff, None)),
        };
        match ex {
            Execution::Native { run, outcome } => {
                result.run_json = Value::Object(run).to_string();
                result.outcome_json = Value::Object(outcome).to_string();
            }
            Execution::Handoff { handoff } => result.handoff_json = Value::Object(handoff).to_string(),
        }
        tracing::info!(order = %rec.key, state = state.as_str(), "market: order executed");
        rec.result = Some(result);
        rec.state = state;
        Ok(rec)
    }

    /// Confirm a delivered order (`POST …/confirm`; escrow rails then `…/payment/release`).
    /// Idempotent: a confirmed order answers its record.
    pub async fn confirm(&self, key: &str) -> Result<OrderRecord> {
        let mut rec = self.delivered(key, OrderState::Confirmed)?;
        if rec.state == OrderState::Confirmed {
            return Ok(rec);
        }
        let s = self.session().await?;
        let order_id = rec.order_id.clone().unwrap_or_default();
        let (_, mut payment) = self.inner.client.confirm_order(&s.token, &order_id).await?;
        if rec.payment.as_ref().is_some_and(|p| p.escrow) {
            payment = Some(self.inner.client.release_payment(&s.token, &order_id).await?.status);
        }
        rec.payment_status = payment;
        rec.state = OrderState::Confirmed;
        rec.updated_at = now();
        self.update(rec.clone())?;
        Ok(rec)
    }

    /// Dispute a delivered order (`POST …/dispute`): the payment is frozen by the server; for an
    /// escrow rail the node then asks for the refund (`…/payment/refund`).
    pub async fn dispute(&self, key: &str, reason: &str, evidence_json: &str) -> Result<OrderRecord> {
        if reason.trim().is_empty() {
            return Err(MarketError::validation("reason", "must not be blank"));
        }
        let evidence: Option<Value> = (!evidence_json.trim().is_empty())
            .then(|| serde_json::from_str(evidence_json))
            .transpose()
            .map_err(|e| MarketError::validation("evidence_json", e.to_string()))?;
        let mut rec = self.delivered(key, OrderState::Disputed)?;
        if rec.state == OrderState::Disputed {
            return Ok(rec);
        }
        let s = self.session().await?;
        let order_id = rec.order_id.clone().unwrap_or_default();
        let req = wire::DisputeRequest { reason: reason.to_string(), evidence };
        let (_, mut payment) = self.inner.client.dispute_order(&s.token, &order_id, &req).await?;
        if rec.payment.as_ref().is_some_and(|p| p.escrow) {
            // The funds are still in escrow: ask for them back (the server decides; a refusal leaves
            // the dispute open and frozen, and is reported).
            payment = Some(self.inner.client.refund_payment(&s.token, &order_id).await?.status);
        }
        rec.payment_status = payment;
        rec.state = OrderState::Disputed;
        rec.updated_at = now();
        self.update(rec.clone())?;
        Ok(rec)
    }

    /// The record of a delivered order (or one already in `target`).
    fn delivered(&self, key: &str, target: OrderState) -> Result<OrderRecord> {
        let rec = self.record(key).ok_or_else(|| MarketError::validation("order_key", format!("no order {key}")))?;
        match rec.state {
            OrderState::Executed | OrderState::Handoff => Ok(rec),
            s if s == target => Ok(rec),
            s => Err(refuse(
                "ORDER_NOT_DELIVERED",
                "order_key",
                format!(
                    "order {key} is {}; only a delivered order (executed or handoff) can be confirmed or disputed",
                    s.as_str()
                ),
            )),
        }
    }
}
