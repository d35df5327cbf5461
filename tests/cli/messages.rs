//! What csp-sync says when something is off (issue 19): each message names the cause, the key or variable,
//! and the command that fixes it; each flag either works or says why not. Snapshots of stderr (and of
//! stdout where it carries the message), with the test directory, ports, times and request ids replaced.

use csp_sync_emulator::{Api, Fault, FaultKind};
use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::estate::{self, ConfigOptions};
use crate::support::{self, Env, text};

const CONTOSO: &str = "c0a7b1d2-3e4f-4a5b-8c6d-7e8f9a0b1c2d";
const FABRIKAM: &str = "f4b1c2d3-8e7a-4c6b-9d5e-2a3b4c5d6e7f";
const NORTHWIND: &str = "a1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b";
const TAILSPIN: &str = "d7e8f9a0-1b2c-4d3e-8f4a-5b6c7d8e9f01";

fn snapshot(env: &Env, name: &str, value: &str) {
    let dir = env.dir.path().display().to_string();
    let value = value.replace(&dir, "[dir]");
    insta::with_settings!({
        filters => vec![
            (r"127\.0\.0\.1:\d+", "127.0.0.1:[port]"),
            (r#""(client-)?request-id":"[^"]*""#, r#""${1}request-id":"[id]""#),
            (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z?", "[time]"),
            (r"\d{4}-\d{2}-\d{2}", "[date]"),
            (r"\d+ Halo requests?", "[n] Halo requests"),
        ],
        prepend_module_to_snapshot => false,
        snapshot_path => "snapshots/messages",
    }, {
        insta::assert_snapshot!(name, value);
    });
}

fn config_path(env: &Env) -> std::path::PathBuf {
    env.dir.path().join("csp-sync.toml")
}

fn append_config(env: &Env, extra: &str) {
    let path = config_path(env);
    let mut body = std::fs::read_to_string(&path).unwrap();
    body.push_str(extra);
    std::fs::write(&path, body).unwrap();
}

fn skip_entry(id: &str, name: &str) -> String {
    format!("\n[[tenant]]\ncustomer_id = \"{id}\"\nname = \"{name}\"\nskip = true\n")
}

fn error_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect()
}

#[test]
fn a_wrong_graph_secret_is_one_error_naming_the_variable_it_came_from() {
    let env = Env::new(&ConfigOptions::default());
    let out = env.run_env(
        &["-o", "json", "diff"],
        &[("CSP_SYNC_GRAPH_CLIENT_SECRET", "not-the-secret")],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let errors = error_lines(&stderr);
    assert_eq!(errors.len(), 1, "one line for the shared cause:\n{stderr}");
    let e = errors[0];
    assert!(
        e.contains("4 tenants (Contoso Ltd, Fabrikam Inc, Litware Inc, Woodgrove Bank)"),
        "{e}"
    );
    assert!(e.contains("AADSTS7000215"), "{e}");
    assert!(
        e.contains("it came from the environment variable CSP_SYNC_GRAPH_CLIENT_SECRET"),
        "{e}"
    );
    assert!(
        e.contains("set CSP_SYNC_GRAPH_CLIENT_SECRET to the current"),
        "{e}"
    );
    // `auth set` would be hidden by the variable; consent and GDAP have nothing to do with it.
    assert!(!e.contains("auth set graph"), "{e}");
    assert!(!e.contains("consent or GDAP"), "{e}");
    snapshot(&env, "wrong_graph_secret_env", &stderr);

    // From a file: the file is named, and writing it is the fix.
    let file = env.dir.path().join("graph-secret");
    std::fs::write(&file, "not-the-secret\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let mut cmd = env.command(&["-o", "json", "diff"]);
    cmd.env_remove("CSP_SYNC_GRAPH_CLIENT_SECRET")
        .env("CSP_SYNC_GRAPH_CLIENT_SECRET_FILE", &file);
    let out = cmd.output().unwrap();
    env.assert_no_leak(&["diff"], &out);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let errors = error_lines(&stderr);
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("named by CSP_SYNC_GRAPH_CLIENT_SECRET_FILE")
            && errors[0].contains("write the current Graph app client secret into"),
        "{stderr}"
    );
    snapshot(&env, "wrong_graph_secret_file", &stderr);
}

fn halo_check(out: &std::process::Output) -> Value {
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["credential"] == "Halo")
        .cloned()
        .unwrap()
}

#[test]
fn auth_check_with_halo_pointed_at_another_service_names_the_url_and_the_key() {
    // The Graph emulator's address in [halo] url: it answers JSON, but no OAuth.
    let env = Env::new(&ConfigOptions::default());
    let path = config_path(&env);
    let body = std::fs::read_to_string(&path).unwrap().replace(
        &format!("url = \"{}\"", env.em.halo_url()),
        &format!("url = \"{}\"", env.em.graph_url()),
    );
    std::fs::write(&path, body).unwrap();
    let out = env.run(&["-o", "json", "auth", "check"]);
    assert_eq!(out.status.code(), Some(1));
    let detail = halo_check(&out)["detail"].as_str().unwrap().to_string();
    assert!(
        detail.contains(&format!("{}/auth/token", env.em.graph_url())),
        "{detail}"
    );
    assert!(detail.contains("HTTP 400"), "{detail}");
    assert!(detail.contains("[halo] url"), "{detail}");
    assert!(
        !detail.contains("auth check"),
        "never `auth check` from inside it: {detail}"
    );
    snapshot(
        &env,
        "halo_url_is_graph",
        &format!("{detail}\n---\n{}", text(&out.stderr)),
    );

    // A web page where the token endpoint should be (a proxy's or a web site's HTML).
    let env = Env::new(&ConfigOptions::default());
    env.em.inject(Fault::new(
        Api::Halo,
        "/auth/token",
        FaultKind::ReplyBody(
            "<!DOCTYPE html><html><head><title>Acme IT - Home</title></head><body>Welcome</body></html>"
                .into(),
        ),
    ));
    let out = env.run(&["-o", "json", "auth", "check"]);
    assert_eq!(out.status.code(), Some(1));
    let detail = halo_check(&out)["detail"].as_str().unwrap().to_string();
    assert!(
        detail.contains("an HTML page titled \"Acme IT - Home\""),
        "{detail}"
    );
    assert!(detail.contains("[halo] url"), "{detail}");
    assert!(!detail.contains("auth check"), "{detail}");
    snapshot(&env, "halo_url_is_a_web_page", &detail);
}

#[test]
fn retry_notices_read_like_the_other_lines() {
    let env = Env::new(&ConfigOptions::default());
    env.em
        .inject(Fault::new(Api::Halo, "/api/Client", FaultKind::Status(503)));
    let out = env.run(&["-o", "json", "diff"]);
    let stderr = text(&out.stderr);
    let retries: Vec<&str> = stderr.lines().filter(|l| l.contains("retrying")).collect();
    assert_eq!(retries.len(), 1, "{stderr}");
    assert!(
        retries[0].starts_with("warning: Halo answered HTTP 503 at "),
        "{stderr}"
    );
    // No timestamp, level word or key=value fields of a raw tracing line.
    assert!(!stderr.contains(" WARN "), "{stderr}");
    assert!(!stderr.contains("wait_ms="), "{stderr}");
    snapshot(&env, "retry_notice", retries[0]);
    // -vv keeps the full tracing lines for whoever debugs.
    env.em
        .inject(Fault::new(Api::Halo, "/api/Client", FaultKind::Status(503)));
    let out = env.run(&["-vv", "-o", "json", "diff"]);
    assert!(
        text(&out.stderr).contains("wait_ms="),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn tenant_filters_say_what_they_found() {
    let env = Env::new(&ConfigOptions::default());
    append_config(&env, &skip_entry(NORTHWIND, "Northwind Traders"));
    let mut said = String::new();
    // A skipped customer: exit 0, nothing planned, and a note on how to unskip it.
    let out = env.run(&["-o", "json", "diff", "--tenant", "Northwind Traders"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["tenants"], json!([]));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("note: ") && stderr.contains("is skipped"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "tenants map --customer {NORTHWIND} --client HALO_ID"
        )),
        "{stderr}"
    );
    said.push_str(&stderr);
    // An unmapped customer, by name and by id: a pointer to `tenants map`.
    for filter in ["Tailspin Toys", TAILSPIN] {
        let out = env.run(&["-o", "json", "diff", "--tenant", filter]);
        assert_eq!(out.status.code(), Some(1), "{filter}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("not mapped to a Halo client yet"),
            "{stderr}"
        );
        assert!(stderr.contains("csp-sync tenants map"), "{stderr}");
        said.push_str(&stderr);
    }
    // A misspelt name: the near names; nothing near: where to look.
    for (filter, near) in [
        ("Contso", Some("\"Contoso Ltd\"")),
        ("fabrikam", Some("\"Fabrikam Inc\"")),
        ("Globex", None),
    ] {
        let out = env.run(&["-o", "json", "diff", "--tenant", filter]);
        assert_eq!(out.status.code(), Some(1), "{filter}");
        let stderr = text(&out.stderr);
        match near {
            Some(n) => assert!(stderr.contains(&format!("did you mean {n}")), "{stderr}"),
            None => assert!(stderr.contains("`csp-sync tenants list`"), "{stderr}"),
        }
        said.push_str(&stderr);
    }
    snapshot(&env, "tenant_filters", &said);
}

#[test]
fn allow_deactivations_says_it_cannot_lift_the_empty_source_guard() {
    let env = Env::new(&ConfigOptions {
        modules: vec!["users", "assets"],
        extra: vec![(
            "[assets]",
            "asset_types = { windows = 1, ios = 3, default = 1 }\nstale_after_days = 30".into(),
        )],
        ..support::clean()
    });
    support::run_ok(&env, &["-o", "json", "sync"]);
    env.em.with_state(|s| {
        // Fabrikam's Intune answers no device while Halo holds its synced assets.
        s.tenant_mut(FABRIKAM).devices.clear();
        support::remove_every_user(s, FABRIKAM);
    });
    // 40 days on: Fabrikam's assets are past stale_after_days (30), so their deactivations are due.
    let later = (support::now_ts() + jiff::SignedDuration::from_hours(40 * 24)).to_string();
    let out = env.run_at(&later, &["-o", "json", "sync", "--allow-deactivations"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--allow-deactivations does not override this guard"),
        "{stderr}"
    );
    assert!(
        stderr.contains("[safety] empty_source_guard = false"),
        "{stderr}"
    );
    let held: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("held back:"))
        .collect();
    // Both guards, users' and assets', say it.
    assert_eq!(held.len(), 2, "{stderr}");
    assert!(
        held.iter()
            .all(|l| l.contains("--allow-deactivations does not override this guard")),
        "{stderr}"
    );
    assert!(
        held.iter()
            .any(|l| l.contains("Intune returned no devices")),
        "{stderr}"
    );
    snapshot(
        &env,
        "empty_source_guard_with_allow_deactivations",
        &held.join("\n"),
    );
    // Without the flag the reason does not mention it.
    let out = env.run(&["-o", "json", "diff"]);
    assert!(!text(&out.stdout).contains("does not override"));
}

#[test]
fn init_writes_the_config_file_it_is_given() {
    let env = Env::new(&ConfigOptions::default());
    let before = std::fs::read_to_string(config_path(&env)).unwrap();
    let out = env.run(&["-c", "new.toml", "init"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let written = std::fs::read_to_string(env.dir.path().join("new.toml")).unwrap();
    assert!(written.contains("[partner_center]"));
    assert_eq!(std::fs::read_to_string(config_path(&env)).unwrap(), before);
    let written_out = text(&out.stdout);
    assert!(written_out.contains("csp-sync --config new.toml auth check"));
    // Two different files: refused, nothing written.
    let out = env.run(&["-c", "a.toml", "init", "b.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!env.dir.path().join("a.toml").exists());
    assert!(!env.dir.path().join("b.toml").exists());
    snapshot(
        &env,
        "init_paths",
        &format!(
            "{written_out}---\n{}---\n{}",
            text(&out.stdout),
            text(&out.stderr)
        ),
    );
}

fn add_halo_client(env: &Env, id: i64, name: &str, azure_tenants: &[&str]) {
    let tenants: Vec<Value> = azure_tenants
        .iter()
        .map(|t| json!({ "azure_tenant_id": t }))
        .collect();
    env.em.with_state(|st| {
        st.halo_records_mut("Client").push(json!({
            "id": id, "name": name, "inactive": false, "website": "", "email": "", "azure_tenants": tenants,
        }));
    });
}

#[test]
fn accept_exact_writes_only_exact_matches_and_names_who_is_left() {
    let env = Env::new(&ConfigOptions::default());
    // Tailspin Toys matches this client by its name alone: shown, not written.
    add_halo_client(&env, 106, "Tailspin Toys", &[]);
    let out = env.run(&[
        "-o",
        "json",
        "tenants",
        "map",
        "--suggest",
        "--accept-exact",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let written: Vec<&str> = v["written"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(written, ["Northwind Traders"]);
    let tailspin = v["suggestions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["customer_name"] == "Tailspin Toys")
        .unwrap();
    assert_eq!(tailspin["auto_accept"], 106, "{tailspin}");
    assert_eq!(tailspin["accept_exact"], false, "{tailspin}");
    let config = std::fs::read_to_string(config_path(&env)).unwrap();
    assert!(!config.contains(TAILSPIN), "{config}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("left for you: Tailspin Toys"), "{stderr}");
    snapshot(&env, "accept_exact", &stderr);
}

#[test]
fn scripted_remaps_are_said_out_loud() {
    let env = Env::new(&ConfigOptions::default());
    // A client that Halo itself ties to Northwind's tenant.
    add_halo_client(&env, 108, "Northwind (Halo's own link)", &[NORTHWIND]);
    let out = env.run(&[
        "-o",
        "json",
        "tenants",
        "map",
        "--customer",
        CONTOSO,
        "--client",
        "108",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("Contoso Ltd was mapped to Halo client Contoso Limited (#101)"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("tenants map --customer {CONTOSO} --client 101")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "lists the Azure tenant {NORTHWIND} (Northwind Traders)"
        )),
        "{stderr}"
    );
    let mut said = stderr;
    // Skipping a mapped customer says what stops.
    let out = env.run(&[
        "-o",
        "json",
        "tenants",
        "map",
        "--customer",
        FABRIKAM,
        "--skip",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("it is now skipped"), "{stderr}");
    assert!(
        stderr.contains(&format!("tenants map --customer {FABRIKAM} --client 102")),
        "{stderr}"
    );
    said.push_str(&stderr);
    snapshot(&env, "scripted_remaps", &said);
}

#[test]
fn small_things_read_right() {
    let env = Env::new(&support::clean());
    let mut said = String::new();
    // The demo-style first diff: "1 error" style counts (here: none), then one tenant's consent.
    let out = env.run(&[
        "-o",
        "json",
        "tenants",
        "consent",
        "--tenant",
        "Contoso Ltd",
        "--dry-run",
    ]);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("csp-sync: 1 tenant,"), "{stderr}");
    said.push_str(&stderr);
    // A sync with nothing to do: no "in 0 batches ()".
    support::run_ok(&env, &["-o", "json", "sync"]);
    let out = support::run_ok(&env, &["-o", "json", "sync"]);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("applied 0 changes, 0 failed"), "{stderr}");
    assert!(!stderr.contains("batches ()"), "{stderr}");
    said.push_str(&stderr);
    // `map --suggest` with nobody unmapped: one line, no empty table.
    append_config(&env, &skip_entry(NORTHWIND, "Northwind Traders"));
    append_config(&env, &skip_entry(TAILSPIN, "Tailspin Toys"));
    append_config(
        &env,
        &skip_entry("b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e", "Woodgrove Bank"),
    );
    let out = support::run_ok(&env, &["-o", "table", "tenants", "map", "--suggest"]);
    assert_eq!(text(&out.stdout), "", "no empty table");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("nothing to suggest"), "{stderr}");
    said.push_str(&stderr);
    snapshot(&env, "small_things", &said);

    // One error is "1 error" in the summary.
    let env = Env::new(&estate::ConfigOptions::default());
    let out = env.run(&["-o", "json", "diff"]);
    let stderr = text(&out.stderr);
    assert!(stderr.contains(" 1 error\n"), "{stderr}");
    let summary: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("csp-sync: "))
        .collect();
    snapshot(&env, "one_error_summary", &summary.join("\n"));
}

#[test]
fn a_missing_halo_secret_names_the_variable_to_set() {
    let env = Env::new(&ConfigOptions::default());
    let mut cmd = env.command(&["-o", "json", "diff"]);
    cmd.env_remove("CSP_SYNC_HALO_CLIENT_SECRET")
        .env_remove("CSP_SYNC_HALO_CLIENT_SECRET_FILE");
    let out = cmd.output().unwrap();
    env.assert_no_leak(&["diff"], &out);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    let errors = error_lines(&stderr);
    assert_eq!(errors.len(), 1, "one line for the one cause:\n{stderr}");
    assert!(
        errors[0].contains("CSP_SYNC_HALO_CLIENT_SECRET"),
        "{stderr}"
    );
    assert!(errors[0].contains("auth set halo"), "{stderr}");
    // The [halo] section is there: the message must not send anyone looking for it.
    assert!(!stderr.contains("no [halo] section"), "{stderr}");
    snapshot(&env, "missing_halo_secret", &errors.join("\n"));
}

#[test]
fn failures_that_make_the_exit_code_1_are_errors_not_warnings() {
    let env = Env::new(&support::clean());
    // Halo refuses every new contact: the writes fail, so the run fails.
    env.em.inject(
        Fault::new(Api::Halo, "/api/Users", FaultKind::Status(400))
            .method("POST")
            .times(100),
    );
    let out = env.run(&["-o", "json", "sync", "users"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    let errors = error_lines(&stderr);
    assert!(!errors.is_empty(), "{stderr}");
    assert!(
        errors
            .iter()
            .all(|l| l.contains(": Halo refused the record")),
        "only the failed writes are errors:\n{stderr}"
    );
    assert!(
        !stderr
            .lines()
            .any(|l| l.starts_with("warning: ") && l.contains("HTTP 400")),
        "a failed write labelled as a warning:\n{stderr}"
    );
    let summary: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("csp-sync: applied"))
        .collect();
    snapshot(
        &env,
        "failed_writes_are_errors",
        &format!("{}\n{}", errors.join("\n"), summary.join("\n")),
    );
}

#[test]
fn completion_scripts_offer_the_module_names() {
    let env = Env::new(&ConfigOptions::default());
    let mut offered = String::new();
    for (shell, expected) in [
        (
            "bash",
            "compgen -W \"tenants users licences assets billing\"",
        ),
        ("zsh", ":(tenants users licences assets billing)"),
        ("fish", "billing\\t"),
    ] {
        let out = support::run_ok(&env, &["completions", shell]);
        let script = text(&out.stdout);
        let lines: Vec<&str> = script
            .lines()
            .filter(|l| l.contains("licences") || l.contains("billing\\t"))
            .map(str::trim)
            .collect();
        assert!(
            script.contains(expected) && !lines.is_empty(),
            "{shell}: the module names are not offered"
        );
        let _ = writeln!(offered, "{shell}:\n{}", lines.join("\n"));
    }
    snapshot(&env, "completions_modules", &offered);
}
