//! `relay dlq list|redrive`: what is in a dead-letter queue and why, and putting it back —
//! FIFO-safe.
//!
//! ## FIFO-safe redrive
//! Messages are taken from the DLQ a batch at a time; SQS hands out a group's messages in order
//! and no more of that group while some are in flight. Each is sent to its source queue **under
//! its own message group**, then deleted from the DLQ; the next message of a group is only sent
//! after the previous one was accepted. If a message cannot be sent (or is not redrivable), its
//! group is *blocked*: the rest of that group stays in the DLQ, in order, for the next run.
//!
//! ## Deduplication and idempotency
//! The resent message's `MessageDeduplicationId` is derived from the DLQ message id, so a redrive
//! interrupted between send and delete and run again is deduplicated by SQS. A dead-lettered job
//! gets a new job id derived the same way: the worker recorded the old id as finished
//! (`dead_lettered`) and would otherwise drop the redriven job as a duplicate; the new id gives it
//! a fresh idempotency record and attempt count. A job that already ran is still not repeated in
//! effect — the worker's snapshot check skips fetches older than what it holds.
//!
//! Inbox DLQ messages (webhooks parked by ingest or the dispatcher) go back to the inbox with
//! their mall's group; their jobs keep the ids derived from the webhook, so anything already
//! done is recognised by the worker.

use std::collections::HashSet;

use anyhow::{Context, Result};
use aws_sdk_sqs::types::{MessageSystemAttributeName as Sys, QueueAttributeName as A};
use relay_domain::envelope::InboxEnvelope;
use relay_domain::jobs::Job;
use relay_domain::ports::GroupId;
use relay_domain::DedupId;
use serde_json::Value;

/// Which pipeline stage a DLQ belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Stage {
    /// The work queue's DLQ (jobs the worker gave up on).
    Work,
    /// The inbox's DLQ (webhooks parked by ingest or the dispatcher).
    Inbox,
}

impl Stage {
    /// The stack-file keys of (DLQ, source queue).
    pub fn keys(self) -> (&'static str, &'static str) {
        match self {
            Stage::Work => ("WORK_DLQ_URL", "WORK_QUEUE_URL"),
            Stage::Inbox => ("INBOX_DLQ_URL", "INBOX_QUEUE_URL"),
        }
    }
}

/// A DLQ message, described.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// SQS message id.
    pub message_id: String,
    /// Message group.
    pub group: String,
    /// Mall, if known.
    pub mall: Option<String>,
    /// Job kind or event number.
    pub what: String,
    /// Why it was dead-lettered.
    pub reason: String,
    /// Error class, if recorded.
    pub class: String,
    /// Trace id, if known.
    pub trace_id: Option<String>,
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

/// Describes a DLQ message body (never printing payload contents: they may hold customer data).
pub fn describe(stage: Stage, message_id: &str, group: &str, body: &str) -> Entry {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let mut e = Entry {
        message_id: message_id.to_owned(),
        group: group.to_owned(),
        mall: None,
        what: String::new(),
        reason: str_at(&v, "/reason").unwrap_or("").to_owned(),
        class: str_at(&v, "/error_class").unwrap_or("").to_owned(),
        trace_id: None,
    };
    let job = v.get("job").cloned().or_else(|| Job::parse(body).ok().and_then(|j| serde_json::to_value(j).ok()));
    let env: Option<InboxEnvelope> = match &v {
        Value::Object(m) if m.contains_key("payload") => serde_json::from_value(v.clone()).ok(),
        _ => str_at(&v, "/body").and_then(|b| serde_json::from_str(b).ok()),
    };
    if let Some(j) = job.filter(|_| stage == Stage::Work) {
        e.mall = str_at(&j, "/mall_id").map(str::to_owned);
        e.what = str_at(&j, "/kind").unwrap_or("job").to_owned();
        e.trace_id = str_at(&j, "/trace_id").map(str::to_owned);
        if e.reason.is_empty() {
            e.reason = "moved by the queue's redrive policy (maxReceiveCount)".into();
        }
    } else if let Some(env) = env {
        e.mall = env.mall_id.map(|m| m.as_str().to_owned());
        e.what = env.event_no.map(|n| format!("event {}", n.0)).unwrap_or_else(|| "webhook".into());
        e.trace_id = Some(env.trace_id.as_str().to_owned());
        if e.reason.is_empty() {
            e.reason = match (env.parked, GroupId::parked_reason(group)) {
                (_, Some(r)) => format!("parked by the dispatcher: {r}"),
                (Some(p), None) => format!("parked: {}", p.as_str()),
                (None, None) => "moved by the queue's redrive policy (maxReceiveCount)".into(),
            };
        }
    } else {
        e.what = "unreadable".into();
        if e.reason.is_empty() {
            e.reason = "not a job or webhook envelope".into();
        }
    }
    e
}

