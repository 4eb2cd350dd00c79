//! The worker's backfill jobs against the simulator's list endpoints (in-memory ports): pages,
//! progress, slices, kills, and list answers with and without `links`.

use crate::common::*;

use std::sync::atomic::Ordering;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use cafe24_sim::state::{Fault, FaultKind, DAY_MS};
use relay_domain::jobs::{Job, JobKind};
use relay_domain::ratelimit::{Acquire, Class};
use relay_domain::SnapshotKind;

fn backfill_job(fx: &Fx, id: &str, since_ms: u64, until_ms: u64) -> String {
    let kind =
        JobKind::Backfill { resource: relay_domain::backfill::Resource::Orders, since_ms, until_ms, only_shop: None };
    serde_json::to_string(&Job { class: Class::Bulk, ..fx.job(id, kind) }).unwrap()
}

fn product_backfill_job(fx: &Fx, id: &str) -> String {
    let kind = JobKind::Backfill {
        resource: relay_domain::backfill::Resource::Products,
        since_ms: 0,
        until_ms: 0,
        only_shop: None,
    };
    serde_json::to_string(&Job { class: Class::Bulk, ..fx.job(id, kind) }).unwrap()
}

/// Cafe24's published product list answers carry no `links`: paging goes on while pages are
/// full. 250 products (two full pages and a short one) are all stored under every variant.
#[tokio::test]
async fn a_product_backfill_of_250_products_completes_with_or_without_links() {
    use cafe24_sim::state::{Links, Variants};
    for links in [Links::AsPublished, Links::Never, Links::Always] {
        let fx = Fx::with(|c| {
            c.products_per_mall = 250;
            c.variants = Variants { links, ..Variants::default() };
        })
        .await;
        let w = fx.worker();
        let body = product_backfill_job(&fx, "bf-products");
        for _ in 0..5 {
            if !returned(&run(&w, &body).await) {
                break;
            }
        }
        let p = relay_domain::ports::BackfillStore::backfill_progress(
            &fx.state,
            &fx.mall,
            relay_domain::backfill::Resource::Products,
        )
        .await
        .unwrap()
        .unwrap();
        assert!(p.done, "{links:?}: {p:?}");
        assert_eq!((p.stored, p.seen, p.pages), (250, 250, 3), "{links:?}");
        assert_eq!(fx.endpoint_calls("products"), 3, "{links:?}: no page read twice, none after the short one");
        assert_eq!(fx.state.outcome("bf-products").as_deref(), Some("backfilled"), "{links:?}");
    }
}

/// A mall with 2,500 orders over the last year (several list pages and windows).
async fn year_of_orders() -> Fx {
    Fx::with(|c| {
        c.orders_per_mall = 2_500;
        c.order_history_days = 365;
    })
    .await
}

async fn progress(fx: &Fx) -> relay_domain::backfill::Progress {
    progress_or_none(fx).await.unwrap()
}

#[tokio::test]
async fn a_backfill_stores_a_year_of_orders_from_list_pages_and_resumes_where_it_was_cut_off() {
    let fx = year_of_orders().await;
    let w = fx.worker();
    let orders: Vec<String> = {
        let mut g = fx.sim.lock();
        fx.sim.mall(&mut g, "shop").data.orders.keys().cloned().collect()
    };
    let now = fx.sim.clock.now_ms();
    let body = backfill_job(&fx, "bf1", now - 366 * DAY_MS, now);
    // The limiter says "wait 10 s" at the third page (after the shops list and two pages): the
    // job is cut off there.
    fx.gate.script([Acquire::Admitted, Acquire::Admitted, Acquire::Admitted, Acquire::Wait(10_000)]);
    let r = run(&w, &body).await;
    assert!(returned(&r), "cut off: comes back");
    assert_eq!(w.stats.failures.load(Ordering::Relaxed), 0, "a limiter wait is not an attempt");
    let cut = progress(&fx).await;
    assert_eq!((cut.pages, cut.done), (2, false));
    let r = run(&w, &body).await;
    assert!(!returned(&r));
    let p = progress(&fx).await;
    assert!(p.done, "{p:?}");
    for id in &orders {
        let (_, data) =
            fx.state.stored(&fx.mall, SnapshotKind::Order, id).unwrap_or_else(|| panic!("order {id} not stored"));
        assert!(data.unwrap()["items"].as_array().is_some_and(|i| !i.is_empty()), "stored with its items");
    }
    let needed = (orders.len() as u64).div_ceil(1_000);
    let calls = fx.endpoint_calls("orders");
    assert_eq!((calls, p.pages, p.pages_reread), (p.pages, p.pages, 0), "no page read twice across the cut");
    // At most one partial page per 90-day window beyond ⌈orders / 1000⌉ (a year = 5 windows).
    assert!(calls <= needed + 5, "{calls} calls for {needed} pages' worth");
    assert_eq!((p.stored, p.seen), (orders.len() as u64, orders.len() as u64));
    assert_eq!(fx.bus.events().len(), orders.len(), "each stored version delivered once");
    assert!(orders.iter().all(|id| fx.state.stored_by(&fx.mall, SnapshotKind::Order, id).as_deref() == Some("bf1")));
    assert_eq!(fx.state.outcome("bf1").as_deref(), Some("backfilled"));
}

