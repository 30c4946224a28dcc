//! The etcd side of a weft node, in flannel's schema (DESIGN.md §2, flannel `pkg/subnet/etcd`):
//! read `<prefix>/config`, hold this node's lease under `<prefix>/subnets/`, write the subnet file, and
//! watch the other leases. It runs on its own thread with its own (single-threaded) async runtime and
//! tells weftd what changed through a channel; while etcd is unreachable nothing is sent, so the
//! dataplane keeps forwarding on the last table.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, TlsOptions, Txn, TxnOp, WatchOptions,
};
use weft_config::{Ipv4Net, Lease, MacAddr, NetworkConfig, SubnetKey};

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

/// A remote node from its vxlan lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteLease {
    pub subnet: Ipv4Net,
    pub public_ip: Ipv4Addr,
    pub vtep_mac: MacAddr,
    pub vni: u32,
}

/// What the control thread tells weftd.
#[derive(Debug, Clone)]
pub enum ControlEvent {
    /// Our lease is held (first time, or again after losing it).
    Acquired { network: NetworkConfig, subnet: Ipv4Net },
    /// The full set of remote vxlan peers, after any change.
    Peers(Vec<RemoteLease>),
    /// Giving up (bad configuration that retrying cannot fix).
    Fatal(String),
}

/// Counters and state for status and metrics.
#[derive(Debug, Default)]
pub struct ControlStatus {
    pub connected: AtomicBool,
    pub revision: AtomicI64,
    pub resyncs: AtomicU64,
    pub bad_values: AtomicU64,
    /// Unix time at which our lease expires unless renewed.
    pub lease_expiry: AtomicI64,
    pub reacquired: AtomicU64,
    /// Times another node wrote our subnet's key with its own PublicIP.
    pub conflicts: AtomicU64,
    /// Set while our subnet's key names another node (u32 of its PublicIP; 0 when ours).
    pub claimed_by: std::sync::atomic::AtomicU32,
}

type Res<T> = Result<T, etcd_client::Error>;

fn log(msg: impl AsRef<str>) {
    eprintln!("weft-control: {}", msg.as_ref());
}

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

/// The control thread.
#[derive(Debug)]
pub struct ControlHandle {
    pub events: mpsc::Receiver<ControlEvent>,
    pub status: Arc<ControlStatus>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ControlHandle {
    /// Wait for the first `Acquired` (peers that arrive before it are returned too).
    pub fn wait_acquired(&self, timeout: Duration) -> Result<(NetworkConfig, Ipv4Net, Vec<RemoteLease>), String> {
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
                Ok(ControlEvent::Fatal(e)) => return Err(e),
                Err(_) => return Err(format!("no lease from etcd within {timeout:?}")),
            }
        }
    }

    /// Stop the thread (the lease stays in etcd, as flanneld leaves it, so a restart reuses it).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ControlHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Start the control thread.
pub fn start(cfg: EtcdConfig, id: Identity) -> ControlHandle {
    let (tx, rx) = mpsc::channel();
    let status = Arc::new(ControlStatus::default());
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let (status, stop) = (status.clone(), stop.clone());
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
                rt.block_on(Controller { cfg, id, tx, status, stop }.run());
            })
            .ok()
    };
    ControlHandle { events: rx, status, stop, thread }
}

struct Controller {
    cfg: EtcdConfig,
    id: Identity,
    tx: mpsc::Sender<ControlEvent>,
    status: Arc<ControlStatus>,
    stop: Arc<AtomicBool>,
}

/// Our lease as held.
struct Held {
    network: NetworkConfig,
    subnet: Ipv4Net,
    lease_id: i64,
    renew_at: tokio::time::Instant,
}

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

impl Controller {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn subnets_prefix(&self) -> String {
        format!("{}/subnets/", self.cfg.prefix.trim_end_matches('/'))
    }

    fn key_of(&self, subnet: Ipv4Net) -> String {
        format!("{}{}", self.subnets_prefix(), SubnetKey(subnet))
    }

