//! Everything a command needs to talk to the APIs, built once from the validated config and the secrets.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use secrecy::SecretString;

use crate::api::graph::Graph;
use crate::api::halo::Halo;
use crate::api::partner_center::PartnerCenter;
use crate::auth::{
    CredentialSettings, Credentials, GraphAuthMode, HaloAuth, RefreshTokenName, TokenProvider,
};
use crate::config::{Config, GraphAuth};
use crate::http::{Http, HttpOptions, RateLimit};
use crate::secrets::{Rotation, SecretName, SecretSource, Secrets};

/// The clock: `CSP_SYNC_NOW` (RFC 3339) when set, for tests; else the system time.
pub fn now() -> Result<jiff::Timestamp> {
    match std::env::var("CSP_SYNC_NOW") {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().with_context(|| {
            format!("CSP_SYNC_NOW={v:?} is not an RFC 3339 time such as 2026-11-27T09:00:00Z")
        }),
        _ => Ok(jiff::Timestamp::now()),
    }
}

/// The API side of a run: one HTTP client, the credentials, and a client per API.
pub struct Apis {
    pub http: Arc<Http>,
    pub creds: Arc<Credentials>,
    pub partner_center: PartnerCenter,
    pub graph: Graph,
    pub halo: Halo,
    /// Warnings about secrets (a rotated refresh token that could not be stored back), shown once.
    pub warnings: Arc<Mutex<Vec<String>>>,
}

fn optional(secrets: &Secrets, name: SecretName) -> Result<Option<(SecretString, SecretSource)>> {
    secrets.get(name).map_err(|e| anyhow::anyhow!("{e}"))
}

impl Apis {
    /// Builds the HTTP client and the credentials. Secrets that are missing are only an error when a call
    /// needs them, with a message naming every way to provide them.
    pub fn new(config: &Config, secrets: Secrets) -> Result<Apis> {
        let options = HttpOptions {
            halo_rate_limit: Some(RateLimit {
                requests: config.halo.rate_limit.requests,
                per: Duration::from_secs(u64::from(config.halo.rate_limit.per_seconds)),
            }),
            // Every command that calls Halo shares the window of its state directory (SPEC 9).
            halo_window_dir: Some(config.sync.state_dir.clone()),
            ..HttpOptions::default()
        };
        let http = Arc::new(Http::new(options).map_err(|e| anyhow::anyhow!("{e}"))?);
        let halo_secret = optional(&secrets, SecretName::HaloClientSecret)?;
        let halo_source = halo_secret.as_ref().map(|(_, s)| s.clone());
        let halo = halo_secret.map(|(secret, _)| HaloAuth {
            token_url: config.halo.token_url.clone(),
            tenant: config.halo.tenant.clone(),
            client_id: config.halo.client_id.clone(),
            client_secret: secret,
            scope: config.halo.scope.clone(),
        });
        let pc_secret = optional(&secrets, SecretName::PartnerCenterClientSecret)?;
        let pc_refresh = optional(&secrets, SecretName::PartnerCenterRefreshToken)?;
        let graph_secret = optional(&secrets, SecretName::GraphClientSecret)?;
        let graph_refresh = optional(&secrets, SecretName::GraphRefreshToken)?;
        let mut found = Vec::new();
        let mut from = std::collections::HashMap::new();
        for (name, source) in [
            (SecretName::HaloClientSecret, halo_source),
            (
                SecretName::PartnerCenterClientSecret,
                pc_secret.as_ref().map(|(_, s)| s.clone()),
            ),
            (
                SecretName::PartnerCenterRefreshToken,
                pc_refresh.as_ref().map(|(_, s)| s.clone()),
            ),
            (
                SecretName::GraphClientSecret,
                graph_secret.as_ref().map(|(_, s)| s.clone()),
            ),
            (
                SecretName::GraphRefreshToken,
                graph_refresh.as_ref().map(|(_, s)| s.clone()),
            ),
        ] {
            if let Some(SecretSource::File(path)) = &source
                && let Some(w) = crate::permissions::secret_file_warning(&name.file_env_var(), path)
            {
                found.push(w);
            }
            if let Some(source) = source {
                from.insert(name, source);
            }
        }
        if let Some(w) = crate::permissions::state_dir_warning(&config.sync.state_dir) {
            found.push(w);
        }
        let sources: Vec<(RefreshTokenName, SecretName, SecretSource)> = [
            (
                RefreshTokenName::PartnerCenter,
                SecretName::PartnerCenterRefreshToken,
                pc_refresh.as_ref().map(|(_, s)| s.clone()),
            ),
            (
                RefreshTokenName::Graph,
                SecretName::GraphRefreshToken,
                graph_refresh.as_ref().map(|(_, s)| s.clone()),
            ),
        ]
        .into_iter()
        .filter_map(|(r, n, s)| s.map(|s| (r, n, s)))
        .collect();
        let settings = CredentialSettings {
            partner_tenant_id: config.partner_center.tenant_id.clone(),
            partner_center_client_id: config.partner_center.client_id.clone(),
            partner_center_client_secret: pc_secret.map(|(s, _)| s),
            partner_center_refresh_token: pc_refresh.map(|(s, _)| s),
            graph_client_id: config.graph.client_id.clone(),
            graph_client_secret: graph_secret.map(|(s, _)| s),
            graph_refresh_token: graph_refresh.map(|(s, _)| s),
            graph_mode: match config.graph.auth {
                GraphAuth::App => GraphAuthMode::App,
                GraphAuth::Delegated => GraphAuthMode::Delegated,
            },
            partner_center_resource: config.microsoft.partner_center_resource.clone(),
            graph_resource: config.microsoft.graph_scope_resource.clone(),
        };
        let provider = TokenProvider::new(http.clone(), config.microsoft.login_url.clone(), halo);
        let warnings = Arc::new(Mutex::new(found));
        let sink = warnings.clone();
        let secrets = Arc::new(secrets);
        let creds = Credentials::new(provider, settings)
            .with_secret_sources(from)
            .with_rotation_callback(Box::new(
                move |name: RefreshTokenName, value: &SecretString| {
                    let Some((_, secret_name, source)) =
                        sources.iter().find(|(r, _, _)| *r == name)
                    else {
                        return;
                    };
                    let message = match secrets.store_rotated(*secret_name, value, source) {
                        Ok(Rotation::Stored(_)) => return,
                        Ok(Rotation::NotStored { warning }) => warning,
                        Err(e) => format!("could not store the rotated refresh token: {e}"),
                    };
                    if let Ok(mut w) = sink.lock()
                        && !w.contains(&message)
                    {
                        w.push(message);
                    }
                },
            ));
        let creds = Arc::new(creds);
        Ok(Apis {
            partner_center: PartnerCenter::new(
                http.clone(),
                creds.clone(),
                &config.microsoft.partner_center_url,
            ),
            graph: Graph::new(http.clone(), creds.clone(), &config.microsoft.graph_url),
            halo: Halo::new(http.clone(), creds.clone(), &config.halo.api_url),
            http,
            creds,
            warnings,
        })
    }

    /// Warnings gathered so far, each once.
    pub fn take_warnings(&self) -> Vec<String> {
        self.warnings
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default()
    }
}
