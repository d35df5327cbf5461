//! One run of the read -> plan pipeline shared by `diff` and `sync`: choose the tenants, read Halo once
//! for the union of the modules' needs and each tenant once for theirs (tenants in parallel, bounded by
//! `[sync] concurrency`), run each module's planner and merge the plans. What a module reads and decides
//! lives in its file under `crate::modules`; nothing here knows a module's insides.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, bail};
use futures_util::StreamExt;
use futures_util::stream;
use serde_json::Value;

use crate::api::halo::{
    HaloAssetRecord, HaloClientRecord, HaloLicenceRecord, HaloSiteRecord, HaloUserRecord,
    absent_fields, parse_records,
};
use crate::config::{BulkRead, Config, TenantEntry};
use crate::context::Apis;
use crate::halo_memory::HaloMemory;
use crate::halo_read::{ReadPath, ReadPaths};
use crate::model::{Customer, HaloSite, HaloSnapshot};
use crate::modules::tenants::Adoption;
use crate::modules::{self, HaloRead, Outputs, PartnerCx, PlanCx, Runner, TenantCx, TenantSource};
use crate::plan::{HaloEntity, Module, Plan, TenantPlan};
use crate::state::{StateDir, TenantUsersState};
use crate::ui::Ui;

/// A tenant chosen for this run.
#[derive(Debug, Clone)]
pub struct Target {
    pub entry: TenantEntry,
    pub name: String,
    pub modules: Vec<Module>,
}

/// Which configured tenants take part: mapped, not skipped, matching `--tenant` (customer id, or a name
/// matched case-insensitively against the `[[tenant]]` name and the Partner Center company name; see
/// [`crate::tenant_filter`]). The second value: notes on `--tenant` values naming skipped customers.
pub fn select_targets(
    config: &Config,
    customers: &[Customer],
    filters: &[String],
    modules: &[Module],
) -> Result<(Vec<Target>, Vec<String>)> {
    let company = |id: &str| {
        customers
            .iter()
            .find(|c| c.id.eq_ignore_ascii_case(id))
            .map(|c| c.company_name.clone())
    };
    let mut chosen: Vec<&TenantEntry> = Vec::new();
    let mut notes = Vec::new();
    for f in filters {
        let named = crate::tenant_filter::resolve(f, config, customers);
        if let Some(e) = crate::tenant_filter::error_for(f, &named) {
            bail!(e);
        }
        match named {
            crate::tenant_filter::Named::Mapped(t) => chosen.push(t),
            crate::tenant_filter::Named::Skipped(t) => {
                notes.push(crate::tenant_filter::skipped_note(f, t));
            }
            _ => {}
        }
    }
    let pool: Vec<&TenantEntry> = if filters.is_empty() {
        config.tenants.iter().collect()
    } else {
        chosen
    };
    let mut out = Vec::new();
    for t in pool {
        if t.skip || t.halo_client_id.is_none() {
            continue;
        }
        let mods: Vec<Module> = modules
            .iter()
            .copied()
            .filter(|m| t.modules.as_ref().is_none_or(|allowed| allowed.contains(m)))
            .collect();
        let name = t
            .name
            .clone()
            .or_else(|| company(&t.customer_id))
            .unwrap_or_else(|| t.customer_id.clone());
        out.push(Target {
            entry: t.clone(),
            name,
            modules: mods,
        });
    }
    out.sort_by(|a, b| a.entry.customer_id.cmp(&b.entry.customer_id));
    out.dedup_by(|a, b| a.entry.customer_id == b.entry.customer_id);
    Ok((out, notes))
}

/// The raw Halo records read this run, by entity path, for checking a saved plan.
pub type HaloRaw = BTreeMap<&'static str, Vec<Value>>;

/// The Halo lists every run reads: the clients (tenant mapping, main sites, the tenants module).
const CLIENTS: HaloRead = HaloRead {
    entity: HaloEntity::Client,
    key: "clients",
    params: &[("includeinactive", "true"), ("includeazuretenants", "true")],
};

