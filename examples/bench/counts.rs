//! A run's requests per API (from the emulator's log) next to the minimum the data needs.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use csp_sync_emulator::{Api, RequestRecord};

use crate::args::Reads;

/// Halo entities read with one report each under `bulk_read = "report"` (issue 10: contacts, sites and
/// licences); clients and assets keep their list reads.
const REPORTABLE: [&str; 3] = ["Site", "Users", "SoftwareLicence"];

/// Records per Halo list page (Halo caps `page_size` at 100) and per write batch.
const HALO_PAGE: usize = 100;
/// The largest `$top` Graph accepts on `/users`.
const GRAPH_USERS_PAGE: usize = 999;
/// Graph's default `managedDevices` page (the emulator's `graph_device_page_size`).
const GRAPH_DEVICES_PAGE: usize = 100;

/// The estate at the start of a run.
pub struct Estate {
    /// Halo records per entity (inactive ones included: a full read returns them).
    pub halo: BTreeMap<String, usize>,
    pub tenants: usize,
    pub customers: usize,
    pub max_users: usize,
    pub max_devices: usize,
    /// Partner Center's page size for customers.
    pub pc_page: usize,
    pub modules: Vec<&'static str>,
    /// No contact in Halo yet (users are read by `/users` pages, not a delta).
    pub first: bool,
}

impl Estate {
    /// The Halo entities the modules' plans need.
    fn needed(&self) -> Vec<&'static str> {
        let mut out = vec!["Client"];
        for m in &self.modules {
            let more: &[&'static str] = match *m {
                "users" => &["Site", "Users"],
                "licences" => &["SoftwareLicence"],
                // Devices are linked to contacts, on the client's site.
                "assets" => &["Site", "Users", "Asset"],
                _ => &[],
            };
            for e in more {
                if !out.contains(e) {
                    out.push(e);
                }
            }
        }
        out
    }

    fn records(&self, entity: &str) -> usize {
        self.halo.get(entity).copied().unwrap_or(0)
    }
}

/// One API's figures.
pub struct Row {
    pub api: &'static str,
    pub requests: usize,
    pub minimum: usize,
    pub too_many: usize,
    pub detail: String,
}

/// Halo figures the wall-time bound needs.
pub struct HaloFigures {
    /// Requests counted by Halo's rate window (every `/api/` call that was not refused).
    pub windowed: usize,
    /// Dependent write rounds: contacts before the assets that link to them.
    pub write_rounds: usize,
    /// Read rounds: a first page (with `record_count`), then the other pages together.
    pub read_rounds: usize,
    /// Graph pages after the first, per tenant, on the critical path.
    pub graph_extra_pages: usize,
    pub pc_pages: usize,
}

fn pages(n: usize, size: usize) -> usize {
    n.div_ceil(size).max(1)
}

/// The entity of a Halo path (`/api/Users/12` -> `Users`), spelled as the emulator stores it.
fn entity(path: &str) -> String {
    let seg = path
        .trim_start_matches("/api/")
        .split('/')
        .next()
        .unwrap_or("");
    for e in csp_sync_emulator::HALO_ENTITIES.iter().map(|(e, _)| *e) {
        if e.eq_ignore_ascii_case(seg) {
            return e.to_string();
        }
    }
    seg.to_string()
}

fn records_in(r: &RequestRecord) -> usize {
    match &r.body {
        Some(serde_json::Value::Array(a)) => a.len(),
        Some(serde_json::Value::Object(_)) => 1,
        _ => 0,
    }
}

