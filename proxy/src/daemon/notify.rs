//! Telling the user that an account needs attention (pizauth's notifier, reduced to what mail
//! users asked for): when an account needs re-authorization, when its refresh keeps failing, and
//! ahead of a refresh token's known death, the daemon runs the configured `notify_command` with
//! the account and a plain-language message. Each distinct message is sent once per account
//! until the account recovers, so a client retrying every minute does not flood the desktop.
//!
//! Without a `notify_command`, a desktop session gets a desktop notification: `notify-send` where
//! a D-Bus session exists (Linux, BSD), `osascript` on macOS. Decision: these programs rather than
//! a notification crate behind a cargo feature — they exist wherever a desktop does, and the
//! daemon stays free of a D-Bus stack it would otherwise only need for this.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// How long a notify command may run before it is killed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// How a notification is delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The user's command; the account and the message are appended.
    Command(Vec<String>),
    /// `notify-send --app-name=mailoauth "mailoauth: ACCOUNT" MESSAGE`.
    NotifySend,
    /// `osascript -e 'display notification "MESSAGE" with title "mailoauth: ACCOUNT"'`.
    AppleScript,
}

impl Target {
    /// The configured command, else the desktop's notifier when a desktop session is there.
    /// `env` reads an environment variable, `found` says whether a program is on PATH.
    pub fn choose(
        command: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
        found: impl Fn(&str) -> bool,
    ) -> Option<Target> {
        if let Some(command) = command {
            return shell_words::split(command)
                .ok()
                .filter(|argv| !argv.is_empty())
                .map(Target::Command);
        }
        if cfg!(target_os = "macos") {
            return found("osascript").then_some(Target::AppleScript);
        }
        let session = env("DBUS_SESSION_BUS_ADDRESS").is_some()
            || env("WAYLAND_DISPLAY").is_some()
            || env("DISPLAY").is_some();
        (session && found("notify-send")).then_some(Target::NotifySend)
    }

    /// Program and arguments for one notification.
    fn argv(&self, account: &str, message: &str) -> Vec<String> {
        match self {
            Target::Command(argv) => {
                let mut argv = argv.clone();
                argv.push(account.to_string());
                argv.push(message.to_string());
                argv
            }
            Target::NotifySend => vec![
                "notify-send".into(),
                "--app-name=mailoauth".into(),
                format!("mailoauth: {account}"),
                message.to_string(),
            ],
            Target::AppleScript => {
                let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
                vec![
                    "osascript".into(),
                    "-e".into(),
                    format!(
                        "display notification \"{}\" with title \"mailoauth: {}\"",
                        quote(message),
                        quote(account)
                    ),
                ]
            }
        }
    }
}

/// Whether `program` is an executable file in one of PATH's directories.
fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(program))
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
    })
}

/// Runs the notify command, once per account and message.
pub struct Notifier {
    target: Mutex<Option<Target>>,
    /// The last message sent per account; cleared when the account works again.
    sent: Mutex<HashMap<String, String>>,
}

impl Notifier {
    /// `command` is the configuration's `notify_command`; without one, the desktop's notifier
    /// if this process runs in a desktop session.
    pub fn new(command: Option<&str>) -> Notifier {
        Notifier {
            target: Mutex::new(Self::target(command)),
            sent: Mutex::new(HashMap::new()),
        }
    }

    fn target(command: Option<&str>) -> Option<Target> {
        Target::choose(command, |v| std::env::var(v).ok(), on_path)
    }

    /// A reload may change the command; what was already sent stays sent.
    pub fn set_command(&self, command: Option<&str>) {
        *self.target.lock().expect("notifier poisoned") = Self::target(command);
    }

