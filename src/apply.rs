//! Writes a plan to Halo (SPEC section 8): POST arrays of at most 100 records holding only changed fields
//! plus `id`, filled across tenants, creates and updates in separate batches. A create whose outcome is
//! unknown (timeout, dropped connection, 5xx) is never re-sent blindly: Halo is read again to see which
//! records landed, and only the others are sent. A batch Halo refuses (400) is split in halves down to the
//! bad record, which is reported while the rest is applied.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::plan::{Action, Change, HaloEntity, Plan};

/// At most this many records per POST.
pub const BATCH_SIZE: usize = 100;

/// Why a write failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// Halo refused the batch (400): some record in it is invalid. Nothing of it was applied.
    Refused(String),
    /// The outcome is unknown: the batch may or may not have been applied.
    Uncertain(String),
    /// The write failed for another reason (authorisation, retries exhausted).
    Failed(String),
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Refused(m) => write!(f, "Halo refused the record: {m}"),
            WriteError::Uncertain(m) => write!(f, "the outcome of the write is unknown: {m}"),
            WriteError::Failed(m) => write!(f, "{m}"),
        }
    }
}

/// The natural key a created record is found again by, and its value in a payload.
pub fn natural_key(entity: HaloEntity) -> &'static str {
    match entity {
        HaloEntity::Users => "azureoid",
        HaloEntity::SoftwareLicence => "third_party_product",
        HaloEntity::Asset => "intune_id",
        HaloEntity::Invoice => "reference",
        HaloEntity::Client | HaloEntity::Site => "name",
    }
}

/// What the applier needs from Halo.
pub trait HaloWriter {
    /// POSTs one batch; returns the records Halo sent back, in request order.
    fn post(
        &self,
        entity: HaloEntity,
        records: &[Value],
        create: bool,
    ) -> impl Future<Output = Result<Vec<Value>, WriteError>>;

    /// Reads Halo to find which of these creates already landed: for each change, the id of the Halo record
    /// whose natural key (see [`natural_key`]) equals the change's, or `None`.
    fn find_created(
        &self,
        entity: HaloEntity,
        creates: &[&Change],
    ) -> impl Future<Output = Result<Vec<Option<i64>>, WriteError>>;
}

/// One change that was applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied<'a> {
    pub customer_id: &'a str,
    pub change: &'a Change,
    pub halo_id: Option<i64>,
    /// Of the record Halo sent back for it (the saved record, halo-api.md 4), when the POST answered,
    /// the written fields Halo saved with another value than the one sent: what [`crate::readback`]
    /// reports, not a large run's every whole record (issue 15: peak memory).
    pub saved: Option<Value>,
}

/// One change that could not be applied, with why.
#[derive(Debug, Clone, PartialEq)]
pub struct Failed<'a> {
    pub customer_id: &'a str,
    pub change: &'a Change,
    pub error: String,
}

/// The outcome of applying a plan; it refers to the plan's changes rather than copying them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApplyReport<'a> {
    pub applied: Vec<Applied<'a>>,
    pub failed: Vec<Failed<'a>>,
    /// POST requests made.
    pub batches: usize,
    /// Changes never sent because the run was asked to stop (a signal) before their batch.
    pub not_started: usize,
}

/// Progress callback: called with the number of records written so far.
pub type Progress<'a> = &'a (dyn Fn(usize) + Sync);

/// Called after each batch of up to [`BATCH_SIZE`] changes with what it applied and what failed (the run's
/// journal is appended and fsync'd there).
pub type BatchDone<'a> = &'a (dyn Fn(&[Applied<'_>], &[Failed<'_>]) + Sync);

/// What the applier reports to, and asks, its caller between batches.
#[derive(Default, Clone, Copy)]
pub struct Hooks<'h> {
    pub progress: Option<Progress<'h>>,
    /// Asked before each batch; `true` (a signal came) stops the run there. The batch in flight is always
    /// finished, its unknown creates verified.
    pub stop: Option<&'h (dyn Fn() -> bool + Sync)>,
    pub batch_done: Option<BatchDone<'h>>,
}

/// The write order of entities: a client before its sites, before users, licences and assets.
fn entity_rank(e: HaloEntity) -> u8 {
    match e {
        HaloEntity::Client => 0,
        HaloEntity::Site => 1,
        HaloEntity::Users => 2,
        HaloEntity::SoftwareLicence => 3,
        HaloEntity::Asset => 4,
        HaloEntity::Invoice => 5,
    }
}

type Item<'a> = (&'a str, &'a Change);

