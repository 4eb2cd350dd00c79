//! Dates as Cafe24 writes them, in Korea Standard Time (UTC+9, no daylight saving):
//! API dates with an offset (`2020-07-17T15:28:14+09:00`) and OAuth timestamps without one
//! (`2021-03-01T15:50:00.000`).

const KST_OFFSET_MS: i64 = 9 * 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// Days since 1970-01-01 → (year, month, day). Howard Hinnant's algorithm.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) → days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn parts(ms: u64) -> (i64, u32, u32, i64, i64, i64, i64) {
    let t = ms as i64 + KST_OFFSET_MS;
    let (y, mo, d) = civil_from_days(t.div_euclid(DAY_MS));
    let r = t.rem_euclid(DAY_MS);
    (y, mo, d, r / 3_600_000, (r / 60_000) % 60, (r / 1000) % 60, r % 1000)
}

/// `2020-07-17T15:28:14+09:00`
pub fn iso_kst(ms: u64) -> String {
    let (y, mo, d, h, mi, s, _) = parts(ms);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}+09:00")
}

/// `2021-03-01T15:50:00.000` (KST, no offset — as Cafe24's OAuth responses)
pub fn naive_kst_millis(ms: u64) -> String {
    let (y, mo, d, h, mi, s, milli) = parts(ms);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}")
}

/// `20200717` (order id prefix)
pub fn ymd_compact(ms: u64) -> String {
    let (y, mo, d, ..) = parts(ms);
    format!("{y:04}{mo:02}{d:02}")
}

/// KST calendar date of an instant.
pub fn kst_date(ms: u64) -> (i64, u32, u32) {
    let (y, mo, d, ..) = parts(ms);
    (y, mo, d)
}

/// Parses `YYYY-MM-DD` (KST midnight), `YYYY-MM-DD HH:MM:SS` (KST) or
/// `YYYY-MM-DDTHH:MM:SS+09:00` into epoch ms. `None` for anything else.
pub fn parse(s: &str) -> Option<u64> {
    let s = s.trim();
    let num = |r: std::ops::Range<usize>| {
        s.get(r).filter(|p| p.bytes().all(|b| b.is_ascii_digit())).and_then(|p| p.parse::<i64>().ok())
    };
    if s.len() < 10 || s.get(4..5) != Some("-") || s.get(7..8) != Some("-") {
        return None;
    }
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let mut ms = days_from_civil(y, m as u32, d as u32) * DAY_MS;
    let mut offset = KST_OFFSET_MS;
    if s.len() > 10 {
        let sep = s.get(10..11)?;
        if sep != "T" && sep != " " {
            return None;
        }
        let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if h > 23 || mi > 59 || sec > 59 {
            return None;
        }
        ms += h * 3_600_000 + mi * 60_000 + sec * 1000;
        match s.get(19..) {
            Some("") => {}
            Some(tz) if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) => {
                let oh: i64 = tz.get(1..3)?.parse().ok()?;
                let om: i64 = tz.get(4..6)?.parse().ok()?;
                let sign = if tz.starts_with('-') { -1 } else { 1 };
                offset = sign * (oh * 3_600_000 + om * 60_000);
            }
            _ => return None,
        }
    }
    u64::try_from(ms - offset).ok()
}

/// Adds calendar months to a date, clamping the day to the month's length.
pub fn add_months((y, m, d): (i64, u32, u32), months: u32) -> (i64, u32, u32) {
    let total = y * 12 + i64::from(m) - 1 + i64::from(months);
    let (ny, nm) = (total.div_euclid(12), (total.rem_euclid(12) + 1) as u32);
    let next_first = if nm == 12 { days_from_civil(ny + 1, 1, 1) } else { days_from_civil(ny, nm + 1, 1) };
    let len = (next_first - days_from_civil(ny, nm, 1)) as u32;
    (ny, nm, d.min(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_match_cafe24() {
        // 2021-03-01T15:50:00+09:00 = 06:50:00Z
        let ms = parse("2021-03-01T15:50:00+09:00").unwrap();
        assert_eq!(naive_kst_millis(ms), "2021-03-01T15:50:00.000");
        assert_eq!(iso_kst(ms), "2021-03-01T15:50:00+09:00");
        assert_eq!(parse("2021-03-01T06:50:00+00:00"), Some(ms));
        assert_eq!(parse("2021-03-01 15:50:00"), Some(ms));
        assert_eq!(ymd_compact(ms), "20210301");
    }

    #[test]
    fn garbage_dates_are_none() {
        for s in [
            "",
            "2021",
            "2021-13-01",
            "2021-02-xx",
            "2021-02-01X10:00:00",
            "2021-02-01T25:00:00",
            "2021-02-01T10:00:00Z",
        ] {
            assert_eq!(parse(s), None, "{s}");
        }
    }

    #[test]
    fn add_months_clamps() {
        assert_eq!(add_months((2024, 11, 30), 3), (2025, 2, 28));
        assert_eq!(add_months((2024, 1, 15), 3), (2024, 4, 15));
    }

    #[test]
    fn civil_round_trip() {
        for z in [-1000, 0, 18_000, 20_000, 30_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }
}
