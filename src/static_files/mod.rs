//! [`StaticFiles`]: a [`Handler`] that serves a directory, configured by
//! [`StaticOptions`].
//!
//! The parts, in the order a request meets them: `path` (decoding, dot
//! segments, refusals), the open beneath the root (`crate::sys`), `mime`,
//! `encoding` (precompressed siblings), `conditional` (validators and
//! preconditions, with `date` parsing HTTP dates), `range` (byte ranges and
//! multipart bodies), `listing` (directory pages).

mod cache;
mod conditional;
mod date;
mod encoding;
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz; // issue 12: the policy's pure surfaces for tests/fuzz/
mod listing;
mod mime;
mod path;
mod range;

use std::fs::{File, Metadata};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use log::{debug, error, warn};

use crate::{header, Body, ErrorCode, Handler, HeaderText, Request, Response};

use cache::Content;
use conditional::{Identity, Outcome, Validators};
use encoding::Coding;
use mime::MimeTable;
use path::Refused;
use range::{ByteRange, Multipart, Ranges};

/// How a [`StaticFiles`] handler serves its directory. Build it from
/// [`StaticOptions::default`] and set the fields you need:
///
/// ```
/// let mut options = keelhttp::StaticOptions::default();
/// options.list = true;
/// options.mime.push(("log".into(), "text/plain".into()));
/// options.cache_control = Some("public, max-age=60".into());
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StaticOptions {
    /// File names tried, in order, for a directory requested with a
    /// trailing slash. Plain names only (no `/`). Default: `["index.html"]`.
    pub index: Vec<String>,
    /// Serve (and list) names starting with a dot. Default: `false`: any
    /// path segment starting with `.` is a 404.
    pub dotfiles: bool,
    /// List a directory that has none of the [`index`](Self::index) files,
    /// as an HTML page (directories first, then files, each sorted by name;
    /// sizes and modification dates; at most 10 000 entries). Default:
    /// `false`: such a directory is a 404.
    pub list: bool,
    /// Extra media types, `(extension, type)`, adding to or overriding the
    /// built-in table; the extension is matched case-insensitively, with or
    /// without a leading dot. A `text/*` type without parameters gets
    /// `; charset=utf-8`. Default: empty.
    pub mime: Vec<(String, String)>,
    /// A `Cache-Control` value sent with files (200, 206 and 304).
    /// Default: `None` (no header).
    pub cache_control: Option<String>,
    /// Serve `F.br` or `F.gz` in place of `F` when the client's
    /// `Accept-Encoding` takes that coding and the sibling is a regular
    /// file beside `F`, with `Content-Encoding`, `F`'s type and validators
    /// of its own; ranges then count the encoded bytes. Files then always
    /// carry `Vary: Accept-Encoding`. Without `Accept-Encoding`, only `F`
    /// is served. Default: `false`.
    pub precompressed: bool,
    /// The most ranges one `Range` header may ask for; more, and the whole
    /// file is sent (200). `0` turns ranges off (`Accept-Ranges: none`).
    /// Default: 16.
    pub max_ranges: usize,
    /// The largest `multipart/byteranges` body (the parts are read into
    /// memory); a multi-range request past it gets the whole file (200).
    /// Default: 1 MiB.
    pub max_multipart_bytes: u64,
    /// The open-file cache: at most this many bytes of small files held in
    /// memory. `0` turns the cache off (every request opens its file).
    /// Default: 8 MiB. See [`StaticFiles`] for what is cached and how it
    /// stays fresh.
    pub cache_bytes: u64,
    /// The most files the cache holds. Default: 1024.
    pub cache_entries: usize,
    /// The most open descriptors the cache holds (one per cached file larger
    /// than [`cache_small_file`](Self::cache_small_file)); they are closed
    /// first when the process runs out of descriptors. Default: 64.
    pub cache_fds: usize,
    /// Files up to this size are cached as bytes and leave with their head
    /// in one write; larger ones as an open descriptor, sent with
    /// `sendfile(2)`. Default: 16 KiB.
    pub cache_small_file: u64,
}

impl Default for StaticOptions {
    fn default() -> StaticOptions {
        StaticOptions {
            index: vec!["index.html".to_owned()],
            dotfiles: false,
            list: false,
            mime: Vec::new(),
            cache_control: None,
            precompressed: false,
            max_ranges: 16,
            max_multipart_bytes: 1 << 20,
            cache_bytes: 8 << 20,
            cache_entries: 1024,
            cache_fds: 64,
            cache_small_file: 16 << 10,
        }
    }
}

