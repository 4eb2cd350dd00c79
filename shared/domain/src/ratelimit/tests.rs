use proptest::prelude::*;

use super::*;
use crate::MallId;

fn cfg(rate: f64, burst: u32, spacing: u64) -> LimiterConfig {
    LimiterConfig {
        rate_per_sec: rate,
        burst,
        rate_margin: 0.0,
        burst_margin: 0,
        min_spacing_ms: spacing,
        ..LimiterConfig::default()
    }
}

/// Feeds arrivals (absolute ms, non-decreasing) through `decide`; returns admitted times.
fn run(c: &LimiterConfig, start: LimiterState, arrivals: &[u64], class: Class) -> (Vec<u64>, LimiterState) {
    let mut s = start;
    let mut admitted = Vec::new();
    for &t in arrivals {
        if let Decision::Admit(next) = c.decide(&s, t, class) {
            s = next;
            admitted.push(t);
        }
    }
    (admitted, s)
}

fn arrivals(gaps: &[u64]) -> Vec<u64> {
    let mut t = 1_000_000u64;
    gaps.iter()
        .map(|g| {
            t += g;
            t
        })
        .collect()
}

#[test]
fn defaults_are_cafe24s_limits_with_margins() {
    let c = LimiterConfig::default();
    assert!(c.validate().is_ok());
    assert_eq!(c.interval_ms(), 511, "2/s less 2% → one call per 511 ms");
    assert_eq!(c.effective_burst(), 38);
    assert_eq!(c.reserved_for_live(), 10);
    assert!(1000 / c.min_spacing_ms < 10, "spacing keeps a mall under 10 calls/s");
}

#[test]
fn invalid_settings_are_refused() {
    for (c, field) in [
        (LimiterConfig { rate_per_sec: 0.0, ..Default::default() }, "rate_per_sec"),
        (LimiterConfig { rate_per_sec: f64::NAN, ..Default::default() }, "rate_per_sec"),
        (LimiterConfig { burst: 0, ..Default::default() }, "burst"),
        (LimiterConfig { rate_margin: 1.0, ..Default::default() }, "rate_margin"),
        (LimiterConfig { burst_margin: 40, ..Default::default() }, "burst_margin"),
        (LimiterConfig { bulk_reserve: -0.1, ..Default::default() }, "bulk_reserve"),
    ] {
        assert_eq!(c.validate().map_err(|e| e.field), Err(field));
    }
}

#[test]
fn a_full_burst_then_one_per_interval() {
    let c = cfg(2.0, 40, 0);
    let (admitted, _) = run(&c, LimiterState::default(), &vec![5_000; 100], Class::Live);
    assert_eq!(admitted.len(), 40);
    let times: Vec<u64> = (0..200).map(|i| 5_000 + i * 100).collect();
    let (admitted, _) = run(&c, LimiterState::default(), &times, Class::Live);
    // 40 at once, then one per 500 ms over 19.9 s: 40 + 39 (the first 40 fill ~4 s of credit).
    assert!(admitted.len() >= 40 + 39 - 1 && admitted.len() <= 40 + 40, "{}", admitted.len());
}

#[test]
fn min_spacing_holds_even_with_burst_credit() {
    let c = cfg(2.0, 40, 125);
    let times: Vec<u64> = (0..100).map(|i| 10_000 + i * 10).collect();
    let (admitted, _) = run(&c, LimiterState::default(), &times, Class::Live);
    assert!(admitted.windows(2).all(|w| w[1] - w[0] >= 125));
    assert_eq!(admitted.len(), 8, "990 ms at ≥125 ms apart");
}

#[test]
fn real_header_values_parse() {
    let f = Feedback::from_headers(
        200,
        [
            ("X-Api-Call-Limit", "1/40"),
            ("X-Cafe24-Call-Usage", "120.04"),
            ("X-Cafe24-Time-Usage", "100.5"),
            ("X-Cafe24-Call-Remain", "32"),
            ("x-cafe24-time-remain", "7"),
        ],
    );
    assert_eq!(f.call_limit, Some((1, 40)));
    assert_eq!(f.call_usage_pct, Some(120.04));
    assert_eq!(f.time_usage_pct, Some(100.5));
    assert_eq!((f.call_remain_s, f.time_remain_s), (Some(32), Some(7)));
    assert!(!f.rate_limited);
}

