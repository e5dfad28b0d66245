//! Command-line flags and their validation into typed configuration.
//!
//! This module only parses and checks: it never opens sockets, starts Python or
//! spawns processes. Every bad value is reported as one line naming the flag.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::access_format::{AccessStyle, Plan};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::{
    AppSource, AppSpec, BindAddr, Elastic, InstanceConfig, LauncherConfig, Limits, Mode,
    PythonSetup, ReloadWatch, StaticMount, Timeouts, TlsSetup, TrustedProxies,
};

#[derive(Parser, Debug)]
#[command(
    name = "evserve",
    version,
    about = "Serve a WSGI app from single-threaded event-loop instances, one per core, behind a load balancer.",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub serve: ServeArgs,
}

impl Cli {
    /// Parses a command line (`args` without the program name). On a usage error,
    /// `--help` or `--version` clap's text is printed and the exit code comes back, for
    /// the caller to return: nothing here exits the process.
    pub fn parse_from_args(args: Vec<OsString>) -> Result<Cli, i32> {
        Cli::try_parse_from(std::iter::once(OsString::from("evserve")).chain(args)).map_err(|e| {
            let _ = e.print();
            e.exit_code()
        })
    }
}

/// Parses the flags of a server whose app is given as an object, not as APP. A bad
/// flag comes back as the one line the command line would print, without "error: ".
pub fn parse_object_flags(args: Vec<OsString>) -> Result<ServeArgs, String> {
    let argv = std::iter::once(OsString::from("evserve")).chain(args);
    let matches = Cli::command()
        .mut_arg("app", |arg| arg.required(false))
        .try_get_matches_from(argv)
        .and_then(|m| Cli::from_arg_matches(&m))
        .map_err(|e| first_line(&e.to_string()))?;
    if matches.command.is_some() {
        return Err("a subcommand is not a server option".into());
    }
    if let Some(app) = matches.serve.app {
        return Err(format!(
            "unexpected APP '{app}': the app is the object being served"
        ));
    }
    Ok(matches.serve)
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or(text).trim();
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

/// One server flag as the Python API sees it.
pub struct FlagInfo {
    /// The long name, without the dashes (`max-body-size`).
    pub name: String,
    /// False for switches such as `--nginx`.
    pub takes_value: bool,
    /// True for flags that may be given more than once (`--pythonpath`).
    pub repeatable: bool,
}

/// Every flag of the server (not of the subcommands), without --help and --version.
pub fn server_flags() -> Vec<FlagInfo> {
    Cli::command()
        .get_arguments()
        .filter(|arg| !matches!(arg.get_id().as_str(), "help" | "version"))
        .filter_map(|arg| {
            Some(FlagInfo {
                name: arg.get_long()?.to_string(),
                takes_value: arg.get_action().takes_values(),
                repeatable: matches!(arg.get_action(), clap::ArgAction::Append),
            })
        })
        .collect()
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the state of each instance of a running launcher.
    Status(StatusArgs),
    /// Print an nginx configuration for instances on one or more hosts.
    NginxConfig(Box<NginxConfigArgs>),
    /// Rolling reload of a running launcher's instances (as SIGHUP).
    Reload(ControlArgs),
    /// Replace one instance of a running launcher: a new process takes over once ready.
    Restart(RestartArgs),
    /// Send a signal to a running launcher, or to one of its instances.
    Signal(SignalArgs),
    /// Stop a running launcher gracefully (as SIGTERM): in-flight requests finish.
    Stop(ControlArgs),
    /// Set a running launcher's instance count: N, +N or -N (within --workers MIN:MAX).
    Scale(ScaleArgs),
}

/// Which launcher a console subcommand talks to.
#[derive(Args, Debug, Clone, Default)]
pub struct ControlArgs {
    /// The launcher's control socket (default: the launcher started in this directory).
    #[arg(long, value_name = "PATH")]
    pub control_socket: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: ControlArgs,
    /// Print the table as JSON (one object per launcher, one per line).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ScaleArgs {
    #[command(flatten)]
    pub target: ControlArgs,
    /// The instance count (4), or a change of it (+1, -1).
    #[arg(value_name = "N|+N|-N", allow_hyphen_values = true)]
    pub count: String,
}

#[derive(Args, Debug)]
pub struct RestartArgs {
    #[command(flatten)]
    pub target: ControlArgs,
    /// The instance number, as `evserve status` shows it.
    #[arg(value_name = "INSTANCE")]
    pub instance: usize,
}

#[derive(Args, Debug)]
pub struct SignalArgs {
    #[command(flatten)]
    pub target: ControlArgs,
    /// A signal name (HUP, SIGUSR1, ...) or number.
    #[arg(value_name = "SIG", allow_hyphen_values = true)]
    pub signal: String,
    /// The instance number; without it the signal goes to the launcher itself.
    #[arg(value_name = "INSTANCE")]
    pub instance: Option<usize>,
}

#[derive(Args, Debug)]
pub struct NginxConfigArgs {
    /// Address nginx listens on (the HTTPS address with --tls-cert).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8000")]
    pub listen: String,
    /// Instances: HOST:PORT, HOST:FIRST-LAST or unix:PATH, each optionally @WEIGHT (repeatable).
    #[arg(long = "backend", value_name = "ADDR", required = true)]
    pub backends: Vec<String>,
    /// Instances used only while every --backend is down: same forms as --backend (repeatable).
    #[arg(long = "backup", value_name = "ADDR")]
    pub backups: Vec<String>,
    /// Take every instance of HOST out of rotation (marked down) for maintenance (repeatable).
    #[arg(long = "drain", value_name = "HOST")]
    pub drains: Vec<String>,
    /// Largest request body nginx lets through (same units as --max-body-size).
    #[arg(long, value_name = "SIZE", default_value = "1G")]
    pub max_body_size: String,
    /// evserve's keep-alive timeout on the backends; nginx's idle upstream timeout stays below it.
    #[arg(long, value_name = "SECS", default_value_t = 75)]
    pub keep_alive: u64,
    /// Idle connections nginx keeps to the upstream.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub upstream_keepalive: u32,
    /// Absolute directory for nginx's pid file, logs and temporary files (default: run/
    /// under nginx's -p prefix).
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// Serve files under DIR at URL_PREFIX (repeatable), as the launcher's --static.
    #[arg(long = "static", value_name = "URL_PREFIX=DIR")]
    pub static_mounts: Vec<String>,
    #[command(flatten)]
    pub front: NginxFrontArgs,
}

/// nginx's client side (TLS, a proxy in front of it): the same flags on the launcher and on
/// `evserve nginx-config`.
#[derive(Args, Debug, Clone, Default)]
pub struct NginxFrontArgs {
    /// nginx: PEM certificate (chain) for HTTPS and HTTP/2 on --listen; needs --tls-key.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// nginx: PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// nginx with TLS: plain-HTTP address redirected (301) to https: HOST:PORT, PORT (on
    /// --listen's host) or none (default: port 80 on --listen's host).
    #[arg(long, value_name = "ADDR")]
    pub redirect_http: Option<String>,
    /// nginx behind another proxy or load balancer at CIDR (repeatable): nginx takes the
    /// client's address from that proxy's X-Forwarded-For and passes it on.
    #[arg(long = "real-ip-from", value_name = "CIDR")]
    pub real_ip_from: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The WSGI app: module:callable, module:obj.attr, path/to/file.py:callable,
    /// or module:factory(literal args).
    #[arg(value_name = "APP", required = true)]
    pub app: Option<String>,

    /// Host to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on.
    #[arg(long, short = 'p', default_value_t = 8000)]
    pub port: u16,
    /// Listen on HOST:PORT or unix:PATH instead of --host/--port.
    #[arg(long, short = 'b', value_name = "ADDR")]
    pub bind: Option<String>,
    /// Change to this directory before loading the app.
    #[arg(long, value_name = "DIR")]
    pub chdir: Option<PathBuf>,
    /// Add a directory to sys.path (repeatable).
    #[arg(long = "pythonpath", value_name = "DIR")]
    pub pythonpath: Vec<PathBuf>,
    /// SCRIPT_NAME the app is mounted at.
    #[arg(long, value_name = "PATH", default_value = "")]
    pub root_path: String,
    /// Write an access log in combined format to FILE, or - for stdout.
    #[arg(long, value_name = "FILE")]
    pub access_log: Option<String>,
    /// Access-log lines in gunicorn's format, e.g. '%(h)s "%(r)s" %(s)s %(L)s'.
    #[arg(long, value_name = "FMT", conflicts_with = "access_log_json")]
    pub access_logformat: Option<String>,
    /// Access-log lines as JSON objects, one a line.
    #[arg(long)]
    pub access_log_json: bool,
    /// Configure Python logging from FILE (dictConfig JSON if it ends in .json, else a
    /// fileConfig ini): evserve logs to "evserve.error" and access lines to "evserve.access".
    #[arg(long, value_name = "FILE")]
    pub log_config: Option<PathBuf>,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub graceful_timeout: u64,

    /// Longest request line in bytes (414 beyond).
    #[arg(long, value_name = "BYTES", default_value_t = 8192)]
    pub limit_request_line: usize,
    /// Largest request head in bytes (431 beyond).
    #[arg(long, value_name = "BYTES", default_value_t = 65536)]
    pub limit_request_head: usize,
    /// Most header fields in a request, at most 256 (431 beyond).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub limit_request_fields: usize,
    /// Largest request body, e.g. 1G, 10M, 4096 (413 beyond).
    #[arg(long, value_name = "SIZE", default_value = "1G")]
    pub max_body_size: String,
    /// Seconds a client gets to send a whole request head.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub header_timeout: u64,
    /// Seconds a request body may go without a byte arriving.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub body_timeout: u64,
    /// Seconds an idle keep-alive connection stays open (keep it above the proxy's idle timeout).
    #[arg(long, value_name = "SECS", default_value_t = 75)]
    pub keep_alive: u64,
    /// Seconds a response may go without the client reading a byte.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub write_timeout: u64,
    /// Most open client connections per instance; more wait in the backlog.
    #[arg(long, value_name = "N", default_value_t = 10000)]
    pub max_connections: usize,
    /// Listen backlog.
    #[arg(long, value_name = "N", default_value_t = 2048)]
    pub backlog: u32,
    /// Peers (comma-separated IPs, or * for all) whose X-Forwarded-For and
    /// X-Forwarded-Proto set REMOTE_ADDR and wsgi.url_scheme; Unix-socket peers always count.
    #[arg(long, value_name = "IPS", default_value = "127.0.0.1,::1")]
    pub forwarded_allow_ips: String,
    /// Serve the files under DIR for paths starting with URL_PREFIX, without calling the
    /// app (repeatable; nginx serves them itself when the launcher writes its configuration).
    #[arg(long = "static", value_name = "URL_PREFIX=DIR")]
    pub static_mounts: Vec<String>,

    /// Launcher: one instance per port in FIRST-LAST, each on its own port.
    #[arg(long, value_name = "FIRST-LAST", conflicts_with_all = ["workers", "bind"])]
    pub port_range: Option<String>,
    /// Launcher: one Unix socket per instance in DIR (DIR/instance-N.sock, N from 0 to
    /// --workers minus 1), for nginx on the same host; instead of --port-range.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["port_range", "bind"])]
    pub socket_dir: Option<PathBuf>,
    /// Launcher: N instances sharing one listening socket (at most 256), or MIN:MAX to grow
    /// and shrink with the load.
    #[arg(long, short = 'w', value_name = "N|MIN:MAX")]
    pub workers: Option<String>,
    /// Launcher: with --port-range, the fewest instances when scaling with the load (the
    /// range is the most).
    #[arg(long, value_name = "N", requires = "port_range")]
    pub min_instances: Option<u32>,
    /// Launcher: add an instance when every instance has been busy this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub scale_up_after: f64,
    /// Launcher: remove an instance when one has been spare this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub scale_down_after: f64,
    /// Launcher: replace an instance after it served N requests (0: never).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_requests: u64,
    /// Launcher: add a random 0..=J to each instance's --max-requests.
    #[arg(long, value_name = "J", default_value_t = 0)]
    pub max_requests_jitter: u64,
    /// Launcher: replace an instance whose resident memory exceeds MiB (0: never).
    #[arg(long, value_name = "MiB", default_value_t = 0)]
    pub max_rss: u64,
    /// Launcher: replace an instance after it ran SECS seconds (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub max_lifetime: u64,
    /// Launcher: add a random 0..=SECS to each instance's --max-lifetime.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub max_lifetime_jitter: u64,
    /// Launcher: restarts of one instance allowed within --restart-window.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub max_restarts: u32,
    /// Launcher: seconds over which --max-restarts is counted.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub restart_window: u64,
    /// Launcher: an instance silent (stuck in a request) this many seconds is killed and replaced.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub timeout: u64,
    /// Launcher: write an nginx configuration for the instances to PATH.
    #[arg(long, value_name = "PATH")]
    pub nginx_conf: Option<PathBuf>,
    /// Launcher: address nginx listens on (default 127.0.0.1:8000 with --port-range or --socket-dir).
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Launcher: also run nginx with that configuration, as a supervised child.
    #[arg(long)]
    pub nginx: bool,
    #[command(flatten)]
    pub front: NginxFrontArgs,
    /// Launcher: control socket that `evserve status` talks to.
    #[arg(long, value_name = "PATH")]
    pub control_socket: Option<PathBuf>,
    /// Launcher: import the app once and fork the instances from it, so they share its
    /// memory; a reload imports the new code in a fresh process.
    #[arg(long)]
    pub preload: bool,
    /// Development: reload the instances when a source file of the app changes (without
    /// --workers or --port-range, a launcher with one instance is run).
    #[arg(long)]
    pub reload: bool,
    /// With --reload: also watch these files (repeatable; globs such as 'templates/*.html').
    #[arg(long = "reload-extra-file", value_name = "PATH", requires = "reload")]
    pub reload_extra_files: Vec<String>,
    /// Serve Prometheus metrics and a live status page on HOST:PORT (from the launcher, or
    /// from a single instance run alone).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics: Option<String>,
}

/// Parses a size such as `1G`, `10M`, `512k` or `4096` into bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, ""),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a size (examples: 4096, 512K, 10M, 1G)"))?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("'{text}' has an unknown unit (use K, M or G)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("'{text}' is too large"))
}

