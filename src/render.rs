//! Renderers: `table` for people at a terminal, `markdown` for CI summaries and pull-request comments,
//! `json` for machines (stable, versioned, documented in the README).

mod duration;
mod layout;
mod plan_markdown;
mod plan_table;

use comfy_table::{ContentArrangement, Table, presets};
use serde_json::Value;

pub use duration::duration_words;
pub use layout::{Layout, wrap};
pub use plan_markdown::tenant_summary;

use crate::plan::licences::{SeatFlag, SeatRow};
use crate::plan::{Change, Conflict, Plan};

/// An output format (`--output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Markdown,
}

/// Rows of text with headers, rendered as a terminal table or a markdown table.
#[derive(Debug, Clone, Default)]
pub struct Grid {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Grid {
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(headers: I) -> Grid {
        Grid {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push<I: IntoIterator<Item = S>, S: Into<String>>(&mut self, row: I) {
        self.rows.push(row.into_iter().map(Into::into).collect());
    }

    /// The grid as a comfy table, cells wrapping to fit a width when one is set.
    fn comfy(&self) -> Table {
        let mut t = Table::new();
        t.load_style(presets::UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_header(self.headers.clone());
        for r in &self.rows {
            t.add_row(r.clone());
        }
        t
    }

    /// A UTF-8 table for a terminal (no colours: `NO_COLOR` safe).
    pub fn to_table(&self) -> String {
        format!("{}\n", self.comfy())
    }

    /// A UTF-8 table no wider than `width` columns (cells wrap).
    pub fn to_table_width(&self, width: usize) -> String {
        self.to_table_width_keeping(width, &[])
    }

    /// Like [`Grid::to_table_width`], but the columns in `whole` (periods, counts, amounts) keep their
    /// cells on one line, as long as they leave every other column 12 columns; past that they wrap too, so
    /// the table is never wider than `width`.
    pub fn to_table_width_keeping(&self, width: usize, whole: &[usize]) -> String {
        let longest = |i: usize| {
            std::iter::once(&self.headers)
                .chain(&self.rows)
                .filter_map(|r| r.get(i))
                .flat_map(|c| c.lines())
                .map(layout::width)
                .max()
                .unwrap_or(0)
        };
        // Each column costs its content, a space either side and a border.
        let kept: usize = whole.iter().map(|&i| longest(i) + 3).sum();
        let mut t = self.comfy();
        t.set_width(u16::try_from(width).unwrap_or(u16::MAX));
        let others = self.headers.len().saturating_sub(whole.len());
        if kept + 1 + others * 12 <= width {
            for &i in whole {
                if let Some(c) = t.column_mut(i) {
                    c.set_constraint(comfy_table::ColumnConstraint::ContentWidth);
                }
            }
        }
        format!("{t}\n")
    }

    /// A GitHub-flavoured markdown table; pipes and newlines in cells are escaped.
    pub fn to_markdown(&self) -> String {
        let esc = |s: &str| s.replace('|', "\\|").replace('\n', "<br>");
        let mut out = String::new();
        let line = |cells: &[String]| {
            format!(
                "| {} |\n",
                cells.iter().map(|c| esc(c)).collect::<Vec<_>>().join(" | ")
            )
        };
        out.push_str(&line(&self.headers));
        out.push('|');
        out.push_str(&"---|".repeat(self.headers.len()));
        out.push('\n');
        for r in &self.rows {
            out.push_str(&line(r));
        }
        out
    }

    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Markdown => self.to_markdown(),
            _ => self.to_table(),
        }
    }
}

/// A JSON value as short text for a table cell: strings bare, `null` as an em dash.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "—".to_string(),
        Value::String(s) if s.is_empty() => "\"\"".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn change_rows(grid: &mut Grid, tenant: &str, c: &Change, prefix: &str) {
    let record = match c.halo_id {
        Some(id) => format!("{} (#{id})", c.label),
        None => c.label.clone(),
    };
    let action = format!("{prefix}{}", c.action.as_str());
    if c.fields.is_empty() {
        grid.push([
            tenant.to_string(),
            c.module.to_string(),
            action,
            record,
            String::new(),
            String::new(),
            c.reason.clone(),
        ]);
        return;
    }
    for f in &c.fields {
        grid.push([
            tenant.to_string(),
            c.module.to_string(),
            action.clone(),
            record.clone(),
            f.field.clone(),
            format!("{} → {}", cell(&f.from), cell(&f.to)),
            c.reason.clone(),
        ]);
    }
}

/// The changes of a plan as a grid: one line per changed field, every line with its reason.
pub fn plan_grid(plan: &Plan) -> Grid {
    let mut g = Grid::new([
        "tenant",
        "module",
        "action",
        "record",
        "field",
        "from → to",
        "reason",
    ]);
    for t in &plan.tenants {
        for c in &t.changes {
            change_rows(&mut g, &t.name, c, "");
        }
        for h in &t.held_back {
            for c in &h.changes {
                change_rows(&mut g, &t.name, c, "held: ");
            }
        }
    }
    g
}

/// "1 tenant", "2 tenants": a count with its noun in the right number.
pub fn count(n: usize, singular: &str, plural: &str) -> String {
    format!("{n} {}", if n == 1 { singular } else { plural })
}

/// A conflict's record: its label and the Halo records involved.
pub fn conflict_record(c: &Conflict) -> String {
    if c.halo_ids.is_empty() {
        return c.label.clone();
    }
    let ids: Vec<String> = c.halo_ids.iter().map(|i| format!("#{i}")).collect();
    format!("{} (Halo {})", c.label, ids.join(", "))
}

/// Conflicts, guards and errors of a plan as a grid.
pub fn problems_grid(plan: &Plan) -> Grid {
    let mut g = Grid::new(["tenant", "kind", "record", "why"]);
    for t in &plan.tenants {
        for e in &t.errors {
            g.push([t.name.clone(), "error".into(), String::new(), e.clone()]);
        }
        for h in &t.held_back {
            g.push([
                t.name.clone(),
                format!("held back ({})", h.guard),
                format!(
                    "{} {}",
                    h.changes.len(),
                    if h.changes.len() == 1 {
                        format!("{} change", h.module)
                    } else {
                        format!("{} changes", h.module)
                    }
                ),
                h.reason.clone(),
            ]);
        }
        for c in &t.conflicts {
            g.push([
                t.name.clone(),
                format!("conflict ({})", c.module),
                conflict_record(c),
                c.reason.clone(),
            ]);
        }
    }
    g
}

fn flag_text(f: &SeatFlag) -> String {
    match f {
        SeatFlag::OverAssigned => "over-assigned".into(),
        SeatFlag::UnusedSeats => "seats unused".into(),
        SeatFlag::RenewalSoon { date, days } => format!("renews {date} (in {days} days)"),
        SeatFlag::CancellationWindowCloses { date, days } => {
            format!("cancellation window closes {date} (in {days} days)")
        }
    }
}

/// The seat view: per tenant and SKU, purchased / assigned / available, with flags and notes.
pub fn seats_grid(seats: &[SeatRow]) -> Grid {
    let mut g = Grid::new([
        "tenant",
        "product",
        "purchased",
        "assigned",
        "available",
        "flags",
    ]);
    for r in seats {
        let mut flags: Vec<String> = r.flags.iter().map(flag_text).collect();
        if let Some(note) = &r.note {
            flags.push(note.clone());
        }
        g.push([
            r.tenant_name.clone(),
            r.product_name.clone(),
            r.purchased.to_string(),
            r.assigned.to_string(),
            r.available.to_string(),
            flags.join("; "),
        ]);
    }
    g
}

/// The assets module's device summary, one row per tenant.
pub fn devices_grid(rows: &[crate::plan::assets::DeviceSummary]) -> Grid {
    let mut g = Grid::new([
        "tenant",
        "devices",
        "created",
        "updated",
        "made inactive",
        "non-compliant",
        "no primary user",
        "not synced",
    ]);
    for r in rows {
        g.push([
            r.tenant_name.clone(),
            r.devices.to_string(),
            r.created.to_string(),
            r.updated.to_string(),
            r.made_inactive.to_string(),
            r.non_compliant.to_string(),
            r.without_primary_user.to_string(),
            r.not_synced.to_string(),
        ]);
    }
    g
}

/// One line of counts: "3 to create, 1 to update, ...".
pub fn summary_line(plan: &Plan) -> String {
    let s = &plan.summary;
    format!(
        "{} to create, {} to update, {} to link, {} to deactivate, {} to reactivate; {}, {} held back, {}",
        s.create,
        s.update,
        s.link,
        s.deactivate,
        s.reactivate,
        count(s.conflicts, "conflict", "conflicts"),
        s.held_back,
        count(s.errors, "error", "errors")
    )
}

/// Renders a plan in the chosen format, tables as wide as `COLUMNS` (else the terminal, else 80).
pub fn plan(plan: &Plan, format: Format) -> String {
    use std::io::IsTerminal;
    plan_with(
        plan,
        format,
        Layout::from_env(std::io::stdout().is_terminal(), false),
    )
}

/// Renders a plan in the chosen format with the given table layout. The JSON is the documented
/// contract (README) and is the same whatever the layout.
pub fn plan_with(plan: &Plan, format: Format, layout: Layout) -> String {
    match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(plan).unwrap_or_default();
            s.push('\n');
            s
        }
        Format::Table => {
            let mut out = plan_table::tenants(plan, layout);
            if !plan.seats.is_empty() {
                out.push('\n');
                out.push_str(
                    &seats_grid(&plan.seats).to_table_width_keeping(layout.width, &[2, 3, 4]),
                );
            }
            if !plan.devices.is_empty() {
                out.push('\n');
                out.push_str(
                    &devices_grid(&plan.devices)
                        .to_table_width_keeping(layout.width, &[1, 2, 3, 4, 5, 6, 7]),
                );
            }
            if let Some(billing) = crate::billing::render::grid(plan) {
                out.push('\n');
                out.push_str(&crate::billing::render::table(&billing, layout.width));
            }
            out.push('\n');
            for l in wrap("", 2, &summary_line(plan), layout.width) {
                out.push_str(&l);
                out.push('\n');
            }
            out
        }
        Format::Markdown => {
            let mut out = String::from("## csp-sync plan\n\n");
            out.push_str("**");
            out.push_str(&summary_line(plan));
            out.push_str("**\n\n");
            out.push_str(&plan_markdown::tenants(plan));
            if !plan.seats.is_empty() {
                out.push_str("### Seats\n\n");
                out.push_str(&seats_grid(&plan.seats).to_markdown());
                out.push('\n');
            }
            if !plan.devices.is_empty() {
                out.push_str("### Devices\n\n");
                out.push_str(&devices_grid(&plan.devices).to_markdown());
                out.push('\n');
            }
            if let Some(billing) = crate::billing::render::grid(plan) {
                out.push_str("### Billing\n\n");
                out.push_str(&billing.to_markdown());
                out.push('\n');
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Action, Conflict, FieldChange, HaloEntity, Module, TenantPlan};

    fn sample() -> Plan {
        let change = Change {
            module: Module::Users,
            action: Action::Update,
            entity: HaloEntity::Users,
            halo_id: Some(12),
            source_key: "oid-1".into(),
            label: "jane@contoso.com".into(),
            reason: "job title changed in Entra".into(),
            fields: vec![FieldChange {
                field: "title".into(),
                from: Value::from("Clerk"),
                to: Value::from("Finance | Manager"),
            }],
            extra: serde_json::Map::new(),
        };
        Plan::new(
            "2026-11-27T00:00:00Z".into(),
            vec![Module::Users],
            vec![TenantPlan {
                customer_id: "c1".into(),
                name: "Contoso".into(),
                halo_client_id: Some(1),
                changes: vec![change],
                conflicts: vec![Conflict {
                    module: Module::Users,
                    source_key: "oid-2".into(),
                    label: "bob@contoso.com".into(),
                    reason: "two contacts have this e-mail".into(),
                    halo_ids: vec![3, 4],
                }],
                ..TenantPlan::default()
            }],
        )
    }

    #[test]
    fn table_lines_carry_reasons() {
        let out = plan(&sample(), Format::Table);
        let line = out
            .lines()
            .find(|l| l.contains("jane@contoso.com"))
            .unwrap();
        assert!(line.contains("job title changed in Entra"), "{out}");
        assert!(out.contains("#3, #4"), "{out}");
        assert!(out.contains("1 to update"), "{out}");
    }

    #[test]
    fn seat_view_in_every_format() {
        let mut p = sample();
        p.seats = vec![SeatRow {
            customer_id: "c1".into(),
            tenant_name: "Contoso".into(),
            sku_id: Some("cbdc14ab-d96c-4c30-b9f4-6ada7cdc1d46".into()),
            sku_part_number: Some("SPB".into()),
            product_name: "Microsoft 365 Business Premium".into(),
            purchased: 10,
            assigned: 12,
            available: -2,
            subscription_ids: vec!["s1".into()],
            flags: vec![
                SeatFlag::OverAssigned,
                SeatFlag::RenewalSoon {
                    date: "2026-12-10".into(),
                    days: 13,
                },
            ],
            usage_source: crate::plan::licences::SkuSource::Graph,
            note: None,
        }];
        // Wide enough for a seat row on one line (at 80 columns its cells wrap).
        let table = plan_with(&p, Format::Table, Layout::with_width(160, false));
        let line = table
            .lines()
            .find(|l| l.contains("Business Premium"))
            .unwrap();
        assert!(
            line.contains("-2") && line.contains("over-assigned"),
            "{table}"
        );
        assert!(line.contains("renews 2026-12-10 (in 13 days)"), "{table}");
        let md = plan(&p, Format::Markdown);
        assert!(md.contains("### Seats"), "{md}");
        assert!(
            md.contains("| Contoso | Microsoft 365 Business Premium | 10 | 12 | -2 |"),
            "{md}"
        );
        let v: Value = serde_json::from_str(&plan(&p, Format::Json)).unwrap();
        assert_eq!(v["seats"][0]["available"], -2);
        assert_eq!(v["seats"][0]["flags"][0]["flag"], "over_assigned");
    }

    #[test]
    fn table_is_one_line_per_change_and_never_wider() {
        let mut p = sample();
        p.tenants[0].changes[0].fields.push(FieldChange {
            field: "department".into(),
            from: Value::Null,
            to: Value::from("Finance"),
        });
        for width in [30, 80, 120] {
            let out = plan_with(&p, Format::Table, Layout::with_width(width, false));
            assert!(
                out.lines().all(|l| layout::width(l) <= width),
                "{width}:\n{out}"
            );
            if width >= 80 {
                assert_eq!(out.matches("jane@contoso.com").count(), 1, "{out}");
            }
        }
        let out = plan_with(&p, Format::Table, Layout::with_width(160, false));
        let line = out.lines().find(|l| l.contains("jane@")).unwrap();
        assert!(
            line.contains("title: Clerk → Finance | Manager; department: — → Finance"),
            "{out}"
        );
        let wide = plan_with(&p, Format::Table, Layout::with_width(120, true));
        assert!(
            wide.lines().any(|l| l.trim() == "department: — → Finance"),
            "{wide}"
        );
        assert_eq!(out.matches("1 conflict,").count(), 1, "{out}");
    }

    #[test]
    fn markdown_has_the_summary_first_and_a_section_per_tenant() {
        let out = plan(&sample(), Format::Markdown);
        let summary = out.find("1 to update").unwrap();
        let details = out.find("<details><summary><b>Contoso</b>").unwrap();
        assert!(summary < details, "{out}");
        assert!(out.contains("</details>"), "{out}");
    }

    #[test]
    fn markdown_escapes_pipes() {
        let out = plan(&sample(), Format::Markdown);
        assert!(out.contains("Finance \\| Manager"), "{out}");
        assert!(out.starts_with("## csp-sync plan"));
    }

    #[test]
    fn json_is_versioned() {
        let v: Value = serde_json::from_str(&plan(&sample(), Format::Json)).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(
            v["tenants"][0]["changes"][0]["fields"][0]["to"],
            "Finance | Manager"
        );
    }
}
