/*!
Detection: from normalised events to reasons a human can check.

- [`signals::request`]: what one request says about its sender —
  reasoning elicitation, capability targeted, harvesting parameters,
  conversation shape, template fingerprint. Each signal is a small unit
  with its own documentation (what it measures, why attackers show it,
  its cost) and tests with honest and attack examples.

Per-account aggregation over time, scoring and verdicts build on these
(see the detection-core issue).
*/

pub mod engine;
pub mod fit;
pub mod redact;
pub mod signals;
