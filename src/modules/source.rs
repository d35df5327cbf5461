//! Source reads several modules share within one tenant, made once per tenant and run: the Graph
//! `subscribedSkus` list (the users module needs its part numbers for `contract_skus`, the licences module
//! its seat counts). The first module to ask reads it; the others get the same answer.

use tokio::sync::OnceCell;

use crate::api::graph::GraphSubscribedSku;
use crate::context::Apis;
use crate::model::SkuUsage;

/// One tenant's shared source reads.
#[derive(Debug)]
pub struct TenantSource {
    tenant: String,
    graph_skus: OnceCell<Result<Vec<SkuUsage>, String>>,
}

impl TenantSource {
    pub fn new(tenant: &str) -> TenantSource {
        TenantSource {
            tenant: tenant.to_string(),
            graph_skus: OnceCell::new(),
        }
    }

    /// Graph `subscribedSkus` of the tenant, read on first use.
    pub async fn graph_skus(&self, apis: &Apis) -> &Result<Vec<SkuUsage>, String> {
        self.graph_skus
            .get_or_init(|| async {
                apis.graph
                    .subscribed_skus(&self.tenant)
                    .await
                    .map(|s| s.iter().map(GraphSubscribedSku::to_model).collect())
                    .map_err(|e| format!("reading Graph subscribedSkus: {e}"))
            })
            .await
    }
}
