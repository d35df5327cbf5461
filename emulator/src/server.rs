//! HTTP plumbing: one listener per API, connections served with hyper so that a fault can close the TCP
//! connection without writing a response, the request log, and fault matching.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use hyper::http::{HeaderMap, HeaderValue, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::sync::{Notify, watch};

use crate::scenario::State;
use crate::util;
use crate::{Api, Fault, FaultKind, RequestRecord};

/// Base URLs of the four servers (no trailing slash).
#[derive(Clone, Debug)]
pub(crate) struct Urls {
    pub login: String,
    pub partner_center: String,
    pub graph: String,
    pub halo: String,
    pub blob: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Audience {
    Graph,
    PartnerCenter,
    Halo,
}

/// What the server remembers about an access token it issued.
#[derive(Clone, Debug)]
pub(crate) struct TokenInfo {
    pub tenant: String,
    pub client_id: String,
    pub audience: Audience,
    /// Issued by the refresh-token grant (app+user) rather than client credentials (app-only).
    pub delegated: bool,
    pub expires_at: i64,
}

/// A pending paged result (Graph `$skiptoken`).
#[derive(Clone, Debug)]
pub(crate) struct PendingPages {
    pub tenant: String,
    pub items: Vec<Value>,
    pub offset: usize,
    pub page_size: usize,
    /// For delta sessions: the user set to remember under the delta token issued on the last page.
    pub delta_snapshot: Option<DeltaToken>,
    pub context: String,
    pub next_path: String,
}

/// The user set of a tenant at the time a delta token was issued.
#[derive(Clone, Debug)]
pub(crate) struct DeltaToken {
    pub tenant: String,
    pub select: Option<Vec<String>>,
    pub users: HashMap<String, Value>,
}

/// Server-side memory that is not part of the scenario.
#[derive(Debug, Default)]
pub(crate) struct Runtime {
    pub tokens: HashMap<String, TokenInfo>,
    /// Refresh tokens issued by rotation -> client id they are bound to.
    pub refresh_tokens: HashMap<String, String>,
    pub revoked_refresh: bool,
    pub faults: Vec<Fault>,
    pub log: Vec<RequestRecord>,
    /// `$batch` items run by the request being handled (id, the item's request, its status), logged after it.
    pub batch_items: Vec<(String, Req, u16)>,
    /// (api, method, `path?query`) of every request as it arrives.
    pub arrivals: Vec<(Api, String, String)>,
    pub pages: HashMap<String, PendingPages>,
    pub delta_sessions: HashMap<String, PendingPages>,
    pub delta_tokens: HashMap<String, DeltaToken>,
    pub pc_continuations: HashMap<String, usize>,
    pub pc_responses: u64,
    pub halo_window: VecDeque<std::time::Instant>,
    /// Device-code flow: device code -> (client id, polls so far).
    pub device_codes: HashMap<String, (String, u32)>,
    pub billing: crate::billing::BillingRuntime,
    /// Error replies echo the request, headers and body included (see `echo.rs`).
    pub echo_requests: bool,
}

/// A decoded request.
#[derive(Debug, Clone)]
pub(crate) struct Req {
    pub method: String,
    pub path: String,
    pub query: String,
    pub params: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A request with no headers or body (unit tests of handlers).
    #[cfg(test)]
    pub fn for_test(method: &str, path: &str, query: &str) -> Req {
        Req {
            method: method.into(),
            path: path.into(),
            query: query.into(),
            params: util::parse_pairs(query),
            headers: HeaderMap::new(),
            body: Vec::new(),
        }
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        util::param(&self.params, name)
    }

    pub fn bearer(&self) -> Option<&str> {
        let h = self.header("authorization")?;
        let (scheme, token) = h.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }

    pub fn form(&self) -> Vec<(String, String)> {
        util::parse_pairs(&String::from_utf8_lossy(&self.body))
    }

    pub fn json(&self) -> Result<Value, String> {
        let text = String::from_utf8_lossy(&self.body);
        serde_json::from_str(text.trim_start_matches('\u{feff}'))
            .map_err(|e| format!("the request body is not valid JSON: {e}"))
    }

    /// The body as it goes into the request log: JSON as is, forms as an object with secrets masked.
    fn logged_body(&self) -> Option<Value> {
        if self.body.is_empty() {
            return None;
        }
        let is_form = self
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
        if is_form {
            let mut obj = serde_json::Map::new();
            for (k, v) in self.form() {
                let masked = matches!(
                    k.as_str(),
                    "client_secret"
                        | "refresh_token"
                        | "client_assertion"
                        | "password"
                        | "device_code"
                );
                obj.insert(k, Value::String(if masked { "***".to_string() } else { v }));
            }
            return Some(Value::Object(obj));
        }
        self.json().ok().or_else(|| {
            Some(Value::String(
                String::from_utf8_lossy(&self.body).into_owned(),
            ))
        })
    }
}

/// A response to write.
#[derive(Debug, Clone)]
pub(crate) struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(status: u16, v: &Value) -> Resp {
        Resp {
            status,
            headers: vec![(
                "content-type".into(),
                "application/json; charset=utf-8".into(),
            )],
            body: serde_json::to_vec(v).unwrap_or_default(),
        }
    }

