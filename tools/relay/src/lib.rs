//! # relay — the cafe24-relay ops CLI
//!
//! ```text
//! relay [--local | --env-file PATH] trace <trace-id> [--since 24h]
//! relay [...] dlq list   [--stage work|inbox] [--max N]
//! relay [...] dlq redrive [--stage work|inbox] [--group G] [--max N] [--dry-run]
//! relay [...] malls [--status active|needs_reauth|uninstalled] [--max N] [--after MALL]
//! relay [...] mall status <mall>
//! relay [...] mall reauth-url <mall>
//! relay [...] snapshot get --mall <mall> order|product|customer <id>
//! relay [...] call --mall <mall> [--shop N] METHOD PATH [--query k=v]... [--data JSON|@file] [--key K] [--no-wait]
//! ```
//!
//! It reaches AWS with the default credential chain and the resource names in `.relay/aws.env`
//! (written by `make deploy` from the stack's outputs), or the local stack with `--local`
//! (`target/relay-local/stack.env`, written by `make demo`: moto's endpoint, the demo's queues
//! and tables, and the file the demo's functions log to). See [`target`] for every key.
//!
//! Nothing here prints a token, a webhook key or a webhook's payload; only `snapshot get` prints
//! synced data, which is what it is asked for.

pub mod call;
pub mod dlq;
pub mod import;
pub mod mall;
pub mod resync;
pub mod snapshot;
pub mod target;
pub mod trace;
