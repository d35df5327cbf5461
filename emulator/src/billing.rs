//! Partner billing, built from reference microsoft-apis.md 2.6: Partner Center's invoice list
//! (`GET /v1/invoices`, collection shape of 2.1), Graph's asynchronous usage exports
//! (`POST /v1.0/reports/partners/billing/usage/{billed|unbilled}/export` -> 202 + `Location`), their
//! operations (`running` for a few polls with `Retry-After`, then `succeeded`, or `failed` with
//! "No data available" code 5000 or another error), the manifest (`rootDirectory`, `sasToken` without a
//! leading `?`, `blobCount`, `blobs[{name, partitionValue}]`, `dataFormat`) and the gzip'd blobs on a
//! storage host of their own that answer only with the SAS signature and refuse a bearer token.
//!
//! Where the reference is unsure the less convenient case is available: the success names the manifest
//! by `resourceLocation@odata.navigationLink` (Graph docs) or embeds it as `resourceLocation` (Microsoft's
//! sample); blobs are JSON lines (`compressedJSONLines`, resource doc) or one JSON array
//! (`compressedJSON`, the example) — [`ExportSettings`] picks each.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::graph::graph_error;
use crate::scenario::State;
use crate::server::{Req, Resp, TokenInfo, Urls};
use crate::util;

/// How the emulated export service behaves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExportSettings {
    /// Polls answered `running` before the outcome.
    pub running_polls: u32,
    /// `Retry-After` on a running operation (seconds, verbatim).
    pub retry_after: String,
    /// The manifest embedded as `resourceLocation` instead of linked.
    pub embedded_manifest: bool,
    /// Blobs as JSON lines (`compressedJSONLines`); else one JSON array (`compressedJSON`).
    pub json_lines: bool,
    /// Lines per blob.
    pub lines_per_blob: usize,
    /// The SAS `sig` the blob host requires.
    pub sas_sig: String,
    /// How long a manifest's SAS is valid from the moment the manifest is produced (the export finishing),
    /// seconds of the real monotonic clock, like token lifetimes; its `se=` says when, in wall-clock time.
    /// Past it the blob host refuses the SAS with 403 `AuthenticationFailed`.
    pub sas_lifetime_secs: u64,
}

impl Default for ExportSettings {
    fn default() -> Self {
        ExportSettings {
            running_polls: 1,
            retry_after: "1".into(),
            embedded_manifest: false,
            json_lines: true,
            lines_per_blob: 50_000,
            sas_sig: "emuSASsig%2Bs3cr3t%3D".into(),
            sas_lifetime_secs: 3600,
        }
    }
}

/// Usage lines generated on demand (large exports): `lines` lines spread over `customers`
/// (`(tenant id, name)`), each with three entitlements and five meter categories.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Generated {
    pub lines: usize,
    pub customers: Vec<(String, String)>,
    pub currency: String,
}

/// The usage of one export: explicit lines, generated ones, or a failure.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExportData {
    pub lines: Vec<Value>,
    pub generated: Option<Generated>,
    /// `{"code", "message"}` the operation fails with.
    pub fail: Option<Value>,
}

/// Billing data of a scenario: Partner Center invoices and the usage behind each (`usage` keyed by invoice
/// id; `"current"` for the unbilled export). An invoice with no entry exports as "No data available".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Billing {
    pub invoices: Vec<Value>,
    pub usage: BTreeMap<String, ExportData>,
    pub export: ExportSettings,
}

/// Server-side memory of exports.
#[derive(Debug, Default)]
pub(crate) struct BillingRuntime {
    /// Operation id -> (usage key, polls so far).
    ops: HashMap<String, (String, u32)>,
    manifests: HashMap<String, Value>,
    /// Manifest (operation) id -> the SAS issued with it.
    sas: HashMap<String, Sas>,
    /// Blob path -> (manifest id, gzip'd body).
    blobs: HashMap<String, (String, Vec<u8>)>,
    /// Exports started, in order (usage key).
    pub started: Vec<String>,
    /// Blobs built per usage key (see [`prebuild`]).
    built: HashMap<String, Vec<Vec<u8>>>,
}

/// A manifest's SAS: valid from its issue until `expires` (monotonic); `start` / `expiry` are its `st=` /
/// `se=` in wall-clock seconds, as Azure Storage quotes them when it refuses the SAS.
#[derive(Debug, Clone)]
struct Sas {
    expires: std::time::Instant,
    start: i64,
    expiry: i64,
}

