//! No request smuggling, behind a real proxy: nginx (as a reverse proxy
//! with keep-alive connections to its upstream) in front of keel, and a
//! corpus of ambiguous messages (Content-Length / Transfer-Encoding
//! variants, obs-fold, bare CR and LF, duplicate lengths, chunk-size
//! tricks, pipelined leftovers). Each hides a canary request where a
//! correct parser sees body bytes (or refuses the message): keel must never
//! serve a canary, and every response the client gets must answer exactly
//! one request it sent. The same corpus also goes to keel directly.
//! nginx comes from `.ci/run` (apt package `nginx`); without it, the proxy
//! half skips with a printed reason.

mod util;

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keelhttp::{Config, Request, Response};
use util::*;

/// How long one exchange may take before it counts as ended.
const CASE_LIMIT: Duration = Duration::from_secs(5);

/// A request that must never be served: it only ever travels inside
/// another request's body (or inside a message a correct parser refuses).
fn canary(case: usize) -> Vec<u8> {
    format!("GET /canary/{case} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes()
}

/// The ambiguous messages. Each is one request, `/r/{case}`, as a correct
/// HTTP/1.1 parser reads it (or a message it refuses); the canary sits where
/// only a parser that disagrees about the framing would see a request.
fn corpus() -> Vec<(&'static str, Vec<u8>)> {
    let mut out: Vec<(&'static str, Vec<u8>)> = Vec::new();
    let mut add = |name: &'static str, build: &dyn Fn(usize, &[u8]) -> Vec<u8>| {
        let case = out.len();
        out.push((name, build(case, &canary(case))));
    };
    let cat = |parts: &[&[u8]]| parts.concat();
    // Body "0\r\n\r\n" + canary: a chunked reader ends the body after "0",
    // then sees the canary as the next request; a Content-Length reader
    // (with CL covering it all) sees it as body.
    let last_chunk_then = |c: &[u8]| cat(&[b"0\r\n\r\n", c]);
    // With both framings, or a Transfer-Encoding a parser may ignore.
    for (name, te) in [
        ("CL.TE", "Transfer-Encoding: chunked"),
        ("TE tab", "Transfer-Encoding:\tchunked"),
        ("TE space before colon", "Transfer-Encoding : chunked"),
        ("TE trailing space", "Transfer-Encoding: chunked "),
        ("TE Chunked", "Transfer-Encoding: Chunked"),
        ("TE xchunked", "Transfer-Encoding: xchunked"),
        (
            "TE chunked, identity",
            "Transfer-Encoding: chunked, identity",
        ),
        (
            "TE identity, chunked",
            "Transfer-Encoding: identity, chunked",
        ),
        (
            "TE twice",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity",
        ),
        ("TE vertical tab", "Transfer-Encoding: \x0bchunked"),
        ("TE underscore", "Transfer_Encoding: chunked"),
        ("TE quoted", "Transfer-Encoding: \"chunked\""),
        ("TE obs-fold", "X-Pad: a\r\n Transfer-Encoding: chunked"),
        ("TE folded value", "Transfer-Encoding:\r\n chunked"),
        ("TE after bare CR", "X-Pad: a\rTransfer-Encoding: chunked"),
        ("TE NUL in name", "Transfer-Encoding\x00: chunked"),
    ] {
        add(name, &|case, c| {
            let body = last_chunk_then(c);
            cat(&[
                format!(
                    "POST /r/{case} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n{te}\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
                &body,
            ])
        });
    }
    add("TE.CL (TE first)", &|case, c| {
        let body = last_chunk_then(c);
        cat(&[
            format!(
                "POST /r/{case} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
            &body,
        ])
    });
    add("TE in HTTP/1.0", &|case, c| {
        let body = last_chunk_then(c);
        cat(&[
            format!(
                "POST /r/{case} HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
                body.len()
            )
            .as_bytes(),
            &body,
        ])
    });
    // Two lengths: the short one ends the body before the canary.
    let pad = b"AAAAA";
    for (name, cl) in [
        ("duplicate CL", "Content-Length: 5\r\nContent-Length: {L}"),
        (
            "duplicate CL reversed",
            "Content-Length: {L}\r\nContent-Length: 5",
        ),
        ("CL list", "Content-Length: 5, {L}"),
        ("CL with space inside", "Content-Length: 5 {L}"),
        ("CL plus sign", "Content-Length: +{L}"),
        ("CL hex", "Content-Length: 0x{H}"),
        ("CL obs-fold", "Content-Length: 5\r\n {L}"),
        (
            "CL folded in another field",
            "X-Pad: a\r\n Content-Length: 5\r\nContent-Length: {L}",
        ),
        ("CL bare CR", "Content-Length: {L}\rContent-Length: 5"),
        (
            "CL space before colon",
            "Content-Length : 5\r\nContent-Length: {L}",
        ),
    ] {
        add(name, &|case, c| {
            let body = cat(&[pad, c]);
            let cl = cl
                .replace("{L}", &body.len().to_string())
                .replace("{H}", &format!("{:x}", body.len()));
            cat(&[
                format!("POST /r/{case} HTTP/1.1\r\nHost: t\r\n{cl}\r\n\r\n").as_bytes(),
                &body,
            ])
        });
    }
    // Chunk-size tricks: the canary is the data of a chunk whose size a
    // lenient parser reads differently (or skips), and the message is
    // refused by a strict one.
    for (name, size_line) in [
        ("chunk size trailing space", "{H} \r\n"),
        ("chunk size 0x", "0x{H}\r\n"),
        ("chunk size plus", "+{H}\r\n"),
        ("chunk size overflow", "1000000000000000{H}\r\n"),
        ("chunk size bare LF ext", "{H};a\nb\r\n"),
        ("chunk size bare CR", "{H}\r;x\r\n"),
        ("chunk ext without semicolon", "{H} x\r\n"),
        ("chunk size leading space", " {H}\r\n"),
        ("chunk size empty", "\r\n"),
    ] {
        add(name, &|case, c| {
            let size = size_line.replace("{H}", &format!("{:x}", c.len()));
            cat(&[
                format!("POST /r/{case} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
                    .as_bytes(),
                size.as_bytes(),
                c,
                b"\r\n0\r\n\r\n",
            ])
        });
    }
    add("chunk data longer than its size", &|case, c| {
        cat(&[
            format!("POST /r/{case} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello")
                .as_bytes(),
            c,
            b"\r\n0\r\n\r\n",
        ])
    });
    add("chunk data with an early CRLF", &|case, c| {
        cat(&[
            format!(
                "POST /r/{case} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\nhello\r\n",
                c.len() + 7
            )
            .as_bytes(),
            c,
            b"\r\n0\r\n\r\n",
        ])
    });
    add("canary in a trailer section", &|case, c| {
        cat(&[
            format!(
                "POST /r/{case} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
            )
            .as_bytes(),
            c,
        ])
    });
    add("valid chunks around the canary", &|case, c| {
        cat(&[
            format!(
                "POST /r/{case} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0000{:X};x=1\r\n",
                c.len()
            )
            .as_bytes(),
            c,
            b"\r\n0\r\nX-T: 1\r\n\r\n",
        ])
    });
    // Pipelined leftovers: bodies where a request "looks" bodiless.
    for method in ["GET", "HEAD", "OPTIONS", "DELETE"] {
        add("body on a method that rarely has one", &|case, c| {
            cat(&[
                format!(
                    "{method} /r/{case} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
                    c.len()
                )
                .as_bytes(),
                c,
            ])
        });
    }
    add("HTTP/1.0 keep-alive with a body", &|case, c| {
        cat(&[
            format!(
                "POST /r/{case} HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: {}\r\n\r\n",
                c.len()
            )
            .as_bytes(),
            c,
        ])
    });
    add("Expect 100-continue with a body", &|case, c| {
        cat(&[
            format!(
                "POST /r/{case} HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
                c.len()
            )
            .as_bytes(),
            c,
        ])
    });
    add("bare LF line endings", &|case, c| {
        cat(&[
            format!(
                "POST /r/{case} HTTP/1.1\nHost: t\nContent-Length: {}\n\n",
                c.len()
            )
            .as_bytes(),
            c,
        ])
    });
    add("LF then CRLF mix", &|case, c| {
        cat(&[
            format!(
                "POST /r/{case} HTTP/1.1\r\nHost: t\nContent-Length: {}\r\n\r\n",
                c.len()
            )
            .as_bytes(),
            c,
        ])
    });
    out
}

/// What one exchange produced.
struct Exchange {
    /// (status, body) of each response, in order.
    responses: Vec<(u16, Vec<u8>)>,
}

/// Sends `raw`, then a last request that closes, and reads every response
/// until the connection ends (or `CASE_LIMIT`).
fn exchange_all(addr: SocketAddr, raw: &[u8], case: usize) -> Exchange {
    let first_is_head = raw.starts_with(b"HEAD ");
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let last = format!("GET /last/{case} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let _ = s.write_all(raw);
    let _ = s.write_all(last.as_bytes());
    let mut buf = Vec::new();
    let started = Instant::now();
    let mut chunk = [0u8; 8192];
    while started.elapsed() < CASE_LIMIT {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break, // a reset ends it too
        }
    }
    Exchange {
        responses: parse_responses(&buf, first_is_head),
    }
}

/// Splits bytes into responses (Content-Length or chunked bodies; none
/// for the first if it answers a HEAD).
fn parse_responses(mut buf: &[u8], first_is_head: bool) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf = &buf[end + 4..];
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if status == 100 {
            continue;
        }
        let field = |name: &str| {
            head.lines().skip(1).find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
        };
        let body = if first_is_head && out.is_empty() {
            Vec::new()
        } else if field("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            let mut body = Vec::new();
            while let Some(nl) = buf.windows(2).position(|w| w == b"\r\n") {
                let size = usize::from_str_radix(
                    String::from_utf8_lossy(&buf[..nl])
                        .split(';')
                        .next()
                        .unwrap_or("")
                        .trim(),
                    16,
                )
                .unwrap_or(0);
                buf = &buf[nl + 2..];
                if size == 0 {
                    let t = buf.windows(2).position(|w| w == b"\r\n").unwrap_or(0);
                    buf = &buf[(t + 2).min(buf.len())..];
                    break;
                }
                let take = size.min(buf.len());
                body.extend_from_slice(&buf[..take]);
                buf = &buf[(take + 2).min(buf.len())..];
            }
            body
        } else {
            let n = field("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0usize)
                .min(buf.len());
            let body = buf[..n].to_vec();
            buf = &buf[n..];
            body
        };
        out.push((status, body));
    }
    out
}

/// keel, recording the path of every request it serves.
fn start_keel() -> (TestServer, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let srv = TestServer::start(Config::default(), move |req: &Request<'_>| {
        log.lock().unwrap().push(req.path().to_string());
        Response::text(
            200,
            format!("seen {} {} {}", req.method(), req.path(), req.body().len()),
        )
    });
    (srv, seen)
}

/// Replays the corpus to `addr` and checks both invariants; returns how
/// many messages were refused (an error status) by whoever answered first.
fn replay(addr: SocketAddr, seen: &Mutex<Vec<String>>, via: &str) -> usize {
    let mut refused = 0;
    for (case, (name, raw)) in corpus().iter().enumerate() {
        let before = seen.lock().unwrap().len();
        let ex = exchange_all(addr, raw, case);
        let served: Vec<String> = seen.lock().unwrap()[before..].to_vec();
        let sent = [format!("/r/{case}"), format!("/last/{case}")];
        // 1. keel never served a canary, nor anything the client did not send.
        for path in &served {
            assert!(
                sent.contains(path),
                "{via}: case {case} ({name}): keel served {path:?}, which the client never sent as a request; \
                 it served {served:?} for {:?}",
                String::from_utf8_lossy(raw)
            );
        }
        // 2. Each response answers exactly one request sent, in order.
        assert!(
            ex.responses.len() <= sent.len(),
            "{via}: case {case} ({name}): {} responses for {} requests",
            ex.responses.len(),
            sent.len()
        );
        let mut next = 0; // responses answer the requests sent, in order
        for (i, (status, body)) in ex.responses.iter().enumerate() {
            let text = String::from_utf8_lossy(body);
            if i == 0 && *status == 200 && raw.starts_with(b"HEAD ") {
                next = 1; // the HEAD's answer: headers only
            } else if let Some(rest) = text.strip_prefix("seen ") {
                let path = rest.split(' ').nth(1).unwrap_or("");
                let at = sent[next..].iter().position(|p| p == path);
                assert!(
                    at.is_some(),
                    "{via}: case {case} ({name}): response {i} answers {path:?} ({status}); sent {sent:?}"
                );
                next += at.unwrap_or(0) + 1;
            } else if *status >= 400 {
                refused += 1;
                next += 1;
            } else {
                panic!("{via}: case {case} ({name}): response {i}: {status} {text:?}");
            }
        }
        // The HEAD response (first of case "HEAD") has no body to check.
        if raw.starts_with(b"HEAD ") {
            assert_eq!(served.first().map(String::as_str), Some(sent[0].as_str()));
        }
    }
    refused
}

#[test]
fn ambiguous_messages_straight_to_keel_never_smuggle() {
    let (srv, seen) = start_keel();
    let n = corpus().len();
    let refused = replay(srv.addr, &seen, "direct");
    eprintln!("direct: {n} messages, {refused} refused by keel, no canary served");
}

/// nginx in the foreground, everything inside a temp dir; killed on drop.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    dir: TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    fn error_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

fn nginx_binary() -> Option<&'static str> {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
}

/// Starts nginx as a reverse proxy to `upstream` with keep-alive upstream
/// connections, on a port found by binding port 0 first.
fn start_nginx(bin: &str, upstream: SocketAddr) -> Nginx {
    for attempt in 0..3 {
        let dir = TempDir::new("smuggling-nginx");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let d = dir.path().display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log info;\nevents {{ worker_connections 128; }}\n\
             http {{\n  access_log {d}/access.log;\n\
               client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               upstream keel {{ server {upstream}; keepalive 4; }}\n\
               server {{\n    listen 127.0.0.1:{port};\n\
                 location / {{\n      proxy_pass http://keel;\n      proxy_http_version 1.1;\n\
                   proxy_set_header Connection \"\";\n      proxy_request_buffering off;\n    }}\n  }}\n}}\n"
        );
        fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        let mut nginx = Nginx {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        };
        // Ready when it accepts; bounded in count and time.
        for _ in 0..200 {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                eprintln!(
                    "nginx exited ({status}) on attempt {attempt}: {}",
                    nginx.error_log()
                );
                break;
            }
            if TcpStream::connect_timeout(&nginx.addr, Duration::from_millis(100)).is_ok() {
                return nginx;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        drop(nginx);
    }
    panic!("nginx did not start");
}

#[test]
fn ambiguous_messages_through_nginx_never_smuggle() {
    let Some(bin) = nginx_binary() else {
        eprintln!("skipping: nginx is not installed (.ci/run installs it with apt)");
        return;
    };
    let (srv, seen) = start_keel();
    let nginx = start_nginx(bin, srv.addr);
    // The proxy works, and reuses its upstream connection.
    for i in 0..3 {
        let ex = exchange_all(nginx.addr, b"", 1000 + i);
        assert_eq!(ex.responses.len(), 1, "{}", nginx.error_log());
        assert_eq!(
            ex.responses[0].1,
            format!("seen GET /last/{} 0", 1000 + i).as_bytes()
        );
    }
    let n = corpus().len();
    let refused = replay(nginx.addr, &seen, "via nginx");
    // A chunked body is streamed to keel with the framing nginx decided.
    let ex = exchange_all(
        nginx.addr,
        b"POST /r/chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        2000,
    );
    assert_eq!(ex.responses[0].1, b"seen POST /r/chunked 5");
    eprintln!(
        "via nginx: {n} messages, {refused} refused (by nginx or keel), no canary served, \
         keel saw {} requests",
        seen.lock().unwrap().len()
    );
    drop(nginx);
}