/// What to do with one DLQ message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Send this to the source queue.
    Send {
        /// Message group (the original one).
        group: String,
        /// Deduplication id (derived from the DLQ message id).
        dedup: String,
        body: String,
    },
    /// Leave it (and the rest of its group) in the DLQ.
    Skip(String),
}

/// Decides how one DLQ message goes back (pure).
pub fn plan(stage: Stage, message_id: &str, group: &str, body: &str) -> Plan {
    let dedup = DedupId::derive("redrive", &[message_id.as_bytes()]).as_str().to_owned();
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return Plan::Skip("not JSON".into());
    };
    match stage {
        Stage::Work => {
            let job = match v.get("job") {
                Some(j) => serde_json::from_value::<Job>(j.clone()).map_err(|e| e.to_string()),
                None => Job::parse(body).map_err(|e| e.to_string()),
            };
            let mut job = match job {
                Ok(j) => j,
                Err(e) => return Plan::Skip(format!("not a job ({e}); fix it and send it by hand")),
            };
            job.job_id = DedupId::derive("redrive", &[job.job_id.as_str().as_bytes(), message_id.as_bytes()]);
            let group = GroupId::for_key(group).map(|g| g.as_str().to_owned()).unwrap_or_else(|| group.to_owned());
            match serde_json::to_string(&job) {
                Ok(body) => Plan::Send { group, dedup: job.job_id.as_str().to_owned(), body },
                Err(e) => Plan::Skip(e.to_string()),
            }
        }
        Stage::Inbox => {
            // Dispatcher-parked (group `_parked.<reason>`), ingest-parked or policy-moved: the
            // envelope as is; dispatcher-parked before 2026-12: {"reason", "body": original}.
            let original = match v.get("body").and_then(Value::as_str) {
                Some(b) if v.get("payload").is_none() => b.to_owned(),
                _ => body.to_owned(),
            };
            let group = match serde_json::from_str::<InboxEnvelope>(&original) {
                Ok(env) => match (&env.mall_id, env.parked) {
                    (Some(m), None) => GroupId::mall(m).as_str().to_owned(),
                    _ => group.to_owned(),
                },
                Err(_) => return Plan::Skip("not a webhook envelope; the dispatcher would park it again".into()),
            };
            Plan::Send { group, dedup, body: original }
        }
    }
}

/// Approximate (visible, in flight) counts of a queue.
pub async fn counts(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<(u64, u64)> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .with_context(|| format!("GetQueueAttributes {url}"))?;
    let n = |a: &A| out.attributes().and_then(|m| m.get(a)).and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok((n(&A::ApproximateNumberOfMessages), n(&A::ApproximateNumberOfMessagesNotVisible)))
}

async fn receive(sqs: &aws_sdk_sqs::Client, url: &str, visibility_s: i32) -> Result<Vec<aws_sdk_sqs::types::Message>> {
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .visibility_timeout(visibility_s)
        // A short long-poll: a FIFO short poll may answer empty while messages wait.
        .wait_time_seconds(1)
        .message_system_attribute_names(Sys::All)
        .send()
        .await
        .with_context(|| format!("ReceiveMessage {url}"))?;
    Ok(out.messages().to_vec())
}