/// Serves the files below a root directory: GET and HEAD, byte ranges,
/// conditional requests, index files, optional listings and precompressed
/// siblings, bodies sent with `sendfile(2)`.
///
/// Paths are percent-decoded to raw bytes, dot segments are resolved, and
/// anything that would leave the root is refused: a `..` above the root,
/// NUL or malformed encoding is a 400; an encoded slash, a backslash or a
/// hidden dotfile is a 404. Files are opened with `openat2(RESOLVE_BENEATH)`
/// on the root's descriptor, so a symlink is followed only while it stays
/// inside the root (race-free); everything after the open uses the opened
/// descriptor, so a file renamed over meanwhile does not change what is
/// sent. Missing: 404; unreadable: 403; any other failure: 500 (never 404).
///
/// **The open-file cache.** A request path served before is answered from
/// memory: the file's validators and headers, prepared once, and its bytes
/// (files up to 16 KiB) or its open descriptor, with no `open`, `fstat` or
/// `close` per request. Freshness costs no syscall per request either: the
/// directories on a cached file's path are watched with inotify, polled by
/// the server's loop, and any change to the file or a directory on its path
/// (a write, a truncate, a chmod, a rename over it, a delete, a symlink put
/// in its place) drops the entry before the next request is read. Only
/// paths without any symlink are cached, so the cache never answers a path
/// that `openat2(RESOLVE_BENEATH)` would refuse. If inotify is unavailable
/// or out of watches, such entries are instead reopened and compared at most
/// once a second (logged once at `info`). Range requests and
/// [`precompressed`](StaticOptions::precompressed) serving bypass it.
/// Bounds: [`cache_bytes`](StaticOptions::cache_bytes),
/// [`cache_entries`](StaticOptions::cache_entries),
/// [`cache_fds`](StaticOptions::cache_fds), least recently used first out.
///
/// Files carry a strong `ETag` (inode, size, modification time to the
/// nanosecond), `Last-Modified` and `Accept-Ranges: bytes`. Preconditions
/// follow RFC 9110 §13.2.2: `If-Match`, else `If-Unmodified-Since` (412);
/// then `If-None-Match`, else `If-Modified-Since` (304); then `Range` with
/// `If-Range` (206, or 416 with `Content-Range: bytes */LEN`). `Range` is
/// honoured on GET only (RFC 9110 §14.2); a HEAD gets the 200 headers.
///
/// ```no_run
/// let mut options = keelhttp::StaticOptions::default();
/// options.list = true;
/// let handler = keelhttp::StaticFiles::with_options("./public", options)?;
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
    options: StaticOptions,
    mime: MimeTable,
    /// Counts multipart responses, to vary their boundaries.
    multipart_seq: u64,
    /// The open-file cache; `None` when turned off.
    cache: Option<cache::Cache>,
}

impl StaticFiles {
    /// Serves `root`, which must be a readable directory, with the default
    /// [`StaticOptions`].
    ///
    /// # Errors
    /// `root` does not exist or is not a directory.
    pub fn new(root: impl AsRef<Path>) -> io::Result<StaticFiles> {
        StaticFiles::with_options(root, StaticOptions::default())
    }

