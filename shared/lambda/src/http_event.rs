//! From the Lambda event to a `lambda_http::Request`, without a panic on any input.
//!
//! `lambda_http` appends `rawQueryString` to the request URI as received and panics ("failed to
//! build request") when the result is not a valid URI — a raw `<`, `>`, `"`, space or `{` does it,
//! and a Function URL passes such bytes through. That happens before any handler code, so it
//! would answer every route with a runtime error. Here the raw query string is made a valid URI
//! query first: bytes RFC 3986 allows in a query stay as they are (a well-formed query, such as
//! Cafe24's signed App URL launch, is unchanged byte for byte); any other byte is
//! percent-encoded. The handler then answers a bad parameter with its usual 400.

use lambda_http::request::LambdaRequest;
use lambda_http::{Context, LambdaEvent, Request, RequestExt, Service};
use serde::Deserialize;
use serde_json::Value;

fn query_byte_ok(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b)
}

/// Percent-encodes every byte of `raw` that a URI query may not hold.
pub fn valid_query(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if query_byte_ok(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Makes an HTTP event's `rawQueryString` a valid URI query (in place).
pub fn sanitize(event: &mut Value) {
    if let Some(Value::String(q)) = event.get_mut("rawQueryString") {
        if !q.bytes().all(query_byte_ok) {
            *q = valid_query(q);
        }
    }
}

/// A `LambdaRequest` read through [`sanitize`].
pub struct SafeEvent(pub LambdaRequest);

impl<'de> Deserialize<'de> for SafeEvent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut v = Value::deserialize(d)?;
        sanitize(&mut v);
        LambdaRequest::deserialize(v).map(SafeEvent).map_err(serde::de::Error::custom)
    }
}

/// The request a handler sees for an event JSON (what the binary does, for tests and local
/// bridges): sanitized, then converted by `lambda_http`.
pub fn request_from_json(event: Value, context: Option<Context>) -> Result<Request, serde_json::Error> {
    let SafeEvent(lr) = serde_json::from_value(event)?;
    let req: Request = lr.into();
    Ok(match context {
        Some(c) => req.with_lambda_context(c),
        None => req,
    })
}

/// Wraps `lambda_http::Adapter` so the runtime deserializes events through [`SafeEvent`].
pub struct SafeAdapter<A>(pub A);

impl<A> Service<LambdaEvent<SafeEvent>> for SafeAdapter<A>
where
    A: Service<LambdaEvent<LambdaRequest>>,
{
    type Response = A::Response;
    type Error = A::Error;
    type Future = A::Future;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, ev: LambdaEvent<SafeEvent>) -> Self::Future {
        self.0.call(LambdaEvent::new(ev.payload.0, ev.context))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_query_is_kept_byte_for_byte_and_others_are_encoded() {
        let signed =
            "is_multi_shop=T&lang=ko_KR&mall_id=shop1&shop_no=1&timestamp=1700000000&user_id=a%40b&hmac=x%2By%3D";
        assert_eq!(valid_query(signed), signed);
        assert_eq!(valid_query("mall_id=<x>&a=\"b c\"{|}"), "mall_id=%3Cx%3E&a=%22b%20c%22%7B%7C%7D");
        assert_eq!(valid_query("q=é"), "q=%C3%A9");
    }

    fn event(query: &str) -> Value {
        serde_json::json!({
            "version": "2.0", "routeKey": "$default", "rawPath": "/install", "rawQueryString": query,
            "headers": {"host": "abcdefg.lambda-url.us-east-1.on.aws"},
            "requestContext": {"accountId": "anonymous", "apiId": "abcdefg", "domainName": "abcdefg.lambda-url.us-east-1.on.aws",
                "domainPrefix": "abcdefg", "http": {"method": "GET", "path": "/install", "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.9", "userAgent": "t"}, "requestId": "r1", "routeKey": "$default", "stage": "$default",
                "time": "01/Dec/2026:00:00:00 +0000", "timeEpoch": 1_795_000_000_000u64},
            "isBase64Encoded": false
        })
    }

    #[test]
    fn lambda_http_alone_panics_on_a_raw_angle_bracket() {
        // The failure this module exists for: if lambda_http ever stops panicking, this test
        // says so and the module can go.
        let raw = event("mall_id=<script>").to_string();
        let r = std::panic::catch_unwind(|| lambda_http::request::from_str(&raw).map(|_| ()));
        assert!(r.is_err(), "lambda_http no longer panics on a raw '<' in the query");
    }

    #[test]
    fn every_hostile_query_becomes_a_request() {
        for q in ["mall_id=<script>", "a=\"b\"", "x={}|^`", "sp ace", "%", "%zz", "\u{7f}", "\\", "a=é"] {
            let req = request_from_json(event(q), None).unwrap_or_else(|e| panic!("{q:?}: {e}"));
            assert_eq!(req.uri().path(), "/install", "{q:?}");
        }
    }
}