async fn release(sqs: &aws_sdk_sqs::Client, url: &str, handles: &[String]) {
    for h in handles {
        let _ = sqs.change_message_visibility().queue_url(url).receipt_handle(h).visibility_timeout(0).send().await;
    }
}

fn group_of(m: &aws_sdk_sqs::types::Message) -> String {
    m.attributes().and_then(|a| a.get(&Sys::MessageGroupId)).cloned().unwrap_or_default()
}

/// Lists up to `max` messages without removing them. On a FIFO queue a receive shows at most
/// the first ten messages of each group while they are held, so deeper messages of a busy group
/// only appear once earlier ones are gone; the counts say how many there are in all.
pub async fn list(sqs: &aws_sdk_sqs::Client, stage: Stage, url: &str, max: usize) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut held = Vec::new();
    let mut seen = HashSet::new();
    while out.len() < max {
        let batch = receive(sqs, url, 30).await?;
        let fresh: Vec<_> = batch.iter().filter(|m| seen.insert(m.message_id().unwrap_or("").to_owned())).collect();
        held.extend(batch.iter().filter_map(|m| m.receipt_handle().map(str::to_owned)));
        if fresh.is_empty() {
            break;
        }
        for m in fresh {
            out.push(describe(stage, m.message_id().unwrap_or(""), &group_of(m), m.body().unwrap_or("")));
        }
    }
    release(sqs, url, &held).await;
    out.truncate(max);
    Ok(out)
}

/// Options of a redrive.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Only this message group (a mall's group, or `_parked`).
    pub group: Option<String>,
    /// At most this many messages.
    pub max: Option<usize>,
    /// Decide and report, send nothing, delete nothing.
    pub dry_run: bool,
}

/// What a redrive did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Sent to the source queue and removed from the DLQ.
    pub moved: usize,
    /// Would be moved (dry run).
    pub would_move: usize,
    /// Left in the DLQ (not redrivable, a send failed, or an earlier message of its group stayed).
    pub left: Vec<(String, String)>,
}

