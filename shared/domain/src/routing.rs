//! From an inbox envelope to jobs: the routing table (`event_no` → what to do), id extraction
//! with Cafe24's quirks (comma-joined bulk ids, numbers or strings, with or without the
//! `resource` wrapper), and job ids derived so that replaying an inbox message makes the same jobs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::envelope::InboxEnvelope;
use crate::ids::{DedupId, MallId};
use crate::jobs::{Job, JobKind, JOB_VERSION};
use crate::ratelimit::Class;

/// What an event number leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// One `SyncOrder` per `order_id` (comma-joined ids fan out).
    SyncOrder,
    /// One `SyncProduct` per `product_no`; a deleted product's fetch answers 404 → tombstone.
    SyncProduct,
    /// One `SyncCustomer` per `member_id`.
    SyncCustomer,
    /// The app was deleted from the mall: mark it uninstalled, drop its tokens and later work.
    Uninstall,
    /// No Cafe24 call: only delivered to the app as `webhook.received` (the default for every
    /// event number without a sync route).
    Forward,
    /// Accepted and counted, not even delivered (an explicit opt-out; no default uses it).
    Ignore,
}

/// The routing table: defaults below, overridable without recompiling (`ROUTING_OVERRIDES`,
/// a JSON object such as `{"90157":"forward","90150":"ignore","90999":"sync_order"}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutingTable {
    routes: BTreeMap<u32, Route>,
}

/// The default routes.
pub const DEFAULT_ROUTES: &[(u32, Route)] = &[
    // Orders: placed, shipping status, payment, cancellation, return, exchange, refund, 90031,
    // shipping information (address) changed, tracking number changed.
    (90023, Route::SyncOrder),
    (90024, Route::SyncOrder),
    (90025, Route::SyncOrder),
    (90026, Route::SyncOrder),
    (90027, Route::SyncOrder),
    (90028, Route::SyncOrder),
    (90029, Route::SyncOrder),
    (90031, Route::SyncOrder),
    (90064, Route::SyncOrder),
    (90162, Route::SyncOrder),
    // Order memo events: a memo is not part of the order the relay fetches; delivered as is.
    (90066, Route::Forward),
    (90068, Route::Forward),
    (90069, Route::Forward),
    // Bulk order events (ids comma-joined): shipping, cancellation, refund, return.
    (90071, Route::SyncOrder),
    (90072, Route::SyncOrder),
    (90073, Route::SyncOrder),
    (90074, Route::SyncOrder),
    // Products: created, updated, deleted (→ 404 → tombstone), restored, bulk-updated, stock, sold out.
    (90001, Route::SyncProduct),
    (90002, Route::SyncProduct),
    (90003, Route::SyncProduct),
    (90022, Route::SyncProduct),
    (90041, Route::SyncProduct),
    (90075, Route::SyncProduct),
    (90150, Route::SyncProduct),
    // Customers: signed up, info changed, deleted (the fetch finds none → tombstone).
    (90032, Route::SyncCustomer),
    (90080, Route::SyncCustomer),
    (90147, Route::SyncCustomer),
    // App deleted; app expired and renewed are forwarded (the mall keeps its tokens until deletion).
    (90077, Route::Uninstall),
    (90078, Route::Forward),
    (90079, Route::Forward),
    // Billing events: nothing to fetch; delivered as is.
    (90157, Route::Forward),
    (90158, Route::Forward),
    (90159, Route::Forward),
];

impl Default for RoutingTable {
    fn default() -> Self {
        Self { routes: DEFAULT_ROUTES.iter().copied().collect() }
    }
}

/// A routing override that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("ROUTING_OVERRIDES is invalid: {0}")]
pub struct RoutingError(pub String);

impl RoutingTable {
    /// Defaults plus overrides from a JSON object of `"event_no": "route"`.
    pub fn with_overrides(json: Option<&str>) -> Result<Self, RoutingError> {
        let mut t = Self::default();
        if let Some(j) = json.map(str::trim).filter(|j| !j.is_empty()) {
            let map: BTreeMap<String, Route> = serde_json::from_str(j).map_err(|e| RoutingError(e.to_string()))?;
            for (k, r) in map {
                let n = k.trim().parse::<u32>().map_err(|_| RoutingError(format!("{k:?} is not an event number")))?;
                t.routes.insert(n, r);
            }
        }
        Ok(t)
    }

