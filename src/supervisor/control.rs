//! The launcher's control socket and the console subcommands that talk to it (`evserve
//! status`, `reload`, `restart`, `signal`, `stop`, `scale`), the request protocol, and the status
//! table's cells.
//!
//! The socket is a Unix stream socket only its owner may use (mode 0600, in a 0700 directory
//! by default). A client connects, sends one request line (`Request::encode`), shuts down
//! its writing side and reads the answer: `ok` or `error`, a newline, then text. Nothing
//! here acts on the launcher: the launcher's handlers live in `console`. A client is never
//! waited on longer than `CLIENT_WAIT`.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, Type};

use crate::cli::{Command, ControlArgs, StatusArgs};

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

    /// The requests of the waiting clients (bounded per call), each to be answered.
    pub fn accept(&self) -> Vec<Pending> {
        let mut pending = Vec::new();
        for _ in 0..16 {
            match self.listener.accept() {
                Ok((stream, _)) => pending.push(Pending::read(stream)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        pending
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A client's request, read, waiting for the launcher's answer.
pub struct Pending {
    stream: UnixStream,
    /// The request; `Err` says what was wrong with it.
    pub request: Result<Request, String>,
    /// The client sent nothing (an older `evserve status`): it gets the bare report.
    bare: bool,
}

impl Pending {
    fn read(mut stream: UnixStream) -> Pending {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(CLIENT_WAIT));
        let _ = stream.set_write_timeout(Some(CLIENT_WAIT));
        let mut line = Vec::new();
        let mut buf = [0u8; 256];
        // Bounded: one short line, read within CLIENT_WAIT.
        while line.len() < MAX_REQUEST && !line.contains(&b'\n') {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => line.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let text = String::from_utf8_lossy(&line);
        let bare = text.trim().is_empty();
        Pending {
            stream,
            request: Request::parse(text.lines().next().unwrap_or("")),
            bare,
        }
    }

    /// Sends the answer: `ok` or `error`, a newline, then the text for the user.
    pub fn answer(mut self, reply: Reply) {
        let wire = match (&reply, self.bare) {
            (Ok(text), true) => text.clone(),
            (Ok(text), false) => format!("ok\n{text}"),
            (Err(text), _) => format!("error\n{text}"),
        };
        let _ = self.stream.write_all(wire.as_bytes());
    }
}

/// How long the launcher waits for a client to send its request or take its answer.
const CLIENT_WAIT: Duration = Duration::from_millis(200);
/// Longest request line.
const MAX_REQUEST: usize = 1024;

/// The launcher's answer: the text of what it did (`Ok`) or why it did nothing (`Err`).
pub type Reply = Result<String, String>;

/// One request on the control socket, sent as one line of words. One more command is one
/// more variant here, its words in `encode` and `parse`, and its handler in `console`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `status` or `status json`: the status table.
    Status { json: bool },
    /// `reload`: a rolling reload, as SIGHUP.
    Reload,
    /// `restart N`: instance N replaced by a new process, once that one is ready.
    Restart { instance: usize },
    /// `signal SIGNO [N]`: the signal to instance N, or to the launcher itself.
    Signal {
        signal: i32,
        instance: Option<usize>,
    },
    /// `stop`: graceful stop, as SIGTERM.
    Stop,
    /// `scale N`, `scale +N`, `scale -N`: the instance count set or changed.
    Scale(String),
}

impl Request {
    pub fn encode(&self) -> String {
        match self {
            Request::Status { json: false } => "status".into(),
            Request::Status { json: true } => "status json".into(),
            Request::Reload => "reload".into(),
            Request::Restart { instance } => format!("restart {instance}"),
            Request::Signal {
                signal,
                instance: Some(n),
            } => format!("signal {signal} {n}"),
            Request::Signal {
                signal,
                instance: None,
            } => format!("signal {signal}"),
            Request::Stop => "stop".into(),
            Request::Scale(count) => format!("scale {count}"),
        }
    }

    /// Parses a request line; an empty one is `status` (what an older client sends).
    pub fn parse(line: &str) -> Result<Request, String> {
        let words: Vec<&str> = line.split_ascii_whitespace().collect();
        let number = |word: &str| {
            word.parse::<usize>()
                .map_err(|_| format!("'{word}' is not an instance number"))
        };
        match words.as_slice() {
            [] | ["status"] => Ok(Request::Status { json: false }),
            ["status", "json"] => Ok(Request::Status { json: true }),
            ["reload"] => Ok(Request::Reload),
            ["scale", count] => Ok(Request::Scale(count.to_string())),
            ["restart", n] => Ok(Request::Restart {
                instance: number(n)?,
            }),
            ["signal", sig, rest @ ..] if rest.len() <= 1 => Ok(Request::Signal {
                signal: parse_signal(sig)?,
                instance: rest.first().map(|n| number(n)).transpose()?,
            }),
            ["stop"] => Ok(Request::Stop),
            _ => Err(format!(
                "the launcher does not understand '{}' (is it an older evserve?)",
                line.trim()
            )),
        }
    }
}

/// A signal by name (`HUP`, `SIGHUP`, `hup`) or number (`1`); only the named signals of
/// this system (no real-time ones).
pub fn parse_signal(text: &str) -> Result<i32, String> {
    let bad = || {
        format!("'{text}' is not a signal (give a name such as HUP, TERM, USR1, KILL, or a number)")
    };
    let number = match text.parse::<i32>() {
        Ok(n) => n,
        Err(_) => {
            let upper = text.to_ascii_uppercase();
            let name = if upper.starts_with("SIG") {
                upper
            } else {
                format!("SIG{upper}")
            };
            (1..=64)
                .find(|n| signal_hook::low_level::signal_name(*n) == Some(name.as_str()))
                .ok_or_else(bad)?
        }
    };
    rustix::process::Signal::from_named_raw(number)
        .map(|_| number)
        .ok_or_else(bad)
}

/// `SIGHUP` for 1.
pub fn signal_name(signal: i32) -> String {
    signal_hook::low_level::signal_name(signal)
        .map(str::to_string)
        .unwrap_or_else(|| format!("signal {signal}"))
}

/// A console subcommand (`evserve reload`, `restart`, `signal`, `stop`, `status`): sends
/// its request to the launcher and prints the answer. 0 when the launcher did it, 1 when
/// it did not or none answers, 2 for a bad argument.
pub fn console_command(command: Command) -> i32 {
    let (target, request) = match command {
        Command::Status(args) => return status_command(&args),
        Command::Reload(target) => (target, Request::Reload),
        Command::Stop(target) => (target, Request::Stop),
        Command::Restart(args) => (
            args.target,
            Request::Restart {
                instance: args.instance,
            },
        ),
        Command::Signal(args) => match parse_signal(&args.signal) {
            Ok(signal) => (
                args.target,
                Request::Signal {
                    signal,
                    instance: args.instance,
                },
            ),
            Err(e) => {
                crate::log::fatal(&e);
                return 2;
            }
        },
        Command::Scale(args) => (args.target, Request::Scale(args.count)),
        Command::NginxConfig(args) => return crate::nginx::config_command(&args),
    };
    let answer = one_launcher(&target).and_then(|path| ask(&path, &request));
    match answer {
        Ok(Ok(text)) => {
            print_text(&text);
            0
        }
        Ok(Err(text)) | Err(text) => {
            crate::log::fatal(text.trim_end());
            1
        }
    }
}

fn print_text(text: &str) {
    if text.ends_with('\n') {
        print!("{text}");
    } else {
        println!("{text}");
    }
}

/// The control socket of the launcher a command is for: `--control-socket`, or the one
/// launcher started in this directory that answers.
fn one_launcher(target: &ControlArgs) -> Result<PathBuf, String> {
    if let Some(path) = &target.control_socket {
        return Ok(path.clone());
    }
    let live: Vec<PathBuf> = default_paths_here()?
        .into_iter()
        .filter(|path| UnixStream::connect(path).is_ok())
        .collect();
    match live.as_slice() {
        [] => Err(no_launcher_here()),
        [one] => Ok(one.clone()),
        several => Err(format!(
            "{} launchers started in this directory answer; say which with --control-socket ({})",
            several.len(),
            several
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn no_launcher_here() -> String {
    format!(
        "no launcher started in this directory answers (looked for {}/{}*.sock); \
         start one here or give --control-socket",
        default_dir().display(),
        name_prefix_here().unwrap_or_default()
    )
}

/// `evserve status`: prints the report of the launcher behind the control socket, or of
/// each launcher started in the current directory.
pub fn status_command(args: &StatusArgs) -> i32 {
    let request = Request::Status { json: args.json };
    if let Some(path) = &args.target.control_socket {
        return match ask(path, &request) {
            Ok(Ok(report)) => {
                print_text(&report);
                0
            }
            Ok(Err(e)) | Err(e) => {
                crate::log::fatal(&e);
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
        .filter_map(|path| match ask(&path, &request) {
            Ok(Ok(report)) => Some((path, report)),
            _ => None,
        })
        .collect();
    match reports.as_slice() {
        [] => {
            crate::log::fatal(&no_launcher_here());
            1
        }
        [(_, report)] => {
            print_text(report);
            0
        }
        several if args.json => {
            for (_, report) in several {
                print_text(report);
            }
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

/// Sends `request` to the launcher on control socket `path`; its answer, or why there is
/// none (`Err`).
fn ask(path: &Path, request: &Request) -> Result<Reply, String> {
    let mut stream = UnixStream::connect(path).map_err(|e| {
        format!(
            "no launcher answers on {} ({e}); is the launcher running?",
            path.display()
        )
    })?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let sent = stream
        .write_all(format!("{}\n", request.encode()).as_bytes())
        .and_then(|()| stream.shutdown(std::net::Shutdown::Write));
    let mut text = String::new();
    let read = stream.read_to_string(&mut text);
    if let (Err(e), true) = (read.and(sent), text.is_empty()) {
        return Err(format!("reading from {}: {e}", path.display()));
    }
    Ok(parse_reply(text))
}

/// `ok\nTEXT` or `error\nTEXT`; anything else is the report of an older launcher.
fn parse_reply(text: String) -> Reply {
    match text.split_once('\n') {
        Some(("ok", rest)) => Ok(rest.to_string()),
        Some(("error", rest)) => Err(rest.trim_end().to_string()),
        _ if text.is_empty() => Err("the launcher closed the connection without an answer".into()),
        _ => Ok(text),
    }
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
        // The refused second bind's probe connection came first.
        let pending = server.accept().pop().unwrap();
        assert_eq!(pending.request, Ok(Request::Status { json: false }));
        pending.answer(Ok("report\n".to_string()));
        let mut text = String::new();
        client.read_to_string(&mut text).unwrap();
        assert_eq!(
            text, "report\n",
            "a client that sends nothing gets the bare report"
        );
        drop(server);
        assert!(!path.exists());
    }

    #[test]
    fn a_request_gets_an_answer_with_its_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        let server = ControlServer::bind(Some(&path), "a").unwrap();
        let client = std::thread::spawn({
            let path = path.clone();
            move || ask(&path, &Request::Restart { instance: 7 })
        });
        let pending = loop {
            if let Some(p) = server.accept().pop() {
                break p;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(pending.request, Ok(Request::Restart { instance: 7 }));
        pending.answer(Err("no instance 7".into()));
        assert_eq!(client.join().unwrap(), Ok(Err("no instance 7".into())));
    }

    #[test]
    fn requests_round_trip_and_bad_ones_are_refused() {
        for request in [
            Request::Status { json: false },
            Request::Status { json: true },
            Request::Reload,
            Request::Restart { instance: 3 },
            Request::Signal {
                signal: 10,
                instance: Some(2),
            },
            Request::Signal {
                signal: 1,
                instance: None,
            },
            Request::Stop,
        ] {
            assert_eq!(Request::parse(&request.encode()), Ok(request));
        }
        assert_eq!(Request::parse(""), Ok(Request::Status { json: false }));
        assert!(Request::parse("restart x").is_err());
        assert!(Request::parse("signal 1 2 3").is_err());
        assert!(Request::parse("dance").is_err());
    }

    #[test]
    fn signals_are_named_or_numbered() {
        assert_eq!(parse_signal("HUP"), Ok(1));
        assert_eq!(parse_signal("sigterm"), Ok(15));
        assert_eq!(parse_signal("SIGUSR1"), Ok(signal_hook::consts::SIGUSR1));
        assert_eq!(parse_signal("9"), Ok(9));
        for bad in ["", "0", "-1", "99", "SIGNOPE", "HUPX"] {
            assert!(parse_signal(bad).is_err(), "{bad}");
        }
        assert_eq!(signal_name(15), "SIGTERM");
    }

    #[test]
    fn replies_of_older_launchers_read_as_reports() {
        assert_eq!(parse_reply("ok\ndone\n".into()), Ok("done\n".into()));
        assert_eq!(parse_reply("error\nno\n".into()), Err("no".into()));
        assert_eq!(
            parse_reply("evserve launcher pid 1\n".into()),
            Ok("evserve launcher pid 1\n".into())
        );
        assert!(parse_reply(String::new()).is_err());
    }
}
