//! Real download clients against the `keel` binary with its default flags:
//! `curl -r` (ranges), `curl -C -` and `wget -c` (resuming a partial
//! download), `curl -z` (If-Modified-Since). Each test skips, with a printed
//! reason, when its client is not installed.

mod util;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use util::{have, pattern, KeelProcess, TempDir};

const LEN: usize = 3 << 20;

/// `keel` serving a directory with `data.bin` (3 MiB of pattern).
fn start() -> (TempDir, KeelProcess, Vec<u8>) {
    let dir = TempDir::new("static-clients");
    let data = pattern(LEN, 21);
    dir.write("www/data.bin", &data);
    let keel = KeelProcess::start(
        &dir.path().join("www"),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        "warn",
    );
    (dir, keel, data)
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.stdin(Stdio::null()).output().expect("run the client");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn curl() -> Command {
    let mut c = Command::new("curl");
    c.args(["-sS", "--fail", "--max-time", "20"]);
    c
}

#[test]
fn curl_r_gets_exactly_the_requested_ranges() {
    if !have("curl") {
        return;
    }
    let (_dir, keel, data) = start();
    let url = format!("http://{}/data.bin", keel.addr());
    for (spec, want) in [
        ("100-199", &data[100..200]),
        ("3145000-", &data[3_145_000..]),
        ("-1000", &data[LEN - 1000..]),
        ("0-0", &data[..1]),
    ] {
        let out = run(curl().args(["-r", spec]).arg(&url));
        assert!(
            out.stdout == want,
            "curl -r {spec}: {} bytes",
            out.stdout.len()
        );
    }
    // Several ranges: a multipart/byteranges body holding both parts.
    let out = run(curl().args(["-r", "0-9,1000-1009", "-D", "-"]).arg(&url));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("206"), "{text}");
    assert!(text.contains("multipart/byteranges; boundary="), "{text}");
    assert!(
        text.contains(&format!("Content-Range: bytes 1000-1009/{LEN}")),
        "{text}"
    );
}

fn partial(path: &Path, data: &[u8], n: usize) {
    std::fs::write(path, &data[..n]).expect("write the partial download");
}

#[test]
fn curl_continue_at_resumes_a_partial_download() {
    if !have("curl") {
        return;
    }
    let (dir, keel, data) = start();
    let url = format!("http://{}/data.bin", keel.addr());
    let out = dir.path().join("out.bin");
    partial(&out, &data, 1_234_567);
    run(curl().args(["-C", "-", "-o"]).arg(&out).arg(&url));
    let got = std::fs::read(&out).unwrap();
    assert!(got == data, "resumed file differs ({} bytes)", got.len());
    // Already complete: curl asks for a range past the end, gets the 416, and
    // keeps the file as it is.
    let status = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-C", "-", "-o"])
        .arg(&out)
        .arg(&url)
        .stdin(Stdio::null())
        .output()
        .expect("run curl");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(std::fs::read(&out).unwrap() == data);
}

#[test]
fn wget_continue_resumes_a_partial_download() {
    if !have("wget") {
        return;
    }
    let (dir, keel, data) = start();
    let url = format!("http://{}/data.bin", keel.addr());
    let work = dir.path().join("wget");
    std::fs::create_dir_all(&work).unwrap();
    partial(&work.join("data.bin"), &data, 2_000_001);
    run(Command::new("wget")
        .args(["-q", "-c", "--tries=1", "--timeout=20"])
        .arg(&url)
        .current_dir(&work));
    let got = std::fs::read(work.join("data.bin")).unwrap();
    assert!(got == data, "resumed file differs ({} bytes)", got.len());
}

#[test]
fn curl_z_gets_304_for_an_unmodified_file() {
    if !have("curl") {
        return;
    }
    let (dir, keel, _data) = start();
    let url = format!("http://{}/data.bin", keel.addr());
    let out = dir.path().join("z.bin");
    // A time condition from the local copy's mtime (now, after the server's file).
    std::fs::write(&out, b"local").unwrap();
    let code = run(curl()
        .args(["-o", "/dev/null", "-w", "%{http_code}", "-z"])
        .arg(&out)
        .arg(&url));
    assert_eq!(String::from_utf8_lossy(&code.stdout), "304");
    let code = run(curl()
        .args([
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-z",
            "1 Jan 2000 00:00:00 GMT",
        ])
        .arg(&url));
    assert_eq!(String::from_utf8_lossy(&code.stdout), "200");
}