    /// Serves `root`, which must be a readable directory, as `options` say.
    ///
    /// # Errors
    /// `root` does not exist or is not a directory (`NotFound`, ...); an
    /// index name is empty, `.`, `..` or contains `/`, a `mime` pair is not
    /// `extension` and `type/subtype`, or `cache_control` has a control
    /// character (`InvalidInput`).
    pub fn with_options(root: impl AsRef<Path>, options: StaticOptions) -> io::Result<StaticFiles> {
        for name in &options.index {
            if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
                return Err(invalid(format!("invalid index file name {name:?}")));
            }
        }
        if let Some(cc) = &options.cache_control {
            if !cc.bytes().all(|b| b == b'\t' || (b' '..0x7f).contains(&b)) {
                return Err(invalid(format!("invalid Cache-Control value {cc:?}")));
            }
        }
        let mime = MimeTable::new(&options.mime)?;
        let root = std::fs::canonicalize(root.as_ref())?;
        if !root.is_dir() {
            return Err(invalid(format!("{} is not a directory", root.display())));
        }
        let dir = File::open(&root)?;
        let cache = (options.cache_bytes > 0
            && options.cache_entries > 0
            && !options.precompressed)
            .then(|| {
                cache::Cache::new(cache::Limits {
                    bytes: options.cache_bytes,
                    entries: options.cache_entries,
                    fds: options.cache_fds,
                    small: options.cache_small_file,
                })
            });
        Ok(StaticFiles {
            root,
            dir,
            beneath: true,
            options,
            mime,
            multipart_seq: 0,
            cache,
        })
    }

    /// The canonical root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The options this handler serves with.
    pub fn options(&self) -> &StaticOptions {
        &self.options
    }

    /// What the open-file cache holds now: `(files, bytes, descriptors)`;
    /// zeros when it is off.
    pub fn cache_usage(&self) -> (usize, u64, usize) {
        self.cache.as_ref().map_or((0, 0, 0), cache::Cache::usage)
    }

    /// Whether the cache learns of changes from inotify alone (`true`), or
    /// some entries are revalidated every second because inotify is missing
    /// or out of watches (`false`). `true` when the cache is off.
    pub fn cache_watched(&self) -> bool {
        self.cache.as_ref().is_none_or(cache::Cache::watched)
    }

    /// A GET or HEAD answered from the cache, if the path is cached and the
    /// request asks nothing the cache leaves to the full path (a range).
    fn cached(&mut self, req: &Request<'_>) -> Option<Response> {
        let cache = self.cache.as_mut()?;
        if self.options.max_ranges > 0
            && req.method() == "GET"
            && req.header_bytes(header::RANGE).is_some()
        {
            return None;
        }
        let entry = cache.get(req.path().as_bytes(), &self.dir)?;
        let v = entry.id.at(SystemTime::now());
        Some(match conditional::evaluate(req, &v) {
            Outcome::Proceed => {
                let body = match &entry.content {
                    Content::Bytes(b) => Body::Shared(b.clone()),
                    Content::Fd(f) => Body::SharedFile {
                        file: f.clone(),
                        offset: 0,
                        len: entry.len,
                    },
                };
                Response::new(200)
                    .with_headers(entry.head.clone())
                    .with_body(body)
            }
            Outcome::NotModified => Response::new(304).with_headers(entry.head_304.clone()),
            Outcome::Failed => {
                Response::error(ErrorCode::PreconditionFailed, "a precondition failed")
            }
        })
    }

    fn serve(&mut self, req: &Request<'_>) -> Response {
        let resolved = match path::resolve(req.path(), self.options.dotfiles) {
            Ok(r) => r,
            Err(Refused::Bad(why)) => {
                debug!("refusing {:?}: {why}", req.target());
                return Response::error(ErrorCode::BadRequest, why);
            }
            Err(Refused::NotFound(why)) => {
                debug!("refusing {:?}: {why}", req.target());
                return not_found();
            }
        };
        let rel = resolved.rel;
        let (file, meta) = match self.open(&rel) {
            Ok(f) => f,
            Err(e) => return open_error(&rel, &e),
        };
        if meta.is_dir() {
            if !resolved.slash {
                let mut location = path::dir_url(&rel);
                if let Some(q) = req.query() {
                    location.push('?');
                    location.push_str(q);
                }
                return Response::text(301, "moved\n").with_header(header::LOCATION, location);
            }
            return self.serve_dir(req, &rel, &file);
        }
        if !meta.is_file() || resolved.slash {
            return not_found();
        }
        self.serve_file(req, &rel, file, meta, CacheAs::Path)
    }

    /// A directory with a trailing slash: its first index file, else its
    /// listing if allowed, else 404.
    fn serve_dir(&mut self, req: &Request<'_>, rel: &Path, dir: &File) -> Response {
        // An index file is cached only if every name before it is absent:
        // one that is there but skipped (not a file, a dangling symlink)
        // could start to resolve without any change in this directory.
        let mut cacheable = true;
        for i in 0..self.options.index.len() {
            let index = rel.join(&self.options.index[i]);
            match self.open(&index) {
                Ok((file, meta)) if meta.is_file() => {
                    let how = if cacheable {
                        CacheAs::Index
                    } else {
                        CacheAs::No
                    };
                    return self.serve_file(req, &index, file, meta, how);
                }
                Ok(_) => cacheable = false,
                Err(e) if is_missing(&e) => {
                    cacheable = cacheable
                        && self.cache.is_some()
                        && matches!(std::fs::symlink_metadata(self.root.join(&index)),
                            Err(e) if e.kind() == io::ErrorKind::NotFound);
                }
                Err(e) => return open_error(&index, &e),
            }
        }
        if !self.options.list {
            return not_found();
        }
        let full = self.root.join(rel);
        let list = listing::ListDir {
            dir,
            path: &full,
            root: &self.root,
            rel,
            dotfiles: self.options.dotfiles,
        };
        match listing::render(&list) {
            Ok(page) => Response::html(200, page),
            Err(e) => open_error(rel, &e),
        }
    }

    /// A regular file: validators, preconditions, ranges. `rel` names the
    /// file asked for (its extension gives the type); `file` and `meta` are
    /// the opened file and its `fstat`.
    fn serve_file(
        &mut self,
        req: &Request<'_>,
        rel: &Path,
        file: File,
        meta: Metadata,
        how: CacheAs,
    ) -> Response {
        let content_type = self.mime.lookup(rel);
        // A range request is served from the file; the next plain one fills.
        let ranged = self.options.max_ranges > 0 && req.header_bytes(header::RANGE).is_some();
        if let (Some(cache), false, false) = (&mut self.cache, how == CacheAs::No, ranged) {
            let fill = cache::Fill {
                key: req.path().as_bytes(),
                rel,
                via_index: how == CacheAs::Index,
                content_type: content_type.clone(),
                accept_ranges: if self.options.max_ranges > 0 {
                    "bytes"
                } else {
                    "none"
                },
                cache_control: self.options.cache_control.as_deref(),
            };
            if cache.fill(&fill, &self.dir, &self.root).is_some() {
                if let Some(r) = self.cached(req) {
                    return r;
                }
            }
        }
        let (file, meta, coding) = match self.precompressed(req, rel) {
            Some((f, m, c)) => (f, m, Some(c)),
            None => (file, meta, None),
        };
        let id = Identity::of(&meta);
        let v = id.at(SystemTime::now());
        match conditional::evaluate(req, &v) {
            Outcome::Proceed => {}
            Outcome::NotModified => return self.with_validators(Response::new(304), &v),
            Outcome::Failed => {
                return Response::error(ErrorCode::PreconditionFailed, "a precondition failed")
            }
        }
        let len = meta.len();
        let ranges = match req.header_bytes(header::RANGE) {
            Some(value) if self.options.max_ranges > 0 && req.method() == "GET" => {
                match range::parse(value, len, self.options.max_ranges) {
                    // If-Range false: the whole file (RFC 9110 §13.1.5).
                    r if r != Ranges::Ignore && !conditional::if_range(req, &v) => Ranges::Ignore,
                    r => r,
                }
            }
            _ => Ranges::Ignore,
        };
        let mut resp = match ranges {
            Ranges::Unsatisfiable => {
                debug!("/{}: range not satisfiable", rel.display());
                Response::error(ErrorCode::RangeNotSatisfiable, "no range overlaps the file")
                    .with_header(header::CONTENT_RANGE, format!("bytes */{len}"))
            }
            Ranges::Satisfiable(parts) if parts.len() == 1 => Response::new(206)
                .with_header(header::CONTENT_TYPE, content_type)
                .with_header(header::CONTENT_RANGE, parts[0].content_range(len))
                .with_body(Body::File {
                    file,
                    offset: parts[0].first,
                    len: parts[0].len(),
                }),
            Ranges::Satisfiable(parts) => {
                match self.multipart(rel, &file, &meta, &parts, &content_type) {
                    Ok(Some(r)) => r,
                    Ok(None) => whole(file, len, content_type),
                    Err(e) => return internal(rel, &e),
                }
            }
            Ranges::Ignore => whole(file, len, content_type),
        };
        if let (Some(c), 200 | 206) = (coding, resp.status()) {
            resp.add_header(header::CONTENT_ENCODING, c.name());
        }
        let accept = if self.options.max_ranges > 0 {
            "bytes"
        } else {
            "none"
        };
        resp.add_header(header::ACCEPT_RANGES, accept);
        self.with_validators(resp, &v)
    }

    /// The 206 `multipart/byteranges` response for several ranges, or `None`
    /// to send the whole file (the body would be over the cap).
    fn multipart(
        &mut self,
        rel: &Path,
        file: &File,
        meta: &Metadata,
        parts: &[ByteRange],
        content_type: &str,
    ) -> io::Result<Option<Response>> {
        // A boundary that the parts do not contain (RFC 2046 §5.1.1): a few
        // tries, then the whole file.
        for _ in 0..4 {
            self.multipart_seq = self.multipart_seq.wrapping_add(1);
            let boundary = boundary(meta, self.multipart_seq);
            let cap = self.options.max_multipart_bytes;
            match range::multipart(file, parts, meta.len(), content_type, &boundary, cap)? {
                Multipart::Body(body) => {
                    let r = Response::new(206)
                        .with_header(
                            header::CONTENT_TYPE,
                            format!("multipart/byteranges; boundary={boundary}"),
                        )
                        .with_body(body);
                    return Ok(Some(r));
                }
                Multipart::BoundaryInData => continue,
                Multipart::OverCap => {
                    debug!(
                        "/{}: multipart body over the cap: sending it whole",
                        rel.display()
                    );
                    return Ok(None);
                }
            }
        }
        Ok(None)
    }

    /// `ETag`, `Last-Modified`, `Cache-Control` and `Vary`: what a 200, a 206
    /// and a 304 for the same file all carry.
    fn with_validators(&self, mut r: Response, v: &Validators<'_>) -> Response {
        r.add_header(header::ETAG, v.etag.to_owned());
        r.add_header(header::LAST_MODIFIED, v.last_modified());
        if let Some(cc) = &self.options.cache_control {
            r.add_header(header::CACHE_CONTROL, cc.clone());
        }
        if self.options.precompressed {
            r.add_header(header::VARY, header::ACCEPT_ENCODING);
        }
        r
    }

    /// The precompressed sibling of `rel` the client takes, if the option
    /// is on and one exists as a regular file (beneath the root, like any
    /// file).
    fn precompressed(&mut self, req: &Request<'_>, rel: &Path) -> Option<(File, Metadata, Coding)> {
        if !self.options.precompressed {
            return None;
        }
        let accepted = encoding::preferred(req.header_bytes(header::ACCEPT_ENCODING)?);
        for coding in accepted.into_iter().flatten() {
            let mut name = rel.as_os_str().to_owned();
            name.push(coding.suffix());
            match self.open(Path::new(&name)) {
                Ok((f, m)) if m.is_file() => return Some((f, m, coding)),
                Ok(_) => {}
                Err(e) if is_missing(&e) => {}
                Err(e) => debug!("not serving {}: {e}", Path::new(&name).display()),
            }
        }
        None
    }

    /// Opens `rel` for reading and `fstat`s the descriptor, following
    /// symlinks only while they stay inside the root:
    /// `openat2(RESOLVE_BENEATH)` on the root's descriptor (race-free, one
    /// syscall), or, on kernels without it, an open by path and a check of
    /// the real path afterwards. An escape is `EXDEV` (or `ELOOP`).
    fn open(&mut self, rel: &Path) -> io::Result<(File, Metadata)> {
        let file = match self.open_file(rel) {
            // Out of descriptors: the cache's go back first, then try again.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                match &mut self.cache {
                    Some(c) if c.usage().2 > 0 => {
                        c.release_fds();
                        self.open_file(rel)?
                    }
                    _ => return Err(e),
                }
            }
            r => r?,
        };
        let meta = file.metadata()?;
        Ok((file, meta))
    }

    fn open_file(&mut self, rel: &Path) -> io::Result<File> {
        if self.beneath {
            match crate::sys::open_beneath(&self.dir, rel) {
                Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                    warn!("openat2 is not available; checking real paths instead");
                    self.beneath = false;
                }
                r => return r,
            }
        }
        let full = self.root.join(rel);
        // O_NONBLOCK: opening a FIFO must not wait for a writer.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&full)?;
        let real = std::fs::canonicalize(&full)?;
        // The file opened must be the one checked: same inode and device.
        let (a, b) = (file.metadata()?, std::fs::metadata(&real)?);
        if !real.starts_with(&self.root) || a.ino() != b.ino() || a.dev() != b.dev() {
            return Err(io::Error::from_raw_os_error(libc::EXDEV));
        }
        Ok(file)
    }
}

