//! Pure assets planner (SPEC section 7, assets): each Intune managed device of a mapped tenant becomes one
//! Halo asset of the tenant's client, found again by `intune_id`, for the device's whole life.
//!
//! - Identity: `intune_id` (Halo's own Intune import writes the same field, so its assets are adopted);
//!   else, for an asset of that client without `intune_id`, exactly one match of a non-placeholder serial
//!   number in the asset type field mapped from `serialNumber` adopts it; two matches are a conflict.
//! - Re-enrolment: two Intune records of one serial number are one asset, the most recently synced; an
//!   asset holding the older record's id is moved to the newer one.
//! - Fields: `inventory_number` = device name; `assettype_id` from `[assets] asset_types` at create (an
//!   existing asset's type is a technician's choice and is kept); the mapped Intune properties into the
//!   type fields as `fields: [{"id", "value"}]` with `_dontaddnewfields: true`; `lastSyncDateTime` only
//!   when it moved by more than a day, so a steady state writes nothing.
//! - List-less fields (SPEC 7): `azure_userprincipalname` and `users` are not in Halo's asset list. They are
//!   written at create and link, and later when the source value differs from what csp-sync last wrote
//!   (the state). An update's `users` field carries `from: null` (unknown); where csp-sync remembers no
//!   `users` value of its own for the asset, the module confirms it against the full record before
//!   writing (`crate::modules::assets`).
//! - Lifecycle: a device absent from Intune for `stale_after_days` is made inactive (never deleted); one
//!   that returns is reactivated. A failed or "not applicable" read starts no clock. The `[safety]`
//!   deactivation guard covers the assets made inactive, per tenant.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::halo_memory::HaloMemory;
use crate::model::{HaloAsset, HaloSnapshot, IntuneDevice};
use crate::plan::users::{GUARD_DEACTIVATION, GUARD_EMPTY_SOURCE};
use crate::plan::{
    Action, Change, Conflict, FieldChange, HaloEntity, HeldBack, Module, TenantPlan, change_order,
};

/// The Intune property of the serial number.
pub const SERIAL: &str = "serialNumber";
/// The Intune property of the last check-in.
pub const LAST_SYNC: &str = "lastSyncDateTime";
/// A change's field name for the asset type field with this id: `field:<id>` (see [`Change::payload`]).
pub const FIELD_PREFIX: &str = "field:";

/// Serial numbers firmware ships as placeholders (lower-case, trimmed): never an identity.
const PLACEHOLDER_SERIALS: &[&str] = &[
    "to be filled by o.e.m.",
    "to be filled by oem",
    "system serial number",
    "default string",
    "chassis serial number",
    "serial number",
    "not specified",
    "not applicable",
    "none",
    "n/a",
    "na",
    "invalid",
    "unknown",
    "0123456789",
    "123456789",
    "1234567890",
    "oem",
];

/// Whether a serial number is a placeholder: empty, a known firmware filler, or one repeated character
/// ("0", "00000000", "xxxxxx").
pub fn is_placeholder_serial(serial: &str) -> bool {
    let s = serial.trim().to_lowercase();
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return true;
    };
    PLACEHOLDER_SERIALS.contains(&s.as_str()) || chars.all(|c| c == first)
}

/// The `[assets]` and `[safety]` settings the planner applies.
#[derive(Debug, Clone)]
pub struct AssetsPolicy {
    /// Lower-cased `operatingSystem` -> asset type id; `default` for the rest.
    pub asset_types: BTreeMap<String, i64>,
    /// Intune property -> asset type field id.
    pub fields: BTreeMap<String, i64>,
    pub stale_after_days: u32,
    pub link_users: bool,
    pub max_deactivations: u32,
    pub max_deactivation_percent: f64,
    pub allow_deactivations: bool,
    /// `[safety] empty_source_guard`: a tenant whose Intune read returns no device while Halo holds
    /// active synced assets for it is treated as unknown (SPEC 8): no absence clock starts, none is made
    /// inactive.
    pub empty_source_guard: bool,
}

impl Default for AssetsPolicy {
    fn default() -> Self {
        AssetsPolicy {
            asset_types: BTreeMap::from([
                ("windows".into(), 10),
                ("macos".into(), 11),
                ("ios".into(), 12),
                ("ipados".into(), 12),
                ("android".into(), 13),
                ("default".into(), 10),
            ]),
            fields: BTreeMap::from([
                ("serialNumber".into(), 117),
                ("model".into(), 118),
                ("manufacturer".into(), 119),
                ("osVersion".into(), 120),
            ]),
            stale_after_days: 30,
            link_users: true,
            max_deactivations: 5,
            max_deactivation_percent: 20.0,
            allow_deactivations: false,
            empty_source_guard: true,
        }
    }
}

impl AssetsPolicy {
    fn asset_type_for(&self, os: &str) -> Option<i64> {
        self.asset_types
            .get(&os.trim().to_lowercase())
            .or_else(|| self.asset_types.get("default"))
            .copied()
    }
}

/// What reading a tenant's managed devices gave.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceRead {
    Devices(Vec<IntuneDevice>),
    /// The tenant has no Intune ("Request not applicable to target tenant"): a note, not an error.
    NoIntune(String),
    Failed(String),
}

/// One mapped tenant to plan.
#[derive(Debug, Clone)]
pub struct TenantAssetsInput<'a> {
    pub customer_id: &'a str,
    pub name: &'a str,
    pub halo_client_id: i64,
    /// `[[tenant]] halo_site_id`; `None` = the client's main site.
    pub site_id: Option<i64>,
    pub devices: &'a DeviceRead,
}

/// What csp-sync knows of a device between runs (state `assets.json`, key [`device_key`]). The values it
/// last wrote to the asset's list-less fields are in the Halo memory (`crate::halo_memory`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceState {
    /// When the device was last seen in Intune (or, for an asset whose device was never seen by this
    /// state, when its absence was first noticed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<jiff::Timestamp>,
}

/// The Halo user ids of a `users` value (`[{"id": N}, ...]`), sorted.
pub fn user_ids(v: &Value) -> Vec<i64> {
    let mut ids: Vec<i64> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|u| u.get("id").and_then(crate::api::value_to_i64))
                .collect()
        })
        .unwrap_or_default();
    ids.sort_unstable();
    ids
}

/// The state key of a device: `"<tenant id>/<intune id>"`, both lower-case.
pub fn device_key(tenant: &str, intune_id: &str) -> String {
    format!("{}/{}", tenant.to_lowercase(), intune_id.to_lowercase())
}

