//! A whole connection under a scripted transport, for hostile-input tools:
//! the deterministic mutation test (`mutation.rs`) and the `conn` fuzz
//! target (`crate::fuzzing`). A script is a list of reads (data, EOF or
//! `WouldBlock`) and write allowances (short writes or `WouldBlock`); the
//! connection is driven event by event, as the reactor would, and what it
//! wrote is checked: complete, well-formed responses, one per request,
//! nothing after a `Connection: close`, and an end within a bounded
//! number of steps.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, IoSlice};
use std::time::Instant;

use super::{Conn, Ctx, Phase, Pool, Transport};
use crate::config::Config;
use crate::encode::DateCache;
use crate::ratelimit::Logs;
use crate::{Request, Response, Stats};

/// One read the transport answers with.
#[derive(Debug, Clone)]
pub(crate) enum Read {
    Data(Vec<u8>),
    WouldBlock,
}

/// A transport that plays a script.
#[derive(Debug, Default)]
pub(crate) struct Script {
    reads: VecDeque<Read>,
    /// `Some(n)`: accept at most n bytes; `None`: WouldBlock. Empty: all.
    writes: VecDeque<Option<usize>>,
    /// After the script's reads: EOF (the client half-closed) or, if false,
    /// WouldBlock forever (the client went quiet).
    eof_at_end: bool,
    written: Vec<u8>,
    shut: bool,
    /// Transport calls so far, and the most a run may make: a loop inside
    /// `drive` that keeps reading EOF or `WouldBlock` is caught here.
    calls: usize,
    max_calls: usize,
}

impl Script {
    fn count_call(&mut self) {
        self.calls += 1;
        assert!(
            self.calls <= self.max_calls,
            "no end after {} transport calls",
            self.calls
        );
    }
}

fn would_block() -> io::Error {
    io::Error::from(io::ErrorKind::WouldBlock)
}

impl Transport for Script {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.count_call();
        match self.reads.pop_front() {
            None if self.eof_at_end => Ok(0),
            None | Some(Read::WouldBlock) => Err(would_block()),
            Some(Read::Data(mut data)) => {
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                if n < data.len() {
                    self.reads.push_front(Read::Data(data.split_off(n)));
                }
                Ok(n)
            }
        }
    }

    fn send(&mut self, bufs: &[IoSlice<'_>], _more: bool) -> io::Result<usize> {
        assert!(!self.shut, "a write after shutdown(SHUT_WR)");
        self.count_call();
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
        unreachable!("the scripted handler sends no files")
    }

    fn shutdown_write(&mut self) {
        self.shut = true;
    }

    fn set_nodelay(&mut self) {}
}

/// The reactor's side of a connection: everything `drive` borrows. One rig
/// serves many connections in turn, so buffers go back to a shared pool
/// between them, as in the server.
pub(crate) struct Rig {
    pub(crate) config: Config,
    pub(crate) date: DateCache,
    pub(crate) stats: Stats,
    pub(crate) pool: Pool,
    pub(crate) logs: Logs,
    pub(crate) shared: std::sync::Arc<crate::shutdown::Shared>,
    pub(crate) now: Instant,
}

/// What one scripted connection did.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Every byte written, in order.
    pub(crate) written: Vec<u8>,
    /// "METHOD target body-length" for each handler call, in order.
    pub(crate) calls: Vec<String>,
    /// Whether the connection ended closed.
    pub(crate) closed: bool,
    /// `drive` calls it took.
    pub(crate) steps: usize,
}

/// The handler under test: answers `METHOD target body-length`.
fn echo(req: &Request<'_>) -> String {
    format!("{} {} {}", req.method(), req.target(), req.body().len())
}

impl Rig {
    pub(crate) fn new(config: Config) -> Rig {
        Rig {
            config,
            date: DateCache::new(),
            stats: Stats::default(),
            pool: Pool::default(),
            logs: Logs::default(),
            shared: std::sync::Arc::new(crate::shutdown::Shared::detached()),
            now: Instant::now(),
        }
    }

