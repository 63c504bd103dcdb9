//! A real Dovecot (IMAP, POP3, submission) as an OAuth-only upstream: its own config, TLS
//! material, Maildirs and sink relay under a fresh temp dir, random loopback ports, tokens
//! checked by introspection at the test [`AuthServer`](crate::AuthServer). Stopped on drop.

mod config;
mod system;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use config::{DovecotOptions, Mechanisms, Services};
pub use system::MAIL_USER;

use crate::error::{HarnessError, IoContext};
use crate::smtpsink::SmtpSink;
use crate::testca::TestCa;
use crate::util::{TempDir, free_ports, random_hex};
use config::{Layout, Ports};

/// A running Dovecot.
pub struct Dovecot {
    child: Child,
    /// The process group was killed and reaped (its id may since belong to someone else).
    stopped: bool,
    ports: Ports,
    users: Vec<String>,
    uid: u32,
    gid: u32,
    ca_pem_path: PathBuf,
    startup: Duration,
    deliveries: AtomicU64,
    sink: Option<SmtpSink>,
    /// Declared last: removed after Dovecot has stopped.
    dir: TempDir,
}

impl std::fmt::Debug for Dovecot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dovecot")
            .field("dir", &self.dir.path())
            .field("ports", &self.ports)
            .finish_non_exhaustive()
    }
}

