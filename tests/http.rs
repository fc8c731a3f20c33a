//! HTTP/1.1 over real sockets on 127.0.0.1: keep-alive, pipelining, bodies in
//! both framings, every error status, panics, timeouts, drain.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use keelhttp::{header, Body, Config, Handler, Request, Response};
use util::*;

/// The application most tests run.
fn app() -> impl Handler + Send + 'static {
    |req: &Request<'_>| -> Response {
        match req.path() {
            "/panic" => panic!("boom (this panic is expected by the test)"),
            "/echo" => Response::new(200)
                .with_header(header::CONTENT_TYPE, "application/octet-stream")
                .with_body(req.body().to_vec()),
            "/no-content" => Response::new(204).with_body("ignored"),
            "/big" => Response::new(200).with_body(pattern(8 << 20, 7)),
            "/framing" => Response::text(200, "ok")
                .with_header("content-length", "999")
                .with_header("Transfer-Encoding", "chunked")
                .with_header("X-Split", "a\r\nSet-Cookie: x=1")
                .with_header("X-Fine", "yes"),
            "/close" => Response::text(200, "bye").with_header(header::CONNECTION, "close"),
            _ => Response::text(200, format!("{} {}", req.method(), req.target())),
        }
    }
}

fn start() -> TestServer {
    TestServer::start(Config::default(), app())
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n")
}

#[test]
fn thousand_requests_on_one_keep_alive_socket() {
    let srv = start();
    let mut s = srv.connect();
    for i in 0..1000 {
        s.write_all(get(&format!("/n/{i}")).as_bytes()).unwrap();
        let r = read_response(&mut s);
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(r.body, format!("GET /n/{i}").as_bytes(), "request {i}");
        assert!(!r.closes());
        assert!(r.header("date").is_some_and(|d| d.ends_with(" GMT")));
        assert_eq!(r.header("server"), Some("keel"));
    }
    let report = srv.shutdown_within(Duration::from_secs(5));
    assert_eq!(report.stats.requests, 1000);
    assert_eq!(report.stats.accepted, 1);
}

#[test]
fn sixteen_pipelined_requests_in_one_write_are_answered_in_order() {
    let srv = start();
    let mut s = srv.connect();
    let all: String = (0..16).map(|i| get(&format!("/p/{i}"))).collect();
    s.write_all(all.as_bytes()).unwrap();
    for i in 0..16 {
        let r = read_response(&mut s);
        assert_eq!(r.body, format!("GET /p/{i}").as_bytes());
    }
    // Still usable afterwards.
    s.write_all(get("/after").as_bytes()).unwrap();
    assert_eq!(read_response(&mut s).body, b"GET /after");
}

#[test]
fn pipelined_request_in_the_same_read_as_a_body_end() {
    let srv = start();
    let mut s = srv.connect();
    let raw = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello\
               POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
               GET /third HTTP/1.1\r\nHost: t\r\n\r\n";
    s.write_all(raw.as_bytes()).unwrap();
    assert_eq!(read_response(&mut s).body, b"hello");
    assert_eq!(read_response(&mut s).body, b"abc");
    assert_eq!(read_response(&mut s).body, b"GET /third");
}

#[test]
fn head_arriving_one_byte_at_a_time() {
    let srv = start();
    let mut s = srv.connect();
    for round in 0..2 {
        let req = format!("GET /slow/{round} HTTP/1.1\r\nHost: t\r\nX-Pad: abcdefghij\r\n\r\n");
        for b in req.as_bytes() {
            s.write_all(&[*b]).unwrap();
        }
        let r = read_response(&mut s);
        assert_eq!(r.body, format!("GET /slow/{round}").as_bytes());
    }
}

#[test]
fn one_mebibyte_body_with_content_length() {
    let srv = start();
    let body = pattern(1 << 20, 1);
    let mut s = srv.connect();
    let head = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body).unwrap();
    let r = read_response(&mut s);
    assert_eq!(r.status, 200);
    assert!(r.body == body, "echoed body differs");
}

