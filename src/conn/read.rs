//! Reading: filling the buffer, finding and parsing heads, reading bodies
//! (with `100 Continue`), and refusing what cannot be served.

use std::io::{self, IoSlice};

use log::{debug, warn};

use super::call::call;
use super::{BodyKind, Budget, Conn, Ctx, Fill, Info, Peer, Phase, Step, Transport};
use super::{CHUNK_SLACK, MAX_REQUESTS_PER_TURN, READ_BUDGET};
use crate::config::MAX_HEADERS_CAP;
use crate::error::{is_disconnect, ErrorCode};
use crate::parse::{self, Dechunker, Framing, Reject};
use crate::ratelimit::Suppressed;
use crate::request::Version;
use crate::{Handler, Request, Response};

impl<T: Transport> Conn<T> {
    pub(super) fn fill(&mut self, ctx: &mut Ctx<'_>, limit: usize, budget: &mut Budget) -> Fill {
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

    pub(super) fn io_failed(&mut self, ctx: &mut Ctx<'_>, what: &str, e: &io::Error) {
        if is_disconnect(e) {
            ctx.stats.disconnects += 1;
            debug!("{} disconnected during {what}: {e}", Peer(self.peer));
        } else if let Some(n) = ctx.logs.io.allow(ctx.now) {
            warn!("{} {what} failed: {e}{}", Peer(self.peer), Suppressed(n));
        }
        self.close(ctx);
    }

    pub(super) fn step_head<H: Handler>(
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
                if self.has_gathered() {
                    self.flush_gathered(ctx);
                    return Step::Continue;
                }
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
        if self.has_gathered() {
            // Every complete request of this read is answered: write the
            // batch before reading more or waiting.
            self.flush_gathered(ctx);
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

    pub(super) fn on_head<H: Handler>(
        &mut self,
        ctx: &mut Ctx<'_>,
        handler: &mut H,
        head_len: usize,
    ) {
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS_CAP];
        let max = ctx.config.max_headers.clamp(1, MAX_HEADERS_CAP);
        let bytes = &self.rbuf[self.start..self.start + head_len];
        let head = match parse::parse_head(bytes, &mut storage[..max], ctx.config) {
            Ok(head) => head,
            // Issue 13: past max_body_bytes, a route may stream the body.
            Err(r) if r.code == ErrorCode::BodyTooLarge => {
                return match self.wants_stream(ctx, handler, head_len) {
                    Some(route_max) => self.start_upload(ctx, handler, head_len, route_max),
                    None => self.reject(ctx, r),
                };
            }
            Err(r) => return self.reject(ctx, r),
        };
        // Issue 13: a route that streams its request bodies (conn/stream.rs).
        if head.framing != Framing::None {
            let req = Request::new_head(&head, self.peer);
            if let Some(route_max) = handler.stream_body(&req) {
                return self.start_upload(ctx, handler, head_len, route_max);
            }
        }
        match head.framing {
            Framing::None => {
                let (resp, info) = call(handler, &head, &[], self.peer, ctx, None);
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

    pub(super) fn enter_body(
        &mut self,
        ctx: &mut Ctx<'_>,
        head_len: usize,
        kind: BodyKind,
        expect: bool,
    ) {
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

    pub(super) fn step_body<H: Handler>(
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
            self.close_after_gathered(ctx);
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
    pub(super) fn flush_interim(&mut self, ctx: &mut Ctx<'_>) -> bool {
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

    pub(super) fn on_body<H: Handler>(
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
        let (resp, info) = call(handler, &head, body, self.peer, ctx, None);
        self.start += consumed;
        self.respond(ctx, resp, info);
    }

    /// Refuses the request: a complete error response, then a close, since
    /// the framing of anything after it is in doubt.
    pub(super) fn reject(&mut self, ctx: &mut Ctx<'_>, r: Reject) {
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
}

impl<T: Transport> Conn<T> {
    /// Issue 13: whether the handler streams this request's body (its head
    /// is over `max_body_bytes`); parsed again without that limit.
    fn wants_stream<H: Handler>(
        &mut self,
        ctx: &mut Ctx<'_>,
        handler: &mut H,
        head_len: usize,
    ) -> Option<u64> {
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS_CAP];
        let max = ctx.config.max_headers.clamp(1, MAX_HEADERS_CAP);
        let bytes = &self.rbuf[self.start..self.start + head_len];
        let head =
            parse::parse_head_limit(bytes, &mut storage[..max], ctx.config, u64::MAX).ok()?;
        handler.stream_body(&Request::new_head(&head, self.peer))
    }
}
