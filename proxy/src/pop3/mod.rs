//! POP3: the server side clients talk to before login (`server`) and the upstream side that logs
//! in with OAuth (`upstream`), both sans-IO state machines; [`Pop3`] ties them to the shared
//! session driver (`crate::session`).

pub mod server;
pub mod upstream;

use crate::config::{AccountConfig, ListenerTls, Upstream};
use crate::daemon::{ListenerContext, Shared};
use crate::session::{Goodbye, Protocol};

/// The POP3 proxy.
pub struct Pop3;

impl Protocol for Pop3 {
    const NAME: &'static str = "POP3";
    type Client = server::ServerCore;
    type Upstream = upstream::UpstreamCore;

    fn client(ctx: &ListenerContext, shared: &Shared, tls_active: bool) -> server::ServerCore {
        // Before login the server is unknown: CAPA lists only what all of them offer.
        let capabilities = server::common_capabilities(&shared.extension_lists::<Pop3>());
        server::ServerCore::new(server::ServerOptions {
            tls_active,
            starttls: ctx.tls == ListenerTls::Starttls,
            require_tls: ctx.require_tls,
            name: "mailoauth".into(),
            capabilities,
            limits: Default::default(),
        })
    }

    fn upstream_of(config: &AccountConfig) -> Option<Upstream> {
        config.pop3.clone()
    }

    fn upstream(_login: &server::Login, user: &str, upstream: &Upstream) -> upstream::UpstreamCore {
        Self::new_upstream(upstream, user)
    }

    fn probe_core(upstream: &Upstream, user: &str) -> Option<upstream::UpstreamCore> {
        Some(Self::new_upstream(upstream, user))
    }

    fn extensions(core: &upstream::UpstreamCore) -> Vec<String> {
        core.capabilities()
    }

    fn goodbye(reason: Goodbye) -> &'static [u8] {
        match reason {
            Goodbye::LoginDeadline => b"-ERR mailoauth: login took too long\r\n",
            Goodbye::Shutdown => b"-ERR mailoauth is shutting down\r\n",
        }
    }
}

impl Pop3 {
    fn new_upstream(upstream: &Upstream, user: &str) -> upstream::UpstreamCore {
        upstream::UpstreamCore::new(upstream::UpstreamOptions {
            implicit_tls: upstream.implicit_tls,
            host: upstream.host.clone(),
            port: upstream.port,
            user: user.to_string(),
        })
    }
}