/// A backfill received in one batch with another message group (here the mall's live group)
/// runs one page and comes back, so that group is acknowledged without waiting for a slice;
/// alone in its batch it runs a slice of pages and finishes.
#[tokio::test]
async fn a_backfill_beside_another_group_in_its_batch_runs_one_page_and_comes_back() {
    let fx = year_of_orders().await;
    let w = fx.worker();
    let now = fx.sim.clock.now_ms();
    let backfill = backfill_job(&fx, "bf-shared", now - 366 * DAY_MS, now);
    let live = serde_json::to_string(&fx.job("live-1", JobKind::SyncOrder { order_id: fx.order() })).unwrap();
    let record = |id: &str, group: &str, body: &str| {
        serde_json::json!({
            "messageId": id, "receiptHandle": format!("rh-{id}"), "body": body,
            "attributes": {"MessageGroupId": group, "ApproximateReceiveCount": "1"},
            "messageAttributes": {}, "eventSource": "aws:sqs"
        })
    };
    let event: SqsEvent = serde_json::from_value(serde_json::json!({"Records": [
        record("m-bulk", "shop.bulk", &backfill),
        record("m-live", "shop", &live),
    ]}))
    .unwrap();
    let r = w.handle_batch(event, || Duration::from_secs(60)).await;
    let back: Vec<&str> = r.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(back, ["m-bulk"], "the backfill comes back, the live job is done");
    assert!(fx.state.stored(&fx.mall, SnapshotKind::Order, &fx.order()).is_some(), "the live order synced");
    let p = progress(&fx).await;
    assert_eq!((p.pages, p.done), (1, false), "one page beside another group");
    // Alone in its batch: the rest in one slice (the in-process simulator answers at once).
    let r = run(&w, &backfill).await;
    assert!(!returned(&r));
    let p = progress(&fx).await;
    assert!(p.done && p.pages > 2, "{p:?}");
    assert_eq!(p.pages_reread, 0);
}

/// A backfill invocation stopped anywhere (its future dropped, as Lambda stops the process) —
/// before its first page, while a page is read, between pages — resumes on redelivery from its
/// stored progress: every order of the year stored, no window skipped, and at most the page that
/// was in flight at the kill read a second time.
#[tokio::test]
async fn a_backfill_killed_mid_page_resumes_without_a_gap_rereading_at_most_that_page() {
    for kill_ms in [50u64, 250, 450] {
        let fx = year_of_orders().await;
        // Every list page takes 200 ms at Cafe24, so the kills land on different pages.
        fx.sim.lock().faults.push(Fault {
            mall: Some("shop".into()),
            endpoint: Some("orders".into()),
            kind: FaultKind::Latency { ms: 200 },
            remaining: None,
        });
        let w = fx.worker();
        let now = fx.sim.clock.now_ms();
        let body = backfill_job(&fx, "bf-kill", now - 366 * DAY_MS, now);
        // A 1 s invocation, so its claim on the job lapses when the invocation would have.
        let invocation = w.handle_batch(one_record(&body, 1), || Duration::from_secs(1));
        let killed = tokio::time::timeout(Duration::from_millis(kill_ms), invocation).await.is_err();
        assert!(killed, "kill at {kill_ms} ms: the run was still going");
        let at_kill = progress_or_none(&fx).await.map_or(0, |p| p.pages);
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let mut receive = 2;
        while returned(&run_receive(&w, &body, receive).await) {
            receive += 1;
            assert!(receive < 20, "kill at {kill_ms} ms: never finished");
        }
        let p = progress(&fx).await;
        assert!(p.done, "kill at {kill_ms} ms: {p:?}");
        let orders: Vec<String> = {
            let mut g = fx.sim.lock();
            fx.sim.mall(&mut g, "shop").data.orders.keys().cloned().collect()
        };
        let missing = orders.iter().filter(|id| fx.state.stored(&fx.mall, SnapshotKind::Order, id).is_none()).count();
        assert_eq!(missing, 0, "kill at {kill_ms} ms (after {at_kill} pages): orders skipped");
        assert_eq!((p.stored, p.seen), (orders.len() as u64, orders.len() as u64), "kill at {kill_ms} ms");
        let calls = fx.endpoint_calls("orders");
        assert!(
            calls <= p.pages + 1,
            "kill at {kill_ms} ms (after {at_kill} pages): {calls} list calls for {} pages",
            p.pages
        );
    }
}

