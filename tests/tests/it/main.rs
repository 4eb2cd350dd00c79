//! The black-box tests over moto, the Cafe24 simulator and the template, as modules of one test
//! binary: the AWS SDK and the functions are linked once, not once per file. (`logs.rs` stays a
//! binary of its own: it installs the process-wide log subscriber and reads every line.)

mod ambiguous;
mod backfill;
mod cafe24_client;
mod commands;
mod config_faults;
mod delivery;
mod dispatcher;
mod endpoint_limits;
mod flood;
mod infra_env;
mod infra_template;
mod ingest;
mod install;
mod limiter_moto;
mod limiter_sim;
mod local_esm;
mod quotas;
mod reconcile;
mod secrets;
mod worker;
