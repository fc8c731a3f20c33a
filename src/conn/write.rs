//! Writing: encoding the head, sending head and body (vectored writes and
//! `sendfile`), and what follows a response (keep-alive, linger or close).

use std::io::{self, IoSlice};
use std::time::Instant;

use log::{error, warn};

use super::stream::{self, Wire};
use super::{Budget, Conn, Ctx, FileRef, Info, Mem, Out, Peer, Phase, Step, Transport};
use super::{BATCH_CAP, READ_BUDGET, READ_BUF, SEND_BUDGET};
use crate::encode::{self, ConnHeader};
use crate::parse;
use crate::ratelimit::Suppressed;
use crate::request::Version;
use crate::response::Body;
use crate::{header, Response};

impl<T: Transport> Conn<T> {
    pub(super) fn respond(&mut self, ctx: &mut Ctx<'_>, resp: Response, info: Info) {
        let (mut status, headers, body) = resp.into_parts();
        // Issue 13: a deferred response waits for the host (conn/stream.rs).
        let Some(body) = self.defer(ctx, body, info) else {
            return;
        };
        // Issue 13: a streamed body's framing; `None` for ordinary bodies.
        let wire = stream::wire(&body, info.version);
        if !(200..=999).contains(&status) {
            if let Some(n) = ctx.logs.handler.allow(ctx.now) {
                warn!(
                    "handler returned status {status}; sending 500{}",
                    Suppressed(n)
                );
            }
            status = 500;
        }
        let mut keep = info.keep_alive && !ctx.closing() && wire != Some(Wire::Close);
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
        let kept = headers
            .iter()
            .filter(|(n, v)| keep_header(n, v, logs, now))
            .chain(stream::te_header(wire.filter(|_| !no_body)));
        let length = match wire {
            None | Some(Wire::Length(_)) => (!no_body).then(|| body.len()),
            Some(Wire::Chunked | Wire::Close) => None,
        };
        let block = headers.block.as_ref().map_or(&[][..], |b| b.as_bytes());
        encode::encode_head(
            &mut self.wbuf,
            status,
            kept,
            block,
            length,
            conn_header,
            ctx.date.value(),
        );
        let out = if no_body || info.is_head {
            Out::None
        } else {
            match body {
                Body::Empty => Out::None,
                Body::Static(b) => Out::Mem(Mem::Static(b), 0),
                Body::Bytes(b) => Out::Mem(Mem::Owned(b), 0),
                Body::Shared(b) => Out::Mem(Mem::Shared(b), 0),
                Body::File { len: 0, .. } | Body::SharedFile { len: 0, .. } => Out::None,
                Body::File { file, offset, len } => Out::File {
                    file: FileRef::Owned(file),
                    offset,
                    remaining: len,
                },
                Body::SharedFile { file, offset, len } => Out::File {
                    file: FileRef::Shared(file),
                    offset,
                    remaining: len,
                },
                // Issue 13: a body the host streams (conn/stream.rs).
                Body::Later(later) => match wire {
                    Some(wire) => Self::stream_out(ctx, later, wire),
                    None => Out::None,
                },
            }
        };
        self.keep_alive = keep;
        self.head_started = false;
        self.start += parse::leading_empty_lines(&self.rbuf[self.start..self.end]);
        if keep && self.start < self.end && self.gather(&out) {
            // Pipelined requests wait in the buffer: answer them before the
            // next write, so the batch leaves in one `sendmsg`.
            self.next_request(ctx);
            return;
        }
        self.out = out;
        self.set_phase(Phase::Respond);
        self.writable = true; // the socket is usually writable: try at once
        self.deadline = Some(ctx.after(ctx.config.stall_timeout));
    }

    /// Appends a memory body to `wbuf` behind its head if the batch stays
    /// under [`BATCH_CAP`]; a file body (sendfile) ends the batch.
    fn gather(&mut self, out: &Out) -> bool {
        let body = match out {
            Out::None => &[][..],
            Out::Mem(m, _) => m.bytes(),
            Out::File { .. } | Out::Stream(_) => return false,
        };
        if self.wbuf.len() + body.len() > BATCH_CAP {
            return false;
        }
        self.wbuf.extend_from_slice(body);
        true
    }

    /// Responses gathered by [`gather`](Self::gather) and not yet written.
    pub(super) fn has_gathered(&self) -> bool {
        matches!(self.phase, Phase::Head) && self.wpos < self.wbuf.len()
    }

    /// Writes the gathered responses now (before reading more, waiting, or
    /// yielding the turn).
    pub(super) fn flush_gathered(&mut self, ctx: &Ctx<'_>) {
        self.out = Out::None;
        self.set_phase(Phase::Respond);
        self.writable = true;
        self.deadline = Some(ctx.after(ctx.config.stall_timeout));
    }

    /// The client went away mid-request (its body cut, or while its reply
    /// was deferred): responses gathered ahead of that request still go out
    /// whole, then the connection closes; with none, it closes now.
    pub(super) fn close_after_gathered(&mut self, ctx: &mut Ctx<'_>) {
        if self.wpos < self.wbuf.len() {
            self.keep_alive = false;
            self.start = self.end;
            self.flush_gathered(ctx);
        } else {
            self.close(ctx);
        }
    }

    pub(super) fn step_respond(&mut self, ctx: &mut Ctx<'_>, budget: &mut Budget) -> Step {
        if let Out::Stream(_) = self.out {
            return self.step_stream(ctx, budget); // issue 13: conn/stream.rs
        }
        loop {
            if !self.writable {
                return Step::Wait;
            }
            if budget.sent >= SEND_BUDGET {
                return Step::Yield;
            }
            let head = &self.wbuf[self.wpos..];
            let res = match &self.out {
                Out::Stream(_) => return Step::Continue, // handled above
                Out::None if head.is_empty() => break,
                Out::None => self.io.send(&[IoSlice::new(head)], false),
                Out::Mem(m, pos) if head.is_empty() && *pos == m.bytes().len() => break,
                Out::Mem(m, pos) => self.io.send(
                    &[IoSlice::new(head), IoSlice::new(&m.bytes()[*pos..])],
                    false,
                ),
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
                    match self.io.send_file(file.file(), *offset, want) {
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
    pub(super) fn advance(&mut self, n: usize) {
        let head_left = self.wbuf.len() - self.wpos;
        let in_head = n.min(head_left);
        self.wpos += in_head;
        let rest = n - in_head;
        match &mut self.out {
            Out::None | Out::Stream(_) => {}
            Out::Mem(_, pos) => *pos += rest,
            Out::File {
                offset, remaining, ..
            } => {
                *offset += rest as u64;
                *remaining -= rest as u64;
            }
        }
    }

    pub(super) fn finish_response(&mut self, ctx: &mut Ctx<'_>) {
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
            self.next_request(ctx);
            if self.start == self.end {
                ctx.pool.give_write(std::mem::take(&mut self.wbuf));
            }
        } else {
            self.close(ctx);
        }
    }

    /// Keep-alive: on to the next request, buffered or still to come.
    fn next_request(&mut self, ctx: &mut Ctx<'_>) {
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
        }
    }

    pub(super) fn step_linger(&mut self, ctx: &mut Ctx<'_>, budget: &mut Budget) -> Step {
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

/// The server owns framing; a handler's own copies of these are dropped, as
/// is anything that could split the response.
fn keep_header(
    name: &str,
    value: &str,
    logs: &mut crate::ratelimit::LogLimit,
    now: Instant,
) -> bool {
    if encode::server_owns(name) {
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
