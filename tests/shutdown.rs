//! Graceful shutdown never hangs: repeated start → clients in every state →
//! shutdown cycles, each ending within the drain deadline plus one second,
//! and the races around the handle.

mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use keelhttp::{Body, Config, Event, Push, Reply, Request, Response, Server, Sse};
use util::*;

const DRAIN: Duration = Duration::from_millis(300);
const SLACK: Duration = Duration::from_secs(1);
const BIG: usize = 1 << 20;

fn big() -> &'static [u8] {
    static BIG_BODY: OnceLock<Vec<u8>> = OnceLock::new();
    BIG_BODY.get_or_init(|| pattern(BIG, 11))
}

/// Larger than loopback socket buffers can absorb (send plus receive buffer
/// autotuning reach about 10 MiB), so a client that stops reading really stalls.
fn huge() -> &'static [u8] {
    static HUGE_BODY: OnceLock<Vec<u8>> = OnceLock::new();
    HUGE_BODY.get_or_init(|| vec![b'h'; 32 << 20])
}

fn app(req: &Request<'_>) -> Response {
    match req.path() {
        "/big" => Response::new(200).with_body(Body::Static(big())),
        "/huge" => Response::new(200).with_body(Body::Static(huge())),
        "/upload" => Response::text(200, req.body().len().to_string()),
        _ => Response::text(200, "ok"),
    }
}

/// Host tokens of the streams in a cycle (issue 13), shipped to the test.
enum Token {
    Reply(Reply),
    Sse(Sse),
}

/// `app`, plus deferred replies (`/defer*`) and SSE streams (`/sse*`) whose
/// tokens go to the test.
fn app_with_streams(
    tokens: std::sync::mpsc::Sender<(String, Token)>,
) -> impl FnMut(&Request<'_>) -> Response + Send + 'static {
    move |req: &Request<'_>| {
        let path = req.path().to_owned();
        if path.starts_with("/defer") {
            let (resp, reply) = Response::deferred();
            tokens.send((path, Token::Reply(reply))).unwrap();
            resp
        } else if path.starts_with("/sse") {
            let (resp, sse) = Sse::response(None);
            assert_eq!(sse.send(&Event::new("first")), Push::Sent);
            tokens.send((path, Token::Sse(sse))).unwrap();
            resp
        } else {
            app(req)
        }
    }
}

/// Reads a response head, byte by byte (the body stays unread).
fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn drain_config() -> Config {
    let mut config = Config::default();
    config.drain_timeout = DRAIN;
    config
}

/// Reads the rest of the stream until EOF, within the I/O timeout.
fn read_to_eof(s: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    let start = Instant::now();
    loop {
        if start.elapsed() > IO_TIMEOUT {
            return Err(format!("no EOF after {} bytes", out.len()));
        }
        match s.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(out),
            Err(e) => return Err(format!("{e} after {} bytes", out.len())),
        }
    }
}

