//! Resync and backfill from Cafe24's list endpoints: which page to read next, and how the stored
//! progress moves after each page, so a run cut off anywhere resumes at the next unread page.
//!
//! Orders are read in windows of [`ORDER_WINDOW_MS`] (Cafe24 refuses a period over 3 months),
//! pages of [`ORDER_PAGE_LIMIT`] with `embed=items` (a list item then carries what a single
//! `GET /orders/{id}?embed=items` would, so each is stored as a snapshot straight from the page).
//! A window whose orders do not fit under Cafe24's offset cap ([`ORDER_OFFSET_MAX`]) is halved
//! and read again from its start — the only case where a page is read twice, and it is counted.
//! Products are read after `since_product_no` (no offset cap), pages of [`PRODUCT_PAGE_LIMIT`].
//! A multi-shop mall is read shop after shop (every call names its `shop_no`: without it Cafe24
//! answers for shop 1 only); the shops are listed from Cafe24 before the first page.

use serde::{Deserialize, Serialize};

use crate::reconcile::{encode_query_value, kst_iso};

/// Orders per page (Cafe24's maximum).
pub const ORDER_PAGE_LIMIT: u64 = 1_000;
/// Largest `offset` Cafe24 accepts on `GET /orders`.
pub const ORDER_OFFSET_MAX: u64 = 15_000;
/// One order window: 90 days (its last second included), never more than 3 calendar months.
/// Windows are whole seconds, as Cafe24's timestamps are: a window ends at second `s`
/// inclusive and the next one starts at `s + 1`, so no order falls between them.
pub const ORDER_WINDOW_MS: u64 = 90 * 86_400_000;
/// Products per page (Cafe24's maximum).
pub const PRODUCT_PAGE_LIMIT: u64 = 100;
/// Members per page of `GET /customersprivacy` (Cafe24's maximum).
pub const CUSTOMER_PAGE_LIMIT: u64 = 1_000;

/// What a resync reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    /// `GET /orders` by order date, with items.
    Orders,
    /// `GET /products` by product number (dates do not apply).
    Products,
    /// `GET /customersprivacy` by join date (`search_type=created_date` and a
    /// `created_start_date` cursor): personal data, scope `mall.read_privacy`, opt-in
    /// (`CUSTOMER_BACKFILL`). Assumed, unverified: members come oldest join first from the
    /// cursor, the cursor's own second included (docs/cafe24-conformance.md).
    Customers,
}

impl Resource {
    /// The snapshot kind its items are stored under.
    pub fn snapshot_kind(self) -> crate::SnapshotKind {
        match self {
            Self::Orders => crate::SnapshotKind::Order,
            Self::Products => crate::SnapshotKind::Product,
            Self::Customers => crate::SnapshotKind::Customer,
        }
    }

    /// Parses `orders` / `products` / `customers`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "orders" => Some(Self::Orders),
            "products" => Some(Self::Products),
            "customers" => Some(Self::Customers),
            _ => None,
        }
    }

    /// `orders` / `products` / `customers`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Orders => "orders",
            Self::Products => "products",
            Self::Customers => "customers",
        }
    }
}

/// A backfill's stored progress (one per mall and resource).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The job that owns it (a new resync request starts a new progress).
    pub job_id: String,
    /// What is read.
    pub resource: Resource,
    /// Orders placed from (epoch ms).
    pub since_ms: u64,
    /// Orders placed until (epoch ms, inclusive).
    pub until_ms: u64,
    /// Orders: start of the current window.
    pub window_start_ms: u64,
    /// Orders: length of the windows (halved when one overflows the offset cap).
    pub window_len_ms: u64,
    /// Orders: offset of the next page in the current window.
    pub offset: u64,
    /// Products: the next page starts after this product number.
    pub since_product_no: u64,
    /// Pages read.
    pub pages: u64,
    /// Pages read again after a window was halved.
    pub pages_reread: u64,
    /// Items stored as snapshots (a newer stored version counts as kept, not stored).
    pub stored: u64,
    /// Items seen on the pages.
    pub seen: u64,
    /// Finished.
    pub done: bool,
    /// The shops to read, in order (empty: not listed yet — the worker lists them before the
    /// first page; a progress saved before shops were read reads as shop 1's).
    #[serde(default)]
    pub shops: Vec<crate::ShopNo>,
    /// Which of `shops` is being read.
    #[serde(default)]
    pub shop_index: usize,
    /// Customers: the next page starts at members who joined in this second (epoch ms).
    #[serde(default)]
    pub joined_from_ms: u64,
    /// Customers: members of that second already stored (the next page answers them again).
    #[serde(default)]
    pub cursor_ids: Vec<String>,
    /// Items stored from a read page whose events the bus refused: published from the store
    /// under the same event ids before the next page is read (the page is never read again).
    #[serde(default)]
    pub unpublished: Vec<Unpublished>,
}

