//! Access tokens: the Microsoft identity platform v2 token endpoint (client credentials and refresh
//! token grants) and Halo's client-credentials endpoint, with an in-memory cache.
//!
//! - [`TokenProvider`] gets and caches tokens per (tenant, client id, resource, grant) for their lifetime,
//!   renewing them 5 minutes early; concurrent callers for one key share one request (single flight).
//! - [`Credentials`] holds the secrets and knows which grant each API call needs ([`TokenSource`]):
//!   Partner Center app-only or app+user, Graph app or delegated per customer tenant, the Graph
//!   partner-tenant token, Halo. A rotated refresh token is kept in memory and handed to a callback so the
//!   caller can store it back (SPEC section 5).
//!
//! The API clients renew a token once on a 401 ([`Credentials::invalidate`] then retry).

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex as StdMutex, PoisonError};
use std::time::Duration;

use secrecy::SecretString;
use serde_json::Value;
use tokio::time::Instant;

use crate::http::{Api, ApiError, Http, Request, RequestKind, excerpt};
use crate::secrets::{SecretName, SecretSource};

/// Tokens are renewed this long before they expire.
const RENEW_EARLY: Duration = Duration::from_secs(5 * 60);
/// Lifetime assumed when a token response has no usable `expires_in` (documented typical value).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// The OAuth grant a token was obtained with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Grant {
    ClientCredentials,
    RefreshToken,
    Halo,
}

/// Cache key of a token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenKey {
    /// Tenant id (Microsoft) or the token URL (Halo).
    pub tenant: String,
    pub client_id: String,
    /// Resource URL (Microsoft) or scope (Halo).
    pub resource: String,
    pub grant: Grant,
}

/// A token request that failed. Its `Display` names the tenant, the AADSTS code, the cause in plain
/// words and the fix. It never contains a secret.
#[derive(Debug, Clone, thiserror::Error)]
pub struct AuthError {
    /// The tenant the token was requested for (Halo: the Halo tenant or URL).
    pub tenant: String,
    /// The AADSTS number, when the identity platform gave one.
    pub code: Option<u32>,
    /// OAuth `error` (`invalid_grant`, ...), or `request_failed` / `missing_secret` / `bad_response`.
    pub error: String,
    /// First line of `error_description`, or what went wrong.
    pub description: String,
    /// Which credential: "Partner Center", "Graph", "Halo".
    pub service: &'static str,
    /// HTTP status of the token response, if there was one.
    pub status: Option<u16>,
    /// Where the request went, what came back and which secrets went along (boxed: errors stay small).
    pub at: Box<AuthContext>,
}

/// The context of an [`AuthError`] that names the place to fix.
#[derive(Debug, Clone, Default)]
pub struct AuthContext {
    /// The `csp-sync auth login` / `auth set` target of the credential involved, for the hint.
    pub login_target: Option<&'static str>,
    /// The token endpoint asked (query included, never a secret: secrets travel in the form body).
    pub url: Option<String>,
    /// What the endpoint answered when it was not an OAuth error ("an HTML page", ...): then the URL
    /// points at something that is not an authorisation server.
    pub answer: Option<String>,
    /// The client secret sent and where it came from, so the fix names that place (SPEC 5).
    pub secret: Option<(SecretName, SecretSource)>,
    /// The refresh token sent and where it came from.
    pub refresh: Option<(SecretName, SecretSource)>,
}

impl AuthError {
    fn new(service: &'static str, tenant: &str, error: &str, description: String) -> Self {
        AuthError {
            tenant: tenant.to_string(),
            code: None,
            error: error.to_string(),
            description,
            service,
            status: None,
            at: Box::default(),
        }
    }

    fn from_api(service: &'static str, tenant: &str, e: &ApiError) -> Self {
        let mut err = AuthError::new(service, tenant, "request_failed", e.to_string());
        err.status = e.status;
        err
    }

    /// Parses an identity-platform (or Halo OAuth) error body.
    pub fn from_body(service: &'static str, tenant: &str, status: u16, body: &str) -> Self {
        let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        let error = v
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown_error")
            .to_string();
        let full_description = v
            .get("error_description")
            .and_then(Value::as_str)
            .map_or_else(
                || {
                    if v.is_null() {
                        excerpt(body)
                    } else {
                        String::new()
                    }
                },
                str::to_string,
            );
        let description = full_description
            .split(['\r', '\n'])
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        // Key off error_codes[] (reference 1.8), falling back to the number in the text.
        let code = v
            .get("error_codes")
            .and_then(|c| c.get(0))
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .or_else(|| aadsts_in_text(&description));
        let answer = (error == "unknown_error").then(|| answer_of(&v, body));
        AuthError {
            tenant: tenant.to_string(),
            code,
            error,
            description,
            service,
            status: Some(status),
            at: Box::new(AuthContext {
                answer,
                ..AuthContext::default()
            }),
        }
    }

    /// Whether the cause is the same in every tenant (a wrong or missing secret, an expired refresh token,
    /// an unreachable endpoint): then the message names no tenant, and the per-tenant reports of one run
    /// read as one line (`commands::run::error_lines`).
    pub fn is_shared(&self) -> bool {
        match self.code {
            Some(7_000_215 | 7_000_222 | 700_082 | 70008 | 50173 | 70043 | 70011) => true,
            Some(_) => false,
            None => {
                matches!(
                    self.error.as_str(),
                    "missing_secret"
                        | "request_failed"
                        | "redirected"
                        | "bad_response"
                        | "invalid_client"
                ) || self.at.answer.is_some()
                    || self.service == "Halo"
            }
        }
    }

    /// Where the secret behind a refused client credential came from, and how to replace it there:
    /// `auth set` only for the keyring (a value in the environment or a `_FILE` comes first and would
    /// hide what `auth set` stores).
    fn secret_fix(&self, set: &str) -> (String, String) {
        match &self.at.secret {
            Some((name, SecretSource::Env(var))) => (
                format!(" (it came from the environment variable {var})"),
                format!("set {var} to the current {}", name.description()),
            ),
            Some((name, SecretSource::File(path))) => (
                format!(
                    " (it came from the file {} named by {})",
                    path.display(),
                    name.file_env_var()
                ),
                format!(
                    "write the current {} into {}",
                    name.description(),
                    path.display()
                ),
            ),
            Some((name, SecretSource::Keyring)) => (
                " (it came from the OS keyring)".to_string(),
                format!(
                    "store the current {} with `csp-sync auth set {}`",
                    name.description(),
                    name.keyring_entry()
                ),
            ),
            None => (
                String::new(),
                format!("store the current secret with {set}"),
            ),
        }
    }

    /// The token endpoint and what it answered, when that was not an OAuth error: the URL in the config
    /// points at another service or a web page.
    fn wrong_endpoint(&self) -> Option<(String, String)> {
        let answer = self.at.answer.as_ref()?;
        let url = self.at.url.as_deref().unwrap_or("the token endpoint");
        let status = self
            .status
            .map_or_else(String::new, |s| format!("HTTP {s} with "));
        let (what, key) = if self.service == "Halo" {
            (
                "Halo's authorisation server",
                "set [halo] url to Halo's own address such as https://acme.halopsa.com (its token \
                 endpoint is /auth/token below it), or [halo] auth_url when the authorisation server is \
                 elsewhere",
            )
        } else {
            (
                "the Microsoft identity platform",
                "set [microsoft] login_url (or cloud) to the identity platform",
            )
        };
        Some((
            format!("{url} answered {status}{answer}, which is not {what}"),
            key.to_string(),
        ))
    }

