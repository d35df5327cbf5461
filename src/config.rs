//! The configuration file (SPEC section 4): locating it, reading it into plain typed values that nothing
//! else needs to re-check, and writing tenant mappings back without losing comments or layout.
//!
//! Parsing walks a `toml_edit::Document` by hand instead of deriving serde types: that way every error can
//! name the file, line, column and key path, unknown keys can be reported with the closest known key, and a
//! secret-looking key anywhere in the file is refused with a pointer to where secrets belong.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};

use regex::Regex;
use toml_edit::{Item, TableLike, Value};

use crate::bounded;
use crate::plan::Module;
use crate::secrets::SecretName;

/// The commented starter configuration written by `csp-sync init`.
pub const EXAMPLE: &str = include_str!("../csp-sync.example.toml");

/// The file name looked for in the working directory and the user's config directory.
pub const FILE_NAME: &str = "csp-sync.toml";

/// The environment variable that names the config file.
pub const CONFIG_ENV: &str = "CSP_SYNC_CONFIG";

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this configuration was read from.
    pub path: PathBuf,
    pub partner_center: PartnerCenterConfig,
    pub graph: GraphConfig,
    pub halo: HaloConfig,
    pub microsoft: MicrosoftConfig,
    pub sync: SyncConfig,
    pub safety: SafetyConfig,
    pub users: UsersConfig,
    pub licences: LicencesConfig,
    pub assets: AssetsConfig,
    pub billing: BillingConfig,
    pub tenants: Vec<TenantEntry>,
}

impl Config {
    /// The `[[tenant]]` entry of a customer (ids compare case-insensitively).
    pub fn tenant(&self, customer_id: &str) -> Option<&TenantEntry> {
        self.tenants
            .iter()
            .find(|t| t.customer_id.eq_ignore_ascii_case(customer_id))
    }
}

/// `[partner_center]`: the partner's own tenant and its Partner Center app. GUIDs are lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerCenterConfig {
    pub tenant_id: String,
    pub client_id: String,
}

/// How Graph tokens for customer tenants are obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphAuth {
    /// Client credentials at each customer tenant (the app is consented there).
    App,
    /// The partner's refresh token redeemed at each customer tenant (GDAP).
    Delegated,
}

/// `[graph]`: the multi-tenant app used in each customer tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphConfig {
    pub client_id: String,
    pub auth: GraphAuth,
}

/// A rolling-window request limit: at most `requests` in any `per_seconds` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub per_seconds: u32,
}

/// `[users] contract_mode`: what `contract_skus` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContractMode {
    /// Only users holding a contract SKU are synced; the others are left out or deactivated like leavers.
    #[default]
    Scope,
    /// Every in-scope user is synced and flagged: covered by the contract or not.
    Flag,
}

impl ContractMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ContractMode::Scope => "scope",
            ContractMode::Flag => "flag",
        }
    }
}

/// How Halo entities are read in bulk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkRead {
    /// Paged API reads.
    Api,
    /// One SQL report per entity (needs reporting rights).
    Report,
}

/// `[halo]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaloConfig {
    /// Base URL without a trailing slash.
    pub url: String,
    /// `{url}/api`.
    pub api_url: String,
    /// `{auth_url}/token`, or `{url}/auth/token` when `auth_url` is not set.
    pub token_url: String,
    /// Hosted Halo only: sent as `?tenant=` on the token request.
    pub tenant: Option<String>,
    /// The Halo API application's client id (lower-case GUID).
    pub client_id: String,
    pub scope: String,
    pub rate_limit: RateLimit,
    pub bulk_read: BulkRead,
    pub fire_automations: bool,
}

/// A Microsoft cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    Global,
    UsGovHigh,
    UsGovDod,
    China,
}

impl Cloud {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Cloud::Global => "global",
            Cloud::UsGovHigh => "usgov-high",
            Cloud::UsGovDod => "usgov-dod",
            Cloud::China => "china",
        }
    }

    /// Parses a config-file cloud name.
    pub fn parse(name: &str) -> Option<Cloud> {
        match name {
            "global" => Some(Cloud::Global),
            "usgov-high" => Some(Cloud::UsGovHigh),
            "usgov-dod" => Some(Cloud::UsGovDod),
            "china" => Some(Cloud::China),
            _ => None,
        }
    }

    /// Microsoft identity platform authority host (reference/microsoft-apis.md 1.9).
    pub fn login_url(self) -> &'static str {
        match self {
            Cloud::Global => "https://login.microsoftonline.com",
            Cloud::UsGovHigh | Cloud::UsGovDod => "https://login.microsoftonline.us",
            Cloud::China => "https://login.partner.microsoftonline.cn",
        }
    }

    /// Microsoft Graph host; it is also the token audience (`{graph}/.default`).
    pub fn graph_url(self) -> &'static str {
        match self {
            Cloud::Global => "https://graph.microsoft.com",
            Cloud::UsGovHigh => "https://graph.microsoft.us",
            Cloud::UsGovDod => "https://dod-graph.microsoft.us",
            Cloud::China => "https://microsoftgraph.chinacloudapi.cn",
        }
    }

    /// Partner Center REST host. US Government clouds use the global host (reference 1.9).
    pub fn partner_center_url(self) -> &'static str {
        match self {
            Cloud::Global | Cloud::UsGovHigh | Cloud::UsGovDod => {
                "https://api.partnercenter.microsoft.com"
            }
            Cloud::China => "https://partner.partnercenterapi.microsoftonline.cn",
        }
    }

    /// The Partner Center token audience. For China the reference only documents the REST host; samples
    /// that work against 21Vianet use that host as the resource too, so we do the same (medium confidence).
    pub fn partner_center_resource(self) -> &'static str {
        self.partner_center_url()
    }
}

/// `[microsoft]`: endpoints resolved from the cloud unless overridden (no trailing slash). The resources
/// (token audiences) stay the real cloud values even when the URLs point at an emulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MicrosoftConfig {
    pub cloud: Cloud,
    pub login_url: String,
    pub graph_url: String,
    pub partner_center_url: String,
    /// Graph token audience, e.g. `https://graph.microsoft.com`.
    pub graph_scope_resource: String,
    /// Partner Center token audience, e.g. `https://api.partnercenter.microsoft.com`.
    pub partner_center_resource: String,
}

/// `[sync]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncConfig {
    /// Modules run by `sync` without module arguments (deduplicated, in the order given).
    pub modules: Vec<Module>,
    pub auto_create_clients: bool,
    /// Customer tenants worked on at once (at least 1).
    pub concurrency: usize,
    /// Resolved relative to the config file's directory.
    pub state_dir: PathBuf,
}

/// `[safety]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SafetyConfig {
    pub max_deactivations: u32,
    /// 0 to 100.
    pub max_deactivation_percent: f64,
    pub empty_source_guard: bool,
}

/// `[users]`. Regular expressions are compiled case-insensitive.
#[derive(Debug, Clone)]
pub struct UsersConfig {
    pub include_guests: bool,
    pub require_licence: bool,
    /// skuPartNumbers or skuIds (as written).
    pub contract_skus: Vec<String>,
    /// What `contract_skus` does: limit the scope, or flag each user.
    pub contract_mode: ContractMode,
    /// With `contract_mode = "flag"`: the user custom field id the flag is written to, instead of
    /// `covered_by_contract`.
    pub contract_field: Option<i64>,
    pub exclude_upn: Vec<Regex>,
    pub leaver_grace_days: u32,
    pub protect: Vec<Regex>,
    pub welcome_email: bool,
    pub delta: bool,
}

/// `[licences]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicencesConfig {
    pub exclude_skus: Vec<String>,
    /// skuPartNumber -> display name overrides.
    pub names: BTreeMap<String, String>,
}

/// `[assets]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetsConfig {
    /// Lower-cased Intune `operatingSystem` -> Halo asset type id; key `default` for the rest.
    pub asset_types: BTreeMap<String, i64>,
    /// Intune property name -> Halo asset field id.
    pub fields: BTreeMap<String, i64>,
    pub stale_after_days: u32,
    /// Link each asset to the Halo user of its Intune primary user.
    pub link_users: bool,
}

/// The Intune properties `[assets] fields` may map (Graph `managedDevice` names, as selected).
pub const ASSET_FIELD_PROPERTIES: &[&str] = &[
    "serialNumber",
    "model",
    "manufacturer",
    "osVersion",
    "operatingSystem",
    "deviceName",
    "managedDeviceName",
    "complianceState",
    "enrolledDateTime",
    "lastSyncDateTime",
    "managedDeviceOwnerType",
    "userPrincipalName",
    "userDisplayName",
    "emailAddress",
    "azureADDeviceId",
    "imei",
    "wiFiMacAddress",
    "totalStorageSpaceInBytes",
];

impl AssetsConfig {
    /// The Halo asset type for an Intune `operatingSystem` (case-insensitive), else `default`.
    pub fn asset_type_for(&self, operating_system: &str) -> Option<i64> {
        self.asset_types
            .get(&operating_system.trim().to_lowercase())
            .or_else(|| self.asset_types.get("default"))
            .copied()
    }
}

/// `[billing]`.
#[derive(Debug, Clone, PartialEq)]
pub struct BillingConfig {
    pub markup_percent: f64,
    /// Meter category -> markup percent, overriding `markup_percent`.
    pub markup: BTreeMap<String, f64>,
    /// ISO 4217 code, upper-case.
    pub currency: String,
    /// `YYYY-MM`: the first period ever billed.
    pub since: Option<String>,
    /// `YYYY-MM` from `sync billing --period` (not a config key): bill that period only.
    pub period: Option<String>,
    /// Whether this run reads the open period's estimate (not a config key): `diff` only, the command
    /// that shows it (SPEC 7); `sync` never writes it and does not read it.
    pub estimate: bool,
}

/// Whether `s` is a `YYYY-MM` month.
pub fn is_month(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 7
        && b[4] == b'-'
        && b[..4].iter().chain(&b[5..]).all(u8::is_ascii_digit)
        && matches!(s[5..].parse::<u8>(), Ok(1..=12))
}

/// One `[[tenant]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantEntry {
    /// Lower-case GUID.
    pub customer_id: String,
    pub name: Option<String>,
    /// Always set unless `skip`.
    pub halo_client_id: Option<i64>,
    pub halo_site_id: Option<i64>,
    pub modules: Option<Vec<Module>>,
    pub skip: bool,
    /// 1-based line of the entry's `[[tenant]]` header (or of its first key).
    pub line: usize,
}

