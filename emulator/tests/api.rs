//! Drives the emulator over real HTTP with a minimal blocking client (std `TcpStream`).

use std::io::{Read, Write};
use std::net::TcpStream;

use csp_sync_emulator::{Api, Emulator, Fault, FaultKind, Scenario};
use serde_json::{Value, json};

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    raw: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        let text = String::from_utf8_lossy(&self.raw);
        serde_json::from_str(text.trim_start_matches('\u{feff}'))
            .unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request on a fresh connection; `None` when the server closed it without a response.
fn try_http(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Option<Reply> {
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut s = TcpStream::connect(host).expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    if buf.is_empty() {
        return None;
    }
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    Some(Reply {
        status,
        headers,
        raw: buf[split + 4..].to_vec(),
    })
}

fn http(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    try_http(method, url, headers, body).expect("a response")
}

fn start(s: Scenario) -> Emulator {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(Emulator::start(s))
        .unwrap()
}

fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                v.replace('%', "%25")
                    .replace(':', "%3A")
                    .replace('/', "%2F")
                    .replace(' ', "+")
                    .replace('#', "%23")
            )
        })
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

fn ms_token(emu: &Emulator, tenant: &str, grant: &str, scope: &str) -> Reply {
    let s = emu.scenario();
    let body = if grant == "refresh_token" {
        form(&[
            ("grant_type", grant),
            ("client_id", &s.partner_center_app.client_id),
            ("client_secret", &s.partner_center_app.client_secret),
            ("refresh_token", &s.partner_center_app.refresh_token),
            ("scope", scope),
        ])
    } else {
        form(&[
            ("grant_type", grant),
            ("client_id", &s.graph_app.client_id),
            ("client_secret", &s.graph_app.client_secret),
            ("scope", scope),
        ])
    };
    http(
        "POST",
        &format!("{}/{tenant}/oauth2/v2.0/token", emu.login_url()),
        &[FORM],
        &body,
    )
}

fn bearer(r: &Reply) -> String {
    assert_eq!(r.status, 200, "token: {}", String::from_utf8_lossy(&r.raw));
    format!("Bearer {}", r.json()["access_token"].as_str().unwrap())
}

fn halo_token(emu: &Emulator) -> String {
    let s = emu.scenario();
    let tenant = s.halo_app.tenant.clone().unwrap();
    let r = http(
        "POST",
        &format!("{}/auth/token?tenant={tenant}", emu.halo_url()),
        &[FORM],
        &form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &s.halo_app.client_id),
            ("client_secret", &s.halo_app.client_secret),
            ("scope", "all"),
        ]),
    );
    bearer(&r)
}

