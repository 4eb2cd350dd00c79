//! The per-mall rate limiter's pure core: GCRA with a shared `not_before`, a minimum spacing,
//! priority classes, and feedback from Cafe24's response headers.
//!
//! Time is an argument (integer epoch milliseconds); the state is three integers, stored as one
//! DynamoDB item by the adapter. Every decision is `Admit` (with the state to write) or
//! `Wait(exact_ms)`: asking again `exact_ms` later, with no other admission in between, admits.
//!
//! ```
//! use relay_domain::ratelimit::{Class, Decision, LimiterConfig, LimiterState};
//! let cfg = LimiterConfig { rate_per_sec: 2.0, burst: 3, rate_margin: 0.0, burst_margin: 0, min_spacing_ms: 0, ..LimiterConfig::default() };
//! let mut s = LimiterState::default();
//! for _ in 0..3 {
//!     let d = cfg.decide(&s, 0, Class::Live);
//!     assert!(matches!(d, Decision::Admit(_)), "{d:?}");
//!     if let Decision::Admit(next) = d { s = next }
//! }
//! assert_eq!(cfg.decide(&s, 0, Class::Live), Decision::Wait(500)); // 2/s: one more after 500 ms
//! assert!(matches!(cfg.decide(&s, 500, Class::Live), Decision::Admit(_)));
//! ```
//!
//! ## Invariants (property-tested)
//! - In any window of Δ ms, admissions ≤ `effective_burst + floor(Δ / T)` (T = emission interval).
//! - Nothing is admitted before `not_before`, nor closer than `min_spacing_ms` to the last admission.
//! - `Wait(d)` is exact.
//! - `Bulk` never takes the share reserved for `Live`.
//! - Feedback only ever moves the state forward (it can tighten, never loosen, the limit).

use serde::{Deserialize, Serialize};

/// Priority class of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Work caused by a webhook: may use the whole burst.
    Live,
    /// Backfills, reconciliation: only while it leaves the reserved share free.
    Bulk,
}

/// Limiter settings. Defaults are Cafe24's limits with margins.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LimiterConfig {
    /// Server drain rate, calls per second (Cafe24: 2).
    pub rate_per_sec: f64,
    /// Server bucket capacity (Cafe24: 40).
    pub burst: u32,
    /// Fraction of the rate kept unused (clock drift between us and Cafe24), 0..1.
    pub rate_margin: f64,
    /// Calls of the burst kept unused (in-flight calls, other apps' stray calls).
    pub burst_margin: u32,
    /// Minimum gap between two admissions, ms (keeps a mall under Cafe24's "≥ 10 calls/s is
    /// abnormal": 125 ms → at most 8/s).
    pub min_spacing_ms: u64,
    /// Share of the effective burst reserved for `Live` (bulk is refused when it would dip into it).
    pub bulk_reserve: f64,
    /// Usage percentage (either quota) from which calls are slowed down.
    pub usage_soft_pct: f64,
    /// Pause imposed when a usage header reaches `usage_soft_pct`, ms.
    pub usage_soft_pause_ms: u64,
    /// Pause when a usage is ≥ 100% but no `*-Remain` header says for how long, ms.
    pub usage_block_default_ms: u64,
    /// Pause after a 429 that carried no usable header, ms.
    pub rate_limited_default_ms: u64,
    /// Slack added to server-announced waits (`*-Remain`), ms.
    pub remain_slack_ms: u64,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        Self {
            rate_per_sec: 2.0,
            burst: 40,
            rate_margin: 0.02,
            burst_margin: 2,
            min_spacing_ms: 125,
            bulk_reserve: 0.25,
            usage_soft_pct: 90.0,
            usage_soft_pause_ms: 2_000,
            usage_block_default_ms: 60_000,
            rate_limited_default_ms: 1_000,
            remain_slack_ms: 1_000,
        }
    }
}

/// Why a configuration is unusable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid limiter setting {field}: {reason}")]
pub struct LimiterConfigError {
    /// The field.
    pub field: &'static str,
    /// What is wrong.
    pub reason: &'static str,
}

/// The limiter's state for one rate-limit key: one DynamoDB item.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LimiterState {
    /// GCRA theoretical arrival time, epoch ms.
    pub tat_ms: u64,
    /// Nothing is admitted before this instant (server-announced blocks, 429s).
    pub not_before_ms: u64,
    /// Last admission, epoch ms (for the minimum spacing).
    pub last_ms: u64,
}

/// What a rate gate (the stored limiter) answers a caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acquire {
    /// The call may be made now.
    Admitted,
    /// Ask again in this many ms.
    Wait(u64),
}

/// A decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead; persist this state (conditionally) first.
    Admit(LimiterState),
    /// Ask again in exactly this many ms.
    Wait(u64),
}

