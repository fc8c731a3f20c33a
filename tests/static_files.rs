//! The static-file handler over real sockets: paths and traversal, symlinks,
//! directories and listings, types, ranges, conditional requests,
//! precompressed siblings, and transfers (a sparse 5 GiB file, truncation
//! and rename mid-transfer, slow readers).
//!
//! The checks are functions of an address, run through the library
//! (`StaticFiles` in a `TestServer`) and, where no option is needed, through
//! the `keel` binary as well. Every file check also runs over one keep-alive
//! connection (`util::each_way`).

mod util;

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, FileExt};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use keelhttp::{Config, StaticFiles, StaticOptions};
use util::{
    connect, each_way, pattern, read_response_to, KeelProcess, Req, Resp, TempDir, TestServer,
};

const SECRET: &[u8] = b"TOP-SECRET-OUTSIDE-THE-ROOT";
const DATA_LEN: usize = 10_000;
/// 2000-01-01T00:00:00Z, the modification time of `old.txt`.
const OLD: u64 = 946_684_800;
const OLD_DATE: &str = "Sat, 01 Jan 2000 00:00:00 GMT";

/// A directory holding the root and, beside it, things that must never be
/// served: `outer/secret.txt`, `outer/secretdir/secret.txt`.
struct Docroot {
    outer: TempDir,
    root: PathBuf,
}

impl Docroot {
    fn write(&self, rel: &str, contents: &[u8]) -> PathBuf {
        let p = self.root.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, contents).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        p
    }
}

fn docroot(tag: &str) -> Docroot {
    let outer = TempDir::new(tag);
    outer.write("secret.txt", SECRET);
    outer.write("secretdir/secret.txt", SECRET);
    let root = outer.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let d = Docroot { outer, root };
    d.write("index.html", b"<h1>home</h1>\n");
    d.write("data.bin", &pattern(DATA_LEN, 1));
    d.write("empty.txt", b"");
    d.write("a/b.txt", b"b\n");
    d.write("a/index.html", b"<h1>a</h1>\n");
    d.write("noindex/x.txt", b"x\n");
    d.write(".hidden", b"hidden\n");
    d.write(".dir/x.txt", b"hidden x\n");
    d.write("style.css", b"body{}\n");
    d.write("app.js", b"1;\n");
    d.write("pic.png", b"\x89PNG");
    d.write("font.woff2", b"wOF2");
    d.write("blob", b"?");
    d.write("caf\u{e9}.txt", b"cafe\n");
    std::fs::write(
        d.root.join(std::ffi::OsStr::from_bytes(b"raw\xff.bin")),
        b"raw\n",
    )
    .unwrap();
    let old = d.write("old.txt", b"old\n");
    File::options()
        .write(true)
        .open(&old)
        .and_then(|f| f.set_modified(UNIX_EPOCH + Duration::from_secs(OLD)))
        .expect("set mtime");
    symlink("../secret.txt", d.root.join("link-out")).unwrap();
    symlink(
        d.outer.path().join("secret.txt"),
        d.root.join("link-out-abs"),
    )
    .unwrap();
    symlink("../secretdir", d.root.join("link-out-dir")).unwrap();
    symlink("a/b.txt", d.root.join("link-in")).unwrap();
    symlink("a", d.root.join("link-in-dir")).unwrap();
    d
}

fn library(d: &Docroot, options: StaticOptions) -> TestServer {
    let handler = StaticFiles::with_options(&d.root, options).expect("StaticFiles");
    TestServer::start(Config::default(), handler)
}

fn binary(d: &Docroot) -> KeelProcess {
    KeelProcess::start(&d.root, IpAddr::V4(Ipv4Addr::LOCALHOST), "warn")
}

fn assert_status(pass: &str, r: &Req, resp: &Resp, status: u16) {
    assert_eq!(
        resp.status,
        status,
        "{pass}: {} {} {:?} gave {}\n{}{:?}",
        r.method,
        r.target,
        r.headers,
        resp.status,
        resp.head,
        String::from_utf8_lossy(&resp.body)
    );
}

fn data() -> Vec<u8> {
    pattern(DATA_LEN, 1)
}

// ---------------------------------------------------------------------------
// Checks, each a function of the server's address

fn check_files(addr: SocketAddr) {
    let cases: Vec<(Req, &[u8], &str)> = vec![
        (
            Req::get("/"),
            b"<h1>home</h1>\n",
            "text/html; charset=utf-8",
        ),
        (
            Req::get("/index.html"),
            b"<h1>home</h1>\n",
            "text/html; charset=utf-8",
        ),
        (Req::get("/a/"), b"<h1>a</h1>\n", "text/html; charset=utf-8"),
        (Req::get("/a/b.txt"), b"b\n", "text/plain; charset=utf-8"),
        (
            Req::get("/style.css"),
            b"body{}\n",
            "text/css; charset=utf-8",
        ),
        (
            Req::get("/app.js"),
            b"1;\n",
            "text/javascript; charset=utf-8",
        ),
        (Req::get("/pic.png"), b"\x89PNG", "image/png"),
        (Req::get("/font.woff2"), b"wOF2", "font/woff2"),
        (Req::get("/blob"), b"?", "application/octet-stream"),
        (Req::get("/empty.txt"), b"", "text/plain; charset=utf-8"),
        (
            Req::get("/caf%C3%A9.txt"),
            b"cafe\n",
            "text/plain; charset=utf-8",
        ),
        (
            Req::get("/raw%FF.bin"),
            b"raw\n",
            "application/octet-stream",
        ),
        (
            Req::get("/a/b.txt?x=1&y=%2e%2e"),
            b"b\n",
            "text/plain; charset=utf-8",
        ),
        (Req::get("//a///b.txt"), b"b\n", "text/plain; charset=utf-8"),
        (Req::get("/a/./b.txt"), b"b\n", "text/plain; charset=utf-8"),
        (
            Req::get("/a/../a/b.txt"),
            b"b\n",
            "text/plain; charset=utf-8",
        ),
        (
            Req::get("/noindex/%2e%2e/a/b.txt"),
            b"b\n",
            "text/plain; charset=utf-8",
        ),
        (
            Req::get("http://test/a/b.txt"),
            b"b\n",
            "text/plain; charset=utf-8",
        ),
        // The type comes from the name asked for, not the link's target.
        (Req::get("/link-in"), b"b\n", "application/octet-stream"),
        (
            Req::get("/link-in-dir/b.txt"),
            b"b\n",
            "text/plain; charset=utf-8",
        ),
        (Req::head("/a/b.txt"), b"", "text/plain; charset=utf-8"),
        (Req::head("/"), b"", "text/html; charset=utf-8"),
    ];
    let reqs: Vec<Req> = cases.iter().map(|c| c.0.clone()).collect();
    each_way(addr, &reqs, |pass, r, resp| {
        let (_, body, ty) = cases
            .iter()
            .find(|c| c.0.target == r.target && c.0.method == r.method)
            .unwrap();
        assert_status(pass, r, resp, 200);
        assert_eq!(resp.body, *body, "{pass}: {}", r.target);
        assert_eq!(
            resp.header("content-type"),
            Some(*ty),
            "{pass}: {}",
            r.target
        );
        assert_eq!(resp.header("accept-ranges"), Some("bytes"), "{}", r.target);
        let etag = resp.header("etag").expect("ETag");
        assert!(
            etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2,
            "{etag}"
        );
        assert!(resp.header("last-modified").is_some(), "{}", r.target);
        if r.method == "HEAD" {
            assert!(resp.header("content-length").is_some_and(|l| l != "0"));
        }
    });
    // Same file, same validators; HEAD and GET agree.
    let get = Req::get("/data.bin").once(addr);
    let head = Req::head("/data.bin").once(addr);
    assert_eq!(get.body, data());
    for name in [
        "etag",
        "last-modified",
        "content-length",
        "content-type",
        "accept-ranges",
    ] {
        assert_eq!(get.header(name), head.header(name), "{name}");
    }
    let old = Req::get("/old.txt").once(addr);
    assert_eq!(old.header("last-modified"), Some(OLD_DATE));
}

