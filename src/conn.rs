//! One connection: a phase enum with a single transition point, its buffers
//! and cursors. Generic over a small [`Transport`] so the state machine is
//! unit-tested with a scripted one (fragments, `WouldBlock`, short writes).

use std::fmt;
use std::fs::File;
use std::io::{self, IoSlice, Read};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use log::{debug, error, info, trace, warn};
use mio::Interest;

use crate::config::{Config, MAX_HEADERS_CAP};
use crate::encode::{self, ConnHeader, DateCache};
use crate::error::{is_disconnect, ErrorCode};
use crate::parse::{self, Dechunker, Framing, Head, Reject};
use crate::ratelimit::{Logs, Suppressed};
use crate::request::Version;
use crate::response::Body;
use crate::{header, Handler, Request, Response, Stats};

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
const SEND_BUDGET: usize = 1024 * 1024;
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
    pub(crate) shutdown: &'a crate::shutdown::Shared,
    /// Open connections, for the status endpoint.
    pub(crate) connections: usize,
    pub(crate) started: Instant,
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
    /// The last response is out and the write side shut; input is discarded
    /// until EOF or the linger deadline, so the client reads the response
    /// rather than a reset.
    Linger,
    /// Done; the reactor frees the slot.
    Closed,
}

enum Out {
    None,
    Static(&'static [u8], usize),
    Owned(Vec<u8>, usize),
    File {
        file: File,
        offset: u64,
        remaining: u64,
    },
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
    /// The interest registered with the poller.
    pub(crate) registered: Interest,
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
            None => f.write_str("-"),
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
            registered: Interest::READABLE,
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
        let idle = matches!(self.phase, Phase::Head) && !self.head_started;
        if idle || matches!(self.phase, Phase::Linger) {
            debug!("{} idle, closing", Peer(self.peer));
        } else {
            ctx.stats.timeouts += 1;
            debug!("{} timed out in {:?}", Peer(self.peer), self.phase);
        }
        self.close(ctx);
    }

    /// Shutdown began: a connection with no request in progress closes now;
    /// one in progress finishes its response and then closes.
    pub(crate) fn begin_drain(&mut self, ctx: &mut Ctx<'_>) {
        if matches!(self.phase, Phase::Head | Phase::Linger) {
            self.close(ctx);
        } else {
            self.keep_alive = false;
        }
    }

    fn fill(&mut self, ctx: &mut Ctx<'_>, limit: usize, budget: &mut Budget) -> Fill {
        if self.rbuf.is_empty() {
            self.rbuf = ctx.pool.take_read();
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.end == self.rbuf.len() {
            if self.start > 0 {
                self.rbuf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.scan = self.scan.min(self.end);
                self.start = 0;
            }
            if self.end == self.rbuf.len() {
                let grown = (self.rbuf.len() * 2).min(limit.max(self.rbuf.len() + 1));
                self.rbuf.resize(grown, 0);
            }
        }
        let space = self.rbuf.len() - self.end;
        loop {
            match self.io.read(&mut self.rbuf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Fill::Eof;
                }
                Ok(n) => {
                    self.end += n;
                    budget.read += n;
                    // A short read emptied the socket's queue, and Linux's
                    // edge-triggered epoll reports every later arrival: no
                    // need for the read that would only say WouldBlock.
                    // Unless the FIN is already in: nothing will announce it.
                    if n < space && !self.read_closed {
                        self.readable = false;
                    }
                    return Fill::Data;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return Fill::WouldBlock;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.io_failed(ctx, "read", &e);
                    return Fill::Failed;
                }
            }
        }
    }

    fn io_failed(&mut self, ctx: &mut Ctx<'_>, what: &str, e: &io::Error) {
        if is_disconnect(e) {
            ctx.stats.disconnects += 1;
            debug!("{} disconnected during {what}: {e}", Peer(self.peer));
        } else if let Some(n) = ctx.logs.io.allow(ctx.now) {
            warn!("{} {what} failed: {e}{}", Peer(self.peer), Suppressed(n));
        }
        self.close(ctx);
    }

