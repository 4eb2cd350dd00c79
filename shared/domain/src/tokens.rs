//! Cafe24 OAuth tokens as the project stores them, and the pure rules around them.
//!
//! Token values are [`Secret`]s: no `Display`, no `Serialize`, a redacted `Debug`; the only way
//! to the text is [`Secret::expose`], which the HTTP client and the token store call — nothing
//! that logs does.

use std::fmt;
use std::future::Future;

use crate::ids::MallId;
use crate::values::StoreError;

/// A secret string (token, client secret). Redacted in `Debug`; no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(v: impl Into<String>) -> Self {
        Self(v.into())
    }

    /// The value, for the one place that must send or store it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A mall's authorization state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenStatus {
    /// Tokens usable.
    Active,
    /// The refresh token was refused (`invalid_grant`) or expired: the merchant must
    /// re-authorize in a browser. No refresh is attempted until then.
    NeedsReauth,
    /// The app was deleted from the mall (90077 or 403 app deleted).
    Uninstalled,
}

impl TokenStatus {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::NeedsReauth => "needs_reauth",
            Self::Uninstalled => "uninstalled",
        }
    }

    /// From the stored name (unknown → `NeedsReauth`, the state that stops work safely).
    pub fn parse(s: &str) -> Self {
        match s {
            "active" => Self::Active,
            "uninstalled" => Self::Uninstalled,
            _ => Self::NeedsReauth,
        }
    }
}

/// A token pair as issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenPair {
    /// Access token.
    pub access_token: Secret,
    /// Access token expiry, epoch ms.
    pub access_expires_ms: u64,
    /// Refresh token.
    pub refresh_token: Secret,
    /// Refresh token expiry, epoch ms.
    pub refresh_expires_ms: u64,
    /// Granted scopes.
    pub scopes: Vec<String>,
}

/// Lifetime of a Cafe24 access token (2 hours).
pub const ACCESS_TTL_MS: u64 = 2 * 3_600_000;
/// Lifetime of a Cafe24 refresh token (14 days).
pub const REFRESH_TTL_MS: u64 = 14 * 86_400_000;

impl TokenPair {
    /// A pair Cafe24 issued at `now_ms`, with its standard lifetimes.
    pub fn issued(access: String, refresh: String, scopes: Vec<String>, now_ms: u64) -> Self {
        Self {
            access_token: Secret::new(access),
            access_expires_ms: now_ms + ACCESS_TTL_MS,
            refresh_token: Secret::new(refresh),
            refresh_expires_ms: now_ms + REFRESH_TTL_MS,
            scopes,
        }
    }
}

/// One mall's stored token record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    /// Mall.
    pub mall_id: MallId,
    /// The current pair.
    pub pair: TokenPair,
    /// Status.
    pub status: TokenStatus,
    /// Bumped by every write (optimistic concurrency).
    pub version: u64,
    /// A refresh lease is held until this instant (0 = none).
    pub lease_until_ms: u64,
    /// Who holds the lease.
    pub lease_owner: String,
    /// Last change, epoch ms.
    pub updated_ms: u64,
}

impl TokenRecord {
    /// The access token is good for at least `margin_ms` more.
    pub fn access_fresh(&self, now_ms: u64, margin_ms: u64) -> bool {
        self.pair.access_expires_ms > now_ms.saturating_add(margin_ms)
    }

    /// The access token still works right now (perhaps inside the refresh margin).
    pub fn access_usable(&self, now_ms: u64) -> bool {
        self.pair.access_expires_ms > now_ms.saturating_add(1_000)
    }

    /// Someone holds a refresh lease.
    pub fn leased(&self, now_ms: u64) -> bool {
        self.lease_until_ms > now_ms
    }
}

/// Result of trying to take the refresh lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// Taken; the record as it is now (with the lease and the new version).
    Acquired(TokenRecord),
    /// Not taken: the record changed or is leased; here is how it is now (if it exists).
    Lost(Option<TokenRecord>),
}

