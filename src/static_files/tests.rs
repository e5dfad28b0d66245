//! One test per rule of `static_files`.

use super::*;

fn site() -> StaticSite {
    StaticSite::new(
        vec![
            StaticMount {
                url_prefix: "/static/admin/".into(),
                dir: "/srv/admin".into(),
            },
            StaticMount {
                url_prefix: "/static/".into(),
                dir: "/srv/static".into(),
            },
        ],
        "",
    )
}

fn file_route(dir: &str, relative: &str) -> Route<'static> {
    Route::File {
        dir: Box::leak(PathBuf::from(dir).into_boxed_path()),
        relative: PathBuf::from(relative),
    }
}

#[test]
fn a_path_under_no_mount_goes_to_the_app() {
    assert_eq!(site().route(b"/"), Route::App);
    assert_eq!(site().route(b"/static"), Route::App);
    assert_eq!(site().route(b"/staticx/a.css"), Route::App);
}

#[test]
fn a_path_under_a_mount_names_a_file_beneath_its_directory() {
    assert_eq!(
        site().route(b"/static/css/base.css"),
        file_route("/srv/static", "css/base.css")
    );
}

#[test]
fn the_longest_prefix_wins() {
    assert_eq!(
        site().route(b"/static/admin/x.css"),
        file_route("/srv/admin", "x.css")
    );
}

#[test]
fn the_path_is_percent_decoded_before_matching() {
    assert_eq!(
        site().route(b"/st%61tic/a%20b.txt"),
        file_route("/srv/static", "a b.txt")
    );
}

#[test]
fn the_root_path_is_taken_off_first() {
    let mut s = site();
    s.root_path = b"/app".to_vec();
    assert_eq!(
        s.route(b"/app/static/a.css"),
        file_route("/srv/static", "a.css")
    );
    assert_eq!(
        s.route(b"/static/a.css"),
        file_route("/srv/static", "a.css")
    );
    assert_eq!(s.route(b"/apps/static/a.css"), Route::App);
}

#[test]
fn dot_dot_segments_are_refused() {
    assert_eq!(site().route(b"/static/../secret"), Route::Refused);
    assert_eq!(site().route(b"/static/a/../../secret"), Route::Refused);
    assert_eq!(site().route(b"/static/a/.."), Route::Refused);
    assert_eq!(site().route(b"/static/./a.css"), Route::Refused);
}

#[test]
fn encoded_dot_dot_is_refused() {
    assert_eq!(site().route(b"/static/%2e%2e/secret"), Route::Refused);
    assert_eq!(site().route(b"/static/%2E./secret"), Route::Refused);
}

#[test]
fn encoded_slash_backslash_and_nul_are_refused() {
    assert_eq!(site().route(b"/static/a%2fb"), Route::Refused);
    assert_eq!(site().route(b"/static/a%2Fb"), Route::Refused);
    assert_eq!(site().route(b"/static/..%5csecret"), Route::Refused);
    assert_eq!(site().route(b"/static/a%00.css"), Route::Refused);
    assert_eq!(site().route(b"/static/a\\b"), Route::Refused);
}

#[test]
fn a_directory_path_is_refused() {
    assert_eq!(site().route(b"/static/"), Route::Refused);
    assert_eq!(site().route(b"/static/css/"), Route::Refused);
    assert_eq!(site().route(b"/static//"), Route::Refused);
}

#[test]
fn empty_segments_are_merged() {
    assert_eq!(
        site().route(b"/static//etc//passwd"),
        file_route("/srv/static", "etc/passwd")
    );
}

#[test]
fn only_get_and_head_are_allowed() {
    assert!(method_allowed(b"GET"));
    assert!(method_allowed(b"HEAD"));
    assert!(!method_allowed(b"POST"));
    assert!(!method_allowed(b"get"));
}

#[test]
fn a_405_says_which_methods_are_allowed() {
    let p = refusal(405);
    assert!(p.head.starts_with("405 Method Not Allowed\r\n"));
    assert!(p.head.contains("Allow: GET, HEAD\r\n"));
}

#[test]
fn a_404_names_no_path() {
    let p = refusal(404);
    assert_eq!(p.body, Body::Text("Not Found: no such file\n"));
    assert!(p.head.contains("Content-Length: 24\r\n"));
}

const FILE: FileFacts = FileFacts {
    size: 1000,
    mtime_secs: 1_700_000_000,
    mtime_nanos: 5,
};
const LAST_MODIFIED: &str = "Tue, 14 Nov 2023 22:13:20 GMT";

fn etag() -> String {
    FILE.etag()
}