/// A configuration problem. Display: `<file>:<line>:<col>: <key path>: <problem> (<what to do>)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A problem at a place in the file.
    At {
        file: String,
        line: usize,
        col: usize,
        key: String,
        problem: String,
        hint: Option<String>,
    },
    /// A problem with the file as a whole (missing, unreadable, unwritable).
    File {
        file: String,
        problem: String,
        hint: Option<String>,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::At {
                file,
                line,
                col,
                key,
                problem,
                hint,
            } => {
                write!(f, "{file}:{line}:{col}: ")?;
                if !key.is_empty() {
                    write!(f, "{key}: ")?;
                }
                f.write_str(problem)?;
                if let Some(hint) = hint {
                    write!(f, " ({hint})")?;
                }
                Ok(())
            }
            ConfigError::File {
                file,
                problem,
                hint,
            } => {
                write!(f, "{file}: {problem}")?;
                if let Some(hint) = hint {
                    write!(f, " ({hint})")?;
                }
                Ok(())
            }
        }
    }
}

impl ConfigError {
    /// The line of the problem, when it has one.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::At { line, .. } => Some(*line),
            ConfigError::File { .. } => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Locating and loading

/// Finds the config file (SPEC section 2): `--config`, else `$CSP_SYNC_CONFIG`, else `./csp-sync.toml`,
/// else the user's config dir (`~/.config/csp-sync/csp-sync.toml` on Linux).
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, ConfigError> {
    let user_dir = directories::ProjectDirs::from("", "", "csp-sync")
        .map(|dirs| dirs.config_dir().join(FILE_NAME));
    locate_with(
        explicit,
        |name| std::env::var_os(name).map(PathBuf::from),
        Path::new("."),
        user_dir.as_deref(),
    )
}

/// [`locate`] with its environment injected: `env` looks up a variable, `cwd` is the working directory,
/// `user_file` the file in the user's config directory (if there is one on this platform).
pub fn locate_with(
    explicit: Option<&Path>,
    env: impl Fn(&str) -> Option<PathBuf>,
    cwd: &Path,
    user_file: Option<&Path>,
) -> Result<PathBuf, ConfigError> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    if let Some(path) = env(CONFIG_ENV).filter(|p| !p.as_os_str().is_empty()) {
        return Ok(path);
    }
    let local = cwd.join(FILE_NAME);
    if local.is_file() {
        return Ok(if cwd == Path::new(".") {
            PathBuf::from(FILE_NAME)
        } else {
            local
        });
    }
    if let Some(user_file) = user_file
        && user_file.is_file()
    {
        return Ok(user_file.to_path_buf());
    }
    let mut searched = vec![format!("./{FILE_NAME}")];
    if let Some(user_file) = user_file {
        searched.push(user_file.display().to_string());
    }
    Err(ConfigError::File {
        file: FILE_NAME.into(),
        problem: format!(
            "no config file found (looked at --config, ${CONFIG_ENV}, {})",
            searched.join(", ")
        ),
        hint: Some(
            "create one with `csp-sync init`, or point to one with --config or CSP_SYNC_CONFIG"
                .into(),
        ),
    })
}

/// Reads and validates the config file at `path` (at most [`bounded::CONFIG_BYTES`]), refusing the
/// example's placeholder values.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = bounded::read_to_string(path, bounded::CONFIG_BYTES).map_err(|e| {
        let file = path.display().to_string();
        if e.is_not_found() {
            ConfigError::File {
                file,
                problem: "no such file".into(),
                hint: Some(format!(
                    "create one with `csp-sync init {}` and fill it in",
                    path.display()
                )),
            }
        } else {
            ConfigError::File {
                file,
                problem: format!("cannot read it: {e}"),
                hint: Some("check the path; a config file is a small TOML text file".into()),
            }
        }
    })?;
    let config = parse(path, &text)?;
    refuse_placeholders(&config)?;
    Ok(config)
}

/// The example's placeholder values (SPEC section 4): `init` writes them, and a config that still holds
/// them would send a real secret to someone else's Halo or ask Microsoft for an app that is not yours.
/// Customer ids are never refused.
const PLACEHOLDER_GUIDS: &[&str] = &[
    "11111111-1111-1111-1111-111111111111",
    "22222222-2222-2222-2222-222222222222",
    "33333333-3333-3333-3333-333333333333",
    "44444444-4444-4444-4444-444444444444",
];
const PLACEHOLDER_HOST: &str = "acme.halopsa.com";

/// The keys of `config` still holding one of the example's placeholders.
pub fn placeholder_keys(config: &Config) -> Vec<&'static str> {
    let guid = |v: &str| PLACEHOLDER_GUIDS.contains(&v);
    let host = |url: &str| url_host(url).is_some_and(|h| h.eq_ignore_ascii_case(PLACEHOLDER_HOST));
    let mut keys = Vec::new();
    if guid(&config.partner_center.tenant_id) {
        keys.push("partner_center.tenant_id");
    }
    if guid(&config.partner_center.client_id) {
        keys.push("partner_center.client_id");
    }
    if guid(&config.graph.client_id) {
        keys.push("graph.client_id");
    }
    if host(&config.halo.url) {
        keys.push("halo.url");
    }
    if host(&config.halo.token_url) && !host(&config.halo.url) {
        keys.push("halo.auth_url");
    }
    if guid(&config.halo.client_id) {
        keys.push("halo.client_id");
    }
    keys
}

fn refuse_placeholders(config: &Config) -> Result<(), ConfigError> {
    let keys = placeholder_keys(config);
    if keys.is_empty() {
        return Ok(());
    }
    Err(ConfigError::File {
        file: config.path.display().to_string(),
        problem: format!(
            "{} still hold{} the example's placeholder value{}",
            keys.join(", "),
            if keys.len() == 1 { "s" } else { "" },
            if keys.len() == 1 { "" } else { "s" },
        ),
        hint: Some(
            "fill in your own values: the partner tenant id and the app client ids from Entra \
             (App registrations), your Halo URL and the client id of its API application"
                .into(),
        ),
    })
}

/// The host of an `http(s)://` URL, without user info, port or brackets.
pub fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    (!host.is_empty()).then_some(host)
}

/// Whether a host is the local machine (`localhost`, `127.0.0.0/8`, `::1`): the only hosts `http://` is
/// accepted for (SPEC section 4, the emulator).
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

// ---------------------------------------------------------------------------------------------------------
// Parsing

/// Where the text came from: turns byte spans into `file:line:col` errors.
struct Src<'a> {
    file: String,
    text: &'a str,
    /// Byte offset of the start of every line: `line_col` is a binary search, so naming the line of each
    /// of 40,000 `[[tenant]]` entries stays linear in the file (counting newlines from the start each time
    /// made loading quadratic).
    line_starts: Vec<usize>,
}

type Span = Option<Range<usize>>;

impl<'a> Src<'a> {
    fn new(file: String, text: &'a str) -> Src<'a> {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Src {
            file,
            text,
            line_starts,
        }
    }

    fn line_col(&self, span: &Span) -> (usize, usize) {
        let Some(span) = span else { return (1, 1) };
        let mut offset = span.start.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let line_start = self.line_starts[line - 1];
        let col = self.text[line_start..offset].chars().count() + 1;
        (line, col)
    }

    fn err(
        &self,
        span: &Span,
        key: &str,
        problem: impl Into<String>,
        hint: Option<String>,
    ) -> ConfigError {
        let (line, col) = self.line_col(span);
        ConfigError::At {
            file: self.file.clone(),
            line,
            col,
            key: key.to_string(),
            problem: problem.into(),
            hint,
        }
    }
}

/// Describes what was found where something else was expected.
fn describe(item: &Item) -> String {
    match item {
        Item::None => "nothing".into(),
        Item::Table(_) => "a table".into(),
        Item::ArrayOfTables(_) => "an array of tables".into(),
        Item::Value(v) => describe_value(v),
    }
}

fn describe_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("the string {:?}", bounded::shorten(s.value(), 60)),
        Value::Integer(i) => format!("the integer {}", i.value()),
        Value::Float(x) => format!("the number {}", x.value()),
        Value::Boolean(b) => format!("the boolean {}", b.value()),
        Value::Datetime(_) => "a date-time".into(),
        Value::Array(_) => "an array".into(),
        Value::InlineTable(_) => "a table".into(),
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The closest known key to an unknown one, when it is close enough to be a likely typo.
fn closest<'k>(unknown: &str, known: &[&'k str]) -> Option<&'k str> {
    let lower = unknown.to_lowercase();
    known
        .iter()
        .map(|k| (*k, strsim::jaro_winkler(&lower, k)))
        .filter(|(k, score)| *score >= 0.8 || strsim::levenshtein(&lower, k) <= 2)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(k, _)| k)
}

/// Whether a key name looks like it holds a secret.
fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase().replace('-', "_");
    k.contains("secret")
        || k.contains("password")
        || k.contains("passwd")
        || k.contains("api_key")
        || k.contains("apikey")
        || k.contains("private_key")
        || k == "token"
        || k.ends_with("_token")
        || k == "bearer"
        || k == "credential"
        || k == "credentials"
}

/// The secret a secret-looking key in a section most likely meant.
fn secret_for(section: &str, key: &str) -> Option<SecretName> {
    let k = key.to_ascii_lowercase();
    let refresh = k.contains("refresh");
    match section {
        "partner_center" if refresh => Some(SecretName::PartnerCenterRefreshToken),
        "partner_center" => Some(SecretName::PartnerCenterClientSecret),
        "graph" if refresh => Some(SecretName::GraphRefreshToken),
        "graph" => Some(SecretName::GraphClientSecret),
        "halo" => Some(SecretName::HaloClientSecret),
        _ => None,
    }
}

