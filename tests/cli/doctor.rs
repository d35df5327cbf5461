//! `csp-sync doctor` against the emulator: a fully set-up estate is all OK; each missing piece (a Graph
//! consent, a GDAP role, the Halo secret, a refresh token) is named with its fix.

use std::fmt::Write as _;
use std::process::Output;

use csp_sync_emulator::Scenario;
use serde_json::{Value, json};

use crate::estate::{self, ConfigOptions};
use crate::support::{self, Env, text};

const LICENSE_ADMINISTRATOR: &str = "4d6ac14f-3453-41d0-bef9-a3e0c569773a";
/// The roles that let the users module read (reference 3.10), and Global Administrator.
const USER_READ_ROLES: &[&str] = &[
    "88d8e3e3-8f55-4a1e-953a-9b9898b8876b",
    "f2ef992c-3afb-46b9-b7cf-a126ee74c451",
    "fe930be7-5e62-47db-91af-98c3a49a38b1",
    "62e90394-69f5-4237-9190-012177145e10",
];

/// The small estate with every gap closed: Woodgrove Bank consented, Litware's relationship renewed with
/// License Administrator added.
fn set_up() -> Scenario {
    let mut sc = support::small();
    sc.set_consent("Woodgrove Bank", true);
    sc.set_gdap_active("Litware Inc", true);
    for r in &mut sc.tenant_mut("Litware Inc").gdap {
        r["autoExtendDuration"] = json!("P180D");
        r["accessDetails"]["unifiedRoles"]
            .as_array_mut()
            .unwrap()
            .push(json!({"roleDefinitionId": LICENSE_ADMINISTRATOR}));
    }
    sc
}

/// An environment whose config also lists the unmapped customers as `skip = true`.
fn env_with(scenario: Scenario, opts: &ConfigOptions) -> Env {
    let env = Env::with(scenario, opts);
    let path = env.dir.path().join("csp-sync.toml");
    let mut config = std::fs::read_to_string(&path).unwrap();
    for c in &env.em.scenario().customers {
        if c.halo_client_id.is_none() {
            let _ = write!(
                config,
                "[[tenant]]\ncustomer_id = \"{}\"\nname = \"{}\"\nskip = true\n\n",
                c.tenant_id, c.name
            );
        }
    }
    std::fs::write(&path, config).unwrap();
    env
}

/// `doctor -o json` with the secret environment, some variables replaced or removed.
fn doctor(env: &Env, set: &[(&str, &str)], remove: &[&str]) -> (Output, Value) {
    let mut cmd = assert_cmd::Command::cargo_bin("csp-sync").unwrap();
    cmd.current_dir(env.dir.path())
        .env_remove("CSP_SYNC_CONFIG")
        .env("CSP_SYNC_NOW", support::now())
        .args(["-o", "json", "doctor"]);
    for (k, v) in estate::secret_env(&env.em) {
        if !remove.contains(&k.as_str()) {
            cmd.env(k, v);
        }
    }
    for k in remove {
        cmd.env_remove(k);
    }
    for (k, v) in set {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", text(&out.stdout), text(&out.stderr)));
    (out, v)
}

fn checks(v: &Value) -> &Vec<Value> {
    v["checks"].as_array().unwrap()
}

/// The one check named `name`.
fn check<'a>(v: &'a Value, name: &str) -> &'a Value {
    let found: Vec<&Value> = checks(v).iter().filter(|c| c["check"] == name).collect();
    assert_eq!(found.len(), 1, "{name}: {found:?}\n{v}");
    found[0]
}

fn not_ok(v: &Value) -> Vec<String> {
    checks(v)
        .iter()
        .filter(|c| c["status"] != "ok")
        .map(ToString::to_string)
        .collect()
}

