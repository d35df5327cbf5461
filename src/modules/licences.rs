//! The licences module: Partner Center subscriptions of each mapped tenant -> Halo software licences
//! (SPEC section 7). Reads Halo's software licences, each tenant's subscriptions, SKU seat counts (Graph
//! `subscribedSkus`, read once with the tenant's other Graph reads and shared with the users module; Partner
//! Center `subscribedskus` with the partner's user token only where Graph could not be read) and the
//! optional `directory/subscriptions` join, and plans with [`crate::plan::licences`].
//! Outputs: the seat view.

use anyhow::Result;

use crate::api::{
    graph::GraphCompanySubscription,
    partner_center::{PcSubscribedSku, PcSubscription},
};
use crate::engine::Target;
use crate::modules::{HaloRead, Outputs, PlanCx, SyncModule, TenantCx};
use crate::plan::licences::{self, LicencesPlan, LicencesPolicy, SkuSource, TenantLicencesInput};
use crate::plan::{HaloEntity, Module, TenantPlan};

pub struct Licences;

impl SyncModule for Licences {
    type Read = Option<TenantLicencesInput>;
    type PartnerRead = ();
    const MODULE: Module = Module::Licences;
    const HALO: &'static [HaloRead] = &[HaloRead {
        entity: HaloEntity::SoftwareLicence,
        key: "licences",
        params: &[("includeinactive", "true")],
    }];

    async fn read_tenant(&self, cx: &TenantCx<'_>) -> Option<TenantLicencesInput> {
        Some(read_licences(cx).await)
    }

    fn records(read: &Option<TenantLicencesInput>) -> usize {
        read.as_ref().map_or(0, |l| l.subscriptions.len())
    }

    fn plan(
        &self,
        cx: &PlanCx<'_>,
        (): (),
        reads: Vec<(&Target, Option<TenantLicencesInput>)>,
        out: &mut Outputs,
    ) -> Result<Vec<TenantPlan>> {
        let inputs: Vec<TenantLicencesInput> = reads.into_iter().filter_map(|(_, r)| r).collect();
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let policy = LicencesPolicy {
            exclude_skus: cx.config.licences.exclude_skus.clone(),
            names: cx.config.licences.names.clone(),
        };
        let LicencesPlan { tenants, seats, .. } =
            licences::plan_licences(&inputs, cx.halo, &policy, cx.memory, cx.now);
        out.seats.extend(seats);
        Ok(tenants)
    }
}

async fn read_licences(cx: &TenantCx<'_>) -> TenantLicencesInput {
    let (apis, t) = (cx.apis, cx.target);
    let id = &t.entry.customer_id;
    let mut errors = Vec::new();
    let subscriptions = match apis.partner_center.subscriptions(id).await {
        Ok(subs) => subs.iter().map(PcSubscription::to_model).collect(),
        Err(e) => {
            errors.push(format!("reading Partner Center subscriptions: {e}"));
            Vec::new()
        }
    };
    // Seat counts: Graph's `subscribedSkus`, already read with the tenant's other Graph reads (one
    // `$batch`, shared with the users module). Partner Center's `subscribedskus` (app+user only,
    // reference 2.5) is read only where Graph could not be read for this tenant.
    let (skus, sku_source) = match cx.source.graph_skus(apis).await {
        Ok(s) => (s.clone(), SkuSource::Graph),
        Err(graph) if cx.pc_user => match apis.partner_center.subscribed_skus(id).await {
            Ok(s) => {
                tracing::info!(tenant = %id, "{graph}; seat counts from Partner Center instead");
                (
                    s.iter().map(PcSubscribedSku::to_model).collect(),
                    SkuSource::PartnerCenter,
                )
            }
            Err(e) => {
                errors.push(format!(
                    "{graph}; reading Partner Center subscribedskus instead: {e}"
                ));
                (Vec::new(), SkuSource::PartnerCenter)
            }
        },
        Err(e) => {
            errors.push(e.clone());
            (Vec::new(), SkuSource::Graph)
        }
    };
    // Optional join data: its absence only weakens the join, so a failure is logged, not an error.
    let company_subscriptions = match cx.source.take_company_subscriptions(apis).await {
        Ok(c) => c.iter().map(GraphCompanySubscription::to_model).collect(),
        Err(e) => {
            tracing::info!(tenant = %id, "directory/subscriptions not readable: {e}");
            Vec::new()
        }
    };
    TenantLicencesInput {
        customer_id: id.clone(),
        tenant_id: id.clone(),
        tenant_name: t.name.clone(),
        halo_client_id: t.entry.halo_client_id.unwrap_or(0),
        subscriptions,
        skus,
        sku_source,
        company_subscriptions,
        errors,
    }
}
