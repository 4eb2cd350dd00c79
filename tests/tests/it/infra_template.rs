//! The properties of `infra/template.yaml` the design depends on, parsed as YAML (CloudFormation
//! short-form tags such as `!GetAtt` kept as tagged values), so a regression fails the build:
//! FIFO queues with content-based deduplication off, each queue wired to its FIFO DLQ, visibility
//! at least 6 × its consumer's timeout, partial batch responses on every SQS event source, one
//! least-privilege policy per function (exact action sets, no wildcards), secrets only by
//! reference, log groups with retention, the alarms and the saved queries.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::Value;

fn template() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/template.yaml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

fn resources(t: &Value) -> Vec<(String, &Value)> {
    t["Resources"].as_mapping().unwrap().iter().map(|(k, v)| (k.as_str().unwrap().to_owned(), v)).collect()
}

fn of_type<'a>(t: &'a Value, ty: &str) -> Vec<(String, &'a Value)> {
    resources(t).into_iter().filter(|(_, r)| r["Type"].as_str() == Some(ty)).collect()
}

/// The logical id a `!GetAtt X.Arn` / `!Ref X` points at.
fn target(v: &Value) -> String {
    match v {
        Value::Tagged(t) => t.value.as_str().unwrap().split('.').next().unwrap().to_owned(),
        other => panic!("not an intrinsic: {other:?}"),
    }
}

#[test]
fn every_queue_is_fifo_with_content_based_dedup_off() {
    let t = template();
    let queues = of_type(&t, "AWS::SQS::Queue");
    assert_eq!(queues.len(), 6, "inbox, work and command queues, each with its DLQ");
    for (name, q) in queues {
        assert_eq!(q["Properties"]["FifoQueue"], Value::Bool(true), "{name}");
        assert_eq!(q["Properties"]["ContentBasedDeduplication"], Value::Bool(false), "{name}");
    }
}

#[test]
fn each_source_queue_dead_letters_into_its_own_fifo_dlq() {
    let t = template();
    for (queue, dlq, min_receives) in [("InboxQueue", "InboxDLQ", 5), ("WorkQueue", "WorkDLQ", 100)] {
        let rp = &t["Resources"][queue]["Properties"]["RedrivePolicy"];
        assert_eq!(target(&rp["deadLetterTargetArn"]), dlq, "{queue}");
        assert!(rp["maxReceiveCount"].as_u64().unwrap() >= min_receives, "{queue}: deferrals need room");
        assert_eq!(t["Resources"][dlq]["Properties"]["FifoQueue"], Value::Bool(true));
        assert!(t["Resources"][dlq]["Properties"].get("RedrivePolicy").is_none(), "a DLQ has no DLQ");
    }
}

#[test]
fn sqs_event_sources_report_partial_failures_and_visibility_covers_six_timeouts() {
    let t = template();
    let mut consumers = BTreeSet::new();
    for (name, m) in of_type(&t, "AWS::Lambda::EventSourceMapping") {
        let p = &m["Properties"];
        let function = target(&p["FunctionName"]);
        let timeout = t["Resources"][function.as_str()]["Properties"]["Timeout"].as_u64().unwrap();
        let types: Vec<&str> =
            p["FunctionResponseTypes"].as_sequence().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(types, ["ReportBatchItemFailures"], "{name}");
        assert!(p["BatchSize"].as_u64().unwrap() <= 10, "{name}: FIFO batches are at most 10");
        assert!(p["ScalingConfig"].get("MaximumConcurrency").is_some(), "{name}");
        let queue = target(&p["EventSourceArn"]);
        let vis = t["Resources"][queue.as_str()]["Properties"]["VisibilityTimeout"].as_u64().unwrap();
        assert!(vis >= 6 * timeout, "{queue}: visibility {vis} s < 6 × {function}'s {timeout} s");
        consumers.insert((function, queue));
    }
    let want: BTreeSet<(String, String)> =
        [("DispatcherFunction", "InboxQueue"), ("DispatcherFunction", "CommandQueue"), ("WorkerFunction", "WorkQueue")]
            .iter()
            .map(|(f, q)| (f.to_string(), q.to_string()))
            .collect();
    assert_eq!(consumers, want, "dispatcher (webhooks, commands) and worker consume SQS");
    for (name, f) in of_type(&t, "AWS::Serverless::Function") {
        for (_, ev) in f["Properties"]["Events"].as_mapping().into_iter().flatten() {
            assert_ne!(ev["Type"].as_str(), Some("SQS"), "{name}: a SAM SQS event attaches a policy on every queue");
        }
    }
}

fn actions(f: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for policy in f["Properties"]["Policies"].as_sequence().unwrap() {
        for st in policy["Statement"].as_sequence().unwrap() {
            assert_eq!(st["Effect"].as_str(), Some("Allow"));
            for a in st["Action"].as_sequence().unwrap() {
                out.insert(a.as_str().unwrap().to_owned());
            }
            for r in st["Resource"].as_sequence().unwrap() {
                assert!(matches!(r, Value::Tagged(_)), "resources are the stack's own, by reference: {r:?}");
            }
        }
    }
    out
}

