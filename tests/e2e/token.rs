//! `mailoauth token`: the refresh-command mode mutt, msmtp and mbsync call. One line on stdout,
//! diagnostics on stderr only, exit codes that say what to do; refresh with a margin, rotation
//! persisted, one refresh however many processes ask at once, transient failures survived.

use std::time::Duration;

use base64::Engine;
use mailoauth_harness::{AuthServer, AuthServerOptions, Failure, Style};

use crate::common::*;

#[test]
fn unauthorized_account_fails_with_the_command_to_run_and_no_stdout() {
    let server = AuthServer::start(AuthServerOptions::default());
    let env = Env::with_account(&server, BASE64_STORE, "");
    let out = env.run(&["token", ALICE]);
    assert_eq!(out.code(), 3, "{}", out.stderr_text());
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout, or mutt would send it as a token"
    );
    assert!(
        out.stderr_text()
            .contains(&format!("mailoauth authorize {ALICE}")),
        "{}",
        out.stderr_text()
    );

    let out = env.run(&["token", "nobody@example.test"]);
    assert_eq!(out.code(), 5);
    assert!(out.stdout.is_empty());
    assert!(
        out.stderr_text().contains(ALICE),
        "lists the configured accounts: {}",
        out.stderr_text()
    );
}

#[test]
fn formats_for_sasl_tools() {
    let server = AuthServer::start(AuthServerOptions::default());
    let env = Env::with_account(&server, BASE64_STORE, "");
    env.authorize_loopback(ALICE);
    let token = env.run(&["token", ALICE]).stdout_text().trim().to_string();
    let decode = |format: &str| {
        let out = env.run(&["token", ALICE, "--format", format]);
        assert!(out.status.success(), "{}", out.stderr_text());
        let b64 = out.stdout_text().trim().to_string();
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(
        decode("xoauth2"),
        format!("user={ALICE}\x01auth=Bearer {token}\x01\x01")
    );
    assert_eq!(
        decode("oauthbearer"),
        format!("n,a={ALICE},\x01auth=Bearer {token}\x01\x01")
    );
}

#[test]
fn refresh_inside_the_margin_persists_rotated_refresh_tokens() {
    let server = AuthServer::start(AuthServerOptions::new(Style::Microsoft));
    // 60 s tokens are always inside the 5-minute margin: every call refreshes.
    server.set_access_lifetime(Duration::from_secs(60));
    let env = Env::with_account(&server, BASE64_STORE, "");
    env.authorize_loopback(ALICE);
    let first_rt = server.live_refresh_tokens(ALICE);
    assert_eq!(first_rt.len(), 1);

    let a = env.run(&["token", ALICE]);
    assert!(a.status.success(), "{}", a.stderr_text());
    assert_eq!(server.refresh_requests(), 1);
    let rotated = server.live_refresh_tokens(ALICE);
    assert_eq!(rotated.len(), 1);
    assert_ne!(rotated, first_rt, "the provider rotated the refresh token");
    assert!(!server.is_refresh_token_live(&first_rt[0]));

    // The next call must use the rotated token: with the old one the provider would say
    // invalid_grant.
    let b = env.run(&["token", ALICE]);
    assert!(b.status.success(), "{}", b.stderr_text());
    assert_eq!(server.refresh_requests(), 2);
    assert_ne!(a.stdout_text(), b.stdout_text());
    assert!(server.is_access_token_live(b.stdout_text().trim()));
}

#[test]
fn lenient_expires_in_string_and_missing() {
    for (as_string, omit) in [(true, false), (false, true)] {
        let server = AuthServer::start(AuthServerOptions {
            expires_in_as_string: as_string,
            omit_expires_in: omit,
            ..Default::default()
        });
        let env = Env::with_account(&server, BASE64_STORE, "");
        env.authorize_loopback(ALICE);
        let out = env.run(&["token", ALICE]);
        assert!(out.status.success(), "{}", out.stderr_text());
        // 3600 s (sent as "3600", or assumed when missing) is fresh: no refresh happened.
        assert_eq!(
            server.refresh_requests(),
            0,
            "string={as_string} omitted={omit}"
        );
    }
}

#[test]
fn revoked_grant_marks_the_account_and_stops_calling_the_provider() {
    let server = AuthServer::start(AuthServerOptions::new(Style::Microsoft));
    server.set_access_lifetime(Duration::from_secs(60));
    let env = Env::with_account(&server, BASE64_STORE, "");
    env.authorize_loopback(ALICE);
    server.revoke_user(ALICE);

    let out = env.run(&["token", ALICE]);
    assert_eq!(out.code(), 3, "{}", out.stderr_text());
    assert!(out.stdout.is_empty());
    let err = out.stderr_text();
    assert!(
        err.contains("AADSTS"),
        "Microsoft's reason is explained: {err}"
    );
    assert!(
        err.contains(&format!("mailoauth authorize {ALICE}")),
        "{err}"
    );
    assert_eq!(server.refresh_requests(), 1);

    let again = env.run(&["token", ALICE]);
    assert_eq!(again.code(), 3);
    assert_eq!(
        server.refresh_requests(),
        1,
        "a revoked grant is not retried in a loop"
    );

    // Authorizing again clears the mark.
    env.authorize_loopback(ALICE);
    let out = env.run(&["token", ALICE]);
    assert!(out.status.success(), "{}", out.stderr_text());
}

#[test]
fn provider_outage_keeps_a_valid_token_and_reports_an_expired_one_as_temporary() {
    let server = AuthServer::start(AuthServerOptions::default());
    // Inside the margin but not expired: a failed refresh falls back to the current token.
    server.set_access_lifetime(Duration::from_secs(120));
    let env = Env::with_account(&server, BASE64_STORE, "");
    env.authorize_loopback(ALICE);
    let issued = env.run(&["token", ALICE]).stdout_text();
    let refreshes = server.refresh_requests();

    server.fail_next_token_requests(1, Failure::Status(503));
    let out = env.run(&["token", ALICE]);
    assert!(out.status.success(), "{}", out.stderr_text());
    assert!(server.is_access_token_live(out.stdout_text().trim()));
    assert_eq!(server.refresh_requests(), refreshes + 1);
    let _ = issued;

    // Already expired: nothing usable is left, so it is a temporary failure (exit 4), and the
    // grant is not marked as needing re-authorization.
    server.set_access_lifetime(Duration::from_secs(1));
    let out = env.run(&["token", ALICE]);
    assert!(out.status.success(), "{}", out.stderr_text());
    std::thread::sleep(Duration::from_millis(1100));
    server.fail_next_token_requests(1, Failure::Status(502));
    let out = env.run(&["token", ALICE]);
    assert_eq!(out.code(), 4, "{}", out.stderr_text());
    assert!(out.stdout.is_empty());
    server.set_access_lifetime(Duration::from_secs(3600));
    let out = env.run(&["token", ALICE]);
    assert!(
        out.status.success(),
        "after the outage it works again: {}",
        out.stderr_text()
    );
}

#[test]
fn twenty_concurrent_processes_spend_the_refresh_token_once() {
    let server = AuthServer::start(AuthServerOptions::new(Style::Microsoft));
    server.set_access_lifetime(Duration::from_secs(60));
    let env = Env::with_account(&server, BASE64_STORE, "");
    env.authorize_loopback(ALICE);
    // From now on tokens live an hour: the first refresh satisfies everyone else.
    server.set_access_lifetime(Duration::from_secs(3600));
    let before = server.refresh_requests();
    let children: Vec<_> = (0..20)
        .map(|_| {
            env.cmd()
                .args(["token", ALICE])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for out in &outputs {
        assert!(out.status.success(), "{}", out.stderr_text());
    }
    assert_eq!(
        server.refresh_requests() - before,
        1,
        "exactly one refresh request"
    );
    let first = outputs[0].stdout_text();
    assert!(
        outputs.iter().all(|o| o.stdout_text() == first),
        "all got the same fresh token"
    );
}

#[test]
fn plaintext_store_only_when_chosen_and_with_a_warning() {
    let server = AuthServer::start(AuthServerOptions::default());
    let env = Env::with_account(&server, "[store]\nkind = \"plaintext\"\n", "");
    let mut run = env.spawn(&["authorize", ALICE, "--no-browser"]);
    run.wait_for_line(
        |l| l.contains("stored unencrypted"),
        Duration::from_secs(20),
    );
    let url = run.wait_for_line(|l| l.starts_with("http"), Duration::from_secs(20));
    mailoauth_harness::browser::get(&mailoauth_harness::browser::authorize(&url).unwrap()).unwrap();
    assert!(run.finish(Duration::from_secs(20)).status.success());
    let path = env.tokens_dir().join(format!("{ALICE}.json"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // A record others can read is refused.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = env.run(&["token", ALICE]);
    assert_ne!(out.code(), 0);
    assert!(
        out.stderr_text().contains("chmod 600"),
        "{}",
        out.stderr_text()
    );
}

#[test]
fn no_store_configured_means_keyring_not_plaintext() {
    let server = AuthServer::start(AuthServerOptions::default());
    let env = Env::with_account(&server, "", "");
    // No Secret Service in this environment (no D-Bus session): authorize stops before the
    // user is sent to a browser, says why and what to choose instead, and writes no file.
    let out = env
        .cmd()
        .args(["authorize", ALICE, "--no-browser"])
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
        .output()
        .unwrap();
    assert_eq!(out.code(), 5, "{}", out.stderr_text());
    let err = out.stderr_text();
    assert!(
        err.contains("keyring") && err.contains("kind = \"command\""),
        "{err}"
    );
    assert!(
        !err.contains("http://"),
        "no authorization URL was shown: {err}"
    );
    assert!(server.requests().is_empty());
    assert!(!env.tokens_dir().join(format!("{ALICE}.json")).exists());
}

#[test]
fn configuration_errors_name_file_line_and_key() {
    let env = Env::new();
    env.write_config(
        "[accounts.\"a@b\"]\nprovider = \"google\"\nclient_id = \"x\"\nclinet_secret = \"y\"\n",
    );
    let out = env.run(&["token", "a@b"]);
    assert_eq!(out.code(), 5);
    let err = out.stderr_text();
    assert!(err.contains(&env.config.display().to_string()), "{err}");
    assert!(
        err.contains("line 4") && err.contains("clinet_secret") && err.contains("client_secret"),
        "{err}"
    );
    let missing = Env::new();
    let out = missing.run(&["token", "a@b"]);
    assert_eq!(out.code(), 5);
    assert!(
        out.stderr_text().contains("no configuration at"),
        "{}",
        out.stderr_text()
    );
}
