//! The pure billing planner (SPEC 7, billing): per billed period and Halo client, one draft invoice whose
//! lines are the mapped customers' usage groups (entitlement = Azure subscription, and meter category),
//! each at the partner's cost with the markup of its category, rounded to the currency's minor unit so
//! that the lines add up, to the cent, to the usage read; never a second invoice for a reference already
//! in Halo or in the state; a posted invoice never touched; a changed draft reported for a person.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::billing::periods::BilledPeriod;
use crate::billing::state::BillingState;
use crate::billing::usage::{NANOS, UsageGroup, UsageTotals};
use crate::plan::{Action, Change, Conflict, FieldChange, HaloEntity, Module, TenantPlan};

/// `[billing]` as the planner needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct BillingPolicy {
    pub markup_percent: f64,
    /// Meter category -> markup percent (overrides `markup_percent`).
    pub markup: BTreeMap<String, f64>,
    /// ISO 4217 code the usage must be in.
    pub currency: String,
}

impl BillingPolicy {
    fn markup_for(&self, category: &str) -> f64 {
        self.markup
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(category))
            .map_or(self.markup_percent, |(_, v)| *v)
    }
}

/// Minor units per unit of a currency (ISO 4217 exponents; 2 unless listed).
pub fn minor_per_unit(currency: &str) -> i128 {
    match currency.to_ascii_uppercase().as_str() {
        "JPY" | "KRW" | "CLP" | "ISK" | "VND" | "XAF" | "XOF" | "UGX" | "PYG" => 1,
        "BHD" | "KWD" | "OMR" | "JOD" | "TND" | "LYD" | "IQD" => 1000,
        _ => 100,
    }
}

/// Rounds each amount (billionths) to minor units so that they add up to the rounded total (largest
/// remainder: the rounding shortfall goes to the amounts that lost most).
pub fn apportion(nanos: &[i128], minor: i128) -> Vec<i64> {
    let unit = NANOS / minor;
    let total: i128 = nanos.iter().sum();
    let target = div_round(total, unit);
    let floors: Vec<i128> = nanos.iter().map(|n| n.div_euclid(unit)).collect();
    let mut short = target - floors.iter().sum::<i128>();
    let mut order: Vec<usize> = (0..nanos.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse((nanos[i].rem_euclid(unit), std::cmp::Reverse(i))));
    let mut out = floors;
    for &i in &order {
        if short <= 0 {
            break;
        }
        if nanos[i].rem_euclid(unit) > 0 {
            out[i] += 1;
            short -= 1;
        }
    }
    out.into_iter().map(|v| v as i64).collect()
}

fn div_round(n: i128, d: i128) -> i128 {
    let q = n.div_euclid(d);
    if n.rem_euclid(d) * 2 >= d { q + 1 } else { q }
}

fn money(minor: i64, per: i128) -> f64 {
    minor as f64 / per as f64
}

/// One invoice already in Halo (read with `includelines=true`).
#[derive(Debug, Clone, PartialEq)]
pub struct HaloInvoice {
    pub id: i64,
    pub client_id: i64,
    pub reference: String,
    pub posted: bool,
    /// Net sum of the lines (`unit_price` x `qty_order`), currency units.
    pub net: f64,
}

/// How one period's usage was read.
#[derive(Debug, Clone)]
pub enum PeriodSource {
    Usage(UsageTotals),
    NoData,
    Pending,
    Failed(String),
    /// Done in an earlier run (state): not exported again.
    Done,
}

/// A mapped customer taking part.
#[derive(Debug, Clone)]
pub struct BillingTarget {
    pub customer_id: String,
    pub name: String,
    pub halo_client_id: i64,
}

/// One customer's figures in a period (output).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerBill {
    pub customer_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halo_client_id: Option<i64>,
    pub cost: f64,
    pub price: f64,
    pub margin: f64,
    pub lines: usize,
    /// `invoice`, `already invoiced`, `posted`, `draft changed`, `no usage`, `unmapped`, `skipped`,
    /// `currency mismatch`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halo_invoice_id: Option<i64>,
}

