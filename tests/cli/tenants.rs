//! Onboarding: `tenants map` (scripted, suggestions), the tenants sync module, consent, health, login.

use std::path::PathBuf;

use crate::estate;
use crate::support::{self, Env};

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

fn tenant_id(env: &Env, name: &str) -> String {
    env.em
        .scenario()
        .customers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no customer {name} in the scenario"))
        .tenant_id
        .clone()
}

fn config_path(env: &Env) -> PathBuf {
    env.dir.path().join("csp-sync.toml")
}

/// The generated config with comments added in the places a person would put them.
fn commented_config(env: &Env) -> String {
    let path = config_path(env);
    let original = std::fs::read_to_string(&path).unwrap();
    let commented = original
        .replacen(
            "[[tenant]]\n",
            "# Customers mapped by hand; csp-sync keeps this comment.\n[[tenant]]\n",
            1,
        )
        .replacen("[sync]\n", "[sync]   # what runs by default\n", 1);
    assert_ne!(commented, original);
    std::fs::write(&path, &commented).unwrap();
    commented
}

fn add_halo_client(env: &Env, id: i64, name: &str) {
    env.em.with_state(|st| {
        st.halo_records_mut("Client").push(serde_json::json!({
            "id": id, "name": name, "inactive": false, "website": "", "email": "", "azure_tenants": [],
        }));
    });
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

#[test]
fn scripted_map_and_skip_rewrite_only_their_entries() {
    let env = Env::new(&estate::ConfigOptions::default());
    let before = commented_config(&env);
    let northwind = tenant_id(&env, "Northwind Traders");
    let tailspin = tenant_id(&env, "Tailspin Toys");

    let out = env.run(&[
        "-o",
        "json",
        "tenants",
        "map",
        "--customer",
        &northwind,
        "--client",
        "103",
        "--site",
        "203",
    ]);
    let v = json(&out);
    assert_eq!(v["version"], 1);
    assert_eq!(
        v["written"][0]["halo_client_name"],
        "Northwind Traders Limited"
    );
    let out = env.run(&[
        "-o",
        "json",
        "tenants",
        "map",
        "--customer",
        &tailspin,
        "--skip",
    ]);
    assert_eq!(json(&out)["written"][0]["mapping"], "skipped");

    let after = std::fs::read_to_string(config_path(&env)).unwrap();
    // New entries go after the last one; the file's trailing blank line stays at its end.
    let head = before.strip_suffix('\n').unwrap();
    let expected = format!(
        "{head}\n[[tenant]]\ncustomer_id = \"{northwind}\"\nname = \"Northwind Traders\"\n\
         halo_client_id = 103\nhalo_site_id = 203\n\n[[tenant]]\ncustomer_id = \"{tailspin}\"\n\
         name = \"Tailspin Toys\"\nskip = true\n\n"
    );
    assert_eq!(after, expected);

    // Mapping again rewrites the entry in place (no --site: the site key goes); the rest stays.
    let out = env.run(&[
        "-o",
        "json",
        "tenants",
        "map",
        "--customer",
        &northwind,
        "--client",
        "103",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let again = std::fs::read_to_string(config_path(&env)).unwrap();
    assert_eq!(again, expected.replace("halo_site_id = 203\n", ""));
    assert_eq!(env.halo_posts(), 0, "tenants map wrote to Halo");
}

#[test]
fn scripted_map_refuses_what_does_not_exist_or_is_taken() {
    let env = Env::new(&estate::ConfigOptions::default());
    let before = commented_config(&env);
    let northwind = tenant_id(&env, "Northwind Traders");
    for (args, needle) in [
        (
            vec!["--customer", northwind.as_str(), "--client", "999"],
            "no client with id 999",
        ),
        (
            vec![
                "--customer",
                "00000000-0000-0000-0000-00000000dead",
                "--skip",
            ],
            "no customer 00000000-0000-0000-0000-00000000dead",
        ),
        // Client 101 is Contoso's: the message names Contoso.
        (
            vec!["--customer", northwind.as_str(), "--client", "101"],
            "Contoso Ltd",
        ),
        // Site 201 belongs to client 101, not 103.
        (
            vec![
                "--customer",
                northwind.as_str(),
                "--client",
                "103",
                "--site",
                "201",
            ],
            "does not belong",
        ),
    ] {
        let mut all = vec!["tenants", "map"];
        all.extend(args.iter().copied());
        let out = env.run(&all);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(err.contains("nothing was written"), "{err}");
    }
    assert_eq!(std::fs::read_to_string(config_path(&env)).unwrap(), before);
}

#[test]
fn suggest_lists_evidence_and_accept_exact_writes_only_unambiguous_ones() {
    let env = Env::new(&estate::ConfigOptions::default());
    let before = commented_config(&env);
    let northwind = tenant_id(&env, "Northwind Traders");
    // Two Halo clients named like Tailspin Toys: a tie, never accepted automatically.
    add_halo_client(&env, 106, "Tailspin Toys Ltd");
    add_halo_client(&env, 107, "Tailspin Toys, Inc.");

    let v = json(&env.run(&["-o", "json", "tenants", "map", "--suggest"]));
    assert_eq!(v["version"], 1);
    let suggestions = v["suggestions"].as_array().unwrap();
    let names: Vec<&str> = suggestions
        .iter()
        .map(|s| s["customer_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Northwind Traders", "Tailspin Toys"]);
    let nw = &suggestions[0];
    assert_eq!(nw["customer_id"], northwind.as_str());
    assert_eq!(nw["candidates"][0]["halo_client_id"], 103);
    assert_eq!(
        nw["candidates"][0]["halo_client_name"],
        "Northwind Traders Limited"
    );
    assert_eq!(nw["candidates"][0]["confidence"], "likely");
    assert!(
        nw["candidates"][0]["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "name" && e["normalised"] == "northwind traders"),
        "{nw}"
    );
    assert!(
        nw["candidates"][0]["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "domain" && e["domain"] == "northwindtraders.com"),
        "{nw}"
    );
    assert_eq!(nw["auto_accept"], 103);
    let ts = &suggestions[1];
    assert_eq!(ts["candidates"].as_array().unwrap().len(), 2);
    assert!(ts["auto_accept"].is_null());
    assert!(ts["why_not"].as_str().unwrap().starts_with("tie"), "{ts}");
    assert_eq!(
        std::fs::read_to_string(config_path(&env)).unwrap(),
        before,
        "--suggest alone wrote"
    );

    // The table and markdown forms carry the evidence too.
    let md = env.run(&["-o", "markdown", "tenants", "map", "--suggest"]);
    let md = text(&md.stdout);
    assert!(
        md.contains("| Northwind Traders | Northwind Traders Limited (#103) | likely | domain northwindtraders.com, name \"northwind traders\" | accept (unambiguous) |"),
        "{md}"
    );

    let v = json(&env.run(&[
        "-o",
        "json",
        "tenants",
        "map",
        "--suggest",
        "--accept-exact",
    ]));
    let written = v["written"].as_array().unwrap();
    assert_eq!(written.len(), 1, "{v}");
    assert_eq!(written[0]["customer_id"], northwind.as_str());
    let after = std::fs::read_to_string(config_path(&env)).unwrap();
    assert_eq!(
        after,
        format!(
            "{}\n[[tenant]]\ncustomer_id = \"{northwind}\"\nname = \"Northwind Traders\"\nhalo_client_id = 103\n\n",
            before.strip_suffix('\n').unwrap()
        )
    );
    // Nothing is left to accept.
    let v = json(&env.run(&[
        "-o",
        "json",
        "tenants",
        "map",
        "--suggest",
        "--accept-exact",
    ]));
    assert_eq!(v["written"].as_array().unwrap().len(), 0);
    assert_eq!(v["suggestions"].as_array().unwrap().len(), 1);
}

fn auto_create_env() -> Env {
    Env::new(&estate::ConfigOptions {
        modules: vec!["tenants"],
        extra: vec![("[sync]", "auto_create_clients = true".into())],
        ..estate::ConfigOptions::default()
    })
}

fn clients_named(env: &Env, name: &str) -> Vec<serde_json::Value> {
    env.em.with_state(|st| {
        st.halo_records("Client")
            .iter()
            .filter(|c| c["name"] == name)
            .cloned()
            .collect()
    })
}

#[test]
fn tenants_module_auto_creates_once_and_adopts_after_a_lost_config_write() {
    let env = auto_create_env();
    let before = commented_config(&env);
    let northwind = tenant_id(&env, "Northwind Traders");
    let tailspin = tenant_id(&env, "Tailspin Toys");

    // diff shows the creates and writes nothing. plan_auto_create creates for every unmapped customer
    // without a client carrying its tenant id: Northwind too, with a note about the same-name client.
    let plan = json(&env.run(&["-o", "json", "diff"]));
    let creates: Vec<(String, String)> = plan["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| {
            t["changes"].as_array().unwrap().iter().map(|c| {
                assert_eq!(c["action"], "create");
                assert_eq!(c["entity"], "Client");
                (
                    c["source_key"].as_str().unwrap().to_string(),
                    c["label"].as_str().unwrap().to_string(),
                )
            })
        })
        .collect();
    assert_eq!(
        creates,
        [
            (northwind.clone(), "Northwind Traders".to_string()),
            (tailspin.clone(), "Tailspin Toys".to_string())
        ]
    );
    let nw_notes = plan["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["customer_id"] == northwind.as_str())
        .unwrap()["notes"]
        .to_string();
    assert!(
        nw_notes.contains("Northwind Traders Limited (103)"),
        "{nw_notes}"
    );
    assert_eq!(env.halo_posts(), 0, "diff wrote to Halo");
    assert_eq!(std::fs::read_to_string(config_path(&env)).unwrap(), before);

    let out = env.run(&["-o", "json", "sync"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let tailspin_clients = clients_named(&env, "Tailspin Toys");
    let northwind_clients = clients_named(&env, "Northwind Traders");
    assert_eq!(tailspin_clients.len(), 1);
    assert_eq!(northwind_clients.len(), 1);
    assert_eq!(
        tailspin_clients[0]["azure_tenants"][0]["azure_tenant_id"],
        tailspin.as_str()
    );
    let ts_id = tailspin_clients[0]["id"].as_i64().unwrap();
    let nw_id = northwind_clients[0]["id"].as_i64().unwrap();
    let config = std::fs::read_to_string(config_path(&env)).unwrap();
    assert!(config.contains("# Customers mapped by hand; csp-sync keeps this comment."));
    let ts_entry = format!(
        "[[tenant]]\ncustomer_id = \"{tailspin}\"\nname = \"Tailspin Toys\"\nhalo_client_id = {ts_id}\n"
    );
    let nw_entry = format!(
        "[[tenant]]\ncustomer_id = \"{northwind}\"\nname = \"Northwind Traders\"\nhalo_client_id = {nw_id}\n"
    );
    assert!(config.contains(&ts_entry), "{config}");
    assert!(config.contains(&nw_entry), "{config}");
    let posts = env.halo_posts();

    // A rerun creates nothing.
    let out = env.run(&["-o", "json", "sync"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(env.halo_posts(), posts, "a rerun wrote to Halo");

    // A run killed between the Halo write and the config write: the entry is gone, the client stays.
    std::fs::write(config_path(&env), config.replace(&ts_entry, "")).unwrap();
    let plan = json(&env.run(&["-o", "json", "diff"]));
    assert_eq!(plan["summary"]["create"], 0, "{plan}");
    assert!(plan.to_string().contains("adopted"), "{plan}");
    let out = env.run(&["-o", "json", "sync"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(env.halo_posts(), posts, "adoption wrote to Halo");
    assert_eq!(clients_named(&env, "Tailspin Toys").len(), 1);
    let config = std::fs::read_to_string(config_path(&env)).unwrap();
    assert!(
        config.contains(&format!("customer_id = \"{tailspin}\"")),
        "{config}"
    );
    assert!(
        config.contains(&format!("halo_client_id = {ts_id}")),
        "{config}"
    );
}

#[test]
fn tenants_module_without_auto_create_only_reports() {
    let env = Env::new(&estate::ConfigOptions {
        modules: vec!["tenants"],
        ..estate::ConfigOptions::default()
    });
    // A renamed customer: the config still has the old name.
    let path = config_path(&env);
    let cfg = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        cfg.replace("name = \"Litware Inc\"", "name = \"Litware Old Name\""),
    )
    .unwrap();
    let out = env.run(&["-o", "json", "sync"]);
    let plan = json(&out);
    assert_eq!(plan["summary"]["create"], 0);
    assert_eq!(env.halo_posts(), 0);
    let notes = plan["tenants"].to_string();
    assert!(notes.contains("not mapped to a Halo client"), "{notes}");
    assert!(notes.contains("Litware Old Name"), "{notes}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        cfg.replace("name = \"Litware Inc\"", "name = \"Litware Old Name\"")
    );
}

fn check<'a>(v: &'a serde_json::Value, credential: &str) -> &'a serde_json::Value {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["credential"] == credential)
        .unwrap_or_else(|| panic!("no check {credential}: {v}"))
}

#[test]
fn consent_lets_woodgrove_issue_its_graph_token() {
    let env = Env::new(&estate::ConfigOptions::default());
    let out = env.run(&["-o", "json", "auth", "check", "--tenants"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let wg = check(&v, "Graph in Woodgrove Bank");
    assert_eq!(wg["ok"], false);
    assert!(wg["detail"].as_str().unwrap().contains("65001"), "{wg}");

    // A dry run sends nothing.
    let v = json(&env.run(&[
        "-o",
        "json",
        "tenants",
        "consent",
        "--tenant",
        "woodgrove bank",
        "--dry-run",
    ]));
    assert_eq!(v["consents"][0]["result"], "would_consent");
    let posts = |env: &Env| {
        env.em
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/applicationconsents"))
            .count()
    };
    assert_eq!(posts(&env), 0);

    // Every mapped customer: Woodgrove is consented, the others already were.
    let v = json(&env.run(&["-o", "json", "tenants", "consent"]));
    let results: Vec<(String, String)> = v["consents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["result"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(results.len(), 4, "{v}");
    for (name, result) in &results {
        let want = if name == "Woodgrove Bank" {
            "consented"
        } else {
            "already_consented"
        };
        assert_eq!(result, want, "{name}");
    }
    assert_eq!(posts(&env), 4);

    let v = json(&env.run(&["-o", "json", "auth", "check", "--tenants"]));
    assert_eq!(check(&v, "Graph in Woodgrove Bank")["ok"], true, "{v}");
    // Again: already there, still success.
    let v = json(&env.run(&[
        "-o",
        "json",
        "tenants",
        "consent",
        "--tenant",
        "Woodgrove Bank",
    ]));
    assert_eq!(v["consents"][0]["result"], "already_consented");
}

#[test]
fn consent_without_a_partner_center_refresh_token_says_what_is_missing() {
    let env = Env::new(&estate::ConfigOptions::default().with_partner_refresh_token(false));
    let out = env.run(&["tenants", "consent"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    for needle in [
        "CSP_SYNC_PARTNER_CENTER_REFRESH_TOKEN",
        "CSP_SYNC_PARTNER_CENTER_REFRESH_TOKEN_FILE",
        "auth login partner-center",
    ] {
        assert!(err.contains(needle), "{err}");
    }
}

#[test]
fn health_flags_litware_and_names_woodgroves_token_failure() {
    let env = Env::new(&estate::ConfigOptions::default());
    let out = env.run(&["-o", "json", "tenants", "health"]);
    // Woodgrove's token fails: exit 1, and the JSON is still complete.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], 1);
    let tenant = |name: &str| {
        v["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing: {v}"))
            .clone()
    };
    let lw = tenant("Litware Inc");
    let flags = lw["flags"].to_string();
    assert!(flags.contains("ends in"), "{flags}");
    assert!(flags.contains("no auto-extend"), "{flags}");
    assert!(
        flags.contains("missing GDAP role License Administrator"),
        "{flags}"
    );
    let days = lw["relationships"][0]["days_left"].as_i64().unwrap();
    assert!((18..=20).contains(&days), "{days}");
    assert_eq!(lw["token"]["ok"], true);

    let wg = tenant("Woodgrove Bank");
    assert_eq!(wg["token"]["ok"], false);
    assert_eq!(wg["token"]["aadsts"], 65001);
    assert!(wg["flags"].to_string().contains("AADSTS65001"), "{wg}");

    let contoso = tenant("Contoso Ltd");
    assert_eq!(contoso["flags"].as_array().unwrap().len(), 0, "{contoso}");
    assert_eq!(v["token_failures"], 1);
    // The JSON keeps Microsoft's ISO 8601 duration; the table says it in words.
    assert_eq!(contoso["relationships"][0]["auto_extend"], "P180D");
    let table = env.run_env(&["-o", "table", "tenants", "health"], &[("COLUMNS", "200")]);
    let table = text(&table.stdout);
    assert!(table.contains("auto-extends by 180 days"), "{table}");
    assert!(!table.contains("P180D"), "{table}");
}

/// The binary with only the environment given (no secrets from the scenario unless passed).
fn run_with(env: &Env, vars: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut cmd = assert_cmd::Command::cargo_bin("csp-sync").unwrap();
    cmd.current_dir(env.dir.path())
        .env_remove("CSP_SYNC_CONFIG")
        .env_remove("CSP_SYNC_PARTNER_CENTER_REFRESH_TOKEN")
        .env_remove("CSP_SYNC_GRAPH_REFRESH_TOKEN")
        .env("CSP_SYNC_NOW", support::now())
        .env("CSP_SYNC_RETRY_SCALE", "0.001")
        .args(args);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn auth_login_uses_the_device_code_flow_and_stores_the_refresh_token_in_the_file() {
    let env = Env::new(&estate::ConfigOptions::default());
    let sc = env.em.scenario();
    let file = env.dir.path().join("pc-refresh-token");
    let file_s = file.to_str().unwrap();

    // No keyring and no file named: refused before any sign-in starts.
    let out = run_with(
        &env,
        &[("CSP_SYNC_NO_KEYRING", "1")],
        &["auth", "login", "partner-center"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("CSP_SYNC_PARTNER_CENTER_REFRESH_TOKEN_FILE"),
        "{}",
        text(&out.stderr)
    );
    let devicecode_calls = |env: &Env| {
        env.em
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/oauth2/v2.0/devicecode"))
            .count()
    };
    assert_eq!(devicecode_calls(&env), 0);

    let out = run_with(
        &env,
        &[
            ("CSP_SYNC_NO_KEYRING", "1"),
            ("CSP_SYNC_PARTNER_CENTER_REFRESH_TOKEN_FILE", file_s),
        ],
        &["auth", "login", "partner-center"],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("https://microsoft.com/devicelogin"), "{err}");
    assert!(err.contains("enter the code"), "{err}");
    assert_eq!(devicecode_calls(&env), 1);
    // Polled until the sign-in completed (the emulator answers authorization_pending first).
    let polls = env
        .em
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/oauth2/v2.0/token") && r.status == 400)
        .count();
    assert!(polls >= 1);
    let stored = std::fs::read_to_string(&file).unwrap();
    assert_eq!(stored.trim(), sc.partner_center_app.refresh_token);
    assert!(
        !format!("{err}{}", text(&out.stdout)).contains(stored.trim()),
        "the token was printed"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    // The stored token works: app+user Partner Center from the file.
    let mut vars: Vec<(String, String)> = estate::secret_env(&env.em)
        .into_iter()
        .filter(|(k, _)| k != "CSP_SYNC_PARTNER_CENTER_REFRESH_TOKEN")
        .collect();
    vars.push((
        "CSP_SYNC_PARTNER_CENTER_REFRESH_TOKEN_FILE".into(),
        file_s.into(),
    ));
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let v = json(&run_with(&env, &vars, &["-o", "json", "auth", "check"]));
    assert_eq!(check(&v, "Partner Center (app+user)")["ok"], true, "{v}");

    // Graph: a new refresh token for the Graph app, written to its own file.
    let graph_file = env.dir.path().join("graph-refresh-token");
    let out = run_with(
        &env,
        &[
            ("CSP_SYNC_NO_KEYRING", "1"),
            (
                "CSP_SYNC_GRAPH_REFRESH_TOKEN_FILE",
                graph_file.to_str().unwrap(),
            ),
        ],
        &["auth", "login", "graph"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        !std::fs::read_to_string(&graph_file)
            .unwrap()
            .trim()
            .is_empty()
    );
}

/// Sends `keys` to `tenants map` running in a pseudo-terminal (util-linux `script`). Before each key it
/// waits until the terminal has shown something new since the last key and then stayed quiet for a moment,
/// so every prompt is drawn before its answer arrives, however slow the machine. Returns everything the
/// terminal showed.
fn map_in_a_terminal(env: &Env, keys: &[&str]) -> (Option<i32>, String) {
    use std::io::{Read as _, Write as _};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};
    let bin = assert_cmd::cargo::cargo_bin("csp-sync");
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-q", "-e", "-c"])
        .arg(format!("'{}' tenants map", bin.display()))
        .arg("/dev/null")
        .current_dir(env.dir.path())
        .env_remove("CSP_SYNC_CONFIG")
        .env("CSP_SYNC_NOW", support::now())
        .env("TERM", "xterm")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in estate::secret_env(&env.em) {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .expect("util-linux `script` is needed for this test");
    let screen = Arc::new(Mutex::new(Vec::<u8>::new()));
    let mut stdout = child.stdout.take().unwrap();
    let sink = screen.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let len = |s: &Arc<Mutex<Vec<u8>>>| s.lock().unwrap().len();
    // Waits until the screen grew past `seen` and then stayed unchanged for 400 ms (at most 30 s).
    let settle = |seen: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = len(&screen);
        let mut quiet_since = Instant::now();
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            let now = len(&screen);
            if now != last {
                last = now;
                quiet_since = Instant::now();
            } else if now > seen && quiet_since.elapsed() >= Duration::from_millis(400) {
                return now;
            }
        }
        last
    };
    let mut stdin = child.stdin.take().unwrap();
    let mut seen = settle(0);
    for k in keys {
        stdin.write_all(k.as_bytes()).unwrap();
        stdin.flush().unwrap();
        seen = settle(seen);
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    reader.join().unwrap();
    let shown = text(&screen.lock().unwrap());
    (out.status.code(), format!("{shown}{}", text(&out.stderr)))
}

#[test]
fn interactive_map_walks_the_unmapped_customers_and_saves_each_answer() {
    const DOWN: &str = "\x1b[B";
    const ENTER: &str = "\r";
    let env = Env::new(&estate::ConfigOptions {
        only: Some(vec!["Contoso Ltd".into(), "Fabrikam Inc".into()]),
        ..estate::ConfigOptions::default()
    });
    commented_config(&env);
    // Unmapped, by name: Litware Inc, Northwind Traders, Tailspin Toys, Woodgrove Bank.
    let keys = [
        // Litware: "Search all clients" (below its one candidate), filter, take the best match.
        DOWN, ENTER, "litw", ENTER,
        // Northwind: its best candidate (Northwind Traders Limited).
        ENTER, // Tailspin (no candidates): Search, Create, Skip.
        DOWN, DOWN, ENTER, // Woodgrove: candidate, Search, Create, Skip, Later, Stop.
        DOWN, DOWN, DOWN, DOWN, DOWN, ENTER,
    ];
    let (code, screen) = map_in_a_terminal(&env, &keys);
    assert_eq!(code, Some(0), "{screen}");
    assert!(
        screen.contains("Northwind Traders Limited (#103)"),
        "{screen}"
    );
    let port = regex::Regex::new(r"http://127\.0\.0\.1:\d+").unwrap();
    let after = std::fs::read_to_string(config_path(&env)).unwrap();
    let after = port.replace_all(&after, "http://127.0.0.1:PORT");
    let golden_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/cli/golden/tenants_map_interactive.toml");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden_path, after.as_bytes()).unwrap();
    }
    let golden = std::fs::read_to_string(&golden_path).unwrap();
    assert_eq!(after, golden, "{screen}");
    assert_eq!(env.halo_posts(), 0);
}

#[test]
fn interactive_map_without_a_terminal_points_to_the_scripted_forms() {
    let env = Env::new(&estate::ConfigOptions::default());
    let out = env.run(&["tenants", "map"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("needs a terminal"), "{err}");
    assert!(
        err.contains("--suggest") && err.contains("--customer ID"),
        "{err}"
    );
}

/// The results of step 2 (`app_permissions`) of a consent row: (permission, result).
fn permission_results(row: &serde_json::Value) -> Vec<(String, String)> {
    row["app_permissions"]["permissions"]
        .as_array()
        .unwrap_or_else(|| panic!("no app_permissions: {row}"))
        .iter()
        .map(|p| {
            (
                p["permission"].as_str().unwrap().to_string(),
                p["result"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

const APP_PERMISSIONS: [&str; 4] = [
    "User.Read.All",
    "LicenseAssignment.Read.All",
    "Organization.Read.All",
    "DeviceManagementManagedDevices.Read.All",
];

fn graph_writes(env: &Env) -> Vec<String> {
    env.em
        .requests()
        .iter()
        .filter(|r| r.api == csp_sync_emulator::Api::Graph && r.method == "POST")
        .map(|r| r.path.clone())
        .collect()
}

#[test]
fn consent_with_app_auth_creates_the_service_principal_and_grants_its_permissions() {
    let env = Env::new(&estate::ConfigOptions::default());
    let wg_id = tenant_id(&env, "Woodgrove Bank");
    // Before: Woodgrove's app-only Graph token is refused.
    let out = env.run(&["-o", "json", "auth", "check", "--tenants"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(check(&v, "Graph in Woodgrove Bank")["ok"], false, "{v}");

    // Dry run: lists everything it would do, writes nothing.
    let v = json(&env.run(&[
        "-o",
        "json",
        "tenants",
        "consent",
        "--tenant",
        "Woodgrove Bank",
        "--dry-run",
    ]));
    assert_eq!(v["graph_auth"], "app");
    assert_eq!(v["app_permissions"], serde_json::json!(APP_PERMISSIONS));
    let row = &v["consents"][0];
    assert_eq!(row["result"], "would_consent");
    assert_eq!(row["app_permissions"]["result"], "would_grant", "{row}");
    assert!(
        permission_results(row)
            .iter()
            .all(|(_, r)| r == "would_grant"),
        "{row}"
    );
    assert!(graph_writes(&env).is_empty(), "{:?}", graph_writes(&env));
    let wg = env.em.scenario().customer(&wg_id).unwrap().clone();
    assert!(wg.consented_apps.is_empty() && wg.service_principals.is_empty());

    // A tenant already provisioned: the dry run reads it and has nothing to do.
    let v = json(&env.run(&[
        "-o",
        "json",
        "tenants",
        "consent",
        "--tenant",
        "Contoso Ltd",
        "--dry-run",
    ]));
    let row = &v["consents"][0];
    assert_eq!(row["app_permissions"]["result"], "already_granted", "{row}");
    assert_eq!(
        row["app_permissions"]["service_principal"],
        "already_present"
    );
    assert!(graph_writes(&env).is_empty());

    // The real thing: the application consent, then the service principal and the four grants.
    let v = json(&env.run(&[
        "-o",
        "json",
        "tenants",
        "consent",
        "--tenant",
        "Woodgrove Bank",
    ]));
    let row = &v["consents"][0];
    assert_eq!(row["result"], "consented", "{row}");
    assert_eq!(row["app_permissions"]["result"], "granted", "{row}");
    assert_eq!(row["app_permissions"]["service_principal"], "created");
    let results = permission_results(row);
    assert_eq!(
        results,
        APP_PERMISSIONS
            .iter()
            .map(|p| (p.to_string(), "granted".to_string()))
            .collect::<Vec<_>>()
    );
    let sc = env.em.scenario();
    let wg = sc.customer(&wg_id).unwrap();
    let app_sp = wg
        .service_principals
        .iter()
        .find(|sp| sp["appId"] == sc.graph_app.client_id.as_str())
        .expect("the app's service principal in Woodgrove");
    assert_eq!(
        row["app_permissions"]["service_principal_id"],
        app_sp["id"].clone()
    );
    let mut granted: Vec<&str> = wg
        .app_role_assignments
        .iter()
        .filter(|a| a["principalId"] == app_sp["id"])
        .map(|a| a["appRoleId"].as_str().unwrap())
        .collect();
    granted.sort_unstable();
    let mut want: Vec<&str> = APP_PERMISSIONS
        .iter()
        .map(|p| csp_sync_emulator::graph_role_id(p).unwrap())
        .collect();
    want.sort_unstable();
    assert_eq!(granted, want);
    // The delegated token was the partner user's, at Woodgrove.
    assert!(env.em.requests().iter().any(|r| {
        r.api == csp_sync_emulator::Api::Login
            && r.path.starts_with(&format!("/{wg_id}/"))
            && r.body
                .as_ref()
                .is_some_and(|b| b.to_string().contains("refresh_token"))
    }),);

    // Afterwards Woodgrove's app-only token works.
    let v = json(&env.run(&["-o", "json", "auth", "check", "--tenants"]));
    assert_eq!(check(&v, "Graph in Woodgrove Bank")["ok"], true, "{v}");

    // Again: everything is already there, and nothing is written.
    let writes = graph_writes(&env).len();
    let v = json(&env.run(&[
        "-o",
        "json",
        "tenants",
        "consent",
        "--tenant",
        "Woodgrove Bank",
    ]));
    let row = &v["consents"][0];
    assert_eq!(row["result"], "already_consented");
    assert_eq!(row["app_permissions"]["result"], "already_granted", "{row}");
    assert_eq!(
        row["app_permissions"]["service_principal"],
        "already_present"
    );
    assert!(
        permission_results(row)
            .iter()
            .all(|(_, r)| r == "already_granted"),
        "{row}"
    );
    assert_eq!(graph_writes(&env).len(), writes);

    // The table names what was granted.
    let out = env.run(&[
        "-o",
        "table",
        "tenants",
        "consent",
        "--tenant",
        "Woodgrove Bank",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.contains("app permissions"), "{table}");
    assert!(table.contains("already granted"), "{table}");
}

#[test]
fn consent_with_app_auth_reports_a_missing_gdap_role() {
    let mut scenario = support::small();
    // Cloud Application Administrator is the only app-admin role of Woodgrove's relationship.
    scenario.remove_gdap_role("Woodgrove Bank", "158c047a-c907-4556-b7ef-446551a6b5f7");
    let env = Env::with(scenario, &estate::ConfigOptions::default());
    let out = env.run(&[
        "-o",
        "json",
        "tenants",
        "consent",
        "--tenant",
        "Woodgrove Bank",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = &v["consents"][0];
    assert_eq!(row["result"], "consented", "{row}");
    assert_eq!(row["app_permissions"]["result"], "failed", "{row}");
    let error = row["app_permissions"]["error"].as_str().unwrap();
    assert!(
        error.contains(
            "needs Cloud Application Administrator or Privileged Role Administrator via GDAP in Woodgrove Bank"
        ),
        "{error}"
    );
    assert!(error.contains("403"), "{error}");
    assert!(
        permission_results(row).iter().all(|(_, r)| r == "not_done"),
        "{row}"
    );
    assert!(
        text(&out.stderr).contains("1 failed"),
        "{}",
        text(&out.stderr)
    );
    // The table shows the cause too.
    let out = env.run(&[
        "-o",
        "table",
        "tenants",
        "consent",
        "--tenant",
        "Woodgrove Bank",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("Cloud Application Administrator"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn consent_with_app_auth_without_a_graph_refresh_token_changes_nothing() {
    let env = Env::new(&estate::ConfigOptions::default());
    let vars: Vec<(String, String)> = estate::secret_env(&env.em)
        .into_iter()
        .filter(|(k, _)| k != "CSP_SYNC_GRAPH_REFRESH_TOKEN")
        .collect();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = run_with(
        &env,
        &vars,
        &["tenants", "consent", "--tenant", "Woodgrove Bank"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    for needle in [
        "CSP_SYNC_GRAPH_REFRESH_TOKEN",
        "auth login graph",
        "Nothing was changed",
    ] {
        assert!(err.contains(needle), "{err}");
    }
    assert!(
        !env.em
            .requests()
            .iter()
            .any(|r| r.method == "POST" && r.path.ends_with("/applicationconsents"))
    );
    // A dry run still lists what it would do, and says why it could not read.
    let out = run_with(
        &env,
        &vars,
        &[
            "-o",
            "json",
            "tenants",
            "consent",
            "--tenant",
            "Woodgrove Bank",
            "--dry-run",
        ],
    );
    let v = json(&out);
    let note = v["consents"][0]["app_permissions"]["note"]
        .as_str()
        .unwrap();
    assert!(note.contains("auth login graph"), "{note}");
}
