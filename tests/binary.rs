//! Tests of the real `keel` binary, run as a child process.
//!
//! std only: HTTP is spoken with `TcpStream` and literal bytes, every socket
//! has timeouts, every loop is bounded in count and time, every child is
//! killed (and reaped) by a guard, also when a test panics.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const KEEL: &str = env!("CARGO_BIN_EXE_keel");
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a short-lived `keel` invocation (help, bad usage, ...) may take.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server may take to start listening.
const READY_TIMEOUT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(10);

// ---------------------------------------------------------------------------
// Temporary directories

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("keel-binary-test-{}-{n}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn write(&self, rel: &str, contents: &[u8]) -> PathBuf {
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
// Child processes

/// Kills and reaps the child when dropped, so no test leaves a server behind.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `try_wait` until the child exits or `limit` passes.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    let max_polls = limit.as_millis() / POLL.as_millis() + 1;
    for _ in 0..max_polls {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if start.elapsed() >= limit {
            break;
        }
        std::thread::sleep(POLL);
    }
    child.try_wait().expect("try_wait")
}

fn read_in_thread<R: Read + Send + 'static>(r: Option<R>) -> Option<JoinHandle<Vec<u8>>> {
    r.map(|mut r| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    })
}

fn join_output(h: Option<JoinHandle<Vec<u8>>>) -> String {
    h.map(|h| String::from_utf8_lossy(&h.join().unwrap_or_default()).into_owned())
        .unwrap_or_default()
}

struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `keel ARGS` to completion (bounded in time). With `close_stdout`,
/// the read end of stdout is closed before the child can write to it.
fn run_keel(args: &[&str], close_stdout: bool) -> Finished {
    let child = Command::new(KEEL)
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {KEEL}: {e}"));
    let mut guard = ChildGuard(child);
    let stdout = guard.0.stdout.take();
    let stdout = if close_stdout {
        drop(stdout);
        None
    } else {
        read_in_thread(stdout)
    };
    let stderr = read_in_thread(guard.0.stderr.take());
    let Some(status) = wait_exit(&mut guard.0, EXIT_TIMEOUT) else {
        drop(guard); // kills
        panic!("keel {args:?} did not exit within {EXIT_TIMEOUT:?}");
    };
    Finished {
        status,
        stdout: join_output(stdout),
        stderr: join_output(stderr),
    }
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => format!("{status:?}"),
    }
}

/// A free port on `ip`, or `None` if `ip` cannot be bound at all.
fn free_port(ip: IpAddr) -> Option<u16> {
    let l = TcpListener::bind(SocketAddr::new(ip, 0)).ok()?;
    Some(l.local_addr().ok()?.port())
}

/// A running `keel` server; killed and reaped on drop.
struct Keel {
    child: ChildGuard,
    addr: SocketAddr,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl Keel {
    /// Starts `keel DIR --addr IP --port N` on a free port and waits (bounded)
    /// until it accepts connections. Retries a couple of times if another
    /// process grabbed the port in between.
    fn start(dir: &Path, ip: IpAddr, rust_log: &str) -> Keel {
        let mut last = String::new();
        for _attempt in 0..3 {
            let port = free_port(ip).unwrap_or_else(|| panic!("cannot bind {ip}:0"));
            let addr = SocketAddr::new(ip, port);
            let child = Command::new(KEEL)
                .arg(dir)
                .args(["--addr", &ip.to_string(), "--port", &port.to_string()])
                .env("RUST_LOG", rust_log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot spawn {KEEL}: {e}"));
            let mut guard = ChildGuard(child);
            let stderr = read_in_thread(guard.0.stderr.take());
            let start = Instant::now();
            let max_polls = READY_TIMEOUT.as_millis() / POLL.as_millis() + 1;
            for _ in 0..max_polls {
                if let Some(status) = guard.0.try_wait().expect("try_wait") {
                    last = format!(
                        "keel exited before listening ({}); stderr:\n{}",
                        describe(status),
                        join_output(stderr)
                    );
                    break;
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return Keel {
                        child: guard,
                        addr,
                        stderr,
                    };
                }
                if start.elapsed() >= READY_TIMEOUT {
                    drop(guard);
                    panic!("keel did not accept connections on {addr} within {READY_TIMEOUT:?}");
                }
                std::thread::sleep(POLL);
            }
            if !last.contains("in use") {
                break;
            }
        }
        panic!("{last}");
    }

    fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Kills the server and returns what it wrote on stderr.
    fn stop(mut self) -> String {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
        join_output(self.stderr.take())
    }
}

// ---------------------------------------------------------------------------
// A minimal HTTP/1.1 client

struct Client {
    stream: TcpStream,
    /// Bytes read past the end of the previous response.
    buf: Vec<u8>,
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).expect("write request");
    }

