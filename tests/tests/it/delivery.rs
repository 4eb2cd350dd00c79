//! Delivery end to end on moto: webhook-ingest → inbox → dispatcher → work → worker → the
//! EventBridge bus → a rule → a subscriber queue, as a user's application subscribes. The bus is
//! missing for the first seconds of the run (refusing every entry), then comes back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::time::{Duration, Instant};

use relay_aws::state::DynamoState;
use relay_domain::delivery::{EVENT_SOURCE, MAX_ENTRY_BYTES};
use relay_domain::ports::SnapshotStore as _;
use relay_domain::MallId;
use relay_domain::SnapshotKind;
use relay_tests::pipeline::Pipeline;
use serde_json::{json, Value};

#[tokio::test]
async fn the_example_consumer_returns_what_it_cannot_apply_and_skips_other_events() {
    let env = relay_tests::TestEnv::new("consumer").await.unwrap();
    let table = format!("{}-orders", env.stack.event_bus);
    devstack::resources::create_pk_table(&env.ddb, &table).await.unwrap();
    let consumer = orders_consumer::Orders::new(env.ddb.clone(), &table);
    let order = |v: u64, data: Value| {
        json!({"source": EVENT_SOURCE, "detail-type": "order.synced", "detail": {"schema_version": 1,
            "event_id": format!("evt-{v}"), "mall_id": "m", "kind": "order", "id": "o1", "version": v,
            "trace_id": "t", "data": data}})
    };
    let bodies = [
        "not json".to_owned(),
        json!({"detail-type": "order.synced", "detail": {"schema_version": 2}}).to_string(),
        json!({"detail-type": "order.synced", "detail": {"schema_version": 1, "mall_id": "m", "id": "o1", "event_id": "e", "version": 1}}).to_string(),
        json!({"detail-type": "webhook.received", "detail": {}}).to_string(),
        order(2, json!({"order_id": "o1", "n": 2})).to_string(),
        order(1, json!({"order_id": "o1", "n": 1})).to_string(),
    ];
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| json!({"messageId": format!("m{i}"), "receiptHandle": "rh", "body": b, "attributes": {}, "messageAttributes": {}}))
        .collect();
    let event: aws_lambda_events::event::sqs::SqsEvent = serde_json::from_value(json!({"Records": records})).unwrap();
    let resp = consumer.handle(event).await;
    let failed: Vec<&str> = resp.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(failed, ["m0", "m1", "m2"], "malformed messages are returned (to the DLQ), never dropped");
    let item = env
        .ddb
        .get_item()
        .table_name(&table)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S("m#o1".into()))
        .send()
        .await
        .unwrap();
    assert_eq!(item.item().unwrap()["version"].as_n().unwrap(), "2", "the older event arrived later and lost");
}

