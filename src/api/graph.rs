//! Microsoft Graph client, per customer tenant (reference section 3).
//!
//! Collections follow `@odata.nextLink` until it is absent; every request carries
//! `x-ms-throttle-priority: low` (csp-sync is background sync, reference 3.9). Next and delta links are
//! absolute URLs: they are re-based onto the configured Graph host so a token never goes elsewhere.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Error, de_null_default, lower, send_authed};
use crate::auth::{Credentials, TokenSource};
use crate::http::{Api, Http, Request, RequestKind, parse_retry_after};
use crate::model;

mod tenant_read;
pub use tenant_read::{TenantNeeds, TenantRead, UsersFetch, UsersRead};

/// The `$select` of users and of the first delta call (reference 3.2).
pub const USER_SELECT: &str = "id,userPrincipalName,displayName,givenName,surname,mail,accountEnabled,\
userType,assignedLicenses,onPremisesSyncEnabled,createdDateTime,jobTitle,department,mobilePhone,businessPhones";

/// The `$select` of managed devices. `physicalMemoryInBytes` and `ethernetMacAddress` are left out: a
/// list call returns 0 and null for them (only a single-device read fills them).
pub const DEVICE_SELECT: &str = "id,deviceName,managedDeviceName,serialNumber,manufacturer,model,\
operatingSystem,osVersion,userPrincipalName,userDisplayName,userId,emailAddress,complianceState,\
lastSyncDateTime,enrolledDateTime,azureADDeviceId,managedDeviceOwnerType,imei,wiFiMacAddress,\
totalStorageSpaceInBytes";

/// Requests per `$batch` call (Graph's limit).
pub const BATCH_LIMIT: usize = 20;
const MAX_PAGES: usize = 100_000;

/// A Graph collection page.
#[derive(Debug, Clone, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub struct Page<T> {
    #[serde(default = "Vec::new", deserialize_with = "de_null_default")]
    pub value: Vec<T>,
    #[serde(rename = "@odata.nextLink", default)]
    pub next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink", default)]
    pub delta_link: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignedLicense {
    #[serde(default)]
    pub sku_id: Option<String>,
    #[serde(default, deserialize_with = "de_null_default")]
    pub disabled_plans: Vec<String>,
}

/// A user (`/users`, `/users/delta`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphUser {
    pub id: String,
    #[serde(default)]
    pub user_principal_name: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub given_name: Option<String>,
    #[serde(default)]
    pub surname: Option<String>,
    #[serde(default)]
    pub mail: Option<String>,
    #[serde(default)]
    pub account_enabled: Option<bool>,
    #[serde(default)]
    pub user_type: Option<String>,
    #[serde(default, deserialize_with = "de_null_default")]
    pub assigned_licenses: Vec<AssignedLicense>,
    #[serde(default)]
    pub on_premises_sync_enabled: Option<bool>,
    #[serde(default)]
    pub created_date_time: Option<String>,
    #[serde(default)]
    pub job_title: Option<String>,
    #[serde(default)]
    pub department: Option<String>,
    #[serde(default)]
    pub mobile_phone: Option<String>,
    #[serde(default, deserialize_with = "de_null_default")]
    pub business_phones: Vec<String>,
}

fn non_empty(s: Option<&String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

impl GraphUser {
    pub fn to_model(&self) -> model::EntraUser {
        model::EntraUser {
            id: lower(&self.id),
            user_principal_name: self.user_principal_name.clone().unwrap_or_default(),
            display_name: non_empty(self.display_name.as_ref()),
            given_name: non_empty(self.given_name.as_ref()),
            surname: non_empty(self.surname.as_ref()),
            mail: non_empty(self.mail.as_ref()),
            // Always selected; when absent (a minimal delta item) the user is taken as enabled so
            // that missing data never deactivates anyone.
            account_enabled: self.account_enabled.unwrap_or(true),
            user_type: if self
                .user_type
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case("guest"))
            {
                model::UserType::Guest
            } else {
                model::UserType::Member
            },
            sku_ids: self
                .assigned_licenses
                .iter()
                .filter_map(|l| l.sku_id.as_deref().map(lower))
                .collect(),
            job_title: non_empty(self.job_title.as_ref()),
            department: non_empty(self.department.as_ref()),
            business_phone: self
                .business_phones
                .iter()
                .find(|p| !p.trim().is_empty())
                .cloned(),
            mobile_phone: non_empty(self.mobile_phone.as_ref()),
        }
    }
}

/// Result of a delta round: changed users, removed ids with their reason (`changed` = soft-deleted,
/// `deleted` = gone for good), and the delta link to store for next time.
#[derive(Debug, Clone, Default)]
pub struct UsersDelta {
    pub users: Vec<GraphUser>,
    pub removed: Vec<(String, String)>,
    pub delta_link: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrepaidUnits {
    #[serde(default)]
    pub enabled: i64,
    #[serde(default)]
    pub suspended: i64,
    #[serde(default)]
    pub warning: i64,
    #[serde(default)]
    pub locked_out: i64,
}

/// A licence pool (`/subscribedSkus`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphSubscribedSku {
    #[serde(default)]
    pub id: Option<String>,
    pub sku_id: String,
    #[serde(default)]
    pub sku_part_number: Option<String>,
    #[serde(default)]
    pub consumed_units: i64,
    #[serde(default)]
    pub prepaid_units: PrepaidUnits,
    #[serde(default)]
    pub capability_status: Option<String>,
    #[serde(default)]
    pub applies_to: Option<String>,
    #[serde(default, deserialize_with = "de_null_default")]
    pub subscription_ids: Vec<String>,
}

impl GraphSubscribedSku {
    pub fn to_model(&self) -> model::SkuUsage {
        model::SkuUsage {
            sku_id: lower(&self.sku_id),
            sku_part_number: self.sku_part_number.clone().unwrap_or_default(),
            consumed_units: self.consumed_units,
            enabled_units: self.prepaid_units.enabled,
            capability_status: self.capability_status.clone().unwrap_or_default(),
        }
    }
}

