//! Every authorization flow end to end against the test authorization server; the test plays
//! the browser (it follows the URL mailoauth prints) or the user typing a device code.

use std::time::Duration;

use mailoauth_harness::{AuthServer, AuthServerOptions, Style, browser};

use crate::common::*;

const T: Duration = Duration::from_secs(20);

#[test]
fn loopback_flow_with_pkce_and_state_then_token() {
    let server = AuthServer::start(AuthServerOptions::default());
    let env = Env::with_account(&server, BASE64_STORE, "");
    env.authorize_loopback(ALICE);

    let q = &server.authorize_queries()[0];
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("code_challenge_method").as_deref(), Some("S256"));
    assert!(get("state").is_some_and(|s| s.len() >= 20));
    assert!(
        get("redirect_uri")
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    assert_eq!(get("login_hint").as_deref(), Some(ALICE));
    // The token exchange carried the verifier; the server checked it against the challenge.
    assert_eq!(server.token_requests("authorization_code"), 1);

    let out = env.run(&["token", ALICE]);
    assert!(out.status.success(), "{}", out.stderr_text());
    let token = out.stdout_text();
    assert_eq!(token.lines().count(), 1);
    assert!(
        server.is_access_token_live(token.trim()),
        "the printed token is the one issued"
    );
    // The record on disk is sealed (base64), not plain JSON.
    let record = read(&env.tokens_dir().join(format!("{ALICE}.sealed")));
    assert!(!String::from_utf8_lossy(&record).contains(token.trim()));
}

#[test]
fn loopback_ignores_wrong_state_favicon_and_other_paths() {
    let server = AuthServer::start(AuthServerOptions::default());
    let env = Env::with_account(&server, BASE64_STORE, "");
    let mut run = env.spawn(&["authorize", ALICE, "--no-browser"]);
    let url = run.wait_for_line(|l| l.starts_with("http"), T);
    let location = browser::authorize(&url).unwrap();
    let base = location.split('?').next().unwrap().to_string();

    let forged = location.replace("state=", "state=forged");
    assert_eq!(
        browser::get(&forged).unwrap().status,
        400,
        "a wrong state is refused"
    );
    assert_eq!(
        browser::get(&format!("{base}favicon.ico")).unwrap().status,
        404
    );
    assert_eq!(
        browser::get(&format!("{base}?nothing=here"))
            .unwrap()
            .status,
        400
    );
    assert_eq!(
        server.token_requests("authorization_code"),
        0,
        "nothing was exchanged yet"
    );

    let page = browser::get(&location).unwrap();
    assert_eq!(page.status, 200);
    let out = run.finish(T);
    assert!(out.status.success(), "{}", out.stderr_text());
    assert_eq!(server.token_requests("authorization_code"), 1);
}

#[test]
fn loopback_denied_and_timeout() {
    let server = AuthServer::start(AuthServerOptions::default());
    let env = Env::with_account(&server, BASE64_STORE, "");
    server.deny_next_authorization();
    let mut run = env.spawn(&["authorize", ALICE, "--no-browser"]);
    let url = run.wait_for_line(|l| l.starts_with("http"), T);
    let location = browser::authorize(&url).unwrap();
    assert!(location.contains("error=access_denied"), "{location}");
    browser::get(&location).unwrap();
    let out = run.finish(T);
    assert_eq!(out.status.code(), Some(3), "{}", out.stderr_text());
    assert!(
        out.stderr_text().contains("access_denied"),
        "{}",
        out.stderr_text()
    );
    assert!(
        out.stderr_text().contains("mailoauth authorize"),
        "{}",
        out.stderr_text()
    );

    let run = env.spawn(&["authorize", ALICE, "--no-browser", "--timeout", "1"]);
    let out = run.finish(T);
    assert_eq!(out.status.code(), Some(3), "{}", out.stderr_text());
    assert!(
        out.stderr_text().contains("no answer from the browser"),
        "{}",
        out.stderr_text()
    );
}

#[test]
fn paste_flow_accepts_the_whole_url_or_the_code_and_checks_state() {
    let server = AuthServer::start(AuthServerOptions::new(Style::Google));
    let env = Env::with_account(&server, BASE64_STORE, "flow = \"paste\"");

    // The whole URL the browser ended on, after one pasted URL with a foreign state.
    let mut run = env.spawn(&["authorize", ALICE]);
    let url = run.wait_for_line(|l| l.starts_with("http"), T);
    let location = browser::authorize(&url).unwrap();
    assert!(
        location.starts_with("http://127.0.0.1/?"),
        "paste redirects to a port-less loopback URI: {location}"
    );
    run.send_line(&location.replace("state=", "state=other"));
    run.wait_for_line(|l| l.contains("different authorization request"), T);
    run.send_line(&location);
    let out = run.finish(T);
    assert!(out.status.success(), "{}", out.stderr_text());

    // Only the code (Google codes contain '/').
    let mut run = env.spawn(&["authorize", ALICE]);
    let url = run.wait_for_line(|l| l.starts_with("http"), T);
    let location = browser::authorize(&url).unwrap();
    let code = url::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    assert!(code.contains('/'));
    run.send_line(&code);
    let out = run.finish(T);
    assert!(out.status.success(), "{}", out.stderr_text());
    assert_eq!(server.token_requests("authorization_code"), 2);
    assert!(env.run(&["token", ALICE]).status.success());
}

