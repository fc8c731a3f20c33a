//! [`Config`]: every limit and timeout, with defaults a small host can live with.

use std::time::Duration;

/// Limits and timeouts. Every buffer the server keeps has a cap here; breaking
/// one earns a 413, 414 or 431 and a close, never unbounded memory.
///
/// ```
/// let mut config = keelhttp::Config::default();
/// config.max_body_bytes = 8 << 20;
/// config.idle_timeout = std::time::Duration::from_secs(5);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Most connections served at once. Past it, up to one sixteenth more
    /// (at least 1) are accepted only to be answered `503` with
    /// `Retry-After` and the code `unavailable`, so a client or load balancer
    /// learns at once to go elsewhere; past that too, new connections wait in
    /// the kernel's accept queue. Memory and CPU stay bounded either way.
    /// Default: fifteen sixteenths of the soft `RLIMIT_NOFILE` less 32 (kept
    /// for served files and the process's own descriptors), at least 16.
    pub max_connections: usize,
    /// Largest request head (request line and header fields), in bytes.
    /// Default 16 KiB. Larger: 431.
    pub max_head_bytes: usize,
    /// Most header fields in one request. Default 64, at most 128. More: 431.
    pub max_headers: usize,
    /// Longest request target, in bytes. Default 8 KiB. Longer: 414.
    pub max_target_bytes: usize,
    /// Largest request body, in bytes, in either framing. Default 1 MiB.
    /// Larger: 413.
    pub max_body_bytes: u64,
    /// Deadline for a whole request head, counted from its first byte (or
    /// from the accept, for the first request): a slow-loris that sends one
    /// byte a second is cut here. Default 10 s.
    pub header_timeout: Duration,
    /// How long an idle keep-alive connection is kept. Default 60 s.
    pub idle_timeout: Duration,
    /// How long reading a body or writing a response may go without progress.
    /// Default 30 s.
    pub stall_timeout: Duration,
    /// How long a graceful shutdown waits for responses in flight before it
    /// closes what is left. Default 10 s.
    pub drain_timeout: Duration,
    /// After a response that ends the connection while the client may still be
    /// sending (an error mid-upload), how long unread input is drained so the
    /// client reads the response instead of a reset. Default 2 s.
    pub linger_timeout: Duration,
    /// The path of a status endpoint that the server answers itself, before
    /// the handler: JSON counters (`uptime`, `connections`, `requests`,
    /// `bytes_sent`, `disconnects`, `timeouts`, `rejected`, `log_dropped`,
    /// `draining`, `pid`, and `generation` when set), 200
    /// while serving and 503 with `Retry-After` and the code `draining` once
    /// shutdown has begun. Default: `None` (off).
    pub status_path: Option<String>,
    /// Bytes buffered per stream: a streamed response body the host pushes
    /// ([`BodySender`](crate::BodySender), refused with
    /// [`Push::Full`](crate::Push) past it) or a streamed request body
    /// waiting for its [`BodyReader`](crate::BodyReader) (reading from the
    /// client pauses past it). Default 64 KiB.
    pub stream_buffer_bytes: usize,
    /// Shown as `generation` in the status endpoint's JSON (beside `pid`):
    /// the keel [`Supervisor`](crate::Supervisor) numbers its workers'
    /// generations (1, then one more per reload). Default: `None` (not shown).
    pub generation: Option<u64>,
    /// The listening socket is shared with other processes that accept
    /// from it too (the workers of `keel --workers`): after accepting, the
    /// server lets the others take the next connection, so new connections
    /// spread evenly. Costs two `epoll_ctl` calls per burst of accepts.
    /// And in a drain, a connection accepted just before it that has not
    /// sent its first request yet gets up to a second for it (its client
    /// cannot know which process took it) instead of a close.
    /// Default `false`.
    pub shared_listener: bool,
}

impl Config {
    /// Connections accepted past `max_connections` only to be refused with a
    /// 503.
    pub(crate) fn overflow(&self) -> usize {
        (self.max_connections / 16).max(1)
    }
}

/// Hard upper bound for [`Config::max_headers`] (the parser's header array
/// lives on the stack).
pub(crate) const MAX_HEADERS_CAP: usize = 128;

impl Default for Config {
    fn default() -> Config {
        let max_connections = crate::sys::nofile_limit()
            .map(|n| (n.saturating_sub(32) * 15 / 16).clamp(16, 1 << 20) as usize)
            .unwrap_or(1024);
        Config {
            max_connections,
            max_head_bytes: 16 * 1024,
            max_headers: 64,
            max_target_bytes: 8 * 1024,
            max_body_bytes: 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            stall_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
            linger_timeout: Duration::from_secs(2),
            status_path: None,
            stream_buffer_bytes: crate::stream::DEFAULT_BUFFER,
            generation: None,
            shared_listener: false,
        }
    }
}