/// Builds (once) and returns the gzip'd blobs of an export key, as its operations will serve them.
pub(crate) fn prebuild(st: &mut State, key: &str) -> Vec<Vec<u8>> {
    let Some(data) = st.billing.usage.get(key).cloned() else {
        return Vec::new();
    };
    let settings = st.billing.export.clone();
    st.rt
        .billing
        .built
        .entry(key.to_string())
        .or_insert_with(|| build_blobs(&data, &settings))
        .clone()
}

/// A Partner Center invoice resource (fields of PC's invoice resource).
pub fn invoice(
    id: &str,
    period_start: &str,
    period_end: &str,
    invoice_date: &str,
    total: f64,
    currency: &str,
) -> Value {
    json!({
        "id": id,
        "invoiceDate": format!("{invoice_date}T00:00:00Z"),
        "billingPeriodStartDate": format!("{period_start}T00:00:00Z"),
        "billingPeriodEndDate": format!("{period_end}T00:00:00Z"),
        "totalCharges": total,
        "paidAmount": 0,
        "currencyCode": currency,
        "currencySymbol": if currency == "USD" { "$" } else { "" },
        "documentType": "Invoice",
        "invoiceType": "OneTime",
        "invoiceDetails": [
            {"invoiceLineItemType": "billing_line_items", "billingProvider": "one_time", "links": {"self": {"uri": format!("/invoices/{id}/lineitems/onetime/billinglineitems"), "method": "GET", "headers": []}}, "attributes": {"objectType": "InvoiceDetail"}},
            {"invoiceLineItemType": "usage_line_items", "billingProvider": "all", "links": {"self": {"uri": format!("/invoices/{id}/lineitems/all/usagelineitems"), "method": "GET", "headers": []}}, "attributes": {"objectType": "InvoiceDetail"}}
        ],
        "links": {"self": {"uri": format!("/invoices/{id}"), "method": "GET", "headers": []}},
        "attributes": {"objectType": "Invoice"}
    })
}

/// One billed usage line of the `full` attribute set (names as Microsoft's attribute table spells them).
#[allow(clippy::too_many_arguments)]
pub fn usage_line(
    customer: (&str, &str),
    entitlement: (&str, &str),
    meter_category: &str,
    meter_name: &str,
    unit: &str,
    quantity: f64,
    unit_price: f64,
    total: f64,
    currency: &str,
    usage_date: &str,
) -> Value {
    let mut line = json!({
        "PartnerId": "0e195b37-4a19-4d3a-bd0b-4d0c4bb5ef6b", "PartnerName": "Adatum Managed Services",
        "CustomerId": customer.0, "CustomerName": customer.1, "CustomerDomainName": format!("{}.onmicrosoft.com", customer.1.split_whitespace().next().unwrap_or("c").to_lowercase()),
        "CustomerCountry": "GB", "InvoiceNumber": "", "MpnId": "1234567", "Tier2MpnId": "", "ResellerMpnId": "",
        "ChargeStartDate": format!("{usage_date}T00:00:00Z"), "ChargeEndDate": format!("{usage_date}T23:59:59Z"), "UsageDate": format!("{usage_date}T00:00:00Z"),
    });
    let more = json!({
        "ProductId": "DZH318Z0BQ3Q", "SkuId": "0001", "AvailabilityId": "DZH318Z0BQ3H", "ProductName": meter_category, "SkuName": meter_name,
        "PublisherName": "Microsoft", "PublisherId": "", "SubscriptionId": "ab8e1c4d-4b3b-4f3e-9d3e-b2b3c4d5e6f7",
        "SubscriptionDescription": "Azure plan", "MeterType": "1 Compute Hour", "MeterCategory": meter_category,
        "MeterId": "8b6f0f2c-1c1e-4d6e-9d3e-7c2b1a0f9e8d", "MeterSubCategory": "Dv3/DSv3 Series", "MeterName": meter_name,
        "MeterRegion": "UK South", "UnitOfMeasure": unit, "ResourceLocation": "uksouth", "ConsumedService": "Microsoft.Compute",
    });
    let rest = json!({
        "ResourceGroup": "rg-prod", "ResourceURI": format!("/subscriptions/{}/resourceGroups/rg-prod/providers/Microsoft.Compute/virtualMachines/vm01", entitlement.0),
        "Tags": "{\"env\":\"prod\"}", "AdditionalInfo": "{\"ServiceType\":\"Standard_D2s_v3\"}", "ServiceInfo1": "", "ServiceInfo2": "",
        "UnitPrice": unit_price, "Quantity": quantity, "UnitType": "1 Hour", "BillingPreTaxTotal": total, "BillingCurrency": currency,
        "PricingPreTaxTotal": total, "PricingCurrency": "USD", "EntitlementId": entitlement.0, "EntitlementDescription": entitlement.1,
        "PCToBCExchangeRate": 1, "PCToBCExchangeRateDate": format!("{usage_date}T00:00:00Z"), "EffectiveUnitPrice": unit_price,
        "RateOfPartnerEarnedCredit": 0.15, "ChargeType": "new", "BenefitOrderId": "", "BenefitId": "", "BenefitType": "",
        "CreditType": "", "CreditPercentage": 0, "IsVerified": true, "ProductSkuTitle": meter_name
    });
    for part in [more, rest] {
        if let (Some(o), Value::Object(p)) = (line.as_object_mut(), part) {
            o.extend(p);
        }
    }
    line
}

