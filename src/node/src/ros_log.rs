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

/// Longest log line, in characters (control characters are escaped, the rest cut with `…`).
const MAX_LINE_CHARS: usize = 2000;

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

#[derive(Default)]
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for RosLogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut msg = Message::default();
        event.record(&mut msg);
        // One bounded line whatever a request or file put into the message: a newline cannot
        // start a forged log line, a 1 MB topic cannot write a 1 MB line.
        let line = peaqos_core::text::one_line(&msg.0, MAX_LINE_CHARS);
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