/// One billed period (output): per customer, and the totals next to the export's and Partner Center's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeriodBill {
    pub period: String,
    pub invoice_id: String,
    /// `read`, `no data`, `pending`, `failed`, `done`.
    pub status: String,
    pub currency: String,
    pub customers: Vec<CustomerBill>,
    /// Cost of every customer's usage in the export (mapped or not).
    pub total_cost: f64,
    /// Cost of the customers billed (or already billed) this period.
    pub billed_cost: f64,
    pub billed_price: f64,
    /// The export's own total: every line read.
    pub export_total: f64,
    /// The Partner Center invoice's total (all its charges, not only Azure usage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_center_total: Option<f64>,
}

/// Everything the planner decides.
#[derive(Debug, Default)]
pub struct BillingPlan {
    pub tenants: Vec<TenantPlan>,
    pub periods: Vec<PeriodBill>,
    /// The state moved forward (periods done); saved only by a real sync.
    pub state: BillingState,
}

/// Whether a customer is billed, and if not why.
pub enum Mapping<'a> {
    Target(&'a BillingTarget),
    Skipped,
    Unmapped,
}

fn line_description(g: &UsageGroup, period: &str, per: i128, cost_minor: i64) -> String {
    let qty: Vec<String> = g
        .quantities
        .iter()
        .map(|(u, q)| {
            let v = *q as f64 / NANOS as f64;
            format!("{} {}", trim_num(v), if u.is_empty() { "units" } else { u })
        })
        .collect();
    let mut d = format!(
        "Azure usage {period}: {} — {}; {}",
        if g.entitlement_description.is_empty() {
            &g.entitlement_id
        } else {
            &g.entitlement_description
        },
        g.meter_category,
        qty.join(", ")
    );
    if !g.meters.is_empty() {
        let _ = write!(d, " (meters: {})", g.meters.join(", "));
    }
    let _ = write!(
        d,
        "; subscription {}; cost {:.2}",
        g.entitlement_id,
        money(cost_minor, per)
    );
    d
}

