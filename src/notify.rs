//! sd_notify: telling the service manager (systemd, or anything speaking
//! its protocol) how the server is doing, over the Unix datagram socket
//! named by `NOTIFY_SOCKET` (a path, or `@name` for an abstract socket).
//!
//! Every message is sent by the event loop itself, never by a side thread:
//! `READY=1` on the first turn (every listener is registered and accepting),
//! `WATCHDOG=1` at half of `WATCHDOG_USEC` as a reactor timer (so a wedged
//! loop stops the pings and systemd restarts the service), `STOPPING=1` when
//! the drain starts and `EXTEND_TIMEOUT_USEC` while it lasts. With no
//! watchdog asked for, no timer is armed: an idle server still sleeps with
//! no timeout. Sends never block (the socket is non-blocking) and a failed
//! send is logged, rate-limited, and otherwise ignored.

use std::fmt::Write as _;
use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

use log::{debug, warn};

use crate::ratelimit::{LogLimit, Suppressed};

/// How often a drain in progress re-announces itself (status, and more time).
const DRAIN_REPORT: Duration = Duration::from_secs(5);
/// Slack added to the remaining drain time in `EXTEND_TIMEOUT_USEC`.
const EXTEND_SLACK: Duration = Duration::from_secs(5);

/// The connection to the service manager.
#[derive(Debug)]
pub(crate) struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// Half of `WATCHDOG_USEC`, when the manager asked for pings.
    ping_every: Option<Duration>,
    next_ping: Option<Instant>,
    next_drain_report: Option<Instant>,
    ready: bool,
    log: LogLimit,
    msg: String,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`, and removes
    /// them from the environment (so no child process reports in our name).
    /// `Ok(None)` when `NOTIFY_SOCKET` is not set.
    pub(crate) fn from_env() -> io::Result<Option<Notifier>> {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return Ok(None);
        };
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        for v in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            std::env::remove_var(v);
        }
        let path = path
            .into_string()
            .map_err(|_| invalid("NOTIFY_SOCKET is not UTF-8"))?;
        let for_us = pid
            .as_deref()
            .is_none_or(|p| p.trim().parse::<u32>().ok() == Some(std::process::id()));
        let watchdog = match usec.as_deref().map(|u| u.trim().parse::<u64>()) {
            Some(Ok(u)) if u > 0 && for_us => Some(Duration::from_micros(u)),
            Some(Err(_)) => return Err(invalid("WATCHDOG_USEC is not a number")),
            _ => None,
        };
        Notifier::new(&path, watchdog).map(Some)
    }

    /// A notifier for the socket at `path` (`@name`: abstract), pinging at
    /// half of `watchdog` if given.
    pub(crate) fn new(path: &str, watchdog: Option<Duration>) -> io::Result<Notifier> {
        let addr = socket_addr(path)?;
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        let ping_every = watchdog.map(|w| (w / 2).max(Duration::from_millis(1)));
        Ok(Notifier {
            socket,
            addr,
            ping_every,
            next_ping: None,
            next_drain_report: None,
            ready: false,
            log: LogLimit::default(),
            msg: String::with_capacity(128),
        })
    }

    fn send(&mut self, now: Instant) {
        match self.socket.send_to_addr(self.msg.as_bytes(), &self.addr) {
            Ok(_) => debug!("sd_notify: {}", self.msg.replace('\n', " ")),
            Err(e) => {
                if let Some(n) = self.log.allow(now) {
                    warn!("sd_notify failed: {e}{}", Suppressed(n));
                }
            }
        }
    }

    /// The first turn: every listener accepts. Sends `READY=1` once.
    pub(crate) fn ready(&mut self, now: Instant, listeners: usize) {
        if self.ready {
            return;
        }
        self.ready = true;
        self.msg.clear();
        let _ = write!(
            self.msg,
            "READY=1\nSTATUS=serving on {listeners} listener{}\nMAINPID={}",
            if listeners == 1 { "" } else { "s" },
            std::process::id()
        );
        self.send(now);
        self.next_ping = self.ping_every.map(|p| now + p);
    }

    /// When the loop must wake next for the manager (a watchdog ping, a
    /// drain report); `None` when nothing is due, so an idle server without
    /// a watchdog sleeps with no timeout.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match (self.next_ping, self.next_drain_report) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Called by the loop after every poll: sends what is due.
    pub(crate) fn tick(
        &mut self,
        now: Instant,
        connections: usize,
        drain_deadline: Option<Instant>,
    ) {
        if let (Some(at), Some(every)) = (self.next_ping, self.ping_every) {
            if now >= at {
                self.msg.clear();
                self.msg.push_str("WATCHDOG=1");
                self.send(now);
                self.next_ping = Some(now + every);
            }
        }
        if let (Some(at), Some(deadline)) = (self.next_drain_report, drain_deadline) {
            if now >= at {
                self.draining(now, connections, deadline);
            }
        }
    }

    /// The drain starts: `STOPPING=1`, the status, and more time to stop.
    pub(crate) fn stopping(&mut self, now: Instant, connections: usize, deadline: Instant) {
        self.msg.clear();
        self.msg.push_str("STOPPING=1\n");
        self.push_drain(now, connections, deadline);
        self.send(now);
        self.next_drain_report = Some(now + DRAIN_REPORT);
    }

    fn draining(&mut self, now: Instant, connections: usize, deadline: Instant) {
        self.msg.clear();
        self.push_drain(now, connections, deadline);
        self.send(now);
        self.next_drain_report = Some(now + DRAIN_REPORT);
    }

    fn push_drain(&mut self, now: Instant, connections: usize, deadline: Instant) {
        let left = deadline.saturating_duration_since(now) + EXTEND_SLACK;
        let _ = write!(
            self.msg,
            "STATUS=draining {connections} connection{}\nEXTEND_TIMEOUT_USEC={}",
            if connections == 1 { "" } else { "s" },
            left.as_micros()
        );
    }

    /// Sends `text` as it is (the `--workers` supervisor's own messages).
    pub(crate) fn send_text(&mut self, now: Instant, text: &str) {
        self.msg.clear();
        self.msg.push_str(text);
        self.send(now);
    }

    /// Half of `WATCHDOG_USEC`, when the manager asked for pings.
    pub(crate) fn ping_every(&self) -> Option<Duration> {
        self.ping_every
    }

    /// The server has stopped: no more timers.
    pub(crate) fn stopped(&mut self) {
        self.next_ping = None;
        self.next_drain_report = None;
    }
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.to_string())
}

fn socket_addr(path: &str) -> io::Result<SocketAddr> {
    if let Some(name) = path.strip_prefix('@') {
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            return SocketAddr::from_abstract_name(name.as_bytes());
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = name;
            return Err(invalid("abstract sockets exist on Linux only"));
        }
    }
    if !path.starts_with('/') {
        return Err(invalid("NOTIFY_SOCKET must be an absolute path or @name"));
    }
    SocketAddr::from_pathname(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recv(s: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = s.recv(&mut buf).expect("a message");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn ready_once_pings_on_time_and_stopping_extends() {
        let name = format!("keel-notify-test-{}", std::process::id());
        let manager = {
            use std::os::linux::net::SocketAddrExt;
            let a = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
            UnixDatagram::bind_addr(&a).unwrap()
        };
        manager
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut n = Notifier::new(&format!("@{name}"), Some(Duration::from_secs(2))).unwrap();
        assert_eq!(n.deadline(), None, "nothing due before READY");
        let t0 = Instant::now();
        n.ready(t0, 2);
        n.ready(t0, 2); // once only
        assert!(recv(&manager).starts_with("READY=1\nSTATUS=serving on 2 listeners"));
        assert_eq!(n.deadline(), Some(t0 + Duration::from_secs(1)));
        n.tick(t0 + Duration::from_millis(500), 0, None); // not due
        n.tick(t0 + Duration::from_secs(1), 0, None);
        assert_eq!(recv(&manager), "WATCHDOG=1"); // and not a second READY
        let end = t0 + Duration::from_secs(11);
        n.stopping(t0 + Duration::from_secs(1), 3, end);
        assert_eq!(
            recv(&manager),
            "STOPPING=1\nSTATUS=draining 3 connections\nEXTEND_TIMEOUT_USEC=15000000"
        );
    }

    #[test]
    fn without_a_watchdog_nothing_wakes_the_loop() {
        let mut n = Notifier::new("/nonexistent/notify.sock", None).unwrap();
        n.ready(Instant::now(), 1); // the send fails: logged, never an error
        assert_eq!(n.deadline(), None);
    }

    #[test]
    fn a_relative_path_is_refused() {
        assert!(Notifier::new("relative.sock", None).is_err());
    }
}
