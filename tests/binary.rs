//! Tests of the real `keel` binary, run as a child process.
//!
//! std only: HTTP is spoken with `TcpStream` and literal bytes, every socket
//! has timeouts, every loop is bounded in count and time, every child is
//! killed (and reaped) by a guard, also when a test panics.

mod util;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use util::{
    connect, describe, pattern, read_response, request, run_keel, ChildStdout, Finished,
    KeelProcess, Resp, TempDir,
};

/// Runs `keel ARGS` to completion with `RUST_LOG=info`, capturing stdout or,
/// with `close_stdout`, closing its read end before the child can write.
fn run(args: &[&str], close_stdout: bool) -> Finished {
    let stdout = if close_stdout {
        ChildStdout::Closed
    } else {
        ChildStdout::Capture
    };
    run_keel(args, "info", stdout)
}

/// `keel DIR --addr 127.0.0.1 --port PORT` to completion; stdout discarded.
fn run_on_port(dir: &TempDir, port: &str, rust_log: &str) -> Finished {
    let dir = dir.path().to_str().unwrap();
    run_keel(
        &[dir, "--addr", "127.0.0.1", "--port", port],
        rust_log,
        ChildStdout::Null,
    )
}

/// One GET on a fresh connection.
fn get_once(addr: SocketAddr, target: &str) -> Resp {
    request(&mut connect(addr), "GET", target)
}

// ---------------------------------------------------------------------------
// The CLI

#[test]
fn help_and_version_exit_zero() {
    for flag in ["--help", "-h"] {
        let out = run(&[flag], false);
        assert_eq!(out.status.code(), Some(0), "keel {flag}: {}", out.stderr);
        assert!(out.stdout.contains("Usage"), "keel {flag}: {}", out.stdout);
    }
    for flag in ["--version", "-V"] {
        let out = run(&[flag], false);
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
        let out = run(&[flag], true);
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
        let out = run(args, false);
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
    let out = run(
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
    let out = run_on_port(&dir, &port, "off");
    assert_eq!(
        out.status.code(),
        Some(1),
        "RUST_LOG=off: {}",
        describe(out.status)
    );
    assert!(
        out.stderr.contains("in use"),
        "RUST_LOG=off stderr: {:?}",
        out.stderr
    );
    drop(held);
}

#[test]
fn missing_directory_exits_1() {
    let dir = TempDir::new("missing");
    let missing = dir.path().join("does-not-exist");
    let file = dir.write("plain.txt", b"x");
    for target in [&missing, &file] {
        let out = run(
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
    let big = pattern(1 << 20, 3);
    dir.write("index.html", index);
    dir.write("big.bin", &big);
    dir.write("subdir/inner.txt", b"inner file\n");
    dir.write("empty.txt", b"");
    let keel = KeelProcess::start(dir.path(), IpAddr::V4(Ipv4Addr::LOCALHOST), "warn");
    let mut c = keel.connect();

    let r = request(&mut c, "GET", "/");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, index);
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{:?}",
        r.headers
    );

    let r = request(&mut c, "GET", "/big.bin");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("1048576"));
    assert!(r.body == big, "the 1 MiB file is not byte-identical");

    let r = request(&mut c, "GET", "/subdir/inner.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"inner file\n");
    assert!(r
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/plain")));

    let r = request(&mut c, "GET", "/empty.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("0"));
    assert!(r.body.is_empty());

    let r = request(&mut c, "HEAD", "/big.bin");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("1048576"));
    // If any body bytes followed the HEAD response, the next status line
    // would not parse.
    let r = request(&mut c, "GET", "/subdir/inner.txt");
    assert_eq!(r.status, 200, "request after HEAD");
    assert_eq!(r.body, b"inner file\n");

    let r = request(&mut c, "GET", "/missing");
    assert_eq!(r.status, 404);
    assert!(!r.closes(), "404 closed the connection");

    c.write_all(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n")
        .expect("write request");
    let r = read_response(&mut c);
    assert_eq!(r.status, 405);
    let allow = r.header("allow").expect("405 without Allow").to_string();
    assert!(
        allow.contains("GET") && allow.contains("HEAD"),
        "Allow: {allow}"
    );
    assert!(!r.closes(), "405 closed the connection");

    let r = request(&mut c, "GET", "/subdir");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/subdir/"));

    // A directory with no index.html is not listed.
    let r = request(&mut c, "GET", "/subdir/");
    assert_eq!(r.status, 404);
    assert!(!r.closes());

    // Still the same connection, still working.
    let r = request(&mut c, "GET", "/index.html");
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
        let r = get_once(keel.addr(), target);
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
    let keel = KeelProcess::start(dir.path(), IpAddr::V4(Ipv4Addr::LOCALHOST), "warn");
    let mut c = keel.connect();
    let r = request(&mut c, "GET", "/secret.txt");
    assert_eq!(r.status, 403, "{:?}", String::from_utf8_lossy(&r.body));
    assert!(!r.body.starts_with(b"secret"));
    // The server carries on, on the same connection.
    let r = request(&mut c, "GET", "/");
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
    let keel = KeelProcess::start(dir.path(), ip, "warn");
    assert!(keel.addr().is_ipv6());
    let r = request(&mut keel.connect(), "GET", "/");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"<p>six</p>\n");
    keel.stop();
}

#[test]
fn access_log_line_per_request() {
    let dir = TempDir::new("log");
    dir.write("index.html", b"hi\n");
    let keel = KeelProcess::start(dir.path(), IpAddr::V4(Ipv4Addr::LOCALHOST), "info");
    let mut c = keel.connect();
    let expected = [("/", 200), ("/nope", 404), ("/index.html", 200)];
    for (target, status) in expected {
        assert_eq!(
            request(&mut c, "GET", target).status,
            status,
            "GET {target}"
        );
    }
    // Close our side, then stop keel gracefully: the access log is buffered
    // and written once per loop turn, so a SIGKILL could lose the last turn.
    let _ = c.shutdown(Shutdown::Both);
    let mut keel = keel;
    keel.signal(libc::SIGTERM);
    assert!(
        keel.wait_exit(Duration::from_secs(10)).is_some(),
        "keel did not stop"
    );
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
        let out = run_on_port(&dir, &port, filter);
        assert_eq!(out.status.code(), Some(1), "RUST_LOG={filter}");
        assert!(
            out.stderr.contains("in use"),
            "RUST_LOG={filter}: {:?}",
            out.stderr
        );
    }
    drop(held);
}
