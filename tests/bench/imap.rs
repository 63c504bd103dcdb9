//! Benchmark: the IMAP proxy side by side with a direct OAuth login to the same real Dovecot, in
//! one run, interleaved (A B A B …) so machine noise hits both alike.
//!
//! - login: connect + login + LOGOUT, through the proxy (plain password on 127.0.0.1, the proxy
//!   logs in upstream over TLS with a cached token) vs direct (TLS + AUTHENTICATE OAUTHBEARER
//!   with the same token). Goal (issue 3): ≤ 1 ms added, median.
//! - FETCH of a 32 MB message: MB/s through the proxy vs direct. Goal: ≥ 0.95×.
//!
//! Run: `cargo bench -p mailoauth --bench imap` (MAILOAUTH_BENCH_RUNS=N rounds, default 200).
//! Needs root and Dovecot, like the tests (tests/run installs it).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailoauth_harness::{
    AuthServer, AuthServerOptions, Dovecot, DovecotOptions, Mechanisms, Services,
};

mod support;

use support::{BenchProxy, PASSWORD, USER};

trait Io: Read + Write {}
impl<T: Read + Write> Io for T {}

/// A minimal blocking IMAP client with a large read buffer.
struct Client {
    io: BufReader<Box<dyn Io>>,
}

impl Client {
    fn plain(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_nodelay(true).unwrap();
        Client {
            io: BufReader::with_capacity(256 * 1024, Box::new(s)),
        }
    }

    fn tls(port: u16, config: &Arc<rustls::ClientConfig>) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_nodelay(true).unwrap();
        let conn =
            rustls::ClientConnection::new(config.clone(), "127.0.0.1".try_into().unwrap()).unwrap();
        Client {
            io: BufReader::with_capacity(256 * 1024, Box::new(rustls::StreamOwned::new(conn, s))),
        }
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.io.read_line(&mut l).unwrap();
        assert!(!l.is_empty(), "connection closed");
        l
    }

    fn send(&mut self, s: &str) {
        self.io.get_mut().write_all(s.as_bytes()).unwrap();
        self.io.get_mut().flush().unwrap();
    }

    fn tagged(&mut self, tag: &str) -> String {
        loop {
            let l = self.line();
            if let Some(rest) = l.strip_prefix(tag) {
                assert!(rest.starts_with(" OK"), "{l}");
                return l;
            }
        }
    }

    /// FETCHes message 1 and returns its size; the bytes are read and dropped.
    fn fetch(&mut self) -> usize {
        self.send("f FETCH 1 BODY.PEEK[]\r\n");
        let header = self.line();
        let size: usize = header
            .trim_end()
            .rsplit('{')
            .next()
            .unwrap()
            .trim_end_matches('}')
            .parse()
            .unwrap();
        let mut left = size;
        while left > 0 {
            let buf = self.io.fill_buf().unwrap();
            assert!(!buf.is_empty());
            let n = buf.len().min(left);
            self.io.consume(n);
            left -= n;
        }
        self.tagged("f");
        size
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::var("MAILOAUTH_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let server = AuthServer::start(AuthServerOptions::default());
    let dovecot = Dovecot::start(
        DovecotOptions::new(&server)
            .mechanisms(Mechanisms::Both)
            .services(Services::IMAP),
    )
    .expect("Dovecot starts (run as root; tests/run installs it)");
    let proxy = BenchProxy::start(
        &server,
        "imap",
        &format!("imaps://127.0.0.1:{}", dovecot.imaps_port()),
        dovecot.ca_pem_path(),
    );
    let (proxy_port, token) = (proxy.port, proxy.token.clone());
    let tls = mailoauth_harness::lineclient::tls_config(dovecot.ca_pem_path()).unwrap();
    let bearer =
        mailoauth_harness::lineclient::oauthbearer(USER, &token, "127.0.0.1", dovecot.imaps_port());

    let login_direct = || {
        let mut c = Client::tls(dovecot.imaps_port(), &tls);
        c.line();
        c.send(&format!("a AUTHENTICATE OAUTHBEARER {bearer}\r\n"));
        c.tagged("a");
        c.send("b LOGOUT\r\n");
        c.tagged("b");
    };
    let login_proxy = || {
        let mut c = Client::plain(proxy_port);
        c.line();
        c.send(&format!("a LOGIN {USER} \"{PASSWORD}\"\r\n"));
        c.tagged("a");
        c.send("b LOGOUT\r\n");
        c.tagged("b");
    };
    // Warm up both paths (the proxy's first login pays Argon2 once and caches the token).
    login_proxy();
    login_direct();
    let (mut direct, mut proxied) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        login_direct();
        direct.push(t.elapsed());
        let t = Instant::now();
        login_proxy();
        proxied.push(t.elapsed());
    }
    let (d, p) = (median(&mut direct), median(&mut proxied));
    println!("IMAP proxy benchmark against the harness Dovecot ({runs} interleaved rounds)");
    println!(
        "login (connect, login, LOGOUT), median: direct OAUTHBEARER {:.2} ms, through the proxy {:.2} ms, added {:.2} ms ({} the goal of <= 1 ms)",
        d.as_secs_f64() * 1e3,
        p.as_secs_f64() * 1e3,
        (p.as_secs_f64() - d.as_secs_f64()) * 1e3,
        if p.saturating_sub(d) <= Duration::from_millis(1) {
            "meets"
        } else {
            "MISSES"
        }
    );

    // A 32 MB message, appended directly, fetched both ways.
    let size = 32 << 20;
    let mut message = b"From: bench@example.test\r\nSubject: big\r\n\r\n".to_vec();
    let line = format!("{}\r\n", "0123456789abcdef".repeat(4));
    while message.len() + line.len() <= size {
        message.extend_from_slice(line.as_bytes());
    }
    let mut c = Client::tls(dovecot.imaps_port(), &tls);
    c.line();
    c.send(&format!("a AUTHENTICATE OAUTHBEARER {bearer}\r\n"));
    c.tagged("a");
    c.send(&format!("p APPEND INBOX {{{}+}}\r\n", message.len()));
    c.io.get_mut().write_all(&message).unwrap();
    c.send("\r\n");
    c.tagged("p");
    let mut d_conn = c;
    d_conn.send("s SELECT INBOX\r\n");
    d_conn.tagged("s");
    let mut p_conn = Client::plain(proxy_port);
    p_conn.line();
    p_conn.send(&format!("a LOGIN {USER} \"{PASSWORD}\"\r\n"));
    p_conn.tagged("a");
    p_conn.send("s SELECT INBOX\r\n");
    p_conn.tagged("s");
    let fetch_runs = (runs / 20).max(5);
    let (mut dt, mut pt) = (Duration::ZERO, Duration::ZERO);
    let mut bytes = 0usize;
    for _ in 0..fetch_runs {
        let t = Instant::now();
        bytes = d_conn.fetch();
        dt += t.elapsed();
        let t = Instant::now();
        assert_eq!(p_conn.fetch(), bytes);
        pt += t.elapsed();
    }
    let mbps = |t: Duration| (bytes * fetch_runs) as f64 / t.as_secs_f64() / 1e6;
    let ratio = mbps(pt) / mbps(dt);
    println!(
        "FETCH of a {} MB message x{fetch_runs}: direct {:.0} MB/s, through the proxy {:.0} MB/s, ratio {ratio:.2} ({} the goal of >= 0.95)",
        bytes >> 20,
        mbps(dt),
        mbps(pt),
        if ratio >= 0.95 { "meets" } else { "MISSES" }
    );
}
