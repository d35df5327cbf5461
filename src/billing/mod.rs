//! Billing's reader (SPEC 7, billing): closed periods from Partner Center invoices, each period's billed
//! Azure usage through Graph's asynchronous export, streamed from its blobs in flat memory and summed per
//! customer, entitlement and meter category; the open period's estimate through the unbilled export.

pub mod export;
pub mod periods;
pub mod records;
pub mod render;
pub mod state;
pub mod usage;

use std::time::Duration;

use export::{ExportRequest, Exports, Operation};
use state::InvoiceState;
use usage::UsageTotals;

/// Polls of one export per run before it is left running for the next run.
pub const MAX_POLLS: u32 = 20;
/// The wait between polls when Graph gives no `Retry-After`.
const DEFAULT_POLL_WAIT: Duration = Duration::from_secs(15);
/// The longest wait between two polls.
const MAX_POLL_WAIT: Duration = Duration::from_secs(120);

/// How long one run waits for one export: at most `polls` polls and `wait` in all between them. A
/// `Retry-After` longer than what is left ends the wait (Graph is never polled sooner than it asks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollBudget {
    pub polls: u32,
    pub wait: Duration,
}

impl PollBudget {
    /// A closed period's export (`sync`): [`MAX_POLLS`] polls; a running one is resumed by the next run.
    pub const BILLED: PollBudget = PollBudget::polls(MAX_POLLS);
    /// The open period's estimate (`diff` only; `diff` keeps no state, so a running estimate cannot be
    /// resumed): six polls within a minute, then the estimate shows as `pending`.
    pub const ESTIMATE: PollBudget = PollBudget {
        polls: 6,
        wait: Duration::from_secs(60),
    };

    /// `polls` polls, each wait up to [`MAX_POLL_WAIT`].
    pub const fn polls(polls: u32) -> PollBudget {
        PollBudget {
            polls,
            wait: Duration::from_secs(MAX_POLL_WAIT.as_secs() * polls as u64),
        }
    }
}

/// What reading one period gave.
#[derive(Debug, Clone)]
pub enum PeriodUsage {
    Usage(UsageTotals),
    /// The export said "No data available": nothing was used.
    NoData,
    /// Still running after [`MAX_POLLS`] polls: kept in the state and resumed by the next run.
    Pending {
        operation: String,
    },
    Failed(String),
}

/// Reads one export to the end or to `max_polls` polls; see [`read_export_within`].
pub async fn read_export(
    exports: &Exports<'_>,
    request: &ExportRequest,
    stored: &mut InvoiceState,
    max_polls: u32,
    now: jiff::Timestamp,
    on_lines: impl FnMut(u64),
) -> PeriodUsage {
    read_export_within(
        exports,
        request,
        stored,
        PollBudget::polls(max_polls),
        now,
        on_lines,
    )
    .await
}

/// Reads one export to the end or to the poll budget. `stored` is the period's state: a running
/// operation there is resumed; a new one is recorded there (the caller decides whether to save it).
/// A resumed export whose files the storage host refuses (its SAS expired since it finished) is
/// replaced by a new export in the same run, once, with a one-line warning.
pub async fn read_export_within(
    exports: &Exports<'_>,
    request: &ExportRequest,
    stored: &mut InvoiceState,
    budget: PollBudget,
    now: jiff::Timestamp,
    mut on_lines: impl FnMut(u64),
) -> PeriodUsage {
    let mut resumed = stored.operation.is_some();
    loop {
        match read_once(exports, request, stored, budget, now, &mut on_lines).await {
            Err(Stale::Refused(refused)) if resumed => {
                // "reading billing export blob NAME: REASON": the reason is the same for every blob.
                let reason = refused
                    .split_once(": ")
                    .map_or(refused.as_str(), |(_, r)| r);
                tracing::warn!(
                    "{} resumed from an earlier run can no longer be downloaded: {reason}; a new export is started in this run",
                    describe(request),
                );
                stored.operation = None;
                resumed = false;
            }
            Err(Stale::Gone(m)) if resumed => {
                tracing::warn!(
                    "{} resumed from an earlier run is no longer known to Graph ({m}); a new export is started in this run",
                    describe(request),
                );
                stored.operation = None;
                resumed = false;
            }
            Err(Stale::Refused(m)) => return PeriodUsage::Failed(m),
            // A new operation Graph does not know: started again by the next run.
            Err(Stale::Gone(m)) => {
                stored.operation = None;
                return PeriodUsage::Failed(m);
            }
            Ok(usage) => return usage,
        }
    }
}

fn describe(request: &ExportRequest) -> String {
    match request {
        ExportRequest::Billed { invoice_id } => {
            format!("the billing export of Partner Center invoice {invoice_id}")
        }
        ExportRequest::Unbilled { .. } => "the unbilled-usage export".to_string(),
    }
}