#[test]
fn a_fully_set_up_estate_is_all_ok_in_set_up_order() {
    let env = env_with(set_up(), &ConfigOptions::default());
    let (out, v) = doctor(&env, &[], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(v["version"], 1);
    assert_eq!(v["ok"], true);
    assert!(not_ok(&v).is_empty(), "{:#?}", not_ok(&v));
    // Set-up order: each step's checks together, the steps in the order of the README's checklist.
    let steps: Vec<&str> = checks(&v)
        .iter()
        .map(|c| c["step"].as_str().unwrap())
        .collect();
    let mut order: Vec<&str> = steps.clone();
    order.dedup();
    assert_eq!(
        order,
        [
            "config",
            "partner_center",
            "refresh_tokens",
            "graph",
            "gdap",
            "halo",
            "state"
        ],
        "{steps:?}"
    );
    for name in [
        "Graph in Woodgrove Bank",
        "GDAP roles in Litware Inc",
        "Halo",
        "read Users",
        "read SoftwareLicence",
        "state directory",
    ] {
        assert_eq!(check(&v, name)["status"], "ok", "{name}");
    }
    assert!(
        text(&out.stderr).contains("0 failed, 0 warnings"),
        "{}",
        text(&out.stderr)
    );
    // The table says the same.
    let out = env.run(&["-o", "table", "doctor"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        !text(&out.stdout).contains("FAILED"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_missing_graph_consent_names_the_consent_command() {
    let mut sc = set_up();
    sc.set_consent("Woodgrove Bank", false);
    let env = env_with(sc, &ConfigOptions::default());
    let woodgrove = env
        .em
        .scenario()
        .customer_named("Woodgrove Bank")
        .unwrap()
        .tenant_id
        .clone();
    let (out, v) = doctor(&env, &[], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(v["ok"], false);
    let c = check(&v, "Graph in Woodgrove Bank");
    assert_eq!(c["status"], "fail", "{c}");
    assert!(c["detail"].as_str().unwrap().contains("AADSTS65001"), "{c}");
    assert_eq!(
        c["command"],
        format!("csp-sync tenants consent --tenant {woodgrove}"),
        "{c}"
    );
    // Nothing else fails.
    assert_eq!(v["failed"], 1, "{:#?}", not_ok(&v));
}

#[test]
fn a_missing_gdap_role_fails_with_delegated_access_and_says_where_to_add_it() {
    let mut sc = set_up();
    for role in USER_READ_ROLES {
        sc.remove_gdap_role("Contoso Ltd", role);
    }
    sc.remove_gdap_role("Fabrikam Inc", LICENSE_ADMINISTRATOR);
    let opts = ConfigOptions {
        graph_auth: "delegated",
        ..ConfigOptions::default()
    };
    let env = env_with(sc, &opts);
    let (out, v) = doctor(&env, &[], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let contoso: Vec<&Value> = checks(&v)
        .iter()
        .filter(|c| c["check"] == "GDAP roles in Contoso Ltd")
        .collect();
    let fail = contoso
        .iter()
        .find(|c| c["status"] == "fail")
        .unwrap_or_else(|| panic!("{contoso:?}"));
    assert!(
        fail["detail"]
            .as_str()
            .unwrap()
            .contains("no GDAP role for users"),
        "{fail}"
    );
    let fix = fail["fix"].as_str().unwrap();
    assert!(
        fix.contains("Customers > Contoso Ltd > Admin relationships"),
        "{fix}"
    );
    // A recommended role missing is a warning naming the role.
    let fabrikam = check(&v, "GDAP roles in Fabrikam Inc");
    assert_eq!(fabrikam["status"], "warn", "{fabrikam}");
    assert!(
        fabrikam["fix"]
            .as_str()
            .unwrap()
            .contains("add License Administrator"),
        "{fabrikam}"
    );
}

#[test]
fn a_wrong_halo_secret_names_the_variable_it_came_from() {
    let env = env_with(set_up(), &ConfigOptions::default());
    let (out, v) = doctor(
        &env,
        &[("CSP_SYNC_HALO_CLIENT_SECRET", "not-the-secret")],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let c = check(&v, "Halo");
    assert_eq!(c["status"], "fail", "{c}");
    // The secret came from CSP_SYNC_HALO_CLIENT_SECRET, which `auth set halo` could not override.
    assert!(c["command"].is_null(), "{c}");
    assert!(
        c["fix"]
            .as_str()
            .unwrap()
            .contains("set CSP_SYNC_HALO_CLIENT_SECRET to the current"),
        "{c}"
    );
    // Halo's reads are not tried without a token; everything before Halo is fine.
    assert!(
        !checks(&v).iter().any(|c| c["check"] == "read Users"),
        "{v}"
    );
    assert_eq!(v["failed"], 1, "{:#?}", not_ok(&v));
    assert!(!text(&out.stdout).contains("not-the-secret"));
    assert!(!text(&out.stderr).contains("not-the-secret"));
}

#[test]
fn a_missing_refresh_token_names_auth_login() {
    // Delegated Graph needs its refresh token: a failure.
    let opts = ConfigOptions {
        graph_auth: "delegated",
        ..ConfigOptions::default()
    };
    let env = env_with(set_up(), &opts);
    let (out, v) = doctor(&env, &[], &["CSP_SYNC_GRAPH_REFRESH_TOKEN"]);
    assert_eq!(out.status.code(), Some(1));
    let c = check(&v, "Graph (partner user)");
    assert_eq!(c["status"], "fail", "{c}");
    assert_eq!(c["command"], "csp-sync auth login graph", "{c}");

    // With app auth the Partner Center refresh token is optional: a warning, exit 0.
    let env = env_with(set_up(), &ConfigOptions::default());
    let (out, v) = doctor(&env, &[], &["CSP_SYNC_PARTNER_CENTER_REFRESH_TOKEN"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let c = check(&v, "Partner Center refresh token");
    assert_eq!(c["status"], "warn", "{c}");
    assert_eq!(c["command"], "csp-sync auth login partner-center", "{c}");
}

#[test]
fn a_config_that_does_not_load_is_the_first_failure() {
    let env = env_with(set_up(), &ConfigOptions::default());
    let path = env.dir.path().join("csp-sync.toml");
    let config = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, config.replace("[sync]", "[sync]\nbogus_key = 1")).unwrap();
    let (out, v) = doctor(&env, &[], &[]);
    assert_eq!(out.status.code(), Some(1));
    let c = check(&v, "config file");
    assert_eq!(c["status"], "fail", "{c}");
    assert!(c["detail"].as_str().unwrap().contains("bogus_key"), "{c}");
}

#[test]
fn auth_check_tries_the_graph_secret_and_refresh_token_without_tenants() {
    let env = env_with(set_up(), &ConfigOptions::default());
    let out = env.run(&["-o", "json", "auth", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["credential"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "Partner Center (app)",
            "Partner Center (app+user)",
            "Graph (app)",
            "Graph (partner user)",
            "Halo"
        ]
    );
    // A wrong Graph secret is found without --tenants.
    let (out, v) = doctor(&env, &[("CSP_SYNC_GRAPH_CLIENT_SECRET", "wrong")], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(check(&v, "Graph (app)")["status"], "fail");
    let graph = check(&v, "Graph (app)");
    assert!(graph["command"].is_null(), "{graph}");
    assert!(
        graph["fix"]
            .as_str()
            .unwrap()
            .contains("set CSP_SYNC_GRAPH_CLIENT_SECRET to the current"),
        "{graph}"
    );
}
