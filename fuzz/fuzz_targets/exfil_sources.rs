//! Storage audit logs (CloudTrail files and records, GCP audit entries,
//! the generic form) and asset maps: any bytes give accesses, a config or
//! a typed error, never a panic; the detector takes whatever parses.
#![no_main]
use distillguard_exfil::{DetectConfig, Detector, ExfilConfig, SourceFormat, source};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut det = Detector::new(Default::default(), DetectConfig::default());
    for format in [
        SourceFormat::Auto,
        SourceFormat::CloudTrail,
        SourceFormat::Gcp,
        SourceFormat::Generic,
    ] {
        if let Ok(accesses) = source::parse_line(format, text) {
            for a in &accesses {
                det.observe(a);
            }
        }
    }
    let _ = det.report();
    let _ = ExfilConfig::from_toml(text);
});
