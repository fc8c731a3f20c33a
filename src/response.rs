//! [`Response`] and its [`Body`].

use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::io;
use std::sync::Arc;

use log::warn;

use crate::{header, ErrorCode};

/// A response body. A closed enum, so the engine can choose how to send it:
/// memory bodies go out with the head in one `sendmsg`, file ranges with
/// `sendfile(2)` after it.
pub enum Body {
    /// No body (`Content-Length: 0`).
    Empty,
    /// Bytes that live for the whole program, sent without a copy.
    Static(&'static [u8]),
    /// Owned bytes.
    Bytes(Vec<u8>),
    /// Bytes shared by reference count (a cache's copy of a small file, a
    /// precomputed answer): cloning the `Arc` costs no allocation.
    Shared(Arc<[u8]>),
    /// `len` bytes of an open file from `offset`, sent with `sendfile(2)`.
    /// If the file turns out shorter than promised, the connection is closed:
    /// the response cannot be completed honestly.
    File {
        /// The open file.
        file: File,
        /// Where the body starts in the file.
        offset: u64,
        /// How many bytes the body has.
        len: u64,
    },
    /// Like [`Body::File`], for a file descriptor shared with a cache: the
    /// descriptor stays open as long as any response or the cache holds it.
    SharedFile {
        /// The open file.
        file: Arc<File>,
        /// Where the body starts in the file.
        offset: u64,
        /// How many bytes the body has.
        len: u64,
    },
    /// Content the host supplies after the handler returns: a deferred
    /// answer ([`Response::deferred`]) or a body streamed in pieces
    /// ([`Response::stream`], [`Sse`](crate::Sse)). See [`crate::stream`].
    Later(crate::stream::Later),
}

impl Body {
    /// The body's length in bytes, as `Content-Length` announces it.
    pub fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Static(b) => b.len() as u64,
            Body::Bytes(b) => b.len() as u64,
            Body::Shared(b) => b.len() as u64,
            Body::File { len, .. } | Body::SharedFile { len, .. } => *len,
            Body::Later(l) => l.length().unwrap_or(0),
        }
    }

    /// Whether the body has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::Empty => f.write_str("Empty"),
            Body::Static(b) => write!(f, "Static({} bytes)", b.len()),
            Body::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            Body::Shared(b) => write!(f, "Shared({} bytes)", b.len()),
            Body::File { offset, len, .. } | Body::SharedFile { offset, len, .. } => {
                write!(f, "File({len} bytes at {offset})")
            }
            Body::Later(l) => fmt::Debug::fmt(l, f),
        }
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Body {
        Body::Static(s.as_bytes())
    }
}

impl From<&'static [u8]> for Body {
    fn from(b: &'static [u8]) -> Body {
        Body::Static(b)
    }
}

impl From<String> for Body {
    fn from(s: String) -> Body {
        Body::Bytes(s.into_bytes())
    }
}

impl From<Vec<u8>> for Body {
    fn from(b: Vec<u8>) -> Body {
        Body::Bytes(b)
    }
}

/// A header name or value: borrowed for the `'static` constants of
/// [`header`](crate::header), owned for computed values.
pub type HeaderText = Cow<'static, str>;

/// Headers checked and formatted once, then shared by reference count: a
/// handler that sends the same headers again and again (a file cache, a
/// fixed endpoint) attaches them to each [`Response`] without allocating.
///
/// Names the server owns (`Content-Length`, `Transfer-Encoding`,
/// `Connection`, `Date`, `Server`) and anything that could split the
/// response are dropped when the block is made (and logged), exactly as
/// [`Response::add_header`] headers are dropped when they are sent.
///
/// ```
/// use keelhttp::{header, HeaderBlock, Response};
/// let block = HeaderBlock::new([(header::CONTENT_TYPE, "text/css"), (header::ETAG, "\"v1\"")]);
/// let r = Response::new(200).with_headers(block.clone()).with_body("p{}");
/// assert_eq!(r.header(header::ETAG), Some("\"v1\""));
/// ```
#[derive(Clone)]
pub struct HeaderBlock {
    /// `Name: value\r\n` lines, each checked.
    text: Arc<str>,
}

