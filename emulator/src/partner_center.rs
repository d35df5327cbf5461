//! Partner Center REST API (reference section 2): customers with seek paging, subscriptions,
//! subscribed SKUs (app+user only), application consents.

use serde_json::{Value, json};

use crate::FaultKind;
use crate::identity::{TokenProblem, check_token};
use crate::scenario::{BomMode, Customer, State};
use crate::server::{Audience, Req, Resp, TokenInfo};
use crate::util;

fn pc_error(status: u16, code: u32, description: &str) -> Resp {
    Resp::json(
        status,
        &json!({"code": code, "description": description, "data": [], "source": "PartnerFD"}),
    )
}

pub(crate) fn fault_response(kind: &FaultKind) -> Resp {
    match kind {
        FaultKind::TooManyRequests { retry_after } => {
            let secs = retry_after.clone().unwrap_or_else(|| "57".into());
            let r = Resp::json(
                429,
                &json!({"statusCode": 429, "message": format!("Rate limit is exceeded. Try again in {secs} seconds.")}),
            );
            match retry_after {
                Some(v) => r.with_header("retry-after", v),
                None => r,
            }
        }
        FaultKind::Status(code) => pc_error(
            *code,
            500,
            "The service is temporarily unavailable. Please retry.",
        ),
        _ => pc_error(500, 500, "Internal error"),
    }
}

pub(crate) fn handle(st: &mut State, req: &Req) -> Resp {
    let mut resp = route(st, req);
    // Echo the tracing headers (reference 2.1).
    let rid = req
        .header("ms-requestid")
        .map_or_else(util::guid, str::to_string);
    let cid = req
        .header("ms-correlationid")
        .map_or_else(util::guid, str::to_string);
    resp = resp
        .with_header("MS-RequestId", &rid)
        .with_header("MS-CorrelationId", &cid)
        .with_header("MS-CV", &util::opaque(22));
    st.rt.pc_responses += 1;
    let bom = match st.settings.bom {
        BomMode::Never => false,
        BomMode::Always => true,
        BomMode::Alternate => st.rt.pc_responses.is_multiple_of(2),
    };
    if bom && !resp.body.is_empty() {
        let mut b = "\u{feff}".as_bytes().to_vec();
        b.extend_from_slice(&resp.body);
        resp.body = b;
    }
    resp
}

fn auth(st: &State, req: &Req) -> Result<TokenInfo, Resp> {
    let info = check_token(st, req, Audience::PartnerCenter).map_err(|p| {
        let msg = match p {
            TokenProblem::Missing => "Authorization header is missing.",
            TokenProblem::Unknown => "The access token is not valid.",
            TokenProblem::Expired => "The access token has expired.",
            TokenProblem::WrongAudience => "The access token audience is not Partner Center.",
        };
        pc_error(401, 401, msg)
            .with_header("WWW-Authenticate", "OAuth realm=urn:cpsvc:cpid:emulator")
    })?;
    if info.client_id != st.partner_center_app.client_id {
        return Err(pc_error(
            401,
            401,
            "The application of this token is not registered in Partner Center.",
        ));
    }
    if !info.tenant.eq_ignore_ascii_case(&st.partner_tenant_id) {
        return Err(pc_error(
            401,
            401,
            "The access token was not issued for the partner tenant.",
        ));
    }
    Ok(info)
}

