//! Churn between two syncs ([`Scenario::churn`]): joiners, leavers, movers, seat changes, and devices
//! enrolled and retired, each a share of the estate spread over every tenant. What the readers then see is
//! what the reference describes for such changes: new users, soft-deleted ones (Graph `users/delta` reports
//! them `@removed` "changed", microsoft-apis.md 2.2), changed `jobTitle` and `department`, a subscription's
//! `quantity` changed in Partner Center together with the tenant's Graph `subscribedSkus`
//! (`prepaidUnits.enabled`) and `directory/subscriptions` (`totalLicenses`), devices new in and gone from
//! Intune's `managedDevices`.

use serde_json::{Value, json};

use crate::scenario::Scenario;
use crate::scenarios::{UserSpec, device, graph_user};
use crate::util;

/// What one [`Scenario::churn`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Churn {
    /// Users added (licensed like the tenant's first SKU).
    pub joiners: usize,
    /// Users soft-deleted.
    pub leavers: usize,
    /// Users whose job title and department changed.
    pub movers: usize,
    /// Seat-based subscriptions whose quantity went up by one.
    pub seat_changes: usize,
    pub new_devices: usize,
    pub removed_devices: usize,
}

impl Churn {
    /// Users added, removed or changed.
    pub fn users(&self) -> usize {
        self.joiners + self.leavers + self.movers
    }

    /// Devices added or removed.
    pub fn devices(&self) -> usize {
        self.new_devices + self.removed_devices
    }
}

/// Whole shares of `n` at `percent`, carrying the fraction over to the next tenant so that an estate of
/// small tenants still gets its share overall.
fn share(carry: &mut f64, n: usize, percent: f64) -> usize {
    *carry += n as f64 * percent / 100.0;
    let whole = carry.floor();
    *carry -= whole;
    whole as usize
}

impl Scenario {
    /// Changes `percent` % of the users of every tenant (joiners, leavers and movers in turn across the
    /// estate), of its Intune devices (enrolled and retired in turn) and of the estate's seat-based
    /// subscriptions (quantity + 1), deterministically from `seed`. Returns what changed.
    pub fn churn(&mut self, percent: f64, seed: u64) -> Churn {
        let mut rng = fastrand::Rng::with_seed(seed);
        let now = self.now_secs();
        let mut out = Churn::default();
        let (mut user_carry, mut device_carry, mut seat_carry) = (0.0, 0.0, 0.0);
        let mut event = 0usize;
        for c in &mut self.customers {
            for _ in 0..share(&mut user_carry, c.users.len(), percent) {
                match event % 3 {
                    0 => {
                        let domain = c
                            .users
                            .first()
                            .and_then(|u| util::s(u, "userPrincipalName").split('@').nth(1))
                            .unwrap_or(&c.domain)
                            .to_string();
                        let sku = c
                            .subscribed_skus
                            .first()
                            .map(|s| util::s(s, "skuId").to_string());
                        let upn = format!("joiner{seed}.{event}@{domain}");
                        let skus: Vec<&str> = sku.iter().map(String::as_str).collect();
                        let spec = UserSpec {
                            upn: &upn,
                            given: "Joiner",
                            surname: "New",
                            mail: Some(&upn),
                            enabled: true,
                            guest: false,
                            skus: &skus,
                        };
                        let user = graph_user(&mut rng, &spec, &c.name, now);
                        c.users.push(user);
                        out.joiners += 1;
                    }
                    1 if !c.users.is_empty() => {
                        let u = c.users.remove(rng.usize(..c.users.len()));
                        c.removed_users
                            .push(json!({"id": util::s(&u, "id"), "reason": "changed"}));
                        out.leavers += 1;
                    }
                    2 if !c.users.is_empty() => {
                        let n = rng.usize(..c.users.len());
                        let u = &mut c.users[n];
                        u["jobTitle"] = json!(format!("Moved {seed}.{event}"));
                        u["department"] = json!(format!("Department {}", event % 7));
                        out.movers += 1;
                    }
                    _ => {}
                }
                event += 1;
            }
            let before = c.devices.len();
            for d in 0..share(&mut device_carry, before, percent) {
                if (out.new_devices + out.removed_devices) % 2 == 0 && !c.users.is_empty() {
                    let user = c.users[rng.usize(..c.users.len())].clone();
                    let n = before + 1000 * (seed as usize % 1000 + 1) + d;
                    c.devices.push(device(&mut rng, &user, n, n, now));
                    out.new_devices += 1;
                } else if !c.devices.is_empty() {
                    c.devices.remove(rng.usize(..c.devices.len()));
                    out.removed_devices += 1;
                }
            }
            let seat_based: Vec<String> = c
                .subscriptions
                .iter()
                .filter(|s| util::s(s, "unitType") == "Licenses")
                .map(|s| util::s(s, "id").to_string())
                .collect();
            for id in seat_based
                .iter()
                .take(share(&mut seat_carry, seat_based.len(), percent))
            {
                bump(&mut c.subscriptions, "id", id, "/quantity");
                for sku in &mut c.subscribed_skus {
                    let holds = sku["subscriptionIds"]
                        .as_array()
                        .is_some_and(|ids| ids.iter().any(|v| v.as_str() == Some(id)));
                    if holds {
                        add_one(sku, "/prepaidUnits/enabled");
                    }
                }
                bump(
                    &mut c.company_subscriptions,
                    "commerceSubscriptionId",
                    id,
                    "/totalLicenses",
                );
                out.seat_changes += 1;
            }
        }
        out
    }
}

