//! Byte ranges (RFC 9110 §14): parsing `Range`, deciding what is served,
//! and `multipart/byteranges` bodies.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::conditional::trim_ows;

/// An inclusive byte range `first..=last`, within the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ByteRange {
    pub(super) first: u64,
    pub(super) last: u64,
}

impl ByteRange {
    pub(super) fn len(self) -> u64 {
        self.last - self.first + 1
    }

    /// `first-last/complete`, the `Content-Range` value after `bytes `.
    pub(super) fn content_range(self, complete: u64) -> String {
        format!("bytes {}-{}/{complete}", self.first, self.last)
    }
}

/// What a `Range` header asks for, for a file of a given length.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Ranges {
    /// Serve the whole file (200): the header is invalid, names another
    /// unit, has more ranges than allowed, or has ranges that overlap.
    Ignore,
    /// 416: valid, but no range overlaps the file.
    Unsatisfiable,
    /// 206: the satisfiable ranges, clamped to the file, in the order asked.
    Satisfiable(Vec<ByteRange>),
}

/// Parses a `Range` value against a file of `len` bytes. At most `max`
/// ranges are honoured; more means [`Ranges::Ignore`]. Ranges that overlap
/// each other also mean `Ignore` (the whole file, once, rather than the same
/// bytes again and again); ranges that merely touch are served as asked.
/// Unsatisfiable members are dropped; if none is left, [`Ranges::Unsatisfiable`].
pub(super) fn parse(value: &[u8], len: u64, max: usize) -> Ranges {
    let Some(eq) = value.iter().position(|&b| b == b'=') else {
        return Ranges::Ignore;
    };
    if !value[..eq].eq_ignore_ascii_case(b"bytes") {
        return Ranges::Ignore;
    }
    let mut out = Vec::new();
    let mut members = 0usize;
    for spec in value[eq + 1..].split(|&b| b == b',') {
        let spec = trim_ows(spec);
        if spec.is_empty() {
            continue; // empty list elements are allowed (RFC 9110 §5.6.1)
        }
        members += 1;
        if members > max {
            return Ranges::Ignore;
        }
        let Some(dash) = spec.iter().position(|&b| b == b'-') else {
            return Ranges::Ignore;
        };
        let (a, b) = (&spec[..dash], &spec[dash + 1..]);
        let range = if a.is_empty() {
            // suffix-range: the last N bytes
            let Some(n) = number(b) else {
                return Ranges::Ignore;
            };
            (n > 0 && len > 0).then(|| ByteRange {
                first: len - n.min(len),
                last: len - 1,
            })
        } else {
            let Some(first) = number(a) else {
                return Ranges::Ignore;
            };
            let last = if b.is_empty() {
                u64::MAX
            } else {
                match number(b) {
                    Some(last) if last >= first => last,
                    _ => return Ranges::Ignore, // last < first: the field is invalid
                }
            };
            (first < len).then(|| ByteRange {
                first,
                last: last.min(len - 1),
            })
        };
        out.extend(range);
    }
    if members == 0 {
        return Ranges::Ignore;
    }
    if out.is_empty() {
        return Ranges::Unsatisfiable;
    }
    if out.len() > 1 {
        let mut sorted = out.clone();
        sorted.sort_unstable_by_key(|r| r.first);
        if sorted.windows(2).any(|w| w[1].first <= w[0].last) {
            return Ranges::Ignore;
        }
    }
    Ranges::Satisfiable(out)
}

