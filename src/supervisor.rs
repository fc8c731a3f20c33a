//! [`Supervisor`]: `keel --workers N`. A small parent process that holds the
//! listening sockets, starts N workers by re-executing the binary with the
//! sockets passed the way systemd passes them (`LISTEN_FDS`, fds 3..), so a
//! worker is exactly a socket-activated keel, restarts workers that die with
//! an exponential back-off that never gives up, forwards SIGTERM/SIGINT, and
//! reloads on SIGHUP with no downtime (a new generation first, then the old
//! one drains). It does no HTTP and holds no request state.
//!
//! Policy, used by the binary; the process calls live in `sys.rs`.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};

use crate::notify::Notifier;
use crate::sys;

/// The environment variable that makes a keel process a worker: the
/// generation it belongs to (1, then +1 per reload). Set by the supervisor,
/// read (and removed) by [`worker_generation`].
pub const WORKER_ENV: &str = "KEEL_WORKER_GENERATION";

/// First restart delay after a worker dies; it doubles per death.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The longest restart delay: a crash loop slows down to this, never stops.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A worker that lived this long resets its slot's back-off.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);
/// A worker that never says `READY=1` counts as ready after this long, so
/// a reload completes even with a worker binary that cannot notify.
const READY_FALLBACK: Duration = Duration::from_secs(5);
/// How often readiness messages are looked for while a worker starts.
const READY_POLL: Duration = Duration::from_millis(20);
/// After a second stop signal, workers still alive this long are killed.
const KILL_AFTER: Duration = Duration::from_secs(2);

const SIGNALS: [libc::c_int; 5] = [
    libc::SIGCHLD,
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGUSR1,
];

/// Blocked in a worker from its first instruction: keel waits for these
/// (`stop_on_signals`) once it runs; one sent earlier (a stop or a log
/// reopen just after a start) waits for it rather than killing it.
const WORKER_BLOCKED: [libc::c_int; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGUSR1];

/// Variables a worker must not inherit from the supervisor's own
/// environment (they describe the supervisor's activation, not the worker's).
const SCRUBBED: [&str; 7] = [
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    WORKER_ENV,
];

/// If this process was started by a [`Supervisor`], its generation; the
/// variable is removed so no child inherits it. Call it once, early in
/// `main`, before starting threads.
pub fn worker_generation() -> Option<u64> {
    let g = std::env::var(WORKER_ENV).ok()?;
    std::env::remove_var(WORKER_ENV);
    g.parse().ok()
}

/// The number of CPUs this process may run on (`sched_getaffinity`, as
/// `std::thread::available_parallelism` reads it), at least 1.
pub fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs and watches N worker processes over a set of listening sockets.
///
/// ```no_run
/// let l = std::net::TcpListener::bind("127.0.0.1:8080")?;
/// let sup = keelhttp::Supervisor::new(2, vec![(l.into(), "http".into())])?;
/// let code = sup.run()?; // until SIGTERM/SIGINT; SIGHUP reloads
/// std::process::exit(code.into());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Supervisor {
    count: usize,
    /// The supervisor's copies, above the fds the workers receive them at.
    listeners: Vec<OwnedFd>,
    names: String,
    exe: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    slots: Vec<Slot>,
    /// Old-generation workers, sent SIGTERM, not yet exited.
    retiring: Vec<Worker>,
    generation: u64,
    stopping: Option<Stop>,
    /// The service manager (`NOTIFY_SOCKET`), if there is one.
    notify: Option<Notifier>,
    /// `READY=1` has been sent for the current generation.
    announced: bool,
    next_ping: Option<Instant>,
    /// Worst exit status of workers that ended during the stop.
    worst: u8,
    spawned: u64,
}

#[derive(Debug)]
struct Stop {
    signals: u32,
    kill_at: Option<Instant>,
}

#[derive(Debug, Default)]
struct Slot {
    /// The worker serving for this slot.
    up: Option<Worker>,
    /// A newer generation's worker, starting; it replaces `up` once ready.
    next: Option<Worker>,
    backoff: Duration,
    restart_at: Option<Instant>,
}

#[derive(Debug)]
struct Worker {
    pid: libc::pid_t,
    generation: u64,
    started: Instant,
    ready: bool,
    /// Its last `WATCHDOG=1`.
    last_ping: Option<Instant>,
    /// Where this worker's `NOTIFY_SOCKET` messages arrive.
    notify: Option<UnixDatagram>,
}

