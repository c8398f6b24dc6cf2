//! The servers of a Cog fleet, as `endpoint` names them, and names followed as the
//! addresses they resolve to change.
//!
//! An endpoint whose host is an IP address is one server. An `http` endpoint whose host is
//! a name is one server for each address the name resolves to, as a Kubernetes headless
//! Service resolves to the addresses of its ready pods (the URL's port, user, password and
//! path are kept, its host becomes the address). A window looking for a server resolves
//! the name again once the last answer is older than its TTL ([`Resolve::ttl`]): new
//! addresses join the fleet (and are health-checked, as every server is before a window
//! goes to it), and addresses no longer in the answer leave it for new windows. A window
//! already running on one finishes there, or fails and is retried on another server
//! (`window-retries`).
//!
//! A resolution that fails, or answers no address, keeps the last answer: a DNS blip must
//! not empty the fleet, and an address that is really gone fails its health check. A name
//! that never resolved has no server, and the error that every server is down says why.
//! Where a name has IPv4 addresses its IPv6 ones are left out: a dual-stack pod has one of
//! each, and is one server.
//!
//! Kept as one server, as given:
//! - an `https` name: the server's certificate names the host, not its addresses, and a
//!   name behind TLS is most often a gateway that spreads the requests itself;
//! - `localhost`: it resolves to 127.0.0.1 and ::1, one server listening on both.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, join_all};
use url::{Host, Url};

use super::cog::Server;
use super::http::{Http, is_loopback};
use super::redacted_endpoint;

/// How long a name's answer holds unless its resolver says otherwise: pods that start or
/// stop are seen within this long, and a window seldom pays for a lookup.
const TTL: Duration = Duration::from_secs(5);
/// A resolution gives up after this long, and the last answer holds.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "wanedit-cog",
        gst::DebugColorFlags::empty(),
        Some("The Cog fleet of wanedit's backend=cog"),
    )
});

/// Resolves the names of a Cog fleet's endpoints to addresses. The system's resolver
/// ([`SystemResolver`]) unless the application sets its own
/// ([`crate::WanEdit::set_resolver`]), as a test does.
pub trait Resolve: Send + Sync {
    /// The addresses `host` resolves to; `port` is the endpoint's.
    fn resolve(&self, host: &str, port: u16) -> BoxFuture<'static, io::Result<Vec<IpAddr>>>;

    /// How long an answer holds before the name is resolved again: 5 s unless the
    /// resolver knows better (a DNS TTL).
    fn ttl(&self) -> Duration {
        TTL
    }
}

/// The system's resolver (`getaddrinfo`: the hosts file, then DNS).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, host: &str, port: u16) -> BoxFuture<'static, io::Result<Vec<IpAddr>>> {
        let target = (host.to_owned(), port);
        async move {
            Ok(tokio::net::lookup_host(target)
                .await?
                .map(|a| a.ip())
                .collect())
        }
        .boxed()
    }
}

/// The servers the endpoints stand for.
pub struct Fleet {
    endpoints: Vec<Endpoint>,
    resolver: Arc<dyn Resolve>,
}

enum Endpoint {
    Fixed(Arc<Server>),
    Named(Box<Named>),
}

impl Endpoint {
    /// A plain-http name is followed; anything else is one server (see the module's
    /// documentation).
    fn new(url: Url) -> Self {
        let shown = redacted_endpoint(url.as_str()).into_owned();
        match (url.scheme(), url.host(), url.port_or_known_default()) {
            ("http", Some(Host::Domain(host)), Some(port)) if !is_loopback(&url) => {
                Endpoint::Named(Box::new(Named {
                    host: host.to_owned(),
                    port,
                    shown,
                    url,
                    answer: Mutex::default(),
                    resolving: tokio::sync::Mutex::new(()),
                }))
            }
            _ => Endpoint::Fixed(Arc::new(Server::new(url, shown))),
        }
    }
}

/// An endpoint whose name is followed.
struct Named {
    /// The endpoint as given.
    url: Url,
    host: String,
    port: u16,
    /// The endpoint as shown: without its password.
    shown: String,
    answer: Mutex<Answer>,
    /// Held while the name is resolved: windows that look for a server at once resolve
    /// it once.
    resolving: tokio::sync::Mutex<()>,
}

