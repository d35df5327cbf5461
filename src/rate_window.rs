//! The Halo rate window shared by every csp-sync process of one state directory (SPEC 9 and 10): the wall-clock
//! times of the Halo requests sent in the last `[halo] rate_limit` window, in `state_dir/halo-window.json`.
//!
//! Halo cloud refuses more than 300 requests per rolling 5 minutes (halo-api.md 2.4) and counts every request
//! of the API application, whichever process sent it. A limiter that lives in one process starts empty, so a
//! cron `sync` and a CI `diff` run side by side, or two runs started back to back, would together go over the
//! window. So before each Halo request a process takes a slot here: under a short lock of its own
//! (`halo-window.lock`, an OS file lock held only while the file is read and rewritten, never the run lock,
//! so `diff` may run beside `sync`), it drops the times older than the window, and either records the new
//! request (fewer than `requests` in the window) or learns how long to wait until the oldest one leaves it.
//!
//! The file holds at most `requests` times, all inside the last window: its size is bounded by the limit.
//! It is written atomically (write, fsync, rename). A missing file is an empty window; an unreadable or
//! corrupt one is an empty window too, with a warning (never a panic, never a refused run). Times further
//! ahead than one window (the clock was set back) are dropped the same way.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::http::RateLimit;

/// The file name of the window in the state directory.
pub const WINDOW_FILE: &str = "halo-window.json";
/// Its lock (a separate file: the window file itself is replaced by rename on every write).
pub const WINDOW_LOCK: &str = "halo-window.lock";

/// Added to the window: Halo counts a request when it arrives, csp-sync when it sends it, and two
/// requests' network times differ; a second of slack keeps Halo's view of the window under the limit too.
pub const SLACK: Duration = Duration::from_secs(1);

/// Bytes read at most: 100,000 requests (the largest `[halo] rate_limit`) of 14 digits and a comma, with room.
const MAX_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, Default, Serialize, Deserialize)]
struct WindowFile {
    /// The window the times were kept for (informative: each process applies its own configured window).
    #[serde(default)]
    per_seconds: u64,
    /// Unix milliseconds of the requests sent, oldest first.
    #[serde(default)]
    sent_ms: Vec<i64>,
}

/// One process's handle on the shared window of a state directory.
#[derive(Debug, Clone)]
pub struct SharedWindow {
    dir: PathBuf,
    limit: usize,
    window: Duration,
}

/// The outcome of [`SharedWindow::try_take`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// The slot is taken and recorded: send now.
    Taken,
    /// The window is full: ask again after this long.
    Wait(Duration),
}

/// Milliseconds since the Unix epoch of a wall-clock time (0 before 1970).
pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl SharedWindow {
    pub fn new(state_dir: &Path, limit: RateLimit) -> SharedWindow {
        SharedWindow {
            dir: state_dir.to_path_buf(),
            limit: limit.requests.max(1) as usize,
            window: limit.per + SLACK,
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(WINDOW_FILE)
    }

    /// Takes a slot at `now` (Unix milliseconds) if the window has one. Blocking file I/O under the short
    /// lock; an error is an I/O failure on the state directory (the caller falls back to its own window).
    pub fn try_take(&self, now: i64) -> Result<Take, String> {
        crate::state::StateDir::new(&self.dir)
            .ensure()
            .map_err(|e| format!("{e:#} (for the Halo rate window)"))?;
        let lock_path = self.dir.join(WINDOW_LOCK);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
        lock.lock()
            .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
        let result = self.take_locked(now);
        // Dropping the file releases the lock; unlock first so a failed close cannot hold it.
        let _ = lock.unlock();
        result
    }

    fn take_locked(&self, now: i64) -> Result<Take, String> {
        let path = self.path();
        let window_ms = i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX);
        let mut sent = read_times(&path);
        sent.retain(|&t| t > now.saturating_sub(window_ms) && t <= now.saturating_add(window_ms));
        sent.sort_unstable();
        if sent.len() >= self.limit {
            // The oldest of the `limit` newest leaves the window first (older ones may be many when
            // another process runs with a larger limit).
            let oldest = sent[sent.len() - self.limit];
            let wait = oldest.saturating_add(window_ms).saturating_sub(now).max(1);
            return Ok(Take::Wait(Duration::from_millis(
                u64::try_from(wait).unwrap_or(u64::MAX),
            )));
        }
        sent.push(now);
        let file = WindowFile {
            per_seconds: self.window.saturating_sub(SLACK).as_secs(),
            sent_ms: sent,
        };
        let bytes = serde_json::to_vec(&file).map_err(|e| e.to_string())?;
        crate::config::write_atomic(&path, &bytes, Some(0o600))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(Take::Taken)
    }
}

