//! One run of the read -> plan pipeline shared by `diff` and `sync`: choose the tenants, read Partner
//! Center, Graph and Halo (tenants in parallel, bounded by `[sync] concurrency`), and plan every module.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use futures_util::StreamExt;
use futures_util::stream;
use serde_json::Value;

use crate::api::{
    self,
    graph::{GraphCompanySubscription, GraphSubscribedSku, GraphUser},
    halo::{HaloClientRecord, HaloLicenceRecord, HaloSiteRecord, HaloUserRecord, parse_records},
    partner_center::{PcSubscribedSku, PcSubscription},
};
use crate::config::{Config, TenantEntry};
use crate::context::Apis;
use crate::model::{Customer, EntraUser, HaloSite, HaloSnapshot, SkuUsage, TenantDirectory};
use crate::plan::licences::{self, LicencesPlan, LicencesPolicy, SkuSource, TenantLicencesInput};
use crate::plan::users::{self, TenantUsersInput, UsersPolicy};
use crate::plan::{Module, Plan, TenantPlan};
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
/// matched case-insensitively against the `[[tenant]]` name and the Partner Center company name).
pub fn select_targets(
    config: &Config,
    customers: &[Customer],
    filters: &[String],
    modules: &[Module],
) -> Result<Vec<Target>> {
    let company = |id: &str| {
        customers
            .iter()
            .find(|c| c.id.eq_ignore_ascii_case(id))
            .map(|c| c.company_name.clone())
    };
    let mut chosen: Vec<&TenantEntry> = Vec::new();
    for f in filters {
        let f_l = f.trim().to_lowercase();
        let hits: Vec<&TenantEntry> = config
            .tenants
            .iter()
            .filter(|t| {
                t.customer_id.eq_ignore_ascii_case(&f_l)
                    || t.name.as_deref().is_some_and(|n| n.to_lowercase() == f_l)
                    || company(&t.customer_id).is_some_and(|n| n.to_lowercase() == f_l)
            })
            .collect();
        match hits.len() {
            0 => bail!(
                "--tenant {f:?} matches no [[tenant]] entry of the config (give a customer id or a name; `csp-sync tenants list` shows them)"
            ),
            1 => chosen.push(hits[0]),
            _ => bail!(
                "--tenant {f:?} matches several customers: {}; give the customer id instead",
                hits.iter()
                    .map(|t| format!("{} ({})", t.name.clone().unwrap_or_default(), t.customer_id))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
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
    Ok(out)
}

/// The raw Halo records read this run, by entity path, for checking a saved plan.
pub type HaloRaw = BTreeMap<&'static str, Vec<Value>>;

/// What Halo must be read for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HaloNeeds {
    pub sites: bool,
    pub users: bool,
    pub licences: bool,
}

impl HaloNeeds {
    /// What the modules of a run need: sites and users for `users`, licences for `licences`.
    pub fn for_modules(modules: &[Module]) -> HaloNeeds {
        let users = modules.contains(&Module::Users);
        HaloNeeds {
            sites: users,
            users,
            licences: modules.contains(&Module::Licences),
        }
    }
}

async fn list_if(
    apis: &Apis,
    wanted: bool,
    path: &str,
    key: &str,
) -> Result<Vec<Value>, api::Error> {
    if wanted {
        apis.halo
            .list(path, key, &[("includeinactive", "true")])
            .await
    } else {
        Ok(Vec::new())
    }
}

/// Reads Halo's raw records once per entity, across all clients, inactive records included: clients
/// always, the rest as `needs` says (keyed "Client", "Site", "Users", "SoftwareLicence").
pub async fn read_halo_raw(apis: &Apis, needs: HaloNeeds) -> Result<HaloRaw> {
    let (clients, sites, users, licences) = tokio::join!(
        apis.halo.list(
            "Client",
            "clients",
            &[("includeinactive", "true"), ("includeazuretenants", "true")],
        ),
        list_if(apis, needs.sites, "Site", "sites"),
        list_if(apis, needs.users, "Users", "users"),
        list_if(apis, needs.licences, "SoftwareLicence", "licences"),
    );
    let ctx = |e: api::Error, what: &str| anyhow::anyhow!("reading Halo {what}: {e}");
    let users = users.map_err(|e| ctx(e, "users"))?;
    if needs.users && !users.is_empty() && !users.iter().any(|u| u.get("azureoid").is_some()) {
        bail!(
            "Halo's user list has no `azureoid` field (an older Halo version): csp-sync cannot tell linked users apart; \
             upgrade Halo (reading users by report is not available yet)"
        );
    }
    Ok(HaloRaw::from([
        ("Client", clients.map_err(|e| ctx(e, "clients"))?),
        ("Site", sites.map_err(|e| ctx(e, "sites"))?),
        ("Users", users),
        (
            "SoftwareLicence",
            licences.map_err(|e| ctx(e, "software licences"))?,
        ),
    ]))
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
    let (clients, sites, users, licences) = (
        take("Client"),
        take("Site"),
        take("Users"),
        take("SoftwareLicence"),
    );
    let sites: Vec<HaloSite> = parse_records::<HaloSiteRecord>("Site", sites)?
        .iter()
        .map(HaloSiteRecord::to_model)
        .collect();
    let site_client: BTreeMap<i64, i64> = sites.iter().map(|s| (s.id, s.client_id)).collect();
    Ok(HaloSnapshot {
        clients: parse_records::<HaloClientRecord>("Client", clients)?
            .iter()
            .map(HaloClientRecord::to_model)
            .collect(),
        users: parse_records::<HaloUserRecord>("Users", users)?
            .iter()
            .map(|r| {
                let mut u = r.to_model();
                // Some Halo versions give only the site; the site knows its client.
                if u.client_id == 0 {
                    u.client_id = site_client.get(&u.site_id).copied().unwrap_or(0);
                }
                u
            })
            .collect(),
        licences: parse_records::<HaloLicenceRecord>("SoftwareLicence", licences)?
            .iter()
            .map(HaloLicenceRecord::to_model)
            .collect(),
        sites,
    })
}

/// What was read from one tenant.
#[derive(Debug, Default)]
pub struct TenantRead {
    pub customer_id: String,
    pub directory: Option<Result<TenantDirectory, String>>,
    pub users_state: Option<TenantUsersState>,
    /// Whether the users came from a delta round on the stored read (not a full read).
    pub users_via_delta: bool,
    pub licences: Option<TenantLicencesInput>,
}

/// A tenant's users: the stored set moved forward by a delta round, or a full read (the initial delta
/// round, which also yields the delta link) when there is no usable link.
async fn read_users(
    config: &Config,
    apis: &Apis,
    tenant: &str,
    stored: Option<TenantUsersState>,
    now: jiff::Timestamp,
) -> Result<(Vec<EntraUser>, TenantUsersState, bool), String> {
    if !config.users.delta {
        let users: Vec<EntraUser> = apis
            .graph
            .users(tenant)
            .await
            .map_err(|e| format!("reading users: {e}"))?
            .iter()
            .map(GraphUser::to_model)
            .collect();
        let state = TenantUsersState {
            delta_link: None,
            last_full_read: Some(now.to_string()),
            users: Vec::new(),
            removed: Vec::new(),
        };
        return Ok((users, state, false));
    }
    if let Some(st) = stored
        && let Some(link) = st.delta_link.as_deref()
    {
        match apis.graph.users_delta(tenant, Some(link)).await {
            Ok(d) => {
                let mut by_id: BTreeMap<String, EntraUser> =
                    st.users.into_iter().map(|u| (u.id.clone(), u)).collect();
                let mut removed = st.removed;
                for (id, _reason) in &d.removed {
                    by_id.remove(id);
                    removed.push(id.to_lowercase());
                }
                removed.sort();
                removed.dedup();
                for u in &d.users {
                    let u = u.to_model();
                    by_id.insert(u.id.clone(), u);
                }
                let users: Vec<EntraUser> = by_id.into_values().collect();
                let state = TenantUsersState {
                    delta_link: Some(d.delta_link),
                    last_full_read: st.last_full_read,
                    users: users.clone(),
                    removed,
                };
                return Ok((users, state, true));
            }
            Err(api::Error::DeltaExpired { .. }) => {
                tracing::info!(tenant, "delta link expired; reading all users");
            }
            Err(e) => return Err(format!("reading users (delta): {e}")),
        }
    }
    let d = apis
        .graph
        .users_delta(tenant, None)
        .await
        .map_err(|e| format!("reading users: {e}"))?;
    let users: Vec<EntraUser> = d.users.iter().map(GraphUser::to_model).collect();
    let state = TenantUsersState {
        delta_link: Some(d.delta_link),
        last_full_read: Some(now.to_string()),
        users: users.clone(),
        removed: Vec::new(),
    };
    Ok((users, state, false))
}

async fn read_licences(
    apis: &Apis,
    t: &Target,
    pc_user: bool,
    graph_skus: Option<&Result<Vec<SkuUsage>, String>>,
) -> TenantLicencesInput {
    let id = &t.entry.customer_id;
    let mut errors = Vec::new();
    let subscriptions = match apis.partner_center.subscriptions(id).await {
        Ok(subs) => subs.iter().map(PcSubscription::to_model).collect(),
        Err(e) => {
            errors.push(format!("reading Partner Center subscriptions: {e}"));
            Vec::new()
        }
    };
    let (skus, sku_source) = if pc_user {
        match apis.partner_center.subscribed_skus(id).await {
            Ok(s) => (
                s.iter().map(PcSubscribedSku::to_model).collect(),
                SkuSource::PartnerCenter,
            ),
            Err(e) => {
                errors.push(format!("reading Partner Center subscribedskus: {e}"));
                (Vec::new(), SkuSource::PartnerCenter)
            }
        }
    } else {
        match graph_skus {
            Some(Ok(s)) => (s.clone(), SkuSource::Graph),
            Some(Err(e)) => {
                errors.push(e.clone());
                (Vec::new(), SkuSource::Graph)
            }
            None => match read_graph_skus(apis, id).await {
                Ok(s) => (s, SkuSource::Graph),
                Err(e) => {
                    errors.push(e);
                    (Vec::new(), SkuSource::Graph)
                }
            },
        }
    };
    // Optional join data: its absence only weakens the join, so a failure is logged, not an error.
    let company_subscriptions = match apis.graph.directory_subscriptions(id).await {
        Ok(c) => c.iter().map(GraphCompanySubscription::to_model).collect(),
        Err(e) => {
            tracing::info!(tenant = %id, "directory/subscriptions not readable: {e}");
            Vec::new()
        }
    };
    TenantLicencesInput {
        customer_id: id.clone(),
        tenant_id: id.clone(),
        tenant_name: t.name.clone(),
        halo_client_id: t.entry.halo_client_id.unwrap_or(0),
        subscriptions,
        skus,
        sku_source,
        company_subscriptions,
        errors,
    }
}

async fn read_graph_skus(apis: &Apis, tenant: &str) -> Result<Vec<SkuUsage>, String> {
    apis.graph
        .subscribed_skus(tenant)
        .await
        .map(|s| s.iter().map(GraphSubscribedSku::to_model).collect())
        .map_err(|e| format!("reading Graph subscribedSkus: {e}"))
}

/// Reads one tenant: Graph SKUs once (the users module needs their part numbers, the licences module
/// their seat counts), users, and the licences module's inputs.
async fn read_tenant(
    config: &Config,
    apis: &Apis,
    t: &Target,
    pc_user: bool,
    state: &StateDir,
    now: jiff::Timestamp,
) -> TenantRead {
    let id = &t.entry.customer_id;
    let mut r = TenantRead {
        customer_id: id.clone(),
        ..TenantRead::default()
    };
    let wants_users = t.modules.contains(&Module::Users);
    let graph_skus = if wants_users || (t.modules.contains(&Module::Licences) && !pc_user) {
        Some(read_graph_skus(apis, id).await)
    } else {
        None
    };
    if wants_users {
        let directory = match &graph_skus {
            Some(Err(e)) => Err(e.clone()),
            _ => read_users(config, apis, id, state.tenant_users(id), now)
                .await
                .map(|(users, st, via_delta)| {
                    r.users_state = Some(st);
                    r.users_via_delta = via_delta;
                    let sku_part_numbers = graph_skus
                        .as_ref()
                        .and_then(|s| s.as_ref().ok())
                        .map(|skus| {
                            skus.iter()
                                .map(|s| (s.sku_id.clone(), s.sku_part_number.clone()))
                                .collect()
                        })
                        .unwrap_or_default();
                    TenantDirectory {
                        users,
                        deleted_ids: Vec::new(),
                        sku_part_numbers,
                    }
                }),
        };
        r.directory = Some(directory);
    }
    if t.modules.contains(&Module::Licences) {
        r.licences = Some(read_licences(apis, t, pc_user, graph_skus.as_ref()).await);
    }
    r
}

/// Reads a tenant's users in full when its delta-based read would deactivate contacts that Graph never
/// reported removed (see [`crate::delta_guard`]).
async fn full_read_if_incomplete(
    config: &Config,
    apis: &Apis,
    halo: &HaloSnapshot,
    t: &Target,
    r: &mut TenantRead,
    now: jiff::Timestamp,
) {
    let (Some(Ok(dir)), Some(st)) = (&r.directory, &r.users_state) else {
        return;
    };
    if !r.users_via_delta {
        return;
    }
    let id = &t.entry.customer_id;
    let missing = crate::delta_guard::unexplained_missing(
        halo,
        t.entry.halo_client_id.unwrap_or(0),
        id,
        &dir.users,
        &st.removed,
    );
    if missing.is_empty() {
        return;
    }
    tracing::warn!(
        tenant = %id,
        "the stored read lacks {} linked user(s) Graph never reported removed ({}); reading all users",
        missing.len(),
        missing.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
    );
    let full = read_users(config, apis, id, None, now).await;
    if let Some(Ok(dir)) = &mut r.directory {
        match full {
            Ok((users, st, _)) => {
                dir.users = users;
                r.users_state = Some(st);
                r.users_via_delta = false;
            }
            Err(e) => {
                r.directory = Some(Err(e));
                r.users_state = None;
            }
        }
    }
}

/// The outcome of reading and planning.
#[derive(Debug)]
pub struct Planned {
    /// The plan, with the seat view of the licences module.
    pub plan: Plan,
    pub user_states: Vec<(String, TenantUsersState)>,
    /// "tenant/oid" keys to stamp with `now` in last-seen after a sync.
    pub seen: Vec<String>,
}

/// The users policy from the config.
pub fn users_policy(config: &Config, allow_deactivations: bool) -> UsersPolicy {
    UsersPolicy {
        include_guests: config.users.include_guests,
        require_licence: config.users.require_licence,
        contract_skus: config.users.contract_skus.clone(),
        exclude_upn: config.users.exclude_upn.clone(),
        leaver_grace_days: config.users.leaver_grace_days,
        protect: config.users.protect.clone(),
        welcome_email: config.users.welcome_email,
        max_deactivations: config.safety.max_deactivations,
        max_deactivation_percent: config.safety.max_deactivation_percent,
        empty_source_guard: config.safety.empty_source_guard,
        allow_deactivations,
    }
}

/// Reads everything the modules need and plans them.
#[allow(clippy::too_many_arguments)]
pub async fn plan(
    config: &Config,
    apis: &Apis,
    ui: &Ui,
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
    let halo_fut = read_halo(apis, HaloNeeds::for_modules(modules));
    let bar = ui.bar("tenants read", targets.len() as u64);
    let reads_fut = stream::iter(targets.iter())
        .map(|t| {
            let bar = &bar;
            async move {
                let r = read_tenant(config, apis, t, pc_user, state, now).await;
                bar.inc(1);
                r
            }
        })
        .buffered(config.sync.concurrency.max(1))
        .collect::<Vec<_>>();
    let (halo, mut reads) = tokio::join!(halo_fut, reads_fut);
    bar.finish_and_clear();
    let halo = halo?;
    for (t, r) in targets.iter().zip(reads.iter_mut()) {
        full_read_if_incomplete(config, apis, &halo, t, r, now).await;
    }

    let mut by_tenant: BTreeMap<String, TenantPlan> = targets
        .iter()
        .map(|t| {
            (
                t.entry.customer_id.clone(),
                TenantPlan {
                    customer_id: t.entry.customer_id.clone(),
                    name: t.name.clone(),
                    halo_client_id: t.entry.halo_client_id,
                    ..TenantPlan::default()
                },
            )
        })
        .collect();

    // Comparing: one bar over the source records of every tenant (users and subscriptions).
    let records: usize = reads
        .iter()
        .map(|r| {
            r.directory
                .as_ref()
                .and_then(|d| d.as_ref().ok())
                .map_or(0, |d| d.users.len())
                + r.licences.as_ref().map_or(0, |l| l.subscriptions.len())
        })
        .sum();
    let compare = ui.bar("records compared", records as u64);

    // Users.
    let policy = users_policy(config, allow_deactivations);
    let mut user_inputs = Vec::new();
    for (t, r) in targets.iter().zip(&reads) {
        if let Some(dir) = &r.directory {
            user_inputs.push(TenantUsersInput {
                customer_id: &t.entry.customer_id,
                name: &t.name,
                halo_client_id: t.entry.halo_client_id.unwrap_or(0),
                site_id: t.entry.halo_site_id,
                directory: dir.as_ref().map_err(Clone::clone),
            });
        }
    }
    let last_seen = state.last_seen();
    let mut seen = Vec::new();
    if !user_inputs.is_empty() {
        for tp in users::plan_users(&user_inputs, &halo, &policy, &last_seen, now) {
            merge(&mut by_tenant, tp);
        }
        seen = users::seen_in_scope(&user_inputs, &policy);
        seen.extend(users::grace_started(
            &user_inputs,
            &halo,
            &policy,
            &last_seen,
        ));
    }

    // Licences.
    let lic_inputs: Vec<TenantLicencesInput> =
        reads.iter().filter_map(|r| r.licences.clone()).collect();
    let mut seats = Vec::new();
    if !lic_inputs.is_empty() {
        let lpolicy = LicencesPolicy {
            exclude_skus: config.licences.exclude_skus.clone(),
            names: config.licences.names.clone(),
        };
        let LicencesPlan {
            tenants, seats: s, ..
        } = licences::plan_licences(&lic_inputs, &halo, &lpolicy, now);
        for tp in tenants {
            merge(&mut by_tenant, tp);
        }
        seats = s;
    }

    let user_states = reads
        .into_iter()
        .filter_map(|r| r.users_state.map(|s| (r.customer_id, s)))
        .collect();
    compare.set_position(records as u64);
    compare.finish_and_clear();
    let mut plan = Plan::new(
        now.to_string(),
        modules.to_vec(),
        by_tenant.into_values().collect(),
    );
    plan.seats = seats;
    Ok(Planned {
        plan,
        user_states,
        seen,
    })
}

fn merge(by_tenant: &mut BTreeMap<String, TenantPlan>, tp: TenantPlan) {
    let e = by_tenant
        .entry(tp.customer_id.clone())
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
}
