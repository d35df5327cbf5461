//! The assets module against the emulator: Intune devices -> Halo assets (list-schema reads).

use std::process::Output;

use serde_json::Value;

use crate::estate::ConfigOptions;
use crate::support::{self, Env, text};

/// Contoso and Fabrikam have Intune (3 devices each), Litware has none.
fn opts() -> ConfigOptions {
    ConfigOptions {
        modules: vec!["users", "assets"],
        extra: vec![(
            "[assets]",
            "asset_types = { windows = 1, ios = 3, default = 1 }\n\
             fields = { serialNumber = 2, model = 3, complianceState = 4, lastSyncDateTime = 5 }\n\
             stale_after_days = 30"
                .into(),
        )],
        ..support::clean()
    }
}

fn run_ok(env: &Env, at: &str, args: &[&str]) -> Output {
    let out = env.run_at(at, args);
    assert!(
        out.status.success(),
        "csp-sync {args:?} failed: {}\n{}",
        text(&out.stderr),
        text(&out.stdout)
    );
    out
}

fn assets(env: &Env) -> Vec<Value> {
    env.em.with_state(|s| s.halo_records("Asset").clone())
}

fn devices(env: &Env, tenant: &str) -> Vec<Value> {
    env.em.with_state(|s| s.tenant_mut(tenant).devices.clone())
}

fn days_later(days: i64) -> String {
    (support::now_ts() + jiff::SignedDuration::from_hours(24 * days)).to_string()
}

fn no_deletes(env: &Env) {
    assert!(
        !env.em
            .requests()
            .iter()
            .any(|r| r.method == "DELETE" && r.path.starts_with("/api/")),
        "csp-sync deleted a Halo record"
    );
}

