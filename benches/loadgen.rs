//! `loadgen`: a small HTTP/1.1 load generator for the benchmarks (std only).
//!
//! One blocking keep-alive connection per thread (`small`, `large`, `churn`),
//! or N idle connections opened one after another from the main thread
//! (`idle`). `--pipeline N` makes `small` send N requests in one write and
//! read the N responses before the next batch (TechEmpower's plaintext test
//! uses 16). Every loop is bounded by a deadline and a count; every socket
//! read and write has a timeout. Only loopback targets are accepted.
//!
//! Latency goes into a fixed-size log-linear histogram (64 sub-buckets per
//! power of two, about 1.6 % resolution), never a list of samples.
//!
//! Given `--pid`, the server's CPU time over the measured window comes from
//! `/proc/PID/task/*/schedstat` (first field: nanoseconds on CPU), or from
//! `/proc/PID/stat` utime+stime in clock ticks if schedstat is missing, and
//! its memory from `VmRSS` in `/proc/PID/status`.
//!
//! ```text
//! cargo bench --bench loadgen -- --help
//! cargo bench --bench loadgen -- --url http://127.0.0.1:8080/plaintext -c 64 -d 5 --pid 1234
//! ```

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const USAGE: &str = "\
loadgen - HTTP/1.1 load generator for keelhttp's benchmarks (std only)

Usage: cargo bench --bench loadgen -- --url URL [OPTIONS]

Options:
  -u, --url URL          http://127.0.0.1:PORT/PATH (loopback only)
  -w, --workload NAME    small | large | churn | idle        [default: small]
                           small  keep-alive GETs, one connection per thread
                           large  keep-alive GETs of a big file, 1 MiB reads,
                                  reports GB/s (10^9 bytes per second)
                           churn  `Connection: close`, a new connection per
                                  request (the client reads to EOF, so the
                                  server closes first)
                           idle   open N connections, one request each, keep
                                  them open; reports the server's VmRSS before
                                  and after and KiB per connection
      --pipeline N       small only: N requests per write, then N responses
                         read before the next batch [default: 1; at most 1024]
  -c, --connections N    connections [default: 64 small, 2 large, 16 churn,
                         1000 idle]; at most 1024 threads, 20000 idle
  -d, --duration SECS    measured time [default: 5]; for idle, the time limit
                         for opening the connections
      --warmup SECS      unmeasured load before the window [default: 0.5]
  -p, --pid PID[,PID..]  server process(es): CPU per request, RSS (summed)
      --clk-tck N        ticks per second for the /proc/PID/stat fallback
                         [default: 100, assumed; `getconf CLK_TCK` tells]
      --timeout SECS     per connect, read and write [default: 5]
      --max-requests N   stop after N requests in all [default: 1000000000]
      --settle SECS      idle: wait before reading RSS after [default: 0.3]
      --label TEXT       copied to the output as label=TEXT
  -h, --help             this help

Output: one `key=value` line (stdout) and one human line starting with `#`.
Keys: label workload pipeline url connections seconds requests req_s bytes gb_s
p50_us p99_us max_us errors err_connect err_status err_short err_parse
reconnects cpu_source server_cpu_ms cpu_us_per_req rss_before_kib
rss_after_kib anon_before_kib anon_after_kib kib_per_conn opened alive (NA
where a key does not apply). rss_* is VmRSS (file-backed pages such as libc
and the binary included), anon_* is RssAnon, both summed over the PIDs.
With --pipeline N, requests counts every response (N per batch) and the
latency of each is from the batch's write to that response's last byte.
For `large`, cpu_us_per_req is CPU time per body-length of bytes received,
so a request cut by the window boundary counts by its share.
Errors: err_connect (connect failed), err_status (not 200), err_short (EOF,
reset or timeout before the response was complete), err_parse (malformed or
unsupported response, extra bytes). Errors during the warm-up count too.
";

const HEAD_MAX: usize = 64 * 1024;
const SMALL_BUF: usize = 64 * 1024;
const LARGE_BUF: usize = 1024 * 1024;
const MAX_THREADS: usize = 1024;
const MAX_IDLE: usize = 20_000;
const MAX_PIPELINE: u64 = 1024;
/// Largest body accepted (a bound on every read loop).
const BODY_MAX: u64 = 1 << 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    Small,
    Large,
    Churn,
    Idle,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Small => "small",
            Workload::Large => "large",
            Workload::Churn => "churn",
            Workload::Idle => "idle",
        }
    }
}

