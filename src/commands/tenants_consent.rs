//! `csp-sync tenants consent [--tenant ID|NAME]... [--dry-run]`: puts the Graph app into each customer
//! tenant with Partner Center's application consent API (reference 1.6, pattern A step 1), using the
//! app+user Partner Center token. "Permission entry already exists" (HTTP 409) means it is there already
//! and counts as success.
//!
//! Not done here: for `[graph] auth = "app"`, granting the app's application permissions (app-role
//! assignments on its service principal, reference 1.6 pattern B) in each tenant.

use anyhow::{Result, bail};
use serde::Serialize;
use serde_json::{Value, json};

use crate::api::{self, new_guid, send_authed};
use crate::auth::{RefreshTokenName, TokenSource};
use crate::commands::run;
use crate::config::Config;
use crate::context::Apis;
use crate::error::Exit;
use crate::http::{Api, Request, RequestKind};
use crate::model::Customer;
use crate::render::{Format, Grid};
use crate::secrets::Secrets;
use crate::ui::Ui;

/// Microsoft Graph's application id (the `EnterpriseApplicationId` of the grant).
pub const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";

/// The delegated Graph scopes csp-sync needs (reference 3.10): users, SKUs, organization, directory
/// subscriptions and Intune devices. `Directory.Read.All` is the documented superset fallback.
/// [medium confidence: the reference shows CIPP's scope list, not one for a read-only app like this.]
pub const GRAPH_SCOPES: &str = "User.Read.All,Directory.Read.All,Organization.Read.All,\
LicenseAssignment.Read.All,DeviceManagementManagedDevices.Read.All";

/// One tenant's result (also the JSON shape).
#[derive(Debug, Clone, Serialize)]
pub struct ConsentRow {
    pub customer_id: String,
    pub name: String,
    /// `consented`, `already_consented`, `would_consent` (dry run) or `failed`.
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The request body of the application consent.
pub fn consent_body(app_id: &str) -> Value {
    json!({
        "ApplicationId": app_id,
        "ApplicationGrants": [
            { "EnterpriseApplicationId": GRAPH_APP_ID, "Scope": GRAPH_SCOPES }
        ]
    })
}

/// The customers to consent: `--tenant` values (customer id, Partner Center company name or `[[tenant]]`
/// name, case-insensitive), else every mapped customer.
fn choose<'a>(
    config: &Config,
    customers: &'a [Customer],
    filters: &[String],
) -> Result<Vec<&'a Customer>> {
    if filters.is_empty() {
        return Ok(customers
            .iter()
            .filter(|c| {
                config
                    .tenant(&c.id)
                    .is_some_and(|t| !t.skip && t.halo_client_id.is_some())
            })
            .collect());
    }
    let mut out: Vec<&Customer> = Vec::new();
    for f in filters {
        let f_l = f.trim().to_lowercase();
        let hits: Vec<&Customer> = customers
            .iter()
            .filter(|c| {
                c.id.eq_ignore_ascii_case(&f_l)
                    || c.company_name.to_lowercase() == f_l
                    || config
                        .tenant(&c.id)
                        .and_then(|t| t.name.as_deref())
                        .is_some_and(|n| n.to_lowercase() == f_l)
            })
            .collect();
        match hits.as_slice() {
            [] => bail!(
                "--tenant {f:?} matches no Partner Center customer (give a customer id or a name; \
                 `csp-sync tenants list` shows them)"
            ),
            [one] => {
                if !out.iter().any(|c| c.id == one.id) {
                    out.push(one);
                }
            }
            many => bail!(
                "--tenant {f:?} matches several customers: {}; give the customer id instead",
                many.iter()
                    .map(|c| format!("{} ({})", c.company_name, c.id))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    Ok(out)
}

async fn consent_one(apis: &Apis, base_url: &str, app_id: &str, customer: &Customer) -> ConsentRow {
    let url = format!(
        "{}/v1/customers/{}/applicationconsents",
        base_url.trim_end_matches('/').trim_end_matches("/v1"),
        api::lower(&customer.id)
    );
    // Repeating a consent is harmless (409), so the call may be retried like a read.
    let req = Request::post(Api::PartnerCenter, url)
        .kind(RequestKind::Idempotent)
        .header("MS-RequestId", new_guid())
        .header("MS-CorrelationId", new_guid())
        .json(consent_body(app_id));
    let mut row = ConsentRow {
        customer_id: customer.id.clone(),
        name: customer.company_name.clone(),
        result: "consented",
        error: None,
    };
    match send_authed(
        &apis.http,
        &apis.creds,
        &TokenSource::PartnerCenterUser,
        req,
    )
    .await
    {
        Ok(_) => {}
        Err(e)
            if e.status() == Some(409)
                || e.to_string().to_lowercase().contains("already exists") =>
        {
            row.result = "already_consented";
        }
        Err(e) => {
            row.result = "failed";
            row.error = Some(e.to_string());
        }
    }
    row
}

pub async fn run(config: &Config, ui: &Ui, tenants: &[String], dry_run: bool) -> Result<Exit> {
    let apis = Apis::new(config, Secrets::from_env())?;
    let has_user_token = apis
        .creds
        .current_refresh_token(RefreshTokenName::PartnerCenter)
        .is_some();
    if !has_user_token && !dry_run {
        bail!(
            "tenants consent needs an app+user Partner Center token, and no Partner Center refresh token was \
             found: set CSP_SYNC_PARTNER_CENTER_REFRESH_TOKEN, or CSP_SYNC_PARTNER_CENTER_REFRESH_TOKEN_FILE \
             naming a file that holds it, or store it in the keyring with `csp-sync auth set \
             partner-center-refresh-token`; get one with `csp-sync auth login partner-center` (a partner user \
             with the Admin Agent role and a GDAP role of Global Administrator, Privileged Role Administrator \
             or Cloud Application Administrator in each customer)"
        );
    }
    let customers = run::read_customers(&apis).await?;
    let chosen = choose(config, &customers, tenants)?;
    let app_id = config.graph.client_id.clone();
    let mut rows = Vec::new();
    for c in chosen {
        if dry_run {
            rows.push(ConsentRow {
                customer_id: c.id.clone(),
                name: c.company_name.clone(),
                result: "would_consent",
                error: None,
            });
        } else {
            rows.push(consent_one(&apis, &config.microsoft.partner_center_url, &app_id, c).await);
        }
    }
    match ui.format {
        Format::Json => ui.out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&json!({
                "version": 1,
                "application_id": app_id,
                "scopes": GRAPH_SCOPES,
                "dry_run": dry_run,
                "consents": rows,
            }))?
        )),
        f => {
            let mut g = Grid::new(["customer", "customer id", "result", "detail"]);
            for r in &rows {
                g.push([
                    r.name.clone(),
                    r.customer_id.clone(),
                    r.result.replace('_', " "),
                    r.error.clone().unwrap_or_default(),
                ]);
            }
            ui.out(&g.render(f));
        }
    }
    if dry_run && !has_user_token {
        ui.warn("no Partner Center refresh token: a real run needs one (`csp-sync auth login partner-center`)");
    }
    let failed = rows.iter().filter(|r| r.result == "failed").count();
    ui.info(&format!(
        "csp-sync: {} tenants, {failed} failed{}",
        rows.len(),
        if dry_run {
            " (dry run: nothing was sent)"
        } else {
            ""
        }
    ));
    for w in apis.take_warnings() {
        ui.warn(&w);
    }
    Ok(if failed > 0 { Exit::Error } else { Exit::Ok })
}
