//! The launcher's control socket, which `evserve status` and `evserve scale` talk to, and
//! the status report.
//!
//! The socket is a Unix stream socket only its owner may use (mode 0600, in a 0700 directory
//! by default). A client connects, sends one request line (none: the status report), shuts
//! its side down and reads one answer; an answer starting `error: ` is a refusal.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, Type};

use crate::cli::{ScaleArgs, StatusArgs};

/// The control socket a launcher started in the current directory on `addresses` (its
/// listening addresses, as the log shows them) uses unless `--control-socket` says
/// otherwise: `$XDG_RUNTIME_DIR/evserve/` or `/tmp/evserve-UID/`, named after a hash of
/// the working directory and one of the addresses, so launchers side by side in one
/// directory each have their own.
pub fn default_path(addresses: &str) -> Result<PathBuf, String> {
    Ok(default_dir().join(format!(
        "{}{:016x}.sock",
        name_prefix_here()?,
        fnv1a(addresses.as_bytes())
    )))
}

/// Where default control sockets live.
fn default_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(runtime) if Path::new(&runtime).is_dir() => Path::new(&runtime).join("evserve"),
        _ => PathBuf::from(format!(
            "/tmp/evserve-{}",
            rustix::process::getuid().as_raw()
        )),
    }
}

/// `launcher-<hash of the working directory>-`: how the default control sockets of the
/// launchers started here begin.
fn name_prefix_here() -> Result<String, String> {
    let cwd =
        std::env::current_dir().map_err(|e| format!("cannot read the working directory: {e}"))?;
    Ok(format!(
        "launcher-{:016x}-",
        fnv1a(cwd.as_os_str().as_encoded_bytes())
    ))
}

/// The default control sockets of the launchers started in the current directory (some
/// may be left over from a launcher that was killed), sorted.
fn default_paths_here() -> Result<Vec<PathBuf>, String> {
    let prefix = name_prefix_here()?;
    let dir = default_dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", dir.display())),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with(&prefix) && name.ends_with(".sock"))
        })
        .collect();
    paths.sort();
    Ok(paths)
}

