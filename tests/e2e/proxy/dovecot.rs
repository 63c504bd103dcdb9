//! The proxy against the real, OAuth-only Dovecot: every TLS combination, both mechanisms,
//! APPEND/FETCH byte-identical, token expiry and revocation, wrong passwords, shutdown.

use std::time::Duration;

use base64::Engine;
use mailoauth_harness::{AuthServer, AuthServerOptions, Failure, Mechanisms};

use super::*;

/// SHA-256 as mutt and openssl show it: upper-case hex with colons.
fn sha256_hex(bytes: &[u8]) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    let mut child = out;
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let text = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
    let hex = text.split_whitespace().next().unwrap().to_uppercase();
    hex.as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":")
}

#[test]
fn login_select_logout_through_every_tls_combination() {
    let server = AuthServer::start(AuthServerOptions::default());
    let d = dovecot(&server, Mechanisms::Both);
    for upstream in [imaps(&d), format!("imap://127.0.0.1:{}", d.imap_port())] {
        for local in [Local::Plain, Local::StartTls, Local::Implicit] {
            let proxy = Proxy::start(&server, &upstream, Some(d.ca_pem_path()), local, "");
            if local != Local::Plain {
                // The generated certificate's fingerprint is in the log, for pinning.
                let pem = std::fs::read_to_string(proxy.local_cert()).unwrap();
                let der = base64::engine::general_purpose::STANDARD
                    .decode(
                        pem.lines()
                            .filter(|l| !l.starts_with("-----"))
                            .collect::<String>(),
                    )
                    .unwrap();
                let hex = sha256_hex(&der);
                // The log is read by another thread: the line may arrive after the port opens.
                proxy.wait_for_log(&hex);
            }
            let mut c = proxy.client();
            let ok = login(&mut c, LOCAL_PASSWORD);
            assert_ok(&ok, "a1");
            // Dovecot's own tagged OK, with the client's tag, reaches the client untouched.
            assert!(
                ok.contains("[CAPABILITY IMAP4rev1"),
                "{ok} ({upstream}, {local:?})\n{}",
                proxy.log()
            );
            c.send_line("a2 SELECT INBOX").unwrap();
            assert_ok(c.read_tagged("a2").unwrap().last().unwrap(), "a2");
            c.send_line("a3 LOGOUT").unwrap();
            let bye = c.read_tagged("a3").unwrap();
            assert!(bye.iter().any(|l| l.starts_with("* BYE")), "{bye:?}");
        }
    }
    assert!(
        server.introspections() >= 6,
        "Dovecot validated the proxy's tokens"
    );
}

#[test]
fn authenticate_plain_and_xoauth2_only_upstream() {
    let server = AuthServer::start(AuthServerOptions::default());
    let d = dovecot(&server, Mechanisms::XOAuth2Only);
    let proxy = Proxy::start(&server, &imaps(&d), Some(d.ca_pem_path()), Local::Plain, "");
    let plain =
        base64::engine::general_purpose::STANDARD.encode(format!("\0{ALICE}\0{LOCAL_PASSWORD}"));
    // With SASL-IR.
    let mut c = proxy.client();
    c.send_line(&format!("x1 AUTHENTICATE PLAIN {plain}"))
        .unwrap();
    assert_ok(c.read_tagged("x1").unwrap().last().unwrap(), "x1");
    // Without: the proxy asks with "+ ".
    let mut c = proxy.client();
    c.send_line("x2 authenticate plain").unwrap();
    let cont = c.read_line().unwrap();
    assert!(cont.starts_with('+'), "{cont}");
    c.send_line(&plain).unwrap();
    assert_ok(c.read_tagged("x2").unwrap().last().unwrap(), "x2");
    // The session log names the mechanism (the log arrives through another thread).
    proxy.wait_for_log("XOAUTH2");
}