/// Most instances one launcher runs: as many as the widest `--port-range`, so `--workers`
/// and `--port-range` allow the same number.
pub const MAX_INSTANCES: u32 = 256;

/// Parses `FIRST-LAST` into an inclusive, non-empty port range.
pub fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    let bad = || format!("'{text}' is not a port range like 8001-8004");
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    let first: u16 = a.trim().parse().map_err(|_| bad())?;
    let last: u16 = b.trim().parse().map_err(|_| bad())?;
    if first == 0 || last < first {
        return Err(bad());
    }
    if u32::from(last - first) >= MAX_INSTANCES {
        return Err(format!("'{text}' spans more than {MAX_INSTANCES} ports"));
    }
    Ok((first, last))
}

/// Parses `HOST:PORT` (IPv6 as `[::1]:PORT`) into a socket address.
pub fn parse_host_port(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("'{text}' is not HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("'{text}' has a bad port"))?;
    let host = if host == "localhost" {
        "127.0.0.1"
    } else {
        host
    };
    format!("{host}:{port}")
        .parse::<SocketAddr>()
        .map_err(|_| format!("'{text}' is not an IP address and port"))
}

/// Parses `URL_PREFIX=DIR` (`/static/=/srv/app/static`): the prefix gets its slashes, the
/// directory must exist and is made absolute and canonical.
pub fn parse_static_mount(text: &str) -> Result<StaticMount, String> {
    let (prefix, dir) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' should look like /static/=DIR"))?;
    let prefix = prefix.trim();
    if !prefix.starts_with('/') {
        return Err(format!("'{text}': the URL prefix must start with /"));
    }
    if prefix
        .bytes()
        .any(|b| !(0x21..=0x7e).contains(&b) || b == b'%' || b == b'?' || b == b'#')
        || prefix.split('/').any(|part| part == "." || part == "..")
    {
        return Err(format!(
            "'{text}': the URL prefix must be a plain path (no spaces, %, ?, #, . or ..)"
        ));
    }
    let url_prefix = if prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    };
    if dir.is_empty() {
        return Err(format!("'{text}' names no directory"));
    }
    let dir = std::fs::canonicalize(dir).map_err(|e| format!("'{text}': directory {dir}: {e}"))?;
    if !dir.is_dir() {
        return Err(format!("'{text}': {} is not a directory", dir.display()));
    }
    Ok(StaticMount { url_prefix, dir })
}

