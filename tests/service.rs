//! The service side (issue 10): several listeners (TCP v4/v6, Unix), socket
//! activation, through the library and through the real `keel` binary.
//!
//! Real processes and sockets. `systemd-socket-activate` (Debian package
//! `systemd`, installed by `.ci/run`) plays the service manager; a test
//! skips with a printed reason when it is missing.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use keelhttp::{Config, Listener, PeerAddr, Request, Response, Server};
use util::{
    connect, have, read_response_to, request, run_keel, ChildStdout, KeelChild, Resp, TempDir,
    IO_TIMEOUT, KEEL, READY_TIMEOUT,
};

fn unix_connect(path: &Path) -> UnixStream {
    let s = UnixStream::connect(path)
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", path.display()));
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

fn get<S: Read + Write>(s: &mut S, target: &str) -> Resp {
    let raw = format!("GET {target} HTTP/1.1\r\nHost: test\r\n\r\n");
    s.write_all(raw.as_bytes()).expect("write request");
    read_response_to(s, false)
}

/// The handler answers with who it thinks the peer is.
fn whoami(req: &Request<'_>) -> Response {
    let peer = match req.peer() {
        PeerAddr::Ip(a) => format!("ip {}", a.ip()),
        PeerAddr::Unix => "unix".to_string(),
        _ => "other".to_string(),
    };
    Response::text(
        200,
        format!("{peer} {:?}\n", req.peer_addr().map(|a| a.ip())),
    )
}

#[test]
fn one_server_serves_tcp_v4_v6_and_unix_listeners_and_tells_the_peer() {
    let dir = TempDir::new("multi");
    let sock = dir.path().join("keel.sock");
    let mut listeners = vec![
        Listener::bind("127.0.0.1:0").unwrap(),
        Listener::bind_unix(&sock, Some(0o600)).unwrap(),
    ];
    let v6 = Listener::bind("[::1]:0").ok(); // a host without IPv6 skips that part
    if v6.is_none() {
        eprintln!("no IPv6 loopback: testing v4 and unix only");
    }
    listeners.extend(v6);
    let server = Server::from_listeners(listeners, Config::default()).unwrap();
    let addrs: Vec<_> = server.listen_addrs().to_vec();
    assert_eq!(addrs[1].to_string(), format!("unix:{}", sock.display()));
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "--socket-mode applied");
    let stop = server.shutdown_handle();
    let t = thread::spawn(move || server.run(whoami).unwrap());

    for a in &addrs {
        match a {
            keelhttp::ListenAddr::Ip(ip) => {
                let r = request(&mut connect(*ip), "GET", "/");
                let want = format!("ip {} Some({})", ip.ip(), ip.ip());
                assert_eq!(String::from_utf8_lossy(&r.body).trim(), want);
            }
            keelhttp::ListenAddr::Unix(p) => {
                let mut c = unix_connect(p);
                // Keep-alive works on a Unix socket too.
                for _ in 0..3 {
                    let r = get(&mut c, "/");
                    assert_eq!(r.status, 200);
                    assert_eq!(String::from_utf8_lossy(&r.body).trim(), "unix None");
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    stop.shutdown();
    let report = t.join().unwrap();
    assert_eq!(report.stats.requests as usize, addrs.len() + 2);
}

#[test]
fn a_stale_socket_file_is_replaced_a_live_one_is_an_error() {
    let dir = TempDir::new("stale");
    let sock = dir.path().join("s.sock");
    // A dead server's socket file: bound, then the listener dropped.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(std::fs::metadata(&sock).unwrap().file_type().is_socket());
    // Another test of this binary may fork a child at any moment, which holds
    // a copy of the listener until its exec closes it: wait (bounded) until
    // the socket really refuses connections.
    for _ in 0..500 {
        match UnixStream::connect(&sock) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    let live = Listener::bind_unix(&sock, None).expect("stale file replaced");
    let err = Listener::bind_unix(&sock, None).expect_err("a live socket must not be taken");
    assert_eq!(err.kind(), keelhttp::ErrorKind::AddrInUse, "{err}");
    drop(live);
    // A regular file in the way is never deleted.
    let file = dir.write("plain", b"data");
    assert!(Listener::bind_unix(&file, None).is_err());
    assert_eq!(std::fs::read(&file).unwrap(), b"data");
}

/// Waits (bounded) for a Unix socket to accept.
fn wait_unix(path: &Path, child: &mut KeelChild) {
    let start = Instant::now();
    for _ in 0..1000 {
        if UnixStream::connect(path).is_ok() {
            return;
        }
        if let Some(st) = child.exited() {
            panic!(
                "keel exited ({st:?}) before listening on {}",
                path.display()
            );
        }
        assert!(
            start.elapsed() < READY_TIMEOUT,
            "keel did not listen in time"
        );
        thread::sleep(Duration::from_millis(10)); // poll interval, bounded above
    }
}

#[test]
fn binary_listens_on_repeated_listen_flags_tcp_and_unix() {
    let dir = TempDir::new("cli-listen");
    dir.write("index.html", b"<p>both</p>\n");
    let sock = dir.path().join("run.sock");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tcp = format!("127.0.0.1:{port}");
    let unix = format!("unix:{}", sock.display());
    let root = dir.path().to_str().unwrap();
    let args = [
        root,
        "--listen",
        &tcp,
        "--listen",
        &unix,
        "--socket-mode",
        "0660",
    ];
    let mut child = KeelChild::spawn(&args, "info", ChildStdout::Null);
    wait_unix(&sock, &mut child);
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    let r = get(&mut unix_connect(&sock), "/");
    assert_eq!(r.body, b"<p>both</p>\n");
    let addr: SocketAddr = tcp.parse().unwrap();
    let r = request(&mut connect(addr), "GET", "/");
    assert_eq!(r.body, b"<p>both</p>\n");

    // A second keel on the same socket refuses: the first one is alive.
    let again = run_keel(&[root, "--listen", &unix], "info", ChildStdout::Null);
    assert_eq!(again.status.code(), Some(1), "{}", again.stderr);
    assert!(again.stderr.contains("in use"), "{}", again.stderr);

    // Stopped (gracefully, so the buffered access log is out), it leaves its
    // socket file; the next keel replaces it.
    // SAFETY: kill(2) on our own child, not yet reaped.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    assert!(child.wait_exit(Duration::from_secs(10)).is_some());
    let stderr = child.stop();
    assert!(stderr.contains("\"GET / HTTP/1.1\" 200"), "{stderr}");
    assert!(std::fs::symlink_metadata(&sock).is_ok(), "the file stays");
    let mut next = KeelChild::spawn(&[root, "--listen", &unix], "info", ChildStdout::Null);
    wait_unix(&sock, &mut next);
    assert_eq!(get(&mut unix_connect(&sock), "/").status, 200);
    let stderr = next.stop();
    assert!(stderr.contains("replacing the stale socket"), "{stderr}");
}

#[test]
fn bad_listen_input_is_a_one_line_error_never_a_panic() {
    let dir = TempDir::new("bad-listen");
    let root = dir.path().to_str().unwrap();
    let cases: [(&[&str], i32, &str); 4] = [
        (&["--listen", "unix:"], 2, "needs a path"),
        (&["--listen", "nonsense"], 2, "--listen takes"),
        (&["--socket-mode", "0999"], 2, "octal"),
        (
            &["--listen", "unix:/nonexistent-dir/k.sock"],
            1,
            "No such file",
        ),
    ];
    for (extra, code, what) in cases {
        let mut args = vec![root];
        args.extend_from_slice(extra);
        let out = run_keel(&args, "info", ChildStdout::Null);
        assert_eq!(out.status.code(), Some(code), "{extra:?}: {}", out.stderr);
        assert!(out.stderr.contains(what), "{extra:?}: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
        let lines = out.stderr.lines().filter(|l| !l.trim().is_empty()).count();
        assert!(
            lines <= 2,
            "{extra:?}: one line (plus a hint): {}",
            out.stderr
        );
    }
}

// ---------------------------------------------------------------------------
// Socket activation

/// A child process (`systemd-socket-activate`, which becomes keel by exec,
/// or keel itself) with extra environment, its stderr read line by line in a
/// thread; killed and reaped on drop.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    fn activator(args: &[&str]) -> Proc {
        Proc::spawn("systemd-socket-activate", args, &[])
    }

    fn spawn(program: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
        let err = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (bounded) for a stderr line containing `what`.
    fn wait_line(&mut self, what: &str) -> String {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(what) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "no line with {what:?} in time; got:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits (bounded) for the process to exit and returns its status and
    /// every stderr line.
    fn finish(mut self) -> (Option<i32>, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            assert!(start.elapsed() < READY_TIMEOUT, "did not exit in time");
            thread::sleep(Duration::from_millis(10));
        };
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(l);
        }
        (status.code(), self.seen.join("\n"))
    }

    fn signal(&self, sig: libc::c_int) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child (keel, after its exec).
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn socket_activation_serves_tcp_and_unix_including_a_connection_made_before_keel_started() {
    if !have("systemd-socket-activate") {
        return;
    }
    let dir = TempDir::new("activate");
    dir.write("index.html", b"<p>activated</p>\n");
    let sock = dir.path().join("act.sock");
    let port = free_port();
    let tcp = format!("127.0.0.1:{port}");
    let unix = sock.to_str().unwrap().to_string();
    let root = dir.path().to_str().unwrap();
    let mut act = Proc::activator(&["-l", &tcp, "-l", &unix, "--fdname=web:local", KEEL, root]);
    act.wait_line(&format!("Listening on {unix}"));
    // keel is not running yet: systemd-socket-activate starts it on the first
    // connection. This request is made (and sent) before keel exists.
    let addr: SocketAddr = tcp.parse().unwrap();
    let mut early = connect(addr);
    early
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let r = read_response_to(&mut early, false);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"<p>activated</p>\n");
    let serving = act.wait_line("serving ");
    assert!(serving.contains(&format!("http://{tcp}/")), "{serving}");
    let r = get(&mut unix_connect(&sock), "/");
    assert_eq!(r.body, b"<p>activated</p>\n");
    if have("curl") {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "--unix-socket",
                &unix,
                "http://x/",
            ])
            .output()
            .unwrap();
        assert_eq!(out.stdout, b"<p>activated</p>\n", "{out:?}");
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", &format!("http://{tcp}/")])
            .output()
            .unwrap();
        assert_eq!(out.stdout, b"<p>activated</p>\n", "{out:?}");
    }
    act.signal(libc::SIGTERM);
    let (code, log) = act.finish();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("socket activation: ") && log.contains("(web)"),
        "{log}"
    );
    assert!(log.contains("(local)"), "names from LISTEN_FDNAMES: {log}");
}

#[test]
fn an_activated_fd_that_is_not_a_listening_stream_socket_is_refused() {
    // fd 3 is a plain file: `$$` is the shell's pid, which keel keeps by exec.
    let dir = TempDir::new("activate-bad");
    let root = dir.path().to_str().unwrap();
    let script = format!("LISTEN_PID=$$ LISTEN_FDS=1 exec {KEEL} {root} 3</dev/null");
    let out = Command::new("sh")
        .args(["-c", &script])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("fd 3: not a socket"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    // A datagram socket (UDP) is a socket, but cannot serve HTTP.
    if !have("systemd-socket-activate") {
        return;
    }
    let port = free_port();
    let udp = format!("127.0.0.1:{port}");
    let mut act = Proc::activator(&["--datagram", "-l", &udp, KEEL, root]);
    act.wait_line("Listening on");
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.send_to(b"wake up", &udp).unwrap();
    let (code, log) = act.finish();
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("not a stream socket"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn activated_listeners_is_empty_without_listen_pid_for_us() {
    // LISTEN_PID of another process: not ours, nothing taken. (The test
    // binary's own environment has no LISTEN_* variables.)
    assert!(keelhttp::activated_listeners().unwrap().is_empty());
}

// ---------------------------------------------------------------------------
// sd_notify: the test is the service manager

/// Receives one notification (bounded wait).
fn recv_msg(s: &UnixDatagram) -> Option<String> {
    let mut buf = [0u8; 4096];
    match s.recv(&mut buf) {
        Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(_) => None, // timeout
    }
}

#[test]
fn service_manager_gets_ready_after_accepting_then_watchdog_pings_then_stopping() {
    let dir = TempDir::new("notify");
    dir.write("index.html", b"ok\n");
    let sock = dir.path().join("notify.sock");
    let manager = UnixDatagram::bind(&sock).unwrap();
    manager.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let port = free_port().to_string();
    let root = dir.path().to_str().unwrap();
    let notify = sock.to_str().unwrap();
    let keel = Proc::spawn(
        KEEL,
        &[root, "--addr", "127.0.0.1", "--port", &port],
        &[("NOTIFY_SOCKET", notify), ("WATCHDOG_USEC", "200000")],
    );
    let mut got = Vec::new();
    let first = recv_msg(&manager).expect("READY=1 within the timeout");
    assert!(first.starts_with("READY=1\n"), "{first:?}");
    assert!(
        first.contains(&format!("MAINPID={}", keel.child.id())),
        "{first:?}"
    );
    // READY means accepting: the port answers now, with no retry.
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(request(&mut connect(addr), "GET", "/").status, 200);
    got.push(first);
    // Pings every 100 ms (half of WATCHDOG_USEC), from the loop.
    let t0 = Instant::now();
    let mut pings = 0;
    while pings < 5 {
        let m = recv_msg(&manager).expect("a watchdog ping");
        assert_eq!(m, "WATCHDOG=1");
        pings += 1;
        got.push(m);
    }
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_secs(3),
        "5 pings at ~100 ms took {took:?}"
    );
    keel.signal(libc::SIGTERM);
    let stopping = loop {
        let m = recv_msg(&manager).expect("STOPPING=1 after SIGTERM");
        got.push(m.clone());
        if m != "WATCHDOG=1" {
            break m;
        }
    };
    assert!(
        stopping.starts_with("STOPPING=1\nSTATUS=draining 0 connections\nEXTEND_TIMEOUT_USEC="),
        "{stopping:?}"
    );
    let (code, log) = keel.finish();
    assert_eq!(code, Some(0), "{log}");
    eprintln!("notify messages in order:\n{}", got.join("\n---\n"));
}

#[test]
fn without_a_watchdog_a_notified_idle_server_still_never_wakes() {
    let dir = TempDir::new("notify-idle");
    let sock = dir.path().join("n.sock");
    let manager = UnixDatagram::bind(&sock).unwrap();
    manager.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let port = free_port().to_string();
    let root = dir.path().to_str().unwrap();
    let keel = Proc::spawn(
        KEEL,
        &[root, "--addr", "127.0.0.1", "--port", &port],
        &[
            ("NOTIFY_SOCKET", sock.to_str().unwrap()),
            ("RUST_LOG", "warn"),
        ],
    );
    let ready = recv_msg(&manager).expect("READY=1");
    assert!(ready.starts_with("READY=1"));
    thread::sleep(Duration::from_millis(200)); // let start-up settle
    let pid = keel.child.id();
    let before = util::wakeups(pid);
    thread::sleep(Duration::from_secs(1)); // the observation window itself
    assert_eq!(
        util::wakeups(pid),
        before,
        "an idle server without a watchdog woke up"
    );
    manager
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    assert_eq!(recv_msg(&manager), None, "no message while idle");
}

// ---------------------------------------------------------------------------
// Privilege drop

fn is_root() -> bool {
    // SAFETY: geteuid takes no arguments and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipping: not running as root");
    }
    root
}

/// A port below 1024 that is free now (found by binding, as root).
fn free_low_port() -> Option<u16> {
    (900..1024)
        .rev()
        .find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
}

/// Uid and Gid lines of /proc/PID/status: (real, effective, saved, fs).
fn proc_ids(pid: u32) -> (String, String, String) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    (field("Uid:"), field("Gid:"), field("Groups:"))
}

#[test]
fn user_nobody_after_binding_a_low_port_runs_unprivileged_and_cannot_read_root_files() {
    if !is_root() {
        return;
    }
    let Some(port) = free_low_port() else {
        eprintln!("skipping: no free port below 1024");
        return;
    };
    let dir = TempDir::new("nobody");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir.write("index.html", b"<p>public</p>\n");
    let secret = dir.write("secret.txt", b"root only\n");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let root = dir.path().to_str().unwrap();
    let port_s = port.to_string();
    let mut keel = Proc::spawn(
        KEEL,
        &[
            root,
            "--addr",
            "127.0.0.1",
            "--port",
            &port_s,
            "--user",
            "nobody",
        ],
        &[],
    );
    let line = keel.wait_line("serving ");
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    let (uid, gid, groups) = proc_ids(keel.child.id());
    assert_eq!(
        uid, "65534 65534 65534 65534",
        "Uid: real, effective, saved, fs"
    );
    assert_eq!(gid, "65534 65534 65534 65534", "Gid");
    assert_eq!(groups, "65534", "supplementary groups dropped");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut c = connect(addr);
    assert_eq!(request(&mut c, "GET", "/").body, b"<p>public</p>\n");
    assert_eq!(request(&mut c, "GET", "/secret.txt").status, 403);
}

#[test]
fn chroot_and_user_jail_the_process_and_it_still_serves() {
    if !is_root() {
        return;
    }
    let dir = TempDir::new("chroot");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir.write("index.html", b"<p>jailed</p>\n");
    let root = dir.path().to_str().unwrap();
    let port = free_port().to_string();
    let mut keel = Proc::spawn(
        KEEL,
        &[
            root,
            "--addr",
            "127.0.0.1",
            "--port",
            &port,
            "--chroot",
            root,
            "--user",
            "nobody:nogroup",
        ],
        &[],
    );
    keel.wait_line("serving ");
    let jail = std::fs::read_link(format!("/proc/{}/root", keel.child.id())).unwrap();
    assert_eq!(jail, std::fs::canonicalize(dir.path()).unwrap());
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(
        request(&mut connect(addr), "GET", "/").body,
        b"<p>jailed</p>\n"
    );
}

#[test]
fn an_unknown_user_or_group_refuses_to_start() {
    let dir = TempDir::new("nouser");
    let root = dir.path().to_str().unwrap();
    for user in ["no-such-user-keel", "nobody:no-such-group-keel", ":x"] {
        let out = run_keel(
            &[root, "--addr", "127.0.0.1", "--port", "0", "--user", user],
            "info",
            ChildStdout::Null,
        );
        assert_eq!(out.status.code(), Some(1), "--user {user}: {}", out.stderr);
        assert!(
            out.stderr.contains("no such") || out.stderr.contains("invalid --user"),
            "{}",
            out.stderr
        );
        assert!(
            !out.stderr.contains("serving"),
            "must not serve: {}",
            out.stderr
        );
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
}

/// Issue 10, item 7: the README's first command works on a fresh clone: the
/// directory it names is in the checkout, and keel serves it.
#[test]
fn the_readme_first_command_serves_something_that_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| l.contains("cargo run --release -- "))
        .expect("a `cargo run --release -- DIR` line in the README");
    let dir = line
        .split("cargo run --release -- ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("a directory after `--`");
    let dir = root.join(dir);
    assert!(dir.is_dir(), "{} is not in the checkout", dir.display());
    let keel = util::KeelProcess::start(&dir, std::net::IpAddr::from([127, 0, 0, 1]), "warn");
    let mut c = keel.connect();
    let r = request(&mut c, "GET", "/");
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains("keel is serving"));
    assert_eq!(request(&mut c, "GET", "/hello.txt").status, 200);
}

