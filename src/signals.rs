//! [`stop_on_signals`]: SIGTERM and SIGINT drain the server, a second one
//! stops it at once, SIGUSR1 reopens the access log, SIGHUP is ignored.

use std::io;

use log::{info, warn};

use crate::ShutdownHandle;

/// What [`stop_on_signals`] does with each signal it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SignalAction {
    /// The first SIGTERM or SIGINT: [`ShutdownHandle::shutdown`].
    Drain,
    /// A later SIGTERM or SIGINT: [`ShutdownHandle::shutdown_now`].
    StopNow,
    /// SIGHUP: there is no log file to reopen, so nothing (and never the
    /// default action, which would terminate the process).
    Ignore,
}

/// The action for the `nth` (from 1) SIGTERM/SIGINT, or for SIGHUP.
fn action(signal: libc::c_int, nth_stop: usize) -> SignalAction {
    match signal {
        libc::SIGHUP => SignalAction::Ignore,
        _ if nth_stop <= 1 => SignalAction::Drain,
        _ => SignalAction::StopNow,
    }
}

/// Routes SIGTERM and SIGINT to `handle`: the first begins a graceful
/// drain, the second stops at once. SIGUSR1 reopens the access log file
/// ([`ShutdownHandle::reopen_access_log`]). SIGHUP is received and ignored.
///
/// No signal handler is installed: the three signals are blocked in the
/// calling thread, and a small thread waits for them with `sigwait(2)` and
/// calls the handle. So nothing async-signal-unsafe ever runs in a handler,
/// and a signal can never be lost between a check and a wait.
///
/// Call it from the main thread **before** starting other threads: threads
/// inherit the mask, and a thread started earlier that does not block the
/// signals would take them with their default action (terminate).
///
/// ```no_run
/// let server = keelhttp::Server::bind("127.0.0.1:8080", keelhttp::Config::default())?;
/// keelhttp::stop_on_signals(server.shutdown_handle())?;
/// let report = server.run(|_req: &keelhttp::Request| keelhttp::Response::text(200, "hi\n"))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// The signal mask cannot be changed or the thread cannot be started.
pub fn stop_on_signals(handle: ShutdownHandle) -> io::Result<()> {
    const SIGNALS: [libc::c_int; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGUSR1];
    crate::sys::block_signals(&SIGNALS)?;
    std::thread::Builder::new()
        .name("keel-signals".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut stops = 0;
            loop {
                let sig = match crate::sys::wait_signal(&SIGNALS) {
                    Ok(sig) => sig,
                    Err(e) => {
                        warn!("waiting for signals failed: {e}");
                        return;
                    }
                };
                if sig == libc::SIGUSR1 {
                    handle.reopen_access_log();
                    continue;
                }
                if sig != libc::SIGHUP {
                    stops += 1;
                }
                match action(sig, stops) {
                    SignalAction::Drain => {
                        info!("signal {sig}: draining (send it again to stop at once)");
                        handle.shutdown();
                    }
                    SignalAction::StopNow => {
                        info!("signal {sig} again: stopping now");
                        handle.shutdown_now();
                    }
                    SignalAction::Ignore => info!("SIGHUP: no log file to reopen; ignored"),
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_stop_signal_drains_the_second_stops_hup_is_ignored() {
        assert_eq!(action(libc::SIGTERM, 1), SignalAction::Drain);
        assert_eq!(action(libc::SIGINT, 2), SignalAction::StopNow);
        assert_eq!(action(libc::SIGHUP, 0), SignalAction::Ignore);
    }
}
