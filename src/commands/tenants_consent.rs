//! `csp-sync tenants consent [--tenant ID|NAME]... [--dry-run]`: puts the Graph app into each customer
//! tenant.
//!
//! 1. Partner Center's application consent API (reference 1.6, pattern A step 1), with the app+user
//!    Partner Center token. "Permission entry already exists" (HTTP 409) means it is there already and
//!    counts as success.
//! 2. For `[graph] auth = "app"` only (reference 1.6 pattern B, 3.10): with a *delegated* Graph token of the
//!    partner user in that tenant ([`TokenSource::GraphCustomerDelegated`]: the Graph app's refresh token
//!    redeemed there, through GDAP), make sure the app's service principal exists
//!    (`GET /v1.0/servicePrincipals?$filter=appId eq '{id}'`, else `POST /v1.0/servicePrincipals`) and that
//!    each application permission in [`APP_PERMISSIONS`] is granted as an app-role assignment on Microsoft
//!    Graph's service principal of that tenant (role ids read from its `appRoles[]` by `value`;
//!    `POST /v1.0/servicePrincipals/{graph-sp-id}/appRoleAssignedTo`, the documented form with the resource
//!    in the path). Assignments already there (listed first) are success. A 403 on a write means the
//!    partner user lacks Cloud Application Administrator or Privileged Role Administrator via GDAP there.
//!
//! `--dry-run` sends no write: it reads what it can (the service principal and its assignments, when a
//! delegated token is already possible in that tenant) and lists what a real run would do.

use anyhow::{Result, bail};
use serde::Serialize;
use serde_json::{Value, json};

use crate::api::{self, new_guid, send_authed};
use crate::auth::{GraphAuthMode, RefreshTokenName, TokenSource};
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

/// Delegated scopes added to the consent for `[graph] auth = "app"`: the partner user creates the app's
/// service principal and grants its app roles with them (reference 1.6: CIPP consents
/// `AppRoleAssignment.ReadWrite.All` for the same purpose). [medium confidence]
pub const PROVISIONING_SCOPES: &str = "Application.ReadWrite.All,AppRoleAssignment.ReadWrite.All";

/// The Graph application permissions csp-sync needs with `[graph] auth = "app"` (reference 3.10): users,
/// SKUs, organization and directory subscriptions, Intune devices.
pub const APP_PERMISSIONS: &[&str] = &[
    "User.Read.All",
    "LicenseAssignment.Read.All",
    "Organization.Read.All",
    "DeviceManagementManagedDevices.Read.All",
];

/// A permission that may be missing from a tenant's Microsoft Graph (newer than some clouds), and the one
/// that covers what it is used for (reference 3.10: `subscribedSkus` accepts either).
const COVERED_BY: &[(&str, &str)] = &[("LicenseAssignment.Read.All", "Organization.Read.All")];

/// One tenant's result (also the JSON shape).
#[derive(Debug, Clone, Serialize)]
pub struct ConsentRow {
    pub customer_id: String,
    pub name: String,
    /// `consented`, `already_consented`, `would_consent` (dry run) or `failed`.
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `[graph] auth = "app"` only: the app's service principal and application permissions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_permissions: Option<AppPermissions>,
}

impl ConsentRow {
    fn failed(&self) -> bool {
        self.result == "failed"
            || self
                .app_permissions
                .as_ref()
                .is_some_and(|p| p.result == "failed")
    }
}

