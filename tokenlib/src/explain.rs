//! Provider errors in plain language: what happened and what to do next.
//!
//! OAuth error codes are terse and provider-specific (`invalid_grant`, `AADSTS700082`, Google's
//! `invalid_scope` on the device flow). Users of the tools we replace get these raw; here each
//! common one maps to a sentence a newcomer can act on.

use crate::account::FlowKind;
use crate::oauth::{EndpointError, ProviderError};
use crate::provider::ProviderKind;

/// What the user has to do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Authorize the account again (the binary prints the exact command).
    Reauthorize,
    /// Fix the account's configuration or its app registration.
    FixConfiguration,
    /// Nothing to fix here; try again later.
    RetryLater,
}

/// An explanation of one error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// One or two sentences saying what happened and why, in plain language.
    pub text: String,
    pub next: NextStep,
}

/// Explains an endpoint error for an account of `provider` using `flow`.
pub fn explain(provider: ProviderKind, flow: FlowKind, err: &EndpointError) -> Explanation {
    match err {
        EndpointError::Provider(p) => explain_provider(provider, flow, p),
        EndpointError::Unreachable { .. } | EndpointError::Http { status: 500.., .. } => {
            Explanation {
                text: format!(
                    "The provider's token service is not answering ({err}). Your tokens are kept; mailoauth retries."
                ),
                next: NextStep::RetryLater,
            }
        }
        EndpointError::Http { .. }
        | EndpointError::BadResponse { .. }
        | EndpointError::Config(_) => Explanation {
            text: format!("{err}. Check the account's endpoints in the configuration."),
            next: NextStep::FixConfiguration,
        },
    }
}

/// Explains an OAuth error object.
pub fn explain_provider(
    provider: ProviderKind,
    flow: FlowKind,
    err: &ProviderError,
) -> Explanation {
    let desc = err.description.as_deref().unwrap_or("");
    if let Some(e) = microsoft_code(desc) {
        return e;
    }
    let reauth = |text: String| Explanation {
        text,
        next: NextStep::Reauthorize,
    };
    let fix = |text: String| Explanation {
        text,
        next: NextStep::FixConfiguration,
    };
    match err.error.as_str() {
        "invalid_grant" => {
            let mut text = String::from(
                "The provider no longer accepts this account's refresh token: it was revoked, it expired, or the account's password changed.",
            );
            if provider == ProviderKind::Google {
                text.push_str(
                    " If your Google Cloud app's publishing status is \"Testing\", Google expires its refresh tokens after 7 days: set it to \"In production\" to stop the weekly re-authorization.",
                );
            }
            reauth(text)
        }
        "interaction_required" | "login_required" => reauth(
            "The provider wants you to sign in again (multi-factor authentication or a policy change).".into(),
        ),
        "consent_required" => reauth("The provider needs you (or an administrator) to grant the app access again.".into()),
        "invalid_client" => fix(match provider {
            ProviderKind::Google => "Google does not recognise the client id or secret. Copy both again from the Google Cloud console (APIs & Services → Credentials, a \"Desktop app\" client).".into(),
            ProviderKind::Microsoft => "Microsoft does not recognise the client id or secret (secrets expire; create a new one under Certificates & secrets).".into(),
            ProviderKind::Generic => "The provider does not recognise the client id or secret in the configuration.".into(),
        }),
        "invalid_scope" if provider == ProviderKind::Google && flow == FlowKind::Device => fix(
            "Google does not issue the mail scope (https://mail.google.com/) through the device flow. Use flow = \"loopback\" (with a browser on this machine) or flow = \"paste\" (headless).".into(),
        ),
        "invalid_scope" => fix(format!(
            "The provider refused the requested scopes{}. Check the account's scopes and the API permissions of the app registration.",
            if desc.is_empty() { String::new() } else { format!(" ({desc})") }
        )),
        "unauthorized_client" => fix(match (provider, flow) {
            (ProviderKind::Microsoft, FlowKind::Device) => "The app registration does not allow the device flow: in Azure, Authentication → \"Allow public client flows\" → Yes.".into(),
            (ProviderKind::Google, _) => "This Google client type cannot use this flow: create a \"Desktop app\" OAuth client.".into(),
            _ => format!("The app registration does not allow the {} flow.", flow.name()),
        }),
        "unsupported_grant_type" => fix(format!("The provider does not support the {} flow for this app.", flow.name())),
        "redirect_uri_mismatch" => fix(
            "The provider does not accept the loopback redirect address. Register the app as a desktop/native app (Google: \"Desktop app\"; Microsoft: platform \"Mobile and desktop applications\" with http://localhost), or set redirect_uri to the registered one.".into(),
        ),
        "access_denied" | "authorization_declined" => reauth(
            "The authorization was declined (by you, or by an administrator's policy). Run the authorization again and approve the request.".into(),
        ),
        "expired_token" => reauth("The device code expired before it was entered. Start the authorization again and enter the new code within its lifetime.".into()),
        "temporarily_unavailable" | "server_error" => Explanation {
            text: format!("The provider reported a temporary problem ({err}). Try again in a few minutes."),
            next: NextStep::RetryLater,
        },
        _ => fix(format!("The provider refused the request: {err}.")),
    }
}