/// Where tokens live (DynamoDB in `relay-aws`).
pub trait TokenStore: Send + Sync {
    /// The mall's record (strongly consistent).
    fn get(&self, mall: &MallId) -> impl Future<Output = Result<Option<TokenRecord>, StoreError>> + Send;
    /// Stores a freshly installed pair (code exchange): status active, version bumped, no lease.
    fn put_installed(
        &self,
        mall: &MallId,
        pair: &TokenPair,
        now_ms: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Takes the refresh lease iff the record still has `seen_version` and no live lease.
    fn try_lease(
        &self,
        mall: &MallId,
        seen_version: u64,
        owner: &str,
        now_ms: u64,
        until_ms: u64,
    ) -> impl Future<Output = Result<LeaseOutcome, StoreError>> + Send;
    /// Stores the refreshed pair iff `owner` still holds the lease at `lease_version`; releases it.
    /// `Ok(false)` = the lease was lost (someone else took over): the pair must not be used.
    fn complete_refresh(
        &self,
        mall: &MallId,
        owner: &str,
        lease_version: u64,
        pair: &TokenPair,
        now_ms: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Sets the status (e.g. `NeedsReauth` after `invalid_grant`), keeping the tokens.
    fn set_status(
        &self,
        mall: &MallId,
        status: TokenStatus,
        now_ms: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The app was deleted from the mall at `deleted_at_ms`: status `uninstalled`, token values
    /// removed — unless the mall's current installation is newer (the merchant reinstalled
    /// before this uninstall was delivered: a retry, the inbox backoff, reconciliation's
    /// look-back). `Ok(false)`: a newer installation was kept. Repeating an applied uninstall
    /// applies it again (nothing changes): safe to retry. An adapter whose processes cache
    /// tokens also tells them (`RateGate::closed_since`) before reporting `Ok(true)`.
    fn mark_uninstalled(
        &self,
        mall: &MallId,
        deleted_at_ms: u64,
        now_ms: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Malls (active) whose refresh token expires before `before_ms`.
    fn expiring_before(&self, before_ms: u64) -> impl Future<Output = Result<Vec<MallId>, StoreError>> + Send;
    /// Malls needing re-authorization (for reports).
    fn needing_reauth(&self) -> impl Future<Output = Result<Vec<MallId>, StoreError>> + Send;
    /// Notes a reconcile run of the mall at `at_ms`, and whether the mall is `busy` (deliveries
    /// in the last hour, failed deliveries, reception off): busy malls are reconciled every
    /// period, quiet ones less often ([`TokenStore::due_for_reconcile`]).
    fn note_reconciled(
        &self,
        mall: &MallId,
        at_ms: u64,
        busy: bool,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Active malls due for reconciliation: never reconciled, busy at their last run, or last
    /// reconciled before `quiet_before_ms` — so every mall is checked at least that often.
    fn due_for_reconcile(&self, quiet_before_ms: u64) -> impl Future<Output = Result<Vec<MallId>, StoreError>> + Send;
}

/// Parses Cafe24's OAuth timestamps (`2021-03-01T15:50:00.000`, no offset) as KST (UTC+9).
/// Also accepts an explicit offset or `Z`, and no fraction. `None` for anything else.
pub fn parse_cafe24_token_time(s: &str) -> Option<u64> {
    let s = s.trim();
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.is_empty() || !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    if b.len() < 19
        || b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        return None;
    }
    if !matches!(b.get(10), Some(b'T') | Some(b' ')) {
        return None;
    }
    let (y, mo, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (h, mi, sec) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = s.get(19..)?;
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        let f = frac.get(..n)?;
        millis = f.get(..n.min(3))?.parse::<i64>().ok()? * 10i64.pow(3 - n.min(3) as u32);
        rest = frac.get(n..)?;
    }
    let offset_ms: i64 = match rest {
        "" => 9 * 3_600_000,
        "Z" => 0,
        tz if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) && tz.get(3..4) == Some(":") => {
            let oh: i64 = tz.get(1..3)?.parse().ok()?;
            let om: i64 = tz.get(4..6)?.parse().ok()?;
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            sign * (oh * 3_600_000 + om * 60_000)
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant).
    let (yy, mm) = if mo <= 2 { (y - 1, mo + 9) } else { (y, mo - 3) };
    let era = yy.div_euclid(400);
    let yoe = yy.rem_euclid(400);
    let doy = (153 * mm + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let ms = days * 86_400_000 + h * 3_600_000 + mi * 60_000 + sec * 1000 + millis - offset_ms;
    u64::try_from(ms).ok()
}

/// Builds a pair from Cafe24's token response; `expires_at` values have no offset: KST.
pub fn pair_from_response(body: &serde_json::Value, now_ms: u64) -> Option<TokenPair> {
    let s = |k: &str| body.get(k).and_then(serde_json::Value::as_str);
    let access = s("access_token").filter(|v| !v.is_empty())?;
    let refresh = s("refresh_token").filter(|v| !v.is_empty())?;
    // Unparseable expiry: assume the documented lifetimes, a little short.
    let access_exp = s("expires_at").and_then(parse_cafe24_token_time).unwrap_or(now_ms + ACCESS_TTL_MS - 300_000);
    let refresh_exp =
        s("refresh_token_expires_at").and_then(parse_cafe24_token_time).unwrap_or(now_ms + REFRESH_TTL_MS - 86_400_000);
    let scopes = body
        .get("scopes")
        .and_then(serde_json::Value::as_array)
        .map(|a| a.iter().filter_map(serde_json::Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    Some(TokenPair {
        access_token: Secret::new(access),
        access_expires_ms: access_exp,
        refresh_token: Secret::new(refresh),
        refresh_expires_ms: refresh_exp,
        scopes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cafe24_times_are_read_as_kst() {
        // 2021-03-01T15:50:00 KST = 06:50:00 UTC = 1614581400000
        assert_eq!(parse_cafe24_token_time("2021-03-01T15:50:00.000"), Some(1_614_581_400_000));
        assert_eq!(parse_cafe24_token_time("2021-03-01T15:50:00"), Some(1_614_581_400_000));
        assert_eq!(parse_cafe24_token_time("2021-03-01T06:50:00Z"), Some(1_614_581_400_000));
        assert_eq!(parse_cafe24_token_time("2021-03-01T15:50:00+09:00"), Some(1_614_581_400_000));
        assert_eq!(parse_cafe24_token_time("2021-03-01T15:50:00.5"), Some(1_614_581_400_500));
    }

    #[test]
    fn garbage_times_are_none() {
        for s in [
            "",
            "2021-03-01",
            "2021-13-01T00:00:00",
            "2021-03-01T15:50",
            "2021-03-01T15:50:00.",
            "2021-03-01T15:50:00+9",
            "yesterday",
            "2021-03-01X15:50:00",
            "２０２１-03-01T15:50:00",
        ] {
            assert_eq!(parse_cafe24_token_time(s), None, "{s}");
        }
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("21EZes0dGSfN0000000000");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        let pair = TokenPair {
            access_token: s.clone(),
            access_expires_ms: 1,
            refresh_token: Secret::new("xLlhWztQHBik0000000000"),
            refresh_expires_ms: 2,
            scopes: vec![],
        };
        let dbg = format!("{pair:?}");
        assert!(!dbg.contains("21EZes0dGSfN") && !dbg.contains("xLlhWztQHBik"), "{dbg}");
    }
}
