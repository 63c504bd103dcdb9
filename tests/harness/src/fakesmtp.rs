//! Scripted fake SMTP submission upstreams, for what a real Dovecot submission cannot do: Gmail's
//! and Microsoft's EHLO keywords and failure styles (an error challenge, an immediate `535`, a
//! temporary `454`), a server without STARTTLS (the stripping case), a refusing greeting, a reset
//! in the middle of a login.
//!
//! ```no_run
//! use mailoauth_harness::{FakeSmtp, FakeSmtpOptions, FakeTls, SmtpAuthAnswer};
//!
//! let fake = FakeSmtp::start(FakeSmtpOptions {
//!     answers: vec![SmtpAuthAnswer::google_challenge(), SmtpAuthAnswer::Ok],
//!     ..FakeSmtpOptions::gmail(FakeTls::Implicit)
//! });
//! // … point the proxy at 127.0.0.1:fake.port(), trusting fake.ca_pem_path(), and send …
//! assert_eq!(fake.auth_attempts(), 2);
//! assert!(fake.authentications().iter().all(|a| !a.initial_response));
//! assert_eq!(fake.challenge_answers(), vec!["AQ==".to_string()]); // OAUTHBEARER's answer
//! ```
//!
//! Each `AUTH` that carries a bearer token takes the next [`SmtpAuthAnswer`], in order across all
//! connections; when they run out the answer is [`SmtpAuthAnswer::Ok`]. The fake accepts an
//! initial response on the `AUTH` line but records whether there was one
//! ([`AuthRecord::initial_response`]), so tests can assert the proxy's two-step form. After
//! `235` the connection is a minimal mail session: `MAIL`, `RCPT`, `DATA` (dot-unstuffed), `BDAT`
//! chunks, `RSET`, `NOOP`, `EHLO`, `QUIT`; accepted messages are [`FakeSmtp::messages`]. After
//! [`SmtpAuthAnswer::OkThenRefuse`] every command but `QUIT` is refused.
//!
//! TLS: [`FakeTls::Implicit`] is port 465; [`FakeTls::StartTls`] is port 587, where the
//! plaintext EHLO lists `STARTTLS` and no `AUTH` line (as Gmail and Microsoft do) and the list
//! after TLS is the configured one; [`FakeTls::Plain`] lists the configured keywords, `AUTH`
//! included, without `STARTTLS`: a stripped server that would take a token in clear. The fake
//! runs on its own threads (plain blocking sockets and rustls) and stops on drop.

mod session;

use std::collections::VecDeque;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub use crate::fakeimap::{AuthRecord, Event, FakeTls};
use crate::testca::TestCa;
use crate::util::TempDir;

/// How the fake answers one `AUTH` that carried a bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmtpAuthAnswer {
    /// `235 2.7.0 Accepted`, and a mail session follows.
    Ok,
    /// `535 <text>` at once, like Microsoft (`5.7.3 Authentication unsuccessful`).
    Reject(String),
    /// `334 base64(json)`; the client's answer is recorded ([`FakeSmtp::challenge_answers`]);
    /// then `535 <final_reply>` (or `501 5.7.0` if the client cancelled with `*`), like Google and
    /// Dovecot. (`final` is a Rust keyword, hence the name.)
    Challenge { json: String, final_reply: String },
    /// `454 <text>`: a temporary failure.
    Temporary(String),
    /// The TCP connection is closed without a word.
    Reset,
    /// `235 2.7.0 Accepted`, then every later command but `QUIT` is answered `<text>` (e.g.
    /// `554 5.7.0 Not allowed`): a server that claims a success it does not mean.
    OkThenRefuse(String),
}

impl SmtpAuthAnswer {
    /// Microsoft's refusal: `535 5.7.3 Authentication unsuccessful [fake]`.
    pub fn microsoft_reject() -> SmtpAuthAnswer {
        SmtpAuthAnswer::Reject("5.7.3 Authentication unsuccessful [fake]".into())
    }

    /// Google's refusal: the JSON challenge with status `400`, then `535 5.7.8 Username and
    /// Password not accepted (fake)`.
    pub fn google_challenge() -> SmtpAuthAnswer {
        SmtpAuthAnswer::Challenge {
            json: r#"{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}"#
                .into(),
            final_reply: "5.7.8 Username and Password not accepted (fake)".into(),
        }
    }
}

