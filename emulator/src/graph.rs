//! Microsoft Graph v1.0 (reference section 3). The data returned is that of the token's tenant.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::FaultKind;
use crate::identity::{TokenProblem, check_token};
use crate::scenario::{Customer, State};
use crate::server::{Audience, DeltaToken, PendingPages, Req, Resp, TokenInfo, Urls};
use crate::util;

/// Properties `/users` returns without `$select` (reference 3.2).
const DEFAULT_USER_PROPS: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "id",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
];

const INTUNE_ROLES: &[&str] = &[
    "3a2c62db-5318-420d-8d74-23affee5d9d5", // Intune Administrator
    "f2ef992c-3afb-46b9-b7cf-a126ee74c451", // Global Reader
    "62e90394-69f5-4237-9190-012177145e10", // Global Administrator
];

pub(crate) fn graph_error(status: u16, code: &str, message: &str) -> Resp {
    Resp::json(
        status,
        &json!({"error": {"code": code, "message": message, "innerError": {
            "date": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S").to_string(),
            "request-id": util::guid(),
            "client-request-id": util::guid()
        }}}),
    )
}

pub(crate) fn fault_response(kind: &FaultKind) -> Resp {
    match kind {
        FaultKind::TooManyRequests { retry_after } => {
            let r = Resp::json(
                429,
                &json!({"error": {"code": "TooManyRequests", "innerError": {
                    "code": "429",
                    "date": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S").to_string(),
                    "message": "Please retry after",
                    "request-id": util::guid(),
                    "status": "429"
                }, "message": "Please retry again later."}}),
            )
            .with_header(
                "x-ms-throttle-scope",
                "Tenant_Application/ReadOnly/emulator",
            )
            .with_header("x-ms-throttle-information", "ResourceUnitLimitExceeded");
            match retry_after {
                Some(v) => r.with_header("retry-after", v),
                None => r,
            }
        }
        FaultKind::StatusWithRetryAfter {
            status,
            retry_after,
        } => fault_response(&FaultKind::Status(*status)).with_header("retry-after", retry_after),
        FaultKind::Status(503) => graph_error(
            503,
            "serviceNotAvailable",
            "The service is temporarily unavailable. Please retry.",
        ),
        FaultKind::Status(code) => graph_error(
            *code,
            "generalException",
            "An error occurred (injected by the emulator).",
        ),
        _ => graph_error(500, "generalException", "Internal error"),
    }
}

pub(crate) fn handle(st: &mut State, urls: &Urls, req: &Req) -> Resp {
    let resp = route(st, urls, req);
    let crid = req
        .header("client-request-id")
        .map_or_else(util::guid, str::to_string);
    resp.with_header("request-id", &util::guid())
        .with_header("client-request-id", &crid)
}

fn auth(st: &State, req: &Req) -> Result<TokenInfo, Resp> {
    check_token(st, req, Audience::Graph).map_err(|p| {
        let msg = match p {
            TokenProblem::Missing => "Access token is empty.",
            TokenProblem::Unknown => "Access token validation failure. Invalid audience.",
            TokenProblem::Expired => "Access token has expired or is not yet valid.",
            TokenProblem::WrongAudience => "Access token validation failure. Invalid audience.",
        };
        graph_error(401, "InvalidAuthenticationToken", msg)
    })
}

