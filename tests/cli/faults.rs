//! Faults: throttling in the three `Retry-After` styles, server errors and dropped connections retried to
//! success, Halo lists longer than a page, a Graph token refused for one tenant, a create whose reply was
//! lost, JSON logs, and no secret in the output of a run full of retries.

use std::collections::BTreeMap;

use csp_sync_emulator::{Api, Fault, FaultKind, RequestRecord};
use serde_json::{Value, json};

use crate::estate;
use crate::support::{Env, clean, text};

/// Asserts two JSON documents are equal without dumping them whole (plans are long).
fn assert_same(got: &Value, want: &Value, what: &str) {
    assert!(
        got == want,
        "{what}: summary {} instead of {}",
        got["summary"],
        want["summary"]
    );
}

fn json_of(o: &[u8]) -> Value {
    serde_json::from_slice(o).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", text(o)))
}

fn too_many(retry_after: Option<&str>) -> FaultKind {
    FaultKind::TooManyRequests {
        retry_after: retry_after.map(str::to_string),
    }
}

/// The stderr lines that are JSON objects (the tracing events of `--log-format json`).
fn json_lines(stderr: &[u8]) -> Vec<Value> {
    text(stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(Value::is_object)
        .collect()
}

fn target(r: &RequestRecord) -> String {
    format!("{}?{}", r.path, r.query)
}

/// Whether `r` is a Graph `$batch` POST carrying an item whose url contains `needle`.
fn batch_carries(r: &RequestRecord, needle: &str) -> bool {
    r.path.ends_with("/$batch")
        && r.body.as_ref().is_some_and(|b| {
            b["requests"].as_array().is_some_and(|items| {
                items
                    .iter()
                    .any(|i| i["url"].as_str().is_some_and(|u| u.contains(needle)))
            })
        })
}

/// Asserts that the first request to `api` whose `path?query` contains `needle` got `status`, and that the
/// very same request (method, path and query) was sent again later and got 200. A dropped connection
/// (`status` 0) on a read Graph carries in a `$batch` drops the batch: that is the request looked for.
fn assert_retried(reqs: &[RequestRecord], api: Api, needle: &str, status: u16) {
    let Some(i) = reqs.iter().position(|r| {
        r.api == api && (target(r).contains(needle) || (status == 0 && batch_carries(r, needle)))
    }) else {
        panic!("no {api:?} request matching {needle}");
    };
    let failed = &reqs[i];
    assert_eq!(
        failed.status,
        status,
        "{api:?} {} {}: expected the injected {status}",
        failed.method,
        target(failed)
    );
    assert!(
        reqs[i + 1..].iter().any(|r| r.api == api
            && r.method == failed.method
            && r.path == failed.path
            && r.query == failed.query
            && r.status == 200),
        "{api:?} {} {} got {status} and was not retried to success",
        failed.method,
        target(failed)
    );
}

/// The `throttled (429)` warnings of a JSON log, as (api, wait_ms, from_server).
fn throttle_waits(events: &[Value]) -> Vec<(String, u64, bool)> {
    events
        .iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("throttled (429)"))
        })
        .map(|e| {
            (
                e["api"].as_str().unwrap_or_default().to_string(),
                e["wait_ms"].as_u64().unwrap_or(u64::MAX),
                e["from_server"].as_bool().unwrap_or_default(),
            )
        })
        .collect()
}

/// An HTTP-date (RFC 9110) `secs` seconds from now.
fn http_date_in(secs: i64) -> String {
    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(secs);
    jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&at)
        .unwrap()
}

