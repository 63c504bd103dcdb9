//! The EHLO keywords the proxy advertises (the upstream's, minus AUTH and STARTTLS), the list
//! common to several upstreams, and the client's EHLO argument.

/// The upstream lines that never reach a client: every `AUTH …` and old-style `AUTH=…` line
/// (the proxy offers its own `AUTH PLAIN LOGIN`), and `STARTTLS` (the proxy's own TLS is
/// announced by the core). Also lines that could not go out as one reply line: empty ones, and
/// ones with control characters or longer than [`MAX_KEYWORD_LINE`].
pub(crate) fn is_kept(line: &str) -> bool {
    let keyword = keyword(line);
    !(line.is_empty()
        || line.len() > MAX_KEYWORD_LINE
        || line.chars().any(char::is_control)
        || keyword.eq_ignore_ascii_case("STARTTLS")
        || keyword.eq_ignore_ascii_case("AUTH")
        || (keyword.len() >= 5 && keyword[..5].eq_ignore_ascii_case("AUTH=")))
}

/// The longest keyword line passed on: with `250-` and CRLF, RFC 5321's 512-octet reply line.
pub(crate) const MAX_KEYWORD_LINE: usize = 512 - 6;

/// The EHLO keyword of a line: up to the first space.
fn keyword(line: &str) -> &str {
    line.split(' ').next().unwrap_or_default()
}

/// The EHLO keywords every upstream in `lists` offers, for a listener that learns which upstream
/// a client uses only at its AUTH: nothing it advertises may then be missing after the splice.
///
/// Keywords match without regard to case; the line comes from the first list, spelled as there.
/// `SIZE` gets the smallest limit (RFC 1870: `SIZE 0` means no limit, so the smallest nonzero
/// one; plain `SIZE` when any list declares no number, or all say 0). `AUTH`, `AUTH=` and
/// `STARTTLS` lines are dropped, and so is anything [`is_kept`] refuses. No lists, no keywords.
pub fn common_extensions(lists: &[Vec<String>]) -> Vec<String> {
    let Some((first, others)) = lists.split_first() else {
        return Vec::new();
    };
    let mut common: Vec<String> = Vec::new();
    for line in first.iter().filter(|l| is_kept(l)) {
        let word = keyword(line);
        if common.iter().any(|c| keyword(c).eq_ignore_ascii_case(word)) {
            continue;
        }
        let in_others = others.iter().map(|list| lines_with(list, word));
        let Some(in_others) = in_others.collect::<Option<Vec<_>>>() else {
            continue;
        };
        if word.eq_ignore_ascii_case("SIZE") {
            let all = std::iter::once(vec![line.as_str()])
                .chain(in_others)
                .flatten();
            common.push(smallest_size(word, all));
        } else {
            common.push(line.clone());
        }
    }
    common
}

/// The kept lines of `list` with keyword `word`; `None` when there are none.
fn lines_with<'a>(list: &'a [String], word: &str) -> Option<Vec<&'a str>> {
    let lines: Vec<&str> = list
        .iter()
        .map(String::as_str)
        .filter(|l| is_kept(l) && keyword(l).eq_ignore_ascii_case(word))
        .collect();
    (!lines.is_empty()).then_some(lines)
}

/// `SIZE n` with the smallest nonzero `n` of `lines`, or plain `SIZE` when one has no number
/// (or an unreadable one), or when every one says 0.
fn smallest_size<'a>(word: &str, lines: impl Iterator<Item = &'a str>) -> String {
    let mut smallest: Option<u64> = None;
    for line in lines {
        let parameter = line[keyword(line).len()..].trim();
        match parameter.parse::<u64>() {
            Ok(0) => {}
            Ok(n) => smallest = Some(smallest.map_or(n, |s| s.min(n))),
            Err(_) => return word.to_owned(),
        }
    }
    match smallest {
        Some(n) => format!("{word} {n}"),
        None => word.to_owned(),
    }
}

/// What the client's EHLO/HELO argument is.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum HeloArgument {
    /// Refused with `501`: missing, with control characters (CR, NUL…), not UTF-8, or longer
    /// than 255 octets (RFC 5321 §4.5.3.1.2's domain limit).
    Invalid,
    /// Accepted; passed upstream only when it is printable ASCII without spaces (a domain or an
    /// address literal in shape), otherwise the upstream gets the proxy's default.
    Valid(Option<String>),
}