    fn step_head<H: Handler>(
        &mut self,
        ctx: &mut Ctx<'_>,
        handler: &mut H,
        budget: &mut Budget,
    ) -> Step {
        if self.scan == 0 && self.start < self.end {
            self.start += parse::leading_empty_lines(&self.rbuf[self.start..self.end]);
        }
        let data = &self.rbuf[self.start..self.end];
        if let Some(head_len) = parse::find_head_end(data, self.scan) {
            if budget.requests >= MAX_REQUESTS_PER_TURN {
                return Step::Yield;
            }
            budget.requests += 1;
            self.scan = 0;
            if self.overloaded {
                let r = Reject {
                    code: ErrorCode::Unavailable,
                    detail: "the server is at its connection limit",
                };
                self.reject(ctx, r);
            } else if head_len > ctx.config.max_head_bytes {
                self.reject(ctx, parse::oversized_head(data, ctx.config));
            } else {
                self.on_head(ctx, handler, head_len);
            }
            return Step::Continue;
        }
        self.scan = data.len();
        if data.len() >= ctx.config.max_head_bytes {
            let r = parse::oversized_head(data, ctx.config);
            self.reject(ctx, r);
            return Step::Continue;
        }
        if self.eof {
            if self.start < self.end {
                ctx.stats.disconnects += 1;
                debug!("{} closed in the middle of a request head", Peer(self.peer));
            }
            self.close(ctx);
            return Step::Continue;
        }
        if !self.readable {
            if self.start == self.end && !self.rbuf.is_empty() {
                ctx.pool.give_read(std::mem::take(&mut self.rbuf));
                self.start = 0;
                self.end = 0;
            }
            return Step::Wait;
        }
        if budget.read >= READ_BUDGET {
            return Step::Yield;
        }
        let was_empty = self.start == self.end;
        if let Fill::Data = self.fill(ctx, ctx.config.max_head_bytes, budget) {
            if was_empty && !self.head_started {
                self.head_started = true;
                self.deadline = Some(ctx.after(ctx.config.header_timeout));
            }
        }
        Step::Continue
    }

