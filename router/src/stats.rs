//! Per rule × backend statistics, recorded with atomics on the request path.
//!
//! Three views of the same events: cumulative counters and a latency histogram for Prometheus;
//! a sliding window of 60 one-second slots of requests and failures for live rates and success
//! rates; and 12 five-second slots of the fine latency histogram ([`siskin_route::latency`]:
//! 74 buckets, 19 % apart) for quantiles and for the statistical judge's samples.
//!
//! Memory follows traffic. A series that never served a request holds only its names (shared
//! with the routing table) and one empty pointer, so a table of a thousand routes costs little
//! until they are used. The counters arrive with the first request (about 0.3 KB), the error
//! counters with the first failure; the one-second slots come ten at a time, each five-second
//! slot when its period first sees a request, and its fine histogram sixteen buckets at a time
//! as latencies land in them. A series that served a single request holds about 0.6 KB; one
//! with steady traffic a few KB. The lazily made parts sit behind [`OnceBox`]es, one word each.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use once_cell::race::OnceBox;

use siskin_route::{BackendReport, Role, Samples, WindowStats, latency};

use crate::ErrorKind;

/// Upper bounds of the latency buckets, in milliseconds (the last bucket is +Inf).
pub const BUCKETS_MS: [f64; 13] = [
    1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];
const NB: usize = BUCKETS_MS.len() + 1;
const SLOTS: usize = 60;
/// One-second slots are allocated in groups of this many.
const CHUNK: usize = 10;
const FINE: usize = latency::BUCKETS;
const FINE_SLOTS: usize = (SLOTS as u64 / latency::SLOT_SECONDS) as usize;
/// Fine latency buckets are allocated in groups of this many.
const GROUP: usize = 16;
const GROUPS: usize = FINE.div_ceil(GROUP);
const KINDS: usize = ErrorKind::ALL.len();

/// Statistics of one backend of one rule.
#[derive(Debug)]
pub struct BackendStats {
    /// Rule label (`route/rule`); the route's name is its start ([`BackendStats::route`]).
    pub rule: Arc<str>,
    /// Length of the route's name at the start of `rule`.
    route_len: u32,
    /// Backend name.
    pub backend: Arc<str>,
    /// Role of the backend (`primary`, `canary`).
    pub role: Role,
    /// Everything counted, from the first request on.
    live: OnceBox<Live>,
}

/// Counters and windows of a series that has served requests.
#[derive(Debug)]
struct Live {
    classes: [AtomicU64; 5],
    hist: [AtomicU64; NB],
    sum_us: AtomicU64,
    /// Failures by [`ErrorKind`], made at the first failure.
    errors: OnceBox<[AtomicU64; KINDS]>,
    /// One-second slots, [`CHUNK`] to an allocation, made when first written.
    seconds: [OnceBox<[Slot; CHUNK]>; SLOTS / CHUNK],
    /// Five-second slots, each made when first written.
    fine: [OnceBox<FineSlot>; FINE_SLOTS],
}

/// One second of requests and failures.
#[derive(Debug, Default)]
struct Slot {
    /// The second (since the epoch) this slot holds.
    sec: AtomicU32,
    requests: AtomicU32,
    failures: AtomicU32,
}

/// Five seconds of requests, failures and fine latency buckets.
#[derive(Debug, Default)]
struct FineSlot {
    /// First second of the slot (a multiple of [`latency::SLOT_SECONDS`]).
    start: AtomicU32,
    requests: AtomicU32,
    failures: AtomicU32,
    /// Fine latency buckets, [`GROUP`] to an allocation, made when first written.
    hist: [OnceBox<[AtomicU32; GROUP]>; GROUPS],
}

/// Seconds since the epoch as stored in the slots (which hold them until 2106).
fn sec32(sec: u64) -> u32 {
    u32::try_from(sec).unwrap_or(u32::MAX)
}

