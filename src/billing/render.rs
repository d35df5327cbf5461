//! The billing rows of a plan's table and markdown: per period, each customer's cost, price and margin
//! with its status, then the period's total next to the export's own total and Partner Center's invoice
//! total (so a gap is visible before billing); the open period's estimate below.

use crate::plan::Plan;
use crate::render::Grid;

fn amount(v: f64) -> String {
    format!("{v:.2}")
}

/// The billing view; `None` when the plan has no billing rows.
pub fn grid(plan: &Plan) -> Option<Grid> {
    if plan.billing.is_empty() && plan.estimates.is_empty() {
        return None;
    }
    let mut g = Grid::new(["period", "customer", "cost", "price", "margin", "status"]);
    for p in &plan.billing {
        let label = format!("{} ({})", p.period, p.invoice_id);
        for c in &p.customers {
            g.push([
                label.clone(),
                c.name.clone(),
                amount(c.cost),
                amount(c.price),
                amount(c.margin),
                match c.halo_invoice_id {
                    Some(id) => format!("{} (Halo #{id})", c.status),
                    None => c.status.clone(),
                },
            ]);
        }
        let pc = p.partner_center_total.map_or_else(String::new, |t| {
            format!("; Partner Center invoice total {t:.2}, all charges")
        });
        g.push([
            label,
            "total".to_string(),
            amount(p.billed_cost),
            amount(p.billed_price),
            amount(p.billed_price - p.billed_cost),
            format!(
                "export {}: {:.2} {} in all customers' usage{pc}",
                p.status, p.export_total, p.currency
            ),
        ]);
    }
    for e in &plan.estimates {
        for c in &e.customers {
            g.push([
                "current (estimate)".to_string(),
                c.name.clone(),
                amount(c.cost),
                amount(c.price),
                amount(c.margin),
                c.status.clone(),
            ]);
        }
        g.push([
            "current (estimate)".to_string(),
            "total".to_string(),
            amount(e.total_cost),
            amount(e.total_price),
            amount(e.total_price - e.total_cost),
            format!(
                "unbilled export {}: {:.2} {}",
                e.status, e.export_total, e.currency
            ),
        ]);
    }
    Some(g)
}
