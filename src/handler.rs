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
}

impl<F> Handler for F
where
    F: FnMut(&Request<'_>) -> Response,
{
    fn handle(&mut self, req: &Request<'_>) -> Response {
        self(req)
    }
}
