//! nginx in front of evserve: the configuration text, and `evserve nginx-config`.
//!
//! `render` is a pure function from an [`NginxConfig`] to the text of a complete nginx.conf,
//! filled in from the template in `deploy/nginx/` (embedded at build time). This module never
//! starts nginx and never touches the filesystem except to write a file it is asked to write.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{parse_host_port, parse_size, NginxConfigArgs};

mod template;

const MAIN_TEMPLATE: &str = include_str!("../../deploy/nginx/nginx.conf.in");

/// Failed attempts after which nginx leaves an instance alone for `FAIL_TIMEOUT`; short, so a
/// restarted instance (back within a second) gets traffic again soon.
const MAX_FAILS: u32 = 2;
const FAIL_TIMEOUT: &str = "2s";
/// Instances one request may be tried on.
const NEXT_UPSTREAM_TRIES: u32 = 3;

/// One instance address in the upstream block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `host:port`; the host may be a name nginx resolves when it starts.
    Tcp {
        host: String,
        port: u16,
    },
    Unix(PathBuf),
}

impl Backend {
    fn server_line(&self) -> String {
        match self {
            Backend::Tcp { host, port } => {
                format!("server {host}:{port} max_fails={MAX_FAILS} fail_timeout={FAIL_TIMEOUT};")
            }
            Backend::Unix(path) => format!(
                "server unix:{} max_fails={MAX_FAILS} fail_timeout={FAIL_TIMEOUT};",
                path.display()
            ),
        }
    }
}

/// Where nginx keeps its pid file, logs and temporary files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunDir {
    /// An absolute directory (the launcher's: next to the written config).
    Absolute(PathBuf),
    /// `run/` under nginx's prefix (`nginx -p DIR`), for configs printed to stdout.
    UnderPrefix,
}

/// Everything the generated configuration depends on.
#[derive(Clone, Debug)]
pub struct NginxConfig {
    pub listen: SocketAddr,
    pub backends: Vec<Backend>,
    /// evserve's `--max-body-size`, in bytes.
    pub max_body_size: u64,
    /// evserve's `--keep-alive`; nginx's idle upstream timeout is kept below it.
    pub backend_keep_alive: Duration,
    /// Idle upstream connections per nginx worker.
    pub upstream_keepalive: u32,
    /// Seconds nginx waits on an instance's response.
    pub read_timeout_secs: u64,
    pub run_dir: RunDir,
    /// `daemon off;`: nginx stays in the foreground as the launcher's child.
    pub foreground: bool,
}

/// nginx's idle timeout for upstream connections: 15 s below evserve's keep-alive when that
/// leaves at least 15 s, else two thirds of it (never equal to or above it).
pub fn upstream_idle_timeout(backend_keep_alive: Duration) -> Duration {
    let secs = backend_keep_alive.as_secs();
    if secs >= 30 {
        Duration::from_secs(secs - 15)
    } else {
        backend_keep_alive * 2 / 3
    }
}

/// A duration in nginx syntax (`60s`, `666ms`).
fn nginx_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis().max(1))
    }
}

