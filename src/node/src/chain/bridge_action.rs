//! `~/bridge_nft` (`action/BridgeNft.action`, legacy generation): the gen-1 NFT bridge of
//! `peaqos_chain` ([`ChainClient::bridge_nft`]) as a ROS action with feedback per step (quoted,
//! approved, sent, waiting, arrived). This file maps goals, feedback, cancel and the `bridge.*`
//! parameters; the bridge itself is the chain client's.
//!
//! As `~/market_order` does (`crate::market::order_action`): each goal is followed by a task on
//! the node's executor (goal answers, feedback and results are sent from there, never from
//! another thread: an rclrs 0.8 action client registers its reply only after sending its request),
//! and the bridge runs on the chain runtime, reporting through a channel. A cancel request is
//! accepted at once: the bridge stops before its send if it has not queued it, or stops waiting
//! for the arrival (the bridge itself goes on), and the goal ends cancelled with what happened.
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::Address;
use peaqos_chain::client::{BridgeDestination, BridgeOutcome, BridgeParams, BridgeStep};
use peaqos_chain::{ChainClient, ChainError};
use rclrs::{ActionGoalReceiver, ExecutorCommands, Node, Promise, RequestedGoal};
use ros_env::peaqos_node::action::{BridgeNft, BridgeNft_Feedback, BridgeNft_Goal, BridgeNft_Result};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, watch};

use super::answer::{hex_bytes, hx, opt_address, request_field, u256, Renames};
use crate::answer::{Refusal, Refuse};
use crate::params::{param_err, ParamSet};
use crate::StartError;

pub const ACTION_NAME: &str = "~/bridge_nft";

/// The `bridge.*` parameters: where arrival is watched and how long.
#[derive(Debug, Clone)]
pub struct BridgeParamsSet {
    pub destination: BridgeDestination,
}

impl BridgeParamsSet {
    pub fn declare(node: &ParamSet) -> Result<BridgeParamsSet, StartError> {
        let urls: Vec<String> = node
            .read_only_strings(
                "bridge.destination_rpc_urls",
                &[],
                "~/bridge_nft: JSON-RPC URLs of the destination chain (Base), where the token's arrival is watched.",
            )?
            .into_iter()
            .filter(|u| !u.is_empty())
            .collect();
        let nft = node.read_only_dynamic(
            "bridge.destination_nft_address",
            rclrs::ParameterValue::String(Arc::from("")),
            "~/bridge_nft: the Machine NFT contract on the destination chain (MachineNFTBase on Base), a quoted \"0x…\" string.",
        )?;
        let nft = match nft {
            rclrs::ParameterValue::String(s) if s.is_empty() => Address::ZERO,
            rclrs::ParameterValue::String(s) => {
                peaqos_chain::validation::parse_address("bridge.destination_nft_address", &s)
                    .map_err(|e| param_err("bridge.destination_nft_address", e))?
            }
            other => {
                return Err(param_err(
                    "bridge.destination_nft_address",
                    format!("an address string, got {other:?}: quote it, -p 'bridge.destination_nft_address:=\"0x…\"'"),
                ))
            }
        };
        let poll: f64 = node.read_only_in(
            "bridge.poll_interval",
            10.0,
            "~/bridge_nft: seconds between probes of the destination's ownerOf (the SDK's 10).",
            rclrs::ParameterRange { lower: Some(0.05), upper: Some(600.0), step: None },
        )?;
        let timeout: f64 = node.read_only_in(
            "bridge.arrival_timeout",
            300.0,
            "~/bridge_nft: seconds to wait for the token on the destination (the SDK's 300); a goal may set its own.",
            rclrs::ParameterRange { lower: Some(1.0), upper: Some(86_400.0), step: None },
        )?;
        let secs = |name: &str, v: f64| peaqos_core::duration::seconds(v, false).map_err(|e| param_err(name, e));
        Ok(BridgeParamsSet {
            destination: BridgeDestination {
                rpc_urls: urls,
                nft,
                poll_interval: secs("bridge.poll_interval", poll)?,
                arrival_timeout: secs("bridge.arrival_timeout", timeout)?,
            },
        })
    }
}

/// The running action; dropping it stops taking goals.
pub struct BridgeActionServer {
    _goals: Promise<()>,
}

/// Serve `~/bridge_nft` on `node`; bridges run on `runtime`.
pub fn serve(
    node: &Node,
    runtime: Arc<Runtime>,
    client: ChainClient,
    params: BridgeParamsSet,
) -> Result<BridgeActionServer, StartError> {
    let receiver = node.create_goal_receiver::<BridgeNft>(ACTION_NAME)?;
    let commands = Arc::clone(node.commands());
    let goals = node.commands().query(take_goals(receiver, commands, runtime, client, Arc::new(params)));
    Ok(BridgeActionServer { _goals: goals })
}

