//! Commands: the app's own Admin API calls (writes and reads), which the relay makes for it with
//! the mall's tokens and under the mall's limiter, once per idempotency key.
//!
//! This module is the pure part: the command message as the app sends it, what makes one
//! acceptable (only `/api/v2/admin/…` paths of the named mall, size caps, a key that is also a
//! valid SQS deduplication id), the rule for re-sending after an attempt whose fate is unknown,
//! and the result events. The worker's `handler/command.rs` runs them; `docs/commands/` is the
//! app's side of the contract.
//!
//! Here the message and its validation; the deployment's allow-list in `allow`; outcomes, their
//! record and result events in `outcome`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::ids::{MallId, ShopNo};
use crate::DedupId;

mod allow;
mod outcome;

pub use allow::AllowList;
pub use outcome::{result_event, result_event_id, Outcome};

/// The command message's version (`"v"`).
pub const COMMAND_VERSION: u64 = 1;
/// Longest idempotency key: SQS's deduplication id limit, since the key is also that id.
pub const MAX_KEY_LEN: usize = 128;
/// Longest path under `/api/v2/admin/`.
pub const MAX_PATH_LEN: usize = 512;
/// Most query bytes (names and values together).
pub const MAX_QUERY_BYTES: usize = 2_048;
/// Largest JSON body, serialized. Cafe24's write bodies are small; anything near SQS's message
/// limit is a mistake, refused with its own reason.
pub const MAX_BODY_BYTES: usize = 100 * 1024;

/// An HTTP method a command may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// Read.
    Get,
    /// Create (not idempotent at Cafe24).
    Post,
    /// Update.
    Put,
    /// Delete.
    Delete,
}

impl Method {
    /// Parses `GET`, `POST`, `PUT` or `DELETE` (upper case, as HTTP spells them).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "GET" => Some(Self::Get),
            "POST" => Some(Self::Post),
            "PUT" => Some(Self::Put),
            "DELETE" => Some(Self::Delete),
            _ => None,
        }
    }

    /// The method's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
        }
    }

    /// Whether sending the request again after an attempt whose fate is unknown (it may have
    /// reached Cafe24) cannot add a second effect. Cafe24 offers no idempotency key, and a POST
    /// creates: a second one is a second effect (two point grants, two shipments). PUT sets and
    /// DELETE removes — repeating them leaves the same state.
    pub fn resend_is_safe(self) -> bool {
        !matches!(self, Self::Post)
    }

    /// Whether a body is sent.
    pub fn has_body(self) -> bool {
        matches!(self, Self::Post | Self::Put)
    }
}

/// Why a command was refused before any call: the `reason` of its `command.failed` event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The message is not a JSON object.
    NotJson,
    /// `v` is missing or not a version this relay knows.
    UnknownVersion,
    /// No `key`, or one that is not 1..=128 characters of SQS's deduplication id alphabet.
    BadKey,
    /// No `mall_id`, or not a mall id.
    BadMall,
    /// `shop_no` is not a shop number.
    BadShop,
    /// Not one of GET, POST, PUT, DELETE.
    BadMethod,
    /// The path is not a plain path under `/api/v2/admin/` (the detail says what is wrong).
    BadPath(&'static str),
    /// The query is not an object of strings, or is larger than [`MAX_QUERY_BYTES`].
    BadQuery,
    /// A body on GET or DELETE, or a body that is not a JSON object.
    BadBody,
    /// The body is larger than [`MAX_BODY_BYTES`].
    BodyTooLarge,
    /// The method and path are outside the deployment's allow-list ([`AllowList`]).
    NotAllowed,
    /// `settle` is not `{"path", "query"?, "contains"}` on a POST ([`Settle`]).
    BadSettle,
}