    /// The route of an event number (`None` = unknown: forwarded).
    pub fn route(&self, event_no: u32) -> Option<Route> {
        self.routes.get(&event_no).copied()
    }
}

/// When the app was deleted from the mall, as far as the webhook tells: Cafe24's
/// `deleted_date` (whole seconds, KST), else when the relay received the webhook (later than
/// the deletion when the delivery was retried).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UninstalledAt {
    /// Epoch ms.
    pub ms: u64,
    /// `true` when it is Cafe24's `deleted_date`, `false` when it is the receipt time.
    pub from_cafe24: bool,
}

impl UninstalledAt {
    /// From a 90077's `resource` and the envelope's receipt time.
    pub fn of(resource: &Value, received_at_ms: u64) -> Self {
        match resource.get("deleted_date").and_then(Value::as_str).and_then(crate::tokens::parse_cafe24_token_time) {
            Some(ms) => Self { ms, from_cafe24: true },
            None => Self { ms: received_at_ms, from_cafe24: false },
        }
    }
}

/// What to do with one inbox envelope.
#[derive(Clone, Debug, PartialEq)]
pub enum Dispatch {
    /// Enqueue these jobs (group = rate-limit key).
    Jobs(Vec<Job>),
    /// Mark the mall uninstalled.
    Uninstall(MallId, UninstalledAt),
    /// No job: deliver the webhook to the app only (reason for logs/metrics).
    Forward(&'static str),
    /// Nothing to do, not delivered (reason for logs/metrics).
    Ignore(&'static str),
    /// Cannot be routed: park it (reason).
    Park(&'static str),
}

/// Ids in a field that may be a number, a string, or a comma-joined string of either.
pub fn split_ids(v: Option<&Value>) -> Vec<String> {
    let raw = match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned).or_else(|| x.as_u64().map(|n| n.to_string())))
            .collect::<Vec<_>>()
            .join(","),
        _ => String::new(),
    };
    let mut out: Vec<String> = Vec::new();
    for id in raw.split(',').map(str::trim).filter(|s| !s.is_empty() && s.len() <= 64) {
        if !out.iter().any(|o| o == id) {
            out.push(id.to_owned());
        }
    }
    out
}

/// The job id: derived from the event's dedup id, the job kind and the target id, so replaying an
/// inbox message yields the same ids (and SQS dedup + the worker's idempotency make it single).
pub fn job_id(event_dedup: &DedupId, kind: &str, target: &str) -> DedupId {
    DedupId::derive("job", &[event_dedup.as_str().as_bytes(), kind.as_bytes(), target.as_bytes()])
}

