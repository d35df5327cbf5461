//! `csp-sync tenants map`: map Partner Center customers to Halo clients and write the config.
//!
//! - `--customer ID --client HALO_ID [--site ID]` / `--customer ID --skip`: one scripted decision, checked
//!   against Partner Center and Halo before the config is rewritten (comments and layout kept);
//! - `--suggest [--accept-exact]`: evidence-based suggestions ([`crate::plan::tenants::suggest`]), and
//!   optionally the unambiguous ones written;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Result, bail};
use futures_util::StreamExt;
use futures_util::stream;
use serde::Serialize;

use crate::cli::MapMode;
use crate::commands::run;
use crate::config::{self, Config, MappingEdit};
use crate::context::Apis;
use crate::engine::{self, HaloNeeds};
use crate::error::Exit;
use crate::model::{Customer, HaloClient};
use crate::plan::tenants::{self, Confidence, MappingState, Suggestion};
use crate::render::{Format, Grid};
use crate::secrets::Secrets;
use crate::ui::Ui;

/// One mapping written to the config (also the JSON shape of `tenants map` results).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Written {
    pub customer_id: String,
    pub name: String,
    /// `mapped` or `skipped`.
    pub mapping: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub halo_client_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub halo_client_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub halo_site_id: Option<i64>,
}

#[derive(Serialize)]
struct WrittenDoc<'a> {
    version: u32,
    written: &'a [Written],
}

#[derive(Serialize)]
struct SuggestDoc<'a> {
    version: u32,
    suggestions: &'a [Suggestion],
    #[serde(skip_serializing_if = "Option::is_none")]
    written: Option<&'a [Written]>,
}

/// The mapping state of the config file, for the planner.
pub fn mapping_state(config: &Config) -> MappingState {
    let mut state = MappingState::default();
    for t in &config.tenants {
        if t.skip {
            state.skipped.insert(t.customer_id.clone());
        } else if let Some(id) = t.halo_client_id {
            state.mapped.insert(t.customer_id.clone(), id);
        }
    }
    state
}

/// Every Halo client (inactive included, with their `azure_tenants`).
pub async fn read_clients(apis: &Apis) -> Result<Vec<HaloClient>> {
    let halo = engine::read_halo(apis, HaloNeeds::for_modules(&[])).await?;
    Ok(halo.clients)
}

/// The verified domains of each customer, read from Graph `organization` in its tenant, `concurrency`
/// tenants at a time. A customer whose token or read fails is left out (it is compared on its Partner
/// Center domain only); the failure is logged at info level.
pub async fn verified_domains(
    apis: &Apis,
    customers: &[&Customer],
    concurrency: usize,
) -> BTreeMap<String, Vec<String>> {
    stream::iter(customers.iter())
        .map(|c| async move {
            let tenant = if c.tenant_id.trim().is_empty() {
                &c.id
            } else {
                &c.tenant_id
            };
            match apis.graph.organization(tenant).await {
                Ok(org) => Some((c.id.clone(), org.domains())),
                Err(e) => {
                    tracing::info!(customer = %c.id, "verified domains not readable: {e}");
                    None
                }
            }
        })
        .buffer_unordered(concurrency.max(1))
        .filter_map(|x| async move { x })
        .collect()
        .await
}

/// The customers neither mapped nor skipped in the config.
pub fn open_customers<'a>(config: &Config, customers: &'a [Customer]) -> Vec<&'a Customer> {
    customers
        .iter()
        .filter(|c| {
            config
                .tenant(&c.id)
                .is_none_or(|t| !t.skip && t.halo_client_id.is_none())
        })
        .collect()
}

