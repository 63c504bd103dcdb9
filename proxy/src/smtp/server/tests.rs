//! Tests of the SMTP server core. Every scenario runs with the client's bytes in one piece, one
//! byte at a time, and in random chunkings; all runs must give the same output and events.
//! The rows of protocols.md §6 are named where they are covered.

mod auth;
mod ehlo;
mod session;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::ExposeSecret;

use super::*;

pub(super) const GREETING: &str = "220 test ESMTP mailoauth ready\r\n";

/// Gmail's post-TLS EHLO keywords (protocols.md §1.4).
pub(super) fn gmail_extensions() -> Vec<String> {
    [
        "SIZE 35882577",
        "8BITMIME",
        "AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH",
        "ENHANCEDSTATUSCODES",
        "PIPELINING",
        "CHUNKING",
        "SMTPUTF8",
    ]
    .map(String::from)
    .to_vec()
}

pub(super) fn options() -> ServerOptions {
    ServerOptions {
        name: "test".to_owned(),
        extensions: gmail_extensions(),
        ..ServerOptions::default()
    }
}

/// The EHLO reply for [`options`].
pub(super) const EHLO_REPLY: &str = "250-test Hello\r\n250-SIZE 35882577\r\n250-8BITMIME\r\n\
250-ENHANCEDSTATUSCODES\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-SMTPUTF8\r\n250 AUTH PLAIN LOGIN\r\n";

/// `base64("\0user\0password")`.
pub(super) fn plain_ir(user: &str, password: &str) -> String {
    STANDARD.encode(format!("\0{user}\0{password}"))
}

pub(super) fn b64(text: &str) -> String {
    STANDARD.encode(text)
}

/// An event as a test sees it (with the password exposed, to compare).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Seen {
    StartTls,
    Login {
        user: String,
        password: String,
        helo: Option<String>,
        mechanism: LoginMechanism,
    },
    Close,
}

pub(super) fn plain(user: &str, password: &str, helo: Option<&str>) -> Seen {
    Seen::Login {
        user: user.to_owned(),
        password: password.to_owned(),
        helo: helo.map(str::to_owned),
        mechanism: LoginMechanism::Plain,
    }
}

pub(super) fn login(user: &str, password: &str, helo: Option<&str>) -> Seen {
    Seen::Login {
        user: user.to_owned(),
        password: password.to_owned(),
        helo: helo.map(str::to_owned),
        mechanism: LoginMechanism::Login,
    }
}

/// What a run produced.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Transcript {
    pub greeting: String,
    /// Everything written after the greeting.
    pub output: String,
    pub events: Vec<Seen>,
    /// `into_leftover()` when the run ended with a login pending.
    pub leftover: Option<Vec<u8>>,
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Chunking {
    Whole,
    Bytes,
    Random(u64),
}

/// A client's bytes and how the driver answers.
pub(super) struct Scenario {
    options: ServerOptions,
    script: Vec<u8>,
    /// Fed after `tls_started()`, when the script led to a StartTls event.
    after_tls: Vec<u8>,
    /// Answers to Login events, in order; a Login with none left stays pending (then the
    /// leftover is taken at the end).
    failures: Vec<LoginFailure>,
}

impl Scenario {
    pub(super) fn new(script: impl AsRef<[u8]>) -> Scenario {
        Scenario {
            options: options(),
            script: script.as_ref().to_vec(),
            after_tls: Vec::new(),
            failures: Vec::new(),
        }
    }

    pub(super) fn options(mut self, change: impl FnOnce(&mut ServerOptions)) -> Scenario {
        change(&mut self.options);
        self
    }

    pub(super) fn after_tls(mut self, script: impl AsRef<[u8]>) -> Scenario {
        self.after_tls = script.as_ref().to_vec();
        self
    }

    pub(super) fn failing(mut self, failures: impl IntoIterator<Item = LoginFailure>) -> Scenario {
        self.failures = failures.into_iter().collect();
        self
    }

    /// Runs whole, byte by byte and in 20 random chunkings; asserts they agree.
    pub(super) fn check(&self) -> Transcript {
        let whole = self.run(Chunking::Whole);
        assert_eq!(self.run(Chunking::Bytes), whole, "byte by byte");
        for seed in 1..=20 {
            assert_eq!(
                self.run(Chunking::Random(seed)),
                whole,
                "chunking seed {seed}"
            );
        }
        whole
    }

    pub(super) fn run(&self, chunking: Chunking) -> Transcript {
        let mut core = ServerCore::new(self.options.clone());
        let greeting = String::from_utf8(core.take_output()).unwrap();
        let mut run = Run {
            output: Vec::new(),
            events: Vec::new(),
            failures: self.failures.clone().into_iter(),
            pending_login: false,
            awaiting_tls: false,
        };
        for chunk in chunks(&self.script, chunking) {
            core.feed(chunk);
            run.drain(&mut core);
        }
        if run.awaiting_tls {
            core.tls_started();
            run.awaiting_tls = false;
            for chunk in chunks(&self.after_tls, chunking) {
                core.feed(chunk);
                run.drain(&mut core);
            }
        }
        run.output.extend(core.take_output());
        let leftover = run.pending_login.then(|| core.into_leftover());
        Transcript {
            greeting,
            output: String::from_utf8_lossy(&run.output).into_owned(),
            events: run.events,
            leftover,
        }
    }
}