/// What a name resolved to last.
#[derive(Default)]
struct Answer {
    servers: Vec<Arc<Server>>,
    /// When the name was last resolved, whether or not that worked.
    at: Option<Instant>,
    /// Why the last resolution failed, if it did.
    failed: Option<String>,
}

impl Fleet {
    pub fn new(endpoints: Vec<Url>, resolver: Arc<dyn Resolve>) -> Self {
        Self {
            endpoints: endpoints.into_iter().map(Endpoint::new).collect(),
            resolver,
        }
    }

    /// How many servers there are, where no endpoint is a name (whose addresses are not
    /// known ahead).
    pub fn size(&self) -> Option<usize> {
        self.endpoints
            .iter()
            .all(|e| matches!(e, Endpoint::Fixed(_)))
            .then_some(self.endpoints.len())
    }

    /// The servers now, with every name whose answer is older than its TTL resolved
    /// again first. The addresses that join become origins of `http`'s own.
    pub async fn servers(&self, http: &Http) -> Vec<Arc<Server>> {
        let ttl = self.resolver.ttl();
        join_all(self.endpoints.iter().filter_map(|e| match e {
            Endpoint::Named(named) => Some(named.refresh(&*self.resolver, ttl, http)),
            Endpoint::Fixed(_) => None,
        }))
        .await;
        self.members()
    }

    /// The servers as last resolved.
    pub fn members(&self) -> Vec<Arc<Server>> {
        let mut servers = Vec::new();
        for endpoint in &self.endpoints {
            match endpoint {
                Endpoint::Fixed(server) => servers.push(server.clone()),
                Endpoint::Named(named) => {
                    servers.extend(named.answer.lock().unwrap().servers.iter().cloned());
                }
            }
        }
        servers
    }

    /// Whether `server` is still one of the fleet's.
    pub fn holds(&self, server: &Arc<Server>) -> bool {
        self.members().iter().any(|s| Arc::ptr_eq(s, server))
    }

    /// Each name whose last resolution failed, and why, for the error that every server
    /// is down.
    pub fn failures(&self) -> Vec<String> {
        self.endpoints
            .iter()
            .filter_map(|e| match e {
                Endpoint::Named(named) => {
                    let answer = named.answer.lock().unwrap();
                    let why = answer.failed.as_ref()?;
                    Some(format!("{} ({why})", named.shown))
                }
                Endpoint::Fixed(_) => None,
            })
            .collect()
    }
}

impl Named {
    fn is_due(&self, ttl: Duration) -> bool {
        let answer = self.answer.lock().unwrap();
        answer.at.is_none_or(|at| at.elapsed() >= ttl)
    }

    fn has_servers(&self) -> bool {
        !self.answer.lock().unwrap().servers.is_empty()
    }

