//! One file per subcommand.

pub mod auth_check;
pub mod auth_login;
pub mod auth_set;
pub mod completions;
pub mod diff;
pub mod doctor;
pub mod init;
pub mod plan_file;
pub mod run;
pub mod runs;
pub mod sync;
pub mod tenants_consent;
pub mod tenants_health;
pub mod tenants_list;
pub mod tenants_map;
pub mod tenants_map_interactive;
pub mod tenants_sync;
pub mod undo;
