//! The state directory (SPEC section 9): Graph delta links with each tenant's last full read, when each user
//! was last seen in scope (grace periods), the run lock, and a journal of applied changes. Every file is
//! written atomically (write, fsync, rename: `config::write_atomic`). Losing the directory costs a full read, never a wrong change.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::lock::RunLock;
use crate::model::EntraUser;

/// A tenant's Graph users as of the last read, with the delta link that continues from there.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TenantUsersState {
    pub delta_link: Option<String>,
    /// RFC 3339 time of the last full (non-delta) read.
    pub last_full_read: Option<String>,
    pub users: Vec<EntraUser>,
    /// Object ids Graph reported `@removed` since the last full read (see `delta_guard`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
}

/// The state directory of one configuration.
#[derive(Debug, Clone)]
pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    pub fn new(path: impl Into<PathBuf>) -> StateDir {
        StateDir { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the directory (private to this user) if it is missing.
    pub fn ensure(&self) -> Result<()> {
        // Private to this user (0700 on Unix): it holds every tenant's users and the journal.
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&self.path).with_context(|| {
            format!(
                "cannot create the state directory {} (set [sync] state_dir to a writable place)",
                self.path.display()
            )
        })
    }

    /// Takes the run lock; a second run exits at once naming the running process.
    pub fn lock(&self) -> Result<RunLock> {
        self.ensure()?;
        RunLock::acquire(&self.path.join("lock"))
    }

    fn tenant_users_path(&self, tenant_id: &str) -> PathBuf {
        let safe: String = tenant_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.path.join("users").join(format!("{safe}.json"))
    }

    /// The stored users and delta link of a tenant; `None` when absent or unreadable (a full read follows).
    pub fn tenant_users(&self, tenant_id: &str) -> Option<TenantUsersState> {
        read_json(&self.tenant_users_path(tenant_id))
    }

    pub fn save_tenant_users(&self, tenant_id: &str, state: &TenantUsersState) -> Result<()> {
        write_json(&self.tenant_users_path(tenant_id), state)
    }

    /// When each user ("tenant/oid") was last seen in scope.
    pub fn last_seen(&self) -> BTreeMap<String, jiff::Timestamp> {
        read_json(&self.path.join("last-seen.json")).unwrap_or_default()
    }

    pub fn save_last_seen(&self, seen: &BTreeMap<String, jiff::Timestamp>) -> Result<()> {
        write_json(&self.path.join("last-seen.json"), seen)
    }

    /// Per device ("tenant/intune id"): when it was last seen in Intune and the list-less values
    /// csp-sync last wrote to its asset.
    pub fn assets(&self) -> BTreeMap<String, crate::plan::assets::DeviceState> {
        read_json(&self.path.join("assets.json")).unwrap_or_default()
    }

    pub fn save_assets(
        &self,
        assets: &BTreeMap<String, crate::plan::assets::DeviceState>,
    ) -> Result<()> {
        write_json(&self.path.join("assets.json"), assets)
    }

    /// What csp-sync remembers of Halo's list-less fields (SPEC 9); empty when absent or unreadable.
    pub fn halo_memory(&self) -> crate::halo_memory::HaloMemory {
        read_json(&self.path.join("halo-memory.json")).unwrap_or_default()
    }

    pub fn save_halo_memory(&self, memory: &crate::halo_memory::HaloMemory) -> Result<()> {
        write_json(&self.path.join("halo-memory.json"), memory)
    }

    /// The journal of applied runs.
    pub fn journal(&self) -> crate::journal::Journal {
        crate::journal::Journal::new(&self.path)
    }
}

pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Option<T> {
    let text = match crate::bounded::read(path, crate::bounded::STATE_BYTES) {
        Ok(t) => t,
        Err(e) if e.is_not_found() => return None,
        Err(e) => {
            tracing::warn!(
                "ignoring state file {}: {e}; the next run reads in full",
                path.display()
            );
            return None;
        }
    };
    match serde_json::from_slice(&text) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(
                "ignoring unreadable state file {}: {e}; the next run reads in full",
                path.display()
            );
            None
        }
    }
}

pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = crate::redact::json(value).context("serialising state")?;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    crate::config::write_atomic(path, &bytes, None)
        .with_context(|| format!("cannot write the state file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_state_reads_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        fs::create_dir_all(dir.path().join("users")).unwrap();
        fs::write(dir.path().join("users/t1.json"), "{not json").unwrap();
        assert!(state.tenant_users("t1").is_none());
        state
            .save_tenant_users(
                "t1",
                &TenantUsersState {
                    delta_link: Some("x".into()),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(
            state.tenant_users("t1").unwrap().delta_link.as_deref(),
            Some("x")
        );
    }
}
