//! Black-box billing: `sync billing` against the emulator's closed period (two mapped customers with usage,
//! an unmapped one), reruns, a crash between the Halo write and the state write, a failed export, the
//! estimate in `diff`, and the SAS signature kept out of every output.

use csp_sync_emulator::{Api, Fault, FaultKind};
use serde_json::Value;

use crate::estate;
use crate::support::{self, Env, text};

fn opts() -> estate::ConfigOptions {
    estate::ConfigOptions {
        modules: vec!["billing"],
        extra: vec![(
            "[billing]",
            "markup_percent = 10.0\nmarkup = { \"Virtual Machines\" = 8.0 }".to_string(),
        )],
        ..support::clean()
    }
}

fn invoices(env: &Env) -> Vec<Value> {
    env.em
        .scenario()
        .halo
        .get("Invoice")
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| {
            i["reference"]
                .as_str()
                .is_some_and(|r| r.starts_with("CSP "))
        })
        .collect()
}

/// The plan of a `diff` or `sync` JSON output (`sync` nests it under `plan`).
fn plan_of(v: &Value) -> &Value {
    if v["plan"].is_object() { &v["plan"] } else { v }
}

fn cents(v: &Value) -> i64 {
    (v.as_f64().unwrap() * 100.0).round() as i64
}

