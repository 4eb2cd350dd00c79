//! The CLI and `infra/template.yaml` agree: `relay trace` runs exactly the saved queries, and the
//! stack's outputs provide every key the CLI reads on AWS (`make deploy` writes them to
//! `.relay/aws.env` with [`relay::target::key_for_output`]).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeSet;

fn template() -> serde_yaml::Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/template.yaml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

#[test]
fn relay_trace_runs_the_saved_query() {
    let t = template();
    let q = t["Resources"]["QueryFollowWebhook"]["Properties"]["QueryString"].as_str().unwrap();
    assert_eq!(q, relay::trace::TRACE_QUERY);
    assert!(q.contains(relay::trace::PLACEHOLDER));
    let q = t["Resources"]["QueryWebhooksOfEntity"]["Properties"]["QueryString"].as_str().unwrap();
    assert_eq!(q, relay::trace::ENTITY_QUERY);
    for p in relay::trace::ENTITY_PLACEHOLDERS {
        assert!(q.contains(p), "{p}");
    }
}

#[test]
fn the_stack_outputs_cover_every_key_the_cli_reads_on_aws() {
    let t = template();
    let provided: BTreeSet<String> =
        t["Outputs"].as_mapping().unwrap().keys().map(|k| relay::target::key_for_output(k.as_str().unwrap())).collect();
    // Local-only or optional keys.
    let optional = ["AWS_ENDPOINT_URL", "RELAY_LOG_FILE", "RATE_LIMIT_KEY"];
    for k in relay::target::KNOWN.iter().filter(|k| !optional.contains(k)) {
        assert!(provided.contains(*k), "no stack output provides {k}");
    }
}
