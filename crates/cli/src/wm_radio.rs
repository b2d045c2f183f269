/*!
Radioactivity at low contamination, over many seeds, with its controls
(`distillguard watermark experiment`, third part).

Students (the reference teacher's trigram model) are trained on real
answers plus 0, 0.5, 1, 2, 5 or 10% of watermarked teacher answers, once
per seed. A seed draws its own key, its own watermarked answers (to its own
prompts) and the student's own sampling. Each student answers the same
held-out user prompts, and its answers are tested as `watermark
radioactivity` does: tuples de-duplicated across answers, prompt windows
excluded, with the filter of Sander et al. on the student's context (only
tuples whose two preceding tokens occur together in our watermarked text;
the scheme's window is one token, a trigram student conditions on two),
and for comparison with the filter on the scheme's one-token window and
with no filter. The two-token filter was chosen on a pilot of two seeds
that are not among the reported ones (which start at [`SEED_BASE`]).

Controls, which must look uniform: the students that never saw watermarked
text, under the key; and every student under keys that never marked
anything. Their p-values are compared with the uniform distribution by a
one-sample Kolmogorov–Smirnov test.

Removal, shown honestly: students trained on the watermarked answers after
a second model (the teacher under another key) rewrote half of the text in
spans of 8 tokens; the filter is still our original text, since that is
what an investigator holds.
*/

use std::io::Write;

use distillguard_teacher::Teacher;
use distillguard_watermark::{Key, Kgw, Scheme, Seeding, WindowFilter};
use serde_json::{Value, json};

use crate::wm_data::{Rng, pick};

/// Watermarked share of a student's training text.
pub(crate) const LEVELS: [f64; 6] = [0.0, 0.005, 0.01, 0.02, 0.05, 0.10];
/// Levels at which students also train on rewritten watermarked text.
const REWRITTEN_LEVELS: [f64; 2] = [0.05, 0.10];
/// Share of the watermarked text the second model rewrites.
const REWRITE_RATE: f64 = 0.5;
/// Control keys per student.
const CONTROL_KEYS: usize = 20;
/// The first seed. Seeds 0 and 1 were the pilot that chose the two-token
/// filter; the reported seeds are others.
const SEED_BASE: u64 = 100;
/// Tokens per watermarked teacher answer in the students' training text.
const MARKED_ANSWER_TOKENS: usize = 200;

/// The sizes of the radioactivity run.
pub(crate) struct RadioOptions {
    /// Seeds per contamination level.
    pub seeds: usize,
    /// Held-out prompts each student answers.
    pub prompts: usize,
    /// Tokens per student answer.
    pub answer_tokens: usize,
    /// Real answer tokens every student trains on.
    pub base_tokens: usize,
}

/// One student and its tests.
struct Student {
    seed: u64,
    level: f64,
    rewritten: bool,
    trained_tokens: u64,
    marked_tokens: usize,
    /// The primary test: filtered on windows of two tokens (the student's
    /// own context) found in our watermarked text.
    filtered_tuples: usize,
    filtered_p: f64,
    /// Filtered on the scheme's own window (one token).
    narrow_p: f64,
    all_tuples: usize,
    all_p: f64,
    /// The filtered test under keys that never marked anything.
    controls: Vec<f64>,
}

/// Every student of every seed.
pub(crate) struct RadioReport {
    seeds: usize,
    prompts: usize,
    answer_tokens: usize,
    students: Vec<Student>,
}

fn kgw(key: Key) -> Scheme {
    Scheme::Kgw(Kgw {
        key,
        gamma: 0.25,
        delta: 2.0,
        seeding: Seeding::LeftHash { h: 1 },
    })
}

/// The first of `texts` holding `need` tokens in all.
fn take_tokens(texts: &[Vec<u32>], need: usize) -> (Vec<Vec<u32>>, usize) {
    let mut part = Vec::new();
    let mut n = 0usize;
    for m in texts {
        if n >= need {
            break;
        }
        n += m.len();
        part.push(m.clone());
    }
    (part, n)
}

