//! The worker's tests without moto, in one binary (tests run side by side): the ports are the
//! in-memory fakes of `relay-domain` (`test-util`), Cafe24 is the simulator in-process.
//! `outcomes`: what each Cafe24 answer or store state makes of a job; `reconcile`, `backfill`:
//! the many-call jobs; `command`: the app's own requests, once per key; `config_faults`: what Cafe24 refuses for every mall; `shops`: multi-shop
//! malls.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod backfill;
mod command;
mod common;
mod config_faults;
mod memory;
mod outcomes;
mod reconcile;
mod shops;
