//! Configuration faults: what Cafe24 refuses for every mall at once (a retired API version, a
//! client secret rotated in the developer center). No job is at fault, so none spends an
//! attempt; the process stops asking Cafe24 for a while after one refusal, so that thousands of
//! malls' jobs make one probe a minute per container, not one call each.
//!
//! The client secret can be re-read (Secrets Manager on AWS): on `invalid_client` the client
//! asks its [`SecretSource`] for the current value, at most once per [`RELOAD_EVERY_MS`], and
//! retries the token request once if it changed — so rotating the secret in Secrets Manager
//! heals warm containers without a redeploy.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use relay_domain::tokens::Secret;

use crate::error::ConfigFault;

/// How long a process stops asking after a configuration fault (then one call probes again), by
/// default (`Cafe24Config::fault_probe_ms`).
pub const PROBE_EVERY_MS: u64 = 60_000;
/// Least time between two reloads of the client secret by one process.
pub const RELOAD_EVERY_MS: u64 = 60_000;

/// Per process: until when each kind of fault holds (epoch ms; 0 = clear).
#[derive(Debug, Default)]
pub struct FaultLatch {
    api_version: AtomicU64,
    client: AtomicU64,
}

impl FaultLatch {
    fn slot(&self, f: ConfigFault) -> &AtomicU64 {
        match f {
            ConfigFault::ApiVersionUnavailable => &self.api_version,
            ConfigFault::ClientRejected => &self.client,
        }
    }

    /// Cafe24 just refused with `f` at `now_ms`: hold it for `for_ms`.
    pub fn raise(&self, f: ConfigFault, now_ms: u64, for_ms: u64) {
        self.slot(f).store(now_ms.saturating_add(for_ms), Ordering::Relaxed);
    }

    /// Whether `f` still holds at `now_ms` (the caller asks nothing of Cafe24 it would refuse).
    pub fn holds(&self, f: ConfigFault, now_ms: u64) -> bool {
        now_ms < self.slot(f).load(Ordering::Relaxed)
    }

    /// Cafe24 accepted what `f` is about: clear it.
    pub fn clear(&self, f: ConfigFault) {
        self.slot(f).store(0, Ordering::Relaxed);
    }
}

/// Reads the current client secret (`None`: could not be read now).
pub type SecretReader = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Option<Secret>> + Send>> + Send + Sync>;

/// The client secret in use, and where to read it again.
pub struct SecretSource {
    current: RwLock<Secret>,
    reader: Option<SecretReader>,
    last_read_ms: AtomicU64,
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretSource").field("rereadable", &self.reader.is_some()).finish_non_exhaustive()
    }
}

impl SecretSource {
    /// A secret read once (no reader: a rotation needs a new process).
    pub fn fixed(secret: Secret) -> Self {
        Self { current: RwLock::new(secret), reader: None, last_read_ms: AtomicU64::new(0) }
    }

    /// Sets where the secret can be read again.
    pub fn with_reader(mut self, reader: SecretReader) -> Self {
        self.reader = Some(reader);
        self
    }

    /// The secret in use.
    pub fn current(&self) -> Secret {
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Reads the secret again if a reader is set and the last read was at least
    /// [`RELOAD_EVERY_MS`] ago; `true` when the value changed (a retry may now succeed).
    pub async fn reload(&self, now_ms: u64) -> bool {
        let Some(reader) = &self.reader else { return false };
        let last = self.last_read_ms.load(Ordering::Relaxed);
        if last != 0 && now_ms < last.saturating_add(RELOAD_EVERY_MS) {
            return false;
        }
        // One reader per period: whoever moves the mark reads.
        if self.last_read_ms.compare_exchange(last, now_ms.max(1), Ordering::AcqRel, Ordering::Relaxed).is_err() {
            return false;
        }
        let Some(fresh) = reader().await else { return false };
        let mut cur = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if cur.expose() == fresh.expose() {
            return false;
        }
        *cur = fresh;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_holds_for_its_period_and_clears() {
        let l = FaultLatch::default();
        assert!(!l.holds(ConfigFault::ApiVersionUnavailable, 1_000));
        l.raise(ConfigFault::ApiVersionUnavailable, 1_000, PROBE_EVERY_MS);
        assert!(l.holds(ConfigFault::ApiVersionUnavailable, 1_000 + PROBE_EVERY_MS - 1));
        assert!(!l.holds(ConfigFault::ApiVersionUnavailable, 1_000 + PROBE_EVERY_MS), "then one call probes");
        assert!(!l.holds(ConfigFault::ClientRejected, 2_000), "each fault apart");
        l.clear(ConfigFault::ApiVersionUnavailable);
        assert!(!l.holds(ConfigFault::ApiVersionUnavailable, 2_000));
    }

    #[tokio::test]
    async fn the_secret_is_reread_at_most_once_a_minute_and_only_a_change_counts() {
        let value = Arc::new(RwLock::new("old".to_owned()));
        let reads = Arc::new(AtomicU64::new(0));
        let (v, r) = (value.clone(), reads.clone());
        let src = SecretSource::fixed(Secret::new("old")).with_reader(Arc::new(move || {
            r.fetch_add(1, Ordering::Relaxed);
            let s = v.read().unwrap().clone();
            Box::pin(async move { Some(Secret::new(s)) })
        }));
        assert!(!src.reload(10_000).await, "same value: no change");
        *value.write().unwrap() = "new".into();
        assert!(!src.reload(10_000 + RELOAD_EVERY_MS - 1).await, "too soon: not read");
        assert_eq!(reads.load(Ordering::Relaxed), 1);
        assert!(src.reload(10_000 + RELOAD_EVERY_MS).await);
        assert_eq!(src.current().expose(), "new");
        assert!(!SecretSource::fixed(Secret::new("x")).reload(0).await, "nowhere to read from");
    }
}
