//! nginx as the launcher's child: writes its configuration, starts it once the instances
//! are ready, notices when it answers, restarts it if it dies, stops it with the launcher.
//!
//! The configuration text itself comes from `crate::nginx`; this module never builds it.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, kill_process_group, Pid, Signal};

use super::child::describe_exit;
use super::listeners::{addresses, local_target, loopback_if_unspecified};
use super::policy::{RestartHistory, RestartPolicy, Verdict};
use crate::config::{BindAddr, LauncherConfig};
use crate::nginx::{self, Backend, NginxConfig, RunDir, UpstreamServer};

/// How long nginx gets to answer on its address after it starts.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// Longest wait for the processes of a dead nginx to go before it is started again.
const LEFTOVER_WAIT: Duration = Duration::from_secs(2);

/// Where the configuration goes and what nginx listens on.
pub struct Setup {
    pub conf_path: PathBuf,
    run_dir: PathBuf,
    listen: SocketAddr,
    /// `https` with TLS, else `http`: how the ready line and the status show the address.
    scheme: &'static str,
    restart_policy: RestartPolicy,
}

impl Setup {
    /// Checks the nginx flags against the instance addresses, and builds the configuration
    /// once so that a bad flag stops the launcher before anything starts.
    pub fn new(config: &LauncherConfig, conf_path: &Path) -> Result<Setup, String> {
        let listen = config.listen.ok_or(
            "--nginx-conf with --workers needs --listen HOST:PORT, the address nginx listens on",
        )?;
        let nginx_addrs: Vec<SocketAddr> = std::iter::once(listen)
            .chain(config.tls.as_ref().and_then(|t| t.redirect_from))
            .collect();
        for addr in addresses(config) {
            let BindAddr::Tcp(sa) = addr else { continue };
            for theirs in &nginx_addrs {
                let same_ip = sa.ip() == theirs.ip()
                    || sa.ip().is_unspecified()
                    || theirs.ip().is_unspecified();
                if same_ip && sa.port() == theirs.port() {
                    return Err(format!(
                        "nginx's {theirs} is also an instance address; give nginx another port"
                    ));
                }
            }
        }
        let conf_path = std::path::absolute(conf_path)
            .map_err(|e| format!("--nginx-conf {}: {e}", conf_path.display()))?;
        let run_dir = nginx::run_dir_for(&conf_path);
        let targets: Vec<BindAddr> = addresses(config).iter().map(local_target).collect();
        launcher_nginx_config(config, &run_dir, &targets)?;
        if config.run_nginx && rustix::process::geteuid().is_root() {
            warn_unreachable_dirs(config);
        }
        Ok(Setup {
            conf_path,
            run_dir,
            listen,
            scheme: if config.tls.is_some() {
                "https"
            } else {
                "http"
            },
            restart_policy: RestartPolicy {
                max_restarts: config.max_restarts,
                window: config.restart_window,
            },
        })
    }

    /// Renders the configuration for instances at `targets` and writes it.
    pub fn write(&self, config: &LauncherConfig, targets: &[BindAddr]) -> Result<(), String> {
        let text = nginx::render(&launcher_nginx_config(config, &self.run_dir, targets)?);
        nginx::write_config(&self.conf_path, &self.run_dir, &text)
    }

    fn error_log(&self) -> PathBuf {
        self.run_dir.join("error.log")
    }

    /// nginx's own stderr: what it says when it cannot start.
    fn stderr_log(&self) -> PathBuf {
        self.run_dir.join("stderr.log")
    }
}

/// nginx started by root runs its workers as `nobody`: a `--static` directory they cannot
/// read answers 403 for every file, and a `--socket-dir` they cannot traverse 502 for every
/// request. Says so at start, once per such directory.
fn warn_unreachable_dirs(config: &LauncherConfig) {
    for mount in &config.instance.static_mounts {
        if let Some((dir, mode)) = blocking_ancestor(&mount.dir, 0o005) {
            crate::log::warn(&format!(
                "--static {}: nginx's workers run as nobody (nginx is started by root) and cannot read it: {} is mode {mode:04o}; its files would get 403 (chmod o+x the directories above it, o+rx it and o+r its files)",
                mount.dir.display(),
                dir.display()
            ));
        }
    }
    if let Some(socket_dir) = &config.socket_dir {
        if let Some((dir, mode)) = blocking_ancestor(socket_dir, 0o001) {
            crate::log::warn(&format!(
                "--socket-dir {}: nginx's workers run as nobody (nginx is started by root) and cannot reach its sockets: {} is mode {mode:04o}; every request would get 502 (chmod o+x it and the directories above it)",
                socket_dir.display(),
                dir.display()
            ));
        }
    }
}

