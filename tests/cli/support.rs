//! A running emulator, a config for it in a temporary directory, and the binary run against both.

use std::process::Output;

use csp_sync_emulator::{Api, Emulator, Scenario, State};

use crate::estate;

/// The instant every test pins: csp-sync gets it as `CSP_SYNC_NOW` and the emulator's scenarios are dated
/// from it, so the two agree whatever the real day. `CSP_SYNC_TEST_NOW` (RFC 3339) runs the whole suite at
/// another date (`.ci/run` does); the default is the date the sample estate's expectations were written on.
pub fn now() -> String {
    match std::env::var("CSP_SYNC_TEST_NOW") {
        Ok(v) if !v.trim().is_empty() => {
            let v = v.trim().to_string();
            assert!(
                v.parse::<jiff::Timestamp>().is_ok(),
                "CSP_SYNC_TEST_NOW={v:?} is not an RFC 3339 time such as 2027-03-01T09:00:00Z"
            );
            v
        }
        _ => "2026-11-27T09:00:00Z".to_string(),
    }
}

/// [`now`] as a timestamp.
pub fn now_ts() -> jiff::Timestamp {
    now().parse().expect("checked in now()")
}

/// Empties a customer's directory: every user of `customer` is removed (each one found and removed).
pub fn remove_every_user(s: &mut State, customer: &str) {
    let upns: Vec<String> = s
        .customer(customer)
        .unwrap()
        .users
        .iter()
        .map(|u| u["userPrincipalName"].as_str().unwrap().to_string())
        .collect();
    for upn in upns {
        assert!(s.remove_user(customer, &upn));
    }
}

/// The small estate dated from [`now`].
pub fn small() -> Scenario {
    Scenario::small_at(now_ts())
}

/// One emulator and one config directory per test.
pub struct Env {
    _rt: tokio::runtime::Runtime,
    pub em: Emulator,
    pub dir: tempfile::TempDir,
    partner_refresh_token: bool,
}

impl Env {
    pub fn new(opts: &estate::ConfigOptions) -> Env {
        Env::with(small(), opts)
    }

    pub fn with(scenario: Scenario, opts: &estate::ConfigOptions) -> Env {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let em = rt.block_on(Emulator::start(scenario)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        estate::write_config(&em, dir.path(), opts);
        Env {
            _rt: rt,
            em,
            dir,
            partner_refresh_token: opts.partner_refresh_token,
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_at(&now(), args)
    }

    /// Runs csp-sync with its clock at `at` (RFC 3339), e.g. days after [`now`] to let a period pass.
    pub fn run_at(&self, at: &str, args: &[&str]) -> Output {
        self.run_with(at, args, &[])
    }

    /// [`Env::run`] with extra environment variables.
    pub fn run_env(&self, args: &[&str], vars: &[(&str, &str)]) -> Output {
        self.run_with(&now(), args, vars)
    }

    fn run_with(&self, at: &str, args: &[&str], vars: &[(&str, &str)]) -> Output {
        let mut cmd = self.command_at(at, args);
        cmd.envs(vars.iter().copied())
            .stdin(std::process::Stdio::null());
        let out = cmd.output().unwrap();
        self.assert_no_leak(args, &out);
        out
    }

    /// The command [`Env::run`] runs, for a test that starts it, signals it or kills it.
    pub fn command(&self, args: &[&str]) -> std::process::Command {
        self.command_at(&now(), args)
    }

    fn command_at(&self, at: &str, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin!("csp-sync"));
        cmd.current_dir(self.dir.path())
            .env_remove("CSP_SYNC_CONFIG")
            // A table is 80 columns unless a test sets COLUMNS (run_env): the shell's width never leaks in.
            .env_remove("COLUMNS")
            .env("CSP_SYNC_NOW", at)
            .args(args);
        for (k, v) in estate::secret_env(&self.em) {
            if k == "CSP_SYNC_PARTNER_CENTER_REFRESH_TOKEN" && !self.partner_refresh_token {
                continue;
            }
            cmd.env(k, v);
        }
        cmd
    }

    /// Every run of the black-box suite checks that no secret the emulator knows or issued (client
    /// secrets, refresh tokens, every access token) shows in its stdout, its stderr, or the plan and state
    /// files it wrote (SPEC section 5).
    pub fn assert_no_leak(&self, args: &[&str], out: &Output) {
        let secrets = self.em.issued_secrets();
        let mut shown = vec![
            ("stdout".to_string(), text(&out.stdout)),
            ("stderr".to_string(), text(&out.stderr)),
        ];
        for path in written_files(self.dir.path()) {
            if let Ok(body) = std::fs::read_to_string(&path) {
                shown.push((path.display().to_string(), body));
            }
        }
        for (what, body) in &shown {
            for secret in &secrets {
                assert!(
                    !body.contains(secret.as_str()),
                    "`csp-sync {}`: a secret or token the emulator issued appeared in {what}",
                    args.join(" ")
                );
            }
        }
    }

    /// The writes to Halo so far: POSTs under `/api/`, except SQL reports (`POST /api/Report` reads).
    pub fn halo_posts(&self) -> usize {
        self.em
            .requests()
            .iter()
            .filter(|r| {
                r.api == Api::Halo
                    && r.method == "POST"
                    && r.path.starts_with("/api/")
                    && !r.path.eq_ignore_ascii_case("/api/Report")
            })
            .count()
    }
}

/// The mapped customers without a consent problem (Woodgrove Bank has none, see the small scenario).
pub fn clean() -> estate::ConfigOptions {
    estate::ConfigOptions {
        only: Some(vec![
            "Contoso Ltd".into(),
            "Fabrikam Inc".into(),
            "Litware Inc".into(),
        ]),
        ..estate::ConfigOptions::default()
    }
}

/// Output bytes as text for messages and `contains` checks.
pub fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

/// The plan and state files under a test directory (not the config, nor secret files a test wrote on
/// purpose for `CSP_SYNC_*_FILE`).
fn written_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .extension()
                .is_some_and(|x| x == "json" || x == "jsonl")
            {
                out.push(path);
            }
        }
    }
    out
}

/// The JSON lines of run `n`'s journal file (`state/runs/00000n.jsonl`).
pub fn journal_lines(env: &Env, n: u64) -> Vec<serde_json::Value> {
    let path = env.dir.path().join(format!("state/runs/{n:06}.jsonl"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("no journal {}: {e}", path.display()));
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Whether nobody holds the state directory's run lock (an OS file lock; its file stays behind).
pub fn lock_released(env: &Env) -> bool {
    match std::fs::File::open(env.dir.path().join("state/lock")) {
        Ok(f) => f.try_lock().is_ok(),
        Err(_) => true,
    }
}

/// Runs csp-sync and asserts it exited 0, showing its output otherwise.
pub fn run_ok(env: &Env, args: &[&str]) -> Output {
    let out = env.run(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}\nstdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// Every record POSTed to the Halo path (e.g. `/api/Users`) so far, in order (batches flattened).
pub fn posted(env: &Env, path: &str) -> Vec<serde_json::Value> {
    env.em
        .requests()
        .iter()
        .filter(|r| r.api == Api::Halo && r.method == "POST" && r.path == path)
        .flat_map(|r| match r.body.clone() {
            Some(serde_json::Value::Array(a)) => a,
            Some(v) => vec![v],
            None => vec![],
        })
        .collect()
}
