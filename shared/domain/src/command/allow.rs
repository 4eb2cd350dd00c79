//! The deployment's allow-list of command requests (`COMMAND_ALLOW`).

use super::{admin_path, Command, Method};

/// The requests a deployment lets the app make (`COMMAND_ALLOW`): comma-separated entries
/// `METHOD path`, where `METHOD` is GET, POST, PUT, DELETE or `*`, and the path's segments are
/// literal, `*` (exactly one segment) or a final `**` (any number, none included). Empty: every
/// request (Cafe24's own scope check still applies). Example:
/// `POST points, POST orders/*/shipments, GET **`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList(Vec<(Option<Method>, Vec<String>)>);

impl AllowList {
    /// Parses the setting; the error names the entry that is not `METHOD path`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad =
                || format!("`{entry}` is not `METHOD path` (GET, POST, PUT, DELETE or *; segments, * or a final **)");
            let (m, p) = entry.split_once(char::is_whitespace).ok_or_else(bad)?;
            let method = match m {
                "*" => None,
                m => Some(Method::parse(m).ok_or_else(bad)?),
            };
            let p = p.trim();
            let p = p.strip_prefix("/api/v2/admin/").or_else(|| p.strip_prefix('/')).unwrap_or(p);
            let segs: Vec<String> = p.split('/').map(str::to_owned).collect();
            let n = segs.len();
            for (i, seg) in segs.iter().enumerate() {
                let wild = seg == "*" || (seg == "**" && i + 1 == n);
                if !wild && admin_path(seg).is_err() {
                    return Err(bad());
                }
            }
            out.push((method, segs));
        }
        Ok(Self(out))
    }

    /// Whether `cmd` may be sent: its request, and its settling read (a GET) if it names one.
    pub fn allows_command(&self, cmd: &Command) -> bool {
        self.allows(cmd.method, &cmd.path) && cmd.settle.as_ref().is_none_or(|s| self.allows(Method::Get, &s.path))
    }

    /// Whether `method` `path` (as [`admin_path`] returns it) may be sent.
    pub fn allows(&self, method: Method, path: &str) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let segs: Vec<&str> = path.split('/').collect();
        self.0.iter().any(|(m, pattern)| {
            let (fixed, tail) = match pattern.split_last() {
                Some((last, rest)) if last == "**" => (rest, true),
                _ => (pattern.as_slice(), false),
            };
            m.is_none_or(|m| m == method)
                && (if tail { segs.len() >= fixed.len() } else { segs.len() == fixed.len() })
                && fixed.iter().zip(&segs).all(|(p, s)| p == "*" || p == s)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::command::Refusal;

    #[test]
    fn the_allow_list_lets_through_exactly_what_its_entries_name() {
        use Method::*;
        let list =
            AllowList::parse(" POST points, POST orders/*/shipments ,PUT /api/v2/admin/products/*, GET ** ").unwrap();
        for (m, p) in [
            (Post, "points"),
            (Post, "orders/20260101-0000001/shipments"),
            (Put, "products/12"),
            (Get, "orders/1"),
            (Get, "customers"),
        ] {
            assert!(list.allows(m, p), "{m:?} {p}");
        }
        for (m, p) in [
            (Put, "points"),
            (Post, "points/1"),
            (Post, "orders/1"),
            (Post, "orders/1/shipments/2"),
            (Put, "products"),
            (Put, "products/12/variants"),
            (Delete, "products/12"),
            (Post, "customers"),
        ] {
            assert!(!list.allows(m, p), "{m:?} {p}");
        }
        let any = AllowList::parse("* orders/**").unwrap();
        assert!(any.allows(Delete, "orders/1/items/2") && any.allows(Get, "orders"));
        assert!(!any.allows(Get, "products/1"));
        // Unset: everything (Cafe24's scope check still applies).
        assert!(AllowList::parse("").unwrap().allows(Post, "anything/at/all"));
        assert!(AllowList::parse(" , ").unwrap().allows(Delete, "x"));
        for bad in [
            "points",
            "PATCH points",
            "post points",
            "POST ../points",
            "POST points/**/x",
            "POST https://evil.example/points",
            "POST points?x=1",
            "POST orders//shipments",
            "GET **, POST",
        ] {
            assert!(AllowList::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Refusal::NotAllowed.code(), "not_allowed");
    }
}
