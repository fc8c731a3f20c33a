//! Test harness: starts the server in a thread ([`TestServer`]) or the real
//! `keel` binary as a child process ([`KeelProcess`], [`KeelChild`]) and
//! speaks HTTP to it with std sockets and literal bytes.
//!
//! Every socket has timeouts, every loop is bounded in count and time and
//! retries on EINTR, every child is killed (and reaped) by a guard, also
//! when a test panics.
#![allow(dead_code)] // each test file uses a different part

use std::ffi::OsStr;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use keelhttp::{Config, Handler, Report, Server, ShutdownHandle};

/// Every socket read or write in a test gives up after this long.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A server running in its own thread.
pub struct TestServer {
    pub addr: SocketAddr,
    pub stop: ShutdownHandle,
    done: Option<mpsc::Receiver<Report>>,
}

impl TestServer {
    pub fn start<H: Handler + Send + 'static>(config: Config, handler: H) -> TestServer {
        let server = Server::bind("127.0.0.1:0", config).expect("bind 127.0.0.1:0");
        let addr = server.local_addr();
        let stop = server.shutdown_handle();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let report = server.run(handler).expect("server loop failed");
            let _ = tx.send(report);
        });
        TestServer {
            addr,
            stop,
            done: Some(rx),
        }
    }

    /// Graceful shutdown; waits at most `limit` for `run` to return.
    pub fn shutdown_within(mut self, limit: Duration) -> Report {
        self.stop.shutdown();
        let rx = self.done.take().expect("already stopped");
        rx.recv_timeout(limit)
            .unwrap_or_else(|e| panic!("server did not stop within {limit:?}: {e}"))
    }

    pub fn connect(&self) -> TcpStream {
        connect(self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(rx) = self.done.take() {
            self.stop.shutdown_now();
            let _ = rx.recv_timeout(Duration::from_secs(5));
        }
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A parsed response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub head: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// Reads one response: the head up to CRLFCRLF, then exactly
/// `Content-Length` body bytes, never more, so the next response on a
/// keep-alive connection stays unread. `head_request`: the body is not sent
/// (HEAD).
pub fn read_response_to<S: Read + ?Sized>(s: &mut S, head_request: bool) -> Resp {
    let deadline = Instant::now() + 2 * IO_TIMEOUT;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    let mut reads = 0u32;
    while !head.ends_with(b"\r\n\r\n") {
        assert!(head.len() < 64 * 1024, "response head too long");
        assert!(
            Instant::now() < deadline && reads < 100_000,
            "response head not complete in time: {:?}",
            String::from_utf8_lossy(&head)
        );
        reads += 1;
        match s.read(&mut byte) {
            Ok(0) => panic!(
                "connection closed inside a response head: {:?}",
                String::from_utf8_lossy(&head)
            ),
            Ok(_) => head.push(byte[0]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {} // EINTR under load: retry
            Err(e) => panic!("reading a response head: {e}"),
        }
    }
    let head = String::from_utf8(head).expect("head is not UTF-8");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    assert!(
        status_line.starts_with("HTTP/1.1 "),
        "bad status line {status_line:?} (stray body bytes from a previous response?)"
    );
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l
                .split_once(':')
                .unwrap_or_else(|| panic!("header without colon: {l:?}"));
            (n.trim().to_string(), v.trim().to_string())
        })
        .collect();
    let mut resp = Resp {
        status,
        head: head.clone(),
        headers,
        body: Vec::new(),
    };
    if head_request || status < 200 || status == 204 || status == 304 {
        return resp;
    }
    let len: usize = resp
        .header("content-length")
        .unwrap_or_else(|| panic!("no Content-Length in {head:?}"))
        .parse()
        .expect("numeric Content-Length");
    resp.body = vec![0; len];
    let mut have = 0;
    let mut reads = 0u32;
    while have < len {
        assert!(
            Instant::now() < deadline && reads < 1_000_000,
            "body not complete in time: {have} of {len}"
        );
        reads += 1;
        match s.read(&mut resp.body[have..]) {
            Ok(0) => panic!("connection closed inside a body: {have} of {len}"),
            Ok(n) => have += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {} // EINTR under load: retry
            Err(e) => panic!("reading a response body ({have} of {len}): {e}"),
        }
    }
    resp
}

pub fn read_response(s: &mut TcpStream) -> Resp {
    read_response_to(s, false)
}

/// Sends `METHOD TARGET HTTP/1.1` with a Host header on `s` and reads the
/// response.
pub fn request(s: &mut TcpStream, method: &str, target: &str) -> Resp {
    let raw = format!("{method} {target} HTTP/1.1\r\nHost: test\r\n\r\n");
    s.write_all(raw.as_bytes()).expect("write request");
    read_response_to(s, method == "HEAD")
}

/// Sends raw bytes on a new connection and reads one response.
pub fn exchange(addr: SocketAddr, raw: &[u8]) -> Resp {
    let mut s = connect(addr);
    s.write_all(raw).expect("write request");
    read_response(&mut s)
}

/// Whether the server closes the connection: reads until EOF (true) or a
/// reset (true), within `limit`. Any bytes seen before that are returned in
/// the error.
pub fn closed_within(s: &mut TcpStream, limit: Duration) -> Result<(), String> {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                return Err(format!(
                    "got {n} bytes instead of a close: {:?}",
                    String::from_utf8_lossy(&buf[..n])
                ))
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted && start.elapsed() < limit => {}
            Err(e) => return Err(format!("no close within {limit:?}: {e}")),
        }
    }
}

