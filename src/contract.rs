//! The launcher<->instance contract, used by both sides: where an instance finds its
//! sockets, the environment that marks it as the launcher's, the messages it sends on its
//! control socket, how often, and what its exit code means.
//!
//! Only constants, the message codec and the exit-code enum live here: no IO, no policy.

use std::time::Duration;

use crate::metrics::Snapshot;

/// The fd the instance finds its listening socket on (systemd's first `LISTEN_FDS` fd).
pub const LISTEN_FD: i32 = 3;
/// The fd of the instance's end of its control socket (a datagram socketpair).
pub const CONTROL_FD: i32 = 4;
/// How many fds the launcher passes, from `LISTEN_FD` on.
pub const PASSED_FDS: usize = 2;
/// The index of the control socket among the passed fds (for `listenfd`).
pub const CONTROL_FD_INDEX: usize = (CONTROL_FD - LISTEN_FD) as usize;

/// Set to `1` by the launcher in the environment of the instances it starts.
pub const ENV_INSTANCE: &str = "EVSERVE_INSTANCE";
/// The launcher's pid, so a process it started can tell whether it has already gone.
pub const ENV_LAUNCHER_PID: &str = "EVSERVE_LAUNCHER_PID";
/// The instance number (slot) the launcher started the process for.
pub const ENV_INSTANCE_ID: &str = "EVSERVE_INSTANCE_ID";
/// systemd's socket-activation variables: the launcher sets the first, removes the others.
pub const ENV_LISTEN_FDS: &str = "LISTEN_FDS";
pub const ENV_LISTEN_PID: &str = "LISTEN_PID";
pub const ENV_LISTEN_FDNAMES: &str = "LISTEN_FDNAMES";

/// An instance sends a heartbeat at least this often while its event loop turns (it never
/// sleeps longer), and before a request runs if the last one is this old: a request stuck
/// in the app started at most this long after the last heartbeat. The launcher kills an
/// instance only `--timeout` plus this interval after its last heartbeat, which is never
/// before the stuck request has run `--timeout`.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);

/// Whether this process was started by the launcher as one of its instances.
pub fn under_launcher() -> bool {
    std::env::var_os(ENV_INSTANCE).is_some_and(|v| v == "1")
}

/// The launcher's pid, as it gave it to this process.
pub fn launcher_pid() -> Option<u32> {
    std::env::var(ENV_LAUNCHER_PID).ok()?.parse().ok()
}

/// The instance number the launcher gave this process, if it did.
pub fn instance_id() -> Option<usize> {
    std::env::var(ENV_INSTANCE_ID).ok()?.parse().ok()
}

/// A message from an instance on its control socket, one per datagram.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message {
    /// The app is loaded and the instance accepts connections.
    Ready,
    /// The event loop turns: requests served so far, connections open now, and the share of
    /// the time since the previous heartbeat the loop spent working rather than waiting in
    /// poll(), in thousandths (1000: it never waited: every moment had a request to serve).
    Heartbeat {
        requests: u64,
        connections: u64,
        busy_permille: u16,
    },
    /// The instance's metrics counters (with `--metrics`), sent beside the heartbeat.
    Stats(Snapshot),
}

/// The most `busy_permille` says: busy the whole time.
pub const ALL_BUSY: u16 = 1000;

impl Message {
    /// `ready` or `hb <requests_served> <open_connections> <busy_permille>`.
    pub fn encode(&self) -> String {
        match self {
            Message::Ready => "ready".into(),
            Message::Heartbeat {
                requests,
                connections,
                busy_permille,
            } => format!("hb {requests} {connections} {busy_permille}"),
            Message::Stats(snapshot) => format!("stats {}", snapshot.encode()),
        }
    }

    /// Parses one datagram; `None` for anything else.
    pub fn parse(datagram: &[u8]) -> Option<Message> {
        let text = std::str::from_utf8(datagram).ok()?.trim();
        let mut words = text.split_ascii_whitespace();
        let message = match words.next()? {
            "ready" => Message::Ready,
            "hb" => Message::Heartbeat {
                requests: words.next()?.parse().ok()?,
                connections: words.next()?.parse().ok()?,
                busy_permille: words.next()?.parse().ok().filter(|b| *b <= ALL_BUSY)?,
            },
            "stats" => return Snapshot::decode(words).map(Message::Stats),
            _ => return None,
        };
        words.next().is_none().then_some(message)
    }
}

/// The largest datagram an instance sends: a `src` message holds whole paths up to this
/// size (a path is at most 4096 bytes on Linux).
pub const MAX_DATAGRAM: usize = 8192;
/// The first line of a datagram that lists source files.
const SOURCE_FILES_TAG: &str = "src\n";

