//! The benchmark's command line (no clap: the example keeps to std).

use std::time::Duration;

pub const USAGE: &str = "\
usage: cargo run --release --example bench -- [TENANTS [USERS [DEVICES]]] [options]

  --tenants N      customers in the estate, each mapped to its own Halo client (default 200)
  --users N        Entra users per tenant (default 100)
  --devices N      Intune devices per tenant; 0 leaves the assets module out (default 50)
  --latency-ms N   round-trip latency the emulator adds to every request of every API (default 20)
  --halo-rate R/S  Halo's rolling window, R requests per S seconds, for the emulator and csp-sync's
                   [halo] rate_limit alike (default 300/30: Halo cloud's 300 requests in a window 10x
                   shorter than its 5 minutes, so a full run takes minutes; 300/300 is the real one)
  --churn P        percent of users, devices and seat-based subscriptions changed before the last
                   sync (default 2)
  --reads MODES    list, report or both (default both): [halo] bulk_read = \"api\" / \"report\"
  --quick          20 tenants x 50 users x 20 devices, for trying the benchmark out
  --planner-users N  also time the pure planners in this process for N users (default 100000; 0 skips)";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    List,
    Report,
}

impl Reads {
    pub fn label(self) -> &'static str {
        match self {
            Reads::List => "list reads",
            Reads::Report => "report reads",
        }
    }

    /// The `[halo] bulk_read` value.
    pub fn config(self) -> &'static str {
        match self {
            Reads::List => "api",
            Reads::Report => "report",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Args {
    pub tenants: usize,
    pub users: usize,
    pub devices: usize,
    pub latency: Duration,
    /// (requests, per seconds).
    pub halo_rate: (u32, u32),
    pub churn_percent: f64,
    pub reads: Vec<Reads>,
    pub planner_users: usize,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            tenants: 200,
            users: 100,
            devices: 50,
            latency: Duration::from_millis(20),
            halo_rate: (300, 30),
            churn_percent: 2.0,
            reads: vec![Reads::List, Reads::Report],
            planner_users: 100_000,
        }
    }
}

fn number<T>(flag: &str, v: Option<String>, max: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
    let n: T = v.parse().map_err(|_| format!("{flag} {v}: not a number"))?;
    if n > max {
        return Err(format!("{flag} {v}: at most {max}"));
    }
    Ok(n)
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Args>, String> {
    let mut out = Args::default();
    let mut positional = 0;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--help" | "-h" => return Ok(None),
            "--tenants" => out.tenants = number(&a, it.next(), 10_000)?,
            "--users" => out.users = number(&a, it.next(), 10_000)?,
            "--devices" => out.devices = number(&a, it.next(), 10_000)?,
            "--latency-ms" => {
                out.latency = Duration::from_millis(number(&a, it.next(), 10_000u64)?);
            }
            "--halo-rate" => {
                let v = it
                    .next()
                    .ok_or("--halo-rate needs a value such as 300/300")?;
                let (r, s) = v.split_once('/').ok_or_else(|| {
                    format!("--halo-rate {v}: give REQUESTS/SECONDS, e.g. 300/300")
                })?;
                let r = number("--halo-rate requests", Some(r.to_string()), 100_000u32)?;
                let s = number("--halo-rate seconds", Some(s.to_string()), 3600u32)?;
                if r == 0 || s == 0 {
                    return Err(format!("--halo-rate {v}: both numbers must be at least 1"));
                }
                out.halo_rate = (r, s);
            }
            "--churn" => {
                out.churn_percent = number(&a, it.next(), 100.0f64)?;
                if out.churn_percent < 0.0 {
                    return Err("--churn: a percentage from 0 to 100".into());
                }
            }
            "--reads" => {
                let v = it.next().ok_or("--reads needs list, report or both")?;
                out.reads = match v.as_str() {
                    "list" => vec![Reads::List],
                    "report" => vec![Reads::Report],
                    "both" => vec![Reads::List, Reads::Report],
                    _ => return Err(format!("--reads {v}: use list, report or both")),
                };
            }
            "--quick" => {
                out.tenants = 20;
                out.users = 50;
                out.devices = 20;
            }
            "--planner-users" => out.planner_users = number(&a, it.next(), 1_000_000)?,
            n if !n.starts_with('-') && positional < 3 => {
                let v = number("TENANTS/USERS/DEVICES", Some(n.to_string()), 10_000)?;
                match positional {
                    0 => out.tenants = v,
                    1 => out.users = v,
                    _ => out.devices = v,
                }
                positional += 1;
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if out.tenants == 0 {
        return Err("--tenants: at least 1".into());
    }
    Ok(Some(out))
}
