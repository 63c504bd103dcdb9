//! Provider presets (Google, Microsoft with a tenant, generic) and the endpoint policy.
//!
//! A preset supplies endpoints, default scopes and the extra authorization parameters a provider
//! needs; any of its endpoints can be overridden (tests, sovereign clouds, local providers).
//! Generic providers give their endpoints explicitly or an issuer for OIDC discovery.

use url::Url;

/// Google's and Microsoft's scopes, and Microsoft's endpoints, as documented by them.
pub mod known {
    /// Google: one scope for IMAP, POP and SMTP (there is no narrower one).
    pub const GOOGLE_MAIL_SCOPE: &str = "https://mail.google.com/";
    pub const GOOGLE_AUTHORIZE: &str = "https://accounts.google.com/o/oauth2/v2/auth";
    pub const GOOGLE_TOKEN: &str = "https://oauth2.googleapis.com/token";
    pub const GOOGLE_DEVICE: &str = "https://oauth2.googleapis.com/device/code";
    /// Microsoft delegated scopes for the three protocols (Outlook resource).
    pub const MS_IMAP_SCOPE: &str = "https://outlook.office.com/IMAP.AccessAsUser.All";
    pub const MS_POP_SCOPE: &str = "https://outlook.office.com/POP.AccessAsUser.All";
    pub const MS_SMTP_SCOPE: &str = "https://outlook.office.com/SMTP.Send";
    /// Needed for Microsoft to issue a refresh token at all.
    pub const MS_OFFLINE_SCOPE: &str = "offline_access";
    /// App-only (client credentials) scope for Exchange Online.
    pub const MS_APP_SCOPE: &str = "https://outlook.office365.com/.default";
    pub const MS_LOGIN_HOST: &str = "https://login.microsoftonline.com";
}

/// Which preset an account uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    Google,
    Microsoft,
    Generic,
}

impl ProviderKind {
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::Google => "google",
            ProviderKind::Microsoft => "microsoft",
            ProviderKind::Generic => "generic",
        }
    }
}

/// The OAuth endpoints of a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// Authorization endpoint (browser flows); `None` if the provider has none configured.
    pub authorize: Option<Url>,
    /// Token endpoint; every flow and every refresh uses it.
    pub token: Url,
    /// Device authorization endpoint (RFC 8628), if the provider offers one.
    pub device: Option<Url>,
}

/// Where the endpoints come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointSource {
    /// Fully known (preset or explicit URLs).
    Known(Endpoints),
    /// OIDC discovery at `<issuer>/.well-known/openid-configuration`, with explicit URLs taking
    /// precedence over what discovery says.
    Discover {
        issuer: Url,
        overrides: PartialEndpoints,
    },
}

/// Endpoints a user configured explicitly; each overrides the preset's or discovery's value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartialEndpoints {
    pub authorize: Option<Url>,
    pub token: Option<Url>,
    pub device: Option<Url>,
}

impl PartialEndpoints {
    pub fn is_empty(&self) -> bool {
        self.authorize.is_none() && self.token.is_none() && self.device.is_none()
    }

    /// Applies the overrides on top of `base`.
    pub fn over(&self, base: Endpoints) -> Endpoints {
        Endpoints {
            authorize: self.authorize.clone().or(base.authorize),
            token: self.token.clone().unwrap_or(base.token),
            device: self.device.clone().or(base.device),
        }
    }
}

/// Which mail protocols an account uses; decides Microsoft's default scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protocols {
    pub imap: bool,
    pub pop3: bool,
    pub smtp: bool,
}

impl Protocols {
    pub const ALL: Protocols = Protocols {
        imap: true,
        pop3: true,
        smtp: true,
    };
}

fn url(s: &str) -> Url {
    Url::parse(s).expect("preset URLs are valid")
}

/// Google's endpoints.
pub fn google_endpoints() -> Endpoints {
    Endpoints {
        authorize: Some(url(known::GOOGLE_AUTHORIZE)),
        token: url(known::GOOGLE_TOKEN),
        device: Some(url(known::GOOGLE_DEVICE)),
    }
}

/// Microsoft identity platform v2.0 endpoints for a tenant (`common`, `consumers`,
/// `organizations` or a tenant id / domain).
pub fn microsoft_endpoints(tenant: &str) -> Endpoints {
    let base = format!("{}/{tenant}/oauth2/v2.0", known::MS_LOGIN_HOST);
    Endpoints {
        authorize: Some(url(&format!("{base}/authorize"))),
        token: url(&format!("{base}/token")),
        device: Some(url(&format!("{base}/devicecode"))),
    }
}

