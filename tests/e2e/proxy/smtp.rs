//! The SMTP proxy against the real Dovecot submission service (relaying to the harness's sink):
//! plain-password clients (msmtp, mutt, curl, a raw client) send through mailoauth, and the sink
//! receives exactly what they sent.

use std::io::Write;
use std::process::{Command, Stdio};
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
            .services(Services::SUBMISSION),
    )
    .expect("the harness Dovecot starts");
    let upstream = if implicit {
        format!("smtps://127.0.0.1:{}", d.submissions_port())
    } else {
        format!("smtp://127.0.0.1:{}", d.submission_port())
    };
    let proxy = Proxy::start_for("smtp", &server, &upstream, Some(d.ca_pem_path()), local);
    (server, d, proxy)
}

/// An 8-bit message with a line that starts with a dot (dot-stuffing on the wire).
fn message(subject: &str) -> Vec<u8> {
    let mut m = format!("From: {ALICE}\r\nTo: bob@example.test\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n").into_bytes();
    m.extend_from_slice(
        "Grüße aus dem Proxy.\r\n.a line with a leading dot\r\n..two dots\r\nend\r\n".as_bytes(),
    );
    m
}

fn raw(proxy: &Proxy) -> LineClient {
    let mut c = LineClient::connect_plain(proxy.port).unwrap();
    c.set_timeout(Duration::from_secs(30)).unwrap();
    let greeting = c.read_smtp_reply().unwrap();
    assert!(greeting[0].starts_with("220 "), "{greeting:?}");
    c
}

fn plain_ir(password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("\0{ALICE}\0{password}"))
}

#[test]
fn ehlo_auth_and_a_pipelined_transaction_reach_the_sink_byte_identical() {
    for (mechanisms, implicit) in [(Mechanisms::Both, true), (Mechanisms::XOAuth2Only, false)] {
        let (_server, d, proxy) = setup(mechanisms, implicit, Local::Plain);
        let mut c = raw(&proxy);
        c.send_line("EHLO client.example").unwrap();
        let ehlo = c.read_smtp_reply().unwrap();
        let text = ehlo.join("\n");
        assert!(text.contains("AUTH PLAIN LOGIN"), "{text}");
        assert!(
            !text.contains("XOAUTH2") && !text.contains("OAUTHBEARER"),
            "no upstream mechanism leaks: {text}"
        );
        assert!(ehlo.last().unwrap().starts_with("250 "), "{text}");
        // AUTH with an initial response and the whole transaction in one write (RFC 4954 §4).
        let body = message("pipelined");
        let mut dotted = Vec::new();
        for line in body.split_inclusive(|&b| b == b'\n') {
            if line.starts_with(b".") {
                dotted.push(b'.');
            }
            dotted.extend_from_slice(line);
        }
        let batch = format!(
            "AUTH PLAIN {}\r\nMAIL FROM:<{ALICE}>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n",
            plain_ir(LOCAL_PASSWORD)
        )
        .into_bytes();
        c.send(&batch).unwrap();
        assert!(
            c.read_smtp_reply().unwrap()[0].starts_with("235"),
            "{}",
            proxy.log()
        );
        assert!(c.read_smtp_reply().unwrap()[0].starts_with("250"));
        assert!(c.read_smtp_reply().unwrap()[0].starts_with("250"));
        assert!(c.read_smtp_reply().unwrap()[0].starts_with("354"));
        c.send(&dotted).unwrap();
        c.send(b".\r\n").unwrap();
        let done = c.read_smtp_reply().unwrap();
        assert!(done[0].starts_with("250"), "{done:?}");
        c.send_line("QUIT").unwrap();
        let got = d.sink().wait_for_messages(1, Duration::from_secs(20));
        assert_eq!(got.len(), 1, "the sink received the message");
        let received = &got[0];
        assert_eq!(received.rcpt_to, vec!["bob@example.test".to_string()]);
        assert!(
            received.data_without_received() == body.as_slice(),
            "the sink got exactly what the client sent"
        );
    }
}

