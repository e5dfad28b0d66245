//! Golden-file tests of the generated nginx configuration, and `nginx -t` on it when nginx is
//! installed. `UPDATE_GOLDEN=1 cargo test nginx` rewrites the golden files after a deliberate
//! template change (review the diff).

use super::*;

fn golden_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn assert_golden(name: &str, text: &str) {
    let path = golden_path(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert!(
        want == text,
        "{} differs from the generated config:\n{text}",
        path.display()
    );
}

fn single_host(run_dir: PathBuf) -> NginxConfig {
    NginxConfig {
        listen: "127.0.0.1:8000".parse().unwrap(),
        backends: parse_backend("127.0.0.1:8001-8004").unwrap(),
        max_body_size: 1 << 30,
        backend_keep_alive: Duration::from_secs(75),
        upstream_keepalive: 1024,
        read_timeout_secs: 60,
        run_dir: RunDir::Absolute(run_dir),
        foreground: true,
    }
}

fn several_hosts_args() -> NginxConfigArgs {
    NginxConfigArgs {
        listen: "0.0.0.0:80".into(),
        backends: vec![
            "10.0.0.11:8001-8004".into(),
            "10.0.0.12:8001-8004".into(),
            "unix:/run/evserve/app.sock".into(),
        ],
        max_body_size: "10M".into(),
        keep_alive: 75,
        upstream_keepalive: 256,
        static_mounts: vec![],
    }
}

#[test]
fn single_host_matches_golden() {
    let text = render(&single_host(PathBuf::from("/srv/app/nginx.conf.run")));
    assert!(!text.contains("{{"), "placeholder left in:\n{text}");
    assert_golden("single_host.conf", &text);
}

#[test]
fn several_hosts_matches_golden() {
    let text = render(&config_from_args(&several_hosts_args()).unwrap());
    assert!(!text.contains("{{"), "placeholder left in:\n{text}");
    assert_golden("several_hosts.conf", &text);
}

#[test]
fn required_directives_are_present() {
    let text = render(&single_host(PathBuf::from("/x/run")));
    for needle in [
        "least_conn;",
        "keepalive 1024;",
        "keepalive_timeout 60s;",
        "proxy_http_version 1.1;",
        "proxy_set_header Connection \"\";",
        "proxy_next_upstream error timeout http_502 http_503;",
        "proxy_next_upstream_tries 3;",
        "X-Forwarded-For $remote_addr;",
        "X-Forwarded-Proto $scheme;",
        "client_max_body_size 1g;",
        "daemon off;",
        "pid /x/run/nginx.pid;",
        "server 127.0.0.1:8004 ",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert!(!text.contains("\nuser "), "no user directive:\n{text}");
    // A client's own X-Forwarded-For must never be passed on to evserve, which trusts nginx.
    assert!(!text.contains("$proxy_add_x_forwarded_for"), "{text}");
}

#[test]
fn upstream_idle_timeout_stays_below_backend_keep_alive() {
    for secs in 2..200 {
        let keep_alive = Duration::from_secs(secs);
        let idle = upstream_idle_timeout(keep_alive);
        assert!(idle < keep_alive && !idle.is_zero(), "keep-alive {secs}s");
    }
    assert_eq!(
        upstream_idle_timeout(Duration::from_secs(75)),
        Duration::from_secs(60)
    );
    assert_eq!(
        nginx_duration(upstream_idle_timeout(Duration::from_secs(10))),
        "6666ms"
    );
}

#[test]
fn sizes_use_the_largest_exact_unit() {
    assert_eq!(nginx_size(1 << 30), "1g");
    assert_eq!(nginx_size(10 << 20), "10m");
    assert_eq!(nginx_size(1536), "1536");
    assert_eq!(nginx_size(2048), "2k");
    assert_eq!(nginx_size(0), "0");
}

#[test]
fn backends_parse_and_bad_ones_are_refused() {
    assert_eq!(parse_backend("h:8001-8003").unwrap().len(), 3);
    assert_eq!(
        parse_backend("[::1]:9000").unwrap(),
        vec![Backend::Tcp {
            host: "[::1]".into(),
            port: 9000
        }]
    );
    for bad in ["h", "h:0", "h:x", ":80", "h;evil:80", "unix:", "h:9-1"] {
        assert!(parse_backend(bad).is_err(), "{bad} accepted");
    }
    let mut args = several_hosts_args();
    args.backends.push("10.0.0.11:8002".into());
    assert!(
        config_from_args(&args).is_err(),
        "repeated backend accepted"
    );
}

#[test]
fn run_dir_sits_next_to_the_config() {
    assert_eq!(
        run_dir_for(Path::new("/a/b/nginx.conf")),
        PathBuf::from("/a/b/nginx.conf.run")
    );
}

/// Runs `nginx -t` on `text`; `None` when nginx is not installed.
fn nginx_test(dir: &Path, text: &str, prefix_relative: bool) -> Option<(bool, String)> {
    let nginx = find_nginx()?;
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, text).unwrap();
    std::fs::create_dir_all(dir.join("run")).unwrap();
    let mut cmd = std::process::Command::new(nginx);
    if prefix_relative {
        cmd.arg("-p").arg(dir);
    }
    let out = cmd
        .arg("-e")
        .arg(dir.join("run/error.log"))
        .arg("-t")
        .arg("-c")
        .arg(&conf)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    Some((out.status.success(), stderr))
}

#[test]
fn nginx_accepts_generated_configs() {
    let dir = tempfile::tempdir().unwrap();
    let single = render(&single_host(dir.path().join("run")));
    let Some((ok, stderr)) = nginx_test(dir.path(), &single, false) else {
        eprintln!("SKIPPED: nginx is not installed (apt-get install nginx)");
        return;
    };
    assert!(ok, "nginx -t on the single-host config: {stderr}");
    let several = render(&config_from_args(&several_hosts_args()).unwrap());
    let (ok, stderr) = nginx_test(dir.path(), &several, true).unwrap();
    assert!(ok, "nginx -t on the several-hosts config: {stderr}");
}
