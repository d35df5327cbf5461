//! Readers: fetch what the planners need from Partner Center, Graph and Halo, and turn API records into the
//! domain types of `model`. Halo is read once per run per entity, across all clients, inactive records
//! included.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::model::{HaloClient, HaloLicence, HaloSite, HaloUser};

/// A Halo id: an integer, or a whole-number double (`95.0`) as Halo sometimes sends.
pub fn halo_id(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn text(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn flag(v: &Value, key: &str) -> bool {
    match v.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0) != 0,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true") || s == "1",
        _ => false,
    }
}

fn lower(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_lowercase()).filter(|s| !s.is_empty())
}

/// A Halo client record.
pub fn client(v: &Value) -> Option<HaloClient> {
    let azure_tenant_ids = v
        .get("azure_tenants")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| lower(text(t, "azure_tenant_id")))
                .collect()
        })
        .unwrap_or_default();
    Some(HaloClient {
        id: halo_id(v.get("id"))?,
        name: text(v, "name").unwrap_or_default(),
        inactive: flag(v, "inactive"),
        azure_tenant_ids,
        website: text(v, "website"),
        email: text(v, "email"),
        main_site_id: halo_id(v.get("main_site_id")).filter(|id| *id > 0),
    })
}

/// A Halo site record.
pub fn site(v: &Value) -> Option<HaloSite> {
    Some(HaloSite {
        id: halo_id(v.get("id"))?,
        client_id: halo_id(v.get("client_id")).unwrap_or(0),
        name: text(v, "name").unwrap_or_default(),
        inactive: flag(v, "inactive"),
    })
}

/// A Halo user record. `client_id` falls back to the site's client when the record lacks it.
pub fn user(v: &Value, site_clients: &BTreeMap<i64, i64>) -> Option<HaloUser> {
    let site_id = halo_id(v.get("site_id"))
        .or_else(|| halo_id(v.get("site_id_int")))
        .unwrap_or(0);
    let client_id = halo_id(v.get("client_id"))
        .filter(|c| *c > 0)
        .or_else(|| site_clients.get(&site_id).copied())
        .unwrap_or(0);
    Some(HaloUser {
        id: halo_id(v.get("id"))?,
        client_id,
        site_id,
        name: text(v, "name").unwrap_or_default(),
        firstname: text(v, "firstname"),
        surname: text(v, "surname"),
        emailaddress: text(v, "emailaddress"),
        title: text(v, "title"),
        department: text(v, "department"),
        phonenumber: text(v, "phonenumber"),
        mobilenumber: text(v, "mobilenumber"),
        inactive: flag(v, "inactive"),
        azureoid: lower(text(v, "azureoid")),
        azure_tenant_id: lower(text(v, "azure_tenant_id")),
    })
}

/// A Halo software licence record.
pub fn licence(v: &Value) -> Option<HaloLicence> {
    let autorenew = match v.get("autorenew") {
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::Number(n)) => Some(n.as_i64().unwrap_or(0) != 0),
        _ => None,
    };
    Some(HaloLicence {
        id: halo_id(v.get("id"))?,
        client_id: halo_id(v.get("client_id")).unwrap_or(0),
        name: text(v, "name").unwrap_or_default(),
        count: halo_id(v.get("count")),
        licences_in_use: halo_id(v.get("licences_in_use")),
        tenant_id: lower(text(v, "tenant_id")),
        third_party_product: text(v, "third_party_product"),
        product_sku: text(v, "product_sku"),
        status: text(v, "status"),
        billing_cycle: text(v, "billing_cycle"),
        term_duration: text(v, "term_duration"),
        autorenew,
        start_date: text(v, "start_date"),
        end_date: text(v, "end_date"),
        manufacturer: text(v, "manufacturer"),
    })
}

/// Whether Halo's user list carries `azureoid` at all (older Halo versions omit it from lists).
pub fn users_carry_azureoid(records: &[Value]) -> bool {
    records.is_empty() || records.iter().any(|r| r.get("azureoid").is_some())
}

/// Site id -> client id, for users whose record lacks `client_id`.
pub fn site_clients(sites: &[HaloSite]) -> BTreeMap<i64, i64> {
    sites.iter().map(|s| (s.id, s.client_id)).collect()
}

/// Distinct values, sorted.
pub fn distinct<I: IntoIterator<Item = String>>(items: I) -> Vec<String> {
    items
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn user_from_documented_shape_with_float_site() {
        let v = json!({"id": 12, "name": "Jane Doe", "site_id": 482.0, "emailaddress": "Jane@Contoso.com",
            "azureoid": "3C2F0000-0000-0000-0000-000000000001", "inactive": false, "title": ""});
        let sites = BTreeMap::from([(482, 7)]);
        let u = user(&v, &sites).unwrap();
        assert_eq!(u.site_id, 482);
        assert_eq!(u.client_id, 7);
        assert_eq!(
            u.azureoid.as_deref(),
            Some("3c2f0000-0000-0000-0000-000000000001")
        );
        assert_eq!(u.title, None);
    }

    #[test]
    fn client_tenants_and_missing_id() {
        let v = json!({"id": 102, "name": "Fabrikam", "azure_tenants": [{"azure_tenant_id": "ABC"}], "main_site_id": 0});
        let c = client(&v).unwrap();
        assert_eq!(c.azure_tenant_ids, vec!["abc"]);
        assert_eq!(c.main_site_id, None);
        assert!(client(&json!({"name": "x"})).is_none());
    }

    #[test]
    fn licence_fields() {
        let v = json!({"id": 5, "client_id": 3, "name": "M365", "count": 10, "autorenew": true, "tenant_id": "T"});
        let l = licence(&v).unwrap();
        assert_eq!(l.count, Some(10));
        assert_eq!(l.autorenew, Some(true));
        assert_eq!(l.tenant_id.as_deref(), Some("t"));
    }
}
