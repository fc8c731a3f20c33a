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

use keelhttp::{Config, ErrorKind, Server, StaticFiles, StaticOptions};

const USAGE: &str = "\
keel - serve a directory over HTTP/1.1

Usage: keel [DIR] [OPTIONS]

Arguments:
  DIR               directory to serve [default: .]

Options:
  -p, --port N      TCP port [default: 8080]
  -a, --addr IP     address to listen on, IPv4 or IPv6 [default: 0.0.0.0; use :: for IPv6]
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
      --status-path PATH
                    answer PATH with JSON counters (503 draining during shutdown) [default: off]
      --workers N|auto
                    serve with N worker processes under a supervisor that restarts
                    them; auto: one per CPU we may run on [default: 1, no supervisor]

Files:
      --index NAMES     comma-separated index files for directories [default: index.html]
      --list            list directories that have no index file
      --dotfiles        serve names starting with a dot (hidden by default)
      --mime EXT=TYPE   add or override a media type (repeatable), e.g. --mime wasm=application/wasm
      --cache-control VALUE
                        Cache-Control sent with files [default: none]
      --precompressed   serve F.br or F.gz beside F to clients that accept them
      --max-ranges N    most ranges in one request; 0 turns ranges off [default: 16]
  -h, --help        print this help
  -V, --version     print the version

Signals: SIGTERM or SIGINT drains (the listener closes at once, responses in
flight finish); a second one stops at once. SIGHUP is ignored, except with
--workers: it starts a new generation of workers (re-reading the binary and
the command line's files), then drains the old one.

Exit status: 0 after a clean stop; 1 on a runtime error (e.g. the port is in
use); 2 on bad usage; 3 when the drain deadline passed (or a second signal
came) and connections were cut.

Logging: RUST_LOG=warn silences the access log; RUST_LOG=debug shows more.
";

/// Exit status when the drain had to cut connections.
const EXIT_FORCED: u8 = 3;

struct Args {
    dir: PathBuf,
    addr: IpAddr,
    port: u16,
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
        (Some(g), _) => run_worker(&args, g),
        (None, Some(n)) => supervise(&args, n),
        (None, None) => run(&args),
    }
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Parsed, String> {
    let mut dir = None;
    let mut addr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let mut port = 8080u16;
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
            }
            "-a" | "--addr" => {
                let v = value("--addr")?;
                let v = v.trim_start_matches('[').trim_end_matches(']');
                addr = v.parse().map_err(|_| format!("invalid address '{v}'"))?;
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
            f if f.starts_with('-') && f != "-" => return Err(format!("unknown option '{f}'")),
            _ if dir.is_none() => dir = Some(PathBuf::from(arg)),
            _ => return Err(format!("unexpected argument '{arg}'")),
        }
    }
    Ok(Parsed::Run(Box::new(Args {
        dir: dir.unwrap_or_else(|| PathBuf::from(".")),
        addr,
        port,
        config,
        files,
        workers,
    })))
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
    let addr = SocketAddr::new(args.addr, args.port);
    let server = match Server::bind(addr, args.config.clone()) {
        Ok(s) => s,
        Err(e) if e.kind() == ErrorKind::AddrInUse => {
            return fail(&format!("port {} is in use (on {addr})", args.port))
        }
        Err(e) => return fail(&format!("cannot listen on {addr}: {}", e.io_error())),
    };
    serve(server, handler)
}

/// `--workers N`: bind here, then supervise N workers that serve these
/// sockets. The directory is checked first, so a typo is one clear error
/// rather than a crash loop.
fn supervise(args: &Args, workers: usize) -> ExitCode {
    if let Err(e) = StaticFiles::with_options(&args.dir, args.files.clone()) {
        return fail(&format!("cannot serve {}: {e}", args.dir.display()));
    }
    let addr = SocketAddr::new(args.addr, args.port);
    // mio's bind: SO_REUSEADDR and a backlog of 1024, like Server::bind.
    let listener = match mio::net::TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            return fail(&format!("port {} is in use (on {addr})", args.port))
        }
        Err(e) => return fail(&format!("cannot listen on {addr}: {e}")),
    };
    if let Ok(a) = listener.local_addr() {
        log::info!("listening on http://{a}/ with {workers} workers");
    }
    let fd: std::os::fd::OwnedFd = listener.into();
    let sup = match keelhttp::Supervisor::new(workers, vec![(fd, "http".into())]) {
        Ok(s) => s,
        Err(e) => return fail(&format!("cannot start the supervisor: {e}")),
    };
    match sup.run() {
        Ok(code) => ExitCode::from(code),
        Err(e) => fail(&format!("supervisor failed: {e}")),
    }
}

/// A worker of a `--workers` supervisor: a socket-activated keel.
fn run_worker(args: &Args, generation: u64) -> ExitCode {
    let handler = match StaticFiles::with_options(&args.dir, args.files.clone()) {
        Ok(h) => h,
        Err(e) => return fail(&format!("cannot serve {}: {e}", args.dir.display())),
    };
    let mut config = args.config.clone();
    config.generation = Some(generation);
    config.shared_listener = true;
    // PLACEHOLDER until branch `svc` (issue 10) is merged: its activation
    // helper parses and checks LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES and
    // serves every listener. Here only fd 3, a TCP listener, is taken.
    let server = match inherited_listener().and_then(|l| {
        Server::from_listener(l, config).map_err(|e| std::io::Error::other(e.to_string()))
    }) {
        Ok(s) => s,
        Err(e) => return fail(&format!("worker: no listening socket: {e}")),
    };
    serve(server, handler)
}

/// PLACEHOLDER (see `run_worker`).
fn inherited_listener() -> std::io::Result<std::net::TcpListener> {
    use std::os::fd::FromRawFd;
    for k in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(k);
    }
    // SAFETY: placeholder; the supervisor put a listening socket at fd 3.
    #[allow(unsafe_code)]
    let l = unsafe { std::net::TcpListener::from_raw_fd(3) };
    Ok(l)
}

fn serve(server: Server, handler: StaticFiles) -> ExitCode {
    log::info!(
        "serving {} on http://{}/",
        handler.root().display(),
        server.local_addr()
    );
    if let Err(e) = keelhttp::stop_on_signals(server.shutdown_handle()) {
        return fail(&format!("cannot set up signal handling: {e}"));
    }
    match server.run(handler) {
        Ok(report) if report.forced > 0 => {
            log::warn!("{} connections were cut at shutdown", report.forced);
            ExitCode::from(EXIT_FORCED)
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string()),
    }
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
