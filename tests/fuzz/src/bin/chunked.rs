//! The chunked decoder, whole and in random pieces (`keelhttp::fuzzing::chunked`).
fn main() {
    afl::fuzz!(|data: &[u8]| keelhttp::fuzzing::chunked(data));
}
