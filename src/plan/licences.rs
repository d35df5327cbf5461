//! Licences planner. See SPEC section 7 (licences).
//!
//! Pure: (Partner Center subscriptions, seat usage, Graph `directory/subscriptions`, Halo licences, policy,
//! now) -> one [`TenantPlan`] per tenant (module `licences`, entity `SoftwareLicence`) and a seat view.
//!
//! Each Partner Center subscription (the Azure plan and excluded SKUs left out) is kept in step with one
//! Halo software licence on the tenant's client, found again by `third_party_product` = subscription id and
//! `tenant_id` = customer tenant id. Nothing is ever deleted: a cancelled subscription's licence gets the
//! status `Deleted`, and so does a linked licence whose subscription Partner Center no longer lists.
//!
//! A field the Halo read did not return, or that Halo does not keep (SPEC 7), is compared with the value
//! csp-sync last wrote there ([`HaloMemory`]). When `third_party_product` does not persist, a licence is
//! found again by the subscription id csp-sync wrote there, else adopted by (`tenant_id`, `product_sku`,
//! `billing_cycle`, `term_duration`); a tie is a conflict, and it is never created twice.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{
    Action, Change, Conflict, FieldChange, HaloEntity, HeldBack, Module, TenantPlan, norm,
};
use crate::catalog;
use crate::halo_memory::HaloMemory;
use crate::model::{
    CompanySubscription, HaloLicence, HaloSnapshot, SkuUsage, Subscription, SubscriptionStatus,
};

/// The Halo licence fields the planner compares; the reader notes which of them a record lacks.
pub const COMPARED_FIELDS: &[&str] = &[
    "name",
    "count",
    "licences_in_use",
    "tenant_id",
    "third_party_product",
    "product_sku",
    "status",
    "billing_cycle",
    "term_duration",
    "autorenew",
    "start_date",
    "end_date",
    "manufacturer",
];

/// How far ahead renewal and cancellation-window flags look.
const FLAG_HORIZON_DAYS: i64 = 30;
const SECONDS_PER_DAY: i64 = 86_400;

/// The `[licences]` section of the config, as the planner needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct LicencesPolicy {
    /// SKUs never synced and left out of the seat view: part numbers or sku ids, any case.
    pub exclude_skus: Vec<String>,
    /// Product-name overrides keyed by part number or sku id (any case).
    pub names: BTreeMap<String, String>,
}

impl LicencesPolicy {
    /// Whether the SKU named by part number and/or sku id is excluded.
    pub fn excludes(&self, part: Option<&str>, sku_id: Option<&str>) -> bool {
        self.exclude_skus.iter().any(|x| {
            let x = x.trim();
            !x.is_empty()
                && [part, sku_id]
                    .into_iter()
                    .flatten()
                    .any(|k| k.trim().eq_ignore_ascii_case(x))
        })
    }
}

/// Where a tenant's seat usage came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SkuSource {
    /// Partner Center `subscribedskus` (app+user only).
    #[default]
    PartnerCenter,
    /// Graph `subscribedSkus` of the customer tenant.
    Graph,
}

/// Everything read for one mapped tenant.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TenantLicencesInput {
    /// Partner Center customer id.
    pub customer_id: String,
    /// The customer's Entra tenant id (written to Halo `tenant_id`).
    pub tenant_id: String,
    /// For people: the `[[tenant]]` name or the company name.
    pub tenant_name: String,
    /// The mapped Halo client.
    pub halo_client_id: i64,
    /// Every subscription Partner Center lists for the customer (Azure plan and excluded ones included:
    /// the planner skips them itself, and needs them to know which subscriptions still exist).
    pub subscriptions: Vec<Subscription>,
    /// Seat usage per SKU; empty when it could not be read.
    pub skus: Vec<SkuUsage>,
    pub sku_source: SkuSource,
    /// Graph `directory/subscriptions`; empty when unavailable.
    pub company_subscriptions: Vec<CompanySubscription>,
    /// Read failures for this tenant. They are reported as tenant errors, and while there are any, no
    /// licence is marked `Deleted` for having vanished from Partner Center.
    pub errors: Vec<String>,
}

/// A flag on a row of the seat view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "flag", rename_all = "snake_case")]
pub enum SeatFlag {
    /// More seats assigned than purchased.
    OverAssigned,
    /// Purchased seats nobody holds.
    UnusedSeats,
    /// An annual or triennial commitment ends within 30 days (`date` = `YYYY-MM-DD`, UTC).
    RenewalSoon { date: String, days: i64 },
    /// The NCE cancellation (refund) window of an annual or triennial commitment closes within 30 days.
    CancellationWindowCloses { date: String, days: i64 },
}

/// Seats of one SKU in one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatRow {
    pub customer_id: String,
    pub tenant_name: String,
    /// Lower-case Graph `skuId`; `None` for a subscription that could not be joined to a SKU.
    pub sku_id: Option<String>,
    pub sku_part_number: Option<String>,
    pub product_name: String,
    pub purchased: i64,
    pub assigned: i64,
    pub available: i64,
    /// Partner Center subscriptions of this SKU, in seat-allocation order.
    pub subscription_ids: Vec<String>,
    pub flags: Vec<SeatFlag>,
    /// Where the assigned count came from.
    pub usage_source: SkuSource,
    /// Why the row is special ("not bought through Partner Center", ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A subscription that could be joined to no SKU. Its licence is still synced, named after the offer,
/// without `product_sku` or `licences_in_use`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnjoinedSubscription {
    pub customer_id: String,
    pub tenant_name: String,
    pub subscription_id: String,
    pub offer_id: String,
    pub offer_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub friendly_name: Option<String>,
}

/// The result of [`plan_licences`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LicencesPlan {
    pub tenants: Vec<TenantPlan>,
    pub seats: Vec<SeatRow>,
    pub unjoined: Vec<UnjoinedSubscription>,
}

/// Plans the licences module for every tenant. Deterministic: tenants by name then customer id, changes
/// in seat-allocation order, licences that vanished from Partner Center by Halo id, seats by product name.
pub fn plan_licences(
    inputs: &[TenantLicencesInput],
    halo: &HaloSnapshot,
    policy: &LicencesPolicy,
    memory: &HaloMemory,
    now: Timestamp,
) -> LicencesPlan {
    let mut order: Vec<&TenantLicencesInput> = inputs.iter().collect();
    order.sort_by(|a, b| {
        a.tenant_name
            .to_lowercase()
            .cmp(&b.tenant_name.to_lowercase())
            .then_with(|| a.customer_id.cmp(&b.customer_id))
    });
    let index = HaloIndex::new(&halo.licences, memory);
    // Halo licences already claimed by a subscription in this run (across tenants: several customers may
    // map to one client), so one existing licence is never adopted twice.
    let mut claimed: HashSet<i64> = HashSet::new();
    let mut out = LicencesPlan::default();
    for input in order {
        let planner = TenantPlanner {
            input,
            index: &index,
            policy,
            now,
        };
        let (tenant, seats, unjoined) = planner.plan(&mut claimed);
        out.tenants.push(tenant);
        out.seats.extend(seats);
        out.unjoined.extend(unjoined);
    }
    out
}

/// Halo licences indexed by `third_party_product`.
struct HaloIndex<'a> {
    all: &'a [HaloLicence],
    by_subscription: HashMap<String, Vec<&'a HaloLicence>>,
    memory: &'a HaloMemory,
}

impl<'a> HaloIndex<'a> {
    fn new(all: &'a [HaloLicence], memory: &'a HaloMemory) -> Self {
        let mut index = HaloIndex {
            all,
            by_subscription: HashMap::new(),
            memory,
        };
        for l in all {
            if let Some(tpp) = index.subscription_of(l) {
                index.by_subscription.entry(tpp).or_default().push(l);
            }
        }
        for v in index.by_subscription.values_mut() {
            v.sort_by_key(|l| l.id);
        }
        index
    }

    /// Whether a licence's value of `field` is unknown: not in the read, or not kept by Halo.
    fn unknown(&self, l: &HaloLicence, field: &str) -> bool {
        !l.read(field) || self.memory.is_unkept(HaloEntity::SoftwareLicence, field)
    }

    /// The subscription id a licence is linked to (lower-case): its `third_party_product`, or, when Halo's
    /// value is unknown, the one csp-sync wrote there.
    fn subscription_of(&self, l: &HaloLicence) -> Option<String> {
        if self.unknown(l, "third_party_product") {
            self.memory
                .last_written(HaloEntity::SoftwareLicence, l.id, "third_party_product")
                .and_then(Value::as_str)
                .and_then(|s| non_empty(Some(s)))
                .map(norm)
        } else {
            non_empty(l.third_party_product.as_deref()).map(norm)
        }
    }

    /// Whether a difference is a Halo edit: Halo's value is known and is not what csp-sync last wrote
    /// there, while Partner Center still says what was written (every field written to a licence is
    /// remembered, `halo_memory`). Without such a record the origin is not known.
    fn edited_in_halo(&self, l: &HaloLicence, f: &FieldChange) -> bool {
        !self.unknown(l, &f.field)
            && self
                .memory
                .last_written(HaloEntity::SoftwareLicence, l.id, &f.field)
                .is_some_and(|w| loosely_equal(w, &f.to) && !loosely_equal(w, &f.from))
    }

    /// The field changes of `diffs` on licence `l`, with fields whose Halo value is unknown compared with
    /// what csp-sync last wrote there instead (dropped when that is the wanted value).
    fn settle(&self, l: &HaloLicence, diffs: Vec<FieldChange>) -> Vec<FieldChange> {
        diffs
            .into_iter()
            .filter_map(|mut f| {
                if !self.unknown(l, &f.field) {
                    return Some(f);
                }
                let last = self
                    .memory
                    .last_written(HaloEntity::SoftwareLicence, l.id, &f.field)
                    .cloned()
                    .unwrap_or(Value::Null);
                if loosely_equal(&last, &f.to) {
                    return None;
                }
                f.from = last;
                Some(f)
            })
            .collect()
    }
}

/// Values equal for comparing with remembered writes: strings case-insensitively and trimmed.
fn loosely_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.trim().eq_ignore_ascii_case(y.trim()),
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// How a subscription was joined to its SKU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JoinedBy {
    /// Graph `directory/subscriptions`, `commerceSubscriptionId` = subscription id.
    CompanySubscription,
    /// The offer name or friendly name equals a product name of Microsoft's table.
    ProductName,
    Unjoined,
}

