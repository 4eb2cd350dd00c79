//! Multi-shop malls: a job of shop 2 reads shop 2's view (Cafe24 answers a call without
//! `shop_no` with shop 1's), two shops' entities of the same number are two snapshots and two
//! events, and a backfill reads every shop Cafe24 lists.

use crate::common::*;
use relay_domain::jobs::JobKind;
use relay_domain::{ShopNo, SnapshotKind};

async fn two_shop_mall() -> Fx {
    Fx::with(|c| {
        c.shops.insert("shop".into(), 2);
        c.products_per_mall = 120;
    })
    .await
}

fn in_shop(fx: &Fx, id: &str, shop: u32, kind: JobKind) -> String {
    let job = relay_domain::jobs::Job { shop_no: ShopNo::new(shop).unwrap(), ..fx.job(id, kind) };
    job.to_body()
}

fn detail(e: &relay_domain::delivery::BusEvent) -> serde_json::Value {
    serde_json::from_str(&e.detail).unwrap()
}

#[tokio::test]
async fn a_shop_2_event_reads_shop_2_and_its_entity_is_kept_apart_from_shop_1s() {
    let fx = two_shop_mall().await;
    let w = fx.worker();
    let product = JobKind::SyncProduct { product_no: 12 };
    assert!(!returned(&run(&w, &in_shop(&fx, "p-s2", 2, product.clone())).await));
    assert!(!returned(&run(&w, &in_shop(&fx, "p-s1", 1, product)).await));

    let (_, two) = fx.state.stored(&fx.mall, SnapshotKind::Product, "2/12").expect("shop 2's product 12");
    let (_, one) = fx.state.stored(&fx.mall, SnapshotKind::Product, "12").expect("shop 1's product 12");
    assert!(two.unwrap()["product_name"].as_str().unwrap().ends_with("(shop 2)"), "shop 2's view was read");
    assert!(!one.unwrap()["product_name"].as_str().unwrap().contains("shop 2"), "shop 1's view was read");
    let events: Vec<serde_json::Value> = fx.bus.events().iter().map(detail).collect();
    let shops: Vec<(u64, &str)> =
        events.iter().map(|d| (d["shop_no"].as_u64().unwrap(), d["id"].as_str().unwrap())).collect();
    assert_eq!(shops, [(2, "12"), (1, "12")], "two events, each naming its shop and the plain id");
    assert_ne!(events[0]["event_id"], events[1]["event_id"]);

    // An order of shop 2: the order exists only there.
    let order = {
        let mut g = fx.sim.lock();
        fx.sim.mall(&mut g, "shop").other_shops[&2].orders.keys().next().cloned().unwrap()
    };
    assert!(!returned(&run(&w, &in_shop(&fx, "o-s2", 2, JobKind::SyncOrder { order_id: order.clone() })).await));
    let stored = fx.state.stored(&fx.mall, SnapshotKind::Order, &format!("2/{order}"));
    assert!(stored.is_some_and(|(_, d)| d.is_some()), "fetched from shop 2, not a 404 from shop 1");
}

#[tokio::test]
async fn a_backfill_reads_every_shop_cafe24_lists_and_one_shop_when_asked() {
    let fx = two_shop_mall().await;
    let w = fx.worker();
    let all = |id: &str, shop_no: Option<ShopNo>| {
        let kind = JobKind::Backfill {
            resource: relay_domain::backfill::Resource::Products,
            since_ms: 0,
            until_ms: 0,
            only_shop: shop_no,
        };
        fx.job(id, kind).to_body()
    };
    let body = all("bf-all", None);
    for _ in 0..5 {
        if !returned(&run(&w, &body).await) {
            break;
        }
    }
    assert_eq!(fx.state.outcome("bf-all").as_deref(), Some("backfilled"));
    for no in [1u64, 120] {
        assert!(fx.state.stored(&fx.mall, SnapshotKind::Product, &no.to_string()).is_some(), "shop 1's {no}");
        let (_, two) = fx.state.stored(&fx.mall, SnapshotKind::Product, &format!("2/{no}")).expect("shop 2's");
        assert!(two.unwrap()["product_name"].as_str().unwrap().ends_with("(shop 2)"), "read in shop 2's view");
    }
    assert_eq!(fx.bus.events().len(), 240, "every product of both shops once");
    assert_eq!(fx.endpoint_calls("shops"), 1, "the shops listed once");

    let body = all("bf-two", ShopNo::new(2));
    let page_calls = fx.endpoint_calls("products");
    for _ in 0..5 {
        if !returned(&run(&w, &body).await) {
            break;
        }
    }
    assert_eq!(fx.endpoint_calls("products"), page_calls + 2, "shop 2 read again, alone");
    assert_eq!(fx.bus.events().len(), 240, "its products are unchanged: nothing published again");
    assert_eq!(fx.endpoint_calls("shops"), 1, "no listing for one named shop");
}

#[tokio::test]
async fn a_mall_whose_shops_cannot_be_listed_is_backfilled_for_shop_1_and_says_so() {
    let fx = Fx::with(|c| c.apps[0].scopes.retain(|s| s != "mall.read_store")).await;
    // The installed token lacks the scope too.
    let scopes: Vec<String> =
        cafe24_sim::state::ALL_READ_SCOPES.iter().filter(|s| **s != "mall.read_store").map(|s| s.to_string()).collect();
    let (a, r) = fx.sim.seed_tokens("shop", "relay-client", scopes.clone());
    let now = fx.sim.clock.now_ms();
    relay_domain::tokens::TokenStore::put_installed(
        &fx.tokens,
        &fx.mall,
        &relay_domain::tokens::TokenPair::issued(a, r, scopes, now),
        now,
    )
    .await
    .unwrap();
    let w = fx.worker();
    let kind = JobKind::Backfill {
        resource: relay_domain::backfill::Resource::Products,
        since_ms: 0,
        until_ms: 0,
        only_shop: None,
    };
    assert!(!returned(&run(&w, &fx.job("bf", kind).to_body()).await));
    assert_eq!(fx.state.outcome("bf").as_deref(), Some("backfilled"));
    assert_eq!(fx.bus.events().len(), 40, "shop 1's products");
}
