//! `mailoauth test ACCOUNT`: all green against the real Dovecot (direct and `--via-proxy`
//! through a running `mailoauth serve`), and each failure class with its own verdict and exit
//! code: a wrong client id, a revoked grant, the provider down, STARTTLS stripped (no token
//! sent), a server that refuses the command after accepting the login, a token refused even
//! after a refresh, SMTP AUTH disabled at Microsoft.

use std::io::Write;
use std::process::{Output, Stdio};
use std::time::Duration;

use mailoauth_harness::{
    AuthAnswer, AuthServer, AuthServerOptions, Dovecot, DovecotOptions, Failure, FakeImap,
    FakeImapOptions, FakePop3, FakePop3Options, FakeSmtp, FakeSmtpOptions, FakeTls, Pop3AuthAnswer,
    SmtpAuthAnswer,
};
use serde_json::Value;

use crate::common::*;
use crate::proxy::{LOCAL_PASSWORD, Local, Proxy, free_port, set_password};

/// An environment with ALICE configured (`extra` account lines) and authorized.
fn authorized(server: &AuthServer, extra: &str) -> Env {
    let env = Env::with_account(server, BASE64_STORE, extra);
    env.authorize_loopback(ALICE);
    env
}

/// Runs `mailoauth ARGS` with `input` on stdin.
fn run_with_stdin(env: &Env, args: &[&str], input: &str) -> Output {
    let mut child = env
        .cmd()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mailoauth");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// The verdict line of a report.
fn verdict(out: &Output) -> String {
    out.stdout_text()
        .lines()
        .find(|l| l.starts_with("verdict: "))
        .unwrap_or_else(|| {
            panic!(
                "no verdict line:\n{}\n{}",
                out.stdout_text(),
                out.stderr_text()
            )
        })
        .to_string()
}

/// The current access token in ALICE's store (through `mailoauth token`).
fn current_token(env: &Env) -> String {
    let out = env.run(&["token", ALICE]);
    assert!(out.status.success(), "{}", out.stderr_text());
    out.stdout_text().trim().to_string()
}

fn dovecot_lines(dovecot: &Dovecot) -> String {
    format!(
        "imap = \"imaps://127.0.0.1:{}\"\npop3 = \"pop3://127.0.0.1:{}\"\nsmtp = \"smtp://127.0.0.1:{}\"\nupstream_ca = \"{}\"\n",
        dovecot.imaps_port(),
        dovecot.pop3_port(),
        dovecot.submission_port(),
        dovecot.ca_pem_path().display()
    )
}

/// Against the real Dovecot (IMAP implicit TLS, POP3 and submission with STARTTLS): every
/// offered mechanism logs in on its own connection, the capabilities and timings are shown,
/// the verdict is OK, exit 0; `--json` says the same; no token appears anywhere.
#[test]
fn test_cmd_all_green_against_dovecot_direct_and_json() {
    let server = AuthServer::start(AuthServerOptions::default());
    let dovecot = Dovecot::start(DovecotOptions::new(&server)).expect("the harness Dovecot starts");
    let env = authorized(&server, &dovecot_lines(&dovecot));
    let out = env.run(&["test", ALICE]);
    let stdout = out.stdout_text();
    assert_eq!(
        out.code(),
        0,
        "{stdout}\n{}\n{}",
        out.stderr_text(),
        dovecot.log_tail()
    );
    assert_eq!(
        verdict(&out),
        format!("verdict: OK: every login of {ALICE} works")
    );
    for proto in ["IMAP 127.0.0.1", "POP 127.0.0.1", "SMTP 127.0.0.1"] {
        assert!(stdout.contains(proto), "{stdout}");
    }
    assert_eq!(stdout.matches("  OAUTHBEARER: ok (").count(), 3, "{stdout}");
    assert_eq!(stdout.matches("  XOAUTH2: ok (").count(), 3, "{stdout}");
    assert_eq!(stdout.matches("  capabilities: ").count(), 3, "{stdout}");
    assert!(
        stdout.contains("AUTH=OAUTHBEARER"),
        "IMAP capabilities: {stdout}"
    );
    assert!(stdout.contains("SASL "), "POP3 CAPA: {stdout}");
    assert!(stdout.contains("PIPELINING"), "EHLO keywords: {stdout}");
    for step in [
        "connect+TLS ",
        "capabilities ",
        "auth ",
        "LIST ",
        "STAT ",
        "NOOP ",
    ] {
        assert!(stdout.contains(step), "timing of {step}: {stdout}");
    }
    assert!(stdout.contains("token: ok (fingerprint "), "{stdout}");
    let token = current_token(&env);
    assert!(!stdout.contains(&token) && !out.stderr_text().contains(&token));

    let out = env.run(&["test", ALICE, "--json"]);
    assert_eq!(out.code(), 0, "{}", out.stderr_text());
    let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["exit_code"], 0);
    let protocols = doc["protocols"].as_array().unwrap();
    assert_eq!(protocols.len(), 3, "{doc:#}");
    for p in protocols {
        let logins = p["logins"].as_array().unwrap();
        assert_eq!(logins.len(), 2, "{doc:#}");
        assert!(logins.iter().all(|l| l["ok"] == true), "{doc:#}");
        assert!(logins.iter().all(|l| l["timings_ms"]["auth"].is_f64()));
    }
    assert!(!out.stdout_text().contains(&token));
}

