//! `[halo] bulk_read = "report"` (SPEC 7 "Report reads"): the users, guard and licences scenarios by
//! report, the same end state as list reads, the steady-state cost, the 403 fallback, and reports that
//! fail or come back empty.

use csp_sync_emulator::{Api, RequestRecord};
use serde_json::{Value, json};

use crate::estate::ConfigOptions;
use crate::support::{Env, run_ok, text};
use crate::{licences, users};

fn by_report(mut o: ConfigOptions) -> ConfigOptions {
    o.extra.push(("[halo]", "bulk_read = \"report\"".into()));
    o
}

#[test]
fn users_first_sync_by_report() {
    users::first_sync_with(&by_report(users::opts()));
}

#[test]
fn users_second_sync_by_report_writes_nothing() {
    users::second_sync_with(&by_report(users::opts()));
}

#[test]
fn users_entra_changes_by_report() {
    users::entra_changes_with(&by_report(users::with(
        users::opts(),
        "[safety]",
        "max_deactivations = 10",
    )));
}

#[test]
fn users_leaver_wave_guard_by_report() {
    users::leaver_wave_with(&users::leaver_wave_opts(by_report(users::opts())));
}

#[test]
fn users_empty_source_guard_by_report() {
    users::empty_source_with(&by_report(users::opts()));
}

#[test]
fn licences_first_sync_by_report() {
    licences::first_sync_with(&by_report(licences::licences_only(false)));
}

#[test]
fn licences_changes_by_report() {
    licences::changes_with(&by_report(licences::licences_only(false)));
}

/// Halo's users and licences, without the `_dont_fire_automations` flag the emulator keeps from the last
/// write (list reads write one field more: the tenant id their read does not return).
fn halo_state(env: &Env) -> Value {
    let strip = |records: &Vec<Value>| -> Vec<Value> {
        records
            .iter()
            .cloned()
            .map(|mut r| {
                if let Some(o) = r.as_object_mut() {
                    o.remove("_dont_fire_automations");
                }
                r
            })
            .collect()
    };
    env.em.with_state(|s| {
        json!({
            "users": strip(s.halo_records("Users")),
            "licences": strip(s.halo_records("SoftwareLicence")),
        })
    })
}

fn both_modules() -> ConfigOptions {
    users::with(
        ConfigOptions {
            modules: vec!["users", "licences"],
            ..users::opts()
        },
        "[safety]",
        "max_deactivations = 10",
    )
}

/// A first sync, Entra and Partner Center changes, a second sync: Halo ends the same whichever way it
/// was read.
#[test]
fn report_reads_end_where_list_reads_do() {
    let list = Env::new(&both_modules());
    let report = Env::new(&by_report(both_modules()));
    for env in [&list, &report] {
        run_ok(env, &["sync"]);
        env.em.with_state(|s| {
            assert!(s.update_user(
                "c0a7b1d2-3e4f-4a5b-8c6d-7e8f9a0b1c2d",
                "carol.white@contoso.co.uk",
                |u| u["accountEnabled"] = json!(false)
            ));
            assert!(s.update_user(
                "c0a7b1d2-3e4f-4a5b-8c6d-7e8f9a0b1c2d",
                "bob.jones@contoso.co.uk",
                |u| u["jobTitle"] = json!("Finance Director")
            ));
            let sub = &mut s.tenant_mut("Contoso Ltd").subscriptions[0];
            sub["quantity"] = json!(sub["quantity"].as_i64().unwrap() + 3);
        });
        run_ok(env, &["sync"]);
    }
    assert_same(&halo_state(&list), &halo_state(&report));
    // And neither has anything left to do.
    for env in [&list, &report] {
        let d = env.run(&["-o", "json", "diff", "--detailed-exitcode"]);
        assert_eq!(d.status.code(), Some(0), "{}", text(&d.stdout));
    }
}

/// The two Halo states are equal; on a difference, the differing records are shown (not all of them).
fn assert_same(a: &Value, b: &Value) {
    for key in ["users", "licences"] {
        let (x, y) = (a[key].as_array().unwrap(), b[key].as_array().unwrap());
        assert_eq!(
            x.len(),
            y.len(),
            "{key}: {} records by list, {} by report",
            x.len(),
            y.len()
        );
        for (r, s) in x.iter().zip(y) {
            assert_eq!(r, s, "{key} differ: by list, then by report");
        }
    }
}

fn halo_requests(env: &Env) -> Vec<RequestRecord> {
    env.em
        .requests()
        .into_iter()
        .filter(|r| r.api == Api::Halo)
        .collect()
}

