//! HaloPSA (reference halo-api.md sections 1-4): `/auth/token`, `/api/authinfo`, list/get/upsert/delete of
//! Client, Site, Users, SoftwareLicence, Asset, AssetType, Invoice and RecurringInvoice; SQL reports
//! (`POST /api/Report`) in `halo_report`.

use serde_json::{Map, Value, json};

use crate::FaultKind;
use crate::halo_lists;
use crate::identity::check_token;
use crate::scenario::{HALO_ENTITIES, State, canonical_entity};
use crate::server::{Audience, Req, Resp, TokenInfo, Urls};
use crate::util;

pub(crate) const RATE_LIMIT_TEXT: &str =
    "Rate Limit Reached - 300 Requests per rolling 5 minute window";

pub(crate) fn fault_response(kind: &FaultKind) -> Resp {
    match kind {
        FaultKind::TooManyRequests { retry_after } => {
            let r = Resp::text(429, RATE_LIMIT_TEXT);
            match retry_after {
                Some(v) => r.with_header("retry-after", v),
                None => r,
            }
        }
        FaultKind::Status(code) => exception(
            *code,
            "An unexpected error occurred (injected by the emulator).",
        ),
        _ => exception(500, "Internal error"),
    }
}

/// The serialised .NET exception shape (`{ClassName, Message}`) Halo uses for some errors.
fn exception(status: u16, message: &str) -> Resp {
    Resp::json(
        status,
        &json!({"ClassName": "System.Exception", "Message": message}),
    )
}

pub(crate) fn handle(st: &mut State, urls: &Urls, req: &Req) -> Resp {
    let path = req.path.trim_end_matches('/');
    if path.eq_ignore_ascii_case("/auth/token") {
        return token(st, req);
    }
    if path.eq_ignore_ascii_case("/api/authinfo") {
        return Resp::json(
            200,
            &json!({"auth_url": format!("{}/auth", urls.halo), "tenant_id": st.halo_app.tenant.clone().unwrap_or_default()}),
        );
    }
    let Some(rest) = path.strip_prefix("/api/") else {
        return Resp::text(
            404,
            &format!(
                "{} not found: the Halo API is under /api/ and the token at /auth/token",
                req.path
            ),
        );
    };
    if let Some(r) = rate_limited(st) {
        return r;
    }
    let _token: TokenInfo = match check_token(st, req, Audience::Halo) {
        Ok(t) => t,
        Err(_) => {
            return Resp::json(401, &json!({"error": "invalid_token", "error_description": "The access token is missing, invalid or expired."}))
                .with_header("WWW-Authenticate", "Bearer error=\"invalid_token\"");
        }
    };
    let segs: Vec<&str> = rest.split('/').collect();
    if segs.len() == 1 && segs[0].eq_ignore_ascii_case("Report") && req.method == "POST" {
        return crate::halo_report::post(st, req);
    }
    let Some(entity) = canonical_entity(segs[0]) else {
        return Resp::text(
            404,
            &format!("The emulator does not serve /api/{}", segs[0]),
        );
    };
    match (req.method.as_str(), &segs[1..]) {
        ("GET", []) => list(st, entity, req),
        ("POST", []) => upsert(st, entity, req),
        ("GET", [id]) => match id.parse::<i64>().ok().and_then(|id| find(st, entity, id)) {
            Some(r) => Resp::json(200, &r),
            None => Resp::text(404, &format!("{entity} {id} not found")),
        },
        ("DELETE", [id]) => {
            let Ok(id) = id.parse::<i64>() else {
                return Resp::text(404, &format!("{entity} {id} not found"));
            };
            let recs = st.halo_records_mut(entity);
            match position(recs, id) {
                Some(pos) => Resp::json(200, &recs.remove(pos)),
                None => Resp::text(404, &format!("{entity} {id} not found")),
            }
        }
        _ => Resp::text(
            405,
            &format!("{} {} is not supported", req.method, req.path),
        ),
    }
}