#[test]
fn one_mebibyte_body_chunked() {
    let srv = start();
    let body = pattern(1 << 20, 2);
    let mut raw = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    // Uneven chunk sizes, one with an extension; a trailer at the end.
    let mut i = 0;
    let mut k = 0usize;
    while i < body.len() {
        let n = (1000 + k * 7919 % 30000).min(body.len() - i);
        raw.extend_from_slice(format!("{n:x}").as_bytes());
        if k % 5 == 0 {
            raw.extend_from_slice(b";name=value");
        }
        raw.extend_from_slice(b"\r\n");
        raw.extend_from_slice(&body[i..i + n]);
        raw.extend_from_slice(b"\r\n");
        i += n;
        k += 1;
    }
    raw.extend_from_slice(b"0\r\nX-Trailer: 1\r\n\r\n");
    let mut s = srv.connect();
    s.write_all(&raw).unwrap();
    let r = read_response(&mut s);
    assert_eq!(r.status, 200);
    assert!(r.body == body, "echoed body differs");
    // And the connection carries on.
    s.write_all(get("/next").as_bytes()).unwrap();
    assert_eq!(read_response(&mut s).body, b"GET /next");
}

#[test]
fn expect_100_continue_gets_an_interim_response_before_the_body() {
    let srv = start();
    let mut s = srv.connect();
    s.write_all(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
    )
    .unwrap();
    let interim = read_response_to(&mut s, true);
    assert_eq!(interim.status, 100);
    s.write_all(b"body").unwrap();
    let r = read_response(&mut s);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"body"[..]));
}

#[test]
fn expect_100_continue_with_a_body_too_large_gets_413_without_100() {
    let mut config = Config::default();
    config.max_body_bytes = 10;
    let srv = TestServer::start(config, app());
    let r = exchange(
        srv.addr,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n",
    );
    assert_eq!(r.status, 413);
}

/// Each malformed or over-limit request gets its status, a well-framed body
/// with a stable code, and a close; the server keeps serving others.
#[test]
fn error_statuses_are_complete_and_close_the_connection() {
    let mut config = Config::default();
    config.max_head_bytes = 4096;
    config.max_target_bytes = 1024;
    config.max_headers = 16;
    config.max_body_bytes = 1000;
    let srv = TestServer::start(config, app());
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(2000));
    let huge_header = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "b".repeat(5000)
    );
    let many_headers = format!(
        "GET / HTTP/1.1\r\nHost: t\r\n{}\r\n",
        (0..20).map(|i| format!("X-{i}: v\r\n")).collect::<String>()
    );
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("malformed head", "GET / HTTP/1.1\r\nHost t\r\n\r\n".into(), 400, "bad_request"),
        ("garbage", "\x01\x02\x03 nonsense\r\n\r\n".into(), 400, "bad_request"),
        ("missing Host", "GET / HTTP/1.1\r\n\r\n".into(), 400, "bad_host"),
        ("two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".into(), 400, "bad_host"),
        ("bad Content-Length", "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1x\r\n\r\n".into(), 400, "bad_content_length"),
        ("differing Content-Lengths", "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".into(), 400, "bad_content_length"),
        ("CL and TE", "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(), 400, "bad_request"),
        ("TE not ending in chunked", "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n".into(), 400, "bad_request"),
        ("obs-fold", "GET / HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n  folded\r\n\r\n".into(), 400, "bad_request"),
        ("space before colon", "GET / HTTP/1.1\r\nHost: t\r\nX-A : 1\r\n\r\n".into(), 400, "bad_request"),
        ("bad chunk size", "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n".into(), 400, "bad_chunk"),
        ("target too long", long_target, 414, "uri_too_long"),
        ("head too large", huge_header, 431, "header_too_large"),
        ("too many headers", many_headers, 431, "header_too_large"),
        ("body too large (CL)", "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n".into(), 413, "body_too_large"),
        ("body too large (chunked)", format!("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n{}\r\n", "c".repeat(1001)), 413, "body_too_large"),
        ("unknown coding", "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".into(), 501, "not_implemented"),
        ("HTTP/2.0", "GET / HTTP/2.0\r\nHost: t\r\n\r\n".into(), 505, "version_not_supported"),
        ("Expect other", "POST / HTTP/1.1\r\nHost: t\r\nExpect: magic\r\nContent-Length: 1\r\n\r\nx".into(), 417, "expectation_failed"),
    ];
    for (what, raw, status, code) in cases {
        let mut s = srv.connect();
        s.write_all(raw.as_bytes()).unwrap();
        let r = read_response(&mut s);
        assert_eq!(r.status, status, "{what}: {}", r.head);
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            body.starts_with(&format!("{code}: ")),
            "{what}: body {body:?}"
        );
        assert!(r.closes(), "{what}: no Connection: close");
        if let Err(e) = closed_within(&mut s, Duration::from_secs(5)) {
            panic!("{what}: {e}");
        }
    }
    // Everyone else is still served.
    let r = exchange(srv.addr, get("/still-here").as_bytes());
    assert_eq!(r.body, b"GET /still-here");
}

