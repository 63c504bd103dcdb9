//! LOGIN: atoms, quoted strings, literals (protocols.md §6 rows 1-10).

use super::*;

const CONTINUE: &str = "+ Ready for literal data\r\n";

#[test]
fn atoms() {
    // Row 1 (the core's part: the Login event, and no OK of its own).
    let t = Scenario::new("a1 LOGIN alice s3cret\r\n").check();
    assert_eq!(t.output, "");
    assert_eq!(t.events, vec![login("a1", "alice", "s3cret")]);
    assert_eq!(t.leftover.as_deref(), Some(&b""[..]));
    // `]` is an ASTRING-CHAR.
    let t = Scenario::new("a1 LOGIN ali]ce s3]cret\r\n").check();
    assert_eq!(t.events, vec![login("a1", "ali]ce", "s3]cret")]);
}

#[test]
fn lowercase_and_mixed_case_keywords() {
    // Row 9.
    for script in ["a1 login alice s3cret\r\n", "a1 LoGiN alice s3cret\r\n"] {
        let t = Scenario::new(script).check();
        assert_eq!(t.events, vec![login("a1", "alice", "s3cret")], "{script}");
    }
}

#[test]
fn quoted_strings_with_escapes() {
    // Row 2.
    let t = Scenario::new(r#"a1 LOGIN "al\"ice" "p\\w d""#.to_owned() + "\r\n").check();
    assert_eq!(t.output, "");
    assert_eq!(t.events, vec![login("a1", "al\"ice", "p\\w d")]);
    // An atom user with a quoted password.
    let t = Scenario::new("a2 LOGIN bob \"a b\"\r\n").check();
    assert_eq!(t.events, vec![login("a2", "bob", "a b")]);
}

#[test]
fn utf8_in_quoted_strings() {
    // RFC 9051 allows UTF-8 in quoted strings (Thunderbird sends such passwords quoted);
    // imap-codec parses it with its `ext_utf8` feature, which the workspace enables.
    let t = Scenario::new("a1 LOGIN \"jörg\" \"pässwörd ✓\"\r\na2 NOOP\r\n")
        .failing([LoginFailure::BadCredentials])
        .check();
    assert_eq!(t.events, vec![login("a1", "jörg", "pässwörd ✓")]);
    assert_eq!(
        t.output,
        "a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\na2 OK NOOP completed\r\n"
    );
    let t = Scenario::new("a1 LOGIN {5}\r\njörg {14}\r\npässwörd ✓\r\n").check();
    assert_eq!(t.events, vec![login("a1", "jörg", "pässwörd ✓")]);
}

#[test]
fn broken_quoted_strings_are_bad() {
    // Row 3: invalid escape, unterminated quote, CR inside the quotes.
    for (script, reply) in [
        ("a1 LOGIN alice \"p\\qw\"\r\n", "a1 BAD Syntax error\r\n"),
        ("a1 LOGIN alice \"s3cret\r\n", "a1 BAD Syntax error\r\n"),
        ("a1 LOGIN alice \"s3\rcret\"\r\n", "a1 BAD Syntax error\r\n"),
        ("a1 LOGIN \"alice s3cret\r\n", "a1 BAD Syntax error\r\n"),
    ] {
        let t = Scenario::new(script).check();
        assert_eq!(t.output, reply, "{script:?}");
        assert!(t.events.is_empty(), "{script:?}");
    }
}

#[test]
fn atoms_with_wildcards_or_parens_are_bad() {
    // Row 10: such passwords must be quoted.
    for password in ["p%ss", "p*ss", "p(ss", "p)ss", "p{ss", "p\\ss"] {
        let t = Scenario::new(format!("a1 LOGIN alice {password}\r\n")).check();
        assert_eq!(t.output, "a1 BAD Syntax error\r\n", "{password}");
        assert!(t.events.is_empty());
        let t = Scenario::new(format!(
            "a1 LOGIN alice \"{}\"\r\n",
            password.replace('\\', "\\\\")
        ))
        .check();
        assert_eq!(t.events, vec![login("a1", "alice", password)]);
    }
}

#[test]
fn wrong_argument_counts_are_bad() {
    let t =
        Scenario::new("a1 LOGIN alice\r\na2 LOGIN\r\na3 LOGIN a b c\r\na4 LOGIN  a b\r\n").check();
    assert_eq!(
        t.output,
        "a1 BAD Syntax error\r\na2 BAD Syntax error\r\na3 BAD Syntax error\r\na4 BAD Syntax error\r\n"
    );
}

#[test]
fn synchronizing_literal_gets_a_continuation_before_its_data() {
    // Row 4: the `+` goes out as soon as the announcing line is complete, before any data.
    let t = Scenario::new("a1 LOGIN {5}\r\n").check();
    assert_eq!(t.output, CONTINUE);
    assert!(t.events.is_empty());
    let t = Scenario::new("a1 LOGIN {5}\r\nalice {6}\r\n").check();
    assert_eq!(t.output, CONTINUE.repeat(2));
    assert!(t.events.is_empty());
    // SP, quotes, CRLF, 8-bit UTF-8 and a would-be command are password octets.
    let password = "a b\"c\r\nä\r\na2 LOGOUT\r\n";
    let script = format!(
        "a1 LOGIN {{5}}\r\nalice {{{}}}\r\n{password}\r\n",
        password.len()
    );
    let t = Scenario::new(script).check();
    assert_eq!(t.output, CONTINUE.repeat(2));
    assert_eq!(t.events, vec![login("a1", "alice", password)]);
}

#[test]
fn literal_and_quoted_mixed() {
    let t = Scenario::new("a1 LOGIN \"alice\" {6}\r\nsecret\r\n").check();
    assert_eq!(t.output, CONTINUE);
    assert_eq!(t.events, vec![login("a1", "alice", "secret")]);
    let t = Scenario::new("a1 LOGIN {5}\r\nalice s3cret\r\n").check();
    assert_eq!(t.events, vec![login("a1", "alice", "s3cret")]);
}

#[test]
fn non_synchronizing_literals_need_no_continuation() {
    // Row 5.
    let t = Scenario::new("a1 LOGIN {5+}\r\nalice {6+}\r\nsecret\r\n").check();
    assert_eq!(t.output, "");
    assert_eq!(t.events, vec![login("a1", "alice", "secret")]);
    // Exactly at the LITERAL- limit.
    let password = "p".repeat(4096);
    let t = Scenario::new(format!("a1 LOGIN alice {{4096+}}\r\n{password}\r\n")).check();
    assert_eq!(t.output, "");
    assert_eq!(t.events, vec![login("a1", "alice", &password)]);
}

#[test]
fn oversized_non_synchronizing_literal_closes() {
    // Row 6: BAD, then the connection closes; the octets are never read as commands.
    let data = "a2 LOGOUT\r\n".repeat(455);
    assert!(data.len() >= 5000);
    let script = format!(
        "a1 LOGIN alice {{5000+}}\r\n{}\r\na3 NOOP\r\n",
        &data[..5000]
    );
    let t = Scenario::new(script).check();
    assert_eq!(
        t.output,
        "a1 BAD [TOOBIG] Non-synchronizing literal too large\r\n* BYE Literal too large\r\n"
    );
    assert_eq!(t.events, vec![Seen::Close]);
    for script in ["a1 LOGIN {4097+}\r\n", "a1 LOGIN alice {4294967295+}\r\n"] {
        let t = Scenario::new(script).check();
        assert_eq!(
            t.output,
            "a1 BAD [TOOBIG] Non-synchronizing literal too large\r\n* BYE Literal too large\r\n"
        );
        assert_eq!(t.events, vec![Seen::Close]);
    }
}

#[test]
fn oversized_synchronizing_literal_gets_no_continuation() {
    // Row 7: NO [TOOBIG] instead of `+`; the client sends no data and goes on.
    for length in ["4097", "4294967295"] {
        let t = Scenario::new(format!("a1 LOGIN alice {{{length}}}\r\na2 NOOP\r\n")).check();
        assert_eq!(
            t.output,
            "a1 NO [TOOBIG] Literal too large\r\na2 OK NOOP completed\r\n"
        );
        assert!(t.events.is_empty());
    }
    // Too large for 32 bits: not a literal announcement at all, a syntax error.
    for length in ["4294967296", "99999999999999999999"] {
        let t = Scenario::new(format!("a1 LOGIN alice {{{length}}}\r\na2 NOOP\r\n")).check();
        assert_eq!(t.output, "a1 BAD Syntax error\r\na2 OK NOOP completed\r\n");
    }
    // The limit is the configured one; `{4096}` is fine by default.
    let t = Scenario::new("a1 LOGIN alice {4096}\r\n").check();
    assert_eq!(t.output, CONTINUE);
    let t = Scenario::new("a1 LOGIN alice {65}\r\n")
        .options(|o| o.limits.max_literal = 64)
        .check();
    assert_eq!(t.output, "a1 NO [TOOBIG] Literal too large\r\n");
}

#[test]
fn nul_in_a_literal_is_bad() {
    // Row 8.
    let t = Scenario::new("a1 LOGIN alice {6}\r\nse\0ret\r\na2 NOOP\r\n").check();
    assert_eq!(
        t.output,
        format!("{CONTINUE}a1 BAD Syntax error\r\na2 OK NOOP completed\r\n")
    );
    assert!(t.events.is_empty());
    let t = Scenario::new("a1 LOGIN {5+}\r\nal\0ce s3cret\r\n").check();
    assert_eq!(t.output, "a1 BAD Syntax error\r\n");
}

#[test]
fn credentials_that_cannot_be_used_get_no() {
    let t = Scenario::new(
        b"a1 LOGIN alice {2}\r\n\xff\xfe\r\na2 LOGIN \"\" s3cret\r\na3 LOGIN alice \"\"\r\n\
          a4 LOGIN {7}\r\nal\r\nice s3cret\r\n",
    )
    .check();
    assert_eq!(
        t.output,
        format!(
            "{CONTINUE}a1 NO [AUTHENTICATIONFAILED] User name and password must be UTF-8\r\n\
             a2 NO [AUTHENTICATIONFAILED] Empty or malformed credentials\r\n\
             a3 NO [AUTHENTICATIONFAILED] Empty or malformed credentials\r\n\
             {CONTINUE}a4 NO [AUTHENTICATIONFAILED] Invalid user name\r\n"
        )
    );
    assert!(t.events.is_empty());
}

#[test]
fn literals_only_in_login_and_id() {
    // A synchronizing literal in a command refused anyway: no `+`, the refusal at once.
    let t = Scenario::new("a1 SELECT {5}\r\na2 XFOO {3}\r\na3 NOOP\r\n").check();
    assert_eq!(
        t.output,
        "a1 BAD Command invalid in this state: log in first\r\na2 BAD Syntax error\r\n\
         a3 OK NOOP completed\r\n"
    );
    // A non-synchronizing one: its octets are read (and never run), then the refusal.
    let t =
        Scenario::new("a1 SELECT {5+}\r\nINBOX\r\na2 XFOO {11+}\r\na9 LOGOUT\r\n\r\na3 NOOP\r\n")
            .check();
    assert_eq!(
        t.output,
        "a1 BAD Command invalid in this state: log in first\r\na2 BAD Syntax error\r\n\
         a3 OK NOOP completed\r\n"
    );
    assert!(t.events.is_empty());
    // Refused first by a non-synchronizing literal, then a synchronizing one comes: no `+`.
    let t = Scenario::new("a1 APPEND {5+}\r\nINBOX {3}\r\na2 NOOP\r\n").check();
    assert_eq!(
        t.output,
        "a1 BAD Command invalid in this state: log in first\r\na2 OK NOOP completed\r\n"
    );
    // ID takes literals.
    let t = Scenario::new("a1 ID ({4}\r\nname {3+}\r\nfoo)\r\n").check();
    assert_eq!(
        t.output,
        format!(
            "{CONTINUE}{}a1 OK ID completed\r\n",
            concat!(
                "* ID (\"name\" \"mailoauth\" \"version\" \"",
                env!("CARGO_PKG_VERSION"),
                "\")\r\n"
            )
        )
    );
}

#[test]
fn zero_length_literals() {
    let t = Scenario::new("a1 LOGIN alice {0}\r\n\r\na2 LOGIN {0+}\r\n s3cret\r\n").check();
    assert_eq!(
        t.output,
        format!(
            "{CONTINUE}a1 NO [AUTHENTICATIONFAILED] Empty or malformed credentials\r\n\
             a2 NO [AUTHENTICATIONFAILED] Empty or malformed credentials\r\n"
        )
    );
}

#[test]
fn a_command_with_too_many_literal_octets_closes() {
    // Lines and literals are each within bounds, the command is not (max_line + 2 × max_literal).
    let script = format!(
        "a1 ID ({{16+}}\r\n{x} {{16+}}\r\n{x} {{16+}}\r\n{x} {{16+}}\r\n{x})\r\n",
        x = "x".repeat(16)
    );
    let t = Scenario::new(script)
        .options(|o| {
            o.limits.max_line = 32;
            o.limits.max_literal = 16;
        })
        .check();
    assert_eq!(
        t.output,
        "* BAD Command line too long\r\n* BYE Too much input\r\n"
    );
    assert_eq!(t.events, vec![Seen::Close]);
}
