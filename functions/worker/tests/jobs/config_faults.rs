//! Configuration faults: what Cafe24 refuses for every mall at once. A retired API version and a
//! reissued client secret return the work without spending an attempt, make one probe a minute
//! per process, mark no mall `needs_reauth`, and heal: a version fixed by configuration, a secret
//! rotated in the secret store is read again by a warm process.

use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use crate::common::*;
use cafe24_sim::state::{RetiredVersion, Variants};
use relay_cafe24::fault::SecretReader;
use relay_cafe24::ConfigFault;
use relay_domain::tokens::{Secret, TokenStatus, TokenStore};
use relay_domain::SnapshotKind;

fn config_faults(w: &W) -> u64 {
    w.samples().iter().find(|(name, _, _)| *name == "Cafe24ConfigFaults").map_or(0, |(_, _, v)| *v)
}

async fn status(fx: &Fx) -> TokenStatus {
    fx.tokens.get(&fx.mall).await.unwrap().unwrap().status
}

#[tokio::test]
async fn a_retired_api_version_returns_every_job_without_an_attempt_and_probes_once_a_minute() {
    let fx = Fx::new().await;
    let w = fx.worker();
    fx.sim.retire_versions_before(Some("2026-06-01"));
    let (o1, o2) = fx.two_orders();
    let (j1, j2) = (fx.sync_order("j1", &o1), fx.sync_order("j2", &o2));

    assert!(returned(&run(&w, &j1).await), "the job comes back");
    assert_eq!(fx.vis.changes().last().map(|c| c.1), Some(60), "after the process's probe period");
    assert_eq!((fx.calls(), w.cafe24.config_fault()), (1, Some(ConfigFault::ApiVersionUnavailable)));
    assert!(returned(&run(&w, &j2).await));
    assert_eq!(fx.calls(), 1, "within the minute this process does not ask Cafe24 again");
    assert_eq!(w.stats.failures.load(Ordering::Relaxed), 0, "no attempt spent");
    assert!(fx.dlq.messages().is_empty(), "nothing dead-lettered");
    assert_eq!(config_faults(&w), 2, "both jobs counted for the alarm");
    assert_eq!(status(&fx).await, TokenStatus::Active, "no mall is at fault");
    let noted = relay_domain::ports::ConfigFaultStore::config_fault(&fx.state).await.unwrap();
    assert_eq!(noted.map(|(f, _)| f).as_deref(), Some("api_version_unavailable"), "noted for `relay mall status`");

    // Fixed by configuration (the version unset: the developer center's), deployed: both run.
    let fixed = fx.worker_with_cafe24(|c| c.api_version = None, |c| c);
    assert!(!returned(&run(&fixed, &j1).await) && !returned(&run(&fixed, &j2).await));
    assert!(fx.state.stored(&fx.mall, SnapshotKind::Order, &o2).is_some(), "synced");
    assert_eq!(config_faults(&fixed), 0);
}

#[tokio::test]
async fn under_the_other_reading_a_retired_version_keeps_working() {
    let fx =
        Fx::with(|c| c.variants = Variants { retired_version: RetiredVersion::RunsOnOldest, ..Variants::default() })
            .await;
    let w = fx.worker();
    fx.sim.retire_versions_before(Some("2026-06-01"));
    assert!(!returned(&run(&w, &fx.sync_order("j1", &fx.order())).await));
    assert_eq!((config_faults(&w), w.cafe24.config_fault()), (0, None));
}

#[tokio::test]
async fn without_the_version_header_a_retired_pinned_version_is_not_asked_for() {
    let fx = Fx::new().await;
    let w = fx.worker_with_cafe24(|c| c.api_version = None, |c| c);
    fx.sim.retire_versions_before(Some("2099-01-01"));
    assert!(!returned(&run(&w, &fx.sync_order("j1", &fx.order())).await));
    let versions = fx.sim.stats("shop").versions;
    assert_eq!(versions.keys().collect::<Vec<_>>(), ["none"], "no header sent: {versions:?}");
}

/// The mall's access token as the relay sees it: expired, so the next job must refresh.
async fn expire_access_token(fx: &Fx) {
    let now = fx.sim.clock.now_ms();
    let mut pair = fx.tokens.get(&fx.mall).await.unwrap().unwrap().pair;
    pair.access_expires_ms = now - 1;
    fx.tokens.put_installed(&fx.mall, &pair, now).await.unwrap();
}

/// A secret store the test can rotate (Secrets Manager in production).
fn secret_store(value: &str) -> (Arc<RwLock<String>>, SecretReader) {
    let store = Arc::new(RwLock::new(value.to_owned()));
    let s = store.clone();
    let reader: SecretReader = Arc::new(move || {
        let v = s.read().unwrap().clone();
        Box::pin(async move { Some(Secret::new(v)) })
    });
    (store, reader)
}

#[tokio::test]
async fn a_client_secret_rotated_in_the_secret_store_heals_a_warm_process_and_no_mall_needs_reauth() {
    let fx = Fx::new().await;
    let (store, reader) = secret_store("relay-secret");
    // No token cache: the record the test expires below is the one the worker reads.
    let w = fx.worker_with_cafe24(|c| c.token_cache_ms = 0, |c| c.with_secret_reader(reader));
    let third = {
        let mut g = fx.sim.lock();
        fx.sim.mall(&mut g, "shop").data.orders.keys().nth(2).cloned().unwrap()
    };
    assert!(!returned(&run(&w, &fx.sync_order("j0", &third)).await), "warm, with the first secret");

    // Reissued in the developer center and put in the secret store: the old one is dead at once.
    fx.sim.reissue_client_secret("relay-client", "relay-secret-2");
    *store.write().unwrap() = "relay-secret-2".into();
    expire_access_token(&fx).await;
    let (o1, o2) = fx.two_orders();
    assert!(!returned(&run(&w, &fx.sync_order("j1", &o1)).await), "refreshed with the secret read again");
    assert_eq!(w.cafe24.stats.token_requests.load(Ordering::Relaxed), 2, "refused once, then accepted");
    assert_eq!(status(&fx).await, TokenStatus::Active);
    assert!(!returned(&run(&w, &fx.sync_order("j2", &o2)).await));
    assert_eq!((config_faults(&w), w.stats.failures.load(Ordering::Relaxed)), (0, 0));
}

#[tokio::test]
async fn a_secret_rotated_at_cafe24_only_returns_jobs_without_an_attempt_and_one_token_request_a_minute() {
    let fx = Fx::new().await;
    let (_store, reader) = secret_store("relay-secret");
    let w = fx.worker_with_cafe24(|_| {}, |c| c.with_secret_reader(reader));
    fx.sim.reissue_client_secret("relay-client", "relay-secret-2");
    expire_access_token(&fx).await;
    let (o1, o2) = fx.two_orders();

    assert!(returned(&run(&w, &fx.sync_order("j1", &o1)).await), "the job comes back");
    assert!(returned(&run(&w, &fx.sync_order("j2", &o2)).await));
    assert_eq!(
        w.cafe24.stats.token_requests.load(Ordering::Relaxed),
        1,
        "the secret store had nothing new, and the process holds off for a minute"
    );
    assert_eq!(w.cafe24.config_fault(), Some(ConfigFault::ClientRejected));
    assert_eq!(status(&fx).await, TokenStatus::Active, "the mall's grant is fine: never needs_reauth");
    assert_eq!((w.stats.failures.load(Ordering::Relaxed), fx.dlq.messages().len()), (0, 0));
    assert_eq!(config_faults(&w), 2, "{:?}", w.samples());
}
