//! Scripted fake IMAP upstreams, for what a real Dovecot cannot do: Gmail's and Microsoft's
//! capability strings and failure styles (an error challenge, an immediate NO), a server without
//! STARTTLS (the stripping case), a `PREAUTH` greeting, a `BYE` or a reset in the middle of a
//! login.
//!
//! ```no_run
//! use mailoauth_harness::{AuthAnswer, FakeImap, FakeImapOptions, FakeTls};
//!
//! let fake = FakeImap::start(FakeImapOptions {
//!     answers: vec![AuthAnswer::google_challenge(), AuthAnswer::Ok],
//!     ..FakeImapOptions::gmail(FakeTls::Implicit)
//! });
//! // … point the proxy at 127.0.0.1:fake.port(), trusting fake.ca_pem_path(), and log in …
//! assert_eq!(fake.authenticate_attempts(), 2);
//! assert_eq!(fake.challenge_answers(), vec![String::new()]); // XOAUTH2's empty line
//! ```
//!
//! Each `AUTHENTICATE` (with a token) takes the next [`AuthAnswer`], in order across all
//! connections; when they run out the answer is [`AuthAnswer::Ok`]. After `Ok` the connection is
//! a minimal logged-in session: `NOOP`, `SELECT`, `LIST`, `APPEND` (literals), `IDLE`/`DONE`,
//! `ECHO text` (answers `* ECHO text`), `LOGOUT`; after [`AuthAnswer::OkThenRefuse`] every
//! command but `LOGOUT` is refused. The fake runs on its own threads (plain
//! blocking sockets and rustls), so it works from any test, and stops on drop.

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

use crate::testca::TestCa;
use crate::util::{TempDir, redact};

/// How the fake offers TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeTls {
    /// TLS from the first byte (port 993 style).
    Implicit,
    /// Plaintext with `STARTTLS` in the capabilities (port 143 style).
    StartTls,
    /// Plaintext and no `STARTTLS`: what a proxy sees when something strips it.
    Plain,
}

/// How the fake answers one `AUTHENTICATE`.
#[derive(Clone, PartialEq, Eq)]
pub enum AuthAnswer {
    /// `* CAPABILITY …` then `TAG OK [CAPABILITY …] Success` (post-login capabilities, like
    /// Gmail), and a logged-in session follows.
    Ok,
    /// `TAG NO <text>` at once, like Microsoft (`AUTHENTICATE failed.`).
    ImmediateNo(String),
    /// `+ base64(json)`; the client's answer is recorded ([`FakeImap::challenge_answers`]); then
    /// `TAG NO <final_no>` (or `TAG BAD …` if the client cancelled with `*`), like Google and
    /// Dovecot.
    Challenge { json: String, final_no: String },
    /// The TCP connection is closed without a word.
    Reset,
    /// `* BYE <text>`, then the connection is closed.
    Bye(String),
    /// The login succeeds as with `Ok`, then every later command but `LOGOUT` is answered
    /// `TAG <text>` (e.g. `NO [UNAVAILABLE] Backend down`, `BAD …`): a server that claims a
    /// success it does not mean.
    OkThenRefuse(String),
}

impl AuthAnswer {
    /// Microsoft's rejection: `TAG NO AUTHENTICATE failed.`
    pub fn microsoft_no() -> AuthAnswer {
        AuthAnswer::ImmediateNo("AUTHENTICATE failed.".into())
    }

    /// Google's rejection: the JSON challenge with status `400`, then
    /// `TAG NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)`.
    pub fn google_challenge() -> AuthAnswer {
        AuthAnswer::Challenge {
            json: r#"{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}"#
                .into(),
            final_no: "[AUTHENTICATIONFAILED] Invalid credentials (Failure)".into(),
        }
    }
}

impl std::fmt::Debug for AuthAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthAnswer::Ok => f.write_str("Ok"),
            AuthAnswer::ImmediateNo(text) => f.debug_tuple("ImmediateNo").field(text).finish(),
            AuthAnswer::Challenge { json, final_no } => f
                .debug_struct("Challenge")
                .field("json", json)
                .field("final_no", final_no)
                .finish(),
            AuthAnswer::Reset => f.write_str("Reset"),
            AuthAnswer::Bye(text) => f.debug_tuple("Bye").field(text).finish(),
            AuthAnswer::OkThenRefuse(text) => f.debug_tuple("OkThenRefuse").field(text).finish(),
        }
    }
}

