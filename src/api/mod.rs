//! Typed clients of the three APIs: wire types and paging, nothing else.
//!
//! Each client holds the shared [`Http`], the [`Credentials`] and its base URL. Calls go through
//! [`send_authed`], which renews the token once when the API answers 401.

pub mod graph;
pub mod halo;
pub mod halo_report;
pub mod partner_center;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::auth::{AuthError, Credentials, TokenSource};
use crate::http::{ApiError, Http, Request, Response};

/// An API client failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The stored Graph delta link is no longer valid (expired after 7 days, or Graph asked for a
    /// resync): read the tenant in full and store the new delta link.
    #[error(
        "the stored Graph delta link of tenant {tenant} has expired ({reason}); a full read is needed"
    )]
    DeltaExpired { tenant: String, reason: String },
    /// The caller asked for something the client refuses to send.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// The HTTP status of the failed call, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api(e) => e.status,
            Error::Auth(e) => e.status,
            Error::DeltaExpired { .. } => Some(410),
            Error::Invalid(_) => None,
        }
    }
}

/// Renewals of one request's token at most.
const MAX_RENEWALS: u32 = 4;
/// A token renewed for a request and refused again this soon, with no retry wait in between, is refused
/// for another reason than its age: the request fails rather than renewing again.
const REFUSED_AT_ONCE: Duration = Duration::from_secs(1);

/// Sends `req` with a token for `source`. A 401 renews the token and re-sends the request (a request
/// refused with 401 was not processed, so this is safe for creates too), once per token rather than once
/// per request: a request whose retries (429 and 5xx waits) outlive a renewed token renews again, so a run
/// that outlives its tokens does not fail (SPEC 10). A token refused right after it was renewed ends the
/// request with the 401.
pub async fn send_authed(
    http: &Http,
    creds: &Credentials,
    source: &TokenSource,
    req: Request,
) -> Result<Response, Error> {
    let mut req = req;
    let mut renewed = 0u32;
    loop {
        let token: SecretString = creds.token(source).await?;
        req.bearer = Some(token.clone());
        let started = Instant::now();
        match http.send(&req).await {
            Err(e)
                if e.status == Some(401)
                    && renewed < MAX_RENEWALS
                    && (renewed == 0 || started.elapsed() >= REFUSED_AT_ONCE) =>
            {
                tracing::debug!(api = %e.api, url = %e.url, renewed, "401: renewing the token");
                creds.invalidate_if(source, &token).await;
                renewed += 1;
            }
            other => return Ok(other?),
        }
    }
}

/// A new random (version 4) GUID, for `MS-RequestId` / `MS-CorrelationId`.
pub fn new_guid() -> String {
    let mut b = [0u8; 16];
    for x in &mut b {
        *x = fastrand::u8(..);
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut h = String::with_capacity(32);
    for x in b {
        let _ = write!(h, "{x:02x}");
    }
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// GUIDs are compared lower-case everywhere.
pub fn lower(s: &str) -> String {
    s.trim().to_ascii_lowercase()
}

// ---- lenient deserializers for Halo's loosely typed JSON ----

/// A whole number from an integer, a float with no fraction (`95.0`) or a numeric string.
pub fn value_to_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>().ok().or_else(|| {
                s.parse::<f64>()
                    .ok()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                    .map(|f| f as i64)
            })
        }
        _ => None,
    }
}

pub(crate) fn de_id<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let v = Value::deserialize(d)?;
    value_to_i64(&v)
        .ok_or_else(|| serde::de::Error::custom(format!("expected a whole-number id, got {v}")))
}

pub(crate) fn de_opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(value_to_i64(&v))
}

pub(crate) fn de_opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    })
}

pub(crate) fn de_opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Bool(b) => Some(b),
        Value::Number(n) => n.as_f64().map(|f| f != 0.0),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(true),
            "false" | "0" | "no" => Some(false),
            _ => None,
        },
        _ => None,
    })
}

/// `null` or missing becomes the default.
pub(crate) fn de_null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_are_v4_shaped() {
        let g = new_guid();
        assert_eq!(g.len(), 36);
        assert_eq!(&g[14..15], "4");
        assert_ne!(new_guid(), g);
    }

    #[test]
    fn ids_accept_floats_and_strings() {
        assert_eq!(value_to_i64(&serde_json::json!(95)), Some(95));
        assert_eq!(value_to_i64(&serde_json::json!(95.0)), Some(95));
        assert_eq!(value_to_i64(&serde_json::json!("-94")), Some(-94));
        assert_eq!(value_to_i64(&serde_json::json!(95.5)), None);
        assert_eq!(value_to_i64(&Value::Null), None);
    }
}
