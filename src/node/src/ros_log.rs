//! `tracing` → ROS logging.
//!
//! Every crate of the node logs with `tracing`. Before the node exists (argument parsing,
//! start-up errors) events go to stderr; once [`attach`] has named the node's logger they go
//! through rcutils, which prints them to stderr in the usual ROS format and publishes them on
//! `/rosout`. Never log key material: only addresses, DIDs and public keys.
use std::ffi::CString;
use std::fmt::Write as _;
use std::sync::OnceLock;

use rclrs::{LogSeverity, LoggerName};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

static LOGGER: OnceLock<CString> = OnceLock::new();

/// Install the global subscriber. `RUST_LOG` refines the filter (default `info`).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::registry().with(filter).with(RosLogLayer).try_init();
}

/// From now on, events are logged through the ROS logger of this name.
pub fn attach(logger_name: &str) {
    if let Ok(name) = CString::new(logger_name) {
        let _ = LOGGER.set(name);
    }
}

/// Target of the one debug line per service request (`RUST_LOG=peaqos_edge::requests=debug`
/// plus `--log-level <node>:=debug` shows them). Tests use it to tell a request the middleware
/// lost before it reached the node (sent before the client matched the server) from a slow one.
pub const REQUESTS_TARGET: &str = "peaqos_edge::requests";

/// Log that a request to `service` reached the node (debug level; no request fields, which may
/// be large or private).
pub fn request(service: &str) {
    tracing::debug!(target: REQUESTS_TARGET, "request {service}");
}

struct RosLogLayer;

/// One log line: the event's message, then ` name=value` per field. A field that is itself
/// named `message` (`warn!(%message, "...")`) is written as ` message=...` like any other, so it
/// can never run into the field before it.
#[derive(Default)]
struct Message {
    text: Option<String>,
    fields: String,
}

impl Message {
    fn record(&mut self, field: &Field, value: std::fmt::Arguments<'_>) {
        if field.name() == "message" && self.text.is_none() {
            self.text = Some(value.to_string());
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn line(self) -> String {
        self.text.unwrap_or_default() + &self.fields
    }
}

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record(field, format_args!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, format_args!("{value}"));
    }
}

impl<S: Subscriber> Layer<S> for RosLogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut msg = Message::default();
        event.record(&mut msg);
        let line = msg.line();
        let meta = event.metadata();
        let Some(logger) = LOGGER.get() else {
            eprintln!("[{}] [peaqos_node]: {line}", meta.level());
            return;
        };
        let severity = match *meta.level() {
            Level::ERROR => LogSeverity::Error,
            Level::WARN => LogSeverity::Warn,
            Level::INFO => LogSeverity::Info,
            Level::DEBUG | Level::TRACE => LogSeverity::Debug,
        };
        let to_c = |s: &str| CString::new(s.replace('\0', "?")).unwrap_or_default();
        let message = to_c(&line);
        let function = to_c(meta.target());
        let file = to_c(meta.file().unwrap_or("?"));
        // SAFETY: impl_log only reads the strings it is given (rclrs marks it unsafe only to
        // discourage direct use; its log macros call it the same way).
        unsafe {
            rclrs::impl_log(
                severity,
                &LoggerName::Validated(logger),
                &message,
                &function,
                &file,
                meta.line().unwrap_or(0),
            )
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captures the lines [`Message`] builds.
    struct Capture(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

    impl<S: Subscriber> Layer<S> for Capture {
        fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
            let mut msg = Message::default();
            event.record(&mut msg);
            self.0.lock().unwrap().push(msg.line());
        }
    }

    #[test]
    fn a_field_named_message_never_runs_into_the_field_before_it() {
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sub = tracing_subscriber::registry().with(Capture(lines.clone()));
        tracing::subscriber::with_default(sub, || {
            let message = "Event timestamp is later than the block timestamp";
            tracing::warn!(intent = "i1", code = "FUTURE_TIMESTAMP", %message, "outbox: intent {}", "failed");
            tracing::info!(topic = "/a", n = 3, "sealed");
        });
        let lines = lines.lock().unwrap();
        assert_eq!(
            lines[0],
            "outbox: intent failed intent=i1 code=FUTURE_TIMESTAMP message=Event timestamp is later than the block timestamp"
        );
        assert_eq!(lines[1], "sealed topic=/a n=3");
    }
}