    /// Reads more bytes into `buf`; panics on EOF or timeout.
    fn fill(&mut self, what: &str) {
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => panic!(
                "connection closed while reading {what}; have {:?}",
                String::from_utf8_lossy(&self.buf[..self.buf.len().min(200)])
            ),
            Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {} // EINTR under load
            Err(e) => panic!("reading {what}: {e}"),
        }
    }

    /// Reads one response: the head up to CRLFCRLF, then exactly
    /// `Content-Length` body bytes (none for a HEAD request).
    fn read_response(&mut self, is_head: bool) -> Resp {
        let deadline = Instant::now() + 2 * IO_TIMEOUT;
        let mut reads = 0u32;
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            assert!(self.buf.len() < 64 * 1024, "response head too long");
            assert!(
                Instant::now() < deadline && reads < 10_000,
                "response head not complete in time"
            );
            reads += 1;
            self.fill("the response head");
        };
        let head = String::from_utf8(self.buf[..head_end].to_vec()).expect("head is UTF-8");
        self.buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        assert!(
            status_line.starts_with("HTTP/1.1 "),
            "bad status line {status_line:?} (stray body bytes from a previous response?)"
        );
        let status: u16 = status_line[9..12].parse().expect("status code");
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l
                    .split_once(':')
                    .unwrap_or_else(|| panic!("bad line {l:?}"));
                (n.trim().to_string(), v.trim().to_string())
            })
            .collect();
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        let len: usize = resp
            .header("content-length")
            .unwrap_or_else(|| panic!("no Content-Length in {head:?}"))
            .parse()
            .expect("Content-Length is a number");
        if is_head || status == 204 || status == 304 || (100..200).contains(&status) {
            return resp;
        }
        let mut reads = 0u32;
        while self.buf.len() < len {
            assert!(
                Instant::now() < deadline && reads < 1_000_000,
                "body not complete in time: {} of {len}",
                self.buf.len()
            );
            reads += 1;
            self.fill("the response body");
        }
        resp.body = self.buf.drain(..len).collect();
        resp
    }

    fn request(&mut self, method: &str, target: &str) -> Resp {
        let raw = format!("{method} {target} HTTP/1.1\r\nHost: test\r\n\r\n");
        self.send(raw.as_bytes());
        self.read_response(method == "HEAD")
    }
}

/// One GET on a fresh connection.
fn get_once(addr: SocketAddr, target: &str) -> Resp {
    Client::connect(addr).request("GET", target)
}

/// Deterministic pseudo-random bytes (an LCG).
fn pseudo_random(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 33) as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The CLI

#[test]
fn help_and_version_exit_zero() {
    for flag in ["--help", "-h"] {
        let out = run_keel(&[flag], false);
        assert_eq!(out.status.code(), Some(0), "keel {flag}: {}", out.stderr);
        assert!(out.stdout.contains("Usage"), "keel {flag}: {}", out.stdout);
    }
    for flag in ["--version", "-V"] {
        let out = run_keel(&[flag], false);
        assert_eq!(out.status.code(), Some(0), "keel {flag}: {}", out.stderr);
        assert_eq!(
            out.stdout.trim_end(),
            format!("keel {}", env!("CARGO_PKG_VERSION")),
            "keel {flag}"
        );
    }
}

#[test]
fn version_piped_into_a_closed_pipe_does_not_panic() {
    for flag in ["--version", "--help"] {
        let out = run_keel(&[flag], true);
        assert_eq!(
            out.status.code(),
            Some(0),
            "keel {flag} into a closed pipe: {}; stderr: {}",
            describe(out.status),
            out.stderr
        );
        assert!(
            !out.stderr.contains("panicked"),
            "keel {flag} panicked: {}",
            out.stderr
        );
    }
}