/// What Halo must be read for: the union of the modules' [`HaloRead`]s, clients always.
#[derive(Clone)]
pub struct HaloNeeds {
    modules: &'static [&'static dyn Runner],
    wanted: [bool; modules::REGISTRY.len()],
    /// `[users] contract_field`: the user custom field read back with `include_custom_fields`.
    user_custom_field: Option<i64>,
    /// `[halo] bulk_read`: paged lists, or a report for the entities that have one (`crate::halo_read`).
    bulk: BulkRead,
    /// Per entity, the records its read held at the last sync (the empty-report guard).
    last_counts: BTreeMap<HaloEntity, usize>,
}

impl HaloNeeds {
    /// What the modules of a run need (an unimplemented module needs nothing).
    pub fn for_modules(modules: &[Module]) -> HaloNeeds {
        let mut wanted = [false; modules::REGISTRY.len()];
        for (w, r) in wanted.iter_mut().zip(modules::REGISTRY) {
            *w = modules.contains(&r.module());
        }
        HaloNeeds {
            modules: modules::REGISTRY,
            wanted,
            user_custom_field: None,
            bulk: BulkRead::Api,
            last_counts: BTreeMap::new(),
        }
    }

    /// Reads as `[halo] bulk_read` says, with the record counts of the last sync's reads (kept in the
    /// state's Halo memory) for the empty-report guard.
    #[must_use]
    pub fn with_bulk_read(mut self, bulk: BulkRead, memory: &HaloMemory) -> HaloNeeds {
        self.bulk = bulk;
        self.last_counts = memory.read_counts();
        self
    }

    /// Also reads this user custom field (`include_custom_fields=ID`, halo-api.md 3.3), for
    /// `[users] contract_field`.
    #[must_use]
    pub fn with_user_custom_field(mut self, id: Option<i64>) -> HaloNeeds {
        self.user_custom_field = id;
        self
    }

    fn runners(&self) -> impl Iterator<Item = &'static dyn Runner> + '_ {
        self.modules
            .iter()
            .zip(self.wanted)
            .filter(|(_, w)| *w)
            .map(|(r, _)| *r)
    }

    /// The lists to read, each entity once.
    fn reads(&self) -> Vec<HaloRead> {
        let mut out = vec![CLIENTS];
        for r in self.runners().flat_map(|r| r.halo_reads().iter().copied()) {
            if !out.iter().any(|o| o.entity == r.entity) {
                out.push(r);
            }
        }
        out
    }
}

/// The lists of `needs` with their query parameters (`custom`: the user custom field id as text).
fn list_params<'a>(reads: &'a [HaloRead], custom: Option<&'a str>) -> Vec<Vec<(&'a str, &'a str)>> {
    reads
        .iter()
        .map(|r| {
            let mut p = r.params.to_vec();
            if r.entity == HaloEntity::Users
                && let Some(c) = custom
            {
                p.push(("include_custom_fields", c));
            }
            p
        })
        .collect()
}

/// Reads Halo's raw records once per entity, across all clients, inactive records included: clients
/// always, the rest as the modules of `needs` say (keyed by entity path: "Client", "Site", ...).
pub async fn read_halo_raw(apis: &Apis, needs: HaloNeeds) -> Result<HaloRaw> {
    Ok(read_halo_paths(apis, needs).await?.0)
}

/// [`read_halo_raw`], with the path each entity's read took (list or report, `crate::halo_read`). A
/// report refused with 403 is read by list, with one warning for the run (in `apis`' warnings).
pub async fn read_halo_paths(apis: &Apis, needs: HaloNeeds) -> Result<(HaloRaw, ReadPaths)> {
    let reads = needs.reads();
    let custom = needs.user_custom_field.map(|id| id.to_string());
    let params = list_params(&reads, custom.as_deref());
    let lists = futures_util::future::join_all(reads.iter().zip(&params).map(|(r, p)| {
        let last = needs.last_counts.get(&r.entity).copied();
        crate::halo_read::read(apis, r.entity, r.key, p, needs.bulk, last)
    }))
    .await;
    let mut raw = HaloRaw::new();
    let mut paths = ReadPaths::default();
    for (r, list) in reads.iter().zip(lists) {
        let (records, path) = list?;
        raw.insert(r.entity.path(), records);
        paths.0.insert(r.entity, path);
    }
    warn_refused(apis, &paths);
    Ok((raw, paths))
}

