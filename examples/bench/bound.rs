//! A run's wall-time lower bound: the larger of what Halo's rolling window allows and the round trips
//! the data's dependencies force, each at the emulator's latency.

use std::time::Duration;

use crate::counts::HaloFigures;

/// When the last of `n` Halo requests can be sent at the earliest, from the run's start, with `prior`
/// requests (their ages at the start) already in a window of `max` requests per `per`: request `i` of
/// all of them can go `per` after request `i - max`.
pub fn halo_window(prior_ages: &[Duration], n: usize, max: usize, per: Duration) -> Duration {
    let per = per.as_secs_f64();
    let mut times: Vec<f64> = prior_ages.iter().map(|a| -a.as_secs_f64()).collect();
    times.sort_by(f64::total_cmp);
    let mut last = 0.0f64;
    for _ in 0..n {
        let i = times.len();
        let at = if i >= max { times[i - max] + per } else { 0.0 };
        last = last.max(at);
        times.push(last);
    }
    Duration::from_secs_f64(last.max(0.0))
}

/// Round trips that must follow each other: the tokens (all at once, the tenants are in the config);
/// then the longest of the read chains (Partner Center's customer pages follow their continuation
/// token; a tenant's Graph `$batch`, then its further pages; Halo's first pages, then the rest at once);
/// then each dependent write round.
pub fn round_trips(h: &HaloFigures) -> usize {
    1 + h.pc_pages.max(1 + h.graph_extra_pages).max(h.read_rounds) + h.write_rounds
}
