//! No drift between `infra/template.yaml` and the environment the functions read: every variable
//! a function reads is set by the template, and every variable the template sets is read.
//!
//! What a function reads is recorded by calling its configuration loaders with a lookup that
//! answers valid sample values and records every key asked for, plus the variables its `main.rs`
//! reads directly (`env("…")` / `required("…")`). Secret values are not environment variables
//! on AWS: a function that reads its secret gets `SECRET_ID`, and the secret's keys
//! (`relay_aws::secrets::SECRET_KEYS`) must not appear in its environment.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

/// Provided by Lambda or only used locally; never set by the template.
const PLATFORM: &[&str] = &["AWS_LAMBDA_LOG_LEVEL", "RUST_LOG", "AWS_ENDPOINT_URL"];

fn sample(k: &str) -> Option<String> {
    Some(match k {
        k if k.ends_with("_URL") && k.starts_with("CAFE24") => "https://{mall_id}.cafe24api.com".into(),
        k if k.ends_with("_URL") || k == "OAUTH_REDIRECT_URI" => "https://example.com/x".into(),
        "CAFE24_API_VERSION" => "2025-12-01".into(),
        "RATE_LIMIT_KEY" => "mall".into(),
        "ROUTING_OVERRIDES" => "{}".into(),
        "OAUTH_STATE_SECRET" => "0123456789abcdef0123456789abcdef".into(),
        "MAX_BODY_BYTES" => "1000".into(),
        "CUSTOMER_BACKFILL" => "off".into(),
        "INGEST_ROUTES" => "all".into(),
        "OAUTH_SCOPES" => "mall.read_order,mall.write_mileage".into(),
        "COMMAND_ALLOW" => "POST points, GET **".into(),
        k if k.ends_with("_MS")
            || k.ends_with("_S")
            || k.ends_with("_DAYS")
            || k.ends_with("_HOURS")
            || k.ends_with("_MINUTES")
            || k.starts_with("LIMITER_")
            || k == "MAX_ATTEMPTS"
            || k == "JOBS_IN_FLIGHT" =>
        {
            "3".into()
        }
        _ => "value".into(),
    })
}

fn recorded(load: impl Fn(&dyn Fn(&str) -> Option<String>)) -> BTreeSet<String> {
    let seen = Mutex::new(BTreeSet::new());
    let lookup = |k: &str| {
        seen.lock().unwrap().insert(k.to_owned());
        sample(k)
    };
    load(&lookup);
    seen.into_inner().unwrap()
}

/// `env("X")` and `required("X")` in a main.rs.
fn read_by_main(src: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for pat in ["env(\"", "required(\""] {
        for part in src.split(pat).skip(1) {
            let name: String =
                part.chars().take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_').collect();
            if !name.is_empty() && part[name.len()..].starts_with('"') {
                out.insert(name);
            }
        }
    }
    out
}

/// `(resource, variable, value)` for every function environment variable in the template
/// (line-based: the template keeps `Environment: Variables:` blocks in plain block style; a
/// value on the next lines, as a `!Join`'s, reads as its tag line).
fn template_env() -> Vec<(String, String, String)> {
    let t = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/template.yaml")).unwrap();
    let (mut out, mut resource, mut in_vars) = (Vec::new(), String::new(), None::<usize>);
    for line in t.lines() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        if indent == 2 && trimmed.ends_with(':') {
            resource = trimmed.trim_end_matches(':').to_owned();
            in_vars = None;
        } else if trimmed == "Variables:" {
            in_vars = Some(indent);
        } else if let Some(v) = in_vars {
            if indent <= v && !trimmed.is_empty() {
                in_vars = None;
            } else if indent == v + 2 && !trimmed.starts_with('#') {
                if let Some((k, value)) = trimmed.split_once(':') {
                    out.push((resource.clone(), k.to_owned(), value.trim().to_owned()));
                }
            }
        }
    }
    out
}

/// Environment variable names per function resource in the template.
fn template_vars() -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (resource, k, _) in template_env() {
        out.entry(resource).or_default().insert(k);
    }
    out
}

