//! Calling the handler: the panic guard, the status endpoint, the access log.

use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};

use log::{error, info};

use super::{Ctx, Info, Peer};
use crate::access_log::Entry;
use crate::error::ErrorCode;
use crate::parse::{self, Head};
use crate::ratelimit::Suppressed;
use crate::{header, Handler, Request, Response};

/// Calls the handler with a panic guard and writes the access-log line.
pub(super) fn call<H: Handler>(
    handler: &mut H,
    head: &Head<'_, '_>,
    body: &[u8],
    peer: Option<SocketAddr>,
    ctx: &mut Ctx<'_>,
    upload: Option<&crate::stream::ReaderSlot>,
) -> (Response, Info) {
    let req = Request {
        method: head.method,
        target: head.target,
        version: head.version,
        headers: head.headers,
        body,
        peer,
        upload,
    };
    ctx.stats.requests += 1;
    let mut info = Info {
        version: head.version,
        keep_alive: head.keep_alive,
        is_head: head.method == "HEAD",
    };
    let status_endpoint = ctx
        .config
        .status_path
        .as_deref()
        .is_some_and(|p| p == req.path() && matches!(req.method, "GET" | "HEAD"));
    let mut resp = if status_endpoint {
        status_response(ctx)
    } else {
        match catch_unwind(AssertUnwindSafe(|| handler.handle(&req))) {
            Ok(resp) => resp,
            Err(payload) => {
                ctx.stats.panics += 1;
                if let Some(n) = ctx.logs.panic.allow(ctx.now) {
                    let msg = payload
                        .downcast_ref::<&str>()
                        .copied()
                        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                        .unwrap_or("(non-string payload)");
                    error!(
                        "{} handler panicked on {} {}: {msg}{}",
                        Peer(peer),
                        head.method,
                        head.target,
                        Suppressed(n)
                    );
                }
                info.keep_alive = false;
                Response::error(ErrorCode::Internal, "the handler failed")
            }
        }
    };
    if resp.error_code().is_some()
        && req
            .header(header::ACCEPT)
            .is_some_and(|a| parse::accepts_json(a.as_bytes()))
    {
        resp.render_error_as_json();
    }
    match ctx.access_log.as_deref_mut() {
        // The server's own buffered writer: one write per loop turn.
        Some(w) => w.record(
            &Entry {
                peer,
                method: head.method,
                target: head.target,
                version: head.version.as_str(),
                status: resp.status(),
                bytes: if info.is_head { 0 } else { resp.body().len() },
                referer: req.header_bytes(header::REFERER),
                user_agent: req.header_bytes(header::USER_AGENT),
            },
            ctx.date.secs(),
        ),
        None => info!(
            target: "keelhttp::access",
            "{} \"{} {} {}\" {} {}",
            Peer(peer),
            head.method,
            head.target,
            head.version,
            resp.status(),
            resp.body().len()
        ),
    }
    (resp, info)
}

/// The status endpoint's answer: JSON counters; 503 `draining` once
/// shutdown has begun, so a load balancer moves on.
fn status_response(ctx: &Ctx<'_>) -> Response {
    let st = &ctx.stats;
    let uptime = ctx.now.duration_since(ctx.started).as_secs_f64();
    let mut body = format!(
        "{{\"uptime\":{uptime:.3},\"connections\":{},\"requests\":{},\"bytes_sent\":{},\
         \"disconnects\":{},\"timeouts\":{},\"rejected\":{},\"log_dropped\":{},\"draining\":{}",
        ctx.connections,
        st.requests,
        st.bytes_sent,
        st.disconnects,
        st.timeouts,
        st.rejected,
        st.log_dropped,
        ctx.draining
    );
    // Which process answered: with `--workers`, each worker has its own.
    body.push_str(&format!(",\"pid\":{}", std::process::id()));
    if let Some(g) = ctx.config.generation {
        body.push_str(&format!(",\"generation\":{g}"));
    }
    if ctx.draining {
        body.push_str(
            ",\"error\":{\"code\":\"draining\",\"message\":\"the server is shutting down\"}}\n",
        );
        Response::new(ErrorCode::Draining.status())
            .with_header(header::CONTENT_TYPE, "application/json")
            .with_header(header::RETRY_AFTER, "1")
            .with_header(header::CACHE_CONTROL, "no-store")
            .with_body(body)
    } else {
        body.push_str("}\n");
        Response::new(200)
            .with_header(header::CONTENT_TYPE, "application/json")
            .with_header(header::CACHE_CONTROL, "no-store")
            .with_body(body)
    }
}
