//! The built-in estates: `Scenario::small()` (demo and black-box tests) and `Scenario::large()`.
//! Everything is deterministic except dates, which are relative to the current UTC day so that "ends in
//! 20 days" stays true whenever the tests run.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::scenario::{BomMode, Customer, GraphApp, HaloApp, PartnerCenterApp, Scenario, Settings};
use crate::util::{self, guid_from};

// SKU ids and part numbers from microsoft-licensing-products.csv.
pub(crate) const SPB: (&str, &str, &str) = (
    "cbdc14ab-d96c-4c30-b9f4-6ada7cdc1d46",
    "SPB",
    "Microsoft 365 Business Premium",
);
pub(crate) const EXCHANGE_P1: (&str, &str, &str) = (
    "4b9405b0-7788-4568-add1-99614e613b69",
    "EXCHANGESTANDARD",
    "Exchange Online (Plan 1)",
);
pub(crate) const BASIC: (&str, &str, &str) = (
    "3b555118-da6a-4418-894f-7df1e2096870",
    "O365_BUSINESS_ESSENTIALS",
    "Microsoft 365 Business Basic",
);
pub(crate) const STANDARD: (&str, &str, &str) = (
    "f245ecc8-75af-4f8e-b61f-27d8114de5f3",
    "O365_BUSINESS_PREMIUM",
    "Microsoft 365 Business Standard",
);
pub(crate) const E3: (&str, &str, &str) = (
    "6fd2c87f-b296-42f0-b197-1e91e994b900",
    "ENTERPRISEPACK",
    "Office 365 E3",
);
pub(crate) const FLOW_FREE: (&str, &str, &str) = (
    "f30db892-07e9-47e9-837c-80727f46fd3d",
    "FLOW_FREE",
    "Microsoft Power Automate Free",
);

// NCE product:sku:availability ids. Business Basic is the documented sample (reference 2.4); the others
// follow the same pattern with plausible ids [low: not checked against the live catalogue].
const OFFER_BASIC: &str = "CFQ7TTC0LH18:0001:CFQ7TTC0K971";
const OFFER_SPB: &str = "CFQ7TTC0LCHC:0002:CFQ7TTC0QX0Q";
const OFFER_STANDARD: &str = "CFQ7TTC0LDPB:0001:CFQ7TTC0K5B3";
const OFFER_E3: &str = "CFQ7TTC0LF8Q:0001:CFQ7TTC0KSD1";
const OFFER_AZURE_PLAN: &str = "DZH318Z0BPS6:0001:DZH318Z0BML6";
const LEGACY_EXCHANGE_P1: &str = "195416C1-3447-423A-B37B-EE59A99A19C4";

/// GDAP role template ids (reference 1.6).
pub(crate) const ROLE_DIRECTORY_READERS: &str = "88d8e3e3-8f55-4a1e-953a-9b9898b8876b";
pub(crate) const ROLE_GLOBAL_READER: &str = "f2ef992c-3afb-46b9-b7cf-a126ee74c451";
pub(crate) const ROLE_USER_ADMIN: &str = "fe930be7-5e62-47db-91af-98c3a49a38b1";
pub(crate) const ROLE_LICENSE_ADMIN: &str = "4d6ac14f-3453-41d0-bef9-a3e0c569773a";
pub(crate) const ROLE_INTUNE_ADMIN: &str = "3a2c62db-5318-420d-8d74-23affee5d9d5";
pub(crate) const ROLE_CLOUD_APP_ADMIN: &str = "158c047a-c907-4556-b7ef-446551a6b5f7";

pub(crate) const DAY: i64 = 86_400;

pub(crate) fn day_start(now: i64) -> i64 {
    now - now.rem_euclid(DAY)
}

pub(crate) struct UserSpec<'a> {
    pub upn: &'a str,
    pub given: &'a str,
    pub surname: &'a str,
    pub mail: Option<&'a str>,
    pub enabled: bool,
    pub guest: bool,
    pub skus: &'a [&'a str],
}

pub(crate) fn graph_user(
    rng: &mut fastrand::Rng,
    u: &UserSpec<'_>,
    company: &str,
    created: i64,
) -> Value {
    let display = if u.surname.is_empty() {
        u.given.to_string()
    } else {
        format!("{} {}", u.given, u.surname)
    };
    let licences: Vec<Value> = u
        .skus
        .iter()
        .map(|s| json!({"disabledPlans": [], "skuId": s}))
        .collect();
    json!({
        "id": guid_from(rng),
        "businessPhones": [],
        "displayName": display,
        "givenName": if u.given.is_empty() { Value::Null } else { json!(u.given) },
        "jobTitle": null,
        "mail": u.mail.map_or(Value::Null, |m| json!(m)),
        "mobilePhone": null,
        "officeLocation": null,
        "preferredLanguage": "en-GB",
        "surname": if u.surname.is_empty() { Value::Null } else { json!(u.surname) },
        "userPrincipalName": u.upn,
        "accountEnabled": u.enabled,
        "userType": if u.guest { "Guest" } else { "Member" },
        "assignedLicenses": licences,
        "onPremisesSyncEnabled": null,
        "createdDateTime": util::rfc3339(created),
        "department": null,
        "companyName": if u.guest { Value::Null } else { json!(company) },
        "usageLocation": "GB"
    })
}

struct Sub<'a> {
    id: String,
    offer_id: &'a str,
    name: &'a str,
    qty: i64,
    nce: bool,
    cycle: &'a str,
    term: &'a str,
    status: &'a str,
}