#[test]
fn bad_usage_exits_2() {
    let dir = TempDir::new("usage");
    let d = dir.path().to_str().unwrap();
    let cases: [&[&str]; 6] = [
        &["--bogus"],
        &["--port", "notanumber"],
        &["--port"],
        &["--port", "70000"],
        &["--addr", "not-an-ip"],
        &[d, d],
    ];
    for args in cases {
        let out = run_keel(args, false);
        assert_eq!(
            out.status.code(),
            Some(2),
            "keel {args:?}: {}; stderr: {}",
            describe(out.status),
            out.stderr
        );
        assert!(
            out.stderr.starts_with("keel: ") && out.stderr.len() > "keel: ".len() + 5,
            "keel {args:?} gave no message: {:?}",
            out.stderr
        );
        assert!(out.stdout.is_empty(), "keel {args:?} wrote on stdout");
    }
}

#[test]
fn port_in_use_exits_1_with_a_clear_message() {
    let dir = TempDir::new("inuse");
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port().to_string();
    let out = run_keel(
        &[
            dir.path().to_str().unwrap(),
            "--addr",
            "127.0.0.1",
            "--port",
            &port,
        ],
        false,
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}; stderr: {}",
        describe(out.status),
        out.stderr
    );
    assert!(out.stderr.contains("in use"), "stderr: {:?}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "stderr: {:?}", out.stderr);
    // Also when RUST_LOG hides errors, the message still reaches stderr.
    let child = Command::new(KEEL)
        .arg(dir.path())
        .args(["--addr", "127.0.0.1", "--port", &port])
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard(child);
    let stderr = read_in_thread(guard.0.stderr.take());
    let status = wait_exit(&mut guard.0, EXIT_TIMEOUT)
        .unwrap_or_else(|| panic!("keel did not exit within {EXIT_TIMEOUT:?}"));
    let stderr = join_output(stderr);
    assert_eq!(status.code(), Some(1), "RUST_LOG=off: {}", describe(status));
    assert!(stderr.contains("in use"), "RUST_LOG=off stderr: {stderr:?}");
    drop(held);
}

#[test]
fn missing_directory_exits_1() {
    let dir = TempDir::new("missing");
    let missing = dir.path().join("does-not-exist");
    let file = dir.write("plain.txt", b"x");
    for target in [&missing, &file] {
        let out = run_keel(
            &[
                target.to_str().unwrap(),
                "--addr",
                "127.0.0.1",
                "--port",
                "0",
            ],
            false,
        );
        assert_eq!(
            out.status.code(),
            Some(1),
            "keel {}: {}; stderr: {}",
            target.display(),
            describe(out.status),
            out.stderr
        );
        assert!(
            out.stderr.contains("cannot serve"),
            "stderr: {:?}",
            out.stderr
        );
    }
}

// ---------------------------------------------------------------------------
// Serving

