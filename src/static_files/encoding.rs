//! `Accept-Encoding` (RFC 9110 §12.5.3) for precompressed siblings: which of
//! `F.br` and `F.gz` the client takes, best first.

use super::conditional::trim_ows;

/// A content coding we can serve from a precompressed sibling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Coding {
    /// Brotli, from `F.br`.
    Br,
    /// Gzip, from `F.gz`.
    Gzip,
}

impl Coding {
    /// The `Content-Encoding` value.
    pub(super) fn name(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Gzip => "gzip",
        }
    }

    /// The sibling's suffix.
    pub(super) fn suffix(self) -> &'static str {
        match self {
            Coding::Br => ".br",
            Coding::Gzip => ".gz",
        }
    }
}

/// The codings the client accepts, by descending q-value (`br` first on a
/// tie), then `None`s. A coding is accepted when listed with q > 0, or, unlisted, when
/// `*` is listed with q > 0. A member with a malformed q-value is ignored.
pub(super) fn preferred(value: &[u8]) -> [Option<Coding>; 2] {
    let (mut br, mut gzip, mut star) = (None, None, None);
    for member in value.split(|&b| b == b',') {
        let mut parts = member.split(|&b| b == b';');
        let coding = trim_ows(parts.next().unwrap_or_default());
        let mut q = Some(1000u16);
        for param in parts {
            let param = trim_ows(param);
            if param.len() >= 2 && param[..2].eq_ignore_ascii_case(b"q=") {
                q = qvalue(&param[2..]);
            }
        }
        let Some(q) = q else { continue };
        let slot = if coding.eq_ignore_ascii_case(b"br") {
            &mut br
        } else if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip") {
            &mut gzip
        } else if coding == b"*" {
            &mut star
        } else {
            continue;
        };
        slot.get_or_insert(q);
    }
    let br = br.or(star).unwrap_or(0);
    let gzip = gzip.or(star).unwrap_or(0);
    let pick = |c: Coding, q: u16| (q > 0).then_some(c);
    let [a, b] = if gzip > br {
        [pick(Coding::Gzip, gzip), pick(Coding::Br, br)]
    } else {
        [pick(Coding::Br, br), pick(Coding::Gzip, gzip)]
    };
    match a {
        Some(_) => [a, b],
        None => [b, None],
    }
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in
/// thousandths.
fn qvalue(s: &[u8]) -> Option<u16> {
    let (int, frac) = match s.iter().position(|&b| b == b'.') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, &[][..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths = 0u16;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::Coding::{Br, Gzip};
    use super::*;

    fn p(s: &str) -> [Option<Coding>; 2] {
        preferred(s.as_bytes())
    }

    #[test]
    fn codings_by_q_value() {
        assert_eq!(p("gzip, deflate, br"), [Some(Br), Some(Gzip)]);
        assert_eq!(p("gzip"), [Some(Gzip), None]);
        assert_eq!(p("x-gzip"), [Some(Gzip), None]);
        assert_eq!(p("br;q=0.5, gzip"), [Some(Gzip), Some(Br)]);
        assert_eq!(p("br;q=0, gzip;q=0.1"), [Some(Gzip), None]);
        assert_eq!(p("*"), [Some(Br), Some(Gzip)]);
        assert_eq!(p("*;q=0.5, br;q=0"), [Some(Gzip), None]);
        assert_eq!(p("GZIP ; Q=1.000"), [Some(Gzip), None]);
        assert_eq!(p("identity"), [None, None]);
        assert_eq!(p(""), [None, None]);
        assert_eq!(p("gzip;q=2, br;q=0.x"), [None, None]);
        assert_eq!(p("gzip;q=1.5"), [None, None]);
    }

    #[test]
    fn q_values() {
        assert_eq!(qvalue(b"0"), Some(0));
        assert_eq!(qvalue(b"0.5"), Some(500));
        assert_eq!(qvalue(b"0.125"), Some(125));
        assert_eq!(qvalue(b"1."), Some(1000));
        assert_eq!(qvalue(b"0.1234"), None);
        assert_eq!(qvalue(b""), None);
    }
}
