//! One file per subcommand.

pub mod auth_set;
pub mod completions;
pub mod init;