fn route(st: &mut State, req: &Req) -> Resp {
    let segs: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    if segs.first() != Some(&"v1") {
        return pc_error(
            404,
            1000,
            &format!(
                "Resource {} not found (Partner Center paths start with /v1).",
                req.path
            ),
        );
    }
    let token = match auth(st, req) {
        Ok(t) => t,
        Err(r) => return r,
    };
    match (req.method.as_str(), &segs[1..]) {
        ("GET", ["customers"]) => customers(st, req),
        ("GET", ["invoices"]) => Resp::json(200, &collection(st.billing.invoices.clone(), None)),
        ("GET", ["customers", id]) => match st.customer(id) {
            Some(c) => Resp::json(200, &customer_json(c)),
            None => not_found_customer(id),
        },
        ("GET", ["customers", id, "subscriptions"]) => match st.customer(id) {
            Some(c) => Resp::json(200, &collection(c.subscriptions.clone(), None)),
            None => not_found_customer(id),
        },
        ("GET", ["customers", id, "subscriptions", sub]) => match st.customer(id) {
            Some(c) => match c
                .subscriptions
                .iter()
                .find(|s| util::s(s, "id").eq_ignore_ascii_case(sub))
            {
                Some(s) => Resp::json(200, s),
                None => pc_error(404, 20003, &format!("Subscription {sub} not found.")),
            },
            None => not_found_customer(id),
        },
        ("GET", ["customers", id, "subscribedskus"]) => {
            if !token.delegated {
                return pc_error(
                    401,
                    401,
                    "This operation requires app+user authentication; app-only tokens are not supported for subscribedskus.",
                );
            }
            match st.customer(id) {
                Some(c) => Resp::json(200, &collection(subscribed_skus(c), None)),
                None => not_found_customer(id),
            }
        }
        ("POST", ["customers", id, "applicationconsents"]) => {
            if !token.delegated {
                return pc_error(
                    403,
                    2032,
                    "Application consent requires app+user authentication.",
                );
            }
            application_consent(st, req, id)
        }
        _ => pc_error(
            404,
            1000,
            &format!("Resource {} {} not found.", req.method, req.path),
        ),
    }
}

fn not_found_customer(id: &str) -> Resp {
    pc_error(
        404,
        60003,
        &format!("Customer tenant {id} was not found or has no relationship with the partner."),
    )
}

fn collection(items: Vec<Value>, links: Option<Value>) -> Value {
    let mut v = json!({"totalCount": items.len(), "items": items});
    if let Some(l) = links {
        v["links"] = l;
    }
    v["attributes"] = json!({"objectType": "Collection"});
    v
}

pub(crate) fn customer_json(c: &Customer) -> Value {
    json!({
        "id": c.tenant_id,
        "commerceId": format!("{}", c.tenant_id.chars().rev().collect::<String>()),
        "companyProfile": {
            "tenantId": c.tenant_id,
            "domain": c.domain,
            "companyName": c.name,
            "attributes": {"objectType": "CustomerCompanyProfile"}
        },
        "relationshipToPartner": c.relationship_to_partner,
        "allowDelegatedAccess": true,
        "links": {"self": {"uri": format!("/customers/{}", c.tenant_id), "method": "GET", "headers": []}},
        "attributes": {"objectType": "Customer"}
    })
}

fn customers(st: &mut State, req: &Req) -> Resp {
    let requested = match req.param("size").map(str::parse::<usize>) {
        None => st.settings.pc_page_size,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => return pc_error(400, 400, "The size parameter must be a positive integer."),
    };
    let size = requested.min(st.settings.pc_page_size);
    let offset = if req
        .param("seekOperation")
        .is_some_and(|s| s.eq_ignore_ascii_case("next"))
    {
        let Some(tok) = req.header("ms-continuationtoken") else {
            return pc_error(
                400,
                400,
                "seekOperation=Next requires the MS-ContinuationToken header from links.next.headers.",
            );
        };
        match st.rt.pc_continuations.get(tok) {
            Some(o) => *o,
            None => {
                return pc_error(
                    400,
                    400,
                    "The continuation token is not valid or has expired.",
                );
            }
        }
    } else {
        0
    };
    let all: Vec<Value> = st.customers.iter().map(customer_json).collect();
    let page: Vec<Value> = all.iter().skip(offset).take(size).cloned().collect();
    let end = offset + page.len();
    let page_no = offset / size.max(1);
    let self_uri = format!("/v1/customers?size={requested}");
    let mut links = json!({"self": {"uri": self_uri, "method": "GET", "headers": []}});
    let mut body;
    if end < all.len() {
        let token = format!("AQAAA{}==", util::opaque(24));
        st.rt.pc_continuations.insert(token.clone(), end);
        // Alternate between the /v1 prefix and the version-less form seen in the docs (reference 2.2).
        let prefix = if page_no % 2 == 0 { "/v1" } else { "" };
        links["next"] = json!({
            "uri": format!("{prefix}/customers?size={requested}&seekOperation=Next"),
            "method": "GET",
            "headers": [{"key": "MS-ContinuationToken", "value": token}]
        });
        body = collection(page, Some(links));
        body["continuationToken"] = json!(token);
    } else {
        body = collection(page, Some(links));
    }
    Resp::json(200, &body)
}

