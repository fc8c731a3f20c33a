//! `alloc`: heap allocations per request on the server's thread, in steady
//! state.
//!
//! A counting `#[global_allocator]` wraps `System`; it counts only on threads
//! that set the thread-local `COUNTING` flag, which the server thread sets
//! first thing, so the client thread (this process's `main`) is not counted.
//! A keelhttp `Server` runs on that thread with one handler that dispatches
//! by path to each scenario; for each scenario the client warms up, then
//! sends N keep-alive requests (or N connections, for `churn`) and the
//! counters' difference is divided by N.
//!
//! ```text
//! cargo bench --bench alloc                 # the table
//! cargo bench --bench alloc -- -n 50000     # more requests per scenario
//! cargo bench --bench alloc -- --help
//! # Where each allocation comes from (needs symbols; release strips them):
//! CARGO_PROFILE_BENCH_STRIP=false CARGO_PROFILE_BENCH_DEBUG=line-tables-only \
//!   cargo bench --bench alloc -- --trace 2
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use keelhttp::{Body, Config, Handler, Request, Response, Server, StaticFiles};

// ---------------------------------------------------------------- allocator

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static REALLOCS: AtomicU64 = AtomicU64::new(0);
static FREES: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
/// Backtraces still to take (`--trace`), and where they go.
static TRACE_LEFT: AtomicUsize = AtomicUsize::new(0);
static TRACES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Distinct allocation sizes seen while counting, with their counts: a small
/// open table claimed by compare-and-swap (size 0 = free slot).
const SIZE_SLOTS: usize = 32;
static SIZE_KEYS: [AtomicUsize; SIZE_SLOTS] = [const { AtomicUsize::new(0) }; SIZE_SLOTS];
static SIZE_COUNTS: [AtomicU64; SIZE_SLOTS] = [const { AtomicU64::new(0) }; SIZE_SLOTS];

thread_local! {
    /// Set on the server thread only. `const` and `Copy`: no lazy
    /// initialisation, no destructor, so it is safe to read in the allocator.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn counting() -> bool {
    COUNTING.try_with(Cell::get).unwrap_or(false)
}

fn note_size(size: usize) {
    let key = size.max(1);
    for (k, c) in SIZE_KEYS.iter().zip(SIZE_COUNTS.iter()) {
        match k.compare_exchange(0, key, Relaxed, Relaxed) {
            Ok(_) => {
                c.fetch_add(1, Relaxed);
                return;
            }
            Err(existing) if existing == key => {
                c.fetch_add(1, Relaxed);
                return;
            }
            Err(_) => {}
        }
    }
}

/// With `--trace`: the backtrace of this allocation, taken with counting
/// off (capturing allocates).
fn maybe_trace(what: &str, size: usize) {
    if TRACE_LEFT.load(Relaxed) == 0 {
        return;
    }
    if TRACE_LEFT
        .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
        .is_err()
    {
        return;
    }
    COUNTING.with(|c| c.set(false));
    let bt = std::backtrace::Backtrace::force_capture();
    let text = format!("{what} of {size} bytes:\n{bt}");
    if let Ok(mut t) = TRACES.lock() {
        t.push(text);
    }
    COUNTING.with(|c| c.set(true));
}

fn on_alloc(size: usize) {
    if counting() {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(size as u64, Relaxed);
        note_size(size);
        maybe_trace("alloc", size);
    }
}

// SAFETY: every call is forwarded unchanged to `System`; the bookkeeping
// around it only touches atomics and a const thread-local, and never
// allocates while counting is on (the backtrace path turns it off first).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        on_alloc(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        on_alloc(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if counting() {
            FREES.fetch_add(1, Relaxed);
        }
        System.dealloc(ptr, layout);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counting() {
            REALLOCS.fetch_add(1, Relaxed);
            BYTES.fetch_add(new_size.saturating_sub(layout.size()) as u64, Relaxed);
            note_size(new_size);
            maybe_trace("realloc", new_size);
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Debug, Clone, Copy, Default)]
struct Snapshot {
    allocs: u64,
    reallocs: u64,
    frees: u64,
    bytes: u64,
}