#[test]
fn append_then_fetch_byte_identical_and_pipelining() {
    let server = AuthServer::start(AuthServerOptions::default());
    let d = dovecot(&server, Mechanisms::Both);
    let proxy = Proxy::start(&server, &imaps(&d), Some(d.ca_pem_path()), Local::Plain, "");
    let mut c = proxy.client();
    // LOGIN, SELECT and NOOP pipelined in one write: the two after the login go upstream after it.
    c.send(
        format!("a1 LOGIN {ALICE} \"{LOCAL_PASSWORD}\"\r\na2 SELECT INBOX\r\na3 NOOP\r\n")
            .as_bytes(),
    )
    .unwrap();
    assert_ok(c.read_tagged("a1").unwrap().last().unwrap(), "a1");
    assert_ok(c.read_tagged("a2").unwrap().last().unwrap(), "a2");
    assert_ok(c.read_tagged("a3").unwrap().last().unwrap(), "a3");
    // 8-bit bytes, a lone "." line, long lines: bytes must survive both ways untouched.
    let mut message = b"From: Bob <bob@example.test>\r\nTo: alice@example.test\r\nSubject: =?utf-8?q?gr=C3=BC=C3=9Fe?=\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n".to_vec();
    message.extend_from_slice("Grüße, 日本語\r\n.\r\n".as_bytes());
    for i in 0..20_000 {
        message.extend_from_slice(format!("line {i:06} {}\r\n", "x".repeat(60)).as_bytes());
    }
    append(&mut c, "a4", &message);
    let size = start_fetch(&mut c, "a5", 1);
    let fetched = c.read_exact(size).unwrap();
    assert!(fetched == message, "FETCH returns exactly what APPEND sent");
    assert_ok(c.read_tagged("a5").unwrap().last().unwrap(), "a5");
    // Dovecot's Maildir stores LF line ends; the rest is what the client sent.
    let stored = d.mailbox_messages(ALICE).last().unwrap().clone();
    let lf = String::from_utf8(message.clone())
        .unwrap()
        .replace("\r\n", "\n")
        .into_bytes();
    assert!(stored == lf, "Dovecot stored what the client sent");
}

#[test]
fn wrong_local_password_never_touches_the_tokens() {
    let server = AuthServer::start(AuthServerOptions::default());
    let d = dovecot(&server, Mechanisms::Both);
    let proxy = Proxy::start(&server, &imaps(&d), Some(d.ca_pem_path()), Local::Plain, "");
    let record = proxy.env.tokens_dir().join(format!("{ALICE}.sealed"));
    let before = read(&record);
    let introspections = server.introspections();
    let mut c = proxy.client();
    let no = login(&mut c, "not the password");
    assert!(no.starts_with("a1 NO [AUTHENTICATIONFAILED]"), "{no}");
    // Unknown users get the very same answer.
    c.send_line("a2 LOGIN nobody@example.test secret").unwrap();
    let no2 = c.read_tagged("a2").unwrap().last().unwrap().clone();
    assert_eq!(no2.replace("a2", "a1"), no);
    assert_eq!(read(&record), before, "the token record is untouched");
    assert_eq!(
        server.introspections(),
        introspections,
        "nothing went upstream"
    );
    // The right password still works on the same connection.
    c.send_line(&format!("a3 LOGIN {ALICE} \"{LOCAL_PASSWORD}\""))
        .unwrap();
    assert_ok(c.read_tagged("a3").unwrap().last().unwrap(), "a3");
}

#[test]
fn rejected_token_is_refreshed_once_and_revoked_grant_asks_for_authorization() {
    let server = AuthServer::start(AuthServerOptions::default());
    let d = dovecot(&server, Mechanisms::Both);
    let proxy = Proxy::start(&server, &imaps(&d), Some(d.ca_pem_path()), Local::Plain, "");
    assert_ok(&login(&mut proxy.client(), LOCAL_PASSWORD), "a1");
    let refreshes = server.refresh_requests();

    // The token expires mid-test (Dovecot now refuses it, though it looked fresh): one refresh,
    // one retry, and the client never notices.
    server.expire_access_tokens();
    assert_ok(&login(&mut proxy.client(), LOCAL_PASSWORD), "a1");
    assert_eq!(server.refresh_requests(), refreshes + 1);

    // The provider is down and the token is refused: "try later", not "wrong password".
    server.expire_access_tokens();
    server.fail_next_token_requests(1, Failure::Status(503));
    let no = login(&mut proxy.client(), LOCAL_PASSWORD);
    assert!(no.starts_with("a1 NO [UNAVAILABLE]"), "{no}");

    // The grant is revoked: the answer says to re-authorize, with the command.
    server.revoke_user(ALICE);
    let no = login(&mut proxy.client(), LOCAL_PASSWORD);
    assert!(no.starts_with("a1 NO [AUTHORIZATIONFAILED]"), "{no}");
    assert!(no.contains(&format!("authorize {ALICE}")), "{no}");
}