fn trim_num(v: f64) -> String {
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Plans every period. `mapping` says for a customer id whether (and as what) it is billed.
pub fn plan_billing<'a>(
    periods: &[(BilledPeriod, PeriodSource)],
    mapping: &dyn Fn(&str) -> Mapping<'a>,
    targets: &[BillingTarget],
    halo_invoices: &[HaloInvoice],
    state: &BillingState,
    policy: &BillingPolicy,
) -> BillingPlan {
    let per = minor_per_unit(&policy.currency);
    let mut plan = BillingPlan {
        state: state.clone(),
        ..BillingPlan::default()
    };
    let mut by_tenant: BTreeMap<String, TenantPlan> = BTreeMap::new();
    let tenant = |t: &BillingTarget| -> TenantPlan {
        TenantPlan {
            customer_id: t.customer_id.clone(),
            name: t.name.clone(),
            halo_client_id: Some(t.halo_client_id),
            ..TenantPlan::default()
        }
    };
    for t in targets {
        by_tenant.insert(t.customer_id.to_ascii_lowercase(), tenant(t));
    }
    for (period, source) in periods {
        let reference = format!("CSP {}", period.invoice_id);
        let mut bill = PeriodBill {
            period: period.period.clone(),
            invoice_id: period.invoice_id.clone(),
            status: String::new(),
            currency: policy.currency.clone(),
            customers: Vec::new(),
            total_cost: 0.0,
            billed_cost: 0.0,
            billed_price: 0.0,
            export_total: 0.0,
            partner_center_total: period.total_charges,
        };
        let totals = match source {
            PeriodSource::Usage(t) => t,
            PeriodSource::NoData => {
                bill.status = "no data".into();
                let st = plan.state.invoice(&period.invoice_id, &period.period);
                st.done = true;
                st.no_data = true;
                plan.periods.push(bill);
                continue;
            }
            PeriodSource::Pending => {
                bill.status = "pending".into();
                plan.periods.push(bill);
                continue;
            }
            PeriodSource::Done => {
                bill.status = "done".into();
                plan.periods.push(bill);
                continue;
            }
            PeriodSource::Failed(e) => {
                bill.status = "failed".into();
                for tp in by_tenant.values_mut() {
                    tp.errors.push(format!(
                        "billing {} ({}): {e}",
                        period.period, period.invoice_id
                    ));
                }
                plan.periods.push(bill);
                continue;
            }
        };
        bill.status = "read".into();
        bill.export_total = totals.total_nanos as f64 / NANOS as f64;
        bill.total_cost = bill.export_total;
        // Groups by customer.
        let mut by_customer: BTreeMap<String, Vec<&UsageGroup>> = BTreeMap::new();
        for g in totals.groups.values() {
            by_customer
                .entry(g.customer_id.clone())
                .or_default()
                .push(g);
        }
        // Invoices per Halo client: several customers may map to one client.
        let mut by_client: BTreeMap<i64, Vec<(&BillingTarget, Vec<&UsageGroup>)>> = BTreeMap::new();
        for (cid, groups) in &by_customer {
            let name = groups
                .first()
                .map(|g| g.customer_name.clone())
                .unwrap_or_default();
            let cost: i128 = groups.iter().map(|g| g.cost_nanos).sum();
            let row = |status: &str| CustomerBill {
                customer_id: cid.clone(),
                name: name.clone(),
                halo_client_id: None,
                cost: money(div_round(cost, NANOS / per) as i64, per),
                price: 0.0,
                margin: 0.0,
                lines: groups.len(),
                status: status.into(),
                halo_invoice_id: None,
            };
            match mapping(cid) {
                Mapping::Unmapped => bill.customers.push(row("unmapped")),
                Mapping::Skipped => bill.customers.push(row("skipped")),
                Mapping::Target(t) => {
                    let wrong: Vec<&String> = groups
                        .iter()
                        .flat_map(|g| g.currencies.iter())
                        .filter(|c| !c.eq_ignore_ascii_case(&policy.currency))
                        .collect();
                    if let Some(c) = wrong.first() {
                        if let Some(tp) = by_tenant.get_mut(&cid.to_ascii_lowercase()) {
                            tp.errors.push(format!(
                                "billing {}: {}'s usage is in {c}, but [billing] currency = \"{}\"; nothing billed for it (set [billing] currency to the partner's billing currency)",
                                period.period, t.name, policy.currency
                            ));
                        }
                        let mut r = row("currency mismatch");
                        r.halo_client_id = Some(t.halo_client_id);
                        bill.customers.push(r);
                        continue;
                    }
                    by_client
                        .entry(t.halo_client_id)
                        .or_default()
                        .push((t, groups.clone()));
                }
            }
        }
        let mut all_done = true;
        for (client_id, members) in by_client {
            let owner = members[0].0;
            // Lines: one per customer group, cost and price apportioned to the cent.
            let groups: Vec<&UsageGroup> = members
                .iter()
                .flat_map(|(_, g)| g.iter().copied())
                .collect();
            let costs: Vec<i128> = groups.iter().map(|g| g.cost_nanos).collect();
            let prices: Vec<i128> = groups
                .iter()
                .map(|g| {
                    let m = policy.markup_for(&g.meter_category);
                    // Markup in hundredths of a percent, exact in integers.
                    let bp = (m * 100.0).round() as i128;
                    g.cost_nanos * (10_000 + bp) / 10_000
                })
                .collect();
            let cost_minor = apportion(&costs, per);
            let price_minor = apportion(&prices, per);
            let mut lines = Vec::new();
            for (i, g) in groups.iter().enumerate() {
                if cost_minor[i] == 0 && price_minor[i] == 0 {
                    continue;
                }
                lines.push(json!({
                    "item_shortdescription": format!("Azure {} — {}", g.meter_category,
                        if g.entitlement_description.is_empty() { &g.entitlement_id } else { &g.entitlement_description }),
                    "item_longdescription": line_description(g, &period.period, per, cost_minor[i]),
                    "qty_order": 1,
                    "unit_cost": money(cost_minor[i], per),
                    "unit_price": money(price_minor[i], per),
                }));
            }
            let cost_sum: i64 = cost_minor.iter().sum();
            let price_sum: i64 = price_minor.iter().sum();
            let (cost, price) = (money(cost_sum, per), money(price_sum, per));
            let mut rows: Vec<CustomerBill> = members
                .iter()
                .map(|(t, gs)| {
                    let c: i128 = gs.iter().map(|g| g.cost_nanos).sum();
                    CustomerBill {
                        customer_id: t.customer_id.clone(),
                        name: t.name.clone(),
                        halo_client_id: Some(client_id),
                        cost: money(div_round(c, NANOS / per) as i64, per),
                        price: 0.0,
                        margin: 0.0,
                        lines: gs.len(),
                        status: String::new(),
                        halo_invoice_id: None,
                    }
                })
                .collect();
            // The client's figures go on its first customer's row (one invoice per client).
            rows[0].cost = cost;
            rows[0].price = price;
            rows[0].margin = money(price_sum - cost_sum, per);
            for r in rows.iter_mut().skip(1) {
                r.cost = 0.0;
                r.status = format!("on {}'s invoice", owner.name);
            }
            let tp = by_tenant
                .entry(owner.customer_id.to_ascii_lowercase())
                .or_insert_with(|| tenant(owner));
            let existing: Vec<&HaloInvoice> = halo_invoices
                .iter()
                .filter(|h| {
                    h.client_id == client_id && h.reference.trim().eq_ignore_ascii_case(&reference)
                })
                .collect();
            let stored = plan
                .state
                .invoices
                .get(&period.invoice_id)
                .and_then(|s| s.customers.get(&owner.customer_id.to_ascii_lowercase()))
                .cloned();
            let status;
            if lines.is_empty() {
                status = "no usage".to_string();
            } else if let Some(h) = existing.first() {
                rows[0].halo_invoice_id = Some(h.id);
                if h.posted {
                    status = "posted".into();
                    tp.notes.push(format!(
                        "billing {}: Halo invoice {} ({reference}) is posted; left as it is",
                        period.period, h.id
                    ));
                } else if (h.net - price).abs() >= 0.5 / per as f64 {
                    status = "draft changed".into();
                    tp.conflicts.push(Conflict {
                        module: Module::Billing,
                        source_key: period.invoice_id.clone(),
                        label: reference.clone(),
                        reason: format!(
                            "draft Halo invoice {} holds a net {:.2} but the usage now comes to {price:.2}; update its lines by hand (Halo does not document how an API client replaces an invoice's lines, so csp-sync does not guess)",
                            h.id, h.net
                        ),
                        halo_ids: vec![h.id],
                    });
                } else {
                    status = "already invoiced".into();
                }
            } else if let Some(s) = &stored {
                // The state says it was written, but the read around the period did not show it.
                rows[0].halo_invoice_id = Some(s.halo_invoice_id);
                status = "already invoiced".into();
                tp.notes.push(format!(
                    "billing {}: Halo invoice {} ({reference}) was written by an earlier run but is not among the invoices read; not created again",
                    period.period, s.halo_invoice_id
                ));
            } else {
                status = "invoice".into();
                all_done = false;
                let invoice_date = period
                    .period_end
                    .clone()
                    .unwrap_or_else(|| period.invoice_date.clone());
                let due = invoice_date
                    .parse::<jiff::civil::Date>()
                    .ok()
                    .and_then(|d| d.checked_add(jiff::Span::new().days(30)).ok())
                    .map_or_else(|| invoice_date.clone(), |d| d.to_string());
                let f = |field: &str, to: Value| FieldChange {
                    field: field.into(),
                    from: Value::Null,
                    to,
                };
                let mut extra = serde_json::Map::new();
                extra.insert("client_id".into(), json!(client_id));
                tp.changes.push(Change {
                    module: Module::Billing,
                    action: Action::Create,
                    entity: HaloEntity::Invoice,
                    halo_id: None,
                    source_key: period.invoice_id.clone(),
                    label: reference.clone(),
                    reason: format!(
                        "Azure usage of {} not yet invoiced: cost {cost:.2}, price {price:.2} {} ({})",
                        period.period,
                        policy.currency,
                        crate::render::count(lines.len(), "line", "lines")
                    ),
                    fields: vec![
                        f("reference", json!(reference)),
                        f("invoice_date", json!(invoice_date)),
                        f("duedate", json!(due)),
                        f("posted", json!(false)),
                        f("lines", Value::Array(lines.clone())),
                    ],
                    extra,
                });
            }
            rows[0].status = status;
            if rows[0].status != "no usage" {
                bill.billed_cost += cost;
                bill.billed_price += price;
            }
            bill.customers.extend(rows);
        }
        if all_done {
            plan.state.invoice(&period.invoice_id, &period.period).done = true;
        }
        bill.billed_cost = (bill.billed_cost * per as f64).round() / per as f64;
        bill.billed_price = (bill.billed_price * per as f64).round() / per as f64;
        plan.periods.push(bill);
    }
    plan.tenants = by_tenant
        .into_values()
        .filter(|t| {
            !t.changes.is_empty()
                || !t.conflicts.is_empty()
                || !t.errors.is_empty()
                || !t.notes.is_empty()
        })
        .collect();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::usage::UsageLine;

    fn period() -> BilledPeriod {
        BilledPeriod {
            invoice_id: "G1".into(),
            period: "2028-01".into(),
            invoice_date: "2028-02-01".into(),
            period_end: Some("2028-01-31".into()),
            total_charges: Some(500.0),
            currency: Some("USD".into()),
            has_usage: Some(true),
        }
    }

    fn line(c: &str, e: &str, cat: &str, total: f64) -> UsageLine<'static> {
        UsageLine {
            customer_id: c.to_string().into(),
            customer_name: format!("{c} Ltd").into(),
            entitlement_id: e.to_string().into(),
            entitlement_description: format!("sub {e}").into(),
            meter_category: cat.to_string().into(),
            meter_name: "m".into(),
            unit_of_measure: "1 Hour".into(),
            quantity: 1.0,
            billing_pre_tax_total: total,
            billing_currency: "USD".into(),
            ..UsageLine::default()
        }
    }

    fn totals(lines: &[UsageLine<'static>]) -> UsageTotals {
        let mut t = UsageTotals::default();
        for l in lines {
            t.add(l);
        }
        t
    }

    fn targets() -> Vec<BillingTarget> {
        vec![
            BillingTarget {
                customer_id: "a".into(),
                name: "A Ltd".into(),
                halo_client_id: 1,
            },
            BillingTarget {
                customer_id: "b".into(),
                name: "B Ltd".into(),
                halo_client_id: 2,
            },
        ]
    }

    fn policy() -> BillingPolicy {
        BillingPolicy {
            markup_percent: 10.0,
            markup: BTreeMap::from([("Virtual Machines".to_string(), 8.0)]),
            currency: "USD".into(),
        }
    }

    fn run(t: UsageTotals, halo: &[HaloInvoice]) -> BillingPlan {
        let ts = targets();
        let map = |c: &str| match c {
            "a" => Mapping::Target(&ts[0]),
            "b" => Mapping::Target(&ts[1]),
            "s" => Mapping::Skipped,
            _ => Mapping::Unmapped,
        };
        plan_billing(
            &[(period(), PeriodSource::Usage(t))],
            &map,
            &ts,
            halo,
            &BillingState::default(),
            &policy(),
        )
    }

    fn lines_of(c: &Change) -> Vec<Value> {
        c.fields
            .iter()
            .find(|f| f.field == "lines")
            .unwrap()
            .to
            .as_array()
            .unwrap()
            .clone()
    }

    #[test]
    fn one_invoice_per_client_with_a_line_per_subscription_and_category() {
        let t = totals(&[
            line("a", "e1", "Virtual Machines", 10.0),
            line("a", "e1", "Virtual Machines", 5.0),
            line("a", "e1", "Storage", 2.0),
            line("a", "e2", "Storage", 3.0),
            line("x", "e9", "Storage", 7.0),
            line("s", "e8", "Storage", 1.0),
        ]);
        let p = run(t, &[]);
        let a = p.tenants.iter().find(|t| t.customer_id == "a").unwrap();
        assert_eq!(a.changes.len(), 1);
        let c = &a.changes[0];
        assert_eq!(c.label, "CSP G1");
        assert_eq!(c.extra["client_id"], json!(1));
        assert!(
            c.fields
                .iter()
                .any(|f| f.field == "posted" && f.to == json!(false))
        );
        let lines = lines_of(c);
        assert_eq!(lines.len(), 3);
        let vm = lines
            .iter()
            .find(|l| {
                l["item_shortdescription"]
                    .as_str()
                    .unwrap()
                    .contains("Virtual Machines")
            })
            .unwrap();
        assert_eq!(vm["unit_cost"], json!(15.0));
        assert_eq!(
            vm["unit_price"],
            json!(16.2),
            "the category's markup (8 %) overrides 10 %"
        );
        assert_eq!(vm["qty_order"], json!(1));
        let storage: f64 = lines
            .iter()
            .filter(|l| {
                l["item_shortdescription"]
                    .as_str()
                    .unwrap()
                    .contains("Storage")
            })
            .map(|l| l["unit_price"].as_f64().unwrap())
            .sum();
        assert!((storage - 5.5).abs() < 1e-9);
        let bill = &p.periods[0];
        assert!((bill.export_total - 28.0).abs() < 1e-9);
        assert!((bill.billed_cost - 20.0).abs() < 1e-9);
        let status = |id: &str| {
            bill.customers
                .iter()
                .find(|c| c.customer_id == id)
                .unwrap()
                .status
                .clone()
        };
        assert_eq!(status("x"), "unmapped");
        assert_eq!(status("s"), "skipped");
        assert!(
            p.tenants.iter().all(|t| t.customer_id != "b"),
            "no usage, no invoice"
        );
    }

    #[test]
    fn rounding_keeps_lines_adding_up_to_the_cent() {
        // Three groups of 0.3333333 each: rounded alone they give 0.99; apportioned they give 1.00.
        let t = totals(&[
            line("a", "e1", "Storage", 0.333_333_4),
            line("a", "e2", "Storage", 0.333_333_3),
            line("a", "e3", "Storage", 0.333_333_3),
        ]);
        let p = run(t, &[]);
        let lines = lines_of(&p.tenants[0].changes[0]);
        let cents: i64 = lines
            .iter()
            .map(|l| (l["unit_cost"].as_f64().unwrap() * 100.0).round() as i64)
            .sum();
        assert_eq!(cents, 100);
        assert_eq!(
            apportion(&[-333_333_333, -333_333_333, -333_333_334], 100)
                .iter()
                .sum::<i64>(),
            -100
        );
    }

    #[test]
    fn a_credit_is_a_negative_line_and_zero_usage_no_invoice() {
        let t = totals(&[
            line("a", "e1", "Storage", 4.0),
            line("a", "e2", "Azure App Service", -1.5),
            line("b", "e3", "Storage", 1.0),
            line("b", "e3", "Storage", -1.0),
        ]);
        let p = run(t, &[]);
        let a = p.tenants.iter().find(|t| t.customer_id == "a").unwrap();
        let lines = lines_of(&a.changes[0]);
        let credit = lines
            .iter()
            .find(|l| l["unit_cost"].as_f64().unwrap() < 0.0)
            .unwrap();
        assert_eq!(credit["unit_cost"], json!(-1.5));
        assert_eq!(credit["unit_price"], json!(-1.65));
        assert!(
            p.tenants
                .iter()
                .all(|t| t.customer_id != "b" || t.changes.is_empty())
        );
        let b = p.periods[0]
            .customers
            .iter()
            .find(|c| c.customer_id == "b")
            .unwrap();
        assert_eq!(b.status, "no usage");
    }

    #[test]
    fn an_invoice_in_halo_is_never_created_again() {
        let t = totals(&[line("a", "e1", "Storage", 10.0)]);
        let posted = HaloInvoice {
            id: 77,
            client_id: 1,
            reference: "CSP G1".into(),
            posted: true,
            net: 3.0,
        };
        let p = run(t.clone(), &[posted]);
        assert!(p.tenants.iter().all(|t| t.changes.is_empty()));
        assert_eq!(p.periods[0].customers[0].status, "posted");
        assert!(p.state.invoices["G1"].done);

        let same = HaloInvoice {
            id: 78,
            client_id: 1,
            reference: "CSP G1".into(),
            posted: false,
            net: 11.0,
        };
        let p = run(t.clone(), &[same]);
        assert!(
            p.tenants
                .iter()
                .all(|t| t.changes.is_empty() && t.conflicts.is_empty())
        );
        assert_eq!(p.periods[0].customers[0].status, "already invoiced");

        let changed = HaloInvoice {
            id: 79,
            client_id: 1,
            reference: "CSP G1".into(),
            posted: false,
            net: 9.0,
        };
        let p = run(t.clone(), &[changed]);
        let a = &p.tenants[0];
        assert!(a.changes.is_empty());
        assert_eq!(a.conflicts.len(), 1);
        assert_eq!(a.conflicts[0].halo_ids, vec![79]);

        // The same reference under another client does not count.
        let other = HaloInvoice {
            id: 80,
            client_id: 2,
            reference: "CSP G1".into(),
            posted: false,
            net: 11.0,
        };
        let p = run(t, &[other]);
        assert_eq!(p.tenants[0].changes.len(), 1);
    }

    #[test]
    fn a_currency_mismatch_fails_that_customer() {
        let mut l = line("a", "e1", "Storage", 10.0);
        l.billing_currency = "EUR".into();
        let p = run(totals(&[l, line("b", "e2", "Storage", 1.0)]), &[]);
        let a = p.tenants.iter().find(|t| t.customer_id == "a").unwrap();
        assert!(a.changes.is_empty());
        assert!(a.errors[0].contains("EUR"), "{:?}", a.errors);
        assert_eq!(
            p.tenants
                .iter()
                .find(|t| t.customer_id == "b")
                .unwrap()
                .changes
                .len(),
            1
        );
    }
}

