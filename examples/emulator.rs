//! The bundled emulator on its own: `cargo run --example emulator -- --port 7000 --scenario small`.

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = csp_sync_emulator::run_standalone(args).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
