//! Ready-to-paste client configuration for a new account: mutt, neomutt, msmtp, mbsync, aerc.
//! Without the proxy the clients speak OAuth themselves (OAUTHBEARER or XOAUTH2 with
//! `mailoauth token ACCOUNT` as the token command); with it they log in to the local listeners
//! with the local password. The examples in `config/` are this module's output for
//! `me@gmail.com` (a test compares them), so the two cannot drift apart.

use std::fmt::Write;

use tokenlib::provider::ProviderKind;

/// How a client reaches a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// TLS from the first byte.
    Implicit,
    /// STARTTLS, required.
    Starttls,
    /// None: only for the proxy's plain loopback listeners.
    Plain,
}

/// A server as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub host: String,
    pub port: u16,
    pub tls: Tls,
}

/// What the snippets are for.
#[derive(Debug, Clone)]
pub struct Target {
    /// The account name: the login, and the sender address.
    pub account: String,
    pub provider: ProviderKind,
    /// `mailoauth token ACCOUNT` (with `--config` when one was given).
    pub token_command: String,
    /// Where the client reads mail (IMAP) and sends it (SMTP), if it does.
    pub imap: Option<Server>,
    pub smtp: Option<Server>,
    /// The servers are the proxy's local listeners: log in with the local password.
    pub proxy: bool,
}

/// One client's snippet.
pub struct Snippet {
    pub client: &'static str,
    /// Where it goes.
    pub file: &'static str,
    pub text: String,
}

/// All snippets for `t` (a client is left out when it has nothing to do, e.g. msmtp without SMTP).
pub fn snippets(t: &Target) -> Vec<Snippet> {
    let mut out = Vec::new();
    if t.imap.is_some() || t.smtp.is_some() {
        out.push(Snippet {
            client: "mutt",
            file: "~/.muttrc",
            text: mutt(t, "spoolfile"),
        });
        out.push(Snippet {
            client: "neomutt",
            file: "~/.config/neomutt/neomuttrc",
            text: mutt(t, "spool_file"),
        });
    }
    if t.imap.is_some() {
        out.push(Snippet {
            client: "mbsync",
            file: "~/.mbsyncrc",
            text: mbsync(t),
        });
    }
    if t.smtp.is_some() {
        out.push(Snippet {
            client: "msmtp",
            file: "~/.msmtprc (or ~/.config/msmtp/config)",
            text: msmtp(t),
        });
    }
    if t.imap.is_some() {
        out.push(Snippet {
            client: "aerc",
            file: "~/.config/aerc/accounts.conf",
            text: aerc(t),
        });
    }
    out
}

/// A short name for the account in files that need one: the first label of the domain.
fn label(account: &str) -> String {
    let domain = account.rsplit_once('@').map_or(account, |(_, d)| d);
    let first = domain.split('.').next().unwrap_or(domain);
    let label: String = first
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    if label.is_empty() {
        "mail".into()
    } else {
        label
    }
}

/// Microsoft's servers take only XOAUTH2; the others get OAUTHBEARER first.
fn mutt_mechanisms(p: ProviderKind) -> &'static str {
    match p {
        ProviderKind::Microsoft => "xoauth2",
        _ => "oauthbearer:xoauth2",
    }
}

fn single_mechanism(p: ProviderKind) -> &'static str {
    match p {
        ProviderKind::Microsoft => "xoauth2",
        _ => "oauthbearer",
    }
}

/// `host` or `host:port` when the port is not the scheme's default.
fn host_port(s: &Server, default: u16) -> String {
    if s.port == default {
        s.host.clone()
    } else {
        format!("{}:{}", s.host, s.port)
    }
}

