//! Golden-file tests of the generated nginx configuration, and `nginx -t` on it when nginx is
//! installed. `UPDATE_GOLDEN=1 cargo test nginx` rewrites the golden files after a deliberate
//! template change (review the diff).

use super::*;
use crate::config::{StaticMount, TlsSetup};

fn golden_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

pub(crate) fn assert_golden(name: &str, text: &str) {
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

fn assert_contains_all(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

fn single_host(run_dir: PathBuf) -> NginxConfig {
    build(NginxConfig {
        listen: "127.0.0.1:8000".parse().unwrap(),
        tls: None,
        real_ip_from: vec![],
        static_mounts: vec![],
        servers: parse_backend("127.0.0.1:8001-8004").unwrap(),
        max_body_size: 1 << 30,
        backend_keep_alive: Duration::from_secs(75),
        upstream_keepalive: 1024,
        read_timeout_secs: 60,
        run_dir: RunDir::Absolute(run_dir),
        foreground: true,
    })
    .unwrap()
}

fn args(backends: &[&str]) -> NginxConfigArgs {
    NginxConfigArgs {
        listen: "0.0.0.0:80".into(),
        backends: backends.iter().map(|b| b.to_string()).collect(),
        backups: vec![],
        drains: vec![],
        max_body_size: "10M".into(),
        keep_alive: 75,
        upstream_keepalive: 256,
        run_dir: None,
        static_mounts: vec![],
        front: crate::cli::NginxFrontArgs::default(),
    }
}

fn several_hosts_args() -> NginxConfigArgs {
    args(&[
        "10.0.0.11:8001-8004",
        "10.0.0.12:8001-8004",
        "unix:/run/evserve/app.sock",
    ])
}

/// Weights, a backup host and a drained host: what several hosts need.
fn weighted_args() -> NginxConfigArgs {
    let mut a = args(&[
        "10.0.0.11:8001-8002@3",
        "10.0.0.12:8001-8002",
        "10.0.0.13:8001-8002",
    ]);
    a.backups = vec!["10.0.0.14:8001-8002".into()];
    a.drains = vec!["10.0.0.12".into()];
    a
}

/// TLS on 443 with the default plain-HTTP redirect, and two static mounts (one inside the
/// other, one with a space and a quote in its directory).
fn tls_and_static(cert: PathBuf, key: PathBuf, static_dirs: [PathBuf; 2]) -> NginxConfig {
    let listen: SocketAddr = "127.0.0.1:443".parse().unwrap();
    let [media, assets] = static_dirs;
    build(NginxConfig {
        listen,
        tls: Some(TlsSetup {
            cert,
            key,
            redirect_from: Some("127.0.0.1:80".parse().unwrap()),
        }),
        real_ip_from: vec!["10.0.0.0/8".into(), "2001:db8::1".into()],
        static_mounts: vec![
            StaticMount {
                url_prefix: "/static/media/".into(),
                dir: media,
            },
            StaticMount {
                url_prefix: "/static/".into(),
                dir: assets,
            },
        ],
        ..single_host(PathBuf::from("/srv/app/nginx.conf.run"))
    })
    .unwrap()
}

fn tls_and_static_golden() -> NginxConfig {
    tls_and_static(
        "/etc/ssl/app/fullchain.pem".into(),
        "/etc/ssl/app/privkey.pem".into(),
        [
            "/srv/app/media files/it's \"here\"".into(),
            "/srv/app/static".into(),
        ],
    )
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
fn weights_backup_and_drain_match_golden() {
    let text = render(&config_from_args(&weighted_args()).unwrap());
    assert!(!text.contains("{{"), "placeholder left in:\n{text}");
    assert_contains_all(
        &text,
        &[
            "server 10.0.0.11:8001 weight=3 max_fails=2 fail_timeout=2s;",
            "server 10.0.0.12:8002 max_fails=2 fail_timeout=2s down;",
            "server 10.0.0.13:8001 max_fails=2 fail_timeout=2s;",
            "server 10.0.0.14:8002 max_fails=2 fail_timeout=2s backup;",
            "proxy_connect_timeout 1s;",
        ],
    );
    // A POST is never sent twice: nginx's non_idempotent retry stays off.
    assert!(!text.contains("non_idempotent"), "{text}");
    assert_golden("weights_backup_drain.conf", &text);
}

#[test]
fn tls_and_static_match_golden() {
    let text = render(&tls_and_static_golden());
    assert!(!text.contains("{{"), "placeholder left in:\n{text}");
    assert_contains_all(
        &text,
        &[
            "listen 127.0.0.1:443 ssl http2 backlog=4096;",
            "ssl_certificate \"/etc/ssl/app/fullchain.pem\";",
            "ssl_protocols TLSv1.2 TLSv1.3;",
            "proxy_set_header X-Forwarded-Proto https;",
            "listen 127.0.0.1:80;",
            "return 301 https://$host$request_uri;",
            "location ^~ \"/static/media/\" {",
            "alias \"/srv/app/media files/it's \\\"here\\\"/\";",
            "autoindex off;",
            "expires 1h;",
            "text/css css;",
            "set_real_ip_from 10.0.0.0/8;",
            "real_ip_recursive on;",
        ],
    );
    let media = text.find("\"/static/media/\"").unwrap();
    let assets = text.find("\"/static/\"").unwrap();
    assert!(media < assets, "longest prefix first:\n{text}");
    assert_golden("tls_static.conf", &text);
}

#[test]
fn https_on_another_port_redirects_there() {
    let mut config = tls_and_static_golden();
    config.listen = "0.0.0.0:8443".parse().unwrap();
    let text = render(&config);
    assert!(
        text.contains("return 301 https://$host:8443$request_uri;"),
        "{text}"
    );
    if let Some(tls) = &mut config.tls {
        tls.redirect_from = None;
    }
    assert!(!render(&config).contains("return 301"));
}

#[test]
fn paths_nginx_would_misread_are_refused() {
    let base = single_host(PathBuf::from("/x/run"));
    let with_dir = |dir: &str| {
        build(NginxConfig {
            static_mounts: vec![StaticMount {
                url_prefix: "/s/".into(),
                dir: dir.into(),
            }],
            ..base.clone()
        })
    };
    assert!(with_dir("/srv/a$uri").is_err(), "$ accepted");
    assert!(with_dir("/srv/a\nb").is_err(), "newline accepted");
    assert!(with_dir("/srv/a b\"c").is_ok());
    let run_dir = |dir: &str| {
        build(NginxConfig {
            run_dir: RunDir::Absolute(dir.into()),
            ..base.clone()
        })
    };
    assert!(run_dir("/srv/my app/nginx.conf.run").is_err());
    assert!(run_dir("/srv/app;x/nginx.conf.run").is_err());
}

#[test]
fn drain_and_backup_mistakes_are_refused() {
    let mut a = weighted_args();
    a.drains.push("10.0.0.99".into());
    let err = config_from_args(&a).unwrap_err();
    assert!(err.contains("--drain 10.0.0.99"), "{err}");
    let mut a = args(&["10.0.0.11:8001"]);
    a.drains = vec!["10.0.0.11".into()];
    assert!(config_from_args(&a)
        .unwrap_err()
        .contains("every backend is drained"));
    let mut a = args(&["10.0.0.11:8001"]);
    a.backups = vec!["10.0.0.11:8001".into()];
    assert!(config_from_args(&a).unwrap_err().contains("repeats"));
    for bad in ["h:80@0", "h:80@x", "h:80@", "h:80@1001"] {
        assert!(parse_backend(bad).is_err(), "{bad} accepted");
    }
    assert_eq!(parse_backend("unix:/a.sock@2").unwrap()[0].weight, 2);
    let mut a = args(&["[::1]:8001", "127.0.0.1:8001"]);
    a.drains = vec!["::1".into()];
    let text = render(&config_from_args(&a).unwrap());
    assert!(
        text.contains("server [::1]:8001 max_fails=2 fail_timeout=2s down;"),
        "{text}"
    );
}

#[test]
fn required_directives_are_present() {
    let text = render(&single_host(PathBuf::from("/x/run")));
    assert_contains_all(
        &text,
        &[
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
        ],
    );
    assert!(!text.contains("\nuser "), "no user directive:\n{text}");
    assert!(!text.contains("ssl"), "no TLS without --tls-cert:\n{text}");
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
        vec![UpstreamServer::plain(Backend::Tcp {
            host: "[::1]".into(),
            port: 9000
        })]
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
pub(crate) fn nginx_test(dir: &Path, text: &str, prefix_relative: bool) -> Option<(bool, String)> {
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

/// A self-signed certificate and key for localhost made with openssl in `dir`; `None`
/// when openssl is not installed.
fn self_signed(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .ok()?;
    made.success().then_some((cert, key))
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
    for (name, args) in [
        ("several-hosts", several_hosts_args()),
        ("weights/backup/drain", weighted_args()),
    ] {
        let text = render(&config_from_args(&args).unwrap());
        let (ok, stderr) = nginx_test(dir.path(), &text, true).unwrap();
        assert!(ok, "nginx -t on the {name} config: {stderr}");
    }
}

#[test]
fn nginx_accepts_tls_and_static_with_awkward_paths() {
    let dir = tempfile::tempdir().unwrap();
    let Some((cert, key)) = self_signed(dir.path()) else {
        eprintln!("SKIPPED: openssl is not installed");
        return;
    };
    let media = dir.path().join("media files/it's \"here\"");
    let assets = dir.path().join("static");
    for d in [&media, &assets] {
        std::fs::create_dir_all(d).unwrap();
    }
    let mut config = tls_and_static(cert, key, [media, assets]);
    config.run_dir = RunDir::Absolute(dir.path().join("run"));
    // Ports below 1024 are only bound when nginx runs, not by nginx -t.
    let Some((ok, stderr)) = nginx_test(dir.path(), &render(&config), false) else {
        eprintln!("SKIPPED: nginx is not installed (apt-get install nginx)");
        return;
    };
    assert!(ok, "nginx -t on the TLS and static config: {stderr}");
}
