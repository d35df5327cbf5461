//! Command-line definitions (SPEC section 2). clap stays inside this file: [`parse_args`] turns the
//! arguments once into a plain [`Cli`] value that the rest of the program uses.
//!
//! Usage errors exit 1, not clap's default 2, because 2 means "changes pending" for
//! `diff --detailed-exitcode`; see [`exit_code_for`].

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand, ValueEnum};

use crate::config::MappingEdit;
use crate::plan::Module;
use crate::secrets::SecretName;

/// The parsed command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Cli {
    /// `-c/--config`.
    pub config: Option<PathBuf>,
    /// `-o/--output`; `None` means automatic: table on a terminal, json otherwise.
    pub output: Option<OutputFormat>,
    /// -1 with `-q`, else the number of `-v` (at most 3).
    pub verbosity: i8,
    pub log_format: LogFormat,
    pub color: ColorChoice,
    pub no_progress: bool,
    /// `--wide`: plan tables show every changed field on its own line.
    pub wide: bool,
    /// `--metrics-file`: where `sync` and `diff` write the run's figures (Prometheus text format).
    pub metrics_file: Option<PathBuf>,
    pub command: Command,
}

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
    Markdown,
}

impl OutputFormat {
    /// The format to use: the one asked for, else table on a terminal and json otherwise.
    pub fn resolve(asked: Option<OutputFormat>, stdout_is_terminal: bool) -> OutputFormat {
        asked.unwrap_or(if stdout_is_terminal {
            OutputFormat::Table
        } else {
            OutputFormat::Json
        })
    }
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ColorChoice {
    #[default]
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether to colour a stream: `always`/`never` as asked; `auto` colours a terminal unless `NO_COLOR`
    /// is set to a non-empty value.
    pub fn enabled(self, is_terminal: bool, no_color: Option<&str>) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => is_terminal && no_color.is_none_or(str::is_empty),
        }
    }
}

/// `auth login` targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LoginTarget {
    PartnerCenter,
    Graph,
}

impl LoginTarget {
    /// Where the refresh token obtained by `auth login` is stored.
    pub fn secret(self) -> SecretName {
        match self {
            LoginTarget::PartnerCenter => SecretName::PartnerCenterRefreshToken,
            LoginTarget::Graph => SecretName::GraphRefreshToken,
        }
    }
}

/// `completions` shells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
    #[value(name = "powershell")]
    PowerShell,
}

/// What `tenants map` should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapMode {
    /// Walk the unmapped customers interactively.
    Interactive,
    /// `--customer ID (--client HALO_ID [--site ID] | --skip)`.
    Set {
        customer_id: String,
        edit: MappingEdit,
    },
    /// `--suggest [--accept-exact]`.
    Suggest { accept_exact: bool },
}

/// `sync` options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncArgs {
    /// Positional modules and `--modules`, merged and deduplicated; empty means `[sync] modules`.
    pub modules: Vec<Module>,
    /// `--tenant`: customer ids or names, as given.
    pub tenants: Vec<String>,
    pub dry_run: bool,
    pub plan: Option<PathBuf>,
    pub allow_deactivations: bool,
    /// `--period YYYY-MM`: the billing module bills that period only.
    pub period: Option<String>,
}

/// `diff` options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiffArgs {
    /// Positional modules and `--modules`, merged and deduplicated; empty means `[sync] modules`.
    pub modules: Vec<Module>,
    pub tenants: Vec<String>,
    pub out: Option<PathBuf>,
    pub detailed_exitcode: bool,
}

/// `undo` options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UndoArgs {
    /// The run to take back (its number in `csp-sync runs`).
    pub run: u64,
    pub dry_run: bool,
    /// Deactivate the contacts the run created (they are never deleted).
    pub deactivate_created: bool,
    pub allow_deactivations: bool,
}