#[test]
fn partner_center_customers_page_with_continuation_tokens() {
    let emu = start(Scenario::small());
    let partner = emu.scenario().partner_tenant_id;
    let tok = bearer(&ms_token(
        &emu,
        &partner,
        "refresh_token",
        "https://api.partnercenter.microsoft.com/.default",
    ));
    let mut url = format!("{}/v1/customers?size=50", emu.partner_center_url());
    let mut headers: Vec<(String, String)> = vec![];
    let (mut names, mut pages, mut saw_unversioned, mut saw_bom) = (vec![], 0, false, false);
    loop {
        let mut h: Vec<(&str, &str)> = vec![("Authorization", &tok), ("MS-CorrelationId", "c-1")];
        h.extend(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let r = http("GET", &url, &h, b"");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("MS-CorrelationId"), Some("c-1"));
        saw_bom |= r.raw.starts_with("\u{feff}".as_bytes());
        pages += 1;
        let v = r.json();
        names.extend(v["items"].as_array().unwrap().iter().map(|c| {
            c["companyProfile"]["companyName"]
                .as_str()
                .unwrap()
                .to_string()
        }));
        let Some(next) = v["links"].get("next") else {
            break;
        };
        let uri = next["uri"].as_str().unwrap();
        saw_unversioned |= !uri.starts_with("/v1/");
        url = format!(
            "{}{}{uri}",
            emu.partner_center_url(),
            if uri.starts_with("/v1/") { "" } else { "/v1" }
        );
        headers = next["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["key"].as_str().unwrap().to_string(),
                    h["value"].as_str().unwrap().to_string(),
                )
            })
            .collect();
    }
    assert_eq!(pages, 3);
    assert_eq!(names.len(), 6);
    assert!(saw_unversioned && saw_bom);
    // Without the continuation header the seek fails.
    let r = http(
        "GET",
        &format!(
            "{}/v1/customers?size=2&seekOperation=Next",
            emu.partner_center_url()
        ),
        &[("Authorization", &tok)],
        b"",
    );
    assert_eq!(r.status, 400);
    // Version-less paths are not served.
    assert_eq!(
        http(
            "GET",
            &format!("{}/customers", emu.partner_center_url()),
            &[("Authorization", &tok)],
            b""
        )
        .status,
        404
    );
    // subscribedskus: app+user only.
    let contoso = emu
        .scenario()
        .customer_named("Contoso Ltd")
        .unwrap()
        .tenant_id
        .clone();
    let r = http(
        "GET",
        &format!(
            "{}/v1/customers/{contoso}/subscribedskus",
            emu.partner_center_url()
        ),
        &[("Authorization", &tok)],
        b"",
    );
    assert_eq!(r.status, 200);
    let spb = r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["productSku"]["skuPartNumber"] == "SPB")
        .cloned()
        .unwrap();
    assert_eq!(spb["totalUnits"], 12);
    assert_eq!(spb["consumedUnits"], 7);
    let app = {
        let s = emu.scenario();
        let body = form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &s.partner_center_app.client_id),
            ("client_secret", &s.partner_center_app.client_secret),
            ("scope", "https://api.partnercenter.microsoft.com/.default"),
        ]);
        bearer(&http(
            "POST",
            &format!("{}/{partner}/oauth2/v2.0/token", emu.login_url()),
            &[FORM],
            &body,
        ))
    };
    let r = http(
        "GET",
        &format!(
            "{}/v1/customers/{contoso}/subscribedskus",
            emu.partner_center_url()
        ),
        &[("Authorization", &app)],
        b"",
    );
    assert_eq!(r.status, 401);
    let r = http(
        "GET",
        &format!(
            "{}/v1/customers/{contoso}/subscriptions",
            emu.partner_center_url()
        ),
        &[("Authorization", &app)],
        b"",
    );
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 4);
}

