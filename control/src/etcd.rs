//! The etcd side of a weft node, in flannel's schema (DESIGN.md §2, flannel `pkg/subnet/etcd`):
//! read `<prefix>/config`, hold this node's lease under `<prefix>/subnets/`, write the subnet file, and
//! watch the other leases. It runs on its own thread with its own (single-threaded) async runtime and
//! tells weftd what changed through a channel; while etcd is unreachable nothing is sent, so the
//! dataplane keeps forwarding on the last table.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, TlsOptions, Txn, TxnOp, WatchOptions,
};

use crate::members::Members;
use crate::status::cause;
pub use crate::status::ControlStatus;
use tracing::{error, info, warn};
use weft_config::{Ipv4Net, Lease, MacAddr, NetworkConfig, Peer, SubnetKey};

use crate::allocate::{choose_subnet, Choice};
use crate::subnet_file::SubnetFile;

/// How to reach etcd (flannel's flags).
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    pub endpoints: Vec<String>,
    pub prefix: String,
    pub cafile: Option<PathBuf>,
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            prefix: "/coreos.com/network".into(),
            cafile: None,
            certfile: None,
            keyfile: None,
            username: None,
            password: None,
        }
    }
}

/// This node, as its lease describes it.
#[derive(Debug, Clone)]
pub struct Identity {
    pub public_ip: Ipv4Addr,
    pub vtep_mac: MacAddr,
    pub underlay_mtu: u16,
    pub subnet_file: PathBuf,
    pub ipmasq: bool,
    /// The etcd lease's TTL (flannel: 24 h).
    pub lease_ttl: Duration,
    /// Renew this long before expiry (flannel's --subnet-lease-renew-margin, 60 min).
    pub renew_margin: Duration,
}

/// What the control thread tells weftd.
#[derive(Debug, Clone)]
pub enum ControlEvent {
    /// Our lease is held (first time, or again after losing it).
    Acquired { network: NetworkConfig, subnet: Ipv4Net },
    /// The full set of remote peers (VXLAN leases of our VNI), after any change.
    Peers(Vec<Peer>),
    /// Giving up (bad configuration that retrying cannot fix).
    Fatal(String),
}

type Res<T> = Result<T, etcd_client::Error>;

fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn random() -> u64 {
    let mut b = [0u8; 8];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b)).is_err() {
        return std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(7);
    }
    u64::from_le_bytes(b)
}

/// Why `wait_acquired` returned without a lease.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcquireError {
    #[error("no lease from etcd within {0:?}")]
    NotYet(Duration),
    #[error("{0}")]
    Fatal(String),
    #[error("the control thread has stopped")]
    Stopped,
}

/// The control thread.
#[derive(Debug)]
pub struct ControlHandle {
    pub events: mpsc::Receiver<ControlEvent>,
    pub status: Arc<ControlStatus>,
    stop: Arc<AtomicBool>,
    wake: Arc<tokio::sync::Notify>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ControlHandle {
    /// Wait for the first `Acquired` (peers that arrive before it are returned too).
    pub fn wait_acquired(&self, timeout: Duration) -> Result<(NetworkConfig, Ipv4Net, Vec<Peer>), AcquireError> {
        let deadline = std::time::Instant::now() + timeout;
        let mut peers = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.events.recv_timeout(left) {
                Ok(ControlEvent::Acquired { network, subnet }) => {
                    // Peers are sent right after the lease; take them if they are there already.
                    if let Ok(ControlEvent::Peers(p)) = self.events.recv_timeout(Duration::from_millis(500)) {
                        peers = p;
                    }
                    return Ok((network, subnet, peers));
                }
                Ok(ControlEvent::Peers(p)) => peers = p,
                Ok(ControlEvent::Fatal(e)) => return Err(AcquireError::Fatal(e)),
                Err(mpsc::RecvTimeoutError::Timeout) => return Err(AcquireError::NotYet(timeout)),
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(AcquireError::Stopped),
            }
        }
    }

    /// Stop the thread at once, abandoning any call in flight (the lease stays in etcd, as flanneld
    /// leaves it, so a restart reuses it).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ControlHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }
}