/// Claims `slot` for the period starting at `start`: the first event of a new period resets
/// what the slot held a window ago.
fn claim(mark: &AtomicU32, start: u32, reset: impl FnOnce()) {
    let seen = mark.load(Relaxed);
    if seen != start && mark.compare_exchange(seen, start, Relaxed, Relaxed).is_ok() {
        reset();
    }
}

fn zeroed<const N: usize>() -> Box<[AtomicU32; N]> {
    Box::new(std::array::from_fn(|_| AtomicU32::new(0)))
}

// === impl FineSlot ===

impl FineSlot {
    fn add(&self, bucket: usize) {
        let group = self.hist[bucket / GROUP].get_or_init(zeroed);
        group[bucket % GROUP].fetch_add(1, Relaxed);
    }

    fn clear(&self) {
        self.requests.store(0, Relaxed);
        self.failures.store(0, Relaxed);
        for group in self.hist.iter().filter_map(OnceBox::get) {
            group.iter().for_each(|h| h.store(0, Relaxed));
        }
    }

    /// Adds this slot's buckets to `hist`.
    fn sum_into(&self, hist: &mut [u64; FINE]) {
        for (g, group) in self.hist.iter().enumerate() {
            let Some(group) = group.get() else { continue };
            for (h, n) in hist.iter_mut().skip(g * GROUP).zip(group.iter()) {
                *h += u64::from(n.load(Relaxed));
            }
        }
    }
}

// === impl Live ===

impl Live {
    fn new() -> Live {
        Live {
            classes: Default::default(),
            hist: Default::default(),
            sum_us: AtomicU64::new(0),
            errors: OnceBox::new(),
            seconds: Default::default(),
            fine: Default::default(),
        }
    }

    /// The one-second slot for `sec`, allocating its group on first use.
    fn second(&self, sec: u64) -> &Slot {
        let i = (sec % SLOTS as u64) as usize;
        let chunk = self.seconds[i / CHUNK]
            .get_or_init(|| Box::new(std::array::from_fn(|_| Slot::default())));
        &chunk[i % CHUNK]
    }

    /// Every one-second slot written so far.
    fn written_seconds(&self) -> impl Iterator<Item = &Slot> {
        self.seconds
            .iter()
            .filter_map(OnceBox::get)
            .flat_map(|c| c.iter())
    }

    /// Failures of `kind` so far.
    fn errors_of(&self, kind: ErrorKind) -> u64 {
        self.errors
            .get()
            .map_or(0, |e| e[kind.index()].load(Relaxed))
    }
}

// === impl BackendStats ===

impl BackendStats {
    /// Empty statistics.
    pub fn new(route: &str, rule: Arc<str>, backend: Arc<str>, role: Role) -> Self {
        // Rule labels are `route/rule`, so the route's name is not stored twice; a label that
        // does not start with it (none the router makes) reports an empty route.
        let route_len = if rule.starts_with(route) {
            u32::try_from(route.len()).unwrap_or(0)
        } else {
            0
        };
        BackendStats {
            rule,
            route_len,
            backend,
            role,
            live: OnceBox::new(),
        }
    }

    /// Route name.
    pub fn route(&self) -> &str {
        self.rule.get(..self.route_len as usize).unwrap_or_default()
    }

