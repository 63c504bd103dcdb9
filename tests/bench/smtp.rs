//! Benchmark: sending large messages through the SMTP proxy side by side with sending them
//! directly to the same real Dovecot submission service (which relays to the harness's sink),
//! interleaved, in one run. Goal (issue 4): throughput through the proxy ≥ 0.95× direct.
//!
//! Run: `cargo bench -p mailoauth --bench smtp` (MAILOAUTH_BENCH_RUNS=N messages per path,
//! default 8, of 8 MB each). Needs root and Dovecot, like the tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use mailoauth_harness::{
    AuthServer, AuthServerOptions, Dovecot, DovecotOptions, Mechanisms, Services,
};

mod support;

use support::{BenchProxy, PASSWORD, USER};
const SIZE: usize = 8 << 20;

trait Io: Read + Write {}
impl<T: Read + Write> Io for T {}

struct Client {
    io: BufReader<Box<dyn Io>>,
}

impl Client {
    fn connect(port: u16, tls: Option<&Arc<rustls::ClientConfig>>) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_nodelay(true).unwrap();
        let io: Box<dyn Io> = match tls {
            Some(config) => {
                let conn =
                    rustls::ClientConnection::new(config.clone(), "127.0.0.1".try_into().unwrap())
                        .unwrap();
                Box::new(rustls::StreamOwned::new(conn, s))
            }
            None => Box::new(s),
        };
        let mut c = Client {
            io: BufReader::with_capacity(64 * 1024, io),
        };
        c.reply(220);
        c
    }

    fn send(&mut self, bytes: &[u8]) {
        self.io.get_mut().write_all(bytes).unwrap();
        self.io.get_mut().flush().unwrap();
    }

    fn reply(&mut self, code: u16) {
        loop {
            let mut l = String::new();
            self.io.read_line(&mut l).unwrap();
            assert!(
                l.starts_with(&code.to_string()),
                "expected {code}, got {l:?}"
            );
            if l.as_bytes().get(3) != Some(&b'-') {
                return;
            }
        }
    }

    fn send_message(&mut self, body: &[u8]) {
        self.send(
            format!("MAIL FROM:<{USER}>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n").as_bytes(),
        );
        self.reply(250);
        self.reply(250);
        self.reply(354);
        self.send(body);
        self.send(b".\r\n");
        self.reply(250);
    }
}

fn main() {
    let runs: usize = std::env::var("MAILOAUTH_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let server = AuthServer::start(AuthServerOptions::default());
    let dovecot = Dovecot::start(
        DovecotOptions::new(&server)
            .mechanisms(Mechanisms::Both)
            .services(Services::SUBMISSION),
    )
    .expect("Dovecot starts (run as root; tests/run installs it)");
    let proxy = BenchProxy::start(
        &server,
        "smtp",
        &format!("smtps://127.0.0.1:{}", dovecot.submissions_port()),
        dovecot.ca_pem_path(),
    );
    let (port, token) = (proxy.port, proxy.token.clone());
    let tls = mailoauth_harness::lineclient::tls_config(dovecot.ca_pem_path()).unwrap();
    let bearer = mailoauth_harness::lineclient::oauthbearer(
        USER,
        &token,
        "127.0.0.1",
        dovecot.submissions_port(),
    );
    let plain = base64::engine::general_purpose::STANDARD.encode(format!("\0{USER}\0{PASSWORD}"));
    let mut body =
        b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: big\r\n\r\n".to_vec();
    let line = format!("{}\r\n", "0123456789abcdef".repeat(4));
    while body.len() + line.len() <= SIZE {
        body.extend_from_slice(line.as_bytes());
    }
    let mut direct = Client::connect(dovecot.submissions_port(), Some(&tls));
    direct.send(b"EHLO bench\r\n");
    direct.reply(250);
    direct.send(b"AUTH OAUTHBEARER\r\n");
    direct.reply(334);
    direct.send(format!("{bearer}\r\n").as_bytes());
    direct.reply(235);
    let mut proxied = Client::connect(port, None);
    proxied.send(b"EHLO bench\r\n");
    proxied.reply(250);
    proxied.send(format!("AUTH PLAIN {plain}\r\n").as_bytes());
    proxied.reply(235);
    // Warm up both paths once.
    direct.send_message(&body);
    proxied.send_message(&body);
    // Per-message times, interleaved, compared by their medians: a single slow message (another
    // process on the machine) moves a sum but not a median.
    let (mut dts, mut pts) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for _ in 0..runs {
        let t = Instant::now();
        direct.send_message(&body);
        dts.push(t.elapsed());
        let t = Instant::now();
        proxied.send_message(&body);
        pts.push(t.elapsed());
    }
    let median = |times: &mut Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    let (dt, pt) = (median(&mut dts), median(&mut pts));
    let mbps = |t: Duration| body.len() as f64 / t.as_secs_f64() / 1e6;
    let ratio = mbps(pt) / mbps(dt);
    println!(
        "SMTP proxy benchmark against the harness Dovecot submission ({runs} interleaved messages of {} MB each way, medians)",
        body.len() >> 20
    );
    println!(
        "send: direct {:.0} MB/s, through the proxy {:.0} MB/s, ratio {ratio:.2} ({} the goal of >= 0.95)",
        mbps(dt),
        mbps(pt),
        if ratio >= 0.95 { "meets" } else { "MISSES" }
    );
}