#[test]
fn sigterm_stops_the_proxy() {
    let server = AuthServer::start(AuthServerOptions::default());
    let d = dovecot(&server, Mechanisms::Both);
    let mut proxy = Proxy::start(&server, &imaps(&d), Some(d.ca_pem_path()), Local::Plain, "");
    let mut idle = proxy.client();
    idle.set_timeout(Duration::from_secs(20)).unwrap();
    let status = proxy.stop().expect("the proxy was running");
    assert!(status.success(), "{status}\n{}", proxy.log());
    // A client still before login was told goodbye and disconnected.
    let bye = idle.read_line().unwrap_or_default();
    assert!(bye.starts_with("* BYE") || bye.is_empty(), "{bye}");
    proxy.wait_for_log("shutting down");
}

#[test]
fn password_store_unlocks_with_the_first_login_and_follows_a_password_change() {
    let server = AuthServer::start(AuthServerOptions::default());
    let d = dovecot(&server, Mechanisms::Both);
    let (env, port) = Proxy::configure(
        &server,
        &imaps(&d),
        Some(d.ca_pem_path()),
        Local::Plain,
        "",
        "[store]\nkind = \"password\"\n",
    );
    // Authorizing before a local password exists is refused with the next step.
    let out = env.run(&["authorize", ALICE, "--no-browser"]);
    assert_eq!(out.code(), 5, "{}", out.stderr_text());
    assert!(
        out.stderr_text().contains("mailoauth passwd"),
        "{}",
        out.stderr_text()
    );
    set_password(&env, &format!("{LOCAL_PASSWORD}\n"));
    // authorize asks for the local password (it seals the tokens), then runs the flow.
    let mut run = env.spawn(&["authorize", ALICE, "--no-browser"]);
    run.send_line(LOCAL_PASSWORD);
    let url = run.wait_for_line(|l| l.starts_with("http"), Duration::from_secs(20));
    mailoauth_harness::browser::get(&mailoauth_harness::browser::authorize(&url).unwrap()).unwrap();
    let out = run.finish(Duration::from_secs(20));
    assert!(out.status.success(), "{}", out.stderr_text());
    let record = env.tokens_dir().join(format!("{ALICE}.pwsealed"));
    assert!(read(&record).starts_with(b"MAILOAUTH-PW1\n"));
    // Outside the proxy nobody has the password: the tokens stay locked.
    let out = env.run(&["token", ALICE]);
    assert_ne!(out.code(), 0);
    assert!(out.stdout.is_empty());
    assert!(
        out.stderr_text().contains("locked"),
        "{}",
        out.stderr_text()
    );

    let mut proxy = Proxy::launch(env, port, Local::Plain);
    let before = read(&record);
    assert!(
        login(&mut proxy.client(), "wrong password").starts_with("a1 NO [AUTHENTICATIONFAILED]")
    );
    assert_eq!(
        read(&record),
        before,
        "a wrong password never touches the tokens"
    );
    assert_ok(&login(&mut proxy.client(), LOCAL_PASSWORD), "a1");

    // A restart: the first login unlocks the sealed tokens again.
    proxy.stop();
    proxy.spawn();
    assert_ok(&login(&mut proxy.client(), LOCAL_PASSWORD), "a1");

    // A password change re-seals the tokens; the running proxy follows it.
    set_password(
        &proxy.env,
        &format!("{LOCAL_PASSWORD}\nnew local password\n"),
    );
    assert_ne!(read(&record), before);
    assert!(login(&mut proxy.client(), LOCAL_PASSWORD).starts_with("a1 NO [AUTHENTICATIONFAILED]"));
    assert_ok(&login(&mut proxy.client(), "new local password"), "a1");
}

