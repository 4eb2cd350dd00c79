//! OAuth 2.0 as Cafe24 runs it: an authorize endpoint (auto-approved, as if the merchant
//! clicked "install") and the token endpoint with Basic client auth, rotation of refresh
//! tokens, and the issuance cap.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{json, Value};

use crate::kst;
use crate::state::{AuthCode, Inner, RefreshState, Sim};

/// Percent-encodes a query value (RFC 3986 unreserved characters pass through).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (status, axum::Json(json!({"error": error, "error_description": description}))).into_response()
}

/// `GET /{mall}/api/v2/oauth/authorize` → 302 to `redirect_uri?code=…&state=…`.
pub async fn authorize(
    State(sim): State<Arc<Sim>>,
    Path(mall): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let get = |k: &str| q.get(k).map(String::as_str).filter(|v| !v.is_empty());
    if get("response_type") != Some("code") {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_response_type", "response_type must be code");
    }
    let Some(app) = get("client_id").and_then(|c| sim.app(c)).cloned() else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_client", "unknown client_id");
    };
    let Some(redirect) = get("redirect_uri") else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "redirect_uri is required");
    };
    let scopes: Vec<String> = match get("scope") {
        Some(s) => s.split(',').map(|x| x.trim().to_owned()).filter(|x| !x.is_empty()).collect(),
        None => app.scopes.clone(),
    };
    let now = sim.clock.now_ms();
    let code = Sim::random_token();
    {
        let mut g = sim.lock();
        // (Re)installing clears an earlier uninstall.
        sim.mall(&mut g, &mall).uninstalled.retain(|c| *c != app.client_id);
        g.codes.insert(
            code.clone(),
            AuthCode {
                mall: mall.clone(),
                client_id: app.client_id.clone(),
                redirect_uri: redirect.to_owned(),
                scopes,
                issued_ms: now,
                used: false,
            },
        );
    }
    let sep = if redirect.contains('?') { '&' } else { '?' };
    let mut location = format!("{redirect}{sep}code={}", encode(&code));
    if let Some(state) = get("state") {
        location.push_str(&format!("&state={}", encode(state)));
    }
    let mut resp = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

