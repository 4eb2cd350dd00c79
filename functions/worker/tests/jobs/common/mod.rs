//! The worker's test fixture without moto: the ports are the in-memory fakes of `relay-domain`
//! (`test-util`), Cafe24 is the simulator in-process. Shared by the worker's test binaries.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use cafe24_sim::state::{AppConfig, Fault, FaultKind, ALL_READ_SCOPES, ALL_WRITE_SCOPES};
use cafe24_sim::{Clock, Sim, SimConfig};
use relay_cafe24::{Cafe24, Cafe24Config};
use relay_domain::jobs::{Job, JobKind};
use relay_domain::ports::RateGate;
use relay_domain::ratelimit::Class;
use relay_domain::tokens::{TokenPair, TokenStore};
use relay_domain::MallId;
use worker::{With, Worker, WorkerConfig};

pub use relay_domain::ports::memory::{
    MemoryBus, MemoryGate, MemoryQueue, MemoryState, MemoryTokens, MemoryVisibility,
};

/// The in-memory ports, on a rate gate of the test's choice.
pub type MemoryPorts<G = MemoryGate> = With<G, MemoryTokens, MemoryState, MemoryQueue, MemoryVisibility, MemoryBus>;

pub type W = Worker<MemoryPorts>;

pub struct Fx {
    pub sim: Arc<Sim>,
    pub base: String,
    pub gate: MemoryGate,
    pub tokens: MemoryTokens,
    pub state: MemoryState,
    pub dlq: MemoryQueue,
    pub inbox: MemoryQueue,
    pub vis: MemoryVisibility,
    pub bus: MemoryBus,
    pub mall: MallId,
}

impl Fx {
    pub async fn new() -> Self {
        Self::with(|_| {}).await
    }

    pub async fn with(tweak: impl FnOnce(&mut SimConfig)) -> Self {
        let app = AppConfig {
            client_id: "relay-client".into(),
            client_secret: "relay-secret".into(),
            scopes: ALL_READ_SCOPES.iter().chain(ALL_WRITE_SCOPES).map(|s| s.to_string()).collect(),
        };
        let mut config = SimConfig { apps: vec![app], orders_per_mall: 3, ..SimConfig::default() };
        tweak(&mut config);
        let sim = Arc::new(Sim::new(config, Clock::Real));
        let (addr, _t) = cafe24_sim::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let tokens = MemoryTokens::default();
        let scopes: Vec<String> = ALL_READ_SCOPES.iter().chain(ALL_WRITE_SCOPES).map(|s| s.to_string()).collect();
        let (a, r) = sim.seed_tokens("shop", "relay-client", scopes.clone());
        let now = sim.clock.now_ms();
        let mall = MallId::parse("shop").unwrap();
        let pair = TokenPair::issued(a, r, scopes, now);
        tokens.put_installed(&mall, &pair, now).await.unwrap();
        Self {
            sim,
            base: format!("http://{addr}"),
            gate: MemoryGate::default(),
            tokens,
            state: MemoryState::default(),
            dlq: MemoryQueue::default(),
            inbox: MemoryQueue::default(),
            vis: MemoryVisibility::default(),
            bus: MemoryBus::default(),
            mall,
        }
    }

    pub fn worker(&self) -> W {
        self.worker_on(self.gate.clone(), 1)
    }

    /// A worker on `gate`, `jobs_in_flight` jobs of a group at once.
    pub fn worker_on<G: RateGate>(&self, gate: G, jobs_in_flight: usize) -> Worker<MemoryPorts<G>> {
        self.worker_built(gate, jobs_in_flight, &[], |_| {}, |c| c)
    }

    /// [`Fx::worker`] with some of the worker's environment set (`("CUSTOMER_BACKFILL", "on")`).
    pub fn worker_with_env(&self, env: &[(&str, &str)]) -> W {
        self.worker_built(self.gate.clone(), 1, env, |_| {}, |c| c)
    }