#[test]
fn tenants_list_survives_throttling_on_every_page() {
    let env = Env::new(&estate::ConfigOptions::default());
    let baseline = env.run(&["-o", "json", "tenants", "list"]);
    assert_eq!(
        baseline.status.code(),
        Some(0),
        "{}",
        text(&baseline.stderr)
    );
    env.em.clear_requests();

    // Partner Center: integer Retry-After on the first page and on a continuation page.
    env.em.inject(Fault::new(
        Api::PartnerCenter,
        "/v1/customers?size",
        too_many(Some("1")),
    ));
    env.em.inject(Fault::new(
        Api::PartnerCenter,
        "seekOperation=Next",
        too_many(Some("1")),
    ));
    // Halo: 429 without Retry-After, then a 503, on the client list.
    env.em
        .inject(Fault::new(Api::Halo, "/api/Client", too_many(None)));
    env.em
        .inject(Fault::new(Api::Halo, "/api/Client", FaultKind::Status(503)));
    let out = env.run(&["-o", "json", "--log-format", "json", "tenants", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_same(
        &json_of(&out.stdout),
        &json_of(&baseline.stdout),
        "the throttled run listed something else",
    );

    let reqs = env.em.requests();
    assert_retried(&reqs, Api::PartnerCenter, "/v1/customers?size", 429);
    assert_retried(&reqs, Api::PartnerCenter, "seekOperation=Next", 429);
    let client_statuses: Vec<u16> = reqs
        .iter()
        .filter(|r| r.api == Api::Halo && r.path == "/api/Client")
        .map(|r| r.status)
        .collect();
    assert_eq!(client_statuses[..3], [429, 503, 200], "{client_statuses:?}");
    let pages = reqs
        .iter()
        .filter(|r| {
            r.api == Api::PartnerCenter && r.path.ends_with("/customers") && r.status == 200
        })
        .count();
    assert!(pages >= 3, "customers read in {pages} pages");

    let waits = throttle_waits(&json_lines(&out.stderr));
    let pc: Vec<_> = waits.iter().filter(|w| w.0 == "Partner Center").collect();
    assert_eq!(pc.len(), 2, "{waits:?}");
    assert!(
        pc.iter().all(|w| w.1 == 1000 && w.2),
        "Retry-After: 1 not honoured: {waits:?}"
    );
    assert!(
        waits.iter().any(|w| w.0 == "Halo" && !w.2),
        "Halo 429 without Retry-After: {waits:?}"
    );
}

#[test]
fn diff_survives_429s_503s_and_dropped_reads() {
    let env = Env::new(&clean());
    let baseline = env.run(&["-o", "json", "diff"]);
    assert_eq!(
        baseline.status.code(),
        Some(0),
        "{}",
        text(&baseline.stderr)
    );
    env.em.clear_requests();

    let faults = [
        // The three styles of Retry-After.
        Fault::new(Api::Graph, "/users/delta", too_many(Some("0.5"))),
        Fault::new(Api::Halo, "/api/Users", too_many(Some(&http_date_in(5)))),
        Fault::new(Api::Halo, "/api/Site", too_many(None)),
        Fault::new(Api::PartnerCenter, "/subscriptions", too_many(Some("1"))),
        // Server errors. (Partner Center's `subscribedskus` is not read: seat counts come with the
        // tenant's Graph reads.)
        Fault::new(Api::PartnerCenter, "/customers", FaultKind::Status(503)),
        Fault::new(Api::Graph, "/subscribedSkus", FaultKind::Status(503)),
        Fault::new(Api::Halo, "/api/SoftwareLicence", FaultKind::Status(503)),
        // Connections dropped before any response (a read Graph carries in a `$batch` drops the batch;
        // no Graph read of this estate has a second page).
        Fault::new(Api::Graph, "/users?", FaultKind::DropBeforeResponse),
        Fault::new(
            Api::Graph,
            "/directory/subscriptions",
            FaultKind::DropBeforeResponse,
        ),
        Fault::new(Api::Halo, "/api/Client", FaultKind::DropBeforeResponse),
        Fault::new(Api::Halo, "page_no=2", FaultKind::DropBeforeResponse),
        Fault::new(
            Api::PartnerCenter,
            "seekOperation=Next",
            FaultKind::DropBeforeResponse,
        ),
        Fault::new(Api::Login, "/oauth2/v2.0/token", FaultKind::Status(503)),
        Fault::new(Api::Halo, "/auth/token", FaultKind::DropBeforeResponse),
    ];
    for f in &faults {
        env.em.inject(f.clone());
    }
    let out = env.run(&["-o", "json", "--log-format", "json", "diff"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_same(
        &json_of(&out.stdout),
        &json_of(&baseline.stdout),
        "the faulty run planned something else",
    );

    let reqs = env.em.requests();
    for f in &faults {
        let status = match &f.kind {
            FaultKind::TooManyRequests { .. } => 429,
            FaultKind::Status(s) => *s,
            _ => 0,
        };
        assert_retried(&reqs, f.api, &f.path_contains, status);
    }

    let waits = throttle_waits(&json_lines(&out.stderr));
    let find = |api: &str| {
        waits
            .iter()
            .filter(|w| w.0 == api)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        find("Microsoft Graph"),
        [("Microsoft Graph".into(), 500, true)]
    );
    assert_eq!(
        find("Partner Center"),
        [("Partner Center".into(), 1000, true)]
    );
    let halo = find("Halo");
    assert_eq!(halo.len(), 2, "{waits:?}");
    assert!(
        halo.iter().any(|w| w.2 && (1000..=5000).contains(&w.1)),
        "HTTP-date Retry-After not honoured: {waits:?}"
    );
    assert!(halo.iter().any(|w| !w.2), "{waits:?}");
    assert_eq!(env.halo_posts(), 0, "diff wrote to Halo");
}

/// Adds `n` hand-made contacts to Contoso's site (ids from 5000).
fn add_contoso_contacts(env: &Env, n: i64) {
    env.em.with_state(|s| {
        let users = s.halo_records_mut("Users");
        let template = users
            .iter()
            .find(|u| u["id"] == 1100)
            .cloned()
            .expect("contact 1100 of the small scenario");
        for i in 0..n {
            let mut u = template.clone();
            u["id"] = json!(5000 + i);
            u["name"] = json!(format!("Extra Contact {i}"));
            u["emailaddress"] = json!(format!("extra.contact{i}@contoso.co.uk"));
            users.push(u);
        }
    });
}

fn halo_user_pages(env: &Env) -> Vec<String> {
    env.em
        .requests()
        .iter()
        .filter(|r| r.api == Api::Halo && r.method == "GET" && r.path == "/api/Users")
        .filter_map(|r| {
            r.query
                .split('&')
                .find_map(|p| p.strip_prefix("page_no="))
                .map(str::to_string)
        })
        .collect()
}

/// Asserts that no Entra object id is held by two Halo contacts.
fn assert_no_duplicate_oids(env: &Env) -> BTreeMap<String, usize> {
    let by_oid = env.em.with_state(|s| {
        let mut m: BTreeMap<String, usize> = BTreeMap::new();
        for u in s.halo_records("Users") {
            if let Some(oid) = u["azureoid"].as_str().filter(|o| !o.is_empty()) {
                *m.entry(oid.to_lowercase()).or_default() += 1;
            }
        }
        m
    });
    let dups: Vec<_> = by_oid.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "duplicate Halo contacts: {dups:?}");
    by_oid
}

#[test]
fn halo_lists_longer_than_a_page_are_read_completely() {
    let env = Env::new(&clean());
    add_contoso_contacts(&env, 100);
    let total = env.em.with_state(|s| s.halo_records("Users").len());
    assert!(total > 200, "{total} contacts");

    let full = env.run(&["-o", "json", "diff"]);
    assert_eq!(full.status.code(), Some(0), "{}", text(&full.stderr));
    let pages = halo_user_pages(&env);
    assert_eq!(pages, ["1", "2", "3"], "{total} contacts in pages of 100");

    // A Halo that caps pages below the requested size: the read must go on while record_count says more.
    env.em.clear_requests();
    env.em.with_state(|s| s.set_halo_page_cap(40));
    let capped = env.run(&["-o", "json", "diff"]);
    assert_eq!(capped.status.code(), Some(0), "{}", text(&capped.stderr));
    assert_same(
        &json_of(&capped.stdout),
        &json_of(&full.stdout),
        "a capped page lost contacts",
    );
    let pages = halo_user_pages(&env);
    assert!(
        pages.len() >= total.div_ceil(40),
        "{total} contacts read in pages {pages:?} of 40"
    );

    let sync = env.run(&["-o", "json", "sync"]);
    assert_eq!(sync.status.code(), Some(0), "{}", text(&sync.stderr));
    let by_oid = assert_no_duplicate_oids(&env);
    // Fabrikam's contact 1301 was linked before the run and sits past the first pages.
    let oid_1301 = env.em.with_state(|s| {
        s.halo_record("Users", 1301).unwrap()["azureoid"]
            .as_str()
            .unwrap()
            .to_lowercase()
    });
    assert_eq!(by_oid.get(&oid_1301), Some(&1));
    let posts = env.halo_posts();
    let again = env.run(&["-o", "json", "sync"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert_eq!(env.halo_posts(), posts, "a second sync wrote to Halo");
}

/// The Entra object ids of a customer of the scenario.
fn entra_ids(env: &Env, customer: &str) -> Vec<String> {
    env.em
        .scenario()
        .customer_named(customer)
        .unwrap()
        .users
        .iter()
        .filter_map(|u| u["id"].as_str().map(str::to_lowercase))
        .collect()
}

#[test]
fn a_tenant_refusing_the_graph_token_fails_alone() {
    let env = Env::new(&estate::ConfigOptions::default());
    let sc = env.em.scenario();
    let woodgrove = sc
        .customer_named("Woodgrove Bank")
        .unwrap()
        .tenant_id
        .clone();

    let diff = env.run(&["-o", "json", "diff"]);
    assert_eq!(diff.status.code(), Some(1), "{}", text(&diff.stderr));
    let plan = json_of(&diff.stdout);
    for t in plan["tenants"].as_array().unwrap() {
        let errors = t["errors"].as_array().unwrap();
        if t["customer_id"] == woodgrove.as_str() {
            let all = errors
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n");
            assert!(all.contains("AADSTS65001"), "{all}");
            assert!(all.contains("csp-sync tenants consent"), "{all}");
        } else {
            assert!(errors.is_empty(), "{}: {errors:?}", t["name"]);
            assert!(
                t["changes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c["module"] == "users"),
                "{} has no user changes",
                t["name"]
            );
        }
    }
    let table = env.run(&["-o", "table", "diff"]);
    assert_eq!(table.status.code(), Some(1));
    let shown = text(&table.stdout);
    assert!(
        shown.contains("Woodgrove Bank") && shown.contains("AADSTS65001"),
        "{shown}"
    );

    let sync = env.run(&["-o", "json", "sync"]);
    assert_eq!(sync.status.code(), Some(1), "{}", text(&sync.stderr));
    // Every tenant got its own token, and each tenant's users landed on its own Halo client: Graph
    // serves the data of the token's tenant, so a token reused across tenants would misplace them.
    let reqs = env.em.requests();
    for c in sc.customers.iter().filter(|c| c.halo_client_id.is_some()) {
        let path = format!("/{}/oauth2/v2.0/token", c.tenant_id);
        let want = if c.tenant_id == woodgrove { 400 } else { 200 };
        assert!(
            reqs.iter()
                .any(|r| r.api == Api::Login && r.path == path && r.status == want),
            "{}: no token request answered {want}",
            c.name
        );
    }
    let halo_users = env.em.with_state(|s| s.halo_records("Users").clone());
    for (customer, client) in [
        ("Contoso Ltd", 101),
        ("Fabrikam Inc", 102),
        ("Litware Inc", 105),
    ] {
        let ids = entra_ids(&env, customer);
        let mine: Vec<&Value> = halo_users
            .iter()
            .filter(|u| {
                u["azureoid"]
                    .as_str()
                    .is_some_and(|o| ids.contains(&o.to_lowercase()))
            })
            .collect();
        assert!(
            mine.len() >= 2,
            "{customer}: {} contacts synced",
            mine.len()
        );
        for u in mine {
            assert_eq!(u["client_id"], client, "{customer}: {u}");
        }
    }
    let woodgrove_ids = entra_ids(&env, "Woodgrove Bank");
    assert!(!halo_users.iter().any(|u| {
        u["azureoid"]
            .as_str()
            .is_some_and(|o| woodgrove_ids.contains(&o.to_lowercase()))
    }));
    assert_no_duplicate_oids(&env);

    let check = env.run(&["-o", "json", "auth", "check", "--tenants"]);
    assert_eq!(check.status.code(), Some(1), "{}", text(&check.stderr));
    let checks = json_of(&check.stdout);
    let checks = checks["checks"].as_array().unwrap();
    for c in sc.customers.iter().filter(|c| c.halo_client_id.is_some()) {
        let row = checks
            .iter()
            .find(|r| {
                r["credential"]
                    .as_str()
                    .is_some_and(|n| n.contains(&c.name))
            })
            .unwrap_or_else(|| panic!("auth check lists no row for {}: {checks:?}", c.name));
        let refused = c.tenant_id == woodgrove;
        assert_eq!(row["ok"], !refused, "{row}");
        if refused {
            let detail = row["detail"].as_str().unwrap();
            assert!(detail.contains("AADSTS65001"), "{detail}");
            assert!(detail.contains("tenants consent"), "{detail}");
        }
    }
}

#[test]
fn a_create_batch_whose_reply_was_lost_is_not_duplicated() {
    create_reply_not_read(FaultKind::DropAfterWrite, 0);
}

#[test]
fn a_create_batch_whose_200_reply_is_not_json_is_verified_not_failed() {
    // A gateway's page in place of Halo's reply: the records landed, the reply says nothing readable.
    create_reply_not_read(
        FaultKind::ReplyBody("<html><body>Request processed</body></html>".into()),
        200,
    );
}

#[test]
fn a_create_batch_whose_reply_is_cut_short_is_verified_not_failed() {
    create_reply_not_read(FaultKind::TruncatedReply, 200);
}

/// A create batch lands but its reply cannot be read (`kind`, logged with `status`): the run reads Halo
/// again to see what landed, sends none of it again, and ends cleanly; a rerun has nothing to write.
fn create_reply_not_read(kind: FaultKind, status: u16) {
    let env = Env::new(&clean());
    let plan = json_of(&env.run(&["-o", "json", "diff"]).stdout);
    let creates: Vec<String> = plan["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["changes"].as_array().unwrap().iter())
        .filter(|c| c["module"] == "users" && c["action"] == "create")
        .map(|c| c["source_key"].as_str().unwrap().to_lowercase())
        .collect();
    assert!(creates.len() >= 2, "{creates:?}");

    env.em
        .inject(Fault::new(Api::Halo, "/api/Users", kind).method("POST"));
    let sync = env.run(&["-o", "json", "sync"]);
    // SPEC 8: the same run reads Halo again to see what landed, so it ends cleanly.
    assert_eq!(sync.status.code(), Some(0), "{}", text(&sync.stderr));
    let reqs = env.em.requests();
    let dropped_at = reqs
        .iter()
        .position(|r| r.api == Api::Halo && r.method == "POST" && r.path == "/api/Users")
        .expect("the faulty write");
    assert_eq!(reqs[dropped_at].status, status);
    let sent = reqs[dropped_at]
        .body
        .as_ref()
        .and_then(Value::as_array)
        .unwrap();
    let lost: Vec<String> = sent
        .iter()
        .filter(|r| r.get("id").is_none())
        .filter_map(|r| r["azureoid"].as_str().map(str::to_lowercase))
        .collect();
    assert!(
        !lost.is_empty(),
        "the dropped batch held no create: {sent:?}"
    );
    assert!(
        reqs[dropped_at + 1..]
            .iter()
            .any(|r| r.api == Api::Halo && r.method == "GET" && r.path == "/api/Users"),
        "Halo was not read again after the lost reply"
    );
    // No create of the lost batch was sent a second time.
    let resent = reqs[dropped_at + 1..]
        .iter()
        .filter(|r| r.api == Api::Halo && r.method == "POST")
        .filter_map(|r| r.body.as_ref())
        .flat_map(|b| b.as_array().cloned().unwrap_or_else(|| vec![b.clone()]))
        .filter(|r| {
            r.get("id").is_none()
                && r["azureoid"]
                    .as_str()
                    .is_some_and(|o| lost.contains(&o.to_lowercase()))
        })
        .count();
    assert_eq!(resent, 0, "a create whose reply was lost was sent again");

    let by_oid = assert_no_duplicate_oids(&env);
    for oid in &creates {
        assert_eq!(by_oid.get(oid), Some(&1), "{oid} after the run");
    }
    // A rerun has nothing left to write.
    let posts = env.halo_posts();
    let again = env.run(&["-o", "json", "sync"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert_eq!(env.halo_posts(), posts, "the rerun wrote to Halo");
    assert_no_duplicate_oids(&env);
    let diff = env.run(&["-o", "json", "diff", "--detailed-exitcode"]);
    assert_eq!(diff.status.code(), Some(0), "{}", text(&diff.stdout));
}

#[test]
fn json_logs_are_one_object_per_line() {
    let env = Env::new(&estate::ConfigOptions::default());
    env.em
        .inject(Fault::new(Api::Halo, "/api/Client", too_many(Some("1"))));
    let out = env.run(&["-v", "-o", "json", "--log-format", "json", "diff"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 3, "{stderr}");
    for line in &lines {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON object ({e}): {line}"));
        assert!(v.is_object(), "{line}");
        assert!(v["level"].is_string(), "{line}");
        assert!(
            v["message"].is_string() || v["fields"]["message"].is_string(),
            "{line}"
        );
    }
    assert!(stderr.contains("throttled (429)"), "{stderr}");
    assert!(stderr.contains("AADSTS65001"), "{stderr}");
}

/// The longest run of ASCII letters and digits (the emulator's access and refresh tokens are 60+).
fn longest_alnum_run(s: &str) -> usize {
    s.split(|c: char| !c.is_ascii_alphanumeric())
        .map(str::len)
        .max()
        .unwrap_or(0)
}

#[test]
fn no_secret_or_token_in_output_of_a_run_with_retries() {
    let env = Env::new(&clean());
    for f in [
        Fault::new(Api::Login, "/oauth2/v2.0/token", too_many(Some("1"))),
        Fault::new(Api::Login, "/oauth2/v2.0/token", FaultKind::Status(503)),
        Fault::new(
            Api::Login,
            "/oauth2/v2.0/token",
            FaultKind::DropBeforeResponse,
        ),
        Fault::new(Api::Halo, "/auth/token", FaultKind::Status(503)),
        Fault::new(Api::Halo, "/auth/token", too_many(None)),
        Fault::new(Api::Graph, "/users/delta", too_many(Some("0.5"))),
        Fault::new(Api::Graph, "/users/delta", FaultKind::Status(503)),
        Fault::new(
            Api::PartnerCenter,
            "/customers",
            FaultKind::DropBeforeResponse,
        ),
        Fault::new(Api::Halo, "/api/Users", FaultKind::DropAfterWrite).method("POST"),
        Fault::new(Api::Halo, "/api/SoftwareLicence", FaultKind::Status(503)).method("POST"),
    ] {
        env.em.inject(f);
    }
    let mut all = String::new();
    for args in [
        &["-vvv", "-o", "json", "sync"][..],
        &["-vvv", "--log-format", "json", "-o", "json", "sync"][..],
    ] {
        let out = env.run(args);
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{}",
            text(&out.stderr)
        );
        all.push_str(&text(&out.stdout));
        all.push_str(&text(&out.stderr));
    }
    let retried = env
        .em
        .requests()
        .iter()
        .filter(|r| r.status == 0 || r.status == 429 || r.status == 503)
        .count();
    assert!(retried >= 10, "only {retried} faults were hit");
    assert!(all.contains("retrying"), "no retry was logged");
    let sc = env.em.scenario();
    for secret in [
        sc.partner_center_app.client_secret.as_str(),
        sc.partner_center_app.refresh_token.as_str(),
        sc.graph_app.client_secret.as_str(),
        sc.halo_app.client_secret.as_str(),
    ] {
        assert!(!all.contains(secret), "a secret appeared in the output");
    }
    let lower = all.to_lowercase();
    for word in [
        "authorization:",
        "\"authorization\"",
        "bearer ",
        "access_token\":\"",
        "client_secret=",
    ] {
        assert!(!lower.contains(word), "{word} appeared in the output");
    }
    assert!(
        longest_alnum_run(&all) < 60,
        "something token-like appeared in the output"
    );
}
