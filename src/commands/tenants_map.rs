//! `csp-sync tenants map`: map Partner Center customers to Halo clients and write the config.
//!
//! - `--customer ID --client HALO_ID [--site ID]` / `--customer ID --skip`: one scripted decision, checked
//!   against Partner Center and Halo before the config is rewritten (comments and layout kept);
//! - `--suggest [--accept-exact]`: evidence-based suggestions ([`crate::plan::tenants::suggest`]), and
//!   optionally the unambiguous ones written;

use std::collections::BTreeMap;

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
    let (clients, site_ids) = match edit {
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
    let written = check_and_write(
        &config.path,
        customer,
        edit,
        &clients,
        &mapping_state(config),
        site_ids.as_deref(),
        &customers,
    )?;
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
            let decision = if s.auto_accept == Some(c.halo_client_id) {
                "accept (unambiguous)".to_string()
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
            let Some(client_id) = s.auto_accept else {
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
                    ui.warn(&format!(
                        "{}: {}",
                        customer.company_name,
                        crate::app::chain(&e)
                    ));
                    exit = Exit::Error;
                }
            }
        }
    }
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
    let unambiguous = suggestions
        .iter()
        .filter(|s| s.auto_accept.is_some())
        .count();
    ui.info(&format!(
        "csp-sync: {} unmapped customers, {unambiguous} unambiguous{}",
        suggestions.len(),
        if accept_exact {
            format!("; {} written to {}", written.len(), config.path.display())
        } else if unambiguous > 0 {
            "; write them with --accept-exact".to_string()
        } else {
            String::new()
        }
    ));
    for w in apis.take_warnings() {
        ui.warn(&w);
    }
    Ok(exit)
}
