//! Dispatch: turns the parsed command line into a run and its exit status. Errors are printed here, once,
//! with their whole chain of context.

use std::io::IsTerminal;

use anyhow::Result;

use crate::cli::{Cli, Command, OutputFormat};
use crate::commands;
use crate::config::{self, Config};
use crate::error::Exit;
use crate::render::Format;
use crate::secrets::Secrets;
use crate::ui::Ui;

/// Runs a command line to its exit status.
#[allow(clippy::needless_pass_by_value)] // the command line is consumed by the run
pub fn run(cli: Cli) -> Exit {
    let format = match OutputFormat::resolve(cli.output, std::io::stdout().is_terminal()) {
        OutputFormat::Table => Format::Table,
        OutputFormat::Json => Format::Json,
        OutputFormat::Markdown => Format::Markdown,
    };
    let ui = Ui::new(format, cli.verbosity < 0, cli.no_progress)
        .with_json_logs(matches!(cli.log_format, crate::cli::LogFormat::Json))
        .with_compact_json(!std::io::stdout().is_terminal())
        .with_stdout_terminal(std::io::stdout().is_terminal())
        .with_layout(crate::render::Layout::from_env(
            std::io::stdout().is_terminal(),
            cli.wide,
        ));
    match dispatch(&cli, &ui) {
        Ok(exit) => exit,
        Err(err) => {
            ui.error(&chain(&err));
            Exit::Error
        }
    }
}

/// An error with its causes, "outer: inner: innermost", without repeating a cause already in the text.
pub fn chain(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn load_config(cli: &Cli) -> Result<Config> {
    let path = config::locate(cli.config.as_deref())?;
    Ok(config::load(&path)?)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn dispatch(cli: &Cli, ui: &Ui) -> Result<Exit> {
    let mut stdout = std::io::stdout();
    match &cli.command {
        Command::Init { path } => {
            let env = std::env::var_os("CSP_SYNC_CONFIG").map(std::path::PathBuf::from);
            let path =
                commands::init::target(path.as_deref(), cli.config.as_deref(), env.as_deref())?;
            commands::init::run_init(path.as_deref(), &mut stdout)?;
            Ok(Exit::Ok)
        }
        Command::Completions { shell } => {
            commands::completions::run_completions(*shell, &mut stdout)?;
            Ok(Exit::Ok)
        }
        Command::AuthSet { target } => {
            commands::auth_set::run_auth_set(*target, &Secrets::from_env(), &mut stdout)?;
            Ok(Exit::Ok)
        }
        Command::TenantsMap(mode) => {
            let config = load_config(cli)?;
            runtime()?.block_on(commands::tenants_map::run(&config, ui, mode))
        }
        Command::TenantsConsent { tenants, dry_run } => {
            let config = load_config(cli)?;
            runtime()?.block_on(commands::tenants_consent::run(
                &config, ui, tenants, *dry_run,
            ))
        }
        Command::TenantsHealth => {
            let config = load_config(cli)?;
            runtime()?.block_on(commands::tenants_health::run(&config, ui))
        }
        Command::AuthLogin { target } => {
            let config = load_config(cli)?;
            runtime()?.block_on(commands::auth_login::run(&config, ui, *target))
        }
        Command::TenantsList { unmapped } => {
            let config = load_config(cli)?;
            runtime()?.block_on(commands::tenants_list::run(&config, ui, *unmapped))
        }
        Command::AuthCheck { tenants } => {
            let config = load_config(cli)?;
            runtime()?.block_on(commands::auth_check::run(&config, ui, *tenants))
        }
        Command::Diff(args) => {
            let mut config = load_config(cli)?;
            // The open period's estimate is `diff`'s alone (SPEC 7).
            config.billing.estimate = true;
            let metrics = crate::metrics::Recorder::new("diff", cli.metrics_file.clone());
            let result = runtime()?.block_on(commands::diff::run(&config, ui, args, &metrics));
            match metrics.finish(ui, &result) {
                Some(failed) => result.map(|e| e.worst(failed)),
                None => result,
            }
        }
        Command::Sync(args) => {
            let mut config = load_config(cli)?;
            config.billing.period.clone_from(&args.period);
            let metrics = crate::metrics::Recorder::new("sync", cli.metrics_file.clone());
            let result = runtime()?.block_on(commands::sync::run(&config, ui, args, &metrics));
            match metrics.finish(ui, &result) {
                Some(failed) => result.map(|e| e.worst(failed)),
                None => result,
            }
        }
        Command::Runs { run } => {
            let config = load_config(cli)?;
            commands::runs::run(&config, ui, *run)
        }
        Command::Undo(args) => {
            let config = load_config(cli)?;
            runtime()?.block_on(commands::undo::run(&config, ui, args))
        }
        Command::Doctor => runtime()?.block_on(commands::doctor::run(cli.config.as_deref(), ui)),
    }
}