/// One tenant's line of the device summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DeviceSummary {
    pub customer_id: String,
    pub tenant_name: String,
    pub devices: usize,
    pub created: usize,
    pub updated: usize,
    pub made_inactive: usize,
    pub non_compliant: usize,
    pub without_primary_user: usize,
    /// Devices whose last check-in is older than `stale_after_days`.
    pub not_synced: usize,
}

/// The planner's output.
#[derive(Debug, Clone, Default)]
pub struct AssetsPlan {
    pub tenants: Vec<TenantPlan>,
    pub summary: Vec<DeviceSummary>,
    /// Device keys to stamp as last seen when the sync runs: devices read, and absent devices whose
    /// absence clock starts now.
    pub seen: Vec<String>,
}

/// Plans the assets of every tenant.
pub fn plan_assets(
    tenants: &[TenantAssetsInput],
    halo: &HaloSnapshot,
    policy: &AssetsPolicy,
    state: &BTreeMap<String, DeviceState>,
    memory: &HaloMemory,
    now: jiff::Timestamp,
) -> AssetsPlan {
    let mut out = AssetsPlan::default();
    let idx = Index::new(halo);
    for t in tenants {
        let mut p = TenantPlanner {
            input: t,
            idx: &idx,
            halo,
            policy,
            state,
            memory,
            now,
            plan: TenantPlan {
                customer_id: t.customer_id.to_string(),
                name: t.name.to_string(),
                halo_client_id: Some(t.halo_client_id),
                ..TenantPlan::default()
            },
            seen: Vec::new(),
        };
        let summary = p.run();
        out.seen.extend(p.seen);
        out.tenants.push(p.plan);
        if let Some(s) = summary {
            out.summary.push(s);
        }
    }
    out
}

/// Halo's users and assets by the keys the planner looks them up by, built once for all tenants so a
/// lookup per device is a map access, not a scan of every Halo record (100,000 users, 50,000 assets).
struct Index<'a> {
    /// Active users by (client id, azureoid), the azureoid as read.
    users: HashMap<(i64, &'a str), Vec<i64>>,
    /// Assets by client id.
    by_client: HashMap<i64, Vec<&'a HaloAsset>>,
    /// Assets by `intune_id` (lower case, as the model holds it).
    by_intune: HashMap<&'a str, Vec<&'a HaloAsset>>,
}

impl<'a> Index<'a> {
    fn new(halo: &'a HaloSnapshot) -> Index<'a> {
        let mut idx = Index {
            users: HashMap::new(),
            by_client: HashMap::new(),
            by_intune: HashMap::new(),
        };
        for u in halo.users.iter().filter(|u| !u.inactive) {
            if let Some(oid) = u.azureoid.as_deref() {
                idx.users.entry((u.client_id, oid)).or_default().push(u.id);
            }
        }
        for a in &halo.assets {
            idx.by_client.entry(a.client_id).or_default().push(a);
            if let Some(iid) = a.intune_id.as_deref() {
                idx.by_intune.entry(iid).or_default().push(a);
            }
        }
        idx
    }
}

struct TenantPlanner<'a> {
    input: &'a TenantAssetsInput<'a>,
    idx: &'a Index<'a>,
    halo: &'a HaloSnapshot,
    policy: &'a AssetsPolicy,
    state: &'a BTreeMap<String, DeviceState>,
    memory: &'a HaloMemory,
    now: jiff::Timestamp,
    plan: TenantPlan,
    seen: Vec<String>,
}

fn norm_serial(s: &str) -> String {
    s.trim().to_lowercase()
}

fn timestamp(s: &str) -> Option<jiff::Timestamp> {
    s.trim().parse::<jiff::Timestamp>().ok().or_else(|| {
        // Halo may answer a date-time without an offset ("2026-11-20T08:00:00"): taken as UTC.
        s.trim()
            .parse::<jiff::civil::DateTime>()
            .ok()
            .and_then(|d| jiff::tz::TimeZone::UTC.to_timestamp(d).ok())
    })
}

const DAY_SECS: i64 = 86_400;

