//! The `relay` binary against the local stack (moto + the Cafe24 simulator + the real handlers),
//! as an operator would use it: a mall that was never authorized gets webhooks; its jobs are
//! dead-lettered; `dlq list` says why; the operator opens `mall reauth-url`; `mall status` shows
//! the mall active; `dlq redrive` puts the jobs back in order; the worker syncs them; `trace`
//! follows one webhook through every function, the dead letter and the redriven run included.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::types::MessageSystemAttributeName as Sys;
use devstack::esm::new_request_id;
use relay_domain::jobs::{Job, JobKind};
use relay_domain::tokens::Secret;
use relay_tests::pipeline::Pipeline;
use relay_tests::{sim_cafe24_config, IngestEnv as _, KEY};
use serde_json::json;
use webhook_ingest::install::{AwsInstaller, InstallConfig};

const MALL: &str = "clishop";

fn relay(stack: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_relay"))
        .arg("--env-file")
        .arg(stack)
        .args(args)
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "relay failed: {}\n{out}", String::from_utf8_lossy(&o.stderr));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_repairs_a_mall_with_the_cli() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{}", new_request_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log_file = dir.join("functions.log");
    let file = std::fs::File::create(&log_file).unwrap();
    relay_lambda::telemetry::init_with_writer("info", Mutex::new(file));

    let p = Pipeline::new("cli").await;
    // webhook-ingest with the install flow, on its own address (the OAuth redirect URI).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ingest_url = format!("http://{}", listener.local_addr().unwrap());
    let install = InstallConfig {
        state_secret: Secret::new("cli-test-state-secret-0123456789abcdef"),
        redirect_uri: Some(format!("{ingest_url}/oauth/callback")),
        scopes: "mall.read_order,mall.read_product".into(),
        state_ttl_ms: 600_000,
        event_bus: p.env.stack.event_bus.clone(),
        backfill_days: 0,
        work_queue_url: None,
    };
    let installer = AwsInstaller::on_aws(
        &p.env.clients,
        &p.env.stack.token_table,
        sim_cafe24_config(&p.base),
        install,
        relay_lambda::clock::system_clock(),
    )
    .unwrap();
    let ingest = p.env.ingest().with_install(installer);
    relay_demo::bridge::serve(Arc::new(ingest), listener).await.unwrap();

    let stack = dir.join("stack.env");
    let s = &p.env.stack;
    std::fs::write(
        &stack,
        format!(
            "# written by the test\nAWS_ENDPOINT_URL={}\nINBOX_QUEUE_URL={}\nINBOX_DLQ_URL={}\nWORK_QUEUE_URL={}\nWORK_DLQ_URL={}\n\
             RATE_LIMIT_TABLE={}\nTOKEN_TABLE={}\nSTATE_TABLE={}\nINGEST_URL={ingest_url}\nRELAY_LOG_FILE={}\n",
            p.env.endpoint,
            s.inbox.url,
            s.inbox.dlq_url,
            s.work.url,
            s.work.dlq_url,
            s.rate_limit_table,
            s.token_table,
            s.state_table,
            log_file.display()
        ),
    )
    .unwrap();

    // The mall was never authorized.
    let out = ok(&relay(&stack, &["mall", "status", MALL]));
    assert!(out.contains("token:    none"), "{out}");

    // Three orders are placed; Cafe24 sends the webhooks; the jobs cannot run.
    let http = reqwest::Client::new();
    let orders: Vec<String> = p.orders(MALL).into_iter().take(3).collect();
    assert_eq!(orders.len(), 3);
    for (i, id) in orders.iter().enumerate() {
        let body =
            json!({"event_no": 90023, "resource": {"mall_id": MALL, "order_id": id, "buyer_email": "kim@example.com"}});
        let r = http
            .post(format!("{ingest_url}/webhooks/cafe24"))
            .header("X-API-Key", KEY)
            .header("X-Trace-ID", format!("cli-trace-{i}"))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let d = p.dispatcher();
    // One job at a time, so they reach the DLQ in their queue order (side by side they reach it
    // in the order they finish: they commute, being different orders) and the redrive's order
    // can be checked against the webhooks'.
    let w = p.worker_with(&[("JOBS_IN_FLIGHT", "1")]);
    p.run_until_drained(&d, &w, Duration::from_secs(300)).await;
    assert_eq!(p.env.depth(&s.work.dlq_url).await.unwrap(), 3);

    let out = ok(&relay(&stack, &["dlq", "list"]));
    assert!(out.starts_with("3 waiting"), "{out}");
    assert_eq!(out.lines().filter(|l| l.contains(MALL) && l.contains("not_installed")).count(), 3, "{out}");
    assert!(!out.contains("kim@example.com"));

    // A dry run moves nothing.
    let out = ok(&relay(&stack, &["dlq", "redrive", "--dry-run"]));
    assert!(out.contains("dry run: 3 would move"), "{out}");
    assert_eq!(p.env.depth(&s.work.dlq_url).await.unwrap(), 3);

    // The operator authorizes the app through the link (the browser follows the redirects).
    let out = ok(&relay(&stack, &["mall", "reauth-url", MALL]));
    let url = out.lines().next().unwrap().trim().to_owned();
    assert_eq!(url, format!("{ingest_url}/install"));
    // The merchant opens the app from the Cafe24 admin (the simulator's signed launch of that
    // App URL); the browser follows the redirects.
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::limited(6)).build().unwrap();
    let launch = format!("{}/sim/malls/{MALL}/launch?app_url={}", p.base, cafe24_sim::oauth::encode(&url));
    let page = browser.get(&launch).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Installed"), "{page}");
    let out = ok(&relay(&stack, &["mall", "status", MALL]));
    assert!(out.contains("token:    active") && out.contains("refresh expires") && out.contains("work DLQ"), "{out}");

    // Redrive: back on the work queue in their original order, under the mall's group.
    let out = ok(&relay(&stack, &["dlq", "redrive"]));
    assert!(out.contains("moved 3"), "{out}");
    assert_eq!(p.env.depth(&s.work.dlq_url).await.unwrap(), 0);
    let peek = p
        .env
        .sqs
        .receive_message()
        .queue_url(&s.work.url)
        .max_number_of_messages(10)
        .visibility_timeout(0)
        .message_system_attribute_names(Sys::All)
        .send()
        .await
        .unwrap();
    let back: Vec<Job> = peek.messages().iter().map(|m| Job::parse(m.body().unwrap()).unwrap()).collect();
    let back_orders: Vec<String> = back
        .iter()
        .map(|j| match &j.kind {
            JobKind::SyncOrder { order_id } => order_id.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(back_orders, orders, "FIFO order kept");
    for m in peek.messages() {
        assert_eq!(m.attributes().unwrap().get(&Sys::MessageGroupId).unwrap(), MALL);
    }

    // The worker runs them now.
    let before = p.sim.stats(MALL).calls;
    p.run_until_drained(&d, &w, Duration::from_secs(300)).await;
    assert_eq!(p.sim.stats(MALL).calls - before, 3, "each redriven job made its call once");
    assert_eq!(p.env.depth(&s.work.dlq_url).await.unwrap(), 0);
    let out = ok(&relay(&stack, &["dlq", "redrive"]));
    assert!(out.contains("moved 0"), "{out}");

    // The synced order, read back as a consumer of a `data_omitted` event would.
    let out = ok(&relay(&stack, &["snapshot", "get", "--mall", MALL, "order", &orders[0]]));
    let snap: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (snap["kind"].as_str(), snap["id"].as_str(), snap["deleted"].as_bool()),
        (Some("order"), Some(orders[0].as_str()), Some(false))
    );
    assert_eq!(snap["data"]["order_id"].as_str(), Some(orders[0].as_str()));
    assert!(snap["version"].as_u64().unwrap() > 0);
    let missing = relay(&stack, &["snapshot", "get", "--mall", MALL, "order", "20000101-0000000"]);
    assert!(!missing.status.success() && String::from_utf8_lossy(&missing.stderr).contains("no snapshot"));
    for bad_kind in ["orders", "Order", "member", ""] {
        let out = relay(&stack, &["snapshot", "get", "--mall", MALL, bad_kind, &orders[0]]);
        assert!(!out.status.success(), "{bad_kind:?} accepted");
        assert!(String::from_utf8_lossy(&out.stderr).contains("is not a kind"), "{bad_kind:?}");
    }

    // One webhook's whole story.
    let out = ok(&relay(&stack, &["trace", "cli-trace-1"]));
    for want in ["webhook-ingest", "dispatcher", "worker", "dead_lettered", "synced"] {
        assert!(out.contains(want), "{want} missing:\n{out}");
    }
    let dead = out.find("dead_lettered").unwrap();
    assert!(out.find("synced").unwrap() > dead, "time order:\n{out}");
    assert!(!out.contains("cli-trace-0") && !out.contains("kim@example.com"));

    // The same story asked for by order: the webhook behind that order's jobs, all functions.
    let out = ok(&relay(&stack, &["trace", "--mall", MALL, "--order", &orders[1]]));
    for want in ["webhook-ingest", "dispatcher", "worker", "dead_lettered", "synced"] {
        assert!(out.contains(want), "{want} missing:\n{out}");
    }
    let o = relay(&stack, &["trace", "--mall", MALL, "--order", &orders[1], "--json"]);
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.iter().all(|l| l["trace_id"] == "cli-trace-1"), "only that order's webhook");
    assert!(lines.iter().any(|l| l["entity_id"] == orders[1].as_str()), "the worker's lines name the order");
    let none = relay(&stack, &["trace", "--mall", MALL, "--order", "20000101-0000000"]);
    assert!(!none.status.success() && String::from_utf8_lossy(&none.stderr).contains("no job of mall"));
}

