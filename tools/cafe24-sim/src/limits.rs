//! Cafe24's two rate-limit policies, per rate-limit key (a mall, or a mall and an app):
//! the leaky bucket behind `X-Api-Call-Limit` and the 10-minute usage quota behind
//! `X-Cafe24-Call-Usage`/`X-Cafe24-Time-Usage`, plus the "≥ 10 calls/s is abnormal" detector.

use std::collections::VecDeque;

/// A leaky bucket: every call adds 1, it drains continuously at `leak_per_sec`, a call that
/// finds it unable to hold one more is refused.
#[derive(Clone, Debug)]
pub struct LeakyBucket {
    level: f64,
    last_ms: u64,
    /// Capacity (Cafe24: 40).
    pub capacity: u32,
    /// Drain rate (Cafe24: 2 calls/s).
    pub leak_per_sec: f64,
}

impl LeakyBucket {
    /// An empty bucket.
    pub fn new(capacity: u32, leak_per_sec: f64, now_ms: u64) -> Self {
        Self { level: 0.0, last_ms: now_ms, capacity, leak_per_sec }
    }

    fn drain(&mut self, now_ms: u64) {
        if now_ms > self.last_ms {
            let dt = (now_ms - self.last_ms) as f64 / 1000.0;
            self.level = (self.level - dt * self.leak_per_sec).max(0.0);
            self.last_ms = now_ms;
        }
    }

    /// Level now (fractional).
    pub fn level(&mut self, now_ms: u64) -> f64 {
        self.drain(now_ms);
        self.level
    }

    /// Tries to add one call. `Ok(level)` after adding, or `Err(level)` when full.
    pub fn try_add(&mut self, now_ms: u64) -> Result<f64, f64> {
        self.drain(now_ms);
        // A tiny epsilon keeps float drift from refusing a call the arithmetic admits.
        if self.level + 1.0 <= f64::from(self.capacity) + 1e-9 {
            self.level += 1.0;
            Ok(self.level)
        } else {
            Err(self.level)
        }
    }

    /// The `X-Api-Call-Limit` value: `used/capacity`, `used` rounded up to a whole call.
    pub fn header(&mut self, now_ms: u64) -> String {
        let used = self.level(now_ms).ceil().min(f64::from(self.capacity)) as u32;
        format!("{used}/{}", self.capacity)
    }
}

/// Usage quota over fixed windows: calls and processing time. At ≥ 100% of either the client is
/// blocked; a call during the block raises usage further and lengthens the block.
#[derive(Clone, Debug)]
pub struct UsageQuota {
    window_ms: u64,
    window_start: u64,
    calls: u64,
    time_ms: u64,
    /// Call quota per window (Cafe24, reportedly: 3,000).
    pub call_quota: u64,
    /// Processing-time quota per window, ms (reportedly: 600 s).
    pub time_quota_ms: u64,
    /// How much each call made during a block lengthens it, ms.
    pub block_extension_ms: u64,
    call_block_until: u64,
    time_block_until: u64,
}

/// Usage figures to report in headers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Usage {
    /// % of the call quota used.
    pub call_pct: f64,
    /// % of the time quota used.
    pub time_pct: f64,
    /// Seconds until calls resume, when blocked on calls.
    pub call_remain_s: Option<u64>,
    /// Seconds until the time quota resumes, when blocked on time.
    pub time_remain_s: Option<u64>,
}

impl Usage {
    /// True while either block holds.
    pub fn blocked(&self) -> bool {
        self.call_remain_s.is_some() || self.time_remain_s.is_some()
    }
}

impl UsageQuota {
    /// A quota with fresh counters.
    pub fn new(window_ms: u64, call_quota: u64, time_quota_ms: u64, block_extension_ms: u64, now_ms: u64) -> Self {
        let window_ms = window_ms.max(1);
        Self {
            window_ms,
            window_start: now_ms - now_ms % window_ms,
            calls: 0,
            time_ms: 0,
            call_quota: call_quota.max(1),
            time_quota_ms: time_quota_ms.max(1),
            block_extension_ms,
            call_block_until: 0,
            time_block_until: 0,
        }
    }

    fn roll(&mut self, now_ms: u64) {
        let start = now_ms - now_ms % self.window_ms;
        if start > self.window_start {
            self.window_start = start;
            self.calls = 0;
            self.time_ms = 0;
        }
    }

