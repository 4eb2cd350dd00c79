//! The app at work during a backlog (issue 31): while a mall drains a backlog of sync jobs, the
//! app sends writes as commands (mixed POST and PUT) and a merchant's screen reads through the
//! call API at one read per second (half of them accepting a snapshot up to 60 s old). The
//! baseline, on another mall of the same run: the app makes the same writes and reads against
//! Cafe24 directly with a copy of the token, beside the relay's drain.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Result;
use cafe24_sim::state::{ALL_READ_SCOPES, ALL_WRITE_SCOPES};
use call_api::{CallApi, CallApiConfig};
use devstack::esm::{invoke, EsmConfig, LocalEsm};
use devstack::resources::Stack;
use dispatcher::{Dispatcher, DispatcherConfig};
use relay_cafe24::Cafe24Config;
use relay_domain::jobs::{Job, JobKind};
use relay_domain::ports::{MessageQueue as _, OutboundMessage};
use relay_domain::ratelimit::Class;
use relay_domain::tokens::{TokenPair, TokenStore as _};
use relay_domain::{MallId, ShopNo};
use relay_lambda::clock::system_clock;
use serde_json::{json, Value};
use worker::{Worker, WorkerConfig};

use crate::scenario::Bench;

/// One design's numbers.
#[derive(Debug, Default)]
pub struct AppRow {
    pub design: &'static str,
    pub backlog: usize,
    pub commands: usize,
    /// Writes that took effect more than once for one key.
    pub duplicated: usize,
    /// Commands that ended `uncertain` (0 expected: nothing here times out).
    pub uncertain: usize,
    /// 429s Cafe24 answered the relay's calls and the app's own.
    pub relay_429: u64,
    pub app_429: u64,
    /// Send → result event (relay) or send → Cafe24's answer, retries included (direct), ms.
    pub write_p50_ms: u64,
    pub write_p95_ms: u64,
    pub reads: usize,
    pub read_p50_ms: u64,
    pub read_p95_ms: u64,
    /// Reads answered 503 (the budget spent) or, direct, 429 on the first try.
    pub read_refused: usize,
    pub read_from_snapshot: usize,
    pub drain_s: f64,
}

