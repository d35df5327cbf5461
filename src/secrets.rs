//! Secrets (SPEC section 5): looked up in the environment (`CSP_SYNC_<NAME>`), then in a file named by
//! `CSP_SYNC_<NAME>_FILE`, then in the OS keyring (service `csp-sync`). Never in the config file.
//!
//! The keyring is for people at a desktop: on a headless server cron jobs usually have no Secret Service
//! and no session keyring, so every keyring failure says to use `CSP_SYNC_<NAME>_FILE` there. When the
//! environment or a file provides a secret, the keyring is not touched at all. `CSP_SYNC_NO_KEYRING=1`
//! disables keyring lookups entirely.
//!
//! Values are [`SecretString`]s: their `Debug` is redacted and no error here ever contains one.

use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret as _, SecretString};

/// The keyring service name.
pub const KEYRING_SERVICE: &str = "csp-sync";

/// Set to `1` (or `true`) to disable keyring lookups and writes.
pub const NO_KEYRING_ENV: &str = "CSP_SYNC_NO_KEYRING";

/// A secret csp-sync needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SecretName {
    PartnerCenterClientSecret,
    PartnerCenterRefreshToken,
    GraphClientSecret,
    GraphRefreshToken,
    HaloClientSecret,
}

impl SecretName {
    pub const ALL: [SecretName; 5] = [
        SecretName::PartnerCenterClientSecret,
        SecretName::PartnerCenterRefreshToken,
        SecretName::GraphClientSecret,
        SecretName::GraphRefreshToken,
        SecretName::HaloClientSecret,
    ];

    /// The `<NAME>` of `CSP_SYNC_<NAME>` and `CSP_SYNC_<NAME>_FILE`.
    pub fn env_name(self) -> &'static str {
        match self {
            SecretName::PartnerCenterClientSecret => "PARTNER_CENTER_CLIENT_SECRET",
            SecretName::PartnerCenterRefreshToken => "PARTNER_CENTER_REFRESH_TOKEN",
            SecretName::GraphClientSecret => "GRAPH_CLIENT_SECRET",
            SecretName::GraphRefreshToken => "GRAPH_REFRESH_TOKEN",
            SecretName::HaloClientSecret => "HALO_CLIENT_SECRET",
        }
    }

    /// The keyring entry name, which is also the `csp-sync auth set` target.
    pub fn keyring_entry(self) -> &'static str {
        match self {
            SecretName::PartnerCenterClientSecret => "partner-center",
            SecretName::PartnerCenterRefreshToken => "partner-center-refresh-token",
            SecretName::GraphClientSecret => "graph",
            SecretName::GraphRefreshToken => "graph-refresh-token",
            SecretName::HaloClientSecret => "halo",
        }
    }

    /// The secret for an `auth set` target.
    pub fn from_keyring_entry(target: &str) -> Option<SecretName> {
        SecretName::ALL
            .into_iter()
            .find(|n| n.keyring_entry() == target.trim())
    }

    /// What it is, in words.
    pub fn description(self) -> &'static str {
        match self {
            SecretName::PartnerCenterClientSecret => "Partner Center app client secret",
            SecretName::PartnerCenterRefreshToken => "Partner Center refresh token",
            SecretName::GraphClientSecret => "Graph app client secret",
            SecretName::GraphRefreshToken => "Graph refresh token",
            SecretName::HaloClientSecret => "Halo API client secret",
        }
    }

    /// `CSP_SYNC_<NAME>`.
    pub fn env_var(self) -> String {
        format!("CSP_SYNC_{}", self.env_name())
    }

    /// `CSP_SYNC_<NAME>_FILE`.
    pub fn file_env_var(self) -> String {
        format!("CSP_SYNC_{}_FILE", self.env_name())
    }

    fn is_refresh_token(self) -> bool {
        matches!(
            self,
            SecretName::PartnerCenterRefreshToken | SecretName::GraphRefreshToken
        )
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// Where a secret came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// The environment variable of that name.
    Env(String),
    /// The file named by `CSP_SYNC_<NAME>_FILE`.
    File(PathBuf),
    /// The OS keyring, service `csp-sync`.
    Keyring,
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env(var) => write!(f, "environment variable {var}"),
            SecretSource::File(path) => write!(f, "file {}", path.display()),
            SecretSource::Keyring => write!(f, "OS keyring (service {KEYRING_SERVICE})"),
        }
    }
}

