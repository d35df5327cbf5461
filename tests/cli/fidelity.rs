//! Halo as it really answers (SPEC 7, "What a read returns"): the emulator's lists carry only their
//! `*_List` schema fields, so these runs decide from what a list read returns. Fields the user list lacks
//! (`department`, `azure_tenant_id`) are written once and then only when Entra changes; an older Halo
//! without `azureoid` on the list; a field Halo does not keep; two tenants on one client; tokens that die
//! long before `expires_in` says.

use csp_sync_emulator::{Api, Fault, FaultKind};
use serde_json::{Value, json};

use crate::estate::ConfigOptions;
use crate::support::{self, Env, clean, posted, run_ok, text};

const CONTOSO: &str = "c0a7b1d2-3e4f-4a5b-8c6d-7e8f9a0b1c2d";
const FABRIKAM: &str = "f4b1c2d3-8e7a-4c6b-9d5e-2a3b4c5d6e7f";

fn opts() -> ConfigOptions {
    ConfigOptions {
        modules: vec!["users"],
        extra: vec![("[users]", "exclude_upn = ['^admin@', '^svc-']".into())],
        ..clean()
    }
}

fn halo_user(env: &Env, id: i64) -> Value {
    env.em
        .with_state(|s| s.halo_record("Users", id).cloned())
        .unwrap_or_else(|| panic!("no Halo user {id}"))
}

/// `(email, azureoid, inactive, client)` of every Halo user, sorted: the end state of a users sync.
fn end_state(env: &Env) -> Vec<(String, String, bool, i64)> {
    let mut v: Vec<_> = env.em.with_state(|s| {
        s.halo_records("Users")
            .iter()
            .map(|u| {
                (
                    u["emailaddress"]
                        .as_str()
                        .unwrap_or_default()
                        .to_lowercase(),
                    u["azureoid"].as_str().unwrap_or_default().to_string(),
                    u["inactive"] == json!(true),
                    u["client_id"].as_i64().unwrap_or_default(),
                )
            })
            .collect()
    });
    v.sort();
    v
}

#[test]
fn a_department_change_in_entra_is_written_once() {
    let env = Env::new(&opts());
    run_ok(&env, &["sync"]);
    run_ok(&env, &["sync"]);
    env.em.clear_requests();
    env.em.with_state(|s| {
        assert!(s.update_user(CONTOSO, "bob.jones@contoso.co.uk", |u| {
            u["department"] = json!("Finance");
        }));
    });
    run_ok(&env, &["sync"]);
    let writes = posted(&env, "/api/Users");
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0]["id"], json!(1002));
    assert_eq!(writes[0]["department"], json!("Finance"));
    assert!(writes[0].get("name").is_none(), "{writes:?}");
    assert_eq!(halo_user(&env, 1002)["department"], json!("Finance"));
    env.em.clear_requests();
    run_ok(&env, &["sync"]);
    assert_eq!(env.halo_posts(), 0, "the department was written again");
}

#[test]
fn a_contact_linked_by_halos_integration_gets_its_listless_fields_once_and_a_lost_state_rewrites_them_once()
 {
    let env = Env::new(&opts());
    env.em.with_state(|s| {
        assert!(s.update_user(FABRIKAM, "megan.bowen@fabrikam.com", |u| {
            u["department"] = json!("Marketing");
        }));
    });
    run_ok(&env, &["sync"]);
    let megan: Vec<Value> = posted(&env, "/api/Users")
        .into_iter()
        .filter(|r| r["id"] == json!(1301))
        .collect();
    assert_eq!(megan.len(), 1, "{megan:?}");
    assert_eq!(megan[0]["department"], json!("Marketing"));
    assert_eq!(megan[0]["azure_tenant_id"], json!(FABRIKAM));
    env.em.clear_requests();
    run_ok(&env, &["sync"]);
    assert_eq!(env.halo_posts(), 0, "written again on the second sync");

    // A lost state: the list-less fields are rewritten once, with the values Entra has, and nothing else.
    let before = end_state(&env);
    std::fs::remove_file(env.dir.path().join("state/halo-memory.json")).unwrap();
    env.em.clear_requests();
    run_ok(&env, &["sync"]);
    let rewritten = posted(&env, "/api/Users");
    assert!(!rewritten.is_empty());
    for r in &rewritten {
        assert!(r["id"].is_i64(), "a lost state created a contact: {r}");
        let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
        assert!(
            keys.iter().all(|k| [
                "id",
                "azure_tenant_id",
                "department",
                "_dont_fire_automations"
            ]
            .contains(&k.as_str())),
            "a lost state changed more than the list-less fields: {r}"
        );
    }
    assert_eq!(end_state(&env), before);
    env.em.clear_requests();
    run_ok(&env, &["sync"]);
    assert_eq!(env.halo_posts(), 0);
}

