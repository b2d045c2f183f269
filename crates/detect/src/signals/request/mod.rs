/*!
Per-request signals. Each is computed from one event alone.

| signal | module | measures |
|---|---|---|
| reasoning elicitation | [`elicitation`] | asks for step-by-step reasoning, or for a finished answer's reasoning to be reconstructed |
| capability targeted | [`capability`] | which skill the request exercises (coding, agentic, math, grading, …) |
| harvesting parameters | [`harvesting`] | log-probabilities, several samples, the maximum output length |
| conversation shape | [`shape`] | single-shot, or a real follow-up that refers to earlier answers |
| template fingerprint | [`template`] | the prompt's masked structure (MinHash bands) |
*/

pub mod capability;
pub mod elicitation;
pub mod harvesting;
pub mod learned;
pub mod phrases;
pub mod shape;
pub mod template;

pub use phrases::Text;
