//! `csp-sync runs [RUN]`: the journal of applied runs, newest first (when, command, modules, tenants,
//! counts by action, exit code); with a run number, that run's changes shown like a plan.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use serde::Serialize;

use crate::config::Config;
use crate::error::Exit;
use crate::journal::{Journal, JournalRun};
use crate::plan::{Plan, TenantPlan};
use crate::render::{self, Format, Grid};
use crate::state::StateDir;
use crate::ui::Ui;

/// One row of `runs` (also its JSON shape).
#[derive(Debug, Serialize)]
pub struct RunRow {
    pub run: u64,
    pub started_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    pub command: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undo_of: Option<u64>,
    pub modules: Vec<String>,
    pub tenants: usize,
    /// Applied changes by action.
    pub changes: BTreeMap<String, usize>,
    pub failed: usize,
    /// `None` when the run did not end (killed, or still running).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_by: Option<String>,
}

impl RunRow {
    fn of(r: &JournalRun) -> RunRow {
        let mut changes: BTreeMap<String, usize> = BTreeMap::new();
        for a in &r.applied {
            *changes.entry(a.action.as_str().to_string()).or_default() += 1;
        }
        RunRow {
            run: r.run,
            started_at: r.start.started_at.clone(),
            finished_at: r.end.as_ref().map(|e| e.finished_at.clone()),
            command: r.start.command.clone(),
            undo_of: r.start.undo_of,
            modules: r.start.modules.iter().map(ToString::to_string).collect(),
            tenants: r.start.tenants.len(),
            changes,
            failed: r.end.as_ref().map_or(r.failed.len(), |e| e.failed),
            exit_code: r.end.as_ref().map(|e| e.exit_code),
            stopped_by: r.end.as_ref().and_then(|e| e.stopped_by.clone()),
        }
    }

    fn exit_text(&self) -> String {
        match (self.exit_code, &self.stopped_by) {
            (Some(c), Some(s)) => format!("{c} ({s})"),
            (Some(c), None) => c.to_string(),
            (None, _) => "did not end (killed?)".into(),
        }
    }
}

#[derive(Serialize)]
struct Doc<'a> {
    version: u32,
    runs: &'a [RunRow],
}

pub fn run(config: &Config, ui: &Ui, which: Option<u64>) -> Result<Exit> {
    let journal = StateDir::new(config.sync.state_dir.clone()).journal();
    match which {
        None => Ok(list(ui, &journal)),
        Some(n) => show(ui, &journal, n),
    }
}

fn list(ui: &Ui, journal: &Journal) -> Exit {
    let mut rows: Vec<RunRow> = journal.runs().iter().map(RunRow::of).collect();
    rows.reverse();
    match ui.format {
        Format::Json => ui.out_json(&Doc {
            version: 1,
            runs: &rows,
        }),
        f => {
            let mut g = Grid::new([
                "run", "started", "command", "modules", "tenants", "changes", "failed", "exit",
            ]);
            for r in &rows {
                g.push([
                    r.run.to_string(),
                    r.started_at.clone(),
                    match r.undo_of {
                        Some(u) => format!("{} {u}", r.command),
                        None => r.command.clone(),
                    },
                    r.modules.join(", "),
                    r.tenants.to_string(),
                    counts(&r.changes),
                    r.failed.to_string(),
                    r.exit_text(),
                ]);
            }
            ui.out(&g.render(f));
        }
    }
    ui.info(&format!(
        "csp-sync: {} in the journal (`csp-sync runs RUN` shows one, `csp-sync undo RUN` takes it back)",
        crate::render::count(rows.len(), "run", "runs")
    ));
    Exit::Ok
}

fn counts(changes: &BTreeMap<String, usize>) -> String {
    if changes.is_empty() {
        return "none".into();
    }
    changes
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The run `n`, or an error naming the runs there are.
pub fn find(journal: &Journal, n: u64) -> Result<JournalRun> {
    if let Some(r) = journal.run(n) {
        return Ok(r);
    }
    let runs = journal.runs();
    match (runs.first(), runs.last()) {
        (Some(a), Some(b)) => bail!(
            "there is no run {n} in the journal (it holds runs {} to {}; `csp-sync runs` lists them)",
            a.run,
            b.run
        ),
        _ => bail!(
            "there is no run {n}: the journal is empty (a `csp-sync sync` that writes to Halo records one)"
        ),
    }
}

/// A run's applied changes as a plan (failures as the tenant's errors).
pub fn as_plan(r: &JournalRun) -> Plan {
    fn tenant<'a>(
        by: &'a mut BTreeMap<String, TenantPlan>,
        id: &str,
        name: &str,
    ) -> &'a mut TenantPlan {
        by.entry(id.to_string()).or_insert_with(|| TenantPlan {
            customer_id: id.to_string(),
            name: if name.is_empty() { id } else { name }.to_string(),
            ..TenantPlan::default()
        })
    }
    let mut by_tenant: BTreeMap<String, TenantPlan> = BTreeMap::new();
    for e in &r.applied {
        tenant(&mut by_tenant, &e.customer_id, &e.tenant)
            .changes
            .push(e.to_change());
    }
    for f in &r.failed {
        tenant(&mut by_tenant, &f.customer_id, "")
            .errors
            .push(format!(
                "{} {} failed: {}",
                f.action.as_str(),
                f.label,
                f.error
            ));
    }
    Plan::new(
        r.start.started_at.clone(),
        r.start.modules.clone(),
        by_tenant.into_values().collect(),
    )
}

fn show(ui: &Ui, journal: &Journal, n: u64) -> Result<Exit> {
    let r = find(journal, n)?;
    let plan = as_plan(&r);
    if ui.format == Format::Json {
        ui.out_json(&plan);
    } else {
        ui.out(&render::plan_with(&plan, ui.format, ui.layout()));
    }
    let row = RunRow::of(&r);
    ui.info(&format!(
        "csp-sync: run {n} ({}, started {}): {} applied ({}), {} failed; exit {}",
        row.command,
        row.started_at,
        crate::render::count(r.applied.len(), "change", "changes"),
        counts(&row.changes),
        row.failed,
        row.exit_text()
    ));
    Ok(Exit::Ok)
}
