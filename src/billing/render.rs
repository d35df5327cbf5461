//! The billing rows of a plan's table and markdown: per period, each customer's cost, price and margin
//! with its status, then the period's total next to the export's own total and Partner Center's invoice
//! total (so a gap is visible before billing); the open period's estimate below.

use crate::plan::Plan;
use crate::render::Grid;

fn amount(v: f64) -> String {
    format!("{v:.2}")
}

/// The billing grid as a terminal table no wider than `width`: the period and the amounts stay on one line
/// each (a "current (estimate)" or a figure split over two lines misreads), the customer and status wrap.
pub fn table(grid: &Grid, width: usize) -> String {
    grid.to_table_width_keeping(width, &[0, 2, 3, 4])
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
        // No figure was read unless `read`: a 0.00 would misread as no usage.
        let read = e.status == "read";
        let figure = |v: f64| if read { amount(v) } else { "-".to_string() };
        g.push([
            "current (estimate)".to_string(),
            "total".to_string(),
            figure(e.total_cost),
            figure(e.total_price),
            figure(e.total_price - e.total_cost),
            match e.status.as_str() {
                "read" => format!(
                    "unbilled export read: {:.2} {}",
                    e.export_total, e.currency
                ),
                "pending" => "unbilled export still running at the end of diff's wait (about a minute); the next diff asks again".to_string(),
                other => format!("unbilled export {other}"),
            },
        ]);
    }
    Some(g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::billing::{CustomerBill, Estimate, PeriodBill};

    fn customer(name: &str, status: &str) -> CustomerBill {
        CustomerBill {
            customer_id: "c1".into(),
            name: name.into(),
            halo_client_id: Some(12),
            cost: 1234.5,
            price: 1419.68,
            margin: 185.18,
            lines: 3,
            status: status.into(),
            halo_invoice_id: None,
        }
    }

    fn plan() -> Plan {
        let mut p = Plan::new("2028-02-29T09:00:00Z".into(), Vec::new(), Vec::new());
        p.billing.push(PeriodBill {
            period: "2028-01".into(),
            invoice_id: "G000123456".into(),
            status: "complete".into(),
            currency: "GBP".into(),
            customers: vec![
                customer("Contoso Ltd", "draft invoice to create"),
                customer(
                    "Northwind Traders (not mapped to a Halo client)",
                    "listed, not billed",
                ),
            ],
            total_cost: 2469.0,
            billed_cost: 1234.5,
            billed_price: 1419.68,
            export_total: 2469.0,
            partner_center_total: Some(2500.0),
        });
        p.estimates.push(Estimate {
            period: "current".into(),
            status: "running".into(),
            currency: "GBP".into(),
            customers: vec![customer("Contoso Ltd", "estimate")],
            total_cost: 1234.5,
            total_price: 1419.68,
            export_total: 1234.5,
        });
        p
    }

    #[test]
    fn the_billing_table_keeps_to_the_width_with_periods_and_amounts_whole() {
        let g = grid(&plan()).unwrap();
        for width in [80, 120] {
            let t = table(&g, width);
            assert!(t.lines().all(|l| l.chars().count() <= width), "{t}");
            assert!(t.contains("current (estimate)"), "{t}");
            assert!(t.contains("2028-01 (G000123456)"), "{t}");
            assert!(t.contains("1419.68"), "{t}");
        }
        // An estimate not read shows no figure of the export.
        let mut p = plan();
        p.estimates[0].status = "pending".into();
        p.estimates[0].customers.clear();
        let md = grid(&p).unwrap().to_markdown();
        assert!(
            md.contains("| current (estimate) | total | - | - | - | unbilled export still running"),
            "{md}"
        );
        assert!(
            md.lines()
                .filter(|l| l.starts_with("| current"))
                .all(|l| !l.contains("GBP")),
            "{md}"
        );
        p.estimates[0].status = "read".into();
        let md = grid(&p).unwrap().to_markdown();
        assert!(md.contains("unbilled export read: 1234.50 GBP"), "{md}");
        // Narrower than the kept columns need: everything wraps, still within the width.
        let t = table(&g, 40);
        assert!(t.lines().all(|l| l.chars().count() <= 40), "{t}");
    }
}
