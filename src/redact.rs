//! The one redaction layer (SPEC section 5): everything csp-sync prints or writes passes through
//! [`text`] (stdout through [`crate::ui::Ui`], stderr lines and log events through [`Writer`], plan and
//! state files), so no secret, token, signature or `Authorization` value reaches output, logs, errors or
//! files, whatever a server echoes back.
//!
//! Two kinds of masking:
//! - known values: every secret csp-sync read (client secrets, refresh tokens) and every access or
//!   refresh token it obtained is [`register`]ed and replaced by `[REDACTED]` wherever it appears;
//! - shapes: SAS signatures (`sig=`), credentials in query strings and form bodies (`client_secret=`,
//!   `refresh_token=`, ...), the same as JSON members, `Authorization` values and `Bearer` tokens, and
//!   passwords in URLs (`https://user:password@host`).
//!
//! Secret files csp-sync keeps on purpose (a rotated refresh token written back to its `*_FILE`) are
//! written without this layer.

use std::borrow::Cow;
use std::io::Write;
use std::sync::{OnceLock, RwLock};

use aho_corasick::AhoCorasick;
use regex::Regex;
use secrecy::{ExposeSecret as _, SecretString};

/// What a masked value is replaced with.
pub const MASK: &str = "[REDACTED]";

/// Shorter values are not registered: masking every "abc" in the output would garble it, and a real
/// secret or token is far longer.
const MIN_KNOWN_CHARS: usize = 8;

#[derive(Default)]
struct Known {
    values: Vec<String>,
    matcher: Option<AhoCorasick>,
}

fn known() -> &'static RwLock<Known> {
    static KNOWN: OnceLock<RwLock<Known>> = OnceLock::new();
    KNOWN.get_or_init(RwLock::default)
}

/// Remembers a secret value so that [`text`] masks it from now on.
pub fn register(value: &str) {
    let value = value.trim();
    if value.chars().count() < MIN_KNOWN_CHARS {
        return;
    }
    let mut k = known()
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if k.values.iter().any(|v| v == value) {
        return;
    }
    k.values.push(value.to_string());
    // Longest first, so a value that contains another is masked whole.
    k.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    k.matcher = AhoCorasick::builder()
        .match_kind(aho_corasick::MatchKind::LeftmostLongest)
        .build(&k.values)
        .ok();
}

/// [`register`] for a [`SecretString`].
pub fn register_secret(value: &SecretString) {
    register(value.expose_secret());
}

struct Shapes {
    /// `sig=...`, `client_secret=...` and the like in URLs, form bodies and free text.
    param: Regex,
    /// The same names as JSON members (`"access_token": "..."`).
    member: Regex,
    /// `Authorization: <value>` / `authorization=<value>` (a header echoed as text).
    authorization: Regex,
    /// `Bearer <token>` anywhere.
    bearer: Regex,
    /// `scheme://user:password@host`.
    url_password: Regex,
}

const SECRET_NAMES: &str = "sig|signature|client_secret|clientsecret|refresh_token|access_token|\
                            id_token|device_code|assertion|client_assertion|password|passwd|api_key|apikey";

fn shapes() -> &'static Shapes {
    static SHAPES: OnceLock<Shapes> = OnceLock::new();
    SHAPES.get_or_init(|| {
        let build = |p: &str| Regex::new(p).expect("built-in redaction pattern is valid");
        Shapes {
            param: build(&format!(
                r#"(?i)(^|[^A-Za-z0-9_])((?:{SECRET_NAMES})=)[^&\s"'<>,;\\]+"#
            )),
            member: build(&format!(
                r#"(?i)((?:\\?")(?:{SECRET_NAMES}|authorization)(?:\\?")\s*:\s*(?:\\?"))(?:[^"\\]|\\[^"])*"#
            )),
            authorization: build(r#"(?i)(authorization\s*[:=]\s*)(?:(?:bearer|basic)\s+)?[^\s,;"'\\]+"#),
            bearer: build(r"(?i)(bearer\s+)[A-Za-z0-9\-._~+/]+=*"),
            url_password: build(r"(?i)([a-z][a-z0-9+.\-]*://[^/\s:@]*):[^/\s@]*@"),
        }
    })
}

