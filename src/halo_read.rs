//! How a run reads each Halo entity (SPEC 7): a paged list, or, with `[halo] bulk_read = "report"`, one
//! SQL report for the entities that have one ([`crate::api::halo_report`]). The path each entity took is
//! shown by `diff` and `sync` (a line on stderr and `halo_read` in the JSON).
//!
//! A report refused with 403 (no `read:reporting`/`edit:reporting`) falls back to the list, with one
//! warning for the run. A report that fails otherwise (a `load_error`, a 400, a broken reply) fails the
//! read, and so the run, before anything is written. So does a report with no rows for an entity whose
//! read at the last sync held records: an empty answer is taken for a failed read, never for an empty Halo
//! (which would make csp-sync create every contact again).

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{Result, anyhow};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::halo_report;
use crate::config::BulkRead;
use crate::context::Apis;
use crate::plan::HaloEntity;

/// The path one entity's read took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadPath {
    /// Paged list reads (`GET /api/{Entity}?pageinate=true…`).
    List,
    /// One SQL report (`POST /api/Report`).
    Report,
    /// A report was refused (403), so the paged list was read instead.
    ListReportRefused,
    /// Paged lists, and, as the list of an older Halo lacks `azureoid`, one report for it (users).
    ListAndReport,
}

impl ReadPath {
    fn text(self) -> &'static str {
        match self {
            ReadPath::List => "by list",
            ReadPath::Report => "by report",
            ReadPath::ListReportRefused => "by list (report refused)",
            ReadPath::ListAndReport => "by list (azureoid by report)",
        }
    }
}

/// Per entity, the path its read took this run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReadPaths(pub BTreeMap<HaloEntity, ReadPath>);

impl ReadPaths {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// How a person names an entity's records.
pub fn entity_name(entity: HaloEntity) -> &'static str {
    match entity {
        HaloEntity::Client => "clients",
        HaloEntity::Site => "sites",
        HaloEntity::Users => "users",
        HaloEntity::SoftwareLicence => "licences",
        HaloEntity::Asset => "assets",
        HaloEntity::Invoice => "invoices",
    }
}

/// `clients by list, sites by report, users by report`.
impl fmt::Display for ReadPaths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(e, p)| format!("{} {}", entity_name(*e), p.text()))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

/// The warning of a run whose reports Halo refused (one per run, naming the permissions).
pub fn refused_warning(entities: &[HaloEntity]) -> String {
    let names: Vec<&str> = entities.iter().map(|e| entity_name(*e)).collect();
    format!(
        "Halo refused the SQL reports of [halo] bulk_read = \"report\" (403): the Halo API application (or \
         its agent) lacks the read:reporting and edit:reporting permissions; {} were read with paged lists \
         instead, which costs more of [halo] rate_limit. Give the application those permissions \
         (Configuration > Integrations > Halo API > the application > Permissions), or set [halo] \
         bulk_read = \"api\"",
        names.join(", ")
    )
}

/// Reads one entity's raw records (see [`read_map`]).
pub async fn read(
    apis: &Apis,
    entity: HaloEntity,
    key: &str,
    params: &[(&str, &str)],
    bulk: BulkRead,
    last_count: Option<usize>,
) -> Result<(Vec<Value>, ReadPath)> {
    read_map(apis, entity, key, params, bulk, last_count, Ok).await
}

/// Reads one entity's records, each turned by `map` as it arrives: by report when `bulk` asks for it and
/// the entity has one, else (or when the report is refused with 403) by paged list with `params`
/// ([`crate::api::halo::Halo::list_map`], page by page). A report's rows go through `map` as list records
/// do, their columns renamed to the API field names first ([`halo_report::ReportQuery::record`]), so both
/// paths make the same models. `last_count`: the records the entity's read held at the last sync (the
/// empty-report guard).
pub async fn read_map<T>(
    apis: &Apis,
    entity: HaloEntity,
    key: &str,
    params: &[(&str, &str)],
    bulk: BulkRead,
    last_count: Option<usize>,
    mut map: impl FnMut(Value) -> Result<T, crate::api::Error>,
) -> Result<(Vec<T>, ReadPath)> {
    let name = entity_name(entity);
    let report = match bulk {
        BulkRead::Report => halo_report::query_for(entity),
        BulkRead::Api => None,
    };
    let Some(query) = report else {
        let records = apis
            .halo
            .list_map(entity.path(), key, params, &mut map)
            .await
            .map_err(|e| anyhow!("reading Halo {name}: {e}"))?;
        return Ok((records, ReadPath::List));
    };
    match apis.halo.report(&query.sql(None)).await {
        Ok(rows) => {
            if rows.is_empty()
                && let Some(n) = last_count.filter(|n| *n > 0)
            {
                return Err(anyhow!(
                    "reading Halo {name} by report: the report returned no rows, but the last sync read {n} \
                     {name}; taken for a failed read, not an empty Halo, so nothing was written. Rerun; if \
                     Halo really holds no {name} now, run once with [halo] bulk_read = \"api\""
                ));
            }
            let records = rows
                .into_iter()
                .map(|r| map(query.record(r)))
                .collect::<Result<Vec<T>, _>>()
                .map_err(|e| anyhow!("reading Halo {name} by report: {e}"))?;
            Ok((records, ReadPath::Report))
        }
        Err(e) if e.status() == Some(403) => {
            tracing::debug!(entity = name, "report refused (403); reading the list");
            let records = apis
                .halo
                .list_map(entity.path(), key, params, &mut map)
                .await
                .map_err(|e| anyhow!("reading Halo {name}: {e}"))?;
            Ok((records, ReadPath::ListReportRefused))
        }
        Err(e) => Err(anyhow!(
            "reading Halo {name} by report: {e}; nothing was written. Check the report's message, or set \
             [halo] bulk_read = \"api\" to read with paged lists"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_as_a_line_and_as_json() {
        let paths = ReadPaths(BTreeMap::from([
            (HaloEntity::Client, ReadPath::List),
            (HaloEntity::Users, ReadPath::Report),
            (HaloEntity::Site, ReadPath::ListReportRefused),
        ]));
        assert_eq!(
            paths.to_string(),
            "clients by list, sites by list (report refused), users by report"
        );
        assert_eq!(
            serde_json::to_value(&paths).unwrap(),
            serde_json::json!({"Client": "list", "Site": "list_report_refused", "Users": "report"})
        );
        let w = refused_warning(&[HaloEntity::Site, HaloEntity::Users]);
        assert!(
            w.contains("read:reporting and edit:reporting") && w.contains("sites, users"),
            "{w}"
        );
    }
}
