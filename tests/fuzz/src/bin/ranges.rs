//! `Range` parsing (byte 0 even) and conditional headers with HTTP dates
//! (byte 0 odd): `keelhttp::fuzzing::{range, conditional}`.
fn main() {
    afl::fuzz!(|data: &[u8]| match data.split_first() {
        Some((b, rest)) if b & 1 == 0 => keelhttp::fuzzing::range(rest),
        Some((_, rest)) => keelhttp::fuzzing::conditional(rest),
        None => {}
    });
}
