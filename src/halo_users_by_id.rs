//! An older Halo whose user list has no `azureoid` (the 2024 `Users_List` of Halo's OpenAPI document;
//! halo-api.md 3.3, SPEC 7): without it csp-sync cannot tell linked contacts apart. The users are read
//! again by one SQL report (`USERS.UAzureOID`, halo-api.md 2.3) where the agent may run reports; where not,
//! each user is read once by id (`GET /api/Users/{id}`, the full record) and its `azureoid` kept by Halo id
//! in the state ([`HaloMemory::azureoid`]), and later runs read by id only the users that are new since.

use std::collections::BTreeSet;

use anyhow::{Result, anyhow};
use futures_util::StreamExt;
use futures_util::stream;
use serde_json::Value;

use crate::api::value_to_i64;
use crate::context::Apis;
use crate::halo_memory::HaloMemory;

/// Requests in flight while reading users one by one (the rate limiter paces them anyway).
const CONCURRENCY: usize = 4;

/// Whether a user list lacks `azureoid` altogether (an older Halo).
pub fn lacks_azureoid(users: &[Value]) -> bool {
    !users.is_empty() && !users.iter().any(|u| u.get("azureoid").is_some())
}

/// Completes list records that lack `azureoid`: replaced by the users report's rows when Halo runs it
/// (`true`), else filled by id ([`fill_azureoid`]). Returns the warning to show and whether the report
/// was read.
pub async fn complete(
    apis: &Apis,
    users: &mut Vec<Value>,
    memory: &mut HaloMemory,
) -> Result<(Option<String>, bool)> {
    let Some(query) = crate::api::halo_report::query_for(crate::plan::HaloEntity::Users) else {
        return Ok((fill_azureoid(apis, users, memory).await?, false));
    };
    match apis.halo.report(&query.sql(None)).await {
        // A report that does not hold the users the list showed is not trusted: read by id instead.
        Ok(rows) if rows.len() >= users.len() => {
            *users = rows.into_iter().map(|r| query.record(r)).collect();
            Ok((
                Some(
                    "Halo's user list has no `azureoid` field (an older Halo version): the users were read \
                     again by one SQL report, which has it. Upgrading Halo, or [halo] bulk_read = \"report\", \
                     saves the list read"
                        .to_string(),
                ),
                true,
            ))
        }
        Ok(_) => Ok((fill_azureoid(apis, users, memory).await?, false)),
        Err(e) => {
            tracing::debug!("the users report failed ({e}); reading users by id");
            Ok((fill_azureoid(apis, users, memory).await?, false))
        }
    }
}

/// Fills `azureoid` into list records that lack it, from the memory or, for users it does not know, by
/// reading them by id; forgets users no longer listed. Returns a warning about the cost when it read any.
pub async fn fill_azureoid(
    apis: &Apis,
    users: &mut [Value],
    memory: &mut HaloMemory,
) -> Result<Option<String>> {
    let listed: BTreeSet<i64> = users
        .iter()
        .filter_map(|u| u.get("id").and_then(value_to_i64))
        .collect();
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
        if let Some(id) = u.get("id").and_then(value_to_i64)
            && let Some(oid) = memory.azureoid.get(&id)
            && let Some(o) = u.as_object_mut()
        {
            o.insert("azureoid".into(), Value::from(oid.clone()));
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