/// The times in the window file; missing is empty, unreadable or corrupt is empty with a warning.
fn read_times(path: &Path) -> Vec<i64> {
    let bytes = match crate::bounded::read(path, MAX_BYTES) {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return Vec::new(),
        Err(e) => {
            tracing::warn!(
                "ignoring the Halo rate window {}: {e}; starting from an empty window (delete the file if \
                 this repeats)",
                path.display()
            );
            return Vec::new();
        }
    };
    match serde_json::from_slice::<WindowFile>(&bytes) {
        Ok(f) => f.sent_ms,
        Err(e) => {
            tracing::warn!(
                "ignoring the unreadable Halo rate window {}: {e}; starting from an empty window",
                path.display()
            );
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(dir: &Path, requests: u32, secs: u64) -> SharedWindow {
        SharedWindow::new(
            dir,
            RateLimit {
                requests,
                per: Duration::from_secs(secs),
            },
        )
    }

    #[test]
    fn two_handles_share_one_window_and_wait_only_for_the_oldest_to_leave() {
        let dir = tempfile::tempdir().unwrap();
        let a = window(dir.path(), 3, 10);
        let b = window(dir.path(), 3, 10);
        let t0 = 1_800_000_000_000;
        assert_eq!(a.try_take(t0).unwrap(), Take::Taken);
        assert_eq!(b.try_take(t0 + 1_000).unwrap(), Take::Taken);
        assert_eq!(a.try_take(t0 + 2_000).unwrap(), Take::Taken);
        // Full: the first request leaves the window (10 s + 1 s slack) at t0 + 11 s.
        assert_eq!(
            b.try_take(t0 + 5_000).unwrap(),
            Take::Wait(Duration::from_secs(6))
        );
        assert_eq!(b.try_take(t0 + 11_000).unwrap(), Take::Taken);
        let f: WindowFile = serde_json::from_slice(&std::fs::read(a.path()).unwrap()).unwrap();
        assert_eq!(f.sent_ms, vec![t0 + 1_000, t0 + 2_000, t0 + 11_000]);
        assert_eq!(f.per_seconds, 10);
    }

    #[test]
    fn the_file_keeps_only_the_last_window() {
        let dir = tempfile::tempdir().unwrap();
        let w = window(dir.path(), 1000, 1);
        let t0 = 1_800_000_000_000;
        for i in 0..50 {
            assert_eq!(w.try_take(t0 + i * 1_000).unwrap(), Take::Taken);
        }
        let f: WindowFile = serde_json::from_slice(&std::fs::read(w.path()).unwrap()).unwrap();
        // Window 1 s + 1 s slack: the times of the last two seconds only.
        assert_eq!(f.sent_ms, vec![t0 + 48_000, t0 + 49_000]);
    }

    #[test]
    fn a_corrupt_or_future_file_is_an_empty_window() {
        let dir = tempfile::tempdir().unwrap();
        let w = window(dir.path(), 1, 60);
        let t0 = 1_800_000_000_000;
        std::fs::write(w.path(), "{not json").unwrap();
        assert_eq!(w.try_take(t0).unwrap(), Take::Taken);
        // A time far ahead (the clock was set back) does not block for ever.
        std::fs::write(
            w.path(),
            format!("{{\"per_seconds\":60,\"sent_ms\":[{}]}}", t0 + 3_600_000),
        )
        .unwrap();
        assert_eq!(w.try_take(t0).unwrap(), Take::Taken);
        assert!(matches!(w.try_take(t0 + 1).unwrap(), Take::Wait(_)));
    }

    #[test]
    fn an_unwritable_state_dir_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        std::fs::write(&file, "x").unwrap();
        let w = window(&file, 1, 60);
        assert!(w.try_take(1).is_err());
    }
}
