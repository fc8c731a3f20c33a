//! `yardstick`: the floor keel is measured against (libc only, no parsing).
//!
//! A bare level-triggered epoll loop on 127.0.0.1:PORT. Each readable
//! connection gets one `recv` and one `send`: the send carries one fixed
//! 13-byte `Hello, World!` response per `\r\n\r\n` in what the recv read, so
//! a pipelined batch costs one recv and one send too. A read that contains
//! `Connection: close` gets the same responses with that header and the
//! connection is closed (the churn workload). A partial send, an error or
//! EOF closes the connection: this is a yardstick, not a server (a head split
//! across two reads is not stitched together either; the load generator
//! writes whole batches).
//!
//! ```text
//! cargo bench --bench yardstick -- 8080    # prints the bound port (0 = any)
//! ```

use std::io::Write;

const OK: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";
const CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: close\r\n\r\nHello, World!";
const BUF: usize = 64 * 1024;
/// Most responses one send carries (a read of BUF bytes holds fewer heads).
const MAX_BATCH: usize = BUF / 16;

fn check(r: libc::c_int, what: &str) -> Result<libc::c_int, String> {
    if r < 0 {
        return Err(format!("{what}: {}", std::io::Error::last_os_error()));
    }
    Ok(r)
}

fn main() -> Result<(), String> {
    let port: u16 = match std::env::args().skip(1).find(|a| a != "--bench") {
        Some(a) => a.parse().map_err(|_| format!("invalid port '{a}'"))?,
        None => 0,
    };
    let ok = OK.repeat(MAX_BATCH);
    let close = CLOSE.repeat(MAX_BATCH);
    let mut buf = vec![0u8; BUF];
    let one: libc::c_int = 1;
    // SAFETY: sockaddr_in is a plain C struct; all zeroes is a valid value.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    addr.sin_family = libc::AF_INET as libc::sa_family_t;
    addr.sin_port = port.to_be();
    addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let ptr = (&mut addr as *mut libc::sockaddr_in).cast::<libc::sockaddr>();
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 256];
    // SAFETY: plain libc calls on fds this function owns; every pointer is to
    // a live local of the size passed alongside it.
    let (lfd, ep) = unsafe {
        let lfd = check(
            libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0),
            "socket",
        )?;
        let opt = (&one as *const libc::c_int).cast();
        check(
            libc::setsockopt(lfd, libc::SOL_SOCKET, libc::SO_REUSEADDR, opt, 4),
            "setsockopt",
        )?;
        check(libc::bind(lfd, ptr, len), "bind")?;
        check(libc::listen(lfd, 1024), "listen")?;
        check(libc::getsockname(lfd, ptr, &mut len), "getsockname")?;
        let ep = check(libc::epoll_create1(0), "epoll_create1")?;
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: lfd as u64,
        };
        check(
            libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, lfd, &mut ev),
            "epoll_ctl",
        )?;
        (lfd, ep)
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", u16::from_be(addr.sin_port)).and_then(|()| out.flush());
    loop {
        // SAFETY: `events` is a live array of the length passed.
        let n =
            unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as libc::c_int, -1) };
        for ev in &events[..usize::try_from(n).unwrap_or(0)] {
            let fd = ev.u64 as libc::c_int;
            if fd == lfd {
                loop {
                    let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
                    // SAFETY: accept4 with null address pointers is allowed.
                    let c = unsafe {
                        libc::accept4(lfd, std::ptr::null_mut(), std::ptr::null_mut(), flags)
                    };
                    if c < 0 {
                        break; // EAGAIN (or a transient error: the next wake-up retries)
                    }
                    let mut cev = libc::epoll_event {
                        events: libc::EPOLLIN as u32,
                        u64: c as u64,
                    };
                    let opt = (&one as *const libc::c_int).cast();
                    // SAFETY: `c` is the fd accept4 just returned; pointers are to live locals.
                    unsafe {
                        libc::setsockopt(c, libc::IPPROTO_TCP, libc::TCP_NODELAY, opt, 4);
                        libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, c, &mut cev);
                    }
                }
                continue;
            }
            // SAFETY: `buf` is live and BUF bytes long.
            let got = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), BUF, 0) };
            if got < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN) {
                continue;
            }
            let read = &buf[..usize::try_from(got).unwrap_or(0)];
            let heads = read.windows(4).filter(|w| w == b"\r\n\r\n").count();
            let last = read.windows(17).any(|w| w == b"Connection: close");
            let resp = if last { &close } else { &ok };
            let want = heads.min(MAX_BATCH) * if last { CLOSE.len() } else { OK.len() };
            let sent = if heads == 0 {
                -1 // EOF, an error, or a partial head: close
            } else {
                // SAFETY: `resp` is live and at least `want` bytes long.
                unsafe { libc::send(fd, resp.as_ptr().cast(), want, libc::MSG_NOSIGNAL) }
            };
            if last || sent != want as isize {
                // SAFETY: `fd` is a connection this loop accepted; close also drops it from epoll.
                unsafe { libc::close(fd) };
            }
        }
    }
}
