//! nginx in front of evserve: the configuration text, and `evserve nginx-config`.
//!
//! `render` is a pure function from an [`NginxConfig`] to the text of a complete nginx.conf,
//! filled in from the template in `deploy/nginx/` (embedded at build time). This module never
//! starts nginx and never touches the filesystem except to write a file it is asked to write.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{
    parse_host_port, parse_real_ip_from, parse_size, parse_static_mounts, parse_tls,
    NginxConfigArgs,
};
use crate::config::{StaticMount, TlsSetup};

mod template;

const MAIN_TEMPLATE: &str = include_str!("../../deploy/nginx/nginx.conf.in");
const TLS_TEMPLATE: &str = include_str!("../../deploy/nginx/tls.conf.in");
const REDIRECT_TEMPLATE: &str = include_str!("../../deploy/nginx/redirect.conf.in");
const STATIC_TEMPLATE: &str = include_str!("../../deploy/nginx/static.conf.in");
const REAL_IP_TEMPLATE: &str = include_str!("../../deploy/nginx/real_ip.conf.in");
const TYPES_TEMPLATE: &str = include_str!("../../deploy/nginx/types.conf.in");

/// Failed attempts after which nginx leaves an instance alone for `FAIL_TIMEOUT`; short, so a
/// restarted instance (back within a second) or a returning host gets traffic again soon.
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
    /// The host `--drain` names: the TCP host, or the socket path.
    fn host(&self) -> String {
        match self {
            Backend::Tcp { host, .. } => host.clone(),
            Backend::Unix(path) => format!("unix:{}", path.display()),
        }
    }
}

/// One `server` line of the upstream block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamServer {
    pub addr: Backend,
    /// nginx's `weight` (1 unless `@WEIGHT` was given).
    pub weight: u32,
    /// `--backup`: used only while every other server is unavailable.
    pub backup: bool,
    /// `--drain`: marked `down`, sent no new request.
    pub down: bool,
}

impl UpstreamServer {
    /// A server of weight 1, neither backup nor drained.
    pub fn plain(addr: Backend) -> UpstreamServer {
        UpstreamServer {
            addr,
            weight: 1,
            backup: false,
            down: false,
        }
    }

