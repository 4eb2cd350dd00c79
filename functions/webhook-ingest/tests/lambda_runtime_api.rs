//! The real `webhook-ingest` binary, as Lambda runs it: it polls a Lambda runtime API —
//! `cargo lambda watch --only-lambda-apis` here, serving the runtime API and Function URLs —
//! receives a Function URL request and enqueues to moto.
//!
//! Cargo builds the binary for this test (`CARGO_BIN_EXE_webhook-ingest`); the emulator never
//! runs a nested `cargo run`, so nothing here waits on a second build of the workspace.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::MessageSystemAttributeName as Sys;
use serde_json::Value;
use testkit::*;

/// Kills a child's whole process group on drop.
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

/// What a failure message needs: the tail of each process's output.
fn tails(files: &[&Path]) -> String {
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            let tail: String =
                text.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
            format!("--- {} ---\n{tail}", f.display())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn the_real_binary_behind_the_lambda_runtime_api_enqueues_a_function_url_request() {
    let env = TestEnv::new("watch").await.unwrap();
    let root = devstack::moto::workspace_root();
    let local = root.join(".local");
    std::fs::create_dir_all(&local).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();

    // The emulator: runtime API and Function URLs only; it starts no function itself.
    let emu_log = local.join("lambda-runtime-api.log");
    let mut emu = tokio::process::Command::new(root.join(".venv/bin/cargo-lambda"));
    emu.current_dir(&root)
        .args(["lambda", "watch", "--only-lambda-apis", "--invoke-address", "127.0.0.1"])
        .args(["--invoke-port", &port.to_string()])
        .env("PATH", format!("{}:{}", root.join(".venv/bin").display(), std::env::var("PATH").unwrap_or_default()))
        // Never the test's stdin: the emulator must not read (or steal) the caller's input.
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&emu_log).map(Stdio::from).unwrap())
        .process_group(0);
    let mut emu = Group(emu.spawn().expect("cargo-lambda is installed by scripts/ensure-tools.sh"));
    // On Lambda the runtime API is up before the function starts; so here.
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        if let Ok(Some(status)) = emu.0.try_wait() {
            panic!("cargo lambda watch exited ({status})\n{}", tails(&[emu_log.as_path()]));
        }
        assert!(Instant::now() < deadline, "the emulator never listened\n{}", tails(&[emu_log.as_path()]));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The function, with the variables Lambda sets plus the stack's configuration. Its stdout
    // is what Lambda would send to CloudWatch.
    let out_path = local.join("lambda-runtime-api.function.out");
    let err_path = local.join("lambda-runtime-api.function.err");
    let mut function = tokio::process::Command::new(env!("CARGO_BIN_EXE_webhook-ingest"));
    function
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", format!("http://127.0.0.1:{port}/.rt"))
        .env("AWS_LAMBDA_FUNCTION_NAME", "webhook-ingest")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("WEBHOOK_API_KEY", KEY)
        .env("AWS_ENDPOINT_URL", &env.endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .envs(env.stack.env())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).map(Stdio::from).unwrap())
        .stderr(std::fs::File::create(&err_path).map(Stdio::from).unwrap())
        .process_group(0);
    let mut function = Group(function.spawn().unwrap());
    let logs = [emu_log.as_path(), out_path.as_path(), err_path.as_path()];

    // Function URLs are served under the emulator's default function name, `_`.
    let url = format!("http://127.0.0.1:{port}/lambda-url/_/webhooks/cafe24");
    let http = reqwest::Client::new();
    let body = fixture("cafe24/90023-order-placed.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    // Retry until the emulator listens and the function has polled it; fail at once, with the
    // processes' output, if the function exits.
    let resp = loop {
        if let Ok(Some(status)) = function.0.try_wait() {
            panic!("webhook-ingest exited ({status}) before answering\n{}", tails(&logs));
        }
        let r = http
            .post(&url)
            .header("X-API-Key", KEY)
            .header("X-Trace-ID", "watch-trace-1")
            .body(body.clone())
            .timeout(Duration::from_secs(15))
            .send()
            .await;
        match r {
            Ok(r) if r.status().as_u16() != 502 && r.status().as_u16() != 404 => break r,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(300)).await,
            other => panic!("no answer through the runtime API: {other:?}\n{}", tails(&logs)),
        }
    };
    assert_eq!(resp.status().as_u16(), 200);
    let json: Value = resp.json().await.unwrap();
    assert_eq!(json["status"], "enqueued");

    let wrong = http.post(&url).header("X-API-Key", "nope").body(body.clone()).send().await.unwrap();
    assert_eq!(wrong.status().as_u16(), 403);

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
    testkit::emf::validate(emf).unwrap();
    assert_eq!(emf["WebhooksAccepted"], 1);
}
