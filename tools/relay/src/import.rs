//! `relay mall import`: installed malls' tokens taken over from the app that holds them today, so
//! no merchant has to consent again.
//!
//! Input (a file, or `-` for stdin): a JSON array, or one JSON object per line, each the token
//! answer Cafe24 gave the old app — `mall_id`, `access_token`, `expires_at`, `refresh_token`,
//! `refresh_token_expires_at` (Cafe24's KST times), `scopes` — as most apps store it. Each is
//! validated on its own; a bad one is reported and the others go on.
//!
//! A pair is stored as the install callback would store it (status active, no lease), unless the
//! relay already holds a pair at least as new (a later refresh token expiry: the relay refreshed,
//! or the merchant consented through it) or is refreshing one right now — never over a newer
//! record. Each stored mall is announced with `mall.installed`. Token values are never printed.
//!
//! Order of the migration (docs/deploy.md): stop the old app's refreshing, export, import, and
//! switch the App URL. A refresh by the old app after the export rotates the pair the relay
//! holds out of existence (`needs_reauth` on its first refresh).

use anyhow::Result;
use relay_aws::tokens::{DynamoTokenStore, Imported};
use relay_domain::tokens::{TokenPair, TokenStore as _};
use relay_domain::MallId;
use serde_json::Value;

/// One entry of the input, validated.
#[derive(Debug)]
pub struct Entry {
    /// The mall.
    pub mall: MallId,
    /// Its pair.
    pub pair: TokenPair,
}

/// What became of one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Stored (and `mall.installed` published, unless `published` is false).
    Imported {
        /// The event was published.
        published: bool,
    },
    /// Would be stored (a dry run).
    WouldImport,
    /// Not stored: the relay's record is newer, or being refreshed.
    Kept(&'static str),
    /// Not valid: why.
    Invalid(String),
}

/// Longest token value accepted (Cafe24's are 22 characters).
const MAX_TOKEN_LEN: usize = 512;

/// Parses the input: `(position, entry or why it is refused)`, position 1-based (array index or
/// line number). The same mall twice: the later entries are refused.
pub fn parse(text: &str, now_ms: u64) -> Result<Vec<(usize, Result<Entry, String>)>> {
    let trimmed = text.trim_start();
    let items: Vec<(usize, Result<Value, String>)> = if trimmed.starts_with('[') {
        let all: Vec<Value> =
            serde_json::from_str(trimmed).map_err(|e| anyhow::anyhow!("the input is not a JSON array: {e}"))?;
        all.into_iter().enumerate().map(|(i, v)| (i + 1, Ok(v))).collect()
    } else {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| (i + 1, serde_json::from_str(l).map_err(|e| format!("not JSON: {e}"))))
            .collect()
    };
    if items.is_empty() {
        anyhow::bail!("the input holds no entry");
    }
    let mut seen = std::collections::BTreeSet::new();
    Ok(items
        .into_iter()
        .map(|(pos, v)| {
            let entry = v.and_then(|v| entry(&v, now_ms)).and_then(|e| {
                if seen.insert(e.mall.as_str().to_owned()) {
                    Ok(e)
                } else {
                    Err(format!("mall {} is listed more than once", e.mall.as_str()))
                }
            });
            (pos, entry)
        })
        .collect())
}