fn pc_subscription(tenant: &str, s: &Sub<'_>, start: i64) -> Value {
    let end = if s.term == "P1Y" {
        start + 365 * DAY
    } else {
        start + 30 * DAY
    };
    if s.offer_id == OFFER_AZURE_PLAN {
        return json!({
            "id": s.id, "offerId": s.offer_id, "offerName": "Azure plan", "friendlyName": "Azure plan",
            "productType": {"id": "Azure", "displayName": "Azure"},
            "quantity": 1, "unitType": "none", "hasPurchasableAddons": false,
            "creationDate": util::rfc3339(start), "effectiveStartDate": util::rfc3339(start),
            "commitmentEndDate": "9999-12-14T00:00:00Z", "status": s.status, "autoRenewEnabled": false,
            "isTrial": false, "billingType": "usage", "billingCycle": "monthly", "termDuration": "",
            "isMicrosoftProduct": true, "partnerId": "", "attentionNeeded": false, "actionTaken": false,
            "contractType": "subscription",
            "links": {"self": {"uri": format!("/customers/{tenant}/subscriptions/{}", s.id), "method": "GET", "headers": []}},
            "publisherName": "Microsoft Corporation", "orderId": format!("az{}", &s.id[..8]),
            "attributes": {"objectType": "Subscription"}
        });
    }
    if !s.nce {
        // Legacy licence-based shape (reference 2.4, older doc): GUID offer id, no productType.
        return json!({
            "id": s.id, "offerId": s.offer_id, "offerName": s.name, "friendlyName": s.name,
            "quantity": s.qty, "unitType": "Licenses", "hasPurchasableAddons": false,
            "creationDate": util::rfc3339(start), "effectiveStartDate": util::rfc3339(start),
            "commitmentEndDate": util::rfc3339(end), "status": s.status, "autoRenewEnabled": true,
            "isTrial": false, "billingType": "license", "billingCycle": s.cycle,
            "isMicrosoftProduct": true, "partnerId": "", "contractType": "subscription",
            "links": {
                "offer": {"uri": format!("/v1/offers/{}", s.offer_id), "method": "GET", "headers": []},
                "self": {"uri": format!("/v1/customers/{tenant}/subscriptions/{}", s.id), "method": "GET", "headers": []}
            },
            "orderId": format!("lg{}", &s.id[..8]),
            "attributes": {"etag": format!("\"{}\"", &s.id[..8]), "objectType": "Subscription"}
        });
    }
    let mut parts = s.offer_id.split(':');
    let (product, sku, avail) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    json!({
        "id": s.id, "offerId": s.offer_id, "offerName": s.name, "friendlyName": s.name,
        "productType": {"id": "OnlineServicesNCE", "displayName": "OnlineServicesNCE"},
        "quantity": s.qty, "unitType": "Licenses", "hasPurchasableAddons": false,
        "creationDate": util::rfc3339(start), "effectiveStartDate": util::rfc3339(start),
        "commitmentEndDate": util::rfc3339(end), "status": s.status, "autoRenewEnabled": true,
        "isTrial": false, "billingType": "license", "billingCycle": s.cycle, "termDuration": s.term,
        "renewalTermDuration": "", "refundOptions": [], "isMicrosoftProduct": true, "partnerId": "",
        "attentionNeeded": false, "actionTaken": false, "contractType": "subscription",
        "links": {
            "product": {"uri": format!("/products/{product}?country=GB"), "method": "GET", "headers": []},
            "sku": {"uri": format!("/products/{product}/skus/{sku}?country=GB"), "method": "GET", "headers": []},
            "availability": {"uri": format!("/products/{product}/skus/{sku}/availabilities/{avail}?country=GB"), "method": "GET", "headers": []},
            "self": {"uri": format!("/customers/{tenant}/subscriptions/{}", s.id), "method": "GET", "headers": []}
        },
        "publisherName": "Microsoft Corporation", "orderId": format!("nc{}", &s.id[..8]),
        "attributes": {"objectType": "Subscription"}
    })
}

fn service_plans(part: &str) -> Value {
    let plans: &[(&str, &str)] = match part {
        "SPB" => &[
            (
                "9aaf7827-d63c-4b61-89c3-182f06f82e5c",
                "EXCHANGE_S_STANDARD",
            ),
            ("c1ec4a95-1f05-45b3-a911-aa3fa01094f5", "INTUNE_A"),
            ("41781fb2-bc02-4b7c-bd55-b576c07bb09d", "AAD_PREMIUM"),
        ],
        "FLOW_FREE" => &[("50e68c76-46c6-4674-81f9-75456511b170", "FLOW_P2_VIRAL")],
        _ => &[(
            "9aaf7827-d63c-4b61-89c3-182f06f82e5c",
            "EXCHANGE_S_STANDARD",
        )],
    };
    Value::Array(
        plans
            .iter()
            .map(|(id, name)| json!({"servicePlanId": id, "servicePlanName": name, "provisioningStatus": "Success", "appliesTo": "User"}))
            .collect(),
    )
}

/// Graph `subscribedSku` (consumedUnits is recomputed on read); `x-productName` feeds Partner Center's view.
fn graph_sku(
    tenant: &str,
    account: &str,
    sku: (&str, &str, &str),
    enabled: i64,
    sub_ids: &[&str],
) -> Value {
    json!({
        "accountId": tenant,
        "accountName": account,
        "appliesTo": "User",
        "capabilityStatus": "Enabled",
        "consumedUnits": 0,
        "id": format!("{tenant}_{}", sku.0),
        "prepaidUnits": {"enabled": enabled, "suspended": 0, "warning": 0, "lockedOut": 0},
        "servicePlans": service_plans(sku.1),
        "skuId": sku.0,
        "skuPartNumber": sku.1,
        "subscriptionIds": sub_ids,
        "x-productName": sku.2
    })
}

fn company_sub(
    rng: &mut fastrand::Rng,
    partner: &str,
    sku: (&str, &str, &str),
    pc_sub_id: &str,
    total: i64,
    start: i64,
    next: i64,
) -> Value {
    json!({
        "id": guid_from(rng),
        "commerceSubscriptionId": pc_sub_id,
        "createdDateTime": util::rfc3339(start),
        "isTrial": false,
        "nextLifecycleDateTime": util::rfc3339(next),
        "ownerId": partner,
        "ownerTenantId": partner,
        "ownerType": "Company",
        "serviceStatus": [],
        "skuId": sku.0,
        "skuPartNumber": sku.1,
        "status": "Enabled",
        "totalLicenses": total
    })
}

#[allow(clippy::too_many_arguments)] // one relationship's fields, each named at the call
fn gdap(
    rng: &mut fastrand::Rng,
    tenant: &str,
    name: &str,
    roles: &[&str],
    start: i64,
    end: i64,
    auto_extend: &str,
    now: i64,
) -> Value {
    let roles: Vec<Value> = roles
        .iter()
        .map(|r| json!({"roleDefinitionId": r}))
        .collect();
    let status = if end > now { "active" } else { "expired" };
    json!({
        "@odata.type": "#microsoft.graph.delegatedAdminRelationship",
        "@odata.etag": format!("W/\"{:016x}\"", rng.u64(..)),
        "id": format!("{}-{}", guid_from(rng), guid_from(rng)),
        "displayName": format!("csp-sync {name}"),
        "duration": "P730D",
        "customer": {"tenantId": tenant, "displayName": name},
        "accessDetails": {"unifiedRoles": roles},
        "status": status,
        "autoExtendDuration": auto_extend,
        "createdDateTime": util::rfc3339(start),
        "lastModifiedDateTime": util::rfc3339(start),
        "activatedDateTime": util::rfc3339(start),
        "endDateTime": util::rfc3339(end)
    })
}