#[test]
fn a_drain_with_a_response_in_flight_reports_it_and_asks_for_more_time() {
    let dir = TempDir::new("notify-drain");
    let big = std::fs::File::create(dir.path().join("big.bin")).unwrap();
    big.set_len(64 << 20).unwrap(); // sparse: far more than the socket buffers hold
    let sock = dir.path().join("n.sock");
    let manager = UnixDatagram::bind(&sock).unwrap();
    manager.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let port = free_port().to_string();
    let root = dir.path().to_str().unwrap();
    let keel = Proc::spawn(
        KEEL,
        &[
            root,
            "--addr",
            "127.0.0.1",
            "--port",
            &port,
            "--drain-timeout",
            "20",
        ],
        &[("NOTIFY_SOCKET", sock.to_str().unwrap())],
    );
    assert!(recv_msg(&manager).expect("READY=1").starts_with("READY=1"));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut slow = connect(addr);
    slow.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 12];
    slow.read_exact(&mut first).unwrap(); // the response is under way, unread
    keel.signal(libc::SIGTERM);
    let stopping = recv_msg(&manager).expect("STOPPING=1");
    assert!(
        stopping.starts_with("STOPPING=1\nSTATUS=draining 1 connection\nEXTEND_TIMEOUT_USEC="),
        "{stopping:?}"
    );
    let usec: u64 = stopping.rsplit('=').next().unwrap().parse().unwrap();
    assert!(
        (20_000_000..=25_000_000).contains(&usec),
        "the drain deadline plus slack: {usec}"
    );
    drop(slow); // the client goes away: the drain ends
    let (code, log) = keel.finish();
    assert!(code.is_some(), "{log}");
}