#[derive(Debug, Clone)]
struct Opts {
    url: String,
    addr: SocketAddr,
    request: Vec<u8>,
    /// Requests per write (`--pipeline`), 1 unless given.
    pipeline: u64,
    /// `request` repeated `pipeline` times: one batch, written at once.
    batch: Vec<u8>,
    workload: Workload,
    connections: usize,
    duration: Duration,
    warmup: Duration,
    pids: Vec<u32>,
    clk_tck: Option<u64>,
    timeout: Duration,
    max_requests: u64,
    settle: Duration,
    label: String,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse_args(&args) {
        Ok(Some(o)) => o,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(io::stderr(), "loadgen: {e}\nTry '--help'.");
            return ExitCode::from(2);
        }
    };
    let outcome = match opts.workload {
        Workload::Idle => run_idle(&opts),
        _ => run_load(&opts),
    };
    match outcome {
        Ok(report) => {
            let mut out = io::stdout().lock();
            let _ = writeln!(out, "{}", report.machine_line(&opts));
            let _ = writeln!(out, "{}", report.human_line(&opts));
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(io::stderr(), "loadgen: {e}");
            ExitCode::from(1)
        }
    }
}

fn secs(v: &str, name: &str) -> Result<Duration, String> {
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 3600.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("invalid {name} '{v}' (seconds, 0..3600)"))
}

fn parse_args(args: &[String]) -> Result<Option<Opts>, String> {
    let mut url = None;
    let mut workload = Workload::Small;
    let mut connections = None;
    let mut duration = Duration::from_secs(5);
    let mut warmup = Duration::from_millis(500);
    let mut pids = Vec::new();
    let mut clk_tck = None;
    let mut timeout = Duration::from_secs(5);
    let mut max_requests = 1_000_000_000u64;
    let mut settle = Duration::from_millis(300);
    let mut label = String::from("-");
    let mut pipeline = 1u64;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag {
            "-h" | "--help" => {
                let _ = io::stdout().write_all(USAGE.as_bytes());
                return Ok(None);
            }
            // `cargo bench` appends --bench to every bench target.
            "--bench" => {}
            "-u" | "--url" => url = Some(value()?),
            "-w" | "--workload" => {
                workload = match value()?.as_str() {
                    "small" => Workload::Small,
                    "large" => Workload::Large,
                    "churn" => Workload::Churn,
                    "idle" => Workload::Idle,
                    w => return Err(format!("unknown workload '{w}'")),
                }
            }
            "-c" | "--connections" => {
                let v = value()?;
                let n: usize = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("invalid connection count '{v}'"))?;
                connections = Some(n);
            }
            "-d" | "--duration" => duration = secs(&value()?, "duration")?,
            "--warmup" => warmup = secs(&value()?, "warm-up")?,
            "--settle" => settle = secs(&value()?, "settle time")?,
            "--timeout" => {
                timeout = secs(&value()?, "timeout")?.max(Duration::from_millis(10));
            }
            "-p" | "--pid" => {
                for p in value()?.split(',').filter(|p| !p.is_empty()) {
                    pids.push(p.parse().map_err(|_| format!("invalid pid '{p}'"))?);
                }
            }
            "--clk-tck" => {
                let v = value()?;
                clk_tck = Some(
                    v.parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| format!("invalid --clk-tck '{v}'"))?,
                );
            }
            "--max-requests" => {
                let v = value()?;
                max_requests = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("invalid --max-requests '{v}'"))?;
            }
            "--pipeline" => {
                let v = value()?;
                pipeline = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PIPELINE).contains(n))
                    .ok_or_else(|| format!("invalid --pipeline '{v}' (1..={MAX_PIPELINE})"))?;
            }
            "--label" => label = value()?.replace(char::is_whitespace, "_"),
            f => return Err(format!("unknown argument '{f}'")),
        }
    }
    let Some(url) = url else {
        // A plain `cargo bench` runs every bench target: nothing to do here
        // without a server to point at.
        let _ = writeln!(
            io::stdout(),
            "loadgen: no --url given, nothing to run (see --help)"
        );
        return Ok(None);
    };
    let (addr, host, path) = parse_url(&url)?;
    let connections = connections.unwrap_or(match workload {
        Workload::Small => 64,
        Workload::Large => 2,
        Workload::Churn => 16,
        Workload::Idle => 1000,
    });
    let cap = if workload == Workload::Idle {
        MAX_IDLE
    } else {
        MAX_THREADS
    };
    if connections > cap {
        return Err(format!(
            "at most {cap} connections for the {} workload",
            workload.name()
        ));
    }
    if pipeline > 1 && workload != Workload::Small {
        return Err("--pipeline applies to the small workload only".into());
    }
    let close = if workload == Workload::Churn {
        "Connection: close\r\n"
    } else {
        ""
    };
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: keel-loadgen\r\n{close}\r\n")
            .into_bytes();
    let batch = request.repeat(pipeline as usize);
    Ok(Some(Opts {
        url,
        addr,
        request,
        pipeline,
        batch,
        workload,
        connections,
        duration,
        warmup,
        pids,
        clk_tck,
        timeout,
        max_requests,
        settle,
        label,
    }))
}

