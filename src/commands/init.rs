//! `csp-sync init [PATH]`: write the commented starter configuration.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::config::{EXAMPLE, FILE_NAME};

/// The file `init` writes: its PATH argument, else `--config`, else `$CSP_SYNC_CONFIG` (the file the other
/// commands then read), else `None` for `./csp-sync.toml`. A PATH and a `--config` that differ are refused
/// rather than one silently winning.
pub fn target(
    path: Option<&Path>,
    config_flag: Option<&Path>,
    env: Option<&Path>,
) -> anyhow::Result<Option<PathBuf>> {
    let env = env.filter(|p| !p.as_os_str().is_empty());
    match (path, config_flag) {
        (Some(p), Some(c)) if p != c => bail!(
            "`init` was given two files: --config {} and {}; give one (`csp-sync --config {} init` or \
             `csp-sync init {}`)",
            c.display(),
            p.display(),
            c.display(),
            p.display()
        ),
        (Some(p), _) | (None, Some(p)) => Ok(Some(p.to_path_buf())),
        (None, None) => Ok(env.map(Path::to_path_buf)),
    }
}

/// Writes [`EXAMPLE`] to `path` (default `./csp-sync.toml`), refusing to overwrite an existing file,
/// and tells `out` what to do next.
pub fn run_init(path: Option<&Path>, out: &mut dyn Write) -> anyhow::Result<()> {
    let path: PathBuf = path.map_or_else(|| PathBuf::from(FILE_NAME), Path::to_path_buf);
    if path.exists() {
        bail!(
            "{} already exists; not overwritten (edit it, or give another path: `csp-sync init other.toml`)",
            path.display()
        );
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| {
            format!(
                "cannot create {} (check that the directory is writable)",
                path.display()
            )
        })?;
    file.write_all(EXAMPLE.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;

    let shown = path.display();
    let config_flag = if path == Path::new(FILE_NAME) {
        String::new()
    } else {
        format!(" --config {shown}")
    };
    writeln!(
        out,
        "Wrote {shown}.\n\
         Next:\n  \
         1. Edit it: the Partner Center tenant and app ids, the Graph app id, your Halo URL and API client id.\n  \
         2. Provide the secrets. At a desktop: `csp-sync auth set partner-center`, `csp-sync auth set graph`,\n     \
            `csp-sync auth set halo`. On a server or in CI: CSP_SYNC_<NAME> or CSP_SYNC_<NAME>_FILE\n     \
            (PARTNER_CENTER_CLIENT_SECRET, GRAPH_CLIENT_SECRET, HALO_CLIENT_SECRET, ...).\n  \
         3. `csp-sync{config_flag} auth check` to see that every token works.\n  \
         4. `csp-sync{config_flag} tenants map` to map Partner Center customers to Halo clients.\n  \
         5. `csp-sync{config_flag} diff` to review the changes, then `csp-sync{config_flag} sync`."
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_is_the_argument_or_the_config_flag_and_never_two() {
        let a = Path::new("a.toml");
        let b = Path::new("b.toml");
        assert_eq!(target(Some(a), None, None).unwrap(), Some(a.into()));
        assert_eq!(target(None, Some(a), Some(b)).unwrap(), Some(a.into()));
        assert_eq!(target(Some(a), Some(a), None).unwrap(), Some(a.into()));
        assert_eq!(target(None, None, Some(b)).unwrap(), Some(b.into()));
        assert_eq!(target(None, None, None).unwrap(), None);
        let e = target(Some(a), Some(b), None).unwrap_err().to_string();
        assert!(e.contains("two files"), "{e}");
    }

    #[test]
    fn writes_the_example_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("c.toml");
        let mut out = Vec::new();
        run_init(Some(&path), &mut out).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), EXAMPLE);
        let said = String::from_utf8(out).unwrap();
        assert!(said.contains("Wrote "), "{said}");
        assert!(said.contains("auth check"), "{said}");
        assert!(said.contains("--config"), "{said}");
        // The file parses, but its placeholders are refused until they are filled in (SPEC 4).
        crate::config::parse(&path, EXAMPLE).expect("the written file parses");
        let e = crate::config::load(&path).unwrap_err().to_string();
        for key in [
            "partner_center.tenant_id",
            "partner_center.client_id",
            "graph.client_id",
            "halo.url",
            "halo.client_id",
        ] {
            assert!(e.contains(key), "{key}: {e}");
        }

        std::fs::write(&path, "mine").unwrap();
        let e = run_init(Some(&path), &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("already exists"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "mine");
    }
}
