//! The run lock of a state directory (SPEC section 8: one run at a time per state directory).
//!
//! It is an OS file lock (`flock` on Unix, `LockFileEx` on Windows, through `std::fs::File::try_lock`) on
//! `state_dir/lock`, taken in one atomic step: two runs started at the same instant cannot both get it. The
//! kernel releases it when the process ends, however it ends (exit, panic, SIGKILL, an OOM kill), so a lock
//! is never stale: a pid written by a process that is gone, or that now belongs to another process (a
//! container restarted as pid 1), blocks nothing. The file's text (pid, start time) only names the holder
//! in the refusal message. The file itself is never removed: removing a locked file would let a third run
//! lock a new file while a second still waits on the old one.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// A held run lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
}

impl RunLock {
    /// Takes the lock at `path`, or fails at once naming the process that holds it.
    pub fn acquire(path: &Path) -> Result<RunLock> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| {
                format!(
                    "cannot open the lock {} (set [sync] state_dir to a writable local directory)",
                    path.display()
                )
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = holder_of(&mut file);
                bail!(
                    "another csp-sync run ({holder}) holds the lock {}; wait for it to finish \
                     (one run at a time per state directory)",
                    path.display()
                );
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| {
                    format!(
                        "cannot lock {} (a file system without file locks?); set [sync] state_dir to a local directory",
                        path.display()
                    )
                });
            }
        }
        let me = format!(
            "{}\n{}\n",
            std::process::id(),
            jiff::Timestamp::now()
                .round(jiff::Unit::Second)
                .unwrap_or_else(|_| jiff::Timestamp::now())
        );
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)).map(|_| ()))
            .and_then(|()| file.write_all(me.as_bytes()))
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write the lock {}", path.display()))?;
        Ok(RunLock {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Emptied first, so a leftover text never names a finished run; the lock itself goes with the handle.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// "pid N, started T" from the holder's text; the holder writes it just after locking, so an empty text
/// is read again for a moment before giving up on it.
fn holder_of(file: &mut File) -> String {
    for _ in 0..20 {
        let mut text = String::new();
        let _ = file.seek(SeekFrom::Start(0));
        let _ = file.take(4096).read_to_string(&mut text);
        let mut lines = text.lines();
        if let Some(pid) = lines.next().and_then(|l| l.trim().parse::<u32>().ok()) {
            let since = lines.next().unwrap_or("an unknown time").trim().to_string();
            return format!("pid {pid}, started {since}");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    "pid unknown".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_naming_the_pid_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let lock = RunLock::acquire(&path).unwrap();
        let err = RunLock::acquire(&path).unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(lock);
        RunLock::acquire(&path).unwrap();
    }

    #[test]
    fn a_lock_naming_a_live_process_that_does_not_hold_it_is_taken() {
        // Pid 1 is always alive: a container restarted after an OOM kill runs as pid 1 again.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        std::fs::write(&path, "1\n2026-01-01T00:00:00Z\n").unwrap();
        let lock = RunLock::acquire(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with(&format!("{}\n", std::process::id())),
            "{text}"
        );
        drop(lock);
    }

    #[test]
    fn an_empty_or_garbled_lock_file_is_not_held() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        std::fs::write(&path, "").unwrap();
        drop(RunLock::acquire(&path).unwrap());
        std::fs::write(&path, "not a pid").unwrap();
        drop(RunLock::acquire(&path).unwrap());
    }

    #[test]
    fn of_many_takers_started_at_once_exactly_one_gets_the_lock() {
        // Threads of one process share a pid, so a pid-file lock would let several through here.
        for round in 0..50 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("lock");
            let barrier = std::sync::Barrier::new(8);
            let held: Vec<Option<RunLock>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..8)
                    .map(|_| {
                        s.spawn(|| {
                            barrier.wait();
                            RunLock::acquire(&path).ok()
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let winners = held.iter().filter(|l| l.is_some()).count();
            assert_eq!(winners, 1, "round {round}: {winners} runs got the lock");
        }
    }
}