#[test]
fn two_tenants_on_one_client_deactivate_a_leaver_only_once_both_were_read() {
    let mut sc = support::small();
    let northwind = sc
        .customer_named("Northwind Traders")
        .unwrap()
        .tenant_id
        .clone();
    sc.tenant_mut(&northwind).halo_client_id = Some(101);
    let leaver = sc
        .customer(&northwind)
        .unwrap()
        .users
        .iter()
        .find(|u| {
            u["assignedLicenses"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        })
        .unwrap()["userPrincipalName"]
        .as_str()
        .unwrap()
        .to_string();
    let env = Env::with(
        sc,
        &ConfigOptions {
            only: Some(vec!["Contoso Ltd".into(), "Northwind Traders".into()]),
            ..opts()
        },
    );
    run_ok(&env, &["sync"]);
    let linked = |env: &Env| -> Value {
        env.em.with_state(|s| {
            s.halo_records("Users")
                .iter()
                .find(|u| {
                    u["emailaddress"]
                        .as_str()
                        .is_some_and(|e| e.eq_ignore_ascii_case(&leaver))
                })
                .cloned()
                .unwrap()
        })
    };
    let contact = linked(&env);
    assert_eq!(contact["client_id"], json!(101));
    assert_eq!(contact["inactive"], json!(false));

    // The user leaves; Northwind's directory cannot be read and csp-sync's memory is lost: the contact
    // could belong to either tenant of the client, so nobody is deactivated.
    env.em.with_state(|s| {
        assert!(s.purge_user(&northwind, &leaver));
        s.set_consent(&northwind, false);
    });
    std::fs::remove_file(env.dir.path().join("state/halo-memory.json")).unwrap();
    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(
        linked(&env)["inactive"],
        json!(false),
        "deactivated on a partial read"
    );

    // Both tenants read: deactivated, once.
    env.em.with_state(|s| s.set_consent(&northwind, true));
    env.em.clear_requests();
    run_ok(&env, &["sync"]);
    assert_eq!(linked(&env)["inactive"], json!(true));
    let deactivations: Vec<Value> = posted(&env, "/api/Users")
        .into_iter()
        .filter(|r| r["inactive"] == json!(true))
        .collect();
    assert_eq!(deactivations.len(), 1, "{deactivations:?}");
}

#[test]
fn an_older_halo_without_azureoid_on_the_list_is_read_by_id_once() {
    let mut sc = support::small();
    sc.set_halo_list_azureoid(false);
    // Where reports are not allowed (with reports, one report reads them: `report_reads`).
    sc.settings.halo_reports_forbidden = true;
    let env = Env::with(sc, &opts());
    let out = run_ok(&env, &["sync"]);
    let err = text(&out.stderr);
    assert!(
        err.contains("no `azureoid`") && err.contains("one by one"),
        "{err}"
    );
    let by_id = |env: &Env| {
        env.em
            .requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.starts_with("/api/Users/"))
            .count()
    };
    assert!(by_id(&env) > 100, "users were not read by id");
    // The same end state as a current Halo.
    let current = Env::new(&opts());
    run_ok(&current, &["sync"]);
    assert_eq!(end_state(&env), end_state(&current));
    // Later runs read by id only users that are new since (none here) and write nothing.
    env.em.clear_requests();
    let out = run_ok(&env, &["sync"]);
    assert_eq!(by_id(&env), 0, "{}", text(&out.stderr));
    assert_eq!(env.halo_posts(), 0);
    // A contact added in Halo is read by id on the next run.
    env.em.with_state(|s| {
        let mut u = s.halo_record("Users", 1100).cloned().unwrap();
        u["id"] = json!(5000);
        u["emailaddress"] = json!("new.contact@contoso.co.uk");
        s.halo_records_mut("Users").push(u);
    });
    env.em.clear_requests();
    run_ok(&env, &["sync"]);
    assert_eq!(by_id(&env), 1);
}