/// `text` with every known secret and every secret-shaped value masked.
pub fn text(input: &str) -> Cow<'_, str> {
    let mut out: Cow<'_, str> = Cow::Borrowed(input);
    {
        let k = known()
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(m) = &k.matcher
            && m.is_match(out.as_ref())
        {
            let masks = vec![MASK; k.values.len()];
            out = Cow::Owned(m.replace_all(out.as_ref(), &masks));
        }
    }
    let s = shapes();
    let lower_has = |needles: &[&str]| {
        let lower = out.to_ascii_lowercase();
        needles.iter().any(|n| lower.contains(n))
    };
    if !lower_has(&["=", "\":", "\\\":", "bearer", "authorization", "://"]) {
        return out;
    }
    if s.param.is_match(out.as_ref()) {
        // `url` already wrote `REDACTED` for secret query values: leave those as they are.
        out = Cow::Owned(
            s.param
                .replace_all(out.as_ref(), |c: &regex::Captures<'_>| {
                    let value = &c[0][c[1].len() + c[2].len()..];
                    if value == "REDACTED" {
                        c[0].to_string()
                    } else {
                        format!("{}{}{MASK}", &c[1], &c[2])
                    }
                })
                .into_owned(),
        );
    }
    for (re, with) in [
        (&s.member, format!("${{1}}{MASK}")),
        (&s.authorization, format!("${{1}}{MASK}")),
        (&s.bearer, format!("${{1}}{MASK}")),
        (&s.url_password, format!("${{1}}:{MASK}@")),
    ] {
        if re.is_match(out.as_ref()) {
            out = Cow::Owned(re.replace_all(out.as_ref(), with.as_str()).into_owned());
        }
    }
    out
}

/// Query parameters whose values are never shown (credentials, signatures).
fn is_secret_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    let n = n.trim_start_matches('$');
    if n == "skiptoken" || n == "deltatoken" {
        return false;
    }
    [
        "token",
        "secret",
        "sig",
        "password",
        "code",
        "key",
        "assertion",
    ]
    .iter()
    .any(|s| n.contains(s))
}

/// A URL for messages and logs: secret query values replaced by `REDACTED`, long paging tokens
/// shortened, a password in the URL masked, then [`text`].
pub fn url(url: &str) -> String {
    let shown = match url.split_once('?') {
        None => url.to_string(),
        Some((base, query)) => {
            let parts: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if is_secret_param(k) => format!("{k}=REDACTED"),
                    Some((k, v)) if v.len() > 24 => {
                        let short: String = v.chars().take(12).collect();
                        format!("{k}={short}…")
                    }
                    _ => pair.to_string(),
                })
                .collect();
            format!("{base}?{}", parts.join("&"))
        }
    };
    text(&shown).into_owned()
}

/// A writer that masks what passes through it line by line (a line is complete at `\n`; the rest on
/// flush and drop). Pretty JSON and log events never break a value across lines, so every value is
/// masked whole.
pub struct Writer<W: Write> {
    inner: W,
    pending: Vec<u8>,
}

impl<W: Write> Writer<W> {
    pub fn new(inner: W) -> Self {
        Writer {
            inner,
            pending: Vec::new(),
        }
    }

    /// Masks and writes what is pending (a whole line, or the rest on flush).
    fn emit(&mut self) -> std::io::Result<()> {
        let line = std::mem::take(&mut self.pending);
        let shown = text(&String::from_utf8_lossy(&line)).into_owned();
        self.inner.write_all(shown.as_bytes())
    }
}

impl<W: Write> Write for Writer<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // Only the new bytes are searched for line ends: compact JSON is one long line written in many
        // small pieces, and searching the whole pending line on every piece made it quadratic.
        let mut rest = buf;
        while let Some(i) = rest.iter().position(|b| *b == b'\n') {
            self.pending.extend_from_slice(&rest[..=i]);
            self.emit()?;
            rest = &rest[i + 1..];
        }
        self.pending.extend_from_slice(rest);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            self.emit()?;
        }
        self.inner.flush()
    }
}

