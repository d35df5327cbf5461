//! The contract boundary of the users module (SPEC sections 4 and 7: `[users] contract_skus`,
//! `contract_mode`, `contract_field`): whether a user holds a contract SKU, and in `"flag"` mode the Halo
//! field that says so.
//!
//! The flag goes to `covered_by_contract` (in Halo's `Users_List` schema), or with `contract_field = ID` to
//! that user custom field (`customfields: [{"id": ID, "value": …}]`, read back with
//! `include_custom_fields=ID`). Halo may compute `covered_by_contract` from its own contracts (no database
//! column for it was found, reference halo-api.md 2.3), so a value read back may not be the value written.
//! The rule for a field that does not read back (SPEC 7): compare with what the read returned when it
//! carries the field; when it does not, write at create and link and then whenever the source differs
//! from the value csp-sync last wrote (kept in state); and when Halo keeps answering another value than
//! the one last written while the source has not changed, do not rewrite it every run: report it.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::norm;
use super::users::UsersPolicy;
use crate::config::ContractMode;
use crate::model::{EntraUser, HaloUser};

/// Whether `user` holds one of `policy.contract_skus` (by `skuId` or `skuPartNumber`, any case);
/// `sku_part_numbers` is the tenant's SKU id -> `skuPartNumber` table.
pub fn holds_contract_sku(
    user: &EntraUser,
    policy: &UsersPolicy,
    sku_part_numbers: &[(String, String)],
) -> bool {
    let wanted: BTreeSet<String> = policy.contract_skus.iter().map(|s| norm(s)).collect();
    user.sku_ids
        .iter()
        .map(|s| norm(s))
        .filter(|s| !s.is_empty())
        .any(|id| {
            wanted.contains(&id)
                || sku_part_numbers
                    .iter()
                    .filter(|(sku, _)| norm(sku) == id)
                    .any(|(_, part)| wanted.contains(&norm(part)))
        })
}

/// The contract SKUs (as configured) a user holds.
pub fn contract_skus_held(
    user: &EntraUser,
    policy: &UsersPolicy,
    sku_part_numbers: &[(String, String)],
) -> Vec<String> {
    policy
        .contract_skus
        .iter()
        .filter(|c| {
            let one = UsersPolicy {
                contract_skus: vec![(*c).clone()],
                ..UsersPolicy::default()
            };
            holds_contract_sku(user, &one, sku_part_numbers)
        })
        .cloned()
        .collect()
}

/// The flag a user should carry: `Some(covered)` in `"flag"` mode with contract SKUs set; `None` when
/// nothing is flagged.
pub fn cover(
    user: &EntraUser,
    policy: &UsersPolicy,
    sku_part_numbers: &[(String, String)],
) -> Option<bool> {
    (policy.contract_mode == ContractMode::Flag && !policy.contract_skus.is_empty())
        .then(|| holds_contract_sku(user, policy, sku_part_numbers))
}

/// The Halo field the flag is written to.
pub fn field_name(policy: &UsersPolicy) -> &'static str {
    if policy.contract_field.is_some() {
        "customfields"
    } else {
        "covered_by_contract"
    }
}

/// A custom field value as a flag: booleans, 0/1, "true"/"false", "yes"/"no"; anything else unknown.
fn as_flag(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_f64().map(|f| f != 0.0),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(true),
            "false" | "0" | "no" | "" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// The flag as the read returned it: `None` when the read did not carry the field.
pub fn read_flag(u: &HaloUser, policy: &UsersPolicy) -> Option<bool> {
    match policy.contract_field {
        None => u.covered_by_contract,
        Some(id) => u.customfields.as_array().and_then(|fields| {
            fields
                .iter()
                .find(|f| f.get("id").and_then(Value::as_i64) == Some(id))
                .and_then(|f| f.get("value"))
                .and_then(as_flag)
        }),
    }
}

/// The field change's `from`: what the read returned for the field written (the whole `customfields`
/// array for a custom field, so a saved plan's staleness check compares like with like).
pub fn from_value(u: Option<&HaloUser>, policy: &UsersPolicy) -> Value {
    let Some(u) = u else { return Value::Null };
    match policy.contract_field {
        None => u.covered_by_contract.map_or(Value::Null, Value::Bool),
        Some(_) => u.customfields.clone(),
    }
}

/// The field change's `to`.
pub fn to_value(covered: bool, policy: &UsersPolicy) -> Value {
    match policy.contract_field {
        None => Value::Bool(covered),
        Some(id) => json!([{"id": id, "value": covered}]),
    }
}

/// The flag a field change writes (its `to`), for the state of values last written.
pub fn written_flag(field: &str, to: &Value) -> Option<bool> {
    match field {
        "covered_by_contract" => to.as_bool(),
        "customfields" => to
            .as_array()
            .and_then(|a| a.first())
            .and_then(|f| f.get("value"))
            .and_then(as_flag),
        _ => None,
    }
}

/// What to do with the flag of a linked user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Halo holds the right value (or holds what was last written while the read lacks the field).
    InStep,
    /// Write it.
    Write,
    /// Halo answers another value than the one csp-sync last wrote, and the source has not changed: not
    /// rewritten (Halo computes it, or a rule overrides it); reported.
    NotKept,
}

/// The decision for a linked user whose flag should be `want`, with what the read returned (`have`) and
/// the value last written (`last`).
pub fn decide(want: bool, have: Option<bool>, last: Option<bool>) -> Decision {
    match (have, last == Some(want)) {
        (Some(h), _) if h == want => Decision::InStep,
        (Some(_), true) => Decision::NotKept,
        (None, true) => Decision::InStep,
        (_, false) => Decision::Write,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decide_follows_the_rule_for_fields_that_do_not_read_back() {
        // Read back: compared.
        assert_eq!(decide(true, Some(true), None), Decision::InStep);
        assert_eq!(decide(true, Some(false), None), Decision::Write);
        assert_eq!(decide(true, Some(false), Some(false)), Decision::Write);
        // Halo keeps answering false although true was written and the source still says true.
        assert_eq!(decide(true, Some(false), Some(true)), Decision::NotKept);
        // Not in the read: the value last written decides.
        assert_eq!(decide(false, None, Some(false)), Decision::InStep);
        assert_eq!(decide(false, None, Some(true)), Decision::Write);
        assert_eq!(decide(false, None, None), Decision::Write);
    }

    #[test]
    fn custom_field_values_read_and_write() {
        let policy = UsersPolicy {
            contract_field: Some(12),
            ..UsersPolicy::default()
        };
        let u = HaloUser {
            customfields: json!([{"id": 3, "value": "x"}, {"id": 12, "value": "1"}]),
            ..HaloUser::default()
        };
        assert_eq!(read_flag(&u, &policy), Some(true));
        assert_eq!(read_flag(&HaloUser::default(), &policy), None);
        let to = to_value(false, &policy);
        assert_eq!(to, json!([{"id": 12, "value": false}]));
        assert_eq!(written_flag(field_name(&policy), &to), Some(false));
        assert_eq!(
            written_flag(
                "covered_by_contract",
                &to_value(true, &UsersPolicy::default())
            ),
            Some(true)
        );
    }
}
