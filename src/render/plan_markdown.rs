//! A plan as markdown that fits a pull-request comment or CI step summary: the summary first, then one
//! collapsed `<details>` section per tenant holding its changes (fields one per line) and what needs
//! attention.

use std::fmt::Write as _;

use super::plan_table::{field_texts, has_content, record};
use super::{Grid, conflict_record, count};
use crate::plan::{Action, Plan, TenantPlan};

/// "2 to create, 1 to update; 1 conflict" for one tenant; "nothing to change" when empty.
pub fn tenant_summary(t: &TenantPlan) -> String {
    let mut parts = Vec::new();
    for a in [
        Action::Create,
        Action::Update,
        Action::Link,
        Action::Deactivate,
        Action::Reactivate,
    ] {
        let n = t.changes.iter().filter(|c| c.action == a).count();
        if n > 0 {
            parts.push(format!("{n} to {}", a.as_str()));
        }
    }
    let held: usize = t.held_back.iter().map(|h| h.changes.len()).sum();
    let mut attention = Vec::new();
    if held > 0 {
        attention.push(format!("{held} held back"));
    }
    if !t.conflicts.is_empty() {
        attention.push(count(t.conflicts.len(), "conflict", "conflicts"));
    }
    if !t.errors.is_empty() {
        attention.push(count(t.errors.len(), "error", "errors"));
    }
    let changes = if parts.is_empty() {
        "nothing to change".to_string()
    } else {
        parts.join(", ")
    };
    if attention.is_empty() {
        changes
    } else {
        format!("{changes}; {}", attention.join(", "))
    }
}

fn changes_grid(t: &TenantPlan) -> Grid {
    let mut g = Grid::new(["module", "action", "record", "changes", "reason"]);
    let held = t
        .held_back
        .iter()
        .flat_map(|h| h.changes.iter().map(move |c| (c, "held: ")));
    for (c, prefix) in t.changes.iter().map(|c| (c, "")).chain(held) {
        g.push([
            c.module.to_string(),
            format!("{prefix}{}", c.action.as_str()),
            record(c),
            field_texts(c, true).join("\n"),
            c.reason.clone(),
        ]);
    }
    g
}

fn attention_grid(t: &TenantPlan) -> Grid {
    let mut g = Grid::new(["kind", "record", "why"]);
    for e in &t.errors {
        g.push(["error".to_string(), String::new(), e.clone()]);
    }
    for h in &t.held_back {
        g.push([
            format!("held back ({})", h.guard),
            format!(
                "{} {}",
                count(h.changes.len(), "change", "changes"),
                h.module
            ),
            h.reason.clone(),
        ]);
    }
    for c in &t.conflicts {
        g.push([
            format!("conflict ({})", c.module),
            conflict_record(c),
            c.reason.clone(),
        ]);
    }
    for n in &t.notes {
        g.push(["note".to_string(), String::new(), n.clone()]);
    }
    g
}

/// Escapes text for HTML inside `<summary>`.
fn html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Characters the tenant sections may take: GitHub refuses a comment over 65,536 characters, and the
/// summary, seats and devices need room too.
const COMMENT_BUDGET: usize = 50_000;

/// The per-tenant sections; once they would pass [`COMMENT_BUDGET`], the remaining tenants are counted
/// and pointed to the JSON instead.
pub fn tenants(plan: &Plan) -> String {
    let mut out = String::new();
    if !(plan.has_changes() || plan.has_held_back()) {
        out.push_str("No changes.\n\n");
    }
    let shown: Vec<&TenantPlan> = plan.tenants.iter().filter(|t| has_content(t)).collect();
    for (i, t) in shown.iter().enumerate() {
        let section = section(t);
        if out.len() + section.len() > COMMENT_BUDGET {
            let _ = writeln!(
                out,
                "… and {} more: too long for one comment; `csp-sync -o json diff` (or `diff --out plan.json`) has all of it.\n",
                count(shown.len() - i, "tenant", "tenants")
            );
            break;
        }
        out.push_str(&section);
    }
    out
}

/// One tenant's collapsed section.
fn section(t: &TenantPlan) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<details><summary><b>{}</b>: {}</summary>\n\n",
        html(&t.name),
        html(&tenant_summary(t))
    );
    let changes = changes_grid(t);
    if !changes.rows.is_empty() {
        out.push_str(&changes.to_markdown());
        out.push('\n');
    }
    let attention = attention_grid(t);
    if !attention.rows.is_empty() {
        out.push_str("**Needs attention**\n\n");
        out.push_str(&attention.to_markdown());
        out.push('\n');
    }
    out.push_str("</details>\n\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Change, HaloEntity, Module};

    #[test]
    fn a_large_plan_stays_within_one_comment() {
        let change = |i: usize| Change {
            module: Module::Users,
            action: Action::Create,
            entity: HaloEntity::Users,
            halo_id: None,
            source_key: format!("oid-{i}"),
            label: format!("user{i}@example.com"),
            reason: "new in Entra".into(),
            fields: Vec::new(),
            extra: serde_json::Map::new(),
        };
        let tenants = (0..200)
            .map(|t| TenantPlan {
                customer_id: format!("c{t}"),
                name: format!("Tenant {t}"),
                changes: (0..20).map(change).collect(),
                ..TenantPlan::default()
            })
            .collect();
        let plan = Plan::new("2026-11-27T00:00:00Z".into(), vec![Module::Users], tenants);
        let md = super::super::plan(&plan, super::super::Format::Markdown);
        assert!(md.len() < 65_536, "{}", md.len());
        assert!(md.contains("more: too long for one comment"), "{md}");
        assert!(
            md.starts_with("## csp-sync plan\n\n**4000 to create"),
            "{md}"
        );
    }
}
