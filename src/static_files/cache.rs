//! The open-file cache: for a request path already resolved, the file's
//! validators and prebuilt headers, and its bytes (small files) or its open
//! descriptor (larger ones), so a repeated request costs no `open`, `fstat`
//! or `close`, and a small file leaves with its head in one `sendmsg`.
//!
//! Freshness comes from inotify, not from a syscall per request: every
//! directory on an entry's path is watched (the root included), and an event
//! naming the next component of the path (or, for an index file, anything in
//! its directory) drops the entry before the next request is read. The
//! instance's descriptor is polled by the server's own loop
//! ([`Handler::watch_fd`](crate::Handler::watch_fd)). When watches run out,
//! an entry is revalidated (reopened and compared) at most once a second.
//!
//! Only paths that resolve with no symlink at all are cached
//! (`openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`), and only regular files
//! with one link, so the watched directories are exactly the ones the lookup
//! walks: a file swapped for a symlink (inside or outside the root) is a
//! change in a watched directory, and the next request resolves it afresh
//! with the checks of an uncached one.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use log::{debug, info};

use super::conditional::Identity;
use crate::{header, HeaderBlock, HeaderText};

/// How often an entry that could not be watched is checked against the file.
const REVALIDATE: Duration = Duration::from_secs(1);
/// A hit reads pending inotify events itself (one non-blocking `read`) when
/// they were last read, or the loop last polled without any, longer ago
/// than this: a request read late in a long turn (a later accept, a
/// keep-alive read) may have been sent after a change the loop has not
/// polled yet. None in short turns; at most 20,000 such reads a second.
const RECHECK: Duration = Duration::from_micros(50);
/// How long a path found uncacheable is served without trying again.
const REFUSED_RETRY: Duration = Duration::from_secs(5);
const NONE: u32 = u32::MAX;
/// What a watched directory reports: changes to its entries and to itself.
const MASK: u32 = libc::IN_MODIFY
    | libc::IN_ATTRIB
    | libc::IN_CLOSE_WRITE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR;
/// What a cached file's own watch reports: changes through any of its names
/// (a hard link made after it was cached, a write through that link).
const FILE_MASK: u32 = libc::IN_MODIFY
    | libc::IN_ATTRIB
    | libc::IN_CLOSE_WRITE
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF;

/// The cache's bounds.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Bytes of file content held in memory.
    pub(super) bytes: u64,
    /// Entries.
    pub(super) entries: usize,
    /// Open descriptors held (one per cached file larger than `small`).
    pub(super) fds: usize,
    /// Files up to this size are held as bytes, larger ones as descriptors.
    pub(super) small: u64,
}

/// A cached file's body.
#[derive(Debug)]
pub(super) enum Content {
    Bytes(Arc<[u8]>),
    Fd(Arc<File>),
}

/// What identifies a file's state, compared on revalidation.
#[derive(Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    mode: u32,
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            mode: m.mode(),
        }
    }
}

/// One cached file.
#[derive(Debug)]
pub(super) struct Entry {
    key: Box<[u8]>,
    pub(super) content: Content,
    pub(super) len: u64,
    pub(super) id: Identity,
    /// `Content-Type`, `Accept-Ranges`, `ETag`, `Last-Modified`,
    /// `Cache-Control`: a 200's headers.
    pub(super) head: HeaderBlock,
    /// `ETag`, `Last-Modified`, `Cache-Control`: a 304's.
    pub(super) head_304: HeaderBlock,
    rel: PathBuf,
    stamp: Stamp,
    /// The watches this entry depends on, each with the bucket it is in:
    /// under a name, or `None` for anything the watch reports. Empty when
    /// it is not watched.
    deps: Vec<Dep>,
    /// Not watched: when to compare it with the file again.
    verify_at: Option<Instant>,
    gen: u64,
    prev: u32,
    next: u32,
}

/// Whether a new entry's path could be watched.
enum Watched {
    /// Every watch is in place.
    Yes(Vec<Dep>),
    /// No inotify, or out of watches: revalidate the entry instead.
    Degraded,
    /// Do not cache it (the root path is not the served directory now).
    Never,
}

