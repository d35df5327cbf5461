//! The performance benchmark (issue 15): an estate of TENANTS x USERS x DEVICES generated in the emulator,
//! served with a round-trip latency and Halo's rolling rate window, and csp-sync run as its own process
//! (built first by cargo, so never a stale binary): a first sync into an empty Halo, a second one where
//! assets link to the contacts the first created, a steady-state sync, and a sync after churn (joiners,
//! leavers, movers, seat changes, new and removed devices), then a `sync` and a `diff` started together on
//! the same state directory (SPEC 9: together they must never make Halo answer 429), with list reads and
//! with report reads. Per run it prints, per API, the requests made next to the minimum the data needs,
//! wall time next to its lower bound, csp-sync's CPU time and peak memory, the CPU the emulator (this
//! process) spent serving it, and 429 answers. Before that it times the pure planners for 100,000 users
//! and the masking JSON writer on their plan. README, "Performance", has the figures of this machine.
//!
//! ```sh
//! cargo run --release --example bench -- --help
//! cargo run --release --example bench                 # 200 x 100 x 50, 20 ms, Halo 300 per 30 s
//! cargo run --release --example bench -- --quick      # 20 x 50 x 20
//! ```

mod args;
mod bound;
mod child;
mod counts;
mod planners;

#[path = "../../tests/cli/estate.rs"]
mod estate;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use csp_sync_emulator::{Emulator, HALO_ENTITIES, Scenario};

use args::{Args, Reads};

/// One summary row.
struct Summary {
    reads: Reads,
    run: &'static str,
    code: i32,
    wall: Duration,
    bound: Duration,
    cpu: Option<Duration>,
    peak: Option<u64>,
    /// CPU of this process while csp-sync ran: the emulator serving it.
    emulator_cpu: Duration,
    /// (requests, minimum, 429s) per API, in the order of [`counts::rows`].
    apis: Vec<(usize, usize, usize)>,
}

fn fail(e: impl std::fmt::Display) -> ! {
    eprintln!("bench: {e}");
    std::process::exit(1);
}

fn mb(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / (1024.0 * 1024.0))
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn main() {
    if std::env::var_os(child::LAUNCHER_ENV).is_some() {
        child::serve_launcher();
        return;
    }
    let args = match args::parse(std::env::args().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{}", args::USAGE);
            return;
        }
        Err(e) => {
            eprintln!("bench: {e}\n{}", args::USAGE);
            std::process::exit(2);
        }
    };
    let bin = child::build_binary().unwrap_or_else(|e| fail(e));
    // Started while this process is small: see `child`.
    let mut launchers = [
        child::Launcher::start().unwrap_or_else(|e| fail(e)),
        child::Launcher::start().unwrap_or_else(|e| fail(e)),
    ];
    let planner_lines = if args.planner_users > 0 {
        planners::run(args.planner_users)
    } else {
        Vec::new()
    };
    let mut summary = Vec::new();
    for &reads in &args.reads {
        bench_reads(&mut launchers, &bin, &args, reads, &mut summary);
    }
    print_summary(&args, &summary, &planner_lines);
}

/// The modules the estate syncs.
fn modules(args: &Args) -> Vec<&'static str> {
    let mut m = vec!["users", "licences"];
    if args.devices > 0 {
        m.push("assets");
    }
    m
}

/// The estate as the next run will find it.
fn snapshot(em: &Emulator, args: &Args, pc_page: usize) -> counts::Estate {
    em.with_state(|st| counts::Estate {
        halo: HALO_ENTITIES
            .iter()
            .map(|(e, _)| (e.to_string(), st.halo_records(e).len()))
            .collect::<BTreeMap<_, _>>(),
        tenants: st
            .customers
            .iter()
            .filter(|c| c.halo_client_id.is_some())
            .count(),
        customers: st.customers.len(),
        max_users: st
            .customers
            .iter()
            .map(|c| c.users.len())
            .max()
            .unwrap_or(0),
        max_devices: st
            .customers
            .iter()
            .map(|c| c.devices.len())
            .max()
            .unwrap_or(0),
        pc_page,
        modules: modules(args),
        first: st.halo_records("Users").is_empty(),
    })
}

