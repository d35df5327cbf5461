//! The fault matrix (SPEC sections 8 and 10): one case per kind of trouble, each injected into a fresh
//! emulator, synced, then synced again until nothing is left; each must end in exactly the Halo state of a
//! clean run, with no duplicate record, no lost one, and no create re-sent without Halo read in between
//! (`converge::blind_resends`). One matrix for users and licences, one for assets and billing. Single faults
//! already covered with their own assertions live in `faults.rs` (retries of reads, lost replies, a refused
//! tenant); here the point is the end state under a mix.

use std::time::Duration;

use csp_sync_emulator::{Api, Fault, FaultKind, State};
use serde_json::{Value, json};

use crate::converge::{
    Background, assert_converged, blind_resends, clean_end_state_after, duplicates,
    sync_until_clean, wait_for_arrival,
};
use crate::estate::ConfigOptions;
use crate::support::{self, Env, clean, text};

fn too_many(retry_after: Option<&str>) -> FaultKind {
    FaultKind::TooManyRequests {
        retry_after: retry_after.map(str::to_string),
    }
}

fn post(api: Api, path: &str, kind: FaultKind) -> Fault {
    Fault::new(api, path, kind).method("POST")
}

fn get(api: Api, path: &str, kind: FaultKind) -> Fault {
    Fault::new(api, path, kind).method("GET")
}

const HTML: &str = "<html><head><title>502 Bad Gateway</title></head><body>upstream</body></html>";

/// One case: faults queued before the first run, optional changes to the emulator before it and before the
/// reruns, and environment variables of the first run.
struct Case {
    name: &'static str,
    faults: Vec<Fault>,
    setup: Option<fn(&Env)>,
    before_rerun: Option<fn(&Env)>,
    vars: Vec<(&'static str, &'static str)>,
    /// The first run must exit with one of these codes.
    first_exit: &'static [i32],
    /// The first run is killed (SIGKILL) once a Halo POST to this path has arrived.
    kill_at: Option<&'static str>,
}

impl Case {
    fn new(name: &'static str, faults: Vec<Fault>) -> Case {
        Case {
            name,
            faults,
            setup: None,
            before_rerun: None,
            vars: Vec::new(),
            first_exit: &[0],
            kill_at: None,
        }
    }
}

fn fabrikam(s: &mut State) -> String {
    s.customer_named("Fabrikam Inc").unwrap().tenant_id.clone()
}

