//! The [`Handler`] trait.

use std::os::fd::BorrowedFd;

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

    /// A descriptor the server's loop should poll for readability on the
    /// handler's behalf (an inotify instance, an eventfd, a timerfd): when it
    /// becomes readable, the loop calls [`on_ready`](Self::on_ready) before it
    /// serves the requests of the same turn. Asked once, on the first turn.
    /// Default: none.
    fn watch_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    /// [`watch_fd`](Self::watch_fd) became readable. Edge-triggered: read it
    /// until it would block. Default: nothing.
    fn on_ready(&mut self) {}

    /// The loop polled and [`watch_fd`](Self::watch_fd) was not readable:
    /// nothing new on it as of now (no syscall needed to know). Called once
    /// a turn, only for a handler with a `watch_fd`. Default: nothing.
    fn polled(&mut self) {}

    /// The process ran out of file descriptors (`accept` failed with
    /// `EMFILE` or `ENFILE`): close what can be spared, such as cached
    /// files. Default: nothing.
    fn release_fds(&mut self) {}

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
