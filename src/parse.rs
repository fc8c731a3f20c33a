//! Request heads and body framing: bytes in, decisions out. Pure: it never
//! touches a socket, and every input it scans is bounded by the caller.

use crate::config::Config;
use crate::error::ErrorCode;
use crate::header;
use crate::request::Version;

/// Why a request is refused; becomes an error response and a close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reject {
    pub(crate) code: ErrorCode,
    pub(crate) detail: &'static str,
}

const fn reject(code: ErrorCode, detail: &'static str) -> Reject {
    Reject { code, detail }
}

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// A parsed, validated request head, borrowing the buffer.
#[derive(Debug)]
pub(crate) struct Head<'b, 'h> {
    pub(crate) method: &'b str,
    pub(crate) target: &'b str,
    /// The authority of an absolute-form target (`http://AUTHORITY/path`):
    /// it wins over `Host` (RFC 9112 §3.2.2).
    #[allow(dead_code)] // read by the fuzzing surface and the tests
    pub(crate) authority: Option<&'b str>,
    pub(crate) version: Version,
    pub(crate) headers: &'h [httparse::Header<'b>],
    pub(crate) framing: Framing,
    pub(crate) keep_alive: bool,
    pub(crate) expect_continue: bool,
}

/// How many leading CR/LF bytes to skip: RFC 9112 §2.2 asks a server to ignore
/// at least one empty line before a request line (some clients send a CRLF
/// after a body).
pub(crate) fn leading_empty_lines(buf: &[u8]) -> usize {
    buf.iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count()
}

/// The length of the head if `buf` holds a complete one: up to and including
/// the empty line (`\r\n\r\n`, or a bare `\n\n`). `from` is where the previous
/// scan stopped, so a head arriving a byte at a time is scanned once.
pub(crate) fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from.saturating_sub(3);
    while i < buf.len() {
        let nl = i + buf[i..].iter().position(|&b| b == b'\n')?;
        match buf.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

/// For a head that is too large and still incomplete: 414 if the request line
/// itself is what overflows, else 431.
pub(crate) fn oversized_head(buf: &[u8], config: &Config) -> Reject {
    let line = &buf[..buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len())];
    // The target runs from the first space to the next one (or to the end of
    // what has arrived, if the request line itself is still incomplete).
    let target_len = match line.iter().position(|&b| b == b' ') {
        Some(sp) => line[sp + 1..]
            .iter()
            .position(|&b| b == b' ')
            .unwrap_or(line.len() - sp - 1),
        None => 0,
    };
    if target_len > config.max_target_bytes {
        reject(ErrorCode::UriTooLong, "request target too long")
    } else {
        reject(ErrorCode::HeaderTooLarge, "request head too large")
    }
}

/// Parses and validates one complete head (`buf` is exactly the head).
pub(crate) fn parse_head<'b, 'h>(
    buf: &'b [u8],
    storage: &'h mut [httparse::Header<'b>],
    config: &Config,
) -> Result<Head<'b, 'h>, Reject> {
    parse_head_limit(buf, storage, config, config.max_body_bytes)
}