fn mutt(t: &Target, spool: &str) -> String {
    let mut o = String::new();
    let user = &t.account;
    let mut starttls = false;
    let mut plain = false;
    if let Some(s) = &t.imap {
        let (scheme, default) = match s.tls {
            Tls::Implicit => ("imaps", 993),
            _ => ("imap", 143),
        };
        starttls |= s.tls == Tls::Starttls;
        plain |= s.tls == Tls::Plain;
        let _ = writeln!(o, "set imap_user = \"{user}\"");
        let _ = writeln!(o, "set folder = \"{scheme}://{}/\"", host_port(s, default));
        let _ = writeln!(o, "set {spool} = \"+INBOX\"");
        if !t.proxy {
            let _ = writeln!(
                o,
                "set imap_authenticators = \"{}\"",
                mutt_mechanisms(t.provider)
            );
            let _ = writeln!(
                o,
                "set imap_oauth_refresh_command = \"{}\"",
                t.token_command
            );
        }
    }
    if let Some(s) = &t.smtp {
        starttls |= s.tls == Tls::Starttls;
        plain |= s.tls == Tls::Plain;
    }
    if plain {
        // mutt 2.2 refuses unencrypted connections by default; this one stays on loopback.
        let _ = writeln!(o, "set ssl_starttls = no");
        let _ = writeln!(o, "set ssl_force_tls = no");
    }
    if let Some(s) = &t.smtp {
        let (scheme, default) = match s.tls {
            Tls::Implicit => ("smtps", 465),
            _ => ("smtp", 25),
        };
        if !o.is_empty() {
            o.push('\n');
        }
        let _ = writeln!(
            o,
            "set smtp_url = \"{scheme}://{user}@{}/\"",
            host_port(s, default)
        );
        if !t.proxy {
            let _ = writeln!(
                o,
                "set smtp_authenticators = \"{}\"",
                mutt_mechanisms(t.provider)
            );
            let _ = writeln!(
                o,
                "set smtp_oauth_refresh_command = \"{}\"",
                t.token_command
            );
        }
    }
    if starttls {
        let _ = writeln!(o, "set ssl_starttls = yes");
        let _ = writeln!(o, "set ssl_force_tls = yes");
    }
    if t.proxy {
        let _ = writeln!(
            o,
            "# mutt asks for the local password (or: set imap_pass / smtp_pass)"
        );
    }
    o
}

fn msmtp(t: &Target) -> String {
    let Some(s) = &t.smtp else {
        return String::new();
    };
    let name = label(&t.account);
    let user = &t.account;
    let mut o = String::new();
    let _ = writeln!(o, "account {name}");
    let _ = writeln!(o, "host {}", s.host);
    let _ = writeln!(o, "port {}", s.port);
    match s.tls {
        Tls::Implicit => o.push_str("tls on\ntls_starttls off\n"),
        Tls::Starttls => o.push_str("tls on\ntls_starttls on\n"),
        Tls::Plain => o.push_str("tls off\n"),
    }
    if t.proxy {
        let _ = writeln!(o, "auth plain");
    } else {
        let _ = writeln!(o, "auth {}", single_mechanism(t.provider));
    }
    let _ = writeln!(o, "user {user}");
    let _ = writeln!(o, "from {user}");
    if t.proxy {
        let _ = writeln!(
            o,
            "# msmtp asks for the local password (or: passwordeval \"a command printing it\")"
        );
    } else {
        let _ = writeln!(o, "passwordeval \"{}\"", t.token_command);
    }
    let _ = write!(o, "\naccount default : {name}\n");
    o
}

fn mbsync(t: &Target) -> String {
    let Some(s) = &t.imap else {
        return String::new();
    };
    let name = label(&t.account);
    let mut o = String::new();
    let _ = writeln!(o, "IMAPAccount {name}");
    let _ = writeln!(o, "Host {}", s.host);
    let default = if s.tls == Tls::Implicit { 993 } else { 143 };
    if s.port != default {
        let _ = writeln!(o, "Port {}", s.port);
    }
    let _ = writeln!(o, "User {}", t.account);
    if t.proxy {
        let _ = writeln!(o, "AuthMechs LOGIN");
        let _ = writeln!(
            o,
            "# mbsync asks for the local password (or: PassCmd \"a command printing it\")"
        );
    } else {
        let _ = writeln!(o, "PassCmd \"{}\"", t.token_command);
        let _ = writeln!(o, "AuthMechs XOAUTH2");
    }
    let tls = match s.tls {
        Tls::Implicit => "IMAPS",
        Tls::Starttls => "STARTTLS",
        Tls::Plain => "None",
    };
    let _ = writeln!(o, "TLSType {tls}");
    let _ = write!(
        o,
        "\nIMAPStore {name}-remote\nAccount {name}\n\nMaildirStore {name}-local\nPath ~/Mail/{name}/\nInbox ~/Mail/{name}/INBOX\nSubFolders Verbatim\n\nChannel {name}\nFar :{name}-remote:\nNear :{name}-local:\nPatterns *\nCreate Both\nSyncState *\n"
    );
    o
}

