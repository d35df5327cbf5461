//! A local emulator of the Microsoft identity platform, Partner Center, Microsoft Graph and HaloPSA, for
//! csp-sync's tests and demo. Built from the reference documents, independently of csp-sync's client types:
//! all data is `serde_json::Value` shaped like the documented samples.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use csp_sync_emulator::{Emulator, Scenario};
//! let emu = Emulator::start(Scenario::small()).await?;
//! println!("{}", emu.graph_url());
//! # Ok(()) }
//! ```
//!
//! The servers run on a dedicated thread with its own Tokio runtime, so they keep answering while the
//! caller blocks (e.g. on a child process); dropping the [`Emulator`] stops them and frees the ports.

mod app_permissions;
mod billing;
mod churn;
mod echo;
mod graph;
mod halo;
mod halo_list_fields;
mod halo_lists;
mod halo_report;
mod halo_report_tables;
mod identity;
mod partner_center;
mod scenario;
mod scenarios;
mod server;
mod util;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use app_permissions::{
    APP_ADMIN_ROLES, CSP_SYNC_APP_ROLES, GRAPH_APP_ID, GRAPH_APP_ROLES, graph_role_id,
};
pub use billing::{
    Billing, ExportData, ExportSettings, Generated, build_blobs, generated_line, invoice,
    usage_line,
};
pub use churn::Churn;
pub use scenario::{
    BomMode, Customer, GraphApp, HALO_ENTITIES, HaloApp, PartnerCenterApp, Scenario, Settings,
    State,
};
use server::{Runtime, Shared, Urls};

/// Which of the four servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Api {
    Login,
    PartnerCenter,
    Graph,
    Halo,
    /// The Azure storage host of billing export blobs.
    Blob,
}

/// One request received, with the status it got (`0` when the connection was dropped).
#[derive(Clone, Debug, PartialEq)]
pub struct RequestRecord {
    pub api: Api,
    pub method: String,
    /// Percent-decoded path, e.g. `/v1.0/users/delta`.
    pub path: String,
    /// Raw query string (not decoded), without `?`.
    pub query: String,
    pub status: u16,
    /// JSON body, or the form fields (secrets masked as `***`), or the raw text.
    pub body: Option<serde_json::Value>,
    /// `Some(item id)` for a request carried inside a Graph `$batch` (logged right after the `POST
    /// /v1.0/$batch` that carried it): not an HTTP request of its own. `None` for an HTTP request.
    pub batch: Option<String>,
}

/// A fault queued with [`Emulator::inject`]: the first `times` requests to `api` whose method matches
/// (`None` = any) and whose `path?query` contains `path_contains` get `kind` instead of normal handling.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    pub api: Api,
    pub method: Option<String>,
    pub path_contains: String,
    pub kind: FaultKind,
    pub times: usize,
}

impl Fault {
    /// A fault on any method, once.
    pub fn new(api: Api, path_contains: &str, kind: FaultKind) -> Fault {
        Fault {
            api,
            method: None,
            path_contains: path_contains.to_string(),
            kind,
            times: 1,
        }
    }

    #[must_use]
    pub fn method(mut self, method: &str) -> Fault {
        self.method = Some(method.to_string());
        self
    }

