//! `relay-demo` and `relay-bench` take their arguments through clap: `--help` prints help and
//! exits without starting a run (no moto, no simulator), and an unknown argument is refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

#[test]
fn help_prints_usage_and_starts_nothing_and_unknown_arguments_are_refused() {
    for (bin, target) in
        [(env!("CARGO_BIN_EXE_relay-demo"), "make demo"), (env!("CARGO_BIN_EXE_relay-bench"), "make bench")]
    {
        // No AWS endpoint: a run would fail at once, so success here means no run started.
        let o = Command::new(bin).arg("--help").env_remove("AWS_ENDPOINT_URL").output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success() && out.contains("Usage") && out.contains("--quick"), "{bin}: {out}");
        // Each says what it is (relay-bench once described itself as `make demo`).
        assert!(out.starts_with(target), "{bin}: {out}");
        let o = Command::new(bin).arg("--qiuck").env_remove("AWS_ENDPOINT_URL").output().unwrap();
        assert!(!o.status.success(), "{bin}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("--qiuck"), "{bin}");
    }
    let o = Command::new(env!("CARGO_BIN_EXE_relay-bench")).args(["--defer-min-s", "soon"]).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("defer-min-s"));
}
