//! Building the WSGI environ dict for a request (PEP 3333).
//!
//! Key strings are created once; each request copies a template dict holding the
//! constant entries and adds the request's own. Common header names map straight to
//! cached keys. It must never hand the app a header whose name has an underscore (it
//! could pose as a dashed one) nor a trailer, nor let X-Forwarded-For/-Proto from a peer
//! that `--forwarded-allow-ips` does not trust change REMOTE_ADDR or `wsgi.url_scheme`.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple};

use crate::forwarded::{self, TrustedProxies};
use crate::http1::{self, Version};
use crate::server::{Peer, Request, RequestBody};

/// Header names common enough to deserve a cached `HTTP_*` key (lower-case).
const COMMON_HEADERS: &[&str] = &[
    "host",
    "user-agent",
    "accept",
    "accept-encoding",
    "accept-language",
    "connection",
    "cookie",
    "referer",
    "cache-control",
    "origin",
    "authorization",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "x-requested-with",
    "if-none-match",
    "if-modified-since",
    "pragma",
    "upgrade-insecure-requests",
    "sec-fetch-site",
    "sec-fetch-mode",
    "sec-fetch-dest",
    "sec-fetch-user",
    "dnt",
    "te",
    "transfer-encoding",
    "expect",
    "range",
    "keep-alive",
];

/// Index of "host" in COMMON_HEADERS.
const HOST: usize = 0;
/// Indexes of "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host" and
/// "x-real-ip" in COMMON_HEADERS.
const X_FORWARDED_FOR: usize = 11;
const X_FORWARDED_PROTO: usize = 12;
const X_FORWARDED_HOST: usize = 13;
const X_REAL_IP: usize = 14;
const _: () = assert!(const_str_eq(COMMON_HEADERS[HOST], "host"));
const _: () = assert!(const_str_eq(
    COMMON_HEADERS[X_FORWARDED_FOR],
    "x-forwarded-for"
));
const _: () = assert!(const_str_eq(
    COMMON_HEADERS[X_FORWARDED_PROTO],
    "x-forwarded-proto"
));
const _: () = assert!(const_str_eq(
    COMMON_HEADERS[X_FORWARDED_HOST],
    "x-forwarded-host"
));
const _: () = assert!(const_str_eq(COMMON_HEADERS[X_REAL_IP], "x-real-ip"));

/// Headers whose last value a connection keeps, as the COMMON_HEADERS index of each:
/// a client sends the same Host on every request of a connection, and a proxy the same
/// X-Forwarded-* values (nginx: its own scheme and host, and the address of a client
/// that often sends several requests in a row). A repeat then costs a byte comparison
/// instead of a new str. Short values only, so an idle connection keeps little.
const KEPT: [usize; 5] = [
    HOST,
    X_FORWARDED_FOR,
    X_FORWARDED_PROTO,
    X_FORWARDED_HOST,
    X_REAL_IP,
];

/// Host's slot in [`KEPT`].
const HOST_SLOT: usize = 0;
const _: () = assert!(KEPT[HOST_SLOT] == HOST);

/// The slot in [`KEPT`] of COMMON_HEADERS index `i`.
fn kept_slot(i: usize) -> Option<usize> {
    KEPT.iter().position(|&k| k == i)
}

// Common headers already set are tracked in a u64 bit set.
const _: () = assert!(COMMON_HEADERS.len() <= 64);
const FORWARDED_BITS: u64 = (1 << X_FORWARDED_FOR) | (1 << X_FORWARDED_PROTO);

const fn const_str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

const METHODS: &[&str] = &["GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"];

/// `wsgi.input` of a request without a body: it has no state (no position, nothing to
/// consume), so one object serves every such request.
#[pyclass(module = "evserve", frozen)]
pub struct EmptyInput;

