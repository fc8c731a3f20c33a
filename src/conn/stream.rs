//! Streams on the connection side (issue 13): waiting for a deferred reply,
//! sending a body the host streams (chunked, by length, or up to the close),
//! and handing a request body to the handler in pieces. The host's halves
//! live in `src/stream.rs`; the reactor wakes a connection when its stream
//! has news (the shared state's `Hub`).

use std::fmt;
use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::Duration;

use log::debug;

use super::call::call;
use super::{Budget, Conn, Ctx, Fill, Info, Out, Peer, Phase, Step, Transport};
use super::{READ_BUDGET, SEND_BUDGET};
use crate::config::MAX_HEADERS_CAP;
use crate::error::ErrorCode;
use crate::parse::{self, Dechunker, Framing};
use crate::request::Version;
use crate::response::Body;
use crate::stream::{BodyReader, Chan, Later, LaterKind, OutState, ReaderSlot, ReplyState};
use crate::{header, Handler, Response};

/// Read buffer while a body streams in.
const UPLOAD_READ: usize = 64 * 1024;
/// The comment an SSE stream sends when it has been quiet for its interval.
const PING: &[u8] = b": ping\n\n";

/// How a streamed response body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wire {
    /// HTTP/1.1: chunked transfer coding.
    Chunked,
    /// `Content-Length` known: bytes still to come.
    Length(u64),
    /// HTTP/1.0 and no length: the body ends with the connection.
    Close,
}

/// How a body goes out: `None` for every ordinary body (the fast path only
/// pays for this match).
#[inline]
pub(super) fn wire(body: &Body, version: Version) -> Option<Wire> {
    match body {
        Body::Later(l) => Some(match (l.length(), version) {
            (Some(n), _) => Wire::Length(n),
            (None, Version::Http11) => Wire::Chunked,
            (None, Version::Http10) => Wire::Close,
        }),
        _ => None,
    }
}

/// The header a chunked stream adds to its head.
#[inline]
pub(super) fn te_header(wire: Option<Wire>) -> Option<(&'static str, &'static str)> {
    (wire == Some(Wire::Chunked)).then_some((header::TRANSFER_ENCODING, "chunked"))
}

/// A response body the host streams.
pub(super) struct OutStream {
    /// Holds the shared state; dropping it tells the host the stream closed.
    later: Later,
    wire: Wire,
    /// Framed bytes being sent, and how far.
    pending: Vec<u8>,
    pos: usize,
    /// Chunked: the host's bytes before framing.
    fresh: Vec<u8>,
    /// The end of the body has been framed into `pending`.
    ended: bool,
    ping: Option<Duration>,
}

enum Refill {
    Data,
    Empty,
    End,
    Abort,
}

impl OutStream {
    fn idle(&self) -> bool {
        self.pos == self.pending.len()
    }

    fn frame_chunk(&mut self, data: &[u8]) {
        self.pending.clear();
        self.pos = 0;
        let mut hex = [0u8; 16];
        let mut i = hex.len();
        let mut n = data.len();
        loop {
            i -= 1;
            hex[i] = b"0123456789abcdef"[n & 15];
            n >>= 4;
            if n == 0 {
                break;
            }
        }
        self.pending.extend_from_slice(&hex[i..]);
        self.pending.extend_from_slice(b"\r\n");
        self.pending.extend_from_slice(data);
        self.pending.extend_from_slice(b"\r\n");
    }

    /// Takes what the host pushed, framed for the wire.
    fn refill(&mut self) -> Refill {
        self.pending.clear();
        self.pos = 0;
        let chunked = self.wire == Wire::Chunked;
        let into = if chunked {
            &mut self.fresh
        } else {
            &mut self.pending
        };
        match self.later.chan.take_out(into) {
            OutState::Data => {
                if chunked {
                    let fresh = std::mem::take(&mut self.fresh);
                    self.frame_chunk(&fresh);
                    self.fresh = fresh;
                    self.fresh.clear();
                } else if let Wire::Length(rem) = &mut self.wire {
                    // The sender refuses pushes past the length.
                    *rem = rem.saturating_sub(self.pending.len() as u64);
                }
                Refill::Data
            }
            OutState::Empty => Refill::Empty,
            OutState::Aborted => Refill::Abort,
            OutState::Finished => match self.wire {
                Wire::Chunked => {
                    self.pending.extend_from_slice(b"0\r\n\r\n");
                    self.ended = true;
                    Refill::End
                }
                Wire::Length(0) | Wire::Close => {
                    self.ended = true;
                    Refill::End
                }
                Wire::Length(_) => Refill::Abort,
            },
        }
    }
}

