/*!
The score: a sum of small regression trees, each increasing in every
feature (monotone gradient boosting).

Why trees: an account is a harvest when several behaviours come together
(reasoning asked for on every single-shot prompt of a reused template, at
volume, round the clock), and honest look-alikes show some of them but not
the others (a benchmark harness re-sends the same items; a tutoring
platform converses; a hackathon's template does not ask for steps). A
weighted sum of features cannot say "this, unless not that"; trees can.

Why monotone: every feature is oriented so that more of it looks more like
harvesting, and each tree is built so that its output never decreases when
a feature increases (the bounds of XGBoost's monotone constraints: at a
split on feature f, the left subtree's values stay at or below the
midpoint of the two children, the right subtree's at or above it). So no
tree rewards an account for showing more of an attack behaviour, which an
attacker could adopt for free; [`Forest::is_monotone`] checks it.

Reasons: the score's change along each tree's path is attributed to the
feature split on (Saabas' method), so every feature gets a contribution,
and the contributions and the bias add up to the score's logit.

Training is deterministic: histograms over fixed cut points, ties broken by
feature then cut order.
*/

use serde::{Deserialize, Serialize};

/// A node: a split (`feature < LEAF`) or a leaf. `value` is the node's own
/// prediction (shrunk), used by leaves and by the path attribution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Split feature, or [`LEAF`].
    #[serde(rename = "f")]
    pub feature: u16,
    /// `x[feature] < threshold` goes left.
    #[serde(rename = "t")]
    pub threshold: f32,
    #[serde(rename = "l")]
    pub left: u16,
    #[serde(rename = "r")]
    pub right: u16,
    #[serde(rename = "v")]
    pub value: f32,
}

/// Marks a leaf.
pub const LEAF: u16 = u16::MAX;

/// One tree; node 0 is the root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree(pub Vec<Node>);

/// The ensemble: logit = bias + Σ trees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Forest {
    pub bias: f64,
    pub trees: Vec<Tree>,
}

impl Tree {
    fn leaf_of(&self, x: &[f64]) -> usize {
        let mut i = 0usize;
        for _ in 0..64 {
            let n = &self.0[i];
            if n.feature == LEAF {
                return i;
            }
            let v = x.get(n.feature as usize).copied().unwrap_or(0.0);
            i = if (v as f32) < n.threshold {
                n.left as usize
            } else {
                n.right as usize
            };
            if i >= self.0.len() {
                return 0;
            }
        }
        i
    }
}

impl Forest {
    /// The score's logit for features `x`.
    pub fn logit(&self, x: &[f64]) -> f64 {
        self.bias
            + self
                .trees
                .iter()
                .map(|t| f64::from(t.0.get(t.leaf_of(x)).map_or(0.0, |n| n.value)))
                .sum::<f64>()
    }

    /// Each feature's contribution to the logit (Saabas): along each
    /// tree's path, the change of the node value at a split goes to the
    /// split's feature. `bias + Σ contributions = logit` (the roots' values
    /// are part of the returned base).
    pub fn contributions(&self, x: &[f64], out: &mut [f64]) -> f64 {
        out.iter_mut().for_each(|c| *c = 0.0);
        let mut base = self.bias;
        for t in &self.trees {
            let Some(root) = t.0.first() else { continue };
            base += f64::from(root.value);
            let mut i = 0usize;
            for _ in 0..64 {
                let n = t.0[i];
                if n.feature == LEAF {
                    break;
                }
                let v = x.get(n.feature as usize).copied().unwrap_or(0.0);
                let next = if (v as f32) < n.threshold {
                    n.left
                } else {
                    n.right
                } as usize;
                if next >= t.0.len() {
                    break;
                }
                if let Some(c) = out.get_mut(n.feature as usize) {
                    *c += f64::from(t.0[next].value - n.value);
                }
                i = next;
            }
        }
        base
    }

    /// Whether every tree is non-decreasing in every feature: at each
    /// split, the largest value reachable on the left never exceeds the
    /// smallest on the right (checked with the split's own feature held).
    pub fn is_monotone(&self) -> bool {
        self.trees.iter().all(|t| {
            t.0.iter().all(|n| {
                n.feature == LEAF || {
                    let hi_left = extreme(t, n.left as usize, n.feature, n.threshold, true, true);
                    let lo_right =
                        extreme(t, n.right as usize, n.feature, n.threshold, false, false);
                    hi_left <= lo_right + 1e-6
                }
            })
        })
    }

    /// Node count (for sizes in docs and benchmarks).
    pub fn nodes(&self) -> usize {
        self.trees.iter().map(|t| t.0.len()).sum()
    }
}

