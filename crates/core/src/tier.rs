/*!
API tiers and their published-style limits.

Shared by the rate-limit baseline (which enforces them) and the detectors
(which judge an account's volume against its tier's daily allowance).
*/

use serde::Serialize;

/// Limits of one tier.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Limits {
    pub rpm: u32,
    /// Tokens per minute (prompt and completion together).
    pub tpm: u64,
    /// `None`: no daily cap.
    pub rpd: Option<u32>,
}

/// Tier → limits, resembling published API tiers.
pub const TIER_LIMITS: &[(&str, Limits)] = &[
    (
        "free",
        Limits {
            rpm: 20,
            tpm: 40_000,
            rpd: Some(500),
        },
    ),
    (
        "tier1",
        Limits {
            rpm: 60,
            tpm: 200_000,
            rpd: Some(5_000),
        },
    ),
    (
        "tier2",
        Limits {
            rpm: 300,
            tpm: 2_000_000,
            rpd: Some(20_000),
        },
    ),
    (
        "tier3",
        Limits {
            rpm: 1_000,
            tpm: 4_000_000,
            rpd: Some(100_000),
        },
    ),
    (
        "tier4",
        Limits {
            rpm: 3_000,
            tpm: 10_000_000,
            rpd: Some(500_000),
        },
    ),
    (
        "enterprise",
        Limits {
            rpm: 10_000,
            tpm: 30_000_000,
            rpd: None,
        },
    ),
];

/// Limits of a tier name; unknown or missing tiers get `tier1`'s.
pub fn limits_of(tier: Option<&str>) -> Limits {
    let name = tier.unwrap_or("tier1");
    TIER_LIMITS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, l)| *l)
        .unwrap_or(TIER_LIMITS[1].1)
}
