//! The calls the readers make: Partner Center customers, subscriptions and seat counts, Graph users (full
//! and delta), SKUs and company subscriptions, Halo lists and batch writes. Paging quirks live here:
//! Partner Center `links.next` with `MS-ContinuationToken` and links with or without `/v1`, Graph
//! `@odata.nextLink` / `@odata.deltaLink`, Halo pages silently capped at 100.

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::Value;

use crate::auth::TokenSource;
use crate::context::Apis;
use crate::http::{self, Api, ApiError, Request, RequestKind};
use crate::model::{
    CompanySubscription, Customer, EntraUser, SkuUsage, Subscription, SubscriptionStatus, UserType,
};

/// Graph `$select` for users (reference 3.2).
pub const USER_SELECT: &str = "id,userPrincipalName,displayName,givenName,surname,mail,accountEnabled,userType,assignedLicenses,jobTitle,department,mobilePhone,businessPhones";

/// A failed call, keeping the HTTP error for callers that branch on it.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    #[error("could not read the answer of {what}: {why}")]
    Decode { what: String, why: String },
}

impl FetchError {
    pub fn status(&self) -> Option<u16> {
        match self {
            FetchError::Api(e) => e.status,
            FetchError::Auth(e) => e.status,
            FetchError::Decode { .. } => None,
        }
    }
}

/// Sends a request with a token for `source`, renewing the token once on a 401.
pub async fn send(
    apis: &Apis,
    source: &TokenSource,
    req: Request,
) -> Result<http::Response, FetchError> {
    let token = apis.creds.token(source).await?;
    let mut req = req.bearer(&token);
    match apis.http.send(&req).await {
        Err(e) if e.status == Some(401) => {
            apis.creds.invalidate(source);
            let token = apis.creds.token(source).await?;
            req.bearer = Some(token);
            Ok(apis.http.send(&req).await?)
        }
        other => Ok(other?),
    }
}

/// GETs a JSON document (a leading UTF-8 BOM is dropped).
pub async fn get_json(
    apis: &Apis,
    source: &TokenSource,
    api: Api,
    url: &str,
    headers: &[(String, String)],
) -> Result<Value, FetchError> {
    let mut req = Request::get(api, url);
    for (k, v) in headers {
        req = req.header(k.clone(), v.clone());
    }
    let resp = send(apis, source, req).await?;
    serde_json::from_str(http::strip_bom(&resp.body)).map_err(|e| FetchError::Decode {
        what: http::redact_url(url),
        why: e.to_string(),
    })
}

fn s(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(ToString::to_string)
}

