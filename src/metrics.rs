//! `--metrics-file PATH` (SPEC section 2): the figures of a `sync` or `diff` run in Prometheus text format
//! (exposition format 0.0.4) for node_exporter's textfile collector, written atomically (write, fsync,
//! rename: the collector never reads half a file).
//!
//! Per module and tenant: changes by action (planned; for `sync` also applied and failed), conflicts,
//! held back; per tenant: errors; per API: requests and 429 answers; the run's duration, whether it
//! succeeded, and the time of the last successful run, carried over from the previous file when this run
//! failed, so an alert on "no success for 3 hours" keeps working across failures.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use anyhow::{Context as _, Result};

use crate::apply::ApplyReport;
use crate::error::Exit;
use crate::http::{Api, Http};
use crate::plan::{Action, Plan};
use crate::ui::Ui;

const ACTIONS: [Action; 5] = [
    Action::Create,
    Action::Update,
    Action::Link,
    Action::Deactivate,
    Action::Reactivate,
];

/// The largest previous metrics file read back (for the last success time).
const MAX_PREVIOUS_BYTES: u64 = 4 * 1024 * 1024;

/// (customer id, tenant name).
type TenantKey = (String, String);

#[derive(Default)]
struct Figures {
    /// Per tenant, per module: planned changes by action, conflicts, held back.
    planned: BTreeMap<TenantKey, BTreeMap<String, ModuleFigures>>,
    errors: BTreeMap<TenantKey, usize>,
    /// Per tenant and module (sync): applied by action, failed.
    applied: BTreeMap<(TenantKey, String), ([usize; 5], usize)>,
    applied_recorded: bool,
    http: Option<Arc<Http>>,
}

#[derive(Default, Clone, Copy)]
struct ModuleFigures {
    changes: [usize; 5],
    conflicts: usize,
    held_back: usize,
}

fn action_index(a: Action) -> usize {
    ACTIONS.iter().position(|x| *x == a).unwrap_or(0)
}

/// Collects a run's figures while it goes; [`Recorder::finish`] writes them. Does nothing without a path.
pub struct Recorder {
    command: &'static str,
    path: Option<PathBuf>,
    started: Instant,
    figures: Mutex<Figures>,
}

