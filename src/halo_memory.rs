//! What csp-sync remembers about Halo between runs because Halo's reads do not say it (SPEC 7 "What a read
//! returns", SPEC 9): the values it last wrote to fields a list read does not return (or that Halo does not
//! keep), the fields Halo was seen not to keep, and, for an older Halo whose user list has no `azureoid`,
//! each user's `azureoid` read once by id.
//!
//! A field whose Halo value is unknown is compared with the value csp-sync last wrote there, never with the
//! missing value: it is written at create and link, then only when its source value changes. Losing this
//! memory costs one rewrite of such fields (with the values the source has), never a wrong change.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::plan::{Change, HaloEntity};

/// Fields csp-sync writes that Halo's user list never returns (`Users_List` of Halo's OpenAPI document,
/// halo-api.md 3.3), whatever this run's read showed: remembered on every write.
pub const USER_LISTLESS: &[&str] = &["azure_tenant_id", "department"];

/// Fields csp-sync writes that Halo's asset list never returns (`Device_List`, SPEC 7).
pub const ASSET_LISTLESS: &[&str] = &["users", "azure_userprincipalname"];

/// The contract flag fields (`[users] contract_mode = "flag"`): remembered on every write too, because Halo
/// may compute `covered_by_contract` from its own contracts rather than keep what was written, and the user
/// custom field is read back only when asked for (see `plan::contract`).
pub const USER_CONTRACT_FLAGS: &[&str] = &["covered_by_contract", "customfields"];

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HaloMemory {
    /// `"Users/1234"` -> field -> the value csp-sync last wrote there.
    #[serde(default)]
    pub written: BTreeMap<String, Fields>,
    /// `"SoftwareLicence.licences_in_use"`: fields Halo accepted in a POST but did not keep.
    #[serde(default)]
    pub unkept: BTreeSet<String>,
    /// Halo user id -> its `azureoid` (`""` when it has none), read by id from an older Halo whose user
    /// list lacks the field.
    #[serde(default)]
    pub azureoid: BTreeMap<i64, String>,
    /// Entity path -> the records its read held at the last sync: a report with no rows for an entity
    /// that had some is a failed read, not an empty Halo (SPEC 7, `crate::halo_read`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub read: BTreeMap<String, usize>,
}

/// One record's remembered fields: field -> value, sorted by field, stored and compared like a map of
/// them. A sorted vector rather than a `BTreeMap`: a large estate remembers a few fields of each of tens
/// of thousands of records, and a map's node costs some 600 bytes however few it holds (issue 15).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fields(Vec<(String, Value)>);

impl Fields {
    /// The value remembered for `field`.
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.0
            .binary_search_by(|(f, _)| f.as_str().cmp(field))
            .ok()
            .map(|i| &self.0[i].1)
    }

    /// Remembers `value` for `field`, returning the value it replaces.
    pub fn insert(&mut self, field: String, value: Value) -> Option<Value> {
        match self.0.binary_search_by(|(f, _)| f.as_str().cmp(&field)) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (field, value));
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The fields and values, by field.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.0.iter().map(|(f, v)| (f, v))
    }
}

impl Serialize for Fields {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Fields;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of fields to values")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Fields, A::Error> {
                let mut out = Fields::default();
                // A repeated field keeps its last value, as a map's would.
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    out.insert(k, v);
                }
                out.0.shrink_to_fit();
                Ok(out)
            }
        }
        d.deserialize_map(Visitor)
    }
}

const ALL_ENTITIES: &[HaloEntity] = &[
    HaloEntity::Client,
    HaloEntity::Site,
    HaloEntity::Users,
    HaloEntity::SoftwareLicence,
    HaloEntity::Asset,
    HaloEntity::Invoice,
];

fn record_key(entity: HaloEntity, id: i64) -> String {
    format!("{}/{id}", entity.path())
}

fn field_key(entity: HaloEntity, field: &str) -> String {
    format!("{}.{field}", entity.path())
}

impl HaloMemory {
    /// The records each entity's read held at the last sync.
    pub fn read_counts(&self) -> BTreeMap<HaloEntity, usize> {
        ALL_ENTITIES
            .iter()
            .filter_map(|e| self.read.get(e.path()).map(|n| (*e, *n)))
            .collect()
    }

    /// Notes how many records an entity's read held this run (saved by a sync only).
    pub fn set_read_count(&mut self, entity: HaloEntity, records: usize) {
        self.read.insert(entity.path().to_string(), records);
    }

    /// The value csp-sync last wrote to `field` of a record, if it remembers one.
    pub fn last_written(&self, entity: HaloEntity, id: i64, field: &str) -> Option<&Value> {
        self.written.get(&record_key(entity, id))?.get(field)
    }

    /// Remembers `value` as if csp-sync had written it to `field` of a record (found already there).
    pub fn remember(&mut self, entity: HaloEntity, id: i64, field: &str, value: Value) {
        self.written
            .entry(record_key(entity, id))
            .or_default()
            .insert(field.to_string(), value);
    }

    /// Whether Halo was seen not to keep `field` of `entity`.
    pub fn is_unkept(&self, entity: HaloEntity, field: &str) -> bool {
        self.unkept.contains(&field_key(entity, field))
    }

    /// Records that Halo does not keep `field` of `entity`; `true` when this is news.
    pub fn mark_unkept(&mut self, entity: HaloEntity, field: &str) -> bool {
        self.unkept.insert(field_key(entity, field))
    }

