//! Shared pieces of the end-to-end tests: an isolated home for each test (its own XDG
//! directories and configuration), running the real `mailoauth` binary, following its stderr,
//! and playing the browser in the authorization flows.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use mailoauth_harness::{AuthServer, TempDir, browser};

/// The binary under test, built by cargo for this test target.
pub const BIN: &str = env!("CARGO_BIN_EXE_mailoauth");

/// The user the test authorization server approves by default.
pub const ALICE: &str = "alice@example.test";

/// `[store]` used by most tests: a real command sealer (base64 is a real transformation, so a
/// store that forgot to seal would fail the tests that look at the file).
pub const BASE64_STORE: &str =
    "[store]\nkind = \"command\"\nencrypt = [\"base64\"]\ndecrypt = [\"base64\", \"-d\"]\n";

/// An isolated user environment: HOME, XDG directories and a config file.
pub struct Env {
    pub home: TempDir,
    pub config: PathBuf,
    /// Extra environment variables for every `mailoauth` run (a D-Bus session, GNUPGHOME…).
    pub vars: std::cell::RefCell<Vec<(String, std::ffi::OsString)>>,
}

impl Env {
    pub fn new() -> Env {
        let home = TempDir::new("mo-e2e").expect("temp dir");
        let config = home.path().join(".config/mailoauth/config.toml");
        std::fs::create_dir_all(config.parent().unwrap()).unwrap();
        Env {
            home,
            config,
            vars: Default::default(),
        }
    }

    /// Adds a variable to every later run.
    pub fn set_var(&self, key: &str, value: impl Into<std::ffi::OsString>) {
        self.vars.borrow_mut().push((key.to_string(), value.into()));
    }

    /// An environment whose config has `store` and one generic account pointing at `server`.
    pub fn with_account(server: &AuthServer, store: &str, extra: &str) -> Env {
        let env = Env::new();
        env.write_config(&format!("{store}\n{}", account_toml(server, ALICE, extra)));
        env
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(&self.config, text).unwrap();
    }

    pub fn state_dir(&self) -> PathBuf {
        self.home.path().join(".local/state/mailoauth")
    }

    /// The store directory (default layout).
    pub fn tokens_dir(&self) -> PathBuf {
        self.state_dir().join("tokens")
    }

    /// `mailoauth` with a clean environment: only this HOME, PATH, and what the test adds.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("HOME", self.home.path())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null());
        for (k, v) in self.vars.borrow().iter() {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs `mailoauth ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run mailoauth")
    }

    /// Starts `mailoauth ARGS` with stderr followed line by line.
    pub fn spawn(&self, args: &[&str]) -> Running {
        Running::start(self.cmd().args(args))
    }

    /// Authorizes the default account through the loopback flow, playing the browser.
    pub fn authorize_loopback(&self, account: &str) {
        let mut run = self.spawn(&["authorize", account, "--flow", "loopback", "--no-browser"]);
        let url = run.wait_for_line(|l| l.starts_with("http"), Duration::from_secs(20));
        let location = browser::authorize(&url).expect("authorization server redirects");
        let page = browser::get(&location).expect("loopback listener answers");
        assert_eq!(page.status, 200, "{}", page.text());
        let out = run.finish(Duration::from_secs(20));
        assert!(
            out.status.success(),
            "authorize failed: {}",
            out.stderr_text()
        );
    }
}

/// The `[accounts."…"]` table of a generic account using `server`'s endpoints.
pub fn account_toml(server: &AuthServer, name: &str, extra: &str) -> String {
    format!(
        "[accounts.\"{name}\"]\nprovider = \"generic\"\nclient_id = \"test-client\"\nclient_secret = \"test-secret\"\nauthorize_url = \"{}\"\ntoken_url = \"{}\"\ndevice_url = \"{}\"\nscopes = [\"mail\", \"offline_access\"]\n{extra}\n",
        server.authorization_endpoint(),
        server.token_endpoint(),
        server.device_authorization_endpoint(),
    )
}

/// A finished run.
pub struct Finished {
    pub status: std::process::ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<String>,
}

impl Finished {
    pub fn stderr_text(&self) -> String {
        self.stderr.join("\n")
    }
}

pub trait OutputExt {
    fn stdout_text(&self) -> String;
    fn stderr_text(&self) -> String;
    fn code(&self) -> i32;
}

impl OutputExt for Output {
    fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }
}

/// A running `mailoauth` whose stderr lines arrive on a channel.
pub struct Running {
    pub child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    pub fn start(cmd: &mut Command) -> Running {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mailoauth");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Waits for a stderr line matching `pred` and returns it (panics with what was seen).
    pub fn wait_for_line(&mut self, pred: impl Fn(&str) -> bool, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.child.kill();
                    panic!("no matching stderr line; saw:\n{}", self.seen.join("\n"));
                }
            }
        }
    }

    /// Writes a line to the child's stdin.
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin is piped");
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for the process to exit (killing it after `timeout`) and collects its output.
    pub fn finish(mut self, timeout: Duration) -> Finished {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "mailoauth did not exit in time; stderr so far:\n{}",
                    self.seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stdout = Vec::new();
        if let Some(mut out) = self.child.stdout.take() {
            use std::io::Read;
            let _ = out.read_to_end(&mut stdout);
        }
        let mut stderr = self.seen;
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
            stderr.push(line);
        }
        Finished {
            status,
            stdout,
            stderr,
        }
    }
}

/// Reads a record file's (sealed) bytes.
pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// A child process killed and reaped on drop, so a failing test leaves no daemon holding its
/// pipes.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
