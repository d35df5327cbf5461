//! Halo REST client: paged lists, single GETs and array POSTs (reference sections 2-4).
//!
//! Lists are read with `pageinate=true&page_size=100&page_no=N` until a short or empty page: Halo
//! silently caps pages at 100, so `record_count / page_size` cannot be trusted. Responses are either
//! `{record_count, <key>: [...]}` or a bare array. Records keep their unknown fields (`extra`) so they
//! can be written back. Ids in responses may be floats (`95.0`); ids sent are JSON integers.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{
    Error, de_id, de_null_default, de_opt_bool, de_opt_i64, de_opt_string, lower, send_authed,
    value_to_i64,
};
use crate::auth::{Credentials, TokenSource};
use crate::http::{Api, Http, Request, RequestKind};
use crate::model;

/// Halo's effective maximum page size.
pub const PAGE_SIZE: usize = 100;
/// Pages a listing may have before the client assumes the server ignores `page_no`.
const MAX_PAGES: usize = 10_000;

/// Whether a POST creates records (no `id`) or updates them (every record has an `id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    Create,
    Update,
}

/// Takes the records out of a list response: the `key` array of the wrapper, a bare array, or the
/// first array-valued property (defensive: some endpoints use another key than documented).
pub fn records_of(body: Value, key: &str) -> Option<Vec<Value>> {
    match body {
        Value::Array(items) => Some(items),
        Value::Object(mut map) => {
            if let Some(Value::Array(items)) = map.remove(key) {
                return Some(items);
            }
            if let Some(found) = map
                .iter()
                .find(|(k, v)| v.is_array() && k.eq_ignore_ascii_case(key))
                .map(|(k, _)| k.clone())
                && let Some(Value::Array(items)) = map.remove(&found)
            {
                return Some(items);
            }
            let first = map
                .iter()
                .find(|(_, v)| v.is_array())
                .map(|(k, _)| k.clone());
            match first.and_then(|k| map.remove(&k)) {
                Some(Value::Array(items)) => Some(items),
                // A wrapper without any array (e.g. `{"record_count": 0}`) holds no records.
                _ if map.contains_key("record_count") => Some(Vec::new()),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Rewrites whole-number float ids (`95.0`) as integers in a record about to be sent: Halo rejects
/// `95.0` where it expects an id (reference 2.1). Applies to `id` and `*_id` keys at any depth.
pub fn normalize_ids(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                let is_id = k == "id" || k.ends_with("_id");
                if is_id
                    && let Value::Number(n) = val
                    && !n.is_i64()
                    && !n.is_u64()
                    && let Some(i) = value_to_i64(val)
                {
                    *val = Value::from(i);
                } else {
                    normalize_ids(val);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_ids),
        _ => {}
    }
}

fn has_id(record: &Value) -> bool {
    record
        .get("id")
        .and_then(value_to_i64)
        .is_some_and(|id| id != 0)
}

/// `AreaAzureTenant`: a tenant mapped to a client.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HaloAzureTenant {
    #[serde(default, deserialize_with = "de_opt_string")]
    pub azure_tenant_id: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub azure_tenant_name: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The fields of `fields` a raw record does not carry (a list read returns only its schema's fields).
pub fn absent_fields(record: &Value, fields: &[&str]) -> Vec<String> {
    fields
        .iter()
        .filter(|f| record.get(**f).is_none())
        .map(|f| (*f).to_string())
        .collect()
}

/// Turns raw list records of `entity_path` into typed records (which keep unknown fields), naming the
/// record whose shape is unexpected.
pub fn parse_records<T: serde::de::DeserializeOwned>(
    entity_path: &str,
    records: Vec<Value>,
) -> Result<Vec<T>, Error> {
    records
        .into_iter()
        .map(|v| {
            let id = v.get("id").cloned().unwrap_or(Value::Null);
            serde_json::from_value(v).map_err(|e| {
                Error::Invalid(format!(
                    "Halo {entity_path} record id {id} has an unexpected shape: {e}"
                ))
            })
        })
        .collect()
}

/// A Halo client (`/api/Client`, key `clients`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HaloClientRecord {
    #[serde(deserialize_with = "de_id")]
    pub id: i64,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "de_opt_bool")]
    pub inactive: Option<bool>,
    #[serde(default, deserialize_with = "de_null_default")]
    pub azure_tenants: Vec<HaloAzureTenant>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub website: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub domain: Option<String>,
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub main_site_id: Option<i64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl HaloClientRecord {
    pub fn to_model(&self) -> model::HaloClient {
        model::HaloClient {
            id: self.id,
            name: self.name.clone().unwrap_or_default(),
            inactive: self.inactive.unwrap_or(false),
            azure_tenant_ids: self
                .azure_tenants
                .iter()
                .filter_map(|t| t.azure_tenant_id.as_deref().map(lower))
                .filter(|t| !t.is_empty())
                .collect(),
            website: self.website.clone().filter(|s| !s.is_empty()),
            domain: self.domain.clone().filter(|s| !s.trim().is_empty()),
            email_domains: Vec::new(),
            main_site_id: self.main_site_id.filter(|id| *id > 0),
        }
    }
}

/// A Halo site (`/api/Site`, key `sites`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HaloSiteRecord {
    #[serde(deserialize_with = "de_id")]
    pub id: i64,
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub client_id: Option<i64>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "de_opt_bool")]
    pub inactive: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl HaloSiteRecord {
    pub fn to_model(&self) -> model::HaloSite {
        model::HaloSite {
            id: self.id,
            client_id: self.client_id.unwrap_or(0),
            name: self.name.clone().unwrap_or_default(),
            inactive: self.inactive.unwrap_or(false),
        }
    }
}

