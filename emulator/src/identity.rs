//! Microsoft identity platform: `/{tenant}/oauth2/v2.0/token`, the v1 `/{tenant}/oauth2/token`, and the
//! device-code flow. Reference: microsoft-apis.md section 1.
//!
//! Refresh tokens rotate: every redemption returns a new one; the old one keeps working too (as Entra does
//! for a while), until [`crate::State::revoke_refresh_tokens`].

use serde_json::{Value, json};

use crate::FaultKind;
use crate::scenario::State;
use crate::server::{Audience, Req, Resp, TokenInfo};
use crate::util;

pub(crate) const GRAPH_RESOURCE: &str = "https://graph.microsoft.com";
pub(crate) const PC_RESOURCE: &str = "https://api.partnercenter.microsoft.com";

/// Entra token-endpoint error body (reference 1.8).
pub(crate) fn aad_error(status: u16, error: &str, code: u32, message: &str) -> Resp {
    let trace = util::guid();
    let corr = util::guid();
    let ts = jiff::Timestamp::now()
        .strftime("%Y-%m-%d %H:%M:%SZ")
        .to_string();
    Resp::json(
        status,
        &json!({
            "error": error,
            "error_description": format!(
                "AADSTS{code}: {message}\r\nTrace ID: {trace}\r\nCorrelation ID: {corr}\r\nTimestamp: {ts}"
            ),
            "error_codes": [code],
            "timestamp": ts,
            "trace_id": trace,
            "correlation_id": corr,
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        }),
    )
}

pub(crate) fn fault_response(kind: &FaultKind) -> Resp {
    match kind {
        FaultKind::TooManyRequests { retry_after } => {
            let r = aad_error(
                429,
                "temporarily_unavailable",
                90055,
                "TenantThrottlingError - There are too many incoming requests. This exception is thrown for blocked tenants.",
            );
            match retry_after {
                Some(v) => r.with_header("retry-after", v),
                None => r,
            }
        }
        FaultKind::Status(code) => aad_error(
            *code,
            "temporarily_unavailable",
            90033,
            "A transient error has occurred. Please try again.",
        ),
        _ => aad_error(
            500,
            "server_error",
            90033,
            "A transient error has occurred. Please try again.",
        ),
    }
}

/// The tenant id a path segment names (GUID or a verified domain), if the scenario knows it.
fn resolve_tenant(st: &State, seg: &str) -> Option<String> {
    if seg.eq_ignore_ascii_case(&st.partner_tenant_id)
        || seg.eq_ignore_ascii_case(&st.partner_domain)
        || seg.eq_ignore_ascii_case("organizations")
        || seg.eq_ignore_ascii_case("common")
    {
        return Some(st.partner_tenant_id.clone());
    }
    st.customers
        .iter()
        .find(|c| {
            c.tenant_id.eq_ignore_ascii_case(seg)
                || c.domain.eq_ignore_ascii_case(seg)
                || c.extra_domains.iter().any(|d| d.eq_ignore_ascii_case(seg))
        })
        .map(|c| c.tenant_id.clone())
}

fn basic_auth(req: &Req) -> Option<(String, String)> {
    let h = req.header("authorization")?;
    let (scheme, b64) = h.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64_decode(b64.trim())?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((
        util::percent_decode(id, true),
        util::percent_decode(secret, true),
    ))
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = ALPHA.iter().position(|a| *a == c)? as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    Some(out)
}

pub(crate) fn handle(st: &mut State, req: &Req) -> Resp {
    let segs: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    let (tenant_seg, v2, endpoint) = match segs.as_slice() {
        [t, "oauth2", "v2.0", e] => (*t, true, *e),
        [t, "oauth2", e] => (*t, false, *e),
        _ => {
            return aad_error(
                404,
                "invalid_request",
                90012,
                &format!(
                    "The requested path {} does not exist on the identity platform emulator; tokens are at /{{tenant}}/oauth2/v2.0/token.",
                    req.path
                ),
            );
        }
    };
    if req.method != "POST" {
        return aad_error(
            405,
            "invalid_request",
            900561,
            "The endpoint only accepts POST requests.",
        );
    }
    let Some(tenant) = resolve_tenant(st, tenant_seg) else {
        return aad_error(
            400,
            "invalid_request",
            90002,
            &format!(
                "Tenant '{tenant_seg}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
            ),
        );
    };
    let form = req.form();
    match endpoint {
        "token" => token(st, req, &form, &tenant, v2),
        "devicecode" => device_code(st, &form),
        other => aad_error(
            404,
            "invalid_request",
            90012,
            &format!("Unknown endpoint {other}."),
        ),
    }
}