impl Refusal {
    /// The stable reason code (events, logs, the call API's error code).
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotJson => "not_json",
            Self::UnknownVersion => "unknown_version",
            Self::BadKey => "bad_key",
            Self::BadMall => "bad_mall",
            Self::BadShop => "bad_shop",
            Self::BadMethod => "bad_method",
            Self::BadPath(_) => "bad_path",
            Self::BadQuery => "bad_query",
            Self::BadBody => "bad_body",
            Self::BodyTooLarge => "body_too_large",
            Self::NotAllowed => "not_allowed",
            Self::BadSettle => "bad_settle",
        }
    }

    /// A sentence for people.
    pub fn message(&self) -> String {
        match self {
            Self::NotJson => "the command is not a JSON object".into(),
            Self::UnknownVersion => format!("\"v\" must be {COMMAND_VERSION}"),
            Self::BadKey => format!(
                "\"key\" must be 1 to {MAX_KEY_LEN} characters: letters, digits and ASCII punctuation (an SQS deduplication id)"
            ),
            Self::BadMall => "\"mall_id\" is missing or not a Cafe24 mall id".into(),
            Self::BadShop => "\"shop_no\" must be a positive integer".into(),
            Self::BadMethod => "\"method\" must be GET, POST, PUT or DELETE".into(),
            Self::BadPath(why) => format!("\"path\" must be a plain path under /api/v2/admin/: {why}"),
            Self::BadQuery => format!("\"query\" must be an object of strings, at most {MAX_QUERY_BYTES} bytes"),
            Self::BadBody => "\"body\" must be a JSON object, and only on POST or PUT".into(),
            Self::BodyTooLarge => format!("\"body\" is larger than {MAX_BODY_BYTES} bytes"),
            Self::NotAllowed => "this method and path are not in the relay's allow-list (COMMAND_ALLOW)".into(),
            Self::BadSettle => format!(
                "\"settle\" must be {{\"path\", \"query\"?, \"contains\"}} on a POST: a plain path under /api/v2/admin/ and 1 to {MAX_SETTLE_TEXT} characters to find"
            ),
        }
    }
}

/// A validated command.
#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    /// The app's idempotency key (also the SQS deduplication id it sent the command with).
    pub key: String,
    /// The mall the call is made for (its tokens, its limiter).
    pub mall_id: MallId,
    /// The shop, sent as `shop_no` in the query when given.
    pub shop_no: Option<ShopNo>,
    /// Method.
    pub method: Method,
    /// The path under `/api/v2/admin/`, without a leading slash (`orders/X/shipments`).
    pub path: String,
    /// Query parameters, in the order given.
    pub query: Vec<(String, String)>,
    /// JSON body (POST, PUT).
    pub body: Option<Value>,
    /// For a POST: the read that tells whether it took effect when its answer is lost.
    pub settle: Option<Settle>,
}

/// The read that settles a POST whose answer was lost: `GET path?query` (in the command's
/// shop) under the same limiter and tokens; the POST took effect if a string in the answer
/// contains `contains` (e.g. the key the app put in a memo, a tracking number). Only that
/// positive evidence changes `uncertain`: a read that finds nothing may have come before Cafe24
/// finished applying the request, so the command stays `uncertain`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settle {
    /// The path under `/api/v2/admin/` to read.
    pub path: String,
    /// Its query.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query: Vec<(String, String)>,
    /// The text whose presence proves the POST took effect.
    pub contains: String,
}

/// Longest `settle.contains`.
pub const MAX_SETTLE_TEXT: usize = 256;

impl Settle {
    /// Whether `answer` holds a string that contains [`Settle::contains`] (depth-limited walk).
    pub fn found_in(&self, answer: &Value) -> bool {
        fn walk(v: &Value, needle: &str, depth: usize) -> bool {
            match v {
                Value::String(s) => s.contains(needle),
                Value::Array(a) if depth < 32 => a.iter().any(|x| walk(x, needle, depth + 1)),
                Value::Object(o) if depth < 32 => o.values().any(|x| walk(x, needle, depth + 1)),
                _ => false,
            }
        }
        walk(answer, &self.contains, 0)
    }
}