/// Partner Center `SubscribedSku` view of the tenant's Graph subscribed SKUs (reference 2.5).
fn subscribed_skus(c: &Customer) -> Vec<Value> {
    c.subscribed_skus
        .iter()
        .map(|sku| {
            let sku_id = util::s(sku, "skuId");
            let consumed = crate::graph::consumed_units(c, sku_id);
            let prepaid = &sku["prepaidUnits"];
            let enabled = prepaid["enabled"].as_i64().unwrap_or(0);
            let warning = prepaid["warning"].as_i64().unwrap_or(0);
            let suspended = prepaid["suspended"].as_i64().unwrap_or(0);
            let total = enabled + warning;
            let plans: Vec<Value> = sku["servicePlans"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            json!({
                                "displayName": util::s(p, "servicePlanName"),
                                "serviceName": util::s(p, "servicePlanName"),
                                "id": util::s(p, "servicePlanId"),
                                "capabilityStatus": "Enabled",
                                "targetType": "User"
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "availableUnits": total - consumed,
                "activeUnits": enabled,
                "consumedUnits": consumed,
                "suspendedUnits": suspended,
                "totalUnits": total,
                "warningUnits": warning,
                "productSku": {
                    "id": sku_id,
                    "name": sku.get("x-productName").and_then(Value::as_str).unwrap_or(util::s(sku, "skuPartNumber")),
                    "skuPartNumber": util::s(sku, "skuPartNumber"),
                    "targetType": util::s(sku, "appliesTo"),
                    "licenseGroupId": "group1"
                },
                "servicePlans": plans,
                "capabilityStatus": util::s(sku, "capabilityStatus"),
                "attributes": {"objectType": "SubscribedSku"}
            })
        })
        .collect()
}

fn application_consent(st: &mut State, req: &Req, tenant: &str) -> Resp {
    let body = match req.json() {
        Ok(b) => b,
        Err(e) => return pc_error(400, 400, &e),
    };
    let app_id = body
        .get("ApplicationId")
        .or_else(|| body.get("applicationId"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let grants = body
        .get("ApplicationGrants")
        .or_else(|| body.get("applicationGrants"));
    if app_id.is_empty() || !grants.is_some_and(Value::is_array) {
        return pc_error(
            400,
            400,
            "The body must carry ApplicationId and ApplicationGrants[] (EnterpriseApplicationId, Scope).",
        );
    }
    let known = [
        st.graph_app.client_id.clone(),
        st.partner_center_app.client_id.clone(),
    ];
    if !known.contains(&app_id) {
        return pc_error(
            400,
            400,
            &format!("Application {app_id} is not registered in the partner tenant."),
        );
    }
    let Some(c) = st
        .customers
        .iter_mut()
        .find(|c| c.tenant_id.eq_ignore_ascii_case(tenant))
    else {
        return not_found_customer(tenant);
    };
    if c.consented_apps.contains(&app_id) {
        return pc_error(409, 409, "Permission entry already exists.");
    }
    c.consented_apps.push(app_id);
    Resp::json(201, &body)
}