/// A command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Init { path: Option<PathBuf> },
    AuthSet { target: SecretName },
    AuthLogin { target: LoginTarget },
    AuthCheck { tenants: bool },
    TenantsList { unmapped: bool },
    TenantsMap(MapMode),
    TenantsConsent { tenants: Vec<String>, dry_run: bool },
    TenantsHealth,
    Sync(SyncArgs),
    Diff(DiffArgs),
    Runs { run: Option<u64> },
    Undo(UndoArgs),
    Doctor,
    Completions { shell: Shell },
}

// ---------------------------------------------------------------------------------------------------------
// clap definitions

const AFTER_HELP: &str = "\
Exit codes: 0 success (diff --detailed-exitcode: no changes), 1 error, 2 changes pending \
(diff --detailed-exitcode only), 3 a safety guard held changes back, 130/143 stopped by SIGINT/SIGTERM.
Config: --config, else $CSP_SYNC_CONFIG, else ./csp-sync.toml, else the user's config directory.";

#[derive(Debug, Parser)]
#[command(
    name = "csp-sync",
    version,
    about = "Keep HaloPSA in step with a Microsoft CSP partner's customers, users, licences and devices",
    after_help = AFTER_HELP,
    propagate_version = true
)]
struct RawCli {
    #[arg(
        short = 'c',
        long,
        global = true,
        help_heading = "Global options",
        value_name = "PATH",
        help = "Config file [default: $CSP_SYNC_CONFIG, ./csp-sync.toml, then the user's config directory]"
    )]
    config: Option<PathBuf>,

    /// Output format on stdout [default: table on a terminal, json otherwise]
    #[arg(
        short = 'o',
        long,
        global = true,
        help_heading = "Global options",
        value_enum,
        value_name = "FORMAT"
    )]
    output: Option<OutputFormat>,

    /// More logging on stderr: -v info, -vv debug, -vvv trace
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, global = true,
        help_heading = "Global options", conflicts_with = "quiet")]
    verbose: u8,

    /// Only errors on stderr
    #[arg(short = 'q', long, global = true, help_heading = "Global options")]
    quiet: bool,

    /// Log line format on stderr
    #[arg(long, global = true,
        help_heading = "Global options", value_enum, default_value_t = LogFormat::Text, value_name = "FORMAT")]
    log_format: LogFormat,

    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_enum,
        default_value_t = ColorChoice::Auto,
        value_name = "WHEN",
        help = "Colour in output (NO_COLOR is honoured with auto)"
    )]
    color: ColorChoice,

    /// No progress bars (they are only ever drawn on a terminal)
    #[arg(long, global = true, help_heading = "Global options")]
    no_progress: bool,

    /// With -o table: every changed field of a plan on its own line (default: one line per change)
    #[arg(long, global = true, help_heading = "Global options")]
    wide: bool,

    /// With sync and diff: write the run's figures to this file in Prometheus text format (for
    /// node_exporter's textfile collector), atomically
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "PATH"
    )]
    metrics_file: Option<PathBuf>,

    #[command(subcommand)]
    command: RawCommand,
}

