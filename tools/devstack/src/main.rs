//! `devstack` — create the local resources and print the environment the functions need.
//!
//! ```text
//! devstack up [--prefix P]   start moto if needed, create queues, print KEY=VALUE lines
//! devstack endpoint          print the moto endpoint
//! ```

use anyhow::{bail, Result};

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut prefix = String::new();
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--prefix" => prefix = it.next().cloned().unwrap_or_default(),
            other => bail!("unknown argument {other}; see `devstack --help`"),
        }
    }
    match args.first().map(String::as_str) {
        Some("up") => {
            let endpoint = devstack::moto::endpoint().await?;
            let sqs = aws_sdk_sqs::Client::new(&devstack::sdk_config(&endpoint).await);
            let stack = devstack::resources::Stack::create(&sqs, &prefix).await?;
            println!("AWS_ENDPOINT_URL={endpoint}");
            for (k, v) in stack.env() {
                println!("{k}={v}");
            }
            Ok(())
        }
        Some("endpoint") => {
            println!("{}", devstack::moto::endpoint().await?);
            Ok(())
        }
        _ => {
            println!("usage: devstack up [--prefix P] | devstack endpoint");
            Ok(())
        }
    }
}
