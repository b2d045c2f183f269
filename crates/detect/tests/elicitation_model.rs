//! The learned elicitation classifier on what it was not trained on.
//!
//! The embedded model was trained on the simulator's training bank of
//! wordings against real prompts (`distillguard fit-elicitation`). Here it
//! meets the held bank (phrasings written separately, never trained on),
//! requests in every language attached to real questions of the embedded
//! ShareGPT sample, and the sample's own prompts as negatives. The bounds
//! are the measured rates less a margin (docs/detection.md has the full
//! held-out evaluation, including styles and languages left out of
//! training).

#![allow(clippy::unwrap_used, clippy::expect_used)]
use distillguard_detect::signals::request::learned::Model;
use distillguard_detect::signals::request::{Text, elicitation};
use distillguard_simulator::content::wording::{self, Bank, Style};
use distillguard_simulator::rng::Rng;

fn questions(c: &distillguard_simulator::Corpus) -> Vec<&str> {
    c.conversations
        .iter()
        .flat_map(|c| c.turns.iter().filter(|t| t.user).map(|t| &*t.text))
        .filter(|t| elicitation::detect(&Text::new(t), None).is_none())
        .collect()
}

#[test]
fn held_out_phrasings_are_found_and_real_prompts_are_not() {
    let corpus = distillguard_simulator::Corpus::embedded().unwrap();
    let qs = questions(&corpus);
    let m = Model::embedded();
    // Real prompts: at most 2% called elicitation (measured on the full
    // corpus's held-out part: 0.6%).
    let fp = qs.iter().filter(|q| m.elicits(q)).count();
    assert!(fp * 50 <= qs.len(), "{fp} of {}", qs.len());
    // The held bank: phrasings never trained on. A model that only knew
    // its training phrases would find almost none (measured: 41%).
    let held = wording::held_examples(&mut Rng::new(3), &qs);
    let found = held.iter().filter(|e| m.elicits(&e.text)).count();
    assert!(found * 4 >= held.len(), "{found} of {}", held.len());
    // Soft scores separate further: an account's mean sees a wording the
    // model half-knows.
    let mean =
        |xs: &[&str]| xs.iter().map(|x| m.probability(x) as f64).sum::<f64>() / xs.len() as f64;
    let held_texts: Vec<&str> = held.iter().map(|e| e.text.as_str()).collect();
    let (mh, mq) = (mean(&held_texts), mean(&qs));
    assert!(mh > 5.0 * mq, "held {mh:.3} vs real {mq:.3}");
}

#[test]
fn requests_in_every_language_and_place_are_found() {
    let corpus = distillguard_simulator::Corpus::embedded().unwrap();
    let qs = questions(&corpus);
    let m = Model::embedded();
    let mut r = Rng::new(11);
    for lang in wording::LANGS {
        let pairs: Vec<(&'static str, Style)> = wording::train_pairs()
            .into_iter()
            .filter(|p| p.0 == *lang)
            .collect();
        let ex = wording::positives(&mut r, &qs, &pairs, Bank::Train, 200);
        let found = ex.iter().filter(|e| m.elicits(&e.text)).count();
        assert!(
            found * 100 >= 90 * ex.len(),
            "{lang}: {found} of {}",
            ex.len()
        );
    }
    // Other instructions in the same places are not requests for reasoning.
    let neg = wording::negatives(&mut r, &[], 400);
    let fp = neg.iter().filter(|e| m.elicits(&e.text)).count();
    assert!(fp * 50 <= neg.len(), "{fp} of {}", neg.len());
}

/// A model trained without Italian still finds part of it (the n-grams
/// it shares with Spanish, Portuguese and French), and a model trained
/// without a style finds part of that style; languages with no relative
/// in training are found far less (docs/detection.md gives every rate).
#[test]
fn a_model_trained_without_a_language_or_a_style_still_finds_part_of_it() {
    use distillguard_detect::signals::request::learned::{self, TrainOpts};
    let corpus = distillguard_simulator::Corpus::embedded().unwrap();
    let qs = questions(&corpus);
    let (train_q, test_q) = qs.split_at(qs.len() * 3 / 4);
    let all = wording::train_pairs();
    let train_and_test = |keep: &dyn Fn(&(&'static str, Style)) -> bool| {
        let pairs: Vec<_> = all.iter().copied().filter(|p| keep(p)).collect();
        let held: Vec<_> = all.iter().copied().filter(|p| !keep(p)).collect();
        let r = &mut Rng::new(5);
        let mut ex = wording::positives(r, train_q, &pairs, Bank::Train, 6_000);
        ex.extend(wording::negatives(r, train_q, 9_000));
        let data: Vec<(Vec<u32>, bool, f32)> = ex
            .iter()
            .map(|e| {
                let mut f = Vec::new();
                learned::features(&e.text, &mut f);
                (f, e.label, 1.0)
            })
            .collect();
        let mut m = learned::train(&data, TrainOpts::default());
        m.threshold = 0.5;
        let test = wording::positives(r, test_q, &held, Bank::Train, 600);
        let tpr = test.iter().filter(|e| m.elicits(&e.text)).count() as f64 / test.len() as f64;
        let fpr = test_q.iter().filter(|q| m.elicits(q)).count() as f64 / test_q.len() as f64;
        (tpr, fpr)
    };
    let (tpr, fpr) = train_and_test(&|p| p.0 != "it");
    assert!(
        tpr >= 0.2 && fpr <= 0.03,
        "Italian held out: TPR {tpr:.2}, FPR {fpr:.3}"
    );
    let (tpr, fpr) = train_and_test(&|p| p.1 != Style::WalkThrough);
    assert!(
        tpr >= 0.3 && fpr <= 0.03,
        "walk-through held out: TPR {tpr:.2}, FPR {fpr:.3}"
    );
}
