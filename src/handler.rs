//! The [`Handler`] trait.

use crate::{Request, Response};

/// Turns a request into a response. Runs on the server's one thread, so it
/// needs neither `Send` nor `Sync`, and may keep `Rc`/`RefCell` state.
///
/// Implemented for every `FnMut(&Request) -> Response`. A handler that panics
/// costs that request a 500 and its connection; the server carries on.
///
/// ```
/// use std::cell::Cell;
/// use keelhttp::{Handler, Request, Response};
///
/// struct Counter(Cell<u64>);
/// impl Handler for Counter {
///     fn handle(&mut self, _req: &Request<'_>) -> Response {
///         self.0.set(self.0.get() + 1);
///         Response::text(200, format!("{}\n", self.0.get()))
///     }
/// }
/// ```
pub trait Handler {
    /// Answers one request. The handler should not block: every other
    /// connection waits while it runs.
    fn handle(&mut self, req: &Request<'_>) -> Response;

    /// Opts a request into a streamed body: called once the head of a
    /// request with a body has arrived, before any of the body is read.
    /// `Some(max)` streams the body to this handler, whatever its size up to
    /// `max` bytes (413 past it, in either framing): [`handle`](Self::handle)
    /// is then called at once, with an empty [`Request::body`] and the
    /// body's reader in [`Request::body_reader`]. `None` (the default)
    /// buffers the body up to `Config::max_body_bytes` as usual.
    fn stream_body(&mut self, req: &Request<'_>) -> Option<u64> {
        let _ = req;
        None
    }
}

impl<F> Handler for F
where
    F: FnMut(&Request<'_>) -> Response,
{
    fn handle(&mut self, req: &Request<'_>) -> Response {
        self(req)
    }
}