#[test]
fn garbage_headers_are_ignored() {
    for v in ["", "abc", "-1/40", "5/0", "5/-40", "1/40/2", "NaN", "inf", "-3", "99999999999999999999/40", "41/"] {
        let f = Feedback::from_headers(
            200,
            [("x-api-call-limit", v), ("x-cafe24-call-usage", v), ("x-cafe24-call-remain", v)],
        );
        assert_eq!(f.call_limit, None, "{v}");
        assert!(f.call_usage_pct.is_none() || v.parse::<f64>().is_ok(), "{v}");
        assert!(f.call_remain_s.is_none() || v.parse::<f64>().is_ok_and(|x| x >= 0.0), "{v}");
    }
}

#[test]
fn server_fuller_than_us_moves_the_limiter() {
    let c = LimiterConfig { min_spacing_ms: 0, ..LimiterConfig::default() };
    let s = LimiterState::default();
    // Another app filled the mall's bucket to 38/40: we must wait before a single call.
    let fb = Feedback::from_headers(200, [("X-Api-Call-Limit", "38/40")]);
    let s2 = c.apply_feedback(&s, &fb, 10_000);
    assert!(matches!(c.decide(&s2, 10_000, Class::Live), Decision::Wait(_)));
    // A 429 with the bucket full.
    let fb = Feedback::from_headers(429, [("X-Api-Call-Limit", "40/40")]);
    let s3 = c.apply_feedback(&s, &fb, 10_000);
    let Decision::Wait(d) = c.decide(&s3, 10_000, Class::Live) else { panic!() };
    assert_eq!(d, 3 * c.interval_ms(), "40 used vs 38 usable: 3 intervals until one fits");
    // A usage block with Remain.
    let fb = Feedback::from_headers(200, [("X-Cafe24-Call-Usage", "100.2"), ("X-Cafe24-Call-Remain", "32")]);
    let s4 = c.apply_feedback(&s, &fb, 10_000);
    assert_eq!(s4.not_before_ms, 10_000 + 32_000 + c.remain_slack_ms);
    // Near 100% without a block: slow down.
    let fb = Feedback::from_headers(200, [("X-Cafe24-Call-Usage", "95")]);
    assert_eq!(c.apply_feedback(&s, &fb, 10_000).not_before_ms, 10_000 + c.usage_soft_pause_ms);
    // A bare 429.
    let s5 = c.apply_feedback(&s, &Feedback::from_headers(429, []), 10_000);
    assert_eq!(s5.not_before_ms, 10_000 + c.rate_limited_default_ms);
}

