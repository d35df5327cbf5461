//! The sync modules, each one unit (see `docs/ARCHITECTURE.md`): what it needs from Halo, what it reads
//! per partner and per tenant, its policy from the config, its pure planner call, and the rows it adds to
//! the outputs. The engine (`crate::engine`) reads Halo once for the union of the modules' needs, reads
//! each tenant once for the union of their source needs, runs the planners and merges their plans without
//! knowing any module's insides.
//!
//! Adding a module: a file here implementing [`SyncModule`], and one line in [`REGISTRY`].

pub mod source;

use std::any::Any;
use std::future::Future;

use anyhow::Result;
use futures_util::FutureExt;
use futures_util::future::LocalBoxFuture;

use crate::config::Config;
use crate::context::Apis;
use crate::engine::Target;
use crate::model::{Customer, HaloSnapshot};
use crate::plan::licences::SeatRow;
use crate::plan::{HaloEntity, Module, TenantPlan};
use crate::state::{StateDir, TenantUsersState};

pub use source::TenantSource;

/// Declares each module's file (`src/modules/<file>.rs`) and lists its [`SyncModule`] type in [`REGISTRY`].
macro_rules! registry {
    ($($file:ident :: $module:ident,)*) => {
        $(pub mod $file;)*
        /// Every implemented module, in the order their plans are merged into a tenant's plan (changes,
        /// notes). A module named in the config but absent here is skipped with a warning.
        pub const REGISTRY: &[&dyn Runner] = &[$(&$file::$module),*];
    };
}

// The registry: one line per module, in merge order.
registry! {
    users::Users,
    licences::Licences,
    tenants::Tenants,
    assets::Assets,
    billing::Billing,
}

/// The registered module of that name, if it is implemented.
pub fn find(module: Module) -> Option<&'static dyn Runner> {
    REGISTRY.iter().copied().find(|r| r.module() == module)
}

/// One Halo list a module plans against: the entity, the key of its list in Halo's reply, and the query
/// options of the read (always across all clients; the engine reads each entity once per run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HaloRead {
    pub entity: HaloEntity,
    pub key: &'static str,
    pub params: &'static [(&'static str, &'static str)],
}

/// What a module's partner-level read sees (once per run, before the tenants are read).
pub struct PartnerCx<'a> {
    pub config: &'a Config,
    pub apis: &'a Apis,
    pub targets: &'a [Target],
    pub state: &'a StateDir,
    pub now: jiff::Timestamp,
}

/// What a module's per-tenant read sees. `source` holds reads several modules share (one request each).
pub struct TenantCx<'a> {
    pub config: &'a Config,
    pub apis: &'a Apis,
    pub target: &'a Target,
    pub state: &'a StateDir,
    pub now: jiff::Timestamp,
    /// Whether the partner's Partner Center refresh token (app + user access) is available.
    pub pc_user: bool,
    pub source: &'a TenantSource,
}

/// What a module's planner call sees: everything read, and the run's settings.
pub struct PlanCx<'a> {
    pub config: &'a Config,
    pub halo: &'a HaloSnapshot,
    /// Every Partner Center customer (the tenants module plans the unmapped ones).
    pub customers: &'a [Customer],
    pub state: &'a StateDir,
    /// What csp-sync remembers of Halo: values written to fields Halo's reads do not return (SPEC 9).
    pub memory: &'a crate::halo_memory::HaloMemory,
    pub now: jiff::Timestamp,
    /// `--allow-deactivations`: the deactivation guard is lifted for this run.
    pub allow_deactivations: bool,
}

/// The rows modules add to a run's outputs besides their tenant plans: views shown with the plan, state
/// written after a real sync, config entries written by `sync`.
#[derive(Debug, Default)]
pub struct Outputs {
    /// The licences module's seat view.
    pub seats: Vec<SeatRow>,
    /// The users module's per-tenant read state (delta links), saved after a sync.
    pub user_states: Vec<(String, TenantUsersState)>,
    /// Last-seen keys ("tenant/oid") to stamp with the sync's start time.
    pub seen: Vec<String>,
    /// Existing Halo clients the tenants module adopts (the config is written only by a real sync).
    pub adopt: Vec<tenants::Adoption>,
    /// The billing module's per-period figures.
    pub billing: Vec<crate::plan::billing::PeriodBill>,
    /// The billing module's estimate of the open period.
    pub estimates: Vec<crate::plan::billing::Estimate>,
    /// The billing state moved forward (running exports, periods done), saved after a real sync.
    pub billing_state: Option<crate::billing::state::BillingState>,
    /// The assets module's device summary.
    pub devices: Vec<crate::plan::assets::DeviceSummary>,
    /// Device keys ("tenant/intune id") to stamp as last seen after a sync.
    pub device_seen: Vec<String>,
    /// Assets found already holding the users csp-sync would link: (asset id, `users` value),
    /// remembered after a sync as if csp-sync had written them.
    pub device_users: Vec<(i64, serde_json::Value)>,
}

