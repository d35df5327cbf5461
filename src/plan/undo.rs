//! The inverse plan of one journaled run (`csp-sync undo RUN`, SPEC section 2). Pure: the run's journal and
//! Halo's records as read now in, a plan out.
//!
//! For each change the run applied, in the record Halo still holds exactly as that run left it (every field
//! it wrote still has the value it wrote): a deactivation is reactivated, a reactivation deactivated, and
//! field changes (updates, links) are set back to their old values. A record changed since, or gone, is
//! listed as a conflict and left alone. A create is never deleted; with `deactivate_created` a contact the
//! run created is deactivated instead. Deactivations go through the same deactivation guard as a sync.

use std::collections::BTreeMap;

use serde_json::Value;

use super::users::GUARD_DEACTIVATION;
use super::{Action, Change, Conflict, FieldChange, HaloEntity, HeldBack, TenantPlan, same_value};
use crate::journal::{JournalEntry, JournalRun};

/// How an undo is planned.
#[derive(Debug, Clone)]
pub struct UndoPolicy {
    pub deactivate_created: bool,
    pub max_deactivations: u32,
    pub max_deactivation_percent: f64,
    pub allow_deactivations: bool,
}

/// Halo's records of one entity by id.
pub type Records<'a> = BTreeMap<i64, &'a Value>;

/// Plans the inverse of `run` against Halo's current `records` (by entity path, then id).
pub fn plan_undo(
    run: &JournalRun,
    records: &BTreeMap<&str, Records<'_>>,
    policy: &UndoPolicy,
) -> Vec<TenantPlan> {
    let mut by_tenant: BTreeMap<String, TenantPlan> = BTreeMap::new();
    let mut deactivations: BTreeMap<String, Vec<Change>> = BTreeMap::new();
    // A record changed twice in one run (never by a sync, possibly by a plan) is undone from its last change.
    let mut seen = std::collections::BTreeSet::new();
    for e in run.applied.iter().rev() {
        let tp = by_tenant
            .entry(e.customer_id.clone())
            .or_insert_with(|| TenantPlan {
                customer_id: e.customer_id.clone(),
                name: if e.tenant.is_empty() {
                    e.customer_id.clone()
                } else {
                    e.tenant.clone()
                },
                ..TenantPlan::default()
            });
        let Some(id) = e.halo_id else {
            tp.notes.push(format!(
                "{}: the run journaled no Halo id for it; left alone",
                e.label
            ));
            continue;
        };
        if !seen.insert((e.entity, id)) {
            continue;
        }
        let Some(rec) = records.get(e.entity.path()).and_then(|r| r.get(&id)) else {
            tp.conflicts
                .push(conflict(e, id, "is no longer in Halo; left alone"));
            continue;
        };
        if e.fields.is_empty() {
            tp.notes.push(format!(
                "{} (#{id}): journaled by an older version without its old values; left alone",
                e.label
            ));
            continue;
        }
        // A field Halo's lists do not return (absent from the record: `azure_tenant_id`, custom fields,
        // halo-api.md) cannot be read back; the others decide whether Halo still holds what the run wrote.
        if let Some(f) = e
            .fields
            .iter()
            .find(|f| rec.get(&f.field).is_some_and(|now| !same_value(now, &f.to)))
        {
            tp.conflicts.push(conflict(
                e,
                id,
                &format!(
                    "changed in Halo since run {}: {} is now {} (the run wrote {}); left alone",
                    run.run,
                    f.field,
                    rec.get(&f.field).unwrap_or(&Value::Null),
                    f.to
                ),
            ));
            continue;
        }
        match inverse(e, id, run.run, policy) {
            Inverse::Change(c) if c.action == Action::Deactivate => {
                deactivations
                    .entry(e.customer_id.clone())
                    .or_default()
                    .push(c);
            }
            Inverse::Change(c) => tp.changes.push(c),
            Inverse::Note(n) => tp.notes.push(n),
        }
    }
    for (tenant, changes) in deactivations {
        let active = active_linked(records, &tenant);
        let tp = by_tenant.get_mut(&tenant).expect("entry made above");
        guard(tp, changes, active, policy);
    }
    for tp in by_tenant.values_mut() {
        tp.changes
            .sort_by(|a, b| (a.action, &a.label).cmp(&(b.action, &b.label)));
    }
    by_tenant.into_values().collect()
}