/// A subscription in scope with its SKU.
struct Joined<'a> {
    sub: &'a Subscription,
    /// Lower-case sku id.
    sku_id: Option<String>,
    part: Option<String>,
    by: JoinedBy,
    /// Assigned seats allocated to this subscription; `None` when the SKU's usage is unknown.
    in_use: Option<i64>,
    /// What tells this licence's name apart from another subscription of the same product on this
    /// tenant ("annual", "monthly", "annual, billed monthly"); `None` when its name is alone.
    qualifier: Option<String>,
}

struct TenantPlanner<'a> {
    input: &'a TenantLicencesInput,
    index: &'a HaloIndex<'a>,
    policy: &'a LicencesPolicy,
    now: Timestamp,
}

/// What the licence of a subscription should look like; `None` fields are not written.
struct Desired {
    name: String,
    count: i64,
    licences_in_use: Option<i64>,
    status: Option<&'static str>,
    billing_cycle: Option<&'static str>,
    term_duration: Option<&'static str>,
    autorenew: bool,
    start_date: Option<String>,
    end_date: Option<String>,
    product_sku: Option<String>,
    third_party_product: String,
    tenant_id: String,
}

impl<'a> TenantPlanner<'a> {
    fn plan(
        &self,
        claimed: &mut HashSet<i64>,
    ) -> (TenantPlan, Vec<SeatRow>, Vec<UnjoinedSubscription>) {
        let input = self.input;
        let mut tp = TenantPlan {
            customer_id: input.customer_id.clone(),
            name: input.tenant_name.clone(),
            halo_client_id: Some(input.halo_client_id),
            errors: input.errors.clone(),
            ..TenantPlan::default()
        };

        let mut joined = self.join_subscriptions();
        allocate_seats(&mut joined, &input.skus);

        let mut unjoined = Vec::new();
        let mut dead_without_record = 0usize;
        let mut matched: HashSet<i64> = HashSet::new();
        for j in &joined {
            if j.by == JoinedBy::Unjoined {
                unjoined.push(UnjoinedSubscription {
                    customer_id: input.customer_id.clone(),
                    tenant_name: input.tenant_name.clone(),
                    subscription_id: j.sub.id.clone(),
                    offer_id: j.sub.offer_id.clone(),
                    offer_name: j.sub.offer_name.clone(),
                    friendly_name: j.sub.friendly_name.clone(),
                });
                tp.notes.push(format!(
                    "subscription {} (\"{}\") joins no Microsoft SKU (not in Graph directory/subscriptions, \
                     offer name not in Microsoft's product table): synced under its offer name, without \
                     product SKU or assigned seats",
                    j.sub.id, j.sub.offer_name
                ));
            }
            match self.plan_subscription(j, claimed, &mut matched, &mut tp) {
                Outcome::Done => {}
                Outcome::DeadWithoutRecord => dead_without_record += 1,
            }
        }
        if dead_without_record > 0 {
            tp.notes.push(format!(
                "{} without a Halo licence; none created",
                crate::render::count(
                    dead_without_record,
                    "cancelled or expired subscription",
                    "cancelled or expired subscriptions"
                )
            ));
        }

        self.plan_vanished(&matched, &mut tp);
        let seats = self.seat_view(&joined, &mut tp);
        (tp, seats, unjoined)
    }