impl HeaderBlock {
    /// Checks and formats `headers` once.
    pub fn new<'h>(headers: impl IntoIterator<Item = (&'h str, &'h str)>) -> HeaderBlock {
        let mut text = String::new();
        for (name, value) in headers {
            if crate::encode::server_owns(name) {
                warn!("dropping header {name:?} from a header block: the server writes it");
            } else if !crate::encode::header_is_safe(name, value) {
                warn!("dropping header {name:?} from a header block: it could split the response");
            } else {
                text.push_str(name);
                text.push_str(": ");
                text.push_str(value);
                text.push_str("\r\n");
            }
        }
        HeaderBlock { text: text.into() }
    }

    /// The formatted lines, as they go on the wire.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.text.as_bytes()
    }

    /// The headers, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.text
            .split_terminator("\r\n")
            .filter_map(|l| l.split_once(": "))
    }
}

impl fmt::Debug for HeaderBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// A response: status, headers and a [`Body`].
///
/// The server owns the framing: it writes `Content-Length`, `Date`, `Server`
/// and `Connection` itself and drops those (and `Transfer-Encoding`) if a
/// handler sets them, except that `Connection: close` from a handler is
/// honoured. Header names or values that could split the response (CR, LF,
/// NUL, a name that is not a token) are dropped and logged.
///
/// ```
/// use keelhttp::{header, Response};
/// let r = Response::text(200, "hello\n").with_header(header::CACHE_CONTROL, "no-store");
/// assert_eq!(r.status(), 200);
/// assert_eq!(r.header(header::CONTENT_TYPE), Some("text/plain; charset=utf-8"));
/// ```
#[derive(Debug)]
pub struct Response {
    status: u16,
    /// `Content-Type`, kept apart so the common response (one type, a body)
    /// allocates no header list.
    content_type: Option<HeaderText>,
    headers: Vec<(HeaderText, HeaderText)>,
    /// Prebuilt headers, sent after `content_type` and `headers`.
    block: Option<HeaderBlock>,
    body: Body,
    /// Set by [`Response::error`]: the engine renders the body as JSON
    /// instead when the request accepts JSON.
    error: Option<(ErrorCode, String)>,
}

