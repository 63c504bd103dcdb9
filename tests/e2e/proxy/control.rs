//! The daemon's control socket and operations end to end: `mailoauth token`, `status` and
//! `authorize` through a running `mailoauth serve` (a password-sealed store only the daemon can
//! open; re-authorizing a revoked account without a restart, with the notify command firing),
//! reload while a FETCH is in flight, and a control connection from another uid.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::Duration;

use mailoauth_harness::{AuthServer, AuthServerOptions, Dovecot, Mechanisms, TempDir};

use super::*;

const T: Duration = Duration::from_secs(30);

fn dovecot(server: &AuthServer) -> Dovecot {
    super::dovecot(server, Mechanisms::Both)
}

fn ok(line: &str, tag: &str) {
    assert_ok(line, tag)
}

#[test]
fn token_and_status_come_from_the_daemon_which_alone_can_open_a_password_store() {
    let server = AuthServer::start(AuthServerOptions::default());
    let d = dovecot(&server);
    let (env, port) = Proxy::configure(
        &server,
        &imaps(&d),
        Some(d.ca_pem_path()),
        Local::Plain,
        "",
        "[store]\nkind = \"password\"\n",
    );
    set_password(&env, &format!("{LOCAL_PASSWORD}\n"));
    let mut run = env.spawn(&["authorize", ALICE, "--no-browser"]);
    run.send_line(LOCAL_PASSWORD);
    let url = run.wait_for_line(|l| l.starts_with("http"), T);
    mailoauth_harness::browser::get(&mailoauth_harness::browser::authorize(&url).unwrap()).unwrap();
    let out = run.finish(T);
    assert!(out.status.success(), "{}", out.stderr_text());
    // Without a daemon: locked, and status reads the state file (no record unsealed).
    assert!(!env.run(&["token", ALICE]).status.success());
    let out = env.run(&["status"]);
    assert_eq!(out.code(), 0, "{}", out.stderr_text());
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(text.contains("daemon: not running"), "{text}");
    assert!(
        text.contains(&format!("{ALICE} (generic): authorized")),
        "{text}"
    );
    assert!(text.contains("access token: valid for"), "{text}");

    let proxy = Proxy::launch(env, port, Local::Plain);
    let run_dir = proxy.env.state_dir().join("run");
    let socket = run_dir.join("control.sock");
    assert_eq!(
        std::fs::metadata(&run_dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let meta = std::fs::metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    // The daemon has not seen the local password yet: it says so.
    let out = proxy.env.run(&["token", ALICE]);
    assert_ne!(out.code(), 0);
    assert!(out.stdout.is_empty());
    assert!(
        out.stderr_text().contains("locked"),
        "{}",
        out.stderr_text()
    );
    // One login through the proxy unlocks the tokens in the daemon; now `token` works from
    // anywhere this user runs it (mutt's refresh command), in parallel.
    ok(&login(&mut proxy.client(), LOCAL_PASSWORD), "a1");
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let cmd = proxy.env.cmd();
            std::thread::spawn(move || {
                let mut cmd = cmd;
                cmd.args(["token", ALICE]).output().unwrap()
            })
        })
        .collect();
    let tokens: Vec<String> = handles
        .into_iter()
        .map(|h| {
            let out = h.join().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        })
        .collect();
    assert!(tokens[0].ends_with('\n') && tokens[0].trim().len() > 10);
    assert!(tokens.iter().all(|t| t == &tokens[0]), "one token for all");
    // The daemon's token is one Dovecot takes.
    let mut direct =
        mailoauth_harness::LineClient::connect_tls(d.imaps_port(), d.ca_pem_path()).unwrap();
    direct.read_line().unwrap();
    direct
        .send_line(&format!(
            "d1 AUTHENTICATE XOAUTH2 {}",
            mailoauth_harness::lineclient::xoauth2(ALICE, tokens[0].trim())
        ))
        .unwrap();
    ok(direct.read_tagged("d1").unwrap().last().unwrap(), "d1");

    // Status through the daemon adds the last login per protocol.
    let out = proxy.env.run(&["status", "--json"]);
    assert_eq!(out.code(), 0, "{}", out.stderr_text());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["daemon"], true);
    let alice = &json["accounts"][0];
    assert_eq!(alice["account"], ALICE);
    assert_eq!(alice["authorized"], true);
    assert!(
        alice["last_login"]["IMAP"].as_i64().unwrap() > 1_700_000_000,
        "{alice}"
    );
    assert!(alice["access_expires_at"].as_i64().is_some(), "{alice}");
    let text = String::from_utf8(proxy.env.run(&["status"]).stdout).unwrap();
    assert!(
        text.contains("daemon: running") && text.contains("last login: IMAP"),
        "{text}"
    );
    assert!(!text.contains(tokens[0].trim()) && !proxy.log().contains(tokens[0].trim()));
}

