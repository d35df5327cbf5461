//! Fixtures the planner tests share (compiled for tests only): reading a planned change's fields and the
//! Halo client every planner's snapshot starts from.

use std::collections::BTreeMap;

use serde_json::Value;

use super::Change;
use crate::model::HaloClient;

/// The value a change writes to `field`, if it writes that field.
pub fn written<'c>(c: &'c Change, field: &str) -> Option<&'c Value> {
    c.fields.iter().find(|f| f.field == field).map(|f| &f.to)
}

/// A change's field changes by field name: `(from, to)`.
pub fn field_changes(c: &Change) -> BTreeMap<String, (Value, Value)> {
    c.fields
        .iter()
        .map(|f| (f.field.clone(), (f.from.clone(), f.to.clone())))
        .collect()
}

/// A Halo client with a main site.
pub fn client(id: i64, name: &str, main_site_id: i64) -> HaloClient {
    HaloClient {
        id,
        name: name.into(),
        main_site_id: Some(main_site_id),
        ..HaloClient::default()
    }
}