#[test]
fn each_function_has_exactly_the_actions_it_uses() {
    let t = template();
    let expect = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let cases = [
        // sends to the inbox / parks; install flow: token + limiter items, one-time state nonces,
        // publishes mall.installed; its secret at cold start.
        // Cafe24's deliveries only: the inbox (and parking), its key.
        ("WebhookIngestFunction", expect(&["sqs:SendMessage", "secretsmanager:GetSecretValue"])),
        // The browser-facing install flow: token + limiter items, one-time state nonces,
        // mall.installed, an install's backfill job; its secret at cold start.
        (
            "AppUrlFunction",
            expect(&[
                "sqs:SendMessage",
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "events:PutEvents",
                "secretsmanager:GetSecretValue",
            ]),
        ),
        // its mapping (receive, delete, attributes on the inbox); sends jobs / parks; defers inbox
        // messages by visibility; marks uninstalled; keep-alive scans the token table; publishes
        // webhook.received; reads its scheduled runs' cursors (`sched#` items only).
        (
            "DispatcherFunction",
            expect(&[
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "sqs:SendMessage",
                "sqs:ChangeMessageVisibility",
                "dynamodb:GetItem",
                "dynamodb:UpdateItem",
                "dynamodb:Scan",
                "events:PutEvents",
            ]),
        ),
        // its mapping; defers by visibility, dead-letters; limiter, tokens, idempotency and
        // snapshots; publishes synced versions.
        (
            "WorkerFunction",
            expect(&[
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "sqs:ChangeMessageVisibility",
                "sqs:SendMessage",
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:DeleteItem",
                "events:PutEvents",
                "secretsmanager:GetSecretValue",
            ]),
        ),
        // The app's synchronous calls: command records and snapshots (state table), tokens and
        // the limiter as the worker; its secret at cold start. No queue, no bus.
        (
            "CallApiFunction",
            expect(&["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "secretsmanager:GetSecretValue"]),
        ),
    ];
    for (name, want) in cases {
        let got = actions(&t["Resources"][name]);
        assert_eq!(got, want, "{name}");
        assert!(!got.iter().any(|a| a.contains('*')), "{name}: no wildcards");
    }
    assert_eq!(of_type(&t, "AWS::Serverless::Function").len(), 5);
}

#[test]
fn no_secret_value_is_in_any_environment_and_only_the_stack_secret_is_readable() {
    let t = template();
    let secret_vars: Vec<&str> = relay_aws::secrets::SECRET_KEYS.iter().map(|(_, v)| *v).collect();
    for (name, f) in of_type(&t, "AWS::Serverless::Function") {
        let vars = f["Properties"]["Environment"]["Variables"].as_mapping().unwrap();
        for (k, v) in vars {
            let k = k.as_str().unwrap();
            assert!(!secret_vars.contains(&k), "{name}: {k} belongs in the secret");
            if let Value::Tagged(tag) = v {
                assert!(!tag.value.as_str().unwrap_or("").contains("resolve:secretsmanager"), "{name}.{k}");
            }
        }
        let reads_secret = actions(f).contains("secretsmanager:GetSecretValue");
        let has_id = vars
            .get("SECRET_ID")
            .is_some_and(|v| matches!(v, Value::Tagged(t) if t.value.as_str() == Some("SecretName")));
        assert_eq!(reads_secret, has_id, "{name}: SECRET_ID and the grant go together");
        for policy in f["Properties"]["Policies"].as_sequence().unwrap() {
            for st in policy["Statement"].as_sequence().unwrap() {
                if st["Action"][0].as_str() == Some("secretsmanager:GetSecretValue") {
                    let Value::Tagged(r) = &st["Resource"][0] else { panic!() };
                    let arn = r.value.as_str().unwrap();
                    assert!(arn.ends_with(":secret:${SecretName}-??????"), "only the stack's secret: {arn}");
                }
            }
        }
    }
}

#[test]
fn logs_are_json_with_retention_and_one_group_per_function() {
    let t = template();
    assert_eq!(t["Globals"]["Function"]["LoggingConfig"]["LogFormat"].as_str(), Some("JSON"));
    // EMF metric lines are INFO: a stricter application level would make Lambda drop them.
    assert_eq!(t["Globals"]["Function"]["LoggingConfig"]["ApplicationLogLevel"].as_str(), Some("INFO"));
    for (_, g) in of_type(&t, "AWS::Logs::LogGroup") {
        assert!(g["Properties"].get("RetentionInDays").is_some());
    }
    for (name, f) in of_type(&t, "AWS::Serverless::Function") {
        let group = target(&f["Properties"]["LoggingConfig"]["LogGroup"]);
        assert_eq!(t["Resources"][group.as_str()]["Type"].as_str(), Some("AWS::Logs::LogGroup"), "{name}");
    }
}

#[test]
fn the_alarms_cover_dlqs_backlog_age_errors_and_429s() {
    let t = template();
    let alarms: Vec<(String, String, String)> = of_type(&t, "AWS::CloudWatch::Alarm")
        .into_iter()
        .map(|(n, a)| {
            let p = metric_of(&a["Properties"]);
            let dim = p["Dimensions"][0]["Value"].clone();
            let on = match &dim {
                Value::Tagged(_) => target(&dim),
                v => v.as_str().unwrap_or("").to_owned(),
            };
            (n, p["MetricName"].as_str().unwrap().to_owned(), on)
        })
        .collect();
    let has = |metric: &str, on: &str| alarms.iter().any(|(_, m, o)| m == metric && o == on);
    assert!(has("ApproximateNumberOfMessagesVisible", "InboxDLQ"));
    assert!(has("ApproximateNumberOfMessagesVisible", "WorkDLQ"));
    assert!(has("ApproximateAgeOfOldestMessage", "WorkQueue"));
    assert!(
        has("Errors", "WorkerFunction")
            && has("Errors", "DispatcherFunction")
            && has("Errors", "WebhookIngestFunction")
            && has("Errors", "AppUrlFunction")
    );
    assert!(has("Cafe24Status429", "worker"), "429s from the worker's EMF metric");
    // The quiet failures.
    assert!(has("WebhooksUnauthorized", "webhook-ingest"), "403 spike (key rotation)");
    assert!(has("WebhooksQueueFailed", "webhook-ingest"), "503 at ingest");
    assert!(has("WebhooksAccepted", "webhook-ingest"), "reception stopped");
    assert!(has("MallsNeedingReauth", "dispatcher"), "a mall needs re-authorization");
}

/// An alarm's metric: its own properties, or the `MetricStat` of a metric-math alarm.
fn metric_of(p: &Value) -> &Value {
    match p.get("Metrics") {
        Some(ms) => ms
            .as_sequence()
            .unwrap()
            .iter()
            .find_map(|m| m.get("MetricStat").map(|s| &s["Metric"]))
            .expect("a metric-math alarm reads a metric"),
        None => p,
    }
}

#[test]
fn every_alarm_notifies_on_alarm_and_on_ok_and_watches_a_metric_the_code_emits() {
    let t = template();
    let code = [
        include_str!("../../../functions/webhook-ingest/src/handler.rs"),
        include_str!("../../../functions/dispatcher/src/handler.rs"),
        include_str!("../../../functions/worker/src/handler.rs"),
    ]
    .concat();
    let alarms = of_type(&t, "AWS::CloudWatch::Alarm");
    assert!(alarms.len() >= 15, "{}", alarms.len());
    for (name, a) in alarms {
        let p = &a["Properties"];
        for key in ["AlarmActions", "OKActions"] {
            let actions = format!("{:?}", p[key]);
            assert!(actions.contains("AlarmTopic") && actions.contains("AlarmTopicArn"), "{name}: {key} = {actions}");
        }
        let m = metric_of(p);
        if m["Namespace"].as_str() == Some("Cafe24Relay") {
            let metric = m["MetricName"].as_str().unwrap();
            assert!(code.contains(&format!("\"{metric}\"")), "{name}: no function emits {metric}");
            // Several stacks per account: an alarm watches its own stack's metric only.
            let dims = format!("{:?}", m["Dimensions"]);
            assert!(dims.contains("stack") && dims.contains("AWS::StackName"), "{name}: {dims}");
        }
    }
    assert_eq!(t["Resources"]["AlarmTopic"]["Condition"].as_str(), Some("CreateAlarmTopic"));
    assert_eq!(t["Resources"]["AlarmEmailSubscription"]["Properties"]["Protocol"].as_str(), Some("email"));
}

#[test]
fn the_saved_queries_are_all_there_named_after_the_stack() {
    let t = template();
    // `!Sub ${AWS::StackName}/<name>`: staging and prod in one account list their own queries.
    let names: BTreeSet<String> = of_type(&t, "AWS::Logs::QueryDefinition")
        .into_iter()
        .map(|(_, q)| match &q["Properties"]["Name"] {
            Value::Tagged(tag) if tag.tag == "!Sub" => tag.value.as_str().unwrap().to_owned(),
            other => panic!("a query name not derived from the stack: {other:?}"),
        })
        .collect();
    for want in [
        "follow-one-webhook",
        "webhooks-of-one-entity",
        "deferrals-and-429s-per-mall",
        "dead-lettered-by-class",
        "slowest-jobs",
        "errors-by-class",
    ] {
        assert!(names.contains(&format!("${{AWS::StackName}}/{want}")), "{want}: {names:?}");
    }
}

#[test]
fn make_deploy_passes_every_parameter_the_template_requires() {
    let t = template();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = std::process::Command::new("bash")
        .arg(format!("{root}/scripts/deploy.sh"))
        .arg("--dry-run")
        .env("STACK_NAME", "relay-test")
        .env("CAFE24_CLIENT_ID", "client-1")
        .env("OAUTH_REDIRECT_URI", "https://example.lambda-url.on.aws/oauth/callback")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    // `sam build` of the template (Cargo Lambda through the rust-cargolambda method), then
    // `sam deploy` of what it built — never of the source template, whose CodeUris are crates.
    let build = text.lines().find(|l| l.contains("sam build ")).unwrap();
    assert!(build.contains("--beta-features") && build.contains("--template-file infra/template.yaml"), "{build}");
    assert!(build.contains("Architecture=arm64"), "{build}");
    let deploy = text.lines().find(|l| l.contains(" deploy ")).unwrap();
    assert!(
        deploy.contains("--template-file .aws-sam/build/template.yaml") && deploy.contains("--stack-name relay-test")
    );
    assert!(text.find("sam build ").unwrap() < text.find("sam deploy ").unwrap(), "{text}");
    let given: BTreeSet<String> = deploy
        .split("--parameter-overrides")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .map(|kv| kv.split('=').next().unwrap().to_owned())
        .collect();
    let params = t["Parameters"].as_mapping().unwrap();
    for (name, p) in params {
        let name = name.as_str().unwrap();
        if p.get("Default").is_none() {
            assert!(given.contains(name), "make deploy does not pass {name}");
        }
    }
    for g in &given {
        assert!(params.contains_key(g.as_str()), "make deploy passes {g}, which the template does not declare");
    }
    // Without the required variables it refuses, naming them.
    let out = std::process::Command::new("bash")
        .arg(format!("{root}/scripts/deploy.sh"))
        .arg("--dry-run")
        .env_remove("CAFE24_CLIENT_ID")
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("CAFE24_CLIENT_ID"));
    // Code updates go through cargo lambda deploy, one per function, to the stack's function names.
    let out = std::process::Command::new("bash")
        .arg(format!("{root}/scripts/deploy.sh"))
        .args(["--dry-run", "--code-only"])
        .env("STACK_NAME", "relay-test")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for f in ["webhook-ingest", "dispatcher", "worker"] {
        assert!(text.contains(&format!("cargo lambda deploy --binary-name {f} relay-test-{f}")), "{text}");
        // The zip cargo lambda leaves beside the binary would be packaged by the next sam deploy.
        assert!(text.contains(&format!("rm -f target/lambda/{f}/bootstrap.zip")), "{text}");
        let name = t["Resources"]
            .as_mapping()
            .unwrap()
            .values()
            .filter_map(|r| r["Properties"]["FunctionName"].as_ref_tagged())
            .any(|n| n == format!("${{AWS::StackName}}-{f}"));
        assert!(name, "the template names the function <stack>-{f}");
    }
}

trait TaggedStr {
    fn as_ref_tagged(&self) -> Option<String>;
}

impl TaggedStr for Value {
    fn as_ref_tagged(&self) -> Option<String> {
        match self {
            Value::Tagged(t) => t.value.as_str().map(str::to_owned),
            _ => None,
        }
    }
}

#[test]
fn high_throughput_fifo_is_one_switch_on_the_inbox_and_work_queues() {
    let t = template();
    // On by default: a backlog of a few hundred malls is over a plain FIFO queue's quota.
    assert_eq!(t["Parameters"]["HighThroughputFifo"]["Default"].as_str(), Some("true"));
    for q in ["InboxQueue", "WorkQueue"] {
        for (prop, on) in [("DeduplicationScope", "messageGroup"), ("FifoThroughputLimit", "perMessageGroupId")] {
            let Value::Tagged(tagged) = &t["Resources"][q]["Properties"][prop] else { panic!("{q}.{prop}") };
            assert!(tagged.tag.to_string().contains("If"), "{q}.{prop}");
            let args = tagged.value.as_sequence().unwrap();
            assert_eq!(args[0].as_str(), Some("HighThroughput"));
            assert_eq!(args[1].as_str(), Some(on), "{q}.{prop}");
        }
    }
}

/// The template as CloudFormation deploys it (SAM transform applied offline by
/// `scripts/sam-transform.py` with `aws-sam-translator` from the project's venv).
fn transformed() -> serde_json::Value {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = std::process::Command::new(format!("{root}/.venv/bin/python"))
        .arg(format!("{root}/scripts/sam-transform.py"))
        .arg(format!("{root}/infra/template.yaml"))
        .output()
        .expect("the venv's python (make tools)");
    assert!(out.status.success(), "SAM transform failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn as_list(v: &serde_json::Value) -> Vec<serde_json::Value> {
    match v {
        serde_json::Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    }
}

#[test]
fn deployed_roles_have_no_wildcard_on_any_data_plane_action() {
    let t = transformed();
    let mut roles = 0;
    for (name, r) in t["Resources"].as_object().unwrap() {
        if r["Type"] != "AWS::IAM::Role" {
            continue;
        }
        roles += 1;
        // Only the logging policy may be managed (it is logs:* on the function's own groups' account).
        for arn in as_list(&r["Properties"]["ManagedPolicyArns"]).iter().filter(|a| !a.is_null()) {
            assert!(
                arn.as_str().unwrap().ends_with("/AWSLambdaBasicExecutionRole"),
                "{name}: managed policy {arn} (AWSLambdaSQSQueueExecutionRole grants receive/delete on every queue)"
            );
        }
        for policy in as_list(&r["Properties"]["Policies"]).iter().filter(|p| !p.is_null()) {
            for st in as_list(&policy["PolicyDocument"]["Statement"]) {
                let actions: Vec<String> =
                    as_list(&st["Action"]).iter().map(|a| a.as_str().unwrap().to_owned()).collect();
                let data_plane = actions
                    .iter()
                    .any(|a| ["sqs:", "dynamodb:", "secretsmanager:", "events:"].iter().any(|p| a.starts_with(p)));
                if !data_plane {
                    continue;
                }
                for res in as_list(&st["Resource"]) {
                    let text = res.to_string();
                    assert!(
                        !(res.as_str() == Some("*") || text.contains(":*\"") || text == "\"*\""),
                        "{name}: {actions:?} on {text}"
                    );
                }
                assert!(actions.iter().all(|a| !a.contains('*')), "{name}: wildcard action {actions:?}");
            }
        }
    }
    assert!(roles >= 3, "a role per function");
    let mappings =
        t["Resources"].as_object().unwrap().values().filter(|r| r["Type"] == "AWS::Lambda::EventSourceMapping");
    assert_eq!(mappings.count(), 3);
}

#[test]
fn the_token_and_state_tables_survive_a_stack_deletion() {
    let t = template();
    for name in ["TokenTable", "StateTable"] {
        let r = &t["Resources"][name];
        assert_eq!(r["DeletionPolicy"].as_str(), Some("Retain"), "{name}");
        assert_eq!(r["UpdateReplacePolicy"].as_str(), Some("Retain"), "{name}");
        assert_eq!(r["Properties"]["DeletionProtectionEnabled"].as_bool(), Some(true), "{name}");
        // Point-in-time recovery on both, switched by one parameter that defaults to on.
        let Value::Tagged(pitr) = &r["Properties"]["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"]
        else {
            panic!("{name}: PITR is not the parameter's")
        };
        assert_eq!(pitr.value.as_sequence().unwrap()[0].as_str(), Some("Pitr"), "{name}");
    }
    assert_eq!(t["Parameters"]["PointInTimeRecovery"]["Default"].as_str(), Some("true"));
}

/// Every queue holds accepted webhooks or the jobs they became: deleting or replacing the stack
/// must not drop them (issue 30, item 12).
#[test]
fn every_queue_survives_a_stack_deletion_or_replacement() {
    let t = template();
    let queues = of_type(&t, "AWS::SQS::Queue");
    assert!(queues.len() >= 4);
    for (name, q) in queues {
        assert_eq!(q["DeletionPolicy"].as_str(), Some("Retain"), "{name}");
        assert_eq!(q["UpdateReplacePolicy"].as_str(), Some("Retain"), "{name}");
        assert!(q["Properties"].get("QueueName").is_none(), "{name}: a named queue kept would block a new stack");
    }
}

#[test]
fn the_keep_alive_scan_may_read_keys_only() {
    let t = template();
    let policy = &t["Resources"]["DispatcherFunction"]["Properties"]["Policies"][0]["Statement"];
    let scan = policy
        .as_sequence()
        .unwrap()
        .iter()
        .find(|st| st["Action"].as_sequence().unwrap().iter().any(|a| a.as_str() == Some("dynamodb:Scan")))
        .unwrap();
    assert_eq!(scan["Action"].as_sequence().unwrap().len(), 1, "Scan has its own statement");
    let attrs: Vec<&str> = scan["Condition"]["ForAllValues:StringEquals"]["dynamodb:Attributes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(!attrs.iter().any(|a| a.contains("token")), "{attrs:?}");
    assert_eq!(scan["Condition"]["StringEqualsIfExists"]["dynamodb:Select"].as_str(), Some("SPECIFIC_ATTRIBUTES"));
}

#[test]
fn the_dispatcher_may_get_its_schedule_cursors_and_no_token_item() {
    let t = template();
    let policy = &t["Resources"]["DispatcherFunction"]["Properties"]["Policies"][0]["Statement"];
    let get = policy
        .as_sequence()
        .unwrap()
        .iter()
        .find(|st| st["Action"].as_sequence().unwrap().iter().any(|a| a.as_str() == Some("dynamodb:GetItem")))
        .unwrap();
    assert_eq!(get["Action"].as_sequence().unwrap().len(), 1, "GetItem has its own statement");
    let keys: Vec<&str> = get["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(keys, ["sched#*"]);
    // A mall id can never match it (the cursor items' prefix is no mall id).
    assert!(relay_domain::MallId::parse("sched#reconcile").is_err());
}

#[test]
fn a_flood_on_ingest_cannot_take_the_concurrency_of_the_queue_consumers() {
    let t = template();
    let f = |n: &str| &t["Resources"][n]["Properties"];
    // Ingest is capped (a template parameter), so a flood on the public URL gets 429s from
    // Lambda, not the account's whole pool.
    assert_eq!(target(&f("WebhookIngestFunction")["ReservedConcurrentExecutions"]), "IngestReservedConcurrency");
    // The browser-facing URL is another function with a cap of its own (issue 30, item 11): a
    // flood there never takes the webhook receiver's concurrency.
    assert_eq!(target(&f("AppUrlFunction")["ReservedConcurrentExecutions"]), "AppUrlReservedConcurrency");
    let routes = |n: &str| f(n)["Environment"]["Variables"]["INGEST_ROUTES"].as_str().map(str::to_owned);
    assert_eq!(routes("WebhookIngestFunction").as_deref(), Some("webhooks"));
    assert_eq!(routes("AppUrlFunction").as_deref(), Some("app"));
    assert!(
        f("WebhookIngestFunction")["FunctionUrlConfig"].is_mapping()
            && f("AppUrlFunction")["FunctionUrlConfig"].is_mapping()
    );
    // The consumers are guaranteed at least what their mappings together may use: never
    // throttled (the dispatcher's two mappings, inbox and commands, share its reservation).
    for (mappings, function) in
        [(&["InboxMapping", "CommandMapping"][..], "DispatcherFunction"), (&["WorkMapping"][..], "WorkerFunction")]
    {
        let maxima: Vec<&Value> =
            mappings.iter().map(|m| &t["Resources"][*m]["Properties"]["ScalingConfig"]["MaximumConcurrency"]).collect();
        let reserved = &f(function)["ReservedConcurrentExecutions"];
        match (maxima.iter().map(|m| m.as_u64()).sum::<Option<u64>>(), reserved.as_u64()) {
            (Some(m), Some(r)) => assert!(r >= m, "{function}: reserved {r} < its mappings' maximum {m}"),
            _ => {
                assert_eq!(maxima.len(), 1, "{function}");
                assert_eq!(target(maxima[0]), target(reserved), "{function}: reserved and maximum are one parameter");
            }
        }
    }
    // And what throttling or deferrals cost in receives never dead-letters a webhook quickly.
    let rp = &f("InboxQueue")["RedrivePolicy"];
    assert!(rp["maxReceiveCount"].as_u64().unwrap() >= 1000, "{rp:?}");
}

#[test]
fn events_go_only_to_the_relay_bus_and_every_publisher_is_told_which() {
    let t = template();
    for name in ["AppUrlFunction", "DispatcherFunction", "WorkerFunction"] {
        let f = &t["Resources"][name];
        let env = &f["Properties"]["Environment"]["Variables"]["EVENT_BUS_NAME"];
        let env = format!("{env:?}");
        assert!(
            env.contains("CreateEventBus") && env.contains("RelayEventBus") && env.contains("EventBusArn"),
            "{name}: {env}"
        );
        let mut grants = Vec::new();
        for policy in f["Properties"]["Policies"].as_sequence().unwrap() {
            for st in policy["Statement"].as_sequence().unwrap() {
                if format!("{:?}", st["Action"]).contains("events:PutEvents") {
                    grants.push(format!("{:?}", st["Resource"]));
                }
            }
        }
        assert_eq!(grants.len(), 1, "{name}");
        assert!(grants[0].contains("RelayEventBus.Arn") && grants[0].contains("EventBusArn"), "{name}: {}", grants[0]);
        assert!(!grants[0].contains("\"*\""), "{name}: no wildcard bus");
    }
    let bus = &t["Resources"]["RelayEventBus"];
    assert_eq!(bus["Type"].as_str(), Some("AWS::Events::EventBus"));
    assert_eq!(bus["Condition"].as_str(), Some("CreateEventBus"));
    assert!(format!("{:?}", bus["Properties"]["Name"]).contains("${AWS::StackName}"), "one bus per stack");
    assert!(t["Outputs"].get("EventBusName").is_some(), "subscribers need the bus name");
    let alarms: Vec<String> = of_type(&t, "AWS::CloudWatch::Alarm")
        .into_iter()
        .filter(|(_, a)| a["Properties"]["MetricName"].as_str() == Some("EventsPublishFailed"))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(alarms.len(), 2, "a refused publication alarms for each publisher: {alarms:?}");
}

/// `("Name", Unit::…` in a function's handler: the metrics it emits.
fn emitted(src: &str) -> BTreeSet<String> {
    src.split("(\"")
        .skip(1)
        .filter_map(|part| {
            let (name, rest) = part.split_once('"')?;
            (rest.starts_with(", Unit::") && name.chars().all(|c| c.is_ascii_alphanumeric())).then(|| name.to_owned())
        })
        .collect()
}

#[test]
fn the_dashboard_shows_exactly_the_metrics_each_function_emits_for_its_own_stack() {
    let t = template();
    let d = &t["Resources"]["Dashboard"]["Properties"];
    assert!(format!("{:?}", d["DashboardName"]).contains("${AWS::StackName}"), "one dashboard per stack");
    let body = match &d["DashboardBody"] {
        Value::Tagged(tag) if tag.tag == "!Sub" => tag.value.as_str().unwrap().to_owned(),
        other => panic!("DashboardBody is not a !Sub string: {other:?}"),
    };
    let body: serde_json::Value = serde_json::from_str(&body).expect("the dashboard body is JSON");
    let mut shown: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut aws = BTreeSet::new();
    for w in body["widgets"].as_array().unwrap() {
        for m in w["properties"]["metrics"].as_array().unwrap() {
            let m = m.as_array().unwrap();
            let s = |i: usize| m[i].as_str().unwrap_or("").to_owned();
            if s(0) == "Cafe24Relay" {
                assert_eq!(
                    (s(2), s(4), s(5)),
                    ("function".into(), "stack".into(), "${AWS::StackName}".into()),
                    "{m:?}"
                );
                shown.entry(s(3)).or_default().insert(s(1));
            } else {
                aws.insert(format!("{}/{}", s(0), s(1)));
            }
        }
    }
    for (function, src) in [
        ("webhook-ingest", include_str!("../../../functions/webhook-ingest/src/handler.rs")),
        ("dispatcher", include_str!("../../../functions/dispatcher/src/handler.rs")),
        ("worker", include_str!("../../../functions/worker/src/handler.rs")),
    ] {
        assert_eq!(shown.get(function).cloned().unwrap_or_default(), emitted(src), "{function}");
    }
    for want in [
        "AWS/SQS/ApproximateAgeOfOldestMessage",
        "AWS/SQS/ApproximateNumberOfMessagesVisible",
        "AWS/Lambda/Errors",
        "AWS/Lambda/Duration",
    ] {
        assert!(aws.contains(want), "{want} missing: {aws:?}");
    }
}

#[test]
fn a_binary_of_the_other_architecture_is_refused_before_anything_is_deployed() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    // This machine's own executables stand in for `make build`'s output (x86_64 here).
    let dir = std::env::temp_dir().join(format!("relay-arch-{}", std::process::id()));
    for f in ["webhook-ingest", "dispatcher", "worker"] {
        std::fs::create_dir_all(dir.join(f)).unwrap();
        std::fs::copy(std::env::current_exe().unwrap(), dir.join(f).join("bootstrap")).unwrap();
    }
    let native = if cfg!(target_arch = "aarch64") { "arm64" } else { "x86_64" };
    let other = if native == "arm64" { "x86_64" } else { "arm64" };
    // The same binaries as `sam build`'s output (<LogicalId>/bootstrap).
    let sam_dir = dir.join("sam");
    for f in ["WebhookIngestFunction", "AppUrlFunction", "DispatcherFunction", "WorkerFunction"] {
        std::fs::create_dir_all(sam_dir.join(f)).unwrap();
        std::fs::copy(std::env::current_exe().unwrap(), sam_dir.join(f).join("bootstrap")).unwrap();
    }
    let run = |arch: &str, args: &[&str], stack_vars: bool| {
        let mut c = std::process::Command::new("bash");
        c.arg(format!("{root}/scripts/deploy.sh"))
            .args(args)
            .env("LAMBDA_DIR", &dir)
            .env("SAM_BUILD_DIR", &sam_dir)
            .env("ARCH", arch)
            .env("PATH", "/usr/bin:/bin"); // no sam, no cargo lambda: nothing may be deployed
        if stack_vars {
            c.env("CAFE24_CLIENT_ID", "client-1").env("OAUTH_REDIRECT_URI", "https://x.example/oauth/callback");
        } else {
            c.env_remove("CAFE24_CLIENT_ID");
        }
        c.output().unwrap()
    };
    // Code-only: `make build`'s binaries are checked before cargo lambda deploy.
    let out = run(other, &["--code-only"], false);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&format!("not an {other} binary")), "{err}");
    // The stack from `sam build`'s output: checked before sam deploy.
    let out = run(other, &["--no-build"], true);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&format!("not an {other} binary")), "{err}");
    assert!(err.contains("WebhookIngestFunction/bootstrap"), "{err}");
    // The stack deploy stops at its first missing variable, before any build or AWS call.
    let out = run(native, &[], false);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CAFE24_CLIENT_ID") && !err.contains("binary"), "{err}");
    let out = run("sparc", &["--code-only"], false);
    assert!(String::from_utf8_lossy(&out.stderr).contains("ARCH must be arm64 or x86_64"));
    std::fs::remove_dir_all(&dir).ok();
}

