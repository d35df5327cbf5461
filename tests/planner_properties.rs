//! Property tests of the users planner's invariants (SPEC sections 7 and 8), over generated estates: two
//! mapped tenants and a third client, Entra users and Halo contacts drawn from small pools of names and
//! e-mail addresses so that matches, collisions, links to the wrong tenant and leavers all occur.
//!
//! - applying a plan to Halo and planning again gives an empty plan (held-back changes stay held back);
//! - no plan deletes, and every change that is not a create names an existing Halo record;
//! - no plan deactivates a contact without `azureoid`, or one linked to another tenant;
//! - the guards hold for any input: a tenant whose read failed or came back empty loses nobody, and a
//!   tenant's deactivations beyond both `[safety]` limits are all held back.

use std::collections::BTreeMap;

use csp_sync::model::{
    EntraUser, HaloClient, HaloSite, HaloSnapshot, HaloUser, TenantDirectory, UserType,
};
use csp_sync::plan::users::{self, GUARD_DEACTIVATION, TenantUsersInput, UsersPolicy};
use csp_sync::plan::{Action, TenantPlan};
use proptest::prelude::*;
use serde_json::Value;

const TENANTS: [(&str, i64, i64); 2] = [("t0", 10, 100), ("t1", 11, 110)];
/// A client no tenant is mapped to.
const OTHER_CLIENT: (i64, i64) = (12, 120);
const NAMES: [&str; 6] = ["ann", "bob", "cat", "dan", "eve", "fay"];

fn email(name: usize, domain: usize) -> String {
    format!("{}@d{domain}.com", NAMES[name % NAMES.len()])
}

fn oid(tenant: usize, n: usize) -> String {
    format!("{tenant}0000000-0000-0000-0000-{n:012}")
}

prop_compose! {
    fn entra_user(tenant: usize)(
        n in 0usize..8,
        name in 0usize..6,
        has_mail in any::<bool>(),
        enabled in prop::bool::weighted(0.8),
        guest in prop::bool::weighted(0.1),
        licensed in prop::bool::weighted(0.8),
        title in prop::option::of(prop::sample::select(vec!["Engineer", "Manager"])),
        display in prop::option::of(prop::sample::select(vec!["A Person", "B Person"])),
    ) -> EntraUser {
        EntraUser {
            id: oid(tenant, n),
            user_principal_name: email(name, tenant),
            display_name: display.map(str::to_string),
            given_name: None,
            surname: None,
            mail: has_mail.then(|| email(name, tenant)),
            account_enabled: enabled,
            user_type: if guest { UserType::Guest } else { UserType::Member },
            sku_ids: if licensed { vec!["sku-1".into()] } else { Vec::new() },
            job_title: title.map(str::to_string),
            department: None,
            business_phone: None,
            mobile_phone: None,
        }
    }
}

prop_compose! {
    fn halo_user()(
        client in 0usize..3,
        name in 0usize..6,
        domain in 0usize..2,
        has_email in prop::bool::weighted(0.9),
        link in prop::option::of((0usize..2, 0usize..8)),
        tenant_id in prop::option::of(0usize..2),
        inactive in prop::bool::weighted(0.2),
        title in prop::option::of(prop::sample::select(vec!["Engineer", "Manager"])),
    ) -> HaloUser {
        let (client_id, site_id) = match client {
            0 | 1 => (TENANTS[client].1, TENANTS[client].2),
            _ => OTHER_CLIENT,
        };
        HaloUser {
            id: 0,
            client_id,
            site_id,
            name: "Someone".into(),
            emailaddress: has_email.then(|| email(name, domain)),
            title: title.map(str::to_string),
            inactive,
            azureoid: link.map(|(t, n)| oid(t, n)),
            azure_tenant_id: tenant_id.map(|t| TENANTS[t].0.to_string()),
            ..HaloUser::default()
        }
    }
}

/// One generated estate.
#[derive(Debug, Clone)]
struct Estate {
    directories: Vec<Result<TenantDirectory, String>>,
    halo: HaloSnapshot,
    policy: (u32, f64),
}

fn dedup_users(mut users: Vec<EntraUser>) -> Vec<EntraUser> {
    users.sort_by(|a, b| a.id.cmp(&b.id));
    users.dedup_by(|a, b| a.id == b.id);
    users
}