/// An item stored by a backfill whose event is still to be published.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Unpublished {
    /// Its shop.
    pub shop: crate::ShopNo,
    /// Its id in the shop.
    pub id: String,
}

/// What a page told the progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageOutcome {
    /// Items the page's list held (with a usable id or not).
    pub items: u64,
    /// The answer's `links` name a next page: a hint only, since Cafe24's published product
    /// answers carry no `links` at all (docs/cafe24-conformance.md).
    pub links_next: bool,
    /// Products: the largest product number on the page.
    pub last_product_no: Option<u64>,
}

impl PageOutcome {
    /// Whether more may follow: the page was full (`limit` items), or its links say so. Only a
    /// short page ends a listing — never a missing `links`.
    pub fn more_after(&self, limit: u64) -> bool {
        self.items >= limit || self.links_next
    }
}

impl Progress {
    /// A fresh progress for `job_id`.
    pub fn new(job_id: &str, resource: Resource, since_ms: u64, until_ms: u64) -> Self {
        let since_ms = since_ms / 1_000 * 1_000;
        Self {
            job_id: job_id.to_owned(),
            resource,
            since_ms,
            until_ms: (until_ms / 1_000 * 1_000).max(since_ms),
            window_start_ms: since_ms,
            window_len_ms: ORDER_WINDOW_MS,
            offset: 0,
            since_product_no: 0,
            pages: 0,
            pages_reread: 0,
            stored: 0,
            seen: 0,
            done: false,
            shops: Vec::new(),
            shop_index: 0,
            joined_from_ms: since_ms,
            cursor_ids: Vec::new(),
            unpublished: Vec::new(),
        }
    }

    /// The shop being read (shop 1 until the shops are listed).
    pub fn shop(&self) -> crate::ShopNo {
        self.shops.get(self.shop_index).copied().unwrap_or_default()
    }

    /// The current shop's listing is done: the next shop from its start, or done.
    fn finish_shop(&mut self) {
        if self.shop_index + 1 < self.shops.len() {
            self.shop_index += 1;
            self.window_start_ms = self.since_ms;
            self.window_len_ms = ORDER_WINDOW_MS;
            self.offset = 0;
            self.since_product_no = 0;
            self.joined_from_ms = self.since_ms;
            self.cursor_ids.clear();
        } else {
            self.done = true;
        }
    }

    /// Customers: whether member `id` of a page is one this backfill has not stored yet.
    pub fn is_new_member(&self, id: &str) -> bool {
        !self.cursor_ids.iter().any(|c| c == id)
    }

    /// Customers: moves past a page of `returned` members, `members` being their ids and join
    /// times (whatever their order) — the new ones stored. A short page, or one reaching past
    /// the period, ends the shop's listing; a full one moves the cursor to its latest join
    /// second. `true` when the page could not move the cursor (over a page of members joined
    /// in one second: the rest of that second is skipped, and the caller says so).
    pub fn advance_members(&mut self, returned: u64, members: &[(String, u64)]) -> bool {
        self.pages += 1;
        let new: Vec<&(String, u64)> = members.iter().filter(|(id, _)| self.is_new_member(id)).collect();
        self.seen += new.len() as u64;
        let latest = members.iter().map(|(_, t)| t / 1_000 * 1_000).max().unwrap_or(self.joined_from_ms);
        if returned < CUSTOMER_PAGE_LIMIT || latest > self.until_ms {
            self.finish_shop();
            return false;
        }
        if latest > self.joined_from_ms {
            self.joined_from_ms = latest;
            self.cursor_ids =
                members.iter().filter(|(_, t)| t / 1_000 * 1_000 == latest).map(|(id, _)| id.clone()).collect();
            false
        } else if new.is_empty() {
            self.joined_from_ms += 1_000;
            self.cursor_ids.clear();
            true
        } else {
            self.cursor_ids.extend(new.into_iter().map(|(id, _)| id.clone()));
            false
        }
    }