fn snapshot() -> Snapshot {
    Snapshot {
        allocs: ALLOCS.load(Relaxed),
        reallocs: REALLOCS.load(Relaxed),
        frees: FREES.load(Relaxed),
        bytes: BYTES.load(Relaxed),
    }
}

fn reset_sizes() {
    for (k, c) in SIZE_KEYS.iter().zip(SIZE_COUNTS.iter()) {
        k.store(0, Relaxed);
        c.store(0, Relaxed);
    }
}

fn sizes_seen() -> Vec<(usize, u64)> {
    let mut v: Vec<(usize, u64)> = SIZE_KEYS
        .iter()
        .zip(SIZE_COUNTS.iter())
        .map(|(k, c)| (k.load(Relaxed), c.load(Relaxed)))
        .filter(|(k, c)| *k != 0 && *c != 0)
        .collect();
    v.sort_unstable();
    v
}

// ---------------------------------------------------------------- the server

const PLAINTEXT: &str = "Hello, World!";

/// One handler for every scenario, chosen by path.
struct Scenarios {
    file_path: PathBuf,
    /// Opened once; `/dup` hands out `try_clone`s of it (a `dup(2)`, no
    /// allocation), isolating the engine's own cost for a file body.
    file: File,
    file_len: u64,
    dir: StaticFiles,
}

impl Handler for Scenarios {
    fn handle(&mut self, req: &Request<'_>) -> Response {
        match req.path() {
            // Nothing allocated by the handler: no headers, a static body.
            "/bare" => Response::new(200).with_body(PLAINTEXT),
            // (a) the documented static response: one pushed header.
            "/text" => Response::text(200, PLAINTEXT),
            // (b) a file response: open by path, Response::file.
            "/open" => match File::open(&self.file_path).and_then(|f| Response::file(200, f)) {
                Ok(r) => r,
                Err(_) => Response::new(500),
            },
            // A file body without opening anything.
            "/dup" => match self.file.try_clone() {
                Ok(file) => Response::new(200).with_body(Body::File {
                    file,
                    offset: 0,
                    len: self.file_len,
                }),
                Err(_) => Response::new(500),
            },
            // The `keel` binary's handler.
            _ => self.dir.handle(req),
        }
    }
}

// ---------------------------------------------------------------- the client

fn read_response(s: &mut TcpStream, buf: &mut [u8]) -> io::Result<u16> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let mut filled = 0;
    let head_end = loop {
        if let Some(p) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if filled == buf.len() {
            return Err(bad("head too large"));
        }
        match s.read(&mut buf[filled..])? {
            0 => return Err(bad("EOF in head")),
            n => filled += n,
        }
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| bad("head not UTF-8"))?;
    let status: u16 = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let len: usize = head
        .split("\r\n")
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .ok_or_else(|| bad("no Content-Length"))?;
    let mut remaining = (head_end + len)
        .checked_sub(filled)
        .ok_or_else(|| bad("bytes past the body"))?;
    while remaining > 0 {
        let want = remaining.min(buf.len());
        match s.read(&mut buf[..want])? {
            0 => return Err(bad("EOF in body")),
            n => remaining -= n,
        }
    }
    Ok(status)
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    Ok(s)
}

