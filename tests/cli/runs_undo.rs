//! `runs` and `undo`: the journal listed in every format, one run shown like a plan, a run of
//! deactivations taken back exactly, a record edited in Halo since left alone and reported, `--dry-run`
//! writing nothing, and an undo undone giving back the first run's end state.

use serde_json::{Value, json};

use crate::converge::{assert_converged, halo_end_state, journal_files};
use crate::support::{Env, clean, text};

fn ok(env: &Env, args: &[&str]) -> std::process::Output {
    let out = env.run(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

fn json_of(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out.stdout)))
}

/// The Entra users of Contoso linked to an active Halo contact: (upn, Halo id).
fn contoso_linked(env: &Env) -> Vec<(String, i64)> {
    env.em.with_state(|s| {
        let users = s.customer_named("Contoso Ltd").unwrap().users.clone();
        users
            .iter()
            .filter_map(|u| {
                let oid = u["id"].as_str()?.to_lowercase();
                let contact = s.halo_records("Users").iter().find(|h| {
                    h["azureoid"].as_str().map(str::to_lowercase).as_deref() == Some(oid.as_str())
                        && h["inactive"] != true
                })?;
                Some((
                    u["userPrincipalName"].as_str()?.to_string(),
                    contact["id"].as_i64()?,
                ))
            })
            .collect()
    })
}

fn contact(env: &Env, id: i64) -> Value {
    env.em
        .with_state(|s| s.halo_record("Users", id).cloned())
        .unwrap()
}

/// Run 1 syncs the estate; run 2 deactivates two Contoso leavers and updates a third user's title.
/// Returns (leavers' Halo ids, the retitled contact's id, Halo's state after run 1 and after run 2).
fn two_runs(env: &Env) -> (Vec<i64>, i64, Vec<String>, Vec<String>) {
    ok(env, &["-o", "json", "sync"]);
    let linked = contoso_linked(env);
    assert!(linked.len() >= 3, "{linked:?}");
    let after_first = halo_end_state(env);
    env.em.with_state(|s| {
        for (upn, _) in &linked[..2] {
            assert!(s.remove_user("Contoso Ltd", upn));
        }
        assert!(s.update_user("Contoso Ltd", &linked[2].0, |u| {
            u["jobTitle"] = json!("Head of Undo");
        }));
    });
    let out = ok(env, &["-o", "json", "sync"]);
    let plan = json_of(&out);
    assert_eq!(plan["summary"]["deactivate"], 2, "{}", plan["summary"]);
    let leavers: Vec<i64> = linked[..2].iter().map(|(_, id)| *id).collect();
    for id in &leavers {
        assert_eq!(contact(env, *id)["inactive"], true);
    }
    assert_eq!(contact(env, linked[2].1)["title"], "Head of Undo");
    (leavers, linked[2].1, after_first, halo_end_state(env))
}

