//! Deterministic per-mall data: orders with items, products, customers. The same seed and mall
//! id give the same data; the control API changes it (a product's `updated_date` moves; an
//! order, like Cafe24's, has none: its content changes).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::kst;

/// splitmix64: tiny deterministic generator.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded from a number and a string.
    pub fn new(seed: u64, salt: &str) -> Self {
        let mut h = seed ^ 0x9E37_79B9_7F4A_7C15;
        for b in salt.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
        }
        Self(h)
    }

    /// Next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// An order.
#[derive(Clone, Debug)]
pub struct Order {
    /// `20200717-0029236`
    pub order_id: String,
    /// Placed at, epoch ms.
    pub order_date_ms: u64,
    /// Last change, epoch ms. Internal: Cafe24's order object has no `updated_date` (nor any
    /// other "modified" field), so the answer does not carry it; compare contents instead.
    pub updated_ms: u64,
    /// `T`/`F`
    pub paid: bool,
    /// Cafe24 shipping status code (`F` not shipped, `M` shipping, `T` delivered).
    pub shipping_status: String,
    /// Buyer's member id.
    pub member_id: String,
    /// (product_no, quantity, unit price)
    pub items: Vec<(u64, u32, u64)>,
}

impl Order {
    /// The API representation; `items` only when embedded.
    pub fn to_json(&self, embed_items: bool, products: &BTreeMap<u64, Product>) -> Value {
        let total: u64 = self.items.iter().map(|(_, q, p)| u64::from(*q) * p).sum();
        let mut v = json!({
            "shop_no": 1,
            "order_id": self.order_id,
            "currency": "KRW",
            "order_date": kst::iso_kst(self.order_date_ms),
            "payment_date": if self.paid { Value::String(kst::iso_kst(self.order_date_ms + 60_000)) } else { Value::Null },
            "paid": if self.paid { "T" } else { "F" },
            "canceled": "F",
            "shipping_status": self.shipping_status,
            "member_id": self.member_id,
            "actual_order_amount": { "order_price_amount": format!("{total}.00"), "shipping_fee": "0.00" },
        });
        if embed_items {
            let items: Vec<Value> = self
                .items
                .iter()
                .enumerate()
                .map(|(i, (no, q, p))| {
                    json!({
                        "order_item_code": format!("{}-{:02}", self.order_id, i + 1),
                        "product_no": no,
                        "product_code": products.get(no).map(|p| p.product_code.clone()).unwrap_or_default(),
                        "product_name": products.get(no).map(|p| p.product_name.clone()).unwrap_or_default(),
                        "quantity": q,
                        "product_price": format!("{p}.00"),
                    })
                })
                .collect();
            if let Some(o) = v.as_object_mut() {
                o.insert("items".into(), Value::Array(items));
            }
        }
        v
    }
}

/// A product.
#[derive(Clone, Debug)]
pub struct Product {
    /// Product number.
    pub product_no: u64,
    /// `P000000A`
    pub product_code: String,
    pub product_name: String,
    /// Price in KRW.
    pub price: u64,
    /// `T`/`F`
    pub selling: bool,
    /// Created, epoch ms.
    pub created_ms: u64,
    /// Last change, epoch ms.
    pub updated_ms: u64,
    /// HTML description (empty: not returned).
    pub description: String,
}

