//! Benchmark of the billing reader (issue 13): a generated Graph billing export of `full`-attribute usage
//! lines (default 100,000 then 1,000,000), served by the emulator as gzip'd JSON-lines blobs and read by
//! csp-sync's reader in a child process (so its peak memory is its own): lines per second, peak memory
//! (VmHWM), and the time `gzip -dc` takes to decompress the same blobs on this machine.
//!
//! ```sh
//! cargo run --release --example billing_bench -- [LINES...]
//! ```

use std::io::Write as _;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use csp_sync::auth::{CredentialSettings, Credentials, GraphAuthMode, TokenProvider};
use csp_sync::billing::export::{ExportRequest, Exports, Operation};
use csp_sync::billing::state::InvoiceState;
use csp_sync::billing::{PeriodUsage, read_export};
use csp_sync::http::{Http, HttpOptions};
use csp_sync_emulator::{Emulator, ExportData, Generated, Scenario};
use secrecy::SecretString;

const LINES_PER_BLOB: usize = 250_000;

fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

/// The child: read the export once, print `lines seconds peak_kib`.
fn child() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let http = Arc::new(Http::new(HttpOptions::default()).expect("http"));
    let settings = CredentialSettings {
        partner_tenant_id: var("BENCH_PARTNER"),
        partner_center_client_id: var("BENCH_PC_ID"),
        partner_center_client_secret: Some(SecretString::from(var("BENCH_PC_SECRET"))),
        partner_center_refresh_token: None,
        graph_client_id: var("BENCH_PC_ID"),
        graph_client_secret: None,
        graph_refresh_token: None,
        graph_mode: GraphAuthMode::App,
        partner_center_resource: "https://api.partnercenter.microsoft.com".into(),
        graph_resource: "https://graph.microsoft.com".into(),
    };
    let creds = Credentials::new(
        TokenProvider::new(http.clone(), var("BENCH_LOGIN"), None),
        settings,
    );
    let exports = Exports {
        http: &http,
        creds: &creds,
        graph_url: var("BENCH_GRAPH"),
    };
    let req = ExportRequest::Billed {
        invoice_id: var("BENCH_INVOICE"),
    };
    // Start the export and wait for its manifest (the emulator generates the blobs meanwhile: not timed),
    // then time the reader proper: download, gunzip, split, parse and sum every blob.
    let manifest = rt.block_on(async {
        let op = exports.start(&req).await?;
        loop {
            match exports.poll(&op).await? {
                Operation::Succeeded(r) => return exports.manifest(r).await,
                Operation::Running { .. } => {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                other => return Err(format!("the export did not succeed: {other:?}")),
            }
        }
    });
    let manifest = manifest.unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1);
    });
    let started = Instant::now();
    let totals = rt
        .block_on(exports.aggregate(&manifest, |_| {}))
        .unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(1);
        });
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{} {secs} {} {}",
        totals.lines,
        peak_kib(),
        totals.groups.len()
    );
    // The whole path once more through `read_export` (start, poll, manifest, stream), as a run does.
    let mut st = InvoiceState::default();
    match rt.block_on(read_export(
        &exports,
        &req,
        &mut st,
        50,
        jiff::Timestamp::now(),
        |_| {},
    )) {
        PeriodUsage::Usage(t) if t == totals => {}
        other => {
            eprintln!("read_export gave another result: {other:?}");
            std::process::exit(1);
        }
    }
}

fn run(lines: usize) {
    let mut sc = Scenario::small_at(jiff::Timestamp::now());
    let invoice = sc.billing.invoices[1]["id"]
        .as_str()
        .expect("invoice id")
        .to_string();
    let customers: Vec<(String, String)> = (0..50)
        .map(|i| {
            (
                format!("aaaaaaaa-0000-4000-8000-{i:012}"),
                format!("Customer {i:02} Ltd"),
            )
        })
        .collect();
    let data = ExportData {
        generated: Some(Generated {
            lines,
            customers,
            currency: "USD".into(),
        }),
        ..ExportData::default()
    };
    sc.billing.usage.insert(invoice.clone(), data.clone());
    sc.billing.export.lines_per_blob = LINES_PER_BLOB;
    sc.billing.export.running_polls = 0;

    // The same blobs on disk, for gzip -dc.
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let em = rt.block_on(Emulator::start(sc.clone())).expect("emulator");
    let generating = Instant::now();
    let blobs = em.export_blobs(&invoice);
    eprintln!(
        "generated {lines} lines in {:.1} s",
        generating.elapsed().as_secs_f64()
    );
    let mut compressed = 0;
    let mut files = Vec::new();
    for (i, b) in blobs.iter().enumerate() {
        let p = dir.path().join(format!("part-{i:05}.json.gz"));
        std::fs::File::create(&p)
            .and_then(|mut f| f.write_all(b))
            .expect("write blob");
        compressed += b.len();
        files.push(p);
    }
    drop(blobs);
    let started = Instant::now();
    let mut uncompressed = 0usize;
    for f in &files {
        let out = Command::new("gzip")
            .arg("-dc")
            .arg(f)
            .output()
            .expect("gzip -dc");
        uncompressed += out.stdout.len();
    }
    let gzip_secs = started.elapsed().as_secs_f64();

    let out = Command::new(std::env::current_exe().expect("exe"))
        .arg("--child")
        .env("BENCH_PARTNER", &sc.partner_tenant_id)
        .env("BENCH_PC_ID", &sc.partner_center_app.client_id)
        .env("BENCH_PC_SECRET", &sc.partner_center_app.client_secret)
        .env("BENCH_LOGIN", em.login_url())
        .env("BENCH_GRAPH", em.graph_url())
        .env("BENCH_INVOICE", &invoice)
        .output()
        .expect("child");
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        std::process::exit(1);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let f: Vec<&str> = text.split_whitespace().collect();
    let read_lines: u64 = f[0].parse().unwrap_or(0);
    let secs: f64 = f[1].parse().unwrap_or(f64::NAN);
    let peak_kib: u64 = f[2].parse().unwrap_or(0);
    println!(
        "{lines:>9} lines, {} blobs, {:.0} MB gzip'd, {:.0} MB JSON: read {read_lines} lines ({} groups) in {secs:.2} s \
         (download from the local emulator, gunzip, split, parse, sum) = {:.0} lines/s; gzip -dc of the same blobs {gzip_secs:.2} s \
         (ratio {:.2}x); peak memory {:.1} MB",
        files.len(),
        compressed as f64 / 1e6,
        uncompressed as f64 / 1e6,
        f[3],
        read_lines as f64 / secs,
        secs / gzip_secs,
        peak_kib as f64 / 1024.0,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        child();
        return;
    }
    let sizes: Vec<usize> = if args.is_empty() {
        vec![100_000, 1_000_000]
    } else {
        args.iter().filter_map(|a| a.parse().ok()).collect()
    };
    for n in sizes {
        run(n);
    }
}
