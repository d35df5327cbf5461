//! `csp-sync sync`: read, plan, apply in batches, then store state. With `--dry-run` it prints exactly what
//! `diff` prints and writes nothing; with `--plan FILE` it applies exactly a saved plan, refusing when a
//! Halo record it touches changed since the plan was made.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::api::{self, halo::WriteKind, value_to_i64};
use crate::apply::{self, HaloWriter, WriteError, natural_key};
use crate::cli::SyncArgs;
use crate::commands::run;
use crate::config::Config;
use crate::context::Apis;
use crate::engine::HaloNeeds;
use crate::engine::{self, HaloRaw};
use crate::error::Exit;
use crate::http::ErrorKind;
use crate::interrupt::Interrupt;
use crate::journal::RunStart;
use crate::plan::{Action, Change, HaloEntity, Plan, same_value as same};
use crate::state::StateDir;
use crate::ui::Ui;

/// Halo as the applier sees it.
pub(crate) struct HaloApi<'a> {
    pub apis: &'a Apis,
}

fn write_error(e: api::Error, create: bool) -> WriteError {
    match e {
        api::Error::Api(a) => match a.kind {
            ErrorKind::BadRequest => WriteError::Refused(a.message.clone()),
            // A 2xx whose body cannot be read: the records may have landed (SPEC 8), so creates are
            // verified by reading Halo, like a lost reply.
            ErrorKind::Decode if create => WriteError::Uncertain(a.to_string()),
            ErrorKind::Uncertain
            | ErrorKind::Timeout
            | ErrorKind::Transport
            | ErrorKind::Server => WriteError::Uncertain(a.to_string()),
            _ => WriteError::Failed(a.to_string()),
        },
        other => WriteError::Failed(other.to_string()),
    }
}

fn list_key(entity: HaloEntity) -> &'static str {
    match entity {
        HaloEntity::Client => "clients",
        HaloEntity::Site => "sites",
        HaloEntity::Users => "users",
        HaloEntity::SoftwareLicence => "licences",
        HaloEntity::Asset => "assets",
        HaloEntity::Invoice => "invoices",
    }
}

impl HaloWriter for HaloApi<'_> {
    async fn post(
        &self,
        entity: HaloEntity,
        records: &[Value],
        create: bool,
    ) -> Result<Vec<Value>, WriteError> {
        let kind = if create {
            WriteKind::Create
        } else {
            WriteKind::Update
        };
        self.apis
            .halo
            .post(entity.path(), records, kind)
            .await
            .map_err(|e| write_error(e, create))
    }

    async fn find_created(
        &self,
        entity: HaloEntity,
        creates: &[&Change],
    ) -> Result<Vec<Option<i64>>, WriteError> {
        let key = natural_key(entity);
        // One wide read per client involved (inactive included), never one request per record.
        let mut clients: Vec<i64> = creates
            .iter()
            .filter_map(|c| c.extra.get("client_id").and_then(Value::as_i64))
            .collect();
        clients.sort_unstable();
        clients.dedup();
        let mut found: Vec<Value> = Vec::new();
        let params: Vec<Option<String>> = if clients.is_empty() {
            vec![None]
        } else {
            clients.iter().map(|c| Some(c.to_string())).collect()
        };
        for client in params {
            let mut query = vec![("includeinactive", "true")];
            if let Some(c) = &client {
                query.push(("client_id", c.as_str()));
            }
            found.extend(
                self.apis
                    .halo
                    .list(entity.path(), list_key(entity), &query)
                    .await
                    .map_err(|e| write_error(e, false))?,
            );
        }
        Ok(creates
            .iter()
            .map(|c| {
                let want = c.payload(true).get(key).cloned().unwrap_or(Value::Null);
                if want.is_null() {
                    return None;
                }
                found
                    .iter()
                    .find(|r| same(r.get(key).unwrap_or(&Value::Null), &want))
                    .and_then(|r| r.get("id").and_then(value_to_i64))
            })
            .collect())
    }
}

