//! The users module end to end: joiners, links, movers, leavers, guards, dry runs, the lock, delta links,
//! partial batches and saved plans.

use csp_sync_emulator::{Api, Fault, FaultKind};
use serde_json::{Value, json};

use crate::estate::ConfigOptions;
use crate::support::{self, Env, clean, posted, run_ok, text};

const CONTOSO: &str = "c0a7b1d2-3e4f-4a5b-8c6d-7e8f9a0b1c2d";
const FABRIKAM: &str = "f4b1c2d3-8e7a-4c6b-9d5e-2a3b4c5d6e7f";
const LITWARE: &str = "e9f0a1b2-c3d4-4e5f-a6b7-c8d9e0f1a2b3";

/// The consented, mapped tenants (no Woodgrove Bank), users module only, service accounts excluded.
pub(crate) fn opts() -> ConfigOptions {
    ConfigOptions {
        modules: vec!["users"],
        extra: vec![("[users]", "exclude_upn = ['^admin@', '^svc-']".into())],
        ..clean()
    }
}

pub(crate) fn with(mut o: ConfigOptions, section: &'static str, line: &str) -> ConfigOptions {
    o.extra.push((section, line.to_string()));
    o
}

/// The guard's limits of the leaver wave: one deactivation and 10 percent.
pub(crate) fn leaver_wave_opts(o: ConfigOptions) -> ConfigOptions {
    with(
        with(o, "[safety]", "max_deactivations = 1"),
        "[safety]",
        "max_deactivation_percent = 10",
    )
}

/// Whether the options read Halo by report (`[halo] bulk_read = "report"`).
fn by_report(o: &ConfigOptions) -> bool {
    o.extra
        .iter()
        .any(|(s, l)| *s == "[halo]" && l.contains("bulk_read") && l.contains("report"))
}

/// Every record POSTed to `/api/Users` so far, in order (batches flattened).
fn user_posts(env: &Env) -> Vec<Value> {
    posted(env, "/api/Users")
}

fn halo_users(env: &Env) -> Vec<Value> {
    env.em.with_state(|s| s.halo_records("Users").clone())
}

fn halo_user(env: &Env, id: i64) -> Value {
    env.em
        .with_state(|s| s.halo_record("Users", id).cloned())
        .unwrap_or_else(|| panic!("no Halo user {id}"))
}

/// The Entra object id of a user.
fn oid(env: &Env, tenant: &str, upn: &str) -> String {
    env.em.with_state(|s| {
        s.customer(tenant)
            .unwrap()
            .users
            .iter()
            .find(|u| {
                u["userPrincipalName"]
                    .as_str()
                    .is_some_and(|x| x.eq_ignore_ascii_case(upn))
            })
            .unwrap_or_else(|| panic!("no Entra user {upn}"))["id"]
            .as_str()
            .unwrap()
            .to_string()
    })
}

/// Halo users linked to an Entra object id.
fn linked(env: &Env, oid: &str) -> Vec<Value> {
    halo_users(env)
        .into_iter()
        .filter(|u| {
            u["azureoid"]
                .as_str()
                .is_some_and(|a| a.eq_ignore_ascii_case(oid))
        })
        .collect()
}

/// The one Halo user linked to an Entra user.
fn one_linked(env: &Env, tenant: &str, upn: &str) -> Value {
    let found = linked(env, &oid(env, tenant, upn));
    assert_eq!(found.len(), 1, "{upn}: linked Halo users {found:?}");
    found.into_iter().next().unwrap()
}

fn with_email(env: &Env, email: &str) -> Vec<Value> {
    halo_users(env)
        .into_iter()
        .filter(|u| {
            u["emailaddress"]
                .as_str()
                .is_some_and(|e| e.eq_ignore_ascii_case(email))
        })
        .collect()
}

/// A POSTed record without the automation flag csp-sync adds to every write.
fn body(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("_dont_fire_automations");
    }
    v
}

fn joiner(upn: &str, given: &str, surname: &str, sku: &str) -> Value {
    json!({
        "businessPhones": [], "displayName": format!("{given} {surname}"), "givenName": given,
        "surname": surname, "jobTitle": null, "mail": upn, "mobilePhone": null, "officeLocation": null,
        "preferredLanguage": "en-GB", "userPrincipalName": upn, "accountEnabled": true,
        "userType": "Member", "assignedLicenses": [{"disabledPlans": [], "skuId": sku}],
        "onPremisesSyncEnabled": null, "createdDateTime": "2026-11-20T09:00:00Z", "department": null,
        "companyName": "Contoso Ltd", "usageLocation": "GB"
    })
}