fn route(st: &mut State, urls: &Urls, req: &Req) -> Resp {
    let Some(rest) = req.path.strip_prefix("/v1.0/") else {
        return graph_error(
            400,
            "BadRequest",
            &format!(
                "Invalid version in {}: this emulator serves /v1.0/.",
                req.path
            ),
        );
    };
    let token = match auth(st, req) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let segs: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    if let ["reports", "partners", "billing", rest @ ..] = segs.as_slice() {
        return crate::billing::graph(st, urls, req, &token, rest);
    }
    if let Some(resp) = crate::app_permissions::route(st, urls, req, &token, &segs) {
        return resp;
    }
    // Borrowed, not copied: the handlers that change the state look their customer up themselves.
    let customer = st.customer(&token.tenant);
    match (req.method.as_str(), segs.as_slice()) {
        ("GET", ["users"]) => list_users(st, urls, req, &token),
        ("GET", ["users", "delta"]) => delta(st, urls, req, &token),
        ("GET", ["users", id]) => {
            let users = customer.map(|c| c.users.as_slice()).unwrap_or_default();
            match users.iter().find(|u| {
                util::s(u, "id").eq_ignore_ascii_case(id)
                    || util::s(u, "userPrincipalName").eq_ignore_ascii_case(id)
            }) {
                Some(u) => {
                    let mut v = util::select(u, &selection(req));
                    v["@odata.context"] =
                        json!(format!("{}/v1.0/$metadata#users/$entity", urls.graph));
                    Resp::json(200, &v)
                }
                None => graph_error(
                    404,
                    "Request_ResourceNotFound",
                    &format!(
                        "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
                    ),
                ),
            }
        }
        ("GET", ["subscribedSkus"]) => {
            let items = customer.map(graph_skus).unwrap_or_default();
            let items = apply_select(items, req);
            Resp::json(
                200,
                &json!({"@odata.context": format!("{}/v1.0/$metadata#subscribedSkus", urls.graph), "value": items}),
            )
        }
        ("GET", ["directory", "subscriptions"]) => {
            let items = customer
                .map(|c| c.company_subscriptions.clone())
                .unwrap_or_default();
            let items = apply_select(items, req);
            Resp::json(
                200,
                &json!({"@odata.context": format!("{}/v1.0/$metadata#directory/subscriptions", urls.graph), "value": items}),
            )
        }
        ("GET", ["organization"]) => {
            let org = organization(st, customer);
            let items = apply_select(vec![org], req);
            Resp::json(
                200,
                &json!({"@odata.context": format!("{}/v1.0/$metadata#organization", urls.graph), "value": items}),
            )
        }
        ("GET", ["deviceManagement", "managedDevices"]) => devices(st, urls, req, &token),
        ("POST", ["$batch"]) => batch(st, urls, req),
        ("GET", ["tenantRelationships", "delegatedAdminRelationships"]) => {
            if !token.tenant.eq_ignore_ascii_case(&st.partner_tenant_id) {
                return graph_error(
                    403,
                    "Authorization_RequestDenied",
                    "Insufficient privileges to complete the operation: delegated admin relationships are read with a partner-tenant token.",
                );
            }
            let mut items: Vec<Value> = st.customers.iter().flat_map(|c| c.gdap.clone()).collect();
            if let Some(f) = req.param("$filter") {
                // Only the `status eq '...'` form is understood (what CIPP sends).
                if let Some(v) = f
                    .strip_prefix("status eq '")
                    .and_then(|v| v.strip_suffix('\''))
                {
                    items.retain(|r| util::s(r, "status") == v);
                } else {
                    return graph_error(
                        400,
                        "BadRequest",
                        &format!(
                            "Unsupported $filter {f} (the emulator understands status eq '...')."
                        ),
                    );
                }
            }
            let items = apply_select(items, req);
            Resp::json(
                200,
                &json!({"@odata.context": format!("{}/v1.0/$metadata#tenantRelationships/delegatedAdminRelationships", urls.graph), "value": items}),
            )
        }
        _ => graph_error(
            400,
            "BadRequest",
            &format!(
                "Resource not found for the segment '{}' ({} {}).",
                segs.first().unwrap_or(&""),
                req.method,
                req.path
            ),
        ),
    }
}

/// `$select` as a list; the default user properties when absent.
fn selection(req: &Req) -> Vec<String> {
    match req.param("$select") {
        Some(s) if !s.trim().is_empty() => s.split(',').map(|p| p.trim().to_string()).collect(),
        _ => DEFAULT_USER_PROPS
            .iter()
            .map(|s| (*s).to_string())
            .collect(),
    }
}

fn apply_select(items: Vec<Value>, req: &Req) -> Vec<Value> {
    match req.param("$select") {
        Some(s) if !s.trim().is_empty() => {
            let props: Vec<String> = s.split(',').map(|p| p.trim().to_string()).collect();
            items.iter().map(|i| util::select(i, &props)).collect()
        }
        _ => items,
    }
}

fn parse_top(req: &Req, default: usize) -> Result<usize, Resp> {
    match req.param("$top") {
        None => Ok(default),
        Some(t) => match t.parse::<usize>() {
            Ok(n) if (1..=999).contains(&n) => Ok(n),
            _ => Err(graph_error(
                400,
                "Request_UnsupportedQuery",
                &format!(
                    "Invalid page size specified: '{t}'. Must be between 1 and 999 inclusive."
                ),
            )),
        },
    }
}

