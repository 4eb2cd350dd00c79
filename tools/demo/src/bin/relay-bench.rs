//! `make bench` — the burst scenario through three designs, in one run, against one Cafe24
//! simulator at Cafe24's real limits (bucket 40, 2/s):
//!
//! 1. **relay** — this project: webhook-ingest → inbox → dispatcher → work → worker.
//! 2. **direct** (BASELINE, not product code) — the webhook handler calls Cafe24 at once; on 429 it
//!    sleeps 1 s and retries.
//! 3. **handoff** (BASELINE, not product code) — the queue consumer starts the API work as a
//!    detached task (as a trigger starting a state machine would) and returns at once; the task
//!    sleeps 1 s and retries on 429.
//!
//! Each design gets its own malls on the same simulator. Output: a markdown table and a PNG
//! chart in `docs/benchmarks/`. `--quick` scales limits ×10 and shrinks the burst (a smoke run).

use relay_domain::ports::SnapshotStore as _;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use cafe24_sim::state::{AppConfig, ALL_READ_SCOPES, DAY_MS, HOUR_MS};
use cafe24_sim::{Clock, Sim, SimConfig};
use devstack::esm::{invoke, EsmConfig, LocalEsm};
use devstack::resources::Stack;
use dispatcher::{Dispatcher, DispatcherConfig};
use relay_aws::sqs::SqsQueue;
use relay_aws::state::DynamoState;
use relay_aws::tokens::DynamoTokenStore;
use relay_cafe24::Cafe24Config;
use relay_demo::bridge::{serve, INGEST_BILLED_MS};
use relay_domain::tokens::{Secret, TokenPair, TokenStore};
use relay_domain::MallId;
use relay_lambda::clock::system_clock;
use serde_json::{json, Value};
use webhook_ingest::{Ingest, IngestConfig};
use worker::{Worker, WorkerConfig};

const KEY: &str = "bench-webhook-key";

#[derive(Clone, Copy)]
struct Params {
    malls: usize,
    orders: usize,
    updates: usize,
    scale: f64,
}

#[derive(Default, Debug)]
struct Row {
    design: &'static str,
    webhooks: u64,
    calls: u64,
    r429: u64,
    makespan_s: f64,
    floor_s: f64,
    billed_ms: u64,
    sleep_ms: u64,
    ddb_writes: u64,
    lost: u64,
    duplicated: u64,
    /// How much of the emulator the run used (`None` without moto's statistics).
    emu: Option<EmuLoad>,
}

/// The local moto's counters (`scripts/moto_server.py` writes them to `MOTO_STATS_FILE`):
/// operations served and seconds spent serving them, per service (it serves one at a time).
#[derive(Clone, Copy, Debug, Default)]
struct EmuLoad {
    ddb_ops: f64,
    ddb_busy_s: f64,
    sqs_ops: f64,
    sqs_busy_s: f64,
}

impl EmuLoad {
    /// The counters now (they are written four times a second: wait for a fresh copy).
    async fn read() -> Option<Self> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let path = std::env::var("MOTO_STATS_FILE").ok()?;
        let v: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
        let f = |k: &str| v.get(k).and_then(Value::as_f64);
        Some(Self {
            ddb_ops: f("dynamodb_ops")?,
            ddb_busy_s: f("dynamodb_busy_s")?,
            sqs_ops: f("sqs_ops")?,
            sqs_busy_s: f("sqs_busy_s")?,
        })
    }

    fn since(self, before: Self) -> Self {
        Self {
            ddb_ops: self.ddb_ops - before.ddb_ops,
            ddb_busy_s: self.ddb_busy_s - before.ddb_busy_s,
            sqs_ops: self.sqs_ops - before.sqs_ops,
            sqs_busy_s: self.sqs_busy_s - before.sqs_busy_s,
        }
    }
}

