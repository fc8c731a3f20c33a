//! `keel`: serve a directory over HTTP/1.1.
//!
//! Uses only the public API of `keelhttp`. Output goes through `writeln!` with
//! errors ignored (never `println!`, which panics on a closed or broken
//! stream), and the logger ignores write errors too.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use keelhttp::{
    AccessLog, Config, ErrorKind, ListenAddr, Listener, LogFormat, Privileges, Server, StaticFiles,
    StaticOptions,
};

const USAGE: &str = "\
keel - serve a directory over HTTP/1.1

Usage: keel [DIR] [OPTIONS]

Arguments:
  DIR               directory to serve [default: .]

Options:
  -p, --port N      TCP port [default: 8080]
  -a, --addr IP     address to listen on, IPv4 or IPv6 [default: 0.0.0.0; use :: for IPv6]
      --listen ADDR listen on ADDR (repeatable): IP:PORT, [IPv6]:PORT or
                    unix:PATH; replaces the --addr/--port default unless
                    those are given too. Sockets passed by systemd (socket
                    activation, LISTEN_FDS) replace all of these.
      --socket-mode MODE
                    file mode of the unix: sockets keel binds, octal [default: from umask]
      --max-connections N
                    connections served at once; past it a few more get a fast
                    503 with Retry-After, the rest wait [default: from RLIMIT_NOFILE]
      --header-timeout SECS
                    deadline for a whole request head from its first byte [default: 10]
      --idle-timeout SECS
                    how long an idle keep-alive connection is kept [default: 60]
      --stall-timeout SECS
                    how long a body read or response write may make no progress [default: 30]
      --drain-timeout SECS
                    on SIGTERM/SIGINT, how long responses in flight may take to
                    finish before they are cut [default: 10]
      --user NAME[:GROUP]
                    after binding (so ports below 1024 work), run as NAME
                    (and GROUP) and drop root for good
      --chroot DIR  after binding, chroot(2) to DIR (needs root)
      --status-path PATH
                    answer PATH with JSON counters (503 draining during shutdown) [default: off]
      --workers N|auto
                    serve with N worker processes under a supervisor that restarts
                    them; auto: one per CPU we may run on [default: 1, no supervisor]
      --access-log FILE
                    append one line per request to FILE; SIGUSR1 reopens it
                    (for logrotate) [default: stderr, unless RUST_LOG=warn]
      --log-format common|combined
                    access log format (NCSA Common or Combined) [default: combined]

Files:
      --index NAMES     comma-separated index files for directories [default: index.html]
      --list            list directories that have no index file
      --dotfiles        serve names starting with a dot (hidden by default)
      --mime EXT=TYPE   add or override a media type (repeatable), e.g. --mime wasm=application/wasm
      --cache-control VALUE
                        Cache-Control sent with files [default: none]
      --precompressed   serve F.br or F.gz beside F to clients that accept them
      --max-ranges N    most ranges in one request; 0 turns ranges off [default: 16]
      --file-cache BYTES
                        open-file cache: bytes of small files kept in memory (K, M, G
                        suffixes); 0 turns the cache off [default: 8M]
      --file-cache-entries N
                        most files in the cache [default: 1024]
      --file-cache-fds N
                        most open descriptors the cache keeps for larger files [default: 64]
  -h, --help        print this help
  -V, --version     print the version