/// `http://HOST[:PORT][/PATH]` with HOST resolving to a loopback address.
fn parse_url(url: &str) -> Result<(SocketAddr, String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// URLs: '{url}'"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!(
            "the path must not contain spaces or controls: '{path}'"
        ));
    }
    let with_port = if authority.ends_with(']') || !authority.contains(':') {
        format!("{authority}:80")
    } else {
        authority.to_string()
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{authority}': {e}"))?
        .find(|a| a.ip().is_loopback())
        .ok_or_else(|| {
            format!("'{authority}' is not a loopback address; only 127.0.0.1 is a target")
        })?;
    Ok((addr, authority.to_string(), path.to_string()))
}

// ---------------------------------------------------------------- histogram

const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB as usize;

/// Log-linear histogram of nanoseconds: exact below 128, then 64 buckets per
/// power of two.
struct Hist {
    counts: Box<[u64]>,
    total: u64,
    max: u64,
}

impl Hist {
    fn new() -> Hist {
        Hist {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            max: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < 2 * SUB {
            return v as usize;
        }
        let msb = v.ilog2();
        let shift = msb - SUB_BITS;
        ((u64::from(shift) + 1) * SUB + ((v >> shift) - SUB)) as usize
    }

    fn lower(i: usize) -> u64 {
        if i < 2 * SUB as usize {
            return i as u64;
        }
        let shift = (i as u64 / SUB) - 1;
        ((i as u64 % SUB) + SUB) << shift
    }

    fn record(&mut self, d: Duration) {
        let v = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.counts[Hist::index(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    fn merge(&mut self, o: &Hist) {
        for (a, b) in self.counts.iter_mut().zip(o.counts.iter()) {
            *a += b;
        }
        self.total += o.total;
        self.max = self.max.max(o.max);
    }

    /// The value at quantile `q` (midpoint of its bucket), in nanoseconds.
    fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let lo = Hist::lower(i);
                let hi = if i + 1 < BUCKETS {
                    Hist::lower(i + 1)
                } else {
                    u64::MAX
                };
                return Some((lo + (hi - lo) / 2).min(self.max));
            }
        }
        Some(self.max)
    }
}

// ---------------------------------------------------------------- counters

struct Tally {
    requests: u64,
    bytes: u64,
    err_connect: u64,
    err_status: u64,
    err_short: u64,
    err_parse: u64,
    reconnects: u64,
    hist: Hist,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            requests: 0,
            bytes: 0,
            err_connect: 0,
            err_status: 0,
            err_short: 0,
            err_parse: 0,
            reconnects: 0,
            hist: Hist::new(),
        }
    }

    fn merge(&mut self, o: &Tally) {
        self.requests += o.requests;
        self.bytes += o.bytes;
        self.err_connect += o.err_connect;
        self.err_status += o.err_status;
        self.err_short += o.err_short;
        self.err_parse += o.err_parse;
        self.reconnects += o.reconnects;
        self.hist.merge(&o.hist);
    }

    fn errors(&self) -> u64 {
        self.err_connect + self.err_status + self.err_short + self.err_parse
    }

    fn fail(&mut self, f: Fail) {
        match f {
            Fail::Connect => self.err_connect += 1,
            Fail::Short | Fail::NoResponse => self.err_short += 1,
            Fail::Parse => self.err_parse += 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fail {
    Connect,
    /// EOF, reset or timeout after part of a response.
    Short,
    /// EOF or reset before any byte of the response: on a reused keep-alive
    /// connection, the server closed it (a reconnect, not an error).
    NoResponse,
    Parse,
}

// ---------------------------------------------------------------- HTTP client

struct Resp {
    status: u16,
    close: bool,
    /// The body length the head announced.
    length: u64,
}

fn connect(o: &Opts) -> Result<TcpStream, Fail> {
    let s = TcpStream::connect_timeout(&o.addr, o.timeout).map_err(|_| Fail::Connect)?;
    let _ = s.set_nodelay(true);
    s.set_read_timeout(Some(o.timeout))
        .and_then(|()| s.set_write_timeout(Some(o.timeout)))
        .map_err(|_| Fail::Connect)?;
    Ok(s)
}

fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    buf[start..]
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| start + p + 4)
}

