//! The README's first command: starts the bundled emulator with a small sample estate, writes a config for
//! it, and runs the real csp-sync commands against it, with no credentials and no network. Each step shows
//! its summary (what csp-sync writes to stderr, and a line made from its JSON), not every field; the
//! config is kept for a look afterwards.

#[path = "../tests/cli/estate.rs"]
mod estate;

use std::path::Path;
use std::process::Command;

use csp_sync_emulator::{Emulator, Scenario};

/// Set in the child process that runs one csp-sync command line, as the binary would.
const CHILD: &str = "CSP_SYNC_DEMO_CHILD";
/// The widest line the demo prints.
const WIDTH: usize = 120;

/// A line clipped to [`WIDTH`] columns.
fn clip(line: &str) -> String {
    if line.chars().count() <= WIDTH {
        return line.to_string();
    }
    // ASCII dots, so a byte-counting `awk length` agrees with the character count.
    let mut s: String = line.chars().take(WIDTH - 3).collect();
    s.push_str("...");
    s
}

/// One line from a command's JSON: what the step found.
fn json_summary(args: &[&str], stdout: &str) -> Vec<String> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(stdout.trim()) else {
        return Vec::new();
    };
    if args.contains(&"diff") {
        let Ok(plan) = serde_json::from_value::<csp_sync::plan::Plan>(v) else {
            return Vec::new();
        };
        return plan
            .tenants
            .iter()
            .map(|t| format!("  {}: {}", t.name, csp_sync::render::tenant_summary(t)))
            .collect();
    }
    Vec::new()
}

/// Runs one csp-sync command line in a child process (this program again), prints its summary, and
/// returns its exit code.
fn step(config: &Path, args: &[&str]) -> i32 {
    println!("\n$ csp-sync {}", args.join(" "));
    let exe = std::env::current_exe().expect("the demo's own path");
    let out = Command::new(exe)
        .env(CHILD, "1")
        .arg("--config")
        .arg(config)
        .args(["-o", "json"])
        .args(args)
        .output()
        .expect("run csp-sync");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for l in json_summary(args, &stdout) {
        println!("{}", clip(&l));
    }
    for l in String::from_utf8_lossy(&out.stderr).lines() {
        println!("{}", clip(l));
    }
    let code = out.status.code().unwrap_or(1);
    println!("(exit code {code})");
    code
}

fn child() -> ! {
    let code = match csp_sync::cli::parse_args(std::env::args_os()) {
        Ok(cli) => csp_sync::app::run(cli).code(),
        Err(e) => {
            let _ = e.print();
            1
        }
    };
    std::process::exit(i32::from(code));
}

fn main() {
    if std::env::var_os(CHILD).is_some() {
        child();
    }
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    // One instant for the estate's dates and csp-sync's clock (today, so the demo reads naturally).
    let now = jiff::Timestamp::now();
    let em = rt
        .block_on(Emulator::start(Scenario::small_at(now)))
        .expect("start the emulator");
    let dir = std::env::temp_dir().join(format!("csp-sync-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // The assets module maps the emulator's asset types (1 Laptop, 3 Mobile Phone) and its type fields.
    let options = estate::ConfigOptions {
        modules: vec!["users", "licences", "assets"],
        extra: vec![(
            "[assets]",
            "asset_types = { windows = 1, ios = 3, default = 1 }\n\
             fields = { serialNumber = 2, model = 3, complianceState = 4 }"
                .into(),
        )],
        ..estate::ConfigOptions::default()
    };
    let config = estate::write_config(&em, &dir, &options);
    // SAFETY: as below.
    unsafe { std::env::set_var("CSP_SYNC_NOW", now.to_string()) };
    for (k, v) in estate::secret_env(&em) {
        // SAFETY: set before any csp-sync code runs; the emulator's thread reads no environment.
        unsafe { std::env::set_var(k, v) };
    }
    println!(
        "Emulator: Partner Center {}, Graph {}, Halo {}",
        em.partner_center_url(),
        em.graph_url(),
        em.halo_url()
    );
    for args in [
        vec!["tenants", "list"],
        vec!["tenants", "map", "--suggest"],
        vec!["diff", "--detailed-exitcode"],
        vec!["sync"],
        // Woodgrove Bank never consented the Graph app: fix it from the command line, then sync again.
        vec!["tenants", "consent", "--tenant", "Woodgrove Bank"],
        vec!["sync"],
        vec!["diff", "--detailed-exitcode"],
        // One billing run: last month's Azure usage as draft Halo invoices, this month's as an estimate.
        vec!["sync", "billing"],
    ] {
        step(&config, &args);
    }
    println!(
        "\nWoodgrove Bank's Graph app was not consented, so the first runs report its error (exit 1) and sync \
         the rest\n(users, licences, and Contoso's and Fabrikam's Intune devices as assets); after `tenants \
         consent` the second sync\nbrings it in and links the assets to the contacts the first sync created, \
         and the last diff finds nothing left\nto do (exit 0). The billing run turns last month's Azure usage \
         into one draft invoice per client (an unmapped\ncustomer is listed, not billed) and shows this \
         month's usage as an estimate."
    );
    println!(
        "\nThe config is kept for a look (the emulator it points at stops with this demo):\n  {}",
        config.display()
    );
    println!(
        "Each step ran with -o json and shows its summary; `-o table` shows every change, `--wide` every field."
    );
    println!(
        "A real set-up needs: a Partner Center app and its refresh token (`csp-sync auth login partner-center`),\n\
         a multi-tenant Graph app consented in each customer (`csp-sync tenants consent`), a Halo API client\n\
         (`csp-sync auth set halo`), then `csp-sync init`, `csp-sync tenants map` and `csp-sync doctor`\n\
         (README: \"Set-up: from nothing to the first cron run\")."
    );
}
