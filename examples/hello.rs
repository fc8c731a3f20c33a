//! The smallest keelhttp server: a closure as the handler.
//!
//! `GET /` answers `hello`; any other path gets a 404. The handler also shows
//! the request accessors: `req.method()`, `req.path()` and
//! `req.header("user-agent")` (header names are case-insensitive).
//!
//! Run it (the port is the first argument, default 8080):
//!
//! ```text
//! cargo run --example hello -- 8080
//! curl -s http://127.0.0.1:8080/
//! ```
//!
//! `RUST_LOG=warn` silences the access log; `RUST_LOG=debug` shows more.

use keelhttp::{header, Config, ErrorCode, Request, Response, Server};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();

    let port: u16 = match std::env::args().nth(1) {
        Some(a) => a.parse().map_err(|_| format!("invalid port '{a}'"))?,
        None => 8080,
    };
    let server = Server::bind(("127.0.0.1", port), Config::default())?;
    log::info!("listening on http://{}/", server.local_addr());

    // Runs on the server's thread; it must not block, and it logs instead of
    // printing (println! panics once stdout is closed).
    let report = server.run(|req: &Request<'_>| {
        let agent = req.header("user-agent").unwrap_or("(none)");
        log::info!("{} {} from {agent}", req.method(), req.path());
        match (req.method(), req.path()) {
            ("GET" | "HEAD", "/") => Response::text(200, "hello\n"),
            (_, "/") => Response::error(ErrorCode::MethodNotAllowed, "only GET and HEAD")
                .with_header(header::ALLOW, "GET, HEAD"),
            _ => Response::error(ErrorCode::NotFound, "no such page"),
        }
    })?;
    log::info!(
        "stopped: {} drained, {} forced",
        report.drained,
        report.forced
    );
    Ok(())
}
