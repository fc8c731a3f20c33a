//! Uploads to disk, streamed: `PUT /upload/NAME` writes `DIR/NAME`.
//!
//! `cargo run --example upload -- 8080 /tmp/uploads`, then
//! `curl -T big.iso http://127.0.0.1:8080/upload/big.iso`.
//!
//! The body reaches a writer thread in pieces (never all in memory), goes to
//! a temporary file in DIR and is renamed to NAME only once it is complete,
//! so a client that disconnects mid-upload leaves no file. The answer is
//! `201` with the size and the SHA-256 (computed here, no dependency).
//! Bodies up to 4 GiB (a third argument sets another limit in bytes).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use keelhttp::{BodyReader, Config, Handler, Reply, Request, Response, Server};

struct Uploads {
    dir: PathBuf,
    max: u64,
}

/// A file name we accept: no path separators, no leading dot, short.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl Handler for Uploads {
    fn stream_body(&mut self, req: &Request<'_>) -> Option<u64> {
        (req.method() == "PUT" && req.path().starts_with("/upload/")).then_some(self.max)
    }

    fn handle(&mut self, req: &Request<'_>) -> Response {
        let Some(name) = req.path().strip_prefix("/upload/") else {
            return Response::text(404, "PUT /upload/NAME\n");
        };
        if req.method() != "PUT" {
            return Response::text(405, "PUT /upload/NAME\n").with_header("Allow", "PUT");
        }
        if !valid_name(name) {
            return Response::text(400, "bad file name\n");
        }
        let Some(body) = req.body_reader() else {
            return Response::text(400, "no body\n");
        };
        let (resp, reply) = Response::deferred();
        let (dir, name) = (self.dir.clone(), name.to_owned());
        std::thread::spawn(move || write_file(dir, name, body, reply));
        resp
    }
}

static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Runs on its own thread: body → temp file → fsync → rename → 201.
fn write_file(dir: PathBuf, name: String, body: BodyReader, reply: Reply) {
    let seq = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
    let temp = dir.join(format!(".upload-{}-{seq}.tmp", std::process::id()));
    match copy_to(&temp, body) {
        Ok((size, digest)) => match fs::rename(&temp, dir.join(&name)) {
            Ok(()) => {
                let _ = reply.send(Response::text(201, format!("{size} sha256:{digest}\n")));
            }
            Err(e) => {
                let _ = fs::remove_file(&temp);
                let _ = reply.send(Response::text(500, format!("rename failed: {e}\n")));
            }
        },
        Err(e) => {
            // Client gone or body cut: no partial file stays behind.
            let _ = fs::remove_file(&temp);
            log::info!("upload of {name} abandoned: {e}");
            let _ = reply.send(Response::text(500, format!("upload failed: {e}\n")));
        }
    }
}

fn copy_to(temp: &PathBuf, mut body: BodyReader) -> io::Result<(u64, String)> {
    let mut file = File::create(temp)?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = body.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        file.write_all(&buf[..n])?;
        size += n as u64;
    }
    file.sync_all()?;
    Ok((size, hash.hex()))
}

/// SHA-256 (FIPS 180-4), streaming.
struct Sha256 {
    h: [u32; 8],
    block: [u8; 64],
    used: usize,
    len: u64,
}

const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

impl Sha256 {
    fn new() -> Sha256 {
        Sha256 {
            h: [
                0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
                0x5be0cd19,
            ],
            block: [0; 64],
            used: 0,
            len: 0,
        }
    }

    fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        while !data.is_empty() {
            let n = (64 - self.used).min(data.len());
            self.block[self.used..self.used + n].copy_from_slice(&data[..n]);
            self.used += n;
            data = &data[n..];
            if self.used == 64 {
                let block = self.block;
                self.compress(&block);
                self.used = 0;
            }
        }
    }

    fn compress(&mut self, block: &[u8; 64]) {
        let mut w = [0u32; 64];
        for (i, c) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = self.h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = h
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            h = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in self.h.iter_mut().zip([a, b, c, d, e, f, g, h]) {
            *x = x.wrapping_add(y);
        }
    }

    fn hex(mut self) -> String {
        let bits = self.len.wrapping_mul(8);
        self.update(&[0x80]);
        while self.used != 56 {
            self.update(&[0]);
        }
        self.update(&bits.to_be_bytes());
        self.h.iter().map(|x| format!("{x:08x}")).collect()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || -> ! {
        let _ = writeln!(io::stderr(), "usage: upload PORT DIR [MAX_BYTES]");
        std::process::exit(2);
    };
    let (Some(port), Some(dir)) = (args.first(), args.get(1)) else {
        usage()
    };
    let Ok(port) = port.parse::<u16>() else {
        usage()
    };
    let max = match args.get(2).map(|m| m.parse::<u64>()) {
        None => 4 << 30,
        Some(Ok(m)) => m,
        Some(Err(_)) => usage(),
    };
    let dir = PathBuf::from(dir);
    if !dir.is_dir() {
        let _ = writeln!(io::stderr(), "upload: {} is not a directory", dir.display());
        std::process::exit(2);
    }
    let server = Server::bind(("127.0.0.1", port), Config::default())?;
    keelhttp::stop_on_signals(server.shutdown_handle())?;
    let _ = writeln!(
        io::stdout(),
        "uploads to {} on http://{}/upload/NAME",
        dir.display(),
        server.local_addr()
    );
    server.run(Uploads { dir, max })?;
    Ok(())
}