/// Refuses any secret-looking key anywhere in the document.
fn check_no_secrets(src: &Src, path: &str, table: &dyn TableLike) -> Result<(), ConfigError> {
    let section = path.split(['.', '[']).next().unwrap_or_default();
    for (key, item) in table.iter() {
        let key_path = join(path, key);
        if is_secret_key(key) {
            let span = table.key(key).and_then(toml_edit::Key::span);
            let hint = match secret_for(section, key) {
                Some(name) => format!(
                    "delete it from the file and provide the value in the environment variable CSP_SYNC_{0}, \
                     in a file named by CSP_SYNC_{0}_FILE, or in the OS keyring with `csp-sync auth set {1}`",
                    name.env_name(),
                    name.keyring_entry()
                ),
                None => "delete it from the file; secrets go in an environment variable CSP_SYNC_<NAME>, \
                     a file named by CSP_SYNC_<NAME>_FILE, or the OS keyring via `csp-sync auth set`"
                    .into(),
            };
            return Err(src.err(
                &span,
                &key_path,
                "secrets are never read from the config file",
                Some(hint),
            ));
        }
        match item {
            Item::Table(t) => check_no_secrets(src, &key_path, t)?,
            Item::ArrayOfTables(a) => {
                for t in a {
                    check_no_secrets(src, &key_path, t)?;
                }
            }
            Item::Value(Value::InlineTable(t)) => check_no_secrets(src, &key_path, t)?,
            Item::Value(Value::Array(a)) => {
                for v in a {
                    if let Value::InlineTable(t) = v {
                        check_no_secrets(src, &key_path, t)?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// One table of the document being read, with its key path and span.
struct Section<'a> {
    src: &'a Src<'a>,
    path: String,
    table: &'a dyn TableLike,
    span: Span,
}

impl<'a> Section<'a> {
    fn key_span(&self, key: &str) -> Span {
        self.table
            .key(key)
            .and_then(toml_edit::Key::span)
            .or_else(|| self.span.clone())
    }

    fn value_span(&self, key: &str, item: &Item) -> Span {
        item.span().or_else(|| self.key_span(key))
    }

    fn key_path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Refuses keys not in `known`, suggesting the closest known one.
    fn check_keys(&self, known: &[&str]) -> Result<(), ConfigError> {
        for (key, _) in self.table.iter() {
            if known.contains(&key) {
                continue;
            }
            let where_ = if self.path.is_empty() {
                "at the top level".to_string()
            } else {
                format!("in [{}]", self.path.split('[').next().unwrap_or_default())
            };
            let hint = match closest(key, known) {
                Some(k) => format!("did you mean `{k}`?"),
                None => format!("known keys: {}", known.join(", ")),
            };
            return Err(self.src.err(
                &self.key_span(key),
                &self.key_path(key),
                format!("unknown key `{key}` {where_}"),
                Some(hint),
            ));
        }
        Ok(())
    }

    fn get(&self, key: &str) -> Option<&'a Item> {
        self.table.get(key).filter(|i| !i.is_none())
    }

    fn type_err(&self, key: &str, item: &Item, expected: &str) -> ConfigError {
        self.src.err(
            &self.value_span(key, item),
            &self.key_path(key),
            format!("expected {expected}, found {}", describe(item)),
            None,
        )
    }

    fn missing(&self, key: &str, example: &str) -> ConfigError {
        let section = if self.path.is_empty() {
            "the file".to_string()
        } else {
            format!("[{}]", self.path.split('[').next().unwrap_or_default())
        };
        self.src.err(
            &self.span,
            &self.key_path(key),
            format!("required key `{key}` is missing"),
            Some(format!("add `{key} = {example}` to {section}")),
        )
    }

    fn sub(&self, key: &str) -> Result<Option<Section<'a>>, ConfigError> {
        let Some(item) = self.get(key) else {
            return Ok(None);
        };
        let Some(table) = item.as_table_like() else {
            return Err(self.type_err(key, item, "a table"));
        };
        let span = item.span().or_else(|| self.key_span(key));
        Ok(Some(Section {
            src: self.src,
            path: self.key_path(key),
            table,
            span,
        }))
    }

    fn string(&self, key: &str) -> Result<Option<(String, Span)>, ConfigError> {
        let Some(item) = self.get(key) else {
            return Ok(None);
        };
        match item.as_str() {
            Some(s) => Ok(Some((s.to_string(), self.value_span(key, item)))),
            None => Err(self.type_err(key, item, "a string")),
        }
    }

    fn required_string(&self, key: &str, example: &str) -> Result<(String, Span), ConfigError> {
        self.string(key)?.ok_or_else(|| self.missing(key, example))
    }

    fn non_empty_string(&self, key: &str) -> Result<Option<(String, Span)>, ConfigError> {
        match self.string(key)? {
            Some((s, span)) if s.trim().is_empty() => Err(self.src.err(
                &span,
                &self.key_path(key),
                "is empty",
                Some("give a value or remove the key".into()),
            )),
            Some((s, span)) => Ok(Some((s.trim().to_string(), span))),
            None => Ok(None),
        }
    }

    fn bool(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        let Some(item) = self.get(key) else {
            return Ok(default);
        };
        item.as_bool()
            .ok_or_else(|| self.type_err(key, item, "true or false"))
    }

    fn int(&self, key: &str) -> Result<Option<(i64, Span)>, ConfigError> {
        let Some(item) = self.get(key) else {
            return Ok(None);
        };
        match item.as_integer() {
            Some(i) => Ok(Some((i, self.value_span(key, item)))),
            None => Err(self.type_err(key, item, "an integer")),
        }
    }

    /// An integer in `min..=u32::MAX`.
    fn u32(&self, key: &str, default: u32, min: u32) -> Result<u32, ConfigError> {
        self.u32_in(key, default, min, u32::MAX)
    }

    /// An integer in `min..=max`.
    fn u32_in(&self, key: &str, default: u32, min: u32, max: u32) -> Result<u32, ConfigError> {
        let Some((i, span)) = self.int(key)? else {
            return Ok(default);
        };
        u32::try_from(i)
            .ok()
            .filter(|v| (min..=max).contains(v))
            .ok_or_else(|| {
                self.src.err(
                    &span,
                    &self.key_path(key),
                    format!("{i} is out of range"),
                    Some(format!("use a whole number from {min} to {max}")),
                )
            })
    }

    /// A positive id (Halo ids are positive integers).
    fn id(&self, key: &str) -> Result<Option<i64>, ConfigError> {
        match self.int(key)? {
            Some((i, _)) if i > 0 => Ok(Some(i)),
            Some((i, span)) => Err(self.src.err(
                &span,
                &self.key_path(key),
                format!("{i} is not a valid id"),
                Some("Halo ids are positive integers".into()),
            )),
            None => Ok(None),
        }
    }

    /// A number; integers are accepted too.
    fn float(&self, key: &str) -> Result<Option<(f64, Span)>, ConfigError> {
        let Some(item) = self.get(key) else {
            return Ok(None);
        };
        let span = self.value_span(key, item);
        match item.as_value() {
            Some(Value::Float(f)) if f.value().is_finite() => Ok(Some((*f.value(), span))),
            Some(Value::Integer(i)) => Ok(Some((*i.value() as f64, span))),
            _ => Err(self.type_err(key, item, "a number")),
        }
    }

    fn string_array(&self, key: &str) -> Result<Option<Vec<(String, Span)>>, ConfigError> {
        let Some(item) = self.get(key) else {
            return Ok(None);
        };
        let Some(array) = item.as_array() else {
            return Err(self.type_err(key, item, "an array of strings"));
        };
        let mut out = Vec::with_capacity(array.len());
        for v in array {
            match v.as_str() {
                Some(s) => out.push((s.to_string(), v.span())),
                None => {
                    return Err(self.src.err(
                        &v.span().or_else(|| self.value_span(key, item)),
                        &self.key_path(key),
                        format!(
                            "expected an array of strings, found {} in it",
                            describe_value(v)
                        ),
                        None,
                    ));
                }
            }
        }
        Ok(Some(out))
    }

    fn modules(&self, key: &str) -> Result<Option<Vec<Module>>, ConfigError> {
        let Some(names) = self.string_array(key)? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for (name, span) in names {
            let Some(module) = Module::parse(&name) else {
                let known: Vec<&str> = Module::ALL.iter().map(|m| m.as_str()).collect();
                let hint = match closest(&name, &known) {
                    Some(k) => format!("did you mean `{k}`? modules: {}", known.join(", ")),
                    None => format!("modules: {}", known.join(", ")),
                };
                return Err(self.src.err(
                    &span,
                    &self.key_path(key),
                    format!("unknown module {name:?}"),
                    Some(hint),
                ));
            };
            if !out.contains(&module) {
                out.push(module);
            }
        }
        if out.is_empty() {
            return Err(self.src.err(
                &self.get(key).and_then(Item::span),
                &self.key_path(key),
                "lists no module",
                Some("name at least one of tenants, users, licences, assets, billing".into()),
            ));
        }
        Ok(Some(out))
    }

    fn regexes(&self, key: &str, default: &[&str]) -> Result<Vec<Regex>, ConfigError> {
        let patterns = match self.string_array(key)? {
            Some(p) => p,
            None => default.iter().map(|p| ((*p).to_string(), None)).collect(),
        };
        let mut out = Vec::with_capacity(patterns.len());
        for (pattern, span) in patterns {
            let shown = bounded::shorten(&pattern, 60);
            if pattern.chars().count() > bounded::REGEX_CHARS {
                return Err(self.src.err(
                    &span.or_else(|| self.key_span(key)),
                    &self.key_path(key),
                    format!(
                        "{shown:?} is longer than {} characters, the most a pattern may have",
                        bounded::REGEX_CHARS
                    ),
                    Some("split it into several shorter patterns in the array".into()),
                ));
            }
            let re = regex::RegexBuilder::new(&pattern)
                .case_insensitive(true)
                .size_limit(bounded::REGEX_COMPILED_BYTES)
                .dfa_size_limit(bounded::REGEX_COMPILED_BYTES)
                .build()
                .map_err(|e| {
                    let last = if let regex::Error::CompiledTooBig(_) = &e {
                        "it compiles to more than 1 MB; simplify it (fewer repetitions such as {1000})"
                            .to_string()
                    } else {
                        let detail = e.to_string();
                        bounded::shorten(detail.lines().last().unwrap_or_default().trim(), 200)
                    };
                    self.src.err(
                        &span.or_else(|| self.key_span(key)),
                        &self.key_path(key),
                        format!("{shown:?} is not a valid regular expression: {last}"),
                        Some("see https://docs.rs/regex/latest/regex/#syntax; in TOML use '...' strings to avoid escaping backslashes".into()),
                    )
                })?;
            out.push(re);
        }
        Ok(out)
    }

    /// A table of `string -> integer id`.
    fn id_map(&self, key: &str) -> Result<Option<BTreeMap<String, i64>>, ConfigError> {
        let Some(sub) = self.sub(key)? else {
            return Ok(None);
        };
        let mut out = BTreeMap::new();
        for (k, _) in sub.table.iter() {
            if let Some(id) = sub.id(k)? {
                out.insert(k.to_string(), id);
            }
        }
        Ok(Some(out))
    }

    /// An `https://` URL (`http://` only for a loopback host), without a trailing slash. A password in
    /// the URL is refused (and never echoed): secrets do not go in the config file.
    fn url(&self, key: &str, value: &str, span: &Span) -> Result<String, ConfigError> {
        let trimmed = value.trim().trim_end_matches('/');
        let shown = bounded::shorten(&crate::redact::text(trimmed), 200);
        let lower = trimmed.to_ascii_lowercase();
        let ok = (lower.starts_with("https://") || lower.starts_with("http://"))
            && trimmed
                .split("://")
                .nth(1)
                .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace))
            && url_host(trimmed).is_some();
        if !ok {
            return Err(self.src.err(
                span,
                &self.key_path(key),
                format!("{shown:?} is not an https URL"),
                Some("write it like \"https://example.halopsa.com\"".into()),
            ));
        }
        let authority = trimmed
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split(['/', '?', '#']).next())
            .unwrap_or_default();
        if authority.contains('@') {
            return Err(self.src.err(
                span,
                &self.key_path(key),
                format!("{shown:?} carries a user name or password"),
                Some(
                    "remove the `user:password@` part; secrets never go in the config file".into(),
                ),
            ));
        }
        if lower.starts_with("http://") && !url_host(trimmed).is_some_and(is_loopback) {
            return Err(self.src.err(
                span,
                &self.key_path(key),
                format!("{shown:?} is plain http: secrets and tokens would cross the network unencrypted"),
                Some(format!(
                    "use https://{}; http:// is accepted only for a loopback host (localhost, 127.0.0.1, ::1)",
                    &trimmed["http://".len()..]
                )),
            ));
        }
        Ok(trimmed.to_string())
    }

    fn guid(&self, key: &str, example: &str) -> Result<String, ConfigError> {
        let (value, span) = self.required_string(key, example)?;
        self.check_guid(key, &value, &span)
    }

    fn check_guid(&self, key: &str, value: &str, span: &Span) -> Result<String, ConfigError> {
        if is_guid(value) {
            Ok(value.to_ascii_lowercase())
        } else {
            Err(self.src.err(
                span,
                &self.key_path(key),
                format!("{value:?} is not a GUID"),
                Some("write it like \"11111111-2222-3333-4444-555555555555\"".into()),
            ))
        }
    }
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` with hex digits.
pub fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

const TOP_KEYS: &[&str] = &[
    "partner_center",
    "graph",
    "halo",
    "microsoft",
    "sync",
    "safety",
    "users",
    "licences",
    "assets",
    "billing",
    "tenant",
];

const DEFAULT_EXCLUDE_UPN: &[&str] = &["^admin@", "^svc[-_.]"];
const DEFAULT_EXCLUDE_SKUS: &[&str] = &[
    "FLOW_FREE",
    "POWER_BI_STANDARD",
    "TEAMS_EXPLORATORY",
    "WINDOWS_STORE",
];
const DEFAULT_ASSET_TYPES: &[(&str, i64)] = &[
    ("windows", 10),
    ("macos", 11),
    ("ios", 12),
    ("ipados", 12),
    ("android", 13),
    ("default", 10),
];
const DEFAULT_FIELDS: &[(&str, i64)] = &[
    ("serialNumber", 117),
    ("model", 118),
    ("manufacturer", 119),
    ("osVersion", 120),
];

/// Parses and validates config text; `path` names the file in errors and anchors `state_dir`.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let src = Src::new(path.display().to_string(), text);
    let doc = toml_edit::Document::parse(text).map_err(|e| {
        let message = e.message().trim().to_string();
        src.err(
            &e.span(),
            "",
            format!("invalid TOML: {message}"),
            Some("fix the syntax at this place".into()),
        )
    })?;
    let root = Section {
        src: &src,
        path: String::new(),
        table: doc.as_table(),
        span: Some(0..0),
    };
    check_no_secrets(&src, "", doc.as_table())?;
    root.check_keys(TOP_KEYS)?;

    let required = |key: &str| -> Result<Section<'_>, ConfigError> {
        root.sub(key)?.ok_or_else(|| {
            src.err(
                &Some(0..0),
                key,
                format!("section [{key}] is missing"),
                Some(format!(
                    "add a [{key}] section; `csp-sync init` writes a commented example"
                )),
            )
        })
    };

    let partner_center = parse_partner_center(&required("partner_center")?)?;
    let graph = parse_graph(&required("graph")?)?;
    let halo = parse_halo(&required("halo")?)?;
    let microsoft = parse_microsoft(root.sub("microsoft")?.as_ref())?;
    let sync = parse_sync(root.sub("sync")?.as_ref(), path)?;
    let safety = parse_safety(root.sub("safety")?.as_ref())?;
    let users = parse_users(root.sub("users")?.as_ref())?;
    let licences = parse_licences(root.sub("licences")?.as_ref())?;
    let assets = parse_assets(root.sub("assets")?.as_ref())?;
    let billing = parse_billing(root.sub("billing")?.as_ref())?;
    let tenants = parse_tenants(&root)?;

    Ok(Config {
        path: path.to_path_buf(),
        partner_center,
        graph,
        halo,
        microsoft,
        sync,
        safety,
        users,
        licences,
        assets,
        billing,
        tenants,
    })
}

const EXAMPLE_GUID: &str = "\"11111111-2222-3333-4444-555555555555\"";

fn parse_partner_center(s: &Section) -> Result<PartnerCenterConfig, ConfigError> {
    s.check_keys(&["tenant_id", "client_id"])?;
    Ok(PartnerCenterConfig {
        tenant_id: s.guid("tenant_id", EXAMPLE_GUID)?,
        client_id: s.guid("client_id", EXAMPLE_GUID)?,
    })
}

fn parse_graph(s: &Section) -> Result<GraphConfig, ConfigError> {
    s.check_keys(&["client_id", "auth"])?;
    let client_id = s.guid("client_id", EXAMPLE_GUID)?;
    let auth = match s.string("auth")? {
        None => GraphAuth::App,
        Some((v, _)) if v == "app" => GraphAuth::App,
        Some((v, _)) if v == "delegated" => GraphAuth::Delegated,
        Some((v, span)) => {
            return Err(s.src.err(
                &span,
                &s.key_path("auth"),
                format!("{v:?} is not a Graph auth mode"),
                Some("use \"app\" or \"delegated\"".into()),
            ));
        }
    };
    Ok(GraphConfig { client_id, auth })
}

fn parse_halo(s: &Section) -> Result<HaloConfig, ConfigError> {
    s.check_keys(&[
        "url",
        "auth_url",
        "tenant",
        "client_id",
        "scope",
        "rate_limit",
        "bulk_read",
        "fire_automations",
    ])?;
    let (raw_url, span) = s.required_string("url", "\"https://example.halopsa.com\"")?;
    let url = s.url("url", &raw_url, &span)?;
    if url.to_ascii_lowercase().ends_with("/api") {
        return Err(s.src.err(
            &span,
            &s.key_path("url"),
            format!("{raw_url:?} ends in /api"),
            Some(format!(
                "give the base URL, {:?}; csp-sync adds /api itself",
                &url[..url.len() - 4]
            )),
        ));
    }
    let auth_url = match s.string("auth_url")? {
        Some((v, span)) => s.url("auth_url", &v, &span)?,
        None => format!("{url}/auth"),
    };
    let tenant = s.non_empty_string("tenant")?.map(|(t, _)| t);
    // Halo API applications have GUID client ids (reference/halo-api.md, token request).
    let client_id = s.guid("client_id", EXAMPLE_GUID)?;
    let scope = s
        .non_empty_string("scope")?
        .map_or_else(|| "all".to_string(), |(v, _)| v);
    let rate_limit = match s.sub("rate_limit")? {
        None => RateLimit {
            requests: 300,
            per_seconds: 300,
        },
        Some(rl) => {
            rl.check_keys(&["requests", "per_seconds"])?;
            // Bounded so a typo cannot make a run wait silently for days: Halo's windows are minutes.
            RateLimit {
                requests: rl.u32_in("requests", 300, 1, 100_000)?,
                per_seconds: rl.u32_in("per_seconds", 300, 1, 3600)?,
            }
        }
    };
    let bulk_read = match s.string("bulk_read")? {
        None => BulkRead::Api,
        Some((v, _)) if v == "api" => BulkRead::Api,
        Some((v, _)) if v == "report" => BulkRead::Report,
        Some((v, span)) => {
            return Err(s.src.err(
                &span,
                &s.key_path("bulk_read"),
                format!("{v:?} is not a bulk read mode"),
                Some("use \"api\" or \"report\"".into()),
            ));
        }
    };
    Ok(HaloConfig {
        api_url: format!("{url}/api"),
        token_url: format!("{auth_url}/token"),
        url,
        tenant,
        client_id,
        scope,
        rate_limit,
        bulk_read,
        fire_automations: s.bool("fire_automations", false)?,
    })
}

fn parse_microsoft(s: Option<&Section>) -> Result<MicrosoftConfig, ConfigError> {
    let mut cloud = Cloud::Global;
    let mut overrides: [Option<String>; 3] = [None, None, None];
    if let Some(s) = s {
        s.check_keys(&["cloud", "login_url", "graph_url", "partner_center_url"])?;
        if let Some((name, span)) = s.string("cloud")? {
            cloud = Cloud::parse(name.trim()).ok_or_else(|| {
                let known = ["global", "usgov-high", "usgov-dod", "china"];
                let hint = match closest(&name, &known) {
                    Some(k) => format!("did you mean \"{k}\"? clouds: {}", known.join(", ")),
                    None => format!("clouds: {}", known.join(", ")),
                };
                s.src.err(
                    &span,
                    &s.key_path("cloud"),
                    format!("unknown cloud {name:?}"),
                    Some(hint),
                )
            })?;
        }
        for (slot, key) in
            overrides
                .iter_mut()
                .zip(["login_url", "graph_url", "partner_center_url"])
        {
            if let Some((v, span)) = s.string(key)? {
                *slot = Some(s.url(key, &v, &span)?);
            }
        }
    }
    let [login, graph, pc] = overrides;
    Ok(MicrosoftConfig {
        cloud,
        login_url: login.unwrap_or_else(|| cloud.login_url().into()),
        graph_url: graph.unwrap_or_else(|| cloud.graph_url().into()),
        partner_center_url: pc.unwrap_or_else(|| cloud.partner_center_url().into()),
        graph_scope_resource: cloud.graph_url().into(),
        partner_center_resource: cloud.partner_center_resource().into(),
    })
}

fn parse_sync(s: Option<&Section>, path: &Path) -> Result<SyncConfig, ConfigError> {
    let base = path.parent().unwrap_or_else(|| Path::new(""));
    let mut out = SyncConfig {
        modules: vec![Module::Users, Module::Licences],
        auto_create_clients: false,
        concurrency: 8,
        state_dir: base.join(".csp-sync-state"),
    };
    let Some(s) = s else { return Ok(out) };
    s.check_keys(&["modules", "auto_create_clients", "concurrency", "state_dir"])?;
    if let Some(modules) = s.modules("modules")? {
        out.modules = modules;
    }
    out.auto_create_clients = s.bool("auto_create_clients", false)?;
    out.concurrency = s.u32_in("concurrency", 8, 1, 256)? as usize;
    if let Some((dir, _)) = s.non_empty_string("state_dir")? {
        out.state_dir = base.join(dir);
    }
    Ok(out)
}

fn parse_safety(s: Option<&Section>) -> Result<SafetyConfig, ConfigError> {
    let mut out = SafetyConfig {
        max_deactivations: 5,
        max_deactivation_percent: 20.0,
        empty_source_guard: true,
    };
    let Some(s) = s else { return Ok(out) };
    s.check_keys(&[
        "max_deactivations",
        "max_deactivation_percent",
        "empty_source_guard",
    ])?;
    out.max_deactivations = s.u32("max_deactivations", 5, 0)?;
    if let Some((p, span)) = s.float("max_deactivation_percent")? {
        if !(0.0..=100.0).contains(&p) {
            return Err(s.src.err(
                &span,
                &s.key_path("max_deactivation_percent"),
                format!("{p} is not a percentage"),
                Some("use a number from 0 to 100".into()),
            ));
        }
        out.max_deactivation_percent = p;
    }
    out.empty_source_guard = s.bool("empty_source_guard", true)?;
    Ok(out)
}

fn parse_users(s: Option<&Section>) -> Result<UsersConfig, ConfigError> {
    let Some(s) = s else {
        return Ok(UsersConfig {
            include_guests: false,
            require_licence: true,
            contract_skus: Vec::new(),
            exclude_upn: DEFAULT_EXCLUDE_UPN
                .iter()
                .map(|p| {
                    regex::RegexBuilder::new(p)
                        .case_insensitive(true)
                        .build()
                        .expect("built-in pattern is valid")
                })
                .collect(),
            leaver_grace_days: 0,
            protect: Vec::new(),
            welcome_email: false,
            delta: true,
            contract_mode: ContractMode::Scope,
            contract_field: None,
        });
    };
    s.check_keys(&[
        "include_guests",
        "require_licence",
        "contract_skus",
        "contract_mode",
        "contract_field",
        "exclude_upn",
        "leaver_grace_days",
        "protect",
        "welcome_email",
        "delta",
    ])?;
    let contract_mode = match s.string("contract_mode")? {
        None => ContractMode::Scope,
        Some((v, _)) if v == "scope" => ContractMode::Scope,
        Some((v, _)) if v == "flag" => ContractMode::Flag,
        Some((v, span)) => {
            return Err(s.src.err(
                &span,
                &s.key_path("contract_mode"),
                format!("{v:?} is not a contract mode"),
                Some("use \"scope\" (only contract users are synced) or \"flag\" (everyone, flagged)".into()),
            ));
        }
    };
    let contract_field = match s.int("contract_field")? {
        None => None,
        Some((i, span)) if i < 1 => {
            return Err(s.src.err(
                &span,
                &s.key_path("contract_field"),
                format!("{i} is not a custom field id"),
                Some("use the id of a Halo user custom field (Configuration > Custom Objects > Custom Fields)".into()),
            ));
        }
        Some((_, span)) if contract_mode != ContractMode::Flag => {
            return Err(s.src.err(
                &span,
                &s.key_path("contract_field"),
                "contract_field is only used with contract_mode = \"flag\"",
                Some("set [users] contract_mode = \"flag\", or remove contract_field".into()),
            ));
        }
        Some((i, _)) => Some(i),
    };
    Ok(UsersConfig {
        contract_mode,
        contract_field,
        include_guests: s.bool("include_guests", false)?,
        require_licence: s.bool("require_licence", true)?,
        contract_skus: s
            .string_array("contract_skus")?
            .unwrap_or_default()
            .into_iter()
            .map(|(v, _)| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect(),
        exclude_upn: s.regexes("exclude_upn", DEFAULT_EXCLUDE_UPN)?,
        leaver_grace_days: s.u32("leaver_grace_days", 0, 0)?,
        protect: s.regexes("protect", &[])?,
        welcome_email: s.bool("welcome_email", false)?,
        delta: s.bool("delta", true)?,
    })
}

fn parse_licences(s: Option<&Section>) -> Result<LicencesConfig, ConfigError> {
    let mut out = LicencesConfig {
        exclude_skus: DEFAULT_EXCLUDE_SKUS
            .iter()
            .map(|s| (*s).to_string())
            .collect(),
        names: BTreeMap::new(),
    };
    let Some(s) = s else { return Ok(out) };
    s.check_keys(&["exclude_skus", "names"])?;
    if let Some(skus) = s.string_array("exclude_skus")? {
        out.exclude_skus = skus
            .into_iter()
            .map(|(v, _)| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
    }
    if let Some(names) = s.sub("names")? {
        for (sku, _) in names.table.iter() {
            if let Some((name, _)) = names.non_empty_string(sku)? {
                out.names.insert(sku.to_string(), name);
            }
        }
    }
    Ok(out)
}

fn parse_assets(s: Option<&Section>) -> Result<AssetsConfig, ConfigError> {
    let to_map = |pairs: &[(&str, i64)]| -> BTreeMap<String, i64> {
        pairs.iter().map(|(k, v)| ((*k).to_string(), *v)).collect()
    };
    let mut out = AssetsConfig {
        asset_types: to_map(DEFAULT_ASSET_TYPES),
        fields: to_map(DEFAULT_FIELDS),
        stale_after_days: 30,
        link_users: true,
    };
    let Some(s) = s else { return Ok(out) };
    s.check_keys(&["asset_types", "fields", "stale_after_days", "link_users"])?;
    if let Some(types) = s.id_map("asset_types")? {
        out.asset_types = types
            .into_iter()
            .map(|(k, v)| (k.trim().to_lowercase(), v))
            .collect();
    }
    if let Some(fields) = s.id_map("fields")? {
        if let Some(bad) = fields
            .keys()
            .find(|k| !ASSET_FIELD_PROPERTIES.contains(&k.as_str()))
        {
            return Err(s.src.err(
                &s.key_span("fields"),
                &s.key_path("fields"),
                format!("{bad:?} is not an Intune managedDevice property csp-sync reads"),
                Some(format!("use one of {}", ASSET_FIELD_PROPERTIES.join(", "))),
            ));
        }
        out.fields = fields;
    }
    out.stale_after_days = s.u32("stale_after_days", 30, 0)?;
    out.link_users = s.bool("link_users", true)?;
    Ok(out)
}

fn parse_billing(s: Option<&Section>) -> Result<BillingConfig, ConfigError> {
    let mut out = BillingConfig {
        markup_percent: 0.0,
        markup: BTreeMap::new(),
        currency: "USD".into(),
        since: None,
        period: None,
        estimate: false,
    };
    let Some(s) = s else { return Ok(out) };
    s.check_keys(&["markup_percent", "markup", "currency", "since"])?;
    if let Some(m) = s.sub("markup")? {
        for (category, _) in m.table.iter() {
            if let Some((v, span)) = m.float(category)? {
                if v <= -100.0 {
                    return Err(m.src.err(
                        &span,
                        &m.key_path(category),
                        format!("{v} would make prices zero or negative"),
                        Some("use a percentage above -100".into()),
                    ));
                }
                out.markup.insert(category.to_string(), v);
            }
        }
    }
    if let Some((v, span)) = s.non_empty_string("since")? {
        if !is_month(&v) {
            return Err(s.src.err(
                &span,
                &s.key_path("since"),
                format!("{v:?} is not a month"),
                Some("write the first period to bill as YYYY-MM, e.g. \"2026-10\"".into()),
            ));
        }
        out.since = Some(v);
    }
    if let Some((m, span)) = s.float("markup_percent")? {
        if m <= -100.0 {
            return Err(s.src.err(
                &span,
                &s.key_path("markup_percent"),
                format!("{m} would make prices zero or negative"),
                Some("use a percentage above -100 (0 bills at cost)".into()),
            ));
        }
        out.markup_percent = m;
    }
    if let Some((c, span)) = s.string("currency")? {
        let code = c.trim().to_ascii_uppercase();
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(s.src.err(
                &span,
                &s.key_path("currency"),
                format!("{c:?} is not a currency code"),
                Some("use a three-letter ISO 4217 code such as \"USD\", \"EUR\" or \"GBP\"".into()),
            ));
        }
        out.currency = code;
    }
    Ok(out)
}

const TENANT_KEYS: &[&str] = &[
    "customer_id",
    "name",
    "halo_client_id",
    "halo_site_id",
    "modules",
    "skip",
];

fn parse_tenants(root: &Section) -> Result<Vec<TenantEntry>, ConfigError> {
    let Some(item) = root.get("tenant") else {
        return Ok(Vec::new());
    };
    let tables: Vec<(&dyn TableLike, Span)> = match item {
        Item::ArrayOfTables(a) => a.iter().map(|t| (t as &dyn TableLike, t.span())).collect(),
        Item::Value(Value::Array(a)) if a.iter().all(|v| v.as_inline_table().is_some()) => a
            .iter()
            .filter_map(|v| v.as_inline_table().map(|t| (t as &dyn TableLike, v.span())))
            .collect(),
        other => {
            return Err(root.type_err("tenant", other, "[[tenant]] tables (one per customer)"));
        }
    };
    let mut out: Vec<TenantEntry> = Vec::with_capacity(tables.len());
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (table, span) in tables {
        let span = span.or_else(|| {
            table
                .iter()
                .next()
                .and_then(|(k, _)| table.key(k).and_then(toml_edit::Key::span))
        });
        let s = Section {
            src: root.src,
            path: "tenant".into(),
            table,
            span,
        };
        s.check_keys(TENANT_KEYS)?;
        let (id, id_span) = s.required_string("customer_id", EXAMPLE_GUID)?;
        let customer_id = s.check_guid("customer_id", id.trim(), &id_span)?;
        let line = root.src.line_col(&s.span).0;
        if let Some(first) = seen.get(&customer_id) {
            return Err(root.src.err(
                &id_span,
                "tenant.customer_id",
                format!("customer {customer_id} is mapped twice: here and at line {first}"),
                Some(
                    "a customer maps to one Halo client; keep one of the two [[tenant]] entries"
                        .into(),
                ),
            ));
        }
        seen.insert(customer_id.clone(), line);
        let skip = s.bool("skip", false)?;
        let halo_client_id = s.id("halo_client_id")?;
        if !skip && halo_client_id.is_none() {
            return Err(root.src.err(
                &s.span,
                "tenant.halo_client_id",
                format!("customer {customer_id} has no halo_client_id"),
                Some(
                    "add `halo_client_id = <Halo client id>`, or `skip = true` to leave this customer out; \
                     `csp-sync tenants map` can do it for you"
                        .into(),
                ),
            ));
        }
        out.push(TenantEntry {
            customer_id,
            name: s.non_empty_string("name")?.map(|(n, _)| n),
            halo_client_id,
            halo_site_id: s.id("halo_site_id")?,
            modules: s.modules("modules")?,
            skip,
            line,
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------------------
// Writing mappings back

/// A mapping decision for one customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MappingEdit {
    /// Map the customer to a Halo client (and optionally a site for new contacts).
    Client {
        halo_client_id: i64,
        halo_site_id: Option<i64>,
    },
    /// Known, deliberately not synced.
    Skip,
}

/// Updates `customer_id`'s `[[tenant]]` entry in place (or appends one), keeping every comment and the
/// layout of the rest of the file. The result is validated before it replaces the file, atomically.
///
/// Mapping to a client sets `halo_client_id`, sets or removes `halo_site_id` and removes `skip`; `Skip`
/// sets `skip = true` and leaves the rest. `name` is written when the entry has none.
pub fn write_mapping(
    path: &Path,
    customer_id: &str,
    name: &str,
    edit: MappingEdit,
) -> Result<(), ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        file: file.clone(),
        problem: format!("cannot read it: {e}"),
        hint: Some("check the path and its permissions".into()),
    })?;
    let new_text = edit_mapping(path, &text, customer_id, name, edit)?;
    write_atomic(path, new_text.as_bytes(), None).map_err(|e| ConfigError::File {
        file,
        problem: format!("cannot write it: {e}"),
        hint: Some("check that the file and its directory are writable".into()),
    })?;
    Ok(())
}

/// The text of [`write_mapping`], without touching the file system (validated).
pub fn edit_mapping(
    path: &Path,
    text: &str,
    customer_id: &str,
    name: &str,
    edit: MappingEdit,
) -> Result<String, ConfigError> {
    use toml_edit::{ArrayOfTables, DocumentMut, Table};

    let file = path.display().to_string();
    let customer_id = customer_id.trim().to_ascii_lowercase();
    if !is_guid(&customer_id) {
        return Err(ConfigError::File {
            file,
            problem: format!("cannot map customer {customer_id:?}: not a GUID"),
            hint: Some("give the Partner Center customer id".into()),
        });
    }
    // Validate the current text first so a broken file is reported where it is broken.
    parse(path, text)?;
    let mut doc: DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| ConfigError::File {
                file: file.clone(),
                problem: format!("invalid TOML: {}", e.message()),
                hint: None,
            })?;

    if doc.get("tenant").is_none() {
        doc.insert("tenant", Item::ArrayOfTables(ArrayOfTables::new()));
    }
    let Some(aot) = doc.get_mut("tenant").and_then(Item::as_array_of_tables_mut) else {
        return Err(ConfigError::File {
            file,
            problem: "`tenant` is not written as [[tenant]] tables, so it cannot be edited".into(),
            hint: Some("rewrite the entries as [[tenant]] tables".into()),
        });
    };
    let existing = aot.iter_mut().find(|t| {
        t.get("customer_id")
            .and_then(Item::as_str)
            .is_some_and(|id| id.trim().eq_ignore_ascii_case(&customer_id))
    });
    let table: &mut Table = if let Some(t) = existing {
        t
    } else {
        let mut t = Table::new();
        t.decor_mut().set_prefix("\n");
        t.insert("customer_id", toml_edit::value(customer_id.clone()));
        aot.push(t);
        aot.iter_mut().last().expect("just pushed")
    };
    if table.get("name").is_none() && !name.trim().is_empty() {
        table.insert("name", toml_edit::value(name.trim()));
    }
    match edit {
        MappingEdit::Client {
            halo_client_id,
            halo_site_id,
        } => {
            set_keeping_decor(table, "halo_client_id", Value::from(halo_client_id));
            match halo_site_id {
                Some(site) => set_keeping_decor(table, "halo_site_id", Value::from(site)),
                None => {
                    table.remove("halo_site_id");
                }
            }
            table.remove("skip");
        }
        MappingEdit::Skip => set_keeping_decor(table, "skip", Value::from(true)),
    }
    let new_text = doc.to_string();
    parse(path, &new_text)?;
    Ok(new_text)
}

/// Sets `key` to `value`, keeping the comments around an existing value.
fn set_keeping_decor(table: &mut toml_edit::Table, key: &str, mut value: Value) {
    if let Some(old) = table.get(key).and_then(Item::as_value) {
        *value.decor_mut() = old.decor().clone();
    }
    table.insert(key, Item::Value(value));
}

/// Writes `contents` to `path` atomically: a temporary file in the same directory, fsync, rename. The
/// file gets `mode` (Unix) when given, else the existing file's permissions.
pub fn write_atomic(path: &Path, contents: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map_or_else(|| "csp-sync".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(
        ".{file_name}.tmp-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    ));
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut f = options.open(&tmp)?;
        f.write_all(contents)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let perms = match mode {
                Some(m) => Some(std::fs::Permissions::from_mode(m)),
                None => std::fs::metadata(path).ok().map(|m| m.permissions()),
            };
            if let Some(p) = perms {
                f.set_permissions(p)?;
            }
        }
        #[cfg(not(unix))]
        let _ = mode;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(&dir) {
            // Persist the rename; not supported everywhere, so a failure here is not an error.
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"[partner_center]
tenant_id = "11111111-1111-1111-1111-111111111111"
client_id = "22222222-2222-2222-2222-222222222222"

[graph]
client_id = "33333333-3333-3333-3333-333333333333"

[halo]
url = "https://acme.halopsa.com/"
client_id = "44444444-4444-4444-4444-444444444444"
"#;

    fn p(text: &str) -> Result<Config, ConfigError> {
        parse(Path::new("dir/csp-sync.toml"), text)
    }

    fn err(text: &str) -> String {
        p(text).expect_err("should fail").to_string()
    }

    #[test]
    fn example_loads_with_spec_defaults() {
        let c = parse(Path::new("csp-sync.toml"), EXAMPLE).expect("example parses");
        assert_eq!(c.graph.auth, GraphAuth::App);
        assert_eq!(c.halo.url, "https://acme.halopsa.com");
        assert_eq!(c.halo.api_url, "https://acme.halopsa.com/api");
        assert_eq!(c.halo.token_url, "https://acme.halopsa.com/auth/token");
        assert_eq!(c.halo.scope, "all");
        assert_eq!(
            c.halo.rate_limit,
            RateLimit {
                requests: 300,
                per_seconds: 300
            }
        );
        assert_eq!(c.halo.bulk_read, BulkRead::Api);
        assert!(!c.halo.fire_automations);
        assert_eq!(c.microsoft.cloud, Cloud::Global);
        assert_eq!(c.sync.modules, vec![Module::Users, Module::Licences]);
        assert_eq!(c.sync.concurrency, 8);
        assert_eq!(c.sync.state_dir, PathBuf::from(".csp-sync-state"));
        assert_eq!(c.safety.max_deactivations, 5);
        assert!((c.safety.max_deactivation_percent - 20.0).abs() < f64::EPSILON);
        assert!(c.safety.empty_source_guard);
        assert!(c.users.require_licence && c.users.delta && !c.users.include_guests);
        assert_eq!(c.users.exclude_upn.len(), 2);
        assert_eq!(c.licences.exclude_skus, DEFAULT_EXCLUDE_SKUS);
        assert_eq!(c.assets.asset_type_for("iPadOS"), Some(12));
        assert_eq!(c.assets.asset_type_for("Linux"), Some(10));
        assert_eq!(c.assets.fields.get("serialNumber"), Some(&117));
        assert_eq!(c.assets.stale_after_days, 30);
        assert_eq!(c.billing.currency, "USD");
        assert!(c.tenants.is_empty(), "the example maps no real customer");
    }

    #[test]
    fn example_and_minimal_have_the_same_defaults() {
        let full = parse(Path::new("csp-sync.toml"), EXAMPLE).unwrap();
        let min = parse(Path::new("csp-sync.toml"), MINIMAL).unwrap();
        assert_eq!(full.microsoft, min.microsoft);
        assert_eq!(full.sync, min.sync);
        assert_eq!(full.safety, min.safety);
        assert_eq!(full.licences, min.licences);
        assert_eq!(full.assets, min.assets);
        assert_eq!(full.billing, min.billing);
        assert_eq!(full.halo.rate_limit, min.halo.rate_limit);
        let pats = |c: &Config| -> Vec<String> {
            c.users
                .exclude_upn
                .iter()
                .map(|r| r.as_str().to_string())
                .collect()
        };
        assert_eq!(pats(&full), pats(&min));
    }

    #[test]
    fn example_tenant_block_uncommented_loads() {
        let text = EXAMPLE
            .lines()
            .map(|l| {
                for key in ["[[tenant]]", "customer_id", "name =", "halo_client_id"] {
                    if let Some(rest) = l.strip_prefix("# ")
                        && rest.starts_with(key)
                    {
                        return rest.to_string();
                    }
                }
                l.to_string()
            })
            .collect::<Vec<_>>()
            .join("\n");
        let c = parse(Path::new("csp-sync.toml"), &text).unwrap();
        assert_eq!(c.tenants.len(), 1);
        assert_eq!(c.tenants[0].halo_client_id, Some(42));
        assert_eq!(c.tenants[0].name.as_deref(), Some("Acme Corp"));
    }

    #[test]
    fn contract_mode_and_field() {
        let c = p(MINIMAL).unwrap();
        assert_eq!(c.users.contract_mode, ContractMode::Scope);
        assert_eq!(c.users.contract_field, None);
        let c = p(&format!(
            "{MINIMAL}\n[users]\ncontract_mode = \"flag\"\ncontract_field = 12\n"
        ))
        .unwrap();
        assert_eq!(c.users.contract_mode, ContractMode::Flag);
        assert_eq!(c.users.contract_field, Some(12));
        let e = err(&format!("{MINIMAL}\n[users]\ncontract_mode = \"block\"\n"));
        assert!(
            e.contains("users.contract_mode") && e.contains("\"flag\""),
            "{e}"
        );
        let e = err(&format!("{MINIMAL}\n[users]\ncontract_field = 12\n"));
        assert!(e.contains("only used with contract_mode = \"flag\""), "{e}");
        let e = err(&format!(
            "{MINIMAL}\n[users]\ncontract_mode = \"flag\"\ncontract_field = 0\n"
        ));
        assert!(e.contains("not a custom field id"), "{e}");
    }

    #[test]
    fn minimal_resolves_urls_and_state_dir() {
        let c = p(MINIMAL).unwrap();
        assert_eq!(c.halo.url, "https://acme.halopsa.com");
        assert_eq!(c.sync.state_dir, PathBuf::from("dir/.csp-sync-state"));
        assert_eq!(c.microsoft.login_url, "https://login.microsoftonline.com");
        assert_eq!(
            c.microsoft.graph_scope_resource,
            "https://graph.microsoft.com"
        );
        assert_eq!(
            c.microsoft.partner_center_resource,
            "https://api.partnercenter.microsoft.com"
        );
    }

    #[test]
    fn overrides_keep_real_resources() {
        let text = format!(
            "{MINIMAL}\n[microsoft]\ncloud = \"usgov-high\"\ngraph_url = \"http://127.0.0.1:9000/graph/\"\nlogin_url = \"http://127.0.0.1:9000/login\"\n"
        );
        let c = p(&text).unwrap();
        assert_eq!(c.microsoft.graph_url, "http://127.0.0.1:9000/graph");
        assert_eq!(c.microsoft.login_url, "http://127.0.0.1:9000/login");
        assert_eq!(
            c.microsoft.graph_scope_resource,
            "https://graph.microsoft.us"
        );
        assert_eq!(
            c.microsoft.partner_center_url,
            "https://api.partnercenter.microsoft.com"
        );
    }

    #[test]
    fn auth_url_and_guid_case() {
        let text = MINIMAL
            .replace("11111111-1111", "AAAAAAAA-1111")
            .replace(
                "url = \"https://acme.halopsa.com/\"",
                "url = \"https://acme.halopsa.com\"\nauth_url = \"https://auth.example.com/auth/\"\ntenant = \"acme\"",
            );
        let c = p(&text).unwrap();
        assert_eq!(
            c.partner_center.tenant_id,
            "aaaaaaaa-1111-1111-1111-111111111111"
        );
        assert_eq!(c.halo.token_url, "https://auth.example.com/auth/token");
        assert_eq!(c.halo.tenant.as_deref(), Some("acme"));
    }

    #[test]
    fn malformed_guid() {
        let text = MINIMAL.replace("44444444-4444-4444-4444-444444444444", "abc");
        assert_eq!(
            err(&text),
            "dir/csp-sync.toml:10:13: halo.client_id: \"abc\" is not a GUID \
             (write it like \"11111111-2222-3333-4444-555555555555\")"
        );
        let text = MINIMAL.replace("33333333-3333-3333-3333-333333333333", "3333");
        let e = err(&text);
        assert!(
            e.starts_with("dir/csp-sync.toml:6:13: graph.client_id: \"3333\" is not a GUID"),
            "{e}"
        );
        let text = MINIMAL.replace(
            "11111111-1111-1111-1111-111111111111",
            "11111111-1111-1111-1111-11111111111g",
        );
        let e = err(&text);
        assert!(
            e.starts_with("dir/csp-sync.toml:2:13: partner_center.tenant_id:"),
            "{e}"
        );
    }

    #[test]
    fn unknown_key_suggests_closest() {
        let text = MINIMAL.replace("[halo]\n", "[halo]\nurll = 1\n");
        let e = err(&text);
        assert!(
            e.starts_with("dir/csp-sync.toml:9:1: halo.urll: unknown key `urll` in [halo]"),
            "{e}"
        );
        assert!(e.contains("did you mean `url`?"), "{e}");
        let e = err(&format!("{MINIMAL}\n[licenses]\nexclude_skus = []\n"));
        assert!(
            e.contains(":12:2: licenses: unknown key `licenses` at the top level"),
            "{e}"
        );
        assert!(e.contains("did you mean `licences`?"), "{e}");
        let e = err(&format!("{MINIMAL}[users]\nzzzzzz = true\n"));
        assert!(e.contains(":12:1: users.zzzzzz:"), "{e}");
        assert!(e.contains("known keys: include_guests"), "{e}");
    }

    #[test]
    fn secrets_are_refused_anywhere() {
        let text = MINIMAL.replace("[halo]\n", "[halo]\nclient_secret = \"s3cret\"\n");
        let e = err(&text);
        assert!(
            e.starts_with("dir/csp-sync.toml:9:1: halo.client_secret: secrets are never read"),
            "{e}"
        );
        assert!(e.contains("CSP_SYNC_HALO_CLIENT_SECRET"), "{e}");
        assert!(e.contains("CSP_SYNC_HALO_CLIENT_SECRET_FILE"), "{e}");
        assert!(e.contains("csp-sync auth set halo"), "{e}");
        assert!(!e.contains("s3cret"), "the value is never echoed: {e}");

        let text = MINIMAL.replace("[graph]\n", "[graph]\nrefresh_token = \"x\"\n");
        let e = err(&text);
        assert!(e.contains(":6:1: graph.refresh_token:"), "{e}");
        assert!(e.contains("CSP_SYNC_GRAPH_REFRESH_TOKEN"), "{e}");

        let e = err(&format!("{MINIMAL}[sync.extra]\napi_password = \"x\"\n"));
        assert!(e.contains(":12:1: sync.extra.api_password:"), "{e}");
        assert!(e.contains("CSP_SYNC_<NAME>_FILE"), "{e}");
    }

    #[test]
    fn customer_mapped_twice_names_both_lines() {
        let text = format!(
            "{MINIMAL}\n[[tenant]]\ncustomer_id = \"aaaaaaaa-0000-0000-0000-000000000001\"\nhalo_client_id = 1\n\n[[tenant]]\ncustomer_id = \"AAAAAAAA-0000-0000-0000-000000000001\"\nhalo_client_id = 2\n"
        );
        let e = err(&text);
        assert!(
            e.starts_with("dir/csp-sync.toml:17:15: tenant.customer_id:"),
            "{e}"
        );
        assert!(e.contains("mapped twice: here and at line 12"), "{e}");
    }

    #[test]
    fn several_customers_may_share_a_client() {
        let text = format!(
            "{MINIMAL}\n[[tenant]]\ncustomer_id = \"aaaaaaaa-0000-0000-0000-000000000001\"\nhalo_client_id = 1\nmodules = [\"users\", \"licenses\"]\n\n[[tenant]]\ncustomer_id = \"aaaaaaaa-0000-0000-0000-000000000002\"\nhalo_client_id = 1\n\n[[tenant]]\ncustomer_id = \"aaaaaaaa-0000-0000-0000-000000000003\"\nskip = true\n"
        );
        let c = p(&text).unwrap();
        assert_eq!(c.tenants.len(), 3);
        assert_eq!(c.tenants[0].line, 12);
        assert_eq!(
            c.tenants[0].modules,
            Some(vec![Module::Users, Module::Licences])
        );
        assert!(c.tenants[2].skip && c.tenants[2].halo_client_id.is_none());
        assert!(c.tenant("AAAAAAAA-0000-0000-0000-000000000002").is_some());
    }

    #[test]
    fn non_skipped_tenant_needs_a_client() {
        let text = format!(
            "{MINIMAL}\n[[tenant]]\ncustomer_id = \"aaaaaaaa-0000-0000-0000-000000000001\"\nname = \"Acme\"\n"
        );
        let e = err(&text);
        assert!(
            e.starts_with("dir/csp-sync.toml:12:1: tenant.halo_client_id:"),
            "{e}"
        );
        assert!(e.contains("skip = true"), "{e}");
    }

    #[test]
    fn missing_required_key_and_section() {
        let text = MINIMAL.replace("url = \"https://acme.halopsa.com/\"\n", "");
        let e = err(&text);
        assert!(
            e.starts_with("dir/csp-sync.toml:8:1: halo.url: required key `url` is missing"),
            "{e}"
        );
        assert!(e.contains("to [halo]"), "{e}");
        let text = MINIMAL.replace(
            "[graph]\nclient_id = \"33333333-3333-3333-3333-333333333333\"\n",
            "",
        );
        let e = err(&text);
        assert!(
            e.starts_with("dir/csp-sync.toml:1:1: graph: section [graph] is missing"),
            "{e}"
        );
    }

    #[test]
    fn wrong_types() {
        let e = err(&format!("{MINIMAL}[sync]\nconcurrency = \"8\"\n"));
        assert_eq!(
            e,
            "dir/csp-sync.toml:12:15: sync.concurrency: expected an integer, found the string \"8\""
        );
        let e = err(&format!("{MINIMAL}[users]\ndelta = 1\n"));
        assert!(
            e.starts_with("dir/csp-sync.toml:12:9: users.delta: expected true or false"),
            "{e}"
        );
        let e = err(&format!("{MINIMAL}[users]\nexclude_upn = ['^a', 3]\n"));
        assert!(
            e.starts_with(
                "dir/csp-sync.toml:12:22: users.exclude_upn: expected an array of strings"
            ),
            "{e}"
        );
        let e = err(&format!("{MINIMAL}[sync]\nconcurrency = 0\n"));
        assert!(
            e.starts_with("dir/csp-sync.toml:12:15: sync.concurrency: 0 is out of range"),
            "{e}"
        );
        let e = err(&format!("safety = 3\n{MINIMAL}"));
        assert!(
            e.starts_with("dir/csp-sync.toml:1:10: safety: expected a table"),
            "{e}"
        );
    }

    #[test]
    fn invalid_regex() {
        let e = err(&format!(
            "{MINIMAL}[users]\nprotect = ['^ok$', '(unclosed']\n"
        ));
        assert!(e.starts_with("dir/csp-sync.toml:12:20: users.protect: \"(unclosed\" is not a valid regular expression"), "{e}");
    }

    #[test]
    fn regexes_are_case_insensitive() {
        let c = p(&format!("{MINIMAL}[users]\nprotect = ['^CEO@']\n")).unwrap();
        assert!(c.users.protect[0].is_match("ceo@acme.com"));
        assert!(c.users.exclude_upn.is_empty() || c.users.exclude_upn[0].is_match("ADMIN@x"));
    }

    #[test]
    fn unknown_module_and_alias() {
        let e = err(&format!(
            "{MINIMAL}[sync]\nmodules = [\"users\", \"licence\"]\n"
        ));
        assert!(
            e.starts_with("dir/csp-sync.toml:12:21: sync.modules: unknown module \"licence\""),
            "{e}"
        );
        assert!(e.contains("did you mean `licences`?"), "{e}");
        let c = p(&format!(
            "{MINIMAL}[sync]\nmodules = [\"licenses\", \"assets\", \"licences\"]\n"
        ))
        .unwrap();
        assert_eq!(c.sync.modules, vec![Module::Licences, Module::Assets]);
    }

    #[test]
    fn unknown_cloud() {
        let e = err(&format!("{MINIMAL}[microsoft]\ncloud = \"usgov\"\n"));
        assert!(
            e.starts_with("dir/csp-sync.toml:12:9: microsoft.cloud: unknown cloud \"usgov\""),
            "{e}"
        );
        assert!(e.contains("usgov-high"), "{e}");
    }

    #[test]
    fn halo_url_with_api_suffix() {
        let text = MINIMAL.replace("halopsa.com/\"", "halopsa.com/api\"");
        let e = err(&text);
        assert!(e.starts_with("dir/csp-sync.toml:9:7: halo.url:"), "{e}");
        assert!(e.contains("\"https://acme.halopsa.com\""), "{e}");
    }

    #[test]
    fn syntax_error_has_position() {
        let e = err("[halo\nurl = 1\n");
        assert!(e.starts_with("dir/csp-sync.toml:1:"), "{e}");
        assert!(e.contains("invalid TOML"), "{e}");
    }

    #[test]
    fn missing_file_says_how_to_create_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.toml");
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("nope.toml: no such file"), "{e}");
        assert!(e.contains("csp-sync init"), "{e}");
    }

    #[test]
    fn locate_order() {
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("user.toml");
        let no_env = |_: &str| None;
        let explicit = Path::new("x.toml");
        assert_eq!(
            locate_with(Some(explicit), no_env, dir.path(), Some(&user)).unwrap(),
            PathBuf::from("x.toml")
        );
        let env = |n: &str| (n == CONFIG_ENV).then(|| PathBuf::from("env.toml"));
        assert_eq!(
            locate_with(None, env, dir.path(), Some(&user)).unwrap(),
            PathBuf::from("env.toml")
        );
        let e = locate_with(None, no_env, dir.path(), Some(&user)).unwrap_err();
        assert!(e.to_string().contains("csp-sync init"), "{e}");
        std::fs::write(&user, "").unwrap();
        assert_eq!(
            locate_with(None, no_env, dir.path(), Some(&user)).unwrap(),
            user
        );
        std::fs::write(dir.path().join(FILE_NAME), "").unwrap();
        assert_eq!(
            locate_with(None, no_env, dir.path(), Some(&user)).unwrap(),
            dir.path().join(FILE_NAME)
        );
    }

    #[test]
    fn write_mapping_appends_and_updates_keeping_comments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("csp-sync.toml");
        let original = format!(
            "# top comment\n{MINIMAL}\n# the first customer\n[[tenant]]\ncustomer_id = \"aaaaaaaa-0000-0000-0000-000000000001\"  # acme\nname = \"Acme\"\nhalo_client_id = 1   # keep me\nhalo_site_id = 3\n"
        );
        std::fs::write(&path, &original).unwrap();
        write_mapping(
            &path,
            "AAAAAAAA-0000-0000-0000-000000000001",
            "ignored",
            MappingEdit::Client {
                halo_client_id: 7,
                halo_site_id: None,
            },
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# top comment\n"), "{text}");
        assert!(text.contains("# the first customer\n[[tenant]]"), "{text}");
        assert!(text.contains("halo_client_id = 7   # keep me"), "{text}");
        assert!(!text.contains("halo_site_id"), "{text}");
        assert!(text.contains("name = \"Acme\""), "{text}");

        write_mapping(
            &path,
            "aaaaaaaa-0000-0000-0000-000000000002",
            "Beta Ltd",
            MappingEdit::Skip,
        )
        .unwrap();
        write_mapping(
            &path,
            "aaaaaaaa-0000-0000-0000-000000000003",
            "Gamma",
            MappingEdit::Client {
                halo_client_id: 9,
                halo_site_id: Some(4),
            },
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let c = parse(&path, &text).unwrap();
        assert_eq!(c.tenants.len(), 3, "{text}");
        assert!(c.tenants[1].skip);
        assert_eq!(c.tenants[1].name.as_deref(), Some("Beta Ltd"));
        assert_eq!(c.tenants[2].halo_site_id, Some(4));
        assert!(
            text.contains("\n\n[[tenant]]\ncustomer_id = \"aaaaaaaa-0000-0000-0000-000000000003\""),
            "{text}"
        );
        // Mapping a skipped customer removes the skip.
        write_mapping(
            &path,
            "aaaaaaaa-0000-0000-0000-000000000002",
            "",
            MappingEdit::Client {
                halo_client_id: 5,
                halo_site_id: None,
            },
        )
        .unwrap();
        let c = parse(&path, &std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(!c.tenants[1].skip);
        assert_eq!(c.tenants[1].halo_client_id, Some(5));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn write_mapping_into_file_without_tenants() {
        let text = edit_mapping(
            Path::new("c.toml"),
            EXAMPLE,
            "aaaaaaaa-0000-0000-0000-000000000001",
            "Acme",
            MappingEdit::Client {
                halo_client_id: 42,
                halo_site_id: None,
            },
        )
        .unwrap();
        assert!(text.starts_with(&EXAMPLE[..200]));
        let c = parse(Path::new("c.toml"), &text).unwrap();
        assert_eq!(c.tenants.len(), 1);
        assert_eq!(c.tenants[0].name.as_deref(), Some("Acme"));
    }

    #[test]
    fn write_mapping_refuses_a_broken_file() {
        let e = edit_mapping(
            Path::new("c.toml"),
            "[halo]\n",
            "aaaaaaaa-0000-0000-0000-000000000001",
            "",
            MappingEdit::Skip,
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("c.toml:1:1:"), "{e}");
    }

    /// MINIMAL with its placeholders replaced by real-looking values.
    fn filled() -> String {
        MINIMAL
            .replace(
                "11111111-1111-1111-1111-111111111111",
                "0f1e2d3c-0000-4000-8000-000000000001",
            )
            .replace(
                "22222222-2222-2222-2222-222222222222",
                "0f1e2d3c-0000-4000-8000-000000000002",
            )
            .replace(
                "33333333-3333-3333-3333-333333333333",
                "0f1e2d3c-0000-4000-8000-000000000003",
            )
            .replace(
                "44444444-4444-4444-4444-444444444444",
                "0f1e2d3c-0000-4000-8000-000000000004",
            )
            .replace("acme.halopsa.com", "fabrikam-it.halopsa.com")
    }

    #[test]
    fn placeholders_are_refused_naming_the_keys_but_customer_ids_never() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, EXAMPLE).unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("placeholder"), "{e}");
        for key in [
            "partner_center.tenant_id",
            "partner_center.client_id",
            "graph.client_id",
            "halo.url",
            "halo.client_id",
        ] {
            assert!(e.contains(key), "{key}: {e}");
        }
        // One placeholder left: only that key is named.
        let one = filled().replace(
            "0f1e2d3c-0000-4000-8000-000000000003",
            "33333333-3333-3333-3333-333333333333",
        );
        std::fs::write(&path, &one).unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(
            e.contains("graph.client_id") && !e.contains("halo.url"),
            "{e}"
        );
        // The auth server alone on the placeholder host.
        let auth = format!("{}auth_url = \"https://acme.halopsa.com/auth\"\n", filled());
        std::fs::write(&path, auth).unwrap();
        assert!(
            load(&path)
                .unwrap_err()
                .to_string()
                .contains("halo.auth_url")
        );
        // Customer ids are never refused, whatever they look like.
        let tenants = format!(
            "{}[[tenant]]\ncustomer_id = \"11111111-1111-1111-1111-111111111111\"\nhalo_client_id = 1\n\
             [[tenant]]\ncustomer_id = \"aaaaaaaa-0000-0000-0000-000000000001\"\nhalo_client_id = 2\n",
            filled()
        );
        std::fs::write(&path, tenants).unwrap();
        assert_eq!(load(&path).unwrap().tenants.len(), 2);
    }

    #[test]
    fn plain_http_only_for_loopback() {
        for (key, section) in [
            ("url", "[halo]"),
            ("auth_url", "[halo]"),
            ("login_url", "[microsoft]"),
            ("graph_url", "[microsoft]"),
            ("partner_center_url", "[microsoft]"),
        ] {
            let text = if section == "[halo]" {
                let base = filled().replace("url = \"https://fabrikam-it.halopsa.com/\"\n", "");
                let extra = if key == "url" {
                    "url = \"http://fabrikam-it.halopsa.com\"\n".to_string()
                } else {
                    "url = \"https://fabrikam-it.halopsa.com\"\nauth_url = \"http://fabrikam-it.halopsa.com/auth\"\n"
                        .to_string()
                };
                base.replace("[halo]\n", &format!("[halo]\n{extra}"))
            } else {
                format!(
                    "{}\n{section}\n{key} = \"http://login.example.com\"\n",
                    filled()
                )
            };
            let e = err(&text);
            assert!(e.contains(key) && e.contains("plain http"), "{key}: {e}");
            assert!(e.contains("https://"), "{key}: {e}");
        }
        for host in [
            "http://127.0.0.1:8080",
            "http://localhost:9",
            "http://[::1]:7",
            "HTTP://127.0.0.2",
        ] {
            let text = format!("{}\n[microsoft]\nlogin_url = \"{host}\"\n", filled());
            p(&text).unwrap_or_else(|e| panic!("{host}: {e}"));
        }
        let e = err(&format!(
            "{}\n[microsoft]\nlogin_url = \"https://user:hunter22@login.example.com\"\n",
            filled()
        ));
        assert!(e.contains("password") && !e.contains("hunter22"), "{e}");
    }

    #[test]
    fn huge_or_complex_regexes_are_refused_without_echoing_them() {
        let long = "a".repeat(50_000);
        let e = err(&format!("{}[users]\nexclude_upn = ['{long}']\n", filled()));
        assert!(
            e.contains("users.exclude_upn") && e.contains("longer than"),
            "{e}"
        );
        assert!(
            e.len() < 1000,
            "the pattern is not echoed whole: {} bytes",
            e.len()
        );
        let e = err(&format!(
            "{}[users]\nprotect = ['(\\w{{100}}){{100}}']\n",
            filled()
        ));
        assert!(e.contains("users.protect") && e.contains("1 MB"), "{e}");
    }

    #[test]
    fn rate_limit_and_concurrency_are_bounded() {
        let e = err(&format!(
            "{}rate_limit = {{ requests = 1, per_seconds = 4294967295 }}\n",
            filled()
        ));
        assert!(
            e.contains("halo.rate_limit.per_seconds") && e.contains("1 to 3600"),
            "{e}"
        );
        let e = err(&format!(
            "{}rate_limit = {{ requests = 1000000, per_seconds = 60 }}\n",
            filled()
        ));
        assert!(e.contains("halo.rate_limit.requests"), "{e}");
        let e = err(&format!("{}[sync]\nconcurrency = 100000\n", filled()));
        assert!(
            e.contains("sync.concurrency") && e.contains("1 to 256"),
            "{e}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn endless_config_file_is_refused() {
        let e = load(Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(
            e.starts_with("/dev/zero: cannot read it: it is larger than 32 MB"),
            "{e}"
        );
    }

    #[test]
    fn many_tenants_load_with_the_right_lines() {
        // Linear in entries: 40,000 entries load in well under a second (`cargo run --release --example
        // config_load` measures it); here the lines named are checked.
        use std::fmt::Write as _;
        let mut text = filled();
        for i in 0..40_000 {
            let _ = write!(
                text,
                "\n[[tenant]]\ncustomer_id = \"aaaaaaaa-0000-0000-0000-{i:012}\"\nhalo_client_id = {}\n",
                i + 1
            );
        }
        let c = p(&text).unwrap();
        assert_eq!(c.tenants.len(), 40_000);
        let first = MINIMAL.lines().count() + 2;
        assert_eq!(c.tenants[0].line, first);
        assert_eq!(c.tenants[39_999].line, first + 4 * 39_999);
    }
}