/// A Halo user / contact (`/api/Users`, key `users`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HaloUserRecord {
    #[serde(deserialize_with = "de_id")]
    pub id: i64,
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub client_id: Option<i64>,
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub site_id: Option<i64>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub firstname: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub surname: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub emailaddress: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub department: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub phonenumber: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub mobilenumber: Option<String>,
    #[serde(default, deserialize_with = "de_opt_bool")]
    pub inactive: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub azureoid: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub azure_tenant_id: Option<String>,
    /// In `Users_List` (Halo's OpenAPI document); Halo may compute it from its own contracts
    /// (reference halo-api.md 2.3), so what it returns may not be what was written.
    #[serde(default, deserialize_with = "de_opt_bool")]
    pub covered_by_contract: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn non_empty(s: Option<&String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// Halo fills unset GUIDs with the nil GUID on some versions; that is "not linked".
fn guid_or_none(s: Option<&String>) -> Option<String> {
    non_empty(s)
        .map(|g| lower(&g))
        .filter(|g| g != "00000000-0000-0000-0000-000000000000")
}

impl HaloUserRecord {
    pub fn to_model(&self) -> model::HaloUser {
        model::HaloUser {
            id: self.id,
            client_id: self.client_id.unwrap_or(0),
            site_id: self.site_id.unwrap_or(0),
            name: self.name.clone().unwrap_or_default(),
            firstname: non_empty(self.firstname.as_ref()),
            surname: non_empty(self.surname.as_ref()),
            emailaddress: non_empty(self.emailaddress.as_ref()),
            title: non_empty(self.title.as_ref()),
            department: non_empty(self.department.as_ref()),
            phonenumber: non_empty(self.phonenumber.as_ref()),
            mobilenumber: non_empty(self.mobilenumber.as_ref()),
            inactive: self.inactive.unwrap_or(false),
            azureoid: guid_or_none(self.azureoid.as_ref()),
            azure_tenant_id: guid_or_none(self.azure_tenant_id.as_ref()),
            covered_by_contract: self.covered_by_contract,
            customfields: self
                .extra
                .get("customfields")
                .cloned()
                .unwrap_or(Value::Null),
            unread: Vec::new(),
        }
    }
}

/// A Halo software licence (`/api/SoftwareLicence`, key `licences`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HaloLicenceRecord {
    #[serde(deserialize_with = "de_id")]
    pub id: i64,
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub client_id: Option<i64>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub count: Option<i64>,
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub licences_in_use: Option<i64>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub tenant_id: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub third_party_product: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub product_sku: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub billing_cycle: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub term_duration: Option<String>,
    #[serde(default, deserialize_with = "de_opt_bool")]
    pub autorenew: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub start_date: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub end_date: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub manufacturer: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl HaloLicenceRecord {
    pub fn to_model(&self) -> model::HaloLicence {
        model::HaloLicence {
            id: self.id,
            client_id: self.client_id.unwrap_or(0),
            name: self.name.clone().unwrap_or_default(),
            count: self.count,
            licences_in_use: self.licences_in_use,
            tenant_id: guid_or_none(self.tenant_id.as_ref()),
            third_party_product: non_empty(self.third_party_product.as_ref()),
            product_sku: non_empty(self.product_sku.as_ref()),
            status: non_empty(self.status.as_ref()),
            billing_cycle: non_empty(self.billing_cycle.as_ref()),
            term_duration: non_empty(self.term_duration.as_ref()),
            autorenew: self.autorenew,
            start_date: non_empty(self.start_date.as_ref()),
            end_date: non_empty(self.end_date.as_ref()),
            manufacturer: non_empty(self.manufacturer.as_ref()),
            unread: Vec::new(),
        }
    }
}

/// A Halo asset (`/api/Asset`, key `assets`, list schema `Device_List`). `fields` (the asset type's
/// field values) come only with `includeassetfields=true`; `users` and `azure_userprincipalname` are not
/// in the list at all (SPEC 7), so they stay unread here.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HaloAssetRecord {
    #[serde(deserialize_with = "de_id")]
    pub id: i64,
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub client_id: Option<i64>,
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub site_id: Option<i64>,
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub assettype_id: Option<i64>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub inventory_number: Option<String>,
    #[serde(default, deserialize_with = "de_opt_bool")]
    pub inactive: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub intune_id: Option<String>,
    /// The rest, `fields` (`[{id, name, value, display}]`, `FieldHelper`) among them when
    /// `includeassetfields=true` was asked.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl HaloAssetRecord {
    pub fn to_model(&self) -> model::HaloAsset {
        let fields = self
            .extra
            .get("fields")
            .and_then(Value::as_array)
            .map(|fs| {
                fs.iter()
                    .filter_map(|f| {
                        let id = f.get("id").and_then(crate::api::value_to_i64)?;
                        let value = match f.get("value") {
                            Some(Value::String(s)) => s.clone(),
                            Some(Value::Null) | None => String::new(),
                            Some(v) => v.to_string(),
                        };
                        Some((id, value))
                    })
                    .collect()
            });
        model::HaloAsset {
            id: self.id,
            client_id: self.client_id.unwrap_or(0),
            site_id: self.site_id.unwrap_or(0),
            assettype_id: self.assettype_id,
            inventory_number: non_empty(self.inventory_number.as_ref()),
            inactive: self.inactive.unwrap_or(false),
            intune_id: non_empty(self.intune_id.as_ref()).map(|s| s.to_lowercase()),
            fields,
        }
    }
}

