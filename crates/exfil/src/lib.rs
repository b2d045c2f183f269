/*!
Guarding the model's own data: exfiltration of weights, checkpoints and
training data from cloud storage, by insiders or with stolen credentials.

Data flows one way, as for API traffic:
[`source`] (CloudTrail, GCP audit logs, the generic form) → [`Access`] →
a bounded reorder buffer → the [`detect::Detector`] (per-principal
[`baseline`]s, named signals) → a [`detect::Report`] of principals,
alerts, `flagged_at` and reasons. The [`assets`] map says what is
sensitive and what is the organisation's own.
*/

pub mod assets;
pub mod baseline;
pub mod detect;
pub mod eval;
pub mod event;
pub mod hr;
pub mod source;

use std::path::Path;

use distillguard_core::reorder::{Reorder, Timed};
use distillguard_core::{LineError, ReadError, ReadStats};

pub use assets::{AssetError, AssetFile, AssetMap};
pub use detect::{DetectConfig, Detector, Report};
pub use event::{Access, Action};
pub use source::SourceFormat;

/// The asset map file: the map and the `[detect]` settings.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExfilConfig {
    #[serde(default)]
    pub org: assets::Org,
    #[serde(default, rename = "asset")]
    pub assets: Vec<assets::Asset>,
    #[serde(default, rename = "network")]
    pub networks: Vec<assets::Network>,
    #[serde(default, rename = "departure")]
    pub departures: Vec<assets::Departure>,
    #[serde(default, rename = "team")]
    pub teams: Vec<assets::Team>,
    #[serde(default)]
    pub detect: DetectConfig,
}

impl ExfilConfig {
    /// Parses and validates the asset map file.
    pub fn from_toml(text: &str) -> Result<(AssetMap, DetectConfig), AssetError> {
        let c: ExfilConfig = toml::from_str(text).map_err(|e| AssetError::Toml(e.to_string()))?;
        c.detect
            .validate()
            .map_err(|distillguard_core::Invalid(reason)| AssetError::Invalid {
                field: "detect".into(),
                reason,
            })?;
        let file = AssetFile {
            org: c.org,
            assets: c.assets,
            networks: c.networks,
            departures: c.departures,
            teams: c.teams,
        };
        Ok((AssetMap::new(file)?, c.detect))
    }
}

/// Accesses are put in time order by the shared bounded buffer, keyed by
/// time and principal.
impl Timed for Access {
    fn order_key(&self) -> (i64, u64) {
        (self.ts, detect::hash_of(&self.principal))
    }
}

/// Reads every source (gz, `-` for stdin; on all cores, in file order),
/// and runs the detector over the accesses in time order. Bad lines go to
/// `bad` with their place and lose only themselves; `bad` returning an
/// error stops the read (strict mode).
pub fn analyze(
    inputs: &[&Path],
    format: SourceFormat,
    map: AssetMap,
    cfg: DetectConfig,
    workers: usize,
    mut bad: impl FnMut(LineError) -> Result<(), ReadError>,
) -> Result<(Report, ReadStats), ReadError> {
    let window = i64::from(cfg.reorder_secs) * 1000;
    let mut det = Detector::new(map, cfg);
    let mut reorder = Reorder::new(window);
    // A record later than the window is judged at once, out of order, and
    // counted.
    let mut late = 0u64;
    let mut total = ReadStats::default();
    for path in inputs {
        let stats = distillguard_core::parallel::par_read(
            path,
            workers,
            |line| source::parse_line(format, line),
            |item| {
                match item {
                    Ok(accesses) => {
                        for a in accesses {
                            if reorder.check(&a).is_err() {
                                late += 1;
                                det.observe(&a);
                            } else {
                                let _ = reorder.push(a, |a| det.observe(&a));
                            }
                        }
                    }
                    Err(e) => bad(e)?,
                }
                Ok(())
            },
        )?;
        total.lines += stats.lines;
        total.blank += stats.blank;
        total.accepted += stats.accepted;
        total.rejected += stats.rejected;
        total.bytes += stats.bytes;
    }
    reorder.finish(|a| det.observe(&a));
    let mut report = det.report();
    report.stats.late = late;
    Ok((report, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_file_holds_the_map_and_the_detector_settings() {
        let (map, cfg) = ExfilConfig::from_toml(
            "[org]\naccounts = [\"1\"]\n[[asset]]\nbucket = \"w\"\nkind = \"weights\"\nsensitivity = \"critical\"\n[detect]\nlearning_days = 3\n",
        )
        .unwrap();
        assert_eq!(cfg.learning_days.get(), 3);
        assert!(map.asset("w", "x").is_some());
        let e = ExfilConfig::from_toml("[detect]\nlearning_days = 0\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("learning_days") || e.contains("nonzero") || e.contains("zero"),
            "{e}"
        );
        let e = ExfilConfig::from_toml("[detect]\ndrip_factor = 0.5\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("drip_factor"), "{e}");
    }
}