    /// Joins every subscription in scope to its SKU, in seat-allocation order.
    fn join_subscriptions(&self) -> Vec<Joined<'a>> {
        let mut joined = Vec::new();
        for sub in &self.input.subscriptions {
            if is_azure_plan(sub) {
                continue; // Azure consumption belongs to the billing module.
            }
            let (sku_id, part, by) = self.join_one(sub);
            if self.policy.excludes(part.as_deref(), sku_id.as_deref()) {
                continue;
            }
            joined.push(Joined {
                sub,
                sku_id,
                part,
                by,
                in_use: None,
                qualifier: None,
            });
        }
        joined.sort_by(|a, b| allocation_order(a.sub, b.sub));
        self.qualify_names(&mut joined);
        joined
    }

    /// The product name a subscription's licence takes, before any qualifier.
    fn base_name(&self, j: &Joined<'_>) -> String {
        catalog::resolve_name(
            j.part.as_deref(),
            j.sku_id.as_deref(),
            &j.sub.offer_name,
            &self.policy.names,
        )
    }

    /// Where one product has subscriptions of several terms on this tenant (annual and monthly), each
    /// licence name carries its term, and its billing cycle where the terms alone do not tell them apart.
    /// Decided over every subscription of the tenant Partner Center lists, cancelled ones included, so a
    /// name changes only when a subscription of another term is bought or leaves Partner Center's list.
    fn qualify_names(&self, joined: &mut [Joined<'_>]) {
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, j) in joined.iter().enumerate() {
            groups
                .entry(catalog::normalise_name(&self.base_name(j)))
                .or_default()
                .push(i);
        }
        for members in groups.values() {
            let terms: BTreeSet<&'static str> = members
                .iter()
                .map(|&i| term_word(&joined[i].sub.term_duration))
                .collect();
            let plans: BTreeSet<(&'static str, &'static str)> = members
                .iter()
                .map(|&i| {
                    let sub = joined[i].sub;
                    (
                        term_word(&sub.term_duration),
                        cycle_word(&sub.billing_cycle),
                    )
                })
                .collect();
            if plans.len() < 2 {
                continue;
            }
            for &i in members {
                let sub = joined[i].sub;
                let term = term_word(&sub.term_duration);
                let same_term = plans.iter().filter(|(t, _)| *t == term).count();
                joined[i].qualifier = Some(if same_term > 1 || terms.len() < 2 {
                    format!("{term}, billed {}", cycle_word(&sub.billing_cycle))
                } else {
                    term.to_string()
                });
            }
        }
    }

    fn join_one(&self, sub: &Subscription) -> (Option<String>, Option<String>, JoinedBy) {
        // 1. Graph directory/subscriptions. The reference marks `commerceSubscriptionId` = Partner Center
        //    subscription id as unverified, so a missing or empty value simply falls through to step 2.
        let company = self.input.company_subscriptions.iter().find(|c| {
            non_empty(c.commerce_subscription_id.as_deref())
                .is_some_and(|id| norm(id) == norm(&sub.id))
                && non_empty(Some(&c.sku_id)).is_some()
        });
        if let Some(c) = company {
            let sku_id = norm(&c.sku_id);
            let part = non_empty(Some(&c.sku_part_number))
                .map(str::to_string)
                .or_else(|| self.usage_part(&sku_id))
                .or_else(|| catalog::part_number_by_sku_id(&sku_id).map(str::to_string));
            return (Some(sku_id), part, JoinedBy::CompanySubscription);
        }
        // 2. The offer name, then the friendly name, against Microsoft's product names (exact, normalised).
        for name in [Some(sub.offer_name.as_str()), sub.friendly_name.as_deref()]
            .into_iter()
            .flatten()
        {
            if let Some((sku_id, part)) = catalog::sku_by_product_name(name) {
                return (
                    Some(sku_id.to_string()),
                    Some(part.to_string()),
                    JoinedBy::ProductName,
                );
            }
        }
        (None, None, JoinedBy::Unjoined)
    }

    fn usage_part(&self, sku_id: &str) -> Option<String> {
        self.input
            .skus
            .iter()
            .find(|u| norm(&u.sku_id) == sku_id)
            .and_then(|u| non_empty(Some(&u.sku_part_number)))
            .map(str::to_string)
    }

    fn desired(&self, j: &Joined<'_>) -> Desired {
        let sub = j.sub;
        let base = self.base_name(j);
        Desired {
            name: match &j.qualifier {
                Some(q) => format!("{base} ({q})"),
                None => base,
            },
            count: sub.quantity,
            licences_in_use: j.in_use,
            status: halo_status(sub.status),
            billing_cycle: halo_billing_cycle(&sub.billing_cycle),
            term_duration: halo_term(&sub.term_duration),
            autorenew: sub.auto_renew,
            start_date: sub.effective_start_date.as_deref().and_then(halo_datetime),
            end_date: sub.commitment_end_date.as_deref().and_then(halo_datetime),
            product_sku: j.part.clone(),
            third_party_product: sub.id.clone(),
            tenant_id: self.input.tenant_id.clone(),
        }
    }

    fn plan_subscription(
        &self,
        j: &Joined<'_>,
        claimed: &mut HashSet<i64>,
        matched: &mut HashSet<i64>,
        tp: &mut TenantPlan,
    ) -> Outcome {
        let sub = j.sub;
        let want = self.desired(j);
        let tenant = norm(&self.input.tenant_id);
        let client = self.input.halo_client_id;

        // 1. Licences carrying this subscription id.
        let by_tpp = self
            .index
            .by_subscription
            .get(&norm(&sub.id))
            .map(Vec::as_slice)
            .unwrap_or_default();
        // Ours: the same tenant, or no tenant yet on this tenant's client (a half-written link).
        let (ours, foreign): (Vec<&HaloLicence>, Vec<&HaloLicence>) =
            by_tpp.iter().partition(|l| {
                let lt = l.tenant_id.as_deref().map(norm).unwrap_or_default();
                lt == tenant || (lt.is_empty() && l.client_id == client)
            });
        for l in &ours {
            matched.insert(l.id);
            claimed.insert(l.id);
        }
        if ours.len() > 1 {
            tp.conflicts.push(Conflict {
                module: Module::Licences,
                source_key: sub.id.clone(),
                label: want.name.clone(),
                reason: format!(
                    "{} Halo licences carry this subscription id ({}) for this tenant; keep one and clear \
                     third_party_product on the others, then run again",
                    ours.len(),
                    sub.id
                ),
                halo_ids: ours.iter().map(|l| l.id).collect(),
            });
            return Outcome::Done;
        }
        if let Some(l) = ours.first() {
            if l.client_id != client {
                tp.conflicts.push(Conflict {
                    module: Module::Licences,
                    source_key: sub.id.clone(),
                    label: want.name.clone(),
                    reason: format!(
                        "Halo licence {} for this subscription is on Halo client {}, but the tenant is mapped \
                         to client {client}; move the licence or fix the mapping",
                        l.id, l.client_id
                    ),
                    halo_ids: vec![l.id],
                });
                return Outcome::Done;
            }
            let fields = self.index.settle(l, diff_fields(l, &want));
            if !fields.is_empty() {
                let reason = update_reason(&fields, &|f| self.index.edited_in_halo(l, f));
                tp.changes.push(licence_change(
                    Action::Update,
                    Some(l.id),
                    sub,
                    &want.name,
                    reason,
                    fields,
                    Map::new(),
                ));
            }
            return Outcome::Done;
        }
        if !foreign.is_empty() {
            tp.conflicts.push(Conflict {
                module: Module::Licences,
                source_key: sub.id.clone(),
                label: want.name.clone(),
                reason: format!(
                    "Halo licence(s) carrying this subscription id belong to another tenant ({}); check the \
                     tenant mapping",
                    foreign
                        .iter()
                        .map(|l| l.tenant_id.clone().unwrap_or_default())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                halo_ids: foreign.iter().map(|l| l.id).collect(),
            });
            return Outcome::Done;
        }

        // A cancelled or expired subscription with no licence yet: neither adopted (an unlinked licence of
        // the same product more likely belongs to a live subscription) nor created (no record of a dead
        // subscription is worth adding).
        if matches!(
            sub.status,
            SubscriptionStatus::Deleted | SubscriptionStatus::Expired
        ) {
            return Outcome::DeadWithoutRecord;
        }

        // 2. Adoption: a licence on this client, for this tenant or none, with no subscription link, of the
        //    same product (part number, or name equal to the product or offer name).
        let names = [
            catalog::normalise_name(&want.name),
            catalog::normalise_name(&self.base_name(j)),
            catalog::normalise_name(&sub.offer_name),
        ];
        let candidates: Vec<&HaloLicence> = self
            .index
            .all
            .iter()
            .filter(|l| {
                l.client_id == client
                    && !claimed.contains(&l.id)
                    && self.index.subscription_of(l).is_none()
                    && l.tenant_id
                        .as_deref()
                        .map(norm)
                        .is_none_or(|t| t.is_empty() || t == tenant)
                    && (want.product_sku.as_deref().is_some_and(|p| {
                        l.product_sku
                            .as_deref()
                            .is_some_and(|lp| lp.trim().eq_ignore_ascii_case(p.trim()))
                    }) || names
                        .iter()
                        .any(|n| !n.is_empty() && *n == catalog::normalise_name(&l.name)))
            })
            .collect();
        // Several candidates: those of the same (tenant_id, product_sku, billing_cycle, term_duration), the
        // key a licence is found again by when Halo did not keep `third_party_product`.
        let candidates = if candidates.len() > 1 {
            let same_terms: Vec<&HaloLicence> = candidates
                .iter()
                .copied()
                .filter(|l| {
                    l.tenant_id.as_deref().map(norm).as_deref() == Some(tenant.as_str())
                        && want
                            .billing_cycle
                            .is_some_and(|w| text_eq_ci(l.billing_cycle.as_deref(), w))
                        && want
                            .term_duration
                            .is_some_and(|w| text_eq_ci(l.term_duration.as_deref(), w))
                })
                .collect();
            if same_terms.len() == 1 {
                same_terms
            } else {
                candidates
            }
        } else {
            candidates
        };
        match candidates.as_slice() {
            [] => {
                let mut extra = Map::new();
                extra.insert("client_id".into(), Value::from(client));
                let fields = diff_fields(&HaloLicence::default(), &want)
                    .into_iter()
                    .map(|f| FieldChange {
                        from: Value::Null,
                        ..f
                    })
                    .collect();
                tp.changes.push(licence_change(
                    Action::Create,
                    None,
                    sub,
                    &want.name,
                    create_reason(sub),
                    fields,
                    extra,
                ));
            }
            [l] => {
                claimed.insert(l.id);
                matched.insert(l.id);
                let fields = self.index.settle(l, diff_fields(l, &want));
                let mut reason = format!(
                    "existing licence \"{}\" has no subscription link: linked, not duplicated",
                    l.name
                );
                let rest = update_reason(&fields, &|_| false);
                if !rest.is_empty() {
                    reason.push_str("; ");
                    reason.push_str(&rest);
                }
                tp.changes.push(licence_change(
                    Action::Link,
                    Some(l.id),
                    sub,
                    &want.name,
                    reason,
                    fields,
                    Map::new(),
                ));
            }
            many => {
                tp.conflicts.push(Conflict {
                    module: Module::Licences,
                    source_key: sub.id.clone(),
                    label: want.name.clone(),
                    reason: format!(
                        "{} Halo licences of this product on the client have no subscription link; set \
                         third_party_product = {} on the right one (or remove the duplicate), then run again",
                        many.len(),
                        sub.id
                    ),
                    halo_ids: many.iter().map(|l| l.id).collect(),
                });
            }
        }
        Outcome::Done
    }

    /// Licences of this tenant whose subscription Partner Center no longer lists get status `Deleted`,
    /// once. Held back while the source looks unreliable (read errors, or no subscription at all).
    fn plan_vanished(&self, matched: &HashSet<i64>, tp: &mut TenantPlan) {
        let input = self.input;
        let tenant = norm(&input.tenant_id);
        let listed: HashSet<String> = input.subscriptions.iter().map(|s| norm(&s.id)).collect();
        let mut vanished: Vec<&HaloLicence> = self
            .index
            .all
            .iter()
            .filter(|l| {
                l.client_id == input.halo_client_id
                    && !matched.contains(&l.id)
                    && l.tenant_id.as_deref().map(norm).as_deref() == Some(tenant.as_str())
                    && self
                        .index
                        .subscription_of(l)
                        .is_some_and(|t| !listed.contains(&t))
                    && !l
                        .status
                        .as_deref()
                        .is_some_and(|s| s.trim().eq_ignore_ascii_case("Deleted"))
            })
            .collect();
        vanished.sort_by_key(|l| l.id);
        let changes: Vec<Change> = vanished
            .iter()
            .map(|l| Change {
                module: Module::Licences,
                action: Action::Update,
                entity: HaloEntity::SoftwareLicence,
                halo_id: Some(l.id),
                source_key: self.index.subscription_of(l).unwrap_or_default(),
                label: l.name.clone(),
                reason: "no longer in Partner Center".into(),
                fields: vec![FieldChange {
                    field: "status".into(),
                    from: l.status.clone().map_or(Value::Null, Value::from),
                    to: Value::from("Deleted"),
                }],
                extra: Map::new(),
            })
            .collect();
        if changes.is_empty() {
            return;
        }
        let why = if !input.errors.is_empty() {
            Some("Partner Center could not be read completely for this tenant")
        } else if input.subscriptions.is_empty() {
            Some("Partner Center returned no subscription at all for this tenant")
        } else {
            None
        };
        match why {
            Some(why) => tp.held_back.push(HeldBack {
                module: Module::Licences,
                guard: "empty_source_guard".into(),
                reason: format!(
                    "{why}, while Halo holds {} linked licence(s) for it: none is marked Deleted",
                    changes.len()
                ),
                changes,
            }),
            None => tp.changes.extend(changes),
        }
    }

    /// Seats per SKU: every SKU of the tenant's usage and every SKU a subscription joined, plus one row per
    /// unjoined subscription.
    fn seat_view(&self, joined: &[Joined<'_>], tp: &mut TenantPlan) -> Vec<SeatRow> {
        let input = self.input;
        // sku id -> (part, usage, subscriptions in allocation order)
        let mut skus: BTreeMap<String, SkuEntry<'_, '_>> = BTreeMap::new();
        for u in &input.skus {
            let sku_id = norm(&u.sku_id);
            let part = non_empty(Some(&u.sku_part_number)).map(str::to_string);
            if sku_id.is_empty() || self.policy.excludes(part.as_deref(), Some(&sku_id)) {
                continue;
            }
            let e = skus.entry(sku_id).or_default();
            e.0 = e.0.take().or(part);
            e.1 = Some(u);
        }
        for j in joined {
            if let Some(sku_id) = &j.sku_id {
                let e = skus.entry(sku_id.clone()).or_default();
                e.0 = e.0.take().or_else(|| j.part.clone());
                e.2.push(j);
            }
        }

        let mut rows = Vec::new();
        let mut elsewhere = Vec::new();
        for (sku_id, (part, usage, subs)) in skus {
            let offer = subs.first().map_or("", |j| j.sub.offer_name.as_str());
            let product_name =
                catalog::resolve_name(part.as_deref(), Some(&sku_id), offer, &self.policy.names);
            let (purchased, note) = if subs.is_empty() {
                let u = usage.map_or((0, 0), |u| (u.enabled_units, u.consumed_units));
                if u == (0, 0) {
                    // A SKU with no seat and no subscription (an old, cancelled one Graph still lists).
                    continue;
                }
                elsewhere.push(product_name.clone());
                (
                    u.0,
                    Some(
                        "not bought through Partner Center (no subscription of this customer joins this SKU): \
                         seats from the tenant's licence count, no Halo licence"
                            .to_string(),
                    ),
                )
            } else {
                let purchased = subs
                    .iter()
                    .filter(|j| is_live(j.sub.status))
                    .map(|j| j.sub.quantity)
                    .sum();
                let note = usage.is_none().then(|| {
                    "no seat usage reported for this SKU: assigned seats unknown".to_string()
                });
                (purchased, note)
            };
            let assigned = usage.map_or(0, |u| u.consumed_units);
            let all_dead = !subs.is_empty()
                && subs.iter().all(|j| {
                    matches!(
                        j.sub.status,
                        SubscriptionStatus::Deleted | SubscriptionStatus::Expired
                    )
                });
            if all_dead && purchased == 0 && assigned == 0 {
                // Only cancelled or expired subscriptions and no seat left: nothing to show.
                continue;
            }
            let mut flags = Vec::new();
            if usage.is_some() {
                if assigned > purchased {
                    flags.push(SeatFlag::OverAssigned);
                } else if assigned < purchased {
                    flags.push(SeatFlag::UnusedSeats);
                }
            }
            for j in &subs {
                flags.extend(self.commitment_flags(j.sub));
            }
            rows.push(SeatRow {
                customer_id: input.customer_id.clone(),
                tenant_name: input.tenant_name.clone(),
                sku_id: Some(sku_id),
                sku_part_number: part,
                product_name,
                purchased,
                assigned,
                available: purchased - assigned,
                subscription_ids: subs.iter().map(|j| j.sub.id.clone()).collect(),
                flags,
                usage_source: input.sku_source,
                note,
            });
        }
        for j in joined.iter().filter(|j| j.by == JoinedBy::Unjoined) {
            let purchased = if is_live(j.sub.status) {
                j.sub.quantity
            } else {
                0
            };
            rows.push(SeatRow {
                customer_id: input.customer_id.clone(),
                tenant_name: input.tenant_name.clone(),
                sku_id: None,
                sku_part_number: None,
                product_name: catalog::resolve_name(
                    None,
                    None,
                    &j.sub.offer_name,
                    &self.policy.names,
                ),
                purchased,
                assigned: 0,
                available: purchased,
                subscription_ids: vec![j.sub.id.clone()],
                flags: self.commitment_flags(j.sub),
                usage_source: input.sku_source,
                note: Some("joins no Microsoft SKU: assigned seats unknown".into()),
            });
        }
        rows.sort_by(|a, b| {
            a.product_name
                .to_lowercase()
                .cmp(&b.product_name.to_lowercase())
                .then_with(|| a.sku_id.cmp(&b.sku_id))
                .then_with(|| a.subscription_ids.cmp(&b.subscription_ids))
        });
        if !elsewhere.is_empty() {
            elsewhere.sort_by_key(|n| n.to_lowercase());
            tp.notes.push(format!(
                "{} SKU(s) in the tenant are not bought through Partner Center ({}): shown in the seat view, \
                 no Halo licence",
                elsewhere.len(),
                elsewhere.join(", ")
            ));
        }
        rows
    }

    /// Renewal and cancellation-window flags of an active annual or triennial commitment (monthly terms
    /// renew every month and get none).
    fn commitment_flags(&self, sub: &Subscription) -> Vec<SeatFlag> {
        let mut flags = Vec::new();
        if !is_live(sub.status) || !is_long_commitment(sub) {
            return flags;
        }
        if let Some((date, days)) = sub
            .commitment_end_date
            .as_deref()
            .and_then(|d| within_horizon(d, self.now))
        {
            flags.push(SeatFlag::RenewalSoon { date, days });
        }
        if let Some((date, days)) = sub
            .cancellation_window_ends
            .as_deref()
            .and_then(|d| within_horizon(d, self.now))
        {
            flags.push(SeatFlag::CancellationWindowCloses { date, days });
        }
        flags
    }
}

/// One SKU of the seat view: part number, usage, subscriptions in allocation order.
type SkuEntry<'u, 'j> = (Option<String>, Option<&'u SkuUsage>, Vec<&'j Joined<'j>>);

enum Outcome {
    Done,
    DeadWithoutRecord,
}

/// Splits each SKU's assigned seats (consumed units) across the subscriptions that bought it, so the
/// `licences_in_use` of a SKU's licences add up to its consumed units.
///
/// Rule (deterministic): the subscriptions are taken in seat-allocation order (active first, then by
/// effective start date, then by id; see [`allocation_order`]). Only live (active or pending)
/// subscriptions take seats when the SKU has any, else only suspended ones; the others get 0 (cancelled
/// and expired subscriptions always do). Each
/// takes up to its quantity and the last takes whatever remains, so over-assignment shows on the last
/// (newest) live subscription. A SKU whose usage is unknown leaves `licences_in_use` unwritten.
fn allocate_seats(joined: &mut [Joined<'_>], usage: &[SkuUsage]) {
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, j) in joined.iter().enumerate() {
        if let Some(sku_id) = &j.sku_id {
            groups.entry(sku_id.clone()).or_default().push(i);
        }
    }
    for (sku_id, members) in groups {
        let Some(u) = usage.iter().find(|u| norm(&u.sku_id) == sku_id) else {
            continue;
        };
        let any_live = members.iter().any(|&i| is_live(joined[i].sub.status));
        let takers: Vec<usize> = members
            .iter()
            .copied()
            .filter(|&i| {
                let status = joined[i].sub.status;
                if any_live {
                    is_live(status)
                } else {
                    // No live subscription: seats still assigned sit on suspended ones (or ones of
                    // unknown status); cancelled and expired subscriptions never hold seats.
                    !matches!(
                        status,
                        SubscriptionStatus::Deleted | SubscriptionStatus::Expired
                    )
                }
            })
            .collect();
        let mut remaining = u.consumed_units.max(0);
        for &i in &members {
            joined[i].in_use = Some(0);
        }
        for (n, &i) in takers.iter().enumerate() {
            let take = if n + 1 == takers.len() {
                remaining
            } else {
                remaining.min(joined[i].sub.quantity.max(0))
            };
            joined[i].in_use = Some(take);
            remaining -= take;
        }
    }
}

/// Seat-allocation order: live (active, pending) first, then by effective start date (unknown last), then
/// by id.
fn allocation_order(a: &Subscription, b: &Subscription) -> std::cmp::Ordering {
    let start = |s: &Subscription| {
        s.effective_start_date
            .as_deref()
            .and_then(|d| d.trim().parse::<Timestamp>().ok())
    };
    let (sa, sb) = (start(a), start(b));
    (!is_live(a.status))
        .cmp(&!is_live(b.status))
        .then_with(|| match (sa, sb) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        })
        .then_with(|| norm(&a.id).cmp(&norm(&b.id)))
}

/// Active or pending: the seats are bought. Pending (an order being provisioned) counts as active here
/// and is written to Halo as `Active`: its seats are billed from the start and Halo's licence statuses
/// have no pending state csp-sync can rely on.
fn is_live(status: SubscriptionStatus) -> bool {
    matches!(
        status,
        SubscriptionStatus::Active | SubscriptionStatus::Pending
    )
}

/// The Azure plan belongs to the billing module.
fn is_azure_plan(sub: &Subscription) -> bool {
    sub.offer_id
        .trim()
        .to_ascii_uppercase()
        .starts_with("DZH318Z0BPS6")
        || sub
            .product_type
            .as_deref()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("Azure"))
        || sub.offer_name.trim().eq_ignore_ascii_case("Azure plan")
}