/// The first of `dir` and the directories above it that others cannot use: `dir` itself
/// needs the permission bits `needed` for others, every directory above it o+x.
fn blocking_ancestor(dir: &Path, mut needed: u32) -> Option<(PathBuf, u32)> {
    for ancestor in dir.ancestors() {
        let Ok(meta) = std::fs::metadata(ancestor) else {
            // Not made yet (the launcher creates it 0755): its parents decide.
            needed = 0o001;
            continue;
        };
        let mode = meta.permissions().mode() & 0o7777;
        if mode & needed != needed {
            return Some((ancestor.to_path_buf(), mode));
        }
        needed = 0o001;
    }
    None
}

/// The launcher's nginx configuration for its instances at `targets`, through the same
/// [`nginx::build`] as `evserve nginx-config`.
pub fn launcher_nginx_config(
    config: &LauncherConfig,
    run_dir: &Path,
    targets: &[BindAddr],
) -> Result<NginxConfig, String> {
    let servers = targets
        .iter()
        .map(|t| {
            UpstreamServer::plain(match t {
                BindAddr::Tcp(sa) => Backend::Tcp {
                    host: match sa {
                        SocketAddr::V4(v4) => v4.ip().to_string(),
                        SocketAddr::V6(v6) => format!("[{}]", v6.ip()),
                    },
                    port: sa.port(),
                },
                BindAddr::Unix(p) => Backend::Unix(p.clone()),
            })
        })
        .collect();
    nginx::build(NginxConfig {
        listen: config.listen.ok_or("nginx needs --listen HOST:PORT")?,
        tls: config.tls.clone(),
        real_ip_from: config.real_ip_from.clone(),
        static_mounts: config.instance.static_mounts.clone(),
        servers,
        max_body_size: config.instance.limits.max_body,
        backend_keep_alive: config.instance.timeouts.keep_alive,
        upstream_keepalive: super::LAUNCHER_UPSTREAM_KEEPALIVE,
        read_timeout_secs: (config.timeout.as_secs() + 5).max(60),
        run_dir: RunDir::Absolute(run_dir.to_path_buf()),
        foreground: config.run_nginx,
    })
}

pub struct NginxProc {
    setup: Setup,
    /// `None` with `--nginx-conf` alone: the config is written, nginx is not run.
    bin: Option<PathBuf>,
    child: Option<Child>,
    started: Instant,
    answered: bool,
    /// Something else already answered on the address when nginx started: an answer
    /// there is not nginx's, and nginx will fail to bind it.
    address_taken: bool,
    restarts: RestartHistory,
    /// The process group of an nginx that exited (and when), while its processes remain.
    leftover: Option<(Pid, Instant)>,
    stopping: bool,
    given_up: bool,
}

/// Where util-linux's setpriv lives on Debian (it execs nginx with a parent-death signal).
const SETPRIV: [&str; 2] = ["/usr/bin/setpriv", "/bin/setpriv"];

impl NginxProc {
    pub fn new(setup: Setup, bin: Option<PathBuf>) -> NginxProc {
        NginxProc {
            setup,
            bin,
            child: None,
            started: Instant::now(),
            answered: false,
            address_taken: false,
            restarts: RestartHistory::default(),
            leftover: None,
            stopping: false,
            given_up: false,
        }
    }

