//! The billing module (SPEC 7, billing): closed Partner Center periods -> one draft Halo invoice per mapped
//! client and period. Partner-level read: the Partner Center invoices, each chosen period's billed usage
//! export (resumed from the state when still running; a period done in the state is not exported again),
//! the open period's unbilled estimate (`diff` only: `sync` writes no estimate, so it reads none), and
//! Halo's invoices around the periods (`includelines=true`).
//! Planned with [`crate::plan::billing`]. Outputs: the per-period figures, the estimates, the state.

use anyhow::Result;
use serde_json::Value;

use crate::api::value_to_i64;
use crate::billing::export::{ExportRequest, Exports};
use crate::billing::periods::{self, BilledPeriod};
use crate::billing::state::{BillingState, InvoiceState};
use crate::billing::{PeriodUsage, PollBudget, read_export_within};
use crate::engine::Target;
use crate::modules::{Outputs, PartnerCx, PlanCx, SyncModule};
use crate::plan::billing::{
    self as planner, BillingPolicy, BillingTarget, HaloInvoice, Mapping, PeriodSource,
};
use crate::plan::{Module, TenantPlan};

pub struct Billing;

/// What billing reads once per run.
#[derive(Default)]
pub struct BillingRead {
    pub periods: Vec<(BilledPeriod, PeriodSource)>,
    pub estimate: Option<PeriodUsage>,
    pub halo_invoices: Vec<HaloInvoice>,
    pub state: BillingState,
    /// A failure before any period could be read (Partner Center invoices, Halo invoices).
    pub error: Option<String>,
}

fn halo_invoice(v: &Value) -> Option<HaloInvoice> {
    let id = value_to_i64(v.get("id")?)?;
    let net = v
        .get("lines")
        .and_then(Value::as_array)
        .map_or(0.0, |lines| {
            lines
                .iter()
                .map(|l| {
                    let n = |k: &str| {
                        l.get(k).and_then(|x| x.as_f64().or_else(|| x.as_str()?.trim().parse().ok()))
                    };
                    n("net_amount")
                        .unwrap_or_else(|| n("unit_price").unwrap_or(0.0) * n("qty_order").unwrap_or(1.0))
                })
                .sum()
        });
    Some(HaloInvoice {
        id,
        client_id: v.get("client_id").and_then(value_to_i64).unwrap_or(0),
        reference: v.get("reference").and_then(Value::as_str).unwrap_or("").to_string(),
        posted: match v.get("posted") {
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
            _ => false,
        },
        net,
    })
}

