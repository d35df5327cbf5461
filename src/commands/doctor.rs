//! `csp-sync doctor`: every credential, permission, GDAP role, consent and config value the configured
//! modules need, checked once and in set-up order (config, Partner Center, refresh tokens, Graph per tenant,
//! GDAP roles, Halo and its permissions, the state directory), each OK or its fix. Exit 1 when anything a
//! sync needs is missing; warnings (a recommended role, a relationship ending soon, an optional token) exit
//! 0. The JSON is meant for monitoring.
//!
//! It reuses `auth check` ([`auth_check::credential_checks`], [`auth_check::tenant_checks`]) and
//! `tenants health` ([`tenants_health::health_rows`]) rather than repeating their checks.

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::api::halo_report;
use crate::auth::GraphAuthMode;
use crate::commands::{auth_check, run, tenants_health};
use crate::config::{self, BulkRead, Config};
use crate::context::{self, Apis};
use crate::error::Exit;
use crate::halo_read::{ReadPath, ReadPaths};
use crate::plan::{HaloEntity, Module};
use crate::render::{Format, Grid};
use crate::secrets::Secrets;
use crate::state::StateDir;
use crate::ui::Ui;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Works, but something should be looked at; does not fail the run.
    Warn,
    /// A sync needs this and it is missing: exit 1.
    Fail,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "WARN",
            Status::Fail => "FAILED",
        }
    }
}

/// One line of the checklist.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The set-up step: `config`, `partner_center`, `refresh_tokens`, `graph`, `gdap`, `halo`, `state`.
    pub step: &'static str,
    pub check: String,
    pub status: Status,
    pub detail: String,
    /// What to do, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// The csp-sync command that fixes it, where one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

#[derive(Default)]
struct Findings(Vec<Finding>);

impl Findings {
    fn push(
        &mut self,
        step: &'static str,
        check: impl Into<String>,
        status: Status,
        detail: impl Into<String>,
        fix: Option<String>,
    ) {
        let command = fix.as_deref().and_then(command_in);
        self.0.push(Finding {
            step,
            check: check.into(),
            status,
            detail: detail.into(),
            fix,
            command,
        });
    }

    fn ok(&mut self, step: &'static str, check: impl Into<String>, detail: impl Into<String>) {
        self.push(step, check, Status::Ok, detail, None);
    }

    /// A token check as a finding: its cause and its fix apart.
    fn token(&mut self, step: &'static str, c: &auth_check::Check, failed: Status) {
        match &c.error {
            None => self.ok(step, c.credential.clone(), c.detail.clone()),
            Some(e) => {
                let (cause, fix) = e.explain();
                let code = e.code.map(|c| format!("AADSTS{c}: ")).unwrap_or_default();
                let detail = if e.description.is_empty() {
                    format!("{code}{cause}")
                } else {
                    format!("{code}{cause} ({})", e.description)
                };
                self.push(step, c.credential.clone(), failed, detail, Some(fix));
            }
        }
    }
}

/// The csp-sync command of a fix: the fix itself when it is one, else the first `` `csp-sync …` `` quoted in
/// it ("sign in again with `csp-sync auth login graph`").
fn command_in(fix: &str) -> Option<String> {
    let t = fix.trim();
    if t.starts_with("csp-sync ") && !t.contains('`') {
        return Some(t.split(" (").next().unwrap_or(t).trim().to_string());
    }
    t.split('`')
        .skip(1)
        .step_by(2)
        .find(|q| q.starts_with("csp-sync "))
        .map(str::to_string)
}

/// What each module reads in Halo: (entity, list key).
fn halo_reads(modules: &[Module]) -> Vec<(HaloEntity, &'static str)> {
    let mut out = vec![(HaloEntity::Client, "clients")];
    if modules.contains(&Module::Users) {
        out.push((HaloEntity::Site, "sites"));
        out.push((HaloEntity::Users, "users"));
    }
    if modules.contains(&Module::Licences) {
        out.push((HaloEntity::SoftwareLicence, "licences"));
    }
    if modules.contains(&Module::Assets) {
        out.push((HaloEntity::Asset, "assets"));
    }
    if modules.contains(&Module::Billing) {
        out.push((HaloEntity::Invoice, "invoices"));
    }
    out
}

