//! The WSGI bridge (PEP 3333): the only module that touches pyo3.
//!
//! It prepares the running interpreter, exposes the extension module, loads the app, and implements the server's `App` trait:
//! environ in, status, headers and body chunks out, `close()` always called. It must
//! never do socket IO (the server does), and every `unsafe` block here carries a
//! `SAFETY:` comment.

mod environ;
pub mod fork;
pub mod interpreter;
pub mod logging;
mod module;
mod response;
pub mod title;

use std::ffi::CString;
use std::os::fd::BorrowedFd;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyModule, PyTuple};

use crate::config::{AppSource, AppSpec};
use crate::log;
use crate::server::{self, AppFailed, Called, FileBody, Peer, Pull, Reply, Request};

pub use response::{Chunk, Stream};
use response::{FileWrapper, Invalid, StartResponse};

const LOADER_SOURCE: &str = include_str!("loader.py");

/// Imports the app's module and finds its callable. On failure the Python traceback is
/// printed and the returned message is the one line that says what was wrong.
pub fn load_app<'py>(py: Python<'py>, spec: &AppSpec) -> Result<Bound<'py, PyAny>, String> {
    let loader = loader_module(py).map_err(|e| format!("internal loader failed: {e}"))?;
    let (kind, source) = match &spec.source {
        AppSource::Module(m) => ("module", m.clone()),
        AppSource::File(p) => ("file", p.to_string_lossy().into_owned()),
        AppSource::Object => return module::given_app(py),
    };
    match loader
        .getattr("load")
        .and_then(|load| load.call1((kind, source, spec.expr.as_str(), spec.text.as_str())))
    {
        Ok(app) => Ok(app),
        Err(e) => {
            let is_load_error = loader
                .getattr("LoadError")
                .map(|cls| e.get_type(py).is(&cls))
                .unwrap_or(false);
            e.display(py);
            if is_load_error {
                Err(format!("cannot load app: {}", e.value(py)))
            } else {
                let kind = e
                    .get_type(py)
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_else(|_| "Exception".into());
                Err(format!(
                    "cannot import app '{}': {kind}: {}",
                    spec.text,
                    e.value(py)
                ))
            }
        }
    }
}

fn loader_module(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    let code = CString::new(LOADER_SOURCE)?;
    PyModule::from_code(py, &code, c"evserve_loader.py", c"evserve_loader")
}

/// The source files of the app's modules imported so far (not the standard library's or
/// the installed packages'), as absolute paths; empty if they cannot be listed.
pub fn app_source_files(py: Python<'_>) -> Vec<String> {
    loader_module(py)
        .and_then(|loader| loader.getattr("source_files")?.call0()?.extract())
        .unwrap_or_else(|e| {
            log::warn(&format!("cannot list the app's source files: {e}"));
            Vec::new()
        })
}

/// Entries of every environ that depend on where the instance listens.
pub struct Site<'a> {
    pub root_path: &'a str,
    pub server_name: &'a str,
    pub server_port: &'a str,
    pub multiprocess: bool,
    pub trusted_proxies: &'a crate::forwarded::TrustedProxies,
}

/// Whether `obj` is referenced from nowhere but here.
fn only_reference<T>(obj: &Py<T>) -> bool {
    // SAFETY: `obj` is a live, owned reference, so its pointer is valid; this thread
    // holds the GIL (every caller runs inside the instance's attached event loop), which
    // makes reading the reference count race-free.
    unsafe { pyo3::ffi::Py_REFCNT(obj.as_ptr()) == 1 }
}

/// What one connection keeps across its requests.
pub struct Session {
    strings: environ::ConnStrings,
    /// Reused for the next request when nothing else still holds it.
    start_response: Option<Py<StartResponse>>,
}

/// A loaded WSGI app, ready to serve requests on the thread that holds `py`.
pub struct WsgiApp<'py> {
    py: Python<'py>,
    app: Bound<'py, PyAny>,
    environ: environ::Environ,
}

