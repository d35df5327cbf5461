//! Fuzz entry points: each takes arbitrary bytes and feeds them to one parser of untrusted input, which
//! must answer with a value or an error, never a panic (and never a hang or unbounded memory).
//!
//! They run two ways:
//! - as ordinary tests (`tests/fuzz.rs`, part of `cargo test --workspace`): every file of
//!   `fuzz/corpus/<target>/` and a few thousand deterministic mutations of each, in seconds, on stable;
//! - under libFuzzer for long runs by hand: `cargo +nightly fuzz run <target>` in `fuzz/` (see the README).

use serde_json::Value;

use crate::api::graph::{
    BatchResponse, DelegatedAdminRelationship, GraphManagedDevice, GraphOrganization,
    GraphSubscribedSku, GraphUser, Page,
};
use crate::api::halo::{
    HaloClientRecord, HaloLicenceRecord, HaloSiteRecord, HaloUserRecord, normalize_ids,
    parse_records, records_of,
};
use crate::api::partner_center::{Collection, PcCustomer, PcSubscribedSku, PcSubscription};

/// One fuzz target: any bytes in, no panic (the `fuzz/corpus/<name>/` directories and the cargo-fuzz
/// binaries are named after them).
pub type Target = fn(&[u8]);

/// The fuzz targets by name.
pub const TARGETS: &[(&str, Target)] = &[
    ("config", config),
    ("plan", plan),
    ("token_response", token_response),
    ("error_body", error_body),
    ("halo_list", halo_list),
    ("graph_page", graph_page),
    ("partner_center_page", partner_center_page),
    ("redact", redact),
];

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// The config parser and the checks `load` adds.
pub fn config(data: &[u8]) {
    if let Ok(c) = crate::config::parse(std::path::Path::new("fuzz.toml"), &text(data)) {
        let _ = crate::config::placeholder_keys(&c);
    }
}

/// A plan file as `sync --plan` reads it: JSON, the schema check, the summary.
pub fn plan(data: &[u8]) {
    if let Ok(p) = serde_json::from_slice::<crate::plan::Plan>(data) {
        let _ = crate::plan::schema::problems(&p);
        let _ = crate::plan::Summary::of(&p.tenants);
        for (_, c) in p.changes() {
            let _ = c.payload(false);
        }
    }
}

/// A token endpoint's reply (Microsoft and Halo): success and error bodies.
pub fn token_response(data: &[u8]) {
    let body = text(data);
    let _ = crate::auth::parse_token_body("Microsoft", "t", &body);
    let e = crate::auth::AuthError::from_body("Halo", "t", 400, &body);
    let _ = e.to_string();
}

/// Any service's error body.
pub fn error_body(data: &[u8]) {
    let _ = crate::http::parse_error_body(&text(data));
    let _ = crate::http::parse_retry_after(&text(data));
}

/// A Halo list reply (`{record_count, key: [...]}` or a bare array) and its records.
pub fn halo_list(data: &[u8]) {
    let Ok(mut v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    normalize_ids(&mut v);
    for key in ["clients", "sites", "users", "licences"] {
        let Some(records) = records_of(v.clone(), key) else {
            continue;
        };
        match key {
            "clients" => {
                if let Ok(r) = parse_records::<HaloClientRecord>("Client", records) {
                    for x in &r {
                        let _ = x.to_model();
                    }
                }
            }
            "sites" => {
                if let Ok(r) = parse_records::<HaloSiteRecord>("Site", records) {
                    for x in &r {
                        let _ = x.to_model();
                    }
                }
            }
            "users" => {
                if let Ok(r) = parse_records::<HaloUserRecord>("Users", records) {
                    for x in &r {
                        let _ = x.to_model();
                    }
                }
            }
            _ => {
                if let Ok(r) = parse_records::<HaloLicenceRecord>("SoftwareLicence", records) {
                    for x in &r {
                        let _ = x.to_model();
                    }
                }
            }
        }
    }
}

/// A Graph page of each kind csp-sync reads, and a `$batch` reply.
pub fn graph_page(data: &[u8]) {
    if let Ok(p) = serde_json::from_slice::<Page<GraphUser>>(data) {
        for u in &p.value {
            let _ = u.to_model();
        }
    }
    if let Ok(p) = serde_json::from_slice::<Page<GraphSubscribedSku>>(data) {
        for s in &p.value {
            let _ = s.to_model();
        }
    }
    if let Ok(p) = serde_json::from_slice::<Page<GraphOrganization>>(data) {
        for o in &p.value {
            let _ = o.domains();
        }
    }
    let _ = serde_json::from_slice::<Page<GraphManagedDevice>>(data);
    let _ = serde_json::from_slice::<Page<DelegatedAdminRelationship>>(data);
    let _ = serde_json::from_slice::<BatchResponse>(data);
}

/// A Partner Center collection of each kind csp-sync reads (with a byte-order mark or not).
pub fn partner_center_page(data: &[u8]) {
    let body = text(data);
    let body = crate::http::strip_bom(&body);
    if let Ok(p) = serde_json::from_str::<Collection<PcCustomer>>(body) {
        for c in &p.items {
            let _ = c.to_model();
        }
    }
    if let Ok(p) = serde_json::from_str::<Collection<PcSubscription>>(body) {
        for s in &p.items {
            let _ = s.to_model();
        }
    }
    if let Ok(p) = serde_json::from_str::<Collection<PcSubscribedSku>>(body) {
        for s in &p.items {
            let _ = s.to_model();
        }
    }
}

/// The redaction layer over any text (what a server echoes).
pub fn redact(data: &[u8]) {
    let t = text(data);
    let _ = crate::redact::text(&t);
    let _ = crate::redact::url(&t);
}
