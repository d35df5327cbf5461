//! `csp-sync tenants health`: each customer's GDAP relationships (read from Graph with the partner-tenant
//! token): status, roles against what the configured modules need (reference 3.10), end date and
//! auto-extend; and whether a Graph token can be had in the customer tenant.
//!
//! Flags: no active relationship, a relationship ending within [`ENDING_DAYS`] days, a module with none of
//! the roles that let it read, a recommended role missing, a token that fails (with its AADSTS cause).
//! Exit 1 when a token fails (a tenant that cannot be synced, SPEC section 3); the other flags are
//! warnings and exit 0. The JSON is meant for monitoring.

use anyhow::Result;
use serde::Serialize;

use crate::auth::TokenSource;
use crate::commands::run;
use crate::config::Config;
use crate::context::{self, Apis};
use crate::error::Exit;
use crate::model::Customer;
use crate::plan::Module;
use crate::render::{Format, Grid};
use crate::secrets::Secrets;
use crate::ui::Ui;

/// Relationships ending within this many days are flagged.
pub const ENDING_DAYS: i64 = 30;

/// GDAP role template ids (reference 1.6) and their names.
pub const ROLES: &[(&str, &str)] = &[
    (
        "62e90394-69f5-4237-9190-012177145e10",
        "Global Administrator",
    ),
    ("88d8e3e3-8f55-4a1e-953a-9b9898b8876b", "Directory Readers"),
    ("f2ef992c-3afb-46b9-b7cf-a126ee74c451", "Global Reader"),
    ("fe930be7-5e62-47db-91af-98c3a49a38b1", "User Administrator"),
    (
        "4d6ac14f-3453-41d0-bef9-a3e0c569773a",
        "License Administrator",
    ),
    (
        "3a2c62db-5318-420d-8d74-23affee5d9d5",
        "Intune Administrator",
    ),
    (
        "e8611ab8-c189-46e8-94e1-60213ab1f814",
        "Privileged Role Administrator",
    ),
    (
        "158c047a-c907-4556-b7ef-446551a6b5f7",
        "Cloud Application Administrator",
    ),
    (
        "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3",
        "Application Administrator",
    ),
];

const GLOBAL_ADMIN: &str = "Global Administrator";

/// The name of a role template id (the id itself when unknown).
pub fn role_name(id: &str) -> String {
    ROLES
        .iter()
        .find(|(r, _)| r.eq_ignore_ascii_case(id.trim()))
        .map_or_else(|| id.to_string(), |(_, n)| (*n).to_string())
}

/// What a need is for, the roles any one of which lets it work (reference 3.10; Global Administrator
/// always does), and the role csp-sync recommends granting for it (least privilege for that data).
pub struct Need {
    pub what: &'static str,
    pub sufficient: &'static [&'static str],
    pub recommended: &'static str,
}

/// The GDAP needs of the modules of a run, and of `tenants consent` (always).
pub fn needs(modules: &[Module]) -> Vec<Need> {
    let mut out = Vec::new();
    if modules.contains(&Module::Users) {
        out.push(Need {
            what: "users",
            sufficient: &["Directory Readers", "Global Reader", "User Administrator"],
            recommended: "Directory Readers",
        });
    }
    if modules.contains(&Module::Licences) {
        out.push(Need {
            what: "licences",
            sufficient: &[
                "Directory Readers",
                "Global Reader",
                "License Administrator",
            ],
            recommended: "License Administrator",
        });
    }
    if modules.contains(&Module::Assets) {
        // Whether Global Reader alone suffices for Intune reads is not documented [reference 3.10: L].
        out.push(Need {
            what: "assets",
            sufficient: &["Intune Administrator"],
            recommended: "Intune Administrator",
        });
    }
    out.push(Need {
        what: "tenants consent",
        sufficient: &[
            "Privileged Role Administrator",
            "Cloud Application Administrator",
        ],
        recommended: "Cloud Application Administrator",
    });
    out
}