pub(super) fn helo_argument(args: &[u8]) -> HeloArgument {
    let Ok(text) = std::str::from_utf8(args) else {
        return HeloArgument::Invalid;
    };
    let text = text.trim_matches(' ');
    if text.is_empty() || text.len() > 255 || text.chars().any(char::is_control) {
        return HeloArgument::Invalid;
    }
    let plain = text.bytes().all(|b| b.is_ascii_graphic());
    HeloArgument::Valid(plain.then(|| text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn auth_and_starttls_lines_are_dropped() {
        let kept: Vec<&str> = [
            "SIZE 35882577",
            "AUTH LOGIN PLAIN XOAUTH2",
            "AUTH=LOGIN PLAIN",
            "auth=login",
            "Auth plain",
            "STARTTLS",
            "starttls",
            "AUTHX",
            "8BITMIME",
            "",
            "BAD\rLINE",
            "X-NUL\0",
        ]
        .into_iter()
        .filter(|l| is_kept(l))
        .collect();
        assert_eq!(kept, ["SIZE 35882577", "AUTHX", "8BITMIME"]);
        assert!(!is_kept(&"X".repeat(MAX_KEYWORD_LINE + 1)));
        assert!(is_kept(&"X".repeat(MAX_KEYWORD_LINE)));
    }

    #[test]
    fn common_keywords_of_gmail_and_microsoft() {
        let gmail = list(&[
            "SIZE 35882577",
            "8BITMIME",
            "AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH",
            "ENHANCEDSTATUSCODES",
            "PIPELINING",
            "CHUNKING",
            "SMTPUTF8",
        ]);
        let microsoft = list(&[
            "SIZE 157286400",
            "PIPELINING",
            "DSN",
            "ENHANCEDSTATUSCODES",
            "AUTH LOGIN XOAUTH2",
            "8BITMIME",
            "BINARYMIME",
            "CHUNKING",
            "SMTPUTF8",
        ]);
        assert_eq!(
            common_extensions(&[gmail.clone(), microsoft.clone()]),
            [
                "SIZE 35882577",
                "8BITMIME",
                "ENHANCEDSTATUSCODES",
                "PIPELINING",
                "CHUNKING",
                "SMTPUTF8"
            ]
        );
        // The first list decides the order and spelling.
        assert_eq!(
            common_extensions(&[microsoft.clone(), gmail.clone()]),
            [
                "SIZE 35882577",
                "PIPELINING",
                "ENHANCEDSTATUSCODES",
                "8BITMIME",
                "CHUNKING",
                "SMTPUTF8"
            ]
        );
        // One list: itself, minus AUTH.
        assert_eq!(common_extensions(std::slice::from_ref(&gmail)).len(), 6);
        assert!(common_extensions(&[]).is_empty());
        assert!(common_extensions(&[gmail, Vec::new()]).is_empty());
    }

    #[test]
    fn keywords_match_in_any_case_and_sizes_take_the_smallest_limit() {
        let a = list(&["size 1000", "Pipelining", "BURL imap", "DSN", "STARTTLS"]);
        let b = list(&["SIZE 0", "PIPELINING", "burl", "AUTH=PLAIN", "starttls"]);
        let c = list(&["SIZE 500", "pipelining", "BURL", "dsn"]);
        assert_eq!(
            common_extensions(&[a.clone(), b.clone(), c]),
            ["size 500", "Pipelining", "BURL imap"]
        );
        // SIZE 0 is "no limit": the other list's limit stands.
        assert_eq!(common_extensions(&[a.clone(), b.clone()])[0], "size 1000");
        // A SIZE without a number (or an unreadable one) makes it plain SIZE.
        let d = list(&["SIZE", "PIPELINING"]);
        assert_eq!(common_extensions(&[a.clone(), d])[0], "size");
        let e = list(&["SIZE 12x", "PIPELINING"]);
        assert_eq!(common_extensions(&[a, e])[0], "size");
        // All "no limit".
        assert_eq!(common_extensions(&[b.clone(), b])[0], "SIZE");
        // A keyword listed twice in the first list comes once.
        let twice = list(&["8BITMIME", "8bitmime"]);
        assert_eq!(common_extensions(&[twice.clone(), twice]), ["8BITMIME"]);
    }

    #[test]
    fn helo_arguments() {
        use HeloArgument::*;
        let valid = |s: &str| Valid(Some(s.to_owned()));
        assert_eq!(helo_argument(b"client.example"), valid("client.example"));
        assert_eq!(helo_argument(b"[127.0.0.1]"), valid("[127.0.0.1]"));
        assert_eq!(helo_argument(b"  spaced.example "), valid("spaced.example"));
        assert_eq!(helo_argument(b"My Laptop"), Valid(None));
        assert_eq!(helo_argument("bücher.example".as_bytes()), Valid(None));
        assert_eq!(helo_argument(&[b'a'; 255]), valid(&"a".repeat(255)));
        assert_eq!(helo_argument(&[b'a'; 256]), Invalid);
        assert_eq!(helo_argument(b""), Invalid);
        assert_eq!(helo_argument(b"   "), Invalid);
        assert_eq!(helo_argument(b"a\rb"), Invalid);
        assert_eq!(helo_argument(b"a\0b"), Invalid);
        assert_eq!(helo_argument(b"a\tb"), Invalid);
        assert_eq!(helo_argument(b"a\x7fb"), Invalid);
        assert_eq!(helo_argument(b"\xff"), Invalid);
    }
}
