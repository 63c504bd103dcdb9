//! The greeting, EHLO and HELO: what is advertised, and the client's argument (protocols.md §6
//! rows 30, 40, 41).

use super::*;

fn ehlo(change: impl FnOnce(&mut ServerOptions)) -> Transcript {
    Scenario::new("EHLO client.example\r\n")
        .options(change)
        .check()
}

#[test]
fn greeting_and_ehlo_follow_the_options() {
    let t = ehlo(|_| {});
    assert_eq!(t.greeting, GREETING);
    assert_eq!(t.output, EHLO_REPLY);
    assert!(t.events.is_empty());
    // A plain listener that can do STARTTLS offers it, last.
    let t = ehlo(|o| o.starttls = true);
    assert_eq!(
        t.output,
        EHLO_REPLY.replace(
            "250 AUTH PLAIN LOGIN\r\n",
            "250-AUTH PLAIN LOGIN\r\n250 STARTTLS\r\n"
        )
    );
    // TLS required and not on yet: no AUTH.
    let t = ehlo(|o| {
        o.starttls = true;
        o.require_tls = true;
    });
    assert_eq!(
        t.output,
        EHLO_REPLY.replace("250 AUTH PLAIN LOGIN\r\n", "250 STARTTLS\r\n")
    );
    // Implicit TLS: AUTH, no STARTTLS, whatever else is set.
    let t = ehlo(|o| {
        o.tls_active = true;
        o.starttls = true;
        o.require_tls = true;
    });
    assert_eq!(t.output, EHLO_REPLY);
    // Nothing else to say: a one-line reply.
    let t = ehlo(|o| {
        o.require_tls = true;
        o.extensions.clear();
    });
    assert_eq!(t.output, "250 test Hello\r\n");
}

#[test]
fn upstream_auth_and_starttls_lines_are_replaced_even_when_last() {
    // Row 30: AUTH in both styles, STARTTLS, and the AUTH line last.
    let t = ehlo(|o| {
        o.starttls = true;
        o.extensions = [
            "PIPELINING",
            "STARTTLS",
            "SIZE 10240000",
            "AUTH=LOGIN PLAIN",
            "VRFY",
            "ETRN",
            "ENHANCEDSTATUSCODES",
            "8BITMIME",
            "DSN",
            "auth login plain xoauth2",
        ]
        .map(String::from)
        .to_vec();
    });
    assert_eq!(
        t.output,
        "250-test Hello\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n\
         250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-AUTH PLAIN LOGIN\r\n\
         250 STARTTLS\r\n"
    );
    assert_eq!(t.output.matches("AUTH").count(), 1);
    // Keyword lines that could break the reply are not passed on.
    let t = ehlo(|o| {
        o.extensions = ["X-ONE", "", "BAD\r\n250 INJECTED", "X-TWO"]
            .map(String::from)
            .to_vec();
    });
    assert_eq!(
        t.output,
        "250-test Hello\r\n250-X-ONE\r\n250-X-TWO\r\n250 AUTH PLAIN LOGIN\r\n"
    );
}

#[test]
fn the_name_is_one_line() {
    let t = Scenario::new("EHLO x\r\nHELO x\r\n")
        .options(|o| o.name = "box\r\n250 fake".into())
        .check();
    assert_eq!(t.greeting, "220 box  250 fake ESMTP mailoauth ready\r\n");
    assert!(t.output.starts_with("250-box  250 fake Hello\r\n"));
    assert!(t.output.ends_with("\r\n250 box  250 fake\r\n"));
    let t = Scenario::new("")
        .options(|o| o.name = " \0 ".into())
        .check();
    assert_eq!(t.greeting, "220 mailoauth ESMTP mailoauth ready\r\n");
}

#[test]
fn helo_and_keywords_in_any_case() {
    let t = Scenario::new("helo printer\r\nEhLo x\r\nhelo [10.0.0.7]\r\n").check();
    assert_eq!(t.output, format!("250 test\r\n{EHLO_REPLY}250 test\r\n"));
}

#[test]
fn ehlo_argument_injection_is_refused_or_kept_away_from_the_upstream() {
    // Row 40. Control characters, NUL, over 255 octets, missing: 501, and the previous EHLO
    // (its argument) stands.
    let long = "a".repeat(300);
    let script = [
        format!(
            "EHLO good.example\r\nEHLO evil\rMAIL FROM:<x>\r\nEHLO a\0b\r\nEHLO {long}\r\n\
             EHLO\r\nHELO \r\nEHLO \t\r\n"
        )
        .as_bytes(),
        b"EHLO \xff\r\n",
        format!("AUTH PLAIN {}\r\n", plain_ir("u", "p")).as_bytes(),
    ]
    .concat();
    let t = Scenario::new(script).check();
    assert_eq!(
        t.output,
        format!(
            "{EHLO_REPLY}501 5.5.4 Syntax: EHLO hostname\r\n500 5.5.2 Syntax error\r\n\
             501 5.5.4 Syntax: EHLO hostname\r\n501 5.5.4 Syntax: EHLO hostname\r\n\
             501 5.5.4 Syntax: HELO hostname\r\n501 5.5.4 Syntax: EHLO hostname\r\n\
             501 5.5.4 Syntax: EHLO hostname\r\n"
        )
    );
    assert_eq!(t.events, vec![plain("u", "p", Some("good.example"))]);
    // Accepted, but not for the upstream: spaces, 8-bit. The reply never echoes it.
    let t = Scenario::new(format!(
        "EHLO My Laptop\r\nAUTH PLAIN {}\r\n",
        plain_ir("u", "p")
    ))
    .check();
    assert_eq!(t.output, EHLO_REPLY);
    assert_eq!(t.events, vec![plain("u", "p", None)]);
    let t = Scenario::new(format!(
        "EHLO b\u{fc}cher.example\r\nAUTH PLAIN {}\r\n",
        plain_ir("u", "p")
    ))
    .check();
    assert_eq!(t.events, vec![plain("u", "p", None)]);
    // Exactly 255 octets pass; the latest greeting counts.
    let max = "b".repeat(255);
    let t = Scenario::new(format!(
        "EHLO first\r\nHELO {max}\r\nAUTH PLAIN {}\r\n",
        plain_ir("u", "p")
    ))
    .check();
    assert_eq!(t.events, vec![plain("u", "p", Some(&max))]);
}

#[test]
fn helo_leniency_lets_printers_log_in() {
    // Row 41.
    let script = format!(
        "HELO printer\r\nAUTH LOGIN\r\n{}\r\n{}\r\n",
        b64("scan"),
        b64("pw")
    );
    let t = Scenario::new(&script).check();
    assert_eq!(
        t.output,
        "250 test\r\n334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n"
    );
    assert_eq!(t.events, vec![login("scan", "pw", Some("printer"))]);
    // Without the leniency, AUTH needs EHLO; the base64 lines are then unknown commands.
    let t = Scenario::new(&script)
        .options(|o| o.helo_auth = false)
        .check();
    assert_eq!(
        t.output,
        "250 test\r\n503 5.5.1 Send EHLO first\r\n500 5.5.1 Command unrecognized\r\n\
         500 5.5.1 Command unrecognized\r\n"
    );
    assert!(t.events.is_empty());
}
