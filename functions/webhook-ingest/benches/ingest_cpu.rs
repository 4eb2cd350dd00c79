//! Ingest CPU cost per request versus plain `serde_json` parsing of the same body.
//!
//! Measures, in one run and on the same bodies (the project's Cafe24 fixtures):
//! - baseline: `serde_json::from_slice::<Value>(body)`;
//! - ingest: `Ingest::prepare` — key verification, parse + classification, dedup id, trace
//!   id, envelope serialization (everything but the SQS call).
//!
//! Prints ns/request for both and the ratio. Run: `make bench-ingest`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use relay_domain::ports::memory::MemoryQueue;
use webhook_ingest::{Ingest, IngestConfig};

fn fixtures() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/cafe24");
    let mut v: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).filter_map(|e| std::fs::read(e.path()).ok()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Runs `f` over all bodies repeatedly for about `budget`; returns ns per call (best of 5).
fn measure(bodies: &[Vec<u8>], budget: Duration, mut f: impl FnMut(&[u8])) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        let mut calls = 0u64;
        while start.elapsed() < budget {
            for b in bodies {
                f(b);
                calls += 1;
            }
        }
        best = best.min(start.elapsed().as_nanos() as f64 / calls as f64);
    }
    best
}

fn main() {
    let bodies = fixtures();
    if bodies.is_empty() {
        eprintln!("no fixtures found");
        std::process::exit(1);
    }
    let cfg = match IngestConfig::from_lookup(|k| match k {
        "WEBHOOK_API_KEY" => Some("bench-key".to_owned()),
        "INBOX_QUEUE_URL" => Some("http://127.0.0.1:1/inbox.fifo".to_owned()),
        "PARKING_QUEUE_URL" => Some("http://127.0.0.1:1/parking.fifo".to_owned()),
        _ => None,
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("config: {e}");
            std::process::exit(1);
        }
    };
    let ingest = Ingest::new(&cfg, MemoryQueue::default(), MemoryQueue::default());
    // `cargo bench` passes `--bench`; `cargo test --all-targets` does not: then this is only a
    // smoke run (every body prepared once, and it must produce a message).
    if !std::env::args().any(|a| a == "--bench") {
        for b in &bodies {
            let (_, msg) = ingest.prepare(Some(b"bench-key"), None, b, 1);
            if msg.is_none() {
                eprintln!("a fixture did not produce a message");
                std::process::exit(1);
            }
        }
        println!("ingest_cpu: smoke run ok (use `make bench-ingest` for numbers)");
        return;
    }
    let budget = Duration::from_millis(300);

    let base = measure(&bodies, budget, |b| {
        black_box(serde_json::from_slice::<serde_json::Value>(black_box(b)).ok());
    });
    let with_trace = measure(&bodies, budget, |b| {
        black_box(ingest.prepare(Some(b"bench-key"), Some("0d492786-ae82-4073-aa88-0991b08ee732"), black_box(b), 1));
    });
    let no_trace = measure(&bodies, budget, |b| {
        black_box(ingest.prepare(Some(b"bench-key"), None, black_box(b), 1));
    });
    let avg_len = bodies.iter().map(Vec::len).sum::<usize>() / bodies.len();
    println!("ingest CPU per request ({} fixtures, mean body {avg_len} B, best of 5):", bodies.len());
    println!("| path | ns/request | ratio to serde_json parse |");
    println!("|---|---:|---:|");
    println!("| serde_json::from_slice::<Value> (baseline) | {base:.0} | 1.00 |");
    println!("| Ingest::prepare, X-Trace-ID present | {with_trace:.0} | {:.2} |", with_trace / base);
    println!("| Ingest::prepare, body-hash dedup id | {no_trace:.0} | {:.2} |", no_trace / base);
}