impl<W: Write> Drop for Writer<W> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// Serialises `value` as pretty JSON, masked: the bytes of a plan or state file.
pub fn json_pretty<T: serde::Serialize>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut w = Writer::new(&mut out);
        serde_json::to_writer_pretty(&mut w, value)?;
        w.flush().map_err(serde_json::Error::io)?;
    }
    Ok(out)
}

/// Serialises `value` as compact JSON, masked.
pub fn json<T: serde::Serialize>(value: &T) -> serde_json::Result<Vec<u8>> {
    // Compact JSON is one line: masking it whole is the same as masking it per line.
    let bytes = serde_json::to_vec(value)?;
    Ok(text(&String::from_utf8_lossy(&bytes))
        .into_owned()
        .into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_are_masked_everywhere() {
        register("KNOWN-SECRET-VALUE-1");
        register("short");
        let t = text("a KNOWN-SECRET-VALUE-1 b \"KNOWN-SECRET-VALUE-1\" short");
        assert_eq!(t, "a [REDACTED] b \"[REDACTED]\" short");
    }

    #[test]
    fn shapes_are_masked() {
        let cases = [
            (
                "https://acct.blob.core.windows.net/c/f.csv?sv=2020&sig=abc%2Fdef&se=1",
                "sig=[REDACTED]&se=1",
            ),
            (
                "grant_type=client_credentials&client_id=x&client_secret=s3cr3t&scope=all",
                "client_secret=[REDACTED]&scope=all",
            ),
            (
                r#"{"refresh_token": "rt-1", "access_token":"at-2"}"#,
                r#"{"refresh_token": "[REDACTED]", "access_token":"[REDACTED]"}"#,
            ),
            (
                r#"echo: {\"client_secret\":\"xyz\"}"#,
                r#"echo: {\"client_secret\":\"[REDACTED]\"}"#,
            ),
            (
                "Authorization: Bearer eyJ0eXAi.x.y",
                "Authorization: [REDACTED]",
            ),
            ("header authorization=abc123", "authorization=[REDACTED]"),
            ("got bearer abc.def-ghi", "bearer [REDACTED]"),
            (
                "http://admin:hunter2@127.0.0.1:9/x",
                "http://admin:[REDACTED]@127.0.0.1:9/x",
            ),
        ];
        for (input, want) in cases {
            let got = text(input);
            assert!(got.contains(want), "{input} -> {got}");
        }
        for plain in [
            "https://h/api/Users?page_no=1",
            "design=modern; signal=ok",
            "disabled in Entra",
        ] {
            assert_eq!(text(plain), plain);
        }
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            url("https://h/b?sv=1&sig=abc&client_secret=s&size=5"),
            "https://h/b?sv=1&sig=REDACTED&client_secret=REDACTED&size=5"
        );
        let d = url("https://g/v1.0/users/delta?$deltatoken=MF1LuFYbK6Lw4DtZ4o9PDrcGekRP65WE");
        assert!(
            d.starts_with("https://g/v1.0/users/delta?$deltatoken=MF1LuFYbK6Lw…"),
            "{d}"
        );
        assert_eq!(url("https://h/api/Users"), "https://h/api/Users");
        assert_eq!(url("https://u:pw@h/api"), "https://u:[REDACTED]@h/api");
    }

    #[test]
    fn writer_masks_lines_split_across_writes() {
        register("SPLIT-ACROSS-WRITES-XYZ");
        let mut out = Vec::new();
        {
            let mut w = Writer::new(&mut out);
            w.write_all(b"one SPLIT-ACROSS-").unwrap();
            w.write_all(b"WRITES-XYZ two\nthree SPLIT-ACROSS-WRITES-XYZ")
                .unwrap();
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "one [REDACTED] two\nthree [REDACTED]"
        );
    }
}