enum Inverse {
    Change(Change),
    Note(String),
}

fn inverse(e: &JournalEntry, id: i64, run: u64, policy: &UndoPolicy) -> Inverse {
    let back = |action: Action, reason: String, fields: Vec<FieldChange>| {
        Inverse::Change(Change {
            module: e.module,
            action,
            entity: e.entity,
            halo_id: Some(id),
            source_key: e.source_key.clone(),
            label: e.label.clone(),
            reason,
            fields,
            extra: serde_json::Map::new(),
        })
    };
    let swapped: Vec<FieldChange> = e
        .fields
        .iter()
        .map(|f| FieldChange {
            field: f.field.clone(),
            from: f.to.clone(),
            // The planners record a text field Halo held empty as `null` (they compare null, missing and ""
            // alike). The reference does not say whether Halo returns an empty field as "" or null; the
            // fields csp-sync writes are all text, so "" gives the field back empty either way, and reads
            // back as the emulator's own empty value.
            to: if f.from.is_null() {
                Value::String(String::new())
            } else {
                f.from.clone()
            },
        })
        .collect();
    match e.action {
        Action::Deactivate => back(
            Action::Reactivate,
            format!("undo of run {run}: it deactivated this record"),
            swapped,
        ),
        Action::Reactivate => back(
            Action::Deactivate,
            format!("undo of run {run}: it reactivated this record"),
            swapped,
        ),
        Action::Update | Action::Link => back(
            Action::Update,
            format!("undo of run {run}: old values back"),
            swapped,
        ),
        Action::Create if policy.deactivate_created && e.entity == HaloEntity::Users => back(
            Action::Deactivate,
            format!("undo of run {run}: it created this contact (--deactivate-created)"),
            vec![FieldChange {
                field: "inactive".into(),
                from: Value::Bool(false),
                to: Value::Bool(true),
            }],
        ),
        Action::Create => Inverse::Note(format!(
            "{} (#{id}) was created by run {run}: records are never deleted{}",
            e.label,
            if e.entity == HaloEntity::Users {
                "; --deactivate-created deactivates it"
            } else {
                ""
            }
        )),
    }
}

fn conflict(e: &JournalEntry, id: i64, why: &str) -> Conflict {
    Conflict {
        module: e.module,
        source_key: e.source_key.clone(),
        label: e.label.clone(),
        reason: format!("{} (#{id}) {why}", e.entity.path()),
        halo_ids: vec![id],
    }
}

/// Active Halo contacts linked to the tenant (the deactivation guard's base, as in the users planner).
fn active_linked(records: &BTreeMap<&str, Records<'_>>, tenant: &str) -> usize {
    records.get("Users").map_or(0, |users| {
        users
            .values()
            .filter(|u| u.get("inactive").and_then(Value::as_bool) != Some(true))
            .filter(|u| {
                u.get("azureoid")
                    .and_then(Value::as_str)
                    .is_some_and(|o| !o.is_empty())
            })
            .filter(|u| {
                u.get("azure_tenant_id")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.eq_ignore_ascii_case(tenant))
            })
            .count()
    })
}