/// At least 20 ways to ask for a byte outside the root: each ends in 400 or
/// 404 and never carries the secret.
fn check_traversal(addr: SocketAddr) {
    let vectors = [
        "/../secret.txt",
        "/..",
        "/../",
        "/a/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/.%2e/secret.txt",
        "/%2e%2e%2fsecret.txt",
        "/..%2fsecret.txt",
        "/a/%2e%2e/%2e%2e/secret.txt",
        "/%252e%252e/secret.txt",
        "/%252e%252e%252fsecret.txt",
        "/..%5csecret.txt",
        "/a%5c..%5c..%5csecret.txt",
        "/%c0%ae%c0%ae/secret.txt",
        "/%c0%ae%c0%ae%c0%afsecret.txt",
        "/%e0%80%ae%e0%80%ae/secret.txt",
        "/%u002e%u002e/secret.txt",
        "/..%00/secret.txt",
        "/index.html%00.txt",
        "/%00",
        "/a/b.txt%00",
        "/./../secret.txt",
        "/a/./../../secret.txt",
        "http://test/../secret.txt",
        "http://test/%2e%2e/secret.txt",
        "/link-out",
        "/link-out-abs",
        "/link-out-dir/",
        "/link-out-dir/secret.txt",
        "/link-out-dir",
        "/..;/secret.txt",
        "/.hidden",
        "/.dir/x.txt",
        "/a/b.txt/",
        "/a/b.txt/../../../secret.txt",
    ];
    assert!(vectors.len() >= 20);
    let reqs: Vec<Req> = vectors.iter().map(|v| Req::get(v)).collect();
    let check = |pass: &str, r: &Req, resp: &Resp| {
        assert!(
            resp.status == 400 || resp.status == 404,
            "{pass}: GET {} gave {}: {}",
            r.target,
            resp.status,
            String::from_utf8_lossy(&resp.body)
        );
        assert!(
            !resp.body.windows(SECRET.len()).any(|w| w == SECRET)
                && !resp.head.contains("TOP-SECRET"),
            "{pass}: GET {} leaked the secret",
            r.target
        );
    };
    each_way(addr, &reqs, check);
    // Some spellings never reach the handler: the engine refuses them (and
    // closes). Still never a byte from outside.
    for raw in [
        &b"GET /..\\secret.txt HTTP/1.1\r\nHost: t\r\n\r\n"[..],
        b"GET /\x00/../secret.txt HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET test:80 HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET * HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /%2e%2e/secret.txt\t HTTP/1.1\r\nHost: t\r\n\r\n",
    ] {
        let mut s = connect(addr);
        s.write_all(raw).unwrap();
        let resp = read_response_to(&mut s, false);
        check("raw", &Req::get(&String::from_utf8_lossy(raw)), &resp);
    }
}

fn check_directories(addr: SocketAddr) {
    let reqs = [
        Req::get("/a"),
        Req::get("/a?x=1&y=2"),
        Req::get("/link-in-dir"),
        Req::get("//a"),
        Req::get("/a/b/.."),
        Req::get("/noindex/"),
        Req::get("/noindex"),
    ];
    each_way(addr, &reqs, |pass, r, resp| match r.target.as_str() {
        "/a" | "//a" => {
            assert_status(pass, r, resp, 301);
            assert_eq!(resp.header("location"), Some("/a/"), "{pass}");
        }
        "/a?x=1&y=2" => {
            assert_status(pass, r, resp, 301);
            assert_eq!(resp.header("location"), Some("/a/?x=1&y=2"), "{pass}");
        }
        "/link-in-dir" => assert_eq!(resp.header("location"), Some("/link-in-dir/")),
        "/a/b/.." => {
            // `/a/b/..` is `/a/` (RFC 3986 §5.2.4), a directory with an index.
            assert_status(pass, r, resp, 200);
            assert_eq!(resp.body, b"<h1>a</h1>\n");
        }
        "/noindex/" => assert_status(pass, r, resp, 404), // no listing by default
        "/noindex" => assert_eq!(resp.header("location"), Some("/noindex/")),
        t => panic!("{t}"),
    });
}