/// Runs `scripts/validate-events.py` (JSON Schemas in docs/events/) over the events.
pub(crate) fn validate(events: &[Value]) {
    let root = devstack::moto::workspace_root();
    let mut child = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("scripts/validate-events.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the project venv (make tools)");
    {
        let mut stdin = child.stdin.take().unwrap();
        for e in events {
            writeln!(stdin, "{e}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    println!("schema check: {text}");
    assert!(out.status.success(), "events not valid against docs/events/: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_webhook_and_every_synced_version_reaches_the_subscriber_once_even_across_a_bus_outage() {
    let fx = Pipeline::new("deliver").await;
    let malls = ["dm1", "dm2"];
    for m in malls {
        fx.install(m).await;
    }
    // A product whose snapshot is over the bus's entry limit: published as a pointer.
    {
        let mut g = fx.sim.lock();
        let p = fx.sim.mall(&mut g, "dm1").data.products.get_mut(&1).unwrap();
        p.description = cafe24_sim::data::Product::long_description(1, 300_000);
    }
    // The bus is gone while the burst is processed: every PutEvents fails.
    fx.env.events.delete_event_bus().name(&fx.env.stack.event_bus).send().await.unwrap();

    let mut webhooks = BTreeSet::new(); // (mall, trace) of every distinct accepted webhook
    let mut orders: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for m in malls {
        let ids: Vec<String> = fx.orders(m).into_iter().take(5).collect();
        for (i, id) in ids.iter().enumerate() {
            let trace = format!("{m}-o{i}");
            let body = json!({"event_no": 90023, "resource": {"mall_id": m, "order_id": id}});
            fx.ingest(&body, &trace).await;
            fx.ingest(&body, &trace).await; // Cafe24's duplicate delivery (same trace id)
            webhooks.insert((m.to_owned(), trace));
        }
        // Bulk shipping of the same orders, a billing event, an unknown number, an expiry.
        let bulk = json!({"event_no": 90072, "resource": {"mall_id": m, "order_id": ids.join(",")}});
        for (trace, body) in [
            (format!("{m}-bulk"), bulk),
            (format!("{m}-bill"), json!({"event_no": 90157, "resource": {"mall_id": m, "amount": "9900"}})),
            (format!("{m}-unknown"), json!({"event_no": 99991, "resource": {"mall_id": m}})),
            (format!("{m}-expired"), json!({"event_no": 90078, "resource": {"mall_id": m}})),
            (format!("{m}-gone"), json!({"event_no": 90002, "resource": {"mall_id": m, "product_no": 987654}})),
        ] {
            fx.ingest(&body, &trace).await;
            webhooks.insert((m.to_owned(), trace));
        }
        orders.insert(m, ids);
    }
    fx.ingest(&json!({"event_no": 90002, "resource": {"mall_id": "dm1", "product_no": 1}}), "dm1-big").await;
    webhooks.insert(("dm1".into(), "dm1-big".into()));

    let (d, w) = (fx.dispatcher(), fx.worker());
    fx.run_for(&d, &w, Duration::from_secs(4)).await;
    let refused = (
        d.stats.publish_failed.load(std::sync::atomic::Ordering::Relaxed),
        w.stats.publish_failed.load(std::sync::atomic::Ordering::Relaxed),
    );
    assert!(refused.0 > 0 && refused.1 > 0, "the outage was seen by both publishers: {refused:?}");
    // The bus is back, with the app's subscription.
    fx.env.events.create_event_bus().name(&fx.env.stack.event_bus).send().await.unwrap();
    let sub = devstack::resources::subscribe_queue(
        &fx.env.clients,
        &fx.env.stack.event_bus,
        &format!("{}-app", fx.env.stack.event_bus),
    )
    .await
    .unwrap();
    let t0 = Instant::now();
    fx.run_until_drained(&d, &w, Duration::from_secs(300)).await;
    let drained = t0.elapsed();

    let events: Vec<Value> = fx
        .env
        .drain_all(&sub)
        .await
        .unwrap()
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
        .collect();
    validate(&events);
    let mut by_id: BTreeMap<String, usize> = BTreeMap::new();
    for e in &events {
        *by_id.entry(e["detail"]["event_id"].as_str().unwrap().to_owned()).or_default() += 1;
        let size = EVENT_SOURCE.len() + e["detail-type"].as_str().unwrap().len() + e["detail"].to_string().len();
        assert!(size <= MAX_ENTRY_BYTES, "an entry of {size} bytes would be refused by EventBridge");
    }
    let duplicates: usize = by_id.values().map(|n| n - 1).sum();
    let of = |t: &str| events.iter().filter(|e| e["detail-type"] == t).collect::<Vec<_>>();

    // One webhook.received per accepted webhook, by (mall, trace).
    let received: BTreeSet<(String, String)> = of("webhook.received")
        .iter()
        .map(|e| {
            (e["detail"]["mall_id"].as_str().unwrap().to_owned(), e["detail"]["trace_id"].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(received, webhooks, "every accepted webhook delivered (billing, unknown and expiry included)");
    assert_eq!(of("webhook.received").len(), webhooks.len());

    // The newest delivered version of every entity is the stored one, and it carries its data.
    let state = DynamoState::new(fx.env.ddb.clone(), fx.env.stack.state_table.clone());
    let mut newest: BTreeMap<(String, String, String), (u64, Value)> = BTreeMap::new();
    for e in events.iter().filter(|e| e["detail"]["kind"].is_string()) {
        let d = &e["detail"];
        let key = (
            d["mall_id"].as_str().unwrap().into(),
            d["kind"].as_str().unwrap().into(),
            d["id"].as_str().unwrap().into(),
        );
        let v = d["version"].as_u64().unwrap();
        if newest.get(&key).is_none_or(|(old, _)| *old < v) {
            newest.insert(key, (v, e.clone()));
        }
    }
    let mut expected_entities = 0;
    for (m, ids) in &orders {
        for id in ids {
            expected_entities += 1;
            let (v, e) = newest.get(&((*m).to_owned(), "order".to_owned(), id.clone())).expect("order delivered");
            let (stored_v, data) =
                state.snapshot(&MallId::parse(m).unwrap(), SnapshotKind::Order, id).await.unwrap().unwrap();
            assert_eq!(*v, stored_v, "the newest event is the stored version");
            assert_eq!(e["detail-type"], "order.synced");
            assert_eq!(Some(&e["detail"]["data"]), data.as_ref());
        }
    }
    for m in malls {
        let (_, e) =
            newest.get(&(m.to_owned(), "product".to_owned(), "987654".to_owned())).expect("tombstone delivered");
        assert_eq!(e["detail-type"], "product.deleted");
    }
    let (_, big) =
        newest.get(&("dm1".to_owned(), "product".to_owned(), "1".to_owned())).expect("big product delivered");
    assert!(big["detail"]["data"].is_null(), "over the entry limit: a pointer");
    assert_eq!(big["detail"]["data_omitted"]["read_with"], "relay snapshot get --mall dm1 product 1");
    let (_, stored) =
        state.snapshot(&MallId::parse("dm1").unwrap(), SnapshotKind::Product, "1").await.unwrap().unwrap();
    assert!(stored.unwrap()["description"].as_str().unwrap().len() >= 300_000, "readable from the state table");

    let synced = of("order.synced").len() + of("product.synced").len() + of("product.deleted").len();
    println!(
        "delivery: {} events ({} webhook.received, {synced} synced/deleted for {} entities), {duplicates} duplicates; \
         refused during the outage: dispatcher {}, worker {}; drained {:.1} s after recovery",
        events.len(),
        of("webhook.received").len(),
        expected_entities + 3,
        refused.0,
        refused.1,
        drained.as_secs_f64()
    );
    assert_eq!(duplicates, 0, "nothing published twice by the relay");

    // The example consumer (examples/orders-consumer) fed the same events: its table equals
    // the relay's order snapshots; replaying every event backwards (duplicates, out of order)
    // changes nothing.
    let table = format!("{}-orders", fx.env.stack.event_bus);
    devstack::resources::create_pk_table(&fx.env.ddb, &table).await.unwrap();
    let consumer = orders_consumer::Orders::new(fx.env.ddb.clone(), &table);
    let mut applied = BTreeMap::new();
    for e in &events {
        *applied.entry(format!("{:?}", consumer.apply(e).await.unwrap())).or_insert(0) += 1;
    }
    for e in events.iter().rev() {
        let a = consumer.apply(e).await.unwrap();
        assert_ne!(a, orders_consumer::Applied::Stored, "a replayed event changed the table: {e}");
    }
    for (m, ids) in &orders {
        for id in ids {
            let item = fx
                .env
                .ddb
                .get_item()
                .table_name(&table)
                .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(format!("{m}#{id}")))
                .send()
                .await
                .unwrap();
            let item = item.item().expect("the consumer has the order");
            let (stored_v, data) =
                state.snapshot(&MallId::parse(m).unwrap(), SnapshotKind::Order, id).await.unwrap().unwrap();
            assert_eq!(item["version"].as_n().unwrap(), &stored_v.to_string());
            let theirs: Value = serde_json::from_str(item["data"].as_s().unwrap()).unwrap();
            assert_eq!(Some(theirs), data, "the app's copy equals the relay's snapshot");
        }
    }
    println!("consumer: {applied:?}");
    assert_eq!(fx.env.depth(&fx.env.stack.work.dlq_url).await.unwrap(), 0);
    assert_eq!(fx.env.depth(&fx.env.stack.inbox.dlq_url).await.unwrap(), 0, "nothing parked");
}

/// The schemas change only compatibly within a `schema_version` (docs/events/README.md,
/// "Evolution"): checked against the released ones, and each kind of breaking change is refused
/// unless the version is bumped.
#[test]
fn the_event_schemas_change_only_compatibly_within_a_version() {
    let root = devstack::moto::workspace_root();
    let check = |released: &std::path::Path, current: &std::path::Path| {
        let out = std::process::Command::new(root.join(".venv/bin/python"))
            .arg(root.join("scripts/check-schema-compat.py"))
            .arg(released)
            .arg(current)
            .output()
            .expect("the project venv (make tools)");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (released, current) = (root.join("docs/events/released/1"), root.join("docs/events"));
    let (ok, text) = check(&released, &current);
    assert!(ok, "docs/events changed incompatibly without a version bump:\n{text}");

    type Edit = fn(&mut Value);
    let breaking: [(&str, Edit, &str); 5] = [
        ("a property removed", |s| drop(s["properties"].as_object_mut().unwrap().remove("trace_id")), "removed"),
        (
            "a field made required",
            |s| s["required"].as_array_mut().unwrap().push(json!("data_omitted")),
            "newly required",
        ),
        ("a type narrowed", |s| s["properties"]["version"]["type"] = json!("string"), "narrowed"),
        ("closed to new fields", |s| s["additionalProperties"] = json!(false), "closed"),
        ("an enum narrowed", |s| s["properties"]["kind"]["enum"] = json!(["order"]), "enum narrowed"),
    ];
    for (what, edit, said) in breaking {
        let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("schemas-{}", devstack::esm::new_request_id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in std::fs::read_dir(&current).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_file()) {
            std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
        }
        let synced = dir.join("synced.schema.json");
        let mut s: Value = serde_json::from_str(&std::fs::read_to_string(&synced).unwrap()).unwrap();
        edit(&mut s);
        std::fs::write(&synced, s.to_string()).unwrap();
        let (ok, text) = check(&released, &dir);
        assert!(!ok && text.contains(said), "{what} was accepted:\n{text}");
        // The same change with the version bumped is a new contract: accepted.
        s["properties"]["schema_version"]["const"] = json!(2);
        std::fs::write(&synced, s.to_string()).unwrap();
        assert!(check(&released, &dir).0, "{what} with a version bump was refused");
    }
}