/// Gmail's EHLO keywords after TLS (captured; `protocols.md` §1.4).
pub const GMAIL_EHLO: [&str; 7] = [
    "SIZE 35882577",
    "8BITMIME",
    "AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH",
    "ENHANCEDSTATUSCODES",
    "PIPELINING",
    "CHUNKING",
    "SMTPUTF8",
];
/// Microsoft 365's EHLO keywords after TLS (captured; `protocols.md` §1.4): XOAUTH2 only.
pub const MICROSOFT_EHLO: [&str; 9] = [
    "SIZE 157286400",
    "PIPELINING",
    "DSN",
    "ENHANCEDSTATUSCODES",
    "AUTH LOGIN XOAUTH2",
    "8BITMIME",
    "BINARYMIME",
    "CHUNKING",
    "SMTPUTF8",
];

/// What the fake does.
#[derive(Debug, Clone)]
pub struct FakeSmtpOptions {
    pub tls: FakeTls,
    /// The greeting line without CRLF; `None` for `220 fake.smtp.test ESMTP fakesmtp ready`.
    /// Anything but a `220` (e.g. `554 5.3.2 No service`) refuses the session: every command
    /// but QUIT then gets `503 5.5.1` (RFC 5321 §3.1).
    pub greeting: Option<String>,
    /// The EHLO keyword lines (without `250-`), `AUTH` lines included.
    pub ehlo: Vec<String>,
    /// One per `AUTH` with a token, in order across all connections; `Ok` when they run out.
    pub answers: Vec<SmtpAuthAnswer>,
}

impl FakeSmtpOptions {
    /// Gmail's keywords (both OAuth mechanisms), every login accepted.
    pub fn gmail(tls: FakeTls) -> FakeSmtpOptions {
        FakeSmtpOptions {
            tls,
            greeting: None,
            ehlo: GMAIL_EHLO.map(String::from).to_vec(),
            answers: Vec::new(),
        }
    }

    /// Microsoft's keywords (XOAUTH2 only), every login accepted.
    pub fn microsoft(tls: FakeTls) -> FakeSmtpOptions {
        FakeSmtpOptions {
            tls,
            greeting: None,
            ehlo: MICROSOFT_EHLO.map(String::from).to_vec(),
            answers: Vec::new(),
        }
    }
}

/// One message the fake accepted after a login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub connection: usize,
    /// The reverse path from `MAIL FROM:<…>`, without the brackets (may be empty).
    pub mail_from: String,
    /// The forward paths from `RCPT TO:<…>`, in order.
    pub rcpt_to: Vec<String>,
    /// The message as transferred: dot-stuffing removed for DATA (ending with the CRLF before
    /// the `.` line), the chunks joined for BDAT.
    pub data: Vec<u8>,
    /// Sent with BDAT (CHUNKING) rather than DATA.
    pub chunked: bool,
}

/// State shared by the fake's threads and its handle.
#[derive(Default)]
struct Shared {
    events: Vec<Event>,
    connections: usize,
    attempts: usize,
    auths: Vec<AuthRecord>,
    challenge_answers: Vec<String>,
    plaintext: Vec<u8>,
    messages: Vec<StoredMessage>,
    answers: VecDeque<SmtpAuthAnswer>,
    /// Clones of the open sockets by connection: shut down when a session ends and on drop.
    sockets: Vec<(usize, TcpStream)>,
    threads: Vec<JoinHandle<()>>,
}

/// What every connection thread needs.
struct Setup {
    options: FakeSmtpOptions,
    tls: Arc<ServerConfig>,
    shared: Mutex<Shared>,
    stop: AtomicBool,
}

impl Setup {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running fake SMTP server on `127.0.0.1`. Stops on drop.
pub struct FakeSmtp {
    port: u16,
    setup: Arc<Setup>,
    ca_pem: PathBuf,
    accept: Option<JoinHandle<()>>,
    _dir: TempDir,
}

impl std::fmt::Debug for FakeSmtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeSmtp")
            .field("port", &self.port)
            .field("tls", &self.setup.options.tls)
            .finish_non_exhaustive()
    }
}

