//! The assets module: each mapped tenant's Intune managed devices -> Halo assets (SPEC section 7). Reads
//! Halo's assets (`includeassetfields=true`, inactive included) and users (for the primary-user link),
//! each tenant's `deviceManagement/managedDevices` (`$select`, every page), and plans with
//! [`crate::plan::assets`]. Outputs: the device summary, the devices' last-seen times and the list-less
//! values written (state `assets.json`).
//!
//! Halo's asset `users`: the OpenAPI document (`halo-openapi.json`, schema `Device`) gives `users` as an
//! array of `Users_List` with no description and no add/remove variant (unlike `add_licences` beside
//! `licences`), and `Device_List` does not carry it. Nothing says whether an update merges or replaces the
//! list, so csp-sync assumes the less convenient case, replace. Where csp-sync remembers what it last wrote
//! to an asset's `users` (the Halo memory: the link it wrote, or none for an asset it created without a
//! user), `users` is a list-less field like any other (SPEC 7): written when the source differs from that
//! value, with no read. Only where it remembers nothing (an asset Halo's own Intune import made, adopted
//! by serial number, or a lost state) does it read the full record (`GET /api/Asset/{id}`) first and send
//! `users` only where that shows no user or exactly the one wanted, so a user a technician chose on an
//! asset csp-sync never linked is not dropped. This keeps the run after a first sync (which creates the
//! contacts and the assets together, so cannot link them yet) from reading every asset by id.

use std::collections::BTreeMap;

use anyhow::Result;

use crate::context::Apis;
use crate::engine::{Planned, Target};
use crate::modules::{HaloRead, Outputs, PlanCx, SyncModule, TenantCx};
use crate::halo_memory::HaloMemory;
use crate::plan::assets::{self, AssetsPolicy, DeviceRead, DeviceState, TenantAssetsInput, user_ids};
use crate::plan::{HaloEntity, Module, TenantPlan};
use crate::state::StateDir;

pub struct Assets;

