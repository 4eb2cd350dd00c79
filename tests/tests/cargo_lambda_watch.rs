//! The real `webhook-ingest` binary, run by `cargo lambda watch` (Lambda's runtime API
//! emulator), receives a Function URL request and enqueues to moto.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::MessageSystemAttributeName as Sys;
use relay_tests::*;
use serde_json::Value;

/// Kills the whole process group (cargo-lambda, cargo run, the function) on drop.
///
/// Signals the group directly: Debian's procps `kill -TERM -<pgid>` has been seen to call
/// `kill(-1, SIGTERM)` — every process of the user — so never shell out to `kill` here.
struct Group(tokio::process::Child);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pid) = self.0.id().and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 1) {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

#[tokio::test]
async fn the_real_binary_under_cargo_lambda_watch_enqueues_a_function_url_request() {
    let env = TestEnv::new("watch").await.unwrap();
    let root = devstack::moto::workspace_root();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut vars = vec![
        format!("WEBHOOK_API_KEY={KEY}"),
        format!("AWS_ENDPOINT_URL={}", env.endpoint),
        "AWS_ACCESS_KEY_ID=testing".to_owned(),
        "AWS_SECRET_ACCESS_KEY=testing".to_owned(),
        "AWS_REGION=us-east-1".to_owned(),
    ];
    vars.extend(env.stack.env().into_iter().map(|(k, v)| format!("{k}={v}")));
    // The function's own stdout: the log lines Lambda would send to CloudWatch.
    let out_path = root.join(".local/cargo-lambda-watch.out");
    let mut cmd = tokio::process::Command::new(root.join(".venv/bin/cargo-lambda"));
    cmd.current_dir(&root)
        .args([
            "lambda",
            "watch",
            "--package",
            "webhook-ingest",
            "--bin",
            "webhook-ingest",
            "--ignore-changes",
            "--quiet",
        ])
        .args(["--invoke-address", "127.0.0.1", "--invoke-port", &port.to_string()])
        .arg("--env-var")
        .arg(vars.join(","))
        .env("PATH", format!("{}:{}", root.join(".venv/bin").display(), std::env::var("PATH").unwrap_or_default()))
        // Never the test's stdin: the watcher must not read (or steal) the caller's input.
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).map(Stdio::from).unwrap())
        .stderr(
            std::fs::File::create(root.join(".local/cargo-lambda-watch.log")).map(Stdio::from).unwrap_or(Stdio::null()),
        )
        // `cargo test` hands its jobserver to the test through these; a nested cargo that
        // inherits them would treat unrelated inherited descriptors as the jobserver pipe.
        .env_remove("CARGO_MAKEFLAGS")
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .process_group(0);
    let _watch = Group(cmd.spawn().expect("cargo-lambda is installed by scripts/ensure-tools.sh"));

    let url = format!("http://127.0.0.1:{port}/lambda-url/webhook-ingest/webhooks/cafe24");
    let http = reqwest::Client::new();
    let body = fixture("cafe24/90023-order-placed.json");
    let deadline = Instant::now() + Duration::from_secs(600);
    // The first request may wait for a build; retry until the emulator answers.
    let resp = loop {
        let r = http
            .post(&url)
            .header("X-API-Key", KEY)
            .header("X-Trace-ID", "watch-trace-1")
            .body(body.clone())
            .timeout(Duration::from_secs(300))
            .send()
            .await;
        match r {
            Ok(r) if r.status().as_u16() != 502 && r.status().as_u16() != 404 => break r,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(500)).await,
            other => panic!("cargo lambda watch never answered: {other:?}"),
        }
    };
    assert_eq!(resp.status().as_u16(), 200);
    let json: Value = resp.json().await.unwrap();
    assert_eq!(json["status"], "enqueued");

    let wrong = http.post(&url).header("X-API-Key", "nope").body(body.clone()).send().await.unwrap();
    assert_eq!(wrong.status().as_u16(), 401);

    let msgs = env.peek_all(&env.stack.inbox.url).await.unwrap();
    assert_eq!(msgs.len(), 1, "exactly the authenticated request was enqueued");
    assert_eq!(attr(&msgs[0], Sys::MessageGroupId).as_deref(), Some("cafe24bestshop"));
    assert_eq!(attr(&msgs[0], Sys::MessageDeduplicationId).as_deref(), Some("t-watch-trace-1"));

    // The real binary's log lines: the flat schema, the Lambda invocation id from the runtime,
    // the trace id, an EMF document — and never the key or the sample's personal data.
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines: Vec<Value> = loop {
        let text = std::fs::read_to_string(&out_path).unwrap_or_default();
        let lines: Vec<Value> =
            text.lines().filter_map(|l| l.find('{').and_then(|i| serde_json::from_str(&l[i..]).ok())).collect();
        if lines.iter().filter(|l| l["message"] == "webhook").count() >= 2 || Instant::now() > deadline {
            assert!(!text.contains(KEY) && !text.contains("gdhong@cafe24corp.com") && !text.contains("010-2424-2424"));
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let accepted = lines
        .iter()
        .find(|l| l["message"] == "webhook" && l["trace_id"] == "watch-trace-1")
        .unwrap_or_else(|| panic!("no webhook line for the trace in {}: {lines:?}", out_path.display()));
    for l in &lines {
        for k in relay_lambda::telemetry::SCHEMA {
            assert!(l.get(k).is_some(), "{k} missing: {l}");
        }
        assert_eq!(l["function"], "webhook-ingest", "even lines outside an invocation: {l}");
    }
    assert_eq!(accepted["function"], "webhook-ingest");
    assert_eq!(accepted["outcome"], "enqueued");
    let rid = accepted["request_id"].as_str().unwrap();
    assert!(!rid.is_empty() && rid != "c6af9ac6-7b61-11e6-9a41-93e8deadbeef", "the runtime's invocation id: {rid}");
    let emf = lines.iter().find(|l| l.get("_aws").is_some() && l["request_id"] == rid).expect("an EMF line");
    relay_tests::emf::validate(emf).unwrap();
    assert_eq!(emf["WebhooksAccepted"], 1);
}