/// Gmail's capabilities before login (captured; `protocols.md` §1.4).
pub const GMAIL_CAPABILITIES: &str = "IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST CHILDREN \
X-GM-EXT-1 XYZZY SASL-IR AUTH=XOAUTH2 AUTH=PLAIN AUTH=PLAIN-CLIENTTOKEN AUTH=OAUTHBEARER AUTH=XOAUTH";
/// Microsoft 365's capabilities before login (captured; `protocols.md` §1.4): no OAUTHBEARER.
pub const MICROSOFT_CAPABILITIES: &str = "IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS \
MOVE ID UNSELECT CHILDREN IDLE NAMESPACE LITERAL+";
/// What the fake announces after a successful login (Gmail's post-login list).
pub const POST_LOGIN_CAPABILITIES: &str = "IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST \
CHILDREN X-GM-EXT-1 UIDPLUS COMPRESS=DEFLATE ENABLE MOVE CONDSTORE ESEARCH UTF8=ACCEPT \
LIST-EXTENDED LIST-STATUS LITERAL- SPECIAL-USE APPENDLIMIT=35651584";

/// What the fake does.
#[derive(Debug, Clone)]
pub struct FakeImapOptions {
    pub tls: FakeTls,
    /// The greeting line without CRLF; `None` for `* OK [CAPABILITY <capabilities>] Gimap ready
    /// for requests (fake)`. E.g. `Some("* PREAUTH [CAPABILITY IMAP4rev1] Logged in")`,
    /// `Some("* BYE Too many connections")`, or a greeting without a capability list.
    pub greeting: Option<String>,
    /// The capabilities before login, e.g. `IMAP4rev1 SASL-IR AUTH=XOAUTH2 AUTH=OAUTHBEARER`.
    /// With [`FakeTls::StartTls`], `STARTTLS` is added while the connection is plaintext.
    pub capabilities: String,
    /// One per `AUTHENTICATE`, in order across all connections; `Ok` when they run out.
    pub answers: Vec<AuthAnswer>,
    /// How long a connection may stay silent before the fake closes it (60 s; a benchmark of
    /// idle sessions wants more).
    pub idle_timeout: Duration,
}

impl FakeImapOptions {
    /// Gmail's capabilities (both OAuth mechanisms, SASL-IR), every login accepted.
    pub fn gmail(tls: FakeTls) -> FakeImapOptions {
        FakeImapOptions {
            tls,
            greeting: None,
            capabilities: GMAIL_CAPABILITIES.into(),
            answers: Vec::new(),
            idle_timeout: Duration::from_secs(60),
        }
    }