    /// The last second of the current order window (inclusive).
    pub fn window_end_ms(&self) -> u64 {
        let len = (self.window_len_ms / 1_000).max(1) * 1_000;
        self.window_start_ms.saturating_add(len - 1_000).min(self.until_ms)
    }

    /// The next page's path and query under `/api/v2/admin/`, or `None` when done.
    pub fn next_path(&self) -> Option<String> {
        if self.done {
            return None;
        }
        let shop = self.shop();
        Some(match self.resource {
            Resource::Orders => format!(
                "orders?shop_no={shop}&start_date={}&end_date={}&date_type=order_date&embed=items&limit={ORDER_PAGE_LIMIT}&offset={}",
                encode_query_value(&kst_iso(self.window_start_ms)),
                encode_query_value(&kst_iso(self.window_end_ms())),
                self.offset
            ),
            Resource::Products => {
                format!("products?shop_no={shop}&since_product_no={}&limit={PRODUCT_PAGE_LIMIT}", self.since_product_no)
            }
            Resource::Customers => format!(
                "customersprivacy?shop_no={shop}&search_type=created_date&created_start_date={}&limit={CUSTOMER_PAGE_LIMIT}",
                encode_query_value(&kst_iso(self.joined_from_ms))
            ),
        })
    }

    /// Moves past a page whose items are stored.
    pub fn advance(&mut self, page: PageOutcome) {
        self.pages += 1;
        self.seen += page.items;
        match self.resource {
            Resource::Orders => {
                let has_next = page.more_after(ORDER_PAGE_LIMIT);
                if has_next && self.offset + ORDER_PAGE_LIMIT > ORDER_OFFSET_MAX {
                    // More orders in this window than the offset cap reaches: read it again in
                    // halves (the pages read so far are counted as read twice from here on).
                    self.pages_reread += self.offset / ORDER_PAGE_LIMIT + 1;
                    self.window_len_ms = (self.window_len_ms / 2).max(1_000);
                    self.offset = 0;
                } else if has_next {
                    self.offset += ORDER_PAGE_LIMIT;
                } else {
                    let end = self.window_end_ms();
                    self.offset = 0;
                    if end >= self.until_ms {
                        self.finish_shop();
                    } else {
                        self.window_start_ms = end + 1_000;
                    }
                }
            }
            Resource::Products => match page.last_product_no {
                Some(n) if page.more_after(PRODUCT_PAGE_LIMIT) && n > self.since_product_no => {
                    self.since_product_no = n
                }
                _ => self.finish_shop(),
            },
            // Members move by their join times (`advance_members`); a page told only its
            // size ends the listing when short.
            Resource::Customers => {
                if !page.more_after(CUSTOMER_PAGE_LIMIT) {
                    self.finish_shop();
                }
            }
        }
    }
}

/// The items of a list page with their ids: `orders` by `order_id`, `products` by `product_no`,
/// and the list's length. `None` when the body has no such list; items without a usable id are
/// left out of the first (and counted in the second: a full page is full either way).
/// Takes the page's items out of `body` (moved, not copied: a page of 100 products with long
/// descriptions is tens of MB, and the worker must hold it once).
pub fn page_items(resource: Resource, mut body: serde_json::Value) -> Option<(Vec<(String, serde_json::Value)>, u64)> {
    let (list, key) = match resource {
        Resource::Orders => ("orders", "order_id"),
        Resource::Products => ("products", "product_no"),
        Resource::Customers => ("customersprivacy", "member_id"),
    };
    let serde_json::Value::Array(items) = body.get_mut(list)?.take() else { return None };
    let returned = items.len() as u64;
    Some((
        items
            .into_iter()
            .filter_map(|it| {
                let id = match it.get(key)? {
                    serde_json::Value::String(s) if crate::ids::is_resource_id(s) => s.clone(),
                    serde_json::Value::Number(n) if n.as_u64().is_some() => n.to_string(),
                    _ => return None,
                };
                Some((id, it))
            })
            .collect(),
        returned,
    ))
}