fn items(v: &Value, key: &str) -> Vec<Value> {
    v.get(key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn guid() -> String {
    let h: String = (0..16).fold(String::new(), |mut acc, _| {
        use std::fmt::Write as _;
        let _ = write!(acc, "{:02x}", fastrand::u8(..));
        acc
    });
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

// ---------------------------------------------------------------- Partner Center

/// Resolves a Partner Center link: relative links come with or without the `/v1` prefix.
pub fn pc_link(base: &str, uri: &str) -> String {
    if uri.starts_with("http://") || uri.starts_with("https://") {
        return uri.to_string();
    }
    let path = uri.trim_start_matches('/');
    if path.starts_with("v1/") {
        format!("{base}/{path}")
    } else {
        format!("{base}/v1/{path}")
    }
}

async fn pc_collection(
    apis: &Apis,
    base: &str,
    first: String,
    source: &TokenSource,
) -> Result<Vec<Value>, FetchError> {
    let correlation = guid();
    let mut url = first;
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let mut h = headers.clone();
        h.push(("MS-CorrelationId".into(), correlation.clone()));
        h.push(("MS-RequestId".into(), guid()));
        h.push(("Accept".into(), "application/json".into()));
        let page = get_json(apis, source, Api::PartnerCenter, &url, &h).await?;
        out.extend(items(&page, "items"));
        let Some(next) = page.pointer("/links/next") else {
            break;
        };
        let Some(uri) = next.get("uri").and_then(Value::as_str) else {
            break;
        };
        url = pc_link(base, uri);
        headers = next
            .get("headers")
            .and_then(Value::as_array)
            .map(|hs| {
                hs.iter()
                    .filter_map(|h| Some((s(h, "key")?, s(h, "value")?)))
                    .collect()
            })
            .unwrap_or_default();
    }
    Ok(out)
}

/// Every Partner Center customer, across all pages.
pub async fn customers(apis: &Apis, base: &str) -> Result<Vec<Customer>, FetchError> {
    let raw = pc_collection(
        apis,
        base,
        format!("{base}/v1/customers?size=500"),
        &TokenSource::PartnerCenterApp,
    )
    .await?;
    Ok(raw
        .iter()
        .filter_map(|c| {
            let id = s(c, "id")?.to_lowercase();
            let profile = c.get("companyProfile").cloned().unwrap_or(Value::Null);
            Some(Customer {
                tenant_id: s(&profile, "tenantId")
                    .map(|t| t.to_lowercase())
                    .filter(|t| !t.starts_with('<'))
                    .unwrap_or_else(|| id.clone()),
                id,
                company_name: s(&profile, "companyName").unwrap_or_default(),
                domain: s(&profile, "domain").unwrap_or_default(),
                relationship: s(c, "relationshipToPartner").unwrap_or_default(),
            })
        })
        .collect())
}

fn status_of(s: &str) -> SubscriptionStatus {
    match s.to_ascii_lowercase().as_str() {
        "active" => SubscriptionStatus::Active,
        "pending" => SubscriptionStatus::Pending,
        "suspended" | "disabled" => SubscriptionStatus::Suspended,
        "deleted" | "cancelled" | "canceled" => SubscriptionStatus::Deleted,
        "expired" => SubscriptionStatus::Expired,
        _ => SubscriptionStatus::None,
    }
}

/// A customer's subscriptions (NCE, legacy and Azure plan).
pub async fn subscriptions(
    apis: &Apis,
    base: &str,
    customer_id: &str,
) -> Result<Vec<Subscription>, FetchError> {
    let raw = pc_collection(
        apis,
        base,
        format!("{base}/v1/customers/{customer_id}/subscriptions"),
        &TokenSource::PartnerCenterApp,
    )
    .await?;
    Ok(raw
        .iter()
        .filter_map(|v| {
            let refund_end = v
                .get("refundOptions")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().filter_map(|r| s(r, "expiresAt")).max());
            Some(Subscription {
                id: s(v, "id")?.to_lowercase(),
                offer_id: s(v, "offerId").unwrap_or_default(),
                offer_name: s(v, "offerName")
                    .or_else(|| s(v, "friendlyName"))
                    .unwrap_or_default(),
                friendly_name: s(v, "friendlyName"),
                quantity: v.get("quantity").and_then(Value::as_i64).unwrap_or(0),
                status: status_of(&s(v, "status").unwrap_or_default()),
                auto_renew: v
                    .get("autoRenewEnabled")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                billing_cycle: s(v, "billingCycle").unwrap_or_default(),
                term_duration: s(v, "termDuration").unwrap_or_default(),
                effective_start_date: s(v, "effectiveStartDate"),
                commitment_end_date: s(v, "commitmentEndDate"),
                cancellation_window_ends: refund_end,
                product_type: v
                    .pointer("/productType/id")
                    .and_then(Value::as_str)
                    .map(ToString::to_string),
                is_trial: v.get("isTrial").and_then(Value::as_bool).unwrap_or(false),
            })
        })
        .collect())
}

/// Seat usage from Partner Center `subscribedskus` (needs an app+user token).
pub async fn pc_subscribed_skus(
    apis: &Apis,
    base: &str,
    customer_id: &str,
) -> Result<Vec<SkuUsage>, FetchError> {
    let raw = pc_collection(
        apis,
        base,
        format!("{base}/v1/customers/{customer_id}/subscribedskus"),
        &TokenSource::PartnerCenterUser,
    )
    .await?;
    Ok(raw
        .iter()
        .filter_map(|v| {
            let sku = v.get("productSku")?;
            Some(SkuUsage {
                sku_id: s(sku, "id")?.to_lowercase(),
                sku_part_number: s(sku, "skuPartNumber").unwrap_or_default(),
                consumed_units: v.get("consumedUnits").and_then(Value::as_i64).unwrap_or(0),
                enabled_units: v.get("activeUnits").and_then(Value::as_i64).unwrap_or(0),
                capability_status: s(v, "capabilityStatus").unwrap_or_default(),
            })
        })
        .collect())
}

// ---------------------------------------------------------------- Graph

/// A Graph user as a domain user.
pub fn entra_user(v: &Value) -> Option<EntraUser> {
    let upn = s(v, "userPrincipalName").unwrap_or_default();
    let user_type = if s(v, "userType").is_some_and(|t| t.eq_ignore_ascii_case("guest")) {
        UserType::Guest
    } else {
        UserType::Member
    };
    Some(EntraUser {
        id: s(v, "id")?.to_lowercase(),
        user_principal_name: upn,
        display_name: s(v, "displayName"),
        given_name: s(v, "givenName"),
        surname: s(v, "surname"),
        mail: s(v, "mail"),
        account_enabled: v
            .get("accountEnabled")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        user_type,
        sku_ids: items(v, "assignedLicenses")
            .iter()
            .filter_map(|l| s(l, "skuId").map(|x| x.to_lowercase()))
            .collect(),
        job_title: s(v, "jobTitle"),
        department: s(v, "department"),
        business_phone: v
            .get("businessPhones")
            .and_then(Value::as_array)
            .and_then(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .find(|p| !p.trim().is_empty())
            })
            .map(ToString::to_string),
        mobile_phone: s(v, "mobilePhone"),
    })
}

