//! `csp-sync auth check [--tenants]`: gets every token once and says which work; with `--tenants`, which
//! customer tenants give a Graph token, naming the AADSTS cause for those that do not.
//!
//! The checks are [`credential_checks`] and [`tenant_checks`], which `doctor` reuses.

use anyhow::Result;
use serde::Serialize;

use crate::auth::{AuthError, GraphAuthMode, RefreshTokenName, TokenSource};
use crate::config::Config;
use crate::context::Apis;
use crate::error::Exit;
use crate::render::{Format, Grid};
use crate::secrets::Secrets;
use crate::ui::Ui;

/// One credential tried.
#[derive(Debug, Serialize)]
pub struct Check {
    pub credential: String,
    pub ok: bool,
    pub detail: String,
    /// The token error, for callers that want its cause and fix apart (`doctor`).
    #[serde(skip)]
    pub error: Option<AuthError>,
}

/// Asks for one token and reports the outcome.
pub async fn check(apis: &Apis, name: String, source: TokenSource) -> Check {
    match apis.creds.token(&source).await {
        Ok(_) => Check {
            credential: name,
            ok: true,
            detail: "token issued".into(),
            error: None,
        },
        Err(e) => Check {
            credential: name,
            ok: false,
            detail: e.to_string(),
            error: Some(e),
        },
    }
}

/// The partner-side credentials, each tried once: Partner Center (app, and app+user when a refresh token
/// is held), Graph in the partner tenant (the client secret with `auth = "app"`, the refresh token with
/// `"delegated"`), the Graph refresh token with `auth = "app"` when one is held (`tenants consent` uses
/// it), and Halo.
pub async fn credential_checks(config: &Config, apis: &Apis) -> Vec<Check> {
    let mut checks = vec![
        check(
            apis,
            "Partner Center (app)".into(),
            TokenSource::PartnerCenterApp,
        )
        .await,
    ];
    if apis
        .creds
        .current_refresh_token(RefreshTokenName::PartnerCenter)
        .is_some()
    {
        checks.push(
            check(
                apis,
                "Partner Center (app+user)".into(),
                TokenSource::PartnerCenterUser,
            )
            .await,
        );
    }
    let partner = config.partner_center.tenant_id.clone();
    match apis.creds.graph_mode() {
        GraphAuthMode::App => {
            checks.push(check(apis, "Graph (app)".into(), TokenSource::GraphPartner).await);
            if apis.creds.has_delegated_graph() {
                checks.push(
                    check(
                        apis,
                        "Graph (partner user)".into(),
                        TokenSource::GraphCustomerDelegated(partner),
                    )
                    .await,
                );
            }
        }
        GraphAuthMode::Delegated => {
            checks.push(
                check(
                    apis,
                    "Graph (partner user)".into(),
                    TokenSource::GraphPartner,
                )
                .await,
            );
        }
    }
    checks.push(check(apis, "Halo".into(), TokenSource::Halo).await);
    checks
}

/// The display name of a `[[tenant]]` entry.
pub fn tenant_label(t: &crate::config::TenantEntry) -> String {
    t.name.clone().unwrap_or_else(|| t.customer_id.clone())
}

/// A Graph token in each mapped, non-skipped customer tenant, as a sync asks for it.
pub async fn tenant_checks(config: &Config, apis: &Apis) -> Vec<Check> {
    let mut checks = Vec::new();
    for t in config.tenants.iter().filter(|t| !t.skip) {
        checks.push(
            check(
                apis,
                format!("Graph in {}", tenant_label(t)),
                TokenSource::GraphCustomer(t.customer_id.clone()),
            )
            .await,
        );
    }
    checks
}

pub async fn run(config: &Config, ui: &Ui, tenants: bool) -> Result<Exit> {
    let apis = Apis::new(config, Secrets::from_env())?;
    let mut checks = credential_checks(config, &apis).await;
    if tenants {
        checks.extend(tenant_checks(config, &apis).await);
    }
    match ui.format {
        Format::Json => ui.out_json(&serde_json::json!({"version": 1, "checks": checks})),
        f => {
            let mut g = Grid::new(["credential", "result", "detail"]);
            for c in &checks {
                g.push([
                    c.credential.clone(),
                    if c.ok { "ok" } else { "FAILED" }.to_string(),
                    c.detail.clone(),
                ]);
            }
            ui.out(&g.render(f));
        }
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    ui.info(&format!(
        "csp-sync: {} checked, {failed} failed",
        crate::render::count(checks.len(), "credential", "credentials")
    ));
    for w in apis.take_warnings() {
        ui.warn(&w);
    }
    Ok(if failed > 0 { Exit::Error } else { Exit::Ok })
}