fn token(st: &mut State, req: &Req) -> Resp {
    let form = req.form();
    let bad = |msg: &str| {
        Resp::json(
            401,
            &json!({"error": "invalid_client", "error_description": msg}),
        )
    };
    if req.method != "POST" {
        return Resp::text(405, "POST the token request");
    }
    if util::param(&form, "grant_type") != Some("client_credentials") {
        return Resp::json(
            400,
            &json!({"error": "unsupported_grant_type", "error_description": "The specified grant_type is not supported."}),
        );
    }
    if let Some(t) = &st.halo_app.tenant
        && req.param("tenant") != Some(t.as_str())
    {
        return bad(&format!(
            "The tenant is missing or unknown: hosted Halo needs ?tenant=<tenant> on the token URL (expected tenant '{t}')."
        ));
    }
    if util::param(&form, "client_id") != Some(st.halo_app.client_id.as_str())
        || util::param(&form, "client_secret") != Some(st.halo_app.client_secret.as_str())
    {
        return bad("The specified client credentials are invalid.");
    }
    let scope = util::param(&form, "scope").unwrap_or("all").to_string();
    let access = format!("eyJ{}", util::opaque(60));
    let lifetime = st.settings.token_lifetime_secs;
    st.rt.tokens.insert(
        access.clone(),
        TokenInfo {
            tenant: st.halo_app.tenant.clone().unwrap_or_default(),
            client_id: st.halo_app.client_id.clone(),
            audience: Audience::Halo,
            delegated: false,
            expires_at: util::now_secs()
                + st.settings.halo_token_dies_after_secs.unwrap_or(lifetime) as i64,
        },
    );
    Resp::json(
        200,
        &json!({"scope": scope, "token_type": "Bearer", "access_token": access, "expires_in": lifetime}),
    )
}

fn rate_limited(st: &mut State) -> Option<Resp> {
    let (max, per) = st.settings.halo_rate_limit?;
    let now = std::time::Instant::now();
    let window = std::time::Duration::from_secs(per);
    while st
        .rt
        .halo_window
        .front()
        .is_some_and(|t| now.duration_since(*t) >= window)
    {
        st.rt.halo_window.pop_front();
    }
    if st.rt.halo_window.len() >= max {
        // Real Halo sends no Retry-After here.
        return Some(Resp::text(
            429,
            &format!(
                "Rate Limit Reached - {max} Requests per rolling {} minute window",
                (per / 60).max(1)
            ),
        ));
    }
    st.rt.halo_window.push_back(now);
    None
}

fn find(st: &State, entity: &str, id: i64) -> Option<Value> {
    let recs = st.halo.get(entity)?;
    position(recs, id).map(|p| recs[p].clone())
}

/// Where the record with `id` is. Tables are kept in id order (new records get the next id, at the end),
/// so a binary search finds it; a miss (or a table not in order) falls back to the scan.
fn position(recs: &[Value], id: i64) -> Option<usize> {
    let p = recs.partition_point(|r| r["id"].as_i64().is_some_and(|k| k < id));
    if recs.get(p).is_some_and(|r| r["id"].as_i64() == Some(id)) {
        return Some(p);
    }
    recs.iter().position(|r| r["id"].as_i64() == Some(id))
}

fn is_inactive(entity: &str, r: &Value) -> bool {
    if entity == "SoftwareLicence" {
        return r["is_active"] == json!(false) || r["deleted"] == json!(true);
    }
    r["inactive"] == json!(true)
}

/// A filter value, prepared once for the whole table.
struct Needle<'a> {
    text: &'a str,
    /// The integer `text` is the decimal form of (a number matches only when it prints as `text`).
    int: Option<i64>,
    lower: String,
}

impl<'a> Needle<'a> {
    fn new(text: &'a str) -> Self {
        let int = text.parse::<i64>().ok().filter(|i| i.to_string() == text);
        Needle {
            text,
            int,
            lower: text.to_lowercase(),
        }
    }

    fn eq_ci(&self, v: &Value) -> bool {
        match v {
            Value::String(x) => x.eq_ignore_ascii_case(self.text),
            Value::Number(n) => match n.as_i64() {
                Some(i) => self.int == Some(i),
                None => n.to_string() == self.text,
            },
            Value::Bool(b) => b.to_string() == self.text,
            _ => false,
        }
    }

    fn contained_ci(&self, v: &Value) -> bool {
        v.as_str()
            .is_some_and(|s| s.to_lowercase().contains(&self.lower))
    }
}

