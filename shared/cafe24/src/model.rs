//! Typed views of the Cafe24 responses the pipeline uses. Each keeps the raw JSON (to store as a
//! snapshot) and the few fields the pipeline reads, parsed defensively: a missing optional field
//! is `None`, never a panic; a missing identifying field is a `Decode` error.

use serde_json::Value;

use crate::error::Cafe24Error;

fn str_field(v: &Value, k: &str) -> Option<String> {
    match v.get(k)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn object<'a>(body: &'a Value, key: &str) -> Result<&'a Value, Cafe24Error> {
    body.get(key).filter(|v| v.is_object()).ok_or_else(|| Cafe24Error::Decode(format!("no `{key}` object")))
}

/// An order with its items.
#[derive(Clone, Debug, PartialEq)]
pub struct Order {
    /// `20200717-0029236`
    pub order_id: String,
    /// `updated_date` as sent, if any: Cafe24's order object has none (nothing relies on it).
    pub updated_date: Option<String>,
    /// Number of items embedded.
    pub item_count: usize,
    /// The whole `order` object.
    pub raw: Value,
}

impl Order {
    /// From a `{"order": {...}}` body.
    pub fn from_body(body: &Value) -> Result<Self, Cafe24Error> {
        let o = object(body, "order")?;
        let order_id = str_field(o, "order_id").ok_or_else(|| Cafe24Error::Decode("order without order_id".into()))?;
        Ok(Self {
            order_id,
            updated_date: str_field(o, "updated_date"),
            item_count: o.get("items").and_then(Value::as_array).map_or(0, Vec::len),
            raw: o.clone(),
        })
    }
}

/// A product.
#[derive(Clone, Debug, PartialEq)]
pub struct Product {
    /// Product number.
    pub product_no: u64,
    /// `updated_date`, if any.
    pub updated_date: Option<String>,
    /// The whole `product` object.
    pub raw: Value,
}

impl Product {
    /// From a `{"product": {...}}` body.
    pub fn from_body(body: &Value) -> Result<Self, Cafe24Error> {
        let p = object(body, "product")?;
        let product_no = str_field(p, "product_no")
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| Cafe24Error::Decode("product without a numeric product_no".into()))?;
        Ok(Self { product_no, updated_date: str_field(p, "updated_date"), raw: p.clone() })
    }
}

/// A customer (non-personal fields).
#[derive(Clone, Debug, PartialEq)]
pub struct Customer {
    /// Member id.
    pub member_id: String,
    /// The whole object.
    pub raw: Value,
}

impl Customer {
    /// From a `{"customers": [...]}` body.
    pub fn list_from_body(body: &Value) -> Result<Vec<Self>, Cafe24Error> {
        let list = body
            .get("customers")
            .and_then(Value::as_array)
            .ok_or_else(|| Cafe24Error::Decode("no `customers` list".into()))?;
        Ok(list.iter().filter_map(|c| Some(Self { member_id: str_field(c, "member_id")?, raw: c.clone() })).collect())
    }
}

/// One `/webhooks/logs` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookLogEntry {
    /// Log id.
    pub log_id: String,
    /// `G`, `R`, `T`.
    pub log_type: String,
    /// Event number.
    pub event_no: Option<u32>,
    /// Delivery trace id.
    pub trace_id: Option<String>,
    /// Delivered successfully.
    pub success: bool,
    /// The webhook body (a JSON string inside the log).
    pub request_body: Option<String>,
}

impl WebhookLogEntry {
    /// From a `{"logs": [...]}` body. Entries without a `log_id` are skipped.
    pub fn list_from_body(body: &Value) -> Result<Vec<Self>, Cafe24Error> {
        let list =
            body.get("logs").and_then(Value::as_array).ok_or_else(|| Cafe24Error::Decode("no `logs` list".into()))?;
        Ok(list
            .iter()
            .filter_map(|l| {
                Some(Self {
                    log_id: str_field(l, "log_id")?,
                    log_type: str_field(l, "log_type").unwrap_or_default(),
                    event_no: str_field(l, "event_no").and_then(|s| s.parse().ok()),
                    trace_id: str_field(l, "trace_id"),
                    success: str_field(l, "success").as_deref() == Some("T"),
                    request_body: str_field(l, "request_body"),
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bodies_parse_defensively() {
        assert!(Order::from_body(&json!({"order": {"order_id": "20200717-0029236", "items": [{}, {}]}}))
            .is_ok_and(|o| o.item_count == 2));
        for bad in [json!({}), json!({"order": []}), json!({"order": {"items": []}}), json!(null), json!("x")] {
            assert!(matches!(Order::from_body(&bad), Err(Cafe24Error::Decode(_))), "{bad}");
        }
        assert_eq!(Product::from_body(&json!({"product": {"product_no": "17"}})).unwrap().product_no, 17);
        assert!(Product::from_body(&json!({"product": {"product_no": -3}})).is_err());
        assert_eq!(Customer::list_from_body(&json!({"customers": [{"member_id": "a"}, {"x": 1}]})).unwrap().len(), 1);
        let logs = json!({"logs": [{"log_id": "L1", "event_no": 90001, "success": "T"}, {"event_no": 1}]});
        let l = WebhookLogEntry::list_from_body(&logs).unwrap();
        assert_eq!((l.len(), l[0].event_no, l[0].success), (1, Some(90001), true));
    }
}