    /// A missing secret's own message ("no X found (set the environment variable ..., or ...)") as the
    /// cause and the fix, so the line leads with the variable to set rather than a generic hint.
    fn missing_parts(&self) -> Option<(String, String)> {
        if self.error != "missing_secret" {
            return None;
        }
        let (cause, rest) = self.description.split_once(" (")?;
        let fix = rest.strip_suffix(')')?;
        Some((cause.to_string(), fix.to_string()))
    }

    /// The cause in plain words and what to do about it.
    pub fn explain(&self) -> (String, String) {
        let login = self.at.login_target.map_or_else(
            || "`csp-sync auth login partner-center` (or `graph`)".to_string(),
            |t| format!("`csp-sync auth login {t}`"),
        );
        let set = self.at.login_target.map_or_else(
            || "`csp-sync auth set`".to_string(),
            |t| format!("`csp-sync auth set {t}`"),
        );
        let consent = format!("run `csp-sync tenants consent --tenant {}`", self.tenant);
        if let Some(wrong) = self.wrong_endpoint() {
            return wrong;
        }
        let (origin, secret_fix) = self.secret_fix(&set);
        let (cause, fix): (&str, String) = match self.code {
            Some(65001) => ("the app has not been consented in this tenant", consent),
            Some(90099) => (
                "the app is not authorised in this customer tenant for partner delegated admins (GDAP)",
                consent,
            ),
            Some(500_011) => (
                "the API's service principal is not present in this tenant",
                consent,
            ),
            Some(700_016) => (
                "the app was not found in this tenant (wrong client id, or not consented there)",
                format!("check the client_id in the config, then {consent}"),
            ),
            Some(700_082 | 70008) => (
                "the refresh token has expired (unused for 90 days) or was revoked",
                format!("sign in again with {login}"),
            ),
            Some(50173 | 70043) => (
                "the refresh token's grant was revoked or a sign-in frequency policy requires a fresh sign-in",
                format!("sign in again with {login}"),
            ),
            Some(50076) => (
                "multi-factor authentication is required for this sign-in",
                format!("sign in again with MFA using {login}"),
            ),
            Some(50079) => (
                "the account must register for multi-factor authentication",
                format!("complete MFA registration for the account, then {login}"),
            ),
            Some(53003) => (
                "a Conditional Access policy blocked the sign-in",
                "ask the tenant's admin to exclude the partner sign-in or app from the policy"
                    .into(),
            ),
            Some(530_034) => (
                "delegated admin access was blocked because of suspicious activity",
                "review the partner account's risk state in Entra".into(),
            ),
            Some(50020 | 50177) => (
                "the partner account has no access to this tenant: the GDAP relationship expired or \
                 its security group is not assigned",
                "check the tenant's GDAP relationship (`csp-sync tenants health`) and renew it in \
                 Partner Center"
                    .into(),
            ),
            Some(7_000_215) => {
                return (format!("the client secret is wrong{origin}"), secret_fix);
            }
            Some(7_000_222) => {
                return (
                    format!("the client secret has expired{origin}"),
                    format!("create a new secret for the app in Entra, then {secret_fix}"),
                );
            }
            Some(90002 | 900_023) => (
                "the tenant was not found",
                "check the tenant id and [microsoft] cloud; the customer may no longer exist"
                    .into(),
            ),
            Some(90038) => (
                "the tenant belongs to another national cloud",
                "set [microsoft] cloud to the tenant's cloud".into(),
            ),
            Some(5_000_224) => (
                "the tenant is not available (it may have been deleted)",
                "check the customer in Partner Center; skip it in the config if it is gone".into(),
            ),
            Some(50196 | 90055) => (
                "too many token requests",
                "wait a few minutes and run again".into(),
            ),
            Some(70011 | 901_002 | 9_002_313) => (
                "the token request was malformed",
                "this is a csp-sync bug; please report it with this message".into(),
            ),
            _ => match self.error.as_str() {
                "invalid_client" | "unauthorized_client" => {
                    return (
                        format!("the client id or secret was refused{origin}"),
                        format!("check the client_id in the config, then {secret_fix}"),
                    );
                }
                "invalid_scope" if self.service == "Halo" => (
                    "Halo refused the requested scope",
                    "check [halo] scope (e.g. all) against the API application's permissions in Halo"
                        .into(),
                ),
                "invalid_grant" => (
                    "the grant was refused",
                    format!("sign in again with {login}"),
                ),
                "missing_secret" => match self.at.login_target {
                    Some(t) if t.ends_with("-refresh-token") => (
                        "a refresh token is missing",
                        format!(
                            "get one with `csp-sync auth login {}` (or store one with {set})",
                            t.trim_end_matches("-refresh-token")
                        ),
                    ),
                    _ => {
                        if let Some(parts) = self.missing_parts() {
                            return parts;
                        }
                        ("a secret is missing", format!("store it with {set}"))
                    }
                },
                "request_failed" if self.service == "Halo" => {
                    return (
                        format!(
                            "Halo's token endpoint {}could not be reached or failed",
                            self.at
                                .url
                                .as_deref()
                                .map_or_else(String::new, |u| format!("{u} "))
                        ),
                        "check [halo] url (and auth_url) and the network, then try again".into(),
                    );
                }
                "request_failed" => (
                    "the token endpoint could not be reached or failed",
                    "check [microsoft] login_url (or cloud) and the network, then try again".into(),
                ),
                "redirected" => (
                    "the token endpoint answered with a redirect, which is never followed for a token \
                     request (the secret would go along)",
                    if self.service == "Halo" {
                        "set [halo] auth_url to Halo's authorisation server itself".to_string()
                    } else {
                        "set [microsoft] login_url (or cloud) to the identity platform itself"
                            .to_string()
                    },
                ),
                _ => {
                    let section = match self.service {
                        "Halo" => "[halo]",
                        "Partner Center" => "[partner_center]",
                        _ => "[graph]",
                    };
                    return (
                        format!("the sign-in was refused{origin}"),
                        format!("check {section} client_id, then {secret_fix}"),
                    );
                }
            },
        };
        (cause.to_string(), fix)
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (cause, fix) = self.explain();
        if self.is_shared() || self.tenant.is_empty() {
            write!(f, "{} token: ", self.service)?;
        } else {
            write!(f, "{} token for tenant {}: ", self.service, self.tenant)?;
        }
        if let Some(code) = self.code {
            write!(f, "AADSTS{code}: ")?;
        }
        write!(f, "{cause}; {fix}")?;
        if self.at.answer.is_some() || self.missing_parts().is_some() {
            // The body is not an OAuth error, or the secret's own message is the cause and fix already.
        } else if !self.description.is_empty() {
            write!(f, " ({}: {})", self.error, self.description)?;
        } else if self.error != "unknown_error" {
            write!(f, " ({})", self.error)?;
        }
        Ok(())
    }
}

/// Whether a message holds an [`AuthError`] (its `Display` starts "<service> token"), which names its
/// own cause and fix, so a caller adds no advice of its own.
pub fn names_a_token_failure(text: &str) -> bool {
    [
        "Graph token",
        "Partner Center token",
        "Halo token",
        "Microsoft token",
    ]
    .iter()
    .any(|p| text.contains(p))
}