fn entry(v: &Value, now_ms: u64) -> Result<Entry, String> {
    let o = v.as_object().ok_or("not a JSON object")?;
    let text = |k: &str| o.get(k).and_then(Value::as_str);
    let mall = MallId::parse(text("mall_id").ok_or("mall_id is missing")?).map_err(|e| format!("mall_id: {e}"))?;
    for k in ["access_token", "refresh_token"] {
        let t = text(k).ok_or_else(|| format!("{k} is missing"))?;
        if t.is_empty() || t.len() > MAX_TOKEN_LEN || !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!("{k} is not a token (1 to {MAX_TOKEN_LEN} printable ASCII characters)"));
        }
    }
    // Both expiries must be given and readable: a guessed one could outlive the real token.
    for k in ["expires_at", "refresh_token_expires_at"] {
        let t = text(k).ok_or_else(|| format!("{k} is missing"))?;
        if relay_domain::tokens::parse_cafe24_token_time(t).is_none() {
            return Err(format!("{k} is not a Cafe24 time (e.g. 2026-12-01T15:50:00.000, KST)"));
        }
    }
    if let Some(s) = o.get("scopes") {
        if !s.as_array().is_some_and(|a| a.iter().all(|x| x.as_str().is_some_and(|x| x.starts_with("mall.")))) {
            return Err("scopes must be a list of mall.* scopes".into());
        }
    }
    let pair = relay_domain::tokens::pair_from_response(v, now_ms).ok_or("not a token pair")?;
    if pair.refresh_expires_ms <= now_ms {
        return Err("its refresh token has expired: the mall must consent again (relay mall reauth-url)".into());
    }
    Ok(Entry { mall, pair })
}

/// Imports (or, `dry_run`, only checks) each valid entry; refused ones keep their reason.
pub async fn run(
    store: &DynamoTokenStore,
    bus: Option<&relay_aws::bus::EventBridgeBus>,
    entries: Vec<(usize, Result<Entry, String>)>,
    dry_run: bool,
    now_ms: u64,
) -> Result<Vec<(usize, String, Verdict)>> {
    use relay_domain::ports::EventBus as _;
    let mut out = Vec::new();
    for (pos, e) in entries {
        let e = match e {
            Ok(e) => e,
            Err(why) => {
                out.push((pos, String::new(), Verdict::Invalid(why)));
                continue;
            }
        };
        let name = e.mall.as_str().to_owned();
        let verdict = if dry_run {
            match store.get(&e.mall).await? {
                Some(r) if r.pair.refresh_expires_ms > e.pair.refresh_expires_ms => {
                    Verdict::Kept("the relay holds a newer pair")
                }
                Some(r) if r.lease_until_ms > now_ms => Verdict::Kept("the relay is refreshing this mall's pair"),
                _ => Verdict::WouldImport,
            }
        } else {
            match store.import(&e.mall, &e.pair, now_ms).await? {
                Imported::Stored => {
                    let event = relay_domain::delivery::mall_event(
                        &e.mall,
                        relay_domain::delivery::MallStatusEvent::Installed,
                        now_ms,
                    );
                    let published = match bus {
                        Some(b) => b.publish(std::slice::from_ref(&event)).await.is_ok_and(|failed| failed.is_empty()),
                        None => false,
                    };
                    Verdict::Imported { published }
                }
                Imported::Newer => Verdict::Kept("the relay holds a newer pair"),
                Imported::Leased => Verdict::Kept("the relay is refreshing this mall's pair"),
            }
        };
        out.push((pos, name, verdict));
    }
    Ok(out)
}