/// [`parse_head`] with another limit for `Content-Length` (a route that
/// streams its request bodies has its own).
pub(crate) fn parse_head_limit<'b, 'h>(
    buf: &'b [u8],
    storage: &'h mut [httparse::Header<'b>],
    config: &Config,
    max_body: u64,
) -> Result<Head<'b, 'h>, Reject> {
    let version = check_request_line(buf, config)?;
    let mut req = httparse::Request::new(storage);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(reject(ErrorCode::BadRequest, "incomplete request head"))
        }
        Err(httparse::Error::Version) => {
            return Err(reject(
                ErrorCode::VersionNotSupported,
                "only HTTP/1.0 and HTTP/1.1 are supported",
            ))
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(reject(ErrorCode::HeaderTooLarge, "too many header fields"))
        }
        Err(httparse::Error::HeaderName) => {
            return Err(reject(ErrorCode::BadRequest, "malformed header field name"))
        }
        Err(_) => return Err(reject(ErrorCode::BadRequest, "malformed request head")),
    }
    let httparse::Request {
        method,
        path,
        version: parsed_version,
        headers,
    } = req;
    let (Some(method), Some(target), Some(_)) = (method, path, parsed_version) else {
        return Err(reject(ErrorCode::BadRequest, "malformed request line"));
    };
    let headers: &'h [httparse::Header<'b>] = headers;
    let authority = target_form(method, target)?;

    let mut hosts = 0usize;
    let mut content_length: Option<u64> = None;
    let mut te_seen = false;
    let mut te_chunked_last = false;
    let mut te_chunked_count = 0usize;
    let mut te_unknown = false;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut expect_continue = false;

    for h in headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case(header::HOST) {
            hosts += 1;
            // RFC 9112 §3.2: a Host that is not `uri-host [ ":" port ]` is
            // a 400, even when an absolute-form target overrides it.
            if !valid_host(h.value.trim_ascii()) {
                return Err(reject(ErrorCode::BadHost, "malformed Host header"));
            }
        } else if name.eq_ignore_ascii_case(header::CONTENT_LENGTH) {
            for item in list_items(h.value) {
                let n = parse_decimal(item).ok_or(reject(
                    ErrorCode::BadContentLength,
                    "Content-Length is not a number",
                ))?;
                if content_length.is_some_and(|prev| prev != n) {
                    return Err(reject(
                        ErrorCode::BadContentLength,
                        "differing Content-Length values",
                    ));
                }
                content_length = Some(n);
            }
            if content_length.is_none() {
                return Err(reject(ErrorCode::BadContentLength, "empty Content-Length"));
            }
        } else if name.eq_ignore_ascii_case(header::TRANSFER_ENCODING) {
            te_seen = true;
            for item in list_items(h.value) {
                if item.eq_ignore_ascii_case(b"chunked") {
                    te_chunked_count += 1;
                    te_chunked_last = true;
                } else {
                    te_unknown = true;
                    te_chunked_last = false;
                }
            }
        } else if name.eq_ignore_ascii_case(header::CONNECTION) {
            for item in list_items(h.value) {
                if item.eq_ignore_ascii_case(b"close") {
                    conn_close = true;
                } else if item.eq_ignore_ascii_case(b"keep-alive") {
                    conn_keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case(header::EXPECT) && version == Version::Http11 {
            // HTTP/1.0 clients' Expect is ignored (RFC 9110 §10.1.1).
            if h.value.eq_ignore_ascii_case(b"100-continue") {
                expect_continue = true;
            } else if !h.value.is_empty() {
                return Err(reject(
                    ErrorCode::ExpectationFailed,
                    "only 100-continue is supported",
                ));
            }
        }
    }

    if version == Version::Http11 && hosts != 1 {
        return Err(reject(
            ErrorCode::BadHost,
            if hosts == 0 {
                "missing Host header"
            } else {
                "more than one Host header"
            },
        ));
    }

    let framing = if te_seen {
        // RFC 9112 §6.1 and §6.3: each of these is request smuggling bait.
        if content_length.is_some() {
            return Err(reject(
                ErrorCode::BadRequest,
                "both Transfer-Encoding and Content-Length",
            ));
        }
        if version == Version::Http10 {
            return Err(reject(
                ErrorCode::BadRequest,
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        if !te_chunked_last || te_chunked_count != 1 {
            return Err(reject(
                ErrorCode::BadRequest,
                "Transfer-Encoding must end in a single chunked",
            ));
        }
        if te_unknown {
            return Err(reject(
                ErrorCode::NotImplemented,
                "only the chunked transfer coding is supported",
            ));
        }
        Framing::Chunked
    } else {
        match content_length {
            None | Some(0) => Framing::None,
            Some(n) if n > max_body => {
                return Err(reject(ErrorCode::BodyTooLarge, "request body too large"))
            }
            Some(n) => Framing::Length(n),
        }
    };

    let keep_alive = match version {
        Version::Http11 => !conn_close,
        Version::Http10 => conn_keep_alive && !conn_close,
    };
    Ok(Head {
        method,
        target,
        authority,
        version,
        headers,
        framing,
        keep_alive,
        expect_continue: expect_continue && framing != Framing::None,
    })
}

/// The request line (RFC 9112 §3): `method SP request-target SP
/// HTTP-version`, single spaces, a token method, a target of visible ASCII
/// only, and a version that is exactly `HTTP/` DIGIT `.` DIGIT. Checked on
/// the raw bytes before httparse, which is more lenient in places (and
/// would call a malformed version "unsupported"). Returns the version.
fn check_request_line(buf: &[u8], config: &Config) -> Result<Version, Reject> {
    let end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    let line = &buf[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(reject(
            ErrorCode::BadRequest,
            "the request line must be: method, one space, target, one space, version",
        ));
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(reject(ErrorCode::BadRequest, "malformed method"));
    }
    if target.len() > config.max_target_bytes {
        return Err(reject(ErrorCode::UriTooLong, "request target too long"));
    }
    if target.is_empty() {
        return Err(reject(ErrorCode::BadTarget, "empty request target"));
    }
    if !target.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
        return Err(reject(
            ErrorCode::BadTarget,
            "whitespace, control or non-ASCII byte in the request target",
        ));
    }
    match version {
        b"HTTP/1.1" => Ok(Version::Http11),
        b"HTTP/1.0" => Ok(Version::Http10),
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Err(reject(
                ErrorCode::VersionNotSupported,
                "only HTTP/1.0 and HTTP/1.1 are supported",
            ))
        }
        _ => Err(reject(ErrorCode::BadRequest, "malformed HTTP version")),
    }
}

/// The form of the request target must fit the method (RFC 9112 §3.2):
/// origin-form (`/path?query`) for any method; absolute-form
/// (`http://authority/path?query`, accepted as a server MUST, its authority
/// returned, since it wins over `Host`); asterisk-form (`*`) only with
/// OPTIONS; authority-form (`host:port`) only, and always, with CONNECT.
fn target_form<'b>(method: &str, target: &'b str) -> Result<Option<&'b str>, Reject> {
    let bytes = target.as_bytes();
    if method == "CONNECT" {
        // authority-form: uri-host ":" port, both present.
        let ok = match bytes.iter().rposition(|&b| b == b':') {
            Some(colon) => colon > 0 && colon + 1 < bytes.len() && valid_host(bytes),
            None => false,
        };
        return if ok {
            Ok(None)
        } else {
            Err(reject(
                ErrorCode::BadTarget,
                "CONNECT needs an authority-form target (host:port)",
            ))
        };
    }
    if bytes == b"*" {
        return if method == "OPTIONS" {
            Ok(None)
        } else {
            Err(reject(
                ErrorCode::BadTarget,
                "the asterisk-form target is only for OPTIONS",
            ))
        };
    }
    if bytes.first() == Some(&b'/') {
        return Ok(None);
    }
    let Some(sep) = target.find("://") else {
        return Err(reject(
            ErrorCode::BadTarget,
            "the target must be a path, an absolute URI, or * with OPTIONS",
        ));
    };
    let scheme = &target[..sep];
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(reject(
            ErrorCode::BadTarget,
            "an absolute target must be an http or https URI",
        ));
    }
    let rest = &target[sep + 3..];
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    // No userinfo (RFC 9110 §4.2.4: it can disguise the authority), and an
    // http URI with an empty host is invalid (§4.2.1).
    let host_len = if authority.starts_with('[') {
        authority.find(']').map_or(authority.len(), |i| i + 1)
    } else {
        authority.find(':').unwrap_or(authority.len())
    };
    if host_len == 0 || !valid_host(authority.as_bytes()) {
        return Err(reject(
            ErrorCode::BadTarget,
            "malformed authority in the absolute-form target",
        ));
    }
    Ok(Some(authority))
}