#[pymethods]
impl EmptyInput {
    #[pyo3(signature = (size = -1))]
    fn read<'py>(&self, py: Python<'py>, size: Option<isize>) -> Bound<'py, PyBytes> {
        let _ = size;
        PyBytes::new(py, b"")
    }

    #[pyo3(signature = (size = -1))]
    fn readline<'py>(&self, py: Python<'py>, size: Option<isize>) -> Bound<'py, PyBytes> {
        let _ = size;
        PyBytes::new(py, b"")
    }

    #[pyo3(signature = (hint = -1))]
    fn readlines(&self, hint: Option<isize>) -> Vec<Vec<u8>> {
        let _ = hint;
        Vec::new()
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self) -> Option<Vec<u8>> {
        None
    }

    fn close(&self) {}
}

/// Strings and objects made once per instance.
pub struct Environ {
    template: Py<PyDict>,
    request_method: Py<PyString>,
    path_info: Py<PyString>,
    query_string: Py<PyString>,
    server_protocol: Py<PyString>,
    remote_addr: Py<PyString>,
    remote_port: Py<PyString>,
    url_scheme: Py<PyString>,
    /// `wsgi.url_scheme`'s value behind a TLS proxy.
    https: Py<PyString>,
    content_type: Py<PyString>,
    content_length: Py<PyString>,
    wsgi_input: Py<PyString>,
    http10: Py<PyString>,
    empty: Py<PyString>,
    methods: Vec<Py<PyString>>,
    header_keys: Vec<Py<PyString>>,
    bytes_io: Py<PyAny>,
    file_io: Py<PyAny>,
    buffered_reader: Py<PyAny>,
    root_path: Vec<u8>,
    trusted_proxies: TrustedProxies,
    /// Scratch for percent-decoding and key building.
    scratch: Vec<u8>,
}

/// Constant entries of every environ.
pub struct Constants<'a> {
    pub root_path: &'a str,
    pub server_name: &'a str,
    pub server_port: &'a str,
    pub multiprocess: bool,
    pub trusted_proxies: TrustedProxies,
    pub file_wrapper: Bound<'a, PyAny>,
}

fn key(py: Python<'_>, s: &str) -> Py<PyString> {
    PyString::intern(py, s).unbind()
}

impl Environ {
    pub fn new(py: Python<'_>, c: Constants<'_>) -> PyResult<Environ> {
        let template = PyDict::new(py);
        // Like PATH_INFO: the path's bytes (UTF-8 here) as latin-1 characters (PEP 3333).
        template.set_item(key(py, "SCRIPT_NAME"), latin1(py, c.root_path.as_bytes()))?;
        template.set_item(key(py, "SERVER_NAME"), c.server_name)?;
        template.set_item(key(py, "SERVER_PORT"), c.server_port)?;
        template.set_item(
            key(py, "SERVER_SOFTWARE"),
            concat!("evserve/", env!("CARGO_PKG_VERSION")),
        )?;
        template.set_item(key(py, "wsgi.version"), PyTuple::new(py, [1, 0])?)?;
        template.set_item(key(py, "wsgi.url_scheme"), "http")?;
        template.set_item(key(py, "wsgi.errors"), py.import("sys")?.getattr("stderr")?)?;
        template.set_item(key(py, "wsgi.multithread"), false)?;
        template.set_item(key(py, "wsgi.multiprocess"), c.multiprocess)?;
        template.set_item(key(py, "wsgi.run_once"), false)?;
        template.set_item(key(py, "wsgi.input_terminated"), true)?;
        template.set_item(key(py, "wsgi.file_wrapper"), c.file_wrapper)?;
        // The most common values of entries every request has: a GET without a query or
        // a body over HTTP/1.1 then costs no insertion. `build` replaces them otherwise.
        let empty_input = Py::new(py, EmptyInput)?;
        template.set_item(key(py, "REQUEST_METHOD"), key(py, "GET"))?;
        template.set_item(key(py, "QUERY_STRING"), key(py, ""))?;
        template.set_item(key(py, "SERVER_PROTOCOL"), key(py, "HTTP/1.1"))?;
        template.set_item(key(py, "wsgi.input"), &empty_input)?;
        make_room(&template)?;
        let header_keys = COMMON_HEADERS
            .iter()
            .map(|name| key(py, &cgi_name(name.as_bytes())))
            .collect();
        let io = py.import("io")?;
        Ok(Environ {
            template: template.unbind(),
            request_method: key(py, "REQUEST_METHOD"),
            path_info: key(py, "PATH_INFO"),
            query_string: key(py, "QUERY_STRING"),
            server_protocol: key(py, "SERVER_PROTOCOL"),
            remote_addr: key(py, "REMOTE_ADDR"),
            remote_port: key(py, "REMOTE_PORT"),
            url_scheme: key(py, "wsgi.url_scheme"),
            https: key(py, "https"),
            content_type: key(py, "CONTENT_TYPE"),
            content_length: key(py, "CONTENT_LENGTH"),
            wsgi_input: key(py, "wsgi.input"),
            http10: key(py, "HTTP/1.0"),
            empty: key(py, ""),
            methods: METHODS.iter().map(|m| key(py, m)).collect(),
            header_keys,
            bytes_io: io.getattr("BytesIO")?.unbind(),
            file_io: io.getattr("FileIO")?.unbind(),
            buffered_reader: io.getattr("BufferedReader")?.unbind(),
            root_path: c.root_path.as_bytes().to_vec(),
            trusted_proxies: c.trusted_proxies,
            scratch: Vec::with_capacity(256),
        })
    }

