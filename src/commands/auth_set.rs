//! `csp-sync auth set <target>`: store a secret in the OS keyring. The value comes from a hidden prompt
//! when stdin is a terminal, else from one line of stdin (`printf %s "$SECRET" | csp-sync auth set halo`).

use std::io::{BufRead, IsTerminal as _, Write};

use anyhow::{Context as _, bail};
use secrecy::{ExposeSecret as _, SecretString};

use crate::secrets::{SecretError, SecretName, Secrets};

/// Reads the value (prompt or stdin) and stores it in the keyring; reports to `out`.
pub fn run_auth_set(
    name: SecretName,
    secrets: &Secrets,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if !secrets.keyring_enabled() {
        // Say so before asking for the value.
        return Err(SecretError::KeyringDisabled {
            description: name.description(),
            env: name.env_var(),
        }
        .into());
    }
    let value = if std::io::stdin().is_terminal() {
        prompt(name)?
    } else {
        read_line(&mut std::io::stdin().lock(), name)?
    };
    store(name, &value, secrets, out)
}

/// Like [`run_auth_set`] with the value read from `input` (one line).
pub fn run_auth_set_from(
    name: SecretName,
    secrets: &Secrets,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let value = read_line(input, name)?;
    store(name, &value, secrets, out)
}

fn prompt(name: SecretName) -> anyhow::Result<SecretString> {
    let message = format!("{}:", name.description());
    let value = inquire::Password::new(&message)
        .without_confirmation()
        .with_display_mode(inquire::PasswordDisplayMode::Hidden)
        .with_help_message("input is hidden; press Enter when done, Esc to cancel")
        .prompt()
        .map_err(|e| match e {
            inquire::InquireError::OperationCanceled
            | inquire::InquireError::OperationInterrupted => {
                anyhow::anyhow!("cancelled; nothing was stored")
            }
            other => anyhow::anyhow!(
                "cannot prompt for the {}: {other} (pipe the value on stdin instead)",
                name.description()
            ),
        })?;
    non_empty(SecretString::from(value), name)
}

fn read_line(input: &mut dyn BufRead, name: SecretName) -> anyhow::Result<SecretString> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .with_context(|| format!("cannot read the {} from stdin", name.description()))?;
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    non_empty(SecretString::from(line), name)
}

fn non_empty(value: SecretString, name: SecretName) -> anyhow::Result<SecretString> {
    if value.expose_secret().trim().is_empty() {
        bail!(
            "no {} given; nothing was stored (type it at the prompt, or pipe it on stdin)",
            name.description()
        );
    }
    Ok(value)
}

fn store(
    name: SecretName,
    value: &SecretString,
    secrets: &Secrets,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    secrets.set_in_keyring(name, value)?;
    writeln!(
        out,
        "Stored the {} in the OS keyring (service csp-sync, entry {}).",
        name.description(),
        name.keyring_entry()
    )?;
    if cfg!(target_os = "linux") {
        writeln!(
            out,
            "Note: on Linux this is the kernel keyring: it is cleared at reboot, and cron jobs or services \
             often cannot see it. For unattended runs put the value in a file only that user can read \
             (chmod 600) and set {}.",
            name.file_env_var()
        )?;
    }
    if let Some(var) = secrets.overridden_by(name) {
        writeln!(
            out,
            "Note: {var} is set and takes precedence over the keyring; unset it to use the stored value."
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::{KeyStore, KeyringFailure};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    #[derive(Default, Clone)]
    struct MemKeyring(Arc<Mutex<HashMap<String, String>>>);

    impl KeyStore for MemKeyring {
        fn get(&self, entry: &str) -> Result<String, KeyringFailure> {
            self.0
                .lock()
                .unwrap()
                .get(entry)
                .cloned()
                .ok_or(KeyringFailure::NoEntry)
        }
        fn set(&self, entry: &str, value: &str) -> Result<(), KeyringFailure> {
            self.0.lock().unwrap().insert(entry.into(), value.into());
            Ok(())
        }
    }

    struct NoBackend;

    impl KeyStore for NoBackend {
        fn get(&self, _: &str) -> Result<String, KeyringFailure> {
            Err(KeyringFailure::Unavailable("no D-Bus session".into()))
        }
        fn set(&self, _: &str, _: &str) -> Result<(), KeyringFailure> {
            Err(KeyringFailure::Unavailable("no D-Bus session".into()))
        }
    }

    #[test]
    fn stores_one_line_from_stdin() {
        let kr = MemKeyring::default();
        let secrets = Secrets::with_keyring(
            |v| (v == "CSP_SYNC_HALO_CLIENT_SECRET").then(|| "env".to_string()),
            Box::new(kr.clone()),
        );
        let mut out = Vec::new();
        run_auth_set_from(
            SecretName::HaloClientSecret,
            &secrets,
            &mut "s3cret\r\nignored\n".as_bytes(),
            &mut out,
        )
        .unwrap();
        assert_eq!(
            kr.0.lock().unwrap().get("halo").map(String::as_str),
            Some("s3cret")
        );
        let said = String::from_utf8(out).unwrap();
        assert!(said.contains("entry halo"), "{said}");
        assert!(
            said.contains("CSP_SYNC_HALO_CLIENT_SECRET is set"),
            "{said}"
        );
        assert!(!said.contains("s3cret"), "{said}");
    }

    #[test]
    fn empty_input_is_refused() {
        let kr = MemKeyring::default();
        let secrets = Secrets::with_keyring(|_| None, Box::new(kr.clone()));
        let e = run_auth_set_from(
            SecretName::GraphClientSecret,
            &secrets,
            &mut "\n".as_bytes(),
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("nothing was stored"), "{e}");
        assert!(kr.0.lock().unwrap().is_empty());
    }

    #[test]
    fn missing_backend_recommends_a_file() {
        let secrets = Secrets::with_keyring(|_| None, Box::new(NoBackend));
        let e = run_auth_set_from(
            SecretName::GraphClientSecret,
            &secrets,
            &mut "x\n".as_bytes(),
            &mut Vec::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("CSP_SYNC_GRAPH_CLIENT_SECRET_FILE"), "{e}");
    }
}
