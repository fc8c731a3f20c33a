//! Response heads into a reused buffer, and the `Date` value cached once a
//! second. Pure: no sockets, no allocation beyond the buffer's growth.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::header;

/// The `Date` header value, formatted once per second.
#[derive(Debug)]
pub(crate) struct DateCache {
    secs: u64,
    value: [u8; 29],
}

impl DateCache {
    pub(crate) fn new() -> DateCache {
        let mut d = DateCache {
            secs: u64::MAX,
            value: [b' '; 29],
        };
        d.update(SystemTime::now());
        d
    }

    /// Re-formats only when the second has changed.
    pub(crate) fn update(&mut self, now: SystemTime) {
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if secs != self.secs {
            self.secs = secs;
            self.value = http_date(secs);
        }
    }

    pub(crate) fn value(&self) -> &[u8] {
        &self.value
    }

    /// The cached clock, in seconds since the epoch (for the access log).
    pub(crate) fn secs(&self) -> u64 {
        self.secs
    }
}

/// IMF-fixdate (RFC 9110 §5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`.
pub(crate) fn http_date(secs: u64) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = secs / 86400;
    let rem = secs % 86400;
    let (y, m, d) = civil_from_days(days as i64);
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    two(&mut out[5..7], d as u64);
    out[8..11].copy_from_slice(MONTHS[(m - 1) as usize]);
    let y = y.clamp(0, 9999) as u64;
    two(&mut out[12..14], y / 100);
    two(&mut out[14..16], y % 100);
    two(&mut out[17..19], rem / 3600);
    two(&mut out[20..22], rem / 60 % 60);
    two(&mut out[23..25], rem % 60);
    out
}

fn two(out: &mut [u8], v: u64) {
    out[0] = b'0' + (v / 10 % 10) as u8;
    out[1] = b'0' + (v % 10) as u8;
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The reason phrase for a status; an unknown status gets an empty one, which
/// RFC 9112 allows.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Appends the decimal form of `v`.
pub(crate) fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// Whether a status carries no body and no `Content-Length` (RFC 9110 §8.6).
pub(crate) fn status_has_no_body(status: u16) -> bool {
    status < 200 || status == 204 || status == 304
}

/// How the connection ends after this response, as the head announces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnHeader {
    /// HTTP/1.1 keep-alive: nothing to say.
    None,
    /// HTTP/1.0 keep-alive must be announced.
    KeepAlive,
    /// The connection closes after this response.
    Close,
}

/// Whether a header name is a valid token and a value has no CR, LF or NUL:
/// anything else could split the response, so it is dropped.
pub(crate) fn header_is_safe(name: &str, value: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(is_tchar)
        && value
            .bytes()
            .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Appends a complete response head: status line, `Server`, `Date`, the
/// framing headers the server owns, the handler's headers, `Connection`.
/// `content_length` is `None` for statuses that carry no body.
pub(crate) fn encode_head<'h>(
    out: &mut Vec<u8>,
    status: u16,
    headers: impl Iterator<Item = (&'h str, &'h str)>,
    content_length: Option<u64>,
    conn: ConnHeader,
    date: &[u8],
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_u64(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\nServer: keel\r\nDate: ");
    out.extend_from_slice(date);
    out.extend_from_slice(b"\r\n");
    if let Some(len) = content_length {
        out.extend_from_slice(header::CONTENT_LENGTH.as_bytes());
        out.extend_from_slice(b": ");
        push_u64(out, len);
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match conn {
        ConnHeader::None => {}
        ConnHeader::KeepAlive => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        ConnHeader::Close => out.extend_from_slice(b"Connection: close\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_date_matches_known_values() {
        assert_eq!(&http_date(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&http_date(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&http_date(951_782_400), b"Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(&http_date(4_102_444_799), b"Thu, 31 Dec 2099 23:59:59 GMT");
    }

    #[test]
    fn head_is_framed() {
        let mut out = Vec::new();
        encode_head(
            &mut out,
            404,
            [("Content-Type", "text/plain")].into_iter(),
            Some(10),
            ConnHeader::Close,
            b"Thu, 01 Jan 1970 00:00:00 GMT",
        );
        assert_eq!(
            out,
            b"HTTP/1.1 404 Not Found\r\nServer: keel\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n\
Content-Length: 10\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn response_splitting_header_values_are_refused() {
        assert!(header_is_safe("X-A", "b c\td"));
        assert!(!header_is_safe("X-A", "b\r\nSet-Cookie: x"));
        assert!(!header_is_safe("X A", "b"));
        assert!(!header_is_safe("", "b"));
    }

    #[test]
    fn push_u64_formats() {
        let mut v = Vec::new();
        push_u64(&mut v, 0);
        v.push(b' ');
        push_u64(&mut v, u64::MAX);
        assert_eq!(v, b"0 18446744073709551615");
    }
}
