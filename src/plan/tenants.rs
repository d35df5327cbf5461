//! Tenants planner: mapping suggestions and client auto-creation. See SPEC section 7 (tenants).
//!
//! Pure functions of plain values (no I/O, no clock):
//! - [`suggest`]: evidence-based Halo client suggestions for the unmapped, non-skipped customers
//!   (`tenants map`, `tenants map --suggest [--accept-exact]`);
//! - [`fuzzy_search`]: the interactive search box of `tenants map`;
//! - [`plan_auto_create`]: `[sync] auto_create_clients`;
//! - [`renamed`]: customers whose Partner Center name drifted from the `[[tenant]] name`.
//!
//! Evidence, strongest first:
//! 1. the customer's tenant id already stored on a Halo client (`azure_tenants`): [`Confidence::Exact`];
//! 2. a verified domain of the customer equal to the domain of the client's website or e-mail address
//!    (generic mail domains such as gmail.com never count): [`Confidence::Likely`];
//! 3. an equal normalised company name ([`normalise_company_name`]): [`Confidence::Likely`];
//! 4. a similar normalised name (Jaro-Winkler >= [`FUZZY_THRESHOLD`]): [`Confidence::Weak`], shown and never
//!    accepted automatically.
//!
//! A suggestion is accepted automatically only when exactly one client has evidence stronger than
//! [`Confidence::Weak`], and that client is active and not already mapped to another customer. Two clients
//! with evidence of the same strength are a tie; a weaker but real piece of evidence for another client
//! (the tenant id on client B, the domain on client A) is a conflict. Neither is ever auto-accepted.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{Action, Change, Conflict, FieldChange, HaloEntity, Module, TenantPlan, norm};
use crate::model::{Customer, HaloClient};

/// The minimum Jaro-Winkler similarity of two normalised names for [`Evidence::SimilarName`].
pub const FUZZY_THRESHOLD: f64 = 0.9;

/// The reason on every auto-create change.
pub const REASON_NEW_CUSTOMER: &str = "new customer in Partner Center";

/// Mail and web domains shared by unrelated people: never evidence that a customer is a client.
/// Compared after [`domain_of`] (lower-case, `www.` removed).
pub const GENERIC_MAIL_DOMAINS: &[&str] = &[
    "aol.com",
    "att.net",
    "bigpond.com",
    "btinternet.com",
    "comcast.net",
    "free.fr",
    "gmail.com",
    "gmx.at",
    "gmx.ch",
    "gmx.com",
    "gmx.de",
    "gmx.net",
    "googlemail.com",
    "hey.com",
    "hotmail.co.uk",
    "hotmail.com",
    "hotmail.de",
    "hotmail.fr",
    "icloud.com",
    "live.co.uk",
    "live.com",
    "mac.com",
    "mail.com",
    "mail.ru",
    "me.com",
    "msn.com",
    "naver.com",
    "orange.fr",
    "outlook.co.uk",
    "outlook.com",
    "outlook.de",
    "pm.me",
    "proton.me",
    "protonmail.com",
    "qq.com",
    "sky.com",
    "t-online.de",
    "tutanota.com",
    "verizon.net",
    "web.de",
    "yahoo.co.uk",
    "yahoo.com",
    "yahoo.de",
    "yahoo.fr",
    "yandex.com",
    "yandex.ru",
    "ymail.com",
    "zoho.com",
];

/// Legal-form words dropped from the end of a company name by [`normalise_company_name`] (after dots and
/// apostrophes are removed: `B.V.` is `bv`, `S.p.A.` is `spa`, `Sp. z o.o.` is `sp z oo`).
const LEGAL_SUFFIXES: &[&str] = &[
    "ab",
    "ag",
    "aps",
    "as",
    "asa",
    "bhd",
    "bv",
    "bvba",
    "co",
    "company",
    "corp",
    "corporation",
    "cv",
    "doo",
    "ev",
    "gbr",
    "gmbh",
    "inc",
    "incorporated",
    "kft",
    "kg",
    "kgaa",
    "kk",
    "limited",
    "llc",
    "llp",
    "lp",
    "ltd",
    "ltda",
    "mbh",
    "nv",
    "ohg",
    "oy",
    "oyj",
    "plc",
    "private",
    "pte",
    "pty",
    "pvt",
    "sa",
    "sarl",
    "sas",
    "sdn",
    "se",
    "sl",
    "spa",
    "sprl",
    "sro",
    "srl",
    "ug",
    "zrt",
];

/// Legal forms spelt as several words once punctuation is gone, compared joined (`sp z oo` -> `spzoo`).
const LEGAL_SUFFIX_PHRASES: &[&str] = &["spzoo", "sadecv"];

/// The current mapping from the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MappingState {
    /// Customer id -> Halo client id (`[[tenant]] halo_client_id`).
    pub mapped: BTreeMap<String, i64>,
    /// Customer ids with `skip = true`.
    pub skipped: BTreeSet<String>,
}

impl MappingState {
    fn is_mapped(&self, customer_id: &str) -> bool {
        let id = norm(customer_id);
        self.mapped.keys().any(|k| norm(k) == id)
    }

    fn is_skipped(&self, customer_id: &str) -> bool {
        let id = norm(customer_id);
        self.skipped.iter().any(|k| norm(k) == id)
    }

    /// Needs a decision: neither mapped nor skipped.
    fn is_open(&self, customer_id: &str) -> bool {
        !self.is_mapped(customer_id) && !self.is_skipped(customer_id)
    }
}

/// One piece of evidence that a customer is a Halo client.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Evidence {
    /// The customer's tenant id is stored on the client (`azure_tenants`).
    TenantId,
    /// A verified domain of the customer is the client's website's or `domain`, one of its sites'
    /// `emaildomain`, or the most common domain of its contacts' e-mail addresses.
    Domain { domain: String },
    /// The normalised company names are equal.
    Name { normalised: String },
    /// The normalised names are similar (`similarity` >= [`FUZZY_THRESHOLD`], rounded to 3 decimals);
    /// `normalised` is the client's normalised name.
    SimilarName { normalised: String, similarity: f64 },
}