/// What a baseline webhook receiver shares between its requests.
#[derive(Clone)]
struct Naive {
    tokens: Arc<BTreeMap<String, String>>,
    fetched: Arc<Mutex<BTreeMap<(String, String), String>>>,
    billed: Arc<AtomicU64>,
    slept: Arc<AtomicU64>,
    seen: Arc<Mutex<HashSet<String>>>,
    dups: Arc<AtomicU64>,
    outstanding: Arc<AtomicU64>,
    client: reqwest::Client,
    sim_base: String,
    scale: f64,
}

/// Shared by the two baselines: one GET with 429 → sleep 1 s → retry. Returns (updated_date, slept ms).
async fn naive_fetch(
    http: &reqwest::Client,
    base: &str,
    mall: &str,
    token: &str,
    order: &str,
    scale: f64,
    fetched: &Mutex<BTreeMap<(String, String), String>>,
) -> u64 {
    let mut slept = 0;
    for _ in 0..120 {
        let Ok(r) =
            http.get(format!("{base}/{mall}/api/v2/admin/orders/{order}?embed=items")).bearer_auth(token).send().await
        else {
            return slept;
        };
        if r.status().as_u16() == 429 {
            let pause = (1000.0 / scale) as u64;
            tokio::time::sleep(Duration::from_millis(pause)).await;
            slept += pause;
            continue;
        }
        if let Ok(v) = r.json::<Value>().await {
            if let Some(u) = v.pointer("/order/updated_date").and_then(Value::as_str) {
                let mut f = fetched.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let e = f.entry((mall.to_owned(), order.to_owned())).or_default();
                if u > e.as_str() {
                    *e = u.to_owned();
                }
            }
        }
        return slept;
    }
    slept
}

fn current_orders(sim: &Sim, mall: &str) -> BTreeMap<String, String> {
    let mut g = sim.lock();
    sim.mall(&mut g, mall)
        .data
        .orders
        .iter()
        .map(|(k, o)| (k.clone(), cafe24_sim::kst::iso_kst(o.updated_ms)))
        .collect()
}

/// Fires the burst for `malls` through the simulator's webhook sender, concurrently. Returns the
/// touched orders per mall and the number of webhook events.
async fn burst(
    sim: &Arc<Sim>,
    sim_base: &str,
    malls: &[String],
    p: Params,
) -> Result<(BTreeMap<String, Vec<String>>, u64)> {
    let http = reqwest::Client::new();
    let mut touched = BTreeMap::new();
    let mut events = 0u64;
    let mut futs = Vec::new();
    for m in malls {
        let before: HashSet<String> = current_orders(sim, m).into_keys().collect();
        for _ in 0..p.orders {
            let url = format!("{sim_base}/sim/malls/{m}/orders");
            let http = http.clone();
            futs.push(async move { http.post(url).json(&json!({"emit_webhook": true})).send().await.map(|_| ()) });
            events += 1;
        }
        // Placing orders is cheap; the deliveries happen inside these calls, concurrently.
        let _ = before;
    }
    for r in
        futures::StreamExt::collect::<Vec<_>>(futures::StreamExt::buffer_unordered(futures::stream::iter(futs), 24))
            .await
    {
        r?;
    }
    let mut futs = Vec::new();
    for m in malls {
        let ids: Vec<String> = current_orders(sim, m).into_keys().rev().take(p.orders).collect();
        for (i, id) in ids.iter().take(p.updates).enumerate() {
            let url = format!("{sim_base}/sim/malls/{m}/orders/{id}/change");
            let http = http.clone();
            // ~5% of deliveries are resent by Cafe24.
            let dup = i % 20 == 0;
            futs.push(async move {
                http.post(url)
                    .json(&json!({"paid": true, "emit_event_no": 90025, "duplicate": dup}))
                    .send()
                    .await
                    .map(|_| ())
            });
            events += 1;
        }
        touched.insert(m.clone(), ids);
    }
    for r in
        futures::StreamExt::collect::<Vec<_>>(futures::StreamExt::buffer_unordered(futures::stream::iter(futs), 24))
            .await
    {
        r?;
    }
    Ok((touched, events))
}

fn floor_s(touched: &BTreeMap<String, Vec<String>>, scale: f64) -> f64 {
    touched.values().map(|v| (v.len() as f64 - 40.0).max(0.0) / (2.0 * scale)).fold(0.0, f64::max)
}

