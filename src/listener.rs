//! Listening sockets: TCP (IPv4, IPv6) and Unix stream sockets, bound here or
//! inherited from a service manager (socket activation, `LISTEN_FDS`).
//!
//! The public [`Listener`] wraps a std listener, so no mio type leaks out;
//! the reactor turns each into a mio listener on a token of its own, and the
//! connections it accepts into a [`Stream`].

use std::fmt;
use std::fs::File;
use std::io::{self, IoSlice, Read};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use crate::conn::Transport;
use crate::Error;

/// Where a [`Listener`] listens: an IP address and port, or a Unix socket
/// path. Displays as `127.0.0.1:8080`, `[::1]:80` or `unix:/run/keel.sock`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ListenAddr {
    /// A TCP listener.
    Ip(SocketAddr),
    /// A Unix stream listener, with its path (empty for an unnamed or
    /// abstract socket).
    Unix(PathBuf),
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Ip(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Who sent a request: an IP peer, or a client on a Unix socket (which has
/// no address worth telling). Displays as `192.0.2.7:51234` or `unix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerAddr {
    /// A TCP peer.
    Ip(SocketAddr),
    /// A peer on a Unix stream socket.
    Unix,
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Ip(a) => write!(f, "{a}"),
            PeerAddr::Unix => f.write_str("unix"),
        }
    }
}

#[derive(Debug)]
enum Kind {
    Tcp(std::net::TcpListener),
    Unix(UnixListener),
}

/// A listening socket the server accepts on: TCP or Unix stream, bound by
/// [`Listener::bind`] or taken over from a std listener or from the service
/// manager ([`activated_listeners`]). A [`Server`](crate::Server) serves any
/// number of them (see [`Server::from_listeners`](crate::Server::from_listeners)).
///
/// ```
/// let tcp = keelhttp::Listener::bind("127.0.0.1:0")?;
/// let server = keelhttp::Server::from_listeners(vec![tcp], keelhttp::Config::default())?;
/// # Ok::<(), keelhttp::Error>(())
/// ```
#[derive(Debug)]
pub struct Listener {
    kind: Kind,
    /// The name given by `LISTEN_FDNAMES`, for the log.
    name: Option<String>,
}

impl Listener {
    /// Binds `addr`: `HOST:PORT` (`127.0.0.1:8080`, `[::]:80`,
    /// `localhost:8080`; TCP with `SO_REUSEADDR` and a backlog of 1024) or
    /// `unix:PATH` (a Unix stream socket; see [`Listener::bind_unix`]).
    ///
    /// # Errors
    /// The address does not parse or resolve, or binding fails
    /// ([`ErrorKind::AddrInUse`](crate::ErrorKind) when it is taken).
    pub fn bind(addr: &str) -> Result<Listener, Error> {
        if let Some(path) = addr.strip_prefix("unix:") {
            return Listener::bind_unix(path, None);
        }
        Listener::bind_tcp(addr)
    }

    /// Binds a TCP listener to the first of `addrs` that works.
    ///
    /// # Errors
    /// No address could be bound.
    pub fn bind_tcp(addrs: impl ToSocketAddrs) -> Result<Listener, Error> {
        let mut last = None;
        for a in addrs.to_socket_addrs().map_err(Error::bind)? {
            match mio::net::TcpListener::bind(a) {
                Ok(l) => return Ok(Listener::from(std::net::TcpListener::from(l))),
                Err(e) => last = Some(e),
            }
        }
        Err(Error::bind(last.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "no address to bind")
        })))
    }

    /// Binds a Unix stream socket at `path`, then sets its file mode to
    /// `mode` (e.g. `0o660`) if given. A stale socket file (nothing accepts
    /// on it: a server that died) is replaced; a live one is
    /// [`ErrorKind::AddrInUse`](crate::ErrorKind); any other kind of file
    /// at `path` is left alone and the bind fails.
    ///
    /// # Errors
    /// The directory does not exist or is not writable, the path is taken, or
    /// the mode cannot be set.
    pub fn bind_unix(path: impl AsRef<Path>, mode: Option<u32>) -> Result<Listener, Error> {
        let path = path.as_ref();
        if path.as_os_str().is_empty() {
            return Err(Error::bind(io::Error::new(
                io::ErrorKind::InvalidInput,
                "empty Unix socket path",
            )));
        }
        remove_stale_socket(path).map_err(Error::bind)?;
        let l = mio::net::UnixListener::bind(path).map_err(Error::bind)?;
        if let Some(mode) = mode {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(Error::bind)?;
        }
        Ok(Listener::from(UnixListener::from(l)))
    }

    /// Where it listens.
    ///
    /// # Errors
    /// The socket's address cannot be read.
    pub fn local_addr(&self) -> io::Result<ListenAddr> {
        match &self.kind {
            Kind::Tcp(l) => l.local_addr().map(ListenAddr::Ip),
            Kind::Unix(l) => {
                let a = l.local_addr()?;
                Ok(ListenAddr::Unix(
                    a.as_pathname().map(Path::to_path_buf).unwrap_or_default(),
                ))
            }
        }
    }

    /// The name the service manager gave this socket (`LISTEN_FDNAMES`,
    /// systemd's `FileDescriptorName=`), if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Sets the name shown in the log.
    pub fn with_name(mut self, name: impl Into<String>) -> Listener {
        self.name = Some(name.into());
        self
    }

    /// The engine's side: a non-blocking mio listener.
    pub(crate) fn into_mio(self) -> io::Result<MioListener> {
        match self.kind {
            Kind::Tcp(l) => {
                l.set_nonblocking(true)?;
                Ok(MioListener::Tcp(mio::net::TcpListener::from_std(l)))
            }
            Kind::Unix(l) => {
                l.set_nonblocking(true)?;
                Ok(MioListener::Unix(mio::net::UnixListener::from_std(l)))
            }
        }
    }
}

