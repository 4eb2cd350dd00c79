//! How a command ended: the outcome, its record, and the result event published for it.

use serde_json::{json, Map, Value};

use super::{Command, Named};
use crate::delivery::{BusEvent, EVENT_SCHEMA_VERSION, MAX_DETAIL_BYTES};
use crate::ids::MallId;
use crate::DedupId;

/// How a command ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Cafe24 answered 2xx.
    Succeeded {
        /// Cafe24's status.
        status: u16,
        /// Cafe24's body.
        body: Value,
    },
    /// Refused before any call (`reason` a [`Refusal`] code, or `not_installed`,
    /// `needs_reauth`, `uninstalled`), or Cafe24 answered 4xx (`reason` `cafe24_error`, with
    /// its status and error body; `insufficient_scope` for a 403 on a missing scope).
    Failed {
        /// Reason code.
        reason: String,
        /// Cafe24's status, when it answered.
        status: Option<u16>,
        /// Cafe24's body, when it answered; else `{"message": …}`.
        body: Value,
    },
    /// A POST whose answer was lost, proven to have taken effect by the command's settling
    /// read ([`Settle`]): published as `command.succeeded` with `settled: true`.
    Settled {
        /// The settling read's answer.
        body: Value,
    },
    /// The request may have reached Cafe24 and no answer came (timeout, reset, a process that
    /// died while it was out, a 5xx): a POST is never sent again automatically.
    Uncertain {
        /// What happened (`timeout`, `transport`, `interrupted`, `server_error`).
        reason: String,
    },
}

impl Outcome {
    /// `succeeded`, `failed` or `uncertain`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Succeeded { .. } | Self::Settled { .. } => "succeeded",
            Self::Failed { .. } => "failed",
            Self::Uncertain { .. } => "uncertain",
        }
    }

    /// The outcome as stored in the command's record (and read back to republish it).
    pub fn to_record(&self) -> Value {
        match self {
            Self::Succeeded { status, body } => json!({"outcome": "succeeded", "status": status, "body": body}),
            Self::Settled { body } => json!({"outcome": "settled", "body": body}),
            Self::Failed { reason, status, body } => {
                json!({"outcome": "failed", "reason": reason, "status": status, "body": body})
            }
            Self::Uncertain { reason } => json!({"outcome": "uncertain", "reason": reason}),
        }
    }

    /// Reads [`Outcome::to_record`]'s value back (`None`: not one).
    pub fn from_record(v: &Value) -> Option<Self> {
        let reason = || v.get("reason").and_then(Value::as_str).map(str::to_owned);
        let status = v.get("status").and_then(Value::as_u64).and_then(|s| u16::try_from(s).ok());
        match v.get("outcome")?.as_str()? {
            "succeeded" => Some(Self::Succeeded { status: status?, body: v.get("body")?.clone() }),
            "settled" => Some(Self::Settled { body: v.get("body")?.clone() }),
            "failed" => Some(Self::Failed { reason: reason()?, status, body: v.get("body")?.clone() }),
            "uncertain" => Some(Self::Uncertain { reason: reason()? }),
            _ => None,
        }
    }
}

/// The stable event id of a command's result: one per mall and key, so a republished result
/// (the same key sent again, a redelivery) carries the same id and consumers de-duplicate it.
pub fn result_event_id(mall: Option<&MallId>, key: &str) -> String {
    DedupId::derive("cmd", &[mall.map_or("", MallId::as_str).as_bytes(), key.as_bytes()]).as_str().to_owned()
}

