//! `relay-demo`, `relay-bench` and `relay-scale` take their arguments through clap: `--help`
//! prints help and exits without starting a run (no moto, no simulator), and an unknown or
//! malformed argument is refused.

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
    // Experiments that the written results do not describe run only with --relay-only.
    for args in [
        &["--cafe24-latency-ms", "150"][..],
        &["--dynamodb-endpoint", "http://127.0.0.1:1"],
        &["--cafe24-latency-ms", "-5", "--relay-only"],
    ] {
        let o =
            Command::new(env!("CARGO_BIN_EXE_relay-bench")).args(args).env_remove("AWS_ENDPOINT_URL").output().unwrap();
        assert!(!o.status.success(), "{args:?} accepted");
        assert!(!o.stderr.is_empty(), "{args:?}: no error message");
    }
}

#[test]
fn relay_scale_prints_help_refuses_bad_arguments_and_prints_a_table() {
    let bin = env!("CARGO_BIN_EXE_relay-scale");
    let o = Command::new(bin).arg("--help").output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && out.starts_with("make scale") && out.contains("--concurrency"), "{out}");
    for bad in [
        &["--concurrency", "0"][..],
        &["--malls", "0"],
        &["--malls", "many"],
        &["--concurrency", "5,x"],
        &["--latency"],
    ] {
        let o = Command::new(bin).args(bad).output().unwrap();
        assert!(!o.status.success(), "{bad:?} accepted");
        assert!(!o.stderr.is_empty(), "{bad:?}: no error message");
    }
    let o = Command::new(bin).args(["--malls", "20", "--concurrency", "2,20"]).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("| 2 |") || l.starts_with("| 20 |")).count(), 2, "{out}");
}