/// Serves the next page of a pending result; stores the remainder under a new `$skiptoken`.
fn serve_page(st: &mut State, mut p: PendingPages, delta: bool) -> Resp {
    let page: Vec<Value> = p
        .items
        .iter()
        .skip(p.offset)
        .take(p.page_size)
        .cloned()
        .collect();
    p.offset += page.len();
    let mut body = json!({"@odata.context": p.context, "value": page});
    if p.offset < p.items.len() {
        let tok = util::opaque(40);
        let link = format!("{}$skiptoken={tok}", p.next_path);
        if delta {
            body["@odata.nextLink"] = json!(link);
            st.rt.delta_sessions.insert(tok, p);
        } else {
            body["@odata.nextLink"] = json!(link);
            st.rt.pages.insert(tok, p);
        }
        // Put the link after the context like Graph does (preserve_order keeps insertion order).
        let v = body["value"].take();
        body.as_object_mut().map(|o| o.remove("value"));
        body["value"] = v;
    } else if let Some(snap) = p.delta_snapshot {
        let tok = util::opaque(48);
        let base = p
            .next_path
            .split("?")
            .next()
            .unwrap_or_default()
            .to_string();
        body["@odata.deltaLink"] = json!(format!("{base}?$deltatoken={tok}"));
        st.rt.delta_tokens.insert(tok, snap);
        let v = body["value"].take();
        body.as_object_mut().map(|o| o.remove("value"));
        body["value"] = v;
    }
    Resp::json(200, &body)
}

fn list_users(st: &mut State, urls: &Urls, req: &Req, token: &TokenInfo) -> Resp {
    if let Some(tok) = req.param("$skiptoken") {
        return match st.rt.pages.remove(tok) {
            Some(p) if p.tenant == token.tenant => serve_page(st, p, false),
            _ => graph_error(
                400,
                "Request_BadRequest",
                "The specified page token value has expired or is invalid.",
            ),
        };
    }
    let top = match parse_top(req, 100) {
        Ok(t) => t,
        Err(r) => return r,
    };
    if req.param("$filter").is_some() || req.param("$search").is_some() {
        return graph_error(
            400,
            "Request_UnsupportedQuery",
            "The emulator does not implement $filter or $search on /users.",
        );
    }
    let props = selection(req);
    let items: Vec<Value> = st
        .customer(&token.tenant)
        .map(|c| c.users.iter().map(|u| util::select(u, &props)).collect())
        .unwrap_or_default();
    let mut next = format!("{}/v1.0/users?", urls.graph);
    if let Some(s) = req.param("$select") {
        next.push_str(&format!("$select={}&", util::percent_encode(s)));
    }
    next.push_str(&format!("$top={top}&"));
    let p = PendingPages {
        tenant: token.tenant.clone(),
        items,
        offset: 0,
        page_size: top,
        delta_snapshot: None,
        context: format!("{}/v1.0/$metadata#users", urls.graph),
        next_path: next,
    };
    serve_page(st, p, false)
}

fn user_map(c: Option<&Customer>) -> HashMap<String, Value> {
    c.map(|c| {
        c.users
            .iter()
            .map(|u| (util::s(u, "id").to_string(), u.clone()))
            .collect()
    })
    .unwrap_or_default()
}

