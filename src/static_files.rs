//! [`StaticFiles`]: a [`Handler`] that serves a directory.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use log::{debug, error, warn};

use crate::{header, Body, ErrorCode, Handler, Request, Response};

/// Serves the files below a root directory: GET and HEAD, `index.html` for
/// directories, bodies sent with `sendfile(2)`.
///
/// Paths are percent-decoded and checked segment by segment: `..`, `.`,
/// NUL, backslashes and dotfiles are refused, and a file whose real path
/// (after symlinks) is outside the root is not served. Missing: 404;
/// unreadable: 403; any other failure: 500 (never 404).
///
/// ```no_run
/// let handler = keelhttp::StaticFiles::new("./public")?;
/// let server = keelhttp::Server::bind("127.0.0.1:8080", keelhttp::Config::default())?;
/// server.run(handler)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct StaticFiles {
    root: PathBuf,
    /// The root, open, for `openat2` lookups beneath it.
    dir: File,
    /// Whether the kernel has `openat2`; if not, a slower path check is used.
    beneath: bool,
}

impl StaticFiles {
    /// Serves `root`, which must be a readable directory.
    ///
    /// # Errors
    /// `root` does not exist or is not a directory.
    pub fn new(root: impl AsRef<Path>) -> io::Result<StaticFiles> {
        let root = std::fs::canonicalize(root.as_ref())?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a directory", root.display()),
            ));
        }
        let dir = File::open(&root)?;
        Ok(StaticFiles {
            root,
            dir,
            beneath: true,
        })
    }

    /// The canonical root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn serve(&mut self, req: &Request<'_>) -> Result<Response, Response> {
        let path = req.path();
        if !path.starts_with('/') {
            return Err(Response::error(
                ErrorCode::BadRequest,
                "the target must be a path",
            ));
        }
        let rel = decode_path(path)
            .ok_or_else(|| Response::error(ErrorCode::NotFound, "no such file"))?;
        let mut rel = rel;
        let mut file = self.open(&rel)?;
        let mut meta = file.metadata().map_err(|e| internal(&rel, &e))?;
        if meta.is_dir() {
            if !path.ends_with('/') {
                let mut location = format!("{path}/");
                if let Some(q) = req.query() {
                    location.push('?');
                    location.push_str(q);
                }
                return Ok(Response::text(301, "moved\n").with_header(header::LOCATION, location));
            }
            rel.push("index.html");
            file = self.open(&rel)?;
            meta = file.metadata().map_err(|e| internal(&rel, &e))?;
            if !meta.is_file() {
                return Err(Response::error(ErrorCode::NotFound, "no such file"));
            }
        } else if !meta.is_file() {
            return Err(Response::error(ErrorCode::NotFound, "no such file"));
        }
        let len = meta.len();
        Ok(Response::new(200)
            .with_header(header::CONTENT_TYPE, mime_type(&rel))
            .with_body(Body::File {
                file,
                offset: 0,
                len,
            }))
    }
}

impl StaticFiles {
    /// Opens `rel` for reading, following symlinks only while they stay
    /// inside the root: `openat2(RESOLVE_BENEATH)` on the root's descriptor
    /// (race-free, one syscall), or, on kernels without it, an open by path
    /// and a check of the real path afterwards.
    fn open(&mut self, rel: &Path) -> Result<File, Response> {
        if self.beneath {
            match crate::sys::open_beneath(&self.dir, rel) {
                Ok(f) => return Ok(f),
                Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                    warn!("openat2 is not available; checking real paths instead");
                    self.beneath = false;
                }
                Err(e) => return Err(open_error(rel, &e)),
            }
        }
        let full = self.root.join(rel);
        let file = File::open(&full).map_err(|e| open_error(rel, &e))?;
        match std::fs::canonicalize(&full) {
            Ok(real) if real.starts_with(&self.root) => Ok(file),
            Ok(_) => Err(open_error(rel, &io::Error::from_raw_os_error(libc::EXDEV))),
            Err(e) => Err(open_error(rel, &e)),
        }
    }
}

impl Handler for StaticFiles {
    fn handle(&mut self, req: &Request<'_>) -> Response {
        if req.method() != "GET" && req.method() != "HEAD" {
            return Response::error(ErrorCode::MethodNotAllowed, "only GET and HEAD")
                .with_header(header::ALLOW, "GET, HEAD");
        }
        self.serve(req).unwrap_or_else(|r| r)
    }
}

/// Missing (or outside the root, or a symlink loop): 404. Unreadable: 403.
/// Anything else is a server problem: 500, never 404.
fn open_error(rel: &Path, e: &io::Error) -> Response {
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG) => {
            Response::error(ErrorCode::NotFound, "no such file")
        }
        Some(libc::EXDEV | libc::ELOOP) => {
            debug!("refusing /{}: it resolves outside the root", rel.display());
            Response::error(ErrorCode::NotFound, "no such file")
        }
        Some(libc::EACCES | libc::EPERM) => Response::error(ErrorCode::Forbidden, "not readable"),
        _ => internal(rel, e),
    }
}

fn internal(rel: &Path, e: &io::Error) -> Response {
    error!("cannot serve /{}: {e}", rel.display());
    Response::error(ErrorCode::Internal, "cannot read the file")
}

/// Percent-decodes a path and turns it into a relative path of plain
/// segments, or `None` if any segment is unsafe (`..`, `.`, a dotfile, a
/// NUL, a backslash, an encoded slash) or the bytes are not UTF-8.
fn decode_path(path: &str) -> Option<PathBuf> {
    let mut rel = PathBuf::new();
    for raw in path.split('/').filter(|s| !s.is_empty()) {
        let seg = percent_decode(raw)?;
        if seg.starts_with('.') || seg.contains(['/', '\\', '\0']) {
            return None;
        }
        rel.push(seg);
    }
    Some(rel)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The media type for a file name's extension.
fn mime_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "md" => "text/markdown; charset=utf-8",
        "xml" => "application/xml",
        "csv" => "text/csv; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "wav" => "audio/wav",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "tar" => "application/x-tar",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_is_refused() {
        for bad in [
            "/../etc/passwd",
            "/a/../../b",
            "/%2e%2e/x",
            "/a%2fb",
            "/a%5cb",
            "/.git/config",
            "/a%00b",
            "/%ff",
            "/%2",
            "/./a",
        ] {
            assert_eq!(decode_path(bad), None, "{bad}");
        }
        assert_eq!(
            decode_path("/a/b%20c.txt"),
            Some(PathBuf::from("a/b c.txt"))
        );
        assert_eq!(decode_path("/"), Some(PathBuf::new()));
    }

    #[test]
    fn types_by_extension() {
        assert_eq!(mime_type(Path::new("a/B.HTML")), "text/html; charset=utf-8");
        assert_eq!(mime_type(Path::new("x.woff2")), "font/woff2");
        assert_eq!(mime_type(Path::new("noext")), "application/octet-stream");
    }
}