    /// The strings of a new connection.
    pub fn connection(&self, py: Python<'_>, peer: &Peer) -> ConnStrings {
        let (remote_addr, remote_port, proxy) = match peer {
            Peer::Tcp(addr) => (
                PyString::new(py, &addr.ip().to_string()).unbind(),
                PyString::new(py, itoa::Buffer::new().format(addr.port())).unbind(),
                self.trusted_proxies.trusts(addr.ip()),
            ),
            // Only processes on this machine reach a Unix socket: always trusted.
            Peer::Unix => (self.empty.clone_ref(py), self.empty.clone_ref(py), true),
        };
        ConnStrings {
            remote_addr,
            remote_port,
            kept: Default::default(),
            client: None,
            proxy,
        }
    }

    /// The environ for one request.
    pub fn build<'py>(
        &mut self,
        py: Python<'py>,
        conn: &mut ConnStrings,
        req: &Request<'_>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let buf = req.buf;
        let head = req.head;
        let env = self.template.bind(py).copy()?;

        let method = head.method.of(buf);
        match METHODS.iter().position(|m| m.as_bytes() == method) {
            Some(0) => {} // GET: the template's
            Some(i) => env.set_item(&self.request_method, &self.methods[i])?,
            None => env.set_item(&self.request_method, latin1(py, method))?,
        }

        http1::percent_decode(head.path.of(buf), &mut self.scratch);
        let mut path: &[u8] = &self.scratch;
        if !self.root_path.is_empty()
            && path.starts_with(&self.root_path)
            && matches!(path.get(self.root_path.len()), None | Some(b'/'))
        {
            path = &path[self.root_path.len()..];
        }
        env.set_item(&self.path_info, latin1(py, path))?;

        // An empty QUERY_STRING and HTTP/1.1 are the template's.
        let query = head.query.of(buf);
        if !query.is_empty() {
            env.set_item(&self.query_string, latin1(py, query))?;
        }
        if head.version == Version::Http10 {
            env.set_item(&self.server_protocol, &self.http10)?;
        }
        env.set_item(&self.remote_addr, &conn.remote_addr)?;
        env.set_item(&self.remote_port, &conn.remote_port)?;

