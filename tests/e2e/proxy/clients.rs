//! Real mail clients that know only passwords, through the proxy, against the OAuth-only Dovecot:
//! mutt (under tmux) and curl.

use std::time::Duration;

use mailoauth_harness::{
    AuthServer, AuthServerOptions, Curl, Dovecot, DovecotOptions, Mechanisms, Services,
};

use super::*;
use crate::clients::{MARKER, Tmux, message};

fn setup(local: Local) -> (AuthServer, Dovecot, Proxy) {
    let server = AuthServer::start(AuthServerOptions::default());
    let d = Dovecot::start(
        DovecotOptions::new(&server)
            .mechanisms(Mechanisms::Both)
            .services(Services::IMAP),
    )
    .expect("the harness Dovecot starts");
    d.deliver(ALICE, &message()).unwrap();
    let upstream = format!("imaps://127.0.0.1:{}", d.imaps_port());
    let proxy = Proxy::start(&server, &upstream, Some(d.ca_pem_path()), local, "");
    (server, d, proxy)
}

#[test]
fn mutt_with_a_plain_password_reads_mail_through_the_proxy() {
    for local in [Local::Plain, Local::Implicit] {
        let (server, _d, proxy) = setup(local);
        let dir = mailoauth_harness::TempDir::new("mo-mutt").unwrap();
        let (scheme, tls) = match local {
            Local::Implicit => (
                "imaps",
                format!(
                    "set ssl_ca_certificates_file = \"{}\"\nset ssl_force_tls = yes\n",
                    proxy.local_cert().display()
                ),
            ),
            _ => (
                "imap",
                "set ssl_starttls = no\nset ssl_force_tls = no\n".to_string(),
            ),
        };
        let rc = dir.path().join("muttrc");
        std::fs::write(
            &rc,
            format!(
                "set imap_user = \"{ALICE}\"\nset imap_pass = \"{LOCAL_PASSWORD}\"\nset folder = \"{scheme}://127.0.0.1:{}/\"\nset spoolfile = \"+INBOX\"\n{tls}set certificate_file = \"{}/certificates\"\nset header_cache = \"\"\nset message_cachedir = \"\"\n",
                proxy.port,
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
        let screen = tmux.wait_for(MARKER, Duration::from_secs(30));
        assert!(screen.contains("Bob"), "{screen}");
        assert!(
            server.introspections() >= 1,
            "the proxy logged in upstream with OAuth"
        );
        assert!(proxy.log().contains("bytes_up") || !proxy.log().is_empty());
    }
}

#[test]
fn curl_with_a_plain_password_lists_mailboxes() {
    let (_server, _d, proxy) = setup(Local::Plain);
    let out = Curl::new(&format!("imap://127.0.0.1:{}/", proxy.port))
        .user_password(ALICE, LOCAL_PASSWORD)
        .run()
        .unwrap();
    assert!(out.success(), "curl: {}\n{}", out.stderr, proxy.log());
    assert!(out.stdout_text().contains("INBOX"), "{}", out.stdout_text());
    let refused = Curl::new(&format!("imap://127.0.0.1:{}/", proxy.port))
        .user_password(ALICE, "wrong")
        .run()
        .unwrap();
    assert_eq!(
        refused.code,
        Some(mailoauth_harness::curl::LOGIN_DENIED),
        "{}",
        refused.stderr
    );
}