/// The open period's estimate (SPEC 7: an `estimates` section of the plan, never changes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub period: String,
    /// `read`, `no data`, `pending`, `failed: ...`.
    pub status: String,
    pub currency: String,
    pub customers: Vec<CustomerBill>,
    pub total_cost: f64,
    pub total_price: f64,
    pub export_total: f64,
}

/// Figures of the unbilled export per mapped customer, at the configured markup.
pub fn estimate<'a>(
    usage: &crate::billing::PeriodUsage,
    mapping: &dyn Fn(&str) -> Mapping<'a>,
    policy: &BillingPolicy,
) -> Estimate {
    use crate::billing::PeriodUsage;
    let per = minor_per_unit(&policy.currency);
    let mut e = Estimate {
        period: "current".into(),
        status: String::new(),
        currency: policy.currency.clone(),
        customers: Vec::new(),
        total_cost: 0.0,
        total_price: 0.0,
        export_total: 0.0,
    };
    let t = match usage {
        PeriodUsage::Usage(t) => t,
        PeriodUsage::NoData => {
            e.status = "no data".into();
            return e;
        }
        PeriodUsage::Pending { .. } => {
            e.status = "pending".into();
            return e;
        }
        PeriodUsage::Failed(m) => {
            e.status = format!("failed: {m}");
            return e;
        }
    };
    e.status = "read".into();
    e.export_total = t.total_nanos as f64 / NANOS as f64;
    let mut by_customer: BTreeMap<&str, (String, i128, i128, usize)> = BTreeMap::new();
    for g in t.groups.values() {
        let bp = (policy.markup_for(&g.meter_category) * 100.0).round() as i128;
        let x = by_customer
            .entry(g.customer_id.as_str())
            .or_insert_with(|| (g.customer_name.clone(), 0, 0, 0));
        x.1 += g.cost_nanos;
        x.2 += g.cost_nanos * (10_000 + bp) / 10_000;
        x.3 += 1;
    }
    for (cid, (name, cost, price, lines)) in by_customer {
        let (status, name, client) = match mapping(cid) {
            Mapping::Target(t) => ("estimate", t.name.clone(), Some(t.halo_client_id)),
            Mapping::Skipped => ("skipped", name, None),
            Mapping::Unmapped => ("unmapped", name, None),
        };
        let c = money(div_round(cost, NANOS / per) as i64, per);
        let p = money(div_round(price, NANOS / per) as i64, per);
        if client.is_some() {
            e.total_cost += c;
            e.total_price += p;
        }
        e.customers.push(CustomerBill {
            customer_id: cid.to_string(),
            name,
            halo_client_id: client,
            cost: c,
            price: p,
            margin: ((p - c) * per as f64).round() / per as f64,
            lines,
            status: status.into(),
            halo_invoice_id: None,
        });
    }
    e.total_cost = (e.total_cost * per as f64).round() / per as f64;
    e.total_price = (e.total_price * per as f64).round() / per as f64;
    e
}
