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
//! Leavers are Halo users linked to the tenant (`azureoid` set and `azure_tenant_id` = the tenant) whose
//! Entra user is deleted, disabled or out of scope; they are deactivated after `leaver_grace_days`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jiff::{SignedDuration, Timestamp};
use regex::Regex;
use serde_json::{Map, Value};

use super::{
    Action, Change, Conflict, FieldChange, HaloEntity, HeldBack, Module, TenantPlan, norm,
};
use crate::model::{EntraUser, HaloClient, HaloSnapshot, HaloUser, TenantDirectory, UserType};

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
    /// `skuPartNumber` or `skuId` values, any case. Empty: no contract filter.
    pub contract_skus: Vec<String>,
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
    if !policy.contract_skus.is_empty() {
        let wanted: BTreeSet<String> = policy.contract_skus.iter().map(|s| norm(s)).collect();
        let holds = skus.iter().any(|id| {
            wanted.contains(id)
                || sku_part_numbers
                    .iter()
                    .filter(|(sku, _)| norm(sku) == *id)
                    .any(|(_, part)| wanted.contains(&norm(part)))
        });
        if !holds {
            return Err(OUT_NO_CONTRACT_LICENCE);
        }
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
) -> Vec<String> {
    let mut keys = Vec::new();
    if policy.leaver_grace_days == 0 {
        return keys;
    }
    for t in tenants {
        let Ok(dir) = t.directory else { continue };
        let tenant = norm(t.customer_id);
        let scoped = Scoped::of(dir, policy);
        for u in &halo.users {
            let Some(oid) = linked_oid(u, &tenant) else {
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
    now: Timestamp,
) -> Vec<TenantPlan> {
    let idx = Index::new(halo);

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
                    claims
                        .entry(c.id)
                        .or_default()
                        .insert((tenant.clone(), oid.clone()), entra_email(user));
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

/// The object id a Halo user is linked to when it is linked to `tenant` (lower-case).
fn linked_oid(u: &HaloUser, tenant: &str) -> Option<String> {
    let oid = non_empty(u.azureoid.as_deref())?;
    let t = non_empty(u.azure_tenant_id.as_deref())?;
    (norm(t) == tenant).then(|| norm(oid))
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

/// Field differences between Entra and a Halo user. Empty Entra values never clear Halo values; e-mail
/// addresses differing only in case (or surrounding blanks) are the same.
fn field_diffs(u: &HaloUser, user: &EntraUser) -> Vec<FieldChange> {
    wanted_fields(user)
        .into_iter()
        .filter_map(|(f, want)| {
            let have = halo_value(u, f);
            let same = if f == "emailaddress" {
                have.is_some_and(|h| norm(h) == norm(&want))
            } else {
                have == Some(want.as_str())
            };
            (!same).then(|| field(f, opt_value(have), Value::from(want)))
        })
        .collect()
}

/// "job title, department changed in Entra" for the kept-in-step fields among `diffs`.
fn changed_reason(diffs: &[FieldChange]) -> Option<String> {
    let names: Vec<&str> = diffs
        .iter()
        .filter(|d| d.field != "azure_tenant_id" && d.field != "inactive" && d.field != "azureoid")
        .map(|d| describe(&d.field))
        .collect();
    (!names.is_empty()).then(|| format!("{} changed in Entra", names.join(", ")))
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

struct TenantPlanner<'a, 'h> {
    input: &'a TenantUsersInput<'a>,
    /// Lower-case tenant id.
    tenant: String,
    halo: &'h HaloSnapshot,
    idx: &'a Index<'h>,
    policy: &'a UsersPolicy,
    claims: &'a HashMap<i64, BTreeMap<(String, String), String>>,
    plan: TenantPlan,
}

impl TenantPlanner<'_, '_> {
    fn run(mut self, last_seen: &BTreeMap<String, Timestamp>, now: Timestamp) -> TenantPlan {
        let name = self.input.name;
        let dir = match &self.input.directory {
            Ok(dir) => *dir,
            Err(why) => {
                self.plan.errors.push(format!(
                    "users: could not read the Entra users of {name} ({}): {why}. Nothing was planned \
                     for this tenant's users and nobody was deactivated; check the app's consent or GDAP \
                     roles in that tenant and rerun.",
                    self.tenant
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
                "{} Entra user(s) without an object id were ignored",
                scoped.without_id
            ));
        }
        let site = self.resolve_site(client);

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
                "users: {creates_blocked} new contact(s) for {name} not created: {why}"
            ));
        }

        let deactivations = self.plan_leavers(&scoped, last_seen, now);
        self.guard(deactivations, &scoped, dir);

        self.plan.changes.sort_by(order);
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
        fields: Vec<FieldChange>,
    ) -> &mut Change {
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
        if let Some(t) = non_empty(u.azure_tenant_id.as_deref())
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
        let mut fields = field_diffs(u, user);
        if non_empty(u.azure_tenant_id.as_deref()).is_none() {
            fields.push(field(
                "azure_tenant_id",
                opt_value(u.azure_tenant_id.as_deref()),
                Value::from(self.tenant.clone()),
            ));
        }
        let changed = changed_reason(&fields);
        if u.inactive {
            let reason = match changed {
                Some(c) => format!("back in Entra; {c}"),
                None => "back in Entra".to_string(),
            };
            fields.push(field("inactive", Value::Bool(true), Value::Bool(false)));
            self.change(Action::Reactivate, Some(u.id), oid, label, reason, fields);
        } else if !fields.is_empty() {
            let reason =
                changed.unwrap_or_else(|| "Entra tenant id not yet recorded in Halo".into());
            self.change(Action::Update, Some(u.id), oid, label, reason, fields);
        }
    }

    /// One unlinked contact of the tenant's client has the user's e-mail: link it (and reactivate it).
    fn plan_link(&mut self, oid: &str, user: &EntraUser, label: &str, c: &HaloUser) {
        let claimants = self.claims.get(&c.id).map_or(0, BTreeMap::len);
        if claimants > 1 {
            let names: Vec<String> = self
                .claims
                .get(&c.id)
                .into_iter()
                .flatten()
                .map(|((t, _), mail)| format!("{mail} (tenant {t})"))
                .collect();
            self.conflict(
                oid,
                label,
                format!(
                    "Halo contact {} ({}) matches {claimants} Entra users by e-mail: {}; set azureoid on \
                     it by hand or change one of the e-mail addresses",
                    c.id,
                    c.emailaddress.as_deref().unwrap_or_default().trim(),
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
        fields.extend(field_diffs(c, user));
        let mut reason = "linked by e-mail".to_string();
        if let Some(changed) = changed_reason(&fields) {
            reason = format!("{reason}; {changed}");
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
            .halo
            .users
            .iter()
            .filter(|u| !u.inactive)
            .filter(|u| {
                linked_oid(u, &self.tenant).is_some_and(|oid| !scoped.in_scope.contains_key(&oid))
            })
            .collect();
        leavers.sort_by_key(|u| u.id);
        let mut out = Vec::new();
        for u in leavers {
            let Some(oid) = linked_oid(u, &self.tenant) else {
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
        deactivations.sort_by(order);
        let name = self.input.name;
        let active_linked = self
            .halo
            .users
            .iter()
            .filter(|u| !u.inactive && linked_oid(u, &self.tenant).is_some())
            .count();
        let n = deactivations.len();
        if self.policy.empty_source_guard && (dir.users.is_empty() || scoped.in_scope.is_empty()) {
            let what = if dir.users.is_empty() {
                "no users"
            } else {
                "no users in scope"
            };
            self.plan.held_back.push(HeldBack {
                module: Module::Users,
                guard: GUARD_EMPTY_SOURCE.into(),
                reason: format!(
                    "the Entra directory of {name} returned {what} while Halo holds {active_linked} active \
                     synced users for it; treated as unknown, {n} deactivation(s) held back. Check the \
                     Graph permissions and the [users] scope settings"
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
                    "{n} deactivations ({percent:.1}% of {active_linked} active synced users) exceed both \
                     [safety] max_deactivations = {} and max_deactivation_percent = {}; review them and \
                     rerun with --allow-deactivations to apply them",
                    self.policy.max_deactivations, self.policy.max_deactivation_percent
                ),
                changes: deactivations,
            });
            return;
        }
        self.plan.changes.extend(deactivations);
    }
}

/// Deterministic order of changes: by action, then label (case-insensitive), then source key.
fn order(a: &Change, b: &Change) -> std::cmp::Ordering {
    (a.action, a.label.to_lowercase(), &a.source_key).cmp(&(
        b.action,
        b.label.to_lowercase(),
        &b.source_key,
    ))
}