fn get(cond: Conditions) -> Plan {
    plan(false, Path::new("a.css"), &FILE, &cond)
}

fn header<'p>(p: &'p Plan, name: &str) -> Option<&'p str> {
    p.head.split("\r\n").find_map(|line| {
        let (n, v) = line.split_once(": ")?;
        n.eq_ignore_ascii_case(name).then_some(v)
    })
}

#[test]
fn a_plain_get_is_200_with_validators_type_and_length() {
    let p = get(Conditions::default());
    assert_eq!(p.status, 200);
    assert_eq!(header(&p, "Content-Type"), Some("text/css; charset=utf-8"));
    assert_eq!(header(&p, "Content-Length"), Some("1000"));
    assert_eq!(header(&p, "Last-Modified"), Some(LAST_MODIFIED));
    assert_eq!(header(&p, "ETag"), Some(&etag()[..]));
    assert_eq!(header(&p, "Accept-Ranges"), Some("bytes"));
    assert_eq!(
        p.body,
        Body::File {
            start: 0,
            len: 1000
        }
    );
}

#[test]
fn the_content_type_comes_from_the_extension_with_a_charset_for_text() {
    assert_eq!(content_type(Path::new("a.png")), "image/png");
    assert_eq!(
        content_type(Path::new("a.html")),
        "text/html; charset=utf-8"
    );
    assert!(content_type(Path::new("a.js")).ends_with("; charset=utf-8"));
    assert_eq!(
        content_type(Path::new("noextension")),
        "application/octet-stream"
    );
}

#[test]
fn if_none_match_with_the_current_etag_is_304() {
    let p = get(Conditions {
        if_none_match: Some(format!("\"x\", {}", etag()).into_bytes()),
        ..Conditions::default()
    });
    assert_eq!(p.status, 304);
    assert_eq!(p.body, Body::None);
    assert_eq!(header(&p, "ETag"), Some(&etag()[..]));
    assert_eq!(header(&p, "Content-Length"), None);
}

#[test]
fn if_none_match_compares_weakly() {
    let p = get(Conditions {
        if_none_match: Some(format!("W/{}", etag()).into_bytes()),
        ..Conditions::default()
    });
    assert_eq!(p.status, 304);
}

#[test]
fn if_none_match_star_is_304_for_an_existing_file() {
    let p = get(Conditions {
        if_none_match: Some(b"*".to_vec()),
        ..Conditions::default()
    });
    assert_eq!(p.status, 304);
}

#[test]
fn if_none_match_with_another_etag_is_200() {
    let p = get(Conditions {
        if_none_match: Some(b"\"other\"".to_vec()),
        ..Conditions::default()
    });
    assert_eq!(p.status, 200);
}

#[test]
fn if_modified_since_at_or_after_the_modification_is_304() {
    let p = get(Conditions {
        if_modified_since: Some(LAST_MODIFIED.as_bytes().to_vec()),
        ..Conditions::default()
    });
    assert_eq!(p.status, 304);
    let earlier = get(Conditions {
        if_modified_since: Some(b"Tue, 14 Nov 2023 22:13:19 GMT".to_vec()),
        ..Conditions::default()
    });
    assert_eq!(earlier.status, 200);
}

#[test]
fn an_invalid_if_modified_since_is_ignored() {
    let p = get(Conditions {
        if_modified_since: Some(b"yesterday".to_vec()),
        ..Conditions::default()
    });
    assert_eq!(p.status, 200);
}

#[test]
fn if_none_match_takes_precedence_over_if_modified_since() {
    let p = get(Conditions {
        if_none_match: Some(b"\"other\"".to_vec()),
        if_modified_since: Some(LAST_MODIFIED.as_bytes().to_vec()),
        ..Conditions::default()
    });
    assert_eq!(p.status, 200);
}

#[test]
fn a_failed_if_match_or_if_unmodified_since_is_412() {
    let p = get(Conditions {
        if_match: Some(b"\"other\"".to_vec()),
        ..Conditions::default()
    });
    assert_eq!(p.status, 412);
    let weak = get(Conditions {
        if_match: Some(format!("W/{}", etag()).into_bytes()),
        ..Conditions::default()
    });
    assert_eq!(weak.status, 412, "If-Match compares strongly");
    let p = get(Conditions {
        if_unmodified_since: Some(b"Tue, 14 Nov 2023 22:13:19 GMT".to_vec()),
        ..Conditions::default()
    });
    assert_eq!(p.status, 412);
    let held = get(Conditions {
        if_match: Some(etag().into_bytes()),
        ..Conditions::default()
    });
    assert_eq!(held.status, 200);
}

