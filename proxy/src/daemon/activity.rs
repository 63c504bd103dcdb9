//! What the daemon has seen since it started, for `mailoauth status`: the last successful
//! upstream login of each account per protocol. Kept in memory only (a file write per login
//! would cost more than the login's own work); a restart starts it empty.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Last successful logins, by account and protocol, in Unix seconds.
#[derive(Default)]
pub struct Activity {
    logins: Mutex<BTreeMap<String, BTreeMap<&'static str, i64>>>,
}

impl Activity {
    /// Records a successful upstream login of `account` over `protocol` now.
    pub fn logged_in(&self, account: &str, protocol: &'static str) {
        let now = tokenlib::token::now_unix();
        self.logins
            .lock()
            .expect("activity poisoned")
            .entry(account.to_string())
            .or_default()
            .insert(protocol, now);
    }

    /// The last login per protocol of `account`.
    pub fn logins(&self, account: &str) -> BTreeMap<String, i64> {
        self.logins
            .lock()
            .expect("activity poisoned")
            .get(account)
            .map(|m| m.iter().map(|(k, v)| (k.to_string(), *v)).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_login_per_protocol() {
        let a = Activity::default();
        assert!(a.logins("x").is_empty());
        a.logged_in("x", "IMAP");
        a.logged_in("x", "SMTP");
        a.logged_in("y", "IMAP");
        let x = a.logins("x");
        assert_eq!(x.keys().collect::<Vec<_>>(), ["IMAP", "SMTP"]);
        assert!(x["IMAP"] > 1_700_000_000);
        assert_eq!(a.logins("y").len(), 1);
    }
}