/// Checks one decision against Partner Center and Halo and against the config, and writes it.
/// `clients`: every Halo client; `site_ids`: the client's sites, when a site was given; `customers` name
/// the customer a client is already mapped to.
pub fn check_and_write(
    config_path: &std::path::Path,
    customer: &Customer,
    edit: MappingEdit,
    clients: &[HaloClient],
    mapping: &MappingState,
    site_ids: Option<&[i64]>,
    customers: &[Customer],
) -> Result<Written> {
    let mut written = Written {
        customer_id: customer.id.clone(),
        name: customer.company_name.clone(),
        mapping: "skipped",
        halo_client_id: None,
        halo_client_name: None,
        halo_site_id: None,
    };
    if let MappingEdit::Client {
        halo_client_id,
        halo_site_id,
    } = edit
    {
        let Some(client) = clients.iter().find(|c| c.id == halo_client_id) else {
            bail!(
                "Halo has no client with id {halo_client_id}; nothing was written (`csp-sync tenants list` and \
                 `csp-sync tenants map --suggest` show the clients)"
            );
        };
        if let Some((other, _)) = mapping
            .mapped
            .iter()
            .find(|(cust, id)| **id == halo_client_id && !cust.eq_ignore_ascii_case(&customer.id))
        {
            let other_name = customers
                .iter()
                .find(|c| c.id.eq_ignore_ascii_case(other))
                .map_or_else(
                    || other.clone(),
                    |c| format!("{} ({other})", c.company_name),
                );
            bail!(
                "Halo client {} ({halo_client_id}) is already mapped to customer {other_name} in {}; nothing \
                 was written (map that customer elsewhere first, or choose another client)",
                client.name,
                config_path.display()
            );
        }
        if let (Some(site), Some(ids)) = (halo_site_id, site_ids)
            && !ids.contains(&site)
        {
            bail!(
                "Halo site {site} does not belong to client {} ({halo_client_id}); nothing was written \
                 (leave out --site to use the client's main site)",
                client.name
            );
        }
        written.mapping = "mapped";
        written.halo_client_id = Some(halo_client_id);
        written.halo_client_name = Some(client.name.clone());
        written.halo_site_id = halo_site_id;
    }
    config::write_mapping(config_path, &customer.id, &customer.company_name, edit)?;
    Ok(written)
}

/// What a scripted decision changes that its author may not have meant: a customer that was already
/// mapped elsewhere (or skipped) is remapped, or the client's `azure_tenants` names other tenants than this
/// customer's. SPEC 2 has no flag to force a mapping, so these are warnings beside the write, not refusals.
pub fn mapping_warnings(
    customer: &Customer,
    edit: MappingEdit,
    clients: &[HaloClient],
    mapping: &MappingState,
    customers: &[Customer],
) -> Vec<String> {
    let mut out = Vec::new();
    let client_label = |id: i64| {
        clients
            .iter()
            .find(|c| c.id == id)
            .map_or_else(|| format!("#{id}"), |c| format!("{} (#{id})", c.name))
    };
    let before = mapping
        .mapped
        .iter()
        .find(|(cust, _)| cust.eq_ignore_ascii_case(&customer.id))
        .map(|(_, id)| *id);
    let was_skipped = mapping
        .skipped
        .iter()
        .any(|c| c.eq_ignore_ascii_case(&customer.id));
    match (edit, before) {
        (MappingEdit::Client { halo_client_id, .. }, Some(old)) if old != halo_client_id => {
            out.push(format!(
                "{} was mapped to Halo client {}; it now maps to {}. Its users, licences and assets \
                 already in {} stay there (csp-sync never moves or deletes them); the next sync creates \
                 or links them in the new client. To put it back: `csp-sync tenants map --customer {} \
                 --client {old}`",
                customer.company_name,
                client_label(old),
                client_label(halo_client_id),
                client_label(old),
                customer.id
            ));
        }
        (MappingEdit::Skip, Some(old)) => out.push(format!(
            "{} was mapped to Halo client {}; it is now skipped, so csp-sync stops syncing it (its records \
             in Halo stay as they are). To sync it again: `csp-sync tenants map --customer {} --client {old}`",
            customer.company_name,
            client_label(old),
            customer.id
        )),
        (MappingEdit::Client { halo_client_id, .. }, None) if was_skipped => out.push(format!(
            "{} was skipped; it now maps to {} and is synced from the next run",
            customer.company_name,
            client_label(halo_client_id)
        )),
        _ => {}
    }
    if let MappingEdit::Client { halo_client_id, .. } = edit
        && let Some(client) = clients.iter().find(|c| c.id == halo_client_id)
    {
        let own = [customer.id.as_str(), customer.tenant_id.as_str()];
        let others: Vec<String> = client
            .azure_tenant_ids
            .iter()
            .filter(|t| !own.iter().any(|o| o.eq_ignore_ascii_case(t)))
            .map(|t| {
                customers
                    .iter()
                    .find(|c| c.id.eq_ignore_ascii_case(t) || c.tenant_id.eq_ignore_ascii_case(t))
                    .map_or_else(|| t.clone(), |c| format!("{t} ({})", c.company_name))
            })
            .collect();
        if !others.is_empty() {
            out.push(format!(
                "Halo client {} lists the Azure tenant {} in its azure_tenants, not {}'s ({}); check that \
                 it is the right client, and map {} elsewhere with `csp-sync tenants map --customer {} \
                 --client HALO_ID` if it is not",
                client_label(halo_client_id),
                others.join(", "),
                customer.company_name,
                customer.id,
                customer.company_name,
                customer.id
            ));
        }
    }
    out
}

