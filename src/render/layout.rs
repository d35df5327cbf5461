//! How wide text output may be, and wrapping text to that width with a hanging indent.

use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// The narrowest width wrapping honours; below it words would be cut into single characters.
const MIN_WIDTH: usize = 20;
/// The widest width used, whatever `COLUMNS` claims (every input has a size bound).
const MAX_WIDTH: usize = 1000;
/// The width when nothing says otherwise (output into a file or pipe, or a terminal reporting 0x0).
pub const DEFAULT_WIDTH: usize = 80;

/// Width and detail of table output (`-o table`, `--wide`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Columns a line may take; no line of a plan table is wider.
    pub width: usize,
    /// `--wide`: every changed field on its own line instead of one line per change.
    pub wide: bool,
}

impl Default for Layout {
    fn default() -> Layout {
        Layout {
            width: DEFAULT_WIDTH,
            wide: false,
        }
    }
}

impl Layout {
    /// `COLUMNS` when it is a positive number, else the terminal's width when stdout is one and reports a
    /// size, else 80 (a file, a pipe, or a terminal that reports 0x0).
    pub fn from_env(stdout_is_terminal: bool, wide: bool) -> Layout {
        let columns = std::env::var("COLUMNS")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|w| *w > 0);
        let terminal = || {
            if stdout_is_terminal {
                terminal_size::terminal_size()
                    .map(|(w, _)| usize::from(w.0))
                    .filter(|w| *w > 0)
            } else {
                None
            }
        };
        Layout::with_width(columns.or_else(terminal).unwrap_or(DEFAULT_WIDTH), wide)
    }

    /// A layout of `width` columns, kept within sensible bounds.
    pub fn with_width(width: usize, wide: bool) -> Layout {
        Layout {
            width: width.clamp(MIN_WIDTH, MAX_WIDTH),
            wide,
        }
    }
}

/// Display width of text (East Asian wide characters count two).
pub fn width(s: &str) -> usize {
    UnicodeWidthStr::width(s)
}

/// Wraps `text` into lines of at most `max` columns: the first line starts with `first`, the following
/// ones with `indent` spaces. Words are kept whole where they fit; a word longer than a line is cut.
pub fn wrap(first: &str, indent: usize, text: &str, max: usize) -> Vec<String> {
    let indent = indent.min(max / 2);
    let mut lines = Vec::new();
    let mut line = first.to_string();
    let mut used = width(first);
    let mut fresh = true; // nothing but the prefix on this line yet
    for word in text.split_whitespace() {
        let w = width(word);
        let gap = usize::from(!fresh);
        if used + gap + w <= max {
            if !fresh {
                line.push(' ');
            }
            line.push_str(word);
            used += gap + w;
            fresh = false;
            continue;
        }
        if !fresh {
            lines.push(std::mem::take(&mut line));
            line = " ".repeat(indent);
            used = indent;
        }
        // A word wider than the room left: cut it over as many lines as it needs.
        for ch in word.chars() {
            let cw = ch.width().unwrap_or(0);
            if used + cw > max && used > indent {
                lines.push(std::mem::take(&mut line));
                line = " ".repeat(indent);
                used = indent;
            }
            line.push(ch);
            used += cw;
        }
        fresh = false;
    }
    lines.push(line.trim_end().to_string());
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_with_a_hanging_indent_and_never_wider() {
        let lines = wrap(
            "  ~ update ",
            11,
            "title: Clerk → Finance Manager # job title changed in Entra",
            30,
        );
        assert!(lines.len() > 1, "{lines:?}");
        assert!(lines.iter().all(|l| width(l) <= 30), "{lines:?}");
        assert!(lines[0].starts_with("  ~ update title:"), "{lines:?}");
        assert!(lines[1].starts_with("           "), "{lines:?}");
        let long = "x".repeat(70);
        let lines = wrap("> ", 2, &long, 25);
        assert!(lines.iter().all(|l| width(l) <= 25), "{lines:?}");
        assert_eq!(lines.concat().matches('x').count(), 70);
    }

    #[test]
    fn zero_or_junk_columns_mean_the_default() {
        assert_eq!(Layout::with_width(0, false).width, MIN_WIDTH);
        assert_eq!(Layout::default().width, 80);
        assert_eq!(Layout::with_width(5000, true).width, MAX_WIDTH);
    }
}