fn delta(st: &mut State, urls: &Urls, req: &Req, token: &TokenInfo) -> Resp {
    let context = format!("{}/v1.0/$metadata#users", urls.graph);
    let next_path = format!("{}/v1.0/users/delta?", urls.graph);
    if let Some(tok) = req.param("$skiptoken") {
        return match st.rt.delta_sessions.remove(tok) {
            Some(p) if p.tenant == token.tenant => serve_page(st, p, true),
            _ => graph_error(
                410,
                "syncStateNotFound",
                "The sync state generation is not found. The delta token is either invalid or expired; restart the sync without a token.",
            ),
        };
    }
    let props_of = |sel: &Option<Vec<String>>| -> Vec<String> {
        sel.clone().unwrap_or_else(|| {
            DEFAULT_USER_PROPS
                .iter()
                .map(|s| (*s).to_string())
                .collect()
        })
    };
    let c = st.customer(&token.tenant);
    let now_users = user_map(c);
    let ordered: &[Value] = c.map_or(&[], |c| c.users.as_slice());
    let (select, items) = match req.param("$deltatoken") {
        Some("latest") => {
            let select = req
                .param("$select")
                .map(|s| s.split(',').map(|p| p.trim().to_string()).collect());
            (select, Vec::new())
        }
        Some(tok) => {
            let Some(old) = st
                .rt
                .delta_tokens
                .get(tok)
                .filter(|d| d.tenant == token.tenant)
                .cloned()
            else {
                return graph_error(410, "syncStateNotFound", "The sync state generation is not found. The delta token is either invalid or expired; restart the sync without a token.")
                    .with_header("location", &format!("{}/v1.0/users/delta", urls.graph));
            };
            let props = props_of(&old.select);
            let mut items = Vec::new();
            for u in ordered {
                let id = util::s(u, "id");
                let now_sel = util::select(u, &props);
                let changed = old
                    .users
                    .get(id)
                    .is_none_or(|o| util::select(o, &props) != now_sel);
                if changed {
                    items.push(now_sel);
                }
            }
            let removed = c.map_or(&[][..], |c| c.removed_users.as_slice());
            for id in old.users.keys() {
                if !now_users.contains_key(id) {
                    let reason =
                        removed
                            .iter()
                            .find(|r| util::s(r, "id") == id)
                            .map_or("changed", |r| {
                                if util::s(r, "reason") == "deleted" {
                                    "deleted"
                                } else {
                                    "changed"
                                }
                            });
                    items.push(json!({"id": id, "@removed": {"reason": reason}}));
                }
            }
            (old.select, items)
        }
        None => {
            let select: Option<Vec<String>> = req
                .param("$select")
                .map(|s| s.split(',').map(|p| p.trim().to_string()).collect());
            let props = props_of(&select);
            (
                select,
                ordered.iter().map(|u| util::select(u, &props)).collect(),
            )
        }
    };
    let p = PendingPages {
        tenant: token.tenant.clone(),
        items,
        offset: 0,
        page_size: st.settings.graph_delta_page_size.max(1),
        delta_snapshot: Some(DeltaToken {
            tenant: token.tenant.clone(),
            select,
            users: now_users,
        }),
        context,
        next_path,
    };
    serve_page(st, p, true)
}

/// Users of the tenant holding `sku_id`.
pub(crate) fn consumed_units(c: &Customer, sku_id: &str) -> i64 {
    c.users
        .iter()
        .filter(|u| {
            u["assignedLicenses"].as_array().is_some_and(|ls| {
                ls.iter()
                    .any(|l| util::s(l, "skuId").eq_ignore_ascii_case(sku_id))
            })
        })
        .count() as i64
}

/// Graph `subscribedSku` objects with `consumedUnits` computed from the users.
fn graph_skus(c: &Customer) -> Vec<Value> {
    c.subscribed_skus
        .iter()
        .map(|sku| {
            let mut v = sku.clone();
            if let Some(o) = v.as_object_mut() {
                o.retain(|k, _| !k.starts_with("x-"));
            }
            v["consumedUnits"] = json!(consumed_units(c, util::s(sku, "skuId")));
            v
        })
        .collect()
}

fn organization(st: &State, c: Option<&Customer>) -> Value {
    let (id, name, initial, extra, more) = match c {
        Some(c) => (
            c.tenant_id.clone(),
            c.name.clone(),
            c.domain.clone(),
            c.extra_domains.clone(),
            c.organization.clone(),
        ),
        None => (
            st.partner_tenant_id.clone(),
            st.partner_name.clone(),
            st.partner_domain.clone(),
            Vec::new(),
            Value::Null,
        ),
    };
    let mut domains = vec![
        json!({"capabilities": "Email, OfficeCommunicationsOnline", "isDefault": extra.is_empty(), "isInitial": true, "name": initial, "type": "Managed"}),
    ];
    for (i, d) in extra.iter().enumerate() {
        domains.push(json!({"capabilities": "Email, OfficeCommunicationsOnline", "isDefault": i == 0, "isInitial": false, "name": d, "type": "Managed"}));
    }
    let mut org = json!({
        "id": id,
        "deletedDateTime": null,
        "businessPhones": ["+44 20 7946 0000"],
        "city": "London",
        "countryLetterCode": "GB",
        "createdDateTime": "2019-03-04T10:00:00Z",
        "displayName": name,
        "onPremisesSyncEnabled": null,
        "postalCode": "EC1A 1BB",
        "preferredLanguage": "en",
        "state": null,
        "street": "1 Example Street",
        "technicalNotificationMails": [format!("it@{}", extra.first().unwrap_or(&initial))],
        "tenantType": "AAD",
        "assignedPlans": [],
        "verifiedDomains": domains
    });
    if let (Some(o), Some(m)) = (org.as_object_mut(), more.as_object()) {
        for (k, v) in m {
            o.insert(k.clone(), v.clone());
        }
    }
    org
}

