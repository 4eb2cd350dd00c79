//! The burst scenario every design runs, and the row each run reports.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use cafe24_sim::state::ALL_READ_SCOPES;
use cafe24_sim::Sim;
use serde_json::{json, Value};

/// What every design's run shares: one simulator, the AWS clients, the scenario's size.
pub struct Bench {
    /// The Cafe24 simulator (each design gets its own malls on it).
    pub sim: Arc<Sim>,
    /// Its base URL.
    pub sim_base: String,
    /// Clients for the local moto.
    pub aws: relay_aws::Clients,
    /// For the simulator's control API.
    pub http: reqwest::Client,
    /// The scenario's size and time scale.
    pub p: Params,
    /// DynamoDB's own moto's statistics file, when it has one (`None`: one moto serves both).
    pub ddb_stats: Option<std::path::PathBuf>,
}

pub const KEY: &str = "bench-webhook-key";

#[derive(Clone, Copy)]
pub struct Params {
    pub malls: usize,
    pub orders: usize,
    pub updates: usize,
    pub scale: f64,
}

#[derive(Default, Debug)]
pub struct Row {
    pub design: &'static str,
    pub webhooks: u64,
    pub calls: u64,
    pub r429: u64,
    pub makespan_s: f64,
    pub floor_s: f64,
    pub billed_ms: u64,
    /// Billed time asleep: wall time invocations had every running job waiting for credit.
    pub sleep_ms: u64,
    /// Each job's sleeps summed (more than `sleep_ms` when jobs overlap).
    pub job_sleep_ms: u64,
    pub ddb_writes: u64,
    /// Reads the relay requested (snapshot heads and token records; not the bench's own checks).
    pub ddb_reads: u64,
    pub lost: u64,
    pub duplicated: u64,
    /// How much of the emulator the run used (`None` without moto's statistics).
    pub emu: Option<EmuLoad>,
    /// When the design's burst began (simulator clock, ms).
    pub start_ms: u64,
    /// Seconds until Cafe24 had delivered every webhook of the burst (accepted by the design).
    pub sent_s: f64,
    /// Seconds from the burst's start to a mall's first Cafe24 call, the slowest mall's.
    pub first_call_s: f64,
    /// Most calls any of its malls received in one second (Cafe24 flags ≥ 10).
    pub max_calls_1s: u32,
    /// Events the design published to the app's bus (webhook.received and `*.synced`; `None`
    /// for a design without a bus).
    pub events: Option<u64>,
}

/// The local moto's counters (`scripts/moto_server.py` writes them to `MOTO_STATS_FILE`):
/// operations served and seconds spent serving them, per service (it serves one at a time).
#[derive(Clone, Copy, Debug, Default)]
pub struct EmuLoad {
    pub ddb_ops: f64,
    pub ddb_busy_s: f64,
    pub sqs_ops: f64,
    pub sqs_busy_s: f64,
}

impl EmuLoad {
    /// The counters now (they are written four times a second: wait for a fresh copy). SQS's
    /// come from the shared moto (`MOTO_STATS_FILE`); DynamoDB's from `ddb_stats` when
    /// DynamoDB has a moto of its own.
    pub async fn read(ddb_stats: Option<&std::path::Path>) -> Option<Self> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let load = |path: &std::path::Path| -> Option<Value> {
            serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
        };
        let main = load(std::path::Path::new(&std::env::var("MOTO_STATS_FILE").ok()?))?;
        let ddb = match ddb_stats {
            Some(path) => load(path)?,
            None => main.clone(),
        };
        let f = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64);
        Some(Self {
            ddb_ops: f(&ddb, "dynamodb_ops")?,
            ddb_busy_s: f(&ddb, "dynamodb_busy_s")?,
            sqs_ops: f(&main, "sqs_ops")?,
            sqs_busy_s: f(&main, "sqs_busy_s")?,
        })
    }

    pub fn since(self, before: Self) -> Self {
        Self {
            ddb_ops: self.ddb_ops - before.ddb_ops,
            ddb_busy_s: self.ddb_busy_s - before.ddb_busy_s,
            sqs_ops: self.sqs_ops - before.sqs_ops,
            sqs_busy_s: self.sqs_busy_s - before.sqs_busy_s,
        }
    }
}