#[derive(Debug, Subcommand)]
enum RawCommand {
    /// Write a commented starter config file
    Init {
        /// Where to write it
        #[arg(value_name = "PATH")]
        path: Option<PathBuf>,
    },
    /// Credentials: store secrets, get refresh tokens, check tokens
    #[command(subcommand)]
    Auth(RawAuth),
    /// Partner Center customers and their mapping to Halo clients
    #[command(subcommand)]
    Tenants(RawTenants),
    /// Plan and apply changes to Halo
    Sync(RawSync),
    /// Show the changes a sync would make, without writing anything
    Diff(RawDiff),
    /// The journal of applied runs, newest first; with RUN, that run's changes
    Runs {
        /// A run number (from `csp-sync runs`)
        #[arg(value_name = "RUN")]
        run: Option<u64>,
    },
    /// Take back one run's deactivations, reactivations and field changes where Halo still holds what it wrote
    Undo {
        /// The run number (from `csp-sync runs`)
        #[arg(value_name = "RUN")]
        run: u64,
        /// Show the inverse plan and write nothing
        #[arg(long)]
        dry_run: bool,
        /// Also deactivate the contacts the run created (records are never deleted)
        #[arg(long)]
        deactivate_created: bool,
        /// Apply deactivations that the safety guard would hold back
        #[arg(long)]
        allow_deactivations: bool,
    },
    /// Check every credential, permission, GDAP role and config value a sync needs, in set-up order
    Doctor,
    /// Print a shell completion script on stdout
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SetTarget {
    PartnerCenter,
    PartnerCenterRefreshToken,
    Graph,
    GraphRefreshToken,
    Halo,
}

impl SetTarget {
    fn secret(self) -> SecretName {
        match self {
            SetTarget::PartnerCenter => SecretName::PartnerCenterClientSecret,
            SetTarget::PartnerCenterRefreshToken => SecretName::PartnerCenterRefreshToken,
            SetTarget::Graph => SecretName::GraphClientSecret,
            SetTarget::GraphRefreshToken => SecretName::GraphRefreshToken,
            SetTarget::Halo => SecretName::HaloClientSecret,
        }
    }
}

#[derive(Debug, Subcommand)]
enum RawAuth {
    /// Store a secret in the OS keyring (read from a hidden prompt, or one line of stdin)
    Set {
        #[arg(value_enum)]
        target: SetTarget,
    },
    /// Get a refresh token once, interactively (device code), and store it like `auth set`
    Login {
        #[arg(value_enum)]
        target: LoginTarget,
    },
    /// Get every token once and say which work
    Check {
        /// Also get a token for each mapped customer tenant
        #[arg(long)]
        tenants: bool,
    },
}

#[derive(Debug, Subcommand)]
enum RawTenants {
    /// Partner Center customers with their mapping state and Halo client
    List {
        /// Only customers without a [[tenant]] entry
        #[arg(long)]
        unmapped: bool,
    },
    /// Map customers to Halo clients (interactive without options) and write the config
    Map(RawMap),
    /// Put the Graph app into each customer tenant
    Consent {
        /// Customer id or name (repeatable); default all mapped customers
        #[arg(long = "tenant", value_name = "ID|NAME")]
        tenants: Vec<String>,
        /// Show what would be done without doing it
        #[arg(long)]
        dry_run: bool,
    },
    /// GDAP relationships per customer: roles, status, end date, auto-extend
    Health,
}

#[derive(Debug, Args)]
struct RawMap {
    /// The Partner Center customer id to map (non-interactive)
    #[arg(long, value_name = "ID", value_parser = parse_guid, conflicts_with = "suggest")]
    customer: Option<String>,
    /// The Halo client id to map it to
    #[arg(long, value_name = "HALO_ID", value_parser = clap::value_parser!(i64).range(1..), requires = "customer", conflicts_with = "skip")]
    client: Option<i64>,
    /// The Halo site for new contacts (default: the client's main site)
    #[arg(long, value_name = "ID", value_parser = clap::value_parser!(i64).range(1..), requires = "client", conflicts_with = "skip")]
    site: Option<i64>,
    /// Mark the customer as known and deliberately not synced
    #[arg(long, requires = "customer")]
    skip: bool,
    /// Print evidence-based suggestions for the unmapped customers
    #[arg(long)]
    suggest: bool,
    /// With --suggest: write the unambiguous suggestions to the config
    #[arg(long, requires = "suggest")]
    accept_exact: bool,
}

#[derive(Debug, Args)]
struct RawSync {
    /// Modules to run (licenses is an alias of licences) [default: [sync] modules]
    #[arg(value_name = "MODULE", value_parser = ModuleParser, value_delimiter = ',')]
    modules: Vec<Module>,
    /// Modules as a comma-separated list (same as the positional form)
    #[arg(long = "modules", value_name = "a,b", value_parser = ModuleParser, value_delimiter = ',')]
    modules_flag: Vec<Module>,
    /// Customer id or name (repeatable); default every mapped customer
    #[arg(long = "tenant", value_name = "ID|NAME")]
    tenants: Vec<String>,
    /// Print what would change (exactly what `diff` prints) and write nothing
    #[arg(long, conflicts_with = "plan")]
    dry_run: bool,
    /// Apply exactly this saved plan (from `diff --out`)
    #[arg(long, value_name = "FILE")]
    plan: Option<PathBuf>,
    /// Apply deactivations that the safety guard would hold back
    #[arg(long)]
    allow_deactivations: bool,
    /// Billing: bill this closed period only (YYYY-MM)
    #[arg(long, value_name = "YYYY-MM", value_parser = parse_period)]
    period: Option<String>,
}

#[derive(Debug, Args)]
struct RawDiff {
    /// Modules to run (licenses is an alias of licences) [default: [sync] modules]
    #[arg(value_name = "MODULE", value_parser = ModuleParser, value_delimiter = ',')]
    modules: Vec<Module>,
    /// Modules as a comma-separated list (same as the positional form)
    #[arg(long = "modules", value_name = "a,b", value_parser = ModuleParser, value_delimiter = ',')]
    modules_flag: Vec<Module>,
    /// Customer id or name (repeatable); default every mapped customer
    #[arg(long = "tenant", value_name = "ID|NAME")]
    tenants: Vec<String>,
    /// Save the plan to this file for `sync --plan`
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Exit 2 when changes are pending (3 when a guard would hold some back), 0 when none
    #[arg(long)]
    detailed_exitcode: bool,
}

fn parse_period(s: &str) -> Result<String, String> {
    let s = s.trim();
    if crate::config::is_month(s) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a month: write it as YYYY-MM, e.g. 2026-10"
        ))
    }
}

