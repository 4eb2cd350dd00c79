//! Faults the local AWS endpoint injects on request (`scripts/moto_server.py`, "Injected
//! faults"): what moto never does and AWS does — a write applied but answered 500, answered too
//! late, or never answered; throttling at a rate; a clean 500.

use anyhow::{bail, Context, Result};
use serde_json::json;

/// What happens to a matching request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Applied, then answered 500: the SDK retries a write that already happened.
    Apply500,
    /// Applied, answered after this many ms (past the attempt timeout, the SDK retries).
    ApplyDelay(u64),
    /// Applied, then the connection is reset without an answer.
    ApplyReset,
    /// Answered 500 without being applied.
    Reject500,
    /// Answered with the service's throttling error without being applied.
    Throttle,
}

/// One rule: requests of `action` whose body contains `scope` (a resource name of the test's
/// own stack, so parallel tests never share a fault).
#[derive(Clone, Debug)]
pub struct Rule {
    /// The operation (`UpdateItem`, `PutItem`, `SendMessageBatch`, `PutEvents`, ...).
    pub action: String,
    /// Text the request body must contain (a table, queue or bus name).
    pub scope: String,
    /// The fault.
    pub fault: Fault,
    /// Matching requests let through before the first fault.
    pub skip: u32,
    /// Faults injected at most (0: every matching request, forever).
    pub times: u32,
    /// Only every n-th matching request (after `skip`) faults: a rate.
    pub every: u32,
}

impl Rule {
    /// `fault` on the next request of `action` within `scope`, once.
    pub fn once(action: &str, scope: &str, fault: Fault) -> Self {
        Self { action: action.to_owned(), scope: scope.to_owned(), fault, skip: 0, times: 1, every: 1 }
    }

    /// Let `n` matching requests through first.
    pub fn after(mut self, n: u32) -> Self {
        self.skip = n;
        self
    }

    /// Fault `n` requests (0: all).
    pub fn times(mut self, n: u32) -> Self {
        self.times = n;
        self
    }

    /// Fault every `n`-th matching request only.
    pub fn every(mut self, n: u32) -> Self {
        self.every = n.max(1);
        self
    }
}

/// Adds `rule` on the endpoint.
pub async fn inject(endpoint: &str, rule: &Rule) -> Result<()> {
    let (fault, delay_ms) = match rule.fault {
        Fault::Apply500 => ("apply_500", 0),
        Fault::ApplyDelay(ms) => ("apply_delay", ms),
        Fault::ApplyReset => ("apply_reset", 0),
        Fault::Reject500 => ("reject_500", 0),
        Fault::Throttle => ("throttle", 0),
    };
    let body = json!({
        "action": rule.action, "scope": rule.scope, "fault": fault, "delay_ms": delay_ms,
        "skip": rule.skip, "times": rule.times, "every": rule.every,
    });
    let r = reqwest::Client::new()
        .post(format!("{}/_relay/faults", endpoint.trim_end_matches('/')))
        .json(&body)
        .send()
        .await
        .context("fault endpoint")?;
    if !r.status().is_success() {
        bail!("fault rule refused: {}", r.text().await.unwrap_or_default());
    }
    Ok(())
}

/// How many times each of `scope`'s rules fired, in the order they were added.
pub async fn fired(endpoint: &str, scope: &str) -> Result<Vec<u64>> {
    let rules: Vec<serde_json::Value> = reqwest::get(format!("{}/_relay/faults", endpoint.trim_end_matches('/')))
        .await
        .context("fault endpoint")?
        .json()
        .await?;
    Ok(rules.iter().filter(|r| r["scope"] == scope).map(|r| r["fired"].as_u64().unwrap_or(0)).collect())
}
