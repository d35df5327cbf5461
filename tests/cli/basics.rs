//! Tenants list, first and second sync, exit codes, secrets, config errors.

use crate::estate;

use crate::support::{Env, clean, text};
use csp_sync_emulator::Api;

#[test]
fn tenants_list_reads_every_page() {
    let env = Env::new(&estate::ConfigOptions::default());
    let out = env.run(&["-o", "json", "tenants", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], 1);
    let tenants = v["tenants"].as_array().unwrap();
    assert_eq!(tenants.len(), 6);
    let pages = env
        .em
        .requests()
        .iter()
        .filter(|r| r.api == Api::PartnerCenter && r.path.ends_with("/customers"))
        .count();
    assert!(pages >= 3, "customers read in {pages} pages");
    let contoso = tenants
        .iter()
        .find(|t| t["company_name"] == "Contoso Ltd")
        .unwrap();
    assert_eq!(contoso["mapping"], "mapped");
    assert_eq!(contoso["halo_client_name"], "Contoso Limited");
    let unmapped = env.run(&["-o", "json", "tenants", "list", "--unmapped"]);
    let v: serde_json::Value = serde_json::from_slice(&unmapped.stdout).unwrap();
    assert_eq!(v["tenants"].as_array().unwrap().len(), 2);
}

#[test]
fn sync_then_resync_makes_no_writes_and_diff_exit_codes() {
    let env = Env::new(&clean());
    let diff = env.run(&["-o", "json", "diff", "--detailed-exitcode"]);
    assert_eq!(diff.status.code(), Some(2), "{}", text(&diff.stderr));
    assert_eq!(env.halo_posts(), 0, "diff wrote to Halo");
    let plan: serde_json::Value = serde_json::from_slice(&diff.stdout).unwrap();
    assert!(plan["summary"]["create"].as_u64().unwrap() > 0);

    let sync = env.run(&["-o", "json", "sync"]);
    assert_eq!(sync.status.code(), Some(0), "{}", text(&sync.stderr));
    let first = env.halo_posts();
    assert!(first > 0);
    // The linked hand-made contact was not duplicated.
    let contoso_users = env.em.with_state(|s| {
        s.halo_records("Users")
            .iter()
            .filter(|u| {
                u["emailaddress"]
                    .as_str()
                    .is_some_and(|e| e.eq_ignore_ascii_case("alice.smith@contoso.co.uk"))
            })
            .count()
    });
    assert_eq!(contoso_users, 1);

    let again = env.run(&["-o", "json", "sync"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert_eq!(env.halo_posts(), first, "a second sync wrote to Halo");
    let diff = env.run(&["-o", "json", "diff", "--detailed-exitcode"]);
    assert_eq!(diff.status.code(), Some(0), "{}", text(&diff.stdout));
}

#[test]
fn no_secret_in_output_at_the_highest_verbosity() {
    let env = Env::new(&estate::ConfigOptions::default());
    let out = env.run(&["-vvv", "-o", "json", "diff"]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    let sc = env.em.scenario();
    for secret in [
        sc.partner_center_app.client_secret.as_str(),
        sc.partner_center_app.refresh_token.as_str(),
        sc.graph_app.client_secret.as_str(),
        sc.halo_app.client_secret.as_str(),
    ] {
        assert!(!all.contains(secret), "a secret appeared in the output");
    }
    assert!(!all.to_lowercase().contains("authorization: bearer"));
    assert!(!all.contains("access_token\":\""));
}

#[test]
fn bad_config_names_file_line_and_key_and_exits_1() {
    let env = Env::new(&estate::ConfigOptions::default());
    let path = env.dir.path().join("csp-sync.toml");
    let original = std::fs::read_to_string(&path).unwrap();
    for (bad, key) in [
        (
            original.replacen("[graph]\n", "[graph]\nclient_secret = \"x\"\n", 1),
            "client_secret",
        ),
        (
            original.replacen("[graph]\n", "[graph]\nfrobnicate = 1\n", 1),
            "frobnicate",
        ),
        (
            original.replacen("client_id = \"", "client_id = \"not-a-guid", 1),
            "client_id",
        ),
        // The first [[tenant]] entry appended again: one customer mapped twice.
        (
            format!("{original}\n{}", first_tenant(&original)),
            "customer_id",
        ),
        // A required key missing.
        (
            remove_line(&original, "tenant_id = "),
            "partner_center.tenant_id",
        ),
    ] {
        std::fs::write(&path, &bad).unwrap();
        let out = env.run(&["diff"]);
        assert_eq!(out.status.code(), Some(1));
        let err = text(&out.stderr);
        assert!(err.contains("csp-sync.toml:"), "{err}");
        assert!(err.contains(key), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    assert_eq!(env.halo_posts(), 0);
}

fn first_tenant(config: &str) -> String {
    let start = config.find("[[tenant]]").expect("a [[tenant]] entry");
    let rest = &config[start..];
    let end = rest[1..].find("[[tenant]]").map_or(rest.len(), |e| e + 1);
    rest[..end].to_string()
}

fn remove_line(config: &str, prefix: &str) -> String {
    let mut removed = false;
    config
        .lines()
        .filter(|l| {
            let drop = !removed && l.starts_with(prefix);
            removed |= drop;
            !drop
        })
        .fold(String::new(), |mut out, l| {
            out.push_str(l);
            out.push('\n');
            out
        })
}

#[test]
fn usage_errors_exit_1() {
    let env = Env::new(&estate::ConfigOptions::default());
    let out = env.run(&["sync", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(1));
    let out = env.run(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn tenant_filter_by_name_or_id() {
    let env = Env::new(&clean());
    let out = env.run(&["-o", "json", "diff", "--tenant", "fabrikam inc"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = plan["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["Fabrikam Inc"]);
    let id = env
        .em
        .scenario()
        .customer_named("Litware Inc")
        .unwrap()
        .tenant_id
        .clone();
    let out = env.run(&["-o", "json", "diff", "--tenant", &id]);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["tenants"][0]["customer_id"], id.as_str());
    assert_eq!(plan["tenants"].as_array().unwrap().len(), 1);
    let out = env.run(&["diff", "--tenant", "Nobody Ltd"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Nobody Ltd"),
        "{}",
        text(&out.stderr)
    );
}
