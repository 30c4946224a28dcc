use std::ffi::{CStr, CString};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::{strerror, Burst, DpdkError, Mempool};

/// A DPDK ethdev port id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub u16);

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A queue index on a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QueueId(pub u16);

/// How to set a port up.
#[derive(Debug, Clone)]
pub struct PortConfig {
    pub rx_queues: u16,
    pub tx_queues: u16,
    pub rx_desc: u16,
    pub tx_desc: u16,
    /// Spread RX over the queues by an IPv4/UDP hash where the device supports it.
    pub rss: bool,
    pub promiscuous: bool,
    pub mtu: Option<u16>,
}

impl Default for PortConfig {
    fn default() -> Self {
        PortConfig {
            rx_queues: 1,
            tx_queues: 1,
            rx_desc: 1024,
            tx_desc: 1024,
            rss: false,
            promiscuous: true,
            mtu: None,
        }
    }
}

/// Link state as DPDK reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkStatus {
    pub up: bool,
    pub speed_mbps: u32,
}

/// Basic hardware/PMD counters of a port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_missed: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_nombuf: u64,
}

// DPDK's RTE_ETH_RSS_* are RTE_BIT64() macros that bindgen cannot evaluate; values from rte_ethdev.h.
const RSS_IPV4: u64 = 1 << 2;
const RSS_FRAG_IPV4: u64 = 1 << 3;
const RSS_NONFRAG_IPV4_TCP: u64 = 1 << 4;
const RSS_NONFRAG_IPV4_UDP: u64 = 1 << 5;
const RSS_NONFRAG_IPV4_OTHER: u64 = 1 << 7;

struct PortInner {
    id: u16,
    name: String,
    started: AtomicBool,
    /// Hot-plugged with `Port::probe`: the device is removed from EAL when the port closes.
    hotplugged: AtomicBool,
    /// Keeps the RX mempool alive as long as the port can write into it.
    pool: std::sync::Mutex<Option<Arc<Mempool>>>,
}

impl Drop for PortInner {
    fn drop(&mut self) {
        // SAFETY: no queue handle exists any more (they hold this Arc), so no thread polls the port;
        // stopping and closing a valid port id is allowed in any state.
        unsafe {
            if self.started.load(Ordering::Acquire) {
                dpdk_sys::rte_eth_dev_stop(self.id);
            }
            dpdk_sys::rte_eth_dev_close(self.id);
        }
        if self.hotplugged.load(Ordering::Acquire) {
            if let Ok(name) = CString::new(self.name.as_str()) {
                // SAFETY: the port is closed; removing its vdev by name from the vdev bus releases the
                // device (a tap's kernel interface, a vhost socket). Both strings are valid C strings.
                unsafe { dpdk_sys::rte_eal_hotplug_remove(c"vdev".as_ptr(), name.as_ptr()) };
            }
        }
    }
}

/// An ethdev port. Closed when the `Port` and every queue handle taken from it are gone.
#[derive(Clone)]
pub struct Port {
    inner: Arc<PortInner>,
}

impl fmt::Debug for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Port").field("id", &self.inner.id).field("name", &self.inner.name).finish()
    }
}

fn check(port: u16, op: &'static str, rc: i32) -> Result<(), DpdkError> {
    if rc < 0 {
        Err(DpdkError::Port { port, op, reason: strerror(rc) })
    } else {
        Ok(())
    }
}

