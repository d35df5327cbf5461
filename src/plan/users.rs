//! Users planner (joiners, movers, leavers). See SPEC section 7 (users) and section 8 (safety).
//!
//! A pure function of plain values: the Entra directory of each mapped customer tenant, the Halo snapshot,
//! the `[users]`/`[safety]` policy, the last-seen state and the clock. It returns one [`TenantPlan`] per
//! tenant with a reason on every change, conflicts that are reported and never written, and changes a
//! safety guard held back.
//!
//! Matching an in-scope Entra user to a Halo user, in order:
//! 1. a Halo user whose `azureoid` is the Entra object id (then kept in step, or reactivated);
//! 2. else the one Halo user of the tenant's client with no `azureoid` whose `emailaddress` equals the
//!    Entra `mail` or `userPrincipalName` (linked); two or more such candidates, or one candidate claimed by
//!    several Entra users (in any tenant of this run), are a conflict;
//! 3. else, when an unlinked contact with that e-mail exists only under another client, a conflict;
//! 4. else a new contact on the tenant's site.
//!
//! Leavers are Halo users linked to the tenant whose Entra user is deleted, disabled or out of scope; they
//! are deactivated after `leaver_grace_days`. Linked to the tenant: `azureoid` set and `azure_tenant_id` =
//! the tenant; where the read carries no `azure_tenant_id` (Halo's user list never does, SPEC 7), the tenant
//! csp-sync last wrote there, else the tenant whose directory holds the object id, else `azureoid` set under
//! the client mapped to the tenant; when several tenants map to that client, only once all of them were
//! read completely in this run.
//!
//! Fields the Halo read did not return (or that Halo does not keep) are compared with the value csp-sync
//! last wrote there ([`HaloMemory`]), never with the missing value: written at create and link, then only
//! when Entra's value changes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jiff::{SignedDuration, Timestamp};
use regex::Regex;
use serde_json::{Map, Value};

use super::contract::{self, Decision};
use super::{
    Action, Change, Conflict, FieldChange, HaloEntity, HeldBack, Module, TenantPlan, change_order,
    norm,
};
use crate::config::ContractMode;
use crate::halo_memory::HaloMemory;
use crate::model::{EntraUser, HaloClient, HaloSnapshot, HaloUser, TenantDirectory, UserType};

/// The Halo user fields the planner compares; the reader notes which of them a record lacks.
pub const COMPARED_FIELDS: &[&str] = &[
    "name",
    "firstname",
    "surname",
    "emailaddress",
    "title",
    "department",
    "phonenumber",
    "mobilenumber",
    "inactive",
    "azureoid",
    "azure_tenant_id",
    "covered_by_contract",
    "customfields",
];

/// What the users planner knows beyond this run's reads.
#[derive(Debug, Clone, Copy)]
pub struct UsersMemory<'a> {
    /// What csp-sync last wrote to fields Halo's reads do not return.
    pub memory: &'a HaloMemory,
    /// Halo client id -> every configured, non-skipped tenant mapped to it (lower-case), this run's or
    /// not; `None` = only this run's tenants.
    pub client_tenants: Option<&'a BTreeMap<i64, Vec<String>>>,
}

impl UsersMemory<'_> {
    /// No memory: a first run, or a lost state directory.
    pub fn none() -> UsersMemory<'static> {
        static EMPTY: std::sync::OnceLock<HaloMemory> = std::sync::OnceLock::new();
        UsersMemory {
            memory: EMPTY.get_or_init(HaloMemory::default),
            client_tenants: None,
        }
    }
}

/// `HeldBack::guard` of changes held back because the tenant's source looked empty.
pub const GUARD_EMPTY_SOURCE: &str = "empty_source_guard";
/// `HeldBack::guard` of deactivations held back because they exceeded both `[safety]` limits.
pub const GUARD_DEACTIVATION: &str = "deactivation_guard";

/// Out-of-scope reasons returned by [`in_scope`].
pub const OUT_GUEST: &str = "guest";
pub const OUT_DISABLED: &str = "disabled in Entra";
pub const OUT_EXCLUDED: &str = "excluded by exclude_upn";
pub const OUT_NO_LICENCE: &str = "no licence";
pub const OUT_NO_CONTRACT_LICENCE: &str = "no contract licence";

/// The `[users]` and `[safety]` settings the planner applies, as plain values.
#[derive(Debug, Clone)]
pub struct UsersPolicy {
    pub include_guests: bool,
    pub require_licence: bool,
    /// `skuPartNumber` or `skuId` values, any case. Empty: no contract filter and nothing flagged.
    pub contract_skus: Vec<String>,
    /// `"scope"`: only contract users are in scope; `"flag"`: everyone in scope, flagged (see
    /// [`super::contract`]).
    pub contract_mode: ContractMode,
    /// With `"flag"`: the user custom field the flag goes to instead of `covered_by_contract`.
    pub contract_field: Option<i64>,
    /// Regular expressions on `userPrincipalName`, already compiled case-insensitive.
    pub exclude_upn: Vec<Regex>,
    pub leaver_grace_days: u32,
    /// Regular expressions on the Halo e-mail address, already compiled case-insensitive.
    pub protect: Vec<Regex>,
    pub welcome_email: bool,
    pub max_deactivations: u32,
    pub max_deactivation_percent: f64,
    pub empty_source_guard: bool,
    /// `--allow-deactivations`: the deactivation guard lets everything through for this run.
    pub allow_deactivations: bool,
}

impl Default for UsersPolicy {
    /// SPEC section 4 defaults (with empty `exclude_upn`: the example file's patterns are examples).
    fn default() -> Self {
        UsersPolicy {
            include_guests: false,
            require_licence: true,
            contract_skus: Vec::new(),
            contract_mode: ContractMode::Scope,
            contract_field: None,
            exclude_upn: Vec::new(),
            leaver_grace_days: 0,
            protect: Vec::new(),
            welcome_email: false,
            max_deactivations: 5,
            max_deactivation_percent: 20.0,
            empty_source_guard: true,
            allow_deactivations: false,
        }
    }
}

/// One mapped customer tenant to plan.
#[derive(Debug, Clone)]
pub struct TenantUsersInput<'a> {
    /// Partner Center customer id = the customer's tenant id (compared lower-case).
    pub customer_id: &'a str,
    pub name: &'a str,
    pub halo_client_id: i64,
    /// Configured site for new contacts; `None` = the client's main site.
    pub site_id: Option<i64>,
    /// The tenant's directory, or why reading it failed.
    pub directory: Result<&'a TenantDirectory, String>,
    /// The tenant's Entra users as of the last sync (the state directory, SPEC 9); `None` when there is no
    /// record (a first sync, or a lost state). Only reasons depend on it: where a difference came from.
    pub previous: Option<&'a [EntraUser]>,
}

/// The last-seen state key of an Entra user: `"<tenant id>/<object id>"`, both lower-case.
pub fn last_seen_key(tenant_id: &str, object_id: &str) -> String {
    format!("{}/{}", norm(tenant_id), norm(object_id))
}

/// Whether a user is a guest: `userType` Guest, or an `#EXT#` user principal name.
pub fn is_guest(user: &EntraUser) -> bool {
    user.user_type == UserType::Guest
        || user
            .user_principal_name
            .to_ascii_uppercase()
            .contains("#EXT#")
}

/// Whether an Entra user is in scope of the users module; `Err` says why not, in the words the plan uses.
///
/// `sku_part_numbers` is the tenant's SKU id (lower-case) -> `skuPartNumber` table, so `contract_skus` may
/// name either.
pub fn in_scope(
    user: &EntraUser,
    policy: &UsersPolicy,
    sku_part_numbers: &[(String, String)],
) -> Result<(), &'static str> {
    if !policy.include_guests && is_guest(user) {
        return Err(OUT_GUEST);
    }
    if !user.account_enabled {
        return Err(OUT_DISABLED);
    }
    let upn = user.user_principal_name.trim();
    if policy.exclude_upn.iter().any(|re| re.is_match(upn)) {
        return Err(OUT_EXCLUDED);
    }
    let skus: Vec<String> = user
        .sku_ids
        .iter()
        .map(|s| norm(s))
        .filter(|s| !s.is_empty())
        .collect();
    if policy.require_licence && skus.is_empty() {
        return Err(OUT_NO_LICENCE);
    }
    if policy.contract_mode == ContractMode::Scope
        && !policy.contract_skus.is_empty()
        && !contract::holds_contract_sku(user, policy, sku_part_numbers)
    {
        return Err(OUT_NO_CONTRACT_LICENCE);
    }
    Ok(())
}