/// The shops of a `GET /shops` answer (`{"shops": [{"shop_no": 1, …}, …]}`, numbers or
/// strings), in order, each once; `None` when the body has no usable list.
pub fn shops_from_body(body: &serde_json::Value) -> Option<Vec<crate::ShopNo>> {
    let mut out: Vec<crate::ShopNo> = Vec::new();
    for s in body.get("shops")?.as_array()? {
        let n = crate::ShopNo::from_event(Some(s.get("shop_no")?))?;
        if !out.contains(&n) {
            out.push(n);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Why a backfill request cannot be queued.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The period ends before it starts.
    #[error("the period's start is after its end")]
    Reversed,
}

/// The backfill job for a request made at `now_ms` (by `relay resync`, or by an install), and
/// its work-queue message: the mall's bulk group (`<limiter key>.bulk`), so it never holds the
/// mall's live webhooks. A request repeated within the same minute is the same job (same job
/// id = dedup id = idempotency key).
pub fn request(
    mall: &crate::MallId,
    shop_no: Option<crate::ShopNo>,
    resource: Resource,
    (since_ms, until_ms): (u64, u64),
    now_ms: u64,
    scope: &crate::ratelimit::KeyScope,
    trace_prefix: &str,
) -> Result<(crate::jobs::Job, crate::values::OutboundMessage), RequestError> {
    if since_ms > until_ms {
        return Err(RequestError::Reversed);
    }
    let (minute, since, until) = ((now_ms / 60_000).to_string(), since_ms.to_string(), until_ms.to_string());
    let shop = shop_no.map(|s| s.to_string());
    let mut parts: Vec<&[u8]> = vec![
        mall.as_str().as_bytes(),
        resource.as_str().as_bytes(),
        since.as_bytes(),
        until.as_bytes(),
        minute.as_bytes(),
    ];
    // A request for one shop is another job than one for every shop (the latter's id as before).
    if let Some(s) = &shop {
        parts.push(s.as_bytes());
    }
    let id = crate::DedupId::derive("backfill", &parts);
    let job = crate::jobs::Job {
        v: crate::jobs::JOB_VERSION,
        job_id: id.clone(),
        mall_id: mall.clone(),
        kind: crate::jobs::JobKind::Backfill { resource, since_ms, until_ms, only_shop: shop_no },
        class: crate::ratelimit::Class::Bulk,
        trace_id: Some(crate::TraceId::derived(trace_prefix, now_ms / 60_000)),
        event_received_ms: now_ms,
        shop_no: crate::ShopNo::DEFAULT,
    };
    let group_id = scope.key(mall).group(crate::ratelimit::Class::Bulk);
    let body = job.to_body();
    Ok((job, crate::values::OutboundMessage { group_id, dedup_id: id, body }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::tokens::parse_cafe24_token_time;
    use serde_json::json;

    const DAY: u64 = 86_400_000;
    const T0: u64 = 1_735_657_200_000; // 2025-01-01T00:00:00+09:00

    fn page(items: u64, links_next: bool) -> PageOutcome {
        PageOutcome { items, links_next, last_product_no: None }
    }

    fn query(path: &str, k: &str) -> String {
        let q = path.split_once('?').unwrap().1;
        let v = q.split('&').find_map(|kv| kv.strip_prefix(&format!("{k}="))).unwrap();
        v.replace("%3A", ":").replace("%2B", "+")
    }

    #[test]
    fn a_year_of_orders_is_read_in_windows_of_at_most_three_months_without_gaps() {
        let mut p = Progress::new("j", Resource::Orders, T0, T0 + 365 * DAY - 1);
        let mut windows = Vec::new();
        let mut guard = 0;
        while let Some(path) = p.next_path() {
            let (s, e) = (
                parse_cafe24_token_time(&query(&path, "start_date")).unwrap(),
                parse_cafe24_token_time(&query(&path, "end_date")).unwrap(),
            );
            assert!(e - s < 90 * DAY, "{path}");
            assert!(path.contains("embed=items") && path.contains("limit=1000"), "{path}");
            // Two pages a window: a full one, then the rest.
            let full = query(&path, "offset") == "0";
            if windows.last() != Some(&(s, e)) {
                windows.push((s, e));
            }
            p.advance(page(if full { 1000 } else { 10 }, full));
            guard += 1;
            assert!(guard < 100);
        }
        assert_eq!(windows.first().unwrap().0, T0);
        assert_eq!(windows.last().unwrap().1, T0 + 365 * DAY - 1_000, "up to the last second");
        for w in windows.windows(2) {
            assert_eq!(w[1].0, w[0].1 + 1_000, "contiguous windows (whole seconds): {windows:?}");
        }
        assert_eq!((windows.len(), p.pages, p.pages_reread), (5, 10, 0));
    }

    #[test]
    fn a_window_over_the_offset_cap_is_halved_and_read_again() {
        let mut p = Progress::new("j", Resource::Orders, T0, T0 + 80 * DAY);
        for _ in 0..16 {
            p.advance(page(1000, true)); // offsets 0..=15000 all full, more to come
        }
        assert_eq!((p.offset, p.pages, p.pages_reread, p.window_start_ms), (0, 16, 16, T0));
        assert_eq!(p.window_len_ms, ORDER_WINDOW_MS / 2);
        p.advance(page(10, false));
        assert_eq!(p.window_start_ms, T0 + ORDER_WINDOW_MS / 2, "the second half follows");
        assert_eq!(p.window_end_ms(), T0 + 80 * DAY);
        assert!(!p.done);
        p.advance(page(10, false));
        assert!(p.done && p.next_path().is_none());
    }

    #[test]
    fn products_page_by_product_number_until_a_short_page() {
        let mut p = Progress::new("j", Resource::Products, 0, 0);
        assert_eq!(p.next_path().unwrap(), "products?shop_no=1&since_product_no=0&limit=100");
        // Cafe24's published product answers carry no `links`: a full page goes on regardless.
        p.advance(PageOutcome { items: 100, links_next: false, last_product_no: Some(140) });
        assert_eq!(p.next_path().unwrap(), "products?shop_no=1&since_product_no=140&limit=100");
        // A page that does not move the cursor ends the run instead of looping.
        p.advance(PageOutcome { items: 100, links_next: true, last_product_no: Some(140) });
        assert!(p.done);
        let mut p = Progress::new("j", Resource::Products, 0, 0);
        p.advance(PageOutcome { items: 99, links_next: false, last_product_no: Some(99) });
        assert!(p.done, "a short page is the last");
        let mut p = Progress::new("j", Resource::Products, 0, 0);
        p.advance(PageOutcome { items: 99, links_next: true, last_product_no: Some(99) });
        assert!(!p.done, "links that name a next page are followed even after a short page");
    }

    #[test]
    fn an_order_window_goes_on_after_a_full_page_without_links() {
        let mut p = Progress::new("j", Resource::Orders, T0, T0 + DAY);
        p.advance(page(1000, false));
        assert_eq!((p.offset, p.done), (1000, false), "a full page: the next one is read");
        p.advance(page(999, false));
        assert!(p.done);
    }

    #[test]
    fn page_items_take_ids_defensively() {
        let body = json!({"orders": [{"order_id": "20250101-0000001"}, {"order_id": "../x"}, {"order_id": 5}, {}]});
        let (items, returned) = page_items(Resource::Orders, body).unwrap();
        let ids: Vec<String> = items.into_iter().map(|x| x.0).collect();
        assert_eq!((ids, returned), (vec!["20250101-0000001".to_owned(), "5".to_owned()], 4));
        let body = json!({"products": [{"product_no": 12}, {"product_no": -1}, {"product_no": "13"}]});
        assert_eq!(page_items(Resource::Products, body).map(|(i, n)| (i.len(), n)), Some((2, 3)));
        assert!(page_items(Resource::Orders, json!({"orders": {}})).is_none());
        assert!(page_items(Resource::Products, json!(null)).is_none());
        assert_eq!((Resource::parse("orders"), Resource::parse("carts")), (Some(Resource::Orders), None));
    }

    #[test]
    fn a_request_goes_to_the_bulk_group_and_a_repeat_within_a_minute_is_the_same_job() {
        use crate::ratelimit::KeyScope;
        let m = crate::MallId::parse("bigshop").unwrap();
        let (j, msg) = request(&m, None, Resource::Orders, (1, 2), 60_000, &KeyScope::Mall, "resync").unwrap();
        assert_eq!(msg.group_id.as_str(), "bigshop.bulk");
        assert_eq!(msg.dedup_id, j.job_id);
        assert_eq!(crate::jobs::Job::parse(&msg.body).unwrap(), j);
        assert_eq!(j.trace(), "resync-1");
        let (again, _) = request(&m, None, Resource::Orders, (1, 2), 119_999, &KeyScope::Mall, "resync").unwrap();
        assert_eq!(again.job_id, j.job_id);
        let (later, _) = request(&m, None, Resource::Orders, (1, 2), 120_000, &KeyScope::Mall, "resync").unwrap();
        assert_ne!(later.job_id, j.job_id);
        assert_eq!(request(&m, None, Resource::Orders, (3, 2), 0, &KeyScope::Mall, "x"), Err(RequestError::Reversed));
        let two = crate::ShopNo::new(2);
        let (one_shop, _) = request(&m, two, Resource::Orders, (1, 2), 60_000, &KeyScope::Mall, "resync").unwrap();
        assert_ne!(one_shop.job_id, j.job_id, "one shop is another job than every shop");
        assert!(matches!(one_shop.kind, crate::jobs::JobKind::Backfill { only_shop: Some(s), .. } if Some(s) == two));
    }

    #[test]
    fn a_multi_shop_mall_is_read_shop_after_shop_each_call_naming_its_shop() {
        let shops: Vec<crate::ShopNo> = [1, 2].into_iter().filter_map(crate::ShopNo::new).collect();
        let mut p = Progress::new("j", Resource::Products, 0, 0);
        assert!(p.next_path().unwrap().starts_with("products?shop_no=1&"), "shop 1 until listed");
        p.shops = shops;
        p.advance(PageOutcome { items: 100, links_next: false, last_product_no: Some(100) });
        p.advance(PageOutcome { items: 3, links_next: false, last_product_no: Some(103) });
        assert!(!p.done, "shop 2 is next");
        assert_eq!(p.next_path().unwrap(), "products?shop_no=2&since_product_no=0&limit=100", "from its start");
        p.advance(PageOutcome { items: 7, links_next: false, last_product_no: Some(7) });
        assert!(p.done && p.next_path().is_none());
        assert_eq!((p.pages, p.seen), (3, 110));

        let mut o = Progress::new("j", Resource::Orders, T0, T0 + DAY);
        o.shops = [3, 1].into_iter().filter_map(crate::ShopNo::new).collect();
        assert_eq!(query(&o.next_path().unwrap(), "shop_no"), "3");
        o.advance(page(10, false));
        assert_eq!((query(&o.next_path().unwrap(), "shop_no"), o.window_start_ms, o.offset), ("1".into(), T0, 0));
        o.advance(page(10, false));
        assert!(o.done);
    }

    /// Survivors of a `cargo mutants` run on this file (117 viable, 109 caught before these):
    /// the resource names, a period of one instant, a full page of members ending exactly at
    /// the period's end, and a customers page told only its size.
    #[test]
    fn names_bounds_and_page_ends_hold_at_their_edges() {
        for r in [Resource::Orders, Resource::Products, Resource::Customers] {
            assert_eq!(Resource::parse(r.as_str()), Some(r));
        }
        assert_eq!(
            [Resource::Orders, Resource::Products, Resource::Customers].map(Resource::as_str),
            ["orders", "products", "customers"]
        );
        let m = crate::MallId::parse("shop1").unwrap();
        assert!(
            request(&m, None, Resource::Orders, (5, 5), 0, &crate::ratelimit::KeyScope::Mall, "x").is_ok(),
            "one instant"
        );
        // Members up to the period's last second keep the listing going.
        let until = T0 + 10_000;
        let mut p = Progress::new("j", Resource::Customers, T0, until);
        let full: Vec<(String, u64)> = (0..1_000).map(|i| (format!("e{i:04}"), until)).collect();
        assert!(!p.advance_members(1_000, &full));
        assert!(!p.done, "a member who joined in the period's last second is inside it");
        // A customers page known only by its size: full goes on, short ends.
        let mut c = Progress::new("j", Resource::Customers, T0, until);
        c.advance(page(CUSTOMER_PAGE_LIMIT, false));
        assert!(!c.done);
        c.advance(page(3, false));
        assert!(c.done);
    }

    #[test]
    fn members_page_by_join_second_without_storing_one_twice() {
        let mut p = Progress::new("j", Resource::Customers, T0, T0 + 10 * DAY);
        assert_eq!(query(&p.next_path().unwrap(), "created_start_date"), "2025-01-01T00:00:00+09:00");
        let page = |n: usize, from: u64, at: u64| -> Vec<(String, u64)> {
            (0..n).map(|i| (format!("m{:05}", from + i as u64), if i + 2 >= n { at } else { T0 })).collect()
        };
        // A full page whose last two members joined at T0 + 5 s: the cursor moves there.
        let first = page(1_000, 0, T0 + 5_000);
        assert!(!p.advance_members(1_000, &first));
        assert_eq!((p.joined_from_ms, p.cursor_ids.len(), p.seen), (T0 + 5_000, 2, 1_000));
        assert!(!p.is_new_member("m00999") && p.is_new_member("m01000"), "the cursor's members are known");
        // The next page answers those two again: they are not counted (or stored) twice.
        let mut second = vec![("m00998".to_owned(), T0 + 5_000), ("m00999".to_owned(), T0 + 5_000)];
        second.push(("m01000".to_owned(), T0 + 6_000));
        assert!(!p.advance_members(3, &second));
        assert!(p.done && p.seen == 1_001, "a short page ends it: {p:?}");
        assert_eq!(p.pages, 2);

        // A full page of members all at the cursor's second adds them; one with nothing new
        // skips the rest of that second (and says so).
        let mut q = Progress::new("j", Resource::Customers, T0, T0 + DAY);
        let same: Vec<(String, u64)> = (0..1_000).map(|i| (format!("s{i:04}"), T0)).collect();
        assert!(!q.advance_members(1_000, &same));
        assert_eq!((q.joined_from_ms, q.cursor_ids.len()), (T0, 1_000));
        assert!(q.advance_members(1_000, &same), "stuck: reported");
        assert_eq!((q.joined_from_ms, q.cursor_ids.len()), (T0 + 1_000, 0));
        // A page reaching past the period ends the listing.
        let late: Vec<(String, u64)> = (0..1_000).map(|i| (format!("l{i:04}"), T0 + 2 * DAY)).collect();
        assert!(!q.advance_members(1_000, &late) && q.done);
    }

    #[test]
    fn shops_are_read_from_cafe24s_list() {
        let got = |v: serde_json::Value| {
            shops_from_body(&v).map(|s| s.into_iter().map(crate::ShopNo::get).collect::<Vec<_>>())
        };
        assert_eq!(
            got(json!({"shops": [{"shop_no": 1, "shop_name": "KR"}, {"shop_no": "2"}, {"shop_no": 1}]})),
            Some(vec![1, 2])
        );
        for bad in [
            json!({}),
            json!({"shops": []}),
            json!({"shops": [{"shop_no": 0}]}),
            json!({"shops": [{}]}),
            json!({"shops": "1"}),
        ] {
            assert_eq!(got(bad.clone()), None, "{bad}");
        }
    }
}
