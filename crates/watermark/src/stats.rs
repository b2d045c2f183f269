/*!
Exact tail probabilities for watermark tests.

No normal (z-score) approximation is used. At the small p-values evidence
needs (1e-6 and below), a z-score's error is orders of magnitude. These
are the exact distributions under "no watermark":
- [`binomial_upper`]: P(X ≥ k) for X ~ Binomial(n, p). Green-list counts
  follow it, and so do tournament g-value counts.
- [`gamma_upper`]: P(S ≥ s) for S ~ Gamma(n, 1), a sum of n unit
  exponentials. Gumbel-max scores follow it. For integer n it equals a
  Poisson sum.
- [`ks_uniform`]: the Kolmogorov–Smirnov test of p-values against the
  uniform distribution, for the controls of an evidence report.

Both sum their terms exactly in log space; only floating point limits them
(relative error about 1e-13). They are tested against direct sums at small
n and against known values.
*/

/// ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9; relative error ~1e-15).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
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
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

fn ln_choose(n: u64, k: u64) -> f64 {
    ln_gamma(n as f64 + 1.0) - ln_gamma(k as f64 + 1.0) - ln_gamma((n - k) as f64 + 1.0)
}

fn log_sum_exp(terms: impl Iterator<Item = f64> + Clone) -> f64 {
    let m = terms.clone().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + terms.map(|t| (t - m).exp()).sum::<f64>().ln()
}

/// P(X ≥ k), X ~ Binomial(n, p).
pub fn binomial_upper(k: u64, n: u64, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n {
        return 0.0;
    }
    if p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    let (lp, lq) = (p.ln(), (-p).ln_1p());
    // Terms from k to n: the first one computed directly, the rest by the
    // ratio term(i+1)/term(i) = (n−i)/(i+1) · p/q, accumulated in log space.
    let first = ln_choose(n, k) + k as f64 * lp + (n - k) as f64 * lq;
    let mut terms = Vec::with_capacity((n - k + 1).min(1 << 20) as usize);
    let mut t = first;
    let mut max = t;
    terms.push(t);
    for i in k..n {
        t += ((n - i) as f64).ln() - ((i + 1) as f64).ln() + lp - lq;
        terms.push(t);
        max = max.max(t);
        // Past the mode, once terms fall 60 e-folds below the largest, the
        // rest cannot change a double.
        if t < max - 60.0 && (i as f64) > n as f64 * p {
            break;
        }
    }
    log_sum_exp(terms.iter().copied()).exp().min(1.0)
}

/// P(S ≥ s), S ~ Gamma(n, 1) (n ≥ 1 unit exponentials):
/// e^(−s) Σ_{j<n} s^j / j!.
pub fn gamma_upper(n: u64, s: f64) -> f64 {
    if n == 0 {
        return if s <= 0.0 { 1.0 } else { 0.0 };
    }
    if s <= 0.0 {
        return 1.0;
    }
    let ls = s.ln();
    let terms = (0..n).map(|j| j as f64 * ls - s - ln_gamma(j as f64 + 1.0));
    log_sum_exp(terms).exp().min(1.0)
}

/// The one-sample Kolmogorov–Smirnov test of `p` against the uniform
/// distribution on [0, 1]: the statistic D and its asymptotic p-value
/// (Kolmogorov's distribution with Stephens' small-sample correction).
pub fn ks_uniform(p: &[f64]) -> (f64, f64) {
    let mut v: Vec<f64> = p.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return (0.0, 1.0);
    }
    v.sort_by(f64::total_cmp);
    let n = v.len() as f64;
    let d = v
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let x = x.clamp(0.0, 1.0);
            ((i as f64 + 1.0) / n - x).max(x - i as f64 / n)
        })
        .fold(0.0f64, f64::max);
    let lambda = (n.sqrt() + 0.12 + 0.11 / n.sqrt()) * d;
    let mut q = 0.0;
    for k in 1..=100 {
        let k = f64::from(k);
        let term = 2.0 * (-1f64).powf(k - 1.0) * (-2.0 * k * k * lambda * lambda).exp();
        q += term;
        if term.abs() < 1e-12 {
            break;
        }
    }
    (d, q.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1e-300)
    }

    #[test]
    fn ln_gamma_at_known_points() {
        assert!(ln_gamma(1.0).abs() < 1e-14);
        assert!(ln_gamma(2.0).abs() < 1e-14);
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-13);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-13);
        assert!((ln_gamma(101.0) - 363.739_375_555_563_5).abs() < 1e-9);
    }

    #[test]
    fn binomial_tail_equals_the_direct_sum() {
        for &(n, p) in &[(10u64, 0.25f64), (40, 0.5), (200, 0.25), (25, 0.9)] {
            for k in 0..=n {
                let direct: f64 = (k..=n)
                    .map(|i| {
                        (ln_choose(n, i) + i as f64 * p.ln() + (n - i) as f64 * (1.0 - p).ln())
                            .exp()
                    })
                    .sum();
                let got = binomial_upper(k, n, p);
                assert!(
                    close(got, direct.min(1.0), 1e-10),
                    "n={n} k={k} p={p}: {got} vs {direct}"
                );
            }
        }
        // A known value: P(X ≥ 10 | n = 10, p = 1/2) = 2^-10.
        assert!(close(binomial_upper(10, 10, 0.5), 1.0 / 1024.0, 1e-12));
        // Far tail, where a z-score would be off by orders of magnitude.
        let p = binomial_upper(100, 200, 0.25);
        assert!(p > 1e-14 && p < 1e-11, "{p}");
    }

    #[test]
    fn gamma_tail_is_the_poisson_sum() {
        // n = 1: an exponential tail.
        assert!(close(gamma_upper(1, 3.0), (-3.0f64).exp(), 1e-14));
        // n = 3: e^-s (1 + s + s²/2).
        let s = 7.5f64;
        assert!(close(
            gamma_upper(3, s),
            (-s).exp() * (1.0 + s + s * s / 2.0),
            1e-13
        ));
        // Mean n: about one half for large n.
        let m = gamma_upper(10_000, 10_000.0);
        assert!((m - 0.5).abs() < 0.01, "{m}");
        assert_eq!(gamma_upper(5, 0.0), 1.0);
    }

    #[test]
    fn ks_accepts_uniform_and_rejects_skewed_p_values() {
        let uniform: Vec<f64> = (0..400).map(|i| (f64::from(i) + 0.5) / 400.0).collect();
        let (d, p) = ks_uniform(&uniform);
        assert!(d < 0.01 && p > 0.99, "{d} {p}");
        let skewed: Vec<f64> = uniform.iter().map(|x| x * x).collect();
        let (d, p) = ks_uniform(&skewed);
        assert!(d > 0.2 && p < 1e-6, "{d} {p}");
        // One point at 0.5: D = 0.5, λ = 1.23 · 0.5, Q(λ) = 0.8438.
        let (d, p) = ks_uniform(&[0.5]);
        assert_eq!(d, 0.5);
        assert!((p - 0.8438).abs() < 1e-3, "{p}");
        assert_eq!(ks_uniform(&[]), (0.0, 1.0));
    }
}
