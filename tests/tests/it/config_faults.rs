//! Configuration faults mid-burst, end to end on moto: Cafe24 retires the pinned API version and
//! the client secret is reissued (and rotated in the local Secrets Manager) while the malls'
//! webhooks are being processed. Nothing is dead-lettered, no mall needs re-authorization, and
//! once the version is fixed every order is synced.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::Duration;

use relay_aws::state::DynamoState;
use relay_domain::ports::SnapshotStore as _;
use relay_domain::tokens::{TokenStatus, TokenStore as _};
use relay_domain::{MallId, SnapshotKind};
use relay_tests::pipeline::Pipeline;
use serde_json::json;

const MALLS: [&str; 2] = ["vexp-a", "vexp-b"];

fn faults(w: &relay_tests::pipeline::W) -> u64 {
    w.samples().iter().find(|(n, _, _)| *n == "Cafe24ConfigFaults").map_or(0, |(_, _, v)| *v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_api_version_and_a_reissued_secret_mid_burst_dead_letter_nothing_and_lock_no_mall_out() {
    let p = Pipeline::new("cfg-fault").await;
    for m in MALLS {
        p.install(m).await;
    }
    // The stack's secret in the local Secrets Manager, as `SECRET_ID` names it on AWS.
    let sdk = devstack::sdk_config(&devstack::moto::endpoint().await.unwrap()).await;
    let secret_id = format!("{}secret", devstack::unique_prefix("cfg-fault"));
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    sm.create_secret().name(&secret_id).secret_string(r#"{"client_secret":"relay-secret"}"#).send().await.unwrap();
    let reader = || {
        let id = secret_id.clone();
        relay_aws::secrets::client_secret_reader(&sdk, move |k| (k == "SECRET_ID").then(|| id.clone())).unwrap()
    };
    let mut w = p.worker_configured(&[], |c| c.fault_probe_ms = 1_000);
    w.cafe24.set_secret_reader(reader());

    p.send_webhooks_to_ingest().await;
    for m in MALLS {
        for _ in 0..8 {
            p.place_order(m, json!({"emit_webhook": true})).await;
        }
    }
    // Mid-burst: the pinned version is retired, the secret reissued (the old one refused from
    // now) and rotated in Secrets Manager, and one mall's access token is due for a refresh.
    p.sim.retire_versions_before(Some("2099-01-01"));
    p.sim.reissue_client_secret("relay-client", "relay-secret-2");
    sm.put_secret_value()
        .secret_id(&secret_id)
        .secret_string(r#"{"client_secret":"relay-secret-2"}"#)
        .send()
        .await
        .unwrap();
    let now = p.sim.clock.now_ms();
    let due = MallId::parse(MALLS[0]).unwrap();
    let mut pair = p.tokens().get(&due).await.unwrap().unwrap().pair;
    pair.access_expires_ms = now - 1;
    p.tokens().put_installed(&due, &pair, now).await.unwrap();

    let d = p.dispatcher();
    p.run_for(&d, &w, Duration::from_secs(6)).await;
    assert!(faults(&w) > 0, "the retired version was met: {:?}", w.samples());
    let state = DynamoState::new(p.env.ddb.clone(), p.env.stack.state_table.clone());
    let noted = relay_domain::ports::ConfigFaultStore::config_fault(&state).await.unwrap();
    assert_eq!(noted.map(|(f, _)| f).as_deref(), Some("api_version_unavailable"), "what `relay mall status` shows");
    assert_eq!(p.env.depth(&p.env.stack.work.dlq_url).await.unwrap(), 0, "nothing dead-lettered while it holds");

    // Fixed by configuration (no version header: the developer center's app version), deployed
    // as a new process that starts with the old secret in its environment.
    let mut fixed = p.worker_configured(&[], |c| {
        c.fault_probe_ms = 1_000;
        c.api_version = None;
    });
    fixed.cafe24.set_secret_reader(reader());
    p.run_until_drained(&d, &fixed, Duration::from_secs(180)).await;

    for m in MALLS {
        let mall = MallId::parse(m).unwrap();
        for id in p.orders(m).iter().rev().take(8) {
            let stored = state.snapshot(&mall, SnapshotKind::Order, id).await.unwrap();
            assert_eq!(stored.and_then(|(_, d)| d), p.sim.order_json(m, 1, id), "{m} {id}: synced and current");
        }
        assert_eq!(p.tokens().get(&mall).await.unwrap().unwrap().status, TokenStatus::Active, "{m}");
        assert_eq!(p.sim.stats(m).invalid_grants, 0, "{m}: no refresh token lost");
    }
    assert!(p.sim.stats(MALLS[0]).token_issuances >= 1, "the due mall was refreshed with the new secret");
    assert_eq!(p.env.depth(&p.env.stack.work.dlq_url).await.unwrap(), 0, "0 dead-lettered");
    assert_eq!(faults(&fixed), 0);
}
