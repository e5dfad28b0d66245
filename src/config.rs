//! Typed configuration handed from the command line to the instance and the launcher.
//!
//! Plain data only: nothing here does IO or touches Python.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::forwarded::TrustedProxies;
pub use crate::http1::Limits;

/// Where the app comes from: a module or a file and the expression naming the callable in
/// it, or the object handed to the Python API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppSpec {
    /// The text as given, for messages.
    pub text: String,
    pub source: AppSource,
    /// `callable`, `obj.attr`, or `factory(literal args)`.
    pub expr: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppSource {
    Module(String),
    File(PathBuf),
    /// The object given to `evserve.serve()` (`expr` is empty).
    Object,
}

impl AppSpec {
    /// Parses `module:expr`, `path/to/file.py:expr`, or a bare `module` (callable `application`).
    pub fn parse(text: &str) -> Result<AppSpec, String> {
        let (source, expr) = match text.split_once(':') {
            Some((s, e)) => (s.trim(), e.trim()),
            None => (text.trim(), "application"),
        };
        if source.is_empty() || expr.is_empty() {
            return Err(format!(
                "APP '{text}' should look like module:callable or path/to/file.py:callable"
            ));
        }
        let source = if source.ends_with(".py") || source.contains('/') {
            AppSource::File(PathBuf::from(source))
        } else {
            let valid = source
                .split('.')
                .all(|part| !part.is_empty() && is_identifier(part));
            if !valid {
                return Err(format!("APP '{text}': '{source}' is not a module name"));
            }
            AppSource::Module(source.to_string())
        };
        let name_end = expr.find('(').unwrap_or(expr.len());
        let valid_name = expr[..name_end]
            .split('.')
            .all(|part| !part.is_empty() && is_identifier(part.trim()));
        if !valid_name || (name_end < expr.len() && !expr.ends_with(')')) {
            return Err(format!(
                "APP '{text}': '{expr}' should be a name, obj.attr, or factory(literal args)"
            ));
        }
        Ok(AppSpec {
            text: text.to_string(),
            source,
            expr: expr.to_string(),
        })
    }
}

impl AppSpec {
    /// The app object handed over by the Python API; `text` describes it in messages.
    pub fn object(text: &str) -> AppSpec {
        AppSpec {
            text: text.to_string(),
            source: AppSource::Object,
            expr: String::new(),
        }
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for BindAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BindAddr::Tcp(a) => write!(f, "http://{a}"),
            BindAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// One `--static URL_PREFIX=DIR`: a request whose path starts with `url_prefix` names a
/// file under `dir`, served without calling the app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticMount {
    /// Starts and ends with `/` (`/static/`).
    pub url_prefix: String,
    /// Absolute and canonical: an existing directory, symlinks resolved.
    pub dir: PathBuf,
}

/// TLS at nginx (`--tls-cert`, `--tls-key`, `--redirect-http`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSetup {
    /// PEM certificate chain, absolute, checked readable at start.
    pub cert: PathBuf,
    /// PEM private key, absolute, checked readable at start.
    pub key: PathBuf,
    /// The plain-HTTP address nginx answers with a 301 to https (`None`: no such listener).
    pub redirect_from: Option<SocketAddr>,
}

/// Where the app's imports come from (the packages are those of the running Python).
#[derive(Clone, Debug, Default)]
pub struct PythonSetup {
    pub chdir: Option<PathBuf>,
    pub pythonpath: Vec<PathBuf>,
}

#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Whole request head, from its first byte.
    pub header: Duration,
    /// Longest gap between body bytes.
    pub body: Duration,
    /// Idle keep-alive connection.
    pub keep_alive: Duration,
    /// Longest gap in which the client reads nothing of a response.
    pub write: Duration,
    /// In-flight requests after a stop signal.
    pub graceful: Duration,
}

/// Everything one instance needs.
#[derive(Clone, Debug)]
pub struct InstanceConfig {
    pub app: AppSpec,
    pub python: PythonSetup,
    pub bind: BindAddr,
    /// SCRIPT_NAME, without a trailing slash.
    pub root_path: String,
    pub access_log: Option<String>,
    /// How access-log lines are written (`--access-logformat`, `--access-log-json`).
    pub access_style: crate::access_format::AccessStyle,
    /// `--log-config`: a logging.config file (`.json` for dictConfig, else fileConfig).
    pub log_config: Option<PathBuf>,
    pub limits: Limits,
    pub timeouts: Timeouts,
    pub max_connections: usize,
    pub backlog: u32,
    /// `--forwarded-allow-ips`: peers whose X-Forwarded-For/-Proto set REMOTE_ADDR and
    /// `wsgi.url_scheme`.
    pub trusted_proxies: TrustedProxies,
    /// `--static`: URL prefixes answered from directories, longest prefix first.
    pub static_mounts: Vec<StaticMount>,
    /// `wsgi.multiprocess`: true when started by the launcher.
    pub multiprocess: bool,
    /// Other instances accept from the same listening socket (`--workers`).
    pub shared_listener: bool,
    /// `--reload`: tell the launcher which source files the app imported.
    pub report_source_files: bool,
    /// `--metrics`: where the metrics are served (by the launcher when there is one; its
    /// instances then report to it instead).
    pub metrics: Option<SocketAddr>,
}

