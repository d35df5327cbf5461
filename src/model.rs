//! The domain types the planner sees. They are independent of the wire formats of Partner Center, Graph
//! and Halo: the readers (`crate::read`) turn API records into these, the planners (`crate::plan`) compare
//! them. Nothing here does I/O.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A Partner Center customer (a customer tenant of the partner).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    /// Customer id; in practice the customer's Entra tenant id (lower-case GUID).
    pub id: String,
    /// `companyProfile.tenantId` when Partner Center gives it, else `id`.
    pub tenant_id: String,
    pub company_name: String,
    /// `companyProfile.domain` (usually the initial `*.onmicrosoft.com` domain).
    pub domain: String,
    /// `relationshipToPartner` (`reseller`, `advisor`, ...).
    pub relationship: String,
}

/// Whether a user is a member or a guest of the tenant (`userType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum UserType {
    #[default]
    Member,
    Guest,
}

/// An Entra ID user of a customer tenant, as read from Graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct EntraUser {
    /// Entra object id (lower-case GUID).
    pub id: String,
    pub user_principal_name: String,
    pub display_name: Option<String>,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub mail: Option<String>,
    pub account_enabled: bool,
    pub user_type: UserType,
    /// `assignedLicenses[].skuId`, lower-case.
    pub sku_ids: Vec<String>,
    pub job_title: Option<String>,
    pub department: Option<String>,
    /// First of `businessPhones`.
    pub business_phone: Option<String>,
    pub mobile_phone: Option<String>,
}

/// Everything read from one customer tenant's directory for the users module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TenantDirectory {
    /// Current users of the tenant (after applying a delta to the last full read, or a full read).
    pub users: Vec<EntraUser>,
    /// Object ids Graph reported as deleted (`@removed`) or that vanished since the last read.
    pub deleted_ids: Vec<String>,
    /// SKU id (lower-case) -> skuPartNumber, from `subscribedSkus`, so `contract_skus` may name either.
    pub sku_part_numbers: Vec<(String, String)>,
}

/// A Halo client (organisation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct HaloClient {
    pub id: i64,
    pub name: String,
    pub inactive: bool,
    /// `azure_tenants[].azure_tenant_id`, lower-case.
    pub azure_tenant_ids: Vec<String>,
    pub website: Option<String>,
    /// `Area.domain` (halo-api.md 3.1; Halo clients have no e-mail address field).
    pub domain: Option<String>,
    /// Further e-mail domains of the client: its sites' `emaildomain` and the most common domain of its
    /// contacts' e-mail addresses (filled by `tenants map`, [`crate::client_evidence`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub email_domains: Vec<String>,
    pub main_site_id: Option<i64>,
}

/// A Halo site of a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct HaloSite {
    pub id: i64,
    pub client_id: i64,
    pub name: String,
    pub inactive: bool,
}

/// A Halo user (end-user contact). Field names follow Halo's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct HaloUser {
    pub id: i64,
    pub client_id: i64,
    pub site_id: i64,
    pub name: String,
    pub firstname: Option<String>,
    pub surname: Option<String>,
    pub emailaddress: Option<String>,
    pub title: Option<String>,
    pub department: Option<String>,
    pub phonenumber: Option<String>,
    pub mobilenumber: Option<String>,
    pub inactive: bool,
    /// Entra object id this contact is linked to, lower-case.
    pub azureoid: Option<String>,
    /// Entra tenant id this contact is linked to, lower-case.
    pub azure_tenant_id: Option<String>,
    /// `covered_by_contract` as read; `None` when the read did not carry it.
    #[serde(default)]
    pub covered_by_contract: Option<bool>,
    /// `customfields` as read (`[{"id", "value", …}]`); `Null` when the read did not carry them.
    #[serde(default)]
    pub customfields: serde_json::Value,
    /// Compared fields the read did not return (Halo's user list has no `department` or
    /// `azure_tenant_id`, SPEC 7): their values above are unknown, never compared.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unread: Vec<String>,
}

impl HaloUser {
    /// Whether the read returned `field`.
    pub fn read(&self, field: &str) -> bool {
        !self.unread.iter().any(|f| f == field)
    }
}

/// The status of a Partner Center subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubscriptionStatus {
    Active,
    Pending,
    Suspended,
    Deleted,
    Expired,
    None,
}

