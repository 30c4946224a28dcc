//! weftd's process: EAL, the uplink, the worker pool, the slow path (underlay ARP), pod hot-plug and
//! the unix-socket API. Everything here runs off the workers' lcores; workers only see snapshots and
//! [`WorkerCommand`]s.

pub mod api;
pub mod error;
pub mod host;
pub mod ipam;
mod metrics;
pub mod mgmt;
mod notify;
mod pods;
pub mod rps;
mod slowpath;
mod stats;
pub mod trace;
mod vhost;

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crossbeam::channel::{bounded, Sender};
use crossbeam::utils::CachePadded;
use tracing::{error, info, warn};
use weft_config::node::NodeSettings;
use weft_config::MacAddr;

use dataplane::dpdk::{Eal, LcoreHandle, LcoreId, Mempool, Port, PortConfig};
use dataplane::tables::{Node, Peer, SnapshotCell, TableInputs};
use dataplane::trace::Trace;
use dataplane::worker::{Backoff, Worker, WorkerCommand, WorkerCounters};
use host::af_packet_frame;
use weft_control::etcd::ControlEvent;

pub use error::Error;
pub use pods::{PodInfo, PodRegistry};

/// State shared by the control-side threads (API, slow path, main). Never touched by workers.
pub struct Shared {
    pub settings: NodeSettings,
    pub node: Node,
    pub tables: Arc<TablePublisher>,
    pub workers: Vec<Sender<WorkerCommand>>,
    pub counters: Vec<Arc<CachePadded<WorkerCounters>>>,
    pub pool: Arc<Mempool>,
    pub uplink: Port,
    /// The host port (weft0), unless `host_iface` turned it off.
    pub host: Option<host::HostIface>,
    pub pods: PodRegistry,
    /// Until when a worker is paused by the debugging verb (one pause at a time).
    paused_until: Mutex<Option<std::time::Instant>>,
    pub stop: Arc<AtomicBool>,
    pub etcd_status: Option<Arc<weft_control::etcd::ControlStatus>>,
    /// The packet trace every worker records into when `weftctl trace` arms it.
    pub trace: Arc<Trace>,
    /// One trace at a time.
    trace_busy: Mutex<()>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("node", &self.node).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The one way tables change: the inputs the control side keeps (node, peers, pods, neighbours), an
/// edit, a rebuild, a publish. What the slow path, pods and etcd events are handed instead of the
/// whole process.
#[derive(Debug)]
pub struct TablePublisher {
    cell: Arc<SnapshotCell>,
    inputs: Mutex<TableInputs>,
    generation: AtomicU64,
}

impl TablePublisher {
    pub fn new(inputs: TableInputs) -> TablePublisher {
        TablePublisher {
            cell: Arc::new(SnapshotCell::new(inputs.build(1))),
            inputs: Mutex::new(inputs),
            generation: AtomicU64::new(1),
        }
    }

    /// Rebuild the snapshot from the inputs after `edit`, and publish it to the workers.
    pub fn update(&self, edit: impl FnOnce(&mut TableInputs)) {
        let mut inputs = lock(&self.inputs);
        edit(&mut inputs);
        let g = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.cell.publish(inputs.build(g));
    }

    pub fn inputs(&self) -> TableInputs {
        lock(&self.inputs).clone()
    }

    /// The newest snapshot.
    pub fn snapshot(&self) -> Arc<dataplane::tables::Snapshot> {
        self.cell.load_full()
    }

