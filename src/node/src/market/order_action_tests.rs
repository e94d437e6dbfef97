//! `~/market_order` end to end over rclrs: a real action server ([`serve`]) and a real action
//! client on a second node, over a scripted [`OrderDesk`] that stands in for the buyer. The
//! desk's steps are set by each test, one at a time, so the feedback order is the test's.
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peaqos_market::buyer::{OrderDesk, OrderGoal, OrderProgress, OrderResult, Step};
use peaqos_market::{ApiCode, MarketError};
use rclrs::{ActionClient, Context, CreateBasicExecutor, Executor, FeedbackClient, GoalStatusCode, Node, SpinOptions};
use ros_env::peaqos_node::action::{MarketOrder, MarketOrder_Feedback, MarketOrder_Goal, MarketOrder_Result};
use tokio::sync::watch;

use super::{serve, OrderActionServer};

/// How long one exchange may take before the test fails (a lost message, a hung server).
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// The buyer as the tests script it. `place` refuses a budget that is not a decimal (naming the
/// field, as the real desk does) and otherwise opens an order at step `accepted`; the test moves
/// it on with [`ScriptedDesk::step`] and ends it with [`ScriptedDesk::finish`]. `cancel` is
/// honoured before `paid` (the order ends cancelled) and refused from `paid` on.
#[derive(Default)]
struct ScriptedDesk {
    orders: Mutex<HashMap<String, watch::Sender<OrderProgress>>>,
    /// Every goal placed, in order.
    goals: Mutex<Vec<OrderGoal>>,
    placed: watch::Sender<usize>,
}

impl ScriptedDesk {
    /// The key of the `n`th order placed (from 1), once it is placed.
    async fn order(&self, n: usize) -> String {
        let mut placed = self.placed.subscribe();
        let _ = placed.wait_for(|count| *count >= n).await;
        format!("ord-{n}")
    }

    fn update(&self, key: &str, change: impl FnOnce(&mut OrderProgress)) {
        let orders = self.orders.lock().unwrap();
        orders.get(key).expect("the test moves an order it placed").send_modify(change);
    }

    fn step(&self, key: &str, step: Step, order_id: &str, detail: &str) {
        self.update(key, |p| {
            p.step = step;
            p.order_id = order_id.to_owned();
            p.detail = detail.to_owned();
        });
    }

    fn finish(&self, key: &str, result: OrderResult) {
        self.update(key, |p| {
            p.step = Step::Done;
            p.result = Some(result);
        });
    }

    /// The desk loses the order: its progress channel closes without a result.
    fn forget(&self, key: &str) {
        self.orders.lock().unwrap().remove(key);
    }
}

impl OrderDesk for ScriptedDesk {
    fn place(&self, goal: OrderGoal) -> peaqos_market::Result<String> {
        if !goal.budget.is_empty() && goal.budget.parse::<f64>().is_err() {
            return Err(MarketError::Validation {
                field: "budget".into(),
                message: format!("not a decimal: {:?}", goal.budget),
            });
        }
        let mut orders = self.orders.lock().unwrap();
        let key = format!("ord-{}", *self.placed.borrow() + 1);
        self.goals.lock().unwrap().push(goal.clone());
        let progress = OrderProgress {
            order_key: key.clone(),
            order_id: String::new(),
            step: Step::Accepted,
            detail: goal.service_type,
            result: None,
            trail: Vec::new(),
        };
        orders.insert(key.clone(), watch::channel(progress).0);
        self.placed.send_modify(|count| *count += 1);
        Ok(key)
    }

    fn watch(&self, order_key: &str) -> Option<watch::Receiver<OrderProgress>> {
        self.orders.lock().unwrap().get(order_key).map(watch::Sender::subscribe)
    }

    fn cancel(&self, order_key: &str) -> peaqos_market::Result<()> {
        let orders = self.orders.lock().unwrap();
        let Some(order) = orders.get(order_key) else {
            return Err(MarketError::Validation { field: "order_key".into(), message: "no such order".into() });
        };
        if matches!(order.borrow().step, Step::Paid | Step::ProofAccepted | Step::Executing | Step::Done) {
            return Err(MarketError::Api {
                op: "cancel",
                code: ApiCode::Other("PAYMENT_SENT".into()),
                status: 0,
                message: "the payment was signed".into(),
                details: None,
            });
        }
        order.send_modify(|p| {
            p.step = Step::Done;
            p.result = Some(OrderResult {
                error_code: "CANCELLED".into(),
                message: "cancelled before payment".into(),
                order_key: order_key.to_owned(),
                state: "cancelled".into(),
                ..Default::default()
            });
        });
        Ok(())
    }
}

/// A node serving `~/market_order` over a [`ScriptedDesk`], a second node with a client of it,
/// one executor for both, and the runtime the server follows goals on.
struct Harness {
    // Field order is drop order: the action first, then its runtime, then the nodes.
    _server: OrderActionServer,
    _runtime: tokio::runtime::Runtime,
    desk: Arc<ScriptedDesk>,
    client: ActionClient<MarketOrder>,
    _nodes: [Node; 2],
    executor: Executor,
}