/// One watch an entry depends on, and its bucket there.
#[derive(Debug)]
struct Dep {
    wd: i32,
    name: Option<OsString>,
}

/// Entries that depend on one watched directory (or file).
#[derive(Debug, Default)]
struct Watch {
    /// By the name of the next path component.
    by_name: HashMap<OsString, Vec<(u32, u64)>>,
    /// On anything in the directory (index files).
    any: Vec<(u32, u64)>,
    /// Live entries depending on it; at 0 the watch is removed.
    live: usize,
}

/// What a cache hit needs from the handler.
pub(super) struct Fill<'a> {
    pub(super) key: &'a [u8],
    pub(super) rel: &'a Path,
    /// Served as a directory's index: any change in its directory counts.
    pub(super) via_index: bool,
    pub(super) content_type: HeaderText,
    pub(super) accept_ranges: &'static str,
    pub(super) cache_control: Option<&'a str>,
}

/// The cache. See the module docs.
#[derive(Debug)]
pub(super) struct Cache {
    limits: Limits,
    map: HashMap<Box<[u8]>, u32>,
    slots: Vec<Option<Entry>>,
    free: Vec<u32>,
    /// Most recently used first.
    head: u32,
    tail: u32,
    bytes: u64,
    fds: usize,
    gen: u64,
    inotify: Option<File>,
    watches: HashMap<i32, Watch>,
    /// Watches ran out (or inotify is missing): some entries are revalidated.
    degraded: bool,
    /// When pending inotify events were last read.
    checked: Instant,
    /// Paths found uncacheable (a symlink on the way, several links...),
    /// with when to try again: they skip the extra open meanwhile. Cleared
    /// on any change seen, and when it grows past the entry bound.
    refused: HashMap<Box<[u8]>, Instant>,
}

impl Cache {
    pub(super) fn new(limits: Limits) -> Cache {
        let inotify = match crate::sys::inotify_init() {
            Ok(f) => Some(f),
            Err(e) => {
                info!("file cache: inotify unavailable ({e}); cached files are revalidated every second");
                None
            }
        };
        Cache {
            limits,
            map: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            head: NONE,
            tail: NONE,
            bytes: 0,
            fds: 0,
            gen: 0,
            degraded: inotify.is_none(),
            inotify,
            watches: HashMap::new(),
            refused: HashMap::new(),
            checked: Instant::now(),
        }
    }

    /// The inotify descriptor, for the server's poller.
    pub(super) fn watch_fd(&self) -> Option<&File> {
        self.inotify.as_ref()
    }

    /// (entries, bytes, descriptors) held now.
    pub(super) fn usage(&self) -> (usize, u64, usize) {
        (self.map.len(), self.bytes, self.fds)
    }

    /// Whether every entry is watched (no revalidation in force).
    pub(super) fn watched(&self) -> bool {
        !self.degraded
    }

    /// The entry for `key`, freshest first in the LRU order. An entry that
    /// is not watched and is due is first compared with the file beneath
    /// `dir` (as securely as a miss opens it), and dropped if it changed.
    pub(super) fn get(&mut self, key: &[u8], dir: &File) -> Option<&Entry> {
        let now = Instant::now();
        if self.inotify.is_some() && now.duration_since(self.checked) > RECHECK {
            self.on_events();
        }
        let slot = *self.map.get(key)?;
        let due = self.entry(slot)?.verify_at.is_some_and(|at| at <= now);
        if due && !self.revalidate(slot, dir) {
            self.remove(slot);
            return None;
        }
        self.touch(slot);
        self.entry(slot)
    }

    fn entry(&self, slot: u32) -> Option<&Entry> {
        self.slots.get(slot as usize)?.as_ref()
    }

