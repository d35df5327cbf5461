//! A push-fed splitter of a stream of JSON objects: a JSON array of objects (`compressedJSON`) or one
//! object per line (`compressedJSONLines`), the two shapes a Graph billing export blob may take (reference
//! microsoft-apis.md 2.6: the resource doc says JSON lines, Microsoft's own example says `compressedJSON`;
//! both are accepted whatever the manifest's `dataFormat` claims). Bytes arrive in chunks of any size; each
//! complete top-level object is handed on as one byte slice, so memory holds at most one record (plus the
//! chunk), however long the stream.

/// The longest single record accepted (a usage line of the `full` attribute set is about 2 KiB).
pub const MAX_RECORD_BYTES: usize = 1 << 20;
/// The deepest nesting accepted inside a record.
const MAX_DEPTH: u32 = 64;

/// Why a stream is not a JSON array or JSON lines of objects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error(
        "unexpected {found:?} at byte {offset} between records (expected an object, `,`, `[` or `]`)"
    )]
    Unexpected { found: char, offset: u64 },
    #[error("a record at byte {offset} is larger than {MAX_RECORD_BYTES} bytes")]
    TooLarge { offset: u64 },
    #[error("a record at byte {offset} nests deeper than {MAX_DEPTH} levels")]
    TooDeep { offset: u64 },
    #[error("the stream ends inside a record (started at byte {offset})")]
    Truncated { offset: u64 },
}

/// The splitter's state between chunks.
#[derive(Debug, Default)]
pub struct RecordSplitter {
    /// The start of a record that began in an earlier chunk.
    pending: Vec<u8>,
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// Stream offset of the current chunk's first byte.
    offset: u64,
    record_start: u64,
    records: u64,
}

impl RecordSplitter {
    pub fn new() -> RecordSplitter {
        RecordSplitter::default()
    }

    /// Records handed on so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Feeds the next chunk; `on_record` gets each complete object. Its error stops the feed.
    pub fn feed<E: From<SplitError>>(
        &mut self,
        chunk: &[u8],
        mut on_record: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut start: Option<usize> = (self.depth > 0).then_some(0);
        let mut i = 0;
        while i < chunk.len() {
            let b = chunk[i];
            if self.depth == 0 {
                match b {
                    b'{' => {
                        self.depth = 1;
                        start = Some(i);
                        self.record_start = self.offset + i as u64;
                    }
                    b' ' | b'\n' | b'\r' | b'\t' | b',' | b'[' | b']' => {}
                    _ => {
                        return Err(SplitError::Unexpected {
                            found: char::from(b),
                            offset: self.offset + i as u64,
                        }
                        .into());
                    }
                }
                i += 1;
                continue;
            }
            if self.in_string {
                // Skip to the next quote or backslash quickly.
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                i += 1;
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => {
                    self.depth += 1;
                    if self.depth > MAX_DEPTH {
                        return Err(SplitError::TooDeep {
                            offset: self.record_start,
                        }
                        .into());
                    }
                }
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        let s = start.take().unwrap_or(0);
                        self.records += 1;
                        if self.pending.is_empty() {
                            on_record(&chunk[s..=i])?;
                        } else {
                            self.pending.extend_from_slice(&chunk[s..=i]);
                            if self.pending.len() > MAX_RECORD_BYTES {
                                return Err(SplitError::TooLarge {
                                    offset: self.record_start,
                                }
                                .into());
                            }
                            let record = std::mem::take(&mut self.pending);
                            on_record(&record)?;
                            self.pending = record;
                            self.pending.clear();
                        }
                    }
                }
                _ => {}
            }
            i += 1;
        }
        if let Some(s) = start {
            self.pending.extend_from_slice(&chunk[s..]);
            if self.pending.len() > MAX_RECORD_BYTES {
                return Err(SplitError::TooLarge {
                    offset: self.record_start,
                }
                .into());
            }
        }
        self.offset += chunk.len() as u64;
        Ok(())
    }

    /// Ends the stream: an unfinished record is an error.
    pub fn finish(&self) -> Result<(), SplitError> {
        if self.depth > 0 {
            return Err(SplitError::Truncated {
                offset: self.record_start,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_in(chunks: &[&[u8]]) -> Result<Vec<String>, SplitError> {
        let mut s = RecordSplitter::new();
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, |r: &[u8]| {
                out.push(String::from_utf8_lossy(r).into_owned());
                Ok::<(), SplitError>(())
            })?;
        }
        s.finish()?;
        Ok(out)
    }

    #[test]
    fn json_lines_and_arrays_give_the_same_records() {
        let lines = b"{\"a\":1}\n{\"a\":\"}{\\\"\"}\r\n{\"b\":[1,{\"c\":2}]}\n";
        let array = b"[ {\"a\":1}, {\"a\":\"}{\\\"\"},\n{\"b\":[1,{\"c\":2}]} ]";
        let want = vec![
            "{\"a\":1}".to_string(),
            "{\"a\":\"}{\\\"\"}".to_string(),
            "{\"b\":[1,{\"c\":2}]}".to_string(),
        ];
        assert_eq!(split_in(&[lines]).unwrap(), want);
        assert_eq!(split_in(&[array]).unwrap(), want);
        // Every split point, one byte at a time.
        let bytes: Vec<&[u8]> = array.chunks(1).collect();
        assert_eq!(split_in(&bytes).unwrap(), want);
        for cut in 0..lines.len() {
            let (a, b) = lines.split_at(cut);
            assert_eq!(split_in(&[a, b]).unwrap(), want, "cut at {cut}");
        }
    }

    #[test]
    fn garbage_and_truncation_are_errors() {
        assert!(matches!(
            split_in(&[b"{\"a\":1}\nnull"]),
            Err(SplitError::Unexpected { found: 'n', .. })
        ));
        assert!(matches!(
            split_in(&[b"[{\"a\":1},{\"a\""]),
            Err(SplitError::Truncated { .. })
        ));
        let deep = "{\"a\":".to_string() + &"[".repeat(70);
        assert!(matches!(
            split_in(&[deep.as_bytes()]),
            Err(SplitError::TooDeep { .. })
        ));
    }
}