Signals: SIGTERM or SIGINT drains (the listener closes at once, responses in
flight finish); a second one stops at once. SIGUSR1 reopens the access log
file. SIGHUP is ignored, except with --workers: it starts a new generation
of workers (re-reading the binary and the command line's files), then
drains the old one.

Exit status: 0 after a clean stop; 1 on a runtime error (e.g. the port is in
use); 2 on bad usage; 3 when the drain deadline passed (or a second signal
came) and connections were cut.

Logging: RUST_LOG=warn silences the access log on stderr (not a --access-log
file); RUST_LOG=debug shows more.
";

/// Exit status when the drain had to cut connections.
const EXIT_FORCED: u8 = 3;

struct Args {
    dir: PathBuf,
    addr: IpAddr,
    port: u16,
    /// `--addr` or `--port` was given: listen there even with `--listen`.
    addr_given: bool,
    listen: Vec<String>,
    socket_mode: Option<u32>,
    privileges: Privileges,
    access_log: Option<PathBuf>,
    log_format: LogFormat,
    config: Config,
    files: StaticOptions,
    /// `--workers`: run a supervisor with this many workers.
    workers: Option<usize>,
}

enum Parsed {
    Run(Box<Args>),
    Exit(ExitCode),
}

fn main() -> ExitCode {
    // Closed fds 0-2 need no care here: Rust's runtime reopens them on
    // /dev/null before `main`, so no socket can become stdout or stderr
    // (tests/incidents.rs pins it).
    // Started by a `--workers` supervisor: serve its sockets, never supervise.
    let generation = keelhttp::supervisor::worker_generation();
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Parsed::Run(a)) => a,
        Ok(Parsed::Exit(code)) => return code,
        Err(msg) => {
            let _ = writeln!(std::io::stderr(), "keel: {msg}\nTry 'keel --help'.");
            return ExitCode::from(2);
        }
    };
    init_logger(generation.map(|_| std::process::id()));
    match (generation, args.workers) {
        (Some(g), _) => {
            // A worker is a socket-activated keel (the supervisor set
            // LISTEN_FDS), sharing its sockets with the other workers.
            let mut args = args;
            args.config.generation = Some(g);
            args.config.shared_listener = true;
            run(&args)
        }
        (None, Some(n)) => supervise(&args, n),
        (None, None) => run(&args),
    }
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Parsed, String> {
    let mut dir = None;
    let mut addr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let mut port = 8080u16;
    let mut addr_given = false;
    let mut listen = Vec::new();
    let mut socket_mode = None;
    let mut privileges = Privileges::default();
    let mut access_log = None;
    let mut log_format = LogFormat::default();
    let mut config = Config::default();
    let mut files = StaticOptions::default();
    let mut workers = None;
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => {
                let _ = std::io::stdout().write_all(USAGE.as_bytes());
                return Ok(Parsed::Exit(ExitCode::SUCCESS));
            }
            "-V" | "--version" => {
                let _ = writeln!(std::io::stdout(), "keel {}", env!("CARGO_PKG_VERSION"));
                return Ok(Parsed::Exit(ExitCode::SUCCESS));
            }
            "-p" | "--port" => {
                let v = value("--port")?;
                port = v.parse().map_err(|_| format!("invalid port '{v}'"))?;
                addr_given = true;
            }
            "-a" | "--addr" => {
                let v = value("--addr")?;
                let v = v.trim_start_matches('[').trim_end_matches(']');
                addr = v.parse().map_err(|_| format!("invalid address '{v}'"))?;
                addr_given = true;
            }
            "--listen" => {
                let v = value("--listen")?;
                check_listen(&v)?;
                listen.push(v);
            }
            "--socket-mode" => {
                let v = value("--socket-mode")?;
                socket_mode = Some(
                    u32::from_str_radix(&v, 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .ok_or_else(|| format!("invalid octal file mode '{v}', e.g. 0660"))?,
                );
            }
            "--max-connections" => {
                let v = value("--max-connections")?;
                config.max_connections = v
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("invalid connection limit '{v}'"))?;
            }
            "--header-timeout" => config.header_timeout = positive(seconds(&value(&flag)?)?)?,
            "--idle-timeout" => config.idle_timeout = positive(seconds(&value(&flag)?)?)?,
            "--stall-timeout" => config.stall_timeout = positive(seconds(&value(&flag)?)?)?,
            "--drain-timeout" => config.drain_timeout = seconds(&value(&flag)?)?,
            "--access-log" => access_log = Some(PathBuf::from(value("--access-log")?)),
            "--log-format" => {
                let v = value("--log-format")?;
                log_format = LogFormat::parse(&v)
                    .ok_or_else(|| format!("--log-format is common or combined: '{v}'"))?;
            }
            "--user" => privileges.user = Some(value("--user")?),
            "--chroot" => privileges.chroot = Some(PathBuf::from(value("--chroot")?)),
            "--status-path" => {
                let v = value("--status-path")?;
                if !v.starts_with('/') {
                    return Err(format!("the status path must start with '/': '{v}'"));
                }
                config.status_path = Some(v);
            }
            "--index" => {
                let v = value("--index")?;
                files.index = v
                    .split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(String::from)
                    .collect();
                if files.index.iter().any(|n| n.contains('/')) {
                    return Err(format!("index names are plain file names: '{v}'"));
                }
            }
            "--workers" => {
                let v = value("--workers")?;
                workers = Some(if v == "auto" {
                    keelhttp::supervisor::available_cpus()
                } else {
                    v.parse()
                        .ok()
                        .filter(|&n| (1..=1024).contains(&n))
                        .ok_or_else(|| {
                            format!("--workers takes a number from 1 to 1024 or 'auto': '{v}'")
                        })?
                });
            }
            "--list" => files.list = true,
            "--dotfiles" => files.dotfiles = true,
            "--precompressed" => files.precompressed = true,
            "--mime" => {
                let v = value("--mime")?;
                let (ext, ty) = v
                    .split_once('=')
                    .filter(|(e, t)| !e.is_empty() && t.contains('/'))
                    .ok_or_else(|| {
                        format!("--mime takes EXT=TYPE, e.g. wasm=application/wasm: '{v}'")
                    })?;
                files.mime.push((ext.to_string(), ty.to_string()));
            }
            "--cache-control" => files.cache_control = Some(value("--cache-control")?),
            "--max-ranges" => {
                let v = value("--max-ranges")?;
                files.max_ranges = v
                    .parse()
                    .map_err(|_| format!("invalid number of ranges '{v}'"))?;
            }
            "--file-cache" => files.cache_bytes = bytes(&value(&flag)?)?,
            "--file-cache-entries" => files.cache_entries = count(&value(&flag)?)?,
            "--file-cache-fds" => files.cache_fds = count(&value(&flag)?)?,
            f if f.starts_with('-') && f != "-" => return Err(format!("unknown option '{f}'")),
            _ if dir.is_none() => dir = Some(PathBuf::from(arg)),
            _ => return Err(format!("unexpected argument '{arg}'")),
        }
    }
    Ok(Parsed::Run(Box::new(Args {
        dir: dir.unwrap_or_else(|| PathBuf::from(".")),
        addr,
        port,
        addr_given,
        listen,
        socket_mode,
        privileges,
        access_log,
        log_format,
        config,
        files,
        workers,
    })))
}

