//! Source reads several modules share within one tenant, made once per tenant and run. Graph: what the
//! tenant's modules need (users, `subscribedSkus`, `directory/subscriptions`, managed devices) is read
//! together on first use, in one `$batch` request (see [`crate::api::graph::TenantRead`]); each module
//! takes its part. The users module needs the SKU part numbers for `contract_skus` and the licences
//! module the seat counts: both get the one `subscribedSkus` answer. The tenant's stored users (delta
//! link and last read) are loaded once here too.

use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::OnceCell;

use crate::api::Error;
use crate::api::graph::{
    GraphCompanySubscription, GraphManagedDevice, GraphSubscribedSku, TenantNeeds, TenantRead,
    UsersFetch, UsersRead,
};
use crate::config::Config;
use crate::context::Apis;
use crate::engine::Target;
use crate::model::{EntraUser, SkuUsage};
use crate::plan::Module;
use crate::state::{StateDir, TenantUsersState};

/// One tenant's shared source reads.
#[derive(Debug)]
pub struct TenantSource {
    tenant: String,
    needs: TenantNeeds,
    stored_users: Mutex<Option<TenantUsersState>>,
    read: OnceCell<Mutex<TenantRead>>,
    graph_skus: OnceCell<Result<Vec<SkuUsage>, String>>,
}

impl TenantSource {
    /// The reads `target`'s modules need: users (a delta round from the stored link, else a full read
    /// with a new link; a full read without one when `[users] delta = false`) and `subscribedSkus` for
    /// the users module; `subscribedSkus` and `directory/subscriptions` for licences; devices for assets.
    pub fn for_target(config: &Config, state: &StateDir, target: &Target) -> TenantSource {
        let id = &target.entry.customer_id;
        let runs = |m: Module| target.modules.contains(&m);
        let users = runs(Module::Users);
        // Loaded without `[users] delta` too: the plan's reasons compare with the last sync's users.
        let stored = users.then(|| state.tenant_users(id)).flatten();
        let users_read = users.then(
            || match stored.as_ref().and_then(|s| s.delta_link.clone()) {
                _ if !config.users.delta => UsersRead::Full { track: false },
                Some(link) => UsersRead::Delta(link),
                None => UsersRead::Full { track: true },
            },
        );
        let needs = TenantNeeds {
            users: users_read,
            skus: users || runs(Module::Licences),
            company_subscriptions: runs(Module::Licences),
            devices: runs(Module::Assets),
        };
        TenantSource {
            tenant: id.clone(),
            needs,
            stored_users: Mutex::new(stored),
            read: OnceCell::new(),
            graph_skus: OnceCell::new(),
        }
    }

    /// A source with nothing planned: each read asked of it is made on its own.
    pub fn new(tenant: &str) -> TenantSource {
        TenantSource {
            tenant: tenant.to_string(),
            needs: TenantNeeds::default(),
            stored_users: Mutex::new(None),
            read: OnceCell::new(),
            graph_skus: OnceCell::new(),
        }
    }

    async fn read(&self, apis: &Apis) -> MutexGuard<'_, TenantRead> {
        self.read
            .get_or_init(|| async {
                Mutex::new(apis.graph.read_tenant(&self.tenant, &self.needs).await)
            })
            .await
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The tenant's stored users (delta link, users of the last read), taken once.
    /// The users of the stored read (the last sync's), cloned; `None` when there are none.
    pub fn stored_users(&self) -> Option<Vec<EntraUser>> {
        self.stored_users
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .filter(|st| !st.users.is_empty())
            .map(|st| st.users.clone())
    }

    pub fn take_stored_users(&self) -> Option<TenantUsersState> {
        self.stored_users
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// The users as planned in [`TenantSource::for_target`], taken once; `None` when none were planned.
    pub async fn take_users(&self, apis: &Apis) -> Option<Result<UsersFetch, Error>> {
        self.needs.users.as_ref()?;
        self.read(apis).await.users.take()
    }

    /// Graph `subscribedSkus` of the tenant.
    pub async fn graph_skus(&self, apis: &Apis) -> &Result<Vec<SkuUsage>, String> {
        self.graph_skus
            .get_or_init(|| async {
                let read = self.read(apis).await.skus.take();
                let skus = match read {
                    Some(r) => r,
                    None => apis.graph.subscribed_skus(&self.tenant).await,
                };
                skus.map(|s| s.iter().map(GraphSubscribedSku::to_model).collect())
                    .map_err(|e| format!("reading Graph subscribedSkus: {e}"))
            })
            .await
    }

    /// Graph `directory/subscriptions` of the tenant, taken once.
    pub async fn take_company_subscriptions(
        &self,
        apis: &Apis,
    ) -> Result<Vec<GraphCompanySubscription>, Error> {
        let read = self.read(apis).await.company_subscriptions.take();
        match read {
            Some(r) => r,
            None => apis.graph.directory_subscriptions(&self.tenant).await,
        }
    }

    /// The tenant's Intune managed devices, taken once.
    pub async fn take_devices(&self, apis: &Apis) -> Result<Vec<GraphManagedDevice>, Error> {
        let read = self.read(apis).await.devices.take();
        match read {
            Some(r) => r,
            None => apis.graph.managed_devices(&self.tenant).await,
        }
    }
}
