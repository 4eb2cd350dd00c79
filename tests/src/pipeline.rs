//! The end-to-end fixture shared by the dispatcher and log tests.

use std::sync::Arc;

use cafe24_sim::state::{AppConfig, ALL_READ_SCOPES};
use cafe24_sim::{Clock, Sim, SimConfig};
use dispatcher::{Dispatcher, DispatcherConfig};
use relay_aws::bus::EventBridgeBus;
use relay_aws::sqs::{SqsQueue, SqsVisibility};
use relay_aws::tokens::DynamoTokenStore;
use relay_domain::ports::MessageQueue;
use relay_domain::MallId;
use relay_lambda::clock::system_clock;
use serde_json::Value;
use worker::{Worker, WorkerConfig};

use devstack::esm::{invoke, EsmConfig, LocalEsm};

use crate::{http_event, install_seeded, sim_cafe24_config, to_request, IngestEnv as _, Shape, TestEnv, KEY};

/// The one time-scale knob of the end-to-end tests: the simulator drains `scale()`× faster
/// (its bucket stays 40) and the limiter follows. `RELAY_E2E_SCALE` (≥ 1, default 4);
/// `RELAY_E2E_SCALE=1` runs at Cafe24's real limits.
pub fn scale() -> f64 {
    std::env::var("RELAY_E2E_SCALE").ok().and_then(|v| v.parse().ok()).filter(|s: &f64| *s >= 1.0).unwrap_or(4.0)
}
/// The worker as wired by [`Pipeline::worker`].
pub type W = worker::AwsWorker;

/// The whole pipeline's parts on this machine: a Cafe24 simulator (×4 time scale, real clock),
/// fresh moto resources, and builders for the real dispatcher and worker wired to them.
pub struct Pipeline {
    /// The simulator.
    pub sim: Arc<Sim>,
    /// Its base URL.
    pub base: String,
    /// The moto resources.
    pub env: TestEnv,
}

impl Pipeline {
    /// Starts a simulator and creates resources named after `tag`.
    pub async fn new(tag: &str) -> Self {
        Self::new_with(tag, |_| {}).await
    }

    /// As [`Pipeline::new`], with the simulator's configuration adjusted by `tweak`.
    pub async fn new_with(tag: &str, tweak: impl FnOnce(&mut SimConfig)) -> Self {
        let app = AppConfig {
            client_id: "relay-client".into(),
            client_secret: "relay-secret".into(),
            scopes: ALL_READ_SCOPES.iter().map(|x| x.to_string()).collect(),
        };
        let mut config = SimConfig {
            apps: vec![app],
            leak_per_sec: 2.0 * scale(),
            abnormal_per_sec: (10.0 * scale()) as u32,
            webhook_retry_delay_ms: 20,
            ..SimConfig::default()
        };
        tweak(&mut config);
        let sim = Arc::new(Sim::new(config, Clock::Real));
        let (addr, _t) = cafe24_sim::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
        Self { sim, base: format!("http://{addr}"), env: TestEnv::new(tag).await.unwrap() }
    }

    /// A function environment variable for these resources.
    pub fn env_var(&self, k: &str) -> Option<String> {
        self.env.stack.env().into_iter().find(|(n, _)| *n == k).map(|(_, v)| v)
    }

    /// The dispatcher sending jobs to `work`.
    pub fn dispatcher_with<Q: MessageQueue>(&self, work: Q) -> Dispatcher<Q, DynamoTokenStore, SqsQueue> {
        self.dispatcher_configured(work, &[])
    }

