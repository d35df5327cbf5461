//! Small helpers shared by the API modules: query/form decoding, ids, time, JSON responses.

use serde_json::Value;

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`); invalid escapes are kept verbatim.
pub(crate) fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes a query-string value (RFC 3986 unreserved characters kept).
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b',' | b'$') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Parses `a=1&b=2` (query string or form body) into decoded pairs, in order.
pub(crate) fn parse_pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

/// First value of a parameter, case-insensitive on the name.
pub(crate) fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

pub(crate) fn param_bool(pairs: &[(String, String)], name: &str) -> bool {
    param(pairs, name).is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// A random GUID (lower-case, version 4 layout).
pub(crate) fn guid() -> String {
    guid_from(&mut fastrand::Rng::new())
}

/// A GUID drawn from a seeded generator (deterministic scenarios).
pub(crate) fn guid_from(rng: &mut fastrand::Rng) -> String {
    let a = rng.u32(..);
    let b = rng.u16(..);
    let c = (rng.u16(..) & 0x0fff) | 0x4000;
    let d = (rng.u16(..) & 0x3fff) | 0x8000;
    let e = rng.u64(..) & 0xffff_ffff_ffff;
    format!("{a:08x}-{b:04x}-{c:04x}-{d:04x}-{e:012x}")
}

/// An opaque random token of `n` alphanumeric characters.
pub(crate) fn opaque(n: usize) -> String {
    std::iter::repeat_with(fastrand::alphanumeric)
        .take(n)
        .collect()
}

pub(crate) fn now_secs() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// RFC 3339 UTC with a `Z`, seconds precision.
pub(crate) fn rfc3339(secs: i64) -> String {
    thread_local! {
        // Scenario generation formats the same few dates tens of thousands of times.
        static CACHE: std::cell::RefCell<std::collections::HashMap<i64, String>> =
            std::cell::RefCell::new(std::collections::HashMap::new());
    }
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() > 10_000 {
            c.clear();
        }
        c.entry(secs)
            .or_insert_with(|| {
                jiff::Timestamp::from_second(secs)
                    .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                    .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
            })
            .clone()
    })
}

/// Parses an RFC 3339 timestamp into seconds; `None` when it does not parse.
pub(crate) fn parse_time(s: &str) -> Option<i64> {
    s.parse::<jiff::Timestamp>()
        .ok()
        .map(jiff::Timestamp::as_second)
}

/// The JSON `str` at `key`, or "".
pub(crate) fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Keeps only the listed properties (case-insensitive names, as Graph does), in the listed order.
pub(crate) fn select(v: &Value, props: &[String]) -> Value {
    let Some(obj) = v.as_object() else {
        return v.clone();
    };
    let mut out = serde_json::Map::new();
    for p in props {
        if let Some((k, val)) = obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(p)) {
            out.insert(k.clone(), val.clone());
        } else if !p.is_empty() {
            // Graph returns a selected property that the object lacks as null.
            out.insert(p.clone(), Value::Null);
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_queries() {
        let p = parse_pairs("%24select=id%2CdisplayName&%24top=5&x=a+b&bad=%zz");
        assert_eq!(param(&p, "$select"), Some("id,displayName"));
        assert_eq!(param(&p, "$TOP"), Some("5"));
        assert_eq!(param(&p, "x"), Some("a b"));
        assert_eq!(param(&p, "bad"), Some("%zz"));
        assert_eq!(percent_decode("100%", false), "100%");
    }

    #[test]
    fn guids_look_real() {
        let g = guid_from(&mut fastrand::Rng::with_seed(7));
        assert_eq!(g.len(), 36);
        assert_eq!(g.as_bytes()[14], b'4');
        assert_eq!(g, guid_from(&mut fastrand::Rng::with_seed(7)));
    }
}