    /// Records one response (or failure) at `now_sec` (seconds since the epoch).
    pub fn record(&self, now_sec: u64, status: u16, error: Option<ErrorKind>, latency: Duration) {
        let live = self.live.get_or_init(|| Box::new(Live::new()));
        let class = usize::from((status / 100).clamp(1, 5)) - 1;
        live.classes[class].fetch_add(1, Relaxed);
        live.hist[bucket_of(latency)].fetch_add(1, Relaxed);
        live.sum_us.fetch_add(
            u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
            Relaxed,
        );
        if let Some(k) = error {
            live.errors.get_or_init(Box::default)[k.index()].fetch_add(1, Relaxed);
        }
        let failed = status >= 500 || error.is_some();
        let slot = live.second(now_sec);
        claim(&slot.sec, sec32(now_sec), || {
            slot.requests.store(0, Relaxed);
            slot.failures.store(0, Relaxed);
        });
        slot.requests.fetch_add(1, Relaxed);
        let start = now_sec - now_sec % latency::SLOT_SECONDS;
        let fine = live.fine[((start / latency::SLOT_SECONDS) % FINE_SLOTS as u64) as usize]
            .get_or_init(Box::default);
        claim(&fine.start, sec32(start), || fine.clear());
        fine.requests.fetch_add(1, Relaxed);
        fine.add(latency::bucket(latency.as_secs_f64() * 1000.0));
        if failed {
            slot.failures.fetch_add(1, Relaxed);
            fine.failures.fetch_add(1, Relaxed);
        }
    }

    /// Summary of the last `seconds` seconds (at most 60), ending at `now_sec`. Requests,
    /// rates and success rates count exactly those seconds; the quantiles come from the
    /// five-second slots that cover them.
    pub fn window(&self, now_sec: u64, seconds: u64) -> WindowStats {
        let seconds = seconds.clamp(1, SLOTS as u64);
        let mut out = WindowStats {
            seconds,
            ..Default::default()
        };
        let Some(live) = self.live.get() else {
            return out;
        };
        let mut failures = 0u64;
        for slot in live.written_seconds() {
            let sec = u64::from(slot.sec.load(Relaxed));
            if sec + seconds <= now_sec || sec > now_sec {
                continue;
            }
            out.requests += u64::from(slot.requests.load(Relaxed));
            failures += u64::from(slot.failures.load(Relaxed));
        }
        out.rate = out.requests as f64 / seconds as f64;
        if out.requests > 0 {
            out.success_rate = Some(
                100.0 * (out.requests - failures.min(out.requests)) as f64 / out.requests as f64,
            );
            let hist = self.fine_hist(live, now_sec, seconds).2;
            out.p50_ms = quantile(&hist, 0.50);
            out.p90_ms = quantile(&hist, 0.90);
            out.p99_ms = quantile(&hist, 0.99);
        }
        out
    }

    /// Requests, failures and fine histogram of the five-second slots covering the last
    /// `seconds` (the current slot included); with the seconds those slots cover.
    fn fine_hist(&self, live: &Live, now_sec: u64, seconds: u64) -> (u64, u64, [u64; FINE], u64) {
        let slots = seconds
            .div_ceil(latency::SLOT_SECONDS)
            .clamp(1, FINE_SLOTS as u64);
        let current = now_sec - now_sec % latency::SLOT_SECONDS;
        let oldest = current.saturating_sub((slots - 1) * latency::SLOT_SECONDS);
        let mut hist = [0u64; FINE];
        let (mut requests, mut failures) = (0, 0);
        for slot in live.fine.iter().filter_map(OnceBox::get) {
            let start = u64::from(slot.start.load(Relaxed));
            if start < oldest || start > current {
                continue;
            }
            requests += u64::from(slot.requests.load(Relaxed));
            failures += u64::from(slot.failures.load(Relaxed));
            slot.sum_into(&mut hist);
        }
        (requests, failures, hist, now_sec + 1 - oldest)
    }

