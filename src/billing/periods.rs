//! Closed billing periods from Partner Center's invoice list (`GET /v1/invoices`). The reference does not
//! give the response shape in full (microsoft-apis.md 2.4 lists the endpoint, not its fields), so each
//! invoice is read defensively from the fields Partner Center's invoice resource is known to carry, each
//! optional and matched without case: `id`, `invoiceDate`, `billingPeriodStartDate`,
//! `billingPeriodEndDate`, `totalCharges`, `currencyCode`, `documentType`, `invoiceDetails[]`
//! (`invoiceLineItemType`, `billingProvider`). An invoice without an id is skipped with a warning.

use serde::Serialize;
use serde_json::Value;

/// One Partner Center invoice of a closed period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BilledPeriod {
    pub invoice_id: String,
    /// `YYYY-MM`.
    pub period: String,
    /// `YYYY-MM-DD`: the invoice's date (the Halo invoice date).
    pub invoice_date: String,
    pub period_end: Option<String>,
    /// The invoice's own total (all its charges, Azure and the rest), when given.
    pub total_charges: Option<f64>,
    pub currency: Option<String>,
    /// `Some(false)` when the invoice lists its details and none is usage; `None` when it does not say.
    pub has_usage: Option<bool>,
}

fn get<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    let obj = v.as_object()?;
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn text(v: &Value, name: &str) -> Option<String> {
    match get(v, name)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn number(v: &Value, name: &str) -> Option<f64> {
    match get(v, name)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `YYYY-MM-DD` of a date or date-time text.
fn day(s: &str) -> Option<String> {
    let d = s.get(..10)?;
    d.parse::<jiff::civil::Date>().ok().map(|d| d.to_string())
}

/// Reads the invoice list. Credit notes are left out (their usage corrections arrive as negative lines
/// in the next period's export); invoices whose details say they hold no usage are marked so.
pub fn parse_invoices(items: &[Value]) -> Vec<BilledPeriod> {
    let mut out = Vec::new();
    for item in items {
        let Some(id) = text(item, "id") else {
            tracing::warn!("a Partner Center invoice without an id was skipped");
            continue;
        };
        let doc_type = text(item, "documentType").unwrap_or_default();
        if doc_type.to_ascii_lowercase().contains("credit") {
            continue;
        }
        let start = text(item, "billingPeriodStartDate").and_then(|s| day(&s));
        let invoice_date = text(item, "invoiceDate").and_then(|s| day(&s));
        // The period is the billing period's start month; without it, the month before the invoice
        // date (Partner Center issues a month's invoice early the next month).
        let period = match (&start, &invoice_date) {
            (Some(s), _) => s[..7].to_string(),
            (None, Some(d)) => d
                .parse::<jiff::civil::Date>()
                .ok()
                .and_then(|d| d.checked_sub(jiff::Span::new().months(1)).ok())
                .map(|d| d.to_string()[..7].to_string())
                .unwrap_or_default(),
            (None, None) => String::new(),
        };
        if period.is_empty() {
            tracing::warn!(invoice = %id, "Partner Center invoice {id} has no dates and was skipped");
            continue;
        }
        let details = get(item, "invoiceDetails").and_then(Value::as_array);
        let has_usage = details.map(|d| {
            d.iter().any(|x| {
                let t = text(x, "invoiceLineItemType")
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                let p = text(x, "billingProvider")
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                t.contains("usage") || p == "azure" || p == "all"
            })
        });
        out.push(BilledPeriod {
            invoice_date: invoice_date
                .clone()
                .or_else(|| start.clone())
                .unwrap_or_default(),
            period_end: text(item, "billingPeriodEndDate").and_then(|s| day(&s)),
            total_charges: number(item, "totalCharges"),
            currency: text(item, "currencyCode").map(|c| c.to_ascii_uppercase()),
            has_usage,
            invoice_id: id,
            period,
        });
    }
    out.sort_by(|a, b| (&a.period, &a.invoice_id).cmp(&(&b.period, &b.invoice_id)));
    out
}

/// Which invoices a run bills: `--period` names one month; else every period from `since` on; else
/// only the latest closed period. Invoices that say they hold no usage are left out.
pub fn choose(
    invoices: &[BilledPeriod],
    period: Option<&str>,
    since: Option<&str>,
) -> Vec<BilledPeriod> {
    let usage: Vec<&BilledPeriod> = invoices
        .iter()
        .filter(|i| i.has_usage != Some(false))
        .collect();
    let chosen: Vec<&BilledPeriod> = if let Some(p) = period {
        usage.into_iter().filter(|i| i.period == p).collect()
    } else if let Some(s) = since {
        usage
            .into_iter()
            .filter(|i| i.period.as_str() >= s)
            .collect()
    } else {
        let latest = usage.iter().map(|i| i.period.clone()).max();
        usage
            .into_iter()
            .filter(|i| Some(&i.period) == latest.as_ref())
            .collect()
    };
    chosen.into_iter().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn invoices_are_read_defensively() {
        let items = vec![
            json!({"id": "G001", "invoiceDate": "2028-01-05T00:00:00Z", "billingPeriodStartDate": "2027-12-01T00:00:00Z", "billingPeriodEndDate": "2027-12-31T00:00:00Z", "totalCharges": 120.5, "currencyCode": "usd", "invoiceDetails": [{"invoiceLineItemType": "usage_line_items", "billingProvider": "azure"}]}),
            json!({"ID": "G002", "InvoiceDate": "2028-02-04", "TotalCharges": "99.10"}),
            json!({"id": "G003", "invoiceDate": "2028-02-04", "billingPeriodStartDate": "2028-01-01", "invoiceDetails": [{"invoiceLineItemType": "billing_line_items", "billingProvider": "office"}]}),
            json!({"id": "C004", "documentType": "CreditNote", "invoiceDate": "2028-02-04"}),
            json!({"invoiceDate": "2028-02-04"}),
        ];
        let all = parse_invoices(&items);
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].period, "2027-12");
        assert_eq!(all[0].currency.as_deref(), Some("USD"));
        assert_eq!(all[1].invoice_id, "G002");
        assert_eq!(all[1].period, "2028-01");
        assert_eq!(all[1].total_charges, Some(99.1));
        assert_eq!(all[2].has_usage, Some(false));
        let latest = choose(&all, None, None);
        assert_eq!(latest.len(), 1);
        assert_eq!(latest[0].invoice_id, "G002");
        assert_eq!(choose(&all, None, Some("2027-12")).len(), 2);
        assert_eq!(choose(&all, Some("2027-12"), None)[0].invoice_id, "G001");
    }
}