/// Adds one to the number at `pointer` of the records whose `key` is `id`.
fn bump(records: &mut [Value], key: &str, id: &str, pointer: &str) {
    for r in records.iter_mut().filter(|r| util::s(r, key) == id) {
        add_one(r, pointer);
    }
}

fn add_one(record: &mut Value, pointer: &str) {
    if let Some(v) = record.pointer_mut(pointer) {
        *v = json!(v.as_i64().unwrap_or(0) + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_percent_of_a_large_estate() {
        let mut sc = Scenario::large_at("2026-11-27T09:00:00Z".parse().unwrap(), 10, 100, 50);
        let users: usize = sc.customers.iter().map(|c| c.users.len()).sum();
        let qty = |sc: &Scenario| -> i64 {
            sc.customers
                .iter()
                .flat_map(|c| &c.subscriptions)
                .map(|s| s["quantity"].as_i64().unwrap())
                .sum()
        };
        let before = qty(&sc);
        let c = sc.churn(2.0, 7);
        assert_eq!(c.users(), 20);
        assert_eq!((c.joiners, c.leavers, c.movers), (7, 7, 6));
        assert_eq!((c.new_devices, c.removed_devices), (5, 5));
        // 20 seat-based subscriptions (2 per tenant): 2 % is 0.4, so none; 10 % changes 2.
        assert_eq!(c.seat_changes, 0);
        let after: usize = sc.customers.iter().map(|c| c.users.len()).sum();
        assert_eq!(after, users + c.joiners - c.leavers);
        let removed: usize = sc.customers.iter().map(|c| c.removed_users.len()).sum();
        assert_eq!(removed, c.leavers);
        let moved = sc
            .customers
            .iter()
            .flat_map(|c| &c.users)
            .filter(|u| util::s(u, "jobTitle").starts_with("Moved"))
            .count();
        assert_eq!(moved, c.movers);
        assert_eq!(sc.churn(10.0, 8).seat_changes, 2);
        assert_eq!(qty(&sc), before + 2);
        let enabled: i64 = sc
            .customers
            .iter()
            .flat_map(|c| &c.subscribed_skus)
            .map(|s| s["prepaidUnits"]["enabled"].as_i64().unwrap())
            .sum();
        assert_eq!(
            enabled,
            before + 2,
            "Graph's seat counts follow Partner Center's"
        );
    }

    #[test]
    fn deterministic_for_a_seed() {
        let at = "2026-11-27T09:00:00Z".parse().unwrap();
        let mut a = Scenario::large_at(at, 3, 50, 10);
        let mut b = a.clone();
        assert_eq!(a.churn(2.0, 1), b.churn(2.0, 1));
        assert_eq!(a, b);
    }
}