#[test]
fn runs_lists_the_journal_newest_first_in_every_format_and_shows_one_run_like_a_plan() {
    let env = Env::new(&clean());
    let empty = ok(&env, &["-o", "json", "runs"]);
    assert_eq!(json_of(&empty)["runs"], json!([]));
    two_runs(&env);
    // A sync with nothing to write is not journaled.
    ok(&env, &["-o", "json", "sync"]);

    let doc = json_of(&ok(&env, &["-o", "json", "runs"]));
    assert_eq!(doc["version"], 1);
    let runs = doc["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{doc}");
    assert_eq!(runs[0]["run"], 2);
    assert_eq!(runs[1]["run"], 1);
    assert_eq!(runs[0]["command"], "sync");
    assert_eq!(runs[0]["changes"]["deactivate"], 2, "{doc}");
    // The title change, and the licence seat counts the leavers freed.
    assert!(runs[0]["changes"]["update"].as_u64().unwrap() >= 1, "{doc}");
    assert_eq!(runs[0]["exit_code"], 0);
    assert_eq!(runs[0]["tenants"], 3);
    assert_eq!(runs[0]["modules"], json!(["users", "licences"]));
    assert!(runs[1]["changes"]["create"].as_u64().unwrap() > 0, "{doc}");

    let table = text(&ok(&env, &["-o", "table", "runs"]).stdout);
    let first_row = table
        .lines()
        .position(|l| l.contains("2 deactivate"))
        .unwrap();
    let second_row = table.lines().position(|l| l.contains(" create")).unwrap();
    assert!(first_row < second_row, "newest first:\n{table}");
    let md = text(&ok(&env, &["-o", "markdown", "runs"]).stdout);
    assert!(
        md.contains("| run |") && md.contains("2 deactivate"),
        "{md}"
    );

    // One run, like a plan: its changes with the fields' old and new values.
    let plan = json_of(&ok(&env, &["-o", "json", "runs", "2"]));
    assert_eq!(plan["summary"]["deactivate"], 2, "{plan}");
    let deactivations: Vec<&Value> = plan["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["changes"].as_array().unwrap())
        .filter(|c| c["action"] == "deactivate")
        .collect();
    assert!(deactivations.iter().all(|c| c["halo_id"].is_i64()
        && c["fields"][0]["field"] == "inactive"
        && c["fields"][0]["from"] == false
        && c["fields"][0]["to"] == true));
    let shown = text(&ok(&env, &["-o", "table", "runs", "2"]).stdout);
    assert!(
        shown.contains("deactivate") && shown.contains("Contoso"),
        "{shown}"
    );

    let missing = env.run(&["runs", "9"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing.stderr).contains("runs 1 to 2"),
        "{}",
        text(&missing.stderr)
    );
}

#[test]
fn undo_restores_the_deactivated_exactly_and_undoing_the_undo_gives_the_runs_end_state() {
    let env = Env::new(&clean());
    let (leavers, retitled, after_first, after_second) = two_runs(&env);

    // --dry-run shows the inverse plan and writes nothing.
    let posts = env.halo_posts();
    let dry = json_of(&ok(&env, &["-o", "json", "undo", "2", "--dry-run"]));
    assert_eq!(dry["summary"]["reactivate"], 2, "{}", dry["summary"]);
    assert!(
        dry["summary"]["update"].as_u64().unwrap() >= 1,
        "{}",
        dry["summary"]
    );
    assert_eq!(env.halo_posts(), posts, "undo --dry-run wrote to Halo");
    assert_eq!(journal_files(&env.dir.path().join("state")).len(), 2);

    let undo = json_of(&ok(&env, &["-o", "json", "undo", "2"]));
    assert_eq!(undo["summary"]["reactivate"], 2);
    for id in &leavers {
        assert_eq!(contact(&env, *id)["inactive"], false);
    }
    assert_ne!(contact(&env, retitled)["title"], "Head of Undo");
    assert_converged(&env, &after_first, "undo of run 2");
    // Journaled as a run of its own, naming the run it took back.
    let runs = json_of(&ok(&env, &["-o", "json", "runs"]));
    assert_eq!(runs["runs"][0]["run"], 3);
    assert_eq!(runs["runs"][0]["command"], "undo");
    assert_eq!(runs["runs"][0]["undo_of"], 2);

    // Undoing the undo gives back run 2's end state.
    ok(&env, &["-o", "json", "undo", "3"]);
    assert_converged(&env, &after_second, "undo of the undo");
    for id in &leavers {
        assert_eq!(contact(&env, *id)["inactive"], true);
    }
}

#[test]
fn undo_leaves_a_record_edited_in_halo_since_alone_and_reports_it() {
    let env = Env::new(&clean());
    let (leavers, retitled, _, _) = two_runs(&env);
    // A technician edits the retitled contact by hand after run 2.
    env.em.with_state(|s| {
        let users = s.halo_records_mut("Users");
        let u = users.iter_mut().find(|u| u["id"] == retitled).unwrap();
        u["title"] = json!("Edited by hand");
    });
    let out = ok(&env, &["-o", "json", "undo", "2"]);
    let plan = json_of(&out);
    assert_eq!(plan["summary"]["reactivate"], 2);
    let touched: Vec<&Value> = plan["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["changes"].as_array().unwrap())
        .filter(|c| c["halo_id"] == retitled)
        .collect();
    assert!(touched.is_empty(), "{touched:?}");
    let conflicts: Vec<&Value> = plan["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["conflicts"].as_array().unwrap())
        .collect();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0]["halo_ids"], json!([retitled]));
    let reason = conflicts[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("changed in Halo since run 2") && reason.contains("Edited by hand"),
        "{reason}"
    );
    assert!(text(&out.stderr).contains("changed in Halo since run 2"));
    assert_eq!(contact(&env, retitled)["title"], "Edited by hand");
    for id in &leavers {
        assert_eq!(contact(&env, *id)["inactive"], false);
    }
}

#[test]
fn undo_never_deletes_a_create_and_deactivates_it_only_when_asked() {
    let mut opts = clean();
    opts.extra.push((
        "[safety]",
        "max_deactivations = 1\nmax_deactivation_percent = 10.0".into(),
    ));
    let env = Env::new(&opts);
    ok(&env, &["-o", "json", "sync"]);
    let users_before = env.em.with_state(|s| s.halo_records("Users").len());
    let plan = json_of(&ok(&env, &["-o", "json", "undo", "1", "--dry-run"]));
    let notes: Vec<&str> = plan["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["notes"].as_array().unwrap())
        .filter_map(Value::as_str)
        .collect();
    assert!(
        notes.iter().any(|n| n.contains("never deleted")),
        "{notes:?}"
    );
    assert_eq!(plan["summary"]["deactivate"], 0);

    // Deactivating every created contact is over the guard's limits: held back, exit 3.
    let out = env.run(&["-o", "json", "undo", "1", "--deactivate-created"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let created = json_of(&out)["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["held_back"].as_array().unwrap())
        .flat_map(|h| h["changes"].as_array().unwrap())
        .count();
    assert!(created > 0);
    let out = ok(
        &env,
        &[
            "-o",
            "json",
            "undo",
            "1",
            "--deactivate-created",
            "--allow-deactivations",
        ],
    );
    assert!(json_of(&out)["summary"]["deactivate"].as_u64().unwrap() > 0);
    assert_eq!(
        env.em.with_state(|s| s.halo_records("Users").len()),
        users_before,
        "a record was deleted or added"
    );
}
