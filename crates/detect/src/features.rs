//! The features the score reads, in order, and their direction: the
//! account profile's own ([`account::FEATURES`]), then the engine's
//! (templates shared across accounts, sign-up and origin). Read by the
//! engine, which computes them, and by fitting, which sizes its samples.

use crate::signals::account;

/// Features the engine adds to the account profile's own: templates shared
/// across accounts, and signup and origin ([`account::ORIGIN_FEATURES`]).
pub(crate) const ENGINE_FEATURES: [&str; 7] = [
    "shared_template",
    "shared_system_prompt",
    "new_account",
    "entry_programme",
    "unverified",
    "datacenter",
    "country_mismatch",
];

/// Number of base features (each in [0, 1], oriented towards harvesting).
pub const NB: usize = account::FEATURES.len() + ENGINE_FEATURES.len();

/// The base features, in order: the profile's behavioural features, then
/// the engine's.
pub const BASE_FEATURES: [&str; NB] = {
    let mut out = [""; NB];
    let mut i = 0;
    while i < account::FEATURES.len() {
        out[i] = account::FEATURES[i];
        i += 1;
    }
    let mut j = 0;
    while j < ENGINE_FEATURES.len() {
        out[i + j] = ENGINE_FEATURES[j];
        j += 1;
    }
    out
};

/// Number of features the score reads.
pub const NF: usize = NB;

/// The features the score reads, in order.
pub const FEATURES: [&str; NF] = BASE_FEATURES;

/// Every feature is oriented so that more of it looks more like harvesting,
/// and the score never decreases when one increases (monotone trees,
/// [`crate::trees`]): nothing rewards an account for a behaviour an
/// attacker can adopt for free. `docs/detection.md` argues each direction.
pub const NON_NEGATIVE: [&str; NF] = FEATURES;
