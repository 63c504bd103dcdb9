//! Benchmark: `mailoauth token` with a valid cached token, side by side with mutt_oauth2.py (the
//! script it replaces, shipped with mutt) on the same token, and `cat` as the floor. Runs are
//! interleaved (A B C … A B C …) so machine noise hits every target alike; medians and ratios
//! are printed. Run with `cargo bench -p mailoauth --bench token` (MAILOAUTH_BENCH_RUNS=N to
//! change the number of rounds, default 100).
//!
//! Goal (issue 2): median ≤ 5 ms and ≥ 20× faster than the script.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mailoauth_harness::{AuthServer, AuthServerOptions, TempDir};

const BIN: &str = env!("CARGO_BIN_EXE_mailoauth");
const SCRIPT: &str = "/usr/share/doc/mutt/examples/mutt_oauth2.py";
const USER: &str = "alice@example.test";

struct Target {
    name: String,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    times: Vec<Duration>,
}

impl Target {
    fn new(name: &str, argv: &[&str], env: &[(&str, &str)]) -> Target {
        Target {
            name: name.into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            times: Vec::new(),
        }
    }

    fn run_once(&mut self, expected: &str) {
        let start = Instant::now();
        let out = Command::new(&self.argv[0])
            .args(&self.argv[1..])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("run target");
        let elapsed = start.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.trim() == expected,
            "{} failed or printed the wrong token: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        self.times.push(elapsed);
    }

    fn quantile(&self, q: f64) -> Duration {
        let mut t = self.times.clone();
        t.sort();
        t[((t.len() - 1) as f64 * q).round() as usize]
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let runs: usize = std::env::var("MAILOAUTH_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let server = AuthServer::start(AuthServerOptions::default());
    let issued = server.issue_tokens(USER, "mail");
    let home = TempDir::new("mo-bench").unwrap();
    let h = home.path();

    // A mutt_oauth2.py token file (plain JSON: the script's pipes are `cat` here), valid 50 min.
    let expiry = Command::new("date")
        .args(["-d", "+50 minutes", "+%Y-%m-%dT%H:%M:%S.000000"])
        .output()
        .unwrap();
    let expiry = String::from_utf8(expiry.stdout).unwrap();
    let file = h.join("tokenfile");
    std::fs::write(
        &file,
        serde_json::json!({"registration": "google", "authflow": "authcode", "email": USER,
            "access_token": issued.access_token, "access_token_expiration": expiry.trim(),
            "refresh_token": issued.refresh_token})
        .to_string(),
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();

    let account = format!(
        "[accounts.\"{USER}\"]\nprovider = \"generic\"\nclient_id = \"test-client\"\nclient_secret = \"test-secret\"\ntoken_url = \"{}\"\n",
        server.token_endpoint()
    );
    let config = |name: &str, store: &str| -> PathBuf {
        let dir = h.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.toml");
        std::fs::write(
            &path,
            format!(
                "[store]\n{store}dir = \"{}\"\n{account}",
                dir.join("tokens").display()
            ),
        )
        .unwrap();
        let out = Command::new(BIN)
            .args([
                "--config",
                path.to_str().unwrap(),
                "import",
                file.to_str().unwrap(),
                USER,
                "--decryption-pipe",
                "cat",
            ])
            .env("HOME", h)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        path
    };
    let plaintext = config("plain", "kind = \"plaintext\"\n");
    let cat_store = config(
        "cat",
        "kind = \"command\"\nencrypt = [\"cat\"]\ndecrypt = [\"cat\"]\n",
    );

    // The floor: a process that prints a file holding nothing but the token.
    let bare = h.join("token.txt");
    std::fs::write(&bare, format!("{}\n", issued.access_token)).unwrap();
    let home_env = [("HOME", h.to_str().unwrap())];
    let mut targets = vec![
        Target::new(
            "cat token.txt (floor)",
            &["cat", bare.to_str().unwrap()],
            &[],
        ),
        Target::new(
            "mailoauth token (plaintext store)",
            &[BIN, "--config", plaintext.to_str().unwrap(), "token", USER],
            &home_env,
        ),
        Target::new(
            "mailoauth token (command store: cat)",
            &[BIN, "--config", cat_store.to_str().unwrap(), "token", USER],
            &home_env,
        ),
        Target::new(
            "mailoauth TOKENFILE (mutt_oauth2.py mode, cat pipes)",
            &[
                BIN,
                file.to_str().unwrap(),
                "--decryption-pipe",
                "cat",
                "--encryption-pipe",
                "cat",
            ],
            &home_env,
        ),
    ];
    let script = patched_script(h);
    let baseline = targets.len();
    if let Some(script) = &script {
        targets.push(Target::new(
            "mutt_oauth2.py TOKENFILE (cat pipes)",
            &["python3", script.to_str().unwrap(), file.to_str().unwrap()],
            &home_env,
        ));
    } else {
        eprintln!("note: {SCRIPT} is missing (Debian package mutt); the script is not measured");
    }

    for t in targets.iter_mut() {
        t.run_once(&issued.access_token); // warm-up, and a check that each prints the token
        t.times.clear();
    }
    for _ in 0..runs {
        for t in targets.iter_mut() {
            t.run_once(&issued.access_token);
        }
    }

    println!(
        "mailoauth token benchmark: {runs} interleaved rounds, valid cached token, wall time per process"
    );
    println!("{:<56} {:>10} {:>10}", "target", "median ms", "p90 ms");
    for t in &targets {
        println!(
            "{:<56} {:>10.2} {:>10.2}",
            t.name,
            ms(t.quantile(0.5)),
            ms(t.quantile(0.9))
        );
    }
    if script.is_some() {
        let script_median = targets[baseline].quantile(0.5);
        println!();
        for t in &targets[1..baseline] {
            let median = t.quantile(0.5);
            let ratio = script_median.as_secs_f64() / median.as_secs_f64();
            let verdict = if ms(median) <= 5.0 && ratio >= 20.0 {
                "meets"
            } else {
                "MISSES"
            };
            println!(
                "{}: {:.1}x faster than mutt_oauth2.py ({verdict} the goal: <= 5 ms and >= 20x)",
                t.name, ratio
            );
        }
    }
    assert_eq!(
        server.refresh_requests(),
        0,
        "every run used the cached token"
    );
}

/// A copy of mutt's script with `cat` as its encryption and decryption pipes.
fn patched_script(dir: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(SCRIPT).ok()?;
    let patched = text
        .replace(
            "['gpg', '--encrypt', '--recipient', 'YOUR_GPG_IDENTITY']",
            "['cat']",
        )
        .replace("['gpg', '--decrypt']", "['cat']");
    let path = dir.join("mutt_oauth2.py");
    std::fs::write(&path, patched).ok()?;
    Some(path)
}
