//! AUTH PLAIN and AUTH LOGIN (RFC 4954, RFC 4616, draft-murchison-sasl-login): the command,
//! the `334` exchange, and the [`Login`] event or the refusal.

use super::credentials::{self, Credentials, Refusal};
use super::{Greeted, Login, LoginMechanism, ServerCore, ServerEvent, State};

impl ServerCore {
    /// `AUTH mechanism [initial-response]`.
    pub(super) fn auth(&mut self, args: &[u8]) -> Option<ServerEvent> {
        if self.tls_required() {
            self.error("530 5.7.0 Must issue a STARTTLS command first");
            return None;
        }
        let greeted = match self.greeted {
            Greeted::Ehlo => true,
            Greeted::Helo => self.options.helo_auth,
            Greeted::No => false,
        };
        if !greeted {
            self.error("503 5.5.1 Send EHLO first");
            return None;
        }
        let mut words = args.split(|&b| b == b' ').filter(|w| !w.is_empty());
        let (Some(mechanism), initial, None) = (words.next(), words.next(), words.next()) else {
            self.error("501 5.5.4 Syntax: AUTH mechanism [initial-response]");
            return None;
        };
        let mechanism = match mechanism.to_ascii_uppercase().as_slice() {
            b"PLAIN" => LoginMechanism::Plain,
            b"LOGIN" => LoginMechanism::Login,
            _ => {
                self.error("504 5.5.4 Unrecognized authentication type");
                return None;
            }
        };
        self.transaction_refused = false;
        let initial = match initial.map(credentials::decode_base64) {
            None => None,
            Some(Some(decoded)) => Some(decoded),
            Some(None) => {
                self.error("501 5.5.2 Invalid base64 data");
                return None;
            }
        };
        match (mechanism, initial) {
            (LoginMechanism::Plain, Some(message)) => {
                return self.login(credentials::from_plain(&message), mechanism);
            }
            (LoginMechanism::Plain, None) => {
                self.push("334 ");
                self.state = State::AuthPlain;
            }
            (LoginMechanism::Login, Some(user)) => {
                self.push("334 UGFzc3dvcmQ6");
                self.state = State::AuthLoginPassword(user);
            }
            (LoginMechanism::Login, None) => {
                self.push("334 VXNlcm5hbWU6");
                self.state = State::AuthLoginUser;
            }
        }
        None
    }

    /// A SASL response line after a `334`.
    pub(super) fn on_auth_response(&mut self, crlf: bool) -> Option<ServerEvent> {
        let state = std::mem::replace(&mut self.state, State::Commands);
        if !crlf {
            self.error("500 5.5.2 Syntax error: lines must end with CRLF");
            return None;
        }
        let line = self.input.line();
        if line == b"*" {
            self.error("501 5.7.0 Authentication cancelled");
            return None;
        }
        let Some(decoded) = credentials::decode_base64(line) else {
            self.error("501 5.5.2 Invalid base64 data");
            return None;
        };
        match state {
            State::AuthPlain => {
                self.login(credentials::from_plain(&decoded), LoginMechanism::Plain)
            }
            State::AuthLoginUser => {
                self.push("334 UGFzc3dvcmQ6");
                self.state = State::AuthLoginPassword(decoded);
                None
            }
            State::AuthLoginPassword(user) => self.login(
                credentials::from_login(&user, &decoded),
                LoginMechanism::Login,
            ),
            _ => None,
        }
    }

    fn login(
        &mut self,
        credentials: Result<Credentials, Refusal>,
        mechanism: LoginMechanism,
    ) -> Option<ServerEvent> {
        match credentials {
            Ok(Credentials { user, password }) => {
                self.state = State::LoginPending;
                Some(ServerEvent::Login(Login {
                    user,
                    password,
                    helo: self.helo.clone(),
                    mechanism,
                }))
            }
            Err(refusal) => {
                self.error(refusal.reply());
                None
            }
        }
    }
}