#[test]
fn first_sync_creates_linked_assets_and_a_second_sync_writes_nothing() {
    let env = Env::new(&opts());
    let now = support::now();
    run_ok(&env, &now, &["sync", "users"]);
    let out = run_ok(&env, &now, &["-o", "json", "sync"]);
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let all = assets(&env);
    assert_eq!(all.len(), 6, "one asset per Intune device: {all:#?}");
    for tenant in ["Contoso Ltd", "Fabrikam Inc"] {
        for d in devices(&env, tenant) {
            let id = d["id"].as_str().unwrap();
            let a = all
                .iter()
                .find(|a| a["intune_id"] == id)
                .unwrap_or_else(|| panic!("no asset for device {id}"));
            assert_eq!(a["inventory_number"], d["deviceName"]);
            let want_type = if d["operatingSystem"] == "iOS" { 3 } else { 1 };
            assert_eq!(a["assettype_id"], want_type);
            let serial = a["fields"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["id"] == 2)
                .unwrap();
            assert_eq!(serial["value"], d["serialNumber"]);
            let user = env.em.with_state(|s| {
                s.halo_records("Users")
                    .iter()
                    .find(|u| u["azureoid"] == d["userId"])
                    .cloned()
                    .unwrap()
            });
            assert_eq!(a["users"], serde_json::json!([{"id": user["id"]}]));
            assert_eq!(a["azure_userprincipalname"], d["userPrincipalName"]);
        }
    }
    // A tenant without Intune is a note, not an error; the device summary is in the plan.
    let litware = plan["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "Litware Inc")
        .unwrap();
    assert!(litware["errors"].as_array().unwrap().is_empty());
    assert!(text(litware["notes"].to_string().as_bytes()).contains("no Intune"));
    assert_eq!(plan["devices"].as_array().unwrap().len(), 2);

    let writes = env.halo_posts();
    let out = run_ok(&env, &now, &["-o", "json", "sync"]);
    assert_eq!(
        env.halo_posts(),
        writes,
        "the second sync wrote to Halo: {}",
        text(&out.stdout)
    );
    no_deletes(&env);
}

#[test]
fn a_removed_device_goes_inactive_only_after_the_stale_period_and_comes_back_active() {
    let env = Env::new(&opts());
    let now = support::now();
    run_ok(&env, &now, &["sync", "users"]);
    run_ok(&env, &now, &["sync"]);
    let gone = env
        .em
        .with_state(|s| s.tenant_mut("Contoso Ltd").devices.remove(0));
    let gone_id = gone["id"].as_str().unwrap().to_string();
    let asset = |env: &Env| {
        assets(env)
            .into_iter()
            .find(|a| a["intune_id"] == gone_id.as_str())
            .unwrap()
    };
    run_ok(&env, &days_later(29), &["sync"]);
    assert_eq!(
        asset(&env)["inactive"],
        false,
        "made inactive inside stale_after_days"
    );
    run_ok(&env, &days_later(31), &["sync"]);
    assert_eq!(
        asset(&env)["inactive"],
        true,
        "not made inactive after stale_after_days"
    );
    assert_eq!(assets(&env).len(), 6, "an asset was deleted or duplicated");
    env.em
        .with_state(|s| s.tenant_mut("Contoso Ltd").devices.push(gone.clone()));
    let out = run_ok(&env, &days_later(32), &["-o", "json", "sync"]);
    assert_eq!(asset(&env)["inactive"], false, "{}", text(&out.stdout));
    assert_eq!(assets(&env).len(), 6);
    no_deletes(&env);
}

#[test]
fn an_imported_asset_is_adopted_and_a_technicians_user_is_never_dropped() {
    let env = Env::new(&opts());
    let now = support::now();
    run_ok(&env, &now, &["sync", "users"]);
    let contoso = devices(&env, "Contoso Ltd");
    // Halo's own Intune import made two of the assets: one with a user a technician chose, one with none.
    env.em.with_state(|s| {
        let recs = s.halo_records_mut("Asset");
        for (id, d, users) in [
            (501, &contoso[0], serde_json::json!([{"id": 1003}])),
            (502, &contoso[1], serde_json::json!([])),
        ] {
            recs.push(serde_json::json!({
                "id": id, "inventory_number": d["deviceName"], "client_id": 101, "site_id": 201,
                "assettype_id": 1, "inactive": false, "intune_id": d["id"], "fields": [], "users": users
            }));
        }
    });
    let out = run_ok(&env, &now, &["-o", "json", "sync"]);
    let all = assets(&env);
    assert_eq!(all.len(), 6, "an imported asset was duplicated");
    let by_id = |id: i64| all.iter().find(|a| a["id"] == id).unwrap().clone();
    assert_eq!(
        by_id(501)["users"],
        serde_json::json!([{"id": 1003}]),
        "a technician's user was dropped"
    );
    let linked = env.em.with_state(|s| {
        s.halo_records("Users")
            .iter()
            .find(|u| u["azureoid"] == contoso[1]["userId"])
            .unwrap()["id"]
            .clone()
    });
    assert_eq!(by_id(502)["users"], serde_json::json!([{"id": linked}]));
    assert!(text(&out.stdout).contains("lists users csp-sync did not set"));
    no_deletes(&env);
}

/// Issue 15: a first sync creates the contacts and the assets together, so it cannot link them yet; the next
/// sync links every asset csp-sync created without reading any asset by id (it knows it wrote no user
/// there), and the one after that writes nothing.
#[test]
fn the_sync_after_the_first_links_the_assets_it_created_without_reading_them() {
    let env = Env::new(&opts());
    let now = support::now();
    run_ok(&env, &now, &["sync"]);
    let unlinked = assets(&env)
        .iter()
        .filter(|a| a["users"].as_array().is_none_or(Vec::is_empty))
        .count();
    assert!(
        unlinked > 0,
        "the first sync linked every asset already: the test proves nothing"
    );
    env.em.clear_requests();
    let out = run_ok(&env, &now, &["-o", "json", "sync"]);
    let by_id: Vec<String> = env
        .em
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.to_lowercase().starts_with("/api/asset/"))
        .map(|r| r.path.clone())
        .collect();
    assert!(by_id.is_empty(), "assets read one by one: {by_id:?}");
    for tenant in ["Contoso Ltd", "Fabrikam Inc"] {
        for d in devices(&env, tenant) {
            let a = assets(&env)
                .into_iter()
                .find(|a| a["intune_id"] == d["id"])
                .unwrap();
            let user = env.em.with_state(|s| {
                s.halo_records("Users")
                    .iter()
                    .find(|u| u["azureoid"] == d["userId"])
                    .map(|u| u["id"].clone())
            });
            if let Some(user) = user {
                assert_eq!(
                    a["users"],
                    serde_json::json!([{"id": user}]),
                    "{}",
                    text(&out.stdout)
                );
            }
        }
    }
    let writes = env.halo_posts();
    run_ok(&env, &now, &["sync"]);
    assert_eq!(env.halo_posts(), writes, "the third sync wrote to Halo");
    no_deletes(&env);
}
