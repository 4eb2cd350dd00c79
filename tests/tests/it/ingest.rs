//! webhook-ingest against moto's SQS, driven through the exact HTTP events Lambda delivers.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use aws_sdk_sqs::types::MessageSystemAttributeName as Sys;
use relay_tests::*;
use serde_json::Value;

const ORDER: &str = "cafe24/90023-order-placed.json";

async fn post(env: &TestEnv, shape: Shape, headers: &[(&str, &str)], body: &[u8], b64: bool) -> (u16, Value) {
    let ingest = env.ingest();
    let event = http_event(shape, "POST", "/webhooks/cafe24", headers, body, b64);
    response_parts(&ingest.handle(to_request(&event)).await)
}

async fn assert_nothing_enqueued(env: &TestEnv) {
    assert_eq!(env.depth(&env.stack.inbox.url).await.unwrap(), 0, "inbox must be empty");
    assert_eq!(env.depth(&env.stack.inbox.dlq_url).await.unwrap(), 0, "parking must be empty");
}

#[tokio::test]
async fn each_sample_lands_in_the_right_queue_with_group_dedup_id_and_envelope() {
    let env = TestEnv::new("samples").await.unwrap();
    let fixtures = cafe24_fixtures();
    assert!(fixtures.len() >= 10, "fixtures missing: {}", fixtures.len());
    for (i, (name, body)) in fixtures.iter().enumerate() {
        let trace = format!("0d492786-ae82-4073-aa88-{i:012}");
        let (status, resp) =
            post(&env, Shape::FunctionUrl, &[("X-API-Key", KEY), ("X-Trace-ID", &trace)], body, false).await;
        assert_eq!(status, 200, "{name}: {resp}");
        let parked = name.starts_with("quirk-missing");
        assert_eq!(resp["status"], if parked { "parked" } else { "enqueued" }, "{name}");
        assert_eq!(resp["trace_id"], trace.as_str(), "{name}");
    }

    let inbox = env.peek_all(&env.stack.inbox.url).await.unwrap();
    let parking = env.peek_all(&env.stack.inbox.dlq_url).await.unwrap();
    assert_eq!(inbox.len() + parking.len(), fixtures.len());
    assert_eq!(parking.len(), 2, "the two fixtures without event_no / mall_id are parked");

    for m in inbox.iter().chain(parking.iter()) {
        let env_json: Value = serde_json::from_str(m.body().unwrap()).unwrap();
        let trace = env_json["trace_id"].as_str().unwrap();
        let (name, body) = &fixtures[trace.rsplit('-').next().unwrap().parse::<usize>().unwrap()];
        let original: Value = serde_json::from_slice(body).unwrap();

        assert_eq!(attr(m, Sys::MessageDeduplicationId).unwrap(), format!("t-{trace}"), "{name}");
        assert_eq!(env_json["dedup_id"], format!("t-{trace}").as_str());
        assert_eq!(env_json["v"], 1);
        assert_eq!(env_json["source"], "cafe24-webhook");
        assert!(env_json["received_at_ms"].as_u64().unwrap() > 1_700_000_000_000);
        assert_eq!(env_json["payload"], original, "{name}: payload must be carried unchanged");
        // Byte for byte, not just the same JSON value.
        let body_str = std::str::from_utf8(body).unwrap();
        assert!(m.body().unwrap().contains(body_str.trim_end()), "{name}: payload bytes changed");

        let group = attr(m, Sys::MessageGroupId).unwrap();
        if name.starts_with("quirk-missing") {
            assert_eq!(group, "_parked", "{name}");
            assert!(env_json["parked"].is_string(), "{name}");
        } else {
            let mall = original["resource"]["mall_id"].as_str().or(original["mall_id"].as_str()).unwrap();
            assert_eq!(group, mall, "{name}");
            assert_eq!(env_json["mall_id"], mall);
            let want_event: u64 = match &original["event_no"] {
                Value::String(s) => s.parse().unwrap(),
                v => v.as_u64().unwrap(),
            };
            assert_eq!(env_json["event_no"].as_u64(), Some(want_event), "{name}");
            assert!(env_json["parked"].is_null());
        }
    }
}

