//! Service principals and application permissions (app-role assignments) in customer tenants
//! (reference 1.6 "Pattern B"): `GET/POST /v1.0/servicePrincipals`, `GET /v1.0/servicePrincipals/{id}`,
//! `GET/POST /v1.0/servicePrincipals/{id}/appRoleAssignments` (path = the principal) and
//! `GET/POST /v1.0/servicePrincipals/{id}/appRoleAssignedTo` (path = the resource).
//!
//! Microsoft Graph's own service principal is in every tenant (it is not stored: [`graph_sp`] builds it
//! with a stable per-tenant object id). The app's service principal and the assignments are stored on the
//! [`Customer`] as Graph `servicePrincipal` / `appRoleAssignment` JSON.
//!
//! Writes need a delegated token of a partner user whose GDAP roles in the tenant include Cloud Application
//! Administrator, Application Administrator, Privileged Role Administrator or Global Administrator; otherwise
//! 403 `Authorization_RequestDenied`, as Entra answers. (Real Entra may demand Privileged Role Administrator
//! to grant Microsoft Graph *application* permissions; the emulator follows the product brief here.)
//!
//! App-only Graph tokens in a customer tenant are issued only when the app's service principal exists there
//! with at least `User.Read.All` granted ([`app_token_allowed`]).

use serde_json::{Value, json};

use crate::graph::graph_error;
use crate::scenario::{Customer, Scenario, State};
use crate::server::{Req, Resp, TokenInfo, Urls};
use crate::util;

/// Microsoft Graph's application id.
pub const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";

/// Application permissions (app roles) of Microsoft Graph the emulator offers: `(value, id, display name)`.
/// The ids are Microsoft's real ones, as published in many public app manifests and scripts (User.Read.All,
/// Organization.Read.All, DeviceManagementManagedDevices.Read.All, Directory.Read.All: several independent
/// sources each; LicenseAssignment.Read.All (added 2025): one public permission-tier list [medium]).
pub const GRAPH_APP_ROLES: &[(&str, &str, &str)] = &[
    (
        "User.Read.All",
        "df021288-bdef-4463-88db-98f22de89214",
        "Read all users' full profiles",
    ),
    (
        "LicenseAssignment.Read.All",
        "e2f98668-2877-4f38-a2f4-8202e0717aa1",
        "Read all license assignments",
    ),
    (
        "Organization.Read.All",
        "498476ce-e0fe-48b0-b801-37ba7e2685c6",
        "Read organization information",
    ),
    (
        "DeviceManagementManagedDevices.Read.All",
        "2f51be20-0bb4-4fed-bf7b-db946066c75e",
        "Read Microsoft Intune devices",
    ),
    (
        "Directory.Read.All",
        "7ab1d382-f21e-4acd-a863-ba3e13f7da61",
        "Read directory data",
    ),
];

/// The application permissions csp-sync's Graph app needs (reference 3.10); granted in every consented
/// tenant of the built-in scenarios.
pub const CSP_SYNC_APP_ROLES: &[&str] = &[
    "User.Read.All",
    "LicenseAssignment.Read.All",
    "Organization.Read.All",
    "DeviceManagementManagedDevices.Read.All",
];

/// GDAP roles that may create service principals and grant app roles: Cloud Application Administrator,
/// Application Administrator, Privileged Role Administrator, Global Administrator (reference 1.6).
pub const APP_ADMIN_ROLES: &[&str] = &[
    "158c047a-c907-4556-b7ef-446551a6b5f7",
    "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3",
    "e8611ab8-c189-46e8-94e1-60213ab1f814",
    "62e90394-69f5-4237-9190-012177145e10",
];

/// Microsoft's tenant, owner of the Microsoft Graph application.
const MICROSOFT_TENANT: &str = "f8cdef31-a31e-4b4a-93e4-5f571e91255a";

/// A GUID derived from `seed` (FNV-1a), stable across runs.
fn stable_guid(seed: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    util::guid_from(&mut fastrand::Rng::with_seed(h))
}

