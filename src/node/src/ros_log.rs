//! `tracing` → ROS logging.
//!
//! Every crate of the node logs with `tracing`. Before the node exists (argument parsing,
//! start-up errors) events go to stderr; once [`attach`] has named the node's logger they go
//! through rcutils, which prints them to stderr in the usual ROS format and publishes them on
//! `/rosout`. Never log key material: only addresses, DIDs and public keys.
//!
//! The ROS level of the node's logger decides what is shown, as for any ROS node:
//! `--ros-args --log-level peaqos_node:=debug` (or the launch file's `log_level`) at start, the
//! `log_level` parameter at run time. `RUST_LOG` refines it per module (it can hide more, or let
//! a dependency's own logs through); without it, the node's crates log at every level the ROS
//! level allows and dependencies at `info` and above.
use std::ffi::{c_char, c_int, CString};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

use rclrs::{LogSeverity, LoggerName};
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::params::{param_err, ParamSet};
use crate::StartError;

static LOGGER: OnceLock<CString> = OnceLock::new();

/// Longest log line, in characters (control characters are escaped, the rest cut with `…`).
const MAX_LINE_CHARS: usize = 2000;

/// The most verbose `tracing` level the ROS logger lets through (a [`Level`] as 0 = TRACE …
/// 4 = ERROR, 5 = nothing); INFO until the node's logger is attached.
static MIN_LEVEL: AtomicU8 = AtomicU8::new(2);

/// Without `RUST_LOG`: the node's own crates at every level (the ROS level decides), others at info.
const DEFAULT_FILTER: &str =
    "info,peaqos_edge=trace,peaqos_core=trace,peaqos_chain=trace,peaqos_stream=trace,peaqos_events=trace";

unsafe extern "C" {
    // rcutils (linked through rcl): the level in force for a logger, its own or inherited.
    fn rcutils_logging_get_logger_effective_level(name: *const c_char) -> c_int;
}

/// Install the global subscriber. `RUST_LOG` refines the filter.
pub fn init() {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => EnvFilter::new(v),
        _ => EnvFilter::new(DEFAULT_FILTER),
    };
    let _ = tracing_subscriber::registry().with(filter).with(RosLogLayer).try_init();
}

/// rcutils severity (10 debug … 50 fatal) → the most verbose `tracing` level shown, as 0..=5.
fn min_level_of(rcutils_severity: c_int) -> u8 {
    match rcutils_severity {
        i32::MIN..=10 => 1, // DEBUG (rcutils has no trace: trace stays with RUST_LOG)
        11..=20 => 2,
        21..=30 => 3,
        31..=40 => 4,
        _ => 5,
    }
}

fn level_rank(l: &Level) -> u8 {
    match *l {
        Level::TRACE => 0,
        Level::DEBUG => 1,
        Level::INFO => 2,
        Level::WARN => 3,
        Level::ERROR => 4,
    }
}

/// From now on, events are logged through the ROS logger of this name, at its ROS level.
pub fn attach(logger_name: &str) {
    if let Ok(name) = CString::new(logger_name) {
        // SAFETY: a valid NUL-terminated name; rcutils only reads it.
        let level = unsafe { rcutils_logging_get_logger_effective_level(name.as_ptr()) };
        MIN_LEVEL.store(min_level_of(level), Ordering::Relaxed);
        tracing::callsite::rebuild_interest_cache();
        let _ = LOGGER.set(name);
    }
}

const LEVEL_NAMES: [(&str, LogSeverity, c_int); 5] = [
    ("debug", LogSeverity::Debug, 10),
    ("info", LogSeverity::Info, 20),
    ("warn", LogSeverity::Warn, 30),
    ("error", LogSeverity::Error, 40),
    ("fatal", LogSeverity::Fatal, 50),
];

/// The `log_level` parameter: the node logger's ROS level, settable at run time. Its start value
/// is the level `--log-level` gave (so `ros2 param get` tells the truth).
pub fn declare_level_parameter(params: &ParamSet) -> Result<(), StartError> {
    let Some(name) = LOGGER.get().cloned() else {
        return Err(param_err("log_level", "declared before the node's logger was attached"));
    };
    let current = match MIN_LEVEL.load(Ordering::Relaxed) {
        0 | 1 => "debug",
        2 => "info",
        3 => "warn",
        4 => "error",
        _ => "fatal",
    };
    let logger = rclrs::Logger::new(name.to_string_lossy()).map_err(|e| param_err("log_level", e))?;
    let apply = Arc::new(move |v: &Arc<str>| {
        let Some((_, severity, native)) = LEVEL_NAMES.iter().find(|(n, _, _)| n.eq_ignore_ascii_case(v)) else {
            return;
        };
        if let Err(e) = logger.set_level(*severity) {
            tracing::warn!("log_level: rcutils refused {v}: {e}");
            return;
        }
        MIN_LEVEL.store(min_level_of(*native), Ordering::Relaxed);
        tracing::callsite::rebuild_interest_cache();
        tracing::info!("log level set to {v}");
    });
    let on_change = Arc::clone(&apply);
    let start = params.settable(
        "log_level",
        Arc::<str>::from(current),
        "The node's log level (debug, info, warn, error, fatal); the same as --ros-args --log-level <node>:=<level>, and may be set at run time.",
        (),
        |v: &Arc<str>| match LEVEL_NAMES.iter().any(|(n, _, _)| n.eq_ignore_ascii_case(v)) {
            true => Ok(()),
            false => Err(format!("log_level must be one of debug, info, warn, error, fatal; got {v:?}")),
        },
        move |v: &Arc<str>| on_change(v),
    )?;
    // A value from a parameters file (or -p log_level:=...) applies from the start too.
    if !start.eq_ignore_ascii_case(current) {
        apply(&start);
    }
    Ok(())
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
    fn register_callsite(&self, _meta: &'static Metadata<'static>) -> Interest {
        // Asked again per event (enabled): the ROS level can change at run time.
        Interest::sometimes()
    }

    fn enabled(&self, meta: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        level_rank(meta.level()) >= MIN_LEVEL.load(Ordering::Relaxed)
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut msg = Message::default();
        event.record(&mut msg);
        // One bounded line whatever a request or file put into the message: a newline cannot
        // start a forged log line, a 1 MB topic cannot write a 1 MB line.
        let line = peaqos_core::text::one_line(&msg.line(), MAX_LINE_CHARS);
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