/// A size in nginx syntax, with the largest unit that divides it exactly.
fn nginx_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "g"), (1 << 20, "m"), (1 << 10, "k")];
    for (unit, suffix) in UNITS {
        if bytes >= unit && bytes % unit == 0 {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

/// The complete nginx.conf for `config`.
pub fn render(config: &NginxConfig) -> String {
    let mut servers = String::new();
    for backend in &config.backends {
        let _ = writeln!(servers, "        {}", backend.server_line());
    }
    let servers = servers.trim_end_matches('\n').to_string();
    let (run_dir, usage) = match &config.run_dir {
        RunDir::Absolute(dir) => (
            dir.display().to_string(),
            format!(
                "Test with: nginx -t -e {}/error.log -c THIS_FILE",
                dir.display()
            ),
        ),
        RunDir::UnderPrefix => (
            "run".to_string(),
            "Paths are relative to nginx's prefix: mkdir -p DIR/run, then nginx -p DIR -e run/error.log -c THIS_FILE"
                .to_string(),
        ),
    };
    let daemon = if config.foreground {
        "daemon off;\n"
    } else {
        ""
    };
    let values = [
        ("version", env!("CARGO_PKG_VERSION").to_string()),
        ("usage", usage),
        ("daemon", daemon.to_string()),
        ("run_dir", run_dir),
        ("servers", servers),
        ("keepalive", config.upstream_keepalive.max(1).to_string()),
        (
            "backend_keep_alive",
            config.backend_keep_alive.as_secs().to_string(),
        ),
        (
            "upstream_idle_timeout",
            nginx_duration(upstream_idle_timeout(config.backend_keep_alive)),
        ),
        ("listen", config.listen.to_string()),
        ("max_body_size", nginx_size(config.max_body_size)),
        ("next_upstream_tries", NEXT_UPSTREAM_TRIES.to_string()),
        ("read_timeout", config.read_timeout_secs.max(1).to_string()),
    ];
    template::fill(MAIN_TEMPLATE, &values)
}

/// Parses one `--backend`: `HOST:PORT`, `HOST:FIRST-LAST` or `unix:PATH`.
pub fn parse_backend(text: &str) -> Result<Vec<Backend>, String> {
    if let Some(path) = text.strip_prefix("unix:") {
        if path.is_empty() || path.contains(|c: char| c.is_whitespace() || c == ';') {
            return Err(format!(
                "--backend '{text}': unix: needs a path without spaces"
            ));
        }
        return Ok(vec![Backend::Unix(PathBuf::from(path))]);
    }
    let bad = || format!("--backend '{text}' should be HOST:PORT, HOST:FIRST-LAST or unix:PATH");
    let (host, ports) = text.rsplit_once(':').ok_or_else(bad)?;
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._:[]".contains(c));
    if !host_ok {
        return Err(bad());
    }
    let (first, last) = match ports.split_once('-') {
        Some(_) => crate::cli::parse_port_range(ports).map_err(|e| format!("--backend: {e}"))?,
        None => {
            let port: u16 = ports.parse().map_err(|_| bad())?;
            if port == 0 {
                return Err(bad());
            }
            (port, port)
        }
    };
    Ok((first..=last)
        .map(|port| Backend::Tcp {
            host: host.to_string(),
            port,
        })
        .collect())
}

/// Builds the configuration `evserve nginx-config` prints.
pub fn config_from_args(args: &NginxConfigArgs) -> Result<NginxConfig, String> {
    let listen = parse_host_port(&args.listen).map_err(|e| format!("--listen: {e}"))?;
    let mut backends = Vec::new();
    for text in &args.backends {
        for backend in parse_backend(text)? {
            if backends.contains(&backend) {
                return Err(format!(
                    "--backend '{text}' repeats an instance already given"
                ));
            }
            backends.push(backend);
        }
    }
    if backends.is_empty() {
        return Err("give at least one --backend".into());
    }
    let max_body_size =
        parse_size(&args.max_body_size).map_err(|e| format!("--max-body-size: {e}"))?;
    if args.keep_alive < 2 {
        return Err("--keep-alive must be at least 2 seconds".into());
    }
    Ok(NginxConfig {
        listen,
        backends,
        max_body_size,
        backend_keep_alive: Duration::from_secs(args.keep_alive),
        upstream_keepalive: args.upstream_keepalive.max(1),
        read_timeout_secs: 60,
        run_dir: RunDir::UnderPrefix,
        foreground: false,
    })
}

/// `evserve nginx-config`: prints a configuration for instances on one or more hosts.
pub fn config_command(args: &NginxConfigArgs) -> i32 {
    match config_from_args(args) {
        Ok(config) => {
            print!("{}", render(&config));
            0
        }
        Err(message) => {
            crate::log::fatal(&message);
            2
        }
    }
}

/// The directory next to `conf_path` that holds nginx's pid file, logs and temporary files:
/// `/x/nginx.conf` gives `/x/nginx.conf.run`.
pub fn run_dir_for(conf_path: &Path) -> PathBuf {
    let mut name = conf_path.file_name().unwrap_or_default().to_os_string();
    name.push(".run");
    conf_path.with_file_name(name)
}

/// Writes `text` to `conf_path` (replacing it whole) and creates the run directory.
pub fn write_config(conf_path: &Path, run_dir: &Path, text: &str) -> Result<(), String> {
    std::fs::create_dir_all(run_dir)
        .map_err(|e| format!("cannot create {}: {e}", run_dir.display()))?;
    let tmp = run_dir.join("nginx.conf.new");
    std::fs::write(&tmp, text).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, conf_path)
        .map_err(|e| format!("cannot write {}: {e}", conf_path.display()))
}

/// The nginx binary: on PATH, or in the sbin directories a non-root PATH often lacks.
pub fn find_nginx() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("nginx"))
        .find(|candidate| candidate.is_file())
}

/// The one line said when `--nginx` is given and nginx is not installed.
pub const NOT_INSTALLED: &str =
    "--nginx: nginx is not installed (not on PATH nor in /usr/sbin); install it with: apt-get install nginx";

#[cfg(test)]
mod tests;
