//! The POP3 upstream core (`mailoauth::pop3::upstream`) fed an arbitrary server, in arbitrary
//! chunks, by a driver that does what the real one does: `authenticate` on `NeedToken` and on
//! `Rejected`, `tls_started` on `StartTls`, stop on `Authenticated`/`Failed`.
//!
//! Input: byte 0 = flags (bit 0: implicit TLS; bit 1: the server closes at the end), byte 1 =
//! chunking seed (0: the rest in one piece), then the server's bytes. Bytes fed after
//! `tls_started` stand for what arrives over TLS.
//!
//! Contract: never panics; in plaintext only `CAPA` and `STLS` go out, so the token never does;
//! an `AUTH` line never carries an initial response; output stays small (a few commands and at
//! most `MAX_ATTEMPTS` token lines); a failed core says and sends nothing more; the capabilities
//! are only told over TLS; after `Authenticated` the client bytes are a `+OK` line followed by
//! whatever the server sent after it; no `Debug` output shows the token.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mailoauth::pop3::upstream::{
    MAX_ATTEMPTS, UpstreamCore, UpstreamEvent, UpstreamFailure, UpstreamOptions,
};
use secrecy::SecretString;

const TOKEN: &str = "ya29.fuzz-token-c2VjcmV0";

/// Generous bound on everything the core may write: two CAPAs and an STLS, and per attempt an
/// AUTH line, the response line (the token's base64) and an error acknowledgement.
const MAX_OUTPUT: usize = 3 * 8 + MAX_ATTEMPTS as usize * 512;

struct Driver {
    core: UpstreamCore,
    tls: bool,
    written: usize,
    done: Option<UpstreamEvent>,
}

impl Driver {
    /// Takes the core's output and checks it.
    fn drain(&mut self) {
        let out = self.core.take_output();
        self.written += out.len();
        assert!(self.written <= MAX_OUTPUT, "{} bytes written", self.written);
        for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            if !self.tls {
                assert!(
                    line == b"CAPA\r" || line == b"STLS\r",
                    "sent in plaintext: {:?}",
                    String::from_utf8_lossy(line)
                );
            }
            if line.starts_with(b"AUTH") {
                assert!(
                    line == b"AUTH XOAUTH2\r" || line == b"AUTH OAUTHBEARER\r",
                    "AUTH with more: {:?}",
                    String::from_utf8_lossy(line)
                );
            }
        }
        if self.done.is_some() {
            assert!(out.is_empty(), "output after the end");
        }
        if !self.tls {
            assert!(self.core.capabilities().is_empty(), "plaintext CAPA told");
        }
    }

    /// Acts on every pending event like the real driver.
    fn events(&mut self) {
        self.drain();
        while let Some(event) = self.core.next_event() {
            assert!(self.done.is_none(), "event after the end: {event:?}");
            match &event {
                UpstreamEvent::StartTls => {
                    assert!(!self.tls, "STLS twice");
                    self.core.tls_started();
                    self.tls = true;
                }
                UpstreamEvent::NeedToken { .. } | UpstreamEvent::Rejected { .. } => {
                    assert!(self.tls, "token asked for before TLS");
                    self.core.authenticate(&SecretString::from(TOKEN));
                }
                UpstreamEvent::Authenticated => self.done = Some(event.clone()),
                UpstreamEvent::Failed(failure) => {
                    let _ = failure.to_string();
                    self.done = Some(event.clone());
                }
            }
            self.drain();
        }
        let debug = format!("{:?}", self.core);
        assert!(!debug.contains(TOKEN));
    }
}

fuzz_target!(|data: &[u8]| {
    let [flags, seed, server @ ..] = data else {
        return;
    };
    let implicit_tls = flags & 1 != 0;
    let mut driver = Driver {
        core: UpstreamCore::new(UpstreamOptions {
            implicit_tls,
            host: "pop.example.test".into(),
            port: 995,
            user: "alice@example.test".into(),
        }),
        tls: implicit_tls,
        written: 0,
        done: None,
    };
    let mut rng = u32::from(*seed).wrapping_mul(0x9E37_79B9) | 1;
    let mut rest = server;
    driver.events();
    while !rest.is_empty() && driver.done.is_none() {
        let n = if *seed == 0 {
            rest.len()
        } else {
            // xorshift32: chunk sizes 1..=64, sometimes larger.
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            let size = if rng % 8 == 0 { rng % 4096 } else { rng % 64 };
            (size as usize + 1).min(rest.len())
        };
        driver.core.feed(&rest[..n]);
        rest = &rest[n..];
        driver.events();
    }
    if flags & 2 != 0 {
        driver.core.eof();
        let was_open = driver.done.is_none();
        driver.events();
        if was_open {
            assert_eq!(
                driver.done,
                Some(UpstreamEvent::Failed(UpstreamFailure::Closed))
            );
        }
    }
    match driver.done {
        Some(UpstreamEvent::Authenticated) => {
            // The rest is the start of the spliced stream: it reaches the client untouched.
            driver.core.feed(rest);
            let client = driver.core.into_client_bytes();
            assert!(client.ends_with(rest));
            assert!(client[..3].eq_ignore_ascii_case(b"+OK"));
            let first_line_end = client.iter().position(|&b| b == b'\n');
            assert!(first_line_end.is_some(), "the +OK line is whole");
        }
        Some(_) => {
            driver.core.feed(rest);
            driver.core.eof();
            driver.events();
            assert!(driver.core.into_client_bytes().is_empty());
        }
        None => {}
    }
});