/// The last-seen keys (`"tenant/oid"`) of every in-scope user of every tenant whose directory was read;
/// the caller stores `now` for them after a sync.
pub fn seen_in_scope(tenants: &[TenantUsersInput], policy: &UsersPolicy) -> Vec<String> {
    let mut keys = Vec::new();
    for t in tenants {
        if let Ok(dir) = t.directory {
            let scoped = Scoped::of(dir, policy);
            keys.extend(
                scoped
                    .in_scope
                    .keys()
                    .map(|oid| last_seen_key(t.customer_id, oid)),
            );
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// The last-seen keys of linked, active Halo users that are leavers (deleted, disabled or out of scope) but
/// have no last-seen record, when a grace period is set. The planner keeps them (it cannot tell how long
/// they have been gone); the caller stores `now` for them so the grace period runs from this sync.
pub fn grace_started(
    tenants: &[TenantUsersInput],
    halo: &HaloSnapshot,
    policy: &UsersPolicy,
    last_seen: &BTreeMap<String, Timestamp>,
    memory: UsersMemory,
) -> Vec<String> {
    let mut keys = Vec::new();
    if policy.leaver_grace_days == 0 {
        return keys;
    }
    let owners = link_owners(tenants, halo, memory);
    for t in tenants {
        let Ok(dir) = t.directory else { continue };
        let tenant = norm(t.customer_id);
        let scoped = Scoped::of(dir, policy);
        for u in &halo.users {
            let Some(oid) = owners.linked_oid(u, &tenant) else {
                continue;
            };
            if u.inactive || scoped.in_scope.contains_key(&oid) {
                continue;
            }
            let key = last_seen_key(&tenant, &oid);
            if !last_seen.contains_key(&key) {
                keys.push(key);
            }
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// Plans the users module for every tenant. Pure: the same inputs give the same plan, in the same order.
pub fn plan_users(
    tenants: &[TenantUsersInput],
    halo: &HaloSnapshot,
    policy: &UsersPolicy,
    last_seen: &BTreeMap<String, Timestamp>,
    memory: UsersMemory,
    now: Timestamp,
) -> Vec<TenantPlan> {
    let idx = Index::new(halo);
    let owners = link_owners(tenants, halo, memory);

    // Claims of unlinked contacts by e-mail across all tenants of this run, so one contact is never linked
    // to two Entra users (two tenants mapped to one client, or mail of one = UPN of another).
    let mut claims: HashMap<i64, BTreeMap<(String, String), String>> = HashMap::new();
    for t in tenants {
        let Ok(dir) = t.directory else { continue };
        let tenant = norm(t.customer_id);
        for (oid, user) in Scoped::of(dir, policy).in_scope {
            if !idx.by_oid(&oid).is_empty() {
                continue;
            }
            for c in idx.email_matches(user) {
                if c.client_id == t.halo_client_id {
                    claims.entry(c.id).or_default().insert(
                        (tenant.clone(), oid.clone()),
                        user.user_principal_name.trim().to_string(),
                    );
                }
            }
        }
    }

    tenants
        .iter()
        .map(|t| {
            TenantPlanner {
                input: t,
                tenant: norm(t.customer_id),
                halo,
                idx: &idx,
                policy,
                claims: &claims,
                contract: ContractCounts::default(),
                memory: memory.memory,
                owners: &owners,
                previous: t.previous.map(|users| {
                    users
                        .iter()
                        .map(|u| (norm(&u.id), u))
                        .collect::<HashMap<_, _>>()
                }),
                plan: TenantPlan {
                    customer_id: norm(t.customer_id),
                    name: t.name.to_string(),
                    halo_client_id: Some(t.halo_client_id),
                    ..TenantPlan::default()
                },
            }
            .run(last_seen, now)
        })
        .collect()
}

/// A tenant's directory users, deduplicated by object id and split by scope.
struct Scoped<'d> {
    /// Present in `users`, by lower-case object id (first occurrence wins).
    present: BTreeMap<String, &'d EntraUser>,
    in_scope: BTreeMap<String, &'d EntraUser>,
    /// Present but out of scope, with why.
    out: BTreeMap<String, &'static str>,
    /// Users without an object id (ignored).
    without_id: usize,
}

impl<'d> Scoped<'d> {
    fn of(dir: &'d TenantDirectory, policy: &UsersPolicy) -> Scoped<'d> {
        let mut s = Scoped {
            present: BTreeMap::new(),
            in_scope: BTreeMap::new(),
            out: BTreeMap::new(),
            without_id: 0,
        };
        for u in &dir.users {
            let oid = norm(&u.id);
            if oid.is_empty() {
                s.without_id += 1;
                continue;
            }
            if s.present.contains_key(&oid) {
                continue;
            }
            s.present.insert(oid.clone(), u);
            match in_scope(u, policy, &dir.sku_part_numbers) {
                Ok(()) => {
                    s.in_scope.insert(oid, u);
                }
                Err(why) => {
                    s.out.insert(oid, why);
                }
            }
        }
        s
    }
}

/// Lookups over the Halo users.
struct Index<'h> {
    oid: HashMap<String, Vec<&'h HaloUser>>,
    /// Unlinked (no `azureoid`) users by normalised e-mail address.
    unlinked_email: HashMap<String, Vec<&'h HaloUser>>,
    clients: HashMap<i64, &'h HaloClient>,
}

impl<'h> Index<'h> {
    fn new(halo: &'h HaloSnapshot) -> Index<'h> {
        let mut idx = Index {
            oid: HashMap::new(),
            unlinked_email: HashMap::new(),
            clients: halo.clients.iter().map(|c| (c.id, c)).collect(),
        };
        for u in &halo.users {
            match non_empty(u.azureoid.as_deref()) {
                Some(oid) => idx.oid.entry(norm(oid)).or_default().push(u),
                None => {
                    if let Some(mail) = non_empty(u.emailaddress.as_deref()) {
                        idx.unlinked_email.entry(norm(mail)).or_default().push(u);
                    }
                }
            }
        }
        idx
    }

    fn by_oid(&self, oid: &str) -> &[&'h HaloUser] {
        self.oid.get(oid).map_or(&[], Vec::as_slice)
    }

    /// Unlinked Halo users (any client) whose e-mail equals the user's `mail` or UPN, by id, no repeats.
    fn email_matches(&self, user: &EntraUser) -> Vec<&'h HaloUser> {
        let mut keys = BTreeSet::new();
        for k in [
            user.mail.as_deref(),
            Some(user.user_principal_name.as_str()),
        ] {
            if let Some(k) = non_empty(k) {
                keys.insert(norm(k));
            }
        }
        let mut found: BTreeMap<i64, &'h HaloUser> = BTreeMap::new();
        for k in keys {
            for u in self.unlinked_email.get(&k).into_iter().flatten() {
                found.insert(u.id, u);
            }
        }
        found.into_values().collect()
    }

    fn client_label(&self, id: i64) -> String {
        match self.clients.get(&id) {
            Some(c) => format!("{} ({id})", c.name),
            None => format!("{id}"),
        }
    }
}

/// `Some(trimmed)` when the value has any non-blank text.
fn non_empty(v: Option<&str>) -> Option<&str> {
    v.map(str::trim).filter(|s| !s.is_empty())
}

/// The tenant (lower-case) each linked Halo user belongs to, by Halo id (see the module comment), and
/// each tenant's users (positions in the snapshot's users), so a tenant's leavers are found without a scan
/// of every Halo user per tenant.
struct Owners(HashMap<i64, String>, HashMap<String, Vec<usize>>);

impl Owners {
    /// The Halo users owned by `tenant` (lower-case), in snapshot order.
    fn users_of<'h>(
        &'h self,
        tenant: &str,
        users: &'h [HaloUser],
    ) -> impl Iterator<Item = &'h HaloUser> + 'h {
        self.1
            .get(tenant)
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .filter_map(|&i| users.get(i))
    }

    /// The object id a Halo user is linked to when it is linked to `tenant` (lower-case).
    fn linked_oid(&self, u: &HaloUser, tenant: &str) -> Option<String> {
        let oid = non_empty(u.azureoid.as_deref())?;
        (self.0.get(&u.id).map(String::as_str) == Some(tenant)).then(|| norm(oid))
    }
}

fn link_owners(tenants: &[TenantUsersInput], halo: &HaloSnapshot, memory: UsersMemory) -> Owners {
    // Where each object id is present, in the directories read completely in this run.
    let mut present: HashMap<String, String> = HashMap::new();
    let mut read_ok: BTreeSet<String> = BTreeSet::new();
    let mut run_client_tenants: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for t in tenants {
        let tenant = norm(t.customer_id);
        run_client_tenants
            .entry(t.halo_client_id)
            .or_default()
            .push(tenant.clone());
        if let Ok(dir) = t.directory {
            read_ok.insert(tenant.clone());
            for u in &dir.users {
                present.insert(norm(&u.id), tenant.clone());
            }
        }
    }
    let client_tenants = memory.client_tenants.unwrap_or(&run_client_tenants);
    let mut out = HashMap::new();
    for u in &halo.users {
        let Some(oid) = non_empty(u.azureoid.as_deref()).map(norm) else {
            continue;
        };
        let read_tenant = u
            .read("azure_tenant_id")
            .then(|| non_empty(u.azure_tenant_id.as_deref()).map(norm))
            .flatten();
        let written = memory
            .memory
            .last_written(super::HaloEntity::Users, u.id, "azure_tenant_id")
            .and_then(Value::as_str)
            .and_then(|t| non_empty(Some(t)))
            .map(norm);
        let owner = read_tenant
            .or(written)
            .or_else(|| present.get(&oid).cloned())
            .or_else(|| {
                let mut mapped: Vec<String> = client_tenants
                    .get(&u.client_id)
                    .map(|v| v.iter().map(|t| norm(t)).collect())
                    .unwrap_or_default();
                mapped.sort();
                mapped.dedup();
                match mapped.as_slice() {
                    [] => None,
                    [one] => Some(one.clone()),
                    // Several tenants share the client and none holds the object id: a leaver only once
                    // every one of them was read completely.
                    many if many.iter().all(|t| read_ok.contains(t)) => Some(many[0].clone()),
                    _ => None,
                }
            });
        if let Some(t) = owner {
            out.insert(u.id, t);
        }
    }
    let mut by_tenant: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, u) in halo.users.iter().enumerate() {
        if let Some(t) = out.get(&u.id) {
            by_tenant.entry(t.clone()).or_default().push(i);
        }
    }
    Owners(out, by_tenant)
}

/// The e-mail address Halo should hold for a user: `mail`, else the UPN.
fn entra_email(user: &EntraUser) -> String {
    non_empty(user.mail.as_deref())
        .or_else(|| non_empty(Some(&user.user_principal_name)))
        .unwrap_or_default()
        .to_string()
}

/// The Halo fields kept in step with Entra, in output order, with their non-empty Entra values.
fn wanted_fields(user: &EntraUser) -> Vec<(&'static str, String)> {
    let email = entra_email(user);
    let candidates: [(&'static str, Option<&str>); 8] = [
        ("name", user.display_name.as_deref()),
        ("firstname", user.given_name.as_deref()),
        ("surname", user.surname.as_deref()),
        ("emailaddress", Some(email.as_str())),
        ("title", user.job_title.as_deref()),
        ("department", user.department.as_deref()),
        ("phonenumber", user.business_phone.as_deref()),
        ("mobilenumber", user.mobile_phone.as_deref()),
    ];
    candidates
        .into_iter()
        .filter_map(|(f, v)| non_empty(v).map(|v| (f, v.to_string())))
        .collect()
}

/// A Halo user's current value of a kept-in-step field.
fn halo_value<'u>(u: &'u HaloUser, field: &str) -> Option<&'u str> {
    match field {
        "name" => Some(u.name.as_str()),
        "firstname" => u.firstname.as_deref(),
        "surname" => u.surname.as_deref(),
        "emailaddress" => u.emailaddress.as_deref(),
        "title" => u.title.as_deref(),
        "department" => u.department.as_deref(),
        "phonenumber" => u.phonenumber.as_deref(),
        "mobilenumber" => u.mobilenumber.as_deref(),
        "azureoid" => u.azureoid.as_deref(),
        "azure_tenant_id" => u.azure_tenant_id.as_deref(),
        _ => None,
    }
}

fn describe(field: &str) -> &str {
    match field {
        "firstname" => "first name",
        "emailaddress" => "e-mail address",
        "title" => "job title",
        "phonenumber" => "phone number",
        "mobilenumber" => "mobile number",
        other => other,
    }
}

fn opt_value(v: Option<&str>) -> Value {
    v.map_or(Value::Null, Value::from)
}

fn field(name: &str, from: Value, to: Value) -> FieldChange {
    FieldChange {
        field: name.to_string(),
        from,
        to,
    }
}

/// Whether a Halo user's value of `field` is unknown: the read did not return it, or Halo does not keep it.
fn unknown(u: &HaloUser, field: &str, memory: &HaloMemory) -> bool {
    !u.read(field) || memory.is_unkept(super::HaloEntity::Users, field)
}

/// Field differences between Entra and a Halo user, and the names of those among them whose Halo value is
/// unknown and that csp-sync has no record of writing. Empty Entra values never clear Halo values; e-mail
/// addresses differing only in case (or surrounding blanks) are the same. A field whose Halo value is
/// unknown is compared with the value csp-sync last wrote there.
fn field_diffs(
    u: &HaloUser,
    user: &EntraUser,
    memory: &HaloMemory,
) -> (Vec<FieldChange>, Vec<&'static str>) {
    let mut unrecorded = Vec::new();
    let diffs = wanted_fields(user)
        .into_iter()
        .filter_map(|(f, want)| {
            let have = if unknown(u, f, memory) {
                let last = memory
                    .last_written(super::HaloEntity::Users, u.id, f)
                    .and_then(Value::as_str);
                if last.is_none() {
                    unrecorded.push(f);
                }
                last
            } else {
                halo_value(u, f)
            };
            let same = if f == "emailaddress" {
                have.is_some_and(|h| norm(h) == norm(&want))
            } else {
                have == Some(want.as_str())
            };
            (!same).then(|| field(f, opt_value(have), Value::from(want)))
        })
        .collect::<Vec<_>>();
    unrecorded.retain(|f| diffs.iter().any(|d| d.field == *f));
    (diffs, unrecorded)
}

/// The reason phrase for fields written because csp-sync has no record of their Halo value.
fn unrecorded_reason(names: &[&str]) -> Option<String> {
    (!names.is_empty()).then(|| {
        let list: Vec<&str> = names.iter().map(|f| describe(f)).collect();
        format!(
            "{} written from Entra (Halo's user list does not return it, and csp-sync has no record of \
             writing it)",
            list.join(", ")
        )
    })
}

/// The kept-in-step fields among `diffs`, in words: "job title, department".
fn changed_names(diffs: &[FieldChange]) -> Option<String> {
    let names: Vec<&str> = diffs
        .iter()
        .filter(|d| {
            !matches!(
                d.field.as_str(),
                "azure_tenant_id" | "inactive" | "azureoid"
            )
        })
        .map(|d| describe(&d.field))
        .collect();
    (!names.is_empty()).then(|| names.join(", "))
}

fn date(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%d").to_string()
}

fn ids(users: &[&HaloUser]) -> String {
    users
        .iter()
        .map(|u| u.id.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where a field's difference came from (see `TenantPlanner::origin_reasons`), in reason order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Origin {
    Entra,
    Halo,
    NeverSynced,
}

/// Per tenant in `"flag"` mode: users covered and not, per contract SKU, and flags Halo did not keep.
#[derive(Default)]
struct ContractCounts {
    covered: usize,
    not_covered: usize,
    by_sku: BTreeMap<String, usize>,
    not_kept: usize,
}

struct TenantPlanner<'a, 'h> {
    input: &'a TenantUsersInput<'a>,
    /// Lower-case tenant id.
    tenant: String,
    halo: &'h HaloSnapshot,
    idx: &'a Index<'h>,
    policy: &'a UsersPolicy,
    claims: &'a HashMap<i64, BTreeMap<(String, String), String>>,
    contract: ContractCounts,
    memory: &'a HaloMemory,
    owners: &'a Owners,
    /// The tenant's Entra users as of the last sync, by lower-case object id.
    previous: Option<HashMap<String, &'a EntraUser>>,
    plan: TenantPlan,
}

impl TenantPlanner<'_, '_> {
    fn run(mut self, last_seen: &BTreeMap<String, Timestamp>, now: Timestamp) -> TenantPlan {
        let name = self.input.name;
        let dir = match &self.input.directory {
            Ok(dir) => *dir,
            Err(why) => {
                // `why` names its own fix (a token failure its cause, an API failure its hint), and
                // names no tenant when the cause is the same in all: then one line reports them all.
                self.plan.errors.push(format!(
                    "users: no user change was planned and nobody was deactivated: could not read the \
                     Entra users: {why}"
                ));
                return self.plan;
            }
        };
        let Some(client) = self.idx.clients.get(&self.input.halo_client_id).copied() else {
            self.plan.errors.push(format!(
                "users: Halo client {} (mapped to {name}, {}) was not found in Halo; nothing was planned \
                 for this tenant's users. Fix halo_client_id in its [[tenant]] entry or run `tenants map`.",
                self.input.halo_client_id, self.tenant
            ));
            return self.plan;
        };
        let scoped = Scoped::of(dir, self.policy);
        if scoped.without_id > 0 {
            self.plan.notes.push(format!(
                "{} without an object id ignored",
                crate::render::count(scoped.without_id, "Entra user", "Entra users")
            ));
        }
        let site = self.resolve_site(client);

        for user in scoped.in_scope.values() {
            match contract::cover(user, self.policy, &dir.sku_part_numbers) {
                Some(true) => {
                    self.contract.covered += 1;
                    for sku in
                        contract::contract_skus_held(user, self.policy, &dir.sku_part_numbers)
                    {
                        *self.contract.by_sku.entry(sku).or_default() += 1;
                    }
                }
                Some(false) => self.contract.not_covered += 1,
                None => {}
            }
        }
        let mut creates_blocked = 0usize;
        for (oid, user) in &scoped.in_scope {
            if !self.plan_in_scope(oid, user, client, site.as_ref()) {
                creates_blocked += 1;
            }
        }
        if creates_blocked > 0
            && let Err(why) = &site
        {
            self.plan.errors.push(format!(
                "users: {} for {name} not created: {why}",
                crate::render::count(creates_blocked, "new contact", "new contacts")
            ));
        }

        let deactivations = self.plan_leavers(&scoped, last_seen, now);
        self.guard(deactivations, &scoped, dir);
        self.contract_notes();

        self.plan.changes.sort_by(change_order);
        self.plan.conflicts.sort_by(|a, b| {
            (a.label.to_lowercase(), &a.source_key).cmp(&(b.label.to_lowercase(), &b.source_key))
        });
        self.plan
    }

    /// The site new contacts go to, or why there is none.
    fn resolve_site(&self, client: &HaloClient) -> Result<i64, String> {
        let cl = format!("{} ({})", client.name, client.id);
        if let Some(id) = self.input.site_id {
            return match self.halo.sites.iter().find(|s| s.id == id) {
                Some(s) if s.client_id != client.id => Err(format!(
                    "the configured halo_site_id {id} ({}) belongs to Halo client {}, not to {cl}; fix \
                     halo_site_id in the tenant's [[tenant]] entry",
                    s.name,
                    self.idx.client_label(s.client_id)
                )),
                Some(s) if s.inactive => Err(format!(
                    "the configured halo_site_id {id} ({}) is inactive in Halo; reactivate it or choose \
                     another site",
                    s.name
                )),
                Some(_) => Ok(id),
                // A snapshot without any sites means the reader did not load them: trust the config.
                None if self.halo.sites.is_empty() => Ok(id),
                None => Err(format!(
                    "the configured halo_site_id {id} is not a site in Halo; fix halo_site_id in the \
                     tenant's [[tenant]] entry"
                )),
            };
        }
        client.main_site_id.ok_or_else(|| {
            format!(
                "Halo client {cl} has no main site and no halo_site_id is configured; set halo_site_id \
                 in the tenant's [[tenant]] entry"
            )
        })
    }

    /// The contract flag change of a user (`u`: the Halo user when there is one; `fresh`: a create or a
    /// link, which always writes it), with its reason.
    fn contract_change(
        &mut self,
        user: &EntraUser,
        u: Option<&HaloUser>,
        fresh: bool,
    ) -> Option<(FieldChange, &'static str)> {
        let skus = self
            .input
            .directory
            .as_ref()
            .ok()?
            .sku_part_numbers
            .as_slice();
        let want = contract::cover(user, self.policy, skus)?;
        if !fresh && let Some(u) = u {
            let name = contract::field_name(self.policy);
            // What the read returned, unless Halo's read lacks the field or Halo was seen not to keep it;
            // and what csp-sync last wrote there (remembered on every write, halo_memory).
            let have = (!unknown(u, name, self.memory))
                .then(|| contract::read_flag(u, self.policy))
                .flatten();
            let last = self
                .memory
                .last_written(super::HaloEntity::Users, u.id, name)
                .and_then(|v| contract::written_flag(name, v));
            match contract::decide(want, have, last) {
                Decision::InStep => return None,
                Decision::NotKept => {
                    self.contract.not_kept += 1;
                    return None;
                }
                Decision::Write => {}
            }
        }
        let reason = if want {
            "holds a contract SKU"
        } else {
            "holds no contract SKU"
        };
        Some((
            field(
                contract::field_name(self.policy),
                contract::from_value(u, self.policy),
                contract::to_value(want, self.policy),
            ),
            reason,
        ))
    }

    /// The per-tenant contract note of `"flag"` mode.
    fn contract_notes(&mut self) {
        if self.policy.contract_mode != ContractMode::Flag || self.policy.contract_skus.is_empty() {
            return;
        }
        let c = &self.contract;
        let skus: Vec<String> = c
            .by_sku
            .iter()
            .map(|(sku, n)| format!("{sku} covers {n}"))
            .collect();
        self.plan.notes.push(format!(
            "users: contract (flag mode): {} covered, {} not covered{}",
            c.covered,
            c.not_covered,
            if skus.is_empty() {
                String::new()
            } else {
                format!(" ({})", skus.join(", "))
            }
        ));
        if c.not_kept > 0 {
            self.plan.notes.push(format!(
                "users: Halo does not keep the contract flag csp-sync wrote for {} user(s) ({} reads back                  otherwise; Halo may compute it from its contracts); not rewritten. To drive ticket rules                  from it, write it to a user custom field: [users] contract_field = ID",
                c.not_kept,
                contract::field_name(self.policy)
            ));
        }
    }

    /// Where each kept-in-step difference came from, one phrase per origin (SPEC 6): the Entra value
    /// changed since the last sync (or since csp-sync last wrote a field Halo's read does not return), the
    /// Halo value was edited while Entra's stayed as it was at the last sync, or there is no record of an
    /// earlier sync of this user. A write the last sync attempted but Halo refused reads as "edited in
    /// Halo" here; that sync reported the failure.
    fn origin_reasons(
        &self,
        oid: &str,
        user: &EntraUser,
        u: &HaloUser,
        fields: &[FieldChange],
        unrecorded: &[&str],
    ) -> Vec<String> {
        let previous = self
            .previous
            .as_ref()
            .and_then(|p| p.get(oid).copied())
            .map(wanted_fields);
        let current = wanted_fields(user);
        let mut origin: BTreeMap<Origin, Vec<&str>> = BTreeMap::new();
        for d in fields {
            let f = d.field.as_str();
            if matches!(f, "azure_tenant_id" | "inactive" | "azureoid") || unrecorded.contains(&f) {
                continue;
            }
            let Some((_, now)) = current.iter().find(|(n, _)| *n == f) else {
                continue;
            };
            let o = if unknown(u, f, self.memory) {
                // Compared with what csp-sync last wrote: the difference is Entra's.
                Origin::Entra
            } else {
                match &previous {
                    None => Origin::NeverSynced,
                    Some(prev) => {
                        let before = prev.iter().find(|(n, _)| *n == f).map(|(_, v)| v);
                        let same = before.is_some_and(|b| {
                            if f == "emailaddress" {
                                norm(b) == norm(now)
                            } else {
                                b == now
                            }
                        });
                        if same { Origin::Halo } else { Origin::Entra }
                    }
                }
            };
            origin.entry(o).or_default().push(describe(f));
        }
        origin
            .into_iter()
            .map(|(o, names)| {
                let list = names.join(", ");
                match o {
                    Origin::Entra => format!("{list} changed in Entra since the last sync"),
                    Origin::Halo => {
                        format!("{list} edited in Halo (Entra unchanged since the last sync)")
                    }
                    Origin::NeverSynced => format!(
                        "{list} {} from Entra (never synced)",
                        if names.len() == 1 {
                            "differs"
                        } else {
                            "differ"
                        }
                    ),
                }
            })
            .collect()
    }

    fn protected(&self, u: &HaloUser) -> bool {
        non_empty(u.emailaddress.as_deref())
            .is_some_and(|mail| self.policy.protect.iter().any(|re| re.is_match(mail)))
    }

    fn conflict(&mut self, oid: &str, label: &str, reason: String, halo_ids: Vec<i64>) {
        self.plan.conflicts.push(Conflict {
            module: Module::Users,
            source_key: oid.to_string(),
            label: label.to_string(),
            reason,
            halo_ids,
        });
    }

    fn change(
        &mut self,
        action: Action,
        halo_id: Option<i64>,
        oid: &str,
        label: &str,
        reason: String,
        mut fields: Vec<FieldChange>,
    ) -> &mut Change {
        // A plan of tens of thousands of creates holds every change until applied: no growth slack.
        fields.shrink_to_fit();
        self.plan.changes.push(Change {
            module: Module::Users,
            action,
            entity: HaloEntity::Users,
            halo_id,
            source_key: oid.to_string(),
            label: label.to_string(),
            reason,
            fields,
            extra: Map::new(),
        });
        let last = self.plan.changes.len() - 1;
        &mut self.plan.changes[last]
    }

    /// Matches, links, updates, reactivates or creates one in-scope user. Returns `false` only when a
    /// create was needed but no site is available.
    fn plan_in_scope(
        &mut self,
        oid: &str,
        user: &EntraUser,
        client: &HaloClient,
        site: Result<&i64, &String>,
    ) -> bool {
        let label = entra_email(user);
        let cl = format!("{} ({})", client.name, client.id);

        let linked = self.idx.by_oid(oid);
        if linked.len() > 1 {
            self.conflict(
                oid,
                &label,
                format!(
                    "{} Halo contacts are linked to this Entra user (ids {}); clear azureoid on all but \
                     one in Halo",
                    linked.len(),
                    ids(linked)
                ),
                linked.iter().map(|u| u.id).collect(),
            );
            return true;
        }
        if let Some(u) = linked.first().copied() {
            self.plan_linked(oid, user, &label, u, client, &cl);
            return true;
        }

        let matches = self.idx.email_matches(user);
        let (own, other): (Vec<&HaloUser>, Vec<&HaloUser>) =
            matches.into_iter().partition(|u| u.client_id == client.id);
        if own.len() > 1 {
            self.conflict(
                oid,
                &label,
                format!(
                    "{} contacts of Halo client {cl} have this e-mail and no Entra link (ids {}); merge \
                     them or set azureoid on the right one by hand",
                    own.len(),
                    ids(&own)
                ),
                own.iter().map(|u| u.id).collect(),
            );
            return true;
        }
        if let Some(c) = own.first().copied() {
            self.plan_link(oid, user, &label, c);
            return true;
        }
        if !other.is_empty() {
            let clients: Vec<String> = other
                .iter()
                .map(|u| u.client_id)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .map(|id| self.idx.client_label(id))
                .collect();
            self.conflict(
                oid,
                &label,
                format!(
                    "a contact with this e-mail exists under client {} (contact ids {}), not under {cl} \
                     mapped to this tenant; move the contact in Halo or fix the mapping",
                    clients.join(", "),
                    ids(&other)
                ),
                other.iter().map(|u| u.id).collect(),
            );
            return true;
        }
        let Ok(site_id) = site else {
            return false;
        };
        self.plan_create(oid, user, &label, client.id, *site_id);
        true
    }

    /// A Halo user already linked by `azureoid`: kept in step, reactivated, or reported.
    fn plan_linked(
        &mut self,
        oid: &str,
        user: &EntraUser,
        label: &str,
        u: &HaloUser,
        client: &HaloClient,
        cl: &str,
    ) {
        if u.read("azure_tenant_id")
            && let Some(t) = non_empty(u.azure_tenant_id.as_deref())
            && norm(t) != self.tenant
        {
            self.conflict(
                oid,
                label,
                format!(
                    "Halo contact {} is linked to this Entra object id but to another Entra tenant \
                     ({}); correct azure_tenant_id in Halo",
                    u.id,
                    norm(t)
                ),
                vec![u.id],
            );
            return;
        }
        if u.client_id != client.id {
            self.conflict(
                oid,
                label,
                format!(
                    "Halo contact {} linked to this Entra user belongs to client {}, not to {cl} mapped to \
                     this tenant; move the contact in Halo or fix the mapping",
                    u.id,
                    self.idx.client_label(u.client_id)
                ),
                vec![u.id],
            );
            return;
        }
        if self.protected(u) {
            self.plan.notes.push(format!(
                "{label}: contact {} is protected by [users] protect; left as it is",
                u.id
            ));
            return;
        }
        let (mut fields, unrecorded) = field_diffs(u, user, self.memory);
        // The tenant id: compared when the read returned it, else with what csp-sync last wrote there.
        let tenant_known = if unknown(u, "azure_tenant_id", self.memory) {
            self.memory
                .last_written(HaloEntity::Users, u.id, "azure_tenant_id")
                .and_then(Value::as_str)
                .map(norm)
        } else {
            non_empty(u.azure_tenant_id.as_deref()).map(norm)
        };
        let write_tenant = tenant_known.as_deref() != Some(self.tenant.as_str());
        if write_tenant {
            fields.push(field(
                "azure_tenant_id",
                opt_value(tenant_known.as_deref()),
                Value::from(self.tenant.clone()),
            ));
        }
        let mut reasons = self.origin_reasons(oid, user, u, &fields, &unrecorded);
        if let Some(r) = unrecorded_reason(&unrecorded) {
            reasons.push(r);
        }
        if write_tenant {
            reasons.push(if u.read("azure_tenant_id") {
                "Entra tenant id not yet recorded in Halo".into()
            } else {
                "Entra tenant id written (Halo's user list does not return it, and csp-sync has no \
                 record of writing it)"
                    .into()
            });
        }
        if let Some((f, why)) = self.contract_change(user, Some(u), false) {
            fields.push(f);
            reasons.push(why.to_string());
        }
        if u.inactive {
            reasons.insert(0, "back in Entra".into());
            let reason = reasons.join("; ");
            fields.push(field("inactive", Value::Bool(true), Value::Bool(false)));
            self.change(Action::Reactivate, Some(u.id), oid, label, reason, fields);
        } else if !fields.is_empty() {
            let reason = reasons.join("; ");
            self.change(Action::Update, Some(u.id), oid, label, reason, fields);
        }
    }

    /// One unlinked contact of the tenant's client has the user's e-mail: link it (and reactivate it).
    fn plan_link(&mut self, oid: &str, user: &EntraUser, label: &str, c: &HaloUser) {
        let claims = self.claims.get(&c.id);
        let claimants = claims.map_or(0, BTreeMap::len);
        if let Some(claims) = claims.filter(|_| claimants > 1) {
            // One conflict per contact in each tenant: the tenant's first claimant reports it, naming
            // every party by UPN and object id (and tenant, when they are in several).
            let first_here = claims.keys().find(|(t, _)| *t == self.tenant);
            if first_here.is_some_and(|(_, o)| o != oid) {
                return;
            }
            let tenants: BTreeSet<&String> = claims.keys().map(|(t, _)| t).collect();
            let names: Vec<String> = claims
                .iter()
                .map(|((t, o), upn)| {
                    if tenants.len() > 1 {
                        format!("{upn} (object id {o}, tenant {t})")
                    } else {
                        format!("{upn} (object id {o})")
                    }
                })
                .collect();
            let mail = c.emailaddress.as_deref().unwrap_or_default().trim();
            self.conflict(
                oid,
                if mail.is_empty() { label } else { mail },
                format!(
                    "Halo contact {} ({mail}) matches {claimants} Entra users by e-mail: {}; set azureoid \
                     on it by hand or change one of the e-mail addresses",
                    c.id,
                    names.join(", ")
                ),
                vec![c.id],
            );
            return;
        }
        if self.protected(c) {
            self.plan.notes.push(format!(
                "{label}: contact {} has this e-mail but is protected by [users] protect; not linked and \
                 no new contact created",
                c.id
            ));
            return;
        }
        let mut fields = vec![
            field(
                "azureoid",
                opt_value(c.azureoid.as_deref()),
                Value::from(oid.to_string()),
            ),
            field(
                "azure_tenant_id",
                opt_value(c.azure_tenant_id.as_deref()),
                Value::from(self.tenant.clone()),
            ),
        ];
        fields.extend(field_diffs(c, user, self.memory).0);
        let mut reason = "linked by e-mail".to_string();
        if let Some(names) = changed_names(&fields) {
            reason = format!("{reason}; {names} updated from Entra");
        }
        if let Some((f, why)) = self.contract_change(user, Some(c), true) {
            fields.push(f);
            reason = format!("{reason}; {why}");
        }
        if c.inactive {
            fields.push(field("inactive", Value::Bool(true), Value::Bool(false)));
            reason.push_str("; reactivated (the contact was inactive in Halo)");
        }
        self.change(Action::Link, Some(c.id), oid, label, reason, fields);
    }

    fn plan_create(
        &mut self,
        oid: &str,
        user: &EntraUser,
        label: &str,
        client_id: i64,
        site_id: i64,
    ) {
        let mut wanted = wanted_fields(user);
        if !wanted.iter().any(|(f, _)| *f == "name") {
            // Halo needs a name: given name + surname, else the e-mail address.
            let joined = [user.given_name.as_deref(), user.surname.as_deref()]
                .into_iter()
                .filter_map(non_empty)
                .collect::<Vec<_>>()
                .join(" ");
            let name = if joined.is_empty() {
                label.to_string()
            } else {
                joined
            };
            wanted.insert(0, ("name", name));
        }
        let mut fields: Vec<FieldChange> = wanted
            .into_iter()
            .map(|(f, v)| field(f, Value::Null, Value::from(v)))
            .collect();
        fields.push(field("azureoid", Value::Null, Value::from(oid.to_string())));
        fields.push(field(
            "azure_tenant_id",
            Value::Null,
            Value::from(self.tenant.clone()),
        ));
        if let Some((f, _)) = self.contract_change(user, None, true) {
            fields.push(f);
        }
        let mut extra = Map::new();
        extra.insert("client_id".into(), Value::from(client_id));
        extra.insert("site_id".into(), Value::from(site_id));
        extra.insert(
            "sendwelcomeemail".into(),
            Value::Bool(self.policy.welcome_email),
        );
        self.change(
            Action::Create,
            None,
            oid,
            label,
            "new in Entra".into(),
            fields,
        )
        .extra = extra;
    }

    /// Leavers: active Halo users linked to this tenant whose Entra user is gone, disabled or out of scope.
    /// Returns the deactivations due now (not yet in the plan: the guards decide).
    fn plan_leavers(
        &mut self,
        scoped: &Scoped,
        last_seen: &BTreeMap<String, Timestamp>,
        now: Timestamp,
    ) -> Vec<Change> {
        let grace = self.policy.leaver_grace_days;
        let mut leavers: Vec<&HaloUser> = self
            .owners
            .users_of(&self.tenant, &self.halo.users)
            .filter(|u| !u.inactive)
            .filter(|u| {
                self.owners
                    .linked_oid(u, &self.tenant)
                    .is_some_and(|oid| !scoped.in_scope.contains_key(&oid))
            })
            .collect();
        leavers.sort_by_key(|u| u.id);
        let mut out = Vec::new();
        for u in leavers {
            let Some(oid) = self.owners.linked_oid(u, &self.tenant) else {
                continue;
            };
            // Absent from `users` (reported in `deleted_ids` or simply gone): deleted. Present in `users`
            // wins over `deleted_ids`, as `users` is the current state after applying a delta.
            let why = scoped.out.get(&oid).copied().unwrap_or("deleted in Entra");
            let label = non_empty(u.emailaddress.as_deref())
                .map(str::to_string)
                .or_else(|| scoped.present.get(&oid).map(|e| entra_email(e)))
                .or_else(|| non_empty(Some(&u.name)).map(str::to_string))
                .unwrap_or_else(|| oid.clone());
            if self.protected(u) {
                self.plan.notes.push(format!(
                    "{label}: {why}, but contact {} is protected by [users] protect; not deactivated",
                    u.id
                ));
                continue;
            }
            let reason = if grace == 0 {
                why.to_string()
            } else {
                let key = last_seen_key(&self.tenant, &oid);
                let Some(seen) = last_seen.get(&key).copied() else {
                    self.plan.notes.push(format!(
                        "{label}: {why}; no record of when it was last seen in scope, so its \
                         {grace}-day leaver grace period starts now"
                    ));
                    continue;
                };
                let due = seen
                    .saturating_add(SignedDuration::from_hours(i64::from(grace) * 24))
                    .unwrap_or(Timestamp::MAX);
                if due > now {
                    self.plan.notes.push(format!(
                        "{label}: {why}, missing since {}, deactivated after {}",
                        date(seen),
                        date(due)
                    ));
                    continue;
                }
                format!("{why}, missing since {}", date(seen))
            };
            out.push(Change {
                module: Module::Users,
                action: Action::Deactivate,
                entity: HaloEntity::Users,
                halo_id: Some(u.id),
                source_key: oid,
                label,
                reason,
                fields: vec![field("inactive", Value::Bool(false), Value::Bool(true))],
                extra: Map::new(),
            });
        }
        out
    }

    /// The empty-source guard, then the deactivation guard; what passes joins the plan's changes.
    fn guard(&mut self, mut deactivations: Vec<Change>, scoped: &Scoped, dir: &TenantDirectory) {
        if deactivations.is_empty() {
            return;
        }
        deactivations.sort_by(change_order);
        let name = self.input.name;
        let active_linked = self
            .owners
            .users_of(&self.tenant, &self.halo.users)
            .filter(|u| !u.inactive && self.owners.linked_oid(u, &self.tenant).is_some())
            .count();
        let n = deactivations.len();
        if self.policy.empty_source_guard && (dir.users.is_empty() || scoped.in_scope.is_empty()) {
            let what = if dir.users.is_empty() {
                "no users"
            } else {
                "no users in scope"
            };
            // --allow-deactivations lifts the count guard only: an empty answer is far more often a
            // permission or scope fault than a whole tenant leaving (SPEC 8), so the flag says so.
            let flag = if self.policy.allow_deactivations {
                ". --allow-deactivations does not override this guard: it only lifts [safety] \
                 max_deactivations / max_deactivation_percent, and an empty directory is more often a \
                 permission or scope fault than every user leaving. If the tenant really has no users \
                 left, set [safety] empty_source_guard = false for one run"
            } else {
                ""
            };
            self.plan.held_back.push(HeldBack {
                module: Module::Users,
                guard: GUARD_EMPTY_SOURCE.into(),
                reason: format!(
                    "the Entra directory of {name} returned {what} while Halo holds {} for it; treated \
                     as unknown, {} held back. Check the Graph permissions and the [users] scope settings \
                     (include_guests, require_licence, contract_skus, exclude_upn){flag}",
                    crate::render::count(active_linked, "active synced user", "active synced users"),
                    crate::render::count(n, "deactivation", "deactivations")
                ),
                changes: deactivations,
            });
            return;
        }
        let percent = if active_linked == 0 {
            100.0
        } else {
            n as f64 * 100.0 / active_linked as f64
        };
        let over_count = n > self.policy.max_deactivations as usize;
        let over_percent = percent > self.policy.max_deactivation_percent;
        if over_count && over_percent && !self.policy.allow_deactivations {
            self.plan.held_back.push(HeldBack {
                module: Module::Users,
                guard: GUARD_DEACTIVATION.into(),
                reason: format!(
                    "{} ({percent:.1}% of {active_linked} active synced users) exceed both \
                     [safety] max_deactivations = {} and max_deactivation_percent = {}; review them and \
                     rerun with --allow-deactivations to apply them",
                    crate::render::count(n, "deactivation", "deactivations"),
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

#[cfg(test)]
#[allow(clippy::many_single_char_names)]
mod tests {
    use super::*;
    use crate::model::{HaloSite, TenantDirectory};
    use crate::plan::test_support::{client, field_changes as fields};
    use serde_json::json;

    const T1: &str = "aaaaaaaa-0000-0000-0000-000000000001";
    const T2: &str = "aaaaaaaa-0000-0000-0000-000000000002";
    const E3: &str = "05e9a617-0261-4cee-bb44-138d3ef5d965";
    const BP: &str = "cbdc14ab-d96c-4c30-b9f4-6ada7cdc1d46";
    const CLIENT: i64 = 42;
    const OTHER: i64 = 50;

    fn now() -> Timestamp {
        "2026-12-01T12:00:00Z".parse().unwrap()
    }

    fn days_ago(d: i64) -> Timestamp {
        now()
            .checked_add(SignedDuration::from_hours(-24 * d))
            .unwrap()
    }

    fn entra(oid: &str, upn: &str) -> EntraUser {
        EntraUser {
            id: oid.into(),
            user_principal_name: upn.into(),
            display_name: Some(format!("User {oid}")),
            given_name: Some("Given".into()),
            surname: Some("Surname".into()),
            mail: Some(upn.into()),
            account_enabled: true,
            user_type: UserType::Member,
            sku_ids: vec![E3.into()],
            job_title: Some("Engineer".into()),
            department: None,
            business_phone: None,
            mobile_phone: None,
        }
    }

    fn dir(users: Vec<EntraUser>) -> TenantDirectory {
        TenantDirectory {
            users,
            deleted_ids: Vec::new(),
            sku_part_numbers: vec![(E3.into(), "SPE_E3".into()), (BP.into(), "SPB".into())],
        }
    }

    /// A Halo contact already in step with `entra(oid, upn)` and linked to `tenant`.
    fn synced(id: i64, oid: &str, upn: &str, tenant: &str) -> HaloUser {
        HaloUser {
            id,
            client_id: CLIENT,
            site_id: 420,
            name: format!("User {oid}"),
            firstname: Some("Given".into()),
            surname: Some("Surname".into()),
            emailaddress: Some(upn.into()),
            title: Some("Engineer".into()),
            azureoid: Some(oid.into()),
            azure_tenant_id: Some(tenant.into()),
            ..HaloUser::default()
        }
    }

    /// A hand-made contact with no Entra link.
    fn contact(id: i64, client_id: i64, email: &str) -> HaloUser {
        HaloUser {
            id,
            client_id,
            site_id: 420,
            name: "Hand Made".into(),
            emailaddress: Some(email.into()),
            ..HaloUser::default()
        }
    }

    fn halo(users: Vec<HaloUser>) -> HaloSnapshot {
        HaloSnapshot {
            clients: vec![
                HaloClient {
                    azure_tenant_ids: vec![T1.into(), T2.into()],
                    ..client(CLIENT, "Acme", 420)
                },
                client(OTHER, "Other Ltd", 500),
            ],
            sites: vec![
                HaloSite {
                    id: 420,
                    client_id: CLIENT,
                    name: "Main".into(),
                    inactive: false,
                },
                HaloSite {
                    id: 421,
                    client_id: CLIENT,
                    name: "Branch".into(),
                    inactive: false,
                },
                HaloSite {
                    id: 500,
                    client_id: OTHER,
                    name: "Other main".into(),
                    inactive: false,
                },
            ],
            users,
            licences: Vec::new(),
            assets: Vec::new(),
        }
    }

    fn input<'a>(tenant: &'a str, d: &'a TenantDirectory) -> TenantUsersInput<'a> {
        TenantUsersInput {
            customer_id: tenant,
            name: "Acme",
            halo_client_id: CLIENT,
            site_id: None,
            directory: Ok(d),
            previous: None,
        }
    }

    fn policy() -> UsersPolicy {
        UsersPolicy {
            max_deactivations: 100,
            max_deactivation_percent: 100.0,
            ..UsersPolicy::default()
        }
    }

    fn ci(re: &str) -> Regex {
        regex::RegexBuilder::new(re)
            .case_insensitive(true)
            .build()
            .unwrap()
    }

    /// Plans and checks the invariants every plan must meet.
    fn run(
        tenants: &[TenantUsersInput],
        h: &HaloSnapshot,
        p: &UsersPolicy,
        seen: &BTreeMap<String, Timestamp>,
    ) -> Vec<TenantPlan> {
        let plans = plan_users(tenants, h, p, seen, UsersMemory::none(), now());
        assert_eq!(plans.len(), tenants.len());
        for t in &plans {
            let mut sorted = t.changes.clone();
            sorted.sort_by(change_order);
            assert_eq!(
                sorted, t.changes,
                "changes are ordered by action then label"
            );
            let held = t.held_back.iter().flat_map(|h| &h.changes);
            for c in t.changes.iter().chain(held) {
                assert!(!c.reason.is_empty(), "change without reason: {c:?}");
                assert_eq!(c.module, Module::Users);
                assert_eq!(c.entity, HaloEntity::Users);
                assert!(!c.label.is_empty());
                assert!(!c.fields.is_empty(), "change without fields: {c:?}");
                assert_eq!(c.halo_id.is_none(), c.action == Action::Create);
            }
            for c in &t.conflicts {
                assert!(!c.reason.is_empty());
            }
        }
        plans
    }

    /// Plans one tenant whose users at the last sync were `before`.
    fn run_after(d: &TenantDirectory, before: &[EntraUser], h: &HaloSnapshot) -> TenantPlan {
        let i = TenantUsersInput {
            previous: Some(before),
            ..input(T1, d)
        };
        run(&[i], h, &policy(), &BTreeMap::new()).remove(0)
    }

    fn run1(d: &TenantDirectory, h: &HaloSnapshot, p: &UsersPolicy) -> TenantPlan {
        run(&[input(T1, d)], h, p, &BTreeMap::new()).remove(0)
    }

    fn set(u: &mut HaloUser, f: &str, v: &Value) {
        let s = v.as_str().map(str::to_string);
        match f {
            "name" => u.name = s.unwrap_or_default(),
            "firstname" => u.firstname = s,
            "surname" => u.surname = s,
            "emailaddress" => u.emailaddress = s,
            "title" => u.title = s,
            "department" => u.department = s,
            "phonenumber" => u.phonenumber = s,
            "mobilenumber" => u.mobilenumber = s,
            "azureoid" => u.azureoid = s,
            "azure_tenant_id" => u.azure_tenant_id = s,
            "inactive" => u.inactive = v.as_bool().unwrap(),
            "covered_by_contract" => u.covered_by_contract = v.as_bool(),
            "customfields" => u.customfields = v.clone(),
            other => panic!("unexpected field {other}"),
        }
    }

    /// Applies the planned changes (not held-back ones) to the snapshot as Halo would.
    fn apply(h: &mut HaloSnapshot, plans: &[TenantPlan]) {
        for c in plans.iter().flat_map(|t| &t.changes) {
            match c.halo_id {
                None => {
                    let id = h.users.iter().map(|u| u.id).max().unwrap_or(0) + 1;
                    let mut u = HaloUser {
                        id,
                        client_id: c.extra["client_id"].as_i64().unwrap(),
                        site_id: c.extra["site_id"].as_i64().unwrap(),
                        ..HaloUser::default()
                    };
                    for f in &c.fields {
                        assert!(f.from.is_null());
                        set(&mut u, &f.field, &f.to);
                    }
                    h.users.push(u);
                }
                Some(id) => {
                    let u = h.users.iter_mut().find(|u| u.id == id).unwrap();
                    for f in &c.fields {
                        set(u, &f.field, &f.to);
                    }
                }
            }
        }
    }

    fn actions(t: &TenantPlan) -> Vec<(Action, String)> {
        t.changes
            .iter()
            .map(|c| (c.action, c.source_key.clone()))
            .collect()
    }

    // ---- scope ----

    #[test]
    fn scope_members_enabled_licensed() {
        let p = UsersPolicy::default();
        let parts = dir(vec![]).sku_part_numbers;
        let ok = entra("o1", "a@x.com");
        assert_eq!(in_scope(&ok, &p, &parts), Ok(()));

        let mut guest = entra("o2", "bob_gmail.com#EXT#@x.onmicrosoft.com");
        assert_eq!(
            in_scope(&guest, &p, &parts),
            Err(OUT_GUEST),
            "#EXT# UPN is a guest even as Member"
        );
        guest.user_principal_name = "bob@x.com".into();
        guest.user_type = UserType::Guest;
        assert_eq!(in_scope(&guest, &p, &parts), Err(OUT_GUEST));
        let with_guests = UsersPolicy {
            include_guests: true,
            ..UsersPolicy::default()
        };
        assert_eq!(in_scope(&guest, &with_guests, &parts), Ok(()));

        let mut disabled = entra("o3", "c@x.com");
        disabled.account_enabled = false;
        assert_eq!(in_scope(&disabled, &p, &parts), Err(OUT_DISABLED));

        let mut unlicensed = entra("o4", "d@x.com");
        unlicensed.sku_ids.clear();
        assert_eq!(in_scope(&unlicensed, &p, &parts), Err(OUT_NO_LICENCE));
        let no_req = UsersPolicy {
            require_licence: false,
            ..UsersPolicy::default()
        };
        assert_eq!(in_scope(&unlicensed, &no_req, &parts), Ok(()));
    }

    #[test]
    fn scope_exclude_upn_is_on_upn() {
        let p = UsersPolicy {
            exclude_upn: vec![ci("^admin@"), ci("^svc[-_.]")],
            ..UsersPolicy::default()
        };
        let parts = Vec::new();
        assert_eq!(
            in_scope(&entra("o", "Admin@x.com"), &p, &parts),
            Err(OUT_EXCLUDED)
        );
        assert_eq!(
            in_scope(&entra("o", "svc-backup@x.com"), &p, &parts),
            Err(OUT_EXCLUDED)
        );
        assert_eq!(in_scope(&entra("o", "sysadmin@x.com"), &p, &parts), Ok(()));
        let mut by_mail = entra("o", "jane@x.com");
        by_mail.mail = Some("admin@x.com".into());
        assert_eq!(
            in_scope(&by_mail, &p, &parts),
            Ok(()),
            "mail is not the UPN"
        );
    }

    #[test]
    fn scope_contract_skus_by_part_number_or_id_any_case() {
        let parts = dir(vec![]).sku_part_numbers;
        let by_part = UsersPolicy {
            contract_skus: vec!["spe_e3".into()],
            ..UsersPolicy::default()
        };
        let by_id = UsersPolicy {
            contract_skus: vec![E3.to_uppercase()],
            ..UsersPolicy::default()
        };
        let e3 = entra("o1", "a@x.com");
        let mut bp = entra("o2", "b@x.com");
        bp.sku_ids = vec![BP.into()];
        for p in [&by_part, &by_id] {
            assert_eq!(in_scope(&e3, p, &parts), Ok(()));
            assert_eq!(in_scope(&bp, p, &parts), Err(OUT_NO_CONTRACT_LICENCE));
        }
        // Part number unknown to the table: only an id can match.
        assert_eq!(in_scope(&e3, &by_part, &[]), Err(OUT_NO_CONTRACT_LICENCE));
        assert_eq!(in_scope(&e3, &by_id, &[]), Ok(()));
        // Without require_licence an unlicensed user still fails the contract filter.
        let mut none = entra("o3", "c@x.com");
        none.sku_ids.clear();
        let p = UsersPolicy {
            require_licence: false,
            ..by_part.clone()
        };
        assert_eq!(in_scope(&none, &p, &parts), Err(OUT_NO_CONTRACT_LICENCE));
    }

    // ---- joiners ----

    #[test]
    fn new_user_is_created_on_main_site_with_all_fields() {
        let mut u = entra("o1", "jane@acme.com");
        u.mail = Some("Jane.Doe@acme.com".into());
        u.department = Some("Finance".into());
        u.business_phone = Some("+44 20 7946 0000".into());
        u.mobile_phone = Some("+44 7700 900000".into());
        let d = dir(vec![u]);
        let t = run1(&d, &halo(vec![]), &policy());
        assert!(t.errors.is_empty() && t.conflicts.is_empty());
        assert_eq!(t.changes.len(), 1);
        let c = &t.changes[0];
        assert_eq!(c.action, Action::Create);
        assert_eq!(c.reason, "new in Entra");
        assert_eq!(c.source_key, "o1");
        assert_eq!(c.label, "Jane.Doe@acme.com");
        assert_eq!(
            Value::Object(c.extra.clone()),
            json!({"client_id": 42, "site_id": 420, "sendwelcomeemail": false})
        );
        let names: Vec<&str> = c.fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            names,
            [
                "name",
                "firstname",
                "surname",
                "emailaddress",
                "title",
                "department",
                "phonenumber",
                "mobilenumber",
                "azureoid",
                "azure_tenant_id"
            ]
        );
        let f = fields(c);
        assert_eq!(f["emailaddress"], (Value::Null, json!("Jane.Doe@acme.com")));
        assert_eq!(f["azure_tenant_id"], (Value::Null, json!(T1)));
        assert_eq!(f["phonenumber"].1, json!("+44 20 7946 0000"));
    }

    #[test]
    fn create_uses_configured_site_and_welcome_email_and_skips_empty_fields() {
        let mut u = entra("o1", "jane@acme.com");
        u.display_name = None;
        u.job_title = Some("   ".into());
        u.mail = None;
        let d = dir(vec![u]);
        let mut i = input(T1, &d);
        i.site_id = Some(421);
        let p = UsersPolicy {
            welcome_email: true,
            ..policy()
        };
        let t = run(&[i], &halo(vec![]), &p, &BTreeMap::new()).remove(0);
        let c = &t.changes[0];
        assert_eq!(c.extra["site_id"], json!(421));
        assert_eq!(c.extra["sendwelcomeemail"], json!(true));
        let f = fields(c);
        assert_eq!(
            f["name"].1,
            json!("Given Surname"),
            "name falls back to given + surname"
        );
        assert_eq!(
            f["emailaddress"].1,
            json!("jane@acme.com"),
            "UPN when no mail"
        );
        assert!(!f.contains_key("title") && !f.contains_key("department"));
    }

    #[test]
    fn no_site_is_a_tenant_error_but_other_changes_are_planned() {
        let d = dir(vec![entra("o1", "new@acme.com"), {
            let mut u = entra("o2", "old@acme.com");
            u.job_title = Some("Boss".into());
            u
        }]);
        let mut h = halo(vec![synced(1, "o2", "old@acme.com", T1)]);
        h.clients[0].main_site_id = None;
        let t = run1(&d, &h, &policy());
        assert_eq!(actions(&t), [(Action::Update, "o2".to_string())]);
        assert_eq!(t.errors.len(), 1);
        assert!(t.errors[0].contains("1 new contact for") && t.errors[0].contains("halo_site_id"));

        // A configured site of another client, or unknown, is refused too.
        for site in [500, 999] {
            let mut i = input(T1, &d);
            i.site_id = Some(site);
            let t = run(&[i], &halo(vec![]), &policy(), &BTreeMap::new()).remove(0);
            assert!(t.changes.is_empty());
            assert_eq!(t.errors.len(), 1, "{:?}", t.errors);
            assert!(t.errors[0].contains(&format!("halo_site_id {site}")));
        }
    }

    #[test]
    fn unknown_client_is_a_tenant_error() {
        let d = dir(vec![entra("o1", "a@acme.com")]);
        let mut i = input(T1, &d);
        i.halo_client_id = 77;
        let t = run(&[i], &halo(vec![]), &policy(), &BTreeMap::new()).remove(0);
        assert!(t.changes.is_empty());
        assert!(t.errors[0].contains("Halo client 77"));
    }

    // ---- movers ----

    #[test]
    fn job_title_change_is_an_update_of_that_field_only() {
        let mut u = entra("o1", "a@acme.com");
        u.job_title = Some("Director".into());
        let d = dir(vec![u]);
        let before = [entra("o1", "a@acme.com")];
        let t = run_after(&d, &before, &halo(vec![synced(7, "o1", "a@acme.com", T1)]));
        assert_eq!(t.changes.len(), 1);
        let c = &t.changes[0];
        assert_eq!((c.action, c.halo_id), (Action::Update, Some(7)));
        assert_eq!(c.reason, "job title changed in Entra since the last sync");
        assert_eq!(c.fields.len(), 1);
        assert_eq!(fields(c)["title"], (json!("Engineer"), json!("Director")));
        assert_eq!(
            c.payload(false),
            json!({"id": 7, "title": "Director", "_dont_fire_automations": true})
        );
    }

    #[test]
    fn several_fields_changed_are_named_in_the_reason() {
        let mut u = entra("o1", "a@acme.com");
        u.department = Some("Sales".into());
        u.surname = Some("Smith".into());
        let d = dir(vec![u]);
        let before = [entra("o1", "a@acme.com")];
        let t = run_after(&d, &before, &halo(vec![synced(7, "o1", "a@acme.com", T1)]));
        assert_eq!(
            t.changes[0].reason,
            "surname, department changed in Entra since the last sync"
        );
    }

    #[test]
    fn a_field_edited_in_halo_while_entra_kept_its_value_says_so() {
        let d = dir(vec![entra("o1", "a@acme.com")]);
        let mut h = synced(7, "o1", "a@acme.com", T1);
        h.title = Some("Boss".into());
        let t = run_after(&d, &d.users, &halo(vec![h]));
        let c = &t.changes[0];
        assert_eq!(
            c.reason,
            "job title edited in Halo (Entra unchanged since the last sync)"
        );
        assert_eq!(fields(c)["title"], (json!("Boss"), json!("Engineer")));
    }

    #[test]
    fn a_difference_without_a_previous_sync_is_never_synced() {
        let mut u = entra("o1", "a@acme.com");
        u.job_title = Some("Director".into());
        u.department = Some("Sales".into());
        let d = dir(vec![u]);
        let t = run1(
            &d,
            &halo(vec![synced(7, "o1", "a@acme.com", T1)]),
            &policy(),
        );
        assert_eq!(
            t.changes[0].reason,
            "job title, department differ from Entra (never synced)"
        );
        // A state that does not know this user is no previous sync of it either.
        let other = [entra("o9", "z@acme.com")];
        let t = run_after(&d, &other, &halo(vec![synced(7, "o1", "a@acme.com", T1)]));
        assert_eq!(
            t.changes[0].reason,
            "job title, department differ from Entra (never synced)"
        );
    }

    #[test]
    fn each_field_is_named_under_its_own_origin() {
        let mut before = entra("o1", "a@acme.com");
        before.mobile_phone = Some("+44 1".into());
        let mut now = before.clone();
        now.job_title = Some("Director".into());
        let d = dir(vec![now]);
        let mut h = synced(7, "o1", "a@acme.com", T1);
        h.mobilenumber = Some("+44 2".into());
        let t = run_after(&d, &[before], &halo(vec![h]));
        assert_eq!(
            t.changes[0].reason,
            "job title changed in Entra since the last sync; mobile number edited in Halo (Entra \
             unchanged since the last sync)"
        );
        // An e-mail address differing only in case at the last sync is the same address.
        let mut before = entra("o1", "A@Acme.com");
        before.mail = Some("A@Acme.com".into());
        let d = dir(vec![entra("o1", "a@acme.com")]);
        let mut h = synced(7, "o1", "a@acme.com", T1);
        h.emailaddress = Some("old@acme.com".into());
        let t = run_after(&d, &[before], &halo(vec![h]));
        assert_eq!(
            t.changes[0].reason,
            "e-mail address edited in Halo (Entra unchanged since the last sync)"
        );
    }

    #[test]
    fn empty_entra_values_never_clear_halo_values() {
        let mut u = entra("o1", "a@acme.com");
        u.job_title = None;
        u.display_name = Some(String::new());
        u.given_name = Some("  ".into());
        let mut h = synced(7, "o1", "a@acme.com", T1);
        h.department = Some("Sales".into());
        h.mobilenumber = Some("+1 555".into());
        let d = dir(vec![u]);
        let t = run1(&d, &halo(vec![h]), &policy());
        assert!(t.changes.is_empty(), "{:?}", t.changes);
    }

    #[test]
    fn names_compare_case_sensitively_emails_do_not() {
        let mut u = entra("o1", "a@acme.com");
        u.mail = Some("Alice.Smith@Acme.com".into());
        u.display_name = Some("alice smith".into());
        let mut h = synced(7, "o1", "alice.smith@acme.com ", T1);
        h.name = "Alice Smith".into();
        let d = dir(vec![u]);
        let t = run1(&d, &halo(vec![h]), &policy());
        assert_eq!(t.changes.len(), 1);
        let f = fields(&t.changes[0]);
        assert_eq!(f.keys().collect::<Vec<_>>(), ["name"]);
        assert_eq!(f["name"], (json!("Alice Smith"), json!("alice smith")));
    }

    #[test]
    fn linked_by_oid_case_insensitively_and_missing_tenant_id_is_recorded() {
        let mut h = synced(7, "O1-UPPER", "a@acme.com", T1);
        h.azure_tenant_id = None;
        h.name = "User o1-upper".into();
        let d = dir(vec![entra("o1-upper", "a@acme.com")]);
        let mut snap = halo(vec![h]);
        let plans = run(&[input(T1, &d)], &snap, &policy(), &BTreeMap::new());
        let t = &plans[0];
        assert_eq!(t.changes.len(), 1, "{:?}", t.changes);
        assert_eq!(t.changes[0].action, Action::Update);
        assert_eq!(
            fields(&t.changes[0])["azure_tenant_id"],
            (Value::Null, json!(T1))
        );
        assert_eq!(
            t.changes[0].reason,
            "Entra tenant id not yet recorded in Halo"
        );
        apply(&mut snap, &plans);
        assert!(
            run(&[input(T1, &d)], &snap, &policy(), &BTreeMap::new())[0]
                .changes
                .is_empty()
        );
    }

    // ---- linking ----

    #[test]
    fn mixed_case_email_links_with_oid_and_tenant() {
        let mut u = entra("o1", "alice@acme.com");
        u.mail = Some("Alice@Acme.com".into());
        let mut c = contact(9, CLIENT, " ALICE@acme.COM ");
        c.name = "User o1".into();
        let d = dir(vec![u]);
        let t = run1(&d, &halo(vec![c]), &policy());
        assert_eq!(t.changes.len(), 1);
        let ch = &t.changes[0];
        assert_eq!((ch.action, ch.halo_id), (Action::Link, Some(9)));
        assert!(ch.reason.starts_with("linked by e-mail"));
        let f = fields(ch);
        assert_eq!(f["azureoid"], (Value::Null, json!("o1")));
        assert_eq!(f["azure_tenant_id"], (Value::Null, json!(T1)));
        assert!(
            !f.contains_key("emailaddress"),
            "case-only difference is no change"
        );
        assert!(!f.contains_key("name"));
        assert!(f.contains_key("title") && f.contains_key("firstname"));
    }

    #[test]
    fn link_by_upn_when_mail_differs_writes_the_mail() {
        let mut u = entra("o1", "jdoe@acme.onmicrosoft.com");
        u.mail = Some("jane@acme.com".into());
        let d = dir(vec![u]);
        let t = run1(
            &d,
            &halo(vec![contact(9, CLIENT, "JDoe@acme.onmicrosoft.com")]),
            &policy(),
        );
        let ch = &t.changes[0];
        assert_eq!(ch.action, Action::Link);
        assert_eq!(
            fields(ch)["emailaddress"],
            (json!("JDoe@acme.onmicrosoft.com"), json!("jane@acme.com"))
        );
        assert_eq!(
            ch.reason,
            "linked by e-mail; name, first name, surname, e-mail address, job title updated from Entra"
        );
    }

    #[test]
    fn inactive_candidate_is_linked_and_reactivated_not_duplicated() {
        let mut c = contact(9, CLIENT, "bob@acme.com");
        c.inactive = true;
        let d = dir(vec![entra("o1", "bob@acme.com")]);
        let mut snap = halo(vec![c]);
        let plans = run(&[input(T1, &d)], &snap, &policy(), &BTreeMap::new());
        let t = &plans[0];
        assert_eq!(actions(t), [(Action::Link, "o1".to_string())]);
        assert_eq!(
            fields(&t.changes[0])["inactive"],
            (json!(true), json!(false))
        );
        assert!(t.changes[0].reason.contains("reactivated"));
        apply(&mut snap, &plans);
        assert!(!snap.users[0].inactive);
        assert!(
            run(&[input(T1, &d)], &snap, &policy(), &BTreeMap::new())[0]
                .changes
                .is_empty()
        );
    }

    #[test]
    fn two_candidates_are_a_conflict_naming_them() {
        let d = dir(vec![entra("o1", "bob@acme.com")]);
        let h = halo(vec![
            contact(9, CLIENT, "bob@acme.com"),
            contact(11, CLIENT, "Bob@Acme.com"),
        ]);
        let t = run1(&d, &h, &policy());
        assert!(t.changes.is_empty());
        assert_eq!(t.conflicts.len(), 1);
        assert_eq!(t.conflicts[0].halo_ids, [9, 11]);
        assert!(t.conflicts[0].reason.contains("ids 9, 11"));
    }

    #[test]
    fn one_contact_matching_two_entra_users_is_one_conflict_naming_both() {
        // Mail of one is the UPN of the other.
        let mut a = entra("oa", "info@acme.com");
        a.mail = Some("info@acme.com".into());
        let mut b = entra("ob", "reception@acme.com");
        b.mail = Some("info@acme.com".into());
        let d = dir(vec![a, b]);
        let t = run1(
            &d,
            &halo(vec![contact(9, CLIENT, "info@acme.com")]),
            &policy(),
        );
        assert!(t.changes.is_empty(), "{:?}", t.changes);
        // Once, naming both parties by UPN and object id (not twice, each by the shared mail).
        assert_eq!(t.conflicts.len(), 1, "{:?}", t.conflicts);
        for c in &t.conflicts {
            assert_eq!(c.halo_ids, [9]);
            assert_eq!(c.label, "info@acme.com");
            assert!(c.reason.contains("matches 2 Entra users"));
            assert!(
                c.reason
                    .contains("info@acme.com (object id oa), reception@acme.com (object id ob)"),
                "{}",
                c.reason
            );
            assert!(!c.reason.contains("tenant"), "{}", c.reason);
        }
    }

    #[test]
    fn candidate_only_under_another_client_is_a_conflict() {
        let d = dir(vec![entra("o1", "bob@acme.com")]);
        let t = run1(
            &d,
            &halo(vec![contact(9, OTHER, "bob@acme.com")]),
            &policy(),
        );
        assert!(t.changes.is_empty());
        assert_eq!(t.conflicts.len(), 1);
        assert!(
            t.conflicts[0]
                .reason
                .contains("exists under client Other Ltd (50)")
        );
        assert_eq!(t.conflicts[0].halo_ids, [9]);
    }

    #[test]
    fn own_client_candidate_wins_over_another_clients_contact() {
        let d = dir(vec![entra("o1", "bob@acme.com")]);
        let h = halo(vec![
            contact(9, OTHER, "bob@acme.com"),
            contact(10, CLIENT, "bob@acme.com"),
        ]);
        let t = run1(&d, &h, &policy());
        assert!(t.conflicts.is_empty());
        assert_eq!(t.changes[0].halo_id, Some(10));
    }

    #[test]
    fn linked_contact_under_another_client_is_a_conflict() {
        let mut h = synced(7, "o1", "a@acme.com", T1);
        h.client_id = OTHER;
        h.title = Some("Old".into());
        let d = dir(vec![entra("o1", "a@acme.com")]);
        let t = run1(&d, &halo(vec![h]), &policy());
        assert!(t.changes.is_empty());
        assert_eq!(t.conflicts.len(), 1);
        assert!(
            t.conflicts[0]
                .reason
                .contains("belongs to client Other Ltd (50)")
        );
    }

    #[test]
    fn two_contacts_with_one_oid_are_a_conflict() {
        let d = dir(vec![entra("o1", "a@acme.com")]);
        let h = halo(vec![
            synced(7, "o1", "a@acme.com", T1),
            synced(8, "o1", "a2@acme.com", T1),
        ]);
        let t = run1(&d, &h, &policy());
        assert!(t.changes.is_empty());
        assert_eq!(t.conflicts[0].halo_ids, [7, 8]);
    }

    #[test]
    fn out_of_scope_user_leaves_matching_contact_alone() {
        let mut u = entra("o1", "admin@acme.com");
        u.sku_ids.clear();
        let mut g = entra("o2", "x_gmail.com#EXT#@acme.onmicrosoft.com");
        g.mail = Some("x@gmail.com".into());
        let d = dir(vec![u, g]);
        let mut c = contact(9, CLIENT, "admin@acme.com");
        c.inactive = true;
        let h = halo(vec![c, contact(10, CLIENT, "x@gmail.com")]);
        let t = run1(&d, &h, &policy());
        assert!(t.changes.is_empty() && t.conflicts.is_empty() && t.notes.is_empty());
    }

    // ---- protect ----

    #[test]
    fn protected_contacts_are_never_changed() {
        let p = UsersPolicy {
            protect: vec![ci("^ceo@")],
            ..policy()
        };
        // Linked with field differences.
        let mut u = entra("o1", "CEO@acme.com");
        u.job_title = Some("Chief".into());
        // Candidate for linking.
        let u2 = entra("o2", "ceo@sub.acme.com");
        let d = dir(vec![u, u2]);
        let h = halo(vec![
            synced(7, "o1", "ceo@acme.com", T1),
            contact(8, CLIENT, "CEO@sub.acme.com"),
            // Leaver.
            synced(9, "o3", "ceo@old.acme.com", T1),
        ]);
        let t = run1(&d, &h, &p);
        assert!(t.changes.is_empty(), "{:?}", t.changes);
        assert!(t.held_back.is_empty());
        assert_eq!(t.notes.len(), 3, "{:?}", t.notes);
        assert!(t.notes.iter().all(|n| n.contains("protect")));
    }

    // ---- leavers ----

    #[test]
    fn leavers_are_deactivated_with_their_reason() {
        let mut disabled = entra("od", "dis@acme.com");
        disabled.account_enabled = false;
        let mut unlicensed = entra("ou", "unl@acme.com");
        unlicensed.sku_ids.clear();
        let mut excluded = entra("ox", "admin@acme.com");
        excluded.job_title = None;
        let mut d = dir(vec![
            entra("ok", "ok@acme.com"),
            disabled,
            unlicensed,
            excluded,
        ]);
        d.deleted_ids = vec!["OR".into()];
        let p = UsersPolicy {
            exclude_upn: vec![ci("^admin@")],
            ..policy()
        };
        let mut already = synced(6, "oi", "inactive@acme.com", T1);
        already.inactive = true;
        let h = halo(vec![
            synced(1, "ok", "ok@acme.com", T1),
            synced(2, "od", "dis@acme.com", T1),
            synced(3, "ou", "unl@acme.com", T1),
            synced(4, "ox", "admin@acme.com", T1),
            synced(5, "or", "removed@acme.com", T1),
            already,
            synced(7, "og", "gone@acme.com", T1),
            // Never deactivated: no azureoid, or linked to another tenant.
            contact(8, CLIENT, "hand@acme.com"),
            synced(9, "ot2", "t2@acme.com", T2),
        ]);
        let t = run1(&d, &h, &p);
        let got: Vec<(Option<i64>, &str)> = t
            .changes
            .iter()
            .map(|c| (c.halo_id, c.reason.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (Some(4), OUT_EXCLUDED),
                (Some(2), OUT_DISABLED),
                (Some(7), "deleted in Entra"),
                (Some(5), "deleted in Entra"),
                (Some(3), OUT_NO_LICENCE),
            ]
        );
        for c in &t.changes {
            assert_eq!(c.action, Action::Deactivate);
            assert_eq!(c.payload(true), json!({"id": c.halo_id, "inactive": true}));
        }
    }

    #[test]
    fn grace_period_keeps_then_deactivates() {
        let d = dir(vec![entra("ok", "ok@acme.com")]);
        let h = halo(vec![
            synced(1, "ok", "ok@acme.com", T1),
            synced(2, "og", "gone@acme.com", T1),
        ]);
        let p = UsersPolicy {
            leaver_grace_days: 14,
            ..policy()
        };
        let key = last_seen_key(T1, "og");

        // Within the grace period: kept, with a note.
        let seen = BTreeMap::from([(key.clone(), days_ago(10))]);
        let t = run(&[input(T1, &d)], &h, &p, &seen).remove(0);
        assert!(t.changes.is_empty());
        assert_eq!(
            t.notes,
            [
                "gone@acme.com: deleted in Entra, missing since 2026-11-21, deactivated after 2026-12-05"
            ]
        );

        // Exactly at the end of the grace period: deactivated.
        let seen = BTreeMap::from([(key.clone(), days_ago(14))]);
        let t = run(&[input(T1, &d)], &h, &p, &seen).remove(0);
        assert_eq!(t.changes.len(), 1);
        assert_eq!(
            t.changes[0].reason,
            "deleted in Entra, missing since 2026-11-17"
        );

        // Long after.
        let seen = BTreeMap::from([(key.clone(), days_ago(40))]);
        let t = run(&[input(T1, &d)], &h, &p, &seen).remove(0);
        assert_eq!(t.changes[0].action, Action::Deactivate);

        // No record: kept, and the caller is told to start the clock.
        let none = BTreeMap::new();
        let t = run(&[input(T1, &d)], &h, &p, &none).remove(0);
        assert!(t.changes.is_empty());
        assert!(t.notes[0].contains("grace period starts now"));
        assert_eq!(
            grace_started(&[input(T1, &d)], &h, &p, &none, UsersMemory::none()),
            std::slice::from_ref(&key)
        );
        assert!(grace_started(&[input(T1, &d)], &h, &p, &seen, UsersMemory::none()).is_empty());
        assert!(
            grace_started(&[input(T1, &d)], &h, &policy(), &none, UsersMemory::none()).is_empty()
        );

        // Grace 0: immediately, whatever the state says.
        let t = run(
            &[input(T1, &d)],
            &h,
            &policy(),
            &BTreeMap::from([(key, days_ago(0))]),
        )
        .remove(0);
        assert_eq!(t.changes[0].reason, "deleted in Entra");
    }

    #[test]
    fn disabled_user_is_deactivated_then_reactivated_when_back() {
        let mut u = entra("o1", "a@acme.com");
        u.account_enabled = false;
        let mut snap = halo(vec![
            synced(1, "o1", "a@acme.com", T1),
            synced(2, "o2", "b@acme.com", T1),
        ]);
        let mut d = dir(vec![u, entra("o2", "b@acme.com")]);

        let plans = run(&[input(T1, &d)], &snap, &policy(), &BTreeMap::new());
        assert_eq!(actions(&plans[0]), [(Action::Deactivate, "o1".to_string())]);
        assert_eq!(plans[0].changes[0].reason, "disabled in Entra");
        apply(&mut snap, &plans);
        assert!(snap.users[0].inactive);
        assert!(
            run(&[input(T1, &d)], &snap, &policy(), &BTreeMap::new())[0]
                .changes
                .is_empty()
        );

        let before = d.users.clone();
        d.users[0].account_enabled = true;
        d.users[0].job_title = Some("Returned".into());
        let after_sync = TenantUsersInput {
            previous: Some(&before),
            ..input(T1, &d)
        };
        let plans = run(&[after_sync], &snap, &policy(), &BTreeMap::new());
        let c = &plans[0].changes[0];
        assert_eq!((c.action, c.halo_id), (Action::Reactivate, Some(1)));
        assert_eq!(
            c.reason,
            "back in Entra; job title changed in Entra since the last sync"
        );
        assert_eq!(fields(c)["inactive"], (json!(true), json!(false)));
        apply(&mut snap, &plans);
        assert!(!snap.users[0].inactive);
        assert!(
            run(&[input(T1, &d)], &snap, &policy(), &BTreeMap::new())[0]
                .changes
                .is_empty()
        );
    }

    // ---- two tenants, one client ----

    #[test]
    fn user_in_two_tenants_mapped_to_one_client() {
        // The same person has an account in both tenants; Halo has one contact linked to T1.
        let d1 = dir(vec![entra("o1", "pat@acme.com")]);
        let d2 = dir(vec![
            entra("o2", "pat@acme.com"),
            entra("o3", "sam@acme.com"),
        ]);
        let mut snap = halo(vec![synced(1, "o1", "pat@acme.com", T1)]);
        let both = [input(T1, &d1), input(T2, &d2)];
        let plans = run(&both, &snap, &policy(), &BTreeMap::new());
        assert!(plans[0].changes.is_empty(), "T1's contact is in step");
        // T2's pat is its own key: a new contact, not a deactivation of T1's.
        let got: Vec<_> = plans[1]
            .changes
            .iter()
            .map(|c| (c.action, c.source_key.as_str()))
            .collect();
        assert_eq!(got, [(Action::Create, "o2"), (Action::Create, "o3")]);
        for c in &plans[1].changes {
            assert_eq!(fields(c)["azure_tenant_id"].1, json!(T2));
        }
        apply(&mut snap, &plans);
        let again = run(&both, &snap, &policy(), &BTreeMap::new());
        assert!(
            again
                .iter()
                .all(|t| t.changes.is_empty() && t.conflicts.is_empty())
        );

        // T2 loses pat: only T2's contact is deactivated, T1's is untouched.
        let d2b = dir(vec![entra("o3", "sam@acme.com")]);
        let plans = run(
            &[input(T1, &d1), input(T2, &d2b)],
            &snap,
            &policy(),
            &BTreeMap::new(),
        );
        assert!(plans[0].changes.is_empty());
        let c = &plans[1].changes;
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c[0].action, c[0].source_key.as_str()),
            (Action::Deactivate, "o2")
        );
        assert_eq!(c[0].halo_id, Some(2));
    }

    #[test]
    fn one_unlinked_contact_claimed_from_two_tenants_is_a_conflict() {
        let d1 = dir(vec![entra("o1", "pat@acme.com")]);
        let d2 = dir(vec![entra("o2", "pat@acme.com")]);
        let h = halo(vec![contact(5, CLIENT, "pat@acme.com")]);
        let plans = run(
            &[input(T1, &d1), input(T2, &d2)],
            &h,
            &policy(),
            &BTreeMap::new(),
        );
        for t in &plans {
            assert!(t.changes.is_empty());
            assert_eq!(t.conflicts.len(), 1);
            assert!(t.conflicts[0].reason.contains(&format!("tenant {T1}")));
            assert!(t.conflicts[0].reason.contains(&format!("tenant {T2}")));
        }
        // A single tenant links it.
        let plans = run(&[input(T1, &d1)], &h, &policy(), &BTreeMap::new());
        assert_eq!(plans[0].changes[0].action, Action::Link);
    }

    // ---- guards ----

    /// `active` active users linked to T1 of which the first `gone` are missing from Entra, plus one
    /// newcomer to create.
    fn guard_case(active: usize, gone: usize) -> (TenantDirectory, HaloSnapshot) {
        let mut users = vec![entra("new", "new@acme.com")];
        let mut halo_users = Vec::new();
        for i in 0..active {
            let oid = format!("o{i:03}");
            let mail = format!("u{i:03}@acme.com");
            if i >= gone {
                users.push(entra(&oid, &mail));
            }
            halo_users.push(synced(i as i64 + 1, &oid, &mail, T1));
        }
        (dir(users), halo(halo_users))
    }

    fn guarded(active: usize, gone: usize, allow: bool) -> TenantPlan {
        let (d, h) = guard_case(active, gone);
        let p = UsersPolicy {
            max_deactivations: 2,
            max_deactivation_percent: 20.0,
            allow_deactivations: allow,
            ..UsersPolicy::default()
        };
        let t = run1(&d, &h, &p);
        assert_eq!(
            t.changes
                .iter()
                .filter(|c| c.action == Action::Create)
                .count(),
            1
        );
        t
    }

    fn deactivations(t: &TenantPlan) -> usize {
        t.changes
            .iter()
            .filter(|c| c.action == Action::Deactivate)
            .count()
    }

    #[test]
    fn deactivation_guard_needs_both_limits_exceeded() {
        // Exactly at the count limit (2), far over the percentage: not held.
        let t = guarded(4, 2, false);
        assert_eq!((deactivations(&t), t.held_back.len()), (2, 0));
        // Over the count, exactly at the percentage (3 of 15 = 20%): not held.
        let t = guarded(15, 3, false);
        assert_eq!((deactivations(&t), t.held_back.len()), (3, 0));
        // Over the count, under the percentage (3 of 20 = 15%): not held.
        let t = guarded(20, 3, false);
        assert_eq!((deactivations(&t), t.held_back.len()), (3, 0));
        // Over both (3 of 10 = 30%): all held, the create still planned.
        let t = guarded(10, 3, false);
        assert_eq!(deactivations(&t), 0);
        assert_eq!(t.held_back.len(), 1);
        let hb = &t.held_back[0];
        assert_eq!(hb.guard, GUARD_DEACTIVATION);
        assert_eq!(hb.changes.len(), 3);
        assert!(hb.reason.contains("max_deactivations = 2"), "{}", hb.reason);
        assert!(hb.reason.contains("max_deactivation_percent = 20"));
        assert!(hb.reason.contains("30.0% of 10"));
        assert!(hb.reason.contains("--allow-deactivations"));
        // Allowed for this run.
        let t = guarded(10, 3, true);
        assert_eq!((deactivations(&t), t.held_back.len()), (3, 0));
    }

    #[test]
    fn empty_source_guard_holds_back_deactivations() {
        let h = halo(vec![
            synced(1, "o1", "a@acme.com", T1),
            synced(2, "o2", "b@acme.com", T1),
        ]);
        // Nobody returned.
        let d = dir(vec![]);
        let t = run1(&d, &h, &policy());
        assert!(t.changes.is_empty());
        assert_eq!(t.held_back.len(), 1);
        assert_eq!(t.held_back[0].guard, GUARD_EMPTY_SOURCE);
        assert_eq!(t.held_back[0].changes.len(), 2);
        assert!(t.held_back[0].reason.contains("returned no users"));

        // Users returned, none in scope (a licence read gone wrong).
        let mut a = entra("o1", "a@acme.com");
        a.sku_ids.clear();
        let d = dir(vec![a]);
        let t = run1(&d, &h, &policy());
        assert_eq!(t.held_back[0].guard, GUARD_EMPTY_SOURCE);
        assert!(t.held_back[0].reason.contains("no users in scope"));

        // --allow-deactivations does not override it.
        let p = UsersPolicy {
            allow_deactivations: true,
            ..policy()
        };
        assert_eq!(run1(&dir(vec![]), &h, &p).held_back.len(), 1);

        // Switched off: deactivated.
        let p = UsersPolicy {
            empty_source_guard: false,
            ..policy()
        };
        let t = run1(&dir(vec![]), &h, &p);
        assert_eq!(deactivations(&t), 2);
        assert!(t.held_back.is_empty());
    }

    #[test]
    fn read_failure_is_a_tenant_error_and_nothing_is_deactivated() {
        let h = halo(vec![synced(1, "o1", "a@acme.com", T1)]);
        let empty = TenantDirectory::default();
        let i = TenantUsersInput {
            directory: Err("403 Forbidden from Graph".into()),
            ..input(T1, &empty)
        };
        let plans = run(&[i], &h, &policy(), &BTreeMap::new());
        let t = &plans[0];
        assert!(t.changes.is_empty() && t.held_back.is_empty());
        assert_eq!(t.errors.len(), 1);
        assert!(t.errors[0].contains("403 Forbidden from Graph"));
        assert_eq!(t.customer_id, T1);
        assert_eq!(t.halo_client_id, Some(CLIENT));
        assert!(seen_in_scope(&plans_inputs_err(), &policy()).is_empty());
    }

    fn plans_inputs_err() -> Vec<TenantUsersInput<'static>> {
        vec![TenantUsersInput {
            customer_id: T1,
            name: "Acme",
            halo_client_id: CLIENT,
            site_id: None,
            directory: Err("timeout".into()),
            previous: None,
        }]
    }

    // ---- state, order, idempotence ----

    #[test]
    fn seen_in_scope_lists_in_scope_keys_per_tenant() {
        let mut off = entra("O2", "b@acme.com");
        off.account_enabled = false;
        let d1 = dir(vec![entra("O1", "a@acme.com"), off]);
        let d2 = dir(vec![entra("o1", "a@acme.com")]);
        let keys = seen_in_scope(&[input(T1, &d1), input(&T2.to_uppercase(), &d2)], &policy());
        assert_eq!(keys, [format!("{T1}/o1"), format!("{T2}/o1")]);
    }

    #[test]
    fn changes_are_ordered_by_action_then_label() {
        let mut upd = entra("u", "m@acme.com");
        upd.job_title = Some("New".into());
        let d = dir(vec![
            entra("c2", "z@acme.com"),
            entra("c1", "B@acme.com"),
            upd,
        ]);
        let h = halo(vec![
            synced(1, "u", "m@acme.com", T1),
            synced(2, "gone", "a@acme.com", T1),
        ]);
        let t = run1(&d, &h, &policy());
        let got: Vec<(Action, &str)> = t
            .changes
            .iter()
            .map(|c| (c.action, c.label.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (Action::Create, "B@acme.com"),
                (Action::Create, "z@acme.com"),
                (Action::Update, "m@acme.com"),
                (Action::Deactivate, "a@acme.com"),
            ]
        );
        // Same inputs, same plan.
        assert_eq!(run1(&d, &h, &policy()), t);
    }

    #[test]
    fn applying_the_plan_then_planning_again_gives_no_changes() {
        let mut mover = entra("om", "mover@acme.com");
        mover.department = Some("Ops".into());
        mover.mobile_phone = Some("+1 555 0100".into());
        let mut returning = entra("or", "back@acme.com");
        returning.job_title = None;
        let mut by_upn = entra("ou", "upn@acme.onmicrosoft.com");
        by_upn.mail = Some("Real@Acme.com".into());
        let mut disabled = entra("od", "dis@acme.com");
        disabled.account_enabled = false;
        let d = dir(vec![
            entra("on", "new@acme.com"),
            mover,
            returning,
            by_upn,
            disabled,
            entra("oc", "Hand@Acme.com"),
        ]);
        let mut back = synced(2, "or", "back@acme.com", T1);
        back.inactive = true;
        let mut inactive_candidate = contact(5, CLIENT, "hand@acme.com");
        inactive_candidate.inactive = true;
        let mut snap = halo(vec![
            synced(1, "om", "mover@acme.com", T1),
            back,
            synced(3, "od", "dis@acme.com", T1),
            contact(4, CLIENT, "upn@acme.onmicrosoft.com"),
            inactive_candidate,
            synced(6, "gone", "gone@acme.com", T1),
        ]);
        let plans = run(&[input(T1, &d)], &snap, &policy(), &BTreeMap::new());
        let mut got: Vec<Action> = plans[0].changes.iter().map(|c| c.action).collect();
        got.sort();
        assert_eq!(
            got,
            [
                Action::Create,
                Action::Update,
                Action::Link,
                Action::Link,
                Action::Deactivate,
                Action::Deactivate,
                Action::Reactivate
            ]
        );
        apply(&mut snap, &plans);
        let again = run(&[input(T1, &d)], &snap, &policy(), &BTreeMap::new());
        assert!(again[0].changes.is_empty(), "{:?}", again[0].changes);
        assert!(again[0].conflicts.is_empty() && again[0].held_back.is_empty());
        assert_eq!(snap.users.len(), 7);
    }

    #[test]
    fn recreated_account_gets_a_new_contact_and_the_old_one_leaves() {
        let d = dir(vec![entra("new-oid", "kim@acme.com")]);
        let mut snap = halo(vec![synced(1, "old-oid", "kim@acme.com", T1)]);
        let plans = run(&[input(T1, &d)], &snap, &policy(), &BTreeMap::new());
        let got: Vec<_> = plans[0]
            .changes
            .iter()
            .map(|c| (c.action, c.source_key.as_str(), c.halo_id))
            .collect();
        assert_eq!(
            got,
            [
                (Action::Create, "new-oid", None),
                (Action::Deactivate, "old-oid", Some(1))
            ]
        );
        apply(&mut snap, &plans);
        assert!(
            run(&[input(T1, &d)], &snap, &policy(), &BTreeMap::new())[0]
                .changes
                .is_empty()
        );
    }

    #[test]
    fn contact_linked_to_another_tenant_is_a_conflict_not_a_takeover() {
        let d = dir(vec![entra("o1", "a@acme.com")]);
        let h = halo(vec![synced(1, "o1", "a@acme.com", T2)]);
        let t = run1(&d, &h, &policy());
        assert!(t.changes.is_empty());
        assert_eq!(t.conflicts.len(), 1);
        assert!(t.conflicts[0].reason.contains(T2));
    }

    #[test]
    fn present_user_wins_over_a_stale_deleted_id() {
        let mut d = dir(vec![entra("o1", "a@acme.com")]);
        d.deleted_ids = vec!["o1".into()];
        let h = halo(vec![synced(1, "o1", "a@acme.com", T1)]);
        let t = run1(&d, &h, &policy());
        assert!(t.changes.is_empty() && t.held_back.is_empty());
    }

    #[test]
    fn contract_filter_applies_to_matching_and_leavers() {
        let mut bp = entra("o2", "b@acme.com");
        bp.sku_ids = vec![BP.into()];
        let d = dir(vec![
            entra("o1", "a@acme.com"),
            bp,
            entra("o3", "c@acme.com"),
        ]);
        let h = halo(vec![
            synced(1, "o1", "a@acme.com", T1),
            synced(2, "o2", "b@acme.com", T1),
        ]);
        let p = UsersPolicy {
            contract_skus: vec!["SPE_E3".into()],
            ..policy()
        };
        let t = run1(&d, &h, &p);
        let got: Vec<_> = t
            .changes
            .iter()
            .map(|c| (c.action, c.source_key.as_str(), c.reason.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (Action::Create, "o3", "new in Entra"),
                (Action::Deactivate, "o2", OUT_NO_CONTRACT_LICENCE)
            ]
        );
    }

    /// A memory of having written `value` to `field` of Halo user `id`.
    fn written(id: i64, field: &str, value: Value) -> crate::halo_memory::HaloMemory {
        let mut m = crate::halo_memory::HaloMemory::default();
        m.written
            .entry(format!("Users/{id}"))
            .or_default()
            .insert(field.to_string(), value);
        m
    }

    fn run_mem(
        d: &TenantDirectory,
        h: &HaloSnapshot,
        p: &UsersPolicy,
        m: &crate::halo_memory::HaloMemory,
    ) -> TenantPlan {
        let memory = UsersMemory {
            memory: m,
            client_tenants: None,
        };
        plan_users(&[input(T1, d)], h, p, &BTreeMap::new(), memory, now()).remove(0)
    }

    fn flag_policy(skus: &[&str]) -> UsersPolicy {
        UsersPolicy {
            contract_skus: skus.iter().map(|s| (*s).to_string()).collect(),
            contract_mode: ContractMode::Flag,
            ..policy()
        }
    }

    fn with_skus(mut u: EntraUser, skus: &[&str]) -> EntraUser {
        u.sku_ids = skus.iter().map(|s| (*s).to_string()).collect();
        u
    }

    fn flag_of(p: &TenantPlan, label: &str, field: &str) -> Option<Value> {
        p.changes
            .iter()
            .find(|c| c.label == label)
            .and_then(|c| c.fields.iter().find(|f| f.field == field))
            .map(|f| f.to.clone())
    }

    #[test]
    fn flag_mode_syncs_everyone_and_flags_contract_holders() {
        let d = dir(vec![
            entra("o1", "a@acme.com"),
            with_skus(entra("o2", "b@acme.com"), &[BP]),
        ]);
        let mut h = halo(vec![]);
        let p = flag_policy(&["SPE_E3"]);
        let t = run1(&d, &h, &p);
        assert_eq!(t.changes.len(), 2, "{:?}", t.changes);
        assert_eq!(
            flag_of(&t, "a@acme.com", "covered_by_contract"),
            Some(Value::Bool(true))
        );
        assert_eq!(
            flag_of(&t, "b@acme.com", "covered_by_contract"),
            Some(Value::Bool(false))
        );
        assert!(
            t.notes
                .iter()
                .any(|n| n.contains("1 covered, 1 not covered (SPE_E3 covers 1)")),
            "{:?}",
            t.notes
        );
        // Scope mode leaves b out: holding only a SKU the contract does not cover.
        let scoped = run1(
            &d,
            &h,
            &UsersPolicy {
                contract_mode: ContractMode::Scope,
                ..p.clone()
            },
        );
        assert_eq!(scoped.changes.len(), 1);
        assert_eq!(flag_of(&scoped, "a@acme.com", "covered_by_contract"), None);
        // Once applied, a rerun changes nothing.
        apply(&mut h, std::slice::from_ref(&t));
        assert!(run1(&d, &h, &p).changes.is_empty());
    }

    #[test]
    fn a_licence_change_flips_exactly_that_user_and_deactivates_nobody() {
        let p = flag_policy(&["SPE_E3"]);
        let d = dir(vec![
            entra("o1", "a@acme.com"),
            with_skus(entra("o2", "b@acme.com"), &[BP]),
            entra("o3", "c@acme.com"),
        ]);
        let mut h = halo(vec![]);
        let t = run1(&d, &h, &p);
        apply(&mut h, std::slice::from_ref(&t));
        // a loses E3 (keeps Business Premium), b gains E3.
        let d = dir(vec![
            with_skus(entra("o1", "a@acme.com"), &[BP]),
            with_skus(entra("o2", "b@acme.com"), &[BP, E3]),
            entra("o3", "c@acme.com"),
        ]);
        let t = run1(&d, &h, &p);
        assert_eq!(t.changes.len(), 2, "{:?}", t.changes);
        assert!(t.changes.iter().all(|c| c.action == Action::Update));
        assert_eq!(
            flag_of(&t, "a@acme.com", "covered_by_contract"),
            Some(Value::Bool(false))
        );
        assert_eq!(
            flag_of(&t, "b@acme.com", "covered_by_contract"),
            Some(Value::Bool(true))
        );
        assert_eq!(
            t.changes
                .iter()
                .find(|c| c.label == "a@acme.com")
                .unwrap()
                .reason,
            "holds no contract SKU"
        );
    }

    #[test]
    fn flag_mode_without_contract_skus_flags_nothing() {
        let d = dir(vec![entra("o1", "a@acme.com")]);
        let t = run1(&d, &halo(vec![]), &flag_policy(&[]));
        assert_eq!(t.changes.len(), 1);
        assert_eq!(flag_of(&t, "a@acme.com", "covered_by_contract"), None);
        assert!(
            !t.notes.iter().any(|n| n.contains("contract")),
            "{:?}",
            t.notes
        );
    }

    #[test]
    fn the_flag_goes_to_a_custom_field_when_configured() {
        let p = UsersPolicy {
            contract_field: Some(12),
            ..flag_policy(&["SPB"])
        };
        let d = dir(vec![with_skus(entra("o1", "a@acme.com"), &[BP])]);
        let mut h = halo(vec![]);
        let t = run1(&d, &h, &p);
        assert_eq!(
            flag_of(&t, "a@acme.com", "customfields"),
            Some(serde_json::json!([{"id": 12, "value": true}]))
        );
        assert_eq!(flag_of(&t, "a@acme.com", "covered_by_contract"), None);
        apply(&mut h, std::slice::from_ref(&t));
        assert!(run1(&d, &h, &p).changes.is_empty());
        // The read without custom fields (no include_custom_fields): the value last written decides.
        h.users[0].customfields = Value::Null;
        h.users[0].unread = vec!["customfields".into()];
        let id = h.users[0].id;
        let m = written(
            id,
            "customfields",
            serde_json::json!([{"id": 12, "value": true}]),
        );
        assert!(run_mem(&d, &h, &p, &m).changes.is_empty());
        // ... and without that record the flag is written again, once.
        let t = run1(&d, &h, &p);
        assert_eq!(t.changes.len(), 1);
    }

    #[test]
    fn a_flag_halo_does_not_keep_is_reported_not_rewritten() {
        let p = flag_policy(&["SPE_E3"]);
        let mut u = synced(7, "o1", "a@acme.com", T1);
        // Halo answers false although csp-sync wrote true (it computes the flag from its contracts).
        u.covered_by_contract = Some(false);
        let h = halo(vec![u]);
        let d = dir(vec![entra("o1", "a@acme.com")]);
        let m = written(7, "covered_by_contract", Value::Bool(true));
        let t = run_mem(&d, &h, &p, &m);
        assert!(t.changes.is_empty(), "{:?}", t.changes);
        assert!(
            t.notes
                .iter()
                .any(|n| n.contains("does not keep the contract flag")
                    && n.contains("contract_field")),
            "{:?}",
            t.notes
        );
        // Without a record of writing it, the flag is written.
        assert_eq!(run1(&d, &h, &p).changes.len(), 1);
    }

    /// A contact as Halo's user list returns it: no `department`, no `azure_tenant_id`.
    fn listed(mut u: HaloUser) -> HaloUser {
        u.azure_tenant_id = None;
        u.department = None;
        u.unread = vec!["department".into(), "azure_tenant_id".into()];
        u
    }

    fn written_all(entries: &[(i64, &str, Value)]) -> HaloMemory {
        let mut m = HaloMemory::default();
        for (id, f, v) in entries {
            m.written
                .entry(format!("Users/{id}"))
                .or_default()
                .insert((*f).to_string(), v.clone());
        }
        m
    }

    #[test]
    fn a_leaver_is_found_without_azure_tenant_id_under_the_tenants_client() {
        let d = dir(vec![entra("o1", "a@acme.com")]);
        let h = halo(vec![
            listed(synced(1, "o1", "a@acme.com", T1)),
            listed(synced(2, "o2", "b@acme.com", T1)),
        ]);
        let mem = written_all(&[(1, "azure_tenant_id", json!(T1))]);
        let clients = BTreeMap::from([(CLIENT, vec![T1.to_string()])]);
        let m = UsersMemory {
            memory: &mem,
            client_tenants: Some(&clients),
        };
        let plans = plan_users(&[input(T1, &d)], &h, &policy(), &BTreeMap::new(), m, now());
        let acts: Vec<(Action, Option<i64>)> = plans[0]
            .changes
            .iter()
            .map(|c| (c.action, c.halo_id))
            .collect();
        // 2 is a leaver; 1 is in step (its tenant id is what csp-sync wrote), nothing written for it.
        assert_eq!(acts, vec![(Action::Deactivate, Some(2))], "{plans:?}");
    }

    #[test]
    fn with_two_tenants_on_the_client_a_leaver_waits_until_both_are_read() {
        let d1 = dir(vec![entra("o1", "a@acme.com")]);
        let d2 = dir(vec![entra("o3", "c@acme.com")]);
        let h = halo(vec![
            listed(synced(1, "o1", "a@acme.com", T1)),
            listed(synced(2, "o2", "b@acme.com", T1)),
            listed(synced(3, "o3", "c@acme.com", T2)),
        ]);
        let clients = BTreeMap::from([(CLIENT, vec![T1.to_string(), T2.to_string()])]);
        let m = UsersMemory {
            memory: UsersMemory::none().memory,
            client_tenants: Some(&clients),
        };
        let deactivated = |plans: &[TenantPlan]| -> Vec<i64> {
            plans
                .iter()
                .flat_map(|t| &t.changes)
                .filter(|c| c.action == Action::Deactivate)
                .filter_map(|c| c.halo_id)
                .collect()
        };
        // Only T1 in the run: contact 2 might be T2's, so it stays.
        let only_t1 = plan_users(&[input(T1, &d1)], &h, &policy(), &BTreeMap::new(), m, now());
        assert!(deactivated(&only_t1).is_empty(), "{only_t1:?}");
        // T2's read failed: still nobody.
        let mut failed = input(T2, &d2);
        failed.directory = Err("refused".into());
        let partial = plan_users(
            &[input(T1, &d1), failed],
            &h,
            &policy(),
            &BTreeMap::new(),
            m,
            now(),
        );
        assert!(deactivated(&partial).is_empty(), "{partial:?}");
        // Both read: contact 2 is a leaver, deactivated once; 1 and 3 stay with their tenants.
        let both = plan_users(
            &[input(T1, &d1), input(T2, &d2)],
            &h,
            &policy(),
            &BTreeMap::new(),
            m,
            now(),
        );
        assert_eq!(deactivated(&both), vec![2], "{both:?}");
    }

    #[test]
    fn a_listless_field_is_written_once_then_only_when_entra_changes() {
        let mut e = entra("o1", "a@acme.com");
        e.department = Some("Sales".into());
        let d = dir(vec![e.clone()]);
        let h = halo(vec![listed(synced(1, "o1", "a@acme.com", T1))]);
        let fields_of = |mem: &HaloMemory, d: &TenantDirectory| -> Vec<String> {
            let m = UsersMemory {
                memory: mem,
                client_tenants: None,
            };
            plan_users(&[input(T1, d)], &h, &policy(), &BTreeMap::new(), m, now())[0]
                .changes
                .iter()
                .flat_map(|c| c.fields.iter().map(|f| f.field.clone()))
                .collect()
        };
        // Nothing remembered (a first run, or a lost state): both list-less fields are written.
        assert_eq!(
            fields_of(&HaloMemory::default(), &d),
            vec!["department", "azure_tenant_id"]
        );
        let mem = written_all(&[
            (1, "department", json!("Sales")),
            (1, "azure_tenant_id", json!(T1)),
        ]);
        assert!(fields_of(&mem, &d).is_empty());
        e.department = Some("Marketing".into());
        assert_eq!(fields_of(&mem, &dir(vec![e])), vec!["department"]);
    }
}
