//! Size bounds of every file csp-sync reads (config, plan, state) and of the values inside them: reading
//! stops at the bound, so `-c /dev/zero` or `--plan /dev/zero` is a clear error instead of exhausting memory.

use std::io::Read as _;
use std::path::Path;

/// The largest config file read: 40,000 `[[tenant]]` entries take about 4 MB.
pub const CONFIG_BYTES: u64 = 32 * 1024 * 1024;
/// The largest plan file read (`sync --plan`): a large estate's plan is tens of megabytes.
pub const PLAN_BYTES: u64 = 512 * 1024 * 1024;
/// The largest state file read (one tenant's users, the journal, last-seen times).
pub const STATE_BYTES: u64 = 256 * 1024 * 1024;
/// The longest regular expression accepted in the config (`exclude_upn`, `protect`).
pub const REGEX_CHARS: usize = 1000;
/// The compiled size bound of one regular expression (regex's `size_limit` and `dfa_size_limit`).
pub const REGEX_COMPILED_BYTES: usize = 1024 * 1024;

/// Why a bounded read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("it is larger than {}, the most csp-sync reads", human(*.0))]
    TooLarge(u64),
}

impl ReadError {
    /// Whether the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Io(e) if e.kind() == std::io::ErrorKind::NotFound)
    }
}

fn human(bytes: u64) -> String {
    if bytes >= 1024 * 1024 {
        format!("{} MB", bytes / (1024 * 1024))
    } else {
        format!("{bytes} bytes")
    }
}

/// Reads at most `limit` bytes of `path`; a longer file (or an endless one such as `/dev/zero`) is
/// [`ReadError::TooLarge`] after reading `limit + 1` bytes.
pub fn read(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let file = std::fs::File::open(path)?;
    let mut out = Vec::new();
    file.take(limit + 1).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(ReadError::TooLarge(limit));
    }
    Ok(out)
}

/// [`read`] as UTF-8 text.
pub fn read_to_string(path: &Path, limit: u64) -> Result<String, ReadError> {
    let bytes = read(path, limit)?;
    String::from_utf8(bytes).map_err(|e| {
        ReadError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("it is not UTF-8 text ({e})"),
        ))
    })
}

/// At most `chars` characters of `s`, with an ellipsis and the full length when cut: a huge value is
/// never echoed whole in a message.
pub fn shorten(s: &str, chars: usize) -> String {
    let total = s.chars().count();
    if total <= chars {
        return s.to_string();
    }
    let head: String = s.chars().take(chars).collect();
    format!("{head}… ({total} characters)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn dev_zero_stops_at_the_bound() {
        let e = read(Path::new("/dev/zero"), 1024).unwrap_err();
        assert!(matches!(e, ReadError::TooLarge(1024)));
        assert!(e.to_string().contains("larger than"));
    }

    #[test]
    fn small_files_are_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "abc").unwrap();
        assert_eq!(read_to_string(&path, 3).unwrap(), "abc");
        assert!(matches!(read(&path, 2), Err(ReadError::TooLarge(2))));
        assert!(
            read(&dir.path().join("missing"), 2)
                .unwrap_err()
                .is_not_found()
        );
    }

    #[test]
    fn shorten_cuts_long_values() {
        assert_eq!(shorten("abc", 5), "abc");
        assert_eq!(shorten("abcdef", 3), "abc… (6 characters)");
    }
}
