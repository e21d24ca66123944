//! The statistical judge: the canary against the primary over the same window, from the
//! router's per-backend samples (requests, failures and a latency histogram in
//! [`siskin_route::latency`]'s buckets). Pure: the tests and `siskin render` call it as the
//! operator does.
//!
//! - Latency (`judge-latency`): a Mann-Whitney rank test of the canary's latencies against the
//!   primary's, with the Hodges-Lehmann estimate of the shift (on a log scale, so the shift is a
//!   ratio: "the canary is 12 % slower") and its distribution-free confidence interval. Within a
//!   bucket, latencies are taken as spread evenly on the log scale, so pairwise differences are
//!   continuous and ties do not distort the test; the no-ties variance is used, which is
//!   conservative when the data are tied.
//! - Errors (`judge-errors`): the difference of the two failure proportions, with the interval
//!   that combines each side's exact (Clopper-Pearson) interval by Newcombe's square-and-add.
//!   It keeps its level with a handful of canary requests against many primary ones and with
//!   zero failures, where the normal test and Newcombe's Wilson-based interval fail a clean
//!   canary several times more often than they should (the tests enumerate every outcome).
//!
//! A check fails when the lower confidence bound of the effect exceeds the metric's tolerance
//! (`thresholdRange.max`): the canary is worse than tolerated, with confidence. The confidence
//! is spent over the checks a clean run makes (a group-sequential design with a uniform,
//! Bonferroni spending): each check is run at `alpha = (1 - confidence) / checks`, so a clean
//! canary fails any judge check of its run with probability at most `1 - confidence`, while a
//! clear regression fails on its first interval.

use siskin_api::status::Judgement;
use siskin_route::{BackendReport, Role, latency};

use crate::ProviderError;

/// The confidence of a run when a judge metric does not set `confidence`.
pub const DEFAULT_CONFIDENCE: f64 = siskin_api::analysis::DEFAULT_JUDGE_CONFIDENCE;

/// The longest window the router keeps samples of.
pub const MAX_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// What a judge metric compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JudgeKind {
    /// Latency: the canary's shift against the primary, in percent.
    Latency,
    /// Errors: the canary's failure rate minus the primary's, in percentage points.
    Errors,
}

/// One side's samples, pooled over every rule and router where it serves the route.
#[derive(Clone, Debug, PartialEq)]
pub struct Pooled {
    /// Seconds covered (the longest of the entries').
    pub seconds: u64,
    /// Requests.
    pub requests: u64,
    /// Failed requests.
    pub failures: u64,
    /// Requests per latency bucket.
    pub latency: [u64; latency::BUCKETS],
}

impl Default for Pooled {
    fn default() -> Self {
        Pooled {
            seconds: 0,
            requests: 0,
            failures: 0,
            latency: [0; latency::BUCKETS],
        }
    }
}

/// Adds up the samples of `role` on `route` (entries without samples add nothing).
pub fn pool<'a>(
    backends: impl IntoIterator<Item = &'a BackendReport>,
    route: &str,
    role: Role,
) -> Pooled {
    let mut out = Pooled::default();
    for b in backends
        .into_iter()
        .filter(|b| b.route == route && b.role == role)
    {
        let Some(s) = &b.samples else { continue };
        out.seconds = out.seconds.max(s.seconds);
        out.requests += s.requests;
        out.failures += s.failures.min(s.requests);
        for (i, n) in &s.latency {
            if let Some(slot) = out.latency.get_mut(usize::from(*i)) {
                *slot += n;
            }
        }
    }
    out
}

/// The alpha of one check: the run's error budget spent evenly over its checks.
pub fn alpha(confidence: f64, checks: u32) -> f64 {
    (1.0 - confidence.clamp(0.5, 0.999_999)) / f64::from(checks.max(1))
}

