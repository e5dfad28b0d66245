//! Where access-log lines go and how each is written: combined format, a gunicorn format
//! or JSON, to stdout, a file (reopened on SIGUSR1) or Python's `evserve.access` logger.
//!
//! Exists only while access logging is on: with it off, nothing here runs. Every value a
//! client sent is escaped (JSON by serde_json), so a request can never add or forge a
//! field or a line. Never panics on a write error (the line is lost, nothing else).

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::time::SystemTime;

use crate::access_format::{header, protocol, AccessStyle, Fields};
use crate::http1::Head;

/// Access lines handed to Python logging (`--log-config`).
pub trait PythonAccess {
    /// `line` is the rendered line; `record` its fields, set on the log record.
    fn log(&mut self, line: &str, record: &Record<'_>);
}

/// The fields of one line, as JSON and log-record attributes carry them.
pub struct Record<'a> {
    pub time: String,
    pub remote_addr: Option<String>,
    pub method: Option<Cow<'a, str>>,
    pub path: Option<Cow<'a, str>>,
    pub query: Option<Cow<'a, str>>,
    pub protocol: Option<&'static str>,
    pub status: u16,
    pub bytes: u64,
    /// Seconds.
    pub duration: f64,
    pub referer: Option<Cow<'a, str>>,
    pub user_agent: Option<Cow<'a, str>>,
    /// The request's `X-Request-ID`.
    pub request_id: Option<Cow<'a, str>>,
}

enum Out {
    Stream(Box<dyn Write>),
    File { path: PathBuf, w: BufWriter<File> },
    Python(Box<dyn PythonAccess>),
}

pub struct AccessLog {
    style: AccessStyle,
    out: Out,
    /// The line being built, reused.
    line: Vec<u8>,
    dirty: bool,
}

fn open_append(path: &PathBuf) -> io::Result<BufWriter<File>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    Ok(BufWriter::new(file))
}

impl AccessLog {
    /// `-` is stdout; anything else a file, appended to.
    pub fn open(target: &str, style: AccessStyle) -> Result<AccessLog, String> {
        let out = if target == "-" {
            Out::Stream(Box::new(BufWriter::new(io::stdout())))
        } else {
            let path = PathBuf::from(target);
            let w = open_append(&path)
                .map_err(|e| format!("--access-log: cannot open {target}: {e}"))?;
            Out::File { path, w }
        };
        Ok(AccessLog::new(style, out))
    }

    /// Lines to any writer (stdout is one).
    pub fn to_stream(style: AccessStyle, w: Box<dyn Write>) -> AccessLog {
        AccessLog::new(style, Out::Stream(w))
    }

    pub fn to_python(style: AccessStyle, sink: Box<dyn PythonAccess>) -> AccessLog {
        AccessLog::new(style, Out::Python(sink))
    }

    fn new(style: AccessStyle, out: Out) -> AccessLog {
        AccessLog {
            style,
            out,
            line: Vec::with_capacity(256),
            dirty: false,
        }
    }

    /// Whether lines need the response's header lines (`{name}o` atoms).
    pub fn wants_response_headers(&self) -> bool {
        matches!(&self.style, AccessStyle::Format(plan) if plan.wants_response_headers())
    }

    /// Writes the line for one response.
    pub fn record(&mut self, fields: &Fields<'_>) {
        self.line.clear();
        // Built once, for the JSON line and for Python's log record alike.
        let record = (matches!(self.style, AccessStyle::Json)
            || matches!(self.out, Out::Python(_)))
        .then(|| record_of(fields));
        match (&self.style, &record) {
            (AccessStyle::Format(plan), _) => plan.render(fields, &mut self.line),
            (AccessStyle::Json, Some(record)) => json(record, &mut self.line),
            _ => combined(fields, &mut self.line),
        }
        match &mut self.out {
            Out::Python(sink) => {
                if let Some(record) = &record {
                    sink.log(&String::from_utf8_lossy(&self.line), record);
                }
            }
            Out::Stream(w) => write_line(w, &mut self.line),
            Out::File { w, .. } => write_line(w, &mut self.line),
        }
        self.dirty = true;
    }