fn basic_client(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (id, secret) = s.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// The token response, shaped like Cafe24's (timestamps KST without offset).
fn token_json(
    sim: &Sim,
    mall: &str,
    client_id: &str,
    scopes: &[String],
    access: &str,
    refresh: &str,
    now: u64,
) -> Value {
    json!({
        "access_token": access,
        "expires_at": kst::naive_kst_millis(now + sim.config.access_ttl_ms),
        "refresh_token": refresh,
        "refresh_token_expires_at": kst::naive_kst_millis(now + sim.config.refresh_ttl_ms),
        "client_id": client_id,
        "mall_id": mall,
        "user_id": "sim-admin",
        "scopes": scopes,
        "issued_at": kst::naive_kst_millis(now),
        "shop_no": "1",
        "token_type": "Bearer",
    })
}

/// Checks and records one issuance against the per-mall cap. `false` = refused.
fn take_issuance(sim: &Sim, g: &mut Inner, mall: &str, now: u64) -> bool {
    let window = sim.config.issuance_window_ms;
    let cap = sim.config.issuance_cap as usize;
    let m = sim.mall(g, mall);
    while m.issuances.front().is_some_and(|t| t + window <= now) {
        m.issuances.pop_front();
    }
    if m.issuances.len() >= cap {
        m.stats.issuance_cap_refusals += 1;
        return false;
    }
    m.issuances.push_back(now);
    m.stats.token_issuances += 1;
    true
}

/// `POST /{mall}/api/v2/oauth/token` (form body, Basic client auth).
pub async fn token(
    State(sim): State<Arc<Sim>>,
    path: Path<String>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let answer = token_now(sim.clone(), path, headers, form);
    let delay = sim.lock().token_answer_delay_ms;
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    answer
}

fn token_now(
    sim: Arc<Sim>,
    Path(mall): Path<String>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some((client_id, secret)) = basic_client(&headers) else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Basic client authentication is required");
    };
    if sim.client_secret(&client_id).is_none_or(|s| s != secret) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Invalid client_secret");
    }
    let Ok(Form(form)) = form else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be application/x-www-form-urlencoded",
        );
    };
    let now = sim.clock.now_ms();
    let mut g = sim.lock();
    sim.mall(&mut g, &mall).stats.token_requests += 1;
    let invalid_grant = |g: &mut Inner, why: &str| {
        sim.mall(g, &mall).stats.invalid_grants += 1;
        oauth_error(StatusCode::UNAUTHORIZED, "invalid_grant", why)
    };
    if sim.mall(&mut g, &mall).uninstalled.contains(&client_id) {
        return invalid_grant(&mut g, "the app is not installed on this mall");
    }
    let scopes = match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let code = form.get("code").cloned().unwrap_or_default();
            let Some(c) = g.codes.get(&code).cloned() else {
                return invalid_grant(&mut g, "Invalid authorization code");
            };
            if c.used {
                return invalid_grant(&mut g, "authorization code already used");
            }
            if c.mall != mall || c.client_id != client_id {
                return invalid_grant(&mut g, "Invalid authorization code");
            }
            if now > c.issued_ms + sim.config.code_ttl_ms {
                return invalid_grant(&mut g, "authorization code expired");
            }
            if form.get("redirect_uri").is_some_and(|r| *r != c.redirect_uri) {
                return invalid_grant(&mut g, "redirect_uri does not match");
            }
            if !take_issuance(&sim, &mut g, &mall, now) {
                return oauth_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_requests",
                    "token issuance limit exceeded",
                );
            }
            if let Some(c) = g.codes.get_mut(&code) {
                c.used = true;
            }
            c.scopes
        }
        Some("refresh_token") => {
            let rt = form.get("refresh_token").cloned().unwrap_or_default();
            let Some(t) = g.refresh.get(&rt).cloned() else {
                return invalid_grant(&mut g, "Invalid refresh_token");
            };
            if t.mall != mall || t.client_id != client_id {
                return invalid_grant(&mut g, "Invalid refresh_token");
            }
            match t.state {
                RefreshState::Rotated => {
                    sim.mall(&mut g, &mall).stats.refresh_reuse_attempts += 1;
                    return invalid_grant(&mut g, "Invalid refresh_token");
                }
                RefreshState::Revoked => return invalid_grant(&mut g, "Invalid refresh_token"),
                RefreshState::Live if t.expires_ms <= now => {
                    return invalid_grant(&mut g, "refresh_token time expired")
                }
                RefreshState::Live => {}
            }
            if !take_issuance(&sim, &mut g, &mall, now) {
                return oauth_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_requests",
                    "token issuance limit exceeded",
                );
            }
            // Rotation: the old refresh token dies at once.
            if let Some(old) = g.refresh.get_mut(&rt) {
                old.state = RefreshState::Rotated;
            }
            t.scopes
        }
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type must be authorization_code or refresh_token",
            )
        }
    };
    let (a, r) = sim.insert_pair(&mut g, &mall, &client_id, scopes.clone(), now);
    (StatusCode::OK, axum::Json(token_json(&sim, &mall, &client_id, &scopes, &a, &r, now))).into_response()
}

/// The query Cafe24 appends to an app's App URL when a merchant opens the app from the admin
/// (`is_multi_shop`, `lang`, `mall_id`, `shop_no`, `timestamp` (s), `user_id`, `user_name`,
/// `user_type`, then `hmac`): `hmac` = base64(HMAC-SHA256(client secret, everything before
/// `&hmac=`)), percent-encoded. Implemented here on its own (not with the relay's verifier).
pub fn app_launch_query(client_secret: &str, mall: &str, now_ms: u64) -> String {
    use hmac::Mac;
    let unsigned = format!(
        "is_multi_shop=F&lang=ko_KR&mall_id={}&shop_no=1&timestamp={}&user_id={}&user_name=%ED%99%8D%EA%B8%B8%EB%8F%99&user_type=A",
        encode(mall),
        now_ms / 1000,
        encode(mall)
    );
    let sig = match hmac::Hmac::<sha2::Sha256>::new_from_slice(client_secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(unsigned.as_bytes());
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    format!("{unsigned}&hmac={}", encode(&sig))
}

/// `GET /sim/malls/{mall}/launch?app_url=…&client_id=…` → 302 to the App URL with the signed
/// launch query, as the Cafe24 admin opens an app (the merchant's browser follows it).
pub async fn launch(
    State(sim): State<Arc<Sim>>,
    Path(mall): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(app_url) = q.get("app_url") else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "app_url is required");
    };
    let app = match q.get("client_id") {
        Some(c) => sim.app(c).cloned(),
        None => sim.config.apps.first().cloned(),
    };
    let Some(app) = app else { return oauth_error(StatusCode::BAD_REQUEST, "invalid_client", "unknown client_id") };
    let to = format!("{app_url}?{}", app_launch_query(&app.client_secret, &mall, sim.clock.now_ms()));
    (StatusCode::FOUND, [(axum::http::header::LOCATION, to)]).into_response()
}
