//! `csp-sync tenants list [--unmapped]`: every Partner Center customer with its mapping state.

use anyhow::Result;
use serde::Serialize;

use crate::commands::run;
use crate::config::Config;
use crate::context::Apis;
use crate::engine;
use crate::engine::HaloNeeds;
use crate::error::Exit;
use crate::render::{Format, Grid};
use crate::secrets::Secrets;
use crate::ui::Ui;

/// One row of `tenants list` (also its JSON shape).
#[derive(Debug, Serialize)]
pub struct TenantRow {
    pub customer_id: String,
    pub tenant_id: String,
    pub company_name: String,
    pub domain: String,
    /// `mapped`, `unmapped` or `skipped`.
    pub mapping: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub halo_client_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub halo_client_name: Option<String>,
}

#[derive(Serialize)]
struct Doc<'a> {
    version: u32,
    /// `[users] contract_mode`: `scope` or `flag`.
    contract_mode: &'static str,
    tenants: &'a [TenantRow],
}

pub async fn run(config: &Config, ui: &Ui, unmapped_only: bool) -> Result<Exit> {
    let apis = Apis::new(config, Secrets::from_env())?;
    let customers = run::read_customers(&apis).await?;
    let halo = engine::read_halo(&apis, HaloNeeds::for_modules(&[])).await?;
    let mut rows: Vec<TenantRow> = customers
        .iter()
        .map(|c| {
            let entry = config.tenant(&c.id);
            let mapping = match entry {
                Some(e) if e.skip => "skipped",
                Some(e) if e.halo_client_id.is_some() => "mapped",
                _ => "unmapped",
            };
            let client_id = entry.and_then(|e| e.halo_client_id);
            TenantRow {
                customer_id: c.id.clone(),
                tenant_id: c.tenant_id.clone(),
                company_name: c.company_name.clone(),
                domain: c.domain.clone(),
                mapping,
                halo_client_id: client_id,
                halo_client_name: client_id
                    .and_then(|id| halo.clients.iter().find(|h| h.id == id))
                    .map(|h| h.name.clone()),
            }
        })
        .filter(|r| !unmapped_only || r.mapping == "unmapped")
        .collect();
    rows.sort_by(|a, b| {
        a.company_name
            .to_lowercase()
            .cmp(&b.company_name.to_lowercase())
    });
    match ui.format {
        Format::Json => ui.out_json(&Doc {
            version: 1,
            contract_mode: config.users.contract_mode.as_str(),
            tenants: &rows,
        }),
        f => {
            let mut g = Grid::new(["customer", "domain", "tenant id", "mapping", "Halo client"]);
            for r in &rows {
                g.push([
                    r.company_name.clone(),
                    r.domain.clone(),
                    r.tenant_id.clone(),
                    r.mapping.to_string(),
                    match (&r.halo_client_name, r.halo_client_id) {
                        (Some(n), Some(id)) => format!("{n} (#{id})"),
                        (None, Some(id)) => format!("#{id} (not found in Halo)"),
                        _ => String::new(),
                    },
                ]);
            }
            ui.out(&g.render(f));
        }
    }
    let unmapped = rows.iter().filter(|r| r.mapping == "unmapped").count();
    ui.info(&format!(
        "csp-sync: {}, {unmapped} unmapped; contract mode {}",
        crate::render::count(rows.len(), "customer", "customers"),
        config.users.contract_mode.as_str()
    ));
    Ok(Exit::Ok)
}