impl Recorder {
    pub fn new(command: &'static str, path: Option<PathBuf>) -> Recorder {
        Recorder {
            command,
            path,
            started: Instant::now(),
            figures: Mutex::new(Figures::default()),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Figures) -> R) -> R {
        f(&mut self.figures.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The plan of the run: what it found to change.
    pub fn plan(&self, plan: &Plan) {
        self.with(|fig| {
            for t in &plan.tenants {
                let key = (t.customer_id.clone(), t.name.clone());
                let modules = fig.planned.entry(key.clone()).or_default();
                for m in &plan.modules {
                    modules.entry(m.as_str().to_string()).or_default();
                }
                for c in &t.changes {
                    modules
                        .entry(c.module.as_str().to_string())
                        .or_default()
                        .changes[action_index(c.action)] += 1;
                }
                for c in &t.conflicts {
                    modules
                        .entry(c.module.as_str().to_string())
                        .or_default()
                        .conflicts += 1;
                }
                for h in &t.held_back {
                    modules
                        .entry(h.module.as_str().to_string())
                        .or_default()
                        .held_back += h.changes.len();
                }
                *fig.errors.entry(key).or_default() += t.errors.len();
            }
        });
    }

    /// The HTTP client of the run, for its request and 429 counts.
    pub fn http(&self, http: &Arc<Http>) {
        self.with(|fig| fig.http = Some(http.clone()));
    }

    /// What a sync wrote.
    pub fn applied(&self, plan: &Plan, report: &ApplyReport<'_>) {
        let name_of = |id: &str| {
            plan.tenants
                .iter()
                .find(|t| t.customer_id == id)
                .map(|t| t.name.clone())
                .unwrap_or_default()
        };
        self.with(|fig| {
            fig.applied_recorded = true;
            for t in &plan.tenants {
                for m in &plan.modules {
                    fig.applied
                        .entry((
                            (t.customer_id.clone(), t.name.clone()),
                            m.as_str().to_string(),
                        ))
                        .or_default();
                }
            }
            for a in &report.applied {
                let key = (
                    (a.customer_id.to_string(), name_of(a.customer_id)),
                    a.change.module.as_str().to_string(),
                );
                fig.applied.entry(key).or_default().0[action_index(a.change.action)] += 1;
            }
            for f in &report.failed {
                let key = (
                    (f.customer_id.to_string(), name_of(f.customer_id)),
                    f.change.module.as_str().to_string(),
                );
                fig.applied.entry(key).or_default().1 += 1;
            }
        });
    }

    /// Writes the metrics file (when one was asked for) for a run that ended with `result`. A file that
    /// cannot be written makes the run fail: whoever asked for it monitors with it.
    pub fn finish(&self, ui: &Ui, result: &Result<Exit>) -> Option<Exit> {
        let path = self.path.as_ref()?;
        let success = matches!(result, Ok(e) if *e != Exit::Error);
        match self.write(path, success) {
            Ok(()) => None,
            Err(e) => {
                ui.error(&crate::app::chain(&e));
                Some(Exit::Error)
            }
        }
    }

    fn write(&self, path: &Path, success: bool) -> Result<()> {
        let now = crate::context::now()?.as_second();
        let last_success = if success {
            Some(now)
        } else {
            previous_last_success(path, self.command)
        };
        let text = self.render(success, now, last_success);
        let text = crate::redact::text(&text);
        crate::config::write_atomic(path, text.as_bytes(), None).with_context(|| {
            format!(
                "writing the metrics file {} (--metrics-file: a directory this user may write, e.g. \
                 node_exporter's --collector.textfile.directory)",
                path.display()
            )
        })
    }

    /// The file's text.
    #[allow(clippy::cast_precision_loss)] // durations in seconds
    pub fn render(&self, success: bool, now: i64, last_success: Option<i64>) -> String {
        let cmd = self.command;
        let mut out = String::new();
        self.with(|fig| {
            let tenant_labels =
                |(id, name): &TenantKey| format!("customer_id=\"{}\",tenant=\"{}\"", esc(id), esc(name));
            head(&mut out, "csp_sync_changes", "Changes the run planned, by tenant, module and action (diff: pending; sync: to apply).");
            for (t, modules) in &fig.planned {
                for (m, f) in modules {
                    for (i, a) in ACTIONS.iter().enumerate() {
                        let _ = writeln!(
                            out,
                            "csp_sync_changes{{command=\"{cmd}\",{},module=\"{}\",action=\"{}\"}} {}",
                            tenant_labels(t),
                            esc(m),
                            a.as_str(),
                            f.changes[i]
                        );
                    }
                }
            }
            head(&mut out, "csp_sync_conflicts", "Conflicts reported (never written), by tenant and module.");
            for (t, modules) in &fig.planned {
                for (m, f) in modules {
                    let _ = writeln!(out, "csp_sync_conflicts{{command=\"{cmd}\",{},module=\"{}\"}} {}", tenant_labels(t), esc(m), f.conflicts);
                }
            }
            head(&mut out, "csp_sync_held_back", "Changes a safety guard held back, by tenant and module.");
            for (t, modules) in &fig.planned {
                for (m, f) in modules {
                    let _ = writeln!(out, "csp_sync_held_back{{command=\"{cmd}\",{},module=\"{}\"}} {}", tenant_labels(t), esc(m), f.held_back);
                }
            }
            head(&mut out, "csp_sync_errors", "Errors that kept part of a tenant from being planned or read.");
            for (t, n) in &fig.errors {
                let _ = writeln!(out, "csp_sync_errors{{command=\"{cmd}\",{}}} {n}", tenant_labels(t));
            }
            if fig.applied_recorded {
                head(&mut out, "csp_sync_applied_changes", "Changes written to Halo, by tenant, module and action.");
                for ((t, m), (by_action, _)) in &fig.applied {
                    for (i, a) in ACTIONS.iter().enumerate() {
                        let _ = writeln!(
                            out,
                            "csp_sync_applied_changes{{command=\"{cmd}\",{},module=\"{}\",action=\"{}\"}} {}",
                            tenant_labels(t),
                            esc(m),
                            a.as_str(),
                            by_action[i]
                        );
                    }
                }
                head(&mut out, "csp_sync_failed_changes", "Changes Halo refused or that could not be written, by tenant and module.");
                for ((t, m), (_, failed)) in &fig.applied {
                    let _ = writeln!(out, "csp_sync_failed_changes{{command=\"{cmd}\",{},module=\"{}\"}} {failed}", tenant_labels(t), esc(m));
                }
            }
            head(&mut out, "csp_sync_requests", "HTTP requests sent, by API, retries included.");
            for api in Api::ALL {
                let n = fig.http.as_ref().map_or(0, |h| h.request_count(api));
                let _ = writeln!(out, "csp_sync_requests{{command=\"{cmd}\",api=\"{}\"}} {n}", api.label());
            }
            head(&mut out, "csp_sync_throttled_requests", "429 (throttled) answers, by API.");
            for api in Api::ALL {
                let n = fig.http.as_ref().map_or(0, |h| h.throttled_count(api));
                let _ = writeln!(out, "csp_sync_throttled_requests{{command=\"{cmd}\",api=\"{}\"}} {n}", api.label());
            }
        });
        head(
            &mut out,
            "csp_sync_run_duration_seconds",
            "How long the run took.",
        );
        let _ = writeln!(
            out,
            "csp_sync_run_duration_seconds{{command=\"{cmd}\"}} {:.3}",
            self.started.elapsed().as_secs_f64()
        );
        head(
            &mut out,
            "csp_sync_run_success",
            "1 when the run succeeded (exit 0, 2 or 3), 0 when it failed.",
        );
        let _ = writeln!(
            out,
            "csp_sync_run_success{{command=\"{cmd}\"}} {}",
            u8::from(success)
        );
        head(
            &mut out,
            "csp_sync_last_run_timestamp_seconds",
            "When this run ended (Unix time).",
        );
        let _ = writeln!(
            out,
            "csp_sync_last_run_timestamp_seconds{{command=\"{cmd}\"}} {now}"
        );
        if let Some(t) = last_success {
            head(
                &mut out,
                "csp_sync_last_success_timestamp_seconds",
                "When the last successful run ended (Unix time); kept from the previous file while runs fail.",
            );
            let _ = writeln!(
                out,
                "csp_sync_last_success_timestamp_seconds{{command=\"{cmd}\"}} {t}"
            );
        }
        out
    }
}

fn head(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
}

/// A label value escaped as the text format wants: backslash, double quote and newline.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The last success time recorded in a previous file of the same command.
fn previous_last_success(path: &Path, command: &str) -> Option<i64> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.len() > MAX_PREVIOUS_BYTES {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    let prefix = format!("csp_sync_last_success_timestamp_seconds{{command=\"{command}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite())
        .map(|v| v as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_run_keeps_the_previous_success_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("csp-sync.prom");
        let r = Recorder::new("sync", Some(path.clone()));
        std::fs::write(&path, r.render(true, 1_000, Some(1_000))).unwrap();
        assert_eq!(previous_last_success(&path, "sync"), Some(1_000));
        assert_eq!(previous_last_success(&path, "diff"), None);
        let text = r.render(false, 2_000, previous_last_success(&path, "sync"));
        assert!(
            text.contains("csp_sync_last_success_timestamp_seconds{command=\"sync\"} 1000\n"),
            "{text}"
        );
        assert!(
            text.contains("csp_sync_run_success{command=\"sync\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("csp_sync_last_run_timestamp_seconds{command=\"sync\"} 2000\n"),
            "{text}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