#[test]
fn token_comes_from_the_daemon_for_its_own_configuration_only() {
    let server = AuthServer::start(AuthServerOptions::default());
    let d = dovecot(&server);
    let proxy = Proxy::start(&server, &imaps(&d), Some(d.ca_pem_path()), Local::Plain, "");
    ok(&login(&mut proxy.client(), LOCAL_PASSWORD), "a1");
    // The command-sealed record goes away on disk: only the daemon (which holds the token)
    // can still answer, so a success proves the token came through the socket.
    let record = proxy.env.tokens_dir().join(format!("{ALICE}.sealed"));
    std::fs::remove_file(&record).expect("the command store's record");
    let out = proxy.env.run(&["token", ALICE]);
    assert!(out.status.success(), "{}", out.stderr_text());
    let out = proxy.env.run(&["token", ALICE, "--format", "xoauth2"]);
    assert!(out.status.success(), "{}", out.stderr_text());
    // A shell with another XDG_RUNTIME_DIR (the daemon has none here) still finds the daemon.
    let elsewhere = proxy.env.home.path().join("other-runtime");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let out = proxy
        .env
        .cmd()
        .env("XDG_RUNTIME_DIR", &elsewhere)
        .args(["token", ALICE])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Another configuration file (a copy): the daemon says it is not its own, and the command
    // goes to the store itself, where there is nothing now.
    let copy = proxy.env.home.path().join("copy.toml");
    std::fs::copy(&proxy.env.config, &copy).unwrap();
    let out = proxy
        .env
        .run(&["--config", copy.to_str().unwrap(), "token", ALICE]);
    assert_eq!(out.code(), 3, "{}", out.stderr_text());
    assert!(out.stdout.is_empty());
}

