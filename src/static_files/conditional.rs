//! Validators and conditional requests (RFC 9110 §8.8, §13): the `ETag` and
//! `Last-Modified` of a file, and the preconditions evaluated in the order
//! §13.2.2 gives.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::date;
use crate::{header, Request};

/// What a file's validators are computed from: its entity tag and
/// modification time, fixed for an opened file (a cache keeps one).
#[derive(Debug)]
pub(super) struct Identity {
    /// The strong entity tag, quotes included: inode, size and modification
    /// time to the nanosecond, in hex.
    pub(super) etag: String,
    mtime: i64,
    /// The modification time since the epoch; `None` before it.
    mtime_exact: Option<Duration>,
}

impl Identity {
    /// The identity of an opened file's metadata (its `fstat`).
    pub(super) fn of(meta: &Metadata) -> Identity {
        Identity {
            etag: format!(
                "\"{:x}-{:x}-{:x}.{:x}\"",
                meta.ino(),
                meta.len(),
                meta.mtime(),
                meta.mtime_nsec()
            ),
            mtime: meta.mtime(),
            mtime_exact: epoch_secs(meta.mtime(), meta.mtime_nsec()),
        }
    }

    /// The validators at `now`.
    pub(super) fn at(&self, now: SystemTime) -> Validators<'_> {
        let now_secs = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let modified_is_strong = match (self.mtime_exact, now.duration_since(UNIX_EPOCH)) {
            (Some(m), Ok(n)) => n
                .checked_sub(m)
                .is_some_and(|age| age >= Duration::from_secs(1)),
            (None, _) => true, // before 1970: long ago
            (Some(_), Err(_)) => false,
        };
        Validators {
            etag: &self.etag,
            modified: self.mtime.min(now_secs),
            modified_is_strong,
            now: now_secs,
        }
    }

    /// Whether the modification time is not in the future at `now`, so
    /// `Last-Modified` is the file's own and stays the same.
    pub(super) fn settled(&self, now: SystemTime) -> bool {
        self.at(now).modified == self.mtime
    }
}

/// A file's validators at the time of a response, as sent and as compared.
#[derive(Debug)]
pub(super) struct Validators<'a> {
    /// The entity tag.
    pub(super) etag: &'a str,
    /// `Last-Modified` in seconds: the modification time, or the response
    /// time if that is in the future (§8.8.2.1).
    pub(super) modified: i64,
    /// Whether `Last-Modified` is a strong validator (§8.8.2.2): the file
    /// was last changed at least a second before the response.
    pub(super) modified_is_strong: bool,
    /// The response time, in seconds.
    now: i64,
}