#[test]
fn handler_panic_costs_one_500_and_its_connection_only() {
    let srv = start();
    let mut bystander = srv.connect();
    bystander.write_all(get("/before").as_bytes()).unwrap();
    assert_eq!(read_response(&mut bystander).status, 200);

    let mut s = srv.connect();
    s.write_all(get("/panic").as_bytes()).unwrap();
    let r = read_response(&mut s);
    assert_eq!(r.status, 500);
    assert!(String::from_utf8_lossy(&r.body).starts_with("internal: "));
    assert!(r.closes());
    closed_within(&mut s, Duration::from_secs(5)).unwrap();

    bystander.write_all(get("/after").as_bytes()).unwrap();
    assert_eq!(read_response(&mut bystander).body, b"GET /after");
    let r = exchange(srv.addr, get("/fresh").as_bytes());
    assert_eq!(r.status, 200);
    let report = srv.shutdown_within(Duration::from_secs(5));
    assert_eq!(report.stats.panics, 1);
}

#[test]
fn head_gets_the_headers_and_no_body() {
    let srv = start();
    let mut s = srv.connect();
    s.write_all(b"HEAD /x HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let r = read_response_to(&mut s, true);
    assert_eq!(r.header("content-length"), Some("7")); // "HEAD /x"
                                                       // If a body had been sent, this response would be misread.
    s.write_all(get("/y").as_bytes()).unwrap();
    assert_eq!(read_response(&mut s).body, b"GET /y");
}

#[test]
fn no_content_has_no_body_and_no_length() {
    let srv = start();
    let mut s = srv.connect();
    s.write_all(get("/no-content").as_bytes()).unwrap();
    let r = read_response(&mut s);
    assert_eq!(r.status, 204);
    assert_eq!(r.header("content-length"), None);
    s.write_all(get("/y").as_bytes()).unwrap();
    assert_eq!(read_response(&mut s).body, b"GET /y");
}

#[test]
fn the_server_owns_framing_and_drops_unsafe_headers() {
    let srv = start();
    let mut s = srv.connect();
    s.write_all(get("/framing").as_bytes()).unwrap();
    let r = read_response(&mut s);
    assert_eq!(r.header("content-length"), Some("2"));
    assert_eq!(r.header("transfer-encoding"), None);
    assert_eq!(r.header("x-split"), None);
    assert_eq!(r.header("set-cookie"), None);
    assert_eq!(r.header("x-fine"), Some("yes"));
    assert_eq!(r.body, b"ok");
}

#[test]
fn http_1_0_closes_unless_keep_alive_is_asked_for() {
    let srv = start();
    let mut s = srv.connect();
    s.write_all(b"GET /a HTTP/1.0\r\n\r\n").unwrap();
    let r = read_response(&mut s);
    assert!(r.closes());
    closed_within(&mut s, Duration::from_secs(5)).unwrap();

    let mut s = srv.connect();
    s.write_all(b"GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s);
    assert_eq!(r.header("connection"), Some("keep-alive"));
    s.write_all(b"GET /c HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s).body, b"GET /c");
}

#[test]
fn connection_close_from_client_or_handler_closes_after_the_response() {
    let srv = start();
    let mut s = srv.connect();
    s.write_all(b"GET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert!(read_response(&mut s).closes());
    closed_within(&mut s, Duration::from_secs(5)).unwrap();

    let mut s = srv.connect();
    s.write_all(get("/close").as_bytes()).unwrap();
    let r = read_response(&mut s);
    assert_eq!((r.body.as_slice(), r.closes()), (&b"bye"[..], true));
    closed_within(&mut s, Duration::from_secs(5)).unwrap();
}

#[test]
fn half_closed_client_still_gets_the_whole_response() {
    let srv = start();
    let mut s = srv.connect();
    s.write_all(get("/big").as_bytes()).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let r = read_response(&mut s);
    assert!(r.body == pattern(8 << 20, 7), "body differs");
    closed_within(&mut s, Duration::from_secs(5)).unwrap();
}

#[test]
fn file_body_range_is_sent_with_sendfile() {
    let dir = TempDir::new("range");
    let data = pattern(300_000, 3);
    let path = dir.0.join("f.bin");
    std::fs::write(&path, &data).unwrap();
    let srv =
        TestServer::start(
            Config::default(),
            move |_req: &Request<'_>| match std::fs::File::open(&path) {
                Ok(file) => Response::new(200).with_body(Body::File {
                    file,
                    offset: 1000,
                    len: 200_000,
                }),
                Err(_) => Response::new(500),
            },
        );
    let mut s = srv.connect();
    for _ in 0..3 {
        s.write_all(get("/").as_bytes()).unwrap();
        let r = read_response(&mut s);
        assert!(r.body == data[1000..201_000], "range differs");
    }
}

#[test]
fn a_file_shorter_than_promised_closes_instead_of_claiming_success() {
    let dir = TempDir::new("short");
    let path = dir.0.join("f.bin");
    std::fs::write(&path, pattern(1000, 4)).unwrap();
    let srv = TestServer::start(Config::default(), move |_req: &Request<'_>| {
        match std::fs::File::open(&path) {
            // Promises more than the file holds.
            Ok(file) => Response::new(200).with_body(Body::File {
                file,
                offset: 0,
                len: 5000,
            }),
            Err(_) => Response::new(500),
        }
    });
    let mut s = srv.connect();
    s.write_all(get("/").as_bytes()).unwrap();
    let mut got = Vec::new();
    let start = Instant::now();
    let mut buf = [0u8; 8192];
    loop {
        assert!(start.elapsed() < Duration::from_secs(5), "no close");
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("{e}"),
        }
    }
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(
        got.len() - head_end,
        1000,
        "sent what the file had, then closed"
    );
    // The server is still serving (this handler lies every time, so only the
    // head is checked).
    let mut s = srv.connect();
    s.write_all(get("/").as_bytes()).unwrap();
    assert_eq!(read_response_to(&mut s, true).status, 200);
}

#[test]
fn idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let mut config = Config::default();
    config.idle_timeout = Duration::from_millis(300);
    let srv = TestServer::start(config, app());
    let mut s = srv.connect();
    s.write_all(get("/").as_bytes()).unwrap();
    read_response(&mut s);
    let t = Instant::now();
    closed_within(&mut s, Duration::from_secs(5)).unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "closed too early"
    );
}

