//! IMAP: the server side clients talk to before login (`server`) and the upstream side that logs
//! in with OAuth (`upstream`), both sans-IO state machines; [`Imap`] ties them to the shared
//! session driver (`crate::session`).

pub mod server;
pub mod upstream;

use crate::config::{AccountConfig, ListenerTls, Upstream};
use crate::daemon::{ListenerContext, Shared};
use crate::session::{Goodbye, Protocol};

/// The IMAP proxy.
pub struct Imap;

impl Protocol for Imap {
    const NAME: &'static str = "IMAP";
    type Client = server::ServerCore;
    type Upstream = upstream::UpstreamCore;

    fn client(ctx: &ListenerContext, _shared: &Shared, tls_active: bool) -> server::ServerCore {
        server::ServerCore::new(server::ServerOptions {
            tls_active,
            starttls: ctx.tls == ListenerTls::Starttls,
            require_tls: ctx.require_tls,
            limits: Default::default(),
            name: "mailoauth".into(),
        })
    }

    fn upstream_of(config: &AccountConfig) -> Option<Upstream> {
        config.imap.clone()
    }

    fn upstream(login: &server::Login, user: &str, upstream: &Upstream) -> upstream::UpstreamCore {
        upstream::UpstreamCore::new(upstream::UpstreamOptions {
            implicit_tls: upstream.implicit_tls,
            host: upstream.host.clone(),
            port: upstream.port,
            user: user.to_string(),
            // The client's own tag: the server's tagged OK [CAPABILITY …] fits the client as is.
            tag: login.tag.clone(),
        })
    }

    fn goodbye(reason: Goodbye) -> &'static [u8] {
        match reason {
            Goodbye::LoginDeadline => b"* BYE Login took too long\r\n",
            Goodbye::Shutdown => b"* BYE mailoauth is shutting down\r\n",
        }
    }
}
