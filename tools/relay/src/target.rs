//! Where the CLI points: a `KEY=VALUE` file naming the stack's resources.
//!
//! `make demo` writes `target/relay-local/stack.env` (moto endpoint, queue URLs, table names,
//! the local log file); `make deploy` writes `.relay/aws.env` from the CloudFormation stack's
//! outputs (queue URLs, table names, log group names). Variables of the process environment
//! with the same names win over the file, so one value can be overridden for one command.
//!
//! | key | used by |
//! |---|---|
//! | `AWS_ENDPOINT_URL` | local stack only (moto) |
//! | `INBOX_QUEUE_URL`, `INBOX_DLQ_URL`, `WORK_QUEUE_URL`, `WORK_DLQ_URL` | `dlq`, `mall status` |
//! | `RATE_LIMIT_TABLE`, `TOKEN_TABLE` | `mall status` |
//! | `RATE_LIMIT_KEY` | `mall status` (default: one key per mall) |
//! | `INGEST_URL` | `mall reauth-url` |
//! | `LOG_GROUPS` (comma-separated) | `trace` on AWS |
//! | `RELAY_LOG_FILE` | `trace` on the local stack |
//! | `COMMAND_QUEUE_URL`, `STATE_TABLE` | `call` (the command door, and the command's record) |
//! | `TOKEN_TABLE`, `EVENT_BUS_NAME` | `mall import` (the tokens, and `mall.installed`) |

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// The resolved settings.
#[derive(Clone, Debug, Default)]
pub struct Target {
    values: BTreeMap<String, String>,
}

impl Target {
    /// Parses a `KEY=VALUE` file: blank lines and `#` comments are skipped, `export ` prefixes and
    /// matching quotes are accepted; anything else is an error naming the line.
    pub fn parse(text: &str) -> Result<Self> {
        let mut values = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            let Some((k, v)) = line.split_once('=') else {
                bail!("line {}: expected KEY=VALUE", i + 1);
            };
            let k = k.trim();
            if k.is_empty() || !k.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') {
                bail!("line {}: {k:?} is not a variable name (A-Z, 0-9, _)", i + 1);
            }
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
                .unwrap_or(v);
            values.insert(k.to_owned(), v.to_owned());
        }
        Ok(Self { values })
    }

    /// Reads `path` (see [`Target::parse`]), then applies `overrides` (the process environment).
    pub fn load(path: &Path, overrides: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!("cannot read {} (run `make demo` for the local stack or `make deploy` for AWS)", path.display())
        })?;
        let mut t = Self::parse(&text).with_context(|| path.display().to_string())?;
        let keys: Vec<String> = t.values.keys().cloned().collect();
        for k in keys.into_iter().chain(KNOWN.iter().map(|k| (*k).to_owned())) {
            if let Some(v) = overrides(&k).filter(|v| !v.is_empty()) {
                t.values.insert(k, v);
            }
        }
        Ok(t)
    }

    /// A value, if set and not empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str).filter(|v| !v.trim().is_empty())
    }

    /// A value that must be set.
    pub fn require(&self, key: &str) -> Result<&str> {
        self.get(key).with_context(|| format!("{key} is not set (in the stack file or the environment)"))
    }

    /// Sets a value (tests).
    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.values.insert(key.to_owned(), value.to_owned());
        self
    }

    /// The AWS SDK configuration: the default chain, plus the endpoint override when the stack
    /// file names one (moto takes any credentials; dummy ones are supplied if none are set).
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        let mut loader =
            aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(relay_aws::http_client());
        if let Some(endpoint) = self.get("AWS_ENDPOINT_URL") {
            loader = loader.endpoint_url(endpoint);
            if std::env::var("AWS_ACCESS_KEY_ID").is_err() {
                loader = loader.credentials_provider(aws_sdk_sqs::config::Credentials::new(
                    "test",
                    "test",
                    None,
                    None,
                    "relay-local",
                ));
            }
            if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() {
                loader =
                    loader.region(aws_config::Region::new(self.get("AWS_REGION").unwrap_or("us-east-1").to_owned()));
            }
        }
        loader.load().await
    }
}

/// Keys the environment may override even when the file lacks them.
pub const KNOWN: &[&str] = &[
    "AWS_ENDPOINT_URL",
    "INBOX_QUEUE_URL",
    "INBOX_DLQ_URL",
    "WORK_QUEUE_URL",
    "WORK_DLQ_URL",
    "RATE_LIMIT_TABLE",
    "TOKEN_TABLE",
    "STATE_TABLE",
    "EVENT_BUS_NAME",
    "RATE_LIMIT_KEY",
    "INGEST_URL",
    "LOG_GROUPS",
    "RELAY_LOG_FILE",
    "COMMAND_QUEUE_URL",
];

/// The stack-file key for a CloudFormation output name: `InboxDlqUrl` → `INBOX_DLQ_URL`
/// (what `make deploy` writes into `.relay/aws.env`).
pub fn key_for_output(output: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in output.chars() {
        if c.is_ascii_uppercase() && prev_lower {
            out.push('_');
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comments_exports_and_quotes() {
        let t = Target::parse("# stack\n\nexport A_B=\"x y\"\nC='1'\nD=plain=with=equals\n").unwrap();
        assert_eq!(t.get("A_B"), Some("x y"));
        assert_eq!(t.get("C"), Some("1"));
        assert_eq!(t.get("D"), Some("plain=with=equals"));
    }

    #[test]
    fn malformed_lines_are_refused_with_their_number() {
        let e = Target::parse("A=1\nnot a pair\n").unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
        let e = Target::parse("lower=1\n").unwrap_err().to_string();
        assert!(e.contains("not a variable name"), "{e}");
    }

    #[test]
    fn output_names_become_keys() {
        assert_eq!(key_for_output("InboxDlqUrl"), "INBOX_DLQ_URL");
        assert_eq!(key_for_output("LogGroups"), "LOG_GROUPS");
        assert_eq!(key_for_output("IngestUrl"), "INGEST_URL");
    }

    #[test]
    fn missing_values_name_the_key() {
        let t = Target::parse("EMPTY=\n").unwrap();
        assert!(t.require("EMPTY").unwrap_err().to_string().contains("EMPTY is not set"));
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let dir = std::env::temp_dir().join(format!("relay-target-{}", std::process::id()));
        std::fs::write(&dir, "INGEST_URL=http://file\nWORK_DLQ_URL=q\n").unwrap();
        let t = Target::load(&dir, |k| (k == "INGEST_URL").then(|| "http://env".to_owned())).unwrap();
        assert_eq!(t.get("INGEST_URL"), Some("http://env"));
        assert_eq!(t.get("WORK_DLQ_URL"), Some("q"));
        let _ = std::fs::remove_file(&dir);
        assert!(Target::load(&dir, |_| None).unwrap_err().to_string().contains("make demo"));
    }
}