fn device_code(st: &mut State, form: &[(String, String)]) -> Resp {
    let client_id = util::param(form, "client_id").unwrap_or("");
    if client_id != st.partner_center_app.client_id && client_id != st.graph_app.client_id {
        return aad_error(
            400,
            "unauthorized_client",
            700016,
            &format!("Application with identifier '{client_id}' was not found in the directory."),
        );
    }
    let device_code = util::opaque(48);
    let user_code = util::opaque(9).to_uppercase();
    st.rt
        .device_codes
        .insert(device_code.clone(), (client_id.to_string(), 0));
    Resp::json(
        200,
        &json!({
            "user_code": user_code,
            "device_code": device_code,
            "verification_uri": "https://microsoft.com/devicelogin",
            "expires_in": 900,
            "interval": 1,
            "message": format!("To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code {user_code} to authenticate."),
        }),
    )
}

struct Client {
    id: String,
}

fn authenticate_client(
    st: &State,
    req: &Req,
    form: &[(String, String)],
    tenant: &str,
    public_ok: bool,
) -> Result<Client, Resp> {
    let basic = basic_auth(req);
    let client_id = util::param(form, "client_id")
        .map(str::to_string)
        .or_else(|| basic.as_ref().map(|b| b.0.clone()))
        .unwrap_or_default();
    if client_id.is_empty() {
        return Err(aad_error(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        ));
    }
    let expected = if client_id == st.partner_center_app.client_id {
        &st.partner_center_app.client_secret
    } else if client_id == st.graph_app.client_id {
        &st.graph_app.client_secret
    } else {
        return Err(aad_error(
            400,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        ));
    };
    let secret = util::param(form, "client_secret")
        .map(str::to_string)
        .or_else(|| basic.map(|b| b.1));
    match secret {
        Some(s) if &s == expected => Ok(Client { id: client_id }),
        None if public_ok => Ok(Client { id: client_id }),
        None => Err(aad_error(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )),
        Some(_) => Err(aad_error(
            401,
            "invalid_client",
            7000215,
            &format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        )),
    }
}

/// The resource a v2 `scope` or v1 `resource` names, and whether the scope is `.default`.
fn parse_resource(
    st: &State,
    form: &[(String, String)],
    v2: bool,
) -> Result<(Audience, String, bool), Resp> {
    if v2 {
        if util::param(form, "resource").is_some() {
            return Err(aad_error(
                400,
                "invalid_request",
                901002,
                "The 'resource' request parameter isn't supported.",
            ));
        }
        let Some(scope) = util::param(form, "scope") else {
            return Err(aad_error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'scope'.",
            ));
        };
        let resource_scopes: Vec<&str> = scope.split(' ').filter(|s| s.contains("://")).collect();
        let Some(first) = resource_scopes.first() else {
            return Err(aad_error(
                400,
                "invalid_scope",
                70011,
                &format!(
                    "The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
                ),
            ));
        };
        let (resource, perm) = first.rsplit_once('/').unwrap_or((first, ""));
        let audience = audience_of(st, resource).ok_or_else(|| {
            aad_error(400, "invalid_resource", 500011, &format!("The resource principal named {resource} was not found in the tenant. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant."))
        })?;
        if resource_scopes.iter().any(|s| !s.starts_with(resource)) {
            return Err(aad_error(
                400,
                "invalid_scope",
                70011,
                &format!(
                    "The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid: all scopes must belong to one resource."
                ),
            ));
        }
        Ok((audience, resource.to_string(), perm == ".default"))
    } else {
        let Some(resource) = util::param(form, "resource") else {
            return Err(aad_error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'resource'.",
            ));
        };
        let resource = resource.trim_end_matches('/');
        let audience = audience_of(st, resource).ok_or_else(|| {
            aad_error(
                400,
                "invalid_resource",
                500011,
                &format!("The resource principal named {resource} was not found in the tenant."),
            )
        })?;
        Ok((audience, resource.to_string(), true))
    }
}

