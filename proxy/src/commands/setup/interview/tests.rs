//! The interview driven by scripted answers: presets, recommendations, refusals, retries.

use super::super::answers::*;
use super::super::ask::Script;
use super::*;

fn facts() -> Facts {
    Facts {
        keyring: true,
        graphical: true,
        ..Facts::default()
    }
}

#[test]
fn google_with_defaults_and_a_secret_command() {
    let mut s = Script::new(&[
        "google",
        "me@gmail.com",
        "1234.apps.googleusercontent.com",
        "command",
        "pass show 'mail/google secret'",
        "",  // imap smtp
        "",  // imap preset
        "",  // smtp preset
        "",  // loopback (recommended with a display)
        "n", // no proxy
        "",  // keyring (reachable)
    ]);
    let a = interview(&mut s, &Given::default(), &facts()).unwrap();
    assert!(s.done());
    assert_eq!(a.provider, ProviderKind::Google);
    assert_eq!(a.account, "me@gmail.com");
    assert!(
        matches!(&a.secret, Secret::Command(argv) if argv == &["pass", "show", "mail/google secret"])
    );
    assert_eq!(
        a.servers,
        vec![
            (Proto::Imap, "imaps://imap.gmail.com:993".to_string()),
            (Proto::Smtp, "smtps://smtp.gmail.com:465".to_string())
        ]
    );
    assert_eq!(a.flow, FlowKind::Loopback);
    assert_eq!(a.store, StoreChoice::Keyring);
    assert!(a.local_password.is_none());
    // Google's registration steps were shown; Google offers no "none" secret or device flow.
    assert!(s.shown.contains("Desktop"));
    assert!(!s.shown.contains("none "));
    assert!(!s.shown.contains("device "));
}

#[test]
fn microsoft_headless_with_proxy_and_no_keyring() {
    let mut s = Script::new(&[
        "me@contoso.com",
        "00000000-0000",
        "", // tenant common
        "", // none: public client
        "imap smtp pop3",
        "",
        "",
        "",
        "",    // device is recommended without a display
        "y",   // proxy
        "pw1", // local password
        "pw2", // differs
        "pw1", // again
        "pw1", // repeated
        "",    // default store without keyring or gpg, with the proxy: password
    ]);
    let given = Given {
        provider: Some(ProviderKind::Microsoft),
        ..Given::default()
    };
    let a = interview(&mut s, &given, &Facts::default()).unwrap();
    assert!(s.done(), "{}", s.shown);
    assert_eq!(a.tenant.as_deref(), Some("common"));
    assert!(matches!(a.secret, Secret::None));
    assert_eq!(a.servers[1].1, "smtp://smtp.office365.com:587");
    assert_eq!(a.servers[2].1, "pop3s://outlook.office365.com:995");
    assert_eq!(a.flow, FlowKind::Device);
    assert_eq!(a.local_password.unwrap().expose_secret(), "pw1");
    assert_eq!(a.store, StoreChoice::Password);
    assert!(s.shown.contains("differ"));
    assert!(s.shown.contains("NOT reachable"));
}

#[test]
fn generic_with_explicit_endpoints_and_a_typed_secret_plaintext_confirmed() {
    let mut s = Script::new(&[
        "generic",
        "me@example.org",
        "client",
        "",                        // no issuer
        "http://example.org/auth", // refused: plain http off loopback
        "https://auth.example.org/auth",
        "https://auth.example.org/token",
        "", // no device endpoint
        "type",
        "  s3cret ",
        "openid offline_access",
        "imap",
        "imap.example.org", // not a URL
        "imap://mail.example.org",
        "device", // not offered without a device endpoint
        "paste",
        "", // no proxy
        "plaintext",
        "n", // not after all
        "plaintext",
        "yes",
    ]);
    let a = interview(&mut s, &Given::default(), &facts()).unwrap();
    assert!(s.done(), "{}", s.shown);
    assert_eq!(
        a.endpoints,
        Some(Endpoints::Explicit {
            authorize: Some("https://auth.example.org/auth".into()),
            token: "https://auth.example.org/token".into(),
            device: None
        })
    );
    assert!(matches!(&a.secret, Secret::Value(v) if v.expose_secret() == "s3cret"));
    assert_eq!(
        a.scopes,
        Some(vec!["openid".to_string(), "offline_access".to_string()])
    );
    assert_eq!(
        a.servers,
        vec![(Proto::Imap, "imap://mail.example.org".into())]
    );
    assert_eq!(a.flow, FlowKind::Paste);
    assert_eq!(a.store, StoreChoice::Plaintext);
    assert!(s.shown.contains("plain http"));
    assert!(s.shown.contains("warning: plaintext"));
    // The secret is never part of what is shown.
    assert!(!s.shown.contains("s3cret"));
}

#[test]
fn existing_account_is_refused_unless_confirmed() {
    let facts = Facts {
        accounts: vec!["me@gmail.com".into()],
        store: Some("plaintext"),
        ..facts()
    };
    let given = Given {
        provider: Some(ProviderKind::Google),
        account: Some("me@gmail.com".into()),
        ..Given::default()
    };
    let mut s = Script::new(&["", "never asked"]);
    match interview(&mut s, &given, &facts) {
        Err(Stop::Declined(why)) => assert!(why.contains("nothing was changed"), "{why}"),
        other => panic!("{:?}", other.map(|a| a.account)),
    }
    let given = Given {
        replace: true,
        flow: Some(FlowKind::Paste),
        proxy: Some(false),
        ..given
    };
    let mut s = Script::new(&["id", "type", "x", "", "", ""]);
    let a = interview(&mut s, &given, &facts).unwrap();
    assert!(a.replace);
    assert_eq!(a.store, StoreChoice::Keep, "an existing [store] is kept");
    assert!(s.done(), "{}", s.shown);
}

#[test]
fn google_device_flag_is_refused() {
    let given = Given {
        provider: Some(ProviderKind::Google),
        account: Some("me@gmail.com".into()),
        client_id: Some("id".into()),
        flow: Some(FlowKind::Device),
        ..Given::default()
    };
    let mut s = Script::new(&["type", "x", "", "", ""]);
    assert!(matches!(
        interview(&mut s, &given, &facts()),
        Err(Stop::Declined(why)) if why.contains("device flow")
    ));
}
