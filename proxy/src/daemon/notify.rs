//! Telling the user that an account needs attention (pizauth's notifier, reduced to what mail
//! users asked for): when an account needs re-authorization, when its refresh keeps failing, and
//! ahead of a refresh token's known death, the daemon runs the configured `notify_command` with
//! the account and a plain-language message. Each distinct message is sent once per account
//! until the account recovers, so a client retrying every minute does not flood the desktop.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// How long a notify command may run before it is killed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the notify command, once per account and message.
pub struct Notifier {
    command: Mutex<Option<Vec<String>>>,
    /// The last message sent per account; cleared when the account works again.
    sent: Mutex<HashMap<String, String>>,
}

impl Notifier {
    /// `command` is the configuration's `notify_command` (already validated as shell words).
    pub fn new(command: Option<&str>) -> Notifier {
        Notifier {
            command: Mutex::new(command.and_then(|c| shell_words::split(c).ok())),
            sent: Mutex::new(HashMap::new()),
        }
    }

    /// A reload may change the command; what was already sent stays sent.
    pub fn set_command(&self, command: Option<&str>) {
        *self.command.lock().expect("notifier poisoned") =
            command.and_then(|c| shell_words::split(c).ok());
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
        let Some(argv) = self.command.lock().expect("notifier poisoned").clone() else {
            return false;
        };
        let Some((program, args)) = argv.split_first() else {
            return false;
        };
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .arg(account)
            .arg(message)
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
    fn without_a_command_nothing_runs() {
        let n = Notifier::new(None);
        assert!(!n.notify("a@b", "x"));
    }
}