/// Module names for clap: parsed by [`parse_module`] (its message for an unknown name), and listed as
/// possible values so `--help` and the shell completions offer them (`licenses` as a hidden alias).
#[derive(Debug, Clone, Copy)]
struct ModuleParser;

impl clap::builder::TypedValueParser for ModuleParser {
    type Value = Module;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Module, clap::Error> {
        let parse: fn(&str) -> Result<Module, String> = parse_module;
        parse.parse_ref(cmd, arg, value)
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(Module::ALL.iter().map(|m| {
            let v = clap::builder::PossibleValue::new(m.as_str());
            if *m == Module::Licences {
                v.alias("licenses")
            } else {
                v
            }
        })))
    }
}

fn parse_module(s: &str) -> Result<Module, String> {
    Module::parse(s).ok_or_else(|| {
        format!("unknown module {s:?}; modules are tenants, users, licences (alias licenses), assets, billing")
    })
}

fn parse_guid(s: &str) -> Result<String, String> {
    let t = s.trim();
    if crate::config::is_guid(t) {
        Ok(t.to_ascii_lowercase())
    } else {
        Err(format!(
            "{s:?} is not a customer id (a GUID like 11111111-2222-3333-4444-555555555555)"
        ))
    }
}

fn merge_modules(a: Vec<Module>, b: Vec<Module>) -> Vec<Module> {
    let mut out = Vec::new();
    for m in a.into_iter().chain(b) {
        if !out.contains(&m) {
            out.push(m);
        }
    }
    out
}