#[test]
fn rate_limit_key_is_derived_in_one_place() {
    let m = MallId::parse("shop1").unwrap();
    assert_eq!(KeyScope::Mall.key(&m), "shop1");
    assert_eq!(KeyScope::parse("app:abc").unwrap().key(&m), "abc.shop1");
    assert_eq!(KeyScope::parse("global:shared cred").unwrap().key(&m), "sharedcred");
    assert_eq!(KeyScope::parse("global:!!!").unwrap().key(&m), "global");
    assert_eq!(KeyScope::parse("mall"), Some(KeyScope::Mall));
    // Every key is a valid work-queue group id.
    for scope in [KeyScope::Mall, KeyScope::parse("app:abc").unwrap(), KeyScope::parse("global:x").unwrap()] {
        assert!(crate::ports::GroupId::for_key(&scope.key(&m)).is_some(), "{scope:?}");
    }
    assert!(crate::ports::GroupId::for_key("").is_none() && crate::ports::GroupId::for_key("a b").is_none());
    for bad in ["", "app:", "global", "shop", "app:  "] {
        assert_eq!(KeyScope::parse(bad), None, "{bad}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn admissions_in_any_window_never_exceed_burst_plus_rate(
        rate in 0.5f64..50.0, burst in 1u32..50, spacing in 0u64..200,
        gaps in proptest::collection::vec(0u64..1500, 1..300),
    ) {
        let c = cfg(rate, burst, spacing);
        let t = c.interval_ms();
        let (admitted, _) = run(&c, LimiterState::default(), &arrivals(&gaps), Class::Live);
        for i in 0..admitted.len() {
            for j in i..admitted.len() {
                let n = (j - i + 1) as u64;
                let window = admitted[j] - admitted[i];
                prop_assert!(n <= c.effective_burst() + window / t, "{n} calls in {window} ms (T={t}, burst={})", c.effective_burst());
            }
        }
    }

    #[test]
    fn nothing_is_admitted_before_not_before_or_closer_than_the_spacing(
        nb_offset in 0u64..20_000, spacing in 0u64..500, gaps in proptest::collection::vec(0u64..700, 1..200),
    ) {
        let c = cfg(5.0, 10, spacing);
        let start = LimiterState { not_before_ms: 1_000_000 + nb_offset, ..LimiterState::default() };
        let (admitted, _) = run(&c, start, &arrivals(&gaps), Class::Live);
        prop_assert!(admitted.iter().all(|t| *t >= start.not_before_ms));
        prop_assert!(admitted.windows(2).all(|w| w[1] - w[0] >= spacing));
    }

    #[test]
    fn a_wait_answer_is_exact(
        tat in 0u64..100_000, nb in 0u64..100_000, last in 0u64..100_000, now in 0u64..100_000,
        bulk in any::<bool>(), spacing in 0u64..300,
    ) {
        let c = LimiterConfig { min_spacing_ms: spacing, ..LimiterConfig::default() };
        let class = if bulk { Class::Bulk } else { Class::Live };
        let s = LimiterState { tat_ms: tat, not_before_ms: nb, last_ms: last };
        if let Decision::Wait(d) = c.decide(&s, now, class) {
            prop_assert!(d > 0);
            prop_assert!(matches!(c.decide(&s, now + d, class), Decision::Admit(_)), "not admitted after the announced wait");
            prop_assert!(matches!(c.decide(&s, now + d - 1, class), Decision::Wait(1)), "admitted earlier than announced");
        }
    }

    #[test]
    fn bulk_never_takes_the_live_reserve(
        burst in 2u32..60, reserve in 0.05f64..0.9, gaps in proptest::collection::vec(0u64..400, 1..200),
    ) {
        let c = LimiterConfig { bulk_reserve: reserve, ..cfg(2.0, burst, 0) };
        let mut s = LimiterState::default();
        for t in arrivals(&gaps) {
            if let Decision::Admit(next) = c.decide(&s, t, Class::Bulk) {
                s = next;
                // Right after any bulk admission, the reserved live calls still fit at once.
                let mut live = s;
                for k in 0..c.reserved_for_live() {
                    match c.decide(&live, t, Class::Live) {
                        Decision::Admit(n) => live = n,
                        Decision::Wait(_) => prop_assert!(false, "live call {k} of the reserve refused"),
                    }
                }
            }
        }
    }

    #[test]
    fn feedback_never_panics_and_never_loosens(
        tat in 0u64..u64::MAX / 4, nb in 0u64..u64::MAX / 4, last in 0u64..u64::MAX / 4, now in 0u64..u64::MAX / 4,
        status in 100u16..600, values in proptest::collection::vec(".{0,12}", 5),
    ) {
        let c = LimiterConfig::default();
        let s = LimiterState { tat_ms: tat, not_before_ms: nb, last_ms: last };
        let names = ["X-Api-Call-Limit", "X-Cafe24-Call-Usage", "X-Cafe24-Time-Usage", "X-Cafe24-Call-Remain", "X-Cafe24-Time-Remain"];
        let fb = Feedback::from_headers(status, names.iter().copied().zip(values.iter().map(String::as_str)));
        let s2 = c.apply_feedback(&s, &fb, now);
        prop_assert!(s2.tat_ms >= s.tat_ms && s2.not_before_ms >= s.not_before_ms && s2.last_ms == s.last_ms);
    }

    #[test]
    fn numeric_feedback_never_loosens(used in 0u32..100, cap in 1u32..100, usage in 0.0f64..300.0, remain in 0u64..5000, now in 0u64..1u64 << 40) {
        let c = LimiterConfig::default();
        let s = LimiterState { tat_ms: now / 2, not_before_ms: now / 3, last_ms: 0 };
        let (u, cp, us, r) = (format!("{used}/{cap}"), format!("{usage:.2}"), cap.to_string(), remain.to_string());
        let fb = Feedback::from_headers(429, [("x-api-call-limit", u.as_str()), ("x-cafe24-call-usage", cp.as_str()), ("x-cafe24-time-usage", us.as_str()), ("x-cafe24-call-remain", r.as_str())]);
        let s2 = c.apply_feedback(&s, &fb, now);
        prop_assert!(s2.tat_ms >= s.tat_ms && s2.not_before_ms >= s.not_before_ms);
        prop_assert!(matches!(c.decide(&s2, now, Class::Live), Decision::Wait(_)), "a 429 always makes the next call wait");
    }
}
