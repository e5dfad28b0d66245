//! The response side of WSGI: `start_response`, `write()`, `wsgi.file_wrapper`, the
//! body chunks handed to the server, and the handle that calls `close()`.
//!
//! It must never send anything itself (the server does) and never let an app's bad
//! status or header reach the wire: those become errors the server answers with 500.

use pyo3::exceptions::{PyAssertionError, PyStopIteration, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyIterator, PyList, PyString, PyTuple};

use crate::http1;

/// The `start_response` callable of one request.
#[pyclass(module = "evserve")]
pub struct StartResponse {
    pub status: Option<Py<PyAny>>,
    pub headers: Option<Py<PyAny>>,
    /// The `write()` callable every call returns: made once with this object, so a
    /// call costs no attribute lookup and no bound-method object.
    pub write: Py<Write>,
}

impl StartResponse {
    pub fn new(py: Python<'_>) -> PyResult<Self> {
        Ok(StartResponse {
            status: None,
            headers: None,
            write: Py::new(py, Write::default())?,
        })
    }

    /// Makes a used object ready for the next request of its connection.
    pub fn reset(&mut self, py: Python<'_>) {
        self.status = None;
        self.headers = None;
        let mut write = self.write.bind(py).borrow_mut();
        write.started = false;
        write.sent = false;
        write.written.clear();
    }
}