const CATEGORIES: [(&str, &str, &str, f64); 5] = [
    ("Virtual Machines", "D2s v3", "1 Hour", 0.096),
    ("Storage", "LRS Data Stored", "1 GB/Month", 0.0208),
    ("Bandwidth", "Standard Data Transfer Out", "1 GB", 0.087),
    ("Azure App Service", "B1", "1 Hour", 0.018),
    ("SQL Database", "S0 DTUs", "1/Day", 0.4839),
];

/// Generated line `i` (deterministic).
pub fn generated_line(g: &Generated, i: usize) -> Value {
    let c = &g.customers[i % g.customers.len().max(1)];
    let e = (i / g.customers.len().max(1)) % 3;
    let (cat, meter, unit, price) = CATEGORIES[i % CATEGORIES.len()];
    let qty = ((i % 97) as f64 + 1.0) / 4.0;
    let total = (qty * price * 1e6).round() / 1e6;
    let ent_id = format!("{}-{e:04}", &c.0[..c.0.len().min(23)]);
    usage_line(
        (&c.0, &c.1),
        (&ent_id, &format!("{} subscription {}", c.1, e + 1)),
        cat,
        meter,
        unit,
        qty,
        price,
        total,
        &g.currency,
        &format!("2028-01-{:02}", i % 28 + 1),
    )
}

/// Generated line `i`, from a cache of one template per customer, entitlement and category (only the
/// quantity, totals and dates vary): large exports build quickly.
fn generated_cached(g: &Generated, i: usize, cache: &mut HashMap<usize, Value>) -> Value {
    let n = g.customers.len().max(1);
    let combo = (i % n) * 1000 + ((i / n) % 3) * 10 + i % CATEGORIES.len();
    let mut v = cache
        .entry(combo)
        .or_insert_with(|| generated_line(g, i))
        .clone();
    let (_, _, _, price) = CATEGORIES[i % CATEGORIES.len()];
    let qty = ((i % 97) as f64 + 1.0) / 4.0;
    let total = (qty * price * 1e6).round() / 1e6;
    let day = format!("2028-01-{:02}", i % 28 + 1);
    v["Quantity"] = json!(qty);
    v["BillingPreTaxTotal"] = json!(total);
    v["PricingPreTaxTotal"] = json!(total);
    v["UsageDate"] = json!(format!("{day}T00:00:00Z"));
    v["ChargeStartDate"] = json!(format!("{day}T00:00:00Z"));
    v["ChargeEndDate"] = json!(format!("{day}T23:59:59Z"));
    v
}

/// The export's lines in blobs, each gzip'd: JSON lines or one JSON array per blob.
pub fn build_blobs(data: &ExportData, settings: &ExportSettings) -> Vec<Vec<u8>> {
    let mut cache = HashMap::new();
    let total = data.lines.len() + data.generated.as_ref().map_or(0, |g| g.lines);
    let per = settings.lines_per_blob.max(1);
    let mut out = Vec::new();
    let mut i = 0;
    while i < total || (total == 0 && out.is_empty()) {
        let end = (i + per).min(total);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        if !settings.json_lines {
            let _ = gz.write_all(b"[");
        }
        for n in i..end {
            let line = if n < data.lines.len() {
                data.lines[n].clone()
            } else {
                generated_cached(
                    data.generated.as_ref().expect("generated"),
                    n - data.lines.len(),
                    &mut cache,
                )
            };
            if !settings.json_lines && n > i {
                let _ = gz.write_all(b",\n");
            }
            let _ = serde_json::to_writer(&mut gz, &line);
            if settings.json_lines {
                let _ = gz.write_all(b"\n");
            }
        }
        if !settings.json_lines {
            let _ = gz.write_all(b"]");
        }
        out.push(gz.finish().unwrap_or_default());
        if total == 0 {
            break;
        }
        i = end;
    }
    out
}