fn list(st: &State, entity: &str, req: &Req) -> Resp {
    // Filtered and paged by reference: only the records of the page are copied.
    let mut recs: Vec<&Value> = st.halo.get(entity).into_iter().flatten().collect();
    if !req
        .param("includeinactive")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        recs.retain(|r| !is_inactive(entity, r));
    }
    for (param, field) in [
        ("client_id", "client_id"),
        ("site_id", "site_id"),
        ("assettype_id", "assettype_id"),
        ("toplevel_id", "toplevel_id"),
        ("tenant_id", "tenant_id"),
    ] {
        if let Some(v) = req.param(param) {
            let v = Needle::new(v);
            recs.retain(|r| v.eq_ci(&r[field]));
        }
    }
    if let Some(q) = req.param("search").filter(|q| !q.is_empty()) {
        let fields: &[&str] = match entity {
            "Users" => &["name", "emailaddress", "login", "firstname", "surname"],
            "Asset" => &["inventory_number", "key_field", "key_field2"],
            _ => &["name"],
        };
        let q = Needle::new(q);
        recs.retain(|r| fields.iter().any(|f| q.contained_ci(&r[*f])));
    }
    if let Some(adv) = req.param("advanced_search") {
        let Ok(Value::Array(filters)) = serde_json::from_str::<Value>(adv) else {
            return Resp::text(400, "Invalid advanced search parameter");
        };
        for f in filters {
            let name = util::s(&f, "filter_name").to_string();
            let value = f["filter_value"]
                .as_str()
                .map_or_else(|| f["filter_value"].to_string(), str::to_string);
            let value = Needle::new(&value);
            match f["filter_type"].as_i64() {
                Some(2 | 6) => recs.retain(|r| value.eq_ci(&r[&name])),
                Some(4) => recs.retain(|r| value.contained_ci(&r[&name])),
                _ => return Resp::text(400, "Invalid advanced search parameter"),
            }
        }
    }
    let without_tenants =
        entity == "Client" && !util::param_bool(&req.params, "includeazuretenants");
    let id_of = |r: &Value| r["id"].as_i64().unwrap_or(0);
    if !recs.is_sorted_by_key(|r| id_of(r)) {
        recs.sort_by_key(|r| id_of(r));
    }
    let total = recs.len();
    let key = HALO_ENTITIES
        .iter()
        .find(|(n, _)| *n == entity)
        .map_or("", |(_, k)| *k);
    let paged = util::param_bool(&req.params, "pageinate");
    let mut out_page_no = None;
    let mut out_page_size = None;
    if paged {
        let size = req
            .param("page_size")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(50)
            .max(1);
        let page_no = req
            .param("page_no")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(1)
            .max(1);
        let effective = size.min(st.settings.halo_page_cap);
        let start = (page_no - 1).saturating_mul(effective).min(recs.len());
        let end = start.saturating_add(effective).min(recs.len());
        recs = recs[start..end].to_vec();
        out_page_no = Some(page_no);
        out_page_size = Some(size);
    } else if let Some(n) = req.param("count").and_then(|v| v.parse::<usize>().ok()) {
        recs.truncate(n);
    }
    let recs: Vec<Value> = recs
        .into_iter()
        .map(|r| {
            let mut r = r.clone();
            if without_tenants && let Some(o) = r.as_object_mut() {
                // Tenant mappings come only with includeazuretenants=true (parameter in the Halo swagger).
                o.remove("azure_tenants");
            }
            halo_lists::project(&st.settings, entity, r, req)
        })
        .collect();
    if key.is_empty() {
        return Resp::json(200, &Value::Array(recs));
    }
    let mut body = Map::new();
    if let (Some(p), Some(s)) = (out_page_no, out_page_size) {
        body.insert("page_no".into(), json!(p));
        body.insert("page_size".into(), json!(s));
    }
    body.insert("record_count".into(), json!(total));
    body.insert(key.into(), Value::Array(recs));
    Resp::json(200, &Value::Object(body))
}

/// A field that must be an integer id when present.
fn id_field(k: &str) -> bool {
    matches!(
        k,
        "id" | "client_id"
            | "site_id"
            | "assettype_id"
            | "toplevel_id"
            | "main_site_id"
            | "user_id"
            | "licence_id"
            | "parent_id"
    )
}