/// Runs an entity's report for one row (`bulk_read = "report"`): the finding, and the path a sync's read
/// of it takes.
async fn report_finding(
    f: &mut Findings,
    apis: &Apis,
    entity: HaloEntity,
    q: &halo_report::ReportQuery,
) -> ReadPath {
    let name = crate::halo_read::entity_name(entity);
    let check = format!("report of {name} (bulk_read = \"report\")");
    match apis.halo.report(&q.sql(Some(1))).await {
        Ok(_) => {
            f.ok("halo", check, "a one-row report ran");
            ReadPath::Report
        }
        Err(e) if e.status() == Some(403) => {
            f.push(
                "halo",
                check,
                Status::Warn,
                format!("{e}; {name} are read with paged lists instead (more requests)"),
                Some("give the Halo API application the read:reporting and edit:reporting permissions, or set [halo] bulk_read = \"api\"".into()),
            );
            ReadPath::ListReportRefused
        }
        Err(e) => {
            f.push(
                "halo",
                check,
                Status::Fail,
                format!("{e}; a sync's read of {name} would fail"),
                Some("set [halo] bulk_read = \"api\" (this Halo version may name its columns otherwise)".into()),
            );
            ReadPath::Report
        }
    }
}

/// The modules any mapped tenant runs: `[sync] modules` and every tenant's own list.
fn configured_modules(config: &Config) -> Vec<Module> {
    let mut m = config.sync.modules.clone();
    for t in config.tenants.iter().filter(|t| !t.skip) {
        m.extend(t.modules.iter().flatten().copied());
    }
    m.sort();
    m.dedup();
    m
}

pub async fn run(explicit_config: Option<&Path>, ui: &Ui) -> Result<Exit> {
    let mut f = Findings::default();
    let loaded = config::locate(explicit_config)
        .map_err(anyhow::Error::from)
        .and_then(|p| config::load(&p).map_err(anyhow::Error::from));
    match loaded {
        Err(e) => f.push(
            "config",
            "config file",
            Status::Fail,
            crate::app::chain(&e),
            Some(
                "csp-sync init csp-sync.toml (then fill in the keys it names), or pass --config PATH"
                    .into(),
            ),
        ),
        Ok(config) => check_all(&config, &mut f).await?,
    }
    show(ui, &f.0);
    let failed = f.0.iter().filter(|x| x.status == Status::Fail).count();
    let warned = f.0.iter().filter(|x| x.status == Status::Warn).count();
    ui.info(&format!(
        "csp-sync: {}, {failed} failed, {}",
        crate::render::count(f.0.len(), "check", "checks"),
        crate::render::count(warned, "warning", "warnings")
    ));
    Ok(if failed > 0 { Exit::Error } else { Exit::Ok })
}