    /// Current figures.
    pub fn usage(&mut self, now_ms: u64) -> Usage {
        self.roll(now_ms);
        let remain = |until: u64| (until > now_ms).then(|| (until - now_ms).div_ceil(1000));
        Usage {
            call_pct: self.calls as f64 * 100.0 / self.call_quota as f64,
            time_pct: self.time_ms as f64 * 100.0 / self.time_quota_ms as f64,
            call_remain_s: remain(self.call_block_until),
            time_remain_s: remain(self.time_block_until),
        }
    }

    /// Accounts one call that costs `processing_ms`. Returns the figures after it and whether
    /// the call was refused because a block was in force (such a call still counts, and lengthens
    /// the block, as Cafe24 documents).
    pub fn record(&mut self, now_ms: u64, processing_ms: u64) -> (Usage, bool) {
        self.roll(now_ms);
        let was_blocked = self.call_block_until > now_ms || self.time_block_until > now_ms;
        self.calls += 1;
        self.time_ms += processing_ms;
        if was_blocked {
            if self.call_block_until > now_ms {
                self.call_block_until += self.block_extension_ms;
            }
            if self.time_block_until > now_ms {
                self.time_block_until += self.block_extension_ms;
            }
        }
        let window_end = self.window_start + self.window_ms;
        if self.calls >= self.call_quota && self.call_block_until <= now_ms {
            self.call_block_until = window_end;
        }
        if self.time_ms >= self.time_quota_ms && self.time_block_until <= now_ms {
            self.time_block_until = window_end;
        }
        (self.usage(now_ms), was_blocked)
    }
}

/// Sliding one-second window of call arrivals: the maximum seen, and "abnormal" episodes
/// (a run of windows with ≥ `threshold` calls counts once).
#[derive(Clone, Debug, Default)]
pub struct RateWindow {
    arrivals: VecDeque<u64>,
    in_episode: bool,
    /// Most calls seen in any 1 s window.
    pub max_in_1s: u32,
    /// Abnormal episodes detected.
    pub detections: u32,
}

impl RateWindow {
    /// Records an arrival; returns the count in the last second including it.
    pub fn record(&mut self, now_ms: u64, threshold: u32) -> u32 {
        self.arrivals.push_back(now_ms);
        while self.arrivals.front().is_some_and(|t| *t + 1000 <= now_ms) {
            self.arrivals.pop_front();
        }
        let n = self.arrivals.len() as u32;
        self.max_in_1s = self.max_in_1s.max(n);
        if n >= threshold {
            if !self.in_episode {
                self.detections += 1;
                self.in_episode = true;
            }
        } else {
            self.in_episode = false;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_takes_forty_then_refuses_and_drains_two_per_second() {
        let mut b = LeakyBucket::new(40, 2.0, 0);
        for i in 1..=40 {
            assert_eq!(b.try_add(0), Ok(f64::from(i)));
        }
        assert_eq!(b.header(0), "40/40");
        assert!(b.try_add(0).is_err());
        assert!(b.try_add(499).is_err(), "0.998 drained: still no room");
        assert!(b.try_add(500).is_ok(), "one call drained after 0.5 s");
        assert_eq!(b.header(500), "40/40");
        assert_eq!(b.header(10_500), "20/40");
        assert_eq!(b.header(60_000), "0/40");
    }

    #[test]
    fn usage_blocks_at_quota_and_calls_during_the_block_lengthen_it() {
        let mut q = UsageQuota::new(600_000, 10, 1_000_000, 5_000, 0);
        for _ in 0..9 {
            assert!(!q.record(1_000, 1).0.blocked());
        }
        let (u, refused) = q.record(1_000, 1);
        assert!(!refused);
        assert_eq!(u.call_pct, 100.0);
        assert_eq!(u.call_remain_s, Some(599), "blocked until the window ends");
        let (u, refused) = q.record(2_000, 1);
        assert!(refused);
        assert!(u.call_pct > 100.0, "usage rises during the block");
        assert_eq!(u.call_remain_s, Some(603), "598 s left + 5 s extension");
        // A new window resets counters but the (lengthened) block still holds until it ends.
        let u = q.usage(600_000);
        assert_eq!(u.call_pct, 0.0);
        assert_eq!(u.call_remain_s, Some(5));
        assert!(!q.usage(605_000).blocked());
    }

    #[test]
    fn rate_window_counts_max_and_episodes() {
        let mut w = RateWindow::default();
        for i in 0..12 {
            w.record(i * 50, 10);
        }
        assert_eq!(w.max_in_1s, 12);
        assert_eq!(w.detections, 1);
        w.record(5_000, 10);
        for i in 0..10 {
            w.record(6_000 + i, 10);
        }
        assert_eq!(w.detections, 2);
    }
}
