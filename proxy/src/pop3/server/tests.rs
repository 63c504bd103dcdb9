//! Tests of the POP3 server core. Every scenario runs with the client's bytes in one piece, one
//! byte at a time, and in random chunkings; all runs must give the same output and events.
//! The rows of protocols.md §6 (42-47) are named where they are covered.

mod login;
mod session;

use secrecy::ExposeSecret;

use super::*;

pub(super) const GREETING: &str = "+OK test ready\r\n";

pub(super) fn options() -> ServerOptions {
    ServerOptions {
        tls_active: false,
        starttls: false,
        require_tls: false,
        name: "test".to_owned(),
        capabilities: Vec::new(),
        limits: Limits::default(),
    }
}

/// An event as a test sees it (with the password exposed, to compare).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Seen {
    StartTls,
    Login {
        user: String,
        password: String,
        mechanism: LoginMechanism,
    },
    Close,
}

pub(super) fn pass(user: &str, password: &str) -> Seen {
    Seen::Login {
        user: user.to_owned(),
        password: password.to_owned(),
        mechanism: LoginMechanism::UserPass,
    }
}

pub(super) fn plain(user: &str, password: &str) -> Seen {
    Seen::Login {
        user: user.to_owned(),
        password: password.to_owned(),
        mechanism: LoginMechanism::AuthPlain,
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
            assert!(!self.events.contains(&Seen::Close), "event after Close");
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
                        mechanism: login.mechanism,
                    });
                    match self.failures.next() {
                        Some(failure) => core.login_failed(failure),
                        None => self.pending_login = true,
                    }
                }
                ServerEvent::Close => self.events.push(Seen::Close),
            }
        }
        let output = core.take_output();
        if self.events.contains(&Seen::Close) {
            // Nothing after the Close event: the last answer went out with it.
            assert!(core.take_output().is_empty());
        }
        self.output.extend(output);
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

