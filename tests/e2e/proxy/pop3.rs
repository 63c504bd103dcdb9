//! The POP3 proxy against the real Dovecot: USER/PASS (a password with spaces) and AUTH PLAIN
//! through mailoauth, RETR returning exactly what was delivered, curl and fetchmail as clients.

use std::time::Duration;

use base64::Engine;
use mailoauth_harness::{
    AuthServer, AuthServerOptions, Curl, Dovecot, DovecotOptions, LineClient, Mechanisms, Services,
};

use super::*;

fn setup(mechanisms: Mechanisms, implicit: bool, local: Local) -> (AuthServer, Dovecot, Proxy) {
    let server = AuthServer::start(AuthServerOptions::default());
    let d = Dovecot::start(
        DovecotOptions::new(&server)
            .mechanisms(mechanisms)
            .services(Services::POP3),
    )
    .expect("the harness Dovecot starts");
    d.deliver(ALICE, &message()).unwrap();
    let upstream = if implicit {
        format!("pop3s://127.0.0.1:{}", d.pop3s_port())
    } else {
        format!("pop3://127.0.0.1:{}", d.pop3_port())
    };
    let proxy = Proxy::start_for("pop3", &server, &upstream, Some(d.ca_pem_path()), local);
    (server, d, proxy)
}

fn message() -> Vec<u8> {
    let mut m =
        b"From: Bob <bob@example.test>\r\nTo: alice@example.test\r\nSubject: for POP3\r\n\r\n"
            .to_vec();
    m.extend_from_slice("Grüße.\r\n.a line with a leading dot\r\nend\r\n".as_bytes());
    m
}

fn raw(proxy: &Proxy) -> LineClient {
    let mut c = LineClient::connect_plain(proxy.port).unwrap();
    c.set_timeout(Duration::from_secs(30)).unwrap();
    let greeting = c.read_line().unwrap();
    assert!(
        greeting.starts_with("+OK") && !greeting.contains('<'),
        "no APOP timestamp: {greeting}"
    );
    c
}

/// RETR 1 and undo the dot-stuffing.
fn retr(c: &mut LineClient) -> Vec<u8> {
    c.send_line("RETR 1").unwrap();
    let first = c.read_line().unwrap();
    assert!(first.starts_with("+OK"), "{first}");
    let mut out = Vec::new();
    loop {
        let line = c.read_line().unwrap();
        if line == "." {
            return out;
        }
        let line = line.strip_prefix('.').unwrap_or(&line);
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

#[test]
fn user_pass_with_spaces_and_auth_plain_retrieve_the_message() {
    for (mechanisms, implicit) in [(Mechanisms::XOAuth2Only, true), (Mechanisms::Both, false)] {
        let (_server, _d, proxy) = setup(mechanisms, implicit, Local::Plain);
        let mut c = raw(&proxy);
        c.send_line("CAPA").unwrap();
        let mut caps = Vec::new();
        loop {
            let l = c.read_line().unwrap();
            if l == "." {
                break;
            }
            caps.push(l);
        }
        let caps = caps.join("\n");
        assert!(
            caps.contains("USER") && caps.contains("SASL PLAIN") && !caps.contains("XOAUTH2"),
            "{caps}"
        );
        c.send_line(&format!("USER {ALICE}")).unwrap();
        assert!(c.read_line().unwrap().starts_with("+OK"));
        // The local password has spaces: PASS takes the rest of the line verbatim.
        c.send_line(&format!("PASS {LOCAL_PASSWORD}")).unwrap();
        let ok = c.read_line().unwrap();
        assert!(ok.starts_with("+OK"), "{ok}\n{}", proxy.log());
        assert!(
            retr(&mut c) == message(),
            "RETR returns exactly what was delivered"
        );
        c.send_line("QUIT").unwrap();

        let mut c = raw(&proxy);
        let ir = base64::engine::general_purpose::STANDARD
            .encode(format!("\0{ALICE}\0{LOCAL_PASSWORD}"));
        c.send_line(&format!("AUTH PLAIN {ir}")).unwrap();
        assert!(c.read_line().unwrap().starts_with("+OK"));
        c.send_line("STAT").unwrap();
        assert!(c.read_line().unwrap().starts_with("+OK 1 "));
    }
}

#[test]
fn failures_carry_rfc3206_codes() {
    let (server, _d, proxy) = setup(Mechanisms::Both, true, Local::Plain);
    let mut c = raw(&proxy);
    c.send_line(&format!("USER {ALICE}")).unwrap();
    c.read_line().unwrap();
    c.send_line("PASS wrong").unwrap();
    let no = c.read_line().unwrap();
    assert!(no.starts_with("-ERR [AUTH]"), "{no}");
    c.send_line("APOP alice 0123456789abcdef0123456789abcdef")
        .unwrap();
    assert!(c.read_line().unwrap().starts_with("-ERR"));

    server.revoke_user(ALICE);
    let mut c = raw(&proxy);
    c.send_line(&format!("USER {ALICE}")).unwrap();
    c.read_line().unwrap();
    c.send_line(&format!("PASS {LOCAL_PASSWORD}")).unwrap();
    let perm = c.read_line().unwrap();
    assert!(
        perm.starts_with("-ERR [SYS/PERM]") && perm.contains(&format!("authorize {ALICE}")),
        "{perm}"
    );
}

#[test]
fn curl_and_fetchmail_retrieve_with_a_plain_password() {
    let (_server, _d, proxy) = setup(Mechanisms::Both, true, Local::Plain);
    let out = Curl::new(&format!("pop3://127.0.0.1:{}/1", proxy.port))
        .user_password(ALICE, LOCAL_PASSWORD)
        .run()
        .unwrap();
    assert!(out.success(), "curl: {}\n{}", out.stderr, proxy.log());
    assert!(out.stdout == message(), "curl got exactly the message");

    let dir = mailoauth_harness::TempDir::new("mo-fetchmail").unwrap();
    let rc = dir.path().join("fetchmailrc");
    let inbox = dir.path().join("inbox");
    std::fs::write(
        &rc,
        format!(
            "set no syslog\npoll 127.0.0.1 service {} protocol pop3 auth password\n  user \"{ALICE}\" password \"{LOCAL_PASSWORD}\" is \"root\" here\n  sslproto \"\" keep\n  mda \"/bin/sh -c 'cat >> {}'\"\n",
            proxy.port,
            inbox.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = std::process::Command::new("fetchmail")
        .arg("-f")
        .arg(&rc)
        .args(["--nodetach", "-v"])
        .env("HOME", dir.path())
        .output()
        .expect("fetchmail is installed (tests/run installs it)");
    assert!(
        out.status.success(),
        "fetchmail: {}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        proxy.log()
    );
    let got = std::fs::read_to_string(&inbox).unwrap();
    assert!(
        got.contains("Subject: for POP3") && got.contains("a line with a leading dot"),
        "{got}"
    );
}