fn devices(st: &mut State, urls: &Urls, req: &Req, token: &TokenInfo) -> Resp {
    if let Some(tok) = req.param("$skiptoken") {
        return match st.rt.pages.remove(tok) {
            Some(p) if p.tenant == token.tenant => serve_page(st, p, false),
            _ => graph_error(
                400,
                "BadRequest",
                "The specified page token value has expired or is invalid.",
            ),
        };
    }
    let Some(c) = st.customer(&token.tenant) else {
        return graph_error(
            400,
            "BadRequest",
            "Request not applicable to target tenant.",
        );
    };
    if !c.intune {
        return graph_error(
            400,
            "BadRequest",
            "Request not applicable to target tenant.",
        );
    }
    if token.delegated {
        let now = st.now_secs();
        let has_role = c.gdap.iter().any(|r| {
            util::s(r, "status") == "active"
                && util::parse_time(util::s(r, "endDateTime")).is_none_or(|e| e > now)
                && r["accessDetails"]["unifiedRoles"]
                    .as_array()
                    .is_some_and(|rs| {
                        rs.iter()
                            .any(|x| INTUNE_ROLES.contains(&util::s(x, "roleDefinitionId")))
                    })
        });
        if !has_role {
            return graph_error(
                403,
                "Forbidden",
                "Application is not authorized to perform this operation: the GDAP relationship grants no Intune role.",
            );
        }
    }
    let top = match parse_top(req, st.settings.graph_device_page_size.max(1)) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let items = apply_select(c.devices.clone(), req);
    let mut next = format!("{}/v1.0/deviceManagement/managedDevices?", urls.graph);
    if let Some(s) = req.param("$select") {
        next.push_str(&format!("$select={}&", util::percent_encode(s)));
    }
    let p = PendingPages {
        tenant: token.tenant.clone(),
        items,
        offset: 0,
        page_size: top,
        delta_snapshot: None,
        context: format!(
            "{}/v1.0/$metadata#deviceManagement/managedDevices",
            urls.graph
        ),
        next_path: next,
    };
    serve_page(st, p, false)
}

/// The request one `$batch` item stands for: its relative `url` under `/v1.0`, its method, the outer
/// request's headers (the token) overlaid with the item's own `headers`, its `body`.
pub(crate) fn batch_item_req(outer: &Req, item: &Value) -> Req {
    let url = util::s(item, "url");
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let path = if path.starts_with("/v1.0/") {
        path.to_string()
    } else {
        format!("/v1.0/{}", path.trim_start_matches('/'))
    };
    let mut headers = outer.headers.clone();
    headers.remove(hyper::http::header::CONTENT_TYPE);
    headers.remove(hyper::http::header::CONTENT_LENGTH);
    if let Some(h) = item.get("headers").and_then(Value::as_object) {
        for (k, v) in h {
            if let (Ok(name), Some(Ok(val))) = (
                hyper::http::header::HeaderName::from_bytes(k.as_bytes()),
                v.as_str().map(hyper::http::HeaderValue::from_str),
            ) {
                headers.insert(name, val);
            }
        }
    }
    Req {
        method: util::s(item, "method").to_ascii_uppercase(),
        path: util::percent_decode(&path, false),
        query: query.to_string(),
        params: util::parse_pairs(query),
        headers,
        body: item
            .get("body")
            .map(|b| serde_json::to_vec(b).unwrap_or_default())
            .unwrap_or_default(),
    }
}

