//! Answers a request under a `--static` mount without calling the app: opens the file
//! beneath its mount directory, reads its metadata, and queues the head (and the short
//! body of a refusal); a file body is then sent by the connection with sendfile, as any
//! file body, under the same backpressure, write timeout and keep-alive rules.
//!
//! The decisions are `static_files`'; this file only does the IO. It must never read a
//! file into memory, open anything a symlink leads to outside the mount, block on a
//! special file, or tell the client a filesystem path.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::super::output::Output;
use super::super::FileBody;
use super::{end_head, Work};
use crate::http1::Head;
use crate::log;
use crate::static_files::{self, Body, Conditions, FileFacts, Plan, Route, StaticSite};

/// A static answer queued: its status, and the file span still to send (none for HEAD,
/// refusals and 304s).
pub(super) struct Sent {
    pub status: u16,
    pub file: Option<FileBody>,
}

/// Queues the answer when the request is under a mount; `None` leaves it to the app.
pub(super) fn answer<C: AsRef<[u8]>>(
    site: &StaticSite,
    work: &mut Work<C>,
    date: &[u8],
    keep_alive: bool,
) -> Option<Sent> {
    let buf = &work.rbuf;
    let head = &work.head;
    let (dir, relative) = match site.route(head.path.of(buf)) {
        Route::App => return None,
        Route::Refused => {
            return Some(queue(
                work,
                static_files::refusal(404),
                None,
                date,
                keep_alive,
            ))
        }
        Route::File { dir, relative } => (dir, relative),
    };
    let method = head.method.of(buf);
    if !static_files::method_allowed(method) {
        return Some(queue(
            work,
            static_files::refusal(405),
            None,
            date,
            keep_alive,
        ));
    }
    let is_head = method == b"HEAD";
    let (file, facts) = match open_beneath(dir, &relative).and_then(regular_file_facts) {
        Ok(opened) => opened,
        Err(e) => {
            let status = status_for_open_error(&e);
            return Some(queue(
                work,
                static_files::refusal(status),
                None,
                date,
                keep_alive,
            ));
        }
    };
    let plan = static_files::plan(is_head, &relative, &facts, &conditions(buf, head));
    Some(queue(work, plan, Some(file), date, keep_alive))
}

/// The conditional and range fields of the request; repeated ones joined with `, `.
fn conditions(buf: &[u8], head: &Head) -> Conditions {
    let mut cond = Conditions::default();
    for h in &head.headers {
        if let Some(slot) = cond.slot(h.name.of(buf)) {
            let value = h.value.of(buf);
            match slot {
                Some(v) => {
                    v.extend_from_slice(b", ");
                    v.extend_from_slice(value);
                }
                None => *slot = Some(value.to_vec()),
            }
        }
    }
    cond
}

/// Writes the head (and a refusal's text) into the output; hands back the file span.
fn queue<C: AsRef<[u8]>>(
    work: &mut Work<C>,
    plan: Plan,
    file: Option<File>,
    date: &[u8],
    keep_alive: bool,
) -> Sent {
    let is_head = work.head.method.of(&work.rbuf) == b"HEAD";
    let version = work.head.version;
    let out: &mut Output<C> = &mut work.out;
    let from = out.own_buffer().len();
    let buf = out.own_buffer();
    buf.extend_from_slice(b"HTTP/1.1 ");
    buf.extend_from_slice(plan.head.as_bytes());
    buf.extend_from_slice(b"Date: ");
    buf.extend_from_slice(date);
    buf.extend_from_slice(b"\r\n");
    end_head(buf, keep_alive, version);
    let mut span = None;
    match plan.body {
        _ if is_head => {}
        Body::None => {}
        Body::Text(text) => {
            buf.extend_from_slice(text.as_bytes());
            out.body_bytes += text.len() as u64;
        }
        Body::File { start, len } => {
            span = file.map(|file| FileBody {
                file,
                offset: start,
                len,
            });
        }
    }
    out.commit_own(from);
    Sent {
        status: plan.status,
        file: span,
    }
}