/// A Partner Center subscription of a customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub offer_id: String,
    pub offer_name: String,
    pub friendly_name: Option<String>,
    pub quantity: i64,
    pub status: SubscriptionStatus,
    pub auto_renew: bool,
    /// `monthly`, `annual`, `triennial`, `none`, `one_time`, as Partner Center spells it.
    pub billing_cycle: String,
    /// ISO-8601 duration: `P1M`, `P1Y`, `P3Y`, or empty.
    pub term_duration: String,
    /// RFC 3339 date-times as given by Partner Center.
    pub effective_start_date: Option<String>,
    pub commitment_end_date: Option<String>,
    /// Latest `refundOptions[].expiresAt`: the end of the NCE cancellation window.
    pub cancellation_window_ends: Option<String>,
    /// `productType.id` (`OnlineServicesNCE`, `Azure`, ...).
    pub product_type: Option<String>,
    pub is_trial: bool,
}

/// Seat usage of one SKU in a customer tenant (Partner Center `subscribedskus` or Graph `subscribedSkus`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuUsage {
    /// Graph `skuId` (= Partner Center `productSku.id`), lower-case.
    pub sku_id: String,
    pub sku_part_number: String,
    pub consumed_units: i64,
    /// Enabled (active) prepaid units.
    pub enabled_units: i64,
    pub capability_status: String,
}

/// Graph `directory/subscriptions` item (companySubscription): joins a commerce subscription to a SKU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompanySubscription {
    pub commerce_subscription_id: Option<String>,
    pub sku_id: String,
    pub sku_part_number: String,
    pub total_licenses: i64,
    pub status: String,
}

/// A Halo software licence. Field names follow Halo's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct HaloLicence {
    pub id: i64,
    pub client_id: i64,
    pub name: String,
    pub count: Option<i64>,
    pub licences_in_use: Option<i64>,
    pub tenant_id: Option<String>,
    pub third_party_product: Option<String>,
    pub product_sku: Option<String>,
    pub status: Option<String>,
    pub billing_cycle: Option<String>,
    pub term_duration: Option<String>,
    pub autorenew: Option<bool>,
    pub start_date: Option<String>,
    pub end_date: Option<String>,
    pub manufacturer: Option<String>,
    /// Compared fields the read did not return (see [`HaloUser::unread`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unread: Vec<String>,
}

impl HaloLicence {
    #[must_use]
    pub fn with_unread(mut self, unread: Vec<String>) -> Self {
        self.unread = unread;
        self
    }

    /// Whether the read returned `field`.
    pub fn read(&self, field: &str) -> bool {
        !self.unread.iter().any(|f| f == field)
    }
}

/// An Intune managed device, as read from Graph (`deviceManagement/managedDevices`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IntuneDevice {
    /// Intune device id (lower-case GUID).
    pub id: String,
    pub device_name: String,
    pub operating_system: String,
    pub serial_number: Option<String>,
    /// Entra object id of the primary user, lower-case.
    pub user_id: Option<String>,
    pub user_principal_name: Option<String>,
    pub compliance_state: Option<String>,
    /// RFC 3339 time of the device's last check-in.
    pub last_sync: Option<String>,
    /// Every selected Intune property with a value, by its Graph name (`serialNumber`, `model`, ...), for
    /// the `[assets] fields` mapping (the assets module keeps only the mapped ones).
    pub properties: std::collections::BTreeMap<String, String>,
}

/// A Halo asset. Field names follow Halo's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct HaloAsset {
    pub id: i64,
    pub client_id: i64,
    pub site_id: i64,
    pub assettype_id: Option<i64>,
    pub inventory_number: Option<String>,
    pub inactive: bool,
    /// Lower-case; Halo's own Intune import writes the same field.
    pub intune_id: Option<String>,
    /// Asset type field values by field id, `None` when the read returned no `fields` (they come only
    /// with `includeassetfields=true`).
    pub fields: Option<std::collections::BTreeMap<i64, String>>,
}

/// The Halo data the planners compare against, read once per run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HaloSnapshot {
    pub clients: Vec<HaloClient>,
    pub sites: Vec<HaloSite>,
    pub users: Vec<HaloUser>,
    pub licences: Vec<HaloLicence>,
    pub assets: Vec<HaloAsset>,
}

/// A raw Halo record as read, keyed by field name; used to check that a saved plan still applies.
pub type RawRecord = Map<String, Value>;