impl LimiterConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), LimiterConfigError> {
        let e = |field, reason| Err(LimiterConfigError { field, reason });
        if !(self.rate_per_sec.is_finite() && self.rate_per_sec > 0.0 && self.rate_per_sec <= 1000.0) {
            return e("rate_per_sec", "must be in (0, 1000]");
        }
        if self.burst == 0 || self.burst > 10_000 {
            return e("burst", "must be in 1..=10000");
        }
        if !(0.0..1.0).contains(&self.rate_margin) {
            return e("rate_margin", "must be in [0, 1)");
        }
        if self.burst_margin >= self.burst {
            return e("burst_margin", "must be below burst");
        }
        if !(0.0..1.0).contains(&self.bulk_reserve) {
            return e("bulk_reserve", "must be in [0, 1)");
        }
        if !(self.usage_soft_pct.is_finite() && self.usage_soft_pct > 0.0) {
            return e("usage_soft_pct", "must be positive");
        }
        Ok(())
    }

    /// Emission interval T in ms: 1 / (rate · (1 − margin)), rounded up (never faster).
    pub fn interval_ms(&self) -> u64 {
        let eff = (self.rate_per_sec * (1.0 - self.rate_margin)).max(1e-6);
        ((1000.0 / eff).ceil() as u64).max(1)
    }

    /// Burst actually used: `burst − burst_margin`, at least 1.
    pub fn effective_burst(&self) -> u64 {
        u64::from(self.burst.saturating_sub(self.burst_margin).max(1))
    }

    /// Calls of the effective burst reserved for live work.
    pub fn reserved_for_live(&self) -> u64 {
        let r = (self.effective_burst() as f64 * self.bulk_reserve).ceil() as u64;
        r.min(self.effective_burst().saturating_sub(1))
    }

    /// GCRA tolerance τ for a class: T·(burst − 1), minus the live reserve for bulk.
    fn tolerance_ms(&self, class: Class) -> u64 {
        let burst = match class {
            Class::Live => self.effective_burst(),
            Class::Bulk => self.effective_burst() - self.reserved_for_live(),
        };
        self.interval_ms() * burst.saturating_sub(1)
    }

    /// The decision for one call at `now_ms`.
    pub fn decide(&self, s: &LimiterState, now_ms: u64, class: Class) -> Decision {
        let t = self.interval_ms();
        let gcra_at = s.tat_ms.saturating_sub(self.tolerance_ms(class));
        let spacing_at = if s.last_ms == 0 { 0 } else { s.last_ms.saturating_add(self.min_spacing_ms) };
        let earliest = gcra_at.max(s.not_before_ms).max(spacing_at);
        if now_ms < earliest {
            return Decision::Wait(earliest - now_ms);
        }
        Decision::Admit(LimiterState {
            tat_ms: s.tat_ms.max(now_ms).saturating_add(t),
            not_before_ms: s.not_before_ms,
            last_ms: now_ms.max(s.last_ms),
        })
    }

    /// Moves the state so the next decision respects what Cafe24 reported at `now_ms`.
    /// Monotone: every field only grows. Returns the new state.
    pub fn apply_feedback(&self, s: &LimiterState, fb: &Feedback, now_ms: u64) -> LimiterState {
        let t = self.interval_ms();
        let mut out = *s;
        // The server's bucket: `used` calls at `now`. Our equivalent tat is now + used·T; if the
        // server is fuller than we think (another app shares the mall), catch up.
        if let Some((used, cap)) = fb.call_limit {
            let used = u64::from(used.min(cap));
            out.tat_ms = out.tat_ms.max(now_ms.saturating_add(used.saturating_mul(t)));
            if fb.rate_limited && used < u64::from(cap) {
                // A 429 with a non-full bucket: some other limit; hold off a default pause.
                out.not_before_ms = out.not_before_ms.max(now_ms.saturating_add(self.rate_limited_default_ms));
            }
        } else if fb.rate_limited {
            // A 429 without a usable header: assume the bucket is full and pause.
            out.tat_ms = out.tat_ms.max(now_ms.saturating_add(u64::from(self.burst).saturating_mul(t)));
            out.not_before_ms = out.not_before_ms.max(now_ms.saturating_add(self.rate_limited_default_ms));
        }
        let remain_s = fb.call_remain_s.into_iter().chain(fb.time_remain_s).max();
        let usage = fb
            .call_usage_pct
            .into_iter()
            .chain(fb.time_usage_pct)
            .fold(None, |m: Option<f64>, u| Some(m.map_or(u, |m| m.max(u))));
        if let Some(r) = remain_s {
            let until = now_ms.saturating_add(r.saturating_mul(1000)).saturating_add(self.remain_slack_ms);
            out.not_before_ms = out.not_before_ms.max(until);
        } else if let Some(u) = usage {
            if u >= 100.0 {
                out.not_before_ms = out.not_before_ms.max(now_ms.saturating_add(self.usage_block_default_ms));
            } else if u >= self.usage_soft_pct {
                out.not_before_ms = out.not_before_ms.max(now_ms.saturating_add(self.usage_soft_pause_ms));
            }
        }
        out
    }
}