/// Each order of the mall as Cafe24 answers it now, as JSON text: a fetched copy is current
/// when it equals it (orders carry no modification time).
pub fn current_orders(sim: &Sim, mall: &str) -> BTreeMap<String, String> {
    let mut g = sim.lock();
    let data = &sim.mall(&mut g, mall).data;
    data.orders.iter().map(|(k, o)| (k.clone(), o.to_json(true, &data.products).to_string())).collect()
}

/// Fires the burst for `malls` through the simulator's webhook sender, concurrently. Returns the
/// touched orders per mall and the number of webhook events.
pub async fn burst(
    sim: &Arc<Sim>,
    sim_base: &str,
    malls: &[String],
    p: Params,
) -> Result<(BTreeMap<String, Vec<String>>, u64)> {
    let http = reqwest::Client::new();
    let mut touched = BTreeMap::new();
    let mut events = 0u64;
    // Round robin over the malls (a promotion reaches them all at once): every mall's burst
    // begins at t = 0, as the floor assumes.
    let mut futs = Vec::new();
    for _ in 0..p.orders {
        for m in malls {
            let url = format!("{sim_base}/sim/malls/{m}/orders");
            let http = http.clone();
            // Placing orders is cheap; the deliveries happen inside these calls, concurrently.
            futs.push(async move { http.post(url).json(&json!({"emit_webhook": true})).send().await.map(|_| ()) });
            events += 1;
        }
    }
    for r in
        futures::StreamExt::collect::<Vec<_>>(futures::StreamExt::buffer_unordered(futures::stream::iter(futs), 24))
            .await
    {
        r?;
    }
    for m in malls {
        touched.insert(m.clone(), current_orders(sim, m).into_keys().rev().take(p.orders).collect::<Vec<_>>());
    }
    let mut futs = Vec::new();
    for i in 0..p.updates {
        for (m, ids) in &touched {
            let Some(id) = ids.get(i) else { continue };
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
    }
    for r in
        futures::StreamExt::collect::<Vec<_>>(futures::StreamExt::buffer_unordered(futures::stream::iter(futs), 24))
            .await
    {
        r?;
    }
    Ok((touched, events))
}

pub fn floor_s(touched: &BTreeMap<String, Vec<String>>, scale: f64) -> f64 {
    touched.values().map(|v| (v.len() as f64 - 40.0).max(0.0) / (2.0 * scale)).fold(0.0, f64::max)
}

pub fn install(sim: &Sim, mall: &str) -> (String, String) {
    sim.seed_tokens(mall, "relay-client", ALL_READ_SCOPES.iter().map(|s| s.to_string()).collect())
}

/// (first_call_s, max_calls_1s) of [`Row`] for `malls` since `start_ms`.
pub fn call_timing(sim: &Sim, malls: &[String], start_ms: u64) -> (f64, u32) {
    let first = {
        let g = sim.lock();
        malls
            .iter()
            .map(|m| {
                g.calls
                    .iter()
                    .find(|c| &c.mall == m && c.at_ms >= start_ms)
                    .map_or(f64::NAN, |c| (c.at_ms - start_ms) as f64 / 1000.0)
            })
            // A mall never called makes the figure NaN (f64::max would hide it as 0).
            .fold(0.0, |a: f64, b: f64| if a.is_nan() || b.is_nan() { f64::NAN } else { a.max(b) })
    };
    (first, malls.iter().map(|m| sim.stats(m).max_calls_in_1s).max().unwrap_or(0))
}

pub fn sim_totals(sim: &Sim, malls: &[String]) -> (u64, u64) {
    malls.iter().map(|m| sim.stats(m)).fold((0, 0), |(c, r), s| (c + s.calls, r + s.status_429))
}