/// The changes of a saved plan whose Halo record changed since the plan was made.
fn stale_changes(plan: &Plan, raw: &HaloRaw) -> Vec<String> {
    let mut out = Vec::new();
    for (t, c) in plan.changes() {
        let records = raw.get(c.entity.path()).map_or(&[][..], Vec::as_slice);
        match c.halo_id {
            Some(id) => {
                let Some(rec) = records
                    .iter()
                    .find(|r| r.get("id").and_then(value_to_i64) == Some(id))
                else {
                    out.push(format!(
                        "{}: {} (#{id}) is no longer in Halo",
                        t.name, c.label
                    ));
                    continue;
                };
                for f in &c.fields {
                    // A field the read does not return (SPEC 7) cannot have been seen to change.
                    let Some(now) = crate::plan::record_value(rec, &f.field) else {
                        continue;
                    };
                    if !same(now, &f.from) {
                        out.push(format!(
                            "{}: {} (#{id}) field {} is now {} (the plan expected {})",
                            t.name, c.label, f.field, now, f.from
                        ));
                    }
                }
            }
            None if c.action == Action::Create => {
                let key = natural_key(c.entity);
                let want = c.payload(true).get(key).cloned().unwrap_or(Value::Null);
                if !want.is_null()
                    && records
                        .iter()
                        .any(|r| same(r.get(key).unwrap_or(&Value::Null), &want))
                {
                    out.push(format!(
                        "{}: {} was created in Halo since the plan was made",
                        t.name, c.label
                    ));
                }
            }
            None => {}
        }
    }
    out
}

pub async fn run(
    config: &Config,
    ui: &Ui,
    args: &SyncArgs,
    metrics: &crate::metrics::Recorder,
) -> Result<Exit> {
    if let Some(path) = &args.plan {
        let state = StateDir::new(config.sync.state_dir.clone());
        let lock = state.lock()?;
        let interrupt = Interrupt::install()?;
        let started = crate::context::now()?;
        let plan = read_plan(path)?;
        crate::commands::plan_file::check(&plan, path)?;
        let plan = crate::commands::plan_file::select(plan, config, &args.modules, &args.tenants)?;
        let apis = Apis::new(config, crate::secrets::Secrets::from_env())?;
        metrics.plan(&plan);
        metrics.http(&apis.http);
        let needs = HaloNeeds::for_modules(&plan.modules)
            .with_user_custom_field(config.users.contract_field)
            .with_bulk_read(config.halo.bulk_read, &state.halo_memory());
        let raw = tokio::select! {
            raw = engine::read_halo_raw(&apis, needs) => raw?,
            exit = interrupt.wait() => return Ok(stopped_before_writing(ui, exit)),
        };
        let stale = stale_changes(&plan, &raw);
        if !stale.is_empty() {
            bail!(
                "the plan {} no longer applies, nothing was written: {}; make a new plan with `csp-sync diff --out`",
                path.display(),
                stale.join("; ")
            );
        }
        let run = RunInfo {
            command: "sync --plan",
            undo_of: None,
        };
        return apply_and_record(
            config, ui, &state, lock, &interrupt, started, &plan, &apis, None, &run, metrics,
        )
        .await;
    }
    // A dry run takes no lock and writes no state: it is a `diff`.
    let state = StateDir::new(config.sync.state_dir.clone());
    let (lock, interrupt) = lock_unless_dry(&state, args.dry_run)?;
    let started = crate::context::now()?;
    let modules = run::modules(config, &args.modules);
    let mut prepared = tokio::select! {
        p = run::prepare(config, ui, &modules, &args.tenants, args.allow_deactivations) => p?,
        exit = interrupt.wait() => return Ok(stopped_before_writing(ui, exit)),
    };
    metrics.plan(&prepared.plan.plan);
    metrics.http(&prepared.apis.http);
    run::show_plan(ui, &prepared);
    let Some(lock) = lock else {
        return Ok(if prepared.plan.plan.has_errors() {
            Exit::Error
        } else {
            Exit::Ok
        });
    };
    crate::commands::tenants_sync::adopt(config, ui, &prepared.plan.adopt)?;
    let run = RunInfo {
        command: "sync",
        undo_of: None,
    };
    // Moved, not cloned: a large estate's memory is tens of MB (issue 15).
    let memory = std::mem::take(&mut prepared.plan.memory);
    apply_and_record(
        config,
        ui,
        &state,
        lock,
        &interrupt,
        started,
        &prepared.plan.plan,
        &prepared.apis,
        Some((&prepared.plan, memory)),
        &run,
        metrics,
    )
    .await
}

