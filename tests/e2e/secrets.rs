//! Nothing secret in logs: every command run at the most verbose level, its stderr searched for
//! every secret of the run (tokens, the code, the PKCE verifier, the client secret, SASL strings).

use std::time::Duration;

use base64::Engine;
use mailoauth_harness::{AuthServer, AuthServerOptions, Style, browser};

use crate::common::*;

#[test]
fn trace_logs_never_show_a_secret() {
    let server = AuthServer::start(AuthServerOptions::new(Style::Microsoft));
    server.set_access_lifetime(Duration::from_secs(60));
    let env = Env::with_account(&server, BASE64_STORE, "");
    env.set_var("MAILOAUTH_LOG", "trace");
    let mut logs = String::new();

    let mut run = env.spawn(&["authorize", ALICE, "--no-browser"]);
    let url = run.wait_for_line(|l| l.starts_with("http"), Duration::from_secs(20));
    let location = browser::authorize(&url).unwrap();
    browser::get(&location).unwrap();
    let out = run.finish(Duration::from_secs(20));
    assert!(out.status.success(), "{}", out.stderr_text());
    // The authorization URL itself is printed on purpose (it holds no secret: the challenge,
    // not the verifier); everything else is log output.
    logs.push_str(
        &out.stderr
            .iter()
            .filter(|l| !l.starts_with("http"))
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
    );

    let mut printed = Vec::new();
    for args in [
        vec!["token", ALICE],
        vec!["token", ALICE, "--format", "xoauth2"],
        vec!["token", ALICE, "--format", "oauthbearer"],
    ] {
        let out = env.run(&args);
        assert!(out.status.success(), "{}", out.stderr_text());
        printed.push(out.stdout_text().trim().to_string());
        logs.push_str(&out.stderr_text());
    }
    server.revoke_user(ALICE);
    let out = env.run(&["token", ALICE]);
    assert_eq!(out.code(), 3);
    logs.push_str(&out.stderr_text());
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG") || logs.contains("INFO"),
        "the log level took effect:\n{logs}"
    );

    let code = url::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let verifier = server
        .requests()
        .iter()
        .find_map(|r| r.param("code_verifier").map(str::to_owned))
        .expect("the exchange sent a verifier");
    let mut secrets = vec![code, verifier, "test-secret".to_string()];
    for r in server.requests() {
        for key in ["refresh_token", "code"] {
            if let Some(v) = r.param(key) {
                secrets.push(v.to_string());
            }
        }
    }
    for p in &printed {
        secrets.push(p.clone());
        if let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(p) {
            secrets.push(String::from_utf8_lossy(&raw).into_owned());
        }
    }
    for secret in &secrets {
        assert!(secret.len() >= 8);
        // Any 12-character piece of a secret would already be a leak.
        let piece = &secret[..12.min(secret.len())];
        assert!(
            !logs.contains(piece),
            "a secret ({}…) appears in the logs:\n{logs}",
            &secret[..4]
        );
    }
}