impl Handler for StaticFiles {
    fn handle(&mut self, req: &Request<'_>) -> Response {
        if req.method() != "GET" && req.method() != "HEAD" {
            return Response::error(ErrorCode::MethodNotAllowed, "only GET and HEAD")
                .with_header(header::ALLOW, "GET, HEAD");
        }
        if let Some(r) = self.cached(req) {
            return r;
        }
        self.serve(req)
    }

    /// The cache's inotify instance: the loop reads its events before the
    /// requests that follow them.
    fn watch_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.cache.as_ref()?.watch_fd()?.as_fd())
    }

    fn on_ready(&mut self) {
        if let Some(c) = &mut self.cache {
            c.on_events();
        }
    }

    fn polled(&mut self) {
        if let Some(c) = &mut self.cache {
            c.polled();
        }
    }

    fn release_fds(&mut self) {
        if let Some(c) = &mut self.cache {
            c.release_fds();
        }
    }
}

/// Whether (and how) a file served may be cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CacheAs {
    /// As the file its path names.
    Path,
    /// As a directory's index file: any change in the directory counts.
    Index,
    /// Not at all.
    No,
}

/// A boundary unlikely to occur in any file: `keel-` and 16 hex digits mixed
/// from the file's identity and a counter (splitmix64).
fn boundary(meta: &Metadata, seq: u64) -> String {
    let mut x = meta
        .ino()
        .rotate_left(17)
        .wrapping_add(meta.len())
        .wrapping_add((meta.mtime_nsec() as u64).rotate_left(40))
        .wrapping_add(seq.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    format!("keel-{x:016x}")
}

/// A 200 with the whole file.
fn whole(file: File, len: u64, content_type: HeaderText) -> Response {
    Response::new(200)
        .with_header(header::CONTENT_TYPE, content_type)
        .with_body(Body::File {
            file,
            offset: 0,
            len,
        })
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn not_found() -> Response {
    Response::error(ErrorCode::NotFound, "no such file")
}

/// Absent, as far as an index or a sibling goes: missing, or outside the root.
fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG | libc::EXDEV | libc::ELOOP)
    )
}

