//! One connection: a phase enum with a single transition point, its buffers
//! and cursors. Reading lives in `read.rs`, writing in `write.rs`, the
//! handler call in `call.rs`. Generic over a small [`Transport`] so the state machine is
//! unit-tested with a scripted one (fragments, `WouldBlock`, short writes).

use std::fmt;
use std::fs::File;
use std::io::{self, IoSlice, Read};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, trace};
use mio::Interest;

use crate::config::Config;
use crate::encode::DateCache;
use crate::parse::Dechunker;
use crate::ratelimit::Logs;
use crate::request::Version;
use crate::{Handler, Stats};

mod call;
mod read;
mod stream;
mod write;

/// What a connection needs from its socket.
pub(crate) trait Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes `bufs` in order; `more` says a file body follows (`MSG_MORE`).
    fn send(&mut self, bufs: &[IoSlice<'_>], more: bool) -> io::Result<usize>;
    /// Sends up to `len` bytes of `file` from `offset`; 0 means end of file.
    fn send_file(&mut self, file: &File, offset: u64, len: usize) -> io::Result<usize>;
    /// Half-closes the write side (before lingering).
    fn shutdown_write(&mut self);
    /// Turns Nagle's algorithm off, so back-to-back responses on a kept-alive
    /// connection never wait for the client's delayed ACK.
    fn set_nodelay(&mut self);
}

impl Transport for mio::net::TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Read::read(self, buf)
    }

    fn send(&mut self, bufs: &[IoSlice<'_>], more: bool) -> io::Result<usize> {
        crate::sys::send_vectored(self.as_raw_fd(), bufs, more)
    }

    fn send_file(&mut self, file: &File, offset: u64, len: usize) -> io::Result<usize> {
        let r = crate::sys::send_file(self.as_raw_fd(), file, offset, len);
        if matches!(&r, Err(e) if e.kind() == io::ErrorKind::BrokenPipe) {
            // sendfile has no MSG_NOSIGNAL: take the SIGPIPE it raised (blocked
            // on this thread while the loop runs) before anyone unblocks it.
            crate::sys::consume_sigpipe();
        }
        r
    }

    fn shutdown_write(&mut self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }

    fn set_nodelay(&mut self) {
        let _ = mio::net::TcpStream::set_nodelay(self, true);
    }
}

/// Read buffers handed out by the pool; a connection holds one only while it
/// has unparsed input, so an idle keep-alive connection costs no buffer.
pub(crate) const READ_BUF: usize = 4096;
const POOL_MAX: usize = 256;
/// Fairness: at most this much work for one connection per turn; leftover
/// work is queued by the reactor (no new edge will come for it).
const MAX_REQUESTS_PER_TURN: u32 = 16;
const READ_BUDGET: usize = 256 * 1024;
/// Bytes one connection may send per turn: also the most one `sendfile`
/// call is asked for. 256 KiB, as lighttpd sends: with several large
/// downloads, smaller turns interleave them more finely and the pages just
/// read are still in cache when they are sent (1 MiB lost to lighttpd with 2
/// and 4 connections; 256 KiB was ahead of it, one run, benches/compare.sh).
const SEND_BUDGET: usize = 256 * 1024;
/// Pipelined responses gathered into one write: at most this many bytes
/// (the pool keeps write buffers up to 16 KiB).
const BATCH_CAP: usize = 16 * 1024;
/// In a drain, how long a worker that shares its listener waits for the
/// first request of a connection it has just accepted.
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);
/// Room for chunk framing on top of the decoded body in the read buffer.
const CHUNK_SLACK: usize = 16 * 1024;

/// Free buffers shared by every connection of one server.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    read: Vec<Vec<u8>>,
    write: Vec<Vec<u8>>,
}

impl Pool {
    fn take_read(&mut self) -> Vec<u8> {
        self.read.pop().unwrap_or_else(|| vec![0; READ_BUF])
    }

    fn give_read(&mut self, buf: Vec<u8>) {
        // A buffer grown for a large body is dropped, so its memory goes back.
        if buf.len() == READ_BUF && self.read.len() < POOL_MAX {
            self.read.push(buf);
        }
    }