    /// The cell workers read from.
    pub fn cell(&self) -> Arc<SnapshotCell> {
        self.cell.clone()
    }
}

/// The VtepMAC: as configured, else the one saved in the state directory, else a new random locally
/// administered one (as flannel makes), saved so it survives restarts.
pub fn load_or_create_vtep_mac(given: Option<MacAddr>, state_dir: &Path) -> Result<MacAddr, Error> {
    if let Some(m) = given {
        return Ok(m);
    }
    let path = state_dir.join("vtep_mac");
    if let Ok(text) = std::fs::read_to_string(&path) {
        match text.trim().parse() {
            Ok(m) => return Ok(m),
            Err(e) => {
                // Kept for a person to look at, never overwritten.
                let aside = weft_config::state::move_aside(&path)
                    .map_err(Error::io(format!("moving the unreadable {} aside", path.display())))?;
                error!(
                    path = %path.display(),
                    moved_to = %aside.display(),
                    error = %e,
                    "unreadable VtepMAC file moved aside; generating a new VtepMAC (peers learn it from the lease)"
                );
            }
        }
    }
    let mut b = [0u8; 6];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .map_err(Error::io("reading /dev/urandom for a VtepMAC"))?;
    let m = MacAddr::local_from_bytes(b);
    std::fs::create_dir_all(state_dir)
        .map_err(Error::io(format!("state_dir {}: cannot create it", state_dir.display())))?;
    weft_config::state::write_atomic(&path, format!("{m}\n").as_bytes())
        .map_err(Error::io(format!("writing {}", path.display())))?;
    Ok(m)
}

/// An mbuf data room (DPDK's headroom included) that holds a whole frame of an underlay of `mtu`:
/// DPDK's default 2 KiB + headroom up to 1500, else an af_packet ring frame ([`af_packet_frame`], which
/// covers the frame) plus the headroom, so every PMD, af_packet included, gets single-segment frames.
pub fn mbuf_data_room(mtu: u16) -> u16 {
    let default = dataplane::dpdk::DEFAULT_DATA_ROOM;
    match af_packet_frame(mtu) {
        None => default,
        Some((frame, _)) => default.max((frame + dataplane::dpdk::HEADROOM).min(u32::from(u16::MAX)) as u16),
    }
}

/// The kernel interface of an af_packet uplink (`net_af_packet0,iface=eth1` -> `eth1`).
fn af_packet_iface(uplink: &str) -> Option<&str> {
    if !uplink.starts_with("net_af_packet") {
        return None;
    }
    uplink.split(',').find_map(|kv| kv.strip_prefix("iface="))
}

/// EAL arguments for the settings: lcores, the uplink device, isolation flags, then the user's extras.
fn eal_args(s: &NodeSettings) -> (Vec<String>, String) {
    // `0-2` is a plain lcore list (-l); `0@0,1@1,2@1` maps lcores to CPUs (--lcores), e.g. to run more
    // workers than cores on a lab machine.
    let lcores = if s.lcores.contains('@') { format!("--lcores={}", s.lcores) } else { format!("-l{}", s.lcores) };
    let mut args = vec![
        lcores,
        // A stable prefix, hugepage files and telemetry on: DPDK's tools (dpdk-dumpcap, dpdk-proc-info,
        // dpdk-telemetry.py) attach as secondary processes through them. Eal removes the files at exit;
        // the next start with the same prefix reclaims those of a weftd that died.
        format!("--file-prefix={}", s.file_prefix),
        "--log-level=lib.eal:warning".into(),
    ];
    let name;
    if s.uplink.starts_with("net_") {
        let mut dev = s.uplink.clone();
        // af_packet spreads RX over its queue pairs with PACKET_FANOUT; one pair per worker.
        if dev.starts_with("net_af_packet") && !dev.contains("qpairs=") {
            dev.push_str(&format!(",qpairs={}", s.workers));
        }
        if dev.starts_with("net_af_packet") && !dev.contains("framesz=") {
            dev.push_str(&host::af_packet_ring(s.underlay_mtu));
        }
        name = dev.split(',').next().unwrap_or(&dev).to_owned();
        args.push("--no-pci".into());
        args.push(format!("--vdev={dev}"));
    } else {
        name = s.uplink.split(',').next().unwrap_or(&s.uplink).to_owned();
        args.push("-a".into());
        args.push(s.uplink.clone());
    }
    args.extend(s.eal_args.iter().cloned());
    (args, name)
}

/// The workers' lcores while they run: stopped and joined by [`RunningWorkers::stop`], or when dropped,
/// so that an error after the launch returns instead of hanging in EAL's cleanup (which waits for every
/// lcore).
struct RunningWorkers {
    senders: Vec<Sender<WorkerCommand>>,
    handles: Vec<LcoreHandle<u64>>,
}

impl RunningWorkers {
    fn stop(&mut self) {
        for s in &self.senders {
            // A paused worker takes Stop from inside its pause.
            let _ = s.send_timeout(WorkerCommand::Stop, Duration::from_secs(1));
        }
        for h in self.handles.drain(..) {
            if let Err(e) = h.join() {
                error!(error = %e, "worker");
            }
        }
    }
}

impl Drop for RunningWorkers {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The etcd side, when weftd runs in etcd mode: the control thread and the peers it had at the start.
#[derive(Debug)]
pub struct EtcdMode {
    pub control: weft_control::etcd::ControlHandle,
    pub peers: Vec<Peer>,
}

/// Run weftd until `stop` is set (SIGTERM or SIGINT).
pub fn run(settings: NodeSettings, etcd: Option<EtcdMode>, stop: Arc<AtomicBool>) -> Result<(), Error> {
    let vtep_mac = load_or_create_vtep_mac(settings.vtep_mac, &settings.state_dir)?;
    let (args, uplink_name) = eal_args(&settings);
    let mut eal = Eal::init(&args).map_err(Error::dpdk(
        "starting DPDK (is `make setup` done: hugepages, root? Does another weftd use this --file-prefix?)",
    ))?;
    // dpdk-dumpcap's way in; weft forwards without it.
    if let Err(e) = eal.enable_capture() {
        warn!(error = %e, "dpdk-dumpcap and dpdk-pdump cannot attach to this weftd");
    }
    let lcores = LcoreId::workers();
    if lcores.len() < settings.workers {
        return Err(Error::Setting {
            field: "workers",
            reason: format!(
                "{} asked but EAL has {} worker lcores (lcores = {:?}); give lcores with one more core than workers",
                settings.workers,
                lcores.len(),
                settings.lcores
            ),
        });
    }
    let uplink = Port::by_name(&uplink_name).map_err(Error::dpdk(format!("uplink: no DPDK port {uplink_name:?}")))?;
    // The mbufs on the uplink's NUMA node, each big enough for a whole underlay frame (one segment:
    // workers handle single-segment frames).
    let data_room = mbuf_data_room(settings.underlay_mtu);
    let socket = uplink.socket_id();
    let pool = Arc::new(
        Mempool::on_socket("weft_pool", settings.mbufs, 256, data_room, socket)
            .or_else(|e| match socket {
                // No hugepages left on that node: anywhere, said aloud.
                Some(s) => {
                    error!(socket = s, error = %e, "no room for the mbufs on the uplink's NUMA node; taking them from any node");
                    Mempool::on_socket("weft_pool", settings.mbufs, 256, data_room, None)
                }
                None => Err(e),
            })
            .map_err(Error::dpdk("mbufs"))?,
    );
    let n = settings.workers as u16;
    let (uplink_rx, uplink_tx) = uplink
        .configure(&PortConfig { rx_queues: n, tx_queues: n, rss: true, ..PortConfig::default() }, pool.clone())
        .map_err(Error::dpdk("uplink: configuring the port"))?;
    // The underlay's MTU on the NIC, so jumbo underlays carry jumbo pod frames. A PMD without MTU
    // control keeps its own, which the log says.
    if let Err(e) = uplink.set_mtu(settings.underlay_mtu) {
        match af_packet_iface(&settings.uplink) {
            // DPDK 22.11's af_packet PMD caps ethdev's MTU at 1500 (its max_rx_pktlen is 1518) though
            // its rings, sized by framesz above, carry more: the kernel interface's MTU is what limits
            // the frames, and weftd sets that itself.
            Some(iface) if settings.underlay_mtu > 1500 => {
                let mtu = settings.underlay_mtu.to_string();
                match host::run_ip(&["link", "set", iface, "mtu", &mtu]) {
                    Ok(()) => info!(
                        iface,
                        mtu = settings.underlay_mtu,
                        "uplink: af_packet's kernel interface set to the underlay MTU"
                    ),
                    Err(why) => error!(iface, error = %why, "uplink: cannot set the af_packet interface's MTU"),
                }
            }
            _ => {
                error!(mtu = settings.underlay_mtu, error = %e, "uplink: the NIC refused the underlay MTU; frames above its own are dropped by it")
            }
        }
    }
    uplink.start().map_err(Error::dpdk("uplink: starting the port"))?;
    if usize::from(uplink.id().0) >= dataplane::worker::ETH_PORTS {
        return Err(Error::Setting {
            field: "uplink",
            reason: format!("DPDK port id {} is beyond the workers' port table", uplink.id().0),
        });
    }
    let uplink_mac = MacAddr(uplink.mac_addr().map_err(Error::dpdk("uplink: reading its MAC"))?);

    let node = Node {
        network: settings.network,
        subnet: settings.subnet,
        subnet_len: settings.subnet_len,
        public_ip: settings.public_ip,
        uplink_mac,
        vtep_mac,
        vni: settings.vni,
        vxlan_port: settings.vxlan_port,
        backend: settings.backend,
        direct_routing: settings.direct_routing,
        udp_port: settings.udp_port,
        underlay_mtu: settings.underlay_mtu,
        underlay_net: settings.underlay_net,
        underlay_gateway: settings.underlay_gateway,
    };
    let inputs = TableInputs {
        node: node.clone(),
        peers: match &etcd {
            Some(e) => e.peers.clone(),
            None => settings.peers.clone(),
        },
        pods: Vec::new(),
        neighbours: Default::default(),
        host: None,
    };
    let tables = Arc::new(TablePublisher::new(inputs));
    let cell = tables.cell();
    let (learn_tx, learn_rx) = bounded::<(Ipv4Addr, MacAddr)>(1024);

    let mut senders = Vec::new();
    let mut counters = Vec::new();
    // From here on every return stops the workers first (the guard), or EAL's cleanup would wait for
    // them forever.
    let mut running = RunningWorkers { senders: Vec::new(), handles: Vec::new() };
    let backoff = Backoff { busy_poll: settings.busy_poll, ..Backoff::default() };
    let trace = Arc::new(Trace::new());
    let peer_slots = dataplane::worker::peer_slots(node.network, node.subnet_len);
    for (i, (rx, tx)) in uplink_rx.into_iter().zip(uplink_tx).enumerate() {
        let (cmd_tx, cmd_rx) = bounded(256);
        let c = Arc::new(CachePadded::new(
            WorkerCounters::new(dataplane::worker::port_slots(settings.max_vhost_pods)).with_peer_slots(peer_slots),
        ));
        let w = Worker::new(i, rx, tx, cell.clone(), c.clone(), cmd_rx, learn_tx.clone(), pool.clone(), backoff)
            .with_trace(trace.clone());
        running.handles.push(lcores[i].launch(move || w.run())?);
        running.senders.push(cmd_tx.clone());
        senders.push(cmd_tx);
        counters.push(c);
    }
    let worker_cpus: Vec<u32> = lcores.iter().take(settings.workers).filter_map(|l| l.cpu()).collect();
    let steering = rps::for_workers(&settings.kernel_cpus, &worker_cpus);
    let host = match &settings.host_iface {
        Some(name) => {
            let h = host::attach(name, &node, &pool, &senders, steering.as_ref())?;
            tables.update(|t| t.host = Some(h.table_entry()));
            Some(h)
        }
        None => None,
    };
    let mut rule_sets = Vec::new();
    if let Some(h) = &host {
        rule_sets.extend(host::hairpin(&h.name));
    }
    if settings.ip_masq {
        rule_sets.push(host::flannel_masq(settings.network, settings.subnet));
    }
    let rules = host::HostRules::new(rule_sets);
    // vhost-user pods: DPDK's vhost thread reports their devices to one thread here.
    let vhost_index = Arc::new(vhost::VhostIndex::default());
    {
        let (tx, rx) = bounded(1024);
        if dataplane::dpdk::set_event_sink(tx).is_err() {
            return Err(Error::Setting { field: "vhost", reason: "weftd runs once per process".into() });
        }
        let (index, workers, pool) = (vhost_index.clone(), senders.clone(), pool.clone());
        std::thread::Builder::new()
            .name("weft-vhost".into())
            .spawn(move || vhost::handle_events(rx, index, workers, pool))
            .map_err(Error::io("starting the vhost event thread"))?;
    }
    let shared = Arc::new(Shared {
        settings: settings.clone(),
        pods: PodRegistry::new(
            node.clone(),
            &settings,
            tables.clone(),
            senders.clone(),
            pool.clone(),
            host.as_ref().map(|h| h.name.clone()),
            vhost_index,
        )
        .with_steering(steering),
        host,
        pool,
        node,
        tables,
        workers: senders,
        counters,
        uplink,
        paused_until: Mutex::new(None),
        stop: stop.clone(),
        etcd_status: etcd.as_ref().map(|e| e.control.status.clone()),
        trace,
        trace_busy: Mutex::new(()),
    });
    info!(
        version = env!("CARGO_PKG_VERSION"),
        dpdk = dataplane::dpdk::dpdk_version(),
        subnet = %settings.subnet,
        public_ip = %settings.public_ip,
        backend = %settings.backend,
        direct_routing = settings.direct_routing,
        pod_mtu = shared.node.pod_mtu(),
        uplink = %uplink_name,
        uplink_mac = %uplink_mac,
        vtep_mac = %vtep_mac,
        workers = settings.workers,
        api = %settings.api_socket.display(),
        "weftd up"
    );

    let slow = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("weft-slowpath".into())
            .spawn(move || {
                if let Some(w0) = shared.workers.first() {
                    slowpath::run(&shared.tables, w0, learn_rx, &shared.stop)
                }
            })
            .map_err(Error::io("starting the slow-path thread"))?
    };
    for spec in &settings.pods {
        match shared.pods.add(spec.clone()) {
            Ok(p) => info!(pod = %p.name, kind = %p.kind, ip = %p.ip, iface = %p.iface, "pod attached"),
            Err(e) => error!(pod = %spec.name, error = %e, "pod not attached"),
        }
    }
    shared.pods.restore();
    let keep_host = |first: bool| {
        rules.ensure(first);
        if shared.host.is_some() {
            host::ensure_bridge_proxy_arp(host::CNI_BRIDGE);
        }
    };
    // The listeners are bound first: a port in use or a bad api_socket fails here, before the rules
    // change the host (a failed start used to leave them for the next weftd).
    let mgmt = mgmt::Mgmt::new().map_err(Error::io("starting the management runtime"))?;
    let listeners = metrics::bind(&mgmt, settings.metrics_addr, settings.healthz_addr)?;
    let api = api::bind(&mgmt, &settings.api_socket, settings.api_group)?;
    // The rules (masquerade, the host port's mark) go in before anything answers: a weftd that
    // answers has them, as a test or an operator reading iptables right after start expects. (They
    // used to follow the API: hostport's restart check listed FLANNEL-POSTRTG before it existed,
    // which iptables-nft 1.8.9 reports as "chain ... is incompatible", and failed a CI run.)
    keep_host(true);
    // The API answers only once the pods of the config and of the previous run are attached.
    // Metrics and health first: once the API answers (what tools and tests wait for), /metrics,
    // /healthz and /readyz answer too.
    let ticker = metrics::serve(shared.clone(), &mgmt, listeners)?;
    let api = api::serve(shared.clone(), &mgmt, api);

