//! `mailoauth setup` end to end: a user answers the questions in a real terminal (tmux), the
//! test plays the other device of the device flow (or the browser of the paste flow) against the
//! test authorization server as a generic provider, and afterwards the account works: `mailoauth
//! token` prints the token the server issued, the user's own comments are still in the file, and
//! the local password is set when the proxy was chosen.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use mailoauth_harness::{AuthServer, AuthServerOptions, browser};

use crate::clients::Tmux;
use crate::common::*;

const T: Duration = Duration::from_secs(30);
const SECRET: &str = "test-secret";
const LOCAL_PASSWORD: &str = "pw-only-on-this-machine";

/// A configuration the user wrote by hand: comments and odd spacing that must survive.
const HAND_WRITTEN: &str = "# my own notes: keep me\n#   (odd   spacing too)\n\n[proxy]\nmax_connections =   64     # a comment after a value\n";

/// Waits until the line the cursor is on (the last non-empty one) shows `prompt`.
fn wait_prompt(tmux: &Tmux, prompt: &str) {
    let deadline = Instant::now() + T;
    loop {
        let screen = tmux.screen();
        let last = screen
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        if last.contains(prompt) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no prompt {prompt:?}; the screen:\n{}",
            tmux.scrollback()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn answer(tmux: &Tmux, prompt: &str, text: &str) {
    wait_prompt(tmux, prompt);
    tmux.type_line(text);
}

/// A hidden answer: typed only once the terminal stopped echoing (the prompt is printed first).
fn answer_secret(tmux: &Tmux, prompt: &str, text: &str) {
    wait_prompt(tmux, prompt);
    std::thread::sleep(Duration::from_millis(300));
    tmux.type_line(text);
}

#[test]
fn setup_in_a_terminal_device_flow_with_the_proxy_to_a_working_account() {
    let server = AuthServer::start(AuthServerOptions {
        device_interval: Duration::from_secs(1),
        ..AuthServerOptions::default()
    });
    let env = Env::new();
    env.write_config(HAND_WRITTEN);

    let tmux = Tmux::new();
    tmux.start(&format!(
        "env -i HOME={home} PATH={path} LANG=C.UTF-8 TERM=xterm {BIN} setup --provider generic --account {ALICE} --no-browser; echo setup-exit=$?; sleep 600",
        home = env.home.path().display(),
        path = std::env::var("PATH").unwrap(),
    ));
    answer(&tmux, "Client id:", "test-client");
    answer(&tmux, "Issuer URL", server.base_url());
    answer(&tmux, "Choose none / command / type", "type");
    answer_secret(&tmux, "Client secret (not shown):", SECRET);
    answer(&tmux, "Scopes", "mail offline_access");
    answer(&tmux, "Which protocols", "imap smtp");
    answer(&tmux, "IMAP server", "imaps://127.0.0.1:1993");
    answer(&tmux, "SMTP server", "smtp://127.0.0.1:1587");
    answer(&tmux, "Choose loopback / paste / device", "device");
    answer(&tmux, "Use the local proxy?", "y");
    answer_secret(&tmux, "Local password for", LOCAL_PASSWORD);
    answer_secret(&tmux, "Repeat it:", LOCAL_PASSWORD);
    answer(
        &tmux,
        "Choose keyring / command / password / plaintext",
        "plaintext",
    );
    answer(&tmux, "Store the tokens unencrypted?", "y");

    // The user approves the code on "another device".
    let deadline = Instant::now() + T;
    let code = loop {
        if let Some(code) = server.pending_device_codes().pop() {
            break code;
        }
        assert!(Instant::now() < deadline, "{}", tmux.scrollback());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(tmux.scrollback().contains(&code), "the code was shown");
    assert!(server.approve_device(&code, ALICE));
    tmux.wait_for("setup-exit=", T);
    let screen = tmux.scrollback();
    assert!(screen.contains("setup-exit=0"), "{screen}");
    // setup ran `mailoauth test`: nothing listens on the servers given, so its verdict is a
    // failure, reported without failing the setup (the account is saved and authorized).
    assert!(
        screen.contains(&format!(
            "Checking that the account works (mailoauth test {ALICE})"
        )),
        "{screen}"
    );
    assert!(screen.contains("verdict: FAILED"), "{screen}");
    assert!(
        screen.contains(&format!("after fixing it, run: mailoauth test {ALICE}")),
        "{screen}"
    );
    // Snippets for the proxy: plain logins on loopback, no token command.
    assert!(
        screen.contains("set folder = \"imap://127.0.0.1:1143/\""),
        "{screen}"
    );
    assert!(
        screen.contains("host 127.0.0.1\nport 1587\ntls off\nauth plain"),
        "{screen}"
    );
    // Nothing secret ever reached the screen.
    assert!(!screen.contains(SECRET), "{screen}");
    assert!(!screen.contains(LOCAL_PASSWORD), "{screen}");

    // A working account: the token is the one the server issued.
    let out = env.run(&["token", ALICE]);
    assert!(out.status.success(), "{}", out.stderr_text());
    assert!(server.is_access_token_live(out.stdout_text().trim()));

    // The user's lines are all still there, in order; the file is private.
    let config = std::fs::read_to_string(&env.config).unwrap();
    let mut lines = config.lines();
    for line in HAND_WRITTEN.lines() {
        assert!(lines.any(|l| l == line), "{line:?} was lost:\n{config}");
    }
    assert!(
        config.contains("client_secret = \"test-secret\""),
        "{config}"
    );
    assert!(config.contains("kind = \"plaintext\""), "{config}");
    assert!(
        config.contains("[proxy.imap]\nlisten = \"127.0.0.1:1143\""),
        "{config}"
    );
    let mode = std::fs::metadata(&env.config).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    // The local password's verifier exists, and the secret is nowhere else in the state.
    let verifier = env.state_dir().join(format!("passwords/{ALICE}.phc"));
    assert!(verifier.exists(), "{}", verifier.display());
    assert!(!String::from_utf8_lossy(&read(&verifier)).contains(LOCAL_PASSWORD));
}

#[test]
fn setup_paste_flow_with_a_command_store_then_refuses_to_overwrite() {
    let server = AuthServer::start(AuthServerOptions::default());
    let env = Env::new();
    env.write_config(HAND_WRITTEN);

    // Answers on a pipe this time (stdin is not a terminal: secrets are read as lines).
    let mut run = env.spawn(&[
        "setup",
        "--provider",
        "generic",
        "--account",
        ALICE,
        "--no-browser",
    ]);
    for line in [
        "test-client",
        server.base_url(),
        "command",
        "printf test-secret",
        "mail offline_access",
        "imap",
        "imaps://127.0.0.1:1993",
        "paste",
        "n",
        "command",
        "cat",
        "cat",
    ] {
        run.send_line(line);
    }
    let url = run.wait_for_line(|l| l.starts_with("http"), T);
    let location = browser::authorize(&url).unwrap();
    run.send_line(&location);
    let out = run.finish(T);
    assert!(out.status.success(), "{}", out.stderr_text());
    let snippets = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        snippets.contains(&format!(
            "set imap_oauth_refresh_command = \"mailoauth token {ALICE}\""
        )),
        "{snippets}"
    );
    assert!(snippets.contains("PassCmd \"mailoauth token"), "{snippets}");
    assert!(!snippets.contains("msmtp"), "no SMTP, no msmtp: {snippets}");
    assert!(
        out.stderr_text()
            .contains("Checking that the account works"),
        "{}",
        out.stderr_text()
    );
    assert!(snippets.contains("verdict: FAILED"), "{snippets}");

    let out = env.run(&["token", ALICE]);
    assert!(out.status.success(), "{}", out.stderr_text());
    assert!(server.is_access_token_live(out.stdout_text().trim()));
    let config = std::fs::read_to_string(&env.config).unwrap();
    assert!(config.starts_with(HAND_WRITTEN), "{config}");
    assert!(
        config.contains("client_secret_command = [\"printf\", \"test-secret\"]"),
        "{config}"
    );
    assert!(
        !env.state_dir().join("passwords").exists(),
        "no proxy, no local password"
    );

    // The same account again: refused when not confirmed, and the file is left alone.
    let mut run = env.spawn(&["setup", "--provider", "generic", "--account", ALICE]);
    run.send_line("n");
    let out = run.finish(T);
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr_text());
    assert!(
        out.stderr_text().contains("nothing was changed"),
        "{}",
        out.stderr_text()
    );
    assert_eq!(std::fs::read_to_string(&env.config).unwrap(), config);
}

/// The whole newcomer story, against the real Dovecot: one `mailoauth setup` (answers on a pipe,
/// paste flow, the proxy), whose own `mailoauth test` passes; then `mailoauth serve`, and mutt,
/// configured with nothing but the snippet setup printed (plus the password it asks for),
/// reads a message.
#[test]
fn a_newcomer_goes_from_nothing_to_mutt_reading_mail_with_setup() {
    use mailoauth_harness::{Dovecot, DovecotOptions, Mechanisms, Services};
    let server = AuthServer::start(AuthServerOptions::default());
    let d = Dovecot::start(
        DovecotOptions::new(&server)
            .mechanisms(Mechanisms::Both)
            .services(Services::IMAP),
    )
    .expect("the harness Dovecot starts (tests/run installs it; run as root)");
    d.deliver(ALICE, &crate::clients::message()).unwrap();
    let port = crate::proxy::free_port();
    let env = Env::new();
    // Only the listener's port is chosen beforehand (tests run side by side); setup keeps it.
    env.write_config(&format!("[proxy.imap]\nlisten = \"127.0.0.1:{port}\"\n"));
    let ca = d.ca_pem_path().display().to_string();
    let mut run = env.spawn(&[
        "setup",
        "--provider",
        "generic",
        "--account",
        ALICE,
        "--client-id",
        "test-client",
        "--issuer",
        server.base_url(),
        "--flow",
        "paste",
        "--proxy",
        "--store",
        "command",
        "--upstream-ca",
        &ca,
        "--no-browser",
    ]);
    for line in [
        "command",
        "printf test-secret",
        "mail offline_access",
        "imap",
        &format!("imaps://127.0.0.1:{}", d.imaps_port()),
        LOCAL_PASSWORD,
        LOCAL_PASSWORD,
        "base64",
        "base64 -d",
    ] {
        run.send_line(line);
    }
    let url = run.wait_for_line(|l| l.starts_with("http"), T);
    run.send_line(&browser::authorize(&url).unwrap());
    let out = run.finish(Duration::from_secs(60));
    assert!(out.status.success(), "{}", out.stderr_text());
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        stdout.contains("verdict: OK"),
        "setup's own test passed:\n{stdout}\n{}",
        out.stderr_text()
    );
    let muttrc: String = stdout
        .split("# ---- ")
        .find(|block| block.starts_with("mutt:"))
        .unwrap_or_else(|| panic!("a mutt snippet:\n{stdout}"))
        .lines()
        .skip(1)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(muttrc.contains(&format!("127.0.0.1:{port}")), "{muttrc}");

    let _serve = KillOnDrop(
        env.cmd()
            .arg("serve")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + T;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the proxy never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    let dir = mailoauth_harness::TempDir::new("mo-newcomer").unwrap();
    let rc = dir.path().join("muttrc");
    std::fs::write(
        &rc,
        format!(
            "{muttrc}\nset certificate_file = \"{}/certificates\"\nset header_cache = \"\"\nset message_cachedir = \"\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let tmux = Tmux::new();
    tmux.start(&format!(
        "env HOME={} TERM=xterm mutt -n -F {}",
        dir.path().display(),
        rc.display()
    ));
    // mutt asks for the password the snippet leaves out: the local one.
    tmux.wait_for("Password", T);
    std::thread::sleep(Duration::from_millis(300));
    tmux.type_line(LOCAL_PASSWORD);
    let screen = tmux.wait_for(crate::clients::MARKER, T);
    assert!(screen.contains("Bob"), "{screen}");
}