    /// Pushes buffered lines out, if any were written since the last flush.
    pub fn flush(&mut self) {
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        match &mut self.out {
            Out::Stream(w) => drop(w.flush()),
            Out::File { w, .. } => drop(w.flush()),
            Out::Python(_) => {}
        }
    }

    /// After a rotation (SIGUSR1): flushes, then opens the file by its name again, so lines
    /// go to a new file when the old one was renamed. Keeps the old file if that fails.
    pub fn reopen(&mut self) -> Result<(), String> {
        self.dirty = true;
        self.flush();
        if let Out::File { path, w } = &mut self.out {
            *w = open_append(path)
                .map_err(|e| format!("cannot reopen the access log {}: {e}", path.display()))?;
        }
        Ok(())
    }
}

fn write_line(w: &mut impl Write, line: &mut Vec<u8>) {
    line.push(b'\n');
    let _ = w.write_all(line);
}

/// Combined log format, with quotes, backslashes and non-printable bytes escaped.
/// (The first Referer and User-Agent fields, as this format always showed.)
fn combined<'a>(f: &Fields<'a>, out: &mut Vec<u8>) {
    match f.peer {
        Some(addr) => drop(write!(out, "{}", addr.ip())),
        None => out.push(b'-'),
    }
    let _ = write!(out, " - - [{}] \"", f.time);
    match (f.request, f.unparsed_line) {
        (Some((buf, head)), _) => {
            escape(head.method.of(buf), out);
            out.push(b' ');
            escape(head.target.of(buf), out);
            out.push(b' ');
            out.extend_from_slice(protocol(head).as_bytes());
        }
        (None, Some(line)) => escape(line, out),
        (None, None) => out.push(b'-'),
    }
    let _ = write!(out, "\" {} ", f.status);
    match f.body_bytes {
        0 => out.push(b'-'),
        n => drop(write!(out, "{n}")),
    }
    for name in [&b"referer"[..], b"user-agent"] {
        out.extend_from_slice(b" \"");
        let first = |(buf, head): (&'a [u8], &'a Head)| {
            head.headers
                .iter()
                .find(|h| h.name.of(buf).eq_ignore_ascii_case(name))
                .map(|h| h.value.of(buf))
        };
        match f.request.and_then(first) {
            Some(v) => escape(v, out),
            None => out.push(b'-'),
        }
        out.push(b'"');
    }
}

/// Log-safe text: quotes, backslashes and non-printable bytes escaped.
fn escape(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x20..=0x7e => out.push(b),
            _ => drop(write!(out, "\\x{b:02x}")),
        }
    }
}

fn text(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// The fields of a line; text a client sent is decoded as UTF-8 (invalid bytes replaced).
pub fn record_of<'a>(f: &Fields<'a>) -> Record<'a> {
    let req = f.request;
    let pick =
        |get: fn(&'a [u8], &'a Head) -> &'a [u8]| req.map(|(buf, head)| text(get(buf, head)));
    let named = |name: &[u8]| {
        req.and_then(|(buf, head)| header(buf, head, name))
            .map(text)
    };
    Record {
        time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        remote_addr: f.peer.map(|a| a.ip().to_string()),
        method: pick(|buf, head| head.method.of(buf)),
        path: pick(|buf, head| head.path.of(buf)),
        query: pick(|buf, head| head.query.of(buf)),
        protocol: req.map(|(_, head)| protocol(head)),
        status: f.status,
        bytes: f.body_bytes,
        duration: f.duration.as_secs_f64(),
        referer: named(b"referer"),
        user_agent: named(b"user-agent"),
        request_id: named(b"x-request-id"),
    }
}