async fn progress_or_none(fx: &Fx) -> Option<relay_domain::backfill::Progress> {
    relay_domain::ports::BackfillStore::backfill_progress(&fx.state, &fx.mall, relay_domain::backfill::Resource::Orders)
        .await
        .unwrap()
}

fn customer_backfill_job(fx: &Fx, id: &str) -> String {
    let now = fx.sim.clock.now_ms();
    let kind = JobKind::Backfill {
        resource: relay_domain::backfill::Resource::Customers,
        since_ms: now - 3 * 365 * DAY_MS,
        until_ms: now,
        only_shop: None,
    };
    serde_json::to_string(&Job { class: Class::Bulk, ..fx.job(id, kind) }).unwrap()
}

/// Members by join date, opted in: 2,500 members over two years, several joined in the same
/// second (so pages of 1,000 end inside a second and the next page answers its members again):
/// every member stored and published once.
#[tokio::test]
async fn a_customer_backfill_pages_members_by_join_date_and_stores_each_once() {
    let fx = Fx::with(|c| c.customers_per_mall = 2_500).await;
    let w = fx.worker_with_env(&[("CUSTOMER_BACKFILL", "on")]);
    let body = customer_backfill_job(&fx, "bf-members");
    for _ in 0..5 {
        if !returned(&run(&w, &body).await) {
            break;
        }
    }
    assert_eq!(fx.state.outcome("bf-members").as_deref(), Some("backfilled"));
    let members: Vec<String> = {
        let mut g = fx.sim.lock();
        fx.sim.mall(&mut g, "shop").data.customers.keys().cloned().collect()
    };
    for m in &members {
        assert!(fx.state.stored(&fx.mall, SnapshotKind::Customer, m).is_some(), "member {m}");
    }
    let ids: Vec<String> = fx.bus.events().iter().map(|e| e.event_id.clone()).collect();
    let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!((ids.len(), distinct.len()), (2_500, 2_500), "each member published once");
    assert!(fx.endpoint_calls("customersprivacy") <= 4, "{} pages", fx.endpoint_calls("customersprivacy"));
}

#[tokio::test]
async fn a_customer_backfill_is_refused_unless_the_stack_opted_in() {
    let fx = Fx::new().await;
    let w = fx.worker();
    let r = run(&w, &customer_backfill_job(&fx, "bf-off")).await;
    assert!(!returned(&r));
    assert_eq!(dlq_class(&fx.dlq), ["config"], "dead-lettered with the reason, no call");
    assert_eq!(fx.endpoint_calls("customersprivacy"), 0);
}

/// Cafe24 does not say in what order `/customersprivacy` answers: newest first, the cursor
/// cannot page past the first page, and the job says so instead of ending early with a third of
/// the members missed (a listing that fits one page is read whole in any order).
#[tokio::test]
async fn a_customer_listing_answered_newest_first_is_refused_loudly_not_cut_short() {
    use cafe24_sim::state::{MemberOrder, Variants};
    let fx = Fx::with(|c| {
        c.customers_per_mall = 1_500;
        c.variants = Variants { member_order: MemberOrder::NewestFirst, ..Variants::default() };
    })
    .await;
    let w = fx.worker_with_env(&[("CUSTOMER_BACKFILL", "on")]);
    assert!(!returned(&run(&w, &customer_backfill_job(&fx, "bf-newest")).await));
    assert_eq!(dlq_class(&fx.dlq), ["decode"], "dead-lettered with the reason");
    assert_ne!(fx.state.outcome("bf-newest").as_deref(), Some("backfilled"), "not reported done");
}