#[test]
fn listens_on_ipv4_and_ipv6_loopback() {
    let server = AuthServer::start(AuthServerOptions::default());
    let d = dovecot(&server, Mechanisms::Both);
    let v6 = std::net::TcpListener::bind("[::1]:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let proxy = Proxy::start_edited(
        &server,
        &imaps(&d),
        Some(d.ca_pem_path()),
        Local::Plain,
        "",
        |config| {
            let port = config
                .split("listen = \"127.0.0.1:")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .to_string();
            config.replace(
                &format!("listen = \"127.0.0.1:{port}\""),
                &format!("listen = [\"127.0.0.1:{port}\", \"[::1]:{v6}\"]"),
            )
        },
    );
    use std::io::{BufRead, BufReader, Write};
    let stream = std::net::TcpStream::connect(("::1", v6)).expect("the proxy listens on [::1]");
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("* OK"), "{line}");
    (&stream)
        .write_all(format!("a1 LOGIN {ALICE} \"{LOCAL_PASSWORD}\"\r\n").as_bytes())
        .unwrap();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line.starts_with("a1 ") {
            break;
        }
    }
    assert!(line.starts_with("a1 OK"), "{line}\n{}", proxy.log());
}

#[test]
fn require_tls_refuses_plain_logins_until_starttls() {
    let server = AuthServer::start(AuthServerOptions::default());
    let d = dovecot(&server, Mechanisms::Both);
    let mut proxy = Proxy::start_edited(
        &server,
        &imaps(&d),
        Some(d.ca_pem_path()),
        Local::StartTls,
        "",
        |config| {
            config.replace(
                "tls = \"starttls\"",
                "tls = \"starttls\"\nrequire_tls = true",
            )
        },
    );
    // This test drives STARTTLS itself.
    proxy.local = Local::Plain;
    let mut c = proxy.client();
    c.send_line("c1 CAPABILITY").unwrap();
    let caps = c.read_tagged("c1").unwrap().join("\n");
    assert!(
        caps.contains("LOGINDISABLED") && caps.contains("STARTTLS") && !caps.contains("AUTH=PLAIN"),
        "{caps}"
    );
    let no = login(&mut c, LOCAL_PASSWORD);
    assert!(no.starts_with("a1 NO [PRIVACYREQUIRED]"), "{no}");
    c.send_line("s1 STARTTLS").unwrap();
    assert_ok(c.read_tagged("s1").unwrap().last().unwrap(), "s1");
    let mut c = c.starttls(&proxy.local_cert()).unwrap();
    assert_ok(&login(&mut c, LOCAL_PASSWORD), "a1");
}

#[test]
fn idle_push_goes_through_the_splice() {
    let server = AuthServer::start(AuthServerOptions::default());
    let d = dovecot(&server, Mechanisms::Both);
    let proxy = Proxy::start(&server, &imaps(&d), Some(d.ca_pem_path()), Local::Plain, "");
    let mut c = proxy.client();
    assert_ok(&login(&mut c, LOCAL_PASSWORD), "a1");
    c.send_line("a2 SELECT INBOX").unwrap();
    assert_ok(c.read_tagged("a2").unwrap().last().unwrap(), "a2");
    c.send_line("a3 IDLE").unwrap();
    let cont = c.read_line().unwrap();
    assert!(cont.starts_with('+'), "{cont}");
    // A message arrives while the client idles: the server's push reaches it through the proxy.
    d.deliver(ALICE, b"Subject: pushed\r\n\r\nhello\r\n")
        .unwrap();
    let push = c.read_line().unwrap();
    assert!(push.contains("EXISTS"), "{push}");
    c.send_line("DONE").unwrap();
    assert_ok(c.read_tagged("a3").unwrap().last().unwrap(), "a3");
}
