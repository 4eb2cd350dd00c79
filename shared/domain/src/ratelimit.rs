//! The per-mall rate limiter's pure core: GCRA with a shared `not_before`, a minimum spacing,
//! priority classes, and feedback from Cafe24's response headers.
//!
//! Time is an argument (integer epoch milliseconds); the state is three integers, stored as one
//! DynamoDB item by the adapter. Every decision is `Admit` (with the state to write) or
//! `Wait(exact_ms)`: asking again `exact_ms` later, with no other admission in between, admits.
//!
//! ```
//! use relay_domain::ratelimit::{Class, Decision, LimiterConfig, LimiterState};
//! let cfg = LimiterConfig { rate_per_sec: 2.0, burst: 3, rate_margin: 0.0, burst_margin: 0, min_spacing_ms: 0, interactive_reserve: 0, ..LimiterConfig::default() };
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
//! - `Bulk` never takes the share reserved for `Live`, and neither takes the share reserved
//!   for `Interactive` (a person waiting on the call API).
//! - Feedback only ever moves the state forward (it can tighten, never loosen, the limit).

use serde::{Deserialize, Serialize};

/// Priority class of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Work caused by a webhook, and the app's commands: the burst but the interactive share.
    Live,
    /// Backfills, reconciliation: only while it leaves the reserved shares free.
    Bulk,
    /// A person waiting (the call API, a merchant's screen): the whole burst, including the
    /// `interactive_reserve` nothing else may take, so a screen is answered at once even while
    /// the mall drains a backlog.
    Interactive,
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
    /// abnormal": 140 ms → at most 8 calls in any second even when they reach Cafe24 up to
    /// 120 ms closer together than they were admitted, since 9 calls span 8 gaps = 1,120 ms).
    pub min_spacing_ms: u64,
    /// Share of the effective burst reserved for `Live` (bulk is refused when it would dip into it).
    pub bulk_reserve: f64,
    /// Calls of the effective burst only `Interactive` may use (live and bulk are refused when
    /// they would dip into them).
    pub interactive_reserve: u32,
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
            min_spacing_ms: 140,
            bulk_reserve: 0.25,
            interactive_reserve: 3,
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

    /// Calls of the effective burst reserved for interactive calls (never all of it: live
    /// work keeps at least one).
    pub fn reserved_for_interactive(&self) -> u64 {
        u64::from(self.interactive_reserve).min(self.effective_burst().saturating_sub(1))
    }

    /// GCRA tolerance τ for a class: T·(burst − 1), less the interactive reserve for live and
    /// bulk, and the live reserve too for bulk.
    fn tolerance_ms(&self, class: Class) -> u64 {
        let all = self.effective_burst();
        let live = all - self.reserved_for_interactive();
        let burst = match class {
            Class::Interactive => all,
            Class::Live => live,
            Class::Bulk => live.saturating_sub(self.reserved_for_live()).max(1),
        };
        self.interval_ms() * burst.saturating_sub(1)
    }

    /// The decision for one call at `now_ms`.
    pub fn decide(&self, s: &LimiterState, now_ms: u64, class: Class) -> Decision {
        self.decide_within(s, now_ms, class, None)
    }

    /// The decision for one call to an endpoint whose own limit is `cap` calls (the
    /// denominator of Cafe24's `X-Api-Call-Limit` for it, e.g. 10 for scripttags): admitted
    /// only while the mall's level leaves room under that limit too (less `burst_margin`). Safe
    /// whether Cafe24 counts that endpoint in the mall's bucket or in one of its own: either
    /// way it never holds more than the cap. `None` (or a cap at least the burst): [`Self::decide`].
    pub fn decide_within(&self, s: &LimiterState, now_ms: u64, class: Class, cap: Option<u32>) -> Decision {
        let t = self.interval_ms();
        let mut tolerance = self.tolerance_ms(class);
        if let Some(cap) = cap {
            let capped = u64::from(cap.saturating_sub(self.burst_margin).max(1));
            tolerance = tolerance.min(t * capped.saturating_sub(1));
        }
        let gcra_at = s.tat_ms.saturating_sub(tolerance);
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
        // The server's bucket: `used` calls at `now`, a whole number for a level that drains
        // continuously. A 429 means it is full: take `used` as it stands. Any other answer
        // proves only more than `used − 1` (Cafe24 does not document its rounding; the
        // simulator rounds up): catch up to that, so the rounding alone never moves us — with
        // `used` a call admitted at its exact time read as up to one interval late and pushed
        // every later call back by it — while a server fuller than we think (another app shares
        // the mall) still does. The burst margin covers the one call of doubt.
        if let Some((used, cap)) = fb.call_limit {
            let used = u64::from(used.min(cap));
            let known = if fb.rate_limited { used } else { used.saturating_sub(1) };
            out.tat_ms = out.tat_ms.max(now_ms.saturating_add(known.saturating_mul(t)));
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

    /// The rate-limit key for calls to `mall`.
    pub fn key(&self, mall: &crate::MallId) -> RateKey {
        let clean = |s: &str| {
            s.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')).take(58).collect::<String>()
        };
        RateKey(match self {
            Self::Mall => mall.as_str().to_owned(),
            Self::AppAndMall { client_id } => format!("{}.{}", clean(client_id), mall.as_str()),
            Self::Global { name } => Some(clean(name)).filter(|n| !n.is_empty()).unwrap_or_else(|| "global".to_owned()),
        })
    }
}

/// A rate-limit key (the limiter item's key), made only by [`KeyScope::key`]: 1..=123
/// characters of `[A-Za-z0-9._-]` (a mall id is at most 64, a cleaned client id or key name at
/// most 58), so it and its bulk group (`<key>.bulk`) are always valid SQS `MessageGroupId`s.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RateKey(String);

impl RateKey {
    /// The key as text (the limiter's item key).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The work queue's group for jobs of `class` under this key: live jobs in `<key>`, bulk jobs
    /// in `<key>.bulk` (a FIFO group runs in order; bulk work never holds a live job behind it,
    /// while both draw on the one limiter key).
    pub fn group(&self, class: Class) -> crate::values::GroupId {
        crate::values::GroupId::for_rate_key(self, class)
    }
}

impl std::fmt::Display for RateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    // Tests written against the survivors `cargo mutants` found (issue 30, item 15): each fails
    // on the mutation named in its comment.

    /// `used < cap` in `apply_feedback`: `==`, `>` and `<=` all survived.
    #[test]
    fn a_429_pauses_only_when_the_bucket_was_not_full() {
        let cfg = LimiterConfig::default();
        let now = 1_000_000;
        let fb = |used, cap| Feedback { rate_limited: true, call_limit: Some((used, cap)), ..Default::default() };
        let pause = now + cfg.rate_limited_default_ms;
        // Not full: some other limit; the default pause.
        assert_eq!(cfg.apply_feedback(&LimiterState::default(), &fb(39, 40), now).not_before_ms, pause);
        assert_eq!(cfg.apply_feedback(&LimiterState::default(), &fb(1, 40), now).not_before_ms, pause);
        // Full (or reported over full): the bucket explains it; no extra pause.
        assert_eq!(cfg.apply_feedback(&LimiterState::default(), &fb(40, 40), now).not_before_ms, 0);
        assert_eq!(cfg.apply_feedback(&LimiterState::default(), &fb(41, 40), now).not_before_ms, 0);
        // Not a 429: no pause whatever the level.
        let ok = Feedback { call_limit: Some((39, 40)), ..Default::default() };
        assert_eq!(cfg.apply_feedback(&LimiterState::default(), &ok, now).not_before_ms, 0);
    }

    /// The bounds of `parse_call_limit` (`c > 0`, `c <= 100_000`, `u <= 2c`).
    #[test]
    fn call_limit_headers_are_read_within_their_bounds_only() {
        let read = |v: &str| Feedback::from_headers(200, [("X-Api-Call-Limit", v)]).call_limit;
        assert_eq!(read("0/1"), Some((0, 1)));
        assert_eq!(read("1/0"), None);
        assert_eq!(read("0/0"), None, "a bucket of capacity 0 is no bucket");
        assert_eq!(read("5/100000"), Some((5, 100_000)));
        assert_eq!(read("5/100001"), None);
        assert_eq!(read("80/40"), Some((80, 40)));
        assert_eq!(read("81/40"), None);
        assert_eq!(read(" 3 / 40 "), Some((3, 40)));
    }

    /// Every bound of `LimiterConfig::validate`, at and beyond its edge.
    #[test]
    fn limiter_settings_are_checked_at_each_edge() {
        let ok = LimiterConfig::default();
        let field = |c: LimiterConfig| c.validate().err().map(|e| e.field);
        assert_eq!(field(ok.clone()), None);
        assert_eq!(field(LimiterConfig { rate_per_sec: 1000.0, ..ok.clone() }), None);
        assert_eq!(field(LimiterConfig { rate_per_sec: 1000.5, ..ok.clone() }), Some("rate_per_sec"));
        assert_eq!(field(LimiterConfig { rate_per_sec: 0.0, ..ok.clone() }), Some("rate_per_sec"));
        assert_eq!(field(LimiterConfig { rate_per_sec: f64::NAN, ..ok.clone() }), Some("rate_per_sec"));
        assert_eq!(field(LimiterConfig { burst: 10_000, burst_margin: 0, ..ok.clone() }), None);
        assert_eq!(field(LimiterConfig { burst: 10_001, burst_margin: 0, ..ok.clone() }), Some("burst"));
        assert_eq!(field(LimiterConfig { burst: 0, burst_margin: 0, ..ok.clone() }), Some("burst"));
        assert_eq!(field(LimiterConfig { rate_margin: 0.0, ..ok.clone() }), None);
        assert_eq!(field(LimiterConfig { rate_margin: 1.0, ..ok.clone() }), Some("rate_margin"));
        assert_eq!(field(LimiterConfig { rate_margin: -0.01, ..ok.clone() }), Some("rate_margin"));
        assert_eq!(field(LimiterConfig { burst: 5, burst_margin: 4, ..ok.clone() }), None);
        assert_eq!(field(LimiterConfig { burst: 5, burst_margin: 5, ..ok.clone() }), Some("burst_margin"));
        // An interactive share as large as the burst leaves live work one call: a small
        // LIMITER_BURST must not fail the cold start.
        assert_eq!(field(LimiterConfig { interactive_reserve: 38, ..ok.clone() }), None);
        assert_eq!(LimiterConfig { interactive_reserve: 38, ..ok.clone() }.reserved_for_interactive(), 37);
        assert_eq!(LimiterConfig { interactive_reserve: 36, ..ok.clone() }.reserved_for_interactive(), 36);
        assert_eq!(field(LimiterConfig { bulk_reserve: 0.99, ..ok.clone() }), None);
        assert_eq!(field(LimiterConfig { bulk_reserve: 1.0, ..ok.clone() }), Some("bulk_reserve"));
        assert_eq!(field(LimiterConfig { usage_soft_pct: 0.0, ..ok.clone() }), Some("usage_soft_pct"));
        assert_eq!(field(LimiterConfig { usage_soft_pct: f64::INFINITY, ..ok.clone() }), Some("usage_soft_pct"));
        assert_eq!(field(LimiterConfig { usage_soft_pct: 0.5, ..ok }), None);
    }

    /// `parse_pct`'s `&&` (a finite value beyond 100,000 % is garbage), `KeyScope::parse`'s
    /// empty-name guards and `RateKey`'s `Display`: the last three survivors of a
    /// `cargo mutants` run on this file (107 viable, 104 caught before these).
    #[test]
    fn usage_headers_key_scopes_and_keys_read_and_print_as_they_should() {
        let usage = |v: &str| Feedback::from_headers(200, [("X-Cafe24-Call-Usage", v)]).call_usage_pct;
        assert_eq!(usage("100000"), Some(100_000.0));
        assert_eq!(usage("100001"), None);
        assert_eq!(usage("-1"), None);
        assert_eq!(usage("inf"), None);
        assert_eq!(KeyScope::parse("global:  "), None);
        assert_eq!(KeyScope::parse("app: "), None);
        assert_eq!(KeyScope::parse("global:x"), Some(KeyScope::Global { name: "x".into() }));
        let key = KeyScope::Mall.key(&crate::MallId::parse("shop1").unwrap());
        assert_eq!(key.to_string(), "shop1");
    }

    /// `Feedback::is_informative`: `true` and `false` both survived.
    #[test]
    fn feedback_is_informative_when_any_header_or_a_429_said_something() {
        assert!(!Feedback::default().is_informative());
        let each = [
            Feedback { rate_limited: true, ..Default::default() },
            Feedback { call_limit: Some((1, 40)), ..Default::default() },
            Feedback { call_usage_pct: Some(1.0), ..Default::default() },
            Feedback { time_usage_pct: Some(1.0), ..Default::default() },
            Feedback { call_remain_s: Some(1), ..Default::default() },
            Feedback { time_remain_s: Some(1), ..Default::default() },
        ];
        for f in each {
            assert!(f.is_informative(), "{f:?}");
        }
    }
    use crate::MallId;

    fn cfg(rate: f64, burst: u32, spacing: u64) -> LimiterConfig {
        LimiterConfig {
            rate_per_sec: rate,
            burst,
            rate_margin: 0.0,
            burst_margin: 0,
            min_spacing_ms: spacing,
            interactive_reserve: 0,
            ..LimiterConfig::default()
        }
    }

    /// Feeds arrivals (absolute ms, non-decreasing) through `decide`; returns admitted times.
    fn run(c: &LimiterConfig, start: LimiterState, arrivals: &[u64], class: Class) -> (Vec<u64>, LimiterState) {
        let mut s = start;
        let mut admitted = Vec::new();
        for &t in arrivals {
            if let Decision::Admit(next) = c.decide(&s, t, class) {
                s = next;
                admitted.push(t);
            }
        }
        (admitted, s)
    }

    fn arrivals(gaps: &[u64]) -> Vec<u64> {
        let mut t = 1_000_000u64;
        gaps.iter()
            .map(|g| {
                t += g;
                t
            })
            .collect()
    }

    #[test]
    fn defaults_are_cafe24s_limits_with_margins() {
        let c = LimiterConfig::default();
        assert!(c.validate().is_ok());
        assert_eq!(c.interval_ms(), 511, "2/s less 2% → one call per 511 ms");
        assert_eq!(c.effective_burst(), 38);
        assert_eq!(c.reserved_for_live(), 10);
        assert_eq!(c.reserved_for_interactive(), 3);
        assert!(1000 / c.min_spacing_ms < 10, "spacing keeps a mall under 10 calls/s");
    }

    #[test]
    fn invalid_settings_are_refused() {
        for (c, field) in [
            (LimiterConfig { rate_per_sec: 0.0, ..Default::default() }, "rate_per_sec"),
            (LimiterConfig { rate_per_sec: f64::NAN, ..Default::default() }, "rate_per_sec"),
            (LimiterConfig { burst: 0, ..Default::default() }, "burst"),
            (LimiterConfig { rate_margin: 1.0, ..Default::default() }, "rate_margin"),
            (LimiterConfig { burst_margin: 40, ..Default::default() }, "burst_margin"),
            (LimiterConfig { bulk_reserve: -0.1, ..Default::default() }, "bulk_reserve"),
        ] {
            assert_eq!(c.validate().map_err(|e| e.field), Err(field));
        }
    }

    #[test]
    fn a_full_burst_then_one_per_interval() {
        let c = cfg(2.0, 40, 0);
        let (admitted, _) = run(&c, LimiterState::default(), &vec![5_000; 100], Class::Live);
        assert_eq!(admitted.len(), 40);
        let times: Vec<u64> = (0..200).map(|i| 5_000 + i * 100).collect();
        let (admitted, _) = run(&c, LimiterState::default(), &times, Class::Live);
        // 40 at once, then one per 500 ms over 19.9 s: 40 + 39 (the first 40 fill ~4 s of credit).
        assert!(admitted.len() >= 40 + 39 - 1 && admitted.len() <= 40 + 40, "{}", admitted.len());
    }

    #[test]
    fn a_person_is_answered_at_once_after_live_work_took_all_it_may() {
        let c = LimiterConfig { interactive_reserve: 3, ..cfg(2.0, 40, 0) };
        let (live, s) = run(&c, LimiterState::default(), &vec![5_000; 100], Class::Live);
        assert_eq!(live.len(), 37, "live stops 3 short of the burst");
        let (people, s) = run(&c, s, &[5_000; 10], Class::Interactive);
        assert_eq!(people.len(), 3, "the reserve, at once");
        assert!(matches!(c.decide(&s, 5_000, Class::Interactive), Decision::Wait(_)), "and no more than the burst");
        let (bulk, _) = run(&c, LimiterState::default(), &vec![5_000; 100], Class::Bulk);
        assert_eq!(bulk.len(), 37 - 10, "bulk leaves both reserves");
    }

    #[test]
    fn min_spacing_holds_even_with_burst_credit() {
        let c = cfg(2.0, 40, 125);
        let times: Vec<u64> = (0..100).map(|i| 10_000 + i * 10).collect();
        let (admitted, _) = run(&c, LimiterState::default(), &times, Class::Live);
        assert!(admitted.windows(2).all(|w| w[1] - w[0] >= 125));
        assert_eq!(admitted.len(), 8, "990 ms at ≥125 ms apart");
    }

    #[test]
    fn real_header_values_parse() {
        let f = Feedback::from_headers(
            200,
            [
                ("X-Api-Call-Limit", "1/40"),
                ("X-Cafe24-Call-Usage", "120.04"),
                ("X-Cafe24-Time-Usage", "100.5"),
                ("X-Cafe24-Call-Remain", "32"),
                ("x-cafe24-time-remain", "7"),
            ],
        );
        assert_eq!(f.call_limit, Some((1, 40)));
        assert_eq!(f.call_usage_pct, Some(120.04));
        assert_eq!(f.time_usage_pct, Some(100.5));
        assert_eq!((f.call_remain_s, f.time_remain_s), (Some(32), Some(7)));
        assert!(!f.rate_limited);
    }

    #[test]
    fn garbage_headers_are_ignored() {
        for v in ["", "abc", "-1/40", "5/0", "5/-40", "1/40/2", "NaN", "inf", "-3", "99999999999999999999/40", "41/"] {
            let f = Feedback::from_headers(
                200,
                [("x-api-call-limit", v), ("x-cafe24-call-usage", v), ("x-cafe24-call-remain", v)],
            );
            assert_eq!(f.call_limit, None, "{v}");
            assert!(f.call_usage_pct.is_none() || v.parse::<f64>().is_ok(), "{v}");
            assert!(f.call_remain_s.is_none() || v.parse::<f64>().is_ok_and(|x| x >= 0.0), "{v}");
        }
    }

    #[test]
    fn server_fuller_than_us_moves_the_limiter() {
        // The feedback arithmetic on the whole effective burst (no interactive share).
        let c = LimiterConfig { min_spacing_ms: 0, interactive_reserve: 0, ..LimiterConfig::default() };
        let s = LimiterState::default();
        // Another app filled the mall's bucket to 39/40 (more than 38 calls): we must wait an
        // interval before a single call; at 38/40 (more than 37) one call of our 38 is left.
        let fb = Feedback::from_headers(200, [("X-Api-Call-Limit", "39/40")]);
        let s2 = c.apply_feedback(&s, &fb, 10_000);
        assert_eq!(c.decide(&s2, 10_000, Class::Live), Decision::Wait(c.interval_ms()));
        let fb = Feedback::from_headers(200, [("X-Api-Call-Limit", "38/40")]);
        let s2 = c.apply_feedback(&s, &fb, 10_000);
        let Decision::Admit(s3) = c.decide(&s2, 10_000, Class::Live) else { panic!("one call is left") };
        assert!(matches!(c.decide(&s3, 10_000 + c.min_spacing_ms, Class::Live), Decision::Wait(_)));
        // A 429 with the bucket full.
        let fb = Feedback::from_headers(429, [("X-Api-Call-Limit", "40/40")]);
        let s3 = c.apply_feedback(&s, &fb, 10_000);
        let Decision::Wait(d) = c.decide(&s3, 10_000, Class::Live) else { panic!() };
        assert_eq!(d, 3 * c.interval_ms(), "40 used vs 38 usable: 3 intervals until one fits");
        // A usage block with Remain.
        let fb = Feedback::from_headers(200, [("X-Cafe24-Call-Usage", "100.2"), ("X-Cafe24-Call-Remain", "32")]);
        let s4 = c.apply_feedback(&s, &fb, 10_000);
        assert_eq!(s4.not_before_ms, 10_000 + 32_000 + c.remain_slack_ms);
        // Near 100% without a block: slow down.
        let fb = Feedback::from_headers(200, [("X-Cafe24-Call-Usage", "95")]);
        assert_eq!(c.apply_feedback(&s, &fb, 10_000).not_before_ms, 10_000 + c.usage_soft_pause_ms);
        // A bare 429.
        let s5 = c.apply_feedback(&s, &Feedback::from_headers(429, []), 10_000);
        assert_eq!(s5.not_before_ms, 10_000 + c.rate_limited_default_ms);
    }

    #[test]
    fn a_header_that_only_rounds_our_own_count_up_moves_nothing() {
        let c = LimiterConfig::default();
        let t = c.interval_ms();
        // A call admitted at the exact moment its credit was there: our bucket holds 38.
        let at = 100_000;
        let s = LimiterState { tat_ms: at + 38 * t, not_before_ms: 0, last_ms: at };
        // Cafe24 answers 20 ms later with its level rounded up to a whole call. 38/40 is what
        // we hold: nothing moves (no write). 39/40 proves only more than 38: the state moves by
        // the 20 ms, not by an interval.
        let fb = Feedback::from_headers(200, [("X-Api-Call-Limit", "38/40")]);
        assert_eq!(c.apply_feedback(&s, &fb, at + 20), s);
        let fb = Feedback::from_headers(200, [("X-Api-Call-Limit", "39/40")]);
        assert_eq!(c.apply_feedback(&s, &fb, at + 20).tat_ms, s.tat_ms + 20);
        // 40/40 proves more than 39: a whole interval later.
        let fb = Feedback::from_headers(200, [("X-Api-Call-Limit", "40/40")]);
        assert_eq!(c.apply_feedback(&s, &fb, at + 20).tat_ms, at + 20 + 39 * t);
    }

    #[test]
    fn rate_limit_key_is_derived_in_one_place() {
        let m = MallId::parse("shop1").unwrap();
        assert_eq!(KeyScope::Mall.key(&m).as_str(), "shop1");
        assert_eq!(KeyScope::parse("app:abc").unwrap().key(&m).as_str(), "abc.shop1");
        assert_eq!(KeyScope::parse("global:shared cred").unwrap().key(&m).as_str(), "sharedcred");
        assert_eq!(KeyScope::parse("global:!!!").unwrap().key(&m).as_str(), "global");
        assert_eq!(KeyScope::parse("mall"), Some(KeyScope::Mall));
        let k = KeyScope::parse("app:abc").unwrap().key(&m);
        assert_eq!((k.group(Class::Live).as_str(), k.group(Class::Bulk).as_str()), ("abc.shop1", "abc.shop1.bulk"));
        assert!(crate::values::GroupId::for_key("").is_none() && crate::values::GroupId::for_key("a b").is_none());
        for bad in ["", "app:", "global", "shop", "app:  "] {
            assert_eq!(KeyScope::parse(bad), None, "{bad}");
        }
    }

    proptest! {
        /// Whatever the scope and mall, both groups of the key are valid SQS group ids (a
        /// 64-character mall under a long client id once made a 130-character bulk group).
        #[test]
        fn every_key_and_its_bulk_group_are_valid_group_ids(client in "[ -~]{1,200}", mall in "[a-z0-9]{1,64}") {
            let m = MallId::parse(&mall).unwrap();
            for scope in [KeyScope::Mall, KeyScope::AppAndMall { client_id: client.clone() }, KeyScope::Global { name: client.clone() }] {
                let key = scope.key(&m);
                for class in [Class::Live, Class::Bulk] {
                    let g = key.group(class);
                    prop_assert_eq!(crate::values::GroupId::for_key(g.as_str()), Some(g.clone()), "{:?}", scope);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn admissions_in_any_window_never_exceed_burst_plus_rate(
            rate in 0.5f64..50.0, burst in 1u32..50, spacing in 0u64..200,
            gaps in proptest::collection::vec(0u64..1500, 1..300),
        ) {
            let c = cfg(rate, burst, spacing);
            let t = c.interval_ms();
            let (admitted, _) = run(&c, LimiterState::default(), &arrivals(&gaps), Class::Live);
            for i in 0..admitted.len() {
                for j in i..admitted.len() {
                    let n = (j - i + 1) as u64;
                    let window = admitted[j] - admitted[i];
                    prop_assert!(n <= c.effective_burst() + window / t, "{n} calls in {window} ms (T={t}, burst={})", c.effective_burst());
                }
            }
        }

        /// Calls to an endpoint with its own smaller limit, mixed with the mall's other calls:
        /// however they interleave, the capped calls never find more than the cap in the bucket
        /// (the level as GCRA counts it), and the others are held to the whole burst as before.
        #[test]
        fn a_capped_endpoint_never_meets_a_fuller_bucket_than_its_cap(
            cap in 1u32..40, margin in 0u32..3, gaps in proptest::collection::vec((0u64..800, any::<bool>()), 1..300),
        ) {
            let c = LimiterConfig { burst_margin: margin, min_spacing_ms: 0, ..LimiterConfig::default() };
            let t = c.interval_ms();
            let mut s = LimiterState::default();
            let mut now = 1_000_000u64;
            let mut all = Vec::new();
            for (gap, capped) in gaps {
                now += gap;
                let limit = if capped { Some(cap) } else { None };
                if let Decision::Admit(next) = c.decide_within(&s, now, Class::Live, limit) {
                    if capped {
                        // Calls in the bucket before this one, as GCRA counts them (rounded up).
                        let level = s.tat_ms.saturating_sub(now).div_ceil(t);
                        prop_assert!(level < u64::from(cap.saturating_sub(margin).max(1)), "level {level} with cap {cap}");
                    }
                    s = next;
                    all.push(now);
                }
            }
            for i in 0..all.len() {
                for j in i..all.len() {
                    let n = (j - i + 1) as u64;
                    prop_assert!(n <= c.effective_burst() + (all[j] - all[i]) / t);
                }
            }
        }

        #[test]
        fn nothing_is_admitted_before_not_before_or_closer_than_the_spacing(
            nb_offset in 0u64..20_000, spacing in 0u64..500, gaps in proptest::collection::vec(0u64..700, 1..200),
        ) {
            let c = cfg(5.0, 10, spacing);
            let start = LimiterState { not_before_ms: 1_000_000 + nb_offset, ..LimiterState::default() };
            let (admitted, _) = run(&c, start, &arrivals(&gaps), Class::Live);
            prop_assert!(admitted.iter().all(|t| *t >= start.not_before_ms));
            prop_assert!(admitted.windows(2).all(|w| w[1] - w[0] >= spacing));
        }

        #[test]
        fn a_wait_answer_is_exact(
            tat in 0u64..100_000, nb in 0u64..100_000, last in 0u64..100_000, now in 0u64..100_000,
            bulk in any::<bool>(), spacing in 0u64..300,
        ) {
            let c = LimiterConfig { min_spacing_ms: spacing, ..LimiterConfig::default() };
            let class = if bulk { Class::Bulk } else { Class::Live };
            let s = LimiterState { tat_ms: tat, not_before_ms: nb, last_ms: last };
            if let Decision::Wait(d) = c.decide(&s, now, class) {
                prop_assert!(d > 0);
                prop_assert!(matches!(c.decide(&s, now + d, class), Decision::Admit(_)), "not admitted after the announced wait");
                prop_assert!(matches!(c.decide(&s, now + d - 1, class), Decision::Wait(1)), "admitted earlier than announced");
            }
        }

        #[test]
        fn bulk_never_takes_the_live_reserve(
            burst in 2u32..60, reserve in 0.05f64..0.9, gaps in proptest::collection::vec(0u64..400, 1..200),
        ) {
            let c = LimiterConfig { bulk_reserve: reserve, ..cfg(2.0, burst, 0) };
            let mut s = LimiterState::default();
            for t in arrivals(&gaps) {
                if let Decision::Admit(next) = c.decide(&s, t, Class::Bulk) {
                    s = next;
                    // Right after any bulk admission, the reserved live calls still fit at once.
                    let mut live = s;
                    for k in 0..c.reserved_for_live() {
                        match c.decide(&live, t, Class::Live) {
                            Decision::Admit(n) => live = n,
                            Decision::Wait(_) => prop_assert!(false, "live call {k} of the reserve refused"),
                        }
                    }
                }
            }
        }

        #[test]
        fn live_and_bulk_never_take_the_interactive_reserve(
            burst in 5u32..60, reserve in 1u32..4, gaps in proptest::collection::vec(0u64..400, 1..200),
            bulk in proptest::bool::ANY,
        ) {
            let c = LimiterConfig { interactive_reserve: reserve, ..cfg(2.0, burst, 0) };
            let class = if bulk { Class::Bulk } else { Class::Live };
            let mut s = LimiterState::default();
            for t in arrivals(&gaps) {
                if let Decision::Admit(next) = c.decide(&s, t, class) {
                    s = next;
                    let mut person = s;
                    for k in 0..c.reserved_for_interactive() {
                        match c.decide(&person, t, Class::Interactive) {
                            Decision::Admit(n) => person = n,
                            Decision::Wait(_) => prop_assert!(false, "interactive call {k} of the reserve refused"),
                        }
                    }
                }
            }
        }

        #[test]
        fn feedback_never_panics_and_never_loosens(
            tat in 0u64..u64::MAX / 4, nb in 0u64..u64::MAX / 4, last in 0u64..u64::MAX / 4, now in 0u64..u64::MAX / 4,
            status in 100u16..600, values in proptest::collection::vec(".{0,12}", 5),
        ) {
            let c = LimiterConfig::default();
            let s = LimiterState { tat_ms: tat, not_before_ms: nb, last_ms: last };
            let names = ["X-Api-Call-Limit", "X-Cafe24-Call-Usage", "X-Cafe24-Time-Usage", "X-Cafe24-Call-Remain", "X-Cafe24-Time-Remain"];
            let fb = Feedback::from_headers(status, names.iter().copied().zip(values.iter().map(String::as_str)));
            let s2 = c.apply_feedback(&s, &fb, now);
            prop_assert!(s2.tat_ms >= s.tat_ms && s2.not_before_ms >= s.not_before_ms && s2.last_ms == s.last_ms);
        }

        #[test]
        fn numeric_feedback_never_loosens(used in 0u32..100, cap in 1u32..100, usage in 0.0f64..300.0, remain in 0u64..5000, now in 0u64..1u64 << 40) {
            let c = LimiterConfig::default();
            let s = LimiterState { tat_ms: now / 2, not_before_ms: now / 3, last_ms: 0 };
            let (u, cp, us, r) = (format!("{used}/{cap}"), format!("{usage:.2}"), cap.to_string(), remain.to_string());
            let fb = Feedback::from_headers(429, [("x-api-call-limit", u.as_str()), ("x-cafe24-call-usage", cp.as_str()), ("x-cafe24-time-usage", us.as_str()), ("x-cafe24-call-remain", r.as_str())]);
            let s2 = c.apply_feedback(&s, &fb, now);
            prop_assert!(s2.tat_ms >= s.tat_ms && s2.not_before_ms >= s.not_before_ms);
            prop_assert!(matches!(c.decide(&s2, now, Class::Live), Decision::Wait(_)), "a 429 always makes the next call wait");
        }
    }
}
