//! Ambiguous writes: DynamoDB applied the write, but the SDK saw a 500, no answer in time (the
//! 1.5 s attempt timeout) or a reset connection, and retried it. The retry fails its condition
//! against the first attempt's own write. Each conditional write the relay makes must read that
//! as its own success, not as "someone else's newer write" (issue 30, item 1).
//!
//! The faults are injected by the local endpoint (`scripts/moto_server.py`, "Injected faults")
//! under clients with the functions' own timeouts (`TestEnv::strict`). Each test runs the three
//! ambiguous faults side by side, each on an item of its own, and also checks that a genuine
//! conflict is still a conflict (so "always succeed" cannot pass).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use relay_aws::limiter::{Acquire, DynamoLimiter};
use relay_aws::once::DynamoOnceStore;
use relay_aws::state::DynamoState;
use relay_aws::tokens::DynamoTokenStore;
use relay_domain::ports::{Claim, IdempotencyStore, OnceStore, SnapshotStore, Upsert};
use relay_domain::ratelimit::{Class, LimiterConfig};
use relay_domain::tokens::{LeaseOutcome, TokenPair, TokenStore};
use relay_domain::{MallId, SnapshotKind};
use relay_tests::faults::{Fault, Rule};
use relay_tests::TestEnv;
use serde_json::json;

/// The faults after which the write was applied but the caller cannot know it.
const AMBIGUOUS: [Fault; 3] = [Fault::Apply500, Fault::ApplyDelay(2_000), Fault::ApplyReset];

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Injects `fault` once on the next `action` whose body names `scope`.
async fn once(env: &TestEnv, action: &str, scope: &str, fault: Fault) {
    env.inject(&Rule::once(action, scope, fault)).await.unwrap();
}

