//! `mailoauth test ACCOUNT [--via-proxy] [--json]`: checks that the account really works.
//!
//! Without `--via-proxy`: gets a token through the [`Refresher`] (refreshing it if needed, so a
//! broken grant or app registration shows up here), then for each server the account configures
//! (IMAP, POP3, SMTP) logs in once per OAuth mechanism the server offers, each on a fresh
//! connection, and runs a harmless command after the login. A token the server refuses is
//! refreshed once and tried again, so a refusal that remains is about the server, not the token.
//! With `--via-proxy`: logs in through the running `mailoauth serve` with the local password
//! (LOGIN, AUTH PLAIN, USER/PASS), which checks the whole chain.
//!
//! The report goes to stdout (one JSON object with `--json`) and ends with a verdict line; the
//! exit code says what failed (see [`crate::exit`]). No token or SASL string is ever printed:
//! tokens appear as fingerprints.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokenlib::Refresher;
use tokenlib::sasl::Mechanism;
use tokenlib::token::{fingerprint, now_unix};

use super::{load_config, runtime};
use crate::Cli;
use crate::accounts::{open_store, token_account, upstream_user};
use crate::config::{AccountConfig, Config, ListenerConfig, ListenerTls, Paths, Upstream};
use crate::diagnose::{Attempt, Endpoint, Login, Protocol, Step, Trouble, attempt};
use crate::exit::{
    CONFIGURATION, ERROR, Failure, LOGIN_REFUSED, NEEDS_AUTHORIZATION, SERVER_MISBEHAVES,
    TEMPORARY, authorize_command,
};

pub fn run(cli: &Cli, name: &str, via_proxy: bool, json: bool) -> Result<(), Failure> {
    let (paths, config) = load_config(cli)?;
    let account_cfg = config
        .account(name)
        .map_err(|e| Failure::new(CONFIGURATION, format!("{e:#}")))?;
    let targets: Vec<(Protocol, Upstream)> = [
        (Protocol::Imap, &account_cfg.imap),
        (Protocol::Pop3, &account_cfg.pop3),
        (Protocol::Smtp, &account_cfg.smtp),
    ]
    .into_iter()
    .filter_map(|(p, u)| u.clone().map(|u| (p, u)))
    .collect();
    if targets.is_empty() {
        return Err(Failure::new(
            CONFIGURATION,
            format!(
                "no mail servers are configured for {name}: set imap, pop3 and smtp in its account"
            ),
        ));
    }
    let mut report = Report {
        cli,
        account: name.to_string(),
        json,
        token: None,
        protocols: Vec::new(),
        failure: None,
    };
    report.say(&format!(
        "mailoauth test {name}{}",
        if via_proxy { " --via-proxy" } else { "" }
    ));
    let rt = runtime()?;
    if via_proxy {
        via_proxy_checks(&mut report, &rt, &config, &paths, name, &targets)?;
    } else {
        direct_checks(
            &mut report,
            &rt,
            &config,
            &paths,
            name,
            account_cfg,
            &targets,
        )?;
    }
    report.finish()
}

