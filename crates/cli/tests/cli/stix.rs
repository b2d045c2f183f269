//! STIX 2.1 export of campaigns and exfiltration sightings, checked by the
//! OASIS validator, and imported back as intel.

use std::process::Command;

use crate::support::*;

#[test]
fn campaigns_export_as_valid_stix_and_come_back_as_intel() {
    let d = Dir::new("stix");
    let out = simulate_small(&d, "s", 31);
    let report = analyze_dir(&out, &out.join("events.jsonl.gz"));
    let rpath = d.path("report.json");
    write(&rpath, &report.to_string());
    let bpath = d.path("bundle.json");
    ok(&[
        "export",
        "stix",
        rpath.to_str().unwrap(),
        "--out",
        bpath.to_str().unwrap(),
        "--producer",
        "Example AI",
    ]);
    // Deterministic: the same report gives the same bytes.
    let again = ok(&[
        "export",
        "stix",
        rpath.to_str().unwrap(),
        "--producer",
        "Example AI",
    ]);
    assert_eq!(again, std::fs::read_to_string(&bpath).unwrap());
    let bundle: serde_json::Value = serde_json::from_str(&again).unwrap();
    let objects = bundle["objects"].as_array().unwrap();
    let count = |t: &str| objects.iter().filter(|o| o["type"] == t).count();
    let campaigns = report["campaigns"].as_array().unwrap().len();
    assert!(campaigns >= 4);
    assert_eq!(count("campaign"), campaigns);
    assert!(count("indicator") >= campaigns && count("relationship") > campaigns);
    assert!(count("infrastructure") >= 1 && count("sighting") >= 1);
    assert_eq!(count("extension-definition"), 1);
    // Salted fingerprints only: no raw payment fingerprint, no prompt text.
    assert!(!again.contains("\"pm_") && !again.contains("step by step"));
    // The OASIS validator accepts it.
    let v = std::process::Command::new(stix2_validator())
        .arg(&bpath)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&v.stdout);
    assert!(
        v.status.success() && text.contains("STIX JSON: Valid"),
        "{text}"
    );
    // A partner imports it: the campaign's accounts match, with a reason
    // that names the indicator.
    let with_intel: serde_json::Value = serde_json::from_str(&ok(&[
        "analyze",
        out.join("events.jsonl.gz").to_str().unwrap(),
        "--intel",
        bpath.to_str().unwrap(),
        "--format",
        "json",
        "--quiet",
    ]))
    .unwrap();
    let members: usize = report["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["accounts"].as_array().unwrap().len())
        .sum();
    let matched: Vec<&serde_json::Value> = with_intel["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| {
            a["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["signal"] == "intel")
        })
        .collect();
    assert!(
        matched.len() * 10 >= members * 9,
        "{} of {members}",
        matched.len()
    );
    let detail = matched[0]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["signal"] == "intel")
        .unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        detail.contains("indicator--") || detail.contains("campaign--"),
        "{detail}"
    );
    // A broken bundle is a clear error.
    write(&d.path("bad.json"), "{\"type\":\"indicator\"}");
    let bad = dg(&[
        "analyze",
        out.join("events.jsonl.gz").to_str().unwrap(),
        "--intel",
        d.path("bad.json").to_str().unwrap(),
        "--quiet",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a STIX bundle"));
}

/// Flagged principals export as STIX 2.1 sightings that the OASIS
/// validator accepts, byte for byte the same twice, without the
/// organisation's own principals or bucket names.
#[test]
fn an_exfiltration_report_exports_as_valid_stix_sightings() {
    let d = Dir::new("exfil-stix");
    let report = exfil_report(&d);
    let a = ok(&[
        "export",
        "stix",
        report.to_str().unwrap(),
        "--producer",
        "Example AI",
    ]);
    let b = ok(&[
        "export",
        "stix",
        report.to_str().unwrap(),
        "--producer",
        "Example AI",
    ]);
    assert_eq!(a, b);
    let v: serde_json::Value = serde_json::from_str(&a).unwrap();
    let objects = v["objects"].as_array().unwrap();
    let sightings = objects.iter().filter(|o| o["type"] == "sighting").count();
    let indicators = objects.iter().filter(|o| o["type"] == "indicator").count();
    assert!(sightings >= 1 && sightings == indicators, "{a}");
    assert!(
        !a.contains("arn:aws") && !a.contains("acme-checkpoints"),
        "{a}"
    );
    let path = d.path("bundle.json");
    std::fs::write(&path, &a).unwrap();
    // Installed on first use (and by .ci/run beforehand).
    let out = Command::new(stix2_validator()).arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("STIX JSON: Valid"),
        "{text}"
    );
}
