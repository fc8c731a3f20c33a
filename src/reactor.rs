//! The event loop: one `mio::Poll`, a `Slab` of connections keyed by token,
//! the listeners (each on a token of its own) and the waker on fixed tokens,
//! one timer heap, a local queue for work that no new edge will announce,
//! and the drain. Service hooks: sd_notify (`notify.rs`) and the access log
//! (`access_log.rs`) are called at fixed points of `turn`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use log::{debug, info, warn};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::access_log::Writer;
use crate::conn::{Conn, Ctx, Pool};
use crate::encode::DateCache;
use crate::listener::{ListenAddr, Listener, MioListener, Stream};
use crate::notify::Notifier;
use crate::ratelimit::{LogLimit, Logs, Suppressed};
use crate::shutdown::{Shared, DRAIN, NOW};
use crate::{Config, Error, Handler, Report, Stats};

const WAKER: Token = Token(usize::MAX - 1);
/// Listener `i` is on token `LISTENERS - i` (slab keys never come near).
const LISTENERS: usize = usize::MAX - 2;
const MAX_LISTENERS: usize = 1 << 16;
/// The handler's own descriptor ([`Handler::watch_fd`]), below the listeners.
const HANDLER: Token = Token(LISTENERS - MAX_LISTENERS);
/// Accepts per turn before the loop serves its existing connections again.
const ACCEPTS_PER_TURN: usize = 128;
/// How long access log lines may wait in the buffer before one write.
const LOG_FLUSH_AFTER: Duration = Duration::from_millis(100);
/// Back-off before accepting again after `EMFILE` and friends.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    Running,
    Draining { deadline: Instant },
    Stopped,
}

/// The engine behind [`Server`](crate::Server).
#[derive(Debug)]
pub(crate) struct Reactor {
    poll: Poll,
    events: Events,
    /// The listening sockets; emptied when the drain begins.
    listeners: Vec<Listening>,
    addrs: Vec<ListenAddr>,
    conns: Slab<Conn<Stream>>,
    /// (deadline, slot): at most about one live entry per connection; see
    /// `arm`. Stale entries are recognised by `Conn::armed` and skipped.
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    ready: VecDeque<usize>,
    pool: Pool,
    logs: Logs,
    accept_log: LogLimit,
    started: Instant,
    date: DateCache,
    pub(crate) stats: Stats,
    pub(crate) config: Config,
    pub(crate) shared: Arc<Shared>,
    life: Life,
    now: Instant,
    /// Some listener said readable and `accept` has not yet hit `WouldBlock`
    /// on it (each listener keeps its own flag).
    accept_pending: bool,
    accept_retry_at: Option<Instant>,
    drained: usize,
    forced: usize,
    /// Whether the handler was asked for its [`Handler::watch_fd`].
    handler_polled: bool,
    /// The handler's descriptor is registered (`HANDLER`).
    handler_fd: bool,
    /// sd_notify (service manager), when asked for: see `notify.rs`.
    notify: Option<Notifier>,
    /// The buffered access log, if set: see `flush_access_log`.
    access_log: Option<Writer>,
    /// When the access log's buffered lines are due to be written.
    log_since: Option<Instant>,
    /// Reused by `wake_streams` (issue 13).
    woken: Vec<usize>,
}

/// One listening socket and whether it may have connections queued.
#[derive(Debug)]
struct Listening {
    socket: MioListener,
    pending: bool,
}