/// Logs in to the account's servers with its token, each offered mechanism on its own connection.
fn direct_checks(
    report: &mut Report,
    rt: &tokio::runtime::Runtime,
    config: &Config,
    paths: &Paths,
    name: &str,
    account_cfg: &AccountConfig,
    targets: &[(Protocol, Upstream)],
) -> Result<(), Failure> {
    let tls = certs::client_config(certs::Roots::Webpki, account_cfg.upstream_ca.as_deref())
        .map_err(|e| Failure::new(CONFIGURATION, e.to_string()))?;
    let account = token_account(name, account_cfg);
    let refresher = Refresher::new(open_store(config, paths));
    let fetched = match rt.block_on(refresher.access_token(&account)) {
        // Sealed with the local password: the running daemon may have it unlocked.
        Err(e @ tokenlib::RefreshError::Store(tokenlib::StoreError::Locked { .. })) => {
            match super::token::from_daemon(paths, name) {
                Ok(Some(t)) => {
                    report.note(
                        "the tokens are sealed with the local password; using the running daemon's token",
                    );
                    Ok(t)
                }
                _ => Err(e),
            }
        }
        other => other,
    };
    let mut token = match fetched {
        Ok(t) => t,
        Err(e) => {
            let failure = Failure::from_refresh(report.cli, name, &e);
            report.token_failed(&failure);
            return Ok(());
        }
    };
    report.token_ok(&refresher, name, &token);
    let user = upstream_user(name, account_cfg);
    let mut retried = false;
    for (protocol, server) in targets {
        let endpoint = Endpoint {
            server: server.clone(),
            plaintext_ok: false,
        };
        report.protocol(*protocol, server);
        // The first login takes the preferred mechanism and shows which are offered; each
        // other offered one gets a fresh connection.
        let mut forced: Option<Mechanism> = None;
        let mut queue: Vec<Mechanism> = Vec::new();
        loop {
            let check = |token: &SecretString| {
                let login = Login::OAuth {
                    user,
                    token,
                    mechanism: forced,
                };
                rt.block_on(attempt(*protocol, &endpoint, &login, tls.clone()))
            };
            let mut a = check(&token);
            if !retried
                && a.outcome
                    .as_ref()
                    .is_err_and(|p| p.trouble == Trouble::Refused)
            {
                // Perhaps only this token is stale (revoked, or issued before a change): refresh
                // once and try again, as the proxy does.
                retried = true;
                match rt.block_on(refresher.after_rejection(&account, &token)) {
                    Ok(fresh) => {
                        report.note("the server refused the token; trying again with a freshly refreshed one");
                        report.token_ok(&refresher, name, &fresh);
                        token = fresh;
                        a = check(&token);
                    }
                    Err(e) => {
                        report.attempt(a);
                        let failure = Failure::from_refresh(report.cli, name, &e);
                        report.token_failed(&failure);
                        return Ok(());
                    }
                }
            }
            if forced.is_none() {
                queue = a
                    .offered
                    .iter()
                    .copied()
                    .filter(|m| Some(m.name()) != a.login)
                    .collect();
            }
            report.attempt(a);
            match queue.pop() {
                Some(m) => forced = Some(m),
                None => break,
            }
        }
    }
    Ok(())
}

/// Logs in through the running proxy's listeners with the local password.
fn via_proxy_checks(
    report: &mut Report,
    rt: &tokio::runtime::Runtime,
    config: &Config,
    paths: &Paths,
    name: &str,
    targets: &[(Protocol, Upstream)],
) -> Result<(), Failure> {
    let listeners: Vec<(Protocol, &ListenerConfig)> = targets
        .iter()
        .filter_map(|(p, _)| {
            let l = match p {
                Protocol::Imap => config.proxy.imap.as_ref(),
                Protocol::Pop3 => config.proxy.pop3.as_ref(),
                Protocol::Smtp => config.proxy.smtp.as_ref(),
            };
            l.map(|l| (*p, l))
        })
        .collect();
    if listeners.is_empty() {
        return Err(Failure::new(
            CONFIGURATION,
            format!(
                "the configuration has no [proxy.imap], [proxy.pop3] or [proxy.smtp] listener for {name}'s protocols, so there is no proxy to test"
            ),
        ));
    }
    let password = crate::terminal::read_password(&format!("Local password for {name}: "))
        .map_err(|e| Failure::new(ERROR, format!("cannot read the local password: {e}")))?;
    let login = Login::Password {
        user: name,
        password: &password,
    };
    for (protocol, listener) in listeners {
        let Some(addr) = listener.listen.first() else {
            continue;
        };
        let ip = match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let endpoint = Endpoint {
            server: Upstream {
                host: ip.to_string(),
                port: addr.port(),
                implicit_tls: listener.tls == ListenerTls::Implicit,
            },
            plaintext_ok: listener.tls == ListenerTls::None,
        };
        // The proxy's own certificate (configured, or the generated self-signed one) is the
        // trust anchor.
        let cert = match &listener.cert {
            Some((cert, _)) => cert.clone(),
            None => paths.state_dir.join("tls").join(certs::local::CERT_FILE),
        };
        let ca = (listener.tls != ListenerTls::None).then_some(cert.as_path());
        let tls = certs::client_config(certs::Roots::Webpki, ca).map_err(|e| {
            Failure::new(
                CONFIGURATION,
                format!("{e} (has `mailoauth serve` run yet? It creates the local certificate)"),
            )
        })?;
        report.protocol(protocol, &endpoint.server);
        report.attempt(rt.block_on(attempt(protocol, &endpoint, &login, tls)));
    }
    drop(password);
    Ok(())
}