        // Common headers set so far: only a repeated one needs a look at the dict.
        let mut common_seen = 0u64;
        let authority = head.authority.of(buf);
        if !authority.is_empty() {
            // An absolute-form target's authority replaces any Host field (RFC 9112 3.2.2).
            env.set_item(
                &self.header_keys[HOST],
                conn.value(py, HOST_SLOT, authority),
            )?;
        }
        // A common header sent twice has its values joined in the dict.
        let mut common_repeated = 0u64;
        let mut forwarded = Forwarded::default();
        for header in &head.headers {
            let name = header.name.of(buf);
            let raw_value = header.value.of(buf);
            if is_name(name, b"content-type") {
                env.set_item(&self.content_type, latin1(py, raw_value))?;
                continue;
            }
            if is_name(name, b"content-length") {
                env.set_item(&self.content_length, latin1(py, raw_value))?;
                continue;
            }
            let (key, value) = match common_header(name) {
                Some(HOST) if !authority.is_empty() => continue,
                Some(i) => {
                    let value = match kept_slot(i) {
                        Some(slot) => conn.value(py, slot, raw_value),
                        None => latin1(py, raw_value),
                    };
                    let key = self.header_keys[i].bind(py);
                    if common_seen & (1 << i) == 0 {
                        common_seen |= 1 << i;
                        forwarded.note(i, &value);
                        env.set_item(key, value)?;
                        continue;
                    }
                    common_repeated |= 1 << i;
                    (key.clone(), value)
                }
                // A name with an underscore could pose as a dashed one (no listed name
                // has one, and `is_name` never matches it to a dash).
                None if name.contains(&b'_') => continue,
                None => {
                    self.scratch.clear();
                    self.scratch.extend_from_slice(b"HTTP_");
                    self.scratch.extend(name.iter().map(|&b| match b {
                        b'-' => b'_',
                        _ => b.to_ascii_uppercase(),
                    }));
                    (latin1(py, &self.scratch), latin1(py, raw_value))
                }
            };
            match env.get_item(&key)? {
                // Repeated field: one value, joined as RFC 9110 5.3 allows.
                Some(previous) => {
                    let joined = format!("{}, {}", previous.str()?.to_str()?, value.to_str()?);
                    env.set_item(key, joined)?;
                }
                None => env.set_item(key, value)?,
            }
        }

        if conn.proxy && common_seen & FORWARDED_BITS != 0 {
            if common_repeated & FORWARDED_BITS != 0 {
                // Joined values: read back what the dict holds.
                forwarded = Forwarded {
                    addresses: self.get_str(&env, X_FORWARDED_FOR)?,
                    proto: self.get_str(&env, X_FORWARDED_PROTO)?,
                };
            }
            self.apply_forwarded(py, &env, conn, forwarded)?;
        }

        let body_len = match req.body {
            RequestBody::Memory(data) => data.len() as u64,
            RequestBody::File(_, len) => len,
        };
        if head.body == http1::BodyKind::Chunked {
            // The body was de-chunked before the app runs, so its length is known.
            env.set_item(&self.content_length, body_len.to_string())?;
        }
        let input = match req.body {
            // The template's EmptyInput.
            RequestBody::Memory([]) => return Ok(env),
            RequestBody::Memory(data) => self.bytes_io.bind(py).call1((PyBytes::new(py, data),))?,
            RequestBody::File(file, _) => {
                spooled_input(self.file_io.bind(py), self.buffered_reader.bind(py), file)?
            }
        };
        env.set_item(&self.wsgi_input, input)?;
        Ok(env)
    }
}

/// The X-Forwarded-For and X-Forwarded-Proto values of a request, as put in its environ.
#[derive(Default)]
struct Forwarded<'py> {
    addresses: Option<Bound<'py, PyString>>,
    proto: Option<Bound<'py, PyString>>,
}

impl<'py> Forwarded<'py> {
    /// Remembers `value` when COMMON_HEADERS index `i` is one of the two.
    fn note(&mut self, i: usize, value: &Bound<'py, PyString>) {
        match i {
            X_FORWARDED_FOR => self.addresses = Some(value.clone()),
            X_FORWARDED_PROTO => self.proto = Some(value.clone()),
            _ => {}
        }
    }
}

