/*!
The `analyze` configuration file (TOML).

Every field is optional: the defaults are the embedded weights, the
thresholds fitted with them, a 300 s reorder window and the linker's
defaults. Unknown keys are errors; values are validated after parsing.
*/

use distillguard_detect::engine::Thresholds;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeConfig {
    /// A weights file from `distillguard fit` (relative to the config file).
    #[serde(default)]
    pub weights: Option<String>,
    /// Overrides the thresholds that come with the weights.
    #[serde(default)]
    pub thresholds: Option<Thresholds>,
    /// How far out of time order a log's lines may be (seconds) and still be
    /// scored as a stream; beyond it, the log is sorted whole. Default 300.
    #[serde(default)]
    pub reorder_window_secs: Option<u32>,
    /// Campaign linking (`[link]`).
    #[serde(default)]
    pub link: Option<distillguard_link::Config>,
}

impl AnalyzeConfig {
    /// Checks every value; the error names the table.
    pub fn validate(&self) -> Result<(), distillguard_core::Invalid> {
        if let Some(t) = &self.thresholds {
            t.validate().map_err(|e| e.within("[thresholds]"))?;
        }
        if let Some(l) = &self.link {
            l.validate().map_err(|e| e.within("[link]"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_validates_and_rejects_unknown_fields() {
        let c: AnalyzeConfig = toml::from_str(
            "weights = \"w.json\"\nreorder_window_secs = 60\n[thresholds]\nmonitor = 0.5\nthrottle = 0.9\nblock = 0.99\nmin_requests = 8\n[link]\nlink_risk = 0.6\n",
        )
        .unwrap();
        assert_eq!(c.thresholds.unwrap().min_requests, 8);
        assert_eq!(c.link.unwrap().link_risk, 0.6);
        assert_eq!(c.link.unwrap().min_accounts, 3);
        assert!(c.validate().is_ok());
        assert!(toml::from_str::<AnalyzeConfig>("wieghts = \"x\"").is_err());
        let off: AnalyzeConfig = toml::from_str("[link]\nenabled = false").unwrap();
        assert!(!off.link.unwrap().enabled);
        assert_eq!(off.link.unwrap().min_fraction, 0.5);
        assert!(toml::from_str::<AnalyzeConfig>("[link]\nlink_rsk = 0.5").is_err());
        let bad: AnalyzeConfig = toml::from_str("[link]\nmin_accounts = 1").unwrap();
        assert!(bad.validate().unwrap_err().0.starts_with("[link]"));
        // Partial thresholds take defaults for the rest.
        let c: AnalyzeConfig = toml::from_str("[thresholds]\nthrottle = 0.95").unwrap();
        assert_eq!(
            c.thresholds.unwrap().min_requests,
            Thresholds::default().min_requests
        );
    }
}
