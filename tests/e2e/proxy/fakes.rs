//! The proxy against scripted fake upstreams, for what a real Dovecot cannot produce:
//! Gmail's challenge failure, Microsoft's immediate NO, a stripped STARTTLS, a reset during
//! authentication, a PREAUTH greeting, a BYE.

use mailoauth_harness::fakeimap::{AuthAnswer, FakeImap, FakeImapOptions, FakeTls};
use mailoauth_harness::{AuthServer, AuthServerOptions};

use super::*;

fn run(options: FakeImapOptions) -> (AuthServer, FakeImap, Proxy) {
    let server = AuthServer::start(AuthServerOptions::default());
    let scheme = if options.tls == FakeTls::Implicit {
        "imaps"
    } else {
        "imap"
    };
    let fake = FakeImap::start(options);
    let upstream = format!("{scheme}://127.0.0.1:{}", fake.port());
    let proxy = Proxy::start(
        &server,
        &upstream,
        Some(fake.ca_pem_path()),
        Local::Plain,
        "",
    );
    (server, fake, proxy)
}

#[test]
fn gmail_challenge_is_answered_refreshed_and_retried_once() {
    let mut options = FakeImapOptions::gmail(FakeTls::Implicit);
    options.answers = vec![AuthAnswer::google_challenge(), AuthAnswer::Ok];
    let (server, fake, proxy) = run(options);
    let refreshes = server.refresh_requests();
    let mut c = proxy.client();
    let ok = login(&mut c, LOCAL_PASSWORD);
    assert!(ok.starts_with("a1 OK"), "{ok}\n{}", proxy.log());
    // The client saw no "+" challenge: the proxy answered it (empty line for XOAUTH2, AQ== for
    // OAUTHBEARER), refreshed once and retried on the same connection.
    assert_eq!(fake.authenticate_attempts(), 2);
    assert_eq!(server.refresh_requests(), refreshes + 1);
    assert_eq!(
        fake.challenge_answers(),
        vec!["AQ==".to_string()],
        "OAUTHBEARER is preferred on Gmail"
    );
    let tokens = fake.tokens_seen();
    assert_ne!(tokens[0], tokens[1], "the retry used a new token");
    // The proxy logs at debug level here: still no password, token or SASL string. (The log
    // arrives through a reader thread: wait for the session's last lines first.)
    proxy.wait_for_log(&format!("C->P a1 LOGIN {ALICE} [secret "));
    proxy.wait_for_log("P->S a1 AUTHENTICATE OAUTHBEARER");
    proxy.wait_for_log("S->P a1 OK");
    let log = proxy.log();
    assert!(
        log.contains("IMAP") || log.contains("listening"),
        "the log is captured: {log}"
    );
    for secret in [LOCAL_PASSWORD, &tokens[0], &tokens[1]] {
        assert!(
            !log.contains(&secret[..16]),
            "a secret appears in the proxy log:\n{log}"
        );
    }
    // The protocol trace (debug level) shows the exchange, secrets as fingerprints: the
    // client's LOGIN without its password, the proxy's AUTHENTICATE without the SASL response,
    // the server's challenge and answers.
    for line in log
        .lines()
        .filter(|l| l.contains("P->S") || l.contains("C->P"))
    {
        let longest = line
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '='))
            .map(str::len)
            .max()
            .unwrap_or(0);
        assert!(longest < 40, "an encoded secret in the trace: {line}");
    }
    c.send_line("a2 NOOP").unwrap();
    assert!(
        c.read_tagged("a2")
            .unwrap()
            .last()
            .unwrap()
            .starts_with("a2 OK")
    );
}

#[test]
fn microsoft_immediate_no_twice_means_rejected_after_one_refresh() {
    let mut options = FakeImapOptions::microsoft(FakeTls::Implicit);
    options.answers = vec![AuthAnswer::microsoft_no(), AuthAnswer::microsoft_no()];
    let (server, fake, proxy) = run(options);
    let refreshes = server.refresh_requests();
    let no = login(&mut proxy.client(), LOCAL_PASSWORD);
    assert!(no.starts_with("a1 NO [AUTHENTICATIONFAILED]"), "{no}");
    assert!(no.contains("rejected the OAuth token"), "{no}");
    assert_eq!(fake.authenticate_attempts(), 2);
    assert_eq!(
        server.refresh_requests(),
        refreshes + 1,
        "exactly one refresh"
    );
    assert!(
        fake.authentications()
            .iter()
            .all(|a| a.mechanism == "XOAUTH2"),
        "Microsoft offers only XOAUTH2"
    );
}

#[test]
fn stripped_starttls_never_sends_the_token() {
    let (_server, fake, proxy) = run(FakeImapOptions::gmail(FakeTls::Plain));
    let no = login(&mut proxy.client(), LOCAL_PASSWORD);
    assert!(no.starts_with("a1 NO [UNAVAILABLE]"), "{no}");
    assert!(no.contains("STARTTLS"), "{no}");
    assert_eq!(fake.authenticate_attempts(), 0);
    let plain = String::from_utf8_lossy(&fake.plaintext_received()).to_string();
    assert!(
        !plain.contains("AUTHENTICATE"),
        "nothing but capability talk in clear: {plain}"
    );
}

#[test]
fn starttls_upstream_works() {
    let (_server, fake, proxy) = run(FakeImapOptions::microsoft(FakeTls::StartTls));
    assert!(login(&mut proxy.client(), LOCAL_PASSWORD).starts_with("a1 OK"));
    assert!(
        fake.authentications().iter().all(|a| a.tls),
        "the token went only over TLS"
    );
}

#[test]
fn reset_bye_and_preauth_are_unavailable() {
    for answer in [
        AuthAnswer::Reset,
        AuthAnswer::Bye("Service going down".into()),
    ] {
        let mut options = FakeImapOptions::gmail(FakeTls::Implicit);
        options.answers = vec![answer.clone()];
        let (_server, _fake, proxy) = run(options);
        let mut c = proxy.client();
        let no = login(&mut c, LOCAL_PASSWORD);
        assert!(no.starts_with("a1 NO [UNAVAILABLE]"), "{answer:?}: {no}");
        // The client stays connected and unauthenticated: a later login works.
        c.send_line(&format!("a2 LOGIN {ALICE} \"{LOCAL_PASSWORD}\""))
            .unwrap();
        assert!(
            c.read_tagged("a2")
                .unwrap()
                .last()
                .unwrap()
                .starts_with("a2 OK")
        );
    }
    let mut options = FakeImapOptions::gmail(FakeTls::Implicit);
    options.greeting = Some("* PREAUTH [CAPABILITY IMAP4rev1] Logged in as someone".into());
    let (_server, fake, proxy) = run(options);
    let no = login(&mut proxy.client(), LOCAL_PASSWORD);
    assert!(no.starts_with("a1 NO [UNAVAILABLE]"), "{no}");
    assert_eq!(fake.authenticate_attempts(), 0);
}
