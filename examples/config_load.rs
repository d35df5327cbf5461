//! Measures config loading: `cargo run --release --example config_load -- 40000` writes a config with that
//! many `[[tenant]]` entries and prints how long `csp_sync::config::load` takes (linear in entries).

use std::fmt::Write as _;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(40_000);
    let mut text = String::from(
        "[partner_center]\ntenant_id = \"0f1e2d3c-0000-4000-8000-000000000001\"\n\
         client_id = \"0f1e2d3c-0000-4000-8000-000000000002\"\n[graph]\n\
         client_id = \"0f1e2d3c-0000-4000-8000-000000000003\"\n[halo]\nurl = \"https://h.example.com\"\n\
         client_id = \"0f1e2d3c-0000-4000-8000-000000000004\"\n",
    );
    for i in 0..n {
        let _ = write!(
            text,
            "\n[[tenant]]\ncustomer_id = \"aaaaaaaa-0000-0000-0000-{i:012}\"\nname = \"Customer {i}\"\nhalo_client_id = {}\n",
            i + 1
        );
    }
    let dir = std::env::temp_dir().join(format!("csp-sync-config-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("csp-sync.toml");
    std::fs::write(&path, &text).expect("write config");
    let started = std::time::Instant::now();
    let config = csp_sync::config::load(&path).expect("loads");
    let elapsed = started.elapsed();
    println!(
        "{} [[tenant]] entries ({} KB) loaded in {:.2} s",
        config.tenants.len(),
        text.len() / 1024,
        elapsed.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