impl Harness {
    fn new(test: &str) -> Harness {
        let executor = Context::default_from_env().expect("ROS context").create_basic_executor();
        let server_name = format!("order_action_{test}_{}", std::process::id());
        let node = executor.create_node(server_name.as_str()).expect("server node");
        let caller = executor.create_node(format!("{server_name}_caller").as_str()).expect("client node");
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        let desk = Arc::new(ScriptedDesk::default());
        let server = serve(&node, runtime.handle(), Arc::clone(&desk) as Arc<dyn OrderDesk>).expect("serve");
        // The server's `~/market_order` is this absolute name: the client checks the expansion.
        let client = caller
            .create_action_client::<MarketOrder>(format!("/{server_name}/market_order").as_str())
            .expect("client");
        let mut harness =
            Harness { _server: server, _runtime: runtime, desk, client, _nodes: [node, caller], executor };
        let ready = harness.client.notify_on_server_ready();
        harness.run(async move { ready.await.expect("server readiness") });
        harness
    }

    /// Spin until `exchange` finishes (at most [`EXCHANGE_TIMEOUT`]) and return its output.
    fn run<T: Send + 'static>(&mut self, exchange: impl Future<Output = T> + Send + 'static) -> T {
        let commands = self.executor.commands();
        let (mut output, done) = commands.create_notice(commands.run(exchange));
        self.executor.spin(SpinOptions::default().until_promise_resolved(done).timeout(EXCHANGE_TIMEOUT));
        match output.try_recv() {
            Ok(Some(value)) => value,
            _ => panic!("the exchange did not finish within {EXCHANGE_TIMEOUT:?}"),
        }
    }
}

fn goal(service_type: &str, budget: &str) -> MarketOrder_Goal {
    MarketOrder_Goal {
        service_type: service_type.into(),
        operation: "detect".into(),
        input_json: r#"{"image":"s3://bucket/a.png"}"#.into(),
        budget: budget.into(),
        currency: "USDT".into(),
        client_key: "robot-7-job-1".into(),
        ..Default::default()
    }
}

/// The next feedback of a goal other than the initial `accepted` step (published as soon as the
/// goal is placed; the test does not wait for it, and asserts only the steps it drives).
async fn next_step(feedback: &mut FeedbackClient<MarketOrder>) -> MarketOrder_Feedback {
    loop {
        let f = feedback.recv().await.expect("feedback until the goal ends");
        if f.step != Step::Accepted.as_str() {
            return f;
        }
    }
}

/// An order's end with every field set, each to a value of its own.
fn executed(key: &str) -> OrderResult {
    OrderResult {
        success: true,
        error_code: String::new(),
        error_field: String::new(),
        message: "executed".into(),
        order_key: key.into(),
        order_id: "ord-remote-1".into(),
        state: "executed".into(),
        payment_reference: "0xabc123".into(),
        amount: "2.5".into(),
        currency: "USDT".into(),
        run_json: r#"{"id":"run-9"}"#.into(),
        outcome_json: r#"{"status":"completed","labels":["cat"]}"#.into(),
        handoff_json: String::new(),
    }
}

/// What a client receives for [`executed`].
fn executed_msg(key: &str) -> MarketOrder_Result {
    super::result_msg(executed(key))
}

#[test]
fn a_goal_reports_each_step_and_ends_with_the_desks_result() {
    let mut h = Harness::new("steps");
    let (desk, client) = (Arc::clone(&h.desk), Arc::clone(&h.client));
    let (steps, (status, result)) = h.run(async move {
        let order = client.request_goal(goal("inference", "2.5")).await.expect("goal accepted");
        let key = desk.order(1).await;
        let mut feedback = order.feedback;
        let mut steps = Vec::new();
        for step in [Step::Searched, Step::Quoted, Step::Paid] {
            desk.step(&key, step, "ord-remote-1", &format!("now {}", step.as_str()));
            steps.push(next_step(&mut feedback).await);
        }
        desk.finish(&key, executed(&key));
        (steps, order.result.await)
    });
    let seen: Vec<(&str, &str, &str, &str)> =
        steps.iter().map(|f| (f.step.as_str(), f.order_key.as_str(), f.order_id.as_str(), f.detail.as_str())).collect();
    assert_eq!(
        seen,
        [
            ("searched", "ord-1", "ord-remote-1", "now searched"),
            ("quoted", "ord-1", "ord-remote-1", "now quoted"),
            ("paid", "ord-1", "ord-remote-1", "now paid"),
        ]
    );
    assert_eq!(status, GoalStatusCode::Succeeded);
    assert_eq!(result, executed_msg("ord-1"));
    // The goal reached the desk field for field.
    let placed = h.desk.goals.lock().unwrap().clone();
    assert_eq!(
        placed,
        [OrderGoal {
            service_type: "inference".into(),
            service_id: String::new(),
            operation: "detect".into(),
            input_json: r#"{"image":"s3://bucket/a.png"}"#.into(),
            budget: "2.5".into(),
            currency: "USDT".into(),
            client_key: "robot-7-job-1".into(),
        }]
    );
}