struct Run {
    output: Vec<u8>,
    events: Vec<Seen>,
    failures: std::vec::IntoIter<LoginFailure>,
    pending_login: bool,
    awaiting_tls: bool,
}

impl Run {
    /// What a driver does after each read.
    fn drain(&mut self, core: &mut ServerCore) {
        while let Some(event) = core.next_event() {
            match event {
                ServerEvent::StartTls => {
                    assert!(!self.awaiting_tls, "StartTls twice without tls_started");
                    self.events.push(Seen::StartTls);
                    self.awaiting_tls = true;
                }
                ServerEvent::Login(login) => {
                    assert!(!self.pending_login, "Login while a login is pending");
                    self.events.push(Seen::Login {
                        user: login.user,
                        password: login.password.expose_secret().to_owned(),
                        helo: login.helo,
                        mechanism: login.mechanism,
                    });
                    match self.failures.next() {
                        Some(failure) => core.login_failed(failure),
                        None => self.pending_login = true,
                    }
                }
                ServerEvent::Close => {
                    assert!(!self.events.contains(&Seen::Close), "Close twice");
                    self.events.push(Seen::Close);
                }
            }
        }
        self.output.extend(core.take_output());
    }
}

/// `bytes` cut as `chunking` says.
pub(super) fn chunks(bytes: &[u8], chunking: Chunking) -> Vec<&[u8]> {
    match chunking {
        Chunking::Whole => vec![bytes],
        Chunking::Bytes => bytes.chunks(1).collect(),
        Chunking::Random(seed) => {
            let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let mut rest = bytes;
            let mut out = Vec::new();
            while !rest.is_empty() {
                // Mostly small pieces, sometimes large ones, sometimes empty feeds.
                let max = if rng.next().is_multiple_of(4) { 64 } else { 8 };
                let n = (rng.next() % (max + 1)) as usize;
                let (chunk, tail) = rest.split_at(n.min(rest.len()));
                out.push(chunk);
                rest = tail;
            }
            out
        }
    }
}

/// A small PRNG for chunkings (Marsaglia's xorshift64).
pub(super) struct XorShift(pub u64);

impl XorShift {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn debug_output_never_shows_the_password() {
    let password = "hunter2-Secret";
    let script = format!(
        "EHLO x\r\nAUTH PLAIN {}\r\nAUTH LOGIN {}\r\n",
        plain_ir("alice", password),
        b64("alice")
    );
    let mut core = ServerCore::new(options());
    core.feed(script.as_bytes());
    let Some(ServerEvent::Login(login)) = core.next_event() else {
        panic!("no login");
    };
    assert_eq!(login.password.expose_secret(), password);
    let event = ServerEvent::Login(login);
    for shown in [
        format!("{event:?}"),
        format!("{event:#?}"),
        format!("{core:?}"),
    ] {
        assert!(!shown.contains(password), "{shown}");
        assert!(!shown.contains("hunter"), "{shown}");
    }
    assert_eq!(
        format!("{event:?}"),
        "Login(Login { user: \"alice\", password: [redacted], helo: Some(\"x\"), mechanism: Plain })"
    );
    // Half-way through AUTH LOGIN, the user name waits in the core.
    core.login_failed(LoginFailure::BadCredentials);
    assert!(core.next_event().is_none());
    core.feed(format!("{}\r\n", b64(password)).as_bytes());
    let Some(ServerEvent::Login(login)) = core.next_event() else {
        panic!("no login");
    };
    assert!(!format!("{login:?} {core:?}").contains(password));
}

#[test]
fn any_chunking_gives_the_same_transcript() {
    // A long mixed session, cut 300 ways (check() also does this for every scenario).
    let script = format!(
        "EHLO client.example\r\nNOOP\r\nMAIL FROM:<a@b>\r\nDATA\r\nAUTH LOGIN\r\n{}\r\n{}\r\n\
         AUTH PLAIN\r\n{}\r\nHELO x\nBDAT 7 LAST\r\nA\r\nB\r\nCRSET\r\n\
         AUTH PLAIN {}\r\nMAIL FROM:<a@b>\r\nBDAT 3\r\nxyz",
        b64("alice"),
        b64("pw 1"),
        plain_ir("alice", "pw 2"),
        plain_ir("bob", "pw 3"),
    );
    let scenario = Scenario::new(script).failing([
        LoginFailure::BadCredentials,
        LoginFailure::Unavailable("later".to_owned()),
    ]);
    let whole = scenario.check();
    for seed in 100..400 {
        assert_eq!(scenario.run(Chunking::Random(seed)), whole, "seed {seed}");
    }
    let helo = Some("client.example");
    assert_eq!(
        whole.events,
        vec![
            login("alice", "pw 1", helo),
            plain("alice", "pw 2", helo),
            plain("bob", "pw 3", helo),
        ]
    );
    assert_eq!(
        whole.output,
        format!(
            "{EHLO_REPLY}250 2.0.0 OK\r\n530 5.7.0 Authentication required\r\n\
             554 5.5.1 No valid recipients\r\n334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n\
             535 5.7.8 Authentication credentials invalid\r\n334 \r\n454 4.7.0 later\r\n\
             500 5.5.2 Syntax error: lines must end with CRLF\r\n\
             530 5.7.0 Authentication required\r\n250 2.0.0 OK\r\n"
        )
    );
    assert_eq!(
        whole.leftover.as_deref(),
        Some(&b"MAIL FROM:<a@b>\r\nBDAT 3\r\nxyz"[..])
    );
}