impl Environ {
    /// The str `env` holds under COMMON_HEADERS index `i`'s key, if any.
    fn get_str<'py>(
        &self,
        env: &Bound<'py, PyDict>,
        i: usize,
    ) -> PyResult<Option<Bound<'py, PyString>>> {
        match env.get_item(&self.header_keys[i])? {
            Some(value) => Ok(Some(value.cast_into::<PyString>()?)),
            None => Ok(None),
        }
    }

    /// REMOTE_ADDR and `wsgi.url_scheme` from the X-Forwarded-For/-Proto a trusted peer
    /// sent (repeated fields joined). The client address found in an X-Forwarded-For
    /// value is kept with the connection's kept value: the next request that repeats it
    /// reuses it.
    fn apply_forwarded<'py>(
        &self,
        py: Python<'py>,
        env: &Bound<'py, PyDict>,
        conn: &mut ConnStrings,
        forwarded: Forwarded<'py>,
    ) -> PyResult<()> {
        if let Some(value) = forwarded.addresses {
            let client = match &conn.client {
                Some((seen, client)) if seen.is(&value) => client.as_ref().map(|c| c.clone_ref(py)),
                _ => {
                    let client = self.client_address(py, &value)?;
                    conn.client = Some((
                        value.clone().unbind(),
                        client.as_ref().map(|c| c.clone_ref(py)),
                    ));
                    client
                }
            };
            if let Some(client) = client {
                env.set_item(&self.remote_addr, client)?;
            }
        }
        if let Some(value) = forwarded.proto {
            // The template already says "http"; only "https" changes it.
            if forwarded::scheme(value.to_str()?.as_bytes()) == Some("https") {
                env.set_item(&self.url_scheme, &self.https)?;
            }
        }
        Ok(())
    }

    /// The client's address in X-Forwarded-For `value`, as a str: `value` itself when it
    /// is that one address (what nginx sends).
    fn client_address(
        &self,
        py: Python<'_>,
        value: &Bound<'_, PyString>,
    ) -> PyResult<Option<Py<PyString>>> {
        let text = value.to_str()?;
        Ok(match self.trusted_proxies.client_address(text) {
            Some(client) if client.len() == text.len() => Some(value.clone().unbind()),
            Some(client) => Some(PyString::new(py, client).unbind()),
            None => None,
        })
    }
}

/// `wsgi.input` for a spooled body: a buffered reader of its own over `file`, made by
/// `file_io` and `buffered_reader` (io.FileIO and io.BufferedReader). The duplicated
/// descriptor stays ours until FileIO has taken it: if that raises, dropping it closes it
/// (FileIO never closes a descriptor it was given and refused); once taken, the FileIO
/// object closes it, also when the BufferedReader around it cannot be made.
fn spooled_input<'py>(
    file_io: &Bound<'py, PyAny>,
    buffered_reader: &Bound<'py, PyAny>,
    file: &std::fs::File,
) -> PyResult<Bound<'py, PyAny>> {
    let fd = std::os::fd::OwnedFd::from(file.try_clone().map_err(PyErr::from)?);
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    let raw_file = file_io.call1((raw, "rb"))?;
    let _owned_by_file_io = std::os::fd::IntoRawFd::into_raw_fd(fd);
    buffered_reader.call1((raw_file,))
}

/// Makes `template`'s table regrow now, once, so that its copies (one per request) have
/// room for a request's own entries, a browser's dozen headers and what a framework
/// stores, instead of each copy regrowing (rebuilding its whole table) mid-request.
///
/// CPython regrows a table that has no free slot left to about three times the entries
/// it holds, and copies a table without many deleted slots as is, free room included. A
/// placeholder entry added and deleted uses up a slot without staying: repeating that
/// makes the table regrow (seen as its size changing) around the template's own entries.
/// On an interpreter that works otherwise, the copies are merely smaller.
fn make_room(template: &Bound<'_, PyDict>) -> PyResult<()> {
    let getsizeof = template.py().import("sys")?.getattr("getsizeof")?;
    let size =
        |dict: &Bound<'_, PyDict>| -> PyResult<usize> { getsizeof.call1((dict,))?.extract() };
    let before = size(template)?;
    // A table has at most two thirds of its slots usable: this many always fill it.
    let bound = 2 * before;
    for placeholder in 0..bound {
        template.set_item(placeholder, ())?;
        template.del_item(placeholder)?;
        if size(template)? != before {
            break;
        }
    }
    Ok(())
}