pub(crate) fn device(
    rng: &mut fastrand::Rng,
    user: &Value,
    n: usize,
    kind: usize,
    now: i64,
) -> Value {
    let (os, model, maker, prefix) = match kind % 3 {
        0 => ("Windows", "Latitude 5440", "Dell Inc.", "LT"),
        1 => ("Windows", "ThinkPad T14 Gen 4", "LENOVO", "LT"),
        _ => ("iOS", "iPhone 15", "Apple", "PH"),
    };
    let serial = format!(
        "{}{:06}",
        if os == "iOS" { "F2L" } else { "5CG" },
        rng.u32(100_000..999_999)
    );
    json!({
        "@odata.type": "#microsoft.graph.managedDevice",
        "id": guid_from(rng),
        "userId": user["id"],
        "deviceName": format!("{prefix}-{:04}", n),
        "managedDeviceName": format!("{}_{}", util::s(user, "givenName"), os),
        "managedDeviceOwnerType": "company",
        "enrolledDateTime": util::rfc3339(now - 200 * DAY),
        "lastSyncDateTime": util::rfc3339(now - (n as i64 % 5) * 3600),
        "operatingSystem": os,
        "complianceState": if n % 4 == 3 { "noncompliant" } else { "compliant" },
        "osVersion": if os == "iOS" { "17.5.1" } else { "10.0.22631.3880" },
        "azureADDeviceId": guid_from(rng),
        "azureADRegistered": true,
        "userPrincipalName": user["userPrincipalName"],
        "userDisplayName": user["displayName"],
        "emailAddress": user["mail"],
        "model": model,
        "manufacturer": maker,
        "serialNumber": serial,
        "isEncrypted": true,
        "managementAgent": "mdm",
        "totalStorageSpaceInBytes": 255_108_808_704_i64,
        "freeStorageSpaceInBytes": 120_000_000_000_i64,
        "physicalMemoryInBytes": 0,
        "wiFiMacAddress": format!("{:012x}", rng.u64(..) & 0xffff_ffff_ffff),
        "ethernetMacAddress": null
    })
}

#[allow(clippy::too_many_arguments)]
fn halo_user(
    id: i64,
    name: &str,
    email: &str,
    site: (i64, &str),
    client: (i64, &str),
    inactive: bool,
    azureoid: &str,
    tenant: &str,
) -> Value {
    let (first, last) = name.split_once(' ').unwrap_or((name, ""));
    json!({
        "id": id, "name": name, "firstname": first, "surname": last, "emailaddress": email, "login": "",
        "site_id": site.0, "site_id_int": site.0, "site_name": site.1, "client_id": client.0, "client_name": client.1,
        "inactive": inactive, "isserviceaccount": false, "azureoid": azureoid, "azure_tenant_id": tenant,
        "title": "", "department": "", "phonenumber": "", "mobilenumber": "", "notes": "", "isimportantcontact": false
    })
}

fn halo_client(
    id: i64,
    name: &str,
    site: (i64, &str),
    website: &str,
    domain: &str,
    tenants: Value,
) -> Value {
    // `Area` has `website` and `domain` but no e-mail address (halo-api.md 3.1).
    json!({
        "id": id, "name": name, "inactive": false, "toplevel_id": 1, "toplevel_name": "Customers",
        "website": website, "domain": domain, "azure_tenants": tenants, "main_site_id": site.0,
        "main_site_name": site.1, "colour": "#2bd3c6"
    })
}

fn halo_site(id: i64, name: &str, client: (i64, &str)) -> Value {
    json!({"id": id, "name": name, "client_id": client.0, "client_name": client.1, "inactive": false,
           "isinvoicesite": true, "phonenumber": "", "timezone": "GMT Standard Time"})
}

fn site_with_emaildomain(mut site: Value, domain: &str) -> Value {
    site["emaildomain"] = json!(domain);
    site
}

fn asset_types() -> Vec<Value> {
    [(1, "Laptop"), (2, "Desktop"), (3, "Mobile Phone"), (4, "Server")]
        .iter()
        .map(|(id, name)| json!({"id": id, "name": name, "assetgroup_id": 1, "assetgroup_name": "Hardware", "keyfield_id": 1, "keyfield_name": "Device Name", "keyfield2_id": 2, "keyfield2_name": "Serial Number", "keyfield3_id": 3, "keyfield3_name": "Model"}))
        .collect()
}

fn push(halo: &mut BTreeMap<String, Vec<Value>>, entity: &str, v: Value) {
    halo.entry(entity.to_string()).or_default().push(v);
}

fn base_halo() -> BTreeMap<String, Vec<Value>> {
    let mut halo = BTreeMap::new();
    for (entity, _) in crate::scenario::HALO_ENTITIES {
        halo.insert((*entity).to_string(), Vec::new());
    }
    halo.insert("AssetType".to_string(), asset_types());
    halo
}

const FIRST: &[&str] = &[
    "Oliver", "Amelia", "George", "Isla", "Harry", "Ava", "Noah", "Mia", "Jack", "Ivy", "Leo",
    "Lily", "Oscar", "Freya", "Charlie", "Grace", "Arthur", "Sophia", "Henry", "Rosie",
];
const LAST: &[&str] = &[
    "Taylor", "Evans", "Thomas", "Roberts", "Walker", "Wright", "Robinson", "Thompson", "Hughes",
    "Edwards", "Green", "Wood", "Hall", "Clarke", "Jackson", "Hill", "Lewis", "Harris", "Martin",
    "Cooper",
];

impl Scenario {
    /// The demo / black-box-test estate (see emulator/README.md).
    pub fn small() -> Scenario {
        Scenario::small_at(jiff::Timestamp::now())
    }