/// A writing run takes the lock and listens for signals; a dry run does neither (it is a `diff`).
pub(crate) fn lock_unless_dry(
    state: &StateDir,
    dry_run: bool,
) -> Result<(Option<crate::lock::RunLock>, Interrupt)> {
    if dry_run {
        return Ok((None, Interrupt::never()));
    }
    Ok((Some(state.lock()?), Interrupt::install()?))
}

/// A signal before anything was written: nothing to verify or journal; the lock goes with the run.
fn stopped_before_writing(ui: &Ui, exit: Exit) -> Exit {
    ui.warn(&format!(
        "csp-sync: stopped by {} before writing anything to Halo",
        signal_name(exit)
    ));
    exit
}

fn signal_name(exit: Exit) -> &'static str {
    if exit == Exit::Terminated {
        "SIGTERM"
    } else {
        "SIGINT"
    }
}

/// What the journal says about the command that applies.
pub(crate) struct RunInfo {
    pub command: &'static str,
    pub undo_of: Option<u64>,
}

fn read_plan(path: &std::path::Path) -> Result<Plan> {
    let text = crate::bounded::read(path, crate::bounded::PLAN_BYTES)
        .with_context(|| format!("reading the plan {}", path.display()))?;
    let plan: Plan = serde_json::from_slice(&text).with_context(|| {
        format!(
            "{} is not a csp-sync plan (write one with `csp-sync diff --out FILE`)",
            path.display()
        )
    })?;
    if plan.version != crate::plan::PLAN_VERSION {
        bail!(
            "{} is a plan of version {}; this csp-sync reads version {}",
            path.display(),
            plan.version,
            crate::plan::PLAN_VERSION
        );
    }
    Ok(plan)
}

