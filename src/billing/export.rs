//! Graph's asynchronous billing export (reference microsoft-apis.md 2.6): `POST .../usage/billed/export`
//! (or `.../usage/unbilled/export`) answers 202 with `Location`; the operation is polled until it
//! `succeeded` or `failed`; a success names the manifest, whose blobs are gzip'd JSON streamed from Azure
//! storage with the manifest's SAS (never with a bearer token).

use std::io::Write;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::records::{RecordSplitter, SplitError};
use super::usage::{UsageLine, UsageTotals};
use crate::api::{self, send_authed};
use crate::auth::{Credentials, TokenSource};
use crate::http::{Api, Http, Request, RequestKind, redact_url};

/// How long one blob download may take in all.
const BLOB_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Attempts per blob (a download that breaks is restarted from the start of that blob).
const BLOB_ATTEMPTS: u32 = 4;
/// The most blobs one manifest may list.
const MAX_BLOBS: usize = 10_000;
/// The most lines one export may hold (a size bound; a large partner has a few million a month).
pub const MAX_LINES: u64 = 200_000_000;

/// Which export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportRequest {
    /// A closed period, by its Partner Center invoice id.
    Billed { invoice_id: String },
    /// The open period's estimate (`billingPeriod: current`).
    Unbilled { currency: String },
}

impl ExportRequest {
    fn path(&self) -> &'static str {
        match self {
            ExportRequest::Billed { .. } => "/v1.0/reports/partners/billing/usage/billed/export",
            ExportRequest::Unbilled { .. } => {
                "/v1.0/reports/partners/billing/usage/unbilled/export"
            }
        }
    }

    fn body(&self) -> Value {
        match self {
            ExportRequest::Billed { invoice_id } => {
                json!({"invoiceId": invoice_id, "attributeSet": "full"})
            }
            ExportRequest::Unbilled { currency } => {
                json!({"currencyCode": currency, "attributeSet": "full", "billingPeriod": "current"})
            }
        }
    }
}

/// One blob of a manifest.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ManifestBlob {
    #[serde(alias = "Name")]
    pub name: String,
    #[serde(default, alias = "partitionValue", alias = "PartitionValue")]
    pub partition_value: Option<String>,
}

/// An export's manifest. `sas_token` is a secret: never shown.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub data_format: Option<String>,
    pub root_directory: String,
    #[serde(default)]
    sas_token: String,
    #[serde(default)]
    pub blob_count: Option<u64>,
    #[serde(default)]
    pub blobs: Vec<ManifestBlob>,
}

impl std::fmt::Debug for Manifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manifest")
            .field("id", &self.id)
            .field("data_format", &self.data_format)
            .field("root_directory", &self.root_directory)
            .field("sas_token", &"REDACTED")
            .field("blobs", &self.blobs)
            .finish_non_exhaustive()
    }
}

impl Manifest {
    /// `{rootDirectory}/{name}?{sasToken}` (the token's leading `?`, documented as absent, dropped if there).
    pub fn blob_url(&self, blob: &ManifestBlob) -> String {
        let root = self.root_directory.trim_end_matches('/');
        let name = blob.name.trim_start_matches('/');
        let sas = self.sas_token.trim().trim_start_matches('?');
        if sas.is_empty() {
            format!("{root}/{name}")
        } else {
            format!("{root}/{name}?{sas}")
        }
    }
}

/// Where a succeeded operation's manifest is.
#[derive(Debug, Clone)]
pub enum ManifestRef {
    /// `resourceLocation@odata.navigationLink` (Graph docs).
    Link(String),
    /// The manifest embedded as `resourceLocation` (Microsoft's own sample).
    Embedded(Box<Manifest>),
}

/// What a poll of the operation said.
#[derive(Debug, Clone)]
pub enum Operation {
    Running {
        retry_after: Option<Duration>,
    },
    Succeeded(ManifestRef),
    /// `failed` with code 5000 "No data available": nothing was used in the period.
    NoData,
    Failed {
        code: String,
        message: String,
    },
}

