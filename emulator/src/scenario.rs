//! The estate the emulator serves: a partner tenant, its customers (Entra users, subscriptions, SKUs,
//! devices, GDAP relationships) and a Halo instance. All records are `serde_json::Value` shaped like the
//! documented samples; the emulator never uses csp-sync's own types.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The Partner Center (SAM) application: single-tenant app in the partner tenant.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PartnerCenterApp {
    pub client_id: String,
    pub client_secret: String,
    /// The partner user's refresh token (Secure Application Model) accepted by the refresh-token grant.
    pub refresh_token: String,
}

/// The multi-tenant Graph application.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GraphApp {
    pub client_id: String,
    pub client_secret: String,
    /// A partner user's refresh token issued to this app (for `graph.auth = "delegated"`).
    #[serde(default)]
    pub refresh_token: String,
}

/// The Halo API application (client credentials).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HaloApp {
    pub client_id: String,
    pub client_secret: String,
    /// Hosted Halo tenant: when set, the token request must carry `?tenant=<this>`.
    pub tenant: Option<String>,
}

/// One CSP customer (and its Entra tenant).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Customer {
    pub tenant_id: String,
    pub name: String,
    /// The `*.onmicrosoft.com` initial domain (Partner Center `companyProfile.domain`).
    pub domain: String,
    /// Other verified domains (Graph `organization.verifiedDomains`).
    #[serde(default)]
    pub extra_domains: Vec<String>,
    /// The Halo client a correct configuration maps this customer to (`None` = unmapped).
    pub halo_client_id: Option<i64>,
    #[serde(default = "reseller")]
    pub relationship_to_partner: String,
    /// Client ids of applications consented in this tenant (app-only Graph tokens and delegated tokens
    /// need the requesting app to be here).
    #[serde(default)]
    pub consented_apps: Vec<String>,
    /// Graph `servicePrincipal` objects of applications instantiated in this tenant (Microsoft Graph's own
    /// is always there and not stored; see `app_permissions`).
    #[serde(default)]
    pub service_principals: Vec<Value>,
    /// Graph `appRoleAssignment` objects: application permissions granted to those service principals.
    #[serde(default)]
    pub app_role_assignments: Vec<Value>,
    /// Whether the tenant has Intune (else `managedDevices` answers 400 "Request not applicable").
    #[serde(default)]
    pub intune: bool,
    /// Graph `user` objects with their full property set.
    #[serde(default)]
    pub users: Vec<Value>,
    /// Users soft-deleted (`@removed.reason = "changed"`) or purged (`"deleted"`): `{"id":..,"reason":..}`.
    #[serde(default)]
    pub removed_users: Vec<Value>,
    /// Partner Center `Subscription` objects.
    #[serde(default)]
    pub subscriptions: Vec<Value>,
    /// Graph `subscribedSku` objects (`consumedUnits` is recomputed from the users on every read).
    #[serde(default)]
    pub subscribed_skus: Vec<Value>,
    /// Graph `companySubscription` objects (`/directory/subscriptions`).
    #[serde(default)]
    pub company_subscriptions: Vec<Value>,
    /// Graph `managedDevice` objects.
    #[serde(default)]
    pub devices: Vec<Value>,
    /// Graph `delegatedAdminRelationship` objects for this customer.
    #[serde(default)]
    pub gdap: Vec<Value>,
    /// Extra fields merged into the Graph `organization` object.
    #[serde(default)]
    pub organization: Value,
}

fn reseller() -> String {
    "reseller".to_string()
}

/// How Partner Center prefixes bodies with a UTF-8 byte-order mark.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum BomMode {
    Never,
    /// Every second Partner Center response (the 2nd, 4th, ...) starts with a BOM.
    #[default]
    Alternate,
    Always,
}