fn required(entity: &str) -> &'static [&'static str] {
    match entity {
        "Client" | "AssetType" => &["name"],
        "Site" | "SoftwareLicence" => &["name", "client_id"],
        "Users" => &["name", "site_id"],
        "Asset" => &["assettype_id", "site_id"],
        "Invoice" | "RecurringInvoice" => &["client_id"],
        _ => &[],
    }
}

fn upsert(st: &mut State, entity: &'static str, req: &Req) -> Resp {
    let body = match req.json() {
        Ok(b) => b,
        Err(e) => return Resp::text(400, &e),
    };
    let Value::Array(items) = body else {
        return Resp::text(
            400,
            &format!("POST /api/{entity} expects a JSON array of records"),
        );
    };
    if items.is_empty() {
        return Resp::text(400, "No records were sent");
    }
    // Validate everything first: a 400 rejects the whole batch.
    for (i, item) in items.iter().enumerate() {
        let n = i + 1;
        let Some(obj) = item.as_object() else {
            return Resp::text(400, &format!("Record {n} is not an object"));
        };
        for (e, field, value) in &st.settings.halo_rejects {
            if e.eq_ignore_ascii_case(entity) && obj.get(field) == Some(value) {
                return Resp::text(
                    400,
                    &format!("Validation failed for record {n}: {field} {value} is not valid"),
                );
            }
        }
        for (k, v) in obj {
            if id_field(k) && !v.is_null() && !v.is_i64() {
                return Resp::text(400, &format!("Record {n}: {k} must be an integer, got {v}"));
            }
        }
        let id = obj.get("id").and_then(Value::as_i64).unwrap_or(0);
        let existing = if id > 0 {
            match find(st, entity, id) {
                Some(r) => Some(r),
                None => return exception(400, &format!("{entity} with id {id} does not exist")),
            }
        } else {
            None
        };
        let merged_get = |k: &str| -> Value {
            obj.get(k)
                .cloned()
                .or_else(|| existing.as_ref().and_then(|e| e.get(k).cloned()))
                .unwrap_or(Value::Null)
        };
        for f in required(entity) {
            let v = merged_get(f);
            let missing = v.is_null() || v.as_str().is_some_and(|s| s.trim().is_empty());
            if missing {
                return Resp::text(400, &format!("Record {n}: {f} is required for {entity}"));
            }
        }
        for (k, target) in [
            ("site_id", "Site"),
            ("client_id", "Client"),
            ("assettype_id", "AssetType"),
        ] {
            if let Some(v) = obj.get(k).and_then(Value::as_i64) {
                let allowed_none = k == "site_id" && entity == "SoftwareLicence" && v == -1;
                if !allowed_none && entity != target && find(st, target, v).is_none() {
                    return Resp::text(
                        400,
                        &format!(
                            "Record {n}: please select a valid {} ({k} {v} does not exist)",
                            target.to_lowercase()
                        ),
                    );
                }
            }
        }
    }
    let mut out = Vec::new();
    let mut ids = NextIds::default();
    for item in items {
        let mut obj = item.as_object().cloned().unwrap_or_default();
        for (e, field) in &st.settings.halo_unkept_fields {
            if e.eq_ignore_ascii_case(entity) {
                obj.remove(field);
            }
        }
        let id = obj.get("id").and_then(Value::as_i64).unwrap_or(0);
        let rec = if id > 0 {
            let recs = st.halo_records_mut(entity);
            let Some(r) = position(recs, id).map(|p| &mut recs[p]) else {
                continue;
            };
            if let Some(ro) = r.as_object_mut() {
                for (k, v) in obj {
                    ro.insert(k, v);
                }
            }
            r.clone()
        } else {
            create(st, &mut ids, entity, obj)
        };
        let rec = derive(st, entity, rec);
        let recs = st.halo_records_mut(entity);
        let at = match rec["id"].as_i64() {
            Some(id) => position(recs, id),
            None => recs.iter().position(|r| r["id"] == rec["id"]),
        };
        if let Some(p) = at {
            recs[p] = rec.clone();
        }
        out.push(rec);
    }
    if out.len() == 1 {
        Resp::json(200, &out[0])
    } else {
        Resp::json(200, &Value::Array(out))
    }
}

