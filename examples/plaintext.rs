//! TechEmpower-style baseline endpoints, for load testing.
//!
//! * `GET /plaintext`: `text/plain`, `Hello, World!` (13 bytes)
//! * `GET /json`: `application/json`, `{"message":"Hello, World!"}`
//! * anything else: 404
//!
//! Both bodies are `&'static str`, so they become `Body::Static` and go out
//! without being copied; header names and values are `'static` too. The only
//! per-request allocation left is the response's header list.
//!
//! ```text
//! cargo run --release --example plaintext -- 8080
//! curl -s http://127.0.0.1:8080/plaintext
//! wrk -t2 -c64 -d10s http://127.0.0.1:8080/plaintext
//! ```
//!
//! Logging defaults to `warn` so that the access log (an `info` line per
//! request, target `keelhttp::access`) does not distort a benchmark. Set
//! `RUST_LOG=info` to see it, or `RUST_LOG=info,keelhttp::access=off` to see
//! everything else.

use keelhttp::{header, Config, Request, Response, Server};

const PLAINTEXT: &str = "Hello, World!";
// Hand-written: no serializer needed for a constant document.
const JSON: &str = r#"{"message":"Hello, World!"}"#;

fn handle(req: &Request<'_>) -> Response {
    match (req.method(), req.path()) {
        ("GET" | "HEAD", "/plaintext") => Response::new(200)
            .with_header(header::CONTENT_TYPE, "text/plain")
            .with_body(PLAINTEXT),
        ("GET" | "HEAD", "/json") => Response::new(200)
            .with_header(header::CONTENT_TYPE, "application/json")
            .with_body(JSON),
        _ => Response::text(404, "not found\n"),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();

    let port: u16 = match std::env::args().nth(1) {
        Some(a) => a.parse().map_err(|_| format!("invalid port '{a}'"))?,
        None => 8080,
    };
    let server = Server::bind(("127.0.0.1", port), Config::default())?;
    // Start-up line on stderr directly: at the default `warn` level,
    // log::info! would not show it.
    {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "plaintext: listening on http://{}/ (/plaintext, /json)",
            server.local_addr()
        );
    }
    server.run(handle)?;
    Ok(())
}