/// Opens `relative` beneath `dir`, refusing (as not found) any path that a symlink leads
/// out of it: openat2 with RESOLVE_BENEATH, or, where the kernel lacks it, the resolved
/// path checked against the directory.
fn open_beneath(dir: &Path, relative: &Path) -> io::Result<File> {
    // Non-blocking, so that opening a FIFO placed in the directory never waits.
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let dir_fd = rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    match rustix::fs::openat2(&dir_fd, relative, flags, Mode::empty(), resolve) {
        Ok(fd) => Ok(File::from(fd)),
        // Kernels before 5.6, or a sandbox that forbids the call.
        Err(Errno::NOSYS) | Err(Errno::PERM) => open_checked(dir, relative, flags),
        Err(e) => Err(e.into()),
    }
}

/// The fallback: resolve every symlink, and open the result only if it is in `dir`
/// (canonical, as the configuration keeps it).
fn open_checked(dir: &Path, relative: &Path, flags: OFlags) -> io::Result<File> {
    let resolved = std::fs::canonicalize(dir.join(relative))?;
    if !resolved.starts_with(dir) {
        return Err(Errno::XDEV.into());
    }
    let fd = rustix::fs::open(&resolved, flags | OFlags::NOFOLLOW, Mode::empty())?;
    Ok(File::from(fd))
}

/// The facts the answer needs; anything but a regular file is not found.
fn regular_file_facts(file: File) -> io::Result<(File, FileFacts)> {
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::ErrorKind::NotFound.into());
    }
    let facts = FileFacts {
        size: meta.len(),
        mtime_secs: meta.mtime(),
        mtime_nanos: meta.mtime_nsec(),
    };
    Ok((file, facts))
}

/// 404 for every reason a path names no readable file (missing, a directory on the way,
/// a symlink out, no permission); 500 (and a log line) for a failure of the system.
fn status_for_open_error(e: &io::Error) -> u16 {
    let quiet = [
        Errno::NOENT,
        Errno::NOTDIR,
        Errno::XDEV,
        Errno::LOOP,
        Errno::ACCESS,
        Errno::PERM,
        Errno::NAMETOOLONG,
        Errno::ISDIR,
    ];
    let errno = e.raw_os_error().map(Errno::from_raw_os_error);
    if e.kind() == io::ErrorKind::NotFound || errno.is_some_and(|n| quiet.contains(&n)) {
        return 404;
    }
    log::warn(&format!("cannot open a static file: {e}"));
    500
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, tempfile::TempDir) {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"secret").unwrap();
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("a.txt"), b"hello").unwrap();
        std::fs::create_dir(root.path().join("sub")).unwrap();
        std::os::unix::fs::symlink("../a.txt", root.path().join("sub/inside")).unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret"),
            root.path().join("out_absolute"),
        )
        .unwrap();
        let rel = format!(
            "../{}/secret",
            outside.path().file_name().unwrap().to_str().unwrap()
        );
        std::os::unix::fs::symlink(rel, root.path().join("out_relative")).unwrap();
        (root, outside)
    }

    fn canonical(d: &tempfile::TempDir) -> std::path::PathBuf {
        std::fs::canonicalize(d.path()).unwrap()
    }

    #[test]
    fn a_file_and_a_symlink_staying_inside_open() {
        let (root, _outside) = tree();
        let dir = canonical(&root);
        assert!(open_beneath(&dir, Path::new("a.txt")).is_ok());
        assert!(open_beneath(&dir, Path::new("sub/inside")).is_ok());
        let flags = OFlags::RDONLY | OFlags::NONBLOCK;
        assert!(open_checked(&dir, Path::new("sub/inside"), flags).is_ok());
    }

    #[test]
    fn symlinks_leading_out_are_not_found_either_way() {
        let (root, _outside) = tree();
        let dir = canonical(&root);
        let flags = OFlags::RDONLY | OFlags::NONBLOCK;
        for name in ["out_absolute", "out_relative"] {
            let e = open_beneath(&dir, Path::new(name)).unwrap_err();
            assert_eq!(status_for_open_error(&e), 404, "{name}: {e}");
            let e = open_checked(&dir, Path::new(name), flags).unwrap_err();
            assert_eq!(status_for_open_error(&e), 404, "{name}: {e}");
        }
    }

    #[test]
    fn a_directory_or_a_missing_file_is_not_found() {
        let (root, _outside) = tree();
        let dir = canonical(&root);
        let opened = open_beneath(&dir, Path::new("sub")).and_then(regular_file_facts);
        assert_eq!(status_for_open_error(&opened.unwrap_err()), 404);
        let e = open_beneath(&dir, Path::new("nope")).unwrap_err();
        assert_eq!(status_for_open_error(&e), 404);
    }
}
