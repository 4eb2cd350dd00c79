//! The client's error taxonomy: one variant per thing a caller decides differently on.

use relay_domain::ports::StoreError;
use relay_domain::ratelimit::Feedback;

/// What went wrong with a Cafe24 call.
#[derive(Debug, thiserror::Error)]
pub enum Cafe24Error {
    /// 401 (after one refresh and retry).
    #[error("unauthorized (401)")]
    Unauthorized,
    /// 403 that reads as "the app was deleted from the mall".
    #[error("app deleted from the mall (403)")]
    AppDeleted,
    /// Other 403 (missing scope, …).
    #[error("forbidden (403): {message}")]
    Forbidden {
        /// Cafe24's message.
        message: String,
    },
    /// 404.
    #[error("not found (404)")]
    NotFound,
    /// 429; the limiter has been told.
    #[error("rate limited (429)")]
    RateLimited {
        /// What the response said about the limits.
        feedback: Feedback,
    },
    /// The limiter says wait longer than a call may sleep: defer the work.
    #[error("throttled by the limiter for {wait_ms} ms")]
    Throttled {
        /// How long.
        wait_ms: u64,
    },
    /// Other 4xx (400, 409, 422, …) with Cafe24's `code`/`message`.
    #[error("invalid request ({status}): {code} {message}")]
    InvalidRequest {
        /// HTTP status.
        status: u16,
        /// Cafe24's `error.code` (as text).
        code: String,
        /// Cafe24's `error.message`.
        message: String,
    },
    /// 5xx.
    #[error("Cafe24 server error ({status})")]
    Server {
        /// HTTP status.
        status: u16,
    },
    /// No answer within the timeout.
    #[error("timeout")]
    Timeout,
    /// Could not connect or the connection broke.
    #[error("transport error")]
    Transport(#[source] reqwest::Error),
    /// A 2xx whose body is not what the endpoint returns.
    #[error("unexpected response body: {0}")]
    Decode(String),
    /// The mall must be re-authorized by the merchant; no call is attempted.
    #[error("mall needs re-authorization")]
    NeedsReauth,
    /// The app is uninstalled from the mall (stored status).
    #[error("mall uninstalled")]
    Uninstalled,
    /// No tokens for this mall (never installed).
    #[error("mall not installed")]
    NotInstalled,
    /// Another caller is refreshing the mall's token; retry after this long.
    #[error("token refresh in progress elsewhere; retry in {wait_ms} ms")]
    RefreshInProgress {
        /// Suggested wait.
        wait_ms: u64,
    },
    /// Token issuance refused for now (Cafe24's issuance cap, or its token endpoint failing).
    #[error("token refresh failed transiently")]
    RefreshFailed,
    /// Too little of the invocation is left to request a token pair *and* store it: nothing was
    /// asked of Cafe24 (see `deadline`). Retry in a fresh invocation.
    #[error("too little time left in this invocation for a token request")]
    OutOfTime,
    /// A store (limiter, tokens) failed.
    #[error("store unavailable")]
    Store(#[from] StoreError),
    /// The relay's own Cafe24 configuration is refused — for every mall at once, so no job is
    /// at fault: the caller returns the work without counting an attempt and raises the alarm.
    #[error("Cafe24 refuses the relay's configuration: {0}")]
    Config(ConfigFault),
}

/// A configuration Cafe24 refuses for every mall (the operator must act, not the merchant).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigFault {
    /// A 400 saying the requested `X-Cafe24-Api-Version` is not available (a retired version).
    #[error("the pinned API version is not available (CAFE24_API_VERSION)")]
    ApiVersionUnavailable,
    /// The token endpoint refuses the app's credentials (`invalid_client`,
    /// `unauthorized_client`): a rotated client secret, after re-reading it failed to help.
    #[error("the token endpoint refuses the client credentials (CAFE24_CLIENT_SECRET)")]
    ClientRejected,
}

impl ConfigFault {
    /// Short stable name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApiVersionUnavailable => "api_version_unavailable",
            Self::ClientRejected => "client_rejected",
        }
    }
}

impl Cafe24Error {
    /// Short stable class name for logs and metrics.
    pub fn class(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::AppDeleted => "app_deleted",
            Self::Forbidden { .. } => "forbidden",
            Self::NotFound => "not_found",
            Self::RateLimited { .. } => "rate_limited",
            Self::Throttled { .. } => "throttled",
            Self::InvalidRequest { .. } => "invalid_request",
            Self::Server { .. } => "server_error",
            Self::Timeout => "timeout",
            Self::Transport(_) => "transport",
            Self::Decode(_) => "decode",
            Self::NeedsReauth => "needs_reauth",
            Self::Uninstalled => "uninstalled",
            Self::NotInstalled => "not_installed",
            Self::RefreshInProgress { .. } => "refresh_in_progress",
            Self::RefreshFailed => "refresh_failed",
            Self::OutOfTime => "out_of_time",
            Self::Store(_) => "store",
            Self::Config(_) => "config_fault",
        }
    }

    /// Worth retrying later as is (transient).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::Throttled { .. }
                | Self::Server { .. }
                | Self::Timeout
                | Self::Transport(_)
                | Self::RefreshInProgress { .. }
                | Self::RefreshFailed
                | Self::OutOfTime
                | Self::Store(_)
        )
    }
}