/// Missing (or outside the root, or a symlink loop): 404. Unreadable: 403.
/// Anything else is a server problem: 500, never 404.
fn open_error(rel: &Path, e: &io::Error) -> Response {
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG) => not_found(),
        Some(libc::EXDEV | libc::ELOOP) => {
            debug!("refusing /{}: it resolves outside the root", rel.display());
            not_found()
        }
        Some(libc::EACCES | libc::EPERM) => Response::error(ErrorCode::Forbidden, "not readable"),
        _ => internal(rel, e),
    }
}

fn internal(rel: &Path, e: &io::Error) -> Response {
    error!("cannot serve /{}: {e}", rel.display());
    Response::error(ErrorCode::Internal, "cannot read the file")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn both_open_paths_refuse_escapes_and_the_fallback_never_blocks_on_a_fifo() {
        let base = std::env::temp_dir().join(format!("keel-open-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("root/a")).unwrap();
        std::fs::write(base.join("secret"), b"s").unwrap();
        std::fs::write(base.join("root/a/f"), b"f").unwrap();
        symlink("../secret", base.join("root/out")).unwrap();
        symlink(base.join("secret"), base.join("root/out-abs")).unwrap();
        symlink("a/f", base.join("root/in")).unwrap();
        for beneath in [true, false] {
            let mut sf = StaticFiles::new(base.join("root")).unwrap();
            sf.beneath = beneath;
            let errno =
                |sf: &mut StaticFiles, p: &str| sf.open(Path::new(p)).unwrap_err().raw_os_error();
            assert!(sf.open(Path::new("in")).is_ok_and(|(_, m)| m.len() == 1));
            assert!(sf.open(Path::new("a/f")).is_ok());
            assert!(sf.open(Path::new("")).is_ok_and(|(_, m)| m.is_dir()));
            assert_eq!(
                errno(&mut sf, "out"),
                Some(libc::EXDEV),
                "beneath: {beneath}"
            );
            let abs = errno(&mut sf, "out-abs");
            assert!(
                abs == Some(libc::EXDEV) || abs == Some(libc::ELOOP),
                "{abs:?}"
            );
            assert_eq!(errno(&mut sf, "missing"), Some(libc::ENOENT));
        }
        // A FIFO must not stall the fallback's open (O_NONBLOCK).
        let fifo = base.join("root/fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            let mut sf = StaticFiles::new(base.join("root")).unwrap();
            sf.beneath = false;
            assert!(sf.open(Path::new("fifo")).is_ok_and(|(_, m)| !m.is_file()));
        }
        let _ = std::fs::remove_dir_all(&base);
    }
}