fn odata(kind: &str) -> String {
    format!("#microsoft.graph.partners.billing.{kind}")
}

/// Graph: `/v1.0/reports/partners/billing/...` (`segs` after `billing`).
pub(crate) fn graph(
    st: &mut State,
    urls: &Urls,
    req: &Req,
    token: &TokenInfo,
    segs: &[&str],
) -> Resp {
    // PartnerBilling.Read.All: an app in the partner tenant holding it (the Partner Center app here).
    if !token.tenant.eq_ignore_ascii_case(&st.partner_tenant_id)
        || !token
            .client_id
            .eq_ignore_ascii_case(&st.partner_center_app.client_id)
    {
        return graph_error(
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        );
    }
    match (req.method.as_str(), segs) {
        ("POST", ["usage", which @ ("billed" | "unbilled"), "export"]) => {
            let body = match req.json() {
                Ok(b) => b,
                Err(e) => return graph_error(400, "BadRequest", &e),
            };
            let key = if *which == "billed" {
                let Some(id) = body.get("invoiceId").and_then(Value::as_str) else {
                    return graph_error(400, "BadRequest", "invoiceId is required.");
                };
                if !st.billing.invoices.iter().any(|i| util::s(i, "id") == id) {
                    return graph_error(
                        400,
                        "BadRequest",
                        &format!("Invoice {id} was not found for this partner."),
                    );
                }
                id.to_string()
            } else {
                match body.get("billingPeriod").and_then(Value::as_str) {
                    Some("current") => "current".to_string(),
                    Some("last") => "last".to_string(),
                    _ => {
                        return graph_error(
                            400,
                            "BadRequest",
                            "billingPeriod must be current or last.",
                        );
                    }
                }
            };
            if !matches!(
                body.get("attributeSet").and_then(Value::as_str),
                None | Some("full" | "basic")
            ) {
                return graph_error(400, "BadRequest", "attributeSet must be full or basic.");
            }
            let id = util::guid();
            st.rt.billing.ops.insert(id.clone(), (key.clone(), 0));
            st.rt.billing.started.push(key);
            Resp::json(202, &json!({})).with_header(
                "Location",
                &format!(
                    "{}/v1.0/reports/partners/billing/operations/{id}",
                    urls.graph
                ),
            )
        }
        ("GET", ["operations", id]) => operation(st, urls, id),
        ("GET", ["manifests", id]) => match st.rt.billing.manifests.get(*id) {
            Some(m) => Resp::json(200, m),
            None => graph_error(404, "itemNotFound", &format!("Manifest {id} not found.")),
        },
        _ => graph_error(
            400,
            "BadRequest",
            &format!("Unsupported billing request {} {}.", req.method, req.path),
        ),
    }
}

fn operation(st: &mut State, urls: &Urls, id: &str) -> Resp {
    let settings = st.billing.export.clone();
    let Some((key, polls)) = st.rt.billing.ops.get_mut(id) else {
        return graph_error(404, "itemNotFound", &format!("Operation {id} not found."));
    };
    *polls += 1;
    let (key, polls) = (key.clone(), *polls);
    let created = util::rfc3339(util::now_secs());
    // An export finished in the background (its manifest produced) says so at once.
    if polls <= settings.running_polls && !st.rt.billing.manifests.contains_key(id) {
        return Resp::json(
            200,
            &json!({"@odata.type": odata("runningOperation"), "id": id, "status": "running",
            "createdDateTime": created, "lastActionDateTime": created}),
        )
        .with_header("Retry-After", &settings.retry_after);
    }
    let data = st.billing.usage.get(&key).cloned();
    let failed = |code: &str, message: &str| {
        Resp::json(
            200,
            &json!({"@odata.type": odata("failedOperation"), "id": id, "status": "failed",
            "createdDateTime": created, "lastActionDateTime": created, "error": {"code": code, "message": message}}),
        )
    };
    let Some(data) = data else {
        return failed("5000", "No data available");
    };
    if let Some(f) = &data.fail {
        return failed(util::s(f, "code"), util::s(f, "message"));
    }
    let manifest = match st.rt.billing.manifests.get(id).cloned() {
        Some(m) => m,
        None => produce_manifest(st, urls, id, &key, &data),
    };
    let mut body = json!({"@odata.type": odata("exportSuccessOperation"), "id": id, "status": "succeeded",
        "createdDateTime": created, "lastActionDateTime": created});
    if settings.embedded_manifest {
        body["resourceLocation"] = manifest;
    } else {
        body["resourceLocation@odata.navigationLink"] = json!(format!(
            "{}/v1.0/reports/partners/billing/manifests/{id}",
            urls.graph
        ));
    }
    Resp::json(200, &body)
}

