//! The wall clock, as the functions read it (the domain only names the type,
//! [`relay_domain::clock::Clock`]).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use relay_domain::clock::Clock;

/// The wall clock, epoch ms (0 if the system clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The wall clock as a [`Clock`].
pub fn system_clock() -> Clock {
    Arc::new(now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_reads_the_wall_clock() {
        let before = now_ms();
        let read = system_clock()();
        assert!(before > 1_700_000_000_000 && read >= before && read - before < 60_000);
    }
}