impl Port {
    /// The port DPDK created for device `name` (e.g. `net_null0`, or a PCI address).
    pub fn by_name(name: &str) -> Result<Port, DpdkError> {
        let cname = CString::new(name).map_err(|_| DpdkError::NulInArgument(name.into()))?;
        let mut id = 0u16;
        // SAFETY: cname is a valid C string, id a valid out pointer.
        let rc = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) };
        if rc != 0 {
            return Err(DpdkError::NoSuchPort(name.into()));
        }
        Ok(Port::wrap(id, name.into()))
    }

    /// Hot-plug a device from devargs (`net_tap3,iface=pod3`, `net_vhost1,iface=/run/x.sock`) and return
    /// its port. The device name is the devargs up to the first comma.
    pub fn probe(devargs: &str) -> Result<Port, DpdkError> {
        let c = CString::new(devargs).map_err(|_| DpdkError::NulInArgument(devargs.into()))?;
        // SAFETY: valid C string; EAL initialised (DPDK returns an error otherwise).
        let rc = unsafe { dpdk_sys::rte_dev_probe(c.as_ptr()) };
        if rc < 0 {
            return Err(DpdkError::Probe { devargs: devargs.into(), reason: strerror(rc) });
        }
        let name = devargs.split(',').next().unwrap_or(devargs);
        let port = Port::by_name(name)?;
        port.inner.hotplugged.store(true, Ordering::Release);
        Ok(port)
    }

    /// Every port DPDK knows.
    pub fn all() -> Vec<Port> {
        let mut out = Vec::new();
        // SAFETY: rte_eth_find_next walks the port table; RTE_MAX_ETHPORTS terminates it.
        let mut id = unsafe { dpdk_sys::rte_eth_find_next(0) };
        while (id as u32) < dpdk_sys::RTE_MAX_ETHPORTS {
            let mut buf = [0 as std::ffi::c_char; dpdk_sys::RTE_ETH_NAME_MAX_LEN as usize];
            // SAFETY: buf is RTE_ETH_NAME_MAX_LEN bytes as the function requires.
            let name = unsafe {
                dpdk_sys::rte_eth_dev_get_name_by_port(id, buf.as_mut_ptr());
                CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
            };
            out.push(Port::wrap(id, name));
            // SAFETY: as above.
            id = unsafe { dpdk_sys::rte_eth_find_next(id + 1) };
        }
        out
    }

    /// One `PortInner` per live port id, so that two lookups of one device share it and the port is
    /// closed exactly once, when the last handle goes.
    fn wrap(id: u16, name: String) -> Port {
        static REGISTRY: Mutex<Vec<(u16, Weak<PortInner>)>> = Mutex::new(Vec::new());
        let mut reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        reg.retain(|(_, w)| w.strong_count() > 0);
        if let Some(inner) = reg.iter().find(|(i, _)| *i == id).and_then(|(_, w)| w.upgrade()) {
            return Port { inner };
        }
        let inner = Arc::new(PortInner {
            id,
            name,
            started: AtomicBool::new(false),
            hotplugged: AtomicBool::new(false),
            pool: Default::default(),
        });
        reg.push((id, Arc::downgrade(&inner)));
        Port { inner }
    }

    pub fn id(&self) -> PortId {
        PortId(self.inner.id)
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Configure queues (not started). RX queues fill from `pool`. Returns one handle per queue: hand each
    /// to the one thread that polls it.
    pub fn configure(&self, cfg: &PortConfig, pool: Arc<Mempool>) -> Result<(Vec<RxQueue>, Vec<TxQueue>), DpdkError> {
        let id = self.inner.id;
        let mut info = dpdk_sys::rte_eth_dev_info::default();
        // SAFETY: valid out pointer; DPDK validates the port id.
        check(id, "dev_info_get", unsafe { dpdk_sys::rte_eth_dev_info_get(id, &mut info) })?;
        if cfg.rx_queues > info.max_rx_queues || cfg.tx_queues > info.max_tx_queues {
            return Err(DpdkError::Port {
                port: id,
                op: "configure",
                reason: format!(
                    "{} rx / {} tx queues asked, the device has at most {} / {}",
                    cfg.rx_queues, cfg.tx_queues, info.max_rx_queues, info.max_tx_queues
                ),
            });
        }
        let mut conf = dpdk_sys::rte_eth_conf::default();
        let rss_hf = (RSS_IPV4 | RSS_FRAG_IPV4 | RSS_NONFRAG_IPV4_TCP | RSS_NONFRAG_IPV4_UDP | RSS_NONFRAG_IPV4_OTHER)
            & info.flow_type_rss_offloads;
        if cfg.rss && cfg.rx_queues > 1 && rss_hf != 0 {
            conf.rxmode.mq_mode = dpdk_sys::RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
        }
        // SAFETY: conf is a valid rte_eth_conf; the port is not started.
        check(id, "configure", unsafe { dpdk_sys::rte_eth_dev_configure(id, cfg.rx_queues, cfg.tx_queues, &conf) })?;
        if let Some(mtu) = cfg.mtu {
            // SAFETY: valid port id.
            check(id, "set_mtu", unsafe { dpdk_sys::rte_eth_dev_set_mtu(id, mtu) })?;
        }
        let (mut rxd, mut txd) = (cfg.rx_desc, cfg.tx_desc);
        // SAFETY: valid out pointers.
        check(id, "adjust_nb_rx_tx_desc", unsafe {
            dpdk_sys::rte_eth_dev_adjust_nb_rx_tx_desc(id, &mut rxd, &mut txd)
        })?;
        // SAFETY: valid port id.
        let socket = unsafe { dpdk_sys::rte_eth_dev_socket_id(id) };
        let socket = if socket < 0 { 0 } else { socket as u32 };
        let mut rx = Vec::new();
        for q in 0..cfg.rx_queues {
            // SAFETY: NULL rx_conf means the driver default; pool is a live mempool kept alive by the port.
            check(id, "rx_queue_setup", unsafe {
                dpdk_sys::rte_eth_rx_queue_setup(id, q, rxd, socket, std::ptr::null(), pool.as_ptr())
            })?;
            rx.push(RxQueue { port: self.inner.clone(), queue: q });
        }
        let mut tx = Vec::new();
        for q in 0..cfg.tx_queues {
            // SAFETY: NULL tx_conf means the driver default.
            check(id, "tx_queue_setup", unsafe {
                dpdk_sys::rte_eth_tx_queue_setup(id, q, txd, socket, std::ptr::null())
            })?;
            tx.push(TxQueue { port: self.inner.clone(), queue: q });
        }
        if cfg.promiscuous {
            // SAFETY: valid port id. Not all PMDs support it (that is not an error for weft).
            unsafe { dpdk_sys::rte_eth_promiscuous_enable(id) };
        }
        if let Ok(mut slot) = self.inner.pool.lock() {
            *slot = Some(pool);
        }
        Ok((rx, tx))
    }

    pub fn start(&self) -> Result<(), DpdkError> {
        // SAFETY: valid, configured port id.
        check(self.inner.id, "start", unsafe { dpdk_sys::rte_eth_dev_start(self.inner.id) })?;
        self.inner.started.store(true, Ordering::Release);
        Ok(())
    }

    /// Stop the port. Callers make sure no thread is polling its queues.
    pub fn stop(&self) -> Result<(), DpdkError> {
        // SAFETY: valid port id.
        check(self.inner.id, "stop", unsafe { dpdk_sys::rte_eth_dev_stop(self.inner.id) })?;
        self.inner.started.store(false, Ordering::Release);
        Ok(())
    }

    pub fn mac_addr(&self) -> Result<[u8; 6], DpdkError> {
        let mut mac = dpdk_sys::rte_ether_addr::default();
        // SAFETY: valid out pointer.
        check(self.inner.id, "macaddr_get", unsafe { dpdk_sys::rte_eth_macaddr_get(self.inner.id, &mut mac) })?;
        Ok(mac.addr_bytes)
    }

    pub fn link(&self) -> Result<LinkStatus, DpdkError> {
        let mut link = dpdk_sys::rte_eth_link::default();
        // SAFETY: valid out pointer.
        check(self.inner.id, "link_get_nowait", unsafe {
            dpdk_sys::rte_eth_link_get_nowait(self.inner.id, &mut link)
        })?;
        Ok(LinkStatus { up: link.link_status() != 0, speed_mbps: link.link_speed })
    }

    /// The PMD's extended statistics, by DPDK's names (`rx_good_packets`, `rx_missed_errors`,
    /// `rx_mbuf_allocation_errors`, the driver's own...). Allocates: for the metrics thread, not the
    /// workers.
    pub fn xstats(&self) -> Result<Vec<(String, u64)>, DpdkError> {
        let id = self.inner.id;
        // SAFETY: a null array with size 0 asks only for the count.
        let n = unsafe { dpdk_sys::rte_eth_xstats_get_names(id, std::ptr::null_mut(), 0) };
        check(id, "xstats_get_names", n)?;
        let n = n.max(0) as u32;
        let mut names = vec![dpdk_sys::rte_eth_xstat_name::default(); n as usize];
        let mut values = vec![dpdk_sys::rte_eth_xstat::default(); n as usize];
        // SAFETY: both arrays hold `n` elements, as the calls are told.
        let got_names = unsafe { dpdk_sys::rte_eth_xstats_get_names(id, names.as_mut_ptr(), n) };
        // SAFETY: as above.
        let got = unsafe { dpdk_sys::rte_eth_xstats_get(id, values.as_mut_ptr(), n) };
        check(id, "xstats_get_names", got_names)?;
        check(id, "xstats_get", got)?;
        // A count that changed between the calls (a driver adding queues) is read again next time.
        let k = (got_names.max(0) as usize).min(got.max(0) as usize).min(n as usize);
        Ok(values[..k]
            .iter()
            .filter_map(|v| {
                let name = names.get(v.id as usize)?;
                // SAFETY: c_char and u8 have one size; the name is NUL-terminated within its 64 bytes.
                let bytes: &[u8] = unsafe { std::slice::from_raw_parts(name.name.as_ptr().cast(), name.name.len()) };
                let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
                Some((String::from_utf8_lossy(&bytes[..end]).into_owned(), v.value))
            })
            .collect())
    }

    /// The NUMA node the device sits on, if DPDK knows it (virtual devices and one-node machines may
    /// not say).
    pub fn socket_id(&self) -> Option<u32> {
        // SAFETY: valid port id; returns -1 when unknown.
        let s = unsafe { dpdk_sys::rte_eth_dev_socket_id(self.inner.id) };
        u32::try_from(s).ok()
    }

    /// Set the port's MTU (the largest IPv4 packet, Ethernet header not counted), after configure.
    pub fn set_mtu(&self, mtu: u16) -> Result<(), DpdkError> {
        // SAFETY: valid port id.
        check(self.inner.id, "set_mtu", unsafe { dpdk_sys::rte_eth_dev_set_mtu(self.inner.id, mtu) })
    }

    pub fn stats(&self) -> Result<PortStats, DpdkError> {
        let mut s = dpdk_sys::rte_eth_stats::default();
        // SAFETY: valid out pointer.
        check(self.inner.id, "stats_get", unsafe { dpdk_sys::rte_eth_stats_get(self.inner.id, &mut s) })?;
        Ok(PortStats {
            rx_packets: s.ipackets,
            tx_packets: s.opackets,
            rx_bytes: s.ibytes,
            tx_bytes: s.obytes,
            rx_missed: s.imissed,
            rx_errors: s.ierrors,
            tx_errors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }
}

/// One RX queue of a port, polled by exactly one thread.
pub struct RxQueue {
    port: Arc<PortInner>,
    queue: u16,
}

impl fmt::Debug for RxQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RxQueue({}/{})", self.port.id, self.queue)
    }
}