    pub fn text(status: u16, t: &str) -> Resp {
        Resp {
            status,
            headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
            body: t.as_bytes().to_vec(),
        }
    }

    pub fn with_header(mut self, k: &str, v: &str) -> Resp {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }

    pub fn body_json(&self) -> Value {
        let text = String::from_utf8_lossy(&self.body);
        serde_json::from_str(text.trim_start_matches('\u{feff}')).unwrap_or(Value::Null)
    }
}

pub(crate) struct Shared {
    pub state: Mutex<State>,
    pub urls: Urls,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(crate) fn take_fault(st: &mut State, api: Api, req: &Req) -> Option<FaultKind> {
    let full = format!("{}?{}", req.path, req.query);
    let pos = st.rt.faults.iter().position(|f| {
        f.api == api
            && f.times > 0
            && f.method
                .as_ref()
                .is_none_or(|m| m.eq_ignore_ascii_case(&req.method))
            && full.contains(&f.path_contains)
    })?;
    let f = &mut st.rt.faults[pos];
    f.times -= 1;
    let kind = f.kind.clone();
    if f.times == 0 {
        st.rt.faults.remove(pos);
    }
    Some(kind)
}

fn dispatch(st: &mut State, urls: &Urls, api: Api, req: &Req) -> Resp {
    match api {
        Api::Login => crate::identity::handle(st, req),
        Api::PartnerCenter => crate::partner_center::handle(st, req),
        Api::Graph => crate::graph::handle(st, urls, req),
        Api::Halo => crate::halo::handle(st, urls, req),
        Api::Blob => crate::billing::blob(st, req),
    }
}

fn fault_response(api: Api, kind: &FaultKind) -> Resp {
    if let FaultKind::StatusWithRetryAfter {
        status,
        retry_after,
    } = kind
    {
        return fault_response(api, &FaultKind::Status(*status))
            .with_header("retry-after", retry_after);
    }
    match api {
        Api::Login => crate::identity::fault_response(kind),
        Api::PartnerCenter => crate::partner_center::fault_response(kind),
        Api::Graph => crate::graph::fault_response(kind),
        Api::Halo => crate::halo::fault_response(kind),
        Api::Blob => crate::graph::fault_response(kind),
    }
}

fn log(st: &mut State, api: Api, req: &Req, status: u16) {
    st.rt.log.push(RequestRecord {
        api,
        method: req.method.clone(),
        path: req.path.clone(),
        query: req.query.clone(),
        status,
        body: req.logged_body(),
        batch: None,
    });
    for (id, item, status) in std::mem::take(&mut st.rt.batch_items) {
        st.rt.log.push(RequestRecord {
            api,
            method: item.method.clone(),
            path: item.path.clone(),
            query: item.query.clone(),
            status,
            body: item.logged_body(),
            batch: Some(id),
        });
    }
}

/// Whether a fault only the HTTP layer can produce (a dropped connection, a delay, a body replaced or
/// cut short): such a fault queued for a path reached through `$batch` hits the batch's own request.
fn network_level(kind: &FaultKind) -> bool {
    !matches!(
        kind,
        FaultKind::TooManyRequests { .. }
            | FaultKind::Status(_)
            | FaultKind::StatusWithRetryAfter { .. }
    )
}

/// A network-level fault queued for the path of one of a Graph `$batch`'s items (see [`network_level`]):
/// taken here and applied to the batch's HTTP request. Status faults stay queued for the item itself.
fn batch_item_fault(st: &mut State, api: Api, req: &Req) -> Option<FaultKind> {
    if api != Api::Graph || req.method != "POST" || !req.path.ends_with("/$batch") {
        return None;
    }
    let body = req.json().ok()?;
    for item in body.get("requests")?.as_array()? {
        let inner = crate::graph::batch_item_req(req, item);
        let full = format!("{}?{}", inner.path, inner.query);
        let pos = st.rt.faults.iter().position(|f| {
            f.api == api
                && f.times > 0
                && network_level(&f.kind)
                && f.method
                    .as_ref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(&inner.method))
                && full.contains(&f.path_contains)
        });
        if let Some(pos) = pos {
            let f = &mut st.rt.faults[pos];
            f.times -= 1;
            let kind = f.kind.clone();
            if f.times == 0 {
                st.rt.faults.remove(pos);
            }
            return Some(kind);
        }
    }
    None
}

type Body = axum::body::Body;