/// A byte count: digits with an optional K, M or G suffix (powers of 1024).
fn bytes(v: &str) -> Result<u64, String> {
    let (digits, shift) = match v.strip_suffix(['K', 'k']) {
        Some(d) => (d, 10),
        None => match v.strip_suffix(['M', 'm']) {
            Some(d) => (d, 20),
            None => match v.strip_suffix(['G', 'g']) {
                Some(d) => (d, 30),
                None => (v, 0),
            },
        },
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("invalid size '{v}' (e.g. 8M, 512K, 0)"))
}

fn count(v: &str) -> Result<usize, String> {
    v.parse().map_err(|_| format!("invalid count '{v}'"))
}

/// `unix:PATH` with a path, or `HOST:PORT`; resolving and binding come later
/// (a failure there is a runtime error, exit status 1).
fn check_listen(v: &str) -> Result<(), String> {
    match v.strip_prefix("unix:") {
        Some("") => Err(format!(
            "--listen unix: needs a path, e.g. unix:/run/keel.sock: '{v}'"
        )),
        Some(_) => Ok(()),
        None if v
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()) =>
        {
            Ok(())
        }
        None => Err(format!(
            "--listen takes IP:PORT, [IPv6]:PORT or unix:PATH: '{v}'"
        )),
    }
}

/// A timeout that would cut every connection at once is a mistake.
fn positive(d: Duration) -> Result<Duration, String> {
    if d.is_zero() {
        Err("this timeout must be more than 0 seconds".into())
    } else {
        Ok(d)
    }
}

/// Seconds, possibly fractional, from 0 to a day.
fn seconds(v: &str) -> Result<Duration, String> {
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 86_400.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("invalid number of seconds '{v}'"))
}

fn run(args: &Args) -> ExitCode {
    let handler = match StaticFiles::with_options(&args.dir, args.files.clone()) {
        Ok(h) => h,
        Err(e) => return fail(&format!("cannot serve {}: {e}", args.dir.display())),
    };
    let listeners = match listeners(args) {
        Ok(l) => l,
        Err(msg) => return fail(&msg),
    };
    let mut server = match Server::from_listeners(listeners, args.config.clone()) {
        Ok(s) => s,
        Err(e) => return fail(&e.to_string()),
    };
    // At once: the sockets accept from here on, so SIGHUP (ignored) and
    // SIGUSR1 (reopen) must not meet their default action, "terminate". The
    // signal thread only waits in sigwait(2); dropping privileges below
    // applies to it too.
    if let Err(e) = keelhttp::stop_on_signals(server.shutdown_handle()) {
        return fail(&format!("cannot set up signal handling: {e}"));
    }
    // The access log: a file if asked for, else stderr unless RUST_LOG
    // silences it (decided once, here). Either way the engine's buffered
    // writer: one write per 100 ms at most, never blocking the loop.
    let log = match &args.access_log {
        Some(path) => match AccessLog::file(path, args.log_format) {
            Ok(l) => Some(l),
            Err(e) => {
                return fail(&format!(
                    "cannot open the access log {}: {e}",
                    path.display()
                ))
            }
        },
        None if log::log_enabled!(target: "keelhttp::access", log::Level::Info) => {
            AccessLog::stderr(args.log_format).ok()
        }
        None => None,
    };
    if let Some(log) = log {
        server.set_access_log(log);
    }
    match server.notify_from_env() {
        Ok(true) => log::debug!("reporting to the service manager (NOTIFY_SOCKET)"),
        Ok(false) => {}
        Err(e) => return fail(&format!("NOTIFY_SOCKET: {e}")),
    }
    // Everything that needs root (ports below 1024, the served directory,
    // the log file) is open: become the unprivileged user now, before any
    // thread starts and before the first request.
    if let Err(e) = keelhttp::drop_privileges(&args.privileges) {
        return fail(&e.to_string());
    }
    let addrs: Vec<String> = server
        .listen_addrs()
        .iter()
        .map(|a| match a {
            ListenAddr::Ip(ip) => format!("http://{ip}/"),
            other => other.to_string(),
        })
        .collect();
    log::info!(
        "serving {} on {}",
        handler.root().display(),
        addrs.join(", ")
    );
    match server.run(handler) {
        Ok(report) if report.forced > 0 => {
            log::warn!("{} connections were cut at shutdown", report.forced);
            ExitCode::from(EXIT_FORCED)
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string()),
    }
}