impl<'a> Validators<'a> {
    /// Validators made up from parts, for the fuzz harness (issue 12).
    #[cfg(feature = "fuzzing")]
    pub(super) fn made_up(etag: &'a str, modified: i64, strong: bool, now: i64) -> Validators<'a> {
        Validators {
            etag,
            modified,
            modified_is_strong: strong,
            now,
        }
    }

    /// `Last-Modified` formatted as an HTTP date.
    pub(super) fn last_modified(&self) -> String {
        let secs = u64::try_from(self.modified).unwrap_or(0);
        crate::http_date(UNIX_EPOCH + Duration::from_secs(secs))
    }
}

/// The modification time as a duration since the epoch, `None` before it.
fn epoch_secs(secs: i64, nsec: i64) -> Option<Duration> {
    let secs = u64::try_from(secs).ok()?;
    let nsec = u32::try_from(nsec).unwrap_or(0).min(999_999_999);
    Some(Duration::new(secs, nsec))
}

/// What the preconditions decide.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Serve the representation (ranges may still apply).
    Proceed,
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

/// Evaluates `If-Match`, `If-Unmodified-Since`, `If-None-Match` and
/// `If-Modified-Since` for a GET or HEAD of an existing file, in the order
/// of RFC 9110 §13.2.2 (`If-Range` is separate: see [`if_range`]).
pub(super) fn evaluate(req: &Request<'_>, v: &Validators<'_>) -> Outcome {
    // 1. If-Match, else 2. If-Unmodified-Since.
    if let Some(matched) = etag_list_matches(req, header::IF_MATCH, v.etag, true) {
        if !matched {
            return Outcome::Failed;
        }
    } else if let Some(date) = single_date(req, header::IF_UNMODIFIED_SINCE, v.now) {
        if v.modified > date {
            return Outcome::Failed;
        }
    }
    // 3. If-None-Match, else 4. If-Modified-Since (a date after the file's
    // Last-Modified, even one in the future, counts as "not modified").
    if let Some(matched) = etag_list_matches(req, header::IF_NONE_MATCH, v.etag, false) {
        if matched {
            return Outcome::NotModified;
        }
    } else if let Some(date) = single_date(req, header::IF_MODIFIED_SINCE, v.now) {
        if v.modified <= date {
            return Outcome::NotModified;
        }
    }
    Outcome::Proceed
}

/// `If-Range` (§13.1.5), for a request that has a valid `Range`: whether the
/// range may be served. An entity tag must match strongly (so a weak one
/// never does); a date must equal `Last-Modified` exactly, and only counts
/// when `Last-Modified` is strong. Anything else: serve the whole file.
/// No `If-Range`: true.
pub(super) fn if_range(req: &Request<'_>, v: &Validators<'_>) -> bool {
    let Some(value) = req.header_bytes(header::IF_RANGE) else {
        return true;
    };
    let value = trim_ows(value);
    if value.starts_with(b"\"") || value.starts_with(b"W/") {
        return match parse_etag(value) {
            Some((tag, false, rest)) if trim_ows(rest).is_empty() => tag == v.etag.as_bytes(),
            _ => false,
        };
    }
    v.modified_is_strong && date::parse(value, v.now) == Some(v.modified)
}

/// A date header that appears once and parses; otherwise it is ignored
/// (§13.1.3, §13.1.4).
fn single_date(req: &Request<'_>, name: &str, now: i64) -> Option<i64> {
    let mut values = req.headers().filter(|(n, _)| n.eq_ignore_ascii_case(name));
    let (_, value) = values.next()?;
    if values.next().is_some() {
        return None;
    }
    date::parse(value, now)
}

/// Whether the entity-tag list of every `name` field (combined, as a list)
/// matches `etag`: `None` when the field is absent. `*` matches (the file
/// exists). Strong comparison for `If-Match`, weak for `If-None-Match`.
/// Members that do not parse never match.
fn etag_list_matches(req: &Request<'_>, name: &str, etag: &str, strong: bool) -> Option<bool> {
    let mut present = false;
    for (n, value) in req.headers() {
        if !n.eq_ignore_ascii_case(name) {
            continue;
        }
        present = true;
        if list_matches(value, etag.as_bytes(), strong) {
            return Some(true);
        }
    }
    present.then_some(false)
}

fn list_matches(mut list: &[u8], etag: &[u8], strong: bool) -> bool {
    if trim_ows(list) == b"*" {
        return true;
    }
    // Our own tag is strong and quoted; compare the quoted opaque part.
    loop {
        list = trim_ows(list);
        match list.first() {
            None => return false,
            Some(b',') => {
                list = &list[1..];
                continue;
            }
            _ => {}
        }
        match parse_etag(list) {
            Some((tag, weak, rest)) => {
                if tag == etag && !(strong && weak) {
                    return true;
                }
                list = rest;
            }
            // Skip a member that does not parse, up to the next comma.
            None => match list.iter().position(|&b| b == b',') {
                Some(i) => list = &list[i + 1..],
                None => return false,
            },
        }
    }
}

/// One `entity-tag` at the start of `s`: (the quoted opaque tag, weak, the
/// rest after it).
fn parse_etag(s: &[u8]) -> Option<(&[u8], bool, &[u8])> {
    let (weak, s) = match s.strip_prefix(b"W/") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    if s.first() != Some(&b'"') {
        return None;
    }
    let end = 1 + s[1..].iter().position(|&b| b == b'"')?;
    let tag = &s[..=end];
    if !tag[1..end]
        .iter()
        .all(|&b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80)
    {
        return None;
    }
    Some((tag, weak, &s[end + 1..]))
}

pub(super) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_lists_compare_strongly_or_weakly() {
        let tag = b"\"abc-1\"";
        assert!(list_matches(b"\"abc-1\"", tag, true));
        assert!(list_matches(b" \"x\" , \"abc-1\"", tag, true));
        assert!(list_matches(b"\"x\",,\"abc-1\"", tag, true));
        assert!(list_matches(b"*", tag, true));
        assert!(!list_matches(b"W/\"abc-1\"", tag, true));
        assert!(list_matches(b"W/\"abc-1\"", tag, false));
        assert!(list_matches(b"garbage, \"abc-1\"", tag, false));
        assert!(!list_matches(b"abc-1", tag, false));
        assert!(!list_matches(b"\"abc-1", tag, false));
        assert!(!list_matches(b"\"abc\"", tag, false));
        assert!(!list_matches(b"", tag, false));
        assert!(!list_matches(b"\"x\", *", tag, false));
    }

