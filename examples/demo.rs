//! The README's first command: starts the bundled emulator with a small sample estate, writes a config for
//! it, and runs the real csp-sync commands against it, with no credentials and no network. Each step shows
//! its summary (what csp-sync writes to stderr, and a line per tenant made from its JSON), not every
//! field; the config is kept for a look afterwards. The script (config, steps, summaries) is
//! `tests/cli/demo_script.rs`, which the black-box tests run too, holding its output under 120 lines of at
//! most 120 columns.

#[path = "../tests/cli/demo_script.rs"]
mod demo_script;
#[path = "../tests/cli/estate.rs"]
mod estate;

use std::path::Path;
use std::process::Command;

use csp_sync_emulator::{Emulator, Scenario};

/// Set in the child process that runs one csp-sync command line, as the binary would.
const CHILD: &str = "CSP_SYNC_DEMO_CHILD";

/// Runs one csp-sync command line in a child process (this program again) and prints its summary.
fn step(config: &Path, args: &[&str]) {
    let exe = std::env::current_exe().expect("the demo's own path");
    let out = Command::new(exe)
        .env(CHILD, "1")
        .arg("--config")
        .arg(config)
        .args(["-o", "json"])
        .args(args)
        .output()
        .expect("run csp-sync");
    let lines = demo_script::step_lines(
        args,
        &String::from_utf8_lossy(&out.stdout),
        &String::from_utf8_lossy(&out.stderr),
        out.status.code().unwrap_or(1),
    );
    for l in lines {
        println!("{l}");
    }
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
    // Kept after the demo (not a self-deleting temporary directory), so the config can be looked at.
    let dir = std::env::temp_dir().join(format!("csp-sync-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = estate::write_config(&em, &dir, &demo_script::options());
    // The refresh tokens live in files of their own, removed when the demo ends (unlike the config).
    let secrets = tempfile::tempdir().expect("temp dir for the demo's refresh tokens");
    let (set, _) = demo_script::secret_vars(estate::secret_env(&em), secrets.path());
    // SAFETY: as below.
    unsafe { std::env::set_var("CSP_SYNC_NOW", now.to_string()) };
    for (k, v) in set {
        // SAFETY: set before any csp-sync code runs; the emulator's thread reads no environment.
        unsafe { std::env::set_var(k, v) };
    }
    let urls = format!(
        "Emulator: Partner Center {}, Graph {}, Halo {}",
        em.partner_center_url(),
        em.graph_url(),
        em.halo_url()
    );
    for l in demo_script::fit(&urls) {
        println!("{l}");
    }
    for args in demo_script::STEPS {
        step(&config, args);
    }
    for l in demo_script::closing_lines(&config) {
        println!("{l}");
    }
}