/// Prints the mappings written.
pub fn show_written(ui: &Ui, written: &[Written]) -> Result<()> {
    match ui.format {
        Format::Json => ui.out_json(&WrittenDoc {
            version: 1,
            written,
        }),
        f => ui.out(&written_grid(written).render(f)),
    }
    Ok(())
}

fn written_grid(written: &[Written]) -> Grid {
    let mut g = Grid::new(["customer", "customer id", "mapping", "Halo client", "site"]);
    for w in written {
        g.push([
            w.name.clone(),
            w.customer_id.clone(),
            w.mapping.to_string(),
            match (&w.halo_client_name, w.halo_client_id) {
                (Some(n), Some(id)) => format!("{n} (#{id})"),
                _ => String::new(),
            },
            w.halo_site_id.map(|s| s.to_string()).unwrap_or_default(),
        ]);
    }
    g
}

pub async fn run(config: &Config, ui: &Ui, mode: &MapMode) -> Result<Exit> {
    match mode {
        MapMode::Set { customer_id, edit } => run_set(config, ui, customer_id, *edit).await,
        MapMode::Suggest { accept_exact } => run_suggest(config, ui, *accept_exact).await,
        MapMode::Interactive => super::tenants_map_interactive::run(config, ui).await,
    }
}

async fn run_set(config: &Config, ui: &Ui, customer_id: &str, edit: MappingEdit) -> Result<Exit> {
    let apis = Apis::new(config, Secrets::from_env())?;
    let customers = run::read_customers(&apis).await?;
    let Some(customer) = customers
        .iter()
        .find(|c| c.id.eq_ignore_ascii_case(customer_id))
    else {
        bail!(
            "Partner Center has no customer {customer_id}; nothing was written (`csp-sync tenants list` shows the customers)"
        );
    };
    let mapped_now = config
        .tenant(&customer.id)
        .is_some_and(|t| t.halo_client_id.is_some() && !t.skip);
    let (clients, site_ids) = match edit {
        // The clients only name the one a mapped customer leaves.
        MappingEdit::Skip if mapped_now => (read_clients(&apis).await?, None),
        MappingEdit::Skip => (Vec::new(), None),
        MappingEdit::Client {
            halo_client_id,
            halo_site_id,
        } => {
            let clients = read_clients(&apis).await?;
            let sites = if halo_site_id.is_some() {
                let id = halo_client_id.to_string();
                let records = apis
                    .halo
                    .list(
                        "Site",
                        "sites",
                        &[("client_id", id.as_str()), ("includeinactive", "true")],
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("reading the sites of Halo client {id}: {e}"))?;
                Some(
                    records
                        .iter()
                        .filter(|s| {
                            s.get("client_id").and_then(crate::api::value_to_i64)
                                == Some(halo_client_id)
                        })
                        .filter_map(|s| s.get("id").and_then(crate::api::value_to_i64))
                        .collect::<Vec<i64>>(),
                )
            } else {
                None
            };
            (clients, sites)
        }
    };
    let mapping = mapping_state(config);
    let written = check_and_write(
        &config.path,
        customer,
        edit,
        &clients,
        &mapping,
        site_ids.as_deref(),
        &customers,
    )?;
    for w in mapping_warnings(customer, edit, &clients, &mapping, &customers) {
        ui.warn(&w);
    }
    show_written(ui, std::slice::from_ref(&written))?;
    ui.info(&format!(
        "csp-sync: {} {} in {}",
        written.name,
        match &written.halo_client_name {
            Some(n) => format!("mapped to {n}"),
            None => "marked skip".into(),
        },
        config.path.display()
    ));
    for w in apis.take_warnings() {
        ui.warn(&w);
    }
    Ok(Exit::Ok)
}

