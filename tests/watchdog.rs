//! The watchdog is pinged by the event loop itself: a handler that blocks
//! the loop stops the pings (so systemd would restart the service).
//!
//! In a test binary of its own: it sets `NOTIFY_SOCKET` and `WATCHDOG_USEC`
//! in the process environment, which no other test may see.

mod util;

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::thread;
use std::time::{Duration, Instant};

use keelhttp::{Config, Request, Response, Server};
use util::{connect, read_response, TempDir, IO_TIMEOUT};

#[test]
fn a_handler_that_blocks_the_loop_stops_the_watchdog_pings() {
    let dir = TempDir::new("watchdog");
    let sock = dir.path().join("notify.sock");
    let manager = UnixDatagram::bind(&sock).unwrap();
    manager.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    std::env::set_var("NOTIFY_SOCKET", &sock);
    std::env::set_var("WATCHDOG_USEC", "100000"); // a ping every 50 ms
    let mut server = Server::bind("127.0.0.1:0", Config::default()).unwrap();
    assert!(server.notify_from_env().unwrap());
    assert!(std::env::var_os("NOTIFY_SOCKET").is_none(), "removed");
    let addr = server.local_addr();
    let stop = server.shutdown_handle();
    let t = thread::spawn(move || {
        server.run(|req: &Request<'_>| {
            if req.path() == "/block" {
                thread::sleep(Duration::from_millis(1500)); // wedges the loop
            }
            Response::text(200, "done\n")
        })
    });
    let recv = || {
        let mut buf = [0u8; 512];
        let n = manager.recv(&mut buf).expect("a notification in time");
        (
            Instant::now(),
            String::from_utf8_lossy(&buf[..n]).into_owned(),
        )
    };
    assert!(recv().1.starts_with("READY=1"));
    // Steady pings first.
    let mut last = recv();
    for _ in 0..4 {
        let next = recv();
        assert_eq!(next.1, "WATCHDOG=1");
        assert!(
            next.0 - last.0 < Duration::from_millis(700),
            "pings too slow"
        );
        last = next;
    }
    let mut c = connect(addr);
    c.write_all(b"GET /block HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let blocked_at = Instant::now();
    // The loop is wedged: the next ping comes only after the handler returns.
    let mut gap = Duration::ZERO;
    let mut prev = blocked_at;
    loop {
        let (at, msg) = recv();
        assert_eq!(msg, "WATCHDOG=1");
        gap = gap.max(at - prev);
        prev = at;
        if at - blocked_at > Duration::from_millis(1700) {
            break;
        }
    }
    assert!(
        gap >= Duration::from_millis(1200),
        "pings went on while the loop was blocked (largest gap {gap:?})"
    );
    assert_eq!(read_response(&mut c).status, 200);
    stop.shutdown();
    t.join().unwrap().unwrap();
}