    /// Starts nginx (in the foreground, in its own process group).
    pub fn start(&mut self) -> Result<(), String> {
        let Some(bin) = &self.bin else {
            return Ok(());
        };
        let mut command = match SETPRIV.iter().find(|p| Path::new(p).exists()) {
            // The kernel sends nginx SIGTERM if the launcher dies without stopping it
            // (SIGKILL, a crash), as the instances do for themselves.
            Some(setpriv) => {
                let mut c = Command::new(setpriv);
                c.args(["--pdeathsig", "TERM", "--"]).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let stderr = std::fs::File::create(self.setup.stderr_log())
            .map_err(|e| format!("cannot create {}: {e}", self.setup.stderr_log().display()))?;
        self.address_taken = self.answers();
        let child = command
            .arg("-e")
            .arg(self.setup.error_log())
            .arg("-c")
            .arg(&self.setup.conf_path)
            .stdin(Stdio::null())
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        crate::log::info(&format!(
            "nginx starting (pid {}, config {})",
            child.id(),
            self.setup.conf_path.display()
        ));
        self.child = Some(child);
        self.started = Instant::now();
        self.answered = false;
        Ok(())
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// nginx's address as a URL: `http://127.0.0.1:8000` or `https://...`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.setup.scheme, self.setup.listen)
    }

    /// Whether nginx answers (always true when only the config is written); an error when it
    /// does not answer in time. Restarts it after an unexpected exit.
    pub fn tend(&mut self) -> Result<bool, String> {
        if self.bin.is_none() {
            return Ok(true);
        }
        if self.child.is_none() {
            if self.stopping || self.given_up || self.workers_left() {
                return Ok(false);
            }
            self.start()?;
        }
        if self.answered {
            return Ok(true);
        }
        if !self.address_taken && self.answers() {
            self.answered = true;
            return Ok(true);
        }
        if self.started.elapsed() > ANSWER_WITHIN {
            self.kill();
            self.given_up = true;
            return Err(format!(
                "nginx did not answer on {} within {}s{}; see {}",
                self.setup.listen,
                ANSWER_WITHIN.as_secs(),
                if self.address_taken {
                    " (another process listens there)"
                } else {
                    ""
                },
                self.setup.error_log().display()
            ));
        }
        Ok(false)
    }

    /// Whether processes of the previous nginx's group are still there (waited for up to
    /// `LEFTOVER_WAIT`: a zombie nobody reaps must not stop the restart).
    fn workers_left(&mut self) -> bool {
        let Some((group, since)) = self.leftover else {
            return false;
        };
        if since.elapsed() < LEFTOVER_WAIT
            && rustix::process::test_kill_process_group(group).is_ok()
        {
            return true;
        }
        self.leftover = None;
        false
    }

    /// Whether something accepts connections on nginx's address.
    fn answers(&self) -> bool {
        let target = loopback_if_unspecified(self.setup.listen);
        TcpStream::connect_timeout(&target, Duration::from_millis(100)).is_ok()
    }

    /// The line of nginx's stderr that says why it could not start: its first `[emerg]`
    /// line, else its last line.
    fn start_error(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.setup.stderr_log()).ok()?;
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let line = lines
            .iter()
            .find(|l| l.contains("[emerg]"))
            .or(lines.last())?;
        Some(line.trim().to_string())
    }

    /// Collects nginx if it exited. Returns an error line when it died in a way that is not
    /// repaired by a restart.
    pub fn reap(&mut self, launcher_stopping: bool) -> Option<String> {
        let status = self.child.as_mut()?.try_wait().ok().flatten()?;
        // Its workers outlive a master that was killed, and keep its port: they go too,
        // and nginx is started again only once they are gone.
        self.leftover = self
            .pid()
            .and_then(|p| Pid::from_raw(p as i32))
            .map(|group| (group, Instant::now()));
        if let Some((group, _)) = self.leftover {
            let _ = kill_process_group(group, Signal::KILL);
        }
        self.child = None;
        let what = describe_exit(status);
        if launcher_stopping || self.stopping {
            crate::log::info(&format!("nginx stopped: {what}"));
            return None;
        }
        if !self.answered {
            self.given_up = true;
            return Some(match self.start_error() {
                Some(line) => format!(
                    "nginx could not start ({what}): {line}; see {}",
                    self.setup.error_log().display()
                ),
                None => format!(
                    "nginx {what} at start; see {}",
                    self.setup.error_log().display()
                ),
            });
        }
        let policy = self.setup.restart_policy;
        match self.restarts.on_failure(policy, Instant::now()) {
            Verdict::Restart { nth } => {
                crate::log::warn(&format!(
                    "nginx {what}; restarting it ({nth} of {} restarts within {}s)",
                    policy.max_restarts,
                    policy.window.as_secs()
                ));
                None
            }
            Verdict::GiveUp { restarts } => {
                self.given_up = true;
                Some(format!(
                    "nginx {what}; it was restarted {} within {}s: not restarting it; see {}",
                    crate::log::times(restarts),
                    policy.window.as_secs(),
                    self.setup.error_log().display()
                ))
            }
        }
    }

    /// Rewrites the configuration for instances at `targets` and has a running nginx reload
    /// it gracefully (SIGHUP: new workers take new connections, old ones finish theirs);
    /// says what it did.
    pub fn update_upstream(
        &mut self,
        config: &LauncherConfig,
        targets: &[BindAddr],
    ) -> Result<String, String> {
        self.setup.write(config, targets)?;
        Ok(match (self.bin.is_some(), self.pid()) {
            (true, Some(pid)) => {
                self.signal(Signal::HUP, false);
                format!("nginx (pid {pid}) reloaded")
            }
            (true, None) => "nginx will start with it".into(),
            (false, _) => format!(
                "rewrote {}: reload the nginx that uses it",
                self.setup.conf_path.display()
            ),
        })
    }

    /// SIGQUIT: nginx finishes its requests and exits.
    pub fn stop_gracefully(&mut self) {
        self.stopping = true;
        self.signal(Signal::QUIT, false);
    }

    /// SIGTERM: nginx exits at once.
    pub fn stop_fast(&mut self) {
        self.stopping = true;
        self.signal(Signal::TERM, false);
    }

    /// SIGKILL to nginx and its workers (its process group).
    pub fn kill(&mut self) {
        self.stopping = true;
        self.signal(Signal::KILL, true);
    }

    fn signal(&self, signal: Signal, group: bool) {
        let Some(pid) = self.pid().and_then(|p| Pid::from_raw(p as i32)) else {
            return;
        };
        if group && kill_process_group(pid, signal).is_ok() {
            return;
        }
        let _ = kill_process(pid, signal);
    }

    /// For the status report.
    pub fn describe(&self) -> String {
        match (&self.bin, self.pid()) {
            (None, _) => format!("config {}", self.setup.conf_path.display()),
            (Some(_), Some(pid)) => format!("pid {pid} on {}", self.url()),
            (Some(_), None) => "not running".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use crate::config::Mode;

    fn cli(args: &[String]) -> Cli {
        Cli::parse_from_args(args.iter().map(Into::into).collect()).unwrap()
    }

    /// The launcher's `--nginx-conf` and `evserve nginx-config`, given the same static, TLS
    /// and instance options, write the same text.
    #[test]
    fn launcher_and_nginx_config_write_the_same_text() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        for file in [&cert, &key] {
            std::fs::write(file, "-----BEGIN TEST-----\n").unwrap();
        }
        std::fs::create_dir(dir.path().join("static")).unwrap();
        let shared = [
            "--listen=127.0.0.1:8443".to_string(),
            format!("--tls-cert={}", cert.display()),
            format!("--tls-key={}", key.display()),
            "--redirect-http=8080".into(),
            "--real-ip-from=10.0.0.0/8".into(),
            format!("--static=/static/={d}/static"),
        ];
        let conf = dir.path().join("nginx.conf");
        let mut launcher_args: Vec<String> = vec![
            "--port-range=8001-8004".into(),
            format!("--nginx-conf={}", conf.display()),
        ];
        launcher_args.extend(shared.iter().cloned());
        launcher_args.push("app:application".into());
        let Ok(Mode::Launcher(config)) = cli(&launcher_args).serve.validate() else {
            panic!("launcher flags refused");
        };
        let run_dir = nginx::run_dir_for(&conf);
        let targets: Vec<BindAddr> = addresses(&config).iter().map(local_target).collect();
        let from_launcher =
            nginx::render(&launcher_nginx_config(&config, &run_dir, &targets).unwrap());

        let mut command_args: Vec<String> = vec![
            "nginx-config".into(),
            "--backend=127.0.0.1:8001-8004".into(),
            "--upstream-keepalive=1024".into(),
            format!("--run-dir={}", run_dir.display()),
        ];
        command_args.extend(shared.iter().cloned());
        let Some(Command::NginxConfig(args)) = cli(&command_args).command else {
            panic!("nginx-config flags refused");
        };
        let from_command = nginx::render(&nginx::config_from_args(&args).unwrap());
        for needle in ["ssl http2", "alias", "set_real_ip_from 10.0.0.0/8;"] {
            assert!(
                from_launcher.contains(needle),
                "{needle} missing:\n{from_launcher}"
            );
        }
        assert_eq!(from_launcher, from_command);
    }

    #[test]
    fn socket_dir_gives_one_unix_upstream_per_instance() {
        let args: Vec<String> = [
            "--socket-dir=/run/app",
            "--workers=3",
            "--nginx-conf=/x/n.conf",
        ]
        .into_iter()
        .map(String::from)
        .chain(["app:application".to_string()])
        .collect();
        let Ok(Mode::Launcher(config)) = cli(&args).serve.validate() else {
            panic!("--socket-dir refused");
        };
        let targets: Vec<BindAddr> = addresses(&config).iter().map(local_target).collect();
        let render_in = |run_dir: &Path| {
            nginx::render(&launcher_nginx_config(&config, run_dir, &targets).unwrap())
        };
        let text = render_in(Path::new("/srv/app/nginx.conf.run"));
        nginx::tests::assert_golden("socket_dir.conf", &text);
        let dir = tempfile::tempdir().unwrap();
        let tested = render_in(&dir.path().join("run"));
        if let Some((ok, stderr)) = nginx::tests::nginx_test(dir.path(), &tested, false) {
            assert!(ok, "nginx -t on the --socket-dir config: {stderr}");
        }
        for n in 0..3 {
            let line = format!("server unix:/run/app/instance-{n}.sock max_fails=2");
            assert!(text.contains(&line), "missing {line} in:\n{text}");
        }
        assert!(text.contains("listen 127.0.0.1:8000 backlog"), "{text}");
    }
}
