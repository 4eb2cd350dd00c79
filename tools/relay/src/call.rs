//! `relay call`: an operator's request to a mall's Admin API, through the relay's command door
//! (docs/commands) — the same queue, limiter, tokens and exactly-once record as the app's
//! commands, so an operator never needs a token nor bypasses the limiter. The command is sent
//! to `COMMAND_QUEUE_URL` with its key as the deduplication id; the answer is read from the
//! command's record in the state table once the worker has run it.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use relay_domain::command::{Command, Outcome};
use relay_domain::ports::CommandStore as _;
use relay_domain::{MallId, ShopNo};
use serde_json::{json, Map, Value};

/// What the command line asked.
pub struct Request<'a> {
    pub mall: &'a MallId,
    pub shop: Option<ShopNo>,
    pub method: &'a str,
    pub path: &'a str,
    /// `--data`: JSON text, or `@file`.
    pub data: Option<&'a str>,
    /// `--query k=v`, in order.
    pub query: &'a [String],
    /// `--key`; default: a fresh one.
    pub key: Option<&'a str>,
}

/// The command message for `r` and the command it is, validated as the dispatcher will (a bad
/// one is refused here, with the reason, before anything is sent).
pub fn build(r: &Request<'_>, fresh_key: impl FnOnce() -> String) -> Result<(Command, String)> {
    let mut m = Map::new();
    m.insert("v".into(), json!(relay_domain::command::COMMAND_VERSION));
    m.insert("key".into(), json!(r.key.map(str::to_owned).unwrap_or_else(fresh_key)));
    m.insert("mall_id".into(), json!(r.mall.as_str()));
    if let Some(s) = r.shop {
        m.insert("shop_no".into(), json!(s.get()));
    }
    m.insert("method".into(), json!(r.method.to_ascii_uppercase()));
    m.insert("path".into(), json!(r.path));
    if !r.query.is_empty() {
        let mut q = Map::new();
        for kv in r.query {
            let Some((k, v)) = kv.split_once('=') else { bail!("--query {kv:?} is not NAME=VALUE") };
            q.insert(k.to_owned(), json!(v));
        }
        m.insert("query".into(), Value::Object(q));
    }
    if let Some(d) = r.data {
        let text = match d.strip_prefix('@') {
            Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
            None => d.to_owned(),
        };
        let body: Value = serde_json::from_str(&text).context("--data is not JSON")?;
        m.insert("body".into(), body);
    }
    let message = Value::Object(m).to_string();
    let cmd = Command::parse(&message).map_err(|e| anyhow::anyhow!("{} ({})", e.message(), e.code()))?;
    Ok((cmd, message))
}

/// Sends the command `message` (of `cmd`) to the command queue, deduplicated by its key within
/// SQS's 5 minutes (the relay's record after that).
pub async fn send(sqs: &aws_sdk_sqs::Client, queue_url: &str, cmd: &Command, message: &str) -> Result<()> {
    sqs.send_message()
        .queue_url(queue_url)
        .message_body(message)
        .message_group_id(cmd.mall_id.as_str())
        .message_deduplication_id(&cmd.key)
        .send()
        .await
        .context("sending the command")?;
    Ok(())
}

/// Waits up to `wait` for the command's recorded outcome.
pub async fn outcome(state: &relay_aws::state::DynamoState, cmd: &Command, wait: Duration) -> Result<Option<Outcome>> {
    let started = Instant::now();
    loop {
        if let Some(o) = state.command_record(&cmd.mall_id, &cmd.key).await?.and_then(|r| r.outcome) {
            return Ok(Outcome::from_record(&o));
        }
        if started.elapsed() >= wait {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The printed answer.
pub fn render(cmd: &Command, outcome: Option<&Outcome>) -> String {
    match outcome {
        None => format!(
            "command {} queued for mall {}; no result yet (run `relay call` again with --key {} to read it)",
            cmd.key,
            cmd.mall_id.as_str(),
            cmd.key
        ),
        Some(o) => format!("{:#}", json!({"key": cmd.key, "mall_id": cmd.mall_id.as_str(), "result": o.to_record()})),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn req<'a>(
        mall: &'a MallId,
        method: &'a str,
        path: &'a str,
        data: Option<&'a str>,
        query: &'a [String],
    ) -> Request<'a> {
        Request { mall, shop: None, method, path, data, query, key: Some("op-1") }
    }

    #[test]
    fn a_command_line_becomes_the_command_the_dispatcher_accepts_and_bad_ones_are_refused_here() {
        let m = MallId::parse("shop1").unwrap();
        let q = vec!["embed=items".to_owned()];
        let (c, _) = build(&req(&m, "get", "orders/20260101-0000001", None, &q), || "k".into()).unwrap();
        assert_eq!(c.path_and_query(), "orders/20260101-0000001?embed=items");
        let (c, msg) =
            build(&req(&m, "POST", "points", Some(r#"{"request":{"amount":"1"}}"#), &[]), || "k".into()).unwrap();
        assert_eq!(Command::parse(&msg).unwrap(), c, "the message sent is the command shown");
        assert_eq!((c.key.as_str(), c.body.is_some()), ("op-1", true));
        let fresh = Request { key: None, ..req(&m, "GET", "orders", None, &[]) };
        assert_eq!(build(&fresh, || "fresh-1".into()).unwrap().0.key, "fresh-1");
        for (method, path, data, query) in [
            ("PATCH", "points", None, vec![]),
            ("POST", "../oauth/token", Some("{}"), vec![]),
            ("POST", "points", Some("not json"), vec![]),
            ("GET", "orders", None, vec!["novalue".to_owned()]),
            ("GET", "orders", Some("{}"), vec![]),
            ("POST", "points", Some("@/nonexistent/file.json"), vec![]),
        ] {
            assert!(build(&req(&m, method, path, data, &query), || "k".into()).is_err(), "{method} {path} {data:?}");
        }
    }
}