/// The role id of a Microsoft Graph application permission.
pub fn graph_role_id(value: &str) -> Option<&'static str> {
    GRAPH_APP_ROLES
        .iter()
        .find(|(v, _, _)| v.eq_ignore_ascii_case(value))
        .map(|(_, id, _)| *id)
}

/// Microsoft Graph's service principal in a tenant.
pub fn graph_sp(tenant_id: &str) -> Value {
    let roles: Vec<Value> = GRAPH_APP_ROLES
        .iter()
        .map(|(value, id, name)| {
            json!({
                "allowedMemberTypes": ["Application"],
                "description": format!("Allows the app to {} without a signed-in user.", name.to_lowercase()),
                "displayName": name,
                "id": id,
                "isEnabled": true,
                "origin": "Application",
                "value": value
            })
        })
        .collect();
    json!({
        "id": stable_guid(&format!("graph-sp:{}", tenant_id.to_ascii_lowercase())),
        "deletedDateTime": null,
        "accountEnabled": true,
        "appDisplayName": "Microsoft Graph",
        "appId": GRAPH_APP_ID,
        "appOwnerOrganizationId": MICROSOFT_TENANT,
        "displayName": "Microsoft Graph",
        "servicePrincipalNames": [GRAPH_APP_ID, "https://graph.microsoft.com"],
        "servicePrincipalType": "Application",
        "signInAudience": "AzureADMultipleOrgs",
        "appRoles": roles,
        "oauth2PermissionScopes": []
    })
}

/// Every service principal of a tenant: Microsoft Graph's, then the stored ones.
fn all_sps(c: &Customer) -> Vec<Value> {
    let mut v = vec![graph_sp(&c.tenant_id)];
    v.extend(c.service_principals.iter().cloned());
    v
}

fn find_sp(c: &Customer, id: &str) -> Option<Value> {
    all_sps(c)
        .into_iter()
        .find(|sp| util::s(sp, "id").eq_ignore_ascii_case(id))
}

fn app_sp(c: &Customer, app_id: &str) -> Option<Value> {
    all_sps(c)
        .into_iter()
        .find(|sp| util::s(sp, "appId").eq_ignore_ascii_case(app_id))
}

/// Whether an app-only Graph token may be issued to `app_id` in this tenant: its service principal exists
/// and holds at least `User.Read.All` on Microsoft Graph.
pub(crate) fn app_token_allowed(c: &Customer, app_id: &str) -> bool {
    let Some(sp) = app_sp(c, app_id) else {
        return false;
    };
    let graph = graph_sp(&c.tenant_id);
    let users = graph_role_id("User.Read.All").unwrap_or_default();
    c.app_role_assignments.iter().any(|a| {
        util::s(a, "principalId") == util::s(&sp, "id")
            && util::s(a, "resourceId") == util::s(&graph, "id")
            && util::s(a, "appRoleId") == users
    })
}

fn new_app_sp(id: &str, app_id: &str, name: &str, owner: &str) -> Value {
    json!({
        "id": id,
        "deletedDateTime": null,
        "accountEnabled": true,
        "appDisplayName": name,
        "appId": app_id,
        "appOwnerOrganizationId": owner,
        "displayName": name,
        "servicePrincipalNames": [app_id],
        "servicePrincipalType": "Application",
        "signInAudience": "AzureADMultipleOrgs",
        "appRoles": [],
        "oauth2PermissionScopes": []
    })
}

/// `id`: real assignment ids are 43-character URL-safe base64 strings.
fn new_assignment(
    id: &str,
    created: i64,
    principal: &Value,
    resource: &Value,
    role_id: &str,
) -> Value {
    json!({
        "id": id,
        "deletedDateTime": null,
        "appRoleId": role_id,
        "createdDateTime": util::rfc3339(created),
        "principalDisplayName": util::s(principal, "displayName"),
        "principalId": util::s(principal, "id"),
        "principalType": "ServicePrincipal",
        "resourceDisplayName": util::s(resource, "displayName"),
        "resourceId": util::s(resource, "id")
    })
}

