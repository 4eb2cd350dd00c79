//! JSON HTTP responses for `lambda_http` handlers.

use lambda_http::http::{header::CONTENT_TYPE, StatusCode};
use lambda_http::{Body, Response};
use serde::Serialize;

/// A JSON response with `status`. Serialization of our own small types cannot fail in
/// practice; if it ever did, the body degrades to `{}` rather than panicking.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let body = serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned());
    let mut resp = Response::new(Body::Text(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, lambda_http::http::HeaderValue::from_static("application/json"));
    resp
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

/// `{"error":{"code":…,"message":…}}` with `status`. `message` must be safe for the caller to
/// read: no secrets, no payload, no internal error text.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    json(status, &ErrorBody { error: ErrorDetail { code, message } })
}

/// An empty-bodied response (used for 401, which must say nothing).
pub fn empty(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(Body::Empty);
    *resp.status_mut() = status;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_has_the_documented_shape() {
        let r = error(StatusCode::BAD_REQUEST, "invalid_json", "body is not JSON");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let Body::Text(t) = r.body() else { panic!("text body") };
        let v: serde_json::Value = serde_json::from_str(t).unwrap();
        assert_eq!(v["error"]["code"], "invalid_json");
        assert_eq!(v["error"]["message"], "body is not JSON");
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
    }
}