impl RxQueue {
    pub fn port_id(&self) -> PortId {
        PortId(self.port.id)
    }

    pub fn queue_id(&self) -> QueueId {
        QueueId(self.queue)
    }

    /// Receive into the free tail of `burst`; returns how many arrived.
    #[inline(always)]
    pub fn rx_burst(&mut self, burst: &mut Burst) -> usize {
        let (ptr, cap) = burst.spare_raw();
        if cap == 0 {
            return 0;
        }
        // SAFETY: ptr points to `cap` writable slots; this handle is the only poller of (port, queue)
        // because RxQueue is neither Clone nor Sync. DPDK writes n owned mbufs there.
        unsafe {
            let n = dpdk_sys::weft_eth_rx_burst(self.port.id, self.queue, ptr, cap as u16) as usize;
            burst.commit(n);
            n
        }
    }
}

/// One TX queue of a port, used by exactly one thread.
pub struct TxQueue {
    port: Arc<PortInner>,
    queue: u16,
}

impl fmt::Debug for TxQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TxQueue({}/{})", self.port.id, self.queue)
    }
}

impl TxQueue {
    pub fn port_id(&self) -> PortId {
        PortId(self.port.id)
    }

    /// Hand as many packets of `burst` to the NIC as it takes; the rest stay in `burst`. Returns how many
    /// were taken.
    #[inline(always)]
    pub fn tx_burst(&mut self, burst: &mut Burst) -> usize {
        let (ptr, n) = burst.live_raw();
        if n == 0 {
            return 0;
        }
        // SAFETY: ptr holds n owned mbufs; DPDK takes ownership of the first `sent`, which we then
        // forget. This handle is the only user of (port, queue).
        unsafe {
            let sent = dpdk_sys::weft_eth_tx_burst(self.port.id, self.queue, ptr, n as u16) as usize;
            burst.consume(sent);
            sent
        }
    }

    /// Send the burst; whatever the NIC did not take is freed. Returns (sent, freed).
    #[inline(always)]
    pub fn send_or_free(&mut self, burst: &mut Burst) -> (usize, usize) {
        let sent = self.tx_burst(burst);
        let freed = burst.free_all();
        (sent, freed)
    }
}