impl Scenario {
    /// Creates (`true`) the Graph app's service principal in a tenant with every application permission
    /// csp-sync needs ([`CSP_SYNC_APP_ROLES`]), or removes (`false`) that service principal and its
    /// assignments. What `csp-sync tenants consent` does for `[graph] auth = "app"`, done behind its back.
    pub fn set_app_permissions(&mut self, tenant_id: &str, granted: bool) {
        let app_id = self.graph_app.client_id.clone();
        let owner = self.partner_tenant_id.clone();
        let now = self.now_secs();
        let c = self.tenant_mut(tenant_id);
        let existing = c
            .service_principals
            .iter()
            .find(|sp| util::s(sp, "appId") == app_id)
            .cloned();
        if !granted {
            if let Some(sp) = existing {
                let id = util::s(&sp, "id").to_string();
                c.service_principals.retain(|s| util::s(s, "id") != id);
                c.app_role_assignments
                    .retain(|a| util::s(a, "principalId") != id);
            }
            return;
        }
        let sp = existing.unwrap_or_else(|| {
            // Deterministic (scenarios compare equal when built twice).
            let id = stable_guid(&format!(
                "app-sp:{}:{app_id}",
                c.tenant_id.to_ascii_lowercase()
            ));
            let sp = new_app_sp(&id, &app_id, "csp-sync", &owner);
            c.service_principals.push(sp.clone());
            sp
        });
        let graph = graph_sp(&c.tenant_id);
        for value in CSP_SYNC_APP_ROLES {
            let role = graph_role_id(value).unwrap_or_default();
            let have = c.app_role_assignments.iter().any(|a| {
                util::s(a, "principalId") == util::s(&sp, "id") && util::s(a, "appRoleId") == role
            });
            if !have {
                let id: String = stable_guid(&format!("assignment:{}:{role}", util::s(&sp, "id")))
                    .replace('-', "")
                    .chars()
                    .chain("AAAAAAAAAAA".chars())
                    .collect();
                c.app_role_assignments.push(new_assignment(
                    &id,
                    now - now % 86_400,
                    &sp,
                    &graph,
                    role,
                ));
            }
        }
    }

    /// Removes one GDAP role (a role template id, reference 1.6) from every relationship of a customer,
    /// e.g. Cloud Application Administrator `158c047a-c907-4556-b7ef-446551a6b5f7` so that the writes of
    /// `tenants consent` are refused with 403.
    pub fn remove_gdap_role(&mut self, tenant_id: &str, role_template_id: &str) {
        for r in &mut self.tenant_mut(tenant_id).gdap {
            if let Some(roles) = r
                .pointer_mut("/accessDetails/unifiedRoles")
                .and_then(Value::as_array_mut)
            {
                roles.retain(|x| {
                    !util::s(x, "roleDefinitionId").eq_ignore_ascii_case(role_template_id)
                });
            }
        }
    }

    /// For scenarios built or saved before service principals existed: every tenant where the Graph app is
    /// consented and no service principal is recorded gets the app's service principal with its grants.
    pub(crate) fn provision_consented(&mut self, only_without_field: Option<&[bool]>) {
        let app_id = self.graph_app.client_id.clone();
        let tenants: Vec<String> = self
            .customers
            .iter()
            .enumerate()
            .filter(|(i, c)| {
                c.consented_apps.contains(&app_id)
                    && c.service_principals.is_empty()
                    && only_without_field.is_none_or(|m| m.get(*i).copied().unwrap_or(false))
            })
            .map(|(_, c)| c.tenant_id.clone())
            .collect();
        for t in tenants {
            self.set_app_permissions(&t, true);
        }
    }
}

fn may_write(token: &TokenInfo, c: &Customer, now: i64) -> Result<(), Resp> {
    let denied = || {
        graph_error(
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )
    };
    if !token.delegated {
        // csp-sync's app holds no Application.ReadWrite.All / AppRoleAssignment.ReadWrite.All.
        return Err(denied());
    }
    let allowed = c.gdap.iter().any(|r| {
        util::s(r, "status") == "active"
            && util::parse_time(util::s(r, "endDateTime")).is_none_or(|end| end > now)
            && r.pointer("/accessDetails/unifiedRoles")
                .and_then(Value::as_array)
                .is_some_and(|roles| {
                    roles.iter().any(|x| {
                        APP_ADMIN_ROLES
                            .iter()
                            .any(|a| util::s(x, "roleDefinitionId").eq_ignore_ascii_case(a))
                    })
                })
    });
    if allowed { Ok(()) } else { Err(denied()) }
}