    /// Resolves the name again if its answer is older than `ttl`. One window does it
    /// while the others go on with the last answer; where there is none yet, they wait
    /// for it.
    async fn refresh(&self, resolver: &dyn Resolve, ttl: Duration, http: &Http) {
        if !self.is_due(ttl) {
            return;
        }
        let _resolving = match self.resolving.try_lock() {
            Ok(resolving) => resolving,
            Err(_) if self.has_servers() => return,
            Err(_) => self.resolving.lock().await,
        };
        // Resolved by another window while this one waited.
        if !self.is_due(ttl) {
            return;
        }
        let lookup = resolver.resolve(&self.host, self.port);
        let addresses = match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
            Ok(Ok(addresses)) if addresses.is_empty() => Err("it resolves to no address".into()),
            Ok(Ok(addresses)) => Ok(one_family(addresses)),
            Ok(Err(e)) => Err(format!("cannot resolve it: {e}")),
            Err(_) => Err(format!(
                "cannot resolve it: no answer within {} s",
                RESOLVE_TIMEOUT.as_secs()
            )),
        };
        let mut answer = self.answer.lock().unwrap();
        answer.at = Some(Instant::now());
        match addresses {
            Ok(addresses) => {
                answer.failed = None;
                self.follow(&mut answer.servers, &addresses, http);
            }
            Err(why) => {
                gst::warning!(
                    CAT,
                    "{}: {why}; its {} last addresses stay in the fleet",
                    self.shown,
                    answer.servers.len()
                );
                answer.failed = Some(why);
            }
        }
    }

    /// Makes `servers` one for each of `addresses`: those already there are kept (with
    /// their slot, taken or not, and their health), new ones join, the others leave.
    fn follow(&self, servers: &mut Vec<Arc<Server>>, addresses: &BTreeSet<IpAddr>, http: &Http) {
        let mut changes = String::new();
        servers.retain(|server| {
            let stays = server_address(server).is_some_and(|ip| addresses.contains(&ip));
            if !stays {
                let _ = write!(changes, " {} left;", server.shown);
            }
            stays
        });
        for &ip in addresses {
            if servers.iter().any(|s| server_address(s) == Some(ip)) {
                continue;
            }
            let mut url = self.url.clone();
            if url.set_ip_host(ip).is_err() {
                continue;
            }
            http.trust(&url);
            let shown = format!("{} at {ip}", self.shown);
            let _ = write!(changes, " {shown} joined;");
            servers.push(Arc::new(Server::new(url, shown)));
        }
        if !changes.is_empty() {
            changes.pop();
            gst::info!(
                CAT,
                "{}: {} Cog servers:{changes}",
                self.shown,
                servers.len()
            );
        }
    }
}

/// The address a server of a name was made for.
fn server_address(server: &Server) -> Option<IpAddr> {
    match server.url.host()? {
        Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        Host::Domain(_) => None,
    }
}

