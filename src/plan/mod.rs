//! Pure planning: (source snapshot, Halo snapshot, mapping, policy, now) -> a plan of changes with reasons.
//! No I/O happens below this module; every input is a plain value so the rules can be tested exhaustively.
//!
//! The types here are the plan contract: `diff --out` writes a [`Plan`] as JSON (`"version": 1`),
//! `sync --plan` reads it back and applies exactly its changes.

pub mod assets;
pub mod billing;
pub mod contract;
pub mod licences;
pub mod schema;
pub mod tenants;
#[cfg(test)]
pub(crate) mod test_support;
pub mod undo;
pub mod users;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The JSON format version of [`Plan`].
pub const PLAN_VERSION: u32 = 1;

/// A sync module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Module {
    Tenants,
    Users,
    Licences,
    Assets,
    Billing,
}

impl Module {
    pub const ALL: [Module; 5] = [
        Module::Tenants,
        Module::Users,
        Module::Licences,
        Module::Assets,
        Module::Billing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Module::Tenants => "tenants",
            Module::Users => "users",
            Module::Licences => "licences",
            Module::Assets => "assets",
            Module::Billing => "billing",
        }
    }

    /// Parses a module name; `licenses` is accepted as an alias of `licences`.
    pub fn parse(name: &str) -> Option<Module> {
        match name.trim().to_ascii_lowercase().as_str() {
            "tenants" => Some(Module::Tenants),
            "users" => Some(Module::Users),
            "licences" | "licenses" => Some(Module::Licences),
            "assets" => Some(Module::Assets),
            "billing" => Some(Module::Billing),
            _ => None,
        }
    }
}

impl std::fmt::Display for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a change does to a Halo record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Link,
    Deactivate,
    Reactivate,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Link => "link",
            Action::Deactivate => "deactivate",
            Action::Reactivate => "reactivate",
        }
    }
}

/// The Halo API area a change writes to; its value is the path segment under `/api/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum HaloEntity {
    Client,
    Site,
    Users,
    SoftwareLicence,
    Asset,
    Invoice,
}

impl HaloEntity {
    /// Path segment under `{url}/api/`.
    pub fn path(self) -> &'static str {
        match self {
            HaloEntity::Client => "Client",
            HaloEntity::Site => "Site",
            HaloEntity::Users => "Users",
            HaloEntity::SoftwareLicence => "SoftwareLicence",
            HaloEntity::Asset => "Asset",
            HaloEntity::Invoice => "Invoice",
        }
    }
}

/// One field's change: Halo's current value (`from`, `null` for a create) and the value to write (`to`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub from: Value,
    pub to: Value,
}

/// One change to one Halo record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub module: Module,
    pub action: Action,
    pub entity: HaloEntity,
    /// The Halo record id; `None` for a create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halo_id: Option<i64>,
    /// The source record's key: Entra object id, Partner Center subscription id, Intune id, invoice id.
    pub source_key: String,
    /// A human label for the record (e-mail address, product name, device name).
    pub label: String,
    /// Why this change is proposed, in words a technician understands ("disabled in Entra").
    pub reason: String,
    /// Field-level changes; their `to` values are written.
    pub fields: Vec<FieldChange>,
    /// Fields written with the record but not shown as differences (`client_id`, `site_id` on a create,
    /// `sendwelcomeemail`, ...).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