/// Applies a plan batch by batch, journaling each batch as it lands, then records state (for a freshly
/// read plan) and ends the journal; the lock is held until the end. A signal stops it between batches.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn apply_and_record(
    config: &Config,
    ui: &Ui,
    state: &StateDir,
    _lock: crate::lock::RunLock,
    interrupt: &Interrupt,
    started: jiff::Timestamp,
    plan: &Plan,
    apis: &Apis,
    planned: Option<(&engine::Planned, crate::halo_memory::HaloMemory)>,
    info: &RunInfo,
    metrics: &crate::metrics::Recorder,
) -> Result<Exit> {
    // A run with nothing to write is not journaled: the last 100 runs stay the ones that changed something.
    let journal = if plan.changes().next().is_some() {
        Some(state.journal().begin(RunStart {
            started_at: started.to_string(),
            command: info.command.to_string(),
            modules: plan.modules.clone(),
            tenants: plan.tenants.iter().map(|t| t.customer_id.clone()).collect(),
            undo_of: info.undo_of,
            pid: std::process::id(),
        })?)
    } else {
        None
    };
    let names: BTreeMap<&str, &str> = plan
        .tenants
        .iter()
        .map(|t| (t.customer_id.as_str(), t.name.as_str()))
        .collect();
    let tenant_name = |id: &str| {
        names
            .get(id)
            .map_or_else(|| id.to_string(), |n| (*n).to_string())
    };
    let total = plan.changes().count();
    let bar = ui.bar("records written", total as u64);
    let progress = |n: usize| bar.set_position(n as u64);
    let stop = || interrupt.requested().is_some();
    let batch_done = |a: &[apply::Applied<'_>], f: &[apply::Failed<'_>]| {
        if let Some(j) = &journal {
            j.batch(&tenant_name, a, f);
        }
    };
    let writer = HaloApi { apis };
    let hooks = apply::Hooks {
        progress: Some(&progress),
        stop: Some(&stop),
        batch_done: Some(&batch_done),
    };
    let report = apply::apply(&writer, plan, config.halo.fire_automations, hooks).await;
    bar.finish_and_clear();
    metrics.applied(plan, &report);
    let recorded = crate::commands::tenants_sync::record_created(config, ui, &report);

    // Failed writes make the exit code 1: labelled "error:".
    for f in &report.failed {
        // The tenant by its name, as the plan's lines name it (the id when the plan has none).
        let tenant = plan
            .tenants
            .iter()
            .find(|t| t.customer_id.eq_ignore_ascii_case(f.customer_id) && !t.name.is_empty())
            .map_or(f.customer_id, |t| t.name.as_str());
        ui.error(&format!(
            "{}: {} {}: {}",
            tenant,
            f.change.action.as_str(),
            f.change.label,
            f.error
        ));
    }
    // What Halo kept of the writes, and the values written to fields its reads do not return.
    // The memory of a freshly read plan comes with it (`Planned::memory`, taken from it).
    let (planned, memory) = match planned {
        Some((p, memory)) => (Some(p), Some(memory)),
        None => (None, None),
    };
    let mut memory = memory.unwrap_or_else(|| state.halo_memory());
    let unread = planned.map(|p| p.unread.clone()).unwrap_or_default();
    for news in crate::readback::remember(&report, &mut memory, &unread) {
        ui.warn(&news);
    }
    if let Some(planned) = planned {
        crate::modules::assets::remember_links(planned, &mut memory);
    }
    state.save_halo_memory(&memory)?;
    // State: only after a real sync, only for tenants whose reads succeeded.
    if let Some(planned) = planned {
        for (tenant, st) in &planned.user_states {
            state.save_tenant_users(tenant, st)?;
        }
        let mut seen = state.last_seen();
        for key in &planned.seen {
            seen.insert(key.clone(), started);
        }
        state.save_last_seen(&seen)?;
        crate::modules::assets::record(state, planned, started)?;
        if let Some(billing) = &planned.billing_state {
            crate::billing::record_invoices(billing.clone(), &report).save(state)?;
        }
    }
    let mut by_action: BTreeMap<&str, usize> = BTreeMap::new();
    for a in &report.applied {
        *by_action.entry(a.change.action.as_str()).or_default() += 1;
    }
    let applied = if report.applied.is_empty() {
        "applied 0 changes".to_string()
    } else {
        format!(
            "applied {} in {} ({})",
            crate::render::count(report.applied.len(), "change", "changes"),
            crate::render::count(report.batches, "batch", "batches"),
            by_action
                .iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    ui.info(&format!(
        "csp-sync: {applied}, {} failed; {}",
        report.failed.len(),
        crate::render::count(
            usize::try_from(apis.http.request_count(crate::http::Api::Halo)).unwrap_or(usize::MAX),
            "Halo request",
            "Halo requests"
        ),
    ));
    for w in apis.take_warnings() {
        ui.warn(&w);
    }
    let mut exit = Exit::Ok;
    if plan.has_held_back() {
        for t in &plan.tenants {
            for h in &t.held_back {
                ui.warn(&format!(
                    "{}: {} held back: {}",
                    t.name,
                    h.changes.len(),
                    h.reason
                ));
            }
        }
        exit = exit.worst(Exit::HeldBack);
    }
    if plan.has_errors() || !report.failed.is_empty() {
        exit = exit.worst(Exit::Error);
    }
    let stopped = interrupt.requested();
    if let Some(signal) = stopped {
        ui.warn(&format!(
            "csp-sync: stopped by {}: {} not started (a plain `csp-sync sync` finishes them)",
            signal_name(signal),
            crate::render::count(report.not_started, "change", "changes")
        ));
        exit = exit.worst(signal);
    }
    if let Some(j) = journal {
        j.finish(
            crate::context::now()?.to_string(),
            exit.code(),
            stopped.map(signal_name),
        )?;
    }
    recorded?;
    Ok(exit)
}