/// The property holding a resource's physical name, per type of the transformed template;
/// `None`: the type has no name of its own (mappings, permissions, URLs, subscriptions).
const NAME_PROPERTY: &[(&str, Option<&str>)] = &[
    ("AWS::SQS::Queue", Some("QueueName")),
    ("AWS::DynamoDB::Table", Some("TableName")),
    ("AWS::Lambda::Function", Some("FunctionName")),
    ("AWS::Logs::LogGroup", Some("LogGroupName")),
    ("AWS::Logs::QueryDefinition", Some("Name")),
    ("AWS::CloudWatch::Alarm", Some("AlarmName")),
    ("AWS::CloudWatch::Dashboard", Some("DashboardName")),
    ("AWS::SNS::Topic", Some("TopicName")),
    ("AWS::Events::EventBus", Some("Name")),
    ("AWS::Events::Rule", Some("Name")),
    ("AWS::Scheduler::Schedule", Some("Name")),
    ("AWS::IAM::Role", Some("RoleName")),
    ("AWS::IAM::ManagedPolicy", Some("ManagedPolicyName")),
    ("AWS::Lambda::EventSourceMapping", None),
    ("AWS::Lambda::Permission", None),
    ("AWS::Lambda::Url", None),
    ("AWS::SNS::Subscription", None),
];