/// A deterministic pseudo-random byte pattern (no rand dependency).
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

/// A fresh, empty temporary directory (removed by the returned guard).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "keel-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", p.display()));
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `contents` to `rel` below the directory, creating parents.
    pub fn write(&self, rel: &str, contents: &[u8]) -> PathBuf {
        let p = self.0.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, contents).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------
// The real `keel` binary as a child process

pub const KEEL: &str = env!("CARGO_BIN_EXE_keel");
/// How long `keel` may take to exit when it should (help, bad usage, ...).
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `keel` may take to start accepting connections.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Poll interval while waiting for a child to exit or to listen.
const POLL: Duration = Duration::from_millis(10);

/// What a [`KeelChild`] gets as stdout.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ChildStdout {
    Null,
    /// Piped and read in a thread.
    Capture,
    /// Piped, and the read end closed before the child can write to it.
    Closed,
}

/// A `keel` child process, killed and reaped on drop, so no test leaves a
/// server behind. Its stderr (and a captured stdout) is read in a thread, so
/// the pipe never fills.
pub struct KeelChild {
    child: Child,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

/// How a [`KeelChild`] ended.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

fn read_in_thread<R: Read + Send + 'static>(r: Option<R>) -> Option<JoinHandle<Vec<u8>>> {
    r.map(|mut r| {
        thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v); // retries on EINTR, ends at EOF
            v
        })
    })
}

fn join_output(h: Option<JoinHandle<Vec<u8>>>) -> String {
    h.map(|h| String::from_utf8_lossy(&h.join().unwrap_or_default()).into_owned())
        .unwrap_or_default()
}

/// "exit code N" or "killed by signal N".
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => format!("{status:?}"),
    }
}

impl KeelChild {
    /// Spawns `keel ARGS` with `RUST_LOG=rust_log`, stdin null, stderr piped.
    pub fn spawn<S: AsRef<OsStr>>(args: &[S], rust_log: &str, stdout: ChildStdout) -> KeelChild {
        let mut child = Command::new(KEEL)
            .args(args)
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(match stdout {
                ChildStdout::Null => Stdio::null(),
                ChildStdout::Capture | ChildStdout::Closed => Stdio::piped(),
            })
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {KEEL}: {e}"));
        let out = child.stdout.take();
        let stdout = match stdout {
            ChildStdout::Capture => read_in_thread(out),
            ChildStdout::Null | ChildStdout::Closed => None, // drops the read end
        };
        let stderr = read_in_thread(child.stderr.take());
        KeelChild {
            child,
            stdout,
            stderr,
        }
    }

    /// Whether the child has exited, without waiting.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Polls until the child exits or `limit` passes.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        let max_polls = limit.as_millis() / POLL.as_millis() + 1;
        for _ in 0..max_polls {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if start.elapsed() >= limit {
                break;
            }
            thread::sleep(POLL);
        }
        self.exited()
    }

    /// Waits (at most [`EXIT_TIMEOUT`]) for the child to exit by itself and
    /// returns what it wrote; panics (after killing it) if it does not.
    pub fn finish(mut self, what: &str) -> Finished {
        let Some(status) = self.wait_exit(EXIT_TIMEOUT) else {
            drop(self); // kills
            panic!("{what} did not exit within {EXIT_TIMEOUT:?}");
        };
        Finished {
            status,
            stdout: join_output(self.stdout.take()),
            stderr: join_output(self.stderr.take()),
        }
    }

    /// Kills the child and returns what it wrote on stderr.
    pub fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        join_output(self.stderr.take())
    }
}

impl Drop for KeelChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `keel ARGS` to completion (bounded in time).
pub fn run_keel<S: AsRef<OsStr>>(args: &[S], rust_log: &str, stdout: ChildStdout) -> Finished {
    let what = format!(
        "keel {:?}",
        args.iter().map(AsRef::as_ref).collect::<Vec<_>>()
    );
    KeelChild::spawn(args, rust_log, stdout).finish(&what)
}

/// A running `keel DIR --addr IP --port N` server; killed and reaped on drop.
pub struct KeelProcess {
    child: KeelChild,
    addr: SocketAddr,
}

