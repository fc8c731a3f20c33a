//! The access log writer: Common or Combined Log Format lines, formatted with
//! no allocation into one 64 KiB buffer and written with one `write(2)` once
//! the oldest line is 100 ms old (or the buffer fills, the server stops, or
//! the file is reopened), never one per request, even when each loop turn
//! serves a single request. The timestamp is formatted once per second.
//!
//! A failing target never fails or slows a request: a full disk, a removed
//! file system or a reader that does not keep up drops lines, and counts
//! them (`Stats::log_dropped`, and the status endpoint's `log_dropped`).
//! Writes never block: a log file is a regular file, stderr is reopened
//! privately with `O_NONBLOCK` when it is a pipe or terminal, and a socket is
//! written with `MSG_DONTWAIT`. What a slow reader cannot take yet stays in
//! the buffer (whole lines only) for the next turn.
//!
//! `reopen` (SIGUSR1 in the binary, via
//! [`ShutdownHandle::reopen_access_log`](crate::ShutdownHandle::reopen_access_log))
//! opens the path again, for logrotate's `postrotate` or a plain `mv`.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use log::warn;

use crate::encode::civil_from_days;

/// How lines are formatted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LogFormat {
    /// NCSA Common Log Format:
    /// `host - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 200 2326`.
    Common,
    /// Combined Log Format: Common plus `"Referer" "User-Agent"` (the
    /// default of nginx and Apache; goaccess `--log-format=COMBINED`).
    #[default]
    Combined,
}

impl LogFormat {
    /// `"common"` or `"combined"`.
    pub fn parse(name: &str) -> Option<LogFormat> {
        match name {
            "common" | "clf" => Some(LogFormat::Common),
            "combined" => Some(LogFormat::Combined),
            _ => None,
        }
    }
}

/// Where an access log goes. Give it to
/// [`Server::set_access_log`](crate::Server::set_access_log); a server
/// without one logs each request through the `log` crate instead (target
/// `keelhttp::access`, level `info`).
///
/// ```no_run
/// use keelhttp::{AccessLog, Config, LogFormat, Server};
/// let mut server = Server::bind("127.0.0.1:8080", Config::default())?;
/// server.set_access_log(AccessLog::file("/var/log/keel/access.log", LogFormat::Combined)?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct AccessLog {
    sink: Sink,
    format: LogFormat,
}

impl fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessLog")
            .field("sink", &self.sink.describe())
            .field("format", &self.format)
            .finish()
    }
}

impl AccessLog {
    /// Appends to the file at `path` (created with mode 0640 if missing).
    ///
    /// # Errors
    /// The file cannot be opened for appending.
    pub fn file(path: impl AsRef<Path>, format: LogFormat) -> io::Result<AccessLog> {
        let path = path.as_ref().to_path_buf();
        let file = open_append(&path)?;
        Ok(AccessLog {
            sink: Sink::File { path, file },
            format,
        })
    }