fn is_long_commitment(sub: &Subscription) -> bool {
    let t = sub.term_duration.trim();
    t.eq_ignore_ascii_case("P1Y") || t.eq_ignore_ascii_case("P3Y")
}

/// Halo licence status for a Partner Center status; `none` (unknown) is not written.
fn halo_status(status: SubscriptionStatus) -> Option<&'static str> {
    match status {
        SubscriptionStatus::Active | SubscriptionStatus::Pending => Some("Active"),
        SubscriptionStatus::Suspended => Some("Suspended"),
        SubscriptionStatus::Deleted => Some("Deleted"),
        SubscriptionStatus::Expired => Some("Expired"),
        SubscriptionStatus::None => None,
    }
}

/// Halo `billing_cycle` for Partner Center's `billingCycle`. `one_time` (a single charge) is written as
/// `None` (no recurring cycle); an unknown spelling is not written rather than guessed.
fn halo_billing_cycle(cycle: &str) -> Option<&'static str> {
    match cycle.trim().to_ascii_lowercase().as_str() {
        "monthly" => Some("Monthly"),
        "annual" | "yearly" => Some("Annual"),
        "triennial" => Some("Triennial"),
        "none" | "one_time" | "onetime" => Some("None"),
        _ => None,
    }
}

/// A subscription's term in a licence name: `P1M` "monthly", `P1Y` "annual", `P3Y` "triennial".
fn term_word(term: &str) -> &'static str {
    match term.trim().to_ascii_uppercase().as_str() {
        "P1M" => "monthly",
        "P1Y" => "annual",
        "P3Y" => "triennial",
        "" => "no term",
        _ => "other term",
    }
}

/// A subscription's billing cycle in a licence name ("billed monthly").
fn cycle_word(cycle: &str) -> &'static str {
    match cycle.trim().to_ascii_lowercase().as_str() {
        "monthly" => "monthly",
        "annual" | "yearly" => "annually",
        "triennial" => "triennially",
        "none" | "one_time" | "onetime" => "once",
        _ => "otherwise",
    }
}

/// Halo `term_duration` for Partner Center's ISO-8601 `termDuration`; empty (legacy offers) is `None`,
/// an unknown duration is not written.
fn halo_term(term: &str) -> Option<&'static str> {
    match term.trim().to_ascii_uppercase().as_str() {
        "P1M" => Some("Monthly"),
        "P1Y" => Some("Annual"),
        "P3Y" => Some("Triennial"),
        "" => Some("None"),
        _ => None,
    }
}

/// A date-time as Halo takes it, `YYYY-MM-DDTHH:MM:SS` (UTC, whole seconds), from an RFC 3339 timestamp
/// (Partner Center), a civil date-time (Halo, with or without fraction) or a date. `None` if unparseable.
fn halo_datetime(s: &str) -> Option<String> {
    let s = s.trim();
    if let Ok(ts) = s.parse::<Timestamp>() {
        return Some(ts.strftime("%Y-%m-%dT%H:%M:%S").to_string());
    }
    if let Ok(dt) = s.parse::<jiff::civil::DateTime>() {
        return Some(dt.strftime("%Y-%m-%dT%H:%M:%S").to_string());
    }
    if let Ok(d) = s.parse::<jiff::civil::Date>() {
        return Some(d.strftime("%Y-%m-%dT00:00:00").to_string());
    }
    None
}

/// Whether Halo's stored date-time equals the one to write. Halo may keep dates without their time
/// (unverified), so a Halo value at midnight on the same day also counts as equal.
fn same_datetime(halo: Option<&str>, want: &str) -> bool {
    let Some(have) = halo.and_then(halo_datetime) else {
        return false;
    };
    have == want || (have.ends_with("T00:00:00") && have.get(..10) == want.get(..10))
}