#[test]
fn slow_loris_is_cut_at_an_absolute_head_deadline() {
    let mut config = Config::default();
    config.header_timeout = Duration::from_millis(500);
    let srv = TestServer::start(config, app());
    let mut s = srv.connect();
    let start = Instant::now();
    // One byte every 50 ms would take 10 s for this head; the deadline does
    // not reset per byte.
    let head = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n",
        "z".repeat(200)
    );
    let mut cut = false;
    for b in head.as_bytes() {
        if s.write_all(&[*b]).is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50)); // the slow client itself
        if start.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    if !cut {
        closed_within(&mut s, Duration::from_millis(100)).expect("not cut");
    }
    assert!(start.elapsed() < Duration::from_secs(3), "cut too late");
}

#[test]
fn graceful_shutdown_finishes_responses_in_flight_and_frees_the_port() {
    let srv = start();
    let addr = srv.addr;
    let mut idle = srv.connect();
    idle.write_all(get("/").as_bytes()).unwrap();
    read_response(&mut idle);
    // A response in flight: 8 MiB that the client has not read yet.
    let mut busy = srv.connect();
    busy.write_all(get("/big").as_bytes()).unwrap();
    let mut first = [0u8; 1];
    busy.read_exact(&mut first).unwrap();

    srv.stop.shutdown();
    closed_within(&mut idle, Duration::from_secs(5)).unwrap();
    // The port is free again at once (the listener closed on shutdown).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match std::net::TcpListener::bind(addr) {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < deadline, "port still bound: {e}"),
        }
        std::thread::yield_now();
    }
    let mut rest = Vec::new();
    busy.read_to_end(&mut rest).unwrap();
    let mut all = first.to_vec();
    all.extend_from_slice(&rest);
    let head_end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(
        all[head_end..] == pattern(8 << 20, 7),
        "in-flight body differs"
    );
    let report = srv.shutdown_within(Duration::from_secs(5));
    assert_eq!(report.forced, 0);
}

