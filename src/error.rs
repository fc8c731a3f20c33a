//! Errors: the public [`Error`] of the server API, the stable [`ErrorCode`]s
//! that error responses carry, and the one classifier of client disconnects.

use std::fmt;
use std::io;

/// A stable, documented code carried by every error response the server
/// itself generates (the body is `"<code>: <detail>\n"`). Clients and load
/// balancers may match on [`ErrorCode::as_str`]; the strings never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 400: the request head is malformed, or its framing is ambiguous.
    BadRequest,
    /// 400: an HTTP/1.1 request without exactly one `Host` header.
    BadHost,
    /// 400: a `Content-Length` that is not a number, or differing copies of it.
    BadContentLength,
    /// 400: a chunked body that does not follow the chunked grammar.
    BadChunk,
    /// 403: the file exists but may not be read.
    Forbidden,
    /// 404: nothing at that path.
    NotFound,
    /// 405: the method is not allowed on that resource (see `Allow`).
    MethodNotAllowed,
    /// 408: the request head did not arrive within the header deadline.
    RequestTimeout,
    /// 412: an `If-Match` or `If-Unmodified-Since` precondition failed.
    PreconditionFailed,
    /// 413: the request body is larger than `Config::max_body_bytes`.
    BodyTooLarge,
    /// 414: the request target is longer than `Config::max_target_bytes`.
    UriTooLong,
    /// 416: no requested byte range overlaps the file (with
    /// `Content-Range: bytes */LEN`).
    RangeNotSatisfiable,
    /// 417: an `Expect` header other than `100-continue`.
    ExpectationFailed,
    /// 431: the request head is larger than `Config::max_head_bytes`, or has
    /// more than `Config::max_headers` fields.
    HeaderTooLarge,
    /// 500: the handler panicked, or an internal error occurred.
    Internal,
    /// 501: a transfer coding other than `chunked`.
    NotImplemented,
    /// 503: the server is at its connection limit (with `Retry-After`).
    Unavailable,
    /// 503: the server is shutting down (with `Retry-After`): a load balancer
    /// should move to another instance.
    Draining,
    /// 505: an HTTP version other than 1.0 or 1.1.
    VersionNotSupported,
}

impl ErrorCode {
    /// The stable string form, e.g. `"header_too_large"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::BadHost => "bad_host",
            ErrorCode::BadContentLength => "bad_content_length",
            ErrorCode::BadChunk => "bad_chunk",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::PreconditionFailed => "precondition_failed",
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::UriTooLong => "uri_too_long",
            ErrorCode::RangeNotSatisfiable => "range_not_satisfiable",
            ErrorCode::ExpectationFailed => "expectation_failed",
            ErrorCode::HeaderTooLarge => "header_too_large",
            ErrorCode::Internal => "internal",
            ErrorCode::NotImplemented => "not_implemented",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Draining => "draining",
            ErrorCode::VersionNotSupported => "version_not_supported",
        }
    }

    /// The HTTP status this code is sent with.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BadRequest
            | ErrorCode::BadHost
            | ErrorCode::BadContentLength
            | ErrorCode::BadChunk => 400,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::PreconditionFailed => 412,
            ErrorCode::BodyTooLarge => 413,
            ErrorCode::UriTooLong => 414,
            ErrorCode::RangeNotSatisfiable => 416,
            ErrorCode::ExpectationFailed => 417,
            ErrorCode::HeaderTooLarge => 431,
            ErrorCode::Internal => 500,
            ErrorCode::NotImplemented => 501,
            ErrorCode::Unavailable | ErrorCode::Draining => 503,
            ErrorCode::VersionNotSupported => 505,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error from the server API (binding, polling). Request-level problems
/// never surface here: they become responses.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    source: io::Error,
}

/// What an [`Error`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The address is already in use (`EADDRINUSE`).
    AddrInUse,
    /// Binding or listening on the address failed for another reason.
    Bind,
    /// The event loop itself failed (`epoll` or the waker).
    Poll,
    /// A socket passed by the service manager (`LISTEN_FDS`) is unusable:
    /// not a socket, not a listening stream socket, or of another family.
    Activation,
}

impl Error {
    pub(crate) fn bind(source: io::Error) -> Error {
        let kind = if source.kind() == io::ErrorKind::AddrInUse {
            ErrorKind::AddrInUse
        } else {
            ErrorKind::Bind
        };
        Error { kind, source }
    }

    pub(crate) fn activation(source: io::Error) -> Error {
        Error {
            kind: ErrorKind::Activation,
            source,
        }
    }

    pub(crate) fn poll(source: io::Error) -> Error {
        Error {
            kind: ErrorKind::Poll,
            source,
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// A stable code: `"addr_in_use"`, `"bind_failed"`, `"poll_failed"` or
    /// `"activation_failed"`.
    pub fn code(&self) -> &'static str {
        match self.kind {
            ErrorKind::AddrInUse => "addr_in_use",
            ErrorKind::Bind => "bind_failed",
            ErrorKind::Poll => "poll_failed",
            ErrorKind::Activation => "activation_failed",
        }
    }

    /// The underlying I/O error.
    pub fn io_error(&self) -> &io::Error {
        &self.source
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ErrorKind::AddrInUse => write!(f, "address already in use: {}", self.source),
            ErrorKind::Bind => write!(f, "cannot listen: {}", self.source),
            ErrorKind::Poll => write!(f, "event loop failed: {}", self.source),
            ErrorKind::Activation => write!(f, "socket activation: {}", self.source),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The one classifier of "the client went away": `EPIPE`, `ECONNRESET`,
/// `ENOTCONN`, `ECONNABORTED` and an unexpected EOF. Such an error closes that
/// connection quietly (debug log, a counter), never more.
pub(crate) fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::NotConnected
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disconnect_classifier_covers_the_errnos() {
        for errno in [
            libc::EPIPE,
            libc::ECONNRESET,
            libc::ENOTCONN,
            libc::ECONNABORTED,
        ] {
            assert!(
                is_disconnect(&io::Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
        assert!(!is_disconnect(&io::Error::from_raw_os_error(libc::EAGAIN)));
        assert!(!is_disconnect(&io::Error::from_raw_os_error(libc::EBADF)));
    }

    #[test]
    fn codes_are_stable_and_map_to_statuses() {
        assert_eq!(ErrorCode::HeaderTooLarge.as_str(), "header_too_large");
        assert_eq!(ErrorCode::HeaderTooLarge.status(), 431);
        assert_eq!(ErrorCode::Unavailable.status(), 503);
    }
}
