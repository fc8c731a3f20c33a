//! The state machine under a scripted transport: fragments, `WouldBlock`,
//! short writes, pipelining, budgets.

use super::script::Rig;
use super::*;
use crate::{Request, Response};
use std::collections::VecDeque;

/// A transport that plays a script: each read returns the next item;
/// each write accepts at most the next allowance (or `WouldBlock`).
#[derive(Default)]
struct Script {
    reads: VecDeque<io::Result<Vec<u8>>>,
    /// `Some(n)`: accept at most n bytes; `None`: WouldBlock.
    writes: VecDeque<Option<usize>>,
    written: Vec<u8>,
    /// `send` calls that wrote something.
    sends: usize,
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
        self.sends += usize::from(n > 0);
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

/// The shared rig (`script.rs`), driving this file's transport.
impl Rig {
    fn drive(&mut self, conn: &mut Conn<Script>) -> bool {
        let mut handler = |req: &Request<'_>| {
            Response::text(
                200,
                format!("{} {} {}", req.method(), req.target(), req.body().len()),
            )
        };
        self.drive_with(conn, &mut handler)
    }

    fn drive_with<H: Handler>(&mut self, conn: &mut Conn<Script>, handler: &mut H) -> bool {
        conn.drive(&mut self.ctx(), handler)
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
    let mut rig = Rig::new(Config::default());
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
    let mut rig = Rig::new(Config::default());
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
    let mut rig = Rig::new(Config::default());
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
    let mut rig = Rig::new(Config::default());
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
    let mut rig = Rig::new(Config::default());
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
    let mut rig = Rig::new(Config::default());
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
    let mut rig = Rig::new(Config::default());
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

#[test]
fn pipelined_requests_in_one_read_leave_in_one_write() {
    let mut rig = Rig::new(Config::default());
    let mut conn = Conn::new(Script::default(), None, rig.now, &rig.config, false);
    let mut batch = Vec::new();
    for i in 0..5 {
        batch.extend_from_slice(format!("GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    }
    batch.extend_from_slice(b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\nGET /partial HT");
    conn.io.reads.push_back(Ok(batch));
    rig.drive(&mut conn);
    assert_eq!(conn.io.sends, 1, "one write for the whole batch");
    assert_eq!(
        bodies(&conn.io.written),
        ["GET /0 0", "GET /1 0", "GET /2 0", "GET /3 0", "GET /4 0", ""]
    );
    conn.io
        .reads
        .push_back(Ok(b"TP/1.1\r\nHost: x\r\n\r\n".to_vec()));
    conn.readable = true;
    rig.drive(&mut conn);
    assert_eq!(conn.io.sends, 2);
    assert_eq!(
        bodies(&conn.io.written).last().map(String::as_str),
        Some("GET /partial 0")
    );
    assert!(matches!(conn.phase, Phase::Head));
}

#[test]
fn connection_close_in_the_middle_of_a_batch_ends_it_there() {
    let mut rig = Rig::new(Config::default());
    let mut conn = Conn::new(Script::default(), None, rig.now, &rig.config, false);
    conn.io
        .reads
        .push_back(Ok(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n\
GET /2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n\
GET /3 HTTP/1.1\r\nHost: x\r\n\r\n"
            .to_vec()));
    rig.drive(&mut conn);
    assert_eq!(conn.io.sends, 1);
    assert_eq!(bodies(&conn.io.written), ["GET /1 0", "GET /2 0"]);
    assert!(String::from_utf8_lossy(&conn.io.written).contains("Connection: close"));
    assert!(
        conn.io.shut,
        "unread input: the write side is shut, then linger"
    );
}

#[test]
fn a_batch_over_the_request_budget_is_written_before_yielding() {
    let mut rig = Rig::new(Config::default());
    let mut conn = Conn::new(Script::default(), None, rig.now, &rig.config, false);
    let mut batch = Vec::new();
    for i in 0..40 {
        batch.extend_from_slice(format!("GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    }
    conn.io.reads.push_back(Ok(batch));
    assert!(
        rig.drive(&mut conn),
        "out of budget: queued for the next turn"
    );
    assert_eq!(
        bodies(&conn.io.written).len(),
        MAX_REQUESTS_PER_TURN as usize
    );
    assert_eq!(conn.io.sends, 1);
    for _ in 0..3 {
        rig.drive(&mut conn);
    }
    let got = bodies(&conn.io.written);
    assert_eq!(got.len(), 40);
    assert!(got
        .iter()
        .enumerate()
        .all(|(i, b)| *b == format!("GET /{i} 0")));
}

/// Issue 13: a deferred reply waits without reading on; the pipelined
/// request behind it is answered after it, in order.
#[test]
fn a_deferred_reply_goes_out_before_the_pipelined_request_behind_it() {
    let mut rig = Rig::new(Config::default());
    let mut conn = Conn::new(Script::default(), None, rig.now, &rig.config, false);
    conn.io.reads.push_back(Ok(
        b"GET /later HTTP/1.1\r\nHost: x\r\n\r\nGET /now HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
    ));
    let replies = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let shipped = std::rc::Rc::clone(&replies);
    let mut handler = |req: &Request<'_>| {
        if req.path() == "/later" {
            let (resp, reply) = Response::deferred();
            shipped.borrow_mut().push(reply);
            resp
        } else {
            Response::text(200, "now")
        }
    };
    rig.drive_with(&mut conn, &mut handler);
    assert!(matches!(conn.phase, Phase::Deferred { .. }));
    assert!(conn.io.written.is_empty());
    assert_eq!(conn.deadline, None, "waiting for the host has no timer");
    let reply = replies.borrow_mut().pop().unwrap();
    reply.send(Response::text(200, "later")).unwrap();
    rig.drive_with(&mut conn, &mut handler);
    assert_eq!(bodies(&conn.io.written), ["later", "now"]);
}

/// Issue 13: chunk framing survives short writes and `WouldBlock`.
#[test]
fn a_streamed_body_is_framed_across_short_writes() {
    let mut rig = Rig::new(Config::default());
    let mut conn = Conn::new(Script::default(), None, rig.now, &rig.config, false);
    conn.io
        .reads
        .push_back(Ok(b"GET /s HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()));
    let senders = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let shipped = std::rc::Rc::clone(&senders);
    let mut handler = |_req: &Request<'_>| {
        let (resp, tx) = Response::stream(200);
        shipped.borrow_mut().push(tx);
        resp
    };
    rig.drive_with(&mut conn, &mut handler);
    let tx = senders.borrow_mut().pop().unwrap();
    assert_eq!(tx.push(b"hello"), crate::Push::Sent);
    assert_eq!(tx.push(b" world"), crate::Push::Sent);
    conn.io.writes.extend([Some(3), None]);
    rig.drive_with(&mut conn, &mut handler);
    assert!(!conn.writable);
    for _ in 0..100 {
        conn.io.writes.extend([Some(7), None]);
        conn.writable = true;
        rig.drive_with(&mut conn, &mut handler);
    }
    conn.io.writes.clear(); // unused allowances from the loop
    tx.finish();
    conn.writable = true;
    rig.drive_with(&mut conn, &mut handler);
    let text = String::from_utf8_lossy(&conn.io.written);
    assert!(
        text.ends_with("Transfer-Encoding: chunked\r\n\r\nb\r\nhello world\r\n0\r\n\r\n"),
        "{text}"
    );
    assert!(matches!(conn.phase, Phase::Head), "kept alive");
}

/// Responses gathered in a pipelined batch ahead of a deferred one are
/// written while the host has not answered yet.
#[test]
fn responses_gathered_before_a_deferred_one_go_out_at_once() {
    let mut rig = Rig::new(Config::default());
    let mut conn = Conn::new(Script::default(), None, rig.now, &rig.config, false);
    conn.io.reads.push_back(Ok(
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /later HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
    ));
    let replies = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let shipped = std::rc::Rc::clone(&replies);
    let mut handler = |req: &Request<'_>| {
        if req.path() == "/later" {
            let (resp, reply) = Response::deferred();
            shipped.borrow_mut().push(reply);
            resp
        } else {
            Response::text(200, "a")
        }
    };
    rig.drive_with(&mut conn, &mut handler);
    assert!(matches!(conn.phase, Phase::Deferred { .. }));
    assert_eq!(bodies(&conn.io.written), ["a"]);
    let reply = replies.borrow_mut().pop().unwrap();
    reply.send(Response::text(200, "later")).unwrap();
    rig.drive_with(&mut conn, &mut handler);
    assert_eq!(bodies(&conn.io.written), ["a", "later"]);
}

/// A drain starts with a complete request already in the socket, not yet
/// read (a `--workers` reload: the client sent it to the old worker).
/// Read before you close: it is answered, with `Connection: close`. An idle
/// connection with nothing readable closes at once.
#[test]
fn drain_answers_a_request_already_in_the_socket() {
    let mut rig = Rig::new(Config::default());
    let mut waiting = Conn::new(Script::default(), None, rig.now, &rig.config, false);
    waiting.readable = false; // no event read yet this turn
    waiting
        .io
        .reads
        .push_back(Ok(b"GET /late HTTP/1.1\r\nHost: t\r\n\r\n".to_vec()));
    let mut idle = Conn::new(Script::default(), None, rig.now, &rig.config, false);
    let mut handler = |req: &Request<'_>| Response::text(200, req.target().to_string());
    let mut ctx = rig.ctx();
    ctx.draining = true;
    ctx.connections = 2;
    assert!(waiting.begin_drain(&mut ctx), "work to do");
    waiting.drive(&mut ctx, &mut handler);
    let out = String::from_utf8_lossy(&waiting.io.written).into_owned();
    assert!(out.starts_with("HTTP/1.1 200"), "{out:?}");
    assert!(out.contains("onnection: close"), "{out:?}");
    assert!(out.ends_with("/late"), "{out:?}");
    assert!(!idle.begin_drain(&mut ctx));
    assert!(idle.is_closed());
    assert!(idle.io.written.is_empty());
}

/// Regression (found in review): a response gathered ahead of a deferred one is lost when the
/// peer half-closes while the socket is full: step_deferred closes on
/// `read_closed` without checking for gathered bytes still unsent.
#[test]
fn a_gathered_response_is_not_lost_when_the_peer_half_closes() {
    let mut rig = Rig::new(Config::default());
    let mut conn = Conn::new(Script::default(), None, rig.now, &rig.config, false);
    conn.io.reads.push_back(Ok(
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /later HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
    ));
    conn.io.writes.push_back(None); // the socket's buffer is full for now
    let replies = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let shipped = std::rc::Rc::clone(&replies);
    let mut handler = |req: &Request<'_>| {
        if req.path() == "/later" {
            let (resp, reply) = Response::deferred();
            shipped.borrow_mut().push(reply);
            resp
        } else {
            Response::text(200, "a")
        }
    };
    rig.drive_with(&mut conn, &mut handler);
    assert!(matches!(conn.phase, Phase::Deferred { .. }));
    assert!(conn.io.written.is_empty());
    // The client sent its FIN after its requests (EPOLLRDHUP), buffer still full.
    conn.readable = true;
    conn.read_closed = true;
    rig.drive_with(&mut conn, &mut handler);
    // Room again.
    conn.writable = true;
    rig.drive_with(&mut conn, &mut handler);
    assert_eq!(
        bodies(&conn.io.written),
        ["a"],
        "the answer to /a was dropped"
    );
}

/// Regression (found in review): same in the Body phase: a gathered answer unsent (socket full)
/// is dropped when the peer's FIN comes in the middle of the next request's
/// body. Before gathering, the first answer was written out in `Respond`
/// before the second request was even parsed.
#[test]
fn a_gathered_response_is_not_lost_when_a_body_is_cut() {
    let mut rig = Rig::new(Config::default());
    let mut conn = Conn::new(Script::default(), None, rig.now, &rig.config, false);
    conn.io.reads.push_back(Ok(
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345".to_vec(),
    ));
    conn.io.writes.push_back(None); // full for now
    let mut handler = |_req: &Request<'_>| Response::text(200, "a");
    conn.writable = true;
    rig.drive_with(&mut conn, &mut handler);
    assert!(conn.io.written.is_empty());
    conn.io.reads.push_back(Ok(Vec::new())); // the FIN
    conn.readable = true;
    conn.read_closed = true;
    rig.drive_with(&mut conn, &mut handler);
    conn.writable = true;
    rig.drive_with(&mut conn, &mut handler);
    assert_eq!(
        bodies(&conn.io.written),
        ["a"],
        "the answer to /a was dropped"
    );
}

/// Regression (found in review): a flushed batch that meets a full socket keeps the head timer
/// (10 s) of the partial request behind it, not the stall timer (30 s).
#[test]
fn a_flushed_batch_waits_on_the_stall_timer() {
    let mut rig = Rig::new(Config::default());
    let mut conn = Conn::new(Script::default(), None, rig.now, &rig.config, false);
    conn.io.reads.push_back(Ok(
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTT".to_vec(),
    ));
    conn.io.writes.push_back(None);
    let mut handler = |_req: &Request<'_>| Response::text(200, "a");
    rig.drive_with(&mut conn, &mut handler);
    assert!(matches!(conn.phase, Phase::Respond));
    assert_eq!(conn.deadline, Some(rig.now + rig.config.stall_timeout));
}
