//! `csp-sync diff`: read, plan, show; nothing is written, state included.

use anyhow::{Context as _, Result};

use crate::cli::DiffArgs;
use crate::commands::run;
use crate::config::Config;
use crate::error::Exit;
use crate::ui::Ui;

pub async fn run(
    config: &Config,
    ui: &Ui,
    args: &DiffArgs,
    metrics: &crate::metrics::Recorder,
) -> Result<Exit> {
    let modules = run::modules(config, &args.modules);
    let planned = run::prepare(config, ui, &modules, &args.tenants, false).await?;
    metrics.plan(&planned.plan.plan);
    metrics.http(&planned.apis.http);
    run::show_plan(ui, &planned);
    if let Some(out) = &args.out {
        let text =
            crate::redact::json_pretty(&planned.plan.plan).context("serialising the plan")?;
        crate::config::write_atomic(out, &text, None)
            .with_context(|| format!("writing the plan to {}", out.display()))?;
        ui.info(&format!(
            "plan saved to {}; apply it with `csp-sync sync --plan {}`",
            out.display(),
            out.display()
        ));
    }
    let p = &planned.plan.plan;
    let mut exit = if p.has_errors() {
        Exit::Error
    } else {
        Exit::Ok
    };
    if args.detailed_exitcode {
        if p.has_held_back() {
            exit = exit.worst(Exit::HeldBack);
        }
        if p.has_changes() {
            exit = exit.worst(Exit::Pending);
        }
    }
    Ok(exit)
}
