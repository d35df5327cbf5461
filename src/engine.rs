//! One run of the read -> plan pipeline shared by `diff` and `sync`: choose the tenants, read Partner
//! Center, Graph and Halo (tenants in parallel, bounded by `[sync] concurrency`), and plan every module.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use futures_util::StreamExt;
use futures_util::stream;
use serde_json::Value;

use crate::config::{Config, TenantEntry};
use crate::context::Apis;
use crate::fetch::{self, DeltaError};
use crate::model::{Customer, EntraUser, HaloSnapshot, TenantDirectory};
use crate::plan::licences::{
    self, LicencesPlan, LicencesPolicy, SeatRow, SkuSource, TenantLicencesInput,
};
use crate::plan::users::{self, TenantUsersInput, UsersPolicy};
use crate::plan::{Module, Plan, TenantPlan};
use crate::read;
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

/// Reads Halo: clients and sites always, users and licences when their module runs.
pub async fn read_halo(
    config: &Config,
    apis: &Apis,
    modules: &[Module],
) -> Result<(HaloSnapshot, HaloRaw)> {
    let api = &config.halo.api_url;
    let want_users = modules.contains(&Module::Users);
    let want_licences = modules.contains(&Module::Licences);
    let (clients, sites, users, licences) = tokio::join!(
        fetch::halo_list(
            apis,
            api,
            "Client",
            "clients",
            "&includeinactive=true&includeazuretenants=true"
        ),
        fetch::halo_list(apis, api, "Site", "sites", "&includeinactive=true"),
        async {
            if want_users {
                fetch::halo_list(apis, api, "Users", "users", "&includeinactive=true").await
            } else {
                Ok(Vec::new())
            }
        },
        async {
            if want_licences {
                fetch::halo_list(
                    apis,
                    api,
                    "SoftwareLicence",
                    "licences",
                    "&includeinactive=true",
                )
                .await
            } else {
                Ok(Vec::new())
            }
        },
    );
    let ctx = |e: fetch::FetchError, what: &str| anyhow::anyhow!("reading Halo {what}: {e}");
    let clients = clients.map_err(|e| ctx(e, "clients"))?;
    let sites = sites.map_err(|e| ctx(e, "sites"))?;
    let users = users.map_err(|e| ctx(e, "users"))?;
    let licences = licences.map_err(|e| ctx(e, "software licences"))?;
    if want_users && !read::users_carry_azureoid(&users) {
        bail!(
            "Halo's user list has no `azureoid` field (an older Halo version): csp-sync cannot tell linked users apart; \
             upgrade Halo or set [halo] bulk_read = \"report\""
        );
    }
    let snap_sites: Vec<_> = sites.iter().filter_map(read::site).collect();
    let sc = read::site_clients(&snap_sites);
    let snapshot = HaloSnapshot {
        clients: clients.iter().filter_map(read::client).collect(),
        users: users.iter().filter_map(|u| read::user(u, &sc)).collect(),
        licences: licences.iter().filter_map(read::licence).collect(),
        sites: snap_sites,
    };
    let mut raw = HaloRaw::new();
    raw.insert("Users", users);
    raw.insert("SoftwareLicence", licences);
    raw.insert("Client", clients);
    Ok((snapshot, raw))
}

/// What was read from one tenant.
#[derive(Debug, Default)]
pub struct TenantRead {
    pub customer_id: String,
    pub directory: Option<Result<TenantDirectory, String>>,
    pub users_state: Option<TenantUsersState>,
    pub licences: Option<TenantLicencesInput>,
}