/// `tchar` of RFC 9110 §5.6.2: the bytes of a token (method, field name).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `uri-host [ ":" port ]` (RFC 9112 §3.2, RFC 3986 §3.2.2): a reg-name
/// (which covers IPv4 addresses) or a bracketed IP literal, then an
/// optional colon and digits. An empty value is valid (a Host for a URI
/// without an authority).
pub(crate) fn valid_host(v: &[u8]) -> bool {
    let (host_ok, rest) = if let Some(inner) = v.strip_prefix(b"[") {
        match inner.iter().position(|&b| b == b']') {
            Some(close) => (valid_ip_literal(&inner[..close]), &inner[close + 1..]),
            None => return false,
        }
    } else {
        let end = v.iter().position(|&b| b == b':').unwrap_or(v.len());
        (valid_reg_name(&v[..end]), &v[end..])
    };
    host_ok
        && match rest {
            [] => true,
            [b':', port @ ..] => port.iter().all(u8::is_ascii_digit),
            _ => false,
        }
}

/// `reg-name = *( unreserved / pct-encoded / sub-delims )`.
fn valid_reg_name(s: &[u8]) -> bool {
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if b == b'%' {
            match s.get(i + 1..i + 3) {
                Some([h, l]) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => i += 3,
                _ => return false,
            }
        } else if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// The inside of `[...]`: an IPv6 address or `v` HEXDIG+ `.` then
/// unreserved / sub-delims / `:` (IPvFuture).
fn valid_ip_literal(s: &[u8]) -> bool {
    if let Some(rest) = s.strip_prefix(b"v").or_else(|| s.strip_prefix(b"V")) {
        let hex = rest.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        return hex > 0
            && rest.get(hex) == Some(&b'.')
            && rest.len() > hex + 1
            && rest[hex + 1..]
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:".contains(&b));
    }
    std::str::from_utf8(s).is_ok_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok())
}

