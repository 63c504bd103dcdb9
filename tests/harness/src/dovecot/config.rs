//! What a test can choose about its Dovecot, and the dovecot.conf / oauth2.conf.ext / users
//! files made from it (settings and their reasons: /work/shared/reference/dovecot.md).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::authserver::AuthServer;

/// Which SASL mechanisms Dovecot offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mechanisms {
    /// `PLAIN LOGIN XOAUTH2 OAUTHBEARER` (Gmail-like; PLAIN always fails: no password passdb).
    #[default]
    Both,
    /// Only `XOAUTH2` (Microsoft-like).
    XOAuth2Only,
    /// Only `OAUTHBEARER`.
    OAuthBearerOnly,
}

impl Mechanisms {
    fn auth_mechanisms(self) -> &'static str {
        match self {
            Mechanisms::Both => "plain login xoauth2 oauthbearer",
            Mechanisms::XOAuth2Only => "xoauth2",
            Mechanisms::OAuthBearerOnly => "oauthbearer",
        }
    }
}

/// Which protocols run. Each protocol gets a STARTTLS port and an implicit-TLS port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Services {
    /// IMAP (plain+STARTTLS and imaps).
    pub imap: bool,
    /// POP3 (plain+STLS and pop3s).
    pub pop3: bool,
    /// Submission (587-style STARTTLS and 465-style implicit TLS), relaying to a sink.
    pub submission: bool,
}

impl Default for Services {
    fn default() -> Self {
        Services::ALL
    }
}

impl Services {
    /// All three.
    pub const ALL: Services = Services {
        imap: true,
        pop3: true,
        submission: true,
    };
    /// Only IMAP.
    pub const IMAP: Services = Services {
        imap: true,
        pop3: false,
        submission: false,
    };
    /// Only POP3.
    pub const POP3: Services = Services {
        imap: false,
        pop3: true,
        submission: false,
    };
    /// Only submission.
    pub const SUBMISSION: Services = Services {
        imap: false,
        pop3: false,
        submission: true,
    };
}

/// How to start a [`super::Dovecot`]. Make it with [`DovecotOptions::new`] from the
/// [`AuthServer`] whose tokens Dovecot should accept.
#[derive(Clone)]
pub struct DovecotOptions {
    /// RFC 7662 introspection URL with the resource-server credentials embedded
    /// (`http://ID:SECRET@127.0.0.1:PORT/introspect`).
    pub introspection_url: String,
    /// Put into Dovecot's error challenges (`openid-configuration`).
    pub openid_configuration_url: Option<String>,
    /// Login names that exist (userdb entries with a Maildir each).
    pub users: Vec<String>,
    /// Mechanisms offered.
    pub mechanisms: Mechanisms,
    /// Protocols run.
    pub services: Services,
    /// A scope the introspection answer must contain (Dovecot's `scope` setting); none by default.
    pub required_scope: Option<String>,
    /// `auth_debug = yes` (Dovecot then logs more, including parts of requests; off by default).
    pub auth_debug: bool,
    /// How long to wait for Dovecot to accept connections.
    pub start_timeout: Duration,
}

impl std::fmt::Debug for DovecotOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DovecotOptions")
            .field("users", &self.users)
            .field("mechanisms", &self.mechanisms)
            .field("services", &self.services)
            .field("required_scope", &self.required_scope)
            .finish_non_exhaustive()
    }
}

impl DovecotOptions {
    /// Introspecting at `auth`, users `alice@example.test` and `bob@example.test`, all
    /// mechanisms, all services.
    pub fn new(auth: &AuthServer) -> DovecotOptions {
        DovecotOptions {
            introspection_url: auth.introspection_url_with_credentials(),
            openid_configuration_url: Some(auth.discovery_url()),
            users: vec![
                "alice@example.test".to_string(),
                "bob@example.test".to_string(),
            ],
            mechanisms: Mechanisms::Both,
            services: Services::ALL,
            required_scope: None,
            auth_debug: false,
            start_timeout: Duration::from_secs(10),
        }
    }

    /// Replaces the users.
    pub fn users(mut self, users: &[&str]) -> DovecotOptions {
        self.users = users.iter().map(|u| u.to_string()).collect();
        self
    }

    /// Sets the mechanisms.
    pub fn mechanisms(mut self, mechanisms: Mechanisms) -> DovecotOptions {
        self.mechanisms = mechanisms;
        self
    }