fn install(sim: &Sim, mall: &str) -> (String, String) {
    sim.seed_tokens(mall, "relay-client", ALL_READ_SCOPES.iter().map(|s| s.to_string()).collect())
}

fn sim_totals(sim: &Sim, malls: &[String]) -> (u64, u64) {
    malls.iter().map(|m| sim.stats(m)).fold((0, 0), |(c, r), s| (c + s.calls, r + s.status_429))
}

/// `make bench`: one burst of webhooks through relay and through the two designs it replaces
/// (direct calls from the webhook handler, a handoff that sleeps per call), at Cafe24's real
/// limits on the local stack; prints the table and writes it with a chart to docs/benchmarks/.
#[derive(clap::Parser, Debug)]
#[command(name = "relay-bench", about, long_about = None)]
struct Args {
    /// A smoke run (limits ×10, a smaller burst); writes to target/bench-quick/.
    #[arg(long)]
    quick: bool,
    /// Run relay only: no baselines, nothing written (experiments).
    #[arg(long)]
    relay_only: bool,
    /// The worker's DEFER_MIN_S, in real-limit seconds.
    #[arg(long, default_value_t = 5.0)]
    defer_min_s: f64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let Args { quick, relay_only, defer_min_s } = <Args as clap::Parser>::parse();
    if !(defer_min_s.is_finite() && defer_min_s >= 0.0) {
        bail!("--defer-min-s must be a number of seconds ≥ 0");
    }
    let p = if quick {
        Params { malls: 2, orders: 50, updates: 20, scale: 10.0 }
    } else {
        Params { malls: 3, orders: 70, updates: 35, scale: 1.0 }
    };
    if let Ok(path) = std::env::var("RELAY_BENCH_LOG") {
        relay_lambda::telemetry::init_with_writer("info", std::sync::Mutex::new(std::fs::File::create(path)?));
    }
    let endpoint = devstack::moto::endpoint().await?;
    let conf = devstack::sdk_config(&endpoint).await;
    let aws = relay_aws::Clients::new(&conf);
    let (sqs, ddb) = (aws.sqs.clone(), aws.ddb.clone());
    let app = AppConfig {
        client_id: "relay-client".into(),
        client_secret: "relay-secret".into(),
        scopes: ALL_READ_SCOPES.iter().map(|s| s.to_string()).collect(),
    };
    let config = SimConfig {
        apps: vec![app],
        orders_per_mall: 0,
        leak_per_sec: 2.0 * p.scale,
        abnormal_per_sec: (10.0 * p.scale) as u32,
        webhook_retry_delay_ms: 200,
        webhook_timeout_ms: 5_000,
        ..SimConfig::default()
    };
    let sim = Arc::new(Sim::new(config, Clock::Real));
    let (addr, _t) = cafe24_sim::spawn(sim.clone(), "127.0.0.1:0".parse()?).await?;
    let sim_base = format!("http://{addr}");
    let http = reqwest::Client::new();
    let t_bench = Instant::now();
    let mut rows = Vec::new();

