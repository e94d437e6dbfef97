//! `~/market_order`: the buyer's action (`action/MarketOrder.action`) mapped onto an
//! [`OrderDesk`]. This file only translates; the order itself (search, quote, payment, proof,
//! execution) is the desk's.
//!
//! * Goal: accepted at once, then [`OrderDesk::place`]. A refusal ends the goal *aborted* with a
//!   result whose `error_code` / `error_field` / `message` are the error's, exactly as the
//!   services answer ([`crate::answer`]): a rejected ROS 2 goal carries no result, so the caller
//!   could not learn why.
//! * Progress: one feedback (step, order_key, order_id, detail) per change [`OrderDesk::watch`]
//!   reports (a watch channel keeps the latest: steps the desk passes faster than they are read
//!   are not repeated); when `result` is set the goal ends with it, succeeded if `success`,
//!   aborted otherwise.
//! * Cancel: [`OrderDesk::cancel`]. Accepted when it returns `Ok`: the goal ends cancelled with
//!   the result the desk publishes (succeeded, if the order had already succeeded). Refused when
//!   it returns an error: the order goes on, the reason is logged at INFO.
//!
//! Nothing here blocks the executor. Goals arrive through an rclrs goal receiver and each is
//! followed by an async task on the node's executor, as rclrs runs its own action callbacks; the
//! desk's `place` and `cancel`, which may block (disk), run on the blocking pool of the runtime
//! given to [`serve`] (`watch` only hands out a receiver and is called in place), and the tasks
//! only await them and the desk's progress. (Not on that runtime's
//! workers: an rclrs 0.8 action client registers its reply only after sending the request, so an
//! answer sent from another thread can beat the registration and be dropped; answering from the
//! executor keeps rclrs clients in the same process, such as the tests', safe.)
//!
//! Wiring (in `market::start`, next to the seller, when the buyer is enabled):
//!
//! ```ignore
//! let desk: Arc<dyn OrderDesk> = Arc::new(/* the buyer's desk */);
//! let order_action = order_action::serve(node, runtime.handle(), desk)?; // RclrsError -> StartError
//! // Keep `order_action` (e.g. in MarketSubsystem) while the node runs: dropping it removes the
//! // action; goals in flight follow their orders until the executor stops.
//! ```
use std::sync::Arc;

use peaqos_market::buyer::{OrderDesk, OrderGoal, OrderProgress, OrderResult, Step};
use rclrs::{
    ActionGoalReceiver, CancellingGoal, ExecutingGoal, ExecutorCommands, Node, Promise, RclrsError, RequestedGoal,
    TerminatedGoal,
};
use ros_env::peaqos_node::action::{MarketOrder, MarketOrder_Feedback, MarketOrder_Goal, MarketOrder_Result};
use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::answer::{Refusal, Refuse};

/// The action's name, under the node like its services.
pub const ACTION_NAME: &str = "~/market_order";

/// The running action. Dropping it stops taking goals and removes the action.
pub struct OrderActionServer {
    /// The task taking goals (it owns the action server); dropping it ends the task.
    _goals: Promise<()>,
}

/// Serve `~/market_order` on `node` over `desk`; the desk's calls run on `runtime`'s blocking
/// pool.
pub fn serve(node: &Node, runtime: &Handle, desk: Arc<dyn OrderDesk>) -> Result<OrderActionServer, RclrsError> {
    // Services default to a queue of 10 requests: a planner that sends a burst of goals (or asks
    // for many results at once) would lose the rest. Keep as many as the node's other services.
    let depth = crate::chain::SERVICE_QUEUE_DEPTH;
    let mut options = rclrs::ActionServerOptions::new(ACTION_NAME);
    options.goal_service_qos = rclrs::QoSProfile::services_default().keep_last(depth);
    options.result_service_qos = rclrs::QoSProfile::services_default().keep_last(depth);
    options.cancel_service_qos = rclrs::QoSProfile::services_default().keep_last(depth);
    options.feedback_topic_qos = rclrs::QoSProfile::topics_default().keep_last(depth);
    let receiver = node.create_goal_receiver::<MarketOrder>(options)?;
    let commands = Arc::clone(node.commands());
    let goals = node.commands().query(take_goals(receiver, commands, runtime.clone(), desk));
    Ok(OrderActionServer { _goals: goals })
}

