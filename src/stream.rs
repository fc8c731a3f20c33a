//! Streams both ways for embedders: answers that come later ([`Reply`]),
//! response bodies the host feeds ([`BodySender`], and [`Sse`] on top of it)
//! and request bodies that reach the handler in pieces ([`BodyReader`]).
//!
//! Each of these is one small shared state (a mutex and a condition
//! variable) between the connection, which lives on the server's thread, and
//! a token the host keeps. The tokens are `Send`: complete them on the loop
//! thread (inside a handler, or between [`Server::poll_once`] calls) or on
//! any other thread; a token that changes something wakes the loop through
//! the same waker the [`ShutdownHandle`] uses, and only that connection is
//! looked at again. Every buffer is bounded by [`Config::stream_buffer_bytes`].
//!
//! [`Server::poll_once`]: crate::Server::poll_once
//! [`ShutdownHandle`]: crate::ShutdownHandle
//! [`Config::stream_buffer_bytes`]: crate::Config::stream_buffer_bytes
//!
//! ```no_run
//! use keelhttp::{Config, Request, Response, Server};
//!
//! let server = Server::bind("127.0.0.1:0", Config::default())?;
//! server.run(|req: &Request| {
//!     let (resp, reply) = Response::deferred();
//!     let id = req.path().to_owned();
//!     std::thread::spawn(move || {
//!         // ... work that takes a while ...
//!         let _ = reply.send(Response::text(200, format!("done {id}\n")));
//!     });
//!     resp
//! })?;
//! # Ok::<(), keelhttp::Error>(())
//! ```

use std::fmt;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::response::Body;
use crate::shutdown::Shared;
use crate::{header, Response};

/// A stream's buffer until the connection applies the configured size.
pub(crate) const DEFAULT_BUFFER: usize = 64 * 1024;

/// Connections whose stream or deferred reply has news; the loop takes them
/// when its waker fires.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    woken: Mutex<Vec<usize>>,
}

impl Hub {
    fn push(&self, key: usize) {
        self.woken
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(key);
    }

    /// Moves the woken keys into `out` (which the caller keeps for reuse).
    pub(crate) fn take(&self, out: &mut Vec<usize>) {
        let mut w = self.woken.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::swap(&mut *w, out);
    }
}

/// A callback the host registers to hear about room, data or a close.
type Notify = Box<dyn FnMut() + Send>;

/// The state shared by one connection and one host token.
pub(crate) struct Chan {
    state: Mutex<State>,
    cond: Condvar,
    /// What the host promised (fixed at creation; kept here so that
    /// `Body::Later` is one pointer and `Body` stays small).
    kind: LaterKind,
}

#[derive(Default)]
struct State {
    /// The loop to wake and the connection's slot, once the connection owns
    /// the stream (before that, nobody needs waking: the connection looks
    /// when it takes the response).
    link: Option<(Arc<Shared>, usize)>,
    /// A wake is pending; cleared when the connection looks.
    notified: bool,
    /// The connection closed (or the response was dropped unsent).
    gone: bool,
    /// Deferred: the answer.
    reply: Option<Response>,
    /// The host side dropped its token without finishing.
    dropped: bool,
    /// Body bytes in flight (either direction).
    buf: Vec<u8>,
    cap: usize,
    /// The body is complete (sender finished, or the whole upload is in).
    finished: bool,
    /// Someone waits for room (a refused push, or a paused upload): tell
    /// them when there is room again.
    waiting: bool,
    notify: Option<Notify>,
    /// Bytes pushed so far, against `limit`.
    total: u64,
    limit: Option<u64>,
}

impl fmt::Debug for Chan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.lock();
        f.debug_struct("Chan")
            .field("buffered", &st.buf.len())
            .field("finished", &st.finished)
            .field("gone", &st.gone)
            .finish_non_exhaustive()
    }
}

/// What a connection finds when it looks at a deferred reply.
pub(crate) enum ReplyState {
    Ready(Response),
    Dropped,
    Pending,
}