impl From<std::net::TcpListener> for Listener {
    fn from(l: std::net::TcpListener) -> Listener {
        Listener {
            kind: Kind::Tcp(l),
            name: None,
        }
    }
}

impl From<UnixListener> for Listener {
    fn from(l: UnixListener) -> Listener {
        Listener {
            kind: Kind::Unix(l),
            name: None,
        }
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        match &self.kind {
            Kind::Tcp(l) => l.as_raw_fd(),
            Kind::Unix(l) => l.as_raw_fd(),
        }
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.kind {
            Kind::Tcp(l) => l.as_fd(),
            Kind::Unix(l) => l.as_fd(),
        }
    }
}

impl From<Listener> for OwnedFd {
    fn from(l: Listener) -> OwnedFd {
        match l.kind {
            Kind::Tcp(l) => l.into(),
            Kind::Unix(l) => l.into(),
        }
    }
}

/// A socket file at `path` that nothing accepts on is removed; a live one is
/// `AddrInUse`; a file that is not a socket is `AlreadyExists`.
fn remove_stale_socket(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        ));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("a server is listening on {}", path.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            log::info!("replacing the stale socket {}", path.display());
            std::fs::remove_file(path)
        }
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------------------
// Socket activation

/// The listening sockets a service manager passed to this process (systemd
/// socket activation, or a supervisor doing the same): when `LISTEN_PID` is
/// this process and `LISTEN_FDS` is at least 1, the descriptors from 3 on,
/// named by `LISTEN_FDNAMES`. Each is checked to be a listening stream
/// socket (TCP or Unix), made close-on-exec, and the three variables are
/// removed from the environment so no child inherits them. Returns an empty
/// list when nothing was passed (or it was meant for another process).
///
/// Call it early, before other threads start: it changes the environment.
///
/// ```no_run
/// let listeners = keelhttp::activated_listeners()?;
/// let server = if listeners.is_empty() {
///     keelhttp::Server::bind("127.0.0.1:8080", keelhttp::Config::default())?
/// } else {
///     keelhttp::Server::from_listeners(listeners, keelhttp::Config::default())?
/// };
/// # Ok::<(), keelhttp::Error>(())
/// ```
///
/// # Errors
/// `LISTEN_FDS` does not parse, or a passed descriptor is not open, not a
/// socket, not a stream socket, not listening, or of another family
/// ([`ErrorKind::Activation`](crate::ErrorKind)). The variables are removed
/// in that case too.
pub fn activated_listeners() -> Result<Vec<Listener>, Error> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    let names = std::env::var("LISTEN_FDNAMES").ok();
    let ours = pid
        .as_deref()
        .and_then(|p| p.trim().parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    if !ours {
        return Ok(Vec::new());
    }
    for v in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(v);
    }
    let n = match fds.as_deref().map(|f| f.trim().parse::<u32>()) {
        Some(Ok(n)) => n,
        None => return Ok(Vec::new()),
        Some(Err(_)) => {
            return Err(Error::activation(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("LISTEN_FDS is not a number: {:?}", fds.unwrap_or_default()),
            )))
        }
    };
    if n > 4096 {
        return Err(Error::activation(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("LISTEN_FDS={n} is implausibly many"),
        )));
    }
    let names: Vec<&str> = names
        .as_deref()
        .map_or(Vec::new(), |s| s.split(':').collect());
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n {
        let fd = LISTEN_FDS_START + i as RawFd;
        let l = take_listening_socket(fd).map_err(|e| {
            Error::activation(io::Error::new(e.kind(), format!("inherited fd {fd}: {e}")))
        })?;
        let name = names
            .get(i as usize)
            .filter(|n| !n.is_empty())
            .map(|s| s.to_string());
        out.push(Listener { kind: l, name });
    }
    Ok(out)
}

/// The first descriptor passed by socket activation (`SD_LISTEN_FDS_START`).
pub(crate) const LISTEN_FDS_START: RawFd = 3;