    /// The small estate dated from `now`: every date in it (users created, subscriptions and GDAP
    /// relationships starting and ending) is a whole number of days from `now`'s day, and the emulator's
    /// date rules take `now` as the current time. Tests pass the instant they give csp-sync as
    /// `CSP_SYNC_NOW`, so the two agree whatever the real day.
    pub fn small_at(now: jiff::Timestamp) -> Scenario {
        let mut rng = fastrand::Rng::with_seed(20_240_601);
        let now = now.as_second();
        let day0 = day_start(now);
        let partner = "6b0f4c1e-5a8d-4f3a-9c2e-1d7b8e9f0a12".to_string();
        let pc_app = "2f6e3b8a-91c4-4d57-a0e2-5c8b7d1f3e64".to_string();
        let graph_app = "8d4c2a1e-6f3b-4e9d-b7a5-0c1e2f3a4b5c".to_string();
        let all_roles = [
            ROLE_DIRECTORY_READERS,
            ROLE_GLOBAL_READER,
            ROLE_USER_ADMIN,
            ROLE_LICENSE_ADMIN,
            ROLE_INTUNE_ADMIN,
            ROLE_CLOUD_APP_ADMIN,
        ];
        let consented = vec![graph_app.clone(), pc_app.clone()];
        let mut halo = base_halo();
        let mut customers = Vec::new();

        // 1. Contoso Ltd -> Halo "Contoso Limited" (101, site 201).
        let contoso_t = "c0a7b1d2-3e4f-4a5b-8c6d-7e8f9a0b1c2d";
        let specs = [
            UserSpec {
                upn: "alice.smith@contoso.co.uk",
                given: "Alice",
                surname: "Smith",
                mail: Some("Alice.Smith@Contoso.co.uk"),
                enabled: true,
                guest: false,
                skus: &[SPB.0],
            },
            UserSpec {
                upn: "bob.jones@contoso.co.uk",
                given: "Bob",
                surname: "Jones",
                mail: Some("bob.jones@contoso.co.uk"),
                enabled: true,
                guest: false,
                skus: &[SPB.0, EXCHANGE_P1.0],
            },
            UserSpec {
                upn: "carol.white@contoso.co.uk",
                given: "Carol",
                surname: "White",
                mail: Some("carol.white@contoso.co.uk"),
                enabled: true,
                guest: false,
                skus: &[SPB.0],
            },
            UserSpec {
                upn: "dan.brown@contoso.co.uk",
                given: "Dan",
                surname: "Brown",
                mail: Some("dan.brown@contoso.co.uk"),
                enabled: true,
                guest: false,
                skus: &[EXCHANGE_P1.0],
            },
            UserSpec {
                upn: "pat.lee_fabrikam.com#EXT#@contosoltd.onmicrosoft.com",
                given: "Pat",
                surname: "Lee",
                mail: Some("pat.lee@fabrikam.com"),
                enabled: true,
                guest: true,
                skus: &[],
            },
            UserSpec {
                upn: "eve.black@contoso.co.uk",
                given: "Eve",
                surname: "Black",
                mail: Some("eve.black@contoso.co.uk"),
                enabled: false,
                guest: false,
                skus: &[SPB.0],
            },
            UserSpec {
                upn: "admin@contoso.co.uk",
                given: "Contoso",
                surname: "Admin",
                mail: Some("admin@contoso.co.uk"),
                enabled: true,
                guest: false,
                skus: &[SPB.0],
            },
            UserSpec {
                upn: "svc-backup@contoso.co.uk",
                given: "Backup",
                surname: "Service",
                mail: Some("svc-backup@contoso.co.uk"),
                enabled: true,
                guest: false,
                skus: &[EXCHANGE_P1.0],
            },
            UserSpec {
                upn: "frank.green@contoso.co.uk",
                given: "Frank",
                surname: "Green",
                mail: Some("frank.green@contoso.co.uk"),
                enabled: true,
                guest: false,
                skus: &[],
            },
            UserSpec {
                upn: "grace.hall@contoso.co.uk",
                given: "Grace",
                surname: "Hall",
                mail: Some("grace.hall@contoso.co.uk"),
                enabled: true,
                guest: false,
                skus: &[SPB.0],
            },
            UserSpec {
                upn: "g.hall@contoso.co.uk",
                given: "Graham",
                surname: "Hall",
                mail: Some("grace.hall@contoso.co.uk"),
                enabled: true,
                guest: false,
                skus: &[SPB.0],
            },
        ];
        let users: Vec<Value> = specs
            .iter()
            .enumerate()
            .map(|(i, u)| graph_user(&mut rng, u, "Contoso Ltd", day0 - (400 - i as i64) * DAY))
            .collect();
        let spb_annual = guid_from(&mut rng);
        let spb_monthly = guid_from(&mut rng);
        let exo_legacy = guid_from(&mut rng);
        let azure_plan = guid_from(&mut rng);
        let subs = vec![
            pc_subscription(
                contoso_t,
                &Sub {
                    id: spb_annual.clone(),
                    offer_id: OFFER_SPB,
                    name: SPB.2,
                    qty: 10,
                    nce: true,
                    cycle: "annual",
                    term: "P1Y",
                    status: "active",
                },
                day0 - 100 * DAY,
            ),
            pc_subscription(
                contoso_t,
                &Sub {
                    id: spb_monthly.clone(),
                    offer_id: OFFER_SPB,
                    name: SPB.2,
                    qty: 2,
                    nce: true,
                    cycle: "monthly",
                    term: "P1M",
                    status: "active",
                },
                day0 - 10 * DAY,
            ),
            pc_subscription(
                contoso_t,
                &Sub {
                    id: exo_legacy.clone(),
                    offer_id: LEGACY_EXCHANGE_P1,
                    name: "Exchange Online (Plan 1)",
                    qty: 5,
                    nce: false,
                    cycle: "monthly",
                    term: "",
                    status: "active",
                },
                day0 - 700 * DAY,
            ),
            pc_subscription(
                contoso_t,
                &Sub {
                    id: azure_plan,
                    offer_id: OFFER_AZURE_PLAN,
                    name: "Azure plan",
                    qty: 1,
                    nce: true,
                    cycle: "monthly",
                    term: "",
                    status: "active",
                },
                day0 - 300 * DAY,
            ),
        ];
        let devices: Vec<Value> = (0..3)
            .map(|i| device(&mut rng, &users[i], 100 + i, i, day0))
            .collect();
        customers.push(Customer {
            tenant_id: contoso_t.into(),
            name: "Contoso Ltd".into(),
            domain: "contosoltd.onmicrosoft.com".into(),
            extra_domains: vec!["contoso.co.uk".into()],
            halo_client_id: Some(101),
            relationship_to_partner: "reseller".into(),
            consented_apps: consented.clone(),
            service_principals: vec![],
            app_role_assignments: vec![],
            intune: true,
            users: users.clone(),
            removed_users: vec![],
            subscribed_skus: vec![
                graph_sku(
                    contoso_t,
                    "Contoso Ltd",
                    SPB,
                    12,
                    &[&spb_annual, &spb_monthly],
                ),
                graph_sku(contoso_t, "Contoso Ltd", EXCHANGE_P1, 5, &[&exo_legacy]),
                graph_sku(contoso_t, "Contoso Ltd", FLOW_FREE, 10_000, &[]),
            ],
            company_subscriptions: vec![
                company_sub(
                    &mut rng,
                    &partner,
                    SPB,
                    &spb_annual,
                    10,
                    day0 - 100 * DAY,
                    day0 + 265 * DAY,
                ),
                company_sub(
                    &mut rng,
                    &partner,
                    SPB,
                    &spb_monthly,
                    2,
                    day0 - 10 * DAY,
                    day0 + 20 * DAY,
                ),
                company_sub(
                    &mut rng,
                    &partner,
                    EXCHANGE_P1,
                    &exo_legacy,
                    5,
                    day0 - 700 * DAY,
                    day0 + 25 * DAY,
                ),
            ],
            subscriptions: subs,
            devices,
            gdap: vec![gdap(
                &mut rng,
                contoso_t,
                "Contoso Ltd",
                &all_roles,
                day0 - 200 * DAY,
                day0 + 530 * DAY,
                "P180D",
                day0,
            )],
            organization: json!({}),
        });
        let contoso = (101, "Contoso Limited");
        push(
            &mut halo,
            "Client",
            halo_client(
                101,
                "Contoso Limited",
                (201, "Head Office"),
                "www.contoso.co.uk",
                "contoso.co.uk",
                json!([]),
            ),
        );
        push(&mut halo, "Site", halo_site(201, "Head Office", contoso));
        let mut hu = Vec::new();
        // Same e-mail as Alice (different case), no azureoid: to be linked.
        hu.push(halo_user(
            1001,
            "Alice Smith",
            "alice.smith@contoso.co.uk",
            (201, "Head Office"),
            contoso,
            false,
            "",
            "",
        ));
        // Inactive, matches Bob: to be linked and reactivated.
        hu.push(halo_user(
            1002,
            "Bob Jones",
            "Bob.Jones@contoso.co.uk",
            (201, "Head Office"),
            contoso,
            true,
            "",
            "",
        ));
        // E-mail equal to Grace's UPN and to Graham's mail: ambiguous.
        hu.push(halo_user(
            1003,
            "G Hall",
            "grace.hall@contoso.co.uk",
            (201, "Head Office"),
            contoso,
            false,
            "",
            "",
        ));
        for i in 0..120 {
            let name = format!(
                "{} {}",
                FIRST[i % FIRST.len()],
                LAST[(i / FIRST.len() + i) % LAST.len()]
            );
            let email = format!(
                "{}.{}{}@contoso.co.uk",
                FIRST[i % FIRST.len()].to_lowercase(),
                LAST[(i / FIRST.len() + i) % LAST.len()].to_lowercase(),
                i
            );
            hu.push(halo_user(
                1100 + i as i64,
                &name,
                &email,
                (201, "Head Office"),
                contoso,
                false,
                "",
                "",
            ));
        }

        // 2. Fabrikam Inc -> Halo "Fabrikam Inc" (102, site 202), mapped by azure_tenants too.
        let fab_t = "f4b1c2d3-8e7a-4c6b-9d5e-2a3b4c5d6e7f";
        let fspecs = [
            UserSpec {
                upn: "megan.bowen@fabrikam.com",
                given: "Megan",
                surname: "Bowen",
                mail: Some("megan.bowen@fabrikam.com"),
                enabled: true,
                guest: false,
                skus: &[BASIC.0],
            },
            UserSpec {
                upn: "lee.gu@fabrikam.com",
                given: "Lee",
                surname: "Gu",
                mail: Some("lee.gu@fabrikam.com"),
                enabled: true,
                guest: false,
                skus: &[BASIC.0],
            },
            UserSpec {
                upn: "nestor.wilke@fabrikam.com",
                given: "Nestor",
                surname: "Wilke",
                mail: Some("nestor.wilke@fabrikam.com"),
                enabled: true,
                guest: false,
                skus: &[BASIC.0],
            },
            UserSpec {
                upn: "reception@fabrikam.com",
                given: "Reception",
                surname: "",
                mail: Some("reception@fabrikam.com"),
                enabled: true,
                guest: false,
                skus: &[],
            },
        ];
        let fusers: Vec<Value> = fspecs
            .iter()
            .enumerate()
            .map(|(i, u)| graph_user(&mut rng, u, "Fabrikam Inc", day0 - (300 - i as i64) * DAY))
            .collect();
        let fab_sub = guid_from(&mut rng);
        let fdevices: Vec<Value> = (0..3)
            .map(|i| device(&mut rng, &fusers[i], 200 + i, i, day0))
            .collect();
        customers.push(Customer {
            tenant_id: fab_t.into(),
            name: "Fabrikam Inc".into(),
            domain: "fabrikaminc.onmicrosoft.com".into(),
            extra_domains: vec!["fabrikam.com".into()],
            halo_client_id: Some(102),
            relationship_to_partner: "reseller".into(),
            consented_apps: consented.clone(),
            service_principals: vec![],
            app_role_assignments: vec![],
            intune: true,
            users: fusers.clone(),
            removed_users: vec![],
            subscriptions: vec![pc_subscription(
                fab_t,
                &Sub {
                    id: fab_sub.clone(),
                    offer_id: OFFER_BASIC,
                    name: BASIC.2,
                    qty: 5,
                    nce: true,
                    cycle: "monthly",
                    term: "P1Y",
                    status: "active",
                },
                day0 - 50 * DAY,
            )],
            subscribed_skus: vec![graph_sku(fab_t, "Fabrikam Inc", BASIC, 5, &[&fab_sub])],
            company_subscriptions: vec![company_sub(
                &mut rng,
                &partner,
                BASIC,
                &fab_sub,
                5,
                day0 - 50 * DAY,
                day0 + 315 * DAY,
            )],
            devices: fdevices,
            gdap: vec![gdap(
                &mut rng,
                fab_t,
                "Fabrikam Inc",
                &all_roles,
                day0 - 100 * DAY,
                day0 + 630 * DAY,
                "P180D",
                day0,
            )],
            organization: json!({}),
        });
        let fab = (102, "Fabrikam Inc");
        push(
            &mut halo,
            "Client",
            halo_client(
                102,
                "Fabrikam Inc",
                (202, "Fabrikam HQ"),
                "https://fabrikam.com",
                "fabrikam.com",
                json!([{"id": 1, "details_id": 1, "client_id": 102, "client_name": "Fabrikam Inc", "azure_tenant_id": fab_t, "azure_tenant_name": "Fabrikam Inc", "azure_tenant_domain": "fabrikam.com", "details_name": "Microsoft CSP"}]),
            ),
        );
        push(&mut halo, "Site", halo_site(202, "Fabrikam HQ", fab));
        // Already linked by Halo's own integration.
        hu.push(halo_user(
            1301,
            "Megan Bowen",
            "megan.bowen@fabrikam.com",
            (202, "Fabrikam HQ"),
            fab,
            false,
            util::s(&fusers[0], "id"),
            fab_t,
        ));
        push(
            &mut halo,
            "SoftwareLicence",
            json!({
                "id": 301, "type": 1, "name": "Microsoft 365 Business Basic", "count": 5, "client_id": 102, "client_name": "Fabrikam Inc",
                "site_id": -1, "licences_in_use": 3, "licences_available": 2, "is_active": true, "deleted": false,
                "tenant_id": fab_t, "tenant_name": "Fabrikam Inc", "vendor": 0, "manufacturer": "Microsoft",
                "billing_cycle": "Monthly", "term_duration": "Annual", "status": "Active", "autorenew": true,
                "start_date": util::rfc3339(day0 - 50 * DAY), "end_date": util::rfc3339(day0 + 315 * DAY),
                "product_sku": BASIC.1, "notes": "Imported by Halo's Microsoft CSP integration"
            }),
        );

        // 3. Northwind Traders: unmapped; Halo has "Northwind Traders Limited" (103).
        let nw_t = "a1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b";
        let nspecs = [
            UserSpec {
                upn: "anne.dodsworth@northwindtraders.com",
                given: "Anne",
                surname: "Dodsworth",
                mail: Some("anne.dodsworth@northwindtraders.com"),
                enabled: true,
                guest: false,
                skus: &[STANDARD.0],
            },
            UserSpec {
                upn: "robert.king@northwindtraders.com",
                given: "Robert",
                surname: "King",
                mail: Some("robert.king@northwindtraders.com"),
                enabled: true,
                guest: false,
                skus: &[STANDARD.0],
            },
            UserSpec {
                upn: "laura.callahan@northwindtraders.com",
                given: "Laura",
                surname: "Callahan",
                mail: Some("laura.callahan@northwindtraders.com"),
                enabled: true,
                guest: false,
                skus: &[],
            },
        ];
        let nusers: Vec<Value> = nspecs
            .iter()
            .enumerate()
            .map(|(i, u)| {
                graph_user(
                    &mut rng,
                    u,
                    "Northwind Traders",
                    day0 - (250 - i as i64) * DAY,
                )
            })
            .collect();
        let nw_sub = guid_from(&mut rng);
        customers.push(Customer {
            tenant_id: nw_t.into(),
            name: "Northwind Traders".into(),
            domain: "northwindtraders.onmicrosoft.com".into(),
            extra_domains: vec!["northwindtraders.com".into()],
            halo_client_id: None,
            relationship_to_partner: "reseller".into(),
            consented_apps: consented.clone(),
            service_principals: vec![],
            app_role_assignments: vec![],
            intune: false,
            users: nusers,
            removed_users: vec![],
            subscriptions: vec![pc_subscription(
                nw_t,
                &Sub {
                    id: nw_sub.clone(),
                    offer_id: OFFER_STANDARD,
                    name: STANDARD.2,
                    qty: 3,
                    nce: true,
                    cycle: "monthly",
                    term: "P1M",
                    status: "active",
                },
                day0 - 40 * DAY,
            )],
            subscribed_skus: vec![graph_sku(
                nw_t,
                "Northwind Traders",
                STANDARD,
                3,
                &[&nw_sub],
            )],
            company_subscriptions: vec![company_sub(
                &mut rng,
                &partner,
                STANDARD,
                &nw_sub,
                3,
                day0 - 40 * DAY,
                day0 + 20 * DAY,
            )],
            devices: vec![],
            gdap: vec![gdap(
                &mut rng,
                nw_t,
                "Northwind Traders",
                &all_roles,
                day0 - 40 * DAY,
                day0 + 690 * DAY,
                "P180D",
                day0,
            )],
            organization: json!({}),
        });
        push(
            &mut halo,
            "Client",
            halo_client(
                103,
                "Northwind Traders Limited",
                (203, "Main"),
                "",
                "",
                json!([]),
            ),
        );
        push(
            &mut halo,
            "Site",
            site_with_emaildomain(
                halo_site(203, "Main", (103, "Northwind Traders Limited")),
                "northwindtraders.com",
            ),
        );

        // 4. Tailspin Toys: unmapped, no Halo client.
        let ts_t = "d7e8f9a0-1b2c-4d3e-8f4a-5b6c7d8e9f01";
        let tspecs = [
            UserSpec {
                upn: "owner@tailspintoys.com",
                given: "Tom",
                surname: "Spin",
                mail: Some("owner@tailspintoys.com"),
                enabled: true,
                guest: false,
                skus: &[BASIC.0],
            },
            UserSpec {
                upn: "sales@tailspintoys.com",
                given: "Sally",
                surname: "Sales",
                mail: Some("sales@tailspintoys.com"),
                enabled: true,
                guest: false,
                skus: &[BASIC.0],
            },
        ];
        let tusers: Vec<Value> = tspecs
            .iter()
            .enumerate()
            .map(|(i, u)| graph_user(&mut rng, u, "Tailspin Toys", day0 - (90 - i as i64) * DAY))
            .collect();
        let ts_sub = guid_from(&mut rng);
        customers.push(Customer {
            tenant_id: ts_t.into(),
            name: "Tailspin Toys".into(),
            domain: "tailspintoys.onmicrosoft.com".into(),
            extra_domains: vec!["tailspintoys.com".into()],
            halo_client_id: None,
            relationship_to_partner: "reseller".into(),
            consented_apps: consented.clone(),
            service_principals: vec![],
            app_role_assignments: vec![],
            intune: false,
            users: tusers,
            removed_users: vec![],
            subscriptions: vec![pc_subscription(
                ts_t,
                &Sub {
                    id: ts_sub.clone(),
                    offer_id: OFFER_BASIC,
                    name: BASIC.2,
                    qty: 2,
                    nce: true,
                    cycle: "monthly",
                    term: "P1M",
                    status: "active",
                },
                day0 - 20 * DAY,
            )],
            subscribed_skus: vec![graph_sku(ts_t, "Tailspin Toys", BASIC, 2, &[&ts_sub])],
            company_subscriptions: vec![company_sub(
                &mut rng,
                &partner,
                BASIC,
                &ts_sub,
                2,
                day0 - 20 * DAY,
                day0 + 10 * DAY,
            )],
            devices: vec![],
            gdap: vec![gdap(
                &mut rng,
                ts_t,
                "Tailspin Toys",
                &all_roles,
                day0 - 20 * DAY,
                day0 + 710 * DAY,
                "P180D",
                day0,
            )],
            organization: json!({}),
        });

        // 5. Woodgrove Bank: mapped (104) but the apps are not consented there (AADSTS65001).
        let wg_t = "b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e";
        let wspecs = [
            UserSpec {
                upn: "cfo@woodgrovebank.com",
                given: "Wendy",
                surname: "Grove",
                mail: Some("cfo@woodgrovebank.com"),
                enabled: true,
                guest: false,
                skus: &[E3.0],
            },
            UserSpec {
                upn: "it@woodgrovebank.com",
                given: "Ian",
                surname: "Tee",
                mail: Some("it@woodgrovebank.com"),
                enabled: true,
                guest: false,
                skus: &[E3.0],
            },
        ];
        let wusers: Vec<Value> = wspecs
            .iter()
            .enumerate()
            .map(|(i, u)| graph_user(&mut rng, u, "Woodgrove Bank", day0 - (500 - i as i64) * DAY))
            .collect();
        let wg_sub = guid_from(&mut rng);
        customers.push(Customer {
            tenant_id: wg_t.into(),
            name: "Woodgrove Bank".into(),
            domain: "woodgrovebank.onmicrosoft.com".into(),
            extra_domains: vec!["woodgrovebank.com".into()],
            halo_client_id: Some(104),
            relationship_to_partner: "reseller".into(),
            consented_apps: vec![],
            service_principals: vec![],
            app_role_assignments: vec![],
            intune: false,
            users: wusers,
            removed_users: vec![],
            subscriptions: vec![pc_subscription(
                wg_t,
                &Sub {
                    id: wg_sub.clone(),
                    offer_id: OFFER_E3,
                    name: E3.2,
                    qty: 2,
                    nce: true,
                    cycle: "annual",
                    term: "P1Y",
                    status: "active",
                },
                day0 - 150 * DAY,
            )],
            subscribed_skus: vec![graph_sku(wg_t, "Woodgrove Bank", E3, 2, &[&wg_sub])],
            company_subscriptions: vec![company_sub(
                &mut rng,
                &partner,
                E3,
                &wg_sub,
                2,
                day0 - 150 * DAY,
                day0 + 215 * DAY,
            )],
            devices: vec![],
            gdap: vec![gdap(
                &mut rng,
                wg_t,
                "Woodgrove Bank",
                &all_roles,
                day0 - 150 * DAY,
                day0 + 580 * DAY,
                "P180D",
                day0,
            )],
            organization: json!({}),
        });
        push(
            &mut halo,
            "Client",
            halo_client(
                104,
                "Woodgrove Bank",
                (204, "Main"),
                "woodgrovebank.com",
                "",
                json!([]),
            ),
        );
        push(
            &mut halo,
            "Site",
            halo_site(204, "Main", (104, "Woodgrove Bank")),
        );

        // 6. Litware Inc: mapped (105); GDAP ends in 20 days, no auto-extend, License Administrator missing.
        let lw_t = "e9f0a1b2-c3d4-4e5f-a6b7-c8d9e0f1a2b3";
        let lspecs = [
            UserSpec {
                upn: "diego.siciliani@litware.com",
                given: "Diego",
                surname: "Siciliani",
                mail: Some("diego.siciliani@litware.com"),
                enabled: true,
                guest: false,
                skus: &[SPB.0],
            },
            UserSpec {
                upn: "isaiah.langer@litware.com",
                given: "Isaiah",
                surname: "Langer",
                mail: Some("isaiah.langer@litware.com"),
                enabled: true,
                guest: false,
                skus: &[SPB.0],
            },
            UserSpec {
                upn: "johanna.lorenz@litware.com",
                given: "Johanna",
                surname: "Lorenz",
                mail: Some("johanna.lorenz@litware.com"),
                enabled: true,
                guest: false,
                skus: &[SPB.0],
            },
        ];
        let lusers: Vec<Value> = lspecs
            .iter()
            .enumerate()
            .map(|(i, u)| graph_user(&mut rng, u, "Litware Inc", day0 - (600 - i as i64) * DAY))
            .collect();
        let lw_sub = guid_from(&mut rng);
        customers.push(Customer {
            tenant_id: lw_t.into(),
            name: "Litware Inc".into(),
            domain: "litwareinc.onmicrosoft.com".into(),
            extra_domains: vec!["litware.com".into()],
            halo_client_id: Some(105),
            relationship_to_partner: "reseller".into(),
            consented_apps: consented.clone(),
            service_principals: vec![],
            app_role_assignments: vec![],
            intune: false,
            users: lusers,
            removed_users: vec![],
            subscriptions: vec![pc_subscription(
                lw_t,
                &Sub {
                    id: lw_sub.clone(),
                    offer_id: OFFER_SPB,
                    name: SPB.2,
                    qty: 3,
                    nce: true,
                    cycle: "annual",
                    term: "P1Y",
                    status: "active",
                },
                day0 - 200 * DAY,
            )],
            subscribed_skus: vec![graph_sku(lw_t, "Litware Inc", SPB, 3, &[&lw_sub])],
            company_subscriptions: vec![company_sub(
                &mut rng,
                &partner,
                SPB,
                &lw_sub,
                3,
                day0 - 200 * DAY,
                day0 + 165 * DAY,
            )],
            devices: vec![],
            gdap: vec![gdap(
                &mut rng,
                lw_t,
                "Litware Inc",
                &[
                    ROLE_DIRECTORY_READERS,
                    ROLE_GLOBAL_READER,
                    ROLE_USER_ADMIN,
                    ROLE_INTUNE_ADMIN,
                    ROLE_CLOUD_APP_ADMIN,
                ],
                day0 - 710 * DAY,
                day0 + 20 * DAY,
                "PT0S",
                day0,
            )],
            organization: json!({}),
        });
        push(
            &mut halo,
            "Client",
            halo_client(
                105,
                "Litware, Inc.",
                (205, "Main"),
                "https://www.litware.com",
                "",
                json!([]),
            ),
        );
        push(
            &mut halo,
            "Site",
            halo_site(205, "Main", (105, "Litware, Inc.")),
        );
        hu.push(halo_user(
            1501,
            "Diego Siciliani",
            "diego.siciliani@litware.com",
            (205, "Main"),
            (105, "Litware, Inc."),
            false,
            "",
            "",
        ));

        halo.insert("Users".into(), hu);
        halo.insert("Invoice".into(), vec![json!({"id": 1, "client_id": 101, "client_name": "Contoso Limited", "invoicenumber": "INV-0001", "invoice_date": util::rfc3339(day0 - 30 * DAY), "lines": [], "total": 264.0})]);
        halo.insert("RecurringInvoice".into(), vec![json!({"id": -94, "client_id": 101, "client_name": "Contoso Limited", "period": "Monthly", "lines": [], "total": 0.0})]);

        let mut sc = Scenario {
            partner_tenant_id: partner,
            partner_name: "Adatum Managed Services".into(),
            partner_domain: "adatummsp.onmicrosoft.com".into(),
            partner_center_app: PartnerCenterApp {
                client_id: pc_app,
                client_secret: "emu-pc-secret-7Q~x2".into(),
                refresh_token: "0.AR8A-emulator-partner-refresh-token".into(),
            },
            graph_app: GraphApp {
                client_id: graph_app,
                client_secret: "emu-graph-secret-9V~k4".into(),
                refresh_token: "0.AR8A-emulator-graph-refresh-token".into(),
            },
            halo_app: HaloApp {
                client_id: "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9".into(),
                client_secret: "emu-halo-secret-3Kp".into(),
                tenant: Some("adatum".into()),
            },
            customers,
            halo,
            settings: Settings {
                pc_page_size: 2,
                bom: BomMode::Alternate,
                graph_delta_page_size: 5,
                graph_device_page_size: 2,
                now: Some(now),
                ..Settings::default()
            },
            billing: crate::billing::Billing::default(),
        };
        sc.billing = crate::billing::sample(&sc.customers, now);
        // Every tenant where the Graph app is consented also has its service principal with the
        // application permissions granted (Woodgrove Bank has neither).
        sc.provision_consented(None);
        sc
    }

