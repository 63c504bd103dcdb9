//! The device authorization grant (RFC 8628): the user types a short code on another device;
//! we poll the token endpoint, honouring `authorization_pending`, `slow_down` (+5 s, kept for the
//! rest of the flow, §3.5) and the code's lifetime.

use std::time::Duration;

use secrecy::ExposeSecret;
use tokio::time::Instant;

use super::{DeviceInstructions, FlowError, Prompter};
use crate::account::{Account, FlowKind};
use crate::oauth::{EndpointError, OAuthHttp};
use crate::provider::Endpoints;
use crate::token::{Grant, TokenSet, now_unix};

/// RFC 8628 §3.2: the default polling interval.
const DEFAULT_INTERVAL: u64 = 5;
/// Used when the provider does not say how long its code lives.
const DEFAULT_LIFETIME: u64 = 900;
/// Caps on what the provider says, so a broken answer cannot make us wait forever.
const MAX_LIFETIME: u64 = 3600;
const MAX_INTERVAL: u64 = 60;
/// How many transport failures in a row we sit out before giving up.
const MAX_TRANSIENT: u32 = 5;

pub(super) async fn run(
    http: &OAuthHttp,
    account: &Account,
    endpoints: &Endpoints,
    prompter: &dyn Prompter,
) -> Result<TokenSet, FlowError> {
    let device_url = endpoints.device.as_ref().ok_or_else(|| {
        FlowError::Config(format!(
            "account {} has no device authorization endpoint; set device_url, or use flow = \"loopback\" or \"paste\"",
            account.name
        ))
    })?;
    let started = Instant::now();
    let auth = http
        .device_authorization(account, device_url)
        .await
        .map_err(|e| FlowError::endpoint(account, FlowKind::Device, e))?;
    let lifetime = Duration::from_secs(
        auth.expires_in
            .filter(|s| *s > 0)
            .map_or(DEFAULT_LIFETIME, |s| (s as u64).min(MAX_LIFETIME)),
    );
    let mut interval = Duration::from_secs(
        auth.interval
            .filter(|s| *s > 0)
            .map_or(DEFAULT_INTERVAL, |s| (s as u64).min(MAX_INTERVAL)),
    );
    prompter.show_device_code(&DeviceInstructions {
        verification_uri: auth.verification_uri.clone(),
        user_code: auth.user_code.clone(),
        verification_uri_complete: auth.verification_uri_complete.clone(),
        message: auth.message.clone(),
        expires_in: lifetime,
    });
    let deadline = started + lifetime;
    let mut transient = 0;
    loop {
        if Instant::now() + interval > deadline {
            return Err(FlowError::TimedOut(
                "the device code expired before the sign-in was completed; run the authorization again".into(),
            ));
        }
        tokio::time::sleep(interval).await;
        let requested_at = now_unix();
        let params = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", auth.device_code.expose_secret()),
        ];
        match http.token_request(account, &endpoints.token, &params).await {
            Ok(response) => return Ok(response.into_token_set(requested_at, Grant::User)),
            Err(EndpointError::Provider(p)) => match p.error.as_str() {
                "authorization_pending" => transient = 0,
                "slow_down" => {
                    interval += Duration::from_secs(5);
                    transient = 0;
                }
                "access_denied" | "authorization_declined" => {
                    return Err(FlowError::Denied {
                        error: p.error,
                        description: p.description,
                    });
                }
                _ => {
                    return Err(FlowError::endpoint(
                        account,
                        FlowKind::Device,
                        EndpointError::Provider(p),
                    ));
                }
            },
            Err(e) if e.is_transient() && transient < MAX_TRANSIENT => {
                // RFC 8628 §3.5: back off on connection problems too.
                transient += 1;
                interval = (interval * 2).min(Duration::from_secs(60));
            }
            Err(e) => return Err(FlowError::endpoint(account, FlowKind::Device, e)),
        }
    }
}
