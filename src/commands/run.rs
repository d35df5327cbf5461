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
    let now = context::now()?;
    let apis = Apis::new(config, Secrets::from_env())?;
    let customers = read_customers(&apis).await?;
    let (targets, notes) = engine::select_targets(config, &customers, tenants, modules)?;
    for n in notes {
        ui.note(&n);
    }
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
    ui.info(&format!("Halo read: {}", plan.plan.halo_read));
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
        ui.out(&render::plan_with(&p.plan.plan, ui.format, ui.layout()));
    }
    // On a terminal the table already ends with the summary: printed once. Piped or redirected, stderr
    // carries it for the person watching.
    if !(ui.stdout_is_terminal() && ui.format != render::Format::Json) {
        ui.info(&format!("csp-sync: {}", render::summary_line(&p.plan.plan)));
    }
    // A tenant's errors also go to stderr, so cron mail and CI logs carry them whatever the output format;
    // labelled "error:" because they make the exit code 1. One line per cause: a wrong secret that fails
    // every tenant is one line naming them, not one line each.
    for line in error_lines(&p.plan.plan) {
        ui.error(&line);
    }
}

/// The plan's tenant errors, one line per cause: errors that differ only by the tenant's id are merged
/// into one line listing the tenants.
pub fn error_lines(plan: &crate::plan::Plan) -> Vec<String> {
    let mut causes: Vec<(String, Vec<&str>)> = Vec::new();
    for t in &plan.tenants {
        for e in &t.errors {
            let cause = if t.customer_id.is_empty() {
                e.clone()
            } else {
                e.replace(&t.customer_id, "<tenant>")
            };
            match causes.iter_mut().find(|(c, _)| *c == cause) {
                Some((_, names)) => names.push(&t.name),
                None => causes.push((cause, vec![&t.name])),
            }
        }
    }
    causes
        .into_iter()
        .map(|(cause, names)| match names.as_slice() {
            [one] => {
                let id = plan
                    .tenants
                    .iter()
                    .find(|t| t.name == *one)
                    .map_or("", |t| t.customer_id.as_str());
                format!("{one}: {}", cause.replace("<tenant>", id))
            }
            many => format!("{} tenants ({}): {cause}", many.len(), many.join(", ")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::plan::{Module, Plan, TenantPlan};

    #[test]
    fn one_error_line_per_cause() {
        let tenant = |id: &str, name: &str, err: String| TenantPlan {
            customer_id: id.into(),
            name: name.into(),
            errors: vec![err],
            ..TenantPlan::default()
        };
        let wrong = |id: &str| format!("Graph token for tenant {id}: the client secret is wrong");
        let plan = Plan::new(
            "2026-11-27T09:00:00Z".into(),
            vec![Module::Users],
            vec![
                tenant("c-1", "A", wrong("c-1")),
                tenant("c-2", "B", wrong("c-2")),
                tenant("c-3", "C", "Halo refused".into()),
            ],
        );
        assert_eq!(
            super::error_lines(&plan),
            vec![
                "2 tenants (A, B): Graph token for tenant <tenant>: the client secret is wrong"
                    .to_string(),
                "C: Halo refused".to_string(),
            ]
        );
    }
}