/// The next free id per table during one POST: the table's highest id plus one, found once per table
/// (only this POST adds records while it runs, each with the id given here).
#[derive(Default)]
struct NextIds(Vec<(&'static str, i64)>);

impl NextIds {
    fn take(&mut self, st: &State, entity: &'static str) -> i64 {
        if let Some((_, next)) = self.0.iter_mut().find(|(e, _)| *e == entity) {
            *next += 1;
            return *next;
        }
        let next = st
            .halo
            .get(entity)
            .into_iter()
            .flatten()
            .filter_map(|r| r["id"].as_i64())
            .max()
            .unwrap_or(0)
            + 1;
        self.0.push((entity, next));
        next
    }
}

fn create(
    st: &mut State,
    ids: &mut NextIds,
    entity: &'static str,
    obj: Map<String, Value>,
) -> Value {
    let id = ids.take(st, entity);
    let mut rec = match entity {
        "Client" => {
            json!({"id": id, "name": "", "inactive": false, "toplevel_id": 1, "toplevel_name": "Customers", "website": "", "domain": "", "azure_tenants": [], "main_site_id": 0, "main_site_name": "", "colour": "#2bd3c6"})
        }
        "Site" => {
            json!({"id": id, "name": "", "client_id": 0, "client_name": "", "inactive": false, "isinvoicesite": false, "phonenumber": "", "timezone": "GMT Standard Time"})
        }
        "Users" => {
            json!({"id": id, "name": "", "firstname": "", "surname": "", "emailaddress": "", "login": "", "site_id": 0, "site_name": "", "client_id": 0, "client_name": "", "inactive": false, "isserviceaccount": false, "azureoid": "", "azure_tenant_id": "", "title": "", "department": "", "phonenumber": "", "mobilenumber": "", "notes": "", "isimportantcontact": false})
        }
        "SoftwareLicence" => {
            json!({"id": id, "type": 0, "name": "", "count": 0, "client_id": 0, "client_name": "", "site_id": -1, "licences_in_use": 0, "licences_available": 0, "is_active": true, "deleted": false, "tenant_id": "", "vendor": 0, "manufacturer": "", "billing_cycle": "", "term_duration": "", "status": "", "autorenew": false, "start_date": "1901-01-01T00:00:00", "end_date": "1901-01-01T00:00:00", "product_sku": "", "notes": ""})
        }
        "Asset" => {
            json!({"id": id, "inventory_number": "", "key_field": "", "client_id": 0, "client_name": "", "site_id": 0, "site_name": "", "assettype_id": 0, "assettype_name": "", "inactive": false, "status_id": 1, "notes": "", "intune_id": "", "azure_userprincipalname": "", "fields": [], "users": []})
        }
        "Invoice" | "RecurringInvoice" => {
            json!({"id": id, "client_id": 0, "client_name": "", "invoice_date": util::rfc3339(st.now_secs()), "lines": [], "total": 0.0})
        }
        _ => json!({"id": id}),
    };
    if let Some(ro) = rec.as_object_mut() {
        for (k, v) in obj {
            if k == "id" {
                continue;
            }
            ro.insert(k, v);
        }
    }
    st.halo_records_mut(entity).push(rec.clone());
    if entity == "Client" && rec["main_site_id"].as_i64().unwrap_or(0) == 0 {
        // Halo gives a new client a main site (named after `newclient_sitename` when sent).
        let site_name = rec
            .get("newclient_sitename")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("Main")
            .to_string();
        let site_id = ids.take(st, "Site");
        let site = json!({"id": site_id, "name": site_name, "client_id": id, "client_name": rec["name"], "inactive": false, "isinvoicesite": true, "phonenumber": "", "timezone": "GMT Standard Time"});
        st.halo_records_mut("Site").push(site);
        rec["main_site_id"] = json!(site_id);
        rec["main_site_name"] = json!(site_name);
    }
    rec
}

/// Fills the server-maintained fields (names of linked records).
fn derive(st: &State, entity: &str, mut rec: Value) -> Value {
    let name_of = |e: &str, id: &Value| -> Value {
        id.as_i64()
            .and_then(|id| find(st, e, id))
            .map_or(json!(""), |r| r["name"].clone())
    };
    match entity {
        "Users" | "Asset" => {
            if let Some(site) = rec["site_id"].as_i64().and_then(|id| find(st, "Site", id)) {
                rec["site_name"] = site["name"].clone();
                rec["client_id"] = site["client_id"].clone();
                rec["client_name"] = name_of("Client", &site["client_id"]);
                if entity == "Users" {
                    rec["site_id_int"] = rec["site_id"].clone();
                }
            }
            if entity == "Asset" {
                rec["assettype_name"] = name_of("AssetType", &rec["assettype_id"]);
            }
        }
        "Site" | "SoftwareLicence" | "Invoice" | "RecurringInvoice" => {
            rec["client_name"] = name_of("Client", &rec["client_id"]);
        }
        "Client" => {
            let id = rec["id"].clone();
            let name = rec["name"].clone();
            if let Some(ts) = rec.get_mut("azure_tenants").and_then(Value::as_array_mut) {
                for (i, t) in ts.iter_mut().enumerate() {
                    if t.get("id").is_none_or(Value::is_null) {
                        t["id"] = json!(i + 1);
                    }
                    t["client_id"] = id.clone();
                    t["client_name"] = name.clone();
                }
            }
            if let Some(site) = rec["main_site_id"]
                .as_i64()
                .and_then(|sid| find(st, "Site", sid))
            {
                rec["main_site_name"] = site["name"].clone();
            }
        }
        _ => {}
    }
    rec
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State::for_test()
    }

    #[test]
    fn lookups_find_records_whether_or_not_the_table_is_in_id_order() {
        let sorted: Vec<Value> = (1..=9).map(|i| json!({"id": i * 10})).collect();
        for i in 1..=9 {
            assert_eq!(position(&sorted, i * 10), Some(i as usize - 1));
        }
        assert_eq!(position(&sorted, 5), None);
        assert_eq!(position(&sorted, 95), None);
        let shuffled: Vec<Value> = [50, 10, 90, 30, 70, 20]
            .iter()
            .map(|i| json!({"id": i}))
            .collect();
        for (at, r) in shuffled.iter().enumerate() {
            assert_eq!(position(&shuffled, r["id"].as_i64().unwrap()), Some(at));
        }
        assert_eq!(position(&shuffled, 40), None);
        assert_eq!(position(&[json!({"name": "no id"})], 1), None);
    }

    #[test]
    fn lists_page_in_id_order_even_from_a_table_out_of_order() {
        let mut st = state();
        let users = st.halo_records_mut("Users");
        users.reverse();
        let mut ids: Vec<i64> = users.iter().filter_map(|r| r["id"].as_i64()).collect();
        assert!(ids.len() >= 3 && !ids.is_sorted());
        ids.sort();
        let page = |q: &str| {
            let r = list(&st, "Users", &Req::for_test("GET", "/api/Users", q));
            assert_eq!(r.status, 200);
            r.body_json()
        };
        let all = page("includeinactive=true");
        let got: Vec<i64> = all["users"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["id"].as_i64())
            .collect();
        assert_eq!(got, ids);
        let second = page("includeinactive=true&pageinate=true&page_size=2&page_no=2");
        assert_eq!(second["record_count"], json!(ids.len()));
        assert_eq!(second["users"][0]["id"], json!(ids[2]));
        let beyond = page("includeinactive=true&pageinate=true&page_size=2&page_no=999");
        assert_eq!(beyond["users"], json!([]));
        let first = ids[0];
        assert_eq!(find(&st, "Users", first).unwrap()["id"], json!(first));
    }

    #[test]
    fn next_ids_count_on_from_the_highest_id_once_per_table() {
        let st = state();
        let max = st.halo["Users"]
            .iter()
            .filter_map(|r| r["id"].as_i64())
            .max()
            .unwrap();
        let mut ids = NextIds::default();
        assert_eq!(ids.take(&st, "Users"), max + 1);
        assert_eq!(ids.take(&st, "Users"), max + 2);
        assert!(ids.take(&st, "Asset") > 0);
        assert_eq!(ids.take(&st, "Users"), max + 3);
    }
}