#[test]
fn drain_deadline_forces_the_rest() {
    let mut config = Config::default();
    config.drain_timeout = Duration::from_millis(300);
    let srv = TestServer::start(config, app());
    let mut stuck = srv.connect();
    stuck.write_all(get("/big").as_bytes()).unwrap();
    let mut first = [0u8; 1];
    stuck.read_exact(&mut first).unwrap(); // response started; never read more
    let t = Instant::now();
    let report = srv.shutdown_within(Duration::from_secs(3));
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(report.forced, 1);
    drop(stuck);
}

#[test]
fn host_loop_with_poll_once() {
    let mut server = keelhttp::Server::bind("127.0.0.1:0", Config::default()).unwrap();
    let addr = server.local_addr();
    let stop = server.shutdown_handle();
    let client = std::thread::spawn(move || {
        let r = exchange(addr, get("/polled").as_bytes());
        stop.shutdown();
        r
    });
    let mut handler = app();
    let start = Instant::now();
    let mut turns = 0;
    while server
        .poll_once(&mut handler, Some(Duration::from_millis(50)))
        .unwrap()
    {
        turns += 1;
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "loop never ended"
        );
    }
    assert!(turns > 0);
    assert_eq!(client.join().unwrap().body, b"GET /polled");
}

#[test]
fn shutdown_before_run_returns_at_once() {
    let server = keelhttp::Server::bind("127.0.0.1:0", Config::default()).unwrap();
    let stop = server.shutdown_handle();
    stop.shutdown();
    stop.shutdown();
    let t = Instant::now();
    let report = server.run(app()).unwrap();
    assert!(t.elapsed() < Duration::from_secs(1));
    assert_eq!(report.forced, 0);
    stop.shutdown(); // after the server is gone: harmless
}

#[test]
fn api_types_have_the_promised_bounds() {
    fn send<T: Send>() {}
    fn send_sync_clone<T: Send + Sync + Clone>() {}
    send::<keelhttp::Server>();
    send_sync_clone::<keelhttp::ShutdownHandle>();
    // A handler needs neither Send nor Sync: Rc state is fine.
    let counter = std::rc::Rc::new(std::cell::Cell::new(0));
    let server = keelhttp::Server::bind("127.0.0.1:0", Config::default()).unwrap();
    server.shutdown_handle().shutdown();
    server
        .run(move |_req: &Request<'_>| {
            counter.set(counter.get() + 1);
            Response::new(200)
        })
        .unwrap();
}

#[allow(dead_code)]
fn _assert_stream_type(_: TcpStream) {}

/// Regression (found in review): closing a `Connection: close` connection
/// while the client's later bytes sat unread in the kernel sent a reset,
/// which destroyed the tail of a response the access log called complete.
#[test]
fn close_after_a_response_never_resets_away_its_tail() {
    let srv = start();
    let mut s = srv.connect();
    s.write_all(b"GET /big HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = vec![0u8; 1];
    s.read_exact(&mut got).unwrap();
    // More input arrives while the response is still being sent.
    s.write_all(get("/second").as_bytes()).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < Duration::from_secs(20), "no EOF");
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("after {} bytes: {e}", got.len()),
        }
        std::thread::sleep(Duration::from_millis(1)); // the slow reader itself
    }
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(got.len() - head_end, 8 << 20, "response cut short");
    assert!(got[head_end..] == pattern(8 << 20, 7), "body differs");
}
