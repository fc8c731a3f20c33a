//! The static-files policy's pure surfaces, for the fuzz harness (the
//! `fuzzing` feature, issue 12). Each function takes arbitrary bytes and
//! panics only when an invariant breaks.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use super::conditional::{self, Validators};
use super::{date, path, range};
use crate::request::Version;
use crate::Request;

/// A path as the handler would get it: percent-decoding and dot segments
/// never leave the root, and what comes out round-trips.
pub(crate) fn resolve_path(req_path: &str, dotfiles: bool) {
    let Ok(resolved) = path::resolve(req_path, dotfiles) else {
        return;
    };
    let root = Path::new("/srv/root");
    let joined = root.join(&resolved.rel);
    assert!(joined.starts_with(root), "{req_path:?} left the root");
    let mut depth = 0usize;
    for c in resolved.rel.components() {
        match c {
            Component::Normal(name) => {
                let name = name.as_bytes();
                assert!(
                    !name.is_empty()
                        && name != b"."
                        && name != b".."
                        && !name.contains(&0)
                        && !name.contains(&b'/')
                        && !name.contains(&b'\\'),
                    "{req_path:?}: bad name {name:?}"
                );
                assert!(dotfiles || name[0] != b'.', "{req_path:?}: a dotfile");
                depth += 1;
            }
            other => panic!("{req_path:?} resolved to a {other:?} component"),
        }
    }
    // The URL we would generate for it names the same place.
    let url = path::dir_url(&resolved.rel);
    let again = path::resolve(&url, true).expect("our own URL resolves");
    assert_eq!(again.rel, resolved.rel, "{req_path:?} -> {url:?}");
    assert!(again.slash);
    assert_eq!(again.rel.components().count(), depth);
}

/// Percent-encoding round-trips any bytes as one name.
pub(crate) fn encode_name(name: &[u8]) {
    if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
        return;
    }
    let mut url = String::from("/");
    path::percent_encode_into(name, &mut url);
    match path::resolve(&url, true) {
        Ok(r) => match name {
            b"." | b".." => {}
            _ if name.contains(&b'\\') => panic!("a backslash name resolved"),
            _ => assert_eq!(r.rel.as_os_str(), OsStr::from_bytes(name)),
        },
        Err(_) => assert!(
            name == b".." || name.contains(&b'\\'),
            "{name:?} -> {url:?} refused"
        ),
    }
}

/// `Range` against a file length: the ranges served are inside the file,
/// in bounds, no more than `max`, and never overlap.
pub(crate) fn ranges(value: &[u8], len: u64, max: usize) {
    match range::parse(value, len, max) {
        range::Ranges::Satisfiable(v) => {
            assert!(!v.is_empty() && v.len() <= max, "{} ranges", v.len());
            for r in &v {
                assert!(r.first <= r.last && r.last < len, "{r:?} of {len}");
                assert!(r.len() >= 1 && r.len() <= len);
                let cr = r.content_range(len);
                assert!(cr.starts_with("bytes ") && cr.ends_with(&format!("/{len}")));
            }
            let mut sorted = v.clone();
            sorted.sort_unstable_by_key(|r| r.first);
            assert!(sorted.windows(2).all(|w| w[0].last < w[1].first));
        }
        range::Ranges::Unsatisfiable | range::Ranges::Ignore => {}
    }
    // The boundary search agrees with the obvious one.
    if let Some((&k, rest)) = value.split_first() {
        let n = usize::from(k % 8).min(rest.len());
        let (needle, hay) = rest.split_at(n);
        let naive = needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle);
        assert_eq!(range::contains(hay, needle), naive);
    }
}

/// Preconditions and dates: header fields (one per line, `name: value`)
/// against made-up validators; every date that parses formats back to the
/// same second.
pub(crate) fn conditionals(fields: &[u8], etag: &str, modified: i64, strong: bool, now: i64) {
    let mut names = Vec::new();
    for line in fields.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let Ok(name) = std::str::from_utf8(&line[..colon]) else {
            continue;
        };
        names.push((name, &line[colon + 1..]));
    }
    let headers: Vec<httparse::Header<'_>> = names
        .iter()
        .map(|&(name, value)| httparse::Header { name, value })
        .collect();
    let req = Request {
        method: "GET",
        target: "/",
        version: Version::Http11,
        headers: &headers,
        body: &[],
        peer: None,
        upload: None,
    };
    let v = Validators::made_up(etag, modified, strong, now);
    let outcome = conditional::evaluate(&req, &v);
    let _ = conditional::if_range(&req, &v);
    // Without preconditions there is nothing to decide.
    if !names
        .iter()
        .any(|(n, _)| n.to_ascii_lowercase().starts_with("if-"))
    {
        assert_eq!(outcome, conditional::Outcome::Proceed);
    }
    for (_, value) in &names {
        if let Some(t) = date::parse(value, now) {
            // Years 0000..=9999 are what IMF-fixdate can say.
            if (0..253_402_300_800).contains(&t) {
                let text = crate::encode::http_date(t as u64);
                assert_eq!(
                    date::parse(&text, now),
                    Some(t),
                    "{:?} -> {t} -> {:?}",
                    String::from_utf8_lossy(value),
                    String::from_utf8_lossy(&text)
                );
            }
        }
    }
}
