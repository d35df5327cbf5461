//! Stopping a writing run cleanly (SPEC section 3, exit codes 130 / 143): the first SIGINT or SIGTERM asks
//! the run to stop starting new work; the batch in flight is finished (or its creates verified by reading
//! Halo), state and journal are written, the lock released, and the run exits 130 / 143. A second signal
//! exits at once: whatever the journal already holds was fsync'd per batch, and the OS releases the lock.
//!
//! Only commands that write to Halo install it; the others keep the default signal behaviour.

use tokio::sync::watch;

use crate::error::Exit;

/// The stop request of a run.
#[derive(Debug, Clone)]
pub struct Interrupt {
    rx: watch::Receiver<Option<Exit>>,
}

impl Interrupt {
    /// Starts listening for SIGINT and SIGTERM (Ctrl-C and Ctrl-Break on Windows). Must be called on the
    /// Tokio runtime.
    pub fn install() -> std::io::Result<Interrupt> {
        let (tx, rx) = watch::channel(None);
        #[cfg(unix)]
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::spawn(async move {
            loop {
                #[cfg(unix)]
                let got = tokio::select! {
                    r = tokio::signal::ctrl_c() => r.map(|()| Exit::Interrupted),
                    r = term.recv() => r.map(|()| Exit::Terminated).ok_or_else(|| std::io::Error::other("signal stream ended")),
                };
                #[cfg(not(unix))]
                let got = tokio::signal::ctrl_c().await.map(|()| Exit::Interrupted);
                let Ok(exit) = got else { return };
                if tx.borrow().is_some() {
                    // The second signal: stop now.
                    std::process::exit(i32::from(exit.code()));
                }
                tracing::warn!(
                    "stopping: finishing the writes in flight, then saving state and journal; \
                     signal again to stop at once"
                );
                let _ = tx.send(Some(exit));
            }
        });
        Ok(Interrupt { rx })
    }

    /// An interrupt that never fires (for runs that are not stopped by signals, and tests).
    pub fn never() -> Interrupt {
        let (tx, rx) = watch::channel(None);
        std::mem::forget(tx);
        Interrupt { rx }
    }

    /// The exit status asked for, once a signal came.
    pub fn requested(&self) -> Option<Exit> {
        *self.rx.borrow()
    }

    /// Waits for the first signal.
    pub async fn wait(&self) -> Exit {
        let mut rx = self.rx.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(v) => v.unwrap_or(Exit::Interrupted),
            Err(_) => std::future::pending().await,
        }
    }
}
