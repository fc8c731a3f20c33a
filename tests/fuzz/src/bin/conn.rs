//! A whole connection through the scripted transport: arbitrary bytes,
//! cuts, `WouldBlock`s and short writes (`keelhttp::fuzzing::conn`).
fn main() {
    afl::fuzz!(|data: &[u8]| keelhttp::fuzzing::conn(data));
}