    /// Microsoft's capabilities (XOAUTH2 only, LITERAL+), every login accepted.
    pub fn microsoft(tls: FakeTls) -> FakeImapOptions {
        FakeImapOptions {
            tls,
            greeting: None,
            capabilities: MICROSOFT_CAPABILITIES.into(),
            answers: Vec::new(),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// One thing that happened on the fake, in order. Connections are numbered from 0.
#[derive(Clone, PartialEq, Eq)]
pub enum Event {
    Connected {
        connection: usize,
    },
    /// The TLS handshake finished (implicit, or after STARTTLS).
    TlsStarted {
        connection: usize,
    },
    /// A line from the client without its CRLF: a command (literals inline), a SASL response
    /// or a challenge answer. Raw (lossy UTF-8): tokens included; `Debug` shortens them.
    Received {
        connection: usize,
        tls: bool,
        line: String,
    },
    /// A line the fake sent, without its CRLF.
    Sent {
        connection: usize,
        line: String,
    },
    /// The connection ended (either side).
    Closed {
        connection: usize,
    },
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Connected { connection } => write!(f, "#{connection} connected"),
            Event::TlsStarted { connection } => write!(f, "#{connection} TLS"),
            Event::Received {
                connection,
                tls,
                line,
            } => {
                let how = if *tls { "TLS" } else { "PLAIN" };
                write!(f, "#{connection} C({how}): {}", shorten_secrets(line))
            }
            Event::Sent { connection, line } => {
                write!(f, "#{connection} S: {}", shorten_secrets(line))
            }
            Event::Closed { connection } => write!(f, "#{connection} closed"),
        }
    }
}

/// Replaces every word of 24 characters or more (base64 SASL payloads) by its first characters
/// and length.
fn shorten_secrets(line: &str) -> String {
    line.split(' ')
        .map(|w| {
            if w.len() >= 24 {
                redact(w)
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One `AUTHENTICATE` that carried a response.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthRecord {
    pub connection: usize,
    /// The mechanism as the client named it.
    pub mechanism: String,
    /// The response came on the command line (SASL-IR), not after a `+`.
    pub initial_response: bool,
    /// Whether the connection was TLS.
    pub tls: bool,
    /// The decoded SASL response (holds the token).
    pub decoded: Vec<u8>,
    /// The bearer token in it, if any.
    pub token: Option<String>,
}

impl std::fmt::Debug for AuthRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthRecord")
            .field("connection", &self.connection)
            .field("mechanism", &self.mechanism)
            .field("initial_response", &self.initial_response)
            .field("tls", &self.tls)
            .field("decoded_len", &self.decoded.len())
            .field("token", &self.token.as_deref().map(redact))
            .finish()
    }
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
    answers: VecDeque<AuthAnswer>,
    /// Clones of the open sockets by connection: shut down when a session ends (the clone would
    /// keep the connection open) and on drop (to end blocked reads).
    sockets: Vec<(usize, TcpStream)>,
    threads: Vec<JoinHandle<()>>,
}

/// What every connection thread needs.
struct Setup {
    options: FakeImapOptions,
    tls: Arc<ServerConfig>,
    shared: Mutex<Shared>,
    stop: AtomicBool,
}

impl Setup {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running fake IMAP server on `127.0.0.1`. Stops on drop.
pub struct FakeImap {
    port: u16,
    setup: Arc<Setup>,
    ca_pem: PathBuf,
    accept: Option<JoinHandle<()>>,
    _dir: TempDir,
}

impl std::fmt::Debug for FakeImap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeImap")
            .field("port", &self.port)
            .field("tls", &self.setup.options.tls)
            .finish_non_exhaustive()
    }
}

impl FakeImap {
    /// Starts the fake on an OS-chosen port, with a fresh test CA and a certificate for
    /// `127.0.0.1` and `localhost`. Panics if that fails (a test fixture).
    pub fn start(options: FakeImapOptions) -> FakeImap {
        let dir = TempDir::new("mo-fakeimap").expect("a temp dir for the fake IMAP server");
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

        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the fake IMAP server");
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
            .name("fakeimap-accept".into())
            .spawn(move || accept_loop(listener, for_thread))
            .expect("starting the fake IMAP server thread");
        FakeImap {
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

    /// Everything that happened, in order, all connections interleaved.
    pub fn transcript(&self) -> Vec<Event> {
        self.setup.lock().events.clone()
    }

    /// The lines received on connection `connection`, in order.
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

    /// How many `AUTHENTICATE` commands arrived (with or without a usable response).
    pub fn authenticate_attempts(&self) -> usize {
        self.setup.lock().attempts
    }

    /// Every `AUTHENTICATE` that carried a response, decoded.
    pub fn authentications(&self) -> Vec<AuthRecord> {
        self.setup.lock().auths.clone()
    }

    /// The bearer tokens of each `AUTHENTICATE`, in order.
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

    /// Waits until `condition` holds for the fake (or `timeout` passes); returns whether it
    /// held. For the moments a client's socket closed before the fake noted everything.
    pub fn wait_until(&self, timeout: Duration, condition: impl Fn(&FakeImap) -> bool) -> bool {
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

impl Drop for FakeImap {
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
        let _ = stream.set_read_timeout(Some(setup.options.idle_timeout));
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
            .name(format!("fakeimap-{connection}"))
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