#[test]
fn a_refused_goal_ends_aborted_with_the_named_error() {
    let mut h = Harness::new("refused");
    let client = Arc::clone(&h.client);
    let (status, result) = h.run(async move {
        let order = client.request_goal(goal("inference", "lots")).await.expect("goal accepted, then aborted");
        order.result.await
    });
    assert_eq!(status, GoalStatusCode::Aborted);
    assert!(!result.success);
    assert_eq!(result.error_code, "VALIDATION_ERROR");
    assert_eq!(result.error_field, "budget");
    assert_eq!(result.message, r#"budget: not a decimal: "lots""#);
    assert_eq!(result.order_key, "");
    assert!(h.desk.orders.lock().unwrap().is_empty(), "nothing was placed");
}

#[test]
fn a_failed_order_ends_aborted_with_the_desks_result() {
    let mut h = Harness::new("failed");
    let (desk, client) = (Arc::clone(&h.desk), Arc::clone(&h.client));
    let failed = OrderResult {
        error_code: "PAYMENT_FAILED".into(),
        message: "the transfer reverted".into(),
        state: "failed".into(),
        order_key: "ord-1".into(),
        order_id: "ord-remote-1".into(),
        ..Default::default()
    };
    let end = failed.clone();
    let (status, result) = h.run(async move {
        let order = client.request_goal(goal("inference", "")).await.expect("goal accepted");
        let key = desk.order(1).await;
        desk.finish(&key, end);
        order.result.await
    });
    assert_eq!(status, GoalStatusCode::Aborted);
    assert_eq!(result, super::result_msg(failed));
}

#[test]
fn a_cancel_before_payment_is_accepted_and_ends_cancelled() {
    let mut h = Harness::new("cancel");
    let (desk, client) = (Arc::clone(&h.desk), Arc::clone(&h.client));
    let (cancel, (status, result)) = h.run(async move {
        let order = client.request_goal(goal("inference", "2.5")).await.expect("goal accepted");
        let key = desk.order(1).await;
        let mut feedback = order.feedback;
        desk.step(&key, Step::Quoted, "ord-remote-1", "2.5 USDT");
        next_step(&mut feedback).await;
        let cancel = order.cancellation.cancel().await;
        (cancel, order.result.await)
    });
    assert!(cancel.is_accepted(), "{cancel:?}");
    assert_eq!(status, GoalStatusCode::Cancelled);
    assert_eq!(result.error_code, "CANCELLED");
    assert_eq!(result.state, "cancelled");
    assert_eq!(result.order_key, "ord-1");
    assert_eq!(result.message, "cancelled before payment");
}

#[test]
fn a_cancel_the_desk_refuses_is_refused_and_the_order_goes_on() {
    let mut h = Harness::new("no_cancel");
    let (desk, client) = (Arc::clone(&h.desk), Arc::clone(&h.client));
    let (cancel, after, (status, result)) = h.run(async move {
        let order = client.request_goal(goal("inference", "2.5")).await.expect("goal accepted");
        let key = desk.order(1).await;
        let mut feedback = order.feedback;
        desk.step(&key, Step::Paid, "ord-remote-1", "0xabc123");
        next_step(&mut feedback).await;
        let cancel = order.cancellation.cancel().await;
        desk.step(&key, Step::Executing, "ord-remote-1", "running");
        let after = next_step(&mut feedback).await;
        desk.finish(&key, executed(&key));
        (cancel, after, order.result.await)
    });
    assert!(cancel.is_rejected(), "{cancel:?}");
    assert_eq!(after.step, "executing");
    assert_eq!(status, GoalStatusCode::Succeeded);
    assert_eq!(result, executed_msg("ord-1"));
}

#[test]
fn an_order_the_desk_stops_reporting_ends_aborted_naming_it() {
    let mut h = Harness::new("lost");
    let (desk, client) = (Arc::clone(&h.desk), Arc::clone(&h.client));
    let (status, result) = h.run(async move {
        let order = client.request_goal(goal("inference", "2.5")).await.expect("goal accepted");
        let key = desk.order(1).await;
        let mut feedback = order.feedback;
        desk.step(&key, Step::Ordered, "ord-remote-1", "");
        next_step(&mut feedback).await;
        desk.forget(&key);
        order.result.await
    });
    assert_eq!(status, GoalStatusCode::Aborted);
    assert_eq!(result.error_code, "INTERNAL");
    assert_eq!(result.order_key, "ord-1");
    assert_eq!(result.order_id, "ord-remote-1");
    assert_eq!(result.message, "the order desk stopped reporting order ord-1 at step ordered");
}