/// A sync module. Implement this; the engine reaches it through [`Runner`] (blanket-implemented).
pub trait SyncModule: Sync + 'static {
    /// What the module reads from one tenant.
    type Read: Default + 'static;
    /// What the module reads once per run at partner level.
    type PartnerRead: Default + 'static;

    const MODULE: Module;

    /// The Halo lists the planner compares against (clients are always read).
    const HALO: &'static [HaloRead] = &[];

    fn read_partner(&self, _cx: &PartnerCx<'_>) -> impl Future<Output = Self::PartnerRead> {
        async { Self::PartnerRead::default() }
    }

    /// Reads one tenant; a failure is kept in the read (it becomes that tenant's error), never aborts the run.
    fn read_tenant(&self, _cx: &TenantCx<'_>) -> impl Future<Output = Self::Read> {
        async { Self::Read::default() }
    }

    /// Checks one tenant's read against Halo once both are in, and reads again where the read alone would
    /// mislead the planner (the users module reads in full when a delta-based read lacks linked users that
    /// Graph never reported removed).
    fn recheck<'a>(
        &'a self,
        _cx: &'a TenantCx<'a>,
        _halo: &'a HaloSnapshot,
        _read: &'a mut Self::Read,
    ) -> impl Future<Output = ()> + 'a {
        async {}
    }

    /// Source records in a tenant's read, for the "records compared" progress bar.
    fn records(_read: &Self::Read) -> usize {
        0
    }

    /// Plans from the reads (pure: no I/O). `reads` are in target order, only of targets running this
    /// module. Extra outputs go to `out`.
    fn plan(
        &self,
        cx: &PlanCx<'_>,
        partner: Self::PartnerRead,
        reads: Vec<(&Target, Self::Read)>,
        out: &mut Outputs,
    ) -> Result<Vec<TenantPlan>>;

    /// Checks planned writes of list-less fields against the full Halo records before they are shown or
    /// written (SPEC 7: the full record comes from `GET /api/{Entity}/{id}`), only where the plan cannot
    /// know the current value. Default: nothing to check.
    fn confirm(
        &self,
        _cx: &PlanCx<'_>,
        _apis: &Apis,
        _plans: &mut Vec<TenantPlan>,
        _out: &mut Outputs,
    ) -> impl Future<Output = Result<()>> {
        async { Ok(()) }
    }
}

/// A module as the engine drives it: [`SyncModule`] with its read types erased.
pub trait Runner: Sync {
    fn module(&self) -> Module;
    fn halo_reads(&self) -> &'static [HaloRead];
    fn read_partner<'a>(&'a self, cx: &'a PartnerCx<'a>) -> LocalBoxFuture<'a, Box<dyn Any>>;
    fn read_tenant<'a>(&'a self, cx: &'a TenantCx<'a>) -> LocalBoxFuture<'a, Box<dyn Any>>;
    fn recheck<'a>(
        &'a self,
        cx: &'a TenantCx<'a>,
        halo: &'a HaloSnapshot,
        read: &'a mut dyn Any,
    ) -> LocalBoxFuture<'a, ()>;
    fn records(&self, read: &dyn Any) -> usize;
    fn plan(
        &self,
        cx: &PlanCx<'_>,
        partner: Box<dyn Any>,
        reads: Vec<(&Target, Box<dyn Any>)>,
        out: &mut Outputs,
    ) -> Result<Vec<TenantPlan>>;
    fn confirm<'a>(
        &'a self,
        cx: &'a PlanCx<'a>,
        apis: &'a Apis,
        plans: &'a mut Vec<TenantPlan>,
        out: &'a mut Outputs,
    ) -> LocalBoxFuture<'a, Result<()>>;
}

impl<M: SyncModule> Runner for M {
    fn module(&self) -> Module {
        M::MODULE
    }

    fn halo_reads(&self) -> &'static [HaloRead] {
        M::HALO
    }

    fn read_partner<'a>(&'a self, cx: &'a PartnerCx<'a>) -> LocalBoxFuture<'a, Box<dyn Any>> {
        SyncModule::read_partner(self, cx)
            .map(|r| Box::new(r) as Box<dyn Any>)
            .boxed_local()
    }

    fn read_tenant<'a>(&'a self, cx: &'a TenantCx<'a>) -> LocalBoxFuture<'a, Box<dyn Any>> {
        SyncModule::read_tenant(self, cx)
            .map(|r| Box::new(r) as Box<dyn Any>)
            .boxed_local()
    }

    fn recheck<'a>(
        &'a self,
        cx: &'a TenantCx<'a>,
        halo: &'a HaloSnapshot,
        read: &'a mut dyn Any,
    ) -> LocalBoxFuture<'a, ()> {
        match read.downcast_mut::<M::Read>() {
            Some(read) => SyncModule::recheck(self, cx, halo, read).boxed_local(),
            None => async {}.boxed_local(),
        }
    }

    fn records(&self, read: &dyn Any) -> usize {
        read.downcast_ref::<M::Read>().map_or(0, M::records)
    }

    fn plan(
        &self,
        cx: &PlanCx<'_>,
        partner: Box<dyn Any>,
        reads: Vec<(&Target, Box<dyn Any>)>,
        out: &mut Outputs,
    ) -> Result<Vec<TenantPlan>> {
        // The engine hands back exactly what this module's reads returned, so the casts cannot miss.
        let partner = partner
            .downcast::<M::PartnerRead>()
            .map_or_else(|_| M::PartnerRead::default(), |b| *b);
        let reads = reads
            .into_iter()
            .filter_map(|(t, r)| r.downcast::<M::Read>().ok().map(|r| (t, *r)))
            .collect();
        SyncModule::plan(self, cx, partner, reads, out)
    }

    fn confirm<'a>(
        &'a self,
        cx: &'a PlanCx<'a>,
        apis: &'a Apis,
        plans: &'a mut Vec<TenantPlan>,
        out: &'a mut Outputs,
    ) -> LocalBoxFuture<'a, Result<()>> {
        SyncModule::confirm(self, cx, apis, plans, out).boxed_local()
    }
}