/// Parses every `--static` value, longest prefix first so that the most specific wins.
pub fn parse_static_mounts(values: &[String]) -> Result<Vec<StaticMount>, String> {
    let mut mounts = values
        .iter()
        .map(|v| parse_static_mount(v).map_err(|e| format!("--static: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    mounts.sort_by_key(|m| std::cmp::Reverse(m.url_prefix.len()));
    for pair in mounts.windows(2) {
        if pair[0].url_prefix == pair[1].url_prefix {
            return Err(format!("--static: {} is given twice", pair[0].url_prefix));
        }
    }
    Ok(mounts)
}

impl NginxFrontArgs {
    /// Whether any TLS flag was given.
    pub fn given(&self) -> bool {
        self.tls_cert.is_some()
            || self.tls_key.is_some()
            || self.redirect_http.is_some()
            || !self.real_ip_from.is_empty()
    }
}

/// Parses `--real-ip-from` values: an IP address or CIDR block each, written back in
/// canonical form.
pub fn parse_real_ip_from(values: &[String]) -> Result<Vec<String>, String> {
    values
        .iter()
        .map(|text| {
            let bad = || format!("--real-ip-from '{text}' is not an IP address or CIDR block");
            let (ip, bits) = match text.split_once('/') {
                Some((ip, bits)) => (ip, Some(bits.parse::<u8>().map_err(|_| bad())?)),
                None => (text.as_str(), None),
            };
            let ip: std::net::IpAddr = ip.parse().map_err(|_| bad())?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            match bits {
                Some(b) if b > max => Err(bad()),
                Some(b) => Ok(format!("{ip}/{b}")),
                None => Ok(ip.to_string()),
            }
        })
        .collect()
}

/// Checks that `path` (given to `flag`) can be read now and holds PEM text; returns it
/// absolute.
fn readable_pem(flag: &str, path: &std::path::Path) -> Result<PathBuf, String> {
    let text = std::fs::read(path)
        .map_err(|e| format!("{flag} {}: cannot read it: {e}", path.display()))?;
    if !text.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(format!(
            "{flag} {}: not a PEM file (no -----BEGIN line)",
            path.display()
        ));
    }
    Ok(absolute(path.to_path_buf()))
}

/// The TLS flags checked against `listen` (nginx's HTTPS address): both files readable,
/// and the redirect listener, by default port 80 on `listen`'s host.
pub fn parse_tls(args: &NginxFrontArgs, listen: SocketAddr) -> Result<Option<TlsSetup>, String> {
    let (cert, key) = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => (cert, key),
        (None, None) if args.redirect_http.is_some() => {
            return Err("--redirect-http needs --tls-cert and --tls-key".into())
        }
        (None, None) => return Ok(None),
        _ => return Err("--tls-cert and --tls-key go together: give both".into()),
    };
    let redirect_from = match args.redirect_http.as_deref() {
        None => Some(SocketAddr::new(listen.ip(), 80)),
        Some("none") => None,
        Some(text) => Some(match text.parse::<u16>() {
            Ok(port) if port > 0 => SocketAddr::new(listen.ip(), port),
            _ => parse_host_port(text).map_err(|e| format!("--redirect-http: {e} (or none)"))?,
        }),
    };
    if redirect_from == Some(listen) {
        return Err(format!(
            "--redirect-http {listen} is also --listen, the HTTPS address; give another port or none"
        ));
    }
    Ok(Some(TlsSetup {
        cert: readable_pem("--tls-cert", cert)?,
        key: readable_pem("--tls-key", key)?,
        redirect_from,
    }))
}

impl ServeArgs {
    fn access_style(&self) -> Result<AccessStyle, String> {
        if self.access_log.is_some() && self.log_config.is_some() {
            return Err(
                "--access-log and --log-config: with --log-config, access lines go to \
                 the \"evserve.access\" logger; give it a handler in the config file"
                    .into(),
            );
        }
        if self.access_log.is_none()
            && self.log_config.is_none()
            && (self.access_logformat.is_some() || self.access_log_json)
        {
            return Err(
                "--access-logformat and --access-log-json need --access-log FILE (or - for stdout)"
                    .into(),
            );
        }
        Ok(match (&self.access_logformat, self.access_log_json) {
            (Some(format), _) => AccessStyle::Format(
                Plan::parse(format).map_err(|e| format!("--access-logformat: {e}"))?,
            ),
            (None, true) => AccessStyle::Json,
            (None, false) => AccessStyle::Combined,
        })
    }
}

fn parse_bind(serve: &ServeArgs) -> Result<BindAddr, String> {
    match &serve.bind {
        Some(b) if b.starts_with("unix:") => {
            let path = &b["unix:".len()..];
            if path.is_empty() {
                return Err("--bind unix: needs a path, as in unix:/run/app.sock".into());
            }
            Ok(BindAddr::Unix(PathBuf::from(path)))
        }
        Some(b) => parse_host_port(b)
            .map(BindAddr::Tcp)
            .map_err(|e| format!("--bind: {e}")),
        None => {
            let host = if serve.host == "localhost" {
                "127.0.0.1"
            } else {
                serve.host.as_str()
            };
            let ip: std::net::IpAddr =
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse()
                    .map_err(|_| format!("--host: '{}' is not an IP address", serve.host))?;
            Ok(BindAddr::Tcp(SocketAddr::new(ip, serve.port)))
        }
    }
}

/// `path` made absolute against the current directory (unchanged if that fails).
fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

fn secs(flag: &str, value: u64) -> Result<Duration, String> {
    if value == 0 {
        return Err(format!("--{flag} must be at least 1 second"));
    }
    Ok(Duration::from_secs(value))
}

impl ServeArgs {
    /// Checks every flag and builds the typed configuration.
    pub fn validate(self) -> Result<Mode, String> {
        let app_text = self.app.clone().ok_or("an APP argument is required")?;
        let app = AppSpec::parse(&app_text)?;
        self.validate_for(app)
    }

    /// Checks every flag and builds the typed configuration for serving `app`.
    pub fn validate_for(mut self, app: AppSpec) -> Result<Mode, String> {
        let reload = self.reload_watch(&app)?;
        if reload.is_some() && self.port_range.is_none() && self.workers.is_none() {
            // Watching needs a launcher: one instance, on --host/--port or --bind.
            self.workers = Some("1".into());
        }
        let max_body =
            parse_size(&self.max_body_size).map_err(|e| format!("--max-body-size: {e}"))?;
        if self.limit_request_line < 64 {
            return Err("--limit-request-line must be at least 64".into());
        }
        if self.limit_request_head < self.limit_request_line {
            return Err("--limit-request-head must be at least --limit-request-line".into());
        }
        if self.limit_request_fields == 0
            || self.limit_request_fields > crate::http1::MAX_HEADERS_CAP
        {
            return Err(format!(
                "--limit-request-fields must be between 1 and {}",
                crate::http1::MAX_HEADERS_CAP
            ));
        }
        if self.limit_request_head > u32::MAX as usize {
            return Err("--limit-request-head must be below 4 GiB".into());
        }
        if self.max_connections == 0 {
            return Err("--max-connections must be at least 1".into());
        }
        let limits = Limits {
            max_request_line: self.limit_request_line,
            max_head: self.limit_request_head,
            max_headers: self.limit_request_fields,
            max_body,
        };
        let timeouts = Timeouts {
            header: secs("header-timeout", self.header_timeout)?,
            body: secs("body-timeout", self.body_timeout)?,
            keep_alive: secs("keep-alive", self.keep_alive)?,
            write: secs("write-timeout", self.write_timeout)?,
            graceful: Duration::from_secs(self.graceful_timeout),
        };
        // Paths the user typed are relative to where evserve was started, not to --chdir.
        let bind = match parse_bind(&self)? {
            BindAddr::Unix(path) => BindAddr::Unix(absolute(path)),
            tcp => tcp,
        };
        let python = PythonSetup {
            chdir: self.chdir.clone(),
            pythonpath: self.pythonpath.clone(),
        };
        let instance = InstanceConfig {
            app,
            python,
            bind,
            root_path: self.root_path.trim_end_matches('/').to_string(),
            access_log: self.access_log.clone().map(|a| {
                if a == "-" {
                    a
                } else {
                    absolute(PathBuf::from(a)).to_string_lossy().into_owned()
                }
            }),
            access_style: self.access_style()?,
            log_config: self.log_config.clone().map(absolute),
            limits,
            timeouts,
            max_connections: self.max_connections,
            backlog: self.backlog,
            trusted_proxies: TrustedProxies::parse(&self.forwarded_allow_ips)
                .map_err(|e| format!("--forwarded-allow-ips: {e}"))?,
            static_mounts: parse_static_mounts(&self.static_mounts)?,
            multiprocess: self.port_range.is_some() || self.workers.is_some(),
            shared_listener: self.port_range.is_none()
                && self.socket_dir.is_none()
                && self.workers.is_some(),
            report_source_files: reload.is_some(),
            metrics: match &self.metrics {
                Some(m) => Some(parse_host_port(m).map_err(|e| format!("--metrics: {e}"))?),
                None => None,
            },
        };
        if !instance.root_path.is_empty() && !instance.root_path.starts_with('/') {
            return Err("--root-path must start with /".into());
        }
        if instance.root_path.contains('%') {
            return Err(
                "--root-path is matched against the decoded path: write it unencoded ('/a b', not '/a%20b')"
                    .into(),
            );
        }
        let ports = match &self.port_range {
            Some(r) => Some(parse_port_range(r).map_err(|e| format!("--port-range: {e}"))?),
            None => None,
        };
        if self.socket_dir.is_some() && self.workers.is_none() {
            return Err(
                "--socket-dir needs --workers N: the number of instances, one socket each".into(),
            );
        }
        if ports.is_none() && self.workers.is_none() {
            if self.nginx
                || self.nginx_conf.is_some()
                || self.listen.is_some()
                || self.preload
                || self.front.given()
            {
                return Err(
                    "--nginx, --nginx-conf, --listen, --tls-cert and --preload need --port-range or --workers"
                        .into(),
                );
            }
            return Ok(Mode::Instance(Box::new(instance)));
        }
        let (min_workers, workers) = match &self.workers {
            Some(text) => parse_workers(text)?,
            None => (1, 1),
        };
        let elastic = self.elastic(min_workers, ports)?;
        let listen = match &self.listen {
            Some(l) => Some(parse_host_port(l).map_err(|e| format!("--listen: {e}"))?),
            None if ports.is_some() || self.socket_dir.is_some() => {
                Some(SocketAddr::from(([127, 0, 0, 1], 8000)))
            }
            None => None,
        };
        if self.front.given() && self.nginx_conf.is_none() {
            return Err(
                "--tls-cert, --tls-key, --redirect-http and --real-ip-from configure nginx: give --nginx-conf PATH too"
                    .into(),
            );
        }
        let tls = match listen {
            Some(listen) => parse_tls(&self.front, listen)?,
            None => None,
        };
        if self.nginx && self.nginx_conf.is_none() {
            return Err("--nginx needs --nginx-conf PATH to write the configuration to".into());
        }
        Ok(Mode::Launcher(Box::new(LauncherConfig {
            instance,
            ports,
            socket_dir: self.socket_dir.clone().map(absolute),
            workers,
            max_restarts: self.max_restarts,
            restart_window: secs("restart-window", self.restart_window)?,
            timeout: secs("timeout", self.timeout)?,
            nginx_conf: self.nginx_conf.clone(),
            listen,
            tls,
            real_ip_from: parse_real_ip_from(&self.front.real_ip_from)?,
            run_nginx: self.nginx,
            control_socket: self.control_socket.clone(),
            preload: self.preload,
            elastic,
            relaunch: Default::default(),
            reload,
        })))
    }

    /// `--reload` and `--reload-extra-file`: the patterns made absolute and checked.
    fn reload_watch(&self, app: &AppSpec) -> Result<Option<ReloadWatch>, String> {
        if !self.reload {
            return Ok(None);
        }
        if app.source == AppSource::Object {
            return Err(
                "--reload needs the app given as APP (module:callable): an app object cannot be imported again"
                    .into(),
            );
        }
        let extra_files = self
            .reload_extra_files
            .iter()
            .map(|pattern| parse_watch_pattern(pattern))
            .collect::<Result<_, _>>()?;
        Ok(Some(ReloadWatch { extra_files }))
    }
}

/// One `--reload-extra-file` value: a path or a glob, made absolute against the directory
/// evserve was started in.
pub fn parse_watch_pattern(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("--reload-extra-file: the path is empty".into());
    }
    let full = absolute(PathBuf::from(text));
    let full = full
        .to_str()
        .ok_or_else(|| format!("--reload-extra-file: '{text}' is not valid UTF-8"))?
        .to_string();
    glob::Pattern::new(&full)
        .map_err(|e| format!("--reload-extra-file: '{text}' is not a valid pattern: {e}"))?;
    Ok(full)
}

