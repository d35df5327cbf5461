//! An older Halo whose user list has no `azureoid` (the 2024 `Users_List` of Halo's OpenAPI document;
//! halo-api.md 3.3, SPEC 7): without it csp-sync cannot tell linked contacts apart. Where the agent may run
//! reports, the users' `azureoid` and `azure_tenant_id` are read by one SQL report (`USERS.UAzureOID`,
//! halo-api.md 2.3) into the list's models ([`complete`]); where not, each user is read once by id
//! (`GET /api/Users/{id}`, the full record) and its `azureoid` kept by Halo id in the state
//! ([`HaloMemory::azureoid`]), and later runs read by id only the users that are new since.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, anyhow};
use futures_util::StreamExt;
use futures_util::stream;
use serde_json::Value;

use crate::api::halo::{HaloUserRecord, parse_records};
use crate::context::Apis;
use crate::halo_memory::HaloMemory;
use crate::model::HaloUser;
use crate::plan::HaloEntity;

/// Requests in flight while reading users one by one (the rate limiter paces them anyway).
const CONCURRENCY: usize = 4;

/// Completes the users of a list that lacks `azureoid`: from the users report (`reports`: the agent may
/// run it, as far as this run knows) when it holds every listed user, else by id ([`fill_azureoid_models`]).
/// The report's rows become models through the list's conversion (its columns renamed to the API field
/// names), and give each user its `azureoid` and `azure_tenant_id`, which then count as read; the other
/// fields stay the list's (the report has no department, no custom fields). Returns the warning to show and
/// whether the report was read.
pub async fn complete(
    apis: &Apis,
    users: &mut [HaloUser],
    memory: &mut HaloMemory,
    reports: bool,
) -> Result<(Option<String>, bool)> {
    let query = crate::api::halo_report::query_for(HaloEntity::Users).filter(|_| reports);
    let Some(query) = query else {
        return Ok((fill_azureoid_models(apis, users, memory).await?, false));
    };
    let Some(by_id) = report_ids(apis, query, users).await else {
        return Ok((fill_azureoid_models(apis, users, memory).await?, false));
    };
    memory.azureoid.clear();
    for u in users.iter_mut() {
        let Some((oid, tenant)) = by_id.get(&u.id) else {
            continue;
        };
        u.azureoid.clone_from(oid);
        u.azure_tenant_id.clone_from(tenant);
        u.unread
            .retain(|f| f != "azureoid" && f != "azure_tenant_id");
        // Known for a later run whose report is refused: it reads by id only users new since.
        memory
            .azureoid
            .insert(u.id, oid.clone().unwrap_or_default());
    }
    Ok((
        Some(
            "Halo's user list has no `azureoid` field (an older Halo version): their azureoid was read by \
             one SQL report. Upgrading Halo saves that request; [halo] bulk_read = \"report\" reads the \
             users by report alone"
                .to_string(),
        ),
        true,
    ))
}

/// The users report's `azureoid` and `azure_tenant_id` by user id; none (the reason logged) when it fails,
/// does not parse, or lacks a user the list showed (then it is not trusted).
async fn report_ids(
    apis: &Apis,
    query: &crate::api::halo_report::ReportQuery,
    users: &[HaloUser],
) -> Option<BTreeMap<i64, (Option<String>, Option<String>)>> {
    let rows = match apis.halo.report(&query.sql(None)).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::debug!("the users report failed ({e}); reading users by id");
            return None;
        }
    };
    let rows: Vec<Value> = rows.into_iter().map(|r| query.record(r)).collect();
    let records = match parse_records::<HaloUserRecord>("Users", rows) {
        Ok(records) => records,
        Err(e) => {
            tracing::debug!("the users report could not be read ({e}); reading users by id");
            return None;
        }
    };
    let by_id: BTreeMap<_, _> = records
        .iter()
        .map(|r| {
            let u = r.to_model();
            (u.id, (u.azureoid, u.azure_tenant_id))
        })
        .collect();
    if let Some(u) = users.iter().find(|u| !by_id.contains_key(&u.id)) {
        tracing::debug!(
            user = u.id,
            "the users report lacks a listed user; reading users by id"
        );
        return None;
    }
    Some(by_id)
}

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
