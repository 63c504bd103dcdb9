//! The harness's one error type. Messages say what to do where there is something to do.

use std::io;

/// Why a harness component could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The `dovecot` binary is missing.
    #[error(
        "Dovecot is not installed: run tests/run (or apt-get install dovecot-imapd dovecot-pop3d dovecot-submissiond)"
    )]
    DovecotNotInstalled,

    /// The unprivileged mail user is missing and we may not create it.
    #[error(
        "the system user `{user}` that owns the test mailboxes does not exist and this process is not root to create it: run `sudo useradd --system --no-create-home --shell /usr/sbin/nologin {user}`"
    )]
    MailUserMissing {
        /// The user name.
        user: String,
    },

    /// Dovecot must be started as root (it switches to its internal users and the mail user).
    #[error(
        "the test Dovecot must be started as root (it switches users); run the tests as root, e.g. in CI or a container"
    )]
    NotRoot,

    /// Dovecot did not come up; the tail of its log says why.
    #[error("Dovecot did not start: {reason}\n--- Dovecot log (tail) ---\n{log_tail}")]
    DovecotStart {
        /// What went wrong (exit status, timeout, …).
        reason: String,
        /// The last lines of Dovecot's log file and standard error.
        log_tail: String,
    },

    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the harness was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// Anything else (a malformed URL, an unexpected reply, a TLS setup error …).
    #[error("{0}")]
    Other(String),
}

impl HarnessError {
    /// Wraps an I/O error with what we were doing.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> HarnessError {
        HarnessError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Adds context to I/O results: `fs::write(p, b).ctx(|| format!("writing {p:?}"))?`.
pub(crate) trait IoContext<T> {
    fn ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T, HarnessError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T, HarnessError> {
        self.map_err(|e| HarnessError::io(what(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_to_run() {
        assert_eq!(
            HarnessError::DovecotNotInstalled.to_string(),
            "Dovecot is not installed: run tests/run (or apt-get install dovecot-imapd dovecot-pop3d dovecot-submissiond)"
        );
        let missing = HarnessError::MailUserMissing {
            user: "mailoauth-test".into(),
        }
        .to_string();
        assert!(missing.contains(
            "useradd --system --no-create-home --shell /usr/sbin/nologin mailoauth-test"
        ));
    }
}