/// Strings made once per connection and reused by its requests.
pub struct ConnStrings {
    remote_addr: Py<PyString>,
    remote_port: Py<PyString>,
    /// The last value of each header in [`KEPT`].
    kept: [Option<Py<PyString>>; KEPT.len()],
    /// The last X-Forwarded-For value seen from a trusted peer, and the client address
    /// found in it.
    client: Option<(Py<PyString>, Option<Py<PyString>>)>,
    /// The peer is a trusted proxy: its X-Forwarded-For/-Proto count.
    proxy: bool,
}

impl ConnStrings {
    /// The value of the header in [`KEPT`] slot `slot` as a str: the one of the previous
    /// request when it is the same.
    fn value<'py>(&mut self, py: Python<'py>, slot: usize, raw: &[u8]) -> Bound<'py, PyString> {
        let Some(kept) = self.kept.get_mut(slot) else {
            return latin1(py, raw);
        };
        if let Some(value) = kept {
            let value = value.bind(py);
            if super::response::ucs1(value) == Some(raw) {
                return value.clone();
            }
        }
        let value = latin1(py, raw);
        *kept = Some(value.clone().unbind());
        value
    }
}

/// `HTTP_` + upper-cased name with dashes as underscores.
fn cgi_name(name: &[u8]) -> String {
    let mut key = String::from("HTTP_");
    key.extend(name.iter().map(|&b| match b {
        b'-' => '_',
        _ => b.to_ascii_uppercase() as char,
    }));
    key
}

fn common_header(name: &[u8]) -> Option<usize> {
    BY_LENGTH
        .get(name.len())?
        .iter()
        .take_while(|&&i| i != NO_HEADER)
        .map(|&i| usize::from(i))
        .find(|&i| is_name(name, COMMON_HEADERS[i].as_bytes()))
}

/// Whether the field name `name` (checked by the parser: token characters only) is
/// `lower` (lower-case letters and dashes) in any case, compared eight bytes at a time.
/// Setting the 0x20 bit folds a letter's case and leaves a dash a dash; the only other
/// bytes it turns into a letter or a dash are not token characters (0x0D into a dash).
fn is_name(name: &[u8], lower: &[u8]) -> bool {
    const FOLD: u64 = 0x2020_2020_2020_2020;
    if name.len() != lower.len() {
        return false;
    }
    let (mut names, mut lowers) = (name.chunks_exact(8), lower.chunks_exact(8));
    for (n, l) in names.by_ref().zip(lowers.by_ref()) {
        let (Ok(n), Ok(l)) = (<[u8; 8]>::try_from(n), <[u8; 8]>::try_from(l)) else {
            return false;
        };
        if u64::from_ne_bytes(n) | FOLD != u64::from_ne_bytes(l) {
            return false;
        }
    }
    let tail = names.remainder().iter().zip(lowers.remainder());
    tail.into_iter().all(|(&n, &l)| n | 0x20 == l)
}

/// Names in COMMON_HEADERS are shorter than this.
const NAME_LENGTHS: usize = 32;
/// At most this many names in COMMON_HEADERS have the same length.
const SAME_LENGTH: usize = 6;
const NO_HEADER: u8 = u8::MAX;
/// COMMON_HEADERS indexes by name length: a lookup compares only names as long as its own.
const BY_LENGTH: [[u8; SAME_LENGTH]; NAME_LENGTHS] = by_length();

const fn by_length() -> [[u8; SAME_LENGTH]; NAME_LENGTHS] {
    let mut table = [[NO_HEADER; SAME_LENGTH]; NAME_LENGTHS];
    let mut i = 0;
    while i < COMMON_HEADERS.len() {
        let row = &mut table[COMMON_HEADERS[i].len()];
        let mut slot = 0;
        while row[slot] != NO_HEADER {
            slot += 1; // past SAME_LENGTH: a compile-time error
        }
        row[slot] = i as u8;
        i += 1;
    }
    table
}

