//! `relay` binary: argument parsing, progress bars and output; the work is in the library.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use relay::dlq::{self, Stage};
use relay::target::Target;
use relay::{call, mall, resync, snapshot, trace};
use relay_domain::ports::MessageQueue as _;

/// Operate cafe24-relay: follow a webhook, inspect and redrive dead letters, check a mall.
#[derive(Parser, Debug)]
#[command(name = "relay", version, about, long_about = None)]
struct Cli {
    /// Use the local stack (`target/relay-local/stack.env`, written by `make demo`).
    #[arg(long, global = true, conflicts_with = "env_file")]
    local: bool,
    /// The stack file to use (default `.relay/aws.env`, written by `make deploy`).
    #[arg(long, global = true, env = "RELAY_ENV_FILE")]
    env_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Every log line of one webhook across webhook-ingest, dispatcher and worker, in time order;
    /// or, with --mall and --order/--product, of every webhook whose jobs touched that entity.
    Trace {
        /// The trace id (the `X-Trace-ID` Cafe24 sent, or `body-…` when it sent none).
        #[arg(required_unless_present = "mall", conflicts_with = "mall")]
        trace_id: Option<String>,
        /// The mall of the order or product to follow.
        #[arg(long, requires = "entity")]
        mall: Option<String>,
        /// Follow this order (its order id).
        #[arg(long, group = "entity")]
        order: Option<String>,
        /// Follow this product (its product number).
        #[arg(long, group = "entity")]
        product: Option<String>,
        /// How far back to search on AWS (e.g. 30m, 6h, 2d).
        #[arg(long, default_value = "24h", value_parser = parse_since)]
        since: Duration,
        /// Print the raw JSON lines instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Dead-letter queues.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Installed malls, one page at a time (status and expiries; never token values).
    Malls {
        /// Only malls with this token status.
        #[arg(long, value_parser = ["active", "needs_reauth", "uninstalled"])]
        status: Option<String>,
        /// At most this many malls.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
        max: u32,
        /// Start after this mall (the `--after` printed with the previous page).
        #[arg(long)]
        after: Option<String>,
    },
    /// One mall.
    Mall {
        #[command(subcommand)]
        command: MallCommand,
    },
    /// Synced data in the state table.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// A request to a mall's Admin API through the relay's command door (its limiter, its
    /// tokens, once per key); prints the result when the worker has made it.
    Call {
        /// The mall id.
        #[arg(long)]
        mall: String,
        /// The shop (sent as `shop_no`).
        #[arg(long, value_parser = parse_shop)]
        shop: Option<relay_domain::ShopNo>,
        /// GET, POST, PUT or DELETE.
        method: String,
        /// The path under /api/v2/admin/ (e.g. orders/20260101-0000001).
        path: String,
        /// Query parameters, NAME=VALUE (repeatable).
        #[arg(long)]
        query: Vec<String>,
        /// The JSON body (POST, PUT), or @file.
        #[arg(long)]
        data: Option<String>,
        /// The idempotency key (default: a new one). The same key again returns the recorded result.
        #[arg(long)]
        key: Option<String>,
        /// Send and return without waiting for the result.
        #[arg(long)]
        no_wait: bool,
    },
    /// Backfill a mall's orders or products from Cafe24's list endpoints (a bulk job the worker
    /// runs through the mall's limiter, beside its live webhooks), and follow its progress.
    #[command(args_conflicts_with_subcommands = true)]
    Resync {
        #[command(subcommand)]
        command: Option<ResyncCommand>,
        #[command(flatten)]
        start: Option<ResyncArgs>,
    },
}

#[derive(clap::Args, Debug)]
struct ResyncArgs {
    /// The mall id.
    #[arg(long)]
    mall: String,
    /// Orders placed from this day (YYYY-MM-DD, KST) or timestamp.
    #[arg(long, required = true)]
    since: String,
    /// Until this day (inclusive) or timestamp; default now.
    #[arg(long)]
    until: Option<String>,
    /// What to backfill: orders or products.
    #[arg(long, value_parser = resync::parse_kind, default_value = "orders")]
    kind: relay_domain::backfill::Resource,
    /// One shop of a multi-shop mall (default: every shop, as Cafe24 lists them).
    #[arg(long, value_parser = parse_shop)]
    shop: Option<relay_domain::ShopNo>,
    /// Queue the job and return without following its progress.
    #[arg(long)]
    no_wait: bool,
}

#[derive(Subcommand, Debug)]
enum ResyncCommand {
    /// The stored progress of the mall's backfills.
    Status {
        /// The mall id.
        #[arg(long)]
        mall: String,
    },
}

#[derive(Subcommand, Debug)]
enum SnapshotCommand {
    /// The stored version of one order, product or customer (its data, fetch time = version).
    Get {
        /// The mall id.
        #[arg(long)]
        mall: String,
        /// order, product or customer.
        #[arg(value_parser = snapshot::parse_kind)]
        kind: relay_domain::SnapshotKind,
        /// order_id, product_no or member_id.
        id: String,
        /// The shop of a multi-shop mall.
        #[arg(long, value_parser = parse_shop, default_value = "1")]
        shop: relay_domain::ShopNo,
    },
}

/// `--shop`: a shop number, 1 or more.
fn parse_shop(s: &str) -> Result<relay_domain::ShopNo, String> {
    s.trim()
        .parse::<u32>()
        .ok()
        .and_then(relay_domain::ShopNo::new)
        .ok_or_else(|| format!("{s:?} is not a shop number (1..={})", relay_domain::ShopNo::MAX))
}

#[derive(Subcommand, Debug)]
enum DlqCommand {
    /// List dead-lettered messages with mall, reason and error class (not their payloads).
    List {
        /// Which DLQ.
        #[arg(long, value_enum, default_value = "work")]
        stage: Stage,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        max: usize,
    },
    /// Move messages back to their source queue in order, group by group (FIFO-safe).
    Redrive {
        /// Which DLQ.
        #[arg(long, value_enum, default_value = "work")]
        stage: Stage,
        /// Only this message group (a mall id, or `_parked`).
        #[arg(long)]
        group: Option<String>,
        /// At most this many messages.
        #[arg(long)]
        max: Option<usize>,
        /// Show what would move; move nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand, Debug)]
enum MallCommand {
    /// Token status and expiry, limiter state, pending work.
    Status {
        /// The mall id.
        mall: String,
    },
    /// The link the mall's operator opens to (re-)authorize the app.
    ReauthUrl {
        /// The mall id.
        mall: String,
    },
    /// Takes over installed malls' tokens from the app that holds them (Cafe24's token answers,
    /// a JSON array or one per line): stored unless the relay holds a newer pair, announced with
    /// mall.installed; one line per mall. Token values are never printed.
    Import {
        /// The file, or - for stdin.
        file: PathBuf,
        /// Check every entry and say what would happen; store nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

fn parse_since(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().map_err(|_| format!("{s:?}: expected a number and a unit (m, h, d)"))?;
    let secs = match unit {
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: the unit must be m, h or d")),
    };
    if n == 0 || n > 90 * 86_400 / secs {
        return Err(format!("{s:?}: between 1m and 90d"));
    }
    Ok(Duration::from_secs(n * secs))
}

fn load_target(cli: &Cli) -> Result<Target> {
    let path = if cli.local {
        PathBuf::from("target/relay-local/stack.env")
    } else {
        cli.env_file.clone().unwrap_or_else(|| PathBuf::from(".relay/aws.env"))
    };
    Target::load(&path, |k| std::env::var(k).ok())
}

fn spinner(msg: &str) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    pb.set_message(msg.to_owned());
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

/// The log lines of `traces`, from the local log file or Logs Insights.
async fn trace_ids(
    target: &Target,
    traces: &[relay_domain::TraceId],
    since: Duration,
) -> Result<Vec<serde_json::Value>> {
    let names = || traces.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ");
    let lines = if let Some(file) = target.get("RELAY_LOG_FILE") {
        let text = std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
        let (lines, bad) = trace::local(&text, traces);
        if bad > 0 {
            eprintln!("({bad} lines of {file} were not JSON and were skipped)");
        }
        lines
    } else {
        let query = match traces {
            [one] => trace::query_for(one),
            many => trace::query_for_all(many),
        };
        logs_insights(target, &query, since).await?
    };
    if lines.is_empty() {
        bail!("no log lines for trace id {}", names());
    }
    Ok(lines)
}

/// The log lines of every webhook whose jobs touched `e` in `mall`.
async fn trace_entity(
    target: &Target,
    mall: &relay_domain::MallId,
    e: &trace::Entity,
    since: Duration,
) -> Result<Vec<serde_json::Value>> {
    let traces = if let Some(file) = target.get("RELAY_LOG_FILE") {
        let text = std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
        trace::local_traces_of(&text, mall, e)
    } else {
        logs_insights(target, &trace::entity_query_for(mall, e), since)
            .await?
            .iter()
            .filter_map(|row| row.get("trace_id").and_then(|v| v.as_str()).and_then(relay_domain::TraceId::from_header))
            .collect()
    };
    if traces.is_empty() {
        bail!(
            "no job of mall {} touched {} {} in the logs searched",
            mall.as_str(),
            e.job.trim_start_matches("sync_"),
            e.id
        );
    }
    eprintln!("{} webhook(s): {}", traces.len(), traces.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", "));
    trace_ids(target, &traces, since).await
}

/// Runs one Logs Insights query over the stack's log groups, with a spinner.
async fn logs_insights(target: &Target, query: &str, since: Duration) -> Result<Vec<serde_json::Value>> {
    let groups: Vec<String> =
        target.require("LOG_GROUPS")?.split(',').map(|g| g.trim().to_owned()).filter(|g| !g.is_empty()).collect();
    let logs = aws_sdk_cloudwatchlogs::Client::new(&target.sdk_config().await);
    let pb = spinner("Logs Insights: starting the query");
    let r = trace::aws(&logs, &groups, query, since, |s| pb.set_message(format!("Logs Insights: {s}"))).await;
    pb.finish_and_clear();
    r
}

async fn run(cli: Cli) -> Result<()> {
    let target = load_target(&cli)?;
    match cli.command {
        Command::Trace { trace_id, mall, order, product, since, json } => {
            let entity = match (&mall, order, product) {
                (Some(m), Some(o), _) => Some((mall::parse_mall(m)?, trace::Entity::order(&o)?)),
                (Some(m), None, Some(p)) => Some((mall::parse_mall(m)?, trace::Entity::product(&p)?)),
                _ => None,
            };
            let lines = match (&entity, trace_id) {
                (Some((m, e)), _) => trace_entity(&target, m, e, since).await?,
                (None, Some(t)) => trace_ids(&target, &[trace::parse_trace_id(&t)?], since).await?,
                (None, None) => bail!("relay trace: give a trace id, or --mall with --order or --product"),
            };
            for l in &lines {
                println!("{}", if json { l.to_string() } else { trace::render(l) });
            }
        }
        Command::Dlq { command } => {
            let sqs = aws_sdk_sqs::Client::new(&target.sdk_config().await);
            match command {
                DlqCommand::List { stage, max } => {
                    let url = target.require(stage.keys().0)?;
                    let (visible, in_flight) = dlq::counts(&sqs, url).await?;
                    let entries = dlq::list(&sqs, stage, url, max).await?;
                    println!("{visible} waiting, {in_flight} in flight in {url}");
                    println!("{:<36} {:<16} {:<14} {:<18} {:<16} reason", "message", "mall", "what", "class", "trace");
                    for e in &entries {
                        println!(
                            "{:<36} {:<16} {:<14} {:<18} {:<16} {}",
                            e.message_id,
                            e.mall.as_deref().unwrap_or("-"),
                            e.what,
                            if e.class.is_empty() { "-" } else { &e.class },
                            e.trace_id.as_deref().unwrap_or("-"),
                            e.reason
                        );
                    }
                }
                DlqCommand::Redrive { stage, group, max, dry_run } => {
                    let (dlq_key, source_key) = stage.keys();
                    let (dlq_url, source_url) = (target.require(dlq_key)?, target.require(source_key)?);
                    let (visible, _) = dlq::counts(&sqs, dlq_url).await?;
                    let pb = ProgressBar::new(max.map(|m| (m as u64).min(visible)).unwrap_or(visible));
                    pb.set_style(
                        ProgressStyle::with_template("{bar:40} {pos}/{len} messages {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    let opts = dlq::Options { group, max, dry_run };
                    let report = dlq::redrive(&sqs, stage, dlq_url, source_url, &opts, |n| pb.set_position(n)).await?;
                    pb.finish_and_clear();
                    if dry_run {
                        println!("dry run: {} would move", report.would_move);
                    } else {
                        println!("moved {} back to {source_url}", report.moved);
                    }
                    for (id, why) in &report.left {
                        println!("left {id}: {why}");
                    }
                }
            }
        }
        Command::Malls { status, max, after } => {
            let status = status.as_deref().map(relay_domain::tokens::TokenStatus::parse);
            let after = after.as_deref().map(mall::parse_mall).transpose()?;
            let sdk = target.sdk_config().await;
            print!("{}", mall::list_text(&target, &sdk, status, after.as_ref(), max as usize).await?);
        }
        Command::Mall { command } => match command {
            MallCommand::Status { mall } => {
                let m = mall::parse_mall(&mall)?;
                let sdk = target.sdk_config().await;
                print!("{}", mall::status_text(&target, &sdk, &m).await?);
            }
            MallCommand::ReauthUrl { mall } => {
                let m = mall::parse_mall(&mall)?;
                println!("{}", mall::reauth_url(target.require("INGEST_URL")?, &m)?);
            }
            MallCommand::Import { file, dry_run } => {
                let text = if file.as_os_str() == "-" {
                    std::io::read_to_string(std::io::stdin()).context("reading stdin")?
                } else {
                    std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?
                };
                let now = relay_lambda::clock::now_ms();
                let entries = relay::import::parse(&text, now)?;
                let clients = relay_aws::Clients::new(&target.sdk_config().await);
                let store = relay_aws::tokens::DynamoTokenStore::new(clients.ddb, target.require("TOKEN_TABLE")?);
                let bus = target.get("EVENT_BUS_NAME").map(|b| relay_aws::bus::EventBridgeBus::new(clients.events, b));
                let results = relay::import::run(&store, bus.as_ref(), entries, dry_run, now).await?;
                print!("{}", relay::import::render(&results));
                if results.iter().any(|(_, _, v)| matches!(v, relay::import::Verdict::Invalid(_))) {
                    std::process::exit(1);
                }
            }
        },
        Command::Resync { command: Some(ResyncCommand::Status { mall }), .. } => {
            let m = mall::parse_mall(&mall)?;
            let ddb = aws_sdk_dynamodb::Client::new(&target.sdk_config().await);
            let state = relay_aws::state::DynamoState::new(ddb, target.require("STATE_TABLE")?);
            let all = resync::status(&state, &m).await?;
            if all.is_empty() {
                println!("mall {}: no backfill yet", m.as_str());
            }
            for p in &all {
                println!("{}", resync::render(p));
            }
        }
        Command::Resync { command: None, start: None } => bail!("relay resync: give --mall and --since, or `status`"),
        Command::Resync { command: None, start: Some(a) } => {
            let m = mall::parse_mall(&a.mall)?;
            let now = relay_lambda::clock::now_ms();
            let since = resync::parse_time(&a.since)?;
            let until = a.until.as_deref().map(resync::parse_time).transpose()?.unwrap_or(now);
            let resource = a.kind;
            let scope = match target.get("RATE_LIMIT_KEY") {
                Some(v) => relay_domain::ratelimit::KeyScope::parse(v)
                    .ok_or_else(|| anyhow::anyhow!("RATE_LIMIT_KEY {v:?} is not mall, app:<id> or global:<name>"))?,
                None => relay_domain::ratelimit::KeyScope::default(),
            };
            let (job, msg) = resync::job(&m, a.shop, resource, since, until, now, &scope)?;
            let sdk = target.sdk_config().await;
            relay_aws::sqs::SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), target.require("WORK_QUEUE_URL")?)
                .send(&msg)
                .await
                .map_err(|e| anyhow::anyhow!("queueing the backfill job: {e}"))?;
            println!("queued backfill job {} for mall {} ({})", job.job_id, m.as_str(), a.kind.as_str());
            if !a.no_wait {
                let state = relay_aws::state::DynamoState::new(
                    aws_sdk_dynamodb::Client::new(&sdk),
                    target.require("STATE_TABLE")?,
                );
                let pb = ProgressBar::new(1000);
                pb.set_style(
                    ProgressStyle::with_template("{bar:40} {percent}% {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                loop {
                    let p = resync::status(&state, &m).await?.into_iter().find(|p| p.job_id == job.job_id.as_str());
                    if let Some(p) = &p {
                        pb.set_position(resync::permille(p));
                        pb.set_message(format!("{} pages, {} snapshots stored", p.pages, p.stored));
                        if p.done {
                            pb.finish_and_clear();
                            println!("{}", resync::render(p));
                            break;
                        }
                    }
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
        Command::Call { mall, shop, method, path, query, data, key, no_wait } => {
            let m = mall::parse_mall(&mall)?;
            let request = call::Request {
                mall: &m,
                shop,
                method: &method,
                path: &path,
                data: data.as_deref(),
                query: &query,
                key: key.as_deref(),
            };
            let (cmd, message) = call::build(&request, || format!("relay-cli-{}", fresh_key_id()))?;
            let sdk = target.sdk_config().await;
            let state =
                relay_aws::state::DynamoState::new(aws_sdk_dynamodb::Client::new(&sdk), target.require("STATE_TABLE")?);
            // Recorded already (the same key before): nothing is sent again.
            let recorded = call::outcome(&state, &cmd, Duration::ZERO).await?;
            if recorded.is_none() {
                let sqs = aws_sdk_sqs::Client::new(&sdk);
                call::send(&sqs, target.require("COMMAND_QUEUE_URL")?, &cmd, &message).await?;
            }
            let wait = if no_wait || recorded.is_some() { Duration::ZERO } else { Duration::from_secs(60) };
            let outcome = match recorded {
                Some(o) => Some(o),
                None => call::outcome(&state, &cmd, wait).await?,
            };
            println!("{}", call::render(&cmd, outcome.as_ref()));
        }
        Command::Snapshot { command: SnapshotCommand::Get { mall, kind, id, shop } } => {
            let m = mall::parse_mall(&mall)?;
            let ddb = aws_sdk_dynamodb::Client::new(&target.sdk_config().await);
            let state = relay_aws::state::DynamoState::new(ddb, target.require("STATE_TABLE")?);
            println!("{:#}", snapshot::get(&state, &m, shop, kind, &id).await?);
        }
    }
    Ok(())
}

/// A fresh key for a command sent without `--key`: time and randomness, SQS-safe characters.
fn fresh_key_id() -> String {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    format!("{ms}-{:08x}", rand::random::<u32>())
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("relay: {e:#}");
        std::process::exit(1);
    }
}
