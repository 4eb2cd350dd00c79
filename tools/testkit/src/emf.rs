//! A checker for CloudWatch Embedded Metric Format documents, written from the published
//! specification (not from our writer): the `_aws` metadata object, `Timestamp` in epoch
//! milliseconds, `CloudWatchMetrics` directives with a `Namespace`, `Dimensions` (arrays of at
//! most 30 member names that resolve to string members) and `Metrics` (at most 100 definitions
//! whose `Name` resolves to a number or an array of at most 100 numbers, optional `Unit` from the
//! CloudWatch list, optional `StorageResolution` 1 or 60).

use serde_json::Value;

/// The units CloudWatch accepts.
pub const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// `Ok` if `doc` is a valid EMF document, else every violation found.
pub fn validate(doc: &Value) -> Result<(), Vec<String>> {
    let mut errs = Vec::new();
    let Some(root) = doc.as_object() else { return Err(vec!["root is not an object".into()]) };
    let Some(aws) = root.get("_aws").and_then(Value::as_object) else {
        return Err(vec!["_aws is missing or not an object".into()]);
    };
    if aws.get("Timestamp").is_none_or(|t| t.as_u64().is_none()) {
        errs.push("_aws.Timestamp must be a non-negative integer (epoch ms)".into());
    }
    let Some(directives) = aws.get("CloudWatchMetrics").and_then(Value::as_array) else {
        errs.push("_aws.CloudWatchMetrics must be an array".into());
        return Err(errs);
    };
    for (i, d) in directives.iter().enumerate() {
        let ns = d.get("Namespace").and_then(Value::as_str).unwrap_or("");
        if ns.is_empty() || ns.len() > 255 {
            errs.push(format!("directive {i}: Namespace must be 1–255 characters"));
        }
        match d.get("Dimensions").and_then(Value::as_array) {
            None => errs.push(format!("directive {i}: Dimensions must be an array")),
            Some(sets) => {
                for set in sets {
                    match set.as_array() {
                        None => errs.push(format!("directive {i}: a dimension set is not an array")),
                        Some(names) if names.len() > 30 => errs.push(format!("directive {i}: more than 30 dimensions")),
                        Some(names) => {
                            for n in names {
                                match n.as_str() {
                                    Some(n) if root.get(n).is_some_and(Value::is_string) => {}
                                    _ => errs.push(format!("directive {i}: dimension {n} is not a string member")),
                                }
                            }
                        }
                    }
                }
            }
        }
        match d.get("Metrics").and_then(Value::as_array) {
            None => errs.push(format!("directive {i}: Metrics must be an array")),
            Some(ms) if ms.len() > 100 => errs.push(format!("directive {i}: more than 100 metrics")),
            Some(ms) => {
                for m in ms {
                    let name = m.get("Name").and_then(Value::as_str).unwrap_or("");
                    if name.is_empty() || name.len() > 1024 {
                        errs.push(format!("directive {i}: a metric Name must be 1–1024 characters"));
                        continue;
                    }
                    if let Some(u) = m.get("Unit") {
                        if !u.as_str().is_some_and(|u| UNITS.contains(&u)) {
                            errs.push(format!("metric {name}: unknown Unit {u}"));
                        }
                    }
                    if let Some(r) = m.get("StorageResolution") {
                        if !(r.as_u64() == Some(1) || r.as_u64() == Some(60)) {
                            errs.push(format!("metric {name}: StorageResolution must be 1 or 60"));
                        }
                    }
                    let ok = match root.get(name) {
                        Some(Value::Number(_)) => true,
                        Some(Value::Array(vs)) => vs.len() <= 100 && vs.iter().all(Value::is_number),
                        _ => false,
                    };
                    if !ok {
                        errs.push(format!("metric {name}: no numeric member of that name"));
                    }
                }
            }
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good() -> Value {
        json!({"_aws": {"Timestamp": 1, "CloudWatchMetrics": [{"Namespace": "N", "Dimensions": [["function"]],
            "Metrics": [{"Name": "Calls", "Unit": "Count"}]}]}, "function": "worker", "Calls": 2})
    }

    #[test]
    fn a_valid_document_passes() {
        assert_eq!(validate(&good()), Ok(()));
    }

    #[test]
    fn each_violation_is_caught() {
        type Break = fn(&mut Value);
        let cases: Vec<(&str, Break)> = vec![
            ("timestamp", |d| d["_aws"]["Timestamp"] = json!("now")),
            ("namespace", |d| d["_aws"]["CloudWatchMetrics"][0]["Namespace"] = json!("")),
            ("dimension", |d| d["function"] = json!(3)),
            ("unit", |d| d["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] = json!("Furlongs")),
            ("value", |d| d["Calls"] = json!("2")),
            ("missing", |d| {
                d.as_object_mut().unwrap().remove("Calls");
            }),
            ("aws", |d| {
                d.as_object_mut().unwrap().remove("_aws");
            }),
        ];
        for (what, f) in cases {
            let mut d = good();
            f(&mut d);
            assert!(validate(&d).is_err(), "{what} not caught");
        }
    }
}