/// A validated command as its job carries it (`JobKind::Command`; the mall is the job's). Its
/// fields sit beside the job's own in the message, hence `command_shop` and a body kept as text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queued {
    /// The idempotency key.
    pub key: String,
    /// `GET`, `POST`, `PUT` or `DELETE`.
    pub method: String,
    /// The path under `/api/v2/admin/`.
    pub path: String,
    /// Query parameters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query: Vec<(String, String)>,
    /// The JSON body, serialized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The command's shop, when it named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_shop: Option<u32>,
    /// The settling read, when it named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle: Option<Settle>,
}

impl Command {
    /// The command as a job carries it.
    pub fn queued(&self) -> Queued {
        Queued {
            key: self.key.clone(),
            method: self.method.as_str().to_owned(),
            path: self.path.clone(),
            query: self.query.clone(),
            body: self.body.as_ref().map(Value::to_string),
            command_shop: self.shop_no.map(ShopNo::get),
            settle: self.settle.clone(),
        }
    }

    /// The command a job carries, validated again (a job message is input too).
    pub fn from_queued(mall: &MallId, q: &Queued) -> Result<Self, Refusal> {
        let mut m = Map::new();
        m.insert("v".into(), json!(COMMAND_VERSION));
        m.insert("key".into(), json!(q.key));
        m.insert("mall_id".into(), json!(mall.as_str()));
        m.insert("method".into(), json!(q.method));
        m.insert("path".into(), json!(q.path));
        if let Some(s) = q.command_shop {
            m.insert("shop_no".into(), json!(s));
        }
        if !q.query.is_empty() {
            m.insert("query".into(), Value::Object(q.query.iter().map(|(k, v)| (k.clone(), json!(v))).collect()));
        }
        if let Some(b) = &q.body {
            m.insert("body".into(), serde_json::from_str(b).map_err(|_| Refusal::BadBody)?);
        }
        if let Some(s) = &q.settle {
            let query: Map<String, Value> = s.query.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            m.insert("settle".into(), json!({"path": s.path, "query": query, "contains": s.contains}));
        }
        Self::parse(&Value::Object(m).to_string())
    }
}

/// The job that runs `cmd`: its id (the work queue's deduplication id and the worker's key to
/// its record) is derived from the mall and the key, so the same key makes the same job.
pub fn command_job(cmd: &Command, now_ms: u64) -> crate::jobs::Job {
    crate::jobs::Job {
        v: crate::jobs::JOB_VERSION,
        job_id: DedupId::derive("cmdjob", &[cmd.mall_id.as_str().as_bytes(), cmd.key.as_bytes()]),
        mall_id: cmd.mall_id.clone(),
        shop_no: ShopNo::DEFAULT,
        kind: crate::jobs::JobKind::Command(cmd.queued()),
        class: crate::ratelimit::Class::Live,
        trace_id: None,
        event_received_ms: now_ms,
    }
}

/// What is known of a refused command, so its `command.failed` event names what it can.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Named {
    /// The key, when it was a valid one.
    pub key: Option<String>,
    /// The mall, when it was a valid id.
    pub mall_id: Option<MallId>,
}

#[derive(Deserialize)]
struct Raw {
    v: Option<Value>,
    key: Option<Value>,
    mall_id: Option<Value>,
    shop_no: Option<Value>,
    method: Option<Value>,
    path: Option<Value>,
    query: Option<Value>,
    body: Option<Value>,
    settle: Option<Value>,
}

/// A key SQS takes as a deduplication id: 1..=128 of `[A-Za-z0-9]` and ASCII punctuation.
pub fn valid_key(k: &str) -> bool {
    (1..=MAX_KEY_LEN).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_alphanumeric() || b.is_ascii_punctuation())
}

