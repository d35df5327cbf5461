//! The tenants module (SPEC section 7): with `[sync] auto_create_clients = true`, a Halo client for each
//! unmapped, non-skipped customer, written through the applier like every other change, then a
//! `[[tenant]]` entry for it in the config (`crate::commands::tenants_sync`). Without it, unmapped and
//! renamed customers are reported as notes. It plans over every Partner Center customer, not only the
//! mapped targets, against the Halo clients the engine read; it reads nothing per tenant.
//!
//! A rerun creates nothing: the created client carries the customer's tenant id in `azure_tenants`, so a
//! run stopped between the Halo write and the config write finds it and adopts it
//! ([`crate::plan::tenants::plan_auto_create`]).

use std::collections::BTreeMap;

use anyhow::Result;

use crate::commands::tenants_map::{mapping_state, open_customers};
use crate::engine::Target;
use crate::modules::{Outputs, PlanCx, SyncModule};
use crate::plan::tenants::{self as planner};
use crate::plan::{Module, TenantPlan};

pub struct Tenants;

/// A customer whose Halo client already exists (it carries the tenant id): only the config is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adoption {
    pub customer_id: String,
    pub name: String,
    pub halo_client_id: i64,
}

fn tenant_plan<'a>(
    by_id: &'a mut BTreeMap<String, TenantPlan>,
    customer_id: &str,
    name: &str,
) -> &'a mut TenantPlan {
    by_id
        .entry(customer_id.to_ascii_lowercase())
        .or_insert_with(|| TenantPlan {
            customer_id: customer_id.to_string(),
            name: name.to_string(),
            ..TenantPlan::default()
        })
}

impl SyncModule for Tenants {
    type Read = ();
    type PartnerRead = ();
    const MODULE: Module = Module::Tenants;

    fn plan(
        &self,
        cx: &PlanCx<'_>,
        (): (),
        _reads: Vec<(&Target, ())>,
        out: &mut Outputs,
    ) -> Result<Vec<TenantPlan>> {
        let (config, customers, clients) = (cx.config, cx.customers, &cx.halo.clients);
        let mapping = mapping_state(config);
        let mut by_id: BTreeMap<String, TenantPlan> = BTreeMap::new();

        let config_names: BTreeMap<String, String> = config
            .tenants
            .iter()
            .filter_map(|t| t.name.clone().map(|n| (t.customer_id.clone(), n)))
            .collect();
        for (id, old, new) in planner::renamed(customers, &config_names) {
            tenant_plan(&mut by_id, &id, &new).notes.push(format!(
                "renamed in Partner Center: the config calls it {old:?}, Partner Center now {new:?} \
                 (update `name` in its [[tenant]] entry if you like; the mapping is unaffected)"
            ));
        }

        if config.sync.auto_create_clients {
            let auto = planner::plan_auto_create(customers, clients, &mapping);
            for create in auto.creates {
                let t = tenant_plan(&mut by_id, &create.customer_id, &create.name);
                t.changes.extend(create.changes);
                t.notes.extend(create.notes);
            }
            for (customer_id, client_id) in auto.adopt {
                let name = customers
                    .iter()
                    .find(|c| c.id == customer_id)
                    .map(|c| c.company_name.clone())
                    .unwrap_or_default();
                let client_name = clients
                    .iter()
                    .find(|c| c.id == client_id)
                    .map(|c| c.name.clone())
                    .unwrap_or_default();
                tenant_plan(&mut by_id, &customer_id, &name).notes.push(format!(
                    "Halo client {client_name} (#{client_id}) already carries this tenant id: it is adopted \
                     (a [[tenant]] entry is written by `sync`), nothing is created"
                ));
                out.adopt.push(Adoption {
                    customer_id,
                    name,
                    halo_client_id: client_id,
                });
            }
            for conflict in auto.conflicts {
                let t = tenant_plan(&mut by_id, &conflict.source_key, &conflict.label);
                t.conflicts.push(conflict);
            }
        } else {
            for c in open_customers(config, customers) {
                tenant_plan(&mut by_id, &c.id, &c.company_name).notes.push(
                    "not mapped to a Halo client: map it with `csp-sync tenants map` (or set [sync] \
                     auto_create_clients = true to create a client for it)"
                        .to_string(),
                );
            }
        }
        Ok(by_id.into_values().collect())
    }
}