/// Applies every change of the plan (held-back changes are not in `changes` and are never written).
pub async fn apply<'a, W: HaloWriter>(
    writer: &W,
    plan: &'a Plan,
    fire_automations: bool,
    hooks: Hooks<'_>,
) -> ApplyReport<'a> {
    let mut groups: BTreeMap<(u8, bool), (HaloEntity, Vec<Item<'a>>)> = BTreeMap::new();
    for (tenant, change) in plan.changes() {
        let create = change.action == Action::Create;
        groups
            .entry((entity_rank(change.entity), !create))
            .or_insert_with(|| (change.entity, Vec::new()))
            .1
            .push((tenant.customer_id.as_str(), change));
    }
    let mut report = ApplyReport::default();
    let mut done = 0usize;
    let total = plan.changes().count();
    for ((_, is_update), (entity, items)) in groups {
        for chunk in items.chunks(BATCH_SIZE) {
            if hooks.stop.is_some_and(|stop| stop()) {
                report.not_started = total - done;
                return report;
            }
            let (applied_before, failed_before) = (report.applied.len(), report.failed.len());
            write_batch(
                writer,
                entity,
                chunk.to_vec(),
                !is_update,
                fire_automations,
                &mut report,
            )
            .await;
            done += chunk.len();
            if let Some(b) = hooks.batch_done {
                b(
                    &report.applied[applied_before..],
                    &report.failed[failed_before..],
                );
            }
            if let Some(p) = hooks.progress {
                p(done);
            }
        }
    }
    report
}

/// The fields of `saved` (a record Halo sent back) that `change` wrote and Halo saved with another value,
/// as an object: all [`crate::readback::not_kept`] looks at, since a field absent from a reply says
/// nothing.
fn written_fields(change: &Change, saved: &Value) -> Value {
    Value::Object(
        crate::readback::not_kept(change, saved)
            .into_iter()
            .map(|(field, _, got)| (field, got))
            .collect(),
    )
}

/// The id of a record Halo sent back (integers, whole-number doubles and numeric strings).
fn id_of(v: &Value) -> Option<i64> {
    v.get("id").and_then(crate::api::value_to_i64)
}

async fn write_batch<'a, W: HaloWriter>(
    writer: &W,
    entity: HaloEntity,
    items: Vec<Item<'a>>,
    create: bool,
    fire: bool,
    report: &mut ApplyReport<'a>,
) {
    // An explicit stack instead of recursion: (items, sends so far of these items after an unknown outcome).
    let mut stack: Vec<(Vec<Item<'a>>, u8)> = vec![(items, 0)];
    while let Some((items, attempts)) = stack.pop() {
        if items.is_empty() {
            continue;
        }
        let payload: Vec<Value> = items.iter().map(|(_, c)| c.payload(fire)).collect();
        report.batches += 1;
        match writer.post(entity, &payload, create).await {
            Ok(back) => {
                for (i, (customer_id, change)) in items.into_iter().enumerate() {
                    let halo_id = change.halo_id.or_else(|| back.get(i).and_then(id_of));
                    report.applied.push(Applied {
                        customer_id,
                        change,
                        halo_id,
                        saved: back.get(i).map(|r| written_fields(change, r)),
                    });
                }
            }
            Err(err @ (WriteError::Uncertain(_) | WriteError::Refused(_))) => {
                let remaining = if create {
                    match settle_creates(writer, entity, items, report).await {
                        Ok(rest) => rest,
                        Err((rest, e)) => {
                            fail_all(
                                report,
                                rest,
                                &format!("{err}; checking Halo for landed records failed: {e}"),
                            );
                            continue;
                        }
                    }
                } else {
                    items
                };
                match err {
                    WriteError::Refused(msg) => {
                        if remaining.len() == 1 {
                            fail_all(
                                report,
                                remaining,
                                &format!("Halo refused the record: {msg}"),
                            );
                        } else if !remaining.is_empty() {
                            let mut left = remaining;
                            let right = left.split_off(left.len() / 2);
                            stack.push((right, 0));
                            stack.push((left, 0));
                        }
                    }
                    _ => {
                        if attempts < 2 {
                            // Verified: these creates did not land, so sending them again cannot duplicate;
                            // an update batch (every record has its id) may simply be sent again.
                            if !remaining.is_empty() {
                                stack.push((remaining, attempts + 1));
                            }
                        } else {
                            fail_all(report, remaining, &err.to_string());
                        }
                    }
                }
            }
            Err(err @ WriteError::Failed(_)) => fail_all(report, items, &err.to_string()),
        }
    }
}

/// Reads Halo for creates that may have landed; records the landed ones as applied and returns the rest.
async fn settle_creates<'a, W: HaloWriter>(
    writer: &W,
    entity: HaloEntity,
    items: Vec<Item<'a>>,
    report: &mut ApplyReport<'a>,
) -> Result<Vec<Item<'a>>, (Vec<Item<'a>>, WriteError)> {
    let refs: Vec<&Change> = items.iter().map(|(_, c)| *c).collect();
    let found = match writer.find_created(entity, &refs).await {
        Ok(f) => f,
        Err(e) => return Err((items, e)),
    };
    let mut rest = Vec::new();
    for ((customer_id, change), id) in items.into_iter().zip(found) {
        match id {
            Some(id) => report.applied.push(Applied {
                customer_id,
                change,
                halo_id: Some(id),
                saved: None,
            }),
            None => rest.push((customer_id, change)),
        }
    }
    Ok(rest)
}