/// gRPC keepalive: etcd sends GOAWAY ("too many pings") to clients that ping more often than its
/// `--grpc-keepalive-min-time` (5 s by default) or while no stream is open, so weft pings every 10 s and
/// only while a stream (the watch) is open. A member that stops answering is noticed within 15 s;
/// a member that loses its leader cancels the watch itself (require-leader).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Each unary call; a stalled member costs at most this before the call moves on.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// The client options for every member: TLS (with the system's roots when no CA file is given), user,
/// keepalive that etcd accepts, timeouts, and require-leader.
fn connect_options(cfg: &EtcdConfig) -> Res<ConnectOptions> {
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(CALL_TIMEOUT)
        .with_keep_alive(KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT)
        .with_keep_alive_while_idle(false)
        .with_tcp_keepalive(Duration::from_secs(30))
        .with_require_leader(true);
    if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
        opts = opts.with_user(u.clone(), p.clone());
    }
    if cfg.endpoints.iter().any(|e| e.starts_with("https://")) {
        let mut tls = TlsOptions::new();
        tls = match &cfg.cafile {
            Some(ca) => {
                let pem = std::fs::read(ca).map_err(etcd_client::Error::IoError)?;
                tls.ca_certificate(etcd_client::Certificate::from_pem(pem))
            }
            None => tls.with_native_roots(),
        };
        if let (Some(c), Some(k)) = (&cfg.certfile, &cfg.keyfile) {
            let cert = std::fs::read(c).map_err(etcd_client::Error::IoError)?;
            let key = std::fs::read(k).map_err(etcd_client::Error::IoError)?;
            tls = tls.identity(etcd_client::Identity::from_pem(cert, key));
        }
        opts = opts.with_tls(tls);
    }
    Ok(opts)
}

/// Start the control thread.
pub fn start(cfg: EtcdConfig, id: Identity) -> ControlHandle {
    let (tx, rx) = mpsc::channel();
    let status = Arc::new(ControlStatus::default());
    let stop = Arc::new(AtomicBool::new(false));
    let wake = Arc::new(tokio::sync::Notify::new());
    let thread = {
        let (status, stop, wake) = (status.clone(), stop.clone(), wake.clone());
        std::thread::Builder::new()
            .name("weft-control".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(ControlEvent::Fatal(format!("async runtime: {e}")));
                        return;
                    }
                };
                let opts = match connect_options(&cfg) {
                    Ok(o) => o,
                    Err(e) => {
                        let _ = tx.send(ControlEvent::Fatal(format!("etcd client options: {}", cause(&e))));
                        return;
                    }
                };
                let members = Members::new(cfg.endpoints.clone(), opts, status.clone());
                let ctl = Controller { cfg, id, tx, status, stop, members };
                rt.block_on(async move {
                    tokio::select! {
                        _ = ctl.run() => {}
                        _ = wake.notified() => {}
                    }
                });
            })
            .ok()
    };
    ControlHandle { events: rx, status, stop, wake, thread }
}

struct Controller {
    cfg: EtcdConfig,
    id: Identity,
    tx: mpsc::Sender<ControlEvent>,
    status: Arc<ControlStatus>,
    stop: Arc<AtomicBool>,
    members: Members,
}

/// Our lease as held.
struct Held {
    network: NetworkConfig,
    subnet: Ipv4Net,
    lease_id: i64,
    ttl: i64,
    renew_at: tokio::time::Instant,
}

/// Reconnect back-off: short enough that a lease lost while etcd was away is retaken within 2 s of
/// etcd answering again.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// A session whose watch stayed up this long was healthy: the back-off starts from the bottom again.
const HEALTHY_AFTER: Duration = Duration::from_secs(10);

/// How a session ended.
enum SessionEnd {
    /// Re-list and watch again (compaction, our lease retaken).
    Resync,
    /// The member or the connection failed; `healthy` says whether the watch had been up for long.
    Broken { error: etcd_client::Error, healthy: bool },
}

impl Controller {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn config_key(&self) -> String {
        format!("{}/config", self.cfg.prefix.trim_end_matches('/'))
    }