/// Whether an `Accept` value asks for JSON (`application/json` or a
/// `+json` type) ahead of plain text: then error bodies are sent as JSON.
pub(crate) fn accepts_json(accept: &[u8]) -> bool {
    list_items(accept).any(|item| {
        let media = item
            .split(|&b| b == b';')
            .next()
            .unwrap_or(item)
            .trim_ascii();
        let zero_q = item
            .split(|&b| b == b';')
            .skip(1)
            .any(|p| matches!(p.trim_ascii(), b"q=0" | b"q=0.0" | b"q=0.00" | b"q=0.000"));
        !zero_q
            && (media.eq_ignore_ascii_case(b"application/json")
                || (media.len() > 5 && media[media.len() - 5..].eq_ignore_ascii_case(b"+json")))
    })
}

/// [`accepts_json`] for a raw, perhaps malformed head: used when a request
/// is refused before (or because) its head could be parsed.
pub(crate) fn raw_accepts_json(head: &[u8]) -> bool {
    head.split(|&b| b == b'\n').skip(1).any(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                line[..colon].eq_ignore_ascii_case(b"accept") && accepts_json(&line[colon + 1..])
            }
            None => false,
        }
    })
}

/// Items of a comma-separated header list, trimmed of optional whitespace,
/// empty items skipped (RFC 9110 §5.6.1).
fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|s| s.trim_ascii())
        .filter(|s| !s.is_empty())
}

/// Strict decimal: digits only, no sign, no overflow.
fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Longest chunk-size line (with extensions) or trailer section accepted.
const MAX_CHUNK_LINE: usize = 1024;
const MAX_TRAILERS: usize = 8 * 1024;

