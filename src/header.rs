//! Header names as constants, so a typo is a compile error rather than a
//! header nobody reads. Lookups through [`Request::header`](crate::Request::header)
//! are case-insensitive, so these spellings are only for output.
#![allow(missing_docs)] // each constant is its own documentation

pub const ACCEPT: &str = "Accept";
pub const ACCEPT_ENCODING: &str = "Accept-Encoding";
pub const ACCEPT_RANGES: &str = "Accept-Ranges";
pub const ALLOW: &str = "Allow";
pub const CACHE_CONTROL: &str = "Cache-Control";
pub const CONNECTION: &str = "Connection";
pub const CONTENT_ENCODING: &str = "Content-Encoding";
pub const CONTENT_LENGTH: &str = "Content-Length";
pub const CONTENT_RANGE: &str = "Content-Range";
pub const CONTENT_TYPE: &str = "Content-Type";
pub const DATE: &str = "Date";
pub const ETAG: &str = "ETag";
pub const EXPECT: &str = "Expect";
pub const HOST: &str = "Host";
pub const IF_MATCH: &str = "If-Match";
pub const IF_MODIFIED_SINCE: &str = "If-Modified-Since";
pub const IF_NONE_MATCH: &str = "If-None-Match";
pub const IF_RANGE: &str = "If-Range";
pub const IF_UNMODIFIED_SINCE: &str = "If-Unmodified-Since";
pub const LAST_MODIFIED: &str = "Last-Modified";
pub const LOCATION: &str = "Location";
pub const RANGE: &str = "Range";
pub const REFERER: &str = "Referer";
pub const RETRY_AFTER: &str = "Retry-After";
pub const SERVER: &str = "Server";
pub const TRANSFER_ENCODING: &str = "Transfer-Encoding";
pub const USER_AGENT: &str = "User-Agent";
pub const VARY: &str = "Vary";