/// `command.succeeded`, `command.failed` or `command.uncertain` for the command `key`.
/// `what`: the command when it was valid. A body too large for an event entry is left out
/// (`body_omitted`) and stays in the command's record.
pub fn result_event(key: &str, named: &Named, what: Option<&Command>, outcome: &Outcome, trace_id: &str) -> BusEvent {
    let mall = what.map(|c| &c.mall_id).or(named.mall_id.as_ref());
    let event_id = result_event_id(mall, key);
    let mut d = Map::new();
    d.insert("schema_version".into(), json!(EVENT_SCHEMA_VERSION));
    d.insert("event_id".into(), json!(event_id));
    d.insert("key".into(), json!(key));
    d.insert("mall_id".into(), mall.map_or(Value::Null, |m| json!(m.as_str())));
    if let Some(c) = what {
        d.insert("shop_no".into(), c.shop_no.map_or(Value::Null, |s| json!(s.get())));
        d.insert("method".into(), json!(c.method.as_str()));
        d.insert("path".into(), json!(c.path));
    }
    d.insert("trace_id".into(), json!(trace_id));
    if let Some(tp) = crate::delivery::traceparent(trace_id, &event_id) {
        d.insert("traceparent".into(), json!(tp));
    }
    let body = match outcome {
        Outcome::Succeeded { status, body } => {
            d.insert("status".into(), json!(status));
            Some(body)
        }
        Outcome::Settled { body } => {
            // Cafe24's answer to the POST was lost: no status; the body is the settling read's.
            d.insert("status".into(), Value::Null);
            d.insert("settled".into(), json!(true));
            Some(body)
        }
        Outcome::Failed { reason, status, body } => {
            d.insert("reason".into(), json!(reason));
            d.insert("status".into(), status.map_or(Value::Null, |s| json!(s)));
            Some(body)
        }
        Outcome::Uncertain { reason } => {
            d.insert("reason".into(), json!(reason));
            None
        }
    };
    if let Some(b) = body {
        let size = b.to_string().len();
        if Value::Object(d.clone()).to_string().len() + size + 10 > MAX_DETAIL_BYTES {
            d.insert("body".into(), Value::Null);
            d.insert("body_omitted".into(), json!({"bytes": size}));
        } else {
            d.insert("body".into(), b.clone());
        }
    }
    BusEvent { detail_type: format!("command.{}", outcome.name()), detail: Value::Object(d).to_string(), event_id }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A valid command (the base of the parsing tests).
    fn grant() -> Command {
        Command::parse(
            &json!({"v": 1, "key": "grant-1", "mall_id": "shopa", "method": "POST",
                "path": "customers/c1/points", "body": {"request": {"amount": 100}}})
            .to_string(),
        )
        .unwrap()
    }

    #[test]
    fn outcomes_survive_their_record_and_make_one_event_id_per_key() {
        let c = grant();
        for o in [
            Outcome::Succeeded { status: 201, body: json!({"points": {"amount": 100}}) },
            Outcome::Failed { reason: "cafe24_error".into(), status: Some(422), body: json!({"error": {}}) },
            Outcome::Failed { reason: "bad_path".into(), status: None, body: json!({"message": "x"}) },
            Outcome::Uncertain { reason: "timeout".into() },
        ] {
            assert_eq!(Outcome::from_record(&o.to_record()).as_ref(), Some(&o));
            let e = result_event("grant-1", &Named::default(), Some(&c), &o, "t-1");
            assert_eq!(e.detail_type, format!("command.{}", o.name()));
            assert_eq!(e.event_id, result_event_id(Some(&c.mall_id), "grant-1"));
            let d: Value = serde_json::from_str(&e.detail).unwrap();
            assert_eq!(
                (d["key"].as_str(), d["mall_id"].as_str(), d["method"].as_str()),
                (Some("grant-1"), Some("shopa"), Some("POST"))
            );
        }
        assert_ne!(result_event_id(Some(&c.mall_id), "grant-1"), result_event_id(Some(&c.mall_id), "grant-2"));
        assert_ne!(result_event_id(Some(&c.mall_id), "grant-1"), result_event_id(None, "grant-1"), "keys are per mall");
        assert_eq!(Outcome::from_record(&json!({"outcome": "succeeded"})), None);
        assert_eq!(Outcome::from_record(&json!({"outcome": "maybe"})), None);
    }

    #[test]
    fn a_body_too_large_for_an_event_stays_in_the_record() {
        let c = grant();
        let big = json!({"data": "x".repeat(MAX_DETAIL_BYTES)});
        let e = result_event("k", &Named::default(), Some(&c), &Outcome::Succeeded { status: 200, body: big }, "t");
        let d: Value = serde_json::from_str(&e.detail).unwrap();
        assert!(d["body"].is_null() && d["body_omitted"]["bytes"].as_u64().unwrap() > MAX_DETAIL_BYTES as u64);
        assert!(e.detail.len() <= MAX_DETAIL_BYTES);
    }
}