fn not_found(id: &str) -> Resp {
    graph_error(
        404,
        "Request_ResourceNotFound",
        &format!(
            "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
        ),
    )
}

fn collection(urls: &Urls, context: &str, items: Vec<Value>) -> Resp {
    Resp::json(
        200,
        &json!({"@odata.context": format!("{}/v1.0/$metadata#{context}", urls.graph), "value": items}),
    )
}

fn select(items: Vec<Value>, req: &Req) -> Vec<Value> {
    let props: Vec<String> = req
        .param("$select")
        .map(|s| s.split(',').map(|p| p.trim().to_string()).collect())
        .unwrap_or_default();
    if props.is_empty() {
        items
    } else {
        items.iter().map(|v| util::select(v, &props)).collect()
    }
}

/// Parses `appId eq '...'` (the only filter understood here).
fn app_id_filter(f: &str) -> Option<String> {
    let f = f.trim();
    let (prop, rest) = f.split_once(' ')?;
    if !prop.eq_ignore_ascii_case("appId") {
        return None;
    }
    let v = rest.trim().strip_prefix("eq")?.trim();
    Some(v.strip_prefix('\'')?.strip_suffix('\'')?.to_string())
}

/// Routes `servicePrincipals...`; `None` when the path is not one of these.
pub(crate) fn route(
    st: &mut State,
    urls: &Urls,
    req: &Req,
    token: &TokenInfo,
    segs: &[&str],
) -> Option<Resp> {
    if segs.first() != Some(&"servicePrincipals") {
        return None;
    }
    let Some(ci) = st
        .customers
        .iter()
        .position(|c| c.tenant_id.eq_ignore_ascii_case(&token.tenant))
    else {
        return Some(graph_error(
            403,
            "Authorization_RequestDenied",
            "The emulator serves service principals of customer tenants only.",
        ));
    };
    let c = st.customers[ci].clone();
    let resp = match (req.method.as_str(), &segs[1..]) {
        ("GET", []) => {
            let mut items = all_sps(&c);
            if let Some(f) = req.param("$filter") {
                let Some(app_id) = app_id_filter(f) else {
                    return Some(graph_error(
                        400,
                        "BadRequest",
                        &format!(
                            "Unsupported $filter {f} (the emulator understands appId eq '...')."
                        ),
                    ));
                };
                items.retain(|sp| util::s(sp, "appId").eq_ignore_ascii_case(&app_id));
            }
            collection(urls, "servicePrincipals", select(items, req))
        }
        ("POST", []) => create_sp(st, req, token, ci),
        ("GET", [id]) => match find_sp(&c, id) {
            Some(sp) => {
                let mut v = select(vec![sp], req).remove(0);
                v["@odata.context"] = json!(format!(
                    "{}/v1.0/$metadata#servicePrincipals/$entity",
                    urls.graph
                ));
                Resp::json(200, &v)
            }
            None => not_found(id),
        },
        ("GET", [id, rel @ ("appRoleAssignments" | "appRoleAssignedTo")]) => {
            if find_sp(&c, id).is_none() {
                return Some(not_found(id));
            }
            let key = if *rel == "appRoleAssignments" {
                "principalId"
            } else {
                "resourceId"
            };
            let items: Vec<Value> = c
                .app_role_assignments
                .iter()
                .filter(|a| util::s(a, key).eq_ignore_ascii_case(id))
                .cloned()
                .collect();
            collection(
                urls,
                &format!("servicePrincipals('{id}')/{rel}"),
                select(items, req),
            )
        }
        ("POST", [id, rel @ ("appRoleAssignments" | "appRoleAssignedTo")]) => {
            assign(st, req, token, ci, id, rel == &"appRoleAssignments")
        }
        _ => graph_error(
            400,
            "BadRequest",
            &format!(
                "{} /v1.0/{} is not served by the emulator.",
                req.method,
                segs.join("/")
            ),
        ),
    };
    Some(resp)
}

