//! The `tenants` sync module (SPEC section 7): with `[sync] auto_create_clients = true`, a Halo client for
//! each unmapped, non-skipped customer, written through the applier like every other change, then a
//! `[[tenant]]` entry for it in the config. Without it, unmapped and renamed customers are reported as
//! notes.
//!
//! A rerun creates nothing: the created client carries the customer's tenant id in `azure_tenants`, so a
//! run stopped between the Halo write and the config write finds it and adopts it
//! ([`crate::plan::tenants::plan_auto_create`]).

use std::collections::BTreeMap;

use anyhow::Result;

use crate::apply::ApplyReport;
use crate::commands::tenants_map::{mapping_state, read_clients};
use crate::config::{self, Config, MappingEdit};
use crate::context::Apis;
use crate::engine::Planned;
use crate::model::Customer;
use crate::plan::tenants::{self as planner};
use crate::plan::{Action, HaloEntity, Module, Plan, TenantPlan};
use crate::ui::Ui;

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

/// Plans the tenants module and merges it into `planned`. Returns the clients to adopt (written to the
/// config by [`adopt`] during a real sync, never by `diff`).
pub async fn plan_into(
    config: &Config,
    apis: &Apis,
    customers: &[Customer],
    planned: &mut Planned,
) -> Result<Vec<Adoption>> {
    let clients = read_clients(apis).await?;
    let mapping = mapping_state(config);
    let mut by_id: BTreeMap<String, TenantPlan> = std::mem::take(&mut planned.plan.tenants)
        .into_iter()
        .map(|t| (t.customer_id.to_ascii_lowercase(), t))
        .collect();

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

    let mut adoptions = Vec::new();
    if config.sync.auto_create_clients {
        let auto = planner::plan_auto_create(customers, &clients, &mapping);
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
            adoptions.push(Adoption {
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
        let open = super::tenants_map::open_customers(config, customers);
        for c in open {
            tenant_plan(&mut by_id, &c.id, &c.company_name).notes.push(
                "not mapped to a Halo client: map it with `csp-sync tenants map` (or set [sync] \
                 auto_create_clients = true to create a client for it)"
                    .to_string(),
            );
        }
    }

    let old = &planned.plan;
    let mut plan = Plan::new(
        old.generated_at.clone(),
        old.modules.clone(),
        by_id.into_values().collect(),
    );
    plan.seats = std::mem::take(&mut planned.plan.seats);
    planned.plan = plan;
    Ok(adoptions)
}

/// Writes a `[[tenant]]` entry for each adopted client.
pub fn adopt(config: &Config, ui: &Ui, adoptions: &[Adoption]) -> Result<()> {
    for a in adoptions {
        config::write_mapping(
            &config.path,
            &a.customer_id,
            &a.name,
            MappingEdit::Client {
                halo_client_id: a.halo_client_id,
                halo_site_id: None,
            },
        )?;
        ui.info(&format!(
            "csp-sync: {} mapped to the existing Halo client #{} in {}",
            a.name,
            a.halo_client_id,
            config.path.display()
        ));
    }
    Ok(())
}

/// After applying: a `[[tenant]]` entry for each Halo client the tenants module created. A failure here
/// is an error naming what to do; the next sync adopts the client instead of creating another.
pub fn record_created(config: &Config, ui: &Ui, report: &ApplyReport) -> Result<()> {
    for a in &report.applied {
        let c = &a.change;
        if c.module != Module::Tenants
            || c.entity != HaloEntity::Client
            || c.action != Action::Create
        {
            continue;
        }
        let Some(id) = a.halo_id else {
            ui.warn(&format!(
                "{}: the Halo client was created but its id is unknown; the next sync adopts it by its tenant id",
                c.label
            ));
            continue;
        };
        config::write_mapping(
            &config.path,
            a.customer_id,
            &c.label,
            MappingEdit::Client {
                halo_client_id: id,
                halo_site_id: None,
            },
        )
        .map_err(|e| {
            anyhow::anyhow!(
                "Halo client {} (#{id}) was created but the config could not be written: {e}; fix the \
                 file and run `csp-sync sync tenants` again: the client is adopted, not created twice",
                c.label
            )
        })?;
        ui.info(&format!(
            "csp-sync: created Halo client {} (#{id}) and mapped it in {}",
            c.label,
            config.path.display()
        ));
    }
    Ok(())
}