/// Checks a path meant for `/api/v2/admin/` and returns it without the prefix or a leading
/// slash. Only plain segments pass: no scheme or host, no `.`/`..` segments (nor encoded
/// ones), no query or fragment, no empty segment, no backslash, nothing outside a conservative
/// ASCII set — so the request can only ever go to the named mall's Admin API.
pub fn admin_path(p: &str) -> Result<String, Refusal> {
    if p.is_empty() || p.len() > MAX_PATH_LEN {
        return Err(Refusal::BadPath("empty or longer than 512 bytes"));
    }
    if p.contains("://") || p.starts_with("//") {
        return Err(Refusal::BadPath("an absolute URL"));
    }
    let rest = p.strip_prefix("/api/v2/admin/").or_else(|| p.strip_prefix('/')).unwrap_or(p);
    if rest.starts_with("api/") {
        return Err(Refusal::BadPath("outside /api/v2/admin/"));
    }
    if rest.contains(['?', '#']) {
        return Err(Refusal::BadPath("a query or fragment (send the query as \"query\")"));
    }
    let lower = rest.to_ascii_lowercase();
    if lower.contains("%2e") || lower.contains("%2f") || lower.contains("%5c") || rest.contains('\\') {
        return Err(Refusal::BadPath("an encoded dot, slash or a backslash"));
    }
    for seg in rest.split('/') {
        if seg.is_empty() {
            return Err(Refusal::BadPath("an empty segment"));
        }
        if seg == "." || seg == ".." {
            return Err(Refusal::BadPath("a dot segment"));
        }
        if !seg.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~,:@%".contains(&b)) {
            return Err(Refusal::BadPath("a character outside letters, digits and -_.~,:@%"));
        }
    }
    Ok(rest.to_owned())
}

/// The key and mall of a message, as far as they are valid (for the event of a refusal).
pub fn named(body: &str) -> Named {
    let Ok(Value::Object(m)) = serde_json::from_str::<Value>(body) else { return Named::default() };
    Named {
        key: m.get("key").and_then(Value::as_str).filter(|k| valid_key(k)).map(str::to_owned),
        mall_id: m.get("mall_id").and_then(Value::as_str).and_then(|s| MallId::parse(s).ok()),
    }
}

impl Command {
    /// Parses and validates a command message.
    pub fn parse(body: &str) -> Result<Self, Refusal> {
        let raw: Raw = match serde_json::from_str::<Value>(body) {
            Ok(v @ Value::Object(_)) => serde_json::from_value(v).map_err(|_| Refusal::NotJson)?,
            _ => return Err(Refusal::NotJson),
        };
        if raw.v.as_ref().and_then(Value::as_u64) != Some(COMMAND_VERSION) {
            return Err(Refusal::UnknownVersion);
        }
        let key = raw.key.as_ref().and_then(Value::as_str).filter(|k| valid_key(k)).ok_or(Refusal::BadKey)?;
        let mall_id =
            raw.mall_id.as_ref().and_then(Value::as_str).and_then(|s| MallId::parse(s).ok()).ok_or(Refusal::BadMall)?;
        let shop_no = match &raw.shop_no {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                    .and_then(|n| u32::try_from(n).ok())
                    .and_then(ShopNo::new)
                    .ok_or(Refusal::BadShop)?,
            ),
        };
        let method = raw.method.as_ref().and_then(Value::as_str).and_then(Method::parse).ok_or(Refusal::BadMethod)?;
        let path = admin_path(raw.path.as_ref().and_then(Value::as_str).ok_or(Refusal::BadPath("missing"))?)?;
        let query = parse_query(raw.query.as_ref())?;
        let body = match raw.body {
            None | Some(Value::Null) => None,
            Some(b @ Value::Object(_)) if method.has_body() => {
                if b.to_string().len() > MAX_BODY_BYTES {
                    return Err(Refusal::BodyTooLarge);
                }
                Some(b)
            }
            Some(_) => return Err(Refusal::BadBody),
        };
        let settle = match raw.settle {
            None | Some(Value::Null) => None,
            // Only a POST is never sent again; any other method is re-sent instead.
            Some(Value::Object(s)) if method == Method::Post => {
                if s.keys().any(|k| !matches!(k.as_str(), "path" | "query" | "contains")) {
                    return Err(Refusal::BadSettle);
                }
                let path = s.get("path").and_then(Value::as_str).ok_or(Refusal::BadSettle)?;
                let contains = s.get("contains").and_then(Value::as_str).unwrap_or("");
                if contains.is_empty() || contains.chars().count() > MAX_SETTLE_TEXT {
                    return Err(Refusal::BadSettle);
                }
                Some(Settle {
                    path: admin_path(path).map_err(|_| Refusal::BadSettle)?,
                    query: parse_query(s.get("query")).map_err(|_| Refusal::BadSettle)?,
                    contains: contains.to_owned(),
                })
            }
            Some(_) => return Err(Refusal::BadSettle),
        };
        Ok(Self { key: key.to_owned(), mall_id, shop_no, method, path, query, body, settle })
    }

    /// The path and query as the client sends them (`shop_no` first when given).
    pub fn path_and_query(&self) -> String {
        with_query(&self.path, self.shop_no, &self.query)
    }

    /// The settling read's path and query, in the command's shop.
    pub fn settle_path_and_query(&self) -> Option<String> {
        self.settle.as_ref().map(|s| with_query(&s.path, self.shop_no, &s.query))
    }
}

