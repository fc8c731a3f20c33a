//! Request paths to relative file paths: percent-decoding (to raw bytes, so
//! any file name can be addressed), dot segments resolved without leaving the
//! root, and the refusals. Also the percent-encoder for the URLs we generate.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// A request path resolved to a path relative to the root.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Resolved {
    /// Plain names only: never empty names, `.`, `..`, a `/` or a NUL.
    pub(super) rel: PathBuf,
    /// Whether the URL names a directory: it ends in `/`, or in a dot
    /// segment (RFC 3986 §5.2.4 turns `/a/..` into `/`).
    pub(super) slash: bool,
}

/// Why a path is refused.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refused {
    /// 400: the path is malformed or climbs above the root.
    Bad(&'static str),
    /// 404: the path cannot name anything we serve (an encoded `/`, a
    /// backslash, a hidden dotfile).
    NotFound(&'static str),
}

/// Resolves the (still percent-encoded) path of a request target.
///
/// Each segment is percent-decoded once (so `%252e` is the name `%2e`) into
/// raw bytes: valid UTF-8 or not, the bytes are the file name, and an
/// overlong UTF-8 `.` is just an odd name that does not exist. Empty
/// segments are merged (`//a` is `/a`). After decoding, `.` is dropped and
/// `..` removes the previous segment; a `..` with nothing left to remove is
/// refused, never clamped.
pub(super) fn resolve(path: &str, dotfiles: bool) -> Result<Resolved, Refused> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(Refused::Bad("the target must be a path"));
    };
    let mut rel = PathBuf::new();
    let mut depth = 0usize;
    let mut slash = true; // "/" itself
    let mut seg = Vec::new();
    for raw in rest.split('/') {
        slash = raw.is_empty();
        if raw.is_empty() {
            continue;
        }
        seg.clear();
        percent_decode_into(raw.as_bytes(), &mut seg)
            .ok_or(Refused::Bad("malformed percent-encoding"))?;
        match seg.as_slice() {
            b"." => slash = true,
            b".." => {
                if depth == 0 {
                    return Err(Refused::Bad("the path leaves the root"));
                }
                rel.pop();
                depth -= 1;
                slash = true;
            }
            s if s.contains(&0) => return Err(Refused::Bad("NUL in the path")),
            s if s.contains(&b'/') => return Err(Refused::NotFound("encoded slash")),
            s if s.contains(&b'\\') => return Err(Refused::NotFound("backslash")),
            s if s[0] == b'.' && !dotfiles => return Err(Refused::NotFound("hidden file")),
            s => {
                rel.push(OsStr::from_bytes(s));
                depth += 1;
            }
        }
    }
    Ok(Resolved { rel, slash })
}

/// Appends the percent-decoded `raw` to `out`; `None` if a `%` is not
/// followed by two hex digits.
fn percent_decode_into(raw: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hi = hex(*raw.get(i + 1)?)?;
            let lo = hex(*raw.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    Some(())
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Appends `name` percent-encoded: every byte but the RFC 3986 unreserved
/// ones (`A-Z a-z 0-9 - . _ ~`) becomes `%XX`, so any byte string, UTF-8 or
/// not, round-trips through [`resolve`], and a relative link can never be
/// read as a scheme (`a:b`) or carry a query or fragment.
pub(super) fn percent_encode_into(name: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in name {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
}

/// The absolute URL path of `rel` as a directory: `/a%20b/c/`. Built from
/// the resolved segments, never from the request's bytes, so a redirect can
/// not be steered elsewhere (`//evil.example/` becomes `/evil.example/`).
pub(super) fn dir_url(rel: &Path) -> String {
    let mut out = String::with_capacity(rel.as_os_str().len() + 2);
    out.push('/');
    for c in rel.components() {
        if let Component::Normal(name) = c {
            percent_encode_into(name.as_bytes(), &mut out);
            out.push('/');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(path: &str) -> (PathBuf, bool) {
        let r = resolve(path, false).unwrap_or_else(|e| panic!("{path}: {e:?}"));
        (r.rel, r.slash)
    }

    fn rel(s: &[u8]) -> PathBuf {
        PathBuf::from(OsStr::from_bytes(s))
    }

    #[test]
    fn plain_paths_decode_to_raw_bytes() {
        assert_eq!(ok("/"), (rel(b""), true));
        assert_eq!(ok("/a/b%20c.txt"), (rel(b"a/b c.txt"), false));
        assert_eq!(ok("/caf%C3%A9"), (rel("café".as_bytes()), false));
        assert_eq!(ok("/bad%ff.bin"), (rel(b"bad\xff.bin"), false));
        assert_eq!(ok("//a///b/"), (rel(b"a/b"), true));
        assert_eq!(ok("/a+b"), (rel(b"a+b"), false));
        // Decoded once: a double encoding is a literal, harmless name.
        assert_eq!(ok("/%252e%252e"), (rel(b"%2e%2e"), false));
        // Overlong UTF-8 for '.' and '/' is a name of odd bytes, not a dot.
        assert_eq!(ok("/%c0%ae%c0%ae/x"), (rel(b"\xc0\xae\xc0\xae/x"), false));
        assert_eq!(ok("/%c0%af"), (rel(b"\xc0\xaf"), false));
    }

    #[test]
    fn dot_segments_resolve_inside_the_root() {
        assert_eq!(ok("/a/./b"), (rel(b"a/b"), false));
        assert_eq!(ok("/a/../b"), (rel(b"b"), false));
        assert_eq!(ok("/a/%2e%2E/b"), (rel(b"b"), false));
        assert_eq!(ok("/a/.."), (rel(b""), true));
        assert_eq!(ok("/a/."), (rel(b"a"), true));
        assert_eq!(ok("/a/b/../../c/"), (rel(b"c"), true));
    }

    #[test]
    fn escapes_and_malformed_paths_are_refused() {
        for bad in [
            "/..",
            "/../etc/passwd",
            "/a/../../b",
            "/%2e%2e/x",
            "/.%2e/x",
            "/./../x",
            "/a%00b",
            "/%2",
            "/%zz",
            "/%u002e",
            "a/b",
            "",
            "*",
        ] {
            assert!(
                matches!(resolve(bad, true), Err(Refused::Bad(_))),
                "{bad}: {:?}",
                resolve(bad, true)
            );
        }
        for missing in [
            "/a%2fb",
            "/..%2f..%2fx",
            "/a%5cb",
            "/a\\b",
            "/.git/config",
            "/...",
        ] {
            assert!(
                matches!(resolve(missing, false), Err(Refused::NotFound(_))),
                "{missing}"
            );
        }
        assert_eq!(
            resolve("/.well-known/x", true).map(|r| r.rel),
            Ok(rel(b".well-known/x"))
        );
    }

    #[test]
    fn encoding_round_trips_any_bytes() {
        let names: [&[u8]; 6] = [
            b"a b",
            b"100%",
            b"<script>x",
            "日本 ü".as_bytes(),
            b"raw\xff\x00?#:",
            b"~._-AZaz09",
        ];
        for name in names {
            let mut url = String::from("/");
            percent_encode_into(name, &mut url);
            if name.contains(&0) {
                assert!(resolve(&url, false).is_err());
                continue;
            }
            assert_eq!(ok(&url).0, rel(name), "{url}");
        }
        assert_eq!(dir_url(&rel(b"evil.example/a b")), "/evil.example/a%20b/");
        assert_eq!(dir_url(&rel(b"")), "/");
    }
}
