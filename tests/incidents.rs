//! One test per incident this project exists to prevent, each named after
//! the failure it pins. Tests that need a process of their own (a different
//! SIGPIPE disposition, a low descriptor limit) re-run this test binary as a
//! child with a role in `KEEL_INCIDENT_CHILD`.

mod util;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use keelhttp::{Body, Config, Request, Response, Server};
use util::*;

const ROLE: &str = "KEEL_INCIDENT_CHILD";

// ---------------------------------------------------------------- children

/// Re-runs this test binary as a child playing `role` (the ignored test
/// `test` checks the variable and does the role's work).
fn spawn_role(role: &str, test: &str) -> Child {
    Command::new(std::env::current_exe().expect("current_exe"))
        .args([
            "--exact",
            test,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, role)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child")
}

/// Reads the child's stdout until it says `KEEL_PORT=N`, within 20 s.
fn child_port(child: &mut Child) -> u16 {
    let out = child.stdout.take().expect("child stdout");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        // Read to EOF, not just to the port: the child writes more when it
        // ends, and a closed pipe would kill it (EPIPE, or SIGPIPE in the
        // child that has the default disposition).
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            // libtest may have printed "test name ... " on the same line.
            if let Some(i) = line.rfind("KEEL_PORT=") {
                let _ = tx.send(line[i + 10..].trim().parse::<u16>().ok());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(20))
        .ok()
        .flatten()
        .expect("the child never said its port")
}

/// Serves `handler` on 127.0.0.1:0 in this (child) process: prints the port,
/// drains on a `d` from the parent, stops when the parent closes our stdin.
/// `after_bind` runs once the listener exists (to set limits around it).
fn serve_in_child<H: keelhttp::Handler>(config: Config, after_bind: impl FnOnce(), handler: H) {
    let server = Server::bind("127.0.0.1:0", config).expect("bind");
    after_bind();
    let mut out = std::io::stdout();
    let _ = writeln!(out, "\nKEEL_PORT={}", server.local_addr().port());
    let _ = out.flush();
    let stop = server.shutdown_handle();
    thread::spawn(move || {
        // A 'd' on stdin begins a drain; EOF stops at once.
        let mut byte = [0u8; 1];
        while let Ok(1) = std::io::stdin().read(&mut byte) {
            if byte[0] == b'd' {
                stop.shutdown();
            }
        }
        stop.shutdown_now();
    });
    server.run(handler).expect("run");
}

/// Ends a child server by closing its stdin; it must exit 0 within 10 s.
fn end_child(mut child: Child) {
    drop(child.stdin.take());
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            assert!(
                status.success(),
                "child ended with {status:?} (signal {:?})",
                status.signal()
            );
            return;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "child did not exit");
        thread::sleep(Duration::from_millis(20)); // poll interval, bounded
    }
}

/// A child's CPU time so far, summed over all its threads (a process's own
/// /proc/PID/schedstat counts only its main thread).
fn cpu_time(pid: u32) -> Duration {
    let mut ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("tasks")
        .flatten()
    {
        let s = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        ns += s
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Duration::from_nanos(ns)
}

fn set_linger_zero(s: &TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on an open socket with a valid linger value and its size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "SO_LINGER");
}

// ------------------------------------------------ incident 4: SIGPIPE

const FILE_LEN: usize = 1 << 20;

#[test]
#[ignore = "child process of sigpipe_in_sendfile_cannot_kill_a_host_with_the_default_disposition"]
fn child_sigpipe_default_disposition() {
    if std::env::var(ROLE).as_deref() != Ok("sigpipe") {
        return;
    }
    // The host has not ignored SIGPIPE: a stray one kills it.
    // SAFETY: resetting a signal disposition to its default in this process.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let dir = TempDir::new("sigpipe");
    let path = dir.0.join("f.bin");
    std::fs::write(&path, pattern(FILE_LEN, 1)).expect("write file");
    serve_in_child(
        Config::default(),
        || {},
        move |_req: &Request<'_>| match File::open(&path).and_then(|f| Response::file(200, f)) {
            Ok(r) => r,
            Err(_) => Response::new(500),
        },
    );
}