fn with_query(path: &str, shop_no: Option<ShopNo>, query: &[(String, String)]) -> String {
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    let shop = shop_no.map(|s| s.get().to_string());
    if let Some(s) = &shop {
        pairs.push(("shop_no", s.as_str()));
    }
    pairs.extend(query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    if pairs.is_empty() {
        return path.to_owned();
    }
    let q: Vec<String> = pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
    format!("{path}?{}", q.join("&"))
}

/// A command's (or a settling read's) `query`: an object of strings or numbers, never
/// `shop_no` (the command's own field), at most [`MAX_QUERY_BYTES`].
fn parse_query(v: Option<&Value>) -> Result<Vec<(String, String)>, Refusal> {
    let mut query = Vec::new();
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Object(q)) => {
            for (k, v) in q {
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => return Err(Refusal::BadQuery),
                };
                if k.is_empty() || k == "shop_no" {
                    return Err(Refusal::BadQuery);
                }
                query.push((k.clone(), v));
            }
            if query.iter().map(|(k, v)| k.len() + v.len() + 2).sum::<usize>() > MAX_QUERY_BYTES {
                return Err(Refusal::BadQuery);
            }
        }
        Some(_) => return Err(Refusal::BadQuery),
    }
    Ok(query)
}

/// Percent-encodes a query component (RFC 3986 unreserved characters pass).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;

    #[test]
    fn a_post_may_name_a_settling_read_and_it_survives_the_job_message() {
        let settle = json!({"path": "orders/O1/shipments", "query": {"limit": 10}, "contains": "TRK-1"});
        let c = cmd(json!({"path": "orders/O1/shipments", "shop_no": 2, "settle": settle})).unwrap();
        let s = c.settle.clone().unwrap();
        assert_eq!((s.path.as_str(), s.contains.as_str()), ("orders/O1/shipments", "TRK-1"));
        assert_eq!(c.settle_path_and_query().as_deref(), Some("orders/O1/shipments?shop_no=2&limit=10"));
        let back = Command::from_queued(
            &c.mall_id,
            &serde_json::from_str(&serde_json::to_string(&c.queued()).unwrap()).unwrap(),
        );
        assert_eq!(back.unwrap(), c);
        assert!(s.found_in(&json!({"shipments": [{"tracking_no": "x TRK-1 y"}]})));
        assert!(!s.found_in(&json!({"shipments": [{"tracking_no": "TRK-2", "n": 1}]})));
        // Nested deeper than the walk goes (serde_json parses at most 128 levels): not searched.
        let mut deep = json!("TRK-1");
        for _ in 0..100 {
            deep = json!([deep]);
        }
        assert!(!s.found_in(&deep));
        for bad in [
            json!({"settle": {"path": "points"}}),
            json!({"settle": {"path": "points", "contains": ""}}),
            json!({"settle": {"path": "../oauth", "contains": "x"}}),
            json!({"settle": {"path": "points", "contains": "x", "method": "DELETE"}}),
            json!({"settle": {"path": "points", "contains": "x", "query": {"shop_no": 2}}}),
            json!({"settle": {"path": "points", "contains": "x".repeat(MAX_SETTLE_TEXT + 1)}}),
            json!({"settle": "points"}),
            json!({"method": "PUT", "settle": {"path": "points", "contains": "x"}}),
        ] {
            assert_eq!(cmd(bad.clone()), Err(Refusal::BadSettle), "{bad}");
        }
        let allow = AllowList::parse("POST customers/*/points").unwrap();
        let plain = cmd(json!({})).unwrap();
        assert!(allow.allows_command(&plain));
        let reads = cmd(json!({"settle": {"path": "customers/c1/points", "contains": "grant-1"}})).unwrap();
        assert!(!allow.allows_command(&reads), "the settling read is a GET the list must allow too");
        let o = Outcome::Settled { body: json!({"points": []}) };
        assert_eq!(Outcome::from_record(&o.to_record()), Some(o.clone()));
        assert_eq!(o.name(), "succeeded");
    }

    fn cmd(extra: Value) -> Result<Command, Refusal> {
        let mut base = json!({"v": 1, "key": "grant-1", "mall_id": "shopa", "method": "POST",
            "path": "customers/c1/points", "body": {"request": {"amount": 100}}});
        if let (Value::Object(b), Value::Object(e)) = (&mut base, extra) {
            for (k, v) in e {
                if v == json!("__remove") {
                    b.remove(&k);
                } else {
                    b.insert(k, v);
                }
            }
        }
        Command::parse(&base.to_string())
    }

    #[test]
    fn a_well_formed_command_parses_with_its_path_under_the_admin_api() {
        let c = cmd(json!({"shop_no": 2, "query": {"embed": "items", "limit": 10}})).unwrap();
        assert_eq!((c.key.as_str(), c.mall_id.as_str(), c.method), ("grant-1", "shopa", Method::Post));
        assert_eq!(c.path, "customers/c1/points");
        assert_eq!(c.path_and_query(), "customers/c1/points?shop_no=2&embed=items&limit=10");
        let c = cmd(json!({"path": "/api/v2/admin/orders/20200101-0000001/shipments"})).unwrap();
        assert_eq!(c.path, "orders/20200101-0000001/shipments");
        assert_eq!(cmd(json!({"path": "/products/7"})).unwrap().path, "products/7");
        let c = cmd(json!({"method": "GET", "body": "__remove", "query": {"q": "a b&c=d"}})).unwrap();
        assert_eq!(c.path_and_query(), "customers/c1/points?q=a%20b%26c%3Dd", "a value cannot add a parameter");
    }

    #[test]
    fn every_malformed_command_is_refused_with_its_reason() {
        assert_eq!(Command::parse("not json"), Err(Refusal::NotJson));
        assert_eq!(Command::parse("[1]"), Err(Refusal::NotJson));
        assert_eq!(Command::parse(""), Err(Refusal::NotJson));
        let long_key = "k".repeat(129);
        let cases: Vec<(Value, &str)> = vec![
            (json!({"v": "__remove"}), "unknown_version"),
            (json!({"v": 2}), "unknown_version"),
            (json!({"key": "__remove"}), "bad_key"),
            (json!({"key": ""}), "bad_key"),
            (json!({"key": long_key}), "bad_key"),
            (json!({"key": "has space"}), "bad_key"),
            (json!({"key": "키"}), "bad_key"),
            (json!({"key": 7}), "bad_key"),
            (json!({"mall_id": "__remove"}), "bad_mall"),
            (json!({"mall_id": "Not A Mall!"}), "bad_mall"),
            (json!({"shop_no": 0}), "bad_shop"),
            (json!({"shop_no": "two"}), "bad_shop"),
            (json!({"method": "PATCH"}), "bad_method"),
            (json!({"method": "post"}), "bad_method"),
            (json!({"path": "__remove"}), "bad_path"),
            (json!({"path": ""}), "bad_path"),
            (json!({"path": "https://evil.example/api/v2/admin/orders"}), "bad_path"),
            (json!({"path": "//evil.example/orders"}), "bad_path"),
            (json!({"path": "orders/../../oauth/token"}), "bad_path"),
            (json!({"path": "orders/%2e%2e/x"}), "bad_path"),
            (json!({"path": "orders/a%2Fb"}), "bad_path"),
            (json!({"path": "orders\\x"}), "bad_path"),
            (json!({"path": "orders//x"}), "bad_path"),
            (json!({"path": "orders/./x"}), "bad_path"),
            (json!({"path": "orders?limit=1"}), "bad_path"),
            (json!({"path": "orders#x"}), "bad_path"),
            (json!({"path": "/api/v2/oauth/token"}), "bad_path"),
            (json!({"path": "orders/a b"}), "bad_path"),
            (json!({"path": "x".repeat(513)}), "bad_path"),
            (json!({"query": "limit=1"}), "bad_query"),
            (json!({"query": {"limit": [1]}}), "bad_query"),
            (json!({"query": {"shop_no": "3"}}), "bad_query"),
            (json!({"query": {"q": "x".repeat(2_100)}}), "bad_query"),
            (json!({"method": "GET"}), "bad_body"),
            (json!({"method": "DELETE"}), "bad_body"),
            (json!({"body": [1, 2]}), "bad_body"),
            (json!({"body": {"blob": "x".repeat(MAX_BODY_BYTES)}}), "body_too_large"),
        ];
        for (extra, code) in cases {
            let shown = extra.to_string();
            let r = cmd(extra);
            assert_eq!(r.as_ref().map_err(Refusal::code).err(), Some(code), "{}: {r:?}", &shown[..shown.len().min(80)]);
            assert!(!r.unwrap_err().message().is_empty());
        }
    }

    #[test]
    fn a_command_survives_its_job_message() {
        let c = cmd(json!({"shop_no": 2, "query": {"embed": "items"}})).unwrap();
        let job = crate::jobs::Job {
            v: crate::jobs::JOB_VERSION,
            job_id: "cmd-1".parse().unwrap(),
            mall_id: c.mall_id.clone(),
            shop_no: ShopNo::DEFAULT,
            kind: crate::jobs::JobKind::Command(c.queued()),
            class: crate::ratelimit::Class::Live,
            trace_id: None,
            event_received_ms: 0,
        };
        let parsed = crate::jobs::Job::parse(&job.to_body()).unwrap();
        let crate::jobs::JobKind::Command(q) = &parsed.kind else { panic!("{parsed:?}") };
        assert_eq!(Command::from_queued(&parsed.mall_id, q).unwrap(), c);
        let bad = Queued { path: "../oauth".into(), ..c.queued() };
        assert_eq!(Command::from_queued(&c.mall_id, &bad).unwrap_err().code(), "bad_path");
    }

    #[test]
    fn only_a_post_is_unsafe_to_send_again() {
        assert!(!Method::Post.resend_is_safe());
        for m in [Method::Get, Method::Put, Method::Delete] {
            assert!(m.resend_is_safe(), "{m:?}");
            assert_eq!(Method::parse(m.as_str()), Some(m));
        }
    }

    #[test]
    fn a_refused_command_still_names_its_key_and_mall_when_they_were_valid() {
        let n = named(r#"{"key": "k-1", "mall_id": "shopa", "method": "PATCH"}"#);
        assert_eq!((n.key.as_deref(), n.mall_id.as_ref().map(MallId::as_str)), (Some("k-1"), Some("shopa")));
        assert_eq!(named("garbage"), Named::default());
        assert_eq!(named(r#"{"key": "bad key", "mall_id": "!"}"#), Named::default());
    }
}
