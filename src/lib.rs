//! csp-sync: keeps a `HaloPSA` instance in step with a Microsoft CSP partner's customer estate.
//!
//! Read, plan, then act: readers fetch snapshots from Partner Center, Graph and Halo (`api`, `engine`), pure
//! planners turn them into a [`plan::Plan`] with a reason on every change (`plan`), renderers show it
//! (`render`) and the applier writes it to Halo in batches (`apply`).

pub mod api;
pub mod app;
pub mod apply;
pub mod auth;
pub mod billing;
pub mod bounded;
pub mod catalog;
pub mod cli;
pub mod client_evidence;
pub mod commands;
pub mod config;
pub mod context;
pub mod delta_guard;
pub mod engine;
pub mod error;
pub mod fuzz;
pub mod halo_memory;
pub mod halo_read;
pub mod halo_users_by_id;
pub mod http;
pub mod interrupt;
pub mod journal;
pub mod lock;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod modules;
pub mod permissions;
pub mod plan;
pub mod rate_window;
pub mod readback;
pub mod redact;
pub mod render;
pub mod secrets;
pub mod state;
pub mod tenant_filter;
pub mod ui;