#[test]
fn wrong_password_revoked_grant_and_provider_down_get_distinct_answers() {
    let (server, _d, proxy) = setup(Mechanisms::Both, true, Local::Plain);
    let mut c = raw(&proxy);
    c.send_line("EHLO x").unwrap();
    c.read_smtp_reply().unwrap();
    c.send_line(&format!("AUTH PLAIN {}", plain_ir("wrong")))
        .unwrap();
    let no = c.read_smtp_reply().unwrap().join(" ");
    assert!(no.starts_with("535 5.7.8"), "{no}");
    c.send_line(&format!("MAIL FROM:<{ALICE}>")).unwrap();
    assert!(
        c.read_smtp_reply().unwrap()[0].starts_with("530"),
        "no mail before authentication"
    );

    server.expire_access_tokens();
    server.fail_next_token_requests(1, mailoauth_harness::Failure::Status(503));
    let mut c = raw(&proxy);
    c.send_line("EHLO x").unwrap();
    c.read_smtp_reply().unwrap();
    c.send_line(&format!("AUTH PLAIN {}", plain_ir(LOCAL_PASSWORD)))
        .unwrap();
    let temp = c.read_smtp_reply().unwrap().join(" ");
    assert!(temp.starts_with("454 4.7.0"), "{temp}");

    server.revoke_user(ALICE);
    let mut c = raw(&proxy);
    c.send_line("EHLO x").unwrap();
    c.read_smtp_reply().unwrap();
    c.send_line(&format!("AUTH PLAIN {}", plain_ir(LOCAL_PASSWORD)))
        .unwrap();
    let reauth = c.read_smtp_reply().unwrap().join(" ");
    assert!(
        reauth.starts_with("535 5.7.8") && reauth.contains(&format!("authorize {ALICE}")),
        "{reauth}"
    );
}

#[test]
fn msmtp_sends_with_a_plain_password() {
    let (_server, d, proxy) = setup(Mechanisms::Both, false, Local::Implicit);
    let dir = mailoauth_harness::TempDir::new("mo-msmtp").unwrap();
    let rc = dir.path().join("msmtprc");
    std::fs::write(
        &rc,
        format!(
            "account default\nhost 127.0.0.1\nport {}\ntls on\ntls_starttls off\ntls_trust_file {}\nauth plain\nuser {ALICE}\npassword {LOCAL_PASSWORD}\nfrom {ALICE}\n",
            proxy.port,
            proxy.local_cert().display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    let body = message("via msmtp");
    let mut child = Command::new("msmtp")
        .arg("-C")
        .arg(&rc)
        .arg("bob@example.test")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("msmtp is installed (tests/run installs it)");
    child.stdin.take().unwrap().write_all(&body).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "msmtp: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        proxy.log()
    );
    let got = d.sink().wait_for_messages(1, Duration::from_secs(20));
    // msmtp adds the Date and Message-ID headers a message lacks; everything else arrives as
    // sent (it is the same byte stream from the headers' end on).
    let received = got[0].data_without_received();
    let split = body.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    assert!(
        received.ends_with(&body[split..]),
        "{}",
        String::from_utf8_lossy(received)
    );
    for header in body[..split].split(|&b| b == b'\n') {
        assert!(
            received.windows(header.len()).any(|w| w == header),
            "{}",
            String::from_utf8_lossy(header)
        );
    }
}

#[test]
fn curl_and_mutt_send_with_a_plain_password() {
    let (_server, d, proxy) = setup(Mechanisms::Both, true, Local::Plain);
    let body = message("via curl");
    let out = Curl::new(&format!("smtp://127.0.0.1:{}", proxy.port))
        .user_password(ALICE, LOCAL_PASSWORD)
        .send_mail(ALICE, &["bob@example.test"], &body)
        .run()
        .unwrap();
    assert!(out.success(), "curl: {}\n{}", out.stderr, proxy.log());
    let got = d.sink().wait_for_messages(1, Duration::from_secs(20));
    assert!(got[0].data_without_received() == body.as_slice());

    // mutt in batch mode (no terminal): it sends at once and exits.
    let dir = mailoauth_harness::TempDir::new("mo-mutt-smtp").unwrap();
    let rc = dir.path().join("muttrc");
    std::fs::write(
        &rc,
        format!(
            "set from = \"{ALICE}\"\nset smtp_url = \"smtp://{}@127.0.0.1:{}/\"\nset smtp_pass = \"{LOCAL_PASSWORD}\"\nset ssl_starttls = no\nset ssl_force_tls = no\nset record = \"\"\n",
            ALICE.replace('@', "%40"),
            proxy.port
        ),
    )
    .unwrap();
    let mut child = Command::new("mutt")
        .args(["-n", "-F"])
        .arg(&rc)
        .args(["-s", "via mutt", "bob@example.test"])
        .env("HOME", dir.path())
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Sent by mutt through mailoauth.\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "mutt: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        proxy.log()
    );
    let got = d.sink().wait_for_messages(2, Duration::from_secs(20));
    assert_eq!(got.len(), 2, "mutt's message arrived");
    let text = String::from_utf8_lossy(&got[1].data).to_string();
    assert!(
        text.contains("Subject: via mutt") && text.contains("Sent by mutt through mailoauth."),
        "{text}"
    );
}

