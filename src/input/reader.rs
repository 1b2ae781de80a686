//! Reading one item at a time from a byte stream, with Perl's `<$fh>` + `chomp` semantics as GNU parallel uses
//! them: the separator is removed when present, a last item without one is kept, the empty separator is
//! paragraph mode.

use std::io::{BufRead, BufReader, Read};

use super::spec::{Separator, Trim};

/// Bytes buffered per source.
const BUFFER: usize = 64 * 1024;

/// One raw item and whether GNU would count it as ending in CR (`/\r$/` before `chomp`).
pub(crate) struct Item {
    /// The item without its separator.
    pub value: String,
    /// The item ended in `\r` (before a final `\n` or at the end).
    pub ends_in_cr: bool,
}

/// Reads items separated by a [`Separator`].
pub(crate) struct ItemReader {
    inner: Box<dyn BufRead + Send>,
    separator: Vec<u8>,
    buf: Vec<u8>,
    /// `-E`: the item that ends the input (it and the rest are not read).
    eof: Option<Vec<u8>>,
    /// The end item was met.
    ended: bool,
    /// `--trim`.
    trim: Trim,
}

impl ItemReader {
    /// Reads from any byte stream.
    pub fn new(inner: impl Read + Send + 'static, separator: &Separator) -> ItemReader {
        ItemReader {
            inner: Box::new(BufReader::with_capacity(BUFFER, inner)),
            separator: separator.as_bytes().to_vec(),
            buf: Vec::new(),
            eof: None,
            ended: false,
            trim: Trim::None,
        }
    }

    /// Ends the input at an item equal to `eof` (GNU parallel's `-E`; an empty string ends nothing, as in GNU).
    pub fn with_eof(mut self, eof: Option<&str>) -> ItemReader {
        self.eof = eof.filter(|e| !e.is_empty()).map(|e| e.as_bytes().to_vec());
        self
    }

    /// Trims each value as `trim` says (after the `-E` check, as GNU).
    pub fn with_trim(mut self, trim: Trim) -> ItemReader {
        self.trim = trim;
        self
    }