impl From<RawCli> for Cli {
    fn from(raw: RawCli) -> Cli {
        let verbosity = if raw.quiet {
            -1
        } else {
            raw.verbose.min(3) as i8
        };
        let command = match raw.command {
            RawCommand::Init { path } => Command::Init { path },
            RawCommand::Auth(RawAuth::Set { target }) => Command::AuthSet {
                target: target.secret(),
            },
            RawCommand::Auth(RawAuth::Login { target }) => Command::AuthLogin { target },
            RawCommand::Auth(RawAuth::Check { tenants }) => Command::AuthCheck { tenants },
            RawCommand::Tenants(RawTenants::List { unmapped }) => Command::TenantsList { unmapped },
            RawCommand::Tenants(RawTenants::Map(m)) => Command::TenantsMap(match m {
                RawMap {
                    customer: Some(customer_id),
                    client: Some(halo_client_id),
                    site,
                    ..
                } => MapMode::Set {
                    customer_id,
                    edit: MappingEdit::Client {
                        halo_client_id,
                        halo_site_id: site,
                    },
                },
                RawMap {
                    customer: Some(customer_id),
                    ..
                } => MapMode::Set {
                    customer_id,
                    edit: MappingEdit::Skip,
                },
                RawMap {
                    suggest: true,
                    accept_exact,
                    ..
                } => MapMode::Suggest { accept_exact },
                RawMap { .. } => MapMode::Interactive,
            }),
            RawCommand::Tenants(RawTenants::Consent { tenants, dry_run }) => {
                Command::TenantsConsent { tenants, dry_run }
            }
            RawCommand::Tenants(RawTenants::Health) => Command::TenantsHealth,
            RawCommand::Sync(s) => Command::Sync(SyncArgs {
                modules: merge_modules(s.modules, s.modules_flag),
                tenants: s.tenants,
                dry_run: s.dry_run,
                plan: s.plan,
                allow_deactivations: s.allow_deactivations,
                period: s.period,
            }),
            RawCommand::Diff(d) => Command::Diff(DiffArgs {
                modules: merge_modules(d.modules, d.modules_flag),
                tenants: d.tenants,
                out: d.out,
                detailed_exitcode: d.detailed_exitcode,
            }),
            RawCommand::Runs { run } => Command::Runs { run },
            RawCommand::Undo {
                run,
                dry_run,
                deactivate_created,
                allow_deactivations,
            } => Command::Undo(UndoArgs {
                run,
                dry_run,
                deactivate_created,
                allow_deactivations,
            }),
            RawCommand::Doctor => Command::Doctor,
            RawCommand::Completions { shell } => Command::Completions { shell },
        };
        Cli {
            config: raw.config,
            output: raw.output,
            verbosity,
            log_format: raw.log_format,
            color: raw.color,
            no_progress: raw.no_progress,
            wide: raw.wide,
            metrics_file: raw.metrics_file,
            command,
        }
    }
}

/// The clap command (for completions and help).
pub fn command() -> clap::Command {
    RawCli::command()
}

/// Parses arguments (the first is the program name). On error, print it with `err.print()` (or
/// `err.to_string()`) and exit with [`exit_code_for`].
pub fn parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut cmd = command();
    let matches = cmd.try_get_matches_from_mut(args)?;
    let raw = RawCli::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))?;
    // `--customer` alone is not a complete non-interactive mapping.
    if let RawCommand::Tenants(RawTenants::Map(m)) = &raw.command
        && m.customer.is_some()
        && m.client.is_none()
        && !m.skip
    {
        let map = cmd
            .find_subcommand_mut("tenants")
            .and_then(|t| t.find_subcommand_mut("map"));
        let cmd = match map {
            Some(map) => map,
            None => &mut cmd,
        };
        return Err(cmd.error(
            clap::error::ErrorKind::MissingRequiredArgument,
            "tenants map --customer needs --client HALO_ID (optionally --site ID) or --skip",
        ));
    }
    if raw.metrics_file.is_some()
        && !matches!(raw.command, RawCommand::Sync(_) | RawCommand::Diff(_))
    {
        return Err(cmd.error(
            clap::error::ErrorKind::ArgumentConflict,
            "--metrics-file goes with sync and diff only",
        ));
    }
    Ok(raw.into())
}

/// The process exit code for a clap error: 0 for `--help`/`--version`, 1 for every usage error (never
/// clap's 2, which csp-sync reserves for "changes pending").
pub fn exit_code_for(err: &clap::Error) -> u8 {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
        _ => 1,
    }
}

