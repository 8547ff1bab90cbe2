//! Name resolution without the C library: every lookup the daemon makes (push,
//! OTLP export over HTTP and gRPC, alert webhooks, DNS probes) goes through
//! hickory's resolver, which reads `/etc/resolv.conf` and `/etc/hosts` itself.
//! So a statically linked binary needs no NSS module at run time and resolves
//! names the same way in an empty root (a `scratch` image) as on a full host.
//! (reqwest clients get the same resolver from its `hickory-dns` feature.)

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{LookupIpStrategy, NameServerConfigGroup, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;

/// A resolver reading the system's configuration, looking up IPv4 and IPv6.
/// `cache` off makes every lookup ask the name server (what a probe measures).
/// Without a readable `/etc/resolv.conf` it asks 127.0.0.1, as the C library does
/// (never a public resolver the operator did not choose).
pub fn resolver(cache: bool) -> TokioResolver {
    let mut b = TokioResolver::builder_tokio().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot read /etc/resolv.conf; asking 127.0.0.1:53");
        let local =
            NameServerConfigGroup::from_ips_clear(&[IpAddr::from([127, 0, 0, 1])], 53, true);
        TokioResolver::builder_with_config(
            ResolverConfig::from_parts(None, vec![], local),
            TokioConnectionProvider::default(),
        )
    });
    let opts = b.options_mut();
    opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    if !cache {
        opts.cache_size = 0;
    }
    b.build()
}

/// Resolves a host name to addresses (port 0), for hyper's connectors.
#[derive(Clone, Default)]
pub struct Resolver {
    inner: Arc<OnceLock<TokioResolver>>,
}

impl Resolver {
    /// Built on first use, inside the runtime that makes the connection.
    fn get(&self) -> &TokioResolver {
        self.inner.get_or_init(|| resolver(true))
    }
}

type Addrs = std::vec::IntoIter<SocketAddr>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<hyper_util::client::legacy::connect::dns::Name> for Resolver {
    type Response = Addrs;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Addrs, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: hyper_util::client::legacy::connect::dns::Name) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let found = this.get().lookup_ip(name.as_str()).await?;
            let addrs: Vec<SocketAddr> = found.iter().map(|ip| SocketAddr::new(ip, 0)).collect();
            Ok(addrs.into_iter())
        })
    }
}

/// An HTTP connector (for tonic's channel) that resolves with [`Resolver`].
pub fn http_connector() -> hyper_util::client::legacy::connect::HttpConnector<Resolver> {
    let mut c =
        hyper_util::client::legacy::connect::HttpConnector::new_with_resolver(Resolver::default());
    c.enforce_http(false);
    c.set_nodelay(true);
    c
}
