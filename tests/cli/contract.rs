//! `[users] contract_mode = "flag"` against the emulator: everyone in scope is synced, `covered_by_contract`
//! says who holds a contract SKU, a licence change flips exactly that user, a rerun writes nothing, and
//! nobody is deactivated for it.

use csp_sync_emulator::Api;
use serde_json::{Value, json};

use crate::estate::ConfigOptions;
use crate::support::{Env, clean, text};

/// Microsoft 365 Business Premium (microsoft-licensing-products.csv), named by its skuId (a tenant's
/// part-number table only knows the SKUs it subscribes to).
const SPB: &str = "cbdc14ab-d96c-4c30-b9f4-6ada7cdc1d46";

fn opts(mode: &str) -> ConfigOptions {
    ConfigOptions {
        modules: vec!["users"],
        extra: vec![(
            "[users]",
            format!(
                "exclude_upn = ['^admin@', '^svc-']\ncontract_skus = [\"{SPB}\"]\ncontract_mode = \"{mode}\""
            ),
        )],
        ..clean()
    }
}

fn user_posts(env: &Env) -> Vec<Value> {
    env.em
        .requests()
        .iter()
        .filter(|r| r.api == Api::Halo && r.method == "POST" && r.path == "/api/Users")
        .flat_map(|r| match r.body.clone() {
            Some(Value::Array(a)) => a,
            Some(v) => vec![v],
            None => vec![],
        })
        .collect()
}

/// (azureoid, covered_by_contract, inactive) of every linked Halo user.
fn linked(env: &Env) -> Vec<(String, Value, bool)> {
    env.em.with_state(|s| {
        s.halo_records("Users")
            .iter()
            .filter_map(|u| {
                let oid = u["azureoid"].as_str().filter(|o| !o.is_empty())?;
                Some((
                    oid.to_lowercase(),
                    u["covered_by_contract"].clone(),
                    u["inactive"] == json!(true),
                ))
            })
            .collect()
    })
}

/// Whether the Entra user `oid` (any tenant) holds Business Premium.
fn holds_spb(env: &Env, oid: &str) -> bool {
    env.em.with_state(|s| {
        s.customers
            .iter()
            .flat_map(|c| &c.users)
            .find(|u| {
                u["id"]
                    .as_str()
                    .is_some_and(|i| i.eq_ignore_ascii_case(oid))
            })
            .unwrap_or_else(|| panic!("no Entra user {oid}"))["assignedLicenses"]
            .to_string()
            .contains(SPB)
    })
}

fn run_ok(env: &Env, args: &[&str]) -> std::process::Output {
    let out = env.run(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

#[test]
fn flag_mode_flags_holders_flips_on_a_licence_change_and_deactivates_nobody() {
    let env = Env::new(&opts("flag"));
    let scope = Env::new(&opts("scope"));
    // Scope mode: nobody in Fabrikam holds Business Premium, so its linked user's deactivation is held
    // back by the empty-source guard (exit 3).
    let out = scope.run(&["-o", "json", "sync"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let out = run_ok(&env, &["-o", "json", "sync"]);
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let notes = plan["tenants"].to_string();
    assert!(notes.contains("users: contract (flag mode):"), "{notes}");

    // Every linked user carries the flag its licences say; both values occur.
    let users = linked(&env);
    let (mut yes, mut no) = (0, 0);
    for (oid, covered, inactive) in &users {
        assert!(!inactive, "{oid} deactivated");
        let want = holds_spb(&env, oid);
        assert_eq!(covered, &json!(want), "{oid}");
        if want { yes += 1 } else { no += 1 }
    }
    assert!(yes > 0 && no > 0, "{yes} covered, {no} not");
    // Scope mode syncs only the holders (and writes no flag); flag mode syncs the others too.
    let scoped = linked(&scope);
    assert!(scoped.iter().all(|u| u.1.is_null()));
    assert!(
        scoped.len() < users.len(),
        "{} vs {}",
        scoped.len(),
        users.len()
    );
    let created_without_spb = user_posts(&scope)
        .iter()
        .filter(|p| p.get("id").is_none())
        .filter(|p| !holds_spb(&scope, p["azureoid"].as_str().unwrap()))
        .count();
    assert_eq!(created_without_spb, 0);

    // A rerun writes nothing.
    let posts = user_posts(&env).len();
    run_ok(&env, &["-o", "json", "sync"]);
    assert_eq!(user_posts(&env).len(), posts, "the rerun wrote");

    // One user not covered gets Business Premium: exactly that user flips, nobody is deactivated.
    let (oid, _, _) = users
        .iter()
        .find(|(o, _, _)| !holds_spb(&env, o))
        .unwrap()
        .clone();
    env.em.with_state(|s| {
        for c in &mut s.customers {
            for u in &mut c.users {
                if u["id"]
                    .as_str()
                    .is_some_and(|i| i.eq_ignore_ascii_case(&oid))
                {
                    u["assignedLicenses"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"skuId": SPB, "disabledPlans": []}));
                }
            }
        }
    });
    let before = user_posts(&env).len();
    run_ok(&env, &["-o", "json", "sync"]);
    let new: Vec<Value> = user_posts(&env).into_iter().skip(before).collect();
    assert_eq!(new.len(), 1, "{new:?}");
    let id = env.em.with_state(|s| {
        s.halo_records("Users")
            .iter()
            .find(|u| {
                u["azureoid"]
                    .as_str()
                    .is_some_and(|o| o.eq_ignore_ascii_case(&oid))
            })
            .unwrap()["id"]
            .clone()
    });
    assert_eq!(new[0]["id"], id);
    assert_eq!(new[0]["covered_by_contract"], json!(true));
    assert!(new[0].get("inactive").is_none(), "{:?}", new[0]);
    assert!(linked(&env).iter().all(|u| !u.2));
}

#[test]
fn the_flag_can_go_to_a_user_custom_field_read_back_with_include_custom_fields() {
    let mut o = opts("flag");
    o.extra.push(("[users]", "contract_field = 12".into()));
    let env = Env::new(&o);
    run_ok(&env, &["-o", "json", "sync"]);
    let users: Vec<(String, Value)> = env.em.with_state(|s| {
        s.halo_records("Users")
            .iter()
            .filter_map(|u| {
                let oid = u["azureoid"].as_str().filter(|o| !o.is_empty())?;
                Some((oid.to_lowercase(), u.clone()))
            })
            .collect()
    });
    let (mut yes, mut no) = (0, 0);
    for (oid, u) in &users {
        let want = holds_spb(&env, oid);
        assert_eq!(
            u["customfields"],
            json!([{"id": 12, "value": want}]),
            "{oid}: {u}"
        );
        assert!(
            u.get("covered_by_contract").is_none_or(Value::is_null),
            "{u}"
        );
        if want { yes += 1 } else { no += 1 }
    }
    assert!(yes > 0 && no > 0);
    let asked = env.em.requests().iter().any(|r| {
        r.api == Api::Halo
            && r.method == "GET"
            && r.path == "/api/Users"
            && r.query.contains("include_custom_fields=12")
    });
    assert!(
        asked,
        "the user list was not read with include_custom_fields=12"
    );
    // Read back, the field is in step: a rerun writes nothing.
    let posts = user_posts(&env).len();
    run_ok(&env, &["-o", "json", "sync"]);
    assert_eq!(user_posts(&env).len(), posts);
}