/// A licence of a Contoso user (the SKU id of an existing assignment).
fn a_contoso_sku(env: &Env) -> String {
    env.em.with_state(|s| {
        s.customer(CONTOSO).unwrap().users[0]["assignedLicenses"][0]["skuId"]
            .as_str()
            .unwrap()
            .to_string()
    })
}

fn assert_no_deactivation_written(env: &Env) {
    let deact: Vec<Value> = user_posts(env)
        .into_iter()
        .filter(|r| r["inactive"] == json!(true))
        .collect();
    assert!(deact.is_empty(), "deactivations written: {deact:?}");
}

#[test]
fn first_sync_creates_in_scope_users_on_the_main_site_and_links_contacts() {
    first_sync_with(&opts());
}

/// [`first_sync_creates_in_scope_users_on_the_main_site_and_links_contacts`] with the given options (also run with `bulk_read = "report"`, `report_reads`).
pub(crate) fn first_sync_with(o: &ConfigOptions) {
    let env = Env::new(o);
    let before = halo_users(&env).len();
    let out = run_ok(&env, &["-o", "json", "sync"]);
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();

    // In scope and new: created on the tenant's client and that client's main site.
    for (tenant, upn, client, site) in [
        (CONTOSO, "carol.white@contoso.co.uk", 101, 201),
        (CONTOSO, "dan.brown@contoso.co.uk", 101, 201),
        (FABRIKAM, "lee.gu@fabrikam.com", 102, 202),
        (FABRIKAM, "nestor.wilke@fabrikam.com", 102, 202),
        (LITWARE, "isaiah.langer@litware.com", 105, 205),
        (LITWARE, "johanna.lorenz@litware.com", 105, 205),
    ] {
        let u = one_linked(&env, tenant, upn);
        assert_eq!(u["client_id"], json!(client), "{upn}: {u}");
        assert_eq!(u["site_id"], json!(site), "{upn}: {u}");
        assert_eq!(u["azure_tenant_id"], json!(tenant), "{upn}: {u}");
        assert_eq!(u["inactive"], json!(false), "{upn}: {u}");
        assert_eq!(with_email(&env, upn).len(), 1, "{upn} duplicated");
    }
    // Pre-existing contacts are linked, not duplicated (Bob's inactive one is reactivated).
    for (tenant, upn, id) in [
        (CONTOSO, "alice.smith@contoso.co.uk", 1001),
        (CONTOSO, "bob.jones@contoso.co.uk", 1002),
        (FABRIKAM, "megan.bowen@fabrikam.com", 1301),
        (LITWARE, "diego.siciliani@litware.com", 1501),
    ] {
        let u = one_linked(&env, tenant, upn);
        assert_eq!(u["id"], json!(id), "{upn}: {u}");
        assert_eq!(u["azure_tenant_id"], json!(tenant), "{upn}: {u}");
        assert_eq!(u["inactive"], json!(false), "{upn}: {u}");
        assert_eq!(with_email(&env, upn).len(), 1, "{upn} duplicated");
    }
    // Out of scope: guest, disabled, admin@, svc-, unlicensed. Nothing created or linked for them.
    for (tenant, upn, mail) in [
        (
            CONTOSO,
            "pat.lee_fabrikam.com#EXT#@contosoltd.onmicrosoft.com",
            "pat.lee@fabrikam.com",
        ),
        (
            CONTOSO,
            "eve.black@contoso.co.uk",
            "eve.black@contoso.co.uk",
        ),
        (CONTOSO, "admin@contoso.co.uk", "admin@contoso.co.uk"),
        (
            CONTOSO,
            "svc-backup@contoso.co.uk",
            "svc-backup@contoso.co.uk",
        ),
        (
            CONTOSO,
            "frank.green@contoso.co.uk",
            "frank.green@contoso.co.uk",
        ),
        (FABRIKAM, "reception@fabrikam.com", "reception@fabrikam.com"),
    ] {
        assert!(linked(&env, &oid(&env, tenant, upn)).is_empty(), "{upn}");
        assert!(with_email(&env, mail).is_empty(), "{upn} was created");
    }
    // Grace and Graham both match contact 1003 by e-mail: a conflict, neither linked nor created.
    for upn in ["grace.hall@contoso.co.uk", "g.hall@contoso.co.uk"] {
        assert!(linked(&env, &oid(&env, CONTOSO, upn)).is_empty(), "{upn}");
    }
    assert_eq!(halo_user(&env, 1003)["azureoid"], json!(""));
    // One conflict, naming both by UPN and object id (issue 19: it was listed twice, both as grace.hall@).
    assert_eq!(plan["summary"]["conflicts"], json!(1), "{plan}");
    let conflict = plan["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["conflicts"].as_array().unwrap())
        .next()
        .unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_string();
    for upn in ["grace.hall@contoso.co.uk", "g.hall@contoso.co.uk"] {
        let o = oid(&env, CONTOSO, upn);
        assert!(
            conflict.contains(&format!("{upn} (object id {o})")),
            "{conflict}"
        );
    }

    // Exactly six records were created, with integer ids.
    assert_eq!(halo_users(&env).len(), before + 6);
    let creates: Vec<Value> = user_posts(&env)
        .into_iter()
        .filter(|r| r.get("id").is_none())
        .collect();
    assert_eq!(creates.len(), 6, "{creates:?}");
    for c in &creates {
        assert!(c["site_id"].is_i64() && c["client_id"].is_i64(), "{c}");
    }
    for r in user_posts(&env) {
        if let Some(id) = r.get("id") {
            assert!(id.is_i64(), "id not an integer: {r}");
        }
    }
    // The journal holds the run with the Halo ids of what it wrote.
    let journal = support::journal_lines(&env, 1);
    let applied: Vec<&Value> = journal.iter().filter(|l| l["type"] == "applied").collect();
    // 6 creates, 3 links, and Megan (linked by Halo's own integration) gets the tenant id the
    // user list does not return, once. A report returns it (she has it): nothing to write there.
    let megan = usize::from(!by_report(o));
    assert_eq!(applied.len(), 9 + megan, "{journal:?}");
    assert!(applied.iter().all(|a| a["halo_id"].is_i64()), "{journal:?}");
}

#[test]
fn an_immediate_second_sync_makes_no_halo_writes() {
    second_sync_with(&opts());
}

/// [`an_immediate_second_sync_makes_no_halo_writes`] with the given options (also run with `bulk_read = "report"`, `report_reads`).
pub(crate) fn second_sync_with(o: &ConfigOptions) {
    let env = Env::new(o);
    run_ok(&env, &["sync"]);
    let writes = env.halo_posts();
    assert!(writes > 0);
    let again = run_ok(&env, &["-o", "json", "sync"]);
    let plan: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(env.halo_posts(), writes, "the second sync wrote to Halo");
    for k in ["create", "update", "link", "deactivate", "reactivate"] {
        assert_eq!(plan["summary"][k], json!(0), "{k}: {plan}");
    }
    let deletes = env
        .em
        .requests()
        .iter()
        .filter(|r| r.api == Api::Halo && r.method == "DELETE")
        .count();
    assert_eq!(deletes, 0);
}

#[test]
fn entra_changes_are_applied_exactly() {
    entra_changes_with(&with(opts(), "[safety]", "max_deactivations = 10"));
}

/// [`entra_changes_are_applied_exactly`] with the given options (also run with `bulk_read = "report"`, `report_reads`).
pub(crate) fn entra_changes_with(o: &ConfigOptions) {
    let env = Env::new(o);
    run_ok(&env, &["sync"]);
    let carol = one_linked(&env, CONTOSO, "carol.white@contoso.co.uk")["id"]
        .as_i64()
        .unwrap();
    let dan = one_linked(&env, CONTOSO, "dan.brown@contoso.co.uk")["id"]
        .as_i64()
        .unwrap();
    let isaiah = one_linked(&env, LITWARE, "isaiah.langer@litware.com")["id"]
        .as_i64()
        .unwrap();
    let sku = a_contoso_sku(&env);
    let posted_before = user_posts(&env).len();
    let users_before = halo_users(&env).len();

    let henry = env.em.with_state(|s| {
        assert!(s.update_user(CONTOSO, "carol.white@contoso.co.uk", |u| {
            u["accountEnabled"] = json!(false);
        }));
        assert!(s.remove_user(CONTOSO, "dan.brown@contoso.co.uk"));
        assert!(s.purge_user(LITWARE, "isaiah.langer@litware.com"));
        assert!(s.update_user(CONTOSO, "bob.jones@contoso.co.uk", |u| {
            u["jobTitle"] = json!("Finance Director");
        }));
        assert!(s.update_user(CONTOSO, "alice.smith@contoso.co.uk", |u| {
            u["assignedLicenses"] = json!([]);
        }));
        s.add_user(
            CONTOSO,
            joiner("henry.ford@contoso.co.uk", "Henry", "Ford", &sku),
        )
    });

    let out = run_ok(&env, &["-o", "json", "sync"]);
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["summary"]["create"], json!(1), "{plan}");
    assert_eq!(plan["summary"]["update"], json!(1), "{plan}");
    assert_eq!(plan["summary"]["deactivate"], json!(4), "{plan}");
    assert_eq!(plan["summary"]["link"], json!(0), "{plan}");
    assert_eq!(plan["summary"]["reactivate"], json!(0), "{plan}");

    let posted: Vec<Value> = user_posts(&env)
        .into_iter()
        .skip(posted_before)
        .map(body)
        .collect();
    assert_eq!(posted.len(), 6, "{posted:#?}");
    let has = |want: &Value| posted.iter().any(|p| p == want);
    for id in [carol, dan, 1001, isaiah] {
        let want = json!({"id": id, "inactive": true});
        assert!(has(&want), "missing {want} in {posted:#?}");
    }
    let want = json!({"id": 1002, "title": "Finance Director"});
    assert!(has(&want), "missing {want} in {posted:#?}");
    let create: Vec<&Value> = posted.iter().filter(|p| p.get("id").is_none()).collect();
    assert_eq!(create.len(), 1, "{posted:#?}");
    assert_eq!(create[0]["azureoid"], json!(henry));
    assert_eq!(create[0]["client_id"], json!(101));
    assert_eq!(create[0]["site_id"], json!(201));

    // Halo now holds exactly that.
    assert_eq!(halo_users(&env).len(), users_before + 1);
    for id in [carol, dan, 1001, isaiah] {
        assert_eq!(halo_user(&env, id)["inactive"], json!(true), "{id}");
    }
    assert_eq!(halo_user(&env, 1002)["title"], json!("Finance Director"));
    assert_eq!(halo_user(&env, 1002)["inactive"], json!(false));
    let h = one_linked(&env, CONTOSO, "henry.ford@contoso.co.uk");
    assert_eq!(h["emailaddress"], json!("henry.ford@contoso.co.uk"));
    assert_eq!(h["site_id"], json!(201));

    // And it converged.
    let writes = env.halo_posts();
    run_ok(&env, &["sync"]);
    assert_eq!(env.halo_posts(), writes);

    // A leaver who comes back is reactivated, nothing else.
    env.em.with_state(|s| {
        s.update_user(CONTOSO, "carol.white@contoso.co.uk", |u| {
            u["accountEnabled"] = json!(true);
        })
    });
    let before = user_posts(&env).len();
    run_ok(&env, &["sync"]);
    let posted: Vec<Value> = user_posts(&env)
        .into_iter()
        .skip(before)
        .map(body)
        .collect();
    assert_eq!(posted, vec![json!({"id": carol, "inactive": false})]);
}