fn cases() -> Vec<Case> {
    use Api::{Graph, Halo, Login, PartnerCenter};
    vec![
        Case::new(
            "429 storm on Halo (reads and writes, with and without Retry-After)",
            vec![
                Fault::new(Halo, "/api/", too_many(None)).times(6),
                post(Halo, "/api/Users", too_many(Some("1"))).times(3),
                post(Halo, "/api/SoftwareLicence", too_many(None)).times(2),
                Fault::new(Halo, "/auth/token", too_many(None)).times(2),
            ],
        ),
        Case::new(
            "429 storm on Graph and Partner Center and the token endpoint",
            vec![
                get(Graph, "/users/delta", too_many(Some("0.2"))).times(4),
                get(Graph, "/subscribedSkus", too_many(Some("1"))).times(2),
                get(PartnerCenter, "/subscriptions", too_many(Some("1"))).times(3),
                get(PartnerCenter, "/customers", too_many(Some("1"))).times(2),
                post(Login, "/oauth2/v2.0/token", too_many(Some("1"))).times(2),
            ],
        ),
        Case::new(
            "5xx on each API, creates included",
            vec![
                get(Halo, "/api/Users", FaultKind::Status(500)).times(2),
                post(Halo, "/api/Users", FaultKind::Status(503)),
                post(Halo, "/api/SoftwareLicence", FaultKind::Status(502)),
                get(Graph, "/users/delta", FaultKind::Status(503)).times(2),
                get(Graph, "/subscribedSkus", FaultKind::Status(504)),
                get(PartnerCenter, "/subscriptions", FaultKind::Status(500)),
                post(Login, "/oauth2/v2.0/token", FaultKind::Status(503)),
                post(Halo, "/auth/token", FaultKind::Status(500)),
            ],
        ),
        Case {
            vars: vec![("CSP_SYNC_HTTP_TIMEOUT", "2")],
            ..Case::new(
                "timeouts: reads held past the timeout, a create that never landed, one that landed",
                vec![
                    get(
                        Graph,
                        "/users/delta",
                        FaultKind::Latency(Duration::from_secs(4)),
                    ),
                    get(
                        Halo,
                        "/api/Site",
                        FaultKind::Latency(Duration::from_secs(4)),
                    ),
                    post(
                        Halo,
                        "/api/Users",
                        FaultKind::Latency(Duration::from_secs(4)),
                    ),
                    post(
                        Halo,
                        "/api/SoftwareLicence",
                        FaultKind::SlowReply(Duration::from_secs(4)),
                    ),
                ],
            )
        },
        Case::new(
            "connections dropped before the reply",
            vec![
                post(Halo, "/api/Users", FaultKind::DropBeforeResponse),
                post(Halo, "/api/SoftwareLicence", FaultKind::DropBeforeResponse),
                get(Graph, "/users/delta", FaultKind::DropBeforeResponse),
                get(PartnerCenter, "/customers", FaultKind::DropBeforeResponse),
                get(Halo, "/api/Client", FaultKind::DropBeforeResponse),
            ],
        ),
        Case::new(
            "connections dropped after the write landed (creates and updates)",
            vec![
                post(Halo, "/api/Users", FaultKind::DropAfterWrite).times(2),
                post(Halo, "/api/SoftwareLicence", FaultKind::DropAfterWrite),
            ],
        ),
        Case::new(
            "tokens refused as expired mid-run (401 once per API)",
            vec![
                post(Halo, "/api/Users", FaultKind::Status(401)),
                get(Halo, "/api/SoftwareLicence", FaultKind::Status(401)),
                get(Graph, "/users/delta", FaultKind::Status(401)),
                get(PartnerCenter, "/subscriptions", FaultKind::Status(401)),
            ],
        ),
        Case {
            setup: Some(|env| env.em.with_state(|s| s.set_token_lifetime(2))),
            ..Case::new(
                "tokens expiring for real mid-run (2 s lifetime, requests held past it)",
                vec![
                    get(
                        Halo,
                        "/api/Users",
                        FaultKind::Latency(Duration::from_secs(3)),
                    ),
                    get(
                        Graph,
                        "/users/delta",
                        FaultKind::Latency(Duration::from_secs(3)),
                    ),
                    post(
                        Halo,
                        "/api/SoftwareLicence",
                        FaultKind::Latency(Duration::from_secs(3)),
                    ),
                ],
            )
        },
        Case {
            setup: Some(|env| env.em.with_state(|s| s.set_token_lifetime(3))),
            // Real back-off: the Retry-After outlives the token.
            vars: vec![("CSP_SYNC_RETRY_SCALE", "1")],
            ..Case::new(
                "tokens expiring during back-off waits",
                vec![
                    post(Halo, "/api/Users", too_many(Some("4"))),
                    get(Graph, "/users/delta", too_many(Some("4"))),
                ],
            )
        },
        Case {
            first_exit: &[0, 1],
            ..Case::new(
                "malformed JSON (a gateway's HTML page with 200) on reads and on a create",
                vec![
                    get(Halo, "/api/Site", FaultKind::ReplyBody(HTML.into())),
                    get(Graph, "/users/delta", FaultKind::ReplyBody(HTML.into())),
                    get(
                        PartnerCenter,
                        "/subscriptions",
                        FaultKind::ReplyBody(HTML.into()),
                    ),
                    post(
                        Halo,
                        "/api/SoftwareLicence",
                        FaultKind::ReplyBody(HTML.into()),
                    ),
                ],
            )
        },
        Case {
            first_exit: &[0, 1],
            ..Case::new(
                "truncated JSON on reads and on writes",
                vec![
                    get(Halo, "/api/Users", FaultKind::TruncatedReply),
                    get(Graph, "/subscribedSkus", FaultKind::TruncatedReply),
                    post(Halo, "/api/Users", FaultKind::TruncatedReply).times(2),
                    post(Halo, "/api/SoftwareLicence", FaultKind::TruncatedReply),
                ],
            )
        },
        Case {
            setup: Some(|env| {
                // Halo refuses one record of the first create batch (the first contact to create).
                let plan: Value =
                    serde_json::from_slice(&env.run(&["-o", "json", "diff"]).stdout).unwrap();
                let oid = plan["tenants"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|t| t["changes"].as_array().unwrap().iter())
                    .find(|c| c["module"] == "users" && c["action"] == "create")
                    .and_then(|c| c["source_key"].as_str())
                    .unwrap()
                    .to_string();
                env.em
                    .with_state(|s| s.halo_reject("Users", "azureoid", json!(oid)));
            }),
            before_rerun: Some(|env| env.em.with_state(|s| s.settings.halo_rejects.clear())),
            first_exit: &[1],
            ..Case::new("a 400 on one record of a batch", vec![])
        },
        Case {
            setup: Some(|env| {
                env.em.with_state(|s| {
                    let t = fabrikam(s);
                    s.set_consent(&t, false);
                });
            }),
            before_rerun: Some(|env| {
                env.em.with_state(|s| {
                    let t = fabrikam(s);
                    s.set_consent(&t, true);
                });
            }),
            first_exit: &[1],
            ..Case::new(
                "one tenant refusing its token while the others sync",
                vec![],
            )
        },
    ]
}

