//! The keyring sealer against a real Secret Service: a private D-Bus session bus with
//! gnome-keyring-daemon, unlocked with a test password, started for the test.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mailoauth_harness::{AuthServer, AuthServerOptions, TempDir};

use crate::common::*;

/// A session bus and an unlocked gnome-keyring, both stopped on drop.
struct SecretService {
    dir: TempDir,
    bus: Child,
    keyring: Child,
}

impl SecretService {
    fn start() -> SecretService {
        let dir = TempDir::new("mo-ss").unwrap();
        let run = dir.path().join("run");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
        let socket = run.join("bus");
        // A session bus without service directories: nothing is auto-started on it. (With the
        // system's session config, an early call for org.freedesktop.secrets would start a
        // second, locked gnome-keyring that takes the name first — seen on loaded machines.)
        let bus_config = dir.path().join("bus.conf");
        std::fs::write(
            &bus_config,
            format!(
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\" \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n\
                 <busconfig><type>session</type><listen>unix:path={}</listen><auth>EXTERNAL</auth>\
                 <policy context=\"default\"><allow send_destination=\"*\" eavesdrop=\"true\"/><allow eavesdrop=\"true\"/><allow own=\"*\"/></policy></busconfig>\n",
                socket.display()
            ),
        )
        .unwrap();
        let bus = Command::new("dbus-daemon")
            .args(["--nofork", "--nopidfile"])
            .arg(format!("--config-file={}", bus_config.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon is installed (tests/run installs dbus-daemon)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "the session bus did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut keyring = Command::new("gnome-keyring-daemon")
            .args(["--foreground", "--unlock", "--components=secrets"])
            .envs(Self::vars_for(dir.path()))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("keyring.log")).unwrap())
            .spawn()
            .expect("gnome-keyring-daemon is installed (tests/run installs gnome-keyring)");
        // The login keyring's password, then EOF: the daemon creates and unlocks it.
        let mut stdin = keyring.stdin.take().unwrap();
        stdin.write_all(b"test-keyring-password").unwrap();
        drop(stdin);
        let service = SecretService { dir, bus, keyring };
        // Ready when the Secret Service has a default collection (the unlocked login keyring).
        // Generous: on a loaded CI machine the daemon can take seconds to start.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut service = service;
        loop {
            if let Ok(Some(status)) = service.keyring.try_wait() {
                let log = std::fs::read_to_string(service.dir.path().join("keyring.log"))
                    .unwrap_or_default();
                panic!("gnome-keyring-daemon exited ({status}) before it was ready:\n{log}");
            }
            let alias = Command::new("dbus-send")
                .envs(Self::vars_for(service.dir.path()))
                .args([
                    "--session",
                    "--print-reply",
                    "--dest=org.freedesktop.secrets",
                    "/org/freedesktop/secrets",
                    "org.freedesktop.Secret.Service.ReadAlias",
                    "string:default",
                ])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("/collection/"))
                .unwrap_or(false);
            if alias {
                break;
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(service.dir.path().join("keyring.log"))
                    .unwrap_or_default();
                panic!("gnome-keyring did not come up on the bus within 60 s:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        service
    }

    fn vars_for(dir: &std::path::Path) -> Vec<(String, std::ffi::OsString)> {
        vec![
            (
                "DBUS_SESSION_BUS_ADDRESS".into(),
                format!("unix:path={}", dir.join("run/bus").display()).into(),
            ),
            ("XDG_RUNTIME_DIR".into(), dir.join("run").into()),
            ("XDG_DATA_HOME".into(), dir.join("data").into()),
        ]
    }

    fn vars(&self) -> Vec<(String, std::ffi::OsString)> {
        Self::vars_for(self.dir.path())
    }

    fn secret_tool(&self, args: &[&str]) -> std::process::Output {
        Command::new("secret-tool")
            .envs(self.vars())
            .args(args)
            .output()
            .expect("secret-tool is installed (libsecret-tools)")
    }
}

impl Drop for SecretService {
    fn drop(&mut self) {
        let _ = self.keyring.kill();
        let _ = self.keyring.wait();
        let _ = self.bus.kill();
        let _ = self.bus.wait();
    }
}

#[test]
fn keyring_is_the_default_sealer_and_holds_only_the_key() {
    let secrets = SecretService::start();
    let server = AuthServer::start(AuthServerOptions::default());
    // No [store] table: the keyring is the default.
    let env = Env::with_account(&server, "", "");
    for (k, v) in secrets.vars() {
        env.set_var(&k, v);
    }
    env.authorize_loopback(ALICE);
    let out = env.run(&["token", ALICE]);
    assert!(out.status.success(), "{}", out.stderr_text());
    let token = out.stdout_text().trim().to_string();
    assert!(server.is_access_token_live(&token));

    // The record is an age file on disk; the keyring holds the age identity.
    let record = read(&env.tokens_dir().join(format!("{ALICE}.age")));
    assert!(record.starts_with(b"age-encryption.org/v1"), "an age file");
    assert!(!String::from_utf8_lossy(&record).contains(&token));
    let key = secrets.secret_tool(&[
        "lookup",
        "service",
        "mailoauth",
        "username",
        "token-store-key",
    ]);
    assert!(
        String::from_utf8_lossy(&key.stdout).starts_with("AGE-SECRET-KEY-1"),
        "the key lives in the keyring"
    );

    // A keyring that lost the key: a plain explanation, nothing on stdout.
    let cleared = secrets.secret_tool(&[
        "clear",
        "service",
        "mailoauth",
        "username",
        "token-store-key",
    ]);
    assert!(cleared.status.success());
    let out = env.run(&["token", ALICE]);
    assert_ne!(out.code(), 0);
    assert!(out.stdout.is_empty());
    assert!(
        out.stderr_text().contains("keyring has no mailoauth key"),
        "{}",
        out.stderr_text()
    );
}

#[test]
fn token_comes_from_the_daemon_where_the_keyring_is_out_of_reach() {
    // The daemon runs in the desktop session (it reaches the keyring); `mailoauth token` runs
    // where there is no session bus (cron, an ssh shell): it gets the token from the daemon.
    let secrets = SecretService::start();
    let server = AuthServer::start(AuthServerOptions::default());
    let port = crate::proxy::free_port();
    let env = Env::new();
    env.write_config(&format!(
        "[proxy.imap]\nlisten = \"127.0.0.1:{port}\"\n\n{}",
        account_toml(&server, ALICE, "imap = \"imaps://127.0.0.1:1\"")
    ));
    for (k, v) in secrets.vars() {
        env.set_var(&k, v);
    }
    env.authorize_loopback(ALICE);
    let without_bus = || {
        let mut cmd = env.cmd();
        // (Removing the variable is not enough: D-Bus falls back to $XDG_RUNTIME_DIR/bus.)
        cmd.env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")
            .args(["token", ALICE]);
        cmd.output().unwrap()
    };
    let out = without_bus();
    assert_ne!(out.code(), 0, "no daemon and no keyring: no token");
    assert!(out.stdout.is_empty());

    let _daemon = KillOnDrop(
        env.cmd()
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let socket = secrets.dir.path().join("run/mailoauth/control.sock");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !socket.exists() {
        assert!(
            Instant::now() < deadline,
            "the daemon never made its socket"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = without_bus();
    assert!(out.status.success(), "{}", out.stderr_text());
    assert!(server.is_access_token_live(out.stdout_text().trim()));
}