/// Reads an operation body (always 200; the outcome is in `status` / `@odata.type`).
pub fn parse_operation(body: &Value, retry_after: Option<Duration>) -> Result<Operation, String> {
    let status = body
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_ascii_lowercase();
    let odata = body
        .get("@odata.type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_ascii_lowercase();
    if status == "succeeded" || odata.ends_with("exportsuccessoperation") {
        if let Some(link) = body
            .get("resourceLocation@odata.navigationLink")
            .and_then(Value::as_str)
        {
            return Ok(Operation::Succeeded(ManifestRef::Link(link.to_string())));
        }
        return match body.get("resourceLocation") {
            Some(Value::String(link)) => Ok(Operation::Succeeded(ManifestRef::Link(link.clone()))),
            Some(m @ Value::Object(_)) => serde_json::from_value::<Manifest>(m.clone())
                .map(|m| Operation::Succeeded(ManifestRef::Embedded(Box::new(m))))
                .map_err(|e| format!("the embedded manifest is not readable: {e}")),
            _ => Err("a succeeded operation names no manifest (neither `resourceLocation@odata.navigationLink` nor `resourceLocation`)".into()),
        };
    }
    if status == "failed" || odata.ends_with("failedoperation") {
        let err = body.get("error").cloned().unwrap_or(Value::Null);
        let code = match err.get("code") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        let message = err
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("no message")
            .to_string();
        if code == "5000" || message.eq_ignore_ascii_case("no data available") {
            return Ok(Operation::NoData);
        }
        return Ok(Operation::Failed { code, message });
    }
    if status.is_empty()
        || status == "running"
        || status == "notstarted"
        || odata.ends_with("runningoperation")
    {
        return Ok(Operation::Running { retry_after });
    }
    Err(format!(
        "the export operation has an unknown status {status:?}"
    ))
}

/// The billing export client (partner-tenant Graph token of the Partner Center app).
pub struct Exports<'a> {
    pub http: &'a Http,
    pub creds: &'a Credentials,
    /// Graph root, e.g. `https://graph.microsoft.com` (no `/v1.0`).
    pub graph_url: String,
}

fn graph_err(what: &str, e: &api::Error) -> String {
    let mut m = format!("{what}: {e}");
    if e.status() == Some(403) {
        m.push_str(
            " (the Partner Center app needs the Graph application permission PartnerBilling.Read.All, admin-consented in the partner tenant; the billing export is global-cloud only)",
        );
    }
    m
}