/// `--via-proxy`: the local password (one stdin line) through a running `mailoauth serve` with
/// IMAP, POP3 and SMTP listeners to the real Dovecot: LOGIN, USER/PASS, AUTH PLAIN and the
/// harmless commands pass the whole chain; a wrong local password is exit 6.
#[test]
fn test_cmd_via_proxy_logs_in_through_the_running_proxy() {
    let server = AuthServer::start(AuthServerOptions::default());
    let dovecot = Dovecot::start(DovecotOptions::new(&server)).expect("the harness Dovecot starts");
    let (imap, pop3, smtp) = (free_port(), free_port(), free_port());
    let env = Env::new();
    env.write_config(&format!(
        "{BASE64_STORE}[proxy.imap]\nlisten = \"127.0.0.1:{imap}\"\n[proxy.pop3]\nlisten = \"127.0.0.1:{pop3}\"\n[proxy.smtp]\nlisten = \"127.0.0.1:{smtp}\"\ntls = \"implicit\"\n\n{}",
        account_toml(&server, ALICE, &dovecot_lines(&dovecot))
    ));
    env.authorize_loopback(ALICE);
    set_password(&env, &format!("{LOCAL_PASSWORD}\n"));
    let proxy = Proxy::launch(env, imap, Local::Plain);
    let wait = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", smtp)).is_err() {
        assert!(wait.elapsed() < Duration::from_secs(20), "{}", proxy.log());
        std::thread::sleep(Duration::from_millis(20));
    }

    let out = run_with_stdin(
        &proxy.env,
        &["test", ALICE, "--via-proxy"],
        &format!("{LOCAL_PASSWORD}\n"),
    );
    let stdout = out.stdout_text();
    assert_eq!(
        out.code(),
        0,
        "{stdout}\n{}\n{}",
        out.stderr_text(),
        proxy.log()
    );
    assert_eq!(
        verdict(&out),
        format!("verdict: OK: every login of {ALICE} works")
    );
    for login in ["  LOGIN: ok (", "  USER/PASS: ok (", "  AUTH PLAIN: ok ("] {
        assert!(stdout.contains(login), "{login}: {stdout}");
    }
    assert!(
        stdout.contains(&format!("SMTP 127.0.0.1:{smtp} (implicit TLS)")),
        "{stdout}"
    );
    assert!(!stdout.contains(LOCAL_PASSWORD) && !out.stderr_text().contains(LOCAL_PASSWORD));

    let out = run_with_stdin(&proxy.env, &["test", ALICE, "--via-proxy"], "wrong\n");
    assert_eq!(
        out.code(),
        6,
        "{}\n{}",
        out.stdout_text(),
        out.stderr_text()
    );
    assert!(
        verdict(&out).starts_with(
            "verdict: FAILED (exit 6): IMAP: the proxy refused the login; check the local password"
        ),
        "{}",
        out.stdout_text()
    );
}

