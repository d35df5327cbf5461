//! The bundled emulator on its own: `cargo run --example emulator -- --port 7000 --scenario small`.
//!
//! Prints the emulator's URLs and credentials, then a `csp-sync.toml` and the environment to paste, so
//! csp-sync can be pointed at it from another terminal. The estate is dated from `--now` (default the real
//! time), and csp-sync needs the same instant as `CSP_SYNC_NOW`.

#[path = "../tests/cli/estate.rs"]
mod estate;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let emu = match csp_sync_emulator::start_standalone(args) {
        Ok(Some(emu)) => emu,
        Ok(None) => return,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let sc = emu.scenario();
    let now =
        jiff::Timestamp::from_second(sc.now_secs()).unwrap_or_else(|_| jiff::Timestamp::now());
    println!("\n# ---- csp-sync.toml (paste into a file of that name) ----");
    print!(
        "{}",
        estate::config_text(&emu, &estate::ConfigOptions::default())
    );
    println!("# ---- environment (paste into the shell that runs csp-sync) ----");
    for (k, v) in estate::secret_env(&emu) {
        if k != "CSP_SYNC_RETRY_SCALE" {
            println!("export {k}='{v}'");
        }
    }
    println!("export CSP_SYNC_NOW={now}");
    println!("# then: csp-sync doctor; csp-sync diff");
    println!("serving; stop with Ctrl-C");
    std::future::pending::<()>().await;
    drop(emu);
}