/// The line after the suggestions: how many, how many exact, and with `--accept-exact` what was written
/// and who is left for a person (by name, with the command that maps them).
fn suggest_summary(
    config: &Config,
    suggestions: &[Suggestion],
    written: Option<&[Written]>,
) -> String {
    let exact = suggestions.iter().filter(|s| s.accept_exact).count();
    let by_name = suggestions
        .iter()
        .filter(|s| s.auto_accept.is_some() && !s.accept_exact)
        .count();
    let mut line = format!(
        "csp-sync: {}, {exact} with exact evidence (tenant id or verified domain){}",
        crate::render::count(suggestions.len(), "unmapped customer", "unmapped customers"),
        if by_name > 0 {
            format!(", {by_name} by name only")
        } else {
            String::new()
        }
    );
    match written {
        Some(written) => {
            let _ = write!(
                line,
                "; {} written to {}",
                written.len(),
                config.path.display()
            );
            let left: Vec<&str> = suggestions
                .iter()
                .filter(|s| !written.iter().any(|w| w.customer_id == s.customer_id))
                .map(|s| s.customer_name.as_str())
                .collect();
            if !left.is_empty() {
                let _ = write!(
                    line,
                    "; left for you: {} (map with `csp-sync tenants map`, or `--customer ID --client \
                     HALO_ID` / `--skip`)",
                    left.join(", ")
                );
            }
        }
        None if exact > 0 => line.push_str("; write the exact ones with --accept-exact"),
        None => {}
    }
    line
}

/// Reads what suggestions need and computes them.
pub async fn suggestions(
    config: &Config,
    apis: &Apis,
) -> Result<(Vec<Customer>, Vec<HaloClient>, Vec<Suggestion>)> {
    let customers = run::read_customers(apis).await?;
    let mut clients = read_clients(apis).await?;
    let open = open_customers(config, &customers);
    let domains = verified_domains(apis, &open, config.sync.concurrency).await;
    let mapped = mapping_state(config).mapped.values().copied().collect();
    for note in crate::client_evidence::add_email_domains(apis, &mut clients, &mapped).await? {
        tracing::warn!("{note}");
    }
    let suggestions = tenants::suggest(&customers, &domains, &clients, &mapping_state(config));
    Ok((customers, clients, suggestions))
}

fn confidence_word(c: Confidence) -> &'static str {
    match c {
        Confidence::Exact => "exact",
        Confidence::Likely => "likely",
        Confidence::Weak => "weak",
    }
}