#[expect(clippy::too_many_arguments)]
fn one_seed(
    seed: u64,
    teacher: &Teacher,
    base: &[Vec<u32>],
    base_tokens: usize,
    queries: &[Vec<u32>],
    pool: &[Vec<u32>],
    base_key: Key,
    o: &RadioOptions,
) -> Vec<Student> {
    let scheme = kgw(base_key.derive(&format!("radioactivity-{seed}")));
    let rewriter = kgw(base_key.derive(&format!("radioactivity-rewriter-{seed}")));
    // Watermarked answers to this seed's own prompts, enough for 10%.
    let want = base_tokens / 9;
    let per_seed = want / MARKED_ANSWER_TOKENS + 1;
    let mut rng = Rng::new(2024 + seed);
    let mut marked = Vec::new();
    let mut have = 0usize;
    let mut i = (seed - SEED_BASE.min(seed)) as usize * per_seed;
    while have < want && !pool.is_empty() {
        let p = &pool[i % pool.len()];
        i += 1;
        let a = teacher.generate(p, MARKED_ANSWER_TOKENS, None, |ctx, cand| {
            pick(Some(&scheme), ctx, cand, &mut rng)
        });
        if a.is_empty() {
            break;
        }
        have += a.len();
        marked.push(a);
    }
    let filter = WindowFilter::from_texts(1, marked.iter().map(Vec::as_slice));
    let filter2 = WindowFilter::from_texts(2, marked.iter().map(Vec::as_slice));
    let mut g = Rng::new(77 + seed);
    let rewritten: Vec<Vec<u32>> = marked
        .iter()
        .map(|m| crate::wm_data::rewrite(teacher, &rewriter, &[], m, REWRITE_RATE, &mut g))
        .collect();
    let runs = LEVELS
        .iter()
        .map(|&l| (l, false))
        .chain(REWRITTEN_LEVELS.iter().map(|&l| (l, true)));
    let mut out = Vec::new();
    for (run, (level, is_rewritten)) in runs.enumerate() {
        // Each student its own control keys: students of one seed write
        // nearly the same answers, so shared keys would not be independent
        // draws.
        let controls: Vec<Scheme> = (0..CONTROL_KEYS)
            .map(|j| kgw(base_key.derive(&format!("radioactivity-control-{seed}-{run}-{j}"))))
            .collect();
        let need = (base_tokens as f64 * level / (1.0 - level)) as usize;
        let (part, n) = take_tokens(if is_rewritten { &rewritten } else { &marked }, need);
        let student = Teacher::train(base.iter().cloned().chain(part));
        let mut r = Rng::new(99 + seed);
        let answers: Vec<Vec<u32>> = queries
            .iter()
            .map(|q| {
                student.generate(q, o.answer_tokens, None, |ctx, cand| {
                    pick(None, ctx, cand, &mut r)
                })
            })
            .collect();
        let test = |s: &Scheme, f: Option<&WindowFilter>| {
            crate::radioactivity::test(s, queries, &answers, f).0
        };
        let filtered = test(&scheme, Some(&filter));
        let all = test(&scheme, None);
        let wide = test(&scheme, Some(&filter2));
        let controls = controls
            .iter()
            .map(|c| test(c, Some(&filter2)).p_value)
            .collect();
        out.push(Student {
            seed,
            level,
            rewritten: is_rewritten,
            trained_tokens: student.trained_tokens,
            marked_tokens: n,
            filtered_tuples: wide.tokens_scored,
            filtered_p: wide.p_value,
            narrow_p: filtered.p_value,
            all_tuples: all.tokens_scored,
            all_p: all.p_value,
            controls,
        });
    }
    out
}

