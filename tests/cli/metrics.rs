//! `--metrics-file`: the figures of a sync or diff in Prometheus text format, parsed back here with a
//! small parser of the text exposition format and held against the summary lines the run printed.

use std::collections::BTreeMap;

use crate::estate::ConfigOptions;
use crate::support::{self, Env, clean, text};

/// One sample: metric name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text format (version 0.0.4): `# HELP`/`# TYPE` lines, then `name{label="value",...} value`
/// with `\\`, `\"` and `\n` escapes in label values. Panics on anything else.
fn parse(text: &str) -> Vec<Sample> {
    let mut typed: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kind = parts.next().unwrap();
            let name = parts.next().expect("a metric name after HELP/TYPE");
            let what = parts.next().expect("text after the metric name");
            match kind {
                "HELP" => {}
                "TYPE" => {
                    assert!(
                        ["gauge", "counter", "untyped"].contains(&what),
                        "type {what}"
                    );
                    assert!(
                        typed.insert(name.to_string(), what.to_string()).is_none(),
                        "TYPE of {name} twice"
                    );
                }
                other => panic!("unknown comment {other}: {line}"),
            }
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("no value: {line}"));
        let name = &line[..name_end];
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "metric name {name}"
        );
        assert!(
            typed.contains_key(name),
            "{name} has no TYPE line before it"
        );
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(r) = rest.strip_prefix('{') {
            let mut chars = r.char_indices().peekable();
            let mut key = String::new();
            let end;
            loop {
                let (i, c) = chars
                    .next()
                    .unwrap_or_else(|| panic!("unclosed labels: {line}"));
                match c {
                    '}' => {
                        end = i;
                        break;
                    }
                    ',' => {}
                    '=' => {
                        assert_eq!(chars.next().map(|x| x.1), Some('"'), "{line}");
                        let mut value = String::new();
                        loop {
                            let (_, c) = chars
                                .next()
                                .unwrap_or_else(|| panic!("unclosed value: {line}"));
                            match c {
                                '\\' => match chars.next().map(|x| x.1) {
                                    Some('\\') => value.push('\\'),
                                    Some('"') => value.push('"'),
                                    Some('n') => value.push('\n'),
                                    other => panic!("bad escape {other:?}: {line}"),
                                },
                                '"' => break,
                                c => value.push(c),
                            }
                        }
                        assert!(
                            labels.insert(std::mem::take(&mut key), value).is_none(),
                            "label twice: {line}"
                        );
                    }
                    c => key.push(c),
                }
            }
            rest = &r[end + 1..];
        }
        let value: f64 = rest
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("value: {line}"));
        out.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    out
}

/// The sum of the samples of `name` whose labels include `label`; every one must be a whole number.
#[allow(clippy::cast_possible_truncation)] // checked whole
fn sum(samples: &[Sample], name: &str, label: &[(&str, &str)]) -> i64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            label
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))
        })
        .map(|s| {
            assert!(s.value.is_finite() && s.value.fract() == 0.0, "{s:?}");
            s.value as i64
        })
        .sum()
}

/// The number before `word` in the line of `stderr` that starts with `prefix`.
fn count_in(stderr: &str, prefix: &str, word: &str) -> i64 {
    let line = stderr
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line {prefix:?} in {stderr}"));
    let at = line
        .find(word)
        .unwrap_or_else(|| panic!("no {word:?} in {line}"));
    line[..at]
        .split_whitespace()
        .last()
        .and_then(|n| n.trim_start_matches('(').parse().ok())
        .unwrap_or_else(|| panic!("no number before {word:?} in {line}"))
}

