//! The billing reader (library) against the emulator: both manifest shapes, JSON array and JSON lines, a
//! failed export, "no data", a blob download that drops (retried), an export still running at the end of
//! a run and resumed by the next.

use std::sync::Arc;

use csp_sync::auth::{CredentialSettings, Credentials, GraphAuthMode, TokenProvider};
use csp_sync::billing::export::{ExportRequest, Exports};
use csp_sync::billing::state::InvoiceState;
use csp_sync::billing::usage::NANOS;
use csp_sync::billing::{PeriodUsage, read_export};
use csp_sync::http::{Http, HttpOptions};
use csp_sync_emulator::{Api, Emulator, ExportData, Fault, FaultKind, Generated, Scenario};
use secrecy::SecretString;

use crate::support;

struct Reader {
    rt: tokio::runtime::Runtime,
    em: Emulator,
    http: Arc<Http>,
    creds: Credentials,
}

impl Reader {
    fn new(scenario: Scenario) -> Reader {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let em = rt.block_on(Emulator::start(scenario)).unwrap();
        let sc = em.scenario();
        let http = Arc::new(
            Http::new(HttpOptions {
                retry_scale: 0.0,
                ..HttpOptions::default()
            })
            .unwrap(),
        );
        let settings = CredentialSettings {
            partner_tenant_id: sc.partner_tenant_id.clone(),
            partner_center_client_id: sc.partner_center_app.client_id.clone(),
            partner_center_client_secret: Some(SecretString::from(
                sc.partner_center_app.client_secret.clone(),
            )),
            partner_center_refresh_token: None,
            graph_client_id: sc.graph_app.client_id.clone(),
            graph_client_secret: Some(SecretString::from(sc.graph_app.client_secret.clone())),
            graph_refresh_token: None,
            graph_mode: GraphAuthMode::App,
            partner_center_resource: "https://api.partnercenter.microsoft.com".into(),
            graph_resource: "https://graph.microsoft.com".into(),
        };
        let creds = Credentials::new(
            TokenProvider::new(http.clone(), em.login_url(), None),
            settings,
        );
        Reader {
            rt,
            em,
            http,
            creds,
        }
    }

    fn exports(&self) -> Exports<'_> {
        Exports {
            http: &self.http,
            creds: &self.creds,
            graph_url: self.em.graph_url(),
        }
    }

    fn invoice_id(&self) -> String {
        let sc = self.em.scenario();
        sc.billing.invoices[1]["id"].as_str().unwrap().to_string()
    }

    fn read(&self, stored: &mut InvoiceState, max_polls: u32) -> PeriodUsage {
        let req = ExportRequest::Billed {
            invoice_id: self.invoice_id(),
        };
        self.rt.block_on(read_export(
            &self.exports(),
            &req,
            stored,
            max_polls,
            support::now_ts(),
            |_| {},
        ))
    }
}

fn usage(r: PeriodUsage) -> csp_sync::billing::usage::UsageTotals {
    match r {
        PeriodUsage::Usage(t) => t,
        other => panic!("expected usage, got {other:?}"),
    }
}

#[test]
fn linked_manifest_with_json_lines_is_summed_per_group() {
    let r = Reader::new(support::small());
    let t = usage(r.read(&mut InvoiceState::default(), 5));
    assert_eq!(t.lines, 8);
    // 69.12 + 19.2 + 10.66 + 13.392 - 0.792 + 15.0009 + 0.87 + 2.08
    assert_eq!(t.total_nanos, 129_530_900_000);
    let vm = t
        .groups
        .values()
        .find(|g| g.meter_category == "Virtual Machines")
        .unwrap();
    assert_eq!(vm.cost_nanos, 8832 * NANOS / 100);
    assert_eq!(vm.quantities["1 Hour"], 820 * NANOS);
    let app = t
        .groups
        .values()
        .find(|g| g.meter_category == "Azure App Service")
        .unwrap();
    assert_eq!(
        app.cost_nanos, 12_600_000_000,
        "the credit is netted in its group"
    );
    // No bearer token ever reached the blob host.
    let blob_requests: Vec<_> =
        r.em.requests()
            .into_iter()
            .filter(|q| q.api == Api::Blob)
            .collect();
    assert_eq!(blob_requests.len(), 1);
    assert_eq!(blob_requests[0].status, 200);
}