/// Parses a response head: the status, the body length, whether the server
/// closes after it.
fn parse_head(head: &[u8]) -> Result<(u16, u64, bool), Fail> {
    let text = std::str::from_utf8(head).map_err(|_| Fail::Parse)?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().ok_or(Fail::Parse)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().ok_or(Fail::Parse)?;
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or(Fail::Parse)?;
    let mut close = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(Fail::Parse),
    };
    let mut length = None;
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or(Fail::Parse)?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value.parse().map_err(|_| Fail::Parse)?;
            if length.is_some_and(|l| l != n) || n > BODY_MAX {
                return Err(Fail::Parse);
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Fail::Parse); // not needed by these workloads
        } else if name.eq_ignore_ascii_case("connection") {
            for tok in value.split(',') {
                let tok = tok.trim();
                if tok.eq_ignore_ascii_case("close") {
                    close = true;
                } else if tok.eq_ignore_ascii_case("keep-alive") {
                    close = false;
                }
            }
        }
    }
    let length = match (status, length) {
        (100..=199 | 204 | 304, _) => 0,
        (_, Some(n)) => n,
        (_, None) => return Err(Fail::Parse),
    };
    Ok((status, length, close))
}

/// Reads one whole response into (and through) `buf`; nothing may follow it
/// (nothing was pipelined). Body bytes read at or after `t0` are added to
/// `bytes`.
fn read_response(
    s: &mut TcpStream,
    buf: &mut [u8],
    t0: Instant,
    bytes: &mut u64,
) -> Result<Resp, Fail> {
    let mut carry = 0;
    let r = read_next(s, buf, &mut carry, t0, bytes)?;
    if carry > 0 {
        return Err(Fail::Parse); // bytes past the response
    }
    Ok(r)
}

/// Reads the next whole response. `buf[..*carry]` holds bytes already read
/// (the start of this response); bytes read past its end are moved to the
/// front of `buf` and `*carry` says how many (the next pipelined response).
fn read_next(
    s: &mut TcpStream,
    buf: &mut [u8],
    carry: &mut usize,
    t0: Instant,
    bytes: &mut u64,
) -> Result<Resp, Fail> {
    let mut filled = std::mem::take(carry);
    let mut scanned = 0; // bytes already searched for the head's end
    let head_end = loop {
        if let Some(end) = find_head_end(&buf[..filled], scanned) {
            break end;
        }
        scanned = filled;
        if filled >= HEAD_MAX {
            return Err(Fail::Parse);
        }
        match s.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Err(Fail::NoResponse),
            Ok(0) => return Err(Fail::Short),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if filled == 0 && is_reset(&e) => return Err(Fail::NoResponse),
            Err(_) => return Err(Fail::Short),
        }
    };
    let (status, length, close) = parse_head(&buf[..head_end])?;
    let mut have = (filled - head_end) as u64;
    if have > length {
        // The next response's first bytes: keep them for the next call.
        let end = head_end + length as usize;
        buf.copy_within(end..filled, 0);
        *carry = filled - end;
        have = length;
    }
    let count = |n: u64, bytes: &mut u64| {
        if Instant::now() >= t0 {
            *bytes += n;
        }
    };
    count(have, bytes);
    let mut remaining = length - have;
    while remaining > 0 {
        let want = buf
            .len()
            .min(usize::try_from(remaining).unwrap_or(usize::MAX));
        match s.read(&mut buf[..want]) {
            Ok(0) => return Err(Fail::Short),
            Ok(n) => {
                remaining -= n as u64;
                count(n as u64, bytes);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(Fail::Short),
        }
    }
    Ok(Resp {
        status,
        close,
        length,
    })
}

fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// After a `Connection: close` response: the server must close; read to EOF.
fn expect_eof(s: &mut TcpStream, buf: &mut [u8]) -> Result<(), Fail> {
    // One read normally; a few for interrupted calls. Bounded by the timeout.
    for _ in 0..8 {
        match s.read(buf) {
            Ok(0) => return Ok(()),
            Ok(_) => return Err(Fail::Parse),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_reset(&e) => return Ok(()),
            Err(_) => return Err(Fail::Short),
        }
    }
    Err(Fail::Short)
}

// ---------------------------------------------------------------- /proc

/// Server CPU used between two readings of [`cpu_ns`], with its source.
fn cpu_delta(
    before: Option<(u64, &'static str)>,
    after: Option<(u64, &'static str)>,
) -> Option<(u64, &'static str)> {
    match (before, after) {
        (Some((a, src)), Some((b, _))) => Some((b.saturating_sub(a), src)),
        _ => None,
    }
}

/// Server CPU time in nanoseconds and where it came from.
fn cpu_ns(pids: &[u32], clk_tck: Option<u64>) -> Option<(u64, &'static str)> {
    if pids.is_empty() {
        return None;
    }
    let from_schedstat = || -> Option<u64> {
        let mut total = 0u64;
        for pid in pids {
            let mut any = false;
            for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
                let path = task.ok()?.path().join("schedstat");
                // A thread that exited between listing and reading: skip it.
                if let Ok(s) = std::fs::read_to_string(path) {
                    total += s.split_whitespace().next()?.parse::<u64>().ok()?;
                    any = true;
                }
            }
            if !any {
                return None;
            }
        }
        Some(total)
    };
    if let Some(ns) = from_schedstat() {
        return Some((ns, "schedstat"));
    }
    let hz = clk_tck.unwrap_or(100);
    let mut ticks = 0u64;
    for pid in pids {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may contain spaces): state is
        // field 3, utime 14, stime 15.
        let rest = &s[s.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        ticks += f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    }
    let src = if clk_tck.is_some() {
        "stat"
    } else {
        "stat_clk_tck_100_assumed"
    };
    Some((ticks * 1_000_000_000 / hz, src))
}

/// A `/proc/PID/status` field in kB (`VmRSS:`, `RssAnon:`), summed.
fn status_kib(pids: &[u32], field: &str) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    let mut total = 0;
    for pid in pids {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = s.lines().find(|l| l.starts_with(field))?;
        total += line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok())?;
    }
    Some(total)
}

// ---------------------------------------------------------------- workloads

