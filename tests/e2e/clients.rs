//! Real mail clients using `mailoauth token` against the real, OAuth-only Dovecot: mutt (under
//! tmux) with `imap_oauth_refresh_command`, and curl with `--oauth2-bearer`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mailoauth_harness::{
    AuthServer, AuthServerOptions, Curl, Dovecot, DovecotOptions, Mechanisms, Services, TempDir,
};

use crate::common::*;

pub const MARKER: &str = "mailoauth-e2e-marker";

pub fn message() -> Vec<u8> {
    format!(
        "From: Bob <bob@example.test>\r\nTo: Alice <{ALICE}>\r\nSubject: {MARKER}\r\nDate: Sun, 29 Nov 2026 06:00:00 +0000\r\nMessage-ID: <e2e@example.test>\r\n\r\nHello through OAuth.\r\n"
    )
    .into_bytes()
}

fn start(mechanisms: Mechanisms) -> (AuthServer, Dovecot, Env) {
    let server = AuthServer::start(AuthServerOptions::default());
    let dovecot = Dovecot::start(
        DovecotOptions::new(&server)
            .mechanisms(mechanisms)
            .services(Services::IMAP),
    )
    .expect("the harness Dovecot starts (tests/run installs it; run as root)");
    dovecot.deliver(ALICE, &message()).unwrap();
    let env = Env::with_account(
        &server,
        BASE64_STORE,
        &format!("imap = \"imaps://127.0.0.1:{}\"", dovecot.imaps_port()),
    );
    env.authorize_loopback(ALICE);
    (server, dovecot, env)
}

/// A tmux server of our own (its socket in a temp dir), killed on drop.
pub struct Tmux {
    dir: TempDir,
}

impl Tmux {
    pub fn new() -> Tmux {
        Tmux {
            dir: TempDir::new("mo-tmux").unwrap(),
        }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(self.dir.path().join("sock"));
        c
    }

    pub fn start(&self, shell_command: &str) {
        let status = self
            .cmd()
            .args(["new-session", "-d", "-x", "160", "-y", "40", shell_command])
            .status()
            .expect("tmux is installed (tests/run installs it)");
        assert!(status.success());
    }

    pub fn screen(&self) -> String {
        let out = self.cmd().args(["capture-pane", "-p"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Everything the pane showed, scrollback included, wrapped lines joined.
    pub fn scrollback(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-J", "-S", "-"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types `text` and Enter.
    pub fn type_line(&self, text: &str) {
        if !text.is_empty() {
            assert!(
                self.cmd()
                    .args(["send-keys", "-l", text])
                    .status()
                    .unwrap()
                    .success()
            );
        }
        assert!(
            self.cmd()
                .args(["send-keys", "Enter"])
                .status()
                .unwrap()
                .success()
        );
    }

    /// Waits until the screen shows `text`; returns the screen.
    pub fn wait_for(&self, text: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the screen never showed {text:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

/// A muttrc that reads Alice's INBOX with OAuth through `mailoauth token`.
fn muttrc(env: &Env, dovecot: &Dovecot, authenticator: &str, dir: &Path) -> std::path::PathBuf {
    let refresh = format!("{BIN} --config {} token {ALICE}", env.config.display());
    let rc = format!(
        "set imap_user = \"{ALICE}\"\n\
         set folder = \"imaps://127.0.0.1:{port}/\"\n\
         set spoolfile = \"+INBOX\"\n\
         set imap_authenticators = \"{authenticator}\"\n\
         set imap_oauth_refresh_command = \"{refresh}\"\n\
         set ssl_ca_certificates_file = \"{ca}\"\n\
         set ssl_force_tls = yes\n\
         set certificate_file = \"{dir}/certificates\"\n\
         set header_cache = \"\"\n\
         set message_cachedir = \"\"\n\
         set mbox_type = Maildir\n\
         set sort = date\n",
        port = dovecot.imaps_port(),
        ca = dovecot.ca_pem_path().display(),
        dir = dir.display(),
    );
    let path = dir.join("muttrc");
    std::fs::write(&path, rc).unwrap();
    path
}

fn mutt_lists_the_inbox(mechanisms: Mechanisms, authenticator: &str) {
    let (server, dovecot, env) = start(mechanisms);
    let dir = TempDir::new("mo-mutt").unwrap();
    let rc = muttrc(&env, &dovecot, authenticator, dir.path());
    let tmux = Tmux::new();
    tmux.start(&format!(
        "env HOME={} TERM=xterm mutt -n -F {}",
        env.home.path().display(),
        rc.display()
    ));
    let screen = tmux.wait_for(MARKER, Duration::from_secs(30));
    assert!(screen.contains("Bob"), "{screen}");
    assert!(
        server.introspections() >= 1,
        "Dovecot validated mailoauth's token at the test server"
    );
    assert!(!screen.contains("Authentication failed"), "{screen}");
}

#[test]
fn mutt_reads_mail_with_oauthbearer() {
    mutt_lists_the_inbox(Mechanisms::Both, "oauthbearer");
}

#[test]
fn mutt_reads_mail_with_xoauth2() {
    mutt_lists_the_inbox(Mechanisms::XOAuth2Only, "xoauth2");
}

#[test]
fn curl_lists_mailboxes_with_the_printed_token() {
    let (server, dovecot, env) = start(Mechanisms::Both);
    let out = env.run(&["token", ALICE]);
    assert!(out.status.success(), "{}", out.stderr_text());
    let token = out.stdout_text().trim().to_string();
    let listing = Curl::new(&format!("imaps://127.0.0.1:{}/", dovecot.imaps_port()))
        .cacert(dovecot.ca_pem_path())
        .user(ALICE)
        .oauth2_bearer(&token)
        .run()
        .unwrap();
    assert!(listing.success(), "curl: {}", listing.stderr);
    assert!(
        listing.stdout_text().contains("INBOX"),
        "{}",
        listing.stdout_text()
    );

    // Dovecot really checks the token: after revocation the same login is refused.
    server.revoke_user(ALICE);
    let refused = Curl::new(&format!("imaps://127.0.0.1:{}/", dovecot.imaps_port()))
        .cacert(dovecot.ca_pem_path())
        .user(ALICE)
        .oauth2_bearer(&token)
        .run()
        .unwrap();
    assert_eq!(
        refused.code,
        Some(mailoauth_harness::curl::LOGIN_DENIED),
        "{}",
        refused.stderr
    );
}