/// Tunables. Defaults are the documented real-service values unless noted.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Settings {
    /// Largest page Partner Center honours for `GET /v1/customers?size=`.
    pub pc_page_size: usize,
    pub bom: BomMode,
    /// Halo silently caps list pages at this many records.
    pub halo_page_cap: usize,
    /// `(requests, per_seconds)` rolling window; `None` = no limit. Exceeding it answers 429 without
    /// `Retry-After`, as Halo cloud does.
    pub halo_rate_limit: Option<(usize, u64)>,
    /// Lifetime of every access token issued (Microsoft and Halo), seconds.
    pub token_lifetime_secs: u64,
    /// v2 token responses carry `expires_in` as a string instead of a number.
    pub expires_in_as_string: bool,
    /// Page size of `/users/delta` pages.
    pub graph_delta_page_size: usize,
    /// Default page size of `/deviceManagement/managedDevices`.
    pub graph_device_page_size: usize,
    /// `[(entity, field, value)]`: Halo answers 400 to any POST batch holding a record whose field equals
    /// the value.
    pub halo_rejects: Vec<(String, String, Value)>,
    /// The scenario's clock (Unix seconds): the instant its dates were generated from, and what "now" means
    /// for date rules (GDAP relationships ending, default invoice dates). `None` = the real clock. Token
    /// lifetimes, rate windows and `Retry-After` always use the real clock.
    pub now: Option<i64>,
    /// Whether `GET /api/Users` carries `azureoid` (Halo 2025 and later, halo-api.md 3.3); `false`
    /// emulates an older Halo whose `Users_List` has no `azureoid` (only `GET /api/Users/{id}` has it).
    pub halo_list_azureoid: bool,
    /// `[(entity, field)]`: fields Halo accepts in a POST but does not keep (the reply, which is the saved
    /// record, and later reads show the old value).
    pub halo_unkept_fields: Vec<(String, String)>,
    /// Halo access tokens stop working this many seconds after they were issued, whatever `expires_in`
    /// (`token_lifetime_secs`) told the client. `None` = when `expires_in` says.
    pub halo_token_dies_after_secs: Option<u64>,
    /// Network latency added to every request of every API before it is handled, milliseconds (0 = none).
    /// Not a documented service behaviour: the round trip to a cloud API, for benchmarks. Requests wait
    /// concurrently, so a client that overlaps requests pays it once per round of them.
    pub latency_ms: u64,
    /// `POST /api/Report` answers 403, as for an API application without `read:reporting` and
    /// `edit:reporting` (halo-api.md 1.2, 2.3).
    pub halo_reports_forbidden: bool,
    /// A report whose SQL fails answers 200 with the message in `report.load_error` (Halo's
    /// `ReportContent`) instead of a 400 (see `halo_report`).
    pub halo_report_errors_as_load_error: bool,
    /// Reports answer the one-element array `[{rows, available_columns}]` instead of one object with
    /// `report.rows` (both shapes are read by real clients, halo-api.md 2.3).
    pub halo_report_reply_array: bool,
    /// `[(table, column)]`: columns of the report tables this Halo version does not have (a report
    /// naming one fails with "Invalid column name").
    pub halo_report_missing_columns: Vec<(String, String)>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            pc_page_size: 500,
            bom: BomMode::Never,
            halo_page_cap: 100,
            halo_rate_limit: None,
            token_lifetime_secs: 3599,
            expires_in_as_string: false,
            graph_delta_page_size: 100,
            graph_device_page_size: 100,
            halo_rejects: Vec::new(),
            now: None,
            halo_list_azureoid: true,
            halo_unkept_fields: Vec::new(),
            halo_token_dies_after_secs: None,
            latency_ms: 0,
            halo_reports_forbidden: false,
            halo_report_errors_as_load_error: false,
            halo_report_reply_array: false,
            halo_report_missing_columns: Vec::new(),
        }
    }
}

/// The Halo entities the emulator serves, with their list wrapper key.
pub const HALO_ENTITIES: &[(&str, &str)] = &[
    ("Client", "clients"),
    ("Site", "sites"),
    ("Users", "users"),
    ("SoftwareLicence", "licences"),
    ("Asset", "assets"),
    ("AssetType", ""),
    ("Invoice", "invoices"),
    ("RecurringInvoice", "invoices"),
];

