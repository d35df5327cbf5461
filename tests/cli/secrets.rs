//! Secrets stay secret and bad input stays out (SPEC sections 4, 5 and 10): server-echoed secrets are
//! masked, plain http and the example's placeholders are refused, unreachable hosts fail fast, and
//! endless files are refused.

use csp_sync_emulator::{Api, Fault, FaultKind};

use crate::estate::{self, ConfigOptions};
use crate::support::{Env, text};

#[test]
fn nothing_secret_shows_at_vvv_when_every_error_reply_echoes_the_request() {
    // Every customer, Woodgrove's consent problem included: its token errors echo the client secret.
    let env = Env::new(&ConfigOptions::default());
    env.em.echo_requests(true);
    for f in [
        Fault::new(Api::Graph, "/users", FaultKind::Status(401)),
        Fault::new(Api::Graph, "/subscribedSkus", FaultKind::Status(403)),
        Fault::new(Api::PartnerCenter, "/subscriptions", FaultKind::Status(500)).times(6),
        Fault::new(Api::Halo, "/api/Users", FaultKind::Status(400)).method("POST"),
        Fault::new(Api::Halo, "/auth/token", FaultKind::Status(400)),
        Fault::new(Api::Login, "/oauth2/v2.0/token", FaultKind::Status(400)),
    ] {
        env.em.inject(f);
    }
    let mut all = String::new();
    for args in [
        &["-vvv", "auth", "check", "--tenants"][..],
        &["-vvv", "-o", "json", "tenants", "list"][..],
        &["-vvv", "-o", "json", "diff", "--out", "plan.json"][..],
        &["-vvv", "-o", "markdown", "diff"][..],
        &["-vvv", "-o", "table", "--log-format", "json", "diff"][..],
        &["-vvv", "-o", "json", "sync"][..],
        &["-vvv", "-o", "json", "tenants", "health"][..],
    ] {
        // Env::run asserts that no secret or token the emulator issued is in stdout, stderr or the files.
        let out = env.run(args);
        assert!(
            matches!(out.status.code(), Some(0..=3)),
            "{args:?}: {}",
            text(&out.stderr)
        );
        all.push_str(&text(&out.stdout));
        all.push_str(&text(&out.stderr));
    }
    assert!(
        all.contains("[echo of"),
        "no echoed reply reached the output, so nothing was tested"
    );
    assert!(all.contains("[REDACTED]"), "nothing was masked");
    let lower = all.to_lowercase();
    for shape in ["authorization: bearer ey", "client_secret=", "bearer ey"] {
        for (i, _) in lower.match_indices(shape) {
            let after = &lower[i + shape.len()..];
            assert!(
                after.starts_with("[redacted]"),
                "{shape} unmasked: {}",
                &all[i..(i + 80).min(all.len())]
            );
        }
    }
}

/// A config for this emulator with one line replaced.
fn config_with(env: &Env, from: &str, to: &str) -> std::path::PathBuf {
    let text = estate::config_text(&env.em, &crate::support::clean());
    assert!(text.contains(from), "{from} not in the config");
    let path = env.dir.path().join("edited.toml");
    std::fs::write(&path, text.replace(from, to)).unwrap();
    path
}