impl Change {
    /// The JSON object to POST to Halo for this change: `id` (for everything but a create), the `to` value
    /// of every field change, the extra fields, and `_dont_fire_automations` unless automations should fire.
    pub fn payload(&self, fire_automations: bool) -> Value {
        let mut body = Map::new();
        if let Some(id) = self.halo_id {
            body.insert("id".into(), Value::from(id));
        }
        for (k, v) in &self.extra {
            body.insert(k.clone(), v.clone());
        }
        let mut type_fields = Vec::new();
        for f in &self.fields {
            match type_field_id(&f.field) {
                Some(id) => type_fields.push((id, f.to.clone())),
                None => {
                    body.insert(f.field.clone(), f.to.clone());
                }
            }
        }
        if !type_fields.is_empty() {
            // Asset type fields travel as `fields: [{"id": N, "value": ...}]` (halo-api.md 3.4), merged
            // into the unchanged values the change carries in `extra`.
            let mut list = match body.remove("fields") {
                Some(Value::Array(a)) => a,
                _ => Vec::new(),
            };
            for (id, value) in type_fields {
                match list
                    .iter_mut()
                    .find(|f| f.get("id").and_then(Value::as_i64) == Some(id))
                {
                    Some(f) => f["value"] = value,
                    None => list.push(serde_json::json!({"id": id, "value": value})),
                }
            }
            body.insert("fields".into(), Value::Array(list));
        }
        if !fire_automations {
            body.insert("_dont_fire_automations".into(), Value::Bool(true));
        }
        Value::Object(body)
    }
}

/// The asset type field id of a change's field name `field:<id>` (see [`assets::FIELD_PREFIX`]).
pub fn type_field_id(field: &str) -> Option<i64> {
    field.strip_prefix(assets::FIELD_PREFIX)?.parse().ok()
}

/// A field's current value in a raw Halo record: a top-level key, or for `field:<id>` the `value` of that
/// entry of the record's `fields` list.
pub fn record_value<'a>(record: &'a Value, field: &str) -> Option<&'a Value> {
    match type_field_id(field) {
        Some(id) => record
            .get("fields")?
            .as_array()?
            .iter()
            .find(|f| f.get("id").and_then(crate::api::value_to_i64) == Some(id))?
            .get("value"),
        None => record.get(field),
    }
}

/// A source record csp-sync could not place without guessing; reported, never written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conflict {
    pub module: Module,
    pub source_key: String,
    pub label: String,
    pub reason: String,
    /// The Halo records involved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub halo_ids: Vec<i64>,
}

/// Changes a safety guard held back, with the guard's reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldBack {
    pub module: Module,
    /// Which guard: `deactivation_guard`, `empty_source_guard`.
    pub guard: String,
    pub reason: String,
    pub changes: Vec<Change>,
}

/// Everything planned for one customer tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TenantPlan {
    pub customer_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halo_client_id: Option<i64>,
    pub changes: Vec<Change>,
    #[serde(default)]
    pub conflicts: Vec<Conflict>,
    #[serde(default)]
    pub held_back: Vec<HeldBack>,
    /// Failures that kept part of this tenant from being planned (a Graph read refused, ...). Any error
    /// makes the run exit 1.
    #[serde(default)]
    pub errors: Vec<String>,
    /// Informational notes ("2 users within their leaver grace period").
    #[serde(default)]
    pub notes: Vec<String>,
}

/// Counts over a whole plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub link: usize,
    pub deactivate: usize,
    pub reactivate: usize,
    pub conflicts: usize,
    pub held_back: usize,
    pub errors: usize,
}

/// A whole plan: the JSON of `diff`, the file of `diff --out`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub version: u32,
    /// RFC 3339 time the plan was made.
    pub generated_at: String,
    pub modules: Vec<Module>,
    pub tenants: Vec<TenantPlan>,
    pub summary: Summary,
    /// The seat view of the licences module: per tenant and SKU, purchased / assigned / available with
    /// flags. Informational: `sync --plan` writes nothing from it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seats: Vec<licences::SeatRow>,
    /// The billing module's figures per billed period: each customer's cost, price and margin, and the
    /// total next to the export's own. Informational; the invoices themselves are changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub billing: Vec<billing::PeriodBill>,
    /// The open period's estimate (SPEC 7): never changes, never counted by `--detailed-exitcode`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub estimates: Vec<billing::Estimate>,
    /// The device summary of the assets module, per tenant. Informational, like `seats`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<assets::DeviceSummary>,
    /// How each Halo entity was read for this plan: `list` or `report` (`[halo] bulk_read`), or
    /// `list_report_refused`. Informational.
    #[serde(default, skip_serializing_if = "crate::halo_read::ReadPaths::is_empty")]
    pub halo_read: crate::halo_read::ReadPaths,
}

