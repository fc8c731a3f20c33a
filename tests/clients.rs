//! Real clients against the real `keel` binary: curl and Python's
//! `http.client`. Each test skips, with a printed reason, when its client is
//! not installed (`.ci/run` installs curl).

mod util;

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

use util::{have, pattern, KeelProcess, TempDir};

/// `keel` serving `dir` on 127.0.0.1.
fn start(dir: &TempDir) -> KeelProcess {
    KeelProcess::start(dir.path(), IpAddr::V4(Ipv4Addr::LOCALHOST), "warn")
}

fn docroot() -> TempDir {
    let dir = TempDir::new("clients");
    dir.write("index.html", b"<h1>hi</h1>\n");
    dir.write("data.bin", &pattern(3 << 20, 9));
    dir
}

#[test]
fn curl_downloads_byte_identical_files() {
    if !have("curl") {
        return;
    }
    let dir = docroot();
    let keel = start(&dir);
    let url = format!("http://{}", keel.addr());
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "20"])
        .arg(format!("{url}/data.bin"))
        .arg(format!("{url}/index.html")) // same connection, keep-alive
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut want = pattern(3 << 20, 9);
    want.extend_from_slice(b"<h1>hi</h1>\n");
    assert!(
        out.stdout == want,
        "curl got {} bytes, not the files",
        out.stdout.len()
    );
}

#[test]
fn python_http_client_keeps_alive_and_reads_everything() {
    if !have("python3") {
        return;
    }
    let dir = docroot();
    let keel = start(&dir);
    let script = format!(
        r#"
import http.client, hashlib, sys
c = http.client.HTTPConnection("127.0.0.1", {port}, timeout=20)
for i in range(50):
    c.request("GET", "/index.html")
    r = c.getresponse()
    assert r.status == 200 and r.read() == b"<h1>hi</h1>\n", i
c.request("GET", "/data.bin")
r = c.getresponse()
sys.stdout.write(hashlib.sha256(r.read()).hexdigest())
c.request("HEAD", "/data.bin")
r = c.getresponse()
assert r.getheader("Content-Length") == str(3 << 20)
r.read()
c.request("GET", "/missing")
r = c.getresponse()
assert r.status == 404, r.status
r.read()
"#,
        port = keel.addr().port()
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = String::from_utf8_lossy(&out.stdout).into_owned();
    let want = Command::new("python3")
        .args([
            "-c",
            "import hashlib,sys; sys.stdout.write(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())",
        ])
        .stdin(std::fs::File::open(dir.0.join("data.bin")).unwrap())
        .output()
        .expect("hash with python3");
    assert_eq!(got, String::from_utf8_lossy(&want.stdout));
}
