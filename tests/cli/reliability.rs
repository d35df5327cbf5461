//! The cases of "no duplicate and no lost write, whatever happens": two runs started at once, SIGTERM and
//! SIGINT during a Halo write, a second signal, SIGKILL mid-apply, an incomplete stored read, an unreadable
//! reply to a create. Each ends in the Halo state of a clean run with no duplicate.

use std::time::Duration;

use csp_sync_emulator::{Api, Fault, FaultKind};
use serde_json::Value;

use crate::converge::{
    Background, assert_converged, clean_end_state, journal_files, sync_until_clean, wait_for,
    wait_for_arrival,
};
use crate::support::{self, Env, clean, text};

fn held(path: &str, secs: u64) -> Fault {
    Fault::new(
        Api::Halo,
        path,
        FaultKind::Latency(Duration::from_secs(secs)),
    )
    .method("POST")
}

#[test]
fn of_two_runs_started_at_once_exactly_one_proceeds() {
    let want = clean_end_state(&clean());
    let rounds = 8;
    for round in 0..rounds {
        let env = Env::new(&clean());
        // The first Halo token request is slow, so whichever run gets the lock still holds it when the
        // other starts, however the two processes are scheduled.
        env.em.inject(Fault::new(
            Api::Halo,
            "/auth/token",
            FaultKind::Latency(Duration::from_millis(1500)),
        ));
        let mut a = Background::start(&env, &["-o", "json", "sync"], "a");
        let mut b = Background::start(&env, &["-o", "json", "sync"], "b");
        let mut codes = [a.wait(), b.wait()];
        codes.sort_unstable();
        assert_eq!(
            codes,
            [Some(0), Some(1)],
            "round {round}: a: {}\nb: {}",
            a.stderr(),
            b.stderr()
        );
        let loser = if a.stderr().contains("holds the lock") {
            a.stderr()
        } else {
            b.stderr()
        };
        assert!(
            loser.contains("holds the lock") && loser.contains("pid "),
            "round {round}: {loser}"
        );
        assert_converged(&env, &want, &format!("round {round}"));
    }
}

#[test]
fn sigterm_during_a_write_finishes_it_journals_it_and_exits_143() {
    let want = clean_end_state(&clean());
    let env = Env::new(&clean());
    env.em.inject(held("/api/Users", 2));
    let mut run = Background::start(&env, &["-o", "json", "sync"], "sync");
    wait_for_arrival(&env, Api::Halo, "POST", "/api/Users");
    run.signal("TERM");
    let code = run.wait();
    let err = run.stderr();
    assert_eq!(code, Some(143), "{err}");
    assert!(err.contains("stopped by SIGTERM"), "{err}");
    // The batch in flight was finished and journaled; nothing after it was started.
    let reqs = env.em.requests();
    let posts: Vec<_> = reqs
        .iter()
        .filter(|r| r.api == Api::Halo && r.method == "POST" && r.path.starts_with("/api/"))
        .collect();
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert_eq!(posts[0].status, 200);
    let journal = journal_files(&env.dir.path().join("state"));
    let lines = &journal[&1];
    let applied = lines.iter().filter(|l| l["type"] == "applied").count();
    let sent = posts[0]
        .body
        .as_ref()
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    assert_eq!(applied, sent, "{lines:?}");
    let end = lines.last().unwrap();
    assert_eq!(end["type"], "end");
    assert_eq!(end["exit_code"], 143);
    assert_eq!(end["stopped_by"], "SIGTERM");
    assert!(support::lock_released(&env));
    // State was written: the rerun continues from the stored delta links.
    assert!(env.dir.path().join("state/users").exists());

    let codes = sync_until_clean(&env, 1);
    assert_eq!(codes[0], Some(0), "{codes:?}");
    assert_converged(&env, &want, "after SIGTERM and a rerun");
}

#[test]
fn sigint_before_any_write_exits_130_and_writes_nothing() {
    let env = Env::new(&clean());
    env.em.inject(Fault::new(
        Api::Halo,
        "/api/Users",
        FaultKind::Latency(Duration::from_secs(2)),
    ));
    let mut run = Background::start(&env, &["-o", "json", "sync"], "sync");
    wait_for_arrival(&env, Api::Halo, "GET", "/api/Users");
    run.signal("INT");
    let code = run.wait();
    assert_eq!(code, Some(130), "{}", run.stderr());
    assert!(
        run.stderr().contains("before writing anything"),
        "{}",
        run.stderr()
    );
    assert_eq!(env.halo_posts(), 0);
    assert!(support::lock_released(&env));
}