    /// [`Self::dispatcher_with`], some settings of its environment overridden.
    pub fn dispatcher_configured<Q: MessageQueue>(
        &self,
        work: Q,
        overrides: &[(&str, &str)],
    ) -> Dispatcher<Q, DynamoTokenStore, SqsQueue> {
        let cfg = DispatcherConfig::from_lookup(|k| {
            overrides.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned()).or_else(|| self.env_var(k))
        })
        .unwrap();
        Dispatcher::new(
            work,
            SqsQueue::new(self.env.sqs.clone(), self.env.stack.inbox.dlq_url.clone()),
            DynamoTokenStore::new(self.env.ddb.clone(), cfg.token_table.clone())
                .fencing(cfg.rate_limit_table.clone(), cfg.key_scope.clone()),
            SqsVisibility::new(self.env.sqs.clone(), cfg.inbox_queue_url.clone()),
            EventBridgeBus::new(self.env.events.clone(), cfg.event_bus.clone()),
            cfg,
        )
    }

    /// The dispatcher on the real work queue.
    pub fn dispatcher(&self) -> Dispatcher<SqsQueue, DynamoTokenStore> {
        self.dispatcher_with(SqsQueue::new(self.env.sqs.clone(), self.env.stack.work.url.clone()))
    }

    /// The worker (limiter scaled like the simulator).
    pub fn worker(&self) -> W {
        self.worker_with(&[])
    }

    /// [`Self::worker`] with some settings of its environment overridden.
    pub fn worker_with(&self, overrides: &[(&str, &str)]) -> W {
        self.worker_configured(overrides, |_| {})
    }

    /// [`Self::worker_with`], its Cafe24 client's configuration changed by `tweak`.
    pub fn worker_configured(
        &self,
        overrides: &[(&str, &str)],
        tweak: impl FnOnce(&mut relay_cafe24::Cafe24Config),
    ) -> W {
        let overridden = |k: &str| overrides.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned());
        let wcfg = WorkerConfig::from_lookup(|k| {
            overridden(k).or_else(|| match k {
                "LIMITER_RATE_PER_SEC" => Some((2.0 * scale()).to_string()),
                "LIMITER_MIN_SPACING_MS" => Some(
                    ((relay_domain::ratelimit::LimiterConfig::default().min_spacing_ms as f64 / scale()) as u64)
                        .to_string(),
                ),
                "WORKER_MAX_SLEEP_MS" => Some(((200.0 / scale()) as u64).to_string()),
                "DEFER_MIN_S" => Some("2".into()),
                // Reconciliation treats every log as settled (the tests send, then reconcile).
                "RECONCILE_SETTLE_S" => Some("0".into()),
                _ => self.env_var(k),
            })
        })
        .unwrap();
        let mut ccfg = sim_cafe24_config(&self.base);
        tweak(&mut ccfg);
        Worker::on_aws(&self.env.clients, wcfg, ccfg, system_clock()).unwrap()
    }

    /// The token store.
    pub fn tokens(&self) -> DynamoTokenStore {
        DynamoTokenStore::new(self.env.ddb.clone(), self.env.stack.token_table.clone())
    }

    /// Seeds an installed mall.
    pub async fn install(&self, mall: &str) -> MallId {
        install_seeded(&self.sim, &self.env, mall).await
    }

    /// Posts a webhook body through the real ingest handler into the inbox.
    pub async fn ingest(&self, body: &Value, trace: &str) {
        let h = self.env.ingest();
        let b = body.to_string();
        let ev = http_event(
            Shape::FunctionUrl,
            "POST",
            "/webhooks/cafe24",
            &[("X-API-Key", KEY), ("X-Trace-ID", trace)],
            b.as_bytes(),
            false,
        );
        assert_eq!(h.handle(to_request(&ev)).await.status(), 200);
    }

    /// Serves the real ingest handler over HTTP and points the simulator's webhook sender at it.
    pub async fn send_webhooks_to_ingest(&self) {
        let url = crate::serve_ingest(Arc::new(self.env.ingest())).await;
        reqwest::Client::new()
            .post(format!("{}/sim/webhooks/target", self.base))
            .json(&serde_json::json!({"url": format!("{url}/webhooks/cafe24"), "api_key": KEY}))
            .send()
            .await
            .unwrap();
    }

    /// Places an order at the simulator (`opts` as `POST /sim/malls/{mall}/orders` takes them,
    /// e.g. `{"emit_webhook": true}`) and returns its answer.
    pub async fn place_order(&self, mall: &str, opts: serde_json::Value) -> Value {
        reqwest::Client::new()
            .post(format!("{}/sim/malls/{mall}/orders", self.base))
            .json(&opts)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The simulator's order ids of `mall`.
    pub fn orders(&self, mall: &str) -> Vec<String> {
        let mut g = self.sim.lock();
        self.sim.mall(&mut g, mall).data.orders.keys().cloned().collect()
    }

    /// Runs `d` on the inbox and `w` on the work queue for `how_long`, drained or not.
    pub async fn run_for(&self, d: &Dispatcher<SqsQueue, DynamoTokenStore>, w: &W, how_long: std::time::Duration) {
        self.run(d, w, how_long, false).await;
    }

    /// Runs `d` on the inbox and `w` on the work queue (local event source mappings, each
    /// invocation in its log span with a fresh request id) until both queues are empty, visible
    /// and in flight. Panics after `limit`: a guard against a hang, not a performance verdict —
    /// callers give minutes where a quiet machine needs seconds.
    pub async fn run_until_drained(
        &self,
        d: &Dispatcher<SqsQueue, DynamoTokenStore>,
        w: &W,
        limit: std::time::Duration,
    ) {
        self.run(d, w, limit, true).await;
    }

    /// As [`Pipeline::run_until_drained`], with the pollers Lambda runs: the inbox and two
    /// work-queue pollers each on its own, so one long invocation (a backfill's slice) does not
    /// stop the other groups' messages from being received, as on AWS (FIFO groups stay locked
    /// while in flight, so two pollers never run one group at once).
    pub async fn run_concurrently_until_drained(
        &self,
        d: &Dispatcher<SqsQueue, DynamoTokenStore>,
        w: &W,
        limit: std::time::Duration,
    ) {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::time::{Duration, Instant};

        let esm = |u: &str, a: &str| {
            LocalEsm::new(
                self.env.sqs.clone(),
                EsmConfig { max_concurrency: 1, wait_time_seconds: 0, ..EsmConfig::new(u, a) },
            )
        };
        let s = &self.env.stack;
        let (inbox, work) = (esm(&s.inbox.url, &s.inbox.arn), esm(&s.work.url, &s.work.arn));
        let dh = |event: Value| invoke("dispatcher", event, move |ev| d.handle_batch(ev, || Duration::from_secs(30)));
        let wh = |event: Value| invoke("worker", event, move |ev| w.handle_batch(ev, || Duration::from_secs(60)));
        let stop = AtomicBool::new(false);
        let t0 = Instant::now();
        let watch = async {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let left = self.env.depth(&s.inbox.url).await.unwrap() + self.env.depth(&s.work.url).await.unwrap();
                if left == 0 || t0.elapsed() >= limit {
                    stop.store(true, Ordering::Relaxed);
                    assert_eq!(left, 0, "the pipeline did not drain in {limit:?}");
                    return;
                }
            }
        };
        futures::future::join4(
            poll_loop(&inbox, &dh, &stop),
            poll_loop(&work, &wh, &stop),
            poll_loop(&work, &wh, &stop),
            watch,
        )
        .await;
    }

    /// Polls both queues until `limit` (then panics when `until_drained`) or until drained.
    async fn run(
        &self,
        d: &Dispatcher<SqsQueue, DynamoTokenStore>,
        w: &W,
        limit: std::time::Duration,
        until_drained: bool,
    ) {
        use std::time::{Duration, Instant};

        let esm = |u: &str, a: &str| {
            LocalEsm::new(
                self.env.sqs.clone(),
                EsmConfig { max_concurrency: 2, wait_time_seconds: 0, ..EsmConfig::new(u, a) },
            )
        };
        let s = &self.env.stack;
        let (inbox, work) = (esm(&s.inbox.url, &s.inbox.arn), esm(&s.work.url, &s.work.arn));
        let dh = |event: Value| invoke("dispatcher", event, move |ev| d.handle_batch(ev, || Duration::from_secs(30)));
        let wh = |event: Value| invoke("worker", event, move |ev| w.handle_batch(ev, || Duration::from_secs(60)));
        let t0 = Instant::now();
        loop {
            let n = inbox.poll_once(&dh).await.unwrap().received + work.poll_once(&wh).await.unwrap().received;
            if n == 0 {
                if until_drained {
                    let left = self.env.depth(&s.inbox.url).await.unwrap() + self.env.depth(&s.work.url).await.unwrap();
                    if left == 0 {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if t0.elapsed() >= limit {
                assert!(!until_drained, "the pipeline did not drain in {limit:?}");
                return;
            }
        }
    }
}

/// Polls `esm` with `handler` until `stop` is set, pausing briefly when the queue is empty.
async fn poll_loop<H, F, E>(esm: &LocalEsm, handler: &H, stop: &std::sync::atomic::AtomicBool)
where
    H: Fn(Value) -> F,
    F: std::future::Future<Output = Result<Value, E>>,
{
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        if esm.poll_once(handler).await.unwrap().received == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}