/// Runs every case against a fresh emulator of `opts`'s estate; returns (faults injected, fired, runs).
/// A clean estate takes `writing` syncs that write; a case may take one rerun more than that.
fn run_matrix(opts: &ConfigOptions, writing: usize, cases: &[Case]) -> (usize, usize, usize) {
    let want = clean_end_state_after(opts, writing);
    let (mut injected, mut fired, mut runs) = (0usize, 0usize, 0usize);
    for case in cases {
        let env = Env::new(opts);
        if let Some(setup) = case.setup {
            setup(&env);
        }
        let queued = case.faults.iter().map(|f| f.times).sum::<usize>();
        injected += queued;
        for f in &case.faults {
            env.em.inject(f.clone());
        }
        let code = if let Some(path) = case.kill_at {
            let mut run = Background::start(&env, &["-o", "json", "sync"], "first");
            wait_for_arrival(&env, Api::Halo, "POST", path);
            run.child.kill().unwrap();
            let _ = run.wait();
            assert!(support::lock_released(&env), "{}", case.name);
            -9
        } else {
            let first = env.run_env(&["-o", "json", "sync"], &case.vars);
            let code = first.status.code().unwrap_or(-1);
            assert!(
                case.first_exit.contains(&code),
                "{}: first run exited {code}: {}",
                case.name,
                text(&first.stderr)
            );
            assert!(!text(&first.stderr).contains("panicked"), "{}", case.name);
            code
        };
        runs += 1;
        let dups = duplicates(&env);
        assert!(
            dups.is_empty(),
            "{}: duplicates after the first run: {dups:?}",
            case.name
        );
        let blind = blind_resends(&env.em.requests());
        assert!(
            blind.is_empty(),
            "{}: creates re-sent blindly in the first run: {blind:#?}",
            case.name
        );
        fired += queued - env.em.pending_faults();
        if let Some(f) = case.before_rerun {
            f(&env);
        }
        let codes = sync_until_clean(&env, writing + 1);
        runs += codes.len();
        assert_eq!(
            codes.last(),
            Some(&Some(0)),
            "{}: reruns {codes:?}",
            case.name
        );
        assert_converged(&env, &want, case.name);
        eprintln!(
            "  {}: first run {code}, then {codes:?}; {} of {queued} faults left unfired",
            case.name,
            env.em.pending_faults(),
        );
    }
    (injected, fired, runs)
}

#[test]
fn every_fault_ends_in_a_clean_runs_halo_with_no_duplicate() {
    let cases = cases();
    let (injected, fired, runs) = run_matrix(&clean(), 1, &cases);
    // The figures the README quotes.
    eprintln!(
        "fault matrix: {} cases, {injected} faults injected, {fired} fired, {runs} runs, 0 duplicates",
        cases.len()
    );
    assert!(
        fired * 10 >= injected * 9,
        "only {fired} of {injected} faults fired"
    );
}

/// Users, assets and billing (users so that assets link to their contacts): Contoso and Fabrikam have three
/// Intune devices each, Litware none; last month's invoice bills Contoso and Fabrikam.
fn assets_and_billing() -> ConfigOptions {
    ConfigOptions {
        modules: vec!["users", "assets", "billing"],
        extra: vec![
            (
                "[assets]",
                "asset_types = { windows = 1, ios = 3, default = 1 }\n\
                 fields = { serialNumber = 2, model = 3, complianceState = 4, lastSyncDateTime = 5 }"
                    .into(),
            ),
            (
                "[billing]",
                "markup_percent = 10.0\nmarkup = { \"Virtual Machines\" = 8.0 }".into(),
            ),
        ],
        ..clean()
    }
}

const DEVICES: &str = "/deviceManagement/managedDevices";
const EXPORT: &str = "/billing/usage/billed/export";
const OPERATION: &str = "/billing/operations/";
const MANIFEST: &str = "/billing/manifests/";
const BLOB: &str = "/billedusagefastpath/";

fn unavailable(retry_after: &str) -> FaultKind {
    FaultKind::StatusWithRetryAfter {
        status: 503,
        retry_after: retry_after.into(),
    }
}

/// A POST whose write lands at once and whose reply is held past any run (the run is killed meanwhile).
fn held_reply(path: &str) -> Fault {
    post(
        Api::Halo,
        path,
        FaultKind::SlowReply(Duration::from_secs(60)),
    )
}

