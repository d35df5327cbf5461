//! One billed usage line of a Graph billing export, read case-insensitively (the casing of the names inside
//! the blobs is not documented: Microsoft's attribute table spells them `CustomerId`, `BillingPreTaxTotal`,
//! ...; camelCase and lower case are accepted too), and the per customer, entitlement and meter category
//! totals a period's lines add up to.
//!
//! Money is summed exactly in billionths of the currency unit (a line's pre-tax total has at most a few
//! decimals; f64 sums of a million lines would drift). Microsoft notes that a line's `SubscriptionId` is not
//! the Azure subscription id a customer sees: the entitlement id and description are, so lines are keyed by
//! entitlement.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

/// Billionths of a currency unit.
pub const NANOS: i128 = 1_000_000_000;

/// The fields of a usage line csp-sync uses (every other attribute of the `full` set is skipped unread).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct UsageLine<'a> {
    pub customer_id: Cow<'a, str>,
    pub customer_name: Cow<'a, str>,
    pub subscription_id: Cow<'a, str>,
    pub entitlement_id: Cow<'a, str>,
    pub entitlement_description: Cow<'a, str>,
    pub meter_category: Cow<'a, str>,
    pub meter_name: Cow<'a, str>,
    pub unit_of_measure: Cow<'a, str>,
    pub quantity: f64,
    pub unit_price: f64,
    pub billing_pre_tax_total: f64,
    pub billing_currency: Cow<'a, str>,
}

#[derive(Clone, Copy)]
enum Field {
    CustomerId,
    CustomerName,
    SubscriptionId,
    EntitlementId,
    EntitlementDescription,
    MeterCategory,
    MeterName,
    UnitOfMeasure,
    Quantity,
    UnitPrice,
    BillingPreTaxTotal,
    BillingCurrency,
}

fn field_of(key: &str) -> Option<Field> {
    // Compared without case and without `_` (CustomerId, customerId, customer_id).
    let mut buf = [0u8; 32];
    let mut n = 0;
    for b in key.bytes() {
        if b == b'_' {
            continue;
        }
        if n == buf.len() {
            return None;
        }
        buf[n] = b.to_ascii_lowercase();
        n += 1;
    }
    Some(match &buf[..n] {
        b"customerid" => Field::CustomerId,
        b"customername" => Field::CustomerName,
        b"subscriptionid" => Field::SubscriptionId,
        b"entitlementid" => Field::EntitlementId,
        b"entitlementdescription" => Field::EntitlementDescription,
        b"metercategory" => Field::MeterCategory,
        b"metername" => Field::MeterName,
        b"unitofmeasure" => Field::UnitOfMeasure,
        b"quantity" => Field::Quantity,
        b"unitprice" => Field::UnitPrice,
        b"billingpretaxtotal" => Field::BillingPreTaxTotal,
        b"billingcurrency" => Field::BillingCurrency,
        _ => return None,
    })
}