/// What happened to a rotated secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// Stored back where the old value came from.
    Stored(SecretSource),
    /// Not stored; show the warning once.
    NotStored { warning: String },
}

/// A secrets problem. Never contains a secret value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error(
        "no {description} found (set the environment variable {env}, or set {env}_FILE to a file that \
         holds it, or store it in the OS keyring with `csp-sync auth set {entry}`; on a headless server or \
         in cron, where the keyring usually does not work, use {env}_FILE)"
    )]
    Missing {
        description: &'static str,
        env: String,
        entry: &'static str,
    },
    #[error(
        "{var} names {path}, which cannot be read: {reason} (check the path and that this user may read it)"
    )]
    File {
        var: String,
        path: PathBuf,
        reason: String,
    },
    #[error("{origin} is empty (put the {description} in it)")]
    Empty {
        origin: String,
        description: &'static str,
    },
    #[error(
        "the OS keyring is not usable here, so the {description} could not be {action} (entry \
         `{entry}` of service `csp-sync`): {detail}. On a headless server or in cron/CI put the value in \
         a file only this user can read (chmod 600) and set {env}_FILE to its path, or set {env}"
    )]
    KeyringUnavailable {
        description: &'static str,
        entry: &'static str,
        env: String,
        action: &'static str,
        detail: String,
    },
    #[error(
        "the OS keyring is disabled by CSP_SYNC_NO_KEYRING, so the {description} cannot be stored there \
         (unset CSP_SYNC_NO_KEYRING, or set {env} or {env}_FILE instead)"
    )]
    KeyringDisabled {
        description: &'static str,
        env: String,
    },
}

/// Why a keyring operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyringFailure {
    /// No such entry (on Linux also what a process without a session keyring sees).
    NoEntry,
    /// The backend is missing or refused access; the text says why (never contains a secret).
    Unavailable(String),
}

/// A keyring backend: the OS keyring in production, a fake in tests.
pub trait KeyStore: Send + Sync {
    fn get(&self, entry: &str) -> Result<String, KeyringFailure>;
    fn set(&self, entry: &str, value: &str) -> Result<(), KeyringFailure>;
}

/// The OS keyring through the `keyring` crate (service `csp-sync`).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsKeyring;

fn keyring_failure(e: &keyring::Error) -> KeyringFailure {
    match e {
        keyring::Error::NoEntry => KeyringFailure::NoEntry,
        keyring::Error::BadEncoding(_) => {
            KeyringFailure::Unavailable("the stored value is not UTF-8 text".into())
        }
        keyring::Error::PlatformFailure(inner) => {
            KeyringFailure::Unavailable(format!("keyring backend failure: {inner}"))
        }
        keyring::Error::NoStorageAccess(inner) => {
            KeyringFailure::Unavailable(format!("no access to the keyring: {inner}"))
        }
        other => KeyringFailure::Unavailable(other.to_string()),
    }
}

impl KeyStore for OsKeyring {
    fn get(&self, entry: &str) -> Result<String, KeyringFailure> {
        let e = keyring::Entry::new(KEYRING_SERVICE, entry).map_err(|e| keyring_failure(&e))?;
        e.get_password().map_err(|e| keyring_failure(&e))
    }

    fn set(&self, entry: &str, value: &str) -> Result<(), KeyringFailure> {
        let e = keyring::Entry::new(KEYRING_SERVICE, entry).map_err(|e| keyring_failure(&e))?;
        e.set_password(value).map_err(|e| keyring_failure(&e))
    }
}

type EnvFn = dyn Fn(&str) -> Option<String> + Send + Sync;

/// Secret lookup over an environment and a keyring.
pub struct Secrets {
    env: Box<EnvFn>,
    keyring: Box<dyn KeyStore>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("keyring_enabled", &self.keyring_enabled())
            .finish_non_exhaustive()
    }
}

impl Secrets {
    /// Secrets from the process environment and the OS keyring.
    pub fn from_env() -> Secrets {
        Secrets::new(|name| std::env::var(name).ok())
    }