/// The IPv4 addresses among `addresses`, or the IPv6 ones where there is none, once each.
fn one_family(addresses: Vec<IpAddr>) -> BTreeSet<IpAddr> {
    let v4 = addresses.iter().any(IpAddr::is_ipv4);
    addresses
        .into_iter()
        .filter(|ip| ip.is_ipv4() == v4)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::backend::hosted::http::Pacing;

    /// Answers what the test last gave it, counting the lookups; every answer is old at
    /// once.
    struct Script {
        answer: Mutex<Result<Vec<IpAddr>, String>>,
        lookups: AtomicUsize,
    }

    impl Script {
        fn new() -> Arc<Self> {
            Arc::new(Self {
                answer: Mutex::new(Err("not answered yet".into())),
                lookups: AtomicUsize::new(0),
            })
        }

        fn answer(&self, answer: Result<&[&str], &str>) {
            *self.answer.lock().unwrap() = answer
                .map(|ips| ips.iter().map(|ip| ip.parse().unwrap()).collect())
                .map_err(str::to_owned);
        }
    }

    impl Resolve for Script {
        fn resolve(&self, host: &str, port: u16) -> BoxFuture<'static, io::Result<Vec<IpAddr>>> {
            assert_eq!((host, port), ("cog.svc", 5000));
            self.lookups.fetch_add(1, Ordering::SeqCst);
            let answer = self.answer.lock().unwrap().clone();
            async move { answer.map_err(io::Error::other) }.boxed()
        }

        fn ttl(&self) -> Duration {
            Duration::ZERO
        }
    }

    fn fleet(endpoints: &[&str], script: &Arc<Script>) -> Fleet {
        let urls = endpoints
            .iter()
            .map(|e| super::super::parse_endpoint(e).unwrap())
            .collect();
        Fleet::new(urls, script.clone())
    }

    fn http() -> Http {
        Http::new(&[], None, 1, Pacing::default()).unwrap()
    }

    fn urls(servers: &[Arc<Server>]) -> Vec<&str> {
        servers.iter().map(|s| s.url.as_str()).collect()
    }

    #[tokio::test]
    async fn a_name_is_a_server_for_each_address_it_resolves_to_now() {
        gst::init().unwrap();
        let script = Script::new();
        let fleet = fleet(&["http://u:s3cret@cog.svc:5000/v1"], &script);
        assert_eq!(fleet.size(), None);
        let http = http();
        script.answer(Ok(&["10.0.0.1", "10.0.0.2"]));
        let before = fleet.servers(&http).await;
        assert_eq!(
            urls(&before),
            [
                "http://u:s3cret@10.0.0.1:5000/v1/",
                "http://u:s3cret@10.0.0.2:5000/v1/"
            ]
        );
        assert_eq!(before[1].shown, "http://***@cog.svc:5000/v1/ at 10.0.0.2");
        script.answer(Ok(&["10.0.0.3", "10.0.0.2"]));
        let after = fleet.servers(&http).await;
        assert_eq!(
            urls(&after),
            [
                "http://u:s3cret@10.0.0.2:5000/v1/",
                "http://u:s3cret@10.0.0.3:5000/v1/"
            ]
        );
        assert!(
            Arc::ptr_eq(&before[1], &after[0]),
            "an address that stays is the same server, with its slot"
        );
        assert!(!fleet.holds(&before[0]) && fleet.holds(&after[1]));
        for server in &after {
            let job = Url::parse(&format!("{}predictions/p1", server.url)).unwrap();
            assert!(http.check_own_url(&job).is_ok(), "{job}");
        }
        assert_eq!(script.lookups.load(Ordering::SeqCst), 2);
        assert!(fleet.failures().is_empty());
    }

    #[tokio::test]
    async fn a_failed_resolution_keeps_the_last_answer_and_says_why() {
        gst::init().unwrap();
        let script = Script::new();
        let fleet = fleet(&["http://cog.svc:5000"], &script);
        let http = http();
        script.answer(Err("no such host"));
        assert!(fleet.servers(&http).await.is_empty());
        assert_eq!(
            fleet.failures(),
            ["http://cog.svc:5000/ (cannot resolve it: no such host)"]
        );
        script.answer(Ok(&["10.0.0.1"]));
        assert_eq!(urls(&fleet.servers(&http).await), ["http://10.0.0.1:5000/"]);
        assert!(fleet.failures().is_empty());
        for (failure, why) in [
            (Err("SERVFAIL"), "cannot resolve it: SERVFAIL"),
            (Ok(&[][..]), "it resolves to no address"),
        ] {
            script.answer(failure);
            assert_eq!(urls(&fleet.servers(&http).await), ["http://10.0.0.1:5000/"]);
            assert_eq!(fleet.failures(), [format!("http://cog.svc:5000/ ({why})")]);
        }
    }

    #[tokio::test]
    async fn ip_addresses_https_names_and_localhost_are_one_server_as_given() {
        let script = Script::new();
        let given = [
            "http://10.0.0.9:5000/",
            "http://[fd00::9]:5000/",
            "https://cog.example.com/",
            "http://localhost:5000/",
        ];
        let fleet = fleet(&given, &script);
        assert_eq!(fleet.size(), Some(4));
        assert_eq!(urls(&fleet.servers(&http()).await), given);
        assert_eq!(script.lookups.load(Ordering::SeqCst), 0, "nothing resolved");
    }

    #[tokio::test]
    async fn the_system_resolver_finds_this_machine() {
        let addresses = SystemResolver.resolve("localhost", 5000).await.unwrap();
        assert!(!addresses.is_empty());
        assert!(addresses.iter().all(IpAddr::is_loopback), "{addresses:?}");
    }

    #[tokio::test]
    async fn a_dual_stack_pod_is_one_server() {
        gst::init().unwrap();
        let script = Script::new();
        let fleet = fleet(&["http://cog.svc:5000"], &script);
        let http = http();
        script.answer(Ok(&[
            "fd00::1", "10.0.0.2", "fd00::2", "10.0.0.1", "10.0.0.2",
        ]));
        assert_eq!(
            urls(&fleet.servers(&http).await),
            ["http://10.0.0.1:5000/", "http://10.0.0.2:5000/"]
        );
        script.answer(Ok(&["fd00::1"]));
        assert_eq!(
            urls(&fleet.servers(&http).await),
            ["http://[fd00::1]:5000/"]
        );
    }
}