    let mut retry_at = std::time::Instant::now() + Duration::from_secs(5);
    let mut off_link_said = Vec::new();
    report_off_link(&shared, &mut off_link_said);
    while !stop.load(Ordering::Relaxed) {
        if std::time::Instant::now() >= retry_at {
            // Pods whose restore failed (their netns not there yet, say) are tried again.
            shared.pods.retry_pending();
            // As flanneld's iptables resync (5 s): rules someone flushed come back.
            keep_host(false);
            retry_at = std::time::Instant::now() + Duration::from_secs(5);
        }
        let Some(e) = &etcd else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        match e.control.events.recv_timeout(Duration::from_millis(100)) {
            Ok(ControlEvent::Peers(peers)) => {
                info!(peers = peers.len(), "peers from etcd");
                shared.tables.update(|t| t.peers = peers);
                report_off_link(&shared, &mut off_link_said);
            }
            Ok(ControlEvent::Acquired { subnet, .. }) if subnet != settings.subnet => {
                error!(was = %settings.subnet, now = %subnet, "etcd moved this node; pods keep their addresses until weftd restarts");
            }
            Ok(ControlEvent::Fatal(msg)) => error!(error = %msg, "etcd"),
            Ok(_) | Err(_) => {}
        }
    }
    info!("stopping");
    let t0 = std::time::Instant::now();
    // Clients first: whatever they are doing is abandoned (a pod add in flight finds the workers gone).
    mgmt.shutdown(Duration::from_millis(500));
    drop(api);
    running.stop();
    let _ = slow.join();
    let _ = ticker.join();
    shared.pods.remove_all();
    rules.remove();
    let _ = shared.uplink.stop();
    if let Some(h) = &shared.host {
        h.remove();
    }
    drop(shared);
    if let Some(e) = etcd {
        // The lease stays in etcd (as flanneld leaves it): a restart takes the same subnet again.
        e.control.stop();
    }
    drop(eal);
    info!(seconds = t0.elapsed().as_secs_f64(), "stopped");
    Ok(())
}

/// host-gw peers the table refuses (PublicIP not on our L2) are logged once each, as flanneld logs the
/// route the kernel refuses it ("Error adding route to ...: network is unreachable").
fn report_off_link(shared: &Shared, said: &mut Vec<weft_config::Peer>) {
    let snap = shared.tables.snapshot();
    for p in &snap.off_link {
        if !said.contains(p) {
            error!(
                subnet = %p.subnet,
                public_ip = %p.public_ip,
                underlay = %snap.node.underlay_net,
                "host-gw: refusing the route to this subnet: its PublicIP is not on our L2 (network is unreachable); its frames are dropped as peer_off_link"
            );
        }
    }
    *said = snap.off_link.clone();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mbufs and af_packet frames hold a whole underlay frame: DPDK's defaults up to 1500, room for
    /// 9000 (+ Ethernet, VLAN tag and headroom) on a jumbo underlay.
    #[test]
    fn buffers_fit_the_underlay_mtu() {
        assert_eq!(mbuf_data_room(1500), 2176);
        assert_eq!(mbuf_data_room(1600), 2176);
        assert_eq!(mbuf_data_room(9000), 9216 + 128);
        assert_eq!(af_packet_frame(1500), None);
        assert_eq!(af_packet_frame(9000), Some((9216, 36864)));
        for mtu in [1501, 4000, 9000, 9216] {
            let (frame, block) = af_packet_frame(mtu).unwrap();
            assert!(frame >= u32::from(mtu) + 18 + 52 && frame % 16 == 0, "{mtu}");
            assert!(block % 4096 == 0 && block % frame == 0, "{mtu}: whole frames in whole pages");
            assert!(frame - 32 + 128 <= u32::from(mbuf_data_room(mtu)), "{mtu}: the PMD's data fits an mbuf");
        }
    }

    #[test]
    fn vtep_mac_is_generated_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("weft-vtep-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = load_or_create_vtep_mac(None, &dir).unwrap();
        assert!(first.is_local_unicast(), "random, locally administered, unicast: {first}");
        assert_eq!(load_or_create_vtep_mac(None, &dir).unwrap(), first, "kept across restarts");
        let given: MacAddr = "02:11:22:33:44:55".parse().unwrap();
        assert_eq!(load_or_create_vtep_mac(Some(given), &dir).unwrap(), given, "configured wins");
        std::fs::write(dir.join("vtep_mac"), "garbage").unwrap();
        assert!(load_or_create_vtep_mac(None, &dir).unwrap().is_local_unicast(), "a corrupt file: a new MAC");
        let aside: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("vtep_mac.corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1, "the corrupt file is kept aside");
        assert_eq!(std::fs::read_to_string(aside[0].path()).unwrap(), "garbage");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
