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
use crate::plan::{Action, Change, HaloEntity, Plan};
use crate::state::{JournalEntry, JournalRun, StateDir};
use crate::ui::Ui;

/// Halo as the applier sees it.
struct HaloApi<'a> {
    apis: &'a Apis,
}

fn write_error(e: api::Error) -> WriteError {
    match e {
        api::Error::Api(a) => match a.kind {
            ErrorKind::BadRequest => WriteError::Refused(a.message.clone()),
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
            .map_err(write_error)
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
                    .map_err(write_error)?,
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

/// Loose equality of Halo values: strings case-insensitively and trimmed, `null` = missing = "".
fn same(a: &Value, b: &Value) -> bool {
    let norm = |v: &Value| match v {
        Value::Null => Value::String(String::new()),
        Value::String(s) => Value::String(s.trim().to_lowercase()),
        Value::Number(n) => n.as_f64().map_or(v.clone(), Value::from),
        other => other.clone(),
    };
    norm(a) == norm(b)
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
        let started = crate::context::now()?;
        let plan = read_plan(path)?;
        crate::commands::plan_file::check(&plan, path)?;
        let plan = crate::commands::plan_file::select(plan, config, &args.modules, &args.tenants)?;
        let apis = Apis::new(config, crate::secrets::Secrets::from_env())?;
        metrics.plan(&plan);
        metrics.http(&apis.http);
        let needs = HaloNeeds::for_modules(&plan.modules)
            .with_user_custom_field(config.users.contract_field);
        let raw = engine::read_halo_raw(&apis, needs).await?;
        let stale = stale_changes(&plan, &raw);
        if !stale.is_empty() {
            bail!(
                "the plan {} no longer applies, nothing was written: {}; make a new plan with `csp-sync diff --out`",
                path.display(),
                stale.join("; ")
            );
        }
        return apply_and_record(
            config, ui, &state, lock, started, &plan, &apis, None, metrics,
        )
        .await;
    }
    // A dry run takes no lock and writes no state: it is a `diff`.
    let state = StateDir::new(config.sync.state_dir.clone());
    let lock = if args.dry_run {
        None
    } else {
        Some(state.lock()?)
    };
    let started = crate::context::now()?;
    let modules = run::modules(config, &args.modules);
    let prepared = run::prepare(
        config,
        ui,
        &modules,
        &args.tenants,
        args.allow_deactivations,
    )
    .await?;
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
    apply_and_record(
        config,
        ui,
        &state,
        lock,
        started,
        &prepared.plan.plan,
        &prepared.apis,
        Some(&prepared.plan),
        metrics,
    )
    .await
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

/// Applies a plan, then records state (for a freshly read plan) and the journal; the lock is held until
/// the end.
#[allow(clippy::too_many_arguments)]
async fn apply_and_record(
    config: &Config,
    ui: &Ui,
    state: &StateDir,
    _lock: crate::state::RunLock,
    started: jiff::Timestamp,
    plan: &Plan,
    apis: &Apis,
    planned: Option<&engine::Planned>,
    metrics: &crate::metrics::Recorder,
) -> Result<Exit> {
    let total = plan.changes().count();
    let bar = ui.bar("records written", total as u64);
    let progress = |n: usize| bar.set_position(n as u64);
    let writer = HaloApi { apis };
    let report = apply::apply(&writer, plan, config.halo.fire_automations, Some(&progress)).await;
    bar.finish_and_clear();
    metrics.applied(plan, &report);
    let recorded = crate::commands::tenants_sync::record_created(config, ui, &report);

    for f in &report.failed {
        ui.warn(&format!(
            "{}: {} {}: {}",
            f.customer_id,
            f.change.action.as_str(),
            f.change.label,
            f.error
        ));
    }
    // What Halo kept of the writes, and the values written to fields its reads do not return.
    let mut memory = planned.map_or_else(|| state.halo_memory(), |p| p.memory.clone());
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
    let finished = crate::context::now()?;
    state.append_journal(JournalRun {
        started_at: started.to_string(),
        finished_at: finished.to_string(),
        applied: report
            .applied
            .iter()
            .map(|a| JournalEntry {
                customer_id: a.customer_id.to_string(),
                module: a.change.module.to_string(),
                action: a.change.action.as_str().into(),
                entity: a.change.entity.path().into(),
                halo_id: a.halo_id,
                source_key: a.change.source_key.clone(),
                label: a.change.label.clone(),
            })
            .collect(),
        failed: report.failed.len(),
    })?;
    let mut by_action: BTreeMap<&str, usize> = BTreeMap::new();
    for a in &report.applied {
        *by_action.entry(a.change.action.as_str()).or_default() += 1;
    }
    ui.info(&format!(
        "csp-sync: applied {} changes in {} batches ({}), {} failed; {} Halo requests",
        report.applied.len(),
        report.batches,
        by_action
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", "),
        report.failed.len(),
        apis.http.request_count(crate::http::Api::Halo),
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
    recorded?;
    Ok(exit)
}
