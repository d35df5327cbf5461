//! The demo's script: its config, its steps, and how each step's output is summarised. Shared by
//! `examples/demo.rs` (which runs it against a fresh emulator, each step in a child process) and the
//! black-box tests (`demo::the_demo_is_short_and_narrow`, the snapshots of `render`), both including this
//! file with `#[path]` next to `estate.rs`, so the demo and its checks cannot drift apart.

#![allow(dead_code)]

use std::path::Path;

use super::estate::ConfigOptions;

/// The widest line the demo prints.
pub const WIDTH: usize = 120;
/// The demo's whole output stays under this many lines.
pub const MAX_LINES: usize = 120;

/// The demo's config: every module, the assets module mapping the emulator's asset types (1 Laptop,
/// 3 Mobile Phone) and its type fields.
pub fn options() -> ConfigOptions {
    ConfigOptions {
        modules: vec!["users", "licences", "assets", "billing"],
        extra: vec![(
            "[assets]",
            "asset_types = { windows = 1, ios = 3, default = 1 }\n\
             fields = { serialNumber = 2, model = 3, complianceState = 4 }"
                .into(),
        )],
        ..ConfigOptions::default()
    }
}

/// The command lines the demo runs, in order (each with `-o json`).
pub const STEPS: &[&[&str]] = &[
    &["tenants", "list"],
    &["tenants", "map", "--suggest"],
    &["diff", "--detailed-exitcode"],
    &["sync"],
    // Woodgrove Bank never consented the Graph app: fix it from the command line, then sync again.
    &["tenants", "consent", "--tenant", "Woodgrove Bank"],
    &["sync"],
    &["diff", "--detailed-exitcode"],
];

/// The demo's secrets: the client secrets as environment variables, the refresh tokens (which Microsoft
/// rotates on use) in files named by `CSP_SYNC_*_FILE` under `dir`, so csp-sync keeps them current as a real
/// set-up would. Returns the variables to set and those to unset; `dir` should not outlive the demo.
pub fn secret_vars(
    secrets: Vec<(String, String)>,
    dir: &Path,
) -> (Vec<(String, String)>, Vec<String>) {
    let mut set = Vec::new();
    let mut unset = Vec::new();
    for (k, v) in secrets {
        if k.ends_with("_REFRESH_TOKEN") {
            let path = dir.join(k.to_lowercase());
            std::fs::write(&path, format!("{v}\n")).expect("write a refresh token file");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
            }
            set.push((format!("{k}_FILE"), path.display().to_string()));
            unset.push(k);
        } else {
            set.push((k, v));
        }
    }
    (set, unset)
}

/// A line of at most [`WIDTH`] columns per piece: longer lines wrap with an indent, nothing is cut off.
pub fn fit(line: &str) -> Vec<String> {
    if line.chars().count() <= WIDTH {
        return vec![line.to_string()];
    }
    csp_sync::render::wrap("", 4, line, WIDTH)
}

/// One line per tenant from a plan's JSON: what the step found.
fn json_summary(args: &[&str], stdout: &str) -> Vec<String> {
    if !args.contains(&"diff") {
        return Vec::new();
    }
    let Ok(plan) = serde_json::from_str::<csp_sync::plan::Plan>(stdout.trim()) else {
        return Vec::new();
    };
    plan.tenants
        .iter()
        .map(|t| format!("  {}: {}", t.name, csp_sync::render::tenant_summary(t)))
        .collect()
}

/// What the demo prints for one step: the command line, the plan's per-tenant summary, what csp-sync
/// wrote to stderr (its own summary, warnings and errors), and the exit code.
pub fn step_lines(args: &[&str], stdout: &str, stderr: &str, code: i32) -> Vec<String> {
    let mut out = vec![String::new(), format!("$ csp-sync {}", args.join(" "))];
    out.extend(json_summary(args, stdout));
    for l in stderr.lines() {
        out.extend(fit(l));
    }
    out.push(format!("(exit code {code})"));
    out
}

/// The demo's closing words: what happened, where the config is kept, and what a real set-up needs.
pub fn closing_lines(config: &Path) -> Vec<String> {
    let text = format!(
        "\nWoodgrove Bank's Graph app was not consented, so the first runs report its error (exit 1) and sync \
         the rest\n(users, licences, Contoso's and Fabrikam's Intune devices as assets, and last month's Azure \
         usage as one draft\ninvoice per client: an unmapped customer is listed, not billed); after `tenants \
         consent` the second sync brings\nWoodgrove in and links the assets to the contacts the first sync \
         created, and the last diff finds nothing left\nto do (exit 0; this month's usage shows as an \
         estimate, never as a change).\n\
         \nThe config is kept for a look (the emulator it points at stops with this demo; its state is beside it):\n  {}\n\
         Each step ran with -o json and shows its summary; `-o table` shows one line per change, `--wide` every field.\n\
         The refresh tokens sat in CSP_SYNC_*_REFRESH_TOKEN_FILE files (removed with the demo), so csp-sync could\n\
         keep the ones Microsoft rotates; client secrets came from CSP_SYNC_* variables (README: \"Secrets\").\n\
         A real set-up needs: a Partner Center app and its refresh token (`csp-sync auth login partner-center`),\n\
         a multi-tenant Graph app consented in each customer (`csp-sync tenants consent`), a Halo API client\n\
         (`csp-sync auth set halo`), then `csp-sync init`, `csp-sync tenants map` and `csp-sync doctor`\n\
         (README: \"Set-up: from nothing to the first cron run\").",
        config.display()
    );
    text.lines().flat_map(fit).collect()
}
