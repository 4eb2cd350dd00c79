//! `devstack` — local stack helper (never shipped).
//!
//! ```text
//! devstack up [--prefix P]                       start moto if needed, create queues, print KEY=VALUE lines
//! devstack endpoint                              print the moto endpoint
//! devstack post-samples --url U --key K --dir D  POST every *.json in D as a Cafe24 webhook, then a
//!                                                duplicate delivery and a wrong-key request
//! devstack peek --queue URL                      list the messages on a queue (without consuming them)
//! ```

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use aws_sdk_sqs::types::MessageSystemAttributeName as Sys;

fn flags(args: &[String]) -> Result<HashMap<String, String>> {
    let mut m = HashMap::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let Some(name) = a.strip_prefix("--") else { bail!("unexpected argument {a}") };
        let v = it.next().with_context(|| format!("--{name} needs a value"))?;
        m.insert(name.to_owned(), v.clone());
    }
    Ok(m)
}

async fn sqs() -> Result<aws_sdk_sqs::Client> {
    let endpoint = devstack::moto::endpoint().await?;
    Ok(aws_sdk_sqs::Client::new(&devstack::sdk_config(&endpoint).await))
}

/// POSTs one delivery and prints a row: name, status, answer.
async fn deliver(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    trace: Option<&str>,
    body: &[u8],
    name: &str,
) -> Result<()> {
    let mut req = http.post(url).header("X-API-Key", key).body(body.to_vec());
    if let Some(t) = trace {
        req = req.header("X-Trace-ID", t);
    }
    let r = req.send().await?;
    println!("{:<44} {:>6}  {}", name, r.status().as_u16(), r.text().await.unwrap_or_default());
    Ok(())
}

async fn post_samples(url: &str, key: &str, dir: &str) -> Result<()> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(300)).build()?;
    let mut files: Vec<_> = std::fs::read_dir(dir)?.filter_map(Result::ok).map(|e| e.path()).collect();
    files.retain(|p| p.extension().is_some_and(|e| e == "json"));
    files.sort();
    println!("{:<44} {:>6}  answer", "delivery", "status");
    let mut first: Option<(String, Vec<u8>)> = None;
    for (i, f) in files.iter().enumerate() {
        let body = std::fs::read(f)?;
        let trace = format!("demo-{i:04}-{}", rand::random::<u32>());
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        deliver(&http, url, key, Some(&trace), &body, &name).await?;
        first.get_or_insert((trace, body));
    }
    if let Some((trace, body)) = first {
        deliver(&http, url, key, Some(&trace), &body, "(Cafe24 retry of the first delivery)").await?;
        deliver(&http, url, "not-the-key", None, &body, "(wrong X-API-Key)").await?;
    }
    Ok(())
}

async fn peek(queue: &str) -> Result<()> {
    let sqs = sqs().await?;
    let mut rows = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .visibility_timeout(30)
            .message_system_attribute_names(Sys::All)
            .send()
            .await?;
        if out.messages().is_empty() {
            break;
        }
        rows.extend(out.messages().iter().cloned());
    }
    println!("{} message(s) on {}", rows.len(), queue.rsplit('/').next().unwrap_or(queue));
    println!("{:<16} {:<7} {:<18} {:<26} {:<18}", "group", "event", "parked", "dedup id", "trace id");
    for m in &rows {
        let a = |n: Sys| m.attributes().and_then(|a| a.get(&n)).cloned().unwrap_or_default();
        let env: serde_json::Value = serde_json::from_str(m.body().unwrap_or("{}")).unwrap_or_default();
        let short = |s: String| {
            if s.chars().count() > 25 {
                format!("{}…", s.chars().take(24).collect::<String>())
            } else {
                s
            }
        };
        println!(
            "{:<16} {:<7} {:<18} {:<26} {:<18}",
            a(Sys::MessageGroupId),
            env.get("event_no")
                .unwrap_or(&serde_json::Value::Null)
                .as_u64()
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into()),
            env.get("parked").unwrap_or(&serde_json::Value::Null).as_str().unwrap_or("-"),
            short(a(Sys::MessageDeduplicationId)),
            short(env.get("trace_id").unwrap_or(&serde_json::Value::Null).as_str().unwrap_or("-").to_owned()),
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = args.split_first().map(|(c, r)| (c.as_str(), r)).unwrap_or(("help", &[]));
    let f = flags(rest)?;
    let need = |k: &str| f.get(k).cloned().with_context(|| format!("--{k} is required"));
    match cmd {
        "up" => {
            let endpoint = devstack::moto::endpoint().await?;
            let conf = devstack::sdk_config(&endpoint).await;
            let stack = devstack::resources::Stack::create(&relay_aws::Clients::new(&conf), f.get("prefix").map_or("", String::as_str)).await?;
            println!("AWS_ENDPOINT_URL={endpoint}");
            for (k, v) in stack.env() {
                println!("{k}={v}");
            }
        }
        "endpoint" => println!("{}", devstack::moto::endpoint().await?),
        "post-samples" => post_samples(&need("url")?, &need("key")?, &need("dir")?).await?,
        "peek" => peek(&need("queue")?).await?,
        _ => println!(
            "usage:\n  devstack up [--prefix P]\n  devstack endpoint\n  devstack post-samples --url U --key K --dir D\n  devstack peek --queue URL"
        ),
    }
    Ok(())
}