/// Hand every requested goal to a task of its own.
async fn take_goals(
    mut receiver: ActionGoalReceiver<MarketOrder>,
    commands: Arc<ExecutorCommands>,
    runtime: Handle,
    desk: Arc<dyn OrderDesk>,
) {
    while let Some(requested) = receiver.recv().await {
        crate::ros_log::request(ACTION_NAME);
        // Runs to its end without its promise (and if the action is dropped meanwhile: the
        // order goes on regardless).
        drop(commands.run(run_goal(requested, runtime.clone(), Arc::clone(&desk))));
    }
}

/// One goal from request to end.
async fn run_goal(requested: RequestedGoal<MarketOrder>, runtime: Handle, desk: Arc<dyn OrderDesk>) {
    let goal = order_goal(requested.goal());
    let Some(executing) = accept(requested) else { return };
    let placing = Arc::clone(&desk);
    let order_key = match on_blocking_pool(&runtime, move || placing.place(goal)).await {
        Ok(key) => key,
        Err(refused) => {
            executing.aborted_with(refused);
            return;
        }
    };
    let Some(progress) = desk.watch(&order_key) else {
        let lost = Refusal::internal(format!("order {order_key} was placed but the desk does not know it"));
        executing.aborted_with(MarketOrder_Result { order_key, ..Default::default() }.refused(lost));
        return;
    };
    tracing::info!("{ACTION_NAME}: goal for {order_key}");
    follow(Live::Executing(executing), &order_key, progress, &runtime, &desk).await;
}

/// Accept a requested goal and start executing it; `None` (the goal rejected, logged) when rcl
/// refuses it, e.g. a goal id already in use.
fn accept(requested: RequestedGoal<MarketOrder>) -> Option<ExecutingGoal<MarketOrder>> {
    let id = *requested.goal_id();
    match requested.try_accept() {
        Ok(accepted) => Some(accepted.execute()),
        Err(e) => {
            tracing::warn!("{ACTION_NAME}: goal {id} rejected: {e}");
            None
        }
    }
}

/// A goal being followed: executing, or cancelling after the desk agreed to cancel.
enum Live {
    Executing(ExecutingGoal<MarketOrder>),
    Cancelling(CancellingGoal<MarketOrder>),
}

/// What ended a wait on the order's progress.
enum Wake {
    Changed,
    /// The desk dropped the order's channel.
    Closed,
    CancelRequested,
}

impl Live {
    fn publish(&self, feedback: MarketOrder_Feedback) {
        match self {
            Live::Executing(g) => g.publish_feedback(feedback),
            Live::Cancelling(g) => g.publish_feedback(feedback),
        }
    }

    /// End with the desk's result: succeeded if it succeeded, else aborted (cancelled once the
    /// cancel was accepted).
    fn end(self, result: MarketOrder_Result) -> TerminatedGoal {
        match self {
            Live::Executing(g) if result.success => g.succeeded_with(result),
            Live::Executing(g) => g.aborted_with(result),
            Live::Cancelling(g) if result.success => g.succeeded_with(result),
            Live::Cancelling(g) => g.cancelled_with(result),
        }
    }

    /// End aborted with a failure of the node's own.
    fn abort(self, result: MarketOrder_Result) -> TerminatedGoal {
        match self {
            Live::Executing(g) => g.aborted_with(result),
            Live::Cancelling(g) => g.aborted_with(result),
        }
    }

    /// Wait for the next progress, or (while executing) a cancel request.
    async fn wait(&self, progress: &mut watch::Receiver<OrderProgress>) -> Wake {
        let changed = match self {
            Live::Executing(g) => match g.unless_cancel_requested(progress.changed()).await {
                Ok(changed) => changed,
                Err(()) => return Wake::CancelRequested,
            },
            Live::Cancelling(_) => progress.changed().await,
        };
        if changed.is_ok() {
            Wake::Changed
        } else {
            Wake::Closed
        }
    }
}