impl Product {
    /// The API representation.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "shop_no": 1,
            "product_no": self.product_no,
            "product_code": self.product_code,
            "product_name": self.product_name,
            "price": format!("{}.00", self.price),
            "selling": if self.selling { "T" } else { "F" },
            "display": "T",
            "created_date": kst::iso_kst(self.created_ms),
            "updated_date": kst::iso_kst(self.updated_ms),
        });
        if let (false, Some(o)) = (self.description.is_empty(), v.as_object_mut()) {
            o.insert("description".into(), Value::String(self.description.clone()));
        }
        v
    }

    /// A long HTML description of about `bytes` bytes (paragraphs of varied text, as merchants
    /// write them).
    pub fn long_description(no: u64, bytes: usize) -> String {
        let mut s = String::with_capacity(bytes + 200);
        let mut i: u64 = 0;
        while s.len() < bytes {
            s.push_str(&format!(
                "<p class=\"detail-{}\">상품 {no} 상세 설명 {i}: 소재 면 {}%, 세탁 {}°C, 사이즈 {} — 배송 {}일.</p>\n",
                i % 7,
                40 + (i * 37) % 60,
                20 + (i * 13) % 40,
                ["S", "M", "L", "XL"].get((i % 4) as usize).unwrap_or(&"M"),
                1 + i % 5
            ));
            i += 1;
        }
        s
    }
}

/// A customer (the non-personal fields `/customers` returns).
#[derive(Clone, Debug)]
pub struct Customer {
    /// Member id.
    pub member_id: String,
    /// Customer group.
    pub group_no: u32,
    /// Joined, epoch ms.
    pub created_ms: u64,
}

impl Customer {
    /// `/customersprivacy`'s representation: personal data (made up here) beside the rest.
    pub fn to_privacy_json(&self) -> Value {
        let mut v = self.to_json();
        if let Some(o) = v.as_object_mut() {
            o.insert("name".into(), Value::String(format!("Member {}", self.member_id)));
            o.insert("email".into(), Value::String(format!("{}@example.com", self.member_id)));
            o.insert("cellphone".into(), Value::String("010-0000-0000".into()));
        }
        v
    }

    /// The API representation.
    pub fn to_json(&self) -> Value {
        json!({
            "shop_no": 1,
            "member_id": self.member_id,
            "group_no": self.group_no,
            "member_authentication": "T",
            "created_date": kst::iso_kst(self.created_ms),
        })
    }
}

/// All data of one mall.
#[derive(Clone, Debug, Default)]
pub struct MallData {
    /// By order id (ids sort by date, then sequence).
    pub orders: BTreeMap<String, Order>,
    /// By product number.
    pub products: BTreeMap<u64, Product>,
    /// By member id.
    pub customers: BTreeMap<String, Customer>,
    /// Script tags the app registered (`POST scripttags`), as answered.
    pub scripttags: Vec<serde_json::Value>,
    next_order_seq: u64,
}

/// Sizes of the generated data.
#[derive(Clone, Copy, Debug)]
pub struct DataSizes {
    /// Orders per mall.
    pub orders: u32,
    /// Products per mall.
    pub products: u32,
    /// Customers per mall.
    pub customers: u32,
    /// Orders are spread over this many days before the mall's first touch.
    pub history_days: u32,
}

impl MallData {
    /// Generates a mall's data. Orders are spread over the `history_days` before `now_ms`.
    pub fn generate(seed: u64, mall: &str, sizes: DataSizes, now_ms: u64) -> Self {
        let mut rng = Rng::new(seed, mall);
        let day = 86_400_000u64;
        let span = u64::from(sizes.history_days.max(1)) * day;
        let start = now_ms.saturating_sub(span);
        let mut d = Self::default();
        for no in 1..=u64::from(sizes.products) {
            let created = start.saturating_sub(rng.below(365) * day);
            d.products.insert(
                no,
                Product {
                    product_no: no,
                    product_code: format!("P{no:07X}"),
                    product_name: format!("Sample product {no}"),
                    price: 1_000 * (1 + rng.below(50)),
                    selling: rng.below(10) > 0,
                    created_ms: created,
                    updated_ms: created + rng.below(30) * day,
                    description: String::new(),
                },
            );
        }
        for n in 1..=sizes.customers {
            let id = format!("member{n:04}");
            d.customers.insert(
                id.clone(),
                Customer {
                    member_id: id,
                    group_no: 1 + (n % 3),
                    created_ms: start.saturating_sub(rng.below(700) * day),
                },
            );
        }
        let mut times: Vec<u64> = (0..sizes.orders).map(|_| start + rng.below(span)).collect();
        times.sort_unstable();
        for t in times {
            let items = (0..1 + rng.below(3))
                .map(|_| {
                    (
                        1 + rng.below(u64::from(sizes.products.max(1))),
                        1 + rng.below(3) as u32,
                        1_000 * (1 + rng.below(50)),
                    )
                })
                .collect();
            let member = format!("member{:04}", 1 + rng.below(u64::from(sizes.customers.max(1))));
            d.add_order(t, member, items, rng.below(4) > 0);
        }
        d
    }