    /// The network config as etcd has it now, against the one this node runs with: a change is logged
    /// (once per value) and flagged, and applies at the next start, as flanneld reads it only there.
    fn check_config(&self, held: &Held, value: Option<&[u8]>, said: &mut Option<String>) {
        let key = self.config_key();
        let text = value.map(|v| String::from_utf8_lossy(v).into_owned());
        let now = text.as_deref().map(NetworkConfig::from_json);
        let changed = match &now {
            Some(Ok(c)) => *c != held.network,
            Some(Err(_)) | None => true,
        };
        self.status.config_changed.store(changed, Ordering::Relaxed);
        if !changed {
            *said = None;
            return;
        }
        let seen = text.clone().unwrap_or_default();
        if said.as_deref() == Some(seen.as_str()) {
            return;
        }
        *said = Some(seen);
        let running = &held.network;
        match now {
            Some(Ok(c)) => warn!(
                key,
                running = %format!("{} {} backend {}{}", running.network, running.subnet_len, running.backend, if running.direct_routing { " DirectRouting" } else { "" }),
                new = %format!("{} {} backend {}{}", c.network, c.subnet_len, c.backend, if c.direct_routing { " DirectRouting" } else { "" }),
                "the network config changed in etcd; weftd keeps the one it started with until it is restarted, as flanneld does"
            ),
            Some(Err(e)) => {
                warn!(key, error = %e, "the network config in etcd no longer parses; weftd keeps the one it started with")
            }
            None => warn!(key, "the network config was deleted from etcd; weftd keeps the one it started with"),
        }
    }

    fn subnets_prefix(&self) -> String {
        format!("{}/subnets/", self.cfg.prefix.trim_end_matches('/'))
    }

    fn key_of(&self, subnet: Ipv4Net) -> String {
        format!("{}{}", self.subnets_prefix(), SubnetKey(subnet))
    }