/// The report: one line per entry, then the counts.
pub fn render(results: &[(usize, String, Verdict)]) -> String {
    let mut s = String::new();
    for (pos, mall, v) in results {
        let what = match v {
            Verdict::Imported { published: true } => "imported (mall.installed published)".to_owned(),
            Verdict::Imported { published: false } => {
                "imported; mall.installed NOT published (no EVENT_BUS_NAME, or the bus refused it)".to_owned()
            }
            Verdict::WouldImport => "would be imported (dry run)".to_owned(),
            Verdict::Kept(why) => format!("kept as it is: {why}"),
            Verdict::Invalid(why) => format!("refused: {why}"),
        };
        let mall = if mall.is_empty() { "-" } else { mall.as_str() };
        s.push_str(&format!("#{pos:<4} {mall:<24} {what}\n"));
    }
    let n = |f: fn(&Verdict) -> bool| results.iter().filter(|(_, _, v)| f(v)).count();
    s.push_str(&format!(
        "{} imported, {} would be, {} kept, {} refused\n",
        n(|v| matches!(v, Verdict::Imported { .. })),
        n(|v| matches!(v, Verdict::WouldImport)),
        n(|v| matches!(v, Verdict::Kept(_))),
        n(|v| matches!(v, Verdict::Invalid(_)))
    ));
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    const NOW: u64 = 1_795_305_600_000; // 2026-11-23T00:00:00Z

    fn good(mall: &str) -> serde_json::Value {
        serde_json::json!({"mall_id": mall, "access_token": "A1b2C3", "expires_at": "2026-11-23T11:00:00.000",
            "refresh_token": "R1b2C3", "refresh_token_expires_at": "2026-12-05T09:00:00.000",
            "scopes": ["mall.read_order"], "issued_at": "2026-11-21T09:00:00.000", "token_type": "Bearer"})
    }

    #[test]
    fn every_entry_is_checked_on_its_own_and_both_input_shapes_read_the_same() {
        let mut bad_refresh = good("m3");
        bad_refresh["refresh_token"] = serde_json::json!("has space");
        let mut expired = good("m4");
        expired["refresh_token_expires_at"] = serde_json::json!("2026-11-01T00:00:00.000");
        let mut no_expiry = good("m5");
        no_expiry.as_object_mut().unwrap().remove("expires_at");
        let mut bad_scopes = good("m6");
        bad_scopes["scopes"] = serde_json::json!("mall.read_order");
        let mut bad_mall = good("m7");
        bad_mall["mall_id"] = serde_json::json!("../x");
        let mut bad_time = good("m8");
        bad_time["refresh_token_expires_at"] = serde_json::json!("tomorrow");
        let all = [good("m1"), good("m2"), bad_refresh, expired, no_expiry, bad_scopes, bad_mall, bad_time, good("m1")];
        let array = parse(&serde_json::Value::Array(all.to_vec()).to_string(), NOW).unwrap();
        let lines = parse(&all.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("\n\n"), NOW).unwrap();
        let reasons = |r: &[(usize, Result<Entry, String>)]| {
            r.iter().map(|(_, e)| e.as_ref().err().cloned().unwrap_or_default()).collect::<Vec<_>>()
        };
        assert_eq!(reasons(&array), reasons(&lines));
        let r = reasons(&array);
        assert_eq!((r[0].as_str(), r[1].as_str()), ("", ""));
        for (i, want) in [
            (2, "refresh_token is not a token"),
            (3, "refresh token has expired"),
            (4, "expires_at is missing"),
            (5, "scopes must be"),
            (6, "mall_id"),
            (7, "refresh_token_expires_at is not a Cafe24 time"),
            (8, "listed more than once"),
        ] {
            assert!(r[i].contains(want), "#{i}: {:?}", r[i]);
        }
        // Line numbers count blank lines: what an operator's editor shows.
        assert_eq!(lines.iter().map(|(p, _)| *p).collect::<Vec<_>>(), [1, 3, 5, 7, 9, 11, 13, 15, 17]);
        let e = array[0].1.as_ref().unwrap();
        assert_eq!(e.pair.scopes, ["mall.read_order"]);
        assert!(!format!("{e:?}").contains("R1b2C3"), "no token value in debug output");
        for junk in ["", "  \n ", "[1", "[]"] {
            assert!(parse(junk, NOW).is_err(), "{junk:?}");
        }
        let not_json = parse("{\"mall_id\": \"m1\"}\nnot json", NOW).unwrap();
        assert!(not_json[1].1.as_ref().unwrap_err().starts_with("not JSON"));
    }

    #[test]
    fn the_report_names_each_entry_and_never_a_token() {
        let r = vec![
            (1, "m1".to_owned(), Verdict::Imported { published: true }),
            (2, "m2".to_owned(), Verdict::Kept("the relay holds a newer pair")),
            (3, String::new(), Verdict::Invalid("not JSON".into())),
        ];
        let text = render(&r);
        assert!(text.contains("m1") && text.contains("kept as it is") && text.contains("refused: not JSON"));
        assert!(text.ends_with("1 imported, 0 would be, 1 kept, 1 refused\n"), "{text}");
    }
}