impl Supervisor {
    /// `count` workers over `listeners` (each with the name workers see in
    /// `LISTEN_FDNAMES`). The workers run this process's own executable
    /// (resolved now, so a new binary installed at the same path is what a
    /// reload starts) with the same arguments.
    ///
    /// # Errors
    /// `count` is 0, or the executable or a descriptor cannot be found.
    pub fn new(count: usize, listeners: Vec<(OwnedFd, String)>) -> io::Result<Supervisor> {
        if count == 0 || listeners.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a supervisor needs at least one worker and one listener",
            ));
        }
        // Keep our copies above 3 + n, so the child's dup2 into 3.. never
        // overwrites a source it has yet to copy.
        let min = 3 + listeners.len() as i32 + 16;
        let mut fds = Vec::with_capacity(listeners.len());
        let mut names = Vec::with_capacity(listeners.len());
        for (fd, name) in listeners {
            fds.push(sys::dup_above(fd.as_raw_fd(), min)?);
            names.push(name.replace(':', "_"));
        }
        let env = std::env::vars_os()
            .filter(|(k, _)| !SCRUBBED.iter().any(|s| k == s))
            .collect();
        Ok(Supervisor {
            count,
            listeners: fds,
            names: names.join(":"),
            exe: std::env::current_exe()?,
            args: std::env::args_os().collect(),
            env,
            slots: (0..count)
                .map(|_| Slot {
                    backoff: BACKOFF_MIN,
                    ..Slot::default()
                })
                .collect(),
            retiring: Vec::new(),
            generation: 1,
            stopping: None,
            notify: None,
            announced: false,
            next_ping: None,
            worst: 0,
            spawned: 0,
        })
    }

    /// Starts the workers and supervises them until a SIGTERM or SIGINT has
    /// stopped them all. Returns the exit status for the process: the worst
    /// of the workers' statuses at the stop (a worker killed by signal S
    /// counts as 128 + S).
    ///
    /// SIGUSR1 is passed on to the workers (each reopens its access log).
    /// Blocks SIGCHLD, SIGTERM, SIGINT, SIGHUP and SIGUSR1 in the calling
    /// thread (they are waited for with `sigtimedwait`); call it from a
    /// single-threaded process.
    ///
    /// # Errors
    /// Signals cannot be blocked or waited for.
    pub fn run(mut self) -> io::Result<u8> {
        sys::block_signals(&SIGNALS)?;
        match Notifier::from_env() {
            Ok(n) => self.notify = n,
            Err(e) => warn!("NOTIFY_SOCKET: {e}; not reporting to the service manager"),
        }
        if let Some(every) = self.notify.as_ref().and_then(Notifier::ping_every) {
            // Workers ping us at the manager's period; we ping the manager
            // only while every worker does (see `watchdog`).
            let usec = (every * 2).as_micros().to_string();
            self.env.push(("WATCHDOG_USEC".into(), usec.into()));
            self.next_ping = Some(Instant::now() + every);
        }
        info!(
            "supervisor {}: starting {} workers",
            std::process::id(),
            self.count
        );
        for i in 0..self.count {
            self.start(i);
        }
        loop {
            let now = Instant::now();
            self.tick(now);
            if self.stopping.is_some() && self.alive() == 0 {
                info!("all workers have exited; status {}", self.worst);
                return Ok(self.worst);
            }
            let timeout = self.timeout(now);
            match sys::wait_signal_timeout(&SIGNALS, timeout)? {
                Some(libc::SIGCHLD) => self.reap(),
                Some(libc::SIGHUP) => self.reload(),
                Some(sig @ (libc::SIGTERM | libc::SIGINT)) => self.stop(sig),
                Some(libc::SIGUSR1) => {
                    // Each worker reopens its access log (logrotate).
                    info!("SIGUSR1: passed to the workers");
                    for pid in self.pids() {
                        let _ = sys::kill(pid, libc::SIGUSR1);
                    }
                }
                _ => {}
            }
        }
    }

    fn alive(&self) -> usize {
        let slots: usize = self
            .slots
            .iter()
            .map(|s| s.up.is_some() as usize + s.next.is_some() as usize)
            .sum();
        slots + self.retiring.len()
    }

    fn up(&self) -> usize {
        self.slots.iter().filter(|s| s.up.is_some()).count()
    }

    /// Timers and readiness: restarts that are due, workers that said
    /// `READY=1`, new generations that replace old ones.
    fn tick(&mut self, now: Instant) {
        if let Some(stop) = &mut self.stopping {
            if stop.kill_at.is_some_and(|at| at <= now) {
                stop.kill_at = None;
                for pid in self.pids() {
                    warn!("worker {pid} still running; killing it");
                    let _ = sys::kill(pid, libc::SIGKILL);
                }
            }
            return;
        }
        for i in 0..self.slots.len() {
            if self.slots[i].restart_at.is_some_and(|at| at <= now) {
                self.slots[i].restart_at = None;
                self.start(i);
            }
        }
        let mut promoted = false;
        for slot in &mut self.slots {
            for w in [slot.up.as_mut(), slot.next.as_mut()].into_iter().flatten() {
                let was = w.ready;
                w.read_messages(now);
                if !was && w.ready {
                    debug!("worker {} (generation {}) is ready", w.pid, w.generation);
                }
            }
            if slot.next.as_ref().is_some_and(|w| w.ready) {
                let new = slot.next.take();
                if let Some(old) = std::mem::replace(&mut slot.up, new) {
                    info!(
                        "worker {} (generation {}) replaced; draining it",
                        old.pid, old.generation
                    );
                    let _ = sys::kill(old.pid, libc::SIGTERM);
                    self.retiring.push(old);
                }
                promoted = true;
            }
        }
        if promoted {
            self.status();
        }
        let all_ready = self
            .slots
            .iter()
            .all(|s| s.next.is_none() && s.up.as_ref().is_some_and(|w| w.ready));
        if all_ready && !self.announced {
            self.announced = true;
            let text = format!(
                "READY=1\nSTATUS={} workers up (generation {})\nMAINPID={}",
                self.count,
                self.generation,
                std::process::id()
            );
            self.tell(now, &text);
        }
        self.watchdog(now);
    }

    /// `WATCHDOG=1` to the manager every half period, but only while every
    /// worker that is up has pinged us within the period: a wedged worker
    /// stops the pings, and the manager restarts the service.
    fn watchdog(&mut self, now: Instant) {
        let (Some(at), Some(every)) = (
            self.next_ping,
            self.notify.as_ref().and_then(Notifier::ping_every),
        ) else {
            return;
        };
        if now < at {
            return;
        }
        self.next_ping = Some(now + every);
        let period = every * 2;
        let silent: Vec<libc::pid_t> = self
            .slots
            .iter()
            .filter_map(|s| s.up.as_ref())
            .filter(|w| now.duration_since(w.last_ping.unwrap_or(w.started)) > period)
            .map(|w| w.pid)
            .collect();
        if silent.is_empty() {
            self.tell(now, "WATCHDOG=1");
        } else {
            warn!("workers {silent:?} have not reported in; no watchdog ping");
        }
    }

    fn tell(&mut self, now: Instant, text: &str) {
        if let Some(n) = &mut self.notify {
            n.send_text(now, text);
        }
    }

    fn timeout(&self, now: Instant) -> Option<Duration> {
        let mut t: Option<Instant> = None;
        let mut consider = |at: Instant| t = Some(t.map_or(at, |x| x.min(at)));
        if let Some(stop) = &self.stopping {
            if let Some(at) = stop.kill_at {
                consider(at);
            }
        } else {
            if let Some(at) = self.next_ping {
                consider(at);
            }
            for slot in &self.slots {
                if let Some(at) = slot.restart_at {
                    consider(at);
                }
                for w in [&slot.up, &slot.next].into_iter().flatten() {
                    if !w.ready {
                        consider(now + READY_POLL);
                    }
                }
            }
        }
        t.map(|at| at.saturating_duration_since(now))
    }

    fn pids(&self) -> Vec<libc::pid_t> {
        let mut v: Vec<_> = self.retiring.iter().map(|w| w.pid).collect();
        for s in &self.slots {
            v.extend(s.up.iter().chain(s.next.iter()).map(|w| w.pid));
        }
        v
    }

    /// Starts a worker for slot `i`, as its `up` if it has none, else as its
    /// `next` (a reload). A failed fork is retried after the back-off.
    fn start(&mut self, i: usize) {
        let generation = self.generation;
        self.spawned += 1;
        let (notify, notify_name) = match notify_socket(self.spawned) {
            Ok(pair) => (Some(pair.0), Some(pair.1)),
            Err(e) => {
                warn!("no readiness socket for a worker: {e}");
                (None, None)
            }
        };
        let mut env = self.env.clone();
        env.push(("LISTEN_FDS".into(), self.listeners.len().to_string().into()));
        env.push(("LISTEN_FDNAMES".into(), self.names.clone().into()));
        env.push((WORKER_ENV.into(), generation.to_string().into()));
        if let Some(name) = notify_name {
            env.push(("NOTIFY_SOCKET".into(), name.into()));
        }
        let fds = self.listeners.iter().map(|f| f.as_raw_fd()).collect();
        let spawned = sys::ExecPlan::new(&self.exe, &self.args, &env, fds)
            .and_then(|mut plan| sys::spawn_worker(&mut plan, &WORKER_BLOCKED));
        let slot = &mut self.slots[i];
        match spawned {
            Ok(pid) => {
                info!("worker {pid} started (slot {i}, generation {generation})");
                let w = Worker {
                    pid,
                    generation,
                    started: Instant::now(),
                    ready: false,
                    last_ping: None,
                    notify,
                };
                if slot.up.is_none() {
                    slot.up = Some(w);
                } else {
                    slot.next = Some(w);
                }
                self.status();
            }
            Err(e) => {
                error!("cannot start a worker: {e}");
                slot.schedule_restart(Instant::now());
            }
        }
    }

    /// Reaps every child that exited, logs how, and schedules restarts.
    fn reap(&mut self) {
        while let Some((pid, status)) = sys::reap_child() {
            let now = Instant::now();
            if self.stopping.is_some() {
                self.worst = self.worst.max(exit_code(status));
            }
            if let Some(k) = self.retiring.iter().position(|w| w.pid == pid) {
                let w = self.retiring.swap_remove(k);
                info!(
                    "worker {pid} (generation {}) exited after its drain: {}",
                    w.generation,
                    describe(status)
                );
                continue;
            }
            let Some(i) = self.slots.iter().position(|s| {
                s.up.as_ref().is_some_and(|w| w.pid == pid)
                    || s.next.as_ref().is_some_and(|w| w.pid == pid)
            }) else {
                debug!("reaped {pid}, not a worker of ours: {}", describe(status));
                continue;
            };
            let slot = &mut self.slots[i];
            let w = if slot.next.as_ref().is_some_and(|w| w.pid == pid) {
                slot.next.take()
            } else {
                slot.up.take()
            };
            let Some(w) = w else { continue };
            if self.stopping.is_some() {
                info!("worker {pid} exited: {}", describe(status));
                continue;
            }
            let lived = now.duration_since(w.started);
            if lived >= HEALTHY_AFTER {
                slot.backoff = BACKOFF_MIN;
            }
            if slot.up.is_none() && slot.next.is_some() {
                // The old worker died while its replacement starts: the
                // replacement serves now.
                slot.up = slot.next.take();
            }
            let behind = slot
                .up
                .as_ref()
                .is_none_or(|u| u.generation < self.generation);
            if slot.next.is_none() && behind {
                // Nothing up, or only an old generation's worker (a reload's
                // new worker died before it was ready): start one after the
                // back-off.
                let delay = slot.backoff;
                slot.schedule_restart(now);
                error!(
                    "worker {pid} (slot {i}, generation {}) died after {:.1} s: {}; \
                     restarting in {} ms",
                    w.generation,
                    lived.as_secs_f64(),
                    describe(status),
                    delay.as_millis()
                );
            } else {
                error!(
                    "worker {pid} (slot {i}, generation {}) died after {:.1} s: {}",
                    w.generation,
                    lived.as_secs_f64(),
                    describe(status)
                );
            }
            self.status();
        }
    }

    /// SIGHUP: a new generation of workers; each old worker drains as soon
    /// as its replacement is ready.
    fn reload(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        self.generation += 1;
        info!("SIGHUP: starting generation {}", self.generation);
        self.announced = false; // READY=1 again once the new generation is up
        let text = format!(
            "RELOADING=1\nSTATUS=reloading: starting generation {}",
            self.generation
        );
        self.tell(Instant::now(), &text);
        for i in 0..self.slots.len() {
            if let Some(w) = self.slots[i].next.take() {
                // A replacement from an earlier reload, still starting: the
                // newer generation supersedes it.
                let _ = sys::kill(w.pid, libc::SIGTERM);
                self.retiring.push(w);
            }
            self.slots[i].restart_at = None;
            self.start(i);
        }
    }

    /// SIGTERM/SIGINT: every worker drains; a second signal stops them at
    /// once (forwarded, so each closes its connections itself), and any
    /// still alive after [`KILL_AFTER`] are killed.
    fn stop(&mut self, sig: libc::c_int) {
        let stop = self.stopping.get_or_insert(Stop {
            signals: 0,
            kill_at: None,
        });
        stop.signals += 1;
        if stop.signals == 1 {
            // Our copies of the sockets go now: once every worker has begun
            // its drain (and closed its own), new connections are refused
            // rather than left waiting in a queue nobody accepts from.
            self.listeners.clear();
            let n = self.pids().len();
            info!("signal {sig}: draining {n} workers");
            let text = format!("STOPPING=1\nSTATUS=draining {n} workers");
            self.tell(Instant::now(), &text);
        } else {
            info!("signal {sig} again: stopping the workers now");
            stop.kill_at = Some(Instant::now() + KILL_AFTER);
        }
        for slot in &mut self.slots {
            slot.restart_at = None;
        }
        for pid in self.pids() {
            let _ = sys::kill(pid, sig);
        }
    }

    /// Logs how many workers are up, and tells the manager (`STATUS=`).
    fn status(&mut self) {
        let text = format!(
            "{} of {} workers up (generation {})",
            self.up(),
            self.count,
            self.generation
        );
        info!("{text}");
        self.tell(Instant::now(), &format!("STATUS={text}"));
    }
}