impl Evidence {
    pub fn confidence(&self) -> Confidence {
        match self {
            Evidence::TenantId => Confidence::Exact,
            Evidence::Domain { .. } | Evidence::Name { .. } => Confidence::Likely,
            Evidence::SimilarName { .. } => Confidence::Weak,
        }
    }

    fn weight(&self) -> f64 {
        match self {
            Evidence::TenantId => 1.0,
            Evidence::Domain { .. } => 0.6,
            Evidence::Name { .. } => 0.5,
            Evidence::SimilarName { similarity, .. } => 0.3 * similarity,
        }
    }

    /// The evidence in words ("tenant id", "domain contoso.com", ...).
    pub fn describe(&self) -> String {
        match self {
            Evidence::TenantId => "tenant id".to_string(),
            Evidence::Domain { domain } => format!("domain {domain}"),
            Evidence::Name { normalised } => format!("name \"{normalised}\""),
            Evidence::SimilarName {
                normalised,
                similarity,
            } => format!("similar name \"{normalised}\" ({similarity:.2})"),
        }
    }
}

/// How strong a candidate's best evidence is. Ordered strongest first (`Exact < Likely < Weak`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    Exact,
    Likely,
    Weak,
}

/// A Halo client that may be the customer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub halo_client_id: i64,
    pub halo_client_name: String,
    /// Strongest first.
    pub evidence: Vec<Evidence>,
    /// The strongest evidence's confidence.
    pub confidence: Confidence,
    /// The client is inactive in Halo (never auto-accepted).
    pub inactive: bool,
    /// Another customer already mapped to this client (the smallest such id); never auto-accepted.
    pub already_mapped_to: Option<String>,
    /// Sum of evidence weights, for ordering within a confidence level.
    pub score: f64,
}

/// The suggestions for one unmapped customer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suggestion {
    pub customer_id: String,
    pub customer_name: String,
    /// Best first.
    pub candidates: Vec<Candidate>,
    /// The client to map without asking; `Some` only when the evidence is unambiguous.
    pub auto_accept: Option<i64>,
    /// Why there is no `auto_accept`, in words; `None` when there is one.
    pub why_not: Option<String>,
    /// Whether `auto_accept` rests on exact evidence, the customer's tenant id or a verified domain on the
    /// client: only these does `tenants map --suggest --accept-exact` write (an equal name alone is not
    /// proof enough to write without a person's look).
    pub accept_exact: bool,
}

/// Evidence-based suggestions for every unmapped, non-skipped customer, ordered by customer name then id.
///
/// `domains` holds each customer's verified domains keyed by customer id; a customer missing from it (its
/// Graph token failed) is compared on its Partner Center domain only, and a `why_not` says so when nothing
/// is auto-accepted.
pub fn suggest(
    customers: &[Customer],
    domains: &BTreeMap<String, Vec<String>>,
    clients: &[HaloClient],
    mapping: &MappingState,
) -> Vec<Suggestion> {
    let domains_by_id: BTreeMap<String, &Vec<String>> =
        domains.iter().map(|(k, v)| (norm(k), v)).collect();
    let mapped_to = mapped_customers_by_client(mapping);
    let client_facts: Vec<ClientFacts> = clients.iter().map(ClientFacts::of).collect();

    open_customers(customers, mapping)
        .into_iter()
        .map(|customer| {
            let verified = domains_by_id.get(&norm(&customer.id)).copied();
            suggest_one(customer, verified, &client_facts, &mapped_to)
        })
        .collect()
}

/// What [`suggest`] compares of a Halo client, computed once.
struct ClientFacts<'a> {
    client: &'a HaloClient,
    tenant_ids: BTreeSet<String>,
    domains: BTreeSet<String>,
    normalised: String,
}

impl<'a> ClientFacts<'a> {
    fn of(client: &'a HaloClient) -> ClientFacts<'a> {
        let domains = [client.website.as_deref(), client.domain.as_deref()]
            .into_iter()
            .flatten()
            .chain(client.email_domains.iter().map(String::as_str))
            .filter_map(domain_of)
            .filter(|d| !is_generic_domain(d))
            .collect();
        ClientFacts {
            client,
            tenant_ids: client
                .azure_tenant_ids
                .iter()
                .map(|t| norm(t))
                .filter(|t| !t.is_empty())
                .collect(),
            domains,
            normalised: normalise_company_name(&client.name),
        }
    }
}

/// Client id -> the customers mapped to it (sorted).
fn mapped_customers_by_client(mapping: &MappingState) -> BTreeMap<i64, Vec<String>> {
    let mut out: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for (customer, client) in &mapping.mapped {
        out.entry(*client).or_default().push(norm(customer));
    }
    for v in out.values_mut() {
        v.sort();
        v.dedup();
    }
    out
}

/// Unmapped, non-skipped customers, one per id, ordered by name (case-insensitive) then id.
fn open_customers<'a>(customers: &'a [Customer], mapping: &MappingState) -> Vec<&'a Customer> {
    let mut seen = BTreeSet::new();
    let mut out: Vec<&Customer> = customers
        .iter()
        .filter(|c| !c.id.trim().is_empty())
        .filter(|c| mapping.is_open(&c.id))
        .filter(|c| seen.insert(norm(&c.id)))
        .collect();
    out.sort_by(|a, b| {
        a.company_name
            .to_lowercase()
            .cmp(&b.company_name.to_lowercase())
            .then_with(|| norm(&a.id).cmp(&norm(&b.id)))
    });
    out
}

fn customer_tenant_ids(customer: &Customer) -> BTreeSet<String> {
    [customer.tenant_id.as_str(), customer.id.as_str()]
        .into_iter()
        .map(norm)
        .filter(|t| !t.is_empty())
        .collect()
}

fn customer_domains(customer: &Customer, verified: Option<&Vec<String>>) -> BTreeSet<String> {
    verified
        .into_iter()
        .flatten()
        .map(String::as_str)
        .chain(std::iter::once(customer.domain.as_str()))
        .filter_map(domain_of)
        .filter(|d| !is_generic_domain(d))
        .collect()
}