impl Plan {
    /// Builds a plan from tenant plans, sorting tenants by name then id and computing the summary.
    pub fn new(generated_at: String, modules: Vec<Module>, mut tenants: Vec<TenantPlan>) -> Plan {
        tenants.sort_by(|a, b| {
            a.name
                .to_lowercase()
                .cmp(&b.name.to_lowercase())
                .then_with(|| a.customer_id.cmp(&b.customer_id))
        });
        let summary = Summary::of(&tenants);
        Plan {
            version: PLAN_VERSION,
            generated_at,
            modules,
            tenants,
            summary,
            seats: Vec::new(),
            billing: Vec::new(),
            estimates: Vec::new(),
            devices: Vec::new(),
            halo_read: crate::halo_read::ReadPaths::default(),
        }
    }

    /// Every change of the plan, with its tenant.
    pub fn changes(&self) -> impl Iterator<Item = (&TenantPlan, &Change)> {
        self.tenants
            .iter()
            .flat_map(|t| t.changes.iter().map(move |c| (t, c)))
    }

    pub fn has_changes(&self) -> bool {
        self.tenants.iter().any(|t| !t.changes.is_empty())
    }

    pub fn has_held_back(&self) -> bool {
        self.tenants.iter().any(|t| !t.held_back.is_empty())
    }

    pub fn has_errors(&self) -> bool {
        self.tenants.iter().any(|t| !t.errors.is_empty())
    }
}

impl Summary {
    pub fn of(tenants: &[TenantPlan]) -> Summary {
        let mut s = Summary::default();
        for t in tenants {
            for c in &t.changes {
                match c.action {
                    Action::Create => s.create += 1,
                    Action::Update => s.update += 1,
                    Action::Link => s.link += 1,
                    Action::Deactivate => s.deactivate += 1,
                    Action::Reactivate => s.reactivate += 1,
                }
            }
            s.conflicts += t.conflicts.len();
            s.held_back += t.held_back.iter().map(|h| h.changes.len()).sum::<usize>();
            s.errors += t.errors.len();
        }
        s
    }
}

/// Deterministic order of a module's changes: by action, then label (case-insensitive), then source key.
pub fn change_order(a: &Change, b: &Change) -> std::cmp::Ordering {
    (a.action, a.label.to_lowercase(), &a.source_key).cmp(&(
        b.action,
        b.label.to_lowercase(),
        &b.source_key,
    ))
}

/// Lower-cases and trims an identifier or e-mail address for comparison.
pub fn norm(s: &str) -> String {
    s.trim().to_lowercase()
}

/// Loose equality of Halo values: strings case-insensitively and trimmed, `null` = missing = "".
pub fn same_value(a: &Value, b: &Value) -> bool {
    let norm = |v: &Value| match v {
        Value::Null => Value::String(String::new()),
        Value::String(s) => Value::String(s.trim().to_lowercase()),
        Value::Number(n) => n.as_f64().map_or(v.clone(), Value::from),
        other => other.clone(),
    };
    norm(a) == norm(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_id_changed_fields_and_automation_flag() {
        let c = Change {
            module: Module::Users,
            action: Action::Update,
            entity: HaloEntity::Users,
            halo_id: Some(7),
            source_key: "oid".into(),
            label: "a@b".into(),
            reason: "job title changed in Entra".into(),
            fields: vec![FieldChange {
                field: "title".into(),
                from: Value::from("Old"),
                to: Value::from("New"),
            }],
            extra: Map::new(),
        };
        assert_eq!(
            c.payload(false),
            serde_json::json!({"id": 7, "title": "New", "_dont_fire_automations": true})
        );
        assert_eq!(
            c.payload(true),
            serde_json::json!({"id": 7, "title": "New"})
        );
    }

    #[test]
    fn module_aliases() {
        assert_eq!(Module::parse("Licenses"), Some(Module::Licences));
        assert_eq!(Module::parse("nope"), None);
    }
}
