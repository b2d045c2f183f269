/*!
Detection: from normalised events to reasons a human can check.

- [`signals::request`]: what one request says about its sender —
  reasoning elicitation, capability targeted, harvesting parameters,
  conversation shape, template fingerprint. Each signal is a small unit
  with its own documentation (what it measures, why attackers show it,
  its cost) and tests with honest and attack examples.

- [`signals::account`]: per-account fingerprints in fixed memory (rates,
  concentrations, timing, pivot, signup and origin risk).
- [`engine`]: folds per-request records in time order into account and
  stream profiles, scores them and keeps verdicts, `flagged_at` and reasons.
- [`reorder`]: the bounded buffer that puts a nearly sorted stream into the
  engine's total order without sorting the whole log.
- [`trees`]: the score: monotone boosted trees (increasing in every
  feature), with per-feature contributions for reasons.
- [`fit`]: samples, and thresholds from the tail of honest scores.
- [`redact`]: redacted prompt samples for flagged accounts.
*/

pub mod engine;
pub mod features;
pub mod fit;
pub mod redact;
pub mod reorder;
pub mod signals;
pub mod trees;