fn check_ranges(addr: SocketAddr) {
    let d = data();
    let len = DATA_LEN;
    type Case = (&'static str, u16, Option<(usize, usize)>);
    let cases: Vec<Case> = vec![
        ("bytes=0-99", 206, Some((0, 99))),
        ("bytes=100-100", 206, Some((100, 100))),
        ("bytes=9990-", 206, Some((9990, 9999))),
        ("bytes=-10", 206, Some((9990, 9999))),
        ("bytes=-20000", 206, Some((0, 9999))),
        ("bytes=9990-99999", 206, Some((9990, 9999))),
        ("bytes=0-18446744073709551616", 206, Some((0, 9999))),
        ("Bytes=5-9", 206, Some((5, 9))),
        ("bytes=20000-, 0-1", 206, Some((0, 1))),
        ("bytes=10000-", 416, None),
        ("bytes=10000-10005", 416, None),
        ("bytes=-0", 416, None),
        ("bytes=5-2", 200, None),
        ("bytes=abc", 200, None),
        ("bytes=", 200, None),
        ("bytes=1", 200, None),
        ("items=0-5", 200, None),
        ("bytes 0-5", 200, None),
        ("bytes=0-0,0-0", 200, None),
        ("bytes=0-500,100-200", 200, None),
        ("bytes=0-,9000-9001", 200, None),
    ];
    let reqs: Vec<Req> = cases
        .iter()
        .map(|(range, _, _)| Req::get("/data.bin").with("Range", range))
        .collect();
    each_way(addr, &reqs, |pass, r, resp| {
        let range = &r.headers[0].1;
        let (_, status, span) = cases.iter().find(|c| c.0 == range).unwrap();
        assert_status(pass, r, resp, *status);
        assert!(resp.header("etag").is_some());
        match (status, span) {
            (206, Some((a, b))) => {
                assert_eq!(
                    resp.header("content-range"),
                    Some(format!("bytes {a}-{b}/{len}").as_str()),
                    "{pass}: {range}"
                );
                assert_eq!(
                    resp.header("content-type"),
                    Some("application/octet-stream")
                );
                assert!(resp.body == d[*a..=*b], "{pass}: {range}: wrong bytes");
            }
            (416, _) => {
                assert_eq!(
                    resp.header("content-range"),
                    Some(format!("bytes */{len}").as_str())
                );
                assert!(resp.body.starts_with(b"range_not_satisfiable"));
            }
            _ => {
                assert!(resp.body == d, "{pass}: {range}: not the whole file");
                assert_eq!(resp.header("content-range"), None);
            }
        }
    });
    // An empty file has no satisfiable range.
    let r = Req::get("/empty.txt").with("Range", "bytes=0-").once(addr);
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */0"));
    // Range is for GET only (RFC 9110 §14.2): a HEAD gets the 200 headers.
    let r = Req::head("/data.bin").with("Range", "bytes=0-9").once(addr);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("10000"));
}

/// Splits a `multipart/byteranges` body into (Content-Range, bytes) parts,
/// checking the framing.
fn parse_multipart(resp: &Resp) -> Vec<(String, Vec<u8>)> {
    let ct = resp.header("content-type").expect("Content-Type");
    let boundary = ct
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap_or_else(|| panic!("not multipart: {ct}"));
    let delim = format!("--{boundary}\r\n");
    let close = format!("--{boundary}--\r\n");
    let mut rest = &resp.body[..];
    let mut parts = Vec::new();
    for _ in 0..100 {
        if rest == close.as_bytes() {
            return parts;
        }
        assert!(
            rest.starts_with(delim.as_bytes()),
            "no delimiter: {:?}",
            String::from_utf8_lossy(&rest[..rest.len().min(80)])
        );
        rest = &rest[delim.len()..];
        let end = rest
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("part head");
        let head = String::from_utf8(rest[..end].to_vec()).unwrap();
        rest = &rest[end + 4..];
        let cr = head
            .split("\r\n")
            .find_map(|l| l.strip_prefix("Content-Range: "))
            .expect("part Content-Range")
            .to_string();
        let (span, _) = cr.strip_prefix("bytes ").unwrap().split_once('/').unwrap();
        let (a, b) = span.split_once('-').unwrap();
        let n = (b.parse::<u64>().unwrap() - a.parse::<u64>().unwrap() + 1) as usize;
        parts.push((cr, rest[..n].to_vec()));
        assert_eq!(&rest[n..n + 2], b"\r\n");
        rest = &rest[n + 2..];
    }
    panic!("too many parts");
}

fn check_multipart(addr: SocketAddr) {
    let d = data();
    let reqs = [
        Req::get("/data.bin").with("Range", "bytes=0-9,20-29"),
        Req::get("/data.bin").with("Range", "bytes=9000-9009, 0-0, -5"),
        Req::get("/data.bin").with("Range", "bytes=0-9,10-19"),
    ];
    each_way(addr, &reqs, |pass, r, resp| {
        assert_status(pass, r, resp, 206);
        assert_eq!(resp.header("content-range"), None);
        let parts = parse_multipart(resp);
        let want: Vec<(usize, usize)> = match r.headers[0].1.as_str() {
            "bytes=0-9,20-29" => vec![(0, 9), (20, 29)],
            "bytes=0-9,10-19" => vec![(0, 9), (10, 19)],
            _ => vec![(9000, 9009), (0, 0), (9995, 9999)],
        };
        assert_eq!(parts.len(), want.len(), "{pass}");
        for ((cr, bytes), (a, b)) in parts.iter().zip(want) {
            assert_eq!(cr, &format!("bytes {a}-{b}/{DATA_LEN}"));
            assert!(bytes[..] == d[a..=b], "{pass}: part {a}-{b}");
        }
        assert!(String::from_utf8_lossy(&resp.body)
            .contains("Content-Type: application/octet-stream\r\n"));
    });
    // More ranges than the cap (16 by default): the whole file.
    let many: Vec<String> = (0..17)
        .map(|i| format!("{}-{}", i * 10, i * 10 + 1))
        .collect();
    let r = Req::get("/data.bin")
        .with("Range", &format!("bytes={}", many.join(",")))
        .once(addr);
    assert_eq!(r.status, 200);
    assert!(r.body == d);
    let sixteen = &many[..16].join(",");
    let r = Req::get("/data.bin")
        .with("Range", &format!("bytes={sixteen}"))
        .once(addr);
    assert_eq!(r.status, 206);
    assert_eq!(parse_multipart(&r).len(), 16);
}