/// Which side of each of the forest's cut points every feature lies on,
/// as one 64-bit key: two feature vectors with the same key get the same
/// score, so a caller can skip rescoring an account whose features moved
/// without crossing a cut point (exact, not an approximation).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Binner {
    cuts: Vec<Vec<f32>>,
}

impl Binner {
    pub fn new(forest: &Forest, nf: usize) -> Binner {
        let mut cuts = vec![Vec::new(); nf];
        for t in &forest.trees {
            for n in &t.0 {
                if let Some(c) = cuts.get_mut(n.feature as usize) {
                    c.push(n.threshold);
                }
            }
        }
        for c in &mut cuts {
            c.sort_by(f32::total_cmp);
            c.dedup();
        }
        Binner { cuts }
    }

    pub fn key(&self, x: &[f64]) -> u64 {
        let mut h: u64 = 0x9E37_79B9_7F4A_7C15;
        for (c, v) in self.cuts.iter().zip(x) {
            let b = c.partition_point(|t| (*v as f32) >= *t) as u64;
            h = (h ^ b).wrapping_mul(0x100_0000_01B3).rotate_left(7);
        }
        h
    }
}

/// The largest (`max`) or smallest value of the subtree at `i`, over
/// inputs whose `feature` lies on the left (`left`) or the right of `at`.
fn extreme(t: &Tree, i: usize, feature: u16, at: f32, left: bool, max: bool) -> f32 {
    let Some(n) = t.0.get(i) else { return 0.0 };
    if n.feature == LEAF {
        return n.value;
    }
    let mut go_left = true;
    let mut go_right = true;
    if n.feature == feature {
        // Only the side consistent with the constraint on this feature.
        if left && n.threshold >= at {
            go_right = false;
        }
        if !left && n.threshold <= at {
            go_left = false;
        }
    }
    let mut best = if max {
        f32::NEG_INFINITY
    } else {
        f32::INFINITY
    };
    for (go, c) in [(go_left, n.left), (go_right, n.right)] {
        if go {
            let v = extreme(t, c as usize, feature, at, left, max);
            best = if max { best.max(v) } else { best.min(v) };
        }
    }
    if best.is_finite() { best } else { n.value }
}

/// Training options.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainOpts {
    pub trees: usize,
    pub depth: usize,
    pub learning_rate: f64,
    /// L2 penalty on leaf values.
    pub lambda: f64,
    /// Smallest hessian (weighted) a child may have.
    pub min_child: f64,
    /// Cut points per feature (quantiles of the training values).
    pub cuts: usize,
}

impl Default for TrainOpts {
    fn default() -> Self {
        TrainOpts {
            trees: 200,
            depth: 3,
            learning_rate: 0.1,
            lambda: 1.0,
            min_child: 20.0,
            cuts: 48,
        }
    }
}

/// A labelled, weighted example.
#[derive(Debug, Clone)]
pub struct Example<'a> {
    pub x: &'a [f64],
    pub attack: bool,
    pub weight: f64,
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Cut points of one feature: distinct quantiles of its values.
fn cut_points(values: &mut Vec<f64>, n: usize) -> Vec<f32> {
    values.sort_by(f64::total_cmp);
    values.dedup();
    if values.len() <= 1 {
        return Vec::new();
    }
    let mut cuts = Vec::new();
    for k in 1..=n {
        let i = k * (values.len() - 1) / (n + 1);
        let (a, b) = (values[i], values[(i + 1).min(values.len() - 1)]);
        let c = ((a + b) / 2.0) as f32;
        if b > a && cuts.last().is_none_or(|l| *l < c) {
            cuts.push(c);
        }
    }
    cuts
}