    // ---------------------------------------------------------------- relay
    {
        let malls: Vec<String> = (0..p.malls).map(|i| format!("relay-m{i}")).collect();
        let stack = Stack::create(&aws, &devstack::unique_prefix("bench")).await?;
        let env = stack.env();
        let lookup = |k: &str| match k {
            "WEBHOOK_API_KEY" => Some(KEY.to_owned()),
            "LIMITER_RATE_PER_SEC" => Some((2.0 * p.scale).to_string()),
            "LIMITER_MIN_SPACING_MS" => Some(((125.0 / p.scale) as u64).to_string()),
            "DEFER_MIN_S" => Some(((defer_min_s / p.scale).ceil() as u64).to_string()),
            _ => env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()),
        };
        let tokens = || DynamoTokenStore::new(ddb.clone(), stack.token_table.clone());
        for m in &malls {
            let (a, r) = install(&sim, m);
            let now = sim.clock.now_ms();
            let pair = TokenPair {
                access_token: Secret::new(a),
                access_expires_ms: now + 2 * HOUR_MS,
                refresh_token: Secret::new(r),
                refresh_expires_ms: now + 14 * DAY_MS,
                scopes: vec![],
            };
            tokens().put_installed(&MallId::parse(m)?, &pair, now).await?;
        }
        let icfg = IngestConfig::from_lookup(lookup)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let ingest_url = format!("http://{}", listener.local_addr()?);
        serve(
            Arc::new(Ingest::new(
                &icfg,
                SqsQueue::new(sqs.clone(), icfg.inbox_queue_url.clone()),
                SqsQueue::new(sqs.clone(), icfg.parking_queue_url.clone()),
            )),
            listener,
        )
        .await?;
        let d = Dispatcher::on_aws(&aws, DispatcherConfig::from_lookup(lookup)?);
        let base = format!("{sim_base}/{{mall_id}}");
        let ccfg = Cafe24Config::from_lookup(|k| match k {
            "CAFE24_API_BASE_URL" => Some(base.clone()),
            "CAFE24_API_VERSION" => Some("2025-12-01".into()),
            "CAFE24_CLIENT_ID" => Some("relay-client".into()),
            "CAFE24_CLIENT_SECRET" => Some("relay-secret".into()),
            _ => None,
        })?;
        let sleep_ms = ((200.0 / p.scale) as u64).to_string();
        let wcfg =
            WorkerConfig::from_lookup(|k| if k == "WORKER_MAX_SLEEP_MS" { Some(sleep_ms.clone()) } else { lookup(k) })?;
        let state = DynamoState::new(ddb.clone(), wcfg.state_table.clone());
        let w = Worker::on_aws(&aws, wcfg, ccfg, system_clock())?;
        let state_writes_before = w.state().writes();
        http.post(format!("{sim_base}/sim/webhooks/target"))
            .json(&json!({"url": format!("{ingest_url}/webhooks/cafe24"), "api_key": KEY}))
            .send()
            .await?;
        let billed = AtomicU64::new(0);
        let esm = |u: &str, a: &str| {
            LocalEsm::new(sqs.clone(), EsmConfig { max_concurrency: 2, wait_time_seconds: 0, ..EsmConfig::new(u, a) })
        };
        let (inbox, work) = (esm(&stack.inbox.url, &stack.inbox.arn), esm(&stack.work.url, &stack.work.arn));
        let dh = |e: Value| {
            let (d, billed) = (&d, &billed);
            async move {
                let t = Instant::now();
                let r = invoke("dispatcher", e, move |ev| d.handle_batch(ev, || Duration::from_secs(30))).await;
                billed.fetch_add(t.elapsed().as_millis() as u64, Ordering::Relaxed);
                r
            }
        };
        let wh = |e: Value| {
            let (w, billed) = (&w, &billed);
            async move {
                let t = Instant::now();
                let r = invoke("worker", e, move |ev| w.handle_batch(ev, || Duration::from_secs(60))).await;
                billed.fetch_add(t.elapsed().as_millis() as u64, Ordering::Relaxed);
                r
            }
        };
        let stop = std::sync::atomic::AtomicBool::new(false);
        let ingest_before = INGEST_BILLED_MS.load(Ordering::Relaxed);
        let emu_before = EmuLoad::read().await;
        let start = Instant::now();
        let sent = Mutex::new(None);
        let poll = |which: u8| {
            let (stop, dh, wh, inbox, work) = (&stop, &dh, &wh, &inbox, &work);
            async move {
                while !stop.load(Ordering::Relaxed) {
                    let r = if which == 0 { inbox.poll_once(dh).await } else { work.poll_once(wh).await };
                    if r.map(|r| r.received == 0).unwrap_or(true) {
                        tokio::time::sleep(Duration::from_millis(25)).await;
                    }
                }
            }
        };
        let drive = async {
            let b = burst(&sim, &sim_base, &malls, p).await;
            let touched = b.as_ref().map(|(t, _)| t.clone()).unwrap_or_default();
            *sent.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(b);
            // Done when every touched order's snapshot is current.
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let mut all = true;
                'outer: for (m, ids) in &touched {
                    let cur = current_orders(&sim, m);
                    let Ok(mall) = MallId::parse(m) else {
                        all = false;
                        break 'outer;
                    };
                    for id in ids {
                        let ok = matches!(state.snapshot(&mall, "order", id).await, Ok(Some((_, Some(v)))) if v.get("updated_date").and_then(Value::as_str) == cur.get(id).map(String::as_str));
                        if !ok {
                            all = false;
                            break 'outer;
                        }
                    }
                }
                if all || start.elapsed() > Duration::from_secs(600) {
                    break;
                }
            }
            stop.store(true, Ordering::Relaxed);
        };
        // Worker pollers like MaximumConcurrency ≥ active malls (one FIFO group per mall).
        tokio::join!(poll(0), poll(0), futures::future::join_all((0..=p.malls).map(|_| poll(1))), drive);
        let makespan = start.elapsed().as_secs_f64();
        let (touched, events) = sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .unwrap_or_else(|| Ok((BTreeMap::new(), 0)))?;
        let (calls, r429) = sim_totals(&sim, &malls);
        let mut lost = 0;
        for (m, ids) in &touched {
            let cur = current_orders(&sim, m);
            let mall = MallId::parse(m)?;
            for id in ids {
                let ok = matches!(state.snapshot(&mall, "order", id).await?, Some((_, Some(v))) if v.get("updated_date").and_then(Value::as_str) == cur.get(id).map(String::as_str));
                lost += u64::from(!ok);
            }
        }
        // Every call's result is stored by the worker's state store: fewer of its writes than
        // calls means the counter is not the worker's (this fails the smoke run in make test).
        let state_writes = w.state().writes() - state_writes_before;
        if state_writes < calls {
            bail!("relay's DynamoDB writes are miscounted: {state_writes} state writes for {calls} calls");
        }
        rows.push(Row {
            design: "relay",
            webhooks: events,
            calls,
            r429,
            makespan_s: makespan,
            floor_s: floor_s(&touched, p.scale),
            billed_ms: billed.load(Ordering::Relaxed) + INGEST_BILLED_MS.load(Ordering::Relaxed) - ingest_before,
            sleep_ms: w.cafe24.stats.inline_sleep_ms.load(Ordering::Relaxed),
            // The worker's own store: `state` above only reads (counting its writes showed 1.2
            // writes per call for a while, when the worker's wiring moved into `on_aws`).
            ddb_writes: w.cafe24.gate().stats.writes.load(Ordering::Relaxed) + state_writes,
            lost,
            duplicated: 0,
            emu: EmuLoad::read().await.zip(emu_before).map(|(a, b)| a.since(b)),
        });
    }

    if relay_only {
        for r in &rows {
            println!("{r:?}");
        }
        return Ok(());
    }

    // ---------------------------------------------------------------- baselines
    for design in ["direct", "handoff"] {
        let malls: Vec<String> = (0..p.malls).map(|i| format!("{design}-m{i}")).collect();
        let naive = Naive {
            tokens: Arc::new(malls.iter().map(|m| (m.clone(), install(&sim, m).0)).collect()),
            fetched: Arc::default(),
            billed: Arc::default(),
            slept: Arc::default(),
            seen: Arc::default(),
            dups: Arc::default(),
            outstanding: Arc::default(),
            client: reqwest::Client::new(),
            sim_base: sim_base.clone(),
            scale: p.scale,
        };
        // BASELINE webhook receiver. direct: the call happens in the handler. handoff: the handler
        // starts a detached task and answers at once (the queue hop adds nothing to the rate).
        let handoff = design == "handoff";
        let app = axum::Router::new().route(
            "/webhooks/cafe24",
            axum::routing::post({
                let naive = naive.clone();
                move |headers: axum::http::HeaderMap, body: String| {
                    let st = naive.clone();
                    async move {
                        let trace = headers.get("x-trace-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                        let v: Value = serde_json::from_str(&body).unwrap_or_default();
                        let mall = v.pointer("/resource/mall_id").and_then(Value::as_str).unwrap_or("").to_owned();
                        let order = v.pointer("/resource/order_id").and_then(Value::as_str).unwrap_or("").to_owned();
                        let dup = !st.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(trace);
                        let token = st.tokens.get(&mall).cloned().unwrap_or_default();
                        st.outstanding.fetch_add(1, Ordering::Relaxed);
                        let task = tokio::spawn(async move {
                            let t = Instant::now();
                            let s = naive_fetch(&st.client, &st.sim_base, &mall, &token, &order, st.scale, &st.fetched)
                                .await;
                            st.slept.fetch_add(s, Ordering::Relaxed);
                            if dup {
                                st.dups.fetch_add(1, Ordering::Relaxed);
                            }
                            st.billed.fetch_add(t.elapsed().as_millis() as u64, Ordering::Relaxed);
                            st.outstanding.fetch_sub(1, Ordering::Relaxed);
                        });
                        if !handoff {
                            let _ = task.await;
                        }
                        axum::http::StatusCode::OK
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/webhooks/cafe24", listener.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        http.post(format!("{sim_base}/sim/webhooks/target")).json(&json!({"url": url, "api_key": KEY})).send().await?;
        let emu_before = EmuLoad::read().await;
        let start = Instant::now();
        let (touched, events) = burst(&sim, &sim_base, &malls, p).await?;
        while naive.outstanding.load(Ordering::Relaxed) > 0 && start.elapsed() < Duration::from_secs(900) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let makespan = start.elapsed().as_secs_f64();
        let (calls, r429) = sim_totals(&sim, &malls);
        let f = naive.fetched.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let mut lost = 0;
        for (m, ids) in &touched {
            let cur = current_orders(&sim, m);
            for id in ids {
                lost += u64::from(f.get(&(m.clone(), id.clone())) != cur.get(id));
            }
        }
        rows.push(Row {
            design,
            webhooks: events,
            calls,
            r429,
            makespan_s: makespan,
            floor_s: floor_s(&touched, p.scale),
            billed_ms: naive.billed.load(Ordering::Relaxed),
            sleep_ms: naive.slept.load(Ordering::Relaxed),
            ddb_writes: 0,
            lost,
            duplicated: naive.dups.load(Ordering::Relaxed),
            emu: EmuLoad::read().await.zip(emu_before).map(|(a, b)| a.since(b)),
        });
    }

    // ---------------------------------------------------------------- report
    let mut md = String::new();
    md.push_str(&format!(
        "Burst scenario{}: {} malls × ({} orders placed + {} payment updates of the same orders, ~5% resent by Cafe24), simulator at {} (bucket 40). Floor per mall = (distinct orders − 40) / drain.\n\n",
        if quick { " (QUICK smoke run, limits ×10)" } else { "" },
        p.malls, p.orders, p.updates,
        if quick { "20/s".to_owned() } else { "Cafe24's real limits: 2/s".to_owned() },
    ));
    md.push_str("| design | 429s at Cafe24 | makespan | ÷ floor | Cafe24 calls per webhook | billed compute | share asleep | DynamoDB writes per call | events lost | effects duplicated |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in &rows {
        md.push_str(&format!(
            "| {}{} | {} | {:.1} s | {:.2}× | {:.2} | {:.1} s | {:.1}% | {:.2} | {} | {} |\n",
            r.design,
            if r.design == "relay" { "" } else { " (baseline)" },
            r.r429,
            r.makespan_s,
            r.makespan_s / r.floor_s.max(0.001),
            r.calls as f64 / r.webhooks.max(1) as f64,
            r.billed_ms as f64 / 1000.0,
            100.0 * r.sleep_ms as f64 / r.billed_ms.max(1) as f64,
            r.ddb_writes as f64 / r.calls.max(1) as f64,
            r.lost,
            r.duplicated
        ));
    }
    md.push_str(&format!("\nFloor: {:.1} s. Bench wall time {:.0} s. DynamoDB and SQS are moto on loopback; the simulator is in-process.\n", rows.first().map_or(0.0, |r| r.floor_s), t_bench.elapsed().as_secs_f64()));
    // The emulator's own load: a service busy for most of the makespan set the pace, not the design.
    let loads: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            let e = r.emu?;
            let share = |busy: f64| 100.0 * busy / r.makespan_s.max(0.001);
            Some(format!(
                "{}: DynamoDB {:.0} requests, busy {:.0}% of the makespan; SQS {:.0} requests, busy {:.0}%",
                r.design,
                e.ddb_ops,
                share(e.ddb_busy_s),
                e.sqs_ops,
                share(e.sqs_busy_s)
            ))
        })
        .collect();
    if !loads.is_empty() {
        md.push_str(&format!(
            "\nEmulator load during each run, counted from its start until its row was taken, the bench's own completion checks included; busy = time inside moto's backend holding its per-service lock, not its HTTP layer: {}.\n",
            loads.join("; ")
        ));
    }
    println!("\n{md}");
    // The quick smoke run (in `make test`) writes under target/, leaving the committed results alone.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = if quick { root.join("target/bench-quick") } else { root.join("docs/benchmarks") };
    std::fs::create_dir_all(&dir)?;
    let name = if quick { "burst-quick" } else { "burst" };
    std::fs::write(dir.join(format!("{name}.md")), &md)?;
    chart(&sim, &dir.join(format!("{name}.png")), p)?;
    println!("wrote {}/{name}.md and {name}.png", dir.display());
    if let Some(relay) = rows.first() {
        if relay.r429 > 0 || relay.lost > 0 || relay.duplicated > 0 {
            bail!("relay missed its targets");
        }
    }
    Ok(())
}

/// Calls per second to the first mall of each design over time, against the limit.
fn chart(sim: &Sim, path: &std::path::Path, p: Params) -> Result<()> {
    use plotters::prelude::*;
    let font = std::fs::read("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf").ok();
    let has_font = match font {
        Some(bytes) => {
            plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into_boxed_slice())).is_ok()
        }
        None => false,
    };
    let calls = sim.lock().calls.clone();
    let mut series: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for design in ["relay", "direct", "handoff"] {
        let mall = format!("{design}-m0");
        let mine: Vec<u64> = calls.iter().filter(|c| c.mall == mall).map(|c| c.at_ms).collect();
        let Some(&t0) = mine.first() else { continue };
        let mut per_s: BTreeMap<u64, f64> = BTreeMap::new();
        for t in &mine {
            *per_s.entry((t - t0) / 1000).or_default() += 1.0;
        }
        let last = per_s.keys().last().copied().unwrap_or(0);
        series.insert(design, (0..=last).map(|s| (s as f64, per_s.get(&s).copied().unwrap_or(0.0))).collect());
    }
    let xmax = series.values().flat_map(|v| v.iter().map(|(x, _)| *x)).fold(10.0, f64::max);
    let ymax = series.values().flat_map(|v| v.iter().map(|(_, y)| *y)).fold(5.0, f64::max) * 1.1;
    let root = BitMapBackend::new(path, (1000, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut b = ChartBuilder::on(&root);
    b.margin(20).x_label_area_size(40).y_label_area_size(50);
    if has_font {
        b.caption("Cafe24 calls per second to one mall (429s included)", ("sans-serif", 22));
    }
    let mut chart = b.build_cartesian_2d(0.0..xmax, 0.0..ymax).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    if has_font {
        chart
            .configure_mesh()
            .x_desc("seconds since the mall's first call")
            .y_desc("calls/s")
            .draw()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }
    let colors = [("relay", GREEN), ("direct", RED), ("handoff", BLUE)];
    for (design, color) in colors {
        if let Some(v) = series.get(design) {
            let s = chart
                .draw_series(LineSeries::new(v.clone(), color.stroke_width(2)))
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            if has_font {
                s.label(design)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            }
        }
    }
    let limit = 2.0 * p.scale;
    let s = chart
        .draw_series(LineSeries::new(vec![(0.0, limit), (xmax, limit)], BLACK.stroke_width(1)))
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    if has_font {
        s.label(format!("drain rate {limit}/s")).legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }
    root.present().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(())
}
