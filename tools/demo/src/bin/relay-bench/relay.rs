//! The relay row: webhook-ingest → inbox → dispatcher → work → worker, each function built
//! through its composition root, on a fresh moto stack, driven by local event source mappings.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use devstack::esm::{invoke, EsmConfig, LocalEsm};
use devstack::resources::Stack;
use dispatcher::{Dispatcher, DispatcherConfig};
use relay_aws::sqs::SqsQueue;
use relay_aws::state::DynamoState;
use relay_aws::tokens::DynamoTokenStore;
use relay_cafe24::Cafe24Config;
use relay_demo::bridge::{serve, INGEST_BILLED_MS};
use relay_domain::ports::SnapshotStore as _;
use relay_domain::tokens::{TokenPair, TokenStore};
use relay_domain::MallId;
use relay_domain::SnapshotKind;
use relay_lambda::clock::system_clock;
use serde_json::{json, Value};
use webhook_ingest::{Ingest, IngestConfig};
use worker::{Worker, WorkerConfig};

use crate::scenario::{burst, call_timing, current_orders, floor_s, install, sim_totals, Bench, EmuLoad, Row, KEY};

/// Runs the burst through relay; `defer_min_s` is the worker's DEFER_MIN_S in real-limit
/// seconds, `jobs_in_flight` its JOBS_IN_FLIGHT.
pub async fn run(b: &Bench, defer_min_s: f64, jobs_in_flight: u8) -> Result<Row> {
    let Bench { sim, sim_base, aws, http, p, .. } = b;
    let p = *p;
    let (sqs, ddb) = (aws.sqs.clone(), aws.ddb.clone());
    let malls: Vec<String> = (0..p.malls).map(|i| format!("relay-m{i}")).collect();
    let stack = Stack::create(aws, &devstack::unique_prefix("bench")).await?;
    let env = stack.env();
    let lookup = |k: &str| match k {
        "WEBHOOK_API_KEY" => Some(KEY.to_owned()),
        "LIMITER_RATE_PER_SEC" => Some((2.0 * p.scale).to_string()),
        "LIMITER_MIN_SPACING_MS" => Some(
            ((relay_domain::ratelimit::LimiterConfig::default().min_spacing_ms as f64 / p.scale) as u64).to_string(),
        ),
        "DEFER_MIN_S" => Some(((defer_min_s / p.scale).ceil() as u64).to_string()),
        "JOBS_IN_FLIGHT" => Some(jobs_in_flight.to_string()),
        _ => env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()),
    };
    let tokens = || DynamoTokenStore::new(ddb.clone(), stack.token_table.clone());
    for m in &malls {
        let (a, r) = install(sim, m);
        let now = sim.clock.now_ms();
        let pair = TokenPair::issued(a, r, vec![], now);
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
    let d = Dispatcher::on_aws(aws, DispatcherConfig::from_lookup(lookup)?);
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
    let w = Worker::on_aws(aws, wcfg, ccfg, system_clock())?;
    let state_writes_before = w.state().writes();
    let published_before = d.stats.published.load(Ordering::Relaxed) + w.stats.published.load(Ordering::Relaxed);
    let reads_before = w.state().reads() + w.cafe24.token_store().reads();
    http.post(format!("{sim_base}/sim/webhooks/target"))
        .json(&json!({"url": format!("{ingest_url}/webhooks/cafe24"), "api_key": KEY}))
        .send()
        .await?;
    let billed = AtomicU64::new(0);
    let esm = |u: &str, a: &str| {
        LocalEsm::new(sqs.clone(), EsmConfig { max_concurrency: 2, wait_time_seconds: 1, ..EsmConfig::new(u, a) })
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
    let emu_before = EmuLoad::read(b.ddb_stats.as_deref()).await;
    let start_ms = sim.clock.now_ms();
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
    let (sent_ms, done_ms) = (AtomicU64::new(0), AtomicU64::new(0));
    let drive = async {
        let b = burst(sim, sim_base, &malls, p).await;
        sent_ms.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
        let touched = b.as_ref().map(|(t, _)| t.clone()).unwrap_or_default();
        *sent.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(b);
        // Done when every touched order's snapshot is current. An order found current stays
        // so (the burst is over), so each is read until it is, then never again: the check
        // must not be a load of its own on the emulator it measures. Each mall's orders are
        // read oldest first, the order its jobs run in, and every mall on every round: read
        // one mall after another, the last mall's final order would leave every other mall's
        // orders (140 reads) to be read after it, and that read time counted as makespan.
        // The row re-reads them all.
        let mut pending: Vec<Vec<(MallId, String, Option<String>)>> = Vec::new();
        for (m, ids) in &touched {
            let cur = current_orders(sim, m);
            if let Ok(mall) = MallId::parse(m) {
                // `ids` are newest first: popping from the back reads them oldest first.
                pending.push(ids.iter().map(|id| (mall.clone(), id.clone(), cur.get(id).cloned())).collect());
            }
        }
        while pending.iter().any(|p| !p.is_empty()) && start.elapsed() < Duration::from_secs(600) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            for p in &mut pending {
                while let Some((mall, id, want)) = p.last() {
                    let current = matches!(state.snapshot(mall, SnapshotKind::Order, id).await, Ok(Some((_, Some(v)))) if want.as_deref() == Some(v.to_string().as_str()));
                    if !current {
                        break;
                    }
                    p.pop();
                }
            }
        }
        // The makespan ends here, not when the pollers below have returned: each may be inside
        // a 1 s long poll when told to stop, and that wait is the harness's, not the design's.
        done_ms.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
    };
    // Worker pollers like MaximumConcurrency ≥ active malls (one FIFO group per mall).
    tokio::join!(poll(0), poll(0), futures::future::join_all((0..=p.malls).map(|_| poll(1))), drive);
    let makespan = done_ms.load(Ordering::Relaxed) as f64 / 1000.0;
    let (touched, events) = sent
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
        .unwrap_or_else(|| Ok((BTreeMap::new(), 0)))?;
    let (calls, r429) = sim_totals(sim, &malls);
    let (first_call_s, max_calls_1s) = call_timing(sim, &malls, start_ms);
    let mut lost = 0;
    for (m, ids) in &touched {
        let cur = current_orders(sim, m);
        let mall = MallId::parse(m)?;
        for id in ids {
            let ok = matches!(state.snapshot(&mall, SnapshotKind::Order, id).await?, Some((_, Some(v))) if cur.get(id).map(String::as_str) == Some(v.to_string().as_str()));
            lost += u64::from(!ok);
        }
    }
    // Every call's result is stored by the worker's state store: fewer of its writes than
    // calls means the counter is not the worker's (this fails the smoke run in make test).
    let state_writes = w.state().writes() - state_writes_before;
    if state_writes < calls {
        bail!("relay's DynamoDB writes are miscounted: {state_writes} state writes for {calls} calls");
    }
    Ok(Row {
        design: "relay",
        webhooks: events,
        calls,
        r429,
        makespan_s: makespan,
        floor_s: floor_s(&touched, p.scale),
        billed_ms: billed.load(Ordering::Relaxed) + INGEST_BILLED_MS.load(Ordering::Relaxed) - ingest_before,
        sleep_ms: w.stats.asleep_ms.load(Ordering::Relaxed),
        job_sleep_ms: w.cafe24.stats.inline_sleep_ms.load(Ordering::Relaxed),
        // The worker's own store: `state` above only reads (counting its writes showed 1.2
        // writes per call for a while, when the worker's wiring moved into `on_aws`).
        ddb_writes: w.cafe24.gate().stats.writes.load(Ordering::Relaxed) + state_writes,
        ddb_reads: w.state().reads() + w.cafe24.token_store().reads() - reads_before,
        lost,
        duplicated: 0,
        emu: EmuLoad::read(b.ddb_stats.as_deref()).await.zip(emu_before).map(|(a, b)| a.since(b)),
        start_ms,
        sent_s: sent_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        first_call_s,
        max_calls_1s,
        events: Some(
            d.stats.published.load(Ordering::Relaxed) + w.stats.published.load(Ordering::Relaxed) - published_before,
        ),
    })
}