impl SyncModule for Assets {
    type Read = Option<DeviceRead>;
    type PartnerRead = ();
    const MODULE: Module = Module::Assets;
    const HALO: &'static [HaloRead] = &[
        HaloRead {
            entity: HaloEntity::Asset,
            key: "assets",
            params: &[("includeinactive", "true"), ("includeassetfields", "true")],
        },
        HaloRead {
            entity: HaloEntity::Users,
            key: "users",
            params: &[("includeinactive", "true")],
        },
    ];

    async fn read_tenant(&self, cx: &TenantCx<'_>) -> Option<DeviceRead> {
        Some(match cx.source.take_devices(cx.apis).await {
            Ok(devices) => {
                // Only the properties `[assets] fields` maps are kept: every property of every device
                // of a large estate is some 2 KB a device (issue 15).
                let mapped = &cx.config.assets.fields;
                DeviceRead::Devices(
                    devices
                        .iter()
                        .map(|d| {
                            let mut d = d.to_model();
                            d.properties.retain(|k, _| mapped.contains_key(k));
                            d
                        })
                        .collect(),
                )
            }
            // microsoft-apis.md 3.7: a tenant without an Intune licence answers 400 "Request not
            // applicable to target tenant."
            Err(e) if e.status() == Some(400) && e.to_string().contains("not applicable") => {
                DeviceRead::NoIntune("Graph answers \"Request not applicable to target tenant\"".into())
            }
            Err(e) => DeviceRead::Failed(format!("reading managedDevices: {e}")),
        })
    }

    fn records(read: &Option<DeviceRead>) -> usize {
        match read {
            Some(DeviceRead::Devices(d)) => d.len(),
            _ => 0,
        }
    }

    fn plan(
        &self,
        cx: &PlanCx<'_>,
        (): (),
        reads: Vec<(&Target, Option<DeviceRead>)>,
        out: &mut Outputs,
    ) -> Result<Vec<TenantPlan>> {
        let inputs: Vec<TenantAssetsInput> = reads
            .iter()
            .filter_map(|(t, r)| {
                r.as_ref().map(|devices| TenantAssetsInput {
                    customer_id: &t.entry.customer_id,
                    name: &t.name,
                    halo_client_id: t.entry.halo_client_id.unwrap_or(0),
                    site_id: t.entry.halo_site_id,
                    devices,
                })
            })
            .collect();
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let a = &cx.config.assets;
        let policy = AssetsPolicy {
            asset_types: a.asset_types.clone(),
            fields: a.fields.clone(),
            stale_after_days: a.stale_after_days,
            link_users: a.link_users,
            max_deactivations: cx.config.safety.max_deactivations,
            max_deactivation_percent: cx.config.safety.max_deactivation_percent,
            allow_deactivations: cx.allow_deactivations,
            empty_source_guard: cx.config.safety.empty_source_guard,
        };
        let p = assets::plan_assets(
            &inputs,
            cx.halo,
            &policy,
            &cx.state.assets(),
            cx.memory,
            cx.now,
        );
        out.devices.extend(p.summary);
        out.device_seen.extend(p.seen);
        Ok(p.tenants)
    }

    /// A `users` write on an existing asset: written as planned where the memory holds what csp-sync last
    /// wrote there; else kept only where the full record shows no user (one `GET /api/Asset/{id}` per such
    /// asset: only assets csp-sync never wrote `users` to, none in a steady state).
    async fn confirm(
        &self,
        cx: &PlanCx<'_>,
        apis: &Apis,
        plans: &mut Vec<TenantPlan>,
        out: &mut Outputs,
    ) -> Result<()> {
        for tp in plans.iter_mut() {
            let mut notes = Vec::new();
            for c in &mut tp.changes {
                let (Some(id), Some(pos)) = (c.halo_id, c.fields.iter().position(|f| f.field == "users"))
                else {
                    continue;
                };
                let want = user_ids(&c.fields[pos].to);
                let ours = cx
                    .memory
                    .last_written(HaloEntity::Asset, id, "users")
                    .map(user_ids);
                if ours.is_some() {
                    continue;
                }
                let keep = match apis.halo.get("Asset", id).await {
                    Ok(record) => {
                        let have = record.get("users").map(user_ids).unwrap_or_default();
                        if have == want {
                            out.device_users.push((id, c.fields[pos].to.clone()));
                            false
                        } else if have.is_empty() {
                            true
                        } else {
                            notes.push(format!(
                                "{}: the Halo asset (#{id}) lists users csp-sync did not set; they are left as \
                                 they are (no primary-user link written)",
                                c.label
                            ));
                            false
                        }
                    }
                    Err(e) => {
                        notes.push(format!(
                            "{}: could not read the Halo asset #{id} to check its users ({e}); no user link \
                             written this run",
                            c.label
                        ));
                        false
                    }
                };
                if !keep {
                    c.fields.remove(pos);
                }
            }
            tp.changes.retain(|c| !c.fields.is_empty());
            tp.notes.extend(notes);
        }
        Ok(())
    }
}

/// After a sync: stamps the devices seen as last seen at `started` (the values written to the assets'
/// list-less fields are remembered with every other write, in the Halo memory).
pub fn record(state: &StateDir, planned: &Planned, started: jiff::Timestamp) -> Result<()> {
    if planned.device_seen.is_empty() {
        return Ok(());
    }
    let mut all: BTreeMap<String, DeviceState> = state.assets();
    for key in &planned.device_seen {
        all.entry(key.clone()).or_default().last_seen = Some(started);
    }
    state.save_assets(&all)
}

/// The links found already in place, remembered as if csp-sync had written them.
pub fn remember_links(planned: &Planned, memory: &mut HaloMemory) {
    for (id, users) in &planned.device_users {
        memory.remember(HaloEntity::Asset, *id, "users", users.clone());
    }
}