/// The exit code for a kind of failure (the table is in [`crate::exit`]).
fn exit_code(trouble: Trouble) -> u8 {
    match trouble {
        Trouble::NeedsAuthorization => NEEDS_AUTHORIZATION,
        Trouble::Unreachable | Trouble::Temporary => TEMPORARY,
        Trouble::Tls | Trouble::NoMechanism => CONFIGURATION,
        Trouble::Refused | Trouble::SmtpAuthDisabled => LOGIN_REFUSED,
        Trouble::NoStartTls | Trouble::CommandRefused | Trouble::Protocol => SERVER_MISBEHAVES,
    }
}

/// The verdict's words for a kind of failure of `protocol`.
fn headline(report: &Report, protocol: Protocol, a: &Attempt, trouble: Trouble) -> String {
    let p = protocol.name();
    let server = &a.server;
    match trouble {
        Trouble::Unreachable => format!(
            "{p}: cannot reach {server}; check the address and the network, or try again later"
        ),
        Trouble::Temporary => format!("{p}: the server refused for now; try again later"),
        Trouble::Tls => {
            format!("{p}: TLS with {server} failed (is its certificate trusted? see upstream_ca)")
        }
        Trouble::NoMechanism => format!(
            "{p}: {server} offers no OAuth login (OAUTHBEARER or XOAUTH2); is it the right server?"
        ),
        Trouble::Refused if matches!(a.login, Some("LOGIN" | "AUTH PLAIN" | "USER/PASS")) => {
            format!(
                "{p}: the proxy refused the login; check the local password (mailoauth passwd) and the proxy's log"
            )
        }
        Trouble::Refused => format!(
            "{p}: the mail server refused the login although the token is valid (the provider just issued it); does the account allow {p} access?"
        ),
        Trouble::SmtpAuthDisabled => format!(
            "{p}: SMTP AUTH is disabled for this Microsoft mailbox or tenant; an administrator must enable Authenticated SMTP for the mailbox"
        ),
        Trouble::NeedsAuthorization => format!(
            "{p}: the account must be authorized again; run: {}",
            authorize_command(report.cli, &report.account)
        ),
        Trouble::NoStartTls => format!(
            "{p}: {server} does not offer STARTTLS, so the token was not sent (use the implicit-TLS port, or check for a man in the middle)"
        ),
        Trouble::CommandRefused => format!(
            "{p}: the server accepted the login, then refused {} right after it; the server misbehaves",
            protocol.command()
        ),
        Trouble::Protocol => {
            format!("{p}: the server misbehaves (an answer the protocol does not allow)")
        }
    }
}

/// The report as it is built: printed line by line (or collected for `--json`).
struct Report<'a> {
    cli: &'a Cli,
    account: String,
    json: bool,
    token: Option<Value>,
    protocols: Vec<Value>,
    /// The first failure: exit code, verdict words, details for stderr.
    failure: Option<(u8, String, String)>,
}