    fn take_write(&mut self) -> Vec<u8> {
        self.write.pop().unwrap_or_else(|| Vec::with_capacity(512))
    }

    fn give_write(&mut self, mut buf: Vec<u8>) {
        buf.clear();
        if buf.capacity() <= 16 * 1024 && self.write.len() < POOL_MAX {
            self.write.push(buf);
        }
    }
}

/// What `drive` borrows from the reactor.
pub(crate) struct Ctx<'a> {
    pub(crate) config: &'a Config,
    pub(crate) now: Instant,
    pub(crate) date: &'a DateCache,
    pub(crate) stats: &'a mut Stats,
    pub(crate) pool: &'a mut Pool,
    pub(crate) logs: &'a mut Logs,
    /// The drain has begun (the reactor acted on a shutdown request).
    pub(crate) draining: bool,
    /// The shutdown state, read live: a request can arrive (even from the
    /// handler now running) before the reactor acts on it.
    pub(crate) shutdown: &'a std::sync::Arc<crate::shutdown::Shared>,
    /// The connection's slot, so a stream can wake it (issue 13); set by the
    /// reactor's `drive`.
    pub(crate) key: usize,
    /// Open connections, for the status endpoint.
    pub(crate) connections: usize,
    pub(crate) started: Instant,
    /// The buffered access log, if the server has one (else `log`'s `info!`).
    pub(crate) access_log: Option<&'a mut crate::access_log::Writer>,
}

#[derive(Debug)]
enum BodyKind {
    Length(usize),
    Chunked(Dechunker),
}

/// The lifecycle. Transitions happen only in [`Conn::set_phase`].
#[derive(Debug)]
enum Phase {
    /// Waiting for, or reading, a request head.
    Head,
    /// Reading a body; the head is the first `head_len` unconsumed bytes.
    Body { head_len: usize, kind: BodyKind },
    /// Writing a response: `wbuf[wpos..]`, then `out`.
    Respond,
    /// Waiting for the host's deferred reply (`conn/stream.rs`).
    Deferred {
        later: crate::stream::Later,
        info: Info,
    },
    /// A request body streamed to the handler (`conn/stream.rs`).
    Upload(Box<stream::Upload>),
    /// The last response is out and the write side shut; input is discarded
    /// until EOF or the linger deadline, so the client reads the response
    /// rather than a reset.
    Linger,
    /// Done; the reactor frees the slot.
    Closed,
}

/// The body still to send after `wbuf[wpos..]`.
enum Out {
    None,
    /// Bytes in memory, sent from the cursor.
    Mem(Mem, usize),
    File {
        file: FileRef,
        offset: u64,
        remaining: u64,
    },
    /// A body the host streams (`conn/stream.rs`).
    Stream(Box<stream::OutStream>),
}