impl<'py> WsgiApp<'py> {
    pub fn new(py: Python<'py>, app: Bound<'py, PyAny>, site: &Site<'_>) -> PyResult<Self> {
        let file_wrapper = py.get_type::<FileWrapper>().into_any();
        let environ = environ::Environ::new(
            py,
            environ::Constants {
                root_path: site.root_path,
                server_name: site.server_name,
                server_port: site.server_port,
                multiprocess: site.multiprocess,
                trusted_proxies: site.trusted_proxies.clone(),
                file_wrapper,
            },
        )?;
        Ok(WsgiApp { py, app, environ })
    }

    fn log_failure(&self, request: &Request<'_>, what: &str, err: Option<PyErr>) {
        log::error(&format!(
            "{what} while handling {} {}",
            String::from_utf8_lossy(request.head.method.of(request.buf)),
            String::from_utf8_lossy(request.head.target.of(request.buf)),
        ));
        if let Some(e) = err {
            e.display(self.py);
        }
    }
}

/// A response item as a chunk: it must be bytes.
fn as_chunk(item: Bound<'_, PyAny>) -> Result<Chunk, Invalid> {
    match item.cast_into::<PyBytes>() {
        Ok(bytes) => Ok(Chunk::new(bytes)),
        Err(e) => {
            let obj = e.into_inner();
            let type_name = obj
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default();
            Err(Invalid::Message(format!(
                "response body items must be bytes, not {type_name}"
            )))
        }
    }
}

/// The file behind a `wsgi.file_wrapper`, when it is a real file sendfile can read.
fn sendfile_source(wrapper: &Bound<'_, FileWrapper>) -> Option<FileBody> {
    let py = wrapper.py();
    let filelike = wrapper.borrow().filelike.clone_ref(py).into_bound(py);
    let fileno: i32 = filelike.call_method0("fileno").ok()?.extract().ok()?;
    if fileno < 0 {
        return None;
    }
    // SAFETY: `fileno` is the descriptor of `filelike`, a live file object held by
    // `wrapper` for the whole of this function; the borrow does not outlive it (the
    // descriptor is duplicated before the function returns).
    let fd = unsafe { BorrowedFd::borrow_raw(fileno) };
    let stat = rustix::fs::fstat(fd).ok()?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
        return None;
    }
    let offset: u64 = filelike.call_method0("tell").ok()?.extract().ok()?;
    let owned = rustix::io::fcntl_dupfd_cloexec(fd, 0).ok()?;
    Some(FileBody {
        file: std::fs::File::from(owned),
        offset,
        len: (stat.st_size.max(0) as u64).saturating_sub(offset),
    })
}

impl<'py> server::App for WsgiApp<'py> {
    type Chunk = Chunk;
    type Stream = Stream;
    type Session = Session;

    fn open_session(&mut self, peer: &Peer) -> Session {
        Session {
            strings: self.environ.connection(self.py, peer),
            start_response: None,
        }
    }

