//! The POP3 server core (`mailoauth::pop3::server`) driven as the session driver drives it, with
//! whatever a client might send before login.
//!
//! Input: `config`, `chunk`, `choices`, then the client's bytes, fed `chunk` octets at a time
//! (0 means 1). `config` bits: 1 TLS active, 2 STLS offered, 4 TLS required, 8 small limits,
//! 16 take the leftover at the `choices % 4`-th login instead of failing it, 32 hostile upstream
//! capabilities (`SASL XOAUTH2`, `STLS`, `USER`, junk) next to Gmail's. Logins are otherwise
//! failed, with the failure picked by two bits of `choices` per login; StartTls is answered with
//! `tls_started()` at once.
//!
//! Contract: never panics; the output stays within 64 × input + 4 KiB and is whole CRLF lines;
//! it never names an upstream OAuth mechanism; `Close` comes at most once and nothing is written
//! after it, and the last line before it is `+OK Bye` or an `-ERR`; no Login before TLS when TLS
//! is required; a Login's `Debug` is exactly its fields with the password redacted, its user and
//! password are non-empty and the user has no control characters; the leftover is a suffix of
//! what was fed, byte for byte.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mailoauth::pop3::server::{Limits, LoginFailure, ServerCore, ServerEvent, ServerOptions};
use secrecy::ExposeSecret;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fuzz_target!(|data: &[u8]| {
    let [config, chunk, choices, stream @ ..] = data else {
        return;
    };
    let limits = if config & 8 != 0 {
        Limits {
            max_line: 32,
            max_auth_line: 64,
            max_commands: 20,
            max_errors: 5,
            max_failed_logins: 2,
        }
    } else {
        Limits::default()
    };
    let mut capabilities: Vec<String> = [
        "USER",
        "RESP-CODES",
        "EXPIRE 0",
        "LOGIN-DELAY 300",
        "TOP",
        "UIDL",
        "X-GOOGLE-VERHOEVEN",
        "SASL PLAIN XOAUTH2",
    ]
    .map(String::from)
    .to_vec();
    if config & 32 != 0 {
        capabilities.extend(
            [
                "SASL XOAUTH2 OAUTHBEARER",
                "STLS",
                "IMPLEMENTATION XOAUTH2\r\n.",
                "EXPIRE NEVER XOAUTH2",
                "PIPELINING\r\nSASL XOAUTH2",
                "",
            ]
            .map(String::from),
        );
    }
    let require_tls = config & 4 != 0;
    let mut tls = config & 1 != 0;
    let mut core = ServerCore::new(ServerOptions {
        tls_active: tls,
        starttls: config & 2 != 0,
        require_tls,
        name: "fuzz".to_owned(),
        capabilities,
        limits,
    });
    let greeting = core.take_output();
    assert_eq!(greeting, b"+OK fuzz ready\r\n");
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
                ServerEvent::StartTls => {
                    assert!(!tls, "STLS with TLS active");
                    core.tls_started();
                    tls = true;
                }
                ServerEvent::Close => closed = true,
                ServerEvent::Login(login) => {
                    assert!(tls || !require_tls, "a login before TLS");
                    let password = login.password.expose_secret();
                    assert_eq!(
                        format!("{login:?}"),
                        format!(
                            "Login {{ user: {:?}, password: [redacted], mechanism: {:?} }}",
                            login.user, login.mechanism
                        )
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
                        1 => LoginFailure::Unavailable("upstream\r\n+OK down\0".to_owned()),
                        2 => LoginFailure::Reauthorize(String::new()),
                        _ => LoginFailure::UpstreamRejected("x".repeat(3000)),
                    };
                    core.login_failed(failure);
                    logins += 1;
                }
            }
        }
        let output = core.take_output();
        assert!(output.is_empty() || output.ends_with(b"\r\n"));
        assert!(!contains(&output, b"XOAUTH2") && !contains(&output, b"OAUTHBEARER"));
        if closed_before {
            assert!(output.is_empty(), "output after Close");
        } else if closed {
            // The last line before closing: QUIT's answer, or the -ERR that hit a limit.
            assert!(!output.is_empty(), "no answer before Close");
            let last = output[..output.len() - 2]
                .rsplit(|&b| b == b'\n')
                .next()
                .unwrap_or_default();
            assert!(last == b"+OK Bye" || last.starts_with(b"-ERR "));
        }
        written += output.len();
        assert!(
            written <= 64 * fed + 4096,
            "{written} octets out for {fed} in"
        );
    }
});
