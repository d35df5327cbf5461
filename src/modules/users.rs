//! The users module: Entra users of each mapped tenant -> Halo users (SPEC section 7). Reads Halo's sites
//! and users, each tenant's users (delta round or full read) with the tenant's SKU part numbers, and plans
//! with [`crate::plan::users`]. Outputs: the tenant's delta state and the last-seen keys of this run.

use std::collections::BTreeMap;

use anyhow::Result;

use crate::api::graph::{GraphUser, UsersFetch};
use crate::config::Config;
use crate::context::Apis;
use crate::engine::Target;
use crate::model::{EntraUser, HaloSnapshot, TenantDirectory};
use crate::modules::{HaloRead, Outputs, PlanCx, SyncModule, TenantCx};
use crate::plan::users::{self, TenantUsersInput, UsersPolicy};
use crate::plan::{HaloEntity, Module, TenantPlan};
use crate::state::TenantUsersState;

pub struct Users;

/// What was read from one tenant for the users module.
#[derive(Debug, Default)]
pub struct UsersRead {
    /// `None` only for a tenant that was not read.
    pub directory: Option<Result<TenantDirectory, String>>,
    /// The state to store, without its users until planned: they are the directory's (`Some` only
    /// beside an `Ok` directory).
    pub state: Option<TenantUsersState>,
    /// Whether the users came from a delta round on the stored read (not a full read).
    pub via_delta: bool,
    /// The tenant's users as of the last sync (the stored read), for the reasons of the plan.
    pub previous: Option<Vec<EntraUser>>,
}

const INACTIVE: &[(&str, &str)] = &[("includeinactive", "true")];

impl SyncModule for Users {
    type Read = UsersRead;
    type PartnerRead = ();
    const MODULE: Module = Module::Users;
    const HALO: &'static [HaloRead] = &[
        HaloRead {
            entity: HaloEntity::Site,
            key: "sites",
            params: INACTIVE,
        },
        HaloRead {
            entity: HaloEntity::Users,
            key: "users",
            params: INACTIVE,
        },
    ];

    // An older Halo whose user list lacks `azureoid` is read by id instead (`crate::halo_users_by_id`).

    async fn read_tenant(&self, cx: &TenantCx<'_>) -> UsersRead {
        let id = &cx.target.entry.customer_id;
        let mut r = UsersRead::default();
        let directory = match cx.source.graph_skus(cx.apis).await {
            Err(e) => Err(e.clone()),
            Ok(skus) => {
                // The users of the last sync, for the plan's reasons (changed in Entra / edited in Halo).
                r.previous = cx.source.stored_users();
                read_users(cx, id)
                .await
                .map(|(users, st, via_delta)| {
                    r.state = Some(st);
                    r.via_delta = via_delta;
                    TenantDirectory {
                        users,
                        deleted_ids: Vec::new(),
                        sku_part_numbers: skus
                            .iter()
                            .map(|s| (s.sku_id.clone(), s.sku_part_number.clone()))
                            .collect(),
                    }
                })
            }
        };
        r.directory = Some(directory);
        r
    }

    /// A delta-based read that would leave active linked Halo contacts without their Entra user, with no
    /// `@removed` for them, is replaced by a full read (see [`crate::delta_guard`]).
    async fn recheck(&self, cx: &TenantCx<'_>, halo: &HaloSnapshot, r: &mut UsersRead) {
        let (Some(Ok(dir)), Some(st)) = (&r.directory, &r.state) else {
            return;
        };
        if !r.via_delta {
            return;
        }
        let id = &cx.target.entry.customer_id;
        let missing = crate::delta_guard::unexplained_missing(
            halo,
            cx.target.entry.halo_client_id.unwrap_or(0),
            id,
            &dir.users,
            &st.removed,
        );
        if missing.is_empty() {
            return;
        }
        tracing::warn!(
            tenant = %id,
            "tenant {id}: the stored read lacks {} linked user(s) Graph never reported removed ({}); reading all users",
            missing.len(),
            missing.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
        );
        match read_all(cx.config, cx.apis, id, cx.now).await {
            Ok((users, st, _)) => {
                if let Some(Ok(dir)) = &mut r.directory {
                    dir.users = users;
                }
                r.state = Some(st);
                r.via_delta = false;
            }
            Err(e) => {
                r.directory = Some(Err(e));
                r.state = None;
            }
        }
    }

    fn records(read: &UsersRead) -> usize {
        read.directory
            .as_ref()
            .and_then(|d| d.as_ref().ok())
            .map_or(0, |d| d.users.len())
    }

    fn plan(
        &self,
        cx: &PlanCx<'_>,
        (): (),
        reads: Vec<(&Target, UsersRead)>,
        out: &mut Outputs,
    ) -> Result<Vec<TenantPlan>> {
        let policy = users_policy(cx.config, cx.allow_deactivations);
        let mut inputs = Vec::new();
        for (t, r) in &reads {
            if let Some(dir) = &r.directory {
                inputs.push(TenantUsersInput {
                    customer_id: &t.entry.customer_id,
                    name: &t.name,
                    halo_client_id: t.entry.halo_client_id.unwrap_or(0),
                    site_id: t.entry.halo_site_id,
                    directory: dir.as_ref().map_err(Clone::clone),
                    previous: r.previous.as_deref(),
                });
            }
        }
        let mut plans = Vec::new();
        if !inputs.is_empty() {
            let last_seen = cx.state.last_seen();
            let client_tenants = client_tenants(cx.config);
            let memory = users::UsersMemory {
                memory: cx.memory,
                client_tenants: Some(&client_tenants),
            };
            plans = users::plan_users(&inputs, cx.halo, &policy, &last_seen, memory, cx.now);
            out.seen.extend(users::seen_in_scope(&inputs, &policy));
            out.seen.extend(users::grace_started(
                &inputs,
                cx.halo,
                &policy,
                &last_seen,
                memory,
            ));
        }
        drop(inputs);
        for (t, r) in reads {
            if let Some(mut st) = r.state {
                // The state's users are the directory's (held once while planning: issue 15).
                if let Some(Ok(dir)) = r.directory {
                    st.users = dir.users;
                }
                out.user_states.push((t.entry.customer_id.clone(), st));
            }
        }
        Ok(plans)
    }
}