/// The launcher: instances, supervision and nginx.
#[derive(Clone, Debug)]
pub struct LauncherConfig {
    pub instance: InstanceConfig,
    /// `--port-range`: one instance per port.
    pub ports: Option<(u16, u16)>,
    /// `--socket-dir`: one Unix socket per instance in this directory (absolute).
    pub socket_dir: Option<PathBuf>,
    /// `--workers`: instances sharing `instance.bind` (ignored with `ports`).
    pub workers: u32,
    pub max_restarts: u32,
    pub restart_window: Duration,
    /// Heartbeat silence after which an instance is killed.
    pub timeout: Duration,
    pub nginx_conf: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    /// TLS at nginx; `None` serves plain HTTP on `listen`.
    pub tls: Option<TlsSetup>,
    /// `--real-ip-from`: proxies in front of nginx whose X-Forwarded-For nginx believes.
    pub real_ip_from: Vec<String>,
    pub run_nginx: bool,
    pub control_socket: Option<PathBuf>,
    /// `--preload`: instances are forked from one process that imported the app.
    pub preload: bool,
    /// Recycling and scaling.
    pub elastic: Elastic,
    /// How instances are started: filled in by the entry point, which knows the argv.
    pub relaunch: Relaunch,
    /// `--reload`: what to watch; `None` without it.
    pub reload: Option<ReloadWatch>,
}

/// `--reload`: the app's imported source files (the instances report them) and these.
#[derive(Clone, Debug, Default)]
pub struct ReloadWatch {
    /// `--reload-extra-file` patterns (globs allowed), absolute.
    pub extra_files: Vec<String>,
}

impl LauncherConfig {
    /// Whether each instance has a listening socket of its own (`--port-range`,
    /// `--socket-dir`) rather than sharing one (`--workers` alone).
    pub fn socket_per_instance(&self) -> bool {
        self.ports.is_some() || self.socket_dir.is_some()
    }
}

/// When instances are replaced (recycled) and how many run (scaling); zero turns a limit off.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Elastic {
    /// `--max-requests` and `--max-requests-jitter`.
    pub max_requests: u64,
    pub max_requests_jitter: u64,
    /// `--max-rss`, in bytes.
    pub max_rss: u64,
    /// `--max-lifetime` and `--max-lifetime-jitter`.
    pub max_lifetime: Duration,
    pub max_lifetime_jitter: Duration,
    /// The fewest instances (MIN of `--workers MIN:MAX`, or `--min-instances`); the most is
    /// `workers` or the number of ports. Equal to the most when not autoscaling.
    pub min_instances: u32,
    /// `--scale-up-after` and `--scale-down-after`.
    pub scale_up_after: Duration,
    pub scale_down_after: Duration,
}

/// The command an instance is started with: `python -m evserve FLAGS...`.
#[derive(Clone, Debug, Default)]
pub struct Relaunch {
    /// The Python interpreter the launcher runs in (`sys.executable`).
    pub python: PathBuf,
    /// The launcher's own arguments, without the program name.
    pub args: Vec<std::ffi::OsString>,
}

pub enum Mode {
    Instance(Box<InstanceConfig>),
    Launcher(Box<LauncherConfig>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_specs() {
        let s = AppSpec::parse("app:application").unwrap();
        assert_eq!(s.source, AppSource::Module("app".into()));
        assert_eq!(s.expr, "application");
        let s = AppSpec::parse("pkg.mod:obj.attr").unwrap();
        assert_eq!(s.source, AppSource::Module("pkg.mod".into()));
        let s = AppSpec::parse("path/to/file.py:app").unwrap();
        assert_eq!(s.source, AppSource::File("path/to/file.py".into()));
        let s = AppSpec::parse("m:create_app(debug=False)").unwrap();
        assert_eq!(s.expr, "create_app(debug=False)");
        assert_eq!(AppSpec::parse("m").unwrap().expr, "application");
        assert!(AppSpec::parse("m:").is_err());
        assert!(AppSpec::parse("1m:app").is_err());
        assert!(AppSpec::parse("m:app(").is_err());
        assert!(AppSpec::parse("m:a-b").is_err());
    }
}