/// The result of reading users through the delta query.
#[derive(Debug, Default)]
pub struct UsersDelta {
    /// Users returned in full (new or changed).
    pub changed: Vec<EntraUser>,
    /// Ids reported as `@removed`.
    pub removed: Vec<String>,
    pub delta_link: Option<String>,
}

/// Why a delta read could not continue.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    #[error("the stored delta link has expired; a full read follows")]
    Expired,
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

/// Follows a users delta round from `url` (the initial query, or a stored delta link) to its delta link.
pub async fn users_delta(apis: &Apis, tenant: &str, url: String) -> Result<UsersDelta, DeltaError> {
    let source = TokenSource::GraphCustomer(tenant.to_string());
    let mut out = UsersDelta::default();
    let mut url = url;
    for _ in 0..100_000 {
        let page = match get_json(apis, &source, Api::Graph, &url, &[]).await {
            Ok(p) => p,
            Err(FetchError::Api(e))
                if e.status == Some(410)
                    || e.code.as_deref().is_some_and(|c| {
                        c.eq_ignore_ascii_case("syncStateNotFound")
                            || c.eq_ignore_ascii_case("resyncRequired")
                    }) =>
            {
                return Err(DeltaError::Expired);
            }
            Err(e) => return Err(e.into()),
        };
        for v in items(&page, "value") {
            if v.get("@removed").is_some() {
                if let Some(id) = s(&v, "id") {
                    out.removed.push(id.to_lowercase());
                }
            } else if let Some(u) = entra_user(&v) {
                out.changed.push(u);
            }
        }
        if let Some(next) = s(&page, "@odata.nextLink") {
            url = next;
            continue;
        }
        out.delta_link = s(&page, "@odata.deltaLink");
        break;
    }
    Ok(out)
}

/// The first URL of a users delta round.
pub fn users_delta_start(graph_url: &str) -> String {
    format!("{graph_url}/v1.0/users/delta?$select={USER_SELECT}")
}

/// Every user of a tenant through `/users` (`$top=999`), when delta queries are off.
pub async fn users(
    apis: &Apis,
    graph_url: &str,
    tenant: &str,
) -> Result<Vec<EntraUser>, FetchError> {
    let source = TokenSource::GraphCustomer(tenant.to_string());
    graph_list(
        apis,
        &source,
        format!("{graph_url}/v1.0/users?$select={USER_SELECT}&$top=999"),
    )
    .await
    .map(|vs| vs.iter().filter_map(entra_user).collect())
}

async fn graph_list(
    apis: &Apis,
    source: &TokenSource,
    first: String,
) -> Result<Vec<Value>, FetchError> {
    let mut out = Vec::new();
    let mut url = first;
    for _ in 0..100_000 {
        let page = get_json(apis, source, Api::Graph, &url, &[]).await?;
        out.extend(items(&page, "value"));
        match s(&page, "@odata.nextLink") {
            Some(next) => url = next,
            None => break,
        }
    }
    Ok(out)
}