fn check_conditionals(addr: SocketAddr) {
    let first = Req::get("/data.bin").once(addr);
    let etag = first.header("etag").unwrap().to_string();
    let lm = first.header("last-modified").unwrap().to_string();
    let weak = format!("W/{etag}");
    let listed = format!("\"nope\", {etag}");
    let later = "Sun, 06 Nov 2095 08:49:37 GMT";
    let earlier = "Sun, 06 Nov 1994 08:49:37 GMT";
    let not_modified = [
        Req::get("/data.bin").with("If-None-Match", &etag),
        Req::get("/data.bin").with("If-None-Match", &weak),
        Req::get("/data.bin").with("If-None-Match", &listed),
        Req::get("/data.bin").with("If-None-Match", "*"),
        Req::get("/data.bin").with("If-Modified-Since", &lm),
        Req::get("/data.bin").with("If-Modified-Since", later),
        Req::get("/old.txt").with("If-Modified-Since", "Saturday, 01-Jan-00 00:00:00 GMT"),
        Req::get("/old.txt").with("If-Modified-Since", "Sat Jan  1 00:00:00 2000"),
        Req::head("/data.bin").with("If-None-Match", &etag),
        // 304 wins over a range.
        Req::get("/data.bin")
            .with("If-None-Match", &etag)
            .with("Range", "bytes=0-1"),
        Req::get("/data.bin")
            .with("If-Match", &etag)
            .with("If-None-Match", &etag),
    ];
    each_way(addr, &not_modified, |pass, r, resp| {
        assert_status(pass, r, resp, 304);
        assert!(resp.body.is_empty());
        assert_eq!(
            resp.header("content-length"),
            None,
            "{pass}: 304 with a length"
        );
        assert!(resp.header("date").is_some(), "{pass}: 304 without Date");
        assert!(resp.header("etag").is_some(), "{pass}: 304 without ETag");
    });
    let modified = [
        Req::get("/data.bin").with("If-None-Match", "\"nope\""),
        Req::get("/data.bin").with("If-None-Match", "garbage"),
        Req::get("/data.bin").with("If-Modified-Since", earlier),
        Req::get("/data.bin").with("If-Modified-Since", "not a date"),
        Req::get("/old.txt").with("If-Modified-Since", "Fri, 31 Dec 1999 23:59:59 GMT"),
        // If-None-Match takes precedence over If-Modified-Since.
        Req::get("/data.bin")
            .with("If-None-Match", "\"nope\"")
            .with("If-Modified-Since", later),
        Req::get("/data.bin").with("If-Match", &etag),
        Req::get("/data.bin").with("If-Match", &listed),
        Req::get("/data.bin").with("If-Match", "*"),
        Req::get("/data.bin").with("If-Unmodified-Since", &lm),
        Req::get("/data.bin").with("If-Unmodified-Since", later),
        Req::get("/data.bin").with("If-Unmodified-Since", "not a date"),
        // If-Match takes precedence over If-Unmodified-Since.
        Req::get("/data.bin")
            .with("If-Match", &etag)
            .with("If-Unmodified-Since", earlier),
    ];
    let d = data();
    each_way(addr, &modified, |pass, r, resp| {
        assert_status(pass, r, resp, 200);
        assert!(resp.body == d || r.target == "/old.txt");
    });
    let failed = [
        Req::get("/data.bin").with("If-Match", "\"nope\""),
        Req::get("/data.bin").with("If-Match", &weak),
        Req::get("/data.bin").with("If-Match", "garbage"),
        Req::get("/data.bin").with("If-Unmodified-Since", earlier),
        Req::get("/old.txt").with("If-Unmodified-Since", "Fri, 31 Dec 1999 23:59:59 GMT"),
        Req::head("/data.bin").with("If-Match", "\"nope\""),
        // 412 comes before 304 and before ranges.
        Req::get("/data.bin")
            .with("If-Match", "\"nope\"")
            .with("If-None-Match", &etag),
        Req::get("/data.bin")
            .with("If-Match", "\"nope\"")
            .with("Range", "bytes=0-1"),
    ];
    each_way(addr, &failed, |pass, r, resp| {
        assert_status(pass, r, resp, 412);
        if r.method == "GET" {
            assert!(resp.body.starts_with(b"precondition_failed"));
        }
    });
}

fn check_if_range(addr: SocketAddr) {
    let first = Req::get("/old.txt").once(addr);
    let etag = first.header("etag").unwrap().to_string();
    let weak = format!("W/{etag}");
    let reqs = [
        // fresh: the range
        Req::get("/old.txt")
            .with("Range", "bytes=1-2")
            .with("If-Range", &etag),
        Req::get("/old.txt")
            .with("Range", "bytes=1-2")
            .with("If-Range", OLD_DATE),
        // stale: the whole file
        Req::get("/old.txt")
            .with("Range", "bytes=1-2")
            .with("If-Range", "\"stale\""),
        Req::get("/old.txt")
            .with("Range", "bytes=1-2")
            .with("If-Range", "Sat, 01 Jan 2000 00:00:01 GMT"),
        Req::get("/old.txt")
            .with("Range", "bytes=1-2")
            .with("If-Range", &weak),
        Req::get("/old.txt")
            .with("Range", "bytes=1-2")
            .with("If-Range", "garbage"),
        // stale If-Range turns a 416 into the whole file too
        Req::get("/old.txt")
            .with("Range", "bytes=100-")
            .with("If-Range", "\"stale\""),
        Req::get("/old.txt")
            .with("Range", "bytes=100-")
            .with("If-Range", &etag),
        // without Range, If-Range does nothing
        Req::get("/old.txt").with("If-Range", "\"stale\""),
    ];
    each_way(addr, &reqs, |pass, r, resp| {
        let if_range = &r.headers.last().unwrap().1;
        let ranged = r.headers.iter().any(|h| h.0 == "Range");
        let fresh = if_range == &etag || if_range == OLD_DATE;
        let beyond = r.headers.iter().any(|h| h.1 == "bytes=100-");
        match (ranged, fresh, beyond) {
            (true, true, false) => {
                assert_status(pass, r, resp, 206);
                assert_eq!(resp.body, b"ld");
                assert_eq!(resp.header("content-range"), Some("bytes 1-2/4"));
            }
            (true, true, true) => assert_status(pass, r, resp, 416),
            _ => {
                assert_status(pass, r, resp, 200);
                assert_eq!(resp.body, b"old\n");
            }
        }
    });
}

// ---------------------------------------------------------------------------
// Through the library

#[test]
fn files_are_served_with_types_validators_and_accept_ranges() {
    let d = docroot("sf-files");
    check_files(library(&d, StaticOptions::default()).addr);
}

#[test]
fn twenty_plus_traversal_vectors_never_leak_a_byte_from_outside_the_root() {
    let d = docroot("sf-traversal");
    check_traversal(library(&d, StaticOptions::default()).addr);
}

#[test]
fn directories_redirect_with_the_query_and_serve_their_index() {
    let d = docroot("sf-dirs");
    check_directories(library(&d, StaticOptions::default()).addr);
}