/// The app's source files an instance imported (for `--reload` to watch), as datagrams of
/// at most `MAX_DATAGRAM` bytes: `src`, then one absolute path per line. Paths that hold a
/// newline cannot be listed and are left out.
pub fn encode_source_files(paths: &[String]) -> Vec<String> {
    let mut datagrams = Vec::new();
    let mut current = String::from(SOURCE_FILES_TAG);
    for path in paths.iter().filter(|p| !p.contains('\n') && !p.is_empty()) {
        if current.len() + path.len() + 1 > MAX_DATAGRAM && current.len() > SOURCE_FILES_TAG.len() {
            datagrams.push(std::mem::replace(
                &mut current,
                String::from(SOURCE_FILES_TAG),
            ));
        }
        if SOURCE_FILES_TAG.len() + path.len() < MAX_DATAGRAM {
            current.push_str(path);
            current.push('\n');
        }
    }
    if current.len() > SOURCE_FILES_TAG.len() {
        datagrams.push(current);
    }
    datagrams
}

/// The paths of a `src` datagram; `None` for any other datagram.
pub fn parse_source_files(datagram: &[u8]) -> Option<Vec<std::path::PathBuf>> {
    let text = std::str::from_utf8(datagram).ok()?;
    let list = text.strip_prefix(SOURCE_FILES_TAG)?;
    Some(
        list.lines()
            .filter(|line| line.starts_with('/'))
            .map(std::path::PathBuf::from)
            .collect(),
    )
}

/// What an instance's exit code tells the launcher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    /// Stopped by a signal after a graceful drain.
    Graceful = 0,
    /// Could not start (a port in use, a bad flag value, ...) or was forced to stop
    /// (a second stop signal, the graceful timeout) with work unfinished.
    Failure = 1,
    /// The app (or its virtualenv) could not be loaded: restarting it cannot help.
    AppLoadFailure = 2,
}

impl ExitCode {
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The meaning of an exit code; `None` for codes the contract does not define.
    pub fn from_code(code: i32) -> Option<ExitCode> {
        [
            ExitCode::Graceful,
            ExitCode::Failure,
            ExitCode::AppLoadFailure,
        ]
        .into_iter()
        .find(|c| c.code() == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        for m in [
            Message::Ready,
            Message::Heartbeat {
                requests: 12,
                connections: 3,
                busy_permille: 0,
            },
            Message::Heartbeat {
                requests: u64::MAX,
                connections: 0,
                busy_permille: ALL_BUSY,
            },
            Message::Stats(Snapshot {
                accepted: 7,
                ..Snapshot::default()
            }),
        ] {
            assert_eq!(Message::parse(m.encode().as_bytes()), Some(m));
        }
        assert_eq!(Message::parse(b"ready\n"), Some(Message::Ready));
    }

    #[test]
    fn malformed_messages_are_refused() {
        for bad in [
            &b"nonsense"[..],
            b"",
            b"hb",
            b"hb 1",
            b"hb x 2",
            b"hb 1 2",
            b"hb 1 2 1001",
            b"hb 1 2 3 4",
            b"ready now",
            b"stats 1 2",
            &[0xff, 0xfe],
        ] {
            assert_eq!(Message::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn source_file_lists_round_trip_in_bounded_datagrams() {
        let long = format!("/{}", "a".repeat(3000));
        let paths: Vec<String> = vec![
            "/app/main.py".into(),
            "/x\ny.py".into(),
            long.clone(),
            long.clone(),
            long.clone(),
        ];
        let datagrams = encode_source_files(&paths);
        assert!(datagrams.iter().all(|d| d.len() <= MAX_DATAGRAM));
        assert!(datagrams.len() >= 2);
        let back: Vec<std::path::PathBuf> = datagrams
            .iter()
            .flat_map(|d| parse_source_files(d.as_bytes()).unwrap())
            .collect();
        assert_eq!(back.len(), 4, "the path with a newline is left out");
        assert_eq!(back[0], std::path::Path::new("/app/main.py"));
        assert_eq!(Message::parse(datagrams[0].as_bytes()), None);
        assert_eq!(parse_source_files(b"hb 1 2"), None);
        assert!(encode_source_files(&[]).is_empty());
    }

    #[test]
    fn exit_codes_are_fixed() {
        assert_eq!(ExitCode::Graceful.code(), 0);
        assert_eq!(ExitCode::Failure.code(), 1);
        assert_eq!(ExitCode::AppLoadFailure.code(), 2);
        assert_eq!(ExitCode::from_code(2), Some(ExitCode::AppLoadFailure));
        assert_eq!(ExitCode::from_code(3), None);
    }

    #[test]
    fn the_control_fd_follows_the_listen_fd() {
        assert_eq!(LISTEN_FD + CONTROL_FD_INDEX as i32, CONTROL_FD);
        const { assert!(CONTROL_FD_INDEX < PASSED_FDS) };
    }
}