#[derive(Debug, Serialize)]
pub struct RelationshipRow {
    pub id: String,
    pub display_name: Option<String>,
    pub status: String,
    pub end_date_time: Option<String>,
    /// Whole days from now to the end (negative once ended).
    pub days_left: Option<i64>,
    /// `autoExtendDuration`; `None` or `PT0S` means no auto-extend.
    pub auto_extend: Option<String>,
    pub roles: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct TokenCheck {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aadsts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct HealthRow {
    pub customer_id: String,
    pub name: String,
    /// `mapped`, `unmapped` or `skipped`.
    pub mapping: &'static str,
    pub relationships: Vec<RelationshipRow>,
    pub token: TokenCheck,
    /// Empty when healthy.
    pub flags: Vec<String>,
    /// The flags that keep a module from reading with delegated access (no active relationship, no role
    /// for a module); a subset of `flags`, for `doctor`.
    #[serde(skip)]
    pub gdap_gaps: Vec<String>,
    /// The recommended roles missing, by name (a subset of what `flags` says), for `doctor`.
    #[serde(skip)]
    pub missing_recommended: Vec<String>,
}

fn auto_extends(d: Option<&str>) -> bool {
    d.is_some_and(|d| {
        let d = d.trim().to_ascii_uppercase();
        !d.is_empty() && d != "PT0S" && d != "P0D"
    })
}

fn days_until(end: &str, now: jiff::Timestamp) -> Option<i64> {
    let end: jiff::Timestamp = end.trim().parse().ok()?;
    Some(
        end.as_second()
            .saturating_sub(now.as_second())
            .div_euclid(86_400),
    )
}

/// The health of every Partner Center customer in `customers`, sorted by name: its GDAP relationships,
/// their flags, and (for mapped and unmapped customers) whether a Graph token can be had there.
pub async fn health_rows(
    config: &Config,
    apis: &Apis,
    customers: &[Customer],
    now: jiff::Timestamp,
) -> Result<Vec<HealthRow>> {
    let relationships = apis.graph.delegated_admin_relationships().await.map_err(|e| {
        anyhow::anyhow!(
            "reading the GDAP relationships (Graph tenantRelationships/delegatedAdminRelationships in the partner \
             tenant; the Graph app needs DelegatedAdminRelationship.Read.All): {e}"
        )
    })?;
    let mut rows = Vec::new();
    for c in customers {
        let entry = config.tenant(&c.id);
        let mapping = match entry {
            Some(e) if e.skip => "skipped",
            Some(e) if e.halo_client_id.is_some() => "mapped",
            _ => "unmapped",
        };
        let tenant = if c.tenant_id.trim().is_empty() {
            c.id.clone()
        } else {
            c.tenant_id.clone()
        };
        let mine: Vec<RelationshipRow> = relationships
            .iter()
            .filter(|r| {
                r.customer.tenant_id.as_deref().is_some_and(|t| {
                    t.eq_ignore_ascii_case(&tenant) || t.eq_ignore_ascii_case(&c.id)
                })
            })
            .map(|r| RelationshipRow {
                id: r.id.clone(),
                display_name: r.display_name.clone(),
                status: r.status.clone().unwrap_or_default(),
                end_date_time: r.end_date_time.clone(),
                days_left: r.end_date_time.as_deref().and_then(|e| days_until(e, now)),
                auto_extend: r.auto_extend_duration.clone(),
                roles: r
                    .access_details
                    .unified_roles
                    .iter()
                    .map(|u| role_name(&u.role_definition_id))
                    .collect(),
            })
            .collect();
        let mut flags = Vec::new();
        let mut gdap_gaps = Vec::new();
        let mut missing_recommended = Vec::new();
        let active: Vec<&RelationshipRow> = mine
            .iter()
            .filter(|r| {
                r.status.eq_ignore_ascii_case("active") && r.days_left.is_none_or(|d| d >= 0)
            })
            .collect();
        if active.is_empty() {
            let flag = if mine.is_empty() {
                "no GDAP relationship".to_string()
            } else {
                format!(
                    "no active GDAP relationship ({})",
                    mine.iter()
                        .map(|r| r.status.clone())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            gdap_gaps.push(flag.clone());
            flags.push(flag);
        }
        for r in &active {
            if let Some(d) = r.days_left
                && d <= ENDING_DAYS
            {
                flags.push(format!(
                    "GDAP relationship {} ends in {d} days ({}){}",
                    r.display_name.as_deref().unwrap_or(&r.id),
                    r.end_date_time.as_deref().unwrap_or_default(),
                    if auto_extends(r.auto_extend.as_deref()) {
                        format!(
                            ", auto-extends by {}",
                            crate::render::duration_words(
                                r.auto_extend.as_deref().unwrap_or_default()
                            )
                        )
                    } else {
                        ", no auto-extend: renew it in Partner Center".to_string()
                    }
                ));
            }
        }
        if !active.is_empty() {
            let roles: Vec<&str> = active
                .iter()
                .flat_map(|r| r.roles.iter().map(String::as_str))
                .collect();
            let modules: Vec<Module> = entry
                .and_then(|e| e.modules.clone())
                .unwrap_or_else(|| config.sync.modules.clone());
            if !roles.contains(&GLOBAL_ADMIN) {
                for need in needs(&modules) {
                    if !need.sufficient.iter().any(|s| roles.contains(s)) {
                        let flag = format!(
                            "no GDAP role for {}: needs one of {}",
                            need.what,
                            need.sufficient.join(", ")
                        );
                        gdap_gaps.push(flag.clone());
                        flags.push(flag);
                    } else if !roles.contains(&need.recommended) {
                        missing_recommended.push(need.recommended.to_string());
                        flags.push(format!(
                            "missing GDAP role {} (recommended for {})",
                            need.recommended, need.what
                        ));
                    }
                }
            }
        }
        let token = if mapping == "skipped" {
            TokenCheck {
                ok: true,
                aadsts: None,
                error: None,
            }
        } else {
            match apis
                .creds
                .token(&TokenSource::GraphCustomer(tenant.clone()))
                .await
            {
                Ok(_) => TokenCheck {
                    ok: true,
                    aadsts: None,
                    error: None,
                },
                Err(e) => {
                    let (cause, _) = e.explain();
                    flags.push(format!(
                        "Graph token fails{}: {cause}",
                        e.code.map(|c| format!(" (AADSTS{c})")).unwrap_or_default()
                    ));
                    TokenCheck {
                        ok: false,
                        aadsts: e.code,
                        error: Some(e.to_string()),
                    }
                }
            }
        };
        rows.push(HealthRow {
            customer_id: c.id.clone(),
            name: c.company_name.clone(),
            mapping,
            relationships: mine,
            token,
            flags,
            gdap_gaps,
            missing_recommended,
        });
    }
    rows.sort_by_key(|r| r.name.to_lowercase());
    Ok(rows)
}

pub async fn run(config: &Config, ui: &Ui) -> Result<Exit> {
    let now = context::now()?;
    let apis = Apis::new(config, Secrets::from_env())?;
    let customers = run::read_customers(&apis).await?;
    let rows = health_rows(config, &apis, &customers, now).await?;
    let flagged = rows.iter().filter(|r| !r.flags.is_empty()).count();
    let token_failures = rows.iter().filter(|r| !r.token.ok).count();
    match ui.format {
        Format::Json => ui.out_json(&serde_json::json!({
            "version": 1,
            "generated_at": now.to_string(),
            "flagged": flagged,
            "token_failures": token_failures,
            "tenants": rows,
        })),
        f => {
            let mut g = Grid::new([
                "customer",
                "mapping",
                "GDAP status",
                "ends",
                "auto-extend",
                "roles",
                "flags",
            ]);
            for r in &rows {
                let rel = |f: &dyn Fn(&RelationshipRow) -> String| {
                    r.relationships.iter().map(f).collect::<Vec<_>>().join("\n")
                };
                g.push([
                    r.name.clone(),
                    r.mapping.to_string(),
                    rel(&|x| x.status.clone()),
                    rel(&|x| {
                        let date = x.end_date_time.as_deref().unwrap_or_default();
                        let date = date.get(..10).unwrap_or(date);
                        match x.days_left {
                            Some(d) => format!("{date} ({d} days)"),
                            None => date.to_string(),
                        }
                    }),
                    rel(&|x| {
                        if auto_extends(x.auto_extend.as_deref()) {
                            format!(
                                "auto-extends by {}",
                                crate::render::duration_words(
                                    x.auto_extend.as_deref().unwrap_or_default()
                                )
                            )
                        } else {
                            "no".into()
                        }
                    }),
                    rel(&|x| x.roles.join(", ")),
                    if r.flags.is_empty() {
                        "ok".to_string()
                    } else {
                        r.flags.join("\n")
                    },
                ]);
            }
            ui.out(&g.render(f));
        }
    }
    ui.info(&format!(
        "csp-sync: {}, {flagged} flagged, {}",
        crate::render::count(rows.len(), "customer", "customers"),
        crate::render::count(token_failures, "token failure", "token failures")
    ));
    for w in apis.take_warnings() {
        ui.warn(&w);
    }
    Ok(if token_failures > 0 {
        Exit::Error
    } else {
        Exit::Ok
    })
}
