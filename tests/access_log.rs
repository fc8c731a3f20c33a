//! The access log as operators use it: `--access-log FILE` in Combined Log
//! Format, parsed strictly; `mv` + SIGUSR1 under load loses and doubles
//! nothing; a full or vanished target never costs a request.

mod util;

use std::collections::HashSet;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use util::{connect, read_response, request, KeelProcess, TempDir};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// One Combined Log Format line, checked field by field as strictly as a
/// regex `^(\S+) - - \[(\d\d)/(\w{3})/(\d{4}):(\d\d):(\d\d):(\d\d) \+0000\] "(\S+) (\S+) (HTTP/1\.[01])" (\d{3}) (\d+|-) "([^"]*)" "([^"]*)"$`
/// would. Returns (host, method, target, status, bytes, referer, agent).
fn parse_combined(line: &str) -> Option<(String, String, String, u16, String, String, String)> {
    let (host, rest) = line.split_once(' ')?;
    let rest = rest.strip_prefix("- - [")?;
    let (date, rest) = rest.split_once("] \"")?;
    // dd/Mon/yyyy:HH:MM:SS +0000
    let b = date.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .is_some_and(|s| s.iter().all(u8::is_ascii_digit))
    };
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    if date.len() != 26
        || !digits(0..2)
        || b[2] != b'/'
        || !months.contains(&&date[3..6])
        || b[6] != b'/'
        || !digits(7..11)
        || b[11] != b':'
        || !digits(12..14)
        || b[14] != b':'
        || !digits(15..17)
        || b[17] != b':'
        || !digits(18..20)
        || &date[20..] != " +0000"
    {
        return None;
    }
    let (request, rest) = rest.split_once("\" ")?;
    let mut parts = request.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !(version == "HTTP/1.1" || version == "HTTP/1.0") {
        return None;
    }
    let (status, rest) = rest.split_once(' ')?;
    let status: u16 = status.parse().ok().filter(|s| (100..600).contains(s))?;
    let (bytes, rest) = rest.split_once(' ')?;
    if bytes != "-" && bytes.parse::<u64>().is_err() {
        return None;
    }
    let rest = rest.strip_prefix('"')?.strip_suffix('"')?;
    let (referer, agent) = rest.split_once("\" \"")?;
    if referer.contains('"') || agent.contains('"') || host.is_empty() {
        return None;
    }
    host.parse::<IpAddr>().ok()?;
    Some((
        host.into(),
        method.into(),
        target.into(),
        status,
        bytes.into(),
        referer.into(),
        agent.into(),
    ))
}

fn stop_gracefully(mut keel: KeelProcess) -> String {
    keel.signal(libc::SIGTERM);
    assert!(
        keel.wait_exit(Duration::from_secs(10)).is_some(),
        "keel did not stop"
    );
    keel.stop()
}

#[test]
fn combined_lines_parse_strictly() {
    let dir = TempDir::new("clf");
    dir.write("index.html", b"hello\n");
    let log = dir.path().join("access.log");
    let log_s = log.to_str().unwrap();
    let keel = KeelProcess::start_with(dir.path(), LOCALHOST, "warn", &["--access-log", log_s]);
    let mut c = keel.connect();
    c.write_all(
        b"GET /index.html?q=\"x\" HTTP/1.1\r\nHost: t\r\nReferer: http://r/\"q\r\nUser-Agent: Mozilla/5.0 (X11) \"quoted\"\r\n\r\n",
    )
    .unwrap();
    assert_eq!(read_response(&mut c).status, 200);
    assert_eq!(request(&mut c, "GET", "/missing").status, 404);
    assert_eq!(request(&mut c, "HEAD", "/").status, 200);
    drop(c);
    stop_gracefully(keel);
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<_> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let parsed: Vec<_> = lines
        .iter()
        .map(|l| parse_combined(l).unwrap_or_else(|| panic!("not Combined Log Format: {l:?}")))
        .collect();
    assert_eq!(parsed[0].0, "127.0.0.1");
    assert_eq!(parsed[0].2, "/index.html?q=\\x22x\\x22", "quotes escaped");
    assert_eq!((parsed[0].3, parsed[0].4.as_str()), (200, "6"));
    assert_eq!(parsed[0].5, "http://r/\\x22q");
    assert_eq!(parsed[0].6, "Mozilla/5.0 (X11) \\x22quoted\\x22");
    assert_eq!((parsed[1].3, parsed[1].5.as_str()), (404, "-"));
    assert_eq!((parsed[2].1.as_str(), parsed[2].4.as_str()), ("HEAD", "-"));
}

