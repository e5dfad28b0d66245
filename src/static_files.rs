//! Static files (`--static URL_PREFIX=DIR`), the decisions only: which file a request path
//! names, and how a request for it is answered (status, header lines, byte span) from the
//! file's size and modification time and the request's conditional and range headers
//! (RFC 9110 13 and 14).
//!
//! Pure: no IO, no clock. It must never map a path to anything outside its mount: `..`
//! and `.` segments, encoded separators (`%2f`, `%5c`), backslashes and NUL are refused
//! here (symlinks are the opener's job, see `server::conn::static_send`), and an answer
//! never carries a filesystem path.
//!
//! Choices:
//! - A path under a mount that names no regular file (refused, missing, a directory or
//!   anything else) is 404 with the same body whatever the reason; nothing is listed.
//! - Methods other than GET and HEAD are 405 with `Allow: GET, HEAD`.
//! - Empty path segments (`a//b`) are merged, as nginx does.
//! - One byte range is answered 206; several are answered 200 with the whole file.
//! - The entity tag is strong, made of the modification time and size.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::StaticMount;

/// Every mount of one instance, with the root path (SCRIPT_NAME) requests may carry.
#[derive(Clone, Debug, Default)]
pub struct StaticSite {
    /// Longest prefix first (as the configuration has them).
    mounts: Vec<StaticMount>,
    root_path: Vec<u8>,
}

/// Where a request goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'m> {
    /// Under no mount: the app answers.
    App,
    /// Under a mount, but names no file that may be served (404).
    Refused,
    /// `relative` (plain names only, never empty) beneath `dir`.
    File { dir: &'m Path, relative: PathBuf },
}

impl StaticSite {
    pub fn new(mounts: Vec<StaticMount>, root_path: &str) -> Self {
        StaticSite {
            mounts,
            root_path: root_path.trim_end_matches('/').as_bytes().to_vec(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.mounts.is_empty()
    }

    /// Routes a request path as sent (percent-encoded, without the query). The root path
    /// is taken off first when the path starts with it, as for PATH_INFO.
    pub fn route(&self, raw_path: &[u8]) -> Route<'_> {
        // Borrowed unless something was encoded.
        let decoded: std::borrow::Cow<'_, [u8]> = percent_encoding::percent_decode(raw_path).into();
        let mut path = &decoded[..];
        if !self.root_path.is_empty()
            && path.starts_with(&self.root_path)
            && matches!(path.get(self.root_path.len()), None | Some(b'/'))
        {
            path = &path[self.root_path.len()..];
        }
        let Some(mount) = self
            .mounts
            .iter()
            .find(|m| path.starts_with(m.url_prefix.as_bytes()))
        else {
            return Route::App;
        };
        match relative_path(raw_path, &path[mount.url_prefix.len()..]) {
            Some(relative) => Route::File {
                dir: &mount.dir,
                relative,
            },
            None => Route::Refused,
        }
    }
}

/// The file path the part after the prefix names, or `None` when it must be refused.
fn relative_path(raw_path: &[u8], rest: &[u8]) -> Option<PathBuf> {
    if has_encoded_separator(raw_path) || rest.contains(&0) || rest.contains(&b'\\') {
        return None;
    }
    if rest.is_empty() || rest.ends_with(b"/") {
        return None; // a directory
    }
    let mut relative = PathBuf::new();
    for segment in rest.split(|&b| b == b'/') {
        match segment {
            b"" => {}
            b"." | b".." => return None,
            name => relative.push(OsStr::from_bytes(name)),
        }
    }
    (!relative.as_os_str().is_empty()).then_some(relative)
}

/// `%2f`, `%5c` or `%00` anywhere in the path as sent.
fn has_encoded_separator(raw_path: &[u8]) -> bool {
    raw_path.windows(3).any(|w| {
        w[0] == b'%'
            && matches!(
                (w[1], w[2].to_ascii_lowercase()),
                (b'2', b'f') | (b'5', b'c') | (b'0', b'0')
            )
    })
}

/// GET and HEAD are served; anything else is 405.
pub fn method_allowed(method: &[u8]) -> bool {
    method == b"GET" || method == b"HEAD"
}

/// What the opener learned of a regular file.
#[derive(Clone, Copy, Debug)]
pub struct FileFacts {
    pub size: u64,
    /// Modification time since the epoch (negative times count as the epoch).
    pub mtime_secs: i64,
    pub mtime_nanos: i64,
}

impl FileFacts {
    fn modified(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.mtime_secs.max(0) as u64)
    }

    fn etag(&self) -> String {
        format!(
            "\"{:x}-{:x}-{:x}\"",
            self.mtime_secs.max(0),
            self.mtime_nanos.max(0),
            self.size
        )
    }
}

