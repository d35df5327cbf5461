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
pub mod commands;
pub mod config;
pub mod context;
pub mod engine;
pub mod error;
pub mod http;
pub mod logging;
pub mod model;
pub mod modules;
pub mod plan;
pub mod redact;
pub mod render;
pub mod secrets;
pub mod state;
pub mod ui;