    #[must_use]
    pub fn times(mut self, times: usize) -> Fault {
        self.times = times;
        self
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum FaultKind {
    /// 429 with the API's own body; `Retry-After` set verbatim when given.
    TooManyRequests { retry_after: Option<String> },
    /// That status with the API's error body (5xx carry no `Retry-After`).
    Status(u16),
    /// That status (a 503 or 504) with the API's error body and `Retry-After` set verbatim: Graph's
    /// 503/504 may carry one (microsoft-apis.md 3.9, GRAPH-DOCS `errors.md`). A status fault like
    /// [`FaultKind::Status`]: inside a `$batch` it hits the item, the header in the item's `headers`.
    StatusWithRetryAfter { status: u16, retry_after: String },
    /// The connection is closed without a response; the request is not applied.
    DropBeforeResponse,
    /// The request is applied to the state, then the connection is closed without a response.
    DropAfterWrite,
    /// The request is handled normally after this delay.
    Latency(Duration),
    /// The request is handled at once (a write lands, and is logged), and its reply sent after this delay;
    /// a client that gives up or dies meanwhile never learns the outcome.
    SlowReply(Duration),
    /// The request is handled normally (a write lands), but its reply's body is replaced by this text with
    /// `Content-Type: text/html`, as a proxy or gateway in front of the service may answer. A network-level
    /// fault, not behaviour of the services' own: no reference document describes it.
    ReplyBody(String),
    /// The request is handled normally (a write lands); the reply promises its whole body
    /// (`Content-Length`) but the connection is closed after the first half of it.
    TruncatedReply,
}

/// The running servers. Dropping it shuts them down.
pub struct Emulator {
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Emulator {
    /// Starts the five servers on `127.0.0.1`, each on a free port.
    pub async fn start(scenario: Scenario) -> std::io::Result<Emulator> {
        Self::start_on(scenario, "127.0.0.1", None)
    }

    /// Starts the servers on `host`, on `base_port..base_port+4` (login, Partner Center, Graph, Halo, blob storage) or on
    /// free ports when `None`.
    pub fn start_on(
        scenario: Scenario,
        host: &str,
        base_port: Option<u16>,
    ) -> std::io::Result<Emulator> {
        let mut listeners = Vec::new();
        for i in 0..5u16 {
            let port = base_port.map_or(0, |p| p + i);
            let l = std::net::TcpListener::bind((host, port)).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("emulator cannot listen on {host}:{port}: {e}"),
                )
            })?;
            l.set_nonblocking(true)?;
            listeners.push(l);
        }
        let url = |l: &std::net::TcpListener| -> std::io::Result<String> {
            Ok(format!("http://{}", l.local_addr()?))
        };
        let urls = Urls {
            login: url(&listeners[0])?,
            partner_center: url(&listeners[1])?,
            graph: url(&listeners[2])?,
            halo: url(&listeners[3])?,
            blob: url(&listeners[4])?,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                scenario,
                rt: Runtime::default(),
            }),
            urls,
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let shared2 = shared.clone();
        let thread = std::thread::Builder::new()
            .name("csp-sync-emulator".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
                    let apis = [
                        Api::Login,
                        Api::PartnerCenter,
                        Api::Graph,
                        Api::Halo,
                        Api::Blob,
                    ];
                    for (l, api) in listeners.into_iter().zip(apis) {
                        match tokio::net::TcpListener::from_std(l) {
                            Ok(l) => {
                                tokio::spawn(server::accept_loop(
                                    l,
                                    api,
                                    shared2.clone(),
                                    stop_rx.clone(),
                                ));
                            }
                            Err(e) => eprintln!("emulator: cannot serve {api:?}: {e}"),
                        }
                    }
                    let _ = rx.await;
                    let _ = stop_tx.send(true);
                });
                // Dropping the runtime here cancels every task and closes every socket.
                drop(runtime);
            })?;
        Ok(Emulator {
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// Identity platform root: tokens at `/{tenant}/oauth2/v2.0/token` (and v1 `/{tenant}/oauth2/token`).
    pub fn login_url(&self) -> String {
        self.shared.urls.login.clone()
    }

    /// Partner Center root; the API is under `/v1/...`.
    pub fn partner_center_url(&self) -> String {
        self.shared.urls.partner_center.clone()
    }

    /// Graph root; the API is under `/v1.0/...`.
    pub fn graph_url(&self) -> String {
        self.shared.urls.graph.clone()
    }

    /// Halo root; the API is under `/api/...`, the token at `/auth/token`.
    pub fn halo_url(&self) -> String {
        self.shared.urls.halo.clone()
    }

    /// The storage host of billing export blobs (the manifests' `rootDirectory` points here).
    pub fn blob_url(&self) -> String {
        self.shared.urls.blob.clone()
    }

    /// Billing exports started so far (invoice ids; `current` for the unbilled estimate), in order.
    pub fn exports_started(&self) -> Vec<String> {
        billing::started(&self.shared.lock())
    }

    /// Every billing export still running finishes now, as Microsoft's do between two runs: its manifest
    /// is produced and its SAS issued now (valid for `export.sas_lifetime_secs`); the next poll says
    /// `succeeded`.
    pub fn finish_exports(&self) {
        let mut st = self.shared.lock();
        billing::finish_running(&mut st, &self.shared.urls);
    }

    /// The gzip'd blobs the export of `key` (an invoice id, or `current`) will serve, built now and kept
    /// (benchmarks compare them with `gzip -dc`). Later changes to that export's data are not picked up.
    pub fn export_blobs(&self, key: &str) -> Vec<Vec<u8>> {
        billing::prebuild(&mut self.shared.lock(), key)
    }

    /// A copy of the current data (including every write received).
    pub fn scenario(&self) -> Scenario {
        self.shared.lock().scenario.clone()
    }

    /// Runs `f` on the live state (data between runs, settings, token memory).
    pub fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.shared.lock())
    }

    /// Queues a fault (faults are matched in the order queued).
    pub fn inject(&self, fault: Fault) {
        self.shared.lock().rt.faults.push(fault);
    }

    /// Every request received so far, in order, with the items of each Graph `$batch` right after it
    /// (`batch` set; see [`RequestRecord::batch`]).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().rt.log.clone()
    }

    /// The HTTP requests received so far: [`Emulator::requests`] without the `$batch` items.
    pub fn http_requests(&self) -> Vec<RequestRecord> {
        let mut all = self.requests();
        all.retain(|r| r.batch.is_none());
        all
    }

    /// How many requests to `api` with this method whose `path?query` contains `path_contains` have
    /// arrived so far, answered or not (a request held by [`FaultKind::Latency`] counts at once).
    pub fn arrived(&self, api: Api, method: &str, path_contains: &str) -> usize {
        self.shared
            .lock()
            .rt
            .arrivals
            .iter()
            .filter(|(a, m, p)| {
                *a == api && m.eq_ignore_ascii_case(method) && p.contains(path_contains)
            })
            .count()
    }

    /// How many injected fault firings are still queued (a fault with `times` N counts N until it fires).
    pub fn pending_faults(&self) -> usize {
        self.shared.lock().rt.faults.iter().map(|f| f.times).sum()
    }

    /// Makes every error reply echo the request it answers: request line, headers (`Authorization`
    /// included) and body (a token request's secrets included), as a misconfigured gateway would.
    pub fn echo_requests(&self, on: bool) {
        self.shared.lock().rt.echo_requests = on;
    }

    /// Every secret a client could leak: the scenario's client secrets and refresh tokens, every access
    /// token issued so far and every refresh token issued by rotation.
    pub fn issued_secrets(&self) -> Vec<String> {
        let st = self.shared.lock();
        let sc = &st.scenario;
        let mut out = vec![
            sc.partner_center_app.client_secret.clone(),
            sc.partner_center_app.refresh_token.clone(),
            sc.graph_app.client_secret.clone(),
            sc.graph_app.refresh_token.clone(),
            sc.halo_app.client_secret.clone(),
        ];
        out.extend(st.rt.tokens.keys().cloned());
        out.extend(st.rt.refresh_tokens.keys().cloned());
        out.retain(|s| !s.is_empty());
        out
    }

    /// When each Halo request still inside the rate window ([`Scenario::set_halo_rate_limit`]) was
    /// counted, oldest first (empty without a limit). A benchmark's lower bound on wall time starts from it.
    pub fn halo_window(&self) -> Vec<std::time::Instant> {
        self.shared.lock().rt.halo_window.iter().copied().collect()
    }

    pub fn clear_requests(&self) {
        self.shared.lock().rt.log.clear();
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The standalone emulator: `--port N` (login N, Partner Center N+1, Graph N+2, Halo N+3, blob storage N+4; default free
/// ports), `--scenario FILE|small|large` (default small), `--host H` (default 127.0.0.1), `--now RFC3339`
/// (the instant the built-in scenarios are dated from; default the real time). Prints the URLs
/// and the credentials it accepts, then serves until the process is stopped.
pub async fn run_standalone(args: Vec<String>) -> Result<(), String> {
    let Some(emu) = start_standalone(args)? else {
        return Ok(());
    };
    println!("serving; stop with Ctrl-C");
    std::future::pending::<()>().await;
    drop(emu);
    Ok(())
}

/// Parses the standalone arguments (see [`run_standalone`]), starts the emulator and prints its URLs and
/// credentials; `None` after `--help`. The caller serves (keeps the returned emulator alive).
pub fn start_standalone(args: Vec<String>) -> Result<Option<Emulator>, String> {
    const USAGE: &str = "usage: csp-sync-emulator [--port N] [--scenario FILE|small|large] [--host 127.0.0.1] \
         [--now RFC3339]";
    let mut port = None;
    let mut scenario_arg = "small".to_string();
    let mut host = "127.0.0.1".to_string();
    let mut now = jiff::Timestamp::now();
    let mut it = args.into_iter().skip_while(|a| !a.starts_with("--"));
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| format!("{name} needs a value; {USAGE}"))
        };
        match a.as_str() {
            "--port" => {
                let v = value("--port")?;
                port = Some(
                    v.parse::<u16>()
                        .ok()
                        .filter(|p| *p < u16::MAX - 4)
                        .ok_or_else(|| {
                            format!("--port {v}: not a port number below 65531; {USAGE}")
                        })?,
                );
            }
            "--scenario" => scenario_arg = value("--scenario")?,
            "--host" => host = value("--host")?,
            "--now" => {
                let v = value("--now")?;
                now = v.parse().map_err(|_| {
                    format!(
                        "--now {v}: not an RFC 3339 time such as 2026-11-27T09:00:00Z; \
                         give csp-sync the same one as CSP_SYNC_NOW"
                    )
                })?;
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                return Ok(None);
            }
            other => return Err(format!("unknown argument {other}; {USAGE}")),
        }
    }
    let scenario = match scenario_arg.as_str() {
        "small" => Scenario::small_at(now),
        "large" => Scenario::large_at(now, 200, 100, 50),
        file => Scenario::from_file(std::path::Path::new(file))?,
    };
    let creds = scenario.clone();
    let emu = Emulator::start_on(scenario, &host, port).map_err(|e| e.to_string())?;
    println!(
        "csp-sync emulator ({} customers), dated {now}: run csp-sync with CSP_SYNC_NOW={now}",
        creds.customers.len()
    );
    println!("  login          {}", emu.login_url());
    println!("  partner center {}", emu.partner_center_url());
    println!("  graph          {}", emu.graph_url());
    println!(
        "  halo           {}  (token at {}/auth/token)",
        emu.halo_url(),
        emu.halo_url()
    );
    println!("  blob storage   {}", emu.blob_url());
    println!("credentials accepted (emulator-only test values):");
    println!("  partner tenant id        {}", creds.partner_tenant_id);
    println!(
        "  partner center client id {}",
        creds.partner_center_app.client_id
    );
    println!(
        "  partner center secret    {}",
        creds.partner_center_app.client_secret
    );
    println!(
        "  partner refresh token    {}",
        creds.partner_center_app.refresh_token
    );
    println!("  graph client id          {}", creds.graph_app.client_id);
    println!(
        "  graph client secret      {}",
        creds.graph_app.client_secret
    );
    println!("  halo client id           {}", creds.halo_app.client_id);
    println!(
        "  halo client secret       {}",
        creds.halo_app.client_secret
    );
    if let Some(t) = &creds.halo_app.tenant {
        println!("  halo tenant              {t}");
    }
    Ok(Some(emu))
}