/// The run's one warning about reports Halo refused (403), if any were (in `apis`' warnings).
fn warn_refused(apis: &Apis, paths: &ReadPaths) {
    let refused: Vec<HaloEntity> = paths
        .0
        .iter()
        .filter(|(_, p)| **p == ReadPath::ListReportRefused)
        .map(|(e, _)| *e)
        .collect();
    if !refused.is_empty()
        && let Ok(mut w) = apis.warnings.lock()
    {
        w.push(crate::halo_read::refused_warning(&refused));
    }
}

/// One list record as the snapshot holds it, made as its page arrives (see [`read_halo_snapshot`]).
enum Slim {
    Client(crate::model::HaloClient),
    Site(HaloSite),
    /// The user, and whether its record carried `azureoid` at all (an older Halo's list does not).
    User(crate::model::HaloUser, bool),
    Licence(crate::model::HaloLicence),
    Asset(crate::model::HaloAsset),
    Other,
}

fn one<T: serde::de::DeserializeOwned>(
    entity: HaloEntity,
    v: Value,
) -> Result<T, crate::api::Error> {
    parse_records::<T>(entity.path(), vec![v])?
        .pop()
        .ok_or_else(|| crate::api::Error::Invalid(format!("Halo {}: empty record", entity.path())))
}

fn slim(entity: HaloEntity, v: Value) -> Result<Slim, crate::api::Error> {
    Ok(match entity {
        HaloEntity::Client => Slim::Client(one::<HaloClientRecord>(entity, v)?.to_model()),
        HaloEntity::Site => Slim::Site(one::<HaloSiteRecord>(entity, v)?.to_model()),
        HaloEntity::Users => {
            let unread = absent_fields(&v, crate::plan::users::COMPARED_FIELDS);
            let has_oid = v.get("azureoid").is_some();
            let mut u = one::<HaloUserRecord>(entity, v)?.to_model();
            u.unread = unread;
            Slim::User(u, has_oid)
        }
        HaloEntity::SoftwareLicence => {
            let unread = absent_fields(&v, crate::plan::licences::COMPARED_FIELDS);
            Slim::Licence(
                one::<HaloLicenceRecord>(entity, v)?
                    .to_model()
                    .with_unread(unread),
            )
        }
        HaloEntity::Asset => Slim::Asset(one::<HaloAssetRecord>(entity, v)?.to_model()),
        HaloEntity::Invoice => Slim::Other,
    })
}

