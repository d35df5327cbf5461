//! Partner Center REST client: customers, subscriptions, subscribed SKUs (reference section 2).
//!
//! Paging follows `links.next.uri` and sends every header listed in `links.next.headers`
//! (`MS-ContinuationToken`) until there is no next link. Relative links come with or without the `/v1`
//! prefix. Every request carries a new `MS-RequestId` (kept on retries of that request) and the
//! `MS-CorrelationId` of its logical call.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Error, de_null_default, lower, new_guid, send_authed};
use crate::auth::{Credentials, TokenSource};
use crate::http::{Api, Http, Request};
use crate::model;

/// Pages a listing may have before the client assumes the server is looping.
const MAX_PAGES: usize = 10_000;

/// A Partner Center collection page.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "T: Deserialize<'de>"))]
pub struct Collection<T> {
    #[serde(default = "Vec::new", deserialize_with = "de_null_default")]
    pub items: Vec<T>,
    #[serde(default)]
    pub links: Option<Links>,
    #[serde(default)]
    pub continuation_token: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Links {
    #[serde(default)]
    pub next: Option<Link>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Link {
    pub uri: String,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default, deserialize_with = "de_null_default")]
    pub headers: Vec<LinkHeader>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LinkHeader {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompanyProfile {
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub company_name: Option<String>,
}

/// `Customer` resource.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PcCustomer {
    pub id: String,
    #[serde(default)]
    pub company_profile: Option<CompanyProfile>,
    #[serde(default)]
    pub relationship_to_partner: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl PcCustomer {
    pub fn to_model(&self) -> model::Customer {
        let profile = self.company_profile.clone().unwrap_or_default();
        let id = lower(&self.id);
        model::Customer {
            tenant_id: profile
                .tenant_id
                .as_deref()
                .map(lower)
                .filter(|t| !t.is_empty() && !t.starts_with('<'))
                .unwrap_or_else(|| id.clone()),
            id,
            company_name: profile.company_name.unwrap_or_default(),
            domain: profile.domain.unwrap_or_default(),
            relationship: self.relationship_to_partner.clone().unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductType {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundOption {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// `Subscription` resource (NCE and legacy shapes).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PcSubscription {
    pub id: String,
    #[serde(default)]
    pub offer_id: Option<String>,
    #[serde(default)]
    pub offer_name: Option<String>,
    #[serde(default)]
    pub friendly_name: Option<String>,
    #[serde(default)]
    pub quantity: Option<i64>,
    #[serde(default)]
    pub unit_type: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub auto_renew_enabled: Option<bool>,
    #[serde(default)]
    pub billing_cycle: Option<String>,
    #[serde(default)]
    pub term_duration: Option<String>,
    #[serde(default)]
    pub effective_start_date: Option<String>,
    #[serde(default)]
    pub commitment_end_date: Option<String>,
    #[serde(default, deserialize_with = "de_null_default")]
    pub refund_options: Vec<RefundOption>,
    #[serde(default)]
    pub product_type: Option<ProductType>,
    #[serde(default)]
    pub is_trial: Option<bool>,
    #[serde(default)]
    pub parent_subscription_id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Parses a Partner Center status; unknown values become `None` (logged by the reader if it cares).
pub fn subscription_status(s: &str) -> model::SubscriptionStatus {
    use model::SubscriptionStatus as S;
    match s.trim().to_ascii_lowercase().as_str() {
        "active" => S::Active,
        "pending" => S::Pending,
        "suspended" | "disabled" => S::Suspended,
        "deleted" | "cancelled" | "canceled" => S::Deleted,
        "expired" => S::Expired,
        _ => S::None,
    }
}

impl PcSubscription {
    pub fn to_model(&self) -> model::Subscription {
        // Latest refund window end; compared as timestamps when they parse, else as text.
        let cancellation_window_ends = self
            .refund_options
            .iter()
            .filter_map(|r| r.expires_at.clone())
            .max_by(
                |a, b| match (a.parse::<jiff::Timestamp>(), b.parse::<jiff::Timestamp>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    _ => a.cmp(b),
                },
            );
        model::Subscription {
            id: lower(&self.id),
            offer_id: self.offer_id.clone().unwrap_or_default(),
            offer_name: self
                .offer_name
                .clone()
                .or_else(|| self.friendly_name.clone())
                .unwrap_or_default(),
            friendly_name: self.friendly_name.clone().filter(|s| !s.is_empty()),
            quantity: self.quantity.unwrap_or(0),
            status: subscription_status(self.status.as_deref().unwrap_or("none")),
            auto_renew: self.auto_renew_enabled.unwrap_or(false),
            billing_cycle: self.billing_cycle.clone().unwrap_or_default(),
            term_duration: self.term_duration.clone().unwrap_or_default(),
            effective_start_date: self.effective_start_date.clone(),
            commitment_end_date: self.commitment_end_date.clone(),
            cancellation_window_ends,
            product_type: self.product_type.as_ref().and_then(|p| p.id.clone()),
            is_trial: self.is_trial.unwrap_or(false),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductSku {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub sku_part_number: Option<String>,
    #[serde(default)]
    pub target_type: Option<String>,
}

/// `SubscribedSku` resource (licence pool of a customer).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PcSubscribedSku {
    #[serde(default)]
    pub available_units: Option<i64>,
    #[serde(default)]
    pub active_units: Option<i64>,
    #[serde(default)]
    pub consumed_units: Option<i64>,
    #[serde(default)]
    pub suspended_units: Option<i64>,
    #[serde(default)]
    pub total_units: Option<i64>,
    #[serde(default)]
    pub warning_units: Option<i64>,
    #[serde(default)]
    pub product_sku: ProductSku,
    #[serde(default)]
    pub capability_status: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl PcSubscribedSku {
    pub fn to_model(&self) -> model::SkuUsage {
        model::SkuUsage {
            sku_id: lower(&self.product_sku.id),
            sku_part_number: self.product_sku.sku_part_number.clone().unwrap_or_default(),
            consumed_units: self.consumed_units.unwrap_or(0),
            enabled_units: self.active_units.unwrap_or(0),
            capability_status: self.capability_status.clone().unwrap_or_default(),
        }
    }
}

/// Partner Center client.
#[derive(Debug, Clone)]
pub struct PartnerCenter {
    http: Arc<Http>,
    creds: Arc<Credentials>,
    base_url: String,
    page_size: u32,
}

impl PartnerCenter {
    /// `base_url`: e.g. `https://api.partnercenter.microsoft.com` (with or without `/v1`).
    pub fn new(http: Arc<Http>, creds: Arc<Credentials>, base_url: &str) -> Self {
        let base = base_url.trim_end_matches('/');
        let base = base.strip_suffix("/v1").unwrap_or(base).to_string();
        PartnerCenter {
            http,
            creds,
            base_url: base,
            page_size: 500,
        }
    }

    /// Customers per page (`?size=`), default 500.
    #[must_use]
    pub fn with_page_size(mut self, size: u32) -> Self {
        self.page_size = size.max(1);
        self
    }

    /// Turns a `links.*.uri` into an absolute URL: `/v1/...` as is, `/...` gets `/v1`, absolute
    /// URLs on another host are re-based onto the configured host (the token never leaves it).
    pub fn resolve(&self, uri: &str) -> String {
        let uri = uri.trim();
        let path = if let Some(rest) = uri
            .strip_prefix("https://")
            .or_else(|| uri.strip_prefix("http://"))
        {
            rest.find('/').map_or("/", |i| &rest[i..])
        } else {
            uri
        };
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        if path.starts_with("/v1/") || path == "/v1" || path.starts_with("/v1?") {
            format!("{}{path}", self.base_url)
        } else {
            format!("{}/v1{path}", self.base_url)
        }
    }

    fn request(url: String, correlation: &str) -> Request {
        Request::get(Api::PartnerCenter, url)
            .header("MS-RequestId", new_guid())
            .header("MS-CorrelationId", correlation)
    }

    /// Reads every page of a collection.
    async fn collect<T: serde::de::DeserializeOwned>(
        &self,
        source: &TokenSource,
        first_url: String,
    ) -> Result<Vec<T>, Error> {
        let correlation = new_guid();
        let mut req = Self::request(first_url, &correlation);
        let mut out = Vec::new();
        let mut previous_next: Option<(String, Vec<(String, String)>)> = None;
        for _ in 0..MAX_PAGES {
            let resp = send_authed(&self.http, &self.creds, source, req).await?;
            let page: Collection<T> = resp.json()?;
            out.extend(page.items);
            let Some(next) = page.links.and_then(|l| l.next) else {
                return Ok(out);
            };
            let headers: Vec<(String, String)> =
                next.headers.into_iter().map(|h| (h.key, h.value)).collect();
            let this_next = (next.uri.clone(), headers.clone());
            if previous_next.as_ref() == Some(&this_next) {
                return Err(Error::Invalid(format!(
                    "Partner Center returned the same next link twice ({}); stopping instead of looping",
                    crate::http::redact_url(&next.uri)
                )));
            }
            previous_next = Some(this_next);
            req = Self::request(self.resolve(&next.uri), &correlation);
            for (k, v) in headers {
                req = req.header(k, v);
            }
        }
        Err(Error::Invalid(format!(
            "Partner Center listing did not end after {MAX_PAGES} pages"
        )))
    }

    /// All customers of the partner (app-only token when a client secret is set).
    pub async fn customers(&self) -> Result<Vec<PcCustomer>, Error> {
        let url = format!("{}/v1/customers?size={}", self.base_url, self.page_size);
        self.collect(&TokenSource::PartnerCenterApp, url).await
    }

    /// A customer's subscriptions.
    pub async fn subscriptions(&self, customer_id: &str) -> Result<Vec<PcSubscription>, Error> {
        let url = format!(
            "{}/v1/customers/{}/subscriptions",
            self.base_url,
            lower(customer_id)
        );
        self.collect(&TokenSource::PartnerCenterApp, url).await
    }

    /// The partner's invoices (`/v1/invoices`), as raw records (billing is optional).
    pub async fn invoices(&self) -> Result<Vec<Value>, Error> {
        let url = format!("{}/v1/invoices", self.base_url);
        self.collect(&TokenSource::PartnerCenterApp, url).await
    }

    /// A customer's licence pools (needs an app+user token).
    pub async fn subscribed_skus(&self, customer_id: &str) -> Result<Vec<PcSubscribedSku>, Error> {
        let url = format!(
            "{}/v1/customers/{}/subscribedskus",
            self.base_url,
            lower(customer_id)
        );
        self.collect(&TokenSource::PartnerCenterUser, url).await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::auth::{CredentialSettings, GraphAuthMode, TokenProvider};
    use crate::http::{HttpOptions, RetryPolicy};
    use secrecy::SecretString;
    use std::time::Duration;
    use wiremock::matchers::{header, header_exists, method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    pub(crate) const CUSTOMERS_PAGE: &str = r#"{
      "totalCount": 2,
      "items": [
        {
          "id": "B44BB1FB-C595-45B0-9E09-D657365580BF",
          "companyProfile": {
            "tenantId": "<guid>",
            "domain": "domain",
            "companyName": "companyName",
            "attributes": { "objectType": "CustomerCompanyProfile" }
          },
          "relationshipToPartner": "reseller",
          "attributes": { "objectType": "Customer" }
        }
      ],
      "links": { "self": { "uri": "/v1/customers?size=40", "method": "GET", "headers": [] } },
      "attributes": { "objectType": "Collection" }
    }"#;

    pub(crate) const NCE_SUBSCRIPTION: &str = r#"{
      "id": "a4c1340d-6911-4758-bba3-0c4c6007d161",
      "offerId": "CFQ7TTC0LH18:0001:CFQ7TTC0K971",
      "offerName": "Microsoft 365 Business Basic",
      "friendlyName": "Microsoft 365 Business Basic",
      "productType": { "id": "OnlineServicesNCE", "displayName": "OnlineServicesNCE" },
      "quantity": 1,
      "unitType": "Licenses",
      "hasPurchasableAddons": false,
      "creationDate": "2021-01-14T16:57:15.0966728Z",
      "effectiveStartDate": "2021-01-14T16:57:14.498252Z",
      "commitmentEndDate": "2022-01-13T00:00:00Z",
      "status": "active",
      "autoRenewEnabled": true,
      "isTrial": false,
      "billingType": "license",
      "billingCycle": "monthly",
      "termDuration": "P1Y",
      "renewalTermDuration": "",
      "refundOptions": [ { "type": "Full", "expiresAt": "2021-01-15T00:00:00Z" } ],
      "isMicrosoftProduct": true,
      "partnerId": "",
      "attentionNeeded": false,
      "actionTaken": false,
      "contractType": "subscription",
      "links": {
        "product": { "uri": "/products/CFQ7TTC0LH18?country=US", "method": "GET", "headers": [] },
        "self": { "uri": "/customers/d8202a51-69f9-4228-b900-d0e081af17d7/subscriptions/a4c1340d-6911-4758-bba3-0c4c6007d161", "method": "GET", "headers": [] }
      },
      "publisherName": "Microsoft Corporation",
      "orderId": "34b37d7340cc",
      "attributes": { "objectType": "Subscription" }
    }"#;

    const LEGACY_SUBSCRIPTIONS: &str = r#"{"totalCount":37,"items":[{"id":"3F6E3C5C-0000-4B8A-9E4E-000000000001","entitlementId":"e1","friendlyName":"nickname","quantity":1,"unitType":"none","creationDate":"2019-01-01T00:00:00Z","effectiveStartDate":"2019-01-01T00:00:00Z","commitmentEndDate":"2020-01-01T00:00:00Z","status":"active","autoRenewEnabled":false,"billingType":"none","contractType":"subscription","links":{"offer":{"uri":"/v1/offers/0CCA44D6-0000","method":"GET","headers":[]}},"orderId":"o1","attributes":{"etag":"<etag>","objectType":"Subscription"}}],"attributes":{"objectType":"Collection"}}"#;

    const SUBSCRIBED_SKUS: &str = r#"{
      "totalCount": 2,
      "items": [{
          "availableUnits": 4, "activeUnits": 5, "consumedUnits": 1, "suspendedUnits": 0,
          "totalUnits": 5, "warningUnits": 0,
          "productSku": { "id": "EFCCB6F7-5641-4e0e-bd10-b4976e1bf68e", "name": "Enterprise Mobility + Security E3",
                          "skuPartNumber": "EMS", "targetType": "User", "licenseGroupId": "group1" },
          "servicePlans": [{ "displayName": "Microsoft Intune A Direct", "serviceName": "INTUNE_A",
                             "id": "c1ec4a95-1f05-45b3-a911-aa3fa01094f5", "capabilityStatus": "Enabled", "targetType": "User" }],
          "capabilityStatus": "Enabled",
          "attributes": { "objectType": "SubscribedSku" }
      }],
      "attributes": { "objectType": "Collection" }
    }"#;

    #[test]
    fn documented_samples_parse() {
        let page: Collection<PcCustomer> = serde_json::from_str(CUSTOMERS_PAGE).unwrap();
        let c = page.items[0].to_model();
        assert_eq!(c.id, "b44bb1fb-c595-45b0-9e09-d657365580bf");
        // The placeholder "<guid>" of the doc sample is not a tenant id: fall back to the id.
        assert_eq!(c.tenant_id, c.id);
        assert_eq!(c.company_name, "companyName");
        assert_eq!(c.relationship, "reseller");
        assert!(page.links.unwrap().next.is_none());

        let s: PcSubscription = serde_json::from_str(NCE_SUBSCRIPTION).unwrap();
        let m = s.to_model();
        assert_eq!(m.status, model::SubscriptionStatus::Active);
        assert_eq!(m.product_type.as_deref(), Some("OnlineServicesNCE"));
        assert_eq!(
            m.cancellation_window_ends.as_deref(),
            Some("2021-01-15T00:00:00Z")
        );
        assert_eq!(m.term_duration, "P1Y");
        assert!(m.auto_renew);
        assert!(s.extra.contains_key("orderId"));

        let legacy: Collection<PcSubscription> =
            serde_json::from_str(LEGACY_SUBSCRIPTIONS).unwrap();
        let m = legacy.items[0].to_model();
        assert_eq!(m.id, "3f6e3c5c-0000-4b8a-9e4e-000000000001");
        assert_eq!(m.offer_name, "nickname");
        assert_eq!(m.billing_cycle, "");

        let skus: Collection<PcSubscribedSku> = serde_json::from_str(SUBSCRIBED_SKUS).unwrap();
        let u = skus.items[0].to_model();
        assert_eq!(u.sku_id, "efccb6f7-5641-4e0e-bd10-b4976e1bf68e");
        assert_eq!((u.enabled_units, u.consumed_units), (5, 1));
        assert_eq!(u.sku_part_number, "EMS");
    }

    pub(crate) fn fast_http() -> Arc<Http> {
        let fast = RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
        };
        Arc::new(
            Http::new(HttpOptions {
                retry_scale: 0.01,
                microsoft_retry: fast,
                halo_retry: fast,
                halo_rate_limit: None,
                ..HttpOptions::default()
            })
            .unwrap(),
        )
    }

    /// Credentials against a wiremock login endpoint answering every token request with `token`.
    pub(crate) async fn mock_login(server: &MockServer, http: Arc<Http>) -> Arc<Credentials> {
        Mock::given(method("POST"))
            .and(path("/partner-tenant/oauth2/v2.0/token"))
            .respond_with(ResponseTemplate::new(200).set_body_string(
                r#"{"access_token":"pc-token","expires_in":3599,"token_type":"Bearer"}"#,
            ))
            .mount(server)
            .await;
        Mock::given(method("POST"))
            .and(path("/cust-1/oauth2/v2.0/token"))
            .respond_with(ResponseTemplate::new(200).set_body_string(
                r#"{"access_token":"graph-token","expires_in":"3599","token_type":"Bearer"}"#,
            ))
            .mount(server)
            .await;
        let provider = TokenProvider::new(http, server.uri(), None);
        Arc::new(Credentials::new(
            provider,
            CredentialSettings {
                partner_tenant_id: "partner-tenant".into(),
                partner_center_client_id: "pc-app".into(),
                partner_center_client_secret: Some(SecretString::from("pc-secret")),
                partner_center_refresh_token: Some(SecretString::from("rt")),
                graph_client_id: "graph-app".into(),
                graph_client_secret: Some(SecretString::from("graph-secret")),
                graph_refresh_token: None,
                graph_mode: GraphAuthMode::App,
                partner_center_resource: "https://api.partnercenter.microsoft.com".into(),
                graph_resource: "https://graph.microsoft.com".into(),
            },
        ))
    }

    fn customer(i: usize) -> Value {
        serde_json::json!({
            "id": format!("00000000-0000-0000-0000-{i:012}"),
            "companyProfile": {"tenantId": format!("00000000-0000-0000-0000-{i:012}"),
                               "domain": format!("c{i}.onmicrosoft.com"), "companyName": format!("C{i}")},
            "relationshipToPartner": "reseller",
            "attributes": {"objectType": "Customer"}
        })
    }

    #[test]
    fn links_are_resolved_with_and_without_v1() {
        let http = fast_http();
        let creds = Arc::new(Credentials::new(
            TokenProvider::new(http.clone(), "http://x", None),
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
        let pc = PartnerCenter::new(http, creds, "https://api.pc.example/v1/");
        assert_eq!(
            pc.resolve("/v1/customers?size=40&seekOperation=Next"),
            "https://api.pc.example/v1/customers?size=40&seekOperation=Next"
        );
        assert_eq!(
            pc.resolve("/invoices/unbilled/lineitems?size=2000"),
            "https://api.pc.example/v1/invoices/unbilled/lineitems?size=2000"
        );
        assert_eq!(
            pc.resolve("customers?x=1"),
            "https://api.pc.example/v1/customers?x=1"
        );
        assert_eq!(
            pc.resolve("https://evil.example/v1/customers?x=1"),
            "https://api.pc.example/v1/customers?x=1"
        );
    }

    #[tokio::test]
    async fn customers_across_three_pages_with_bom_and_continuation() {
        let server = MockServer::start().await;
        let http = fast_http();
        let creds = mock_login(&server, http.clone()).await;
        let page1 = serde_json::json!({
            "totalCount": 2, "items": [customer(1), customer(2)],
            "links": {"next": {"uri": "/v1/customers?size=2&seekOperation=Next", "method": "GET",
                               "headers": [{"key": "MS-ContinuationToken", "value": "tok-a"}]}},
            "attributes": {"objectType": "Collection"}
        });
        let page2 = serde_json::json!({
            "totalCount": 2, "items": [customer(3), customer(4)],
            "links": {"next": {"uri": "/customers?size=2&seekOperation=Next", "method": "GET",
                               "headers": [{"key": "MS-ContinuationToken", "value": "tok-b"}]}},
        });
        let page3 = serde_json::json!({"totalCount": 1, "items": [customer(5)], "links": {}});
        Mock::given(method("GET"))
            .and(path("/v1/customers"))
            .and(query_param("size", "2"))
            .and(header("MS-ContinuationToken", "tok-b"))
            .and(header("authorization", "Bearer pc-token"))
            .respond_with(ResponseTemplate::new(200).set_body_string(page3.to_string()))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1/customers"))
            .and(query_param("seekOperation", "Next"))
            .and(header("MS-ContinuationToken", "tok-a"))
            .respond_with(ResponseTemplate::new(200).set_body_string(format!("\u{feff}{page2}")))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1/customers"))
            .and(query_param("size", "2"))
            .and(header_exists("MS-RequestId"))
            .and(header_exists("MS-CorrelationId"))
            .respond_with(ResponseTemplate::new(200).set_body_string(format!("\u{feff}{page1}")))
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        let pc = PartnerCenter::new(http.clone(), creds, &server.uri()).with_page_size(2);
        let customers = pc.customers().await.unwrap();
        let names: Vec<String> = customers
            .iter()
            .map(|c| c.to_model().company_name)
            .collect();
        assert_eq!(names, ["C1", "C2", "C3", "C4", "C5"]);
        assert_eq!(http.request_count(Api::PartnerCenter), 3);
    }

    #[tokio::test]
    async fn throttled_then_ok_keeps_request_id() {
        let server = MockServer::start().await;
        let http = fast_http();
        let creds = mock_login(&server, http.clone()).await;
        Mock::given(method("GET"))
            .and(path("/v1/customers/cust-1/subscriptions"))
            .respond_with(
                ResponseTemplate::new(429)
                    .insert_header("Retry-After", "1")
                    .set_body_string(r#"{ "statusCode": 429, "message": "Rate limit is exceeded. Try again in 1 seconds." }"#),
            )
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1/customers/cust-1/subscriptions"))
            .respond_with(ResponseTemplate::new(200).set_body_string(format!(
                r#"{{"totalCount":1,"items":[{NCE_SUBSCRIPTION}],"attributes":{{"objectType":"Collection"}}}}"#
            )))
            .mount(&server)
            .await;
        let pc = PartnerCenter::new(http, creds, &server.uri());
        let subs = pc.subscriptions("CUST-1").await.unwrap();
        assert_eq!(subs.len(), 1);
        let received = server.received_requests().await.unwrap();
        let ids: Vec<String> = received
            .iter()
            .filter(|r| r.url.path().ends_with("/subscriptions"))
            .map(|r| {
                r.headers
                    .get("MS-RequestId")
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(ids.len(), 2);
        assert_eq!(ids[0], ids[1], "a retry re-uses its MS-RequestId");
    }

    #[tokio::test]
    async fn pc_error_body_is_reported() {
        let server = MockServer::start().await;
        let http = fast_http();
        let creds = mock_login(&server, http.clone()).await;
        Mock::given(method("GET"))
            .and(path("/v1/customers/cust-1/subscribedskus"))
            .respond_with(ResponseTemplate::new(403).set_body_string(
                r#"{"code":20002,"description":"The partner ID 1 has no commerce relationship with the customer ID 2.","data":[],"source":"PartnerFD"}"#,
            ))
            .mount(&server)
            .await;
        let pc = PartnerCenter::new(http, creds, &server.uri());
        let err = pc.subscribed_skus("cust-1").await.unwrap_err();
        let Error::Api(e) = &err else { panic!("{err}") };
        assert_eq!(e.kind, crate::http::ErrorKind::Forbidden);
        assert_eq!(e.code.as_deref(), Some("20002"));
        assert!(
            err.to_string().contains("no commerce relationship"),
            "{err}"
        );
    }
}
