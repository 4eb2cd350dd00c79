//! Endpoints with a call limit of their own. Cafe24 documents a limit per endpoint — 40 for
//! most, 10 for `scripttags` — and each answer's `X-Api-Call-Limit: used/limit` names the limit
//! that applied. Whether such an endpoint counts in the mall's bucket or in one of its own is
//! not documented; a call to it is admitted only while the mall's level is under its limit
//! (`LimiterConfig::decide_within`), which is safe either way.
//!
//! The limits come from the documentation (seeded below) and from every answer's header, by
//! endpoint family (the path's first segment). A family's limit first seen in an answer was
//! unknown to that first call: at worst one 429, which the feedback absorbs.

use std::collections::HashMap;
use std::sync::Mutex;

/// Documented endpoint limits below the mall's bucket.
pub const DOCUMENTED: &[(&str, u32)] = &[("scripttags", 10)];

/// More families than this are not remembered (a bounded map; paths are validated input).
const MAX_FAMILIES: usize = 256;

/// The endpoint family of a path under `/api/v2/admin/`: its first segment (`orders/1/items` →
/// `orders`).
pub fn family(path_and_query: &str) -> &str {
    let p = path_and_query.trim_start_matches('/');
    let end = p.find(['/', '?']).unwrap_or(p.len());
    p.get(..end).unwrap_or("")
}

/// The limits known to this process, by family.
#[derive(Debug)]
pub struct EndpointCaps(Mutex<HashMap<String, u32>>);

impl Default for EndpointCaps {
    fn default() -> Self {
        Self(Mutex::new(DOCUMENTED.iter().map(|(f, c)| ((*f).to_owned(), *c)).collect()))
    }
}

impl EndpointCaps {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The limit of `family`, when one is known.
    pub fn cap(&self, family: &str) -> Option<u32> {
        self.lock().get(family).copied()
    }

    /// Remembers the limit an answer for `family` named (the header's denominator).
    pub fn learn(&self, family: &str, cap: u32) {
        if family.is_empty() || cap == 0 {
            return;
        }
        let mut m = self.lock();
        if m.get(family) == Some(&cap) {
            return;
        }
        if m.len() >= MAX_FAMILIES && !m.contains_key(family) {
            return;
        }
        m.insert(family.to_owned(), cap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_first_segments_and_limits_come_from_the_docs_then_the_headers() {
        assert_eq!(family("orders/1/items?embed=x"), "orders");
        assert_eq!(family("/scripttags"), "scripttags");
        assert_eq!(family("products?limit=1"), "products");
        assert_eq!(family(""), "");
        let c = EndpointCaps::default();
        assert_eq!((c.cap("scripttags"), c.cap("orders")), (Some(10), None));
        c.learn("orders", 40);
        c.learn("coupons", 20);
        c.learn("", 5);
        c.learn("x", 0);
        assert_eq!((c.cap("orders"), c.cap("coupons"), c.cap(""), c.cap("x")), (Some(40), Some(20), None, None));
        for i in 0..2 * MAX_FAMILIES {
            c.learn(&format!("f{i}"), 7);
        }
        assert!(c.lock().len() <= MAX_FAMILIES);
        assert_eq!(c.cap("coupons"), Some(20), "what was learnt stays");
    }
}