/// Reads Halo like [`read_halo_raw`] straight into the snapshot: each page's records (or a report's
/// rows, `bulk_read = "report"`) become the planners' models as they arrive and the raw JSON is dropped,
/// so a large estate's lists are never held as JSON values in full (issue 15: peak memory). Both paths
/// go through one conversion ([`slim`]), so they make the same models. Also notes each entity's record
/// count (the empty-report guard of the next run), forgets what the memory holds of users and licences
/// Halo no longer lists, and fills `azureoid` on an older Halo whose list lacks it. Returns the snapshot,
/// the path each entity's read took, and a warning about the extra reads an older Halo cost, if any.
async fn read_halo_snapshot(
    apis: &Apis,
    needs: HaloNeeds,
    memory: &mut HaloMemory,
) -> Result<(HaloSnapshot, ReadPaths, Option<String>)> {
    let reads = needs.reads();
    let custom = needs.user_custom_field.map(|id| id.to_string());
    let params = list_params(&reads, custom.as_deref());
    let lists = futures_util::future::join_all(reads.iter().zip(&params).map(|(r, p)| {
        let last = needs.last_counts.get(&r.entity).copied();
        crate::halo_read::read_map(apis, r.entity, r.key, p, needs.bulk, last, |v| {
            slim(r.entity, v)
        })
    }))
    .await;
    let mut snap = HaloSnapshot::default();
    let mut paths = ReadPaths::default();
    let mut users_have_oid = false;
    for (r, list) in reads.iter().zip(lists) {
        let (records, path) = list?;
        paths.0.insert(r.entity, path);
        memory.set_read_count(r.entity, records.len());
        for rec in records {
            match rec {
                Slim::Client(c) => snap.clients.push(c),
                Slim::Site(s) => snap.sites.push(s),
                Slim::User(u, has_oid) => {
                    users_have_oid |= has_oid;
                    snap.users.push(u);
                }
                Slim::Licence(l) => snap.licences.push(l),
                Slim::Asset(a) => snap.assets.push(a),
                Slim::Other => {}
            }
        }
    }
    warn_refused(apis, &paths);
    let site_client: BTreeMap<i64, i64> = snap.sites.iter().map(|s| (s.id, s.client_id)).collect();
    for u in &mut snap.users {
        // Some Halo versions give only the site; the site knows its client.
        if u.client_id == 0 {
            u.client_id = site_client.get(&u.site_id).copied().unwrap_or(0);
        }
    }
    for (entity, ids) in [
        (
            HaloEntity::Users,
            snap.users.iter().map(|u| u.id).collect::<BTreeSet<i64>>(),
        ),
        (
            HaloEntity::SoftwareLicence,
            snap.licences.iter().map(|l| l.id).collect(),
        ),
    ] {
        if reads.iter().any(|r| r.entity == entity) {
            memory.retain_records(entity, &ids);
        }
    }
    let warning = if !snap.users.is_empty() && !users_have_oid {
        // A report refused this run is not asked again: the users are read by id.
        let reports = paths.0.get(&HaloEntity::Users) != Some(&ReadPath::ListReportRefused);
        let (warning, by_report) =
            crate::halo_users_by_id::complete(apis, &mut snap.users, memory, reports).await?;
        if by_report {
            paths.0.insert(HaloEntity::Users, ReadPath::ListAndReport);
        }
        warning
    } else {
        None
    };
    Ok((snap, paths, warning))
}

/// Reads Halo (see [`read_halo_raw`]) into the snapshot the planners compare against.
pub async fn read_halo(apis: &Apis, needs: HaloNeeds) -> Result<HaloSnapshot> {
    halo_snapshot(read_halo_raw(apis, needs).await?)
}

/// The Halo snapshot of raw list records: typed, and with each user's client filled from its site when
/// the record gives only the site (some Halo versions). Consumes the records: a large estate's users are
/// held once, not twice.
pub fn halo_snapshot(mut raw: HaloRaw) -> Result<HaloSnapshot> {
    let mut take = |entity: &str| raw.remove(entity).unwrap_or_default();
    let (clients, sites, users, licences, assets) = (
        take("Client"),
        take("Site"),
        take("Users"),
        take("SoftwareLicence"),
        take("Asset"),
    );
    let sites: Vec<HaloSite> = parse_records::<HaloSiteRecord>("Site", sites)?
        .iter()
        .map(HaloSiteRecord::to_model)
        .collect();
    let site_client: BTreeMap<i64, i64> = sites.iter().map(|s| (s.id, s.client_id)).collect();
    // What each list record lacks of the fields the planners compare (SPEC 7, "What a read returns").
    let user_unread: Vec<Vec<String>> = users
        .iter()
        .map(|r| absent_fields(r, crate::plan::users::COMPARED_FIELDS))
        .collect();
    let licence_unread: Vec<Vec<String>> = licences
        .iter()
        .map(|r| absent_fields(r, crate::plan::licences::COMPARED_FIELDS))
        .collect();
    Ok(HaloSnapshot {
        clients: parse_records::<HaloClientRecord>("Client", clients)?
            .iter()
            .map(HaloClientRecord::to_model)
            .collect(),
        users: parse_records::<HaloUserRecord>("Users", users)?
            .iter()
            .zip(user_unread)
            .map(|(r, unread)| {
                let mut u = r.to_model();
                u.unread = unread;
                // Some Halo versions give only the site; the site knows its client.
                if u.client_id == 0 {
                    u.client_id = site_client.get(&u.site_id).copied().unwrap_or(0);
                }
                u
            })
            .collect(),
        licences: parse_records::<HaloLicenceRecord>("SoftwareLicence", licences)?
            .iter()
            .zip(licence_unread)
            .map(|(r, unread)| r.to_model().with_unread(unread))
            .collect(),
        assets: parse_records::<HaloAssetRecord>("Asset", assets)?
            .iter()
            .map(HaloAssetRecord::to_model)
            .collect(),
        sites,
    })
}