prop_compose! {
    fn estate()(
        u0 in prop::collection::vec(entra_user(0), 0..8),
        u1 in prop::collection::vec(entra_user(1), 0..8),
        t1_fails in prop::bool::weighted(0.1),
        contacts in prop::collection::vec(halo_user(), 0..12),
        max_deactivations in 0u32..4,
        percent in prop::sample::select(vec![0.0, 20.0, 50.0]),
    ) -> Estate {
        let dir = |users| TenantDirectory {
            users: dedup_users(users),
            deleted_ids: Vec::new(),
            sku_part_numbers: vec![("sku-1".into(), "SPB".into())],
        };
        let mut halo = HaloSnapshot {
            clients: TENANTS
                .iter()
                .map(|(t, c, s)| (Some(*t), *c, *s))
                .chain([(None, OTHER_CLIENT.0, OTHER_CLIENT.1)])
                .map(|(t, c, s)| HaloClient {
                    id: c,
                    name: format!("Client {c}"),
                    inactive: false,
                    azure_tenant_ids: t.map(|t| vec![t.to_string()]).unwrap_or_default(),
                    website: None,
                    domain: None,
                    email_domains: Vec::new(),
                    main_site_id: Some(s),
                })
                .collect(),
            sites: [TENANTS[0], TENANTS[1]]
                .iter()
                .map(|(_, c, s)| (*c, *s))
                .chain([OTHER_CLIENT])
                .map(|(c, s)| HaloSite {
                    id: s,
                    client_id: c,
                    name: "Main".into(),
                    ..HaloSite::default()
                })
                .collect(),
            ..HaloSnapshot::default()
        };
        for (i, mut u) in contacts.into_iter().enumerate() {
            u.id = 1000 + i as i64;
            halo.users.push(u);
        }
        Estate {
            directories: vec![
                Ok(dir(u0)),
                if t1_fails { Err("reading users: HTTP 503".into()) } else { Ok(dir(u1)) },
            ],
            halo,
            policy: (max_deactivations, percent),
        }
    }
}

fn policy(e: &Estate) -> UsersPolicy {
    UsersPolicy {
        max_deactivations: e.policy.0,
        max_deactivation_percent: e.policy.1,
        ..UsersPolicy::default()
    }
}

fn plan(e: &Estate, halo: &HaloSnapshot) -> Vec<TenantPlan> {
    let inputs: Vec<TenantUsersInput> = TENANTS
        .iter()
        .zip(&e.directories)
        .map(|((t, c, _), d)| TenantUsersInput {
            customer_id: t,
            name: t,
            halo_client_id: *c,
            site_id: None,
            directory: d.as_ref().map_err(Clone::clone),
            previous: None,
        })
        .collect();
    users::plan_users(
        &inputs,
        halo,
        &policy(e),
        &BTreeMap::new(),
        // No memory of list-less fields: the policy writes none (no contract flag field).
        users::UsersMemory::none(),
        "2026-11-27T09:00:00Z".parse().unwrap(),
    )
}

/// Halo after a plan's changes (not its held-back ones) were written: each payload's known fields set on
/// the record, creates given new ids.
fn apply(halo: &HaloSnapshot, plans: &[TenantPlan]) -> HaloSnapshot {
    let mut out = halo.clone();
    let mut next_id = 5000;
    for c in plans.iter().flat_map(|t| &t.changes) {
        let payload = c.payload(true);
        let base = if let Some(id) = c.halo_id {
            out.users
                .iter()
                .position(|u| u.id == id)
                .expect("a change names a Halo record")
        } else {
            next_id += 1;
            out.users.push(HaloUser {
                id: next_id,
                ..HaloUser::default()
            });
            out.users.len() - 1
        };
        let mut record = serde_json::to_value(&out.users[base]).unwrap();
        for (k, v) in payload.as_object().unwrap() {
            if k != "id" && record.get(k).is_some() {
                record[k] = match (k.as_str(), v) {
                    // Halo stores strings; the reader lower-cases the link fields.
                    ("azureoid" | "azure_tenant_id", Value::String(s)) => {
                        Value::String(s.to_lowercase())
                    }
                    _ => v.clone(),
                };
            }
        }
        out.users[base] = serde_json::from_value(record).unwrap();
    }
    out
}

/// Whether a linked contact belongs to `tenant`: its `azure_tenant_id` says so; without one, its object id
/// is a user of that tenant's directory (object ids are unique across tenants); failing that, it sits in the
/// tenant's client.
fn owned_by(e: &Estate, u: &HaloUser, tenant: &str) -> bool {
    let Some(oid) = u.azureoid.as_deref().filter(|o| !o.is_empty()) else {
        return false;
    };
    if let Some(t) = u.azure_tenant_id.as_deref().filter(|t| !t.is_empty()) {
        return t == tenant;
    }
    let present_in = TENANTS.iter().zip(&e.directories).find(|(_, d)| {
        d.as_ref()
            .is_ok_and(|d| d.users.iter().any(|x| x.id == oid))
    });
    match present_in {
        Some((t, _)) => t.0 == tenant,
        None => TENANTS.iter().any(|t| t.0 == tenant && t.1 == u.client_id),
    }
}