impl KeelProcess {
    /// Starts `keel DIR` on a free port of `ip` and waits (bounded) until it
    /// accepts connections. Retries a couple of times if another process
    /// grabbed the port in between.
    pub fn start(dir: &Path, ip: IpAddr, rust_log: &str) -> KeelProcess {
        KeelProcess::start_with(dir, ip, rust_log, &[])
    }

    /// As [`KeelProcess::start`], with more command-line arguments.
    pub fn start_with(dir: &Path, ip: IpAddr, rust_log: &str, extra: &[&str]) -> KeelProcess {
        let mut last = String::new();
        for _attempt in 0..3 {
            let port = TcpListener::bind(SocketAddr::new(ip, 0))
                .and_then(|l| l.local_addr())
                .unwrap_or_else(|e| panic!("cannot bind {ip}:0: {e}"))
                .port();
            let addr = SocketAddr::new(ip, port);
            let (ip_arg, port_arg) = (ip.to_string(), port.to_string());
            let mut args = vec![
                dir.as_os_str(),
                OsStr::new("--addr"),
                OsStr::new(&ip_arg),
                OsStr::new("--port"),
                OsStr::new(&port_arg),
            ];
            args.extend(extra.iter().map(OsStr::new));
            let mut child = KeelChild::spawn(&args, rust_log, ChildStdout::Null);
            last = format!("keel did not accept connections on {addr} within {READY_TIMEOUT:?}");
            let start = Instant::now();
            let max_polls = READY_TIMEOUT.as_millis() / POLL.as_millis() + 1;
            for _ in 0..max_polls {
                if let Some(status) = child.exited() {
                    last = format!(
                        "keel exited before listening ({}); stderr:\n{}",
                        describe(status),
                        child.stop()
                    );
                    break;
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return KeelProcess { child, addr };
                }
                if start.elapsed() >= READY_TIMEOUT {
                    break; // `child` is killed as it goes out of scope
                }
                thread::sleep(POLL); // poll interval, bounded above
            }
            if !last.contains("in use") {
                break;
            }
        }
        panic!("{last}");
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn connect(&self) -> TcpStream {
        connect(self.addr)
    }

    /// Kills the server and returns what it wrote on stderr.
    pub fn stop(self) -> String {
        self.child.stop()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the server process.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) on our own child's pid; it is still ours (not yet
        // reaped: KeelChild waits only in `wait_exit`, `stop` or Drop).
        let r = unsafe { libc::kill(pid, signal) };
        assert_eq!(r, 0, "kill({pid}, {signal}) failed");
    }

    /// Waits at most `limit` for the server to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        self.child.wait_exit(limit)
    }
}

// ---------------------------------------------------------------------------
// Requests with headers (static file tests)

/// One request: method, target and extra header fields (`Host` is added).
#[derive(Clone, Debug)]
pub struct Req {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl Req {
    pub fn new(method: &str, target: &str) -> Req {
        Req {
            method: method.to_string(),
            target: target.to_string(),
            headers: Vec::new(),
        }
    }

    pub fn get(target: &str) -> Req {
        Req::new("GET", target)
    }

    pub fn head(target: &str) -> Req {
        Req::new("HEAD", target)
    }

    /// Adds a header field.
    pub fn with(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut raw = format!("{} {} HTTP/1.1\r\nHost: test\r\n", self.method, self.target);
        for (n, v) in &self.headers {
            raw.push_str(&format!("{n}: {v}\r\n"));
        }
        raw.push_str("\r\n");
        raw.into_bytes()
    }

    /// Sends it on `s` and reads the response (no body for HEAD).
    pub fn send(&self, s: &mut TcpStream) -> Resp {
        s.write_all(&self.bytes()).expect("write request");
        read_response_to(s, self.method == "HEAD")
    }

    /// Sends it on a new connection.
    pub fn once(&self, addr: SocketAddr) -> Resp {
        self.send(&mut connect(addr))
    }
}

/// Sends every request on a connection of its own, then all of them again,
/// in order, on one keep-alive connection, and calls `check` on each
/// response (with the pass's name, for messages). A response that closes the
/// connection fails the keep-alive pass.
pub fn each_way(addr: SocketAddr, reqs: &[Req], check: impl Fn(&str, &Req, &Resp)) {
    for r in reqs {
        check("own connection", r, &r.once(addr));
    }
    let mut s = connect(addr);
    for r in reqs {
        let resp = r.send(&mut s);
        assert!(
            !resp.closes(),
            "{} {} closed the keep-alive connection",
            r.method,
            r.target
        );
        check("keep-alive", r, &resp);
    }
}

/// Whether an outside tool (curl, wget, python3) is installed; if not, says
/// so, for the test to skip.
pub fn have(tool: &str) -> bool {
    let found = std::process::Command::new(tool)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if !found {
        eprintln!("skipping: {tool} is not installed");
    }
    found
}

/// Every thread's voluntary context switches of `pid`: each one a wake-up.
pub fn wakeups(pid: u32) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        total += status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}
