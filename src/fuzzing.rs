//! Entry points for the fuzz harness in `tests/fuzz/` (the `fuzzing` cargo
//! feature; hidden and unstable, not part of the API). Each takes arbitrary
//! bytes, runs one pure surface of the server on them, and panics only when
//! an invariant breaks: a panic is a finding.

use crate::config::Config;
use crate::conn::script::{self, Rig, Rng};
use crate::parse::{self, Dechunker, Framing};
use crate::request::{Request, Version};

fn config(small: bool) -> Config {
    if small {
        script::small_config()
    } else {
        Config::default()
    }
}

/// The head parser and framing rules. Byte 0 picks the limits and a cut
/// point for the incremental scan; the rest is the input.
pub fn head(data: &[u8]) {
    let Some((&ctl, input)) = data.split_first() else {
        return;
    };
    let config = config(ctl & 1 == 1);
    let skip = parse::leading_empty_lines(input);
    let buf = &input[skip..];
    let end = parse::find_head_end(buf, 0);
    // Scanning on from where an earlier, shorter scan stopped finds the same end.
    let cut = usize::from(ctl >> 1) * buf.len() / 128;
    if parse::find_head_end(&buf[..cut], 0).is_none() {
        assert_eq!(parse::find_head_end(buf, cut), end, "cut {cut}");
    }
    let _ = parse::raw_accepts_json(buf);
    let Some(end) = end else {
        let _ = parse::oversized_head(buf, &config);
        return;
    };
    let head = &buf[..end];
    let mut storage = [httparse::EMPTY_HEADER; 16];
    let Ok(h) = parse::parse_head(head, &mut storage, &config) else {
        return;
    };
    // What was accepted follows the grammar.
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line = &head[..line_end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let want = format!("{} {} {}", h.method, h.target, h.version);
    assert_eq!(
        line,
        want.as_bytes(),
        "the request line is exactly three parts"
    );
    assert!(h.target.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    assert!(h.target.len() <= config.max_target_bytes);
    let hosts: Vec<&[u8]> = h
        .headers
        .iter()
        .filter(|f| f.name.eq_ignore_ascii_case("host"))
        .map(|f| f.value)
        .collect();
    if h.version == Version::Http11 {
        assert_eq!(hosts.len(), 1);
    }
    for v in hosts {
        assert!(parse::valid_host(v.trim_ascii()), "{v:?}");
    }
    let has = |name: &str| h.headers.iter().any(|f| f.name.eq_ignore_ascii_case(name));
    match h.framing {
        Framing::Chunked => {
            assert!(has("transfer-encoding") && !has("content-length"));
            assert_eq!(h.version, Version::Http11);
        }
        Framing::Length(n) => {
            assert!(has("content-length") && !has("transfer-encoding"));
            assert!(n > 0 && n <= config.max_body_bytes);
        }
        Framing::None => assert!(!has("transfer-encoding")),
    }
    match h.target.as_bytes() {
        [b'/', ..] => assert!(h.authority.is_none()),
        b"*" => assert_eq!(h.method, "OPTIONS"),
        _ if h.method == "CONNECT" => assert!(h.authority.is_none()),
        _ => assert!(h.authority.is_some_and(|a| !a.is_empty())),
    }
    let req = Request {
        method: h.method,
        target: h.target,
        version: h.version,
        headers: h.headers,
        body: &[],
        peer: None,
        upload: None,
    };
    let path = req.path();
    if h.method != "CONNECT" && h.target != "*" {
        assert!(path.starts_with('/'), "{:?} -> path {path:?}", h.target);
    }
    assert_eq!(
        req.host().is_some(),
        h.version == Version::Http11 || has("host") || h.authority.is_some()
    );
    if let Some(a) = h.authority {
        assert_eq!(req.host(), Some(a), "the absolute-form authority wins");
    }
    // The body step parses the same head again and relies on the same answer.
    let (framing, keep_alive) = (h.framing, h.keep_alive);
    let mut again = [httparse::EMPTY_HEADER; 16];
    let h2 = parse::parse_head(head, &mut again, &config).expect("a second parse");
    assert_eq!((h2.framing, h2.keep_alive), (framing, keep_alive));
}

/// The chunked decoder: the input decoded at once and in random pieces
/// (bytes 0..8 seed the cuts, byte 8 picks the body cap) must agree.
pub fn chunked(data: &[u8]) {
    if data.len() < 9 {
        return;
    }
    let seed = u64::from_le_bytes(data[..8].try_into().unwrap_or([0; 8]));
    let max: u64 = if data[8] & 1 == 1 { 64 } else { 1 << 20 };
    let input = &data[9..];
    let whole = dechunk(input, &mut |_| usize::MAX, max);
    let mut rng = Rng::new(seed);
    let pieces = dechunk(
        input,
        &mut |left| match rng.below(3) {
            0 => 1,
            1 => 1 + rng.below(8),
            _ => 1 + rng.below(left.max(1)),
        },
        max,
    );
    match (&whole, &pieces) {
        (Ok((b1, r1, d1)), Ok((b2, r2, d2))) => {
            assert_eq!(d1, d2, "done");
            assert_eq!(b1, b2, "body");
            if *d1 {
                // Pieces stop at the end of the body; whole keeps all.
                assert!(r1.starts_with(r2), "rest");
            }
            assert!(b1.len() as u64 <= max);
        }
        (Err(_), Err(_)) => {}
        _ => panic!("whole {whole:?} but in pieces {pieces:?}"),
    }
}

type Dechunked = Result<(Vec<u8>, Vec<u8>, bool), String>;

/// Feeds `input` in pieces (`next(left)` picks each size) as a connection
/// does: decoded prefix, then raw bytes, grown by each read.
fn dechunk(input: &[u8], next: &mut dyn FnMut(usize) -> usize, max: u64) -> Dechunked {
    let mut d = Dechunker::new();
    let mut buf = Vec::new();
    let mut rest = input;
    loop {
        let n = next(rest.len()).min(rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        let before = buf.len();
        let len = d.decode(&mut buf, max).map_err(|r| r.detail.to_string())?;
        assert!(
            len <= before && d.decoded() <= len,
            "the region only shrinks"
        );
        buf.truncate(len);
        if d.is_done() || rest.is_empty() {
            break;
        }
    }
    let tail = buf.split_off(d.decoded());
    Ok((buf, tail, d.is_done()))
}

/// `Range` parsing against a file length. Bytes 0..8: the length (small
/// when byte 0's top bit is set), byte 8: the most ranges; the rest: the value.
pub fn range(data: &[u8]) {
    if data.len() < 9 {
        return;
    }
    let raw = u64::from_le_bytes(data[..8].try_into().unwrap_or([0; 8]));
    let len = if data[0] & 0x80 != 0 { raw % 1000 } else { raw };
    let max = usize::from(data[8] % 20);
    crate::static_files::fuzz::ranges(&data[9..], len, max);
}

/// Conditional headers and HTTP dates. Bytes 0..8: the file's
/// modification time, byte 8: flags; the rest: header lines.
pub fn conditional(data: &[u8]) {
    if data.len() < 9 {
        return;
    }
    let modified = i64::from_le_bytes(data[..8].try_into().unwrap_or([0; 8])) % 300_000_000_000;
    let strong = data[8] & 1 == 1;
    let now = 1_700_000_000 + i64::from(data[8]);
    crate::static_files::fuzz::conditionals(&data[9..], "\"1-2-3.4\"", modified, strong, now);
}

/// Request targets: through the grammar as a request line, then the path
/// the handler sees through percent-decoding and dot segments; the result
/// never leaves the root. Byte 0: dotfiles on or off, method; the rest: the target.
pub fn target(data: &[u8]) {
    let Some((&ctl, raw)) = data.split_first() else {
        return;
    };
    crate::static_files::fuzz::encode_name(raw);
    let Ok(target) = std::str::from_utf8(raw) else {
        return;
    };
    let method = ["GET", "HEAD", "OPTIONS", "CONNECT"][usize::from(ctl >> 1) % 4];
    let head = format!("{method} {target} HTTP/1.1\r\nHost: h\r\n\r\n");
    let config = Config::default();
    let mut storage = [httparse::EMPTY_HEADER; 4];
    let Ok(h) = parse::parse_head(head.as_bytes(), &mut storage, &config) else {
        // Refused by the engine; the policy still must not be fooled.
        crate::static_files::fuzz::resolve_path(target, ctl & 1 == 1);
        return;
    };
    let req = Request {
        method: h.method,
        target: h.target,
        version: h.version,
        headers: h.headers,
        body: &[],
        peer: None,
        upload: None,
    };
    let path = req.path();
    assert!(!path.contains('?'));
    crate::static_files::fuzz::resolve_path(path, ctl & 1 == 1);
}

/// A whole connection through the scripted transport. Bytes 0..8 seed the
/// cuts, `WouldBlock`s and short writes; byte 8: limits and how the client
/// ends; the rest: what the client sends.
pub fn conn(data: &[u8]) {
    if data.len() < 9 {
        return;
    }
    let seed = u64::from_le_bytes(data[..8].try_into().unwrap_or([0; 8]));
    let flags = data[8];
    let mut rng = Rng::new(seed);
    let (reads, writes) = script::fragment(&data[9..], &mut rng);
    let mut rig = Rig::new(config(flags & 1 == 1));
    let outcome = rig.run(reads, writes, flags & 2 == 2);
    if let Err(why) = script::check(&outcome) {
        panic!("{why}: {outcome:?}");
    }
    if let Err(why) = script::check_fresh_connection_served(&mut rig) {
        panic!("{why}");
    }
}