/// Moves messages from `dlq_url` back to `source_url`, FIFO-safe (see the module docs).
/// `progress` is called after each message with the number handled so far.
pub async fn redrive(
    sqs: &aws_sdk_sqs::Client,
    stage: Stage,
    dlq_url: &str,
    source_url: &str,
    opts: &Options,
    progress: impl Fn(u64),
) -> Result<Report> {
    let mut report = Report::default();
    let mut blocked: HashSet<String> = HashSet::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut held: Vec<String> = Vec::new();
    let mut handled = 0u64;
    let limit = opts.max.unwrap_or(usize::MAX);
    'outer: loop {
        let batch = receive(sqs, dlq_url, 60).await?;
        let mut fresh = 0;
        for m in &batch {
            let (id, rh) = (m.message_id().unwrap_or("").to_owned(), m.receipt_handle().unwrap_or("").to_owned());
            let group = group_of(m);
            if !seen.insert(id.clone()) {
                held.push(rh);
                continue;
            }
            fresh += 1;
            let wanted = opts.group.as_deref().is_none_or(|g| g == group);
            if !wanted || blocked.contains(&group) || handled as usize >= limit {
                if wanted && blocked.contains(&group) {
                    report.left.push((id, "an earlier message of its group stayed in the DLQ".into()));
                }
                held.push(rh);
                continue;
            }
            handled += 1;
            match plan(stage, &id, &group, m.body().unwrap_or("")) {
                Plan::Skip(why) => {
                    blocked.insert(group);
                    report.left.push((id, why));
                    held.push(rh);
                }
                Plan::Send { .. } if opts.dry_run => {
                    report.would_move += 1;
                    held.push(rh);
                }
                Plan::Send { group: g, dedup, body } => {
                    let sent = sqs
                        .send_message()
                        .queue_url(source_url)
                        .message_group_id(&g)
                        .message_deduplication_id(&dedup)
                        .message_body(body)
                        .send()
                        .await;
                    match sent {
                        Ok(_) => {
                            // A failed delete leaves a copy that a re-run resends under the same
                            // deduplication id (and, for jobs, the same new job id).
                            let _ = sqs.delete_message().queue_url(dlq_url).receipt_handle(&rh).send().await;
                            report.moved += 1;
                        }
                        Err(e) => {
                            blocked.insert(group);
                            report.left.push((id, format!("send failed: {e}")));
                            held.push(rh);
                        }
                    }
                }
            }
            progress(handled);
        }
        if fresh == 0 {
            break 'outer;
        }
    }
    release(sqs, dlq_url, &held).await;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(id: &str) -> Value {
        json!({"v": 1, "job_id": id, "mall_id": "shop1", "kind": "sync_order", "order_id": "20260101-0000001",
               "class": "live", "trace_id": "t-1", "event_received_ms": 5})
    }

    #[test]
    fn a_dead_lettered_job_goes_back_under_its_group_with_a_new_stable_id() {
        let body =
            json!({"job": job("job-abc"), "reason": "gave up after 5 attempts", "error_class": "server"}).to_string();
        let Plan::Send { group, dedup, body: out } = plan(Stage::Work, "m-1", "shop1", &body) else { panic!() };
        assert_eq!(group, "shop1");
        let j = Job::parse(&out).unwrap();
        assert_ne!(j.job_id.as_str(), "job-abc", "a fresh idempotency record");
        assert_eq!(j.job_id.as_str(), dedup);
        assert_eq!(plan(Stage::Work, "m-1", "shop1", &body), plan(Stage::Work, "m-1", "shop1", &body), "stable");
        assert_ne!(
            plan(Stage::Work, "m-1", "shop1", &body),
            plan(Stage::Work, "m-2", "shop1", &body),
            "another DLQ message is another redrive"
        );
        let e = describe(Stage::Work, "m-1", "shop1", &body);
        assert_eq!(
            (e.mall.as_deref(), e.class.as_str(), e.trace_id.as_deref()),
            (Some("shop1"), "server", Some("t-1"))
        );
    }

    #[test]
    fn a_job_moved_by_the_redrive_policy_is_redriven_too() {
        let body = job("job-x").to_string();
        assert!(matches!(plan(Stage::Work, "m", "shop1", &body), Plan::Send { .. }));
        assert!(describe(Stage::Work, "m", "shop1", &body).reason.contains("maxReceiveCount"));
    }

    #[test]
    fn malformed_messages_are_left_with_a_reason() {
        for body in ["", "not json", r#"{"reason":"x","error_class":"malformed","body":"{{"}"#, r#"{"job":{"v":1}}"#] {
            assert!(matches!(plan(Stage::Work, "m", "g", body), Plan::Skip(_)), "{body}");
        }
        assert!(matches!(
            plan(Stage::Inbox, "m", "_parked", r#"{"reason":"x","body":"not an envelope"}"#),
            Plan::Skip(_)
        ));
        assert_eq!(describe(Stage::Work, "m", "g", "garbage").what, "unreadable");
    }

    #[test]
    fn a_parked_webhook_returns_to_the_inbox_as_it_arrived() {
        let env =
            json!({"v": 1, "trace_id": "tr-1", "dedup_id": "t-tr-1", "received_at_ms": 1, "source": "cafe24-webhook",
                         "event_no": 90023, "mall_id": "shop1", "parked": null, "payload": {"event_no": 90023}})
            .to_string();
        let parked = json!({"reason": "send_failed", "body": env}).to_string();
        let Plan::Send { group, body, .. } = plan(Stage::Inbox, "m", "_parked", &parked) else { panic!() };
        assert_eq!(group, "shop1", "back in its mall's group");
        assert_eq!(body, env);
        let e = describe(Stage::Inbox, "m", "_parked", &parked);
        assert_eq!((e.what.as_str(), e.trace_id.as_deref()), ("event 90023", Some("tr-1")));
    }
}
