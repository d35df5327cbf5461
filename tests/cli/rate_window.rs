//! The Halo rate window persists across processes (SPEC 9, issue 15): runs started back to back or side by
//! side against one Halo together stay under `[halo] rate_limit`, so Halo never answers 429. The emulator's
//! Halo refuses over its own rolling window (halo-api.md 2.4: 429 "Rate Limit Reached", no `Retry-After`);
//! it is set to the window csp-sync is configured with, so each process alone would keep under it and only
//! a window shared between the processes keeps their sum under it too.

use csp_sync_emulator::Api;

use crate::estate::ConfigOptions;
use crate::support::{self, Env, text};

/// Requests per window of both the emulator and csp-sync; a sync of the small estate makes more than this,
/// so every run here waits on the window at least once.
const LIMIT: u32 = 6;
const SECS: u32 = 2;

fn env() -> Env {
    let opts = ConfigOptions {
        rate_limit: (LIMIT, SECS),
        ..support::clean()
    };
    let env = Env::new(&opts);
    env.em
        .with_state(|s| s.set_halo_rate_limit(Some((LIMIT as usize, u64::from(SECS)))));
    env
}

fn halo_api_requests(env: &Env) -> Vec<u16> {
    env.em
        .requests()
        .iter()
        .filter(|r| r.api == Api::Halo && r.path.starts_with("/api/"))
        .map(|r| r.status)
        .collect()
}

fn assert_ok(out: &std::process::Output, what: &str) {
    assert!(
        matches!(out.status.code(), Some(0 | 2)),
        "{what}: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn runs_back_to_back_and_side_by_side_never_make_halo_refuse() {
    let env = env();
    // Back to back: a sync, then a diff at once.
    let first = env.run(&["sync"]);
    assert_ok(&first, "first sync");
    let one_run = halo_api_requests(&env).len();
    assert!(
        one_run > LIMIT as usize,
        "a sync made {one_run} Halo requests, no more than one window: the test proves nothing"
    );
    let diff = env.run(&["diff"]);
    assert_ok(&diff, "diff right after the sync");

    // Side by side: a sync and a diff started together (the diff takes no run lock).
    let mut sync = env.command(&["sync"]);
    let mut diff = env.command(&["diff"]);
    let sync = sync
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let diff = diff
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (sync, diff) = (
        sync.wait_with_output().unwrap(),
        diff.wait_with_output().unwrap(),
    );
    assert_ok(&sync, "sync beside a diff");
    assert_ok(&diff, "diff beside a sync");

    let statuses = halo_api_requests(&env);
    let refused = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!(
        refused,
        0,
        "Halo answered 429 to {refused} of {} requests of four runs sharing one window",
        statuses.len()
    );
    let window = env.dir.path().join("state/halo-window.json");
    let kept: serde_json::Value = serde_json::from_slice(&std::fs::read(&window).unwrap()).unwrap();
    assert!(
        kept["sent_ms"].as_array().unwrap().len() <= LIMIT as usize,
        "the window file keeps more than one window: {kept}"
    );
}