impl Slot {
    fn schedule_restart(&mut self, now: Instant) {
        self.restart_at = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }
}

impl Worker {
    /// Reads what the worker sent to its `NOTIFY_SOCKET`: `READY=1` makes
    /// it ready (as does living [`READY_FALLBACK`] without it), `WATCHDOG=1`
    /// is remembered for the supervisor's own pings.
    fn read_messages(&mut self, now: Instant) {
        let mut buf = [0u8; 512];
        if let Some(sock) = &self.notify {
            for _ in 0..64 {
                let Ok(n) = sock.recv(&mut buf) else {
                    break; // WouldBlock: nothing more
                };
                for line in buf[..n].split(|&b| b == b'\n') {
                    match line {
                        b"READY=1" => self.ready = true,
                        b"WATCHDOG=1" => self.last_ping = Some(now),
                        _ => {}
                    }
                }
            }
        }
        if !self.ready && now.duration_since(self.started) >= READY_FALLBACK {
            warn!(
                "worker {} sent no READY=1 in {} s; counting it as ready",
                self.pid,
                READY_FALLBACK.as_secs()
            );
            self.ready = true;
        }
    }
}

/// A non-blocking datagram socket on an abstract address, for one worker's
/// `NOTIFY_SOCKET`, and that address as the worker sees it (`@name`).
fn notify_socket(n: u64) -> io::Result<(UnixDatagram, String)> {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("keel-supervisor-{}-{n}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    let sock = UnixDatagram::bind_addr(&addr)?;
    sock.set_nonblocking(true)?;
    Ok((sock, format!("@{name}")))
}

/// A worker's exit as a process exit status: its code, or 128 + signal.
fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(c), _) => c.clamp(0, 255) as u8,
        (None, Some(s)) => (128 + s).clamp(0, 255) as u8,
        _ => 1,
    }
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}{}", signal_name(s)),
        _ => format!("{status:?}"),
    }
}

fn signal_name(s: i32) -> &'static str {
    match s {
        libc::SIGKILL => " (SIGKILL)",
        libc::SIGTERM => " (SIGTERM)",
        libc::SIGSEGV => " (SIGSEGV)",
        libc::SIGABRT => " (SIGABRT)",
        libc::SIGINT => " (SIGINT)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_thirty_seconds() {
        let mut s = Slot {
            backoff: BACKOFF_MIN,
            ..Slot::default()
        };
        let now = Instant::now();
        let mut gaps = Vec::new();
        for _ in 0..12 {
            s.schedule_restart(now);
            gaps.push(s.restart_at.map(|at| at - now).unwrap_or_default());
        }
        assert_eq!(gaps[0], Duration::from_millis(100));
        assert_eq!(gaps[1], Duration::from_millis(200));
        assert_eq!(gaps[8], Duration::from_millis(25_600));
        assert_eq!(gaps[9], BACKOFF_MAX);
        assert_eq!(gaps[11], BACKOFF_MAX);
    }

    #[test]
    fn exit_codes_rank_signals_worst() {
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(libc::SIGKILL)), 137);
    }
}