    /// Tells the user `message` about `account`, unless that exact message was the last one.
    /// Returns whether a notification was started.
    pub fn notify(&self, account: &str, message: &str) -> bool {
        {
            let mut sent = self.sent.lock().expect("notifier poisoned");
            if sent.get(account).map(String::as_str) == Some(message) {
                return false;
            }
            sent.insert(account.to_string(), message.to_string());
        }
        tracing::warn!(account, "{message}");
        let Some(target) = self.target.lock().expect("notifier poisoned").clone() else {
            return false;
        };
        let argv = target.argv(account, message);
        let Some((program, args)) = argv.split_first() else {
            return false;
        };
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .env("MAILOAUTH_ACCOUNT", account)
            .env("MAILOAUTH_MESSAGE", message)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        let program = program.clone();
        match command.spawn() {
            Ok(mut child) => {
                tokio::spawn(async move {
                    match tokio::time::timeout(COMMAND_TIMEOUT, child.wait()).await {
                        Ok(Ok(status)) if !status.success() => {
                            tracing::warn!("notify_command {program} exited with {status}")
                        }
                        Ok(Err(e)) => tracing::warn!("notify_command {program}: {e}"),
                        Err(_) => tracing::warn!(
                            "notify_command {program} ran longer than {} s and was killed",
                            COMMAND_TIMEOUT.as_secs()
                        ),
                        Ok(Ok(_)) => {}
                    }
                });
                true
            }
            Err(e) => {
                tracing::warn!("cannot run notify_command {program}: {e}");
                false
            }
        }
    }

    /// The account works again: the next problem is news.
    pub fn recovered(&self, account: &str) {
        self.sent.lock().expect("notifier poisoned").remove(account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_the_command_once_per_message_until_recovery() {
        let dir = std::env::temp_dir().join(format!("mo-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("calls");
        let script = format!(
            "sh -c 'printf \"%s|%s|%s\\n\" \"$0\" \"$1\" \"$MAILOAUTH_ACCOUNT\" >> {}'",
            out.display()
        );
        let n = Notifier::new(Some(&script));
        assert!(n.notify("a@b", "needs authorizing"));
        assert!(!n.notify("a@b", "needs authorizing"), "same message again");
        assert!(n.notify("c@d", "needs authorizing"), "another account");
        n.recovered("a@b");
        assert!(n.notify("a@b", "needs authorizing"), "news after recovery");
        for _ in 0..100 {
            if std::fs::read_to_string(&out)
                .map(|s| s.lines().count())
                .unwrap_or(0)
                == 3
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let calls = std::fs::read_to_string(&out).unwrap();
        let mut lines: Vec<&str> = calls.lines().collect();
        lines.sort();
        assert_eq!(
            lines,
            [
                "a@b|needs authorizing|a@b",
                "a@b|needs authorizing|a@b",
                "c@d|needs authorizing|c@d"
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_command_wins_else_the_desktop_notifier_of_a_desktop_session() {
        let none = |_: &str| None;
        let bus = |v: &str| (v == "DBUS_SESSION_BUS_ADDRESS").then(|| "unix:path=/b".to_string());
        let everywhere = |_: &str| true;
        assert_eq!(
            Target::choose(Some("notify 'my tool'"), bus, everywhere),
            Some(Target::Command(vec!["notify".into(), "my tool".into()]))
        );
        if !cfg!(target_os = "macos") {
            assert_eq!(
                Target::choose(None, bus, everywhere),
                Some(Target::NotifySend)
            );
            assert_eq!(Target::choose(None, none, everywhere), None, "no session");
            assert_eq!(Target::choose(None, bus, |_| false), None, "no notify-send");
        }
        assert_eq!(
            Target::NotifySend.argv("a@b", "needs authorizing"),
            [
                "notify-send",
                "--app-name=mailoauth",
                "mailoauth: a@b",
                "needs authorizing"
            ]
        );
        let script = Target::AppleScript.argv("a@b", "say \"hi\"");
        assert_eq!(
            script[2],
            "display notification \"say \\\"hi\\\"\" with title \"mailoauth: a@b\""
        );
    }

    #[test]
    fn without_a_target_nothing_runs() {
        let n = Notifier {
            target: Mutex::new(None),
            sent: Mutex::new(HashMap::new()),
        };
        assert!(!n.notify("a@b", "x"));
    }
}
