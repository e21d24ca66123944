//! `siskin demo` as a new user runs it: a good release promoted, a bad one rolled back by fast
//! failure, a summary, exit code 0; `--json` prints the summary as JSON.

#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn demo_promotes_the_good_release_and_rolls_back_the_bad_one() {
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_siskin"))
        .args(["demo", "--json"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "exit {:?}\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(120),
        "the demo takes under 2 minutes"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(summary["ok"], true);
    let releases = summary["releases"].as_array().unwrap();
    assert_eq!(releases[0]["outcome"], "Succeeded");
    assert_eq!(
        releases[0]["failed_requests"], 0,
        "a good release fails no request"
    );
    assert!(releases[0]["canary_requests"].as_u64().unwrap() > 100);
    assert_eq!(releases[1]["outcome"], "Failed");
    assert!(
        releases[1]["seconds"].as_f64().unwrap() < 25.0,
        "fast failure: {}",
        releases[1]
    );
}

/// Not on a terminal, the live view degrades to plain lines: progress with the weight and both
/// backends' success rate and p99, the checks with their verdicts, the events, then the table.
#[test]
fn demo_prints_plain_progress_lines_when_not_on_a_terminal() {
    let out = Command::new(env!("CARGO_BIN_EXE_siskin"))
        .arg("demo")
        .env("TERM", "dumb")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    assert!(!text.contains('\x1b'), "no escape codes in plain mode");
    for needle in [
        "release 2.0.0 (good), fast failure on",
        "Progressing  primary  75% [",
        "Normal  NewRevision: New revision detected!",
        "Normal  Promoted: Promotion completed!",
        "Warning RolledBack: Rolling back checkout critical check failed: metric request-success-rate",
        "| release | fast failure | outcome | time | requests to the canary | failed requests |",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.contains("checks: request-success-rate") && l.contains("fail")),
        "the failing check and its verdict:\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("primary 100.0% p99") && l.contains("canary ")),
        "live success rate and p99 per backend:\n{text}"
    );
}