#[test]
fn redirect_location_is_built_from_the_resolved_path_not_the_request() {
    let d = docroot("sf-redirect");
    std::fs::create_dir_all(d.root.join("evil.example")).unwrap();
    std::fs::create_dir_all(d.root.join("a b")).unwrap();
    let srv = library(&d, StaticOptions::default());
    let reqs = [
        Req::get("//evil.example"),
        Req::get("/a%20b"),
        Req::get("/a/../evil.example?q=%2F"),
    ];
    each_way(srv.addr, &reqs, |pass, r, resp| {
        assert_status(pass, r, resp, 301);
        let want = match r.target.as_str() {
            "/a%20b" => "/a%20b/",
            "/a/../evil.example?q=%2F" => "/evil.example/?q=%2F",
            _ => "/evil.example/",
        };
        assert_eq!(resp.header("location"), Some(want), "{pass}");
    });
}

#[test]
fn byte_ranges_single_suffix_open_clamped_416_and_ignored() {
    let d = docroot("sf-ranges");
    check_ranges(library(&d, StaticOptions::default()).addr);
}

#[test]
fn multiple_ranges_are_multipart_byteranges_up_to_the_cap() {
    let d = docroot("sf-multipart");
    check_multipart(library(&d, StaticOptions::default()).addr);
}

#[test]
fn multipart_body_over_its_size_cap_gets_the_whole_file() {
    let d = docroot("sf-multipart-cap");
    let mut o = StaticOptions::default();
    o.max_multipart_bytes = 1000;
    let srv = library(&d, o);
    let reqs = [
        Req::get("/data.bin").with("Range", "bytes=0-9,20-29"),
        Req::get("/data.bin").with("Range", "bytes=0-999,2000-2999"),
    ];
    each_way(srv.addr, &reqs, |pass, r, resp| {
        if r.headers[0].1 == "bytes=0-9,20-29" {
            assert_status(pass, r, resp, 206);
        } else {
            assert_status(pass, r, resp, 200);
            assert!(resp.body == data());
        }
    });
}

#[test]
fn ranges_can_be_turned_off() {
    let d = docroot("sf-noranges");
    let mut o = StaticOptions::default();
    o.max_ranges = 0;
    let srv = library(&d, o);
    each_way(
        srv.addr,
        &[Req::get("/data.bin").with("Range", "bytes=0-1")],
        |pass, r, resp| {
            assert_status(pass, r, resp, 200);
            assert_eq!(resp.header("accept-ranges"), Some("none"));
        },
    );
}

#[test]
fn not_modified_304_and_precondition_failed_412_each_way() {
    let d = docroot("sf-cond");
    check_conditionals(library(&d, StaticOptions::default()).addr);
}

#[test]
fn if_range_fresh_gets_the_range_and_stale_gets_the_whole_file() {
    let d = docroot("sf-ifrange");
    check_if_range(library(&d, StaticOptions::default()).addr);
}

#[test]
fn etag_changes_when_the_file_changes() {
    let d = docroot("sf-etag");
    let srv = library(&d, StaticOptions::default());
    let before = Req::get("/a/b.txt").once(srv.addr);
    let etag = before.header("etag").unwrap().to_string();
    // Same size, new content and mtime (sub-second precision tells them apart).
    let p = d.write("a/b.txt", b"c\n");
    File::options()
        .write(true)
        .open(&p)
        .and_then(|f| f.set_modified(SystemTime::now() + Duration::from_millis(1)))
        .unwrap();
    let r = Req::get("/a/b.txt")
        .with("If-None-Match", &etag)
        .once(srv.addr);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"c\n");
    assert_ne!(r.header("etag"), Some(etag.as_str()));
}

#[test]
fn dotfiles_are_hidden_unless_allowed() {
    let d = docroot("sf-dotfiles");
    let srv = library(&d, StaticOptions::default());
    for t in ["/.hidden", "/.dir/x.txt", "/.dir/"] {
        assert_eq!(Req::get(t).once(srv.addr).status, 404, "{t}");
    }
    let mut o = StaticOptions::default();
    o.dotfiles = true;
    let srv = library(&d, o);
    let reqs = [Req::get("/.hidden"), Req::get("/.dir/x.txt")];
    each_way(srv.addr, &reqs, |pass, r, resp| {
        assert_status(pass, r, resp, 200);
        assert!(resp.body.starts_with(b"hidden"));
    });
    // Still never outside the root.
    assert_eq!(Req::get("/../secret.txt").once(srv.addr).status, 400);
}

#[test]
fn index_files_are_tried_in_the_configured_order() {
    let d = docroot("sf-index");
    d.write("i/default.txt", b"default\n");
    d.write("j/home.htm", b"home\n");
    d.write("j/default.txt", b"not me\n");
    d.write("k/home.htm/inner", b"a directory named like an index\n");
    d.write("k/default.txt", b"k default\n");
    let mut o = StaticOptions::default();
    o.index = vec!["home.htm".into(), "default.txt".into()];
    let srv = library(&d, o);
    let reqs = [
        Req::get("/i/"),
        Req::get("/j/"),
        Req::get("/k/"),
        Req::get("/a/"),
    ];
    each_way(srv.addr, &reqs, |pass, r, resp| match r.target.as_str() {
        "/i/" => {
            assert_eq!(resp.body, b"default\n");
            assert_eq!(
                resp.header("content-type"),
                Some("text/plain; charset=utf-8")
            );
        }
        "/j/" => {
            assert_eq!(resp.body, b"home\n");
            assert_eq!(
                resp.header("content-type"),
                Some("text/html; charset=utf-8")
            );
        }
        "/k/" => assert_eq!(resp.body, b"k default\n"),
        _ => assert_status(pass, r, resp, 404), // index.html is no longer an index
    });
    let mut o = StaticOptions::default();
    o.index = vec!["../x".into()];
    assert!(StaticFiles::with_options(&d.root, o).is_err());
}