/// Whether a clap error is help or version output (print to stdout) rather than a usage error (stderr).
pub fn is_informational(err: &clap::Error) -> bool {
    exit_code_for(err) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &str) -> Result<Cli, clap::Error> {
        parse_args(std::iter::once("csp-sync").chain(args.split_whitespace()))
    }

    fn cmd(args: &str) -> Command {
        parse(args)
            .unwrap_or_else(|e| panic!("{args}: {e}"))
            .command
    }

    #[test]
    fn clap_definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn positional_and_flag_modules_are_the_same() {
        let positional = cmd("sync users licences");
        assert_eq!(positional, cmd("sync --modules users,licences"));
        assert_eq!(positional, cmd("sync users --modules licenses"));
        assert_eq!(positional, cmd("sync users,licenses"));
        let Command::Sync(s) = positional else {
            panic!()
        };
        assert_eq!(s.modules, vec![Module::Users, Module::Licences]);
        let Command::Diff(d) =
            cmd("diff licenses assets --tenant Acme --tenant x --out p.json --detailed-exitcode")
        else {
            panic!()
        };
        assert_eq!(d.modules, vec![Module::Licences, Module::Assets]);
        assert_eq!(d.tenants, vec!["Acme", "x"]);
        assert_eq!(d.out, Some(PathBuf::from("p.json")));
        assert!(d.detailed_exitcode);
    }

    #[test]
    fn no_modules_means_config_default() {
        let Command::Sync(s) = cmd("sync --dry-run") else {
            panic!()
        };
        assert!(s.modules.is_empty() && s.dry_run);
    }

    #[test]
    fn unknown_module_is_a_usage_error_exit_1() {
        let e = parse("sync usres").unwrap_err();
        assert_eq!(exit_code_for(&e), 1);
        assert!(e.to_string().contains("unknown module \"usres\""), "{e}");
    }

    #[test]
    fn help_and_version_exit_0_usage_errors_exit_1() {
        assert_eq!(exit_code_for(&parse("--help").unwrap_err()), 0);
        assert_eq!(exit_code_for(&parse("sync --help").unwrap_err()), 0);
        assert_eq!(exit_code_for(&parse("--version").unwrap_err()), 0);
        assert_eq!(exit_code_for(&parse("").unwrap_err()), 1);
        assert_eq!(exit_code_for(&parse("frobnicate").unwrap_err()), 1);
        assert_eq!(exit_code_for(&parse("diff --bogus").unwrap_err()), 1);
        assert_eq!(exit_code_for(&parse("-o yaml diff").unwrap_err()), 1);
    }

    #[test]
    fn global_flags() {
        let c =
            parse("-c x.toml -o markdown -vv --log-format json --color never --no-progress diff")
                .unwrap();
        assert_eq!(c.config, Some(PathBuf::from("x.toml")));
        assert_eq!(c.output, Some(OutputFormat::Markdown));
        assert_eq!(c.verbosity, 2);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.color, ColorChoice::Never);
        assert!(c.no_progress);
        // Global flags also work after the command.
        let c = parse("diff -q --config y.toml").unwrap();
        assert_eq!(c.verbosity, -1);
        assert_eq!(c.config, Some(PathBuf::from("y.toml")));
        assert_eq!(parse("diff -vvvvv").unwrap().verbosity, 3);
        assert_eq!(parse("diff").unwrap().output, None);
        assert_eq!(exit_code_for(&parse("diff -q -v").unwrap_err()), 1);
    }

    #[test]
    fn output_and_colour_resolution() {
        assert_eq!(OutputFormat::resolve(None, true), OutputFormat::Table);
        assert_eq!(OutputFormat::resolve(None, false), OutputFormat::Json);
        assert_eq!(
            OutputFormat::resolve(Some(OutputFormat::Markdown), true),
            OutputFormat::Markdown
        );
        assert!(ColorChoice::Auto.enabled(true, None));
        assert!(!ColorChoice::Auto.enabled(true, Some("1")));
        assert!(ColorChoice::Auto.enabled(true, Some("")));
        assert!(!ColorChoice::Auto.enabled(false, None));
        assert!(ColorChoice::Always.enabled(false, Some("1")));
    }

    #[test]
    fn auth_commands() {
        assert_eq!(
            cmd("auth set partner-center-refresh-token"),
            Command::AuthSet {
                target: SecretName::PartnerCenterRefreshToken
            }
        );
        assert_eq!(
            cmd("auth set halo"),
            Command::AuthSet {
                target: SecretName::HaloClientSecret
            }
        );
        assert!(parse("auth set nope").is_err());
        assert_eq!(
            cmd("auth login graph"),
            Command::AuthLogin {
                target: LoginTarget::Graph
            }
        );
        assert!(parse("auth login halo").is_err());
        assert_eq!(
            cmd("auth check --tenants"),
            Command::AuthCheck { tenants: true }
        );
    }

    #[test]
    fn tenants_map_modes() {
        assert_eq!(
            cmd("tenants map"),
            Command::TenantsMap(MapMode::Interactive)
        );
        assert_eq!(
            cmd("tenants map --customer AAAAAAAA-0000-0000-0000-000000000001 --client 42 --site 7"),
            Command::TenantsMap(MapMode::Set {
                customer_id: "aaaaaaaa-0000-0000-0000-000000000001".into(),
                edit: MappingEdit::Client {
                    halo_client_id: 42,
                    halo_site_id: Some(7)
                }
            })
        );
        assert_eq!(
            cmd("tenants map --customer aaaaaaaa-0000-0000-0000-000000000001 --skip"),
            Command::TenantsMap(MapMode::Set {
                customer_id: "aaaaaaaa-0000-0000-0000-000000000001".into(),
                edit: MappingEdit::Skip
            })
        );
        assert_eq!(
            cmd("tenants map --suggest --accept-exact"),
            Command::TenantsMap(MapMode::Suggest { accept_exact: true })
        );
        for bad in [
            "tenants map --customer aaaaaaaa-0000-0000-0000-000000000001",
            "tenants map --customer aaaaaaaa-0000-0000-0000-000000000001 --client 1 --skip",
            "tenants map --customer not-a-guid --client 1",
            "tenants map --client 1",
            "tenants map --accept-exact",
            "tenants map --suggest --customer aaaaaaaa-0000-0000-0000-000000000001 --skip",
            "tenants map --customer aaaaaaaa-0000-0000-0000-000000000001 --skip --site 3",
            "tenants map --customer aaaaaaaa-0000-0000-0000-000000000001 --client 0",
        ] {
            let e = parse(bad).expect_err(bad);
            assert_eq!(exit_code_for(&e), 1, "{bad}");
        }
    }

    #[test]
    fn other_commands() {
        assert_eq!(cmd("init"), Command::Init { path: None });
        assert_eq!(
            cmd("init /tmp/x.toml"),
            Command::Init {
                path: Some(PathBuf::from("/tmp/x.toml"))
            }
        );
        assert_eq!(
            cmd("tenants list --unmapped"),
            Command::TenantsList { unmapped: true }
        );
        assert_eq!(
            cmd("tenants consent --tenant a --tenant b --dry-run"),
            Command::TenantsConsent {
                tenants: vec!["a".into(), "b".into()],
                dry_run: true
            }
        );
        assert_eq!(cmd("tenants health"), Command::TenantsHealth);
        assert_eq!(
            cmd("completions powershell"),
            Command::Completions {
                shell: Shell::PowerShell
            }
        );
        assert!(parse("completions elvish").is_err());
        let Command::Sync(s) = cmd("sync --plan p.json --allow-deactivations --tenant Acme") else {
            panic!()
        };
        assert_eq!(s.plan, Some(PathBuf::from("p.json")));
        assert!(s.allow_deactivations && !s.dry_run);
        assert_eq!(s.tenants, vec!["Acme"]);
        assert!(parse("sync --plan p.json --dry-run").is_err());
    }
}