/// One cycle: start, put clients in every state, shut down, check each
/// client's outcome and that `run` returned in time. `stuck`: add a client
/// that never reads its download, so the deadline must force it.
fn cycle(n: usize, stuck: bool) -> Duration {
    let (tokens_tx, tokens) = std::sync::mpsc::channel();
    let srv = TestServer::start(drain_config(), app_with_streams(tokens_tx));
    let mut states: Vec<&str> = Vec::new();
    let token = |want: &str| {
        let (path, t) = tokens.recv_timeout(IO_TIMEOUT).unwrap();
        assert_eq!(path, want, "cycle {n}");
        t
    };

    // Issue 13: a deferred reply and an open SSE stream, answered and
    // finished by the host during the drain; when `stuck`, one more of
    // each that the host never completes (the deadline must end them).
    let mut deferred = srv.connect();
    deferred
        .write_all(b"GET /defer HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let Token::Reply(reply) = token("/defer") else {
        panic!("cycle {n}: not a reply")
    };
    states.push("deferred reply");
    let mut stream = srv.connect();
    stream
        .write_all(b"GET /sse HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let Token::Sse(sse) = token("/sse") else {
        panic!("cycle {n}: not a stream")
    };
    assert!(read_head(&mut stream).contains("text/event-stream"));
    states.push("open SSE stream");
    let mut stuck_streams = Vec::new();
    if stuck {
        let mut d = srv.connect();
        d.write_all(b"GET /defer-stuck HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let reply = token("/defer-stuck");
        let mut e = srv.connect();
        e.write_all(b"GET /sse-stuck HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let sse = token("/sse-stuck");
        assert!(read_head(&mut e).contains("text/event-stream"));
        stuck_streams.push((d, e, reply, sse));
        states.push("deferred reply never answered (forced)");
        states.push("SSE stream never finished (forced)");
    }

    let mut idle = srv.connect();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    read_response(&mut idle);
    states.push("idle keep-alive");

    let mut silent = srv.connect();
    states.push("silent connected");

    let mut half = srv.connect();
    half.write_all(b"GET / HTTP/1.1\r\nHo").unwrap();
    states.push("half-sent head");

    // Expect: 100-continue proves the server has the head, so the request is
    // in progress when the drain begins.
    let mut upload = srv.connect();
    upload
        .write_all(b"POST /upload HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 100000\r\n\r\n")
        .unwrap();
    assert_eq!(read_response_to(&mut upload, true).status, 100, "cycle {n}");
    upload.write_all(&[b'u'; 1000]).unwrap();
    states.push("mid-upload body");

    let mut slow = srv.connect();
    slow.write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 1];
    slow.read_exact(&mut first).unwrap();
    states.push("slow reader mid-download");

    let mut stuck_client = stuck.then(|| {
        let mut s = srv.connect();
        s.write_all(b"GET /huge HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        s.read_exact(&mut [0u8; 1]).unwrap();
        s
    });
    if stuck {
        states.push("stuck reader (forced)");
    }

    let stop = srv.stop.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let t0 = Instant::now();
    // Wait for `run` to return in another thread, so the clients below can
    // act while the drain is under way.
    let waiter = thread::spawn(move || {
        let report = srv.shutdown_within(DRAIN + SLACK);
        let _ = tx.send((report, t0.elapsed()));
    });
    let _ = stop;
    // The host completes its reply and its stream while the drain runs.
    let _ = reply.send(Response::text(200, "deferred answer"));
    let _ = sse.send(&Event::new("last"));
    sse.finish();

    let ctx = |what: &str, e: String| format!("cycle {n}: {what}: {e}; clients: {states:?}");
    for (what, s) in [
        ("idle keep-alive", &mut idle),
        ("silent connected", &mut silent),
        ("half-sent head", &mut half),
    ] {
        let rest = read_to_eof(s).map_err(|e| ctx(what, e)).unwrap();
        assert!(rest.is_empty(), "{}", ctx(what, format!("got {rest:?}")));
    }
    upload.write_all(&[b'u'; 99_000]).unwrap();
    let r = read_response(&mut upload);
    assert_eq!(r.body, b"100000", "{}", ctx("mid-upload", r.head.clone()));
    assert!(
        r.closes(),
        "{}",
        ctx("mid-upload", "no Connection: close".into())
    );
    read_to_eof(&mut upload)
        .map_err(|e| ctx("mid-upload", e))
        .unwrap();
    drop(upload); // as a client does at EOF (the server may linger for it)

    let rest = read_to_eof(&mut slow)
        .map_err(|e| ctx("slow reader", e))
        .unwrap();
    drop(slow);
    let mut all = first.to_vec();
    all.extend_from_slice(&rest);
    let head_end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(
        all[head_end..] == *big(),
        "{}",
        ctx("slow reader", "body differs".into())
    );

    // The deferred client gets its answer; the stream its last event and a
    // clean end; then both connections close.
    let all = read_to_eof(&mut deferred)
        .map_err(|e| ctx("deferred", e))
        .unwrap();
    let text = String::from_utf8_lossy(&all);
    assert!(
        text.starts_with("HTTP/1.1 200 ") && text.ends_with("\r\n\r\ndeferred answer"),
        "{}",
        ctx("deferred", text.to_string())
    );
    let rest = read_to_eof(&mut stream).map_err(|e| ctx("sse", e)).unwrap();
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.contains("data: first\n\n") && text.ends_with("data: last\n\n\r\n0\r\n\r\n"),
        "{}",
        ctx("sse", text.to_string())
    );
    for (mut d, mut e, reply, sse) in stuck_streams.drain(..) {
        // At the deadline: 503 `draining` for the reply, a cut stream.
        let all = read_to_eof(&mut d)
            .map_err(|e| ctx("stuck deferred", e))
            .unwrap();
        let text = String::from_utf8_lossy(&all);
        assert!(
            text.starts_with("HTTP/1.1 503 ") && text.contains("draining"),
            "{}",
            ctx("stuck deferred", text.to_string())
        );
        let rest = read_to_eof(&mut e)
            .map_err(|e| ctx("stuck sse", e))
            .unwrap();
        assert!(
            !rest.ends_with(b"0\r\n\r\n"),
            "{}",
            ctx("stuck sse", "a cut stream looked complete".into())
        );
        let (Token::Reply(reply), Token::Sse(sse)) = (reply, sse) else {
            panic!("tokens")
        };
        assert!(reply.is_gone());
        assert_eq!(sse.send(&Event::new("x")), Push::Closed);
    }
    let (report, took) = rx
        .recv_timeout(DRAIN + SLACK + Duration::from_secs(1))
        .unwrap_or_else(|_| panic!("{}", ctx("run", "did not return".into())));
    waiter.join().unwrap();
    assert!(
        took <= DRAIN + SLACK,
        "{}",
        ctx("run", format!("took {took:?}"))
    );
    let forced = 3 * usize::from(stuck); // the huge download, a reply, a stream
    assert_eq!(
        report.forced,
        forced,
        "{}",
        ctx("report", format!("{report:?}"))
    );
    stuck_client.take();
    took
}

#[test]
fn three_hundred_shutdown_cycles_each_end_within_the_deadline() {
    let mut slowest = Duration::ZERO;
    for n in 0..300 {
        slowest = slowest.max(cycle(n, n % 50 == 49));
    }
    eprintln!("slowest of 300 cycles: {slowest:?} (deadline {DRAIN:?})");
}

/// `cargo test --release --test shutdown -- --ignored`: 10,000 cycles.
#[test]
#[ignore = "stress: 10,000 cycles, about a minute; run by hand"]
fn ten_thousand_shutdown_cycles() {
    let mut slowest = (Duration::ZERO, 0);
    let start = Instant::now();
    for n in 0..10_000 {
        let took = cycle(n, false);
        if took > slowest.0 {
            slowest = (took, n);
        }
    }
    eprintln!(
        "10,000 cycles in {:?}; slowest cycle {} took {:?}",
        start.elapsed(),
        slowest.1,
        slowest.0
    );
}

#[test]
fn shutdown_twice_during_run_and_after_stop_is_harmless() {
    let srv = TestServer::start(drain_config(), app);
    srv.stop.shutdown();
    srv.stop.shutdown();
    let stop = srv.stop.clone();
    let report = srv.shutdown_within(DRAIN + SLACK);
    assert_eq!(report.forced, 0);
    stop.shutdown();
    stop.shutdown_now();
}

#[test]
fn shutdown_from_inside_a_handler_finishes_that_response() {
    let server = Server::bind("127.0.0.1:0", drain_config()).unwrap();
    let addr = server.local_addr();
    let stop = server.shutdown_handle();
    let t = thread::spawn(move || {
        server.run(move |req: &Request<'_>| {
            if req.path() == "/stop" {
                stop.shutdown();
                return Response::text(200, "stopping");
            }
            Response::text(200, "ok")
        })
    });
    let mut s = connect(addr);
    s.write_all(b"GET /stop HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s);
    assert_eq!(r.body, b"stopping");
    assert!(
        r.closes(),
        "the response in progress must say Connection: close"
    );
    read_to_eof(&mut s).unwrap();
    let t0 = Instant::now();
    while !t.is_finished() {
        assert!(t0.elapsed() < DRAIN + SLACK, "run did not return");
        thread::sleep(Duration::from_millis(5)); // polling a thread's end, bounded
    }
    assert_eq!(t.join().unwrap().unwrap().forced, 0);
}

#[test]
fn shutdown_from_another_thread_during_an_accept_storm() {
    let srv = TestServer::start(drain_config(), app);
    let addr = srv.addr;
    let done = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let done = done.clone();
            let answered = answered.clone();
            thread::spawn(move || {
                let start = Instant::now();
                for _ in 0..100_000 {
                    if done.load(Ordering::Relaxed) || start.elapsed() > Duration::from_secs(5) {
                        break;
                    }
                    let Ok(mut s) = TcpStream::connect(addr) else {
                        continue; // refused once the listener is closed
                    };
                    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                    if s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                        .is_err()
                    {
                        continue;
                    }
                    // Either a complete response or a close without one:
                    // never a truncated response.
                    let got = read_to_eof(&mut s).unwrap_or_default();
                    if !got.is_empty() {
                        assert!(
                            got.ends_with(b"\r\n\r\nok"),
                            "truncated: {:?}",
                            String::from_utf8_lossy(&got)
                        );
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let t0 = Instant::now();
    while answered.load(Ordering::Relaxed) < 200 {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the storm never got going"
        );
        thread::yield_now();
    }
    let stopper = {
        let stop = srv.stop.clone();
        thread::spawn(move || stop.shutdown())
    };
    let report = srv.shutdown_within(DRAIN + SLACK);
    stopper.join().unwrap();
    done.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    assert!(report.stats.requests >= 200);
}

#[test]
fn dropping_handles_does_not_stop_the_server() {
    let srv = TestServer::start(drain_config(), app);
    drop(srv.stop.clone());
    let r = exchange(srv.addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 200);
    srv.shutdown_within(DRAIN + SLACK);
}

#[test]
fn server_dropped_without_run_frees_the_port_and_its_handle_stays_harmless() {
    let server = Server::bind("127.0.0.1:0", Config::default()).unwrap();
    let addr = server.local_addr();
    let stop = server.shutdown_handle();
    drop(server);
    stop.shutdown();
    stop.shutdown_now();
    std::net::TcpListener::bind(addr).expect("port still bound after the server was dropped");
}

#[test]
fn shutdown_now_cuts_everything_at_once() {
    let srv = TestServer::start(drain_config(), app);
    let mut s = srv.connect();
    s.write_all(b"GET /huge HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    s.read_exact(&mut [0u8; 1]).unwrap();
    srv.stop.shutdown_now();
    let t0 = Instant::now();
    let report = srv.shutdown_within(SLACK);
    assert!(t0.elapsed() < DRAIN, "shutdown_now waited for the drain");
    assert_eq!(report.forced, 1);
}

// The binary: signals reach the loop and drain it.

/// The listener closes at once on a drain: within a bounded wait, connects
/// are refused.
fn wait_refused(addr: std::net::SocketAddr) {
    let t0 = Instant::now();
    loop {
        match TcpStream::connect(addr) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return,
            _ => assert!(
                t0.elapsed() < Duration::from_secs(5),
                "still accepting after the signal"
            ),
        }
        thread::yield_now();
    }
}

fn keel_with_file(size: usize, extra: &[&str]) -> (TempDir, Vec<u8>, KeelProcess) {
    let dir = TempDir::new("signals");
    let data = pattern(size, 5);
    std::fs::write(dir.0.join("file.bin"), &data).unwrap();
    let keel = KeelProcess::start_with(
        &dir.0,
        std::net::IpAddr::from([127, 0, 0, 1]),
        "info",
        extra,
    );
    (dir, data, keel)
}

#[test]
fn sigterm_mid_download_completes_it_byte_identical_refuses_new_connections_and_exits_0() {
    let (_dir, data, mut keel) = keel_with_file(64 << 20, &[]);
    let addr = keel.addr();
    let mut s = keel.connect();
    s.write_all(b"GET /file.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 1];
    s.read_exact(&mut first).unwrap();
    keel.signal(libc::SIGTERM);
    wait_refused(addr);
    let mut all = first.to_vec();
    all.extend(read_to_eof(&mut s).unwrap());
    let head_end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(all.len() - head_end, data.len(), "download length");
    assert!(all[head_end..] == data[..], "download differs");
    let status = keel
        .wait_exit(Duration::from_secs(5))
        .expect("keel did not exit");
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[test]
fn second_sigterm_stops_at_once_with_exit_status_3() {
    let (_dir, _data, mut keel) = keel_with_file(64 << 20, &["--drain-timeout", "60"]);
    let mut s = keel.connect();
    s.write_all(b"GET /file.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    s.read_exact(&mut [0u8; 1]).unwrap(); // then stop reading: the drain cannot finish
    keel.signal(libc::SIGTERM);
    // Standard signals do not queue: a second SIGTERM sent while the first is
    // still pending would merge with it. Wait until the first has taken
    // effect (the listener refuses connections), as a person pressing Ctrl-C
    // twice would.
    wait_refused(keel.addr());
    keel.signal(libc::SIGTERM);
    let status = keel
        .wait_exit(Duration::from_secs(5))
        .expect("keel did not stop at once");
    assert_eq!(status.code(), Some(3), "{status:?}");
}

#[test]
fn drain_deadline_exits_3() {
    let (_dir, _data, mut keel) = keel_with_file(64 << 20, &["--drain-timeout", "0.3"]);
    let mut s = keel.connect();
    s.write_all(b"GET /file.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    s.read_exact(&mut [0u8; 1]).unwrap();
    keel.signal(libc::SIGINT);
    let status = keel
        .wait_exit(Duration::from_secs(5))
        .expect("keel did not exit at the deadline");
    assert_eq!(status.code(), Some(3), "{status:?}");
}

#[test]
fn sighup_is_ignored() {
    let (_dir, data, mut keel) = keel_with_file(1000, &[]);
    keel.signal(libc::SIGHUP);
    let mut s = keel.connect();
    s.write_all(b"GET /file.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert!(
        read_response(&mut s).body == data,
        "not serving after SIGHUP"
    );
    keel.signal(libc::SIGTERM);
    let status = keel
        .wait_exit(Duration::from_secs(5))
        .expect("keel did not exit");
    assert_eq!(status.code(), Some(0));
}
