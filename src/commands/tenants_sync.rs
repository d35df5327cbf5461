//! The config side of the `tenants` sync module (planned in [`crate::modules::tenants`]): after `sync`, a
//! `[[tenant]]` entry for each adopted client and for each client the module created.

use anyhow::Result;

use crate::apply::ApplyReport;
use crate::config::{self, Config, MappingEdit};
use crate::modules::tenants::Adoption;
use crate::plan::{Action, HaloEntity, Module};
use crate::ui::Ui;

/// Writes a `[[tenant]]` entry for each adopted client.
pub fn adopt(config: &Config, ui: &Ui, adoptions: &[Adoption]) -> Result<()> {
    for a in adoptions {
        config::write_mapping(
            &config.path,
            &a.customer_id,
            &a.name,
            MappingEdit::Client {
                halo_client_id: a.halo_client_id,
                halo_site_id: None,
            },
        )?;
        ui.info(&format!(
            "csp-sync: {} mapped to the existing Halo client #{} in {}",
            a.name,
            a.halo_client_id,
            config.path.display()
        ));
    }
    Ok(())
}

/// After applying: a `[[tenant]]` entry for each Halo client the tenants module created. A failure here
/// is an error naming what to do; the next sync adopts the client instead of creating another.
pub fn record_created(config: &Config, ui: &Ui, report: &ApplyReport) -> Result<()> {
    for a in &report.applied {
        let c = &a.change;
        if c.module != Module::Tenants
            || c.entity != HaloEntity::Client
            || c.action != Action::Create
        {
            continue;
        }
        let Some(id) = a.halo_id else {
            ui.warn(&format!(
                "{}: the Halo client was created but its id is unknown; the next sync adopts it by its tenant id",
                c.label
            ));
            continue;
        };
        config::write_mapping(
            &config.path,
            a.customer_id,
            &c.label,
            MappingEdit::Client {
                halo_client_id: id,
                halo_site_id: None,
            },
        )
        .map_err(|e| {
            anyhow::anyhow!(
                "Halo client {} (#{id}) was created but the config could not be written: {e}; fix the \
                 file and run `csp-sync sync tenants` again: the client is adopted, not created twice",
                c.label
            )
        })?;
        ui.info(&format!(
            "csp-sync: created Halo client {} (#{id}) and mapped it in {}",
            c.label,
            config.path.display()
        ));
    }
    Ok(())
}