impl Reactor {
    pub(crate) fn new(listeners: Vec<Listener>, config: Config) -> Result<Reactor, Error> {
        let poll = Poll::new().map_err(Error::poll)?;
        if listeners.is_empty() || listeners.len() > MAX_LISTENERS {
            return Err(Error::bind(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a server needs at least one listener (and not more than 65536)",
            )));
        }
        let mut listening = Vec::with_capacity(listeners.len());
        let mut addrs = Vec::with_capacity(listeners.len());
        for (i, l) in listeners.into_iter().enumerate() {
            let name = l.name().map(str::to_string);
            let socket = l.into_mio().map_err(Error::bind)?;
            let addr = socket.local_addr().ok_or_else(|| {
                Error::bind(io::Error::new(io::ErrorKind::InvalidInput, "no address"))
            })?;
            register_listener(&poll, &socket, Token(LISTENERS - i)).map_err(Error::poll)?;
            match name {
                Some(n) => debug!("listening on {addr} ({n})"),
                None => debug!("listening on {addr}"),
            }
            addrs.push(addr);
            // Connections may have queued before the first poll.
            listening.push(Listening {
                socket,
                pending: true,
            });
        }
        let waker = mio::Waker::new(poll.registry(), WAKER).map_err(Error::poll)?;
        Ok(Reactor {
            poll,
            events: Events::with_capacity(256),
            listeners: listening,
            addrs,
            conns: Slab::new(),
            timers: BinaryHeap::new(),
            ready: VecDeque::new(),
            pool: Pool::default(),
            logs: Logs::default(),
            accept_log: LogLimit::default(),
            started: Instant::now(),
            date: DateCache::new(),
            stats: Stats::default(),
            config,
            shared: Arc::new(Shared::new(waker)),
            life: Life::Running,
            now: Instant::now(),
            accept_pending: true, // connections may have queued before the first poll
            accept_retry_at: None,
            drained: 0,
            forced: 0,
            handler_polled: false,
            handler_fd: false,
            notify: None,
            access_log: None,
            log_since: None,
            woken: Vec::new(),
        })
    }

    /// The first TCP listener's address (`0.0.0.0:0` if there is none).
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addrs
            .iter()
            .find_map(|a| match a {
                ListenAddr::Ip(a) => Some(*a),
                ListenAddr::Unix(_) => None,
            })
            .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
    }

    /// Every listener's address, in the order given.
    pub(crate) fn addrs(&self) -> &[ListenAddr] {
        &self.addrs
    }

    pub(crate) fn report(&self) -> Report {
        let mut stats = self.stats;
        stats.connections = self.conns.len();
        Report {
            drained: self.drained,
            forced: self.forced,
            stats,
        }
    }

    /// One turn of the loop. Returns `Ok(false)` once the server has stopped.
    pub(crate) fn turn<H: Handler>(
        &mut self,
        handler: &mut H,
        timeout: Option<Duration>,
    ) -> Result<bool, Error> {
        self.now = Instant::now();
        self.check_shutdown();
        if self.check_finished() {
            self.flush_access_log(true);
            return Ok(false);
        }
        if !self.handler_polled {
            self.handler_polled = true;
            if let Some(fd) = handler.watch_fd() {
                let raw = fd.as_raw_fd();
                self.poll
                    .registry()
                    .register(&mut SourceFd(&raw), HANDLER, Interest::READABLE)
                    .map_err(Error::poll)?;
                handler.on_ready(); // anything that happened before
                self.handler_fd = true;
            }
        }
        self.notify_tick(); // READY=1 on the first turn; watchdog pings
        let timeout = self.next_timeout(timeout);
        let mut events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        let polled = self.poll.poll(&mut events, timeout);
        self.now = Instant::now();
        self.date.update(SystemTime::now());
        self.notify_tick();
        let complete = polled.is_ok(); // not interrupted: the events say all
        match polled {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => events.clear(),
            Err(e) => {
                self.events = events;
                return Err(Error::poll(e));
            }
        }
        // The handler's events first: a file changed before a request was
        // sent is seen before that request is served.
        if events.iter().any(|ev| ev.token() == HANDLER) {
            handler.on_ready();
        } else if self.handler_fd && complete {
            handler.polled();
        }
        for ev in events.iter() {
            match ev.token() {
                HANDLER => {} // read before the other events, above
                // The shutdown state is re-read below; streams with news
                // are queued (issue 13).
                WAKER => self.wake_streams(),
                Token(t) if t > LISTENERS - MAX_LISTENERS => {
                    let i = LISTENERS.checked_sub(t).unwrap_or(usize::MAX);
                    if let Some(l) = self.listeners.get_mut(i) {
                        l.pending = true;
                        self.accept_pending = true;
                    }
                }
                Token(key) => {
                    if let Some(conn) = self.conns.get_mut(key) {
                        // Errors and hang-ups are hints: the next read or
                        // write says what really happened.
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            conn.readable = true;
                        }
                        if ev.is_read_closed() || ev.is_error() {
                            conn.read_closed = true;
                        }
                        if ev.is_writable() || ev.is_write_closed() || ev.is_error() {
                            conn.writable = true;
                        }
                        self.drive(key, handler);
                    }
                }
            }
        }
        self.events = events;
        self.check_shutdown();
        self.accept(handler);
        for _ in 0..self.ready.len() {
            let Some(key) = self.ready.pop_front() else {
                break;
            };
            if let Some(conn) = self.conns.get_mut(key) {
                conn.queued = false;
                self.drive(key, handler);
            }
        }
        self.fire_timers();
        self.flush_access_log(false);
        Ok(true)
    }

    /// Issue 13: queues the connections whose deferred reply or stream has
    /// news (see `stream::Hub`).
    fn wake_streams(&mut self) {
        let mut woken = std::mem::take(&mut self.woken);
        self.shared.hub.take(&mut woken);
        for key in woken.drain(..) {
            if let Some(conn) = self.conns.get_mut(key) {
                if !conn.queued {
                    conn.queued = true;
                    self.ready.push_back(key);
                }
            }
        }
        self.woken = woken;
    }

    fn ctx(&mut self) -> (&mut Slab<Conn<Stream>>, Ctx<'_>) {
        let draining = matches!(self.life, Life::Draining { .. });
        let connections = self.conns.len();
        (
            &mut self.conns,
            Ctx {
                config: &self.config,
                now: self.now,
                date: &self.date,
                stats: &mut self.stats,
                pool: &mut self.pool,
                logs: &mut self.logs,
                draining,
                shutdown: &self.shared,
                key: usize::MAX,
                connections,
                started: self.started,
                access_log: self.access_log.as_mut(),
            },
        )
    }

    fn drive<H: Handler>(&mut self, key: usize, handler: &mut H) {
        let (conns, mut ctx) = self.ctx();
        let Some(conn) = conns.get_mut(key) else {
            return;
        };
        ctx.key = key;
        let again = conn.drive(&mut ctx, handler);
        self.settle(key, again);
    }

    /// After a connection has run: free it, queue it, re-register its
    /// interest if the phase changed it, and arm its timer.
    fn settle(&mut self, key: usize, again: bool) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.is_closed() {
            self.conns.remove(key); // dropping the stream closes it
            if self.conns.is_empty() {
                // Only stale entries remain: an idle server must sleep in
                // epoll_wait with no timeout, not wake for them.
                self.timers.clear();
            }
            if self.accept_retry_at.is_some() {
                self.accept_retry_at = None; // a descriptor is free again
            }
            if matches!(self.life, Life::Draining { .. }) {
                self.drained += 1;
            }
            return;
        }
        if again && !conn.queued {
            conn.queued = true;
            self.ready.push_back(key);
        }
        let want = conn.interest();
        if conn.registered != Some(want) {
            let registry = self.poll.registry();
            let done = match conn.registered {
                None => registry.register(&mut conn.io, Token(key), want),
                Some(_) => registry.reregister(&mut conn.io, Token(key), want),
            };
            match done {
                Ok(()) => conn.registered = Some(want),
                Err(e) => {
                    warn!("cannot register a connection with the poller: {e}; closing it");
                    self.conns.remove(key);
                    return;
                }
            }
        }
        if let Some(d) = conn.deadline {
            if conn.armed.is_none_or(|a| d < a) {
                self.timers.push(Reverse((d, key)));
                conn.armed = Some(d);
            }
        }
    }

    fn fire_timers(&mut self) {
        while let Some(&Reverse((at, key))) = self.timers.peek() {
            if at > self.now {
                break;
            }
            self.timers.pop();
            let (conns, mut ctx) = self.ctx();
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            if conn.armed != Some(at) {
                continue; // stale: a later entry or another connection's
            }
            conn.armed = None;
            match conn.deadline {
                Some(d) if d <= ctx.now => conn.on_timeout(&mut ctx),
                _ => {} // moved later: `settle` re-arms it
            }
            self.settle(key, false);
        }
    }

    fn next_timeout(&self, caller: Option<Duration>) -> Option<Duration> {
        if !self.ready.is_empty() || (self.accept_pending && self.can_accept()) {
            return Some(Duration::ZERO);
        }
        let mut t = caller;
        let mut consider = |at: Instant| {
            let d = at.saturating_duration_since(self.now);
            t = Some(t.map_or(d, |x| x.min(d)));
        };
        if let Some(Reverse((at, _))) = self.timers.peek() {
            consider(*at);
        }
        if let Life::Draining { deadline } = self.life {
            consider(deadline);
        }
        if let Some(at) = self.notify.as_ref().and_then(Notifier::deadline) {
            consider(at);
        }
        if let (Some(at), false) = (self.accept_retry_at, self.listeners.is_empty()) {
            consider(at);
        }
        if let Some(at) = self.log_since {
            consider(at);
        }
        t
    }

    fn can_accept(&self) -> bool {
        !self.listeners.is_empty()
            && self.conns.len() < self.accept_limit()
            && self.accept_retry_at.is_none_or(|at| at <= self.now)
    }

    /// Connections served plus those accepted only to be refused with a 503.
    fn accept_limit(&self) -> usize {
        self.config
            .max_connections
            .saturating_add(self.config.overflow())
    }

    fn accept<H: Handler>(&mut self, handler: &mut H) {
        if !self.accept_pending || !self.can_accept() {
            return;
        }
        let before = self.stats.accepted;
        self.accept_some(handler);
        if self.config.shared_listener && self.stats.accepted != before {
            for (i, l) in self.listeners.iter().enumerate() {
                take_turns(&self.poll, &l.socket, Token(LISTENERS - i));
            }
        }
    }

    fn accept_some<H: Handler>(&mut self, handler: &mut H) {
        self.accept_retry_at = None;
        // Round-robin over the listeners with connections queued, so one
        // busy listener cannot starve the others.
        let mut i = 0;
        for _ in 0..ACCEPTS_PER_TURN {
            if self.conns.len() >= self.accept_limit() {
                // Left in the kernel's queue; retried when a slot frees.
                return;
            }
            let overloaded = self.conns.len() >= self.config.max_connections;
            let n = self.listeners.len();
            let Some(at) = (0..n)
                .map(|k| (i + k) % n)
                .find(|&k| self.listeners[k].pending)
            else {
                self.accept_pending = false;
                return;
            };
            i = at + 1;
            match self.listeners[at].socket.accept() {
                Ok((stream, peer)) => {
                    // Read at once; the connection is registered with the
                    // poller only when it must wait (`settle`), so a request
                    // answered within its first read costs no `epoll_ctl`.
                    let key = self.conns.insert(Conn::new(
                        stream,
                        peer, // None: a Unix-socket peer
                        self.now,
                        &self.config,
                        overloaded,
                    ));
                    self.stats.accepted += 1;
                    self.drive(key, handler);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.listeners[at].pending = false;
                }
                Err(e)
                    if e.kind() == io::ErrorKind::Interrupted
                        || e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM: the queued connection
                    // stays queued; try again after a back-off or when one of
                    // ours closes. Never spin, never log per attempt.
                    self.accept_retry_at = Some(self.now + ACCEPT_BACKOFF);
                    handler.release_fds();
                    if let Some(n) = self.accept_log.allow(self.now) {
                        warn!(
                            "accept failed: {e}; pausing new connections ({} open){}",
                            self.conns.len(),
                            Suppressed(n)
                        );
                    }
                    return;
                }
            }
        }
    }

    /// Acts on a shutdown request. Re-read on every turn: the state is the
    /// source of truth, the waker only shortens the wait.
    fn check_shutdown(&mut self) {
        let requested = self.shared.requested();
        if requested >= NOW && self.life != Life::Stopped {
            self.forced += self.conns.len();
            if !self.conns.is_empty() {
                info!("stopping now: closing {} connections", self.conns.len());
            }
            self.conns.clear();
            self.close_listener();
            self.life = Life::Stopped;
        } else if requested >= DRAIN && self.life == Life::Running {
            self.close_listener();
            self.life = Life::Draining {
                deadline: crate::conn::deadline_after(self.now, self.config.drain_timeout),
            };
            info!("draining {} connections", self.conns.len());
            if let (Some(n), Life::Draining { deadline }) = (&mut self.notify, self.life) {
                n.stopping(self.now, self.conns.len(), deadline);
            }
            let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
            for key in keys {
                let (conns, mut ctx) = self.ctx();
                // `again`: a request already received is served below.
                let again = conns.get_mut(key).is_some_and(|c| c.begin_drain(&mut ctx));
                self.settle(key, again);
            }
        }
    }

    fn close_listener(&mut self) {
        // Nothing left to accept: a pending retry must not keep the poll
        // timeout at zero.
        self.accept_retry_at = None;
        self.accept_pending = false;
        for (l, addr) in self.listeners.drain(..).zip(&self.addrs) {
            deregister_listener(&self.poll, &l.socket);
            debug!("listener on {addr} closed");
        }
    }

    /// Reports to the service manager from the loop itself: `READY=1` once
    /// (every listener is registered, so accepting), then whatever is due
    /// (a watchdog ping, a drain report).
    fn notify_tick(&mut self) {
        let Some(n) = &mut self.notify else {
            return;
        };
        match self.life {
            Life::Running => {
                n.ready(self.now, self.listeners.len());
                n.tick(self.now, self.conns.len(), None);
            }
            Life::Draining { deadline } => n.tick(self.now, self.conns.len(), Some(deadline)),
            Life::Stopped => {}
        }
    }

    /// Writes the access log's lines once the oldest is [`LOG_FLUSH_AFTER`]
    /// old (the buffer also writes itself when full), at once when `now` or
    /// before a reopen: one `write(2)` for many requests even when each loop
    /// turn serves only one.
    fn flush_access_log(&mut self, now: bool) {
        if let Some(w) = &mut self.access_log {
            let reopen = self.shared.take_reopen();
            if !w.has_pending() {
                self.log_since = None;
            } else if now || reopen || self.log_since.is_some_and(|t| self.now >= t) {
                w.flush();
                self.log_since = None;
            } else if self.log_since.is_none() {
                self.log_since = Some(self.now + LOG_FLUSH_AFTER);
            }
            if reopen {
                w.reopen();
            }
            self.stats.log_dropped = w.dropped;
        }
    }

    pub(crate) fn set_access_log(&mut self, w: Writer) {
        self.access_log = Some(w);
    }

    pub(crate) fn set_notifier(&mut self, n: Notifier) {
        self.notify = Some(n);
    }

    /// Whether the server has stopped (a drain that finished or timed out).
    fn check_finished(&mut self) -> bool {
        match self.life {
            Life::Running => false,
            Life::Stopped => true,
            Life::Draining { deadline } => {
                if !self.conns.is_empty() && self.now < deadline {
                    return false;
                }
                if !self.conns.is_empty() {
                    // Issue 13: replies still deferred get a 503 `draining`.
                    let (conns, mut ctx) = self.ctx();
                    for (_, conn) in conns.iter_mut() {
                        conn.cut(&mut ctx);
                    }
                    // Lingering connections got their whole response: they
                    // only waited for the client's FIN.
                    let lingering = self.conns.iter().filter(|(_, c)| c.is_lingering()).count();
                    self.drained += lingering;
                    self.forced += self.conns.len() - lingering;
                    self.conns.clear();
                }
                info!(
                    "shutdown complete: {} connections drained, {} forced",
                    self.drained, self.forced
                );
                self.life = Life::Stopped;
                if let Some(n) = &mut self.notify {
                    n.stopped();
                }
                true
            }
        }
    }
}

