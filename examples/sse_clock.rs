//! Server-sent events: a clock in the browser.
//!
//! `cargo run --example sse_clock -- 8080`, then open <http://127.0.0.1:8080/>.
//! `GET /` is a page whose `EventSource` shows the time; `GET /events` is the
//! stream: one `tick` event a second, and a `: ping` comment when quiet.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keelhttp::{Config, Event, Push, Request, Response, Server, Sse};

const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>keel SSE clock</title></head>
<body style="font: 3em monospace; text-align: center; margin-top: 2em">
<div id="clock">waiting for the server...</div>
<ol id="log" style="font-size: 0.3em; text-align: left"></ol>
<script>
const es = new EventSource("/events");
es.addEventListener("tick", (e) => {
  document.getElementById("clock").textContent = e.data;
  const li = document.createElement("li");
  li.textContent = "event " + e.lastEventId + ": " + e.data;
  document.getElementById("log").appendChild(li);
});
es.onerror = () => { document.getElementById("clock").textContent += " (reconnecting)"; };
</script>
</body></html>
"#;

/// `HH:MM:SS` UTC.
fn now_utc() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    format!("{h:02}:{m:02}:{s:02} UTC")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::init();
    let port: u16 = match std::env::args().nth(1).map(|p| p.parse()) {
        Some(Ok(p)) => p,
        None => 8080,
        Some(Err(_)) => {
            let _ = writeln!(std::io::stderr(), "usage: sse_clock [PORT]");
            std::process::exit(2);
        }
    };
    let server = Server::bind(("127.0.0.1", port), Config::default())?;
    keelhttp::stop_on_signals(server.shutdown_handle())?;
    let _ = writeln!(
        std::io::stdout(),
        "SSE clock on http://{}/",
        server.local_addr()
    );

    // The ticker thread owns every open stream; the handler adds to it.
    let streams: Arc<Mutex<Vec<Sse>>> = Arc::default();
    let ticker = Arc::clone(&streams);
    std::thread::spawn(move || {
        for id in 1u64.. {
            std::thread::sleep(Duration::from_secs(1));
            let time = now_utc();
            let id = id.to_string();
            let event = Event::new(&time).event("tick").id(&id);
            let mut list = ticker.lock().unwrap_or_else(|e| e.into_inner());
            // A client too slow to take a tick just misses it (Push::Full).
            list.retain(|sse| sse.send(&event) != Push::Closed);
        }
    });

    server.run(move |req: &Request| match req.path() {
        "/" => Response::html(200, PAGE),
        "/events" => {
            let (resp, sse) = Sse::response(Some(Duration::from_secs(15)));
            let _ = sse.send(&Event::new(&now_utc()).event("tick").id("0"));
            streams.lock().unwrap_or_else(|e| e.into_inner()).push(sse);
            resp
        }
        _ => Response::text(404, "not found\n"),
    })?;
    Ok(())
}