/// The first, second, steady-state and churn syncs of one fresh estate with one read mode.
fn bench_reads(
    launchers: &mut [child::Launcher; 2],
    bin: &Path,
    args: &Args,
    reads: Reads,
    summary: &mut Vec<Summary>,
) {
    let now = jiff::Timestamp::now();
    let started = Instant::now();
    let mut sc = Scenario::large_at(now, args.tenants, args.users, args.devices);
    sc.set_latency(args.latency);
    let (rate, per) = args.halo_rate;
    sc.set_halo_rate_limit(Some((rate as usize, u64::from(per))));
    let pc_page = sc.settings.pc_page_size;
    let em = Emulator::start_on(sc, "127.0.0.1", None).unwrap_or_else(|e| fail(e));
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(e));
    let mut opts = estate::ConfigOptions {
        modules: modules(args),
        rate_limit: (rate, per),
        extra: vec![
            ("[halo]", format!("bulk_read = \"{}\"", reads.config())),
            (
                "[safety]",
                "max_deactivations = 1000000\nmax_deactivation_percent = 100".into(),
            ),
        ],
        ..estate::ConfigOptions::default()
    };
    if args.devices > 0 {
        opts.extra.push((
            "[assets]",
            "asset_types = { windows = 1, ios = 3, default = 1 }\n\
             fields = { serialNumber = 2, model = 3, complianceState = 4 }"
                .into(),
        ));
    }
    let config = estate::write_config(&em, dir.path(), &opts);
    let mut env = estate::secret_env(&em);
    // Real back-off: a 429 costs what it costs.
    env.retain(|(k, _)| k != "CSP_SYNC_RETRY_SCALE");
    env.push(("CSP_SYNC_NOW".into(), now.to_string()));
    println!(
        "\n== {}: {} tenants x {} users x {} devices, latency {} ms, Halo {rate} requests per {per} s \
         (estate generated in {}) ==",
        reads.label(),
        args.tenants,
        args.users,
        args.devices,
        args.latency.as_millis(),
        secs(started.elapsed()),
    );
    let mut runs: Vec<&'static str> = vec!["first sync"];
    if args.devices > 0 {
        runs.push("second sync");
    }
    runs.extend(["steady state", "after churn"]);
    let config_arg = config.to_string_lossy().into_owned();
    for run in runs {
        if run == "after churn" {
            let c = em.with_state(|st| st.churn(args.churn_percent, 15));
            println!(
                "churn {}%: {} joiners, {} leavers, {} movers, {} seat changes, {} new and {} removed devices",
                args.churn_percent,
                c.joiners,
                c.leavers,
                c.movers,
                c.seat_changes,
                c.new_devices,
                c.removed_devices
            );
        }
        let estate = snapshot(&em, args, pc_page);
        let start = Instant::now();
        let emulator_cpu = planners::cpu();
        let prior: Vec<Duration> = em
            .halo_window()
            .into_iter()
            .map(|t| start.saturating_duration_since(t))
            .collect();
        em.clear_requests();
        let r = launchers[0]
            .run(
                bin,
                &["--config", &config_arg, "-q", "-o", "json", "sync"],
                &env,
            )
            .unwrap_or_else(|e| fail(e));
        // This process serves the emulator (its own children are not counted in RUSAGE_SELF).
        let emulator_cpu = planners::cpu().saturating_sub(emulator_cpu);
        let log = em.requests();
        let (rows, halo) = counts::rows(&log, &estate, reads);
        let window = bound::halo_window(
            &prior,
            halo.windowed,
            rate as usize,
            Duration::from_secs(u64::from(per)),
        );
        let trips = bound::round_trips(&halo);
        let latency = args.latency * trips as u32;
        let lower = window.max(latency);
        println!(
            "\n{} / {run}: exit {}; wall {} (lower bound {}: Halo window {}, {trips} round trips {}; {:.2}x); \
             CPU {}; peak {}; JSON out {:.1} MB; emulator CPU {}",
            reads.label(),
            r.code,
            secs(r.wall),
            secs(lower),
            secs(window),
            secs(latency),
            r.wall.as_secs_f64() / lower.as_secs_f64().max(1e-3),
            r.cpu.map_or("n/a".into(), secs),
            r.peak_bytes.map_or("n/a".into(), mb),
            r.stdout_bytes as f64 / 1e6,
            secs(emulator_cpu),
        );
        println!(
            "  {:<16} {:>8} {:>8} {:>5}  detail",
            "API", "requests", "minimum", "429"
        );
        for row in &rows {
            println!(
                "  {:<16} {:>8} {:>8} {:>5}  {}",
                row.api, row.requests, row.minimum, row.too_many, row.detail
            );
        }
        if r.code != 0 {
            println!("  csp-sync's stderr (end):\n{}", r.stderr_tail.trim_end());
        }
        summary.push(Summary {
            reads,
            run,
            code: r.code,
            wall: r.wall,
            bound: lower,
            cpu: r.cpu,
            peak: r.peak_bytes,
            emulator_cpu,
            apis: rows
                .iter()
                .map(|r| (r.requests, r.minimum, r.too_many))
                .collect(),
        });
    }
    side_by_side(
        launchers,
        bin,
        &em,
        args,
        reads,
        &config_arg,
        &env,
        pc_page,
        summary,
    );
}