/// What a token endpoint answered instead of an OAuth error, in words, for [`AuthError::answer`].
fn answer_of(v: &Value, body: &str) -> String {
    let trimmed = body.trim();
    if trimmed.is_empty() {
        return "an empty body".into();
    }
    if trimmed.starts_with('<') {
        let lower = trimmed.to_ascii_lowercase();
        let title = lower
            .find("<title>")
            .and_then(|i| {
                let rest = &trimmed[i + 7..];
                rest.find('<').map(|j| rest[..j].trim())
            })
            .filter(|t| !t.is_empty());
        return match title {
            Some(t) => format!("an HTML page titled \"{}\"", excerpt(t)),
            None => "an HTML page".into(),
        };
    }
    if v.is_null() {
        format!("text ({})", excerpt(trimmed))
    } else {
        format!("JSON that is not an OAuth error ({})", excerpt(trimmed))
    }
}

fn aadsts_in_text(s: &str) -> Option<u32> {
    let i = s.find("AADSTS")?;
    let digits: String = s[i + 6..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The longest token lifetime believed: Microsoft's and Halo's tokens live about an hour, so a larger
/// `expires_in` (1e30, u64::MAX) is a broken or hostile reply, clamped instead of overflowing an `Instant`.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// The shortest: a zero or negative `expires_in` is renewed soon, not in a tight loop.
const MIN_LIFETIME: Duration = Duration::from_secs(60);

/// `expires_in` as a number or a string (the v1 endpoint sends strings), clamped to
/// [`MIN_LIFETIME`]..=[`MAX_LIFETIME`]; missing or unreadable gives [`DEFAULT_LIFETIME`]. Never panics.
fn lifetime_of(v: Option<&Value>) -> Duration {
    let secs = match v {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match secs.filter(|s| !s.is_nan()) {
        None => DEFAULT_LIFETIME,
        Some(s) if s >= MAX_LIFETIME.as_secs_f64() => MAX_LIFETIME,
        Some(s) if s <= MIN_LIFETIME.as_secs_f64() => MIN_LIFETIME,
        Some(s) => Duration::from_secs_f64(s),
    }
}

/// When to renew a token with lifetime `life` obtained at `now`: 5 minutes early, or at half its life
/// when it is shorter than 10 minutes.
fn renew_at(now: Instant, life: Duration) -> Instant {
    if life > RENEW_EARLY * 2 {
        now + life.saturating_sub(RENEW_EARLY)
    } else {
        now + life / 2
    }
}

/// A token as returned by an endpoint.
pub(crate) struct Fetched {
    access: SecretString,
    lifetime: Duration,
    refresh: Option<SecretString>,
}

struct Cached {
    token: SecretString,
    renew_at: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

/// Halo's token endpoint settings.
#[derive(Debug, Clone)]
pub struct HaloAuth {
    /// Full token URL, e.g. `https://acme.halopsa.com/auth/token`.
    pub token_url: String,
    /// Hosted Halo's tenant, sent as `?tenant=`.
    pub tenant: Option<String>,
    pub client_id: String,
    pub client_secret: SecretString,
    pub scope: String,
}

/// Gets and caches tokens.
pub struct TokenProvider {
    http: Arc<Http>,
    login_url: String,
    halo: Option<HaloAuth>,
    cache: StdMutex<HashMap<TokenKey, Slot>>,
}

impl fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenProvider")
            .field("login_url", &self.login_url)
            .finish_non_exhaustive()
    }
}

impl TokenProvider {
    /// `login_url`: the identity platform's authority host, e.g. `https://login.microsoftonline.com`.
    pub fn new(http: Arc<Http>, login_url: impl Into<String>, halo: Option<HaloAuth>) -> Self {
        TokenProvider {
            http,
            login_url: login_url.into().trim_end_matches('/').to_string(),
            halo,
            cache: StdMutex::new(HashMap::new()),
        }
    }

    fn slot(&self, key: &TokenKey) -> Slot {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.entry(key.clone()).or_default().clone()
    }

    /// Forgets a cached token (after a 401), so the next call gets a new one.
    pub fn invalidate(&self, key: &TokenKey) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.remove(key);
    }

    /// Forgets the cached token for `key` if it is `refused`; a token already renewed is kept.
    pub async fn invalidate_if(&self, key: &TokenKey, refused: &SecretString) {
        use secrecy::ExposeSecret as _;
        let slot = self.slot(key);
        let mut guard = slot.lock().await;
        if guard
            .as_ref()
            .is_some_and(|c| c.token.expose_secret() == refused.expose_secret())
        {
            *guard = None;
        }
    }

    /// Returns the cached token for `key` or fetches one; concurrent callers share one fetch.
    /// The second value is a rotated refresh token, only when a fetch happened and returned one.
    async fn cached<F, Fut>(
        &self,
        key: &TokenKey,
        fetch: F,
    ) -> Result<(SecretString, Option<SecretString>), AuthError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Fetched, AuthError>>,
    {
        let slot = self.slot(key);
        let mut guard = slot.lock().await;
        if let Some(c) = guard.as_ref()
            && Instant::now() < c.renew_at
        {
            return Ok((c.token.clone(), None));
        }
        let fetched = fetch().await?;
        tracing::debug!(
            tenant = %key.tenant, resource = %key.resource, grant = ?key.grant,
            lifetime_s = fetched.lifetime.as_secs(), "token obtained"
        );
        *guard = Some(Cached {
            token: fetched.access.clone(),
            renew_at: renew_at(Instant::now(), fetched.lifetime),
        });
        Ok((fetched.access, fetched.refresh))
    }

    /// The cache key of a Microsoft token.
    pub fn microsoft_key(tenant: &str, client_id: &str, resource: &str, grant: Grant) -> TokenKey {
        TokenKey {
            tenant: tenant.to_ascii_lowercase(),
            client_id: client_id.to_ascii_lowercase(),
            resource: resource.trim_end_matches('/').to_string(),
            grant,
        }
    }

    /// The cache key of the Halo token, if Halo is configured.
    pub fn halo_key(&self) -> Option<TokenKey> {
        self.halo.as_ref().map(|h| TokenKey {
            tenant: h.token_url.clone(),
            client_id: h.client_id.clone(),
            resource: h.scope.clone(),
            grant: Grant::Halo,
        })
    }

    /// App-only token (client credentials) for `resource` (e.g. `https://graph.microsoft.com`) in `tenant`.
    pub async fn microsoft_app_token(
        &self,
        tenant: &str,
        client_id: &str,
        secret: &SecretString,
        resource: &str,
    ) -> Result<SecretString, AuthError> {
        let key = Self::microsoft_key(tenant, client_id, resource, Grant::ClientCredentials);
        let form = vec![
            ("grant_type", SecretString::from("client_credentials")),
            ("client_id", SecretString::from(client_id.to_string())),
            ("client_secret", secret.clone()),
            ("scope", SecretString::from(scope_of(resource))),
        ];
        let (token, _) = self
            .cached(&key, || self.microsoft_request(tenant, form))
            .await?;
        Ok(token)
    }

    /// Delegated token from a refresh token, for `resource` in `tenant`. Returns the access token and
    /// the rotated refresh token when the endpoint returned one (store it back).
    pub async fn microsoft_refresh_token(
        &self,
        tenant: &str,
        client_id: &str,
        refresh_token: &SecretString,
        client_secret: Option<&SecretString>,
        resource: &str,
    ) -> Result<(SecretString, Option<SecretString>), AuthError> {
        let key = Self::microsoft_key(tenant, client_id, resource, Grant::RefreshToken);
        let mut form = vec![
            ("grant_type", SecretString::from("refresh_token")),
            ("client_id", SecretString::from(client_id.to_string())),
            ("refresh_token", refresh_token.clone()),
            ("scope", SecretString::from(scope_of(resource))),
        ];
        if let Some(secret) = client_secret {
            form.push(("client_secret", secret.clone()));
        }
        self.cached(&key, || self.microsoft_request(tenant, form))
            .await
    }

    async fn microsoft_request(
        &self,
        tenant: &str,
        form: Vec<(&'static str, SecretString)>,
    ) -> Result<Fetched, AuthError> {
        let url = format!("{}/{tenant}/oauth2/v2.0/token", self.login_url);
        let req = Request::post(Api::Login, url)
            .kind(RequestKind::Read)
            .form(form);
        let shown = crate::http::redact_url(&req.url);
        let at = |mut e: AuthError| {
            e.at.url = Some(shown.clone());
            e
        };
        let resp = self
            .http
            .send_raw(&req)
            .await
            .map_err(|e| at(AuthError::from_api("Microsoft", tenant, &e)))?;
        if resp.status.is_redirection() {
            return Err(at(redirected("Microsoft", tenant, &resp)));
        }
        if !resp.status.is_success() {
            return Err(at(AuthError::from_body(
                "Microsoft",
                tenant,
                resp.status.as_u16(),
                &resp.body,
            )));
        }
        parse_token_body("Microsoft", tenant, &resp.body).map_err(at)
    }

    /// Halo token (client credentials at `{token_url}?tenant=`).
    pub async fn halo_token(&self) -> Result<SecretString, AuthError> {
        // [halo] is a required section, so no Halo settings here means its client secret was not found.
        let Some(halo) = &self.halo else {
            let name = crate::secrets::SecretName::HaloClientSecret;
            let mut e = AuthError::new(
                "Halo",
                "(no client secret)",
                "missing_secret",
                crate::secrets::SecretError::Missing {
                    description: name.description(),
                    env: name.env_var(),
                    entry: name.keyring_entry(),
                }
                .to_string(),
            );
            e.at.login_target = Some("halo");
            return Err(e);
        };
        let key = self
            .halo_key()
            .unwrap_or_else(|| unreachable!("halo is set"));
        let label = halo
            .tenant
            .clone()
            .unwrap_or_else(|| halo.token_url.clone());
        let fetch = || async {
            let url = match &halo.tenant {
                Some(t) if !t.is_empty() => {
                    let sep = if halo.token_url.contains('?') {
                        '&'
                    } else {
                        '?'
                    };
                    format!("{}{sep}tenant={}", halo.token_url, encode_component(t))
                }
                _ => halo.token_url.clone(),
            };
            let form = vec![
                ("grant_type", SecretString::from("client_credentials")),
                ("client_id", SecretString::from(halo.client_id.clone())),
                ("client_secret", halo.client_secret.clone()),
                ("scope", SecretString::from(halo.scope.clone())),
            ];
            let shown = crate::http::redact_url(&url);
            let at = |mut e: AuthError| {
                e.at.url = Some(shown.clone());
                e
            };
            let req = Request::post(Api::Halo, url)
                .kind(RequestKind::Read)
                .form(form);
            let resp = self
                .http
                .send_raw(&req)
                .await
                .map_err(|e| at(AuthError::from_api("Halo", &label, &e)))?;
            if resp.status.is_redirection() {
                return Err(at(redirected("Halo", &label, &resp)));
            }
            if !resp.status.is_success() {
                let mut err =
                    AuthError::from_body("Halo", &label, resp.status.as_u16(), &resp.body);
                err.at.login_target = Some("halo");
                return Err(at(err));
            }
            parse_token_body("Halo", &label, &resp.body).map_err(at)
        };
        let (token, _) = self.cached(&key, fetch).await?;
        Ok(token)
    }
}

/// A token endpoint that answered with a redirect (not followed: the form holds the secret).
fn redirected(service: &'static str, tenant: &str, resp: &crate::http::Response) -> AuthError {
    let e = ApiError::from_response(resp);
    let mut err = AuthError::new(service, tenant, "redirected", e.message);
    err.status = Some(resp.status.as_u16());
    err
}

fn scope_of(resource: &str) -> String {
    format!("{}/.default", resource.trim_end_matches('/'))
}

/// Percent-encodes a query component (the Halo tenant name).
fn encode_component(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

pub(crate) fn parse_token_body(
    service: &'static str,
    tenant: &str,
    body: &str,
) -> Result<Fetched, AuthError> {
    let v: Value = serde_json::from_str(body).map_err(|e| {
        let mut err = AuthError::new(
            service,
            tenant,
            "bad_response",
            format!("the token response is not JSON ({e}); check the token URL"),
        );
        err.at.answer = Some(answer_of(&Value::Null, body));
        err
    })?;
    let access = v
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            let mut err = AuthError::new(
                service,
                tenant,
                "bad_response",
                "the token response has no access_token; check the token URL".into(),
            );
            err.at.answer = Some(format!("JSON without an access_token ({})", excerpt(body)));
            err
        })?;
    // Every token obtained is known to the redaction layer, so an API that echoes it is masked.
    crate::redact::register(access);
    let refresh = v
        .get("refresh_token")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    if let Some(rt) = refresh {
        crate::redact::register(rt);
    }
    Ok(Fetched {
        access: SecretString::from(access.to_string()),
        lifetime: lifetime_of(v.get("expires_in")),
        refresh: refresh.map(|s| SecretString::from(s.to_string())),
    })
}

/// How Graph is called in customer tenants (`[graph] auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphAuthMode {
    /// Client credentials at each customer tenant (the app is consented there).
    App,
    /// The partner's refresh token redeemed at each customer tenant (GDAP).
    Delegated,
}