/// What a connection finds when it takes outgoing stream data.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum OutState {
    /// `n` bytes moved into the caller's buffer.
    Data,
    /// Nothing yet.
    Empty,
    /// The host finished the body.
    Finished,
    /// The host dropped its sender without finishing.
    Aborted,
}

impl Chan {
    fn new(cap: usize, kind: LaterKind) -> Arc<Chan> {
        let limit = match kind {
            LaterKind::Stream { length, .. } => length,
            LaterKind::Reply => None,
        };
        Arc::new(Chan {
            state: Mutex::new(State {
                cap,
                limit,
                ..State::default()
            }),
            cond: Condvar::new(),
            kind,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the loop for this connection (at most one pending wake).
    fn wake_loop(st: &mut State) {
        if st.notified {
            return;
        }
        if let Some((shared, key)) = &st.link {
            st.notified = true;
            shared.hub.push(*key);
            shared.wake();
        }
    }

    /// Runs the host's callback, outside the lock (it may push again).
    fn call_notify(&self, mut st: MutexGuard<'_, State>) {
        let Some(mut f) = st.notify.take() else {
            return;
        };
        drop(st);
        f();
        let mut st = self.lock();
        if st.notify.is_none() {
            st.notify = Some(f);
        }
    }

    /// The connection takes the stream: from now on changes wake the loop.
    pub(crate) fn attach(&self, shared: &Arc<Shared>, key: usize, cap: usize) {
        let mut st = self.lock();
        st.link = Some((Arc::clone(shared), key));
        st.cap = cap.max(1);
        st.notified = false;
    }

    /// The connection is gone (closed, cut, or it never sent the body).
    pub(crate) fn close(&self) {
        let mut st = self.lock();
        if st.gone {
            return;
        }
        st.gone = true;
        st.link = None;
        st.buf = Vec::new();
        self.cond.notify_all();
        self.call_notify(st);
    }

    pub(crate) fn take_reply(&self) -> ReplyState {
        let mut st = self.lock();
        st.notified = false;
        match st.reply.take() {
            Some(r) => ReplyState::Ready(r),
            None if st.dropped => ReplyState::Dropped,
            None => ReplyState::Pending,
        }
    }

    /// Moves buffered outgoing bytes into `out` (empty on entry).
    pub(crate) fn take_out(&self, out: &mut Vec<u8>) -> OutState {
        let mut st = self.lock();
        st.notified = false;
        if !st.buf.is_empty() {
            std::mem::swap(&mut st.buf, out);
            if st.waiting {
                st.waiting = false;
                self.cond.notify_all();
                self.call_notify(st);
            }
            return OutState::Data;
        }
        if st.finished {
            OutState::Finished
        } else if st.dropped {
            OutState::Aborted
        } else {
            OutState::Empty
        }
    }

    /// Upload: hands body bytes to the reader; returns how many fit. Fewer
    /// than offered means the buffer is full: the reader wakes the loop
    /// when it makes room. A reader that went away takes everything (the
    /// bytes are discarded).
    pub(crate) fn put_in(&self, data: &[u8]) -> usize {
        let mut st = self.lock();
        st.notified = false;
        if st.dropped {
            return data.len();
        }
        let n = data.len().min(st.cap.saturating_sub(st.buf.len()));
        if n < data.len() {
            st.waiting = true;
        }
        if n == 0 {
            return 0;
        }
        st.buf.extend_from_slice(&data[..n]);
        self.cond.notify_all();
        self.call_notify(st);
        n
    }

    /// Upload: the whole body is in.
    pub(crate) fn finish_in(&self) {
        let mut st = self.lock();
        st.finished = true;
        self.cond.notify_all();
        self.call_notify(st);
    }
}

/// What a push into a stream did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Push {
    /// Queued; the connection sends it as the client reads.
    Sent,
    /// The buffer is full: nothing was queued. Try again when there is room
    /// ([`BodySender::wait_room`], or the callback of
    /// [`BodySender::on_room`]).
    Full,
    /// The client is gone (or the response went out without a body, as
    /// for `HEAD`): stop producing.
    Closed,
    /// More bytes than the `Content-Length` the stream announced: refused.
    TooLong,
}

/// Content the host supplies after the handler returns: a deferred answer
/// ([`Response::deferred`]) or a streamed body ([`Response::stream`]).
/// Opaque; it lives in [`Body::Later`].
pub struct Later {
    pub(crate) chan: Arc<Chan>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LaterKind {
    /// The whole response comes later.
    Reply,
    /// The body comes later, in pieces.
    Stream {
        length: Option<u64>,
        ping: Option<Duration>,
    },
}

impl Later {
    /// A deferred answer or a streamed body, with its length and pings.
    pub(crate) fn kind(&self) -> LaterKind {
        self.chan.kind
    }

    /// The announced length of a streamed body, if the host gave one.
    pub(crate) fn length(&self) -> Option<u64> {
        match self.chan.kind {
            LaterKind::Stream { length, .. } => length,
            LaterKind::Reply => None,
        }
    }
}

impl Drop for Later {
    /// A response dropped unsent (a `HEAD`, a 304, a closed connection)
    /// tells the host at once.
    fn drop(&mut self) {
        self.chan.close();
    }
}

impl fmt::Debug for Later {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Later({:?})", self.chan.kind)
    }
}

/// The token for a deferred response: [`Reply::send`] answers the request.
/// `Send`: complete it on the loop thread or any other. Dropping it unsent
/// answers `500 internal`.
pub struct Reply {
    chan: Arc<Chan>,
    sent: bool,
}

impl Reply {
    /// Answers the request (the response may itself be a stream). Returns
    /// the response back if the client is already gone.
    ///
    /// # Errors
    /// The connection closed (the client disconnected, or the drain
    /// deadline passed): nothing was sent.
    #[allow(clippy::result_large_err)] // the caller gets its response back
    pub fn send(mut self, resp: Response) -> Result<(), Response> {
        let mut st = self.chan.lock();
        if st.gone {
            return Err(resp);
        }
        st.reply = Some(resp);
        self.sent = true;
        Chan::wake_loop(&mut st);
        Ok(())
    }

    /// Whether the connection has closed: a reply would go nowhere.
    pub fn is_gone(&self) -> bool {
        self.chan.lock().gone
    }

    /// Calls `f` on the server's thread when the connection closes before
    /// the reply is sent (so a host can stop the work early). It may also be
    /// called spuriously; check [`Reply::is_gone`].
    pub fn on_gone(&self, f: impl FnMut() + Send + 'static) {
        self.chan.lock().notify = Some(Box::new(f));
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if !self.sent {
            let mut st = self.chan.lock();
            st.dropped = true;
            Chan::wake_loop(&mut st);
        }
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reply")
            .field("gone", &self.is_gone())
            .finish()
    }
}

/// The host's end of a streamed response body ([`Response::stream`]).
/// `Send`: push from the loop thread or any other. [`BodySender::finish`]
/// ends the body; dropping it unfinished cuts the connection, so the client
/// never takes a partial body for a whole one.
pub struct BodySender {
    chan: Arc<Chan>,
    finished: bool,
}

impl BodySender {
    /// Queues `data` as the next piece of the body. A piece is taken whole
    /// or not at all: [`Push::Full`] when it does not fit in what is left of
    /// the buffer ([`Config::stream_buffer_bytes`](crate::Config)); a piece
    /// larger than the whole buffer is taken only when the buffer is empty.
    pub fn push(&self, data: &[u8]) -> Push {
        let mut st = self.chan.lock();
        if st.gone {
            return Push::Closed;
        }
        if let Some(limit) = st.limit {
            if st.total.saturating_add(data.len() as u64) > limit {
                return Push::TooLong;
            }
        }
        if !st.buf.is_empty() && st.buf.len() + data.len() > st.cap {
            st.waiting = true;
            return Push::Full;
        }
        if data.is_empty() {
            return Push::Sent;
        }
        st.buf.extend_from_slice(data);
        st.total += data.len() as u64;
        Chan::wake_loop(&mut st);
        Push::Sent
    }

    /// Blocks until a push of `len` bytes would fit, the client is gone, or
    /// `timeout` passes; returns whether there is room. For threads other
    /// than the server's (on the server's thread it would block the loop).
    pub fn wait_room(&self, len: usize, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        let mut st = self.chan.lock();
        loop {
            if st.gone {
                return false;
            }
            if st.buf.is_empty() || st.buf.len() + len <= st.cap {
                return true;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st.waiting = true;
            st = self
                .chan
                .cond
                .wait_timeout(st, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Calls `f` on the server's thread when a refused push would now fit,
    /// and when the client goes away. Replaces an earlier callback.
    pub fn on_room(&self, f: impl FnMut() + Send + 'static) {
        self.chan.lock().notify = Some(Box::new(f));
    }

    /// Whether the client is gone.
    pub fn is_closed(&self) -> bool {
        self.chan.lock().gone
    }

    /// Ends the body: the connection sends what is queued, then the end of
    /// the body (the last chunk; for a body of known length, anything short
    /// of it cuts the connection instead).
    pub fn finish(mut self) {
        self.finished = true;
        let mut st = self.chan.lock();
        st.finished = true;
        Chan::wake_loop(&mut st);
    }
}

impl Drop for BodySender {
    fn drop(&mut self) {
        if !self.finished {
            let mut st = self.chan.lock();
            st.dropped = true;
            Chan::wake_loop(&mut st);
        }
    }
}

impl fmt::Debug for BodySender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodySender").finish_non_exhaustive()
    }
}

impl Response {
    /// A response that comes later: return the first half from the handler,
    /// keep the [`Reply`] and [`send`](Reply::send) the answer when it is
    /// ready. Until then the connection waits (it counts as in flight for a
    /// drain, and gets `503 draining` at the drain deadline); if the client
    /// disconnects meanwhile, the connection closes at once and
    /// [`Reply::is_gone`] says so.
    pub fn deferred() -> (Response, Reply) {
        let chan = Chan::new(0, LaterKind::Reply);
        let later = Later {
            chan: Arc::clone(&chan),
        };
        (
            Response::new(200).with_body(Body::Later(later)),
            Reply { chan, sent: false },
        )
    }

    /// A response whose body the host pushes through the [`BodySender`]:
    /// chunked to HTTP/1.1 clients, delimited by the close for HTTP/1.0.
    /// A `HEAD` gets the head only (the sender reports [`Push::Closed`]).
    pub fn stream(status: u16) -> (Response, BodySender) {
        Response::stream_inner(status, None, None)
    }

    /// A streamed body of a known length, sent with `Content-Length`.
    /// Finishing short of it cuts the connection; pushing past it is refused
    /// ([`Push::TooLong`]).
    pub fn stream_with_length(status: u16, len: u64) -> (Response, BodySender) {
        Response::stream_inner(status, Some(len), None)
    }

    fn stream_inner(
        status: u16,
        length: Option<u64>,
        ping: Option<Duration>,
    ) -> (Response, BodySender) {
        let chan = Chan::new(DEFAULT_BUFFER, LaterKind::Stream { length, ping });
        let later = Later {
            chan: Arc::clone(&chan),
        };
        (
            Response::new(status).with_body(Body::Later(later)),
            BodySender {
                chan,
                finished: false,
            },
        )
    }
}

/// Server-sent events (`text/event-stream`) on top of a [`BodySender`].
///
/// ```no_run
/// use std::time::Duration;
/// use keelhttp::{Event, Push, Sse};
///
/// let (resp, sse) = Sse::response(Some(Duration::from_secs(15)));
/// // return `resp` from the handler; keep `sse` (it is Send)
/// let _ = sse.send(&Event::new("12:00:00").event("tick").id("1"));
/// # drop(resp);
/// ```
pub struct Sse {
    tx: BodySender,
}

/// One server-sent event: `data` (split into `data:` lines), and an optional
/// `event:` type, `id:` and `retry:` (reconnection delay in milliseconds).
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    data: &'a str,
    event: Option<&'a str>,
    id: Option<&'a str>,
    retry: Option<u32>,
}

impl<'a> Event<'a> {
    /// An event carrying `data` (it may hold newlines).
    pub fn new(data: &'a str) -> Event<'a> {
        Event {
            data,
            event: None,
            id: None,
            retry: None,
        }
    }

    /// Sets the event type (`event:`); line breaks in it are dropped.
    pub fn event(mut self, name: &'a str) -> Event<'a> {
        self.event = Some(name);
        self
    }

    /// Sets the event id (`id:`); line breaks and NUL in it are dropped.
    pub fn id(mut self, id: &'a str) -> Event<'a> {
        self.id = Some(id);
        self
    }

    /// Asks the client to wait `ms` milliseconds before reconnecting.
    pub fn retry(mut self, ms: u32) -> Event<'a> {
        self.retry = Some(ms);
        self
    }

    /// The event in wire format, ending with the blank line.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + 32);
        let field = |out: &mut Vec<u8>, name: &str, value: &str| {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend(
                value
                    .bytes()
                    .filter(|&b| b != b'\r' && b != b'\n' && b != 0),
            );
            out.push(b'\n');
        };
        if let Some(e) = self.event {
            field(&mut out, "event", e);
        }
        if let Some(id) = self.id {
            field(&mut out, "id", id);
        }
        if let Some(ms) = self.retry {
            field(&mut out, "retry", &ms.to_string());
        }
        // Lines end in CRLF, LF or CR (HTML's event-stream grammar).
        let data = self.data.replace("\r\n", "\n").replace('\r', "\n");
        for line in data.split('\n') {
            field(&mut out, "data", line);
        }
        out.push(b'\n');
        out
    }
}

impl Sse {
    /// A `200 text/event-stream` response (`Cache-Control: no-store`) and
    /// its sender. With `ping`, the server itself sends a comment line
    /// (`: ping`) whenever the stream has been quiet that long, so proxies
    /// and clients keep the connection and a gone client is noticed.
    pub fn response(ping: Option<Duration>) -> (Response, Sse) {
        let (resp, tx) = Response::stream_inner(200, None, ping);
        let resp = resp
            .with_header(header::CONTENT_TYPE, "text/event-stream")
            .with_header(header::CACHE_CONTROL, "no-store");
        (resp, Sse { tx })
    }

    /// Sends one event (whole, or not at all).
    pub fn send(&self, event: &Event<'_>) -> Push {
        self.tx.push(&event.to_bytes())
    }

    /// Sends a comment line (`: text`), which clients ignore.
    pub fn comment(&self, text: &str) -> Push {
        let mut out = Vec::with_capacity(text.len() + 4);
        out.extend_from_slice(b": ");
        out.extend(text.bytes().filter(|&b| b != b'\r' && b != b'\n'));
        out.extend_from_slice(b"\n\n");
        self.tx.push(&out)
    }

    /// The underlying sender (room, close, finish).
    pub fn sender(&self) -> &BodySender {
        &self.tx
    }

    /// Ends the stream cleanly.
    pub fn finish(self) {
        self.tx.finish();
    }
}

impl fmt::Debug for Sse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sse").finish_non_exhaustive()
    }
}

/// A request body arriving in pieces, for a route that opted in with
/// [`Handler::stream_body`](crate::Handler::stream_body). Take it in the
/// handler with [`Request::body_reader`](crate::Request::body_reader).
/// `Send`; its [`io::Read`] blocks (use it on another thread), or
/// [`BodyReader::try_read`] does not (for the server's thread).
///
/// `read` returns `Ok(0)` once the whole body is in; an error of kind
/// `ConnectionAborted` means the body will never be complete (the client
/// disconnected, broke the framing, passed the route's limit, or the
/// connection was cut): discard what was read.
pub struct BodyReader {
    chan: Arc<Chan>,
}

impl BodyReader {
    pub(crate) fn new(cap: usize) -> (BodyReader, Arc<Chan>) {
        let chan = Chan::new(cap, LaterKind::Reply);
        (
            BodyReader {
                chan: Arc::clone(&chan),
            },
            chan,
        )
    }

    fn read_locked(&self, st: &mut State, buf: &mut [u8]) -> Option<io::Result<usize>> {
        if !st.buf.is_empty() {
            let n = buf.len().min(st.buf.len());
            buf[..n].copy_from_slice(&st.buf[..n]);
            st.buf.drain(..n);
            if st.waiting {
                st.waiting = false;
                Chan::wake_loop(st);
            }
            return Some(Ok(n));
        }
        if st.finished {
            return Some(Ok(0));
        }
        if st.gone {
            return Some(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the request body was cut off",
            )));
        }
        None
    }

