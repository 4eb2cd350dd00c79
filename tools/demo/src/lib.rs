//! Shared pieces of `make demo` and `make bench`: an HTTP bridge that serves the webhook-ingest
//! handler the way a Lambda Function URL would (each request becomes the Function URL event).

pub mod bridge {
    //! The HTTP → Function URL event bridge.
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use anyhow::Result;
    use relay_aws::sqs::SqsQueue;
    use serde_json::{json, Value};
    use webhook_ingest::Ingest;

    /// Milliseconds spent inside the ingest handler (billed time), across all requests.
    pub static INGEST_BILLED_MS: AtomicU64 = AtomicU64::new(0);

    /// Serves the ingest handler over HTTP (each request becomes the Function URL event Lambda
    /// sends); the time spent in it is added to [`INGEST_BILLED_MS`].
    pub async fn serve<I: webhook_ingest::install::InstallFlow + 'static>(
        ingest: Arc<Ingest<SqsQueue, I>>,
        listener: tokio::net::TcpListener,
    ) -> Result<()> {
        serve_fn(listener, move |req| {
            let ingest = ingest.clone();
            async move {
                let t = std::time::Instant::now();
                let resp = ingest.handle(req).await;
                INGEST_BILLED_MS.fetch_add(t.elapsed().as_millis() as u64, Ordering::Relaxed);
                resp
            }
        })
        .await
    }

    /// Serves any Function URL handler over HTTP, each request turned into the Function URL event.
    pub async fn serve_fn<F, Fut>(listener: tokio::net::TcpListener, handler: F) -> Result<()>
    where
        F: Fn(lambda_http::Request) -> Fut + Clone + Send + Sync + 'static,
        Fut: std::future::Future<Output = lambda_http::Response<lambda_http::Body>> + Send + 'static,
    {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, Method, Uri};
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let handler = handler.clone();
            async move {
                let hs: serde_json::Map<String, Value> =
                    headers.iter().filter_map(|(k, v)| Some((k.as_str().to_owned(), Value::String(v.to_str().ok()?.to_owned())))).collect();
                let (path, query) = uri.path_and_query().map(|p| (p.path().to_owned(), p.query().unwrap_or("").to_owned())).unwrap_or_default();
                use base64::Engine as _;
                let event = json!({
                    "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query, "headers": hs,
                    "requestContext": {"accountId": "anonymous", "apiId": "demo", "domainName": "demo.lambda-url.local", "domainPrefix": "demo",
                        "http": {"method": method.as_str(), "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "demo"},
                        "requestId": format!("{:016x}", rand::random::<u64>()), "routeKey": "$default", "stage": "$default", "time": "", "timeEpoch": 0},
                    "body": base64::engine::general_purpose::STANDARD.encode(&body), "isBase64Encoded": true
                });
                match lambda_http::request::from_str(&event.to_string()) {
                    Ok(req) => {
                        let resp = handler(req).await;
                        let mut out = axum::response::Response::new(axum::body::Body::from(resp.body().as_ref().to_vec()));
                        *out.status_mut() = axum::http::StatusCode::from_u16(resp.status().as_u16()).unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
                        for (k, v) in resp.headers() {
                            if let (Ok(k), Ok(v)) = (axum::http::HeaderName::from_bytes(k.as_str().as_bytes()), axum::http::HeaderValue::from_bytes(v.as_bytes())) {
                                out.headers_mut().insert(k, v);
                            }
                        }
                        out
                    }
                    Err(_) => axum::response::Response::new(axum::body::Body::from("bad event")),
                }
            }
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(())
    }
}
