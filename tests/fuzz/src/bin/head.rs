//! The request-head parser and framing rules (`keelhttp::fuzzing::head`).
fn main() {
    afl::fuzz!(|data: &[u8]| keelhttp::fuzzing::head(data));
}