/// Runs every seed, spread over the machine's cores (each seed's numbers
/// depend only on the seed).
pub(crate) fn run(
    teacher: &Teacher,
    real: &[Vec<u32>],
    prompts: &[Vec<u32>],
    skip: usize,
    base_key: Key,
    o: &RadioOptions,
) -> RadioReport {
    let (base, base_tokens) = take_tokens(real, o.base_tokens);
    let queries: Vec<Vec<u32>> = prompts.iter().skip(skip).take(o.prompts).cloned().collect();
    let pool: Vec<Vec<u32>> = prompts.iter().skip(skip + o.prompts).cloned().collect();
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let seeds: Vec<u64> = (SEED_BASE..SEED_BASE + o.seeds as u64).collect();
    let mut students: Vec<Student> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (base, queries, pool, seeds) = (&base, &queries, &pool, &seeds);
                sc.spawn(move || {
                    seeds
                        .iter()
                        .skip(t)
                        .step_by(threads)
                        .flat_map(|&s| {
                            one_seed(s, teacher, base, base_tokens, queries, pool, base_key, o)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    students.sort_by(|a, b| {
        (a.rewritten, a.seed)
            .cmp(&(b.rewritten, b.seed))
            .then(a.level.total_cmp(&b.level))
    });
    RadioReport {
        seeds: o.seeds,
        prompts: queries.len(),
        answer_tokens: o.answer_tokens,
        students,
    }
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        // The geometric mean of the middle two: p-values live on a log scale.
        ((v[m - 1].max(1e-300).ln() + v[m].max(1e-300).ln()) * 0.5).exp()
    }
}

/// One row of the summary: a level, plain or rewritten.
struct LevelSummary {
    level: f64,
    rewritten: bool,
    students: usize,
    median_p: f64,
    worst_p: f64,
    best_p: f64,
    at_1e6: usize,
    median_p_unfiltered: f64,
    median_p_narrow: f64,
    median_tuples: f64,
    marked_tokens: f64,
}

impl RadioReport {
    fn levels(&self) -> Vec<LevelSummary> {
        let runs = LEVELS
            .iter()
            .map(|&l| (l, false))
            .chain(REWRITTEN_LEVELS.iter().map(|&l| (l, true)));
        runs.map(|(level, rewritten)| {
            let s: Vec<&Student> = self
                .students
                .iter()
                .filter(|s| s.rewritten == rewritten && (s.level - level).abs() < 1e-12)
                .collect();
            let mut p: Vec<f64> = s.iter().map(|s| s.filtered_p).collect();
            let mut u: Vec<f64> = s.iter().map(|s| s.all_p).collect();
            let mut nw: Vec<f64> = s.iter().map(|s| s.narrow_p).collect();
            let mut t: Vec<usize> = s.iter().map(|s| s.filtered_tuples).collect();
            t.sort_unstable();
            LevelSummary {
                level,
                rewritten,
                students: s.len(),
                worst_p: p.iter().copied().fold(0.0, f64::max),
                best_p: p.iter().copied().fold(1.0, f64::min),
                at_1e6: p.iter().filter(|&&x| x <= 1e-6).count(),
                median_p: median(&mut p),
                median_p_unfiltered: median(&mut u),
                median_p_narrow: median(&mut nw),
                median_tuples: t.get(t.len() / 2).copied().unwrap_or(0) as f64,
                marked_tokens: s.iter().map(|s| s.marked_tokens as f64).sum::<f64>()
                    / s.len().max(1) as f64,
            }
        })
        .collect()
    }

    /// The controls: (never-trained students under the key, every student
    /// under keys that never marked anything).
    fn controls(&self) -> (Vec<f64>, Vec<f64>) {
        let never: Vec<f64> = self
            .students
            .iter()
            .filter(|s| s.level == 0.0 && !s.rewritten)
            .map(|s| s.filtered_p)
            .collect();
        let wrong: Vec<f64> = self
            .students
            .iter()
            .flat_map(|s| s.controls.iter().copied())
            .collect();
        (never, wrong)
    }

    pub(crate) fn to_json(&self) -> Value {
        let (never, wrong) = self.controls();
        let (dn, pn) = distillguard_watermark::stats::ks_uniform(&never);
        let (dw, pw) = distillguard_watermark::stats::ks_uniform(&wrong);
        json!({
            "method": "KGW γ0.25 δ2 h1; students are interpolated trigram models trained on real answers plus the stated share of watermarked teacher answers; each answers the same held-out prompts; tuples de-duplicated across answers, prompt windows excluded; the primary test keeps only tuples whose two preceding tokens occur together in our watermarked text (the filter of Sander et al., 2024, on the student's context); also reported: the filter on the scheme's one-token window, and no filter",
            "seed_base": SEED_BASE,
            "seeds": self.seeds,
            "prompts_per_student": self.prompts,
            "tokens_per_answer": self.answer_tokens,
            "rewrite": {"share": REWRITE_RATE, "by": "the teacher under another key, spans of 8 tokens"},
            "levels": self.levels().iter().map(|l| json!({
                "contamination": l.level, "rewritten": l.rewritten, "students": l.students,
                "watermarked_tokens_mean": l.marked_tokens, "tuples_scored_median": l.median_tuples,
                "p_median": l.median_p, "p_worst": l.worst_p, "p_best": l.best_p,
                "students_at_p_1e-6": l.at_1e6, "p_median_unfiltered": l.median_p_unfiltered,
                "p_median_filter_one_token": l.median_p_narrow,
            })).collect::<Vec<_>>(),
            "controls": {
                "never_trained": {"p_values": never, "ks_d": dn, "ks_p": pn},
                "wrong_keys": {"keys_per_student": CONTROL_KEYS, "count": wrong.len(), "ks_d": dw, "ks_p": pw,
                    "histogram_10_bins": histogram(&wrong)},
            },
            "students": self.students.iter().map(|s| json!({
                "seed": s.seed, "contamination": s.level, "rewritten": s.rewritten,
                "training_tokens": s.trained_tokens, "watermarked_tokens": s.marked_tokens,
                "tuples_filtered": s.filtered_tuples, "p_filtered": s.filtered_p,
                "tuples_unfiltered": s.all_tuples, "p_unfiltered": s.all_p,
                "p_filter_one_token": s.narrow_p,
                "control_p": s.controls,
            })).collect::<Vec<_>>(),
        })
    }

    pub(crate) fn write_table(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(
            out,
            "Radioactivity ({} seeds per level; each student answers {} prompts, {} tokens each; KGW h1; p = filtered on two-token windows of our watermarked text):",
            self.seeds, self.prompts, self.answer_tokens
        )?;
        writeln!(
            out,
            "{:>14}{:>10}{:>14}{:>12}{:>12}{:>12}{:>10}{:>14}{:>14}",
            "contamination",
            "rewritten",
            "tuples (med)",
            "p median",
            "p worst",
            "p best",
            "≤ 1e-6",
            "1-token filter",
            "unfiltered"
        )?;
        for l in self.levels() {
            writeln!(
                out,
                "{:>13.1}%{:>10}{:>14.0}{:>12.2e}{:>12.2e}{:>12.2e}{:>10}{:>14.2e}{:>14.2e}",
                l.level * 100.0,
                if l.rewritten { "50%" } else { "" },
                l.median_tuples,
                l.median_p,
                l.worst_p,
                l.best_p,
                format!("{}/{}", l.at_1e6, l.students),
                l.median_p_narrow,
                l.median_p_unfiltered
            )?;
        }
        let (never, wrong) = self.controls();
        let (dn, pn) = distillguard_watermark::stats::ks_uniform(&never);
        let (dw, pw) = distillguard_watermark::stats::ks_uniform(&wrong);
        writeln!(
            out,
            "Controls: never-trained students under the key: {} p-values, KS D = {dn:.3}, p = {pn:.3}; wrong keys: {} p-values, KS D = {dw:.3}, p = {pw:.3}; histogram (10 bins) {:?}",
            never.len(),
            wrong.len(),
            histogram(&wrong)
        )
    }

    pub(crate) fn write_plots(&self, dir: &std::path::Path) -> anyhow::Result<()> {
        use crate::svg::{Chart, Series, line_chart};
        let minus_log = |p: f64| -(p.max(1e-300)).log10();
        let levels = self.levels();
        let series = |name: &str, rewritten: bool, f: &dyn Fn(&LevelSummary) -> f64| Series {
            name: name.to_string(),
            points: levels
                .iter()
                .filter(|l| l.rewritten == rewritten)
                .map(|l| (l.level * 100.0, minus_log(f(l))))
                .collect(),
        };
        let s = [
            series("median over seeds", false, &|l| l.median_p),
            series("worst seed", false, &|l| l.worst_p),
            series("median, one-token filter", false, &|l| l.median_p_narrow),
            series("median, no filter", false, &|l| l.median_p_unfiltered),
            series("median, half rewritten", true, &|l| l.median_p),
        ];
        let title = format!(
            "Radioactivity: students trained on watermarked answers ({} seeds)",
            self.seeds
        );
        let chart = Chart {
            title: &title,
            x_label: "watermarked share of the student's training text (%)",
            y_label: "−log10 p",
            x_log: false,
            y_log: false,
            hlines: vec![(6.0, "p = 1e-6".into())],
            diagonal: false,
        };
        std::fs::write(dir.join("radioactivity.svg"), line_chart(&chart, &s))?;
        let (never, wrong) = self.controls();
        let density = |v: &[f64]| -> Vec<(f64, f64)> {
            let h = histogram(v);
            let per_bin = v.len().max(1) as f64 / 10.0;
            h.iter()
                .enumerate()
                .map(|(i, &c)| (i as f64 / 10.0 + 0.05, c as f64 / per_bin))
                .collect()
        };
        let s = [
            Series {
                name: format!("wrong keys ({} tests)", wrong.len()),
                points: density(&wrong),
            },
            Series {
                name: format!("never-trained students ({})", never.len()),
                points: density(&never),
            },
        ];
        let chart = Chart {
            title: "Radioactivity controls: p-value histogram (density; uniform = 1)",
            x_label: "p-value (bin centre)",
            y_label: "density",
            x_log: false,
            y_log: false,
            hlines: vec![(1.0, "uniform".into())],
            diagonal: false,
        };
        std::fs::write(
            dir.join("radioactivity-controls.svg"),
            line_chart(&chart, &s),
        )?;
        Ok(())
    }
}

/// Counts of `p` in ten bins of 0.1.
fn histogram(p: &[f64]) -> [usize; 10] {
    let mut h = [0usize; 10];
    for &x in p {
        h[((x * 10.0) as usize).min(9)] += 1;
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_p_values_are_taken_on_a_log_scale() {
        assert_eq!(median(&mut [0.3, 1e-9, 0.01]), 0.01);
        let m = median(&mut [1e-8, 1e-4]);
        assert!((m / 1e-6 - 1.0).abs() < 1e-9, "{m}");
        assert_eq!(
            histogram(&[0.0, 0.05, 0.95, 1.0]),
            [2, 0, 0, 0, 0, 0, 0, 0, 0, 2]
        );
    }
}