#[test]
fn listing_with_awkward_names_is_sorted_escaped_and_its_links_round_trip() {
    let d = docroot("sf-listing");
    let names: [&[u8]; 8] = [
        b"a b.txt",
        b"100%.txt",
        b"<script>alert(1)<script>.txt",
        "\u{fc}n\u{ee}c\u{f8}d\u{e9} \u{65e5}\u{672c}.txt".as_bytes(),
        b"q?x#y&z=\"'.txt",
        b"colon:x.txt",
        b"plus+sign.txt",
        b"bytes\xfe\xff.bin",
    ];
    let dir = d.root.join("awkward");
    std::fs::create_dir_all(dir.join("sub dir")).unwrap();
    std::fs::write(dir.join(".secret"), b"no").unwrap();
    symlink("../../secret.txt", dir.join("escape")).unwrap();
    symlink("../a/b.txt", dir.join("inside")).unwrap();
    for (i, n) in names.iter().enumerate() {
        std::fs::write(dir.join(std::ffi::OsStr::from_bytes(n)), vec![b'x'; i + 1]).unwrap();
    }
    let mut o = StaticOptions::default();
    o.list = true;
    let srv = library(&d, o);
    let page_req = [Req::get("/awkward/"), Req::head("/awkward/")];
    each_way(srv.addr, &page_req, |pass, r, resp| {
        assert_status(pass, r, resp, 200);
        assert_eq!(
            resp.header("content-type"),
            Some("text/html; charset=utf-8")
        );
    });
    let page = Req::get("/awkward/").once(srv.addr);
    let html = String::from_utf8(page.body.clone()).expect("the page is UTF-8");
    assert!(!html.contains("<script>"), "unescaped name:\n{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;script&gt;.txt"),
        "{html}"
    );
    assert!(
        !html.contains(".secret") && !html.contains("escape"),
        "hidden entries listed:\n{html}"
    );
    let hrefs: Vec<&str> = html
        .split("href=\"")
        .skip(1)
        .map(|s| &s[..s.find('"').unwrap()])
        .collect();
    // Parent, the directory first, then the files sorted by name.
    assert_eq!(hrefs[0], "../");
    assert_eq!(hrefs[1], "sub%20dir/");
    let mut sorted: Vec<&[u8]> = names.to_vec();
    sorted.push(b"inside");
    sorted.sort();
    assert_eq!(hrefs.len(), 2 + sorted.len(), "{hrefs:?}");
    // Every link leads back to its file, over one keep-alive connection.
    let mut s = connect(srv.addr);
    for (href, name) in hrefs[2..].iter().zip(&sorted) {
        assert!(
            href.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)),
            "{href}"
        );
        let r = Req::get(&format!("/awkward/{href}")).send(&mut s);
        assert_eq!(
            r.status,
            200,
            "{href} for {:?}",
            String::from_utf8_lossy(name)
        );
        if *name != b"inside" {
            let i = names.iter().position(|n| n == name).unwrap();
            assert_eq!(r.body, vec![b'x'; i + 1], "{href}");
        }
    }
    let r = Req::get("/awkward/sub%20dir/").send(&mut s);
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains("href=\"../\""));
    // Sizes and dates are shown.
    assert!(html.contains("<td>8</td>"), "{html}");
    assert!(html.contains(" GMT</td>"), "{html}");
    // With an index file there is no listing; without the option, 404.
    assert_eq!(Req::get("/a/").once(srv.addr).body, b"<h1>a</h1>\n");
    let plain = library(&d, StaticOptions::default());
    assert_eq!(Req::get("/awkward/").once(plain.addr).status, 404);
}

#[test]
fn mime_overrides_add_and_replace_types() {
    let d = docroot("sf-mime");
    d.write("notes.md", b"# hi\n");
    d.write("x.foo", b"foo");
    let mut o = StaticOptions::default();
    o.mime = vec![
        ("md".into(), "text/x-markdown".into()),
        (".FOO".into(), "application/x-foo".into()),
        ("css".into(), "text/css; charset=iso-8859-1".into()),
    ];
    let srv = library(&d, o);
    let reqs = [
        Req::get("/notes.md"),
        Req::get("/x.foo"),
        Req::get("/style.css"),
        Req::head("/blob"),
    ];
    each_way(srv.addr, &reqs, |pass, r, resp| {
        let want = match r.target.as_str() {
            "/notes.md" => "text/x-markdown; charset=utf-8",
            "/x.foo" => "application/x-foo",
            "/style.css" => "text/css; charset=iso-8859-1",
            _ => "application/octet-stream",
        };
        assert_eq!(resp.header("content-type"), Some(want), "{pass}");
    });
}

#[test]
fn cache_control_is_sent_with_files_and_304s() {
    let d = docroot("sf-cache");
    let mut o = StaticOptions::default();
    o.cache_control = Some("public, max-age=60".into());
    let srv = library(&d, o);
    let etag = Req::get("/a/b.txt")
        .once(srv.addr)
        .header("etag")
        .unwrap()
        .to_string();
    let reqs = [
        Req::get("/a/b.txt"),
        Req::get("/a/b.txt").with("Range", "bytes=0-0"),
        Req::get("/a/b.txt").with("If-None-Match", &etag),
    ];
    each_way(srv.addr, &reqs, |pass, _r, resp| {
        assert_eq!(
            resp.header("cache-control"),
            Some("public, max-age=60"),
            "{pass}"
        );
    });
    assert_eq!(
        Req::get("/a/b.txt")
            .once(library(&d, StaticOptions::default()).addr)
            .header("cache-control"),
        None
    );
    let mut o = StaticOptions::default();
    o.cache_control = Some("x\r\nSet-Cookie: y".into());
    assert!(StaticFiles::with_options(&d.root, o).is_err());
}