impl TenantPlanner<'_> {
    fn run(&mut self) -> Option<DeviceSummary> {
        let name = self.input.name;
        let devices = match self.input.devices {
            DeviceRead::Devices(d) => d,
            DeviceRead::NoIntune(why) => {
                self.plan.notes.push(format!(
                    "no Intune in this tenant ({why}): no devices read, no asset changed"
                ));
                return None;
            }
            DeviceRead::Failed(e) => {
                let advice = if crate::auth::names_a_token_failure(e) {
                    ""
                } else {
                    "; check the Graph permission DeviceManagementManagedDevices.Read.All (or the GDAP \
                     Intune role) and rerun"
                };
                self.plan.errors.push(format!(
                    "assets: no asset change was planned and none was made inactive: could not read the \
                     Intune devices: {e}{advice}"
                ));
                return None;
            }
        };
        let client = self.input.halo_client_id;
        let site = self.input.site_id.or_else(|| {
            self.halo
                .clients
                .iter()
                .find(|c| c.id == client)
                .and_then(|c| c.main_site_id)
        });
        let (kept, superseded) = self.dedupe(devices);
        let client_assets: Vec<&HaloAsset> =
            self.idx.by_client.get(&client).cloned().unwrap_or_default();
        let mut claimed: BTreeSet<i64> = BTreeSet::new();
        let mut summary = DeviceSummary {
            customer_id: self.input.customer_id.to_string(),
            tenant_name: name.to_string(),
            devices: kept.len(),
            ..DeviceSummary::default()
        };
        let stale = i64::from(self.policy.stale_after_days) * DAY_SECS;
        for d in &kept {
            if d.compliance_state
                .as_deref()
                .is_some_and(|c| c.eq_ignore_ascii_case("noncompliant"))
            {
                summary.non_compliant += 1;
            }
            if d.user_id.is_none() {
                summary.without_primary_user += 1;
            }
            if d.last_sync
                .as_deref()
                .and_then(timestamp)
                .is_none_or(|t| self.now.as_second() - t.as_second() > stale)
            {
                summary.not_synced += 1;
            }
            self.seen.push(device_key(self.input.customer_id, &d.id));
            let older = superseded.get(&d.id).map_or(&[][..], Vec::as_slice);
            match self.find_asset(d, older, &client_assets) {
                Found::Conflict(reason, ids) => self.plan.conflicts.push(Conflict {
                    module: Module::Assets,
                    source_key: d.id.clone(),
                    label: d.device_name.clone(),
                    reason,
                    halo_ids: ids,
                }),
                Found::Asset(a, how) => {
                    claimed.insert(a.id);
                    self.update(d, a, how);
                }
                Found::None => match site {
                    Some(site) => self.create(d, site),
                    None => self.plan.errors.push(format!(
                        "assets: {}: Halo client #{client} has no main site and the [[tenant]] entry no \
                         halo_site_id; set halo_site_id for {name}",
                        d.device_name
                    )),
                },
            }
        }
        // Assets whose device is gone from Intune.
        let active_synced = client_assets
            .iter()
            .filter(|a| !a.inactive && a.intune_id.is_some())
            .count();
        let empty_source = self.policy.empty_source_guard && kept.is_empty() && active_synced > 0;
        let present: BTreeSet<&str> = kept.iter().map(|d| d.id.as_str()).collect();
        let mut deactivations = Vec::new();
        let mut waiting = 0usize;
        for a in &client_assets {
            let Some(iid) = a.intune_id.as_deref() else {
                continue;
            };
            if a.inactive || present.contains(iid) || claimed.contains(&a.id) {
                continue;
            }
            let key = device_key(self.input.customer_id, iid);
            match self.state.get(&key).and_then(|s| s.last_seen) {
                // An empty read proves no device gone: no clock starts on it.
                None if empty_source => waiting += 1,
                None => {
                    // The absence clock starts now (first run, or a lost state).
                    self.seen.push(key);
                    waiting += 1;
                }
                Some(seen) if self.now.as_second() - seen.as_second() >= stale => {
                    let days = (self.now.as_second() - seen.as_second()) / DAY_SECS;
                    deactivations.push(Change {
                        module: Module::Assets,
                        action: Action::Deactivate,
                        entity: HaloEntity::Asset,
                        halo_id: Some(a.id),
                        source_key: iid.to_string(),
                        label: a
                            .inventory_number
                            .clone()
                            .unwrap_or_else(|| iid.to_string()),
                        reason: format!(
                            "gone from Intune for {days} days (stale_after_days = {})",
                            self.policy.stale_after_days
                        ),
                        fields: vec![FieldChange {
                            field: "inactive".into(),
                            from: Value::Bool(false),
                            to: Value::Bool(true),
                        }],
                        extra: Map::new(),
                    });
                }
                Some(_) => waiting += 1,
            }
        }
        if empty_source {
            // --allow-deactivations lifts the count guard only (SPEC 8), so with the flag this says so.
            let flag = if self.policy.allow_deactivations {
                ". --allow-deactivations does not override this guard: it only lifts [safety] \
                 max_deactivations / max_deactivation_percent, and an empty device list is more often a \
                 permission fault than every device leaving. If the tenant really has no devices left, \
                 set [safety] empty_source_guard = false for one run"
            } else {
                ""
            };
            let why = format!(
                "Intune returned no devices for {name} while Halo holds {} for it; treated as unknown: no \
                 asset made inactive and no absence clock started. Check the Graph permission \
                 DeviceManagementManagedDevices.Read.All (or the GDAP Intune role) in that tenant",
                crate::render::count(active_synced, "active synced asset", "active synced assets")
            );
            if deactivations.is_empty() {
                self.plan.notes.push(why);
            } else {
                deactivations.sort_by(change_order);
                self.plan.held_back.push(HeldBack {
                    module: Module::Assets,
                    guard: GUARD_EMPTY_SOURCE.into(),
                    reason: format!(
                        "{why}; {} held back{flag}",
                        crate::render::count(deactivations.len(), "deactivation", "deactivations")
                    ),
                    changes: deactivations,
                });
            }
            deactivations = Vec::new();
        } else if waiting > 0 {
            self.plan.notes.push(format!(
                "{} whose device is gone from Intune: made inactive once gone for stale_after_days = {}",
                crate::render::count(waiting, "asset", "assets"),
                self.policy.stale_after_days
            ));
        }
        self.guard(deactivations, active_synced);
        self.plan.changes.sort_by(change_order);
        for c in &self.plan.changes {
            match c.action {
                Action::Create => summary.created += 1,
                Action::Deactivate => summary.made_inactive += 1,
                Action::Update | Action::Link | Action::Reactivate => summary.updated += 1,
            }
        }
        Some(summary)
    }

    /// Groups re-enrolled records (one non-placeholder serial): the most recently synced is kept; the
    /// others are returned by the kept device's id.
    fn dedupe<'d>(
        &mut self,
        devices: &'d [IntuneDevice],
    ) -> (Vec<&'d IntuneDevice>, BTreeMap<String, Vec<String>>) {
        let mut by_serial: BTreeMap<String, Vec<&IntuneDevice>> = BTreeMap::new();
        let mut kept = Vec::new();
        for d in devices {
            match d
                .serial_number
                .as_deref()
                .filter(|s| !is_placeholder_serial(s))
            {
                Some(s) => by_serial.entry(norm_serial(s)).or_default().push(d),
                None => kept.push(d),
            }
        }
        let mut superseded = BTreeMap::new();
        for (serial, mut group) in by_serial {
            group.sort_by(|a, b| {
                let t = |d: &IntuneDevice| d.last_sync.as_deref().and_then(timestamp);
                t(b).cmp(&t(a)).then_with(|| a.id.cmp(&b.id))
            });
            let newest = group[0];
            if group.len() > 1 {
                self.plan.notes.push(format!(
                    "{} Intune records share serial number {serial} (re-enrolment): {} ({}), the most \
                     recently synced, is the asset",
                    group.len(),
                    newest.device_name,
                    newest.id
                ));
                superseded.insert(
                    newest.id.clone(),
                    group[1..].iter().map(|d| d.id.clone()).collect(),
                );
            }
            kept.push(newest);
        }
        kept.sort_by(|a, b| a.id.cmp(&b.id));
        (kept, superseded)
    }

    fn find_asset<'h>(
        &self,
        d: &IntuneDevice,
        older: &[String],
        client_assets: &[&'h HaloAsset],
    ) -> Found<'h> {
        let by_id = |id: &str| -> Vec<&'h HaloAsset> {
            client_assets
                .iter()
                .copied()
                .filter(|a| a.intune_id.as_deref() == Some(id))
                .collect()
        };
        let mine = by_id(&d.id);
        match mine.as_slice() {
            [one] => return Found::Asset(one, How::IntuneId),
            [] => {}
            many => {
                return Found::Conflict(
                    format!(
                        "{} Halo assets of this client hold intune_id {}; merge them in Halo",
                        many.len(),
                        d.id
                    ),
                    many.iter().map(|a| a.id).collect(),
                );
            }
        }
        if let Some(elsewhere) = self.idx.by_intune.get(d.id.as_str()).and_then(|hits| {
            hits.iter()
                .find(|a| a.client_id != self.input.halo_client_id)
        }) {
            return Found::Conflict(
                format!(
                    "the Halo asset holding this intune_id belongs to client #{}, not #{}",
                    elsewhere.client_id, self.input.halo_client_id
                ),
                vec![elsewhere.id],
            );
        }
        for old in older {
            if let [one] = by_id(old).as_slice() {
                return Found::Asset(one, How::ReEnrolled);
            }
        }
        let Some(serial) = d
            .serial_number
            .as_deref()
            .filter(|s| !is_placeholder_serial(s))
        else {
            return Found::None;
        };
        let Some(field) = self.policy.fields.get(SERIAL) else {
            return Found::None;
        };
        let want = norm_serial(serial);
        let hits: Vec<&HaloAsset> = client_assets
            .iter()
            .copied()
            .filter(|a| {
                a.intune_id.is_none()
                    && a.fields
                        .as_ref()
                        .and_then(|f| f.get(field))
                        .is_some_and(|v| norm_serial(v) == want)
            })
            .collect();
        match hits.as_slice() {
            [] => Found::None,
            [one] => Found::Asset(one, How::Serial),
            many => Found::Conflict(
                format!(
                    "{} Halo assets of this client without intune_id carry serial number {serial}; \
                     csp-sync will not guess which is this device",
                    many.len()
                ),
                many.iter().map(|a| a.id).collect(),
            ),
        }
    }

    /// The Halo user to link: the active contact of this client linked to the primary user's object id
    /// (the one the users module matched). An out-of-scope user has none, so gets no link.
    fn user_for(&self, d: &IntuneDevice) -> Option<i64> {
        if !self.policy.link_users {
            return None;
        }
        let oid = d.user_id.as_deref()?;
        let hits = self
            .idx
            .users
            .get(&(self.input.halo_client_id, oid))
            .map_or(&[][..], Vec::as_slice);
        match hits {
            [one] => Some(*one),
            _ => None,
        }
    }

    /// The mapped field values of a device: field id -> value.
    fn field_values(&self, d: &IntuneDevice) -> BTreeMap<i64, (String, String)> {
        let mut out = BTreeMap::new();
        for (prop, id) in &self.policy.fields {
            let Some(v) = d.properties.get(prop) else {
                continue;
            };
            if prop == SERIAL && is_placeholder_serial(v) {
                continue;
            }
            out.insert(*id, (prop.clone(), v.clone()));
        }
        out
    }

    fn create(&mut self, d: &IntuneDevice, site: i64) {
        let Some(assettype) = self.policy.asset_type_for(&d.operating_system) else {
            self.plan.errors.push(format!(
                "assets: {}: no asset type for operating system {:?}; add it (or `default`) to [assets] asset_types",
                d.device_name, d.operating_system
            ));
            return;
        };
        let mut fields = vec![
            fc("inventory_number", Value::Null, json!(d.device_name)),
            fc("intune_id", Value::Null, json!(d.id)),
        ];
        for (id, (_, v)) in self.field_values(d) {
            fields.push(fc(&format!("{FIELD_PREFIX}{id}"), Value::Null, json!(v)));
        }
        if let Some(upn) = &d.user_principal_name {
            fields.push(fc("azure_userprincipalname", Value::Null, json!(upn)));
        }
        if let Some(u) = self.user_for(d) {
            fields.push(fc("users", Value::Null, json!([{"id": u}])));
        }
        let mut extra = Map::new();
        extra.insert("client_id".into(), json!(self.input.halo_client_id));
        extra.insert("site_id".into(), json!(site));
        extra.insert("assettype_id".into(), json!(assettype));
        extra.insert("_dontaddnewfields".into(), Value::Bool(true));
        // Held until applied: no growth slack (issue 15).
        fields.shrink_to_fit();
        self.plan.changes.push(Change {
            module: Module::Assets,
            action: Action::Create,
            entity: HaloEntity::Asset,
            halo_id: None,
            source_key: d.id.clone(),
            label: d.device_name.clone(),
            reason: "new in Intune".into(),
            fields,
            extra,
        });
    }

    fn update(&mut self, d: &IntuneDevice, a: &HaloAsset, how: How) {
        let written = |field: &str| self.memory.last_written(HaloEntity::Asset, a.id, field);
        let linking = how != How::IntuneId;
        let mut fields = Vec::new();
        let mut reasons: Vec<String> = Vec::new();
        if a.intune_id.as_deref() != Some(d.id.as_str()) {
            fields.push(fc(
                "intune_id",
                a.intune_id.clone().map_or(Value::Null, Value::from),
                json!(d.id),
            ));
        }
        if a.inventory_number.as_deref() != Some(d.device_name.as_str()) {
            fields.push(fc(
                "inventory_number",
                a.inventory_number.clone().map_or(Value::Null, Value::from),
                json!(d.device_name),
            ));
            if !linking {
                reasons.push("renamed in Intune".into());
            }
        }
        let mut field_changed = false;
        if let Some(current) = &a.fields {
            for (id, (prop, want)) in self.field_values(d) {
                let have = current.get(&id).map(String::as_str).unwrap_or_default();
                let differs = if prop == LAST_SYNC {
                    match (timestamp(have), timestamp(&want)) {
                        (Some(h), Some(w)) => (w.as_second() - h.as_second()).abs() > DAY_SECS,
                        _ => have.trim() != want.trim(),
                    }
                } else {
                    have.trim() != want.trim()
                };
                if differs {
                    field_changed = true;
                    fields.push(fc(
                        &format!("{FIELD_PREFIX}{id}"),
                        if current.contains_key(&id) {
                            json!(have)
                        } else {
                            Value::Null
                        },
                        json!(want),
                    ));
                    if !linking {
                        reasons.push(format!("{prop} changed in Intune"));
                    }
                }
            }
        } else if linking {
            // The read returned no field values: written at the link, never compared.
            for (id, (_, v)) in self.field_values(d) {
                field_changed = true;
                fields.push(fc(&format!("{FIELD_PREFIX}{id}"), Value::Null, json!(v)));
            }
        }
        // List-less fields: written at the link, later when the source moved from what csp-sync wrote.
        if let Some(upn) = &d.user_principal_name
            && (linking
                || written("azure_userprincipalname").and_then(Value::as_str) != Some(upn.as_str()))
        {
            fields.push(fc("azure_userprincipalname", Value::Null, json!(upn)));
            if !linking {
                reasons.push("primary user changed in Intune".into());
            }
        }
        if let Some(u) = self.user_for(d)
            && (linking || written("users").map(user_ids) != Some(vec![u]))
        {
            // `from: null`: the list does not say who the asset's users are; confirmed before writing.
            fields.push(fc("users", Value::Null, json!([{"id": u}])));
            if !linking && !reasons.iter().any(|r| r.starts_with("primary user")) {
                reasons.push("primary user to link".into());
            }
        }
        let action = if a.inactive {
            fields.push(fc("inactive", Value::Bool(true), Value::Bool(false)));
            Action::Reactivate
        } else if linking {
            Action::Link
        } else {
            Action::Update
        };
        if fields.is_empty() {
            return;
        }
        let reason = match (action, how) {
            (Action::Reactivate, _) => "back in Intune".to_string(),
            (_, How::Serial) => {
                "existing asset with this serial number, linked by intune_id".into()
            }
            (_, How::ReEnrolled) => {
                "re-enrolled in Intune: the asset follows the newer record".into()
            }
            _ => {
                reasons.dedup();
                reasons.join("; ")
            }
        };
        let mut extra = Map::new();
        if field_changed {
            extra.insert("_dontaddnewfields".into(), Value::Bool(true));
            // Halo's handling of a partial `fields` array on update is not documented (halo-api.md 3.4
            // shows only a create): the asset's other field values are sent along unchanged, which is
            // right whether Halo merges by field id or replaces the list.
            if let Some(current) = &a.fields {
                extra.insert(
                    "fields".into(),
                    Value::Array(
                        current
                            .iter()
                            .map(|(id, v)| json!({"id": id, "value": v}))
                            .collect(),
                    ),
                );
            }
        }
        fields.shrink_to_fit();
        self.plan.changes.push(Change {
            module: Module::Assets,
            action,
            entity: HaloEntity::Asset,
            halo_id: Some(a.id),
            source_key: d.id.clone(),
            label: d.device_name.clone(),
            reason,
            fields,
            extra,
        });
    }

    fn guard(&mut self, mut deactivations: Vec<Change>, active_synced: usize) {
        if deactivations.is_empty() {
            return;
        }
        deactivations.sort_by(change_order);
        let n = deactivations.len();
        let percent = if active_synced == 0 {
            100.0
        } else {
            n as f64 * 100.0 / active_synced as f64
        };
        if n > self.policy.max_deactivations as usize
            && percent > self.policy.max_deactivation_percent
            && !self.policy.allow_deactivations
        {
            self.plan.held_back.push(HeldBack {
                module: Module::Assets,
                guard: GUARD_DEACTIVATION.into(),
                reason: format!(
                    "{} made inactive ({percent:.1}% of {active_synced} active synced) exceed \
                     both [safety] max_deactivations = {} and max_deactivation_percent = {}; review them \
                     and rerun with --allow-deactivations to apply them",
                    crate::render::count(n, "asset", "assets"),
                    self.policy.max_deactivations,
                    self.policy.max_deactivation_percent
                ),
                changes: deactivations,
            });
            return;
        }
        self.plan.changes.extend(deactivations);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    IntuneId,
    ReEnrolled,
    Serial,
}