#[test]
fn a_field_halo_does_not_keep_is_reported_once_and_not_rewritten() {
    let mut sc = support::small();
    sc.halo_unkept("Users", "title");
    let env = Env::with(sc, &opts());
    run_ok(&env, &["sync"]);
    env.em.with_state(|s| {
        assert!(s.update_user(CONTOSO, "bob.jones@contoso.co.uk", |u| {
            u["jobTitle"] = json!("Finance Director");
        }));
    });
    env.em.clear_requests();
    let out = run_ok(&env, &["sync"]);
    let err = text(&out.stderr);
    assert!(err.contains("did not keep `title`"), "{err}");
    assert_eq!(posted(&env, "/api/Users").len(), 1);
    env.em.clear_requests();
    let out = run_ok(&env, &["sync"]);
    assert_eq!(env.halo_posts(), 0, "rewritten: {}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("did not keep"));
}

#[test]
fn a_licence_whose_subscription_id_halo_does_not_keep_is_never_created_twice() {
    let mut sc = support::small();
    sc.halo_unkept("SoftwareLicence", "third_party_product");
    let env = Env::with(
        sc,
        &ConfigOptions {
            modules: vec!["licences"],
            ..clean()
        },
    );
    run_ok(&env, &["sync"]);
    let count = |env: &Env| {
        env.em
            .with_state(|s| s.halo_records("SoftwareLicence").len())
    };
    let after_first = count(&env);
    env.em.clear_requests();
    run_ok(&env, &["sync"]);
    assert_eq!(count(&env), after_first, "licences created again");
    assert_eq!(
        env.halo_posts(),
        0,
        "{:?}",
        posted(&env, "/api/SoftwareLicence")
    );
    // Without the memory, the licences are found again by tenant, SKU, billing cycle and term.
    std::fs::remove_file(env.dir.path().join("state/halo-memory.json")).unwrap();
    env.em.clear_requests();
    let out = env.run(&["sync"]);
    assert_eq!(count(&env), after_first, "{}", text(&out.stderr));
    let creates: Vec<Value> = posted(&env, "/api/SoftwareLicence")
        .into_iter()
        .filter(|r| r.get("id").is_none())
        .collect();
    assert!(creates.is_empty(), "{creates:?}");
}

#[test]
fn halo_tokens_dying_during_long_retry_waits_are_renewed_and_the_sync_ends_as_a_clean_one() {
    let clean_env = Env::new(&opts());
    run_ok(&clean_env, &["sync"]);

    let mut sc = support::small();
    // Tokens stop working after 2 s while `expires_in` still says an hour.
    sc.set_halo_token_dies_after(Some(2));
    let env = Env::with(sc, &opts());
    // The first user read waits out two 429s of Retry-After 900 s (0.9 s at the tests' retry scale) and a
    // slow answer: its token has died, 401. Renewed, the request waits out three more 429s and dies again
    // before it gets through: renewed once per token, not once per request, it succeeds.
    let throttle = || FaultKind::TooManyRequests {
        retry_after: Some("900".into()),
    };
    let slow = |ms| FaultKind::Latency(std::time::Duration::from_millis(ms));
    for kind in [
        throttle(),
        throttle(),
        slow(1500),
        throttle(),
        throttle(),
        throttle(),
        slow(10),
    ] {
        env.em
            .inject(Fault::new(Api::Halo, "/api/Users?", kind).method("GET"));
    }
    let out = env.run(&["sync"]);
    let log: Vec<(String, u16)> = env
        .em
        .requests()
        .iter()
        .filter(|r| r.api == Api::Halo)
        .map(|r| (format!("{} {}", r.method, r.path), r.status))
        .collect();
    assert_eq!(out.status.code(), Some(0), "{}\n{log:?}", text(&out.stderr));
    let refused = env
        .em
        .requests()
        .iter()
        .filter(|r| r.api == Api::Halo && r.status == 401)
        .count();
    assert!(refused >= 2, "the tokens did not die: {log:?}");
    assert_eq!(end_state(&env), end_state(&clean_env));
}