/// A tenant's SKUs with seat counts (Graph `subscribedSkus`).
pub async fn graph_subscribed_skus(
    apis: &Apis,
    graph_url: &str,
    tenant: &str,
) -> Result<Vec<SkuUsage>, FetchError> {
    let source = TokenSource::GraphCustomer(tenant.to_string());
    let raw = graph_list(apis, &source, format!("{graph_url}/v1.0/subscribedSkus")).await?;
    Ok(raw
        .iter()
        .filter_map(|v| {
            Some(SkuUsage {
                sku_id: s(v, "skuId")?.to_lowercase(),
                sku_part_number: s(v, "skuPartNumber").unwrap_or_default(),
                consumed_units: v.get("consumedUnits").and_then(Value::as_i64).unwrap_or(0),
                enabled_units: v
                    .pointer("/prepaidUnits/enabled")
                    .and_then(Value::as_i64)
                    .unwrap_or(0),
                capability_status: s(v, "capabilityStatus").unwrap_or_default(),
            })
        })
        .collect())
}

/// A tenant's company subscriptions (Graph `directory/subscriptions`), which join commerce subscriptions
/// to SKUs.
pub async fn directory_subscriptions(
    apis: &Apis,
    graph_url: &str,
    tenant: &str,
) -> Result<Vec<CompanySubscription>, FetchError> {
    let source = TokenSource::GraphCustomer(tenant.to_string());
    let raw = graph_list(
        apis,
        &source,
        format!("{graph_url}/v1.0/directory/subscriptions"),
    )
    .await?;
    Ok(raw
        .iter()
        .filter_map(|v| {
            Some(CompanySubscription {
                commerce_subscription_id: s(v, "commerceSubscriptionId").map(|x| x.to_lowercase()),
                sku_id: s(v, "skuId")?.to_lowercase(),
                sku_part_number: s(v, "skuPartNumber").unwrap_or_default(),
                total_licenses: v.get("totalLicenses").and_then(Value::as_i64).unwrap_or(0),
                status: s(v, "status").unwrap_or_default(),
            })
        })
        .collect())
}

// ---------------------------------------------------------------- Halo

/// Reads a whole Halo list: `pageinate=true&page_size=100`, advancing `page_no` until a short or empty
/// page (pages are silently capped at 100, so `record_count` is never used to stop early). Accepts the
/// `{record_count, <key>: [...]}` wrapper or a bare array.
pub async fn halo_list(
    apis: &Apis,
    api_url: &str,
    path: &str,
    key: &str,
    params: &str,
) -> Result<Vec<Value>, FetchError> {
    const PAGE: usize = 100;
    let mut out = Vec::new();
    for page_no in 1..100_000 {
        let url =
            format!("{api_url}/{path}?pageinate=true&page_size={PAGE}&page_no={page_no}{params}");
        let body = get_json(apis, &TokenSource::Halo, Api::Halo, &url, &[]).await?;
        let records = match &body {
            Value::Array(a) => a.clone(),
            Value::Object(o) => o
                .get(key)
                .and_then(Value::as_array)
                .or_else(|| o.values().find_map(Value::as_array))
                .cloned()
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let n = records.len();
        out.extend(records);
        if n < PAGE || matches!(body, Value::Array(_)) && n == 0 {
            break;
        }
    }
    Ok(out)
}

/// POSTs a batch to a Halo entity; returns the records Halo sent back (one object or an array).
pub async fn halo_post(
    apis: &Apis,
    api_url: &str,
    path: &str,
    records: &[Value],
    create: bool,
) -> Result<Vec<Value>, FetchError> {
    let req = Request::post(Api::Halo, format!("{api_url}/{path}"))
        .kind(if create {
            RequestKind::Create
        } else {
            RequestKind::Idempotent
        })
        .json(Value::Array(records.to_vec()));
    let resp = send(apis, &TokenSource::Halo, req).await?;
    let body: Value = serde_json::from_str(http::strip_bom(&resp.body)).unwrap_or(Value::Null);
    Ok(match body {
        Value::Array(a) => a,
        Value::Object(_) => vec![body],
        _ => Vec::new(),
    })
}

/// Context for an error in one tenant.
pub fn in_tenant<T>(r: Result<T, FetchError>, tenant: &str, what: &str) -> Result<T> {
    r.map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("tenant {tenant}: {what}"))
}

/// Fails when a name is empty (defensive: API answers without ids are dropped, not guessed).
pub fn require_nonempty(v: &str, what: &str) -> Result<()> {
    if v.is_empty() {
        bail!("{what} is empty");
    }
    Ok(())
}