/// The app's service principal and application permissions in one tenant.
#[derive(Debug, Clone, Serialize)]
pub struct AppPermissions {
    /// `granted` (something was written), `already_granted` (nothing to do), `would_grant` (dry run, something
    /// to do), `failed`, or `skipped` (the application consent failed).
    pub result: &'static str,
    /// `created`, `already_present`, `would_create` (dry run) or `unknown` (not read).
    pub service_principal: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_principal_id: Option<String>,
    pub permissions: Vec<PermissionRow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why a dry run could not read the tenant (its lists are then what a real run would try).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One application permission.
#[derive(Debug, Clone, Serialize)]
pub struct PermissionRow {
    pub permission: &'static str,
    /// The app role id in that tenant's Microsoft Graph (when read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_role_id: Option<String>,
    /// `granted`, `already_granted`, `would_grant`, `not_offered` (missing from this tenant's Microsoft
    /// Graph but covered by another permission), `not_done` (an earlier step failed) or `failed`.
    pub result: &'static str,
}

/// The delegated scopes of the consent: [`GRAPH_SCOPES`], plus [`PROVISIONING_SCOPES`] for
/// `[graph] auth = "app"`.
pub fn consent_scopes(mode: GraphAuthMode) -> String {
    match mode {
        GraphAuthMode::App => format!("{GRAPH_SCOPES},{PROVISIONING_SCOPES}"),
        GraphAuthMode::Delegated => GRAPH_SCOPES.to_string(),
    }
}

/// The request body of the application consent.
pub fn consent_body(app_id: &str, scopes: &str) -> Value {
    json!({
        "ApplicationId": app_id,
        "ApplicationGrants": [
            { "EnterpriseApplicationId": GRAPH_APP_ID, "Scope": scopes }
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

async fn consent_one(
    apis: &Apis,
    base_url: &str,
    app_id: &str,
    scopes: &str,
    customer: &Customer,
) -> ConsentRow {
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
        .json(consent_body(app_id, scopes));
    let mut row = ConsentRow {
        customer_id: customer.id.clone(),
        name: customer.company_name.clone(),
        result: "consented",
        error: None,
        app_permissions: None,
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

/// The Graph calls of step 2 in one tenant, as the partner user.
struct TenantGraph<'a> {
    apis: &'a Apis,
    base: String,
    source: TokenSource,
    tenant_name: &'a str,
}

impl TenantGraph<'_> {
    async fn get_all(&self, first_url: String) -> Result<Vec<Value>, api::Error> {
        let mut url = first_url;
        let mut out = Vec::new();
        // Service principals by appId and one principal's assignments: a few pages at most.
        for _ in 0..50 {
            let req = Request::get(Api::Graph, url.clone());
            let resp = send_authed(&self.apis.http, &self.apis.creds, &self.source, req).await?;
            let page: Value = resp.json()?;
            if let Some(items) = page.get("value").and_then(Value::as_array) {
                out.extend(items.iter().cloned());
            }
            match page.get("@odata.nextLink").and_then(Value::as_str) {
                Some(next) if !next.is_empty() => url = self.apis.graph.rebase(next),
                _ => return Ok(out),
            }
        }
        Err(api::Error::Invalid(format!(
            "Graph listing {url} did not end after 50 pages"
        )))
    }

    async fn sp_by_app_id(&self, app_id: &str) -> Result<Option<Value>, api::Error> {
        let url = format!(
            "{}/v1.0/servicePrincipals?$filter=appId%20eq%20%27{}%27",
            self.base,
            api::lower(app_id)
        );
        Ok(self.get_all(url).await?.into_iter().next())
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, api::Error> {
        // Both writes are safe to repeat: a repeated create answers 409 / "already exists", handled below.
        let req = Request::post(Api::Graph, format!("{}/v1.0/{path}", self.base))
            .kind(RequestKind::Idempotent)
            .json(body);
        let resp = send_authed(&self.apis.http, &self.apis.creds, &self.source, req).await?;
        Ok(resp.json()?)
    }

    /// What went wrong, with the fix; a 403 on a write is a missing GDAP role.
    fn explain(&self, what: &str, e: &api::Error) -> String {
        if e.status() == Some(403) {
            format!(
                "{what} was refused (HTTP 403): needs Cloud Application Administrator or Privileged Role \
                 Administrator via GDAP in {}; add one of these roles to the GDAP relationship (and the partner \
                 user to its security group), then run `csp-sync tenants consent --tenant \"{}\"` again",
                self.tenant_name, self.tenant_name
            )
        } else {
            format!("{what} failed in {}: {e}", self.tenant_name)
        }
    }
}

fn sp_id(sp: &Value) -> Option<String> {
    sp.get("id").and_then(Value::as_str).map(api::lower)
}

/// The enabled application roles of Microsoft Graph's service principal: `value` -> id.
fn app_roles(graph_sp: &Value) -> Vec<(String, String)> {
    graph_sp
        .get("appRoles")
        .and_then(Value::as_array)
        .map(|roles| {
            roles
                .iter()
                .filter(|r| r.get("isEnabled").and_then(Value::as_bool) != Some(false))
                .filter(|r| {
                    r.get("allowedMemberTypes")
                        .and_then(Value::as_array)
                        .is_none_or(|t| t.iter().any(|x| x.as_str() == Some("Application")))
                })
                .filter_map(|r| {
                    Some((
                        r.get("value")?.as_str()?.to_string(),
                        api::lower(r.get("id")?.as_str()?),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn all_permissions(result: &'static str) -> Vec<PermissionRow> {
    APP_PERMISSIONS
        .iter()
        .map(|p| PermissionRow {
            permission: p,
            app_role_id: None,
            result,
        })
        .collect()
}

/// Step 2 in one tenant: the app's service principal and its application permissions.
async fn provision(
    apis: &Apis,
    graph_url: &str,
    app_id: &str,
    customer: &Customer,
    dry_run: bool,
) -> AppPermissions {
    let base = graph_url.trim_end_matches('/');
    let g = TenantGraph {
        apis,
        base: base.strip_suffix("/v1.0").unwrap_or(base).to_string(),
        source: TokenSource::GraphCustomerDelegated(api::lower(&customer.id)),
        tenant_name: &customer.company_name,
    };
    let mut out = AppPermissions {
        result: "already_granted",
        service_principal: "already_present",
        service_principal_id: None,
        permissions: Vec::new(),
        error: None,
        note: None,
    };
    let fail = |mut out: AppPermissions, error: String| {
        out.result = "failed";
        out.error = Some(error);
        if out.permissions.is_empty() {
            out.permissions = all_permissions("not_done");
        }
        out
    };

    // The app's service principal.
    let existing = match g.sp_by_app_id(app_id).await {
        Ok(sp) => sp,
        Err(e) if dry_run => {
            // Before the application consent no delegated token is possible there: list everything.
            out.result = "would_grant";
            out.service_principal = "unknown";
            out.permissions = all_permissions("would_grant");
            out.note = Some(format!(
                "not read ({}); a real run checks the service principal and grants what is missing",
                first_sentence(&e.to_string())
            ));
            return out;
        }
        Err(e) => return fail(out, g.explain("reading the app's service principal", &e)),
    };
    let mut wrote = false;
    let mut would = false;
    out.service_principal_id = existing.as_ref().and_then(sp_id);
    if out.service_principal_id.is_none() {
        if dry_run {
            out.service_principal = "would_create";
            would = true;
        } else {
            match g
                .post("servicePrincipals", json!({ "appId": app_id }))
                .await
            {
                Ok(sp) => out.service_principal_id = sp_id(&sp),
                // Created meanwhile (or by a retried request): read it.
                Err(e) if e.status() == Some(409) => match g.sp_by_app_id(app_id).await {
                    Ok(sp) => out.service_principal_id = sp.as_ref().and_then(sp_id),
                    Err(e) => {
                        return fail(out, g.explain("reading the app's service principal", &e));
                    }
                },
                Err(e) => {
                    return fail(out, g.explain("creating the app's service principal", &e));
                }
            }
            if out.service_principal_id.is_none() {
                return fail(
                    out,
                    format!(
                        "Graph created no usable service principal for app {app_id} in {} (no id in the \
                         answer); check it in the Entra admin centre (Enterprise applications)",
                        customer.company_name
                    ),
                );
            }
            out.service_principal = "created";
            wrote = true;
        }
    }

    // Microsoft Graph's service principal and its application roles.
    let graph_sp = match g.sp_by_app_id(GRAPH_APP_ID).await {
        Ok(Some(sp)) => sp,
        Ok(None) => {
            return fail(
                out,
                format!(
                    "Microsoft Graph's service principal (appId {GRAPH_APP_ID}) was not found in {}",
                    customer.company_name
                ),
            );
        }
        Err(e) => {
            return fail(
                out,
                g.explain("reading Microsoft Graph's service principal", &e),
            );
        }
    };
    let Some(graph_sp_id) = sp_id(&graph_sp) else {
        return fail(
            out,
            format!(
                "Microsoft Graph's service principal in {} has no id",
                customer.company_name
            ),
        );
    };
    let roles = app_roles(&graph_sp);

    // What is granted already.
    let granted: Vec<String> = match &out.service_principal_id {
        Some(id) => match g
            .get_all(format!(
                "{}/v1.0/servicePrincipals/{id}/appRoleAssignments",
                g.base
            ))
            .await
        {
            Ok(items) => items
                .iter()
                .filter(|a| {
                    a.get("resourceId")
                        .and_then(Value::as_str)
                        .is_some_and(|r| api::lower(r) == graph_sp_id)
                })
                .filter_map(|a| a.get("appRoleId").and_then(Value::as_str).map(api::lower))
                .collect(),
            Err(e) => return fail(out, g.explain("listing the app's permissions", &e)),
        },
        None => Vec::new(),
    };

    let mut error = None;
    for permission in APP_PERMISSIONS {
        let role_id = roles
            .iter()
            .find(|(v, _)| v.eq_ignore_ascii_case(permission))
            .map(|(_, id)| id.clone());
        let Some(role_id) = role_id else {
            let cover = COVERED_BY
                .iter()
                .find(|(p, _)| p == permission)
                .map(|(_, c)| *c)
                .filter(|c| roles.iter().any(|(v, _)| v.eq_ignore_ascii_case(c)));
            let result = if cover.is_some() {
                "not_offered"
            } else {
                error.get_or_insert_with(|| {
                    format!(
                        "Microsoft Graph in {} offers no application permission {permission}",
                        customer.company_name
                    )
                });
                "failed"
            };
            out.permissions.push(PermissionRow {
                permission,
                app_role_id: None,
                result,
            });
            continue;
        };
        let result = if granted.contains(&role_id) {
            "already_granted"
        } else if dry_run {
            would = true;
            "would_grant"
        } else if error.is_some() {
            "not_done"
        } else {
            let principal = out.service_principal_id.clone().unwrap_or_default();
            let body = json!({
                "principalId": principal,
                "resourceId": graph_sp_id,
                "appRoleId": role_id,
            });
            match g
                .post(
                    &format!("servicePrincipals/{graph_sp_id}/appRoleAssignedTo"),
                    body,
                )
                .await
            {
                Ok(_) => {
                    wrote = true;
                    "granted"
                }
                Err(e) if e.to_string().to_lowercase().contains("already exists") => {
                    "already_granted"
                }
                Err(e) => {
                    error = Some(g.explain(&format!("granting {permission}"), &e));
                    "failed"
                }
            }
        };
        out.permissions.push(PermissionRow {
            permission,
            app_role_id: Some(role_id),
            result,
        });
    }
    out.result = if error.is_some() {
        "failed"
    } else if wrote {
        "granted"
    } else if would {
        "would_grant"
    } else {
        "already_granted"
    };
    out.error = error;
    out
}

/// The first sentence of an error, for a short note.
fn first_sentence(s: &str) -> String {
    let end = s.find(". ").map_or(s.len(), |i| i + 1);
    s[..end].to_string()
}

/// The table cell of step 2.
fn permissions_cell(p: &AppPermissions) -> String {
    let names = |result: &str| {
        p.permissions
            .iter()
            .filter(|r| r.result == result)
            .map(|r| r.permission)
            .collect::<Vec<_>>()
    };
    let mut parts = Vec::new();
    match p.service_principal {
        "created" => parts.push("service principal created".to_string()),
        "would_create" => parts.push("would create the service principal".to_string()),
        _ => {}
    }
    for (result, label) in [
        ("granted", "granted"),
        ("would_grant", "would grant"),
        ("already_granted", "already granted"),
        ("not_offered", "not offered (covered)"),
        ("failed", "failed"),
        ("not_done", "not done"),
    ] {
        let n = names(result);
        if !n.is_empty() {
            parts.push(format!("{label}: {}", n.join(", ")));
        }
    }
    if p.result == "skipped" {
        parts.push("skipped".into());
    }
    parts.join("; ")
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
    let mode = apis.creds.graph_mode();
    let app_mode = mode == GraphAuthMode::App;
    let has_delegated_graph = apis.creds.has_delegated_graph();
    if app_mode && !has_delegated_graph && !dry_run {
        bail!(
            "with [graph] auth = \"app\", tenants consent also grants the Graph app its application permissions \
             in each customer, as the partner user: it needs that user's refresh token for the Graph app \
             ([graph] client_id), and none was found. Set CSP_SYNC_GRAPH_REFRESH_TOKEN, or \
             CSP_SYNC_GRAPH_REFRESH_TOKEN_FILE naming a file that holds it, or store it in the keyring with \
             `csp-sync auth set graph-refresh-token`; get one with `csp-sync auth login graph` (a partner user \
             with Cloud Application Administrator or Privileged Role Administrator via GDAP in each customer). \
             Nothing was changed."
        );
    }
    let customers = run::read_customers(&apis).await?;
    let chosen = choose(config, &customers, tenants)?;
    let app_id = config.graph.client_id.clone();
    let scopes = consent_scopes(mode);
    let mut rows = Vec::new();
    for c in chosen {
        let mut row = if dry_run {
            ConsentRow {
                customer_id: c.id.clone(),
                name: c.company_name.clone(),
                result: "would_consent",
                error: None,
                app_permissions: None,
            }
        } else {
            consent_one(
                &apis,
                &config.microsoft.partner_center_url,
                &app_id,
                &scopes,
                c,
            )
            .await
        };
        if app_mode {
            row.app_permissions = Some(if row.result == "failed" {
                AppPermissions {
                    result: "skipped",
                    service_principal: "unknown",
                    service_principal_id: None,
                    permissions: all_permissions("not_done"),
                    error: None,
                    note: Some("the application consent failed".into()),
                }
            } else if dry_run && !has_delegated_graph {
                AppPermissions {
                    result: "would_grant",
                    service_principal: "unknown",
                    service_principal_id: None,
                    permissions: all_permissions("would_grant"),
                    error: None,
                    note: Some(
                        "not read: no Graph refresh token (`csp-sync auth login graph`); a real run needs one"
                            .into(),
                    ),
                }
            } else {
                provision(&apis, &config.microsoft.graph_url, &app_id, c, dry_run).await
            });
        }
        rows.push(row);
    }
    match ui.format {
        Format::Json => ui.out_json(&json!({
            "version": 1,
            "application_id": app_id,
            "scopes": scopes,
            "graph_auth": if app_mode { "app" } else { "delegated" },
            "app_permissions": if app_mode { APP_PERMISSIONS } else { &[] },
            "dry_run": dry_run,
            "consents": rows,
        })),
        f => {
            let mut headers = vec!["customer", "customer id", "result"];
            if app_mode {
                headers.push("app permissions");
            }
            headers.push("detail");
            let mut g = Grid::new(headers);
            for r in &rows {
                let mut cells = vec![
                    r.name.clone(),
                    r.customer_id.clone(),
                    r.result.replace('_', " "),
                ];
                let perms = r.app_permissions.as_ref();
                if app_mode {
                    cells.push(perms.map(permissions_cell).unwrap_or_default());
                }
                let detail: Vec<String> = [
                    r.error.clone(),
                    perms.and_then(|p| p.error.clone()),
                    perms.and_then(|p| p.note.clone()),
                ]
                .into_iter()
                .flatten()
                .collect();
                cells.push(detail.join("; "));
                g.push(cells);
            }
            ui.out(&g.render(f));
        }
    }
    if dry_run && !has_user_token {
        ui.warn("no Partner Center refresh token: a real run needs one (`csp-sync auth login partner-center`)");
    }
    let failed = rows.iter().filter(|r| r.failed()).count();
    ui.info(&format!(
        "csp-sync: {} tenants, {failed} failed{}",
        rows.len(),
        if dry_run {
            " (dry run: nothing was written)"
        } else {
            ""
        }
    ));
    for w in apis.take_warnings() {
        ui.warn(&w);
    }
    Ok(if failed > 0 { Exit::Error } else { Exit::Ok })
}