#[test]
fn common_format_has_no_referer_or_agent() {
    let dir = TempDir::new("clf-common");
    dir.write("index.html", b"x\n");
    let log = dir.path().join("a.log");
    let keel = KeelProcess::start_with(
        dir.path(),
        LOCALHOST,
        "warn",
        &[
            "--access-log",
            log.to_str().unwrap(),
            "--log-format",
            "common",
        ],
    );
    assert_eq!(request(&mut keel.connect(), "GET", "/").status, 200);
    stop_gracefully(keel);
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text.lines().next().expect("a line");
    assert!(line.ends_with("\"GET / HTTP/1.1\" 200 2"), "{line:?}");
}

/// Targets logged in `path`, one per line (`/?c=T-N`).
fn targets(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            parse_combined(l)
                .unwrap_or_else(|| panic!("bad line {l:?}"))
                .2
        })
        .collect()
}

#[test]
fn mv_and_sigusr1_under_load_lose_and_double_nothing() {
    let dir = TempDir::new("rotate");
    dir.write("index.html", b"r\n");
    let log = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");
    let keel = KeelProcess::start_with(
        dir.path(),
        LOCALHOST,
        "warn",
        &["--access-log", log.to_str().unwrap()],
    );
    let addr = keel.addr();
    let rotate_now = Arc::new(AtomicBool::new(false));
    const CLIENTS: usize = 4;
    const PER_CLIENT: usize = 400;
    let workers: Vec<_> = (0..CLIENTS)
        .map(|t| {
            let rotate_now = rotate_now.clone();
            thread::spawn(move || {
                let mut c = connect(addr);
                for n in 0..PER_CLIENT {
                    if n == PER_CLIENT / 2 && t == 0 {
                        rotate_now.store(true, Ordering::Release);
                    }
                    let r = request(&mut c, "GET", &format!("/?c={t}-{n}"));
                    assert_eq!(r.status, 200);
                }
            })
        })
        .collect();
    // Rotate in the middle of the load: mv, then SIGUSR1.
    let t0 = Instant::now();
    while !rotate_now.load(Ordering::Acquire) {
        assert!(t0.elapsed() < Duration::from_secs(30), "load did not start");
        thread::sleep(Duration::from_millis(1)); // poll, bounded above
    }
    std::fs::rename(&log, &rotated).unwrap();
    keel.signal(libc::SIGUSR1);
    for w in workers {
        w.join().unwrap();
    }
    stop_gracefully(keel);
    let old = targets(&rotated);
    let new = targets(&log);
    assert!(!new.is_empty(), "nothing went to the reopened file");
    assert!(!old.is_empty());
    let all: Vec<_> = old.iter().chain(&new).collect();
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), CLIENTS * PER_CLIENT, "lost or doubled lines");
    assert_eq!(unique.len(), CLIENTS * PER_CLIENT, "doubled lines");
    eprintln!(
        "{} lines before the rotation, {} after",
        old.len(),
        new.len()
    );
}

/// `log_dropped` once it reaches `want` (lines are written, or dropped, at
/// most 100 ms after they are logged), or as it is after 3 s.
fn log_dropped_at_least(addr: SocketAddr, want: u64) -> u64 {
    let start = std::time::Instant::now();
    let mut n = log_dropped(addr);
    for _ in 0..300 {
        if n >= want || start.elapsed() > std::time::Duration::from_secs(3) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        n = log_dropped(addr);
    }
    n
}