fn range(value: &str) -> Plan {
    get(Conditions {
        range: Some(value.as_bytes().to_vec()),
        ..Conditions::default()
    })
}

#[test]
fn a_closed_range_is_206_with_content_range() {
    let p = range("bytes=10-19");
    assert_eq!(p.status, 206);
    assert_eq!(header(&p, "Content-Range"), Some("bytes 10-19/1000"));
    assert_eq!(header(&p, "Content-Length"), Some("10"));
    assert_eq!(p.body, Body::File { start: 10, len: 10 });
}

#[test]
fn an_open_range_runs_to_the_end() {
    let p = range("bytes=990-");
    assert_eq!(header(&p, "Content-Range"), Some("bytes 990-999/1000"));
    assert_eq!(
        p.body,
        Body::File {
            start: 990,
            len: 10
        }
    );
}

#[test]
fn a_suffix_range_is_the_last_bytes() {
    let p = range("bytes=-5");
    assert_eq!(p.body, Body::File { start: 995, len: 5 });
    let all = range("bytes=-5000");
    assert_eq!(all.status, 206);
    assert_eq!(
        all.body,
        Body::File {
            start: 0,
            len: 1000
        }
    );
}

#[test]
fn a_range_end_past_the_file_is_clamped() {
    let p = range("bytes=900-5000");
    assert_eq!(header(&p, "Content-Range"), Some("bytes 900-999/1000"));
}

#[test]
fn a_range_past_the_end_is_416_with_the_size() {
    for r in ["bytes=1000-", "bytes=5000-6000", "bytes=-0"] {
        let p = range(r);
        assert_eq!(p.status, 416, "{r}");
        assert_eq!(header(&p, "Content-Range"), Some("bytes */1000"));
        assert_eq!(p.body, Body::None);
    }
}

#[test]
fn several_ranges_or_an_invalid_one_get_the_whole_file() {
    for r in [
        "bytes=0-1,5-6",
        "bytes=5-1",
        "items=0-1",
        "bytes=a-b",
        "bytes=",
        "0-1",
    ] {
        let p = range(r);
        assert_eq!(p.status, 200, "{r}");
        assert_eq!(
            p.body,
            Body::File {
                start: 0,
                len: 1000
            }
        );
    }
}

#[test]
fn a_range_on_head_is_ignored() {
    let p = plan(
        true,
        Path::new("a.css"),
        &FILE,
        &Conditions {
            range: Some(b"bytes=0-1".to_vec()),
            ..Conditions::default()
        },
    );
    assert_eq!(p.status, 200);
    assert_eq!(header(&p, "Content-Length"), Some("1000"));
}

#[test]
fn if_range_with_the_current_validator_keeps_the_range() {
    for validator in [etag(), LAST_MODIFIED.to_string()] {
        let p = get(Conditions {
            range: Some(b"bytes=0-1".to_vec()),
            if_range: Some(validator.into_bytes()),
            ..Conditions::default()
        });
        assert_eq!(p.status, 206);
    }
}

#[test]
fn if_range_with_a_stale_or_weak_validator_gets_the_whole_file() {
    let stale = [
        "\"other\"".to_string(),
        format!("W/{}", etag()),
        "Tue, 14 Nov 2023 22:13:19 GMT".to_string(),
    ];
    for validator in stale {
        let p = get(Conditions {
            range: Some(b"bytes=0-1".to_vec()),
            if_range: Some(validator.clone().into_bytes()),
            ..Conditions::default()
        });
        assert_eq!(p.status, 200, "{validator}");
    }
}

#[test]
fn an_empty_file_has_no_satisfiable_range() {
    let empty = FileFacts { size: 0, ..FILE };
    let cond = Conditions {
        range: Some(b"bytes=0-".to_vec()),
        ..Conditions::default()
    };
    assert_eq!(plan(false, Path::new("a"), &empty, &cond).status, 416);
    let whole = plan(false, Path::new("a"), &empty, &Conditions::default());
    assert_eq!(whole.body, Body::File { start: 0, len: 0 });
}

#[test]
fn conditions_fill_their_slot_whatever_the_name_case() {
    let mut c = Conditions::default();
    *c.slot(b"If-None-Match").unwrap() = Some(b"x".to_vec());
    *c.slot(b"RANGE").unwrap() = Some(b"y".to_vec());
    assert!(c.slot(b"Host").is_none());
    assert_eq!(c.if_none_match.as_deref(), Some(&b"x"[..]));
    assert_eq!(c.range.as_deref(), Some(&b"y"[..]));
}