fn pct(v: &mut [u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
    v.get(i).copied().unwrap_or(0)
}

fn write_body(i: usize, key: &str, order: &str) -> (String, String, Value) {
    if i.is_multiple_of(2) {
        (
            "POST".into(),
            "points".into(),
            json!({"shop_no": 1, "request": {"member_id": "member0001", "amount": "100", "reason": key}}),
        )
    } else {
        ("PUT".into(), format!("orders/{order}"), json!({"request": {"shipping_status": "M", "memo": key}}))
    }
}

/// Installs `mall` with read and write scopes and `orders` orders; returns its token and the ids.
async fn prepare(b: &Bench, stack: &Stack, mall: &str, orders: usize) -> Result<(String, Vec<String>)> {
    let scopes: Vec<String> = ALL_READ_SCOPES.iter().chain(ALL_WRITE_SCOPES).map(|s| s.to_string()).collect();
    let (a, r) = b.sim.seed_tokens(mall, "relay-client", scopes.clone());
    let now = b.sim.clock.now_ms();
    relay_aws::tokens::DynamoTokenStore::new(b.aws.ddb.clone(), stack.token_table.clone())
        .put_installed(&MallId::parse(mall)?, &TokenPair::issued(a.clone(), r, scopes, now), now)
        .await?;
    let ids = {
        let mut g = b.sim.lock();
        let data = &mut b.sim.mall(&mut g, mall).data;
        (0..orders)
            .map(|i| data.add_order(now - 60_000 + i as u64, "member0001".into(), vec![(1, 1, 1_000)], true))
            .collect()
    };
    Ok((a, ids))
}

/// The backlog: one sync job per order on the mall's live group.
async fn enqueue_backlog(q: &relay_aws::sqs::SqsQueue, mall: &MallId, ids: &[String]) -> Result<()> {
    let msgs: Vec<OutboundMessage> = ids
        .iter()
        .map(|id| {
            let job = Job {
                v: relay_domain::jobs::JOB_VERSION,
                job_id: relay_domain::DedupId::derive("bench-app", &[mall.as_str().as_bytes(), id.as_bytes()]),
                mall_id: mall.clone(),
                shop_no: ShopNo::DEFAULT,
                kind: JobKind::SyncOrder { order_id: id.clone() },
                class: Class::Live,
                trace_id: None,
                event_received_ms: 0,
            };
            OutboundMessage {
                group_id: MallId::parse(mall.as_str())
                    .map(|m| relay_domain::ratelimit::KeyScope::Mall.key(&m).group(Class::Live))
                    .unwrap_or_else(|_| relay_domain::ports::GroupId::parked()),
                dedup_id: job.job_id.clone(),
                body: job.to_body(),
            }
        })
        .collect();
    for chunk in msgs.chunks(10) {
        q.send_batch(chunk).await?;
    }
    Ok(())
}

/// Runs both designs; returns (relay, direct).
pub async fn run(b: &Bench) -> Result<(AppRow, AppRow)> {
    let p = b.p;
    let backlog = p.orders * 2;
    let stack = Stack::create(&b.aws, &devstack::unique_prefix("bench-app")).await?;
    let env = stack.env();
    let scaled = |k: &str| match k {
        "LIMITER_RATE_PER_SEC" => Some((2.0 * p.scale).to_string()),
        "LIMITER_MIN_SPACING_MS" => Some(
            ((relay_domain::ratelimit::LimiterConfig::default().min_spacing_ms as f64 / p.scale) as u64).to_string(),
        ),
        "DEFER_MIN_S" => Some("1".into()),
        "WORKER_MAX_SLEEP_MS" => Some(((200.0 / p.scale) as u64).to_string()),
        _ => env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()),
    };
    let base = format!("{}/{{mall_id}}", b.sim_base);
    let ccfg = || {
        Cafe24Config::from_lookup(|k| match k {
            "CAFE24_API_BASE_URL" => Some(base.clone()),
            "CAFE24_CLIENT_ID" => Some("relay-client".into()),
            "CAFE24_CLIENT_SECRET" => Some("relay-secret".into()),
            _ => None,
        })
    };
    let d = Dispatcher::on_aws(&b.aws, DispatcherConfig::from_lookup(scaled)?);
    let w = Worker::on_aws(&b.aws, WorkerConfig::from_lookup(scaled)?, ccfg()?, system_clock())?;
    let api = CallApi::on_aws(&b.aws, CallApiConfig::from_lookup(scaled)?, ccfg()?, system_clock())?;
    let app_events =
        devstack::resources::subscribe_queue(&b.aws, &stack.event_bus, &format!("{}-app", stack.event_bus)).await?;
    let work = relay_aws::sqs::SqsQueue::new(b.aws.sqs.clone(), stack.work.url.clone());

    let relay_mall = "app-relay";
    let direct_mall = "app-direct";
    let (_, relay_ids) = prepare(b, &stack, relay_mall, backlog).await?;
    let (direct_token, direct_ids) = prepare(b, &stack, direct_mall, backlog).await?;
    enqueue_backlog(&work, &MallId::parse(relay_mall)?, &relay_ids).await?;
    enqueue_backlog(&work, &MallId::parse(direct_mall)?, &direct_ids).await?;

    let esm = |u: &str, a: &str| {
        LocalEsm::new(b.aws.sqs.clone(), EsmConfig { max_concurrency: 2, wait_time_seconds: 1, ..EsmConfig::new(u, a) })
    };
    let (cmdq, workq) = (esm(&stack.commands.url, &stack.commands.arn), esm(&stack.work.url, &stack.work.arn));
    let dh = |e: Value| invoke("dispatcher", e, |ev| d.handle_batch(ev, || Duration::from_secs(30)));
    let wh = |e: Value| invoke("worker", e, |ev| w.handle_batch(ev, || Duration::from_secs(60)));
    let stop = AtomicBool::new(false);
    let poll = |which: u8| {
        let (stop, dh, wh, cmdq, workq) = (&stop, &dh, &wh, &cmdq, &workq);
        async move {
            while !stop.load(Ordering::Relaxed) {
                let r = if which == 0 { cmdq.poll_once(dh).await } else { workq.poll_once(wh).await };
                if r.map(|r| r.received == 0).unwrap_or(true) {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            }
        }
    };
    // The drain at the limit takes about backlog / rate seconds: the app's writes are spread
    // over its first two thirds, its reads over all of it.
    let drain_est = Duration::from_secs_f64(backlog as f64 / (2.0 * p.scale));
    let n_writes = 60usize;
    let read_every = Duration::from_secs_f64(1.0 / p.scale);
    let start = Instant::now();
    let sent_at: Mutex<BTreeMap<String, Instant>> = Mutex::new(BTreeMap::new());
    let write_ms: Mutex<Vec<u64>> = Mutex::new(Vec::new());
    let direct_write_ms: Mutex<Vec<u64>> = Mutex::new(Vec::new());
    let mut relay_row = AppRow { design: "relay", backlog, commands: n_writes, ..AppRow::default() };
    let mut direct_row =
        AppRow { design: "direct (app calls Cafe24 itself)", backlog, commands: n_writes, ..AppRow::default() };
    let (relay_reads, direct_reads) = (Mutex::new(Vec::new()), Mutex::new(Vec::new()));
    let (relay_refused, direct_refused, snapshots, app_429) =
        (Mutex::new(0usize), Mutex::new(0usize), Mutex::new(0usize), Mutex::new(0u64));
    let http = &b.http;
    let direct_call = |method: &str, path: String, body: Option<Value>| {
        let url = format!("{}/{direct_mall}/api/v2/admin/{path}", b.sim_base);
        let req = match method {
            "POST" => http.post(url),
            "PUT" => http.put(url),
            _ => http.get(url),
        };
        let req = req.bearer_auth(&direct_token);
        async move {
            let req = match body {
                Some(b) => req.json(&b),
                None => req,
            };
            req.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
        }
    };
    let writes = async {
        for i in 0..n_writes {
            tokio::time::sleep(drain_est.mul_f64(0.66 / n_writes as f64)).await;
            let key = format!("app-w{i}");
            let order = relay_ids.get(i % relay_ids.len()).cloned().unwrap_or_default();
            let (method, path, body) = write_body(i, &key, &order);
            let cmd = json!({"v": 1, "key": key, "mall_id": relay_mall, "method": method, "path": path, "body": body});
            sent_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(key.clone(), Instant::now());
            let _ = b
                .aws
                .sqs
                .send_message()
                .queue_url(&stack.commands.url)
                .message_body(cmd.to_string())
                .message_group_id(relay_mall)
                .message_deduplication_id(&key)
                .send()
                .await;
            // The baseline app: the same write straight to Cafe24, retried after 1 s on a 429.
            let dorder = direct_ids.get(i % direct_ids.len()).cloned().unwrap_or_default();
            let (dm, dp, db) = write_body(i, &key, &dorder);
            let t = Instant::now();
            loop {
                let s = direct_call(&dm, dp.clone(), Some(db.clone())).await;
                if s == 429 {
                    *app_429.lock().unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
                    tokio::time::sleep(Duration::from_secs_f64(1.0 / p.scale)).await;
                    continue;
                }
                break;
            }
            direct_write_ms
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(t.elapsed().as_millis() as u64);
        }
    };
    let reads = async {
        let mut i = 0usize;
        while start.elapsed() < drain_est {
            tokio::time::sleep(read_every).await;
            let order = relay_ids.get(i % relay_ids.len()).cloned().unwrap_or_default();
            // Half the screen's reads accept a snapshot up to 60 s old.
            let q = if i.is_multiple_of(2) {
                json!({"mall_id": relay_mall, "method": "GET", "path": format!("orders/{order}"), "max_age_s": 60})
            } else {
                json!({"mall_id": relay_mall, "method": "GET", "path": format!("orders/{order}")})
            };
            let t = Instant::now();
            let req = lambda_http::http::Request::builder()
                .method("POST")
                .uri("https://call.local/v1/call")
                .body(lambda_http::Body::Text(q.to_string()))?;
            let r = api.handle(req).await;
            relay_reads.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(t.elapsed().as_millis() as u64);
            if r.status().as_u16() == 503 {
                *relay_refused.lock().unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
            }
            if r.headers().get("x-relay-outcome").is_some_and(|v| v == "snapshot") {
                *snapshots.lock().unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
            }
            let dorder = direct_ids.get(i % direct_ids.len()).cloned().unwrap_or_default();
            let t = Instant::now();
            let mut first = true;
            loop {
                let s = direct_call("GET", format!("orders/{dorder}"), None).await;
                if s == 429 {
                    *app_429.lock().unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
                    if first {
                        *direct_refused.lock().unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
                    }
                    first = false;
                    tokio::time::sleep(Duration::from_secs_f64(1.0 / p.scale)).await;
                    continue;
                }
                break;
            }
            direct_reads.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(t.elapsed().as_millis() as u64);
            i += 1;
        }
        anyhow::Ok(())
    };
    let results = async {
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        while seen.len() < n_writes && start.elapsed() < drain_est * 4 + Duration::from_secs(30) {
            let out = b
                .aws
                .sqs
                .receive_message()
                .queue_url(&app_events)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await;
            let Ok(out) = out else { continue };
            for m in out.messages() {
                let now = Instant::now();
                let Ok(e) = serde_json::from_str::<Value>(m.body().unwrap_or("")) else { continue };
                let dt = e.get("detail-type").and_then(Value::as_str).unwrap_or("").to_owned();
                let key = e.pointer("/detail/key").and_then(Value::as_str);
                if let (true, Some(key)) = (dt.starts_with("command."), key) {
                    if seen.insert(key.to_owned(), dt).is_none() {
                        if let Some(t) = sent_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(key) {
                            write_ms
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .push(now.duration_since(*t).as_millis() as u64);
                        }
                    }
                }
                if let Some(h) = m.receipt_handle() {
                    let _ = b.aws.sqs.delete_message().queue_url(&app_events).receipt_handle(h).send().await;
                }
            }
        }
        seen
    };
    let drive = async {
        let (_, r, seen) = tokio::join!(writes, reads, results);
        stop.store(true, Ordering::Relaxed);
        (r, seen)
    };
    let ((r, seen), ..) = tokio::join!(drive, poll(0), poll(1), poll(1), poll(1));
    r?;
    let elapsed = start.elapsed().as_secs_f64();
    let effects = |mall: &str| {
        let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
        for e in b.sim.stats(mall).effects {
            let text = e.body.to_string();
            if let Some(k) = (0..n_writes).map(|i| format!("app-w{i}\"")).find(|k| text.contains(k.as_str())) {
                *per_key.entry(k).or_default() += 1;
            }
        }
        per_key.values().filter(|n| **n > 1).count()
    };
    relay_row.duplicated = effects(relay_mall);
    relay_row.uncertain = seen.values().filter(|t| t.as_str() == "command.uncertain").count();
    relay_row.relay_429 = b.sim.stats(relay_mall).status_429;
    let (mut wr, mut rr) = (
        std::mem::take(&mut *write_ms.lock().unwrap_or_else(std::sync::PoisonError::into_inner)),
        std::mem::take(&mut *relay_reads.lock().unwrap_or_else(std::sync::PoisonError::into_inner)),
    );
    relay_row.commands = seen.len();
    relay_row.write_p50_ms = pct(&mut wr, 0.5);
    relay_row.write_p95_ms = pct(&mut wr, 0.95);
    relay_row.reads = rr.len();
    relay_row.read_p50_ms = pct(&mut rr, 0.5);
    relay_row.read_p95_ms = pct(&mut rr, 0.95);
    relay_row.read_refused = *relay_refused.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    relay_row.read_from_snapshot = *snapshots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    relay_row.drain_s = elapsed;
    let (mut dw, mut dr) = (
        std::mem::take(&mut *direct_write_ms.lock().unwrap_or_else(std::sync::PoisonError::into_inner)),
        std::mem::take(&mut *direct_reads.lock().unwrap_or_else(std::sync::PoisonError::into_inner)),
    );
    direct_row.duplicated = effects(direct_mall);
    direct_row.relay_429 =
        b.sim.stats(direct_mall).status_429 - *app_429.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    direct_row.app_429 = *app_429.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    direct_row.write_p50_ms = pct(&mut dw, 0.5);
    direct_row.write_p95_ms = pct(&mut dw, 0.95);
    direct_row.reads = dr.len();
    direct_row.read_p50_ms = pct(&mut dr, 0.5);
    direct_row.read_p95_ms = pct(&mut dr, 0.95);
    direct_row.read_refused = *direct_refused.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    direct_row.drain_s = elapsed;
    Ok((relay_row, direct_row))
}

/// The scenario's table.
pub fn markdown(rows: &[AppRow], scale: f64) -> String {
    let mut s = format!(
        "## The app at work during a backlog (limits ×{scale})\n\n\
         | design | backlog jobs | writes with a result | duplicated effects | uncertain | relay 429s | app 429s | write p50 / p95 | reads | read p50 / p95 | reads refused (503 / first-try 429) | reads from a snapshot |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} / {} ms | {} | {} / {} ms | {} | {} |\n",
            r.design,
            r.backlog,
            r.commands,
            r.duplicated,
            r.uncertain,
            r.relay_429,
            r.app_429,
            r.write_p50_ms,
            r.write_p95_ms,
            r.reads,
            r.read_p50_ms,
            r.read_p95_ms,
            r.read_refused,
            r.read_from_snapshot
        ));
    }
    s
}
