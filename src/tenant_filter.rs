//! What one `--tenant ID|NAME` names (SPEC 2): a configured customer, one deliberately skipped, a Partner
//! Center customer not mapped yet, several customers, or nobody. Each case that is not a configured
//! customer says why and what to run; names that match nobody list the nearest names.

use crate::config::{Config, TenantEntry};
use crate::model::Customer;

/// What a `--tenant` value names.
#[derive(Debug)]
pub enum Named<'a> {
    /// A mapped `[[tenant]]` entry.
    Mapped(&'a TenantEntry),
    /// A `[[tenant]]` entry with `skip = true`.
    Skipped(&'a TenantEntry),
    /// A Partner Center customer without a `[[tenant]]` entry.
    Unmapped(&'a Customer),
    /// More than one `[[tenant]]` entry.
    Several(Vec<&'a TenantEntry>),
    /// Nothing; the nearest names there are.
    Nothing(Vec<String>),
}

/// Resolves one `--tenant` value: a customer id, or a name compared case-insensitively with the
/// `[[tenant]]` names and the Partner Center company names.
pub fn resolve<'a>(filter: &str, config: &'a Config, customers: &'a [Customer]) -> Named<'a> {
    let wanted = filter.trim().to_lowercase();
    let company = |id: &str| {
        customers
            .iter()
            .find(|c| c.id.eq_ignore_ascii_case(id))
            .map(|c| c.company_name.to_lowercase())
    };
    let hits: Vec<&TenantEntry> = config
        .tenants
        .iter()
        .filter(|t| {
            t.customer_id.eq_ignore_ascii_case(&wanted)
                || t.name
                    .as_deref()
                    .is_some_and(|n| n.to_lowercase() == wanted)
                || company(&t.customer_id).is_some_and(|n| n == wanted)
        })
        .collect();
    match hits.as_slice() {
        [one] if one.skip => return Named::Skipped(one),
        [one] => return Named::Mapped(one),
        [] => {}
        _ => return Named::Several(hits),
    }
    let unmapped = customers.iter().find(|c| {
        c.id.eq_ignore_ascii_case(&wanted)
            || c.tenant_id.eq_ignore_ascii_case(&wanted)
            || c.company_name.to_lowercase() == wanted
    });
    match unmapped {
        Some(c) => Named::Unmapped(c),
        None => Named::Nothing(near_names(&wanted, config, customers)),
    }
}

/// Up to five known names close to `wanted` (lower-case): containing it, contained in it, or a few
/// letters away.
fn near_names(wanted: &str, config: &Config, customers: &[Customer]) -> Vec<String> {
    let mut names: Vec<String> = config
        .tenants
        .iter()
        .filter_map(|t| t.name.clone())
        .chain(customers.iter().map(|c| c.company_name.clone()))
        .filter(|n| !n.trim().is_empty())
        .collect();
    names.sort_by_key(|n| n.to_lowercase());
    names.dedup_by_key(|n| n.to_lowercase());
    let mut scored: Vec<(usize, String)> = names
        .into_iter()
        .filter_map(|n| {
            let l = n.to_lowercase();
            let distance = if l.contains(wanted) || (wanted.len() >= 3 && wanted.contains(&l)) {
                0
            } else {
                // The closest word or run of words of the name, so "contso" is near "Contoso Ltd".
                let words: Vec<&str> = l.split_whitespace().collect();
                (0..words.len())
                    .flat_map(|i| (i + 1..=words.len()).map(move |j| (i, j)))
                    .map(|(i, j)| edit_distance(wanted, &words[i..j].join(" ")))
                    .chain([edit_distance(wanted, &l)])
                    .min()
                    .unwrap_or(usize::MAX)
            };
            let allowed = (wanted.chars().count() / 3).max(1);
            (distance <= allowed).then_some((distance, n))
        })
        .collect();
    scored.sort();
    scored.into_iter().take(5).map(|(_, n)| n).collect()
}

/// Levenshtein distance over characters ([`strsim::levenshtein`]), bounded inputs (names and one
/// command-line value).
fn edit_distance(a: &str, b: &str) -> usize {
    let bounded = |s: &str| s.chars().take(200).collect::<String>();
    strsim::levenshtein(&bounded(a), &bounded(b))
}

/// The message for a `--tenant` value that names no customer to sync: an error (exit 1) for an
/// unmapped customer, several customers or nobody; `None` for a mapped or skipped one.
pub fn error_for(filter: &str, named: &Named<'_>) -> Option<String> {
    match named {
        Named::Mapped(_) | Named::Skipped(_) => None,
        Named::Unmapped(c) => Some(format!(
            "--tenant {filter:?} is the Partner Center customer {} ({}), which is not mapped to a Halo \
             client yet; map it with `csp-sync tenants map --customer {} --client HALO_ID` (or \
             `csp-sync tenants map` to choose from suggestions), then run this again",
            c.company_name, c.id, c.id
        )),
        Named::Several(hits) => Some(format!(
            "--tenant {filter:?} matches several customers: {}; give the customer id instead",
            hits.iter()
                .map(|t| format!("{} ({})", t.name.clone().unwrap_or_default(), t.customer_id))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Named::Nothing(near) if near.is_empty() => Some(format!(
            "--tenant {filter:?} matches no customer id, [[tenant]] name or Partner Center company name \
             (`csp-sync tenants list` shows them all)"
        )),
        Named::Nothing(near) => Some(format!(
            "--tenant {filter:?} matches no customer; did you mean {}? (`csp-sync tenants list` shows \
             them all)",
            near.iter()
                .map(|n| format!("{n:?}"))
                .collect::<Vec<_>>()
                .join(" or ")
        )),
    }
}

/// The note for a `--tenant` value naming a skipped customer (exit 0: skipping is a choice).
pub fn skipped_note(filter: &str, t: &TenantEntry) -> String {
    format!(
        "--tenant {filter:?}: {} ({}) is skipped in the config (`skip = true` in its [[tenant]] \
         entry), so nothing was read or planned for it; to sync it, map it with `csp-sync tenants map \
         --customer {} --client HALO_ID`, which removes the skip",
        t.name.as_deref().unwrap_or("this customer"),
        t.customer_id,
        t.customer_id
    )
}

#[cfg(test)]
mod tests {
    use super::edit_distance;

    #[test]
    fn edit_distance_counts_letters() {
        assert_eq!(edit_distance("contso", "contoso"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("fabrikam", "fabrikam"), 0);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
