//! What the reliability tests compare: Halo's end state after a run full of faults against a clean run's,
//! duplicates, and helpers to start, signal and wait for a run in the background.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use csp_sync_emulator::Api;
use serde_json::Value;

use crate::estate::ConfigOptions;
use crate::support::{Env, text};

/// The Halo entities a sync of users and licences writes.
const ENTITIES: [&str; 4] = ["Client", "Site", "Users", "SoftwareLicence"];

/// Halo's records without their ids (ids depend on the order creates landed in), each as canonical JSON,
/// sorted: equal for two runs that left Halo holding the same records.
pub fn halo_end_state(env: &Env) -> Vec<String> {
    env.em.with_state(|s| {
        let mut out = Vec::new();
        for e in ENTITIES {
            for r in s.halo_records(e) {
                let mut r = r.clone();
                if let Some(o) = r.as_object_mut() {
                    o.remove("id");
                }
                out.push(format!("{e} {r}"));
            }
        }
        out.sort();
        out
    })
}

/// Halo's end state after a clean sync of `opts`'s estate (and checks a second sync has nothing to do).
pub fn clean_end_state(opts: &ConfigOptions) -> Vec<String> {
    let env = Env::new(opts);
    let out = env.run(&["-o", "json", "sync"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let posts = env.halo_posts();
    assert!(posts > 0, "the clean sync wrote nothing");
    let again = env.run(&["-o", "json", "sync"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert_eq!(env.halo_posts(), posts, "a second clean sync wrote to Halo");
    halo_end_state(&env)
}

/// Halo records sharing a natural key (contacts by Entra object id, licences by subscription), as
/// "entity key xN".
pub fn duplicates(env: &Env) -> Vec<String> {
    env.em.with_state(|s| {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for (entity, key) in [
            ("Users", "azureoid"),
            ("SoftwareLicence", "third_party_product"),
            ("Client", "name"),
        ] {
            for r in s.halo_records(entity) {
                if let Some(k) = r[key].as_str().filter(|k| !k.is_empty()) {
                    *seen
                        .entry(format!("{entity} {}", k.to_lowercase()))
                        .or_default() += 1;
                }
            }
        }
        seen.into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(k, n)| format!("{k} x{n}"))
            .collect()
    })
}

/// Asserts the end state equals the clean run's and holds no duplicate; says what differs.
pub fn assert_converged(env: &Env, clean: &[String], case: &str) {
    let dups = duplicates(env);
    assert!(dups.is_empty(), "{case}: duplicates in Halo: {dups:?}");
    let got = halo_end_state(env);
    let missing: Vec<&String> = clean.iter().filter(|r| !got.contains(r)).collect();
    let extra: Vec<&String> = got.iter().filter(|r| !clean.contains(r)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{case}: Halo differs from a clean run's:\n  missing {missing:#?}\n  extra {extra:#?}"
    );
}

/// Runs `sync` until it exits 0 with nothing left to write, at most `reruns` more times; returns the exit
/// codes in order.
pub fn sync_until_clean(env: &Env, reruns: usize) -> Vec<Option<i32>> {
    let mut codes = Vec::new();
    for _ in 0..=reruns {
        let before = env.halo_posts();
        let out = env.run(&["-o", "json", "sync"]);
        codes.push(out.status.code());
        if out.status.code() == Some(0) && env.halo_posts() == before {
            break;
        }
        assert!(
            !text(&out.stderr).contains("panicked"),
            "{}",
            text(&out.stderr)
        );
    }
    codes
}

/// A run started in the background with its stderr in a file.
pub struct Background {
    pub child: Child,
    stderr: std::path::PathBuf,
}

impl Background {
    pub fn start(env: &Env, args: &[&str], name: &str) -> Background {
        let stderr = env.dir.path().join(format!("{name}.stderr"));
        let mut cmd = env.command(args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap());
        Background {
            child: cmd.spawn().unwrap(),
            stderr,
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Sends a signal by name (`TERM`, `INT`).
    pub fn signal(&self, name: &str) {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// Waits for the process to end (at most two minutes, then it is killed and the test fails).
    pub fn wait(&mut self) -> Option<i32> {
        self.wait_at_most(Duration::from_secs(120))
    }

    /// Waits for the process to end; fails the test when it is still running after `limit`.
    pub fn wait_at_most(&mut self, limit: Duration) -> Option<i32> {
        let status = wait_for("the run to end", limit, || self.child.try_wait().unwrap());
        status.code()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `f` until it gives a value; fails the test after `limit` (a bound on a hang, not a timing check).
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until a request to `api` with `method` whose path contains `path` has arrived at the emulator.
pub fn wait_for_arrival(env: &Env, api: Api, method: &str, path: &str) {
    wait_for(
        &format!("{method} {path} to arrive"),
        Duration::from_secs(120),
        || (env.em.arrived(api, method, path) > 0).then_some(()),
    );
}

/// The JSON lines of every journal file of the state directory, by run number.
pub fn journal_files(state: &Path) -> BTreeMap<u64, Vec<Value>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(state.join("runs"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(n) = name.strip_suffix(".jsonl").and_then(|n| n.parse().ok()) else {
            continue;
        };
        let lines = std::fs::read_to_string(e.path())
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        out.insert(n, lines);
    }
    out
}
