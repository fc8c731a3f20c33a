//! Media types by file-name extension: a built-in table for the common web
//! types, plus the user's additions and overrides.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::HeaderText;

/// The type of anything the table does not know.
pub(super) const DEFAULT: &str = "application/octet-stream";

/// The built-in table and the overrides.
#[derive(Debug, Clone, Default)]
pub(super) struct MimeTable {
    /// Lower-case extension (no dot) and the full media type to send.
    overrides: Vec<(Vec<u8>, String)>,
}

impl MimeTable {
    /// The table with `pairs` (extension, type) added or overriding. A
    /// leading dot on the extension is allowed; a `text/*` type without
    /// parameters gets `; charset=utf-8`, anything else is sent verbatim.
    /// A later pair for the same extension wins.
    pub(super) fn new(pairs: &[(String, String)]) -> io::Result<MimeTable> {
        let mut overrides: Vec<(Vec<u8>, String)> = Vec::with_capacity(pairs.len());
        for (ext, ty) in pairs {
            let ext = ext.strip_prefix('.').unwrap_or(ext).to_ascii_lowercase();
            let ty = ty.trim();
            if ext.is_empty() || ext.contains(['/', '.', '\0']) {
                return Err(invalid(format!("invalid extension {ext:?} for --mime")));
            }
            let valid_type = ty.split_once('/').is_some_and(|(a, b)| {
                !a.is_empty() && !b.is_empty() && !a.contains(char::is_whitespace)
            }) && ty.bytes().all(|b| b == b'\t' || (b' '..0x7f).contains(&b));
            if !valid_type {
                return Err(invalid(format!("invalid media type {ty:?} for --mime")));
            }
            let is_text = ty.len() > 5 && ty.as_bytes()[..5].eq_ignore_ascii_case(b"text/");
            let ty = if is_text && !ty.contains(';') {
                format!("{ty}; charset=utf-8")
            } else {
                ty.to_owned()
            };
            overrides.retain(|(e, _)| e != ext.as_bytes());
            overrides.push((ext.into_bytes(), ty));
        }
        Ok(MimeTable { overrides })
    }

    /// The media type for `path`'s extension (case-insensitive).
    pub(super) fn lookup(&self, path: &Path) -> HeaderText {
        let ext = path.extension().map_or(&[][..], |e| e.as_bytes());
        for (e, ty) in &self.overrides {
            if e.eq_ignore_ascii_case(ext) {
                return HeaderText::Owned(ty.clone());
            }
        }
        let mut buf = [0u8; 8];
        if ext.len() > buf.len() {
            return HeaderText::Borrowed(DEFAULT);
        }
        let lower = &mut buf[..ext.len()];
        lower.copy_from_slice(ext);
        lower.make_ascii_lowercase();
        HeaderText::Borrowed(builtin(lower))
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// The built-in table; `ext` is lower case.
fn builtin(ext: &[u8]) -> &'static str {
    match ext {
        b"html" | b"htm" => "text/html; charset=utf-8",
        b"css" => "text/css; charset=utf-8",
        b"js" | b"mjs" => "text/javascript; charset=utf-8",
        b"json" | b"map" => "application/json",
        b"webmanifest" => "application/manifest+json",
        b"txt" => "text/plain; charset=utf-8",
        b"md" => "text/markdown; charset=utf-8",
        b"csv" => "text/csv; charset=utf-8",
        b"xml" => "application/xml",
        b"svg" => "image/svg+xml",
        b"png" => "image/png",
        b"apng" => "image/apng",
        b"jpg" | b"jpeg" => "image/jpeg",
        b"gif" => "image/gif",
        b"webp" => "image/webp",
        b"avif" => "image/avif",
        b"bmp" => "image/bmp",
        b"ico" => "image/x-icon",
        b"wasm" => "application/wasm",
        b"pdf" => "application/pdf",
        b"mp4" | b"m4v" => "video/mp4",
        b"webm" => "video/webm",
        b"ogv" => "video/ogg",
        b"mp3" => "audio/mpeg",
        b"m4a" => "audio/mp4",
        b"ogg" | b"oga" | b"opus" => "audio/ogg",
        b"wav" => "audio/wav",
        b"flac" => "audio/flac",
        b"woff" => "font/woff",
        b"woff2" => "font/woff2",
        b"ttf" => "font/ttf",
        b"otf" => "font/otf",
        b"zip" => "application/zip",
        b"gz" => "application/gzip",
        b"tar" => "application/x-tar",
        _ => DEFAULT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(t: &MimeTable, name: &str) -> String {
        t.lookup(Path::new(name)).into_owned()
    }

    #[test]
    fn builtin_types_by_extension() {
        let t = MimeTable::default();
        assert_eq!(ty(&t, "a/B.HTML"), "text/html; charset=utf-8");
        assert_eq!(ty(&t, "x.woff2"), "font/woff2");
        assert_eq!(ty(&t, "app.mjs"), "text/javascript; charset=utf-8");
        assert_eq!(ty(&t, "a.tar.gz"), "application/gzip");
        assert_eq!(ty(&t, "noext"), DEFAULT);
        assert_eq!(ty(&t, ".bashrc"), DEFAULT);
        assert_eq!(ty(&t, "x.averyveryverylongextension"), DEFAULT);
        for ext in [
            "html", "css", "js", "mjs", "json", "map", "svg", "png", "jpg", "gif", "webp", "avif",
            "ico", "wasm", "txt", "md", "xml", "pdf", "csv", "mp4", "webm", "mp3", "ogg", "wav",
            "woff", "woff2", "ttf", "otf", "zip", "gz", "tar",
        ] {
            assert_ne!(ty(&t, &format!("f.{ext}")), DEFAULT, "{ext}");
        }
    }

    #[test]
    fn overrides_add_and_replace_with_charset_on_text() {
        let pairs = [
            (".MD".to_string(), "text/x-markdown".to_string()),
            ("foo".to_string(), "application/x-foo".to_string()),
            ("txt".to_string(), "text/plain; charset=latin1".to_string()),
            ("foo".to_string(), "application/x-foo2".to_string()),
        ];
        let t = MimeTable::new(&pairs).unwrap();
        assert_eq!(ty(&t, "r.md"), "text/x-markdown; charset=utf-8");
        assert_eq!(ty(&t, "r.FOO"), "application/x-foo2");
        assert_eq!(ty(&t, "r.txt"), "text/plain; charset=latin1");
        assert_eq!(ty(&t, "r.css"), "text/css; charset=utf-8");
        for (e, m) in [
            ("", "a/b"),
            ("a/b", "a/b"),
            ("x", "nonsense"),
            ("x", "a/b\r\nX: y"),
        ] {
            assert!(MimeTable::new(&[(e.into(), m.into())]).is_err(), "{e} {m}");
        }
    }
}