/// Halo client id -> every configured, non-skipped tenant mapped to it (lower-case): the leaver rule for
/// contacts whose read carries no tenant id looks at all of them (SPEC 7).
fn client_tenants(config: &Config) -> BTreeMap<i64, Vec<String>> {
    let mut out: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for t in config.tenants.iter().filter(|t| !t.skip) {
        if let Some(c) = t.halo_client_id {
            out.entry(c).or_default().push(t.customer_id.to_lowercase());
        }
    }
    out
}

/// The users policy from the config.
pub fn users_policy(config: &Config, allow_deactivations: bool) -> UsersPolicy {
    UsersPolicy {
        include_guests: config.users.include_guests,
        require_licence: config.users.require_licence,
        contract_skus: config.users.contract_skus.clone(),
        contract_mode: config.users.contract_mode,
        contract_field: config.users.contract_field,
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

/// A tenant's users as the tenant's source read them (see [`crate::modules::TenantSource`]): the stored
/// set moved forward by a delta round, or a full read (with a new delta link when `[users] delta`).
async fn read_users(
    cx: &TenantCx<'_>,
    tenant: &str,
) -> Result<(Vec<EntraUser>, TenantUsersState, bool), String> {
    let stored = cx.source.take_stored_users();
    // Not planned for this tenant (cannot happen for a tenant running the users module): read now.
    let Some(fetch) = cx.source.take_users(cx.apis).await else {
        return read_all(cx.config, cx.apis, tenant, cx.now).await;
    };
    match fetch {
        Ok(UsersFetch::Delta(d)) => {
            let st = stored.unwrap_or_default();
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
                users: Vec::new(),
                removed,
            };
            Ok((users, state, true))
        }
        Ok(full) => Ok(full_state(full, cx.now)),
        Err(e) => Err(format!("reading users: {e}")),
    }
}

/// Every user of a tenant, read now (with a new delta link when `[users] delta`).
async fn read_all(
    config: &Config,
    apis: &Apis,
    tenant: &str,
    now: jiff::Timestamp,
) -> Result<(Vec<EntraUser>, TenantUsersState, bool), String> {
    apis.graph
        .users_full(tenant, config.users.delta, None)
        .await
        .map(|f| full_state(f, now))
        .map_err(|e| format!("reading users: {e}"))
}

/// The users and state of a full read. The stored read keeps the users with or without a delta link:
/// the next plan's reasons compare with them.
fn full_state(
    fetch: UsersFetch,
    now: jiff::Timestamp,
) -> (Vec<EntraUser>, TenantUsersState, bool) {
    let (users, delta_link) = match fetch {
        UsersFetch::Full {
            users, delta_link, ..
        } => (users, delta_link),
        UsersFetch::Delta(d) => (d.users, Some(d.delta_link)),
    };
    let users: Vec<EntraUser> = users.iter().map(GraphUser::to_model).collect();
    let state = TenantUsersState {
        users: Vec::new(),
        delta_link,
        last_full_read: Some(now.to_string()),
        removed: Vec::new(),
    };
    (users, state, false)
}