/// `n` requests for `path`: keep-alive on one connection, or (`churn`) a new
/// `Connection: close` connection each.
fn drive(addr: SocketAddr, path: &str, n: u64, churn: bool) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let close = if churn { "Connection: close\r\n" } else { "" };
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{close}\r\n");
    let mut conn: Option<TcpStream> = None;
    for _ in 0..n {
        let s = match conn.as_mut() {
            Some(s) => s,
            None => conn.insert(connect(addr)?),
        };
        s.write_all(req.as_bytes())?;
        let status = read_response(s, &mut buf)?;
        if status != 200 {
            return Err(io::Error::other(format!("{path}: status {status}")));
        }
        if churn {
            // Read to EOF: the server closes first, as a real client sees it.
            let mut s = conn.take().expect("connected above");
            let mut one = [0u8; 1];
            let _ = s.read(&mut one);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- main

const USAGE: &str = "\
alloc - heap allocations per request on a keelhttp server thread

Usage: cargo bench --bench alloc -- [OPTIONS]

Options:
  -n N          measured requests per scenario [default: 10000; churn: N/10]
  --warmup N    unmeasured requests first [default: 1000; churn: N/10]
  --trace K     print backtraces of the first K allocations of each
                scenario's measured phase (build with symbols, see the
                source's header)
  -h, --help    this help

Scenarios (one server, a handler dispatching by path):
  bare    Response::new(200).with_body(\"Hello, World!\"): the handler
          allocates nothing, so this is the engine's own cost
  text    Response::text(200, \"Hello, World!\"), a &'static str body (a)
  open    File::open(path) + Response::file (b)
  dup     Body::File of a dup(2) of a file opened once (no path, no open)
  static  StaticFiles (the keel binary's handler), a 1 KiB file
  churn   `bare` with Connection: close, a new connection each (per conn)

Output: a table, then one `key=value` line per scenario.
";

struct Args {
    n: u64,
    warmup: u64,
    trace: usize,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut a = Args {
        n: 10_000,
        warmup: 1_000,
        trace: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut num = |name: &str| -> Result<u64, String> {
            let v = it.next().ok_or_else(|| format!("{name} needs a value"))?;
            v.parse()
                .ok()
                .filter(|n| (1..=100_000_000).contains(n))
                .ok_or_else(|| format!("invalid {name} '{v}'"))
        };
        match arg.as_str() {
            "-h" | "--help" => {
                let _ = io::stdout().write_all(USAGE.as_bytes());
                return Ok(None);
            }
            "--bench" => {} // added by `cargo bench`
            "-n" => a.n = num("-n")?,
            "--warmup" => a.warmup = num("--warmup")?,
            "--trace" => a.trace = usize::try_from(num("--trace")?).unwrap_or(usize::MAX),
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(Some(a))
}

struct Row {
    name: &'static str,
    what: &'static str,
    per: &'static str,
    n: u64,
    d: Snapshot,
    sizes: Vec<(usize, u64)>,
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(io::stderr(), "alloc: {e}\nTry '--help'.");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(io::stderr(), "alloc: {e}");
            ExitCode::from(1)
        }
    }
}

fn temp_dir() -> io::Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!("keel-alloc-{}-{nanos}", std::process::id()));
    std::fs::create_dir(&dir)?;
    Ok(dir)
}

fn run(args: &Args) -> Result<(), String> {
    let dir = temp_dir().map_err(|e| format!("temp dir: {e}"))?;
    let result = run_in(args, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_in(args: &Args, dir: &std::path::Path) -> Result<(), String> {
    let file_path = dir.join("1k.bin");
    std::fs::write(&file_path, [b'x'; 1024]).map_err(|e| format!("writing the file: {e}"))?;
    let file = File::open(&file_path).map_err(|e| e.to_string())?;
    let dir_handler = StaticFiles::new(dir).map_err(|e| e.to_string())?;
    let handler = Scenarios {
        file_path,
        file,
        file_len: 1024,
        dir: dir_handler,
    };

    let (tx, rx) = mpsc::channel();
    let server_thread = std::thread::Builder::new()
        .name("keel-server".into())
        .spawn(move || {
            COUNTING.with(|c| c.set(true));
            let server = match Server::bind("127.0.0.1:0", Config::default()) {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            };
            let _ = tx.send(Ok((server.local_addr(), server.shutdown_handle())));
            let _ = server.run(handler);
            COUNTING.with(|c| c.set(false));
        })
        .map_err(|e| e.to_string())?;
    let (addr, stop) = rx
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| "the server did not start".to_string())??;

    let scenarios: [(&str, &str, &str, bool); 6] = [
        (
            "bare",
            "/bare",
            "static body, no headers (engine only)",
            false,
        ),
        ("text", "/text", "Response::text, &'static str (a)", false),
        (
            "open",
            "/open",
            "File::open + Response::file, 1 KiB (b)",
            false,
        ),
        ("dup", "/dup", "Body::File of a dup'd fd, 1 KiB", false),
        (
            "static",
            "/1k.bin",
            "StaticFiles (keel binary), 1 KiB",
            false,
        ),
        (
            "churn",
            "/bare",
            "bare, Connection: close, new conn each",
            true,
        ),
    ];
    let mut rows = Vec::new();
    let mut failure = None;
    let started = Instant::now();
    for (name, path, what, churn) in scenarios {
        let (n, warm) = if churn {
            ((args.n / 10).max(1), (args.warmup / 10).max(1))
        } else {
            (args.n, args.warmup)
        };
        if let Err(e) = drive(addr, path, warm, churn) {
            failure = Some(format!("{name} warm-up: {e}"));
            break;
        }
        // Let the server finish the last response's bookkeeping.
        std::thread::sleep(Duration::from_millis(20));
        reset_sizes();
        TRACE_LEFT.store(args.trace, Relaxed);
        let a = snapshot();
        let r = drive(addr, path, n, churn);
        std::thread::sleep(Duration::from_millis(20));
        let b = snapshot();
        TRACE_LEFT.store(0, Relaxed);
        if let Err(e) = r {
            failure = Some(format!("{name}: {e}"));
            break;
        }
        rows.push(Row {
            name,
            what,
            per: if churn { "conn" } else { "req" },
            n,
            d: Snapshot {
                allocs: b.allocs - a.allocs,
                reallocs: b.reallocs - a.reallocs,
                frees: b.frees - a.frees,
                bytes: b.bytes - a.bytes,
            },
            sizes: sizes_seen(),
        });
        let traces = std::mem::take(&mut *TRACES.lock().map_err(|_| "poisoned")?);
        for t in traces {
            println!("--- {name}: {t}");
        }
    }
    stop.shutdown();
    let _ = server_thread.join();
    if let Some(f) = failure {
        return Err(f);
    }

    println!(
        "allocations on the server thread, steady state ({:.1} s in all)",
        started.elapsed().as_secs_f64()
    );
    println!(
        "{:<7} {:<42} {:>7} {:>10} {:>10} {:>10} {:>10}  sizes seen (bytes x count)",
        "case", "what", "n", "allocs/op", "reallocs", "frees/op", "bytes/op"
    );
    for r in &rows {
        let per = |v: u64| v as f64 / r.n as f64;
        let sizes: Vec<String> = r.sizes.iter().map(|(s, c)| format!("{s}x{c}")).collect();
        println!(
            "{:<7} {:<42} {:>7} {:>10.3} {:>10.3} {:>10.3} {:>10.1}  {}",
            r.name,
            r.what,
            format!("{}/{}", r.n, r.per),
            per(r.d.allocs),
            per(r.d.reallocs),
            per(r.d.frees),
            per(r.d.bytes),
            if sizes.is_empty() {
                "-".to_string()
            } else {
                sizes.join(" ")
            }
        );
    }
    for r in &rows {
        let per = |v: u64| v as f64 / r.n as f64;
        println!(
            "alloc case={} per={} n={} allocs_per_op={:.3} reallocs_per_op={:.3} \
             frees_per_op={:.3} bytes_per_op={:.1}",
            r.name,
            r.per,
            r.n,
            per(r.d.allocs),
            per(r.d.reallocs),
            per(r.d.frees),
            per(r.d.bytes)
        );
    }
    Ok(())
}
