//! Halo SQL report reads (`[halo] bulk_read = "report"`, SPEC 7 "Report reads"): the query of each entity
//! read by report, and the reply's rows.
//!
//! One `POST /api/Report` with `[{"_loadreportonly": true, "sql": …}]` runs a query without saving a report
//! (halo-api.md 2.3). Each column is aliased to the API field it stands for (the column → field table of
//! halo-api.md 2.3, names from a real Halo schema dump), so a row reads like a list record and carries what
//! the list lacks: `azure_tenant_id` above all. Left out, and so list-less in report mode too (SPEC 7):
//! `USERS.Udepartment` (a department id, not its text), `covered_by_contract` (no column) and custom
//! fields (no known table). Clients keep their list read: the reference names no `AREA` column for
//! `main_site_id` (where new contacts and assets go), which only the list returns. Assets keep theirs for
//! their type's field values, invoices theirs (their tables are not known).
//!
//! The reply (halo-api.md 2.3; Halo's OpenAPI `AnalyzerProfile.report` is a `ReportContent` with `rows`
//! and `load_error`): one object or a one-element array, the rows under `report.rows` or `rows`. Column
//! names are matched case-insensitively (SQL Server's are). A `load_error` is a failed read.

use serde_json::{Map, Value};

use crate::plan::HaloEntity;

/// The report that reads one entity: its `FROM` clause and `(column, API field)` pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportQuery {
    pub entity: HaloEntity,
    from: &'static str,
    columns: &'static [(&'static str, &'static str)],
}

/// Users: their client is their site's (`SITE.Sarea`, joined on `Usite = Ssitenum`, halo-api.md 2.3);
/// LEFT JOIN so a user whose site is gone is still read.
const USERS: ReportQuery = ReportQuery {
    entity: HaloEntity::Users,
    from: "USERS LEFT JOIN SITE ON USERS.Usite = SITE.Ssitenum",
    columns: &[
        ("USERS.Uid", "id"),
        ("USERS.Usite", "site_id"),
        ("SITE.Sarea", "client_id"),
        ("USERS.uusername", "name"),
        ("USERS.uFirstName", "firstname"),
        ("USERS.uLastName", "surname"),
        ("USERS.uemail", "emailaddress"),
        ("USERS.UTitle", "title"),
        ("USERS.uextn", "phonenumber"),
        ("USERS.umobile", "mobilenumber"),
        ("USERS.uinactive", "inactive"),
        ("USERS.UAzureOID", "azureoid"),
        ("USERS.UAzureTenantId", "azure_tenant_id"),
    ],
};

const SITES: ReportQuery = ReportQuery {
    entity: HaloEntity::Site,
    from: "SITE",
    columns: &[
        ("Ssitenum", "id"),
        ("sdesc", "name"),
        ("Sarea", "client_id"),
        ("SIsInactive", "inactive"),
    ],
};

const LICENCES: ReportQuery = ReportQuery {
    entity: HaloEntity::SoftwareLicence,
    from: "Licence",
    columns: &[
        ("LID", "id"),
        ("LDesc", "name"),
        ("LCount", "count"),
        ("lconsumedcount", "licences_in_use"),
        ("Larea", "client_id"),
        ("LTenantId", "tenant_id"),
        ("lthirdpartyproductid", "third_party_product"),
        ("lproductsku", "product_sku"),
        ("lstatus", "status"),
        ("LBillingCycle", "billing_cycle"),
        ("ltermduration", "term_duration"),
        ("lautorenew", "autorenew"),
        ("LPurchaseDate", "start_date"),
        ("LDueDate", "end_date"),
        ("LManufacturer", "manufacturer"),
    ],
};

/// The report that reads `entity`, or `None` for an entity that keeps its list read.
pub fn query_for(entity: HaloEntity) -> Option<&'static ReportQuery> {
    [&USERS, &SITES, &LICENCES]
        .into_iter()
        .find(|q| q.entity == entity)
}

impl ReportQuery {
    /// The SQL, optionally limited to the first `top` rows (`doctor` checks each query with one row).
    pub fn sql(&self, top: Option<usize>) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|(c, f)| format!("{c} AS {f}"))
            .collect();
        let top = top.map(|n| format!("TOP {n} ")).unwrap_or_default();
        format!("SELECT {top}{} FROM {}", columns.join(", "), self.from)
    }

    /// The row with its keys renamed to the query's API field names, matched case-insensitively; other
    /// keys are kept as they came.
    pub fn record(&self, row: Value) -> Value {
        let Value::Object(map) = row else { return row };
        let mut out = Map::with_capacity(map.len());
        for (k, v) in map {
            let key = self
                .columns
                .iter()
                .find(|(_, f)| f.eq_ignore_ascii_case(&k))
                .map_or(k, |(_, f)| (*f).to_string());
            out.insert(key, v);
        }
        Value::Object(out)
    }
}

