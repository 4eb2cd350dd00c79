//! The dispatcher's tests without moto, in one binary: the ports are the in-memory fakes of
//! `relay-domain` (`test-util`). `delivery`: what reaches the app's bus and when a webhook leaves
//! the inbox; `poison`: what the dispatcher cannot read; `schedule`: the scheduled fan-out
//! (reconciliation, keep-alive) at 10,000 malls in virtual time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;
mod delivery;
mod poison;
mod schedule;