#[test]
fn precompressed_siblings_follow_accept_encoding() {
    let d = docroot("sf-precompressed");
    d.write("app.js.gz", b"GZIP-BYTES");
    d.write("app.js.br", b"BROTLI-BYTES");
    d.write("only-gz.css", b"plain css\n");
    d.write("only-gz.css.gz", b"GZ-CSS");
    symlink("../../secret.txt", d.root.join("a/b.txt.gz")).unwrap();
    let mut o = StaticOptions::default();
    o.precompressed = true;
    let srv = library(&d, o);
    let js = |ae: Option<&str>| match ae {
        Some(v) => Req::get("/app.js").with("Accept-Encoding", v),
        None => Req::get("/app.js"),
    };
    let reqs = [
        js(None),
        js(Some("gzip, deflate, br")),
        js(Some("gzip")),
        js(Some("br;q=0.5, gzip")),
        js(Some("br;q=0, gzip;q=0")),
        js(Some("identity")),
        js(Some("*")),
        Req::get("/only-gz.css").with("Accept-Encoding", "br, gzip"),
        Req::get("/only-gz.css").with("Accept-Encoding", "br"),
        Req::get("/a/b.txt").with("Accept-Encoding", "gzip"),
        Req::get("/app.js")
            .with("Accept-Encoding", "gzip")
            .with("Range", "bytes=0-3"),
        Req::head("/app.js").with("Accept-Encoding", "br"),
    ];
    each_way(srv.addr, &reqs, |pass, r, resp| {
        let ae = r
            .headers
            .iter()
            .find(|h| h.0 == "Accept-Encoding")
            .map(|h| h.1.as_str());
        let ranged = r.headers.iter().any(|h| h.0 == "Range");
        let (body, coding): (&[u8], Option<&str>) = match (r.target.as_str(), ae) {
            ("/app.js", Some("gzip, deflate, br" | "*")) => (b"BROTLI-BYTES", Some("br")),
            ("/app.js", Some("br")) => (b"", Some("br")), // HEAD
            ("/app.js", Some("gzip" | "br;q=0.5, gzip")) => (b"GZIP-BYTES", Some("gzip")),
            ("/app.js", _) => (b"1;\n", None),
            ("/only-gz.css", Some("br, gzip")) => (b"GZ-CSS", Some("gzip")),
            ("/only-gz.css", _) => (b"plain css\n", None),
            _ => (b"b\n", None), // the .gz symlink leads outside: not used
        };
        assert_eq!(
            resp.header("content-encoding"),
            coding,
            "{pass}: {:?}",
            r.headers
        );
        assert_eq!(resp.header("vary"), Some("Accept-Encoding"), "{pass}");
        if ranged {
            assert_status(pass, r, resp, 206);
            assert_eq!(resp.body, b"GZIP");
            assert_eq!(resp.header("content-range"), Some("bytes 0-3/10"));
        } else {
            assert_status(pass, r, resp, 200);
            assert_eq!(resp.body, body, "{pass}: {:?}", r.headers);
        }
        if r.target == "/app.js" {
            assert_eq!(
                resp.header("content-type"),
                Some("text/javascript; charset=utf-8")
            );
        }
    });
    // Each variant has its own validators: a 304 needs the variant's tag.
    let gz = js(Some("gzip")).once(srv.addr);
    let plain = js(None).once(srv.addr);
    assert_ne!(gz.header("etag"), plain.header("etag"));
    let tag = gz.header("etag").unwrap();
    assert_eq!(
        js(Some("gzip"))
            .with("If-None-Match", tag)
            .once(srv.addr)
            .status,
        304
    );
    assert_eq!(
        js(None).with("If-None-Match", tag).once(srv.addr).status,
        200
    );
}

// ---------------------------------------------------------------------------
// Transfers

const GIB: u64 = 1 << 30;
const HUGE: u64 = 5 * GIB;

/// A sparse 5 GiB file with 16 marker bytes at 0, across 2^31, across 2^32
/// and at the end; everything else reads as zeros. Costs no disk.
fn sparse_5gib(d: &Docroot) -> Vec<(u64, Vec<u8>)> {
    let f = File::create(d.root.join("huge.bin")).unwrap();
    f.set_len(HUGE).unwrap();
    let markers: Vec<(u64, Vec<u8>)> = [0, (1u64 << 31) - 8, (1u64 << 32) - 8, HUGE - 16]
        .iter()
        .enumerate()
        .map(|(i, &at)| (at, pattern(16, 100 + i as u64)))
        .collect();
    for (at, m) in &markers {
        f.write_all_at(m, *at).unwrap();
    }
    markers
}

/// What bytes `first..=last` of the sparse file hold.
fn sparse_bytes(markers: &[(u64, Vec<u8>)], first: u64, last: u64) -> Vec<u8> {
    let mut out = vec![0u8; (last - first + 1) as usize];
    for (at, m) in markers {
        for (i, &b) in m.iter().enumerate() {
            let pos = at + i as u64;
            if (first..=last).contains(&pos) {
                out[(pos - first) as usize] = b;
            }
        }
    }
    out
}

fn check_sparse(addr: SocketAddr, markers: &[(u64, Vec<u8>)]) {
    let r = Req::head("/huge.bin").once(addr);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some(HUGE.to_string().as_str()));
    let etag = r.header("etag").unwrap().to_string();
    let spans: Vec<(u64, u64)> = vec![
        ((1 << 31) - 8, (1 << 31) + 7),
        ((1 << 32) - 8, (1 << 32) + 7),
        ((1 << 31) - 1, 1 << 31),
        ((1 << 32) - 1, 1 << 32),
        ((1 << 32) - 100_000, (1 << 32) + 100_000),
        ((1 << 31) - 70_000, (1 << 31) + 5),
        (HUGE - 16, HUGE - 1),
    ];
    let mut reqs: Vec<Req> = spans
        .iter()
        .map(|(a, b)| Req::get("/huge.bin").with("Range", &format!("bytes={a}-{b}")))
        .collect();
    reqs.push(Req::get("/huge.bin").with("Range", "bytes=-16"));
    reqs.push(Req::get("/huge.bin").with("Range", &format!("bytes={}-", HUGE - 16)));
    reqs.push(Req::get("/huge.bin").with("Range", &format!("bytes={}-", HUGE)));
    reqs.push(
        Req::get("/huge.bin")
            .with("Range", "bytes=0-15")
            .with("If-Range", &etag),
    );
    let multi = format!(
        "bytes={}-{},{}-{}",
        (1u64 << 31) - 8,
        (1u64 << 31) + 7,
        (1u64 << 32) - 8,
        (1u64 << 32) + 7
    );
    reqs.push(Req::get("/huge.bin").with("Range", &multi));
    each_way(addr, &reqs, |pass, r, resp| {
        let range = r.headers[0].1.as_str();
        if range == multi {
            assert_status(pass, r, resp, 206);
            let parts = parse_multipart(resp);
            assert_eq!(parts.len(), 2);
            assert_eq!(parts[0].1, markers[1].1, "{pass}: across 2^31");
            assert_eq!(parts[1].1, markers[2].1, "{pass}: across 2^32");
            assert_eq!(
                parts[1].0,
                format!("bytes {}-{}/{HUGE}", (1u64 << 32) - 8, (1u64 << 32) + 7)
            );
            return;
        }
        let (a, b) = match range {
            "bytes=-16" => (HUGE - 16, HUGE - 1),
            "bytes=0-15" => (0, 15),
            _ => {
                let spec = range.strip_prefix("bytes=").unwrap();
                let (a, b) = spec.split_once('-').unwrap();
                let a: u64 = a.parse().unwrap();
                if a >= HUGE {
                    assert_status(pass, r, resp, 416);
                    assert_eq!(
                        resp.header("content-range"),
                        Some(format!("bytes */{HUGE}").as_str())
                    );
                    return;
                }
                (
                    a,
                    if b.is_empty() {
                        HUGE - 1
                    } else {
                        b.parse().unwrap()
                    },
                )
            }
        };
        assert_status(pass, r, resp, 206);
        assert_eq!(
            resp.header("content-range"),
            Some(format!("bytes {a}-{b}/{HUGE}").as_str()),
            "{pass}"
        );
        assert!(
            resp.body == sparse_bytes(markers, a, b),
            "{pass}: {range}: wrong bytes"
        );
    });
}

