//! Server-sent events, parsed by hand: `data:` lines joined until a blank line, comments and
//! `event: ping` skipped, `[DONE]` ends the stream. Small enough not to need a crate, and strict
//! about size so a hostile server cannot make us buffer without end.

use std::io::{BufRead, BufReader, Read};

/// Longest event we accept (a chunk with many top alternatives is a few KiB).
const MAX_EVENT_BYTES: usize = 4 << 20;

/// What the next read gave.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SseItem {
    /// One event's data (JSON for completions).
    Data(String),
    /// `data: [DONE]`: the server says the stream is complete.
    Done,
    /// The connection ended (cleanly or not) without `[DONE]`.
    Eof,
}

/// Why reading failed.
#[derive(Debug)]
pub(crate) enum SseError {
    /// The transport failed.
    Io(std::io::Error),
    /// An event grew past [`MAX_EVENT_BYTES`].
    TooLong,
    /// Bytes that are not UTF-8.
    NotUtf8,
}

/// Reads events from a response body.
pub(crate) struct SseReader<R> {
    inner: BufReader<R>,
    line: Vec<u8>,
}

impl<R: Read> SseReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner: BufReader::with_capacity(16 << 10, inner),
            line: Vec::new(),
        }
    }

    /// The next event.
    pub(crate) fn next_item(&mut self) -> Result<SseItem, SseError> {
        let mut data: Option<String> = None;
        let mut event_name = String::new();
        loop {
            self.line.clear();
            let n = (&mut self.inner)
                .take(MAX_EVENT_BYTES as u64 + 1)
                .read_until(b'\n', &mut self.line)
                .map_err(SseError::Io)?;
            if n == 0 {
                // A last event without its blank line still counts.
                return Ok(match data {
                    Some(d) if d.trim() == "[DONE]" => SseItem::Done,
                    Some(d) if event_name != "ping" => SseItem::Data(d),
                    _ => SseItem::Eof,
                });
            }
            if self.line.len() > MAX_EVENT_BYTES {
                return Err(SseError::TooLong);
            }
            let text = std::str::from_utf8(&self.line).map_err(|_| SseError::NotUtf8)?;
            let text = text.trim_end_matches(['\n', '\r']);
            if text.is_empty() {
                match data.take() {
                    Some(d) if event_name == "ping" => {
                        drop(d);
                        event_name.clear();
                    }
                    Some(d) if d.trim() == "[DONE]" => return Ok(SseItem::Done),
                    Some(d) => return Ok(SseItem::Data(d)),
                    None => event_name.clear(),
                }
                continue;
            }
            if text.starts_with(':') {
                continue; // comment (keep-alive ping)
            }
            let (field, value) = match text.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (text, ""),
            };
            match field {
                "data" => {
                    let d = data.get_or_insert_with(String::new);
                    if !d.is_empty() {
                        d.push('\n');
                    }
                    if d.len() + value.len() > MAX_EVENT_BYTES {
                        return Err(SseError::TooLong);
                    }
                    d.push_str(value);
                }
                "event" => event_name = value.to_owned(),
                _ => {} // id, retry: not used
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(text: &str) -> Vec<SseItem> {
        let mut r = SseReader::new(text.as_bytes());
        let mut out = Vec::new();
        loop {
            let item = r.next_item().expect("parse");
            let end = matches!(item, SseItem::Done | SseItem::Eof);
            out.push(item);
            if end {
                return out;
            }
        }
    }

    #[test]
    fn data_lines_pings_and_done() {
        let got = items(
            ": ping - 2026\r\n\r\ndata: {\"a\":1}\r\n\r\nevent: ping\ndata: x\n\ndata: a\ndata: b\n\ndata: [DONE]\n\n",
        );
        assert_eq!(
            got,
            vec![
                SseItem::Data("{\"a\":1}".into()),
                SseItem::Data("a\nb".into()),
                SseItem::Done
            ]
        );
    }

    #[test]
    fn a_cut_stream_ends_without_done() {
        assert_eq!(
            items("data: {\"a\":1}\n\ndata: {\"b\""),
            vec![
                SseItem::Data("{\"a\":1}".into()),
                SseItem::Data("{\"b\"".into())
            ]
            .into_iter()
            .chain([SseItem::Eof])
            .collect::<Vec<_>>()
        );
    }

    #[test]
    fn oversized_events_are_refused() {
        let big = format!("data: {}\n\n", "x".repeat(MAX_EVENT_BYTES + 10));
        let mut r = SseReader::new(big.as_bytes());
        assert!(matches!(r.next_item(), Err(SseError::TooLong)));
    }
}