/// Resolves the intrinsics a name may use (`Fn::Sub`, `Ref`, `Fn::Join`) for one stack.
fn resolve_name(v: &serde_json::Value, env: &BTreeMap<String, String>) -> Result<String, String> {
    use serde_json::Value as J;
    let sub = |text: &str, scope: &BTreeMap<String, String>| -> Result<String, String> {
        let (mut out, mut rest) = (String::new(), text);
        while let Some(i) = rest.find("${") {
            let j = rest[i..].find('}').ok_or_else(|| format!("unclosed ${{ in {text}"))? + i;
            out.push_str(&rest[..i]);
            out.push_str(scope.get(&rest[i + 2..j]).ok_or_else(|| format!("unknown {} in {text}", &rest[i..=j]))?);
            rest = &rest[j + 1..];
        }
        out.push_str(rest);
        Ok(out)
    };
    match v {
        J::String(s) => Ok(s.clone()),
        J::Object(o) if o.len() == 1 => match o.iter().next().unwrap() {
            (f, J::String(p)) if f == "Ref" => env.get(p).cloned().ok_or_else(|| format!("Ref {p}")),
            (f, J::String(t)) if f == "Fn::Sub" => sub(t, env),
            (f, J::Array(a)) if f == "Fn::Sub" && a.len() == 2 => {
                let mut scope = env.clone();
                for (k, x) in a[1].as_object().ok_or("Fn::Sub variables")? {
                    scope.insert(k.clone(), resolve_name(x, env)?);
                }
                sub(a[0].as_str().ok_or("Fn::Sub text")?, &scope)
            }
            (f, J::Array(a)) if f == "Fn::Join" && a.len() == 2 => {
                let parts: Result<Vec<String>, String> =
                    a[1].as_array().ok_or("Fn::Join list")?.iter().map(|x| resolve_name(x, env)).collect();
                Ok(parts?.join(a[0].as_str().ok_or("Fn::Join separator")?))
            }
            (f, _) => Err(format!("{f} in a name")),
        },
        other => Err(format!("not a name: {other}")),
    }
}

