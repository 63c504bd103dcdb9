//! The SMTP upstream core (`mailoauth::smtp::upstream`) fed an arbitrary server, in arbitrary
//! chunks, by a driver that does what the real one does: `authenticate` on `NeedToken` and on
//! `Rejected`, `tls_started` on `StartTls`, stop on `Authenticated`/`Failed`.
//!
//! Input: byte 0 = flags (bit 0: implicit TLS; bit 1: the server closes at the end; bit 2: an
//! EHLO name that must be replaced), byte 1 = chunking seed (0: the rest in one piece), then the
//! server's bytes. Bytes fed after `tls_started` stand for what arrives over TLS.
//!
//! Contract: never panics; in plaintext only `EHLO name` and `STARTTLS` go out, and the EHLO
//! name is the checked one; the token never goes out before TLS and never on an `AUTH` line;
//! output stays small (two EHLOs, STARTTLS, and per attempt `AUTH MECH`, the response line and
//! an acknowledgement); a failed core says and sends nothing more; after `Authenticated` the
//! client bytes start with `235` and end with whatever the server sent after it; the keywords
//! are only known with TLS; no `Debug` output shows the token.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mailoauth::smtp::upstream::{
    MAX_ATTEMPTS, UpstreamCore, UpstreamEvent, UpstreamFailure, UpstreamOptions,
};
use secrecy::SecretString;

const TOKEN: &str = "ya29.fuzz-token-c2VjcmV0";

/// Generous bound on everything the core may write: two EHLOs and a STARTTLS, and per attempt
/// an AUTH line, the response line (the token's base64) and an error acknowledgement.
const MAX_OUTPUT: usize = 3 * 300 + MAX_ATTEMPTS as usize * 512;

struct Driver {
    core: UpstreamCore,
    helo: &'static str,
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
        assert!(out.is_empty() || out.ends_with(b"\r\n"));
        for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let line = line.strip_suffix(b"\r").expect("CRLF");
            if line.starts_with(b"AUTH ") {
                assert!(
                    line == b"AUTH XOAUTH2" || line == b"AUTH OAUTHBEARER",
                    "an initial response: {:?}",
                    String::from_utf8_lossy(line)
                );
            }
            if !self.tls {
                let ehlo = format!("EHLO {}", self.helo);
                assert!(
                    line == ehlo.as_bytes() || line == b"STARTTLS",
                    "sent in plaintext: {:?}",
                    String::from_utf8_lossy(line)
                );
            }
        }
        if self.done.is_some() {
            assert!(out.is_empty(), "output after the end");
        }
    }

    /// Acts on every pending event like the real driver.
    fn events(&mut self) {
        self.drain();
        while let Some(event) = self.core.next_event() {
            assert!(self.done.is_none(), "event after the end: {event:?}");
            match &event {
                UpstreamEvent::StartTls => {
                    assert!(!self.tls, "STARTTLS twice");
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
        if !self.tls {
            assert!(
                self.core.extensions().is_empty(),
                "keywords kept from plaintext"
            );
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
    let (helo, sent_helo) = if flags & 4 != 0 {
        ("bad name\r\nRSET", "[127.0.0.1]")
    } else {
        ("client.example", "client.example")
    };
    let mut driver = Driver {
        core: UpstreamCore::new(UpstreamOptions {
            implicit_tls,
            host: "smtp.example.test".into(),
            port: 465,
            user: "alice@example.test".into(),
            helo: helo.into(),
        }),
        helo: sent_helo,
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
            assert!(driver.tls);
            assert!(!driver.core.extensions().is_empty());
            // The rest is the start of the spliced stream: it reaches the client untouched.
            driver.core.feed(rest);
            let client = driver.core.into_client_bytes();
            assert!(client.starts_with(b"235"));
            assert!(client.ends_with(rest));
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
