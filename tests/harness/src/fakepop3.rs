//! Scripted fake POP3 upstreams, for what a real Dovecot cannot do: Gmail's and Microsoft's CAPA
//! lists and failure styles (a JSON error challenge, an immediate `-ERR`, a `[SYS/TEMP]`
//! refusal), a server without STLS (the stripping case), a reset in the middle of a login.
//!
//! ```no_run
//! use mailoauth_harness::{FakePop3, FakePop3Options, FakeTls, Pop3AuthAnswer};
//!
//! let fake = FakePop3::start(FakePop3Options {
//!     answers: vec![Pop3AuthAnswer::google_challenge(), Pop3AuthAnswer::Ok],
//!     messages: vec![b"Subject: hi\r\n\r\n.dotted line\r\n".to_vec()],
//!     ..FakePop3Options::gmail(FakeTls::Implicit)
//! });
//! // … point the proxy at 127.0.0.1:fake.port(), trusting fake.ca_pem_path(), and log in …
//! assert_eq!(fake.auth_attempts(), 2);
//! assert_eq!(fake.challenge_answers(), vec![String::new()]); // XOAUTH2's empty line
//! assert!(fake.authentications().iter().all(|a| !a.initial_response));
//! ```
//!
//! Each `AUTH` that carries a token takes the next [`Pop3AuthAnswer`], in order across all
//! connections; when they run out the answer is [`Pop3AuthAnswer::Ok`]. Like Microsoft's and
//! RFC 5034 §4, an `AUTH` line over 255 octets (a token sent as initial response) is refused
//! with `-ERR` without taking an answer (it is still recorded, with `initial_response`). After
//! `Ok` the connection is a minimal maildrop session over [`FakePop3Options::messages`]: `STAT`,
//! `LIST [n]`, `UIDL [n]`, `RETR n` (dot-stuffed), `TOP n l`, `DELE n`, `RSET`, `NOOP`,
//! `CAPA`, `QUIT` (deletions are committed then, see [`FakePop3::deleted`]); after
//! [`Pop3AuthAnswer::OkThenRefuse`] every command but `QUIT` is refused. The fake runs on
//! its own threads (plain blocking sockets and rustls), so it works from any test, and stops on
//! drop.

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

/// How the fake answers one `AUTH` that carried a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pop3AuthAnswer {
    /// `+OK User successfully authenticated.` (Microsoft's words), and a maildrop session
    /// follows.
    Ok,
    /// `-ERR <text>` at once, like Microsoft (`Authentication failure: …`). A text starting with
    /// a response code (`[IN-USE] …`) is sent as given.
    Reject(String),
    /// `+ base64(json)`; the client's answer is recorded ([`FakePop3::challenge_answers`]);
    /// then `-ERR <final_err>` (or `-ERR Authentication aborted by client.` after `*`), like
    /// Google and Dovecot.
    Challenge { json: String, final_err: String },
    /// `-ERR [SYS/TEMP] <text>`: a passing refusal (overload; Gmail's login-delay style).
    Temporary(String),
    /// The TCP connection is closed without a word.
    Reset,
    /// `+OK` as with `Ok`, then every later command but `QUIT` is answered `-ERR <text>`: a
    /// server that claims a success it does not mean.
    OkThenRefuse(String),
}

impl Pop3AuthAnswer {
    /// Microsoft's rejection: `-ERR Authentication failure: unknown user name or bad password.`
    pub fn microsoft_reject() -> Pop3AuthAnswer {
        Pop3AuthAnswer::Reject("Authentication failure: unknown user name or bad password.".into())
    }

    /// Google's rejection: the JSON challenge with status `400`, then
    /// `-ERR [AUTH] Invalid credentials.`
    pub fn google_challenge() -> Pop3AuthAnswer {
        Pop3AuthAnswer::Challenge {
            json: r#"{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}"#
                .into(),
            final_err: "[AUTH] Invalid credentials.".into(),
        }
    }
}

/// Gmail's CAPA lines (protocols.md §1.4): `SASL PLAIN XOAUTH2`, no OAUTHBEARER for POP3.
pub const GMAIL_CAPABILITIES: &[&str] = &[
    "USER",
    "RESP-CODES",
    "EXPIRE 0",
    "LOGIN-DELAY 300",
    "TOP",
    "UIDL",
    "X-GOOGLE-VERHOEVEN",
    "SASL PLAIN XOAUTH2",
];
/// Microsoft 365's CAPA lines (protocols.md §1.4).
pub const MICROSOFT_CAPABILITIES: &[&str] = &["TOP", "UIDL", "SASL PLAIN XOAUTH2", "USER"];
/// What `CAPA` answers after login.
pub const POST_LOGIN_CAPABILITIES: &[&str] = &["TOP", "UIDL", "USER", "PIPELINING"];