/// Staging and prod in one account and region: the template as `sam deploy` transforms it
/// (aws-sam-translator, so the schedules, roles and URLs SAM generates are included), with its
/// names resolved for two stack names, has no physical name in common, and every name it sets
/// carries the stack's name. Resources it leaves unnamed get unique names from CloudFormation.
#[test]
fn two_stacks_in_one_account_share_no_physical_name() {
    let t = transformed();
    let params: BTreeMap<String, String> = t["Parameters"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, p)| (k.clone(), p["Default"].as_str().map(str::to_owned).unwrap_or_else(|| p["Default"].to_string())))
        .collect();
    let names_for = |stack: &str| -> BTreeMap<String, String> {
        let mut env = params.clone();
        for (k, v) in [
            ("AWS::StackName", stack),
            ("AWS::Region", "ap-northeast-2"),
            ("AWS::AccountId", "123456789012"),
            ("AWS::Partition", "aws"),
            ("AWS::URLSuffix", "amazonaws.com"),
        ] {
            env.insert(k.to_owned(), v.to_owned());
        }
        let mut out = BTreeMap::new();
        for (logical, r) in t["Resources"].as_object().unwrap() {
            let ty = r["Type"].as_str().unwrap();
            let Some((_, prop)) = NAME_PROPERTY.iter().find(|(t, _)| *t == ty) else {
                panic!("{logical}: {ty} — add it to NAME_PROPERTY (which property names it?)")
            };
            if let Some(raw) = prop.and_then(|p| r["Properties"].get(p)) {
                out.insert(logical.clone(), resolve_name(raw, &env).unwrap_or_else(|e| panic!("{logical}: {e}")));
            }
        }
        out
    };
    let (staging, prod) = (names_for("relay-staging"), names_for("relay-prod"));
    assert!(t["Resources"].as_object().unwrap().len() > 40 && staging.len() >= 15, "{staging:?}");
    for (stack, names) in [("relay-staging", &staging), ("relay-prod", &prod)] {
        for (logical, name) in names {
            assert!(name.contains(stack), "{logical} is named {name:?} in stack {stack}: not derived from the stack");
        }
    }
    let a: BTreeSet<&String> = staging.values().collect();
    let shared: Vec<&String> = prod.values().filter(|n| a.contains(n)).collect();
    assert!(shared.is_empty(), "names both stacks would use: {shared:?}");
}