/// The rows of a report reply, or the reason it holds none: a `load_error` (at the top or under
/// `report`), or no rows array at all.
pub fn rows_of(body: Value) -> Result<Vec<Value>, String> {
    let report = match body {
        Value::Array(items) if items.len() == 1 => items.into_iter().next().unwrap_or(Value::Null),
        Value::Array(items) => {
            return Err(format!(
                "the reply is an array of {} reports, not one",
                items.len()
            ));
        }
        other => other,
    };
    let Value::Object(mut top) = report else {
        return Err("the reply is not a JSON object".into());
    };
    let mut content = match top.remove("report") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let error = [content.get("load_error"), top.get("load_error")]
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::trim)
        .find(|e| !e.is_empty())
        .map(str::to_string);
    if let Some(e) = error {
        return Err(format!("Halo could not run the report: {e}"));
    }
    match content.remove("rows").or_else(|| top.remove("rows")) {
        Some(Value::Array(rows)) => Ok(rows),
        _ => Err("the reply has no `rows` (neither `report.rows` nor `rows`)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_report_entity_has_one_query_aliasing_columns_to_fields() {
        assert!(query_for(HaloEntity::Client).is_none());
        assert!(query_for(HaloEntity::Asset).is_none());
        assert!(query_for(HaloEntity::Invoice).is_none());
        let users = query_for(HaloEntity::Users).unwrap().sql(None);
        assert!(users.starts_with(
            "SELECT USERS.Uid AS id, USERS.Usite AS site_id, SITE.Sarea AS client_id"
        ));
        assert!(
            users.contains("USERS.UAzureTenantId AS azure_tenant_id"),
            "{users}"
        );
        assert!(users.ends_with("FROM USERS LEFT JOIN SITE ON USERS.Usite = SITE.Ssitenum"));
        // SPEC 7: department (an id in the table) and covered_by_contract (no column) are not read.
        assert!(!users.to_lowercase().contains("department"), "{users}");
        assert!(!users.contains("covered_by_contract"), "{users}");
        assert_eq!(
            query_for(HaloEntity::Site).unwrap().sql(Some(1)),
            "SELECT TOP 1 Ssitenum AS id, sdesc AS name, Sarea AS client_id, SIsInactive AS inactive FROM SITE"
        );
    }

    #[test]
    fn reply_shapes_of_the_reference() {
        // halo-api.md 2.3: `[{ "rows": [...], "available_columns": [...] }]` [MCP].
        let mcp = json!([{"rows": [{"id": 1}], "available_columns": [{"name": "id"}]}]);
        assert_eq!(rows_of(mcp).unwrap(), vec![json!({"id": 1})]);
        // `.report.rows` [LW]; the OpenAPI `AnalyzerProfile.report` (`ReportContent`).
        let lw =
            json!({"id": 0, "report": {"loaded": true, "load_error": null, "rows": [{"id": 2}]}});
        assert_eq!(rows_of(lw).unwrap(), vec![json!({"id": 2})]);
        let one_of_array = json!([{"report": {"rows": []}}]);
        assert_eq!(rows_of(one_of_array).unwrap(), Vec::<Value>::new());
        let failed = json!({"report": {"loaded": false, "load_error": "Invalid column name 'x'.", "rows": []}});
        assert_eq!(
            rows_of(failed).unwrap_err(),
            "Halo could not run the report: Invalid column name 'x'."
        );
        let failed_top = json!([{"load_error": "Invalid object name 'USER'.", "rows": null}]);
        assert!(rows_of(failed_top).unwrap_err().contains("USER"));
        assert!(rows_of(json!({"report": {"loaded": true}})).is_err());
        assert!(rows_of(json!([{}, {}])).is_err());
        assert!(rows_of(json!("x")).is_err());
    }

    #[test]
    fn column_names_are_matched_case_insensitively() {
        let q = query_for(HaloEntity::Users).unwrap();
        let r =
            q.record(json!({"ID": 5, "Azure_Tenant_Id": "t", "EmailAddress": "a@b.c", "other": 1}));
        assert_eq!(
            r,
            json!({"id": 5, "azure_tenant_id": "t", "emailaddress": "a@b.c", "other": 1})
        );
    }
}