    /// What `drive` borrows, as the reactor lends it (not draining, one
    /// connection open).
    pub(crate) fn ctx(&mut self) -> Ctx<'_> {
        Ctx {
            config: &self.config,
            now: self.now,
            date: &self.date,
            stats: &mut self.stats,
            pool: &mut self.pool,
            logs: &mut self.logs,
            draining: false,
            shutdown: &self.shared,
            key: 0,
            connections: 1,
            started: self.now,
            access_log: None,
        }
    }

    fn drive_echo(&mut self, conn: &mut Conn<Script>, calls: &mut Vec<String>) -> bool {
        let mut ctx = self.ctx();
        let mut handler = |req: &Request<'_>| {
            let line = echo(req);
            calls.push(line.clone());
            Response::text(200, line)
        };
        conn.drive(&mut ctx, &mut handler)
    }

    /// Runs one connection through `reads` and `writes`. The client then
    /// either half-closes (`eof_at_end`) or goes quiet and the connection's
    /// timer fires. Panics if the connection does not end within a bound
    /// proportional to the script.
    pub(crate) fn run(
        &mut self,
        reads: Vec<Read>,
        writes: Vec<Option<usize>>,
        eof_at_end: bool,
    ) -> Outcome {
        let input: usize = reads
            .iter()
            .map(|r| match r {
                Read::Data(d) => d.len(),
                Read::WouldBlock => 1,
            })
            .sum();
        // Each event makes progress: consumes a read item, a write allowance,
        // or a request (at most one per byte of input, 16 per turn).
        let bound = 16 + 2 * (reads.len() + writes.len()) + input;
        let mut conn = Conn::new(
            Script {
                reads: reads.into(),
                writes: writes.into(),
                eof_at_end,
                max_calls: 4 * bound + 64,
                ..Script::default()
            },
            None,
            self.now,
            &self.config,
            false,
        );
        let mut out = Outcome::default();
        let mut timed_out = false;
        loop {
            assert!(
                out.steps <= bound,
                "no end after {} steps (phase {:?})",
                out.steps,
                conn.phase
            );
            if conn.is_closed() {
                break;
            }
            // The events the poller would report: more input, room to write.
            let io_left = !conn.io.reads.is_empty() || conn.io.eof_at_end;
            conn.readable = io_left;
            conn.read_closed = conn.io.eof_at_end && conn.io.reads.is_empty();
            conn.writable = true;
            out.steps += 1;
            let more = self.drive_echo(&mut conn, &mut out.calls);
            if more || conn.is_closed() {
                continue;
            }
            let input_left = !conn.io.reads.is_empty() || conn.io.eof_at_end;
            let wants_write = conn.interest().is_writable();
            if !input_left && !wants_write {
                assert!(!timed_out, "open after its timer fired");
                // Nothing more will arrive: the timer fires, as it would.
                timed_out = true;
                conn.on_timeout(&mut self.ctx());
            }
        }
        assert!(
            conn.rbuf.is_empty() && conn.wbuf.capacity() == 0,
            "a closed connection holds no buffers"
        );
        out.closed = matches!(conn.phase, Phase::Closed);
        out.written = std::mem::take(&mut conn.io.written);
        out
    }
}

/// One response as written.
#[derive(Debug)]
pub(crate) struct Written {
    pub(crate) status: u16,
    pub(crate) close: bool,
    pub(crate) body: Vec<u8>,
}

/// Splits the output into responses and checks each is complete and
/// well-formed: a status line, CRLF-terminated header lines, one
/// `Content-Length` (except on `100 Continue`), exactly that many body bytes
/// (none for a HEAD: `is_head(i)` says whether the i-th final response
/// answers one). Returns the final responses (interim ones dropped).
pub(crate) fn responses(
    mut out: &[u8],
    is_head: impl Fn(usize) -> bool,
) -> Result<Vec<Written>, String> {
    let mut all = Vec::new();
    while !out.is_empty() {
        let end = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| format!("incomplete head: {:?}", String::from_utf8_lossy(out)))?;
        let head = std::str::from_utf8(&out[..end]).map_err(|e| e.to_string())?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status: u16 = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let mut length = None;
        let mut close = false;
        for line in lines {
            let (name, value) = line
                .split_once(": ")
                .ok_or_else(|| format!("bad header line {line:?}"))?;
            if name.eq_ignore_ascii_case("content-length") {
                if length.is_some() {
                    return Err("two Content-Length fields".into());
                }
                length = Some(value.parse::<usize>().map_err(|e| e.to_string())?);
            } else if name.eq_ignore_ascii_case("connection") && value == "close" {
                close = true;
            }
        }
        out = &out[end + 4..];
        if status == 100 {
            if length.is_some() {
                return Err("100 Continue with a Content-Length".into());
            }
            continue;
        }
        let length = length.ok_or("a final response without Content-Length")?;
        let body_len = if is_head(all.len()) { 0 } else { length };
        if out.len() < body_len {
            return Err(format!("truncated body: {} of {body_len} bytes", out.len()));
        }
        all.push(Written {
            status,
            close,
            body: out[..body_len].to_vec(),
        });
        out = &out[body_len..];
    }
    Ok(all)
}

