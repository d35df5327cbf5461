//! Exit codes (SPEC section 3), mapped in one place.

/// The process exit status of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    /// Success; for `diff --detailed-exitcode`: no changes pending.
    Ok,
    /// `diff --detailed-exitcode` only: changes are pending.
    Pending,
    /// A safety guard held back some changes; everything else was applied.
    HeldBack,
    /// Bad usage or config, a credential refused, an API failure, a tenant that failed.
    Error,
    /// Stopped by SIGINT (Ctrl-C): in-flight writes finished or verified, state and journal written.
    Interrupted,
    /// Stopped by SIGTERM: as [`Exit::Interrupted`].
    Terminated,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Error => 1,
            Exit::Pending => 2,
            Exit::HeldBack => 3,
            // 128 + the signal number, as shells report a process a signal ended.
            Exit::Interrupted => 130,
            Exit::Terminated => 143,
        }
    }

    /// Combines two outcomes: the first of 130/143, 1, 3, 2 wins (SPEC section 3).
    #[must_use]
    pub fn worst(self, other: Exit) -> Exit {
        self.max(other)
    }
}

#[cfg(test)]
mod tests {
    use super::Exit;

    #[test]
    fn precedence_is_signal_then_error_then_held_then_pending() {
        assert_eq!(Exit::Pending.worst(Exit::HeldBack), Exit::HeldBack);
        assert_eq!(Exit::HeldBack.worst(Exit::Error), Exit::Error);
        assert_eq!(Exit::Ok.worst(Exit::Pending), Exit::Pending);
        assert_eq!(Exit::Error.worst(Exit::Interrupted), Exit::Interrupted);
        assert_eq!(Exit::Terminated.worst(Exit::Error), Exit::Terminated);
        assert_eq!(Exit::Error.code(), 1);
        assert_eq!(Exit::Interrupted.code(), 130);
        assert_eq!(Exit::Terminated.code(), 143);
    }
}
