//! The argument syntax of MAIL, RCPT and VRFY: a path (`<a@b>`, `a@b`, `<>`), then ESMTP
//! parameters (`SIZE=1234 BODY=8BITMIME`).
//!
//! smtpd hands this to the `email` package's header parser, which is lenient and raises on some
//! malformed input (`MAIL FROM:<` closes the connection without a reply). This is a small
//! RFC 5321 parser instead: anything it cannot read is `None`, which the session answers with
//! `501`.

use std::collections::BTreeMap;

/// `arg` without its leading `keyword` (such as `FROM:`, compared without case) and the spaces
/// around the rest; `""` if `arg` does not start with it (smtpd's `_strip_command_keyword`).
pub fn strip_keyword<'a>(keyword: &str, arg: &'a str) -> &'a str {
    match arg.get(..keyword.len()) {
        Some(head) if head.eq_ignore_ascii_case(keyword) => arg[keyword.len()..].trim(),
        _ => "",
    }
}

/// The address at the start of `arg` and the text after it (smtpd's `_getaddr`): `<a@b>` and
/// `<>` with angle brackets (a source route `<@relay:a@b>` is dropped), or a bare `a@b`. The
/// address is the addr-spec without brackets, except that the null path stays `"<>"`.
pub fn address(arg: &str) -> Option<(String, &str)> {
    let arg = arg.trim_start();
    if let Some(inner) = arg.strip_prefix('<') {
        if let Some(rest) = inner.strip_prefix('>') {
            return Some(("<>".to_string(), rest));
        }
        let inner = skip_source_route(inner)?;
        let (spec, rest) = addr_spec(inner)?;
        let rest = rest.strip_prefix('>')?;
        Some((spec.to_string(), rest))
    } else {
        let (spec, rest) = addr_spec(arg)?;
        // A bare address ends at a space or at the end of the line, nowhere else.
        if !(rest.is_empty() || rest.starts_with(char::is_whitespace)) {
            return None;
        }
        Some((spec.to_string(), rest))
    }
}

/// ESMTP parameters as `KEY -> value` (`None` for a bare keyword), or `None` if one is not
/// `KEY[=VALUE]` with an alphanumeric key and a non-empty value (smtpd's `_getparams`). The
/// caller upper-cases them first, as smtpd does. A repeated key keeps its last value.
pub fn parameters(options: &[String]) -> Option<BTreeMap<String, Option<String>>> {
    let mut result = BTreeMap::new();
    for option in options {
        let (key, value) = match option.split_once('=') {
            Some((_, "")) => return None,
            Some((key, value)) => (key, Some(value.to_string())),
            None => (option.as_str(), None),
        };
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
            return None;
        }
        result.insert(key.to_string(), value);
    }
    Some(result)
}

/// `@relay1,@relay2:` before the mailbox in an angle address (RFC 5321's obsolete source route).
fn skip_source_route(inner: &str) -> Option<&str> {
    if !inner.starts_with('@') {
        return Some(inner);
    }
    let (route, rest) = inner.split_once(':')?;
    let valid = route
        .split(',')
        .all(|hop| hop.strip_prefix('@').is_some_and(is_dot_atom));
    valid.then_some(rest)
}

/// `local-part [@ domain]` at the start of `s`: the local part a dot-atom or a quoted string,
/// the domain a dot-atom or an address literal (`[127.0.0.1]`). Returns it and what follows.
fn addr_spec(s: &str) -> Option<(&str, &str)> {
    let local_end = if s.starts_with('"') {
        quoted_string_end(s)?
    } else {
        s.find(|c| !is_atext(c) && c != '.').unwrap_or(s.len())
    };
    if local_end == 0 || !(s.starts_with('"') || is_dot_atom(&s[..local_end])) {
        return None;
    }
    let Some(domain) = s[local_end..].strip_prefix('@') else {
        return Some(s.split_at(local_end));
    };
    let domain_len = if domain.starts_with('[') {
        domain.find(']')? + 1
    } else {
        let len = domain
            .find(|c| !is_atext(c) && c != '.')
            .unwrap_or(domain.len());
        if !is_dot_atom(&domain[..len]) {
            return None;
        }
        len
    };
    Some(s.split_at(local_end + 1 + domain_len))
}

/// The length of the quoted string `"..."` (with `\`-escapes) at the start of `s`.
fn quoted_string_end(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(i + 1),
            '\r' | '\n' => return None,
            _ => {}
        }
    }
    None
}

/// Atoms separated by single dots, none empty.
fn is_dot_atom(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

/// RFC 5322 `atext`, plus any non-ASCII character (RFC 6531).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_case_insensitive() {
        assert_eq!(strip_keyword("FROM:", "from:   <a@b> x"), "<a@b> x");
        assert_eq!(strip_keyword("FROM:", "FROM a@b"), "");
        assert_eq!(strip_keyword("TO:", "T"), "");
        assert_eq!(strip_keyword("TO:", "tö:x"), ""); // not a char boundary: no panic
    }

    #[test]
    fn addresses() {
        let ok = |arg: &str, address: &str, rest: &str| {
            assert_eq!(
                super::address(arg),
                Some((address.to_string(), rest)),
                "{arg:?}"
            )
        };
        ok("<eggs@example>", "eggs@example", "");
        ok("eggs@example SIZE=1", "eggs@example", " SIZE=1");
        ok("  <foo@example.com> size=20", "foo@example.com", " size=20");
        ok("<>", "<>", "");
        ok(
            "<\"Fred Blogs\"@example.com> SIZE=1000",
            "\"Fred Blogs\"@example.com",
            " SIZE=1000",
        );
        ok(
            "\"Fred Blogs\"@example.com SIZE=1000",
            "\"Fred Blogs\"@example.com",
            " SIZE=1000",
        );
        ok("<@relay.example:a@b.example>", "a@b.example", "");
        ok("postmaster", "postmaster", "");
        ok("<a@[127.0.0.1]>", "a@[127.0.0.1]", "");
        for bad in [
            "", "<", "<a@b", "<a@>", "<@a>", "a@b,junk", "\"open@b", ".a@b", "a..b@c", "<a b@c>",
        ] {
            assert_eq!(super::address(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn parameter_syntax() {
        let params =
            |list: &[&str]| parameters(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let parsed = params(&["SIZE=12", "BODY=8BITMIME", "SMTPUTF8"]).unwrap();
        assert_eq!(parsed["SIZE"].as_deref(), Some("12"));
        assert_eq!(parsed["SMTPUTF8"], None);
        assert_eq!(params(&["SIZE="]), None);
        assert_eq!(params(&["=1"]), None);
        assert_eq!(params(&["A-B=1"]), None);
    }
}