/// What Cafe24 said about its limits in one response. Fields are `None` when the header was
/// absent or not understood (garbage never loosens anything: it is simply not used).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Feedback {
    /// `X-Api-Call-Limit: used/cap`.
    pub call_limit: Option<(u32, u32)>,
    /// `X-Cafe24-Call-Usage`, percent.
    pub call_usage_pct: Option<f64>,
    /// `X-Cafe24-Time-Usage`, percent.
    pub time_usage_pct: Option<f64>,
    /// `X-Cafe24-Call-Remain`, seconds.
    pub call_remain_s: Option<u64>,
    /// `X-Cafe24-Time-Remain`, seconds.
    pub time_remain_s: Option<u64>,
    /// The response was a 429.
    pub rate_limited: bool,
}

fn parse_call_limit(v: &str) -> Option<(u32, u32)> {
    let (u, c) = v.trim().split_once('/')?;
    let (u, c) = (u.trim().parse::<u32>().ok()?, c.trim().parse::<u32>().ok()?);
    (c > 0 && c <= 100_000 && u <= c.saturating_mul(2)).then_some((u, c))
}

fn parse_pct(v: &str) -> Option<f64> {
    let x = v.trim().parse::<f64>().ok()?;
    (x.is_finite() && (0.0..=100_000.0).contains(&x)).then_some(x)
}

fn parse_secs(v: &str) -> Option<u64> {
    let x = v.trim().parse::<f64>().ok()?;
    // Capped at a day: a larger value is more likely garbage than a real block.
    (x.is_finite() && x >= 0.0).then(|| x.ceil().min(86_400.0) as u64)
}

impl Feedback {
    /// Reads the limit headers from any (name, value) pairs; names are case-insensitive.
    pub fn from_headers<'a>(status: u16, headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut f = Feedback { rate_limited: status == 429, ..Default::default() };
        for (name, value) in headers {
            match name.to_ascii_lowercase().as_str() {
                "x-api-call-limit" => f.call_limit = parse_call_limit(value),
                "x-cafe24-call-usage" => f.call_usage_pct = parse_pct(value),
                "x-cafe24-time-usage" => f.time_usage_pct = parse_pct(value),
                "x-cafe24-call-remain" => f.call_remain_s = parse_secs(value),
                "x-cafe24-time-remain" => f.time_remain_s = parse_secs(value),
                _ => {}
            }
        }
        f
    }

    /// True when applying it could change a state (anything was understood, or a 429).
    pub fn is_informative(&self) -> bool {
        self.rate_limited
            || self.call_limit.is_some()
            || self.call_usage_pct.is_some()
            || self.time_usage_pct.is_some()
            || self.call_remain_s.is_some()
            || self.time_remain_s.is_some()
    }
}

/// How the rate-limit key is derived — in one place, so no code path can pick another.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "scope")]
pub enum KeyScope {
    /// One key per mall (default: Cafe24's bucket is per mall).
    #[default]
    Mall,
    /// One key per app and mall (if Cafe24's bucket turns out to be per app).
    AppAndMall {
        /// The app's client id.
        client_id: String,
    },
    /// One key for everything (a credential shared by many accounts).
    Global {
        /// The key's name.
        name: String,
    },
}

impl KeyScope {
    /// Parses `mall`, `app:<client_id>` or `global:<name>` (e.g. from an environment variable).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        match s.split_once(':') {
            None if s == "mall" => Some(Self::Mall),
            Some(("app", id)) if !id.trim().is_empty() => Some(Self::AppAndMall { client_id: id.trim().to_owned() }),
            Some(("global", n)) if !n.trim().is_empty() => Some(Self::Global { name: n.trim().to_owned() }),
            _ => None,
        }
    }

    /// The rate-limit key for calls to `mall`. Also the work queue's `MessageGroupId`, so it is
    /// kept within SQS's group-id alphabet.
    pub fn key(&self, mall: &crate::MallId) -> String {
        let clean = |s: &str| {
            s.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')).take(60).collect::<String>()
        };
        match self {
            Self::Mall => mall.as_str().to_owned(),
            Self::AppAndMall { client_id } => format!("{}.{}", clean(client_id), mall.as_str()),
            Self::Global { name } => Some(clean(name)).filter(|n| !n.is_empty()).unwrap_or_else(|| "global".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests;