/// A string value (a number or a bool becomes its text, null the empty string).
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed("")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A number value, or a numeric string ("12.5"); null and "" are 0.
struct Num(f64);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Num;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Num, E> {
                Ok(Num(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Num, E> {
                Ok(Num(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Num, E> {
                Ok(Num(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Num, E> {
                let t = v.trim();
                if t.is_empty() {
                    return Ok(Num(0.0));
                }
                t.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(Num)
                    .ok_or_else(|| E::custom(format!("{v:?} is not a number")))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Num, E> {
                Ok(Num(0.0))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for UsageLine<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = UsageLine<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a usage line object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut line = UsageLine::default();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    let Some(field) = field_of(&key) else {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    };
                    match field {
                        Field::Quantity => line.quantity = map.next_value::<Num>()?.0,
                        Field::UnitPrice => line.unit_price = map.next_value::<Num>()?.0,
                        Field::BillingPreTaxTotal => {
                            line.billing_pre_tax_total = map.next_value::<Num>()?.0;
                        }
                        text => {
                            let v = map.next_value::<Text<'de>>()?.0;
                            match text {
                                Field::CustomerId => line.customer_id = v,
                                Field::CustomerName => line.customer_name = v,
                                Field::SubscriptionId => line.subscription_id = v,
                                Field::EntitlementId => line.entitlement_id = v,
                                Field::EntitlementDescription => line.entitlement_description = v,
                                Field::MeterCategory => line.meter_category = v,
                                Field::MeterName => line.meter_name = v,
                                Field::UnitOfMeasure => line.unit_of_measure = v,
                                _ => line.billing_currency = v,
                            }
                        }
                    }
                }
                Ok(line)
            }
        }
        d.deserialize_map(V)
    }
}

/// An amount in billionths, from a line's decimal value.
pub fn to_nanos(v: f64) -> i128 {
    (v * NANOS as f64).round() as i128
}

/// Billionths as a decimal number (for output).
pub fn nanos_to_f64(n: i128) -> f64 {
    n as f64 / NANOS as f64
}

/// What one customer's lines of one entitlement and meter category add up to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageGroup {
    pub customer_id: String,
    pub customer_name: String,
    pub entitlement_id: String,
    pub entitlement_description: String,
    pub meter_category: String,
    /// The partner's pre-tax cost, billionths.
    pub cost_nanos: i128,
    /// Quantity per unit of measure, billionths.
    pub quantities: BTreeMap<String, i128>,
    /// Meter names seen (at most [`MAX_METERS`] kept).
    pub meters: Vec<String>,
    pub currencies: Vec<String>,
    pub lines: u64,
}

/// Meter names kept per group for the line description.
pub const MAX_METERS: usize = 12;

/// The key of a group: customer, entitlement (lower case) and meter category.
pub type GroupKey = (String, String, String);

/// Every group of a period's lines, and the export's own totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageTotals {
    pub groups: BTreeMap<String, UsageGroup>,
    /// Every line's pre-tax total, all customers, billionths.
    pub total_nanos: i128,
    pub lines: u64,
    /// Currency -> lines in it.
    pub currencies: BTreeMap<String, u64>,
}

impl UsageTotals {
    /// Adds one line.
    pub fn add(&mut self, line: &UsageLine<'_>) {
        let cost = to_nanos(line.billing_pre_tax_total);
        self.total_nanos += cost;
        self.lines += 1;
        let currency = line.billing_currency.trim().to_ascii_uppercase();
        if let Some(n) = self.currencies.get_mut(&currency) {
            *n += 1;
        } else {
            self.currencies.insert(currency.clone(), 1);
        }
        let key = group_key(line);
        let g = if let Some(g) = self.groups.get_mut(&key) {
            g
        } else {
            self.groups.entry(key).or_insert_with(|| UsageGroup {
                customer_id: line.customer_id.trim().to_ascii_lowercase(),
                customer_name: line.customer_name.to_string(),
                entitlement_id: line.entitlement_id.trim().to_ascii_lowercase(),
                entitlement_description: line.entitlement_description.to_string(),
                meter_category: line.meter_category.trim().to_string(),
                ..UsageGroup::default()
            })
        };
        g.cost_nanos += cost;
        g.lines += 1;
        let unit = line.unit_of_measure.trim();
        if let Some(q) = g.quantities.get_mut(unit) {
            *q += to_nanos(line.quantity);
        } else {
            g.quantities
                .insert(unit.to_string(), to_nanos(line.quantity));
        }
        let meter = line.meter_name.trim();
        if !meter.is_empty() && g.meters.len() < MAX_METERS && !g.meters.iter().any(|m| m == meter)
        {
            g.meters.push(meter.to_string());
        }
        if !g.currencies.contains(&currency) {
            g.currencies.push(currency);
        }
    }

    /// Adds every group of `other` (one blob's totals into the period's).
    pub fn merge(&mut self, other: UsageTotals) {
        self.total_nanos += other.total_nanos;
        self.lines += other.lines;
        for (c, n) in other.currencies {
            *self.currencies.entry(c).or_default() += n;
        }
        for (k, g) in other.groups {
            match self.groups.get_mut(&k) {
                None => {
                    self.groups.insert(k, g);
                }
                Some(mine) => {
                    mine.cost_nanos += g.cost_nanos;
                    mine.lines += g.lines;
                    for (u, q) in g.quantities {
                        *mine.quantities.entry(u).or_default() += q;
                    }
                    for m in g.meters {
                        if mine.meters.len() < MAX_METERS && !mine.meters.contains(&m) {
                            mine.meters.push(m);
                        }
                    }
                    for c in g.currencies {
                        if !mine.currencies.contains(&c) {
                            mine.currencies.push(c);
                        }
                    }
                }
            }
        }
    }

    /// The groups of one customer.
    pub fn of_customer<'s>(&'s self, customer_id: &'s str) -> impl Iterator<Item = &'s UsageGroup> {
        self.groups
            .values()
            .filter(move |g| g.customer_id.eq_ignore_ascii_case(customer_id))
    }
}

fn group_key(line: &UsageLine<'_>) -> String {
    // One string key (customer|entitlement|category) keeps the lookup to one allocation per line.
    let mut k = String::with_capacity(
        line.customer_id.len() + line.entitlement_id.len() + line.meter_category.len() + 2,
    );
    for (i, part) in [
        &line.customer_id,
        &line.entitlement_id,
        &line.meter_category,
    ]
    .into_iter()
    .enumerate()
    {
        if i > 0 {
            k.push('|');
        }
        let p = part.trim();
        if i < 2 {
            k.extend(p.chars().map(|c| c.to_ascii_lowercase()));
        } else {
            k.push_str(p);
        }
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_whatever_their_case() {
        let pascal: UsageLine = serde_json::from_str(
            r#"{"CustomerId":"AAA","EntitlementId":"E1","MeterCategory":"Virtual Machines","Quantity":"2.5","BillingPreTaxTotal":1.25,"BillingCurrency":"usd","Tags":{"x":[1]},"UnitOfMeasure":"1 Hour"}"#,
        )
        .unwrap();
        let camel: UsageLine = serde_json::from_str(
            r#"{"customerId":"AAA","entitlementId":"E1","meterCategory":"Virtual Machines","quantity":2.5,"billingPreTaxTotal":"1.25","billingCurrency":"usd","unitOfMeasure":"1 Hour","unitPrice":null}"#,
        )
        .unwrap();
        assert_eq!(pascal, camel);
        assert!((pascal.quantity - 2.5).abs() < 1e-12);
        let bad = serde_json::from_str::<UsageLine>(r#"{"Quantity":"lots"}"#);
        assert!(bad.is_err());
    }

    #[test]
    fn lines_add_up_exactly_per_group() {
        let mut t = UsageTotals::default();
        for i in 0..10 {
            let line = UsageLine {
                customer_id: "AAA".into(),
                entitlement_id: if i % 2 == 0 { "E1" } else { "e1" }.into(),
                meter_category: "Storage".into(),
                meter_name: "LRS".into(),
                unit_of_measure: "1 GB/Month".into(),
                quantity: 0.1,
                billing_pre_tax_total: 0.1,
                billing_currency: "USD".into(),
                ..UsageLine::default()
            };
            t.add(&line);
        }
        assert_eq!(t.groups.len(), 1);
        let g = t.groups.values().next().unwrap();
        assert_eq!(g.cost_nanos, NANOS);
        assert_eq!(g.quantities["1 GB/Month"], NANOS);
        assert_eq!(t.total_nanos, NANOS);
        let mut other = t.clone();
        other.merge(t);
        assert_eq!(other.groups.values().next().unwrap().lines, 20);
    }
}
