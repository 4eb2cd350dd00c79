//! Secrets at cold start against moto's Secrets Manager: the secret named by `SECRET_ID` provides
//! the configuration variables and wins over the environment; a missing, binary or malformed
//! secret fails with an error that names the secret and never a value.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use relay_aws::secrets::{lookup, SecretsError};

async fn sdk() -> aws_config::SdkConfig {
    devstack::sdk_config(&devstack::moto::endpoint().await.unwrap()).await
}

fn name(tag: &str) -> String {
    format!("{}secret", devstack::unique_prefix(tag))
}

#[tokio::test]
async fn the_secret_provides_the_keys_and_wins_over_the_environment() {
    let sdk = sdk().await;
    let id = name("sec-ok");
    aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name(&id)
        .secret_string(r#"{"webhook_api_key":"from-secret","client_secret":"cs-1","oauth_state_secret":"0123456789abcdef0123456789abcdef"}"#)
        .send()
        .await
        .unwrap();
    let env_id = id.clone();
    let env = move |k: &str| match k {
        "SECRET_ID" => Some(env_id.clone()),
        "WEBHOOK_API_KEY" => Some("from-env".to_owned()),
        "INBOX_QUEUE_URL" => Some("https://q".to_owned()),
        _ => None,
    };
    let l = lookup(&sdk, env).await.unwrap();
    assert_eq!(l("WEBHOOK_API_KEY").as_deref(), Some("from-secret"));
    assert_eq!(l("CAFE24_CLIENT_SECRET").as_deref(), Some("cs-1"));
    assert_eq!(l("INBOX_QUEUE_URL").as_deref(), Some("https://q"), "the rest still comes from the environment");
    assert_eq!(l("WEBHOOK_API_KEY_PREVIOUS"), None);
    // The function configurations accept it as a whole.
    let cfg = webhook_ingest::IngestConfig::from_lookup(|k| match k {
        "PARKING_QUEUE_URL" => Some("https://p".to_owned()),
        other => l(other),
    });
    assert!(cfg.is_ok(), "{:?}", cfg.err());
}

#[tokio::test]
async fn without_secret_id_the_environment_is_used_alone() {
    let l = lookup(&sdk().await, |k: &str| (k == "WEBHOOK_API_KEY").then(|| "env-key".to_owned())).await.unwrap();
    assert_eq!(l("WEBHOOK_API_KEY").as_deref(), Some("env-key"));
}

#[tokio::test]
async fn unusable_secrets_fail_the_cold_start_clearly() {
    let sdk = sdk().await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    let missing = name("sec-missing");
    let binary = name("sec-binary");
    client
        .create_secret()
        .name(&binary)
        .secret_binary(aws_sdk_secretsmanager::primitives::Blob::new(b"SECRETBYTES".to_vec()))
        .send()
        .await
        .unwrap();
    let malformed = name("sec-bad");
    client.create_secret().name(&malformed).secret_string("SECRETVALUE, not json").send().await.unwrap();
    for (id, check) in [
        (missing.clone(), (|e: &SecretsError| matches!(e, SecretsError::Read { .. })) as fn(&SecretsError) -> bool),
        (binary.clone(), |e| matches!(e, SecretsError::NotString(_))),
        (malformed.clone(), |e| matches!(e, SecretsError::Shape { .. })),
    ] {
        let env_id = id.clone();
        let err = match lookup(&sdk, move |k: &str| (k == "SECRET_ID").then(|| env_id.clone())).await {
            Ok(_) => panic!("{id} accepted"),
            Err(e) => e,
        };
        assert!(check(&err), "{id}: {err:?}");
        let text = err.to_string();
        assert!(text.contains(&id) && !text.contains("SECRET"), "{text}");
    }
}

/// A warm worker reads `client_secret` again from the secret after a rotation (on Cafe24's first
/// `invalid_client`): the reader returns what the secret holds now, and nothing without
/// `SECRET_ID`.
#[tokio::test]
async fn the_client_secret_reader_sees_a_rotation_in_secrets_manager() {
    let sdk = sdk().await;
    let id = name("sec-rot");
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    client.create_secret().name(&id).secret_string(r#"{"client_secret":"cs-1"}"#).send().await.unwrap();
    let env_id = id.clone();
    let reader = relay_aws::secrets::client_secret_reader(&sdk, move |k| (k == "SECRET_ID").then(|| env_id.clone()))
        .expect("SECRET_ID set");
    assert_eq!(reader().await.map(|s| s.expose().to_owned()).as_deref(), Some("cs-1"));
    client.put_secret_value().secret_id(&id).secret_string(r#"{"client_secret":"cs-2"}"#).send().await.unwrap();
    assert_eq!(reader().await.map(|s| s.expose().to_owned()).as_deref(), Some("cs-2"), "the rotated value");
    client.put_secret_value().secret_id(&id).secret_string("not json").send().await.unwrap();
    assert!(reader().await.is_none(), "an unreadable secret: keep what the client has");
    assert!(relay_aws::secrets::client_secret_reader(&sdk, |_| None).is_none(), "no SECRET_ID, nothing to re-read");
}