#[pymethods]
impl StartResponse {
    #[pyo3(signature = (status, headers, exc_info = None))]
    fn __call__(
        &mut self,
        py: Python<'_>,
        status: Bound<'_, PyAny>,
        headers: Bound<'_, PyAny>,
        exc_info: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Write>> {
        let mut write = self.write.bind(py).borrow_mut();
        match exc_info.filter(|e| !e.is_none()) {
            Some(exc_info) => {
                if write.sent {
                    // PEP 3333: too late to change the response; re-raise the error.
                    let tuple = exc_info.cast::<PyTuple>()?;
                    let value = tuple.get_item(1)?;
                    let traceback = tuple.get_item(2)?;
                    let err = PyErr::from_value(value);
                    if !traceback.is_none() {
                        err.set_traceback(py, Some(traceback.cast_into()?));
                    }
                    return Err(err);
                }
            }
            None => {
                if self.status.is_some() {
                    return Err(PyAssertionError::new_err(
                        "start_response() called a second time without exc_info",
                    ));
                }
            }
        }
        if !status.is_instance_of::<PyString>() {
            return Err(PyTypeError::new_err(format!(
                "status must be a str, not {}",
                status.get_type().name()?
            )));
        }
        self.status = Some(status.unbind());
        self.headers = Some(headers.unbind());
        write.started = true;
        drop(write);
        Ok(self.write.clone_ref(py))
    }
}

/// The legacy `write()` callable (PEP 3333) and the state it shares with
/// `start_response`: data given to it goes out before the iterable's.
#[pyclass(module = "evserve")]
#[derive(Default)]
pub struct Write {
    /// start_response() has been called for the current request.
    started: bool,
    /// Set once the headers are committed (sent, or about to be): a later
    /// start_response() with `exc_info` re-raises instead of replacing them.
    pub sent: bool,
    /// Data given to `write()`, sent before the iterable's chunks.
    pub written: Vec<Py<PyBytes>>,
}

#[pymethods]
impl Write {
    fn __call__(&mut self, data: Bound<'_, PyAny>) -> PyResult<()> {
        if !self.started {
            return Err(PyAssertionError::new_err(
                "write() called before start_response()",
            ));
        }
        let bytes = data.cast_into::<PyBytes>().map_err(|e| {
            PyTypeError::new_err(format!(
                "write() takes bytes, not {}",
                e.into_inner()
                    .get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?;
        self.sent = true;
        self.written.push(bytes.unbind());
        Ok(())
    }
}

/// `wsgi.file_wrapper`: real files go out with sendfile, others are read in blocks.
#[pyclass(module = "evserve")]
pub struct FileWrapper {
    #[pyo3(get)]
    pub filelike: Py<PyAny>,
    #[pyo3(get)]
    pub blksize: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize = 8192))]
    fn new(filelike: Py<PyAny>, blksize: usize) -> Self {
        FileWrapper {
            filelike,
            blksize: blksize.max(1),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let data = self
            .filelike
            .bind(py)
            .call_method1("read", (self.blksize,))?;
        if data.is_truthy()? {
            Ok(data.unbind())
        } else {
            Err(PyStopIteration::new_err(()))
        }
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let filelike = self.filelike.bind(py);
        if filelike.hasattr("close")? {
            filelike.call_method0("close")?;
        }
        Ok(())
    }
}

/// A body chunk the app produced, written straight from the bytes object's memory.
pub struct Chunk(Py<PyBytes>);

impl Chunk {
    pub fn new(bytes: Bound<'_, PyBytes>) -> Chunk {
        Chunk(bytes.unbind())
    }
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: a bytes object is immutable and `self.0` keeps it alive for as long as
        // the returned slice borrows `self`; reading its buffer needs no interpreter
        // lock, and PyBytes_AsString/Size cannot fail on an exact bytes object.
        unsafe {
            let ptr = self.0.as_ptr();
            let data = pyo3::ffi::PyBytes_AsString(ptr);
            let len = pyo3::ffi::PyBytes_Size(ptr);
            if data.is_null() || len <= 0 {
                return &[];
            }
            std::slice::from_raw_parts(data.cast::<u8>(), len as usize)
        }
    }
}

/// A response in progress. Dropping it calls the iterable's `close()`, always.
pub struct Stream {
    /// The iterator chunks are pulled from (None when the body was a list or a file).
    pub iter: Option<Py<PyIterator>>,
    /// The object whose `close()` is due (None for plain lists and tuples).
    pub closeable: Option<Py<PyAny>>,
    /// What `write()` was given that is still to go out.
    pub write: Py<Write>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        let Some(closeable) = self.closeable.take() else {
            return;
        };
        Python::attach(|py| {
            let obj = closeable.bind(py);
            match obj.getattr(pyo3::intern!(py, "close")) {
                Ok(close) => {
                    if let Err(e) = close.call0() {
                        crate::log::error("the response iterable's close() raised:");
                        e.display(py);
                    }
                }
                Err(e) if e.is_instance_of::<pyo3::exceptions::PyAttributeError>(py) => {}
                Err(e) => e.display(py),
            }
        });
    }
}

/// Why a response cannot be sent as the app gave it.
pub enum Invalid {
    Python(PyErr),
    Message(String),
}

impl From<PyErr> for Invalid {
    fn from(e: PyErr) -> Self {
        Invalid::Python(e)
    }
}

/// What the header list said that the server needs to know.
#[derive(Default)]
pub struct HeadFacts {
    pub status: u16,
    pub content_length: Option<u64>,
    pub close: bool,
    pub has_date: bool,
}

/// A str as latin-1 bytes, appended to `out`.
fn push_latin1(out: &mut Vec<u8>, s: &Bound<'_, PyAny>, what: &str) -> Result<(), Invalid> {
    let s = s
        .cast::<PyString>()
        .map_err(|_| Invalid::Message(format!("{what} must be a str")))?;
    match ucs1(s) {
        Some(bytes) => {
            out.extend_from_slice(bytes);
            Ok(())
        }
        None => Err(Invalid::Message(format!(
            "{what} {:?} has a character outside latin-1",
            s.to_string_lossy()
        ))),
    }
}

/// The characters of a str whose code points all fit in a byte, as those bytes (its
/// latin-1 encoding, stored as is); None when one does not fit.
pub fn ucs1<'a>(s: &'a Bound<'_, PyString>) -> Option<&'a [u8]> {
    let ptr = s.as_ptr();
    // SAFETY: `ptr` is a live str object borrowed from `s` for the returned slice's
    // lifetime, and the GIL is held (`s` is a `Bound`). PyUnicode_READY makes the
    // canonical representation exist (it can only fail on out-of-memory, handled as
    // None); after that, a 1-byte kind means PyUnicode_DATA points at GET_LENGTH bytes,
    // one per character, which stay unchanged as str objects are immutable.
    unsafe {
        if ffi::PyUnicode_READY(ptr) != 0 {
            ffi::PyErr_Clear();
            return None;
        }
        if ffi::PyUnicode_KIND(ptr) != ffi::PyUnicode_1BYTE_KIND {
            return None;
        }
        let len = ffi::PyUnicode_GET_LENGTH(ptr);
        if len <= 0 {
            return Some(&[]);
        }
        Some(std::slice::from_raw_parts(
            ffi::PyUnicode_1BYTE_DATA(ptr).cast_const(),
            len as usize,
        ))
    }
}

/// Writes `STATUS\r\n` and the app's header lines into `out`, checking every byte.
pub fn serialize_head(
    start_response: &StartResponse,
    py: Python<'_>,
    out: &mut Vec<u8>,
) -> Result<HeadFacts, Invalid> {
    let (Some(status), Some(headers)) = (&start_response.status, &start_response.headers) else {
        return Err(Invalid::Message(
            "the app returned without calling start_response()".into(),
        ));
    };
    let mut facts = HeadFacts::default();
    let start = out.len();
    push_latin1(out, status.bind(py), "status")?;
    facts.status = http1::parse_status(&out[start..]).ok_or_else(|| {
        Invalid::Message(format!(
            "bad status line {:?} (want e.g. '200 OK')",
            String::from_utf8_lossy(&out[start..])
        ))
    })?;
    if facts.status < 200 {
        // An interim status would leave the real response missing and put every later
        // pipelined response out of step with its request.
        return Err(Invalid::Message(format!(
            "status {} is informational (1xx); an app's response must be final",
            facts.status
        )));
    }
    out.extend_from_slice(b"\r\n");
    let headers = headers.bind(py);
    if let Ok(list) = headers.cast::<PyList>() {
        for item in list.iter() {
            push_header(out, &item, &mut facts)?;
        }
    } else if let Ok(tuple) = headers.cast::<PyTuple>() {
        for item in tuple.iter() {
            push_header(out, &item, &mut facts)?;
        }
    } else {
        return Err(Invalid::Message(
            "response headers must be a list of tuples".into(),
        ));
    }
    Ok(facts)
}

/// Checks one `(name, value)` pair and appends its header line, noting what the server
/// must know about it.
fn push_header(
    out: &mut Vec<u8>,
    item: &Bound<'_, PyAny>,
    facts: &mut HeadFacts,
) -> Result<(), Invalid> {
    let pair = item.cast::<PyTuple>().map_err(|_| {
        Invalid::Message("each response header must be a (name, value) tuple".into())
    })?;
    if pair.len() != 2 {
        return Err(Invalid::Message(
            "each response header must be a (name, value) tuple".into(),
        ));
    }
    let line = out.len();
    push_latin1(out, &*pair.get_borrowed_item(0)?, "header name")?;
    let name_end = out.len();
    if !http1::valid_header_name(&out[line..name_end]) {
        return Err(Invalid::Message(format!(
            "bad header name {:?}",
            String::from_utf8_lossy(&out[line..name_end])
        )));
    }
    out.extend_from_slice(b": ");
    let value_start = out.len();
    push_latin1(out, &*pair.get_borrowed_item(1)?, "header value")?;
    if !http1::valid_header_value(&out[value_start..]) {
        return Err(Invalid::Message(format!(
            "bad value for header {:?}",
            String::from_utf8_lossy(&out[line..name_end])
        )));
    }
    let name = &out[line..name_end];
    let value = &out[value_start..];
    let mut keep = true;
    if name.eq_ignore_ascii_case(b"content-length") {
        if http1::may_send_content_length(facts.status) {
            let n = http1::parse_decimal(value.trim_ascii()).ok_or_else(|| {
                Invalid::Message(format!(
                    "bad Content-Length {:?}",
                    String::from_utf8_lossy(value)
                ))
            })?;
            if facts.content_length.is_some_and(|m| m != n) {
                return Err(Invalid::Message(
                    "two different Content-Length headers".into(),
                ));
            }
            keep = facts.content_length.is_none();
            facts.content_length = Some(n);
        } else {
            // RFC 9110 8.6: never on a 1xx or 204 response, whatever the app says.
            keep = false;
        }
    } else if name.eq_ignore_ascii_case(b"connection") {
        // The server frames the connection itself; it honours a request to close.
        facts.close |= value
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        keep = false;
    } else if is_other_hop_by_hop(name) {
        // Hop-by-hop headers are the server's (PEP 3333): it frames the connection itself.
        keep = false;
    } else if name.eq_ignore_ascii_case(b"date") {
        facts.has_date = true;
    }
    if keep {
        out.extend_from_slice(b"\r\n");
    } else {
        out.truncate(line);
    }
    Ok(())
}

/// Hop-by-hop header names besides Connection (RFC 9110 7.6.1, and those wsgiref's
/// validator names): an app must not set them, and the server leaves them out.
fn is_other_hop_by_hop(name: &[u8]) -> bool {
    const NAMES: [&[u8]; 8] = [
        b"transfer-encoding",
        b"keep-alive",
        b"te",
        b"trailer",
        b"trailers",
        b"upgrade",
        b"proxy-connection",
        b"proxy-authenticate",
    ];
    NAMES.iter().any(|n| n.eq_ignore_ascii_case(name))
}