/// The whole estate.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Scenario {
    pub partner_tenant_id: String,
    pub partner_name: String,
    pub partner_domain: String,
    pub partner_center_app: PartnerCenterApp,
    pub graph_app: GraphApp,
    pub halo_app: HaloApp,
    pub customers: Vec<Customer>,
    /// Halo records per entity name (see [`HALO_ENTITIES`]), each a JSON object with an integer `id`.
    pub halo: BTreeMap<String, Vec<Value>>,
    #[serde(default)]
    pub settings: Settings,
    /// Partner Center invoices and the Azure usage their exports hold.
    #[serde(default)]
    pub billing: crate::billing::Billing,
}

/// The mutable state handed to [`crate::Emulator::with_state`]: the scenario (reachable through `Deref`)
/// plus the server-side memory of tokens and delta links.
#[derive(Debug)]
pub struct State {
    pub scenario: Scenario,
    pub(crate) rt: crate::server::Runtime,
}

impl std::ops::Deref for State {
    type Target = Scenario;
    fn deref(&self) -> &Scenario {
        &self.scenario
    }
}

impl std::ops::DerefMut for State {
    fn deref_mut(&mut self) -> &mut Scenario {
        &mut self.scenario
    }
}

impl State {
    /// The small scenario at a fixed time with a fresh runtime (unit tests of handlers).
    #[cfg(test)]
    pub(crate) fn for_test() -> State {
        State {
            scenario: Scenario::small_at("2026-11-27T09:00:00Z".parse().unwrap()),
            rt: crate::server::Runtime::default(),
        }
    }

    /// Forgets every delta token: the next `/users/delta?$deltatoken=` answers 410 `syncStateNotFound`.
    pub fn expire_delta_tokens(&mut self) {
        self.rt.delta_tokens.clear();
        self.rt.delta_sessions.clear();
    }

    /// Makes every access token issued so far expired (APIs answer 401).
    pub fn expire_access_tokens(&mut self) {
        for t in self.rt.tokens.values_mut() {
            t.expires_at = 0;
        }
    }

    /// Revokes every refresh token: the refresh-token grant answers `invalid_grant` AADSTS700082.
    pub fn revoke_refresh_tokens(&mut self) {
        self.rt.revoked_refresh = true;
    }
}

fn user_key_matches(u: &Value, upn_or_id: &str) -> bool {
    crate::util::s(u, "id").eq_ignore_ascii_case(upn_or_id)
        || crate::util::s(u, "userPrincipalName").eq_ignore_ascii_case(upn_or_id)
}