/// The deactivation guard of SPEC 8: over both limits, none of the tenant's deactivations pass.
fn guard(tp: &mut TenantPlan, changes: Vec<Change>, active: usize, policy: &UndoPolicy) {
    let n = changes.len();
    let percent = if active == 0 {
        100.0
    } else {
        n as f64 * 100.0 / active as f64
    };
    if n > policy.max_deactivations as usize
        && percent > policy.max_deactivation_percent
        && !policy.allow_deactivations
    {
        tp.held_back.push(HeldBack {
            module: changes[0].module,
            guard: GUARD_DEACTIVATION.into(),
            reason: format!(
                "{} ({percent:.1}% of {active} active synced users) exceed both [safety] \
                 max_deactivations = {} and max_deactivation_percent = {}; review them and rerun with \
                 --allow-deactivations to apply them",
                crate::render::count(n, "deactivation", "deactivations"),
                policy.max_deactivations,
                policy.max_deactivation_percent
            ),
            changes,
        });
    } else {
        tp.changes.extend(changes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::RunStart;
    use crate::plan::Module;
    use serde_json::json;

    fn entry(action: Action, id: i64, fields: Vec<(&str, Value, Value)>) -> JournalEntry {
        JournalEntry {
            customer_id: "t".into(),
            module: Module::Users,
            action,
            entity: HaloEntity::Users,
            halo_id: Some(id),
            source_key: format!("oid{id}"),
            label: format!("u{id}@x"),
            reason: String::new(),
            fields: fields
                .into_iter()
                .map(|(f, a, b)| FieldChange {
                    field: f.into(),
                    from: a,
                    to: b,
                })
                .collect(),
            tenant: "T".into(),
        }
    }

    fn run(applied: Vec<JournalEntry>) -> JournalRun {
        JournalRun {
            run: 7,
            start: RunStart {
                started_at: String::new(),
                command: "sync".into(),
                modules: vec![],
                tenants: vec![],
                undo_of: None,
                pid: 0,
            },
            applied,
            failed: vec![],
            end: None,
        }
    }

    fn policy() -> UndoPolicy {
        UndoPolicy {
            deactivate_created: false,
            max_deactivations: 5,
            max_deactivation_percent: 20.0,
            allow_deactivations: false,
        }
    }

    #[test]
    fn inverse_of_each_action_and_records_changed_since_left_alone() {
        let recs = [
            json!({"id": 1, "inactive": true, "azureoid": "a", "azure_tenant_id": "t"}),
            json!({"id": 2, "inactive": false, "title": "Boss"}),
            json!({"id": 3, "inactive": false, "title": "Edited by hand"}),
            json!({"id": 4, "inactive": false, "azureoid": "d"}),
        ];
        let users: Records = recs
            .iter()
            .map(|r| (r["id"].as_i64().unwrap(), r))
            .collect();
        let records = BTreeMap::from([("Users", users)]);
        let r = run(vec![
            entry(
                Action::Deactivate,
                1,
                vec![("inactive", json!(false), json!(true))],
            ),
            entry(
                Action::Update,
                2,
                vec![("title", json!("Dev"), json!("Boss"))],
            ),
            entry(
                Action::Update,
                3,
                vec![("title", json!("Dev"), json!("Boss"))],
            ),
            entry(
                Action::Create,
                4,
                vec![("azureoid", json!(null), json!("d"))],
            ),
            entry(Action::Update, 9, vec![("title", json!("a"), json!("b"))]),
        ]);
        let plan = plan_undo(&r, &records, &policy());
        let t = &plan[0];
        let got: Vec<_> = t
            .changes
            .iter()
            .map(|c| (c.action, c.halo_id.unwrap(), c.fields[0].to.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Action::Update, 2, json!("Dev")),
                (Action::Reactivate, 1, json!(false)),
            ]
        );
        let conflicts: Vec<i64> = t.conflicts.iter().map(|c| c.halo_ids[0]).collect();
        assert_eq!(conflicts, vec![9, 3]);
        assert!(
            t.notes.iter().any(|n| n.contains("never deleted")),
            "{:?}",
            t.notes
        );

        let p = UndoPolicy {
            deactivate_created: true,
            max_deactivations: 0,
            max_deactivation_percent: 0.0,
            ..policy()
        };
        let plan = plan_undo(&r, &records, &p);
        assert_eq!(
            plan[0].held_back.len(),
            1,
            "the guard holds the deactivation"
        );
        assert_eq!(plan[0].held_back[0].changes[0].halo_id, Some(4));
    }
}