    /// Forgets what it remembers of `entity` records other than `ids` (those Halo still lists), so the
    /// memory stays as large as Halo.
    pub fn retain_records(&mut self, entity: HaloEntity, ids: &BTreeSet<i64>) {
        let prefix = format!("{}/", entity.path());
        self.written.retain(|k, _| {
            k.strip_prefix(&prefix)
                .is_none_or(|id| id.parse::<i64>().is_ok_and(|id| ids.contains(&id)))
        });
    }

    /// Remembers what an applied change wrote to the fields in `remembered` (the entity's list-less
    /// fields, those Halo does not keep, and those this run's read lacked), and a written `azureoid` when
    /// the memory holds azureoids (older Halo).
    pub fn record(&mut self, change: &Change, halo_id: i64, remembered: &BTreeSet<String>) {
        let key = record_key(change.entity, halo_id);
        if change.entity == HaloEntity::Asset
            && change.action == crate::plan::Action::Create
            && !change.fields.iter().any(|f| f.field == "users")
        {
            // An asset csp-sync created without a user holds none as far as csp-sync wrote: its primary
            // user is linked later without reading the asset first (`modules::assets`).
            self.written
                .entry(key.clone())
                .or_default()
                .insert("users".into(), Value::Array(Vec::new()));
        }
        for f in &change.fields {
            let keep = remembered.contains(&f.field)
                || self.is_unkept(change.entity, &f.field)
                || (change.entity == HaloEntity::Users
                    && (USER_LISTLESS.contains(&f.field.as_str())
                        || USER_CONTRACT_FLAGS.contains(&f.field.as_str())))
                || (change.entity == HaloEntity::Asset
                    && ASSET_LISTLESS.contains(&f.field.as_str()))
                // Every licence field written: a later reason tells a Halo edit from a Partner Center
                // change by it (`plan::licences`). Comparisons still read it only where Halo's value is
                // unknown.
                || change.entity == HaloEntity::SoftwareLicence;
            if keep {
                self.written
                    .entry(key.clone())
                    .or_default()
                    .insert(f.field.clone(), f.to.clone());
            }
            if change.entity == HaloEntity::Users
                && f.field == "azureoid"
                && !self.azureoid.is_empty()
                && let Some(oid) = f.to.as_str()
            {
                self.azureoid.insert(halo_id, oid.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Action, FieldChange, Module};
    use serde_json::{Map, json};

    fn change(fields: &[(&str, Value)]) -> Change {
        Change {
            module: Module::Users,
            action: Action::Update,
            entity: HaloEntity::Users,
            halo_id: Some(7),
            source_key: "oid".into(),
            label: "a@b".into(),
            reason: String::new(),
            fields: fields
                .iter()
                .map(|(f, v)| FieldChange {
                    field: (*f).to_string(),
                    from: Value::Null,
                    to: v.clone(),
                })
                .collect(),
            extra: Map::new(),
        }
    }

    #[test]
    fn remembered_fields_are_stored_as_a_map_sorted_by_field() {
        let text = r#"{"written":{"Users/7":{"title":"b","department":"a","title":"c"}}}"#;
        let m: HaloMemory = serde_json::from_str(text).unwrap();
        assert_eq!(
            m.last_written(HaloEntity::Users, 7, "title"),
            Some(&json!("c"))
        );
        assert_eq!(m.last_written(HaloEntity::Users, 7, "name"), None);
        let as_map: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::from([(
            "Users/7".to_string(),
            BTreeMap::from([
                ("department".to_string(), json!("a")),
                ("title".to_string(), json!("c")),
            ]),
        )]);
        assert_eq!(
            serde_json::to_value(&m.written).unwrap(),
            serde_json::to_value(&as_map).unwrap()
        );
        assert_eq!(
            serde_json::to_string(&m.written).unwrap(),
            r#"{"Users/7":{"department":"a","title":"c"}}"#
        );
    }

    #[test]
    fn remembers_only_listless_and_unkept_fields() {
        let mut m = HaloMemory::default();
        assert!(m.mark_unkept(HaloEntity::Users, "title"));
        assert!(!m.mark_unkept(HaloEntity::Users, "title"));
        let c = change(&[
            ("department", json!("Sales")),
            ("name", json!("A")),
            ("title", json!("Boss")),
        ]);
        m.record(&c, 7, &BTreeSet::new());
        assert_eq!(
            m.last_written(HaloEntity::Users, 7, "department"),
            Some(&json!("Sales"))
        );
        assert_eq!(
            m.last_written(HaloEntity::Users, 7, "title"),
            Some(&json!("Boss"))
        );
        assert_eq!(m.last_written(HaloEntity::Users, 7, "name"), None);
        let back: HaloMemory = serde_json::from_value(serde_json::to_value(&m).unwrap()).unwrap();
        assert_eq!(back, m);
        m.retain_records(HaloEntity::SoftwareLicence, &BTreeSet::new());
        assert!(m.last_written(HaloEntity::Users, 7, "department").is_some());
        m.retain_records(HaloEntity::Users, &BTreeSet::from([8]));
        assert!(m.written.is_empty());
    }

    #[test]
    fn remembers_every_licence_field_written() {
        let mut m = HaloMemory::default();
        let mut c = change(&[("count", json!(10)), ("name", json!("M365 BP"))]);
        c.module = Module::Licences;
        c.entity = HaloEntity::SoftwareLicence;
        m.record(&c, 3, &BTreeSet::new());
        assert_eq!(
            m.last_written(HaloEntity::SoftwareLicence, 3, "count"),
            Some(&json!(10))
        );
        assert_eq!(
            m.last_written(HaloEntity::SoftwareLicence, 3, "name"),
            Some(&json!("M365 BP"))
        );
    }
}