/// The outcome of reading and planning.
#[derive(Debug)]
pub struct Planned {
    /// The plan, with the seat view of the licences module.
    pub plan: Plan,
    pub user_states: Vec<(String, TenantUsersState)>,
    /// "tenant/oid" keys to stamp with `now` in last-seen after a sync.
    pub seen: Vec<String>,
    /// Existing Halo clients the tenants module adopts (the config is written only by a real sync).
    pub adopt: Vec<Adoption>,
    /// The billing state to save after a real sync (running exports, periods done).
    pub billing_state: Option<crate::billing::state::BillingState>,
    /// Device keys to stamp as last seen after a sync (assets module).
    pub device_seen: Vec<String>,
    /// (asset id, `users`) found already linked (assets module).
    pub device_users: Vec<(i64, Value)>,
    /// What csp-sync remembers of Halo (as loaded, plus what this run's reads added); a sync adds what it
    /// writes and saves it.
    pub memory: HaloMemory,
    /// Per entity, the fields some record of this run's read lacked.
    pub unread: BTreeMap<HaloEntity, BTreeSet<String>>,
}

/// The fields some record of a read lacked, per entity: what csp-sync writes there is remembered.
fn unread_fields(halo: &HaloSnapshot) -> BTreeMap<HaloEntity, BTreeSet<String>> {
    let mut out: BTreeMap<HaloEntity, BTreeSet<String>> = BTreeMap::new();
    for u in &halo.users {
        out.entry(HaloEntity::Users)
            .or_default()
            .extend(u.unread.iter().cloned());
    }
    for l in &halo.licences {
        out.entry(HaloEntity::SoftwareLicence)
            .or_default()
            .extend(l.unread.iter().cloned());
    }
    out
}