/// A Halo asset type (`/api/AssetType`, a bare array).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HaloAssetType {
    #[serde(deserialize_with = "de_id")]
    pub id: i64,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub name: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A Halo invoice (`/api/Invoice`, key `invoices`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HaloInvoiceRecord {
    #[serde(deserialize_with = "de_id")]
    pub id: i64,
    #[serde(default, deserialize_with = "de_opt_i64")]
    pub client_id: Option<i64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Halo client.
#[derive(Debug, Clone)]
pub struct Halo {
    http: Arc<Http>,
    creds: Arc<Credentials>,
    base_url: String,
    page_size: usize,
}

impl Halo {
    /// `api_url`: the resource server, e.g. `https://acme.halopsa.com/api`.
    pub fn new(http: Arc<Http>, creds: Arc<Credentials>, api_url: &str) -> Self {
        Halo {
            http,
            creds,
            base_url: api_url.trim_end_matches('/').to_string(),
            page_size: PAGE_SIZE,
        }
    }

    /// Page size to request (default and maximum that Halo honours: 100).
    #[must_use]
    pub fn with_page_size(mut self, size: usize) -> Self {
        self.page_size = size.max(1);
        self
    }

    fn url(&self, entity: &str, params: &[(&str, String)]) -> Result<reqwest::Url, Error> {
        let raw = format!("{}/{}", self.base_url, entity.trim_matches('/'));
        let mut url = reqwest::Url::parse(&raw).map_err(|e| {
            Error::Invalid(format!("invalid Halo URL {raw}: {e}; check [halo] url"))
        })?;
        if !params.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in params {
                q.append_pair(k, v);
            }
        }
        Ok(url)
    }

    async fn send(&self, req: Request) -> Result<crate::http::Response, Error> {
        send_authed(&self.http, &self.creds, &TokenSource::Halo, req).await
    }

    /// Reads every page of `entity_path` (e.g. `Users`); `key` is the wrapper's array key (`users`).
    pub async fn list(
        &self,
        entity_path: &str,
        key: &str,
        params: &[(&str, &str)],
    ) -> Result<Vec<Value>, Error> {
        self.list_map(entity_path, key, params, Ok).await
    }

    /// [`Halo::list`], each record turned by `map` as its page arrives, so a large list is never held as
    /// raw JSON in full (issue 15: peak memory).
    pub async fn list_map<T>(
        &self,
        entity_path: &str,
        key: &str,
        params: &[(&str, &str)],
        mut map: impl FnMut(Value) -> Result<T, Error>,
    ) -> Result<Vec<T>, Error> {
        let mut out: Vec<T> = Vec::new();
        let mut previous_first: Option<Value> = None;
        for page_no in 1..=MAX_PAGES {
            let mut all: Vec<(&str, String)> =
                params.iter().map(|(k, v)| (*k, (*v).to_string())).collect();
            all.push(("pageinate", "true".into()));
            all.push(("page_size", self.page_size.to_string()));
            all.push(("page_no", page_no.to_string()));
            let url = self.url(entity_path, &all)?;
            let resp = self.send(Request::get(Api::Halo, url.as_str())).await?;
            let body: Value = resp.json()?;
            let record_count = body.get("record_count").and_then(value_to_i64);
            let records = records_of(body, key).ok_or_else(|| {
                Error::Invalid(format!(
                    "Halo {entity_path} page {page_no}: the response has no `{key}` array; check [halo] url"
                ))
            })?;
            let n = records.len();
            // A server that ignores page_no returns the same first page again: stop, don't loop.
            let first = records.first().and_then(|r| r.get("id")).cloned();
            if page_no > 1 && first.is_some() && first == previous_first {
                tracing::warn!(
                    entity = entity_path,
                    page_no,
                    "Halo ignored page_no on page {page_no} of /api/{entity_path}; reading stops at the pages already read"
                );
                break;
            }
            previous_first = first;
            out.reserve(records.len());
            for r in records {
                out.push(map(r)?);
            }
            // The cumulative count reaching `record_count` ends the list without asking for an empty
            // page (reference halo-api.md 2.1): a list of exactly 200 records costs 2 requests, not 3.
            if n == 0 || record_count.is_some_and(|rc| out.len() as i64 >= rc) {
                break;
            }
            if n < self.page_size {
                // A short page ends the list, unless `record_count` says there are more: Halo may cap
                // pages below the size asked for (reference halo-api.md, "Page cap"), and stopping
                // there would drop records (and then duplicate them on the next sync).
                match record_count {
                    Some(rc) if (out.len() as i64) < rc => {
                        tracing::debug!(
                            entity = entity_path,
                            page_no,
                            page_len = n,
                            read = out.len(),
                            record_count = rc,
                            "short page but record_count says more; reading on"
                        );
                    }
                    _ => break,
                }
            }
        }
        Ok(out)
    }

    async fn list_typed<T: serde::de::DeserializeOwned>(
        &self,
        entity_path: &str,
        key: &str,
        params: &[(&str, &str)],
    ) -> Result<Vec<T>, Error> {
        parse_records(entity_path, self.list(entity_path, key, params).await?)
    }

    /// All clients, inactive ones and their Azure tenant mappings included.
    pub async fn clients(&self) -> Result<Vec<HaloClientRecord>, Error> {
        self.list_typed(
            "Client",
            "clients",
            &[("includeinactive", "true"), ("includeazuretenants", "true")],
        )
        .await
    }

    pub async fn sites(&self) -> Result<Vec<HaloSiteRecord>, Error> {
        self.list_typed("Site", "sites", &[("includeinactive", "true")])
            .await
    }

    /// All users of all clients, inactive ones included.
    pub async fn users(&self) -> Result<Vec<HaloUserRecord>, Error> {
        self.list_typed("Users", "users", &[("includeinactive", "true")])
            .await
    }

    pub async fn licences(&self) -> Result<Vec<HaloLicenceRecord>, Error> {
        self.list_typed(
            "SoftwareLicence",
            "licences",
            &[("includeinactive", "true")],
        )
        .await
    }

    pub async fn assets(&self) -> Result<Vec<HaloAssetRecord>, Error> {
        self.list_typed("Asset", "assets", &[("includeinactive", "true")])
            .await
    }

    pub async fn asset_types(&self) -> Result<Vec<HaloAssetType>, Error> {
        self.list_typed("AssetType", "assettypes", &[]).await
    }

    pub async fn invoices(&self) -> Result<Vec<HaloInvoiceRecord>, Error> {
        self.list_typed("Invoice", "invoices", &[]).await
    }

    /// Reads the first page of `entity_path` with one record on it (one request), to check that the API
    /// application and its agent may list it (`doctor`). Returns the records on that page.
    pub async fn probe(&self, entity_path: &str, key: &str) -> Result<usize, Error> {
        let params = [
            ("pageinate", "true".to_string()),
            ("page_size", "1".to_string()),
            ("page_no", "1".to_string()),
        ];
        let url = self.url(entity_path, &params)?;
        let resp = self.send(Request::get(Api::Halo, url.as_str())).await?;
        let body: Value = resp.json()?;
        records_of(body, key).map(|r| r.len()).ok_or_else(|| {
            Error::Invalid(format!(
                "Halo {entity_path}: the response has no `{key}` array; check [halo] url"
            ))
        })
    }

    /// Runs a SQL report without saving it (`POST /api/Report` with `_loadreportonly`, halo-api.md 2.3) and
    /// returns its rows (see [`super::halo_report::rows_of`]). A reply with a `load_error` is an
    /// `Error::Invalid` naming it; a refusal keeps its status (403: no reporting permission).
    pub async fn report(&self, sql: &str) -> Result<Vec<Value>, Error> {
        let url = self.url("Report", &[])?;
        let body = serde_json::json!([{ "_loadreportonly": true, "sql": sql }]);
        let req = Request::post(Api::Halo, url.as_str())
            .kind(RequestKind::Read)
            .json(body);
        let resp = self.send(req).await?;
        super::halo_report::rows_of(resp.json()?)
            .map_err(|e| Error::Invalid(format!("Halo report (POST /api/Report): {e}")))
    }

    /// One record, e.g. `get("Users", 12)`.
    pub async fn get(&self, entity: &str, id: i64) -> Result<Value, Error> {
        let url = self.url(&format!("{}/{id}", entity.trim_matches('/')), &[])?;
        let resp = self.send(Request::get(Api::Halo, url.as_str())).await?;
        Ok(resp.json()?)
    }

    /// POSTs `records` to `entity` as one array and returns the records Halo sent back (one object
    /// or an array). Creates must not carry an `id`; updates must. Whole-number float ids are sent
    /// as integers. A create that fails with a 5xx, a timeout or a dropped connection is not re-sent
    /// (`ErrorKind::Uncertain`); an update is.
    pub async fn post(
        &self,
        entity: &str,
        records: &[Value],
        kind: WriteKind,
    ) -> Result<Vec<Value>, Error> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        for (i, r) in records.iter().enumerate() {
            if !r.is_object() {
                return Err(Error::Invalid(format!(
                    "Halo {entity} record {i} is not a JSON object"
                )));
            }
            match kind {
                WriteKind::Create if has_id(r) => {
                    return Err(Error::Invalid(format!(
                        "Halo {entity} record {i} has an id but was sent as a create"
                    )));
                }
                WriteKind::Update if !has_id(r) => {
                    return Err(Error::Invalid(format!(
                        "Halo {entity} record {i} has no id but was sent as an update"
                    )));
                }
                _ => {}
            }
        }
        let mut body = Value::Array(records.to_vec());
        normalize_ids(&mut body);
        let url = self.url(entity, &[])?;
        let req = Request::post(Api::Halo, url.as_str())
            .kind(match kind {
                WriteKind::Create => RequestKind::Create,
                WriteKind::Update => RequestKind::Idempotent,
            })
            .json(body);
        let resp = self.send(req).await?;
        if resp.body.trim().is_empty() {
            return Ok(Vec::new());
        }
        Ok(match resp.json::<Value>()? {
            Value::Array(items) => items,
            other => vec![other],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::partner_center::tests::fast_http;
    use crate::auth::{CredentialSettings, GraphAuthMode, HaloAuth, TokenProvider};
    use secrecy::SecretString;
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use wiremock::matchers::{body_json, header, method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    #[test]
    fn user_record_with_float_site_lowercases_ids_and_drops_empty_text() {
        let v = json!([{"id": 12, "name": "Jane Doe", "site_id": 482.0, "emailaddress": "Jane@Contoso.com",
            "azureoid": "3C2F0000-0000-0000-0000-000000000001", "inactive": false, "title": ""}]);
        let u = parse_records::<HaloUserRecord>("Users", v.as_array().unwrap().clone()).unwrap()[0]
            .to_model();
        assert_eq!(u.site_id, 482);
        assert_eq!(
            u.azureoid.as_deref(),
            Some("3c2f0000-0000-0000-0000-000000000001")
        );
        assert_eq!(u.title, None);
    }

    #[test]
    fn client_record_tenants_main_site_and_missing_id() {
        let v = json!({"id": 102, "name": "Fabrikam", "azure_tenants": [{"azure_tenant_id": "ABC"}], "main_site_id": 0});
        let c = parse_records::<HaloClientRecord>("Client", vec![v]).unwrap()[0].to_model();
        assert_eq!(c.azure_tenant_ids, vec!["abc"]);
        assert_eq!(c.main_site_id, None);
        let err =
            parse_records::<HaloClientRecord>("Client", vec![json!({"name": "x"})]).unwrap_err();
        assert!(err.to_string().contains("Halo Client record"), "{err}");
    }

    #[test]
    fn licence_record_fields() {
        let v = json!({"id": 5, "client_id": 3, "name": "M365", "count": 10, "autorenew": true,
            "tenant_id": "0A0B0C0D-0000-0000-0000-000000000001"});
        let l =
            parse_records::<HaloLicenceRecord>("SoftwareLicence", vec![v]).unwrap()[0].to_model();
        assert_eq!(l.count, Some(10));
        assert_eq!(l.autorenew, Some(true));
        assert_eq!(
            l.tenant_id.as_deref(),
            Some("0a0b0c0d-0000-0000-0000-000000000001")
        );
    }

    async fn halo_with_mock_auth(server: &MockServer, http: Arc<Http>) -> Halo {
        let provider = TokenProvider::new(
            http.clone(),
            "http://127.0.0.1:9",
            Some(HaloAuth {
                token_url: format!("{}/auth/token", server.uri()),
                tenant: None,
                client_id: "hc".into(),
                client_secret: SecretString::from("hs"),
                scope: "all".into(),
            }),
        );
        let counter = Arc::new(AtomicUsize::new(0));
        Mock::given(method("POST"))
            .and(path("/auth/token"))
            .respond_with(move |_: &wiremock::Request| {
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                ResponseTemplate::new(200).set_body_string(format!(
                    r#"{{"access_token":"halo-{n}","token_type":"Bearer","expires_in":3600}}"#
                ))
            })
            .mount(server)
            .await;
        let creds = Arc::new(Credentials::new(
            provider,
            CredentialSettings {
                partner_tenant_id: "p".into(),
                partner_center_client_id: "a".into(),
                partner_center_client_secret: None,
                partner_center_refresh_token: None,
                graph_client_id: "g".into(),
                graph_client_secret: None,
                graph_refresh_token: None,
                graph_mode: GraphAuthMode::App,
                partner_center_resource: "r".into(),
                graph_resource: "g".into(),
            },
        ));
        Halo::new(http, creds, &format!("{}/api/", server.uri()))
    }

    #[test]
    fn wrapper_bare_array_and_fallback() {
        let w = json!({"page_no": 1, "page_size": 100, "record_count": 717, "users": [{"id": 12, "name": "Jane Doe"}]});
        assert_eq!(records_of(w, "users").unwrap().len(), 1);
        assert_eq!(
            records_of(json!([{"id": 1}, {"id": 2}]), "assettypes")
                .unwrap()
                .len(),
            2
        );
        let other = json!({"record_count": 1, "softwarelicences": [{"id": 3}]});
        assert_eq!(records_of(other, "licences").unwrap()[0]["id"], 3);
        assert_eq!(
            records_of(json!({"record_count": 0}), "users")
                .unwrap()
                .len(),
            0
        );
        assert!(records_of(json!({"message": "x"}), "users").is_none());
    }

    #[test]
    #[allow(clippy::many_single_char_names)]
    fn records_accept_float_ids_and_keep_unknown_fields() {
        let u: HaloUserRecord = serde_json::from_value(json!({
            "id": 9876.0, "name": "Jane Doe", "site_id": 482.0, "client_id": "12",
            "emailaddress": "jane.doe@contoso.com", "azureoid": "3C2F0000-0000-0000-0000-000000000001",
            "inactive": false, "customfields": [{"id": 1, "name": "CFKeep", "value": "1"}], "_warning": null
        }))
        .unwrap();
        let m = u.to_model();
        assert_eq!((m.id, m.site_id, m.client_id), (9876, 482, 12));
        assert_eq!(
            m.azureoid.as_deref(),
            Some("3c2f0000-0000-0000-0000-000000000001")
        );
        assert!(u.extra.contains_key("customfields"));
        let back = serde_json::to_value(&u).unwrap();
        assert_eq!(back["id"], json!(9876));
        assert_eq!(back["customfields"][0]["name"], "CFKeep");

        let c: HaloClientRecord = serde_json::from_value(json!({
            "id": 123, "name": "Contoso", "inactive": false, "main_site_id": 7.0,
            "azure_tenants": [{"azure_tenant_id": "0B5E0000-0000-0000-0000-000000000000", "azure_tenant_name": "Contoso Ltd", "details_name": "Default"}]
        }))
        .unwrap();
        let m = c.to_model();
        assert_eq!(
            m.azure_tenant_ids,
            vec!["0b5e0000-0000-0000-0000-000000000000"]
        );
        assert_eq!(m.main_site_id, Some(7));

        let l: HaloLicenceRecord = serde_json::from_value(json!({
            "id": 771, "type": 1, "name": "Datto SaaS Protection", "count": 42, "client_id": 311,
            "supplier_id": 1630, "vendor": 1630, "manufacturer": "Datto", "billing_cycle": "Monthly",
            "term_duration": "Monthly", "status": "Active", "end_date": "1901-01-01T00:00:00", "autorenew": null
        }))
        .unwrap();
        let m = l.to_model();
        assert_eq!((m.id, m.client_id, m.count), (771, 311, Some(42)));
        assert_eq!(m.autorenew, None);
        assert_eq!(l.extra["supplier_id"], 1630);

        let a: HaloAssetRecord = serde_json::from_value(json!({
            "id": 5, "assettype_id": "130", "site_id": 800, "inventory_number": "ff31",
            "fields": [{"id": 117, "value": "SER1"}], "intune_id": "705c034c-034c-705c-4c03-5c704c035c70"
        }))
        .unwrap();
        assert_eq!(a.assettype_id, Some(130));
        assert!(a.extra.contains_key("fields"));
        let t: Vec<HaloAssetType> =
            serde_json::from_value(json!([{"id": 10, "name": "Laptop"}])).unwrap();
        assert_eq!(t[0].id, 10);
        let inv: HaloInvoiceRecord =
            serde_json::from_value(json!({"id": -94, "client_id": 3, "lines": []})).unwrap();
        assert_eq!(inv.id, -94);
    }

    #[test]
    fn float_ids_become_integers() {
        let mut v = json!([{"id": 95.0, "site_id": 482.0, "count": 3.0, "fields": [{"id": 117.0, "value": 1.5}]}]);
        normalize_ids(&mut v);
        assert_eq!(
            v.to_string(),
            r#"[{"id":95,"site_id":482,"count":3.0,"fields":[{"id":117,"value":1.5}]}]"#
        );
    }

    fn user(i: usize) -> Value {
        json!({"id": i, "name": format!("User {i}"), "site_id": 1.0, "client_id": 1, "inactive": false})
    }

    #[tokio::test]
    async fn reads_250_records_with_page_cap() {
        let server = MockServer::start().await;
        let http = fast_http();
        let halo = halo_with_mock_auth(&server, http.clone()).await;
        // The server caps pages at 100 whatever page_size asks, and reports the grand total.
        for (page, range) in [(1, 1..=100), (2, 101..=200), (3, 201..=250)] {
            let users: Vec<Value> = range.map(user).collect();
            Mock::given(method("GET"))
                .and(path("/api/Users"))
                .and(query_param("pageinate", "true"))
                .and(query_param("page_size", "100"))
                .and(query_param("page_no", page.to_string()))
                .and(query_param("includeinactive", "true"))
                .and(header("authorization", "Bearer halo-1"))
                .respond_with(ResponseTemplate::new(200).set_body_json(
                    json!({"page_no": page, "page_size": 100, "record_count": 250, "users": users}),
                ))
                .expect(1)
                .mount(&server)
                .await;
        }
        let users = halo.users().await.unwrap();
        assert_eq!(users.len(), 250);
        assert_eq!(users[249].id, 250);
        assert_eq!(http.request_count(Api::Halo), 4); // 1 token + 3 pages
    }

    #[tokio::test]
    async fn pages_capped_below_the_requested_size_are_read_on_to_record_count() {
        let server = MockServer::start().await;
        let http = fast_http();
        let halo = halo_with_mock_auth(&server, http.clone()).await;
        // A server capping pages at 40 although 100 were asked: short pages, record_count 90.
        for (page, range) in [(1, 1..=40), (2, 41..=80), (3, 81..=90)] {
            let users: Vec<Value> = range.map(user).collect();
            Mock::given(method("GET"))
                .and(path("/api/Users"))
                .and(query_param("page_size", "100"))
                .and(query_param("page_no", page.to_string()))
                .respond_with(ResponseTemplate::new(200).set_body_json(
                    json!({"page_no": page, "page_size": 100, "record_count": 90, "users": users}),
                ))
                .expect(1)
                .mount(&server)
                .await;
        }
        let users = halo.users().await.unwrap();
        assert_eq!(users.len(), 90);
        assert_eq!(users[89].id, 90);
    }

    #[tokio::test]
    async fn bare_array_ignoring_paging_does_not_loop() {
        let server = MockServer::start().await;
        let http = fast_http();
        let halo = halo_with_mock_auth(&server, http.clone())
            .await
            .with_page_size(2);
        Mock::given(method("GET"))
            .and(path("/api/AssetType"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!([{"id": 10, "name": "A"}, {"id": 11, "name": "B"}])),
            )
            .mount(&server)
            .await;
        let types = halo.asset_types().await.unwrap();
        assert_eq!(types.len(), 2);
    }

    #[tokio::test]
    async fn token_renewed_once_after_401() {
        let server = MockServer::start().await;
        let http = fast_http();
        let halo = halo_with_mock_auth(&server, http.clone()).await;
        Mock::given(method("GET"))
            .and(path("/api/Users/12"))
            .and(header("authorization", "Bearer halo-1"))
            .respond_with(ResponseTemplate::new(401))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/api/Users/12"))
            .and(header("authorization", "Bearer halo-2"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"id": 12.0, "name": "Jane"})),
            )
            .expect(1)
            .mount(&server)
            .await;
        let v = halo.get("Users", 12).await.unwrap();
        assert_eq!(v["name"], "Jane");
    }

    #[tokio::test]
    async fn second_401_is_an_error() {
        let server = MockServer::start().await;
        let http = fast_http();
        let halo = halo_with_mock_auth(&server, http.clone()).await;
        Mock::given(method("GET"))
            .and(path("/api/Users/12"))
            .respond_with(
                ResponseTemplate::new(401).set_body_string(r#"{"error":"invalid_token"}"#),
            )
            .expect(2)
            .mount(&server)
            .await;
        let err = halo.get("Users", 12).await.unwrap_err();
        assert_eq!(err.status(), Some(401));
    }

    #[tokio::test]
    async fn post_sends_integer_ids_and_accepts_object_or_array() {
        let server = MockServer::start().await;
        let http = fast_http();
        let halo = halo_with_mock_auth(&server, http.clone()).await;
        Mock::given(method("POST"))
            .and(path("/api/Users"))
            .and(body_json(json!([{"id": 9877, "inactive": true}])))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"id": 9877.0, "inactive": true})),
            )
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/api/Users"))
            .and(body_json(
                json!([{"name": "A", "site_id": 1}, {"name": "B", "site_id": 1}]),
            ))
            .respond_with(
                ResponseTemplate::new(201)
                    .set_body_json(json!([{"id": 1, "name": "A"}, {"id": 2, "name": "B"}])),
            )
            .expect(1)
            .mount(&server)
            .await;
        let out = halo
            .post(
                "Users",
                &[json!({"id": 9877.0, "inactive": true})],
                WriteKind::Update,
            )
            .await
            .unwrap();
        assert_eq!(out.len(), 1);
        let out = halo
            .post(
                "Users",
                &[
                    json!({"name": "A", "site_id": 1.0}),
                    json!({"name": "B", "site_id": 1}),
                ],
                WriteKind::Create,
            )
            .await
            .unwrap();
        assert_eq!(out.len(), 2);
        let err = halo
            .post("Users", &[json!({"id": 5, "name": "A"})], WriteKind::Create)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Invalid(_)));
    }

    #[tokio::test]
    async fn create_not_resent_after_503() {
        let server = MockServer::start().await;
        let http = fast_http();
        let halo = halo_with_mock_auth(&server, http.clone()).await;
        Mock::given(method("POST"))
            .and(path("/api/SoftwareLicence"))
            .respond_with(ResponseTemplate::new(503))
            .expect(1)
            .mount(&server)
            .await;
        let err = halo
            .post(
                "SoftwareLicence",
                &[json!({"name": "X", "client_id": 1})],
                WriteKind::Create,
            )
            .await
            .unwrap_err();
        let Error::Api(e) = err else { panic!("{err}") };
        assert_eq!(e.kind, crate::http::ErrorKind::Uncertain);
    }
}