    fn revalidate(&mut self, slot: u32, dir: &File) -> bool {
        let Some(e) = self.slots[slot as usize].as_mut() else {
            return false;
        };
        let same = crate::sys::open_beneath_no_symlinks(dir, &e.rel)
            .and_then(|f| f.metadata())
            .is_ok_and(|m| Stamp::of(&m) == e.stamp && m.nlink() == 1);
        if same {
            e.verify_at = Some(Instant::now() + REVALIDATE);
        }
        same
    }

    /// Opens, reads and caches the file for `f.key`; `None` when it cannot
    /// be cached (a symlink on the path, not a regular file, more than one
    /// link, a modification time in the future, a read error, limits of 0).
    pub(super) fn fill(&mut self, f: &Fill<'_>, dir: &File, root: &Path) -> Option<&Entry> {
        if self.limits.entries == 0 {
            return None;
        }
        let now = Instant::now();
        if self.refused.get(f.key).is_some_and(|&at| now < at) {
            return None;
        }
        if self.try_fill(f, dir, root).is_none() {
            if self.refused.len() >= self.limits.entries {
                self.refused.clear();
            }
            self.refused.insert(f.key.into(), now + REFUSED_RETRY);
            return None;
        }
        let slot = *self.map.get(f.key)?;
        self.entry(slot)
    }

    fn try_fill(&mut self, f: &Fill<'_>, dir: &File, root: &Path) -> Option<u32> {
        // An entry being replaced goes first, so its watches are not given
        // back while the new one is being set up on them.
        if let Some(&old) = self.map.get(f.key) {
            self.remove(old);
        }
        // Watch first, then open and read: a change after this point is
        // reported, a change before it is in what we read.
        let deps = match self.watch_path(root, dir, f.rel, f.via_index) {
            Watched::Yes(deps) => Some(deps),
            Watched::Degraded => None,
            Watched::Never => return None,
        };
        let opened = crate::sys::open_beneath_no_symlinks(dir, f.rel)
            .and_then(|file| file.metadata().map(|m| (file, m)));
        let (file, meta) = match opened {
            Ok(x) => x,
            Err(e) => {
                debug!("not caching /{}: {e}", f.rel.display());
                self.release_deps(deps.as_deref().unwrap_or(&[]));
                return None;
            }
        };
        let id = Identity::of(&meta);
        let cacheable = meta.is_file() && meta.nlink() == 1 && id.settled(SystemTime::now());
        let small = meta.len() <= self.limits.small;
        let fits = if small {
            meta.len() <= self.limits.bytes
        } else {
            self.limits.fds > 0
        };
        if !cacheable || !fits {
            self.release_deps(deps.as_deref().unwrap_or(&[]));
            return None;
        }
        let content = if small {
            match read_all(&file, meta.len()) {
                Ok(bytes) => Content::Bytes(bytes.into()),
                Err(e) => {
                    debug!("not caching /{}: {e}", f.rel.display());
                    self.release_deps(deps.as_deref().unwrap_or(&[]));
                    return None;
                }
            }
        } else {
            Content::Fd(Arc::new(file))
        };
        let v = id.at(SystemTime::now());
        let last_modified = v.last_modified();
        let etag = id.etag.clone();
        let mut h200: Vec<(&str, &str)> = vec![
            (header::CONTENT_TYPE, &f.content_type),
            (header::ACCEPT_RANGES, f.accept_ranges),
            (header::ETAG, &etag),
            (header::LAST_MODIFIED, &last_modified),
        ];
        let mut h304: Vec<(&str, &str)> = vec![
            (header::ETAG, &etag),
            (header::LAST_MODIFIED, &last_modified),
        ];
        if let Some(cc) = f.cache_control {
            h200.push((header::CACHE_CONTROL, cc));
            h304.push((header::CACHE_CONTROL, cc));
        }
        let (head, head_304) = (HeaderBlock::new(h200), HeaderBlock::new(h304));
        let watched = deps.is_some();
        let entry = Entry {
            key: f.key.into(),
            len: meta.len(),
            stamp: Stamp::of(&meta),
            content,
            id,
            head,
            head_304,
            rel: f.rel.to_path_buf(),
            deps: Vec::new(),
            verify_at: (!watched).then(|| Instant::now() + REVALIDATE),
            gen: 0,
            prev: NONE,
            next: NONE,
        };
        let slot = self.insert(entry);
        if let Some(deps) = deps {
            self.depend(slot, deps);
        }
        self.evict(slot);
        self.refused.remove(f.key);
        Some(slot)
    }

