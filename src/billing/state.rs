//! What the state directory keeps for billing (SPEC 9): per Partner Center invoice, the export operation
//! still running (resumed by the next run instead of starting again), whether the period is done (so a
//! period with nothing to bill is not exported again), and the Halo invoice id of each customer billed.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::state::{StateDir, read_json, write_json};

/// One Halo invoice written for a customer and Partner Center invoice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BilledInvoice {
    pub halo_invoice_id: i64,
    /// Net sum of the lines written, in minor units of the currency.
    pub net_minor: i64,
}

/// The billing state of one Partner Center invoice (one billed period).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InvoiceState {
    pub period: String,
    /// The running export's operation URL.
    #[serde(default)]
    pub operation: Option<String>,
    #[serde(default)]
    pub operation_started: Option<String>,
    /// Every mapped customer's invoice exists (or there was nothing to bill).
    #[serde(default)]
    pub done: bool,
    #[serde(default)]
    pub no_data: bool,
    /// Customer id -> the Halo invoice written for it.
    #[serde(default)]
    pub customers: BTreeMap<String, BilledInvoice>,
}

/// Everything billing keeps, by Partner Center invoice id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BillingState {
    #[serde(default)]
    pub invoices: BTreeMap<String, InvoiceState>,
}

const FILE: &str = "billing.json";

impl BillingState {
    /// The stored billing state; absent or unreadable reads as empty (the never-bill-twice check then
    /// rests on Halo's invoices, read around the period).
    pub fn load(dir: &StateDir) -> BillingState {
        read_json(&dir.path().join(FILE)).unwrap_or_default()
    }

    pub fn save(&self, dir: &StateDir) -> Result<()> {
        write_json(&dir.path().join(FILE), self)
    }

    pub fn invoice(&mut self, invoice_id: &str, period: &str) -> &mut InvoiceState {
        let e = self.invoices.entry(invoice_id.to_string()).or_default();
        if e.period.is_empty() {
            e.period = period.to_string();
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn billing_state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir::new(dir.path());
        assert_eq!(BillingState::load(&sd), BillingState::default());
        let mut s = BillingState::default();
        s.invoice("G1", "2028-01").operation = Some("https://g/op/1".into());
        s.save(&sd).unwrap();
        assert_eq!(BillingState::load(&sd), s);
    }
}
