//! What a saved plan may hold, per module: the Halo entity it writes, its actions, and the fields it sets
//! (shown differences and extra fields). `sync --plan` checks a plan file against this before anything is
//! read or written, so a hand-edited plan cannot write a contact's fields onto an invoice, or fields no
//! planner of this version writes. Keep it in step with the planners (`plan::{tenants, users, licences}`);
//! the black-box `diff --out` / `sync --plan` round trips fail when a planner writes something this does
//! not list.

use super::{Action, Change, HaloEntity, Module, Plan};

/// One module's part of the plan format.
#[derive(Debug, Clone, Copy)]
pub struct ModuleSchema {
    pub module: Module,
    pub entity: HaloEntity,
    pub actions: &'static [Action],
    /// Fields of `fields` (their `to` values are written).
    pub fields: &'static [&'static str],
    /// Fields of `extra` (written, not shown as differences).
    pub extra: &'static [&'static str],
}

/// The plan format of this version (`"version": 1`).
pub const SCHEMA: &[ModuleSchema] = &[
    ModuleSchema {
        module: Module::Tenants,
        entity: HaloEntity::Client,
        actions: &[Action::Create],
        fields: &["name", "azure_tenants"],
        extra: &[],
    },
    ModuleSchema {
        module: Module::Users,
        entity: HaloEntity::Users,
        actions: &[
            Action::Create,
            Action::Update,
            Action::Link,
            Action::Deactivate,
            Action::Reactivate,
        ],
        // Every field the users planner compares is one it may write.
        fields: super::users::COMPARED_FIELDS,
        extra: &["client_id", "site_id", "sendwelcomeemail"],
    },
    ModuleSchema {
        module: Module::Licences,
        entity: HaloEntity::SoftwareLicence,
        actions: &[Action::Create, Action::Update, Action::Link],
        fields: &[
            "name",
            "count",
            "licences_in_use",
            "billing_cycle",
            "term_duration",
            "autorenew",
            "start_date",
            "end_date",
            "product_sku",
            "manufacturer",
            "third_party_product",
            "tenant_id",
            "status",
        ],
        extra: &["client_id"],
    },
];

/// What is wrong with one change, or `None` when it fits the schema.
pub fn problem(change: &Change) -> Option<String> {
    let Some(schema) = SCHEMA.iter().find(|s| s.module == change.module) else {
        return Some(format!(
            "module {} writes nothing in this version",
            change.module
        ));
    };
    if change.entity != schema.entity {
        return Some(format!(
            "entity {} does not belong to module {} (it writes {})",
            change.entity.path(),
            change.module,
            schema.entity.path()
        ));
    }
    if !schema.actions.contains(&change.action) {
        return Some(format!(
            "module {} does not {}",
            change.module,
            change.action.as_str()
        ));
    }
    if let Some(f) = change
        .fields
        .iter()
        .find(|f| !schema.fields.contains(&f.field.as_str()))
    {
        return Some(format!(
            "field {:?} is not one module {} writes",
            crate::bounded::shorten(&f.field, 60),
            change.module
        ));
    }
    if let Some(k) = change
        .extra
        .keys()
        .find(|k| !schema.extra.contains(&k.as_str()))
    {
        return Some(format!(
            "extra field {:?} is not one module {} writes",
            crate::bounded::shorten(k, 60),
            change.module
        ));
    }
    if change.action == Action::Create && change.halo_id.is_some() {
        return Some("a create carries a Halo id".into());
    }
    if change.action != Action::Create && change.halo_id.is_none() {
        return Some(format!("a {} has no Halo id", change.action.as_str()));
    }
    None
}

/// Every change of `plan` that does not fit the schema, as "tenant: label: problem".
pub fn problems(plan: &Plan) -> Vec<String> {
    let held = plan.tenants.iter().flat_map(|t| {
        t.held_back
            .iter()
            .flat_map(move |h| h.changes.iter().map(move |c| (t, c)))
    });
    plan.changes()
        .chain(held)
        .filter_map(|(t, c)| {
            problem(c).map(|p| {
                format!(
                    "{}: {} {}: {p}",
                    crate::bounded::shorten(&t.name, 80),
                    c.action.as_str(),
                    crate::bounded::shorten(&c.label, 80)
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::FieldChange;
    use serde_json::{Map, Value};

    fn change(module: Module, entity: HaloEntity, action: Action, field: &str) -> Change {
        Change {
            module,
            action,
            entity,
            halo_id: (action != Action::Create).then_some(7),
            source_key: "k".into(),
            label: "a@b".into(),
            reason: "r".into(),
            fields: vec![FieldChange {
                field: field.into(),
                from: Value::Null,
                to: Value::from("x"),
            }],
            extra: Map::new(),
        }
    }

    #[test]
    fn entity_action_and_fields_are_checked_per_module() {
        assert!(
            problem(&change(
                Module::Users,
                HaloEntity::Users,
                Action::Update,
                "title"
            ))
            .is_none()
        );
        let e = problem(&change(
            Module::Users,
            HaloEntity::Invoice,
            Action::Update,
            "title",
        ))
        .unwrap();
        assert!(e.contains("entity Invoice"), "{e}");
        let e = problem(&change(
            Module::Licences,
            HaloEntity::SoftwareLicence,
            Action::Deactivate,
            "count",
        ))
        .unwrap();
        assert!(e.contains("does not deactivate"), "{e}");
        let e = problem(&change(
            Module::Users,
            HaloEntity::Users,
            Action::Update,
            "password",
        ))
        .unwrap();
        assert!(e.contains("\"password\""), "{e}");
        let e = problem(&change(
            Module::Billing,
            HaloEntity::Invoice,
            Action::Create,
            "x",
        ))
        .unwrap();
        assert!(e.contains("writes nothing"), "{e}");
        let mut c = change(Module::Users, HaloEntity::Users, Action::Create, "name");
        c.extra.insert("agent_id".into(), Value::from(1));
        assert!(problem(&c).unwrap().contains("agent_id"));
        let mut c = change(Module::Users, HaloEntity::Users, Action::Update, "name");
        c.halo_id = None;
        assert!(problem(&c).unwrap().contains("no Halo id"));
    }
}
