//! A saved plan as `sync --plan` applies it: checked against the plan format of this version
//! ([`crate::plan::schema`]), then narrowed to the `--tenant`s and modules named with it.
//!
//! `sync --plan plan.json --tenant Contoso users` applies only Contoso's users changes of the plan; a
//! tenant or module the plan does not hold is an error (nothing is written), so a typo never widens or
//! silently empties a run.

use anyhow::{Result, bail};

use crate::config::Config;
use crate::plan::{Module, Plan, Summary, schema};

/// The most problems listed when a plan is refused.
const LISTED: usize = 10;

/// Refuses a plan with changes that do not fit the schema.
pub fn check(plan: &Plan, file: &std::path::Path) -> Result<()> {
    let problems = schema::problems(plan);
    if problems.is_empty() {
        return Ok(());
    }
    let more = problems.len().saturating_sub(LISTED);
    bail!(
        "the plan {} does not fit the plan format of this csp-sync, nothing was written: {}{}; make a new plan \
         with `csp-sync diff --out` (a plan file is not meant to be edited by hand)",
        file.display(),
        problems[..problems.len().min(LISTED)].join("; "),
        if more > 0 {
            format!("; and {more} more")
        } else {
            String::new()
        }
    )
}

/// `plan` narrowed to `modules` (all of the plan's when empty) and `tenants` (every tenant when empty),
/// each matched by customer id, or by name (the plan's or the config's) case-insensitively.
pub fn select(plan: Plan, config: &Config, modules: &[Module], tenants: &[String]) -> Result<Plan> {
    if let Some(m) = modules.iter().find(|m| !plan.modules.contains(m)) {
        bail!(
            "the plan was made for {}, not {m}; name modules it holds, or make a plan for {m} with \
             `csp-sync diff {m} --out FILE`",
            plan.modules
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut keep: Vec<String> = Vec::new();
    for wanted in tenants {
        let w = wanted.trim().to_lowercase();
        let matches: Vec<&crate::plan::TenantPlan> = plan
            .tenants
            .iter()
            .filter(|t| {
                t.customer_id.eq_ignore_ascii_case(&w)
                    || t.name.to_lowercase() == w
                    || config
                        .tenant(&t.customer_id)
                        .and_then(|e| e.name.as_deref())
                        .is_some_and(|n| n.to_lowercase() == w)
            })
            .collect();
        match matches.as_slice() {
            [] => bail!(
                "--tenant {wanted:?} is not in the plan; it holds {}",
                plan.tenants
                    .iter()
                    .map(|t| format!("{} ({})", t.name, t.customer_id))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            [one] => keep.push(one.customer_id.clone()),
            many => bail!(
                "--tenant {wanted:?} matches several customers of the plan: {}; give the customer id",
                many.iter()
                    .map(|t| format!("{} ({})", t.name, t.customer_id))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    let mut plan = plan;
    if !tenants.is_empty() {
        plan.tenants.retain(|t| keep.contains(&t.customer_id));
    }
    if !modules.is_empty() {
        plan.modules.retain(|m| modules.contains(m));
        for t in &mut plan.tenants {
            t.changes.retain(|c| modules.contains(&c.module));
            t.conflicts.retain(|c| modules.contains(&c.module));
            t.held_back.retain(|h| modules.contains(&h.module));
        }
        plan.seats.clear();
    }
    plan.summary = Summary::of(&plan.tenants);
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Action, Change, HaloEntity, TenantPlan};

    fn change(module: Module, entity: HaloEntity) -> Change {
        Change {
            module,
            action: Action::Update,
            entity,
            halo_id: Some(1),
            source_key: "k".into(),
            label: "l".into(),
            reason: "r".into(),
            fields: Vec::new(),
            extra: serde_json::Map::new(),
        }
    }

    fn plan() -> Plan {
        let tenant = |id: &str, name: &str| TenantPlan {
            customer_id: id.into(),
            name: name.into(),
            changes: vec![
                change(Module::Users, HaloEntity::Users),
                change(Module::Licences, HaloEntity::SoftwareLicence),
            ],
            ..TenantPlan::default()
        };
        Plan::new(
            "2026-11-27T09:00:00Z".into(),
            vec![Module::Users, Module::Licences],
            vec![tenant("c-1", "Contoso"), tenant("c-2", "Fabrikam")],
        )
    }

    fn config() -> Config {
        let text = r#"[partner_center]
tenant_id = "0f1e2d3c-0000-4000-8000-000000000001"
client_id = "0f1e2d3c-0000-4000-8000-000000000002"
[graph]
client_id = "0f1e2d3c-0000-4000-8000-000000000003"
[halo]
url = "https://h.example.com"
client_id = "0f1e2d3c-0000-4000-8000-000000000004"
"#;
        crate::config::parse(std::path::Path::new("c.toml"), text).unwrap()
    }

    #[test]
    fn narrows_to_the_named_tenants_and_modules() {
        let p = select(plan(), &config(), &[Module::Users], &["FABRIKAM".into()]).unwrap();
        assert_eq!(p.tenants.len(), 1);
        assert_eq!(p.tenants[0].customer_id, "c-2");
        assert_eq!(p.tenants[0].changes.len(), 1);
        assert_eq!(p.tenants[0].changes[0].module, Module::Users);
        assert_eq!(p.summary.update, 1);
        assert_eq!(p.modules, vec![Module::Users]);
        let all = select(plan(), &config(), &[], &[]).unwrap();
        assert_eq!(all.summary.update, 4);
    }

    #[test]
    fn refuses_what_the_plan_does_not_hold() {
        let e = select(plan(), &config(), &[Module::Billing], &[]).unwrap_err();
        assert!(e.to_string().contains("not billing"), "{e}");
        let e = select(plan(), &config(), &[], &["Litware".into()]).unwrap_err();
        assert!(e.to_string().contains("not in the plan"), "{e}");
    }
}
