use super::*;
use crate::http1::{parse_head, Limits};

fn head_of(raw: &[u8]) -> Head {
    let mut head = Head::default();
    assert_eq!(parse_head(raw, &Limits::default(), &mut head), Ok(true));
    head
}

fn render_with(format: &str, raw: &[u8], response_head: &[u8]) -> String {
    let head = head_of(raw);
    let plan = Plan::parse(format).unwrap();
    let fields = Fields {
        peer: Some("127.0.0.1:40000".parse().unwrap()),
        request: Some((raw, &head)),
        unparsed_line: None,
        status: 404,
        body_bytes: 0,
        duration: Duration::from_micros(1_234_567),
        response_head,
        time: "01/Dec/2026:13:51:46 +0000",
        pid: 42,
    };
    let mut out = Vec::new();
    plan.render(&fields, &mut out);
    String::from_utf8(out).unwrap()
}

fn render(format: &str, raw: &[u8]) -> String {
    render_with(format, raw, b"404 Not Found\r\nX-Out: a\"b\r\n")
}

const GET: &[u8] = b"GET /a%20b/%C3%A9?x=1&y=%22 HTTP/1.1\r\nHost: h\r\nUser-Agent: ag\"ent\\\r\nReferer: http://r/\r\n\r\n";

#[test]
fn the_request_atoms_read_as_gunicorn_writes_them() {
    assert_eq!(render("%(h)s %(l)s", GET), "127.0.0.1 -");
    assert_eq!(render("%(r)s", GET), "GET /a%20b/%C3%A9?x=1&y=%22 HTTP/1.1");
    assert_eq!(render("%(m)s|%(q)s|%(H)s", GET), "GET|x=1&y=%22|HTTP/1.1");
    assert_eq!(render("%(U)s", GET), "/a b/\u{c3}\u{a9}");
    assert_eq!(render("%(f)s|%(a)s", GET), "http://r/|ag\\\"ent\\");
    assert_eq!(render("%(q)s", b"GET / HTTP/1.0\r\n\r\n"), "");
    assert_eq!(render("%(f)s", b"GET / HTTP/1.0\r\n\r\n"), "-");
}

#[test]
fn status_bytes_time_and_pid() {
    assert_eq!(render("%(s)s %(B)s %(b)s", GET), "404 0 0");
    assert_eq!(render("%(t)s", GET), "[01/Dec/2026:13:51:46 +0000]");
    assert_eq!(render("%(p)s", GET), "<42>");
}

#[test]
fn durations_in_each_unit() {
    assert_eq!(
        render("%(T)s %(M)s %(D)s %(L)s", GET),
        "1 1234 1234567 1.234567"
    );
}

#[test]
fn the_user_comes_from_basic_auth_only() {
    let req = |auth: &str| format!("GET / HTTP/1.1\r\nHost: h\r\nAuthorization: {auth}\r\n\r\n");
    assert_eq!(
        render("%(u)s", req("Basic dXNlcjpwYXNz").as_bytes()),
        "user"
    );
    assert_eq!(render("%(u)s", req("basic w6k6eA==").as_bytes()), "é");
    assert_eq!(render("%(u)s", req("Basic !!!").as_bytes()), "-");
    assert_eq!(render("%(u)s", req("Bearer dXNlcjpwYXNz").as_bytes()), "-");
    assert_eq!(render("%(u)s", GET), "-");
}

#[test]
fn header_atoms_ignore_case_and_the_last_field_wins() {
    let raw = b"GET / HTTP/1.1\r\nHost: h\r\nX-In: one\r\nx-in: two\r\n\r\n";
    assert_eq!(render("%({x-in}i)s %({X-IN}I)s", raw), "two two");
    assert_eq!(render("%({x-missing}i)s", raw), "-");
    assert_eq!(render("%({x-out}o)s %({X-Out}o)s", raw), "a\\\"b a\\\"b");
    assert_eq!(render("%({content-type}o)s", raw), "-");
}

#[test]
fn environ_atoms_hold_the_cgi_variables() {
    let raw = b"GET /p%2Fq?a=1 HTTP/1.0\r\nX-In: one\r\nX-In: two\r\n\r\n";
    assert_eq!(
        render("%({path_info}e)s %({QUERY_STRING}e)s %({raw_uri}e)s", raw),
        "/p/q a=1 /p%2Fq?a=1"
    );
    assert_eq!(render("%({http_x_in}e)s", raw), "one,two");
    assert_eq!(render("%({remote_port}e)s %({nothing}e)s", raw), "40000 -");
}

#[test]
fn percent_signs_and_unknown_atoms() {
    assert_eq!(render("100%% %(zz)s %(H)s", GET), "100% - HTTP/1.1");
    assert_eq!(render("%({x}q)s %({x)s", GET), "- -");
    assert_eq!(render("no atoms", GET), "no atoms");
}

#[test]
fn a_key_may_hold_balanced_parentheses() {
    assert_eq!(render("%(a(b)c)s|", GET), "-|");
}

#[test]
fn formats_python_would_not_take_are_refused() {
    for bad in ["%s", "%(h)d", "50%", "%(h", "%(h)"] {
        assert!(Plan::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn bytes_are_latin1_and_control_characters_cannot_break_the_line() {
    let raw = b"GET /a%0Ab%00%09 HTTP/1.1\r\nHost: h\r\nUser-Agent: \xe9\tx\r\n\r\n";
    assert_eq!(render("%(U)s", raw), "/a\\x0ab\\x00\t");
    assert_eq!(render("%(a)s", raw), "\u{e9}\tx");
}

#[test]
fn only_response_header_atoms_need_the_response_head() {
    assert!(Plan::parse("%({x}o)s").unwrap().wants_response_headers());
    assert!(!Plan::parse("%(h)s %({x}i)s")
        .unwrap()
        .wants_response_headers());
}

#[test]
fn a_request_refused_early_shows_its_line_or_dashes() {
    let plan = Plan::parse("%(r)s|%(m)s|%(U)s|%(a)s|%(s)s").unwrap();
    let mut fields = Fields {
        peer: None,
        request: None,
        unparsed_line: Some(b"GET /\"x HTTP/1.1"),
        status: 400,
        body_bytes: 0,
        duration: Duration::ZERO,
        response_head: b"",
        time: "",
        pid: 1,
    };
    let mut out = Vec::new();
    plan.render(&fields, &mut out);
    assert_eq!(out, b"GET /\\\"x HTTP/1.1|-|-|-|400");
    fields.unparsed_line = None;
    out.clear();
    plan.render(&fields, &mut out);
    assert_eq!(out, b"-|-|-|-|400");
}