/// A client id the provider does not know: the refresh gets `invalid_client`, exit 5 with the
/// plain-language explanation; no mail server is contacted.
#[test]
fn test_cmd_wrong_client_id_is_a_configuration_failure() {
    let server = AuthServer::start(AuthServerOptions::default());
    server.set_access_lifetime(Duration::from_secs(60)); // inside the margin: always refreshed
    let fake = FakeImap::start(FakeImapOptions::gmail(FakeTls::Implicit));
    let env = authorized(
        &server,
        &format!("imap = \"imaps://127.0.0.1:{}\"\n", fake.port()),
    );
    let config = std::fs::read_to_string(&env.config).unwrap();
    env.write_config(&config.replace(
        "client_id = \"test-client\"",
        "client_id = \"no-such-client\"",
    ));
    let out = env.run(&["test", ALICE]);
    assert_eq!(
        out.code(),
        5,
        "{}\n{}",
        out.stdout_text(),
        out.stderr_text()
    );
    assert_eq!(
        verdict(&out),
        "verdict: FAILED (exit 5): no access token: The provider does not recognise the client id or secret in the configuration"
    );
    assert!(
        out.stdout_text().contains("token: FAILED"),
        "{}",
        out.stdout_text()
    );
    assert_eq!(fake.connections(), 0, "no login without a token");
}

/// A revoked grant: `invalid_grant` on refresh, exit 3, and the exact command to run.
#[test]
fn test_cmd_revoked_grant_needs_authorization_with_the_command() {
    let server = AuthServer::start(AuthServerOptions::default());
    server.set_access_lifetime(Duration::from_secs(60));
    let fake = FakeImap::start(FakeImapOptions::gmail(FakeTls::Implicit));
    let env = authorized(
        &server,
        &format!("imap = \"imaps://127.0.0.1:{}\"\n", fake.port()),
    );
    server.revoke_user(ALICE);
    let out = env.run(&["test", ALICE]);
    assert_eq!(
        out.code(),
        3,
        "{}\n{}",
        out.stdout_text(),
        out.stderr_text()
    );
    let v = verdict(&out);
    assert!(
        v.starts_with("verdict: FAILED (exit 3): no access token: "),
        "{v}"
    );
    assert!(
        v.ends_with(&format!("; run: mailoauth authorize {ALICE}")),
        "{v}"
    );
    assert!(
        out.stderr_text()
            .contains(&format!("mailoauth authorize {ALICE}")),
        "{}",
        out.stderr_text()
    );
    assert_eq!(fake.connections(), 0);
}

/// The provider's token endpoint answers 503 and the token has expired: temporary, exit 4.
/// (With a still valid token the test goes on with it, as `token` does.)
#[test]
fn test_cmd_provider_down_is_temporary() {
    let server = AuthServer::start(AuthServerOptions::default());
    server.set_access_lifetime(Duration::from_secs(1));
    let fake = FakeImap::start(FakeImapOptions::gmail(FakeTls::Implicit));
    let env = authorized(
        &server,
        &format!("imap = \"imaps://127.0.0.1:{}\"\n", fake.port()),
    );
    std::thread::sleep(Duration::from_millis(1500)); // no valid token left
    server.fail_next_token_requests(10, Failure::Status(503));
    let out = env.run(&["test", ALICE]);
    assert_eq!(
        out.code(),
        4,
        "{}\n{}",
        out.stdout_text(),
        out.stderr_text()
    );
    let v = verdict(&out);
    assert!(
        v.starts_with("verdict: FAILED (exit 4): no access token: the provider is unavailable (")
            && v.ends_with("); nothing to fix, try again later"),
        "{v}"
    );
    assert_eq!(fake.connections(), 0);
}