#[test]
fn dry_run_and_diff_write_nothing_and_detailed_exitcode_gives_2_then_0() {
    let env = Env::new(&opts());
    let dry = run_ok(&env, &["-o", "json", "sync", "--dry-run"]);
    let plan: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(plan["summary"]["create"], json!(6), "{plan}");
    let diff = env.run(&["-o", "json", "diff", "--detailed-exitcode"]);
    assert_eq!(diff.status.code(), Some(2), "{}", text(&diff.stderr));
    assert_eq!(
        serde_json::from_slice::<Value>(&diff.stdout).unwrap()["summary"],
        plan["summary"]
    );
    assert_eq!(env.halo_posts(), 0, "dry run or diff wrote to Halo");
    let state = env.dir.path().join("state");
    assert!(
        !state.join("users").exists() && !state.join("runs").exists(),
        "a dry run or diff wrote state"
    );

    run_ok(&env, &["sync"]);
    assert!(env.halo_posts() > 0);
    assert!(state.join("runs/000001.jsonl").exists());
    let diff = env.run(&["-o", "json", "diff", "--detailed-exitcode"]);
    assert_eq!(diff.status.code(), Some(0), "{}", text(&diff.stdout));
}

#[test]
fn a_wave_of_leavers_over_both_limits_is_held_back_with_exit_3() {
    leaver_wave_with(&leaver_wave_opts(opts()));
}