#[allow(clippy::too_many_lines)] // the checklist, in set-up order
async fn check_all(config: &Config, f: &mut Findings) -> Result<()> {
    let now = context::now()?;
    // 1. The config.
    f.ok("config", "config file", config.path.display().to_string());
    let modules = configured_modules(config);
    let names: Vec<&str> = modules.iter().map(|m| m.as_str()).collect();
    let unavailable: Vec<&str> = modules
        .iter()
        .filter(|m| crate::modules::find(**m).is_none())
        .map(|m| m.as_str())
        .collect();
    if unavailable.is_empty() {
        f.ok("config", "modules", names.join(", "));
    } else {
        f.push(
            "config",
            "modules",
            Status::Warn,
            format!(
                "{}: {} not available in this version yet and skipped",
                names.join(", "),
                unavailable.join(", ")
            ),
            Some("remove them from [sync] modules".into()),
        );
    }
    let mapped: Vec<&config::TenantEntry> = config
        .tenants
        .iter()
        .filter(|t| !t.skip && t.halo_client_id.is_some())
        .collect();
    if mapped.is_empty() {
        f.push(
            "config",
            "mapped tenants",
            Status::Fail,
            "no [[tenant]] is mapped to a Halo client: a sync has nothing to do",
            Some("csp-sync tenants map".into()),
        );
    } else {
        f.ok(
            "config",
            "mapped tenants",
            format!("{} mapped", mapped.len()),
        );
    }

    let apis = Apis::new(config, Secrets::from_env())?;
    let creds = auth_check::credential_checks(config, &apis).await;
    let by_name = |n: &str| creds.iter().find(|c| c.credential == n);
    let delegated = apis.creds.graph_mode() == GraphAuthMode::Delegated;

    // 2. Partner Center: the app and its secret, then the customer list.
    let mut customers = None;
    if let Some(c) = by_name("Partner Center (app)") {
        f.token("partner_center", c, Status::Fail);
        if c.ok {
            match run::read_customers(&apis).await {
                Ok(list) => {
                    let unmapped = list.iter().filter(|c| config.tenant(&c.id).is_none()).count();
                    if unmapped > 0 {
                        f.push(
                            "partner_center",
                            "customers",
                            Status::Warn,
                            format!("{}, {unmapped} not in the config", crate::render::count(list.len(), "customer", "customers")),
                            Some("csp-sync tenants map".into()),
                        );
                    } else {
                        f.ok("partner_center", "customers", format!("{}, all in the config", crate::render::count(list.len(), "customer", "customers")));
                    }
                    for t in &mapped {
                        if !list.iter().any(|c| c.id.eq_ignore_ascii_case(&t.customer_id)) {
                            f.push(
                                "partner_center",
                                format!("customer {}", auth_check::tenant_label(t)),
                                Status::Fail,
                                format!("{} is not among the Partner Center customers", t.customer_id),
                                Some(format!(
                                    "csp-sync tenants map --customer {} --skip (or correct its customer_id)",
                                    t.customer_id
                                )),
                            );
                        }
                    }
                    customers = Some(list);
                }
                Err(e) => f.push(
                    "partner_center",
                    "customers",
                    Status::Fail,
                    crate::app::chain(&e),
                    Some("give the Partner Center app the Partner Center API permission (user_impersonation) and admin consent in Entra".into()),
                ),
            }
        }
    }

    // 3. Refresh tokens.
    match by_name("Partner Center (app+user)") {
        Some(c) => f.token("refresh_tokens", c, Status::Fail),
        None => f.push(
            "refresh_tokens",
            "Partner Center refresh token",
            Status::Warn,
            "none held: `tenants consent` needs it, and licences read assigned seats from Graph instead",
            Some("csp-sync auth login partner-center".into()),
        ),
    }
    match by_name("Graph (partner user)") {
        Some(c) => f.token(
            "refresh_tokens",
            c,
            Status::Fail,
        ),
        None => f.push(
            "refresh_tokens",
            "Graph refresh token",
            Status::Warn,
            "none held: `tenants consent` needs it to grant the Graph app's application permissions",
            Some("csp-sync auth login graph".into()),
        ),
    }

    // 4. The Graph app: in the partner tenant, then in each mapped customer tenant.
    if let Some(c) = by_name("Graph (app)") {
        f.token("graph", c, Status::Fail);
    }
    for c in auth_check::tenant_checks(config, &apis).await {
        f.token("graph", &c, Status::Fail);
    }

    // 5. GDAP roles of each mapped customer (`tenants health`).
    if let Some(customers) = &customers {
        let mine: Vec<_> = customers
            .iter()
            .filter(|c| {
                mapped
                    .iter()
                    .any(|t| t.customer_id.eq_ignore_ascii_case(&c.id))
            })
            .cloned()
            .collect();
        match tenants_health::health_rows(config, &apis, &mine, now).await {
            Ok(rows) => {
                f.ok(
                    "gdap",
                    "GDAP relationships",
                    "read with DelegatedAdminRelationship.Read.All",
                );
                for r in &rows {
                    gdap_findings(f, r, delegated);
                }
            }
            Err(e) => f.push(
                "gdap",
                "GDAP relationships",
                if delegated { Status::Fail } else { Status::Warn },
                crate::app::chain(&e),
                Some(format!(
                    "give the Graph app ({}) the {} permission DelegatedAdminRelationship.Read.All in the partner tenant and grant admin consent",
                    config.graph.client_id,
                    if delegated { "delegated" } else { "application" }
                )),
            ),
        }
    }

    // 6. Halo: the app and its secret, what the modules read, reporting.
    if let Some(c) = by_name("Halo") {
        f.token("halo", c, Status::Fail);
        if c.ok {
            let mut paths = ReadPaths::default();
            for (entity, key) in halo_reads(&modules) {
                let path = entity.path();
                paths.0.insert(entity, ReadPath::List);
                match apis.halo.probe(path, key).await {
                    Ok(_) => f.ok("halo", format!("read {path}"), "allowed"),
                    Err(e) => f.push(
                        "halo",
                        format!("read {path}"),
                        Status::Fail,
                        e.to_string(),
                        Some(format!(
                            "give the Halo API application ({}) and its agent permission to read and edit {path} (Configuration > Integrations > Halo API > the application > Permissions)",
                            config.halo.client_id
                        )),
                    ),
                }
            }
            if config.halo.bulk_read == BulkRead::Report {
                for (entity, _) in halo_reads(&modules) {
                    if let Some(q) = halo_report::query_for(entity) {
                        let path = report_finding(f, &apis, entity, q).await;
                        paths.0.insert(entity, path);
                    }
                }
            }
            f.ok("halo", "read paths", format!("a sync reads {paths}"));
        }
    }

    // 7. The state directory.
    let state = StateDir::new(config.sync.state_dir.clone());
    match state.lock() {
        Ok(lock) => {
            drop(lock);
            f.ok(
                "state",
                "state directory",
                format!("{} is writable", state.path().display()),
            );
        }
        Err(e) => {
            let text = crate::app::chain(&e);
            if text.contains("another csp-sync run") {
                f.push(
                    "state",
                    "state directory",
                    Status::Warn,
                    text,
                    Some("wait for the running sync to finish".into()),
                );
            } else {
                f.push(
                    "state",
                    "state directory",
                    Status::Fail,
                    text,
                    Some(format!(
                        "set [sync] state_dir in {} to a directory this user may write",
                        config.path.display()
                    )),
                );
            }
        }
    }
    Ok(())
}