#[tokio::test]
async fn identical_bodies_with_different_trace_ids_are_two_messages() {
    let env = TestEnv::new("twotrace").await.unwrap();
    let body = fixture(ORDER);
    for t in ["trace-a", "trace-b"] {
        let (s, _) = post(&env, Shape::FunctionUrl, &[("X-API-Key", KEY), ("X-Trace-ID", t)], &body, false).await;
        assert_eq!(s, 200);
    }
    assert_eq!(env.depth(&env.stack.inbox.url).await.unwrap(), 2);
}

#[tokio::test]
async fn the_same_delivery_twice_is_one_message() {
    let env = TestEnv::new("redeliver").await.unwrap();
    let body = fixture(ORDER);
    for _ in 0..2 {
        let (s, _) =
            post(&env, Shape::FunctionUrl, &[("X-API-Key", KEY), ("X-Trace-ID", "same-trace")], &body, false).await;
        assert_eq!(s, 200);
    }
    // Without a trace header the body hash is the dedup id: a retry of the same body is one too.
    let other = fixture("cafe24/90025-payment-status-changed.json");
    for _ in 0..2 {
        let (s, _) = post(&env, Shape::HttpApiV2, &[("X-API-Key", KEY)], &other, false).await;
        assert_eq!(s, 200);
    }
    assert_eq!(env.depth(&env.stack.inbox.url).await.unwrap(), 2);
}

#[tokio::test]
async fn wrong_or_missing_key_is_403_without_detail_and_enqueues_nothing() {
    let env = TestEnv::new("unauth").await.unwrap();
    let body = fixture(ORDER);
    for headers in [
        vec![],
        vec![("X-API-Key", "wrong")],
        vec![("X-API-Key", "")],
        vec![("X-API-Key", "test-webhook-key-current-and-more")],
        vec![("Authorization", KEY)],
    ] {
        let ingest = env.ingest();
        let event = http_event(Shape::FunctionUrl, "POST", "/webhooks/cafe24", &headers, &body, false);
        let r = ingest.handle(to_request(&event)).await;
        assert_eq!(r.status().as_u16(), 403, "{headers:?}");
        assert!(AsRef::<[u8]>::as_ref(r.body()).is_empty(), "403 must carry no detail");
    }
    assert_nothing_enqueued(&env).await;
}

#[tokio::test]
async fn previous_key_is_accepted_during_rotation() {
    let env = TestEnv::new("rotate").await.unwrap();
    let (s, _) = post(&env, Shape::FunctionUrl, &[("X-API-Key", PREVIOUS_KEY)], &fixture(ORDER), false).await;
    assert_eq!(s, 200);
    assert_eq!(env.depth(&env.stack.inbox.url).await.unwrap(), 1);
}

