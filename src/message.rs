//! RFC 5322 header-section work on raw message bytes, shared by every stage that reads or
//! edits a header: where the header section ends, its fields (with their folded lines),
//! a field by name, unfolding, and the Received count of loop detection.
//!
//! Input: a message as bytes, CRLF line ends (a bare LF is accepted as a line end too, as
//! mail-parser and most MTAs do). Nothing here allocates except [`unfold`] and
//! [`Field::unfolded`]; offsets are into the bytes given, so callers can cut and splice.
//!
//! The header section ends at the first empty line (RFC 5322 §2.1), or at the end of input
//! when there is none; a message starting with an empty line has no header at all.

/// Offset of the empty line that ends the header section (the end of input when there is
/// none): the header section is `raw[..header_end(raw)]`, its last line break included.
pub fn header_end(raw: &[u8]) -> usize {
    let mut pos = 0;
    while pos < raw.len() {
        let end = line_end(raw, pos);
        if matches!(&raw[pos..end], b"\r\n" | b"\n") {
            return pos;
        }
        pos = end;
    }
    raw.len()
}

/// (header section with its final line break, the rest from the empty line on).
pub fn split(raw: &[u8]) -> (&[u8], &[u8]) {
    raw.split_at(header_end(raw))
}

/// The header section of `raw`, its last line break included.
pub fn header_section(raw: &[u8]) -> &[u8] {
    &raw[..header_end(raw)]
}

/// One header field: its first line and the folded lines after it (RFC 5322 §2.2.3), with
/// the final line break. `start..end` is its place in the bytes it was found in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field<'a> {
    pub start: usize,
    pub end: usize,
    pub raw: &'a [u8],
}

impl<'a> Field<'a> {
    /// The field name: what precedes the first colon of its first line, trailing blanks
    /// removed (RFC 5322 §4.5.1 obsolete syntax allows `Subject :`). Empty without a colon.
    pub fn name(&self) -> &'a [u8] {
        let first = &self.raw[..line_end(self.raw, 0)];
        match memchr::memchr(b':', first) {
            Some(colon) => first[..colon].trim_ascii_end(),
            None => &[],
        }
    }

    /// Whether the field is named `name` (field names are case-insensitive).
    pub fn is(&self, name: &str) -> bool {
        self.name().eq_ignore_ascii_case(name.as_bytes())
    }

    /// The raw value: everything after the colon, folded lines and final break included.
    pub fn value(&self) -> &'a [u8] {
        let first = &self.raw[..line_end(self.raw, 0)];
        match memchr::memchr(b':', first) {
            Some(colon) => &self.raw[colon + 1..],
            None => &[],
        }
    }

    /// The value unfolded and trimmed ([`unfold`]), non-UTF-8 bytes replaced.
    pub fn unfolded(&self) -> String {
        unfold(&String::from_utf8_lossy(self.value()))
    }
}

/// The fields of header section `head`, in order. A line that starts with a blank belongs
/// to the field above it; one at the very start is a field of its own (with no name).
pub fn fields(head: &[u8]) -> impl Iterator<Item = Field<'_>> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        if pos >= head.len() {
            return None;
        }
        let start = pos;
        pos = field_end(head, start);
        Some(Field {
            start,
            end: pos,
            raw: &head[start..pos],
        })
    })
}

/// The first field of header section `head` named `name`.
pub fn find<'a>(head: &'a [u8], name: &str) -> Option<Field<'a>> {
    fields(head).find(|f| f.is(name))
}

/// End of the field starting at `start` of `head`: after its last folded line.
pub fn field_end(head: &[u8], start: usize) -> usize {
    let mut pos = line_end(head, start);
    while pos < head.len() && matches!(head[pos], b' ' | b'\t') {
        pos = line_end(head, pos);
    }
    pos
}

/// RFC 5322 §2.2.3: a folded value on one line — each line break and the blanks that
/// follow it become one space; the result is trimmed.
pub fn unfold(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, line) in value.split('\n').enumerate() {
        let line = line.trim_end_matches('\r');
        if i > 0 {
            out.push(' ');
            out.push_str(line.trim_start());
        } else {
            out.push_str(line.trim());
        }
    }
    out.trim().to_owned()
}

/// `Received` fields in the header section (loop detection: like Postfix
/// `hopcount_limit`, more than `smtp.max_hops` of them is a loop).
pub fn received_count(raw: &[u8]) -> usize {
    fields(header_section(raw))
        .filter(|f| f.is("received"))
        .count()
}

/// Offset just past the line break of the line starting at `from` (or the end of input).
fn line_end(raw: &[u8], from: usize) -> usize {
    // memchr: every header scan (find, fields, header_end) walks lines through here.
    memchr::memchr(b'\n', &raw[from..]).map_or(raw.len(), |i| from + i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_section_ends_at_the_first_empty_line() {
        let msg = b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore";
        assert_eq!(
            split(msg),
            (&b"A: 1\r\nB: 2\r\n"[..], &b"\r\nbody\r\n\r\nmore"[..])
        );
        assert_eq!(header_end(b"A: 1\nB: 2\n\nbody"), 10);
        assert_eq!(header_end(b"\r\nbody: not a header\r\n\r\n"), 0);
        assert_eq!(header_section(b"A: 1\r\nB: 2\r\n"), b"A: 1\r\nB: 2\r\n");
        assert_eq!(header_section(b""), b"");
    }

    #[test]
    fn fields_keep_their_folded_lines_and_find_is_case_insensitive() {
        let head = b"Subject: one\r\n two\r\nFrom : a@b.test\r\nX-Empty:\r\nno colon\r\n";
        let all: Vec<&[u8]> = fields(head).map(|f| f.name()).collect();
        assert_eq!(all, [&b"Subject"[..], b"From", b"X-Empty", b""]);
        let subject = find(head, "SUBJECT").expect("subject");
        assert_eq!((subject.start, subject.end), (0, 20));
        assert_eq!(subject.unfolded(), "one two");
        let from = find(head, "from").expect("from");
        assert_eq!(from.value(), b" a@b.test\r\n");
        assert_eq!(find(head, "to"), None);
        assert_eq!(find(b" lead: x\r\n", "lead"), None);
    }

    #[test]
    fn unfolding_joins_lines_with_one_space() {
        assert_eq!(unfold(" a\r\n\t b \r\n c\r\n"), "a b  c");
        assert_eq!(unfold("plain"), "plain");
    }

    #[test]
    fn received_headers_are_counted_in_the_header_section_only() {
        let msg = b"Received: a\r\nreceived: b\r\n\tcontinued\r\nSubject: x\r\nRECEIVED:c\r\n\r\nReceived: body\r\n";
        assert_eq!(received_count(msg), 3);
        assert_eq!(received_count(b""), 0);
        assert_eq!(received_count(b"\r\nReceived: x\r\n"), 0);
    }
}
