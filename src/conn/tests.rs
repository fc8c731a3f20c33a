//! The state machine under a scripted transport: fragments, `WouldBlock`,
//! short writes, pipelining, budgets.

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
            access_log: None,
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

/// A drain starts with a complete request already in the socket, not yet
/// read (a `--workers` reload: the client sent it to the old worker).
/// Read before you close: it is answered, with `Connection: close`. An idle
/// connection with nothing readable closes at once.
#[test]
fn drain_answers_a_request_already_in_the_socket() {
    let mut rig = Rig::new();
    let mut waiting = Conn::new(Script::default(), None, rig.now, &rig.config, false);
    waiting.readable = false; // no event read yet this turn
    waiting
        .io
        .reads
        .push_back(Ok(b"GET /late HTTP/1.1\r\nHost: t\r\n\r\n".to_vec()));
    let mut idle = Conn::new(Script::default(), None, rig.now, &rig.config, false);
    let mut handler = |req: &Request<'_>| Response::text(200, req.target().to_string());
    let mut ctx = Ctx {
        config: &rig.config,
        now: rig.now,
        date: &rig.date,
        stats: &mut rig.stats,
        pool: &mut rig.pool,
        logs: &mut rig.logs,
        draining: true,
        shutdown: &rig.shared,
        connections: 2,
        started: rig.now,
        access_log: None,
    };
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
