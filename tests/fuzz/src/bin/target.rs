//! Request targets through the grammar, percent-decoding and dot segments:
//! never outside the root (`keelhttp::fuzzing::target`).
fn main() {
    afl::fuzz!(|data: &[u8]| keelhttp::fuzzing::target(data));
}
