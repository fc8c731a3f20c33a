//! Pipelining: a thousand requests sent back to back in arbitrary splits,
//! with HEADs, 404s, a large file and a `Connection: close` among them, are
//! answered in order, byte-exact, and nothing after the close is answered.

mod util;

use std::io::Write;
use std::net::Shutdown;
use std::time::Duration;

use keelhttp::{Config, StaticFiles};
use util::{closed_within, connect, pattern, read_response_to, TempDir, TestServer};

enum Want {
    Get(&'static str, Vec<u8>),
    Head(&'static str, usize),
    Missing,
}

#[test]
fn a_thousand_pipelined_requests_in_random_splits_are_answered_in_order_byte_exact() {
    let dir = TempDir::new("pipeline");
    let small = b"Hello, World!".to_vec();
    let one_k = pattern(1024, 1);
    let large = pattern(3 << 20, 2);
    dir.write("13.txt", &small);
    dir.write("1k.bin", &one_k);
    dir.write("large.bin", &large);
    let server = TestServer::start(Config::default(), StaticFiles::new(dir.path()).unwrap());

    const CLOSE_AT: usize = 900;
    let mut raw = Vec::new();
    let mut wants = Vec::new();
    for i in 0..1000usize {
        let (line, want) = match i {
            500 => ("GET /large.bin", Want::Get("large.bin", large.clone())),
            _ if i % 53 == 7 => ("GET /missing.txt", Want::Missing),
            _ if i % 37 == 3 => ("HEAD /1k.bin", Want::Head("1k.bin", one_k.len())),
            _ if i % 2 == 0 => ("GET /13.txt", Want::Get("13.txt", small.clone())),
            _ => ("GET /1k.bin", Want::Get("1k.bin", one_k.clone())),
        };
        raw.extend_from_slice(line.as_bytes());
        raw.extend_from_slice(format!("?n={i} HTTP/1.1\r\nHost: t\r\n").as_bytes());
        if i == CLOSE_AT - 1 {
            raw.extend_from_slice(b"Connection: close\r\n");
        }
        raw.extend_from_slice(b"\r\n");
        wants.push(want);
    }

    let mut s = connect(server.addr);
    let mut writer = s.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        // Arbitrary splits, from one byte to a few kilobytes (a seeded LCG).
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut at = 0;
        let mut writes = 0;
        while at < raw.len() && writes < 100_000 {
            writes += 1;
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            let n = 1 + (x >> 33) as usize % 3000;
            let end = (at + n).min(raw.len());
            // The server closes after the `Connection: close` request: the
            // rest may be refused (EPIPE, ECONNRESET), which is expected.
            if writer.write_all(&raw[at..end]).is_err() {
                break;
            }
            at = end;
        }
    });

    for (i, want) in wants.iter().take(CLOSE_AT).enumerate() {
        let head = matches!(want, Want::Head(..));
        let r = read_response_to(&mut s, head);
        match want {
            Want::Get(name, body) => {
                assert_eq!(r.status, 200, "request {i} ({name})");
                assert!(r.body == *body, "request {i}: {name} not byte-exact");
                assert!(r.header("etag").is_some(), "request {i}");
            }
            Want::Head(name, len) => {
                assert_eq!(r.status, 200, "request {i} ({name})");
                assert_eq!(r.header("content-length"), Some(len.to_string().as_str()));
                assert!(r.body.is_empty());
            }
            Want::Missing => assert_eq!(r.status, 404, "request {i}"),
        }
        assert_eq!(
            r.closes(),
            i == CLOSE_AT - 1,
            "request {i}: Connection header"
        );
    }
    // Nothing after the close is answered.
    closed_within(&mut s, Duration::from_secs(10)).expect("closed after Connection: close");
    let _ = s.shutdown(Shutdown::Both);
    sender.join().unwrap();
}
