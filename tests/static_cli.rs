//! The `keel` flags that map onto `StaticOptions`: `--list`, `--dotfiles`,
//! `--index NAMES`, `--mime EXT=TYPE` (repeatable), `--cache-control VALUE`
//! and `--precompressed`. One test per flag, against the binary.

mod util;

use std::net::{IpAddr, Ipv4Addr};

use util::{each_way, KeelProcess, Req, TempDir};

fn keel(dir: &TempDir, flags: &[&str]) -> KeelProcess {
    KeelProcess::start_with(dir.path(), IpAddr::V4(Ipv4Addr::LOCALHOST), "warn", flags)
}

#[test]

fn list_flag_lists_a_directory_without_an_index() {
    let dir = TempDir::new("cli-list");
    dir.write("d/a b.txt", b"x");
    dir.write("d/<b>.txt", b"y");
    let plain = keel(&dir, &[]);
    assert_eq!(Req::get("/d/").once(plain.addr()).status, 404);
    let k = keel(&dir, &["--list"]);
    each_way(k.addr(), &[Req::get("/d/")], |pass, _r, resp| {
        assert_eq!(resp.status, 200, "{pass}");
        let html = String::from_utf8_lossy(&resp.body);
        assert!(html.contains("href=\"a%20b.txt\""), "{html}");
        assert!(
            html.contains("&lt;b&gt;.txt") && !html.contains("<b>"),
            "{html}"
        );
    });
}

#[test]

fn dotfiles_flag_serves_dotfiles() {
    let dir = TempDir::new("cli-dotfiles");
    dir.write(".well-known/security.txt", b"contact\n");
    assert_eq!(
        Req::get("/.well-known/security.txt")
            .once(keel(&dir, &[]).addr())
            .status,
        404
    );
    let k = keel(&dir, &["--dotfiles"]);
    each_way(
        k.addr(),
        &[Req::get("/.well-known/security.txt")],
        |pass, _r, resp| {
            assert_eq!(resp.status, 200, "{pass}");
            assert_eq!(resp.body, b"contact\n");
        },
    );
}

#[test]

fn index_flag_sets_the_index_files_in_order() {
    let dir = TempDir::new("cli-index");
    dir.write("a/default.htm", b"default\n");
    dir.write("b/home.html", b"home\n");
    dir.write("b/default.htm", b"not me\n");
    let k = keel(&dir, &["--index", "home.html,default.htm"]);
    each_way(
        k.addr(),
        &[Req::get("/a/"), Req::get("/b/")],
        |pass, r, resp| {
            assert_eq!(resp.status, 200, "{pass}");
            let want: &[u8] = if r.target == "/a/" {
                b"default\n"
            } else {
                b"home\n"
            };
            assert_eq!(resp.body, want, "{pass}");
        },
    );
}

#[test]

fn mime_flag_adds_and_overrides_types() {
    let dir = TempDir::new("cli-mime");
    dir.write("x.foo", b"foo");
    dir.write("r.md", b"# r\n");
    let k = keel(
        &dir,
        &[
            "--mime",
            "foo=application/x-foo",
            "--mime",
            "md=text/x-markdown",
        ],
    );
    each_way(
        k.addr(),
        &[Req::get("/x.foo"), Req::get("/r.md")],
        |pass, r, resp| {
            let want = if r.target == "/x.foo" {
                "application/x-foo"
            } else {
                "text/x-markdown; charset=utf-8"
            };
            assert_eq!(resp.header("content-type"), Some(want), "{pass}");
        },
    );
}

#[test]

fn cache_control_flag_is_sent_with_files() {
    let dir = TempDir::new("cli-cache");
    dir.write("a.txt", b"a");
    let k = keel(&dir, &["--cache-control", "public, max-age=3600"]);
    each_way(k.addr(), &[Req::get("/a.txt")], |pass, _r, resp| {
        assert_eq!(
            resp.header("cache-control"),
            Some("public, max-age=3600"),
            "{pass}"
        );
    });
}

#[test]

fn precompressed_flag_serves_siblings_to_clients_that_accept_them() {
    let dir = TempDir::new("cli-precompressed");
    dir.write("app.js", b"plain");
    dir.write("app.js.gz", b"gzipped");
    let k = keel(&dir, &["--precompressed"]);
    let reqs = [
        Req::get("/app.js").with("Accept-Encoding", "gzip"),
        Req::get("/app.js"),
    ];
    each_way(k.addr(), &reqs, |pass, r, resp| {
        assert_eq!(resp.header("vary"), Some("Accept-Encoding"), "{pass}");
        if r.headers.is_empty() {
            assert_eq!(resp.body, b"plain");
        } else {
            assert_eq!(resp.body, b"gzipped");
            assert_eq!(resp.header("content-encoding"), Some("gzip"));
            assert_eq!(
                resp.header("content-type"),
                Some("text/javascript; charset=utf-8")
            );
        }
    });
}
