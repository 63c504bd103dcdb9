//! The IMAP server core (`mailoauth::imap::server`) driven as the session driver drives it, with
//! whatever a client might send before login.
//!
//! Input: `config`, `chunk`, `choices`, then the client's bytes, fed `chunk` octets at a time
//! (0 means 1). `config` bits: 1 TLS active, 2 STARTTLS offered, 4 TLS required, 8 small limits,
//! 16 take the leftover at the `choices % 4`-th login instead of failing it. Logins are
//! otherwise failed, with the failure picked by two bits of `choices` per login; StartTls is
//! answered with `tls_started()` at once.
//!
//! Contract: never panics; the output stays within 64 × input + 4 KiB; `Close` comes at most once
//! and nothing is written after it; a Login's `Debug` is exactly its fields with the password
//! redacted, its tag is a valid IMAP tag and its user name has no control characters; the
//! leftover is a suffix of what was fed, byte for byte. Over-allocation for an announced literal
//! shows as libFuzzer's malloc limit (`-rss_limit_mb`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use mailoauth::imap::server::{Limits, LoginFailure, ServerCore, ServerEvent, ServerOptions};
use secrecy::ExposeSecret;

fuzz_target!(|data: &[u8]| {
    let [config, chunk, choices, stream @ ..] = data else {
        return;
    };
    let limits = if config & 8 != 0 {
        Limits {
            max_line: 64,
            max_literal: 32,
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
        limits,
        name: "fuzz".to_owned(),
    });
    let mut written = core.take_output().len();
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
                            "Login {{ tag: {:?}, user: {:?}, password: [redacted], mechanism: {:?} }}",
                            login.tag, login.user, login.mechanism
                        )
                    );
                    assert!(!login.tag.is_empty());
                    assert!(
                        login
                            .tag
                            .bytes()
                            .all(|b| b.is_ascii_graphic() && !b"(){%*\"\\+".contains(&b))
                    );
                    assert!(!login.user.is_empty() && !login.user.chars().any(char::is_control));
                    assert!(!password.is_empty());
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
                        1 => LoginFailure::Unavailable("upstream\r\n* BYE down\0".to_owned()),
                        2 => LoginFailure::Reauthorize(String::new()),
                        _ => LoginFailure::UpstreamRejected("x".repeat(3000)),
                    };
                    core.login_failed(failure);
                    logins += 1;
                }
            }
        }
        let output = core.take_output();
        if closed_before {
            assert!(output.is_empty(), "output after Close");
        } else if closed {
            // The last line before closing: a BYE, or LOGOUT's completion.
            assert!(output.ends_with(b"\r\n"));
            let last = output[..output.len() - 2]
                .rsplit(|&b| b == b'\n')
                .next()
                .unwrap_or_default();
            assert!(last.starts_with(b"* BYE ") || last.ends_with(b" OK LOGOUT completed"));
        }
        written += output.len();
        assert!(
            written <= 64 * fed + 4096,
            "{written} octets out for {fed} in"
        );
    }
});
