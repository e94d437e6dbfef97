//! `~/submit_event`, `~/batch_submit_events`, `~/validate_event`.
use peaqos_chain::validation::{Currency, MachineIdInput, SubmitEventParams, ValueInput};
use peaqos_chain::ChainError;
use ros_env::peaqos_node::msg::Event;
use ros_env::peaqos_node::srv::*;

use super::answer::*;
use super::Registrar;
use crate::StartError;

pub(super) fn register(reg: &mut Registrar) -> Result<(), StartError> {
    service!(reg, "~/submit_event", SubmitEvent, renames: MACHINE_REVERTS, |c, req| {
        let e = Event {
            machine_id: req.machine_id,
            event_type: req.event_type,
            value: req.value,
            currency: req.currency.clone(),
            timestamp: req.timestamp,
            raw_data: req.raw_data,
            trust_level: req.trust_level,
            source_chain_id: req.source_chain_id,
            source_tx_hash: req.source_tx_hash,
            metadata: req.metadata,
        };
        let p = event_params(&e, single_currency(&req.currency))?;
        if req.no_wait {
            let (intent_id, data_hash) = c.enqueue_event(&p)?;
            return Ok(SubmitEvent_Response {
                success: true,
                message: "queued".into(),
                intent_id,
                data_hash: hx(data_hash),
                ..Default::default()
            });
        }
        let r = c.submit_event(&p).await?;
        Ok(SubmitEvent_Response {
            success: true,
            message: "included".into(),
            intent_id: r.intent_id,
            tx_hash: hx(r.tx_hash),
            data_hash: hx(r.data_hash),
            block_number: r.block_number,
            ..Default::default()
        })
    });

    service!(reg, "~/batch_submit_events", BatchSubmitEvents, renames: MACHINE_REVERTS, |c, req| {
        let mut items = Vec::with_capacity(req.events.len());
        for (i, e) in req.events.iter().enumerate() {
            // Validate each event on its own first so the answer says which one failed.
            let p = event_params(e, Currency::Code(e.currency.clone())).map_err(|err| name_event(err, i))?;
            c.validate_event(&p).map_err(|err| name_event(err, i))?;
            items.push(p);
        }
        if req.no_wait {
            let (intent_id, hashes) = c.enqueue_batch(&items)?;
            return Ok(BatchSubmitEvents_Response {
                success: true,
                message: "queued".into(),
                intent_id,
                data_hashes: hashes.into_iter().map(hx).collect(),
                ..Default::default()
            });
        }
        let r = c.batch_submit_events(&items).await?;
        Ok(BatchSubmitEvents_Response {
            success: true,
            message: "included".into(),
            intent_id: r.intent_id,
            tx_hash: hx(r.tx_hash),
            data_hashes: r.data_hashes.into_iter().map(hx).collect(),
            block_number: r.block_number,
            ..Default::default()
        })
    });

    service!(reg, "~/validate_event", ValidateEvent, |c, req| {
        let currency =
            if req.currency_omitted { Currency::Omitted } else { Currency::Code(req.event.currency.clone()) };
        let h = c.validate_event(&event_params(&req.event, currency)?)?;
        Ok(ValidateEvent_Response { success: true, message: "valid".into(), data_hash: hx(h), ..Default::default() })
    });
    Ok(())
}

fn event_params(e: &Event, currency: Currency) -> Result<SubmitEventParams, ChainError> {
    Ok(SubmitEventParams {
        machine_id: MachineIdInput::from_decimal("machine_id", &e.machine_id)?,
        event_type: i64::from(e.event_type),
        value: ValueInput::parse(&e.value),
        timestamp: i64::try_from(e.timestamp).unwrap_or(i64::MAX),
        raw_data: (!e.raw_data.is_empty()).then(|| e.raw_data.clone()),
        trust_level: i64::from(e.trust_level),
        source_chain_id: i128::from(e.source_chain_id),
        source_tx_hash: (!e.source_tx_hash.is_empty()).then(|| e.source_tx_hash.clone()),
        metadata: e.metadata.clone(),
        currency,
    })
}

fn single_currency(c: &str) -> Currency {
    if c.is_empty() {
        Currency::Omitted
    } else {
        Currency::Code(c.to_owned())
    }
}

/// Say which event of a batch an error is about. `error_field` stays the SDK's field name
/// (`currency`); the message starts with `events[2]: `.
fn name_event(e: ChainError, index: usize) -> ChainError {
    match e {
        ChainError::Validation { field, constraint, message } => {
            ChainError::Validation { field, constraint, message: format!("events[{index}]: {message}") }
        }
        ChainError::Type { field, message } => {
            ChainError::Type { field, message: format!("events[{index}]: {message}") }
        }
        other => other,
    }
}
