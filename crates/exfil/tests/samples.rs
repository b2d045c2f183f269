#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: panics are failures
//! The sources on hand-written samples in the clouds' documented formats
//! (`tests/data/README.md` says what each follows), and the detector on
//! them: a copy of checkpoints into another account's bucket is flagged
//! with a reason, a bucket made public too, a refused read moves nothing.

use std::path::{Path, PathBuf};

use distillguard_exfil::detect::Signal;
use distillguard_exfil::{Action, ExfilConfig, SourceFormat};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn read(name: &str, format: SourceFormat) -> Vec<distillguard_exfil::Access> {
    let text = std::fs::read_to_string(data(name)).unwrap();
    text.lines()
        .flat_map(|l| distillguard_exfil::source::parse_line(format, l).unwrap())
        .collect()
}

#[test]
fn a_delivered_cloudtrail_file_maps_list_get_and_copy() {
    let a = read("cloudtrail-delivered.json", SourceFormat::CloudTrail);
    assert_eq!(a.len(), 3);
    let (list, get, copy) = (&a[0], &a[1], &a[2]);
    assert_eq!(list.action, Action::List);
    assert_eq!(list.object, "llm/run-7/");
    assert_eq!(get.action, Action::Get);
    assert_eq!(get.principal, "arn:aws:iam::111122223333:user/alice");
    assert_eq!(get.credential, "AKIAIOSFODNN7EXAMPLE");
    assert_eq!(get.bytes_out, 2_147_483_648);
    assert_eq!(get.source_ip, "192.0.2.10");
    assert_eq!(
        get.ts,
        distillguard_core::Timestamp::parse("2026-03-02T14:05:11Z")
            .unwrap()
            .0
    );
    // An assumed role is judged as its role; the copy names its source
    // and the destination's owner.
    assert_eq!(
        copy.principal,
        "arn:aws:iam::111122223333:role/research-sync"
    );
    assert_eq!(copy.principal_type, "AssumedRole");
    assert_eq!(copy.action, Action::Copy);
    assert_eq!(copy.copy_source_bucket, "amzn-s3-demo-checkpoints");
    assert_eq!(
        copy.copy_source_object,
        "llm/run-7/step-42000/shard-3.safetensors"
    );
    assert_eq!(copy.bucket, "amzn-s3-demo-personal-archive");
    assert_eq!(copy.bucket_account, "444455556666");
    assert_eq!(copy.vpc_endpoint, "vpce-1a2b3c4d");
    // The same records are read by format detection.
    assert_eq!(read("cloudtrail-delivered.json", SourceFormat::Auto), a);
}

#[test]
fn records_one_per_line_keep_errors_and_management_calls() {
    let a = read("cloudtrail-records.jsonl", SourceFormat::Auto);
    assert_eq!(a.len(), 2);
    assert_eq!(a[0].error, "AccessDenied");
    assert_eq!(a[1].event_name, "PutBucketPolicy");
    assert_eq!(a[1].action, Action::Other);
}

#[test]
fn gcp_audit_entries_map_principal_method_and_resource() {
    let a = read("gcp-audit.jsonl", SourceFormat::Auto);
    assert_eq!(a.len(), 2);
    assert_eq!(a[0].principal, "trainer@acme-ml.iam.gserviceaccount.com");
    assert_eq!(a[0].principal_type, "serviceAccount");
    assert_eq!(a[0].action, Action::Get);
    assert_eq!(
        (a[0].bucket.as_str(), a[0].object.as_str()),
        ("acme-weights", "release/model-00001.safetensors")
    );
    assert_eq!(a[0].source_ip, "203.0.113.45");
    assert!(a[0].credential.ends_with("keys/0123456789abcdef"));
    // GCP logs no byte counts: left empty, never invented.
    assert_eq!(a[0].bytes_out, 0);
    assert_eq!(a[1].action, Action::List);
    assert_eq!(a[1].error, "status 7");
}

#[test]
fn the_detector_flags_the_copy_out_and_the_public_policy_with_reasons() {
    let (map, cfg) = ExfilConfig::from_toml(
        r#"
[org]
accounts = ["111122223333"]
networks = ["192.0.2.0/24"]
vpc_endpoints = ["vpce-1a2b3c4d"]

[[asset]]
bucket = "amzn-s3-demo-checkpoints"
kind = "checkpoints"
sensitivity = "critical"

[[asset]]
bucket = "amzn-s3-demo-training-data"
kind = "training-data"
sensitivity = "high"
"#,
    )
    .unwrap();
    let inputs = [
        data("cloudtrail-delivered.json"),
        data("cloudtrail-records.jsonl"),
    ];
    let inputs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    let (report, stats) =
        distillguard_exfil::analyze(&inputs, SourceFormat::Auto, map, cfg, 2, |e| panic!("{e}"))
            .unwrap();
    assert_eq!(stats.rejected, 0);
    assert_eq!(report.stats.accesses, 5);
    assert_eq!(report.stats.errors, 1);
    let role = report
        .principals
        .iter()
        .find(|p| p.principal.ends_with("role/research-sync"))
        .expect("the copy's principal is reported");
    assert!(role.flagged_at.is_some());
    assert_eq!(role.alerts[0].signal, Signal::ExternalCopy);
    assert!(
        role.alerts[0].reason.contains("444455556666"),
        "{}",
        role.alerts[0].reason
    );
    let alice = report
        .principals
        .iter()
        .find(|p| p.principal.ends_with("user/alice"))
        .expect("alice is reported");
    assert_eq!(alice.alerts.len(), 1, "{:?}", alice.alerts);
    assert_eq!(alice.alerts[0].signal, Signal::Exposure);
    assert!(alice.flagged_at.is_some());
    // Her refused read of licensed data moved nothing.
    assert_eq!(alice.sensitive_bytes, 2_147_483_648);
}

#[test]
fn a_bad_line_names_its_place_and_loses_only_itself() {
    let dir = std::env::temp_dir().join(format!("exfil-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mixed.jsonl");
    let good = std::fs::read_to_string(data("cloudtrail-records.jsonl")).unwrap();
    let mut lines: Vec<&str> = good.lines().collect();
    lines.insert(
        1,
        r#"{"eventName":"GetObject","eventTime":"not a time","userIdentity":{"arn":"a"}}"#,
    );
    std::fs::write(&path, lines.join("\n")).unwrap();
    let mut bad = Vec::new();
    let (report, stats) = distillguard_exfil::analyze(
        &[path.as_path()],
        SourceFormat::Auto,
        distillguard_exfil::AssetMap::default(),
        distillguard_exfil::DetectConfig::default(),
        1,
        |e| {
            bad.push(e.to_string());
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(stats.rejected, 1);
    assert_eq!(report.stats.accesses, 2);
    assert_eq!(bad.len(), 1);
    assert!(
        bad[0].contains("mixed.jsonl:2") && bad[0].contains("eventTime"),
        "{}",
        bad[0]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