#[test]
fn a_sync_writes_the_counts_its_summary_prints() {
    let env = Env::new(&ConfigOptions::default());
    let metrics = env.dir.path().join("csp-sync.prom");
    let m = metrics.to_str().unwrap();
    // Woodgrove Bank's Graph token is refused: the run fails (exit 1) but writes its figures.
    let out = env.run(&["-o", "json", "--metrics-file", m, "sync"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    let samples = parse(&std::fs::read_to_string(&metrics).unwrap());
    for (action, word) in [
        ("create", "to create"),
        ("update", "to update"),
        ("link", "to link"),
        ("deactivate", "to deactivate"),
        ("reactivate", "to reactivate"),
    ] {
        assert_eq!(
            sum(&samples, "csp_sync_changes", &[("action", action)]),
            count_in(&stderr, "csp-sync: ", word),
            "{action}\n{stderr}"
        );
    }
    assert!(sum(&samples, "csp_sync_changes", &[("action", "create")]) > 0);
    for (name, word) in [
        ("csp_sync_conflicts", "conflicts"),
        ("csp_sync_held_back", "held back"),
        ("csp_sync_errors", "errors"),
    ] {
        assert_eq!(
            sum(&samples, name, &[]),
            count_in(&stderr, "csp-sync: ", word),
            "{name}\n{stderr}"
        );
    }
    assert!(sum(&samples, "csp_sync_errors", &[("tenant", "Woodgrove Bank")]) >= 1);
    assert_eq!(
        sum(&samples, "csp_sync_applied_changes", &[]),
        count_in(&stderr, "csp-sync: applied", "changes in"),
        "{stderr}"
    );
    assert_eq!(
        sum(&samples, "csp_sync_failed_changes", &[]),
        count_in(&stderr, "csp-sync: applied", "failed"),
        "{stderr}"
    );
    assert_eq!(
        sum(&samples, "csp_sync_requests", &[("api", "halo")]),
        count_in(&stderr, "csp-sync: applied", "Halo requests"),
        "{stderr}"
    );
    assert!(sum(&samples, "csp_sync_requests", &[("api", "graph")]) > 0);
    // Per module and tenant.
    assert!(
        sum(
            &samples,
            "csp_sync_changes",
            &[("tenant", "Contoso Ltd"), ("module", "users")]
        ) > 0
    );
    assert_eq!(sum(&samples, "csp_sync_run_success", &[]), 0);
    let now = support::now_ts().as_second();
    assert_eq!(
        sum(&samples, "csp_sync_last_run_timestamp_seconds", &[]),
        now
    );
    // No success yet: no last success time.
    assert!(
        !samples
            .iter()
            .any(|s| s.name == "csp_sync_last_success_timestamp_seconds")
    );
    assert!(!metrics.with_extension("prom.tmp").exists());
}

#[test]
fn a_failed_run_keeps_the_last_success_time() {
    let env = Env::new(&clean());
    let metrics = env.dir.path().join("diff.prom");
    let m = metrics.to_str().unwrap();
    let out = env.run(&["-o", "json", "--metrics-file", m, "diff"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let samples = parse(&std::fs::read_to_string(&metrics).unwrap());
    let now = support::now_ts().as_second();
    assert_eq!(
        sum(&samples, "csp_sync_run_success", &[("command", "diff")]),
        1
    );
    assert_eq!(
        sum(&samples, "csp_sync_last_success_timestamp_seconds", &[]),
        now
    );
    // diff applies nothing: no applied series.
    assert!(!samples.iter().any(|s| s.name == "csp_sync_applied_changes"));
    let stderr = text(&out.stderr);
    assert_eq!(
        sum(&samples, "csp_sync_changes", &[("action", "create")]),
        count_in(&stderr, "csp-sync: ", "to create")
    );

    // The Halo secret is refused now: the run fails and keeps the earlier success time, one hour on.
    let later = support::now_ts()
        .checked_add(jiff::SignedDuration::from_hours(1))
        .unwrap()
        .to_string();
    let mut cmd = assert_cmd::Command::cargo_bin("csp-sync").unwrap();
    cmd.current_dir(env.dir.path())
        .env_remove("CSP_SYNC_CONFIG")
        .args(["-o", "json", "--metrics-file", m, "diff"]);
    for (k, v) in crate::estate::secret_env(&env.em) {
        cmd.env(k, v);
    }
    cmd.env("CSP_SYNC_NOW", &later)
        .env("CSP_SYNC_HALO_CLIENT_SECRET", "wrong");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let samples = parse(&std::fs::read_to_string(&metrics).unwrap());
    assert_eq!(sum(&samples, "csp_sync_run_success", &[]), 0);
    assert_eq!(
        sum(&samples, "csp_sync_last_success_timestamp_seconds", &[]),
        now
    );
    assert_eq!(
        sum(&samples, "csp_sync_last_run_timestamp_seconds", &[]),
        now + 3600
    );
}

#[test]
fn metrics_file_is_only_for_sync_and_diff() {
    let env = Env::new(&clean());
    let out = env.run(&["--metrics-file", "x.prom", "tenants", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--metrics-file goes with sync and diff"),
        "{}",
        text(&out.stderr)
    );
}