/// Trains a monotone forest (increasing in every feature) by gradient
/// boosting on the logistic loss.
pub fn train(examples: &[Example], nf: usize, opts: TrainOpts) -> Forest {
    let n = examples.len();
    if n == 0 || nf == 0 {
        return Forest::default();
    }
    // Bin every value once.
    let cuts: Vec<Vec<f32>> = (0..nf)
        .map(|f| {
            let mut v: Vec<f64> = examples.iter().map(|e| e.x[f]).collect();
            cut_points(&mut v, opts.cuts)
        })
        .collect();
    let bins: Vec<Vec<u8>> = (0..nf)
        .map(|f| {
            examples
                .iter()
                .map(|e| cuts[f].partition_point(|c| (e.x[f] as f32) >= *c) as u8)
                .collect()
        })
        .collect();
    let pos: f64 = examples.iter().filter(|e| e.attack).map(|e| e.weight).sum();
    let neg: f64 = examples
        .iter()
        .filter(|e| !e.attack)
        .map(|e| e.weight)
        .sum();
    let bias = (pos.max(1e-12) / neg.max(1e-12)).ln();
    let mut score = vec![bias; n];
    let mut forest = Forest {
        bias,
        trees: Vec::with_capacity(opts.trees),
    };
    let mut g = vec![0.0f64; n];
    let mut h = vec![0.0f64; n];
    for _ in 0..opts.trees {
        for (i, e) in examples.iter().enumerate() {
            let p = sigmoid(score[i]);
            g[i] = e.weight * (p - if e.attack { 1.0 } else { 0.0 });
            h[i] = e.weight * (p * (1.0 - p)).max(1e-12);
        }
        let tree = grow(&bins, &cuts, &g, &h, opts);
        for (i, e) in examples.iter().enumerate() {
            score[i] += f64::from(tree.0[tree.leaf_of(e.x)].value);
        }
        forest.trees.push(tree);
    }
    forest
}

struct Pending {
    node: usize,
    rows: Vec<u32>,
    depth: usize,
    lo: f64,
    hi: f64,
}

fn leaf_value(gs: f64, hs: f64, lambda: f64, lo: f64, hi: f64) -> f64 {
    (-gs / (hs + lambda)).clamp(lo, hi)
}

/// The loss a node's value achieves (lower is better).
fn objective(gs: f64, hs: f64, w: f64, lambda: f64) -> f64 {
    gs * w + 0.5 * (hs + lambda) * w * w
}

