//! Peak memory of a backfill page (issue 30, item 8): an out-of-memory kill takes the whole
//! invocation down — every group of the batch, a token refresh between issuance and storage
//! included — so the largest pages must fit the function's 256 MB with room to spare.
//!
//! Measured, not modelled: a tracking allocator (`tracking-allocator`) attributes to the worker
//! every byte allocated while the worker's future is being polled on this test's thread, and
//! subtracts it when freed wherever that happens — the in-process simulator's tasks and the
//! other tests' threads are not counted. The allocator serves the whole test binary; tracking
//! is on only during the measurement. The simulator's orders are smaller than real
//! Cafe24 orders (fewer fields), so the result is reported as a multiple of the page's JSON
//! size too, which carries over to real pages.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tracking_allocator::{AllocationGroupId, AllocationGroupToken, AllocationRegistry, AllocationTracker, Allocator};

use crate::common::*;

#[global_allocator]
static ALLOC: Allocator<std::alloc::System> = Allocator::system();

/// Live and peak bytes of one allocation group (the measured worker's polls).
struct PeakTracker;

static GROUP: AtomicUsize = AtomicUsize::new(0);
static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

fn ours(g: &AllocationGroupId) -> bool {
    g.as_usize().get() == GROUP.load(Ordering::Relaxed)
}

impl AllocationTracker for PeakTracker {
    fn allocated(&self, _addr: usize, object_size: usize, _wrapped: usize, group: AllocationGroupId) {
        if ours(&group) {
            let live = LIVE.fetch_add(object_size as isize, Ordering::Relaxed) + object_size as isize;
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
    }
    fn deallocated(
        &self,
        _addr: usize,
        object_size: usize,
        _wrapped: usize,
        source: AllocationGroupId,
        _: AllocationGroupId,
    ) {
        if ours(&source) {
            LIVE.fetch_sub(object_size as isize, Ordering::Relaxed);
        }
    }
}

/// Polls `F` inside the measured allocation group (entered on this thread for each poll only,
/// so the simulator's tasks and the other tests are never counted; a free is counted against
/// the group that allocated the bytes, wherever it happens).
struct Measured<F> {
    inner: Pin<Box<F>>,
    token: AllocationGroupToken,
}

impl<F: Future> Future for Measured<F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let _in_group = this.token.enter();
        this.inner.as_mut().poll(cx)
    }
}

/// The peak bytes the worker held while running one batch of `body` (one page of a backfill).
async fn peak_of(w: &W, body: &str) -> usize {
    let _ = AllocationRegistry::set_global_tracker(PeakTracker);
    AllocationRegistry::enable_tracking();
    let token = AllocationGroupToken::register().expect("an allocation group");
    GROUP.store(token.id().as_usize().get(), Ordering::Relaxed);
    LIVE.store(0, Ordering::Relaxed);
    PEAK.store(0, Ordering::Relaxed);
    let event = one_record(body, 1);
    Measured { inner: Box::pin(w.handle_batch(event, || std::time::Duration::from_secs(60))), token }.await;
    AllocationRegistry::disable_tracking();
    PEAK.load(Ordering::Relaxed).max(0) as usize
}

const MB: f64 = 1024.0 * 1024.0;

/// One page of 100 products with 200 KB HTML descriptions (the product page limit; a long
/// description with inline markup) and one page of 1,000 orders with their items (the order
/// page limit). The peak must stay well inside 256 MB; the figure goes to docs/scale.md.
#[tokio::test(flavor = "current_thread")]
async fn the_largest_backfill_pages_fit_the_workers_memory_with_room() {
    use relay_domain::backfill::Resource;
    use relay_domain::jobs::JobKind;
    use relay_domain::ratelimit::Class;
    // Products: 100 × 200 KB.
    let fx = Fx::with(|c| c.products_per_mall = 100).await;
    let page_bytes: usize = {
        let mut g = fx.sim.lock();
        let m = fx.sim.mall(&mut g, "shop");
        for p in m.data.products.values_mut() {
            p.description = "<p>상품 설명 description</p>".repeat(200 * 1024 / 32);
        }
        m.data.products.values().map(|p| p.description.len() + 400).sum()
    };
    let w = fx.worker();
    let kind = JobKind::Backfill { resource: Resource::Products, since_ms: 0, until_ms: 0, only_shop: None };
    let body =
        serde_json::to_string(&relay_domain::jobs::Job { class: Class::Bulk, ..fx.job("mem-products", kind) }).unwrap();
    let products_peak = peak_of(&w, &body).await;
    assert_eq!(fx.bus.events().len(), 100, "the page was processed");

    // Orders: 1,000 in one window, with items.
    let fx = Fx::with(|c| {
        c.orders_per_mall = 1_000;
        c.order_history_days = 1;
    })
    .await;
    let order_bytes: usize = {
        let g = fx.sim.lock();
        let ids: Vec<String> = g.malls["shop"].data.orders.keys().cloned().collect();
        drop(g);
        ids.iter().filter_map(|id| fx.sim.order_json("shop", 1, id)).map(|o| o.to_string().len()).sum()
    };
    let w = fx.worker();
    let now = fx.sim.clock.now_ms();
    let kind = JobKind::Backfill {
        resource: Resource::Orders,
        since_ms: now - 2 * 86_400_000,
        until_ms: now,
        only_shop: None,
    };
    let body =
        serde_json::to_string(&relay_domain::jobs::Job { class: Class::Bulk, ..fx.job("mem-orders", kind) }).unwrap();
    let orders_peak = peak_of(&w, &body).await;
    assert!(fx.bus.events().len() >= 1_000, "the page was processed: {}", fx.bus.events().len());

    println!(
        "peak memory: products page {:.1} MB of JSON → {:.1} MB ({:.1}×); orders page {:.1} MB → {:.1} MB ({:.1}×)",
        page_bytes as f64 / MB,
        products_peak as f64 / MB,
        products_peak as f64 / page_bytes as f64,
        order_bytes as f64 / MB,
        orders_peak as f64 / MB,
        orders_peak as f64 / order_bytes.max(1) as f64,
    );
    // Two jobs of a batch may hold a page each (JOBS_IN_FLIGHT 2): each must fit in a third of
    // the function's 256 MB, leaving the rest to the runtime, the other groups and the SDK.
    let budget = 256.0 * MB / 3.0;
    assert!((products_peak as f64) < budget, "products page peak {:.1} MB", products_peak as f64 / MB);
    assert!((orders_peak as f64) < budget, "orders page peak {:.1} MB", orders_peak as f64 / MB);
}