/// `chunk-size [ chunk-ext ] CRLF` (RFC 9112 §7.1.1): at least one hex
/// digit, then nothing or extensions that begin with `;` (after optional
/// whitespace), with no control bytes but HTAB, ending in CRLF.
fn chunk_size_line_is_valid(line: &[u8]) -> bool {
    let Some(body) = line.strip_suffix(b"\r\n") else {
        return false;
    };
    let digits = body.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return false;
    }
    let rest = &body[digits..];
    if rest.is_empty() {
        return true;
    }
    // Whitespace (SP / HTAB only) is allowed only before a ';'.
    let ws = rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    rest.get(ws) == Some(&b';') && rest.iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// A trailer line: `token ":" value CRLF`, no control bytes but HTAB.
fn trailer_line_is_valid(line: &[u8]) -> bool {
    let Some(body) = line.strip_suffix(b"\r\n") else {
        return false;
    };
    let Some(colon) = body.iter().position(|&b| b == b':') else {
        return false;
    };
    let name = &body[..colon];
    !name.is_empty()
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        && body[colon + 1..]
            .iter()
            .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

/// Decodes a chunked body in place. The body region of the buffer holds the
/// decoded bytes first (`decoded()` of them), then raw input not yet decoded;
/// since decoded data is never longer than its encoding, it moves down over
/// the chunk framing and the request needs no second buffer.
#[derive(Debug, Clone)]
pub(crate) struct Dechunker {
    state: ChunkState,
    decoded: usize,
    trailer_bytes: usize,
    /// Decoded bytes the caller took away (a streamed body), still counted
    /// against the limit.
    taken: u64,
}

impl Dechunker {
    pub(crate) fn new() -> Dechunker {
        Dechunker {
            state: ChunkState::Size,
            decoded: 0,
            trailer_bytes: 0,
            taken: 0,
        }
    }

    /// The caller took the first `n` decoded bytes away: the region it
    /// passes next starts `n` bytes later.
    pub(crate) fn consume(&mut self, n: usize) {
        self.decoded -= n;
        self.taken += n as u64;
    }

    /// Decoded body bytes so far, at the start of the region.
    pub(crate) fn decoded(&self) -> usize {
        self.decoded
    }

    /// Whether the last chunk and the trailer section have been read.
    pub(crate) fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes what `region` holds past the decoded prefix. Returns the
    /// region's new length: `decoded()` body bytes, then the raw bytes not yet
    /// consumed (after `Done`, the start of the next pipelined request).
    pub(crate) fn decode(&mut self, region: &mut [u8], max_body: u64) -> Result<usize, Reject> {
        let len = region.len();
        let mut raw = self.decoded;
        loop {
            match self.state {
                ChunkState::Size => {
                    let rest = &region[raw..];
                    let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                        if rest.len() > MAX_CHUNK_LINE {
                            return Err(reject(ErrorCode::BadChunk, "chunk size line too long"));
                        }
                        break;
                    };
                    // Strict RFC 9112 §7.1 before httparse reads the number:
                    // httparse takes an empty line or a bare extension as
                    // size 0 and any byte inside extensions, and a front
                    // proxy that parses differently would disagree with us
                    // about where the body ends.
                    if nl > MAX_CHUNK_LINE || !chunk_size_line_is_valid(&rest[..nl + 1]) {
                        return Err(reject(ErrorCode::BadChunk, "malformed chunk size"));
                    }
                    match httparse::parse_chunk_size(&rest[..nl + 1]) {
                        Ok(httparse::Status::Complete((n, size))) => {
                            raw += n;
                            if size == 0 {
                                self.state = ChunkState::Trailers;
                            } else if (self.decoded as u64)
                                .saturating_add(self.taken)
                                .saturating_add(size)
                                > max_body
                            {
                                return Err(reject(
                                    ErrorCode::BodyTooLarge,
                                    "request body too large",
                                ));
                            } else {
                                self.state = ChunkState::Data(size);
                            }
                        }
                        _ => return Err(reject(ErrorCode::BadChunk, "malformed chunk size")),
                    }
                }
                ChunkState::Data(rem) => {
                    let avail = (len - raw).min(usize::try_from(rem).unwrap_or(usize::MAX));
                    region.copy_within(raw..raw + avail, self.decoded);
                    self.decoded += avail;
                    raw += avail;
                    let rem = rem - avail as u64;
                    if rem > 0 {
                        self.state = ChunkState::Data(rem);
                        break;
                    }
                    self.state = ChunkState::DataEnd;
                }
                ChunkState::DataEnd => match &region[raw..] {
                    [b'\r', b'\n', ..] => {
                        raw += 2;
                        self.state = ChunkState::Size;
                    }
                    [] | [b'\r'] => break,
                    _ => {
                        return Err(reject(
                            ErrorCode::BadChunk,
                            "chunk data not followed by CRLF",
                        ))
                    }
                },
                ChunkState::Trailers => {
                    let rest = &region[raw..];
                    if rest.starts_with(b"\r\n") {
                        raw += 2;
                        self.state = ChunkState::Done;
                    } else if let Some(nl) = rest.iter().position(|&b| b == b'\n') {
                        // A trailer field: checked as a header field, then
                        // ignored, within a cap.
                        if !trailer_line_is_valid(&rest[..nl + 1]) {
                            return Err(reject(ErrorCode::BadChunk, "malformed trailer field"));
                        }
                        self.trailer_bytes += nl + 1;
                        raw += nl + 1;
                        if self.trailer_bytes > MAX_TRAILERS {
                            return Err(reject(
                                ErrorCode::HeaderTooLarge,
                                "trailer section too large",
                            ));
                        }
                    } else if rest.len() > MAX_TRAILERS {
                        return Err(reject(
                            ErrorCode::HeaderTooLarge,
                            "trailer section too large",
                        ));
                    } else {
                        break;
                    }
                }
                ChunkState::Done => break,
            }
        }
        region.copy_within(raw..len, self.decoded);
        Ok(self.decoded + (len - raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(head: &str) -> Result<(Framing, bool, bool), Reject> {
        let config = Config::default();
        let mut storage = [httparse::EMPTY_HEADER; 16];
        parse_head(head.as_bytes(), &mut storage, &config)
            .map(|h| (h.framing, h.keep_alive, h.expect_continue))
    }

    fn code(head: &str) -> ErrorCode {
        parse(head).expect_err("should be refused").code
    }

    #[test]
    fn head_end_is_found_incrementally() {
        let b = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest";
        assert_eq!(find_head_end(b, 0), Some(27));
        for cut in 0..27 {
            assert_eq!(find_head_end(&b[..cut], 0), None, "{cut}");
            assert_eq!(find_head_end(&b[..27], cut), Some(27), "from {cut}");
        }
        assert_eq!(find_head_end(b"GET / HTTP/1.0\n\nx", 0), Some(16));
    }

    #[test]
    fn keep_alive_follows_version_and_connection() {
        assert!(parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap().1);
        assert!(
            !parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n")
                .unwrap()
                .1
        );
        assert!(!parse("GET / HTTP/1.0\r\n\r\n").unwrap().1);
        assert!(
            parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .unwrap()
                .1
        );
    }

    #[test]
    fn framing_is_decided() {
        let p = |h: &str| parse(h).unwrap().0;
        assert_eq!(
            p("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"),
            Framing::Length(5)
        );
        assert_eq!(
            p("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5, 5\r\n\r\n"),
            Framing::Length(5)
        );
        assert_eq!(
            p("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Framing::Chunked
        );
        assert_eq!(
            p("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"),
            Framing::None
        );
    }

    #[test]
    fn framing_attacks_are_refused() {
        use ErrorCode::*;
        let cases = [
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", BadRequest),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", BadContentLength),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", BadContentLength),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", BadContentLength),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n", BadContentLength),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", BadContentLength),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", BadRequest),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", BadRequest),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", NotImplemented),
            ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", BadRequest),
            ("GET / HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n b\r\n\r\n", BadRequest),
            ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", BadRequest),
            ("GET / HTTP/1.1\r\n\r\n", BadHost),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", BadHost),
            ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", VersionNotSupported),
            ("GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", ExpectationFailed),
            ("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", BadRequest),
        ];
        for (head, want) in cases {
            assert_eq!(code(head), want, "{head:?}");
        }
    }

    #[test]
    fn request_line_grammar_is_strict() {
        use ErrorCode::*;
        let with_line = |l: &str| format!("{l}\r\nHost: a\r\n\r\n");
        for (line, want) in [
            ("GET / HTTP/1.1 ", BadRequest),
            ("GET /  HTTP/1.1", BadRequest),
            ("GET\t/ HTTP/1.1", BadRequest),
            ("GET / http/1.1", BadRequest),
            ("GET / HTTP/1.10", BadRequest),
            ("GET / HTTP/1", BadRequest),
            ("GET / HTTP/3.1", VersionNotSupported),
            ("GET / HTTP/0.9", VersionNotSupported),
            ("GET /a\x01 HTTP/1.1", BadTarget),
            ("GET /\u{e9} HTTP/1.1", BadTarget),
            ("GET * HTTP/1.1", BadTarget),
            ("GET a:1 HTTP/1.1", BadTarget),
            ("CONNECT /x HTTP/1.1", BadTarget),
            ("CONNECT a HTTP/1.1", BadTarget),
            ("GET ftp://a/ HTTP/1.1", BadTarget),
            ("GET http://u@a/ HTTP/1.1", BadTarget),
            ("GET http:///x HTTP/1.1", BadTarget),
        ] {
            assert_eq!(code(&with_line(line)), want, "{line:?}");
        }
        for line in [
            "GET / HTTP/1.1",
            "OPTIONS * HTTP/1.1",
            "CONNECT a:443 HTTP/1.1",
            "GET http://a:1/x?y HTTP/1.1",
            "GET HTTPS://[::1] HTTP/1.1",
        ] {
            assert!(parse(&with_line(line)).is_ok(), "{line:?}");
        }
        let config = Config::default();
        let mut storage = [httparse::EMPTY_HEADER; 4];
        let h = parse_head(
            b"GET http://x.example:8/p HTTP/1.1\r\nHost: y\r\n\r\n",
            &mut storage,
            &config,
        )
        .unwrap();
        assert_eq!(h.authority, Some("x.example:8"));
    }

    #[test]
    fn host_grammar() {
        for good in [
            &b""[..],
            b"a",
            b"a.b-c_d~e:80",
            b"127.0.0.1",
            b"[::1]:1",
            b"[v7.a:b]",
            b"%41",
            b"h:",
        ] {
            assert!(valid_host(good), "{:?}", String::from_utf8_lossy(good));
        }
        for bad in [
            &b"a b"[..],
            b"a/b",
            b"a@b",
            b"[::1",
            b"[::1]x",
            b"[1.2.3.4]",
            b"[v.x]",
            b"a:b",
            b"a:1:2",
            b"%4",
            b"%zz",
            b"\x00",
        ] {
            assert!(!valid_host(bad), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn limits_are_enforced() {
        let config = Config {
            max_body_bytes: 10,
            max_target_bytes: 8,
            ..Config::default()
        };
        let mut storage = [httparse::EMPTY_HEADER; 2];
        let r = |head: &str, storage: &mut [httparse::Header<'_>]| {
            // Re-borrow per call; the head string outlives the storage use.
            let head: &'static str = Box::leak(head.to_owned().into_boxed_str());
            parse_head(head.as_bytes(), storage, &config)
                .map(|_| ())
                .unwrap_err()
                .code
        };
        assert_eq!(
            r(
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n",
                &mut storage
            ),
            ErrorCode::BodyTooLarge
        );
        assert_eq!(
            r("GET /123456789 HTTP/1.1\r\nHost: a\r\n\r\n", &mut storage),
            ErrorCode::UriTooLong
        );
        assert_eq!(
            r(
                "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n",
                &mut storage
            ),
            ErrorCode::HeaderTooLarge
        );
        assert_eq!(
            oversized_head(b"GET /aaaaaaaaaaaaaaaa", &config).code,
            ErrorCode::UriTooLong
        );
        assert_eq!(
            oversized_head(b"GET / HTTP/1.1\r\nX: yyyyyyyyyyyy", &config).code,
            ErrorCode::HeaderTooLarge
        );
    }

    #[test]
    fn json_is_chosen_only_when_asked_for() {
        assert!(accepts_json(b"application/json"));
        assert!(accepts_json(b"text/html, application/problem+json;q=0.9"));
        assert!(!accepts_json(b"text/plain, */*"));
        assert!(!accepts_json(b"application/json;q=0"));
        assert!(raw_accepts_json(
            b"GET / HTTP/1.1\r\nAccept: application/json\r\n\r\n"
        ));
        assert!(!raw_accepts_json(
            b"GET / HTTP/1.1\r\nX-Accept: application/json\r\n"
        ));
    }

    #[test]
    fn expect_continue_only_with_a_body() {
        assert!(
            parse(
                "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
            )
            .unwrap()
            .2
        );
        assert!(
            !parse("GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n")
                .unwrap()
                .2
        );
    }

    /// Feeds `input` to the decoder in pieces of `step` bytes, as a socket would.
    fn dechunk(input: &[u8], step: usize) -> Result<(Vec<u8>, Vec<u8>), Reject> {
        let mut d = Dechunker::new();
        let mut buf = Vec::new();
        for piece in input.chunks(step) {
            buf.extend_from_slice(piece);
            let n = d.decode(&mut buf, 1 << 20)?;
            buf.truncate(n);
            if d.is_done() {
                break;
            }
        }
        assert!(d.is_done(), "not done");
        let rest = buf.split_off(d.decoded());
        Ok((buf, rest))
    }

    #[test]
    fn chunked_decodes_in_place_at_any_fragmentation() {
        let input = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\nGET /next";
        for step in 1..input.len() {
            let (body, rest) = dechunk(input, step).unwrap();
            assert_eq!(body, b"hello world", "step {step}");
            // Bytes after the body that arrived in the same piece are kept.
            assert!(b"GET /next".starts_with(&rest), "step {step}: {rest:?}");
        }
    }

    #[test]
    fn chunked_grammar_is_strict() {
        // Each was once accepted (httparse alone reads an empty or bare
        // extension line as the last chunk, and any byte in extensions).
        for bad in [
            &b"5\r\nhello\r\n\r\n\r\n"[..],
            b";foo\r\n\r\n",
            b"2;a\nxx\r\nhe\r\n0\r\n\r\n",
            b"0\r\nGET /x HTTP/1.1\r\n\r\n",
            b"0\r\nX: a\rb\r\n\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r;x\r\nhello\r\n0\r\n\r\n",
        ] {
            assert!(
                dechunk(bad, 64).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let (body, _) = dechunk(b"5 ;a=b\r\nhello\r\n0\r\nX-T: 1\r\n\r\n", 64).unwrap();
        assert_eq!(body, b"hello");
    }

    #[test]
    fn chunked_errors() {
        assert_eq!(
            dechunk(b"zz\r\n", 64).unwrap_err().code,
            ErrorCode::BadChunk
        );
        assert_eq!(
            dechunk(b"3\r\nabcX\r\n0\r\n\r\n", 64).unwrap_err().code,
            ErrorCode::BadChunk
        );
        let mut d = Dechunker::new();
        let mut big = b"ffffff\r\n".to_vec();
        assert_eq!(
            d.decode(&mut big, 1000).unwrap_err().code,
            ErrorCode::BodyTooLarge
        );
    }
}
