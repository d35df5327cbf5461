//! The journal of applied runs (SPEC section 9): one append-only JSON Lines file per run under
//! `state_dir/runs/`, numbered in order (`runs/000042.jsonl` is run 42), the last [`JOURNAL_RUNS`] kept.
//!
//! A run's file starts with a `start` line (when, command, modules, tenants), gets one `applied` line per
//! change Halo took (with its Halo id and the fields' old and new values, which is what `undo` needs) and
//! one `failed` line per change it refused, appended and fsync'd after every batch, and ends with an `end`
//! line (exit code, counts). A run killed half way leaves its file without an `end` line: what it wrote is
//! still there, up to the last batch. A line cut short by a kill is skipped when reading.
//!
//! The single `journal.json` of older versions is migrated into run files the first time a run is journaled.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::apply::{Applied, Failed};
use crate::plan::{Action, Change, FieldChange, HaloEntity, Module};

/// How many runs the journal keeps.
pub const JOURNAL_RUNS: usize = 100;

/// Largest journal file read back (a run of a very large estate stays well under it).
const MAX_RUN_FILE: u64 = 256 * 1024 * 1024;

/// One applied change. The first fields are those of the older `journal.json`, so its runs read as well.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub customer_id: String,
    pub module: Module,
    pub action: Action,
    pub entity: HaloEntity,
    pub halo_id: Option<i64>,
    pub source_key: String,
    pub label: String,
    #[serde(default)]
    pub reason: String,
    /// Each written field with Halo's value before (`from`) and the value written (`to`); empty in runs
    /// journaled by older versions.
    #[serde(default)]
    pub fields: Vec<FieldChange>,
    /// The tenant's name when the run was made.
    #[serde(default)]
    pub tenant: String,
}

impl JournalEntry {
    pub fn of(customer_id: &str, tenant: &str, change: &Change, halo_id: Option<i64>) -> Self {
        JournalEntry {
            customer_id: customer_id.to_string(),
            module: change.module,
            action: change.action,
            entity: change.entity,
            halo_id,
            source_key: change.source_key.clone(),
            label: change.label.clone(),
            reason: change.reason.clone(),
            fields: change.fields.clone(),
            tenant: tenant.to_string(),
        }
    }

    /// The change as a plan shows it.
    pub fn to_change(&self) -> Change {
        Change {
            module: self.module,
            action: self.action,
            entity: self.entity,
            halo_id: self.halo_id,
            source_key: self.source_key.clone(),
            label: self.label.clone(),
            reason: self.reason.clone(),
            fields: self.fields.clone(),
            extra: serde_json::Map::new(),
        }
    }
}

/// One change Halo refused or that could not be written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalFailure {
    pub customer_id: String,
    pub label: String,
    pub action: Action,
    pub error: String,
}

/// The first line of a run's file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStart {
    pub started_at: String,
    /// `sync`, `sync --plan` or `undo`.
    pub command: String,
    #[serde(default)]
    pub modules: Vec<Module>,
    /// Customer ids of the tenants in the run.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// For an undo: the run it reverses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo_of: Option<u64>,
    #[serde(default)]
    pub pid: u32,
}

/// The last line of a finished run's file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEnd {
    pub finished_at: String,
    pub exit_code: u8,
    pub applied: usize,
    pub failed: usize,
    /// The signal that stopped the run early (`SIGINT`, `SIGTERM`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_by: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Line {
    Start(RunStart),
    Applied(JournalEntry),
    Failed(JournalFailure),
    End(RunEnd),
}

/// A run read back from its file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JournalRun {
    pub run: u64,
    pub start: RunStart,
    pub applied: Vec<JournalEntry>,
    pub failed: Vec<JournalFailure>,
    /// `None` when the run was killed before it ended (its `applied` is what it wrote up to then).
    pub end: Option<RunEnd>,
}

/// The journal of one state directory.
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
    legacy: PathBuf,
}

impl Journal {
    pub fn new(state_dir: &Path) -> Journal {
        Journal {
            dir: state_dir.join("runs"),
            legacy: state_dir.join("journal.json"),
        }
    }

    fn file_of(&self, run: u64) -> PathBuf {
        self.dir.join(format!("{run:06}.jsonl"))
    }

    /// The run numbers on disk, oldest first.
    fn numbers(&self) -> Vec<u64> {
        let mut out: Vec<u64> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".jsonl")?.parse().ok()
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// Every run, oldest first.
    pub fn runs(&self) -> Vec<JournalRun> {
        let numbers = self.numbers();
        if numbers.is_empty() {
            return self.legacy_runs();
        }
        numbers.into_iter().filter_map(|n| self.run(n)).collect()
    }

