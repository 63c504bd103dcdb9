//! `mailoauth status [--json]`: per account, whether it is authorized, when its access token
//! expires, how old its refresh token is, the last refresh, the last upstream login per protocol
//! (a running daemon knows) and the last error in plain language. Read from the daemon when it
//! runs, else from the store's state files; no token record is unsealed either way.
//! Exits 3 when an account needs authorizing.

use tokenlib::token::now_unix;

use super::{daemon_link, load_config};
use crate::Cli;
use crate::accounts::open_store;
use crate::control::{AccountStatus, Reply, Request};
use crate::exit::{ERROR, Failure, NEEDS_AUTHORIZATION};

pub fn run(cli: &Cli, json: bool) -> Result<(), Failure> {
    let (paths, config) = load_config(cli)?;
    let mut daemon = None;
    if let Some(mut client) = daemon_link::connect(&paths)? {
        match daemon_link::ask(&mut client, &Request::Status)? {
            Reply::Status {
                config: daemon_config,
                accounts,
            } if daemon_config == daemon_link::config_path(&paths)
                || daemon_config == paths.config_file =>
            {
                daemon = Some(accounts);
            }
            Reply::Status { config, .. } => eprintln!(
                "note: the running daemon uses {}, not this configuration; showing the store",
                config.display()
            ),
            Reply::Error { exit, message } => return Err(Failure::new(exit, message)),
            other => {
                return Err(Failure::new(
                    ERROR,
                    format!("the mailoauth daemon answered {other:?} to status"),
                ));
            }
        }
    }
    let running = daemon.is_some();
    let accounts = match daemon {
        Some(accounts) => accounts,
        None => {
            let store = open_store(&config, &paths);
            config
                .accounts
                .iter()
                .map(|(name, cfg)| crate::control::server::status_from_store(&store, name, cfg))
                .collect()
        }
    };
    if json {
        let out = serde_json::json!({ "daemon": running, "accounts": accounts });
        println!("{out}");
    } else {
        print!("{}", render(&accounts, running, now_unix()));
    }
    if accounts.iter().any(|a| !a.authorized) {
        return Err(Failure::new(
            NEEDS_AUTHORIZATION,
            "an account needs authorizing: run the command shown above",
        ));
    }
    Ok(())
}

/// The human-readable report.
pub fn render(accounts: &[AccountStatus], daemon: bool, now: i64) -> String {
    let mut out = String::new();
    out.push_str(if daemon {
        "daemon: running (logins below are since it started)\n"
    } else {
        "daemon: not running (mailoauth serve)\n"
    });
    if accounts.is_empty() {
        out.push_str("no accounts are configured\n");
    }
    for a in accounts {
        out.push('\n');
        let state = match (&a.needs_reauthorization, a.authorized) {
            (Some(_), _) => "NEEDS AUTHORIZING".to_string(),
            (None, true) => "authorized".to_string(),
            (None, false) => "not authorized yet".to_string(),
        };
        out.push_str(&format!("{} ({}): {state}\n", a.account, a.provider));
        if let Some(reason) = &a.needs_reauthorization {
            out.push_str(&format!("  why: {reason}\n"));
        }
        if !a.authorized {
            out.push_str(&format!(
                "  next: mailoauth authorize {}\n",
                crate::exit::shell_quote(&a.account)
            ));
        }
        if let Some(at) = a.access_expires_at {
            let left = at - now;
            if left > 0 {
                out.push_str(&format!(
                    "  access token: valid for {} (renewed automatically)\n",
                    span(left)
                ));
            } else {
                out.push_str(&format!(
                    "  access token: expired {} ago (renewed at the next use)\n",
                    span(-left)
                ));
            }
        }
        if let Some(at) = a.refresh_issued_at {
            out.push_str(&format!("  refresh token: issued {} ago\n", span(now - at)));
        }
        if let Some(at) = a.refresh_expires_at {
            out.push_str(&format!(
                "  refresh token ends: {}\n",
                if at > now {
                    format!("in {}", span(at - now))
                } else {
                    format!("{} ago", span(now - at))
                }
            ));
        }
        if let Some(at) = a.authorized_at {
            out.push_str(&format!("  authorized: {} ago\n", span(now - at)));
        }
        match a.last_refresh {
            Some(at) => out.push_str(&format!("  last refresh: {} ago\n", span(now - at))),
            None => out.push_str("  last refresh: never\n"),
        }
        if !a.last_login.is_empty() {
            let logins: Vec<String> = a
                .last_login
                .iter()
                .map(|(p, at)| format!("{p} {} ago", span(now - at)))
                .collect();
            out.push_str(&format!("  last login: {}\n", logins.join(", ")));
        }
        if let Some(e) = &a.last_error {
            let when = a
                .last_error_at
                .map(|at| format!(" ({} ago)", span(now - at)))
                .unwrap_or_default();
            out.push_str(&format!("  last error{when}: {e}\n"));
        }
        if let Some(w) = &a.warning {
            out.push_str(&format!("  warning: {w}\n"));
        }
    }
    out
}

/// A duration in the largest unit that keeps it readable: `45 s`, `12 min`, `3 h 5 min`, `4 days`.
fn span(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} days", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_each_fact_in_plain_words() {
        let now = 1_800_000_000;
        let ok = AccountStatus {
            account: "me@gmail.com".into(),
            provider: "google".into(),
            authorized: true,
            access_expires_at: Some(now + 47 * 60),
            refresh_issued_at: Some(now - 3 * 86400),
            last_refresh: Some(now - 12 * 60),
            last_login: [
                ("IMAP".to_string(), now - 120),
                ("SMTP".to_string(), now - 3700),
            ]
            .into(),
            ..Default::default()
        };
        let bad = AccountStatus {
            account: "me@contoso.com".into(),
            provider: "microsoft".into(),
            needs_reauthorization: Some("the grant was revoked".into()),
            last_error: Some("the grant was revoked".into()),
            last_error_at: Some(now - 30),
            ..Default::default()
        };
        let text = render(&[ok, bad], true, now);
        for want in [
            "daemon: running",
            "me@gmail.com (google): authorized",
            "access token: valid for 47 min",
            "refresh token: issued 3 days ago",
            "last refresh: 12 min ago",
            "last login: IMAP 2 min ago, SMTP 1 h 1 min ago",
            "me@contoso.com (microsoft): NEEDS AUTHORIZING",
            "why: the grant was revoked",
            "next: mailoauth authorize me@contoso.com",
            "last error (30 s ago): the grant was revoked",
            "last refresh: never",
        ] {
            assert!(text.contains(want), "{want:?} missing in:\n{text}");
        }
    }
}