// ---- The listener's registration: one wake-up per connection, in turns ----
//
// Several worker processes may wait on one shared listening socket (`keel
// --workers`). Registered the usual way, every worker wakes for every new
// connection and all but one find nothing (a thundering herd). With
// `EPOLLEXCLUSIVE` the kernel wakes one waiting worker, but always the
// first in the socket's wait queue that is idle, so one worker takes most
// connections under a light load. After accepting, a worker with
// `Config::shared_listener` re-registers (delete + add), which moves it to
// the back of that queue: the next connection wakes the other worker.
// Nothing is lost meanwhile: the add reports a connection already waiting.
// README "Balancing" has the measurements behind this choice.

fn register_listener(poll: &Poll, l: &MioListener, token: Token) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    crate::sys::epoll_add_exclusive(poll.as_raw_fd(), l.as_raw_fd(), token.0 as u64)
}

/// Registered with `epoll_ctl` directly (mio has no `EPOLLEXCLUSIVE`), so
/// removed the same way. Required before closing: a listener shared with
/// other processes stays open, and its registration would keep stealing
/// wake-ups from the workers that still accept.
fn deregister_listener(poll: &Poll, l: &MioListener) {
    use std::os::fd::AsRawFd;
    if let Err(e) = crate::sys::epoll_del(poll.as_raw_fd(), l.as_raw_fd()) {
        warn!("cannot deregister the listener: {e}");
    }
}

/// To the back of the listener's wait queue (see above).
fn take_turns(poll: &Poll, l: &MioListener, token: Token) {
    deregister_listener(poll, l);
    if let Err(e) = register_listener(poll, l, token) {
        warn!("cannot re-register the listener: {e}");
    }
}
