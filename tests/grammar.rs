//! The strict request grammar of RFC 9112 §3 (request line, target forms)
//! and §3.2 (Host), over real sockets on 127.0.0.1: one test per rule, each
//! with what must be refused (400 or 505, a stable code, a close) and what
//! must still be served.

mod util;

use std::io::Write;
use std::time::Duration;

use keelhttp::{Config, Request, Response, StaticFiles};
use util::*;

/// Echoes what the handler sees: `method|target|path|query|host`.
fn start() -> TestServer {
    TestServer::start(Config::default(), |req: &Request<'_>| {
        Response::text(
            200,
            format!(
                "{}|{}|{}|{}|{}",
                req.method(),
                req.target(),
                req.path(),
                req.query().unwrap_or("-"),
                req.host().unwrap_or("-")
            ),
        )
    })
}

/// `raw` is refused with `status` and `code`, and the connection closes;
/// then a plain request on a new connection is still served.
fn refused(srv: &TestServer, raw: &[u8], status: u16, code: &str) {
    let what = String::from_utf8_lossy(raw);
    let mut s = srv.connect();
    s.write_all(raw).unwrap();
    let r = read_response(&mut s);
    assert_eq!(r.status, status, "{what:?}: {}", r.head);
    let body = String::from_utf8_lossy(&r.body);
    assert!(body.starts_with(&format!("{code}: ")), "{what:?}: {body:?}");
    assert!(r.closes(), "{what:?}: no Connection: close");
    if let Err(e) = closed_within(&mut s, Duration::from_secs(5)) {
        panic!("{what:?}: {e}");
    }
    let r = exchange(srv.addr, b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.body, b"GET|/next|/next|-|t", "after {what:?}");
}

/// `raw` is served with 200; returns what the handler saw.
fn served(srv: &TestServer, raw: &[u8]) -> String {
    let r = exchange(srv.addr, raw);
    let what = String::from_utf8_lossy(raw);
    assert_eq!(
        r.status,
        200,
        "{what:?}: {} {:?}",
        r.head,
        String::from_utf8_lossy(&r.body)
    );
    String::from_utf8(r.body).unwrap()
}

fn line(request_line: &str) -> Vec<u8> {
    format!("{request_line}\r\nHost: t\r\n\r\n").into_bytes()
}

#[test]
fn request_line_is_three_parts_with_single_spaces() {
    let srv = start();
    for bad in [
        "GET  / HTTP/1.1",
        "GET /  HTTP/1.1",
        "GET / HTTP/1.1 ",
        " GET / HTTP/1.1",
        "GET\t/ HTTP/1.1",
        "GET /\tHTTP/1.1",
        "GET / HTTP/1.1\t",
        "GET /a b HTTP/1.1",
        "GET / HTTP/1.1 extra",
        "GET /",
        "G(T / HTTP/1.1",
    ] {
        refused(&srv, &line(bad), 400, "bad_request");
    }
    assert_eq!(served(&srv, &line("GET / HTTP/1.1")), "GET|/|/|-|t");
    // One empty line before the request line is ignored (RFC 9112 §2.2).
    assert_eq!(
        served(&srv, b"\r\nGET /x HTTP/1.1\r\nHost: t\r\n\r\n"),
        "GET|/x|/x|-|t"
    );
}

#[test]
fn version_is_exactly_http_digit_dot_digit() {
    let srv = start();
    for bad in [
        "http/1.1",
        "HTTP/1.10",
        "HTTP/11",
        "HTTP/1",
        "HTTP/1.",
        "HTTP/1.a",
        "HTTPS/1.1",
        "HTTP/+.1",
        "HTTP/1,1",
        "HTTP1.1",
        "HTTP/1.1/",
    ] {
        refused(&srv, &line(&format!("GET / {bad}")), 400, "bad_request");
    }
    // A bare CR after the version is not a line ending.
    refused(
        &srv,
        b"GET / HTTP/1.1\r\r\nHost: t\r\n\r\n",
        400,
        "bad_request",
    );
}

#[test]
fn well_formed_versions_we_do_not_speak_are_505() {
    let srv = start();
    for v in ["HTTP/2.0", "HTTP/3.1", "HTTP/0.9", "HTTP/1.2", "HTTP/9.9"] {
        refused(
            &srv,
            &line(&format!("GET / {v}")),
            505,
            "version_not_supported",
        );
    }
    assert_eq!(
        served(&srv, b"GET /ten HTTP/1.0\r\n\r\n"),
        "GET|/ten|/ten|-|-"
    );
}

#[test]
fn whitespace_or_control_bytes_in_the_target_are_400() {
    let srv = start();
    for target in [
        &b"/a\tb"[..],
        b"/a\x00b",
        b"/a\x01",
        b"/a\x7fb",
        b"/a\rb",
        b"/a\x0bb",
        b"/\xc3\xa9",
        b"/a\x1bb",
    ] {
        let mut raw = b"GET ".to_vec();
        raw.extend_from_slice(target);
        raw.extend_from_slice(b" HTTP/1.1\r\nHost: t\r\n\r\n");
        refused(&srv, &raw, 400, "bad_target");
    }
    assert_eq!(
        served(&srv, &line("GET /a%20b?c=%09 HTTP/1.1")),
        "GET|/a%20b?c=%09|/a%20b|c=%09|t"
    );
}

