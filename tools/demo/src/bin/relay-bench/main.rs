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
//! Each design gets its own malls on the same simulator. Then **the app at work during a
//! backlog** (`app.rs`): while a mall drains sync jobs, the app's 60 writes go as commands and a
//! screen reads through the call API once a second, against the app calling Cafe24 itself on
//! another mall. Output: markdown tables and a PNG chart in `docs/benchmarks/`. `--quick`
//! scales limits ×10 and shrinks the burst (a smoke run).

mod app;
mod baselines;
mod relay;
mod report;
mod scenario;

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Result};
use cafe24_sim::state::{AppConfig, ALL_READ_SCOPES};
use cafe24_sim::{Clock, Sim, SimConfig};

use scenario::{Bench, Params};

/// `make bench`: one burst of webhooks through relay and through the two designs it replaces
/// (direct calls from the webhook handler, a handoff that sleeps per call), at Cafe24's real
/// limits on the local stack; prints the table and writes it with a chart to docs/benchmarks/.
#[derive(clap::Parser, Debug)]
#[command(
    name = "relay-bench",
    about = "make bench: one webhook burst through relay and two baseline designs at Cafe24's real limits; writes docs/benchmarks/burst.md and burst.png",
    long_about = None
)]
struct Args {
    /// A smoke run (limits ×10, a smaller burst); writes to target/bench-quick/.
    #[arg(long)]
    quick: bool,
    /// Run relay only: no baselines, nothing written (experiments).
    #[arg(long)]
    relay_only: bool,
    /// Serve DynamoDB from the same moto as SQS (by default it gets a moto of its own: one
    /// Python process serving both set the pace of the whole pipeline).
    #[arg(long)]
    one_emulator: bool,
    /// Serve DynamoDB from this endpoint instead of a moto (e.g. a `dynoxide serve` started by
    /// hand; with `--relay-only`, its load is not reported).
    #[arg(long, conflicts_with = "one_emulator", requires = "relay_only")]
    dynamodb_endpoint: Option<String>,
    /// Cafe24's round trip added by the simulator to every Admin API answer, in ms (the
    /// in-process simulator answers in well under 1 ms; Cafe24 takes tens to hundreds). With
    /// `--relay-only`: the written results are at the simulator's own speed.
    #[arg(long, default_value_t = 0, requires = "relay_only")]
    cafe24_latency_ms: u64,
    /// The worker's JOBS_IN_FLIGHT (jobs of one mall overlapping in an invocation; the
    /// worker's default).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=8))]
    jobs_in_flight: u8,
    /// The worker's DEFER_MIN_S, in real-limit seconds.
    #[arg(long, default_value_t = 1.0)]
    defer_min_s: f64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let Args { quick, relay_only, one_emulator, dynamodb_endpoint, cafe24_latency_ms, jobs_in_flight, defer_min_s } =
        <Args as clap::Parser>::parse();
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
    let mut aws = relay_aws::Clients::new(&conf);
    // DynamoDB on a moto of its own (a second Python process), as AWS_ENDPOINT_URL_DYNAMODB
    // would point it; SQS and EventBridge stay on the shared one.
    // Kept until the end: the private moto stops when dropped.
    let (_ddb_moto, ddb_stats) = if one_emulator {
        (None, None)
    } else if let Some(url) = &dynamodb_endpoint {
        aws.ddb = aws_sdk_dynamodb::Client::new(&devstack::sdk_config(url).await);
        (None, None)
    } else {
        let stats = std::env::temp_dir().join(format!("relay-bench-ddb-{}.json", std::process::id()));
        let moto = devstack::moto::PrivateMoto::start_with_stats(Some(&stats)).await?;
        aws.ddb = aws_sdk_dynamodb::Client::new(&devstack::sdk_config(&moto.url).await);
        (Some(moto), Some(stats))
    };
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
    if cafe24_latency_ms > 0 {
        sim.lock().faults.push(cafe24_sim::state::Fault {
            mall: None,
            endpoint: None,
            kind: cafe24_sim::state::FaultKind::Latency { ms: cafe24_latency_ms },
            remaining: None,
        });
    }
    let (addr, _t) = cafe24_sim::spawn(sim.clone(), "127.0.0.1:0".parse()?).await?;
    let sim_base = format!("http://{addr}");
    let http = reqwest::Client::new();
    let t_bench = Instant::now();

    let b = Bench { sim, sim_base, aws, http, p, ddb_stats };
    let mut rows = vec![relay::run(&b, defer_min_s, jobs_in_flight).await?];
    if relay_only {
        for r in &rows {
            println!("{r:?}");
        }
        // Where the time went: each mall's calls per second since the burst began.
        let start_ms = rows.first().map_or(0, |r| r.start_ms);
        for (mall, per_s) in report::calls_per_second(&b.sim, "relay", start_ms) {
            println!("{mall} calls/s: {per_s:?}");
        }
        return Ok(());
    }
    for design in ["direct", "handoff"] {
        rows.push(baselines::run(&b, design).await?);
    }
    // The app at work during a backlog: its writes as commands, a screen's reads through the
    // call API, against the app calling Cafe24 itself.
    let (app_relay, app_direct) = app::run(&b).await?;
    let app_missed = app_relay.relay_429 > 0 || app_relay.duplicated > 0 || app_relay.commands < 60;
    let mut md = report::markdown(&rows, p, quick, t_bench.elapsed().as_secs_f64(), b.ddb_stats.is_some());
    md.push('\n');
    md.push_str(&app::markdown(&[app_relay, app_direct], p.scale));
    println!("\n{md}");
    // The quick smoke run (in `make test`) writes under target/, leaving the committed results alone.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = if quick { root.join("target/bench-quick") } else { root.join("docs/benchmarks") };
    std::fs::create_dir_all(&dir)?;
    let name = if quick { "burst-quick" } else { "burst" };
    std::fs::write(dir.join(format!("{name}.md")), &md)?;
    report::chart(&b.sim, &rows, &dir.join(format!("{name}.png")), p)?;
    println!("wrote {}/{name}.md and {name}.png", dir.display());
    if let Some(relay) = rows.first() {
        if relay.r429 > 0 || relay.lost > 0 || relay.duplicated > 0 {
            bail!("relay missed its targets");
        }
    }
    if app_missed {
        bail!("the app scenario missed its targets through the relay (a 429, a duplicated effect or a write without a result)");
    }
    Ok(())
}