/// Default scopes for a provider, the protocols in use and the kind of grant.
pub fn default_scopes(kind: ProviderKind, protocols: Protocols, app_only: bool) -> Vec<String> {
    match kind {
        ProviderKind::Google => vec![known::GOOGLE_MAIL_SCOPE.into()],
        ProviderKind::Microsoft if app_only => vec![known::MS_APP_SCOPE.into()],
        ProviderKind::Microsoft => {
            let mut scopes = vec![known::MS_OFFLINE_SCOPE.to_string()];
            if protocols.imap {
                scopes.push(known::MS_IMAP_SCOPE.into());
            }
            if protocols.pop3 {
                scopes.push(known::MS_POP_SCOPE.into());
            }
            if protocols.smtp {
                scopes.push(known::MS_SMTP_SCOPE.into());
            }
            scopes
        }
        ProviderKind::Generic => Vec::new(),
    }
}

/// Extra authorization-request parameters a provider needs. Google only issues a refresh token
/// with `access_type=offline`, and only again on re-authorization with `prompt=consent`.
pub fn authorization_params(kind: ProviderKind) -> Vec<(String, String)> {
    match kind {
        ProviderKind::Google => vec![
            ("access_type".into(), "offline".into()),
            ("prompt".into(), "consent".into()),
        ],
        ProviderKind::Microsoft | ProviderKind::Generic => Vec::new(),
    }
}

/// The host a loopback redirect URI names. Microsoft registers `http://localhost` for desktop
/// ("mobile and desktop") clients and matches any port on it; Google and RFC 8252 §7.3 want the
/// literal `127.0.0.1`. The listener binds 127.0.0.1 either way.
pub fn loopback_redirect_host(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Microsoft => "localhost",
        ProviderKind::Google | ProviderKind::Generic => "127.0.0.1",
    }
}

/// True for host names and addresses that stay on this machine.
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// The endpoint policy: HTTPS, or plain HTTP to a loopback host (tests, local providers). Tokens
/// and client secrets never cross a network unencrypted.
pub fn check_endpoint(url: &Url) -> Result<(), String> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_host(url) => Ok(()),
        "http" => Err(format!(
            "{url} uses plain http to a non-loopback host; use https (http:// is accepted only for 127.0.0.1, ::1 and localhost)"
        )),
        other => Err(format!(
            "{url} has scheme {other:?}; OAuth endpoints must be https:// URLs"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn microsoft_tenant_endpoints() {
        let e = microsoft_endpoints("organizations");
        assert_eq!(
            e.token.as_str(),
            "https://login.microsoftonline.com/organizations/oauth2/v2.0/token"
        );
        assert_eq!(
            e.device.unwrap().as_str(),
            "https://login.microsoftonline.com/organizations/oauth2/v2.0/devicecode"
        );
    }

    #[test]
    fn microsoft_scopes_follow_protocols() {
        let only_imap = Protocols {
            imap: true,
            pop3: false,
            smtp: false,
        };
        assert_eq!(
            default_scopes(ProviderKind::Microsoft, only_imap, false),
            vec![known::MS_OFFLINE_SCOPE, known::MS_IMAP_SCOPE]
        );
        assert_eq!(
            default_scopes(ProviderKind::Microsoft, Protocols::ALL, true),
            vec![known::MS_APP_SCOPE]
        );
        assert_eq!(
            default_scopes(ProviderKind::Google, Protocols::ALL, false),
            vec![known::GOOGLE_MAIL_SCOPE]
        );
    }

    #[test]
    fn endpoint_policy() {
        for ok in [
            "https://x.example/token",
            "http://127.0.0.1:8/t",
            "http://localhost/t",
            "http://[::1]:9/t",
        ] {
            assert!(check_endpoint(&Url::parse(ok).unwrap()).is_ok(), "{ok}");
        }
        for bad in [
            "http://example.com/token",
            "http://10.0.0.1/t",
            "ftp://x/y",
            "http://localhost.evil.com/t",
        ] {
            assert!(check_endpoint(&Url::parse(bad).unwrap()).is_err(), "{bad}");
        }
    }

    #[test]
    fn overrides_win() {
        let o = PartialEndpoints {
            token: Some(Url::parse("http://127.0.0.1:1/token").unwrap()),
            ..Default::default()
        };
        let e = o.over(google_endpoints());
        assert_eq!(e.token.as_str(), "http://127.0.0.1:1/token");
        assert_eq!(e.authorize.unwrap().as_str(), known::GOOGLE_AUTHORIZE);
    }
}
