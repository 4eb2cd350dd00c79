//! Secrets from AWS Secrets Manager, read once per cold start.
//!
//! The deployed functions get `SECRET_ID` (the secret's name or ARN) instead of secret values in
//! their environment: nothing secret is visible in the function configuration, and rotating a
//! value needs no redeploy (new containers read the new value). The secret is one JSON object
//! whose keys map to the configuration variables the loaders already read ([`SECRET_KEYS`]), so
//! configuration code is the same locally (plain environment variables) and on AWS.
//!
//! Errors name the secret and the key, never a value.

use std::collections::BTreeMap;

use thiserror::Error;

/// JSON key in the secret → configuration variable it provides.
pub const SECRET_KEYS: &[(&str, &str)] = &[
    ("webhook_api_key", "WEBHOOK_API_KEY"),
    ("webhook_api_key_previous", "WEBHOOK_API_KEY_PREVIOUS"),
    ("client_secret", "CAFE24_CLIENT_SECRET"),
    ("oauth_state_secret", "OAUTH_STATE_SECRET"),
];

/// Why the secret could not be used.
#[derive(Debug, Error)]
pub enum SecretsError {
    /// Secrets Manager refused or failed.
    #[error("cannot read secret {id}")]
    Read {
        /// The secret id.
        id: String,
        /// The SDK error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The secret has no string value (a binary secret).
    #[error("secret {0} has no SecretString (store a JSON object)")]
    NotString(String),
    /// The value is not a JSON object of strings.
    #[error("secret {id} is not a JSON object of strings: {why}")]
    Shape {
        /// The secret id.
        id: String,
        /// What is wrong (never the value).
        why: String,
    },
}

/// Parses the secret's JSON into configuration variables (pure). Unknown keys are refused, so a
/// typo does not silently leave a variable unset; empty strings count as unset.
pub fn parse(id: &str, json: &str) -> Result<BTreeMap<String, String>, SecretsError> {
    let shape = |why: String| SecretsError::Shape { id: id.to_owned(), why };
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| {
        // serde's message quotes no input for syntax errors; keep only position and category.
        shape(format!("not JSON ({:?} at line {} column {})", e.classify(), e.line(), e.column()))
    })?;
    let obj = v.as_object().ok_or_else(|| shape("not an object".into()))?;
    let mut out = BTreeMap::new();
    for (k, val) in obj {
        let Some((_, var)) = SECRET_KEYS.iter().find(|(key, _)| key == k) else {
            let known: Vec<&str> = SECRET_KEYS.iter().map(|(k, _)| *k).collect();
            return Err(shape(format!("unknown key {k:?} (known: {})", known.join(", "))));
        };
        let s = val.as_str().ok_or_else(|| shape(format!("{k} is not a string")))?;
        if !s.is_empty() {
            out.insert((*var).to_owned(), s.to_owned());
        }
    }
    Ok(out)
}

/// Reads `id` from Secrets Manager and parses it with [`parse`].
pub async fn load(client: &aws_sdk_secretsmanager::Client, id: &str) -> Result<BTreeMap<String, String>, SecretsError> {
    let out = client
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| SecretsError::Read { id: id.to_owned(), source: Box::new(e) })?;
    let json = out.secret_string().ok_or_else(|| SecretsError::NotString(id.to_owned()))?;
    parse(id, json)
}

/// The configuration lookup of a function: variables from the secret named by `SECRET_ID` (when
/// set) win over the process environment. Without `SECRET_ID` (local runs, tests) it is the
/// environment alone.
pub async fn lookup(
    sdk: &aws_config::SdkConfig,
    env: impl Fn(&str) -> Option<String>,
) -> Result<impl Fn(&str) -> Option<String>, SecretsError> {
    let secrets = match env("SECRET_ID").filter(|s| !s.trim().is_empty()) {
        Some(id) => load(&aws_sdk_secretsmanager::Client::new(sdk), id.trim()).await?,
        None => BTreeMap::new(),
    };
    Ok(move |k: &str| secrets.get(k).cloned().or_else(|| env(k)))
}

/// Reads the current client secret again (after a rotation), as `relay_cafe24`'s `SecretReader`.
pub type ClientSecretReader = std::sync::Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<relay_domain::tokens::Secret>> + Send>>
        + Send
        + Sync,
>;

/// Where a warm process reads `client_secret` again when Cafe24 refuses the client (the secret
/// was reissued and rotated in Secrets Manager): the secret named by `SECRET_ID`. `None` without
/// `SECRET_ID` (the environment cannot change under a running process). A read that fails is
/// `None` for that read (logged without the value); the client keeps what it has.
pub fn client_secret_reader(
    sdk: &aws_config::SdkConfig,
    env: impl Fn(&str) -> Option<String>,
) -> Option<ClientSecretReader> {
    let id = env("SECRET_ID").map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())?;
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    Some(std::sync::Arc::new(move || {
        let (client, id) = (client.clone(), id.clone());
        Box::pin(async move {
            match load(&client, &id).await {
                Ok(vars) => vars.get("CAFE24_CLIENT_SECRET").map(|s| relay_domain::tokens::Secret::new(s.as_str())),
                Err(e) => {
                    tracing::warn!(error = %e, "client secret not read again");
                    None
                }
            }
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_the_variables_the_loaders_read() {
        let m = parse("s", r#"{"webhook_api_key":"k1","client_secret":"c","webhook_api_key_previous":""}"#).unwrap();
        assert_eq!(m.get("WEBHOOK_API_KEY").map(String::as_str), Some("k1"));
        assert_eq!(m.get("CAFE24_CLIENT_SECRET").map(String::as_str), Some("c"));
        assert!(!m.contains_key("WEBHOOK_API_KEY_PREVIOUS"), "empty means unset");
    }

    #[test]
    fn malformed_secrets_are_refused_without_echoing_values() {
        for (json, want) in [
            ("not json SECRETVALUE", "not JSON"),
            (r#"["SECRETVALUE"]"#, "not an object"),
            (r#"{"webhook_api_key": 12345}"#, "not a string"),
            (r#"{"webhok_api_key": "SECRETVALUE"}"#, "unknown key"),
        ] {
            let e = parse("relay/secrets", json).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("relay/secrets"), "{e}");
            assert!(!e.contains("SECRETVALUE") && !e.contains("12345"), "{e}");
        }
    }
}