fn fail_all<'a>(report: &mut ApplyReport<'a>, items: Vec<Item<'a>>, error: &str) {
    for (customer_id, change) in items {
        report.failed.push(Failed {
            customer_id,
            change,
            error: error.to_string(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{FieldChange, Module, TenantPlan};
    use std::cell::RefCell;

    /// An in-memory Halo: records by natural key, with scripted failures.
    #[derive(Default)]
    struct FakeHalo {
        records: RefCell<Vec<Value>>,
        posts: RefCell<Vec<usize>>,
        /// Refuse any batch containing a record with this azureoid.
        bad_key: Option<String>,
        /// The next N posts land but report Uncertain (reply lost).
        lose_replies: RefCell<usize>,
    }

    impl HaloWriter for FakeHalo {
        async fn post(
            &self,
            _e: HaloEntity,
            records: &[Value],
            _create: bool,
        ) -> Result<Vec<Value>, WriteError> {
            self.posts.borrow_mut().push(records.len());
            if let Some(bad) = &self.bad_key
                && records.iter().any(|r| r["azureoid"] == bad.as_str())
            {
                return Err(WriteError::Refused("name is required".into()));
            }
            let mut out = Vec::new();
            for r in records {
                let mut r = r.clone();
                let id = self.records.borrow().len() as i64 + 1;
                r["id"] = Value::from(id);
                self.records.borrow_mut().push(r.clone());
                out.push(r);
            }
            let mut lose = self.lose_replies.borrow_mut();
            if *lose > 0 {
                *lose -= 1;
                return Err(WriteError::Uncertain("connection dropped".into()));
            }
            Ok(out)
        }

        async fn find_created(
            &self,
            _e: HaloEntity,
            creates: &[&Change],
        ) -> Result<Vec<Option<i64>>, WriteError> {
            let recs = self.records.borrow();
            Ok(creates
                .iter()
                .map(|c| {
                    let key = c.payload(true)["azureoid"].clone();
                    recs.iter().find(|r| r["azureoid"] == key).and_then(id_of)
                })
                .collect())
        }
    }

    fn create(oid: &str) -> Change {
        Change {
            module: Module::Users,
            action: Action::Create,
            entity: HaloEntity::Users,
            halo_id: None,
            source_key: oid.into(),
            label: format!("{oid}@x"),
            reason: "new in Entra".into(),
            fields: vec![FieldChange {
                field: "azureoid".into(),
                from: Value::Null,
                to: Value::from(oid),
            }],
            extra: serde_json::Map::new(),
        }
    }

    fn plan_of(n: usize, tenants: usize) -> Plan {
        let ts = (0..tenants)
            .map(|t| TenantPlan {
                customer_id: format!("t{t}"),
                name: format!("T{t}"),
                changes: (0..n).map(|i| create(&format!("u{t}-{i}"))).collect(),
                ..TenantPlan::default()
            })
            .collect();
        Plan::new("now".into(), vec![Module::Users], ts)
    }

    #[tokio::test]
    async fn batches_fill_across_tenants() {
        let halo = FakeHalo::default();
        let plan = plan_of(70, 3);
        let report = apply(&halo, &plan, false, Hooks::default()).await;
        assert_eq!(report.applied.len(), 210);
        assert_eq!(*halo.posts.borrow(), vec![100, 100, 10]);
        assert!(report.applied.iter().all(|a| a.halo_id.is_some()));
    }

    #[tokio::test]
    async fn one_bad_record_is_isolated_and_the_rest_applied() {
        let halo = FakeHalo {
            bad_key: Some("u0-5".into()),
            ..FakeHalo::default()
        };
        let plan = plan_of(8, 1);
        let report = apply(&halo, &plan, false, Hooks::default()).await;
        assert_eq!(report.applied.len(), 7);
        assert_eq!(report.failed.len(), 1);
        assert_eq!(report.failed[0].change.source_key, "u0-5");
        assert!(report.failed[0].error.contains("name is required"));
        assert_eq!(halo.records.borrow().len(), 7);
    }

    #[tokio::test]
    async fn lost_reply_is_verified_not_resent() {
        let halo = FakeHalo {
            lose_replies: RefCell::new(1),
            ..FakeHalo::default()
        };
        let plan = plan_of(5, 1);
        let report = apply(&halo, &plan, false, Hooks::default()).await;
        assert_eq!(report.applied.len(), 5);
        assert!(report.failed.is_empty());
        // Landed once, found by reading, never sent again: no duplicates.
        assert_eq!(halo.records.borrow().len(), 5);
        assert_eq!(*halo.posts.borrow(), vec![5]);
    }
}