/// Gmail's CAPA lines after TLS (protocols.md §1.4).
pub(super) fn gmail_capabilities() -> Vec<String> {
    [
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
    .to_vec()
}

#[test]
fn greeting_has_no_apop_timestamp_and_is_one_line() {
    // Row 44 (no `<timestamp>`).
    let greeting = |name: &str| {
        let name = name.to_owned();
        Scenario::new("")
            .options(move |o| o.name = name)
            .check()
            .greeting
    };
    assert_eq!(greeting("test"), GREETING);
    assert_eq!(
        greeting("box <1896.697170952@dbc.mtview.ca.us>"),
        "+OK box  1896.697170952@dbc.mtview.ca.us ready\r\n"
    );
    assert_eq!(greeting("box\r\n-ERR x"), "+OK box  -ERR x ready\r\n");
    assert_eq!(greeting(""), "+OK mailoauth ready\r\n");
    assert_eq!(greeting("<>"), "+OK mailoauth ready\r\n");
}

#[test]
fn capa_before_login() {
    // Row 45: USER, SASL PLAIN, STLS only on a plain listener before TLS, never XOAUTH2.
    let capa =
        |change: fn(&mut ServerOptions)| Scenario::new("CAPA\r\n").options(change).check().output;
    let base =
        "+OK Capability list follows\r\nUSER\r\nSASL PLAIN\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n";
    assert_eq!(capa(|_| {}), format!("{base}.\r\n"));
    assert_eq!(capa(|o| o.starttls = true), format!("{base}STLS\r\n.\r\n"));
    assert_eq!(
        capa(|o| {
            o.starttls = true;
            o.require_tls = true;
        }),
        "+OK Capability list follows\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nSTLS\r\n.\r\n"
    );
    // Implicit TLS: no STLS, login allowed whatever else is set.
    assert_eq!(
        capa(|o| {
            o.tls_active = true;
            o.starttls = true;
            o.require_tls = true;
        }),
        format!("{base}.\r\n")
    );
    // The upstream's lines, through the allow-list: Gmail's SASL XOAUTH2, USER, RESP-CODES and
    // X-GOOGLE-VERHOEVEN stay out.
    let t = Scenario::new("capa\r\n")
        .options(|o| o.capabilities = gmail_capabilities())
        .check();
    assert_eq!(
        t.output,
        format!("{base}TOP\r\nUIDL\r\nEXPIRE 0\r\nLOGIN-DELAY 300\r\n.\r\n")
    );
    assert!(!t.output.contains("XOAUTH2"));
    let t = Scenario::new("CAPA\r\n")
        .options(|o| {
            o.capabilities = [
                "STLS",
                "SASL OAUTHBEARER",
                "USER",
                "PIPELINING",
                "IMPLEMENTATION x",
            ]
            .map(String::from)
            .to_vec()
        })
        .check();
    assert_eq!(t.output, format!("{base}PIPELINING\r\n.\r\n"));
}

#[test]
fn commands_that_need_a_login_and_unknown_ones() {
    let t = Scenario::new(
        "STAT\r\nLIST\r\nretr 1\r\nDELE 1\r\nNOOP\r\nRSET\r\nTOP 1 0\r\nUIDL\r\nXYZZY\r\n\r\n",
    )
    .check();
    let expected = "-ERR Not authenticated: log in first\r\n".repeat(8)
        + "-ERR Unknown command\r\n-ERR Unknown command\r\n";
    assert_eq!(t.output, expected);
    assert_eq!(t.events, vec![Seen::Close], "the tenth error closes");
}

#[test]
fn quit_says_bye_and_closes() {
    let t = Scenario::new("QUIT\r\nCAPA\r\n").check();
    assert_eq!(t.output, "+OK Bye\r\n");
    assert_eq!(t.events, vec![Seen::Close]);
    let t = Scenario::new("quit now\r\nQUIT\r\n").check();
    assert_eq!(t.output, "-ERR No arguments allowed\r\n+OK Bye\r\n");
}

#[test]
fn apop_is_refused() {
    // Row 44.
    let t = Scenario::new("APOP alice c4c9334bac560ecc979e58001b3e22fb\r\n").check();
    assert_eq!(t.output, "-ERR APOP is not supported\r\n");
    assert!(t.events.is_empty());
}

#[test]
fn bare_lf_ends_the_line_and_is_refused() {
    let t = Scenario::new("CAPA\nUSER alice\nPASS x\nQUIT\r\n").check();
    assert_eq!(
        t.output,
        "-ERR Lines must end with CRLF\r\n".repeat(3) + "+OK Bye\r\n"
    );
    assert_eq!(t.events, vec![Seen::Close]);
}

#[test]
fn debug_output_never_shows_the_password() {
    let password = "hunter2-Secret";
    let script = format!("USER alice\r\nPASS {password}\r\nUSER bob\r\nPASS {password}");
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
    assert!(format!("{event:?}").contains("alice"));
    // The second PASS is half-read: its password sits in the core's buffer.
    core.login_failed(LoginFailure::BadCredentials);
    assert!(core.next_event().is_none());
    assert!(!format!("{core:?}").contains("hunter"));
}

#[test]
fn any_chunking_gives_the_same_transcript() {
    // A long mixed session, cut 300 ways (check() also does this for every scenario).
    let script = concat!(
        "CAPA\r\nUSER alice\r\nPASS  two  spaces \r\n",
        "AUTH PLAIN\r\nAGFsaWNlAHMzY3JldA==\r\n",
        "STAT\r\nAUTH XOAUTH2 AAAA\r\nAUTH\r\n",
        "AUTH PLAIN AGJvYgBwdw==\r\nRETR 1\r\nQUIT\r\n"
    );
    let scenario = Scenario::new(script).failing([
        LoginFailure::BadCredentials,
        LoginFailure::Unavailable("later".to_owned()),
    ]);
    let whole = scenario.check();
    for seed in 100..400 {
        assert_eq!(scenario.run(Chunking::Random(seed)), whole, "seed {seed}");
    }
    assert_eq!(
        whole.events,
        vec![
            pass("alice", " two  spaces "),
            plain("alice", "s3cret"),
            plain("bob", "pw"),
        ]
    );
    assert_eq!(whole.leftover.as_deref(), Some(&b"RETR 1\r\nQUIT\r\n"[..]));
}