    fn on_head<H: Handler>(&mut self, ctx: &mut Ctx<'_>, handler: &mut H, head_len: usize) {
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS_CAP];
        let max = ctx.config.max_headers.clamp(1, MAX_HEADERS_CAP);
        let bytes = &self.rbuf[self.start..self.start + head_len];
        let head = match parse::parse_head(bytes, &mut storage[..max], ctx.config) {
            Ok(head) => head,
            Err(r) => return self.reject(ctx, r),
        };
        match head.framing {
            Framing::None => {
                let (resp, info) = call(handler, &head, &[], self.peer, ctx);
                self.start += head_len;
                self.respond(ctx, resp, info);
            }
            Framing::Length(n) => {
                let expect = head.expect_continue;
                // n <= max_body_bytes, checked by the parser.
                let kind = BodyKind::Length(usize::try_from(n).unwrap_or(usize::MAX));
                self.enter_body(ctx, head_len, kind, expect);
            }
            Framing::Chunked => {
                let expect = head.expect_continue;
                self.enter_body(ctx, head_len, BodyKind::Chunked(Dechunker::new()), expect);
            }
        }
    }

    fn enter_body(&mut self, ctx: &mut Ctx<'_>, head_len: usize, kind: BodyKind, expect: bool) {
        if expect && self.end - self.start == head_len {
            if self.wbuf.capacity() == 0 {
                self.wbuf = ctx.pool.take_write();
            }
            self.wbuf
                .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            self.writable = true;
        }
        self.set_phase(Phase::Body { head_len, kind });
        self.deadline = Some(ctx.after(ctx.config.stall_timeout));
    }

    fn step_body<H: Handler>(
        &mut self,
        ctx: &mut Ctx<'_>,
        handler: &mut H,
        budget: &mut Budget,
    ) -> Step {
        if self.wpos < self.wbuf.len() && self.writable && !self.flush_interim(ctx) {
            return Step::Continue; // closed
        }
        let Phase::Body { head_len, kind } = &mut self.phase else {
            return Step::Continue;
        };
        let head_len = *head_len;
        let body_start = self.start + head_len;
        let (done, limit) = match kind {
            BodyKind::Length(n) => {
                let n = *n;
                let done = (self.end - body_start >= n).then_some((n, head_len + n));
                (done, head_len + n)
            }
            BodyKind::Chunked(d) => {
                let max = ctx.config.max_body_bytes;
                match d.decode(&mut self.rbuf[body_start..self.end], max) {
                    Ok(len) => self.end = body_start + len,
                    Err(r) => {
                        self.reject(ctx, r);
                        return Step::Continue;
                    }
                }
                let done = d.is_done().then(|| (d.decoded(), head_len + d.decoded()));
                let cap = usize::try_from(max).unwrap_or(usize::MAX);
                (
                    done,
                    head_len.saturating_add(cap).saturating_add(CHUNK_SLACK),
                )
            }
        };
        if let Some((body_len, consumed)) = done {
            self.on_body(ctx, handler, head_len, body_len, consumed);
            return Step::Continue;
        }
        if self.eof {
            ctx.stats.disconnects += 1;
            debug!("{} closed in the middle of a request body", Peer(self.peer));
            self.close(ctx);
            return Step::Continue;
        }
        if !self.readable {
            return Step::Wait;
        }
        if budget.read >= READ_BUDGET {
            return Step::Yield;
        }
        if let Fill::Data = self.fill(ctx, limit, budget) {
            self.deadline = Some(ctx.after(ctx.config.stall_timeout));
        }
        Step::Continue
    }

    /// Writes the pending `100 Continue`; false if the connection closed.
    fn flush_interim(&mut self, ctx: &mut Ctx<'_>) -> bool {
        while self.wpos < self.wbuf.len() {
            match self
                .io
                .send(&[IoSlice::new(&self.wbuf[self.wpos..])], false)
            {
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.writable = false;
                    return true;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.io_failed(ctx, "write", &e);
                    return false;
                }
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        true
    }

    fn on_body<H: Handler>(
        &mut self,
        ctx: &mut Ctx<'_>,
        handler: &mut H,
        head_len: usize,
        body_len: usize,
        consumed: usize,
    ) {
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS_CAP];
        let max = ctx.config.max_headers.clamp(1, MAX_HEADERS_CAP);
        let head_bytes = &self.rbuf[self.start..self.start + head_len];
        let body = &self.rbuf[self.start + head_len..self.start + head_len + body_len];
        // The head parsed before; parsing the same bytes again cannot fail.
        let head = match parse::parse_head(head_bytes, &mut storage[..max], ctx.config) {
            Ok(head) => head,
            Err(r) => return self.reject(ctx, r),
        };
        let (resp, info) = call(handler, &head, body, self.peer, ctx);
        self.start += consumed;
        self.respond(ctx, resp, info);
    }

    /// Refuses the request: a complete error response, then a close, since
    /// the framing of anything after it is in doubt.
    fn reject(&mut self, ctx: &mut Ctx<'_>, r: Reject) {
        if r.code == ErrorCode::Unavailable {
            ctx.stats.rejected += 1;
        } else {
            ctx.stats.bad_requests += 1;
        }
        debug!(
            "{} refused: {} {}: {}",
            Peer(self.peer),
            r.code.status(),
            r.code,
            r.detail
        );
        let mut resp = Response::error(r.code, r.detail);
        if parse::raw_accepts_json(&self.rbuf[self.start..self.end]) {
            resp.render_error_as_json();
        }
        self.start = self.end;
        self.linger_after = true;
        let info = Info {
            version: Version::Http11,
            keep_alive: false,
            is_head: false,
        };
        self.respond(ctx, resp, info);
    }

    fn respond(&mut self, ctx: &mut Ctx<'_>, resp: Response, info: Info) {
        let (mut status, headers, body) = resp.into_parts();
        if !(200..=999).contains(&status) {
            if let Some(n) = ctx.logs.handler.allow(ctx.now) {
                warn!(
                    "handler returned status {status}; sending 500{}",
                    Suppressed(n)
                );
            }
            status = 500;
        }
        let mut keep = info.keep_alive && !ctx.closing();
        for (name, value) in headers.iter() {
            if name.eq_ignore_ascii_case(header::CONNECTION)
                && value
                    .split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("close"))
            {
                keep = false;
            }
        }
        let conn_header = match (keep, info.version) {
            (false, _) => ConnHeader::Close,
            (true, Version::Http10) => ConnHeader::KeepAlive,
            (true, Version::Http11) => ConnHeader::None,
        };
        let no_body = encode::status_has_no_body(status);
        if self.wbuf.capacity() == 0 {
            self.wbuf = ctx.pool.take_write();
        }
        let (logs, now) = (&mut ctx.logs.handler, ctx.now);
        let kept = headers.iter().filter(|(n, v)| keep_header(n, v, logs, now));
        let length = (!no_body).then(|| body.len());
        encode::encode_head(
            &mut self.wbuf,
            status,
            kept,
            length,
            conn_header,
            ctx.date.value(),
        );
        self.out = if no_body || info.is_head {
            Out::None
        } else {
            match body {
                Body::Empty => Out::None,
                Body::Static(b) => Out::Static(b, 0),
                Body::Bytes(b) => Out::Owned(b, 0),
                Body::File { len: 0, .. } => Out::None,
                Body::File { file, offset, len } => Out::File {
                    file,
                    offset,
                    remaining: len,
                },
            }
        };
        self.keep_alive = keep;
        self.head_started = false;
        self.set_phase(Phase::Respond);
        self.writable = true; // the socket is usually writable: try at once
        self.deadline = Some(ctx.after(ctx.config.stall_timeout));
    }

    fn step_respond(&mut self, ctx: &mut Ctx<'_>, budget: &mut Budget) -> Step {
        loop {
            if !self.writable {
                return Step::Wait;
            }
            if budget.sent >= SEND_BUDGET {
                return Step::Yield;
            }
            let head = &self.wbuf[self.wpos..];
            let res = match &self.out {
                Out::None if head.is_empty() => break,
                Out::None => self.io.send(&[IoSlice::new(head)], false),
                Out::Static(b, pos) if head.is_empty() && *pos == b.len() => break,
                Out::Static(b, pos) => self
                    .io
                    .send(&[IoSlice::new(head), IoSlice::new(&b[*pos..])], false),
                Out::Owned(b, pos) if head.is_empty() && *pos == b.len() => break,
                Out::Owned(b, pos) => self
                    .io
                    .send(&[IoSlice::new(head), IoSlice::new(&b[*pos..])], false),
                Out::File { remaining, .. } if !head.is_empty() => {
                    self.io.send(&[IoSlice::new(head)], *remaining > 0)
                }
                Out::File { remaining: 0, .. } => break,
                Out::File {
                    file,
                    offset,
                    remaining,
                } => {
                    let want = (*remaining).min((SEND_BUDGET - budget.sent) as u64) as usize;
                    match self.io.send_file(file, *offset, want) {
                        Ok(0) => {
                            if let Some(n) = ctx.logs.short_file.allow(ctx.now) {
                                error!(
                                    "{} file ended {} bytes short of the promised length; closing{}",
                                    Peer(self.peer),
                                    remaining,
                                    Suppressed(n)
                                );
                            }
                            self.close(ctx);
                            return Step::Continue;
                        }
                        r => r,
                    }
                }
            };
            match res {
                Ok(n) => {
                    self.advance(n);
                    budget.sent += n;
                    ctx.stats.bytes_sent += n as u64;
                    self.deadline = Some(ctx.after(ctx.config.stall_timeout));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.io_failed(ctx, "write", &e);
                    return Step::Continue;
                }
            }
        }
        self.finish_response(ctx);
        Step::Continue
    }

    /// Moves the write cursors past `n` sent bytes: head first, then body.
    fn advance(&mut self, n: usize) {
        let head_left = self.wbuf.len() - self.wpos;
        let in_head = n.min(head_left);
        self.wpos += in_head;
        let rest = n - in_head;
        match &mut self.out {
            Out::None => {}
            Out::Static(_, pos) | Out::Owned(_, pos) => *pos += rest,
            Out::File {
                offset, remaining, ..
            } => {
                *offset += rest as u64;
                *remaining -= rest as u64;
            }
        }
    }

    fn finish_response(&mut self, ctx: &mut Ctx<'_>) {
        self.out = Out::None;
        self.wbuf.clear();
        self.wpos = 0;
        // A stray CRLF after a body is not the start of a request.
        self.start += parse::leading_empty_lines(&self.rbuf[self.start..self.end]);
        // Input may be waiting: in our buffer, or in the kernel's (the poller
        // said readable since our last read). Closing over unread input sends
        // a reset, which can destroy response bytes the kernel has not sent.
        let input_pending =
            self.start < self.end || ((self.readable || self.read_closed) && !self.eof);
        if self.linger_after || (!self.keep_alive && input_pending) {
            // Unread input: a close now would reset the connection and could
            // destroy the response before the client reads it.
            self.io.shutdown_write();
            self.start = self.end;
            self.set_phase(Phase::Linger);
            self.deadline = Some(ctx.after(ctx.config.linger_timeout));
        } else if self.keep_alive && !ctx.closing() {
            if !self.nodelay {
                // Only kept-alive connections can have a small response
                // follow an unacknowledged one (pipelining), which Nagle's
                // algorithm would hold for a delayed ACK; one-shot
                // connections skip the syscall.
                self.io.set_nodelay();
                self.nodelay = true;
            }
            self.set_phase(Phase::Head);
            if self.start < self.end {
                self.head_started = true;
                self.deadline = Some(ctx.after(ctx.config.header_timeout));
            } else {
                self.deadline = Some(ctx.after(ctx.config.idle_timeout));
                ctx.pool.give_write(std::mem::take(&mut self.wbuf));
            }
        } else {
            self.close(ctx);
        }
    }

    fn step_linger(&mut self, ctx: &mut Ctx<'_>, budget: &mut Budget) -> Step {
        if self.eof {
            self.close(ctx);
            return Step::Continue;
        }
        if !self.readable {
            return Step::Wait;
        }
        if budget.read >= READ_BUDGET {
            return Step::Yield;
        }
        let _ = self.fill(ctx, READ_BUF, budget);
        self.start = self.end; // discard
        Step::Continue
    }
}