/// Publish the order's progress as feedback until it has a result, and end the goal with it.
async fn follow(
    mut goal: Live,
    order_key: &str,
    mut progress: watch::Receiver<OrderProgress>,
    runtime: &Handle,
    desk: &Arc<dyn OrderDesk>,
) {
    let mut last: Option<MarketOrder_Feedback> = None;
    let mut closed = false;
    let mut sent = 0; // trail entries published
    loop {
        let now = progress.borrow_and_update().clone();
        // every step reached, also one this task was too slow to see live
        for (step, detail) in now.trail.iter().skip(sent) {
            let feedback = MarketOrder_Feedback {
                step: step.as_str().to_owned(),
                order_key: now.order_key.clone(),
                order_id: now.order_id.clone(),
                detail: detail.clone(),
            };
            if last.as_ref() != Some(&feedback) && *step != Step::Done {
                goal.publish(feedback.clone());
                last = Some(feedback);
            }
        }
        sent = sent.max(now.trail.len());
        if let Some(result) = now.result {
            tracing::info!("{ACTION_NAME}: {order_key} ended {} (success: {})", result.state, result.success);
            goal.end(result_msg(result));
            return;
        }
        let feedback = feedback_msg(&now);
        if last.as_ref() != Some(&feedback) {
            goal.publish(feedback.clone());
            last = Some(feedback);
        }
        if closed {
            goal.abort(desk_stopped(&now));
            return;
        }
        match goal.wait(&mut progress).await {
            Wake::Changed => {}
            Wake::Closed => closed = true,
            Wake::CancelRequested => goal = cancel(goal, order_key, runtime, desk).await,
        }
    }
}

/// Ask the desk to cancel; accept the cancel request if it agrees, refuse it otherwise.
async fn cancel(goal: Live, order_key: &str, runtime: &Handle, desk: &Arc<dyn OrderDesk>) -> Live {
    let Live::Executing(executing) = goal else { return goal };
    let (desk, key) = (Arc::clone(desk), order_key.to_owned());
    match on_blocking_pool(runtime, move || desk.cancel(&key)).await {
        Ok(()) => {
            tracing::info!("{ACTION_NAME}: {order_key}: cancel accepted");
            Live::Cancelling(executing.begin_cancelling())
        }
        Err(refused) => {
            tracing::info!("{ACTION_NAME}: {order_key}: cancel refused: {} {}", refused.error_code, refused.message);
            executing.reject_cancellation();
            Live::Executing(executing)
        }
    }
}

/// Run a blocking desk call on the runtime's blocking pool; its error, or the call's own
/// failure, as the result a goal would end with.
async fn on_blocking_pool<T: Send + 'static>(
    runtime: &Handle,
    call: impl FnOnce() -> peaqos_market::Result<T> + Send + 'static,
) -> Result<T, MarketOrder_Result> {
    match runtime.spawn_blocking(call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(MarketOrder_Result::default().refused(Refusal::from(&e))),
        Err(e) => {
            Err(MarketOrder_Result::default().refused(Refusal::internal(format!("the order desk call failed: {e}"))))
        }
    }
}

/// The result of an order whose progress stopped before it ended.
fn desk_stopped(last: &OrderProgress) -> MarketOrder_Result {
    let message = format!("the order desk stopped reporting order {} at step {}", last.order_key, last.step.as_str());
    MarketOrder_Result { order_key: last.order_key.clone(), order_id: last.order_id.clone(), ..Default::default() }
        .refused(Refusal::internal(message))
}

fn order_goal(g: &MarketOrder_Goal) -> OrderGoal {
    OrderGoal {
        service_type: g.service_type.clone(),
        service_id: g.service_id.clone(),
        operation: g.operation.clone(),
        input_json: g.input_json.clone(),
        budget: g.budget.clone(),
        currency: g.currency.clone(),
        client_key: g.client_key.clone(),
    }
}

fn feedback_msg(p: &OrderProgress) -> MarketOrder_Feedback {
    MarketOrder_Feedback {
        step: p.step.as_str().to_owned(),
        order_key: p.order_key.clone(),
        order_id: p.order_id.clone(),
        detail: p.detail.clone(),
    }
}

fn result_msg(r: OrderResult) -> MarketOrder_Result {
    MarketOrder_Result {
        success: r.success,
        error_code: r.error_code,
        error_field: r.error_field,
        message: r.message,
        order_key: r.order_key,
        order_id: r.order_id,
        state: r.state,
        payment_reference: r.payment_reference,
        amount: r.amount,
        currency: r.currency,
        run_json: r.run_json,
        outcome_json: r.outcome_json,
        handoff_json: r.handoff_json,
    }
}

#[cfg(test)]
#[path = "order_action_tests.rs"]
mod tests;