/// The status endpoint's `log_dropped`.
fn log_dropped(addr: SocketAddr) -> u64 {
    let r = request(&mut connect(addr), "GET", "/_status");
    let body = String::from_utf8(r.body).unwrap();
    body.split("\"log_dropped\":")
        .nth(1)
        .and_then(|s| s.split([',', '}']).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no log_dropped in {body}"))
}

#[test]
fn a_full_disk_drops_and_counts_lines_and_every_request_is_answered() {
    let dir = TempDir::new("full");
    dir.write("index.html", b"f\n");
    let keel = KeelProcess::start_with(
        dir.path(),
        LOCALHOST,
        "warn",
        &["--access-log", "/dev/full", "--status-path", "/_status"],
    );
    let mut c = keel.connect();
    for i in 0..200 {
        assert_eq!(request(&mut c, "GET", &format!("/?{i}")).status, 200);
    }
    // Every line so far was dropped (counted when the buffer is written,
    // at most 100 ms later).
    let dropped = log_dropped_at_least(keel.addr(), 200);
    assert!(dropped >= 200, "log_dropped {dropped}");
    let stderr = stop_gracefully(keel);
    assert_eq!(
        stderr.matches("dropping lines").count(),
        1,
        "one warning, not one per line: {stderr}"
    );
}

#[test]
fn a_removed_log_directory_never_costs_a_request() {
    let dir = TempDir::new("gone");
    dir.write("index.html", b"g\n");
    let logs = TempDir::new("gone-logs");
    let log = logs.path().join("access.log");
    let keel = KeelProcess::start_with(
        dir.path(),
        LOCALHOST,
        "warn",
        &["--access-log", log.to_str().unwrap()],
    );
    let mut c = keel.connect();
    assert_eq!(request(&mut c, "GET", "/").status, 200);
    std::fs::remove_dir_all(logs.path()).unwrap();
    keel.signal(libc::SIGUSR1); // the reopen fails: the old file is kept
    for _ in 0..100 {
        assert_eq!(request(&mut c, "GET", "/").status, 200);
    }
    let stderr = stop_gracefully(keel);
    assert!(stderr.contains("cannot reopen the access log"), "{stderr}");
}

#[test]
fn an_access_log_that_cannot_be_opened_is_a_clear_start_up_error() {
    let dir = TempDir::new("nolog");
    let out = util::run_keel(
        &[
            dir.path().to_str().unwrap(),
            "--port",
            "0",
            "--access-log",
            "/nonexistent-dir/access.log",
        ],
        "info",
        util::ChildStdout::Null,
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot open the access log"),
        "{}",
        out.stderr
    );
}

/// Regression (issue 9): the default log on stderr must never block the
/// loop. Here nobody reads keel's stderr pipe: once it is full, lines are
/// dropped and counted, and requests keep being answered at full speed.
#[test]
fn a_stderr_pipe_nobody_reads_never_blocks_the_loop() {
    use std::process::{Command, Stdio};
    let dir = TempDir::new("stderr-full");
    dir.write("index.html", b"s\n");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(util::KEEL)
        .args([
            dir.path().to_str().unwrap(),
            "--addr",
            "127.0.0.1",
            "--port",
        ])
        .arg(port.to_string())
        .args(["--status-path", "/_status"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped()) // held, never read
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _stderr = child.stderr.take();
    let _guard = Kill(child);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let t0 = Instant::now();
    let mut c = loop {
        if let Ok(s) = std::net::TcpStream::connect(addr) {
            s.set_read_timeout(Some(util::IO_TIMEOUT)).unwrap();
            s.set_write_timeout(Some(util::IO_TIMEOUT)).unwrap();
            break s;
        }
        assert!(t0.elapsed() < util::READY_TIMEOUT, "keel did not listen");
        thread::sleep(Duration::from_millis(10)); // poll, bounded above
    };
    // ~2 KiB lines: 64 KiB of pipe buffer is full after some 30 requests.
    let agent = "a".repeat(2000);
    for i in 0..2000 {
        c.write_all(
            format!("GET /?{i} HTTP/1.1\r\nHost: t\r\nUser-Agent: {agent}\r\n\r\n").as_bytes(),
        )
        .unwrap();
        assert_eq!(read_response(&mut c).status, 200, "request {i}");
    }
    let dropped = log_dropped(addr);
    assert!(dropped > 1000, "lines dropped, not blocking: {dropped}");
}

/// Unmounts on drop, so a failing test leaves no mount behind.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_tiny_file_system_that_fills_up_never_costs_a_request() {
    let dir = TempDir::new("tiny");
    dir.write("index.html", b"t\n");
    let mnt = TempDir::new("tiny-fs");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16k", "tmpfs"])
        .arg(mnt.path())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipping: cannot mount a tmpfs here (not root?)");
        return;
    }
    let _mount = Mount(mnt.path().to_path_buf());
    let log = mnt.path().join("access.log");
    let keel = KeelProcess::start_with(
        dir.path(),
        LOCALHOST,
        "warn",
        &[
            "--access-log",
            log.to_str().unwrap(),
            "--status-path",
            "/_status",
        ],
    );
    let mut c = keel.connect();
    for i in 0..1000 {
        assert_eq!(
            request(&mut c, "GET", &format!("/?{i}")).status,
            200,
            "request {i}"
        );
    }
    // At most 16 KiB of lines (under 200) can have been written.
    let dropped = log_dropped_at_least(keel.addr(), 800);
    stop_gracefully(keel);
    let text = std::fs::read(&log).unwrap();
    assert!(text.len() <= 16 * 1024);
    let complete = String::from_utf8_lossy(&text);
    let whole: Vec<_> = complete
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .collect();
    for l in &whole {
        assert!(parse_combined(l.trim_end()).is_some(), "bad line {l:?}");
    }
    // What did not fit was dropped and counted (a line cut by the full disk
    // counts as dropped too).
    assert!(
        dropped as usize + whole.len() >= 1000,
        "{dropped} dropped + {} written < 1000",
        whole.len()
    );
    assert!(dropped > 500, "{dropped}");
}