async fn read(cx: &PartnerCx<'_>) -> BillingRead {
    let mut out = BillingRead {
        state: BillingState::load(cx.state),
        ..BillingRead::default()
    };
    let exports = Exports {
        http: &cx.apis.http,
        creds: &cx.apis.creds,
        graph_url: cx.config.microsoft.graph_url.clone(),
    };
    let invoices = match cx.apis.partner_center.invoices().await {
        Ok(items) => periods::parse_invoices(&items),
        Err(e) => {
            out.error = Some(format!("reading Partner Center invoices: {e}"));
            return out;
        }
    };
    let chosen = periods::choose(
        &invoices,
        cx.config.billing.period.as_deref(),
        cx.config.billing.since.as_deref(),
    );
    if let Some(p) = &cx.config.billing.period
        && chosen.is_empty()
    {
        out.error = Some(format!(
            "--period {p}: no Partner Center invoice with Azure usage for that period (closed periods: {})",
            invoices.iter().map(|i| i.period.as_str()).collect::<Vec<_>>().join(", ")
        ));
    }
    for p in chosen {
        let stored = out.state.invoice(&p.invoice_id, &p.period);
        // A named period is read again even when done: the Halo read still keeps it from being billed twice.
        if stored.done && cx.config.billing.period.is_none() {
            out.periods.push((p, PeriodSource::Done));
            continue;
        }
        let mut st: InvoiceState = stored.clone();
        let req = ExportRequest::Billed {
            invoice_id: p.invoice_id.clone(),
        };
        let source = match read_export_within(&exports, &req, &mut st, PollBudget::BILLED, cx.now, |_| {}).await {
            PeriodUsage::Usage(t) => PeriodSource::Usage(t),
            PeriodUsage::NoData => PeriodSource::NoData,
            PeriodUsage::Pending { .. } => PeriodSource::Pending,
            PeriodUsage::Failed(e) => PeriodSource::Failed(e),
        };
        *out.state.invoice(&p.invoice_id, &p.period) = st;
        out.periods.push((p, source));
    }
    // The open period's estimate: `diff` only (never written, so `sync` does not spend an export and its
    // polls on it). A running one is not kept (`diff` writes no state): a short budget, then `pending`.
    if cx.config.billing.estimate {
        let mut scratch = InvoiceState::default();
        let req = ExportRequest::Unbilled {
            currency: cx.config.billing.currency.clone(),
        };
        out.estimate = Some(
            read_export_within(&exports, &req, &mut scratch, PollBudget::ESTIMATE, cx.now, |_| {})
                .await,
        );
    }
    // Halo's invoices around the periods to bill (its list has no filter by reference).
    let to_bill: Vec<&BilledPeriod> = out
        .periods
        .iter()
        .filter(|(_, s)| matches!(s, PeriodSource::Usage(_)))
        .map(|(p, _)| p)
        .collect();
    if let (Some(first), Some(last)) = (to_bill.first(), to_bill.last()) {
        let start = format!("{}-01", first.period);
        let end = last
            .period_end
            .clone()
            .unwrap_or_else(|| last.invoice_date.clone())
            .parse::<jiff::civil::Date>()
            .ok()
            .and_then(|d| d.checked_add(jiff::Span::new().days(62)).ok())
            .map_or_else(|| last.invoice_date.clone(), |d| d.to_string());
        let params = [
            ("invoicedatestart", start.as_str()),
            ("invoicedateend", end.as_str()),
            ("includelines", "true"),
        ];
        match cx.apis.halo.list("Invoice", "invoices", &params).await {
            Ok(items) => out.halo_invoices = items.iter().filter_map(halo_invoice).collect(),
            Err(e) => out.error = Some(format!("reading Halo invoices: {e}")),
        }
    }
    out
}

impl SyncModule for Billing {
    type Read = ();
    type PartnerRead = BillingRead;
    const MODULE: Module = Module::Billing;

    async fn read_partner(&self, cx: &PartnerCx<'_>) -> BillingRead {
        read(cx).await
    }

    fn plan(
        &self,
        cx: &PlanCx<'_>,
        read: BillingRead,
        reads: Vec<(&Target, ())>,
        out: &mut Outputs,
    ) -> Result<Vec<TenantPlan>> {
        let targets: Vec<BillingTarget> = reads
            .iter()
            .map(|(t, ())| BillingTarget {
                customer_id: t.entry.customer_id.to_ascii_lowercase(),
                name: t.name.clone(),
                halo_client_id: t.entry.halo_client_id.unwrap_or(0),
            })
            .collect();
        let policy = BillingPolicy {
            markup_percent: cx.config.billing.markup_percent,
            markup: cx.config.billing.markup.clone(),
            currency: cx.config.billing.currency.clone(),
        };
        if let Some(e) = &read.error {
            // Nothing is billed when Halo's invoices or the periods could not be read.
            out.billing_state = None;
            return Ok(targets
                .iter()
                .map(|t| TenantPlan {
                    customer_id: t.customer_id.clone(),
                    name: t.name.clone(),
                    halo_client_id: Some(t.halo_client_id),
                    errors: vec![format!("billing: {e}")],
                    ..TenantPlan::default()
                })
                .collect());
        }
        let config = cx.config;
        let mapping = |customer: &str| -> Mapping<'_> {
            if let Some(t) = targets.iter().find(|t| t.customer_id.eq_ignore_ascii_case(customer)) {
                return Mapping::Target(t);
            }
            match config.tenants.iter().find(|t| t.customer_id.eq_ignore_ascii_case(customer)) {
                Some(t) if t.skip => Mapping::Skipped,
                Some(_) => Mapping::Skipped,
                None => Mapping::Unmapped,
            }
        };
        let plan = planner::plan_billing(
            &read.periods,
            &mapping,
            &targets,
            &read.halo_invoices,
            &read.state,
            &policy,
        );
        out.billing = plan.periods;
        out.estimates = read
            .estimate
            .map(|e| planner::estimate(&e, &mapping, &policy))
            .into_iter()
            .collect();
        out.billing_state = Some(plan.state);
        Ok(plan.tenants)
    }
}