#[test]
fn identity_rules_per_tenant() {
    let emu = start(Scenario::small());
    let s = emu.scenario();
    let wood = s
        .customer_named("Woodgrove Bank")
        .unwrap()
        .tenant_id
        .clone();
    let r = ms_token(
        &emu,
        &wood,
        "client_credentials",
        "https://graph.microsoft.com/.default",
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error_codes"], json!([65001]));
    assert!(
        r.json()["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS65001: ")
    );
    let r = ms_token(
        &emu,
        "00000000-0000-0000-0000-000000000000",
        "client_credentials",
        "https://graph.microsoft.com/.default",
    );
    assert_eq!(r.json()["error_codes"], json!([90002]));
    let body = form(&[
        ("grant_type", "client_credentials"),
        ("client_id", &s.graph_app.client_id),
        ("client_secret", &s.graph_app.client_secret),
        ("resource", "https://graph.microsoft.com"),
    ]);
    let r = http(
        "POST",
        &format!(
            "{}/{}/oauth2/v2.0/token",
            emu.login_url(),
            s.partner_tenant_id
        ),
        &[FORM],
        &body,
    );
    assert_eq!(r.json()["error_codes"], json!([901002]));
    // v1 answers expires_in as a string.
    let r = http(
        "POST",
        &format!("{}/{}/oauth2/token", emu.login_url(), s.partner_tenant_id),
        &[FORM],
        &body,
    );
    assert!(r.json()["expires_in"].is_string());
    // Delegated at Litware (GDAP active) works and rotates the refresh token; after GDAP expiry it fails.
    let lit = s.customer_named("Litware Inc").unwrap().tenant_id.clone();
    let r = ms_token(
        &emu,
        &lit,
        "refresh_token",
        "https://graph.microsoft.com/.default",
    );
    assert_eq!(r.status, 200);
    assert_ne!(
        r.json()["refresh_token"].as_str().unwrap(),
        s.partner_center_app.refresh_token
    );
    emu.with_state(|st| st.set_gdap_active(&lit, false));
    assert_eq!(
        ms_token(
            &emu,
            &lit,
            "refresh_token",
            "https://graph.microsoft.com/.default"
        )
        .json()["error_codes"],
        json!([50020])
    );
}

#[test]
fn graph_users_paging_select_and_delta() {
    let emu = start(Scenario::small());
    let contoso = emu
        .scenario()
        .customer_named("Contoso Ltd")
        .unwrap()
        .tenant_id
        .clone();
    let tok = bearer(&ms_token(
        &emu,
        &contoso,
        "client_credentials",
        "https://graph.microsoft.com/.default",
    ));
    let g = emu.graph_url();
    let mut url = format!("{g}/v1.0/users?$select=id,userPrincipalName,accountEnabled&$top=4");
    let mut all = vec![];
    loop {
        let v = http("GET", &url, &[("Authorization", &tok)], b"").json();
        for u in v["value"].as_array().unwrap() {
            assert_eq!(u.as_object().unwrap().len(), 3, "{u}");
            all.push(u.clone());
        }
        match v["@odata.nextLink"].as_str() {
            Some(n) => url = n.to_string(),
            None => break,
        }
    }
    assert_eq!(all.len(), 11);
    assert_eq!(
        http(
            "GET",
            &format!("{g}/v1.0/users?$top=1000"),
            &[("Authorization", &tok)],
            b""
        )
        .status,
        400
    );
    // Default properties exclude accountEnabled.
    let v = http(
        "GET",
        &format!("{g}/v1.0/users"),
        &[("Authorization", &tok)],
        b"",
    )
    .json();
    assert!(v["value"][0].get("accountEnabled").is_none() && v["value"][0].get("mail").is_some());

    let walk = |start: String| -> (Vec<Value>, String) {
        let (mut url, mut items) = (start, vec![]);
        loop {
            let r = http("GET", &url, &[("Authorization", &tok)], b"");
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.raw));
            let v = r.json();
            items.extend(v["value"].as_array().unwrap().iter().cloned());
            if let Some(n) = v["@odata.nextLink"].as_str() {
                url = n.to_string();
            } else {
                return (items, v["@odata.deltaLink"].as_str().unwrap().to_string());
            }
        }
    };
    let (first, delta) = walk(format!(
        "{g}/v1.0/users/delta?$select=id,displayName,accountEnabled"
    ));
    assert_eq!(first.len(), 11);
    emu.with_state(|st| {
        st.update_user(&contoso, "carol.white@contoso.co.uk", |u| u["accountEnabled"] = json!(false));
        st.update_user(&contoso, "dan.brown@contoso.co.uk", |u| u["jobTitle"] = json!("Not selected"));
        st.remove_user(&contoso, "frank.green@contoso.co.uk");
        st.add_user(&contoso, json!({"userPrincipalName": "new@contoso.co.uk", "displayName": "New Starter", "accountEnabled": true}));
    });
    let (changes, delta2) = walk(delta.clone());
    assert_eq!(changes.len(), 3, "{changes:?}");
    assert!(changes.iter().any(|c| c["accountEnabled"] == json!(false)));
    assert!(changes.iter().any(|c| c["@removed"]["reason"] == "changed"));
    let (none, _) = walk(delta2);
    assert!(none.is_empty());
    emu.with_state(csp_sync_emulator::State::expire_delta_tokens);
    let r = http("GET", &delta, &[("Authorization", &tok)], b"");
    assert_eq!(r.status, 410);
    assert_eq!(r.json()["error"]["code"], "syncStateNotFound");
    // Another tenant's token sees its own users.
    let fab = emu
        .scenario()
        .customer_named("Fabrikam Inc")
        .unwrap()
        .tenant_id
        .clone();
    let ftok = bearer(&ms_token(
        &emu,
        &fab,
        "client_credentials",
        "https://graph.microsoft.com/.default",
    ));
    assert_eq!(
        http(
            "GET",
            &format!("{g}/v1.0/users"),
            &[("Authorization", &ftok)],
            b""
        )
        .json()["value"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    let skus = http(
        "GET",
        &format!("{g}/v1.0/subscribedSkus"),
        &[("Authorization", &ftok)],
        b"",
    )
    .json();
    assert_eq!(skus["value"][0]["consumedUnits"], 3);
    let org = http(
        "GET",
        &format!("{g}/v1.0/organization"),
        &[("Authorization", &ftok)],
        b"",
    )
    .json();
    assert_eq!(
        org["value"][0]["verifiedDomains"].as_array().unwrap().len(),
        2
    );
}

#[test]
fn halo_lists_writes_and_faults() {
    let emu = start(Scenario::small());
    let h = emu.halo_url();
    // Token needs the tenant.
    let s = emu.scenario();
    let r = http(
        "POST",
        &format!("{h}/auth/token"),
        &[FORM],
        &form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &s.halo_app.client_id),
            ("client_secret", &s.halo_app.client_secret),
            ("scope", "all"),
        ]),
    );
    assert_eq!(r.status, 401);
    let tok = halo_token(&emu);
    let auth = [
        ("Authorization", tok.as_str()),
        ("Content-Type", "application/json"),
    ];
    let v = http(
        "GET",
        &format!("{h}/api/Users?pageinate=true&page_size=500&page_no=1&client_id=101"),
        &auth,
        b"",
    )
    .json();
    assert_eq!(v["users"].as_array().unwrap().len(), 100);
    assert_eq!(v["record_count"], 122);
    let v = http("GET", &format!("{h}/api/Users?pageinate=true&page_size=100&page_no=2&client_id=101&includeinactive=true"), &auth, b"").json();
    assert_eq!(v["users"].as_array().unwrap().len(), 23);
    assert_eq!(
        http("GET", &format!("{h}/api/AssetType"), &auth, b"")
            .json()
            .as_array()
            .unwrap()
            .len(),
        4
    );

    let r = http(
        "POST",
        &format!("{h}/api/Users"),
        &auth,
        br#"[{"name":"New Person","site_id":201,"emailaddress":"np@contoso.co.uk"}]"#,
    );
    assert_eq!(r.status, 200);
    let created = r.json();
    assert_eq!(created["client_id"], 101);
    assert_eq!(created["client_name"], "Contoso Limited");
    let id = created["id"].as_i64().unwrap();
    let r = http(
        "POST",
        &format!("{h}/api/Users"),
        &auth,
        format!(r#"[{{"id":{id}.0,"inactive":true}}]"#).as_bytes(),
    );
    assert_eq!(r.status, 400);
    let r = http(
        "POST",
        &format!("{h}/api/Users"),
        &auth,
        br#"[{"name":"A","site_id":201},{"name":"B","site_id":999}]"#,
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        http("GET", &format!("{h}/api/Users/{}", id + 1), &auth, b"").status,
        404
    );
    emu.with_state(|st| st.halo_reject("Users", "name", json!("Bad Apple")));
    let r = http(
        "POST",
        &format!("{h}/api/Users"),
        &auth,
        br#"[{"name":"Ok","site_id":201},{"name":"Bad Apple","site_id":201}]"#,
    );
    assert_eq!(r.status, 400);
    let r = http(
        "POST",
        &format!("{h}/api/Users"),
        &auth,
        br#"[{"name":"Ok 1","site_id":201},{"name":"Ok 2","site_id":201}]"#,
    );
    assert_eq!(r.json().as_array().unwrap().len(), 2);

    // Drops: before = not applied, after = applied; both logged with status 0.
    emu.inject(Fault::new(Api::Halo, "/api/Users", FaultKind::DropBeforeResponse).method("POST"));
    assert!(
        try_http(
            "POST",
            &format!("{h}/api/Users"),
            &auth,
            br#"[{"name":"Lost","site_id":201}]"#
        )
        .is_none()
    );
    emu.inject(Fault::new(Api::Halo, "/api/Users", FaultKind::DropAfterWrite).method("POST"));
    assert!(
        try_http(
            "POST",
            &format!("{h}/api/Users"),
            &auth,
            br#"[{"name":"Kept","site_id":201}]"#
        )
        .is_none()
    );
    let names: Vec<String> = emu
        .scenario()
        .halo_records("Users")
        .iter()
        .map(|u| u["name"].as_str().unwrap().to_string())
        .collect();
    assert!(!names.contains(&"Lost".to_string()) && names.contains(&"Kept".to_string()));
    let zero: Vec<_> = emu
        .requests()
        .into_iter()
        .filter(|r| r.status == 0)
        .collect();
    assert_eq!(zero.len(), 2);

    emu.inject(
        Fault::new(
            Api::Halo,
            "/api/Client",
            FaultKind::TooManyRequests { retry_after: None },
        )
        .times(2),
    );
    for _ in 0..2 {
        let r = http("GET", &format!("{h}/api/Client"), &auth, b"");
        assert_eq!(r.status, 429);
        assert!(r.header("retry-after").is_none());
    }
    let v = http(
        "GET",
        &format!("{h}/api/Client?includeazuretenants=true"),
        &auth,
        b"",
    )
    .json();
    assert_eq!(v["clients"].as_array().unwrap().len(), 5);
    emu.with_state(|st| st.set_halo_rate_limit(Some((2, 60))));
    assert_eq!(
        http("GET", &format!("{h}/api/Site"), &auth, b"").status,
        200
    );
    assert_eq!(
        http("GET", &format!("{h}/api/Site"), &auth, b"").status,
        200
    );
    assert_eq!(
        http("GET", &format!("{h}/api/Site"), &auth, b"").status,
        429
    );
}