/// `make deploy` reads the account's concurrency before deploying and refuses, with the fix, a
/// stack whose reservations would leave Lambda fewer than 100 unreserved executions (which
/// CloudFormation would refuse only halfway through). Its defaults are the template's.
#[test]
fn make_deploy_refuses_reservations_the_account_cannot_hold() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let check = |want: &[&str], account: &str| {
        let out = std::process::Command::new("python3")
            .arg(format!("{root}/scripts/concurrency-check.py"))
            .args(["--stack", "s", "--want"])
            .args(want)
            .args(["--account", account])
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let all = ["webhook-ingest=20", "app-url=5", "dispatcher=10", "worker=50", "call-api=5"];
    // A new account's quota: refused, naming the quota to ask for and the settings to lower.
    let (code, err) = check(&all, r#"{"limit": 100, "unreserved": 100}"#);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("at least 190") && err.contains("L-B99A9384") && err.contains("WORKER_MAX_CONCURRENCY"),
        "{err}"
    );
    assert_eq!(check(&all, r#"{"limit": 190, "unreserved": 190}"#).0, Some(0), "exactly 100 left fits");
    assert_eq!(check(&all, r#"{"limit": 189, "unreserved": 189}"#).0, Some(1));
    // A redeploy: the stack's own reservations are given back before the new ones are taken.
    let mine = r#"{"limit": 200, "unreserved": 110, "reserved": {"s-webhook-ingest": 20, "s-app-url": 5, "s-dispatcher": 10, "s-worker": 50, "s-call-api": 5}}"#;
    assert_eq!(check(&all, mine).0, Some(0));
    assert_eq!(check(&["webhook-ingest=20", "app-url=5", "dispatcher=10", "worker=61", "call-api=5"], mine).0, Some(1));
    // Malformed input: a clear error, no verdict.
    for (want, account) in [
        (&["worker=x"][..], r#"{"limit": 1000, "unreserved": 1000}"#),
        (&["=5"][..], r#"{"limit": 1000, "unreserved": 1000}"#),
        (&all[..], r#"{"limit": "many", "unreserved": 1000}"#),
        (&all[..], r#"{"unreserved": 1000}"#),
        (&all[..], "not json"),
    ] {
        let (code, err) = check(want, account);
        assert_eq!(code, Some(2), "{want:?} {account}: {err}");
        assert!(err.starts_with("concurrency-check:"), "{err}");
    }

    // deploy.sh runs the check before `sam deploy`, with the template's defaults or the
    // overrides it also passes to the stack.
    let dry = |extra: &[(&str, &str)]| {
        let mut c = std::process::Command::new("bash");
        c.arg(format!("{root}/scripts/deploy.sh"))
            .arg("--dry-run")
            .env("STACK_NAME", "relay-test")
            .env("CAFE24_CLIENT_ID", "client-1");
        for (k, v) in extra {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = dry(&[]);
    let line = text.lines().find(|l| l.contains("concurrency-check.py")).unwrap();
    assert!(text.find("concurrency-check.py").unwrap() < text.find("sam deploy ").unwrap(), "{text}");
    let t = template();
    let default = |p: &str| t["Parameters"][p]["Default"].as_u64().unwrap();
    for (suffix, param) in [
        ("webhook-ingest", "IngestReservedConcurrency"),
        ("app-url", "AppUrlReservedConcurrency"),
        ("worker", "WorkerMaxConcurrency"),
        ("call-api", "CallApiReservedConcurrency"),
    ] {
        assert!(
            line.contains(&format!(" {suffix}={} ", default(param)))
                || line.ends_with(&format!(" {suffix}={}", default(param))),
            "{param}: {line}"
        );
    }
    let dispatcher = &t["Resources"]["DispatcherFunction"]["Properties"]["ReservedConcurrentExecutions"];
    assert!(line.contains(&format!(" dispatcher={} ", dispatcher.as_u64().unwrap())), "{line}");
    let text = dry(&[("WORKER_MAX_CONCURRENCY", "300")]);
    let line = text.lines().find(|l| l.contains("concurrency-check.py")).unwrap();
    assert!(line.contains(" worker=300"), "{line}");
    assert!(text.lines().any(|l| l.contains(" deploy ") && l.contains("WorkerMaxConcurrency=300")), "{text}");
}

/// The operator's policy (output `OperatorPolicyArn`) grants what the relay CLI calls on this
/// stack's resources and nothing wider: no wildcard resource on a data-plane action, and every
/// log group `relay trace` searches.
#[test]
fn the_operators_policy_grants_what_the_cli_uses_on_this_stack_only() {
    let t = template();
    let p = &t["Resources"]["OperatorPolicy"];
    assert_eq!(p["Type"].as_str(), Some("AWS::IAM::ManagedPolicy"));
    assert!(t["Outputs"].get("OperatorPolicyArn").is_some());
    let mut granted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for st in p["Properties"]["PolicyDocument"]["Statement"].as_sequence().unwrap() {
        assert_eq!(st["Effect"].as_str(), Some("Allow"));
        let resources = format!("{:?}", st["Resource"]);
        for a in st["Action"].as_sequence().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()) {
            assert!(!a.contains('*'), "wildcard action {a}");
            let data_plane = ["sqs:", "dynamodb:", "events:", "logs:StartQuery"].iter().any(|x| a.starts_with(x));
            assert!(!data_plane || !resources.contains("\"*\""), "{a} on every resource: {resources}");
            granted.entry(a).or_default().push(resources.clone());
        }
    }
    let on = |action: &str, resource: &str| granted.get(action).is_some_and(|r| r.iter().any(|x| x.contains(resource)));
    // What the CLI's commands call (tools/relay/src): dlq, mall status, resync, call, malls,
    // mall import, snapshot get, resync status, trace.
    for q in ["InboxQueue", "InboxDLQ", "WorkQueue", "WorkDLQ", "CommandQueue"] {
        for a in [
            "sqs:GetQueueAttributes",
            "sqs:ReceiveMessage",
            "sqs:ChangeMessageVisibility",
            "sqs:DeleteMessage",
            "sqs:SendMessage",
        ] {
            assert!(on(a, q), "{a} on {q}");
        }
    }
    for a in ["dynamodb:GetItem", "dynamodb:Scan", "dynamodb:UpdateItem"] {
        assert!(on(a, "TokenTable"), "{a} on the token table");
    }
    assert!(on("dynamodb:GetItem", "StateTable") && on("dynamodb:GetItem", "RateLimitTable"));
    assert!(!on("dynamodb:UpdateItem", "StateTable") && !on("dynamodb:PutItem", "TokenTable"), "no more than it uses");
    assert!(on("events:PutEvents", "RelayEventBus") && on("events:PutEvents", "EventBusArn"));
    let groups = format!("{:?}", t["Outputs"]["LogGroups"]["Value"]);
    for g in ["WebhookIngestLogs", "AppUrlLogs", "DispatcherLogs", "WorkerLogs", "CallApiLogs"] {
        assert!(on("logs:StartQuery", g), "StartQuery on {g}");
        assert!(groups.contains(g), "relay trace searches {g}");
    }
    assert!(granted.contains_key("logs:GetQueryResults"));
}
