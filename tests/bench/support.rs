//! What the proxy benchmarks share: a `mailoauth serve` in its own HOME with one account whose
//! grant comes from the test authorization server (imported, as a user migrating from
//! mutt_oauth2.py would), a local password set, and the process stopped on drop.

#![allow(dead_code)]

use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mailoauth_harness::{AuthServer, TempDir};

pub const BIN: &str = env!("CARGO_BIN_EXE_mailoauth");
pub const USER: &str = "alice@example.test";
pub const PASSWORD: &str = "bench password";

/// A running `mailoauth serve` for the benchmarks.
pub struct BenchProxy {
    pub home: TempDir,
    pub config: PathBuf,
    pub port: u16,
    /// A valid access token of the account (from `mailoauth token`), for direct logins.
    pub token: String,
    child: Child,
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl BenchProxy {
    /// Starts the proxy with a `[proxy.PROTOCOL]` listener and USER's account, whose server for
    /// `protocol` is `upstream` (trusted through `ca`).
    pub fn start(
        server: &AuthServer,
        protocol: &str,
        upstream: &str,
        ca: &std::path::Path,
    ) -> BenchProxy {
        BenchProxy::start_with(server, protocol, upstream, ca, "", "")
    }

    /// [`BenchProxy::start`] with `proxy_keys` in the `[proxy]` table (e.g. `max_connections`)
    /// and `shell_prefix` run before the daemon in its shell (e.g. `ulimit -n 65536`).
    pub fn start_with(
        server: &AuthServer,
        protocol: &str,
        upstream: &str,
        ca: &std::path::Path,
        proxy_keys: &str,
        shell_prefix: &str,
    ) -> BenchProxy {
        let home = TempDir::new("mo-bench").unwrap();
        let h = home.path().to_path_buf();
        let port = free_port();
        let config = h.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[store]\nkind = \"plaintext\"\n[proxy]\n{proxy_keys}\n[proxy.{protocol}]\nlisten = \"127.0.0.1:{port}\"\n[accounts.\"{USER}\"]\nprovider = \"generic\"\nclient_id = \"test-client\"\nclient_secret = \"test-secret\"\ntoken_url = \"{}\"\n{protocol} = \"{upstream}\"\nupstream_ca = \"{}\"\n",
                server.token_endpoint(),
                ca.display()
            ),
        )
        .unwrap();
        let run = |args: &[&str], stdin: Option<&str>| {
            let mut child = Command::new(BIN)
                .arg("--config")
                .arg(&config)
                .args(args)
                .env("HOME", &h)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            if let Some(input) = stdin {
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(input.as_bytes())
                    .unwrap();
            }
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "mailoauth {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };
        // Seed the store with a grant (import a mutt_oauth2.py-style file), set the password.
        let issued = server.issue_tokens(USER, "mail");
        let seed = h.join("seed.json");
        std::fs::write(
            &seed,
            serde_json::json!({"registration": "google", "authflow": "authcode", "email": USER,
                "access_token": "", "access_token_expiration": "", "refresh_token": issued.refresh_token})
            .to_string(),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&seed, std::fs::Permissions::from_mode(0o600)).unwrap();
        run(
            &[
                "import",
                seed.to_str().unwrap(),
                USER,
                "--decryption-pipe",
                "cat",
            ],
            None,
        );
        run(&["passwd", USER], Some(&format!("{PASSWORD}\n")));
        let token = run(&["token", USER], None).trim().to_string();
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("{shell_prefix}\nexec \"$0\" --config \"$1\" serve",))
            .arg(BIN)
            .arg(&config)
            .env("HOME", &h)
            .env("MAILOAUTH_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            std::thread::sleep(Duration::from_millis(20));
        }
        BenchProxy {
            home,
            config,
            port,
            token,
            child,
        }
    }

    /// The daemon's resident memory, in KiB (Linux: VmRSS).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the proxy runs");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }
}

impl Drop for BenchProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