struct Report {
    tally: Tally,
    seconds: f64,
    cpu: Option<(u64, &'static str)>,
    rss_before: Option<u64>,
    rss_after: Option<u64>,
    anon_before: Option<u64>,
    anon_after: Option<u64>,
    opened: Option<usize>,
    alive: Option<usize>,
    body_len: Option<u64>,
}

fn run_load(o: &Opts) -> Result<Report, String> {
    // Fail fast (and clearly) when nothing listens.
    drop(connect(o).map_err(|_| format!("cannot connect to {}", o.addr))?);
    let start = Instant::now();
    let t0 = start + o.warmup;
    let t1 = t0 + o.duration;
    let per_thread = o.max_requests.div_ceil(o.connections as u64);
    let shared = Arc::new(o.clone());
    let mut handles = Vec::with_capacity(o.connections);
    for i in 0..o.connections {
        let o = Arc::clone(&shared);
        let h = thread::Builder::new()
            .name(format!("loadgen-{i}"))
            .stack_size(256 * 1024)
            .spawn(move || match o.workload {
                Workload::Churn => churn_loop(&o, t0, t1, per_thread),
                _ => keepalive_loop(&o, t0, t1, per_thread),
            })
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        handles.push(h);
    }
    thread::sleep(t0.saturating_duration_since(Instant::now()));
    let measured_from = Instant::now();
    let cpu0 = cpu_ns(&o.pids, o.clk_tck);
    let rss_before = status_kib(&o.pids, "VmRSS:");
    let anon_before = status_kib(&o.pids, "RssAnon:");
    let mut tally = Tally::new();
    let mut body_len = None;
    for h in handles {
        let (t, len) = h.join().map_err(|_| "a load thread panicked".to_string())?;
        tally.merge(&t);
        body_len = body_len.or(len);
    }
    let cpu1 = cpu_ns(&o.pids, o.clk_tck);
    let seconds = measured_from.elapsed().as_secs_f64();
    let rss_after = status_kib(&o.pids, "VmRSS:");
    let anon_after = status_kib(&o.pids, "RssAnon:");
    let cpu = cpu_delta(cpu0, cpu1);
    Ok(Report {
        tally,
        seconds,
        cpu,
        rss_before,
        rss_after,
        anon_before,
        anon_after,
        opened: None,
        alive: None,
        body_len,
    })
}

/// Keep-alive requests on one connection until `t1` (the request in flight
/// then is finished). Returns the tally and the body length seen.
fn keepalive_loop(o: &Opts, t0: Instant, t1: Instant, max: u64) -> (Tally, Option<u64>) {
    let mut tally = Tally::new();
    let size = if o.workload == Workload::Large {
        LARGE_BUF
    } else {
        SMALL_BUF
    };
    let mut buf = vec![0u8; size];
    let mut conn: Option<(TcpStream, u64)> = None; // stream, responses on it
    let mut body_len = None;
    let mut issued = 0u64;
    while issued < max && Instant::now() < t1 {
        let (s, served) = match conn.as_mut() {
            Some(c) => c,
            None => match connect(o) {
                Ok(s) => conn.insert((s, 0)),
                Err(f) => {
                    tally.fail(f);
                    thread::sleep(Duration::from_millis(10)); // no spinning on refusals
                    continue;
                }
            },
        };
        issued += o.pipeline;
        let begin = Instant::now();
        let mut carry = 0;
        let mut closed = false; // the server said `Connection: close`
        let mut result = s.write_all(&o.batch).map_err(|e| {
            if is_reset(&e) {
                Fail::NoResponse
            } else {
                Fail::Short
            }
        });
        // One response per request of the batch (bounded: `pipeline` reads
        // of whole responses, each bounded by the socket timeout).
        for i in 0..o.pipeline {
            if result.is_err() {
                break;
            }
            let mut bytes = 0;
            let r = read_next(s, &mut buf, &mut carry, t0, &mut bytes);
            let end = Instant::now();
            tally.bytes += bytes;
            result = match r {
                Ok(r) => {
                    *served += 1;
                    if end >= t0 {
                        tally.requests += 1;
                        tally.hist.record(end - begin);
                    }
                    if r.status != 200 {
                        tally.err_status += 1;
                    }
                    body_len.get_or_insert(r.length);
                    closed = r.close;
                    if r.close && i + 1 < o.pipeline {
                        Err(Fail::Short) // closing with requests of the batch unanswered
                    } else {
                        Ok(())
                    }
                }
                // The server closed an idle keep-alive connection before the
                // batch: reconnect. Mid-batch it is an error.
                Err(Fail::NoResponse) if i > 0 => Err(Fail::Short),
                Err(f) => Err(f),
            };
        }
        if carry > 0 && result.is_ok() {
            result = Err(Fail::Parse); // bytes past the batch's last response
        }
        match result {
            Ok(()) => {
                if closed {
                    conn = None;
                    tally.reconnects += 1;
                }
            }
            Err(Fail::NoResponse) if *served > 0 => {
                // The server closed an idle keep-alive connection: reconnect.
                tally.reconnects += 1;
                conn = None;
            }
            Err(f) => {
                tally.fail(f);
                conn = None;
            }
        }
    }
    (tally, body_len)
}

/// A new connection per request, `Connection: close`, read to EOF.
fn churn_loop(o: &Opts, t0: Instant, t1: Instant, max: u64) -> (Tally, Option<u64>) {
    let mut tally = Tally::new();
    let mut buf = vec![0u8; SMALL_BUF];
    let mut issued = 0u64;
    while issued < max && Instant::now() < t1 {
        issued += 1;
        let begin = Instant::now();
        let mut s = match connect(o) {
            Ok(s) => s,
            Err(f) => {
                tally.fail(f);
                thread::sleep(Duration::from_millis(1));
                continue;
            }
        };
        let mut bytes = 0;
        let result = s
            .write_all(&o.request)
            .map_err(|_| Fail::Short)
            .and_then(|()| read_response(&mut s, &mut buf, t0, &mut bytes))
            .and_then(|r| {
                if r.close {
                    expect_eof(&mut s, &mut buf).map(|()| r)
                } else {
                    Err(Fail::Parse) // asked for close, got keep-alive
                }
            });
        drop(s);
        let end = Instant::now();
        tally.bytes += bytes;
        match result {
            Ok(r) => {
                if end >= t0 {
                    tally.requests += 1;
                    tally.hist.record(end - begin);
                }
                if r.status != 200 {
                    tally.err_status += 1;
                }
            }
            Err(Fail::NoResponse) => tally.err_short += 1,
            Err(f) => tally.fail(f),
        }
    }
    (tally, None)
}

/// Opens `connections` keep-alive connections, one request each, and keeps
/// them open while the server's RSS is read.
fn run_idle(o: &Opts) -> Result<Report, String> {
    let mut tally = Tally::new();
    let mut buf = vec![0u8; SMALL_BUF];
    let past = Instant::now(); // count every body byte
                               // One request first, so lazily built server state is not charged to the
                               // idle connections.
    {
        let mut s = connect(o).map_err(|_| format!("cannot connect to {}", o.addr))?;
        let mut b = 0;
        s.write_all(&o.request)
            .map_err(|e| format!("warm-up request: {e}"))?;
        read_response(&mut s, &mut buf, past, &mut b)
            .map_err(|f| format!("warm-up request failed: {f:?}"))?;
    }
    thread::sleep(Duration::from_millis(100));
    let rss_before = status_kib(&o.pids, "VmRSS:");
    let anon_before = status_kib(&o.pids, "RssAnon:");
    let cpu0 = cpu_ns(&o.pids, o.clk_tck);
    let start = Instant::now();
    let deadline = start + o.duration.max(Duration::from_secs(1));
    let mut open: Vec<TcpStream> = Vec::with_capacity(o.connections);
    let mut attempts = 0usize;
    // Bounded: at most 2 attempts per wanted connection, and the deadline.
    while open.len() < o.connections && attempts < 2 * o.connections && Instant::now() < deadline {
        attempts += 1;
        let begin = Instant::now();
        let mut s = match connect(o) {
            Ok(s) => s,
            Err(f) => {
                tally.fail(f);
                continue;
            }
        };
        let mut bytes = 0;
        let result = s
            .write_all(&o.request)
            .map_err(|_| Fail::Short)
            .and_then(|()| read_response(&mut s, &mut buf, past, &mut bytes));
        tally.bytes += bytes;
        match result {
            Ok(r) => {
                tally.requests += 1;
                tally.hist.record(begin.elapsed());
                if r.status != 200 {
                    tally.err_status += 1;
                }
                if r.close {
                    tally.reconnects += 1; // the server would not keep it
                } else {
                    open.push(s);
                }
            }
            Err(f) => tally.fail(f),
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let opened = open.len();
    thread::sleep(o.settle);
    let rss_after = status_kib(&o.pids, "VmRSS:");
    let anon_after = status_kib(&o.pids, "RssAnon:");
    let cpu1 = cpu_ns(&o.pids, o.clk_tck);
    // Still open? A non-blocking read of an idle, open connection blocks.
    let mut alive = 0;
    for s in &mut open {
        if s.set_nonblocking(true).is_ok() {
            if let Err(e) = s.read(&mut buf[..1]) {
                if e.kind() == io::ErrorKind::WouldBlock {
                    alive += 1;
                }
            }
        }
        let _ = s.shutdown(Shutdown::Both);
    }
    drop(open);
    let cpu = cpu_delta(cpu0, cpu1);
    Ok(Report {
        tally,
        seconds,
        cpu,
        rss_before,
        rss_after,
        anon_before,
        anon_after,
        opened: Some(opened),
        alive: Some(alive),
        body_len: None,
    })
}

// ---------------------------------------------------------------- output

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "NA".to_string(), |v| v.to_string())
}

impl Report {
    fn req_s(&self) -> f64 {
        self.tally.requests as f64 / self.seconds.max(1e-9)
    }