#[test]
fn graph_batch_and_devices() {
    let emu = start(Scenario::small());
    let fab = emu
        .scenario()
        .customer_named("Fabrikam Inc")
        .unwrap()
        .tenant_id
        .clone();
    let tok = bearer(&ms_token(
        &emu,
        &fab,
        "client_credentials",
        "https://graph.microsoft.com/.default",
    ));
    let g = emu.graph_url();
    let v = http(
        "GET",
        &format!("{g}/v1.0/deviceManagement/managedDevices"),
        &[("Authorization", &tok)],
        b"",
    )
    .json();
    assert_eq!(v["value"].as_array().unwrap().len(), 2);
    assert!(v["@odata.nextLink"].is_string());
    emu.inject(Fault::new(
        Api::Graph,
        "/subscribedSkus",
        FaultKind::TooManyRequests {
            retry_after: Some("1.5".into()),
        },
    ));
    let body = json!({"requests": [{"id": "1", "method": "GET", "url": "/users?$select=id"}, {"id": "2", "method": "GET", "url": "/subscribedSkus"}]});
    // The batch's second item, as answered.
    let item2 = || {
        let v = http(
            "POST",
            &format!("{g}/v1.0/$batch"),
            &[
                ("Authorization", &tok),
                ("Content-Type", "application/json"),
            ],
            body.to_string().as_bytes(),
        )
        .json();
        v["responses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == "2")
            .unwrap()
            .clone()
    };
    let r2 = item2();
    assert_eq!(r2["status"], 429);
    assert_eq!(r2["headers"]["Retry-After"], "1.5");
    // A 503 with Retry-After (reference 3.9): on an item of a batch, and on a request of its own.
    let unavailable = FaultKind::StatusWithRetryAfter {
        status: 503,
        retry_after: "2".into(),
    };
    emu.inject(Fault::new(
        Api::Graph,
        "/subscribedSkus",
        unavailable.clone(),
    ));
    emu.inject(Fault::new(Api::Graph, "/deviceManagement", unavailable));
    let r2 = item2();
    assert_eq!(r2["status"], 503);
    assert_eq!(r2["headers"]["Retry-After"], "2");
    assert_eq!(r2["body"]["error"]["code"], "serviceNotAvailable");
    let r = http(
        "GET",
        &format!("{g}/v1.0/deviceManagement/managedDevices"),
        &[("Authorization", &tok)],
        b"",
    );
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("2"));
    let many: Vec<Value> = (0..21)
        .map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/users"}))
        .collect();
    let r = http(
        "POST",
        &format!("{g}/v1.0/$batch"),
        &[
            ("Authorization", &tok),
            ("Content-Type", "application/json"),
        ],
        json!({"requests": many}).to_string().as_bytes(),
    );
    assert_eq!(r.status, 400);
    // Expired tokens are refused.
    emu.with_state(csp_sync_emulator::State::expire_access_tokens);
    assert_eq!(
        http(
            "GET",
            &format!("{g}/v1.0/users"),
            &[("Authorization", &tok)],
            b""
        )
        .status,
        401
    );
}

