//! The ingest boundary under arbitrary input: any method, path, query string, headers and body
//! (raw or base64) through the event conversion the binary uses and the whole handler. No
//! panic; every answer one of the documented ones; nothing queued for a rejected request; 200
//! only with the key, and then exactly one message.
//!
//! `make test` runs 2,000 cases; `PROPTEST_CASES=100000 cargo test --release -p webhook-ingest
//! --test fuzz_boundary` is the long run (figures in docs/reliability.md).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use base64::Engine as _;
use proptest::prelude::*;
use relay_domain::ports::memory::MemoryQueue;
use serde_json::{json, Value};
use webhook_ingest::{Ingest, IngestConfig};

const KEY: &str = "fuzz-key-0123456789";

fn ingest() -> (Ingest<MemoryQueue>, MemoryQueue, MemoryQueue) {
    let cfg = IngestConfig::from_lookup(|k| match k {
        "WEBHOOK_API_KEY" => Some(KEY.into()),
        "INBOX_QUEUE_URL" => Some("https://sqs.ap-northeast-2.amazonaws.com/1/inbox.fifo".into()),
        "PARKING_QUEUE_URL" => Some("https://sqs.ap-northeast-2.amazonaws.com/1/inbox-dlq.fifo".into()),
        "MAX_BODY_BYTES" => Some("4096".into()),
        _ => None,
    })
    .unwrap();
    let (inbox, parking) = (MemoryQueue::default(), MemoryQueue::default());
    (Ingest::new(&cfg, inbox.clone(), parking.clone()), inbox, parking)
}

fn event(method: &str, path: &str, query: &str, headers: &[(String, String)], body: &[u8], b64: bool) -> Value {
    let h: serde_json::Map<String, Value> =
        headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), Value::String(v.clone()))).collect();
    json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query, "headers": h,
        "requestContext": {"accountId": "anonymous", "apiId": "fuzz", "domainName": "fuzz.lambda-url.us-east-1.on.aws",
            "domainPrefix": "fuzz", "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
            "sourceIp": "203.0.113.7", "userAgent": "fuzz"}, "requestId": "r", "routeKey": "$default",
            "stage": "$default", "time": "01/Dec/2026:00:00:00 +0000", "timeEpoch": 1_795_000_000_000u64},
        "body": if b64 { base64::engine::general_purpose::STANDARD.encode(body) } else { String::from_utf8_lossy(body).into_owned() },
        "isBase64Encoded": b64
    })
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![Just("POST".to_owned()), Just("GET".to_owned()), Just("PUT".to_owned()), "[A-Z]{1,7}"]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("/webhooks/cafe24".to_owned()),
        1 => Just("/webhooks/cafe24/".to_owned()),
        1 => Just("/install".to_owned()),
        1 => Just("/oauth/callback".to_owned()),
        1 => "/[ -~]{0,40}",
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..600),
        3 => (any::<u32>(), "[a-z0-9_-]{0,20}", "[ -~]{0,40}").prop_map(|(n, m, o)| {
            format!(r#"{{"event_no":{n},"resource":{{"mall_id":"{m}","order_id":"{o}"}}}}"#).into_bytes()
        }),
        1 => Just(vec![b'x'; 5000]),
        1 => "[ -~]{0,200}".prop_map(String::into_bytes),
    ]
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    let key = prop_oneof![Just(Some(KEY.to_owned())), Just(None), "[ -~]{0,30}".prop_map(Some)];
    let trace = prop_oneof![Just(None), "[ -~]{0,60}".prop_map(Some), "[0-9a-f-]{36}".prop_map(Some)];
    let extra = proptest::collection::vec(("[a-z-]{1,12}", "[ -~]{0,30}"), 0..3);
    (key, trace, extra).prop_map(|(k, t, extra)| {
        let mut h = vec![("host".to_owned(), "fuzz.lambda-url.us-east-1.on.aws".to_owned())];
        if let Some(k) = k {
            h.push(("x-api-key".into(), k));
        }
        if let Some(t) = t {
            h.push(("x-trace-id".into(), t));
        }
        h.extend(extra.into_iter().filter(|(n, _)| n != "x-api-key" && n != "host"));
        h
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        // PROPTEST_CASES (the long run) wins over the default 2,000 of `make test`.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_request_gets_a_documented_answer_and_rejections_queue_nothing(
        m in method(), p in path(), q in "[ -~]{0,80}", h in headers(), b in body(), b64 in any::<bool>()
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (svc, inbox, parking) = ingest();
        let ev = event(&m, &p, &q, &h, &b, b64);
        let req = webhook_ingest::event::request_from_json(ev, None);
        prop_assert!(req.is_ok(), "the event did not convert: {:?}", req.err());
        let resp = rt.block_on(svc.handle(req.unwrap()));
        let status = resp.status().as_u16();
        prop_assert!([200, 400, 403, 404, 405, 413, 503].contains(&status), "undocumented {status}");
        let queued = inbox.messages().len() + parking.messages().len();
        let authentic = h.iter().any(|(k, v)| k == "x-api-key" && v == KEY);
        if status == 200 {
            prop_assert!(authentic, "200 without the key");
            prop_assert_eq!(queued, 1, "an accepted webhook is exactly one message");
        } else {
            prop_assert_eq!(queued, 0, "a rejected request queued something ({})", status);
        }
        if status == 403 {
            prop_assert!(resp.body().is_empty(), "a 403 says nothing");
        }
    }
}