/// Calls the handler with a panic guard and writes the access-log line.
fn call<H: Handler>(
    handler: &mut H,
    head: &Head<'_, '_>,
    body: &[u8],
    peer: Option<SocketAddr>,
    ctx: &mut Ctx<'_>,
) -> (Response, Info) {
    let req = Request {
        method: head.method,
        target: head.target,
        version: head.version,
        headers: head.headers,
        body,
        peer,
    };
    ctx.stats.requests += 1;
    let mut info = Info {
        version: head.version,
        keep_alive: head.keep_alive,
        is_head: head.method == "HEAD",
    };
    let status_endpoint = ctx
        .config
        .status_path
        .as_deref()
        .is_some_and(|p| p == req.path() && matches!(req.method, "GET" | "HEAD"));
    let mut resp = if status_endpoint {
        status_response(ctx)
    } else {
        match catch_unwind(AssertUnwindSafe(|| handler.handle(&req))) {
            Ok(resp) => resp,
            Err(payload) => {
                ctx.stats.panics += 1;
                if let Some(n) = ctx.logs.panic.allow(ctx.now) {
                    let msg = payload
                        .downcast_ref::<&str>()
                        .copied()
                        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                        .unwrap_or("(non-string payload)");
                    error!(
                        "{} handler panicked on {} {}: {msg}{}",
                        Peer(peer),
                        head.method,
                        head.target,
                        Suppressed(n)
                    );
                }
                info.keep_alive = false;
                Response::error(ErrorCode::Internal, "the handler failed")
            }
        }
    };
    if resp.error_code().is_some()
        && req
            .header(header::ACCEPT)
            .is_some_and(|a| parse::accepts_json(a.as_bytes()))
    {
        resp.render_error_as_json();
    }
    info!(
        target: "keelhttp::access",
        "{} \"{} {} {}\" {} {}",
        Peer(peer),
        head.method,
        head.target,
        head.version,
        resp.status(),
        resp.body().len()
    );
    (resp, info)
}

