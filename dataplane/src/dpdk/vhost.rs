//! DPDK's vhost-user library driven directly, as OVS-DPDK does, instead of one `net_vhost` ethdev per
//! pod: a node's pods are not bounded by RTE_MAX_ETHPORTS, and a pod costs a socket and its vrings, not
//! a port with descriptor rings full of mbufs.
//!
//! [`VhostSocket`] registers a socket (server: weft listens; client: weft connects and reconnects).
//! DPDK's vhost thread reports devices through callbacks, which this module turns into
//! [`VhostEvent`]s on the channel given to [`set_event_sink`]. A device's queues ([`VhostRx`],
//! [`VhostTx`]) are handed to the workers; when DPDK destroys a device, its callback waits until the
//! event's handler says no worker uses it any more (the contract of `destroy_device`).

use std::ffi::{c_int, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crossbeam::channel::{bounded, Sender};

use super::mbuf::Burst;
use super::{DpdkError, Mempool, PortId};

/// A vhost device id, as DPDK numbers connected drivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VhostVid(pub i32);

/// What DPDK's vhost thread reports.
#[derive(Debug)]
pub enum VhostEvent {
    /// A driver connected to `path` and its device is ready: `vid` serves it with `vrings` vrings.
    Ready { vid: VhostVid, path: String, vrings: u16 },
    /// The device is going away. DPDK's thread waits until `done` is sent on or dropped: by then no
    /// worker may hold the device's queues.
    Gone { vid: VhostVid, path: String, done: Sender<()> },
    /// The driver enabled or disabled a vring (queue pair `vring / 2`; odd vrings are the driver's TX).
    VringState { vid: VhostVid, vring: u16, enabled: bool },
}

static EVENTS: OnceLock<Sender<VhostEvent>> = OnceLock::new();

/// Where the vhost callbacks send their events (once per process; later calls are refused).
pub fn set_event_sink(tx: Sender<VhostEvent>) -> Result<(), Sender<VhostEvent>> {
    EVENTS.set(tx)
}

fn send(ev: VhostEvent) -> bool {
    EVENTS.get().is_some_and(|tx| tx.send(ev).is_ok())
}

fn ifname(vid: c_int) -> String {
    let mut buf = [0u8; 4096];
    // SAFETY: buf is writable for its length; DPDK writes a NUL-terminated path into it (or fails).
    let rc = unsafe { dpdk_sys::rte_vhost_get_ifname(vid, buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

unsafe extern "C" fn on_new_device(vid: c_int) -> c_int {
    // SAFETY: DPDK calls this with a live vid; rte_vhost_get_vring_num only reads the device.
    let vrings = unsafe { dpdk_sys::rte_vhost_get_vring_num(vid) };
    // The workers poll: the driver need not kick us when it fills a vring (without this a DPDK driver
    // makes an eventfd write, and a VM's virtio-net an exit to its hypervisor, for every batch it
    // posts). As net_vhost and OVS-DPDK do for each vring of a new device.
    for vring in 0..vrings {
        // SAFETY: a live vid and one of its vrings; DPDK sets the vring's flag (or keeps it for when
        // the vring becomes ready). A failure leaves notifications on, which costs speed, not packets.
        unsafe { dpdk_sys::rte_vhost_enable_guest_notification(vid, vring, 0) };
    }
    if send(VhostEvent::Ready { vid: VhostVid(vid), path: ifname(vid), vrings }) {
        0
    } else {
        -1 // nobody to hand the device to: refuse it
    }
}

unsafe extern "C" fn on_destroy_device(vid: c_int) {
    let (done, wait) = bounded(1);
    if send(VhostEvent::Gone { vid: VhostVid(vid), path: ifname(vid), done }) {
        let _ = wait.recv(); // sent on, or dropped, once no worker holds the device
    }
}

unsafe extern "C" fn on_vring_state_changed(vid: c_int, vring: u16, enable: c_int) -> c_int {
    send(VhostEvent::VringState { vid: VhostVid(vid), vring, enabled: enable != 0 });
    0
}

struct Ops(dpdk_sys::rte_vhost_device_ops);
// SAFETY: the ops table is immutable once built (function pointers and a null reserved pointer); DPDK
// only reads it, from any thread.
unsafe impl Sync for Ops {}
// SAFETY: as above; nothing in it is tied to a thread.
unsafe impl Send for Ops {}

static OPS: OnceLock<Ops> = OnceLock::new();

fn ops() -> &'static dpdk_sys::rte_vhost_device_ops {
    &OPS.get_or_init(|| {
        Ops(dpdk_sys::rte_vhost_device_ops {
            new_device: Some(on_new_device),
            destroy_device: Some(on_destroy_device),
            vring_state_changed: Some(on_vring_state_changed),
            ..Default::default()
        })
    })
    .0
}

/// virtio-net feature bits weft turns off: checksum and segmentation offloads in either direction
/// (weft's fast path neither completes partial checksums nor segments), as `net_vhost` without `tso`.
const DISABLED_FEATURES: u64 = (1 << 0) // VIRTIO_NET_F_CSUM
    | (1 << 1) // VIRTIO_NET_F_GUEST_CSUM
    | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) // GUEST_TSO4, GUEST_TSO6, GUEST_ECN, GUEST_UFO
    | (1 << 11) | (1 << 12) | (1 << 13) | (1 << 14); // HOST_TSO4, HOST_TSO6, HOST_ECN, HOST_UFO

/// A registered vhost-user socket; unregistered (its device destroyed, its socket file removed when
/// weft made it) on drop.
#[derive(Debug)]
pub struct VhostSocket {
    path: CString,
}

impl VhostSocket {
    /// Register `path` and start serving it: as the server (weft creates the socket) or, with
    /// `client`, as a client that connects and reconnects to a socket the pod owns.
    pub fn start(path: &Path, client: bool) -> Result<VhostSocket, DpdkError> {
        let text = path.display().to_string();
        let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| DpdkError::NulInArgument(text.clone()))?;
        let fail = |op: &'static str| DpdkError::Vhost { path: text.clone(), op, reason: super::last_error() };
        let flags = u64::from(dpdk_sys::RTE_VHOST_USER_NET_COMPLIANT_OL_FLAGS)
            | if client { u64::from(dpdk_sys::RTE_VHOST_USER_CLIENT) } else { 0 };
        // SAFETY: c is a valid NUL-terminated path that outlives the call (DPDK copies it).
        if unsafe { dpdk_sys::rte_vhost_driver_register(c.as_ptr(), flags) } != 0 {
            return Err(fail("rte_vhost_driver_register"));
        }
        // From here on, dropping it unregisters.
        let sock = VhostSocket { path: c };
        // SAFETY: the path is registered; the ops table is 'static and immutable.
        unsafe {
            if dpdk_sys::rte_vhost_driver_disable_features(sock.path.as_ptr(), DISABLED_FEATURES) != 0 {
                return Err(fail("rte_vhost_driver_disable_features"));
            }
            if dpdk_sys::rte_vhost_driver_callback_register(sock.path.as_ptr(), ops()) != 0 {
                return Err(fail("rte_vhost_driver_callback_register"));
            }
            if dpdk_sys::rte_vhost_driver_start(sock.path.as_ptr()) != 0 {
                return Err(fail("rte_vhost_driver_start"));
            }
        }
        Ok(sock)
    }

    pub fn path(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }
}

impl Drop for VhostSocket {
    fn drop(&mut self) {
        // SAFETY: the path was registered by `start`; unregistering destroys a connected device first
        // (its destroy callback waits for the workers to let go of it).
        unsafe {
            dpdk_sys::rte_vhost_driver_unregister(self.path.as_ptr());
        }
    }
}

/// Which queue pairs of a device the driver has enabled, one bit each (both vrings of the pair), kept
/// by the event handler, read by the workers.
#[derive(Debug, Default)]
pub struct VringMask(AtomicU64);

impl VringMask {
    /// Record a vring's state: a pair counts as enabled when its driver-RX vring (even) is.
    pub fn set(&self, vring: u16, enabled: bool) {
        if vring & 1 != 0 || vring >= 128 {
            return;
        }
        let bit = 1u64 << (vring / 2);
        if enabled {
            self.0.fetch_or(bit, Ordering::Release);
        } else {
            self.0.fetch_and(!bit, Ordering::Release);
        }
    }

    #[inline(always)]
    fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// Whether any pair is enabled.
    pub fn any(&self) -> bool {
        self.get() != 0
    }
}

/// A device's driver-TX vrings, dequeued by one worker.
#[derive(Debug)]
pub struct VhostRx {
    vid: VhostVid,
    port: PortId,
    pairs: u16,
    mask: Arc<VringMask>,
    pool: Arc<Mempool>,
}

impl VhostRx {
    pub fn new(vid: VhostVid, port: PortId, pairs: u16, mask: Arc<VringMask>, pool: Arc<Mempool>) -> VhostRx {
        VhostRx { vid, port, pairs: pairs.clamp(1, 64), mask, pool }
    }

    pub fn port_id(&self) -> PortId {
        self.port
    }

    /// Dequeue from each enabled pair into the free tail of `burst`; how many arrived.
    #[inline(always)]
    pub fn rx_burst(&mut self, burst: &mut Burst) -> usize {
        let mask = self.mask.get();
        let mut got = 0;
        for pair in 0..self.pairs {
            if mask & (1 << pair) == 0 {
                continue;
            }
            let (ptr, cap) = burst.spare_raw();
            if cap == 0 {
                break;
            }
            // SAFETY: ptr points to `cap` writable slots; this worker is the only dequeuer of the
            // device's driver-TX vrings (the handler hands them to one worker), and the device is live
            // until the workers let go of it (destroy waits). DPDK writes n owned mbufs from our pool.
            unsafe {
                let n = dpdk_sys::rte_vhost_dequeue_burst(self.vid.0, pair * 2 + 1, self.pool.as_ptr(), ptr, cap as u16)
                    as usize;
                burst.commit(n);
                got += n;
            }
        }
        got
    }
}

/// A device's driver-RX vring for one worker: the pair of that worker when the driver enabled it, else
/// the first enabled pair (several workers may then share a vring: DPDK serialises them per vring).
#[derive(Debug)]
pub struct VhostTx {
    vid: VhostVid,
    port: PortId,
    pair: u16,
    mask: Arc<VringMask>,
}

impl VhostTx {
    pub fn new(vid: VhostVid, port: PortId, worker: usize, mask: Arc<VringMask>) -> VhostTx {
        VhostTx { vid, port, pair: (worker % 64) as u16, mask }
    }

    pub fn port_id(&self) -> PortId {
        self.port
    }

    /// Copy what the driver has room for into its buffers; those packets are freed (the copies are the
    /// driver's now), the rest stay in `burst`. How many went.
    #[inline(always)]
    pub fn tx_burst(&mut self, burst: &mut Burst) -> usize {
        let mask = self.mask.get();
        if mask == 0 {
            return 0;
        }
        let pair = if mask & (1 << self.pair) != 0 { self.pair } else { mask.trailing_zeros() as u16 };
        let (ptr, n) = burst.live_raw();
        if n == 0 {
            return 0;
        }
        // SAFETY: ptr holds n owned mbufs; enqueue copies the first `sent` into the driver's buffers and
        // leaves all of them ours; the device is live while a worker holds this queue (destroy waits).
        unsafe {
            let sent = dpdk_sys::rte_vhost_enqueue_burst(self.vid.0, pair * 2, ptr, n as u16) as usize;
            if sent > 0 {
                dpdk_sys::rte_pktmbuf_free_bulk(ptr, sent as u32);
                burst.consume(sent);
            }
            sent
        }
    }
}

#[cfg(test)]
mod tests {
    use super::VringMask;

    #[test]
    fn a_pair_counts_as_enabled_by_its_driver_rx_vring() {
        let m = VringMask::default();
        assert!(!m.any());
        m.set(1, true); // a driver-TX vring: not what decides
        assert!(!m.any());
        m.set(2, true); // pair 1
        assert_eq!(m.get(), 0b10);
        m.set(0, true);
        assert_eq!(m.get(), 0b11);
        m.set(2, false);
        assert_eq!(m.get(), 0b01);
        m.set(200, true); // beyond 64 pairs: ignored
        assert_eq!(m.get(), 0b01);
    }
}