#[test]
fn an_unreachable_halo_fails_after_a_few_quick_attempts_naming_url_and_key() {
    let env = Env::new(&crate::support::clean());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("http://127.0.0.1:{port}");
    let path = config_with(&env, &env.em.halo_url(), &dead);
    let out = env.run(&["-v", "-c", path.to_str().unwrap(), "-o", "json", "diff"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains(&dead), "{err}");
    assert!(err.contains("[halo] url"), "{err}");
    assert!(err.contains("after 3 attempt(s)"), "{err}");
    assert!(!err.contains("login URL"), "{err}");
}

#[test]
fn plain_http_to_another_host_is_refused_naming_the_key() {
    let env = Env::new(&crate::support::clean());
    let path = config_with(&env, &env.em.halo_url(), "http://halo.example.com");
    let out = env.run(&["-c", path.to_str().unwrap(), "diff"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("halo.url") && err.contains("plain http"),
        "{err}"
    );
    assert!(
        env.em.requests().is_empty(),
        "nothing may be sent with an http:// URL"
    );
}

#[test]
fn the_example_config_is_refused_before_anything_is_sent() {
    let env = Env::new(&crate::support::clean());
    let out = env.run(&["init", "fresh.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = env.run(&["-c", "fresh.toml", "auth", "check"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    for key in [
        "partner_center.tenant_id",
        "partner_center.client_id",
        "graph.client_id",
        "halo.url",
        "halo.client_id",
    ] {
        assert!(err.contains(key), "{key}: {err}");
    }
    assert!(env.em.requests().is_empty());
}

#[cfg(unix)]
#[test]
fn endless_config_and_plan_files_are_refused() {
    let env = Env::new(&crate::support::clean());
    let out = env.run(&["-c", "/dev/zero", "diff"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("larger than"),
        "{}",
        text(&out.stderr)
    );
    let out = env.run(&["sync", "--plan", "/dev/zero"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("larger than"),
        "{}",
        text(&out.stderr)
    );
}

fn plan_json(env: &Env) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(env.dir.path().join("plan.json")).unwrap()).unwrap()
}

fn changes_of(plan: &serde_json::Value, tenant: &str) -> usize {
    plan["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["name"] == tenant)
        .map(|t| t["changes"].as_array().map_or(0, Vec::len))
        .sum()
}

#[test]
fn a_plan_whose_entity_was_changed_by_hand_is_refused() {
    let env = Env::new(&crate::support::clean());
    let out = env.run(&["-o", "json", "diff", "--out", "plan.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut plan = plan_json(&env);
    let change = plan["tenants"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find_map(|t| {
            t["changes"]
                .as_array_mut()
                .and_then(|c| c.iter_mut().find(|c| c["entity"] == "Users"))
        })
        .expect("a users change");
    change["entity"] = "Invoice".into();
    std::fs::write(
        env.dir.path().join("plan.json"),
        serde_json::to_vec(&plan).unwrap(),
    )
    .unwrap();
    let out = env.run(&["sync", "--plan", "plan.json"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("entity Invoice does not belong to module users"),
        "{err}"
    );
    assert_eq!(env.halo_posts(), 0, "nothing may be written");
}

#[test]
fn sync_plan_applies_only_the_named_tenants_and_modules() {
    let env = Env::new(&crate::support::clean());
    let out = env.run(&["-o", "json", "diff", "--out", "plan.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let before = plan_json(&env);
    let names = ["Contoso Ltd", "Fabrikam Inc"];
    for n in names {
        assert!(changes_of(&before, n) > 0, "{n} has nothing to change");
    }
    let out = env.run(&[
        "-o",
        "json",
        "sync",
        "--plan",
        "plan.json",
        "--tenant",
        "contoso ltd",
        "users",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = env.run(&["-o", "json", "diff", "--out", "after.json"]);
    assert!(
        matches!(out.status.code(), Some(0)),
        "{}",
        text(&out.stderr)
    );
    let after: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.dir.path().join("after.json")).unwrap()).unwrap();
    let users_of = |plan: &serde_json::Value, tenant: &str| {
        plan["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["name"] == tenant)
            .flat_map(|t| t["changes"].as_array().cloned().unwrap_or_default())
            .filter(|c| c["module"] == "users")
            .count()
    };
    assert_eq!(
        users_of(&after, "Contoso Ltd"),
        0,
        "Contoso's users were applied"
    );
    assert_eq!(
        users_of(&after, "Fabrikam Inc"),
        users_of(&before, "Fabrikam Inc"),
        "Fabrikam was not named"
    );
    // A module or tenant the plan does not hold is refused.
    let out = env.run(&["sync", "--plan", "plan.json", "billing"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not billing"),
        "{}",
        text(&out.stderr)
    );
    let out = env.run(&["sync", "--plan", "plan.json", "--tenant", "Nobody"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not in the plan"),
        "{}",
        text(&out.stderr)
    );
}

#[cfg(unix)]
#[test]
fn a_state_directory_other_users_can_read_is_warned_about() {
    use std::os::unix::fs::PermissionsExt as _;
    let env = Env::new(&crate::support::clean());
    // csp-sync creates it private.
    let out = env.run(&["-o", "json", "sync"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let state = env.dir.path().join("state");
    let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert!(!text(&out.stderr).contains("readable by other users"));
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = env.run(&["-o", "json", "sync"]);
    let err = text(&out.stderr);
    assert!(
        err.contains("warning: the state directory") && err.contains("chmod 700"),
        "{err}"
    );
}

#[test]
fn a_failing_tenant_is_labelled_error_not_warning() {
    // Woodgrove Bank's Graph app is not consented (the small scenario): its read fails, the exit code is 1.
    let env = Env::new(&ConfigOptions::default());
    let out = env.run(&["-o", "json", "diff"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("error: Woodgrove Bank:"), "{err}");
    assert!(!err.contains("warning: Woodgrove Bank:"), "{err}");
}