impl Exports<'_> {
    fn token() -> TokenSource {
        TokenSource::GraphPartnerBilling
    }

    /// An absolute link from Graph re-based onto the configured Graph host (tests, proxies).
    fn rebase(&self, link: &str) -> String {
        if link.starts_with('/') {
            return format!("{}{link}", self.graph_url);
        }
        let path = link
            .strip_prefix("https://")
            .or_else(|| link.strip_prefix("http://"))
            .map_or(link, |rest| rest.find('/').map_or("/", |i| &rest[i..]));
        format!("{}{path}", self.graph_url)
    }

    /// Starts an export; returns the operation URL from `Location`.
    pub async fn start(&self, export: &ExportRequest) -> Result<String, String> {
        let url = format!("{}{}", self.graph_url, export.path());
        // Starting an export creates nothing a person sees; a repeat only starts a second export.
        let req = Request::post(Api::Graph, url)
            .kind(RequestKind::Idempotent)
            .json(export.body());
        let resp = send_authed(self.http, self.creds, &Self::token(), req)
            .await
            .map_err(|e| graph_err("starting the billing export", &e))?;
        let location = resp
            .headers
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| {
                format!(
                    "the billing export answered {} without a Location header",
                    resp.status.as_u16()
                )
            })?;
        Ok(self.rebase(&location))
    }

    /// Polls the operation once.
    pub async fn poll(&self, operation_url: &str) -> Result<Operation, String> {
        self.poll_gone(operation_url).await.map_err(|(_, m)| m)
    }

    /// [`Exports::poll`]; the error says whether Graph no longer knows the operation (404/410).
    pub async fn poll_gone(&self, operation_url: &str) -> Result<Operation, (bool, String)> {
        let url = self.rebase(operation_url);
        let resp = send_authed(
            self.http,
            self.creds,
            &Self::token(),
            Request::get(Api::Graph, url),
        )
        .await
        .map_err(|e| {
            let gone = matches!(&e, api::Error::Api(a) if matches!(a.status, Some(404 | 410)));
            (gone, graph_err("polling the billing export", &e))
        })?;
        let retry_after = resp
            .headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::http::parse_retry_after);
        let body: Value = resp.json().map_err(|e| (false, e.to_string()))?;
        parse_operation(&body, retry_after).map_err(|m| (false, m))
    }

    /// The manifest, fetched when linked.
    pub async fn manifest(&self, r: ManifestRef) -> Result<Manifest, String> {
        match r {
            ManifestRef::Embedded(m) => Ok(*m),
            ManifestRef::Link(link) => {
                let resp = send_authed(
                    self.http,
                    self.creds,
                    &Self::token(),
                    Request::get(Api::Graph, self.rebase(&link)),
                )
                .await
                .map_err(|e| graph_err("reading the billing export's manifest", &e))?;
                resp.json::<Manifest>().map_err(|e| e.to_string())
            }
        }
    }

    /// Streams every blob of the manifest into one set of totals. A blob whose download breaks is read
    /// again from its start (its partial totals are dropped), at most [`BLOB_ATTEMPTS`] times.
    pub async fn aggregate(
        &self,
        manifest: &Manifest,
        mut on_lines: impl FnMut(u64),
    ) -> Result<UsageTotals, AggregateError> {
        if manifest.blobs.len() > MAX_BLOBS {
            return Err(format!(
                "the export manifest lists {} blobs (more than {MAX_BLOBS})",
                manifest.blobs.len()
            )
            .into());
        }
        if let Some(n) = manifest.blob_count
            && n != manifest.blobs.len() as u64
        {
            tracing::warn!(
                "the export manifest says blobCount {n} but lists {} blobs; reading those listed",
                manifest.blobs.len()
            );
        }
        check_blob_root(&manifest.root_directory)?;
        let mut totals = UsageTotals::default();
        for blob in &manifest.blobs {
            let url = manifest.blob_url(blob);
            let mut attempt = 1;
            let blob_totals = loop {
                match self.read_blob(&url, totals.lines, &mut on_lines).await {
                    Ok(t) => break t,
                    Err(BlobError::Retry(m)) if attempt < BLOB_ATTEMPTS => {
                        tracing::warn!(blob = %blob.name, attempt, "billing export blob {} download failed ({m}); reading it again", blob.name);
                        self.http
                            .retry_sleep(Duration::from_secs(2u64.pow(attempt)))
                            .await;
                        attempt += 1;
                    }
                    Err(BlobError::Refused(m)) => {
                        return Err(AggregateError {
                            message: format!("reading billing export blob {}: {m}", blob.name),
                            sas_refused: true,
                        });
                    }
                    Err(BlobError::Retry(m) | BlobError::Fatal(m)) => {
                        return Err(
                            format!("reading billing export blob {}: {m}", blob.name).into()
                        );
                    }
                }
            };
            totals.merge(blob_totals);
            if totals.lines > MAX_LINES {
                return Err(format!(
                    "the billing export holds more than {MAX_LINES} lines; refusing to read further"
                )
                .into());
            }
        }
        Ok(totals)
    }

    async fn read_blob(
        &self,
        url: &str,
        lines_before: u64,
        on_lines: &mut impl FnMut(u64),
    ) -> Result<UsageTotals, BlobError> {
        let mut resp = self
            .http
            .open_stream(url, BLOB_TIMEOUT)
            .await
            .map_err(|e| match e.status {
                None | Some(429 | 500..) => BlobError::Retry(e.to_string()),
                // The SAS is all the storage host takes: a refusal is of the SAS (expired, as a
                // manifest's SAS does some time after the export finished).
                Some(s @ (401 | 403)) => BlobError::Refused(format!(
                    "the storage host refused the manifest's SAS (HTTP {s}{}: {})",
                    e.code
                        .as_deref()
                        .map_or_else(String::new, |c| format!(" {c}")),
                    e.message
                )),
                Some(_) => BlobError::Fatal(e.to_string()),
            })?;
        let mut decoder = flate2::write::MultiGzDecoder::new(LineSink::default());
        loop {
            let chunk = resp.chunk().await.map_err(|e| {
                BlobError::Retry(format!("the download broke off: {}", e.without_url()))
            })?;
            let Some(chunk) = chunk else { break };
            decoder
                .write_all(&chunk)
                .map_err(|e| BlobError::Fatal(format!("not a readable gzip'd JSON file: {e}")))?;
            let sink = decoder.get_ref();
            on_lines(lines_before + sink.totals.lines);
        }
        let sink = decoder
            .finish()
            .map_err(|e| BlobError::Retry(format!("the gzip stream ends early: {e}")))?;
        sink.splitter
            .finish()
            .map_err(|e| BlobError::Retry(e.to_string()))?;
        Ok(sink.totals)
    }
}

