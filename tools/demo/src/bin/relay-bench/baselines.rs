//! The two BASELINE designs (not product code), run against the same simulator:
//! - **direct**: the webhook handler calls Cafe24 at once; on 429 it sleeps 1 s and retries;
//! - **handoff**: the consumer starts the API work as a detached task (as a trigger starting a
//!   state machine would) and answers at once; the task sleeps 1 s and retries on 429.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{json, Value};

use crate::scenario::{burst, call_timing, current_orders, floor_s, install, sim_totals, Bench, EmuLoad, Row, KEY};

#[derive(Clone)]
struct Naive {
    tokens: Arc<BTreeMap<String, String>>,
    fetched: Arc<Mutex<Fetched>>,
    billed: Arc<AtomicU64>,
    slept: Arc<AtomicU64>,
    seen: Arc<Mutex<HashSet<String>>>,
    dups: Arc<AtomicU64>,
    outstanding: Arc<AtomicU64>,
    client: reqwest::Client,
    sim_base: String,
    scale: f64,
}

/// Every version of each (mall, order) a baseline fetched, as JSON text.
type Fetched = BTreeMap<(String, String), std::collections::BTreeSet<String>>;

/// Shared by the two baselines: one GET with 429 → sleep 1 s → retry; every version fetched is
/// recorded (its JSON text). Returns the ms slept.
async fn naive_fetch(
    http: &reqwest::Client,
    base: &str,
    mall: &str,
    token: &str,
    order: &str,
    scale: f64,
    fetched: &Mutex<Fetched>,
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
            if let Some(o) = v.get("order") {
                let mut f = fetched.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                f.entry((mall.to_owned(), order.to_owned())).or_default().insert(o.to_string());
            }
        }
        return slept;
    }
    slept
}

/// Runs the burst through one baseline design (`"direct"` or `"handoff"`).
pub async fn run(b: &Bench, design: &'static str) -> Result<Row> {
    let Bench { sim, sim_base, http, p, .. } = b;
    let p = *p;
    let malls: Vec<String> = (0..p.malls).map(|i| format!("{design}-m{i}")).collect();
    let naive = Naive {
        tokens: Arc::new(malls.iter().map(|m| (m.clone(), install(sim, m).0)).collect()),
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
                        let s =
                            naive_fetch(&st.client, &st.sim_base, &mall, &token, &order, st.scale, &st.fetched).await;
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
    let emu_before = EmuLoad::read(b.ddb_stats.as_deref()).await;
    let start_ms = sim.clock.now_ms();
    let start = Instant::now();
    let (touched, events) = burst(sim, sim_base, &malls, p).await?;
    let sent_s = start.elapsed().as_secs_f64();
    while naive.outstanding.load(Ordering::Relaxed) > 0 && start.elapsed() < Duration::from_secs(900) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let makespan = start.elapsed().as_secs_f64();
    let (calls, r429) = sim_totals(sim, &malls);
    let (first_call_s, max_calls_1s) = call_timing(sim, &malls, start_ms);
    let f = naive.fetched.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let mut lost = 0;
    for (m, ids) in &touched {
        let cur = current_orders(sim, m);
        for id in ids {
            // Lost: the version Cafe24 holds now was never fetched.
            lost +=
                u64::from(!cur.get(id).is_some_and(|c| f.get(&(m.clone(), id.clone())).is_some_and(|s| s.contains(c))));
        }
    }
    Ok(Row {
        design,
        webhooks: events,
        calls,
        r429,
        makespan_s: makespan,
        floor_s: floor_s(&touched, p.scale),
        billed_ms: naive.billed.load(Ordering::Relaxed),
        sleep_ms: naive.slept.load(Ordering::Relaxed),
        // One job per invocation: the two are the same.
        job_sleep_ms: naive.slept.load(Ordering::Relaxed),
        ddb_writes: 0,
        ddb_reads: 0,
        lost,
        duplicated: naive.dups.load(Ordering::Relaxed),
        emu: EmuLoad::read(b.ddb_stats.as_deref()).await.zip(emu_before).map(|(a, b)| a.since(b)),
        start_ms,
        sent_s,
        first_call_s,
        max_calls_1s,
        events: None,
    })
}
