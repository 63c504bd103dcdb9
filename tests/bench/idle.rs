//! Benchmark: what an idle, logged-in IMAP session costs the proxy. N clients log in with the
//! local password and then sit still (as IDLE-ing mail clients do); the proxy's resident memory
//! is read before and after. Goal (DESIGN/baseline): ≥ 10,000 idle sessions at ≤ 40 KiB each
//! (email-oauth2-proxy: ~940 KiB each, and it fails past 508 sessions).
//!
//! The upstream is the harness's scripted Gmail-style IMAP server (implicit TLS), in a process of
//! its own: a real Dovecot would need 10,000 processes. Each proxied session holds its client socket, a TLS
//! session upstream and its task; the splice holds no copy buffer while idle.
//!
//! Run: `cargo bench -p mailoauth --bench idle` (MAILOAUTH_BENCH_SESSIONS=N, default 10000, or
//! fewer where the file-descriptor hard limit does not allow 2 N per process).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use mailoauth_harness::{AuthServer, AuthServerOptions, FakeImap, FakeImapOptions, FakeTls};

use support::{BenchProxy, PASSWORD, USER};

/// A logged-in client connection, kept open.
struct Session {
    reader: BufReader<TcpStream>,
}

impl Session {
    fn login(port: u16) -> Session {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the proxy");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut s = Session {
            reader: BufReader::with_capacity(512, stream),
        };
        s.line();
        s.command(&format!("a LOGIN {USER} \"{PASSWORD}\""));
        s
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .expect("read from the proxy");
        assert!(!line.is_empty(), "the proxy closed the session");
        line
    }

    /// Sends `a …` and reads to the tagged answer, which must be OK.
    fn command(&mut self, command: &str) {
        self.reader
            .get_mut()
            .write_all(format!("{command}\r\n").as_bytes())
            .unwrap();
        loop {
            let line = self.line();
            if line.starts_with("a ") {
                assert!(line.starts_with("a OK"), "{command}: {line}");
                return;
            }
        }
    }
}

/// The fake IMAP server in a process of its own (this binary, run with
/// MAILOAUTH_BENCH_FAKE=1), so that its sockets count against its own descriptor limit.
struct FakeProcess {
    child: std::process::Child,
    port: u16,
    ca: std::path::PathBuf,
}

impl FakeProcess {
    fn start(limit: &str) -> FakeProcess {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .env("MAILOAUTH_BENCH_FAKE", limit)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let (port, ca) = line.trim().split_once(' ').expect("port and CA path");
        FakeProcess {
            port: port.parse().unwrap(),
            ca: ca.into(),
            child,
        }
    }
}

impl Drop for FakeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Raises this process's soft descriptor limit to `limit`.
fn raise_limit(limit: &str) {
    let raised = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &std::process::id().to_string(),
            &format!("--nofile={limit}:{limit}"),
        ])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        raised,
        "cannot raise the file-descriptor soft limit to {limit}"
    );
}

/// The child's side: serve until stdin closes.
fn serve_fake(limit: &str) {
    raise_limit(limit);
    let fake = FakeImap::start(FakeImapOptions {
        idle_timeout: Duration::from_secs(3600),
        ..FakeImapOptions::gmail(FakeTls::Implicit)
    });
    println!("{} {}", fake.port(), fake.ca_pem_path().display());
    let mut rest = String::new();
    let _ = std::io::stdin().read_line(&mut rest);
}

fn main() {
    if let Ok(limit) = std::env::var("MAILOAUTH_BENCH_FAKE") {
        return serve_fake(&limit);
    }
    // Sockets: N clients here, 2 N in the fake server's process, 2 N in the proxy; each
    // process may have as many as its hard limit allows (raising the soft limit to it needs no
    // privilege). A machine whose hard limit is lower than 2 N + slack runs fewer sessions and
    // says so.
    let hard: usize = std::process::Command::new("sh")
        .args(["-c", "ulimit -Hn"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024);
    let wanted: usize = std::env::var("MAILOAUTH_BENCH_SESSIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let n = wanted.min(hard.saturating_sub(1024) / 2);
    if n < wanted {
        println!(
            "note: the file-descriptor hard limit here is {hard} per process, so {n} sessions instead of {wanted} (each side needs 2 per session)"
        );
    }
    let limit = hard.to_string();
    raise_limit(&limit);
    let server = AuthServer::start(AuthServerOptions::default());
    let fake = FakeProcess::start(&limit);
    let proxy = BenchProxy::start_with(
        &server,
        "imap",
        &format!("imaps://127.0.0.1:{}", fake.port),
        &fake.ca,
        &format!("max_connections = {}", n + 100),
        &format!("ulimit -n {limit}"),
    );
    // Warm-up: the first login pays Argon2 and fills caches; 100 sessions set the baseline.
    let mut sessions: Vec<Session> = (0..100).map(|_| Session::login(proxy.port)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let before = proxy.rss_kib();
    let started = Instant::now();
    for _ in 0..n {
        sessions.push(Session::login(proxy.port));
    }
    let took = started.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let after = proxy.rss_kib();
    // They are alive: a few, spread over the list, still answer through the proxy.
    let step = sessions.len() / 10;
    for i in (0..sessions.len()).step_by(step.max(1)) {
        sessions[i].command("a NOOP");
    }
    let per = (after.saturating_sub(before)) as f64 / n as f64;
    println!(
        "Idle-session benchmark against the harness's scripted IMAP server ({n} logged-in sessions)"
    );
    println!(
        "held {} sessions (logged in at {:.0}/s); proxy RSS {:.1} MiB before, {:.1} MiB after: {per:.1} KiB per idle session ({} the goal of <= 40 KiB)",
        sessions.len(),
        n as f64 / took.as_secs_f64(),
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        if per <= 40.0 { "meets" } else { "MISSES" }
    );
}
