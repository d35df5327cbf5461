//! `csp-sync auth login partner-center|graph`: the OAuth 2.0 device authorization grant against the
//! partner tenant. The URL and the code go to stderr; the token endpoint is polled every `interval`
//! seconds (`authorization_pending`: keep polling; `slow_down`: 5 s more); the refresh token is stored like
//! `auth set` does: in `CSP_SYNC_<NAME>_FILE` when that is set (rewritten atomically, mode 0600), else in the
//! OS keyring. It is never printed.
//!
//! No client secret is sent: the device code grant is a public-client flow (the app registration needs
//! "Allow public client flows"); Microsoft refuses a secret from a public client (AADSTS700025).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::Value;

use crate::auth::AuthError;
use crate::cli::LoginTarget;
use crate::config::Config;
use crate::error::Exit;
use crate::http::{Api, Http, HttpOptions, Request, RequestKind};
use crate::secrets::Secrets;
use crate::ui::Ui;

/// The device code grant type.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Where the refresh token will be stored, decided before the sign-in starts.
enum Store {
    File(PathBuf),
    Keyring,
}

fn choose_store(target: LoginTarget, env: &dyn Fn(&str) -> Option<String>) -> Result<Store> {
    let name = target.secret();
    if let Some(path) = env(&name.file_env_var()).filter(|v| !v.trim().is_empty()) {
        return Ok(Store::File(PathBuf::from(path.trim())));
    }
    let no_keyring = env("CSP_SYNC_NO_KEYRING").is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    });
    if no_keyring {
        bail!(
            "the keyring is turned off (CSP_SYNC_NO_KEYRING) and {} is not set, so the {} would have nowhere \
             to go; set {} to the path of a file for it (created with mode 0600) and run `csp-sync auth login` again",
            name.file_env_var(),
            name.description(),
            name.file_env_var()
        );
    }
    Ok(Store::Keyring)
}