/// A body in memory, however the handler held it.
enum Mem {
    Static(&'static [u8]),
    Owned(Vec<u8>),
    Shared(Arc<[u8]>),
}

impl Mem {
    fn bytes(&self) -> &[u8] {
        match self {
            Mem::Static(b) => b,
            Mem::Owned(b) => b,
            Mem::Shared(b) => b,
        }
    }
}

/// A file body: owned by this response, or shared with a cache.
enum FileRef {
    Owned(File),
    Shared(Arc<File>),
}

impl FileRef {
    fn file(&self) -> &File {
        match self {
            FileRef::Owned(f) => f,
            FileRef::Shared(f) => f,
        }
    }
}

/// What the response needs to know about the request it answers.
#[derive(Debug, Clone, Copy)]
struct Info {
    version: Version,
    keep_alive: bool,
    is_head: bool,
}

enum Step {
    /// Progress or a phase change: look again.
    Continue,
    /// Nothing to do until the next readiness event or timer.
    Wait,
    /// Out of budget with work left: queue for the next turn.
    Yield,
}

#[derive(Default)]
struct Budget {
    requests: u32,
    read: usize,
    sent: usize,
}

enum Fill {
    Data,
    WouldBlock,
    Eof,
    Failed,
}

/// One client connection.
pub(crate) struct Conn<T> {
    pub(crate) io: T,
    peer: Option<SocketAddr>,
    phase: Phase,
    /// Readiness remembered from edge-triggered events, cleared on
    /// `WouldBlock` (or on a short read, see `fill`).
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    /// The poller reported the peer's FIN (`EPOLLRDHUP`): read until EOF,
    /// since no further event will announce it.
    pub(crate) read_closed: bool,
    eof: bool,
    /// `TCP_NODELAY` is set (done once, when the connection is kept alive).
    nodelay: bool,
    rbuf: Vec<u8>,
    start: usize,
    end: usize,
    /// How far the current head has been scanned for its end.
    scan: usize,
    head_started: bool,
    wbuf: Vec<u8>,
    wpos: usize,
    out: Out,
    keep_alive: bool,
    linger_after: bool,
    /// Accepted past `max_connections`: its request is answered with a 503.
    overloaded: bool,
    /// The timer: when this connection next needs attention.
    pub(crate) deadline: Option<Instant>,
    /// The earliest entry the reactor's timer heap holds for this slot.
    pub(crate) armed: Option<Instant>,
    /// The interest registered with the poller; `None` until the
    /// connection first has to wait.
    pub(crate) registered: Option<Interest>,
    /// Whether the reactor's ready queue holds this slot.
    pub(crate) queued: bool,
}

impl<T> fmt::Debug for Conn<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("peer", &self.peer)
            .field("phase", &self.phase)
            .field("buffered", &(self.end - self.start))
            .finish_non_exhaustive()
    }
}

struct Peer(Option<SocketAddr>);

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(a) => write!(f, "{a}"),
            None => f.write_str("unix"), // the only peer without an address
        }
    }
}

/// `now + d`, saturating far in the future instead of overflowing (a
/// `Config` may hold any `Duration`).
pub(crate) fn deadline_after(now: Instant, d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(100 * 365 * 86_400);
    now.checked_add(d.min(FAR)).unwrap_or(now)
}

impl Ctx<'_> {
    /// `now` plus a configured duration, saturating.
    fn after(&self, d: Duration) -> Instant {
        deadline_after(self.now, d)
    }

    /// Whether responses should end their connection: draining, or a
    /// shutdown asked for and not yet acted on.
    fn closing(&self) -> bool {
        self.draining || self.shutdown.requested() >= crate::shutdown::DRAIN
    }
}

