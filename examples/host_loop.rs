//! A host program that owns the event loop.
//!
//! Instead of handing its thread to [`keelhttp::Server::run`], the host calls
//! [`keelhttp::Server::poll_once`] with a 100 ms timeout and does its own
//! periodic work between turns: here, logging `server.stats()` once a second.
//! After N seconds it asks for a graceful drain through the shutdown handle
//! and keeps polling until `poll_once` returns `Ok(false)`.
//!
//! ```text
//! cargo run --example host_loop -- [PORT] [SECONDS]   # defaults: 8080 and 10
//! curl -s http://127.0.0.1:8080/
//! ```
//!
//! `RUST_LOG=warn` silences the access log and the per-second stats.

use std::time::{Duration, Instant};

use keelhttp::{Config, Request, Response, Server};

const TICK: Duration = Duration::from_secs(1);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();

    let mut args = std::env::args().skip(1);
    let port: u16 = match args.next() {
        Some(a) => a.parse().map_err(|_| format!("invalid port '{a}'"))?,
        None => 8080,
    };
    let secs: u64 = match args.next() {
        Some(a) => a
            .parse()
            .map_err(|_| format!("invalid number of seconds '{a}'"))?,
        None => 10,
    };

    let mut server = Server::bind(("127.0.0.1", port), Config::default())?;
    let stop = server.shutdown_handle();
    log::info!("listening on http://{}/ for {secs} s", server.local_addr());

    // The handler is borrowed by poll_once, so the host keeps it (and any
    // state it captures) across turns.
    let mut hits = 0u64;
    let mut handler = |_req: &Request<'_>| {
        hits += 1;
        Response::text(200, format!("hello from the host loop, request {hits}\n"))
    };

    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut next_tick = start + TICK;
    let mut stopping = false;
    while server.poll_once(&mut handler, Some(Duration::from_millis(100)))? {
        // The host's own work, between turns of the server loop.
        let now = Instant::now();
        if now >= next_tick {
            let s = server.stats();
            log::info!(
                "stats: {} open, {} accepted, {} requests, {} bytes sent",
                s.connections,
                s.accepted,
                s.requests,
                s.bytes_sent
            );
            next_tick = now + TICK;
        }
        if !stopping && now >= deadline {
            log::info!("{secs} s are up: draining");
            stop.shutdown();
            stopping = true;
        }
    }

    let report = server.report();
    log::info!(
        "stopped: {} drained, {} forced, {} requests served",
        report.drained,
        report.forced,
        report.stats.requests
    );
    Ok(())
}