impl FakeSmtp {
    /// Starts the fake on an OS-chosen port, with a fresh test CA and a certificate for
    /// `127.0.0.1` and `localhost`. Panics if that fails (a test fixture).
    pub fn start(options: FakeSmtpOptions) -> FakeSmtp {
        let dir = TempDir::new("mo-fakesmtp").expect("a temp dir for the fake SMTP server");
        let ca = TestCa::new().expect("a test CA");
        let ca_pem = dir.path().join("ca.pem");
        ca.write_ca_pem(&ca_pem).expect("writing the CA");
        let (cert, key) = ca
            .issue(&["127.0.0.1", "localhost"])
            .expect("a server certificate");
        let certs = CertificateDer::pem_slice_iter(cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("certificate PEM");
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key PEM");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("TLS server config");

        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the fake SMTP server");
        let port = listener.local_addr().expect("its address").port();
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let setup = Arc::new(Setup {
            shared: Mutex::new(Shared {
                answers: options.answers.iter().cloned().collect(),
                ..Shared::default()
            }),
            options,
            tls: Arc::new(tls),
            stop: AtomicBool::new(false),
        });
        let for_thread = setup.clone();
        let accept = std::thread::Builder::new()
            .name("fakesmtp-accept".into())
            .spawn(move || accept_loop(listener, for_thread))
            .expect("starting the fake SMTP server thread");
        FakeSmtp {
            port,
            setup,
            ca_pem,
            accept: Some(accept),
            _dir: dir,
        }
    }

    /// The listening port on `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA certificate (PEM) to trust; the server's certificate names `127.0.0.1` and
    /// `localhost`.
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_pem
    }

    /// Everything that happened, in order, all connections interleaved (message data is not in
    /// it: see [`FakeSmtp::messages`]).
    pub fn transcript(&self) -> Vec<Event> {
        self.setup.lock().events.clone()
    }

    /// The lines received on connection `connection`, in order: commands and SASL lines.
    pub fn received_lines(&self, connection: usize) -> Vec<String> {
        self.transcript()
            .into_iter()
            .filter_map(|e| match e {
                Event::Received {
                    connection: c,
                    line,
                    ..
                } if c == connection => Some(line),
                _ => None,
            })
            .collect()
    }

    /// How many connections were accepted.
    pub fn connections(&self) -> usize {
        self.setup.lock().connections
    }

    /// How many `AUTH` commands arrived (whatever became of them).
    pub fn auth_attempts(&self) -> usize {
        self.setup.lock().attempts
    }

    /// Every `AUTH` that carried a response, decoded.
    pub fn authentications(&self) -> Vec<AuthRecord> {
        self.setup.lock().auths.clone()
    }

    /// The bearer tokens of each `AUTH`, in order.
    pub fn tokens_seen(&self) -> Vec<String> {
        self.authentications()
            .into_iter()
            .filter_map(|a| a.token)
            .collect()
    }

    /// The client's answers to error challenges (`""` for XOAUTH2, `"AQ=="` for OAUTHBEARER).
    pub fn challenge_answers(&self) -> Vec<String> {
        self.setup.lock().challenge_answers.clone()
    }

    /// Every byte received before TLS, all connections: proof that no token went in clear.
    pub fn plaintext_received(&self) -> Vec<u8> {
        self.setup.lock().plaintext.clone()
    }

    /// The messages accepted so far, oldest first.
    pub fn messages(&self) -> Vec<StoredMessage> {
        self.setup.lock().messages.clone()
    }

    /// Waits until `condition` holds for the fake (or `timeout` passes); returns whether it
    /// held.
    pub fn wait_until(&self, timeout: Duration, condition: impl Fn(&FakeSmtp) -> bool) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if condition(self) {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for FakeSmtp {
    fn drop(&mut self) {
        self.setup.stop.store(true, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        let threads = {
            let mut shared = self.setup.lock();
            for (_, socket) in &shared.sockets {
                let _ = socket.shutdown(Shutdown::Both);
            }
            std::mem::take(&mut shared.threads)
        };
        for thread in threads {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: TcpListener, setup: Arc<Setup>) {
    while !setup.stop.load(Ordering::SeqCst) {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(_) => continue,
        };
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
        let _ = stream.set_nodelay(true);
        let mut shared = setup.lock();
        let connection = shared.connections;
        shared.connections += 1;
        shared.events.push(Event::Connected { connection });
        if let Ok(clone) = stream.try_clone() {
            shared.sockets.push((connection, clone));
        }
        let for_thread = setup.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("fakesmtp-{connection}"))
            .spawn(move || {
                session::run(stream, connection, &for_thread);
                let mut shared = for_thread.lock();
                if let Some(at) = shared.sockets.iter().position(|(c, _)| *c == connection) {
                    let (_, socket) = shared.sockets.swap_remove(at);
                    let _ = socket.shutdown(Shutdown::Both);
                }
                shared.events.push(Event::Closed { connection });
            });
        if let Ok(handle) = spawned {
            shared.threads.push(handle);
        }
    }
}
