//! What the reliability tests compare: Halo's end state after a run full of faults against a clean run's,
//! duplicates, and helpers to start, signal and wait for a run in the background.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use csp_sync_emulator::{Api, RequestRecord};
use serde_json::Value;

use crate::estate::ConfigOptions;
use crate::support::{Env, text};

/// The Halo entities a sync writes (users, licences, assets, invoices).
const ENTITIES: [&str; 6] = [
    "Client",
    "Site",
    "Users",
    "SoftwareLicence",
    "Asset",
    "Invoice",
];

/// The Halo entities csp-sync creates, with the field it finds a created record again by (SPEC 7, 8):
/// contacts by Entra object id, licences by subscription, assets by Intune id, invoices by
/// `CSP <invoice id>` (one per client: the key is the client and the reference), clients by name.
const NATURAL_KEYS: [(&str, &str); 5] = [
    ("Users", "azureoid"),
    ("SoftwareLicence", "third_party_product"),
    ("Asset", "intune_id"),
    ("Invoice", "reference"),
    ("Client", "name"),
];

/// A record's natural key (lower case) under its entity's [`NATURAL_KEYS`] field; an invoice's is
/// prefixed with its client id.
fn natural_key(entity: &str, field: &str, r: &Value) -> Option<String> {
    let k = r[field].as_str().filter(|k| !k.is_empty())?.to_lowercase();
    Some(if entity == "Invoice" {
        format!("client {} {k}", r["client_id"])
    } else {
        k
    })
}

/// Halo's records without their ids (ids depend on the order creates landed in), each as canonical JSON,
/// sorted: equal for two runs that left Halo holding the same records. An asset's linked users are named by
/// their `azureoid` for the same reason.
pub fn halo_end_state(env: &Env) -> Vec<String> {
    env.em.with_state(|s| {
        let oid_of: BTreeMap<i64, Value> = s
            .halo_records("Users")
            .iter()
            .filter_map(|u| Some((u["id"].as_i64()?, u["azureoid"].clone())))
            .collect();
        let mut out = Vec::new();
        for e in ENTITIES {
            for r in s.halo_records(e) {
                let mut r = r.clone();
                if let Some(o) = r.as_object_mut() {
                    o.remove("id");
                    if let Some(Value::Array(users)) = o.get_mut("users").filter(|_| e == "Asset") {
                        for u in users.iter_mut() {
                            if let Some(oid) = u["id"].as_i64().and_then(|id| oid_of.get(&id)) {
                                *u = serde_json::json!({ "azureoid": oid });
                            }
                        }
                    }
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
    clean_end_state_after(opts, 1)
}

/// Halo's end state after a clean estate took `writing` syncs that wrote (the assets module links the
/// assets it created to the contacts created in the same run one sync later), and checks the next sync has
/// nothing to do.
pub fn clean_end_state_after(opts: &ConfigOptions, writing: usize) -> Vec<String> {
    let env = Env::new(opts);
    for n in 1..=writing {
        let posts = env.halo_posts();
        let out = env.run(&["-o", "json", "sync"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert!(env.halo_posts() > posts, "clean sync {n} wrote nothing");
    }
    let posts = env.halo_posts();
    let again = env.run(&["-o", "json", "sync"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert_eq!(
        env.halo_posts(),
        posts,
        "clean sync {} wrote to Halo",
        writing + 1
    );
    let blind = blind_resends(&env.em.requests());
    assert!(blind.is_empty(), "a clean run re-sent creates: {blind:?}");
    halo_end_state(&env)
}

/// Every create csp-sync sent to Halo again without having read Halo since (SPEC 8: a create whose outcome
/// is unknown is never re-sent blindly), from the emulator's request log across runs: for each record
/// POSTed without `id` whose natural key an earlier create already carried, either Halo was read (a list of
/// that entity) in between, or the earlier POST was answered 429 or 401 (refused before any processing).
pub fn blind_resends(reqs: &[RequestRecord]) -> Vec<String> {
    let mut last: BTreeMap<(&str, String), usize> = BTreeMap::new();
    let mut out = Vec::new();
    for (i, r) in reqs.iter().enumerate() {
        if r.api != Api::Halo || r.method != "POST" {
            continue;
        }
        let Some((entity, key)) = NATURAL_KEYS
            .iter()
            .find(|(e, _)| r.path.eq_ignore_ascii_case(&format!("/api/{e}")))
        else {
            continue;
        };
        let records = match &r.body {
            Some(Value::Array(a)) => a.clone(),
            Some(v) => vec![v.clone()],
            None => Vec::new(),
        };
        for rec in records.iter().filter(|rec| rec.get("id").is_none()) {
            let Some(k) = natural_key(entity, key, rec) else {
                continue;
            };
            if let Some(&j) = last.get(&(*entity, k.clone())) {
                if j == i {
                    out.push(format!("{entity} {k}: created twice in request {i}"));
                    continue;
                }
                let refused = matches!(reqs[j].status, 401 | 429);
                let read = reqs[j + 1..i].iter().any(|q| {
                    q.api == Api::Halo
                        && q.method == "GET"
                        && q.path.eq_ignore_ascii_case(&format!("/api/{entity}"))
                });
                if !refused && !read {
                    out.push(format!(
                        "{entity} {k}: sent again (request {i}) after request {j} answered {} with no read of Halo between",
                        reqs[j].status
                    ));
                }
            }
            last.insert((*entity, k), i);
        }
    }
    out
}

/// Halo records sharing a natural key (contacts by Entra object id, licences by subscription, assets by
/// Intune id, invoices by reference, clients by name), as "entity key xN".
pub fn duplicates(env: &Env) -> Vec<String> {
    env.em.with_state(|s| {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for (entity, key) in NATURAL_KEYS {
            for r in s.halo_records(entity) {
                if let Some(k) = natural_key(entity, key, r) {
                    *seen.entry(format!("{entity} {k}")).or_default() += 1;
                }
            }
        }
        seen.into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(k, n)| format!("{k} x{n}"))
            .collect()
    })
}

/// Asserts the end state equals the clean run's and holds no duplicate; says what differs. No create was
/// re-sent blindly on the way there either ([`blind_resends`]).
pub fn assert_converged(env: &Env, clean: &[String], case: &str) {
    let dups = duplicates(env);
    assert!(dups.is_empty(), "{case}: duplicates in Halo: {dups:?}");
    let blind = blind_resends(&env.em.requests());
    assert!(
        blind.is_empty(),
        "{case}: creates re-sent blindly: {blind:#?}"
    );
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
