//! `--debug`'s protocol trace: every pre-login line between the client, the proxy and the
//! upstream server, with each secret replaced by a keyed fingerprint. Redaction is by allow-list:
//! a line is shown only as far as it is a command known to carry no secret (CAPABILITY, EHLO,
//! the user name of LOGIN/USER, the mechanism of AUTHENTICATE/AUTH…); everything else a client
//! or the proxy sends — passwords, SASL responses, tokens, literals — becomes
//! `[secret 8c1f…, 44 octets]`. The key is random per process, so a fingerprint lets one match
//! lines within a log but not test a guessed password against it. Server replies carry no
//! secrets and are shown as they are (shortened).
//!
//! Nothing is traced after the splice: mail content is not the proxy's to log.

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// Who sent the bytes.
#[derive(Debug, Clone, Copy)]
pub enum Direction {
    /// The mail client, to the proxy.
    Client,
    /// The proxy, to the mail client.
    ToClient,
    /// The proxy, to the upstream server.
    ToServer,
    /// The upstream server, to the proxy.
    Server,
}

impl Direction {
    fn arrow(self) -> &'static str {
        match self {
            Direction::Client => "C->P",
            Direction::ToClient => "P->C",
            Direction::ToServer => "P->S",
            Direction::Server => "S->P",
        }
    }
}

/// Logs `bytes` at debug level, line by line, redacted.
pub fn log(protocol: &'static str, direction: Direction, bytes: &[u8]) {
    if !tracing::enabled!(tracing::Level::DEBUG) || bytes.is_empty() {
        return;
    }
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let shown = match direction {
            Direction::Client | Direction::ToServer => redact(line),
            Direction::ToClient | Direction::Server => shorten(line),
        };
        tracing::debug!(protocol, "{} {shown}", direction.arrow());
    }
}

/// A line as it may be shown: the known-safe words, then fingerprints for the rest.
pub fn redact(line: &[u8]) -> String {
    let Ok(text) = std::str::from_utf8(line) else {
        return secret(line);
    };
    let words: Vec<&str> = text.split(' ').collect();
    // IMAP lines start with a tag; SMTP and POP3 lines with the command.
    for at in [0usize, 1] {
        let Some(command) = words.get(at) else {
            continue;
        };
        let upper = command.to_ascii_uppercase();
        // How many words after the command are safe to show.
        let safe_args = match upper.as_str() {
            "CAPABILITY" | "NOOP" | "LOGOUT" | "STARTTLS" | "STLS" | "CAPA" | "QUIT" | "RSET"
            | "EHLO" | "HELO" | "ID" | "MAIL" | "RCPT" | "DATA" => usize::MAX,
            // The user name; not the password.
            "LOGIN" | "USER" => 1,
            // The mechanism; not an initial response.
            "AUTHENTICATE" | "AUTH" => 1,
            "PASS" | "APOP" => 0,
            _ => continue,
        };
        let head = at + 1 + safe_args.min(words.len() - at - 1);
        let mut shown = words[..head].join(" ");
        if head < words.len() {
            let rest = words[head..].join(" ");
            shown.push(' ');
            shown.push_str(&secret(rest.as_bytes()));
        }
        return shorten(shown.as_bytes());
    }
    secret(line)
}

/// `[secret 8c1f2a3b, 44 octets]`: a keyed fingerprint (random key per process).
fn secret(bytes: &[u8]) -> String {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    let key = KEY.get_or_init(|| {
        let mut k = [0u8; 32];
        getrandom::fill(&mut k).expect("the OS random source works");
        k
    });
    let digest = Sha256::new()
        .chain_update(key)
        .chain_update(bytes)
        .finalize();
    let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("[secret {hex}, {} octets]", bytes.len())
}

/// At most 300 characters of a line, lossily decoded.
fn shorten(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    if text.chars().count() > 300 {
        let cut: String = text.chars().take(300).collect();
        format!("{cut}… ({} octets)", line.len())
    } else {
        text.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_become_fingerprints_and_safe_words_stay() {
        let cases: [(&str, &str); 10] = [
            ("a1 CAPABILITY", "a1 CAPABILITY"),
            ("EHLO client.example", "EHLO client.example"),
            (
                "a1 LOGIN alice@example.test \"hunter2 pw\"",
                "a1 LOGIN alice@example.test [secret ",
            ),
            (
                "a2 AUTHENTICATE PLAIN AGFsaWNlAGh1bnRlcjI=",
                "a2 AUTHENTICATE PLAIN [secret ",
            ),
            ("AUTH PLAIN AGFsaWNlAGh1bnRlcjI=", "AUTH PLAIN [secret "),
            ("AUTH LOGIN", "AUTH LOGIN"),
            ("USER alice", "USER alice"),
            ("PASS hunter2", "PASS [secret "),
            ("AGFsaWNlAGh1bnRlcjI=", "[secret "),
            ("{12}", "[secret "),
        ];
        for (line, want) in cases {
            let got = redact(line.as_bytes());
            assert!(got.starts_with(want), "{line:?} -> {got:?}");
            assert!(
                !got.contains("hunter2") && !got.contains("AGFsaWNl"),
                "{got}"
            );
        }
        // Same secret, same fingerprint within a process; different secrets differ.
        assert_eq!(redact(b"PASS x"), redact(b"PASS x"));
        assert_ne!(redact(b"PASS x"), redact(b"PASS y"));
        assert!(redact(&[0xff, 0xfe]).starts_with("[secret "));
    }
}