#[test]
fn ehlo_mirrors_the_servers_extensions_and_bdat_passes_through() {
    let (_server, d, proxy) = setup(Mechanisms::Both, true, Local::Plain);
    // The proxy probes Dovecot when it starts; once known, its extensions are advertised.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let ehlo = loop {
        let mut c = raw(&proxy);
        c.send_line("EHLO client.example").unwrap();
        let ehlo = c.read_smtp_reply().unwrap().join("\n");
        if ehlo.contains("CHUNKING") || std::time::Instant::now() > deadline {
            break ehlo;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for keyword in ["CHUNKING", "8BITMIME", "PIPELINING", "SIZE"] {
        assert!(
            ehlo.contains(keyword),
            "{keyword} missing:\n{ehlo}\n{}",
            proxy.log()
        );
    }
    assert!(
        !ehlo.contains("STARTTLS") && !ehlo.contains("BURL imap\n250 AUTH"),
        "{ehlo}"
    );
    // BDAT chunks with 8-bit bytes go through the splice untouched.
    let mut c = raw(&proxy);
    c.send_line("EHLO client.example").unwrap();
    c.read_smtp_reply().unwrap();
    c.send_line(&format!("AUTH PLAIN {}", plain_ir(LOCAL_PASSWORD)))
        .unwrap();
    assert!(c.read_smtp_reply().unwrap()[0].starts_with("235"));
    c.send_line(&format!("MAIL FROM:<{ALICE}> BODY=8BITMIME"))
        .unwrap();
    assert!(c.read_smtp_reply().unwrap()[0].starts_with("250"));
    c.send_line("RCPT TO:<bob@example.test>").unwrap();
    assert!(c.read_smtp_reply().unwrap()[0].starts_with("250"));
    let body = message("chunked");
    let (first, second) = body.split_at(body.len() / 2);
    c.send(format!("BDAT {}\r\n", first.len()).as_bytes())
        .unwrap();
    c.send(first).unwrap();
    assert!(c.read_smtp_reply().unwrap()[0].starts_with("250"));
    c.send(format!("BDAT {} LAST\r\n", second.len()).as_bytes())
        .unwrap();
    c.send(second).unwrap();
    assert!(c.read_smtp_reply().unwrap()[0].starts_with("250"));
    let got = d.sink().wait_for_messages(1, Duration::from_secs(20));
    assert!(
        got[0].data_without_received() == body.as_slice(),
        "BDAT data arrived byte-identical"
    );
}