    /// Requires `scope` in the introspection answer's `scope`.
    pub fn required_scope(mut self, scope: &str) -> DovecotOptions {
        self.required_scope = Some(scope.to_string());
        self
    }

    /// Sets the services.
    pub fn services(mut self, services: Services) -> DovecotOptions {
        self.services = services;
        self
    }
}

/// Ports chosen for one start (zero = service off).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Ports {
    pub imap: u16,
    pub imaps: u16,
    pub pop3: u16,
    pub pop3s: u16,
    pub submission: u16,
    pub submissions: u16,
}

/// Everything `render_config` needs besides the options.
pub(crate) struct Layout<'a> {
    pub dir: &'a Path,
    pub instance: &'a str,
    pub ports: Ports,
    pub uid: u32,
    pub gid: u32,
    pub sink_port: u16,
}

impl Layout<'_> {
    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

/// dovecot.conf.
pub(crate) fn render_config(o: &DovecotOptions, l: &Layout<'_>) -> String {
    let mut protocols = Vec::new();
    if o.services.imap {
        protocols.push("imap");
    }
    if o.services.pop3 {
        protocols.push("pop3");
    }
    if o.services.submission {
        protocols.push("submission");
    }
    let mut c = String::new();
    let _ = write!(
        c,
        r#"# Generated by mailoauth-harness for one test; see /work/shared/reference/dovecot.md.
instance_name = {instance}
base_dir = {run}
state_dir = {state}
log_path = {log}
listen = 127.0.0.1
protocols = {protocols}
hostname = mail.example.test
postmaster_address = postmaster@example.test

ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}

first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = {gid}
last_valid_gid = {gid}
mail_location = maildir:~/Maildir
mail_max_userip_connections = 1000

auth_mechanisms = {mechs}
# A revoked or expired token must fail at once: no cache, no failure delay, no anvil penalty.
auth_cache_size = 0
auth_cache_negative_ttl = 0
auth_failure_delay = 0
auth_verbose = yes
auth_debug = {debug}
service anvil {{
  unix_listener anvil-auth-penalty {{
    path = anvil-auth-penalty-disabled
  }}
}}

passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {oauth2}
}}
userdb {{
  driver = passwd-file
  args = {users}
}}

service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = {imaps}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = {pop3s}
    ssl = yes
  }}
}}
service submission-login {{
  inet_listener submission {{
    port = {submission}
  }}
  inet_listener submissions {{
    port = {submissions}
    ssl = yes
  }}
}}
submission_relay_host = 127.0.0.1
submission_relay_port = {sink}
submission_relay_ssl = no
"#,
        instance = l.instance,
        run = l.path("run"),
        state = l.path("state"),
        log = l.path("dovecot.log"),
        protocols = protocols.join(" "),
        cert = l.path("tls/server.crt"),
        key = l.path("tls/server.key"),
        uid = l.uid,
        gid = l.gid,
        mechs = o.mechanisms.auth_mechanisms(),
        debug = if o.auth_debug { "yes" } else { "no" },
        oauth2 = l.path("oauth2.conf.ext"),
        users = l.path("users"),
        imap = l.ports.imap,
        imaps = l.ports.imaps,
        pop3 = l.ports.pop3,
        pop3s = l.ports.pop3s,
        submission = l.ports.submission,
        submissions = l.ports.submissions,
        sink = l.sink_port,
    );
    c
}

/// oauth2.conf.ext: RFC 7662 introspection at the test authorization server.
pub(crate) fn render_oauth2(o: &DovecotOptions) -> String {
    let mut c = format!(
        "introspection_mode = post\n\
         introspection_url = {}\n\
         force_introspection = yes\n\
         username_attribute = username\n\
         active_attribute = active\n\
         active_value = true\n\
         timeout_msecs = 5000\n",
        o.introspection_url
    );
    if let Some(url) = &o.openid_configuration_url {
        let _ = writeln!(c, "openid_configuration_url = {url}");
    }
    if let Some(scope) = &o.required_scope {
        let _ = writeln!(c, "scope = {scope}");
    }
    c
}

/// The passwd-file userdb: `user::uid:gid::home::`.
pub(crate) fn render_users(users: &[String], l: &Layout<'_>) -> String {
    users
        .iter()
        .map(|u| {
            format!(
                "{u}::{}:{}::{}::\n",
                l.uid,
                l.gid,
                l.dir.join("home").join(u).display()
            )
        })
        .collect()
}