/// Which stored refresh token a rotated one belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefreshTokenName {
    /// `PARTNER_CENTER_REFRESH_TOKEN` (`auth set partner-center-refresh-token`).
    PartnerCenter,
    /// `GRAPH_REFRESH_TOKEN` (`auth set graph-refresh-token`).
    Graph,
}

/// What a token is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TokenSource {
    /// Partner Center, app-only when a client secret is set (falls back to app+user otherwise).
    PartnerCenterApp,
    /// Partner Center app+user (refresh token): `subscribedskus`, application consents.
    PartnerCenterUser,
    /// Graph in a customer tenant, by `[graph] auth`.
    GraphCustomer(String),
    /// Graph in the partner's own tenant (GDAP relationships, billing exports).
    GraphPartner,
    /// Graph in a customer tenant as the partner user (the Graph app's refresh token redeemed there,
    /// GDAP), whatever `[graph] auth` says: `tenants consent` provisions the app's application permissions
    /// with it (reference 1.6, pattern B).
    GraphCustomerDelegated(String),
    /// Graph in the partner's own tenant as the Partner Center app (client secret, else its refresh
    /// token): the billing exports need `PartnerBilling.Read.All`, which belongs to the Partner Center app
    /// (reference microsoft-apis.md 2.6).
    GraphPartnerBilling,
    Halo,
}

/// Plain values from the config and the secret store.
pub struct CredentialSettings {
    pub partner_tenant_id: String,
    pub partner_center_client_id: String,
    pub partner_center_client_secret: Option<SecretString>,
    pub partner_center_refresh_token: Option<SecretString>,
    pub graph_client_id: String,
    pub graph_client_secret: Option<SecretString>,
    pub graph_refresh_token: Option<SecretString>,
    pub graph_mode: GraphAuthMode,
    /// e.g. `https://api.partnercenter.microsoft.com`.
    pub partner_center_resource: String,
    /// e.g. `https://graph.microsoft.com`.
    pub graph_resource: String,
}