impl Report<'_> {
    fn say(&self, line: &str) {
        if !self.json {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }

    fn note(&self, line: &str) {
        self.say(&format!("  ({line})"));
    }

    fn fail(&mut self, code: u8, verdict: String, detail: String) {
        if self.failure.is_none() {
            self.failure = Some((code, verdict, detail));
        }
    }

    fn token_ok(&mut self, refresher: &Refresher, name: &str, token: &SecretString) {
        let print = fingerprint(token.expose_secret());
        let left = refresher
            .store()
            .load(name)
            .ok()
            .flatten()
            .filter(|t| t.access_token.expose_secret() == token.expose_secret())
            .map(|t| (t.expires_at - now_unix()).max(0) / 60);
        let valid = left
            .map(|m| format!(", valid for {m} more min"))
            .unwrap_or_default();
        self.say(&format!("token: ok (fingerprint {print}{valid})"));
        self.token = Some(json!({"ok": true, "fingerprint": print, "minutes_left": left}));
    }

    fn token_failed(&mut self, failure: &Failure) {
        let first = failure.message.lines().next().unwrap_or("").to_string();
        let verdict = match failure.code {
            NEEDS_AUTHORIZATION => format!(
                "no access token: {}; run: {}",
                first.trim_end_matches('.'),
                authorize_command(self.cli, &self.account)
            ),
            TEMPORARY => format!(
                "no access token: the provider is unavailable ({}); nothing to fix, try again later",
                first.trim_end_matches('.')
            ),
            CONFIGURATION => format!("no access token: {}", first.trim_end_matches('.')),
            _ => format!("no access token: {first}"),
        };
        self.say(&format!("token: FAILED: {first}"));
        self.token = Some(json!({"ok": false, "error": failure.message}));
        self.fail(failure.code, verdict, failure.message.clone());
    }

    fn protocol(&mut self, protocol: Protocol, server: &Upstream) {
        self.say(&format!("{} {server}", protocol.name()));
        self.protocols.push(json!({
            "protocol": protocol.name(),
            "server": server.to_string(),
            "capabilities": Value::Null,
            "logins": [],
        }));
    }

    fn attempt(&mut self, a: Attempt) {
        let entry = self.protocols.last_mut().expect("protocol() first");
        if entry["capabilities"].is_null() && !a.capabilities.is_empty() {
            entry["capabilities"] = json!(a.capabilities);
            // IMAP's are words; POP3's CAPA lines and SMTP's keywords may hold spaces.
            let sep = if a.protocol == Protocol::Imap {
                " "
            } else {
                ", "
            };
            self.say(&format!("  capabilities: {}", a.capabilities.join(sep)));
        }
        let timings: Vec<String> = a
            .timings
            .iter()
            .map(|(step, d)| {
                let what = match step {
                    Step::Command => a.protocol.command(),
                    s => s.name(),
                };
                format!("{what} {:.1} ms", d.as_secs_f64() * 1000.0)
            })
            .collect();
        let label = a.login.unwrap_or("login");
        let timing_json: serde_json::Map<String, Value> = a
            .timings
            .iter()
            .map(|(s, d)| (s.name().to_string(), json!(d.as_secs_f64() * 1000.0)))
            .collect();
        let mut record = json!({
            "login": a.login,
            "ok": a.outcome.is_ok(),
            "timings_ms": timing_json,
        });
        match &a.outcome {
            Ok(()) => self.say(&format!("  {label}: ok ({})", timings.join(", "))),
            Err(p) => {
                self.say(&format!(
                    "  {label}: FAILED at {} ({}): {}",
                    if p.step == Step::Command {
                        a.protocol.command()
                    } else {
                        p.step.name()
                    },
                    timings.join(", "),
                    p.text
                ));
                record["failed_step"] = json!(p.step.name());
                record["problem"] = json!(p.text);
                let verdict = headline(self, a.protocol, &a, p.trouble);
                let detail = format!("{} {}: {}", a.protocol.name(), a.server, p.text);
                self.fail(exit_code(p.trouble), verdict, detail);
            }
        }
        let entry = self.protocols.last_mut().expect("protocol() first");
        entry["logins"]
            .as_array_mut()
            .expect("an array")
            .push(record);
    }

    /// Prints the verdict (and the JSON document) and turns a failure into the exit code.
    fn finish(self) -> Result<(), Failure> {
        let (code, verdict) = match &self.failure {
            None => (0, format!("OK: every login of {} works", self.account)),
            Some((code, verdict, _)) => (*code, format!("FAILED (exit {code}): {verdict}")),
        };
        if self.json {
            let doc = json!({
                "account": self.account,
                "ok": self.failure.is_none(),
                "exit_code": code,
                "verdict": verdict,
                "token": self.token,
                "protocols": self.protocols,
            });
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{doc:#}");
            let _ = out.flush();
        } else {
            self.say(&format!("verdict: {verdict}"));
        }
        match self.failure {
            None => Ok(()),
            Some((code, _, detail)) => Err(Failure::new(code, detail)),
        }
    }
}
