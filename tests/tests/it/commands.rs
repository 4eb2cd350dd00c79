//! Commands end to end over moto and the simulator: the app sends to the command queue (its
//! key as the deduplication id), the dispatcher turns each into a job of the mall's command
//! group, the worker makes the request and the result reaches the app's subscription.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::Duration;

use devstack::esm::{invoke, EsmConfig, LocalEsm};
use relay_tests::pipeline::Pipeline;
use serde_json::{json, Value};

/// Every event the app's subscription queue holds, parsed.
async fn app_events(fx: &Pipeline, queue: &str) -> Vec<Value> {
    fx.env.drain_all(queue).await.unwrap().iter().map(|m| serde_json::from_str(m.body().unwrap()).unwrap()).collect()
}

/// What the app does: one FIFO message per command, its key as the deduplication id.
async fn send(fx: &Pipeline, body: &str, group: &str, dedup: &str) {
    fx.env
        .sqs
        .send_message()
        .queue_url(&fx.env.stack.commands.url)
        .message_body(body)
        .message_group_id(group)
        .message_deduplication_id(dedup)
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_runs_once_through_the_queues_and_its_result_reaches_the_app() {
    let fx = Pipeline::new("cmd-e2e").await;
    relay_tests::install_seeded_writer(&fx.sim, &fx.env, "cmdmall").await;
    let app = devstack::resources::subscribe_queue(
        &fx.env.clients,
        &fx.env.stack.event_bus,
        &format!("{}-app", fx.env.stack.event_bus),
    )
    .await
    .unwrap();
    let grant = |key: &str| {
        json!({"v": 1, "key": key, "mall_id": "cmdmall", "method": "POST", "path": "points",
            "body": {"shop_no": 1, "request": {"member_id": "m1", "amount": "500", "reason": key}}})
        .to_string()
    };
    send(&fx, &grant("review-1"), "cmdmall", "review-1").await;
    send(&fx, &grant("review-1"), "cmdmall", "review-1").await; // the app retried its send
    send(&fx, &grant("review-2"), "cmdmall", "review-2").await;
    // Refused: a path outside the Admin API, and a body that is no command at all.
    let bad =
        json!({"v": 1, "key": "bad-1", "mall_id": "cmdmall", "method": "POST", "path": "../oauth/token", "body": {}});
    send(&fx, &bad.to_string(), "cmdmall", "bad-1").await;
    send(&fx, "not json", "cmdmall", "junk-1").await;
    // Valid, but outside the deployment's allow-list (COMMAND_ALLOW below).
    let put = json!({"v": 1, "key": "put-1", "mall_id": "cmdmall", "method": "PUT", "path": "products/1",
        "body": {"request": {"price": "1"}}});
    send(&fx, &put.to_string(), "cmdmall", "put-1").await;

    let work = relay_aws::sqs::SqsQueue::new(fx.env.sqs.clone(), fx.env.stack.work.url.clone());
    let d = fx.dispatcher_configured(work, &[("COMMAND_ALLOW", "POST points, GET **")]);
    let esm = |url: &str, arn: &str| {
        LocalEsm::new(
            fx.env.sqs.clone(),
            EsmConfig { max_concurrency: 2, wait_time_seconds: 0, ..EsmConfig::new(url, arn) },
        )
    };
    let c = esm(&fx.env.stack.commands.url, &fx.env.stack.commands.arn);
    let hd = |event: Value| invoke("dispatcher", event, |ev| d.handle_batch(ev, || Duration::from_secs(30)));
    c.run_until_idle(&hd, 2).await.unwrap();
    assert_eq!(d.stats.commands.load(std::sync::atomic::Ordering::Relaxed), 2);
    assert_eq!(d.stats.commands_refused.load(std::sync::atomic::Ordering::Relaxed), 3);
    let w = fx.worker();
    let e = esm(&fx.env.stack.work.url, &fx.env.stack.work.arn);
    let hw = |event: Value| invoke("worker", event, |ev| w.handle_batch(ev, || Duration::from_secs(60)));
    e.run_until_idle(&hw, 2).await.unwrap();

    let effects =
        |key: &str| fx.sim.stats("cmdmall").effects.iter().filter(|x| x.body.to_string().contains(key)).count();
    assert_eq!((effects("review-1"), effects("review-2")), (1, 1), "one grant per key");
    let events = app_events(&fx, &app).await;
    // Every result, the refusals included, is what docs/events/command.schema.json says.
    crate::delivery::validate(&events);
    let of = |t: &str| events.iter().filter(|e| e["detail-type"] == t).map(|e| e["detail"].clone()).collect::<Vec<_>>();
    let ok = of("command.succeeded");
    let mut keys: Vec<&str> = ok.iter().map(|d| d["key"].as_str().unwrap()).collect();
    keys.sort();
    assert_eq!(keys, ["review-1", "review-2"]);
    assert!(ok.iter().all(|d| d["status"] == 201 && d["body"]["point"]["amount"] == "500.00"));
    let failed = of("command.failed");
    let mut reasons: Vec<&str> = failed.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    reasons.sort();
    assert_eq!(reasons, ["bad_path", "not_allowed", "not_json"]);
    assert_eq!(fx.sim.stats("cmdmall").effects.iter().filter(|e| e.method == "PUT").count(), 0);
    assert!(failed.iter().any(|d| d["key"] == "bad-1" && d["mall_id"] == "cmdmall"));
    assert_eq!(fx.env.depth(&fx.env.stack.commands.dlq_url).await.unwrap(), 0, "nothing dead-lettered");
}

/// Every shape a command's result takes — succeeded, settled by its read, failed by a refusal or
/// by Cafe24, uncertain — is what docs/events/command.schema.json says.
#[test]
fn every_result_shape_matches_the_schema() {
    use relay_domain::command::{result_event, Command, Named, Outcome};
    let cmd = Command::parse(
        &json!({"v": 1, "key": "k-1", "mall_id": "shopa", "shop_no": 2, "method": "POST", "path": "scripttags",
            "body": {"request": {"src": "https://a.example/t.js"}},
            "settle": {"path": "scripttags", "contains": "https://a.example/t.js"}})
        .to_string(),
    )
    .unwrap();
    let named = Named { key: Some("k-1".into()), mall_id: Some(cmd.mall_id.clone()) };
    let outcomes = [
        Outcome::Succeeded { status: 201, body: json!({"scripttag": {"script_no": "1"}}) },
        Outcome::Settled { body: json!({"scripttags": [{"src": "https://a.example/t.js"}]}) },
        Outcome::Failed { reason: "cafe24_error".into(), status: Some(422), body: json!({"error": {"code": 422}}) },
        Outcome::Failed { reason: "needs_reauth".into(), status: None, body: json!({"message": "m"}) },
        Outcome::Uncertain { reason: "timeout".into() },
    ];
    let mut events: Vec<Value> = outcomes
        .iter()
        .map(|o| {
            let e = result_event("k-1", &named, Some(&cmd), o, "trace");
            json!({"source": "cafe24-relay", "detail-type": e.detail_type, "detail": serde_json::from_str::<Value>(&e.detail).unwrap()})
        })
        .collect();
    // A refusal names what it can: no valid mall.
    let refused = Outcome::Failed { reason: "not_json".into(), status: None, body: json!({"message": "m"}) };
    let e = result_event("message:abc", &Named::default(), None, &refused, "");
    events.push(json!({"source": "cafe24-relay", "detail-type": e.detail_type, "detail": serde_json::from_str::<Value>(&e.detail).unwrap()}));
    assert_eq!(events[1]["detail-type"], "command.succeeded");
    assert_eq!((events[1]["detail"]["settled"].as_bool(), events[1]["detail"]["status"].is_null()), (Some(true), true));
    crate::delivery::validate(&events);
}

/// The app's write comes back as the webhook Cafe24 sends for it (a shipping status changed:
/// 90024), and the relay syncs the order as written: the app's subscription sees the command's
/// result, then the order in its new state. (One more read of the order: write-through is not
/// built, see docs/commands.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_comes_back_as_its_webhook_and_the_order_syncs_as_written() {
    let fx = Pipeline::new("cmd-wh").await;
    relay_tests::install_seeded_writer(&fx.sim, &fx.env, "whmall").await;
    fx.send_webhooks_to_ingest().await;
    let app = devstack::resources::subscribe_queue(
        &fx.env.clients,
        &fx.env.stack.event_bus,
        &format!("{}-app", fx.env.stack.event_bus),
    )
    .await
    .unwrap();
    let order = fx.orders("whmall")[0].clone();
    let put = json!({"v": 1, "key": "ship-1", "mall_id": "whmall", "method": "PUT", "path": format!("orders/{order}"),
        "body": {"request": {"shipping_status": "M"}}});
    send(&fx, &put.to_string(), "whmall", "ship-1").await;
    let d = fx.dispatcher();
    let w = fx.worker();
    let c = LocalEsm::new(
        fx.env.sqs.clone(),
        EsmConfig {
            max_concurrency: 1,
            wait_time_seconds: 0,
            ..EsmConfig::new(&fx.env.stack.commands.url, &fx.env.stack.commands.arn)
        },
    );
    let hd = |event: Value| invoke("dispatcher", event, |ev| d.handle_batch(ev, || Duration::from_secs(30)));
    c.run_until_idle(&hd, 1).await.unwrap();
    // The command runs; Cafe24's webhook for the write arrives meanwhile (the sender is async).
    fx.run_for(&d, &w, Duration::from_secs(3)).await;
    fx.run_until_drained(&d, &w, Duration::from_secs(30)).await;
    let events = app_events(&fx, &app).await;
    let kinds: Vec<&str> = events.iter().map(|e| e["detail-type"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"command.succeeded"), "{kinds:?}");
    let hook = events.iter().find(|e| e["detail-type"] == "webhook.received").expect("the write's webhook");
    assert_eq!(
        (hook["detail"]["event_no"].as_u64(), hook["detail"]["payload"]["resource"]["order_id"].as_str()),
        (Some(90024), Some(order.as_str()))
    );
    let synced = events.iter().find(|e| e["detail-type"] == "order.synced").expect("the order synced");
    assert_eq!(synced["detail"]["data"]["shipping_status"], "M", "as the app wrote it");
    assert_eq!(fx.sim.stats("whmall").status_429, 0);
}