/// `$batch` as reference 3.8 describes it: per-item status, headers and body; responses matched by id
/// (their order is not the request order); `dependsOn` (a failed dependency answers 424); 400 for the
/// whole batch on duplicate ids, an absolute url, a body without `Content-Type`; `$deltatoken=latest`
/// returns only a delta link; network-level faults on an item's path hit the batch request.
#[test]
fn graph_batch_follows_the_reference() {
    let emu = start(Scenario::small());
    let fab = emu
        .scenario()
        .customer_named("Fabrikam Inc")
        .unwrap()
        .tenant_id
        .clone();
    let tok = bearer(&ms_token(
        &emu,
        &fab,
        "client_credentials",
        "https://graph.microsoft.com/.default",
    ));
    let g = emu.graph_url();
    let post = |body: &Value| {
        http(
            "POST",
            &format!("{g}/v1.0/$batch"),
            &[
                ("Authorization", &tok),
                ("Content-Type", "application/json"),
            ],
            body.to_string().as_bytes(),
        )
    };
    let item = |v: &Value, id: &str| {
        v["responses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("no response {id}: {v}"))
            .clone()
    };
    let v = post(&json!({"requests": [
        {"id": "latest", "method": "GET", "url": "/users/delta?$select=id,displayName&$deltatoken=latest"},
        {"id": "users", "method": "GET", "url": "/users?$select=id&$top=999", "dependsOn": ["latest"]},
        {"id": "skus", "method": "GET", "url": "/subscribedSkus"},
        {"id": "devices", "method": "GET", "url": "/deviceManagement/managedDevices"}
    ]}))
    .json();
    let ids: Vec<&str> = v["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_ne!(
        ids,
        ["latest", "users", "skus", "devices"],
        "answered in request order"
    );
    let latest = item(&v, "latest");
    assert_eq!(latest["status"], 200);
    assert_eq!(latest["body"]["value"], json!([]));
    assert!(
        latest["body"]["@odata.deltaLink"]
            .as_str()
            .unwrap()
            .contains("$deltatoken=")
    );
    assert!(latest["body"].get("@odata.nextLink").is_none());
    assert!(
        !item(&v, "users")["body"]["value"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(item(&v, "skus")["status"], 200);
    // Fabrikam has Intune in the small scenario: the device list answers 200 with its first page.
    assert_eq!(item(&v, "devices")["status"], 200);
    // Four items ran in one HTTP request; each is logged after it with its id.
    let log = emu.requests();
    let at = log.iter().rposition(|r| r.path == "/v1.0/$batch").unwrap();
    let items: Vec<_> = log[at + 1..]
        .iter()
        .filter_map(|r| r.batch.clone())
        .collect();
    assert_eq!(items, ["latest", "users", "skus", "devices"]);
    assert_eq!(
        emu.http_requests()
            .iter()
            .filter(|r| r.api == Api::Graph)
            .count(),
        1
    );
    // The delta link from `latest` tracks from now: nothing changed, so the next round is empty.
    let link = latest["body"]["@odata.deltaLink"]
        .as_str()
        .unwrap()
        .to_string();
    let rel = link.split("/v1.0").nth(1).unwrap().to_string();
    let v = post(&json!({"requests": [{"id": "d", "method": "GET", "url": rel}]})).json();
    assert_eq!(item(&v, "d")["body"]["value"], json!([]));

    // A failed dependency: the dependent item answers 424 without running.
    emu.inject(Fault::new(
        Api::Graph,
        "$deltatoken=latest",
        FaultKind::Status(503),
    ));
    let v = post(&json!({"requests": [
        {"id": "a", "method": "GET", "url": "/users/delta?$deltatoken=latest"},
        {"id": "b", "method": "GET", "url": "/users?$top=999", "dependsOn": ["a"]}
    ]}))
    .json();
    assert_eq!(item(&v, "a")["status"], 503);
    assert_eq!(item(&v, "b")["status"], 424);

    // Whole-batch 400s.
    for bad in [
        json!({"requests": [{"id": "1", "method": "GET", "url": "/users"}, {"id": "1", "method": "GET", "url": "/subscribedSkus"}]}),
        json!({"requests": [{"id": "1", "method": "GET", "url": format!("{g}/v1.0/users")}]}),
        json!({"requests": [{"id": "1", "method": "POST", "url": "/users", "body": {"a": 1}}]}),
        json!({"requests": [{"id": "1", "method": "GET", "url": "/users", "dependsOn": ["9"]}]}),
    ] {
        let r = post(&bad);
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.json()["error"]["message"].is_string());
    }

    // A dropped connection queued for an item's path drops the batch request itself.
    emu.inject(Fault::new(
        Api::Graph,
        "/subscribedSkus",
        FaultKind::DropBeforeResponse,
    ));
    let body = json!({"requests": [{"id": "1", "method": "GET", "url": "/subscribedSkus"}]});
    assert!(
        try_http(
            "POST",
            &format!("{g}/v1.0/$batch"),
            &[
                ("Authorization", &tok),
                ("Content-Type", "application/json"),
            ],
            body.to_string().as_bytes(),
        )
        .is_none()
    );
    assert_eq!(emu.requests().last().unwrap().status, 0);
}

#[test]
fn large_scenario_is_deterministic_and_mapped() {
    let at: jiff::Timestamp = "2026-11-27T09:00:00Z".parse().unwrap();
    let s = Scenario::large_at(at, 200, 100, 50);
    assert_eq!(s.customers.len(), 200);
    assert!(
        s.customers
            .iter()
            .all(|c| c.halo_client_id.is_some() && c.users.len() == 100)
    );
    assert_eq!(s.halo_records("Client").len(), 200);
    assert!(s.halo_records("Users").is_empty());
    assert_eq!(s, Scenario::large_at(at, 200, 100, 50));
}

#[test]
fn drop_frees_ports_and_standalone_rejects_bad_args() {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = probe.local_addr().unwrap().port();
    drop(probe);
    let Ok(emu) = Emulator::start_on(Scenario::small(), "127.0.0.1", Some(base)) else {
        return; // a neighbouring port was taken by someone else; nothing to check
    };
    assert_eq!(emu.login_url(), format!("http://127.0.0.1:{base}"));
    assert_eq!(
        http("GET", &format!("{}/api/authinfo", emu.halo_url()), &[], b"").status,
        200
    );
    drop(emu);
    let again = Emulator::start_on(Scenario::small(), "127.0.0.1", Some(base))
        .expect("ports freed after drop");
    drop(again);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt
        .block_on(csp_sync_emulator::run_standalone(vec!["--bogus".into()]))
        .unwrap_err();
    assert!(err.contains("unknown argument"));
    let err = rt
        .block_on(csp_sync_emulator::run_standalone(vec![
            "--scenario".into(),
            "/nonexistent.json".into(),
        ]))
        .unwrap_err();
    assert!(err.contains("cannot read scenario file"));
}

/// Service principals and app-role assignments (reference 1.6 pattern B), and the app-only token rule.
#[test]
fn service_principals_and_app_role_assignments() {
    let emu = start(Scenario::small());
    let s = emu.scenario();
    let wood = s
        .customer_named("Woodgrove Bank")
        .unwrap()
        .tenant_id
        .clone();
    let graph_app = s.graph_app.client_id.clone();
    let app_token = |tenant: &str| {
        ms_token(
            &emu,
            tenant,
            "client_credentials",
            "https://graph.microsoft.com/.default",
        )
    };
    assert_eq!(app_token(&wood).json()["error_codes"], json!([65001]));
    // Contoso's app is provisioned: its app-only token works, and cannot write.
    let contoso = s.customer_named("Contoso Ltd").unwrap().tenant_id.clone();
    let contoso_app = bearer(&app_token(&contoso));
    let g = emu.graph_url();
    let r = http(
        "POST",
        &format!("{g}/v1.0/servicePrincipals"),
        &[
            ("Authorization", &contoso_app),
            ("Content-Type", "application/json"),
        ],
        format!(r#"{{"appId":"{graph_app}"}}"#).as_bytes(),
    );
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"]["code"], "Authorization_RequestDenied");

    // The Partner Center consent of the Graph app (delegated) lets the partner user in.
    emu.with_state(|st| {
        let id = st.graph_app.client_id.clone();
        st.tenant_mut("Woodgrove Bank").consented_apps.push(id);
    });
    let user_token = |tenant: &str| {
        bearer(&http(
            "POST",
            &format!("{}/{tenant}/oauth2/v2.0/token", emu.login_url()),
            &[FORM],
            &form(&[
                ("grant_type", "refresh_token"),
                ("client_id", &s.graph_app.client_id),
                ("client_secret", &s.graph_app.client_secret),
                ("refresh_token", &s.graph_app.refresh_token),
                ("scope", "https://graph.microsoft.com/.default"),
            ]),
        ))
    };
    let user = user_token(&wood);
    let get = |path: &str| {
        http(
            "GET",
            &format!("{g}/v1.0/{path}"),
            &[("Authorization", &user)],
            b"",
        )
    };
    let post = |path: &str, body: Value| {
        http(
            "POST",
            &format!("{g}/v1.0/{path}"),
            &[
                ("Authorization", &user),
                ("Content-Type", "application/json"),
            ],
            body.to_string().as_bytes(),
        )
    };
    let filter = |app: &str| format!("servicePrincipals?$filter=appId%20eq%20%27{app}%27");
    assert_eq!(get(&filter(&graph_app)).json()["value"], json!([]));
    let graph_sp = get(&filter("00000003-0000-0000-c000-000000000000")).json()["value"][0].clone();
    let graph_sp_id = graph_sp["id"].as_str().unwrap().to_string();
    let role = |value: &str| {
        graph_sp["appRoles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["value"] == value)
            .unwrap_or_else(|| panic!("no app role {value}"))["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        role("User.Read.All"),
        "df021288-bdef-4463-88db-98f22de89214"
    );
    // Stable per tenant, different between tenants.
    assert_eq!(
        get(&filter("00000003-0000-0000-c000-000000000000")).json()["value"][0]["id"],
        graph_sp_id.as_str()
    );
    let other = http(
        "GET",
        &format!(
            "{g}/v1.0/{}",
            filter("00000003-0000-0000-c000-000000000000")
        ),
        &[("Authorization", &contoso_app)],
        b"",
    );
    assert_ne!(other.json()["value"][0]["id"], graph_sp_id.as_str());
    assert_eq!(
        get("servicePrincipals?$filter=displayName%20eq%20%27x%27").status,
        400
    );

    let r = post("servicePrincipals", json!({"appId": graph_app}));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.raw));
    let sp_id = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(r.json()["appId"], graph_app.as_str());
    assert_eq!(
        post("servicePrincipals", json!({"appId": graph_app})).status,
        409
    );
    assert_eq!(
        get(&format!("servicePrincipals/{sp_id}")).json()["appId"],
        graph_app.as_str()
    );

    // Documented forms: the resource in the path of appRoleAssignedTo, the principal in that of
    // appRoleAssignments.
    let users = json!({"principalId": sp_id, "resourceId": graph_sp_id, "appRoleId": role("User.Read.All")});
    assert_eq!(
        post(
            &format!("servicePrincipals/{sp_id}/appRoleAssignedTo"),
            users.clone()
        )
        .status,
        400
    );
    let r = post(
        &format!("servicePrincipals/{graph_sp_id}/appRoleAssignedTo"),
        users.clone(),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.raw));
    assert_eq!(r.json()["principalType"], "ServicePrincipal");
    assert_eq!(r.json()["resourceDisplayName"], "Microsoft Graph");
    let r = post(
        &format!("servicePrincipals/{graph_sp_id}/appRoleAssignedTo"),
        users,
    );
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already exists")
    );
    let org = json!({"principalId": sp_id, "resourceId": graph_sp_id, "appRoleId": role("Organization.Read.All")});
    assert_eq!(
        post(
            &format!("servicePrincipals/{sp_id}/appRoleAssignments"),
            org
        )
        .status,
        201
    );
    let bogus = json!({"principalId": sp_id, "resourceId": graph_sp_id, "appRoleId": "11111111-2222-3333-4444-555555555555"});
    assert_eq!(
        post(
            &format!("servicePrincipals/{sp_id}/appRoleAssignments"),
            bogus
        )
        .status,
        400
    );
    let granted = get(&format!("servicePrincipals/{sp_id}/appRoleAssignments")).json();
    assert_eq!(granted["value"].as_array().unwrap().len(), 2, "{granted}");
    let to = get(&format!(
        "servicePrincipals/{graph_sp_id}/appRoleAssignedTo"
    ))
    .json();
    assert_eq!(to["value"].as_array().unwrap().len(), 2, "{to}");
    assert_eq!(
        get("servicePrincipals/00000000-0000-0000-0000-000000000001").status,
        404
    );

    // Now the app-only token is issued.
    assert_eq!(app_token(&wood).status, 200);

    // Without Cloud Application Administrator (or higher) in the GDAP relationship, writes are refused.
    emu.with_state(|st| {
        st.set_app_permissions("Woodgrove Bank", false);
        st.remove_gdap_role("Woodgrove Bank", "158c047a-c907-4556-b7ef-446551a6b5f7");
    });
    assert_eq!(app_token(&wood).json()["error_codes"], json!([65001]));
    let r = post("servicePrincipals", json!({"appId": graph_app}));
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"]["code"], "Authorization_RequestDenied");
    // Reads still work.
    assert_eq!(get(&filter(&graph_app)).status, 200);
}