/// [`a_wave_of_leavers_over_both_limits_is_held_back_with_exit_3`] with the given options (also run with `bulk_read = "report"`, `report_reads`).
pub(crate) fn leaver_wave_with(o: &ConfigOptions) {
    let env = Env::new(o);
    run_ok(&env, &["sync"]);
    let carol = one_linked(&env, CONTOSO, "carol.white@contoso.co.uk")["id"]
        .as_i64()
        .unwrap();
    let dan = one_linked(&env, CONTOSO, "dan.brown@contoso.co.uk")["id"]
        .as_i64()
        .unwrap();
    let posted_before = user_posts(&env).len();
    env.em.with_state(|s| {
        for upn in ["carol.white@contoso.co.uk", "dan.brown@contoso.co.uk"] {
            assert!(s.update_user(CONTOSO, upn, |u| u["accountEnabled"] = json!(false)));
        }
        assert!(s.update_user(CONTOSO, "bob.jones@contoso.co.uk", |u| {
            u["jobTitle"] = json!("Finance Director");
        }));
    });

    let diff = env.run(&["diff", "--detailed-exitcode"]);
    assert_eq!(diff.status.code(), Some(3), "{}", text(&diff.stderr));
    let out = env.run(&["-o", "json", "sync"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("Contoso Ltd") && err.contains("held back"),
        "{err}"
    );
    assert_no_deactivation_written(&env);
    for id in [carol, dan] {
        assert_eq!(halo_user(&env, id)["inactive"], json!(false));
    }
    // The other change of that tenant was written.
    assert_eq!(halo_user(&env, 1002)["title"], json!("Finance Director"));
    assert_eq!(user_posts(&env).len(), posted_before + 1);

    let out = env.run(&["sync", "--allow-deactivations"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for id in [carol, dan] {
        assert_eq!(halo_user(&env, id)["inactive"], json!(true));
    }
    assert_eq!(user_posts(&env).len(), posted_before + 3);
}

fn active_synced(env: &Env, tenant: &str) -> usize {
    halo_users(env)
        .iter()
        .filter(|u| u["azure_tenant_id"] == json!(tenant) && u["inactive"] == json!(false))
        .count()
}

/// The plan reports a failure for that tenant (and the run exits 1).
fn assert_tenant_error(plan: &Value, tenant: &str) {
    let t = plan["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["customer_id"] == json!(tenant))
        .unwrap_or_else(|| panic!("no tenant {tenant} in {plan}"));
    let errors = t["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e.as_str().unwrap().contains("reading")),
        "{t}"
    );
    assert!(t["changes"].as_array().unwrap().is_empty(), "{t}");
}

#[test]
fn a_graph_users_read_that_fails_deactivates_nobody() {
    let mut o = opts();
    o.only = Some(vec!["Contoso Ltd".into()]);
    let env = Env::new(&o);
    run_ok(&env, &["sync"]);
    let active = active_synced(&env, CONTOSO);
    assert_eq!(active, 4);
    let writes = env.halo_posts();

    // A leaver, but Graph answers 500 to every users read (delta and full) for the whole run.
    env.em.with_state(|s| {
        s.update_user(CONTOSO, "carol.white@contoso.co.uk", |u| {
            u["accountEnabled"] = json!(false);
        })
    });
    env.em.inject(
        Fault::new(Api::Graph, "/users", FaultKind::Status(500))
            .method("GET")
            .times(10_000),
    );
    let out = env.run(&["-o", "json", "sync"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_tenant_error(&plan, CONTOSO);
    assert_no_deactivation_written(&env);
    assert_eq!(env.halo_posts(), writes);
    assert_eq!(active_synced(&env, CONTOSO), active);
    assert!(support::lock_released(&env), "a failed run left its lock");
}

#[test]
fn a_tenant_refused_or_returning_nobody_deactivates_nobody_and_others_proceed() {
    empty_source_with(&opts());
}

/// [`a_tenant_refused_or_returning_nobody_deactivates_nobody_and_others_proceed`] with the given options (also run with `bulk_read = "report"`, `report_reads`).
pub(crate) fn empty_source_with(o: &ConfigOptions) {
    let env = Env::new(o);
    run_ok(&env, &["sync"]);
    let contoso = active_synced(&env, CONTOSO);
    let fabrikam = active_synced(&env, FABRIKAM);
    assert_eq!((contoso, fabrikam), (4, 3));
    let isaiah = one_linked(&env, LITWARE, "isaiah.langer@litware.com")["id"]
        .as_i64()
        .unwrap();

    env.em.with_state(|s| {
        // Contoso: consent withdrawn (every token refused), and a leaver that must wait.
        s.set_consent(CONTOSO, false);
        s.update_user(CONTOSO, "carol.white@contoso.co.uk", |u| {
            u["accountEnabled"] = json!(false);
        });
        // Fabrikam: the directory returns nobody.
        support::remove_every_user(s, FABRIKAM);
        // Litware: an ordinary leaver, which does leave.
        s.update_user(LITWARE, "isaiah.langer@litware.com", |u| {
            u["accountEnabled"] = json!(false);
        });
    });
    let posted_before = user_posts(&env).len();
    let out = env.run(&["-o", "json", "sync"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_tenant_error(&plan, CONTOSO);
    assert!(
        err.contains("Fabrikam Inc") && err.contains("held back"),
        "{err}"
    );
    assert_eq!(active_synced(&env, CONTOSO), contoso);
    assert_eq!(active_synced(&env, FABRIKAM), fabrikam);
    let posted: Vec<Value> = user_posts(&env)
        .into_iter()
        .skip(posted_before)
        .map(body)
        .collect();
    assert_eq!(posted, vec![json!({"id": isaiah, "inactive": true})]);
}

#[test]
fn a_second_run_while_the_lock_is_held_exits_1_at_once_naming_the_pid() {
    let env = Env::new(&opts());
    let state = env.dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let pid = std::process::id();
    // The lock is an OS file lock: hold it the way a running csp-sync does, with its pid in the file.
    let held = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(state.join("lock"))
        .unwrap();
    held.try_lock().unwrap();
    std::fs::write(state.join("lock"), format!("{pid}\n{}\n", support::now())).unwrap();
    let out = env.run(&["sync"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("pid {pid}")), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        env.em.requests().is_empty(),
        "a locked-out run called the APIs"
    );
    // The lock of the running process is left alone.
    assert!(state.join("lock").exists());
    let out = env.run(&["sync", "--plan", "nonexistent.json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains(&format!("pid {pid}")));
    // Once released, the run proceeds, and releases it in turn.
    drop(held);
    run_ok(&env, &["sync"]);
    assert!(support::lock_released(&env), "the lock was not released");
}

#[test]
fn a_diff_between_two_syncs_does_not_hide_a_joiner() {
    let env = Env::new(&opts());
    run_ok(&env, &["sync"]);
    let state_file = env
        .dir
        .path()
        .join("state")
        .join("users")
        .join(format!("{CONTOSO}.json"));
    let stored = std::fs::read(&state_file).unwrap();
    let sku = a_contoso_sku(&env);
    let henry = env.em.with_state(|s| {
        s.add_user(
            CONTOSO,
            joiner("henry.ford@contoso.co.uk", "Henry", "Ford", &sku),
        )
    });
    let diff = env.run(&["-o", "json", "diff", "--detailed-exitcode"]);
    assert_eq!(diff.status.code(), Some(2), "{}", text(&diff.stderr));
    let plan: Value = serde_json::from_slice(&diff.stdout).unwrap();
    assert_eq!(plan["summary"]["create"], json!(1), "{plan}");
    let dry = run_ok(&env, &["-o", "json", "sync", "--dry-run"]);
    let plan: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(plan["summary"]["create"], json!(1), "{plan}");
    assert_eq!(
        std::fs::read(&state_file).unwrap(),
        stored,
        "diff or a dry run changed the stored delta state"
    );
    // The diff and the dry run each consumed a delta round; the sync must still see the joiner.
    run_ok(&env, &["sync"]);
    let h = linked(&env, &henry);
    assert_eq!(h.len(), 1, "the joiner was not created");
    assert_eq!(h[0]["site_id"], json!(201));
    let diff = env.run(&["diff", "--detailed-exitcode"]);
    assert_eq!(diff.status.code(), Some(0), "{}", text(&diff.stdout));
}

#[test]
fn one_invalid_record_in_a_batch_is_reported_and_the_others_land() {
    let env = Env::new(&opts());
    env.em.with_state(|s| {
        s.halo_reject("Users", "emailaddress", json!("carol.white@contoso.co.uk"));
    });
    let out = env.run(&["sync"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("carol.white@contoso.co.uk"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(linked(&env, &oid(&env, CONTOSO, "carol.white@contoso.co.uk")).is_empty());
    for (tenant, upn) in [
        (CONTOSO, "dan.brown@contoso.co.uk"),
        (FABRIKAM, "lee.gu@fabrikam.com"),
        (FABRIKAM, "nestor.wilke@fabrikam.com"),
        (LITWARE, "isaiah.langer@litware.com"),
        (LITWARE, "johanna.lorenz@litware.com"),
        (CONTOSO, "alice.smith@contoso.co.uk"),
        (CONTOSO, "bob.jones@contoso.co.uk"),
    ] {
        one_linked(&env, tenant, upn);
    }
    // The journal records what landed.
    let journal = support::journal_lines(&env, 1);
    let end = journal.last().unwrap();
    assert_eq!(end["type"], "end", "{journal:?}");
    assert_eq!(end["failed"], json!(1), "{journal:?}");

    // Once Halo accepts it, the next run creates it: a failed record is not lost with the delta link.
    env.em.with_state(|s| s.settings.halo_rejects.clear());
    run_ok(&env, &["sync"]);
    let carol = one_linked(&env, CONTOSO, "carol.white@contoso.co.uk");
    assert_eq!(carol["site_id"], json!(201));
    assert_eq!(with_email(&env, "dan.brown@contoso.co.uk").len(), 1);
}

/// The object `sync --plan` should POST for a change of a saved plan.
fn expected_payload(c: &Value) -> Value {
    let mut o = serde_json::Map::new();
    if let Some(id) = c.get("halo_id") {
        o.insert("id".into(), id.clone());
    }
    if let Some(extra) = c.get("extra").and_then(Value::as_object) {
        o.extend(extra.clone());
    }
    for f in c["fields"].as_array().unwrap() {
        o.insert(f["field"].as_str().unwrap().into(), f["to"].clone());
    }
    Value::Object(o)
}

fn sorted(mut v: Vec<Value>) -> Vec<Value> {
    v.sort_by_key(ToString::to_string);
    v
}

#[test]
fn sync_plan_applies_exactly_the_saved_plan() {
    let env = Env::new(&opts());
    run_ok(&env, &["diff", "--out", "plan.json"]);
    let plan: Value =
        serde_json::from_slice(&std::fs::read(env.dir.path().join("plan.json")).unwrap()).unwrap();
    let expected: Vec<Value> = plan["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| {
            t["changes"]
                .as_array()
                .unwrap()
                .iter()
                .map(expected_payload)
        })
        .collect();
    assert_eq!(expected.len(), 10, "{plan}");
    // A joiner after the plan was made is not part of it.
    let sku = a_contoso_sku(&env);
    let henry = env.em.with_state(|s| {
        s.add_user(
            CONTOSO,
            joiner("henry.ford@contoso.co.uk", "Henry", "Ford", &sku),
        )
    });
    run_ok(&env, &["sync", "--plan", "plan.json"]);
    let posted: Vec<Value> = user_posts(&env).into_iter().map(body).collect();
    assert_eq!(sorted(posted), sorted(expected));
    assert!(
        linked(&env, &henry).is_empty(),
        "applied more than the plan"
    );
    // A plain sync then finds only the joiner.
    let out = run_ok(&env, &["-o", "json", "sync"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["summary"]["create"], json!(1), "{v}");
    assert_eq!(linked(&env, &henry).len(), 1);
}

#[test]
fn sync_plan_refuses_when_a_touched_halo_record_changed() {
    let env = Env::new(&opts());
    run_ok(&env, &["sync"]);
    env.em.with_state(|s| {
        s.update_user(CONTOSO, "bob.jones@contoso.co.uk", |u| {
            u["jobTitle"] = json!("Finance Director");
        })
    });
    run_ok(&env, &["diff", "--out", "plan.json"]);
    let plan = std::fs::read_to_string(env.dir.path().join("plan.json")).unwrap();
    assert!(plan.contains("Finance Director"), "{plan}");
    // Someone edits Bob's contact in Halo after the plan was made.
    env.em.with_state(|s| {
        let bob = s
            .halo_records_mut("Users")
            .iter_mut()
            .find(|u| u["id"] == json!(1002))
            .unwrap();
        bob["title"] = json!("Head of Finance");
    });
    let writes = env.halo_posts();
    let out = env.run(&["sync", "--plan", "plan.json"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no longer applies") && err.contains("title"),
        "{err}"
    );
    assert_eq!(env.halo_posts(), writes, "a stale plan wrote to Halo");
    assert!(support::lock_released(&env), "a refused run left its lock");
    assert_eq!(halo_user(&env, 1002)["title"], json!("Head of Finance"));
}

#[test]
fn a_connection_dropped_after_a_create_then_a_rerun_leaves_no_duplicate() {
    let env = Env::new(&opts());
    env.em
        .inject(Fault::new(Api::Halo, "/api/Users", FaultKind::DropAfterWrite).method("POST"));
    let first = env.run(&["sync"]);
    // The dropped request was the create batch, and it had landed.
    let dropped: Vec<_> = env
        .em
        .requests()
        .into_iter()
        .filter(|r| r.api == Api::Halo && r.method == "POST" && r.status == 0)
        .collect();
    assert_eq!(dropped.len(), 1, "{}", text(&first.stderr));
    let batch = dropped[0].body.clone().unwrap();
    let batch = batch.as_array().unwrap();
    assert!(
        batch.len() == 6 && batch.iter().all(|r| r.get("id").is_none()),
        "{batch:?}"
    );
    run_ok(&env, &["sync"]);
    for (tenant, upn) in [
        (CONTOSO, "carol.white@contoso.co.uk"),
        (CONTOSO, "dan.brown@contoso.co.uk"),
        (FABRIKAM, "lee.gu@fabrikam.com"),
        (FABRIKAM, "nestor.wilke@fabrikam.com"),
        (LITWARE, "isaiah.langer@litware.com"),
        (LITWARE, "johanna.lorenz@litware.com"),
    ] {
        let u = one_linked(&env, tenant, upn);
        assert_eq!(with_email(&env, upn).len(), 1, "{upn} duplicated");
        // Never sent twice: the landed create was found by reading Halo, not re-sent.
        let sent = user_posts(&env)
            .iter()
            .filter(|r| r.get("id").is_none() && r["azureoid"] == u["azureoid"])
            .count();
        assert_eq!(sent, 1, "{upn} create sent {sent} times");
    }
    assert_eq!(
        first.status.code(),
        Some(0),
        "the run that lost the connection should have found its creates: {}",
        text(&first.stderr)
    );
    let writes = env.halo_posts();
    run_ok(&env, &["sync"]);
    assert_eq!(env.halo_posts(), writes);
}

/// The reasons of a plan's user updates.
fn update_reasons(plan: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = plan["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["changes"].as_array().unwrap())
        .filter(|c| c["action"] == "update")
        .map(|c| {
            (
                c["label"].as_str().unwrap().to_string(),
                c["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_reason_says_whether_entra_changed_or_halo_was_edited_since_the_last_sync() {
    let env = Env::new(&opts());
    run_ok(&env, &["sync"]);
    let bob = 1002;
    let alice = 1001;
    env.em.with_state(|s| {
        // Changed in Entra since the sync.
        assert!(s.update_user(CONTOSO, "bob.jones@contoso.co.uk", |u| {
            u["jobTitle"] = json!("Finance Director");
        }));
        // Edited in Halo: a technician retyped Alice's first name; Entra still says what it said.
        let alice = s
            .halo_records_mut("Users")
            .iter_mut()
            .find(|u| u["id"] == json!(alice))
            .unwrap();
        alice["firstname"] = json!("Ally");
    });
    let out = env.run(&["-o", "json", "diff"]);
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        update_reasons(&plan),
        [
            (
                "Alice.Smith@Contoso.co.uk".to_string(),
                "first name edited in Halo (Entra unchanged since the last sync)".to_string()
            ),
            (
                "bob.jones@contoso.co.uk".to_string(),
                "job title changed in Entra since the last sync".to_string()
            ),
        ],
        "{plan}"
    );
    // `diff` wrote no state: a second diff says the same, and the sync writes Entra's values back.
    let again = env.run(&["-o", "json", "diff"]);
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(update_reasons(&again), update_reasons(&plan));
    run_ok(&env, &["sync"]);
    assert_eq!(halo_user(&env, alice)["firstname"], json!("Alice"));
    assert_eq!(halo_user(&env, bob)["title"], json!("Finance Director"));
}
