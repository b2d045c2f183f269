/*!
What fitting needs besides the trees ([`crate::trees`]): samples, and
thresholds read off the tail of honest scores.

Samples are an account's features at checkpoints of its life (after 3, 5,
8, … requests and at the end), labelled from the truth, so the model learns
to judge young accounts as well as old ones. Deterministic: the same
samples give the same model, to the last bit.
*/

use crate::features::NF;

/// Request counts at which an account's features are sampled.
pub const CHECKPOINTS: [u32; 11] = [3, 5, 8, 12, 20, 35, 60, 100, 200, 400, 1000];

/// One labelled feature vector with its weight in the fit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub x: [f64; NF],
    pub attack: bool,
    pub weight: f64,
}

/// A threshold read off the tail of honest scores.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TailFit {
    /// Honest accounts the scores come from.
    pub honest: u64,
    /// Accounts in the tail the generalised Pareto distribution is fitted to.
    pub tail: u64,
    /// The tail's start, in logit units.
    pub start: f64,
    /// Shape ξ and scale σ (logit units) of the fitted distribution.
    pub shape: f64,
    pub scale: f64,
}

impl TailFit {
    /// The risk above which a share `budget` of honest accounts is
    /// expected to lie.
    pub fn threshold(&self, budget: f64) -> f64 {
        let n = self.honest.max(1) as f64;
        let k = self.tail.max(1) as f64;
        let ratio = (k / (n * budget.max(1e-12))).max(1.0);
        let z = if self.shape.abs() < 1e-6 {
            self.start + self.scale * ratio.ln()
        } else {
            self.start + self.scale / self.shape * (ratio.powf(self.shape) - 1.0)
        };
        1.0 / (1.0 + (-z).exp())
    }

    /// How many of these honest accounts score at or above `risk`, as the
    /// fitted tail expects.
    pub fn expected_above(&self, risk: f64) -> f64 {
        let z = logit(risk);
        let n = self.honest as f64;
        let k = self.tail as f64;
        if z <= self.start {
            return k;
        }
        let y = z - self.start;
        let tail = if self.shape.abs() < 1e-6 {
            (-y / self.scale).exp()
        } else {
            (1.0 + self.shape * y / self.scale)
                .max(0.0)
                .powf(-1.0 / self.shape)
        };
        (k * tail).min(n)
    }
}

fn logit(r: f64) -> f64 {
    let r = r.clamp(1e-13, 1.0 - 1e-13);
    (r / (1.0 - r)).ln()
}

/// Fits a generalised Pareto distribution to the top of honest accounts'
/// highest risks (in logit units, where the tail is unbounded), by
/// probability-weighted moments (Hosking & Wallis 1987): closed form and
/// robust for small tails. The tail is the top 5% or 2,000 accounts,
/// whichever is fewer, and at least 50. The shape is held in [−0.5, 0.5].
///
/// Why: a threshold "just above the highest honest training account" says
/// nothing about the next world; the tail's fitted shape extrapolates to
/// the budget (1e-4 of 100,000 accounts is 10 accounts: the fit uses the
/// 2,000 above the tail's start, not the 10).
pub fn fit_tail(honest_risks: &[f64]) -> TailFit {
    let mut z: Vec<f64> = honest_risks.iter().map(|r| logit(*r)).collect();
    z.sort_by(|a, b| b.total_cmp(a));
    let n = z.len();
    let k = ((n as f64 * 0.05) as usize)
        .clamp(50.min(n), 2000)
        .min(n.saturating_sub(1))
        .max(1);
    let start = z.get(k).copied().unwrap_or(0.0);
    let mut y: Vec<f64> = z[..k.min(n)].iter().map(|v| (v - start).max(0.0)).collect();
    y.sort_by(|a, b| a.total_cmp(b));
    let m = y.len() as f64;
    let a0 = y.iter().sum::<f64>() / m.max(1.0);
    let a1 = if y.len() > 1 {
        y.iter()
            .enumerate()
            .map(|(i, v)| (m - 1.0 - i as f64) / (m - 1.0) * v)
            .sum::<f64>()
            / m
    } else {
        a0 / 2.0
    };
    let d = (a0 - 2.0 * a1).max(1e-9);
    let shape = (2.0 - a0 / d).clamp(-0.5, 0.5);
    let scale = (2.0 * a0 * a1 / d).max(1e-6);
    TailFit {
        honest: n as u64,
        tail: k as u64,
        start,
        shape,
        scale,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_fit_extrapolates_an_exponential_tail() {
        // Logit-scale scores with an exponential tail (ξ = 0): the fitted
        // threshold at 1e-4 sits where 1e-4 of the population lies above.
        let mut x: u64 = 11;
        let mut rnd = move || {
            x = distillguard_sketches::mix64(x);
            ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let n = 50_000;
        let risks: Vec<f64> = (0..n)
            .map(|_| {
                let z = -6.0 - rnd().ln(); // Exp(1) above −6
                1.0 / (1.0 + (-z).exp())
            })
            .collect();
        let t = fit_tail(&risks);
        assert!(t.shape.abs() < 0.15, "{t:?}");
        assert!((t.scale - 1.0).abs() < 0.2, "{t:?}");
        let thr = t.threshold(1e-4);
        // True: P(Exp(1) > q) = 1e-4 → q = ln(1e4) ≈ 9.21, z = 3.21.
        let z = logit(thr);
        assert!((z - 3.21).abs() < 0.6, "{z}");
        assert!((t.expected_above(thr) - n as f64 * 1e-4).abs() < 1.0);
        // A tighter budget, a higher threshold.
        assert!(t.threshold(1e-5) > thr);
    }
}
