//! The simulator's clock: real time, or a manual clock that tests advance explicitly so 2-hour
//! and 14-day expiries take milliseconds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Epoch milliseconds source.
#[derive(Clone, Debug)]
pub enum Clock {
    /// Wall-clock time.
    Real,
    /// Starts at a given instant and moves only when advanced.
    Manual(Arc<AtomicU64>),
}

impl Clock {
    /// A manual clock starting at `start_ms`.
    pub fn manual(start_ms: u64) -> Self {
        Self::Manual(Arc::new(AtomicU64::new(start_ms)))
    }

    /// Now, in epoch milliseconds.
    pub fn now_ms(&self) -> u64 {
        match self {
            Self::Real => SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
            Self::Manual(t) => t.load(Ordering::SeqCst),
        }
    }

    /// Moves a manual clock forward; returns false (and does nothing) on the real clock.
    pub fn advance(&self, ms: u64) -> bool {
        match self {
            Self::Real => false,
            Self::Manual(t) => {
                t.fetch_add(ms, Ordering::SeqCst);
                true
            }
        }
    }

    /// True for the manual clock.
    pub fn is_manual(&self) -> bool {
        matches!(self, Self::Manual(_))
    }
}
