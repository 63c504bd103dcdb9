//! Tests of the IMAP server core. Every scenario runs with the client's bytes in one piece, one
//! byte at a time, and in random chunkings; all runs must give the same output and events.
//! The rows of protocols.md §6 are named where they are covered.

mod authenticate;
mod login;
mod session;

use secrecy::ExposeSecret;

use super::*;

pub(super) const GREETING: &str =
    "* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL- ID AUTH=PLAIN] test ready\r\n";

pub(super) fn options() -> ServerOptions {
    ServerOptions {
        tls_active: false,
        starttls: false,
        require_tls: false,
        limits: Limits::default(),
        name: "test".to_owned(),
    }
}

/// An event as a test sees it (with the password exposed, to compare).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Seen {
    StartTls,
    Login {
        tag: String,
        user: String,
        password: String,
        mechanism: LoginMechanism,
    },
    Close,
}

pub(super) fn login(tag: &str, user: &str, password: &str) -> Seen {
    Seen::Login {
        tag: tag.to_owned(),
        user: user.to_owned(),
        password: password.to_owned(),
        mechanism: LoginMechanism::Login,
    }
}

pub(super) fn plain(tag: &str, user: &str, password: &str) -> Seen {
    Seen::Login {
        tag: tag.to_owned(),
        user: user.to_owned(),
        password: password.to_owned(),
        mechanism: LoginMechanism::AuthenticatePlain,
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
                        tag: login.tag,
                        user: login.user,
                        password: login.password.expose_secret().to_owned(),
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
fn greeting_and_capabilities_follow_the_options() {
    let caps = |change: fn(&mut ServerOptions)| {
        let t = Scenario::new("c CAPABILITY\r\n").options(change).check();
        (t.greeting, t.output)
    };
    assert_eq!(
        caps(|_| {}),
        (
            GREETING.to_owned(),
            "* CAPABILITY IMAP4rev1 SASL-IR LITERAL- ID AUTH=PLAIN\r\nc OK CAPABILITY completed\r\n"
                .to_owned()
        )
    );
    assert_eq!(
        caps(|o| o.starttls = true),
        (
            "* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL- ID AUTH=PLAIN STARTTLS] test ready\r\n"
                .to_owned(),
            "* CAPABILITY IMAP4rev1 SASL-IR LITERAL- ID AUTH=PLAIN STARTTLS\r\nc OK CAPABILITY completed\r\n"
                .to_owned()
        )
    );
    assert_eq!(
        caps(|o| {
            o.starttls = true;
            o.require_tls = true;
        }),
        (
            "* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL- ID STARTTLS LOGINDISABLED] test ready\r\n"
                .to_owned(),
            "* CAPABILITY IMAP4rev1 SASL-IR LITERAL- ID STARTTLS LOGINDISABLED\r\nc OK CAPABILITY completed\r\n"
                .to_owned()
        )
    );
    // Implicit TLS: neither STARTTLS nor LOGINDISABLED, whatever else is set.
    assert_eq!(
        caps(|o| {
            o.tls_active = true;
            o.starttls = true;
            o.require_tls = true;
        }),
        (
            GREETING.to_owned(),
            "* CAPABILITY IMAP4rev1 SASL-IR LITERAL- ID AUTH=PLAIN\r\nc OK CAPABILITY completed\r\n"
                .to_owned()
        )
    );
}

#[test]
fn the_name_in_the_greeting_is_one_line() {
    let greeting = |name: &str| {
        let name = name.to_owned();
        Scenario::new("")
            .options(move |o| o.name = name)
            .check()
            .greeting
    };
    assert_eq!(
        greeting("box\r\n* BYE x"),
        "* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL- ID AUTH=PLAIN] box  * BYE x ready\r\n"
    );
    assert_eq!(
        greeting(""),
        "* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL- ID AUTH=PLAIN] mailoauth ready\r\n"
    );
}

#[test]
fn noop_and_lowercase_commands() {
    // Row 9 (keywords in any case).
    let t = Scenario::new("a1 NOOP\r\na2 noop\r\na3 capability\r\nA4 NoOp\r\n").check();
    assert_eq!(
        t.output,
        "a1 OK NOOP completed\r\na2 OK NOOP completed\r\n\
         * CAPABILITY IMAP4rev1 SASL-IR LITERAL- ID AUTH=PLAIN\r\na3 OK CAPABILITY completed\r\n\
         A4 OK NOOP completed\r\n"
    );
    assert!(t.events.is_empty());
}

#[test]
fn id_in_its_forms() {
    // Row 19.
    let id = concat!(
        "* ID (\"name\" \"mailoauth\" \"version\" \"",
        env!("CARGO_PKG_VERSION"),
        "\")\r\n"
    );
    let long = "x".repeat(2000);
    let script = format!(
        "a1 ID (\"name\" \"Thunderbird\" \"version\" \"128.0\")\r\n\
         a2 ID NIL\r\na3 id nil\r\n\
         a4 ID (\"a-field-name-longer-than-thirty-octets\" \"{long}\")\r\n\
         a5 ID ()\r\n"
    );
    let t = Scenario::new(script).check();
    let expected: String = (1..=5)
        .map(|n| format!("{id}a{n} OK ID completed\r\n"))
        .collect();
    assert_eq!(t.output, expected);
    assert!(t.events.is_empty());
}

#[test]
fn logout_says_bye_and_closes() {
    let t = Scenario::new("a1 LOGOUT\r\na2 NOOP\r\n").check();
    assert_eq!(t.output, "* BYE Logging out\r\na1 OK LOGOUT completed\r\n");
    assert_eq!(t.events, vec![Seen::Close]);
}

#[test]
fn commands_that_need_a_login_are_refused_locally() {
    // Row 18.
    let t = Scenario::new(
        "a1 SELECT INBOX\r\na2 LIST \"\" *\r\na3 ENABLE UTF8=ACCEPT\r\na4 COMPRESS DEFLATE\r\n",
    )
    .check();
    let expected: String = (1..=4)
        .map(|n| format!("a{n} BAD Command invalid in this state: log in first\r\n"))
        .collect();
    assert_eq!(t.output, expected);
    assert!(t.events.is_empty());
}

#[test]
fn syntax_errors_get_a_tagged_bad_when_there_is_a_tag() {
    let t = Scenario::new("a1 XYZZY\r\nc+7 NOOP\r\n\r\n* NOOP\r\na2 NOOP extra\r\na3\r\n").check();
    assert_eq!(
        t.output,
        "a1 BAD Syntax error\r\n* BAD Syntax error\r\n* BAD Syntax error\r\n\
         * BAD Syntax error\r\na2 BAD Syntax error\r\n* BAD Syntax error\r\n"
    );
}

#[test]
fn bare_lf_ends_the_line_and_is_refused() {
    // Row 29: the line ends at LF (no hang), the command gets BAD, the next one works.
    let t = Scenario::new("a1 NOOP\na2 LOGIN alice s3cret\na3 LOGIN {5}\na4 NOOP\r\n").check();
    assert_eq!(
        t.output,
        "a1 BAD Lines must end with CRLF\r\na2 BAD Lines must end with CRLF\r\n\
         a3 BAD Lines must end with CRLF\r\na4 OK NOOP completed\r\n"
    );
    assert!(t.events.is_empty());
    // A lone LF, and a CR that is not before the LF.
    let t = Scenario::new("\na1 NOOP\rx\r\na2 NOOP\r\r\n").check();
    assert_eq!(
        t.output,
        "* BAD Lines must end with CRLF\r\na1 BAD Syntax error\r\na2 BAD Syntax error\r\n"
    );
}

#[test]
fn debug_output_never_shows_the_password() {
    let password = "hunter2-Secret";
    let script = format!("a1 LOGIN alice {password}\r\na2 LOGIN alice {{14}}\r\n{password}");
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
    let ServerEvent::Login(login) = event else {
        unreachable!()
    };
    assert!(!format!("{login:?}").contains(password));
    // Mid-literal, the password sits in the core's buffers.
    core.login_failed(LoginFailure::BadCredentials);
    assert!(core.next_event().is_none());
    assert!(!format!("{core:?}").contains(password));
    for failure in [
        LoginFailure::BadCredentials,
        LoginFailure::Unavailable("down".to_owned()),
    ] {
        assert!(!format!("{failure:?}").contains(password));
    }
}

#[test]
fn any_chunking_gives_the_same_transcript() {
    // A long mixed session, cut 300 ways (check() also does this for every scenario).
    let script = concat!(
        "a1 CAPABILITY\r\na2 ID (\"name\" {11}\r\nThunderbird)\r\n",
        "a3 LOGIN {5+}\r\nalice {6}\r\nsecret\r\n",
        "a4 AUTHENTICATE PLAIN\r\nAGFsaWNlAHMzY3JldA==\r\n",
        "a5 SELECT {5+}\r\nINBOX\r\na6 NOOP\na7 AUTHENTICATE XOAUTH2 AAAA\r\n",
        "a8 LOGIN alice {4097}\r\na9 LOGIN \"al\\\"ice\" \"p\\\\w d\"\r\na10 FETCH 1 BODY[]\r\n"
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
            login("a3", "alice", "secret"),
            plain("a4", "alice", "s3cret"),
            login("a9", "al\"ice", "p\\w d"),
        ]
    );
    assert_eq!(
        whole.leftover.as_deref(),
        Some(&b"a10 FETCH 1 BODY[]\r\n"[..])
    );
}