    /// [`Fx::worker`] with its Cafe24 configuration changed by `tweak` and its client by `client`
    /// (a new process: nothing cached from another worker).
    pub fn worker_with_cafe24(
        &self,
        tweak: impl FnOnce(&mut Cafe24Config),
        client: impl FnOnce(Cafe24<MemoryGate, MemoryTokens>) -> Cafe24<MemoryGate, MemoryTokens>,
    ) -> W {
        self.worker_built(self.gate.clone(), 1, &[], tweak, client)
    }

    fn worker_built<G: RateGate>(
        &self,
        gate: G,
        jobs_in_flight: usize,
        env: &[(&str, &str)],
        tweak: impl FnOnce(&mut Cafe24Config),
        client: impl FnOnce(Cafe24<G, MemoryTokens>) -> Cafe24<G, MemoryTokens>,
    ) -> Worker<MemoryPorts<G>> {
        let in_flight = jobs_in_flight.to_string();
        let base = format!("{}/{{mall_id}}", self.base);
        let mut ccfg = Cafe24Config::from_lookup(|k| match k {
            "CAFE24_API_BASE_URL" => Some(base.clone()),
            "CAFE24_API_VERSION" => Some("2025-12-01".into()),
            "CAFE24_CLIENT_ID" => Some("relay-client".into()),
            "CAFE24_CLIENT_SECRET" => Some("relay-secret".into()),
            _ => None,
        })
        .unwrap();
        ccfg.max_inline_wait_ms = 200;
        // In-memory stores finish a record at once; the kill tests run 1 s invocations.
        ccfg.call_margin = Duration::from_millis(100);
        ccfg.min_call_wait = Duration::from_millis(100);
        tweak(&mut ccfg);
        let set = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned());
        let wcfg = WorkerConfig::from_lookup(|k| match k {
            _ if set(k).is_some() => set(k),
            "WORK_QUEUE_URL" => Some("https://sqs.example/1/work.fifo".into()),
            "WORKER_DLQ_URL" => Some("https://sqs.example/1/work-dlq.fifo".into()),
            "INBOX_QUEUE_URL" => Some("https://sqs.example/1/inbox.fifo".into()),
            "STATE_TABLE" | "TOKEN_TABLE" | "RATE_LIMIT_TABLE" | "EVENT_BUS_NAME" => Some("t".into()),
            "DEFER_MIN_S" => Some("5".into()),
            // Logs written by the tests are settled at once.
            "RECONCILE_SETTLE_S" => Some("0".into()),
            // The kill test runs 1 s invocations (claims then last 1 s).
            "MIN_TIME_LEFT_MS" => Some("0".into()),
            "JOBS_IN_FLIGHT" => Some(in_flight.clone()),
            _ => None,
        })
        .unwrap();
        let clock: relay_cafe24::Clock = relay_lambda::clock::system_clock();
        let cafe24 = client(Cafe24::new(ccfg, gate, self.tokens.clone(), clock).unwrap());
        Worker::new(
            cafe24,
            self.state.clone(),
            self.bus.clone(),
            self.dlq.clone(),
            self.inbox.clone(),
            self.vis.clone(),
            wcfg,
        )
    }

    pub fn fault(&self, endpoint: &str, kind: FaultKind) {
        self.sim.lock().faults.push(Fault {
            mall: Some("shop".into()),
            endpoint: Some(endpoint.into()),
            kind,
            remaining: Some(1),
        });
    }

    pub fn order(&self) -> String {
        let mut g = self.sim.lock();
        self.sim.mall(&mut g, "shop").data.orders.keys().next().cloned().unwrap()
    }

    /// The mall's first two orders.
    pub fn two_orders(&self) -> (String, String) {
        let mut g = self.sim.lock();
        let mut ids = self.sim.mall(&mut g, "shop").data.orders.keys().cloned();
        (ids.next().unwrap(), ids.next().unwrap())
    }

    /// The body of job `id` syncing `order`.
    pub fn sync_order(&self, id: &str, order: &str) -> String {
        serde_json::to_string(&self.job(id, JobKind::SyncOrder { order_id: order.into() })).unwrap()
    }

    pub fn job(&self, id: &str, kind: JobKind) -> Job {
        Job {
            v: 1,
            job_id: id.parse().unwrap(),
            mall_id: self.mall.clone(),
            kind,
            class: Class::Live,
            trace_id: format!("t-{id}").try_into().ok(),
            event_received_ms: 1_000,
            shop_no: relay_domain::ShopNo::DEFAULT,
        }
    }

    pub fn calls(&self) -> u64 {
        self.sim.stats("shop").calls
    }

    /// Writes a webhook log entry as Cafe24's sender would, a second ago.
    pub fn log(&self, trace: &str, log_type: &str, success: bool, order_id: &str) -> String {
        self.log_at(self.sim.clock.now_ms() - 1_000, trace, log_type, success, order_id)
    }

    /// Writes a webhook log entry requested at `at` (its id as the simulator's variant makes them).
    pub fn log_at(&self, at: u64, trace: &str, log_type: &str, success: bool, order_id: &str) -> String {
        let body = cafe24_sim::webhooks::event_body("shop", 90023, &serde_json::json!({"order_id": order_id}));
        let now = at;
        cafe24_sim::webhooks::log(
            &self.sim,
            cafe24_sim::webhooks::WebhookLog {
                log_id: String::new(),
                log_type: log_type.into(),
                event_no: 90023,
                mall_id: "shop".into(),
                trace_id: trace.into(),
                requested_time: cafe24_sim::kst::iso_kst(now),
                requested_ms: now,
                request_endpoint: "https://relay.example/webhooks/cafe24".into(),
                request_body: body.to_string(),
                success: if success { "T" } else { "F" }.into(),
                response_http_code: None,
                response_body: None,
            },
        )
    }

    pub fn endpoint_calls(&self, endpoint: &str) -> u64 {
        self.sim.stats("shop").endpoints.get(endpoint).map_or(0, |e| e.calls)
    }
}