/// A `companySubscription` (`/directory/subscriptions`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphCompanySubscription {
    pub id: String,
    #[serde(default)]
    pub commerce_subscription_id: Option<String>,
    #[serde(default)]
    pub sku_id: Option<String>,
    #[serde(default)]
    pub sku_part_number: Option<String>,
    #[serde(default)]
    pub total_licenses: Option<i64>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub is_trial: Option<bool>,
    #[serde(default)]
    pub next_lifecycle_date_time: Option<String>,
    #[serde(default)]
    pub created_date_time: Option<String>,
}

impl GraphCompanySubscription {
    pub fn to_model(&self) -> model::CompanySubscription {
        model::CompanySubscription {
            commerce_subscription_id: self.commerce_subscription_id.as_deref().map(lower),
            sku_id: self.sku_id.as_deref().map(lower).unwrap_or_default(),
            sku_part_number: self.sku_part_number.clone().unwrap_or_default(),
            total_licenses: self.total_licenses.unwrap_or(0),
            status: self.status.clone().unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifiedDomain {
    pub name: String,
    #[serde(default)]
    pub is_default: bool,
    #[serde(default)]
    pub is_initial: bool,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

/// The tenant's `organization` record.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphOrganization {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default, deserialize_with = "de_null_default")]
    pub verified_domains: Vec<VerifiedDomain>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl GraphOrganization {
    /// Verified domain names, lower-case, the default one first.
    pub fn domains(&self) -> Vec<String> {
        let mut d: Vec<&VerifiedDomain> = self.verified_domains.iter().collect();
        d.sort_by_key(|v| !v.is_default);
        d.into_iter().map(|v| v.name.to_ascii_lowercase()).collect()
    }
}

/// An Intune managed device.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphManagedDevice {
    pub id: String,
    #[serde(default)]
    pub device_name: Option<String>,
    #[serde(default)]
    pub managed_device_name: Option<String>,
    #[serde(default)]
    pub serial_number: Option<String>,
    #[serde(default)]
    pub manufacturer: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub operating_system: Option<String>,
    #[serde(default)]
    pub os_version: Option<String>,
    #[serde(default)]
    pub user_principal_name: Option<String>,
    #[serde(default)]
    pub user_display_name: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub email_address: Option<String>,
    #[serde(default)]
    pub compliance_state: Option<String>,
    #[serde(default)]
    pub last_sync_date_time: Option<String>,
    #[serde(default)]
    pub enrolled_date_time: Option<String>,
    #[serde(default, rename = "azureADDeviceId")]
    pub azure_ad_device_id: Option<String>,
    #[serde(default)]
    pub managed_device_owner_type: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl GraphManagedDevice {
    pub fn to_model(&self) -> model::IntuneDevice {
        let clean = |s: &Option<String>| {
            s.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let mut properties = std::collections::BTreeMap::new();
        for (k, v) in [
            ("deviceName", &self.device_name),
            ("managedDeviceName", &self.managed_device_name),
            ("serialNumber", &self.serial_number),
            ("manufacturer", &self.manufacturer),
            ("model", &self.model),
            ("operatingSystem", &self.operating_system),
            ("osVersion", &self.os_version),
            ("userPrincipalName", &self.user_principal_name),
            ("userDisplayName", &self.user_display_name),
            ("emailAddress", &self.email_address),
            ("complianceState", &self.compliance_state),
            ("lastSyncDateTime", &self.last_sync_date_time),
            ("enrolledDateTime", &self.enrolled_date_time),
            ("azureADDeviceId", &self.azure_ad_device_id),
            ("managedDeviceOwnerType", &self.managed_device_owner_type),
        ] {
            if let Some(v) = clean(v) {
                properties.insert(k.to_string(), v);
            }
        }
        for (k, v) in &self.extra {
            let v = match v {
                Value::String(s) if !s.trim().is_empty() => s.trim().to_string(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => continue,
            };
            if !k.starts_with('@') {
                properties.insert(k.clone(), v);
            }
        }
        model::IntuneDevice {
            id: self.id.trim().to_lowercase(),
            device_name: clean(&self.device_name)
                .or_else(|| clean(&self.managed_device_name))
                .unwrap_or_else(|| self.id.clone()),
            operating_system: clean(&self.operating_system).unwrap_or_default(),
            serial_number: clean(&self.serial_number),
            user_id: clean(&self.user_id)
                .map(|s| s.to_lowercase())
                .filter(|s| s != "00000000-0000-0000-0000-000000000000"),
            user_principal_name: clean(&self.user_principal_name),
            compliance_state: clean(&self.compliance_state),
            last_sync: clean(&self.last_sync_date_time),
            properties,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RelationshipCustomer {
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnifiedRole {
    pub role_definition_id: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessDetails {
    #[serde(default, deserialize_with = "de_null_default")]
    pub unified_roles: Vec<UnifiedRole>,
}

/// A GDAP relationship (partner tenant).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DelegatedAdminRelationship {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub customer: RelationshipCustomer,
    #[serde(default)]
    pub access_details: AccessDetails,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub created_date_time: Option<String>,
    #[serde(default)]
    pub activated_date_time: Option<String>,
    #[serde(default)]
    pub end_date_time: Option<String>,
    #[serde(default)]
    pub auto_extend_duration: Option<String>,
}

/// One request of a `$batch`.
#[derive(Debug, Clone, Serialize)]
pub struct BatchRequest {
    pub id: String,
    pub method: String,
    /// Relative to the version root, e.g. `/users?$select=id`.
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub headers: Map<String, Value>,
    /// Ids of requests of the same batch that must run first (a failed one answers this one 424).
    #[serde(rename = "dependsOn", skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

impl BatchRequest {
    /// A read, marked `x-ms-throttle-priority: low` like every request csp-sync sends (each item of a
    /// batch is evaluated against throttling on its own, reference 3.8).
    pub fn get(id: impl Into<String>, url: impl Into<String>) -> Self {
        let mut headers = Map::new();
        headers.insert("x-ms-throttle-priority".into(), Value::from("low"));
        BatchRequest {
            id: id.into(),
            method: "GET".into(),
            url: url.into(),
            body: None,
            headers,
            depends_on: Vec::new(),
        }
    }

    /// This request runs after `id` (and fails with 424 when `id` fails).
    #[must_use]
    pub fn after(mut self, id: impl Into<String>) -> Self {
        self.depends_on.push(id.into());
        self
    }
}

impl BatchResponse {
    /// The item as a [`Response`] of its own (`url` relative to the version root), so it is read and its
    /// error parsed exactly like a request sent alone.
    pub fn to_response(&self, base_url: &str, url: &str) -> crate::http::Response {
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in &self.headers {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if let (Ok(name), Ok(value)) = (
                reqwest::header::HeaderName::from_bytes(k.as_bytes()),
                reqwest::header::HeaderValue::from_str(&v),
            ) {
                headers.insert(name, value);
            }
        }
        crate::http::Response {
            api: Api::Graph,
            method: "GET".into(),
            url: crate::http::redact_url(&format!("{base_url}/v1.0{url}")),
            status: reqwest::StatusCode::from_u16(self.status)
                .unwrap_or(reqwest::StatusCode::INTERNAL_SERVER_ERROR),
            headers,
            body: match &self.body {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
            .and_then(|(_, v)| match v {
                Value::String(s) => parse_retry_after(s),
                Value::Number(n) => n.as_f64().map(Duration::from_secs_f64),
                _ => None,
            })
    }
}

/// One response of a `$batch`.
#[derive(Debug, Clone, Deserialize)]
pub struct BatchResponse {
    pub id: String,
    pub status: u16,
    #[serde(default)]
    pub headers: Map<String, Value>,
    #[serde(default)]
    pub body: Value,
}

#[derive(Debug, Deserialize)]
struct BatchEnvelope {
    #[serde(default)]
    responses: Vec<BatchResponse>,
}

/// Graph client.
#[derive(Debug, Clone)]
pub struct Graph {
    http: Arc<Http>,
    creds: Arc<Credentials>,
    base_url: String,
}

impl Graph {
    /// `base_url`: e.g. `https://graph.microsoft.com` (a trailing `/v1.0` is accepted).
    pub fn new(http: Arc<Http>, creds: Arc<Credentials>, base_url: &str) -> Self {
        let base = base_url.trim_end_matches('/');
        let base = base.strip_suffix("/v1.0").unwrap_or(base).to_string();
        Graph {
            http,
            creds,
            base_url: base,
        }
    }

    /// An absolute next/delta link re-based onto the configured host (path and query kept).
    pub fn rebase(&self, link: &str) -> String {
        if link.starts_with(&format!("{}/", self.base_url)) {
            return link.to_string();
        }
        let path = link
            .strip_prefix("https://")
            .or_else(|| link.strip_prefix("http://"))
            .map_or(link, |rest| rest.find('/').map_or("/", |i| &rest[i..]));
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        format!("{}{path}", self.base_url)
    }

    fn get(url: &str) -> Request {
        Request::get(Api::Graph, url).header("x-ms-throttle-priority", "low")
    }

    async fn list<T: serde::de::DeserializeOwned>(
        &self,
        source: &TokenSource,
        first_url: String,
    ) -> Result<Vec<T>, Error> {
        self.list_from(source, first_url, None).await
    }

    /// A listing whose first page (of `first_url`) may already be in hand (a `$batch` item's body).
    async fn list_from<T: serde::de::DeserializeOwned>(
        &self,
        source: &TokenSource,
        first_url: String,
        mut first: Option<Page<T>>,
    ) -> Result<Vec<T>, Error> {
        let mut url = first_url;
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let page: Page<T> = match first.take() {
                Some(p) => p,
                None => send_authed(&self.http, &self.creds, source, Self::get(&url))
                    .await?
                    .json()?,
            };
            out.extend(page.value);
            match page.next_link {
                Some(next) if !next.is_empty() => url = self.rebase(&next),
                _ => return Ok(out),
            }
        }
        Err(Error::Invalid(format!(
            "Graph listing did not end after {MAX_PAGES} pages"
        )))
    }

    fn customer(tenant: &str) -> TokenSource {
        TokenSource::GraphCustomer(lower(tenant))
    }

    /// All users of a customer tenant.
    pub async fn users(&self, tenant: &str) -> Result<Vec<GraphUser>, Error> {
        let url = format!(
            "{}/v1.0/users?$select={USER_SELECT}&$top=999",
            self.base_url
        );
        self.list(&Self::customer(tenant), url).await
    }

    /// Changes since `delta_link` (or a full initial delta round when `None`). A delta link Graph no
    /// longer accepts gives [`Error::DeltaExpired`]: read in full and start a new round.
    pub async fn users_delta(
        &self,
        tenant: &str,
        delta_link: Option<&str>,
    ) -> Result<UsersDelta, Error> {
        let url = match delta_link {
            Some(link) => self.rebase(link),
            None => format!("{}/v1.0/users/delta?$select={USER_SELECT}", self.base_url),
        };
        self.delta_from(tenant, url, None).await
    }

    /// A delta link that tracks changes from now on, with no data: `$deltatoken=latest` on the first
    /// call (reference 3.3, user-delta.md: "`$deltaToken=latest` returns only a deltaLink"), with the
    /// `$select` the link keeps for later rounds.
    pub async fn users_latest_delta_link(&self, tenant: &str) -> Result<String, Error> {
        let url = format!("{}/v1.0{}", self.base_url, latest_delta_url());
        let d = self.delta_from(tenant, url, None).await?;
        no_data_in_latest(tenant, &d)?;
        Ok(d.delta_link)
    }

    /// A delta round from `url`, whose first page may already be in hand (a `$batch` item's body).
    async fn delta_from(
        &self,
        tenant: &str,
        mut url: String,
        mut first: Option<Page<Value>>,
    ) -> Result<UsersDelta, Error> {
        let source = Self::customer(tenant);
        let mut out = UsersDelta::default();
        for _ in 0..MAX_PAGES {
            let page: Page<Value> = match first.take() {
                Some(p) => p,
                None => {
                    match send_authed(&self.http, &self.creds, &source, Self::get(&url)).await {
                        Ok(r) => r.json()?,
                        Err(Error::Api(e)) if is_delta_expired(&e) => {
                            return Err(delta_expired(tenant, &e));
                        }
                        Err(e) => return Err(e),
                    }
                }
            };
            for item in page.value {
                if let Some(removed) = item.get("@removed") {
                    let id = item.get("id").and_then(Value::as_str).map(lower);
                    let reason = removed
                        .get("reason")
                        .and_then(Value::as_str)
                        .unwrap_or("deleted")
                        .to_string();
                    if let Some(id) = id {
                        out.removed.push((id, reason));
                    }
                    continue;
                }
                let user: GraphUser = serde_json::from_value(item).map_err(|e| {
                    Error::Invalid(format!(
                        "Graph users/delta of tenant {tenant}: unexpected user shape: {e}"
                    ))
                })?;
                out.users.push(user);
            }
            if let Some(delta) = page.delta_link.filter(|d| !d.is_empty()) {
                out.delta_link = delta;
                return Ok(out);
            }
            match page.next_link {
                Some(next) if !next.is_empty() => url = self.rebase(&next),
                _ => {
                    return Err(Error::Invalid(format!(
                        "Graph users/delta of tenant {tenant} ended without a delta link"
                    )));
                }
            }
        }
        Err(Error::Invalid(format!(
            "Graph users/delta of tenant {tenant} did not end after {MAX_PAGES} pages"
        )))
    }

    pub async fn subscribed_skus(&self, tenant: &str) -> Result<Vec<GraphSubscribedSku>, Error> {
        let url = format!("{}/v1.0/subscribedSkus", self.base_url);
        self.list(&Self::customer(tenant), url).await
    }

    pub async fn directory_subscriptions(
        &self,
        tenant: &str,
    ) -> Result<Vec<GraphCompanySubscription>, Error> {
        let url = format!("{}/v1.0/directory/subscriptions", self.base_url);
        self.list(&Self::customer(tenant), url).await
    }

    /// The tenant's organization record (verified domains).
    pub async fn organization(&self, tenant: &str) -> Result<GraphOrganization, Error> {
        let url = format!("{}/v1.0/organization", self.base_url);
        let orgs: Vec<GraphOrganization> = self.list(&Self::customer(tenant), url).await?;
        orgs.into_iter().next().ok_or_else(|| {
            Error::Invalid(format!(
                "Graph returned no organization record for tenant {tenant}"
            ))
        })
    }

    /// Intune managed devices (the tenant needs an Intune licence; a 4xx otherwise).
    pub async fn managed_devices(&self, tenant: &str) -> Result<Vec<GraphManagedDevice>, Error> {
        let url = format!(
            "{}/v1.0/deviceManagement/managedDevices?$select={DEVICE_SELECT}",
            self.base_url
        );
        self.list(&Self::customer(tenant), url).await
    }

    /// The partner's GDAP relationships (partner tenant token); the caller filters by status.
    pub async fn delegated_admin_relationships(
        &self,
    ) -> Result<Vec<DelegatedAdminRelationship>, Error> {
        let url = format!(
            "{}/v1.0/tenantRelationships/delegatedAdminRelationships",
            self.base_url
        );
        self.list(&TokenSource::GraphPartner, url).await
    }

    /// Runs `requests` as `$batch` calls of at most 20 in `tenant` (reference 3.8). Items are retried in a
    /// later batch the way a request sent alone is retried by [`Http::send_raw`] and [`send_authed`]:
    /// a 429 after the longest of the items' `Retry-After`s (or the policy's backoff), a 5xx of a read
    /// after its `Retry-After` or the backoff, a 401 once with a renewed token; an item answered 424
    /// because its `dependsOn` failed is retried with it. A whole batch answered 424 (what older Graph
    /// documentation says a throttled batch gets) is retried whole after its `Retry-After` or the
    /// backoff. Responses come back in the order of `requests` whatever order Graph answered in; their
    /// statuses must be checked by the caller (the last answer of an item that ran out of attempts).
    pub async fn batch(
        &self,
        tenant: &str,
        requests: Vec<BatchRequest>,
    ) -> Result<Vec<BatchResponse>, Error> {
        let source = Self::customer(tenant);
        let order: Vec<String> = requests.iter().map(|r| r.id.clone()).collect();
        {
            let mut seen = std::collections::HashSet::new();
            if let Some(dup) = order.iter().find(|id| !seen.insert(id.as_str())) {
                return Err(Error::Invalid(format!("duplicate $batch request id {dup}")));
            }
        }
        let policy = self.http.retry_policy(Api::Graph);
        let mut done: std::collections::HashMap<String, BatchResponse> =
            std::collections::HashMap::new();
        let mut pending = requests;
        let mut attempt = 1;
        let mut renewed = false;
        while !pending.is_empty() {
            let mut again: Vec<(BatchRequest, BatchResponse)> = Vec::new();
            let mut wait: Option<Duration> = None;
            let mut renew = false;
            let last = attempt >= policy.max_attempts;
            for chunk in chunks(&pending) {
                let token = self.creds.token(&source).await?;
                let answers = match self.send_batch(&source, &chunk).await {
                    Ok(a) => a,
                    Err(Error::Api(e)) if e.status == Some(424) && !last => {
                        // Older documentation: the batch itself answers 424 when items were throttled.
                        let this = e.retry_after.unwrap_or_else(|| policy.backoff(attempt));
                        wait = Some(wait.map_or(this, |w| w.max(this)));
                        self.note_throttled_items(
                            tenant,
                            chunk.len(),
                            attempt,
                            this,
                            e.retry_after.is_some(),
                        );
                        for q in chunk {
                            let r = BatchResponse {
                                id: q.id.clone(),
                                status: 424,
                                headers: Map::new(),
                                body: Value::Null,
                            };
                            again.push((q, r));
                        }
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let mut retried: Vec<String> = Vec::new();
                let mut by_id: Vec<(BatchRequest, BatchResponse)> = Vec::new();
                for r in answers {
                    if let Some(q) = chunk.iter().find(|q| q.id == r.id) {
                        by_id.push((q.clone(), r));
                    }
                }
                for (q, r) in by_id {
                    let read = q.method.eq_ignore_ascii_case("GET");
                    let retry = match r.status {
                        429 => r
                            .retry_after()
                            .map_or(Some((policy.backoff(attempt), false)), |w| {
                                (w <= crate::http::MAX_RETRY_AFTER).then_some((w, true))
                            })
                            .map(|(w, from_server)| {
                                self.note_throttled_items(tenant, 1, attempt, w, from_server);
                                w
                            }),
                        500..=599 if read => {
                            let w = r
                                .retry_after()
                                .filter(|w| *w <= crate::http::MAX_RETRY_AFTER)
                                .unwrap_or_else(|| policy.backoff(attempt));
                            tracing::warn!(
                                api = %Api::Graph, tenant = %lower(tenant), item = %q.url,
                                status = r.status, attempt, wait_ms = w.as_millis() as u64,
                                "server error; retrying"
                            );
                            self.http.note_part_retry(Api::Graph, attempt, w, false);
                            Some(w)
                        }
                        401 if !renewed => {
                            renew = true;
                            Some(Duration::ZERO)
                        }
                        _ => None,
                    };
                    match retry {
                        Some(w) if !last => {
                            wait = Some(wait.map_or(w, |x| x.max(w)));
                            retried.push(q.id.clone());
                            again.push((q, r));
                        }
                        _ => {
                            done.insert(r.id.clone(), r);
                        }
                    }
                }
                // An item that failed only because its dependency did is retried with it.
                for q in &chunk {
                    if q.depends_on.iter().any(|d| retried.contains(d))
                        && done.get(&q.id).is_some_and(|r| r.status == 424)
                        && let Some(r) = done.remove(&q.id)
                    {
                        again.push((q.clone(), r));
                    }
                }
                if renew {
                    self.creds.invalidate_if(&source, &token).await;
                }
            }
            if again.is_empty() {
                break;
            }
            renewed |= renew;
            let wait = wait.unwrap_or(Duration::ZERO);
            if !wait.is_zero() {
                self.http.retry_sleep(wait).await;
            }
            let ids: Vec<String> = again.iter().map(|(q, _)| q.id.clone()).collect();
            pending = again
                .into_iter()
                .map(|(mut q, _)| {
                    // A dependency that is not sent again already succeeded.
                    q.depends_on.retain(|d| ids.contains(d));
                    q
                })
                .collect();
            attempt += 1;
        }
        let mut out = Vec::with_capacity(order.len());
        for id in order {
            match done.remove(&id) {
                Some(r) => out.push(r),
                None => {
                    return Err(Error::Invalid(format!(
                        "Graph $batch answered no response for request {id}"
                    )));
                }
            }
        }
        Ok(out)
    }

    /// One `POST /v1.0/$batch` of at most 20 requests.
    async fn send_batch(
        &self,
        source: &TokenSource,
        chunk: &[BatchRequest],
    ) -> Result<Vec<BatchResponse>, Error> {
        let all_reads = chunk.iter().all(|r| r.method.eq_ignore_ascii_case("GET"));
        let body = serde_json::json!({ "requests": chunk });
        let req = Request::post(Api::Graph, format!("{}/v1.0/$batch", self.base_url))
            .header("x-ms-throttle-priority", "low")
            .kind(if all_reads {
                RequestKind::Read
            } else {
                RequestKind::Create
            })
            .json(body);
        let env: BatchEnvelope = send_authed(&self.http, &self.creds, source, req)
            .await?
            .json()?;
        Ok(env.responses)
    }

    /// Logs throttled `$batch` items like a throttled request (`throttled (429)`, the wait and whether
    /// the server named it) and counts them.
    fn note_throttled_items(
        &self,
        tenant: &str,
        items: usize,
        attempt: u32,
        wait: Duration,
        from_server: bool,
    ) {
        tracing::warn!(
            api = %Api::Graph, tenant = %lower(tenant), items, attempt,
            wait_ms = wait.as_millis() as u64, from_server,
            "throttled (429) by Microsoft Graph: {items} $batch item(s) in tenant {}; retrying them in {} (attempt {} of {})",
            lower(tenant), self.http.shown_wait(wait), attempt + 1,
            self.http.retry_policy(Api::Graph).max_attempts
        );
        for _ in 0..items {
            self.http.note_part_retry(Api::Graph, attempt, wait, true);
        }
    }
}

/// The first call of a delta round that returns no data, only a delta link (reference 3.3), relative to
/// the version root.
fn latest_delta_url() -> String {
    format!("/users/delta?$select={USER_SELECT}&$deltatoken=latest")
}

/// `$batch` chunks of at most [`BATCH_LIMIT`], in order. Chunks are sent one after the other, so a
/// dependency in an earlier chunk has already run: only dependencies within the chunk are kept.
fn chunks(pending: &[BatchRequest]) -> Vec<Vec<BatchRequest>> {
    pending
        .chunks(BATCH_LIMIT)
        .map(|c| {
            c.iter()
                .map(|q| {
                    let mut q = q.clone();
                    q.depends_on.retain(|d| c.iter().any(|x| &x.id == d));
                    q
                })
                .collect()
        })
        .collect()
}

/// A `latest` delta call is expected to carry no users; data there would be lost, so it is an error.
fn no_data_in_latest(tenant: &str, d: &UsersDelta) -> Result<(), Error> {
    if d.users.is_empty() && d.removed.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "Graph users/delta?$deltatoken=latest of tenant {tenant} returned {} user(s); it should return only a delta link",
            d.users.len() + d.removed.len()
        )))
    }
}

fn delta_expired(tenant: &str, e: &crate::http::ApiError) -> Error {
    Error::DeltaExpired {
        tenant: lower(tenant),
        reason: expired_reason(e),
    }
}

/// Why Graph refused a delta link: its error code, else the status.
fn expired_reason(e: &crate::http::ApiError) -> String {
    e.code
        .clone()
        .unwrap_or_else(|| format!("HTTP {}", e.status.unwrap_or_default()))
}

/// A delta link Graph no longer accepts (reference 3.3).
fn is_delta_expired(e: &crate::http::ApiError) -> bool {
    e.status == Some(410)
        || e.code.as_deref().is_some_and(|c| {
            c.eq_ignore_ascii_case("syncStateNotFound") || c.eq_ignore_ascii_case("resyncRequired")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::partner_center::tests::{fast_http, mock_login};
    use serde_json::json;
    use wiremock::matchers::{header, method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const USER: &str = r#"{
      "id": "87D349ED-44d7-43e1-9a83-5f2406dee5bd",
      "userPrincipalName": "AdeleV@contoso.onmicrosoft.com",
      "displayName": "Adele Vance",
      "givenName": "Adele", "surname": "Vance",
      "mail": "AdeleV@contoso.onmicrosoft.com",
      "accountEnabled": true,
      "userType": "Member",
      "onPremisesSyncEnabled": null,
      "assignedLicenses": [ { "disabledPlans": [], "skuId": "CBDC14AB-d96c-4c30-b9f4-6ada7cdc1d46" } ],
      "createdDateTime": "2021-06-01T10:00:00Z"
    }"#;

    const DELTA: &str = r#"{
      "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users",
      "@odata.deltaLink": "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=MF1LuFYbK6Lw4DtZ4o9PDrcGekRP65WE",
      "value": [
        { "displayName": "Testuser7", "givenName": "Joe", "surname": "Doe", "id": "25dcffff-959e-4ece-9973-e5d9b800e8cc" },
        { "id": "8ffff70c-1c63-4860-b963-e34ec660931d", "@removed": { "reason": "changed" } }
      ]
    }"#;

    const SKUS: &str = r#"{
      "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#subscribedSkus",
      "value": [{
          "accountId": "48a80680-7326-48cd-9935-b556b81d3a4e", "accountName": "Contoso",
          "capabilityStatus": "Enabled", "consumedUnits": 14,
          "id": "48a80680-7326-48cd-9935-b556b81d3a4e_c7df2760-2c81-4ef7-b578-5b5392b571df",
          "prepaidUnits": { "enabled": 25, "suspended": 0, "warning": 0, "lockedOut": 0 },
          "servicePlans": [ { "servicePlanId": "8c098270-9dd4-4350-9b30-ba4703f3b36b", "servicePlanName": "ADALLOM_S_O365", "provisioningStatus": "Success", "appliesTo": "User" } ],
          "skuId": "c7df2760-2c81-4ef7-b578-5b5392b571df", "skuPartNumber": "ENTERPRISEPREMIUM",
          "appliesTo": "User", "subscriptionIds": ["11111111-0000-0000-0000-000000000000"]
      }]
    }"#;

    const ORG: &str = r#"{
      "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#organization",
      "value": [{
        "id": "52eaad04-13a2-4a2f-9ce8-93a294fadf36", "displayName": "Contoso",
        "countryLetterCode": "US", "city": "redmond", "businessPhones": ["8006427676"],
        "verifiedDomains": [
          { "name": "contoso.onmicrosoft.com", "isDefault": false, "isInitial": true, "type": "Managed", "capabilities": "Email, OfficeCommunicationsOnline" },
          { "name": "Contoso.com", "isDefault": true, "isInitial": false, "type": "Managed" } ],
        "assignedPlans": [ { "assignedDateTime": "2017-07-29T02:16:28Z", "capabilityStatus": "Enabled", "service": "SharePoint", "servicePlanId": "5dbe027f-2339-4123-9542-606e4d348a72" } ]
      }]
    }"#;

    const DEVICE: &str = r##"{
      "@odata.type": "#microsoft.graph.managedDevice",
      "id": "705c034c-034c-705c-4c03-5c704c035c70", "userId": "User Id value",
      "deviceName": "Device Name value", "managedDeviceOwnerType": "company",
      "enrolledDateTime": "2016-12-31T23:59:43.797191-08:00", "lastSyncDateTime": "2017-01-01T00:02:49.3205976-08:00",
      "operatingSystem": "Operating System value", "complianceState": "compliant", "osVersion": "Os Version value",
      "azureADDeviceId": "Azure ADDevice Id value", "userPrincipalName": "User Principal Name value",
      "model": "Model value", "manufacturer": "Manufacturer value", "serialNumber": "Serial Number value"
    }"##;

    const RELATIONSHIP: &str = r##"{
      "@odata.type": "#microsoft.graph.delegatedAdminRelationship",
      "@odata.etag": "W/\"JyIwMzAwZTM0ZS0wMDAwLTAyMDAtMDAwMC02MTRjZjI1YzAwMDAiJw==\"",
      "id": "5d027261-d21f-4aa9-b7db-7fa1f56fb163-8777b240-c6f0-4469-9e98-a3205431b836",
      "displayName": "Contoso admin relationship", "duration": "P730D",
      "customer": { "tenantId": "52eaad04-13a2-4a2f-9ce8-93a294fadf36", "displayName": "Contoso Inc" },
      "accessDetails": { "unifiedRoles": [ { "roleDefinitionId": "dd4db9a0-cc4a-4213-9f9f-70242232d97e" } ] },
      "status": "active", "createdDateTime": "2022-02-10T11:24:42.3148266Z",
      "lastModifiedDateTime": "2022-02-10T11:26:44.9941884Z", "activatedDateTime": "2022-02-10T11:26:44.9941884Z",
      "endDateTime": "2024-02-10T11:24:42.3148266Z"
    }"##;

    const BATCH_ITEM_ERROR: &str = r#"{ "id": "3", "status": 403,
      "headers": { "Cache-Control": "no-cache", "x-ms-resource-unit": "1", "Content-Type": "application/json" },
      "body": { "error": { "code": "Authorization_RequestDenied", "message": "Insufficient privileges to complete the operation.",
                "innerError": { "date": "2025-02-13T10:17:06", "request-id": "93b6f17e-c05d-4f45-ad2a-6665c708d8a0", "client-request-id": "e70c5c1b-8b47-68c0-3171-3d22f5e0bd54" } } } }"#;

    #[test]
    #[allow(clippy::many_single_char_names)]
    fn documented_samples_parse() {
        let u: GraphUser = serde_json::from_str(USER).unwrap();
        let m = u.to_model();
        assert_eq!(m.id, "87d349ed-44d7-43e1-9a83-5f2406dee5bd");
        assert_eq!(m.sku_ids, vec!["cbdc14ab-d96c-4c30-b9f4-6ada7cdc1d46"]);
        assert_eq!(m.user_type, model::UserType::Member);
        assert!(m.account_enabled);

        let d: Page<Value> = serde_json::from_str(DELTA).unwrap();
        assert_eq!(d.value.len(), 2);
        assert!(d.delta_link.unwrap().contains("$deltatoken="));

        let s: Page<GraphSubscribedSku> = serde_json::from_str(SKUS).unwrap();
        let m = s.value[0].to_model();
        assert_eq!((m.enabled_units, m.consumed_units), (25, 14));
        assert_eq!(m.sku_part_number, "ENTERPRISEPREMIUM");

        let o: Page<GraphOrganization> = serde_json::from_str(ORG).unwrap();
        assert_eq!(
            o.value[0].domains(),
            vec!["contoso.com", "contoso.onmicrosoft.com"]
        );

        let dev: GraphManagedDevice = serde_json::from_str(DEVICE).unwrap();
        assert_eq!(dev.serial_number.as_deref(), Some("Serial Number value"));
        assert_eq!(
            dev.azure_ad_device_id.as_deref(),
            Some("Azure ADDevice Id value")
        );

        let r: DelegatedAdminRelationship = serde_json::from_str(RELATIONSHIP).unwrap();
        assert_eq!(r.status.as_deref(), Some("active"));
        assert_eq!(r.access_details.unified_roles.len(), 1);

        let b: BatchResponse = serde_json::from_str(BATCH_ITEM_ERROR).unwrap();
        assert_eq!(b.status, 403);
        assert_eq!(b.body["error"]["code"], "Authorization_RequestDenied");

        let cs: GraphCompanySubscription = serde_json::from_value(json!({
            "id": "x", "commerceSubscriptionId": "A4C1340D-6911-4758-bba3-0c4c6007d161",
            "skuId": "C7DF2760-2c81-4ef7-b578-5b5392b571df", "skuPartNumber": "ENTERPRISEPREMIUM",
            "status": "Enabled", "totalLicenses": 25, "isTrial": false
        }))
        .unwrap();
        let m = cs.to_model();
        assert_eq!(
            m.commerce_subscription_id.as_deref(),
            Some("a4c1340d-6911-4758-bba3-0c4c6007d161")
        );
        assert_eq!(m.total_licenses, 25);
    }

    async fn graph(server: &MockServer) -> (Graph, Arc<Http>) {
        let http = fast_http();
        let creds = mock_login(server, http.clone()).await;
        (Graph::new(http.clone(), creds, &server.uri()), http)
    }

    #[tokio::test]
    async fn users_follow_next_link_on_another_host() {
        let server = MockServer::start().await;
        let (g, _) = graph(&server).await;
        Mock::given(method("GET"))
            .and(path("/v1.0/users"))
            .and(query_param("$skiptoken", "p2"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"value": [{"id": "B", "userPrincipalName": "b@x"}]})),
            )
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1.0/users"))
            .and(query_param("$top", "999"))
            .and(query_param("$select", USER_SELECT))
            .and(header("x-ms-throttle-priority", "low"))
            .and(header("authorization", "Bearer graph-token"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "value": [serde_json::from_str::<Value>(USER).unwrap()],
                "@odata.nextLink": "https://graph.microsoft.com/v1.0/users?$skiptoken=p2"
            })))
            .expect(1)
            .mount(&server)
            .await;
        let users = g.users("CUST-1").await.unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users[1].id, "B");
    }

    #[tokio::test]
    async fn delta_round_and_expiry() {
        let server = MockServer::start().await;
        let (g, _) = graph(&server).await;
        Mock::given(method("GET"))
            .and(path("/v1.0/users/delta"))
            .and(query_param("$deltatoken", "old"))
            .respond_with(
                ResponseTemplate::new(410).set_body_json(
                    json!({"error": {"code": "syncStateNotFound", "message": "gone"}}),
                ),
            )
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1.0/users/delta"))
            .and(query_param("$skiptoken", "s2"))
            .respond_with(ResponseTemplate::new(200).set_body_string(DELTA))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1.0/users/delta"))
            .and(query_param("$select", USER_SELECT))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "value": [serde_json::from_str::<Value>(USER).unwrap()],
                "@odata.nextLink": format!("{}/v1.0/users/delta?$skiptoken=s2", server.uri())
            })))
            .mount(&server)
            .await;
        let d = g.users_delta("cust-1", None).await.unwrap();
        assert_eq!(d.users.len(), 2);
        assert_eq!(
            d.removed,
            vec![(
                "8ffff70c-1c63-4860-b963-e34ec660931d".to_string(),
                "changed".to_string()
            )]
        );
        assert!(
            d.delta_link
                .ends_with("$deltatoken=MF1LuFYbK6Lw4DtZ4o9PDrcGekRP65WE")
        );
        let err = g
            .users_delta(
                "cust-1",
                Some("https://graph.microsoft.com/v1.0/users/delta?$deltatoken=old"),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::DeltaExpired { .. }), "{err}");
    }

    #[tokio::test]
    async fn batch_retries_throttled_items() {
        let server = MockServer::start().await;
        let (g, http) = graph(&server).await;
        // First call: item 2 throttled with its own Retry-After; second call: only item 2, answered.
        Mock::given(method("POST"))
            .and(path("/v1.0/$batch"))
            .and(wiremock::matchers::body_partial_json(json!({"requests": [{"id": "1"}, {"id": "2"}]})))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"responses": [
                {"id": "2", "status": 429, "headers": {"Retry-After": "0.5"}, "body": {"error": {"code": "TooManyRequests", "message": "x"}}},
                {"id": "1", "status": 200, "headers": {}, "body": {"value": [1]}}
            ]})))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/v1.0/$batch"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"responses": [
                    {"id": "2", "status": 200, "body": {"value": [2]}}
                ]})),
            )
            .expect(1)
            .mount(&server)
            .await;
        let out = g
            .batch(
                "cust-1",
                vec![
                    BatchRequest::get("1", "/users?$select=id"),
                    BatchRequest::get("2", "/subscribedSkus"),
                ],
            )
            .await
            .unwrap();
        assert_eq!(
            out.iter()
                .map(|r| (r.id.as_str(), r.status))
                .collect::<Vec<_>>(),
            [("1", 200), ("2", 200)]
        );
        assert_eq!(http.request_count(Api::Graph), 2);
    }

    #[tokio::test]
    async fn batch_splits_into_twenties() {
        let server = MockServer::start().await;
        let (g, http) = graph(&server).await;
        Mock::given(method("POST"))
            .and(path("/v1.0/$batch"))
            .respond_with(|req: &wiremock::Request| {
                let body: Value = serde_json::from_slice(&req.body).unwrap();
                let reqs = body["requests"].as_array().unwrap();
                assert!(reqs.len() <= 20);
                let responses: Vec<Value> = reqs
                    .iter()
                    .map(|r| json!({"id": r["id"], "status": 200, "body": {}}))
                    .collect();
                ResponseTemplate::new(200).set_body_json(json!({ "responses": responses }))
            })
            .mount(&server)
            .await;
        let reqs: Vec<BatchRequest> = (0..45)
            .map(|i| BatchRequest::get(i.to_string(), format!("/users/{i}")))
            .collect();
        let out = g.batch("cust-1", reqs).await.unwrap();
        assert_eq!(out.len(), 45);
        assert_eq!(out[44].id, "44");
        assert_eq!(http.request_count(Api::Graph), 3);
    }

    /// A steady-state tenant read: one `$batch` whose delta item is refused (410 `syncStateNotFound`, the
    /// link expired) and whose devices item answers 400 (no Intune, reference 3.7); the users are read in
    /// full after a `latest` delta link, outside the batch.
    #[tokio::test]
    async fn tenant_read_resyncs_an_expired_delta_link_and_keeps_item_errors() {
        let server = MockServer::start().await;
        let (g, http) = graph(&server).await;
        Mock::given(method("POST"))
            .and(path("/v1.0/$batch"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"responses": [
                {"id": "devices", "status": 400, "headers": {"Content-Type": "application/json"},
                 "body": {"error": {"code": "BadRequest", "message": "Request not applicable to target tenant."}}},
                {"id": "skus", "status": 200, "headers": {}, "body": serde_json::from_str::<Value>(SKUS).unwrap()},
                {"id": "users", "status": 410, "headers": {},
                 "body": {"error": {"code": "syncStateNotFound", "message": "The sync state generation is not found."}}}
            ]})))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1.0/users/delta"))
            .and(query_param("$deltatoken", "latest"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "value": [], "@odata.deltaLink": "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=fresh"
            })))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1.0/users"))
            .and(query_param("$top", "999"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(
                    json!({"value": [serde_json::from_str::<Value>(USER).unwrap()]}),
                ),
            )
            .expect(1)
            .mount(&server)
            .await;
        let needs = TenantNeeds {
            users: Some(UsersRead::Delta(
                "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=old".into(),
            )),
            skus: true,
            company_subscriptions: false,
            devices: true,
        };
        let read = g.read_tenant("cust-1", &needs).await;
        let Some(Ok(UsersFetch::Full {
            users,
            delta_link,
            expired,
        })) = read.users
        else {
            panic!("{:?}", read.users);
        };
        assert_eq!(users.len(), 1);
        assert!(delta_link.unwrap().ends_with("$deltatoken=fresh"));
        assert_eq!(expired.as_deref(), Some("syncStateNotFound"));
        assert_eq!(read.skus.unwrap().unwrap()[0].consumed_units, 14);
        let err = read.devices.unwrap().unwrap_err();
        assert_eq!(err.status(), Some(400));
        assert!(err.to_string().contains("not applicable"), "{err}");
        assert_eq!(http.request_count(Api::Graph), 3);
        // The batch items were relative to the version root.
        let sent = server.received_requests().await.unwrap();
        let batch: Value = serde_json::from_slice(
            &sent
                .iter()
                .find(|r| r.url.path() == "/v1.0/$batch")
                .unwrap()
                .body,
        )
        .unwrap();
        assert_eq!(batch["requests"][0]["url"], "/users/delta?$deltatoken=old");
    }

    /// A first-sync batch whose `latest` item is throttled: the users item that depends on it answers 424
    /// and both are sent again, the dependency kept, after the item's Retry-After.
    #[tokio::test]
    async fn a_dependent_item_is_retried_with_its_throttled_dependency() {
        let server = MockServer::start().await;
        let (g, http) = graph(&server).await;
        Mock::given(method("POST"))
            .and(path("/v1.0/$batch"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"responses": [
                {"id": "skus", "status": 200, "body": {"value": []}},
                {"id": "users", "status": 424, "body": {"error": {"code": "FailedDependency", "message": "x"}}},
                {"id": "latest", "status": 429, "headers": {"Retry-After": "0.2"}, "body": {"error": {"code": "TooManyRequests", "message": "x"}}}
            ]})))
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/v1.0/$batch"))
            .and(wiremock::matchers::body_partial_json(json!({"requests": [
                {"id": "latest"}, {"id": "users", "dependsOn": ["latest"]}
            ]})))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"responses": [
                {"id": "users", "status": 200, "body": {"value": [serde_json::from_str::<Value>(USER).unwrap()]}},
                {"id": "latest", "status": 200, "body": {"value": [], "@odata.deltaLink": "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=new"}}
            ]})))
            .expect(1)
            .mount(&server)
            .await;
        let needs = TenantNeeds {
            users: Some(UsersRead::Full { track: true }),
            skus: true,
            ..TenantNeeds::default()
        };
        let read = g.read_tenant("cust-1", &needs).await;
        let Some(Ok(UsersFetch::Full {
            users, delta_link, ..
        })) = read.users
        else {
            panic!("{:?}", read.users);
        };
        assert_eq!(users.len(), 1);
        assert!(delta_link.unwrap().ends_with("$deltatoken=new"));
        assert!(read.skus.unwrap().unwrap().is_empty());
        assert_eq!(http.request_count(Api::Graph), 2);
        assert_eq!(http.throttled_count(Api::Graph), 1);
    }

    #[tokio::test]
    async fn token_renewed_once_after_401() {
        let server = MockServer::start().await;
        let (g, _) = graph(&server).await;
        Mock::given(method("GET"))
            .and(path("/v1.0/organization"))
            .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": {"code": "InvalidAuthenticationToken", "message": "Access token has expired or is not yet valid."}})))
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1.0/organization"))
            .respond_with(ResponseTemplate::new(200).set_body_string(ORG))
            .expect(1)
            .mount(&server)
            .await;
        let org = g.organization("cust-1").await.unwrap();
        assert_eq!(org.display_name.as_deref(), Some("Contoso"));
        let token_calls = server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == "/cust-1/oauth2/v2.0/token")
            .count();
        assert_eq!(
            token_calls, 2,
            "the token is fetched again once after the 401"
        );
    }
}