/// Percent-encodes a URL's user part (`@` becomes `%40`), as aerc wants.
fn url_user(user: &str) -> String {
    user.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn aerc(t: &Target) -> String {
    let user = url_user(&t.account);
    let auth = if t.proxy {
        String::new()
    } else {
        format!("+{}", single_mechanism(t.provider))
    };
    let mut o = String::new();
    let _ = writeln!(o, "[{}]", label(&t.account));
    if let Some(s) = &t.imap {
        let scheme = match s.tls {
            Tls::Implicit => "imaps",
            Tls::Starttls => "imap",
            Tls::Plain => "imap+insecure",
        };
        let _ = writeln!(o, "source = {scheme}{auth}://{user}@{}:{}", s.host, s.port);
        if !t.proxy {
            let _ = writeln!(o, "source-cred-cmd = {}", t.token_command);
        }
    }
    if let Some(s) = &t.smtp {
        let scheme = match s.tls {
            Tls::Implicit => "smtps",
            Tls::Starttls => "smtp",
            Tls::Plain => "smtp+insecure",
        };
        let _ = writeln!(
            o,
            "outgoing = {scheme}{auth}://{user}@{}:{}",
            s.host, s.port
        );
        if !t.proxy {
            let _ = writeln!(o, "outgoing-cred-cmd = {}", t.token_command);
        }
    }
    let _ = writeln!(o, "default = INBOX");
    let _ = writeln!(o, "from = {}", t.account);
    if t.proxy {
        let _ = writeln!(
            o,
            "# the local password: source-cred-cmd / outgoing-cred-cmd = a command printing it"
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gmail(proxy: bool) -> Target {
        let server = |host: &str, port| Server {
            host: host.into(),
            port,
            tls: Tls::Implicit,
        };
        Target {
            account: "me@gmail.com".into(),
            provider: ProviderKind::Google,
            token_command: "mailoauth token me@gmail.com".into(),
            imap: Some(server("imap.gmail.com", 993)),
            smtp: Some(server("smtp.gmail.com", 465)),
            proxy,
        }
    }

    fn local(port: u16) -> Option<Server> {
        Some(Server {
            host: "127.0.0.1".into(),
            port,
            tls: Tls::Plain,
        })
    }

    /// The lines that matter: no comments, no blank lines, no trailing spaces.
    fn significant(text: &str) -> Vec<String> {
        text.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .map(|l| match l.find(" #") {
                Some(i) => l[..i].trim_end().to_string(),
                None => l.trim_end().to_string(),
            })
            .filter(|l| !l.is_empty())
            .collect()
    }

    fn snippet(t: &Target, client: &str) -> String {
        snippets(t)
            .into_iter()
            .find(|s| s.client == client)
            .unwrap_or_else(|| panic!("no {client} snippet"))
            .text
    }

    #[test]
    fn the_examples_in_config_are_this_output() {
        let t = gmail(false);
        let cases = [
            ("mutt", include_str!("../../../../config/muttrc")),
            ("neomutt", include_str!("../../../../config/neomuttrc")),
            ("msmtp", include_str!("../../../../config/msmtprc")),
            ("mbsync", include_str!("../../../../config/mbsyncrc")),
            (
                "aerc",
                include_str!("../../../../config/aerc-accounts.conf"),
            ),
        ];
        for (client, file) in cases {
            assert_eq!(
                significant(&snippet(&t, client)),
                significant(file),
                "{client}"
            );
        }
        let mut proxied = gmail(true);
        proxied.imap = local(1143);
        proxied.smtp = None;
        assert_eq!(
            significant(&snippet(&proxied, "mutt")),
            significant(include_str!("../../../../config/muttrc-proxy"))
        );
    }

    #[test]
    fn microsoft_gets_xoauth2_and_starttls_on_587() {
        let t = Target {
            account: "me@contoso.com".into(),
            provider: ProviderKind::Microsoft,
            token_command: "mailoauth --config '/my dir/c.toml' token me@contoso.com".into(),
            imap: Some(Server {
                host: "outlook.office365.com".into(),
                port: 993,
                tls: Tls::Implicit,
            }),
            smtp: Some(Server {
                host: "smtp.office365.com".into(),
                port: 587,
                tls: Tls::Starttls,
            }),
            proxy: false,
        };
        let mutt = snippet(&t, "mutt");
        assert!(
            mutt.contains("set imap_authenticators = \"xoauth2\"\n"),
            "{mutt}"
        );
        assert!(
            mutt.contains("set smtp_url = \"smtp://me@contoso.com@smtp.office365.com:587/\"\n"),
            "{mutt}"
        );
        assert!(mutt.contains("set ssl_starttls = yes\n"), "{mutt}");
        assert!(mutt.contains(
            "refresh_command = \"mailoauth --config '/my dir/c.toml' token me@contoso.com\""
        ));
        let msmtp = snippet(&t, "msmtp");
        assert!(
            msmtp.contains("port 587\ntls on\ntls_starttls on\nauth xoauth2\n"),
            "{msmtp}"
        );
        assert!(msmtp.starts_with("account contoso\n"));
        let aerc = snippet(&t, "aerc");
        assert!(
            aerc.contains("source = imaps+xoauth2://me%40contoso.com@outlook.office365.com:993\n"),
            "{aerc}"
        );
        assert!(
            aerc.contains("outgoing = smtp+xoauth2://me%40contoso.com@smtp.office365.com:587\n"),
            "{aerc}"
        );
    }

    #[test]
    fn through_the_proxy_clients_use_plain_logins_on_loopback_and_no_token_command() {
        let mut t = gmail(true);
        t.imap = local(1143);
        t.smtp = local(1587);
        for s in snippets(&t) {
            assert!(
                !s.text.contains("mailoauth token"),
                "{}: {}",
                s.client,
                s.text
            );
            assert!(
                !s.text.to_lowercase().contains("oauth"),
                "{}: {}",
                s.client,
                s.text
            );
            assert!(s.text.contains("127.0.0.1"), "{}", s.client);
        }
        let mutt = snippet(&t, "mutt");
        assert!(
            mutt.contains("set folder = \"imap://127.0.0.1:1143/\"\n"),
            "{mutt}"
        );
        assert!(
            mutt.contains("set smtp_url = \"smtp://me@gmail.com@127.0.0.1:1587/\"\n"),
            "{mutt}"
        );
        let msmtp = snippet(&t, "msmtp");
        assert!(
            msmtp.contains("host 127.0.0.1\nport 1587\ntls off\nauth plain\n"),
            "{msmtp}"
        );
        let mbsync = snippet(&t, "mbsync");
        assert!(mbsync.contains("Host 127.0.0.1\nPort 1143\n"), "{mbsync}");
        assert!(
            mbsync.contains("AuthMechs LOGIN\n") && mbsync.contains("TLSType None\n"),
            "{mbsync}"
        );
        let aerc = snippet(&t, "aerc");
        assert!(
            aerc.contains("source = imap+insecure://me%40gmail.com@127.0.0.1:1143\n"),
            "{aerc}"
        );

        // No SMTP: no msmtp snippet.
        t.smtp = None;
        assert!(snippets(&t).iter().all(|s| s.client != "msmtp"));
    }
}