/// Judges `canary` against `primary`. `tolerance` is the metric's `thresholdRange.max`
/// (percent slower for latency, percentage points more failures for errors); the returned
/// judgement's `bound` is what is compared with it.
pub fn judge(
    kind: JudgeKind,
    canary: &Pooled,
    primary: &Pooled,
    tolerance: f64,
    alpha: f64,
    min_samples: u64,
) -> Result<Judgement, ProviderError> {
    for side in [canary, primary] {
        if side.requests == 0 {
            return Err(ProviderError::NoValues);
        }
        if side.requests < min_samples {
            return Err(ProviderError::TooFewSamples {
                got: side.requests,
                need: min_samples,
            });
        }
    }
    let mut j = match kind {
        JudgeKind::Latency => latency_shift(&canary.latency, &primary.latency, tolerance, alpha),
        JudgeKind::Errors => error_excess(
            (canary.failures, canary.requests),
            (primary.failures, primary.requests),
            tolerance,
            alpha,
        ),
    };
    j.alpha = round(alpha, 9);
    j.seconds = canary.seconds.max(primary.seconds);
    j.canary_requests = canary.requests;
    j.canary_failures = canary.failures;
    j.primary_requests = primary.requests;
    j.primary_failures = primary.failures;
    Ok(j)
}

// --- latency ---

/// Bucket width on the log2 scale.
const W: f64 = 1.0 / latency::PER_DOUBLING as f64;

/// The distribution of the pairwise differences (canary minus primary, in octaves) of two
/// histograms: `weights[k]` pairs whose buckets are `k - (BUCKETS - 1)` apart.
struct Differences {
    weights: Vec<f64>,
    pairs: f64,
}

impl Differences {
    fn new(canary: &[u64], primary: &[u64]) -> Self {
        let b = latency::BUCKETS;
        let mut weights = vec![0.0; 2 * b - 1];
        for (i, a) in canary.iter().enumerate().filter(|(_, a)| **a > 0) {
            for (j, p) in primary.iter().enumerate().filter(|(_, p)| **p > 0) {
                weights[i + (b - 1) - j] += *a as f64 * *p as f64;
            }
        }
        let pairs = weights.iter().sum();
        Differences { weights, pairs }
    }

    /// The share of pairs whose difference is at most `d` octaves: each pair's difference is
    /// triangular over two bucket widths around the buckets' distance.
    fn cdf(&self, d: f64) -> f64 {
        let b = latency::BUCKETS as f64;
        let mut below = 0.0;
        for (k, w) in self.weights.iter().enumerate().filter(|(_, w)| **w > 0.0) {
            let centre = (k as f64 - (b - 1.0)) * W;
            below += w * triangular((d - centre) / W);
        }
        below / self.pairs
    }

