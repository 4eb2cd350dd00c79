//! The report: a markdown table (with the emulator's load) and a chart of the first mall of
//! each design — cumulative successful calls against the ideal curve, 429s below.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use cafe24_sim::Sim;

use crate::scenario::{Params, Row};

/// The markdown report of one run.
pub fn markdown(rows: &[Row], p: Params, quick: bool, wall_s: f64, ddb_own_moto: bool) -> String {
    let mut md = String::new();
    md.push_str(&format!(
        "Burst scenario{}: {} malls × ({} orders placed + {} payment updates of the same orders, ~5% resent by Cafe24), simulator at {} (bucket 40). Floor per mall = (distinct orders − 40) / drain.\n\n",
        if quick { " (QUICK smoke run, limits ×10)" } else { "" },
        p.malls, p.orders, p.updates,
        if quick { "20/s".to_owned() } else { "Cafe24's real limits: 2/s".to_owned() },
    ));
    md.push_str("| design | 429s at Cafe24 | makespan | ÷ floor | webhooks delivered by | first call | max calls in 1 s | Cafe24 calls per webhook | billed compute | share asleep | DynamoDB writes / reads per call | events published per webhook | events lost | effects duplicated |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        md.push_str(&format!(
            "| {}{} | {} | {:.1} s | {:.2}× | {:.1} s | {:.1} s | {} | {:.2} | {:.1} s | {:.1}% | {:.2} / {:.2} | {} | {} | {} |\n",
            r.design,
            if r.design == "relay" { "" } else { " (baseline)" },
            r.r429,
            r.makespan_s,
            r.makespan_s / r.floor_s.max(0.001),
            r.sent_s,
            r.first_call_s,
            r.max_calls_1s,
            r.calls as f64 / r.webhooks.max(1) as f64,
            r.billed_ms as f64 / 1000.0,
            100.0 * r.sleep_ms as f64 / r.billed_ms.max(1) as f64,
            r.ddb_writes as f64 / r.calls.max(1) as f64,
            r.ddb_reads as f64 / r.calls.max(1) as f64,
            r.events.map_or("—".to_owned(), |e| format!("{:.2}", e as f64 / r.webhooks.max(1) as f64)),
            r.lost,
            r.duplicated
        ));
    }
    md.push_str(&format!(
        "\nFloor: {:.1} s. Bench wall time {:.0} s. {}; the simulator is in-process.\n",
        rows.first().map_or(0.0, |r| r.floor_s),
        wall_s,
        if ddb_own_moto {
            "SQS (and EventBridge) on one moto, DynamoDB on a second, both on loopback"
        } else {
            "DynamoDB and SQS are one moto on loopback"
        }
    ));
    if let Some(r) = rows.iter().find(|r| r.design == "relay") {
        md.push_str(&format!(
            "\nShare asleep: the wall time an invocation had every running job waiting for credit, of the billed time (relay's jobs slept {:.1} s summed, overlapping ones counted each).\n",
            r.job_sleep_ms as f64 / 1000.0
        ));
    }
    // The emulator's own load: a service busy for most of the makespan set the pace, not the design.
    let loads: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            let e = r.emu?;
            let share = |busy: f64| 100.0 * busy / r.makespan_s.max(0.001);
            Some(format!(
                "{}: DynamoDB {:.0} requests, busy {:.0}% of the makespan; SQS {:.0} requests, busy {:.0}%",
                r.design,
                e.ddb_ops,
                share(e.ddb_busy_s),
                e.sqs_ops,
                share(e.sqs_busy_s)
            ))
        })
        .collect();
    if !loads.is_empty() {
        md.push_str(&format!(
            "\nEmulator load during each run, counted from its start until its row was taken, the bench's own completion checks included; busy = time inside moto's backend holding its per-service lock, not its HTTP layer: {}.\n",
            loads.join("; ")
        ));
    }
    md
}

/// Per mall of `design`, its calls (429s included) in each second since `start_ms`.
pub fn calls_per_second(sim: &Sim, design: &str, start_ms: u64) -> BTreeMap<String, Vec<u32>> {
    let mut out: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for c in sim.lock().calls.iter().filter(|c| c.mall.starts_with(design) && c.at_ms >= start_ms) {
        let v = out.entry(c.mall.clone()).or_default();
        let s = ((c.at_ms - start_ms) / 1000) as usize;
        if v.len() <= s {
            v.resize(s + 1, 0);
        }
        if let Some(n) = v.get_mut(s) {
            *n += 1;
        }
    }
    out
}

/// Points (seconds, value) per design.
type Series = BTreeMap<&'static str, Vec<(f64, f64)>>;