#[test]
fn a_revoked_account_is_reauthorized_through_the_daemon_without_a_restart() {
    let server = AuthServer::start(AuthServerOptions {
        device_interval: Duration::from_secs(1),
        ..Default::default()
    });
    let d = dovecot(&server);
    let notes = TempFile::new();
    let notify = format!(
        "notify_command = \"sh -c 'echo \\\"$0|$1\\\" >> {}'\"\n",
        notes.0.display()
    );
    let proxy = Proxy::start_edited(
        &server,
        &imaps(&d),
        Some(d.ca_pem_path()),
        Local::Plain,
        "",
        |c| format!("{notify}{c}"),
    );
    let pid = proxy.pid();
    ok(&login(&mut proxy.client(), LOCAL_PASSWORD), "a1");

    // The grant is revoked at the provider and the token dies: the client is told to
    // re-authorize, and the notify command fires (once).
    server.revoke_user(ALICE);
    server.expire_access_tokens();
    let no = login(&mut proxy.client(), LOCAL_PASSWORD);
    assert!(no.starts_with("a1 NO [AUTHORIZATIONFAILED]"), "{no}");
    assert!(no.contains("authorize"), "{no}");
    let _ = login(&mut proxy.client(), LOCAL_PASSWORD);
    let deadline = std::time::Instant::now() + T;
    let fired = loop {
        let text = std::fs::read_to_string(&notes.0).unwrap_or_default();
        if !text.is_empty() || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(fired.starts_with(&format!("{ALICE}|")), "{fired:?}");
    assert!(fired.contains("authorize"), "{fired:?}");
    assert_eq!(fired.lines().count(), 1, "notified once: {fired:?}");
    assert_eq!(
        proxy.env.run(&["status"]).code(),
        3,
        "status says it needs authorizing"
    );

    // From "another terminal" (an ssh session): the device flow runs inside the daemon; this
    // terminal shows the code, the test approves it.
    let mut run = proxy.env.spawn(&["authorize", ALICE, "--flow", "device"]);
    run.wait_for_line(|l| l.contains("running mailoauth serve"), T);
    let code = run
        .wait_for_line(|l| l.starts_with("    "), T)
        .trim()
        .to_string();
    std::thread::sleep(Duration::from_millis(1200));
    assert!(server.approve_device(&code, ALICE), "{code}");
    let out = run.finish(T);
    assert!(out.status.success(), "{}", out.stderr_text());
    assert!(
        out.stderr_text().contains("no restart"),
        "{}",
        out.stderr_text()
    );

    // The same daemon, the same client login: it works again.
    assert_eq!(proxy.pid(), pid);
    ok(&login(&mut proxy.client(), LOCAL_PASSWORD), "a1");
    assert_eq!(proxy.env.run(&["status"]).code(), 0);
}

#[test]
fn without_a_notify_command_a_desktop_session_gets_a_desktop_notification() {
    let server = AuthServer::start(AuthServerOptions::default());
    let d = dovecot(&server);
    let (env, port) = Proxy::configure(
        &server,
        &imaps(&d),
        Some(d.ca_pem_path()),
        Local::Plain,
        "",
        BASE64_STORE,
    );
    // A desktop session (a session bus address) with a stand-in notify-send on PATH.
    let bin = env.home.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let calls = env.home.path().join("notify-send.calls");
    let fake = bin.join("notify-send");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\nprintf '%s\\n' \"$@\" >> {}\n", calls.display()),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    env.set_var("PATH", path);
    env.set_var("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus");
    env.authorize_loopback(ALICE);
    set_password(&env, &format!("{LOCAL_PASSWORD}\n"));
    let proxy = Proxy::launch(env, port, Local::Plain);
    server.revoke_user(ALICE);
    server.expire_access_tokens();
    let no = login(&mut proxy.client(), LOCAL_PASSWORD);
    assert!(no.starts_with("a1 NO [AUTHORIZATIONFAILED]"), "{no}");
    let deadline = std::time::Instant::now() + T;
    let text = loop {
        let text = std::fs::read_to_string(&calls).unwrap_or_default();
        if text.lines().count() >= 3 || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let args: Vec<&str> = text.lines().collect();
    assert_eq!(args[0], "--app-name=mailoauth", "{text}");
    assert_eq!(args[1], format!("mailoauth: {ALICE}"), "{text}");
    assert!(args[2].contains("authorize"), "{text}");
}

#[test]
fn reload_keeps_a_fetch_in_flight_rebinds_the_listener_and_refuses_a_bad_file() {
    let server = AuthServer::start(AuthServerOptions::default());
    let d = dovecot(&server);
    let proxy = Proxy::start(&server, &imaps(&d), Some(d.ca_pem_path()), Local::Plain, "");
    let mut c = proxy.client();
    ok(&login(&mut c, LOCAL_PASSWORD), "a1");
    c.send_line("a2 SELECT INBOX").unwrap();
    ok(c.read_tagged("a2").unwrap().last().unwrap(), "a2");
    let mut message = b"From: bob@example.test\r\nSubject: big\r\n\r\n".to_vec();
    let mut i = 0u32;
    while message.len() < 12 << 20 {
        message.extend_from_slice(format!("{i:08} {}\r\n", "\u{e9}".repeat(30)).as_bytes());
        i += 1;
    }
    append(&mut c, "a3", &message);
    let size = start_fetch(&mut c, "a4", 1);
    let first = c.read_exact(1000).unwrap();

    // Mid-FETCH (the client has read 1000 of 12 MB; the rest waits in buffers): the listener
    // moves to another port, by `mailoauth reload`.
    let old_port = proxy.port;
    let new_port = free_port();
    let config = std::fs::read_to_string(&proxy.env.config).unwrap();
    proxy.env.write_config(&config.replace(
        &format!("127.0.0.1:{old_port}"),
        &format!("127.0.0.1:{new_port}"),
    ));
    let out = proxy.env.run(&["reload"]);
    assert_eq!(out.code(), 0, "{}", out.stderr_text());
    assert!(
        out.stderr_text().contains("1 closed, 1 bound"),
        "{}",
        out.stderr_text()
    );
    let mut fetched = first;
    fetched.extend(c.read_exact(size - 1000).unwrap());
    assert!(
        fetched == message,
        "the FETCH in flight completed byte-identical"
    );
    ok(c.read_tagged("a4").unwrap().last().unwrap(), "a4");
    c.send_line("a5 NOOP").unwrap();
    ok(c.read_tagged("a5").unwrap().last().unwrap(), "a5");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", old_port)).is_err(),
        "old port closed"
    );
    let mut fresh = mailoauth_harness::LineClient::connect_plain(new_port).unwrap();
    fresh.read_line().unwrap();
    ok(&login(&mut fresh, LOCAL_PASSWORD), "a1");

    // A broken file is refused with its reason; the running configuration stays.
    let good = std::fs::read_to_string(&proxy.env.config).unwrap();
    proxy.env.write_config(&format!("{good}\nnot_a_key = 1\n"));
    let out = proxy.env.run(&["reload"]);
    assert_eq!(out.code(), 5, "{}", out.stderr_text());
    assert!(
        out.stderr_text().contains("not_a_key"),
        "{}",
        out.stderr_text()
    );
    assert!(
        out.stderr_text().contains("stays in force"),
        "{}",
        out.stderr_text()
    );
    // SIGHUP does the same, with the reason in the log.
    proxy.signal("HUP");
    proxy.wait_for_log("reload failed");
    let mut again = mailoauth_harness::LineClient::connect_plain(new_port).unwrap();
    again.read_line().unwrap();
    ok(&login(&mut again, LOCAL_PASSWORD), "a1");
}