    /// Writes to the process's stderr without ever blocking the loop (see the
    /// module docs); lines a slow reader cannot take are dropped and counted.
    ///
    /// # Errors
    /// Standard error cannot be duplicated.
    pub fn stderr(format: LogFormat) -> io::Result<AccessLog> {
        let fd = io::stderr().as_fd().try_clone_to_owned()?;
        let file = File::from(fd);
        let kind = file.metadata()?.file_type();
        let sink = if kind.is_socket() {
            Sink::Socket(file)
        } else if kind.is_fifo() || kind.is_char_device() {
            // A private open file description: O_NONBLOCK on it leaves the
            // process's own fd 2 (and whoever shares it) blocking.
            match OpenOptions::new()
                .append(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open("/proc/self/fd/2")
            {
                Ok(f) => Sink::Stream(f),
                Err(_) => Sink::Stream(file), // no /proc: blocking, as env_logger
            }
        } else {
            Sink::Stream(file) // a regular file: writes do not block
        };
        Ok(AccessLog { sink, format })
    }

    pub(crate) fn into_writer(self) -> Writer {
        Writer {
            sink: self.sink,
            format: self.format,
            buf: Vec::with_capacity(BUF_CAP),
            dropped: 0,
            stamp_secs: u64::MAX,
            stamp: [b' '; 28],
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

enum Sink {
    File { path: PathBuf, file: File },
    Stream(File),
    Socket(File),
}

impl Sink {
    fn describe(&self) -> String {
        match self {
            Sink::File { path, .. } => path.display().to_string(),
            Sink::Stream(_) | Sink::Socket(_) => "stderr".to_string(),
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::File { file, .. } | Sink::Stream(file) => file.write(buf),
            Sink::Socket(s) => crate::sys::send_nowait(s.as_raw_fd(), buf),
        }
    }
}

/// The buffer: room for several hundred lines. A turn that logs more writes
/// it out as it fills.
const BUF_CAP: usize = 64 * 1024;
/// Longest line kept: the request target and two headers are cut to fit.
const FIELD_CAP: usize = 2048;

/// The engine's side: the buffer and the sink.
pub(crate) struct Writer {
    sink: Sink,
    format: LogFormat,
    buf: Vec<u8>,
    /// Lines dropped since start.
    pub(crate) dropped: u64,
    stamp_secs: u64,
    /// `[10/Oct/2000:13:55:36 +0000]`
    stamp: [u8; 28],
}

impl Drop for Writer {
    /// Lines still buffered when the server goes away are written.
    fn drop(&mut self) {
        self.flush();
    }
}

impl fmt::Debug for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("sink", &self.sink.describe())
            .field("buffered", &self.buf.len())
            .field("dropped", &self.dropped)
            .finish()
    }
}

/// One request as the log sees it.
pub(crate) struct Entry<'a> {
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) method: &'a str,
    pub(crate) target: &'a str,
    pub(crate) version: &'a str,
    pub(crate) status: u16,
    pub(crate) bytes: u64,
    pub(crate) referer: Option<&'a [u8]>,
    pub(crate) user_agent: Option<&'a [u8]>,
}

impl Writer {
    /// Formats one line into the buffer; `secs` is the loop's cached clock.
    pub(crate) fn record(&mut self, e: &Entry<'_>, secs: u64) {
        let worst = 160
            + e.method.len().min(FIELD_CAP)
            + 4 * e.target.len().min(FIELD_CAP)
            + 4 * e.referer.map_or(0, |r| r.len().min(FIELD_CAP))
            + 4 * e.user_agent.map_or(0, |u| u.len().min(FIELD_CAP));
        if self.buf.len() + worst > BUF_CAP {
            self.flush();
            if self.buf.len() + worst > BUF_CAP {
                self.dropped += 1; // the sink cannot take what it has
                return;
            }
        }
        if secs != self.stamp_secs {
            self.stamp_secs = secs;
            self.stamp = clf_date(secs);
        }
        let b = &mut self.buf;
        match e.peer.map(|a| a.ip()) {
            Some(IpAddr::V4(ip)) => {
                let _ = write!(b, "{ip}");
            }
            Some(IpAddr::V6(ip)) => match ip.to_ipv4_mapped() {
                Some(v4) => {
                    let _ = write!(b, "{v4}");
                }
                None => {
                    let _ = write!(b, "{ip}");
                }
            },
            None => b.extend_from_slice(b"unix"),
        }
        b.extend_from_slice(b" - - ");
        b.extend_from_slice(&self.stamp);
        b.extend_from_slice(b" \"");
        escaped(b, e.method.as_bytes());
        b.push(b' ');
        escaped(b, e.target.as_bytes());
        b.push(b' ');
        b.extend_from_slice(e.version.as_bytes());
        b.extend_from_slice(b"\" ");
        number(b, u64::from(e.status));
        b.push(b' ');
        if e.bytes == 0 {
            b.push(b'-');
        } else {
            number(b, e.bytes);
        }
        if self.format == LogFormat::Combined {
            for field in [e.referer, e.user_agent] {
                b.extend_from_slice(b" \"");
                match field {
                    Some(v) if !v.is_empty() => escaped(b, v),
                    _ => b.push(b'-'),
                }
                b.push(b'"');
            }
        }
        b.push(b'\n');
    }

    /// Writes what the buffer holds, once; never blocks. What the sink
    /// cannot take now stays (whole lines) for the next turn if it would
    /// block, and is dropped and counted if the sink failed.
    /// Whether lines wait in the buffer.
    pub(crate) fn has_pending(&self) -> bool {
        !self.buf.is_empty()
    }