    /// Secrets from an injected environment and the OS keyring.
    pub fn new(env: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Secrets {
        Secrets::with_keyring(env, Box::new(OsKeyring))
    }

    /// Secrets from an injected environment and keyring (tests).
    pub fn with_keyring(
        env: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
        keyring: Box<dyn KeyStore>,
    ) -> Secrets {
        Secrets {
            env: Box::new(env),
            keyring,
        }
    }

    /// False when `CSP_SYNC_NO_KEYRING` is set to `1`/`true`/`yes`.
    pub fn keyring_enabled(&self) -> bool {
        !(self.env)(NO_KEYRING_ENV).is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
    }

    /// The environment variable that provides `name` ahead of the keyring, if one is set.
    pub fn overridden_by(&self, name: SecretName) -> Option<String> {
        [name.env_var(), name.file_env_var()]
            .into_iter()
            .find(|var| (self.env)(var).is_some_and(|v| !v.trim().is_empty()))
    }

    /// Looks a secret up: `CSP_SYNC_<NAME>`, then `CSP_SYNC_<NAME>_FILE`, then the keyring.
    /// `Ok(None)` when none of them has it.
    pub fn get(
        &self,
        name: SecretName,
    ) -> Result<Option<(SecretString, SecretSource)>, SecretError> {
        let found = self.lookup(name)?;
        if let Some((value, _)) = &found {
            // Known from now on to the one redaction layer: masked wherever a server echoes it.
            crate::redact::register_secret(value);
        }
        Ok(found)
    }

    fn lookup(
        &self,
        name: SecretName,
    ) -> Result<Option<(SecretString, SecretSource)>, SecretError> {
        let var = name.env_var();
        if let Some(value) = (self.env)(&var).filter(|v| !v.is_empty()) {
            return Ok(Some((SecretString::from(value), SecretSource::Env(var))));
        }
        let file_var = name.file_env_var();
        if let Some(path) = (self.env)(&file_var).filter(|v| !v.trim().is_empty()) {
            let path = PathBuf::from(path);
            let value = read_secret_file(&file_var, &path, name)?;
            return Ok(Some((value, SecretSource::File(path))));
        }
        if !self.keyring_enabled() {
            return Ok(None);
        }
        match self.keyring.get(name.keyring_entry()) {
            Ok(value) if value.is_empty() => Err(SecretError::Empty {
                origin: format!("keyring entry `{}`", name.keyring_entry()),
                description: name.description(),
            }),
            Ok(value) => Ok(Some((SecretString::from(value), SecretSource::Keyring))),
            Err(KeyringFailure::NoEntry) => Ok(None),
            Err(KeyringFailure::Unavailable(detail)) => Err(SecretError::KeyringUnavailable {
                description: name.description(),
                entry: name.keyring_entry(),
                env: var,
                action: "read",
                detail,
            }),
        }
    }

    /// Like [`Secrets::get`], but a missing secret is an error naming all three ways to provide it.
    pub fn require(&self, name: SecretName) -> Result<(SecretString, SecretSource), SecretError> {
        self.get(name)?.ok_or_else(|| SecretError::Missing {
            description: name.description(),
            env: name.env_var(),
            entry: name.keyring_entry(),
        })
    }

    /// Stores a value in the keyring and reads it back to make sure it is really there (a process
    /// without a session keyring may accept a write it cannot read back).
    pub fn set_in_keyring(
        &self,
        name: SecretName,
        value: &SecretString,
    ) -> Result<(), SecretError> {
        if !self.keyring_enabled() {
            return Err(SecretError::KeyringDisabled {
                description: name.description(),
                env: name.env_var(),
            });
        }
        let unavailable = |detail: String| SecretError::KeyringUnavailable {
            description: name.description(),
            entry: name.keyring_entry(),
            env: name.env_var(),
            action: "stored",
            detail,
        };
        match self
            .keyring
            .set(name.keyring_entry(), value.expose_secret())
        {
            Ok(()) => {}
            Err(KeyringFailure::NoEntry) => {
                return Err(unavailable(
                    "the keyring refused the entry (this session has no usable keyring)".into(),
                ));
            }
            Err(KeyringFailure::Unavailable(detail)) => return Err(unavailable(detail)),
        }
        match self.keyring.get(name.keyring_entry()) {
            Ok(back) if back == value.expose_secret() => Ok(()),
            Ok(_) => Err(unavailable(
                "the keyring returned a different value than was stored".into(),
            )),
            Err(KeyringFailure::NoEntry) => Err(unavailable(
                "the keyring accepted the value but cannot give it back (no session keyring)"
                    .into(),
            )),
            Err(KeyringFailure::Unavailable(detail)) => Err(unavailable(detail)),
        }
    }

    /// Stores a rotated value (a refresh token Microsoft returned) back where the old one came from: the
    /// keyring, or a writable `*_FILE` (rewritten atomically, mode 0600). For an environment variable or a
    /// file that cannot be rewritten the result is [`Rotation::NotStored`] with a warning to show once.
    pub fn store_rotated(
        &self,
        name: SecretName,
        new_value: &SecretString,
        source: &SecretSource,
    ) -> Result<Rotation, SecretError> {
        let ages_out = if name.is_refresh_token() {
            "the stored token will age out after 90 days unused; store a fresh one before then (`csp-sync auth login`), or use a writable CSP_SYNC_*_FILE or the keyring so csp-sync can keep it current"
        } else {
            "the stored value stays as it is"
        };
        match source {
            SecretSource::Keyring => {
                self.set_in_keyring(name, new_value)?;
                Ok(Rotation::Stored(SecretSource::Keyring))
            }
            SecretSource::File(path) => {
                match crate::config::write_atomic(
                    path,
                    format!("{}\n", new_value.expose_secret()).as_bytes(),
                    Some(0o600),
                ) {
                    Ok(()) => Ok(Rotation::Stored(SecretSource::File(path.clone()))),
                    Err(e) => Ok(Rotation::NotStored {
                        warning: format!(
                            "Microsoft returned a new {} but it could not be written back to {} ({e}); {ages_out}",
                            name.description(),
                            path.display()
                        ),
                    }),
                }
            }
            SecretSource::Env(var) => Ok(Rotation::NotStored {
                warning: format!(
                    "Microsoft returned a new {} but it comes from the environment variable {var}, which csp-sync cannot update; {ages_out}",
                    name.description()
                ),
            }),
        }
    }
}

fn read_secret_file(var: &str, path: &Path, name: SecretName) -> Result<SecretString, SecretError> {
    // A secret is a line of text; 64 KB bounds a wrong path such as /dev/zero.
    let mut text =
        crate::bounded::read_to_string(path, 64 * 1024).map_err(|e| SecretError::File {
            var: var.to_string(),
            path: path.to_path_buf(),
            reason: match e {
                crate::bounded::ReadError::Io(e) => e.kind().to_string(),
                too_large @ crate::bounded::ReadError::TooLarge(_) => too_large.to_string(),
            },
        })?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.is_empty() {
        return Err(SecretError::Empty {
            origin: format!("{} (named by {var})", path.display()),
            description: name.description(),
        });
    }
    Ok(SecretString::from(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    /// A fake keyring that records every call.
    #[derive(Default, Clone)]
    struct FakeKeyring {
        entries: Arc<Mutex<HashMap<String, String>>>,
        calls: Arc<Mutex<usize>>,
        broken: Option<KeyringFailure>,
        write_only: bool,
    }

    impl KeyStore for FakeKeyring {
        fn get(&self, entry: &str) -> Result<String, KeyringFailure> {
            *self.calls.lock().unwrap() += 1;
            if let Some(f) = &self.broken {
                return Err(f.clone());
            }
            if self.write_only {
                return Err(KeyringFailure::NoEntry);
            }
            self.entries
                .lock()
                .unwrap()
                .get(entry)
                .cloned()
                .ok_or(KeyringFailure::NoEntry)
        }
        fn set(&self, entry: &str, value: &str) -> Result<(), KeyringFailure> {
            *self.calls.lock().unwrap() += 1;
            if let Some(f) = &self.broken {
                return Err(f.clone());
            }
            self.entries
                .lock()
                .unwrap()
                .insert(entry.to_string(), value.to_string());
            Ok(())
        }
    }

    fn secrets(vars: &[(&str, &str)], keyring: FakeKeyring) -> Secrets {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        Secrets::with_keyring(move |k| vars.get(k).cloned(), Box::new(keyring))
    }

    fn value(s: &Secrets, name: SecretName) -> Option<(String, SecretSource)> {
        s.get(name)
            .unwrap()
            .map(|(v, src)| (v.expose_secret().to_string(), src))
    }

    #[test]
    fn names() {
        assert_eq!(
            SecretName::GraphRefreshToken.env_var(),
            "CSP_SYNC_GRAPH_REFRESH_TOKEN"
        );
        assert_eq!(
            SecretName::PartnerCenterClientSecret.file_env_var(),
            "CSP_SYNC_PARTNER_CENTER_CLIENT_SECRET_FILE"
        );
        for n in SecretName::ALL {
            assert_eq!(SecretName::from_keyring_entry(n.keyring_entry()), Some(n));
        }
        assert_eq!(SecretName::from_keyring_entry("nope"), None);
    }

    #[test]
    fn env_wins_and_keyring_is_not_touched() {
        let kr = FakeKeyring::default();
        kr.entries
            .lock()
            .unwrap()
            .insert("halo".into(), "from-keyring".into());
        let s = secrets(&[("CSP_SYNC_HALO_CLIENT_SECRET", "from-env")], kr.clone());
        assert_eq!(
            value(&s, SecretName::HaloClientSecret),
            Some((
                "from-env".into(),
                SecretSource::Env("CSP_SYNC_HALO_CLIENT_SECRET".into())
            ))
        );
        assert_eq!(*kr.calls.lock().unwrap(), 0);
    }

    #[test]
    fn file_trims_one_trailing_newline_and_skips_keyring() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret  \r\n").unwrap();
        let kr = FakeKeyring {
            broken: Some(KeyringFailure::Unavailable("no dbus".into())),
            ..FakeKeyring::default()
        };
        let s = secrets(
            &[("CSP_SYNC_GRAPH_CLIENT_SECRET_FILE", path.to_str().unwrap())],
            kr.clone(),
        );
        assert_eq!(
            value(&s, SecretName::GraphClientSecret),
            Some(("s3cret  ".into(), SecretSource::File(path)))
        );
        assert_eq!(*kr.calls.lock().unwrap(), 0);
    }

    #[test]
    fn unreadable_or_empty_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let s = secrets(
            &[(
                "CSP_SYNC_HALO_CLIENT_SECRET_FILE",
                missing.to_str().unwrap(),
            )],
            FakeKeyring::default(),
        );
        let e = s.get(SecretName::HaloClientSecret).unwrap_err().to_string();
        assert!(e.contains("CSP_SYNC_HALO_CLIENT_SECRET_FILE names"), "{e}");
        assert!(e.contains("missing"), "{e}");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let s = secrets(
            &[("CSP_SYNC_HALO_CLIENT_SECRET_FILE", empty.to_str().unwrap())],
            FakeKeyring::default(),
        );
        let e = s.get(SecretName::HaloClientSecret).unwrap_err().to_string();
        assert!(e.contains("is empty"), "{e}");
    }

    #[test]
    fn keyring_is_last_and_can_be_disabled() {
        let kr = FakeKeyring::default();
        kr.entries
            .lock()
            .unwrap()
            .insert("partner-center".into(), "kr".into());
        let s = secrets(&[], kr.clone());
        assert_eq!(
            value(&s, SecretName::PartnerCenterClientSecret),
            Some(("kr".into(), SecretSource::Keyring))
        );
        assert_eq!(value(&s, SecretName::GraphClientSecret), None);
        let s = secrets(&[(NO_KEYRING_ENV, "1")], kr.clone());
        let before = *kr.calls.lock().unwrap();
        assert_eq!(value(&s, SecretName::PartnerCenterClientSecret), None);
        assert_eq!(*kr.calls.lock().unwrap(), before);
    }

    #[test]
    fn require_names_all_three_ways() {
        let s = secrets(&[(NO_KEYRING_ENV, "1")], FakeKeyring::default());
        let e = s
            .require(SecretName::PartnerCenterRefreshToken)
            .unwrap_err()
            .to_string();
        assert!(e.contains("CSP_SYNC_PARTNER_CENTER_REFRESH_TOKEN,"), "{e}");
        assert!(
            e.contains("CSP_SYNC_PARTNER_CENTER_REFRESH_TOKEN_FILE"),
            "{e}"
        );
        assert!(
            e.contains("csp-sync auth set partner-center-refresh-token"),
            "{e}"
        );
    }

    #[test]
    fn broken_keyring_recommends_file() {
        let kr = FakeKeyring {
            broken: Some(KeyringFailure::Unavailable(
                "keyring backend failure: set your DBUS_SESSION_BUS_ADDRESS".into(),
            )),
            ..FakeKeyring::default()
        };
        let s = secrets(&[], kr);
        let e = s.get(SecretName::HaloClientSecret).unwrap_err().to_string();
        assert!(e.contains("not usable"), "{e}");
        assert!(e.contains("CSP_SYNC_HALO_CLIENT_SECRET_FILE"), "{e}");
        let e = s
            .set_in_keyring(SecretName::HaloClientSecret, &SecretString::from("x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("could not be stored"), "{e}");
        assert!(e.contains("CSP_SYNC_HALO_CLIENT_SECRET_FILE"), "{e}");
    }

    #[test]
    fn write_that_cannot_be_read_back_is_an_error() {
        let kr = FakeKeyring {
            write_only: true,
            ..FakeKeyring::default()
        };
        let s = secrets(&[], kr);
        let e = s
            .set_in_keyring(SecretName::GraphClientSecret, &SecretString::from("x"))
            .unwrap_err();
        assert!(matches!(e, SecretError::KeyringUnavailable { .. }), "{e}");
    }

    #[test]
    fn set_in_keyring_respects_no_keyring() {
        let kr = FakeKeyring::default();
        let s = secrets(&[(NO_KEYRING_ENV, "true")], kr.clone());
        let e = s
            .set_in_keyring(SecretName::HaloClientSecret, &SecretString::from("x"))
            .unwrap_err();
        assert!(matches!(e, SecretError::KeyringDisabled { .. }));
        assert_eq!(*kr.calls.lock().unwrap(), 0);
    }

    #[test]
    fn rotation_to_keyring_and_file() {
        let kr = FakeKeyring::default();
        let s = secrets(&[], kr.clone());
        let new = SecretString::from("new-token");
        assert_eq!(
            s.store_rotated(SecretName::GraphRefreshToken, &new, &SecretSource::Keyring)
                .unwrap(),
            Rotation::Stored(SecretSource::Keyring)
        );
        assert_eq!(
            kr.entries
                .lock()
                .unwrap()
                .get("graph-refresh-token")
                .map(String::as_str),
            Some("new-token")
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rt");
        std::fs::write(&path, "old\n").unwrap();
        let rot = s
            .store_rotated(
                SecretName::GraphRefreshToken,
                &new,
                &SecretSource::File(path.clone()),
            )
            .unwrap();
        assert_eq!(rot, Rotation::Stored(SecretSource::File(path.clone())));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new-token\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let s = secrets(
            &[("CSP_SYNC_GRAPH_REFRESH_TOKEN_FILE", path.to_str().unwrap())],
            FakeKeyring::default(),
        );
        assert_eq!(
            value(&s, SecretName::GraphRefreshToken).unwrap().0,
            "new-token"
        );
    }

    #[test]
    fn rotation_from_env_or_unwritable_file_warns() {
        let s = secrets(&[], FakeKeyring::default());
        let new = SecretString::from("new-token");
        let Rotation::NotStored { warning } = s
            .store_rotated(
                SecretName::PartnerCenterRefreshToken,
                &new,
                &SecretSource::Env("CSP_SYNC_PARTNER_CENTER_REFRESH_TOKEN".into()),
            )
            .unwrap()
        else {
            panic!("env cannot be stored");
        };
        assert!(warning.contains("90 days"), "{warning}");
        assert!(!warning.contains("new-token"), "{warning}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-such-dir").join("rt");
        let Rotation::NotStored { warning } = s
            .store_rotated(
                SecretName::PartnerCenterRefreshToken,
                &new,
                &SecretSource::File(path),
            )
            .unwrap()
        else {
            panic!("cannot be written");
        };
        assert!(warning.contains("could not be written back"), "{warning}");
        assert!(warning.contains("90 days"), "{warning}");
    }

    #[test]
    fn debug_never_shows_values() {
        let s = secrets(
            &[("CSP_SYNC_HALO_CLIENT_SECRET", "hunter2")],
            FakeKeyring::default(),
        );
        let got = s.get(SecretName::HaloClientSecret).unwrap();
        let debug = format!("{got:?} {s:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}
