//! Serve a directory with [`keelhttp::StaticFiles`] and drain gracefully.
//!
//! ```text
//! cargo run --example static_dir -- [PORT] [DIR]     # defaults: 8080 and .
//! curl -s http://127.0.0.1:8080/Cargo.toml
//! ```
//!
//! keelhttp has no signal handling yet, so this example stops on **stdin**: a
//! second thread reads lines and calls [`keelhttp::ShutdownHandle::shutdown`]
//! on end of input (Ctrl-D in a terminal) or on a line `quit`. The server then
//! closes its listener, lets responses in flight finish (up to
//! `Config::drain_timeout`), and the final [`keelhttp::Report`] says how many
//! connections drained and how many were forced. Ctrl-C still kills the
//! process at once, without a drain.
//!
//! Because end of input means "stop", running it with stdin closed or on
//! `/dev/null` (e.g. `cmd &` in a non-interactive shell) stops it right away;
//! keep stdin open in the background with `sleep infinity | cargo run ...` or
//! a FIFO.

use std::io::{BufRead, Write};

use keelhttp::{Config, Server, StaticFiles};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();

    let mut args = std::env::args().skip(1);
    let port: u16 = match args.next() {
        Some(a) => a.parse().map_err(|_| format!("invalid port '{a}'"))?,
        None => 8080,
    };
    let dir = args.next().unwrap_or_else(|| ".".to_string());

    let handler = StaticFiles::new(&dir).map_err(|e| format!("cannot serve {dir}: {e}"))?;
    let server = Server::bind(("127.0.0.1", port), Config::default())?;
    log::info!(
        "serving {} on http://{}/ (type 'quit' or Ctrl-D to drain and stop)",
        handler.root().display(),
        server.local_addr()
    );

    let stop = server.shutdown_handle();
    std::thread::Builder::new()
        .name("stdin-stop".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                match line {
                    Ok(l) if l.trim() == "quit" => break,
                    Ok(_) => {}
                    Err(_) => break, // unreadable stdin: treat as end of input
                }
            }
            log::info!("stdin closed or 'quit': draining");
            stop.shutdown();
        })?;

    let report = server.run(handler)?;
    let s = report.stats;
    let _ = writeln!(
        std::io::stderr(),
        "static_dir: stopped: {} connections drained, {} forced; \
         {} requests on {} connections, {} bytes sent",
        report.drained,
        report.forced,
        s.requests,
        s.accepted,
        s.bytes_sent
    );
    Ok(())
}