/// The export `id` of `key` finishes now: its blobs are placed on the storage host and its manifest is
/// produced, with a SAS issued now for [`ExportSettings::sas_lifetime_secs`].
fn produce_manifest(st: &mut State, urls: &Urls, id: &str, key: &str, data: &ExportData) -> Value {
    let settings = st.billing.export.clone();
    let created = util::rfc3339(util::now_secs());
    let month = st
        .billing
        .invoices
        .iter()
        .find(|i| util::s(i, "id") == key)
        .map(|i| {
            util::s(i, "billingPeriodStartDate")
                .get(..7)
                .unwrap_or("")
                .replace('-', "")
        })
        .unwrap_or_default();
    let root_path = format!(
        "/billedusagefastpath/v1/PartnerTenantId={}/BillingMonth={month}/InvoiceId={key}/{id}",
        st.partner_tenant_id
    );
    // Built once per export key and reused by later operations of the same export (large ones are slow).
    let blobs = st
        .rt
        .billing
        .built
        .entry(key.to_string())
        .or_insert_with(|| build_blobs(data, &settings))
        .clone();
    let mut names = Vec::new();
    for (n, b) in blobs.into_iter().enumerate() {
        let name = format!("part-{n:05}-{id}.c000.json.gz");
        st.rt
            .billing
            .blobs
            .insert(format!("{root_path}/{name}"), (id.to_string(), b));
        names.push(json!({"name": name, "partitionValue": "default"}));
    }
    let start = util::now_secs();
    let expiry = start + settings.sas_lifetime_secs as i64;
    st.rt.billing.sas.insert(
        id.to_string(),
        Sas {
            expires: std::time::Instant::now()
                + std::time::Duration::from_secs(settings.sas_lifetime_secs),
            start,
            expiry,
        },
    );
    let enc = |secs: i64| util::rfc3339(secs).replace(':', "%3A");
    let m = json!({"id": id, "schemaVersion": "2", "dataFormat": if settings.json_lines { "compressedJSONLines" } else { "compressedJSON" },
        "createdDateTime": created, "eTag": util::opaque(17), "partnerTenantId": st.partner_tenant_id,
        "rootDirectory": format!("{}{root_path}", urls.blob),
        "sasToken": format!("skoid={}&sktid={}&skt={}&ske={}&sks=b&skv=2021-10-04&sv=2021-10-04&st={}&se={}&sr=d&sp=r&sdd=3&sig={}", util::guid(), st.partner_tenant_id, enc(start), enc(expiry), enc(start), enc(expiry), settings.sas_sig),
        "partitionType": "default", "blobCount": names.len(), "blobs": names});
    st.rt.billing.manifests.insert(id.to_string(), m.clone());
    m
}

/// Every export still running finishes now, as Microsoft's would between two runs: its manifest is
/// produced (its SAS issued now) and the next poll of it says `succeeded`. Failing and empty exports are
/// left to answer as they do.
pub(crate) fn finish_running(st: &mut State, urls: &Urls) {
    let running_polls = st.billing.export.running_polls;
    let ops: Vec<(String, String)> = st
        .rt
        .billing
        .ops
        .iter()
        .filter(|(id, _)| !st.rt.billing.manifests.contains_key(*id))
        .map(|(id, (key, _))| (id.clone(), key.clone()))
        .collect();
    for (id, key) in ops {
        if let Some((_, polls)) = st.rt.billing.ops.get_mut(&id) {
            *polls = (*polls).max(running_polls);
        }
        let Some(data) = st.billing.usage.get(&key).cloned() else {
            continue;
        };
        if data.fail.is_none() {
            produce_manifest(st, urls, &id, &key, &data);
        }
    }
}