    /// The difference below which a share `q` of the pairs lie.
    fn quantile(&self, q: f64) -> f64 {
        let span = latency::BUCKETS as f64 * W + 1.0;
        let (mut lo, mut hi) = (-span, span);
        if q <= 0.0 {
            return lo;
        }
        if q >= 1.0 {
            return hi;
        }
        for _ in 0..80 {
            let mid = 0.5 * (lo + hi);
            if self.cdf(mid) < q {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        0.5 * (lo + hi)
    }
}

/// CDF of the triangular distribution on [-1, 1].
fn triangular(u: f64) -> f64 {
    if u <= -1.0 {
        0.0
    } else if u <= 0.0 {
        0.5 * (1.0 + u) * (1.0 + u)
    } else if u < 1.0 {
        1.0 - 0.5 * (1.0 - u) * (1.0 - u)
    } else {
        1.0
    }
}

fn percent(octaves: f64) -> f64 {
    (octaves.exp2() - 1.0) * 100.0
}

fn latency_shift(canary: &[u64], primary: &[u64], tolerance: f64, alpha: f64) -> Judgement {
    let n: f64 = canary.iter().sum::<u64>() as f64;
    let m: f64 = primary.iter().sum::<u64>() as f64;
    let diffs = Differences::new(canary, primary);
    let nm = diffs.pairs;
    let sigma = (nm * (n + m + 1.0) / 12.0).sqrt();
    let z = normal_quantile(1.0 - alpha);
    // The distribution-free interval of the shift: the pairwise differences ranked
    // nm/2 -+ z sigma.
    let tail = (0.5 - z * sigma / nm).max(0.0);
    let (lower, upper) = (diffs.quantile(tail), diffs.quantile(1.0 - tail));
    let estimate = diffs.quantile(0.5);
    // U: pairs where the canary is slower than the primary by more than the tolerance.
    let delta = (1.0 + tolerance.max(-99.0) / 100.0).log2();
    let u = nm * (1.0 - diffs.cdf(delta));
    let z_stat = (u - nm / 2.0) / sigma;
    Judgement {
        test: "mann-whitney".into(),
        statistic: round(u, 1),
        p_value: normal_sf(z_stat),
        effect: round(percent(estimate), 2),
        lower: round(percent(lower), 2),
        upper: round(percent(upper), 2),
        bound: round(percent(lower), 2),
        ..Default::default()
    }
}

// --- errors ---

/// The exact (Clopper-Pearson) one-sided limits of a proportion `x` of `n`, each at level
/// `alpha`: the true proportion is below the lower one, or above the upper one, with
/// probability at most `alpha` whatever it is.
pub fn exact_limits(x: u64, n: u64, alpha: f64) -> (f64, f64) {
    let (xf, nf) = (x as f64, n as f64);
    let lower = if x == 0 {
        0.0
    } else {
        // P(X >= x | l) = alpha, i.e. I_l(x, n - x + 1) = alpha.
        solve_increasing(|l| inc_beta(xf, nf - xf + 1.0, l), alpha)
    };
    let upper = if x >= n {
        1.0
    } else {
        // P(X <= x | u) = alpha, i.e. I_u(x + 1, n - x) = 1 - alpha.
        solve_increasing(|u| inc_beta(xf + 1.0, nf - xf, u), 1.0 - alpha)
    };
    (lower, upper)
}

/// The interval of `p1 - p0` that combines the two exact intervals by Newcombe's method of
/// variance estimates recovery (the square-and-add of his hybrid score interval, with exact
/// limits in place of Wilson's, which are not conservative with a few requests against many).
pub fn difference(canary: (u64, u64), primary: (u64, u64), alpha: f64) -> (f64, f64) {
    (
        edge(canary, primary, alpha, Edge::Lower),
        edge(canary, primary, alpha, Edge::Upper),
    )
}

#[derive(Clone, Copy)]
enum Edge {
    Lower,
    Upper,
}

/// One end of [`difference`] (each needs only two of the four exact limits).
fn edge(canary: (u64, u64), primary: (u64, u64), alpha: f64, which: Edge) -> f64 {
    let p1 = canary.0 as f64 / canary.1 as f64;
    let p0 = primary.0 as f64 / primary.1 as f64;
    let d = p1 - p0;
    match which {
        Edge::Lower => {
            let l1 = exact_limits(canary.0, canary.1, alpha).0;
            let u0 = exact_limits(primary.0, primary.1, alpha).1;
            d - ((p1 - l1).powi(2) + (u0 - p0).powi(2)).sqrt()
        }
        Edge::Upper => {
            let u1 = exact_limits(canary.0, canary.1, alpha).1;
            let l0 = exact_limits(primary.0, primary.1, alpha).0;
            d + ((u1 - p1).powi(2) + (p0 - l0).powi(2)).sqrt()
        }
    }
}

fn error_excess(canary: (u64, u64), primary: (u64, u64), tolerance: f64, alpha: f64) -> Judgement {
    let (lower, upper) = difference(canary, primary, alpha);
    let d = canary.0 as f64 / canary.1 as f64 - primary.0 as f64 / primary.1 as f64;
    let tol = tolerance / 100.0;
    // The score z at which the interval's edge meets the tolerance: the one-sided p-value of
    // "the canary fails no more than tolerated" is the alpha at which the check would fail.
    let z_star = if d > tol {
        root(|z| edge(canary, primary, normal_sf(z), Edge::Lower) - tol)
    } else {
        -root(|z| tol - edge(canary, primary, normal_sf(z), Edge::Upper))
    };
    Judgement {
        test: "two-proportion".into(),
        statistic: round(z_star, 3),
        p_value: normal_sf(z_star),
        effect: round(d * 100.0, 4),
        lower: round(lower * 100.0, 4),
        upper: round(upper * 100.0, 4),
        bound: round(lower * 100.0, 4),
        ..Default::default()
    }
}

/// The `x` in [0, 1] where the increasing `f` reaches `target`.
fn solve_increasing(f: impl Fn(f64) -> f64, target: f64) -> f64 {
    let (mut lo, mut hi) = (0.0, 1.0);
    for _ in 0..48 {
        let mid = 0.5 * (lo + hi);
        if f(mid) < target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// `ln Γ(x)` for x > 0 (Lanczos, g = 7).
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    let t = x + 7.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The regularized incomplete beta function `I_x(a, b)`.
fn inc_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_fraction(a, b, x) / a
    } else {
        1.0 - front * beta_fraction(b, a, 1.0 - x) / b
    }
}

/// The continued fraction of the incomplete beta function (modified Lentz).
fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let clamp = |v: f64| if v.abs() < TINY { TINY } else { v };
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 / clamp(1.0 - qab * x / qap);
    let mut h = d;
    for m in 1..20_000 {
        let m = f64::from(m);
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 / clamp(1.0 + aa * d);
        c = clamp(1.0 + aa / c);
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 / clamp(1.0 + aa * d);
        c = clamp(1.0 + aa / c);
        let step = d * c;
        h *= step;
        if (step - 1.0).abs() < 1e-13 {
            break;
        }
    }
    h
}

/// Where `f`, positive at 0 and decreasing, crosses zero on [0, 40] (to 1e-10).
fn root(f: impl Fn(f64) -> f64) -> f64 {
    let (mut lo, mut hi) = (0.0, 40.0);
    for _ in 0..40 {
        let mid = 0.5 * (lo + hi);
        if f(mid) > 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

// --- the normal distribution ---

/// `erfc`, with a fractional error below 1.2e-7 everywhere (a Chebyshev fit).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// P(Z > z) for a standard normal Z.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// The `p` quantile of the standard normal.
pub fn normal_quantile(p: f64) -> f64 {
    let (mut lo, mut hi) = (-38.0, 38.0);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if 1.0 - normal_sf(mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_normal_distribution() {
        assert!((normal_quantile(0.975) - 1.959_964).abs() < 1e-5);
        assert!((normal_quantile(0.95) - 1.644_854).abs() < 1e-5);
        assert!((normal_sf(3.0) - 0.001_349_898).abs() < 1e-8);
        assert!((normal_sf(-1.0) - 0.841_344_746).abs() < 1e-7);
    }

    /// Clopper-Pearson intervals as published (95 %, two-sided: 2.5 % on each side).
    #[test]
    fn exact_limits_match_the_published_intervals() {
        for (x, n, lo, hi) in [
            (0, 10, 0.0, 0.3085),
            (1, 10, 0.0025, 0.4450),
            (5, 10, 0.1871, 0.8129),
            (10, 10, 0.6915, 1.0),
            (3, 1000, 0.000619, 0.008742),
        ] {
            let (l, h) = exact_limits(x, n, 0.025);
            assert!(
                (l - lo).abs() < 6e-5 && (h - hi).abs() < 6e-5,
                "{x}/{n}: {l} {h}"
            );
        }
        assert!((ln_gamma(10.0) - 362_880f64.ln()).abs() < 1e-10);
    }

    fn binomial_pmf(n: u64, p: f64) -> Vec<f64> {
        let nf = n as f64;
        (0..=n)
            .map(|x| {
                let x = x as f64;
                (ln_gamma(nf + 1.0) - ln_gamma(x + 1.0) - ln_gamma(nf - x + 1.0)
                    + x * p.ln()
                    + (nf - x) * (1.0 - p).ln())
                .exp()
            })
            .collect()
    }

    /// The probability that a canary exactly as good as the primary fails the check, summed
    /// over every outcome: at most alpha, including a few requests against many with rare
    /// errors, where the usual tests are far above it.
    #[test]
    fn the_error_test_keeps_its_level_with_few_requests() {
        for (n1, n0) in [(30, 1000), (100, 300), (250, 750)] {
            for alpha in [0.01, 0.05] {
                let l1: Vec<f64> = (0..=n1).map(|x| exact_limits(x, n1, alpha).0).collect();
                let u0: Vec<f64> = (0..=n0).map(|x| exact_limits(x, n0, alpha).1).collect();
                for p in [0.0005, 0.003, 0.01, 0.05, 0.2] {
                    let (f1, f0) = (binomial_pmf(n1, p), binomial_pmf(n0, p));
                    let mut size = 0.0;
                    for (x1, w1) in f1.iter().enumerate().filter(|(_, w)| **w > 1e-12) {
                        let p1 = x1 as f64 / n1 as f64;
                        for (x0, w0) in f0.iter().enumerate().filter(|(_, w)| **w > 1e-12) {
                            let p0 = x0 as f64 / n0 as f64;
                            let lower =
                                p1 - p0 - ((p1 - l1[x1]).powi(2) + (u0[x0] - p0).powi(2)).sqrt();
                            if lower > 0.0 {
                                size += w1 * w0;
                            }
                        }
                    }
                    assert!(
                        size <= alpha,
                        "n {n1}/{n0} p {p} alpha {alpha}: size {size}"
                    );
                }
            }
        }
    }

    fn hist(points: &[(f64, u64)]) -> [u64; latency::BUCKETS] {
        let mut h = [0; latency::BUCKETS];
        for (ms, n) in points {
            h[latency::bucket(*ms)] += n;
        }
        h
    }

    fn pooled(points: &[(f64, u64)], failures: u64) -> Pooled {
        let latency = hist(points);
        Pooled {
            seconds: 60,
            requests: latency.iter().sum(),
            failures,
            latency,
        }
    }

    #[test]
    fn identical_histograms_have_no_shift() {
        let h = pooled(&[(10.0, 300), (20.0, 200), (40.0, 50)], 0);
        let j = judge(JudgeKind::Latency, &h, &h, 0.0, 0.01, 10).unwrap();
        assert!(j.effect.abs() < 0.01, "{j:?}");
        assert!(j.lower < 0.0 && j.upper > 0.0, "{j:?}");
        assert!((j.lower + j.upper).abs() < 0.05, "symmetric: {j:?}");
        assert!((j.p_value - 0.5).abs() < 1e-6, "{j:?}");
    }

    #[test]
    fn a_shift_of_one_bucket_is_found_and_measured() {
        let primary = pooled(&[(10.0, 1000)], 0);
        let slower = pooled(&[(10.0 * 2f64.powf(0.25), 100)], 0);
        let j = judge(JudgeKind::Latency, &slower, &primary, 0.0, 0.01, 10).unwrap();
        assert!((j.effect - 18.92).abs() < 0.1, "{j:?}");
        assert!(j.bound > 5.0, "{j:?}");
        assert!(j.p_value < 1e-6);
        // Tolerating 30 % it passes: the bound stays under the tolerance.
        let lenient = judge(JudgeKind::Latency, &slower, &primary, 30.0, 0.01, 10).unwrap();
        assert!(lenient.bound < 30.0 && lenient.p_value > 0.5, "{lenient:?}");
        // Faster is never a failure.
        let j = judge(JudgeKind::Latency, &primary, &slower, 0.0, 0.01, 10).unwrap();
        assert!(j.effect < -15.0 && j.bound < 0.0, "{j:?}");
    }

    #[test]
    fn the_bound_and_the_p_value_agree() {
        // Failing (bound above the tolerance) exactly when p < alpha.
        let primary = pooled(&[(10.0, 500), (12.0, 300), (20.0, 100)], 0);
        for (canary, tol) in [
            (pooled(&[(10.0, 40), (12.0, 40), (20.0, 20)], 0), 0.0),
            (pooled(&[(12.0, 40), (14.0, 40), (25.0, 20)], 0), 0.0),
            (pooled(&[(12.0, 40), (14.0, 40), (25.0, 20)], 0), 10.0),
            (pooled(&[(12.0, 40), (14.0, 40), (25.0, 20)], 0), 40.0),
        ] {
            for alpha in [0.05, 0.01, 0.001] {
                let j = judge(JudgeKind::Latency, &canary, &primary, tol, alpha, 10).unwrap();
                assert_eq!(
                    j.bound > tol,
                    j.p_value < alpha,
                    "{j:?} tol {tol} alpha {alpha}"
                );
            }
        }
        for (c, p, tol) in [
            ((3, 100), (1, 1000), 0.0),
            ((3, 100), (1, 1000), 1.0),
            ((10, 200), (0, 800), 2.0),
        ] {
            for alpha in [0.05, 0.01, 0.001] {
                let canary = Pooled {
                    requests: c.1,
                    failures: c.0,
                    ..pooled(&[(1.0, c.1)], c.0)
                };
                let primary = Pooled {
                    requests: p.1,
                    failures: p.0,
                    ..pooled(&[(1.0, p.1)], p.0)
                };
                let j = judge(JudgeKind::Errors, &canary, &primary, tol, alpha, 10).unwrap();
                assert_eq!(
                    j.bound > tol,
                    j.p_value < alpha + 1e-9,
                    "{j:?} tol {tol} alpha {alpha}"
                );
            }
        }
    }

    #[test]
    fn few_failures_are_not_a_regression_but_many_are() {
        let primary = pooled(&[(1.0, 1000)], 0);
        // One failure in 30 against three in 1000 is noise.
        let one = pooled(&[(1.0, 30)], 1);
        let some = pooled(&[(1.0, 1000)], 3);
        let j = judge(JudgeKind::Errors, &one, &some, 0.0, 0.01, 10).unwrap();
        assert!(j.bound < 0.0 && j.p_value > 0.01, "{j:?}");
        let all = pooled(&[(1.0, 10)], 10);
        let j = judge(JudgeKind::Errors, &all, &primary, 0.0, 0.01, 10).unwrap();
        assert!(j.bound > 50.0 && j.effect == 100.0, "{j:?}");
        assert_eq!(
            judge(
                JudgeKind::Errors,
                &pooled(&[(1.0, 5)], 0),
                &primary,
                0.0,
                0.01,
                10
            ),
            Err(ProviderError::TooFewSamples { got: 5, need: 10 })
        );
        assert_eq!(
            judge(
                JudgeKind::Errors,
                &Pooled::default(),
                &primary,
                0.0,
                0.01,
                10
            ),
            Err(ProviderError::NoValues)
        );
    }

    /// A small deterministic generator (xorshift64*), so the simulation is repeatable.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
        }

        fn normal(&mut self) -> f64 {
            let (u, v) = (self.next().max(1e-300), self.next());
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        }
    }

    fn lognormal(rng: &mut Rng, n: u64, median_ms: f64, sigma: f64) -> Pooled {
        let mut p = Pooled::default();
        for _ in 0..n {
            p.latency[latency::bucket(median_ms * (sigma * rng.normal()).exp())] += 1;
        }
        p.requests = n;
        p
    }

    #[test]
    fn the_false_failure_rate_is_at_most_alpha() {
        let mut rng = Rng(0x5EED);
        let (trials, alpha) = (2000, 0.05);
        let mut failed = 0;
        for _ in 0..trials {
            let primary = lognormal(&mut rng, 300, 20.0, 0.5);
            let canary = lognormal(&mut rng, 40, 20.0, 0.5);
            let j = judge(JudgeKind::Latency, &canary, &primary, 0.0, alpha, 10).unwrap();
            failed += u32::from(j.bound > 0.0);
        }
        let rate = f64::from(failed) / f64::from(trials);
        assert!(rate <= alpha + 0.015, "false failures {rate}");
    }
}