fn audience_of(_st: &State, resource: &str) -> Option<Audience> {
    let r = resource.trim_end_matches('/');
    if r.eq_ignore_ascii_case(GRAPH_RESOURCE) || r == "00000003-0000-0000-c000-000000000000" {
        Some(Audience::Graph)
    } else if r.eq_ignore_ascii_case(PC_RESOURCE) || r == "fa3d9a0c-3fb0-42cc-9193-47c7ecd2edbd" {
        Some(Audience::PartnerCenter)
    } else {
        None
    }
}

fn token(st: &mut State, req: &Req, form: &[(String, String)], tenant: &str, v2: bool) -> Resp {
    let grant = util::param(form, "grant_type").unwrap_or("");
    if !matches!(
        grant,
        "client_credentials" | "refresh_token" | "urn:ietf:params:oauth:grant-type:device_code"
    ) {
        return aad_error(
            400,
            "unsupported_grant_type",
            70003,
            &format!("The app requested an unsupported grant type '{grant}'."),
        );
    }
    let public_ok = grant != "client_credentials";
    let client = match authenticate_client(st, req, form, tenant, public_ok) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (audience, resource, is_default) = match parse_resource(st, form, v2) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let is_partner = tenant.eq_ignore_ascii_case(&st.partner_tenant_id);
    let customer = st.customer(tenant).cloned();
    let mut new_refresh = None;
    let delegated = match grant {
        "client_credentials" => {
            if v2 && !is_default {
                return aad_error(
                    400,
                    "invalid_scope",
                    1_002_012,
                    "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).",
                );
            }
            // App-only Graph in a customer tenant needs the app's service principal there with its
            // application permissions granted (at least User.Read.All); Partner Center keeps the consent
            // check. Entra answers 700016 when the service principal is missing altogether and issues a
            // role-less token when nothing is granted; the emulator answers 65001 in both cases, which
            // names the fix (`csp-sync tenants consent`).
            if let Some(c) = &customer
                && !(if audience == Audience::Graph {
                    crate::app_permissions::app_token_allowed(c, &client.id)
                } else {
                    c.consented_apps.contains(&client.id)
                })
            {
                return aad_error(
                    400,
                    "invalid_client",
                    65001,
                    &format!(
                        "The user or administrator has not consented to use the application with ID '{}'. Send an interactive authorization request for this user and resource.",
                        client.id
                    ),
                );
            }
            if audience == Audience::PartnerCenter
                && (!is_partner || client.id != st.partner_center_app.client_id)
            {
                return aad_error(
                    400,
                    "unauthorized_client",
                    700016,
                    &format!(
                        "Application with identifier '{}' is not registered in Partner Center for tenant '{tenant}'.",
                        client.id
                    ),
                );
            }
            false
        }
        "refresh_token" => {
            let rt = util::param(form, "refresh_token").unwrap_or("");
            let bound = if rt.is_empty() {
                None
            } else if rt == st.partner_center_app.refresh_token {
                Some(st.partner_center_app.client_id.clone())
            } else if !st.graph_app.refresh_token.is_empty() && rt == st.graph_app.refresh_token {
                Some(st.graph_app.client_id.clone())
            } else {
                st.rt.refresh_tokens.get(rt).cloned()
            };
            let Some(bound) = bound else {
                return aad_error(
                    400,
                    "invalid_grant",
                    9_002_313,
                    "Invalid request. Request is malformed or invalid: the refresh token was not recognised.",
                );
            };
            if st.rt.revoked_refresh {
                return aad_error(
                    400,
                    "invalid_grant",
                    700_082,
                    "The refresh token has expired due to inactivity. The token was issued on 2025-01-01T00:00:00Z and was inactive for 90.00:00:00.",
                );
            }
            if bound != client.id {
                return aad_error(
                    400,
                    "invalid_grant",
                    70000,
                    "Provided grant is invalid or malformed: the refresh token was issued to a different client.",
                );
            }
            if let Some(c) = &customer {
                let now = st.now_secs();
                let active = c.gdap.iter().any(|r| {
                    util::s(r, "status") == "active"
                        && util::parse_time(util::s(r, "endDateTime")).is_none_or(|end| end > now)
                });
                if !active {
                    return aad_error(
                        400,
                        "invalid_grant",
                        50020,
                        &format!(
                            "User account 'csp-sync@{}' from identity provider 'https://sts.windows.net/{}/' does not exist in tenant '{}' and cannot access the application '{}' in that tenant. The account needs to be added as an external user in the tenant first (no active GDAP relationship grants access).",
                            st.partner_domain, st.partner_tenant_id, c.name, client.id
                        ),
                    );
                }
                if !c.consented_apps.contains(&client.id) {
                    return aad_error(
                        400,
                        "invalid_grant",
                        65001,
                        &format!(
                            "The user or administrator has not consented to use the application with ID '{}' named 'csp-sync'. Send an interactive authorization request for this user and resource.",
                            client.id
                        ),
                    );
                }
            }
            if audience == Audience::PartnerCenter && !is_partner {
                return aad_error(
                    400,
                    "invalid_grant",
                    50020,
                    "Partner Center tokens are issued only in the partner tenant.",
                );
            }
            let next = format!("0.AR8A{}", util::opaque(80));
            st.rt.refresh_tokens.insert(next.clone(), client.id.clone());
            new_refresh = Some(next);
            true
        }
        _ => {
            let code = util::param(form, "device_code").unwrap_or("");
            let Some((cid, polls)) = st.rt.device_codes.get_mut(code) else {
                return aad_error(
                    400,
                    "expired_token",
                    70020,
                    "The provided value for the input parameter 'device_code' is not valid or has expired.",
                );
            };
            if *polls == 0 {
                *polls += 1;
                return aad_error(
                    400,
                    "authorization_pending",
                    70016,
                    "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
                );
            }
            let cid = cid.clone();
            st.rt.device_codes.remove(code);
            let rt = if cid == st.partner_center_app.client_id {
                st.partner_center_app.refresh_token.clone()
            } else {
                let next = format!("0.AR8A{}", util::opaque(80));
                st.rt.refresh_tokens.insert(next.clone(), cid.clone());
                next
            };
            new_refresh = Some(rt);
            true
        }
    };

    let lifetime = st.settings.token_lifetime_secs;
    let access = util::opaque(64);
    let now = util::now_secs();
    st.rt.tokens.insert(
        access.clone(),
        TokenInfo {
            tenant: tenant.to_string(),
            client_id: client.id.clone(),
            audience,
            delegated,
            expires_at: now + lifetime as i64,
        },
    );
    let mut body = if v2 {
        let expires: Value = if st.settings.expires_in_as_string {
            json!(lifetime.to_string())
        } else {
            json!(lifetime)
        };
        json!({"token_type": "Bearer", "expires_in": expires, "ext_expires_in": expires, "access_token": access})
    } else {
        json!({
            "token_type": "Bearer",
            "expires_in": lifetime.to_string(),
            "ext_expires_in": lifetime.to_string(),
            "expires_on": (now + lifetime as i64).to_string(),
            "not_before": (now - 300).to_string(),
            "resource": resource,
            "access_token": access,
        })
    };
    if let Some(rt) = new_refresh {
        body["scope"] = json!(if audience == Audience::PartnerCenter {
            format!("{PC_RESOURCE}/user_impersonation")
        } else {
            format!("{GRAPH_RESOURCE}/User.Read.All {GRAPH_RESOURCE}/Directory.Read.All")
        });
        body["refresh_token"] = json!(rt);
    }
    Resp::json(200, &body)
}

/// Why a bearer token is refused.
pub(crate) enum TokenProblem {
    Missing,
    Unknown,
    Expired,
    WrongAudience,
}

/// Looks up the bearer token and checks its audience and lifetime.
pub(crate) fn check_token(
    st: &State,
    req: &Req,
    audience: Audience,
) -> Result<TokenInfo, TokenProblem> {
    let tok = req.bearer().ok_or(TokenProblem::Missing)?;
    let info = st.rt.tokens.get(tok).ok_or(TokenProblem::Unknown)?;
    if info.audience != audience {
        return Err(TokenProblem::WrongAudience);
    }
    if info.expires_at <= util::now_secs() {
        return Err(TokenProblem::Expired);
    }
    Ok(info.clone())
}