    /// Watches the root, each directory on the way to `rel` and the file
    /// itself, each with the bucket the entry will be in: under the next
    /// component's name, or, for an index file, on anything in its
    /// directory. `None` if any watch could not be added, or the root path
    /// no longer names the directory `dir` serves (it was moved away): then
    /// the entry is revalidated instead.
    fn watch_path(&mut self, root: &Path, dir: &File, rel: &Path, via_index: bool) -> Watched {
        let Some(inotify) = self.inotify.as_ref() else {
            return Watched::Degraded;
        };
        let names: Vec<&std::ffi::OsStr> = rel.iter().collect();
        let mut deps = Vec::with_capacity(names.len() + 1);
        let mut path = root.to_path_buf();
        for (i, name) in names.iter().enumerate() {
            let last = i + 1 == names.len();
            let bucket = (!(last && via_index)).then(|| name.to_os_string());
            match crate::sys::inotify_add_watch(inotify, &path, MASK) {
                Ok(wd) => deps.push(Dep { wd, name: bucket }),
                Err(e) => return self.unwatched(&path, &e, deps),
            }
            path.push(name);
        }
        match crate::sys::inotify_add_watch(inotify, &path, FILE_MASK) {
            Ok(wd) => deps.push(Dep { wd, name: None }),
            Err(e) => return self.unwatched(&path, &e, deps),
        }
        for d in &deps {
            self.watches.entry(d.wd).or_default();
        }
        // The watches were added by path, the file is opened beneath `dir`:
        // the root path must still be that directory (after the watches, so
        // a later move of it is an event on a watch we hold).
        let same = match (std::fs::metadata(root), dir.metadata()) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        };
        if !same {
            debug!(
                "file cache: {} is not the served directory any more",
                root.display()
            );
            self.release_deps(&deps);
            return Watched::Never;
        }
        Watched::Yes(deps)
    }

    /// A watch could not be added: say so once, give back the others.
    fn unwatched(&mut self, path: &Path, e: &io::Error, deps: Vec<Dep>) -> Watched {
        for d in &deps {
            self.watches.entry(d.wd).or_default();
        }
        if !matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::ENOMEM)) {
            // Not a lack of watches: the path is not what the open beneath
            // the root will find (moved, replaced): do not cache it now.
            self.release_deps(&deps);
            return Watched::Never;
        }
        if !self.degraded {
            info!(
                "file cache: cannot watch {} ({e}); files that cannot be watched \
                 are revalidated every second",
                path.display()
            );
            self.degraded = true;
        }
        for d in &deps {
            self.watches.entry(d.wd).or_default();
        }
        self.release_deps(&deps);
        Watched::Degraded
    }

    /// Records that `slot` depends on each of `deps`, in its bucket.
    fn depend(&mut self, slot: u32, deps: Vec<Dep>) {
        let gen = self.slots[slot as usize].as_ref().map_or(0, |e| e.gen);
        for d in &deps {
            let Some(w) = self.watches.get_mut(&d.wd) else {
                continue;
            };
            w.live += 1;
            match &d.name {
                Some(n) => w.by_name.entry(n.clone()).or_default().push((slot, gen)),
                None => w.any.push((slot, gen)),
            }
        }
        if let Some(e) = self.slots[slot as usize].as_mut() {
            e.deps = deps;
        }
    }

    /// Gives back the watches of `deps` that no entry uses any more.
    fn release_deps(&mut self, deps: &[Dep]) {
        for d in deps {
            self.release(d.wd);
        }
    }

    /// Gives back watch `wd` if no entry uses it.
    fn release(&mut self, wd: i32) {
        if self.watches.get(&wd).is_some_and(|w| w.live == 0) {
            self.watches.remove(&wd);
            if let Some(fd) = &self.inotify {
                crate::sys::inotify_rm_watch(fd, wd);
            }
        }
    }

    /// The loop's poll just said no event is pending: fresh as of now.
    pub(super) fn polled(&mut self) {
        self.checked = Instant::now();
    }

    /// Reads every pending inotify event and drops the entries they touch.
    pub(super) fn on_events(&mut self) {
        self.checked = Instant::now();
        let mut buf = [0u8; 4096];
        loop {
            let Some(mut fd) = self.inotify.as_ref() else {
                return;
            };
            let n = match fd.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return, // WouldBlock: all read
            };
            let mut at = 0;
            while at + 16 <= n {
                let word = |i: usize| {
                    let b = &buf[at + i..at + i + 4];
                    [b[0], b[1], b[2], b[3]]
                };
                let wd = i32::from_ne_bytes(word(0));
                let mask = u32::from_ne_bytes(word(4));
                let len = u32::from_ne_bytes(word(12)) as usize;
                let name_end = (at + 16 + len).min(n);
                let raw = &buf[at + 16..name_end];
                let name = &raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len())];
                self.on_event(wd, mask, name);
                at = name_end;
            }
        }
    }

    fn on_event(&mut self, wd: i32, mask: u32, name: &[u8]) {
        self.refused.clear();
        if mask & libc::IN_Q_OVERFLOW != 0 {
            debug!("file cache: inotify queue overflowed; dropping every entry");
            self.clear();
            return;
        }
        let gone = mask & libc::IN_IGNORED != 0;
        let Some(w) = self.watches.get_mut(&wd) else {
            return;
        };
        let mut hit: Vec<(u32, u64)> = std::mem::take(&mut w.any);
        if name.is_empty() || gone {
            // The directory itself changed (or went): everything below it.
            for (_, users) in w.by_name.drain() {
                hit.extend(users);
            }
        } else if let Some(users) = w.by_name.remove(&OsString::from_vec(name.to_vec())) {
            hit.extend(users);
        }
        if gone {
            self.watches.remove(&wd);
        }
        for (slot, gen) in hit {
            if let Some(e) = self.entry(slot).filter(|e| e.gen == gen) {
                debug!("file cache: {} changed", String::from_utf8_lossy(&e.key));
                self.remove(slot);
            }
        }
    }

    /// Drops every entry holding a descriptor (the process ran out of them).
    pub(super) fn release_fds(&mut self) {
        let held: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|&s| matches!(self.entry(s), Some(e) if matches!(e.content, Content::Fd(_))))
            .collect();
        if !held.is_empty() {
            info!(
                "file cache: out of descriptors; closing {} cached files",
                held.len()
            );
        }
        for s in held {
            self.remove(s);
        }
    }

    /// Drops everything.
    pub(super) fn clear(&mut self) {
        while self.tail != NONE {
            self.remove(self.tail);
        }
    }

    fn insert(&mut self, mut e: Entry) -> u32 {
        self.gen += 1;
        e.gen = self.gen;
        match &e.content {
            Content::Bytes(b) => self.bytes += b.len() as u64,
            Content::Fd(_) => self.fds += 1,
        }
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        self.map.insert(e.key.clone(), slot);
        self.slots[slot as usize] = Some(e);
        self.link_front(slot);
        slot
    }

    fn remove(&mut self, slot: u32) {
        self.unlink(slot);
        let Some(e) = self.slots[slot as usize].take() else {
            return;
        };
        self.free.push(slot);
        self.map.remove(&e.key);
        match &e.content {
            Content::Bytes(b) => self.bytes -= b.len() as u64,
            Content::Fd(_) => self.fds -= 1,
        }
        // Out of its buckets (an emptied name goes too), then the watches
        // nothing else uses.
        for d in &e.deps {
            let Some(w) = self.watches.get_mut(&d.wd) else {
                continue;
            };
            w.live = w.live.saturating_sub(1);
            let gone = |p: &(u32, u64)| *p == (slot, e.gen);
            match &d.name {
                Some(n) => {
                    if let Some(b) = w.by_name.get_mut(n) {
                        b.retain(|p| !gone(p));
                        if b.is_empty() {
                            w.by_name.remove(n);
                        }
                    }
                }
                None => w.any.retain(|p| !gone(p)),
            }
        }
        self.release_deps(&e.deps);
    }

    /// Evicts least recently used entries (never `keep`) until every bound
    /// holds.
    fn evict(&mut self, keep: u32) {
        let l = self.limits;
        while self.map.len() > l.entries || self.bytes > l.bytes {
            let victim = if self.tail == keep {
                self.entry(keep).map_or(NONE, |e| e.prev)
            } else {
                self.tail
            };
            if victim == NONE {
                break;
            }
            self.remove(victim);
        }
        let mut at = self.tail;
        while self.fds > l.fds && at != NONE {
            let prev = self.entry(at).map_or(NONE, |e| e.prev);
            if at != keep
                && matches!(self.entry(at), Some(e) if matches!(e.content, Content::Fd(_)))
            {
                self.remove(at);
            }
            at = prev;
        }
    }

    fn touch(&mut self, slot: u32) {
        if self.head != slot {
            self.unlink(slot);
            self.link_front(slot);
        }
    }

    fn link_front(&mut self, slot: u32) {
        let old = self.head;
        if let Some(e) = self.slots[slot as usize].as_mut() {
            e.prev = NONE;
            e.next = old;
        }
        if let Some(e) = self.slots.get_mut(old as usize).and_then(Option::as_mut) {
            e.prev = slot;
        }
        self.head = slot;
        if self.tail == NONE {
            self.tail = slot;
        }
    }

    fn unlink(&mut self, slot: u32) {
        let Some(e) = self.slots[slot as usize].as_mut() else {
            return;
        };
        let (prev, next) = (e.prev, e.next);
        e.prev = NONE;
        e.next = NONE;
        match self.slots.get_mut(prev as usize).and_then(Option::as_mut) {
            Some(p) => p.next = next,
            None => self.head = next,
        }
        match self.slots.get_mut(next as usize).and_then(Option::as_mut) {
            Some(n) => n.prev = prev,
            None => self.tail = prev,
        }
    }
}