/// The blob host must be https (http only for loopback, the emulator).
fn check_blob_root(root: &str) -> Result<(), String> {
    let lower = root.to_ascii_lowercase();
    let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|p| lower.starts_with(p));
    if lower.starts_with("https://") || loopback {
        Ok(())
    } else {
        Err(format!(
            "the export manifest's rootDirectory {} is not an https URL; refusing to download",
            redact_url(root)
        ))
    }
}

enum BlobError {
    Retry(String),
    /// 401/403: the storage host refused the SAS.
    Refused(String),
    Fatal(String),
}

/// Why an export's blobs could not be read; `sas_refused` when the storage host refused the manifest's
/// SAS (401/403), which a new export (with a new SAS) cures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateError {
    pub message: String,
    pub sas_refused: bool,
}

impl From<String> for AggregateError {
    fn from(message: String) -> Self {
        AggregateError {
            message,
            sas_refused: false,
        }
    }
}

impl std::fmt::Display for AggregateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Where the gzip decoder writes: split into records, each parsed and added.
#[derive(Default)]
struct LineSink {
    splitter: RecordSplitter,
    totals: UsageTotals,
}

#[derive(Debug, thiserror::Error)]
enum SinkError {
    #[error(transparent)]
    Split(#[from] SplitError),
    #[error("usage line {0}: {1}")]
    Line(u64, serde_json::Error),
}

impl Write for LineSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let totals = &mut self.totals;
        let base = self.splitter.records();
        let mut n = 0;
        self.splitter
            .feed(buf, |record: &[u8]| {
                n += 1;
                let line: UsageLine =
                    serde_json::from_slice(record).map_err(|e| SinkError::Line(base + n, e))?;
                totals.add(&line);
                Ok::<(), SinkError>(())
            })
            .map_err(std::io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_success_shapes_are_read() {
        let linked = json!({"@odata.type": "#microsoft.graph.partners.billing.exportSuccessOperation", "status": "succeeded",
            "resourceLocation@odata.navigationLink": "https://graph.microsoft.com/v1.0/reports/partners/billing/manifests/m1"});
        assert!(
            matches!(parse_operation(&linked, None), Ok(Operation::Succeeded(ManifestRef::Link(l))) if l.ends_with("/m1"))
        );
        let embedded = json!({"status": "succeeded", "resourceLocation": {"id": "m1", "rootDirectory": "https://x.blob.core.windows.net/a/", "sasToken": "?sv=1&sig=SECRET", "blobCount": 1, "blobs": [{"name": "/part-1.json.gz", "partitionValue": "default"}], "dataFormat": "compressedJSONLines"}});
        let Ok(Operation::Succeeded(ManifestRef::Embedded(m))) = parse_operation(&embedded, None)
        else {
            panic!("embedded manifest not read")
        };
        assert_eq!(
            m.blob_url(&m.blobs[0]),
            "https://x.blob.core.windows.net/a/part-1.json.gz?sv=1&sig=SECRET"
        );
        assert!(!format!("{m:?}").contains("SECRET"));
    }

    #[test]
    fn no_data_is_not_a_failure() {
        let nodata =
            json!({"status": "failed", "error": {"message": "No data available", "code": "5000"}});
        assert!(matches!(
            parse_operation(&nodata, None),
            Ok(Operation::NoData)
        ));
        let failed = json!({"@odata.type": "#microsoft.graph.partners.billing.failedOperation", "status": "failed", "error": {"message": "Internal", "code": 500}});
        assert!(
            matches!(parse_operation(&failed, None), Ok(Operation::Failed { code, .. }) if code == "500")
        );
        let running = json!({"status": "running"});
        assert!(matches!(
            parse_operation(&running, None),
            Ok(Operation::Running { .. })
        ));
    }

    #[test]
    fn a_plain_http_blob_host_is_refused() {
        assert!(check_blob_root("http://evil.example/x").is_err());
        assert!(check_blob_root("http://127.0.0.1:5000/x").is_ok());
        assert!(check_blob_root("https://a.blob.core.windows.net/x").is_ok());
    }
}