    /// Like `read`, but returns `Ok(None)` instead of blocking.
    ///
    /// # Errors
    /// `ConnectionAborted`: the body will never be complete.
    pub fn try_read(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let mut st = self.chan.lock();
        self.read_locked(&mut st, buf).transpose()
    }

    /// Calls `f` on the server's thread when more of the body (or its end,
    /// or an abort) is there.
    pub fn on_data(&self, f: impl FnMut() + Send + 'static) {
        self.chan.lock().notify = Some(Box::new(f));
    }
}

impl io::Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut st = self.chan.lock();
        loop {
            if let Some(r) = self.read_locked(&mut st, buf) {
                return r;
            }
            st = self
                .chan
                .cond
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Drop for BodyReader {
    /// A reader that goes away lets the rest of the body be discarded.
    fn drop(&mut self) {
        let mut st = self.chan.lock();
        st.dropped = true;
        st.buf = Vec::new();
        if st.waiting {
            st.waiting = false;
            Chan::wake_loop(&mut st);
        }
    }
}

impl fmt::Debug for BodyReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyReader").finish_non_exhaustive()
    }
}

/// Where a handler call finds the body reader of a streamed upload.
pub(crate) type ReaderSlot = std::cell::Cell<Option<BodyReader>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_body_keeps_body_small() {
        // The fast path moves `Body` by value: the stream variant is one
        // pointer, no bigger than the file variant.
        assert!(std::mem::size_of::<Body>() <= 32);
    }

    #[test]
    fn events_are_framed() {
        let e = Event::new("a\nb\r\nc").event("t\nick").id("7");
        assert_eq!(
            e.to_bytes(),
            b"event: tick\nid: 7\ndata: a\ndata: b\ndata: c\n\n".to_vec()
        );
        assert_eq!(Event::new("").to_bytes(), b"data: \n\n".to_vec());
    }

    #[test]
    fn a_full_buffer_refuses_and_a_take_makes_room() {
        let (_resp, tx) = Response::stream(200);
        tx.chan.lock().cap = 4;
        assert_eq!(tx.push(b"abc"), Push::Sent);
        assert_eq!(tx.push(b"de"), Push::Full);
        let mut out = Vec::new();
        assert_eq!(tx.chan.take_out(&mut out), OutState::Data);
        assert_eq!(out, b"abc");
        assert!(tx.wait_room(2, Duration::ZERO));
        assert_eq!(tx.push(b"de"), Push::Sent);
    }

    #[test]
    fn a_dropped_response_closes_the_sender() {
        let (resp, tx) = Response::stream(200);
        drop(resp);
        assert_eq!(tx.push(b"x"), Push::Closed);
        let (resp, reply) = Response::deferred();
        drop(resp);
        assert!(reply.is_gone());
        assert!(reply.send(Response::new(204)).is_err());
    }
}