    fn validators(mtime: i64, now: i64) -> Validators<'static> {
        Validators {
            etag: "\"e\"",
            modified: mtime.min(now),
            modified_is_strong: now - mtime >= 1,
            now,
        }
    }

    /// Runs `f` on a GET with `headers`.
    fn with_req<T>(
        headers: &[(&'static str, &'static str)],
        f: impl FnOnce(&Request<'_>) -> T,
    ) -> T {
        let hs: Vec<httparse::Header<'static>> = headers
            .iter()
            .map(|&(name, value)| httparse::Header {
                name,
                value: value.as_bytes(),
            })
            .collect();
        let req = Request {
            method: "GET",
            target: "/",
            version: crate::Version::Http11,
            headers: &hs,
            body: b"",
            peer: None,
            upload: None,
        };
        f(&req)
    }

    const LM: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
    const EARLIER: &str = "Sun, 06 Nov 1994 08:49:36 GMT";
    const LATER: &str = "Sun, 06 Nov 2095 08:49:37 GMT";

    fn eval(headers: &[(&'static str, &'static str)]) -> Outcome {
        let v = validators(784_111_777, 800_000_000);
        with_req(headers, |r| evaluate(r, &v))
    }

    #[test]
    fn preconditions_in_rfc_9110_order() {
        use Outcome::*;
        assert_eq!(eval(&[]), Proceed);
        // If-None-Match: weak comparison, lists, several fields, `*`.
        assert_eq!(eval(&[("If-None-Match", "\"e\"")]), NotModified);
        assert_eq!(eval(&[("if-none-match", "W/\"e\"")]), NotModified);
        assert_eq!(
            eval(&[
                ("If-None-Match", "\"x\""),
                ("If-None-Match", "\"y\", \"e\"")
            ]),
            NotModified
        );
        assert_eq!(eval(&[("If-None-Match", "*")]), NotModified);
        assert_eq!(eval(&[("If-None-Match", "\"x\"")]), Proceed);
        // If-Modified-Since: equal or later (even in the future) is not modified.
        assert_eq!(eval(&[("If-Modified-Since", LM)]), NotModified);
        assert_eq!(eval(&[("If-Modified-Since", LATER)]), NotModified);
        assert_eq!(
            eval(&[("If-Modified-Since", "Sunday, 06-Nov-94 08:49:37 GMT")]),
            NotModified
        );
        assert_eq!(eval(&[("If-Modified-Since", EARLIER)]), Proceed);
        assert_eq!(eval(&[("If-Modified-Since", "garbage")]), Proceed);
        assert_eq!(
            eval(&[("If-Modified-Since", LM), ("If-Modified-Since", LM)]),
            Proceed
        );
        // If-None-Match wins over If-Modified-Since.
        assert_eq!(
            eval(&[("If-None-Match", "\"x\""), ("If-Modified-Since", LATER)]),
            Proceed
        );
        // If-Match: strong comparison.
        assert_eq!(eval(&[("If-Match", "\"e\"")]), Proceed);
        assert_eq!(eval(&[("If-Match", "*")]), Proceed);
        assert_eq!(eval(&[("If-Match", "W/\"e\"")]), Failed);
        assert_eq!(eval(&[("If-Match", "\"x\"")]), Failed);
        assert_eq!(eval(&[("If-Match", "e")]), Failed);
        // If-Unmodified-Since, only without If-Match.
        assert_eq!(eval(&[("If-Unmodified-Since", EARLIER)]), Failed);
        assert_eq!(eval(&[("If-Unmodified-Since", LM)]), Proceed);
        assert_eq!(eval(&[("If-Unmodified-Since", "garbage")]), Proceed);
        assert_eq!(
            eval(&[("If-Match", "\"e\""), ("If-Unmodified-Since", EARLIER)]),
            Proceed
        );
        // 412 comes before 304.
        assert_eq!(
            eval(&[("If-Match", "\"x\""), ("If-None-Match", "\"e\"")]),
            Failed
        );
        assert_eq!(
            eval(&[("If-Match", "\"e\""), ("If-None-Match", "\"e\"")]),
            NotModified
        );
    }

    #[test]
    fn if_range_needs_a_strong_match() {
        let v = validators(784_111_777, 800_000_000);
        let holds = |value: &'static str| with_req(&[("If-Range", value)], |r| if_range(r, &v));
        assert!(with_req(&[], |r| if_range(r, &v)));
        assert!(holds("\"e\""));
        assert!(!holds("\"x\""));
        assert!(!holds("W/\"e\""));
        assert!(!holds("\"e\", \"x\""));
        assert!(holds(LM));
        assert!(!holds(EARLIER));
        assert!(!holds(LATER));
        assert!(!holds("garbage"));
        // A Last-Modified within a second of now is weak: no date matches it.
        let fresh = validators(784_111_777, 784_111_777);
        assert!(!with_req(&[("If-Range", LM)], |r| if_range(r, &fresh)));
        assert!(with_req(&[("If-Range", "\"e\"")], |r| if_range(r, &fresh)));
    }

    #[test]
    fn last_modified_formats_the_clamped_time() {
        let v = validators(784_111_777, 784_111_800);
        assert_eq!(v.last_modified(), "Sun, 06 Nov 1994 08:49:37 GMT");
        let v = validators(784_111_900, 784_111_777);
        assert_eq!(v.last_modified(), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert!(!v.modified_is_strong);
    }
}
