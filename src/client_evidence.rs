//! E-mail domains of Halo clients for tenant suggestions (SPEC 7, tenants). Halo clients have no e-mail
//! address field (`Area` in Halo's OpenAPI document has `website` and `domain`, halo-api.md 3.1), so the
//! other domains a client is known by come from its sites' `emaildomain` (`Site`, halo-api.md 3.2) and from
//! the most common domain of its contacts' e-mail addresses.
//!
//! `Site_List` has no `emaildomain`: where the site list lacks it, the sites of the clients still open for
//! mapping are read by id, at most [`MAX_SITE_READS`] of them.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, anyhow};
use futures_util::StreamExt;
use futures_util::stream;
use serde_json::Value;

use crate::api::value_to_i64;
use crate::context::Apis;
use crate::model::HaloClient;
use crate::plan::tenants::{domain_of, is_generic_domain};

/// Sites read one by one at most per suggestion run.
pub const MAX_SITE_READS: usize = 200;

fn text<'v>(v: &'v Value, field: &str) -> Option<&'v str> {
    v.get(field)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The most common non-generic e-mail domain of each client's contacts (ties: the first alphabetically).
pub fn contact_domains(users: &[Value]) -> BTreeMap<i64, String> {
    let mut counts: BTreeMap<i64, BTreeMap<String, usize>> = BTreeMap::new();
    for u in users {
        let Some(client) = u.get("client_id").and_then(value_to_i64) else {
            continue;
        };
        if let Some(d) = text(u, "emailaddress")
            .and_then(domain_of)
            .filter(|d| !is_generic_domain(d))
        {
            *counts.entry(client).or_default().entry(d).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .filter_map(|(client, by_domain)| {
            let best = by_domain.values().copied().max()?;
            let d = by_domain.into_iter().find(|(_, n)| *n == best)?.0;
            Some((client, d))
        })
        .collect()
}

/// Fills `email_domains` of the clients not in `mapped` (sites' `emaildomain`, contacts' commonest
/// domain). Returns notes for the user (sites left unread).
pub async fn add_email_domains(
    apis: &Apis,
    clients: &mut [HaloClient],
    mapped: &BTreeSet<i64>,
) -> Result<Vec<String>> {
    let open: BTreeSet<i64> = clients
        .iter()
        .filter(|c| !c.inactive && !mapped.contains(&c.id))
        .map(|c| c.id)
        .collect();
    if open.is_empty() {
        return Ok(Vec::new());
    }
    let inactive = [("includeinactive", "true")];
    let (sites, users) = tokio::join!(
        apis.halo.list("Site", "sites", &inactive),
        apis.halo.list("Users", "users", &inactive),
    );
    let sites = sites.map_err(|e| anyhow!("reading Halo sites: {e}"))?;
    let users = users.map_err(|e| anyhow!("reading Halo users: {e}"))?;
    let mut found: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
    let mut by_id: Vec<(i64, i64)> = Vec::new();
    for s in &sites {
        let (Some(id), Some(client)) = (
            s.get("id").and_then(value_to_i64),
            s.get("client_id").and_then(value_to_i64),
        ) else {
            continue;
        };
        if !open.contains(&client) {
            continue;
        }
        if s.get("emaildomain").is_some() {
            found
                .entry(client)
                .or_default()
                .extend(text(s, "emaildomain").and_then(domain_of));
        } else {
            by_id.push((id, client));
        }
    }
    let mut notes = Vec::new();
    if by_id.len() > MAX_SITE_READS {
        notes.push(format!(
            "{} of unmapped Halo clients not read for their e-mail domain (Halo's site list \
             does not return it; at most {MAX_SITE_READS} are read one by one)",
            crate::render::count(by_id.len() - MAX_SITE_READS, "site", "sites")
        ));
        by_id.truncate(MAX_SITE_READS);
    }
    let read: Vec<(i64, Result<Value, crate::api::Error>)> = stream::iter(by_id)
        .map(|(id, client)| async move { (client, apis.halo.get("Site", id).await) })
        .buffer_unordered(4)
        .collect()
        .await;
    for (client, site) in read {
        match site {
            Ok(s) => found
                .entry(client)
                .or_default()
                .extend(text(&s, "emaildomain").and_then(domain_of)),
            Err(e) => tracing::info!(client, "a site was not readable: {e}"),
        }
    }
    for (client, d) in contact_domains(&users) {
        if open.contains(&client) {
            found.entry(client).or_default().insert(d);
        }
    }
    for c in clients.iter_mut() {
        if let Some(ds) = found.remove(&c.id) {
            c.email_domains = ds.into_iter().collect();
        }
    }
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_commonest_business_domain_of_each_clients_contacts() {
        let users = [
            json!({"client_id": 1, "emailaddress": "a@acme.com"}),
            json!({"client_id": 1, "emailaddress": "b@ACME.com"}),
            json!({"client_id": 1, "emailaddress": "c@other.com"}),
            json!({"client_id": 1, "emailaddress": "d@gmail.com"}),
            json!({"client_id": 1, "emailaddress": "e@gmail.com"}),
            json!({"client_id": 1, "emailaddress": "f@gmail.com"}),
            json!({"client_id": 2.0, "emailaddress": "x@gmail.com"}),
            json!({"emailaddress": "nobody@acme.com"}),
        ];
        let d = contact_domains(&users);
        assert_eq!(d.get(&1).map(String::as_str), Some("acme.com"));
        assert!(!d.contains_key(&2));
    }
}
