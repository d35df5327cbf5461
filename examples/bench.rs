//! The speed and memory benchmark of issue 3: a first sync and a steady-state sync of the emulator's large
//! estate (200 tenants x 100 users by default), with csp-sync run as its own process so its peak memory is
//! its own. Prints Halo requests next to their minimum, wall time and peak memory (VmHWM).
//!
//! ```sh
//! cargo build --release --bin csp-sync && cargo run --release --example bench -- [TENANTS] [USERS] [DEVICES] [report]
//! ```
//!
//! With DEVICES (Intune devices per tenant) the assets module runs too, and each run also prints Graph
//! device requests per tenant and Halo asset requests next to their minimum. With `report`, Halo is read
//! with `[halo] bulk_read = "report"` (SPEC 7): one SQL report each for sites and users, lists for clients
//! and assets.

#[path = "../tests/cli/estate.rs"]
mod estate;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use csp_sync_emulator::{Api, Emulator, Scenario};

fn binary() -> PathBuf {
    // target/<profile>/examples/bench -> target/<profile>/csp-sync
    let exe = std::env::current_exe().expect("current exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join(format!("csp-sync{}", std::env::consts::EXE_SUFFIX)))
        .expect("target dir");
    if !bin.exists() {
        eprintln!(
            "{} is missing: build it first with `cargo build --release --bin csp-sync` (same profile as this example)",
            bin.display()
        );
        std::process::exit(1);
    }
    bin
}

/// CPU seconds (user + system) of a running process, from /proc (clock ticks of 1/100 s).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Runs csp-sync to completion, sampling its peak resident memory (Linux: VmHWM in /proc) and its CPU
/// time (the last sample before it exits, so slightly low).
fn run(
    bin: &Path,
    config: &Path,
    env: &[(String, String)],
    args: &[&str],
) -> (i32, Duration, u64, f64) {
    let start = Instant::now();
    let mut child = Command::new(bin)
        .arg("--config")
        .arg(config)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start csp-sync");
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0u64;
    let mut cpu = 0.0f64;
    let code = loop {
        if let Some(c) = cpu_seconds(child.id()) {
            cpu = c;
        }
        if let Ok(text) = std::fs::read_to_string(&status_file) {
            for line in text.lines() {
                if let Some(v) = line.strip_prefix("VmHWM:") {
                    let kb: u64 = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
                    peak_kb = peak_kb.max(kb);
                }
            }
        }
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code().unwrap_or(1);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (code, start.elapsed(), peak_kb, cpu)
}

struct Counts {
    /// Every request to Halo, the token's included.
    all: usize,
    tokens: usize,
    reads: usize,
    /// `POST /api/Report`: reads by report.
    reports: usize,
    writes: usize,
}

fn is_report(path: &str) -> bool {
    path.eq_ignore_ascii_case("/api/Report")
}

fn halo_counts(em: &Emulator) -> Counts {
    let reqs = em.requests();
    let halo = || reqs.iter().filter(|r| r.api == Api::Halo);
    let api = || halo().filter(|r| r.path.starts_with("/api/"));
    Counts {
        all: halo().count(),
        tokens: halo()
            .filter(|r| r.path.eq_ignore_ascii_case("/auth/token"))
            .count(),
        reads: api().filter(|r| r.method == "GET").count(),
        reports: api()
            .filter(|r| r.method == "POST" && is_report(&r.path))
            .count(),
        writes: api()
            .filter(|r| r.method == "POST" && !is_report(&r.path))
            .count(),
    }
}

fn halo_len(em: &Emulator, entity: &str) -> usize {
    em.with_state(|s| s.halo_records(entity).len())
}

fn pages(n: usize) -> usize {
    n.div_ceil(100).max(1)
}

/// The assets module's requests of the last run next to their minimum: Graph `managedDevices` pages per
/// tenant (ceil(devices / page size), one page here), Halo asset list pages, full-record reads (only for a
/// user link on an existing asset), and asset writes (ceil(records / 100)).
fn asset_counts(em: &Emulator, tenants: usize, devices: usize, assets_before: usize) {
    let reqs = em.requests();
    let graph = reqs
        .iter()
        .filter(|r| r.api == Api::Graph && r.path.ends_with("/deviceManagement/managedDevices"))
        .count();
    let halo = |method: &str, pred: &dyn Fn(&str) -> bool| {
        reqs.iter()
            .filter(|r| r.api == Api::Halo && r.method == method && pred(&r.path))
            .collect::<Vec<_>>()
    };
    let lists = halo("GET", &|p| p.eq_ignore_ascii_case("/api/Asset")).len();
    let by_id = halo("GET", &|p| p.to_lowercase().starts_with("/api/asset/")).len();
    let posts = halo("POST", &|p| p.eq_ignore_ascii_case("/api/Asset"));
    let records: usize = posts
        .iter()
        .filter_map(|r| r.body.as_ref().and_then(|b| b.as_array().map(Vec::len)))
        .sum();
    println!(
        "  assets: Graph managedDevices requests {graph} for {tenants} tenants ({:.2} per tenant, minimum \
         {} per tenant); Halo asset list GETs {lists} (minimum {}), asset reads by id {by_id}, asset POSTs {} \
         for {records} records (minimum {}); {} assets in Halo",
        graph as f64 / tenants.max(1) as f64,
        devices.div_ceil(100),
        pages(assets_before),
        posts.len(),
        records.div_ceil(100),
        halo_len(em, "Asset"),
    );
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let tenants = args.first().copied().unwrap_or(200);
    let users = args.get(1).copied().unwrap_or(100);
    let devices = args.get(2).copied().unwrap_or(0);
    let report = std::env::args().skip(1).any(|a| a == "report");
    let bin = binary();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // One instant for the estate's dates and csp-sync's clock.
    let now = jiff::Timestamp::now();
    let em = rt
        .block_on(Emulator::start(Scenario::large_at(
            now, tenants, users, devices,
        )))
        .expect("emulator");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut opts = estate::ConfigOptions {
        modules: vec!["users"],
        // The benchmark counts requests; Halo cloud's 300 per 5 minutes would only add waiting.
        rate_limit: (100_000, 1),
        extra: vec![("[safety]", "max_deactivations = 1000000".into())],
        ..estate::ConfigOptions::default()
    };
    if report {
        opts.extra.push(("[halo]", "bulk_read = \"report\"".into()));
    }
    if devices > 0 {
        opts.modules.push("assets");
        opts.extra.push((
            "[assets]",
            "asset_types = { windows = 1, ios = 3, default = 1 }\n\
             fields = { serialNumber = 2, model = 3, complianceState = 4 }"
                .into(),
        ));
    }
    let config = estate::write_config(&em, dir.path(), &opts);
    let mut env = estate::secret_env(&em);
    env.push(("CSP_SYNC_RETRY_SCALE".into(), "1".into()));
    env.push(("CSP_SYNC_NOW".into(), now.to_string()));
    println!(
        "estate: {tenants} tenants x {users} users x {devices} devices; Halo read by {}; csp-sync {}",
        if report { "report" } else { "list" },
        bin.display()
    );

    // With assets, the second sync links the assets to the contacts the first one created.
    let runs: &[(&str, usize)] = if devices > 0 {
        &[
            ("first sync", 1),
            ("second sync", 2),
            ("steady-state sync", 3),
        ]
    } else {
        &[("first sync", 1), ("steady-state sync", 2)]
    };
    for &(label, nth) in runs {
        let clients = halo_len(&em, "Client");
        let sites = halo_len(&em, "Site");
        let halo_users_before = halo_len(&em, "Users");
        let assets_before = halo_len(&em, "Asset");
        em.clear_requests();
        let (code, wall, peak_kb, cpu) = run(&bin, &config, &env, &["-q", "-o", "json", "sync"]);
        let c = halo_counts(&em);
        let created = halo_len(&em, "Users") - halo_users_before;
        let changed = em
            .requests()
            .iter()
            .filter(|r| r.api == Api::Halo && r.method == "POST" && r.path.starts_with("/api/"))
            .filter(|r| !is_report(&r.path))
            .filter_map(|r| r.body.as_ref().and_then(|b| b.as_array().map(Vec::len)))
            .sum::<usize>();
        // By report, sites and users are one request each.
        let min_reads = pages(clients)
            + if report {
                2
            } else {
                pages(sites) + pages(halo_users_before)
            }
            + if devices > 0 { pages(assets_before) } else { 0 };
        let min_writes = changed.div_ceil(100);
        println!(
            "{label} (run {nth}): exit {code}, {:.1} s wall ({cpu:.1} s CPU of csp-sync), peak {:.1} MB; \
             Halo requests {} ({} token, {} GETs and {} reports: {} reads, minimum {min_reads}; POSTs {} for \
             {changed} records, minimum {min_writes}); {created} users created",
            wall.as_secs_f64(),
            peak_kb as f64 / 1024.0,
            c.all,
            c.tokens,
            c.reads,
            c.reports,
            c.reads + c.reports,
            c.writes,
        );
        if devices > 0 {
            asset_counts(&em, tenants, devices, assets_before);
        }
    }
}