#[test]
fn sigpipe_in_sendfile_cannot_kill_a_host_with_the_default_disposition() {
    let mut child = spawn_role("sigpipe", "child_sigpipe_default_disposition");
    let addr = SocketAddr::from(([127, 0, 0, 1], child_port(&mut child)));
    let mut x: u64 = 12345;
    let mut buf = vec![0u8; 64 * 1024];
    for i in 0..1000 {
        let mut s = connect(addr);
        s.write_all(b"GET /f.bin HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let cut = (x >> 33) as usize % FILE_LEN;
        let mut got = 0;
        while got < cut {
            match s.read(&mut buf[..(cut - got).min(64 * 1024)]) {
                Ok(0) => panic!("download {i}: closed early at {got}"),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => panic!("download {i}: {e}"),
            }
        }
        set_linger_zero(&s); // the close sends RST mid-transfer
        drop(s);
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "server died after download {i}: {status:?} (signal {:?})",
                status.signal()
            );
        }
    }
    // Alive and serving.
    let mut s = connect(addr);
    s.write_all(b"GET /f.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert!(read_response(&mut s).body == pattern(FILE_LEN, 1));
    end_child(child);
}

// ------------------------------------------------ descriptors run out

#[test]
#[ignore = "child process of out_of_descriptors_pauses_accepting_without_spinning"]
fn child_low_nofile() {
    if std::env::var(ROLE).as_deref() != Ok("emfile") {
        return;
    }
    let rl = libc::rlimit {
        rlim_cur: 64,
        rlim_max: 64,
    };
    // SAFETY: lowering this process's own descriptor limit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) }, 0);
    let mut config = Config::default();
    config.max_connections = 100_000; // the descriptor limit must bite first
    serve_in_child(
        config,
        || {},
        |_req: &Request<'_>| Response::text(200, "ok"),
    );
}

/// Whether `s` gets a response to a request within `wait`.
fn answered_within(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut b = [0u8; 1];
    let r = matches!(s.read(&mut b), Ok(1));
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    if r {
        // Consume the rest of the small response.
        let mut rest = [0u8; 4096];
        let _ = s.read(&mut rest);
    }
    r
}

#[test]
fn out_of_descriptors_pauses_accepting_without_spinning() {
    let mut child = spawn_role("emfile", "child_low_nofile");
    let pid = child.id();
    let addr = SocketAddr::from(([127, 0, 0, 1], child_port(&mut child)));
    let req = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    // A download that stalls (never read): it keeps a later drain going.
    let mut stalled = connect(addr);
    stalled
        .write_all(b"GET /huge HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    stalled.read_exact(&mut [0u8; 1]).unwrap();
    // Fill every descriptor with idle keep-alive clients until one is not
    // accepted: that one waits in the kernel's queue.
    let mut served = Vec::new();
    let mut waiting = None;
    for _ in 0..100 {
        let mut s = connect(addr);
        s.write_all(req).unwrap();
        if answered_within(&mut s, Duration::from_millis(500)) {
            served.push(s);
        } else {
            waiting = Some(s);
            break;
        }
    }
    let mut waiting = waiting.expect("the descriptor limit was never reached");
    assert!(served.len() > 10, "only {} served", served.len());
    // Held at the limit, the server must not spin on accept.
    let before = cpu_time(pid);
    thread::sleep(Duration::from_secs(2)); // the measurement window itself
    let used = cpu_time(pid) - before;
    assert!(
        used < Duration::from_millis(100),
        "used {used:?} of CPU in 2 s at the limit"
    );
    // Existing clients are still served.
    served[0].write_all(req).unwrap();
    assert!(
        answered_within(&mut served[0], Duration::from_secs(5)),
        "existing client not served"
    );
    // One closes: the waiting client is accepted and answered.
    drop(served.pop());
    assert!(
        answered_within(&mut waiting, Duration::from_secs(5)),
        "waiting client never answered"
    );
    drop(served);
    end_child(child);
}

#[test]
#[ignore = "child process of a_drain_at_the_descriptor_limit_does_not_spin"]
fn child_drain_at_the_limit() {
    if std::env::var(ROLE).as_deref() != Ok("emfile-drain") {
        return;
    }
    let mut config = Config::default();
    config.max_connections = 100_000;
    config.drain_timeout = Duration::from_secs(3);
    // Room for exactly three more descriptors: three connections. The limit
    // caps descriptor numbers, not their count, and inherited descriptors
    // may sit anywhere: take the three lowest free numbers and stop above.
    let limit_to_three_more = || {
        let probes: Vec<File> = (0..3)
            .map(|_| File::open("/dev/null").expect("probe"))
            .collect();
        let third = probes.iter().map(|f| f.as_raw_fd()).max().expect("probes") as u64;
        drop(probes);
        let rl = libc::rlimit {
            rlim_cur: third + 1,
            rlim_max: third + 1,
        };
        // SAFETY: lowering this process's own descriptor limit.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) }, 0);
    };
    let huge: &'static [u8] = Box::leak(vec![b'h'; 32 << 20].into_boxed_slice());
    serve_in_child(config, limit_to_three_more, move |_req: &Request<'_>| {
        Response::new(200).with_body(Body::Static(huge))
    });
}

