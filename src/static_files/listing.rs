//! Directory listings: an HTML page of the entries, sorted, names escaped,
//! links percent-encoded so that they lead back to the same entries.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::path::percent_encode_into;

/// At most this many entries are listed; a bigger directory is cut (and says
/// so), as the page is built in memory.
pub(super) const MAX_ENTRIES: usize = 10_000;

#[derive(Debug)]
struct Entry {
    name: OsString,
    dir: bool,
    size: u64,
    modified: Option<SystemTime>,
}

/// Where a listing reads from.
#[derive(Debug)]
pub(super) struct ListDir<'a> {
    /// The directory, opened beneath the root.
    pub(super) dir: &'a File,
    /// Its path (the fallback when `/proc` is not mounted).
    pub(super) path: &'a Path,
    /// The canonical root: symlinks resolving outside it are not listed.
    pub(super) root: &'a Path,
    /// The directory relative to the root, for the title and the parent link.
    pub(super) rel: &'a Path,
    /// Whether dotfiles are listed.
    pub(super) dotfiles: bool,
}

/// The listing page of a directory. Directories first, then files, each
/// sorted by name (bytewise); dotfiles (unless allowed), symlinks that
/// resolve outside the root, and anything neither a file nor a directory
/// are left out.
pub(super) fn render(d: &ListDir<'_>) -> io::Result<Vec<u8>> {
    // Read the directory that was opened (and checked) beneath the root,
    // through its descriptor, so a rename racing with the request cannot
    // swap another directory in.
    let via_fd = PathBuf::from(format!("/proc/self/fd/{}", d.dir.as_raw_fd()));
    let (base, reader) = match fs::read_dir(&via_fd) {
        Ok(r) => (via_fd, r),
        Err(_) => (d.path.to_path_buf(), fs::read_dir(d.path)?),
    };
    let mut entries = Vec::new();
    let mut truncated = false;
    for item in reader {
        let item = item?;
        if entries.len() >= MAX_ENTRIES {
            truncated = true;
            break;
        }
        let name = item.file_name();
        if name.as_bytes().first() == Some(&b'.') && !d.dotfiles {
            continue;
        }
        let Ok(ft) = item.file_type() else { continue };
        let meta = if ft.is_symlink() {
            // Shown only if it stays inside the root, like when it is served.
            let full = base.join(&name);
            match fs::canonicalize(&full) {
                Ok(real) if real.starts_with(d.root) => fs::metadata(&full),
                _ => continue,
            }
        } else {
            item.metadata()
        };
        let Ok(meta) = meta else { continue };
        if !meta.is_dir() && !meta.is_file() {
            continue;
        }
        entries.push(Entry {
            name,
            dir: meta.is_dir(),
            size: meta.len(),
            modified: meta.modified().ok(),
        });
    }
    entries.sort_unstable_by(|a, b| {
        b.dir
            .cmp(&a.dir)
            .then_with(|| a.name.as_bytes().cmp(b.name.as_bytes()))
    });
    Ok(page(d.rel, &entries, truncated).into_bytes())
}

fn page(rel: &Path, entries: &[Entry], truncated: bool) -> String {
    let mut title = String::from("/");
    for c in rel.iter() {
        title.push_str(&String::from_utf8_lossy(c.as_bytes()));
        title.push('/');
    }
    let mut out = String::with_capacity(512 + entries.len() * 160);
    out.push_str("<!doctype html>\n<html><head><meta charset=\"utf-8\">\n<title>Index of ");
    escape_into(&title, &mut out);
    out.push_str("</title></head>\n<body>\n<h1>Index of ");
    escape_into(&title, &mut out);
    out.push_str("</h1>\n<table>\n<tr><th>Name</th><th>Size</th><th>Modified</th></tr>\n");
    if !rel.as_os_str().is_empty() {
        out.push_str("<tr><td><a href=\"../\">../</a></td><td></td><td></td></tr>\n");
    }
    for e in entries {
        let shown = String::from_utf8_lossy(e.name.as_bytes());
        out.push_str("<tr><td><a href=\"");
        percent_encode_into(e.name.as_bytes(), &mut out);
        if e.dir {
            out.push('/');
        }
        out.push_str("\">");
        escape_into(&shown, &mut out);
        if e.dir {
            out.push('/');
        }
        out.push_str("</a></td><td>");
        if e.dir {
            out.push('-');
        } else {
            out.push_str(&e.size.to_string());
        }
        out.push_str("</td><td>");
        if let Some(t) = e.modified {
            out.push_str(&crate::http_date(t));
        }
        out.push_str("</td></tr>\n");
    }
    out.push_str("</table>\n");
    if truncated {
        out.push_str(&format!(
            "<p>Only the first {MAX_ENTRIES} entries are listed.</p>\n"
        ));
    }
    out.push_str("</body></html>\n");
    out
}

/// HTML-escapes text for element content and double-quoted attributes.
fn escape_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_and_links_encoded() {
        let entries = [
            Entry {
                name: OsString::from("sub dir"),
                dir: true,
                size: 4096,
                modified: None,
            },
            Entry {
                name: OsString::from("<script>alert(1)<script>&\"'.txt"),
                dir: false,
                size: 12,
                modified: Some(SystemTime::UNIX_EPOCH),
            },
        ];
        let html = page(Path::new("a<b"), &entries, true);
        assert!(html.contains("<title>Index of /a&lt;b/</title>"), "{html}");
        assert!(html.contains("<a href=\"../\">"));
        assert!(html.contains("<a href=\"sub%20dir/\">sub dir/</a></td><td>-</td>"));
        assert!(
            html.contains(
                "<a href=\"%3Cscript%3Ealert%281%29%3Cscript%3E%26%22%27.txt\">\
             &lt;script&gt;alert(1)&lt;script&gt;&amp;&quot;&#39;.txt</a></td><td>12</td>\
             <td>Thu, 01 Jan 1970 00:00:00 GMT</td>"
            ),
            "{html}"
        );
        assert!(!html.contains("<script>"));
        assert!(html.contains("Only the first"));
        assert!(!page(Path::new(""), &[], false).contains("../"));
    }
}