#[tokio::test]
async fn a_snapshot_upsert_whose_first_attempt_was_applied_reports_the_version_stored() {
    let env = TestEnv::strict("amb-snap").await.unwrap();
    let state = DynamoState::new(env.ddb.clone(), &env.stack.state_table);
    let mall = MallId::parse("ambmall").unwrap();
    let t = now_ms();
    let runs = AMBIGUOUS.iter().enumerate().map(|(i, fault)| {
        let (env, state, mall) = (&env, &state, &mall);
        async move {
            let id = format!("o{i}");
            // The item's key is in the request body: the fault hits this item's write only.
            once(env, "UpdateItem", &format!("snap#ambmall#order#{id}\""), *fault).await;
            let stored =
                state.upsert(mall, SnapshotKind::Order, &id, t, Some(&json!({"i": i})), "job-a").await.unwrap();
            (fault, stored)
        }
    });
    for (fault, stored) in futures::future::join_all(runs).await {
        assert_eq!(
            stored,
            Upsert::Stored,
            "{fault:?}: the applied write was read as someone else's newer version (nothing published)"
        );
    }
    // A real newer version stored by another job is still refused.
    let older = state.upsert(&mall, SnapshotKind::Order, "o0", t - 1, Some(&json!({})), "job-b").await.unwrap();
    assert_eq!(older, Upsert::Older, "an older fetch must not replace the stored version");
    let same_instant_other_job =
        state.upsert(&mall, SnapshotKind::Order, "o0", t, Some(&json!({})), "job-b").await.unwrap();
    assert_eq!(same_instant_other_job, Upsert::Older, "another job's write of the same instant is not this job's");
    // A later fetch of the same content stores no version: the head reads the confirmation.
    let again = state.upsert(&mall, SnapshotKind::Order, "o0", t + 5, Some(&json!({"i": 0})), "job-c").await.unwrap();
    assert_eq!(again, Upsert::Unchanged);
    let head = state.head(&mall, SnapshotKind::Order, "o0").await.unwrap().unwrap();
    assert_eq!((head.fetched_at_ms, head.stored_by.as_str()), (t + 5, "job-a"));
    assert_eq!(state.snapshot(&mall, SnapshotKind::Order, "o0").await.unwrap().unwrap().0, t, "the version is kept");
    // New content is a new version.
    let changed = state.upsert(&mall, SnapshotKind::Order, "o0", t + 9, Some(&json!({"i": 9})), "job-d").await.unwrap();
    assert_eq!(changed, Upsert::Stored);
    // A release without digests (a rollback) overwrites the snapshot and leaves the digest of
    // {"i": 9} behind; the newer release then fetching {"i": 9} again must store it, not take
    // the stale digest for the stored content.
    use aws_sdk_dynamodb::types::AttributeValue as Av;
    env.ddb
        .update_item()
        .table_name(&env.stack.state_table)
        .key("pk", Av::S("snap#ambmall#order#o0".into()))
        .update_expression("SET #data = :d, fetched_at = :f, by_job = :by")
        .expression_attribute_names("#data", "data")
        .expression_attribute_values(":d", Av::S(r#"{"i":10}"#.into()))
        .expression_attribute_values(":f", Av::N((t + 10).to_string()))
        .expression_attribute_values(":by", Av::S("old-release".into()))
        .send()
        .await
        .unwrap();
    let back = state.upsert(&mall, SnapshotKind::Order, "o0", t + 11, Some(&json!({"i": 9})), "job-e").await.unwrap();
    assert_eq!(back, Upsert::Stored, "the stale digest of an overwritten version was taken for the stored content");
    let (_, data) = state.snapshot(&mall, SnapshotKind::Order, "o0").await.unwrap().unwrap();
    assert_eq!(data, Some(json!({"i": 9})));
}

#[tokio::test]
async fn an_idempotency_claim_whose_first_attempt_was_applied_is_held_by_its_claimant() {
    let env = TestEnv::strict("amb-claim").await.unwrap();
    let state = DynamoState::new(env.ddb.clone(), &env.stack.state_table);
    let t = now_ms();
    let runs = AMBIGUOUS.iter().enumerate().map(|(i, fault)| {
        let (env, state) = (&env, &state);
        async move {
            let job = format!("job-claim-{i}");
            once(env, "PutItem", &format!("idem#{job}\""), *fault).await;
            (fault, state.claim(&job, t, t + 60_000, t + 3_600_000).await.unwrap())
        }
    });
    for (fault, claim) in futures::future::join_all(runs).await {
        assert_eq!(claim, Claim::Claimed, "{fault:?}: the job blocked itself (its own claim read as another's)");
    }
    // Another claimant of a held job still finds it in progress.
    let second = state.claim("job-claim-0", t + 1, t + 60_000, t + 3_600_000).await.unwrap();
    assert!(matches!(second, Claim::InProgress { .. }), "a second claimant took a held job: {second:?}");
}

#[tokio::test]
async fn a_failure_count_whose_increment_was_applied_counts_once() {
    let env = TestEnv::strict("amb-att").await.unwrap();
    let state = DynamoState::new(env.ddb.clone(), &env.stack.state_table);
    let t = now_ms();
    let runs = AMBIGUOUS.iter().enumerate().map(|(i, fault)| {
        let (env, state) = (&env, &state);
        async move {
            let job = format!("job-att-{i}");
            assert_eq!(state.add_failure(&job, t + 3_600_000).await.unwrap(), 1);
            once(env, "UpdateItem", &format!("att#{job}\""), *fault).await;
            (fault, state.add_failure(&job, t + 3_600_000).await.unwrap())
        }
    });
    for (fault, n) in futures::future::join_all(runs).await {
        assert_eq!(n, 2, "{fault:?}: one failure counted {} times", n - 1);
    }
    // Progress clears the count: only consecutive failures lead to the DLQ.
    state.clear_failures("job-att-0").await.unwrap();
    assert_eq!(state.add_failure("job-att-0", t + 3_600_000).await.unwrap(), 1);
}

#[tokio::test]
async fn an_install_link_consumed_by_an_applied_first_attempt_is_not_already_used() {
    let env = TestEnv::strict("amb-once").await.unwrap();
    let once_store = DynamoOnceStore::new(env.ddb.clone(), &env.stack.token_table);
    let exp = now_ms() + 600_000;
    let runs = AMBIGUOUS.iter().enumerate().map(|(i, fault)| {
        let (env, once_store) = (&env, &once_store);
        async move {
            let nonce = format!("nonce-{i}");
            once(env, "PutItem", &format!("once#{nonce}\""), *fault).await;
            (fault, once_store.consume(&nonce, exp).await.unwrap())
        }
    });
    for (fault, first) in futures::future::join_all(runs).await {
        assert!(first, "{fault:?}: the merchant's own first use of the link was refused as 'already used'");
    }
    assert!(!once_store.consume("nonce-0", exp).await.unwrap(), "a second use of a link must be refused");
}

fn pair(tag: &str, t: u64) -> TokenPair {
    TokenPair::issued(format!("access-{tag}"), format!("refresh-{tag}"), vec!["mall.read_order".into()], t)
}

#[tokio::test]
async fn a_refresh_lease_and_its_stored_pair_survive_retries_of_applied_writes() {
    let env = TestEnv::strict("amb-lease").await.unwrap();
    let tokens = DynamoTokenStore::new(env.ddb.clone(), &env.stack.token_table);
    let t = now_ms();
    let runs = AMBIGUOUS.iter().enumerate().map(|(i, fault)| {
        let (env, tokens) = (&env, &tokens);
        async move {
            let mall = MallId::parse(&format!("leasemall{i}")).unwrap();
            tokens.put_installed(&mall, &pair("old", t), t).await.unwrap();
            let rec = tokens.get(&mall).await.unwrap().unwrap();
            let owner = format!("owner-{i}");
            // The key's JSON ends right after the mall id: only this mall's writes fault.
            let scope = format!("\"{}\"", mall.as_str());
            once(env, "UpdateItem", &scope, *fault).await;
            let lease = tokens.try_lease(&mall, rec.version, &owner, t, t + 30_000).await.unwrap();
            let LeaseOutcome::Acquired(leased) = lease else {
                panic!("{fault:?}: our own applied lease read as lost (the mall waits a lease period): {lease:?}")
            };
            once(env, "UpdateItem", &scope, *fault).await;
            let stored = tokens.complete_refresh(&mall, &owner, leased.version, &pair("new", t), t).await.unwrap();
            assert!(stored, "{fault:?}: the stored pair was reported as a lost lease");
            let now = tokens.get(&mall).await.unwrap().unwrap();
            assert_eq!(now.pair.refresh_token.expose(), "refresh-new");
            assert_eq!(now.lease_owner, "", "{fault:?}: the lease was not released");
        }
    });
    futures::future::join_all(runs).await;
    // A lease held by another owner is still lost, and a stale lease version stores nothing.
    let mall = MallId::parse("leasemall0").unwrap();
    let rec = tokens.get(&mall).await.unwrap().unwrap();
    assert!(matches!(
        tokens.try_lease(&mall, rec.version, "a", t, t + 30_000).await.unwrap(),
        LeaseOutcome::Acquired(_)
    ));
    assert!(matches!(tokens.try_lease(&mall, rec.version, "b", t, t + 30_000).await.unwrap(), LeaseOutcome::Lost(_)));
    assert!(!tokens.complete_refresh(&mall, "b", rec.version + 1, &pair("b", t), t).await.unwrap());
}

#[tokio::test]
async fn a_limiter_admission_whose_write_was_applied_spends_one_slot() {
    let env = TestEnv::strict("amb-limit").await.unwrap();
    let cfg = LimiterConfig {
        rate_per_sec: 2.0,
        burst: 40,
        rate_margin: 0.0,
        burst_margin: 0,
        min_spacing_ms: 0,
        ..Default::default()
    };
    // A frozen clock: every admission moves the stored state by exactly one emission interval.
    let t = now_ms();
    let clock: relay_domain::clock::Clock = Arc::new(move || t);
    let limiter = DynamoLimiter::new(env.ddb.clone(), &env.stack.rate_limit_table, cfg, clock);
    let control = "amb-control";
    for _ in 0..2 {
        assert!(matches!(limiter.acquire(control, Class::Live).await.unwrap(), Acquire::Admitted));
    }
    let expected = limiter.stored(control).await.unwrap().unwrap();
    for (i, fault) in AMBIGUOUS.iter().enumerate() {
        let key = format!("amb-key-{i}");
        assert!(matches!(limiter.acquire(&key, Class::Live).await.unwrap(), Acquire::Admitted));
        once(&env, "UpdateItem", &format!("\"{key}\""), *fault).await;
        assert!(matches!(limiter.acquire(&key, Class::Live).await.unwrap(), Acquire::Admitted));
        let got = limiter.stored(&key).await.unwrap().unwrap();
        assert_eq!(got.tat_ms, expected.tat_ms, "{fault:?}: two admissions spent more than two slots");
    }
}

/// A command's record on DynamoDB: the first outcome stays (a second run's outcome is refused
/// and the first returned), an outcome recorded by an applied first attempt is returned as the
/// command's, a note after an outcome is refused, a POST's note is one writer's (its own
/// retried note passes, another writer's is refused), and a large answer round-trips deflated.
#[tokio::test]
async fn a_command_outcome_is_recorded_once_whatever_the_retries() {
    use relay_domain::ports::{CommandStore, Noted};
    let env = TestEnv::strict("amb-cmd").await.unwrap();
    let state = DynamoState::new(env.ddb.clone(), &env.stack.state_table);
    let mall = MallId::parse("ambmall").unwrap();
    let t = now_ms();
    let far = t + 86_400_000;
    assert_eq!(state.note_sending(&mall, "k-0", "w1", true, t, far).await.unwrap(), Noted::Yes);
    let rec = state.command_record(&mall, "k-0").await.unwrap().unwrap();
    assert_eq!((rec.sending_since_ms, rec.sending_writer.as_deref(), rec.outcome), (Some(t), Some("w1"), None));
    // Exclusive: another writer is told whose note stands; the same writer passes again.
    assert_eq!(
        state.note_sending(&mall, "k-0", "w2", true, t + 5, far).await.unwrap(),
        Noted::Elsewhere { since_ms: t }
    );
    assert_eq!(state.note_sending(&mall, "k-0", "w1", true, t, far).await.unwrap(), Noted::Yes);
    // Another writer's clear leaves the note.
    state.clear_sending(&mall, "k-0", "w2").await.unwrap();
    assert_eq!(state.command_record(&mall, "k-0").await.unwrap().unwrap().sending_since_ms, Some(t));
    let first = json!({"outcome": "succeeded", "status": 201, "body": {"point": {"amount": "1.00"}}});
    assert_eq!(state.record_outcome(&mall, "k-0", &first, t, far).await.unwrap(), first);
    let second = json!({"outcome": "uncertain", "reason": "timeout"});
    assert_eq!(state.record_outcome(&mall, "k-0", &second, t, far).await.unwrap(), first, "the first outcome stays");
    for exclusive in [true, false] {
        assert_eq!(
            state.note_sending(&mall, "k-0", "w3", exclusive, t, far).await.unwrap(),
            Noted::Recorded,
            "nothing is sent after an outcome"
        );
    }
    let rec = state.command_record(&mall, "k-0").await.unwrap().unwrap();
    assert_eq!((rec.sending_since_ms, rec.sending_writer, rec.outcome), (None, None, Some(first)));
    state.note_sending(&mall, "k-1", "w1", true, t, far).await.unwrap();
    state.clear_sending(&mall, "k-1", "w1").await.unwrap();
    assert_eq!(state.command_record(&mall, "k-1").await.unwrap().unwrap().sending_since_ms, None);
    // A PUT's note is not exclusive: a second writer notes over the first.
    state.note_sending(&mall, "k-2", "w1", false, t, far).await.unwrap();
    assert_eq!(state.note_sending(&mall, "k-2", "w2", false, t + 1, far).await.unwrap(), Noted::Yes);

    // A POST's note applied, then the SDK retried it: the retry recognises its own note.
    for (i, fault) in AMBIGUOUS.iter().enumerate() {
        let key = format!("k-note-{i}");
        once(&env, "UpdateItem", &format!("cmd#ambmall#{key}\""), *fault).await;
        assert_eq!(state.note_sending(&mall, &key, "w1", true, t, far).await.unwrap(), Noted::Yes, "{fault:?}");
    }

    // Applied, then the SDK retried: the retry finds the outcome it wrote and returns it.
    for (i, fault) in AMBIGUOUS.iter().enumerate() {
        let key = format!("k-amb-{i}");
        once(&env, "UpdateItem", &format!("cmd#ambmall#{key}\""), *fault).await;
        let o = json!({"outcome": "succeeded", "status": 200, "body": {"i": i}});
        assert_eq!(state.record_outcome(&mall, &key, &o, t, far).await.unwrap(), o, "{fault:?}");
    }
    // A large answer (a list read as a command) is stored deflated and read back whole.
    let big =
        json!({"outcome": "succeeded", "status": 200, "body": {"products": vec!["description ".repeat(50); 400]}});
    assert_eq!(state.record_outcome(&mall, "k-big", &big, t, far).await.unwrap(), big);
    assert_eq!(state.command_record(&mall, "k-big").await.unwrap().unwrap().outcome, Some(big));
}