    /// One run, or `None` when its file is gone (or was never there).
    pub fn run(&self, run: u64) -> Option<JournalRun> {
        if self.numbers().is_empty() {
            return self.legacy_runs().into_iter().find(|r| r.run == run);
        }
        let path = self.file_of(run);
        let file = File::open(&path).ok()?;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(file, MAX_RUN_FILE), &mut text)
            .ok()?;
        let mut out: Option<JournalRun> = None;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            // A line cut short by a kill, or written by a newer version, is skipped.
            let Ok(parsed) = serde_json::from_str::<Line>(line) else {
                continue;
            };
            match (parsed, &mut out) {
                (Line::Start(start), None) => {
                    out = Some(JournalRun {
                        run,
                        start,
                        applied: Vec::new(),
                        failed: Vec::new(),
                        end: None,
                    });
                }
                (Line::Applied(e), Some(r)) => r.applied.push(e),
                (Line::Failed(f), Some(r)) => r.failed.push(f),
                (Line::End(e), Some(r)) => r.end = Some(e),
                _ => {}
            }
        }
        out
    }

    /// The runs of an older version's `journal.json`, numbered from 1.
    fn legacy_runs(&self) -> Vec<JournalRun> {
        #[derive(Deserialize)]
        struct Old {
            started_at: String,
            finished_at: String,
            applied: Vec<JournalEntry>,
            failed: usize,
        }
        let Ok(bytes) = fs::read(&self.legacy) else {
            return Vec::new();
        };
        let Ok(old) = serde_json::from_slice::<Vec<Old>>(&bytes) else {
            tracing::warn!("ignoring the unreadable journal {}", self.legacy.display());
            return Vec::new();
        };
        old.into_iter()
            .enumerate()
            .map(|(i, o)| JournalRun {
                run: i as u64 + 1,
                start: RunStart {
                    started_at: o.started_at,
                    command: "sync".into(),
                    modules: Vec::new(),
                    tenants: Vec::new(),
                    undo_of: None,
                    pid: 0,
                },
                end: Some(RunEnd {
                    finished_at: o.finished_at,
                    exit_code: u8::from(o.failed > 0),
                    applied: o.applied.len(),
                    failed: o.failed,
                    stopped_by: None,
                }),
                applied: o.applied,
                failed: Vec::new(),
            })
            .collect()
    }

    /// Moves an older version's `journal.json` into run files (once).
    fn migrate(&self) -> Result<()> {
        let old = self.legacy_runs();
        if !self.legacy.exists() {
            return Ok(());
        }
        for r in &old {
            let mut text = String::new();
            push_line(&mut text, &Line::Start(r.start.clone()))?;
            for a in &r.applied {
                push_line(&mut text, &Line::Applied(a.clone()))?;
            }
            if let Some(e) = &r.end {
                push_line(&mut text, &Line::End(e.clone()))?;
            }
            crate::config::write_atomic(&self.file_of(r.run), text.as_bytes(), None)
                .with_context(|| format!("migrating {}", self.legacy.display()))?;
        }
        fs::rename(&self.legacy, self.legacy.with_extension("json.migrated"))
            .with_context(|| format!("migrating {}", self.legacy.display()))
    }

    /// Starts the record of a run (the caller holds the run lock): migrates an older journal, numbers the
    /// run after the last one, writes its `start` line and drops the oldest runs beyond [`JOURNAL_RUNS`].
    pub fn begin(&self, start: RunStart) -> Result<RunRecorder> {
        fs::create_dir_all(&self.dir).with_context(|| {
            format!(
                "cannot create the journal directory {} (set [sync] state_dir to a writable place)",
                self.dir.display()
            )
        })?;
        self.migrate()?;
        let numbers = self.numbers();
        let run = numbers.last().map_or(1, |n| n + 1);
        let path = self.file_of(run);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot create the journal {}", path.display()))?;
        let rec = RunRecorder {
            run,
            path,
            inner: Mutex::new(Inner {
                file,
                applied: 0,
                failed: 0,
                error: None,
            }),
        };
        rec.write(&[Line::Start(start)])?;
        let keep_from = numbers.len().saturating_sub(JOURNAL_RUNS - 1);
        for old in &numbers[..keep_from] {
            let _ = fs::remove_file(self.file_of(*old));
        }
        Ok(rec)
    }
}

fn push_line(text: &mut String, line: &Line) -> Result<()> {
    // Through the one redaction layer, like every state file (a server may have echoed a secret into an
    // error message journaled here).
    let bytes = crate::redact::json(line).context("serialising the journal")?;
    text.push_str(&String::from_utf8_lossy(&bytes));
    text.push('\n');
    Ok(())
}

struct Inner {
    file: File,
    applied: usize,
    failed: usize,
    /// The first write error; later batches are not journaled after one.
    error: Option<String>,
}

