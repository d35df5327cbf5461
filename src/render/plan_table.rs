//! A plan as text for a terminal, like `terraform plan`: grouped by tenant and module, one line per
//! change (action, record, reason, the changed fields as `field: from → to`), wrapped to the layout's
//! width and never wider. With `--wide` every changed field gets its own line under its change.

use std::collections::BTreeMap;

use serde_json::Value;

use super::layout::{Layout, wrap};
use super::{cell, conflict_record};
use crate::plan::{Action, Change, Plan, TenantPlan};

/// Columns before a change's record: indent, symbol, action padded to the longest action.
const ACTION_WIDTH: usize = "deactivate".len();
const CHANGE_INDENT: usize = 4 + 2 + ACTION_WIDTH + 1;

fn symbol(a: Action) -> char {
    match a {
        Action::Create | Action::Reactivate => '+',
        Action::Update => '~',
        Action::Link => '=',
        Action::Deactivate => '-',
    }
}

/// The record a change touches: its label and Halo id.
pub(super) fn record(c: &Change) -> String {
    match c.halo_id {
        Some(id) => format!("{} (#{id})", c.label),
        None => c.label.clone(),
    }
}

/// The changed fields as `field: from → to`; a field a create sets from nothing is `field: to` (every
/// field of a new record starts empty, so `— →` would only repeat itself). A list of records longer than a
/// short cell (an invoice's lines) reads as its count ("lines: 3 lines"); with `detail` (`--wide`, markdown)
/// each entry follows on its own line.
pub(super) fn field_texts(c: &Change, detail: bool) -> Vec<String> {
    let mut out = Vec::new();
    for f in &c.fields {
        if c.action == Action::Create && f.from.is_null() {
            out.push(format!("{}: {}", f.field, value_text(&f.field, &f.to)));
        } else {
            out.push(format!(
                "{}: {} → {}",
                f.field,
                value_text(&f.field, &f.from),
                value_text(&f.field, &f.to)
            ));
        }
        if detail && let Some(entries) = long_list(&f.to) {
            out.extend(entries.iter().map(|e| format!("  - {}", entry_text(e))));
        }
    }
    out
}

/// The longest list value shown whole in a cell, as compact JSON.
const SHORT_LIST: usize = 40;

/// A list value too long to show whole in a cell.
fn long_list(v: &Value) -> Option<&Vec<Value>> {
    let list = v.as_array()?;
    (v.to_string().chars().count() > SHORT_LIST).then_some(list)
}

fn value_text(field: &str, v: &Value) -> String {
    match long_list(v) {
        Some(list) => {
            let one = field.strip_suffix('s').unwrap_or("entry");
            let many = if one == "entry" { "entries" } else { field };
            super::count(list.len(), one, many)
        }
        None => cell(v),
    }
}

/// One entry of a long list: a Halo invoice line as `description: quantity × unit price`, anything else as
/// compact JSON.
fn entry_text(v: &Value) -> String {
    match v.get("item_shortdescription").and_then(Value::as_str) {
        Some(d) => format!(
            "{d}: {} × {}",
            v.get("qty_order").map_or_else(|| "1".into(), cell),
            v.get("unit_price").map_or_else(|| "—".into(), cell)
        ),
        None => v.to_string(),
    }
}

fn push_lines(out: &mut String, lines: Vec<String>) {
    for l in lines {
        out.push_str(&l);
        out.push('\n');
    }
}

fn change_lines(out: &mut String, c: &Change, layout: Layout) {
    let first = format!(
        "    {} {:<ACTION_WIDTH$} ",
        symbol(c.action),
        c.action.as_str()
    );
    let fields = field_texts(c, layout.wide);
    let head = format!("{} [{}]", record(c), c.reason);
    if layout.wide || fields.is_empty() {
        push_lines(out, wrap(&first, CHANGE_INDENT, &head, layout.width));
        for f in &fields {
            // A list's entries ("  - ...") sit under their field.
            let depth = CHANGE_INDENT + 2 + (f.len() - f.trim_start().len());
            let lead = " ".repeat(depth);
            push_lines(out, wrap(&lead, depth + 2, f.trim_start(), layout.width));
        }
    } else {
        let text = format!("{head} {}", fields.join("; "));
        push_lines(out, wrap(&first, CHANGE_INDENT, &text, layout.width));
    }
}

fn by_module(changes: &[Change]) -> BTreeMap<String, Vec<&Change>> {
    let mut m: BTreeMap<String, Vec<&Change>> = BTreeMap::new();
    for c in changes {
        m.entry(c.module.to_string()).or_default().push(c);
    }
    m
}

/// Whether a tenant has anything to show.
pub(super) fn has_content(t: &TenantPlan) -> bool {
    !(t.changes.is_empty()
        && t.held_back.is_empty()
        && t.conflicts.is_empty()
        && t.errors.is_empty()
        && t.notes.is_empty())
}

fn tenant(out: &mut String, t: &TenantPlan, layout: Layout) {
    let heading = match t.halo_client_id {
        Some(id) => format!("{} (Halo client #{id})", t.name),
        None => t.name.clone(),
    };
    push_lines(out, wrap("", 2, &heading, layout.width));
    for (module, changes) in by_module(&t.changes) {
        push_lines(out, wrap("  ", 4, &module, layout.width));
        for c in changes {
            change_lines(out, c, layout);
        }
    }
    for h in &t.held_back {
        let text = format!(
            "{} {} held back by the {}: {}",
            super::count(h.changes.len(), "change", "changes"),
            h.module,
            h.guard.replace('_', " "),
            h.reason
        );
        push_lines(out, wrap("  ! ", 4, &text, layout.width));
        for c in &h.changes {
            change_lines(out, c, layout);
        }
    }
    for c in &t.conflicts {
        let text = format!(
            "conflict ({}): {} [{}]",
            c.module,
            conflict_record(c),
            c.reason
        );
        push_lines(out, wrap("  ! ", 4, &text, layout.width));
    }
    for e in &t.errors {
        push_lines(out, wrap("  ! error: ", 4, e, layout.width));
    }
    for n in &t.notes {
        push_lines(out, wrap("  note: ", 4, n, layout.width));
    }
}

/// The tenants' changes, held-back changes, conflicts, errors and notes; "No changes." when there are
/// none to make.
pub fn tenants(plan: &Plan, layout: Layout) -> String {
    let mut out = String::new();
    if !(plan.has_changes() || plan.has_held_back()) {
        out.push_str("No changes.\n");
    }
    let mut first = out.is_empty();
    for t in plan.tenants.iter().filter(|t| has_content(t)) {
        if !first {
            out.push('\n');
        }
        first = false;
        tenant(&mut out, t, layout);
    }
    out
}