/// One JSON object; keys are fixed, every value goes through serde_json.
fn json(r: &Record<'_>, out: &mut Vec<u8>) {
    fn field(out: &mut Vec<u8>, key: &str, value: &impl serde::Serialize) {
        out.push(if out.is_empty() { b'{' } else { b',' });
        let _ = serde_json::to_writer(&mut *out, key);
        out.push(b':');
        let _ = serde_json::to_writer(&mut *out, value);
    }
    field(out, "time", &r.time);
    field(out, "remote_addr", &r.remote_addr);
    field(out, "method", &r.method);
    field(out, "path", &r.path);
    field(out, "query", &r.query);
    field(out, "protocol", &r.protocol);
    field(out, "status", &r.status);
    field(out, "bytes", &r.bytes);
    field(out, "duration", &r.duration);
    field(out, "referer", &r.referer);
    field(out, "user_agent", &r.user_agent);
    field(out, "request_id", &r.request_id);
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::{parse_head, Limits};
    use std::time::Duration;

    fn line(style: AccessStyle, raw: &[u8], status: u16) -> String {
        let mut head = Head::default();
        assert_eq!(parse_head(raw, &Limits::default(), &mut head), Ok(true));
        let fields = Fields {
            peer: Some("10.0.0.1:5000".parse().unwrap()),
            request: Some((raw, &head)),
            unparsed_line: None,
            status,
            body_bytes: 12,
            duration: Duration::from_millis(5),
            response_head: b"",
            time: "01/Dec/2026:13:51:46 +0000",
            pid: 1,
        };
        let mut out = Vec::new();
        match style {
            AccessStyle::Combined => combined(&fields, &mut out),
            AccessStyle::Json => json(&record_of(&fields), &mut out),
            AccessStyle::Format(plan) => plan.render(&fields, &mut out),
        }
        String::from_utf8(out).unwrap()
    }

    const ODD: &[u8] = b"GET /a\"b\\c?q=\"1 HTTP/1.1\r\nHost: h\r\nUser-Agent: x\", \"status\": 1 \xff\tz\r\nX-Request-ID: r-1\r\n\r\n";

    #[test]
    fn after_a_rename_reopen_writes_to_a_new_file_under_the_old_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let mut log = AccessLog::open(path.to_str().unwrap(), AccessStyle::Json).unwrap();
        let raw = b"GET / HTTP/1.0\r\n\r\n";
        let mut head = Head::default();
        assert_eq!(parse_head(raw, &Limits::default(), &mut head), Ok(true));
        let fields = Fields {
            peer: None,
            request: Some((raw, &head)),
            unparsed_line: None,
            status: 200,
            body_bytes: 0,
            duration: Duration::ZERO,
            response_head: b"",
            time: "",
            pid: 1,
        };
        log.record(&fields);
        let rotated = dir.path().join("access.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        log.record(&fields);
        log.reopen().unwrap();
        log.record(&fields);
        log.flush();
        let lines = |p: &std::path::Path| std::fs::read_to_string(p).unwrap().lines().count();
        assert_eq!((lines(&rotated), lines(&path)), (2, 1));
    }

    #[test]
    fn combined_lines_show_the_first_referer_and_user_agent() {
        let raw = b"GET / HTTP/1.1\r\nHost: h\r\nReferer: a\r\nReferer: b\r\n\r\n";
        assert!(line(AccessStyle::Combined, raw, 200).ends_with(" 200 12 \"a\" \"-\""));
    }

    #[test]
    fn combined_lines_escape_what_the_client_sent() {
        assert_eq!(
            line(AccessStyle::Combined, ODD, 200),
            r#"10.0.0.1 - - [01/Dec/2026:13:51:46 +0000] "GET /a\"b\\c?q=\"1 HTTP/1.1" 200 12 "-" "x\", \"status\": 1 \xff\x09z""#
        );
    }

    #[test]
    fn a_json_line_has_exactly_its_keys_whatever_the_request_holds() {
        let text = line(AccessStyle::Json, ODD, 404);
        assert!(text.starts_with("{\"time\":\"") && text.ends_with('}'));
        assert!(!text.contains('\n'));
        let after_time = &text[text.find("\"remote_addr\"").unwrap()..];
        assert_eq!(
            after_time,
            r#""remote_addr":"10.0.0.1","method":"GET","path":"/a\"b\\c","query":"q=\"1","protocol":"HTTP/1.1","status":404,"bytes":12,"duration":0.005,"referer":null,"user_agent":"x\", \"status\": 1 �\tz","request_id":"r-1"}"#
        );
    }
}