/// The request header fields that shape the answer (repeated fields joined with `, `).
#[derive(Clone, Debug, Default)]
pub struct Conditions {
    pub if_match: Option<Vec<u8>>,
    pub if_none_match: Option<Vec<u8>>,
    pub if_modified_since: Option<Vec<u8>>,
    pub if_unmodified_since: Option<Vec<u8>>,
    pub range: Option<Vec<u8>>,
    pub if_range: Option<Vec<u8>>,
}

impl Conditions {
    /// Which field (lower-case name) fills which slot; `None` for the others.
    pub fn slot(&mut self, name: &[u8]) -> Option<&mut Option<Vec<u8>>> {
        let lower = name.to_ascii_lowercase();
        Some(match &lower[..] {
            b"if-match" => &mut self.if_match,
            b"if-none-match" => &mut self.if_none_match,
            b"if-modified-since" => &mut self.if_modified_since,
            b"if-unmodified-since" => &mut self.if_unmodified_since,
            b"range" => &mut self.range,
            b"if-range" => &mut self.if_range,
            _ => return None,
        })
    }
}

/// The body an answer has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    None,
    /// `len` bytes of the file from `start`.
    File {
        start: u64,
        len: u64,
    },
    /// A short plain-text explanation.
    Text(&'static str),
}

/// An answer, before any byte is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub status: u16,
    /// Status text and header lines, each ending in CRLF (`200 OK\r\nContent-Type: ...`),
    /// Content-Length included; the server adds Date and Connection.
    pub head: String,
    /// What a GET gets; a HEAD gets the same head and no body.
    pub body: Body,
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        304 => "Not Modified",
        404 => "Not Found",
        405 => "Method Not Allowed",
        412 => "Precondition Failed",
        416 => "Range Not Satisfiable",
        _ => "Internal Server Error",
    }
}

/// 404, 405 or 500, with a one-line plain-text body that names no path.
pub fn refusal(status: u16) -> Plan {
    let text = match status {
        404 => "Not Found: no such file\n",
        405 => "Method Not Allowed: only GET and HEAD\n",
        _ => "Internal Server Error: the file cannot be read\n",
    };
    let mut head = format!(
        "{status} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n",
        reason(status),
        text.len()
    );
    if status == 405 {
        head.push_str("Allow: GET, HEAD\r\n");
    }
    Plan {
        status,
        head,
        body: Body::Text(text),
    }
}

/// The answer to a GET or HEAD (`is_head`) for `file`, whose name gives its type.
pub fn plan(is_head: bool, name: &Path, file: &FileFacts, cond: &Conditions) -> Plan {
    let etag = file.etag();
    let last_modified = httpdate::fmt_http_date(file.modified());
    let validators = format!("ETag: {etag}\r\nLast-Modified: {last_modified}\r\n");
    if let Some(status) = precondition_status(&etag, file, cond) {
        let head = match status {
            304 => format!("304 Not Modified\r\n{validators}"),
            _ => "412 Precondition Failed\r\nContent-Length: 0\r\n".to_string(),
        };
        return Plan {
            status,
            head,
            body: Body::None,
        };
    }
    let content_type = content_type(name);
    let common = format!("Content-Type: {content_type}\r\n{validators}Accept-Ranges: bytes\r\n");
    let size = file.size;
    let span = match cond.range.as_deref() {
        Some(range) if !is_head && if_range_holds(cond.if_range.as_deref(), &etag, file) => {
            parse_range(range, size)
        }
        _ => RangeAnswer::Whole,
    };
    let (status, start, len, range_line) = match span {
        RangeAnswer::Whole => (200, 0, size, String::new()),
        RangeAnswer::Part { start, end } => (
            206,
            start,
            end - start + 1,
            format!("Content-Range: bytes {start}-{end}/{size}\r\n"),
        ),
        RangeAnswer::Unsatisfiable => {
            return Plan {
                status: 416,
                head: format!(
                    "416 Range Not Satisfiable\r\n{common}Content-Range: bytes */{size}\r\nContent-Length: 0\r\n"
                ),
                body: Body::None,
            }
        }
    };
    Plan {
        status,
        head: format!(
            "{status} {}\r\n{common}{range_line}Content-Length: {len}\r\n",
            reason(status)
        ),
        body: Body::File { start, len },
    }
}