async fn take_goals(
    mut receiver: ActionGoalReceiver<BridgeNft>,
    commands: Arc<ExecutorCommands>,
    runtime: Arc<Runtime>,
    client: ChainClient,
    params: Arc<BridgeParamsSet>,
) {
    while let Some(requested) = receiver.recv().await {
        crate::ros_log::request(ACTION_NAME);
        drop(commands.run(run_goal(requested, Arc::clone(&runtime), client.clone(), Arc::clone(&params))));
    }
}

/// What the bridge task reports to the goal's task.
enum Report {
    Step(BridgeStep),
    Done(BridgeNft_Result),
}

/// How the request spells the fields the chain client names.
const BRIDGE_FIELDS: Renames = &[
    ("extra_options", "extra_options_hex"),
    ("destination_rpc_url", "bridge.destination_rpc_urls"),
    ("destination_nft_address", "bridge.destination_nft_address"),
    ("machine_nft_adapter", "chain.contracts.machine_nft_adapter"),
    ("generation", "chain.generation"),
    ("code:OnlyNFTOwner", "token_id"),
    ("code:NoPeer", "destination"),
    ("code:InvalidReceiver", "recipient"),
    ("code:InvalidOptions", "extra_options_hex"),
];

fn goal_params(c: &ChainClient, g: &BridgeNft_Goal) -> Result<BridgeParams, ChainError> {
    Ok(BridgeParams {
        token_id: u256("token_id", &g.token_id)?,
        destination: if g.destination.is_empty() { "base".into() } else { g.destination.clone() },
        recipient: opt_address("recipient", &g.recipient)?.unwrap_or(c.signer_address()),
        extra_options: if g.extra_options_hex.is_empty() {
            Vec::new()
        } else {
            hex_bytes("extra_options_hex", &g.extra_options_hex)?
        },
    })
}

/// The bridge of one goal, on the chain runtime: every step reported, then the result.
async fn bridge(
    c: ChainClient,
    goal: BridgeNft_Goal,
    params: Arc<BridgeParamsSet>,
    tx: mpsc::UnboundedSender<Report>,
    mut cancel: watch::Receiver<bool>,
) {
    let mut dst = params.destination.clone();
    let result = async {
        if goal.arrival_timeout < 0.0 || !goal.arrival_timeout.is_finite() {
            return Err(ChainError::validation(
                "arrival_timeout",
                "seconds >= 0",
                "arrival_timeout must be a number of seconds (0 = bridge.arrival_timeout)",
            ));
        }
        if goal.arrival_timeout > 0.0 {
            dst.arrival_timeout = Duration::from_secs_f64(goal.arrival_timeout.min(86_400.0));
        }
        let p = goal_params(&c, &goal)?;
        let steps = tx.clone();
        c.bridge_nft(&p, &dst, &move |s| drop(steps.send(Report::Step(s))), &mut cancel).await
    }
    .await;
    let _ = tx.send(Report::Done(result_msg(&goal, result)));
}

/// The result a bridge ended with (on failure: what had happened before, and why it stopped).
fn result_msg(goal: &BridgeNft_Goal, r: Result<BridgeOutcome, ChainError>) -> BridgeNft_Result {
    match r {
        Ok(o) => BridgeNft_Result {
            success: true,
            message: format!(
                "token {} arrived, owned by {}",
                goal.token_id,
                o.destination_owner.map(|a| a.to_checksum(None)).unwrap_or_default()
            ),
            token_id: goal.token_id.clone(),
            native_fee: o.native_fee.to_string(),
            approval_tx_hash: o.approval_tx_hash.map(hx).unwrap_or_default(),
            intent_id: o.send_intent_id,
            tx_hash: o.send_tx_hash.map(hx).unwrap_or_default(),
            block_number: o.send_block.unwrap_or(0),
            resumed: o.resumed,
            arrived: o.destination_owner.is_some(),
            destination_owner: o.destination_owner.map(|a| a.to_checksum(None)).unwrap_or_default(),
            ..Default::default()
        },
        Err(e) => {
            let (intent_id, tx_hash) = match &e {
                ChainError::Tx { intent_id, tx_hash, .. } => (intent_id.clone(), tx_hash.clone()),
                _ => (String::new(), String::new()),
            };
            BridgeNft_Result { token_id: goal.token_id.clone(), intent_id, tx_hash, ..Default::default() }
                .refused(Refusal::chain(&e, request_field(&e, BRIDGE_FIELDS)))
        }
    }
}