/// A run of digits; saturates at `u64::MAX` (a position past any file).
fn number(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// What [`multipart`] made.
#[derive(Debug)]
pub(super) enum Multipart {
    /// The whole body.
    Body(Vec<u8>),
    /// The body would be bigger than the cap.
    OverCap,
    /// The boundary occurs in the file's bytes: try another.
    BoundaryInData,
}

/// Builds a `multipart/byteranges` body (RFC 9110 §14.6) of `ranges` of
/// `file` (`len` bytes long, of type `content_type`), reading the parts into
/// memory, unless it would exceed `cap` bytes or a part contains the
/// boundary. A file that has shrunk since its length was taken is an error
/// (`UnexpectedEof`).
pub(super) fn multipart(
    file: &File,
    ranges: &[ByteRange],
    len: u64,
    content_type: &str,
    boundary: &str,
    cap: u64,
) -> io::Result<Multipart> {
    let heads: Vec<String> = ranges
        .iter()
        .map(|r| {
            format!(
                "--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: {}\r\n\r\n",
                r.content_range(len)
            )
        })
        .collect();
    let tail = format!("--{boundary}--\r\n");
    let mut total = tail.len() as u64;
    for (head, r) in heads.iter().zip(ranges) {
        // part head, the bytes, CRLF
        total = total.saturating_add(head.len() as u64 + r.len() + 2);
    }
    let Some(total) = usize::try_from(total).ok().filter(|&t| t as u64 <= cap) else {
        return Ok(Multipart::OverCap);
    };
    let mut body = Vec::with_capacity(total);
    for (head, r) in heads.iter().zip(ranges) {
        body.extend_from_slice(head.as_bytes());
        let at = body.len();
        // r.len() <= total, which fits usize
        body.resize(at + r.len() as usize, 0);
        file.read_exact_at(&mut body[at..], r.first)?;
        if contains(&body[at..], boundary.as_bytes()) {
            return Ok(Multipart::BoundaryInData);
        }
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(tail.as_bytes());
    Ok(Multipart::Body(body))
}

/// Whether `needle` occurs in `hay`.
pub(super) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    let Some((&first, _)) = needle.split_first() else {
        return true;
    };
    let mut from = 0;
    while let Some(i) = hay[from..].iter().position(|&b| b == first) {
        let at = from + i;
        if hay[at..].starts_with(needle) {
            return true;
        }
        from = at + 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(first: u64, last: u64) -> ByteRange {
        ByteRange { first, last }
    }

    fn p(s: &str) -> Ranges {
        parse(s.as_bytes(), 10_000, 4)
    }

    #[test]
    fn single_ranges_are_clamped_to_the_file() {
        assert_eq!(p("bytes=0-99"), Ranges::Satisfiable(vec![r(0, 99)]));
        assert_eq!(p("bytes=9990-"), Ranges::Satisfiable(vec![r(9990, 9999)]));
        assert_eq!(p("bytes=-10"), Ranges::Satisfiable(vec![r(9990, 9999)]));
        assert_eq!(p("bytes=-20000"), Ranges::Satisfiable(vec![r(0, 9999)]));
        assert_eq!(
            p("bytes=9990-99999"),
            Ranges::Satisfiable(vec![r(9990, 9999)])
        );
        assert_eq!(p("BYTES=5-5"), Ranges::Satisfiable(vec![r(5, 5)]));
        assert_eq!(
            p("bytes=0-99999999999999999999999"),
            Ranges::Satisfiable(vec![r(0, 9999)])
        );
    }

    #[test]
    fn unsatisfiable_ranges_are_416() {
        assert_eq!(p("bytes=10000-"), Ranges::Unsatisfiable);
        assert_eq!(p("bytes=-0"), Ranges::Unsatisfiable);
        assert_eq!(p("bytes=10000-10001, 20000-"), Ranges::Unsatisfiable);
        assert_eq!(parse(b"bytes=0-", 0, 4), Ranges::Unsatisfiable);
        assert_eq!(parse(b"bytes=-5", 0, 4), Ranges::Unsatisfiable);
        // An unsatisfiable member is dropped when another one is satisfiable.
        assert_eq!(p("bytes=20000-, 0-1"), Ranges::Satisfiable(vec![r(0, 1)]));
    }

    #[test]
    fn invalid_or_foreign_ranges_are_ignored() {
        for bad in [
            "",
            "bytes",
            "bytes=",
            "bytes=,",
            "bytes=5-2",
            "bytes=a-b",
            "bytes=1",
            "bytes=--1",
            "bytes=1-2-3",
            "bytes=0x10-",
            "bytes=+1-2",
            "bytes=0-1;x",
            "items=0-5",
            "bytes 0-5",
            "bytes=0-1,5-2",
        ] {
            assert_eq!(p(bad), Ranges::Ignore, "{bad:?}");
        }
    }

    #[test]
    fn several_ranges_in_order_but_never_overlapping_or_too_many() {
        assert_eq!(
            p("bytes=20-29, 0-9 ,,-5"),
            Ranges::Satisfiable(vec![r(20, 29), r(0, 9), r(9995, 9999)])
        );
        // Touching is fine; overlapping is not.
        assert_eq!(
            p("bytes=0-9,10-19"),
            Ranges::Satisfiable(vec![r(0, 9), r(10, 19)])
        );
        assert_eq!(p("bytes=0-10,10-19"), Ranges::Ignore);
        assert_eq!(p("bytes=0-,5000-5001"), Ranges::Ignore);
        assert_eq!(p("bytes=-100,9950-9960"), Ranges::Ignore);
        assert_eq!(
            p("bytes=0-0,2-2,4-4,6-6"),
            Ranges::Satisfiable(vec![r(0, 0), r(2, 2), r(4, 4), r(6, 6)])
        );
        assert_eq!(p("bytes=0-0,2-2,4-4,6-6,8-8"), Ranges::Ignore);
        assert_eq!(parse(b"bytes=0-0", 10, 0), Ranges::Ignore);
    }

    #[test]
    fn multipart_body_frames_each_part() {
        let dir = std::env::temp_dir().join(format!("keel-multipart-{}", std::process::id()));
        std::fs::write(&dir, b"0123456789").unwrap();
        let f = File::open(&dir).unwrap();
        let mp = |ranges: &[ByteRange], len, boundary, cap| {
            multipart(&f, ranges, len, "text/plain", boundary, cap)
        };
        let Ok(Multipart::Body(body)) = mp(&[r(0, 1), r(8, 9)], 10, "B", 1000) else {
            panic!("no body");
        };
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/10\r\n\r\n01\r\n\
             --B\r\nContent-Type: text/plain\r\nContent-Range: bytes 8-9/10\r\n\r\n89\r\n--B--\r\n"
        );
        assert!(matches!(
            mp(&[r(0, 1), r(8, 9)], 10, "B", 100),
            Ok(Multipart::OverCap)
        ));
        assert!(matches!(
            mp(&[r(0, 1), r(3, 5)], 10, "45", 1000),
            Ok(Multipart::BoundaryInData)
        ));
        // The file is shorter than the ranges claim.
        let e = mp(&[r(0, 1), r(8, 19)], 20, "B", 1000).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        let _ = std::fs::remove_file(&dir);
    }

    #[test]
    fn contains_finds_needles() {
        assert!(contains(b"abcabd", b"abd"));
        assert!(!contains(b"abcab", b"abd"));
        assert!(contains(b"x", b""));
    }
}