    /// The judge's samples of the last `seconds` (at most 60) ending at `now_sec`.
    pub fn samples(&self, now_sec: u64, seconds: u64) -> Samples {
        let Some(live) = self.live.get() else {
            return Samples {
                seconds: seconds.clamp(1, SLOTS as u64),
                ..Default::default()
            };
        };
        let (requests, failures, hist, covered) = self.fine_hist(live, now_sec, seconds);
        Samples {
            seconds: covered,
            requests,
            failures,
            latency: hist
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(i, n)| (u16::try_from(i).unwrap_or(u16::MAX), *n))
                .collect(),
        }
    }

    /// The `/stats` entry at `now_sec`: the last 10 seconds and the last minute.
    pub fn report(&self, now_sec: u64) -> BackendReport {
        BackendReport {
            route: self.route().to_string(),
            rule: self.rule.to_string(),
            backend: self.backend.to_string(),
            role: self.role,
            window_10s: self.window(now_sec, 10),
            window_1m: self.window(now_sec, 60),
            samples: None,
        }
    }

    /// Whether anything was ever recorded.
    pub fn has_requests(&self) -> bool {
        self.live
            .get()
            .is_some_and(|l| l.classes.iter().any(|c| c.load(Relaxed) > 0))
    }

    /// Renders this series set in Prometheus text format (without HELP/TYPE headers).
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let labels = format!(
            "route=\"{}\",rule=\"{}\",backend=\"{}\",backend_name=\"{}\"",
            esc(self.route()),
            esc(&self.rule),
            self.role.as_str(),
            esc(&self.backend)
        );
        // A series without traffic yet is rendered as zeros (its histogram and count), so
        // rates start from its first scrape.
        let idle = Live::new();
        let live = self.live.get().unwrap_or(&idle);
        for (i, c) in live.classes.iter().enumerate() {
            let n = c.load(Relaxed);
            if n > 0 {
                let _ = writeln!(
                    out,
                    "siskin_router_requests_total{{{labels},status_class=\"{}xx\"}} {n}",
                    i + 1
                );
            }
        }
        let mut cumulative = 0;
        for (i, b) in live.hist.iter().enumerate() {
            cumulative += b.load(Relaxed);
            let le = BUCKETS_MS
                .get(i)
                .map_or("+Inf".to_string(), |ms| format!("{}", ms / 1000.0));
            let _ = writeln!(
                out,
                "siskin_router_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "siskin_router_request_duration_seconds_sum{{{labels}}} {}",
            live.sum_us.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "siskin_router_request_duration_seconds_count{{{labels}}} {cumulative}"
        );
        for k in ErrorKind::ALL {
            let n = live.errors_of(k);
            if n > 0 {
                let _ = writeln!(
                    out,
                    "siskin_router_errors_total{{{labels},error_kind=\"{}\"}} {n}",
                    k.label()
                );
            }
        }
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn bucket_of(latency: Duration) -> usize {
    let ms = latency.as_secs_f64() * 1000.0;
    BUCKETS_MS.iter().position(|b| ms <= *b).unwrap_or(NB - 1)
}

/// Quantile by interpolation (on a log scale) inside the fine bucket that holds it.
fn quantile(hist: &[u64; FINE], q: f64) -> Option<f64> {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut seen = 0.0;
    for (i, n) in hist.iter().enumerate() {
        let n = *n as f64;
        if n > 0.0 && seen + n >= rank {
            let lo = latency::lower_ms(i);
            let hi = latency::upper_ms(i).unwrap_or(lo * 2.0);
            let f = ((rank - seen) / n).clamp(0.0, 1.0);
            return Some(lo * (hi / lo).powf(f));
        }
        seen += n;
    }
    latency::upper_ms(latency::BOUNDED - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(route: &str, rule: &str, backend: &str, role: Role) -> BackendStats {
        BackendStats::new(route, rule.into(), backend.into(), role)
    }

    #[test]
    fn window_counts_only_recent_seconds() {
        let s = series("r", "r/0", "b", Role::Primary);
        for i in 0..10 {
            s.record(1000 + i, 200, None, Duration::from_millis(3));
        }
        s.record(1009, 503, None, Duration::from_millis(3));
        let w = s.window(1009, 10);
        assert_eq!(w.requests, 11);
        assert!((w.success_rate.unwrap() - 100.0 * 10.0 / 11.0).abs() < 1e-9);
        assert_eq!(s.window(1009, 5).requests, 6);
        assert_eq!(
            s.window(1100, 60).requests,
            0,
            "a minute later the window is empty"
        );
    }

    #[test]
    fn quantiles_land_in_the_right_bucket() {
        let s = series("r", "r/0", "b", Role::Primary);
        for _ in 0..99 {
            s.record(5, 200, None, Duration::from_millis(3));
        }
        s.record(5, 200, None, Duration::from_millis(700));
        let w = s.window(5, 10);
        let p50 = w.p50_ms.unwrap();
        // 3 ms is in the bucket (2.83, 3.36].
        assert!((2.8..=3.4).contains(&p50), "{p50}");
        assert!(w.p99_ms.unwrap() <= 3.4);
    }

    #[test]
    fn samples_cover_whole_five_second_slots() {
        let s = series("r", "r/0", "b", Role::Canary);
        // Seconds 100..=111: slots starting at 100, 105 and 110.
        for sec in 100..=111 {
            s.record(sec, 200, None, Duration::from_millis(10));
        }
        s.record(111, 503, None, Duration::from_millis(40));
        let all = s.samples(111, 12);
        assert_eq!((all.seconds, all.requests, all.failures), (12, 13, 1));
        let b10 = latency::bucket(10.0) as u16;
        let b40 = latency::bucket(40.0) as u16;
        assert_eq!(all.latency, vec![(b10, 12), (b40, 1)]);
        // Ten seconds asked at second 111: the slots of 105 and 110, seven seconds.
        let ten = s.samples(111, 10);
        assert_eq!((ten.seconds, ten.requests), (7, 8));
        // A minute later nothing is left.
        assert_eq!(s.samples(200, 60).requests, 0);
        // Never recorded: empty.
        let idle = series("r", "r/0", "c", Role::Primary);
        assert_eq!(idle.samples(5, 30).requests, 0);
    }

    #[test]
    fn fine_buckets_in_every_group_count_and_a_reused_slot_starts_empty() {
        let s = series("r", "r/0", "b", Role::Primary);
        // The lowest and the overflow bucket lie in the first and last group.
        s.record(100, 200, None, Duration::from_micros(10));
        s.record(100, 200, None, Duration::from_secs(3600));
        let low = latency::bucket(0.01) as u16;
        let high = latency::bucket(3_600_000.0) as u16;
        assert_eq!((low, usize::from(high)), (0, FINE - 1));
        assert_eq!(s.samples(100, 5).latency, vec![(low, 1), (high, 1)]);
        // A minute later the same five-second slot and one-second slot are reused: what they
        // held is gone, the new request alone is counted.
        let b = latency::bucket(3.0) as u16;
        s.record(
            160,
            500,
            Some(ErrorKind::UpstreamFailed),
            Duration::from_millis(3),
        );
        let again = s.samples(160, 5);
        assert_eq!((again.requests, again.failures), (1, 1));
        assert_eq!(again.latency, vec![(b, 1)]);
        assert_eq!(s.window(160, 1).requests, 1);
        let mut out = String::new();
        s.render(&mut out);
        assert!(out.contains("error_kind=\"upstream_failed\"} 1"), "{out}");
        assert!(!out.contains("error_kind=\"backend_timeout\""), "{out}");
    }

    #[test]
    fn renders_prometheus_text() {
        let s = series(
            "shop/checkout",
            "shop/checkout/canary",
            "checkout-canary",
            Role::Canary,
        );
        s.record(1, 200, None, Duration::from_millis(2));
        s.record(
            1,
            504,
            Some(ErrorKind::BackendTimeout),
            Duration::from_secs(2),
        );
        let mut out = String::new();
        s.render(&mut out);
        assert!(out.contains("siskin_router_requests_total{route=\"shop/checkout\",rule=\"shop/checkout/canary\",backend=\"canary\",backend_name=\"checkout-canary\",status_class=\"5xx\"} 1"), "{out}");
        assert!(out.contains("error_kind=\"backend_timeout\"} 1"));
        assert!(out.contains("le=\"+Inf\"} 2"));
    }
}