/// Fold a step into the result being built (so a failure after the send still names it).
fn note(r: &mut BridgeNft_Result, s: &BridgeStep) -> BridgeNft_Feedback {
    let (step, detail, tx_hash, fee) = match s {
        BridgeStep::Quoted { native_fee } => {
            r.native_fee = native_fee.to_string();
            ("quoted", format!("LayerZero fee {native_fee} wei"), String::new(), native_fee.to_string())
        }
        BridgeStep::Approved { tx_hash } => {
            r.approval_tx_hash = tx_hash.map(hx).unwrap_or_default();
            let d = if tx_hash.is_some() { "the adapter was approved" } else { "the adapter was approved already" };
            ("approved", d.to_owned(), r.approval_tx_hash.clone(), r.native_fee.clone())
        }
        BridgeStep::Sent { intent_id, tx_hash, block_number, resumed } => {
            r.intent_id = intent_id.clone();
            r.tx_hash = hx(*tx_hash);
            r.block_number = *block_number;
            r.resumed = *resumed;
            let d = if *resumed { "sent by an earlier goal" } else { "sent" };
            ("sent", format!("{d}, in block {block_number}"), r.tx_hash.clone(), r.native_fee.clone())
        }
        BridgeStep::Waiting { probes } => (
            "waiting",
            format!("not on the destination yet ({probes} probes)"),
            r.tx_hash.clone(),
            r.native_fee.clone(),
        ),
        BridgeStep::Arrived { owner } => {
            ("arrived", format!("owned by {}", owner.to_checksum(None)), r.tx_hash.clone(), r.native_fee.clone())
        }
    };
    BridgeNft_Feedback { step: step.into(), detail, tx_hash, native_fee: fee }
}

/// Keep the steps' facts in a failed result that lacks them.
fn merged(mut done: BridgeNft_Result, seen: &BridgeNft_Result) -> BridgeNft_Result {
    for (d, s) in [
        (&mut done.native_fee, &seen.native_fee),
        (&mut done.approval_tx_hash, &seen.approval_tx_hash),
        (&mut done.intent_id, &seen.intent_id),
        (&mut done.tx_hash, &seen.tx_hash),
    ] {
        if d.is_empty() {
            d.clone_from(s);
        }
    }
    if done.block_number == 0 {
        done.block_number = seen.block_number;
    }
    done.resumed |= seen.resumed;
    done
}

async fn run_goal(
    requested: RequestedGoal<BridgeNft>,
    runtime: Arc<Runtime>,
    c: ChainClient,
    params: Arc<BridgeParamsSet>,
) {
    let goal = BridgeNft_Goal::clone(requested.goal());
    let id = *requested.goal_id();
    let executing = match requested.try_accept() {
        Ok(accepted) => accepted.execute(),
        Err(e) => {
            tracing::warn!("{ACTION_NAME}: goal {id} rejected: {e}");
            return;
        }
    };
    tracing::info!("{ACTION_NAME}: goal {id}: token {} to {}", goal.token_id, goal.destination);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (cancel_tx, cancel_rx) = watch::channel(false);
    drop(runtime.spawn(bridge(c, goal.clone(), params, tx, cancel_rx)));
    let mut seen = BridgeNft_Result { token_id: goal.token_id.clone(), ..Default::default() };
    // Executing until a cancel request, then cancelling until the bridge reports its end.
    let mut executing = Some(executing);
    let mut cancelling = None;
    loop {
        let report = match (&executing, &cancelling) {
            (Some(g), _) => match g.unless_cancel_requested(rx.recv()).await {
                Ok(r) => r,
                Err(()) => {
                    tracing::info!("{ACTION_NAME}: goal {id}: cancel requested");
                    let _ = cancel_tx.send(true);
                    cancelling = executing.take().map(|g| g.begin_cancelling());
                    continue;
                }
            },
            _ => rx.recv().await,
        };
        match report {
            Some(Report::Step(s)) => {
                let fb = note(&mut seen, &s);
                if let Some(g) = &executing {
                    g.publish_feedback(fb);
                } else if let Some(g) = &cancelling {
                    g.publish_feedback(fb);
                }
            }
            Some(Report::Done(done)) => {
                let done = merged(done, &seen);
                tracing::info!("{ACTION_NAME}: goal {id} ended: {} {}", done.success, done.error_code);
                match (executing.take(), cancelling.take(), done.success) {
                    (Some(g), _, true) => drop(g.succeeded_with(done)),
                    (Some(g), _, false) => drop(g.aborted_with(done)),
                    (_, Some(g), true) => drop(g.succeeded_with(done)),
                    (_, Some(g), false) => drop(g.cancelled_with(done)),
                    _ => {}
                }
                return;
            }
            None => {
                let lost = Refusal::internal("the bridge task ended without a result");
                let r = merged(BridgeNft_Result::default().refused(lost), &seen);
                match (executing.take(), cancelling.take()) {
                    (Some(g), _) => drop(g.aborted_with(r)),
                    (_, Some(g)) => drop(g.aborted_with(r)),
                    _ => {}
                }
                return;
            }
        }
    }
}