/// What a function needs the template to set: what its loaders and `main` read, minus what the
/// platform provides; a `main` that uses `relay_aws::secrets::lookup` reads `SECRET_ID`, and the
/// secret (not the environment) provides the variables in `SECRET_KEYS`.
fn code_vars(main_rs: &str, loaders: BTreeSet<String>) -> BTreeSet<String> {
    let mut all = loaders;
    all.extend(read_by_main(main_rs));
    all.retain(|k| !PLATFORM.contains(&k.as_str()));
    if main_rs.contains("secrets::lookup(") {
        all.insert("SECRET_ID".to_owned());
        all.retain(|k| !relay_aws::secrets::SECRET_KEYS.iter().any(|(_, v)| v == k));
    }
    all
}

#[test]
fn template_sets_exactly_what_each_function_reads() {
    let t = template_vars();
    let ingest = code_vars(
        include_str!("../../../functions/webhook-ingest/src/main.rs"),
        recorded(|l| {
            let _ = webhook_ingest::IngestConfig::from_lookup(|k| l(k));
            let _ = relay_cafe24::Cafe24Config::from_lookup(|k| l(k));
            let _ = webhook_ingest::install::InstallConfig::from_lookup(|k| l(k));
        }),
    );
    let dispatcher = code_vars(
        include_str!("../../../functions/dispatcher/src/main.rs"),
        recorded(|l| {
            let _ = dispatcher::DispatcherConfig::from_lookup(|k| l(k));
        }),
    );
    let worker = code_vars(
        include_str!("../../../functions/worker/src/main.rs"),
        recorded(|l| {
            let _ = worker::WorkerConfig::from_lookup(|k| l(k));
            let _ = relay_cafe24::Cafe24Config::from_lookup(|k| l(k));
        }),
    );
    let call_api = code_vars(
        include_str!("../../../functions/call-api/src/main.rs"),
        recorded(|l| {
            let _ = call_api::CallApiConfig::from_lookup(|k| l(k));
            let _ = relay_cafe24::Cafe24Config::from_lookup(|k| l(k));
        }),
    );
    // The webhook receiver (`INGEST_ROUTES=webhooks`) reads its queues and key only: `main`
    // serves it before anything of the install flow is read.
    let webhooks = code_vars(
        "relay_aws::secrets::lookup(",
        recorded(|l| {
            let _ = webhook_ingest::IngestConfig::from_lookup(|k| l(k));
        }),
    );
    for (resource, code) in [
        ("WebhookIngestFunction", webhooks),
        ("AppUrlFunction", ingest),
        ("DispatcherFunction", dispatcher),
        ("WorkerFunction", worker),
        ("CallApiFunction", call_api),
    ] {
        let tmpl = t.get(resource).cloned().unwrap_or_default();
        let missing: Vec<_> = code.difference(&tmpl).collect();
        let unused: Vec<_> = tmpl.difference(&code).collect();
        assert!(
            missing.is_empty() && unused.is_empty(),
            "{resource}: read but not set {missing:?}; set but never read {unused:?}"
        );
    }
}

#[test]
fn the_template_parser_sees_every_function() {
    let t = template_vars();
    for f in ["WebhookIngestFunction", "AppUrlFunction", "DispatcherFunction", "WorkerFunction", "CallApiFunction"] {
        assert!(t.get(f).is_some_and(|v| v.len() >= 5), "{f}: {:?}", t.get(f));
    }
    assert!(read_by_main(r#"let a = env("ABC_D"); required("X1");"#).contains("ABC_D"));
}

/// Variable names in the README's `## Configuration (<function>)` table (first column, each
/// backticked name; rows may name several).
fn readme_vars(function: &str) -> BTreeSet<String> {
    let readme = include_str!("../../../README.md");
    let heading = format!("## Configuration ({function})");
    let section = readme.split(&heading).nth(1).unwrap_or_else(|| panic!("no {heading}"));
    let section = section.split("\n## ").next().unwrap();
    let mut out = BTreeSet::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let first = line.split(" | ").next().unwrap();
        for part in first.split('`').skip(1).step_by(2) {
            if part.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') {
                out.insert(part.to_owned());
            }
        }
    }
    out
}