/// The status endpoint's answer: JSON counters; 503 `draining` once
/// shutdown has begun, so a load balancer moves on.
fn status_response(ctx: &Ctx<'_>) -> Response {
    let st = &ctx.stats;
    let uptime = ctx.now.duration_since(ctx.started).as_secs_f64();
    let mut body = format!(
        "{{\"uptime\":{uptime:.3},\"connections\":{},\"requests\":{},\"bytes_sent\":{},\
         \"disconnects\":{},\"timeouts\":{},\"rejected\":{},\"draining\":{}",
        ctx.connections,
        st.requests,
        st.bytes_sent,
        st.disconnects,
        st.timeouts,
        st.rejected,
        ctx.draining
    );
    if ctx.draining {
        body.push_str(
            ",\"error\":{\"code\":\"draining\",\"message\":\"the server is shutting down\"}}\n",
        );
        Response::new(ErrorCode::Draining.status())
            .with_header(header::CONTENT_TYPE, "application/json")
            .with_header(header::RETRY_AFTER, "1")
            .with_header(header::CACHE_CONTROL, "no-store")
            .with_body(body)
    } else {
        body.push_str("}\n");
        Response::new(200)
            .with_header(header::CONTENT_TYPE, "application/json")
            .with_header(header::CACHE_CONTROL, "no-store")
            .with_body(body)
    }
}

