//! The token store under stress: kill -9 in the middle of a record write, and the command sealer
//! with a real gpg (a key generated for the test).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use mailoauth_harness::{AuthServer, AuthServerOptions, Style, TempDir};

use crate::common::*;

fn temp_files(dir: &std::path::Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().contains(".tmp-"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn kill_during_a_store_write_leaves_the_old_or_the_new_record() {
    // Google style: no rotation, so the old record stays valid at the provider after the kill.
    let server = AuthServer::start(AuthServerOptions::new(Style::Google));
    server.set_access_lifetime(Duration::from_secs(60));
    let env = Env::with_account(&server, BASE64_STORE, "");
    env.authorize_loopback(ALICE);
    let record = env.tokens_dir().join(format!("{ALICE}.sealed"));
    let original = read(&record);
    let mut before = original.clone();

    for round in 0..3 {
        // The test hook makes the write dribble out 16 bytes every 20 ms; kill while it does.
        let mut child = env
            .cmd()
            .args(["token", ALICE])
            .env("MAILOAUTH_TEST_SLOW_WRITE_MS", "20")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while temp_files(&env.tokens_dir()).is_empty() {
            assert!(Instant::now() < deadline, "no write started");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(30 * (round + 1)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert!(
            !temp_files(&env.tokens_dir()).is_empty(),
            "the kill landed mid-write (round {round})"
        );
        assert_eq!(
            read(&record),
            before,
            "the record is untouched by the interrupted write"
        );
        let out = env.run(&["token", ALICE]);
        assert!(
            out.status.success(),
            "the old record still works: {}",
            out.stderr_text()
        );
        before = read(&record);
    }
    // The successful runs above replaced the record and cleaned the killed writers' temp files.
    assert_ne!(read(&record), original);
    assert!(
        temp_files(&env.tokens_dir()).is_empty(),
        "stale temp files are removed on the next write"
    );
}

/// A throw-away GnuPG home with one passphrase-less key.
struct Gpg {
    home: TempDir,
}

impl Gpg {
    fn new() -> Gpg {
        let home = TempDir::new("mo-gpg").unwrap();
        let out = Command::new("gpg")
            .env("GNUPGHOME", home.path())
            .args([
                "--batch",
                "--passphrase",
                "",
                "--quick-gen-key",
                "mailoauth test <gpg@example.test>",
                "default",
                "default",
                "never",
            ])
            .output()
            .expect("gpg is installed (tests/run installs gnupg)");
        assert!(
            out.status.success(),
            "gpg key generation: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Gpg { home }
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "all"])
            .status();
    }
}

#[test]
fn command_sealer_with_real_gpg() {
    let gpg = Gpg::new();
    let server = AuthServer::start(AuthServerOptions::default());
    let store = "[store]\nkind = \"command\"\nencrypt = [\"gpg\", \"--batch\", \"--yes\", \"--trust-model\", \"always\", \"--encrypt\", \"--recipient\", \"gpg@example.test\"]\ndecrypt = [\"gpg\", \"--batch\", \"--decrypt\"]\n";
    let env = Env::with_account(&server, store, "");
    let with_gpg = |args: &[&str]| {
        env.cmd()
            .args(args)
            .env("GNUPGHOME", gpg.home.path())
            .output()
            .unwrap()
    };

    let mut run = Running::start(
        env.cmd()
            .args(["authorize", ALICE, "--no-browser"])
            .env("GNUPGHOME", gpg.home.path()),
    );
    let url = run.wait_for_line(|l| l.starts_with("http"), Duration::from_secs(20));
    mailoauth_harness::browser::get(&mailoauth_harness::browser::authorize(&url).unwrap()).unwrap();
    let out = run.finish(Duration::from_secs(30));
    assert!(out.status.success(), "{}", out.stderr_text());

    let token = with_gpg(&["token", ALICE]);
    assert!(token.status.success(), "{}", token.stderr_text());
    let token = token.stdout_text().trim().to_string();
    let record = env.tokens_dir().join(format!("{ALICE}.sealed"));
    let sealed = read(&record);
    assert!(
        !String::from_utf8_lossy(&sealed).contains(&token),
        "the record is encrypted"
    );
    let decrypted = Command::new("gpg")
        .env("GNUPGHOME", gpg.home.path())
        .args(["--batch", "--decrypt"])
        .arg(&record)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&decrypted.stdout).contains(&token),
        "gpg itself can recover the record"
    );

    // Without the key, decryption fails with gpg's reason and a hint, and nothing on stdout.
    let empty = TempDir::new("mo-gpg-none").unwrap();
    let out = env
        .cmd()
        .args(["token", ALICE])
        .env("GNUPGHOME", empty.path())
        .output()
        .unwrap();
    assert_ne!(out.code(), 0);
    assert!(out.stdout.is_empty());
    assert!(
        out.stderr_text().contains("decrypt command"),
        "{}",
        out.stderr_text()
    );
    let _ = Command::new("gpgconf")
        .env("GNUPGHOME", empty.path())
        .args(["--kill", "all"])
        .status();
}