enum Found<'h> {
    Asset(&'h HaloAsset, How),
    Conflict(String, Vec<i64>),
    None,
}

fn fc(field: &str, from: Value, to: Value) -> FieldChange {
    FieldChange {
        field: field.into(),
        from,
        to,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::HaloUser;
    use crate::plan::test_support::{client, written as field};

    const T: &str = "c0a7b1d2-3e4f-4a5b-8c6d-7e8f9a0b1c2d";
    const CLIENT: i64 = 101;

    fn now() -> jiff::Timestamp {
        "2028-02-29T09:00:00Z".parse().unwrap()
    }

    fn ago(hours: i64) -> String {
        (now() - jiff::SignedDuration::from_hours(hours)).to_string()
    }

    fn device(id: &str, name: &str, os: &str, serial: &str) -> IntuneDevice {
        let mut properties = BTreeMap::from([
            ("deviceName".to_string(), name.to_string()),
            ("operatingSystem".to_string(), os.to_string()),
            ("model".to_string(), "Latitude 5440".to_string()),
            (LAST_SYNC.to_string(), ago(1)),
        ]);
        if !serial.is_empty() {
            properties.insert(SERIAL.into(), serial.into());
        }
        IntuneDevice {
            id: id.into(),
            device_name: name.into(),
            operating_system: os.into(),
            serial_number: (!serial.is_empty()).then(|| serial.to_string()),
            user_id: Some("oid-alice".into()),
            user_principal_name: Some("alice@contoso.com".into()),
            compliance_state: Some("compliant".into()),
            last_sync: Some(ago(1)),
            properties,
        }
    }

    fn halo(assets: Vec<HaloAsset>) -> HaloSnapshot {
        HaloSnapshot {
            clients: vec![client(CLIENT, "Contoso", 201)],
            users: vec![HaloUser {
                id: 1001,
                client_id: CLIENT,
                site_id: 201,
                name: "Alice".into(),
                azureoid: Some("oid-alice".into()),
                ..HaloUser::default()
            }],
            assets,
            ..HaloSnapshot::default()
        }
    }

    fn asset(id: i64, intune: Option<&str>, name: &str, fields: &[(i64, &str)]) -> HaloAsset {
        HaloAsset {
            id,
            client_id: CLIENT,
            site_id: 201,
            assettype_id: Some(10),
            inventory_number: Some(name.into()),
            inactive: false,
            intune_id: intune.map(str::to_string),
            fields: Some(fields.iter().map(|(k, v)| (*k, (*v).to_string())).collect()),
        }
    }

    /// The synced asset of `device` as the planner would leave it (fields and list-less values in step).
    fn synced(id: i64, d: &IntuneDevice) -> HaloAsset {
        asset(
            id,
            Some(&d.id),
            &d.device_name,
            &[
                (117, d.serial_number.as_deref().unwrap_or_default()),
                (118, "Latitude 5440"),
            ],
        )
    }

    fn seen_now(d: &IntuneDevice) -> BTreeMap<String, DeviceState> {
        BTreeMap::from([(
            device_key(T, &d.id),
            DeviceState {
                last_seen: Some(now()),
            },
        )])
    }

    /// What csp-sync wrote to asset `id`'s list-less fields when it synced `d`.
    fn wrote(id: i64, d: &IntuneDevice) -> HaloMemory {
        let mut m = HaloMemory::default();
        m.remember(HaloEntity::Asset, id, "users", json!([{"id": 1001}]));
        m.remember(
            HaloEntity::Asset,
            id,
            "azure_userprincipalname",
            json!(d.user_principal_name),
        );
        m
    }

    #[allow(clippy::needless_pass_by_value)]
    fn run_with(
        devices: DeviceRead,
        h: &HaloSnapshot,
        policy: &AssetsPolicy,
        state: &BTreeMap<String, DeviceState>,
    ) -> AssetsPlan {
        run_mem(devices, h, policy, state, &HaloMemory::default())
    }

    #[allow(clippy::needless_pass_by_value)]
    fn run_mem(
        devices: DeviceRead,
        h: &HaloSnapshot,
        policy: &AssetsPolicy,
        state: &BTreeMap<String, DeviceState>,
        memory: &HaloMemory,
    ) -> AssetsPlan {
        let input = TenantAssetsInput {
            customer_id: T,
            name: "Contoso",
            halo_client_id: CLIENT,
            site_id: None,
            devices: &devices,
        };
        plan_assets(&[input], h, policy, state, memory, now())
    }

    fn run(devices: Vec<IntuneDevice>, h: &HaloSnapshot) -> TenantPlan {
        run_with(
            DeviceRead::Devices(devices),
            h,
            &AssetsPolicy::default(),
            &BTreeMap::new(),
        )
        .tenants
        .remove(0)
    }

    #[test]
    fn asset_type_by_operating_system_and_the_default() {
        for (os, ty) in [
            ("Windows", 10),
            ("macOS", 11),
            ("iOS", 12),
            ("iPadOS", 12),
            ("Android", 13),
            ("ChromeOS", 10),
        ] {
            let p = run(vec![device("d1", "PC-1", os, "5CG1")], &halo(vec![]));
            assert_eq!(p.changes.len(), 1, "{os}");
            assert_eq!(p.changes[0].extra["assettype_id"], json!(ty), "{os}");
        }
        let mut policy = AssetsPolicy::default();
        policy.asset_types.remove("default");
        let p = run_with(
            DeviceRead::Devices(vec![device("d1", "PC-1", "ChromeOS", "5CG1")]),
            &halo(vec![]),
            &policy,
            &BTreeMap::new(),
        );
        assert!(p.tenants[0].changes.is_empty());
        assert!(p.tenants[0].errors[0].contains("asset_types"));
    }

    #[test]
    fn a_create_carries_site_fields_user_and_the_no_new_fields_flag() {
        let p = run(vec![device("d1", "PC-1", "Windows", "5CG1")], &halo(vec![]));
        let c = &p.changes[0];
        assert_eq!((c.action, c.entity), (Action::Create, HaloEntity::Asset));
        assert_eq!(c.extra["site_id"], json!(201));
        assert_eq!(c.extra["_dontaddnewfields"], json!(true));
        let body = c.payload(false);
        assert_eq!(body["inventory_number"], "PC-1");
        assert_eq!(body["intune_id"], "d1");
        assert_eq!(body["users"], json!([{"id": 1001}]));
        assert_eq!(body["azure_userprincipalname"], "alice@contoso.com");
        let fields = body["fields"].as_array().unwrap();
        assert!(fields.contains(&json!({"id": 117, "value": "5CG1"})));
        assert!(fields.contains(&json!({"id": 118, "value": "Latitude 5440"})));
    }

    #[test]
    fn placeholder_serials_are_never_identity_nor_written() {
        for s in [
            "To Be Filled By O.E.M.",
            "System Serial Number",
            "0",
            "Default string",
            "00000000",
        ] {
            assert!(is_placeholder_serial(s), "{s}");
        }
        assert!(!is_placeholder_serial("5CG1234567"));
        // Two devices with one placeholder serial: two assets; the unrelated asset with that serial is
        // not adopted.
        let h = halo(vec![asset(
            5,
            None,
            "OLD",
            &[(117, "To Be Filled By O.E.M.")],
        )]);
        let p = run(
            vec![
                device("d1", "PC-1", "Windows", "To Be Filled By O.E.M."),
                device("d2", "PC-2", "Windows", "To Be Filled By O.E.M."),
            ],
            &h,
        );
        assert_eq!(
            p.changes
                .iter()
                .filter(|c| c.action == Action::Create)
                .count(),
            2
        );
        assert!(p.changes.iter().all(|c| {
            c.payload(true)["fields"]
                .as_array()
                .unwrap()
                .iter()
                .all(|f| f["id"] != 117)
        }));
    }

    #[test]
    fn a_re_enrolled_device_is_one_asset_the_most_recently_synced() {
        let mut old = device("d-old", "PC-1", "Windows", "5CG1");
        old.last_sync = Some(ago(24 * 40));
        let new = device("d-new", "PC-1", "Windows", "5CG1");
        // No asset yet: one create, for the newer record.
        let p = run(vec![old.clone(), new.clone()], &halo(vec![]));
        assert_eq!(p.changes.len(), 1);
        assert_eq!(p.changes[0].source_key, "d-new");
        assert!(p.notes.iter().any(|n| n.contains("re-enrolment")));
        // The asset of the older record follows the newer one: no second asset.
        let p = run(vec![old.clone(), new], &halo(vec![synced(7, &old)]));
        assert_eq!(p.changes.len(), 1, "{:#?}", p.changes);
        let c = &p.changes[0];
        assert_eq!((c.action, c.halo_id), (Action::Link, Some(7)));
        assert_eq!(field(c, "intune_id"), Some(&json!("d-new")));
    }

    #[test]
    fn a_device_without_primary_user_gets_its_asset_and_no_link() {
        let mut d = device("d1", "PC-1", "Windows", "5CG1");
        d.user_id = None;
        d.user_principal_name = None;
        let out = run_with(
            DeviceRead::Devices(vec![d]),
            &halo(vec![]),
            &AssetsPolicy::default(),
            &BTreeMap::new(),
        );
        let c = &out.tenants[0].changes[0];
        assert_eq!(c.action, Action::Create);
        assert!(field(c, "users").is_none());
        assert_eq!(out.summary[0].without_primary_user, 1);
    }

    #[test]
    fn a_device_whose_user_is_out_of_scope_gets_its_asset_and_no_link() {
        // Out of the users scope: the users module made no contact for the user (or made it inactive).
        let mut d = device("d1", "PC-1", "Windows", "5CG1");
        d.user_id = Some("oid-guest".into());
        let p = run(vec![d.clone()], &halo(vec![]));
        assert_eq!(p.changes[0].action, Action::Create);
        assert!(field(&p.changes[0], "users").is_none());
        let mut h = halo(vec![]);
        h.users[0].inactive = true;
        let p = run(vec![device("d1", "PC-1", "Windows", "5CG1")], &h);
        assert!(field(&p.changes[0], "users").is_none());
    }

    #[test]
    fn a_gone_device_goes_inactive_only_after_stale_after_days_and_returns_active() {
        let d = device("d1", "PC-1", "Windows", "5CG1");
        // Another device still in Intune, so the read is not empty (the empty-source guard's case).
        let other = device("d2", "PC-2", "Windows", "5CG2");
        let h = halo(vec![synced(7, &d), synced(8, &other)]);
        let policy = AssetsPolicy::default();
        // Plans with `d` last seen `days` ago (`None`: never seen by the state).
        let gone_for = |days: Option<i64>| {
            let state = days.map_or_else(BTreeMap::new, |n| {
                seen_days_ago(std::slice::from_ref(&d), n)
            });
            run_mem(
                DeviceRead::Devices(vec![other.clone()]),
                &h,
                &policy,
                &state,
                &wrote(8, &other),
            )
        };
        // Inside the period: nothing but a note.
        let p = gone_for(Some(29));
        assert!(p.tenants[0].changes.is_empty());
        assert!(
            p.tenants[0]
                .notes
                .iter()
                .any(|n| n.contains("stale_after_days = 30"))
        );
        // Outside: made inactive, never deleted.
        let p = gone_for(Some(31));
        let c = &p.tenants[0].changes[0];
        assert_eq!((c.action, c.halo_id), (Action::Deactivate, Some(7)));
        assert_eq!(c.payload(true)["inactive"], json!(true));
        assert_eq!(p.summary[0].made_inactive, 1);
        // Never seen by this state: the clock starts now.
        let p = gone_for(None);
        assert!(p.tenants[0].changes.is_empty());
        assert_eq!(p.seen, vec![device_key(T, "d2"), device_key(T, "d1")]);
        // Back in Intune: reactivated.
        let mut back = synced(7, &d);
        back.inactive = true;
        let p = run_mem(
            DeviceRead::Devices(vec![d.clone()]),
            &halo(vec![back]),
            &policy,
            &seen_now(&d),
            &wrote(7, &d),
        );
        let c = &p.tenants[0].changes[0];
        assert_eq!(c.action, Action::Reactivate);
        assert_eq!(field(c, "inactive"), Some(&json!(false)));
    }

    #[test]
    fn a_failed_or_not_applicable_read_starts_no_clock_and_changes_nothing() {
        let d = device("d1", "PC-1", "Windows", "5CG1");
        let h = halo(vec![synced(7, &d)]);
        let policy = AssetsPolicy::default();
        let p = run_with(
            DeviceRead::Failed("403".into()),
            &h,
            &policy,
            &BTreeMap::new(),
        );
        assert!(p.seen.is_empty() && p.tenants[0].changes.is_empty());
        assert_eq!(p.tenants[0].errors.len(), 1);
        let p = run_with(
            DeviceRead::NoIntune("not applicable".into()),
            &h,
            &policy,
            &BTreeMap::new(),
        );
        assert!(p.seen.is_empty() && p.tenants[0].changes.is_empty());
        assert!(p.tenants[0].errors.is_empty());
        assert!(p.tenants[0].notes[0].contains("no Intune"));
    }

    #[test]
    fn a_renamed_device_keeps_its_asset_with_a_new_inventory_number() {
        let d = device("d1", "PC-1", "Windows", "5CG1");
        let renamed = device("d1", "PC-1-NEW", "Windows", "5CG1");
        let mut props = renamed.clone();
        props
            .properties
            .insert("deviceName".into(), "PC-1-NEW".into());
        let p = run_mem(
            DeviceRead::Devices(vec![props]),
            &halo(vec![synced(7, &d)]),
            &AssetsPolicy::default(),
            &seen_now(&d),
            &wrote(7, &d),
        );
        let c = &p.tenants[0].changes[0];
        assert_eq!(p.tenants[0].changes.len(), 1);
        assert_eq!((c.action, c.halo_id), (Action::Update, Some(7)));
        assert_eq!(c.fields.len(), 1);
        assert_eq!(field(c, "inventory_number"), Some(&json!("PC-1-NEW")));
        assert_eq!(c.reason, "renamed in Intune");
    }

    #[test]
    fn a_steady_device_plans_nothing() {
        let d = device("d1", "PC-1", "Windows", "5CG1");
        let p = run_mem(
            DeviceRead::Devices(vec![d.clone()]),
            &halo(vec![synced(7, &d)]),
            &AssetsPolicy::default(),
            &seen_now(&d),
            &wrote(7, &d),
        );
        assert!(
            p.tenants[0].changes.is_empty(),
            "{:#?}",
            p.tenants[0].changes
        );
    }

    #[test]
    fn adoption_by_serial_and_its_conflict() {
        let d = device("d1", "PC-1", "Windows", "5CG1");
        let one = halo(vec![asset(5, None, "OLD-TAG", &[(117, "5cg1 ")])]);
        let p = run(vec![d.clone()], &one);
        let c = &p.changes[0];
        assert_eq!((c.action, c.halo_id), (Action::Link, Some(5)));
        assert_eq!(field(c, "intune_id"), Some(&json!("d1")));
        assert_eq!(field(c, "users"), Some(&json!([{"id": 1001}])));
        // Two candidates: a conflict, nothing written.
        let two = halo(vec![
            asset(5, None, "A", &[(117, "5CG1")]),
            asset(6, None, "B", &[(117, "5CG1")]),
        ]);
        let p = run(vec![d.clone()], &two);
        assert!(p.changes.is_empty());
        assert_eq!(p.conflicts[0].halo_ids, vec![5, 6]);
        // An asset already holding the intune_id (Halo's own import) is adopted, never duplicated.
        let imported = halo(vec![asset(9, Some("d1"), "PC-1", &[])]);
        let p = run(vec![d.clone()], &imported);
        assert!(p.changes.iter().all(|c| c.action != Action::Create));
        assert_eq!(p.changes[0].halo_id, Some(9));
        // Without serialNumber in [assets] fields there is no adoption by serial.
        let mut policy = AssetsPolicy::default();
        policy.fields.remove(SERIAL);
        let out = run_with(
            DeviceRead::Devices(vec![d]),
            &one,
            &policy,
            &BTreeMap::new(),
        );
        assert_eq!(out.tenants[0].changes[0].action, Action::Create);
    }

    #[test]
    fn last_sync_is_written_only_when_it_moved_by_more_than_a_day() {
        let mut policy = AssetsPolicy::default();
        policy.fields.insert(LAST_SYNC.into(), 121);
        let d = device("d1", "PC-1", "Windows", "5CG1");
        let with_sync = |hours: i64| {
            let mut a = synced(7, &d);
            a.fields.as_mut().unwrap().insert(121, ago(1 + hours));
            halo(vec![a])
        };
        let p = run_mem(
            DeviceRead::Devices(vec![d.clone()]),
            &with_sync(1),
            &policy,
            &seen_now(&d),
            &wrote(7, &d),
        );
        assert!(
            p.tenants[0].changes.is_empty(),
            "an hour's move was written"
        );
        let p = run_mem(
            DeviceRead::Devices(vec![d.clone()]),
            &with_sync(48),
            &policy,
            &seen_now(&d),
            &wrote(7, &d),
        );
        let c = &p.tenants[0].changes[0];
        assert_eq!(c.fields.len(), 1);
        assert_eq!(field(c, "field:121"), Some(&json!(ago(1))));
        // The other field values travel along unchanged.
        let fields = c.payload(true)["fields"].as_array().unwrap().clone();
        assert!(fields.contains(&json!({"id": 117, "value": "5CG1"})));
        assert!(fields.contains(&json!({"id": 121, "value": ago(1)})));
    }

    /// `n` Windows devices and a Halo holding a synced asset for each (ids 1..=n).
    fn synced_devices(n: usize) -> (Vec<IntuneDevice>, HaloSnapshot) {
        let devices: Vec<IntuneDevice> = (0..n)
            .map(|i| {
                device(
                    &format!("d{i}"),
                    &format!("PC-{i}"),
                    "Windows",
                    &format!("S{i}"),
                )
            })
            .collect();
        let h = halo(
            devices
                .iter()
                .enumerate()
                .map(|(i, d)| synced(i as i64 + 1, d))
                .collect(),
        );
        (devices, h)
    }

    /// A state that last saw each of `devices` `days` ago.
    fn seen_days_ago(devices: &[IntuneDevice], days: i64) -> BTreeMap<String, DeviceState> {
        devices
            .iter()
            .map(|d| {
                (
                    device_key(T, &d.id),
                    DeviceState {
                        last_seen: Some(now() - jiff::SignedDuration::from_hours(24 * days)),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn the_deactivation_guard_holds_a_tenants_wave_of_gone_devices() {
        let (gone, h) = synced_devices(10);
        let state = seen_days_ago(&gone, 40);
        let policy = AssetsPolicy {
            max_deactivations: 2,
            ..AssetsPolicy::default()
        };
        let keep: Vec<IntuneDevice> = gone[3..].to_vec();
        // 3 of 10 gone (30%, over 2): held back.
        let p = run_with(DeviceRead::Devices(keep.clone()), &h, &policy, &state);
        let t = &p.tenants[0];
        assert!(t.changes.iter().all(|c| c.action != Action::Deactivate));
        assert_eq!(t.held_back[0].guard, GUARD_DEACTIVATION);
        assert_eq!(t.held_back[0].changes.len(), 3);
        // --allow-deactivations lets them through.
        let allow = AssetsPolicy {
            allow_deactivations: true,
            ..policy
        };
        let p = run_with(DeviceRead::Devices(keep), &h, &allow, &state);
        assert_eq!(
            p.tenants[0]
                .changes
                .iter()
                .filter(|c| c.action == Action::Deactivate)
                .count(),
            3
        );
    }

    #[test]
    fn an_empty_device_read_makes_nothing_inactive_and_starts_no_clock() {
        let (gone, h) = synced_devices(3);
        // Two long gone by the state, one never seen by it.
        let state = seen_days_ago(&gone[..2], 40);
        let policy = AssetsPolicy {
            allow_deactivations: true,
            ..AssetsPolicy::default()
        };
        let p = run_with(DeviceRead::Devices(Vec::new()), &h, &policy, &state);
        let t = &p.tenants[0];
        assert!(t.changes.is_empty(), "{:?}", t.changes);
        assert_eq!(t.held_back.len(), 1);
        assert_eq!(t.held_back[0].guard, GUARD_EMPTY_SOURCE);
        assert_eq!(t.held_back[0].changes.len(), 2);
        assert!(
            t.held_back[0].reason.contains("returned no devices"),
            "{}",
            t.held_back[0].reason
        );
        assert!(
            p.seen.is_empty(),
            "an empty read started a clock: {:?}",
            p.seen
        );
        // With nothing due yet, a note says the same.
        let p = run_with(
            DeviceRead::Devices(Vec::new()),
            &h,
            &policy,
            &BTreeMap::new(),
        );
        let t = &p.tenants[0];
        assert!(t.changes.is_empty() && t.held_back.is_empty());
        assert!(
            t.notes.iter().any(|n| n.contains("treated as unknown")),
            "{:?}",
            t.notes
        );
        assert!(p.seen.is_empty());
        // The guard off: the state's long-gone assets go inactive as before.
        let off = AssetsPolicy {
            empty_source_guard: false,
            ..policy
        };
        let p = run_with(DeviceRead::Devices(Vec::new()), &h, &off, &state);
        let gone_now = p.tenants[0]
            .changes
            .iter()
            .filter(|c| c.action == Action::Deactivate)
            .count();
        assert_eq!(gone_now, 2);
    }
}