    fn gb_s(&self) -> f64 {
        self.tally.bytes as f64 / self.seconds.max(1e-9) / 1e9
    }

    /// Server CPU per request: for `large`, per body-length of bytes.
    fn cpu_us_per_req(&self, o: &Opts) -> Option<f64> {
        let (ns, _) = self.cpu?;
        let reqs = match (o.workload, self.body_len) {
            (Workload::Large, Some(len)) if len > 0 => self.tally.bytes as f64 / len as f64,
            _ => self.tally.requests as f64,
        };
        (reqs > 0.0).then(|| ns as f64 / 1e3 / reqs)
    }

    fn kib_per_conn(&self) -> Option<f64> {
        let (a, b, n) = (self.rss_before?, self.rss_after?, self.opened?);
        (n > 0).then(|| (b as f64 - a as f64) / n as f64)
    }

    fn machine_line(&self, o: &Opts) -> String {
        let t = &self.tally;
        let us = |q: f64| {
            opt(t
                .hist
                .quantile(q)
                .map(|ns| format!("{:.1}", ns as f64 / 1e3)))
        };
        let max_us = (t.hist.total > 0).then(|| format!("{:.1}", t.hist.max as f64 / 1e3));
        let gb = (o.workload == Workload::Large).then(|| format!("{:.3}", self.gb_s()));
        format!(
            "label={} workload={} pipeline={} url={} connections={} seconds={:.3} requests={} req_s={:.1} \
             bytes={} gb_s={} p50_us={} p99_us={} max_us={} errors={} err_connect={} \
             err_status={} err_short={} err_parse={} reconnects={} cpu_source={} \
             server_cpu_ms={} cpu_us_per_req={} rss_before_kib={} rss_after_kib={} \
             anon_before_kib={} anon_after_kib={} \
             kib_per_conn={} opened={} alive={}",
            o.label,
            o.workload.name(),
            o.pipeline,
            o.url,
            o.connections,
            self.seconds,
            t.requests,
            self.req_s(),
            t.bytes,
            opt(gb),
            us(0.5),
            us(0.99),
            opt(max_us),
            t.errors(),
            t.err_connect,
            t.err_status,
            t.err_short,
            t.err_parse,
            t.reconnects,
            self.cpu.map_or("NA", |c| c.1),
            opt(self.cpu.map(|c| format!("{:.1}", c.0 as f64 / 1e6))),
            opt(self.cpu_us_per_req(o).map(|v| format!("{v:.3}"))),
            opt(self.rss_before),
            opt(self.rss_after),
            opt(self.anon_before),
            opt(self.anon_after),
            opt(self.kib_per_conn().map(|v| format!("{v:.3}"))),
            opt(self.opened),
            opt(self.alive),
        )
    }