/// Called with a rotated refresh token, to store it back where it came from.
pub type RotationCallback = Box<dyn Fn(RefreshTokenName, &SecretString) + Send + Sync>;

/// The secrets of a run and the grant each API call needs.
pub struct Credentials {
    provider: TokenProvider,
    settings: CredentialSettings,
    /// Current refresh tokens (rotated ones replace the stored ones).
    refresh: StdMutex<HashMap<RefreshTokenName, SecretString>>,
    on_rotate: Option<RotationCallback>,
    /// Where each secret came from, for the fix of a refused one.
    sources: HashMap<SecretName, SecretSource>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("partner_tenant_id", &self.settings.partner_tenant_id)
            .field("graph_mode", &self.settings.graph_mode)
            .finish_non_exhaustive()
    }
}

/// How one token is obtained.
struct Plan<'a> {
    tenant: String,
    client_id: &'a str,
    resource: &'a str,
    how: How<'a>,
    service: &'static str,
}

enum How<'a> {
    App(&'a SecretString),
    Refresh(RefreshTokenName, Option<&'a SecretString>),
    Halo,
}

impl Credentials {
    pub fn new(provider: TokenProvider, settings: CredentialSettings) -> Self {
        let mut refresh = HashMap::new();
        if let Some(rt) = &settings.partner_center_refresh_token {
            refresh.insert(RefreshTokenName::PartnerCenter, rt.clone());
        }
        if let Some(rt) = &settings.graph_refresh_token {
            refresh.insert(RefreshTokenName::Graph, rt.clone());
        }
        Credentials {
            provider,
            settings,
            refresh: StdMutex::new(refresh),
            on_rotate: None,
            sources: HashMap::new(),
        }
    }

    /// Records where each secret came from, so a refused one is named with its place and its fix.
    #[must_use]
    pub fn with_secret_sources(mut self, sources: HashMap<SecretName, SecretSource>) -> Self {
        self.sources = sources;
        self
    }

    /// The secrets a token request for `source` sent: its client secret (when one went along) and its
    /// refresh token, each with where it came from.
    fn sent(&self, source: &TokenSource, how: &How<'_>) -> [Option<(SecretName, SecretSource)>; 2] {
        let client = match source {
            TokenSource::PartnerCenterApp
            | TokenSource::PartnerCenterUser
            | TokenSource::GraphPartnerBilling => SecretName::PartnerCenterClientSecret,
            TokenSource::GraphCustomer(_)
            | TokenSource::GraphPartner
            | TokenSource::GraphCustomerDelegated(_) => SecretName::GraphClientSecret,
            TokenSource::Halo => SecretName::HaloClientSecret,
        };
        let with_source = |name: SecretName| self.sources.get(&name).map(|s| (name, s.clone()));
        let (secret, refresh) = match how {
            How::App(_) | How::Halo | How::Refresh(_, Some(_)) => (with_source(client), None),
            How::Refresh(_, None) => (None, None),
        };
        let refresh = match how {
            How::Refresh(RefreshTokenName::PartnerCenter, _) => {
                with_source(SecretName::PartnerCenterRefreshToken)
            }
            How::Refresh(RefreshTokenName::Graph, _) => with_source(SecretName::GraphRefreshToken),
            _ => refresh,
        };
        [secret, refresh]
    }

    /// Sets the callback that stores rotated refresh tokens.
    #[must_use]
    pub fn with_rotation_callback(mut self, callback: RotationCallback) -> Self {
        self.on_rotate = Some(callback);
        self
    }

    pub fn provider(&self) -> &TokenProvider {
        &self.provider
    }

    pub fn graph_mode(&self) -> GraphAuthMode {
        self.settings.graph_mode
    }

    /// Whether a refresh token for the Graph app is held ([`TokenSource::GraphCustomerDelegated`] can be
    /// asked for): its own, or Partner Center's when both sections name the same app.
    pub fn has_delegated_graph(&self) -> bool {
        self.graph_refresh_name().is_some()
    }

    /// The refresh token Graph uses: its own, else Partner Center's when both name the same app.
    fn graph_refresh_name(&self) -> Option<RefreshTokenName> {
        let refresh = self.refresh.lock().unwrap_or_else(PoisonError::into_inner);
        if refresh.contains_key(&RefreshTokenName::Graph) {
            Some(RefreshTokenName::Graph)
        } else if refresh.contains_key(&RefreshTokenName::PartnerCenter)
            && self
                .settings
                .graph_client_id
                .eq_ignore_ascii_case(&self.settings.partner_center_client_id)
        {
            Some(RefreshTokenName::PartnerCenter)
        } else {
            None
        }
    }

    fn has_refresh(&self, name: RefreshTokenName) -> bool {
        self.refresh
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(&name)
    }

    fn missing(service: &'static str, tenant: &str, target: &'static str, what: &str) -> AuthError {
        let mut e = AuthError::new(service, tenant, "missing_secret", what.to_string());
        e.at.login_target = Some(target);
        e
    }

    fn plan(&self, source: &TokenSource) -> Result<Plan<'_>, AuthError> {
        let s = &self.settings;
        let partner = s.partner_tenant_id.clone();
        match source {
            TokenSource::PartnerCenterApp | TokenSource::PartnerCenterUser => {
                let app_ok = matches!(source, TokenSource::PartnerCenterApp);
                let how = match (&s.partner_center_client_secret, app_ok) {
                    (Some(secret), true) => How::App(secret),
                    _ if self.has_refresh(RefreshTokenName::PartnerCenter) => How::Refresh(
                        RefreshTokenName::PartnerCenter,
                        s.partner_center_client_secret.as_ref(),
                    ),
                    _ if app_ok => {
                        return Err(Self::missing(
                            "Partner Center",
                            &partner,
                            "partner-center",
                            "no Partner Center client secret or refresh token (CSP_SYNC_PARTNER_CENTER_CLIENT_SECRET)",
                        ));
                    }
                    _ => {
                        return Err(Self::missing(
                            "Partner Center",
                            &partner,
                            "partner-center-refresh-token",
                            "this call needs an app+user token: no Partner Center refresh token \
                             (CSP_SYNC_PARTNER_CENTER_REFRESH_TOKEN; get one with `csp-sync auth login partner-center`)",
                        ));
                    }
                };
                Ok(Plan {
                    tenant: partner,
                    client_id: &s.partner_center_client_id,
                    resource: &s.partner_center_resource,
                    how,
                    service: "Partner Center",
                })
            }
            TokenSource::GraphCustomer(_) | TokenSource::GraphPartner => {
                let tenant = match source {
                    TokenSource::GraphCustomer(t) => t.to_ascii_lowercase(),
                    _ => partner,
                };
                let how = match s.graph_mode {
                    GraphAuthMode::App => match &s.graph_client_secret {
                        Some(secret) => How::App(secret),
                        None => {
                            return Err(Self::missing(
                                "Graph",
                                &tenant,
                                "graph",
                                "no Graph client secret (CSP_SYNC_GRAPH_CLIENT_SECRET)",
                            ));
                        }
                    },
                    GraphAuthMode::Delegated => match self.graph_refresh_name() {
                        Some(name) => How::Refresh(name, s.graph_client_secret.as_ref()),
                        None => {
                            return Err(Self::missing(
                                "Graph",
                                &tenant,
                                "graph-refresh-token",
                                "[graph] auth = \"delegated\" needs a refresh token \
                                 (CSP_SYNC_GRAPH_REFRESH_TOKEN; get one with `csp-sync auth login graph`)",
                            ));
                        }
                    },
                };
                Ok(Plan {
                    tenant,
                    client_id: &s.graph_client_id,
                    resource: &s.graph_resource,
                    how,
                    service: "Graph",
                })
            }
            TokenSource::GraphPartnerBilling => {
                let how = if let Some(secret) = &s.partner_center_client_secret {
                    How::App(secret)
                } else if self.has_refresh(RefreshTokenName::PartnerCenter) {
                    How::Refresh(
                        RefreshTokenName::PartnerCenter,
                        s.partner_center_client_secret.as_ref(),
                    )
                } else {
                    return Err(Self::missing(
                        "Graph",
                        &partner,
                        "partner-center",
                        "the billing export needs a Graph token of the Partner Center app \
                         (PartnerBilling.Read.All): set CSP_SYNC_PARTNER_CENTER_CLIENT_SECRET or a Partner Center refresh token",
                    ));
                };
                Ok(Plan {
                    tenant: partner,
                    client_id: &s.partner_center_client_id,
                    resource: &s.graph_resource,
                    how,
                    service: "Graph",
                })
            }
            TokenSource::GraphCustomerDelegated(t) => {
                let tenant = t.to_ascii_lowercase();
                let Some(name) = self.graph_refresh_name() else {
                    return Err(Self::missing(
                        "Graph",
                        &tenant,
                        "graph-refresh-token",
                        "this step needs a partner user's refresh token for the Graph app \
                         (CSP_SYNC_GRAPH_REFRESH_TOKEN or CSP_SYNC_GRAPH_REFRESH_TOKEN_FILE, or the keyring via \
                         `csp-sync auth set graph-refresh-token`; get one with `csp-sync auth login graph`)",
                    ));
                };
                Ok(Plan {
                    tenant,
                    client_id: &s.graph_client_id,
                    resource: &s.graph_resource,
                    how: How::Refresh(name, s.graph_client_secret.as_ref()),
                    service: "Graph",
                })
            }
            TokenSource::Halo => Ok(Plan {
                tenant: String::new(),
                client_id: "",
                resource: "",
                how: How::Halo,
                service: "Halo",
            }),
        }
    }

    /// A token for `source`, from the cache when still valid.
    pub async fn token(&self, source: &TokenSource) -> Result<SecretString, AuthError> {
        let plan = self.plan(source)?;
        let [secret, refresh] = self.sent(source, &plan.how);
        let named = |mut e: AuthError| {
            e.at.secret.clone_from(&secret);
            e.at.refresh.clone_from(&refresh);
            e
        };
        let result = match plan.how {
            How::Halo => return self.provider.halo_token().await.map_err(named),
            How::App(secret) => {
                self.provider
                    .microsoft_app_token(&plan.tenant, plan.client_id, secret, plan.resource)
                    .await
            }
            How::Refresh(name, secret) => {
                let current = self
                    .refresh
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&name)
                    .cloned();
                let Some(rt) = current else {
                    return Err(Self::missing(
                        plan.service,
                        &plan.tenant,
                        "partner-center",
                        "refresh token",
                    ));
                };
                match self
                    .provider
                    .microsoft_refresh_token(
                        &plan.tenant,
                        plan.client_id,
                        &rt,
                        secret,
                        plan.resource,
                    )
                    .await
                {
                    Ok((token, rotated)) => {
                        if let Some(new_rt) = rotated {
                            self.store_rotated(name, &new_rt);
                        }
                        Ok(token)
                    }
                    Err(mut e) => {
                        e.at.login_target = Some(match name {
                            RefreshTokenName::PartnerCenter => "partner-center",
                            RefreshTokenName::Graph => "graph",
                        });
                        Err(e)
                    }
                }
            }
        };
        result.map_err(named).map_err(|mut e| {
            e.service = plan.service;
            if e.at.login_target.is_none() {
                e.at.login_target = Some(match plan.service {
                    "Partner Center" => "partner-center",
                    _ => "graph",
                });
            }
            e
        })
    }

    fn store_rotated(&self, name: RefreshTokenName, token: &SecretString) {
        self.refresh
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name, token.clone());
        if let Some(cb) = &self.on_rotate {
            cb(name, token);
        }
    }

    /// The latest refresh token held for `name` (rotated or as given).
    pub fn current_refresh_token(&self, name: RefreshTokenName) -> Option<SecretString> {
        self.refresh
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&name)
            .cloned()
    }

    /// Forgets the cached token for `source` (after a 401) so the next [`Credentials::token`] renews it.
    pub fn invalidate(&self, source: &TokenSource) {
        if let Some(key) = self.key_of(source) {
            self.provider.invalidate(&key);
        }
    }

    /// Forgets the cached token for `source` only if it is still `refused` (the token a 401 answered):
    /// requests refused with one token at the same time renew it once, not once each.
    pub async fn invalidate_if(&self, source: &TokenSource, refused: &SecretString) {
        if let Some(key) = self.key_of(source) {
            self.provider.invalidate_if(&key, refused).await;
        }
    }

    fn key_of(&self, source: &TokenSource) -> Option<TokenKey> {
        let plan = self.plan(source).ok()?;
        Some(match plan.how {
            How::Halo => self.provider.halo_key()?,
            How::App(_) => TokenProvider::microsoft_key(
                &plan.tenant,
                plan.client_id,
                plan.resource,
                Grant::ClientCredentials,
            ),
            How::Refresh(..) => TokenProvider::microsoft_key(
                &plan.tenant,
                plan.client_id,
                plan.resource,
                Grant::RefreshToken,
            ),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use wiremock::matchers::{body_string_contains, method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use crate::api::partner_center::tests::fast_http as test_http;

    const AADSTS_65001: &str = r#"{"error":"invalid_grant","error_description":"AADSTS65001: The user or administrator has not consented to use the application with ID '3333' named 'csp-sync'.\r\nTrace ID: 1\r\nCorrelation ID: 2\r\nTimestamp: 2024-01-01 00:00:00Z","error_codes":[65001],"timestamp":"2024-01-01 00:00:00Z","trace_id":"1","correlation_id":"2","error_uri":"https://login.microsoftonline.com/error?code=65001"}"#;

    #[test]
    fn aadsts_body_maps_to_consent_hint() {
        let e = AuthError::from_body("Graph", "aaaa-1", 400, AADSTS_65001);
        assert_eq!(e.code, Some(65001));
        assert_eq!(e.error, "invalid_grant");
        assert!(!e.description.contains("Trace ID"));
        let text = e.to_string();
        assert!(text.contains("aaaa-1"), "{text}");
        assert!(text.contains("AADSTS65001"), "{text}");
        assert!(text.contains("csp-sync tenants consent"), "{text}");
    }

    #[test]
    fn documented_aadsts_example_and_other_codes() {
        let body = r#"{"error":"invalid_scope","error_description":"AADSTS70011: The provided value for the input parameter 'scope' is not valid.\r\nTrace ID: 255d1aef","error_codes":[70011],"timestamp":"2016-01-09 02:02:12Z"}"#;
        let e = AuthError::from_body("Graph", "t", 400, body);
        assert_eq!(e.code, Some(70011));
        assert!(e.to_string().contains("bug"));
        let cases = [
            (700_082, "auth login"),
            (90099, "tenants consent"),
            (50076, "MFA"),
            (53003, "Conditional Access"),
            (7_000_215, "auth set"),
            (7_000_222, "expired"),
            (90002, "not found"),
            (50020, "GDAP"),
        ];
        for (code, needle) in cases {
            let body = format!(
                r#"{{"error":"invalid_grant","error_description":"AADSTS{code}: x","error_codes":[{code}]}}"#
            );
            let mut e = AuthError::from_body("Graph", "t", 400, &body);
            e.at.login_target = Some("graph");
            assert!(e.to_string().contains(needle), "{code}: {e}");
        }
        // No error_codes: fall back to the number in the description.
        let e = AuthError::from_body(
            "Graph",
            "t",
            400,
            r#"{"error":"x","error_description":"AADSTS700082: expired"}"#,
        );
        assert_eq!(e.code, Some(700_082));
        // Not JSON at all.
        let e = AuthError::from_body("Halo", "acme", 401, "Unauthorized");
        assert!(e.to_string().contains("Unauthorized"));
    }

    #[test]
    fn expires_in_number_or_string() {
        assert_eq!(
            lifetime_of(Some(&serde_json::json!(3599))),
            Duration::from_secs(3599)
        );
        assert_eq!(
            lifetime_of(Some(&serde_json::json!("3600"))),
            Duration::from_secs(3600)
        );
        assert_eq!(lifetime_of(Some(&serde_json::json!("x"))), DEFAULT_LIFETIME);
        // Hostile or broken replies are clamped, never a panic.
        for huge in [
            serde_json::json!(1e30),
            serde_json::json!(u64::MAX),
            serde_json::json!("1e30"),
            serde_json::json!("18446744073709551615"),
            serde_json::json!(f64::MAX),
        ] {
            assert_eq!(lifetime_of(Some(&huge)), MAX_LIFETIME, "{huge}");
            let _ = renew_at(Instant::now(), lifetime_of(Some(&huge)));
        }
        for small in [
            serde_json::json!(-5),
            serde_json::json!(i64::MIN),
            serde_json::json!("-1e30"),
            serde_json::json!(0),
        ] {
            assert_eq!(lifetime_of(Some(&small)), MIN_LIFETIME, "{small}");
        }
        assert_eq!(lifetime_of(Some(&serde_json::json!("inf"))), MAX_LIFETIME);
        assert_eq!(
            lifetime_of(Some(&serde_json::json!("NaN"))),
            DEFAULT_LIFETIME
        );
        assert_eq!(
            lifetime_of(Some(&serde_json::json!(true))),
            DEFAULT_LIFETIME
        );
        assert_eq!(lifetime_of(None), DEFAULT_LIFETIME);
        let now = Instant::now();
        assert_eq!(
            renew_at(now, Duration::from_secs(3600)),
            now + Duration::from_secs(3300)
        );
        assert_eq!(
            renew_at(now, Duration::from_secs(60)),
            now + Duration::from_secs(30)
        );
    }

    #[tokio::test]
    async fn client_credentials_cached_and_shared() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/tenant-a/oauth2/v2.0/token"))
            .and(body_string_contains("grant_type=client_credentials"))
            .and(body_string_contains(
                "scope=https%3A%2F%2Fgraph.microsoft.com%2F.default",
            ))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_string(
                        r#"{"token_type":"Bearer","expires_in":"3599","access_token":"tok-1"}"#,
                    )
                    .set_delay(Duration::from_millis(50)),
            )
            .expect(1)
            .mount(&server)
            .await;
        let provider = Arc::new(TokenProvider::new(test_http(), server.uri(), None));
        let secret = SecretString::from("s3cret");
        let mut tasks = Vec::new();
        for _ in 0..5 {
            let p = provider.clone();
            let s = secret.clone();
            tasks.push(tokio::spawn(async move {
                p.microsoft_app_token("tenant-a", "cid", &s, "https://graph.microsoft.com/")
                    .await
                    .unwrap()
                    .expose_secret()
                    .to_string()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), "tok-1");
        }
    }

    #[tokio::test]
    async fn a_missing_halo_secret_names_where_it_goes() {
        let provider = TokenProvider::new(test_http(), "http://127.0.0.1:9", None);
        let e = provider.halo_token().await.unwrap_err().to_string();
        assert!(e.contains("CSP_SYNC_HALO_CLIENT_SECRET"), "{e}");
        assert!(e.contains("CSP_SYNC_HALO_CLIENT_SECRET_FILE"), "{e}");
        assert!(e.contains("auth set halo"), "{e}");
        assert!(!e.contains("[halo] section"), "{e}");
    }

    #[tokio::test]
    async fn absurd_token_lifetimes_from_halo_and_microsoft_are_clamped() {
        for expires_in in ["1e30", "18446744073709551615", "-5", "\"1e30\"", "\"soon\""] {
            let server = MockServer::start().await;
            let body = format!(
                r#"{{"access_token":"tok-1","token_type":"Bearer","expires_in":{expires_in}}}"#
            );
            Mock::given(method("POST"))
                .respond_with(ResponseTemplate::new(200).set_body_string(body))
                .mount(&server)
                .await;
            let provider = TokenProvider::new(
                test_http(),
                server.uri(),
                Some(HaloAuth {
                    token_url: format!("{}/auth/token", server.uri()),
                    tenant: None,
                    client_id: "hc".into(),
                    client_secret: SecretString::from("hs"),
                    scope: "all".into(),
                }),
            );
            // Neither panics (Duration from 1e30 seconds, Instant + u64::MAX seconds).
            assert_eq!(
                provider.halo_token().await.unwrap().expose_secret(),
                "tok-1"
            );
            let t = provider
                .microsoft_app_token(
                    "t",
                    "cid",
                    &SecretString::from("s"),
                    "https://graph.microsoft.com",
                )
                .await
                .unwrap();
            assert_eq!(t.expose_secret(), "tok-1", "{expires_in}");
        }
    }

    #[tokio::test]
    async fn refresh_token_rotated_and_reported() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/cust-1/oauth2/v2.0/token"))
            .and(body_string_contains("refresh_token=rt-old"))
            .respond_with(ResponseTemplate::new(200).set_body_string(
                r#"{"access_token":"at-1","token_type":"Bearer","expires_in":3599,"refresh_token":"rt-new"}"#,
            ))
            .expect(1)
            .mount(&server)
            .await;
        let provider = TokenProvider::new(test_http(), server.uri(), None);
        let seen = Arc::new(StdMutex::new(Vec::new()));
        let seen2 = seen.clone();
        let creds = Credentials::new(
            provider,
            CredentialSettings {
                partner_tenant_id: "partner".into(),
                partner_center_client_id: "app".into(),
                partner_center_client_secret: None,
                partner_center_refresh_token: Some(SecretString::from("rt-old")),
                graph_client_id: "APP".into(),
                graph_client_secret: None,
                graph_refresh_token: None,
                graph_mode: GraphAuthMode::Delegated,
                partner_center_resource: "https://api.partnercenter.microsoft.com".into(),
                graph_resource: "https://graph.microsoft.com".into(),
            },
        )
        .with_rotation_callback(Box::new(move |name, rt| {
            seen2
                .lock()
                .unwrap()
                .push((name, rt.expose_secret().to_string()));
        }));
        let t = creds
            .token(&TokenSource::GraphCustomer("CUST-1".into()))
            .await
            .unwrap();
        assert_eq!(t.expose_secret(), "at-1");
        // Cached: no second request (expect(1)).
        creds
            .token(&TokenSource::GraphCustomer("cust-1".into()))
            .await
            .unwrap();
        assert_eq!(
            *seen.lock().unwrap(),
            vec![(RefreshTokenName::PartnerCenter, "rt-new".to_string())]
        );
        assert_eq!(
            creds
                .current_refresh_token(RefreshTokenName::PartnerCenter)
                .unwrap()
                .expose_secret(),
            "rt-new"
        );
    }

    #[tokio::test]
    async fn consent_error_names_tenant_and_fix() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(400).set_body_string(AADSTS_65001))
            .expect(1)
            .mount(&server)
            .await;
        let provider = TokenProvider::new(test_http(), server.uri(), None);
        let err = provider
            .microsoft_app_token(
                "cust-9",
                "cid",
                &SecretString::from("x"),
                "https://graph.microsoft.com",
            )
            .await
            .unwrap_err();
        assert_eq!(err.code, Some(65001));
        let text = err.to_string();
        assert!(
            text.contains("cust-9") && text.contains("tenants consent"),
            "{text}"
        );
        assert!(!text.contains("x\""), "{text}");
    }

    #[tokio::test]
    async fn halo_token_with_tenant_and_invalidate() {
        let server = MockServer::start().await;
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        Mock::given(method("POST"))
            .and(path("/auth/token"))
            .and(query_param("tenant", "acme"))
            .and(body_string_contains("scope=all"))
            .respond_with(move |_: &wiremock::Request| {
                let n = c.fetch_add(1, Ordering::SeqCst) + 1;
                ResponseTemplate::new(200).set_body_string(format!(
                    r#"{{"access_token":"h{n}","token_type":"Bearer","expires_in":3600}}"#
                ))
            })
            .mount(&server)
            .await;
        let provider = TokenProvider::new(
            test_http(),
            "http://unused",
            Some(HaloAuth {
                token_url: format!("{}/auth/token", server.uri()),
                tenant: Some("acme".into()),
                client_id: "hc".into(),
                client_secret: SecretString::from("hs"),
                scope: "all".into(),
            }),
        );
        assert_eq!(provider.halo_token().await.unwrap().expose_secret(), "h1");
        assert_eq!(provider.halo_token().await.unwrap().expose_secret(), "h1");
        provider.invalidate(&provider.halo_key().unwrap());
        assert_eq!(provider.halo_token().await.unwrap().expose_secret(), "h2");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn missing_refresh_token_is_explained() {
        let provider = TokenProvider::new(test_http(), "http://127.0.0.1:9", None);
        let creds = Credentials::new(
            provider,
            CredentialSettings {
                partner_tenant_id: "partner".into(),
                partner_center_client_id: "pc".into(),
                partner_center_client_secret: Some(SecretString::from("s")),
                partner_center_refresh_token: None,
                graph_client_id: "g".into(),
                graph_client_secret: None,
                graph_refresh_token: None,
                graph_mode: GraphAuthMode::Delegated,
                partner_center_resource: "https://api.partnercenter.microsoft.com".into(),
                graph_resource: "https://graph.microsoft.com".into(),
            },
        );
        let e = creds
            .token(&TokenSource::PartnerCenterUser)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("auth login partner-center"), "{e}");
        let e = creds
            .token(&TokenSource::GraphCustomer("c".into()))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("graph-refresh-token"), "{e}");
    }

    #[tokio::test]
    async fn delegated_graph_at_a_customer_even_when_graph_auth_is_app() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/cust-9/oauth2/v2.0/token"))
            .and(body_string_contains("grant_type=refresh_token"))
            .and(body_string_contains("client_id=g"))
            .and(body_string_contains("refresh_token=rt-graph"))
            .respond_with(ResponseTemplate::new(200).set_body_string(
                r#"{"access_token":"user-at","token_type":"Bearer","expires_in":3599}"#,
            ))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/cust-9/oauth2/v2.0/token"))
            .and(body_string_contains("grant_type=client_credentials"))
            .respond_with(ResponseTemplate::new(200).set_body_string(
                r#"{"access_token":"app-at","token_type":"Bearer","expires_in":3599}"#,
            ))
            .expect(1)
            .mount(&server)
            .await;
        let settings = |graph_refresh: Option<&str>| CredentialSettings {
            partner_tenant_id: "partner".into(),
            partner_center_client_id: "pc".into(),
            partner_center_client_secret: None,
            partner_center_refresh_token: Some(SecretString::from("rt-pc")),
            graph_client_id: "g".into(),
            graph_client_secret: Some(SecretString::from("gs")),
            graph_refresh_token: graph_refresh.map(SecretString::from),
            graph_mode: GraphAuthMode::App,
            partner_center_resource: "https://api.partnercenter.microsoft.com".into(),
            graph_resource: "https://graph.microsoft.com".into(),
        };
        let creds = Credentials::new(
            TokenProvider::new(test_http(), server.uri(), None),
            settings(Some("rt-graph")),
        );
        assert!(creds.has_delegated_graph());
        let user = creds
            .token(&TokenSource::GraphCustomerDelegated("CUST-9".into()))
            .await
            .unwrap();
        assert_eq!(user.expose_secret(), "user-at");
        // The app-only token of the same tenant is another cache entry.
        let app = creds
            .token(&TokenSource::GraphCustomer("cust-9".into()))
            .await
            .unwrap();
        assert_eq!(app.expose_secret(), "app-at");

        // Partner Center's refresh token belongs to another app: it is not used for Graph.
        let creds = Credentials::new(
            TokenProvider::new(test_http(), server.uri(), None),
            settings(None),
        );
        assert!(!creds.has_delegated_graph());
        let e = creds
            .token(&TokenSource::GraphCustomerDelegated("cust-9".into()))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("auth login graph"), "{e}");
    }

    #[derive(Clone, Default)]
    pub(crate) struct Captured(pub(crate) Arc<StdMutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn no_secret_in_logs_at_trace_level() {
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/t1/oauth2/v2.0/token"))
            .respond_with(ResponseTemplate::new(200).set_body_string(
                r#"{"access_token":"ACCESS-TOKEN-VALUE","expires_in":3599,"refresh_token":"ROTATED-RT-VALUE"}"#,
            ))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1.0/users"))
            .respond_with(ResponseTemplate::new(401).set_body_string(
                r#"{"error":{"code":"InvalidAuthenticationToken","message":"expired"}}"#,
            ))
            .mount(&server)
            .await;
        let http = test_http();
        let provider = TokenProvider::new(http.clone(), server.uri(), None);
        let (token, rotated) = provider
            .microsoft_refresh_token(
                "t1",
                "cid",
                &SecretString::from("OLD-RT-VALUE"),
                Some(&SecretString::from("CLIENT-SECRET-VALUE")),
                "https://graph.microsoft.com",
            )
            .await
            .unwrap();
        assert_eq!(rotated.unwrap().expose_secret(), "ROTATED-RT-VALUE");
        let err = http
            .send(
                &Request::get(
                    Api::Graph,
                    format!("{}/v1.0/users?client_secret=URL-SECRET", server.uri()),
                )
                .bearer(&token),
            )
            .await
            .unwrap_err();
        let shown = format!("{err} {err:?}");
        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("http"), "logging is captured: {text}");
        for secret in [
            "ACCESS-TOKEN-VALUE",
            "ROTATED-RT-VALUE",
            "OLD-RT-VALUE",
            "CLIENT-SECRET-VALUE",
            "URL-SECRET",
        ] {
            assert!(!text.contains(secret), "{secret} leaked into logs: {text}");
            assert!(
                !shown.contains(secret),
                "{secret} leaked into the error: {shown}"
            );
        }
    }
}
