//! The licences module: one Halo licence per subscription, counts, adoption, changes, never a delete.

use serde_json::Value;

use crate::estate;
use crate::support::{Env, text};
use csp_sync_emulator::Api;

pub(crate) fn licences_only(graph_only: bool) -> estate::ConfigOptions {
    estate::ConfigOptions {
        modules: vec!["licences"],
        only: Some(vec!["Contoso Ltd".into(), "Fabrikam Inc".into()]),
        ..estate::ConfigOptions::default()
    }
    .with_partner_refresh_token(!graph_only)
}

fn halo_licences(env: &Env) -> Vec<Value> {
    env.em
        .with_state(|s| s.halo_records("SoftwareLicence").clone())
}

fn licence_for<'a>(all: &'a [Value], subscription: &str) -> Vec<&'a Value> {
    all.iter()
        .filter(|l| {
            l["third_party_product"]
                .as_str()
                .is_some_and(|t| t.eq_ignore_ascii_case(subscription))
        })
        .collect()
}

fn subscriptions(env: &Env, tenant: &str) -> Vec<Value> {
    env.em
        .with_state(|s| s.tenant_mut(tenant).subscriptions.clone())
}

#[test]
fn first_sync_creates_named_licences_then_nothing() {
    first_sync_with(&licences_only(false));
}

/// [`first_sync_creates_named_licences_then_nothing`] with the given options (also run with `bulk_read = "report"`, `report_reads`).
pub(crate) fn first_sync_with(o: &estate::ConfigOptions) {
    let env = Env::new(o);
    let out = env.run(&["-o", "json", "sync"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let all = halo_licences(&env);
    let contoso = subscriptions(&env, "Contoso Ltd");
    for sub in &contoso {
        let id = sub["id"].as_str().unwrap();
        let found = licence_for(&all, id);
        if sub["offerName"]
            .as_str()
            .is_some_and(|n| n.contains("Azure plan"))
        {
            assert!(
                found.is_empty(),
                "the Azure plan is billing's, not a licence"
            );
            continue;
        }
        assert_eq!(found.len(), 1, "one licence for subscription {id}");
        let l = found[0];
        assert_eq!(l["count"], sub["quantity"]);
        assert_eq!(l["client_id"], 101);
        assert_eq!(l["manufacturer"], "Microsoft");
        assert_eq!(l["status"], "Active");
    }
    let spb: Vec<&Value> = all
        .iter()
        .filter(|l| l["product_sku"] == "SPB" && l["client_id"] == 101)
        .collect();
    assert_eq!(
        spb.len(),
        2,
        "Business Premium is bought in two subscriptions"
    );
    // Annual and monthly: each name carries its term, so the two can be told apart (issue 19).
    let mut names: Vec<&str> = spb.iter().map(|l| l["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "Microsoft 365 Business Premium (annual)",
            "Microsoft 365 Business Premium (monthly)"
        ]
    );
    // The SKU's 7 assigned seats are spread over its subscriptions, adding up to the SKU's total.
    let in_use: i64 = spb
        .iter()
        .map(|l| l["licences_in_use"].as_i64().unwrap())
        .sum();
    assert_eq!(in_use, 7);
    // Fabrikam's licence made by Halo's own integration is adopted, not duplicated.
    let fabrikam: Vec<&Value> = all.iter().filter(|l| l["client_id"] == 102).collect();
    assert_eq!(fabrikam.len(), 1, "{fabrikam:?}");
    assert_eq!(fabrikam[0]["id"], 301);
    assert!(
        fabrikam[0]["third_party_product"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    // The free viral SKU is excluded.
    assert!(!all.iter().any(|l| l["product_sku"] == "FLOW_FREE"));

    let writes = env.halo_posts();
    let again = env.run(&["-o", "json", "sync"]);
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(env.halo_posts(), writes, "a second sync wrote to Halo");
}

#[test]
fn quantity_change_and_cancellation_are_reflected_and_nothing_is_deleted() {
    changes_with(&licences_only(false));
}

/// [`quantity_change_and_cancellation_are_reflected_and_nothing_is_deleted`] with the given options (also run with `bulk_read = "report"`, `report_reads`).
pub(crate) fn changes_with(o: &estate::ConfigOptions) {
    let env = Env::new(o);
    assert_eq!(env.run(&["sync"]).status.code(), Some(0));
    let subs = subscriptions(&env, "Contoso Ltd");
    let exchange = subs
        .iter()
        .find(|s| {
            s["offerName"]
                .as_str()
                .is_some_and(|n| n.contains("Exchange"))
        })
        .unwrap()
        .clone();
    let premium = subs
        .iter()
        .find(|s| s["termDuration"] == "P1Y")
        .unwrap()
        .clone();
    let mut more = premium.clone();
    more["quantity"] = Value::from(12);
    let mut cancelled = exchange.clone();
    cancelled["status"] = Value::from("deleted");
    env.em.with_state(|s| {
        s.set_subscription("Contoso Ltd", more);
        s.set_subscription("Contoso Ltd", cancelled);
    });
    env.em.clear_requests();
    let out = env.run(&["-o", "json", "sync"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let all = halo_licences(&env);
    assert_eq!(
        licence_for(&all, premium["id"].as_str().unwrap())[0]["count"],
        12
    );
    assert_eq!(
        licence_for(&all, exchange["id"].as_str().unwrap())[0]["status"],
        "Deleted"
    );
    let reqs = env.em.requests();
    assert!(
        !reqs.iter().any(|r| r.method == "DELETE"),
        "csp-sync never deletes"
    );
    let posts: Vec<_> = reqs
        .iter()
        .filter(|r| r.api == Api::Halo && r.method == "POST" && r.path == "/api/SoftwareLicence")
        .collect();
    assert_eq!(posts.len(), 1, "both updates travel in one batch");
    let body = posts[0].body.as_ref().unwrap().as_array().unwrap();
    assert_eq!(body.len(), 2);
    assert!(
        body.iter().all(|r| r["id"].is_i64()),
        "ids are integers: {body:?}"
    );
}

#[test]
fn with_app_only_credentials_counts_come_from_graph() {
    let env = Env::new(&licences_only(true));
    let out = env.run(&["-o", "json", "diff"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let seats = plan["seats"].as_array().unwrap();
    assert!(!seats.is_empty());
    assert!(
        seats.iter().all(|r| r["usage_source"] == "graph"),
        "{seats:?}"
    );
    let reqs = env.em.requests();
    assert!(!reqs.iter().any(|r| r.path.ends_with("/subscribedskus")));
    assert!(
        reqs.iter()
            .any(|r| r.api == Api::Graph && r.path.ends_with("/subscribedSkus"))
    );
}