/// Bytes as a str, one character per byte (latin-1), as PEP 3333 requires.
pub fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyString> {
    // SAFETY: the pointer and length describe `bytes`, alive for the call; latin-1
    // decoding cannot fail, and a NULL result (out of memory) is turned into a Python
    // error by `from_owned_ptr_or_err`'s check below.
    unsafe {
        let ptr = ffi::PyUnicode_DecodeLatin1(
            bytes.as_ptr().cast(),
            bytes.len() as ffi::Py_ssize_t,
            std::ptr::null(),
        );
        match Bound::from_owned_ptr_or_err(py, ptr) {
            Ok(obj) => obj.cast_into_unchecked(),
            Err(_) => PyString::new(py, ""),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    use pyo3::prelude::*;

    use super::{spooled_input, Constants, Environ};
    use crate::forwarded::TrustedProxies;

    /// What descriptor `fd` of this process refers to, if it is open.
    fn identity(fd: i32) -> Option<std::path::PathBuf> {
        std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()
    }

    #[test]
    fn the_spooled_body_descriptor_is_closed_when_wrapping_it_raises() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"body").unwrap();
        let spooled = identity(file.as_raw_fd());
        Python::initialize();
        Python::attach(|py| {
            let code = CString::new(
                "seen = []\n\
                 def refusing(fd, mode):\n    seen.append(fd)\n    raise MemoryError\n",
            )
            .unwrap();
            let module = PyModule::from_code(py, &code, c"refusing.py", c"refusing").unwrap();
            let refusing = module.getattr("refusing").unwrap();
            let io = py.import("io").unwrap();
            let reader = io.getattr("BufferedReader").unwrap();
            assert!(spooled_input(&refusing, &reader, &file).is_err());
            let fd: i32 = module
                .getattr("seen")
                .unwrap()
                .get_item(0)
                .unwrap()
                .extract()
                .unwrap();
            // Closed, or reused since by another test's socket: never the body file.
            assert_ne!(identity(fd), spooled, "descriptor {fd} left open");

            let file_io = io.getattr("FileIO").unwrap();
            let input = spooled_input(&file_io, &reader, &file).unwrap();
            input.call_method1("seek", (0,)).unwrap();
            let data: Vec<u8> = input.call_method0("read").unwrap().extract().unwrap();
            assert_eq!(data, b"body");
        });
    }

    #[test]
    fn an_environ_copy_takes_a_browser_request_without_regrowing_its_table() {
        Python::initialize();
        Python::attach(|py| {
            let environ = Environ::new(
                py,
                Constants {
                    root_path: "",
                    server_name: "127.0.0.1",
                    server_port: "8000",
                    multiprocess: false,
                    trusted_proxies: TrustedProxies::default(),
                    file_wrapper: py.None().into_bound(py),
                },
            )
            .unwrap();
            let getsizeof = py.import("sys").unwrap().getattr("getsizeof").unwrap();
            let size = |obj: &Bound<'_, PyAny>| -> usize {
                getsizeof.call1((obj,)).unwrap().extract().unwrap()
            };
            let env = environ.template.bind(py).copy().unwrap();
            let copied = size(env.as_any());
            // A request's own entries, fifteen headers and a framework's two: a regrowth
            // would rebuild the table on every such request.
            let added = ["PATH_INFO", "REMOTE_ADDR", "REMOTE_PORT", "CONTENT_TYPE"]
                .map(String::from)
                .into_iter()
                .chain((0..15).map(|i| format!("HTTP_HEADER_{i}")))
                .chain(["werkzeug.request", "framework.state"].map(String::from));
            for key in added {
                env.set_item(&key, "value").unwrap();
                assert_eq!(size(env.as_any()), copied, "the copy regrew at {key}");
            }
        });
    }

    #[test]
    fn every_common_header_is_found_by_its_name_in_any_case_and_no_other_name_is() {
        for (i, name) in super::COMMON_HEADERS.iter().enumerate() {
            assert_eq!(super::common_header(name.as_bytes()), Some(i), "{name}");
            let upper = name.to_ascii_uppercase();
            assert_eq!(super::common_header(upper.as_bytes()), Some(i), "{upper}");
        }
        for name in [
            "",
            "hos",
            "hosts",
            "x-custom",
            "accepts",
            "sec-fetch-xxxx",
            "x_forwarded_for",
            "user_agent",
            "content_type",
            &"a".repeat(40),
        ] {
            assert_eq!(super::common_header(name.as_bytes()), None, "{name}");
        }
    }
}