fn join<K: std::fmt::Display, V: std::fmt::Display>(m: &BTreeMap<K, V>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every API's row, and the Halo figures of the bound.
///
/// `log` is the emulator's log with Graph `$batch` items after their POST ([`RequestRecord::batch`]): the
/// requests counted are the HTTP ones, the items are shown in the detail.
pub fn rows(log: &[RequestRecord], estate: &Estate, reads: Reads) -> (Vec<Row>, HaloFigures) {
    let of = |api: Api| {
        log.iter()
            .filter(move |r| r.api == api && r.batch.is_none())
    };
    // A 429 on a `$batch` item is one too (Graph throttles items one by one).
    let too_many = |api: Api| {
        log.iter()
            .filter(|r| r.api == api && r.status == 429)
            .count()
    };

    // Halo.
    let mut tokens = 0;
    let mut lists: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_id: BTreeMap<String, usize> = BTreeMap::new();
    let mut reports = 0;
    let mut posts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut other = 0;
    for r in of(Api::Halo) {
        let id_read = r.path.trim_start_matches("/api/").contains('/');
        if r.path.eq_ignore_ascii_case("/auth/token") {
            tokens += 1;
        } else if r.method == "POST" && entity(&r.path).eq_ignore_ascii_case("Report") {
            reports += 1;
        } else if r.method == "GET" && r.path.starts_with("/api/") && !id_read {
            *lists.entry(entity(&r.path)).or_default() += 1;
        } else if r.method == "GET" && r.path.starts_with("/api/") {
            *by_id.entry(entity(&r.path)).or_default() += 1;
        } else if r.method == "POST" && r.path.starts_with("/api/") && r.status < 300 {
            let e = posts.entry(entity(&r.path)).or_default();
            e.0 += 1;
            e.1 += records_in(r);
        } else {
            other += 1;
        }
    }
    let needed = estate.needed();
    let list_pages = |e: &str| pages(estate.records(e), HALO_PAGE);
    let min_reads: usize = needed
        .iter()
        .map(|e| match reads {
            Reads::Report if REPORTABLE.contains(e) => 1,
            _ => list_pages(e),
        })
        .sum();
    let written: usize = posts.values().map(|(_, n)| n).sum();
    let min_writes: usize = posts.values().map(|(_, n)| n.div_ceil(HALO_PAGE)).sum();
    let halo_requests = of(Api::Halo).count();
    let mut detail = format!(
        "token {tokens}; reads: {}{} (min {min_reads}: {}); writes {} for {written} records (min {min_writes})",
        if reports > 0 {
            format!("reports {reports}, ")
        } else {
            String::new()
        },
        join(&lists),
        needed
            .iter()
            .map(|e| match reads {
                Reads::Report if REPORTABLE.contains(e) => format!("{e} 1 report"),
                _ => format!("{e} {}", list_pages(e)),
            })
            .collect::<Vec<_>>()
            .join(", "),
        posts.values().map(|(n, _)| n).sum::<usize>(),
    );
    if !posts.is_empty() {
        let _ = write!(
            detail,
            " [{}]",
            posts
                .iter()
                .map(|(e, (n, k))| format!("{e} {n} for {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !by_id.is_empty() {
        let _ = write!(detail, "; reads by id: {}", join(&by_id));
    }
    if other > 0 {
        let _ = write!(detail, "; other {other}");
    }
    let halo = Row {
        api: "Halo",
        requests: halo_requests,
        minimum: 1 + min_reads + min_writes,
        too_many: too_many(Api::Halo),
        detail,
    };
    let windowed = of(Api::Halo)
        .filter(|r| r.path.starts_with("/api/") && r.status != 429)
        .count();
    let write_rounds = usize::from(!posts.is_empty())
        + usize::from(posts.contains_key("Users") && posts.contains_key("Asset"));
    let read_rounds = 1 + usize::from(
        needed
            .iter()
            .any(|e| !(reads == Reads::Report && REPORTABLE.contains(e)) && list_pages(e) > 1),
    );

    // Graph.
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    let mut items: BTreeMap<&str, usize> = BTreeMap::new();
    for r in log.iter().filter(|r| r.api == Api::Graph) {
        let p = r.path.as_str();
        let kind = if p.ends_with("/$batch") {
            "$batch"
        } else if p.ends_with("/users/delta")
            && r.query.to_ascii_lowercase().contains("deltatoken=latest")
        {
            "users/delta latest"
        } else if p.ends_with("/users/delta") {
            "users/delta"
        } else if p.ends_with("/users") {
            "users"
        } else if p.ends_with("/subscribedSkus") {
            "subscribedSkus"
        } else if p.ends_with("/directory/subscriptions") {
            "directory/subscriptions"
        } else if p.ends_with("/deviceManagement/managedDevices") {
            "managedDevices"
        } else {
            "other"
        };
        let into = if r.batch.is_some() {
            &mut items
        } else {
            &mut kinds
        };
        *into.entry(kind).or_default() += 1;
    }
    let with_assets = estate.modules.contains(&"assets");
    let user_pages = if estate.first {
        pages(estate.max_users, GRAPH_USERS_PAGE)
    } else {
        1
    };
    let device_pages = if with_assets {
        pages(estate.max_devices, GRAPH_DEVICES_PAGE)
    } else {
        1
    };
    // The first page of each read folds into one $batch; further pages follow their nextLink.
    let graph_per_tenant = user_pages + device_pages - 1;
    let mut detail = join(&kinds);
    if !items.is_empty() {
        let _ = write!(
            detail,
            " (in the batches: {}, {} items)",
            join(&items),
            items.values().sum::<usize>()
        );
    }
    let graph = Row {
        api: "Graph",
        requests: of(Api::Graph).count(),
        minimum: estate.tenants * graph_per_tenant,
        too_many: too_many(Api::Graph),
        detail: format!(
            "{detail}; min 1 $batch per tenant{}",
            if graph_per_tenant > 1 { " + pages" } else { "" }
        ),
    };

    // Partner Center.
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for r in of(Api::PartnerCenter) {
        let p = r.path.to_ascii_lowercase();
        let kind = if p.ends_with("/customers") {
            "customers"
        } else if p.ends_with("/subscriptions") {
            "subscriptions"
        } else if p.ends_with("/subscribedskus") {
            "subscribedskus"
        } else {
            "other"
        };
        *kinds.entry(kind).or_default() += 1;
    }
    let pc_pages = pages(estate.customers, estate.pc_page);
    let pc = Row {
        api: "Partner Center",
        requests: of(Api::PartnerCenter).count(),
        minimum: pc_pages + estate.tenants,
        too_many: too_many(Api::PartnerCenter),
        detail: format!(
            "{}; min {pc_pages} customers page(s) + 1 subscriptions per tenant",
            join(&kinds)
        ),
    };

    // Identity platform.
    let mut grants: BTreeMap<String, usize> = BTreeMap::new();
    for r in of(Api::Login) {
        let grant = r
            .body
            .as_ref()
            .and_then(|b| b.get("grant_type"))
            .and_then(|g| g.as_str())
            .unwrap_or("other")
            .to_string();
        *grants.entry(grant).or_default() += 1;
    }
    let login = Row {
        api: "identity tokens",
        requests: of(Api::Login).count(),
        minimum: 1 + estate.tenants,
        too_many: too_many(Api::Login),
        detail: format!(
            "{}; min 1 Partner Center + 1 Graph per tenant",
            join(&grants)
        ),
    };
    let figures = HaloFigures {
        windowed,
        write_rounds,
        read_rounds,
        graph_extra_pages: graph_per_tenant - 1,
        pc_pages,
    };
    (vec![halo, graph, pc, login], figures)
}