/// Microsoft puts the precise reason in `error_description` as an AADSTS code.
fn microsoft_code(desc: &str) -> Option<Explanation> {
    let start = desc.find("AADSTS")?;
    let digits: String = desc[start + 6..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    let (text, next): (&str, NextStep) = match digits.as_str() {
        "700082" => (
            "Microsoft expired the refresh token because it was not used for 90 days.",
            NextStep::Reauthorize,
        ),
        "50173" | "50133" => (
            "Microsoft revoked the grant, usually after a password change.",
            NextStep::Reauthorize,
        ),
        "70000" | "70008" => (
            "Microsoft no longer accepts the stored grant (revoked or expired).",
            NextStep::Reauthorize,
        ),
        "50076" | "50079" | "50158" => (
            "Microsoft requires multi-factor authentication for this sign-in.",
            NextStep::Reauthorize,
        ),
        "65001" => (
            "The app has not been granted access to the mailbox (consent missing).",
            NextStep::Reauthorize,
        ),
        "53003" => (
            "A Conditional Access policy of the tenant blocked the sign-in; ask the tenant's administrator.",
            NextStep::FixConfiguration,
        ),
        "90094" | "90095" => (
            "The tenant requires an administrator to approve this app before users can sign in.",
            NextStep::FixConfiguration,
        ),
        "700016" => (
            "No app with this client id exists in the tenant: check client_id and tenant.",
            NextStep::FixConfiguration,
        ),
        "7000215" => (
            "The client secret is wrong (use the secret's value, not its id).",
            NextStep::FixConfiguration,
        ),
        "7000222" => (
            "The client secret has expired: create a new one under Certificates & secrets.",
            NextStep::FixConfiguration,
        ),
        "7000218" => (
            "The app registration is not a public client: in Azure, Authentication → \"Allow public client flows\" → Yes, or configure client_secret.",
            NextStep::FixConfiguration,
        ),
        "7000112" => (
            "The application is disabled in the tenant.",
            NextStep::FixConfiguration,
        ),
        "50011" => (
            "The redirect address is not registered: add the platform \"Mobile and desktop applications\" with http://localhost to the app registration.",
            NextStep::FixConfiguration,
        ),
        "50020" => (
            "This account does not belong to the tenant: set tenant = \"common\", \"consumers\" (personal accounts) or your organization's tenant.",
            NextStep::FixConfiguration,
        ),
        "500011" => (
            "Exchange Online is not available in this tenant (no mailbox service).",
            NextStep::FixConfiguration,
        ),
        "900144" => (
            "The request was missing a parameter; this is a mailoauth or configuration bug.",
            NextStep::FixConfiguration,
        ),
        _ => return None,
    };
    Some(Explanation {
        text: format!("{text} (Microsoft error AADSTS{digits})"),
        next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perr(error: &str, desc: Option<&str>) -> ProviderError {
        ProviderError {
            http_status: 400,
            error: error.into(),
            description: desc.map(Into::into),
        }
    }

    #[test]
    fn google_device_scope_refusal() {
        let e = explain_provider(
            ProviderKind::Google,
            FlowKind::Device,
            &perr("invalid_scope", None),
        );
        assert!(e.text.contains("device flow"), "{}", e.text);
        assert!(e.text.contains("loopback"), "{}", e.text);
        assert_eq!(e.next, NextStep::FixConfiguration);
    }

    #[test]
    fn invalid_grant_reauthorizes_and_mentions_google_testing() {
        let e = explain_provider(
            ProviderKind::Google,
            FlowKind::Loopback,
            &perr("invalid_grant", None),
        );
        assert_eq!(e.next, NextStep::Reauthorize);
        assert!(e.text.contains("7 days"));
        let e = explain_provider(
            ProviderKind::Generic,
            FlowKind::Loopback,
            &perr("invalid_grant", None),
        );
        assert!(!e.text.contains("7 days"));
    }

    #[test]
    fn aadsts_codes() {
        let e = explain_provider(
            ProviderKind::Microsoft,
            FlowKind::Device,
            &perr(
                "invalid_grant",
                Some(
                    "AADSTS700082: The refresh token has expired due to inactivity.\r\nTrace ID: 1",
                ),
            ),
        );
        assert!(e.text.contains("90 days"), "{}", e.text);
        assert_eq!(e.next, NextStep::Reauthorize);
        let e = explain_provider(
            ProviderKind::Microsoft,
            FlowKind::Device,
            &perr("invalid_client", Some("AADSTS7000218: x")),
        );
        assert!(e.text.contains("public client"));
    }

    #[test]
    fn transport_errors_retry() {
        let err = EndpointError::Unreachable {
            endpoint: "https://x/token".into(),
            detail: "connection failed".into(),
        };
        assert_eq!(
            explain(ProviderKind::Google, FlowKind::Loopback, &err).next,
            NextStep::RetryLater
        );
    }
}