/// One SQS record with `body`, received for the first time, through the worker's batch handler.
pub async fn run(w: &W, body: &str) -> SqsBatchResponse {
    run_receive(w, body, 1).await
}

/// One SQS record with `body` on its `receive`-th receive.
pub async fn run_receive(w: &W, body: &str, receive: u32) -> SqsBatchResponse {
    w.handle_batch(one_record(body, receive), || Duration::from_secs(60)).await
}

/// The SQS message id of the message carrying `body`: one per job id (a redelivery is the same
/// message), `m1` for a body that is no job.
pub fn message_id(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["job_id"].as_str().map(|id| format!("m-{id}")))
        .unwrap_or_else(|| "m1".into())
}

/// A batch of one record (group `shop`) with `body` on its `receive`-th receive.
pub fn one_record(body: &str, receive: u32) -> SqsEvent {
    one_message(&message_id(body), body, receive)
}

/// [`one_record`] as message `id`.
pub fn one_message(id: &str, body: &str, receive: u32) -> SqsEvent {
    serde_json::from_value(serde_json::json!({"Records": [{
        "messageId": id, "receiptHandle": "rh1", "body": body,
        "attributes": {"MessageGroupId": "shop", "ApproximateReceiveCount": receive.to_string()},
        "messageAttributes": {}, "eventSource": "aws:sqs"
    }]}))
    .unwrap()
}

/// Whether the (one-record) batch's record came back.
pub fn returned(r: &SqsBatchResponse) -> bool {
    !r.batch_item_failures.is_empty()
}

pub fn dlq_class(q: &MemoryQueue) -> Vec<String> {
    q.messages()
        .iter()
        .map(|m| {
            serde_json::from_str::<serde_json::Value>(&m.body).unwrap()["error_class"].as_str().unwrap_or("").to_owned()
        })
        .collect()
}