    /// A generated estate: `tenants` customers, each mapped to its own Halo client (with a main site),
    /// with `users_per_tenant` users and `devices_per_tenant` Intune devices. Halo starts with the clients
    /// and sites only. Deterministic apart from dates.
    pub fn large(tenants: usize, users_per_tenant: usize, devices_per_tenant: usize) -> Scenario {
        Scenario::large_at(
            jiff::Timestamp::now(),
            tenants,
            users_per_tenant,
            devices_per_tenant,
        )
    }

    /// [`Scenario::large`] dated from `now` (see [`Scenario::small_at`]).
    pub fn large_at(
        now: jiff::Timestamp,
        tenants: usize,
        users_per_tenant: usize,
        devices_per_tenant: usize,
    ) -> Scenario {
        let mut s = Scenario::small_at(now);
        let mut rng = fastrand::Rng::with_seed(42);
        let now = now.as_second();
        let day0 = day_start(now);
        let partner = s.partner_tenant_id.clone();
        let consented = vec![
            s.graph_app.client_id.clone(),
            s.partner_center_app.client_id.clone(),
        ];
        let mut halo = base_halo();
        let mut customers = Vec::with_capacity(tenants);
        for t in 0..tenants {
            let tenant = guid_from(&mut rng);
            let name = format!("Customer {:03} Ltd", t + 1);
            let dom = format!("customer{:03}.com", t + 1);
            let client_id = (t + 1) as i64;
            let site_id = (t + 1) as i64;
            let mut users = Vec::with_capacity(users_per_tenant);
            for u in 0..users_per_tenant {
                let given = FIRST[u % FIRST.len()];
                let surname = LAST[(u / FIRST.len()) % LAST.len()];
                let upn = format!(
                    "{}.{}{}@{dom}",
                    given.to_lowercase(),
                    surname.to_lowercase(),
                    u
                );
                let skus: &[&str] = match u % 10 {
                    0..=6 => &[SPB.0],
                    7 => &[EXCHANGE_P1.0],
                    _ => &[],
                };
                let spec = UserSpec {
                    upn: &upn,
                    given,
                    surname,
                    mail: Some(&upn),
                    enabled: u % 25 != 24,
                    guest: false,
                    skus,
                };
                users.push(graph_user(
                    &mut rng,
                    &spec,
                    &name,
                    day0 - (1000 - u as i64) * DAY,
                ));
            }
            let n_spb = users
                .iter()
                .filter(|u| u["assignedLicenses"].to_string().contains(SPB.0))
                .count() as i64;
            let n_exo = users
                .iter()
                .filter(|u| u["assignedLicenses"].to_string().contains(EXCHANGE_P1.0))
                .count() as i64;
            let spb_sub = guid_from(&mut rng);
            let exo_sub = guid_from(&mut rng);
            let devices: Vec<Value> = (0..devices_per_tenant)
                .filter(|_| !users.is_empty())
                .map(|d| device(&mut rng, &users[d % users.len()], d, d, day0))
                .collect();
            customers.push(Customer {
                tenant_id: tenant.clone(),
                name: name.clone(),
                domain: format!("customer{:03}.onmicrosoft.com", t + 1),
                extra_domains: vec![dom.clone()],
                halo_client_id: Some(client_id),
                relationship_to_partner: "reseller".into(),
                consented_apps: consented.clone(),
                service_principals: vec![],
                app_role_assignments: vec![],
                intune: devices_per_tenant > 0,
                users,
                removed_users: vec![],
                subscriptions: vec![
                    pc_subscription(
                        &tenant,
                        &Sub {
                            id: spb_sub.clone(),
                            offer_id: OFFER_SPB,
                            name: SPB.2,
                            qty: n_spb + 2,
                            nce: true,
                            cycle: "annual",
                            term: "P1Y",
                            status: "active",
                        },
                        day0 - 100 * DAY,
                    ),
                    pc_subscription(
                        &tenant,
                        &Sub {
                            id: exo_sub.clone(),
                            offer_id: LEGACY_EXCHANGE_P1,
                            name: "Exchange Online (Plan 1)",
                            qty: n_exo,
                            nce: false,
                            cycle: "monthly",
                            term: "",
                            status: "active",
                        },
                        day0 - 400 * DAY,
                    ),
                ],
                subscribed_skus: vec![
                    graph_sku(&tenant, &name, SPB, n_spb + 2, &[&spb_sub]),
                    graph_sku(&tenant, &name, EXCHANGE_P1, n_exo, &[&exo_sub]),
                ],
                company_subscriptions: vec![
                    company_sub(
                        &mut rng,
                        &partner,
                        SPB,
                        &spb_sub,
                        n_spb + 2,
                        day0 - 100 * DAY,
                        day0 + 265 * DAY,
                    ),
                    company_sub(
                        &mut rng,
                        &partner,
                        EXCHANGE_P1,
                        &exo_sub,
                        n_exo,
                        day0 - 400 * DAY,
                        day0 + 20 * DAY,
                    ),
                ],
                devices,
                gdap: vec![gdap(
                    &mut rng,
                    &tenant,
                    &name,
                    &[
                        ROLE_DIRECTORY_READERS,
                        ROLE_GLOBAL_READER,
                        ROLE_USER_ADMIN,
                        ROLE_LICENSE_ADMIN,
                        ROLE_INTUNE_ADMIN,
                    ],
                    day0 - 100 * DAY,
                    day0 + 630 * DAY,
                    "P180D",
                    day0,
                )],
                organization: json!({}),
            });
            push(
                &mut halo,
                "Client",
                halo_client(
                    client_id,
                    &name,
                    (site_id, "Main"),
                    &format!("https://www.{dom}"),
                    &dom,
                    json!([]),
                ),
            );
            push(
                &mut halo,
                "Site",
                halo_site(site_id, "Main", (client_id, &name)),
            );
        }
        s.customers = customers;
        s.halo = halo;
        s.settings = Settings {
            pc_page_size: 100,
            bom: BomMode::Alternate,
            now: Some(now),
            ..Settings::default()
        };
        s.provision_consented(None);
        s
    }
}