#[test]
fn bad_input_gets_a_clear_error_and_help_is_everywhere() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let stack = dir.join("bad-input.env");
    std::fs::write(&stack, "RELAY_LOG_FILE=/nonexistent/functions.log\nINGEST_URL=https://relay.example\n").unwrap();
    let o = relay(&stack, &["trace", "x\" | filter 1=1"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not a trace id"));
    let o = relay(&stack, &["mall", "reauth-url", "not a mall"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not a mall id"));
    let o = relay(&stack, &["dlq", "list"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("WORK_DLQ_URL is not set"));
    let o = relay(&dir.join("missing.env"), &["dlq", "list"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("make deploy"));
    for bad in [
        &["trace"][..],
        &["trace", "abc", "--mall", "m1", "--order", "o-1"],
        &["trace", "--mall", "m1"],
        &["trace", "--mall", "m1", "--order", "x\" | filter 1=1"],
        &["trace", "--mall", "m1", "--product", "twelve"],
        &["trace", "--order", "o-1"],
    ] {
        let o = relay(&stack, bad);
        assert!(!o.status.success() && !o.stderr.is_empty(), "{bad:?}");
    }
    let o = relay(&stack, &["trace", "abc", "--since", "5y"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("unit"));
    std::fs::write(&stack, "this is not a stack file\n").unwrap();
    let o = relay(&stack, &["dlq", "list"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("line 1"));
    for args in [
        &["--help"][..],
        &["trace", "--help"],
        &["dlq", "--help"],
        &["dlq", "redrive", "--help"],
        &["mall", "--help"],
        &["mall", "status", "--help"],
        &["malls", "--help"],
    ] {
        let o = relay(&stack, args);
        assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("Usage"), "{args:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malls_are_listed_page_by_page_and_filtered_by_status() {
    use relay_aws::tokens::DynamoTokenStore;
    use relay_domain::tokens::{TokenPair, TokenStatus, TokenStore};
    use relay_domain::MallId;

    let env = relay_tests::TestEnv::new("malls").await.unwrap();
    let store = DynamoTokenStore::new(env.ddb.clone(), &env.stack.token_table);
    let pair = TokenPair {
        access_token: Secret::new("ACCESS-SECRET-VALUE"),
        access_expires_ms: 1_900_000_000_000,
        refresh_token: Secret::new("REFRESH-SECRET-VALUE"),
        refresh_expires_ms: 1_900_000_000_000,
        scopes: vec!["mall.read_order".into()],
    };
    let mut reauth = Vec::new();
    for i in 0..23 {
        let m = MallId::parse(&format!("listshop{i:02}")).unwrap();
        store.put_installed(&m, &pair, 1_800_000_000_000).await.unwrap();
        if i % 5 == 0 {
            store.set_status(&m, TokenStatus::NeedsReauth, 1_800_000_000_000).await.unwrap();
            reauth.push(m.as_str().to_owned());
        }
    }

    // The store's pages: small Scan pages, cut at `max`, continued after the last row.
    let mut seen = Vec::new();
    let mut after: Option<MallId> = None;
    let mut calls = 0;
    loop {
        let page = store.list(None, after.as_ref(), 4, 3).await.unwrap();
        calls += 1;
        assert!(page.rows.len() <= 4 && page.scans >= 1);
        seen.extend(page.rows.iter().map(|r| r.mall.as_str().to_owned()));
        match page.next_after {
            Some(m) => after = Some(m),
            None => break,
        }
        assert!(calls < 20, "paging does not end");
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 23, "every mall once: {seen:?}");
    assert_eq!(seen.len(), 23, "no mall twice: {seen:?}");

    // The CLI: pages of 10 by following its own `--after` hint; the filter; never a token value.
    let stack = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("malls-{}.env", new_request_id()));
    std::fs::write(&stack, format!("AWS_ENDPOINT_URL={}\nTOKEN_TABLE={}\n", env.endpoint, env.stack.token_table))
        .unwrap();
    let mut args: Vec<String> = vec!["malls".into(), "--max".into(), "10".into()];
    let mut listed = Vec::new();
    for _ in 0..5 {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = ok(&relay(&stack, &argv));
        assert!(!out.contains("SECRET-VALUE"), "{out}");
        listed.extend(
            out.lines().filter(|l| l.starts_with("listshop")).map(|l| l.split_whitespace().next().unwrap().to_owned()),
        );
        let last = out.lines().last().unwrap();
        match last.split_once("more: relay ") {
            Some((_, next)) => args = next.split_whitespace().map(str::to_owned).collect(),
            None => {
                assert!(last.ends_with("end of the table"), "{out}");
                break;
            }
        }
    }
    listed.sort();
    assert_eq!(listed, sorted, "the CLI's pages cover the table once");

    let out = ok(&relay(&stack, &["malls", "--status", "needs_reauth"]));
    let mut flagged: Vec<String> = out
        .lines()
        .filter(|l| l.starts_with("listshop"))
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .collect();
    flagged.sort();
    assert_eq!(flagged, reauth, "{out}");
    assert!(out.lines().filter(|l| l.starts_with("listshop")).all(|l| l.contains("needs_reauth")), "{out}");
    assert!(out.contains("5 needs_reauth mall(s), end of the table"), "{out}");

    for bad in [&["malls", "--status", "broken"][..], &["malls", "--max", "0"], &["malls", "--after", "no spaces!"]] {
        let o = relay(&stack, bad);
        assert!(!o.status.success(), "{bad:?}");
        assert!(!String::from_utf8_lossy(&o.stderr).is_empty());
    }
}

/// `relay call` goes through the command door: a bad request is refused before anything is
/// sent; a request is queued under its key; once the dispatcher and worker have run it, the same
/// key prints the recorded result and sends nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_calls_a_mall_through_the_command_door() {
    use devstack::esm::{invoke, EsmConfig, LocalEsm};

    let p = Pipeline::new("cli-call").await;
    relay_tests::install_seeded_writer(&p.sim, &p.env, "callshop").await;
    let stack = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("call-{}.env", new_request_id()));
    std::fs::write(
        &stack,
        format!(
            "AWS_ENDPOINT_URL={}\nCOMMAND_QUEUE_URL={}\nSTATE_TABLE={}\n",
            p.env.endpoint, p.env.stack.commands.url, p.env.stack.state_table
        ),
    )
    .unwrap();
    let body = r#"{"shop_no":1,"request":{"member_id":"m1","amount":"7","reason":"op-1"}}"#;
    let grant = ["call", "--mall", "callshop", "--key", "op-1", "POST", "points", "--data", body];

    let bad = relay(&stack, &["call", "--mall", "callshop", "PATCH", "points"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("bad_method"));
    let bad = relay(&stack, &["call", "--mall", "callshop", "POST", "../oauth/token", "--data", "{}"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("bad_path"));
    assert_eq!(p.env.depth(&p.env.stack.commands.url).await.unwrap(), 0, "nothing sent for a refused request");

    let mut no_wait = grant.to_vec();
    no_wait.push("--no-wait");
    let out = ok(&relay(&stack, &no_wait));
    assert!(out.contains("queued") && out.contains("op-1"), "{out}");

    let d = p.dispatcher();
    let w = p.worker();
    let esm = |url: &str, arn: &str| {
        LocalEsm::new(
            p.env.sqs.clone(),
            EsmConfig { max_concurrency: 1, wait_time_seconds: 0, ..EsmConfig::new(url, arn) },
        )
    };
    let dh = |e: serde_json::Value| invoke("dispatcher", e, |ev| d.handle_batch(ev, || Duration::from_secs(30)));
    esm(&p.env.stack.commands.url, &p.env.stack.commands.arn).run_until_idle(&dh, 2).await.unwrap();
    let wh = |e: serde_json::Value| invoke("worker", e, |ev| w.handle_batch(ev, || Duration::from_secs(60)));
    esm(&p.env.stack.work.url, &p.env.stack.work.arn).run_until_idle(&wh, 2).await.unwrap();

    let out = ok(&relay(&stack, &grant));
    assert!(out.contains("\"succeeded\"") && out.contains("7.00"), "{out}");
    assert_eq!(p.sim.stats("callshop").effects.len(), 1, "granted once");
    assert_eq!(p.env.depth(&p.env.stack.commands.url).await.unwrap(), 0, "the recorded key sent nothing again");
}

/// Malls installed through another app come over with their tokens: `mall import` stores each
/// valid pair (never over a newer one the relay holds), announces it, and the mall syncs at once
/// without its merchant consenting again. A dry run stores nothing; no token value is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installed_malls_are_imported_and_sync_without_consent() {
    use relay_domain::tokens::TokenStore as _;
    use relay_domain::MallId;

    let p = Pipeline::new("cli-import").await;
    let app = devstack::resources::subscribe_queue(
        &p.env.clients,
        &p.env.stack.event_bus,
        &format!("{}-app", p.env.stack.event_bus),
    )
    .await
    .unwrap();
    // What the old app kept of Cafe24's token answers (here issued by the simulator).
    let now = p.sim.clock.now_ms();
    let scopes: Vec<String> = cafe24_sim::state::ALL_READ_SCOPES.iter().map(|s| s.to_string()).collect();
    let answer = |mall: &str, refresh_ttl_days: u64| {
        let (a, r) = p.sim.seed_tokens(mall, "relay-client", scopes.clone());
        let v = json!({"mall_id": mall, "access_token": a, "expires_at": cafe24_sim::kst::naive_kst_millis(now + 7_200_000),
            "refresh_token": r, "refresh_token_expires_at": cafe24_sim::kst::naive_kst_millis(now + refresh_ttl_days * 86_400_000),
            "scopes": scopes, "token_type": "Bearer"});
        (v, a, r)
    };
    // The relay already holds newshop's pair, issued later than the one the file has.
    relay_tests::install_seeded(&p.sim, &p.env, "newshop").await;
    let held = p.tokens().get(&MallId::parse("newshop").unwrap()).await.unwrap().unwrap();
    let (imp, imp_access, imp_refresh) = answer("impshop", 14);
    let (older, ..) = answer("newshop", 10);
    let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("import-{}.jsonl", new_request_id()));
    std::fs::write(&file, format!("{imp}\n{older}\n{{\"mall_id\": \"badshop\"}}\n")).unwrap();
    let stack = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("import-{}.env", new_request_id()));
    std::fs::write(
        &stack,
        format!(
            "AWS_ENDPOINT_URL={}\nTOKEN_TABLE={}\nEVENT_BUS_NAME={}\n",
            p.env.endpoint, p.env.stack.token_table, p.env.stack.event_bus
        ),
    )
    .unwrap();
    let path = file.to_str().unwrap();

    let dry = relay(&stack, &["mall", "import", path, "--dry-run"]);
    let text = String::from_utf8_lossy(&dry.stdout).into_owned();
    assert!(!dry.status.success(), "an invalid entry fails the run: {text}");
    assert!(text.contains("impshop") && text.contains("would be imported"), "{text}");
    assert!(text.contains("newshop") && text.contains("newer pair"), "{text}");
    assert!(text.contains("#3") && text.contains("access_token is missing"), "{text}");
    assert!(p.tokens().get(&MallId::parse("impshop").unwrap()).await.unwrap().is_none(), "a dry run stores nothing");

    let run = relay(&stack, &["mall", "import", path]);
    let text = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        text.contains("imported (mall.installed published)")
            && text.ends_with("1 imported, 0 would be, 1 kept, 1 refused\n"),
        "{text}"
    );
    for secret in [imp_access.as_str(), imp_refresh.as_str(), held.pair.refresh_token.expose()] {
        assert!(!text.contains(secret) && !String::from_utf8_lossy(&run.stderr).contains(secret));
    }
    let stored = p.tokens().get(&MallId::parse("impshop").unwrap()).await.unwrap().unwrap();
    assert_eq!((stored.status.as_str(), stored.pair.refresh_token.expose()), ("active", imp_refresh.as_str()));
    let kept = p.tokens().get(&MallId::parse("newshop").unwrap()).await.unwrap().unwrap();
    assert_eq!(kept.pair.refresh_token.expose(), held.pair.refresh_token.expose(), "the newer pair stays");
    let events: Vec<serde_json::Value> =
        p.env.drain_all(&app).await.unwrap().iter().map(|m| serde_json::from_str(m.body().unwrap()).unwrap()).collect();
    let installed: Vec<&str> = events
        .iter()
        .filter(|e| e["detail-type"] == "mall.installed")
        .map(|e| e["detail"]["mall_id"].as_str().unwrap())
        .collect();
    assert_eq!(installed, ["impshop"]);

    // Its webhooks sync at once: no consent, no token request.
    let issued = p.sim.stats("impshop").token_requests;
    let order = p.orders("impshop")[0].clone();
    p.ingest(&json!({"event_no": 90023, "resource": {"mall_id": "impshop", "order_id": order}}), "imp-1").await;
    let (d, w) = (p.dispatcher(), p.worker());
    p.run_until_drained(&d, &w, Duration::from_secs(30)).await;
    let state = relay_aws::state::DynamoState::new(p.env.ddb.clone(), p.env.stack.state_table.clone());
    use relay_domain::ports::SnapshotStore as _;
    assert!(state
        .snapshot(&MallId::parse("impshop").unwrap(), relay_domain::SnapshotKind::Order, &order)
        .await
        .unwrap()
        .is_some());
    assert_eq!(p.sim.stats("impshop").token_requests, issued, "no token request: the imported pair works");
}