/// Checks an outcome: it closed; its output is complete responses; the
/// first ones answer the handler calls in order (their bodies are the echo);
/// at most one more follows, an engine error with `Connection: close`; and
/// nothing follows a `Connection: close`. Returns whether the engine
/// refused a request (that error response was sent).
pub(crate) fn check(outcome: &Outcome) -> Result<bool, String> {
    if !outcome.closed {
        return Err("the connection did not close".into());
    }
    let calls = &outcome.calls;
    let is_head = |i: usize| calls.get(i).is_some_and(|c| c.starts_with("HEAD "));
    // A client that half-closes instead of sending the body it announced
    // with `Expect: 100-continue` may leave the interim response cut short:
    // no request was complete, and the connection closes. Nothing else may
    // be cut.
    let mut written = &outcome.written[..];
    const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
    for cut in 1..CONTINUE.len() {
        if written.ends_with(&CONTINUE[..cut]) && responses(written, is_head).is_err() {
            written = &written[..written.len() - cut];
            break;
        }
    }
    let resps = responses(written, is_head)?;
    if resps.len() < calls.len() || resps.len() > calls.len() + 1 {
        return Err(format!(
            "{} responses for {} handler calls",
            resps.len(),
            calls.len()
        ));
    }
    for (i, r) in resps.iter().enumerate() {
        if r.close && i + 1 != resps.len() {
            return Err(format!("response {i} says close but more follow"));
        }
        match calls.get(i) {
            Some(call) => {
                let head = call.starts_with("HEAD ");
                if r.status != 200 || (!head && r.body != call.as_bytes()) {
                    let mut msg = String::new();
                    let _ = write!(msg, "response {i} ({}) does not answer {call:?}", r.status);
                    return Err(msg);
                }
            }
            None => {
                if !(400..600).contains(&r.status) || !r.close {
                    return Err(format!(
                        "an engine response {} without an error status and close",
                        r.status
                    ));
                }
            }
        }
    }
    Ok(resps.len() > calls.len())
}

/// The connection after a hostile one, on the same rig (shared buffer
/// pool): a plain request must be served exactly.
pub(crate) fn check_fresh_connection_served(rig: &mut Rig) -> Result<(), String> {
    let req = b"GET /after HTTP/1.1\r\nHost: t\r\n\r\n".to_vec();
    let out = rig.run(vec![Read::Data(req)], Vec::new(), true);
    check(&out)?;
    if out.calls != ["GET /after 0"] {
        return Err(format!(
            "the next connection was not served: {:?}",
            out.calls
        ));
    }
    Ok(())
}

/// A small seeded PRNG (SplitMix64): deterministic, no dependency.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n > 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub(crate) fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// Cuts `input` into reads at random points with `WouldBlock`s between
/// some, and makes a list of write allowances (short writes, `WouldBlock`).
pub(crate) fn fragment(input: &[u8], rng: &mut Rng) -> (Vec<Read>, Vec<Option<usize>>) {
    let mut reads = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let n = match rng.below(4) {
            0 => 1 + rng.below(4),
            1 => 1 + rng.below(64),
            _ => rest.len(),
        }
        .min(rest.len());
        reads.push(Read::Data(rest[..n].to_vec()));
        rest = &rest[n..];
        if rng.chance(3) {
            reads.push(Read::WouldBlock);
        }
    }
    let mut writes = Vec::new();
    if rng.chance(2) {
        for _ in 0..rng.below(12) {
            writes.push(match rng.below(3) {
                0 => None,
                1 => Some(1 + rng.below(8)),
                _ => Some(1 + rng.below(200)),
            });
        }
    }
    (reads, writes)
}

/// Small limits, so that the limit paths are reached by short inputs.
pub(crate) fn small_config() -> Config {
    Config {
        max_head_bytes: 512,
        max_headers: 8,
        max_target_bytes: 64,
        max_body_bytes: 128,
        ..Config::default()
    }
}