#[test]
fn a_control_connection_from_another_uid_is_refused() {
    // The daemon runs as the unprivileged test user; root (this test) can open its socket file
    // despite 0600, so only the uid check stands between them.
    let uid = match std::process::Command::new("id")
        .args(["-u", "mailoauth-test"])
        .output()
    {
        Ok(out) if out.status.success() => {
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        }
        _ => panic!(
            "the user mailoauth-test is missing: tests/run creates it (useradd --system mailoauth-test)"
        ),
    };
    let server = AuthServer::start(AuthServerOptions::default());
    let home = TempDir::new("mo-uid").unwrap();
    let port = free_port();
    let config = home.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nkind = \"plaintext\"\n[proxy.imap]\nlisten = \"127.0.0.1:{port}\"\n\n{}",
            account_toml(&server, ALICE, "imap = \"imaps://127.0.0.1:1\"")
        ),
    )
    .unwrap();
    // Its own copy of the binary: the build directory may not be open to other users.
    let bin = home.path().join("mailoauth");
    std::fs::copy(BIN, &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::process::Command::new("chown")
        .args(["-R", &uid, home.path().to_str().unwrap()])
        .status()
        .unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let daemon = std::process::Command::new("setpriv")
        .args(["--reuid", &uid, "--regid", &uid, "--clear-groups", "--"])
        .arg(&bin)
        .args(["--config", config.to_str().unwrap(), "serve"])
        .env_clear()
        .env("HOME", home.path())
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed even when an assertion fails (a stray daemon would hold the test's pipes).
    let _daemon = KillOnDrop(daemon);
    let socket = home.path().join(".local/state/mailoauth/run/control.sock");
    let deadline = std::time::Instant::now() + T;
    while !socket.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon never made its socket"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    use std::io::{BufRead, Write};
    let mut s = std::os::unix::net::UnixStream::connect(&socket).expect("root can connect");
    // The refusal may come before the request is written (then the write fails): fine.
    let _ = s.write_all(b"{\"op\":\"status\"}\n");
    let mut line = String::new();
    std::io::BufReader::new(&s).read_line(&mut line).unwrap();
    assert!(line.contains("\"kind\":\"error\""), "{line}");
    assert!(line.contains("another user"), "{line}");
    assert!(
        !line.contains(ALICE),
        "nothing about the accounts leaks: {line}"
    );
}

/// A path in a fresh temporary directory, removed on drop.
struct TempFile(std::path::PathBuf, #[allow(dead_code)] TempDir);

impl TempFile {
    fn new() -> TempFile {
        let dir = TempDir::new("mo-notes").unwrap();
        TempFile(dir.path().join("notes"), dir)
    }
}