/// `--workers N`: bind here (or take the sockets systemd passed), then
/// supervise N workers that serve them. The directory is checked first, so
/// a typo is one clear error rather than a crash loop.
fn supervise(args: &Args, workers: usize) -> ExitCode {
    if let Err(e) = StaticFiles::with_options(&args.dir, args.files.clone()) {
        return fail(&format!("cannot serve {}: {e}", args.dir.display()));
    }
    let listeners = match listeners(args) {
        Ok(l) => l,
        Err(msg) => return fail(&msg),
    };
    let mut fds = Vec::with_capacity(listeners.len());
    for l in listeners {
        let addr = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
        log::info!("listening on {addr} with {workers} workers");
        let name = l.name().unwrap_or("http").to_string();
        fds.push((std::os::fd::OwnedFd::from(l), name));
    }
    let sup = match keelhttp::Supervisor::new(workers, fds) {
        Ok(s) => s,
        Err(e) => return fail(&format!("cannot start the supervisor: {e}")),
    };
    match sup.run() {
        Ok(code) => ExitCode::from(code),
        Err(e) => fail(&format!("supervisor failed: {e}")),
    }
}

/// The sockets to serve: those systemd passed (socket activation), else the
/// `--listen` addresses plus `--addr/--port` (the default when no `--listen`).
fn listeners(args: &Args) -> Result<Vec<Listener>, String> {
    let activated = keelhttp::activated_listeners().map_err(|e| e.to_string())?;
    if !activated.is_empty() {
        for l in &activated {
            let addr = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
            log::info!(
                "socket activation: {addr} ({})",
                l.name().unwrap_or("unnamed")
            );
        }
        // A worker's command line is its supervisor's: no news there.
        if (!args.listen.is_empty() || args.addr_given) && args.config.generation.is_none() {
            log::warn!("sockets passed by the service manager replace --listen/--addr/--port");
        }
        return Ok(activated);
    }
    let mut out = Vec::new();
    if args.listen.is_empty() || args.addr_given {
        let addr = SocketAddr::new(args.addr, args.port);
        out.push(Listener::bind_tcp(addr).map_err(|e| {
            if e.kind() == ErrorKind::AddrInUse {
                format!("port {} is in use (on {addr})", args.port)
            } else {
                format!("cannot listen on {addr}: {}", e.io_error())
            }
        })?);
    }
    for spec in &args.listen {
        let bound = match spec.strip_prefix("unix:") {
            Some(path) => Listener::bind_unix(path, args.socket_mode),
            None => Listener::bind(spec),
        };
        out.push(bound.map_err(|e| match e.kind() {
            ErrorKind::AddrInUse => format!("{spec} is in use: {}", e.io_error()),
            _ => format!("cannot listen on {spec}: {}", e.io_error()),
        })?);
    }
    Ok(out)
}

fn fail(msg: &str) -> ExitCode {
    // Straight to stderr when RUST_LOG filters this module's errors out (a
    // global level check is not enough: filters are per target).
    if log::log_enabled!(log::Level::Error) {
        log::error!("{msg}");
    } else {
        let _ = writeln!(std::io::stderr(), "keel: {msg}");
    }
    ExitCode::from(1)
}

/// env_logger on stderr, `info` unless RUST_LOG says otherwise. Write errors
/// (a closed or broken stderr) are ignored by env_logger, so logging can never
/// fail a request.
/// A worker's lines say which worker wrote them.
fn init_logger(worker: Option<u32>) {
    let env = env_logger::Env::default().default_filter_or("info");
    let tag = worker.map_or(String::new(), |pid| format!("[worker {pid}] "));
    env_logger::Builder::from_env(env)
        .format(move |buf, record| {
            writeln!(
                buf,
                "{} {:<5} {tag}{}",
                keelhttp::http_date(SystemTime::now()),
                record.level(),
                record.args()
            )
        })
        .init();
}