/// Reads one tenant for each of its modules, in registry order, sharing one [`TenantSource`] (its Graph
/// reads in one request).
async fn read_tenant(
    config: &Config,
    apis: &Apis,
    t: &Target,
    run: &[&'static dyn Runner],
    pc_user: bool,
    state: &StateDir,
    now: jiff::Timestamp,
) -> Vec<Option<Box<dyn Any>>> {
    let source = TenantSource::for_target(config, state, t);
    let cx = TenantCx {
        config,
        apis,
        target: t,
        state,
        now,
        pc_user,
        source: &source,
    };
    let mut out = Vec::with_capacity(run.len());
    for m in run {
        out.push(if t.modules.contains(&m.module()) {
            Some(m.read_tenant(&cx).await)
        } else {
            None
        });
    }
    out
}

/// Reads everything the modules need and plans them: Halo once for the union of the modules' lists,
/// each module's partner read once, each tenant once (tenants in parallel); then each module's planner,
/// merged per tenant in registry order.
#[allow(clippy::too_many_arguments)]
pub async fn plan(
    config: &Config,
    apis: &Apis,
    ui: &Ui,
    customers: &[Customer],
    targets: &[Target],
    modules: &[Module],
    allow_deactivations: bool,
    state: &StateDir,
    now: jiff::Timestamp,
) -> Result<Planned> {
    let pc_user = apis
        .creds
        .current_refresh_token(crate::auth::RefreshTokenName::PartnerCenter)
        .is_some();
    let run: Vec<&'static dyn Runner> = modules::REGISTRY
        .iter()
        .copied()
        .filter(|r| modules.contains(&r.module()))
        .collect();
    let mut memory = state.halo_memory();
    let halo_fut = async {
        let needs = HaloNeeds::for_modules(modules)
            .with_user_custom_field(config.users.contract_field)
            .with_bulk_read(config.halo.bulk_read, &memory);
        let (snap, paths, warning) = read_halo_snapshot(apis, needs, &mut memory).await?;
        if let Some(warning) = warning {
            ui.warn(&warning);
        }
        anyhow::Ok((snap, paths))
    };
    let pcx = PartnerCx {
        config,
        apis,
        targets,
        state,
        now,
    };
    let partner_fut = futures_util::future::join_all(run.iter().map(|m| m.read_partner(&pcx)));
    let bar = ui.bar("tenants read", targets.len() as u64);
    let reads_fut = stream::iter(targets.iter())
        .map(|t| {
            let (bar, run) = (&bar, &run);
            async move {
                let r = read_tenant(config, apis, t, run, pc_user, state, now).await;
                bar.inc(1);
                r
            }
        })
        .buffered(config.sync.concurrency.max(1))
        .collect::<Vec<_>>();
    let (halo, partner, mut reads) = tokio::join!(halo_fut, partner_fut, reads_fut);
    bar.finish_and_clear();
    let (halo, halo_read) = halo?;
    for (t, r) in targets.iter().zip(reads.iter_mut()) {
        let source = TenantSource::new(&t.entry.customer_id);
        let cx = TenantCx {
            config,
            apis,
            target: t,
            state,
            now,
            pc_user,
            source: &source,
        };
        for (m, read) in run.iter().zip(r.iter_mut()) {
            if let Some(read) = read {
                m.recheck(&cx, &halo, read.as_mut()).await;
            }
        }
    }

    let mut by_tenant: BTreeMap<String, TenantPlan> = targets
        .iter()
        .map(|t| {
            (
                t.entry.customer_id.to_ascii_lowercase(),
                TenantPlan {
                    customer_id: t.entry.customer_id.clone(),
                    name: t.name.clone(),
                    halo_client_id: t.entry.halo_client_id,
                    ..TenantPlan::default()
                },
            )
        })
        .collect();

    // Comparing: one bar over the source records of every tenant and module.
    let records: usize = reads
        .iter()
        .flat_map(|r| r.iter().zip(&run))
        .filter_map(|(read, m)| read.as_ref().map(|read| m.records(read.as_ref())))
        .sum();
    let compare = ui.bar("records compared", records as u64);

    // Each module's reads, in target order.
    let mut per_module: Vec<Vec<(&Target, Box<dyn Any>)>> =
        run.iter().map(|_| Vec::new()).collect();
    for (t, r) in targets.iter().zip(reads) {
        for (slot, read) in per_module.iter_mut().zip(r) {
            if let Some(read) = read {
                slot.push((t, read));
            }
        }
    }
    let cx = PlanCx {
        config,
        halo: &halo,
        customers,
        state,
        memory: &memory,
        now,
        allow_deactivations,
    };
    let mut out = Outputs::default();
    for ((m, partner), reads) in run.iter().zip(partner).zip(per_module) {
        let mut plans = m.plan(&cx, partner, reads, &mut out)?;
        m.confirm(&cx, apis, &mut plans, &mut out).await?;
        for tp in plans {
            merge(&mut by_tenant, tp);
        }
    }
    for t in targets {
        if !customers
            .iter()
            .any(|c| c.id.eq_ignore_ascii_case(&t.entry.customer_id))
            && let Some(tp) = by_tenant.get_mut(&t.entry.customer_id.to_ascii_lowercase())
        {
            tp.notes
                .push("not found among the Partner Center customers".into());
        }
    }
    compare.set_position(records as u64);
    compare.finish_and_clear();
    let mut plan = Plan::new(
        now.to_string(),
        modules.to_vec(),
        by_tenant.into_values().collect(),
    );
    plan.seats = out.seats;
    plan.billing = out.billing;
    plan.estimates = out.estimates;
    plan.devices = out.devices;
    plan.halo_read = halo_read;
    let unread = unread_fields(&halo);
    Ok(Planned {
        plan,
        user_states: out.user_states,
        seen: out.seen,
        adopt: out.adopt,
        billing_state: out.billing_state,
        device_seen: out.device_seen,
        device_users: out.device_users,
        memory,
        unread,
    })
}

fn merge(by_tenant: &mut BTreeMap<String, TenantPlan>, tp: TenantPlan) {
    let e = by_tenant
        .entry(tp.customer_id.to_ascii_lowercase())
        .or_insert_with(|| TenantPlan {
            customer_id: tp.customer_id.clone(),
            name: tp.name.clone(),
            halo_client_id: tp.halo_client_id,
            ..TenantPlan::default()
        });
    e.changes.extend(tp.changes);
    e.conflicts.extend(tp.conflicts);
    e.held_back.extend(tp.held_back);
    e.errors.extend(tp.errors);
    e.notes.extend(tp.notes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_user_without_client_gets_its_sites_client() {
        let sites = [json!({"id": 482, "client_id": 7, "name": "Main"})];
        let users = [json!({"id": 12, "name": "Jane Doe", "site_id": 482.0, "azureoid": null})];
        let snap = halo_snapshot(HaloRaw::from([
            ("Site", sites.to_vec()),
            ("Users", users.to_vec()),
        ]))
        .unwrap();
        assert_eq!(snap.users[0].site_id, 482);
        assert_eq!(snap.users[0].client_id, 7);
    }

    /// A report row (columns in SQL Server's case, `bit` columns as 0/1, what the report has no column for
    /// absent) becomes the model the list record makes, through the same conversion; only the fields each
    /// read lacks differ, and they are noted as unread.
    #[test]
    fn a_report_row_makes_the_model_its_list_record_makes() {
        let users = crate::api::halo_report::query_for(HaloEntity::Users).unwrap();
        let list = json!({"id": 12, "client_id": 7, "site_id": 482, "name": "Jane Doe",
            "firstname": "Jane", "surname": "Doe", "emailaddress": "jane@contoso.com", "title": "CFO",
            "phonenumber": "1", "mobilenumber": "2", "inactive": false,
            "azureoid": "A74CF9F4-B608-417B-9933-505592C558D6", "covered_by_contract": true,
            "customfields": []});
        let row = json!({"ID": 12, "Client_Id": 7, "SITE_ID": 482, "Name": "Jane Doe",
            "FirstName": "Jane", "Surname": "Doe", "EmailAddress": "jane@contoso.com", "Title": "CFO",
            "PhoneNumber": "1", "MobileNumber": "2", "Inactive": 0,
            "AzureOID": "a74cf9f4-b608-417b-9933-505592c558d6",
            "Azure_Tenant_Id": "C0A7B1D2-3E4F-4A5B-8C6D-7E8F9A0B1C2D"});
        let (Slim::User(from_list, true), Slim::User(from_report, true)) = (
            slim(HaloEntity::Users, list).unwrap(),
            slim(HaloEntity::Users, users.record(row)).unwrap(),
        ) else {
            panic!("not users, or azureoid not seen")
        };
        assert_eq!(from_list.unread, vec!["department", "azure_tenant_id"]);
        assert_eq!(
            from_report.unread,
            vec!["department", "covered_by_contract", "customfields"]
        );
        assert_eq!(
            from_report.azure_tenant_id.as_deref(),
            Some("c0a7b1d2-3e4f-4a5b-8c6d-7e8f9a0b1c2d")
        );
        let comparable = |mut u: crate::model::HaloUser| {
            u.unread.clear();
            u.azure_tenant_id = None;
            u.covered_by_contract = None;
            u.customfields = Value::Null;
            u
        };
        assert_eq!(comparable(from_report), comparable(from_list));

        let licences = crate::api::halo_report::query_for(HaloEntity::SoftwareLicence).unwrap();
        let list = json!({"id": 301, "client_id": 102, "name": "Microsoft 365 Business Basic",
            "count": 5, "licences_in_use": 3, "tenant_id": "t", "third_party_product": "s",
            "product_sku": "O365_BUSINESS_ESSENTIALS", "status": "Active", "billing_cycle": "Monthly",
            "term_duration": "Monthly", "autorenew": true, "start_date": "2026-01-01T00:00:00",
            "end_date": "2027-01-01T00:00:00", "manufacturer": "Microsoft"});
        let mut row = serde_json::Map::new();
        for (k, v) in list.as_object().unwrap() {
            row.insert(k.to_uppercase(), v.clone());
        }
        row.insert("AUTORENEW".into(), json!(1));
        let (Slim::Licence(from_list), Slim::Licence(from_report)) = (
            slim(HaloEntity::SoftwareLicence, list).unwrap(),
            slim(
                HaloEntity::SoftwareLicence,
                licences.record(Value::Object(row)),
            )
            .unwrap(),
        ) else {
            panic!("not licences")
        };
        assert_eq!(from_report, from_list);
    }
}
