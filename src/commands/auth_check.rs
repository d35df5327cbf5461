//! `csp-sync auth check [--tenants]`: gets every token once and says which work; with `--tenants`, which
//! customer tenants give a Graph token, naming the AADSTS cause for those that do not.

use anyhow::Result;
use serde::Serialize;

use crate::auth::TokenSource;
use crate::config::Config;
use crate::context::Apis;
use crate::error::Exit;
use crate::render::{Format, Grid};
use crate::secrets::Secrets;
use crate::ui::Ui;

#[derive(Debug, Serialize)]
struct Check {
    credential: String,
    ok: bool,
    detail: String,
}

async fn check(apis: &Apis, name: String, source: TokenSource) -> Check {
    match apis.creds.token(&source).await {
        Ok(_) => Check {
            credential: name,
            ok: true,
            detail: "token issued".into(),
        },
        Err(e) => Check {
            credential: name,
            ok: false,
            detail: e.to_string(),
        },
    }
}

pub async fn run(config: &Config, ui: &Ui, tenants: bool) -> Result<Exit> {
    let apis = Apis::new(config, Secrets::from_env())?;
    let mut checks = vec![
        check(
            &apis,
            "Partner Center (app)".into(),
            TokenSource::PartnerCenterApp,
        )
        .await,
        check(&apis, "Halo".into(), TokenSource::Halo).await,
    ];
    if apis
        .creds
        .current_refresh_token(crate::auth::RefreshTokenName::PartnerCenter)
        .is_some()
    {
        checks.push(
            check(
                &apis,
                "Partner Center (app+user)".into(),
                TokenSource::PartnerCenterUser,
            )
            .await,
        );
    }
    if tenants {
        for t in config.tenants.iter().filter(|t| !t.skip) {
            let name = format!(
                "Graph in {}",
                t.name.clone().unwrap_or_else(|| t.customer_id.clone())
            );
            checks.push(
                check(
                    &apis,
                    name,
                    TokenSource::GraphCustomer(t.customer_id.clone()),
                )
                .await,
            );
        }
    }
    match ui.format {
        Format::Json => ui.out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&serde_json::json!({"version": 1, "checks": checks}))?
        )),
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
        "csp-sync: {} credentials checked, {failed} failed",
        checks.len()
    ));
    Ok(if failed > 0 { Exit::Error } else { Exit::Ok })
}