impl fmt::Debug for OutStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutStream")
            .field("wire", &self.wire)
            .field("pending", &(self.pending.len() - self.pos))
            .finish_non_exhaustive()
    }
}

/// How a streamed request body is delimited.
#[derive(Debug)]
enum In {
    Length(u64),
    Chunked(Dechunker),
}

/// A request body on its way to the handler's [`BodyReader`].
pub(crate) struct Upload {
    body: In,
    /// The route's limit.
    max: u64,
    chan: Arc<Chan>,
    /// The handler's deferred answer.
    reply: Option<Later>,
    info: Info,
    done: bool,
}

impl fmt::Debug for Upload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upload")
            .field("body", &self.body)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl Drop for Upload {
    /// A body cut short (disconnect, bad chunk, limit, stall, drain) tells
    /// the reader it will never be complete.
    fn drop(&mut self) {
        if !self.done {
            self.chan.close();
        }
    }
}

impl<T: Transport> Conn<T> {
    /// A deferred response waits for the host's reply; anything else comes
    /// back to be sent now.
    #[inline]
    pub(super) fn defer(&mut self, ctx: &mut Ctx<'_>, body: Body, info: Info) -> Option<Body> {
        match body {
            Body::Later(later) if later.kind() == LaterKind::Reply => {
                later.chan.attach(ctx.shutdown, ctx.key, 0);
                if self.wpos < self.wbuf.len() {
                    // Responses gathered ahead of this one: try them at once.
                    self.writable = true;
                }
                self.head_started = false;
                self.deadline = None;
                self.set_phase(Phase::Deferred { later, info });
                None
            }
            body => Some(body),
        }
    }

    /// The writer for a streamed body (the head is already in `wbuf`).
    pub(super) fn stream_out(ctx: &mut Ctx<'_>, later: Later, wire: Wire) -> Out {
        let cap = ctx.config.stream_buffer_bytes;
        later.chan.attach(ctx.shutdown, ctx.key, cap);
        let ping = match later.kind() {
            LaterKind::Stream { ping, .. } => ping,
            LaterKind::Reply => None,
        };
        Out::Stream(Box::new(OutStream {
            later,
            wire,
            pending: Vec::new(),
            pos: 0,
            fresh: Vec::new(),
            ended: false,
            ping,
        }))
    }

    pub(super) fn step_deferred(&mut self, ctx: &mut Ctx<'_>) -> Step {
        let Phase::Deferred { later, info } = &self.phase else {
            return Step::Continue;
        };
        let info = *info;
        match later.chan.take_reply() {
            ReplyState::Ready(resp) => self.respond(ctx, resp, info),
            ReplyState::Dropped => {
                let resp = Response::error(ErrorCode::Internal, "the handler dropped its reply");
                self.respond(ctx, resp, info);
            }
            ReplyState::Pending => {
                // Responses gathered before this one in a pipelined batch go
                // out now, not when the host answers.
                if self.wpos < self.wbuf.len() && self.writable && !self.flush_interim(ctx) {
                    return Step::Continue; // closed
                }
                // The peer's FIN (or a reset): nobody will read an answer.
                if !(self.read_closed || self.eof) {
                    return Step::Wait;
                }
                ctx.stats.disconnects += 1;
                debug!(
                    "{} disconnected while its reply was deferred",
                    Peer(self.peer)
                );
                self.close_after_gathered(ctx);
            }
        }
        Step::Continue
    }