/// Parses `--workers N` or `--workers MIN:MAX` into (MIN, MAX); errors name the flag.
pub fn parse_workers(text: &str) -> Result<(u32, u32), String> {
    let number = |t: &str| {
        t.trim()
            .parse::<u32>()
            .map_err(|_| format!("--workers: '{text}' is not a count like 4 or a range like 1:4"))
    };
    let (min, max) = match text.split_once(':') {
        Some((a, b)) => (number(a)?, number(b)?),
        None => (number(text)?, number(text)?),
    };
    if min == 0 {
        return Err("--workers must be at least 1".into());
    }
    if max > MAX_INSTANCES {
        return Err(format!(
            "--workers {max} is too many: at most {MAX_INSTANCES} instances per launcher"
        ));
    }
    if min > max {
        return Err(format!("--workers {text}: MIN is above MAX"));
    }
    Ok((min, max))
}

/// A number of seconds given as a decimal, above zero.
fn positive_secs(flag: &str, value: f64) -> Result<Duration, String> {
    if !(value > 0.0 && value <= 86_400.0 * 365.0) {
        return Err(format!("--{flag} must be a number of seconds above 0"));
    }
    Ok(Duration::from_secs_f64(value))
}

impl ServeArgs {
    /// Recycling and scaling, from the flags; `min_workers` is MIN of `--workers`.
    fn elastic(&self, min_workers: u32, ports: Option<(u16, u16)>) -> Result<Elastic, String> {
        let min_instances = match ports {
            Some((first, last)) => {
                let count = u32::from(last - first) + 1;
                match self.min_instances {
                    Some(0) => return Err("--min-instances must be at least 1".into()),
                    Some(n) if n > count => {
                        return Err(format!(
                            "--min-instances {n} is more than the {count} ports of --port-range"
                        ))
                    }
                    Some(n) => n,
                    None => count,
                }
            }
            None => min_workers,
        };
        Ok(Elastic {
            max_requests: self.max_requests,
            max_requests_jitter: self.max_requests_jitter,
            max_rss: self
                .max_rss
                .checked_mul(1 << 20)
                .ok_or("--max-rss is too large")?,
            max_lifetime: Duration::from_secs(self.max_lifetime),
            max_lifetime_jitter: Duration::from_secs(self.max_lifetime_jitter),
            min_instances,
            scale_up_after: positive_secs("scale-up-after", self.scale_up_after)?,
            scale_down_after: positive_secs("scale-down-after", self.scale_down_after)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_take_a_count_or_a_range() {
        assert_eq!(parse_workers("4"), Ok((4, 4)));
        assert_eq!(parse_workers("1:4"), Ok((1, 4)));
        assert!(parse_workers("0").is_err());
        assert!(parse_workers("0:2").is_err());
        assert!(parse_workers("3:2").is_err());
        assert!(parse_workers("1:257").is_err());
        assert!(parse_workers("two").is_err());
        assert!(parse_workers("1:").is_err());
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512K"), Ok(512 * 1024));
        assert_eq!(parse_size("10m"), Ok(10 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("1T").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
    }

    #[test]
    fn port_ranges_must_be_ordered() {
        assert_eq!(parse_port_range("8001-8004"), Ok((8001, 8004)));
        assert!(parse_port_range("8004-8001").is_err());
        assert!(parse_port_range("8001").is_err());
        assert!(parse_port_range("0-3").is_err());
    }

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn help_version_and_usage_errors_return_their_exit_code() {
        assert_eq!(Cli::parse_from_args(args(&["--version"])).err(), Some(0));
        assert_eq!(Cli::parse_from_args(args(&["--help"])).err(), Some(0));
        assert_eq!(
            Cli::parse_from_args(args(&["--venv", "x", "app:application"])).err(),
            Some(2)
        );
    }

    #[test]
    fn object_flags_have_the_command_lines_messages() {
        let bad_port = parse_object_flags(args(&["--port", "http"])).unwrap_err();
        assert!(
            bad_port.starts_with("invalid value 'http' for '--port <PORT>'"),
            "{bad_port}"
        );
        let bad_size = parse_object_flags(args(&["--max-body-size", "ten"]))
            .unwrap()
            .validate_for(AppSpec::object("app"))
            .err();
        assert_eq!(
            bad_size.as_deref(),
            Some("--max-body-size: 'ten' is not a size (examples: 4096, 512K, 10M, 1G)")
        );
    }

    #[test]
    fn object_flags_refuse_an_app_argument_and_subcommands() {
        assert!(parse_object_flags(args(&["app:application"])).is_err());
        assert!(parse_object_flags(args(&["status"])).is_err());
        assert!(parse_object_flags(args(&[])).is_ok());
    }

    #[test]
    fn server_flags_tell_switches_and_repeatable_flags_apart() {
        let flags = server_flags();
        let find = |name: &str| flags.iter().find(|f| f.name == name);
        let nginx = find("nginx").unwrap();
        assert!(!nginx.takes_value && !nginx.repeatable);
        let pythonpath = find("pythonpath").unwrap();
        assert!(pythonpath.takes_value && pythonpath.repeatable);
        let port = find("port").unwrap();
        assert!(port.takes_value && !port.repeatable);
        assert!(find("venv").is_none() && find("help").is_none() && find("version").is_none());
    }

    #[test]
    fn static_mounts_need_a_plain_prefix_and_an_existing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let m = parse_static_mount(&format!("/static={d}")).unwrap();
        assert_eq!(m.url_prefix, "/static/");
        assert_eq!(m.dir, std::fs::canonicalize(d).unwrap());
        assert!(parse_static_mount(d).is_err());
        assert!(parse_static_mount(&format!("static/={d}")).is_err());
        assert!(parse_static_mount(&format!("/a/../b/={d}")).is_err());
        assert!(parse_static_mount(&format!("/a%20b/={d}")).is_err());
        assert!(parse_static_mount("/static/=/no/such/dir").is_err());
        let both = [format!("/s/={d}"), format!("/s/media/={d}")];
        let mounts = parse_static_mounts(&both).unwrap();
        assert_eq!(mounts[0].url_prefix, "/s/media/");
        let twice = [format!("/s={d}"), format!("/s/={d}")];
        assert!(parse_static_mounts(&twice).is_err());
    }

    fn mode_of(list: &[&str]) -> Result<Mode, String> {
        Cli::parse_from_args(args(list))
            .map_err(|code| format!("exit {code}"))?
            .serve
            .validate()
    }

    #[test]
    fn reload_runs_a_launcher_and_refuses_an_app_object() {
        let Ok(Mode::Launcher(config)) = mode_of(&["--reload", "app:application"]) else {
            panic!("--reload without --workers runs no launcher");
        };
        assert_eq!(config.workers, 1);
        assert!(config.instance.report_source_files && config.instance.shared_listener);
        let Ok(Mode::Launcher(config)) = mode_of(&[
            "--reload",
            "--reload-extra-file",
            "t/*.html",
            "-w",
            "2",
            "a:app",
        ]) else {
            panic!("not a launcher");
        };
        let extra = &config.reload.as_ref().unwrap().extra_files;
        assert!(
            extra[0].starts_with('/') && extra[0].ends_with("/t/*.html"),
            "{extra:?}"
        );
        assert!(mode_of(&["--reload", "--reload-extra-file", "[", "a:app"]).is_err());
        assert!(
            mode_of(&["--reload-extra-file", "x", "a:app"]).is_err(),
            "needs --reload"
        );
        let object = parse_object_flags(args(&["--reload"]))
            .unwrap()
            .validate_for(AppSpec::object("app"))
            .err()
            .unwrap();
        assert!(
            object.starts_with("--reload needs the app given as APP"),
            "{object}"
        );
        let Ok(Mode::Launcher(plain)) = mode_of(&["-w", "2", "a:app"]) else {
            panic!("not a launcher");
        };
        assert!(plain.reload.is_none() && !plain.instance.report_source_files);
    }

    #[test]
    fn tls_flags_are_checked_at_start_with_one_line_errors() {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("c.pem");
        std::fs::write(&pem, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let junk = dir.path().join("junk");
        std::fs::write(&junk, "hello").unwrap();
        let listen: SocketAddr = "10.1.2.3:443".parse().unwrap();
        let tls = |cert: Option<&PathBuf>, key: Option<&PathBuf>, redirect: Option<&str>| {
            parse_tls(
                &NginxFrontArgs {
                    tls_cert: cert.cloned(),
                    tls_key: key.cloned(),
                    redirect_http: redirect.map(String::from),
                    real_ip_from: vec![],
                },
                listen,
            )
        };
        assert_eq!(tls(None, None, None), Ok(None));
        let from = |r| {
            tls(Some(&pem), Some(&pem), r)
                .unwrap()
                .unwrap()
                .redirect_from
        };
        assert_eq!(from(None), Some("10.1.2.3:80".parse().unwrap()));
        assert_eq!(from(Some("none")), None);
        assert_eq!(from(Some("8080")), Some("10.1.2.3:8080".parse().unwrap()));
        assert_eq!(
            from(Some("0.0.0.0:81")),
            Some("0.0.0.0:81".parse().unwrap())
        );
        let missing = dir.path().join("missing.pem");
        for (cert, key, redirect, want) in [
            (Some(&pem), None, None, "go together"),
            (None, None, Some("80"), "needs --tls-cert"),
            (Some(&missing), Some(&pem), None, "--tls-cert"),
            (Some(&pem), Some(&junk), None, "not a PEM file"),
            (Some(&pem), Some(&pem), Some("443"), "is also --listen"),
            (Some(&pem), Some(&pem), Some("x:y"), "--redirect-http"),
        ] {
            let err = tls(cert, key, redirect).unwrap_err();
            assert!(err.contains(want) && !err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn real_ip_from_takes_addresses_and_cidr_blocks() {
        let given = ["10.0.0.0/8", "::1", "192.0.2.7"].map(String::from);
        assert_eq!(
            parse_real_ip_from(&given).unwrap(),
            vec!["10.0.0.0/8", "::1", "192.0.2.7"]
        );
        for bad in ["10.0.0.0/33", "host", "10.0.0.1/x", "::1/129", ""] {
            assert!(parse_real_ip_from(&[bad.to_string()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_port_accepts_localhost_and_ipv6() {
        assert_eq!(
            parse_host_port("localhost:80"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 80)))
        );
        assert!(parse_host_port("[::1]:8000").is_ok());
        assert!(parse_host_port("nohost").is_err());
    }
}
