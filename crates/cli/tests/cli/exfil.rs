//! `distillguard exfil`: simulate an organisation → analyze its CloudTrail
//! log → eval, through the binary, as a user runs it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A held-out seed (the detectors were written against seeds 1 and 2):
/// the copy out, the stolen key and the CI token are flagged before 10% of
/// their bytes left, the leaver before a third, and no benign principal
/// is flagged. The insider who downloads over their own home line at a
/// few times their usual day is caught late, by egress, or not at all in
/// a short world (docs/exfiltration.md): it must at least raise a signal.
#[test]
fn simulate_analyze_eval_flags_the_incidents_and_no_one_else() {
    let d = dir("exfil-org");
    let s = d.to_str().unwrap();
    let report = d.join("report.json");
    exfil_simulated(&d, "8", "0.4", &report);
    for f in ["cloudtrail.jsonl.gz", "assets.toml", "truth.jsonl"] {
        assert!(d.join(f).exists(), "{f}");
    }
    let out = ok(&[
        "exfil",
        "eval",
        "--report",
        report.to_str().unwrap(),
        "--truth",
        &format!("{s}/truth.jsonl"),
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["false_alerts"], 0, "{out}");
    let incidents = v["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 4, "{out}");
    for i in incidents {
        let kind = i["incident"].as_str().unwrap();
        let share = i["share_before_flag"].as_f64().unwrap();
        match kind {
            "insider-copy" | "stolen-key" | "ci-token" => {
                assert!(
                    i["flagged"].as_bool().unwrap() && share <= 0.10,
                    "{kind}: {i}"
                )
            }
            "departure" => assert!(i["flagged"].as_bool().unwrap() && share <= 0.34, "{i}"),
            _ => {
                // Late or missed: still in the report, with signals.
                let r: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
                let p = r["principals"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|p| p["principal"] == i["principal"]);
                assert!(
                    p.is_some_and(|p| p["alerts_total"].as_u64().unwrap() > 0),
                    "{i}"
                );
            }
        }
        if i["flagged"].as_bool().unwrap() {
            assert!(!i["reasons"].as_array().unwrap().is_empty(), "{i}");
        }
    }
    // The table a person reads names the flagged principals with reasons.
    let table = ok(&[
        "exfil",
        "analyze",
        &format!("{s}/cloudtrail.jsonl.gz"),
        "--assets",
        &format!("{s}/assets.toml"),
    ]);
    assert!(table.contains("principals flagged"), "{table}");
    for i in incidents.iter().filter(|i| i["flagged"].as_bool().unwrap()) {
        assert!(table.contains(i["principal"].as_str().unwrap()), "{table}");
    }
}

#[test]
fn a_bad_asset_map_is_refused_with_its_field() {
    let d = dir("exfil-badmap");
    let map = d.join("assets.toml");
    std::fs::write(&map, "[org]\nnetworks = [\"10.0.0.0/40\"]\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_distillguard"))
        .args(["exfil", "analyze", "-", "--assets", map.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("assets.toml") && err.contains("org.networks[0]"),
        "{err}"
    );
}

#[test]
fn strict_mode_stops_at_the_first_bad_line_with_exit_code_2() {
    let d = dir("exfil-strict");
    let map = d.join("assets.toml");
    std::fs::write(&map, "").unwrap();
    let log = d.join("log.jsonl");
    std::fs::write(&log, "{\"eventName\":\"GetObject\"}\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_distillguard"))
        .args([
            "exfil",
            "analyze",
            log.to_str().unwrap(),
            "--assets",
            map.to_str().unwrap(),
            "--strict",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("log.jsonl:1") && err.contains("eventTime"),
        "{err}"
    );
}

/// GCP audit entries, gzipped, on standard input, with `--source gcp`:
/// the reader guarantees hold for every source.
#[test]
fn gcp_entries_are_read_gzipped_from_standard_input() {
    use std::io::Write;
    let d = dir("exfil-gcp");
    let map = d.join("assets.toml");
    std::fs::write(
        &map,
        "[[asset]]\nbucket = \"acme-weights\"\nkind = \"weights\"\nsensitivity = \"critical\"\n",
    )
    .unwrap();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../exfil/tests/data/gcp-audit.jsonl");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&std::fs::read(sample).unwrap()).unwrap();
    let bytes = gz.finish().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_distillguard"))
        .args([
            "exfil",
            "analyze",
            "-",
            "--source",
            "gcp",
            "--assets",
            map.to_str().unwrap(),
            "--format",
            "json",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "exfiltration");
    assert_eq!(v["stats"]["accesses"], 2);
    assert_eq!(v["stats"]["sensitive_accesses"], 1);
    assert_eq!(v["stats"]["errors"], 1);
}

/// An HR feed given beside the asset map (`--hr`, CSV as HR systems
/// export it) carries the departure dates: an asset map without its
/// `[[departure]]` entries plus the simulated organisation's `hr.csv`
/// gives the same report as the asset map with them, and without either
/// the leaver's date is unknown. A bad feed line is named with its place.
#[test]
fn an_hr_feed_gives_the_departure_dates() {
    let d = dir("exfil-hr");
    let s = d.to_str().unwrap();
    ok(&[
        "exfil", "simulate", "--seed", "8", "--days", "45", "--scale", "0.3", "--out", s,
    ]);
    let full = std::fs::read_to_string(d.join("assets.toml")).unwrap();
    let cut = full
        .find("\n[[departure]]")
        .expect("the map has departures");
    std::fs::write(d.join("bare.toml"), &full[..cut]).unwrap();
    let hr = std::fs::read_to_string(d.join("hr.csv")).unwrap();
    assert!(hr.starts_with("employee,email,termination_date\n"), "{hr}");
    let leavers = hr.lines().count() - 1;
    assert!(leavers >= 1, "{hr}");
    let report = |assets: &str, hr: Option<&str>| -> serde_json::Value {
        let log = format!("{s}/cloudtrail.jsonl.gz");
        let assets = format!("{s}/{assets}");
        let mut args = vec![
            "exfil", "analyze", &log, "--assets", &assets, "--format", "json",
        ];
        if let Some(h) = hr {
            args.extend(["--hr", h]);
        }
        let mut v: serde_json::Value = serde_json::from_str(&ok(&args)).unwrap();
        v["stats"] = serde_json::Value::Null; // timings
        v
    };
    let hr_path = format!("{s}/hr.csv");
    let with_map = report("assets.toml", None);
    let with_feed = report("bare.toml", Some(&hr_path));
    let without = report("bare.toml", None);
    assert_eq!(with_map, with_feed);
    assert_ne!(with_map, without, "the departure dates changed nothing");
    let signals = |v: &serde_json::Value| v.to_string().matches("\"departure\"").count();
    assert!(signals(&with_feed) > 0 && signals(&without) == 0);
    // A feed line without a date.
    std::fs::write(d.join("bad.csv"), "email,last_day\nbob@acme.example,\n").unwrap();
    let bad = format!("{s}/bad.csv");
    let out = dg(&[
        "exfil",
        "analyze",
        &format!("{s}/cloudtrail.jsonl.gz"),
        "--assets",
        &format!("{s}/bare.toml"),
        "--hr",
        &bad,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.csv:2: last_day:"), "{err}");
}

/// An HR staff list's team column makes peer groups: a newcomer who reads
/// twenty times what the rest of its team reads raises a volume spike on
/// its first day, against the team; without the list it has no yardstick
/// for two weeks.
#[test]
fn an_hr_staff_list_makes_teams_that_judge_a_newcomer() {
    let d = dir("exfil-teams");
    let at = |day: u32, hour: u32| {
        // From Monday 2026-01-05.
        let (m, dd) = if 5 + day <= 31 {
            (1, 5 + day)
        } else {
            (2, day - 26)
        };
        format!("2026-{m:02}-{dd:02}T{hour:02}:00:00Z")
    };
    let line = |ts: &str, who: &str, bytes: u64| {
        format!(
            "{{\"ts\":\"{ts}\",\"principal\":\"{who}\",\"source_ip\":\"10.0.0.7\",\"event_name\":\"GetObject\",\"action\":\"get\",\"bucket\":\"ckpt\",\"object\":\"llm/step-1.pt\",\"bytes_out\":{bytes}}}\n"
        )
    };
    let mut log = String::new();
    for day in (0..28).filter(|d| d % 7 < 5) {
        for who in ["ana", "ben", "cy"] {
            for k in 0..8 {
                log.push_str(&line(&at(day, 9 + k), who, 1 << 28));
            }
        }
    }
    for k in 0..8 {
        log.push_str(&line(&at(28, 9 + k), "dee", 5 << 30));
    }
    std::fs::write(d.join("log.jsonl"), log).unwrap();
    std::fs::write(
        d.join("assets.toml"),
        "[[asset]]\nbucket = \"ckpt\"\nkind = \"checkpoints\"\nsensitivity = \"critical\"\n",
    )
    .unwrap();
    std::fs::write(
        d.join("staff.csv"),
        "email,department,end_date\nana,Research,\nben,Research,\ncy,Research,\ndee,Research,\n",
    )
    .unwrap();
    let s = d.to_str().unwrap();
    let report = |hr: bool| -> serde_json::Value {
        let (log, assets, staff) = (
            format!("{s}/log.jsonl"),
            format!("{s}/assets.toml"),
            format!("{s}/staff.csv"),
        );
        let mut args = vec![
            "exfil", "analyze", &log, "--assets", &assets, "--format", "json",
        ];
        if hr {
            args.extend(["--hr", &staff]);
        }
        serde_json::from_str(&ok(&args)).unwrap()
    };
    let alerts_of = |r: &serde_json::Value, who: &str| -> Vec<String> {
        r["principals"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["principal"] == who)
            .flat_map(|p| p["alerts"].as_array().unwrap().iter())
            .map(|a| format!("{}: {}", a["signal"], a["reason"]))
            .collect()
    };
    assert!(alerts_of(&report(false), "dee").is_empty());
    let with = report(true);
    let dee = alerts_of(&with, "dee");
    assert_eq!(dee.len(), 1, "{dee:?}");
    assert!(
        dee[0].starts_with("\"volume_spike\"") && dee[0].contains("team Research's usual"),
        "{dee:?}"
    );
    for who in ["ana", "ben", "cy"] {
        assert!(alerts_of(&with, who).is_empty(), "{who}");
    }
}

/// `exfil watch` follows a directory as CloudTrail files arrive: the flags
/// it prints as it goes, and the report it writes when stopped with
/// SIGTERM, are those of `exfil analyze` over the same files in the same
/// order; `--once` reads what is there and stops.
#[test]
fn exfil_watch_follows_a_directory_and_flags_as_files_arrive() {
    use std::io::{BufRead, Read};
    let d = dir("exfil-watch");
    let s = d.to_str().unwrap();
    ok(&[
        "exfil", "simulate", "--seed", "8", "--days", "45", "--scale", "0.4", "--out", s,
    ]);
    // The delivery lines, split into ten files as a sync would bring them.
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(d.join("cloudtrail.jsonl.gz")).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let staged = d.join("staged");
    let watched = d.join("watched");
    std::fs::create_dir_all(&staged).unwrap();
    std::fs::create_dir_all(watched.join("AWSLogs/111122223333")).unwrap();
    let chunk = lines.len().div_ceil(10);
    let mut files = Vec::new();
    for (i, part) in lines.chunks(chunk).enumerate() {
        let name = format!("111122223333_CloudTrail_us-east-1_part{i:02}.json");
        std::fs::write(staged.join(&name), part.join("\n") + "\n").unwrap();
        files.push(name);
    }
    let assets = format!("{s}/assets.toml");
    // What analyze says of the same files in the same order.
    let mut args: Vec<String> = vec!["exfil".into(), "analyze".into()];
    args.extend(files.iter().map(|f| staged.join(f).display().to_string()));
    args.extend([
        "--assets".into(),
        assets.clone(),
        "--format".into(),
        "json".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let reference: serde_json::Value = serde_json::from_str(&ok(&args)).unwrap();
    let flagged = |r: &serde_json::Value| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = r["principals"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| !p["flagged_at"].is_null())
            .map(|p| (p["principal"].to_string(), p["flagged_at"].to_string()))
            .collect();
        v.sort();
        v
    };
    assert!(!flagged(&reference).is_empty());
    // Half the files are there when the watch starts, half come later.
    let arrive = |range: std::ops::Range<usize>| {
        for f in &files[range] {
            std::fs::rename(staged.join(f), watched.join("AWSLogs/111122223333").join(f)).unwrap();
        }
    };
    arrive(0..5);
    let report = d.join("watch.json");
    let err_path = d.join("watch.err");
    let mut child = Command::new(env!("CARGO_BIN_EXE_distillguard"))
        .args([
            "exfil",
            "watch",
            watched.to_str().unwrap(),
            "--assets",
            &assets,
            "--poll-secs",
            "1",
            "--settle-secs",
            "0",
            "--out",
            report.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let printed = std::thread::spawn(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(&l.unwrap()).unwrap())
            .collect::<Vec<_>>()
    });
    let files_read = || {
        std::fs::read_to_string(&err_path)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("read "))
            .count()
    };
    let wait_for = |n: usize| {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while files_read() < n {
            assert!(
                std::time::Instant::now() < until,
                "{} of {n} files read",
                files_read()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    wait_for(5);
    arrive(5..10);
    wait_for(10);
    terminate(&child);
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&err_path).unwrap()
    );
    let printed = printed.join().unwrap();
    let watched_report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(flagged(&watched_report), flagged(&reference));
    assert_eq!(watched_report["principals"], reference["principals"]);
    // Each principal's first flag was printed as it happened, with reasons.
    let mut firsts: Vec<(String, String)> = printed
        .iter()
        .filter(|f| f["first"] == true)
        .map(|f| (f["principal"].to_string(), f["flagged_at"].to_string()))
        .collect();
    firsts.sort();
    assert_eq!(firsts, flagged(&reference));
    assert!(
        printed
            .iter()
            .all(|f| !f["reasons"].as_array().unwrap().is_empty())
    );
    // A backfill of the same directory with --once gives the same report.
    let once = d.join("once.json");
    let out = dg(&[
        "exfil",
        "watch",
        watched.to_str().unwrap(),
        "--assets",
        &assets,
        "--once",
        "--out",
        once.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let once: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&once).unwrap()).unwrap();
    assert_eq!(once["principals"], reference["principals"]);
    // Stopped and started again with --state: the second run reads the
    // first run's files again (the baselines) without printing their
    // flags twice, and ends where one run over everything would.
    let again = d.join("again");
    std::fs::create_dir_all(&again).unwrap();
    let from = watched.join("AWSLogs/111122223333");
    let state = d.join("watch-state.json");
    let run = |range: std::ops::Range<usize>| -> (Vec<serde_json::Value>, serde_json::Value) {
        for f in &files[range] {
            std::fs::copy(from.join(f), again.join(f)).unwrap();
        }
        let rep = d.join("again.json");
        let out = dg(&[
            "exfil",
            "watch",
            again.to_str().unwrap(),
            "--assets",
            &assets,
            "--once",
            "--state",
            state.to_str().unwrap(),
            "--out",
            rep.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let flags = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (
            flags,
            serde_json::from_str(&std::fs::read_to_string(&rep).unwrap()).unwrap(),
        )
    };
    let (first_run, _) = run(0..5);
    let (second_run, report) = run(5..10);
    assert_eq!(report["principals"], reference["principals"]);
    let mut both: Vec<(String, String)> = first_run
        .iter()
        .chain(second_run.iter())
        .filter(|f| f["first"] == true)
        .map(|f| (f["principal"].to_string(), f["flagged_at"].to_string()))
        .collect();
    both.sort();
    assert_eq!(both, flagged(&reference));
    let kept: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(kept["files"].as_array().unwrap().len(), 10);
    // Not a directory: a clear error.
    let out = dg(&["exfil", "watch", &assets, "--assets", &assets, "--once"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a directory"));
}