#[test]
fn sparse_5_gib_file_ranges_across_2_31_and_2_32() {
    let d = docroot("sf-sparse");
    let markers = sparse_5gib(&d);
    check_sparse(library(&d, StaticOptions::default()).addr, &markers);
}

/// Reads from `s` until EOF or reset, at most `limit` bytes and `time`.
fn read_to_close(s: &mut std::net::TcpStream, time: Duration) -> (usize, Duration) {
    let start = Instant::now();
    s.set_read_timeout(Some(time)).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0usize;
    for _ in 0..1_000_000 {
        assert!(
            start.elapsed() < time,
            "no close within {time:?} ({total} bytes read)"
        );
        match s.read(&mut buf) {
            Ok(0) => return (total, start.elapsed()),
            Ok(n) => total += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (total, start.elapsed()),
            Err(e) => panic!("reading until close: {e} ({total} bytes read)"),
        }
    }
    panic!("too many reads");
}

/// Reads exactly `n` bytes.
fn read_exact(s: &mut std::net::TcpStream, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    s.read_exact(&mut v).expect("read_exact");
    v
}

fn check_truncation(addr: SocketAddr, d: &Docroot) {
    const BIG: u64 = 256 << 20;
    let path = d.root.join("shrinking.bin");
    let f = File::create(&path).unwrap();
    f.set_len(BIG).unwrap();
    f.write_all_at(b"START", 0).unwrap();
    let mut s = connect(addr);
    s.write_all(&Req::get("/shrinking.bin").bytes()).unwrap();
    let head = read_response_to(&mut s, true);
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(BIG.to_string().as_str())
    );
    assert_eq!(read_exact(&mut s, 5), b"START");
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    let (got, took) = read_to_close(&mut s, Duration::from_secs(5));
    assert!(
        took < Duration::from_secs(1),
        "the server took {took:?} to close after the truncation"
    );
    assert!(
        (got as u64) < BIG - 5,
        "a truncated file cannot be sent whole"
    );
    // The next client is served.
    let r = Req::get("/a/b.txt").once(addr);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"b\n");
}

#[test]
fn file_truncated_mid_transfer_closes_within_a_second_and_the_next_client_is_served() {
    let d = docroot("sf-truncate");
    check_truncation(library(&d, StaticOptions::default()).addr, &d);
}

#[test]
fn file_renamed_over_mid_transfer_keeps_serving_the_opened_inode() {
    const BIG: u64 = 32 << 20;
    let d = docroot("sf-rename");
    let path = d.root.join("moving.bin");
    let f = File::create(&path).unwrap();
    f.set_len(BIG).unwrap();
    let marks: Vec<(u64, Vec<u8>)> = (0..8u64)
        .map(|i| (i * (BIG / 8) + 7, pattern(16, 200 + i)))
        .collect();
    for (at, m) in &marks {
        f.write_all_at(m, *at).unwrap();
    }
    drop(f);
    let srv = library(&d, StaticOptions::default());
    let mut s = connect(srv.addr);
    s.write_all(&Req::get("/moving.bin").bytes()).unwrap();
    let head = read_response_to(&mut s, true);
    assert_eq!(
        head.header("content-length"),
        Some(BIG.to_string().as_str())
    );
    let first = read_exact(&mut s, 4096);
    let replacement = d.write("moving.new", b"new contents\n");
    std::fs::rename(&replacement, &path).unwrap();
    let mut body = first;
    body.extend(read_exact(&mut s, BIG as usize - 4096));
    for (at, m) in &marks {
        let at = *at as usize;
        assert_eq!(&body[at..at + 16], &m[..], "marker at {at}");
    }
    // The same keep-alive connection now gets the new file.
    let r = Req::get("/moving.bin").send(&mut s);
    assert_eq!(r.body, b"new contents\n");
}

#[test]
fn slow_reader_does_not_block_other_clients() {
    let d = docroot("sf-slow");
    let f = File::create(d.root.join("big.bin")).unwrap();
    f.set_len(128 << 20).unwrap();
    let srv = library(&d, StaticOptions::default());
    // Two clients ask for 128 MiB and read nothing.
    let mut stuck = Vec::new();
    for _ in 0..2 {
        let mut s = connect(srv.addr);
        s.write_all(&Req::get("/big.bin").bytes()).unwrap();
        stuck.push(s);
    }
    let start = Instant::now();
    let mut s = connect(srv.addr);
    for _ in 0..50 {
        let r = Req::get("/data.bin")
            .with("Range", "bytes=0-9")
            .send(&mut s);
        assert_eq!(r.status, 206);
    }
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "50 requests beside two stalled readers took {:?}",
        start.elapsed()
    );
    // The stalled readers still get their heads.
    for s in &mut stuck {
        assert_eq!(read_response_to(s, true).status, 200);
    }
}

// ---------------------------------------------------------------------------
// Through the `keel` binary (default flags: none of these need an option)

#[test]
fn keel_binary_serves_files_ranges_conditionals_and_refuses_traversal() {
    let d = docroot("sf-keel");
    let keel = binary(&d);
    let addr = keel.addr();
    check_files(addr);
    check_traversal(addr);
    check_directories(addr);
    check_ranges(addr);
    check_multipart(addr);
    check_conditionals(addr);
    check_if_range(addr);
}

#[test]
fn keel_binary_sparse_5_gib_ranges_and_truncation_is_logged() {
    let d = docroot("sf-keel-sparse");
    let markers = sparse_5gib(&d);
    let keel = KeelProcess::start(&d.root, IpAddr::V4(Ipv4Addr::LOCALHOST), "error");
    check_sparse(keel.addr(), &markers);
    check_truncation(keel.addr(), &d);
    let log = keel.stop();
    assert!(
        log.contains("short"),
        "the truncation is not logged:\n{log}"
    );
}

/// Regression: a FIFO in the root with no writer once blocked `open` and so
/// the whole single-threaded server. Now it is opened non-blocking, refused
/// as not a regular file, and everyone else is still served.
#[test]
fn a_fifo_in_the_root_cannot_block_the_server() {
    let d = docroot("fifo");
    let path = std::ffi::CString::new(d.root.join("pipe").as_os_str().as_bytes()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path and a plain mode.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o644) }, 0, "mkfifo");
    let srv = library(&d, StaticOptions::default());
    let mut s = srv.connect();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(b"GET /pipe HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let r = util::read_response(&mut s);
    assert!(matches!(r.status, 403 | 404), "status {}", r.status);
    let r = util::exchange(srv.addr, b"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 200);
}