#[test]
fn embedded_manifest_with_a_json_array_reads_the_same() {
    let mut sc = support::small();
    sc.billing.export.embedded_manifest = true;
    sc.billing.export.json_lines = false;
    sc.billing.export.lines_per_blob = 3;
    let r = Reader::new(sc);
    let t = usage(r.read(&mut InvoiceState::default(), 5));
    assert_eq!(t.lines, 8);
    assert_eq!(t.total_nanos, 129_530_900_000);
    let blobs =
        r.em.requests()
            .iter()
            .filter(|q| q.api == Api::Blob)
            .count();
    assert_eq!(blobs, 3);
    assert!(
        !r.em
            .requests()
            .iter()
            .any(|q| q.path.contains("/manifests/")),
        "the embedded manifest is not fetched"
    );
}

#[test]
fn failed_export_and_no_data() {
    let mut sc = support::small();
    let id = sc.billing.invoices[1]["id"].as_str().unwrap().to_string();
    sc.billing.usage.get_mut(&id).unwrap().fail =
        Some(serde_json::json!({"code": "1001", "message": "Internal error"}));
    let r = Reader::new(sc);
    let mut st = InvoiceState::default();
    match r.read(&mut st, 5) {
        PeriodUsage::Failed(m) => assert!(m.contains("Internal error"), "{m}"),
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(
        st.operation.is_none(),
        "a failed export starts again next run"
    );

    let mut sc = support::small();
    sc.billing.usage.clear();
    let r = Reader::new(sc);
    assert!(matches!(
        r.read(&mut InvoiceState::default(), 5),
        PeriodUsage::NoData
    ));
}

#[test]
fn a_dropped_blob_download_is_read_again_from_its_start() {
    let mut sc = support::small();
    sc.billing.export.lines_per_blob = 4;
    let r = Reader::new(sc);
    r.em.inject(Fault::new(
        Api::Blob,
        "part-00001",
        FaultKind::DropBeforeResponse,
    ));
    let t = usage(r.read(&mut InvoiceState::default(), 5));
    assert_eq!(t.lines, 8, "no line counted twice or lost");
    assert_eq!(t.total_nanos, 129_530_900_000);
    let statuses: Vec<u16> =
        r.em.requests()
            .iter()
            .filter(|q| q.api == Api::Blob)
            .map(|q| q.status)
            .collect();
    assert_eq!(statuses, vec![200, 0, 200]);
}

#[test]
fn a_running_export_is_resumed_by_the_next_run() {
    let mut sc = support::small();
    sc.billing.export.running_polls = 4;
    let r = Reader::new(sc);
    let mut st = InvoiceState::default();
    let PeriodUsage::Pending { operation } = r.read(&mut st, 2) else {
        panic!("expected the export still running")
    };
    assert_eq!(st.operation.as_deref(), Some(operation.as_str()));
    let t = usage(r.read(&mut st, 5));
    assert_eq!(t.lines, 8);
    assert_eq!(r.em.exports_started().len(), 1, "one export, resumed");
    assert!(st.operation.is_none());
}

#[test]
fn a_generated_export_of_many_lines_is_summed() {
    let mut sc = support::small();
    let id = sc.billing.invoices[1]["id"].as_str().unwrap().to_string();
    let customers = vec![
        (
            "aaaaaaaa-0000-4000-8000-000000000001".to_string(),
            "One Ltd".to_string(),
        ),
        (
            "aaaaaaaa-0000-4000-8000-000000000002".to_string(),
            "Two Ltd".to_string(),
        ),
    ];
    sc.billing.usage.insert(
        id,
        ExportData {
            generated: Some(Generated {
                lines: 5_000,
                customers,
                currency: "USD".into(),
            }),
            ..ExportData::default()
        },
    );
    sc.billing.export.lines_per_blob = 1_500;
    let r = Reader::new(sc);
    let t = usage(r.read(&mut InvoiceState::default(), 5));
    assert_eq!(t.lines, 5_000);
    // Two customers x three entitlements x five meter categories.
    assert_eq!(t.groups.len(), 30);
    assert_eq!(
        t.groups.values().map(|g| g.cost_nanos).sum::<i128>(),
        t.total_nanos
    );
}

#[test]
fn a_resumed_export_past_its_sas_is_replaced_once_and_read() {
    let mut sc = support::small();
    sc.billing.export.running_polls = 10;
    let r = Reader::new(sc);
    let mut st = InvoiceState::default();
    assert!(matches!(r.read(&mut st, 2), PeriodUsage::Pending { .. }));
    // Finished between runs with a SAS already expired when the next run reads it.
    r.em.with_state(|s| s.billing.export.sas_lifetime_secs = 0);
    r.em.finish_exports();
    r.em.with_state(|s| {
        s.billing.export.sas_lifetime_secs = 3600;
        s.billing.export.running_polls = 0;
    });
    let t = usage(r.read(&mut st, 5));
    assert_eq!(t.total_nanos, 129_530_900_000);
    assert_eq!(
        r.em.exports_started().len(),
        2,
        "the stored one and one new"
    );
    assert!(st.operation.is_none());
    let blob: Vec<u16> =
        r.em.requests()
            .iter()
            .filter(|q| q.api == Api::Blob)
            .map(|q| q.status)
            .collect();
    assert_eq!(blob, vec![403, 200]);
}

#[test]
fn the_blob_host_takes_only_the_sas_it_issued_within_its_time() {
    let r = Reader::new(support::small());
    let _ = usage(r.read(&mut InvoiceState::default(), 5));
    let q =
        r.em.requests()
            .into_iter()
            .find(|q| q.api == Api::Blob && q.status == 200)
            .unwrap();
    let url = |query: &str| format!("{}{}?{query}", r.em.blob_url(), q.path);
    let get = |u: String| {
        r.rt.block_on(async {
            let resp = reqwest::get(u).await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        })
    };
    assert_eq!(get(url(&q.query)).0, 200);
    // A SAS whose expiry was moved is not the one signed.
    let later = q.query.replacen("&se=", "&se=2099", 1);
    let (status, body) = get(url(&later));
    assert_eq!(status, 403);
    assert!(body.contains("<Code>AuthenticationFailed</Code>"), "{body}");
    assert!(!body.contains("time frame"), "{body}");
    // Once the SAS's time is up (here: every SAS is past its lifetime of 0 s), it is refused as expired.
    r.em.with_state(|s| s.billing.export.sas_lifetime_secs = 0);
    let mut st = InvoiceState::default();
    match r.read(&mut st, 5) {
        PeriodUsage::Failed(m) => assert!(
            m.contains("Signature not valid in the specified time frame"),
            "{m}"
        ),
        other => panic!("expected the SAS refused, got {other:?}"),
    }
    assert_eq!(
        r.em.exports_started().len(),
        2,
        "a new export is not replaced"
    );
}

#[test]
fn a_resumed_operation_graph_no_longer_knows_is_replaced_once() {
    let mut sc = support::small();
    sc.billing.export.running_polls = 10;
    let r = Reader::new(sc);
    let mut st = InvoiceState::default();
    assert!(matches!(r.read(&mut st, 2), PeriodUsage::Pending { .. }));
    r.em.with_state(|s| s.billing.export.running_polls = 0);
    r.em.inject(Fault::new(
        Api::Graph,
        "/billing/operations/",
        FaultKind::Status(404),
    ));
    let t = usage(r.read(&mut st, 5));
    assert_eq!(t.total_nanos, 129_530_900_000);
    assert_eq!(r.em.exports_started().len(), 2);

    // A new operation answered 404 is not replaced in a loop: it fails, and is not kept for the next run.
    r.em.inject(Fault::new(
        Api::Graph,
        "/billing/operations/",
        FaultKind::Status(404),
    ));
    let mut fresh = InvoiceState::default();
    assert!(matches!(r.read(&mut fresh, 5), PeriodUsage::Failed(_)));
    assert!(fresh.operation.is_none());
    assert_eq!(r.em.exports_started().len(), 3);
}
