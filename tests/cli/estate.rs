//! Wires csp-sync to a running emulator: the config file and the secret environment a user would set.
//! Shared by the black-box tests and `examples/demo.rs` (included with `#[path]`).

#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use csp_sync_emulator::Emulator;

/// Options for the generated configuration.
#[derive(Debug, Clone)]
pub struct ConfigOptions {
    pub modules: Vec<&'static str>,
    /// Extra TOML appended to the named sections, e.g. `("[safety]", "max_deactivations = 1")`.
    pub extra: Vec<(&'static str, String)>,
    /// Map only these customers (by name); `None` maps every customer the scenario maps.
    pub only: Option<Vec<String>>,
    pub graph_auth: &'static str,
    /// `[halo] rate_limit` as (requests, per_seconds).
    pub rate_limit: (u32, u32),
    /// Whether the partner's refresh token (app+user Partner Center access) is in the environment.
    pub partner_refresh_token: bool,
}

impl ConfigOptions {
    #[must_use]
    pub fn with_partner_refresh_token(mut self, on: bool) -> Self {
        self.partner_refresh_token = on;
        self
    }
}

impl Default for ConfigOptions {
    fn default() -> Self {
        ConfigOptions {
            modules: vec!["users", "licences"],
            extra: Vec::new(),
            only: None,
            graph_auth: "app",
            rate_limit: (300, 300),
            partner_refresh_token: true,
        }
    }
}

fn section_extra(opts: &ConfigOptions, section: &str) -> String {
    opts.extra
        .iter()
        .filter(|(s, _)| *s == section)
        .fold(String::new(), |mut acc, (_, v)| {
            acc.push_str(v);
            acc.push('\n');
            acc
        })
}

/// The text of a csp-sync.toml for this emulator, mapping the customers the scenario says are mapped.
pub fn config_text(em: &Emulator, opts: &ConfigOptions) -> String {
    let sc = em.scenario();
    let mut t = String::new();
    let _ = write!(
        t,
        "# csp-sync configuration for the bundled emulator\n\
         [partner_center]\ntenant_id = \"{}\"\nclient_id = \"{}\"\n{}\n\
         [graph]\nclient_id = \"{}\"\nauth = \"{}\"\n{}\n\
         [halo]\nurl = \"{}\"\n{}client_id = \"{}\"\nrate_limit = {{ requests = {}, per_seconds = {} }}\n{}\n\
         [microsoft]\nlogin_url = \"{}\"\ngraph_url = \"{}\"\npartner_center_url = \"{}\"\n\n\
         [sync]\nmodules = [{}]\nstate_dir = \"state\"\n{}\n",
        sc.partner_tenant_id,
        sc.partner_center_app.client_id,
        section_extra(opts, "[partner_center]"),
        sc.graph_app.client_id,
        opts.graph_auth,
        section_extra(opts, "[graph]"),
        em.halo_url(),
        sc.halo_app
            .tenant
            .as_ref()
            .map(|t| format!("tenant = \"{t}\"\n"))
            .unwrap_or_default(),
        sc.halo_app.client_id,
        opts.rate_limit.0,
        opts.rate_limit.1,
        section_extra(opts, "[halo]"),
        em.login_url(),
        em.graph_url(),
        em.partner_center_url(),
        opts.modules
            .iter()
            .map(|m| format!("\"{m}\""))
            .collect::<Vec<_>>()
            .join(", "),
        section_extra(opts, "[sync]"),
    );
    for section in ["[safety]", "[users]", "[licences]", "[assets]", "[billing]"] {
        let body = section_extra(opts, section);
        if !body.is_empty() {
            let _ = writeln!(t, "{section}\n{body}");
        }
    }
    for c in &sc.customers {
        let Some(client) = c.halo_client_id else {
            continue;
        };
        if let Some(only) = &opts.only
            && !only.iter().any(|n| n.eq_ignore_ascii_case(&c.name))
        {
            continue;
        }
        let _ = write!(
            t,
            "[[tenant]]\ncustomer_id = \"{}\"\nname = \"{}\"\nhalo_client_id = {client}\n\n",
            c.tenant_id, c.name
        );
    }
    t
}

/// Writes the config into `dir` and returns its path.
pub fn write_config(em: &Emulator, dir: &Path, opts: &ConfigOptions) -> PathBuf {
    let path = dir.join("csp-sync.toml");
    std::fs::write(&path, config_text(em, opts)).expect("write config");
    path
}

/// The environment a CI job would set: every secret as `CSP_SYNC_<NAME>`, no keyring, a pinned clock and
/// fast retries.
pub fn secret_env(em: &Emulator) -> Vec<(String, String)> {
    let sc = em.scenario();
    vec![
        (
            "CSP_SYNC_PARTNER_CENTER_CLIENT_SECRET".into(),
            sc.partner_center_app.client_secret.clone(),
        ),
        (
            "CSP_SYNC_PARTNER_CENTER_REFRESH_TOKEN".into(),
            sc.partner_center_app.refresh_token.clone(),
        ),
        (
            "CSP_SYNC_GRAPH_CLIENT_SECRET".into(),
            sc.graph_app.client_secret.clone(),
        ),
        // The partner user's refresh token for the Graph app: `tenants consent` grants the app's
        // application permissions with it when `[graph] auth = "app"`.
        (
            "CSP_SYNC_GRAPH_REFRESH_TOKEN".into(),
            sc.graph_app.refresh_token.clone(),
        ),
        (
            "CSP_SYNC_HALO_CLIENT_SECRET".into(),
            sc.halo_app.client_secret.clone(),
        ),
        ("CSP_SYNC_NO_KEYRING".into(), "1".into()),
        ("CSP_SYNC_RETRY_SCALE".into(), "0.001".into()),
    ]
}