/// Per design, its first mall's successful calls over time since the design's burst began.
fn cumulative(sim: &Sim, rows: &[Row]) -> (Series, Series) {
    let calls = sim.lock().calls.clone();
    let (mut ok, mut throttled) = (BTreeMap::new(), BTreeMap::new());
    for r in rows {
        let mall = format!("{}-m0", r.design);
        let (mut n, mut okv, mut per_s) = (0.0, vec![(0.0, 0.0)], BTreeMap::<u64, f64>::new());
        for c in calls.iter().filter(|c| c.mall == mall && c.at_ms >= r.start_ms) {
            let t = (c.at_ms - r.start_ms) as f64 / 1000.0;
            if c.status == 429 {
                *per_s.entry((c.at_ms - r.start_ms) / 1000).or_default() += 1.0;
            } else {
                okv.push((t, n));
                n += 1.0;
                okv.push((t, n));
            }
        }
        let last = per_s.keys().last().copied().unwrap_or(0);
        ok.insert(r.design, okv);
        throttled.insert(r.design, (0..=last).map(|s| (s as f64, per_s.get(&s).copied().unwrap_or(0.0))).collect());
    }
    (ok, throttled)
}

/// Writes the chart as a PNG: top, cumulative successful calls to one mall per design against
/// the ideal (the bucket's 40 at once, then the drain rate, up to the mall's distinct orders);
/// bottom, that mall's 429s per second.
pub fn chart(sim: &Sim, rows: &[Row], path: &std::path::Path, p: Params) -> Result<()> {
    use plotters::prelude::*;
    let e = |e: &dyn std::fmt::Debug| anyhow!("chart: {e:?}");
    let font = std::fs::read("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf").ok();
    let has_font = match font {
        Some(bytes) => {
            plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into_boxed_slice())).is_ok()
        }
        None => false,
    };
    let (ok, throttled) = cumulative(sim, rows);
    let drain = 2.0 * p.scale;
    let target = p.orders as f64;
    let ideal_end = ((target - 40.0).max(0.0)) / drain;
    let xmax = ok.values().flat_map(|v| v.iter().map(|(x, _)| *x)).fold(ideal_end * 1.2, f64::max).max(1.0);
    let ymax = ok.values().flat_map(|v| v.iter().map(|(_, y)| *y)).fold(target, f64::max) * 1.1;
    let r429max = throttled.values().flat_map(|v| v.iter().map(|(_, y)| *y)).fold(1.0, f64::max) * 1.1;
    let root = BitMapBackend::new(path, (1000, 760)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let (top, bottom) = root.split_vertically(500);
    let colors = [("relay", GREEN), ("direct", RED), ("handoff", BLUE)];

    let mut b = ChartBuilder::on(&top);
    b.margin(20).x_label_area_size(35).y_label_area_size(50);
    if has_font {
        b.caption("Successful Cafe24 calls to one mall, cumulative", ("sans-serif", 22));
    }
    let mut c = b.build_cartesian_2d(0.0..xmax, 0.0..ymax).map_err(|x| e(&x))?;
    if has_font {
        c.configure_mesh().x_desc("seconds since the burst began").y_desc("calls").draw().map_err(|x| e(&x))?;
    }
    let mut ideal = vec![(0.0, 0.0), (0.0, 40.0_f64.min(target)), (ideal_end, target)];
    ideal.push((xmax, target));
    let s = c.draw_series(LineSeries::new(ideal, BLACK.stroke_width(1))).map_err(|x| e(&x))?;
    if has_font {
        s.label(format!("ideal: 40 at once, then {drain}/s"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    }
    for (design, color) in colors {
        if let Some(v) = ok.get(design) {
            let s = c.draw_series(LineSeries::new(v.clone(), color.stroke_width(2))).map_err(|x| e(&x))?;
            if has_font {
                s.label(design)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            }
        }
    }
    if has_font {
        c.configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|x| e(&x))?;
    }

    let mut b = ChartBuilder::on(&bottom);
    b.margin(20).x_label_area_size(35).y_label_area_size(50);
    if has_font {
        b.caption("429 answers to that mall per second", ("sans-serif", 18));
    }
    let mut c = b.build_cartesian_2d(0.0..xmax, 0.0..r429max).map_err(|x| e(&x))?;
    if has_font {
        c.configure_mesh().x_desc("seconds since the burst began").y_desc("429/s").draw().map_err(|x| e(&x))?;
    }
    for (design, color) in colors {
        if let Some(v) = throttled.get(design) {
            c.draw_series(LineSeries::new(v.clone(), color.stroke_width(2))).map_err(|x| e(&x))?;
        }
    }
    root.present().map_err(|x| e(&x))?;
    Ok(())
}