    fn line(&self) -> String {
        let mut line = match &self.addr {
            Backend::Tcp { host, port } => format!("server {host}:{port}"),
            Backend::Unix(path) => format!("server unix:{}", path.display()),
        };
        if self.weight != 1 {
            let _ = write!(line, " weight={}", self.weight);
        }
        let _ = write!(line, " max_fails={MAX_FAILS} fail_timeout={FAIL_TIMEOUT}");
        if self.backup {
            line.push_str(" backup");
        }
        if self.down {
            line.push_str(" down");
        }
        line.push(';');
        line
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

/// Everything the generated configuration depends on. Built by [`build`] only, which
/// checks what nginx could not take.
#[derive(Clone, Debug)]
pub struct NginxConfig {
    /// The client-facing address: HTTPS when `tls` is set.
    pub listen: SocketAddr,
    pub tls: Option<TlsSetup>,
    /// `--real-ip-from`: proxies in front of nginx, as IP addresses or CIDR blocks.
    pub real_ip_from: Vec<String>,
    /// `--static`, longest prefix first.
    pub static_mounts: Vec<StaticMount>,
    pub servers: Vec<UpstreamServer>,
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

/// The one way to make an [`NginxConfig`], for the launcher and `evserve nginx-config`
/// alike: refuses what would give a broken or unsafe configuration.
pub fn build(config: NginxConfig) -> Result<NginxConfig, String> {
    if config.servers.iter().all(|s| s.down) {
        return Err("every backend is drained: nginx would have no instance to send to".into());
    }
    if !config.servers.iter().any(|s| !s.backup) {
        return Err("give at least one --backend besides the --backup ones".into());
    }
    for mount in &config.static_mounts {
        check_path("--static", &mount.dir)?;
    }
    if let Some(tls) = &config.tls {
        check_path("--tls-cert", &tls.cert)?;
        check_path("--tls-key", &tls.key)?;
    }
    if let RunDir::Absolute(dir) = &config.run_dir {
        check_path("the run directory", dir)?;
        if dir
            .to_string_lossy()
            .contains(|c: char| c.is_whitespace() || "\"';{}#\\".contains(c))
        {
            return Err(format!(
                "{}: nginx's run directory (next to --nginx-conf) cannot hold spaces or any of \"';{{}}#\\",
                dir.display()
            ));
        }
    }
    Ok(config)
}

/// A path nginx can take inside a quoted string: UTF-8, no control characters, and no `$`
/// (nginx would read a variable there).
fn check_path(flag: &str, path: &Path) -> Result<(), String> {
    let text = path
        .to_str()
        .ok_or_else(|| format!("{flag} {}: nginx needs a UTF-8 path", path.display()))?;
    if text.contains(|c: char| c.is_control() || c == '$') {
        return Err(format!(
            "{flag} {}: nginx cannot take a path with $ or control characters",
            path.display()
        ));
    }
    Ok(())
}

/// `text` as an nginx double-quoted string.
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
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

/// The `location` blocks of the static mounts (empty without any).
fn static_locations(mounts: &[StaticMount]) -> String {
    let mut out = String::new();
    for mount in mounts {
        let dir = mount.dir.display().to_string();
        let values = [
            ("prefix", quoted(&mount.url_prefix)),
            ("prefix_text", mount.url_prefix.clone()),
            ("dir_text", dir.clone()),
            ("dir", quoted(&format!("{}/", dir.trim_end_matches('/')))),
        ];
        out.push_str(template::fill(STATIC_TEMPLATE, &values).trim_end_matches('\n'));
    }
    out
}

/// The realip directives for `--real-ip-from` (empty without it).
fn real_ip(proxies: &[String]) -> String {
    if proxies.is_empty() {
        return String::new();
    }
    let set_from: String = proxies
        .iter()
        .map(|p| format!("        set_real_ip_from {p};\n"))
        .collect();
    template::fill(REAL_IP_TEMPLATE, &[("set_real_ip_from", set_from)])
}

/// The TLS directives of the main server block and the redirect server (empty without TLS).
fn tls_parts(listen: SocketAddr, tls: Option<&TlsSetup>) -> (String, String) {
    let Some(tls) = tls else {
        return (String::new(), String::new());
    };
    let settings = template::fill(
        TLS_TEMPLATE,
        &[
            ("cert", quoted(&tls.cert.display().to_string())),
            ("key", quoted(&tls.key.display().to_string())),
        ],
    );
    let redirect = match tls.redirect_from {
        Some(from) => template::fill(
            REDIRECT_TEMPLATE,
            &[
                ("redirect_listen", from.to_string()),
                (
                    "https_port",
                    match listen.port() {
                        443 => String::new(),
                        port => format!(":{port}"),
                    },
                ),
            ],
        )
        .trim_end_matches('\n')
        .to_string(),
        None => String::new(),
    };
    (settings, redirect)
}

/// The complete nginx.conf for `config`.
pub fn render(config: &NginxConfig) -> String {
    let mut servers = String::new();
    for server in &config.servers {
        let _ = writeln!(servers, "        {}", server.line());
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
    let (tls, redirect_server) = tls_parts(config.listen, config.tls.as_ref());
    let types = if config.static_mounts.is_empty() {
        String::new()
    } else {
        TYPES_TEMPLATE.to_string()
    };
    let values = [
        ("version", env!("CARGO_PKG_VERSION").to_string()),
        ("usage", usage),
        ("daemon", daemon.to_string()),
        ("run_dir", run_dir),
        ("types", types),
        ("max_fails", MAX_FAILS.to_string()),
        ("fail_timeout", FAIL_TIMEOUT.to_string()),
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
        (
            "listen_options",
            if config.tls.is_some() {
                " ssl http2"
            } else {
                ""
            }
            .to_string(),
        ),
        ("tls", tls),
        ("real_ip", real_ip(&config.real_ip_from)),
        ("max_body_size", nginx_size(config.max_body_size)),
        (
            "forwarded_proto",
            if config.tls.is_some() {
                "https"
            } else {
                "$scheme"
            }
            .to_string(),
        ),
        ("next_upstream_tries", NEXT_UPSTREAM_TRIES.to_string()),
        ("read_timeout", config.read_timeout_secs.max(1).to_string()),
        ("static_locations", static_locations(&config.static_mounts)),
        ("redirect_server", redirect_server),
    ];
    template::fill(MAIN_TEMPLATE, &values)
}

/// Parses one `--backend` or `--backup`: `HOST:PORT`, `HOST:FIRST-LAST` or `unix:PATH`,
/// each optionally followed by `@WEIGHT`.
pub fn parse_backend(text: &str) -> Result<Vec<UpstreamServer>, String> {
    let (addr, weight) = match text.rsplit_once('@') {
        Some((addr, weight)) => {
            let weight: u32 = weight
                .parse()
                .ok()
                .filter(|w| (1..=1000).contains(w))
                .ok_or_else(|| format!("'{text}': @WEIGHT must be a number from 1 to 1000"))?;
            (addr, weight)
        }
        None => (text, 1),
    };
    Ok(parse_backend_addr(addr)
        .map_err(|e| format!("'{text}' {e}"))?
        .into_iter()
        .map(|addr| UpstreamServer {
            weight,
            ..UpstreamServer::plain(addr)
        })
        .collect())
}

fn parse_backend_addr(text: &str) -> Result<Vec<Backend>, String> {
    if let Some(path) = text.strip_prefix("unix:") {
        if path.is_empty() || path.contains(|c: char| c.is_whitespace() || c == ';' || c == '$') {
            return Err("needs a unix: path without spaces".into());
        }
        return Ok(vec![Backend::Unix(PathBuf::from(path))]);
    }
    let bad =
        || "should be HOST:PORT, HOST:FIRST-LAST or unix:PATH, then @WEIGHT if any".to_string();
    let (host, ports) = text.rsplit_once(':').ok_or_else(bad)?;
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._:[]".contains(c));
    if !host_ok {
        return Err(bad());
    }
    let (first, last) = match ports.split_once('-') {
        Some(_) => crate::cli::parse_port_range(ports)?,
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

/// The upstream servers of `evserve nginx-config`: `--backend`, `--backup`, then `--drain`.
fn servers_from_args(args: &NginxConfigArgs) -> Result<Vec<UpstreamServer>, String> {
    let mut servers: Vec<UpstreamServer> = Vec::new();
    let given = args.backends.iter().map(|t| ("--backend", t, false));
    for (flag, text, backup) in given.chain(args.backups.iter().map(|t| ("--backup", t, true))) {
        for server in parse_backend(text).map_err(|e| format!("{flag} {e}"))? {
            if servers.iter().any(|s| s.addr == server.addr) {
                return Err(format!("{flag} '{text}' repeats an instance already given"));
            }
            servers.push(UpstreamServer { backup, ..server });
        }
    }
    for host in &args.drains {
        let mut found = false;
        let unbracketed = |h: &str| h.trim_start_matches('[').trim_end_matches(']').to_string();
        let wanted = unbracketed(host);
        for server in servers
            .iter_mut()
            .filter(|s| unbracketed(&s.addr.host()) == wanted)
        {
            server.down = true;
            found = true;
        }
        if !found {
            return Err(format!(
                "--drain {host}: no --backend or --backup is on that host"
            ));
        }
    }
    Ok(servers)
}

/// Builds the configuration `evserve nginx-config` prints.
pub fn config_from_args(args: &NginxConfigArgs) -> Result<NginxConfig, String> {
    let listen = parse_host_port(&args.listen).map_err(|e| format!("--listen: {e}"))?;
    let max_body_size =
        parse_size(&args.max_body_size).map_err(|e| format!("--max-body-size: {e}"))?;
    if args.keep_alive < 2 {
        return Err("--keep-alive must be at least 2 seconds".into());
    }
    let run_dir = match &args.run_dir {
        Some(dir) if dir.is_absolute() => RunDir::Absolute(dir.clone()),
        Some(dir) => {
            return Err(format!(
                "--run-dir {}: give an absolute directory",
                dir.display()
            ))
        }
        None => RunDir::UnderPrefix,
    };
    build(NginxConfig {
        listen,
        tls: parse_tls(&args.front, listen)?,
        real_ip_from: parse_real_ip_from(&args.front.real_ip_from)?,
        static_mounts: parse_static_mounts(&args.static_mounts)?,
        servers: servers_from_args(args)?,
        max_body_size,
        backend_keep_alive: Duration::from_secs(args.keep_alive),
        upstream_keepalive: args.upstream_keepalive.max(1),
        read_timeout_secs: 60,
        run_dir,
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
pub(crate) mod tests;