async fn handle_http(
    shared: Arc<Shared>,
    api: Api,
    kill: Arc<Notify>,
    request: hyper::Request<hyper::body::Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (parts, incoming) = request.into_parts();
    let body = axum::body::to_bytes(Body::new(incoming), 64 * 1024 * 1024)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    let query = parts.uri.query().unwrap_or("").to_string();
    let req = Req {
        method: parts.method.as_str().to_string(),
        path: util::percent_decode(parts.uri.path(), false),
        params: util::parse_pairs(&query),
        query,
        headers: parts.headers,
        body,
    };

    let fault = {
        let mut st = shared.lock();
        st.rt.arrivals.push((
            api,
            req.method.clone(),
            format!("{}?{}", req.path, req.query),
        ));
        take_fault(&mut st, api, &req).or_else(|| batch_item_fault(&mut st, api, &req))
    };
    let resp = match fault {
        Some(FaultKind::Latency(d)) => {
            tokio::time::sleep(d).await;
            let mut st = shared.lock();
            let r = dispatch(&mut st, &shared.urls, api, &req);
            log(&mut st, api, &req, r.status);
            r
        }
        Some(FaultKind::SlowReply(d)) => {
            let r = {
                let mut st = shared.lock();
                let r = dispatch(&mut st, &shared.urls, api, &req);
                log(&mut st, api, &req, r.status);
                r
            };
            tokio::time::sleep(d).await;
            r
        }
        Some(FaultKind::DropBeforeResponse) => {
            log(&mut shared.lock(), api, &req, 0);
            kill.notify_one();
            return std::future::pending().await;
        }
        Some(FaultKind::DropAfterWrite) => {
            {
                let mut st = shared.lock();
                let _applied = dispatch(&mut st, &shared.urls, api, &req);
                log(&mut st, api, &req, 0);
            }
            kill.notify_one();
            return std::future::pending().await;
        }
        Some(FaultKind::ReplyBody(text)) => {
            let mut st = shared.lock();
            let r = dispatch(&mut st, &shared.urls, api, &req);
            log(&mut st, api, &req, r.status);
            let mut out = Resp::text(r.status, &text);
            out.headers
                .retain(|(k, _)| !k.eq_ignore_ascii_case("content-type"));
            out.with_header("content-type", "text/html; charset=utf-8")
        }
        Some(FaultKind::TruncatedReply) => {
            let r = {
                let mut st = shared.lock();
                let r = dispatch(&mut st, &shared.urls, api, &req);
                log(&mut st, api, &req, r.status);
                r
            };
            let full = r.body.len();
            let mut out = to_hyper(Resp {
                body: Vec::new(),
                ..r
            });
            let body = HalfThenClose {
                half: Some(r.body[..full / 2].to_vec()),
                kill,
            };
            *out.body_mut() = Body::new(body);
            out.headers_mut()
                .insert(hyper::http::header::CONTENT_LENGTH, HeaderValue::from(full));
            return Ok(out);
        }
        Some(kind) => {
            let r = fault_response(api, &kind);
            log(&mut shared.lock(), api, &req, r.status);
            r
        }
        None => {
            let mut st = shared.lock();
            let r = dispatch(&mut st, &shared.urls, api, &req);
            log(&mut st, api, &req, r.status);
            r
        }
    };
    let resp = if shared.lock().rt.echo_requests {
        crate::echo::echo(resp, &req)
    } else {
        resp
    };
    Ok(to_hyper(resp))
}

/// A body that sends its first half, then has the connection closed (see [`FaultKind::TruncatedReply`]).
struct HalfThenClose {
    half: Option<Vec<u8>>,
    kill: Arc<Notify>,
}

impl hyper::body::Body for HalfThenClose {
    type Data = hyper::body::Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        match self.half.take() {
            Some(half) => std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(half.into())))),
            None => {
                self.kill.notify_one();
                std::task::Poll::Pending
            }
        }
    }
}

fn to_hyper(resp: Resp) -> Response<Body> {
    let mut out = Response::new(Body::from(resp.body));
    *out.status_mut() = hyper::StatusCode::from_u16(resp.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in resp.headers {
        if let (Ok(name), Ok(value)) = (
            hyper::http::header::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            out.headers_mut().append(name, value);
        }
    }
    out
}

/// Accepts connections until the runtime is dropped; each connection is its own task that ends when
/// the connection closes, a drop fault fires, or the emulator shuts down.
pub(crate) async fn accept_loop(
    listener: tokio::net::TcpListener,
    api: Api,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let shared = shared.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let kill = Arc::new(Notify::new());
            let kill2 = kill.clone();
            let svc = hyper::service::service_fn(move |r| {
                handle_http(shared.clone(), api, kill2.clone(), r)
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                () = kill.notified() => {}
                _ = shutdown.changed() => {}
            }
        });
    }
}