fn suggest_one(
    customer: &Customer,
    verified: Option<&Vec<String>>,
    clients: &[ClientFacts<'_>],
    mapped_to: &BTreeMap<i64, Vec<String>>,
) -> Suggestion {
    let customer_id = norm(&customer.id);
    let tenant_ids = customer_tenant_ids(customer);
    let my_domains = customer_domains(customer, verified);
    let my_name = normalise_company_name(&customer.company_name);

    let mut candidates: Vec<Candidate> = clients
        .iter()
        .filter_map(|facts| {
            let evidence = evidence_for(&tenant_ids, &my_domains, &my_name, facts);
            let confidence = evidence.iter().map(Evidence::confidence).min()?;
            let score = evidence.iter().map(Evidence::weight).sum();
            let already_mapped_to = mapped_to
                .get(&facts.client.id)
                .and_then(|ids| ids.iter().find(|id| **id != customer_id).cloned());
            Some(Candidate {
                halo_client_id: facts.client.id,
                halo_client_name: facts.client.name.clone(),
                evidence,
                confidence,
                inactive: facts.client.inactive,
                already_mapped_to,
                score,
            })
        })
        .collect();
    candidates.sort_by(|a, b| {
        a.confidence
            .cmp(&b.confidence)
            .then_with(|| b.score.total_cmp(&a.score))
            .then_with(|| a.inactive.cmp(&b.inactive))
            .then_with(|| {
                a.already_mapped_to
                    .is_some()
                    .cmp(&b.already_mapped_to.is_some())
            })
            .then_with(|| a.halo_client_id.cmp(&b.halo_client_id))
    });

    let (auto_accept, mut why_not) = decide(&candidates);
    if auto_accept.is_none() && verified.is_none() {
        let note = "the customer's verified domains could not be read (its Graph token failed?): only \
                    its Partner Center domain was compared";
        why_not = Some(match why_not {
            Some(w) => format!("{w}; {note}"),
            None => note.to_string(),
        });
    }
    let accept_exact = auto_accept.is_some_and(|id| {
        candidates
            .iter()
            .find(|c| c.halo_client_id == id)
            .is_some_and(|c| {
                c.evidence
                    .iter()
                    .any(|e| matches!(e, Evidence::TenantId | Evidence::Domain { .. }))
            })
    });
    Suggestion {
        customer_id: customer.id.clone(),
        customer_name: customer.company_name.clone(),
        candidates,
        auto_accept,
        why_not,
        accept_exact,
    }
}

fn evidence_for(
    tenant_ids: &BTreeSet<String>,
    domains: &BTreeSet<String>,
    name: &str,
    facts: &ClientFacts<'_>,
) -> Vec<Evidence> {
    let mut evidence = Vec::new();
    if !tenant_ids.is_disjoint(&facts.tenant_ids) {
        evidence.push(Evidence::TenantId);
    }
    for d in domains.intersection(&facts.domains) {
        evidence.push(Evidence::Domain { domain: d.clone() });
    }
    if !name.is_empty() && !facts.normalised.is_empty() {
        if name == facts.normalised {
            evidence.push(Evidence::Name {
                normalised: name.to_string(),
            });
        } else {
            let similarity = strsim::jaro_winkler(name, &facts.normalised);
            if similarity >= FUZZY_THRESHOLD {
                evidence.push(Evidence::SimilarName {
                    normalised: facts.normalised.clone(),
                    similarity: (similarity * 1000.0).round() / 1000.0,
                });
            }
        }
    }
    evidence
}

fn label(c: &Candidate) -> String {
    format!("{} ({})", c.halo_client_name, c.halo_client_id)
}

fn evidence_words(c: &Candidate) -> String {
    c.evidence
        .iter()
        .filter(|e| e.confidence() != Confidence::Weak)
        .map(Evidence::describe)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The auto-accept decision over candidates sorted best first.
fn decide(candidates: &[Candidate]) -> (Option<i64>, Option<String>) {
    let Some(best) = candidates.first() else {
        return (
            None,
            Some(
                "no Halo client has this tenant id, one of its domains or its company name"
                    .to_string(),
            ),
        );
    };
    if best.confidence == Confidence::Weak {
        return (
            None,
            Some(
                "only similar names were found; they are never accepted automatically".to_string(),
            ),
        );
    }
    let same: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.confidence == best.confidence)
        .collect();
    if same.len() > 1 {
        let names: Vec<String> = same
            .iter()
            .map(|c| format!("{} by {}", label(c), evidence_words(c)))
            .collect();
        return (
            None,
            Some(format!(
                "tie: {} clients have equally strong evidence: {}",
                same.len(),
                names.join("; ")
            )),
        );
    }
    let others: Vec<&Candidate> = candidates
        .iter()
        .skip(1)
        .filter(|c| c.confidence != Confidence::Weak)
        .collect();
    if !others.is_empty() {
        let other_words: Vec<String> = others
            .iter()
            .map(|c| format!("{} points to {}", evidence_words(c), label(c)))
            .collect();
        return (
            None,
            Some(format!(
                "conflicting evidence: {} points to {}, but {}",
                evidence_words(best),
                label(best),
                other_words.join("; ")
            )),
        );
    }
    if best.inactive {
        return (
            None,
            Some(format!(
                "the matching client {} is inactive in Halo",
                label(best)
            )),
        );
    }
    if let Some(other) = &best.already_mapped_to {
        return (
            None,
            Some(format!(
                "the matching client {} is already mapped to customer {other}",
                label(best)
            )),
        );
    }
    (Some(best.halo_client_id), None)
}

/// A company name for comparison: lower case, dots and apostrophes dropped, other punctuation as spaces,
/// `&`, `+` and the word `and` ignored, a leading `the` and trailing legal forms (Ltd, Limited, Inc, GmbH,
/// B.V., Pty Ltd, & Co. KG, Sp. z o.o., ...) removed, words joined by single spaces. `"Company A LTD"` and
/// `"Company A Limited"` are both `"company a"`; `"Smith & Sons Inc."` and `"smith and sons"` are both
/// `"smith sons"`. A name made only of such words is kept, only cleaned (`"AG"` stays `"ag"`).
pub fn normalise_company_name(name: &str) -> String {
    let lower = name.to_lowercase().replace(['&', '+'], " and ");
    let mut all: Vec<String> = Vec::new();
    for word in lower.split_whitespace() {
        let word: String = word
            .chars()
            .filter(|c| !matches!(c, '.' | '\'' | '\u{2019}' | '`'))
            .collect();
        // `a/s` (Danish and Norwegian A/S) is one legal form, not two words.
        let chars: Vec<char> = word.chars().collect();
        if chars.len() == 3
            && chars[1] == '/'
            && chars[0].is_alphabetic()
            && chars[2].is_alphabetic()
        {
            all.push(format!("{}{}", chars[0], chars[2]));
            continue;
        }
        for part in word.split(|c: char| !c.is_alphanumeric()) {
            if !part.is_empty() {
                all.push(part.to_string());
            }
        }
    }
    let mut tokens: Vec<String> = all.iter().filter(|t| *t != "and").cloned().collect();
    if tokens.len() > 1 && tokens[0] == "the" {
        tokens.remove(0);
    }
    while tokens.len() > 1 {
        let phrase_len = [4usize, 3, 2].into_iter().find(|&k| {
            tokens.len() > k
                && LEGAL_SUFFIX_PHRASES.contains(&tokens[tokens.len() - k..].concat().as_str())
        });
        if let Some(k) = phrase_len {
            tokens.truncate(tokens.len() - k);
        } else if LEGAL_SUFFIXES.contains(&tokens[tokens.len() - 1].as_str()) {
            tokens.pop();
        } else {
            break;
        }
    }
    if tokens.is_empty() {
        return all.join(" ");
    }
    tokens.join(" ")
}

/// The domain of a website address or an e-mail address, lower case, without `www.`:
/// `"https://www.acme.com/x"` -> `acme.com`, `"info@acme.com"` -> `acme.com`. `None` when the text holds
/// no plausible domain name (no dot, spaces, bad characters).
pub fn domain_of(website_or_email: &str) -> Option<String> {
    let mut s = website_or_email.trim().to_lowercase();
    if let Some(rest) = s.strip_prefix("mailto:") {
        s = rest.to_string();
    }
    let host: &str = if let Some(idx) = s.find("://") {
        // URL: drop scheme, then path/query/fragment, then user info and port.
        let rest = &s[idx + 3..];
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        let authority = authority.rsplit('@').next().unwrap_or(authority);
        authority.split(':').next().unwrap_or(authority)
    } else if let Some(at) = s.rfind('@') {
        // E-mail address; a trailing `>` of `Name <a@b.com>` is dropped.
        s[at + 1..].trim_end_matches('>')
    } else {
        let end = s.find(['/', '?', '#']).unwrap_or(s.len());
        let host = &s[..end];
        host.split(':').next().unwrap_or(host)
    };
    let host = host.trim().trim_end_matches('.');
    let host = host.strip_prefix("www.").unwrap_or(host);
    let valid = host.contains('.')
        && host.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    valid.then(|| host.to_string())
}

/// Whether a domain is a shared mail or web domain ([`GENERIC_MAIL_DOMAINS`]) that is never evidence.
pub fn is_generic_domain(domain: &str) -> bool {
    let d = norm(domain);
    GENERIC_MAIL_DOMAINS.contains(&d.as_str())
}

/// Clients ranked for an interactive search: Jaro-Winkler similarity of the normalised query and the
/// normalised client name, raised when one contains the other (word-prefix matches most). Returns at most
/// `limit` `(client id, client name, score)` tuples, best first, ties by name then id; an empty query
/// returns nothing. Inactive clients are included; the caller shows their state.
pub fn fuzzy_search(query: &str, clients: &[HaloClient], limit: usize) -> Vec<(i64, String, f64)> {
    let q = normalise_company_name(query);
    if q.is_empty() || limit == 0 {
        return Vec::new();
    }
    let mut scored: Vec<(i64, String, f64)> = clients
        .iter()
        .map(|c| {
            let n = normalise_company_name(&c.name);
            (c.id, c.name.clone(), search_score(&q, &n))
        })
        .filter(|(_, _, s)| *s > 0.0)
        .collect();
    scored.sort_by(|a, b| {
        b.2.total_cmp(&a.2)
            .then_with(|| a.1.to_lowercase().cmp(&b.1.to_lowercase()))
            .then_with(|| a.0.cmp(&b.0))
    });
    scored.truncate(limit);
    scored
}

fn search_score(q: &str, name: &str) -> f64 {
    if name.is_empty() {
        return 0.0;
    }
    if q == name {
        return 1.0;
    }
    let mut score = strsim::jaro_winkler(q, name);
    // The best word of the name counts too: "sons" finds "smith and sons".
    for word in name.split(' ') {
        score = score.max(0.95 * strsim::jaro_winkler(q, word));
    }
    let boost = if name.split(' ').any(|w| w.starts_with(q)) {
        0.15
    } else if name.contains(q) {
        0.1
    } else if q.contains(name) {
        0.05
    } else {
        0.0
    };
    // Below 1.0 so an exact name always ranks first.
    (score + boost).min(0.999)
}

/// The result of [`plan_auto_create`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AutoCreate {
    /// One plan per customer that needs a new Halo client: a single `create` of a `Client`.
    pub creates: Vec<TenantPlan>,
    /// `(customer id, client id)`: a Halo client already carries the customer's tenant id (a previous run
    /// created it and stopped before writing the config). Write the mapping; create nothing.
    pub adopt: Vec<(String, i64)>,
    /// Customers whose tenant id is on several Halo clients: neither created nor adopted.
    pub conflicts: Vec<Conflict>,
}

