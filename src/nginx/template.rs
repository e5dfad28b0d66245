//! `{{name}}` substitution for the embedded nginx templates.
//!
//! Never leaves a placeholder in its output: an unknown one is a bug caught by the tests, and
//! shows up as an nginx syntax error rather than as silently empty text.

/// Replaces every `{{name}}` in `template` by its value in `values`. Unknown names are kept
/// as written.
pub fn fill(template: &str, values: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(template.len() + 1024);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = &after[..end];
        match values.iter().find(|(key, _)| *key == name) {
            Some((_, value)) => out.push_str(value),
            None => out.push_str(&rest[start..start + 2 + end + 2]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::fill;

    #[test]
    fn fills_known_names_and_keeps_unknown_ones() {
        let values = [("a", "1".to_string()), ("b", "two".to_string())];
        assert_eq!(fill("x{{a}}y{{b}}z", &values), "x1ytwoz");
        assert_eq!(fill("{{c}} {{a}}", &values), "{{c}} 1");
        assert_eq!(fill("open {{a", &values), "open {{a");
    }
}