fn create_sp(st: &mut State, req: &Req, token: &TokenInfo, ci: usize) -> Resp {
    if let Err(r) = may_write(token, &st.customers[ci], st.now_secs()) {
        return r;
    }
    let body = match req.json() {
        Ok(b) => b,
        Err(e) => return graph_error(400, "BadRequest", &e),
    };
    let app_id = util::s(&body, "appId").to_string();
    if app_id.is_empty() {
        return graph_error(
            400,
            "Request_BadRequest",
            "A value is required for property 'appId' of resource 'ServicePrincipal'.",
        );
    }
    if app_sp(&st.customers[ci], &app_id).is_some() {
        return graph_error(
            409,
            "Request_MultipleObjectsWithSameKeyValue",
            "Another object with the same value for property servicePrincipalNames already exists.",
        );
    }
    // Only the partner's multi-tenant Graph app can be instantiated in a customer tenant.
    if !app_id.eq_ignore_ascii_case(&st.graph_app.client_id) {
        return graph_error(
            400,
            "Request_BadRequest",
            &format!(
                "The appId '{app_id}' of the service principal does not reference a valid application object."
            ),
        );
    }
    let sp = new_app_sp(
        &util::guid(),
        &st.graph_app.client_id,
        "csp-sync",
        &st.partner_tenant_id,
    );
    st.customers[ci].service_principals.push(sp.clone());
    let mut out = sp;
    out["@odata.context"] = json!("$metadata#servicePrincipals/$entity");
    Resp::json(201, &out)
}

fn assign(
    st: &mut State,
    req: &Req,
    token: &TokenInfo,
    ci: usize,
    id: &str,
    by_principal: bool,
) -> Resp {
    let c = st.customers[ci].clone();
    if find_sp(&c, id).is_none() {
        return not_found(id);
    }
    if let Err(r) = may_write(token, &c, st.now_secs()) {
        return r;
    }
    let body = match req.json() {
        Ok(b) => b,
        Err(e) => return graph_error(400, "BadRequest", &e),
    };
    let principal_id = util::s(&body, "principalId");
    let resource_id = util::s(&body, "resourceId");
    let role_id = util::s(&body, "appRoleId");
    let path_matches = if by_principal {
        principal_id.eq_ignore_ascii_case(id)
    } else {
        resource_id.eq_ignore_ascii_case(id)
    };
    if !path_matches {
        return graph_error(
            400,
            "Request_BadRequest",
            &format!(
                "The {} in the body must be the service principal of the path ({id}).",
                if by_principal {
                    "principalId"
                } else {
                    "resourceId"
                }
            ),
        );
    }
    let (Some(principal), Some(resource)) = (find_sp(&c, principal_id), find_sp(&c, resource_id))
    else {
        return graph_error(
            404,
            "Request_ResourceNotFound",
            "The principal or resource service principal of the assignment does not exist in this tenant.",
        );
    };
    let offered = resource
        .get("appRoles")
        .and_then(Value::as_array)
        .is_some_and(|roles| {
            roles
                .iter()
                .any(|r| util::s(r, "id").eq_ignore_ascii_case(role_id))
        });
    if !offered {
        return graph_error(
            400,
            "Request_BadRequest",
            "Permission being assigned was not found on application",
        );
    }
    let exists = c.app_role_assignments.iter().any(|a| {
        util::s(a, "principalId").eq_ignore_ascii_case(principal_id)
            && util::s(a, "resourceId").eq_ignore_ascii_case(resource_id)
            && util::s(a, "appRoleId").eq_ignore_ascii_case(role_id)
    });
    if exists {
        return graph_error(
            400,
            "Request_BadRequest",
            "Permission being assigned already exists on the object",
        );
    }
    let a = new_assignment(
        &util::opaque(43),
        st.now_secs(),
        &principal,
        &resource,
        role_id,
    );
    st.customers[ci].app_role_assignments.push(a.clone());
    Resp::json(201, &a)
}