/// Servers whose STARTTLS was stripped (IMAP, POP3, SMTP): each is reported, exit 7, and not one
/// token (nor any AUTH command) went over the wire.
#[test]
fn test_cmd_stripped_starttls_sends_no_token() {
    let server = AuthServer::start(AuthServerOptions::default());
    let imap = FakeImap::start(FakeImapOptions::gmail(FakeTls::Plain));
    let pop3 = FakePop3::start(FakePop3Options::gmail(FakeTls::Plain));
    let smtp = FakeSmtp::start(FakeSmtpOptions::gmail(FakeTls::Plain));
    let env = authorized(
        &server,
        &format!(
            "imap = \"imap://127.0.0.1:{}\"\npop3 = \"pop3://127.0.0.1:{}\"\nsmtp = \"smtp://127.0.0.1:{}\"\n",
            imap.port(),
            pop3.port(),
            smtp.port()
        ),
    );
    let out = env.run(&["test", ALICE]);
    let stdout = out.stdout_text();
    assert_eq!(out.code(), 7, "{stdout}\n{}", out.stderr_text());
    assert_eq!(
        verdict(&out),
        format!(
            "verdict: FAILED (exit 7): IMAP: 127.0.0.1:{} (STARTTLS) does not offer STARTTLS, so the token was not sent (use the implicit-TLS port, or check for a man in the middle)",
            imap.port()
        )
    );
    assert_eq!(
        stdout.matches("FAILED at connect+TLS").count(),
        3,
        "{stdout}"
    );
    assert!(imap.tokens_seen().is_empty() && pop3.tokens_seen().is_empty());
    assert!(smtp.tokens_seen().is_empty());
    for plain in [
        imap.plaintext_received(),
        pop3.plaintext_received(),
        smtp.plaintext_received(),
    ] {
        let text = String::from_utf8_lossy(&plain).to_ascii_uppercase();
        assert!(
            !text.contains("AUTH"),
            "nothing but probing in clear: {text}"
        );
    }
}

/// A server that answers OK/+OK/235 to the login and then refuses LIST/STAT/NOOP: exit 7 with
/// its own verdict, for each protocol.
#[test]
fn test_cmd_server_refusing_after_login_misbehaves() {
    let server = AuthServer::start(AuthServerOptions::default());
    let imap = FakeImap::start(FakeImapOptions {
        answers: vec![
            AuthAnswer::OkThenRefuse("BAD Backend not ready (fake)".into()),
            AuthAnswer::OkThenRefuse("NO Backend not ready (fake)".into()),
        ],
        ..FakeImapOptions::gmail(FakeTls::Implicit)
    });
    let pop3 = FakePop3::start(FakePop3Options {
        answers: vec![Pop3AuthAnswer::OkThenRefuse(
            "Mailbox unusable (fake)".into(),
        )],
        ..FakePop3Options::microsoft(FakeTls::StartTls)
    });
    let smtp = FakeSmtp::start(FakeSmtpOptions {
        answers: vec![SmtpAuthAnswer::OkThenRefuse(
            "554 5.7.0 Not allowed (fake)".into(),
        )],
        ..FakeSmtpOptions::microsoft(FakeTls::StartTls)
    });
    let env = authorized(&server, "");
    let config = std::fs::read_to_string(&env.config).unwrap();
    let cases = [
        (
            format!(
                "imap = \"imaps://127.0.0.1:{}\"\nupstream_ca = \"{}\"\n",
                imap.port(),
                imap.ca_pem_path().display()
            ),
            "IMAP",
            "LIST",
            2,
        ),
        (
            format!(
                "pop3 = \"pop3://127.0.0.1:{}\"\nupstream_ca = \"{}\"\n",
                pop3.port(),
                pop3.ca_pem_path().display()
            ),
            "POP",
            "STAT",
            1,
        ),
        (
            format!(
                "smtp = \"smtp://127.0.0.1:{}\"\nupstream_ca = \"{}\"\n",
                smtp.port(),
                smtp.ca_pem_path().display()
            ),
            "SMTP",
            "NOOP",
            1,
        ),
    ];
    for (lines, proto, command, logins) in cases {
        env.write_config(&format!("{config}{lines}"));
        let out = env.run(&["test", ALICE]);
        let stdout = out.stdout_text();
        assert_eq!(out.code(), 7, "{stdout}\n{}", out.stderr_text());
        assert_eq!(
            verdict(&out),
            format!(
                "verdict: FAILED (exit 7): {proto}: the server accepted the login, then refused {command} right after it; the server misbehaves"
            )
        );
        assert_eq!(
            stdout.matches(&format!("FAILED at {command} (")).count(),
            logins,
            "{stdout}"
        );
    }
    assert_eq!(imap.authentications().len(), 2, "one login per mechanism");
    assert!(imap.authentications().iter().all(|a| a.tls));
}

