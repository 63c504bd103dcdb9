//! mutt_oauth2.py compatibility: `mailoauth TOKENFILE` on the script's own (encrypted) token
//! file, `mailoauth import`, and a cross-check with the real script from the mutt package.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use mailoauth_harness::{AuthServer, AuthServerOptions, IssuedTokens, Style, browser};
use serde_json::{Value, json};

use crate::common::*;

const PIPES: [&str; 4] = [
    "--decryption-pipe",
    "base64 -d",
    "--encryption-pipe",
    "base64",
];

/// Writes a token file as mutt_oauth2.py would (JSON through the `base64` "encryption" pipe).
fn write_token_file(path: &Path, fields: &Value) {
    let sealed =
        base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(fields).unwrap());
    std::fs::write(path, format!("{sealed}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A token file holding `issued`, its access token valid `secs` more seconds.
fn script_file(path: &Path, registration: &str, authflow: &str, issued: &IssuedTokens, secs: i64) {
    write_token_file(
        path,
        &json!({"registration": registration, "authflow": authflow, "email": ALICE,
                "access_token": issued.access_token, "access_token_expiration": local_iso(secs),
                "refresh_token": issued.refresh_token}),
    );
}

fn read_token_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    let plain = base64::engine::general_purpose::STANDARD
        .decode(text.replace('\n', ""))
        .unwrap();
    serde_json::from_slice(&plain).unwrap()
}

/// Local naive ISO time `secs` from now, as the script writes it.
fn local_iso(secs: i64) -> String {
    let out = Command::new("date")
        .arg(format!("-d@{}", chrono_now() + secs))
        .arg("+%Y-%m-%dT%H:%M:%S.000000")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn setup(style: Style) -> (AuthServer, Env, PathBuf) {
    let server = AuthServer::start(AuthServerOptions::new(style));
    let env = Env::with_account(&server, "", "");
    let file = env.home.path().join("alice.tokens");
    (server, env, file)
}

#[test]
fn valid_token_is_printed_and_expired_one_refreshed_in_place() {
    let (server, env, file) = setup(Style::Google);
    let issued = server.issue_tokens(ALICE, "mail");
    script_file(&file, "google", "authcode", &issued, 3000);
    let f = file.to_str().unwrap();
    let out = env.run(&[f, PIPES[0], PIPES[1], PIPES[2], PIPES[3]]);
    assert!(out.status.success(), "{}", out.stderr_text());
    assert_eq!(out.stdout_text(), format!("{}\n", issued.access_token));
    assert_eq!(server.refresh_requests(), 0);

    // Two minutes left: the script would hand out a dying token; mailoauth renews it.
    let mut fields = read_token_file(&file);
    fields["access_token_expiration"] = json!(local_iso(120));
    write_token_file(&file, &fields);
    let out = env.run(&[f, "-v", PIPES[0], PIPES[1], PIPES[2], PIPES[3]]);
    assert!(out.status.success(), "{}", out.stderr_text());
    assert_eq!(server.refresh_requests(), 1);
    let token = out.stdout_text();
    assert_eq!(
        token.lines().count(),
        1,
        "only the token on stdout, notices on stderr"
    );
    assert!(
        out.stderr_text().contains("NOTICE"),
        "{}",
        out.stderr_text()
    );
    assert!(server.is_access_token_live(token.trim()));
    let after = read_token_file(&file);
    assert_eq!(after["access_token"], json!(token.trim()));
    assert_eq!(
        after["registration"],
        json!("google"),
        "the script's fields are kept"
    );
    assert_eq!(
        after["refresh_token"],
        json!(issued.refresh_token),
        "Google did not rotate it: kept"
    );
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn the_real_script_reads_what_mailoauth_wrote() {
    let script = Path::new("/usr/share/doc/mutt/examples/mutt_oauth2.py");
    assert!(
        script.exists(),
        "mutt's mutt_oauth2.py is installed with the mutt package (tests/run)"
    );
    let (server, env, file) = setup(Style::Google);
    server.set_access_lifetime(Duration::from_secs(3600));
    let issued = server.issue_tokens(ALICE, "mail");
    script_file(&file, "google", "authcode", &issued, -10);
    let out = env.run(&[
        file.to_str().unwrap(),
        PIPES[0],
        PIPES[1],
        PIPES[2],
        PIPES[3],
    ]);
    assert!(out.status.success(), "{}", out.stderr_text());
    let renewed = out.stdout_text().trim().to_string();
    // The script, with base64 pipes, prints the renewed token without any network access: it
    // parsed mailoauth's expiration time and fields.
    let patched = env.home.path().join("mutt_oauth2.py");
    let text = std::fs::read_to_string(script)
        .unwrap()
        .replace(
            "['gpg', '--encrypt', '--recipient', 'YOUR_GPG_IDENTITY']",
            "['base64']",
        )
        .replace("['gpg', '--decrypt']", "['base64', '-d']");
    std::fs::write(&patched, text).unwrap();
    let out = Command::new("python3")
        .arg(&patched)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), renewed);
}

#[test]
fn store_pipes_from_configuration_and_errors() {
    let (server, env, file) = setup(Style::Generic);
    // Pipes from the configuration's command store instead of flags.
    env.write_config(&format!(
        "{BASE64_STORE}{}",
        account_toml(&server, ALICE, "")
    ));
    let f = file.to_str().unwrap();
    let out = env.run(&[f]);
    assert_eq!(
        out.code(),
        3,
        "no file and no --authorize: {}",
        out.stderr_text()
    );
    assert!(out.stderr_text().contains("--authorize"));

    let issued = server.issue_tokens(ALICE, "mail");
    script_file(&file, "microsoft", "devicecode", &issued, 3000);
    let out = env.run(&[f, "-d"]);
    assert!(out.status.success(), "{}", out.stderr_text());
    assert!(
        !out.stderr_text().contains(&issued.access_token),
        "-d shows fingerprints only"
    );
    assert!(!out.stderr_text().contains(&issued.refresh_token));
    assert!(out.stderr_text().contains("fingerprint"));

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = env.run(&[f]);
    assert_ne!(out.code(), 0);
    assert!(out.stdout.is_empty());
    assert!(
        out.stderr_text().contains("unsafe mode"),
        "{}",
        out.stderr_text()
    );
}

#[test]
fn authorize_a_new_file_with_the_localhost_flow() {
    let (server, env, file) = setup(Style::Generic);
    let f = file.to_str().unwrap();
    let mut run = env.spawn(&[
        f,
        "--authorize",
        "--authflow",
        "localhostauthcode",
        "--provider",
        "google",
        "--email",
        ALICE,
        PIPES[0],
        PIPES[1],
        PIPES[2],
        PIPES[3],
    ]);
    let url = run.wait_for_line(|l| l.starts_with("http"), Duration::from_secs(20));
    browser::get(&browser::authorize(&url).unwrap()).unwrap();
    let out = run.finish(Duration::from_secs(20));
    assert!(out.status.success(), "{}", out.stderr_text());
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(server.is_access_token_live(&token));
    let fields = read_token_file(&file);
    assert_eq!(fields["registration"], json!("google"));
    assert_eq!(fields["authflow"], json!("localhostauthcode"));
    assert_eq!(fields["email"], json!(ALICE));
    assert_eq!(fields["access_token"], json!(token));
}

#[test]
fn import_moves_the_tokens_without_reauthorizing() {
    let (server, env, file) = setup(Style::Generic);
    env.write_config(&format!(
        "{BASE64_STORE}{}",
        account_toml(&server, ALICE, "")
    ));
    let issued = server.issue_tokens(ALICE, "mail");
    script_file(&file, "google", "authcode", &issued, 3000);
    let out = env.run(&["import", file.to_str().unwrap(), ALICE]);
    assert!(out.status.success(), "{}", out.stderr_text());
    let out = env.run(&["token", ALICE]);
    assert!(out.status.success(), "{}", out.stderr_text());
    assert_eq!(out.stdout_text().trim(), issued.access_token);
    assert_eq!(
        server.token_requests("authorization_code"),
        0,
        "no new authorization"
    );
}

/// `--test` logs in to IMAP, POP and SMTP of the real Dovecot (implicit TLS, STARTTLS) with the
/// file's token, as the script does, and says which failed when the token is refused.
#[test]
fn test_option_logs_in_to_imap_pop_and_smtp() {
    use mailoauth_harness::{Dovecot, DovecotOptions, Mechanisms};
    for mechanisms in [Mechanisms::Both, Mechanisms::XOAuth2Only] {
        let server = AuthServer::start(AuthServerOptions::default());
        let dovecot = Dovecot::start(DovecotOptions::new(&server).mechanisms(mechanisms))
            .expect("the harness Dovecot starts");
        let env = Env::new();
        let extra = format!(
            "imap = \"imaps://127.0.0.1:{}\"\npop3 = \"pop3://127.0.0.1:{}\"\nsmtp = \"smtp://127.0.0.1:{}\"\nupstream_ca = \"{}\"\n",
            dovecot.imaps_port(),
            dovecot.pop3_port(),
            dovecot.submission_port(),
            dovecot.ca_pem_path().display()
        );
        env.write_config(&account_toml(&server, ALICE, &extra));
        let file = env.home.path().join("alice.tokens");
        let issued = server.issue_tokens(ALICE, "mail");
        write_token_file(
            &file,
            &json!({"registration": "google", "authflow": "authcode", "email": ALICE,
                    "access_token": issued.access_token, "access_token_expiration": local_iso(3000),
                    "refresh_token": issued.refresh_token}),
        );
        let f = file.to_str().unwrap();
        let out = env.run(&[f, "--test", "-v", PIPES[0], PIPES[1], PIPES[2], PIPES[3]]);
        assert!(
            out.status.success(),
            "{}\n{}",
            out.stderr_text(),
            dovecot.log_tail()
        );
        assert_eq!(out.stdout_text().trim(), issued.access_token);
        let err = out.stderr_text();
        let expected = if mechanisms == Mechanisms::Both {
            "OAUTHBEARER"
        } else {
            "XOAUTH2"
        };
        for proto in ["IMAP", "POP", "SMTP"] {
            assert!(
                err.contains(&format!("{proto} authentication succeeded")),
                "{err}"
            );
        }
        assert_eq!(err.matches(expected).count(), 3, "{err}");

        // Dovecot now refuses the token: each protocol reports its failure, exit 1.
        server.revoke_access_token(&issued.access_token);
        let out = env.run(&[f, "--test", PIPES[0], PIPES[1], PIPES[2], PIPES[3]]);
        assert_eq!(out.code(), 1, "{}", out.stderr_text());
        let err = out.stderr_text();
        for proto in ["IMAP", "POP", "SMTP"] {
            assert!(
                err.contains(&format!("{proto} authentication FAILED")),
                "{err}"
            );
        }
        assert!(
            err.contains("rejected the token (status"),
            "the server's JSON status is shown: {err}"
        );
    }
}

/// A server that does not offer STARTTLS (or had it stripped) never gets the token.
#[test]
fn test_option_refuses_a_server_without_starttls() {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let fake = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] stripped\r\n")
            .unwrap();
        let mut received = String::new();
        for line in BufReader::new(s).lines() {
            match line {
                Ok(l) => received.push_str(&format!("{l}\n")),
                Err(_) => break,
            }
        }
        received
    });
    let server = AuthServer::start(AuthServerOptions::default());
    let env = Env::new();
    env.write_config(&account_toml(
        &server,
        ALICE,
        &format!("imap = \"imap://127.0.0.1:{port}\""),
    ));
    let file = env.home.path().join("alice.tokens");
    let issued = server.issue_tokens(ALICE, "mail");
    script_file(&file, "google", "authcode", &issued, 3000);
    let out = env.run(&[
        file.to_str().unwrap(),
        "--test",
        PIPES[0],
        PIPES[1],
        PIPES[2],
        PIPES[3],
    ]);
    assert_eq!(out.code(), 1, "{}", out.stderr_text());
    assert!(
        out.stderr_text().contains("does not offer STARTTLS"),
        "{}",
        out.stderr_text()
    );
    let received = fake.join().unwrap();
    assert!(
        !received.contains("AUTHENTICATE"),
        "nothing was sent in clear: {received}"
    );
}