    fn call(
        &mut self,
        session: &mut Session,
        request: &Request<'_>,
        reply: &mut Reply<Chunk>,
    ) -> Result<Called<Stream>, AppFailed> {
        let py = self.py;
        let environ = match self.environ.build(py, &mut session.strings, request) {
            Ok(env) => env,
            Err(e) => {
                self.log_failure(request, "cannot build the environ", Some(e));
                return Err(AppFailed);
            }
        };
        let start_response = match session.start_response.take() {
            // Only the session holds it: the previous response is done with it.
            Some(sr) if only_reference(&sr) && only_reference(&sr.borrow(py).write) => {
                let sr = sr.into_bound(py);
                sr.borrow_mut().reset(py);
                sr
            }
            _ => match StartResponse::new(py).and_then(|sr| Bound::new(py, sr)) {
                Ok(sr) => sr,
                Err(e) => {
                    self.log_failure(request, "internal error", Some(e));
                    return Err(AppFailed);
                }
            },
        };
        session.start_response = Some(start_response.clone().unbind());
        let result = match self.app.call1((environ, &start_response)) {
            Ok(result) => result,
            Err(e) => {
                self.log_failure(request, "the app raised", Some(e));
                return Err(AppFailed);
            }
        };
        let exact_sequence =
            result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>();
        // From here on, dropping `stream` calls close(), on every path.
        let mut stream = Stream {
            iter: None,
            closeable: if exact_sequence {
                None
            } else {
                Some(result.clone().unbind())
            },
            write: start_response.borrow().write.clone_ref(py),
        };
        let collected: Result<bool, Invalid> = (|| {
            if let Ok(list) = result.cast::<PyList>() {
                for item in list.iter() {
                    reply.chunks.push(as_chunk(item)?);
                }
                return Ok(false);
            }
            if let Ok(tuple) = result.cast::<PyTuple>() {
                for item in tuple.iter() {
                    reply.chunks.push(as_chunk(item)?);
                }
                return Ok(false);
            }
            if let Ok(wrapper) = result.cast_exact::<FileWrapper>() {
                if let Some(file) = sendfile_source(wrapper) {
                    reply.file = Some(file);
                    return Ok(false);
                }
            }
            // Headers wait for the first non-empty chunk, so start_response may be lazy.
            let mut iter = result.try_iter()?;
            for item in iter.by_ref() {
                let chunk = as_chunk(item?)?;
                if !chunk.as_ref().is_empty() {
                    reply.chunks.push(chunk);
                    stream.iter = Some(iter.unbind());
                    return Ok(true);
                }
            }
            Ok(false)
        })();
        let more = match collected {
            Ok(more) => more,
            Err(invalid) => {
                reply.chunks.clear();
                reply.file = None;
                self.report_invalid(request, invalid);
                return Err(AppFailed);
            }
        };
        let sr = start_response.borrow();
        let mut write = sr.write.bind(py).borrow_mut();
        if !write.written.is_empty() {
            let written: Vec<Chunk> = write
                .written
                .drain(..)
                .map(|b| Chunk::new(b.into_bound(py)))
                .collect();
            reply.chunks.splice(0..0, written);
        }
        match response::serialize_head(&sr, py, &mut reply.head) {
            Ok(facts) => {
                write.sent = true;
                reply.status = facts.status;
                reply.content_length = facts.content_length;
                reply.close = facts.close;
                reply.has_date = facts.has_date;
            }
            Err(invalid) => {
                drop(write);
                drop(sr);
                reply.chunks.clear();
                reply.file = None;
                self.report_invalid(request, invalid);
                return Err(AppFailed);
            }
        }
        drop(write);
        drop(sr);
        Ok(Called {
            stream: Some(stream),
            more,
        })
    }

    fn pull(&mut self, stream: &mut Stream) -> Pull<Chunk> {
        let py = self.py;
        {
            let mut write = stream.write.bind(py).borrow_mut();
            if !write.written.is_empty() {
                let bytes = write.written.remove(0);
                return Pull::Chunk(Chunk::new(bytes.into_bound(py)));
            }
        }
        let Some(iter) = stream.iter.as_ref() else {
            return Pull::End;
        };
        let mut iter = iter.bind(py).clone();
        loop {
            match iter.next() {
                None => return Pull::End,
                Some(Err(e)) => {
                    log::error(
                        "the app raised after its response headers were sent; cutting the response",
                    );
                    e.display(py);
                    return Pull::Failed;
                }
                Some(Ok(item)) => match as_chunk(item) {
                    Ok(chunk) if chunk.as_ref().is_empty() => continue,
                    Ok(chunk) => return Pull::Chunk(chunk),
                    Err(Invalid::Message(m)) => {
                        log::error(&format!("{m}; cutting the response"));
                        return Pull::Failed;
                    }
                    Err(Invalid::Python(e)) => {
                        e.display(py);
                        return Pull::Failed;
                    }
                },
            }
        }
    }

    fn unlocked<R: Send, F: FnOnce() -> R + Send>(&mut self, f: F) -> R {
        self.py.detach(f)
    }
}

impl WsgiApp<'_> {
    fn report_invalid(&self, request: &Request<'_>, invalid: Invalid) {
        match invalid {
            Invalid::Python(e) => self.log_failure(request, "the app raised", Some(e)),
            Invalid::Message(m) => self.log_failure(request, &format!("bad response ({m})"), None),
        }
    }
}
