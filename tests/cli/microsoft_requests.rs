//! What a run costs Microsoft, counted in the emulator's request log (issue 15): per mapped tenant, Graph
//! is read in ONE HTTP request (a `$batch` of the users read, `subscribedSkus`, `directory/subscriptions`
//! and the first devices page) on a first sync and in the steady state; Partner Center is read once for
//! the customers (its pages) and once per tenant for the subscriptions, seat counts coming from Graph.

use csp_sync_emulator::{Api, Fault, FaultKind, RequestRecord, Scenario};
use serde_json::Value;

use crate::estate::ConfigOptions;
use crate::support::{self, Env, text};

/// Users, licences and assets on the three cleanly consented tenants.
fn opts() -> ConfigOptions {
    ConfigOptions {
        modules: vec!["users", "licences", "assets"],
        extra: vec![(
            "[assets]",
            "asset_types = { windows = 1, ios = 3, default = 1 }".into(),
        )],
        ..support::clean()
    }
}

/// The small estate with device pages large enough for one page per tenant (3 devices at most).
fn scenario() -> Scenario {
    let mut s = support::small();
    s.settings.graph_device_page_size = 100;
    s
}

fn tenants(env: &Env) -> Vec<String> {
    let sc = env.em.scenario();
    ["Contoso Ltd", "Fabrikam Inc", "Litware Inc"]
        .iter()
        .map(|n| sc.customer_named(n).unwrap().tenant_id.clone())
        .collect()
}