/// A cron `sync` and a CI `diff` started together on the same state directory, right after the last
/// sync (its requests still in Halo's window): together they must never make Halo answer 429 (SPEC 9),
/// and wait only as long as the window requires.
#[allow(clippy::too_many_arguments)]
fn side_by_side(
    launchers: &mut [child::Launcher; 2],
    bin: &Path,
    em: &Emulator,
    args: &Args,
    reads: Reads,
    config: &str,
    env: &[(String, String)],
    pc_page: usize,
    summary: &mut Vec<Summary>,
) {
    let run = "sync + diff together";
    let estate = snapshot(em, args, pc_page);
    let start = Instant::now();
    let emulator_cpu = planners::cpu();
    let prior: Vec<Duration> = em
        .halo_window()
        .into_iter()
        .map(|t| start.saturating_duration_since(t))
        .collect();
    em.clear_requests();
    let [a, b] = launchers;
    let (sync, diff) = std::thread::scope(|s| {
        let sync = s.spawn(|| a.run(bin, &["--config", config, "-q", "-o", "json", "sync"], env));
        let diff = b.run(bin, &["--config", config, "-q", "-o", "json", "diff"], env);
        (sync.join(), diff)
    });
    let sync = sync
        .unwrap_or_else(|_| fail("the sync's thread panicked"))
        .unwrap_or_else(|e| fail(e));
    let diff = diff.unwrap_or_else(|e| fail(e));
    let wall = start.elapsed();
    let emulator_cpu = planners::cpu().saturating_sub(emulator_cpu);
    let log = em.requests();
    let (rows, halo) = counts::rows(&log, &estate, reads);
    let (rate, per) = args.halo_rate;
    let window = bound::halo_window(
        &prior,
        halo.windowed,
        rate as usize,
        Duration::from_secs(u64::from(per)),
    );
    let trips = bound::round_trips(&halo);
    let latency = args.latency * trips as u32;
    let lower = window.max(latency);
    let cpu = sync.cpu.zip(diff.cpu).map(|(x, y)| x + y);
    let peak = sync.peak_bytes.zip(diff.peak_bytes).map(|(x, y)| x.max(y));
    println!(
        "\n{} / {run}: exit {} (sync) and {} (diff); wall {} (sync {}, diff {}; lower bound {}: Halo window {} \
         for {} requests of both, {trips} round trips {}; {:.2}x); CPU {} (both); peak {} (larger); emulator CPU {}",
        reads.label(),
        sync.code,
        diff.code,
        secs(wall),
        secs(sync.wall),
        secs(diff.wall),
        secs(lower),
        secs(window),
        halo.windowed,
        secs(latency),
        wall.as_secs_f64() / lower.as_secs_f64().max(1e-3),
        cpu.map_or("n/a".into(), secs),
        peak.map_or("n/a".into(), mb),
        secs(emulator_cpu),
    );
    println!(
        "  {:<16} {:>8} {:>8} {:>5}  detail (both runs; minimum twice one run's)",
        "API", "requests", "minimum", "429"
    );
    for row in &rows {
        println!(
            "  {:<16} {:>8} {:>8} {:>5}  {}",
            row.api,
            row.requests,
            2 * row.minimum,
            row.too_many,
            row.detail
        );
    }
    for (what, r) in [("sync", &sync), ("diff", &diff)] {
        if r.code != 0 {
            println!("  the {what}'s stderr (end):\n{}", r.stderr_tail.trim_end());
        }
    }
    summary.push(Summary {
        reads,
        run,
        code: if sync.code != 0 { sync.code } else { diff.code },
        wall,
        bound: lower,
        cpu,
        peak,
        emulator_cpu,
        apis: rows
            .iter()
            .map(|r| (r.requests, 2 * r.minimum, r.too_many))
            .collect(),
    });
}

fn print_summary(args: &Args, summary: &[Summary], planner_lines: &[String]) {
    println!(
        "\n## Summary: {} tenants x {} users x {} devices, {} ms latency, Halo {} per {} s\n",
        args.tenants,
        args.users,
        args.devices,
        args.latency.as_millis(),
        args.halo_rate.0,
        args.halo_rate.1
    );
    println!(
        "| reads | run | exit | wall (lower bound) | CPU | peak | emulator CPU | Halo (min) | Halo 429 | Graph (min) | Partner Center (min) | tokens (min) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for s in summary {
        let api = |i: usize| {
            s.apis
                .get(i)
                .map_or(String::new(), |(n, m, _)| format!("{n} ({m})"))
        };
        println!(
            "| {} | {} | {} | {} ({}) | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.reads.label(),
            s.run,
            s.code,
            secs(s.wall),
            secs(s.bound),
            s.cpu.map_or("n/a".into(), secs),
            s.peak.map_or("n/a".into(), mb),
            secs(s.emulator_cpu),
            api(0),
            s.apis.first().map_or(0, |a| a.2),
            api(1),
            api(2),
            api(3),
        );
    }
    for l in planner_lines {
        println!("\n{l}");
    }
}
