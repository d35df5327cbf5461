//! An older Halo whose user list has no `azureoid` (the 2024 `Users_List` of Halo's OpenAPI document;
//! halo-api.md 3.3, SPEC 7): without it csp-sync cannot tell linked contacts apart, so each user is read
//! once by id (`GET /api/Users/{id}`, the full record) and its `azureoid` kept by Halo id in the state
//! ([`HaloMemory::azureoid`]). Later runs read by id only the users that are new since. Reading by report
//! (`[halo] bulk_read = "report"`) is the cheap path where reports are allowed.

use std::collections::BTreeSet;

use anyhow::{Result, anyhow};
use futures_util::StreamExt;
use futures_util::stream;
use serde_json::Value;

use crate::context::Apis;
use crate::halo_memory::HaloMemory;
use crate::model::HaloUser;

/// Requests in flight while reading users one by one (the rate limiter paces them anyway).
const CONCURRENCY: usize = 4;

/// Fills `azureoid` into the users of a list that lacks it, from the memory or, for users it does not
/// know, by reading them by id; forgets users no longer listed. A filled user's `azureoid` counts as read.
/// Returns a warning about the cost when it read any.
pub async fn fill_azureoid_models(
    apis: &Apis,
    users: &mut [HaloUser],
    memory: &mut HaloMemory,
) -> Result<Option<String>> {
    let listed: BTreeSet<i64> = users.iter().map(|u| u.id).collect();
    memory.azureoid.retain(|id, _| listed.contains(id));
    let missing: Vec<i64> = listed
        .iter()
        .copied()
        .filter(|id| !memory.azureoid.contains_key(id))
        .collect();
    let read: Vec<(i64, Result<Value, crate::api::Error>)> = stream::iter(missing.iter().copied())
        .map(|id| async move { (id, apis.halo.get("Users", id).await) })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    for (id, rec) in read {
        let rec = rec.map_err(|e| {
            anyhow!(
                "reading Halo user {id} by id (this Halo's user list has no azureoid): {e}; rerun the \
                 sync (nothing was written)"
            )
        })?;
        let oid = rec
            .get("azureoid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim()
            .to_string();
        memory.azureoid.insert(id, oid);
    }
    for u in users.iter_mut() {
        if let Some(oid) = memory.azureoid.get(&u.id) {
            // As the list's reader takes it: lower case, none when blank or the all-zero GUID.
            let oid = crate::api::lower(oid);
            u.azureoid =
                (!oid.is_empty() && oid != "00000000-0000-0000-0000-000000000000").then_some(oid);
            u.unread.retain(|f| f != "azureoid");
        }
    }
    Ok((!missing.is_empty()).then(|| {
        format!(
            "Halo's user list has no `azureoid` field (an older Halo version): read {} user(s) one by one \
             (one Halo request each, counted against [halo] rate_limit); their azureoid is kept in the state \
             directory, so later runs read only new users. Upgrading Halo avoids this cost",
            missing.len()
        )
    }))
}