/// `(YYYY-MM-DD, whole days left)` when the timestamp lies between now and 30 days from now.
fn within_horizon(s: &str, now: Timestamp) -> Option<(String, i64)> {
    let ts = s.trim().parse::<Timestamp>().ok()?;
    let secs = ts.as_second() - now.as_second();
    if !(0..=FLAG_HORIZON_DAYS * SECONDS_PER_DAY).contains(&secs) {
        return None;
    }
    Some((
        ts.strftime("%Y-%m-%d").to_string(),
        secs.div_euclid(SECONDS_PER_DAY),
    ))
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

fn text_eq_ci(have: Option<&str>, want: &str) -> bool {
    have.is_some_and(|h| h.trim().eq_ignore_ascii_case(want.trim()))
}

fn opt_str(v: Option<&str>) -> Value {
    v.map_or(Value::Null, Value::from)
}

/// The fields of `have` that differ from `want`, in a fixed order. Identifiers and Halo's enumerations
/// compare case-insensitively; the name exactly (trimmed); dates to the second.
fn diff_fields(have: &HaloLicence, want: &Desired) -> Vec<FieldChange> {
    let mut out = Vec::new();
    let mut push = |field: &str, from: Value, to: Value| {
        out.push(FieldChange {
            field: field.into(),
            from,
            to,
        });
    };
    if have.name.trim() != want.name {
        push(
            "name",
            Value::from(have.name.clone()),
            Value::from(want.name.clone()),
        );
    }
    if have.count != Some(want.count) {
        push(
            "count",
            have.count.map_or(Value::Null, Value::from),
            Value::from(want.count),
        );
    }
    if let Some(n) = want.licences_in_use
        && have.licences_in_use != Some(n)
    {
        push(
            "licences_in_use",
            have.licences_in_use.map_or(Value::Null, Value::from),
            Value::from(n),
        );
    }
    for (field, have_v, want_v) in [
        ("status", have.status.as_deref(), want.status),
        (
            "billing_cycle",
            have.billing_cycle.as_deref(),
            want.billing_cycle,
        ),
        (
            "term_duration",
            have.term_duration.as_deref(),
            want.term_duration,
        ),
    ] {
        if let Some(w) = want_v
            && !text_eq_ci(have_v, w)
        {
            push(field, opt_str(have_v), Value::from(w));
        }
    }
    if have.autorenew != Some(want.autorenew) {
        push(
            "autorenew",
            have.autorenew.map_or(Value::Null, Value::from),
            Value::from(want.autorenew),
        );
    }
    for (field, have_v, want_v) in [
        (
            "start_date",
            have.start_date.as_deref(),
            want.start_date.as_deref(),
        ),
        (
            "end_date",
            have.end_date.as_deref(),
            want.end_date.as_deref(),
        ),
    ] {
        if let Some(w) = want_v
            && !same_datetime(have_v, w)
        {
            push(field, opt_str(have_v), Value::from(w));
        }
    }
    if let Some(p) = want.product_sku.as_deref()
        && !text_eq_ci(have.product_sku.as_deref(), p)
    {
        push(
            "product_sku",
            opt_str(have.product_sku.as_deref()),
            Value::from(p),
        );
    }
    for (field, have_v, want_v) in [
        ("manufacturer", have.manufacturer.as_deref(), "Microsoft"),
        (
            "third_party_product",
            have.third_party_product.as_deref(),
            want.third_party_product.as_str(),
        ),
        (
            "tenant_id",
            have.tenant_id.as_deref(),
            want.tenant_id.as_str(),
        ),
    ] {
        if !text_eq_ci(have_v, want_v) {
            push(field, opt_str(have_v), Value::from(want_v));
        }
    }
    out
}

fn show(v: &Value) -> String {
    match v {
        Value::Null => "none".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A reason in a technician's words for a set of field changes, one phrase per field, `; `-separated.
fn update_reason(fields: &[FieldChange], edited_in_halo: &dyn Fn(&FieldChange) -> bool) -> String {
    let mut parts = Vec::new();
    for f in fields {
        let (from, to) = (show(&f.from), show(&f.to));
        if edited_in_halo(f) {
            let source = if f.field == "licences_in_use" {
                "Entra"
            } else {
                "Partner Center"
            };
            parts.push(format!(
                "{} edited in Halo ({from}; {source} unchanged since the last sync: {to})",
                field_words(&f.field)
            ));
            continue;
        }
        let phrase = match f.field.as_str() {
            "count" => format!("seat count {from} -> {to} in Partner Center"),
            "licences_in_use" => format!("assigned seats {from} -> {to}"),
            "status" => match to.as_str() {
                "Deleted" => "cancelled in Partner Center".into(),
                "Suspended" => "suspended in Partner Center".into(),
                "Expired" => "expired in Partner Center".into(),
                _ if f.from.is_null() => format!("status {to} in Partner Center"),
                _ => format!("{to} again in Partner Center (was {from})"),
            },
            "name" => format!("name \"{from}\" -> \"{to}\""),
            "autorenew" => {
                if f.to == Value::Bool(true) {
                    "auto-renew turned on in Partner Center".into()
                } else {
                    "auto-renew turned off in Partner Center".into()
                }
            }
            "end_date" => format!("commitment end {from} -> {to}"),
            "start_date" => format!("start {from} -> {to}"),
            "billing_cycle" => format!("billing cycle {from} -> {to}"),
            "term_duration" => format!("term {from} -> {to}"),
            "product_sku" => format!("product SKU {from} -> {to}"),
            "manufacturer" => format!("manufacturer {from} -> {to}"),
            // Part of a link; on an update only a half-written link lacks them.
            "third_party_product" => "subscription id recorded".into(),
            "tenant_id" => "tenant id recorded".into(),
            other => format!("{other} {from} -> {to}"),
        };
        parts.push(phrase);
    }
    parts.join("; ")
}

/// A licence field in words, for reasons.
fn field_words(field: &str) -> &str {
    match field {
        "count" => "seat count",
        "licences_in_use" => "assigned seats",
        "autorenew" => "auto-renew",
        "end_date" => "commitment end",
        "start_date" => "start",
        "billing_cycle" => "billing cycle",
        "term_duration" => "term",
        "product_sku" => "product SKU",
        other => other,
    }
}

fn create_reason(sub: &Subscription) -> String {
    match sub.status {
        SubscriptionStatus::Suspended => "new subscription in Partner Center (suspended)".into(),
        _ => "new subscription in Partner Center".into(),
    }
}

fn licence_change(
    action: Action,
    halo_id: Option<i64>,
    sub: &Subscription,
    label: &str,
    reason: String,
    fields: Vec<FieldChange>,
    extra: Map<String, Value>,
) -> Change {
    Change {
        module: Module::Licences,
        action,
        entity: HaloEntity::SoftwareLicence,
        halo_id,
        source_key: sub.id.clone(),
        label: label.to_string(),
        reason,
        fields,
        extra,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Summary;
    use crate::plan::test_support::written as field;
    use serde_json::json;

    const TENANT: &str = "aaaaaaaa-0000-0000-0000-000000000001";
    const CLIENT: i64 = 42;
    const SPB_ID: &str = "cbdc14ab-d96c-4c30-b9f4-6ada7cdc1d46";
    const EXO1_ID: &str = "4b9405b0-7788-4568-add1-99614e613b69";
    const FLOW_FREE_ID: &str = "f30db892-07e9-47e9-837c-80727f46fd3d";

    fn now() -> Timestamp {
        "2026-03-01T00:00:00Z".parse().unwrap()
    }

    fn sub(id: &str, offer_name: &str, quantity: i64) -> Subscription {
        Subscription {
            id: id.into(),
            offer_id: "CFQ7TTC0LH18:0001:CFQ7TTC0K971".into(),
            offer_name: offer_name.into(),
            friendly_name: None,
            quantity,
            status: SubscriptionStatus::Active,
            auto_renew: true,
            billing_cycle: "monthly".into(),
            term_duration: "P1M".into(),
            effective_start_date: Some("2026-01-01T10:00:00.1234567Z".into()),
            commitment_end_date: Some("2026-03-31T00:00:00Z".into()),
            cancellation_window_ends: Some("2026-01-08T10:00:00Z".into()),
            product_type: Some("OnlineServicesNCE".into()),
            is_trial: false,
        }
    }

    fn usage(sku_id: &str, part: &str, consumed: i64, enabled: i64) -> SkuUsage {
        SkuUsage {
            sku_id: sku_id.into(),
            sku_part_number: part.into(),
            consumed_units: consumed,
            enabled_units: enabled,
            capability_status: "Enabled".into(),
        }
    }

    fn input(subscriptions: Vec<Subscription>, skus: Vec<SkuUsage>) -> TenantLicencesInput {
        TenantLicencesInput {
            customer_id: TENANT.into(),
            tenant_id: TENANT.into(),
            tenant_name: "Acme Corp".into(),
            halo_client_id: CLIENT,
            subscriptions,
            skus,
            sku_source: SkuSource::Graph,
            company_subscriptions: Vec::new(),
            errors: Vec::new(),
        }
    }

    fn licence(id: i64, name: &str) -> HaloLicence {
        HaloLicence {
            id,
            client_id: CLIENT,
            name: name.into(),
            ..HaloLicence::default()
        }
    }

    fn plan(inputs: &[TenantLicencesInput], halo: &HaloSnapshot) -> LicencesPlan {
        plan_licences(
            inputs,
            halo,
            &LicencesPolicy::default(),
            &HaloMemory::default(),
            now(),
        )
    }

    fn changes(p: &LicencesPlan) -> Vec<&Change> {
        p.tenants.iter().flat_map(|t| &t.changes).collect()
    }

    /// Applies a plan's changes to the snapshot the way Halo would: creates get the next id, updates and
    /// links overwrite the fields they carry.
    fn apply(p: &LicencesPlan, halo: &HaloSnapshot) -> HaloSnapshot {
        let mut out = halo.clone();
        for c in changes(p) {
            let payload = c.payload(false);
            match c.halo_id {
                None => {
                    let id = out.licences.iter().map(|l| l.id).max().unwrap_or(0) + 1;
                    let mut obj = payload.as_object().unwrap().clone();
                    obj.insert("id".into(), json!(id));
                    out.licences
                        .push(serde_json::from_value(Value::Object(obj)).unwrap());
                }
                Some(id) => {
                    let l = out.licences.iter_mut().find(|l| l.id == id).unwrap();
                    let mut obj = serde_json::to_value(&*l).unwrap();
                    for (k, v) in payload.as_object().unwrap() {
                        obj[k] = v.clone();
                    }
                    *l = serde_json::from_value(obj).unwrap();
                }
            }
        }
        out
    }

    #[test]
    fn nce_monthly_subscription_creates_a_full_licence() {
        let p = plan(
            &[input(
                vec![sub("s-1", "Microsoft 365 Business Premium", 10)],
                vec![usage(SPB_ID, "SPB", 7, 10)],
            )],
            &HaloSnapshot::default(),
        );
        let cs = changes(&p);
        assert_eq!(cs.len(), 1);
        let c = cs[0];
        assert_eq!(c.action, Action::Create);
        assert_eq!(c.entity, HaloEntity::SoftwareLicence);
        assert_eq!(c.reason, "new subscription in Partner Center");
        assert_eq!(c.extra.get("client_id"), Some(&json!(CLIENT)));
        assert!(!c.extra.contains_key("site_id"));
        assert!(c.fields.iter().all(|f| f.from.is_null()));
        let body = c.payload(true);
        assert_eq!(
            body,
            json!({
                "client_id": CLIENT,
                "name": "Microsoft 365 Business Premium",
                "count": 10,
                "licences_in_use": 7,
                "status": "Active",
                "billing_cycle": "Monthly",
                "term_duration": "Monthly",
                "autorenew": true,
                "start_date": "2026-01-01T10:00:00",
                "end_date": "2026-03-31T00:00:00",
                "product_sku": "SPB",
                "manufacturer": "Microsoft",
                "third_party_product": "s-1",
                "tenant_id": TENANT,
            })
        );
        assert_eq!(p.seats.len(), 1);
        let row = &p.seats[0];
        assert_eq!((row.purchased, row.assigned, row.available), (10, 7, 3));
        assert_eq!(row.flags, vec![SeatFlag::UnusedSeats]);
        assert_eq!(row.sku_part_number.as_deref(), Some("SPB"));
        // A monthly term gets no renewal flags even though its term ends within 30 days.
        assert!(p.unjoined.is_empty());
    }

    #[test]
    fn annual_and_triennial_terms_are_written_out() {
        let mut annual = sub("s-a", "Microsoft 365 Business Premium", 5);
        annual.term_duration = "P1Y".into();
        annual.billing_cycle = "monthly".into();
        let mut tri = sub("s-t", "Exchange Online (Plan 1)", 3);
        tri.term_duration = "p3y".into();
        tri.billing_cycle = "Triennial".into();
        tri.auto_renew = false;
        let p = plan(
            &[input(vec![annual, tri], vec![])],
            &HaloSnapshot::default(),
        );
        let cs = changes(&p);
        let a = cs.iter().find(|c| c.source_key == "s-a").unwrap();
        assert_eq!(field(a, "term_duration"), Some(&json!("Annual")));
        assert_eq!(field(a, "billing_cycle"), Some(&json!("Monthly")));
        // Usage unknown: licences_in_use is not written.
        assert_eq!(field(a, "licences_in_use"), None);
        let t = cs.iter().find(|c| c.source_key == "s-t").unwrap();
        assert_eq!(field(t, "term_duration"), Some(&json!("Triennial")));
        assert_eq!(field(t, "billing_cycle"), Some(&json!("Triennial")));
        assert_eq!(field(t, "autorenew"), Some(&json!(false)));
        assert_eq!(field(t, "product_sku"), Some(&json!("EXCHANGESTANDARD")));
    }

    #[test]
    fn one_product_with_several_terms_names_each_licence_by_its_term() {
        let mut annual = sub("s-a", "Microsoft 365 Business Premium", 10);
        annual.term_duration = "P1Y".into();
        annual.billing_cycle = "annual".into();
        let monthly = sub("s-m", "Microsoft 365 Business Premium", 2);
        let exo = sub("s-x", "Exchange Online (Plan 1)", 3);
        let name_of = |p: &LicencesPlan, id: &str| {
            let c = changes(p).into_iter().find(|c| c.source_key == id).unwrap();
            (c.label.clone(), field(c, "name").cloned())
        };
        let p = plan(
            &[input(
                vec![annual.clone(), monthly.clone(), exo.clone()],
                vec![],
            )],
            &HaloSnapshot::default(),
        );
        let spb = "Microsoft 365 Business Premium";
        assert_eq!(
            name_of(&p, "s-a"),
            (
                format!("{spb} (annual)"),
                Some(json!(format!("{spb} (annual)")))
            )
        );
        assert_eq!(name_of(&p, "s-m").0, format!("{spb} (monthly)"));
        // A product alone on the tenant keeps its plain name.
        assert_eq!(name_of(&p, "s-x").0, "Exchange Online (Plan 1)");
        // Stable: the licences written, the next plan renames nothing, also once one is cancelled.
        let halo = apply(&p, &HaloSnapshot::default());
        let mut cancelled = monthly.clone();
        cancelled.status = SubscriptionStatus::Deleted;
        let again = plan(
            &[input(vec![annual.clone(), cancelled, exo.clone()], vec![])],
            &halo,
        );
        assert!(
            changes(&again)
                .iter()
                .all(|c| c.fields.iter().all(|f| f.field != "name")),
            "{:?}",
            changes(&again)
        );
        // One term billed two ways: the billing cycle tells them apart.
        let mut annual_monthly = annual.clone();
        annual_monthly.id = "s-b".into();
        annual_monthly.billing_cycle = "monthly".into();
        let p = plan(
            &[input(vec![annual, annual_monthly], vec![])],
            &HaloSnapshot::default(),
        );
        assert_eq!(
            name_of(&p, "s-a").0,
            format!("{spb} (annual, billed annually)")
        );
        assert_eq!(
            name_of(&p, "s-b").0,
            format!("{spb} (annual, billed monthly)")
        );
    }

    #[test]
    fn one_sku_in_several_subscriptions_splits_assigned_seats() {
        let mut first = sub("s-b", "Microsoft 365 Business Premium", 10);
        first.effective_start_date = Some("2025-06-01T00:00:00Z".into());
        let mut second = sub("s-a", "Microsoft 365 Business Premium", 5);
        second.effective_start_date = Some("2026-02-01T00:00:00Z".into());
        let mut cancelled = sub("s-0", "Microsoft 365 Business Premium", 3);
        cancelled.status = SubscriptionStatus::Suspended;
        cancelled.effective_start_date = Some("2024-01-01T00:00:00Z".into());

        let in_use = |consumed: i64| {
            let p = plan(
                &[input(
                    vec![second.clone(), cancelled.clone(), first.clone()],
                    vec![usage(SPB_ID, "SPB", consumed, 15)],
                )],
                &HaloSnapshot::default(),
            );
            let got: Vec<(String, Value)> = changes(&p)
                .iter()
                .map(|c| {
                    (
                        c.source_key.clone(),
                        field(c, "licences_in_use").cloned().unwrap_or(Value::Null),
                    )
                })
                .collect();
            (got, p)
        };
        let (got, p) = in_use(12);
        assert_eq!(
            got,
            vec![
                ("s-b".to_string(), json!(10)),
                ("s-a".to_string(), json!(2)),
                ("s-0".to_string(), json!(0)),
            ]
        );
        let row = &p.seats[0];
        assert_eq!(row.subscription_ids, vec!["s-b", "s-a", "s-0"]);
        assert_eq!((row.purchased, row.assigned, row.available), (15, 12, 3));

        // Over-assignment lands on the last live subscription, and the seat row is flagged.
        let (got, p) = in_use(17);
        assert_eq!(got[0].1, json!(10));
        assert_eq!(got[1].1, json!(7));
        assert_eq!(got[2].1, json!(0));
        assert_eq!(p.seats[0].flags, vec![SeatFlag::OverAssigned]);
        assert_eq!(p.seats[0].available, -2);
    }

    #[test]
    fn sku_bought_elsewhere_is_in_the_seat_view_only() {
        let p = plan(
            &[input(
                vec![],
                vec![usage(EXO1_ID, "EXCHANGESTANDARD", 4, 5)],
            )],
            &HaloSnapshot::default(),
        );
        assert!(changes(&p).is_empty());
        assert_eq!(p.seats.len(), 1);
        let row = &p.seats[0];
        assert_eq!(row.product_name, "Exchange Online (Plan 1)");
        assert_eq!((row.purchased, row.assigned, row.available), (5, 4, 1));
        assert!(row.subscription_ids.is_empty());
        assert!(
            row.note
                .as_deref()
                .unwrap()
                .contains("not bought through Partner Center")
        );
        assert!(
            p.tenants[0]
                .notes
                .iter()
                .any(|n| n.contains("Exchange Online (Plan 1)"))
        );
    }

    #[test]
    fn excluded_free_sku_is_neither_synced_nor_shown() {
        let policy = LicencesPolicy {
            exclude_skus: vec!["flow_free".into(), SPB_ID.to_uppercase()],
            names: BTreeMap::new(),
        };
        let p = plan_licences(
            &[input(
                vec![
                    sub("s-free", "Microsoft Power Automate Free", 10000),
                    sub("s-spb", "Microsoft 365 Business Premium", 1),
                    sub("s-exo", "Exchange Online (Plan 1)", 1),
                ],
                vec![
                    usage(FLOW_FREE_ID, "FLOW_FREE", 3, 10000),
                    usage(SPB_ID, "SPB", 1, 1),
                ],
            )],
            &HaloSnapshot::default(),
            &policy,
            &HaloMemory::default(),
            now(),
        );
        let keys: Vec<&str> = changes(&p).iter().map(|c| c.source_key.as_str()).collect();
        assert_eq!(keys, vec!["s-exo"]);
        let skus: Vec<Option<&str>> = p
            .seats
            .iter()
            .map(|r| r.sku_part_number.as_deref())
            .collect();
        assert_eq!(skus, vec![Some("EXCHANGESTANDARD")]);
    }

    #[test]
    fn part_number_absent_from_microsofts_table_uses_the_offer_name() {
        let mut i = input(
            vec![sub("s-x", "Contoso Widget Suite", 2)],
            vec![usage(
                "11111111-2222-3333-4444-555555555555",
                "CONTOSO_WIDGET",
                1,
                2,
            )],
        );
        i.company_subscriptions = vec![CompanySubscription {
            commerce_subscription_id: Some("S-X".into()),
            sku_id: "11111111-2222-3333-4444-555555555555".into(),
            sku_part_number: "CONTOSO_WIDGET".into(),
            total_licenses: 2,
            status: "Enabled".into(),
        }];
        let p = plan(&[i], &HaloSnapshot::default());
        let c = changes(&p)[0];
        assert_eq!(field(c, "name"), Some(&json!("Contoso Widget Suite")));
        assert_eq!(field(c, "product_sku"), Some(&json!("CONTOSO_WIDGET")));
        assert_eq!(field(c, "licences_in_use"), Some(&json!(1)));
        assert!(p.unjoined.is_empty());
    }

    #[test]
    fn graph_directory_subscription_wins_over_the_offer_name() {
        let mut i = input(
            vec![sub("s-1", "Microsoft 365 Business Premium", 2)],
            vec![usage(EXO1_ID, "EXCHANGESTANDARD", 2, 2)],
        );
        i.company_subscriptions = vec![
            CompanySubscription {
                commerce_subscription_id: None,
                sku_id: SPB_ID.into(),
                sku_part_number: "SPB".into(),
                total_licenses: 2,
                status: "Enabled".into(),
            },
            CompanySubscription {
                commerce_subscription_id: Some("s-1".into()),
                sku_id: EXO1_ID.to_uppercase(),
                sku_part_number: String::new(),
                total_licenses: 2,
                status: "Enabled".into(),
            },
        ];
        let p = plan(&[i], &HaloSnapshot::default());
        let c = changes(&p)[0];
        assert_eq!(field(c, "product_sku"), Some(&json!("EXCHANGESTANDARD")));
        assert_eq!(field(c, "name"), Some(&json!("Exchange Online (Plan 1)")));
        assert_eq!(field(c, "licences_in_use"), Some(&json!(2)));
    }

    #[test]
    fn unjoined_subscription_is_synced_by_offer_name_and_reported() {
        let p = plan(
            &[input(vec![sub("s-m", "Mystery Offer", 3)], vec![])],
            &HaloSnapshot::default(),
        );
        let c = changes(&p)[0];
        assert_eq!(c.action, Action::Create);
        assert_eq!(field(c, "name"), Some(&json!("Mystery Offer")));
        assert_eq!(field(c, "product_sku"), None);
        assert_eq!(field(c, "licences_in_use"), None);
        assert_eq!(p.unjoined.len(), 1);
        assert_eq!(p.unjoined[0].subscription_id, "s-m");
        assert!(p.tenants[0].notes.iter().any(|n| n.contains("s-m")));
        let row = &p.seats[0];
        assert_eq!(row.sku_id, None);
        assert_eq!(row.purchased, 3);
        assert!(row.flags.is_empty());
    }

    #[test]
    fn name_override_renames_the_licence() {
        let subs = vec![sub("s-1", "Microsoft 365 Business Premium", 10)];
        let skus = vec![usage(SPB_ID, "SPB", 7, 10)];
        let halo = apply(
            &plan(
                &[input(subs.clone(), skus.clone())],
                &HaloSnapshot::default(),
            ),
            &HaloSnapshot::default(),
        );
        let mut names = BTreeMap::new();
        names.insert("spb".to_string(), "M365 Business Premium".to_string());
        let policy = LicencesPolicy {
            exclude_skus: vec![],
            names,
        };
        let p = plan_licences(
            &[input(subs, skus)],
            &halo,
            &policy,
            &HaloMemory::default(),
            now(),
        );
        let cs = changes(&p);
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].action, Action::Update);
        assert_eq!(
            cs[0].fields,
            vec![FieldChange {
                field: "name".into(),
                from: json!("Microsoft 365 Business Premium"),
                to: json!("M365 Business Premium"),
            }]
        );
        assert_eq!(
            cs[0].reason,
            "name \"Microsoft 365 Business Premium\" -> \"M365 Business Premium\""
        );
        assert_eq!(p.seats[0].product_name, "M365 Business Premium");
    }

    #[test]
    fn azure_plan_is_skipped_and_its_licence_left_alone() {
        let mut azure = sub("s-az", "Azure plan", 1);
        azure.offer_id = "DZH318Z0BPS6:0001:DZH318Z0BML6".into();
        let mut azure2 = sub("s-az2", "Something", 1);
        azure2.product_type = Some("Azure".into());
        let mut existing = licence(5, "Azure plan");
        existing.third_party_product = Some("s-az".into());
        existing.tenant_id = Some(TENANT.into());
        let halo = HaloSnapshot {
            licences: vec![existing],
            ..HaloSnapshot::default()
        };
        let p = plan(&[input(vec![azure, azure2], vec![])], &halo);
        assert!(changes(&p).is_empty());
        assert!(p.seats.is_empty());
        assert!(p.unjoined.is_empty());
    }

    #[test]
    fn quantity_change_updates_only_the_count() {
        let skus = vec![usage(SPB_ID, "SPB", 7, 10)];
        let s = sub("s-1", "Microsoft 365 Business Premium", 10);
        let halo = apply(
            &plan(
                &[input(vec![s.clone()], skus.clone())],
                &HaloSnapshot::default(),
            ),
            &HaloSnapshot::default(),
        );
        let mut more = s;
        more.quantity = 12;
        let p = plan(&[input(vec![more], skus)], &halo);
        let cs = changes(&p);
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].action, Action::Update);
        assert_eq!(cs[0].halo_id, Some(1));
        assert_eq!(cs[0].reason, "seat count 10 -> 12 in Partner Center");
        assert_eq!(
            cs[0].payload(false),
            json!({"id": 1, "count": 12, "_dont_fire_automations": true})
        );
    }

    #[test]
    fn a_seat_count_edited_in_halo_says_so_when_csp_sync_wrote_the_count() {
        let skus = vec![usage(SPB_ID, "SPB", 7, 10)];
        let s = sub("s-1", "Microsoft 365 Business Premium", 10);
        let first = plan(
            &[input(vec![s.clone()], skus.clone())],
            &HaloSnapshot::default(),
        );
        let mut halo = apply(&first, &HaloSnapshot::default());
        // What the sync remembers of the create (every licence field written).
        let mut memory = HaloMemory::default();
        memory.record(changes(&first)[0], 1, &std::collections::BTreeSet::new());
        let plan_mem = |subs: Vec<Subscription>, halo: &HaloSnapshot| {
            plan_licences(
                &[input(subs, skus.clone())],
                halo,
                &LicencesPolicy::default(),
                &memory,
                now(),
            )
        };
        // A technician set 14 seats in Halo; Partner Center still has 10.
        halo.licences[0].count = Some(14);
        let p = plan_mem(vec![s.clone()], &halo);
        assert_eq!(
            changes(&p)[0].reason,
            "seat count edited in Halo (14; Partner Center unchanged since the last sync: 10)"
        );
        // Partner Center moved instead: said as before.
        halo.licences[0].count = Some(10);
        let mut more = s;
        more.quantity = 12;
        let p = plan_mem(vec![more], &halo);
        assert_eq!(
            changes(&p)[0].reason,
            "seat count 10 -> 12 in Partner Center"
        );
    }

    #[test]
    fn cancellation_sets_status_deleted_and_never_deletes() {
        let skus = vec![usage(SPB_ID, "SPB", 7, 10)];
        let s = sub("s-1", "Microsoft 365 Business Premium", 10);
        let halo = apply(
            &plan(
                &[input(vec![s.clone()], skus.clone())],
                &HaloSnapshot::default(),
            ),
            &HaloSnapshot::default(),
        );
        let mut gone = s;
        gone.status = SubscriptionStatus::Deleted;
        let p = plan(&[input(vec![gone.clone()], skus.clone())], &halo);
        let cs = changes(&p);
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].action, Action::Update);
        assert_eq!(field(cs[0], "status"), Some(&json!("Deleted")));
        assert!(
            cs[0].reason.contains("cancelled in Partner Center"),
            "{}",
            cs[0].reason
        );
        // The cancelled subscription no longer takes seats.
        assert_eq!(field(cs[0], "licences_in_use"), Some(&json!(0)));
        // Once applied, nothing more happens.
        let halo = apply(&p, &halo);
        assert_eq!(halo.licences.len(), 1);
        assert!(changes(&plan(&[input(vec![gone], skus)], &halo)).is_empty());
    }

    #[test]
    fn seats_of_a_suspended_sku_stay_on_its_suspended_subscription() {
        let mut suspended = sub("s-s", "Microsoft 365 Business Premium", 10);
        suspended.status = SubscriptionStatus::Suspended;
        let mut cancelled = sub("s-c", "Microsoft 365 Business Premium", 4);
        cancelled.status = SubscriptionStatus::Deleted;
        cancelled.effective_start_date = Some("2025-01-01T00:00:00Z".into());
        let mut old = licence(1, "Microsoft 365 Business Premium");
        old.third_party_product = Some("s-c".into());
        old.tenant_id = Some(TENANT.into());
        let p = plan(
            &[input(
                vec![cancelled, suspended],
                vec![usage(SPB_ID, "SPB", 6, 0)],
            )],
            &HaloSnapshot {
                licences: vec![old],
                ..HaloSnapshot::default()
            },
        );
        let cs = changes(&p);
        let in_use = |key: &str| {
            field(
                cs.iter().find(|c| c.source_key == key).unwrap(),
                "licences_in_use",
            )
            .cloned()
        };
        assert_eq!(in_use("s-s"), Some(json!(6)));
        assert_eq!(in_use("s-c"), Some(json!(0)));
        // Nothing live: nothing purchased, all assigned seats over.
        assert_eq!(p.seats[0].purchased, 0);
        assert_eq!(p.seats[0].flags, vec![SeatFlag::OverAssigned]);
    }

    #[test]
    fn cancelled_subscription_without_a_licence_creates_nothing() {
        let mut gone = sub("s-1", "Microsoft 365 Business Premium", 10);
        gone.status = SubscriptionStatus::Deleted;
        let p = plan(
            &[input(vec![gone], vec![])],
            &HaloSnapshot {
                licences: vec![licence(3, "Microsoft 365 Business Premium")],
                ..HaloSnapshot::default()
            },
        );
        assert!(changes(&p).is_empty());
        assert!(
            p.tenants[0]
                .notes
                .iter()
                .any(|n| n.contains("none created"))
        );
        // No seat left and only a cancelled subscription: no seat row either.
        assert!(p.seats.is_empty());
    }

    #[test]
    fn licence_gone_from_partner_center_is_marked_deleted_once() {
        let mut old = licence(9, "Office 365 E3");
        old.third_party_product = Some("s-old".into());
        old.tenant_id = Some(TENANT.to_uppercase());
        old.status = Some("Active".into());
        let mut other_tenant = licence(10, "Office 365 E3");
        other_tenant.third_party_product = Some("s-other".into());
        other_tenant.tenant_id = Some("bbbbbbbb-0000-0000-0000-000000000002".into());
        let halo = HaloSnapshot {
            licences: vec![old, other_tenant],
            ..HaloSnapshot::default()
        };
        let subs = vec![sub("s-1", "Exchange Online (Plan 1)", 1)];
        let p = plan(&[input(subs.clone(), vec![])], &halo);
        let gone: Vec<&Change> = changes(&p)
            .into_iter()
            .filter(|c| c.halo_id.is_some())
            .collect();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].halo_id, Some(9));
        assert_eq!(gone[0].reason, "no longer in Partner Center");
        assert_eq!(gone[0].fields.len(), 1);
        assert_eq!(field(gone[0], "status"), Some(&json!("Deleted")));
        let halo = apply(&p, &halo);
        assert!(changes(&plan(&[input(subs, vec![])], &halo)).is_empty());

        // Guarded when Partner Center returned nothing or could not be read.
        let halo = HaloSnapshot {
            licences: vec![{
                let mut l = licence(9, "Office 365 E3");
                l.third_party_product = Some("s-old".into());
                l.tenant_id = Some(TENANT.into());
                l
            }],
            ..HaloSnapshot::default()
        };
        let p = plan(&[input(vec![], vec![])], &halo);
        assert!(changes(&p).is_empty());
        assert_eq!(p.tenants[0].held_back.len(), 1);
        assert_eq!(p.tenants[0].held_back[0].guard, "empty_source_guard");
        let mut broken = input(vec![sub("s-1", "Exchange Online (Plan 1)", 1)], vec![]);
        broken.errors = vec!["Partner Center subscriptions: HTTP 500".into()];
        let p = plan(&[broken], &halo);
        assert_eq!(p.tenants[0].held_back[0].changes.len(), 1);
        assert_eq!(p.tenants[0].errors.len(), 1);
    }

    #[test]
    fn existing_unlinked_licence_is_adopted_not_duplicated() {
        let mut existing = licence(3, "microsoft 365 business premium");
        existing.count = Some(10);
        let halo = HaloSnapshot {
            licences: vec![existing, licence(4, "Something else")],
            ..HaloSnapshot::default()
        };
        let subs = vec![sub("s-1", "Microsoft 365 Business Premium", 10), {
            let mut s = sub("s-2", "Microsoft 365 Business Premium", 2);
            s.effective_start_date = Some("2026-02-01T00:00:00Z".into());
            s
        }];
        let skus = vec![usage(SPB_ID, "SPB", 11, 12)];
        let p = plan(&[input(subs.clone(), skus.clone())], &halo);
        let cs = changes(&p);
        assert_eq!(cs.len(), 2);
        assert_eq!(cs[0].action, Action::Link);
        assert_eq!(cs[0].halo_id, Some(3));
        assert_eq!(cs[0].source_key, "s-1");
        assert_eq!(field(cs[0], "third_party_product"), Some(&json!("s-1")));
        assert_eq!(field(cs[0], "tenant_id"), Some(&json!(TENANT)));
        assert_eq!(
            field(cs[0], "count"),
            None,
            "unchanged fields are not written"
        );
        assert!(
            cs[0].reason.starts_with("existing licence"),
            "{}",
            cs[0].reason
        );
        // The second subscription of the same product cannot take the same licence.
        assert_eq!(cs[1].action, Action::Create);
        assert_eq!(cs[1].source_key, "s-2");
        let halo = apply(&p, &halo);
        assert!(changes(&plan(&[input(subs, skus)], &halo)).is_empty());
    }

    #[test]
    fn adoption_by_product_sku_and_two_candidates_conflict() {
        let mut by_sku = licence(3, "Business Premium seats");
        by_sku.product_sku = Some("spb".into());
        let one = HaloSnapshot {
            licences: vec![by_sku.clone()],
            ..HaloSnapshot::default()
        };
        let s = vec![sub("s-1", "Microsoft 365 Business Premium", 10)];
        let p = plan(&[input(s.clone(), vec![])], &one);
        assert_eq!(changes(&p)[0].action, Action::Link);

        let mut by_name = licence(7, "Microsoft 365 Business Premium");
        by_name.tenant_id = Some(TENANT.into());
        // A licence of another tenant, or on another client, is no candidate.
        let mut elsewhere = licence(8, "Microsoft 365 Business Premium");
        elsewhere.client_id = 99;
        let mut other_tenant = licence(11, "Microsoft 365 Business Premium");
        other_tenant.tenant_id = Some("bbbbbbbb-0000-0000-0000-000000000002".into());
        let two = HaloSnapshot {
            licences: vec![by_sku, by_name, elsewhere, other_tenant],
            ..HaloSnapshot::default()
        };
        let p = plan(&[input(s, vec![])], &two);
        assert!(changes(&p).is_empty());
        let conflicts = &p.tenants[0].conflicts;
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].halo_ids, vec![3, 7]);
        assert_eq!(conflicts[0].source_key, "s-1");
    }

    #[test]
    fn linked_licence_on_another_client_or_tenant_is_a_conflict() {
        let mut moved = licence(3, "Microsoft 365 Business Premium");
        moved.client_id = 99;
        moved.third_party_product = Some("s-1".into());
        moved.tenant_id = Some(TENANT.into());
        let s = vec![sub("s-1", "Microsoft 365 Business Premium", 10)];
        let p = plan(
            &[input(s.clone(), vec![])],
            &HaloSnapshot {
                licences: vec![moved.clone()],
                ..HaloSnapshot::default()
            },
        );
        assert!(changes(&p).is_empty());
        assert_eq!(p.tenants[0].conflicts[0].halo_ids, vec![3]);

        moved.client_id = CLIENT;
        moved.tenant_id = Some("bbbbbbbb-0000-0000-0000-000000000002".into());
        let p = plan(
            &[input(s, vec![])],
            &HaloSnapshot {
                licences: vec![moved],
                ..HaloSnapshot::default()
            },
        );
        assert!(changes(&p).is_empty());
        assert!(p.tenants[0].conflicts[0].reason.contains("another tenant"));
    }

    #[test]
    fn planning_is_idempotent() {
        let mut annual = sub("s-2", "Office 365 E3", 20);
        annual.term_duration = "P1Y".into();
        annual.billing_cycle = "annual".into();
        annual.commitment_end_date = Some("2026-12-31T23:59:59.999Z".into());
        let mut suspended = sub("s-3", "Microsoft 365 Business Basic", 4);
        suspended.status = SubscriptionStatus::Suspended;
        let mut pending = sub("s-4", "Mystery Offer", 1);
        pending.status = SubscriptionStatus::Pending;
        pending.effective_start_date = None;
        let inputs = vec![
            input(
                vec![
                    sub("s-1", "Microsoft 365 Business Premium", 10),
                    annual,
                    suspended,
                    pending,
                ],
                vec![
                    usage(SPB_ID, "SPB", 12, 10),
                    usage(
                        "6fd2c87f-b296-42f0-b197-1e91e994b900",
                        "ENTERPRISEPACK",
                        3,
                        20,
                    ),
                ],
            ),
            TenantLicencesInput {
                customer_id: "bbbbbbbb-0000-0000-0000-000000000002".into(),
                tenant_id: "bbbbbbbb-0000-0000-0000-000000000002".into(),
                tenant_name: "Beta Ltd".into(),
                ..input(vec![sub("s-9", "Exchange Online (Plan 1)", 2)], vec![])
            },
        ];
        let mut halo = HaloSnapshot {
            licences: vec![licence(50, "Office 365 E3"), {
                let mut l = licence(51, "Retired thing");
                l.third_party_product = Some("s-old".into());
                l.tenant_id = Some(TENANT.into());
                l
            }],
            ..HaloSnapshot::default()
        };
        let first = plan(&inputs, &halo);
        assert_eq!(Summary::of(&first.tenants).create, 4);
        assert_eq!(Summary::of(&first.tenants).link, 1);
        assert_eq!(Summary::of(&first.tenants).update, 1);
        halo = apply(&first, &halo);
        let second = plan(&inputs, &halo);
        assert!(changes(&second).is_empty(), "{:#?}", changes(&second));
        assert!(second.tenants.iter().all(|t| t.conflicts.is_empty()));
        // Same input, same output (order included).
        assert_eq!(plan(&inputs, &halo), second);
        assert_eq!(second.tenants[0].name, "Acme Corp");
        assert_eq!(second.seats, first.seats);
    }

    #[test]
    fn seat_flags_for_commitments() {
        let mut annual = sub("s-1", "Microsoft 365 Business Premium", 10);
        annual.term_duration = "P1Y".into();
        annual.commitment_end_date = Some("2026-03-11T12:00:00Z".into());
        annual.cancellation_window_ends = Some("2026-03-04T00:00:00Z".into());
        let mut monthly = sub("s-2", "Exchange Online (Plan 1)", 5);
        monthly.commitment_end_date = Some("2026-03-05T00:00:00Z".into());
        monthly.cancellation_window_ends = Some("2026-03-02T00:00:00Z".into());
        let mut later = sub("s-3", "Office 365 E3", 5);
        later.term_duration = "P3Y".into();
        later.commitment_end_date = Some("2026-04-10T00:00:00Z".into());
        later.cancellation_window_ends = Some("2026-02-20T00:00:00Z".into());
        let p = plan(
            &[input(
                vec![annual, monthly, later],
                vec![
                    usage(SPB_ID, "SPB", 10, 10),
                    usage(EXO1_ID, "EXCHANGESTANDARD", 6, 5),
                    usage(
                        "6fd2c87f-b296-42f0-b197-1e91e994b900",
                        "ENTERPRISEPACK",
                        2,
                        5,
                    ),
                ],
            )],
            &HaloSnapshot::default(),
        );
        let flags = |part: &str| {
            p.seats
                .iter()
                .find(|r| r.sku_part_number.as_deref() == Some(part))
                .unwrap()
                .flags
                .clone()
        };
        assert_eq!(
            flags("SPB"),
            vec![
                SeatFlag::RenewalSoon {
                    date: "2026-03-11".into(),
                    days: 10
                },
                SeatFlag::CancellationWindowCloses {
                    date: "2026-03-04".into(),
                    days: 3
                },
            ]
        );
        assert_eq!(flags("EXCHANGESTANDARD"), vec![SeatFlag::OverAssigned]);
        assert_eq!(flags("ENTERPRISEPACK"), vec![SeatFlag::UnusedSeats]);
        // Seats sorted by product name.
        let names: Vec<&str> = p.seats.iter().map(|r| r.product_name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "Exchange Online (Plan 1)",
                "Microsoft 365 Business Premium",
                "Office 365 E3"
            ]
        );
        assert_eq!(
            serde_json::to_value(&flags("SPB")[0]).unwrap(),
            json!({"flag": "renewal_soon", "date": "2026-03-11", "days": 10})
        );
    }

    #[test]
    fn halo_dates_compare_to_the_second() {
        assert_eq!(
            halo_datetime("2021-01-14T16:57:14.498252Z").as_deref(),
            Some("2021-01-14T16:57:14")
        );
        assert_eq!(
            halo_datetime("2021-01-14T16:57:14.123").as_deref(),
            Some("2021-01-14T16:57:14")
        );
        assert_eq!(
            halo_datetime("2021-01-14").as_deref(),
            Some("2021-01-14T00:00:00")
        );
        assert_eq!(halo_datetime("not a date"), None);
        assert!(same_datetime(
            Some("2021-01-14T16:57:14.9"),
            "2021-01-14T16:57:14"
        ));
        assert!(same_datetime(
            Some("2021-01-14T00:00:00"),
            "2021-01-14T16:57:14"
        ));
        assert!(!same_datetime(
            Some("2021-01-15T00:00:00"),
            "2021-01-14T16:57:14"
        ));
        assert!(!same_datetime(None, "2021-01-14T16:57:14"));
    }
}
