//! What Halo's list endpoints return (halo-api.md 2.1, 3.3-3.6; SPEC 7 "What a read returns"): each list
//! answers with the fields of its `*_List` schema of Halo's OpenAPI document, not the full record, which
//! only `GET /api/{Entity}/{id}` (and the reply to a POST) carries.
//!
//! - `GET /api/Users`: `Users_List` plus `azureoid` (on the list model of 2025 and later, halo-api.md 3.3;
//!   `Settings::halo_list_azureoid = false` emulates an older Halo without it). No `azure_tenant_id`, no
//!   `department`. Custom fields only with `include_custom_fields=<ids>`, and only those.
//! - `GET /api/Asset`: `Device_List` (no `azure_userprincipalname`, no `users`); `fields` only with
//!   `includeassetfields=true`.
//! - `GET /api/SoftwareLicence`: `Licence_List`. `GET /api/Site`: `Site_List` (no `emaildomain`).
//! - `GET /api/Client`: the document has no `Area_List`, so the list is taken to carry the `Area` record
//!   (its tenant mappings only with `includeazuretenants=true`, in `halo.rs`).
//! - `GET /api/Invoice` and `/api/RecurringInvoice`: no list schema either; `lines` only with
//!   `includelines=true` (the swagger parameter).

use serde_json::{Map, Value};

use crate::halo_list_fields::{DEVICE_LIST, LICENCE_LIST, SITE_LIST, USERS_LIST};
use crate::scenario::Settings;
use crate::server::Req;

/// The list schema's fields of `entity`, or `None` when its list returns the whole record.
fn list_fields(entity: &str) -> Option<&'static [&'static str]> {
    match entity {
        "Users" => Some(USERS_LIST),
        "Asset" => Some(DEVICE_LIST),
        "SoftwareLicence" => Some(LICENCE_LIST),
        "Site" => Some(SITE_LIST),
        _ => None,
    }
}