fn line_sum(inv: &Value, field: &str) -> i64 {
    inv["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| cents(&l[field]))
        .sum()
}

#[test]
fn sync_billing_makes_one_draft_per_client_and_a_rerun_nothing() {
    let env = Env::new(&opts());
    let out = env.run(&["-o", "json", "sync", "billing"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let inv = invoices(&env);
    assert_eq!(inv.len(), 2, "{inv:#?}");
    let contoso = inv
        .iter()
        .find(|i| i["client_id"] == 101)
        .expect("Contoso's invoice");
    assert_eq!(contoso["posted"], false);
    let invoice_id = env.em.scenario().billing.invoices[1]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(contoso["reference"], format!("CSP {invoice_id}"));
    // VMs (88.32) and Storage (10.66) on one subscription, App Service net of its credit (12.60) on the other.
    assert_eq!(contoso["lines"].as_array().unwrap().len(), 3);
    assert_eq!(line_sum(contoso, "unit_cost"), 11_158);
    // 88.32 x 1.08 + 10.66 x 1.10 + 12.60 x 1.10 = 95.3856 + 11.726 + 13.86
    assert_eq!(line_sum(contoso, "unit_price"), 12_097);
    for l in contoso["lines"].as_array().unwrap() {
        assert_eq!(l["qty_order"], 1);
        assert!(
            l["item_longdescription"]
                .as_str()
                .unwrap()
                .contains("1 Hour")
                || l["item_longdescription"].as_str().unwrap().contains("GB")
        );
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let period = &v["plan"]["billing"][0];
    let period = if period.is_null() {
        &v["billing"][0]
    } else {
        period
    };
    assert_eq!(period["export_total"], 129.5309);
    assert!(
        period["customers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["status"] == "unmapped")
    );

    let before = env.halo_posts();
    let again = env.run(&["-o", "json", "sync", "billing"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(env.halo_posts(), before, "a rerun writes nothing");
    assert_eq!(invoices(&env).len(), 2);
    assert_eq!(
        env.em
            .exports_started()
            .iter()
            .filter(|e| **e == invoice_id)
            .count(),
        1,
        "a done period is not exported again"
    );
}

#[test]
fn a_crash_between_the_halo_write_and_the_state_write_bills_nothing_twice() {
    let env = Env::new(&opts());
    // The invoice batch lands in Halo, then the connection drops: csp-sync cannot know it landed.
    env.em
        .inject(Fault::new(Api::Halo, "/api/Invoice", FaultKind::DropAfterWrite).method("POST"));
    let _ = env.run(&["-o", "json", "sync", "billing"]);
    assert_eq!(invoices(&env).len(), 2);
    // And the state is lost as if the process had died before writing it.
    let _ = std::fs::remove_file(env.dir.path().join("state/billing.json"));
    let out = env.run(&["-o", "json", "sync", "billing"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(invoices(&env).len(), 2, "never billed twice");
}

#[test]
fn a_failed_export_creates_nothing_and_a_rerun_bills_once() {
    let mut sc = support::small();
    let id = sc.billing.invoices[1]["id"].as_str().unwrap().to_string();
    sc.billing.usage.get_mut(&id).unwrap().fail =
        Some(serde_json::json!({"code": "1001", "message": "Internal error"}));
    let env = Env::with(sc, &opts());
    let out = env.run(&["-o", "json", "sync", "billing"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(invoices(&env).is_empty());
    env.em
        .with_state(|st| st.billing.usage.get_mut(&id).unwrap().fail = None);
    let out = env.run(&["-o", "json", "sync", "billing"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(invoices(&env).len(), 2);
    let _ = env.run(&["-o", "json", "sync", "billing"]);
    assert_eq!(invoices(&env).len(), 2);
}

#[test]
fn diff_shows_the_estimate_and_never_the_sas_signature() {
    let env = Env::new(&opts());
    let out = env.run(&["-vvv", "-o", "json", "diff", "billing"]);
    assert!(
        out.status.success() || out.status.code() == Some(0),
        "{}",
        text(&out.stderr)
    );
    let sig = env.em.scenario().billing.export.sas_sig;
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!all.contains(&sig), "the SAS signature leaked");
    assert!(!all.contains("s3cr3t"), "the SAS signature leaked");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let est = &v["estimates"][0];
    assert_eq!(est["period"], "current");
    assert_eq!(est["total_cost"], 23.04);
    // The estimate is not a change.
    let table = env.run(&["-o", "table", "diff", "billing", "--detailed-exitcode"]);
    assert_eq!(
        table.status.code(),
        Some(2),
        "the closed period's invoices are pending"
    );
    assert!(text(&table.stdout).contains("current (estimate)"));
    assert!(invoices(&env).is_empty(), "diff writes nothing");
}

#[test]
fn sync_billing_period_names_one_month() {
    let env = Env::new(&opts());
    let out = env.run(&["sync", "billing", "--period", "1999-01"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--period 1999-01"),
        "{}",
        text(&out.stderr)
    );
    let bad = env.run(&["sync", "billing", "--period", "2028-13"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains("YYYY-MM"),
        "{}",
        text(&bad.stderr)
    );
}

/// A period whose export outlives a run: the run leaves it pending (kept in the state); it finishes
/// between runs and its manifest's SAS expires before the rerun. The rerun resumes it, is refused the
/// files (403 AuthenticationFailed), says so in one line, starts a new export at once and bills the period
/// in that same run, once.
#[test]
fn a_resumed_export_whose_sas_expired_is_exported_again_in_the_same_run() {
    let mut sc = support::small();
    // Longer than a run's 20 polls.
    sc.billing.export.running_polls = 1_000;
    let id = sc.billing.invoices[1]["id"].as_str().unwrap().to_string();
    let env = Env::with(sc, &opts());
    let first = env.run(&["-o", "json", "sync", "billing"]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let v: Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(plan_of(&v)["billing"][0]["status"], "pending", "{v:#}");
    assert!(invoices(&env).is_empty());
    let state = std::fs::read_to_string(env.dir.path().join("state/billing.json")).unwrap();
    assert!(
        state.contains("/operations/"),
        "the running export is kept: {state}"
    );

    // The export finishes while no run is going, with a SAS that has expired by the next run.
    env.em
        .with_state(|s| s.billing.export.sas_lifetime_secs = 0);
    env.em.finish_exports();
    env.em.with_state(|s| {
        s.billing.export.sas_lifetime_secs = 3600;
        s.billing.export.running_polls = 1;
    });
    let second = env.run(&["-o", "json", "sync", "billing"]);
    let err = text(&second.stderr);
    assert!(second.status.success(), "{err}");
    let restarted: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("a new export is started in this run"))
        .collect();
    assert_eq!(restarted.len(), 1, "one line says so: {err}");
    assert!(
        restarted[0].contains(&id)
            && restarted[0].contains("AuthenticationFailed")
            && restarted[0].contains("Signature not valid in the specified time frame"),
        "{err}"
    );
    let refused: Vec<u16> = env
        .em
        .requests()
        .iter()
        .filter(|q| q.api == Api::Blob)
        .map(|q| q.status)
        .collect();
    assert_eq!(refused.first(), Some(&403), "{refused:?}");
    assert_eq!(
        refused.iter().filter(|s| **s == 403).count(),
        1,
        "{refused:?}"
    );
    assert_eq!(
        env.em
            .exports_started()
            .iter()
            .filter(|e| **e == id)
            .count(),
        2,
        "the stored export, then one new one"
    );
    let inv = invoices(&env);
    assert_eq!(inv.len(), 2, "{inv:#?}");
    let contoso = inv.iter().find(|i| i["client_id"] == 101).unwrap();
    assert_eq!(line_sum(contoso, "unit_cost"), 11_158);
    assert_eq!(line_sum(contoso, "unit_price"), 12_097);
    let v: Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(plan_of(&v)["billing"][0]["status"], "read", "{v:#}");

    // Done: a third run neither exports nor writes.
    let posts = env.halo_posts();
    let third = env.run(&["-o", "json", "sync", "billing"]);
    assert!(third.status.success(), "{}", text(&third.stderr));
    assert_eq!(env.halo_posts(), posts);
    assert_eq!(invoices(&env).len(), 2, "no duplicate invoice");
    assert_eq!(
        env.em
            .exports_started()
            .iter()
            .filter(|e| **e == id)
            .count(),
        2
    );
}

/// An export whose fresh SAS is refused too (here: issued already expired) is not started again and
/// again: the period fails, nothing is billed, and the next run tries once more.
#[test]
fn a_refused_sas_on_a_new_export_fails_the_period_without_a_second_export() {
    let mut sc = support::small();
    sc.billing.export.sas_lifetime_secs = 0;
    let id = sc.billing.invoices[1]["id"].as_str().unwrap().to_string();
    let env = Env::with(sc, &opts());
    let out = env.run(&["-o", "json", "sync", "billing"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("refused the manifest's SAS"), "{err}");
    assert!(!err.contains("a new export is started"), "{err}");
    assert_eq!(
        env.em
            .exports_started()
            .iter()
            .filter(|e| **e == id)
            .count(),
        1
    );
    assert!(invoices(&env).is_empty());
}

/// The unbilled estimate is read by `diff` only (SPEC 7: shown by `diff`, never written): `sync` starts no
/// unbilled export; each `diff` starts exactly one and waits a short budget for it.
#[test]
fn only_diff_reads_the_estimate_and_within_a_short_budget() {
    let env = Env::new(&opts());
    let unbilled = |env: &Env| {
        env.em
            .exports_started()
            .iter()
            .filter(|e| *e == "current")
            .count()
    };
    let sync = env.run(&["-o", "json", "sync", "billing"]);
    assert!(sync.status.success(), "{}", text(&sync.stderr));
    let v: Value = serde_json::from_slice(&sync.stdout).unwrap();
    assert!(
        plan_of(&v)["billing"][0]["status"] == "read"
            && plan_of(&v)["estimates"]
                .as_array()
                .is_none_or(Vec::is_empty),
        "{v:#}"
    );
    let dry = env.run(&["-o", "json", "sync", "billing", "--dry-run"]);
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    assert_eq!(unbilled(&env), 0, "sync starts no unbilled export");

    let diff = env.run(&["-o", "json", "diff", "billing"]);
    assert!(diff.status.success(), "{}", text(&diff.stderr));
    let v: Value = serde_json::from_slice(&diff.stdout).unwrap();
    assert_eq!(v["estimates"][0]["status"], "read");
    assert_eq!(unbilled(&env), 1, "one unbilled export per diff");

    // An estimate Microsoft takes long to prepare: the diff polls it six times, not twenty, then shows it
    // pending.
    env.em
        .with_state(|s| s.billing.export.running_polls = 1_000);
    let before = env.em.requests().len();
    let slow = env.run(&["-o", "json", "diff", "billing"]);
    assert!(slow.status.success(), "{}", text(&slow.stderr));
    let v: Value = serde_json::from_slice(&slow.stdout).unwrap();
    assert_eq!(v["estimates"][0]["status"], "pending");
    assert_eq!(unbilled(&env), 2);
    let polls = env.em.requests()[before..]
        .iter()
        .filter(|q| q.path.contains("/billing/operations/"))
        .count();
    assert_eq!(polls, 6, "the estimate's poll budget");

    // Graph asks for 30 s between polls: the minute allows three polls, none sooner than asked.
    env.em
        .with_state(|s| s.billing.export.retry_after = "30".into());
    let before = env.em.requests().len();
    let slower = env.run(&["-o", "json", "diff", "billing"]);
    assert!(slower.status.success(), "{}", text(&slower.stderr));
    let polls = env.em.requests()[before..]
        .iter()
        .filter(|q| q.path.contains("/billing/operations/"))
        .count();
    assert_eq!(polls, 3, "a minute of Retry-After: 30");
    assert_eq!(unbilled(&env), 3);
}