#[test]
fn serves_files_byte_identical_over_one_keep_alive_connection() {
    let dir = TempDir::new("serve");
    let index = b"<!doctype html><title>keel</title><p>hello</p>\n";
    let big = pseudo_random(1 << 20);
    dir.write("index.html", index);
    dir.write("big.bin", &big);
    dir.write("subdir/inner.txt", b"inner file\n");
    dir.write("empty.txt", b"");
    let keel = Keel::start(dir.path(), IpAddr::V4(Ipv4Addr::LOCALHOST), "warn");
    let mut c = keel.connect();

    let r = c.request("GET", "/");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, index);
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{:?}",
        r.headers
    );

    let r = c.request("GET", "/big.bin");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("1048576"));
    assert!(r.body == big, "the 1 MiB file is not byte-identical");

    let r = c.request("GET", "/subdir/inner.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"inner file\n");
    assert!(r
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/plain")));

    let r = c.request("GET", "/empty.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("0"));
    assert!(r.body.is_empty());

    let r = c.request("HEAD", "/big.bin");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("1048576"));
    // If any body bytes followed the HEAD response, the next status line
    // would not parse.
    let r = c.request("GET", "/subdir/inner.txt");
    assert_eq!(r.status, 200, "request after HEAD");
    assert_eq!(r.body, b"inner file\n");

    let r = c.request("GET", "/missing");
    assert_eq!(r.status, 404);
    assert!(!r.closes(), "404 closed the connection");

    c.send(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!(r.status, 405);
    let allow = r.header("allow").expect("405 without Allow").to_string();
    assert!(
        allow.contains("GET") && allow.contains("HEAD"),
        "Allow: {allow}"
    );
    assert!(!r.closes(), "405 closed the connection");

    let r = c.request("GET", "/subdir");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/subdir/"));

    // A directory with no index.html is not listed.
    let r = c.request("GET", "/subdir/");
    assert_eq!(r.status, 404);
    assert!(!r.closes());

    // Still the same connection, still working.
    let r = c.request("GET", "/index.html");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, index);

    // Traversal: never a 200, whatever the spelling. Fresh connections, as
    // the server may close after a 400.
    std::fs::write(dir.path().join(".hidden"), b"secret").unwrap();
    for target in [
        "/../Cargo.toml",
        "/%2e%2e/",
        "/%2e%2e/Cargo.toml",
        "/subdir/../../Cargo.toml",
        "/subdir/%2e%2e/%2e%2e/Cargo.toml",
        "/..%2fCargo.toml",
        "/.hidden",
    ] {
        let r = get_once(keel.addr, target);
        assert!(
            r.status == 404 || r.status == 400,
            "GET {target} gave {} {:?}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
    drop(c);
    keel.stop();
}

#[test]
fn unreadable_file_is_403() {
    let dir = TempDir::new("perm");
    let path = dir.write("secret.txt", b"secret\n");
    dir.write("index.html", b"ok\n");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::File::open(&path).is_ok() {
        println!("skipping: running as root, permissions are not enforced");
        return;
    }
    let keel = Keel::start(dir.path(), IpAddr::V4(Ipv4Addr::LOCALHOST), "warn");
    let mut c = keel.connect();
    let r = c.request("GET", "/secret.txt");
    assert_eq!(r.status, 403, "{:?}", String::from_utf8_lossy(&r.body));
    assert!(!r.body.starts_with(b"secret"));
    // The server carries on, on the same connection.
    let r = c.request("GET", "/");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"ok\n");
    keel.stop();
}

#[test]
fn ipv6_loopback_works() {
    let ip = IpAddr::V6(Ipv6Addr::LOCALHOST);
    if TcpListener::bind(SocketAddr::new(ip, 0)).is_err() {
        println!("skipping: cannot bind [::1]:0 here (no IPv6 loopback)");
        return;
    }
    let dir = TempDir::new("ipv6");
    dir.write("index.html", b"<p>six</p>\n");
    let keel = Keel::start(dir.path(), ip, "warn");
    assert!(keel.addr.is_ipv6());
    let r = keel.connect().request("GET", "/");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"<p>six</p>\n");
    keel.stop();
}

#[test]
fn access_log_line_per_request() {
    let dir = TempDir::new("log");
    dir.write("index.html", b"hi\n");
    let keel = Keel::start(dir.path(), IpAddr::V4(Ipv4Addr::LOCALHOST), "info");
    let mut c = keel.connect();
    let expected = [("/", 200), ("/nope", 404), ("/index.html", 200)];
    for (target, status) in expected {
        assert_eq!(c.request("GET", target).status, status, "GET {target}");
    }
    // Close our side so the server sees EOF; the log lines were written
    // before the responses went out.
    let _ = c.stream.shutdown(Shutdown::Both);
    let stderr = keel.stop();
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("\"GET ")).collect();
    assert_eq!(lines.len(), 3, "access log:\n{stderr}");
    for ((target, status), line) in expected.iter().zip(&lines) {
        let want = format!("\"GET {target} HTTP/1.1\" {status} ");
        assert!(line.contains(&want), "{line:?} lacks {want:?}");
    }
    assert!(
        stderr.contains("serving "),
        "no start-up line in:\n{stderr}"
    );
}

/// Regression: the direct-to-stderr fallback once checked only the global
/// `log::max_level()`, so a filter that allows some target but not `keel`
/// (e.g. `RUST_LOG=keelhttp=debug`) hid the fatal message.
#[test]
fn fatal_error_is_shown_whatever_rust_log_filters() {
    let dir = TempDir::new("filter");
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port().to_string();
    for filter in ["keelhttp=debug", "warn,keel=off"] {
        let child = Command::new(KEEL)
            .arg(dir.path())
            .args(["--addr", "127.0.0.1", "--port", &port])
            .env("RUST_LOG", filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut guard = ChildGuard(child);
        let stderr = read_in_thread(guard.0.stderr.take());
        let status = wait_exit(&mut guard.0, EXIT_TIMEOUT)
            .unwrap_or_else(|| panic!("keel did not exit within {EXIT_TIMEOUT:?}"));
        let stderr = join_output(stderr);
        assert_eq!(status.code(), Some(1), "RUST_LOG={filter}");
        assert!(stderr.contains("in use"), "RUST_LOG={filter}: {stderr:?}");
    }
    drop(held);
}