#[test]
fn a_second_signal_exits_at_once_and_a_rerun_converges() {
    let want = clean_end_state(&clean());
    let env = Env::new(&clean());
    // The create batch lands at once, its reply is held for a minute.
    env.em.inject(
        Fault::new(
            Api::Halo,
            "/api/Users",
            FaultKind::SlowReply(Duration::from_secs(60)),
        )
        .method("POST"),
    );
    let mut run = Background::start(&env, &["-o", "json", "sync"], "sync");
    wait_for_arrival(&env, Api::Halo, "POST", "/api/Users");
    run.signal("TERM");
    wait_for(
        "the first signal to be seen",
        Duration::from_secs(30),
        || run.stderr().contains("signal again").then_some(()),
    );
    run.signal("INT");
    // Well before the reply comes: the run did not wait for it.
    let code = run.wait_at_most(Duration::from_secs(30));
    assert_eq!(code, Some(130), "{}", run.stderr());
    let journal = journal_files(&env.dir.path().join("state"));
    assert!(
        journal[&1].iter().all(|l| l["type"] != "end"),
        "{journal:?}"
    );
    assert!(support::lock_released(&env));
    // The batch landed without the run learning it: the rerun finds it in Halo instead of creating it again.
    let codes = sync_until_clean(&env, 1);
    assert_eq!(codes[0], Some(0), "{codes:?}");
    assert_converged(&env, &want, "after two signals and a rerun");
}

#[test]
fn sigkill_mid_apply_leaves_the_journal_of_what_landed_and_a_rerun_converges() {
    let want = clean_end_state(&clean());
    let env = Env::new(&clean());
    // Users are written first; the licence batch lands but its reply is held, and the run is killed.
    env.em.inject(
        Fault::new(
            Api::Halo,
            "/api/SoftwareLicence",
            FaultKind::SlowReply(Duration::from_secs(60)),
        )
        .method("POST"),
    );
    let mut run = Background::start(&env, &["-o", "json", "sync"], "sync");
    wait_for_arrival(&env, Api::Halo, "POST", "/api/SoftwareLicence");
    run.child.kill().unwrap();
    let _ = run.wait();
    let journal = journal_files(&env.dir.path().join("state"));
    let lines = &journal[&1];
    assert_eq!(lines[0]["type"], "start");
    assert!(lines.iter().all(|l| l["type"] != "end"), "{lines:?}");
    let journaled = lines
        .iter()
        .filter(|l| l["type"] == "applied" && l["entity"] == "Users")
        .filter(|l| l["halo_id"].is_i64())
        .count();
    let user_posts: usize = env
        .em
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/api/Users")
        .filter_map(|r| r.body.as_ref().and_then(Value::as_array).map(Vec::len))
        .sum();
    assert!(user_posts > 0);
    assert_eq!(journaled, user_posts, "{lines:?}");
    // The lock died with the process.
    assert!(support::lock_released(&env));
    let codes = sync_until_clean(&env, 1);
    assert_eq!(codes[0], Some(0), "{codes:?}");
    assert_converged(&env, &want, "after SIGKILL and a rerun");
}

#[test]
fn an_incomplete_stored_read_with_a_delta_link_deactivates_nobody() {
    let env = Env::new(&clean());
    let first = env.run(&["-o", "json", "sync"]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    // Drop one linked, active user from a tenant's stored read, keeping its delta link.
    let dir = env.dir.path().join("state/users");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let v: Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
            v["users"].as_array().is_some_and(|u| u.len() > 1) && v["delta_link"].is_string()
        })
        .expect("a stored read with users and a delta link");
    let mut stored: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let halo_oids: Vec<String> = env.em.with_state(|s| {
        s.halo_records("Users")
            .iter()
            .filter(|u| u["inactive"] != true)
            .filter_map(|u| u["azureoid"].as_str().map(str::to_lowercase))
            .collect()
    });
    let users = stored["users"].as_array_mut().unwrap();
    let pos = users
        .iter()
        .position(|u| {
            u["id"]
                .as_str()
                .is_some_and(|id| halo_oids.contains(&id.to_lowercase()))
        })
        .expect("a stored user linked to an active Halo contact");
    let dropped = users.remove(pos)["id"].as_str().unwrap().to_lowercase();
    std::fs::write(&file, serde_json::to_vec(&stored).unwrap()).unwrap();

    env.em.clear_requests();
    let out = env.run(&["-o", "json", "sync"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["summary"]["deactivate"], 0, "{}", plan["summary"]);
    let still_active = env.em.with_state(|s| {
        s.halo_records("Users").iter().any(|u| {
            u["azureoid"].as_str().map(str::to_lowercase).as_deref() == Some(dropped.as_str())
                && u["inactive"] != true
        })
    });
    assert!(still_active, "{dropped} was deactivated");
    // The tenant was read in full (`/users`, after a `$deltatoken=latest` for the new delta link), and its
    // stored read is whole again.
    let full_reads = env
        .em
        .requests()
        .iter()
        .filter(|r| r.path == "/v1.0/users" && r.query.contains("top=999"))
        .count();
    assert!(full_reads >= 1, "no full read");
    let stored: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert!(
        stored["users"].as_array().unwrap().iter().any(|u| u["id"]
            .as_str()
            .map(str::to_lowercase)
            .as_deref()
            == Some(dropped.as_str())),
        "the stored read still lacks {dropped}"
    );
}
