//! From configuration to the token engine: an account's [`tokenlib::Account`] and the [`Store`]
//! its tokens live in.

use std::sync::Arc;

use tokenlib::provider::{
    self, EndpointSource, PartialEndpoints, Protocols, ProviderKind, google_endpoints,
    microsoft_endpoints,
};
use tokenlib::store::keyring::KeyringSealer;
use tokenlib::store::{CommandPipe, Plaintext, Sealer, Store};
use tokenlib::{Account, FlowKind};

use crate::config::{AccountConfig, Config, Paths, StoreKind};

/// The token-engine view of the account `name`.
pub fn token_account(name: &str, cfg: &AccountConfig) -> Account {
    let overrides = PartialEndpoints {
        authorize: cfg.authorize_url.clone(),
        token: cfg.token_url.clone(),
        device: cfg.device_url.clone(),
    };
    let endpoints = match (cfg.provider, &cfg.issuer) {
        (ProviderKind::Google, _) => EndpointSource::Known(overrides.over(google_endpoints())),
        (ProviderKind::Microsoft, _) => {
            EndpointSource::Known(overrides.over(microsoft_endpoints(&cfg.tenant)))
        }
        (ProviderKind::Generic, Some(issuer)) => EndpointSource::Discover {
            issuer: issuer.clone(),
            overrides,
        },
        (ProviderKind::Generic, None) => EndpointSource::Known(tokenlib::provider::Endpoints {
            authorize: overrides.authorize,
            token: overrides
                .token
                .expect("validated: generic accounts have issuer or token_url"),
            device: overrides.device,
        }),
    };
    let app_only = cfg.flow == FlowKind::ClientCredentials;
    let protocols = Protocols {
        imap: cfg.imap.is_some(),
        pop3: cfg.pop3.is_some(),
        smtp: cfg.smtp.is_some(),
    };
    let scopes = cfg
        .scopes
        .clone()
        .unwrap_or_else(|| provider::default_scopes(cfg.provider, protocols, app_only));
    let mut auth_params = provider::authorization_params(cfg.provider);
    for (k, v) in &cfg.auth_params {
        auth_params.retain(|(key, _)| key != k);
        auth_params.push((k.clone(), v.clone()));
    }
    let login_hint = cfg
        .login_hint
        .clone()
        .or_else(|| (!app_only && name.contains('@')).then(|| name.to_string()));
    Account {
        name: name.to_string(),
        provider: cfg.provider,
        endpoints,
        client_id: cfg.client_id.clone(),
        client_secret: cfg.client_secret.clone(),
        client_auth_basic: cfg.client_auth_basic,
        scopes,
        auth_params,
        flow: cfg.flow,
        redirect_uri: cfg.redirect_uri.clone(),
        login_hint,
    }
}

/// The sealer the configuration chose.
pub fn sealer(kind: &StoreKind) -> Arc<dyn Sealer> {
    match kind {
        StoreKind::Command { encrypt, decrypt } => Arc::new(CommandPipe {
            encrypt: encrypt.clone(),
            decrypt: decrypt.clone(),
        }),
        StoreKind::Keyring => Arc::new(KeyringSealer::default()),
        StoreKind::Plaintext => Arc::new(Plaintext),
        StoreKind::Password => Arc::new(tokenlib::store::password::PasswordSealer::new()),
    }
}

/// The token store the configuration describes.
pub fn open_store(config: &Config, paths: &Paths) -> Store {
    let dir = config
        .store
        .dir
        .clone()
        .unwrap_or_else(|| paths.state_dir.join("tokens"));
    Store::new(dir, sealer(&config.store.kind))
}

/// The identity sent upstream in SASL (`user=` / `a=`): the configured `user`, else the account.
pub fn upstream_user<'a>(name: &'a str, cfg: &'a AccountConfig) -> &'a str {
    cfg.user.as_deref().unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn microsoft_scopes_follow_configured_protocols() {
        let c = Config::parse(
            "[accounts.\"a@contoso.com\"]\nprovider = \"microsoft\"\nclient_id = \"c\"\ntenant = \"t1\"\n",
        )
        .unwrap();
        let a = token_account("a@contoso.com", &c.accounts["a@contoso.com"]);
        assert_eq!(a.scopes[0], "offline_access");
        assert_eq!(a.scopes.len(), 4, "{:?}", a.scopes);
        assert_eq!(a.login_hint.as_deref(), Some("a@contoso.com"));
        match a.endpoints {
            EndpointSource::Known(e) => assert!(e.token.as_str().contains("/t1/oauth2/v2.0/token")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn overrides_and_extra_params() {
        let c = Config::parse(
            "[accounts.x]\nprovider = \"google\"\nclient_id = \"c\"\ntoken_url = \"http://127.0.0.1:1/token\"\nauth_params = { prompt = \"select_account\", hd = \"example.com\" }\n",
        )
        .unwrap();
        let a = token_account("x", &c.accounts["x"]);
        match &a.endpoints {
            EndpointSource::Known(e) => {
                assert_eq!(e.token.as_str(), "http://127.0.0.1:1/token");
                assert_eq!(
                    e.authorize.as_ref().unwrap().as_str(),
                    provider::known::GOOGLE_AUTHORIZE
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(
            a.auth_params
                .contains(&("prompt".into(), "select_account".into()))
        );
        assert!(
            a.auth_params
                .contains(&("access_type".into(), "offline".into()))
        );
        assert_eq!(
            a.auth_params.iter().filter(|(k, _)| k == "prompt").count(),
            1
        );
        assert_eq!(a.login_hint, None, "names without @ are no login hint");
    }
}
