//! The output handle: stdout carries only the command's output; progress bars (only on a terminal),
//! summaries and warnings go to stderr.

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::render::{Format, Layout};

/// How output is shown, decided once from the global flags and the environment.
#[derive(Debug, Clone)]
pub struct Ui {
    pub format: Format,
    pub quiet: bool,
    progress: bool,
    /// `--log-format json`: stderr lines are JSON objects like the log events, so a log collector can
    /// parse every line.
    json_logs: bool,
    /// JSON documents on one line each (stdout is not a terminal: a file collecting runs is JSON Lines).
    compact_json: bool,
    /// Table width and detail (`COLUMNS`, `--wide`).
    layout: Layout,
    /// Whether stdout is a terminal (then the table already ends with the summary line).
    stdout_terminal: bool,
}

impl Ui {
    /// `format`: already resolved from `--output` and whether stdout is a terminal.
    pub fn new(format: Format, quiet: bool, no_progress: bool) -> Ui {
        let progress = !no_progress && !quiet && std::io::stderr().is_terminal();
        Ui {
            format,
            quiet,
            progress,
            json_logs: false,
            compact_json: false,
            layout: Layout::default(),
            stdout_terminal: false,
        }
    }

    /// Sets the table layout (width from `COLUMNS` or the terminal, `--wide`).
    #[must_use]
    pub fn with_layout(mut self, layout: Layout) -> Ui {
        self.layout = layout;
        self
    }

    /// Records whether stdout is a terminal, so what the table on stdout already shows is not repeated
    /// on stderr.
    #[must_use]
    pub fn with_stdout_terminal(mut self, terminal: bool) -> Ui {
        self.stdout_terminal = terminal;
        self
    }

    /// The table layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Whether stdout is a terminal.
    pub fn stdout_is_terminal(&self) -> bool {
        self.stdout_terminal
    }

    /// Writes each JSON document on one line (JSON Lines) instead of pretty-printed: chosen when stdout is
    /// not a terminal, so `csp-sync -o json sync >> runs.jsonl` collects one line per run.
    #[must_use]
    pub fn with_compact_json(mut self, compact: bool) -> Ui {
        self.compact_json = compact;
        self
    }

    /// Writes the stderr lines as JSON objects (`--log-format json`), shaped like the log events:
    /// `{"timestamp", "level", "message", "target"}`.
    #[must_use]
    pub fn with_json_logs(mut self, json: bool) -> Ui {
        self.json_logs = json;
        self
    }

    /// One line on stderr: as is, or as a JSON object with `level` when logs are JSON; masked
    /// ([`crate::redact`]) either way.
    fn line(&self, level: &str, prefix: &str, text: &str) {
        let text = crate::redact::text(text);
        let text = text.as_ref();
        if self.json_logs {
            let event = serde_json::json!({
                "timestamp": jiff::Timestamp::now().to_string(),
                "level": level,
                "message": text,
                "target": "csp_sync",
            });
            eprintln!("{event}");
        } else {
            eprintln!("{prefix}{text}");
        }
    }

    /// Writes the command's output to stdout, masked ([`crate::redact`]). A closed pipe (`| head`) is
    /// not an error.
    pub fn out(&self, text: &str) {
        let mut out = crate::redact::Writer::new(std::io::stdout().lock());
        let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    }

    /// Writes a JSON document (newline-terminated, masked line by line) to stdout without building it in
    /// memory first: a large estate's plan can be tens of megabytes. Pretty on a terminal; one line
    /// otherwise (JSON Lines), which the masking writer holds until the line ends.
    pub fn out_json<T: serde::Serialize>(&self, value: &T) {
        let mut out = crate::redact::Writer::new(std::io::BufWriter::new(std::io::stdout().lock()));
        let written = if self.compact_json {
            serde_json::to_writer(&mut out, value)
        } else {
            serde_json::to_writer_pretty(&mut out, value)
        };
        let _ = written
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush());
    }

    /// A line for people on stderr (summaries, hints); suppressed by `-q`.
    pub fn info(&self, text: &str) {
        if !self.quiet {
            self.line("INFO", "", text);
        }
    }

    /// A line a person must see whatever `-q` says (a device code to enter, an interactive answer saved),
    /// on stderr.
    pub fn say(&self, text: &str) {
        self.line("INFO", "", text);
    }

    /// A note on stderr (`note: ...`): something asked for that was deliberately not done; suppressed by
    /// `-q`.
    pub fn note(&self, text: &str) {
        if !self.quiet {
            self.line("INFO", "note: ", text);
        }
    }

    /// A warning on stderr; always shown.
    pub fn warn(&self, text: &str) {
        self.line("WARN", "warning: ", text);
    }

    /// The error that ended the run, on stderr; always shown.
    pub fn error(&self, text: &str) {
        self.line("ERROR", "error: ", text);
    }

    /// A progress bar for one phase; hidden unless stderr is a terminal and progress is wanted, so nothing
    /// of it reaches cron or CI logs.
    pub fn bar(&self, phase: &str, len: u64) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        if let Ok(style) =
            ProgressStyle::with_template("{msg:>18} [{bar:30}] {pos}/{len} {elapsed}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(phase.to_string());
        bar
    }
}