/// `[sync] auto_create_clients`: a Halo client for each unmapped, non-skipped customer (each customer id
/// once, ordered by name then id), unless a client already carries its tenant id in `azure_tenants` (then
/// it is adopted, even when inactive: a duplicate would be worse; or, when several do, a conflict). A create
/// whose name equals an existing client's normalised name carries a note suggesting `tenants map`.
pub fn plan_auto_create(
    customers: &[Customer],
    clients: &[HaloClient],
    mapping: &MappingState,
) -> AutoCreate {
    let facts: Vec<ClientFacts> = clients.iter().map(ClientFacts::of).collect();
    let mut out = AutoCreate::default();
    for customer in open_customers(customers, mapping) {
        let tenant_ids = customer_tenant_ids(customer);
        let holders: Vec<&HaloClient> = facts
            .iter()
            .filter(|f| !tenant_ids.is_disjoint(&f.tenant_ids))
            .map(|f| f.client)
            .collect();
        match holders.as_slice() {
            [] => out.creates.push(create_plan(customer, &facts)),
            [one] => out.adopt.push((customer.id.clone(), one.id)),
            many => out.conflicts.push(Conflict {
                module: Module::Tenants,
                source_key: customer.id.clone(),
                label: customer.company_name.clone(),
                reason: format!(
                    "the tenant id is on {} Halo clients ({}); map the customer with `csp-sync tenants map \
                     --customer {} --client ID` or remove the duplicate mapping in Halo",
                    many.len(),
                    many.iter()
                        .map(|c| format!("{} ({})", c.name, c.id))
                        .collect::<Vec<_>>()
                        .join(", "),
                    customer.id
                ),
                halo_ids: many.iter().map(|c| c.id).collect(),
            }),
        }
    }
    out
}