    /// Generates the data of shop `shop` (2 or more) of a multi-shop mall: the same product
    /// numbers with the shop's own names and prices (Cafe24 shares products across a mall's
    /// shops, each shop with its own display), its own customers and orders (order ids stay
    /// unique in the mall: each shop's sequence starts a million further).
    pub fn generate_shop(seed: u64, mall: &str, shop: u32, sizes: DataSizes, now_ms: u64) -> Self {
        let mut d = Self::generate(seed, &format!("{mall}#shop{shop}"), DataSizes { orders: 0, ..sizes }, now_ms);
        for p in d.products.values_mut() {
            p.product_name = format!("{} (shop {shop})", p.product_name);
        }
        d.next_order_seq = u64::from(shop.saturating_sub(1)) * 1_000_000;
        let mut rng = Rng::new(seed, &format!("{mall}#shop{shop}#orders"));
        let day = 86_400_000u64;
        let span = u64::from(sizes.history_days.max(1)) * day;
        let start = now_ms.saturating_sub(span);
        let mut times: Vec<u64> = (0..sizes.orders).map(|_| start + rng.below(span)).collect();
        times.sort_unstable();
        for t in times {
            let product = 1 + rng.below(u64::from(sizes.products.max(1)));
            let member = format!("member{:04}", 1 + rng.below(u64::from(sizes.customers.max(1))));
            d.add_order(t, member, vec![(product, 1, 1_000 * (1 + rng.below(50)))], rng.below(4) > 0);
        }
        d
    }

    /// Adds a new order placed at `at_ms`; returns its id.
    pub fn add_order(&mut self, at_ms: u64, member_id: String, items: Vec<(u64, u32, u64)>, paid: bool) -> String {
        self.next_order_seq += 1;
        let id = format!("{}-{:07}", kst::ymd_compact(at_ms), self.next_order_seq);
        self.orders.insert(
            id.clone(),
            Order {
                order_id: id.clone(),
                order_date_ms: at_ms,
                updated_ms: at_ms,
                paid,
                shipping_status: "F".into(),
                member_id,
                items,
            },
        );
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZES: DataSizes = DataSizes { orders: 20, products: 10, customers: 5, history_days: 120 };

    #[test]
    fn same_seed_and_mall_give_the_same_data() {
        let a = MallData::generate(7, "shop1", SIZES, 1_800_000_000_000);
        let b = MallData::generate(7, "shop1", SIZES, 1_800_000_000_000);
        let c = MallData::generate(7, "shop2", SIZES, 1_800_000_000_000);
        let ids = |d: &MallData| d.orders.keys().cloned().collect::<Vec<_>>();
        assert_eq!(ids(&a), ids(&b));
        assert_eq!(a.orders.len(), 20);
        let price = |d: &MallData| d.products.values().map(|p| p.price).collect::<Vec<_>>();
        assert_eq!(price(&a), price(&b));
        assert_ne!(price(&a), price(&c));
    }

    #[test]
    fn order_ids_look_like_cafe24s() {
        let d = MallData::generate(1, "m", SIZES, 1_800_000_000_000);
        for id in d.orders.keys() {
            let (date, seq) = id.split_once('-').unwrap();
            assert_eq!((date.len(), seq.len()), (8, 7), "{id}");
        }
    }
}
