//! Test harness: starts the real server on 127.0.0.1 port 0 in a thread and
//! speaks HTTP to it with std sockets and literal bytes.
#![allow(dead_code)] // each test file uses a different part

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
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
    let s = TcpStream::connect(addr).expect("connect");
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

/// Reads one response. `head_request`: the body is not sent (HEAD).
pub fn read_response_to(s: &mut TcpStream, head_request: bool) -> Resp {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert!(head.len() < 64 * 1024, "response head too long");
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
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').expect("header without colon");
            (n.to_string(), v.trim().to_string())
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
        .expect("every response has Content-Length")
        .parse()
        .expect("numeric Content-Length");
    resp.body = vec![0; len];
    s.read_exact(&mut resp.body)
        .expect("reading a response body");
    resp
}

pub fn read_response(s: &mut TcpStream) -> Resp {
    read_response_to(s, false)
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
pub struct TempDir(pub std::path::PathBuf);

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
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