    pub(crate) fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let mut done = 0;
        // A few tries: a regular file may take a short write and then the
        // rest; a pipe says WouldBlock and we come back next turn.
        for _ in 0..4 {
            if done == self.buf.len() {
                break;
            }
            match self.sink.write(&self.buf[done..]) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.buf.drain(..done);
                    return;
                }
                Err(e) => {
                    if e.kind() == io::ErrorKind::BrokenPipe {
                        crate::sys::consume_sigpipe();
                    }
                    if self.dropped == 0 {
                        warn!(
                            "access log {}: {e}; dropping lines (see log_dropped)",
                            self.sink.describe()
                        );
                    }
                    break;
                }
            }
        }
        // Whatever is left could not be written: drop it, counted by lines.
        let rest = &self.buf[done..];
        self.dropped += rest.iter().filter(|&&c| c == b'\n').count() as u64;
        self.buf.clear();
    }

    /// Opens the file again (after it was moved away). On failure the old
    /// file is kept.
    pub(crate) fn reopen(&mut self) {
        self.flush();
        if let Sink::File { path, file } = &mut self.sink {
            match open_append(path) {
                Ok(f) => {
                    *file = f;
                    log::info!("access log reopened: {}", path.display());
                }
                Err(e) => warn!(
                    "cannot reopen the access log {}: {e}; still writing to the old file",
                    path.display()
                ),
            }
        }
    }
}

/// `\xHH` for `"`, `\`, controls and non-ASCII (nginx's escaping), so a line
/// always splits on its quotes; cut at [`FIELD_CAP`] input bytes.
fn escaped(b: &mut Vec<u8>, v: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &c in &v[..v.len().min(FIELD_CAP)] {
        if c == b'"' || c == b'\\' || !(0x20..0x7f).contains(&c) {
            b.extend_from_slice(&[b'\\', b'x', HEX[(c >> 4) as usize], HEX[(c & 15) as usize]]);
        } else {
            b.push(c);
        }
    }
}

fn number(b: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    b.extend_from_slice(&digits[i..]);
}

/// `[10/Oct/2000:13:55:36 +0000]` (UTC).
fn clf_date(secs: u64) -> [u8; 28] {
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    let mut out = *b"[01/Jan/1970:00:00:00 +0000]";
    let two = |o: &mut [u8], v: u64| {
        o[0] = b'0' + (v / 10 % 10) as u8;
        o[1] = b'0' + (v % 10) as u8;
    };
    two(&mut out[1..3], u64::from(d));
    out[4..7].copy_from_slice(MONTHS[(m - 1) as usize]);
    let y = y.clamp(0, 9999) as u64;
    two(&mut out[8..10], y / 100);
    two(&mut out[10..12], y % 100);
    two(&mut out[13..15], rem / 3600);
    two(&mut out[16..18], rem / 60 % 60);
    two(&mut out[19..21], rem % 60);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(format: LogFormat, e: &Entry<'_>) -> String {
        let log = AccessLog {
            sink: Sink::Stream(File::open("/dev/null").unwrap()),
            format,
        };
        let mut w = log.into_writer();
        w.record(e, 971_185_336); // 2000-10-10 13:42:16 UTC
        String::from_utf8(w.buf.clone()).unwrap()
    }

    fn entry<'a>() -> Entry<'a> {
        Entry {
            peer: Some("192.0.2.7:5123".parse().unwrap()),
            method: "GET",
            target: "/a\"b",
            version: "HTTP/1.1",
            status: 200,
            bytes: 2326,
            referer: Some(b"http://x/"),
            user_agent: Some(b"curl/8 \xff"),
        }
    }

    #[test]
    fn combined_and_common_lines_as_the_tools_expect() {
        assert_eq!(
            line(LogFormat::Combined, &entry()),
            "192.0.2.7 - - [10/Oct/2000:13:42:16 +0000] \"GET /a\\x22b HTTP/1.1\" 200 2326 \
             \"http://x/\" \"curl/8 \\xFF\"\n"
        );
        let mut e = entry();
        e.bytes = 0;
        e.peer = None;
        assert_eq!(
            line(LogFormat::Common, &e),
            "unix - - [10/Oct/2000:13:42:16 +0000] \"GET /a\\x22b HTTP/1.1\" 200 -\n"
        );
    }

    #[test]
    fn a_full_disk_drops_and_counts_lines() {
        let log = AccessLog::file("/dev/full", LogFormat::Common).unwrap();
        let mut w = log.into_writer();
        for _ in 0..3 {
            w.record(&entry(), 0);
        }
        w.flush();
        assert_eq!(w.dropped, 3);
        assert!(w.buf.is_empty());
    }
}
