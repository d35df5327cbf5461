//! What `diff` and `sync` share: choosing modules, building the API side, reading and planning, showing.

use anyhow::Result;

use crate::config::Config;
use crate::context::{self, Apis};
use crate::engine::{self, Planned};
use crate::model::Customer;
use crate::plan::Module;
use crate::render;
use crate::secrets::Secrets;
use crate::state::StateDir;
use crate::ui::Ui;

/// Modules of this run: the command line's, else `[sync] modules`. Only implemented modules are run;
/// the others are named in a warning.
pub fn modules(config: &Config, asked: &[Module]) -> Vec<Module> {
    let mut m: Vec<Module> = if asked.is_empty() {
        config.sync.modules.clone()
    } else {
        asked.to_vec()
    };
    m.sort();
    m.dedup();
    m
}

/// A planned run with its API side, for applying.
pub struct Prepared {
    pub apis: Apis,
    pub plan: Planned,
}

/// Reads and plans.
pub async fn prepare(
    config: &Config,
    ui: &Ui,
    modules: &[Module],
    tenants: &[String],
    allow_deactivations: bool,
) -> Result<Prepared> {
    for m in modules {
        if crate::modules::find(*m).is_none() {
            ui.warn(&format!(
                "the {m} module is not available in this version yet; it is skipped"
            ));
        }
    }
    if config.halo.bulk_read == crate::config::BulkRead::Report {
        ui.warn("[halo] bulk_read = \"report\" is not available in this version yet; Halo is read with paged API lists");
    }
    let now = context::now()?;
    let apis = Apis::new(config, Secrets::from_env())?;
    let customers = read_customers(&apis).await?;
    let targets = engine::select_targets(config, &customers, tenants, modules)?;
    let state = StateDir::new(config.sync.state_dir.clone());
    let plan = engine::plan(
        config,
        &apis,
        ui,
        &customers,
        &targets,
        modules,
        allow_deactivations,
        &state,
        now,
    )
    .await?;
    for w in apis.take_warnings() {
        ui.warn(&w);
    }
    Ok(Prepared { apis, plan })
}

/// Every Partner Center customer, as domain values.
pub async fn read_customers(apis: &Apis) -> Result<Vec<Customer>> {
    Ok(apis
        .partner_center
        .customers()
        .await
        .map_err(|e| anyhow::anyhow!("reading Partner Center customers: {e}"))?
        .iter()
        .map(crate::api::partner_center::PcCustomer::to_model)
        .collect())
}

/// Prints the plan (stdout) and its one-line summary (stderr).
pub fn show_plan(ui: &Ui, p: &Prepared) {
    if ui.format == render::Format::Json {
        ui.out_json(&p.plan.plan);
    } else {
        ui.out(&render::plan(&p.plan.plan, ui.format));
    }
    ui.info(&format!("csp-sync: {}", render::summary_line(&p.plan.plan)));
    // A tenant's errors also go to stderr, so cron mail and CI logs carry them whatever the output format.
    for t in &p.plan.plan.tenants {
        for e in &t.errors {
            ui.warn(&format!("{}: {e}", t.name));
        }
    }
}