fn assets_and_billing_cases() -> Vec<Case> {
    use Api::{Blob, Graph, Halo};
    vec![
        Case::new(
            "429 on assets and billing: Halo reads and writes, Intune without Retry-After, the export with it",
            vec![
                post(Halo, "/api/Asset", too_many(None)).times(2),
                post(Halo, "/api/Invoice", too_many(Some("1"))),
                get(Halo, "/api/Asset", too_many(None)),
                get(Halo, "/api/Invoice", too_many(Some("1"))),
                get(Graph, DEVICES, too_many(None)).times(3),
                post(Graph, EXPORT, too_many(Some("1"))),
                get(Graph, OPERATION, too_many(Some("0.5"))).times(2),
            ],
        ),
        Case::new(
            "5xx on assets and billing, creates included, with and without Retry-After",
            vec![
                post(Halo, "/api/Asset", FaultKind::Status(503)),
                post(Halo, "/api/Invoice", FaultKind::Status(500)),
                get(Halo, "/api/Asset", FaultKind::Status(502)).times(2),
                get(Halo, "/api/Invoice", FaultKind::Status(500)),
                get(Graph, DEVICES, unavailable("0.5")).times(2),
                get(Graph, DEVICES, FaultKind::Status(504)),
                post(Graph, EXPORT, unavailable("1")),
                get(Graph, OPERATION, FaultKind::Status(500)),
                get(Graph, MANIFEST, FaultKind::Status(503)),
                get(Blob, BLOB, FaultKind::Status(500)),
            ],
        ),
        Case::new(
            "connections dropped after the asset and invoice writes landed",
            vec![
                post(Halo, "/api/Asset", FaultKind::DropAfterWrite).times(2),
                post(Halo, "/api/Invoice", FaultKind::DropAfterWrite),
            ],
        ),
        Case::new(
            "connections dropped before the reply: device, export and Halo reads, asset and invoice creates",
            vec![
                post(Halo, "/api/Asset", FaultKind::DropBeforeResponse),
                post(Halo, "/api/Invoice", FaultKind::DropBeforeResponse),
                get(Halo, "/api/Invoice", FaultKind::DropBeforeResponse),
                get(Graph, DEVICES, FaultKind::DropBeforeResponse),
                get(Graph, OPERATION, FaultKind::DropBeforeResponse),
                get(Blob, BLOB, FaultKind::DropBeforeResponse),
            ],
        ),
        Case {
            first_exit: &[0, 1],
            ..Case::new(
                "unreadable replies: the asset create cut short, a gateway's page for the invoice create and a manifest",
                vec![
                    post(Halo, "/api/Asset", FaultKind::TruncatedReply),
                    post(Halo, "/api/Invoice", FaultKind::ReplyBody(HTML.into())),
                    get(Graph, MANIFEST, FaultKind::TruncatedReply),
                ],
            )
        },
        Case::new(
            "tokens refused as expired mid-run (401 on the asset write, the invoice read, the export poll)",
            vec![
                post(Halo, "/api/Asset", FaultKind::Status(401)),
                get(Halo, "/api/Invoice", FaultKind::Status(401)),
                get(Graph, OPERATION, FaultKind::Status(401)),
            ],
        ),
        Case {
            vars: vec![("CSP_SYNC_HTTP_TIMEOUT", "2")],
            ..Case::new(
                "timeouts: an asset create that never landed, an invoice create that landed, answered late",
                vec![
                    post(
                        Halo,
                        "/api/Asset",
                        FaultKind::Latency(Duration::from_secs(4)),
                    ),
                    post(
                        Halo,
                        "/api/Invoice",
                        FaultKind::SlowReply(Duration::from_secs(4)),
                    ),
                ],
            )
        },
        Case {
            kill_at: Some("/api/Asset"),
            ..Case::new(
                "SIGKILL while the asset create batch has landed but not been answered",
                vec![held_reply("/api/Asset")],
            )
        },
        Case {
            kill_at: Some("/api/Invoice"),
            ..Case::new(
                "SIGKILL while the invoice batch has landed but not been answered (billing state not written)",
                vec![held_reply("/api/Invoice")],
            )
        },
    ]
}

#[test]
fn assets_and_billing_faults_end_in_a_clean_runs_halo_with_no_duplicate() {
    let cases = assets_and_billing_cases();
    // The clean estate takes two writing syncs: the second links the assets to the contacts the first made.
    let (injected, fired, runs) = run_matrix(&assets_and_billing(), 2, &cases);
    eprintln!(
        "assets and billing fault matrix: {} cases, {injected} faults injected, {fired} fired, {runs} runs, 0 duplicates",
        cases.len()
    );
    assert!(
        fired * 10 >= injected * 9,
        "only {fired} of {injected} faults fired"
    );
}