/// Everything a function reads, secrets and platform variables included (what a reader of the
/// README needs to know).
fn all_read(main_rs: &str, loaders: BTreeSet<String>) -> BTreeSet<String> {
    let mut all = loaders;
    all.extend(read_by_main(main_rs));
    if main_rs.contains("secrets::lookup(") {
        all.insert("SECRET_ID".to_owned());
    }
    all
}

#[test]
fn the_readme_documents_exactly_what_each_function_reads() {
    let cases = [
        (
            "webhook-ingest",
            all_read(
                include_str!("../../../functions/webhook-ingest/src/main.rs"),
                recorded(|l| {
                    let _ = webhook_ingest::IngestConfig::from_lookup(|k| l(k));
                    let _ = relay_cafe24::Cafe24Config::from_lookup(|k| l(k));
                    let _ = webhook_ingest::install::InstallConfig::from_lookup(|k| l(k));
                }),
            ),
        ),
        (
            "dispatcher",
            all_read(
                include_str!("../../../functions/dispatcher/src/main.rs"),
                recorded(|l| {
                    let _ = dispatcher::DispatcherConfig::from_lookup(|k| l(k));
                }),
            ),
        ),
        (
            "worker",
            all_read(
                include_str!("../../../functions/worker/src/main.rs"),
                recorded(|l| {
                    let _ = worker::WorkerConfig::from_lookup(|k| l(k));
                    let _ = relay_cafe24::Cafe24Config::from_lookup(|k| l(k));
                }),
            ),
        ),
        (
            "call-api",
            all_read(
                include_str!("../../../functions/call-api/src/main.rs"),
                recorded(|l| {
                    let _ = call_api::CallApiConfig::from_lookup(|k| l(k));
                    let _ = relay_cafe24::Cafe24Config::from_lookup(|k| l(k));
                }),
            ),
        ),
    ];
    for (function, read) in cases {
        let documented = readme_vars(function);
        let undocumented: Vec<_> =
            read.iter().filter(|k| !documented.contains(*k) && !PLATFORM.contains(&k.as_str())).collect();
        let stale: Vec<_> =
            documented.iter().filter(|k| !read.contains(*k) && !PLATFORM.contains(&k.as_str())).collect();
        assert!(
            undocumented.is_empty() && stale.is_empty(),
            "README, {function}: read but not documented {undocumented:?}; documented but never read {stale:?}"
        );
    }
}

/// Every function variable the template sets to a literal value (not a parameter, a resource
/// or a condition).
fn template_literals() -> BTreeSet<String> {
    template_env().into_iter().filter(|(_, _, v)| !v.is_empty() && !v.starts_with('!')).map(|(_, k, _)| k).collect()
}

/// Every setting is a template parameter, or the README says why it is fixed: the variables the
/// template sets to a literal are exactly those of the README's "Settings fixed in the template",
/// and every parameter is used.
#[test]
fn every_setting_is_a_parameter_or_the_readme_says_why_it_is_fixed() {
    let fixed = template_literals();
    let readme = include_str!("../../../README.md");
    let section = readme.split("## Settings fixed in the template").nth(1).expect("the README's fixed settings");
    let section = section.split("\n## ").next().unwrap();
    let mut listed = BTreeSet::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let first = line.split(" | ").next().unwrap();
        listed.extend(first.split('`').skip(1).step_by(2).map(str::to_owned));
    }
    assert_eq!(fixed, listed, "template literals vs the README's list of fixed settings");
    assert!(fixed.contains("MAX_BODY_BYTES") && !fixed.contains("JOBS_IN_FLIGHT"), "{fixed:?}");
    let t = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/template.yaml")).unwrap();
    let params = t.split("\nParameters:\n").nth(1).unwrap().split("\nConditions:").next().unwrap();
    let mut unused = Vec::new();
    for name in params.lines().filter(|l| l.starts_with("  ") && !l.starts_with("   ") && l.trim_end().ends_with(':')) {
        let name = name.trim().trim_end_matches(':');
        let used = t.contains(&format!("!Ref {name}"))
            || t.contains(&format!("Ref: {name}"))
            || t.contains(&format!("${{{name}}}"))
            || t.contains(&format!("!Equals [!Ref {name}"))
            || t.contains(&format!("[{name},"));
        if !used {
            unused.push(name.to_owned());
        }
    }
    assert!(unused.is_empty(), "parameters nothing uses: {unused:?}");
}
