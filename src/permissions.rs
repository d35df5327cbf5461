//! Warnings about files other users can read: the state directory (it holds the users of every tenant and
//! the journal) and the secret files named by `CSP_SYNC_<NAME>_FILE`. Only Unix has such permission bits;
//! elsewhere nothing is checked.

use std::path::Path;

/// The permission bits of `path` when its group or other users may read it.
#[cfg(unix)]
pub fn readable_by_others(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o044 != 0).then_some(mode)
}

#[cfg(not(unix))]
pub fn readable_by_others(_path: &Path) -> Option<u32> {
    None
}

/// The warning for a secret file other users can read.
pub fn secret_file_warning(var: &str, path: &Path) -> Option<String> {
    readable_by_others(path).map(|mode| {
        format!(
            "{} (named by {var}) is readable by other users (mode {mode:o}); make it private with `chmod 600 {}`",
            path.display(),
            path.display()
        )
    })
}

/// The warning for a state directory other users can read.
pub fn state_dir_warning(dir: &Path) -> Option<String> {
    readable_by_others(dir).map(|mode| {
        format!(
            "the state directory {} is readable by other users (mode {mode:o}); it holds every tenant's users \
             and the journal: make it private with `chmod 700 {}`",
            dir.display(),
            dir.display()
        )
    })
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn group_or_world_readable_is_warned_about() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "s").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(secret_file_warning("CSP_SYNC_HALO_CLIENT_SECRET_FILE", &file).is_none());
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        let w = secret_file_warning("CSP_SYNC_HALO_CLIENT_SECRET_FILE", &file).unwrap();
        assert!(w.contains("mode 640") && w.contains("chmod 600"), "{w}");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(state_dir_warning(dir.path()).unwrap().contains("chmod 700"));
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(state_dir_warning(dir.path()).is_none());
        assert!(state_dir_warning(&dir.path().join("missing")).is_none());
    }
}
