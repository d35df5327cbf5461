//! `csp-sync undo RUN [--dry-run] [--deactivate-created] [--allow-deactivations]`: the inverse plan of one
//! journaled run (see [`crate::plan::undo`]) for the records Halo still holds as that run left them, shown
//! like a diff, guarded like a sync, applied in batches and journaled as a run of its own (so an undo can
//! itself be undone).

use std::collections::BTreeMap;

use anyhow::Result;

use crate::api::value_to_i64;
use crate::cli::UndoArgs;
use crate::commands::runs;
use crate::commands::sync::{RunInfo, apply_and_record, lock_unless_dry};
use crate::config::Config;
use crate::context::Apis;
use crate::engine::{self, HaloNeeds};
use crate::error::Exit;
use crate::plan::undo::{Records, UndoPolicy, plan_undo};
use crate::plan::{Module, Plan};
use crate::render::{self, Format};
use crate::secrets::Secrets;
use crate::state::StateDir;
use crate::ui::Ui;

pub async fn run(config: &Config, ui: &Ui, args: &UndoArgs) -> Result<Exit> {
    let state = StateDir::new(config.sync.state_dir.clone());
    let target = runs::find(&state.journal(), args.run)?;
    let (lock, interrupt) = lock_unless_dry(&state, args.dry_run)?;
    let started = crate::context::now()?;
    let apis = Apis::new(config, Secrets::from_env())?;
    let mut modules: Vec<Module> = target.applied.iter().map(|e| e.module).collect();
    modules.sort();
    modules.dedup();
    let raw = tokio::select! {
        raw = engine::read_halo_raw(
            &apis,
            HaloNeeds::for_modules(&modules).with_bulk_read(config.halo.bulk_read, &state.halo_memory()),
        ) => raw?,
        exit = interrupt.wait() => return Ok(exit),
    };
    let records: BTreeMap<&str, Records<'_>> = raw
        .iter()
        .map(|(entity, list)| {
            (
                *entity,
                list.iter()
                    .filter_map(|r| r.get("id").and_then(value_to_i64).map(|id| (id, r)))
                    .collect(),
            )
        })
        .collect();
    let policy = UndoPolicy {
        deactivate_created: args.deactivate_created,
        max_deactivations: config.safety.max_deactivations,
        max_deactivation_percent: config.safety.max_deactivation_percent,
        allow_deactivations: args.allow_deactivations,
    };
    let plan = Plan::new(
        started.to_string(),
        modules,
        plan_undo(&target, &records, &policy),
    );
    if ui.format == Format::Json {
        ui.out_json(&plan);
    } else {
        ui.out(&render::plan_with(&plan, ui.format, ui.layout()));
    }
    ui.info(&format!(
        "csp-sync: undo of run {}: {}",
        target.run,
        render::summary_line(&plan)
    ));
    for t in &plan.tenants {
        for c in &t.conflicts {
            ui.warn(&format!("{}: {}: {}", t.name, c.label, c.reason));
        }
    }
    let Some(lock) = lock else {
        return Ok(Exit::Ok);
    };
    let info = RunInfo {
        command: "undo",
        undo_of: Some(target.run),
    };
    // `--metrics-file` is for `sync` and `diff` (SPEC 2); an undo records none.
    let metrics = crate::metrics::Recorder::new("undo", None);
    apply_and_record(
        config, ui, &state, lock, &interrupt, started, &plan, &apis, None, &info, &metrics,
    )
    .await
}