/// The open journal of the running run.
pub struct RunRecorder {
    run: u64,
    path: PathBuf,
    inner: Mutex<Inner>,
}

impl RunRecorder {
    pub fn run(&self) -> u64 {
        self.run
    }

    fn write(&self, lines: &[Line]) -> Result<()> {
        let mut text = String::new();
        for l in lines {
            push_line(&mut text, l)?;
        }
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        inner
            .file
            .write_all(text.as_bytes())
            .and_then(|()| inner.file.sync_data())
            .with_context(|| format!("cannot write the journal {}", self.path.display()))
    }

    /// Appends one batch's outcome and fsyncs it. A failure to write is kept and reported at the end of the
    /// run (the writes to Halo are not stopped for it).
    pub fn batch(
        &self,
        tenant_name: &dyn Fn(&str) -> String,
        applied: &[Applied<'_>],
        failed: &[Failed<'_>],
    ) {
        let mut lines = Vec::new();
        for a in applied {
            lines.push(Line::Applied(JournalEntry::of(
                a.customer_id,
                &tenant_name(a.customer_id),
                a.change,
                a.halo_id,
            )));
        }
        for f in failed {
            lines.push(Line::Failed(JournalFailure {
                customer_id: f.customer_id.to_string(),
                label: f.change.label.clone(),
                action: f.change.action,
                error: f.error.clone(),
            }));
        }
        if lines.is_empty() {
            return;
        }
        let result = self.write(&lines);
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.applied += applied.len();
        inner.failed += failed.len();
        if let Err(e) = result
            && inner.error.is_none()
        {
            inner.error = Some(crate::app::chain(&e));
        }
    }

    /// Writes the `end` line; returns the first write error of the run, if any.
    pub fn finish(
        self,
        finished_at: String,
        exit_code: u8,
        stopped_by: Option<&str>,
    ) -> Result<()> {
        let (applied, failed, error) = {
            let inner = self
                .inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            (inner.applied, inner.failed, inner.error.clone())
        };
        self.write(&[Line::End(RunEnd {
            finished_at,
            exit_code,
            applied,
            failed,
            stopped_by: stopped_by.map(str::to_string),
        })])?;
        match error {
            Some(e) => anyhow::bail!("{e}"),
            None => Ok(()),
        }
    }
}

/// A value for display: strings bare, the rest as JSON.
pub fn show_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "(empty)".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> RunStart {
        RunStart {
            started_at: "2026-11-27T09:00:00Z".into(),
            command: "sync".into(),
            modules: vec![Module::Users],
            tenants: vec![],
            undo_of: None,
            pid: 1,
        }
    }

    #[test]
    fn runs_are_numbered_and_the_last_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new(dir.path());
        for _ in 0..(JOURNAL_RUNS + 3) {
            j.begin(start())
                .unwrap()
                .finish("x".into(), 0, None)
                .unwrap();
        }
        let runs = j.runs();
        assert_eq!(runs.len(), JOURNAL_RUNS);
        assert_eq!(runs[0].run, 4);
        assert_eq!(runs.last().unwrap().run, JOURNAL_RUNS as u64 + 3);
        assert!(runs.iter().all(|r| r.end.is_some()));
    }

    #[test]
    fn a_killed_run_keeps_what_it_journaled_and_a_cut_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new(dir.path());
        let rec = j.begin(start()).unwrap();
        let entry = JournalEntry {
            customer_id: "t".into(),
            module: Module::Users,
            action: Action::Deactivate,
            entity: HaloEntity::Users,
            halo_id: Some(7),
            source_key: "oid".into(),
            label: "a@b".into(),
            reason: "gone".into(),
            fields: vec![],
            tenant: "T".into(),
        };
        rec.write(&[Line::Applied(entry.clone())]).unwrap();
        let path = rec.path.clone();
        drop(rec);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"type\":\"applied\",\"customer_").unwrap();
        let run = j.run(1).unwrap();
        assert_eq!(run.applied, vec![entry]);
        assert!(run.end.is_none());
    }

    #[test]
    fn an_older_journal_json_is_read_and_migrated() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("journal.json"),
            r#"[{"started_at":"a","finished_at":"b","applied":[{"customer_id":"t","module":"users","action":"create","entity":"Users","halo_id":5,"source_key":"k","label":"l"}],"failed":0}]"#,
        )
        .unwrap();
        let j = Journal::new(dir.path());
        let runs = j.runs();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].applied[0].halo_id, Some(5));
        let rec = j.begin(start()).unwrap();
        assert_eq!(rec.run(), 2);
        rec.finish("c".into(), 0, None).unwrap();
        let runs = j.runs();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].applied[0].label, "l");
        assert!(!dir.path().join("journal.json").exists());
    }
}