impl<T: Transport> Conn<T> {
    pub(crate) fn new(
        io: T,
        peer: Option<SocketAddr>,
        now: Instant,
        config: &Config,
        overloaded: bool,
    ) -> Conn<T> {
        Conn {
            io,
            peer,
            phase: Phase::Head,
            readable: true, // data often arrives with the connection: try at once
            writable: false,
            read_closed: false,
            eof: false,
            nodelay: false,
            rbuf: Vec::new(),
            start: 0,
            end: 0,
            scan: 0,
            // The first request's head deadline runs from the accept.
            head_started: true,
            wbuf: Vec::new(),
            wpos: 0,
            out: Out::None,
            keep_alive: false,
            linger_after: false,
            overloaded,
            deadline: Some(deadline_after(now, config.header_timeout)),
            armed: None,
            registered: None,
            queued: false,
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Its last response is complete; it only waits to close without a reset.
    pub(crate) fn is_lingering(&self) -> bool {
        matches!(self.phase, Phase::Linger)
    }

    /// Interest follows the phase: writability only while a write is blocked.
    pub(crate) fn interest(&self) -> Interest {
        let wants_write =
            !self.writable && (matches!(self.phase, Phase::Respond) || self.wpos < self.wbuf.len());
        if wants_write {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        }
    }

    fn set_phase(&mut self, new: Phase) {
        trace!("{} {:?} => {:?}", Peer(self.peer), self.phase, new);
        self.phase = new;
    }

    fn close(&mut self, ctx: &mut Ctx<'_>) {
        self.set_phase(Phase::Closed);
        self.out = Out::None;
        self.release_buffers(ctx.pool);
        self.deadline = None;
    }

    fn release_buffers(&mut self, pool: &mut Pool) {
        if !self.rbuf.is_empty() {
            pool.give_read(std::mem::take(&mut self.rbuf));
            self.start = 0;
            self.end = 0;
        }
        if self.wbuf.capacity() > 0 {
            pool.give_write(std::mem::take(&mut self.wbuf));
            self.wpos = 0;
        }
    }

    /// Does all the work the connection's readiness allows, within a budget.
    /// Returns `true` if work is left that no event will announce.
    pub(crate) fn drive<H: Handler>(&mut self, ctx: &mut Ctx<'_>, handler: &mut H) -> bool {
        let mut budget = Budget::default();
        loop {
            let step = match self.phase {
                Phase::Head => self.step_head(ctx, handler, &mut budget),
                Phase::Body { .. } => self.step_body(ctx, handler, &mut budget),
                Phase::Respond => self.step_respond(ctx, &mut budget),
                Phase::Deferred { .. } => self.step_deferred(ctx),
                Phase::Upload(_) => self.step_upload(ctx, &mut budget),
                Phase::Linger => self.step_linger(ctx, &mut budget),
                Phase::Closed => return false,
            };
            match step {
                Step::Continue => {}
                Step::Wait => return false,
                Step::Yield => return true,
            }
        }
    }

    /// The connection's deadline passed.
    pub(crate) fn on_timeout(&mut self, ctx: &mut Ctx<'_>) {
        if self.stream_timer(ctx) {
            return; // an SSE ping went out (conn/stream.rs)
        }
        let idle = matches!(self.phase, Phase::Head) && !self.head_started;
        if idle || matches!(self.phase, Phase::Linger) {
            debug!("{} idle, closing", Peer(self.peer));
        } else {
            ctx.stats.timeouts += 1;
            debug!("{} timed out in {:?}", Peer(self.peer), self.phase);
        }
        self.close(ctx);
    }

    /// Shutdown began: a connection in progress finishes its response and
    /// then closes. One waiting for a head is read once first (read before
    /// you close): a complete request already in the socket is one the
    /// client has sent, and during a `--workers` reload nobody else can
    /// answer it, so it is answered (with `Connection: close`). With nothing
    /// readable, or only part of a head, the connection closes now. Returns
    /// `true` when it has work that no event will announce.
    pub(crate) fn begin_drain(&mut self, ctx: &mut Ctx<'_>) -> bool {
        match self.phase {
            Phase::Linger => self.close(ctx),
            Phase::Head => {
                // Readiness flags may lag (the drain starts before this
                // turn's events are read): always try, without blocking.
                let limit = ctx.config.max_head_bytes;
                if let Fill::Failed = self.fill(ctx, limit, &mut Budget::default()) {
                    return false; // `fill` closed it
                }
                let data = &self.rbuf[self.start..self.end];
                let skip = crate::parse::leading_empty_lines(data);
                if crate::parse::find_head_end(&data[skip..], 0).is_some() {
                    return true;
                }
                // A worker sharing its listener (`--workers`) may have
                // accepted this connection an instant before the drain,
                // before its first request could arrive: the client cannot
                // know which worker took it and will send. A short grace,
                // for a connection that has not had a response yet (only a
                // kept-alive one has `nodelay`), instead of a close under it.
                if ctx.config.shared_listener && !self.nodelay {
                    let grace = ctx.after(FIRST_REQUEST_GRACE);
                    self.deadline = Some(self.deadline.map_or(grace, |d| d.min(grace)));
                    return false;
                }
                self.close(ctx);
            }
            _ => self.keep_alive = false,
        }
        false
    }
}

#[cfg(test)]
mod tests;

// Hostile input (issue 12): a whole connection under a scripted transport,
// shared by the mutation test and the `fuzzing` feature's conn target.
#[cfg(test)]
mod mutation;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod script;
