//! [`Request`]: a borrowed view of one parsed request.

use std::fmt;
use std::net::SocketAddr;

use crate::PeerAddr;

/// The HTTP version of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0: the connection closes after the response unless the client
    /// asked for `Connection: keep-alive`.
    Http10,
    /// HTTP/1.1: keep-alive unless `Connection: close`.
    Http11,
}

impl Version {
    /// `"HTTP/1.0"` or `"HTTP/1.1"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One request, borrowed from the connection's buffer for the duration of the
/// handler call. Header lookup is case-insensitive. The body is complete
/// (`Content-Length` or de-chunked) and within `Config::max_body_bytes`.
pub struct Request<'a> {
    pub(crate) method: &'a str,
    pub(crate) target: &'a str,
    pub(crate) version: Version,
    pub(crate) headers: &'a [httparse::Header<'a>],
    pub(crate) body: &'a [u8],
    pub(crate) peer: Option<SocketAddr>,
}

impl<'a> Request<'a> {
    /// The method, e.g. `"GET"` (case-sensitive, as sent).
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// The request target exactly as sent: origin form (`/a?b`), absolute
    /// form (`http://host/a?b`), authority form (`host:443`) or `*`.
    pub fn target(&self) -> &'a str {
        self.target
    }

    /// The path of the target, still percent-encoded: the target without its
    /// query and, for the absolute form, without scheme and authority
    /// (`http://h/a?b` → `/a`; `http://h` → `/`).
    pub fn path(&self) -> &'a str {
        let t = self.target;
        let t = match t.find("://") {
            Some(i) if !t.starts_with('/') => {
                let rest = &t[i + 3..];
                match rest.find(['/', '?']) {
                    Some(j) if rest.as_bytes()[j] == b'/' => &rest[j..],
                    _ => "/",
                }
            }
            _ => t,
        };
        match t.find('?') {
            Some(q) => &t[..q],
            None => t,
        }
    }

    /// The query, without the `?`, if the target has one.
    pub fn query(&self) -> Option<&'a str> {
        self.target.find('?').map(|q| &self.target[q + 1..])
    }

    /// The HTTP version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The first value of a header, by case-insensitive name; `None` if it is
    /// absent or not valid UTF-8 (see [`Request::header_bytes`]).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.header_bytes(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The first value of a header as raw bytes.
    pub fn header_bytes(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// Every header field in order, names as sent.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        self.headers.iter().map(|h| (h.name, h.value))
    }

    /// The request body (empty when there is none).
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The client's IP address and port; `None` for a client on a Unix
    /// socket (see [`Request::peer`]).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// Who sent the request: an IP peer, or [`PeerAddr::Unix`] for a client
    /// on a Unix stream socket.
    pub fn peer(&self) -> PeerAddr {
        match self.peer {
            Some(a) => PeerAddr::Ip(a),
            None => PeerAddr::Unix,
        }
    }
}

impl fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("target", &self.target)
            .field("version", &self.version)
            .field("headers", &self.headers.len())
            .field("body", &self.body.len())
            .finish()
    }
}