/// The server owns framing; a handler's own copies of these are dropped, as
/// is anything that could split the response.
fn keep_header(
    name: &str,
    value: &str,
    logs: &mut crate::ratelimit::LogLimit,
    now: Instant,
) -> bool {
    const OWNED: [&str; 5] = [
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::CONNECTION,
        header::DATE,
        header::SERVER,
    ];
    if OWNED.iter().any(|o| o.eq_ignore_ascii_case(name)) {
        return false;
    }
    if !encode::header_is_safe(name, value) {
        if let Some(n) = logs.allow(now) {
            warn!(
                "dropping response header {name:?}: it could split the response{}",
                Suppressed(n)
            );
        }
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A transport that plays a script: each read returns the next item;
    /// each write accepts at most the next allowance (or `WouldBlock`).
    #[derive(Default)]
    struct Script {
        reads: VecDeque<io::Result<Vec<u8>>>,
        /// `Some(n)`: accept at most n bytes; `None`: WouldBlock.
        writes: VecDeque<Option<usize>>,
        written: Vec<u8>,
        shut: bool,
    }

    fn would_block() -> io::Error {
        io::Error::from(io::ErrorKind::WouldBlock)
    }

    impl Transport for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.reads.pop_front() {
                None => Err(would_block()),
                Some(Err(e)) => Err(e),
                Some(Ok(mut data)) => {
                    let n = data.len().min(buf.len());
                    buf[..n].copy_from_slice(&data[..n]);
                    if n < data.len() {
                        self.reads.push_front(Ok(data.split_off(n)));
                    }
                    Ok(n)
                }
            }
        }

        fn send(&mut self, bufs: &[IoSlice<'_>], _more: bool) -> io::Result<usize> {
            let allowance = match self.writes.pop_front() {
                Some(None) => return Err(would_block()),
                Some(Some(n)) => n,
                None => usize::MAX,
            };
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(allowance - n);
                self.written.extend_from_slice(&b[..take]);
                n += take;
            }
            Ok(n)
        }

        fn send_file(&mut self, _f: &File, _o: u64, _l: usize) -> io::Result<usize> {
            unreachable!("no file bodies in these tests")
        }

        fn shutdown_write(&mut self) {
            self.shut = true;
        }

        fn set_nodelay(&mut self) {}
    }

    struct Rig {
        config: Config,
        date: DateCache,
        stats: Stats,
        pool: Pool,
        logs: Logs,
        shared: crate::shutdown::Shared,
        now: Instant,
    }

    impl Rig {
        fn new() -> Rig {
            Rig {
                config: Config::default(),
                date: DateCache::new(),
                stats: Stats::default(),
                pool: Pool::default(),
                logs: Logs::default(),
                shared: crate::shutdown::Shared::detached(),
                now: Instant::now(),
            }
        }

        fn drive(&mut self, conn: &mut Conn<Script>) -> bool {
            let mut ctx = Ctx {
                config: &self.config,
                now: self.now,
                date: &self.date,
                stats: &mut self.stats,
                pool: &mut self.pool,
                logs: &mut self.logs,
                draining: false,
                shutdown: &self.shared,
                connections: 1,
                started: self.now,
            };
            let mut handler = |req: &Request<'_>| {
                Response::text(
                    200,
                    format!("{} {} {}", req.method(), req.target(), req.body().len()),
                )
            };
            conn.drive(&mut ctx, &mut handler)
        }
    }

    fn bodies(written: &[u8]) -> Vec<String> {
        let text = String::from_utf8_lossy(written);
        text.split("HTTP/1.1 ")
            .skip(1)
            .map(|r| r.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
            .collect()
    }

    #[test]
    fn head_in_fragments_with_would_block_between() {
        let mut rig = Rig::new();
        let mut conn = Conn::new(Script::default(), None, rig.now, &rig.config, false);
        conn.io.reads.push_back(Ok(b"GET /a HT".to_vec()));
        rig.drive(&mut conn);
        assert!(!conn.readable, "WouldBlock clears readability");
        assert!(conn.io.written.is_empty());
        for piece in [&b"TP/1.1\r\nHo"[..], b"st: x\r", b"\n", b"\r\n"] {
            conn.io.reads.push_back(Ok(piece.to_vec()));
            conn.readable = true; // the event
            rig.drive(&mut conn);
        }
        assert_eq!(bodies(&conn.io.written), ["GET /a 0"]);
        assert!(matches!(conn.phase, Phase::Head));
        assert_eq!(conn.interest(), Interest::READABLE);
        assert!(
            conn.rbuf.is_empty(),
            "an idle connection holds no read buffer"
        );
    }

    #[test]
    fn short_writes_and_would_block_resume_where_they_stopped() {
        let mut rig = Rig::new();
        let mut conn = Conn::new(Script::default(), None, rig.now, &rig.config, false);
        conn.io
            .reads
            .push_back(Ok(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()));
        conn.io.writes.extend([Some(5), Some(1), None]);
        rig.drive(&mut conn);
        assert!(matches!(conn.phase, Phase::Respond));
        assert!(!conn.writable);
        assert_eq!(conn.interest(), Interest::READABLE | Interest::WRITABLE);
        assert_eq!(conn.io.written, b"HTTP/1");
        conn.io.writes.extend([Some(40), None]);
        conn.writable = true;
        rig.drive(&mut conn);
        assert_eq!(conn.io.written.len(), 46);
        conn.writable = true;
        rig.drive(&mut conn);
        assert_eq!(bodies(&conn.io.written), ["GET /b 0"]);
        assert!(matches!(conn.phase, Phase::Head));
        assert_eq!(conn.interest(), Interest::READABLE);
    }

    #[test]
    fn chunked_body_split_across_reads_then_pipelined_request() {
        let mut rig = Rig::new();
        let mut conn = Conn::new(Script::default(), None, rig.now, &rig.config, false);
        let raw: &[u8] = b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
4\r\nwiki\r\n5\r\npedia\r\n0\r\n\r\nGET /d HTTP/1.1\r\nHost: x\r\n\r\n";
        for piece in raw.chunks(3) {
            conn.io.reads.push_back(Ok(piece.to_vec()));
            conn.io.reads.push_back(Err(would_block()));
        }
        for _ in 0..raw.len() {
            conn.readable = true;
            rig.drive(&mut conn);
        }
        assert_eq!(bodies(&conn.io.written), ["POST /c 9", "GET /d 0"]);
    }

    #[test]
    fn eof_after_requests_answers_them_then_closes() {
        let mut rig = Rig::new();
        let mut conn = Conn::new(Script::default(), None, rig.now, &rig.config, false);
        conn.io.reads.push_back(Ok(
            b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ));
        conn.io.reads.push_back(Ok(Vec::new())); // EOF: the client half-closed
        conn.read_closed = true; // as the poller reports it (EPOLLRDHUP)
        rig.drive(&mut conn);
        assert_eq!(bodies(&conn.io.written), ["GET /1 0", "GET /2 0"]);
        assert!(conn.is_closed());
        assert_eq!(
            rig.stats.disconnects, 0,
            "a clean EOF between requests is no disconnect"
        );
    }

    #[test]
    fn reset_mid_head_closes_and_counts_a_disconnect() {
        let mut rig = Rig::new();
        let mut conn = Conn::new(Script::default(), None, rig.now, &rig.config, false);
        conn.io.reads.push_back(Ok(b"GET /x HTT".to_vec()));
        conn.io
            .reads
            .push_back(Err(io::Error::from(io::ErrorKind::ConnectionReset)));
        rig.drive(&mut conn);
        assert!(!conn.readable, "a short read leaves the socket drained");
        // The reset arrives as its own event (EPOLLERR / EPOLLHUP).
        conn.readable = true;
        conn.read_closed = true;
        rig.drive(&mut conn);
        assert!(conn.is_closed());
        assert_eq!(rig.stats.disconnects, 1);
    }

    #[test]
    fn request_budget_yields_and_resumes() {
        let mut rig = Rig::new();
        let mut conn = Conn::new(Script::default(), None, rig.now, &rig.config, false);
        let many: Vec<u8> = (0..40)
            .flat_map(|i| format!("GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes())
            .collect();
        conn.io.reads.push_back(Ok(many));
        assert!(rig.drive(&mut conn), "more work left after the budget");
        assert_eq!(
            bodies(&conn.io.written).len(),
            MAX_REQUESTS_PER_TURN as usize
        );
        let mut turns = 1;
        while rig.drive(&mut conn) {
            turns += 1;
            assert!(turns < 10);
        }
        assert_eq!(bodies(&conn.io.written).len(), 40);
    }

    #[test]
    fn malformed_head_gets_400_then_lingers_with_write_side_shut() {
        let mut rig = Rig::new();
        let mut conn = Conn::new(Script::default(), None, rig.now, &rig.config, false);
        conn.io
            .reads
            .push_back(Ok(b"GET / HTTP/1.1\r\nBad Header\r\n\r\nmore junk".to_vec()));
        rig.drive(&mut conn);
        let out = String::from_utf8_lossy(&conn.io.written).into_owned();
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
        assert!(out.contains("Connection: close\r\n"));
        assert!(conn.io.shut);
        assert!(matches!(conn.phase, Phase::Linger));
        conn.io.reads.push_back(Ok(Vec::new()));
        conn.readable = true;
        rig.drive(&mut conn);
        assert!(conn.is_closed());
    }
}