    /// The next item, or `None` at the end of the stream.
    pub fn next_item(&mut self) -> std::io::Result<Option<Item>> {
        self.buf.clear();
        if self.ended {
            return Ok(None);
        }
        let found = if self.separator.is_empty() {
            self.read_paragraph()?
        } else {
            self.read_record()?
        };
        if !found {
            return Ok(None);
        }
        let ends_in_cr = self.buf.ends_with(b"\r") || self.buf.ends_with(b"\r\n");
        if self.separator.is_empty() {
            while self.buf.last() == Some(&b'\n') {
                self.buf.pop();
            }
        } else if self.buf.ends_with(&self.separator) {
            self.buf.truncate(self.buf.len() - self.separator.len());
        }
        if self.eof.as_deref() == Some(&self.buf[..]) {
            self.ended = true;
            return Ok(None);
        }
        let value = match String::from_utf8(std::mem::take(&mut self.buf)) {
            Ok(s) => s,
            // kb's values are strings: invalid UTF-8 is replaced (GNU passes the bytes through).
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        let value = match self.trim.apply(&value) {
            trimmed if trimmed.len() == value.len() => value,
            trimmed => trimmed.to_string(),
        };
        Ok(Some(Item { value, ends_in_cr }))
    }

    /// Reads up to and including the separator (or to the end); false when nothing was left.
    fn read_record(&mut self) -> std::io::Result<bool> {
        let last = *self
            .separator
            .last()
            .expect("the separator is not empty here; this is a bug");
        loop {
            let n = self.inner.read_until(last, &mut self.buf)?;
            if n == 0 || self.buf.ends_with(&self.separator) {
                return Ok(!self.buf.is_empty());
            }
            if self.buf.last() != Some(&last) {
                // read_until stopped at the end of the stream.
                return Ok(true);
            }
        }
    }

    /// Perl's paragraph mode (`$/ = ""`): skip leading newlines, read up to a blank line, swallow further newlines.
    fn read_paragraph(&mut self) -> std::io::Result<bool> {
        self.skip_newlines()?;
        loop {
            let n = self.inner.read_until(b'\n', &mut self.buf)?;
            if n == 0 {
                return Ok(!self.buf.is_empty());
            }
            if self.buf.ends_with(b"\n\n") {
                self.skip_newlines()?;
                return Ok(true);
            }
            if self.buf.last() != Some(&b'\n') {
                return Ok(true);
            }
        }
    }

    fn skip_newlines(&mut self) -> std::io::Result<()> {
        loop {
            let available = self.inner.fill_buf()?;
            let newlines = available.iter().take_while(|&&b| b == b'\n').count();
            let all = newlines == available.len();
            let empty = available.is_empty();
            self.inner.consume(newlines);
            if empty || !all {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_eof_item_ends_the_input() {
        let read = |input: &'static [u8], eof: Option<&str>| {
            let mut r = ItemReader::new(input, &Separator::Newline).with_eof(eof);
            let mut v = Vec::new();
            while let Some(item) = r.next_item().unwrap() {
                v.push(item.value);
            }
            v
        };
        assert_eq!(read(b"a\nX\nb\nX\n", Some("X")), ["a"]);
        assert_eq!(read(b"a\nXY\nX", Some("X")), ["a", "XY"]);
        assert_eq!(read(b"a\n\nb", Some("")), ["a", "", "b"]);
        assert_eq!(read(b"X\nb", Some("X")), Vec::<String>::new());
    }

    fn items(input: &[u8], separator: Separator) -> Vec<String> {
        let mut reader = ItemReader::new(std::io::Cursor::new(input.to_vec()), &separator);
        let mut out = Vec::new();
        while let Some(item) = reader.next_item().unwrap() {
            out.push(item.value);
        }
        out
    }

    #[test]
    fn newline_items_like_gnu() {
        assert_eq!(items(b"a\nb\n", Separator::Newline), ["a", "b"]);
        assert_eq!(items(b"a\nb", Separator::Newline), ["a", "b"]);
        assert_eq!(items(b"a\nb\n\n", Separator::Newline), ["a", "b", ""]);
        assert_eq!(items(b"a\r\nb\r\n", Separator::Newline), ["a\r", "b\r"]);
        assert!(items(b"", Separator::Newline).is_empty());
    }

    #[test]
    fn nul_and_delimiters() {
        assert_eq!(items(b"a\nb\0c\0", Separator::Nul), ["a\nb", "c"]);
        assert_eq!(
            items(b"a\r\nb\r\n", Separator::Delimiter("\r\n".into())),
            ["a", "b"]
        );
        assert_eq!(
            items(b"a,,b", Separator::Delimiter(",".into())),
            ["a", "", "b"]
        );
        assert_eq!(
            items(b"xaaa", Separator::Delimiter("aa".into())),
            ["x", "a"]
        );
        assert_eq!(
            items(b"1ab2ab", Separator::Delimiter("ab".into())),
            ["1", "2"]
        );
    }

    #[test]
    fn paragraph_mode() {
        assert_eq!(
            items(b"a\n\nb", Separator::Delimiter(String::new())),
            ["a", "b"]
        );
        assert_eq!(
            items(b"\n\na\nb\n\n\n\nc\n", Separator::Delimiter(String::new())),
            ["a\nb", "c"]
        );
    }

    #[test]
    fn cr_is_detected_before_chomp() {
        let mut reader = ItemReader::new(
            std::io::Cursor::new(b"a\r\nb\nc\r".to_vec()),
            &Separator::Newline,
        );
        let flags: Vec<bool> = std::iter::from_fn(|| reader.next_item().unwrap())
            .map(|i| i.ends_in_cr)
            .collect();
        assert_eq!(flags, [true, false, true]);
    }
}