impl Dovecot {
    /// Starts Dovecot and waits until every enabled port greets (or answers TCP for the
    /// implicit-TLS ports). Retries with fresh ports if one was taken in the meantime.
    pub fn start(options: DovecotOptions) -> Result<Dovecot, HarnessError> {
        let binary = system::dovecot_binary()?;
        system::check_protocols(options.services)?;
        let (uid, gid) = system::ensure_mail_user()?;
        if !system::is_root() {
            return Err(HarnessError::NotRoot);
        }
        system::become_subreaper();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::start_once(&binary, &options, uid, gid) {
                // A port chosen as free was taken before Dovecot bound it: new ports.
                Err(HarnessError::DovecotStart { log_tail, .. })
                    if attempt < 3 && log_tail.contains("Address already in use") => {}
                other => return other,
            }
        }
    }

    fn start_once(
        binary: &Path,
        o: &DovecotOptions,
        uid: u32,
        gid: u32,
    ) -> Result<Dovecot, HarnessError> {
        let started = Instant::now();
        let dir = TempDir::new("mo").ctx(|| "creating Dovecot's temp dir")?;
        let path = |name: &str| dir.path().join(name);
        // Dovecot's internal users (dovecot, dovenull, the mail user) must traverse it.
        system::chmod(dir.path(), 0o755)?;

        // TLS material.
        let ca = TestCa::new()?;
        let ca_pem_path = path("ca.pem");
        ca.write_ca_pem(&ca_pem_path)?;
        std::fs::create_dir(path("tls")).ctx(|| "creating tls/")?;
        system::chmod(&path("tls"), 0o700)?;
        let (cert, key) = ca.issue(&["127.0.0.1", "localhost"])?;
        write_file(&path("tls/server.crt"), cert.as_bytes(), 0o644)?;
        write_file(&path("tls/server.key"), key.as_bytes(), 0o600)?;

        // Directories and mailboxes.
        for d in ["state", "home"] {
            std::fs::create_dir(path(d)).ctx(|| format!("creating {d}/"))?;
            system::chmod(&path(d), 0o755)?;
        }
        for user in &o.users {
            let home = path("home").join(user);
            for sub in ["", "Maildir", "Maildir/cur", "Maildir/new", "Maildir/tmp"] {
                let d = home.join(sub);
                std::fs::create_dir_all(&d).ctx(|| format!("creating {}", d.display()))?;
                system::chown(&d, Some(uid), Some(gid))?;
                system::chmod(&d, 0o700)?;
            }
        }

        let sink = if o.services.submission {
            Some(SmtpSink::start()?)
        } else {
            None
        };
        let free = free_ports(6).ctx(|| "finding free ports")?;
        let on = |enabled: bool, port: u16| if enabled { port } else { 0 };
        let s = o.services;
        let ports = Ports {
            imap: on(s.imap, free[0]),
            imaps: on(s.imap, free[1]),
            pop3: on(s.pop3, free[2]),
            pop3s: on(s.pop3, free[3]),
            submission: on(s.submission, free[4]),
            submissions: on(s.submission, free[5]),
        };
        let instance = format!("mo-{}", random_hex(4));
        let layout = Layout {
            dir: dir.path(),
            instance: &instance,
            ports,
            uid,
            gid,
            sink_port: sink.as_ref().map_or(0, |s| s.port()),
        };

        // The oauth2 args hold the resource-server secret: readable by Dovecot's auth only.
        let oauth2 = path("oauth2.conf.ext");
        write_file(&oauth2, config::render_oauth2(o).as_bytes(), 0o640)?;
        if let Some(dovecot_gid) = system::lookup_group("dovecot") {
            system::chown(&oauth2, None, Some(dovecot_gid))?;
        }
        write_file(
            &path("users"),
            config::render_users(&o.users, &layout).as_bytes(),
            0o644,
        )?;
        let conf = path("dovecot.conf");
        write_file(&conf, config::render_config(o, &layout).as_bytes(), 0o644)?;

        let stderr = File::create(path("stderr.log")).ctx(|| "creating stderr.log")?;
        let stdout = stderr.try_clone().ctx(|| "duplicating stderr.log")?;
        let child = Command::new(binary)
            .arg("-F")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .ctx(|| format!("running {}", binary.display()))?;

        let mut dovecot = Dovecot {
            child,
            stopped: false,
            ports,
            users: o.users.clone(),
            uid,
            gid,
            ca_pem_path,
            startup: Duration::ZERO,
            deliveries: AtomicU64::new(0),
            sink,
            dir,
        };
        dovecot.wait_ready(started + o.start_timeout)?;
        dovecot.startup = started.elapsed();
        Ok(dovecot)
    }

    /// Waits for every enabled port; a plaintext port counts once it sent its greeting (which
    /// Dovecot's login processes only do once the auth process is up).
    fn wait_ready(&mut self, deadline: Instant) -> Result<(), HarnessError> {
        let p = self.ports;
        let checks = [
            (p.imap, true),
            (p.imaps, false),
            (p.pop3, true),
            (p.pop3s, false),
            (p.submission, true),
            (p.submissions, false),
        ];
        for (port, greets) in checks.into_iter().filter(|(port, _)| *port != 0) {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            loop {
                if let Ok(Some(status)) = self.child.try_wait() {
                    return Err(self.start_error(format!("dovecot exited early ({status})")));
                }
                let now = Instant::now();
                if now >= deadline {
                    return Err(self.start_error(format!("port {port} not ready in time")));
                }
                if let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                    && (!greets || read_greeting(stream, deadline - now))
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Ok(())
    }

    fn start_error(&self, reason: String) -> HarnessError {
        let stderr = std::fs::read(self.dir.path().join("stderr.log")).unwrap_or_default();
        let mut log_tail = self.log_tail();
        if !stderr.is_empty() {
            log_tail.push_str("--- stderr ---\n");
            log_tail.push_str(&String::from_utf8_lossy(&stderr));
        }
        HarnessError::DovecotStart { reason, log_tail }
    }

    fn port(&self, port: u16, what: &str) -> u16 {
        assert!(
            port != 0,
            "{what} is not enabled in DovecotOptions::services"
        );
        port
    }
    /// IMAP with STARTTLS (143-style).
    pub fn imap_port(&self) -> u16 {
        self.port(self.ports.imap, "IMAP")
    }
    /// IMAP over implicit TLS (993-style).
    pub fn imaps_port(&self) -> u16 {
        self.port(self.ports.imaps, "IMAP")
    }
    /// POP3 with STLS (110-style).
    pub fn pop3_port(&self) -> u16 {
        self.port(self.ports.pop3, "POP3")
    }
    /// POP3 over implicit TLS (995-style).
    pub fn pop3s_port(&self) -> u16 {
        self.port(self.ports.pop3s, "POP3")
    }
    /// Submission with STARTTLS (587-style).
    pub fn submission_port(&self) -> u16 {
        self.port(self.ports.submission, "submission")
    }
    /// Submission over implicit TLS (465-style).
    pub fn submissions_port(&self) -> u16 {
        self.port(self.ports.submissions, "submission")
    }
    /// The CA certificate (PEM file) that signed Dovecot's certificate for 127.0.0.1/localhost.
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_pem_path
    }
    /// The sink that receives what submission relays.
    ///
    /// # Panics
    /// If submission is not enabled.
    pub fn sink(&self) -> &SmtpSink {
        self.sink
            .as_ref()
            .expect("submission is not enabled in DovecotOptions::services")
    }
    /// The temp dir holding config, logs, TLS files and mailboxes.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    /// The login names that exist.
    pub fn users(&self) -> &[String] {
        &self.users
    }
    /// How long the start took (until every port was ready).
    pub fn startup_time(&self) -> Duration {
        self.startup
    }
    /// Dovecot's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("dovecot.log")
    }
    /// The last 60 lines of Dovecot's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read(self.log_path()).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(60);
        lines[start..].iter().map(|l| format!("{l}\n")).collect()
    }

    /// Stops Dovecot now (e.g. to test an unreachable upstream); its ports then refuse
    /// connections. Idempotent; drop does it too.
    pub fn stop(&mut self) {
        if !std::mem::replace(&mut self.stopped, true) {
            system::kill_group(&mut self.child);
        }
    }

    /// A user's Maildir (INBOX).
    pub fn maildir(&self, user: &str) -> PathBuf {
        self.dir.path().join("home").join(user).join("Maildir")
    }

    /// Puts `message` into `user`'s INBOX (as a new Maildir file owned by the mail user).
    pub fn deliver(&self, user: &str, message: &[u8]) -> Result<PathBuf, HarnessError> {
        let maildir = self.maildir(user);
        if !maildir.is_dir() {
            return Err(HarnessError::Other(format!(
                "{user} is not a user of this Dovecot"
            )));
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let name = format!(
            "{}.M{}P{}Q{}.harness,S={}",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            self.deliveries.fetch_add(1, Ordering::Relaxed),
            message.len()
        );
        let tmp = maildir.join("tmp").join(&name);
        write_file(&tmp, message, 0o600)?;
        system::chown(&tmp, Some(self.uid), Some(self.gid))?;
        let new = maildir.join("new").join(&name);
        std::fs::rename(&tmp, &new).ctx(|| format!("moving {name} to new/"))?;
        Ok(new)
    }

    /// The messages in `user`'s INBOX (`new/` and `cur/`), ordered by file name (≈ arrival).
    pub fn mailbox_messages(&self, user: &str) -> Vec<Vec<u8>> {
        let maildir = self.maildir(user);
        let mut files: Vec<(String, PathBuf)> = ["new", "cur"]
            .iter()
            .filter_map(|sub| std::fs::read_dir(maildir.join(sub)).ok())
            .flatten()
            .flatten()
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .collect();
        files.sort();
        files
            .into_iter()
            .filter_map(|(_, p)| std::fs::read(p).ok())
            .collect()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), HarnessError> {
    std::fs::write(path, bytes).ctx(|| format!("writing {}", path.display()))?;
    system::chmod(path, mode)
}

/// Reads one line; true if it is a greeting (`* OK`, `+OK`, `220`).
fn read_greeting(stream: TcpStream, timeout: Duration) -> bool {
    let _ = stream.set_read_timeout(Some(timeout.max(Duration::from_millis(10))));
    let mut line = String::new();
    let _ = BufReader::new(stream).read_line(&mut line);
    line.starts_with("* OK") || line.starts_with("+OK") || line.starts_with("220")
}
