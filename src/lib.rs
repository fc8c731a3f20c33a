//! # keelhttp
//!
//! A small, single-threaded, event-loop HTTP/1.1 server: a hand-written
//! [mio](https://docs.rs/mio) reactor owns a slab of connections, files go
//! out with zero-copy `sendfile(2)`, and a [`ShutdownHandle`] drains it
//! gracefully with a deadline.
//!
//! ```no_run
//! use keelhttp::{Config, Request, Response, Server};
//!
//! let server = Server::bind("127.0.0.1:8080", Config::default())?;
//! let stop = server.shutdown_handle(); // Clone + Send
//! server.run(|req: &Request| match req.path() {
//!     "/" => Response::text(200, "hello\n"),
//!     _ => Response::text(404, "not found\n"),
//! })?;
//! # Ok::<(), keelhttp::Error>(())
//! ```
//!
//! ## Layers
//!
//! ```text
//!  policy   main.rs (the `keel` CLI)        static_files/ (a Handler serving a directory)
//!           supervisor.rs (`keel --workers`: worker processes over shared sockets)
//!  API      server.rs handler.rs request.rs response.rs stream.rs shutdown.rs config.rs error.rs header.rs
//!  engine   reactor.rs -> conn/ -> parse.rs  encode.rs  sys.rs (the only unsafe: libc calls)
//!           listener.rs (TCP and Unix listeners, socket activation)  notify.rs (sd_notify)
//!           access_log.rs (buffered, one write per 100 ms)
//! ```
//!
//! The handler runs on the server's thread: no `Send`/`Sync` bounds, and it
//! should not block. A handler that panics costs that request a 500 and its
//! connection; the server carries on.
//!
//! ## SIGPIPE
//!
//! `sendfile(2)` cannot be told `MSG_NOSIGNAL`, so a client that disconnects
//! mid-file raises SIGPIPE. While [`Server::run`] or [`Server::poll_once`]
//! runs, SIGPIPE is blocked on that thread and any pending one is consumed,
//! so the library is safe inside a host that keeps the default disposition;
//! the process-wide disposition is never touched. Plain writes use
//! `MSG_NOSIGNAL`.
//!
//! See `examples/` for a closure handler, a static directory and a host-owned
//! loop.
// A lint, not unsafe code: unsafe is denied crate-wide; sys.rs alone opts
// out, and every block there has its SAFETY line.
#![deny(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations)]
#![warn(rust_2018_idioms)]

mod access_log;
mod config;
mod conn;
mod encode;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod handler;
pub mod header;
mod listener;
mod notify;
mod parse;
mod privileges;
mod ratelimit;
mod reactor;
mod request;
mod response;
mod server;
mod shutdown;
mod signals;
mod static_files;
pub mod stream;
pub mod supervisor;
mod sys;

pub use access_log::{AccessLog, LogFormat};
pub use config::Config;
pub use error::{Error, ErrorCode, ErrorKind};
pub use handler::Handler;
pub use listener::{activated_listeners, ListenAddr, Listener, PeerAddr};
pub use privileges::{drop_privileges, PrivilegeError, Privileges};
pub use request::{Request, Version};
pub use response::{Body, HeaderBlock, HeaderText, Response};
pub use server::{Report, Server, Stats};
pub use shutdown::ShutdownHandle;
pub use signals::stop_on_signals;
pub use static_files::{StaticFiles, StaticOptions};
pub use stream::{BodyReader, BodySender, Event, Push, Reply, Sse};
pub use supervisor::Supervisor;

/// Formats a time as an HTTP date (IMF-fixdate, RFC 9110 §5.6.7), e.g.
/// `Sun, 06 Nov 1994 08:49:37 GMT`. Times before 1970 format as the epoch.
pub fn http_date(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    String::from_utf8_lossy(&encode::http_date(secs)).into_owned()
}