/// The GDAP findings of one customer. With `[graph] auth = "delegated"` a sync reads through GDAP, so a
/// missing relationship or role fails; with `"app"` it reads with the app's own permissions and GDAP is
/// needed by `tenants consent`: a warning.
fn gdap_findings(f: &mut Findings, r: &tenants_health::HealthRow, delegated: bool) {
    let check = format!("GDAP roles in {}", r.name);
    let where_ = format!(
        "in Partner Center: Customers > {} > Admin relationships",
        r.name
    );
    let gaps = r.gdap_gaps.len();
    for g in &r.gdap_gaps {
        f.push(
            "gdap",
            check.clone(),
            if delegated {
                Status::Fail
            } else {
                Status::Warn
            },
            g.clone(),
            Some(format!(
                "{where_}: request a relationship with the roles it needs"
            )),
        );
    }
    for role in &r.missing_recommended {
        f.push(
            "gdap",
            check.clone(),
            Status::Warn,
            format!("{role} is missing (recommended)"),
            Some(format!("{where_}: add {role} to the relationship")),
        );
    }
    let others: Vec<&String> = r
        .flags
        .iter()
        .filter(|x| {
            !r.gdap_gaps.contains(x)
                && !x.starts_with("missing GDAP role")
                && !x.starts_with("Graph token fails")
        })
        .collect();
    for x in &others {
        f.push(
            "gdap",
            check.clone(),
            Status::Warn,
            (*x).clone(),
            Some(format!("{where_}: extend or renew it")),
        );
    }
    if gaps == 0 && r.missing_recommended.is_empty() && others.is_empty() {
        let roles: Vec<&str> = r
            .relationships
            .iter()
            .filter(|x| x.status.eq_ignore_ascii_case("active"))
            .flat_map(|x| x.roles.iter().map(String::as_str))
            .collect();
        f.ok("gdap", check, roles.join(", "));
    }
}

fn show(ui: &Ui, findings: &[Finding]) {
    let failed = findings.iter().filter(|x| x.status == Status::Fail).count();
    let warned = findings.iter().filter(|x| x.status == Status::Warn).count();
    match ui.format {
        Format::Json => ui.out_json(&serde_json::json!({
            "version": 1,
            "ok": failed == 0,
            "failed": failed,
            "warnings": warned,
            "checks": findings,
        })),
        fmt => {
            let mut g = Grid::new(["step", "check", "result", "detail / fix"]);
            for x in findings {
                let mut detail = x.detail.clone();
                if let Some(fix) = &x.fix {
                    detail.push_str("\nfix: ");
                    detail.push_str(fix);
                }
                g.push([
                    x.step.to_string(),
                    x.check.clone(),
                    x.status.word().to_string(),
                    detail,
                ]);
            }
            ui.out(&g.render(fmt));
        }
    }
}
