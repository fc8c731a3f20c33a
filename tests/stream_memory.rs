//! A slow SSE client while the host pushes as fast as it can: the server's
//! memory stays bounded (issue 13). Alone in its own test binary so the
//! process's RSS is this test's.

mod util;

use std::io::{Read, Write};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use keelhttp::{Config, Event, Push, Request, Sse};
use util::*;

/// Resident set size of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

#[test]
fn a_slow_sse_client_keeps_memory_bounded_while_the_host_pushes() {
    let (tx, rx) = mpsc::channel();
    let srv = TestServer::start(Config::default(), move |_req: &Request<'_>| {
        let (resp, sse) = Sse::response(None);
        tx.send(sse).unwrap();
        resp
    });
    let mut client = srv.connect();
    client
        .write_all(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let sse = rx.recv_timeout(IO_TIMEOUT).unwrap();
    let before = rss_kib();

    // The client reads 4 KiB every 20 ms (200 KiB/s).
    let reader = thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut total = 0usize;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(4) {
            match client.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => total += n,
                Err(e) => panic!("slow client: {e}"),
            }
            thread::sleep(Duration::from_millis(20));
        }
        total
    });

    // The host pushes 1 KiB events as fast as it can for 3 s.
    let data = "x".repeat(1000);
    let event = Event::new(&data);
    let (mut offered, mut taken) = (0u64, 0u64);
    let start = Instant::now();
    let mut baseline = None;
    let mut peak = 0;
    while start.elapsed() < Duration::from_secs(3) {
        offered += 1;
        match sse.send(&event) {
            Push::Sent => taken += 1,
            Push::Full => thread::yield_now(),
            other => panic!("push: {other:?}"),
        }
        if offered % 1000 == 0 {
            let rss = rss_kib();
            // The socket buffers fill in the first half second.
            if baseline.is_none() && start.elapsed() > Duration::from_millis(500) {
                baseline = Some(rss);
            }
            peak = peak.max(rss);
        }
    }
    let read = reader.join().unwrap();
    let baseline = baseline.unwrap();
    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "slow SSE client: host offered {offered} events of 1 KiB ({} MiB), {taken} taken, \
         client read {} KiB; RSS {before} KiB before, {baseline} KiB after 0.5 s, \
         peak {peak} KiB (+{growth} KiB)",
        offered >> 10,
        read >> 10
    );
    assert!(offered > 4 * taken, "the host was not held back");
    assert!(growth < 8 * 1024, "RSS grew by {growth} KiB");
    sse.finish();
}
