//! The `cafe24-sim` binary: help, bad arguments, and serving on the port it prints.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_cafe24-sim");

#[test]
fn help_lists_the_options() {
    let out = std::process::Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for opt in ["--port", "--capacity", "--leak-per-sec", "--manual-clock", "--webhook-url"] {
        assert!(text.contains(opt), "--help lacks {opt}");
    }
}

#[test]
fn malformed_arguments_are_refused_with_a_message() {
    let out = std::process::Command::new(BIN).args(["--capacity", "forty"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--capacity"));
}

#[tokio::test]
async fn serves_on_the_printed_address_with_the_configured_limits() {
    let mut child = tokio::process::Command::new(BIN)
        .args(["--port", "0", "--capacity", "3", "--manual-clock", "1795305600000"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = lines.next_line().await.unwrap().unwrap();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    let http = reqwest::Client::new();
    let tok: serde_json::Value = http
        .post(format!("{base}/sim/tokens"))
        .json(&serde_json::json!({"mall": "cli"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let t = tok["access_token"].as_str().unwrap();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = http.get(format!("{base}/cli/api/v2/admin/products/1")).bearer_auth(t).send().await.unwrap();
        statuses.push((r.status().as_u16(), r.headers()["x-api-call-limit"].to_str().unwrap().to_owned()));
    }
    assert_eq!(statuses, vec![(200, "1/3".into()), (200, "2/3".into()), (200, "3/3".into()), (429, "3/3".into())]);
    child.kill().await.unwrap();
}