async fn read_directory(
    config: &Config,
    apis: &Apis,
    tenant: &str,
    stored: Option<TenantUsersState>,
    now: jiff::Timestamp,
) -> Result<(TenantDirectory, TenantUsersState), String> {
    let graph = &config.microsoft.graph_url;
    let skus = fetch::graph_subscribed_skus(apis, graph, tenant)
        .await
        .map_err(|e| format!("reading subscribedSkus: {e}"))?;
    let sku_part_numbers = skus
        .iter()
        .map(|s| (s.sku_id.clone(), s.sku_part_number.clone()))
        .collect();
    let (users, state) = if config.users.delta {
        let mut from_delta = None;
        if let Some(st) = stored.filter(|s| s.delta_link.is_some()) {
            let link = st.delta_link.clone().unwrap_or_default();
            match fetch::users_delta(apis, tenant, link).await {
                Ok(d) => {
                    let mut by_id: BTreeMap<String, EntraUser> =
                        st.users.into_iter().map(|u| (u.id.clone(), u)).collect();
                    for id in &d.removed {
                        by_id.remove(id);
                    }
                    for u in d.changed {
                        by_id.insert(u.id.clone(), u);
                    }
                    let users: Vec<EntraUser> = by_id.into_values().collect();
                    from_delta = Some((
                        users.clone(),
                        TenantUsersState {
                            delta_link: d.delta_link,
                            last_full_read: st.last_full_read,
                            users,
                        },
                    ));
                }
                Err(DeltaError::Expired) => {
                    tracing::info!(tenant, "delta link expired; reading all users");
                }
                Err(DeltaError::Fetch(e)) => return Err(format!("reading users (delta): {e}")),
            }
        }
        if let Some(x) = from_delta {
            x
        } else {
            {
                let d = fetch::users_delta(apis, tenant, fetch::users_delta_start(graph))
                    .await
                    .map_err(|e| format!("reading users: {e}"))?;
                let users = d.changed;
                (
                    users.clone(),
                    TenantUsersState {
                        delta_link: d.delta_link,
                        last_full_read: Some(now.to_string()),
                        users,
                    },
                )
            }
        }
    } else {
        let users = fetch::users(apis, graph, tenant)
            .await
            .map_err(|e| format!("reading users: {e}"))?;
        (
            users,
            TenantUsersState {
                delta_link: None,
                last_full_read: Some(now.to_string()),
                users: Vec::new(),
            },
        )
    };
    Ok((
        TenantDirectory {
            users,
            deleted_ids: Vec::new(),
            sku_part_numbers,
        },
        state,
    ))
}

async fn read_licences(
    config: &Config,
    apis: &Apis,
    t: &Target,
    pc_user: bool,
) -> TenantLicencesInput {
    let id = &t.entry.customer_id;
    let pc = &config.microsoft.partner_center_url;
    let graph = &config.microsoft.graph_url;
    let mut errors = Vec::new();
    let subscriptions = fetch::subscriptions(apis, pc, id)
        .await
        .unwrap_or_else(|e| {
            errors.push(format!("reading Partner Center subscriptions: {e}"));
            Vec::new()
        });
    let (skus, sku_source) = if pc_user {
        match fetch::pc_subscribed_skus(apis, pc, id).await {
            Ok(s) => (s, SkuSource::PartnerCenter),
            Err(e) => {
                errors.push(format!("reading Partner Center subscribedskus: {e}"));
                (Vec::new(), SkuSource::PartnerCenter)
            }
        }
    } else {
        match fetch::graph_subscribed_skus(apis, graph, id).await {
            Ok(s) => (s, SkuSource::Graph),
            Err(e) => {
                errors.push(format!("reading Graph subscribedSkus: {e}"));
                (Vec::new(), SkuSource::Graph)
            }
        }
    };
    // Optional join data: its absence only weakens the join, so a failure is logged, not an error.
    let company_subscriptions = fetch::directory_subscriptions(apis, graph, id)
        .await
        .unwrap_or_else(|e| {
            tracing::info!(tenant = %id, "directory/subscriptions not readable: {e}");
            Vec::new()
        });
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

/// The outcome of reading and planning.
#[derive(Debug)]
pub struct Planned {
    pub plan: Plan,
    pub seats: Vec<SeatRow>,
    pub halo: HaloSnapshot,
    pub halo_raw: HaloRaw,
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
    let halo_fut = read_halo(config, apis, modules);
    let bar = ui.bar("tenants read", targets.len() as u64);
    let reads_fut = stream::iter(targets.iter())
        .map(|t| {
            let bar = &bar;
            async move {
                let mut r = TenantRead {
                    customer_id: t.entry.customer_id.clone(),
                    ..TenantRead::default()
                };
                if t.modules.contains(&Module::Users) {
                    let stored = state.tenant_users(&t.entry.customer_id);
                    match read_directory(config, apis, &t.entry.customer_id, stored, now).await {
                        Ok((dir, st)) => {
                            r.directory = Some(Ok(dir));
                            r.users_state = Some(st);
                        }
                        Err(e) => r.directory = Some(Err(e)),
                    }
                }
                if t.modules.contains(&Module::Licences) {
                    r.licences = Some(read_licences(config, apis, t, pc_user).await);
                }
                bar.inc(1);
                r
            }
        })
        .buffered(config.sync.concurrency.max(1))
        .collect::<Vec<_>>();
    let (halo, reads) = tokio::join!(halo_fut, reads_fut);
    bar.finish_and_clear();
    let (halo, halo_raw) = halo?;

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
    let plan = Plan::new(
        now.to_string(),
        modules.to_vec(),
        by_tenant.into_values().collect(),
    );
    Ok(Planned {
        plan,
        seats,
        halo,
        halo_raw,
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