/// What the fake does.
#[derive(Debug, Clone)]
pub struct FakePop3Options {
    pub tls: FakeTls,
    /// The greeting line without CRLF; `None` for `+OK Fake POP3 ready.` E.g.
    /// `Some("-ERR [SYS/TEMP] Too many connections")` (the connection is closed after it).
    pub greeting: Option<String>,
    /// The CAPA lines before login, e.g. `["USER", "SASL PLAIN XOAUTH2"]`. With
    /// [`FakeTls::StartTls`], `STLS` is added while the connection is plaintext.
    pub capabilities: Vec<String>,
    /// One per `AUTH` with a token, in order across all connections; `Ok` when they run out.
    pub answers: Vec<Pop3AuthAnswer>,
    /// The maildrop after login: each message's bytes, CRLF line ends (sizes are these bytes).
    pub messages: Vec<Vec<u8>>,
}

impl FakePop3Options {
    /// Gmail's CAPA list, every login accepted, an empty maildrop.
    pub fn gmail(tls: FakeTls) -> FakePop3Options {
        FakePop3Options {
            tls,
            greeting: None,
            capabilities: GMAIL_CAPABILITIES.iter().map(|s| s.to_string()).collect(),
            answers: Vec::new(),
            messages: Vec::new(),
        }
    }

    /// Microsoft's CAPA list, every login accepted, an empty maildrop.
    pub fn microsoft(tls: FakeTls) -> FakePop3Options {
        FakePop3Options {
            tls,
            greeting: None,
            capabilities: MICROSOFT_CAPABILITIES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            answers: Vec::new(),
            messages: Vec::new(),
        }
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
    answers: VecDeque<Pop3AuthAnswer>,
    /// Message numbers (from 1) deleted by a session that ended with QUIT.
    deleted: Vec<usize>,
    /// Clones of the open sockets by connection: shut down when a session ends (the clone would
    /// keep the connection open) and on drop (to end blocked reads).
    sockets: Vec<(usize, TcpStream)>,
    threads: Vec<JoinHandle<()>>,
}

/// What every connection thread needs.
struct Setup {
    options: FakePop3Options,
    tls: Arc<ServerConfig>,
    shared: Mutex<Shared>,
    stop: AtomicBool,
}

impl Setup {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running fake POP3 server on `127.0.0.1`. Stops on drop.
pub struct FakePop3 {
    port: u16,
    setup: Arc<Setup>,
    ca_pem: PathBuf,
    accept: Option<JoinHandle<()>>,
    _dir: TempDir,
}

impl std::fmt::Debug for FakePop3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakePop3")
            .field("port", &self.port)
            .field("tls", &self.setup.options.tls)
            .finish_non_exhaustive()
    }
}

impl FakePop3 {
    /// Starts the fake on an OS-chosen port, with a fresh test CA and a certificate for
    /// `127.0.0.1` and `localhost`. Panics if that fails (a test fixture).
    pub fn start(options: FakePop3Options) -> FakePop3 {
        let dir = TempDir::new("mo-fakepop3").expect("a temp dir for the fake POP3 server");
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

        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the fake POP3 server");
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
            .name("fakepop3-accept".into())
            .spawn(move || accept_loop(listener, for_thread))
            .expect("starting the fake POP3 server thread");
        FakePop3 {
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

    /// The lines received on connection `connection`, in order, without CRLF.
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

    /// How many `AUTH mechanism …` commands arrived (with or without a usable response).
    pub fn auth_attempts(&self) -> usize {
        self.setup.lock().attempts
    }

    /// Every `AUTH` that carried a response, decoded; `initial_response` says whether it came
    /// on the AUTH line itself.
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

    /// Message numbers (from 1) deleted by sessions that ended with `QUIT`, in order.
    pub fn deleted(&self) -> Vec<usize> {
        self.setup.lock().deleted.clone()
    }

    /// Waits until `condition` holds for the fake (or `timeout` passes); returns whether it
    /// held. For the moments a client's socket closed before the fake noted everything.
    pub fn wait_until(&self, timeout: Duration, condition: impl Fn(&FakePop3) -> bool) -> bool {
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

impl Drop for FakePop3 {
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
            .name(format!("fakepop3-{connection}"))
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
