//! `csp-sync tenants map` without options: walks the unmapped customers one by one (stdin and stderr must
//! be terminals). For each: the best candidates with their evidence, "search all clients" (ranked by
//! [`crate::plan::tenants::fuzzy_search`] as the filter is typed), "create a new client" (only when chosen,
//! after a confirmation), "skip" (`skip = true`), "decide later" and "stop". Each answer is written to the
//! config at once, so stopping (or Ctrl-C) keeps what was decided.

use std::fmt::{self, Write as _};
use std::io::IsTerminal as _;

use anyhow::{Result, bail};
use inquire::{Confirm, InquireError, Select};

use crate::api::halo::WriteKind;
use crate::api::value_to_i64;
use crate::commands::tenants_map::{Written, check_and_write, mapping_state, show_written};
use crate::config::{Config, MappingEdit};
use crate::context::Apis;
use crate::error::Exit;
use crate::model::{Customer, HaloClient};
use crate::plan::tenants::{self, Candidate, MappingState};
use crate::secrets::Secrets;
use crate::ui::Ui;

/// How many candidates are offered directly.
const CANDIDATES_SHOWN: usize = 5;

enum Choice {
    Client(i64, String),
    Search,
    Create,
    Skip,
    Later,
    Stop,
}

struct Item {
    label: String,
    choice: Choice,
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

fn candidate_label(c: &Candidate) -> String {
    let mut label = format!(
        "{} (#{}): {:?} by {}",
        c.halo_client_name,
        c.halo_client_id,
        c.confidence,
        c.evidence
            .iter()
            .map(tenants::Evidence::describe)
            .collect::<Vec<_>>()
            .join(", ")
    )
    .replace("Exact", "exact")
    .replace("Likely", "likely")
    .replace("Weak", "weak");
    if c.inactive {
        label.push_str(" [inactive]");
    }
    if let Some(o) = &c.already_mapped_to {
        let _ = write!(label, " [already mapped to {o}]");
    }
    label
}

/// `None` when the person cancelled (Esc): treated as "decide later".
fn answer<T>(r: Result<T, InquireError>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(InquireError::OperationCanceled) => Ok(None),
        Err(InquireError::OperationInterrupted) => {
            bail!("interrupted; the answers given so far are saved")
        }
        Err(e) => bail!("cannot prompt: {e}"),
    }
}

struct ClientItem<'a>(&'a HaloClient);

impl fmt::Display for ClientItem<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (#{})", self.0.name, self.0.id)?;
        if self.0.inactive {
            f.write_str(" [inactive]")?;
        }
        Ok(())
    }
}

fn search(clients: &[HaloClient], company: &str) -> Result<Option<(i64, String)>> {
    let mut sorted: Vec<&HaloClient> = clients.iter().collect();
    sorted.sort_by_key(|c| (c.name.to_lowercase(), c.id));
    let items: Vec<ClientItem> = sorted.into_iter().map(ClientItem).collect();
    // The filter ranks by fuzzy_search's score; an empty filter shows every client by name.
    let scorer = |input: &str, item: &ClientItem, _: &str, _: usize| -> Option<i64> {
        if input.trim().is_empty() {
            return Some(0);
        }
        tenants::fuzzy_search(input, std::slice::from_ref(item.0), 1)
            .first()
            .filter(|(_, _, s)| *s >= 0.7)
            .map(|(_, _, s)| (s * 1000.0) as i64)
    };
    let prompt = format!("Search the Halo clients for {company} (type to filter, Esc to go back):");
    let picked = answer(
        Select::new(&prompt, items)
            .with_scorer(&scorer)
            .with_page_size(10)
            .prompt(),
    )?;
    Ok(picked.map(|c| (c.0.id, c.0.name.clone())))
}

async fn create_client(
    config: &Config,
    ui: &Ui,
    apis: &Apis,
    customer: &Customer,
    clients: &[HaloClient],
) -> Result<Option<(i64, String)>> {
    let auto = tenants::plan_auto_create(
        std::slice::from_ref(customer),
        clients,
        &MappingState::default(),
    );
    let Some(change) = auto.creates.first().and_then(|p| p.changes.first()) else {
        // A client already carries the tenant id: offer it instead of a duplicate.
        if let Some((_, id)) = auto.adopt.first() {
            let name = clients
                .iter()
                .find(|c| c.id == *id)
                .map(|c| c.name.clone())
                .unwrap_or_default();
            ui.say(&format!(
                "Halo client {name} (#{id}) already carries this tenant id; mapping it instead."
            ));
            return Ok(Some((*id, name)));
        }
        bail!(
            "{}: no client can be created (the tenant id is on several Halo clients)",
            customer.company_name
        );
    };
    for note in auto.creates.iter().flat_map(|p| &p.notes) {
        ui.say(&format!("note: {note}"));
    }
    let ok = answer(
        Confirm::new(&format!("Create the Halo client {:?}?", change.label))
            .with_default(false)
            .prompt(),
    )?;
    if ok != Some(true) {
        return Ok(None);
    }
    let created = apis
        .halo
        .post(
            "Client",
            &[change.payload(config.halo.fire_automations)],
            WriteKind::Create,
        )
        .await
        .map_err(|e| anyhow::anyhow!("creating the Halo client {}: {e}", change.label))?;
    let id = created
        .first()
        .and_then(|r| r.get("id"))
        .and_then(value_to_i64)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "Halo created the client {} but gave back no id; run `csp-sync tenants map` again: the client \
                 carries the tenant id and is offered first",
                change.label
            )
        })?;
    Ok(Some((id, change.label.clone())))
}

