//! The paste flow, for machines without a browser: the user opens the URL anywhere, approves,
//! and pastes back the address the browser ended on (or just the code). The redirect goes to a
//! loopback address where nothing listens, so the code stays in the browser's address bar; PKCE
//! makes a code intercepted there useless to anyone else.

use super::redirect::{Redirect, classify_pasted};
use super::{AuthRequest, FlowError, Prompter, redirect_uri};
use crate::account::{Account, FlowKind};
use crate::oauth::OAuthHttp;
use crate::provider::Endpoints;
use crate::token::TokenSet;

/// How many unusable answers the user may paste before we give up.
const ATTEMPTS: usize = 3;

pub(super) async fn run(
    http: &OAuthHttp,
    account: &Account,
    endpoints: &Endpoints,
    prompter: &dyn Prompter,
) -> Result<TokenSet, FlowError> {
    let request = AuthRequest::new(redirect_uri(account, None));
    let url = request.url(account, endpoints)?;
    prompter.show_authorization_url(&url, false);
    let prompt = "Open the URL above in any browser and approve. The browser then tries to load a \
                  page on localhost/127.0.0.1 and may show an error: that is expected. Paste the \
                  whole address from its address bar (or just the code) here:";
    for attempt in 1..=ATTEMPTS {
        let answer = prompter
            .read_pasted(prompt)
            .await
            .map_err(|e| FlowError::Io {
                what: "cannot read the pasted answer".into(),
                source: e,
            })?;
        let problem = match classify_pasted(&answer, &request.state) {
            Redirect::Code(code) => {
                return request
                    .exchange(http, account, endpoints, FlowKind::Paste, &code)
                    .await;
            }
            Redirect::Error { error, description } => {
                return Err(FlowError::Denied { error, description });
            }
            Redirect::StateMismatch => {
                "that address belongs to a different authorization request (its state does not match)"
            }
            Redirect::NoCode | Redirect::OtherPath => {
                if answer.trim().is_empty() {
                    "nothing was pasted"
                } else {
                    "that is neither the browser's final address nor a code"
                }
            }
        };
        if attempt == ATTEMPTS {
            return Err(FlowError::BadAnswer(format!(
                "{problem}; run the authorization again"
            )));
        }
        prompter.note(&format!("{problem}; try again."));
    }
    unreachable!("the loop returns on its last attempt")
}