fn storage_error(status: u16, code: &str, message: &str, detail: Option<&str>) -> Resp {
    // Azure Storage's error body: its message carries the request id and time; `x-ms-error-code` repeats
    // the code.
    let message = format!(
        "{message}\nRequestId:{}\nTime:{}",
        util::guid(),
        jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.7fZ")
    );
    let detail = detail.map_or_else(String::new, |d| {
        format!("<AuthenticationErrorDetail>{d}</AuthenticationErrorDetail>")
    });
    Resp {
        status,
        headers: vec![
            ("content-type".into(), "application/xml".into()),
            ("x-ms-error-code".into(), code.into()),
        ],
        body: format!("<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{code}</Code><Message>{message}</Message>{detail}</Error>").into_bytes(),
    }
}

/// What Azure Storage says to any request it cannot authenticate.
const NOT_AUTHENTICATED: &str = "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.";

/// A wall-clock instant as Azure Storage quotes it (RFC 1123).
fn http_date(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// The storage host: a blob by path, only with its manifest's SAS, within the SAS's validity, and never
/// with a bearer token.
pub(crate) fn blob(st: &mut State, req: &Req) -> Resp {
    if req.header("authorization").is_some() {
        return storage_error(
            403,
            "AuthenticationFailed",
            NOT_AUTHENTICATED,
            Some(
                "An Authorization header was sent to the blob host; the SAS alone must authorise this request.",
            ),
        );
    }
    // The query is matched raw: the signature is compared as it appears in the SAS.
    let param = |k: &str| {
        req.query
            .split('&')
            .find_map(|p| p.strip_prefix(k)?.strip_prefix('='))
    };
    let Some((owner, body)) = st.rt.billing.blobs.get(&req.path).cloned() else {
        if param("sig") != Some(st.billing.export.sas_sig.as_str()) {
            return storage_error(403, "AuthenticationFailed", NOT_AUTHENTICATED, None);
        }
        return storage_error(
            404,
            "BlobNotFound",
            "The specified blob does not exist.",
            None,
        );
    };
    let sas = st.rt.billing.sas.get(&owner).cloned();
    let enc = |secs: i64| util::rfc3339(secs).replace(':', "%3A");
    // The signature covers `st` and `se`: a SAS with other times is not the one issued.
    let genuine = param("sig") == Some(st.billing.export.sas_sig.as_str())
        && sas.as_ref().is_some_and(|s| {
            param("se") == Some(enc(s.expiry).as_str())
                && param("st") == Some(enc(s.start).as_str())
        });
    let Some(sas) = sas.filter(|_| genuine) else {
        return storage_error(403, "AuthenticationFailed", NOT_AUTHENTICATED, None);
    };
    if std::time::Instant::now() >= sas.expires {
        let detail = format!(
            "Signature not valid in the specified time frame: Start [{}] - Expiry [{}] - Current [{}]",
            http_date(sas.start),
            http_date(sas.expiry),
            http_date(util::now_secs())
        );
        return storage_error(
            403,
            "AuthenticationFailed",
            NOT_AUTHENTICATED,
            Some(&detail),
        );
    }
    Resp {
        status: 200,
        headers: vec![("content-type".into(), "application/octet-stream".into())],
        body,
    }
}

/// Exports started so far (invoice ids, `current` for the unbilled one), in order.
pub(crate) fn started(st: &State) -> Vec<String> {
    st.rt.billing.started.clone()
}

/// `YYYY-MM-01` of the month `back` months before the month of `secs`.
fn month_start(secs: i64, back: i32) -> jiff::civil::Date {
    let d = jiff::tz::TimeZone::UTC
        .to_datetime(jiff::Timestamp::from_second(secs).unwrap_or(jiff::Timestamp::UNIX_EPOCH))
        .date();
    let first = d.first_of_month();
    first
        .checked_sub(jiff::Span::new().months(back))
        .unwrap_or(first)
}

/// The small scenario's billing: the last closed period's invoice (dated the 1st of the scenario's month)
/// with usage of the first two mapped customers (two entitlements, several meter categories, a credit) and
/// of an unmapped one; an older closed period; and the current period's unbilled usage.
pub(crate) fn sample(customers: &[crate::scenario::Customer], now: i64) -> Billing {
    let last = month_start(now, 1);
    let older = month_start(now, 2);
    let this = month_start(now, 0);
    let end = |start: jiff::civil::Date| start.last_of_month().to_string();
    let id = |d: jiff::civil::Date| format!("G{}{:02}0001", d.year(), d.month());
    let mapped: Vec<&crate::scenario::Customer> = customers
        .iter()
        .filter(|c| c.halo_client_id.is_some())
        .collect();
    let unmapped = customers.iter().find(|c| c.halo_client_id.is_none());
    let day = |d: jiff::civil::Date, n: i8| d.with().day(n).build().unwrap_or(d).to_string();
    let mut lines = Vec::new();
    let mut current = Vec::new();
    if let Some(a) = mapped.first() {
        let c = (a.tenant_id.as_str(), a.name.as_str());
        let e1 = ("5f2d1e8c-7a41-4e6b-9b0a-2c3d4e5f6a71", "Contoso Production");
        let e2 = ("9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c62", "Contoso Dev/Test");
        lines.push(usage_line(
            c,
            e1,
            "Virtual Machines",
            "D2s v3",
            "1 Hour",
            720.0,
            0.096,
            69.12,
            "USD",
            &day(last, 3),
        ));
        lines.push(usage_line(
            c,
            e1,
            "Virtual Machines",
            "D4s v3",
            "1 Hour",
            100.0,
            0.192,
            19.2,
            "USD",
            &day(last, 4),
        ));
        lines.push(usage_line(
            c,
            e1,
            "Storage",
            "LRS Data Stored",
            "1 GB/Month",
            512.5,
            0.0208,
            10.66,
            "USD",
            &day(last, 5),
        ));
        lines.push(usage_line(
            c,
            e2,
            "Azure App Service",
            "B1",
            "1 Hour",
            744.0,
            0.018,
            13.392,
            "USD",
            &day(last, 6),
        ));
        // A credit: negative usage (a refund of an overcharge).
        lines.push(usage_line(
            c,
            e2,
            "Azure App Service",
            "B1",
            "1 Hour",
            -44.0,
            0.018,
            -0.792,
            "USD",
            &day(last, 7),
        ));
        current.push(usage_line(
            c,
            e1,
            "Virtual Machines",
            "D2s v3",
            "1 Hour",
            240.0,
            0.096,
            23.04,
            "USD",
            &day(this, 1),
        ));
    }
    if let Some(b) = mapped.get(1) {
        let c = (b.tenant_id.as_str(), b.name.as_str());
        let e = ("3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e63", "Fabrikam Azure");
        lines.push(usage_line(
            c,
            e,
            "SQL Database",
            "S0 DTUs",
            "1/Day",
            31.0,
            0.4839,
            15.0009,
            "USD",
            &day(last, 8),
        ));
        lines.push(usage_line(
            c,
            e,
            "Bandwidth",
            "Standard Data Transfer Out",
            "1 GB",
            10.0,
            0.087,
            0.87,
            "USD",
            &day(last, 9),
        ));
    }
    if let Some(u) = unmapped {
        let c = (u.tenant_id.as_str(), u.name.as_str());
        let e = ("7e8f9a0b-1c2d-4e3f-9a4b-5c6d7e8f9a04", "Unmapped Azure");
        lines.push(usage_line(
            c,
            e,
            "Storage",
            "LRS Data Stored",
            "1 GB/Month",
            100.0,
            0.0208,
            2.08,
            "USD",
            &day(last, 10),
        ));
    }
    let total: f64 = lines
        .iter()
        .map(|l| l["BillingPreTaxTotal"].as_f64().unwrap_or(0.0))
        .sum();
    let total = (total * 100.0).round() / 100.0;
    let mut usage = BTreeMap::new();
    usage.insert(
        id(last),
        ExportData {
            lines,
            ..ExportData::default()
        },
    );
    usage.insert(
        "current".to_string(),
        ExportData {
            lines: current,
            ..ExportData::default()
        },
    );
    Billing {
        invoices: vec![
            invoice(
                &id(older),
                &older.to_string(),
                &end(older),
                &day(last, 1),
                0.0,
                "USD",
            ),
            invoice(
                &id(last),
                &last.to_string(),
                &end(last),
                &this.to_string(),
                total + 250.0,
                "USD",
            ),
        ],
        usage,
        export: ExportSettings::default(),
    }
}