/// Regression (found in review): at the descriptor limit with an accept
/// retry pending and only busy connections, a drain closed the listener but
/// left the retry armed, and the loop spun at full CPU until the deadline.
#[test]
fn a_drain_at_the_descriptor_limit_does_not_spin() {
    let mut child = spawn_role("emfile-drain", "child_drain_at_the_limit");
    let pid = child.id();
    let addr = SocketAddr::from(([127, 0, 0, 1], child_port(&mut child)));
    // Three downloads that stall (never read past the first byte) fill it.
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let mut s = connect(addr);
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        s.read_exact(&mut [0u8; 1]).unwrap();
        stalled.push(s);
    }
    // A fourth waits in the queue: accept fails with EMFILE, a retry is armed.
    let mut queued = connect(addr);
    queued
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert!(
        !answered_within(&mut queued, Duration::from_millis(300)),
        "not at the limit"
    );
    let mut stdin = child.stdin.take().expect("child stdin");
    stdin.write_all(b"d").unwrap();
    stdin.flush().unwrap();
    thread::sleep(Duration::from_millis(300)); // let the drain begin and the retry come due
    let before = cpu_time(pid);
    thread::sleep(Duration::from_secs(1)); // the measurement window itself
    let used = cpu_time(pid) - before;
    assert!(
        used < Duration::from_millis(100),
        "used {used:?} of CPU in 1 s while draining"
    );
    child.stdin = Some(stdin);
    drop((stalled, queued));
    end_child(child);
}

// ------------------------------------------------ incident 1: logging

/// Starts the real binary with `setup` applied to its stdio, and waits until
/// it accepts connections.
fn keel_with_stdio(dir: &std::path::Path, close_stdout_stderr: bool) -> (Child, SocketAddr) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keel"));
    cmd.arg(dir)
        .args([
            "--addr",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--status-path",
            "/status",
        ])
        .env("RUST_LOG", "debug") // log as much as possible
        .stdin(Stdio::null());
    if close_stdout_stderr {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        // SAFETY: between fork and exec only async-signal-safe close(2) runs.
        unsafe {
            cmd.pre_exec(|| {
                libc::close(1);
                libc::close(2);
                Ok(())
            });
        }
    } else {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    }
    let child = cmd.spawn().expect("spawn keel");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let t0 = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(10), "keel did not start");
        thread::sleep(Duration::from_millis(10)); // poll interval, bounded
    }
    (child, addr)
}

fn thousand_ok(addr: SocketAddr) {
    let mut s = connect(addr);
    for i in 0..1000 {
        let path = if i % 2 == 0 { "/status" } else { "/index.html" };
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .unwrap();
        let r = read_response(&mut s);
        assert_eq!(r.status, 200, "request {i} for {path}: {}", r.head);
    }
}

#[test]
fn status_endpoint_never_404s_when_stdout_and_stderr_are_closed() {
    let dir = TempDir::new("closed-stdio");
    std::fs::write(dir.0.join("index.html"), b"<p>hi</p>").unwrap();
    let (mut child, addr) = keel_with_stdio(&dir.0, true);
    thousand_ok(addr);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn logging_into_a_broken_stderr_pipe_never_fails_a_request() {
    let dir = TempDir::new("broken-stderr");
    std::fs::write(dir.0.join("index.html"), b"<p>hi</p>").unwrap();
    let (mut child, addr) = keel_with_stdio(&dir.0, false);
    drop(child.stderr.take()); // the reader is gone: every log write is EPIPE
    thousand_ok(addr);
    assert!(child.try_wait().unwrap().is_none(), "keel died");
    let _ = child.kill();
    let _ = child.wait();
}

// ------------------------------------------------ incident 3: 503s

fn app(req: &Request<'_>) -> Response {
    match req.path() {
        "/panic" => panic!("expected by the test"),
        "/huge" => Response::new(200).with_body(Body::Bytes(vec![b'h'; 32 << 20])),
        "/upload" => Response::text(200, req.body().len().to_string()),
        _ => Response::text(200, "ok"),
    }
}

#[test]
fn overloaded_server_answers_503_with_retry_after_and_a_stable_code() {
    let mut config = Config::default();
    config.max_connections = 2; // and one more accepted only to be refused
    let srv = TestServer::start(config, app);
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = srv.connect();
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut s).status, 200);
        held.push(s);
    }
    let mut s = srv.connect();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nAccept: application/json\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s);
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(
        r.body.starts_with(br#"{"error":{"code":"unavailable","#),
        "{:?}",
        String::from_utf8_lossy(&r.body)
    );
    assert!(r.closes());
    closed_within(&mut s, Duration::from_secs(5)).unwrap();
    // Capacity comes back when a client leaves.
    drop(held.pop());
    let t0 = Instant::now();
    loop {
        let r = exchange(srv.addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        if r.status == 200 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "capacity never came back"
        );
    }
    let report = srv.shutdown_within(Duration::from_secs(5));
    assert!(report.stats.rejected >= 1);
}