impl Scenario {
    /// Loads a scenario saved as JSON (the `Scenario` serialization).
    pub fn from_file(path: &Path) -> Result<Scenario, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read scenario file {}: {e}", path.display()))?;
        let mut sc: Scenario = serde_json::from_str(&text).map_err(|e| {
            format!(
                "scenario file {} is not a valid scenario (line {}, column {}): {e}; \
                 write one with `serde_json::to_string(&Scenario::small())` to see the shape",
                path.display(),
                e.line(),
                e.column()
            )
        })?;
        // Files saved before service principals were modelled: the consented tenants get them.
        let raw: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let without_field: Vec<bool> = raw
            .get("customers")
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .map(|c| c.get("service_principals").is_none())
                    .collect()
            })
            .unwrap_or_default();
        sc.provision_consented(Some(&without_field));
        Ok(sc)
    }

    /// "Now" for the scenario's date rules: its pinned clock, else the real one.
    pub fn now_secs(&self) -> i64 {
        self.settings.now.unwrap_or_else(crate::util::now_secs)
    }

    pub fn customer(&self, tenant_id: &str) -> Option<&Customer> {
        self.customers
            .iter()
            .find(|c| c.tenant_id.eq_ignore_ascii_case(tenant_id))
    }

    /// The customer by tenant id (or name, case-insensitive), for arbitrary edits.
    ///
    /// # Panics
    /// When no such customer exists (test helper).
    pub fn tenant_mut(&mut self, tenant_id_or_name: &str) -> &mut Customer {
        self.customers
            .iter_mut()
            .find(|c| {
                c.tenant_id.eq_ignore_ascii_case(tenant_id_or_name)
                    || c.name.eq_ignore_ascii_case(tenant_id_or_name)
            })
            .unwrap_or_else(|| panic!("emulator scenario has no customer {tenant_id_or_name}"))
    }

    /// The customer by name (case-insensitive), e.g. `"Contoso Ltd"`.
    pub fn customer_named(&self, name: &str) -> Option<&Customer> {
        self.customers
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// Adds an Entra user (Graph `user` JSON; an `id` is generated when missing). Returns its id.
    pub fn add_user(&mut self, tenant_id: &str, mut user: Value) -> String {
        if crate::util::s(&user, "id").is_empty() {
            user["id"] = json!(crate::util::guid());
        }
        let id = crate::util::s(&user, "id").to_string();
        let c = self.tenant_mut(tenant_id);
        c.removed_users.retain(|r| crate::util::s(r, "id") != id);
        c.users.push(user);
        id
    }

    /// Edits a user found by UPN or object id. Returns false when not found.
    pub fn update_user(
        &mut self,
        tenant_id: &str,
        upn_or_id: &str,
        f: impl FnOnce(&mut Value),
    ) -> bool {
        let c = self.tenant_mut(tenant_id);
        match c.users.iter_mut().find(|u| user_key_matches(u, upn_or_id)) {
            Some(u) => {
                f(u);
                true
            }
            None => false,
        }
    }

    /// Soft-deletes a user (delta reports `@removed: {"reason": "changed"}`). Returns false when not found.
    pub fn remove_user(&mut self, tenant_id: &str, upn_or_id: &str) -> bool {
        self.remove_user_with(tenant_id, upn_or_id, "changed")
    }

    /// Permanently deletes a user (delta reports `@removed: {"reason": "deleted"}`).
    pub fn purge_user(&mut self, tenant_id: &str, upn_or_id: &str) -> bool {
        self.remove_user_with(tenant_id, upn_or_id, "deleted")
    }

    fn remove_user_with(&mut self, tenant_id: &str, upn_or_id: &str, reason: &str) -> bool {
        let c = self.tenant_mut(tenant_id);
        let Some(pos) = c.users.iter().position(|u| user_key_matches(u, upn_or_id)) else {
            return false;
        };
        let u = c.users.remove(pos);
        c.removed_users
            .push(json!({"id": crate::util::s(&u, "id"), "reason": reason}));
        true
    }

    /// Grants or withdraws consent of both applications (Graph app and Partner Center app) in a tenant,
    /// with the Graph app's service principal and application permissions
    /// ([`Scenario::set_app_permissions`]).
    pub fn set_consent(&mut self, tenant_id: &str, consented: bool) {
        self.set_app_permissions(tenant_id, consented);
        let apps = [
            self.graph_app.client_id.clone(),
            self.partner_center_app.client_id.clone(),
        ];
        let c = self.tenant_mut(tenant_id);
        c.consented_apps.retain(|a| !apps.contains(a));
        if consented {
            c.consented_apps.extend(apps);
        }
    }

    /// Replaces (by `id`) or adds a Partner Center subscription of a customer.
    pub fn set_subscription(&mut self, tenant_id: &str, subscription: Value) {
        let c = self.tenant_mut(tenant_id);
        let id = crate::util::s(&subscription, "id").to_string();
        match c
            .subscriptions
            .iter_mut()
            .find(|s| crate::util::s(s, "id") == id)
        {
            Some(s) => *s = subscription,
            None => c.subscriptions.push(subscription),
        }
    }

    /// Halo records of an entity ("Client", "Site", "Users", "SoftwareLicence", "Asset", "AssetType", "Invoice").
    ///
    /// # Panics
    /// On an unknown entity name (test helper).
    pub fn halo_records(&self, entity: &str) -> &Vec<Value> {
        let key = canonical_entity(entity)
            .unwrap_or_else(|| panic!("the emulator has no Halo entity {entity}"));
        self.halo
            .get(key)
            .unwrap_or_else(|| panic!("the scenario has no Halo table {key}"))
    }

    /// Mutable Halo records of an entity (created empty when absent).
    ///
    /// # Panics
    /// On an unknown entity name (test helper).
    pub fn halo_records_mut(&mut self, entity: &str) -> &mut Vec<Value> {
        let key = canonical_entity(entity)
            .unwrap_or_else(|| panic!("the emulator has no Halo entity {entity}"));
        self.halo.entry(key.to_string()).or_default()
    }

    /// One Halo record by id.
    pub fn halo_record(&self, entity: &str, id: i64) -> Option<&Value> {
        self.halo_records(entity)
            .iter()
            .find(|r| r.get("id").and_then(Value::as_i64) == Some(id))
    }

    /// Halo answers 400 to any POST batch to `entity` holding a record whose `field` equals `value`.
    pub fn halo_reject(&mut self, entity: &str, field: &str, value: Value) {
        self.settings
            .halo_rejects
            .push((entity.to_string(), field.to_string(), value));
    }

    /// Halo accepts `field` in a POST to `entity` but does not keep it.
    pub fn halo_unkept(&mut self, entity: &str, field: &str) {
        self.settings
            .halo_unkept_fields
            .push((entity.to_string(), field.to_string()));
    }

    /// `false`: an older Halo whose user list has no `azureoid`.
    pub fn set_halo_list_azureoid(&mut self, on: bool) {
        self.settings.halo_list_azureoid = on;
    }

    /// Halo tokens die `secs` after being issued while `expires_in` still says the full lifetime.
    pub fn set_halo_token_dies_after(&mut self, secs: Option<u64>) {
        self.settings.halo_token_dies_after_secs = secs;
    }

    pub fn set_pc_page_size(&mut self, n: usize) {
        self.settings.pc_page_size = n.max(1);
    }

    pub fn set_halo_page_cap(&mut self, n: usize) {
        self.settings.halo_page_cap = n.max(1);
    }

    pub fn set_token_lifetime(&mut self, secs: u64) {
        self.settings.token_lifetime_secs = secs;
    }

    pub fn set_halo_rate_limit(&mut self, limit: Option<(usize, u64)>) {
        self.settings.halo_rate_limit = limit;
    }

    /// Every request of every API waits this long before it is handled (see [`Settings::latency_ms`]).
    pub fn set_latency(&mut self, latency: std::time::Duration) {
        self.settings.latency_ms = latency.as_millis() as u64;
    }

    /// `true` = every second Partner Center response starts with a BOM; `false` = never.
    pub fn set_bom(&mut self, on: bool) {
        self.settings.bom = if on {
            BomMode::Alternate
        } else {
            BomMode::Never
        };
    }

    /// Ends (or restores) the GDAP relationships of a customer: `status` "expired" and `endDateTime` in the
    /// past, so delegated tokens for that tenant are refused.
    pub fn set_gdap_active(&mut self, tenant_id: &str, active: bool) {
        let now = self.now_secs();
        for r in &mut self.tenant_mut(tenant_id).gdap {
            if active {
                r["status"] = json!("active");
                r["endDateTime"] = json!(crate::util::rfc3339(now + 300 * 86_400));
            } else {
                r["status"] = json!("expired");
                r["endDateTime"] = json!(crate::util::rfc3339(now - 86_400));
            }
        }
    }
}

/// Maps a case-insensitive entity name to the stored table name.
pub(crate) fn canonical_entity(name: &str) -> Option<&'static str> {
    HALO_ENTITIES
        .iter()
        .map(|(n, _)| *n)
        .find(|n| n.eq_ignore_ascii_case(name))
}