/// Why an export cannot be finished, which a new export cures.
enum Stale {
    /// The storage host refused the manifest's SAS (401/403): expired since the export finished.
    Refused(String),
    /// Graph answers the operation with 404/410.
    Gone(String),
}

/// One export, resumed or started, to the end or to the budget; `Err` when it is stale.
async fn read_once(
    exports: &Exports<'_>,
    request: &ExportRequest,
    stored: &mut InvoiceState,
    budget: PollBudget,
    now: jiff::Timestamp,
    on_lines: &mut impl FnMut(u64),
) -> Result<PeriodUsage, Stale> {
    let operation = if let Some(op) = stored.operation.clone() {
        tracing::info!(operation = %crate::http::redact_url(&op), "resuming the billing export started earlier");
        op
    } else {
        match exports.start(request).await {
            Ok(op) => {
                stored.operation = Some(op.clone());
                stored.operation_started = Some(now.to_string());
                op
            }
            Err(e) => return Ok(PeriodUsage::Failed(e)),
        }
    };
    let max_polls = budget.polls.max(1);
    let mut waited = Duration::ZERO;
    for poll in 1..=max_polls {
        match exports.poll_gone(&operation).await {
            Err((true, e)) => return Err(Stale::Gone(e)),
            Err((false, e)) => return Ok(PeriodUsage::Failed(e)),
            Ok(Operation::Running { retry_after }) => {
                let wait = retry_after.unwrap_or(DEFAULT_POLL_WAIT).min(MAX_POLL_WAIT);
                if poll == max_polls || waited + wait > budget.wait {
                    break;
                }
                tracing::debug!(
                    poll,
                    wait_ms = wait.as_millis() as u64,
                    "billing export still running"
                );
                exports.http.retry_sleep(wait).await;
                waited += wait;
            }
            Ok(Operation::NoData) => {
                stored.operation = None;
                return Ok(PeriodUsage::NoData);
            }
            Ok(Operation::Failed { code, message }) => {
                // A failed export is started again by the next run.
                stored.operation = None;
                return Ok(PeriodUsage::Failed(format!(
                    "the billing export failed (code {code}: {message}); the next run starts it again"
                )));
            }
            Ok(Operation::Succeeded(r)) => {
                stored.operation = None;
                let manifest = match exports.manifest(r).await {
                    Ok(m) => m,
                    Err(e) => return Ok(PeriodUsage::Failed(e)),
                };
                return match exports.aggregate(&manifest, &mut *on_lines).await {
                    Ok(t) => Ok(PeriodUsage::Usage(t)),
                    Err(e) if e.sas_refused => Err(Stale::Refused(e.message)),
                    Err(e) => Ok(PeriodUsage::Failed(e.message)),
                };
            }
        }
    }
    Ok(PeriodUsage::Pending { operation })
}

/// The billing state with the Halo id of each invoice this run created (by Partner Center invoice id and
/// customer), so a later run never creates it again even if Halo's read around the period misses it; a
/// period whose invoices were all written is marked done.
pub fn record_invoices(
    mut state: state::BillingState,
    report: &crate::apply::ApplyReport<'_>,
) -> state::BillingState {
    for a in &report.applied {
        let c = a.change;
        if c.module != crate::plan::Module::Billing || c.action != crate::plan::Action::Create {
            continue;
        }
        let Some(id) = a.halo_id else { continue };
        let net: f64 = c
            .fields
            .iter()
            .find(|f| f.field == "lines")
            .and_then(|f| f.to.as_array())
            .map_or(0.0, |lines| {
                lines
                    .iter()
                    .filter_map(|l| l.get("unit_price").and_then(serde_json::Value::as_f64))
                    .sum()
            });
        let period = state
            .invoices
            .get(&c.source_key)
            .map(|s| s.period.clone())
            .unwrap_or_default();
        state.invoice(&c.source_key, &period).customers.insert(
            a.customer_id.to_ascii_lowercase(),
            state::BilledInvoice {
                halo_invoice_id: id,
                net_minor: (net * 100.0).round() as i64,
            },
        );
    }
    // A period whose invoices were all written is done: the next run does not export it again.
    let failed: Vec<&str> = report
        .failed
        .iter()
        .filter(|f| f.change.module == crate::plan::Module::Billing)
        .map(|f| f.change.source_key.as_str())
        .collect();
    for a in &report.applied {
        let c = a.change;
        if c.module == crate::plan::Module::Billing
            && !failed.contains(&c.source_key.as_str())
            && let Some(s) = state.invoices.get_mut(&c.source_key)
        {
            s.done = true;
        }
    }
    state
}