/// The whole file, exactly `len` bytes, or an error if it is shorter now.
fn read_all(file: &File, len: u64) -> io::Result<Vec<u8>> {
    let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
    let mut buf = vec![0; len];
    let mut at = 0;
    while at < len {
        match file.read_at(&mut buf[at..], at as u64) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(buf)
}

/// Regression (found in review): per-name buckets outlived their entries.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_stay_bounded_by_the_entries() {
        let base = std::env::temp_dir().join(format!("keel-review-bkt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        for i in 0..5000 {
            std::fs::write(base.join(format!("f{i}")), b"x").unwrap();
        }
        let dir = File::open(&base).unwrap();
        let mut c = Cache::new(Limits {
            bytes: 1 << 20,
            entries: 16,
            fds: 4,
            small: 1024,
        });
        for i in 0..5000 {
            let key = format!("/f{i}");
            let rel = PathBuf::from(format!("f{i}"));
            let f = Fill {
                key: key.as_bytes(),
                rel: &rel,
                via_index: false,
                content_type: "text/plain".into(),
                accept_ranges: "bytes",
                cache_control: None,
            };
            assert!(c.fill(&f, &dir, &base).is_some());
        }
        let names: usize = c.watches.values().map(|w| w.by_name.len()).sum();
        let pairs: usize = c
            .watches
            .values()
            .map(|w| w.by_name.values().map(Vec::len).sum::<usize>())
            .sum();
        let _ = std::fs::remove_dir_all(&base);
        assert_eq!(c.map.len(), 16);
        assert!(
            names <= 64,
            "{names} names / {pairs} pairs held for 16 entries"
        );
    }
}
