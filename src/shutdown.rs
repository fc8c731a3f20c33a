//! [`ShutdownHandle`]: begins a graceful drain from any thread.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

pub(crate) const RUNNING: u8 = 0;
pub(crate) const DRAIN: u8 = 1;
pub(crate) const NOW: u8 = 2;

#[derive(Debug)]
pub(crate) struct Shared {
    state: AtomicU8,
    /// The access log should be reopened (SIGUSR1).
    reopen: AtomicBool,
    waker: mio::Waker,
}

impl Shared {
    pub(crate) fn new(waker: mio::Waker) -> Shared {
        Shared {
            state: AtomicU8::new(RUNNING),
            reopen: AtomicBool::new(false),
            waker,
        }
    }

    /// A state with a waker on a poller of its own, for unit tests.
    #[cfg(test)]
    pub(crate) fn detached() -> Shared {
        let poll = mio::Poll::new().expect("poll");
        let waker = mio::Waker::new(poll.registry(), mio::Token(0)).expect("waker");
        Shared::new(waker)
    }

    /// What has been asked for so far; the loop re-reads it every turn, so a
    /// request can never be missed between a check and a wait.
    pub(crate) fn requested(&self) -> u8 {
        self.state.load(Ordering::Acquire)
    }

    /// Whether a reopen was asked for since the last call.
    pub(crate) fn take_reopen(&self) -> bool {
        self.reopen.swap(false, Ordering::AcqRel)
    }

    fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            log::warn!("cannot wake the server loop: {e}");
        }
    }

    fn request(&self, level: u8) {
        self.state.fetch_max(level, Ordering::AcqRel);
        if let Err(e) = self.waker.wake() {
            log::warn!("cannot wake the server loop: {e}");
        }
    }
}

/// Stops a [`Server`](crate::Server). `Clone + Send + Sync`: call it from a
/// signal thread, another thread, or inside a handler. Calling it before
/// `run`, twice, or after the server has stopped is harmless.
///
/// ```no_run
/// let server = keelhttp::Server::bind("127.0.0.1:0", keelhttp::Config::default())?;
/// let stop = server.shutdown_handle();
/// std::thread::spawn(move || {
///     std::thread::sleep(std::time::Duration::from_secs(5));
///     stop.shutdown();
/// });
/// let report = server.run(|_req: &keelhttp::Request| keelhttp::Response::text(200, "hi\n"))?;
/// log::info!("{} connections drained", report.drained);
/// # Ok::<(), keelhttp::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    pub(crate) shared: Arc<Shared>,
}

impl ShutdownHandle {
    /// Begins a graceful drain: the listener closes at once (the port is free
    /// again), idle connections close, requests in progress get their full
    /// response with `Connection: close`, and `run` returns when every
    /// connection has closed or `Config::drain_timeout` has passed.
    pub fn shutdown(&self) {
        self.shared.request(DRAIN);
    }

    /// Stops at once: every connection is closed on the next turn of the loop.
    pub fn shutdown_now(&self) {
        self.shared.request(NOW);
    }

    /// Asks the loop to reopen its access log file (after logrotate or `mv`
    /// moved it away); the loop does it on its next turn. Harmless without
    /// an access log file. [`stop_on_signals`](crate::stop_on_signals)
    /// calls it on SIGUSR1.
    pub fn reopen_access_log(&self) {
        self.shared.reopen.store(true, Ordering::Release);
        self.shared.wake();
    }
}