fn create_plan(customer: &Customer, facts: &[ClientFacts<'_>]) -> TenantPlan {
    let tenant_id = if customer.tenant_id.trim().is_empty() {
        norm(&customer.id)
    } else {
        norm(&customer.tenant_id)
    };
    let name = if customer.company_name.trim().is_empty() {
        // Defensive: Partner Center always names a customer, but a client needs a name.
        customer.domain.trim().to_string()
    } else {
        customer.company_name.trim().to_string()
    };
    // Halo's real example also sends `details_name` (the CSP connection); we send only what the mapping
    // needs and let Halo attach the default connection [low confidence, halo-api.md 3.1].
    let azure_tenants = json!([{ "azure_tenant_id": tenant_id, "azure_tenant_name": name }]);
    let normalised = normalise_company_name(&name);
    let notes: Vec<String> = facts
        .iter()
        .filter(|f| !normalised.is_empty() && f.normalised == normalised)
        .map(|f| {
            format!(
                "a Halo client with the same name exists: {} ({}); if it is this customer, map it with \
                 `csp-sync tenants map --customer {} --client {}` instead",
                f.client.name, f.client.id, customer.id, f.client.id
            )
        })
        .collect();
    TenantPlan {
        customer_id: customer.id.clone(),
        name: name.clone(),
        halo_client_id: None,
        changes: vec![Change {
            module: Module::Tenants,
            action: Action::Create,
            entity: HaloEntity::Client,
            halo_id: None,
            source_key: customer.id.clone(),
            label: name.clone(),
            reason: REASON_NEW_CUSTOMER.to_string(),
            fields: vec![
                FieldChange {
                    field: "name".into(),
                    from: Value::Null,
                    to: Value::String(name),
                },
                FieldChange {
                    field: "azure_tenants".into(),
                    from: Value::Null,
                    to: azure_tenants,
                },
            ],
            extra: Map::new(),
        }],
        notes,
        ..TenantPlan::default()
    }
}

/// Customers whose Partner Center company name differs (after [`normalise_company_name`]) from the
/// `[[tenant]] name` in the config (`config_names`: customer id -> name). Returns
/// `(customer id, config name, Partner Center name)` ordered by customer id; customers without a config
/// name, or with an empty one, are not reported.
pub fn renamed(
    customers: &[Customer],
    config_names: &BTreeMap<String, String>,
) -> Vec<(String, String, String)> {
    let by_id: BTreeMap<String, &String> = config_names.iter().map(|(k, v)| (norm(k), v)).collect();
    let mut seen = BTreeSet::new();
    let mut out: Vec<(String, String, String)> = customers
        .iter()
        .filter(|c| seen.insert(norm(&c.id)))
        .filter_map(|c| {
            let old = by_id.get(&norm(&c.id))?;
            if old.trim().is_empty() || c.company_name.trim().is_empty() {
                return None;
            }
            (normalise_company_name(old) != normalise_company_name(&c.company_name))
                .then(|| (c.id.clone(), (*old).clone(), c.company_name.clone()))
        })
        .collect();
    out.sort_by_key(|r| norm(&r.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: &str = "aaaaaaaa-0000-0000-0000-000000000001";
    const T2: &str = "aaaaaaaa-0000-0000-0000-000000000002";
    const T3: &str = "aaaaaaaa-0000-0000-0000-000000000003";

    fn customer(id: &str, name: &str, domain: &str) -> Customer {
        Customer {
            id: id.into(),
            tenant_id: id.into(),
            company_name: name.into(),
            domain: domain.into(),
            relationship: "reseller".into(),
        }
    }

    fn client(id: i64, name: &str) -> HaloClient {
        HaloClient {
            id,
            name: name.into(),
            ..HaloClient::default()
        }
    }

    fn with_tenant(mut c: HaloClient, tenant: &str) -> HaloClient {
        c.azure_tenant_ids.push(tenant.into());
        c
    }

    fn with_website(mut c: HaloClient, site: &str) -> HaloClient {
        c.website = Some(site.into());
        c
    }

    fn with_email(mut c: HaloClient, email: &str) -> HaloClient {
        c.email_domains = domain_of(email).into_iter().collect();
        c
    }

    fn domains(entries: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        entries
            .iter()
            .map(|(id, ds)| {
                (
                    (*id).to_string(),
                    ds.iter().map(|d| (*d).to_string()).collect(),
                )
            })
            .collect()
    }

    fn one(
        c: &Customer,
        doms: &BTreeMap<String, Vec<String>>,
        clients: &[HaloClient],
        mapping: &MappingState,
    ) -> Suggestion {
        let mut s = suggest(std::slice::from_ref(c), doms, clients, mapping);
        assert_eq!(s.len(), 1, "one suggestion expected: {s:?}");
        s.remove(0)
    }

    #[test]
    fn normalises_legal_suffixes_case_punctuation_and_ampersand() {
        let n = normalise_company_name;
        assert_eq!(n("Company A LTD"), n("Company A Limited"));
        assert_eq!(n("Company A LTD"), "company a");
        assert_eq!(n("Smith & Sons Inc."), n("smith and sons"));
        assert_eq!(n("Smith & Sons Inc."), "smith sons");
        assert_eq!(n("Smith + Sons"), n("Smith Sons"));
        assert_eq!(n("Acme B.V."), "acme");
        assert_eq!(n("Acme BV"), "acme");
        assert_eq!(n("Müller GmbH & Co. KG"), "müller");
        assert_eq!(n("Contoso Pty Ltd"), "contoso");
        assert_eq!(n("Contoso Co., Ltd."), "contoso");
        assert_eq!(n("Nordisk A/S"), "nordisk");
        assert_eq!(n("Firma Sp. z o.o."), "firma");
        assert_eq!(n("Grupo S.A. de C.V."), "grupo");
        assert_eq!(n("The Contoso Group"), "contoso group");
        assert_eq!(n("O'Brien   Consulting,  LLC"), "obrien consulting");
        assert_eq!(n("Smith & Co"), "smith");
        // A name made only of a legal form is kept; different names stay different.
        assert_eq!(n("AG"), "ag");
        assert_ne!(n("Acme Ltd"), n("Acme Holdings Ltd"));
        assert_eq!(n(""), "");
    }

    #[test]
    fn domain_of_websites_and_emails() {
        assert_eq!(
            domain_of("https://www.acme.com/x").as_deref(),
            Some("acme.com")
        );
        assert_eq!(
            domain_of("http://Acme.COM:8080/?a=b").as_deref(),
            Some("acme.com")
        );
        assert_eq!(domain_of("www.acme.co.uk").as_deref(), Some("acme.co.uk"));
        assert_eq!(domain_of("acme.com/contact").as_deref(), Some("acme.com"));
        assert_eq!(domain_of("info@acme.com").as_deref(), Some("acme.com"));
        assert_eq!(
            domain_of("mailto:Info@Mail.Acme.com").as_deref(),
            Some("mail.acme.com")
        );
        assert_eq!(
            domain_of("contoso.onmicrosoft.com").as_deref(),
            Some("contoso.onmicrosoft.com")
        );
        assert_eq!(domain_of(""), None);
        assert_eq!(domain_of("n/a"), None);
        assert_eq!(domain_of("localhost"), None);
        assert_eq!(domain_of("acme .com"), None);
        assert_eq!(domain_of("https://"), None);
    }

    #[test]
    fn tenant_id_on_client_is_exact_and_auto_accepted() {
        let c = customer(T1, "Fabrikam", "fabrikam.onmicrosoft.com");
        let clients = vec![
            client(1, "Northwind"),
            with_tenant(
                client(2, "Fabrikam Holdings (old name)"),
                &T1.to_uppercase(),
            ),
        ];
        let s = one(
            &c,
            &domains(&[(T1, &[])]),
            &clients,
            &MappingState::default(),
        );
        assert_eq!(s.candidates.len(), 1);
        let best = &s.candidates[0];
        assert_eq!(best.halo_client_id, 2);
        assert_eq!(best.confidence, Confidence::Exact);
        assert_eq!(best.evidence, vec![Evidence::TenantId]);
        assert_eq!(s.auto_accept, Some(2));
        assert_eq!(s.why_not, None);
    }

    #[test]
    fn domain_match_on_website_with_scheme_and_www() {
        let c = customer(T1, "Fabrikam Inc", "fabrikam.onmicrosoft.com");
        let clients = vec![
            with_website(client(7, "FBK Group"), "https://www.Fabrikam.com/home"),
            client(8, "Unrelated"),
        ];
        let doms = domains(&[(T1, &["fabrikam.onmicrosoft.com", "fabrikam.com"])]);
        let s = one(&c, &doms, &clients, &MappingState::default());
        assert_eq!(s.candidates.len(), 1);
        assert_eq!(s.candidates[0].confidence, Confidence::Likely);
        assert_eq!(
            s.candidates[0].evidence,
            vec![Evidence::Domain {
                domain: "fabrikam.com".into()
            }]
        );
        assert_eq!(s.auto_accept, Some(7));
    }

    #[test]
    fn domain_match_on_email_domain() {
        let c = customer(T1, "Tailspin", "tailspin.onmicrosoft.com");
        let clients = vec![with_email(
            client(3, "TS Toys"),
            "Accounts@tailspintoys.com",
        )];
        let doms = domains(&[(T1, &["tailspintoys.com"])]);
        let s = one(&c, &doms, &clients, &MappingState::default());
        assert_eq!(s.auto_accept, Some(3));
        assert!(
            matches!(&s.candidates[0].evidence[0], Evidence::Domain { domain } if domain == "tailspintoys.com")
        );
    }

    #[test]
    fn generic_mail_domains_are_never_evidence() {
        // The customer (oddly) verified gmail.com, and the client's contact is a gmail address.
        let c = customer(T1, "Joe's Plumbing", "joesplumbing.onmicrosoft.com");
        let clients = vec![
            with_email(client(4, "J Bloggs"), "joe.bloggs@gmail.com"),
            with_website(client(5, "Hotmail fan"), "https://www.hotmail.com"),
        ];
        let doms = domains(&[(T1, &["gmail.com", "hotmail.com"])]);
        let s = one(&c, &doms, &clients, &MappingState::default());
        assert!(s.candidates.is_empty(), "{s:?}");
        assert_eq!(s.auto_accept, None);
        assert!(s.why_not.unwrap().contains("no Halo client"));
        assert!(is_generic_domain("Outlook.com"));
        assert!(!is_generic_domain("contoso.com"));
    }

    #[test]
    fn suffix_normalised_name_is_likely_and_accepted() {
        let c = customer(T1, "Company A LTD", "companya.onmicrosoft.com");
        let c2 = customer(T2, "Smith & Sons Inc.", "smithsons.onmicrosoft.com");
        let clients = vec![
            client(10, "Company A Limited"),
            client(11, "smith and sons"),
        ];
        let doms = domains(&[(T1, &[]), (T2, &[])]);
        let s = suggest(&[c, c2], &doms, &clients, &MappingState::default());
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].customer_id, T1);
        assert_eq!(s[0].auto_accept, Some(10));
        assert_eq!(
            s[0].candidates[0].evidence,
            vec![Evidence::Name {
                normalised: "company a".into()
            }]
        );
        assert_eq!(s[1].customer_id, T2);
        assert_eq!(
            s[1].candidates[0].evidence,
            vec![Evidence::Name {
                normalised: "smith sons".into()
            }]
        );
        assert_eq!(s[1].auto_accept, Some(11));
    }

    #[test]
    fn two_equally_good_candidates_are_a_tie() {
        let c = customer(T1, "Contoso Ltd", "contoso.onmicrosoft.com");
        let clients = vec![client(21, "Contoso Limited"), client(20, "CONTOSO")];
        let s = one(
            &c,
            &domains(&[(T1, &[])]),
            &clients,
            &MappingState::default(),
        );
        assert_eq!(s.candidates.len(), 2);
        // Deterministic: equal scores fall back to the client id.
        assert_eq!(s.candidates[0].halo_client_id, 20);
        assert_eq!(s.candidates[1].halo_client_id, 21);
        assert_eq!(s.auto_accept, None);
        assert!(s.why_not.unwrap().starts_with("tie"));
    }

    #[test]
    fn two_clients_with_the_tenant_id_are_a_tie() {
        let c = customer(T1, "Contoso", "contoso.onmicrosoft.com");
        let clients = vec![
            with_tenant(client(1, "Contoso A"), T1),
            with_tenant(client(2, "Contoso B"), T1),
        ];
        let s = one(
            &c,
            &domains(&[(T1, &[])]),
            &clients,
            &MappingState::default(),
        );
        assert_eq!(s.auto_accept, None);
        assert!(s.why_not.unwrap().starts_with("tie"));
    }

    #[test]
    fn client_mapped_to_another_customer_is_shown_not_accepted() {
        let c = customer(T1, "Contoso", "contoso.onmicrosoft.com");
        let clients = vec![client(30, "Contoso")];
        let mapping = MappingState {
            mapped: BTreeMap::from([(T2.to_string(), 30)]),
            skipped: BTreeSet::new(),
        };
        let s = one(&c, &domains(&[(T1, &[])]), &clients, &mapping);
        assert_eq!(s.candidates[0].halo_client_id, 30);
        assert_eq!(s.candidates[0].already_mapped_to.as_deref(), Some(T2));
        assert_eq!(s.auto_accept, None);
        assert!(s.why_not.unwrap().contains("already mapped to customer"));
    }

    #[test]
    fn conflicting_evidence_is_not_accepted() {
        // The domain points to client A, the tenant id to client B.
        let c = customer(T1, "Litware", "litware.onmicrosoft.com");
        let clients = vec![
            with_website(client(40, "Client A"), "litware.com"),
            with_tenant(client(41, "Client B"), T1),
        ];
        let doms = domains(&[(T1, &["litware.com"])]);
        let s = one(&c, &doms, &clients, &MappingState::default());
        assert_eq!(s.candidates[0].halo_client_id, 41);
        assert_eq!(s.candidates[0].confidence, Confidence::Exact);
        assert_eq!(s.candidates[1].halo_client_id, 40);
        assert_eq!(s.auto_accept, None);
        let why = s.why_not.unwrap();
        assert!(why.contains("conflicting evidence"), "{why}");
        assert!(
            why.contains("domain litware.com points to Client A (40)"),
            "{why}"
        );
    }

    #[test]
    fn a_weak_similar_name_elsewhere_does_not_block() {
        let c = customer(T1, "Contoso", "contoso.onmicrosoft.com");
        let clients = vec![with_tenant(client(1, "Contoso"), T1), client(2, "Contosso")];
        let s = one(
            &c,
            &domains(&[(T1, &[])]),
            &clients,
            &MappingState::default(),
        );
        assert_eq!(s.candidates.len(), 2);
        assert_eq!(s.candidates[1].confidence, Confidence::Weak);
        assert_eq!(s.auto_accept, Some(1));
    }

    #[test]
    fn inactive_client_is_shown_not_accepted() {
        let c = customer(T1, "Adatum", "adatum.onmicrosoft.com");
        let mut inactive = with_tenant(client(50, "Adatum"), T1);
        inactive.inactive = true;
        let s = one(
            &c,
            &domains(&[(T1, &[])]),
            &[inactive],
            &MappingState::default(),
        );
        assert_eq!(s.candidates.len(), 1);
        assert!(s.candidates[0].inactive);
        assert_eq!(s.auto_accept, None);
        assert!(s.why_not.unwrap().contains("inactive"));
    }

    #[test]
    fn fuzzy_only_is_weak_and_never_accepted() {
        let c = customer(T1, "Contoso", "contoso.onmicrosoft.com");
        let s = one(
            &c,
            &domains(&[(T1, &[])]),
            &[client(60, "Contosso Ltd")],
            &MappingState::default(),
        );
        assert_eq!(s.candidates.len(), 1);
        assert_eq!(s.candidates[0].confidence, Confidence::Weak);
        assert!(
            matches!(s.candidates[0].evidence[0], Evidence::SimilarName { similarity, .. } if similarity >= FUZZY_THRESHOLD)
        );
        assert_eq!(s.auto_accept, None);
        assert!(s.why_not.unwrap().contains("similar"));
    }

    #[test]
    fn only_unmapped_non_skipped_customers_are_suggested_in_name_order() {
        let customers = vec![
            customer(T1, "Zeta", "zeta.onmicrosoft.com"),
            customer(T2, "alpha", "alpha.onmicrosoft.com"),
            customer(T3, "Beta", "beta.onmicrosoft.com"),
            customer(
                "aaaaaaaa-0000-0000-0000-000000000004",
                "Mapped",
                "m.onmicrosoft.com",
            ),
        ];
        let mapping = MappingState {
            mapped: BTreeMap::from([("AAAAAAAA-0000-0000-0000-000000000004".to_string(), 1)]),
            skipped: BTreeSet::from([T3.to_string()]),
        };
        let s = suggest(&customers, &BTreeMap::new(), &[], &mapping);
        let ids: Vec<&str> = s.iter().map(|x| x.customer_id.as_str()).collect();
        assert_eq!(ids, vec![T2, T1]);
        // Verified domains unknown: said so.
        assert!(s[0].why_not.as_ref().unwrap().contains("verified domains"));
    }

    #[test]
    fn partner_center_domain_counts_when_graph_failed() {
        let c = customer(T1, "Wide World", "wideworldimporters.com");
        let clients = vec![with_website(client(70, "WWI"), "wideworldimporters.com")];
        let s = one(&c, &BTreeMap::new(), &clients, &MappingState::default());
        assert_eq!(s.auto_accept, Some(70));
    }

    #[test]
    fn evidence_serialises_with_a_kind() {
        let v = serde_json::to_value(Evidence::Domain {
            domain: "a.com".into(),
        })
        .unwrap();
        assert_eq!(v, json!({"kind": "domain", "domain": "a.com"}));
        assert_eq!(
            serde_json::to_value(Confidence::Exact).unwrap(),
            json!("exact")
        );
    }

    #[test]
    fn fuzzy_search_ranks_contoso_first_for_a_typo() {
        let clients = vec![
            client(1, "Fabrikam Ltd"),
            client(2, "Contoso Ltd"),
            client(3, "Consolidated Messenger"),
            client(4, "Northwind Traders"),
        ];
        let r = fuzzy_search("contso", &clients, 3);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].0, 2);
        assert_eq!(r[0].1, "Contoso Ltd");
        assert!(r[0].2 > r[1].2);
        // A word of a longer name is found; an exact name ranks first.
        let r = fuzzy_search("northwind", &clients, 1);
        assert_eq!(r[0].0, 4);
        let r = fuzzy_search("Contoso Limited", &clients, 2);
        assert_eq!(r[0], (2, "Contoso Ltd".to_string(), 1.0));
        assert!(fuzzy_search("  ", &clients, 5).is_empty());
    }

    #[test]
    fn auto_create_adopts_an_existing_client_and_creates_the_others_once() {
        let customers = vec![
            customer(T1, "Already There", "there.onmicrosoft.com"),
            customer(T2, "Brand New Ltd", "new.onmicrosoft.com"),
            customer(T2, "Brand New Ltd", "new.onmicrosoft.com"),
            customer(T3, "Skipped", "skip.onmicrosoft.com"),
            customer(
                "aaaaaaaa-0000-0000-0000-000000000004",
                "Mapped",
                "m.onmicrosoft.com",
            ),
        ];
        let clients = vec![
            with_tenant(client(90, "Already There"), T1),
            client(91, "Other"),
        ];
        let mapping = MappingState {
            mapped: BTreeMap::from([("aaaaaaaa-0000-0000-0000-000000000004".to_string(), 91)]),
            skipped: BTreeSet::from([T3.to_string()]),
        };
        let out = plan_auto_create(&customers, &clients, &mapping);
        assert_eq!(out.adopt, vec![(T1.to_string(), 90)]);
        assert!(out.conflicts.is_empty());
        assert_eq!(out.creates.len(), 1);
        let plan = &out.creates[0];
        assert_eq!(plan.customer_id, T2);
        assert_eq!(plan.name, "Brand New Ltd");
        assert_eq!(plan.halo_client_id, None);
        assert_eq!(plan.changes.len(), 1);
        let ch = &plan.changes[0];
        assert_eq!(ch.module, Module::Tenants);
        assert_eq!(ch.action, Action::Create);
        assert_eq!(ch.entity, HaloEntity::Client);
        assert_eq!(ch.source_key, T2);
        assert_eq!(ch.reason, REASON_NEW_CUSTOMER);
        assert_eq!(
            ch.payload(false),
            json!({
                "name": "Brand New Ltd",
                "azure_tenants": [{"azure_tenant_id": T2, "azure_tenant_name": "Brand New Ltd"}],
                "_dont_fire_automations": true
            })
        );
        assert!(plan.notes.is_empty());
    }

    #[test]
    fn auto_create_conflict_and_same_name_note() {
        let customers = vec![
            customer(T1, "Twice", "twice.onmicrosoft.com"),
            customer(T2, "Contoso Limited", "contoso.onmicrosoft.com"),
        ];
        let clients = vec![
            with_tenant(client(1, "Twice A"), T1),
            with_tenant(client(2, "Twice B"), T1),
            client(3, "Contoso Ltd"),
        ];
        let out = plan_auto_create(&customers, &clients, &MappingState::default());
        assert!(out.adopt.is_empty());
        assert_eq!(out.conflicts.len(), 1);
        assert_eq!(out.conflicts[0].source_key, T1);
        assert_eq!(out.conflicts[0].halo_ids, vec![1, 2]);
        assert_eq!(out.creates.len(), 1);
        assert_eq!(out.creates[0].customer_id, T2);
        assert!(out.creates[0].notes[0].contains("Contoso Ltd (3)"));
    }

    #[test]
    fn renamed_customers_use_normalised_comparison() {
        let customers = vec![
            customer(T1, "Contoso Limited", "c.onmicrosoft.com"),
            customer(T2, "Fabrikam Europe", "f.onmicrosoft.com"),
            customer(T3, "No Config Name", "n.onmicrosoft.com"),
        ];
        let names = BTreeMap::from([
            (T1.to_string(), "Contoso Ltd".to_string()),
            (T2.to_uppercase(), "Fabrikam".to_string()),
        ]);
        assert_eq!(
            renamed(&customers, &names),
            vec![(
                T2.to_string(),
                "Fabrikam".to_string(),
                "Fabrikam Europe".to_string()
            )]
        );
    }
}