    async fn connect(&self) -> Res<Client> {
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
        if let (Some(u), Some(p)) = (&self.cfg.username, &self.cfg.password) {
            opts = opts.with_user(u.clone(), p.clone());
        }
        if self.cfg.cafile.is_some() || self.cfg.certfile.is_some() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &self.cfg.cafile {
                let pem = std::fs::read(ca).map_err(etcd_client::Error::IoError)?;
                tls = tls.ca_certificate(etcd_client::Certificate::from_pem(pem));
            }
            if let (Some(c), Some(k)) = (&self.cfg.certfile, &self.cfg.keyfile) {
                let cert = std::fs::read(c).map_err(etcd_client::Error::IoError)?;
                let key = std::fs::read(k).map_err(etcd_client::Error::IoError)?;
                tls = tls.identity(etcd_client::Identity::from_pem(cert, key));
            }
            opts = opts.with_tls(tls);
        }
        Client::connect(&self.cfg.endpoints, Some(opts)).await
    }

    /// Connect, retrying with back-off until it works or we are stopped.
    async fn connect_retrying(&self) -> Option<Client> {
        let mut backoff = BACKOFF_MIN;
        loop {
            if self.stopped() {
                return None;
            }
            match self.connect().await {
                Ok(mut c) => {
                    // The client connects lazily; make one request to know.
                    if c.status().await.is_ok() {
                        self.status.connected.store(true, Ordering::Relaxed);
                        return Some(c);
                    }
                }
                Err(e) => log(format!("etcd {:?}: {e}; retrying in {backoff:?}", self.cfg.endpoints)),
            }
            self.status.connected.store(false, Ordering::Relaxed);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// `<prefix>/config`, retried every second until it exists and parses.
    async fn network_config(&self, client: &mut Client) -> Option<NetworkConfig> {
        let key = format!("{}/config", self.cfg.prefix.trim_end_matches('/'));
        let mut said = String::new();
        loop {
            if self.stopped() {
                return None;
            }
            let msg = match client.get(key.as_str(), None).await {
                Ok(r) => match r.kvs().first() {
                    None => format!("waiting for the network config: {key} does not exist (write it with etcdctl put {key} '{{\"Network\":\"10.244.0.0/16\",\"Backend\":{{\"Type\":\"vxlan\"}}}}')"),
                    Some(kv) => match NetworkConfig::from_json(&String::from_utf8_lossy(kv.value())) {
                        Ok(c) => return Some(c),
                        Err(e) => format!("{key}: {e}; waiting for a valid config"),
                    },
                },
                Err(e) => format!("reading {key}: {e}"),
            };
            if msg != said {
                log(&msg);
                said = msg;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Every key under the subnets prefix: parsed leases, and the subnets whose values do not parse
    /// (still taken). Returns the revision of the read.
    async fn list(&self, client: &mut Client) -> Res<(i64, BTreeMap<Ipv4Net, Option<Lease>>, HashMap<Ipv4Net, i64>)> {
        let resp = client.get(self.subnets_prefix(), Some(GetOptions::new().with_prefix())).await?;
        let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        let mut all = BTreeMap::new();
        let mut etcd_leases = HashMap::new();
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            if let Some((net, lease)) = self.parse_kv(&key, kv.value()) {
                etcd_leases.insert(net, kv.lease());
                all.insert(net, lease);
            }
        }
        Ok((rev, all, etcd_leases))
    }

    /// A subnet key and its value; bad ones are logged with the key and counted.
    fn parse_kv(&self, key: &str, value: &[u8]) -> Option<(Ipv4Net, Option<Lease>)> {
        let name = key.strip_prefix(&self.subnets_prefix())?;
        let net = match name.parse::<SubnetKey>() {
            Ok(k) => k.0,
            Err(e) => {
                self.status.bad_values.fetch_add(1, Ordering::Relaxed);
                log(format!("{key}: {e}; skipped"));
                return None;
            }
        };
        match Lease::from_json(&String::from_utf8_lossy(value)) {
            Ok(l) => Some((net, Some(l))),
            Err(e) => {
                self.status.bad_values.fetch_add(1, Ordering::Relaxed);
                log(format!("{key}: {e}; skipped (its subnet stays taken)"));
                Some((net, None))
            }
        }
    }

    fn our_value(&self, network: &NetworkConfig) -> String {
        Lease::vxlan(self.id.public_ip, network.vni, self.id.vtep_mac).to_json()
    }

    /// Take a subnet: ours if we have one, else the previous one if free, else a free one. Lost races
    /// are retried with another subnet (flanneld exits there).
    async fn acquire(
        &self,
        client: &mut Client,
        network: &NetworkConfig,
        prefer: Option<Ipv4Net>,
    ) -> Res<Option<Held>> {
        let previous = prefer.or_else(|| SubnetFile::read_previous(&self.id.subnet_file).map(|f| f.subnet));
        let mut avoid = Vec::new();
        let value = self.our_value(network);
        for _ in 0..100 {
            if self.stopped() {
                return Ok(None);
            }
            let (_, all, _) = self.list(client).await?;
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
                    log(format!("{e}; retrying in 10 s"));
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    continue;
                }
            };
            let subnet = choice.subnet();
            let key = self.key_of(subnet);
            let ttl = self.id.lease_ttl.as_secs().max(2) as i64;
            let grant = client.lease_grant(ttl, None).await?;
            let put = TxnOp::put(key.as_str(), value.as_str(), Some(PutOptions::new().with_lease(grant.id())));
            let txn = match choice {
                // Ours already: rewrite it under the new etcd lease (as flanneld renews: new TTL).
                Choice::Reuse(_) => Txn::new().and_then([put]),
                Choice::Previous(_) | Choice::Fresh(_) => {
                    Txn::new().when([Compare::version(key.as_str(), CompareOp::Equal, 0)]).and_then([put])
                }
            };
            if client.txn(txn).await?.succeeded() {
                log(format!(
                    "holding {subnet} ({choice:?}) as {} with VtepMAC {}",
                    self.id.public_ip, self.id.vtep_mac
                ));
                let file = SubnetFile::new(network.network, subnet, self.id.underlay_mtu, self.id.ipmasq);
                if let Err(e) = file.write_atomic(&self.id.subnet_file) {
                    log(format!("writing {}: {e}", self.id.subnet_file.display()));
                }
                self.status.lease_expiry.store(now_unix() + ttl, Ordering::Relaxed);
                return Ok(Some(Held {
                    network: network.clone(),
                    subnet,
                    lease_id: grant.id(),
                    renew_at: self.renew_deadline(ttl),
                }));
            }
            let _ = client.lease_revoke(grant.id()).await;
            log(format!("lost the race for {subnet}; trying another subnet"));
            avoid.push(subnet);
        }
        Err(etcd_client::Error::InvalidArgs("no subnet could be taken after 100 attempts".into()))
    }

    fn renew_deadline(&self, ttl: i64) -> tokio::time::Instant {
        let ttl = Duration::from_secs(ttl as u64);
        let wait = ttl.checked_sub(self.id.renew_margin).filter(|d| !d.is_zero()).unwrap_or(ttl / 2);
        tokio::time::Instant::now() + wait
    }

    /// Renew: keep-alive resets the TTL. False when the lease is gone (expired or revoked).
    async fn renew(&self, client: &mut Client, held: &mut Held) -> Res<bool> {
        let (mut keeper, mut stream) = client.lease_keep_alive(held.lease_id).await?;
        keeper.keep_alive().await?;
        let ttl = match stream.message().await? {
            Some(r) => r.ttl(),
            None => 0,
        };
        if ttl <= 0 {
            return Ok(false);
        }
        self.status.lease_expiry.store(now_unix() + ttl, Ordering::Relaxed);
        held.renew_at = self.renew_deadline(ttl);
        Ok(true)
    }

    fn peers_of(&self, all: &BTreeMap<Ipv4Net, Option<Lease>>, held: &Held) -> Vec<RemoteLease> {
        all.iter()
            .filter(|(n, _)| **n != held.subnet)
            .filter_map(|(n, l)| {
                let l = l.as_ref()?;
                if !l.is_vxlan() {
                    return None; // host-gw, udp, ... nodes are not VXLAN peers
                }
                let d = l.vxlan_data().ok()?;
                Some(RemoteLease { subnet: *n, public_ip: l.public_ip, vtep_mac: d.vtep_mac, vni: d.vni })
            })
            .collect()
    }

    async fn run(self) {
        let Some(mut client) = self.connect_retrying().await else { return };
        let Some(network) = self.network_config(&mut client).await else { return };
        let mut held = loop {
            match self.acquire(&mut client, &network, None).await {
                Ok(Some(h)) => break h,
                Ok(None) => return,
                Err(e) => {
                    log(format!("acquiring a lease: {e}; retrying in 1 s"));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if let Some(c) = self.connect_retrying().await {
                        client = c;
                    } else {
                        return;
                    }
                }
            }
        };
        let _ = self.tx.send(ControlEvent::Acquired { network: held.network.clone(), subnet: held.subnet });
        let mut all: BTreeMap<Ipv4Net, Option<Lease>> = BTreeMap::new();
        let mut sent: Option<Vec<RemoteLease>> = None;
        let mut rev: i64 = 0;
        let mut need_list = true;
        let mut backoff = BACKOFF_MIN;
        while !self.stopped() {
            let r = self.session(&mut client, &mut held, &mut all, &mut sent, &mut rev, &mut need_list).await;
            if self.stopped() {
                break;
            }
            if let Err(e) = r {
                self.status.connected.store(false, Ordering::Relaxed);
                log(format!("etcd: {e}; resuming in {backoff:?} (forwarding continues on the last table)"));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                if let Ok(c) = self.connect().await {
                    client = c;
                }
            } else {
                backoff = BACKOFF_MIN;
            }
        }
    }

    fn publish(&self, all: &BTreeMap<Ipv4Net, Option<Lease>>, held: &Held, sent: &mut Option<Vec<RemoteLease>>) {
        let peers = self.peers_of(all, held);
        if sent.as_ref() != Some(&peers) {
            let _ = self.tx.send(ControlEvent::Peers(peers.clone()));
            *sent = Some(peers);
        }
    }

    /// List (when needed), then watch from the next revision, renewing the lease on time. Returns Ok
    /// when a resync is needed, Err when the connection broke.
    async fn session(
        &self,
        client: &mut Client,
        held: &mut Held,
        all: &mut BTreeMap<Ipv4Net, Option<Lease>>,
        sent: &mut Option<Vec<RemoteLease>>,
        rev: &mut i64,
        need_list: &mut bool,
    ) -> Res<()> {
        if *need_list {
            let (r, listed, _) = self.list(client).await?;
            *all = listed;
            *rev = r;
            *need_list = false;
            self.status.revision.store(r, Ordering::Relaxed);
            if !all.contains_key(&held.subnet) {
                self.reacquire(client, held).await?;
                return Ok(());
            }
            self.publish(all, held, sent);
        }
        self.status.connected.store(true, Ordering::Relaxed);
        let opts = WatchOptions::new().with_prefix().with_start_revision(*rev + 1).with_progress_notify();
        let (_watcher, mut stream) = client.watch(self.subnets_prefix(), Some(opts)).await?;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                msg = stream.message() => {
                    let Some(resp) = msg? else {
                        return Err(etcd_client::Error::WatchError("watch stream ended".into()));
                    };
                    if resp.compact_revision() != 0 || resp.canceled() {
                        log(format!("watch from revision {} cancelled (compacted to {}): re-listing", *rev + 1, resp.compact_revision()));
                        self.status.resyncs.fetch_add(1, Ordering::Relaxed);
                        *need_list = true;
                        return Ok(());
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
                    if ours_gone {
                        self.reacquire(client, held).await?;
                        return Ok(());
                    }
                    self.publish(all, held, sent);
                }
                _ = tick.tick() => {
                    if self.stopped() {
                        return Ok(());
                    }
                    if tokio::time::Instant::now() >= held.renew_at {
                        match self.renew(client, held).await {
                            Ok(true) => {}
                            Ok(false) => {
                                log(format!("our lease on {} expired: taking it again", held.subnet));
                                self.reacquire(client, held).await?;
                                return Ok(());
                            }
                            Err(e) => {
                                // Try again in a minute (or sooner when the connection comes back).
                                held.renew_at = tokio::time::Instant::now() + Duration::from_secs(60).min(self.id.lease_ttl / 4);
                                return Err(e);
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
                log(format!("!!! our subnet's key is claimed by {ip}: two nodes on one subnet; keeping ours, not ready until resolved"));
            }
            None if was != 0 => log("our subnet's key names us again"),
            _ => {}
        }
    }

    /// Our key is gone (deleted or expired): take a lease again, the same subnet if it is free.
    async fn reacquire(&self, client: &mut Client, held: &mut Held) -> Res<()> {
        self.status.claimed_by.store(0, Ordering::Relaxed);
        log(format!("!!! our lease {} disappeared from etcd; taking it again", self.key_of(held.subnet)));
        self.status.reacquired.fetch_add(1, Ordering::Relaxed);
        let network = held.network.clone();
        if let Some(h) = self.acquire(client, &network, Some(held.subnet)).await? {
            if h.subnet != held.subnet {
                log(format!("!!! {} is taken now; this node moved to {}", held.subnet, h.subnet));
            }
            *held = h;
            let _ = self.tx.send(ControlEvent::Acquired { network, subnet: held.subnet });
        }
        Ok(())
    }
}
