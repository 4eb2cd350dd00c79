//! `cafe24-sim` — run the Cafe24 simulator. `cafe24-sim --help` lists every option.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use cafe24_sim::{Clock, Sim, SimConfig};
use clap::Parser;

/// A local stand-in for Cafe24's Admin API, OAuth and webhooks, with real rate limits.
///
/// Admin API base URL for a mall: http://HOST:PORT/{mall_id} (set CAFE24_API_BASE_URL to
/// "http://HOST:PORT/{mall_id}"). Control API under /sim/ (stats, faults, clock, webhooks).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port (0 = any free port; the chosen one is printed).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Leaky-bucket capacity per mall.
    #[arg(long, default_value_t = 40)]
    capacity: u32,
    /// Bucket drain, calls per second.
    #[arg(long, default_value_t = 2.0)]
    leak_per_sec: f64,
    /// Give every app its own bucket on a mall (default: one bucket per mall, shared).
    #[arg(long)]
    bucket_per_app: bool,
    /// Usage quota: calls per 10 minutes.
    #[arg(long, default_value_t = 3000)]
    call_quota: u64,
    /// Start on a manual clock at this epoch-ms instant (advance with POST /sim/clock/advance).
    #[arg(long)]
    manual_clock: Option<u64>,
    /// Data seed.
    #[arg(long, default_value_t = 24)]
    seed: u64,
    /// OAuth client id of the registered app.
    #[arg(long, default_value = "sim-client")]
    client_id: String,
    /// OAuth client secret of the registered app.
    #[arg(long, default_value = "sim-secret")]
    client_secret: String,
    /// Where to send webhooks (can also be set later via POST /sim/webhooks/target).
    #[arg(long)]
    webhook_url: Option<String>,
    /// X-API-Key sent with webhooks.
    #[arg(long, default_value = "sim-webhook-key")]
    webhook_key: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new("info")).init();
    let a = Args::parse();
    let mut config = SimConfig {
        capacity: a.capacity,
        leak_per_sec: a.leak_per_sec,
        shared_bucket: !a.bucket_per_app,
        call_quota: a.call_quota,
        seed: a.seed,
        ..SimConfig::default()
    };
    if let Some(app) = config.apps.first_mut() {
        app.client_id = a.client_id;
        app.client_secret = a.client_secret;
    }
    let clock = a.manual_clock.map_or(Clock::Real, Clock::manual);
    let sim = Arc::new(Sim::new(config, clock));
    if let Some(url) = a.webhook_url {
        sim.lock().webhook_target = Some((url, a.webhook_key));
    }
    let (addr, task) = cafe24_sim::spawn(sim, SocketAddr::new(a.host, a.port)).await?;
    // The first line on stdout is the base URL, for scripts.
    println!("http://{addr}");
    task.await?;
    Ok(())
}