fn suggestions_grid(suggestions: &[Suggestion]) -> Grid {
    let mut g = Grid::new([
        "customer",
        "Halo client",
        "confidence",
        "evidence",
        "decision",
    ]);
    for s in suggestions {
        if s.candidates.is_empty() {
            g.push([
                s.customer_name.clone(),
                String::new(),
                String::new(),
                String::new(),
                s.why_not.clone().unwrap_or_default(),
            ]);
        }
        for (i, c) in s.candidates.iter().enumerate() {
            let mut flags = Vec::new();
            if c.inactive {
                flags.push("inactive".to_string());
            }
            if let Some(o) = &c.already_mapped_to {
                flags.push(format!("mapped to {o}"));
            }
            let decision = if s.auto_accept == Some(c.halo_client_id) && s.accept_exact {
                "accept (unambiguous)".to_string()
            } else if s.auto_accept == Some(c.halo_client_id) {
                "name only: --accept-exact leaves it to you".to_string()
            } else if i == 0 {
                s.why_not.clone().unwrap_or_default()
            } else {
                String::new()
            };
            g.push([
                if i == 0 {
                    s.customer_name.clone()
                } else {
                    String::new()
                },
                format!(
                    "{} (#{}){}",
                    c.halo_client_name,
                    c.halo_client_id,
                    if flags.is_empty() {
                        String::new()
                    } else {
                        format!(" [{}]", flags.join(", "))
                    }
                ),
                confidence_word(c.confidence).to_string(),
                c.evidence
                    .iter()
                    .map(tenants::Evidence::describe)
                    .collect::<Vec<_>>()
                    .join(", "),
                decision,
            ]);
        }
    }
    g
}

async fn run_suggest(config: &Config, ui: &Ui, accept_exact: bool) -> Result<Exit> {
    let apis = Apis::new(config, Secrets::from_env())?;
    let (customers, clients, suggestions) = suggestions(config, &apis).await?;
    let mut written = Vec::new();
    let mut exit = Exit::Ok;
    if accept_exact {
        // The mapping grows as suggestions are written, so a client is never given to two customers.
        let mut mapping = mapping_state(config);
        for s in &suggestions {
            let Some(client_id) = s.auto_accept.filter(|_| s.accept_exact) else {
                continue;
            };
            let Some(customer) = customers.iter().find(|c| c.id == s.customer_id) else {
                continue;
            };
            let edit = MappingEdit::Client {
                halo_client_id: client_id,
                halo_site_id: None,
            };
            match check_and_write(
                &config.path,
                customer,
                edit,
                &clients,
                &mapping,
                None,
                &customers,
            ) {
                Ok(w) => {
                    mapping.mapped.insert(customer.id.clone(), client_id);
                    written.push(w);
                }
                Err(e) => {
                    ui.error(&format!(
                        "{}: {}",
                        customer.company_name,
                        crate::app::chain(&e)
                    ));
                    exit = Exit::Error;
                }
            }
        }
    }
    if suggestions.is_empty() && ui.format != Format::Json {
        ui.info(&format!(
            "csp-sync: every Partner Center customer is mapped or skipped in {}; nothing to suggest \
             (`csp-sync tenants list` shows the mappings)",
            config.path.display()
        ));
    } else {
        match ui.format {
            Format::Json => ui.out_json(&SuggestDoc {
                version: 1,
                suggestions: &suggestions,
                written: accept_exact.then_some(written.as_slice()),
            }),
            f => {
                ui.out(&suggestions_grid(&suggestions).render(f));
                if accept_exact && !written.is_empty() {
                    ui.out("\n");
                    ui.out(&written_grid(&written).render(f));
                }
            }
        }
        ui.info(&suggest_summary(
            config,
            &suggestions,
            accept_exact.then_some(&written[..]),
        ));
    }
    for w in apis.take_warnings() {
        ui.warn(&w);
    }
    Ok(exit)
}