/// The ids an item waits for (`dependsOn`).
fn depends_on(item: &Value) -> Vec<String> {
    item.get("dependsOn")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The payload checks Graph makes before running any item (reference 3.8, `json-batching.md`): at most
/// 20 requests, ids present and unique, `url` relative, a `body` only with a `Content-Type` header,
/// `dependsOn` naming ids of the same batch. Any failure is a 400 for the whole batch.
fn check_batch(requests: &[Value]) -> Result<(), Resp> {
    let bad = |m: &str| Err(graph_error(400, "BadRequest", m));
    if requests.len() > 20 {
        return bad("The number of batch requests exceeds the limit of 20.");
    }
    let mut ids = std::collections::HashSet::new();
    for r in requests {
        let id = util::s(r, "id");
        if id.is_empty() || !ids.insert(id.to_string()) {
            return bad("Batch request ids must be present and unique.");
        }
        let url = util::s(r, "url");
        if url.is_empty() || url.contains("://") {
            return bad(&format!(
                "Invalid request URL '{url}' of batch request {id}: a batch request's url must be relative to the version root."
            ));
        }
        if util::s(r, "method").is_empty() {
            return bad(&format!("Batch request {id} has no method."));
        }
        let has_type = r
            .get("headers")
            .and_then(Value::as_object)
            .is_some_and(|h| h.keys().any(|k| k.eq_ignore_ascii_case("content-type")));
        if r.get("body").is_some_and(|b| !b.is_null()) && !has_type {
            return bad(&format!(
                "Batch request {id} has a body but no Content-Type header."
            ));
        }
    }
    for r in requests {
        for d in depends_on(r) {
            if !ids.contains(&d) || d == util::s(r, "id") {
                return bad(&format!(
                    "Batch request {} depends on '{d}', which is not another request of this batch.",
                    util::s(r, "id")
                ));
            }
        }
    }
    Ok(())
}

/// `POST /v1.0/$batch` (reference 3.8). Items run in an order honouring `dependsOn` (an item whose
/// dependency failed gets 424 without running); each is answered with its own status, headers and body,
/// and the outer status is 200 whatever the items got. The responses come in reverse order: the reference
/// says their order is not guaranteed, and a client must match them by id. Faults queued for Graph paths
/// apply per item (so an item can get 429 with its own `Retry-After`); network-level faults on an item's
/// path hit the whole HTTP request instead (see `server::batch_item_fault`). Each item is logged after the
/// POST with `batch` = its id.
fn batch(st: &mut State, urls: &Urls, req: &Req) -> Resp {
    let body = match req.json() {
        Ok(b) => b,
        Err(e) => return graph_error(400, "BadRequest", &e),
    };
    let Some(requests) = body.get("requests").and_then(Value::as_array) else {
        return graph_error(
            400,
            "BadRequest",
            "Invalid batch payload format: a 'requests' array is required.",
        );
    };
    if let Err(r) = check_batch(requests) {
        return r;
    }
    let mut status: HashMap<String, u16> = HashMap::new();
    let mut responses = Vec::new();
    let mut left: Vec<&Value> = requests.iter().collect();
    while !left.is_empty() {
        let Some(pos) = left
            .iter()
            .position(|r| depends_on(r).iter().all(|d| status.contains_key(d)))
        else {
            return graph_error(
                400,
                "BadRequest",
                "The dependsOn of the batch requests form a cycle.",
            );
        };
        let r = left.remove(pos);
        let id = util::s(r, "id").to_string();
        let inner = batch_item_req(req, r);
        let failed_dep = depends_on(r)
            .into_iter()
            .find(|d| !(200..300).contains(&status[d]));
        let resp = if let Some(d) = failed_dep {
            graph_error(
                424,
                "FailedDependency",
                &format!("The request depends on request {d}, which failed."),
            )
        } else {
            match crate::server::take_fault(st, crate::Api::Graph, &inner) {
                Some(
                    kind @ (FaultKind::TooManyRequests { .. }
                    | FaultKind::Status(_)
                    | FaultKind::StatusWithRetryAfter { .. }),
                ) => fault_response(&kind),
                _ => handle(st, urls, &inner),
            }
        };
        status.insert(id.clone(), resp.status);
        st.rt.batch_items.push((id.clone(), inner, resp.status));
        let mut hdrs = serde_json::Map::new();
        for (k, v) in &resp.headers {
            hdrs.insert(
                if k.eq_ignore_ascii_case("retry-after") {
                    "Retry-After".into()
                } else {
                    k.clone()
                },
                json!(v),
            );
        }
        responses.push(
            json!({"id": id, "status": resp.status, "headers": hdrs, "body": resp.body_json()}),
        );
    }
    responses.reverse();
    Resp::json(200, &json!({"responses": responses}))
}