    /// Sends a streamed body as the host feeds it.
    pub(super) fn step_stream(&mut self, ctx: &mut Ctx<'_>, budget: &mut Budget) -> Step {
        loop {
            let Out::Stream(s) = &mut self.out else {
                return Step::Continue;
            };
            if self.wpos == self.wbuf.len() && s.idle() {
                if s.ended {
                    self.finish_response(ctx);
                    return Step::Continue;
                }
                match s.refill() {
                    Refill::Data | Refill::End => {
                        self.deadline = Some(ctx.after(ctx.config.stall_timeout));
                        continue;
                    }
                    Refill::Abort => {
                        debug!("{} stream abandoned by the host; closing", Peer(self.peer));
                        self.close(ctx);
                        return Step::Continue;
                    }
                    Refill::Empty => {
                        if self.read_closed || self.eof {
                            ctx.stats.disconnects += 1;
                            debug!("{} disconnected from a stream", Peer(self.peer));
                            self.close(ctx);
                            return Step::Continue;
                        }
                        // Waiting for the host is not a stall.
                        self.deadline = s.ping.map(|p| ctx.after(p));
                        return Step::Wait;
                    }
                }
            }
            if !self.writable {
                return Step::Wait;
            }
            if budget.sent >= SEND_BUDGET {
                return Step::Yield;
            }
            let head = &self.wbuf[self.wpos..];
            let res = self.io.send(
                &[IoSlice::new(head), IoSlice::new(&s.pending[s.pos..])],
                false,
            );
            match res {
                Ok(n) => {
                    let in_head = n.min(head.len());
                    self.wpos += in_head;
                    s.pos += n - in_head;
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
    }

    /// The timer of a quiet SSE stream: sends a ping. `false`: not a ping,
    /// the usual timeout applies.
    pub(super) fn stream_timer(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let Out::Stream(s) = &mut self.out else {
            return false;
        };
        if !matches!(self.phase, Phase::Respond)
            || s.ping.is_none()
            || matches!(s.wire, Wire::Length(_))
            || s.ended
            || !s.idle()
            || self.wpos < self.wbuf.len()
        {
            return false;
        }
        s.frame_ping();
        self.deadline = Some(ctx.after(ctx.config.stall_timeout));
        let _ = self.step_stream(ctx, &mut Budget::default());
        true
    }

    /// A request whose route streams its body: the handler is called now,
    /// with the body's reader; the body follows in pieces.
    pub(super) fn start_upload<H: Handler>(
        &mut self,
        ctx: &mut Ctx<'_>,
        handler: &mut H,
        head_len: usize,
        max: u64,
    ) {
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS_CAP];
        let nmax = ctx.config.max_headers.clamp(1, MAX_HEADERS_CAP);
        let bytes = &self.rbuf[self.start..self.start + head_len];
        // Content-Length past the route's limit: 413 before any body.
        let head = match parse::parse_head_limit(bytes, &mut storage[..nmax], ctx.config, max) {
            Ok(head) => head,
            Err(r) => return self.reject(ctx, r),
        };
        let body = match head.framing {
            Framing::Chunked => In::Chunked(Dechunker::new()),
            Framing::Length(n) => In::Length(n),
            Framing::None => In::Length(0),
        };
        let expect = head.expect_continue;
        let cap = ctx.config.stream_buffer_bytes;
        let (reader, chan) = BodyReader::new(cap);
        chan.attach(ctx.shutdown, ctx.key, cap);
        let slot = ReaderSlot::new(Some(reader));
        let (resp, mut info) = call(handler, &head, &[], self.peer, ctx, Some(&slot));
        drop(slot); // a reader the handler did not take discards the body
        self.start += head_len;
        if !matches!(resp.body(), Body::Later(l) if l.kind() == LaterKind::Reply) {
            // Answered at once: the body is not wanted; close after it.
            chan.close();
            info.keep_alive = false;
            self.linger_after = true;
            return self.respond(ctx, resp, info);
        }
        let (_, _, Body::Later(reply)) = resp.into_parts() else {
            return;
        };
        reply.chan.attach(ctx.shutdown, ctx.key, 0);
        if expect && self.start == self.end {
            if self.wbuf.capacity() == 0 {
                self.wbuf = ctx.pool.take_write();
            }
            self.wbuf
                .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            self.writable = true;
        }
        self.set_phase(Phase::Upload(Box::new(Upload {
            body,
            max,
            chan,
            reply: Some(reply),
            info,
            done: false,
        })));
        self.deadline = Some(ctx.after(ctx.config.stall_timeout));
    }

    pub(super) fn step_upload(&mut self, ctx: &mut Ctx<'_>, budget: &mut Budget) -> Step {
        if self.wpos < self.wbuf.len() && self.writable && !self.flush_interim(ctx) {
            return Step::Continue; // closed
        }
        let Phase::Upload(up) = &mut self.phase else {
            return Step::Continue;
        };
        // The host answered before the body was in (it refused it, or
        // dropped its reply): answer now, then close.
        let early = match up.reply.as_ref().map(|l| l.chan.take_reply()) {
            Some(ReplyState::Ready(resp)) => Some(resp),
            Some(ReplyState::Dropped) => Some(Response::error(
                ErrorCode::Internal,
                "the handler dropped its reply",
            )),
            _ => None,
        };
        if let Some(resp) = early {
            let mut info = up.info;
            info.keep_alive = false;
            self.linger_after = true;
            self.respond(ctx, resp, info);
            return Step::Continue;
        }
        // Hand over what the buffer holds.
        let avail = match &mut up.body {
            In::Length(rem) => {
                (self.end - self.start).min(usize::try_from(*rem).unwrap_or(usize::MAX))
            }
            In::Chunked(d) => {
                if !d.is_done() {
                    match d.decode(&mut self.rbuf[self.start..self.end], up.max) {
                        Ok(len) => self.end = self.start + len,
                        Err(r) => return self.reject_upload(ctx, r),
                    }
                }
                d.decoded()
            }
        };
        let taken = if avail > 0 {
            up.chan.put_in(&self.rbuf[self.start..self.start + avail])
        } else {
            0
        };
        self.start += taken;
        let complete = match &mut up.body {
            In::Length(rem) => {
                *rem -= taken as u64;
                *rem == 0
            }
            In::Chunked(d) => {
                d.consume(taken);
                d.is_done() && d.decoded() == 0
            }
        };
        if complete {
            up.done = true;
            up.chan.finish_in();
            let info = up.info;
            let Some(later) = up.reply.take() else {
                self.close(ctx);
                return Step::Continue;
            };
            self.deadline = None;
            self.set_phase(Phase::Deferred { later, info });
            return Step::Continue;
        }
        if taken < avail {
            return Step::Wait; // the reader's buffer is full; it wakes us
        }
        if self.eof {
            ctx.stats.disconnects += 1;
            debug!(
                "{} closed in the middle of a streamed body",
                Peer(self.peer)
            );
            self.close_after_gathered(ctx);
            return Step::Continue;
        }
        if !self.readable {
            return Step::Wait;
        }
        if budget.read >= READ_BUDGET {
            return Step::Yield;
        }
        if let Fill::Data = self.fill(ctx, UPLOAD_READ, budget) {
            self.deadline = Some(ctx.after(ctx.config.stall_timeout));
        }
        Step::Continue
    }

    fn reject_upload(&mut self, ctx: &mut Ctx<'_>, r: parse::Reject) -> Step {
        self.reject(ctx, r);
        Step::Continue
    }

    /// The drain deadline passed: a reply still deferred gets a `503
    /// draining` if the socket takes it at once; everything else is cut.
    pub(crate) fn cut(&mut self, ctx: &mut Ctx<'_>) {
        if matches!(self.out, Out::Stream(_)) || matches!(self.phase, Phase::Upload(_)) {
            // Tell the host before the socket closes (its drop comes next).
            self.close(ctx);
            return;
        }
        let Phase::Deferred { info, .. } = &self.phase else {
            return;
        };
        let mut info = *info;
        info.keep_alive = false;
        let resp = Response::error(ErrorCode::Draining, "the server is shutting down");
        self.respond(ctx, resp, info);
        let _ = self.step_respond(ctx, &mut Budget::default());
    }
}

impl OutStream {
    fn frame_ping(&mut self) {
        match self.wire {
            Wire::Chunked => self.frame_chunk(PING),
            _ => {
                self.pending.clear();
                self.pos = 0;
                self.pending.extend_from_slice(PING);
            }
        }
    }
}