/// RFC 9110 13.2.2, steps 1 to 4: 412 or 304 when a precondition says so.
fn precondition_status(etag: &str, file: &FileFacts, cond: &Conditions) -> Option<u16> {
    let modified = file.modified();
    if let Some(list) = cond.if_match.as_deref() {
        if !matches_any(list, etag, Comparison::Strong) {
            return Some(412);
        }
    } else if let Some(date) = cond.if_unmodified_since.as_deref().and_then(parse_date) {
        if modified > date {
            return Some(412);
        }
    }
    if let Some(list) = cond.if_none_match.as_deref() {
        if matches_any(list, etag, Comparison::Weak) {
            return Some(304);
        }
    } else if let Some(date) = cond.if_modified_since.as_deref().and_then(parse_date) {
        if modified <= date {
            return Some(304);
        }
    }
    None
}

/// Whether a Range applies: no If-Range, or one naming the current representation (a
/// strong entity tag, or exactly the Last-Modified date).
fn if_range_holds(if_range: Option<&[u8]>, etag: &str, file: &FileFacts) -> bool {
    let Some(value) = if_range else {
        return true;
    };
    let value = value.trim_ascii();
    if value.starts_with(b"\"") || value.starts_with(b"W/") {
        return !value.starts_with(b"W/") && value == etag.as_bytes();
    }
    parse_date(value).is_some_and(|d| d == file.modified())
}

fn parse_date(value: &[u8]) -> Option<SystemTime> {
    let text = std::str::from_utf8(value).ok()?;
    httpdate::parse_http_date(text.trim()).ok()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Strong,
    Weak,
}

/// Whether an entity-tag list (`*`, or `"a", W/"b"`) names `etag` (strong, ours).
fn matches_any(list: &[u8], etag: &str, comparison: Comparison) -> bool {
    let list = list.trim_ascii();
    if list == b"*" {
        return true;
    }
    let mut rest = list;
    loop {
        rest = rest.trim_ascii_start();
        while let [b',', tail @ ..] = rest {
            rest = tail.trim_ascii_start();
        }
        if rest.is_empty() {
            return false;
        }
        let weak = rest.starts_with(b"W/");
        if weak {
            rest = &rest[2..];
        }
        let Some(tail) = rest.strip_prefix(b"\"") else {
            return false; // not an entity tag: the list is malformed
        };
        let Some(close) = tail.iter().position(|&b| b == b'"') else {
            return false;
        };
        let tag = &tail[..close + 1];
        let ours = &etag.as_bytes()[1..];
        if tag == ours && !(weak && comparison == Comparison::Strong) {
            return true;
        }
        rest = &tail[close + 1..];
    }
}

#[derive(Debug, PartialEq, Eq)]
enum RangeAnswer {
    Whole,
    /// Inclusive, within the file.
    Part {
        start: u64,
        end: u64,
    },
    Unsatisfiable,
}

/// A Range value for a file of `size` bytes. Anything but one valid `bytes` range is
/// answered with the whole file (RFC 9110 14.2: a server may ignore a Range).
fn parse_range(value: &[u8], size: u64) -> RangeAnswer {
    let value = value.trim_ascii();
    let Some(unit_end) = value.iter().position(|&b| b == b'=') else {
        return RangeAnswer::Whole;
    };
    if !value[..unit_end]
        .trim_ascii()
        .eq_ignore_ascii_case(b"bytes")
    {
        return RangeAnswer::Whole;
    }
    let spec = value[unit_end + 1..].trim_ascii();
    if spec.contains(&b',') {
        return RangeAnswer::Whole;
    }
    let Some(dash) = spec.iter().position(|&b| b == b'-') else {
        return RangeAnswer::Whole;
    };
    let first = crate::http1::parse_decimal(spec[..dash].trim_ascii());
    let last_text = spec[dash + 1..].trim_ascii();
    let last = crate::http1::parse_decimal(last_text);
    match (first, last) {
        // `-n`: the last n bytes.
        (None, Some(n)) if dash == 0 => {
            if n == 0 || size == 0 {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Part {
                    start: size - n.min(size),
                    end: size - 1,
                }
            }
        }
        (Some(start), _) if last_text.is_empty() || last.is_some_and(|l| l >= start) => {
            if start >= size {
                return RangeAnswer::Unsatisfiable;
            }
            let end = last.map_or(size - 1, |l| l.min(size - 1));
            RangeAnswer::Part { start, end }
        }
        _ => RangeAnswer::Whole,
    }
}

/// The Content-Type for a file name: from its extension, `; charset=utf-8` for text.
pub fn content_type(name: &Path) -> String {
    let mime = mime_guess::from_path(name)
        .first_raw()
        .unwrap_or("application/octet-stream");
    let textual =
        mime.starts_with("text/") || mime == "application/javascript" || mime == "application/json";
    if textual {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_string()
    }
}

#[cfg(test)]
mod tests;
