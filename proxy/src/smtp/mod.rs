//! SMTP submission: the server side clients talk to before AUTH (`server`) and the upstream side
//! that logs in with OAuth (`upstream`), both sans-IO state machines; [`Smtp`] ties them to the
//! shared session driver (`crate::session`).

pub mod server;
pub mod upstream;

use crate::config::{AccountConfig, ListenerTls, Upstream};
use crate::daemon::{ListenerContext, Shared};
use crate::session::{Goodbye, Protocol};

/// The SMTP proxy.
pub struct Smtp;

/// The EHLO name sent upstream when the client gave none usable.
const DEFAULT_HELO: &str = "[127.0.0.1]";

impl Protocol for Smtp {
    const NAME: &'static str = "SMTP";
    type Client = server::ServerCore;
    type Upstream = upstream::UpstreamCore;

    fn client(ctx: &ListenerContext, shared: &Shared, tls_active: bool) -> server::ServerCore {
        // Before AUTH the account, and so the server, is unknown: advertise what all of this
        // listener's servers have in common (nothing of theirs until all are known).
        let extensions = server::common_extensions(&shared.extension_lists::<Smtp>());
        server::ServerCore::new(server::ServerOptions {
            tls_active,
            starttls: ctx.tls == ListenerTls::Starttls,
            require_tls: ctx.require_tls,
            name: "mailoauth".into(),
            extensions,
            helo_auth: true,
            limits: Default::default(),
        })
    }

    fn upstream_of(config: &AccountConfig) -> Option<Upstream> {
        config.smtp.clone()
    }

    fn upstream(login: &server::Login, user: &str, upstream: &Upstream) -> upstream::UpstreamCore {
        upstream::UpstreamCore::new(upstream::UpstreamOptions {
            implicit_tls: upstream.implicit_tls,
            host: upstream.host.clone(),
            port: upstream.port,
            user: user.to_string(),
            helo: login.helo.clone().unwrap_or_else(|| DEFAULT_HELO.into()),
        })
    }

    fn probe_core(upstream: &Upstream, user: &str) -> Option<upstream::UpstreamCore> {
        Some(upstream::UpstreamCore::new(upstream::UpstreamOptions {
            implicit_tls: upstream.implicit_tls,
            host: upstream.host.clone(),
            port: upstream.port,
            user: user.to_string(),
            helo: DEFAULT_HELO.into(),
        }))
    }

    fn extensions(core: &upstream::UpstreamCore) -> Vec<String> {
        core.extensions()
    }

    fn goodbye(reason: Goodbye) -> &'static [u8] {
        match reason {
            Goodbye::LoginDeadline => b"421 4.4.2 mailoauth: login took too long\r\n",
            Goodbye::Shutdown => b"421 4.3.2 mailoauth is shutting down\r\n",
        }
    }
}
