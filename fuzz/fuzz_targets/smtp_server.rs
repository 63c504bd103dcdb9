//! The SMTP server core (`mailoauth::smtp::server`) driven as the session driver drives it, with
//! whatever a client might send before AUTH.
//!
//! Input: `config`, `chunk`, `choices`, then the client's bytes, fed `chunk` octets at a time
//! (0 means 1). `config` bits: 1 TLS active, 2 STARTTLS offered, 4 TLS required, 8 small limits,
//! 16 take the leftover at the `choices % 4`-th login instead of failing it, 32 no AUTH after
//! HELO. Logins are otherwise failed, with the failure picked by two bits of `choices` per
//! login; StartTls is answered with `tls_started()` at once.
//!
//! Contract: never panics; the output stays within 64 × input + 4 KiB; every output line is a
//! reply line (`ddd ` or `ddd-`, CRLF, no other CR or LF, at most 512 octets); `Close` comes at
//! most once and nothing is written after it, and the last line before it is a `421` or QUIT's
//! `221`; a Login's `Debug` is exactly its fields with the password redacted, its user has no
//! control characters and its EHLO name is printable ASCII; the leftover is a suffix of what
//! was fed, byte for byte. Skipped BDAT chunks and over-long lines must not grow memory (seen
//! through `-rss_limit_mb`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use mailoauth::smtp::server::{Limits, LoginFailure, ServerCore, ServerEvent, ServerOptions};
use secrecy::ExposeSecret;

/// Checks that `output` is whole reply lines.
fn check_lines(output: &[u8]) {
    assert!(output.is_empty() || output.ends_with(b"\r\n"), "{output:?}");
    for line in output.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let line = line.strip_suffix(b"\r").expect("CRLF");
        assert!(!line.contains(&b'\r'), "a CR inside a reply line: {line:?}");
        assert!(
            line.len() + 2 <= 512,
            "a reply line of {} octets",
            line.len() + 2
        );
        assert!(line.len() >= 4, "{line:?}");
        assert!(line[..3].iter().all(u8::is_ascii_digit), "{line:?}");
        assert!(line[3] == b' ' || line[3] == b'-', "{line:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let [config, chunk, choices, stream @ ..] = data else {
        return;
    };
    let limits = if config & 8 != 0 {
        Limits {
            max_line: 64,
            max_auth_line: 128,
            max_commands: 20,
            max_errors: 5,
            max_failed_logins: 2,
        }
    } else {
        Limits::default()
    };
    let mut core = ServerCore::new(ServerOptions {
        tls_active: config & 1 != 0,
        starttls: config & 2 != 0,
        require_tls: config & 4 != 0,
        name: "fuzz.example".to_owned(),
        extensions: [
            "SIZE 35882577",
            "8BITMIME",
            "AUTH LOGIN PLAIN XOAUTH2",
            "AUTH=LOGIN",
            "STARTTLS",
            "X-BAD\r\n250 INJECTED",
            "PIPELINING",
            "CHUNKING",
        ]
        .map(String::from)
        .to_vec(),
        helo_auth: config & 32 == 0,
        limits,
    });
    let greeting = core.take_output();
    check_lines(&greeting);
    let mut written = greeting.len();
    let mut fed = 0usize;
    let mut logins = 0u32;
    let mut closed = false;
    for piece in stream.chunks(usize::from(*chunk).max(1)) {
        let closed_before = closed;
        core.feed(piece);
        fed += piece.len();
        while let Some(event) = core.next_event() {
            assert!(!closed, "event after Close");
            match event {
                ServerEvent::StartTls => core.tls_started(),
                ServerEvent::Close => closed = true,
                ServerEvent::Login(login) => {
                    let password = login.password.expose_secret();
                    assert_eq!(
                        format!("{login:?}"),
                        format!(
                            "Login {{ user: {:?}, password: [redacted], helo: {:?}, mechanism: {:?} }}",
                            login.user, login.helo, login.mechanism
                        )
                    );
                    assert!(!login.user.is_empty() && !login.user.chars().any(char::is_control));
                    assert!(!password.is_empty() && !password.contains('\0'));
                    if let Some(helo) = &login.helo {
                        assert!(!helo.is_empty() && helo.len() <= 255);
                        assert!(helo.bytes().all(|b| b.is_ascii_graphic()), "{helo:?}");
                    }
                    if config & 16 != 0 && logins == u32::from(choices % 4) {
                        let leftover = core.into_leftover();
                        assert!(
                            stream[..fed].ends_with(&leftover),
                            "leftover is not a suffix"
                        );
                        return;
                    }
                    let failure = match (choices >> ((logins % 4) * 2)) & 3 {
                        0 => LoginFailure::BadCredentials,
                        1 => LoginFailure::Unavailable("upstream\r\n250 2.0.0 OK\0".to_owned()),
                        2 => LoginFailure::Reauthorize(String::new()),
                        _ => LoginFailure::UpstreamRejected("x".repeat(3000)),
                    };
                    core.login_failed(failure);
                    logins += 1;
                }
            }
        }
        let output = core.take_output();
        check_lines(&output);
        if closed_before {
            assert!(output.is_empty(), "output after Close");
        } else if closed {
            let last = output[..output.len() - 2]
                .rsplit(|&b| b == b'\n')
                .next()
                .unwrap_or_default();
            assert!(last.starts_with(b"421 4.7.0 ") || last == b"221 2.0.0 Bye");
        }
        written += output.len();
        assert!(
            written <= 64 * fed + 4096,
            "{written} octets out for {fed} in"
        );
    }
});
