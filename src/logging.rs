//! Logging: `tracing` events to stderr, as text or as one JSON object per line (`--log-format json`).
//!
//! Levels: default warn; `-v` info, `-vv` debug, `-vvv` trace for csp-sync itself (dependencies stay at
//! warn, except reqwest at debug with `-vvv`); `-q` errors only. `RUST_LOG` overrides all of that. The
//! HTTP layer never logs headers or bodies holding secrets, and every event is masked on its way out
//! ([`crate::redact::Writer`]) in case a server echoed one.

use std::io::IsTerminal as _;

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The filter directives for a verbosity (-1 quiet .. 3).
pub fn directives(verbosity: i8) -> &'static str {
    match verbosity {
        i8::MIN..=-1 => "error",
        0 => "warn",
        1 => "warn,csp_sync=info",
        2 => "warn,csp_sync=debug",
        3..=i8::MAX => "warn,csp_sync=trace,reqwest=debug",
    }
}

/// The filter: `RUST_LOG` when it is set and valid, else the verbosity's directives. The second value is
/// a problem with `RUST_LOG` to report once logging is up.
fn filter(verbosity: i8, rust_log: Option<&str>) -> (EnvFilter, Option<String>) {
    let default = || EnvFilter::new(directives(verbosity));
    match rust_log.map(str::trim).filter(|v| !v.is_empty()) {
        None => (default(), None),
        Some(spec) => match EnvFilter::try_new(spec) {
            Ok(f) => (f, None),
            Err(e) => (default(), Some(format!("ignoring RUST_LOG={spec:?}: {e}"))),
        },
    }
}

/// Installs the global subscriber (stderr). Calling it again does nothing.
pub fn init(verbosity: i8, json: bool) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let (filter, problem) = filter(verbosity, rust_log.as_deref());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| crate::redact::Writer::new(std::io::stderr()));
    let installed = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
            .is_ok()
    } else if verbosity < 2 {
        // People's level: the lines read like the UI's own (`warning: ...`), without timestamps or
        // key=value fields; every event at these levels says what it needs in its message.
        builder.event_format(Plain).try_init().is_ok()
    } else {
        let ansi = std::io::stderr().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        builder
            .with_ansi(ansi)
            .with_target(verbosity >= 2)
            .try_init()
            .is_ok()
    };
    if installed && let Some(problem) = problem {
        tracing::warn!("{problem}");
    }
}

/// The text format at the default verbosity and `-v`: `warning: <message>` / `error: <message>` like
/// [`crate::ui::Ui`]'s lines, info as the bare message; fields other than the message are left out.
struct Plain;

impl<S, N> FormatEvent<S, N> for Plain
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _cx: &FmtContext<'_, S, N>,
        mut writer: format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let prefix = match *event.metadata().level() {
            tracing::Level::ERROR => "error: ",
            tracing::Level::WARN => "warning: ",
            tracing::Level::INFO => "",
            _ => "debug: ",
        };
        let mut message = MessageOnly(String::new());
        event.record(&mut message);
        writeln!(writer, "{prefix}{}", message.0)
    }
}

/// Collects the `message` field of an event.
struct MessageOnly(String);

impl Visit for MessageOnly {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_levels() {
        assert_eq!(directives(-1), "error");
        assert_eq!(directives(0), "warn");
        assert_eq!(directives(1), "warn,csp_sync=info");
        assert_eq!(directives(2), "warn,csp_sync=debug");
        assert_eq!(directives(3), "warn,csp_sync=trace,reqwest=debug");
        assert_eq!(directives(9), directives(3));
    }

    #[test]
    fn rust_log_overrides_and_bad_values_fall_back() {
        let (f, problem) = filter(0, Some("csp_sync=trace"));
        assert!(problem.is_none());
        assert_eq!(f.to_string(), "csp_sync=trace");
        let (f, problem) = filter(1, Some("csp_sync=[[["));
        assert!(problem.unwrap().contains("ignoring RUST_LOG"));
        assert_eq!(f.to_string(), EnvFilter::new(directives(1)).to_string());
        let (f, _) = filter(2, Some("  "));
        assert_eq!(f.to_string(), EnvFilter::new(directives(2)).to_string());
    }
}