pub async fn run(config: &Config, ui: &Ui) -> Result<Exit> {
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        bail!(
            "interactive `tenants map` needs a terminal on stdin and stderr; in scripts use `csp-sync tenants \
             map --suggest [--accept-exact]` or `csp-sync tenants map --customer ID (--client HALO_ID [--site ID] \
             | --skip)`"
        );
    }
    let apis = Apis::new(config, Secrets::from_env())?;
    let (customers, mut clients, suggestions) =
        super::tenants_map::suggestions(config, &apis).await?;
    let mut mapping = mapping_state(config);
    let mut written: Vec<Written> = Vec::new();
    let total = suggestions.len();
    if total == 0 {
        ui.info("csp-sync: every customer is mapped or skipped; nothing to do");
    }
    'customers: for (n, s) in suggestions.iter().enumerate() {
        let Some(customer) = customers.iter().find(|c| c.id == s.customer_id) else {
            continue;
        };
        loop {
            let mut items: Vec<Item> = s
                .candidates
                .iter()
                .take(CANDIDATES_SHOWN)
                .map(|c| Item {
                    label: format!("Map to {}", candidate_label(c)),
                    choice: Choice::Client(c.halo_client_id, c.halo_client_name.clone()),
                })
                .collect();
            items.extend([
                Item {
                    label: "Search all clients".into(),
                    choice: Choice::Search,
                },
                Item {
                    label: format!("Create a new Halo client named {:?}", customer.company_name),
                    choice: Choice::Create,
                },
                Item {
                    label: "Skip: never sync this customer (skip = true)".into(),
                    choice: Choice::Skip,
                },
                Item {
                    label: "Decide later".into(),
                    choice: Choice::Later,
                },
                Item {
                    label: "Stop".into(),
                    choice: Choice::Stop,
                },
            ]);
            let mut help = format!("{} of {total}; customer id {}", n + 1, customer.id);
            if let Some(w) = &s.why_not {
                let _ = write!(help, "; {w}");
            }
            let prompt = format!("{} ({}):", customer.company_name, customer.domain);
            let Some(picked) = answer(
                Select::new(&prompt, items)
                    .with_help_message(&help)
                    .without_filtering()
                    .with_page_size(12)
                    .prompt(),
            )?
            else {
                continue 'customers;
            };
            let target = match picked.choice {
                Choice::Client(id, name) => Some((id, name)),
                Choice::Search => match search(&clients, &customer.company_name)? {
                    Some(t) => Some(t),
                    None => continue,
                },
                Choice::Create => match create_client(config, ui, &apis, customer, &clients).await?
                {
                    Some((id, name)) => {
                        if !clients.iter().any(|c| c.id == id) {
                            clients.push(HaloClient {
                                id,
                                name: name.clone(),
                                ..HaloClient::default()
                            });
                        }
                        Some((id, name))
                    }
                    None => continue,
                },
                Choice::Skip => None,
                Choice::Later => continue 'customers,
                Choice::Stop => break 'customers,
            };
            let edit = match &target {
                Some((id, _)) => MappingEdit::Client {
                    halo_client_id: *id,
                    halo_site_id: None,
                },
                None => MappingEdit::Skip,
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
                    if let Some((id, name)) = &target {
                        mapping.mapped.insert(customer.id.clone(), *id);
                        ui.say(&format!(
                            "{} -> {name} (#{id}), saved.",
                            customer.company_name
                        ));
                    } else {
                        mapping.skipped.insert(customer.id.clone());
                        ui.say(&format!("{} skipped, saved.", customer.company_name));
                    }
                    written.push(w);
                    continue 'customers;
                }
                // A refused choice (the client is taken): say why and ask again.
                Err(e) => ui.warn(&crate::app::chain(&e)),
            }
        }
    }
    show_written(ui, &written)?;
    ui.info(&format!(
        "csp-sync: {} of {} decided and saved in {}",
        written.len(),
        crate::render::count(total, "unmapped customer", "unmapped customers"),
        config.path.display()
    ));
    for w in apis.take_warnings() {
        ui.warn(&w);
    }
    Ok(Exit::Ok)
}
