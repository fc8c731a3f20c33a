//! [`Server`]: bind, run or poll, stop.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use crate::reactor::Reactor;
use crate::shutdown::ShutdownHandle;
use crate::{AccessLog, Config, Error, Handler, ListenAddr, Listener};

/// Counters kept by the server loop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Connections open now.
    pub connections: usize,
    /// Connections accepted since start.
    pub accepted: u64,
    /// Requests passed to the handler.
    pub requests: u64,
    /// Bytes written to clients (heads and bodies).
    pub bytes_sent: u64,
    /// Connections the client closed or reset mid-request or mid-response.
    pub disconnects: u64,
    /// Connections closed for missing a header, body or write deadline.
    pub timeouts: u64,
    /// Requests refused as malformed or over a limit (4xx/5xx from the server).
    pub bad_requests: u64,
    /// Connections refused with a 503 because the server was at
    /// `max_connections`.
    pub rejected: u64,
    /// Handler panics (each answered with a 500).
    pub panics: u64,
    /// Access log lines dropped because the log could not take them (a full
    /// disk, a reader that does not keep up).
    pub log_dropped: u64,
}

/// What `run` returns when the server has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// Connections that closed by themselves during the drain.
    pub drained: usize,
    /// Connections still open at the drain deadline (or at `shutdown_now`),
    /// closed by force.
    pub forced: usize,
    /// The counters at the end.
    pub stats: Stats,
}

/// An HTTP/1.1 server on one thread.
///
/// ```no_run
/// let server = keelhttp::Server::bind("127.0.0.1:8080", keelhttp::Config::default())?;
/// let stop = server.shutdown_handle(); // Clone + Send: stop it from anywhere
/// server.run(|req: &keelhttp::Request| keelhttp::Response::text(200, "hello\n"))?;
/// # Ok::<(), keelhttp::Error>(())
/// ```
#[derive(Debug)]
pub struct Server {
    reactor: Reactor,
}

impl Server {
    /// Binds a listener (with `SO_REUSEADDR`, a backlog of 1024) to the first
    /// address that works.
    ///
    /// # Errors
    /// No address could be bound ([`ErrorKind::AddrInUse`](crate::ErrorKind)
    /// when the port is taken), or the poller could not be created.
    pub fn bind(addr: impl ToSocketAddrs, config: Config) -> Result<Server, Error> {
        Server::from_listeners(vec![Listener::bind_tcp(addr)?], config)
    }

    /// Serves on a listener the caller bound (and perhaps inherited).
    ///
    /// # Errors
    /// The listener cannot be made non-blocking or registered.
    pub fn from_listener(listener: std::net::TcpListener, config: Config) -> Result<Server, Error> {
        Server::from_listeners(vec![Listener::from(listener)], config)
    }

    /// Serves on several listeners at once (TCP and Unix, bound with
    /// [`Listener::bind`] or inherited with
    /// [`activated_listeners`](crate::activated_listeners)), each on a token
    /// of its own in the one loop.
    ///
    /// ```
    /// use keelhttp::{Config, Listener, Server};
    /// let v4 = Listener::bind("127.0.0.1:0")?;
    /// let unix = Listener::bind_unix(std::env::temp_dir().join("keel-doc.sock"), Some(0o660))?;
    /// let server = Server::from_listeners(vec![v4, unix], Config::default())?;
    /// assert_eq!(server.listen_addrs().len(), 2);
    /// # Ok::<(), keelhttp::Error>(())
    /// ```
    ///
    /// # Errors
    /// The list is empty, a listener cannot be made non-blocking or
    /// registered, or the poller cannot be created.
    pub fn from_listeners(listeners: Vec<Listener>, config: Config) -> Result<Server, Error> {
        Ok(Server {
            reactor: Reactor::new(listeners, config)?,
        })
    }

    /// The address the server listens on (with the real port after binding
    /// port 0): its first TCP listener's, or `0.0.0.0:0` when it listens on
    /// Unix sockets only (see [`Server::listen_addrs`]).
    pub fn local_addr(&self) -> SocketAddr {
        self.reactor.local_addr()
    }

    /// Every address the server listens on, in the order given.
    pub fn listen_addrs(&self) -> &[ListenAddr] {
        self.reactor.addrs()
    }

    /// Reports to a service manager (systemd `Type=notify`) when
    /// `NOTIFY_SOCKET` is set: `READY=1` once the loop runs (every listener
    /// accepting), `STATUS=` lines, `STOPPING=1` and `EXTEND_TIMEOUT_USEC`
    /// during a drain, and, when `WATCHDOG_USEC` is set (for this process,
    /// per `WATCHDOG_PID`), `WATCHDOG=1` at half that period, sent by the
    /// event loop itself: a handler that blocks the loop stops the pings and
    /// the manager restarts the service. The variables are removed from the
    /// environment. Returns whether notification is on.
    ///
    /// Call it before other threads start (it changes the environment).
    ///
    /// # Errors
    /// `NOTIFY_SOCKET` is not an absolute path or `@name`, `WATCHDOG_USEC`
    /// is not a number, or the datagram socket cannot be created.
    pub fn notify_from_env(&mut self) -> std::io::Result<bool> {
        match crate::notify::Notifier::from_env()? {
            Some(n) => {
                self.reactor.set_notifier(n);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Logs every request to `log` (a file or stderr), buffered and written
    /// at most every 100 ms (or when 64 KiB gather). Without it, each request is logged through the
    /// `log` crate (target `keelhttp::access`, level `info`).
    pub fn set_access_log(&mut self, log: AccessLog) {
        self.reactor.set_access_log(log.into_writer());
    }

    /// A handle that stops the server from any thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            shared: self.reactor.shared.clone(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.reactor.config
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        self.report().stats
    }

    /// The drain counts and counters so far.
    pub fn report(&self) -> Report {
        self.reactor.report()
    }

    /// Serves until a [`ShutdownHandle`] stops it and the drain ends.
    ///
    /// SIGPIPE is blocked on this thread while it runs (and any SIGPIPE
    /// `sendfile` raises is consumed), so a host process with the default
    /// disposition survives clients that disconnect; the process-wide
    /// disposition is never changed.
    ///
    /// # Errors
    /// Only if the poller itself fails; request-level errors become responses.
    pub fn run<H: Handler>(mut self, mut handler: H) -> Result<Report, Error> {
        let _sigpipe = crate::sys::SigpipeGuard::new();
        while self.reactor.turn(&mut handler, None)? {}
        Ok(self.reactor.report())
    }

    /// One turn of the loop, for a host program that owns its loop: waits at
    /// most `timeout` (`None`: until something happens) for events, then
    /// serves them. Returns `Ok(false)` once the server has stopped.
    ///
    /// # Errors
    /// Only if the poller itself fails.
    pub fn poll_once<H: Handler>(
        &mut self,
        handler: &mut H,
        timeout: Option<Duration>,
    ) -> Result<bool, Error> {
        let _sigpipe = crate::sys::SigpipeGuard::new();
        self.reactor.turn(handler, timeout)
    }
}