/// Plans the dispatch of one envelope.
pub fn plan(table: &RoutingTable, env: &InboxEnvelope) -> Dispatch {
    if env.parked.is_some() {
        return Dispatch::Park("parked_at_ingest");
    }
    let (Some(event_no), Some(mall)) = (env.event_no, env.mall_id.clone()) else {
        return Dispatch::Park("missing_event_or_mall");
    };
    let Some(route) = table.route(event_no.0) else { return Dispatch::Forward("unknown_event_no") };
    let payload: Value = match serde_json::from_str(env.payload.get()) {
        Ok(v) => v,
        Err(_) => return Dispatch::Park("payload_not_json"),
    };
    let resource = payload.get("resource").filter(|r| r.is_object()).unwrap_or(&payload);
    // The shop whose view every call of the jobs asks for (an Admin API call without
    // `shop_no` answers for shop 1, whatever shop the event was of).
    let Some(shop_no) = crate::ShopNo::from_event(resource.get("event_shop_no")) else {
        return Dispatch::Park("bad_shop_no");
    };
    let make = |kind: JobKind, target: &str| Job {
        v: JOB_VERSION,
        job_id: job_id(&env.dedup_id, kind.name(), &shop_no.entity_key(target)),
        mall_id: mall.clone(),
        shop_no,
        kind,
        class: Class::Live,
        trace_id: Some(env.trace_id.clone()),
        event_received_ms: env.received_at_ms,
    };
    let jobs: Vec<Job> = match route {
        Route::Forward => return Dispatch::Forward("forwarded"),
        Route::Ignore => return Dispatch::Ignore("ignored_event_no"),
        Route::Uninstall => return Dispatch::Uninstall(mall, UninstalledAt::of(resource, env.received_at_ms)),
        Route::SyncOrder => split_ids(resource.get("order_id"))
            .iter()
            .filter(|id| crate::ids::is_resource_id(id))
            .map(|id| make(JobKind::SyncOrder { order_id: id.clone() }, id))
            .collect(),
        Route::SyncProduct => split_ids(resource.get("product_no"))
            .iter()
            .filter_map(|id| id.parse::<u64>().ok())
            .map(|no| make(JobKind::SyncProduct { product_no: no }, &no.to_string()))
            .collect(),
        Route::SyncCustomer => split_ids(resource.get("member_id"))
            .iter()
            .filter(|id| crate::ids::is_resource_id(id))
            .map(|id| make(JobKind::SyncCustomer { member_id: id.clone() }, id))
            .collect(),
    };
    if jobs.is_empty() {
        Dispatch::Park("no_target_id")
    } else {
        Dispatch::Jobs(jobs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::classify;
    use crate::TraceId;

    fn envelope(body: &str, trace: &str) -> InboxEnvelope {
        let (_, c) = classify(body.as_bytes()).unwrap();
        InboxEnvelope::new(
            TraceId::from_header(trace).unwrap(),
            DedupId::for_webhook(Some(trace), body.as_bytes()),
            1_000,
            &c,
            body.as_bytes(),
        )
        .unwrap()
    }

    fn kinds(d: &Dispatch) -> Vec<String> {
        match d {
            Dispatch::Jobs(j) => j.iter().map(|j| serde_json::to_value(&j.kind).unwrap().to_string()).collect(),
            other => vec![format!("{other:?}")],
        }
    }

    #[test]
    fn every_fixture_routes_to_the_expected_jobs() {
        let t = RoutingTable::default();
        let cases: &[(&str, &[&str])] = &[
            (
                include_str!("../../../tests/fixtures/cafe24/90001-product-created.json"),
                &[r#"{"kind":"sync_product","product_no":36518}"#],
            ),
            (
                include_str!("../../../tests/fixtures/cafe24/90003-product-deleted.json"),
                &[r#"{"kind":"sync_product","product_no":7178}"#],
            ),
            (
                include_str!("../../../tests/fixtures/cafe24/90023-order-placed.json"),
                &[r#"{"kind":"sync_order","order_id":"20200717-0029236"}"#],
            ),
            (
                include_str!("../../../tests/fixtures/cafe24/90025-payment-status-changed.json"),
                &[r#"{"kind":"sync_order","order_id":"20200717-0029236"}"#],
            ),
            (
                include_str!("../../../tests/fixtures/cafe24/90041-products-bulk-updated.json"),
                &[
                    r#"{"kind":"sync_product","product_no":17652}"#,
                    r#"{"kind":"sync_product","product_no":17394}"#,
                    r#"{"kind":"sync_product","product_no":17293}"#,
                    r#"{"kind":"sync_product","product_no":16807}"#,
                    r#"{"kind":"sync_product","product_no":16118}"#,
                ],
            ),
            (
                include_str!("../../../tests/fixtures/cafe24/90072-cancellation-bulk.json"),
                &[
                    r#"{"kind":"sync_order","order_id":"20200713-0000039"}"#,
                    r#"{"kind":"sync_order","order_id":"20200708-0000080"}"#,
                ],
            ),
            (
                include_str!("../../../tests/fixtures/cafe24/90077-app-deleted.json"),
                &[r#"Uninstall(MallId("leesunsin"), UninstalledAt { ms: 1593574215000, from_cafe24: true })"#],
            ),
            (
                include_str!("../../../tests/fixtures/cafe24/quirk-event-no-as-string.json"),
                &[r#"{"kind":"sync_order","order_id":"20200717-0029236"}"#],
            ),
            (
                include_str!("../../../tests/fixtures/cafe24/quirk-no-resource-wrapper.json"),
                &[r#"{"kind":"sync_product","product_no":36518}"#],
            ),
            (
                include_str!("../../../tests/fixtures/cafe24/quirk-missing-event-no.json"),
                &[r#"Park("parked_at_ingest")"#],
            ),
            (
                include_str!("../../../tests/fixtures/cafe24/quirk-missing-mall-id.json"),
                &[r#"Park("parked_at_ingest")"#],
            ),
        ];
        for (body, want) in cases {
            let got = kinds(&plan(&t, &envelope(body, "trace-1")));
            assert_eq!(got, want.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "{body}");
        }
    }

    #[test]
    fn replaying_an_envelope_gives_the_same_job_ids_and_different_events_different_ones() {
        let t = RoutingTable::default();
        let body = include_str!("../../../tests/fixtures/cafe24/90072-cancellation-bulk.json");
        let ids = |d: Dispatch| match d {
            Dispatch::Jobs(j) => j.into_iter().map(|j| j.job_id.as_str().to_owned()).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        let a = ids(plan(&t, &envelope(body, "trace-1")));
        assert_eq!(a, ids(plan(&t, &envelope(body, "trace-1"))));
        assert_ne!(a, ids(plan(&t, &envelope(body, "trace-2"))));
        assert_ne!(a[0], a[1], "one id per target");
        assert!(a.iter().all(|id| DedupId::parse(id).is_some()), "job ids are valid SQS dedup ids");
    }

    #[test]
    fn unknown_and_unroutable_events() {
        let t = RoutingTable::default();
        assert_eq!(
            plan(&t, &envelope(r#"{"event_no":12345,"resource":{"mall_id":"m"}}"#, "t")),
            Dispatch::Forward("unknown_event_no")
        );
        assert_eq!(
            plan(&t, &envelope(r#"{"event_no":90023,"resource":{"mall_id":"m"}}"#, "t")),
            Dispatch::Park("no_target_id")
        );
        assert_eq!(
            plan(&t, &envelope(r#"{"event_no":90001,"resource":{"mall_id":"m","product_no":"abc"}}"#, "t")),
            Dispatch::Park("no_target_id")
        );
        assert_eq!(
            plan(&t, &envelope(r#"{"event_no":90078,"resource":{"mall_id":"m"}}"#, "t")),
            Dispatch::Forward("forwarded")
        );
    }

    #[test]
    fn an_events_shop_travels_into_its_jobs_and_an_unusable_one_is_parked() {
        let t = RoutingTable::default();
        let jobs = |body: &str| match plan(&t, &envelope(body, "t")) {
            Dispatch::Jobs(j) => j,
            other => panic!("{other:?}"),
        };
        let two = jobs(r#"{"event_no":90001,"resource":{"mall_id":"m","event_shop_no":"2","product_no":12}}"#);
        let one = jobs(r#"{"event_no":90001,"resource":{"mall_id":"m","event_shop_no":"1","product_no":12}}"#);
        let none = jobs(r#"{"event_no":90001,"resource":{"mall_id":"m","product_no":12}}"#);
        assert_eq!((two[0].shop_no.get(), one[0].shop_no.get(), none[0].shop_no.get()), (2, 1, 1));
        assert_eq!(two[0].target(), Some((crate::SnapshotKind::Product, "2/12".into())));
        assert_eq!(one[0].job_id, none[0].job_id, "shop 1 named or not: the same job as before shops were read");
        for bad in [r#""0""#, r#""x""#, "[2]", "-1"] {
            let body =
                format!(r#"{{"event_no":90001,"resource":{{"mall_id":"m","event_shop_no":{bad},"product_no":12}}}}"#);
            assert_eq!(plan(&t, &envelope(&body, "t")), Dispatch::Park("bad_shop_no"), "{bad}");
        }
    }

    /// Every event number of Cafe24's published tables (the project's reference on the platform,
    /// sections 4 and 5; docs/cafe24-conformance.md) has a route of its own, and the one meant.
    #[test]
    fn every_published_event_number_has_its_intended_route() {
        use Route::*;
        const PUBLISHED: &[(u32, Route)] = &[
            (90001, SyncProduct),  // product created
            (90002, SyncProduct),  // product updated
            (90003, SyncProduct),  // product deleted
            (90022, SyncProduct),  // product restored
            (90041, SyncProduct),  // products bulk-updated
            (90075, SyncProduct),  // variant inventory changed
            (90150, SyncProduct),  // sold-out status changed
            (90023, SyncOrder),    // order placed
            (90024, SyncOrder),    // shipping status changed
            (90025, SyncOrder),    // payment status changed
            (90026, SyncOrder),    // cancellation status changed
            (90027, SyncOrder),    // return status changed
            (90028, SyncOrder),    // exchange status changed
            (90029, SyncOrder),    // refund status changed
            (90064, SyncOrder),    // order shipping information changed
            (90071, SyncOrder),    // shipping, bulk
            (90072, SyncOrder),    // cancellation, bulk
            (90073, SyncOrder),    // refund, bulk
            (90074, SyncOrder),    // return, bulk
            (90162, SyncOrder),    // tracking number changed
            (90066, Forward),      // order memo
            (90068, Forward),      // order memo
            (90069, Forward),      // order memo
            (90032, SyncCustomer), // customer signed up
            (90080, SyncCustomer), // customer info changed
            (90147, SyncCustomer), // customer deleted
            (90077, Uninstall),    // app deleted from the mall
            (90078, Forward),      // app expired
            (90079, Forward),      // app renewed
            (90157, Forward),      // billing
            (90158, Forward),      // billing
            (90159, Forward),      // billing
        ];
        let t = RoutingTable::default();
        for (no, route) in PUBLISHED {
            assert_eq!(t.route(*no), Some(*route), "event {no}");
        }
        let deleted = envelope(r#"{"event_no":90147,"resource":{"mall_id":"m","member_id":"kim01"}}"#, "t");
        match plan(&t, &deleted) {
            Dispatch::Jobs(j) => assert_eq!(
                j.iter().map(|j| j.kind.clone()).collect::<Vec<_>>(),
                vec![JobKind::SyncCustomer { member_id: "kim01".into() }]
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn overrides_change_routes_without_recompiling() {
        let t =
            RoutingTable::with_overrides(Some(r#"{"90023":"ignore","99999":"sync_order","90001":"forward"}"#)).unwrap();
        assert_eq!(t.route(90023), Some(Route::Ignore));
        assert_eq!(t.route(90001), Some(Route::Forward));
        assert_eq!(
            plan(&t, &envelope(r#"{"event_no":90001,"resource":{"mall_id":"m","product_no":1}}"#, "t")),
            Dispatch::Forward("forwarded"),
            "a forwarded sync event makes no job"
        );
        assert_eq!(
            plan(&t, &envelope(r#"{"event_no":90023,"resource":{"mall_id":"m","order_id":"o"}}"#, "t")),
            Dispatch::Ignore("ignored_event_no")
        );
        assert_eq!(t.route(99999), Some(Route::SyncOrder));
        assert_eq!(t.route(90002), Some(Route::SyncProduct));
        for bad in [r#"{"x":"ignore"}"#, r#"{"90023":"launch"}"#, "[1]", "{"] {
            assert!(RoutingTable::with_overrides(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn bulk_ids_are_split_trimmed_and_deduplicated() {
        assert_eq!(split_ids(Some(&serde_json::json!(" a, b ,a,,c "))), vec!["a", "b", "c"]);
        assert_eq!(split_ids(Some(&serde_json::json!(17))), vec!["17"]);
        assert_eq!(split_ids(Some(&serde_json::json!(["1", 2]))), vec!["1", "2"]);
        assert!(split_ids(Some(&serde_json::json!({"x": 1}))).is_empty());
        assert!(split_ids(None).is_empty());
    }

    #[test]
    fn ids_that_would_change_the_admin_api_url_make_no_job() {
        let t = RoutingTable::default();
        let d = plan(&t, &envelope(r#"{"event_no":90023,"resource":{"mall_id":"shop1","order_id":".."}}"#, "dots-1"));
        assert_eq!(d, Dispatch::Park("no_target_id"));
        let d = plan(
            &t,
            &envelope(
                r#"{"event_no":90072,"resource":{"mall_id":"shop1","order_id":"20200713-0000039,.,a/b"}}"#,
                "dots-2",
            ),
        );
        assert_eq!(kinds(&d), vec![r#"{"kind":"sync_order","order_id":"20200713-0000039"}"#]);
        let d = plan(&t, &envelope(r#"{"event_no":90032,"resource":{"mall_id":"shop1","member_id":"."}}"#, "dots-3"));
        assert_eq!(d, Dispatch::Park("no_target_id"));
    }
}