fn flag(req: &Req, name: &str) -> bool {
    req.param(name)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// A stored record as `GET /api/{entity}` returns it.
pub(crate) fn project(settings: &Settings, entity: &str, rec: Value, req: &Req) -> Value {
    let Value::Object(mut full) = rec else {
        return rec;
    };
    let mut out = match list_fields(entity) {
        Some(fields) => {
            let mut m = Map::new();
            for f in fields {
                if let Some(v) = full.remove(*f) {
                    m.insert((*f).to_string(), v);
                }
            }
            if entity == "Users"
                && settings.halo_list_azureoid
                && let Some(v) = full.remove("azureoid")
            {
                m.insert("azureoid".into(), v);
            }
            m
        }
        None => full,
    };
    match entity {
        "Users" => {
            let wanted: Vec<i64> = req
                .param("include_custom_fields")
                .unwrap_or_default()
                .split(',')
                .filter_map(|s| s.trim().parse().ok())
                .collect();
            if wanted.is_empty() {
                out.remove("customfields");
            } else if let Some(Value::Array(cfs)) = out.get_mut("customfields") {
                cfs.retain(|cf| {
                    cf.get("id")
                        .and_then(Value::as_i64)
                        .is_some_and(|id| wanted.contains(&id))
                });
            }
        }
        "Asset" if !flag(req, "includeassetfields") => {
            out.remove("fields");
        }
        "Invoice" | "RecurringInvoice" if !flag(req, "includelines") => {
            out.remove("lines");
        }
        _ => {}
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;
    use std::path::PathBuf;

    const TABLES: [(&str, &str); 4] = [
        ("SITE_LIST", "Site_List"),
        ("USERS_LIST", "Users_List"),
        ("DEVICE_LIST", "Device_List"),
        ("LICENCE_LIST", "Licence_List"),
    ];

    /// `halo_list_fields.rs` as generated from Halo's OpenAPI document.
    fn render(doc: &Value) -> String {
        let mut out = String::from(
            "//! The fields Halo's list endpoints return, one table per `*_List` schema of Halo's OpenAPI document\n\
             //! (`shared/reference/halo-openapi.json`, \"Halo API\" v2). Generated: do not edit by hand. The test\n\
             //! `halo_lists::tests::field_table_matches_the_openapi_document` regenerates it from the document when the\n\
             //! document is present and fails on any difference; `CSP_SYNC_REGENERATE_FIELDS=1` makes it rewrite this file.\n",
        );
        for (konst, schema) in TABLES {
            let props = doc["components"]["schemas"][schema]["properties"]
                .as_object()
                .unwrap_or_else(|| panic!("the OpenAPI document has no schema {schema}"));
            let _ = write!(
                out,
                "\n/// `{schema}` ({} properties, in document order).\npub const {konst}: &[&str] = &[\n",
                props.len()
            );
            for p in props.keys() {
                let _ = writeln!(out, "    \"{p}\",");
            }
            out.push_str("];\n");
        }
        out
    }

    /// The OpenAPI document: `HALO_OPENAPI`, else `shared/reference/halo-openapi.json` next to a parent of
    /// the crate (the project's layout; a user's fresh clone has none, and the test then only checks the
    /// table's shape).
    fn document() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("HALO_OPENAPI") {
            return Some(PathBuf::from(p));
        }
        let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        here.ancestors()
            .map(|a| a.join("shared/reference/halo-openapi.json"))
            .find(|p| p.is_file())
    }

    #[test]
    fn field_table_matches_the_openapi_document() {
        let table = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/halo_list_fields.rs");
        let checked_in = std::fs::read_to_string(&table).unwrap();
        for (konst, _) in TABLES {
            assert!(
                checked_in.contains(&format!("pub const {konst}")),
                "{konst}"
            );
        }
        assert!(USERS_LIST.contains(&"emailaddress") && !USERS_LIST.contains(&"department"));
        let Some(path) = document() else {
            eprintln!(
                "Halo's OpenAPI document is not here; the checked-in field table is used as it is"
            );
            return;
        };
        let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let fresh = render(&doc);
        if std::env::var_os("CSP_SYNC_REGENERATE_FIELDS").is_some() {
            std::fs::write(&table, &fresh).unwrap();
            return;
        }
        assert!(
            fresh == checked_in,
            "emulator/src/halo_list_fields.rs differs from what {} gives; rerun this test with \
             CSP_SYNC_REGENERATE_FIELDS=1 to rewrite it, and review the difference",
            path.display()
        );
    }

    fn req(query: &str) -> Req {
        Req::for_test("GET", "/api/Users", query)
    }

    #[test]
    fn lists_carry_only_their_schema_fields() {
        let s = Settings::default();
        let user = serde_json::json!({"id": 1, "name": "A", "department": "Sales", "azure_tenant_id": "t",
            "azureoid": "o", "customfields": [{"id": 5, "value": "x"}, {"id": 6, "value": "y"}]});
        let u = project(&s, "Users", user.clone(), &req(""));
        assert_eq!(
            u,
            serde_json::json!({"id": 1, "name": "A", "azureoid": "o"})
        );
        let u = project(&s, "Users", user.clone(), &req("include_custom_fields=6"));
        assert_eq!(
            u["customfields"],
            serde_json::json!([{"id": 6, "value": "y"}])
        );
        let old = Settings {
            halo_list_azureoid: false,
            ..Settings::default()
        };
        assert!(
            project(&old, "Users", user, &req(""))
                .get("azureoid")
                .is_none()
        );
        let asset = serde_json::json!({"id": 2, "intune_id": "i", "fields": [], "azure_userprincipalname": "u"});
        let a = project(&s, "Asset", asset.clone(), &req(""));
        assert_eq!(a, serde_json::json!({"id": 2, "intune_id": "i"}));
        assert!(
            project(&s, "Asset", asset, &req("includeassetfields=true"))
                .get("fields")
                .is_some()
        );
        let inv = serde_json::json!({"id": 3, "lines": []});
        assert!(
            project(&s, "Invoice", inv.clone(), &req(""))
                .get("lines")
                .is_none()
        );
        assert!(
            project(&s, "Invoice", inv, &req("includelines=true"))
                .get("lines")
                .is_some()
        );
    }
}
