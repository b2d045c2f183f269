/*!
Fitting the score's weights: logistic regression by iteratively reweighted
least squares (Newton's method) with a small ridge penalty.

Samples are an account's feature vector at checkpoints of its life (after
3, 5, 8, … requests and at the end), labelled from the truth, so the model
learns to judge young accounts as well as old ones. Classes are weighted to
count equally (honest accounts outnumber attackers). Deterministic: the
same samples give the same weights, to the last bit.
*/

// Matrix code reads best with explicit indices.
#![allow(clippy::needless_range_loop)]

use crate::engine::NF;

/// Request counts at which an account's features are sampled.
pub const CHECKPOINTS: [u32; 11] = [3, 5, 8, 12, 20, 35, 60, 100, 200, 400, 1000];

/// Fits (bias, weights) with the weights of `nonneg` (feature indices) held
/// at zero or above: a feature that may only add suspicion. A negative fit
/// for one of them fixes it at zero and the rest is refitted (an active
/// set), until none is negative.
///
/// Why: some behaviours the disclosures name (pivoting to a new model,
/// running near the tier's limits) are shown more by the simulated world's
/// busy honest products than by its thinly spread campaigns. A negative
/// weight would then reward an attacker for showing them.
pub fn fit_nonneg(
    samples: &[([f64; NF], bool)],
    ridge: f64,
    iterations: usize,
    nonneg: &[usize],
) -> (f64, [f64; NF]) {
    let mut fixed = [false; NF];
    loop {
        let (b, w) = fit_masked(samples, ridge, iterations, &fixed);
        let negative: Vec<usize> = nonneg
            .iter()
            .copied()
            .filter(|&i| i < NF && !fixed[i] && w[i] < 0.0)
            .collect();
        if negative.is_empty() {
            return (b, w);
        }
        for i in negative {
            fixed[i] = true;
        }
    }
}

/// Fits (bias, weights) to labelled samples.
pub fn fit(samples: &[([f64; NF], bool)], ridge: f64, iterations: usize) -> (f64, [f64; NF]) {
    fit_masked(samples, ridge, iterations, &[false; NF])
}

/// The fit with some features held at weight zero (`fixed`).
fn fit_masked(
    samples: &[([f64; NF], bool)],
    ridge: f64,
    iterations: usize,
    fixed: &[bool; NF],
) -> (f64, [f64; NF]) {
    const D: usize = NF + 1;
    let pos = samples.iter().filter(|s| s.1).count().max(1) as f64;
    let neg = samples.iter().filter(|s| !s.1).count().max(1) as f64;
    let (wp, wn) = (
        0.5 * samples.len() as f64 / pos,
        0.5 * samples.len() as f64 / neg,
    );
    let mut beta = [0.0f64; D];
    for _ in 0..iterations {
        let mut h = [[0.0f64; D]; D];
        let mut g = [0.0f64; D];
        for (x, y) in samples {
            let mut z = beta[0];
            for i in 0..NF {
                z += beta[i + 1] * x[i];
            }
            let x: [f64; NF] = std::array::from_fn(|i| if fixed[i] { 0.0 } else { x[i] });
            let p = 1.0 / (1.0 + (-z).exp());
            let w = if *y { wp } else { wn };
            let r = w * ((*y as u8 as f64) - p);
            let s = w * (p * (1.0 - p)).max(1e-9);
            let xi = |i: usize| if i == 0 { 1.0 } else { x[i - 1] };
            for i in 0..D {
                g[i] += r * xi(i);
                for j in 0..=i {
                    h[i][j] += s * xi(i) * xi(j);
                }
            }
        }
        for i in 0..D {
            for j in 0..i {
                h[j][i] = h[i][j];
            }
            if i > 0 {
                h[i][i] += ridge;
                g[i] -= ridge * beta[i];
            }
        }
        let Some(step) = solve(h, g) else { break };
        let mut change = 0.0f64;
        for i in 0..D {
            beta[i] += step[i];
            change = change.max(step[i].abs());
        }
        if change < 1e-9 {
            break;
        }
    }
    let mut w = [0.0; NF];
    w.copy_from_slice(&beta[1..]);
    (beta[0], w)
}

/// Solves `a · x = b` by Gaussian elimination with partial pivoting.
fn solve<const D: usize>(mut a: [[f64; D]; D], mut b: [f64; D]) -> Option<[f64; D]> {
    for col in 0..D {
        let piv = (col..D).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[piv][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, piv);
        b.swap(col, piv);
        for row in col + 1..D {
            let f = a[row][col] / a[col][col];
            for k in col..D {
                a[row][k] -= f * a[col][k];
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = [0.0; D];
    for i in (0..D).rev() {
        let s: f64 = (i + 1..D).map(|k| a[i][k] * x[k]).sum();
        x[i] = (b[i] - s) / a[i][i];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separates_a_separable_feature_and_ignores_noise() {
        let mut samples = Vec::new();
        let mut x: u64 = 3;
        let mut rnd = move || {
            x = distillguard_sketches::mix64(x);
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        for i in 0..4_000 {
            let attack = i % 10 == 0;
            let mut f = [0.0; NF];
            f[0] = if attack {
                0.6 + 0.4 * rnd()
            } else {
                0.5 * rnd()
            };
            f[1] = rnd(); // noise
            samples.push((f, attack));
        }
        let (b, w) = fit(&samples, 1.0, 50);
        assert!(w[0] > 5.0, "{w:?}");
        assert!(w[1].abs() < 1.0, "{w:?}");
        // Probabilities cross 0.5 between the classes.
        let p = |v: f64| 1.0 / (1.0 + (-(b + w[0] * v)).exp());
        assert!(p(0.2) < 0.1 && p(0.9) > 0.9);
        // Deterministic.
        assert_eq!(fit(&samples, 1.0, 50), (b, w));
    }

    #[test]
    fn a_non_negative_feature_that_fits_negative_is_held_at_zero() {
        let mut samples = Vec::new();
        let mut x: u64 = 5;
        let mut rnd = move || {
            x = distillguard_sketches::mix64(x);
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        for i in 0..4_000 {
            let attack = i % 10 == 0;
            let mut f = [0.0; NF];
            f[0] = if attack {
                0.6 + 0.4 * rnd()
            } else {
                0.5 * rnd()
            };
            // Feature 2 is higher for honest samples.
            f[2] = if attack {
                0.3 * rnd()
            } else {
                0.5 + 0.5 * rnd()
            };
            samples.push((f, attack));
        }
        let (_, free) = fit(&samples, 1.0, 50);
        assert!(free[2] < -1.0, "{free:?}");
        let (_, held) = fit_nonneg(&samples, 1.0, 50, &[2]);
        assert_eq!(held[2], 0.0);
        assert!(held[0] > 5.0, "{held:?}");
        // Constraining a feature that fits positive changes nothing.
        assert_eq!(fit_nonneg(&samples, 1.0, 50, &[0]), fit(&samples, 1.0, 50));
    }

    #[test]
    fn solves_linear_systems() {
        let x = solve([[2.0, 1.0], [1.0, 3.0]], [3.0, 5.0]).unwrap();
        assert!((x[0] - 0.8).abs() < 1e-12 && (x[1] - 1.4).abs() < 1e-12);
        assert!(solve([[0.0, 0.0], [0.0, 0.0]], [1.0, 1.0]).is_none());
    }
}