fn linked_active(e: &Estate, tenant: &str) -> usize {
    e.halo
        .users
        .iter()
        .filter(|u| !u.inactive && owned_by(e, u, tenant))
        .count()
}

proptest! {
    // No regression files: a failure prints its minimal input, which becomes a plain test.
    #![proptest_config(ProptestConfig {
        cases: 400,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn applying_a_plan_then_planning_again_gives_an_empty_plan(e in estate()) {
        let first = plan(&e, &e.halo);
        let after = apply(&e.halo, &first);
        let second = plan(&e, &after);
        for (t, before) in second.iter().zip(&first) {
            // The one exception: deactivations the first plan's guard held back may pass once the creates
            // it applied have grown the tenant's linked contacts (the percentage limit's base).
            let released = |c: &&csp_sync::plan::Change| {
                c.action == Action::Deactivate
                    && before
                        .held_back
                        .iter()
                        .flat_map(|h| &h.changes)
                        .any(|h| h.halo_id == c.halo_id)
            };
            let left: Vec<_> = t.changes.iter().filter(|c| !released(c)).collect();
            prop_assert!(
                left.is_empty(),
                "{}: still {:?}",
                t.customer_id,
                left.iter().map(|c| (c.action, &c.label, &c.reason)).collect::<Vec<_>>()
            );
        }
        // And once those are written too, nothing at all is left.
        let third = plan(&e, &apply(&after, &second));
        for t in &third {
            prop_assert!(t.changes.is_empty(), "{}: {:?}", t.customer_id, t.changes);
        }
    }

    #[test]
    fn no_plan_deletes_and_every_change_names_a_record(e in estate()) {
        for t in plan(&e, &e.halo) {
            for c in t.changes.iter().chain(t.held_back.iter().flat_map(|h| &h.changes)) {
                prop_assert!(matches!(
                    c.action,
                    Action::Create | Action::Update | Action::Link | Action::Deactivate | Action::Reactivate
                ));
                prop_assert!(c.fields.iter().all(|f| f.field != "deleted" && f.field != "_delete"));
                match c.action {
                    Action::Create => prop_assert!(c.halo_id.is_none()),
                    _ => prop_assert!(
                        c.halo_id.is_some_and(|id| e.halo.users.iter().any(|u| u.id == id)),
                        "{c:?}"
                    ),
                }
            }
        }
    }

    #[test]
    fn no_deactivation_of_an_unlinked_contact_or_of_another_tenant(e in estate()) {
        for t in plan(&e, &e.halo) {
            for c in t.changes.iter().filter(|c| c.action == Action::Deactivate) {
                let u = e.halo.users.iter().find(|u| Some(u.id) == c.halo_id).unwrap();
                prop_assert!(u.azureoid.as_deref().is_some_and(|o| !o.is_empty()), "{u:?}");
                prop_assert!(owned_by(&e, u, &t.customer_id), "{} deactivates {u:?}", t.customer_id);
            }
        }
    }

    #[test]
    fn the_guards_hold_for_any_input(e in estate()) {
        let p = policy(&e);
        for (t, dir) in plan(&e, &e.halo).iter().zip(&e.directories) {
            let deactivations = t.changes.iter().filter(|c| c.action == Action::Deactivate).count();
            // Empty-source guard: a failed read, or nobody read while Halo holds linked users, loses nobody.
            let empty = match dir {
                Err(_) => true,
                Ok(d) => d.users.is_empty() && linked_active(&e, &t.customer_id) > 0,
            };
            if empty {
                prop_assert_eq!(deactivations, 0, "{}", t.customer_id);
            }
            // Deactivation guard: beyond both limits, none of the tenant's deactivations are written.
            let held = t.held_back.iter().any(|h| h.guard == GUARD_DEACTIVATION);
            if held {
                prop_assert_eq!(deactivations, 0);
            }
            let limit_pct = p.max_deactivation_percent / 100.0
                * linked_active(&e, &t.customer_id).max(1) as f64;
            prop_assert!(
                deactivations as u32 <= p.max_deactivations || deactivations as f64 <= limit_pct,
                "{}: {deactivations} deactivations written past both limits",
                t.customer_id
            );
        }
    }
}
