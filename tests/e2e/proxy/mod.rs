//! The IMAP proxy end to end: `mailoauth serve` between plain-password clients and a real,
//! OAuth-only Dovecot (and scripted fake upstreams for what Dovecot cannot do).

mod clients;
mod control;
mod dovecot;
mod fakes;
mod fakes_smtp_pop3;
mod pop3;
mod smtp;

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use mailoauth_harness::{AuthServer, Dovecot, DovecotOptions, LineClient, Mechanisms, Services};

use crate::common::*;

/// The local password the tests give the proxy.
pub const LOCAL_PASSWORD: &str = "correct horse battery staple";

/// A free loopback port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How the proxy's IMAP listener speaks to clients.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Local {
    Plain,
    StartTls,
    Implicit,
}

/// A running `mailoauth serve`, stopped on drop.
pub struct Proxy {
    pub env: Env,
    pub port: u16,
    pub local: Local,
    child: Option<Child>,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Proxy {
    /// Configures ALICE with `upstream` (an `imap`/`imaps` URL) and `extra` account lines,
    /// authorizes her, sets her local password, and starts the proxy.
    pub fn start(
        server: &AuthServer,
        upstream: &str,
        ca: Option<&std::path::Path>,
        local: Local,
        extra: &str,
    ) -> Proxy {
        Proxy::start_edited(server, upstream, ca, local, extra, |config| config)
    }

    /// Like [`Proxy::start`], with the configuration text passed through `edit` first.
    pub fn start_edited(
        server: &AuthServer,
        upstream: &str,
        ca: Option<&std::path::Path>,
        local: Local,
        extra: &str,
        edit: impl FnOnce(String) -> String,
    ) -> Proxy {
        let (env, port) = Proxy::configure(server, upstream, ca, local, extra, BASE64_STORE);
        env.write_config(&edit(std::fs::read_to_string(&env.config).unwrap()));
        env.authorize_loopback(ALICE);
        set_password(&env, &format!("{LOCAL_PASSWORD}\n"));
        Proxy::launch(env, port, local)
    }

    /// Like [`Proxy::start`] for `protocol` (`imap`, `smtp`, `pop3`): its listener, and the
    /// account's server for it.
    pub fn start_for(
        protocol: &str,
        server: &AuthServer,
        upstream: &str,
        ca: Option<&std::path::Path>,
        local: Local,
    ) -> Proxy {
        let (env, port) =
            Proxy::configure_for(protocol, server, upstream, ca, local, "", BASE64_STORE);
        env.authorize_loopback(ALICE);
        set_password(&env, &format!("{LOCAL_PASSWORD}\n"));
        Proxy::launch(env, port, local)
    }

    /// Writes a configuration with `store`, an IMAP listener and ALICE's account; returns the
    /// environment and the listener's port.
    pub fn configure(
        server: &AuthServer,
        upstream: &str,
        ca: Option<&std::path::Path>,
        local: Local,
        extra: &str,
        store: &str,
    ) -> (Env, u16) {
        Proxy::configure_for("imap", server, upstream, ca, local, extra, store)
    }

    /// [`Proxy::configure`] for `protocol`.
    pub fn configure_for(
        protocol: &str,
        server: &AuthServer,
        upstream: &str,
        ca: Option<&std::path::Path>,
        local: Local,
        extra: &str,
        store: &str,
    ) -> (Env, u16) {
        let port = free_port();
        let tls = match local {
            Local::Plain => "none",
            Local::StartTls => "starttls",
            Local::Implicit => "implicit",
        };
        let ca_line = ca
            .map(|p| format!("upstream_ca = \"{}\"\n", p.display()))
            .unwrap_or_default();
        let account = account_toml(
            server,
            ALICE,
            &format!("{protocol} = \"{upstream}\"\n{ca_line}{extra}"),
        );
        let env = Env::new();
        env.write_config(&format!(
            "{store}[proxy.{protocol}]\nlisten = \"127.0.0.1:{port}\"\ntls = \"{tls}\"\n\n{account}"
        ));
        (env, port)
    }

    /// Starts `mailoauth serve` for a configured environment.
    pub fn launch(env: Env, port: u16, local: Local) -> Proxy {
        let mut proxy = Proxy {
            env,
            port,
            local,
            child: None,
            log: Default::default(),
        };
        proxy.spawn();
        proxy
    }

    /// Starts `mailoauth serve` and waits until it accepts connections.
    pub fn spawn(&mut self) {
        let mut child = self
            .env
            .cmd()
            .arg("serve")
            .env("MAILOAUTH_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mailoauth serve");
        let stderr = child.stderr.take().unwrap();
        let log = self.log.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                log.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("mailoauth serve exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "the proxy never listened:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the proxy runs").id()
    }

    /// Sends `signal` (e.g. `HUP`) to the daemon.
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits until the log has a line containing `needle`.
    pub fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The proxy's log so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The local TLS certificate the proxy generated (a self-signed CA for clients to trust).
    pub fn local_cert(&self) -> PathBuf {
        self.env.state_dir().join("tls/local-cert.pem")
    }

    /// A client connected (and TLS-upgraded as the listener wants), past the greeting.
    pub fn client(&self) -> LineClient {
        let mut c = match self.local {
            Local::Implicit => LineClient::connect_tls(self.port, &self.local_cert()).unwrap(),
            _ => LineClient::connect_plain(self.port).unwrap(),
        };
        c.set_timeout(Duration::from_secs(30)).unwrap();
        let greeting = c.read_line().unwrap();
        assert!(greeting.starts_with("* OK"), "{greeting}");
        if self.local == Local::StartTls {
            c.send_line("s1 STARTTLS").unwrap();
            let ok = c.read_tagged("s1").unwrap();
            assert!(ok.last().unwrap().starts_with("s1 OK"), "{ok:?}");
            c = c.starttls(&self.local_cert()).unwrap();
        }
        c
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `mailoauth passwd ALICE` with `input` on stdin; returns its output.
pub fn set_password(env: &Env, input: &str) -> std::process::Output {
    let mut passwd = env
        .cmd()
        .args(["passwd", ALICE])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        passwd
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = passwd.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "passwd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Logs in with LOGIN and returns the tagged answer line.
/// APPENDs `message` to INBOX as a literal under `tag` and checks the tagged OK.
pub fn append(c: &mut LineClient, tag: &str, message: &[u8]) {
    c.send(format!("{tag} APPEND INBOX {{{}}}\r\n", message.len()).as_bytes())
        .unwrap();
    let cont = c.read_line().unwrap();
    assert!(cont.starts_with('+'), "{cont}");
    c.send(message).unwrap();
    c.send(b"\r\n").unwrap();
    let done = c.read_tagged(tag).unwrap();
    let last = done.last().unwrap();
    assert!(last.starts_with(&format!("{tag} OK")), "{last}");
}

/// Sends `FETCH n BODY.PEEK[]` under `tag` and reads up to its literal; returns the literal's
/// size (the caller reads the bytes, then the tagged answer).
pub fn start_fetch(c: &mut LineClient, tag: &str, n: u32) -> usize {
    c.send_line(&format!("{tag} FETCH {n} BODY.PEEK[]"))
        .unwrap();
    let header = c.read_line().unwrap();
    header
        .rsplit('{')
        .next()
        .unwrap()
        .trim_end_matches('}')
        .parse()
        .unwrap_or_else(|_| panic!("{header}"))
}

pub fn login(c: &mut LineClient, password: &str) -> String {
    c.send_line(&format!("a1 LOGIN {ALICE} \"{password}\""))
        .unwrap();
    c.read_tagged("a1").unwrap().last().unwrap().clone()
}

/// The harness Dovecot with IMAP and the given mechanisms.
pub fn dovecot(server: &AuthServer, mechanisms: Mechanisms) -> Dovecot {
    Dovecot::start(
        DovecotOptions::new(server)
            .mechanisms(mechanisms)
            .services(Services::IMAP),
    )
    .expect("the harness Dovecot starts (tests/run installs it; run as root)")
}

/// The upstream URL of `d`'s implicit-TLS IMAP port.
pub fn imaps(d: &Dovecot) -> String {
    format!("imaps://127.0.0.1:{}", d.imaps_port())
}

/// Asserts a tagged OK.
pub fn assert_ok(line: &str, tag: &str) {
    assert!(
        line.starts_with(&format!("{tag} OK")),
        "expected {tag} OK, got {line:?}"
    );
}