/// Only consecutive failures count toward the dead-letter queue: a long backfill that meets a
/// transient Cafe24 error between pages every now and then keeps going as long as it makes
/// progress (issue 30, item 9). With `MAX_ATTEMPTS` 2, three failures spread over a
/// three-page backfill, each followed by a saved page, dead-lettered it before.
#[tokio::test]
async fn transient_failures_between_saved_pages_never_add_up_to_a_dead_letter() {
    let fx = Fx::with(|c| c.products_per_mall = 250).await;
    let w = fx.worker_with_env(&[("MAX_ATTEMPTS", "2")]);
    let body = product_backfill_job(&fx, "bf-flaky");
    let mut receive = 0;
    let mut next = || {
        receive += 1;
        receive
    };
    let pages = |fx: &Fx| {
        let p = futures::executor::block_on(relay_domain::ports::BackfillStore::backfill_progress(
            &fx.state,
            &fx.mall,
            relay_domain::backfill::Resource::Products,
        ));
        p.unwrap().map_or(0, |p| p.pages)
    };
    // Run 1: the shops list and one page, then the limiter cuts the slice.
    fx.gate.script([Acquire::Admitted, Acquire::Admitted, Acquire::Wait(10_000)]);
    assert!(returned(&run_receive(&w, &body, next()).await));
    for page in 2..=3 {
        // A failing run: Cafe24 answers 503 to the page.
        fx.fault("products", FaultKind::Status { status: 503 });
        assert!(returned(&run_receive(&w, &body, next()).await), "a transient failure comes back");
        assert!(fx.dlq.messages().is_empty(), "dead-lettered after a failure following saved pages (page {page})");
        // The next run saves a page (the last one ends the job).
        if page < 3 {
            fx.gate.script([Acquire::Admitted, Acquire::Wait(10_000)]);
        }
        let r = run_receive(&w, &body, next()).await;
        assert_eq!(pages(&fx), page);
        assert_eq!(returned(&r), page < 3);
    }
    assert!(fx.dlq.messages().is_empty());
    assert_eq!(fx.state.outcome("bf-flaky").as_deref(), Some("backfilled"));
    // Two failures in a row still reach the DLQ.
    let now = fx.sim.clock.now_ms();
    let body = backfill_job(&fx, "bf-broken", now - 30 * DAY_MS, now);
    for _ in 0..2 {
        fx.fault("", FaultKind::Status { status: 503 });
        run_receive(&w, &body, next()).await;
    }
    assert_eq!(fx.dlq.messages().len(), 1, "consecutive failures must still end in the DLQ");
}

/// Event ids of the bus's accepted events, per entity id (`<kind>.synced` events of products).
fn product_event_ids(fx: &Fx) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let mut by_id = std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
    for e in fx.bus.events() {
        let d: serde_json::Value = serde_json::from_str(&e.detail).unwrap();
        by_id.entry(d["id"].as_str().unwrap_or_default().to_owned()).or_default().insert(e.event_id.clone());
    }
    by_id
}

/// A backfill page whose events the bus partly refuses: only the refused ones are offered
/// again, under the same ids, and the page is never read again (issue 30, item 7). Before, the
/// job re-read the page, stored every item as a new version and published the whole page again
/// under new event ids — 99 products with two ids each for one refused entry.
#[tokio::test]
async fn refused_backfill_events_are_retried_alone_under_their_ids_without_reading_the_page_again() {
    // One refused entry (taken on the next offer), and a whole page refused on every offer of
    // a run (published from the store by the next run).
    for refused in [1usize, 300] {
        let fx = Fx::with(|c| c.products_per_mall = 250).await;
        let w = fx.worker();
        let body = product_backfill_job(&fx, "bf-refused");
        fx.bus.refuse_next(refused);
        let mut runs = 0;
        while returned(&run(&w, &body).await) {
            runs += 1;
            assert!(runs < 5, "refused {refused}: never finished");
        }
        assert_eq!(fx.endpoint_calls("products"), 3, "refused {refused}: a page was read again");
        let ids = product_event_ids(&fx);
        assert_eq!(ids.len(), 250, "refused {refused}: every product published");
        let twice: Vec<_> = ids.iter().filter(|(_, v)| v.len() > 1).map(|(k, _)| k).collect();
        assert!(twice.is_empty(), "refused {refused}: {} products published under two ids", twice.len());
        assert!(fx.dlq.messages().is_empty());
        assert_eq!(fx.state.outcome("bf-refused").as_deref(), Some("backfilled"));
    }
}