    fn human_line(&self, o: &Opts) -> String {
        let t = &self.tally;
        let ms = |q: f64| {
            t.hist
                .quantile(q)
                .map_or("-".to_string(), |ns| format!("{:.3} ms", ns as f64 / 1e6))
        };
        let mut s = format!("# {} {}: ", o.label, o.workload.name());
        if o.pipeline > 1 {
            s += &format!("pipelined x{}, ", o.pipeline);
        }
        match o.workload {
            Workload::Idle => {
                s += &format!(
                    "{} of {} connections open ({} still open after {:.1} s), opened in {:.2} s",
                    self.opened.unwrap_or(0),
                    o.connections,
                    self.alive.unwrap_or(0),
                    o.settle.as_secs_f64(),
                    self.seconds
                )
            }
            Workload::Large => {
                s += &format!(
                    "{:.3} GB/s over {} connections in {:.2} s ({} whole responses)",
                    self.gb_s(),
                    o.connections,
                    self.seconds,
                    t.requests
                )
            }
            _ => {
                s += &format!(
                    "{:.0} req/s over {} connections in {:.2} s",
                    self.req_s(),
                    o.connections,
                    self.seconds
                )
            }
        }
        s += &format!(", p50 {}, p99 {}", ms(0.5), ms(0.99));
        s += &format!(
            ", errors {} (connect {}, status {}, short {}, parse {}), reconnects {}",
            t.errors(),
            t.err_connect,
            t.err_status,
            t.err_short,
            t.err_parse,
            t.reconnects
        );
        if let Some(v) = self.cpu_us_per_req(o) {
            let src = self.cpu.map_or("", |c| c.1);
            s += &format!("; server CPU {v:.2} µs/req ({src})");
        }
        if let (Some(a), Some(b)) = (self.rss_before, self.rss_after) {
            s += &format!("; server RSS {a} -> {b} KiB");
            if let (Some(a), Some(b)) = (self.anon_before, self.anon_after) {
                s += &format!(" (anonymous {a} -> {b})");
            }
        }
        if let Some(k) = self.kib_per_conn() {
            s += &format!(" ({k:.2} KiB per connection)");
        }
        s
    }
}
