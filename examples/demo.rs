//! The README's first command: starts the bundled emulator with a small sample estate, writes a config for
//! it, and runs the real csp-sync commands against it, with no credentials and no network.

#[path = "../tests/cli/estate.rs"]
mod estate;

use std::path::Path;

use csp_sync_emulator::{Emulator, Scenario};

/// Runs one csp-sync command line in this process, as the binary would.
fn csp_sync(config: &Path, args: &[&str]) -> u8 {
    println!("\n$ csp-sync {}", args.join(" "));
    let mut argv = vec![
        "csp-sync".to_string(),
        "--config".into(),
        config.display().to_string(),
    ];
    argv.extend(args.iter().map(ToString::to_string));
    match csp_sync::cli::parse_args(argv) {
        Ok(cli) => csp_sync::app::run(cli).code(),
        Err(e) => {
            let _ = e.print();
            1
        }
    }
}

fn main() {
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
    println!("Config: {}", config.display());
    for args in [
        vec!["-o", "table", "tenants", "list"],
        vec!["-o", "table", "tenants", "map", "--suggest"],
        vec!["-o", "table", "diff", "--detailed-exitcode"],
        vec!["-o", "table", "sync"],
        // Woodgrove Bank never consented the Graph app: fix it from the command line, then sync again.
        vec![
            "-o",
            "table",
            "tenants",
            "consent",
            "--tenant",
            "Woodgrove Bank",
        ],
        vec!["-o", "table", "sync"],
        vec!["-o", "table", "diff", "--detailed-exitcode"],
    ] {
        let code = csp_sync(&config, &args);
        println!("(exit code {code})");
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "\nWoodgrove Bank's Graph app was not consented, so the first runs report its error (exit 1) and \
         sync the rest (users, licences, and Contoso's and Fabrikam's Intune devices as assets); after `tenants \
         consent` the second sync brings it in and links the assets to the contacts the first sync created, \
         and the last diff finds nothing left to do (exit 0)."
    );
}