#[tokio::test]
async fn oversized_body_is_413_and_enqueues_nothing() {
    let env = TestEnv::new("big").await.unwrap();
    let cap = env.ingest_config().max_body_bytes;
    let mut body = br#"{"event_no":90023,"resource":{"mall_id":"shop1","pad":""#.to_vec();
    body.resize(cap + 1 - 3, b'x');
    body.extend_from_slice(b"\"}}");
    assert_eq!(body.len(), cap + 1);
    let (s, resp) = post(&env, Shape::FunctionUrl, &[("X-API-Key", KEY)], &body, false).await;
    assert_eq!(s, 413);
    assert_eq!(resp["error"]["code"], "payload_too_large");
    assert_nothing_enqueued(&env).await;

    // One byte less is the largest accepted body, and it fits in one SQS message.
    body.remove(body.len() - 4);
    let (s, _) = post(&env, Shape::FunctionUrl, &[("X-API-Key", KEY)], &body, true).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn non_json_and_truncated_bodies_are_400_with_a_json_error() {
    let env = TestEnv::new("badjson").await.unwrap();
    let full = fixture(ORDER);
    for body in [b"event_no=90023".to_vec(), full[..full.len() / 2].to_vec(), Vec::new(), vec![0xff, 0xfe, 0x00]] {
        let (s, resp) = post(&env, Shape::FunctionUrl, &[("X-API-Key", KEY)], &body, true).await;
        assert_eq!(s, 400);
        assert_eq!(resp["error"]["code"], "invalid_json");
        assert!(resp["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert_nothing_enqueued(&env).await;
}

#[tokio::test]
async fn quirky_but_authentic_payloads_are_accepted() {
    let env = TestEnv::new("quirks").await.unwrap();
    let cases = [
        ("cafe24/quirk-event-no-as-string.json", "enqueued"),
        ("cafe24/quirk-no-resource-wrapper.json", "enqueued"),
        ("cafe24/90041-products-bulk-updated.json", "enqueued"),
        ("cafe24/quirk-missing-event-no.json", "parked"),
        ("cafe24/quirk-missing-mall-id.json", "parked"),
    ];
    for (f, want) in cases {
        let (s, resp) = post(&env, Shape::HttpApiV2, &[("X-API-Key", KEY)], &fixture(f), false).await;
        assert_eq!((s, resp["status"].as_str()), (200, Some(want)), "{f}");
    }
    // JSON that is not even an object is authentic too: parked, not rejected.
    let (s, resp) = post(&env, Shape::HttpApiV2, &[("X-API-Key", KEY)], b"[90023]", false).await;
    assert_eq!((s, resp["status"].as_str()), (200, Some("parked")));
    assert_eq!(env.depth(&env.stack.inbox.url).await.unwrap(), 3);
    let parked = env.peek_all(&env.stack.inbox.dlq_url).await.unwrap();
    let reasons: Vec<String> = parked
        .iter()
        .map(|m| serde_json::from_str::<Value>(m.body().unwrap()).unwrap()["parked"].as_str().unwrap().to_owned())
        .collect();
    for r in ["missing_event_no", "missing_mall_id", "not_an_object"] {
        assert!(reasons.iter().any(|x| x == r), "{r} not in {reasons:?}");
    }
}

#[tokio::test]
async fn missing_queue_gives_503_and_nothing_is_acknowledged() {
    let env = TestEnv::new("noqueue").await.unwrap();
    env.sqs.delete_queue().queue_url(&env.stack.inbox.url).send().await.unwrap();
    let (s, resp) = post(&env, Shape::FunctionUrl, &[("X-API-Key", KEY)], &fixture(ORDER), false).await;
    assert_eq!(s, 503);
    assert_eq!(resp["error"]["code"], "unavailable");
}

#[tokio::test]
async fn stopped_sqs_server_gives_503() {
    let mut moto = devstack::moto::PrivateMoto::start().await.unwrap();
    let env = TestEnv::on(&moto.url, "outage").await.unwrap();
    let ingest = env.ingest();
    moto.stop().await.unwrap();
    let event =
        http_event(Shape::FunctionUrl, "POST", "/webhooks/cafe24", &[("X-API-Key", KEY)], &fixture(ORDER), false);
    let started = std::time::Instant::now();
    let (s, resp) = response_parts(&ingest.handle(to_request(&event)).await);
    assert_eq!(s, 503, "{resp}");
    assert!(started.elapsed() < std::time::Duration::from_secs(15), "must fail fast, took {:?}", started.elapsed());
}

#[tokio::test]
async fn every_event_shape_is_accepted_including_base64_bodies() {
    let env = TestEnv::new("shapes").await.unwrap();
    let body = fixture(ORDER);
    let mut n = 0;
    for shape in [Shape::FunctionUrl, Shape::HttpApiV2, Shape::HttpApiV2Staged] {
        for b64 in [false, true] {
            n += 1;
            let trace = format!("shape-{n}");
            let (s, resp) = post(&env, shape, &[("X-API-Key", KEY), ("X-Trace-ID", &trace)], &body, b64).await;
            assert_eq!(s, 200, "{shape:?} base64={b64}: {resp}");
        }
    }
    let msgs = env.peek_all(&env.stack.inbox.url).await.unwrap();
    assert_eq!(msgs.len(), n);
    for m in msgs {
        let e: Value = serde_json::from_str(m.body().unwrap()).unwrap();
        assert_eq!(e["payload"], serde_json::from_slice::<Value>(&body).unwrap());
    }
}

#[tokio::test]
async fn other_routes_and_methods_are_refused() {
    let env = TestEnv::new("routes").await.unwrap();
    let ingest = env.ingest();
    let r = ingest
        .handle(to_request(&http_event(Shape::FunctionUrl, "POST", "/other", &[("X-API-Key", KEY)], b"{}", false)))
        .await;
    assert_eq!(r.status().as_u16(), 404);
    let r = ingest
        .handle(to_request(&http_event(
            Shape::FunctionUrl,
            "GET",
            "/webhooks/cafe24",
            &[("X-API-Key", KEY)],
            b"",
            false,
        )))
        .await;
    assert_eq!(r.status().as_u16(), 405);
    assert_nothing_enqueued(&env).await;
}