#[test]
fn host_must_be_uri_host_and_optional_port() {
    let srv = start();
    for bad in [
        "a b",
        "a/b",
        "user@host",
        "[::1",
        "[::1]x",
        "[::1]:8x",
        "[zz::1]",
        "[127.0.0.1]",
        "h:8x",
        "h:-1",
        "a:b:c",
        "h:80:80",
        "%zz",
        "a\"b",
        "h?x",
        "h#x",
        "a\\b",
    ] {
        let raw = format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n");
        refused(&srv, raw.as_bytes(), 400, "bad_host");
    }
    // Also on HTTP/1.0, where Host is optional but must be valid if sent.
    refused(
        &srv,
        b"GET / HTTP/1.0\r\nHost: a b\r\n\r\n",
        400,
        "bad_host",
    );
    for good in [
        "example.com",
        "example.com:8080",
        "127.0.0.1:1",
        "[::1]",
        "[::1]:80",
        "[2001:db8::7]:443",
        "[v1.fe:x]",
        "h:",
        "xn--bcher-kva.example",
        "a%20b",
        "sub-delims!$&'()*+,;=",
    ] {
        let raw = format!("GET / HTTP/1.1\r\nHost: {good}\r\n\r\n");
        assert_eq!(served(&srv, raw.as_bytes()), format!("GET|/|/|-|{good}"));
    }
    // An empty Host is what a client sends for a URI without an authority.
    assert_eq!(
        served(&srv, b"GET / HTTP/1.1\r\nHost:\r\n\r\n"),
        "GET|/|/|-|"
    );
}

#[test]
fn absolute_form_is_accepted_and_its_authority_wins_over_host() {
    let srv = start();
    assert_eq!(
        served(
            &srv,
            b"GET http://example.com:8080/a/b?x=1 HTTP/1.1\r\nHost: other\r\n\r\n"
        ),
        "GET|http://example.com:8080/a/b?x=1|/a/b|x=1|example.com:8080"
    );
    assert_eq!(
        served(&srv, b"GET HTTPS://[::1]?q HTTP/1.1\r\nHost: t\r\n\r\n"),
        "GET|HTTPS://[::1]?q|/|q|[::1]"
    );
    let mut s = srv.connect();
    s.write_all(b"HEAD http://e HTTP/1.0\r\n\r\n").unwrap();
    let r = read_response_to(&mut s, true);
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.header("content-length"), Some("19")); // "HEAD|http://e|/|-|e"
    for bad in [
        "GET ftp://e/x HTTP/1.1",
        "GET http:///x HTTP/1.1",
        "GET http://u@e/x HTTP/1.1",
        "GET http://e:8x/ HTTP/1.1",
        "GET http://e\\x/ HTTP/1.1",
        "GET http:/e/x HTTP/1.1",
        "GET //e/x:y HTTP/1.1x",
    ] {
        let code = if bad.ends_with('x') {
            "bad_request"
        } else {
            "bad_target"
        };
        refused(&srv, &line(bad), 400, code);
    }
    // Host is still required in HTTP/1.1 (RFC 9112 §3.2), and still checked.
    refused(&srv, b"GET http://e/ HTTP/1.1\r\n\r\n", 400, "bad_host");
    refused(
        &srv,
        b"GET http://e/ HTTP/1.1\r\nHost: a b\r\n\r\n",
        400,
        "bad_host",
    );
}

#[test]
fn absolute_form_reaches_static_files_as_its_path() {
    let dir = TempDir::new("grammar-static");
    dir.write("a/b.txt", b"bee\n");
    let srv = TestServer::start(Config::default(), StaticFiles::new(dir.path()).unwrap());
    let r = exchange(
        srv.addr,
        b"GET http://example.com/a/b.txt?x HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.body, b"bee\n");
    let r = exchange(
        srv.addr,
        b"GET http://example.com/a?keep HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(r.status, 301, "{}", r.head);
    assert_eq!(r.header("location"), Some("/a/?keep"));
}

#[test]
fn asterisk_form_only_with_options() {
    let srv = start();
    assert_eq!(served(&srv, &line("OPTIONS * HTTP/1.1")), "OPTIONS|*|*|-|t");
    for method in ["GET", "HEAD", "POST", "DELETE", "CONNECT"] {
        refused(
            &srv,
            &line(&format!("{method} * HTTP/1.1")),
            400,
            "bad_target",
        );
    }
    // OPTIONS with a path is fine too.
    assert_eq!(
        served(&srv, &line("OPTIONS /x HTTP/1.1")),
        "OPTIONS|/x|/x|-|t"
    );
}

#[test]
fn authority_form_only_and_always_with_connect() {
    let srv = start();
    assert_eq!(
        served(
            &srv,
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
        ),
        "CONNECT|example.com:443|example.com:443|-|example.com:443"
    );
    for bad in [
        "GET example.com:443 HTTP/1.1",
        "POST example.com:443 HTTP/1.1",
        "GET example.com HTTP/1.1",
        "CONNECT /x HTTP/1.1",
        "CONNECT example.com HTTP/1.1",
        "CONNECT example.com: HTTP/1.1",
        "CONNECT :443 HTTP/1.1",
        "CONNECT http://e/ HTTP/1.1",
        "CONNECT * HTTP/1.1",
    ] {
        refused(&srv, &line(bad), 400, "bad_target");
    }
}