fn describe(requests: &[RequestRecord]) -> Vec<String> {
    requests
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

#[test]
fn a_steady_state_run_costs_one_token_and_one_request_per_entity() {
    let env = Env::new(&by_report(both_modules()));
    run_ok(&env, &["sync"]);
    env.em.clear_requests();
    let out = run_ok(&env, &["-o", "json", "sync"]);
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        plan["halo_read"],
        json!({"Client": "list", "Site": "report", "Users": "report", "SoftwareLicence": "report"}),
        "{plan}"
    );
    let err = text(&out.stderr);
    assert!(
        err.contains(
            "Halo read: clients by list, sites by report, users by report, licences by report"
        ),
        "{err}"
    );
    let mut seen = describe(&halo_requests(&env));
    seen.sort();
    // The clients' list (one page: the estate has fewer than 100) keeps main_site_id, which no report
    // column holds.
    assert_eq!(
        seen,
        vec![
            "GET /api/Client",
            "POST /api/Report",
            "POST /api/Report",
            "POST /api/Report",
            "POST /auth/token",
        ],
        "{seen:?}"
    );
    // One report per entity, each naming its table.
    let sql: Vec<String> = halo_requests(&env)
        .iter()
        .filter(|r| r.path == "/api/Report")
        .map(|r| {
            r.body.as_ref().unwrap()[0]["sql"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for table in ["FROM USERS", "FROM SITE", "FROM Licence"] {
        assert_eq!(
            sql.iter().filter(|s| s.contains(table)).count(),
            1,
            "{sql:?}"
        );
    }
}

#[test]
fn with_assets_the_steady_state_adds_only_the_asset_pages() {
    let o = users::with(
        ConfigOptions {
            modules: vec!["users", "licences", "assets"],
            ..both_modules()
        },
        "[assets]",
        "asset_types = { windows = 1, ios = 3, default = 1 }\n\
         fields = { serialNumber = 2, model = 3, complianceState = 4, lastSyncDateTime = 5 }",
    );
    let env = Env::new(&by_report(o));
    run_ok(&env, &["sync"]);
    // The second sync still settles the new assets' primary users (one GET per asset, as with lists).
    run_ok(&env, &["sync"]);
    env.em.clear_requests();
    run_ok(&env, &["sync"]);
    let seen = describe(&halo_requests(&env));
    let reports = seen.iter().filter(|r| *r == "POST /api/Report").count();
    let tokens = seen.iter().filter(|r| *r == "POST /auth/token").count();
    let lists: Vec<&String> = seen
        .iter()
        .filter(|r| r.starts_with("GET "))
        .filter(|r| *r != "GET /api/Client")
        .collect();
    assert_eq!((reports, tokens), (3, 1), "{seen:?}");
    assert!(
        !lists.is_empty() && lists.iter().all(|r| r.starts_with("GET /api/Asset")),
        "{seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|r| r.starts_with("POST /api/") && r != "POST /api/Report"),
        "{seen:?}"
    );
}

#[test]
fn reports_refused_fall_back_to_lists_with_one_warning() {
    let list = Env::new(&both_modules());
    let refused = Env::new(&by_report(both_modules()));
    refused
        .em
        .with_state(|s| s.settings.halo_reports_forbidden = true);
    run_ok(&list, &["sync"]);
    let out = run_ok(&refused, &["-o", "json", "sync"]);
    let err = text(&out.stderr);
    assert_eq!(
        err.matches("read:reporting and edit:reporting").count(),
        1,
        "{err}"
    );
    assert!(err.contains("(403)"), "{err}");
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        plan["halo_read"]["Users"],
        json!("list_report_refused"),
        "{plan}"
    );
    assert_eq!(plan["halo_read"]["Client"], json!("list"), "{plan}");
    assert!(err.contains("users by list (report refused)"), "{err}");
    assert_same(&halo_state(&list), &halo_state(&refused));
}

/// Every way a report can fail leaves Halo untouched and the run failed with the read named.
fn assert_failed_read(env: &Env, want: &str) {
    let writes = env.halo_posts();
    let before = halo_state(env);
    let out = env.run(&["-o", "json", "sync"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(want), "{err}");
    assert!(err.contains("nothing was written"), "{err}");
    assert_eq!(
        env.halo_posts(),
        writes,
        "a failed report read wrote to Halo"
    );
    assert_eq!(halo_state(env), before);
}

#[test]
fn a_report_that_errors_fails_the_read_without_a_write_in_either_style() {
    for (as_load_error, array) in [(false, false), (true, false), (true, true)] {
        let env = Env::new(&by_report(both_modules()));
        env.em.with_state(|s| {
            // An older Halo whose Licence table lacks a column the query names.
            s.settings.halo_report_missing_columns =
                vec![("Licence".into(), "lconsumedcount".into())];
            s.settings.halo_report_errors_as_load_error = as_load_error;
            s.settings.halo_report_reply_array = array;
        });
        assert_failed_read(&env, "Invalid column name 'lconsumedcount'.");
        let reports: Vec<u16> = halo_requests(&env)
            .iter()
            .filter(|r| r.path == "/api/Report")
            .map(|r| r.status)
            .collect();
        let want = if as_load_error { 200 } else { 400 };
        assert!(reports.contains(&want), "{reports:?}");
    }
}

#[test]
fn a_report_with_no_rows_where_the_last_sync_saw_records_is_a_failed_read() {
    let env = Env::new(&by_report(both_modules()));
    run_ok(&env, &["sync"]);
    // Halo answers the users report with no rows (the list is not asked: the guard holds).
    env.em.with_state(|s| {
        s.halo.get_mut("Users").unwrap().clear();
    });
    assert_failed_read(&env, "the report returned no rows, but the last sync read");
    let d = env.run(&["diff"]);
    assert_eq!(d.status.code(), Some(1), "{}", text(&d.stderr));
}

#[test]
fn an_array_reply_reads_like_an_object_reply() {
    let object = Env::new(&by_report(both_modules()));
    let array = Env::new(&by_report(both_modules()));
    array
        .em
        .with_state(|s| s.settings.halo_report_reply_array = true);
    for env in [&object, &array] {
        run_ok(env, &["sync"]);
    }
    assert_same(&halo_state(&object), &halo_state(&array));
}

/// `doctor`'s checks of the named step whose name starts with `prefix`.
fn doctor_checks(env: &Env, prefix: &str) -> Vec<Value> {
    let out = env.run(&["-o", "json", "doctor"]);
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["check"].as_str().is_some_and(|n| n.starts_with(prefix)))
        .cloned()
        .collect()
}

#[test]
fn doctor_runs_each_report_for_one_row_and_says_how_a_sync_reads() {
    let env = Env::new(&by_report(both_modules()));
    let reports = doctor_checks(&env, "report of ");
    assert_eq!(reports.len(), 3, "{reports:?}");
    assert!(
        reports.iter().all(|c| c["status"] == json!("ok")),
        "{reports:?}"
    );
    let paths = doctor_checks(&env, "read paths");
    assert_eq!(
        paths[0]["detail"],
        json!("a sync reads clients by list, sites by report, users by report, licences by report"),
        "{paths:?}"
    );
    // Refused: a warning, and the lists.
    env.em
        .with_state(|s| s.settings.halo_reports_forbidden = true);
    let reports = doctor_checks(&env, "report of ");
    assert!(
        reports.iter().all(|c| c["status"] == json!("warn")),
        "{reports:?}"
    );
    let paths = doctor_checks(&env, "read paths");
    assert!(
        paths[0]["detail"]
            .as_str()
            .unwrap()
            .contains("users by list (report refused)"),
        "{paths:?}"
    );
    // A column this Halo lacks: that report fails, as a sync's read would.
    env.em.with_state(|s| {
        s.settings.halo_reports_forbidden = false;
        s.settings.halo_report_missing_columns = vec![("Licence".into(), "lconsumedcount".into())];
    });
    let reports = doctor_checks(&env, "report of licences");
    assert_eq!(reports[0]["status"], json!("fail"), "{reports:?}");
    assert!(
        reports[0]["detail"]
            .as_str()
            .unwrap()
            .contains("Invalid column name 'lconsumedcount'."),
        "{reports:?}"
    );
    // With list reads, the same check names the lists.
    let list = Env::new(&both_modules());
    let paths = doctor_checks(&list, "read paths");
    assert_eq!(
        paths[0]["detail"],
        json!("a sync reads clients by list, sites by list, users by list, licences by list")
    );
}

#[test]
fn an_older_halo_without_azureoid_on_the_list_reads_users_by_one_report() {
    let mut sc = crate::support::small();
    sc.set_halo_list_azureoid(false);
    let older = Env::with(sc, &both_modules());
    let current = Env::new(&both_modules());
    let out = run_ok(&older, &["-o", "json", "sync"]);
    run_ok(&current, &["sync"]);
    let err = text(&out.stderr);
    assert!(
        err.contains("no `azureoid`") && err.contains("one SQL report"),
        "{err}"
    );
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        plan["halo_read"]["Users"],
        json!("list_and_report"),
        "{plan}"
    );
    let seen = describe(&halo_requests(&older));
    assert!(
        !seen.iter().any(|r| r.starts_with("GET /api/Users/")),
        "{seen:?}"
    );
    assert_eq!(
        seen.iter().filter(|r| *r == "POST /api/Report").count(),
        1,
        "{seen:?}"
    );
    assert_same(&halo_state(&current), &halo_state(&older));
    let d = older.run(&["-o", "json", "diff", "--detailed-exitcode"]);
    assert_eq!(d.status.code(), Some(0), "{}", text(&d.stdout));
}