fn sync(env: &Env) -> Value {
    let out = env.run(&["-o", "json", "sync"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn http(env: &Env, api: Api) -> Vec<RequestRecord> {
    env.em
        .http_requests()
        .into_iter()
        .filter(|r| r.api == api)
        .collect()
}

/// The urls of the items of each Graph `$batch` sent, in order.
fn batches(env: &Env) -> Vec<Vec<String>> {
    http(env, Api::Graph)
        .iter()
        .filter(|r| r.path == "/v1.0/$batch")
        .map(|r| {
            r.body.as_ref().unwrap()["requests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["url"].as_str().unwrap().to_string())
                .collect()
        })
        .collect()
}

/// Partner Center: the customers pages (the small estate's page size is 2: 3 pages for its 5 customers)
/// and one subscriptions call per tenant; never `subscribedskus`.
fn assert_partner_center_once_per_tenant(env: &Env) {
    let pc = http(env, Api::PartnerCenter);
    let customers = pc.iter().filter(|r| r.path == "/v1/customers").count();
    let subscriptions = pc
        .iter()
        .filter(|r| r.path.ends_with("/subscriptions"))
        .count();
    assert_eq!(customers, 3, "{pc:?}");
    assert_eq!(subscriptions, 3, "{pc:?}");
    assert_eq!(pc.len(), customers + subscriptions, "{pc:?}");
}

#[test]
fn each_tenant_costs_one_graph_request_and_one_partner_center_call_first_and_steady() {
    let env = Env::with(scenario(), &opts());
    let n = tenants(&env).len();

    // First sync: the `latest` delta link (taken first: the full read depends on it), every user with
    // `$top=999` (one page here), the seat counts, the subscriptions join and the devices, in one batch.
    let first = sync(&env);
    assert_eq!(first["summary"]["errors"], 0, "{}", first["summary"]);
    let graph = http(&env, Api::Graph);
    assert_eq!(graph.len(), n, "one Graph request per tenant: {graph:?}");
    for items in batches(&env) {
        assert_eq!(items.len(), 5, "{items:?}");
        assert!(items[0].starts_with("/users/delta?") && items[0].contains("$deltatoken=latest"));
        assert!(items[1].starts_with("/users?") && items[1].contains("$top=999"));
        assert_eq!(items[2], "/subscribedSkus");
        assert_eq!(items[3], "/directory/subscriptions");
        assert!(items[4].starts_with("/deviceManagement/managedDevices?"));
    }
    let depends: Vec<Value> = http(&env, Api::Graph)
        .iter()
        .map(|r| r.body.as_ref().unwrap()["requests"][1]["dependsOn"].clone())
        .collect();
    assert!(
        depends.iter().all(|d| d == &serde_json::json!(["latest"])),
        "{depends:?}"
    );
    assert_partner_center_once_per_tenant(&env);
    // Token requests: at most one per tenant plus the partner's (Partner Center).
    let logins = http(&env, Api::Login).len();
    assert!(logins <= n + 1, "{logins} token requests");

    // The second sync links the new assets to the contacts the first one created; then nothing is left.
    sync(&env);
    // Steady state: the stored delta round, the seat counts, the join and the devices, in one batch.
    env.em.clear_requests();
    let steady = sync(&env);
    assert_eq!(steady["summary"]["create"], 0, "{}", steady["summary"]);
    assert_eq!(
        env.halo_posts(),
        0,
        "the steady state wrote to Halo: {steady}"
    );
    let graph = http(&env, Api::Graph);
    assert_eq!(graph.len(), n, "one Graph request per tenant: {graph:?}");
    for items in batches(&env) {
        assert_eq!(items.len(), 4, "{items:?}");
        assert!(
            items[0].starts_with("/users/delta?$deltatoken="),
            "{items:?}"
        );
        assert!(!items[0].contains("latest"));
    }
    assert_partner_center_once_per_tenant(&env);
    // Seat counts came from Graph.
    assert!(
        steady["seats"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["usage_source"] == "graph"),
        "{}",
        steady["seats"]
    );
}

#[test]
fn a_throttled_item_or_an_expired_delta_link_costs_only_the_requests_it_needs() {
    let env = Env::with(scenario(), &opts());
    let n = tenants(&env).len();
    sync(&env);
    let want = env.em.with_state(|s| s.halo_records("Users").clone());

    // One delta item answered 429 with its own Retry-After: that item alone goes again, in a new batch.
    env.em.clear_requests();
    env.em.inject(Fault::new(
        Api::Graph,
        "/users/delta",
        FaultKind::TooManyRequests {
            retry_after: Some("0.5".into()),
        },
    ));
    sync(&env);
    let sizes: Vec<usize> = batches(&env).iter().map(Vec::len).collect();
    assert_eq!(sizes.len(), n + 1, "{sizes:?}");
    assert_eq!(sizes.iter().filter(|s| **s == 1).count(), 1, "{sizes:?}");
    let items = env.em.requests();
    assert!(items.iter().any(|r| r.batch.is_some() && r.status == 429));

    // Every delta link refused (expired after 7 days): each tenant's batch, then a `latest` link and the
    // full read outside it; nobody is deactivated and Halo ends as it was.
    env.em.clear_requests();
    env.em
        .with_state(csp_sync_emulator::State::expire_delta_tokens);
    let plan = sync(&env);
    assert_eq!(plan["summary"]["deactivate"], 0, "{}", plan["summary"]);
    let graph = http(&env, Api::Graph);
    assert_eq!(graph.len(), 3 * n, "{graph:?}");
    assert_eq!(
        graph
            .iter()
            .filter(|r| r.path == "/v1.0/users/delta" && r.query.contains("deltatoken=latest"))
            .count(),
        n
    );
    assert_eq!(graph.iter().filter(|r| r.path == "/v1.0/users").count(), n);
    assert_eq!(env.em.with_state(|s| s.halo_records("Users").clone()), want);
    // The next run is back to one request per tenant.
    env.em.clear_requests();
    sync(&env);
    assert_eq!(http(&env, Api::Graph).len(), n);
}

#[test]
fn partner_center_seat_counts_only_where_graph_cannot_be_read() {
    // Woodgrove Bank is mapped but its Graph token is refused (AADSTS65001).
    let env = Env::with(scenario(), &ConfigOptions::default());
    let out = env.run(&["-o", "json", "diff"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let wg = env
        .em
        .scenario()
        .customer_named("Woodgrove Bank")
        .unwrap()
        .tenant_id
        .clone();
    let skus: Vec<RequestRecord> = http(&env, Api::PartnerCenter)
        .into_iter()
        .filter(|r| r.path.ends_with("/subscribedskus"))
        .collect();
    assert_eq!(skus.len(), 1, "{skus:?}");
    assert!(skus[0].path.contains(&wg), "{skus:?}");
    for seat in plan["seats"].as_array().unwrap() {
        let want = if seat["customer_id"] == wg.as_str() {
            "partner_center"
        } else {
            "graph"
        };
        assert_eq!(seat["usage_source"], want, "{seat}");
    }
}