/// A token the server refuses is refreshed once and tried again; refused again, the verdict
/// says the server refused although the token is valid: exit 6.
#[test]
fn test_cmd_server_refusing_a_fresh_token_is_exit_6() {
    let server = AuthServer::start(AuthServerOptions::default());
    let imap = FakeImap::start(FakeImapOptions {
        answers: vec![AuthAnswer::microsoft_no(), AuthAnswer::microsoft_no()],
        ..FakeImapOptions::microsoft(FakeTls::Implicit)
    });
    let env = authorized(
        &server,
        &format!(
            "imap = \"imaps://127.0.0.1:{}\"\nupstream_ca = \"{}\"\n",
            imap.port(),
            imap.ca_pem_path().display()
        ),
    );
    let before = server.refresh_requests();
    let out = env.run(&["test", ALICE]);
    let stdout = out.stdout_text();
    assert_eq!(out.code(), 6, "{stdout}\n{}", out.stderr_text());
    assert_eq!(
        verdict(&out),
        "verdict: FAILED (exit 6): IMAP: the mail server refused the login although the token is valid (the provider just issued it); does the account allow IMAP access?"
    );
    assert_eq!(server.refresh_requests(), before + 1, "one refresh");
    let tokens = imap.tokens_seen();
    assert_eq!(tokens.len(), 2, "{stdout}");
    assert_ne!(tokens[0], tokens[1], "the retry used the fresh token");
    assert!(
        stdout.contains("trying again with a freshly refreshed one"),
        "{stdout}"
    );
}

/// Microsoft's `535 5.7.139` (SMTP AUTH disabled for the tenant) is recognized and explained:
/// exit 6, no retry (a new token would not help).
#[test]
fn test_cmd_microsoft_smtp_auth_disabled() {
    let server = AuthServer::start(AuthServerOptions::default());
    let smtp = FakeSmtp::start(FakeSmtpOptions {
        answers: vec![SmtpAuthAnswer::Reject(
            "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.".into(),
        )],
        ..FakeSmtpOptions::microsoft(FakeTls::StartTls)
    });
    let env = authorized(
        &server,
        &format!(
            "smtp = \"smtp://127.0.0.1:{}\"\nupstream_ca = \"{}\"\n",
            smtp.port(),
            smtp.ca_pem_path().display()
        ),
    );
    let before = server.refresh_requests();
    let out = env.run(&["test", ALICE]);
    assert_eq!(
        out.code(),
        6,
        "{}\n{}",
        out.stdout_text(),
        out.stderr_text()
    );
    assert_eq!(
        verdict(&out),
        "verdict: FAILED (exit 6): SMTP: SMTP AUTH is disabled for this Microsoft mailbox or tenant; an administrator must enable Authenticated SMTP for the mailbox"
    );
    assert!(
        out.stdout_text()
            .contains("Authenticated SMTP for the mailbox (Exchange admin center"),
        "{}",
        out.stdout_text()
    );
    assert_eq!(server.refresh_requests(), before, "no pointless refresh");
}