fn take_listening_socket(fd: RawFd) -> io::Result<Kind> {
    let info = crate::sys::socket_info(fd)?;
    if !info.is_socket {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a socket"));
    }
    if !info.is_stream {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a stream socket (a datagram socket cannot serve HTTP)",
        ));
    }
    if !info.listening {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a stream socket that is not listening",
        ));
    }
    let unix = match info.family {
        libc::AF_INET | libc::AF_INET6 => false,
        libc::AF_UNIX => true,
        f => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a socket of unsupported address family {f}"),
            ))
        }
    };
    crate::sys::set_cloexec(fd)?;
    let owned = crate::sys::own_fd(fd);
    Ok(if unix {
        Kind::Unix(UnixListener::from(owned))
    } else {
        Kind::Tcp(std::net::TcpListener::from(owned))
    })
}

// ---------------------------------------------------------------------------
// The engine's side

/// A listener as the reactor holds it.
#[derive(Debug)]
pub(crate) enum MioListener {
    Tcp(mio::net::TcpListener),
    Unix(mio::net::UnixListener),
}

impl MioListener {
    pub(crate) fn accept(&self) -> io::Result<(Stream, Option<SocketAddr>)> {
        match self {
            MioListener::Tcp(l) => l.accept().map(|(s, a)| (Stream::Tcp(s), Some(a))),
            MioListener::Unix(l) => l.accept().map(|(s, _)| (Stream::Unix(s), None)),
        }
    }

    pub(crate) fn local_addr(&self) -> Option<ListenAddr> {
        match self {
            MioListener::Tcp(l) => l.local_addr().ok().map(ListenAddr::Ip),
            MioListener::Unix(l) => l.local_addr().ok().map(|a| {
                ListenAddr::Unix(a.as_pathname().map(Path::to_path_buf).unwrap_or_default())
            }),
        }
    }
}

/// For the reactor's `EPOLLEXCLUSIVE` registration (`reactor.rs`, end).
impl std::os::fd::AsRawFd for MioListener {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            MioListener::Tcp(l) => l.as_raw_fd(),
            MioListener::Unix(l) => l.as_raw_fd(),
        }
    }
}

impl mio::event::Source for MioListener {
    fn register(&mut self, r: &mio::Registry, t: mio::Token, i: mio::Interest) -> io::Result<()> {
        match self {
            MioListener::Tcp(l) => l.register(r, t, i),
            MioListener::Unix(l) => l.register(r, t, i),
        }
    }

    fn reregister(&mut self, r: &mio::Registry, t: mio::Token, i: mio::Interest) -> io::Result<()> {
        match self {
            MioListener::Tcp(l) => l.reregister(r, t, i),
            MioListener::Unix(l) => l.reregister(r, t, i),
        }
    }

    fn deregister(&mut self, r: &mio::Registry) -> io::Result<()> {
        match self {
            MioListener::Tcp(l) => l.deregister(r),
            MioListener::Unix(l) => l.deregister(r),
        }
    }
}

/// An accepted connection: TCP or Unix stream.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
}

impl Stream {
    fn fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }
}

impl Transport for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => Read::read(s, buf),
            Stream::Unix(s) => Read::read(s, buf),
        }
    }

    fn send(&mut self, bufs: &[IoSlice<'_>], more: bool) -> io::Result<usize> {
        // MSG_MORE is ignored on Unix sockets; MSG_NOSIGNAL works on both.
        crate::sys::send_vectored(self.fd(), bufs, more)
    }

    fn send_file(&mut self, file: &File, offset: u64, len: usize) -> io::Result<usize> {
        let r = crate::sys::send_file(self.fd(), file, offset, len);
        if matches!(&r, Err(e) if e.kind() == io::ErrorKind::BrokenPipe) {
            // sendfile has no MSG_NOSIGNAL: take the SIGPIPE it raised (blocked
            // on this thread while the loop runs) before anyone unblocks it.
            crate::sys::consume_sigpipe();
        }
        r
    }

    fn shutdown_write(&mut self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Write),
        };
    }

    fn set_nodelay(&mut self) {
        if let Stream::Tcp(s) = self {
            let _ = mio::net::TcpStream::set_nodelay(s, true);
        }
    }
}

impl mio::event::Source for Stream {
    fn register(&mut self, r: &mio::Registry, t: mio::Token, i: mio::Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.register(r, t, i),
            Stream::Unix(s) => s.register(r, t, i),
        }
    }

    fn reregister(&mut self, r: &mio::Registry, t: mio::Token, i: mio::Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.reregister(r, t, i),
            Stream::Unix(s) => s.reregister(r, t, i),
        }
    }

    fn deregister(&mut self, r: &mio::Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.deregister(r),
            Stream::Unix(s) => s.deregister(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_display_as_operators_write_them() {
        let a: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert_eq!(ListenAddr::Ip(a).to_string(), "127.0.0.1:80");
        assert_eq!(
            ListenAddr::Unix(PathBuf::from("/run/keel.sock")).to_string(),
            "unix:/run/keel.sock"
        );
        assert_eq!(PeerAddr::Unix.to_string(), "unix");
    }
}
