//! The clock type: epoch milliseconds through one shared function type. The domain never reads
//! time itself (time is an argument); the functions inject a clock — the wall clock on AWS
//! (`relay_lambda::clock::system_clock`), the simulator's manual clock or a virtual one in tests.

use std::sync::Arc;

/// An epoch-ms clock.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;