#[test]
fn device_flow_polls_until_approved() {
    let mut options = AuthServerOptions::new(Style::Microsoft);
    options.device_interval = Duration::from_secs(1);
    let server = AuthServer::start(options);
    let env = Env::with_account(&server, BASE64_STORE, "flow = \"device\"");
    let mut run = env.spawn(&["authorize", ALICE]);
    // Microsoft's ready-made message is shown, then the code on its own line.
    run.wait_for_line(|l| l.contains("To sign in"), T);
    let code_line = run.wait_for_line(|l| l.starts_with("    "), T);
    let user_code = code_line.trim().to_string();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(server.approve_device(&user_code, ALICE), "{user_code}");
    let out = run.finish(T);
    assert!(out.status.success(), "{}", out.stderr_text());
    assert!(
        server.token_requests("urn:ietf:params:oauth:grant-type:device_code") >= 2,
        "it polled while pending"
    );
    let out = env.run(&["token", ALICE]);
    assert!(out.status.success(), "{}", out.stderr_text());
}

#[test]
fn device_flow_denied_and_google_refusal() {
    let mut options = AuthServerOptions::new(Style::Microsoft);
    options.device_interval = Duration::from_secs(1);
    let server = AuthServer::start(options);
    let env = Env::with_account(&server, BASE64_STORE, "flow = \"device\"");
    let mut run = env.spawn(&["authorize", ALICE]);
    let user_code = run
        .wait_for_line(|l| l.starts_with("    "), T)
        .trim()
        .to_string();
    assert!(server.deny_device(&user_code));
    let out = run.finish(T);
    assert_eq!(out.status.code(), Some(3), "{}", out.stderr_text());
    assert!(
        out.stderr_text().contains("authorization_declined"),
        "{}",
        out.stderr_text()
    );

    // Google with the mail scope on the device flow: refused before anything is sent.
    let google = AuthServer::start(AuthServerOptions::new(Style::Google));
    let env = Env::new();
    env.write_config(&format!(
        "{BASE64_STORE}[accounts.\"me@gmail.com\"]\nprovider = \"google\"\nclient_id = \"test-client\"\nclient_secret = \"test-secret\"\nflow = \"device\"\ntoken_url = \"{}\"\ndevice_url = \"{}\"\n",
        google.token_endpoint(),
        google.device_authorization_endpoint()
    ));
    let out = env.run(&["authorize", "me@gmail.com"]);
    assert_eq!(out.code(), 5, "{}", out.stderr_text());
    assert!(
        out.stderr_text().contains("device flow"),
        "{}",
        out.stderr_text()
    );
    assert!(google.requests().is_empty(), "nothing reached the provider");
}

#[test]
fn client_credentials_and_oidc_discovery() {
    let server = AuthServer::start(AuthServerOptions::default());
    let env = Env::new();
    env.write_config(&format!(
        "{BASE64_STORE}[accounts.\"shared@example.test\"]\nprovider = \"generic\"\nissuer = \"{}\"\nclient_id = \"test-client\"\nclient_secret_command = [\"printf\", \"test-secret\"]\nflow = \"client_credentials\"\nscopes = [\"mail\"]\n",
        server.base_url()
    ));
    let out = env.run(&["authorize", "shared@example.test"]);
    assert!(out.status.success(), "{}", out.stderr_text());
    assert_eq!(server.token_requests("client_credentials"), 1);
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.path.ends_with("openid-configuration")),
        "discovery was used"
    );
    let out = env.run(&["token", "shared@example.test"]);
    assert!(out.status.success(), "{}", out.stderr_text());
    assert!(server.is_access_token_live(out.stdout_text().trim()));
}

#[test]
fn wrong_client_secret_is_explained() {
    let server = AuthServer::start(AuthServerOptions::default());
    let env = Env::new();
    env.write_config(&format!(
        "{BASE64_STORE}{}",
        account_toml(&server, ALICE, "").replace("test-secret", "wrong-secret")
    ));
    let mut run = env.spawn(&["authorize", ALICE, "--no-browser"]);
    let url = run.wait_for_line(|l| l.starts_with("http"), T);
    browser::get(&browser::authorize(&url).unwrap()).unwrap();
    let out = run.finish(T);
    assert_eq!(out.status.code(), Some(5), "{}", out.stderr_text());
    assert!(
        out.stderr_text()
            .contains("does not recognise the client id or secret"),
        "{}",
        out.stderr_text()
    );
}