fn grow(bins: &[Vec<u8>], cuts: &[Vec<f32>], g: &[f64], h: &[f64], opts: TrainOpts) -> Tree {
    let lr = opts.learning_rate;
    let n = g.len();
    let mut nodes: Vec<Node> = Vec::new();
    let (gs, hs) = (g.iter().sum::<f64>(), h.iter().sum::<f64>());
    nodes.push(Node {
        feature: LEAF,
        threshold: 0.0,
        left: 0,
        right: 0,
        value: (leaf_value(gs, hs, opts.lambda, f64::NEG_INFINITY, f64::INFINITY) * lr) as f32,
    });
    let mut queue = vec![Pending {
        node: 0,
        rows: (0..n as u32).collect(),
        depth: 0,
        lo: f64::NEG_INFINITY,
        hi: f64::INFINITY,
    }];
    while let Some(p) = queue.pop() {
        if p.depth >= opts.depth || p.rows.len() < 2 {
            continue;
        }
        let (gs, hs) = p.rows.iter().fold((0.0, 0.0), |(a, b), &r| {
            (a + g[r as usize], b + h[r as usize])
        });
        let w0 = leaf_value(gs, hs, opts.lambda, p.lo, p.hi);
        let base = objective(gs, hs, w0, opts.lambda);
        // Best split: (gain, feature, cut index, wl, wr).
        let mut best: Option<(f64, usize, usize, f64, f64)> = None;
        for (f, fcuts) in cuts.iter().enumerate() {
            if fcuts.is_empty() {
                continue;
            }
            let mut hg = vec![0.0f64; fcuts.len() + 1];
            let mut hh = vec![0.0f64; fcuts.len() + 1];
            for &r in &p.rows {
                let b = bins[f][r as usize] as usize;
                hg[b] += g[r as usize];
                hh[b] += h[r as usize];
            }
            let (mut gl, mut hl) = (0.0, 0.0);
            for c in 0..fcuts.len() {
                gl += hg[c];
                hl += hh[c];
                let (gr, hr) = (gs - gl, hs - hl);
                if hl < opts.min_child || hr < opts.min_child {
                    continue;
                }
                let wl = leaf_value(gl, hl, opts.lambda, p.lo, p.hi);
                let wr = leaf_value(gr, hr, opts.lambda, p.lo, p.hi);
                if wl > wr {
                    // Increasing in every feature: more of it, never less.
                    continue;
                }
                let gain =
                    base - objective(gl, hl, wl, opts.lambda) - objective(gr, hr, wr, opts.lambda);
                if gain > 1e-9 && best.is_none_or(|b| gain > b.0) {
                    best = Some((gain, f, c, wl, wr));
                }
            }
        }
        let Some((_, f, c, wl, wr)) = best else {
            continue;
        };
        let threshold = cuts[f][c];
        let (left_rows, right_rows): (Vec<u32>, Vec<u32>) = p
            .rows
            .iter()
            .partition(|&&r| (bins[f][r as usize] as usize) <= c);
        let mid = (wl + wr) / 2.0;
        let li = nodes.len();
        nodes.push(Node {
            feature: LEAF,
            threshold: 0.0,
            left: 0,
            right: 0,
            value: (wl * lr) as f32,
        });
        let ri = nodes.len();
        nodes.push(Node {
            feature: LEAF,
            threshold: 0.0,
            left: 0,
            right: 0,
            value: (wr * lr) as f32,
        });
        nodes[p.node].feature = f as u16;
        nodes[p.node].threshold = threshold;
        nodes[p.node].left = li as u16;
        nodes[p.node].right = ri as u16;
        queue.push(Pending {
            node: ri,
            rows: right_rows,
            depth: p.depth + 1,
            lo: mid,
            hi: p.hi,
        });
        queue.push(Pending {
            node: li,
            rows: left_rows,
            depth: p.depth + 1,
            lo: p.lo,
            hi: mid,
        });
    }
    Tree(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(seed: u64) -> (Vec<[f64; 3]>, Vec<bool>) {
        let mut x: u64 = seed;
        let mut rnd = move || {
            x = distillguard_sketches::mix64(x);
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut xs = Vec::new();
        let mut ys = Vec::new();
        for i in 0..4_000 {
            let attack = i % 5 == 0;
            // Attacks show features 0 AND 1; honest accounts show one of
            // them at most (an interaction no weighted sum captures).
            let (a, b) = if attack {
                (0.7 + 0.3 * rnd(), 0.7 + 0.3 * rnd())
            } else if i % 2 == 0 {
                (0.7 + 0.3 * rnd(), 0.3 * rnd())
            } else {
                (0.3 * rnd(), 0.7 + 0.3 * rnd())
            };
            xs.push([a, b, rnd()]);
            ys.push(attack);
        }
        (xs, ys)
    }

    fn examples<'a>(xs: &'a [[f64; 3]], ys: &[bool]) -> Vec<Example<'a>> {
        xs.iter()
            .zip(ys)
            .map(|(x, y)| Example {
                x: x.as_slice(),
                attack: *y,
                weight: 1.0,
            })
            .collect()
    }

    #[test]
    fn learns_an_interaction_and_stays_monotone() {
        let (xs, ys) = data(3);
        let ex = examples(&xs, &ys);
        let f = train(&ex, 3, TrainOpts::default());
        assert!(f.is_monotone());
        let p = |x: [f64; 3]| sigmoid(f.logit(&x));
        assert!(p([0.9, 0.9, 0.5]) > 0.9, "{}", p([0.9, 0.9, 0.5]));
        assert!(p([0.9, 0.1, 0.5]) < 0.2, "{}", p([0.9, 0.1, 0.5]));
        assert!(p([0.1, 0.9, 0.5]) < 0.2);
        // Monotone on a grid: more of any feature never lowers the score.
        for i in 0..=10 {
            for j in 0..=10 {
                let x = [i as f64 / 10.0, j as f64 / 10.0, 0.5];
                for k in 0..3 {
                    let mut y = x;
                    y[k] = (y[k] + 0.1).min(1.0);
                    assert!(f.logit(&y) >= f.logit(&x) - 1e-9, "{x:?} {k}");
                }
            }
        }
        // Deterministic.
        assert_eq!(train(&ex, 3, TrainOpts::default()), f);
    }

    #[test]
    fn contributions_add_up_to_the_logit() {
        let (xs, ys) = data(5);
        let ex = examples(&xs, &ys);
        let f = train(
            &ex,
            3,
            TrainOpts {
                trees: 40,
                ..TrainOpts::default()
            },
        );
        let mut c = [0.0; 3];
        for x in xs.iter().take(50) {
            let base = f.contributions(x, &mut c);
            assert!((base + c.iter().sum::<f64>() - f.logit(x)).abs() < 1e-4);
        }
        // An attack's two features carry its score.
        let base = f.contributions(&[0.95, 0.95, 0.5], &mut c);
        assert!(
            c[0] > 0.5 && c[1] > 0.5 && c[2].abs() < c[0],
            "{c:?} {base}"
        );
    }

    #[test]
    fn a_non_monotone_tree_is_caught() {
        let bad = Forest {
            bias: 0.0,
            trees: vec![Tree(vec![
                Node {
                    feature: 0,
                    threshold: 0.5,
                    left: 1,
                    right: 2,
                    value: 0.0,
                },
                Node {
                    feature: LEAF,
                    threshold: 0.0,
                    left: 0,
                    right: 0,
                    value: 1.0,
                },
                Node {
                    feature: LEAF,
                    threshold: 0.0,
                    left: 0,
                    right: 0,
                    value: -1.0,
                },
            ])],
        };
        assert!(!bad.is_monotone());
    }
}
