//! After a write: what Halo kept. The reply to a POST is the saved record (halo-api.md 4), so a field sent
//! with one value and saved with another is a field Halo does not keep (possibly `licences_in_use`,
//! unverified). It is reported once, remembered in the state ([`HaloMemory::unkept`]) and from then on
//! compared with the value csp-sync last wrote, so it is not rewritten on every run.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::apply::ApplyReport;
use crate::halo_memory::HaloMemory;
use crate::plan::{Change, HaloEntity};

/// A field Halo did not keep: `(field, sent, saved)`.
pub type NotKept = (String, Value, Value);

/// A value as compared here: strings trimmed and lower-cased, a date-time's `Z` or zero fraction dropped,
/// whole numbers as numbers.
fn canonical(v: &Value) -> Value {
    match v {
        Value::String(s) => {
            let mut t = s.trim().to_lowercase();
            for suffix in ["z", ".000", ".0000000"] {
                if t.len() > 19 && t.ends_with(suffix) {
                    t.truncate(t.len() - suffix.len());
                }
            }
            Value::String(t)
        }
        Value::Number(n) => n.as_f64().map_or_else(|| v.clone(), Value::from),
        other => other.clone(),
    }
}

/// The written fields of `change` whose saved value differs from the one sent. A field absent from the
/// reply says nothing (a reply may be partial) and is not counted.
pub fn not_kept(change: &Change, saved: &Value) -> Vec<NotKept> {
    change
        .fields
        .iter()
        .filter_map(|f| {
            let got = saved.get(&f.field)?;
            (canonical(got) != canonical(&f.to))
                .then(|| (f.field.clone(), f.to.clone(), got.clone()))
        })
        .collect()
}

/// Adds to `memory` what an applied plan teaches: fields Halo did not keep (returned, one line per field,
/// only when newly seen) and the values written to fields Halo's reads do not return.
pub fn remember(
    report: &ApplyReport<'_>,
    memory: &mut HaloMemory,
    unread: &BTreeMap<HaloEntity, BTreeSet<String>>,
) -> Vec<String> {
    let mut news = Vec::new();
    let none = BTreeSet::new();
    for a in &report.applied {
        let entity = a.change.entity;
        if let Some(saved) = &a.saved {
            for (field, sent, got) in not_kept(a.change, saved) {
                if memory.mark_unkept(entity, &field) {
                    news.push(format!(
                        "Halo did not keep `{field}` of {} {} ({}): sent {sent}, saved {got}. csp-sync now \
                         writes it only when its source value changes (remembered in the state directory); \
                         check the field in Halo",
                        entity.path(),
                        a.halo_id.map_or_else(|| "(new)".into(), |id| format!("#{id}")),
                        a.change.label,
                    ));
                }
            }
        }
        if let Some(id) = a.halo_id {
            memory.record(a.change, id, unread.get(&entity).unwrap_or(&none));
        }
    }
    news
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Action, FieldChange, Module};
    use serde_json::{Map, json};

    #[test]
    fn saved_values_that_differ_are_not_kept_and_absent_ones_say_nothing() {
        let c = Change {
            module: Module::Licences,
            action: Action::Update,
            entity: HaloEntity::SoftwareLicence,
            halo_id: Some(5),
            source_key: "s".into(),
            label: "SPB".into(),
            reason: String::new(),
            fields: [
                ("licences_in_use", json!(7)),
                ("status", json!("Active")),
                ("end_date", json!("2027-01-01T00:00:00Z")),
                ("name", json!("SPB")),
            ]
            .into_iter()
            .map(|(f, v)| FieldChange {
                field: f.into(),
                from: Value::Null,
                to: v,
            })
            .collect(),
            extra: Map::new(),
        };
        let saved = json!({"id": 5, "licences_in_use": 0, "status": "active", "end_date": "2027-01-01T00:00:00"});
        let out = not_kept(&c, &saved);
        assert_eq!(
            out,
            vec![("licences_in_use".to_string(), json!(7), json!(0))]
        );
    }
}