    /// Run an idempotent call on a healthy member, and on the next healthy ones while it fails for a
    /// reason another member might not have.
    async fn call<T, F, Fut>(&mut self, mut f: F) -> Res<T>
    where
        F: FnMut(Client) -> Fut,
        Fut: std::future::Future<Output = Res<T>>,
    {
        let mut last = None;
        for _ in 0..self.members.len() {
            let Some(c) = self.members.healthy().await else { break };
            match f(c).await {
                Ok(v) => return Ok(v),
                Err(e) if crate::members::worth_another_member(&e) => {
                    self.status.rpc_retries.fetch_add(1, Ordering::Relaxed);
                    warn!(member = self.members.current_url(), error = %cause(&e), "etcd call failed; trying another member");
                    self.status.set_last_error(format!("{}: {}", self.members.current_url(), cause(&e)));
                    self.members.skip_current();
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        self.status.rpc_failures.fetch_add(1, Ordering::Relaxed);
        Err(last.unwrap_or_else(|| etcd_client::Error::EndpointError("no etcd member answers with a leader".into())))
    }

    async fn get(&mut self, key: String, opts: Option<GetOptions>) -> Res<etcd_client::GetResponse> {
        self.call(move |mut c| {
            let (key, opts) = (key.clone(), opts.clone());
            async move { c.get(key, opts).await }
        })
        .await
    }

    /// Wait until some member answers with a leader, retrying with back-off; None when stopped.
    async fn wait_for_etcd(&mut self) -> Option<()> {
        let mut backoff = BACKOFF_MIN;
        loop {
            if self.stopped() {
                return None;
            }
            if self.members.healthy().await.is_some() {
                return Some(());
            }
            self.status.connected.store(false, Ordering::Relaxed);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// `<prefix>/config`, retried every second until it exists and parses.
    async fn network_config(&mut self) -> Option<NetworkConfig> {
        let key = self.config_key();
        let mut said = String::new();
        loop {
            if self.stopped() {
                return None;
            }
            let msg = match self.get(key.clone(), None).await {
                Ok(r) => match r.kvs().first() {
                    None => format!("waiting for the network config: {key} does not exist (write it with etcdctl put {key} '{{\"Network\":\"10.244.0.0/16\",\"Backend\":{{\"Type\":\"vxlan\"}}}}')"),
                    Some(kv) => match NetworkConfig::from_json(&String::from_utf8_lossy(kv.value())) {
                        Ok(c) => return Some(c),
                        Err(e) => format!("{key}: {e}; waiting for a valid config"),
                    },
                },
                Err(e) => format!("reading {key}: {}", cause(&e)),
            };
            if msg != said {
                info!("{msg}");
                said = msg;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Every key under the subnets prefix: parsed leases, and the subnets whose values do not parse
    /// (still taken). Returns the revision of the read.
    async fn list(&mut self) -> Res<(i64, BTreeMap<Ipv4Net, Option<Lease>>)> {
        let resp = self.get(self.subnets_prefix(), Some(GetOptions::new().with_prefix())).await?;
        let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        let mut all = BTreeMap::new();
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            if let Some((net, lease)) = self.parse_kv(&key, kv.value()) {
                all.insert(net, lease);
            }
        }
        Ok((rev, all))
    }

    /// A subnet key and its value; bad ones are logged with the key and counted.
    fn parse_kv(&self, key: &str, value: &[u8]) -> Option<(Ipv4Net, Option<Lease>)> {
        let name = key.strip_prefix(&self.subnets_prefix())?;
        let net = match name.parse::<SubnetKey>() {
            Ok(k) => k.0,
            Err(e) => {
                self.status.bad_values.fetch_add(1, Ordering::Relaxed);
                warn!(key, error = %e, "bad subnet key; skipped");
                return None;
            }
        };
        match Lease::from_json(&String::from_utf8_lossy(value)) {
            Ok(l) => Some((net, Some(l))),
            Err(e) => {
                self.status.bad_values.fetch_add(1, Ordering::Relaxed);
                warn!(key, error = %e, "bad lease value; skipped (its subnet stays taken)");
                Some((net, None))
            }
        }
    }

    fn our_value(&self, network: &NetworkConfig) -> String {
        Lease::of(network.backend, self.id.public_ip, network.vni, self.id.vtep_mac).to_json()
    }

    /// Take a subnet: ours if we have one, else the previous one if free, else a free one. Lost races
    /// are retried with another subnet (flanneld exits there).
    ///
    /// The transaction is not retried on another member by itself: if it committed before the answer
    /// was lost, the next round's list shows the key as ours and takes it again under a new etcd lease.
    async fn acquire(&mut self, network: &NetworkConfig, prefer: Option<Ipv4Net>) -> Res<Option<Held>> {
        let previous = prefer.or_else(|| SubnetFile::read_previous(&self.id.subnet_file).map(|f| f.subnet));
        let mut avoid = Vec::new();
        let value = self.our_value(network);
        for _ in 0..100 {
            if self.stopped() {
                return Ok(None);
            }
            let (_, all) = self.list().await?;
            let existing: HashMap<Ipv4Net, Lease> = all
                .iter()
                .map(|(n, l)| {
                    (
                        *n,
                        l.clone().unwrap_or_else(|| Lease {
                            public_ip: Ipv4Addr::UNSPECIFIED,
                            backend_type: String::new(),
                            backend_data: serde_json::Value::Null,
                        }),
                    )
                })
                .collect();
            let choice = match choose_subnet(network, &existing, self.id.public_ip, previous, &avoid, random()) {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "no subnet to take; retrying in 10 s");
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    continue;
                }
            };
            let subnet = choice.subnet();
            let key = self.key_of(subnet);
            let ttl = self.id.lease_ttl.as_secs().max(2) as i64;
            let grant = self.call(move |mut c| async move { c.lease_grant(ttl, None).await }).await?;
            let put = TxnOp::put(key.as_str(), value.as_str(), Some(PutOptions::new().with_lease(grant.id())));
            let txn = match choice {
                // Ours already: rewrite it under the new etcd lease (as flanneld renews: new TTL).
                Choice::Reuse(_) => Txn::new().and_then([put]),
                Choice::Previous(_) | Choice::Fresh(_) => {
                    Txn::new().when([Compare::version(key.as_str(), CompareOp::Equal, 0)]).and_then([put])
                }
            };
            let Some(mut client) = self.members.healthy().await else {
                return Err(etcd_client::Error::EndpointError("no etcd member answers with a leader".into()));
            };
            let committed = match client.txn(txn).await {
                Ok(r) => r.succeeded(),
                Err(e) => {
                    if crate::members::worth_another_member(&e) {
                        self.members.skip_current();
                    }
                    return Err(e);
                }
            };
            if committed {
                info!(
                    %subnet,
                    choice = ?choice,
                    public_ip = %self.id.public_ip,
                    vtep_mac = %self.id.vtep_mac,
                    "holding the lease"
                );
                let file =
                    SubnetFile::new(network.network, subnet, self.id.underlay_mtu, network.backend, self.id.ipmasq);
                if let Err(e) = file.write_atomic(&self.id.subnet_file) {
                    error!(path = %self.id.subnet_file.display(), error = %e, "writing the subnet file");
                }
                self.status.lease_expiry.store(now_unix() + ttl, Ordering::Relaxed);
                return Ok(Some(Held {
                    network: network.clone(),
                    subnet,
                    lease_id: grant.id(),
                    ttl,
                    renew_at: self.renew_deadline(ttl),
                }));
            }
            let id = grant.id();
            let _ = self.call(move |mut c| async move { c.lease_revoke(id).await }).await;
            info!(%subnet, "lost the race for the subnet; trying another");
            avoid.push(subnet);
        }
        Err(etcd_client::Error::InvalidArgs("no subnet could be taken after 100 attempts".into()))
    }

    fn renew_deadline(&self, ttl: i64) -> tokio::time::Instant {
        let ttl = Duration::from_secs(ttl as u64);
        let wait = ttl.checked_sub(self.id.renew_margin).filter(|d| !d.is_zero()).unwrap_or(ttl / 2);
        tokio::time::Instant::now() + wait
    }

    /// Whether our etcd lease is still alive (its remaining TTL is positive).
    async fn lease_alive(&mut self, id: i64) -> Res<bool> {
        let r = self.call(move |mut c| async move { c.lease_time_to_live(id, None).await }).await?;
        Ok(r.ttl() > 0)
    }

    /// Renew: a keep-alive resets the TTL. False when the lease is gone (expired or revoked): etcd
    /// answers a keep-alive for an unknown lease with TTL 0, which etcd-client reports as an error of
    /// its own kind; that is confirmed with a TimeToLive before the lease is given up.
    async fn renew(&mut self, held: &mut Held) -> Res<bool> {
        let id = held.lease_id;
        match self.call(move |mut c| async move { c.lease_keep_alive(id).await.map(|_| ()) }).await {
            Ok(()) => {}
            Err(etcd_client::Error::LeaseKeepAliveError(_)) => {
                if !self.lease_alive(id).await? {
                    return Ok(false);
                }
            }
            Err(e) => return Err(e),
        }
        self.status.lease_expiry.store(now_unix() + held.ttl, Ordering::Relaxed);
        held.renew_at = self.renew_deadline(held.ttl);
        Ok(true)
    }

    fn peers_of(&self, all: &BTreeMap<Ipv4Net, Option<Lease>>, held: &Held) -> Vec<Peer> {
        all.iter()
            .filter(|(n, _)| **n != held.subnet)
            .filter_map(|(n, l)| Peer::from_lease(*n, l.as_ref()?, held.network.backend, held.network.vni))
            .collect()
    }

    async fn run(mut self) {
        self.wait_for_etcd().await;
        let Some(network) = self.network_config().await else { return };
        let mut held = loop {
            match self.acquire(&network, None).await {
                Ok(Some(h)) => break h,
                Ok(None) => return,
                Err(e) => {
                    warn!(error = %cause(&e), "acquiring a lease; retrying");
                    tokio::time::sleep(BACKOFF_MAX).await;
                    if self.wait_for_etcd().await.is_none() {
                        return;
                    }
                }
            }
        };
        let _ = self.tx.send(ControlEvent::Acquired { network: held.network.clone(), subnet: held.subnet });
        let mut all: BTreeMap<Ipv4Net, Option<Lease>> = BTreeMap::new();
        let mut sent: Option<Vec<Peer>> = None;
        let mut rev: i64 = 0;
        let mut need_list = true;
        let mut backoff = BACKOFF_MIN;
        while !self.stopped() {
            let end = self.session(&mut held, &mut all, &mut sent, &mut rev, &mut need_list).await;
            self.status.connected.store(false, Ordering::Relaxed);
            if self.stopped() {
                break;
            }
            match end {
                SessionEnd::Resync => backoff = BACKOFF_MIN,
                SessionEnd::Broken { error, healthy } => {
                    if healthy {
                        backoff = BACKOFF_MIN;
                    }
                    let why = cause(&error);
                    self.status.set_last_error(why.clone());
                    warn!(error = %why, ?backoff, "etcd session broke; resuming (forwarding continues on the last table)");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    if crate::members::worth_another_member(&error) {
                        self.members.skip_current();
                    }
                    if self.wait_for_etcd().await.is_none() {
                        break;
                    }
                }
            }
        }
    }

    fn publish(&self, all: &BTreeMap<Ipv4Net, Option<Lease>>, held: &Held, sent: &mut Option<Vec<Peer>>) {
        let peers = self.peers_of(all, held);
        if sent.as_ref() != Some(&peers) {
            let _ = self.tx.send(ControlEvent::Peers(peers.clone()));
            *sent = Some(peers);
        }
    }

    /// Our key as etcd holds it now (not as the watch last said): gone, or not on our lease, means
    /// the lease expired or was deleted while we could not see it.
    async fn check_own_key(&mut self, held: &mut Held) -> Res<bool> {
        let resp = self.get(self.key_of(held.subnet), None).await?;
        let Some(kv) = resp.kvs().first() else { return Ok(false) };
        let lease = Lease::from_json(&String::from_utf8_lossy(kv.value())).ok();
        if lease.as_ref().is_some_and(|l| l.public_ip != self.id.public_ip) {
            self.check_claim(lease.as_ref());
            return Ok(true); // another node's: reported, not fought
        }
        self.check_claim(lease.as_ref());
        if kv.lease() != held.lease_id {
            return Ok(false);
        }
        self.lease_alive(held.lease_id).await
    }

    /// List (when needed), then watch from the next revision, renewing the lease on time.
    async fn session(
        &mut self,
        held: &mut Held,
        all: &mut BTreeMap<Ipv4Net, Option<Lease>>,
        sent: &mut Option<Vec<Peer>>,
        rev: &mut i64,
        need_list: &mut bool,
    ) -> SessionEnd {
        let broken = |error| SessionEnd::Broken { error, healthy: false };
        // Whatever happened while we could not see etcd, our lease is checked directly, not left to
        // the watch replaying its deletion (it may have been compacted away, or etcd restored).
        match self.check_own_key(held).await {
            Ok(true) => {}
            Ok(false) => {
                warn!(subnet = %held.subnet, "our lease is gone from etcd (expired or deleted)");
                return self.reacquire(held).await.map_or_else(broken, |()| SessionEnd::Resync);
            }
            Err(e) => return broken(e),
        }
        if *need_list {
            let (r, listed) = match self.list().await {
                Ok(x) => x,
                Err(e) => return broken(e),
            };
            *all = listed;
            *rev = r;
            *need_list = false;
            self.status.revision.store(r, Ordering::Relaxed);
            self.publish(all, held, sent);
        }
        let Some(mut client) = self.members.healthy().await else {
            return broken(etcd_client::Error::EndpointError("no etcd member answers with a leader".into()));
        };
        let opts = WatchOptions::new().with_prefix().with_start_revision(*rev + 1).with_progress_notify();
        let mut stream = match client.watch(self.subnets_prefix(), Some(opts)).await {
            Ok(s) => s,
            Err(e) => return broken(e),
        };
        // The network config: read once per session (a change while etcd was away), then watched.
        let mut config_said = None;
        match self.get(self.config_key(), None).await {
            Ok(r) => self.check_config(held, r.kvs().first().map(|kv| kv.value()), &mut config_said),
            Err(e) => return broken(e),
        }
        let cfg_opts = WatchOptions::new().with_start_revision(*rev + 1);
        let mut cfg_stream = match client.watch(self.config_key(), Some(cfg_opts)).await {
            Ok(s) => s,
            Err(e) => return broken(e),
        };
        let since = tokio::time::Instant::now();
        let broken = |error| SessionEnd::Broken { error, healthy: since.elapsed() >= HEALTHY_AFTER };
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                msg = cfg_stream.message() => {
                    match msg {
                        Ok(Some(resp)) => {
                            for ev in resp.events() {
                                let value = match ev.event_type() {
                                    EventType::Put => ev.kv().map(|kv| kv.value()),
                                    EventType::Delete => None,
                                };
                                self.check_config(held, value, &mut config_said);
                            }
                        }
                        Ok(None) => return broken(etcd_client::Error::WatchError("config watch stream ended".into())),
                        Err(e) => return broken(e),
                    }
                }
                msg = stream.message() => {
                    let resp = match msg {
                        Ok(Some(r)) => r,
                        Ok(None) => return broken(etcd_client::Error::WatchError("watch stream ended".into())),
                        Err(e) => return broken(e),
                    };
                    if resp.created() {
                        // The watch is live on a member with a leader (require-leader would refuse it
                        // otherwise, and cancels it when the leader is lost).
                        self.status.connected.store(true, Ordering::Relaxed);
                        self.status.watches.fetch_add(1, Ordering::Relaxed);
                    }
                    if resp.compact_revision() != 0 {
                        info!(from = *rev + 1, compacted = resp.compact_revision(), "watch compacted: re-listing");
                        self.status.resyncs.fetch_add(1, Ordering::Relaxed);
                        *need_list = true;
                        return SessionEnd::Resync;
                    }
                    if resp.canceled() {
                        let why = resp.cancel_reason().to_string();
                        return broken(etcd_client::Error::WatchError(format!("watch cancelled by {}: {why}", self.members.current_url())));
                    }
                    let mut ours_gone = false;
                    for ev in resp.events() {
                        let Some(kv) = ev.kv() else { continue };
                        let key = String::from_utf8_lossy(kv.key()).into_owned();
                        *rev = (*rev).max(kv.mod_revision());
                        match ev.event_type() {
                            EventType::Put => {
                                if let Some((net, lease)) = self.parse_kv(&key, kv.value()) {
                                    if net == held.subnet {
                                        self.check_claim(lease.as_ref());
                                    }
                                    // A value that does not parse keeps the last good one for that key.
                                    if lease.is_some() || !all.contains_key(&net) {
                                        all.insert(net, lease);
                                    }
                                }
                            }
                            EventType::Delete => {
                                if let Ok(k) = key.trim_start_matches(&self.subnets_prefix()).parse::<SubnetKey>() {
                                    all.remove(&k.0);
                                    ours_gone |= k.0 == held.subnet;
                                }
                            }
                        }
                    }
                    if let Some(h) = resp.header() {
                        *rev = (*rev).max(h.revision());
                    }
                    self.status.revision.store(*rev, Ordering::Relaxed);
                    // A delete followed by a put in the same response (our own retake, replayed) is
                    // not a loss: what counts is whether the key is there after all the events.
                    if ours_gone && !all.contains_key(&held.subnet) {
                        return self.reacquire(held).await.map_or_else(broken, |()| SessionEnd::Resync);
                    }
                    self.publish(all, held, sent);
                }
                _ = tick.tick() => {
                    if self.stopped() {
                        return SessionEnd::Resync;
                    }
                    if tokio::time::Instant::now() >= held.renew_at {
                        match self.renew(held).await {
                            Ok(true) => {}
                            Ok(false) => {
                                warn!(subnet = %held.subnet, "our lease expired: taking it again");
                                return self.reacquire(held).await.map_or_else(broken, |()| SessionEnd::Resync);
                            }
                            Err(e) => {
                                // Try again soon; the reconnect checks the lease directly.
                                held.renew_at = tokio::time::Instant::now() + Duration::from_secs(1);
                                return broken(e);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Our subnet's key was written: if it now names another node, two nodes claim one subnet. weft keeps
    /// forwarding on its own subnet (its pods live there), says so loudly, counts it and reports not-ready;
    /// it does not fight over the key (that would flip-flop with the other writer). Deleting the key, or
    /// the other node moving away, lets the lease be taken back.
    fn check_claim(&self, lease: Option<&Lease>) {
        let other = lease.map(|l| l.public_ip).filter(|ip| *ip != self.id.public_ip);
        let was = self.status.claimed_by.swap(other.map(u32::from).unwrap_or(0), Ordering::Relaxed);
        match other {
            Some(ip) if was != u32::from(ip) => {
                self.status.conflicts.fetch_add(1, Ordering::Relaxed);
                error!(claimed_by = %ip, "our subnet's key is claimed by another node: two nodes on one subnet; keeping ours, not ready until resolved");
            }
            None if was != 0 => info!("our subnet's key names us again"),
            _ => {}
        }
    }

    /// Our key is gone (deleted or expired): take a lease again, the same subnet if it is free.
    async fn reacquire(&mut self, held: &mut Held) -> Res<()> {
        self.status.claimed_by.store(0, Ordering::Relaxed);
        warn!(key = %self.key_of(held.subnet), "our lease disappeared from etcd; taking it again");
        self.status.reacquired.fetch_add(1, Ordering::Relaxed);
        let network = held.network.clone();
        if let Some(h) = self.acquire(&network, Some(held.subnet)).await? {
            if h.subnet != held.subnet {
                error!(was = %held.subnet, now = %h.subnet, "our subnet is taken now; this node moved");
            }
            *held = h;
            let _ = self.tx.send(ControlEvent::Acquired { network, subnet: held.subnet });
        }
        Ok(())
    }
}