/// FNV-1a: a stable hash (the std hasher may change between Rust versions).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Creates the default directory (0700) if needed and checks that no other user owns it.
fn prepare_private_dir(dir: &Path) -> Result<(), String> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.is_dir() || meta.uid() != rustix::process::getuid().as_raw() {
        return Err(format!(
            "{} is not a directory of ours; give --control-socket PATH",
            dir.display()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot make {} private: {e}", dir.display()))?;
    }
    Ok(())
}

/// The listening end of the control socket; removes its file when dropped.
pub struct ControlServer {
    pub path: PathBuf,
    listener: UnixListener,
}

impl ControlServer {
    /// Binds `path` (or the default path for `addresses`) with mode 0600. Refuses when a
    /// launcher already answers there.
    pub fn bind(path: Option<&Path>, addresses: &str) -> Result<ControlServer, String> {
        let path = match path {
            Some(p) => p.to_path_buf(),
            None => {
                let p = default_path(addresses)?;
                if let Some(dir) = p.parent() {
                    prepare_private_dir(dir)?;
                }
                p
            }
        };
        if UnixStream::connect(&path).is_ok() {
            return Err(format!(
                "another launcher is running with control socket {}; stop it or give --control-socket",
                path.display()
            ));
        }
        crate::listen::remove_stale_socket(&path).map_err(|e| format!("control socket: {e}"))?;
        let fail = |e: io::Error| format!("cannot create control socket {}: {e}", path.display());
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(fail)?;
        socket
            .bind(&SockAddr::unix(&path).map_err(fail)?)
            .map_err(fail)?;
        // Before listen(): nobody can connect until the mode is the owner's only.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
        socket.listen(16).map_err(fail)?;
        let listener: UnixListener = UnixListener::from(std::os::fd::OwnedFd::from(socket));
        listener.set_nonblocking(true).map_err(fail)?;
        Ok(ControlServer { path, listener })
    }

    pub fn fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }

    /// The waiting clients with their requests. Bounded per call.
    pub fn accept(&self) -> Vec<Client> {
        let mut clients = Vec::new();
        for _ in 0..16 {
            match self.listener.accept() {
                Ok((stream, _)) => clients.push(Client::read(stream)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        clients
    }

    /// Answers every waiting client with `report()`, whatever it asked. Bounded per call.
    #[cfg(test)]
    pub fn serve(&self, report: impl Fn() -> String) {
        for client in self.accept() {
            client.answer(&report());
        }
    }
}

/// A connected client of the control socket and the line it sent.
pub struct Client {
    stream: UnixStream,
    pub request: String,
}

/// Longest request line read; clients send one short line.
const MAX_REQUEST: u64 = 1024;

impl Client {
    /// Reads the request: up to the client's shutdown, `MAX_REQUEST` bytes, or 200 ms.
    fn read(stream: UnixStream) -> Client {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
        let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
        let mut bytes = Vec::new();
        let _ = (&stream).take(MAX_REQUEST).read_to_end(&mut bytes);
        let request = String::from_utf8_lossy(&bytes).trim().to_string();
        Client { stream, request }
    }

    pub fn answer(mut self, text: &str) {
        let _ = self.stream.write_all(text.as_bytes());
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `evserve status`: prints the report of the launcher behind the control socket, or of
/// each launcher started in the current directory.
pub fn status_command(args: &StatusArgs) -> i32 {
    if let Some(path) = &args.control_socket {
        return match ask(path, "") {
            Ok(report) => {
                print!("{report}");
                0
            }
            Err(e) => {
                crate::log::fatal(&format!("{e}; is the launcher running?"));
                1
            }
        };
    }
    let paths = match default_paths_here() {
        Ok(paths) => paths,
        Err(e) => {
            crate::log::fatal(&e);
            return 1;
        }
    };
    // Files of killed launchers answer nobody: they are skipped.
    let reports: Vec<(PathBuf, String)> = paths
        .into_iter()
        .filter_map(|path| ask(&path, "").ok().map(|report| (path, report)))
        .collect();
    match reports.as_slice() {
        [] => {
            crate::log::fatal(&format!(
                "no launcher started in this directory answers (looked for {}/{}*.sock); \
                 start one here or give --control-socket",
                default_dir().display(),
                name_prefix_here().unwrap_or_default()
            ));
            1
        }
        [(_, report)] => {
            print!("{report}");
            0
        }
        several => {
            for (path, report) in several {
                println!("{report}(--control-socket {})\n", path.display());
            }
            0
        }
    }
}

/// `evserve scale N|+N|-N`: asks the launcher (the one given, or the only one started in
/// this directory) to change its instance count and prints its answer.
pub fn scale_command(args: &ScaleArgs) -> i32 {
    let path = match &args.control_socket {
        Some(path) => path.clone(),
        None => match the_launcher_here() {
            Ok(path) => path,
            Err(e) => {
                crate::log::fatal(&e);
                return 1;
            }
        },
    };
    let answer = match ask(&path, &format!("scale {}", args.count)) {
        Ok(answer) => answer,
        Err(e) => {
            crate::log::fatal(&format!("{e}; is the launcher running?"));
            return 1;
        }
    };
    match answer.trim().strip_prefix("error: ") {
        Some(refusal) => {
            crate::log::fatal(refusal);
            1
        }
        None => {
            println!("{}", answer.trim());
            0
        }
    }
}

/// The control socket of the one launcher started in this directory that answers.
fn the_launcher_here() -> Result<PathBuf, String> {
    let answering: Vec<PathBuf> = default_paths_here()?
        .into_iter()
        .filter(|path| UnixStream::connect(path).is_ok())
        .collect();
    match answering.as_slice() {
        [] => Err("no launcher started in this directory answers; start one here or give --control-socket".into()),
        [one] => Ok(one.clone()),
        several => Err(format!(
            "{} launchers were started in this directory: give --control-socket (one of {})",
            several.len(),
            several
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Sends `request` to the launcher on control socket `path` and reads its answer.
fn ask(path: &Path, request: &str) -> Result<String, String> {
    let mut stream = UnixStream::connect(path)
        .map_err(|e| format!("no launcher answers on {} ({e})", path.display()))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.shutdown(std::net::Shutdown::Write))
        .map_err(|e| format!("writing to {}: {e}", path.display()))?;
    let mut report = String::new();
    stream
        .read_to_string(&mut report)
        .map_err(|e| format!("reading from {}: {e}", path.display()))?;
    Ok(report)
}

/// Resident memory of a process in bytes, from /proc/PID/statm.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

/// The page size (from the auxiliary vector, through rustix).
fn page_size() -> u64 {
    rustix::param::page_size() as u64
}

/// `1h02m`, `3m12s`, `45s`.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// One line of the status table.
pub fn table_row(out: &mut String, cells: [String; 9]) {
    let [inst, pid, port, state, restarts, uptime, requests, conns, rss] = cells;
    out.push_str(&format!(
        "{inst:<5} {pid:<8} {port:<6} {state:<10} {restarts:>8} {uptime:>8} {requests:>10} {conns:>6} {rss:>11}\n"
    ));
}

/// `24.1 MiB`.
pub fn human_bytes(bytes: Option<u64>) -> String {
    match bytes {
        Some(b) => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
        None => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_paths_of_launchers_on_other_addresses_differ() {
        // Bug: the default depended on the working directory only, so a second launcher
        // started there (another app, other ports) was refused.
        let first = default_path("127.0.0.1:8001-8004").unwrap();
        assert_eq!(first, default_path("127.0.0.1:8001-8004").unwrap());
        assert_ne!(first, default_path("127.0.0.1:9001-9004").unwrap());
        let prefix = name_prefix_here().unwrap();
        let name = first.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(&prefix), "{name} {prefix}");
        assert_ne!(fnv1a(b"/a"), fnv1a(b"/b"));
    }

    #[test]
    fn own_rss_is_readable() {
        let rss = rss_bytes(std::process::id()).unwrap();
        assert!(rss > 100 * 1024, "{rss}");
        assert!(page_size().is_power_of_two());
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(Duration::from_secs(45)), "45s");
        assert_eq!(human_duration(Duration::from_secs(192)), "3m12s");
        assert_eq!(human_duration(Duration::from_secs(3720)), "1h02m");
    }

    #[test]
    fn control_socket_is_owner_only_and_answers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        let server = ControlServer::bind(Some(&path), "a").unwrap();
        let mode = std::fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(
            ControlServer::bind(Some(&path), "a").is_err(),
            "second launcher allowed"
        );
        let mut client = UnixStream::connect(&path).unwrap();
        server.serve(|| "report\n".to_string());
        let mut text = String::new();
        client.read_to_string(&mut text).unwrap();
        assert_eq!(text, "report\n");
        drop(server);
        assert!(!path.exists());
    }
}
