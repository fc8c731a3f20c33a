//! The open-file cache of `StaticFiles`: every kind of change to a cached
//! file or a directory on its path is seen by the next request (content,
//! 404, 403 or new validators), a symlink swapped in never leaks a byte from
//! outside the root, and the cache stays within its bounds under 10,000
//! distinct files.
//!
//! The server runs on the test's own thread through `Server::poll_once` (the
//! host-owned loop), so the test can look at `StaticFiles::cache_usage`
//! between requests and prove each entry was cached before it changed.

mod util;

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::{symlink, FileExt, PermissionsExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use keelhttp::{Config, Server, StaticFiles, StaticOptions};
use util::{connect, read_response_to, Resp, TempDir};

const SECRET: &[u8] = b"TOP-SECRET-OUTSIDE-THE-ROOT";

/// A server and its handler, both driven by the test.
struct Host {
    server: Server,
    files: StaticFiles,
    client: TcpStream,
    _dir: TempDir,
    root: PathBuf,
}

impl Host {
    fn new(tag: &str, options: StaticOptions) -> Host {
        let dir = TempDir::new(tag);
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(dir.path().join("secret.txt"), SECRET).unwrap();
        let files = StaticFiles::with_options(&root, options).unwrap();
        let server = Server::bind("127.0.0.1:0", Config::default()).unwrap();
        let client = connect(server.local_addr());
        Host {
            server,
            files,
            client,
            _dir: dir,
            root,
        }
    }

    fn write(&self, rel: &str, contents: &[u8]) -> PathBuf {
        let p = self.root.join(rel);
        std::fs::write(&p, contents).unwrap();
        p
    }

    /// Sends a request on the keep-alive connection, runs the loop until the
    /// server has answered it, and reads the answer.
    fn send(&mut self, raw: &str, head: bool) -> Resp {
        let before = self.server.stats().requests;
        self.client.write_all(raw.as_bytes()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        for _ in 0..10_000 {
            self.server
                .poll_once(&mut self.files, Some(Duration::from_millis(10)))
                .unwrap();
            // The response is written in the turn that called the handler.
            if self.server.stats().requests > before {
                return read_response_to(&mut self.client, head);
            }
            assert!(Instant::now() < deadline, "no answer to {raw:?}");
        }
        panic!("no answer to {raw:?}");
    }

    fn get(&mut self, path: &str) -> Resp {
        self.send(&format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"), false)
    }

    /// Lets the loop read pending events (a change with no request after it).
    fn turn(&mut self) {
        self.server
            .poll_once(&mut self.files, Some(Duration::from_millis(1)))
            .unwrap();
    }

    fn cached(&self) -> usize {
        self.files.cache_usage().0
    }
}

fn is_root() -> bool {
    // SAFETY-free: geteuid has no failure mode; read via /proc to stay safe code.
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// Fetches `path` twice and checks the second answer came from the cache.
fn warm(h: &mut Host, path: &str, body: &[u8]) -> Resp {
    let first = h.get(path);
    assert_eq!(first.status, 200, "{path}");
    assert_eq!(first.body, body, "{path}");
    assert!(h.cached() >= 1, "{path} was not cached");
    let again = h.get(path);
    assert_eq!(again.body, body);
    assert_eq!(again.header("etag"), first.header("etag"));
    again
}

#[test]
fn a_write_in_place_is_seen_by_the_next_request() {
    let mut h = Host::new("fc-write", StaticOptions::default());
    let p = h.write("a.txt", b"version one\n");
    let old = warm(&mut h, "/a.txt", b"version one\n");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .write_at(b"VERSION", 0)
        .unwrap();
    let r = h.get("/a.txt");
    assert_eq!(r.body, b"VERSION one\n");
    assert_ne!(r.header("etag"), old.header("etag"), "new validators");
}

#[test]
fn a_truncate_is_seen_by_the_next_request() {
    let mut h = Host::new("fc-trunc", StaticOptions::default());
    let p = h.write("a.txt", b"0123456789");
    warm(&mut h, "/a.txt", b"0123456789");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(4)
        .unwrap();
    let r = h.get("/a.txt");
    assert_eq!(r.body, b"0123");
    assert_eq!(r.header("content-length"), Some("4"));
}

#[test]
fn a_chmod_drops_the_entry_and_an_unreadable_file_is_403() {
    let mut h = Host::new("fc-chmod", StaticOptions::default());
    let p = h.write("a.txt", b"readable\n");
    warm(&mut h, "/a.txt", b"readable\n");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
    h.turn();
    assert_eq!(h.cached(), 0, "a chmod drops the entry");
    let r = h.get("/a.txt");
    if is_root() {
        // root reads anything: the new state is still 200, freshly opened.
        assert_eq!(r.status, 200);
    } else {
        assert_eq!(r.status, 403);
    }
}

#[test]
fn a_rename_over_is_seen_by_the_next_request() {
    let mut h = Host::new("fc-rename", StaticOptions::default());
    h.write("a.txt", b"old contents\n");
    let old = warm(&mut h, "/a.txt", b"old contents\n");
    let tmp = h.write("a.txt.tmp", b"new contents, longer\n");
    std::fs::rename(&tmp, h.root.join("a.txt")).unwrap();
    let r = h.get("/a.txt");
    assert_eq!(r.body, b"new contents, longer\n");
    assert_ne!(r.header("etag"), old.header("etag"));
    assert_ne!(r.header("etag"), None);
}

#[test]
fn a_delete_is_404_at_the_next_request() {
    let mut h = Host::new("fc-delete", StaticOptions::default());
    let p = h.write("sub/a.txt", b"here\n");
    warm(&mut h, "/sub/a.txt", b"here\n");
    std::fs::remove_file(p).unwrap();
    assert_eq!(h.get("/sub/a.txt").status, 404);
}

#[test]
fn a_symlink_swapped_in_never_leaks_a_byte_from_outside_the_root() {
    let mut h = Host::new("fc-symlink", StaticOptions::default());
    h.write("a.txt", b"inside\n");
    h.write("other.txt", b"other inside\n");
    warm(&mut h, "/a.txt", b"inside\n");
    // Swapped atomically for a symlink leading outside the root.
    let link = h.root.join("a.txt.new");
    symlink("../secret.txt", &link).unwrap();
    std::fs::rename(&link, h.root.join("a.txt")).unwrap();
    let r = h.get("/a.txt");
    assert_eq!(r.status, 404);
    assert!(!r.body.windows(SECRET.len()).any(|w| w == SECRET));
    for _ in 0..3 {
        let again = h.get("/a.txt");
        assert_eq!(again.status, 404, "never cached as the outside file");
    }
    // Swapped for a symlink inside the root: served, never cached.
    let link = h.root.join("a.txt.new");
    symlink("other.txt", &link).unwrap();
    std::fs::rename(&link, h.root.join("a.txt")).unwrap();
    assert_eq!(h.get("/a.txt").body, b"other inside\n");
    // A directory on the path swapped for a symlink leading outside.
    h.write("sub/s.txt", b"in sub\n");
    warm(&mut h, "/sub/s.txt", b"in sub\n");
    std::fs::rename(h.root.join("sub"), h.root.join("sub.old")).unwrap();
    symlink("..", h.root.join("sub")).unwrap();
    let r = h.get("/sub/secret.txt");
    assert_eq!(r.status, 404);
    assert_eq!(h.get("/sub/s.txt").status, 404);
}

#[test]
fn a_directory_replaced_on_the_path_is_seen() {
    let mut h = Host::new("fc-dir", StaticOptions::default());
    h.write("sub/a.txt", b"first dir\n");
    warm(&mut h, "/sub/a.txt", b"first dir\n");
    std::fs::rename(h.root.join("sub"), h.root.join("old")).unwrap();
    std::fs::create_dir(h.root.join("sub")).unwrap();
    h.write("sub/a.txt", b"second dir\n");
    assert_eq!(h.get("/sub/a.txt").body, b"second dir\n");
}

#[test]
fn an_index_file_follows_changes_in_its_directory() {
    let mut options = StaticOptions::default();
    options.index = vec!["index.htm".into(), "index.html".into()];
    let mut h = Host::new("fc-index", options);
    h.write("sub/index.html", b"html\n");
    warm(&mut h, "/sub/", b"html\n");
    // An earlier index name appears: it wins from the next request on.
    h.write("sub/index.htm", b"htm\n");
    assert_eq!(h.get("/sub/").body, b"htm\n");
}

#[test]
fn conditional_and_head_requests_are_answered_from_the_cache() {
    let mut h = Host::new("fc-cond", StaticOptions::default());
    h.write("a.css", b"p{}");
    let r = warm(&mut h, "/a.css", b"p{}");
    assert_eq!(r.header("content-type"), Some("text/css; charset=utf-8"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    let etag = r.header("etag").unwrap().to_string();
    let nm = h.send(
        &format!("GET /a.css HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n"),
        false,
    );
    assert_eq!(nm.status, 304);
    assert_eq!(nm.header("etag"), Some(etag.as_str()));
    let head = h.send("HEAD /a.css HTTP/1.1\r\nHost: t\r\n\r\n", true);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("3"));
    let range = h.send(
        "GET /a.css HTTP/1.1\r\nHost: t\r\nRange: bytes=1-\r\n\r\n",
        false,
    );
    assert_eq!(range.status, 206);
    assert_eq!(range.body, b"{}");
}

#[test]
fn large_files_are_cached_as_descriptors_and_sent_whole() {
    let mut h = Host::new("fc-large", StaticOptions::default());
    let big = util::pattern(200_000, 7);
    h.write("big.bin", &big);
    warm(&mut h, "/big.bin", &big);
    assert_eq!(h.files.cache_usage().2, 1, "one descriptor held");
    h.write("big.bin", &big[..1000]);
    assert_eq!(h.get("/big.bin").body, &big[..1000]);
}

#[test]
fn the_cache_never_exceeds_its_bounds_over_10_000_distinct_files() {
    let mut options = StaticOptions::default();
    options.cache_bytes = 64 << 10;
    options.cache_entries = 100;
    options.cache_fds = 8;
    options.cache_small_file = 2 << 10;
    let mut h = Host::new("fc-bounds", options);
    for i in 0..10_000 {
        // Mostly small files, every seventh one over the small-file size.
        let len = if i % 7 == 0 { 3000 } else { 100 + i % 1500 };
        h.write(&format!("f{i}"), &util::pattern(len, i as u64));
    }
    let (mut peak_files, mut peak_bytes, mut peak_fds) = (0, 0, 0);
    let t0 = Instant::now();
    for i in 0..10_000usize {
        let r = h.get(&format!("/f{i}"));
        assert_eq!(r.status, 200);
        let (files, bytes, fds) = h.files.cache_usage();
        assert!(
            files <= 100 && bytes <= 64 << 10 && fds <= 8,
            "{files} {bytes} {fds}"
        );
        peak_files = peak_files.max(files);
        peak_bytes = peak_bytes.max(bytes);
        peak_fds = peak_fds.max(fds);
        assert!(t0.elapsed() < Duration::from_secs(120), "too slow");
    }
    // The bounds were reached, not merely never approached.
    assert_eq!(peak_files, 100);
    assert_eq!(peak_fds, 8);
    assert!(peak_bytes > 32 << 10, "{peak_bytes}");
    // The least recently used went first: the newest file is still cached,
    // and a re-read of an early one is served fresh and correct.
    let r = h.get("/f1");
    assert_eq!(r.body, util::pattern(101, 1));
}

#[test]
fn a_cache_of_zero_bytes_is_off() {
    let mut options = StaticOptions::default();
    options.cache_bytes = 0;
    let mut h = Host::new("fc-off", options);
    h.write("a.txt", b"x\n");
    assert_eq!(h.get("/a.txt").body, b"x\n");
    assert_eq!(h.files.cache_usage(), (0, 0, 0));
}

#[test]
fn a_path_through_a_symlink_is_never_cached_so_its_target_directory_cannot_go_stale() {
    let mut h = Host::new("fc-via-link", StaticOptions::default());
    std::fs::create_dir_all(h.root.join("a")).unwrap();
    std::fs::create_dir_all(h.root.join("b")).unwrap();
    h.write("b/f.txt", b"first b\n");
    symlink("../b", h.root.join("a/link")).unwrap();
    assert_eq!(h.get("/a/link/f.txt").body, b"first b\n");
    assert_eq!(h.get("/a/link/f.txt").body, b"first b\n");
    assert_eq!(h.cached(), 0, "resolved through a symlink: not cached");
    // `b` replaced: nothing on the request's own path changed.
    std::fs::rename(h.root.join("b"), h.root.join("b.old")).unwrap();
    std::fs::create_dir(h.root.join("b")).unwrap();
    h.write("b/f.txt", b"second b\n");
    assert_eq!(h.get("/a/link/f.txt").body, b"second b\n");
}

/// Descriptors in the process's fd table, and the highest number in use.
fn fds_of(pid: u32) -> (usize, u64) {
    let used: Vec<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect();
    (used.len(), used.iter().copied().max().unwrap_or(0))
}

#[test]
fn out_of_descriptors_the_cache_gives_its_own_back_first() {
    let dir = TempDir::new("fc-emfile");
    let big = util::pattern(20 << 10, 3); // over the 16 KiB small-file size
    for i in 0..40 {
        dir.write(&format!("f{i}"), &big);
    }
    let keel = util::KeelProcess::start(dir.path(), [127, 0, 0, 1].into(), "warn");
    let pid = keel.pid();
    let mut s = keel.connect();
    for i in 0..40 {
        let r = util::request(&mut s, "GET", &format!("/f{i}"));
        assert_eq!(r.status, 200);
    }
    let (held, max) = fds_of(pid);
    assert!(held >= 40, "the cache holds the 40 files open: {held}");
    // Descriptor numbers stop at the highest in use: once the free numbers
    // below it are taken, `accept` fails with EMFILE, and only the cache's
    // own descriptors can make room.
    let rl = libc::rlimit {
        rlim_cur: max + 1,
        rlim_max: max + 1,
    };
    // SAFETY: prlimit on our own child; `rl` outlives the call, the old
    // limit is not asked for.
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &rl,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    let free = (max + 1) as usize - held;
    let mut clients = Vec::new();
    for n in 0..free + 5 {
        let mut c = keel.connect();
        let r = util::request(&mut c, "GET", "/f0");
        assert_eq!(r.status, 200, "client {n} of {} is served", free + 5);
        assert!(r.body == big);
        clients.push(c); // kept open: each holds a descriptor
    }
    let (now_held, _) = fds_of(pid);
    assert!(
        now_held + 30 <= held + clients.len(),
        "the cache's descriptors went back: {held} before, {now_held} with {} more clients",
        clients.len()
    );
    // The connection that was there all along still works.
    assert_eq!(util::request(&mut s, "GET", "/f1").status, 200);
}

// Regression (found in review): a Range request on a cached path re-fills the entry; the refill
// removes the old entry first, which gives back the watch the new entry is
// about to use, so the new entry is never invalidated.
#[test]
fn a_range_request_does_not_leave_an_unwatched_entry() {
    let mut h = Host::new("fc-review-range", StaticOptions::default());
    let p = h.write("sub/a.txt", b"version one\n");
    warm(&mut h, "/sub/a.txt", b"version one\n");
    let r = h.send(
        "GET /sub/a.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-3\r\n\r\n",
        false,
    );
    assert_eq!(r.status, 206);
    assert_eq!(h.cached(), 1);
    std::fs::remove_file(&p).unwrap();
    h.turn();
    let r = h.get("/sub/a.txt");
    assert_eq!(
        r.status,
        404,
        "a deleted file answered from the cache: {:?}",
        String::from_utf8_lossy(&r.body)
    );
}

// Regression (found in review): same, a symlink to outside swapped in after the Range request.
#[test]
fn after_a_range_request_a_symlink_swap_is_still_seen() {
    let mut h = Host::new("fc-review-range2", StaticOptions::default());
    h.write("a.txt", b"inside\n");
    warm(&mut h, "/a.txt", b"inside\n");
    let r = h.send(
        "GET /a.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-0\r\n\r\n",
        false,
    );
    assert_eq!(r.status, 206);
    let link = h.root.join("a.txt.new");
    symlink("../secret.txt", &link).unwrap();
    std::fs::rename(&link, h.root.join("a.txt")).unwrap();
    h.turn();
    let r = h.get("/a.txt");
    assert_eq!(
        r.status,
        404,
        "served {:?}",
        String::from_utf8_lossy(&r.body)
    );
}

// Regression (found in review): with two index names, a dangling first index symlink (pointing
// inside the root) is skipped and the second index is cached for `/d/`; when
// the symlink's target appears, the uncached path serves it, the cache does
// not notice (the target's directory is not watched).
#[test]
fn an_index_candidate_that_starts_resolving_is_seen() {
    let mut options = StaticOptions::default();
    options.index = vec!["index.html".into(), "index.htm".into()];
    let mut h = Host::new("fc-review-index", options);
    std::fs::create_dir_all(h.root.join("d")).unwrap();
    h.write("d/index.htm", b"second index\n");
    symlink("../sub/x.html", h.root.join("d/index.html")).unwrap();
    // Not cached at all (a name before it is there but skipped), or cached
    // and dropped: either way the next request sees the new state.
    assert_eq!(h.get("/d/").body, b"second index\n");
    assert_eq!(h.get("/d/").body, b"second index\n");
    assert_eq!(
        h.cached(),
        0,
        "an index behind a skipped name is not cached"
    );
    h.write("sub/x.html", b"first index now\n");
    h.turn();
    let r = h.get("/d/");
    assert_eq!(
        r.body, b"first index now\n",
        "stale index served from the cache"
    );
}

// Regression (found in review): control for the test above: with the cache off the new target is served.
#[test]
fn control_index_candidate_uncached() {
    let mut options = StaticOptions::default();
    options.index = vec!["index.html".into(), "index.htm".into()];
    options.cache_bytes = 0;
    let mut h = Host::new("fc-review-index0", options);
    std::fs::create_dir_all(h.root.join("d")).unwrap();
    h.write("d/index.htm", b"second index\n");
    symlink("../sub/x.html", h.root.join("d/index.html")).unwrap();
    assert_eq!(h.get("/d/").body, b"second index\n");
    h.write("sub/x.html", b"first index now\n");
    assert_eq!(h.get("/d/").body, b"first index now\n");
}

// Regression (found in review): a hard link made after the file was cached (nlink was 1 at fill):
// writes and chmods through the new name notify the new name's directory
// only, and `link(2)` itself raises IN_ATTRIB on the inode, not in its
// parent's watch.
#[test]
fn a_write_through_a_later_hard_link_is_seen() {
    let mut h = Host::new("fc-review-hardlink", StaticOptions::default());
    let p = h.write("a.txt", b"version one\n");
    warm(&mut h, "/a.txt", b"version one\n");
    let other = h.root.parent().unwrap().join("elsewhere.txt");
    std::fs::hard_link(&p, &other).unwrap();
    h.turn();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&other)
        .unwrap()
        .write_at(b"VERSION", 0)
        .unwrap();
    h.turn();
    let r = h.get("/a.txt");
    assert_eq!(
        r.body, b"VERSION one\n",
        "stale bytes after a write through a hard link"
    );
}

// Regression (found in review): the open is beneath the root's descriptor, the watches are added
// by path: once the root path names another directory, entries are watched
// in the wrong directory.
#[test]
fn a_root_path_swapped_for_another_directory_keeps_entries_fresh() {
    let mut h = Host::new("fc-review-rootswap", StaticOptions::default());
    h.write("a.txt", b"version one\n");
    warm(&mut h, "/a.txt", b"version one\n");
    let old = h.root.with_file_name("root.old");
    std::fs::rename(&h.root, &old).unwrap();
    std::fs::create_dir(&h.root).unwrap();
    h.turn();
    // Still served from the old directory (the handler holds its descriptor),
    // and no longer cached: the watches would be on the new directory.
    assert_eq!(h.get("/a.txt").body, b"version one\n");
    assert_eq!(h.get("/a.txt").body, b"version one\n");
    std::fs::write(old.join("a.txt.tmp"), b"version two\n").unwrap();
    std::fs::rename(old.join("a.txt.tmp"), old.join("a.txt")).unwrap();
    h.turn();
    let r = h.get("/a.txt");
    assert_eq!(
        r.body, b"version two\n",
        "stale: the watch is on the new directory"
    );
}