impl Response {
    /// A response with an empty body. A status outside 200..=999 is sent as
    /// 500: interim 1xx responses (`100 Continue`) are the server's own.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            content_type: None,
            headers: Vec::new(),
            block: None,
            body: Body::Empty,
            error: None,
        }
    }

    /// A `text/plain; charset=utf-8` response.
    pub fn text(status: u16, body: impl Into<Body>) -> Response {
        Response::new(status)
            .with_header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .with_body(body)
    }

    /// An error response carrying a stable [`ErrorCode`]: its status, and a
    /// `text/plain` body `"<code>: <detail>\n"`, or, when the request's
    /// `Accept` asks for JSON, `{"error":{"code":"<code>","message":"<detail>"}}`
    /// (the server chooses when it sends the response). A 503 also says
    /// `Retry-After: 1`, so a load balancer moves on and comes back.
    pub fn error(code: ErrorCode, detail: &str) -> Response {
        let mut r = Response::text(code.status(), format!("{}: {detail}\n", code.as_str()));
        if code.status() == 503 {
            r.add_header(header::RETRY_AFTER, "1");
        }
        r.error = Some((code, detail.to_owned()));
        r
    }

    /// The [`ErrorCode`] if this response was made by [`Response::error`].
    pub fn error_code(&self) -> Option<ErrorCode> {
        self.error.as_ref().map(|(c, _)| *c)
    }

    /// Re-renders an error response's body as JSON.
    pub(crate) fn render_error_as_json(&mut self) {
        let Some((code, detail)) = &self.error else {
            return;
        };
        let mut body = String::with_capacity(48 + detail.len());
        body.push_str("{\"error\":{\"code\":\"");
        body.push_str(code.as_str());
        body.push_str("\",\"message\":");
        push_json_string(&mut body, detail);
        body.push_str("}}\n");
        self.body = Body::Bytes(body.into_bytes());
        self.content_type = Some(HeaderText::Borrowed("application/json"));
    }

    /// A `text/html; charset=utf-8` response.
    pub fn html(status: u16, body: impl Into<Body>) -> Response {
        Response::new(status)
            .with_header(header::CONTENT_TYPE, "text/html; charset=utf-8")
            .with_body(body)
    }

    /// A response whose body is the whole of an open file, sent with
    /// `sendfile(2)`.
    ///
    /// # Errors
    /// The file's metadata cannot be read.
    pub fn file(status: u16, file: File) -> io::Result<Response> {
        let len = file.metadata()?.len();
        Ok(Response::new(status).with_body(Body::File {
            file,
            offset: 0,
            len,
        }))
    }

    /// Replaces the body.
    pub fn with_body(mut self, body: impl Into<Body>) -> Response {
        self.body = body.into();
        self
    }

    /// Adds a header. Use the [`header`](crate::header) constants for names.
    pub fn with_header(
        mut self,
        name: impl Into<HeaderText>,
        value: impl Into<HeaderText>,
    ) -> Response {
        self.add_header(name, value);
        self
    }

    /// Attaches a [`HeaderBlock`] (replacing any earlier one): its headers
    /// are sent after those added one by one.
    pub fn with_headers(mut self, block: HeaderBlock) -> Response {
        self.block = Some(block);
        self
    }

    /// Adds a header in place.
    /// A `Content-Type` replaces any earlier one; other names may repeat.
    pub fn add_header(&mut self, name: impl Into<HeaderText>, value: impl Into<HeaderText>) {
        let name = name.into();
        if name.eq_ignore_ascii_case(header::CONTENT_TYPE) {
            self.content_type = Some(value.into());
        } else {
            self.headers.push((name, value.into()));
        }
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// All headers: `Content-Type` first, then the others in the order they
    /// were added, then a [`HeaderBlock`]'s.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        let ct = self
            .content_type
            .as_deref()
            .map(|v| (header::CONTENT_TYPE, v));
        ct.into_iter()
            .chain(self.headers.iter().map(|(n, v)| (&**n, &**v)))
            .chain(self.block.iter().flat_map(HeaderBlock::iter))
    }

    /// The body.
    pub fn body(&self) -> &Body {
        &self.body
    }

    /// Status, then the head's headers (`Content-Type` first), then the body.
    pub(crate) fn into_parts(self) -> (u16, HeaderList, Body) {
        (
            self.status,
            HeaderList {
                content_type: self.content_type,
                block: self.block,
                rest: self.headers,
            },
            self.body,
        )
    }
}

/// A response's headers as the engine writes them.
#[derive(Debug)]
pub(crate) struct HeaderList {
    content_type: Option<HeaderText>,
    pub(crate) block: Option<HeaderBlock>,
    rest: Vec<(HeaderText, HeaderText)>,
}

impl HeaderList {
    /// `Content-Type` and the headers added one by one (not the block,
    /// which is already checked and formatted).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let ct = self
            .content_type
            .as_deref()
            .map(|v| (header::CONTENT_TYPE, v));
        ct.into_iter()
            .chain(self.rest.iter().map(|(n, v)| (&**n, &**v)))
    }
}

/// Appends `s` as a JSON string literal, quotes included.
pub(crate) fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl From<Body> for Response {
    fn from(body: Body) -> Response {
        Response::new(200).with_body(body)
    }
}