async fn post_form(
    http: &Http,
    url: String,
    form: Vec<(&'static str, SecretString)>,
    tenant: &str,
) -> Result<(u16, Value)> {
    let req = Request::post(Api::Login, url)
        .kind(RequestKind::Read)
        .form(form);
    let resp = http
        .send_raw(&req)
        .await
        .map_err(|e| anyhow::anyhow!("the sign-in request to the identity platform failed: {e}"))?;
    let body: Value = serde_json::from_str(&resp.body)
        .map_err(|_| AuthError::from_body("Microsoft", tenant, resp.status.as_u16(), &resp.body))?;
    Ok((resp.status.as_u16(), body))
}

/// A whole number of seconds from the device-code reply, clamped to `1..=max` so a broken reply
/// (u64::MAX, 1e30, negative) can neither overflow nor make the login wait for ever.
fn seconds(v: &Value, key: &str, default: u64, max: u64) -> u64 {
    let n = match v.get(key) {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match n.filter(|n| !n.is_nan()) {
        None => default,
        Some(n) if n >= max as f64 => max,
        Some(n) if n < 1.0 => 1,
        Some(n) => n as u64,
    }
}

pub async fn run(config: &Config, ui: &Ui, target: LoginTarget) -> Result<Exit> {
    let env = |k: &str| std::env::var(k).ok();
    let store = choose_store(target, &env)?;
    let name = target.secret();
    let (client_id, resource) = match target {
        LoginTarget::PartnerCenter => (
            config.partner_center.client_id.clone(),
            config.microsoft.partner_center_resource.clone(),
        ),
        LoginTarget::Graph => (
            config.graph.client_id.clone(),
            config.microsoft.graph_scope_resource.clone(),
        ),
    };
    let tenant = config.partner_center.tenant_id.clone();
    let login = config.microsoft.login_url.trim_end_matches('/').to_string();
    let scope = format!("{}/.default offline_access", resource.trim_end_matches('/'));
    let http = Arc::new(Http::new(HttpOptions::default()).map_err(|e| anyhow::anyhow!("{e}"))?);

    let (status, start) = post_form(
        &http,
        format!("{login}/{tenant}/oauth2/v2.0/devicecode"),
        vec![
            ("client_id", SecretString::from(client_id.clone())),
            ("scope", SecretString::from(scope.clone())),
        ],
        &tenant,
    )
    .await?;
    if status >= 400 {
        let e = AuthError::from_body("Microsoft", &tenant, status, &start.to_string());
        bail!("the identity platform refused to start the sign-in: {e}");
    }
    let device_code = start
        .get("device_code")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .context("the device code response has no device_code; check [microsoft] login_url")?
        .to_string();
    let message = match start.get("message").and_then(Value::as_str) {
        Some(m) => m.to_string(),
        None => format!(
            "To sign in, open {} in any browser and enter the code {}.",
            start
                .get("verification_uri")
                .and_then(Value::as_str)
                .unwrap_or("https://microsoft.com/devicelogin"),
            start
                .get("user_code")
                .and_then(Value::as_str)
                .unwrap_or("?")
        ),
    };
    // The prompt goes to stderr even with -q: without it the command cannot succeed.
    ui.say(&message);
    ui.say("Sign in as the partner user csp-sync should act as (MFA included). Waiting for the sign-in...");

    let mut interval = seconds(&start, "interval", 5, 60);
    let expires_in = seconds(&start, "expires_in", 900, 3600);
    let scale = crate::http::retry_scale_from_env();
    let started = std::time::Instant::now();
    let refresh = loop {
        if started.elapsed() > Duration::from_secs(expires_in) {
            bail!(
                "the code expired before the sign-in was completed; run `csp-sync auth login` again"
            );
        }
        tokio::time::sleep(Duration::from_secs(interval).mul_f64(scale.clamp(0.0, 1.0))).await;
        let (status, body) = post_form(
            &http,
            format!("{login}/{tenant}/oauth2/v2.0/token"),
            vec![
                ("grant_type", SecretString::from(DEVICE_CODE_GRANT)),
                ("client_id", SecretString::from(client_id.clone())),
                ("device_code", SecretString::from(device_code.clone())),
                // Not required by RFC 8628; sent because the identity platform's v2 endpoint takes the
                // scope of the token it issues from it.
                ("scope", SecretString::from(scope.clone())),
            ],
            &tenant,
        )
        .await?;
        if status < 400 {
            let Some(rt) = body
                .get("refresh_token")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            else {
                bail!(
                    "the sign-in worked but no refresh token came back (was offline_access refused?); nothing was stored"
                );
            };
            crate::redact::register(rt);
            if let Some(at) = body.get("access_token").and_then(Value::as_str) {
                crate::redact::register(at);
            }
            break SecretString::from(rt.to_string());
        }
        match body.get("error").and_then(Value::as_str).unwrap_or("") {
            "authorization_pending" => {}
            "slow_down" => interval = (interval + 5).min(60),
            _ => {
                let e = AuthError::from_body("Microsoft", &tenant, status, &body.to_string());
                bail!("the sign-in failed: {e}; nothing was stored");
            }
        }
    };

    match store {
        Store::File(path) => {
            crate::config::write_atomic(
                &path,
                format!("{}\n", refresh.expose_secret()).as_bytes(),
                Some(0o600),
            )
            .with_context(|| {
                format!(
                    "signed in, but the {} could not be written to {} ({}); check the directory exists and is writable",
                    name.description(),
                    path.display(),
                    name.file_env_var()
                )
            })?;
            ui.info(&format!(
                "Stored the {} in {} (mode 0600).",
                name.description(),
                path.display()
            ));
        }
        Store::Keyring => {
            Secrets::from_env().set_in_keyring(name, &refresh)?;
            ui.info(&format!(
                "Stored the {} in the OS keyring (service csp-sync, entry {}).",
                name.description(),
                name.keyring_entry()
            ));
        }
    }
    if env(&name.env_var()).is_some_and(|v| !v.is_empty()) {
        ui.warn(&format!(
            "{} is set and takes precedence over the stored value; unset it to use the new one",
            name.env_var()
        ));
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_is_the_file_when_named_and_refused_without_keyring_or_file() {
        let file_var = LoginTarget::Graph.secret().file_env_var();
        let with_file = |k: &str| (k == file_var).then(|| "/tmp/rt".to_string());
        assert!(matches!(
            choose_store(LoginTarget::Graph, &with_file),
            Ok(Store::File(p)) if p == std::path::Path::new("/tmp/rt")
        ));
        let no_keyring = |k: &str| (k == "CSP_SYNC_NO_KEYRING").then(|| "1".to_string());
        let err = choose_store(LoginTarget::Graph, &no_keyring)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(&file_var), "{err}");
        assert!(matches!(
            choose_store(LoginTarget::Graph, &|_| None),
            Ok(Store::Keyring)
        ));
    }
}
