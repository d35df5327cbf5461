//! The pure planners timed in this process, without I/O: an estate of N users (100 per tenant, half as
//! many devices, two subscriptions per tenant) planned into an empty Halo, then planned again against a
//! Halo holding what the first plan created. Also the time to write the first plan as JSON through the
//! masking writer, as `-o json` does, which guards against that writer turning quadratic again (2dab50f).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::{Duration, Instant};

use csp_sync::halo_memory::HaloMemory;
use csp_sync::model::{
    EntraUser, HaloAsset, HaloClient, HaloLicence, HaloSite, HaloSnapshot, HaloUser, IntuneDevice,
    SkuUsage, Subscription, SubscriptionStatus, TenantDirectory,
};
use csp_sync::plan::assets::{self, AssetsPolicy, DeviceRead, TenantAssetsInput};
use csp_sync::plan::licences::{self, LicencesPolicy, SkuSource, TenantLicencesInput};
use csp_sync::plan::users::{self, TenantUsersInput, UsersPolicy};
use csp_sync::plan::{Change, HaloEntity, Module, Plan, TenantPlan};
use serde_json::Value;

const USERS_PER_TENANT: usize = 100;
const SPB: &str = "cbdc14ab-d96c-4c30-b9f4-6ada7cdc1d46";

/// CPU time of this process so far (user + system).
#[cfg(unix)]
pub fn cpu() -> Duration {
    // SAFETY: rusage is plain old data, fully written by getrusage.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a local.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &raw mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

#[cfg(not(unix))]
pub fn cpu() -> Duration {
    Duration::ZERO
}

struct Estate {
    ids: Vec<(String, String, i64)>,
    directories: Vec<TenantDirectory>,
    devices: Vec<DeviceRead>,
    licences: Vec<TenantLicencesInput>,
    halo: HaloSnapshot,
}

fn guid(t: usize, n: usize) -> String {
    format!("{t:08x}-0000-4000-8000-{n:012x}")
}

fn estate(users: usize) -> Estate {
    let tenants = users.div_ceil(USERS_PER_TENANT);
    let mut e = Estate {
        ids: Vec::new(),
        directories: Vec::new(),
        devices: Vec::new(),
        licences: Vec::new(),
        halo: HaloSnapshot::default(),
    };
    for t in 0..tenants {
        let tenant = guid(t, 0);
        let client = t as i64 + 1;
        let name = format!("Customer {t:04} Ltd");
        let dom = format!("customer{t:04}.com");
        let n = USERS_PER_TENANT.min(users - t * USERS_PER_TENANT);
        let people: Vec<EntraUser> = (0..n)
            .map(|u| EntraUser {
                id: guid(t, u + 1),
                user_principal_name: format!("user{u}@{dom}"),
                display_name: Some(format!("User {u} of {t}")),
                given_name: Some("User".into()),
                surname: Some(format!("{u}")),
                mail: Some(format!("user{u}@{dom}")),
                account_enabled: u % 25 != 24,
                sku_ids: if u % 10 < 7 {
                    vec![SPB.into()]
                } else {
                    Vec::new()
                },
                job_title: Some(["Engineer", "Manager", "Analyst"][u % 3].into()),
                ..EntraUser::default()
            })
            .collect();
        let devices = (0..n / 2)
            .map(|d| IntuneDevice {
                id: guid(t, 100_000 + d),
                device_name: format!("LT-{d:04}"),
                operating_system: if d % 3 == 2 { "iOS" } else { "Windows" }.into(),
                serial_number: Some(format!("5CG{t:04}{d:04}")),
                user_id: Some(people[d].id.clone()),
                user_principal_name: Some(people[d].user_principal_name.clone()),
                compliance_state: Some("compliant".into()),
                last_sync: Some("2026-11-27T08:00:00Z".into()),
                properties: BTreeMap::from([
                    ("serialNumber".into(), format!("5CG{t:04}{d:04}")),
                    ("model".into(), "Latitude 5440".into()),
                ]),
            })
            .collect();
        let sub = |id: String, qty: i64| Subscription {
            id,
            offer_id: "CFQ7TTC0LCHC:0002:CFQ7TTC0KDT7".into(),
            offer_name: "Microsoft 365 Business Premium".into(),
            friendly_name: None,
            quantity: qty,
            status: SubscriptionStatus::Active,
            auto_renew: true,
            billing_cycle: "annual".into(),
            term_duration: "P1Y".into(),
            effective_start_date: Some("2026-08-19T00:00:00Z".into()),
            commitment_end_date: Some("2027-08-19T00:00:00Z".into()),
            cancellation_window_ends: None,
            product_type: Some("OnlineServicesNCE".into()),
            is_trial: false,
        };
        let licensed = people.iter().filter(|p| !p.sku_ids.is_empty()).count() as i64;
        e.licences.push(TenantLicencesInput {
            customer_id: tenant.clone(),
            tenant_id: tenant.clone(),
            tenant_name: name.clone(),
            halo_client_id: client,
            subscriptions: vec![
                sub(guid(t, 900_000), licensed + 2),
                sub(guid(t, 900_001), 5),
            ],
            skus: vec![SkuUsage {
                sku_id: SPB.into(),
                sku_part_number: "SPB".into(),
                consumed_units: licensed,
                enabled_units: licensed + 2,
                capability_status: "Enabled".into(),
            }],
            sku_source: SkuSource::Graph,
            company_subscriptions: Vec::new(),
            errors: Vec::new(),
        });
        e.directories.push(TenantDirectory {
            users: people,
            deleted_ids: Vec::new(),
            sku_part_numbers: vec![(SPB.into(), "SPB".into())],
        });
        e.devices.push(DeviceRead::Devices(devices));
        e.halo.clients.push(HaloClient {
            id: client,
            name: name.clone(),
            azure_tenant_ids: vec![tenant.clone()],
            main_site_id: Some(client),
            ..HaloClient::default()
        });
        e.halo.sites.push(HaloSite {
            id: client,
            client_id: client,
            name: "Main".into(),
            ..HaloSite::default()
        });
        e.ids.push((tenant, name, client));
    }
    e
}

struct Planned {
    users: Vec<TenantPlan>,
    licences: Vec<TenantPlan>,
    assets: Vec<TenantPlan>,
}

impl Planned {
    /// Changes by module and action, e.g. `users create 2000, assets link 1000`.
    fn changes(&self) -> String {
        let mut by: BTreeMap<(Module, String), usize> = BTreeMap::new();
        for c in [&self.users, &self.licences, &self.assets]
            .iter()
            .flat_map(|p| p.iter())
            .flat_map(|t| &t.changes)
        {
            *by.entry((c.module, format!("{:?}", c.action).to_lowercase()))
                .or_default() += 1;
        }
        if by.is_empty() {
            return "no changes".into();
        }
        by.iter()
            .map(|((m, a), n)| format!("{m} {a} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `synced`: a sync ran before, so the users of its read are there for the reasons (as the engine passes
/// them from the state directory).
fn plan_all(
    e: &Estate,
    halo: &HaloSnapshot,
    memory: &HaloMemory,
    now: jiff::Timestamp,
    synced: bool,
) -> Planned {
    let inputs: Vec<TenantUsersInput> = e
        .ids
        .iter()
        .zip(&e.directories)
        .map(|((t, n, c), d)| TenantUsersInput {
            customer_id: t,
            name: n,
            halo_client_id: *c,
            site_id: None,
            directory: Ok(d),
            previous: synced.then_some(d.users.as_slice()),
        })
        .collect();
    let policy = UsersPolicy {
        max_deactivations: u32::MAX,
        ..UsersPolicy::default()
    };
    let users = users::plan_users(
        &inputs,
        halo,
        &policy,
        &BTreeMap::new(),
        users::UsersMemory::none(),
        now,
    );
    let licences =
        licences::plan_licences(&e.licences, halo, &LicencesPolicy::default(), memory, now).tenants;
    let asset_inputs: Vec<TenantAssetsInput> = e
        .ids
        .iter()
        .zip(&e.devices)
        .map(|((t, n, c), d)| TenantAssetsInput {
            customer_id: t,
            name: n,
            halo_client_id: *c,
            site_id: None,
            devices: d,
        })
        .collect();
    let policy = AssetsPolicy {
        fields: BTreeMap::from([("serialNumber".into(), 2), ("model".into(), 3)]),
        ..AssetsPolicy::default()
    };
    let assets =
        assets::plan_assets(&asset_inputs, halo, &policy, &BTreeMap::new(), memory, now).tenants;
    Planned {
        users,
        licences,
        assets,
    }
}

/// `record` with the payload's fields that it has set from the change (as Halo would store them); the
/// payload's fields the record type does not hold (list-less ones such as an asset's `users`) are
/// remembered as written, as the applier does.
fn overlay<T: serde::Serialize + serde::de::DeserializeOwned>(
    record: &T,
    change: &Change,
    id: i64,
    client_id: i64,
    memory: &mut HaloMemory,
) -> Option<T> {
    let mut v = serde_json::to_value(record).ok()?;
    let mut payload = change.payload(true);
    if let Some(list) = payload.get("fields").and_then(Value::as_array) {
        // Asset type fields travel as [{id, value}]; the snapshot keeps them by id.
        let map: serde_json::Map<String, Value> = list
            .iter()
            .filter_map(|f| Some((f.get("id")?.to_string(), f.get("value")?.clone())))
            .collect();
        payload["fields"] = Value::Object(map);
    }
    let obj = v.as_object_mut()?;
    obj.insert("client_id".into(), client_id.into());
    for (k, val) in payload.as_object()? {
        if k == "id" || k.starts_with('_') {
            continue;
        }
        if obj.contains_key(k) {
            let val = match (k.as_str(), val) {
                ("azureoid" | "azure_tenant_id" | "intune_id", Value::String(s)) => {
                    Value::String(s.to_lowercase())
                }
                _ => val.clone(),
            };
            obj.insert(k.clone(), val);
        } else {
            memory.remember(change.entity, id, k, val.clone());
        }
    }
    serde_json::from_value(v).ok()
}

/// A Halo list with its records' positions by id.
struct Table<'a, T> {
    records: &'a mut Vec<T>,
    at: std::collections::HashMap<i64, usize>,
}

impl<'a, T> Table<'a, T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + Default,
{
    fn new(records: &'a mut Vec<T>, id_of: impl Fn(&T) -> i64) -> Self {
        let at = records
            .iter()
            .enumerate()
            .map(|(i, r)| (id_of(r), i))
            .collect();
        Table { records, at }
    }

    /// Puts a change in: a create gets a new id, an update is laid over its record.
    fn put(&mut self, c: &Change, next: &mut i64, client: i64, memory: &mut HaloMemory) {
        let id = c.halo_id.unwrap_or_else(|| {
            *next += 1;
            *next
        });
        let base = match self.at.get(&id) {
            Some(&i) => serde_json::to_value(&self.records[i]),
            None => serde_json::to_value(T::default()),
        };
        let Ok(mut base) = base else { return };
        base["id"] = id.into();
        let Ok(base) = serde_json::from_value::<T>(base) else {
            return;
        };
        let Some(new) = overlay(&base, c, id, client, memory) else {
            return;
        };
        if let Some(&i) = self.at.get(&id) {
            self.records[i] = new;
        } else {
            self.at.insert(id, self.records.len());
            self.records.push(new);
        }
    }
}

/// Halo (and csp-sync's memory of list-less fields) after a plan's changes landed.
fn applied(halo: &HaloSnapshot, memory: &HaloMemory, plan: &Planned) -> (HaloSnapshot, HaloMemory) {
    let mut out = halo.clone();
    let mut memory = memory.clone();
    let mut next = 1_000_000 + (out.users.len() + out.licences.len() + out.assets.len()) as i64;
    let mut users = Table::new(&mut out.users, |r: &HaloUser| r.id);
    let mut licences = Table::new(&mut out.licences, |r: &HaloLicence| r.id);
    let mut assets = Table::new(&mut out.assets, |r: &HaloAsset| r.id);
    for t in plan.users.iter().chain(&plan.licences).chain(&plan.assets) {
        let client = t.halo_client_id.unwrap_or(0);
        for c in &t.changes {
            match c.entity {
                HaloEntity::Users => users.put(c, &mut next, client, &mut memory),
                HaloEntity::SoftwareLicence => licences.put(c, &mut next, client, &mut memory),
                HaloEntity::Asset => assets.put(c, &mut next, client, &mut memory),
                _ => {}
            }
        }
    }
    (out, memory)
}

/// Writes `plan` as JSON through csp-sync's masking writer into a sink; returns (bytes, time).
fn write_json(plan: &Plan, pretty: bool) -> (u64, Duration) {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let start = Instant::now();
    let mut count = Count(0);
    {
        let mut w = csp_sync::redact::Writer::new(std::io::BufWriter::new(&mut count));
        let r = if pretty {
            serde_json::to_writer_pretty(&mut w, plan)
        } else {
            serde_json::to_writer(&mut w, plan)
        };
        r.expect("a plan serialises");
        w.flush().expect("a sink takes everything");
    }
    (count.0, start.elapsed())
}

/// Runs the planner measurement and prints it; returns the lines for the summary.
pub fn run(users: usize) -> Vec<String> {
    let now: jiff::Timestamp = "2026-11-27T09:00:00Z".parse().expect("a time");
    let e = estate(users);
    let devices: usize = e
        .devices
        .iter()
        .map(|d| match d {
            DeviceRead::Devices(v) => v.len(),
            _ => 0,
        })
        .sum();
    println!(
        "\nplanners: {users} users, {devices} devices, {} subscriptions in {} tenants (in this process, no I/O)",
        e.licences.len() * 2,
        e.ids.len()
    );
    let mut lines = Vec::new();
    let mut halo = e.halo.clone();
    let mut memory = HaloMemory::default();
    let mut first = None;
    for (n, label) in [
        "into an empty Halo",
        "again, contacts now there (assets link to them)",
        "in the steady state",
    ]
    .into_iter()
    .enumerate()
    {
        let c0 = cpu();
        let w0 = Instant::now();
        let p = plan_all(&e, &halo, &memory, now, n > 0);
        let (c, w) = (cpu().saturating_sub(c0), w0.elapsed());
        let line = format!(
            "users + licences + assets planners {label}: {:.3} s CPU ({:.3} s wall); {}",
            c.as_secs_f64(),
            w.as_secs_f64(),
            p.changes()
        );
        println!("  {line}");
        lines.push(line);
        (halo, memory) = applied(&halo, &memory, &p);
        first.get_or_insert(p);
    }
    let first = first.expect("planned");
    let mut tenants = first.users;
    tenants.extend(first.licences);
    tenants.extend(first.assets);
    let plan = Plan::new(
        now.to_string(),
        vec![Module::Users, Module::Licences, Module::Assets],
        tenants,
    );
    for pretty in [false, true] {
        let (bytes, t) = write_json(&plan, pretty);
        let line = format!(
            "first plan as {} JSON through the masking writer: {:.1} MB in {:.3} s ({:.0} MB/s)",
            if pretty { "pretty" } else { "compact" },
            bytes as f64 / 1e6,
            t.as_secs_f64(),
            bytes as f64 / 1e6 / t.as_secs_f64().max(1e-9)
        );
        println!("  {line}");
        lines.push(line);
    }
    lines
}