#[test]
fn draining_server_status_endpoint_says_503_draining_with_retry_after() {
    let mut config = Config::default();
    config.status_path = Some("/status".into());
    let srv = TestServer::start(config, app);
    let r = exchange(srv.addr, b"GET /status HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 200);
    let body = String::from_utf8_lossy(&r.body).into_owned();
    for key in [
        "uptime",
        "connections",
        "requests",
        "bytes_sent",
        "disconnects",
        "timeouts",
        "rejected",
    ] {
        assert!(
            body.contains(&format!("\"{key}\":")),
            "{key} missing in {body}"
        );
    }
    assert!(body.contains("\"draining\":false"), "{body}");
    // A status request in progress when shutdown begins (its body still
    // coming) is answered 503 draining.
    let mut s = srv.connect();
    s.write_all(
        b"GET /status HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
    )
    .unwrap();
    assert_eq!(read_response_to(&mut s, true).status, 100);
    srv.stop.shutdown();
    // The drain has begun once the listener refuses connections.
    let t0 = Instant::now();
    while TcpStream::connect(srv.addr).is_ok() {
        assert!(t0.elapsed() < Duration::from_secs(5), "still accepting");
        thread::yield_now();
    }
    s.write_all(b"ok").unwrap();
    let r = read_response(&mut s);
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    let body = String::from_utf8_lossy(&r.body).into_owned();
    assert!(
        body.contains("\"code\":\"draining\"") && body.contains("\"draining\":true"),
        "{body}"
    );
    srv.shutdown_within(Duration::from_secs(5));
}

// ------------------------------------------------ incident 5: panics

#[test]
fn a_thousand_handler_panics_cost_a_thousand_500s_and_nothing_else() {
    let srv = TestServer::start(Config::default(), app);
    let mut bystander = srv.connect();
    for i in 0..1000 {
        let mut s = srv.connect();
        s.write_all(b"GET /panic HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let r = read_response(&mut s);
        assert_eq!(r.status, 500, "panic {i}");
        assert!(
            r.body.starts_with(b"internal: "),
            "never a 404 for an internal error"
        );
        bystander
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        assert_eq!(
            read_response(&mut bystander).body,
            b"ok",
            "bystander after panic {i}"
        );
    }
    let report = srv.shutdown_within(Duration::from_secs(5));
    assert_eq!(report.stats.panics, 1000);
}

// ------------------------------------------------ time limits

#[test]
fn a_reader_that_stops_reading_is_cut_at_the_stall_timeout() {
    let mut config = Config::default();
    config.stall_timeout = Duration::from_millis(300);
    let srv = TestServer::start(config, app);
    let mut s = srv.connect();
    s.write_all(b"GET /huge HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    s.read_exact(&mut [0u8; 1]).unwrap();
    let t0 = Instant::now();
    // Stop reading; then, well after the stall timeout, drain what the
    // buffers hold: the stream must end far short of 32 MiB.
    thread::sleep(Duration::from_secs(1)); // the stall itself
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("{e}"),
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "never cut");
    }
    assert!(total < 32 << 20, "the whole body arrived: not cut");
    let report = srv.shutdown_within(Duration::from_secs(5));
    assert_eq!(report.stats.timeouts, 1);
}

#[test]
fn an_idle_server_never_wakes_up() {
    let dir = TempDir::new("idle");
    let keel = KeelProcess::start(&dir.0, std::net::IpAddr::from([127, 0, 0, 1]), "warn");
    // KeelProcess::start connected once to check readiness; let that close.
    let pid = keel.pid();
    let switches = || util::wakeups(pid);
    thread::sleep(Duration::from_millis(200)); // let the readiness probe's close settle
    let before = switches();
    thread::sleep(Duration::from_secs(2)); // the observation window itself
    let after = switches();
    assert_eq!(
        after,
        before,
        "an idle server woke up {} times in 2 s",
        after - before
    );
    keel.stop();
}
