//! weftd's own configuration: a TOML file whose every key can be overridden by a flag of the same name
//! (`underlay_mtu` <-> `--underlay-mtu`). flannel's flag names are kept where they mean the same thing.
//!
//! ```toml
//! network = "10.244.0.0/16"      # static mode; with etcd it comes from <prefix>/config
//! subnet = "10.244.1.0/24"
//! public_ip = "192.168.77.1"
//! uplink = "net_af_packet0,iface=eth0"
//! workers = 1
//!
//! [[peers]]
//! subnet = "10.244.2.0/24"
//! public_ip = "192.168.77.2"
//! vtep_mac = "aa:c4:e1:93:50:bd"
//!
//! [[pods]]
//! name = "web"
//! kind = "tap"
//! netns = "web-ns"
//! ```

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{Ipv4Net, MacAddr, Vni};

/// weftd's settings as an operator writes them: one struct that is both the TOML file (keys as the
/// flags, with '_' for '-') and the command line (clap). Every field is optional so that a flag can fill
/// or override the file's key of the same name ([`NodeFile::overlay`]); [`NodeFile::resolve`] and
/// [`NodeFile::etcd`] validate them into [`NodeSettings`] / [`EtcdSettings`].
#[derive(Debug, Clone, Default, Deserialize, Serialize, clap::Parser)]
#[serde(deny_unknown_fields)]
#[command(name = "weftd", about = "flannel-compatible VXLAN dataplane on DPDK")]
pub struct NodeFile {
    /// TOML config file (keys as the flags, with '_' for '-'); flags override it.
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Cluster network (flannel's Network), e.g. 10.244.0.0/16.
    #[arg(long)]
    pub network: Option<String>,
    /// Subnet length (flannel's SubnetLen); default: the subnet's prefix length.
    #[arg(long)]
    pub subnet_len: Option<u8>,
    /// VXLAN network identifier (flannel's Backend.VNI), default 1.
    #[arg(long)]
    pub vni: Option<u32>,
    /// VXLAN UDP port (flannel's Backend.Port), default 8472.
    #[arg(long)]
    pub vxlan_port: Option<u16>,
    /// How the cluster crosses hosts (flannel's Backend.Type): vxlan, host-gw or udp. Default vxlan.
    /// In etcd mode the network config decides.
    #[arg(long)]
    pub backend: Option<String>,
    /// VXLAN only: route straight to peers on our L2, as host-gw does (flannel's Backend.DirectRouting).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub direct_routing: Option<bool>,
    /// The udp backend's UDP port (flannel's Backend.Port for "udp"), default 8285.
    #[arg(long)]
    pub udp_port: Option<u16>,
    /// This node's subnet, e.g. 10.244.1.0/24 (static mode; without it, etcd mode).
    #[arg(long)]
    pub subnet: Option<String>,
    /// This node's underlay address (flannel's --public-ip).
    #[arg(long)]
    pub public_ip: Option<String>,
    /// The uplink as DPDK devargs (net_af_packet0,iface=eth1) or a PCI address.
    #[arg(long)]
    pub uplink: Option<String>,
    /// Underlay MTU; pods get this minus 50. Default 1500.
    #[arg(long)]
    pub underlay_mtu: Option<u16>,
    /// Prefix length of the underlay network around public_ip (on-link peers). Default 24.
    #[arg(long)]
    pub underlay_prefix_len: Option<u8>,
    /// Underlay gateway for peers outside the underlay prefix.
    #[arg(long)]
    pub underlay_gateway: Option<String>,
    /// This node's VtepMAC; default: generated once and kept in state_dir.
    #[arg(long)]
    pub vtep_mac: Option<String>,
    /// Where weftd keeps state across restarts (VtepMAC, pods). Default /var/lib/weft.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Poll-mode workers. Default 1.
    #[arg(long)]
    pub workers: Option<usize>,
    /// EAL lcore list; default 0-<workers> (main lcore 0, workers after it).
    #[arg(long)]
    pub lcores: Option<String>,
    /// Extra EAL argument (repeatable).
    #[arg(long = "eal-arg", allow_hyphen_values = true)]
    pub eal_args: Option<Vec<String>>,
    /// DPDK's --file-prefix: where dpdk-dumpcap, dpdk-proc-info and dpdk-telemetry.py find this weftd
    /// (`--file-prefix=weftd` for them too). Default weftd; one per weftd on a host.
    #[arg(long)]
    pub file_prefix: Option<String>,
    /// Unix socket for weftctl. Default /run/weft/weftd.sock.
    #[arg(long)]
    pub api_socket: Option<PathBuf>,
    /// A group (name or id) whose members may use the API besides root.
    #[arg(long, value_parser = group_id)]
    pub api_group: Option<u32>,
    /// Allow the API's debugging verbs (pausing a worker).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub debug_api: Option<bool>,
    /// Directory for pods' vhost-user sockets (not the API socket's private directory). Default
    /// /run/weft-vhost.
    #[arg(long)]
    pub vhost_dir: Option<PathBuf>,
    /// The host port: a kernel interface that is weft's way to the host, to cni0's pods and to
    /// everything outside the cluster network (as flannel.1 is flanneld's). Default weft0; "" turns it
    /// off (then weft pods reach only other pods).
    #[arg(long)]
    pub host_iface: Option<String>,
    /// host-local's store of the CNI network of the node's kernel pods: weft reserves its pods'
    /// addresses there too, so the two never hand out the same one. Default
    /// /var/lib/cni/networks/cbr0 (flannel's network name); "" uses weft's own allocator only.
    #[arg(long)]
    pub ipam_store: Option<String>,
    /// Never sleep when idle (benchmarks, dedicated cores).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub busy_poll: Option<bool>,
    /// The CPUs where the kernel handles the frames weft writes to its tap ports (the host port, tap
    /// pods): their RPS mask and the host port's NAPI threads, a CPU list like 0,2-3. Default: every online CPU that runs no worker, so
    /// the host's and the pods' network stacks stay off the worker cores; "" leaves RPS as it is.
    #[arg(long)]
    pub kernel_cpus: Option<String>,
    /// Mbufs in the pool. Default 16383.
    #[arg(long)]
    pub mbufs: Option<u32>,
    /// vhost-user pods this node can hold (the workers' port tables are sized for them at start).
    /// Default 256.
    #[arg(long)]
    pub max_vhost_pods: Option<u32>,
    /// Where /metrics, /healthz and /readyz are served. Default 127.0.0.1:9109.
    #[arg(long)]
    pub metrics_addr: Option<String>,
    /// flannel's --healthz-ip: the address of the separate /healthz (and /readyz) listener. Default
    /// 0.0.0.0.
    #[arg(long)]
    pub healthz_ip: Option<String>,
    /// flannel's --healthz-port: serve /healthz and /readyz on this port too (0, the default, does not).
    #[arg(long)]
    pub healthz_port: Option<u16>,
    /// etcd mode (no `subnet`): comma list of etcd URLs. Default http://127.0.0.1:2379.
    #[arg(long)]
    pub etcd_endpoints: Option<String>,
    /// etcd key prefix. Default /coreos.com/network.
    #[arg(long)]
    pub etcd_prefix: Option<String>,
    /// CA for https:// endpoints; without it, the system's roots.
    #[arg(long)]
    pub etcd_cafile: Option<PathBuf>,
    #[arg(long)]
    pub etcd_certfile: Option<PathBuf>,
    #[arg(long)]
    pub etcd_keyfile: Option<PathBuf>,
    #[arg(long)]
    pub etcd_username: Option<String>,
    /// etcd password; better from a file (--etcd-password-file) or the environment
    /// (WEFTD_ETCD_PASSWORD or FLANNELD_ETCD_PASSWORD), which `ps` does not show.
    #[arg(long)]
    pub etcd_password: Option<String>,
    /// The password from a file (kept out of `ps` and of the config file).
    #[arg(long)]
    pub etcd_password_file: Option<PathBuf>,
    /// flannel's subnet file. Default /run/flannel/subnet.env.
    #[arg(long)]
    pub subnet_file: Option<PathBuf>,
    /// Minutes before the lease's expiry to renew it (flannel's default 60).
    #[arg(long)]
    pub subnet_lease_renew_margin: Option<u64>,
    /// Masquerade traffic from pods to outside the cluster network as flanneld --ip-masq does (its
    /// FLANNEL-POSTRTG rules), and write FLANNEL_IPMASQ=true to the subnet file. Needs the host port.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub ip_masq: Option<bool>,
    /// Static peer SUBNET,PUBLIC_IP[,VTEP_MAC] (repeatable; static mode only; VTEP_MAC for vxlan).
    #[arg(long = "peer", value_name = "SUBNET,PUBLIC_IP[,VTEP_MAC]")]
    #[serde(default)]
    pub peers: Vec<PeerFile>,
    #[arg(skip)]
    #[serde(default)]
    pub pods: Vec<PodFile>,
}

/// The uplink as EAL takes it: a virtual device's devargs (`net_...`) as given; a PCI address with its
/// domain, which `lspci` and `dpdk-devbind.py --status` leave out (`3b:00.0` is `0000:3b:00.0`), and
/// any device arguments after a comma kept.
fn pci_uplink(uplink: &str) -> Result<String, SettingError> {
    if uplink.starts_with("net_") {
        return Ok(uplink.to_owned());
    }
    let (addr, args) = match uplink.split_once(',') {
        Some((a, r)) => (a, Some(r)),
        None => (uplink, None),
    };
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let bdf = |s: &str| match s.split_once(':') {
        Some((bus, rest)) => match rest.split_once('.') {
            Some((dev, f)) => hex(bus, 2) && hex(dev, 2) && f.len() == 1 && (b'0'..=b'7').contains(&f.as_bytes()[0]),
            None => false,
        },
        None => false,
    };
    let full = match addr.split_once(':') {
        Some((dom, rest)) if hex(dom, 4) && bdf(rest) => addr.to_ascii_lowercase(),
        _ if bdf(addr) => format!("0000:{}", addr.to_ascii_lowercase()),
        _ => {
            return Err(bad(
                "uplink",
                format!("{uplink:?} is neither a PCI address (0000:3b:00.0, or 3b:00.0 as lspci prints it) nor DPDK devargs of a virtual device (net_af_packet0,iface=eth1)"),
            ))
        }
    };
    Ok(match args {
        Some(a) => format!("{full},{a}"),
        None => full,
    })
}

/// A group by name (from /etc/group) or number.
fn group_id(g: &str) -> Result<u32, String> {
    if let Ok(n) = g.parse() {
        return Ok(n);
    }
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    groups
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            (f.next() == Some(g)).then(|| f.nth(1).and_then(|id| id.parse().ok())).flatten()
        })
        .ok_or_else(|| format!("no group {g:?} in /etc/group: give a group name or id"))
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PeerFile {
    pub subnet: String,
    pub public_ip: String,
    /// VXLAN peers only: host-gw and udp peers have none.
    pub vtep_mac: Option<String>,
}

impl std::str::FromStr for PeerFile {
    type Err = String;
    /// `SUBNET,PUBLIC_IP[,VTEP_MAC]`, as `--peer` takes it (each part is validated by `resolve`).
    fn from_str(p: &str) -> Result<PeerFile, String> {
        match p.split(',').collect::<Vec<_>>()[..] {
            [subnet, public_ip] => Ok(PeerFile { subnet: subnet.into(), public_ip: public_ip.into(), vtep_mac: None }),
            [subnet, public_ip, vtep_mac] => Ok(PeerFile {
                subnet: subnet.into(),
                public_ip: public_ip.into(),
                vtep_mac: Some(vtep_mac.into()),
            }),
            _ => Err(format!(
                "{p:?} must be SUBNET,PUBLIC_IP[,VTEP_MAC] like 10.244.2.0/24,192.168.77.2,aa:c4:e1:93:50:bd (the MAC for vxlan)"
            )),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PodFile {
    pub name: String,
    pub kind: String,
    pub ip: Option<String>,
    pub netns: Option<String>,
    #[serde(default)]
    pub vhost_client: bool,
}

impl NodeFile {
    /// The file's settings with `flags` laid over them: a flag given wins over the file's key; `--peer`
    /// adds to the file's peers. Generic over the fields (through their serde form), so a new setting
    /// needs no merge code.
    pub fn overlay(self, flags: NodeFile) -> Result<NodeFile, SettingError> {
        let to = |f: &NodeFile| serde_json::to_value(f).map_err(|e| bad("config", e.to_string()));
        let (serde_json::Value::Object(mut base), serde_json::Value::Object(top)) = (to(&self)?, to(&flags)?) else {
            return Err(bad("config", "settings are not an object"));
        };
        for (k, v) in top {
            match (k.as_str(), v) {
                (_, serde_json::Value::Null) => {}
                ("peers", serde_json::Value::Array(more)) => {
                    if let Some(serde_json::Value::Array(have)) = base.get_mut("peers") {
                        have.extend(more);
                    }
                }
                ("pods", _) => {}
                (_, v) => {
                    base.insert(k, v);
                }
            }
        }
        let mut merged: NodeFile =
            serde_json::from_value(serde_json::Value::Object(base)).map_err(|e| bad("config", e.to_string()))?;
        merged.config = flags.config.or(self.config);
        Ok(merged)
    }
}

/// The CPUs that take the kernel's receive work for weft's tap ports (RPS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelCpus {
    /// Every online CPU that runs no worker (none: RPS unchanged).
    NotWorkers,
    /// Leave RPS as the kernel has it.
    Unchanged,
    /// These CPUs.
    List(Vec<u32>),
}

/// The highest CPU number a list may name (the kernel's NR_CPUS on x86-64 distributions).
const MAX_CPU: u32 = 8191;

/// A CPU list as the kernel writes them (`0,2-3`), sorted, without repeats.
pub fn cpu_list(list: &str) -> Result<Vec<u32>, String> {
    let mut cpus = Vec::new();
    for item in list.split(',').map(str::trim) {
        let num = |t: &str| {
            t.parse::<u32>()
                .ok()
                .filter(|&c| c <= MAX_CPU)
                .ok_or_else(|| format!("{item:?} in {list:?} is not a CPU number or range like 0,2-3"))
        };
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("{item:?} in {list:?} runs backwards: write {b}-{a}"));
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(num(item)?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// A bad setting: which one, what is wrong, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {why}")]
pub struct SettingError {
    pub field: String,
    pub why: String,
}

fn bad(field: impl Into<String>, why: impl Into<String>) -> SettingError {
    SettingError { field: field.into(), why: why.into() }
}

/// How a pod attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodKind {
    /// A kernel pod on a weft port of its own: a veth pair, one end in the pod's namespace, the other
    /// held by DPDK's net_af_packet. (The name is from when it was a tap interface, DPDK's net_tap.)
    Tap,
    /// A vhost-user socket (DPDK net_vhost) for a virtio-user pod or a VM.
    Vhost,
    /// A kernel pod on a veth pair routed through the host port (a /32 route and proxy ARP on the host
    /// end, as Calico does): no weft port of its own, so the workers' cost per burst does not grow with
    /// the number of such pods. Needs the host port.
    Veth,
}

impl std::str::FromStr for PodKind {
    type Err = SettingError;
    fn from_str(s: &str) -> Result<Self, SettingError> {
        match s {
            "tap" => Ok(PodKind::Tap),
            "vhost" => Ok(PodKind::Vhost),
            "veth" => Ok(PodKind::Veth),
            _ => Err(bad("kind", format!("{s:?} is not a pod kind: use \"tap\", \"vhost\" or \"veth\""))),
        }
    }
}

impl std::fmt::Display for PodKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PodKind::Tap => "tap",
            PodKind::Vhost => "vhost",
            PodKind::Veth => "veth",
        })
    }
}

/// A route a pod gets in its network namespace: `dst` via `gw` (the pod's gateway when `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodRoute {
    pub dst: Ipv4Net,
    pub gw: Option<Ipv4Addr>,
}

impl std::str::FromStr for PodRoute {
    type Err = SettingError;
    /// `10.0.0.0/8`, or `10.0.0.0/8 via 10.244.1.1`.
    fn from_str(r: &str) -> Result<PodRoute, SettingError> {
        let bad = || bad("routes", format!("{r:?} is not `10.0.0.0/8` or `10.0.0.0/8 via 10.244.1.1`"));
        let (dst, gw) = match r.split_once(" via ") {
            Some((d, g)) => (d, Some(g.trim().parse().map_err(|_| bad())?)),
            None => (r, None),
        };
        Ok(PodRoute { dst: dst.trim().parse().map_err(|_| bad())?, gw })
    }
}

impl std::fmt::Display for PodRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.gw {
            Some(gw) => write!(f, "{} via {gw}", self.dst),
            None => write!(f, "{}", self.dst),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSpec {
    /// weft's name for the pod (1-12 characters); empty when a container id is given: weftd derives one.
    pub name: String,
    pub kind: PodKind,
    pub ip: Option<Ipv4Addr>,
    /// A network namespace: a name under /run/netns, or a path (CNI's `CNI_NETNS`, `/proc/PID/ns/net`).
    pub netns: Option<String>,
    /// The interface's name in the pod's namespace (CNI's `CNI_IFNAME`); `wt-<name>` when not given.
    pub ifname: Option<String>,
    /// The runtime's container id (CNI's `CNI_CONTAINERID`): with `ifname`, the pod's key for CNI.
    pub container_id: Option<String>,
    /// The address was reserved by the caller's IPAM (a CNI IPAM plugin): weftd checks it is a pod
    /// address of this node and free in its tables, but neither reserves nor releases it in the store.
    pub ip_reserved: bool,
    /// Routes in the pod's namespace (tap pods); the default route via the gateway when empty.
    pub routes: Vec<PodRoute>,
    /// vhost pods: weft is the vhost-user client and the pod (virtio-user `server=1`, or a VM) owns the
    /// socket, so either side can restart and the connection comes back.
    pub vhost_client: bool,
    /// The pod's MAC; a new one when not given (weftd restoring a pod gives its old one).
    pub mac: Option<MacAddr>,
}

/// A pod name: 1-12 characters of letters, digits and '-' (`wt-<name>` names a kernel interface).
pub fn check_pod_name(name: &str) -> Result<(), SettingError> {
    if name.is_empty() || name.len() > 12 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(bad(
            "pod name",
            format!("{name:?} must be 1-12 characters of letters, digits and '-' (it names a kernel interface)"),
        ));
    }
    Ok(())
}

/// An interface name the kernel takes: 1-15 bytes, no '/', ':' or whitespace, not "." or "..".
pub fn check_ifname(name: &str) -> Result<(), SettingError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if ok {
        Ok(())
    } else {
        Err(bad("ifname", format!("{name:?} is not an interface name (1-15 characters, no '/', ':' or spaces)")))
    }
}

/// A container id as CNI defines it: letters, digits, '_', '.' and '-', starting with a letter or digit.
pub fn check_container_id(id: &str) -> Result<(), SettingError> {
    let ok = id.len() <= 256
        && id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(bad("container id", format!("{id:?}: letters, digits, '_', '.' and '-', starting with a letter or digit")))
    }
}

/// A network namespace: a name under /run/netns (no '/'), or an absolute path.
pub fn check_netns(ns: &str) -> Result<(), SettingError> {
    let name_ok = !ns.is_empty() && !ns.contains('/') && ns != "." && ns != "..";
    if name_ok || (ns.starts_with('/') && !ns.split('/').any(|c| c == "..")) {
        Ok(())
    } else {
        Err(bad("netns", format!("{ns:?} is neither a namespace name nor an absolute path like /run/netns/pod1")))
    }
}

impl PodSpec {
    /// A pod from its parts as people give them; an empty name is left for [`PodSpec::for_container`]
    /// (weftd refuses a pod with neither a name nor a container id).
    pub fn parse(name: &str, kind: &str, ip: Option<&str>, netns: Option<&str>) -> Result<PodSpec, SettingError> {
        if !name.is_empty() {
            check_pod_name(name)?;
        }
        let ip = ip
            .map(|s| s.parse::<Ipv4Addr>().map_err(|_| bad("pod ip", format!("{s:?} is not an IPv4 address"))))
            .transpose()?;
        if let Some(ns) = netns {
            check_netns(ns)?;
        }
        Ok(PodSpec {
            name: name.into(),
            kind: kind.parse()?,
            ip,
            netns: netns.map(str::to_owned),
            ifname: None,
            container_id: None,
            ip_reserved: false,
            routes: Vec::new(),
            vhost_client: false,
            mac: None,
        })
    }

    /// Key the pod by a runtime's container id and interface name, as a CNI plugin does; `name` may then
    /// be empty (weftd derives one).
    pub fn for_container(mut self, container_id: Option<&str>, ifname: Option<&str>) -> Result<PodSpec, SettingError> {
        if let Some(id) = container_id {
            check_container_id(id)?;
        }
        if let Some(i) = ifname {
            check_ifname(i)?;
        }
        self.container_id = container_id.map(str::to_owned);
        self.ifname = ifname.map(str::to_owned);
        Ok(self)
    }
}

/// Everything weftd needs in static mode, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSettings {
    pub network: Ipv4Net,
    pub subnet_len: u8,
    pub vni: Vni,
    pub vxlan_port: u16,
    pub backend: crate::BackendType,
    pub direct_routing: bool,
    pub udp_port: u16,
    pub subnet: Ipv4Net,
    pub public_ip: Ipv4Addr,
    pub uplink: String,
    pub underlay_mtu: u16,
    pub underlay_net: Ipv4Net,
    pub underlay_gateway: Option<Ipv4Addr>,
    pub vtep_mac: Option<MacAddr>,
    pub state_dir: PathBuf,
    pub workers: usize,
    pub lcores: String,
    pub eal_args: Vec<String>,
    pub file_prefix: String,
    pub api_socket: PathBuf,
    pub api_group: Option<u32>,
    pub debug_api: bool,
    pub vhost_dir: PathBuf,
    /// The host port's interface name; None when it is off.
    pub host_iface: Option<String>,
    /// host-local's store directory shared with the kernel pods' IPAM; None: weft's allocator only.
    pub ipam_store: Option<PathBuf>,
    /// flanneld's masquerade rules are installed (on the host port's host).
    pub ip_masq: bool,
    pub busy_poll: bool,
    /// Where the kernel handles what weft writes to its tap ports (their RPS CPUs).
    pub kernel_cpus: KernelCpus,
    pub mbufs: u32,
    pub max_vhost_pods: usize,
    pub metrics_addr: std::net::SocketAddr,
    /// flannel's healthz listener (`--healthz-ip`:`--healthz-port`), when a port is given.
    pub healthz_addr: Option<std::net::SocketAddr>,
    pub peers: Vec<crate::Peer>,
    pub pods: Vec<PodSpec>,
}

fn req<'a>(v: &'a Option<String>, field: &str, example: &str) -> Result<&'a str, SettingError> {
    v.as_deref().ok_or_else(|| {
        bad(
            field,
            format!(
                "missing: set `{field} = \"{example}\"` in the config file or pass --{} {example}",
                field.replace('_', "-")
            ),
        )
    })
}

fn ip(v: &str, field: &str) -> Result<Ipv4Addr, SettingError> {
    v.parse().map_err(|_| bad(field, format!("{v:?} is not an IPv4 address like 192.168.77.1")))
}

fn net(v: &str, field: &str) -> Result<Ipv4Net, SettingError> {
    v.parse().map_err(|e: crate::NetParseError| bad(field, e.to_string()))
}

fn mac(v: &str, field: &str) -> Result<MacAddr, SettingError> {
    v.parse().map_err(|e: crate::MacParseError| bad(field, format!("{v:?}: {e} (like c6:d2:32:6f:8f:44)")))
}

/// How weftd reaches etcd, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdSettings {
    pub endpoints: Vec<String>,
    pub prefix: String,
    pub cafile: Option<PathBuf>,
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub subnet_file: PathBuf,
    pub renew_margin_minutes: u64,
    pub ip_masq: bool,
}

impl NodeFile {
    /// Static mode (tables from the file and flags) when `subnet` is given; etcd mode otherwise.
    pub fn is_static(&self) -> bool {
        self.subnet.is_some()
    }

    /// The etcd settings of etcd mode, validated.
    pub fn etcd(&self) -> Result<EtcdSettings, SettingError> {
        if !self.peers.is_empty() {
            return Err(bad(
                "peers",
                "static peers are for static mode (with `subnet`); with etcd, peers come from the leases",
            ));
        }
        let endpoints: Vec<String> = self
            .etcd_endpoints
            .as_deref()
            .unwrap_or("http://127.0.0.1:2379")
            .split(',')
            .map(|e| e.trim().to_owned())
            .filter(|e| !e.is_empty())
            .collect();
        if endpoints.is_empty() || endpoints.iter().any(|e| !(e.starts_with("http://") || e.starts_with("https://"))) {
            return Err(bad(
                "etcd_endpoints",
                format!("{endpoints:?}: give a comma list of URLs like http://127.0.0.1:2379"),
            ));
        }
        let prefix = self.etcd_prefix.clone().unwrap_or_else(|| "/coreos.com/network".into());
        if !prefix.starts_with('/') {
            return Err(bad("etcd_prefix", format!("{prefix:?} must start with '/' like /coreos.com/network")));
        }
        if self.etcd_certfile.is_some() != self.etcd_keyfile.is_some() {
            return Err(bad("etcd_certfile", "etcd_certfile and etcd_keyfile go together: give both or neither"));
        }
        for (field, path) in [
            ("etcd_cafile", &self.etcd_cafile),
            ("etcd_certfile", &self.etcd_certfile),
            ("etcd_keyfile", &self.etcd_keyfile),
        ] {
            if let Some(p) = path {
                if !p.is_file() {
                    return Err(bad(field, format!("{} is not a readable file", p.display())));
                }
            }
        }
        let https = endpoints.iter().filter(|e| e.starts_with("https://")).count();
        if https != 0 && https != endpoints.len() {
            return Err(bad("etcd_endpoints", format!("{endpoints:?} mixes http:// and https://: use one scheme")));
        }
        if https == 0 {
            for (field, given) in [("etcd_cafile", &self.etcd_cafile), ("etcd_certfile", &self.etcd_certfile)] {
                if given.is_some() {
                    return Err(bad(
                        field,
                        format!("{field} is for TLS but etcd_endpoints {endpoints:?} are http://: use https:// endpoints or drop {field}"),
                    ));
                }
            }
        }
        if self.etcd_password.is_some() && self.etcd_password_file.is_some() {
            return Err(bad("etcd_password_file", "etcd_password and etcd_password_file exclude each other: give one"));
        }
        let password = match &self.etcd_password_file {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| bad("etcd_password_file", format!("{}: {e}", p.display())))?
                    .trim_end_matches(['\n', '\r'])
                    .to_owned(),
            ),
            None => self.etcd_password.clone(),
        };
        if self.etcd_username.is_some() != password.is_some() {
            return Err(bad("etcd_username", "etcd_username and etcd_password (or etcd_password_file) go together"));
        }
        let margin = self.subnet_lease_renew_margin.unwrap_or(60);
        if margin == 0 || margin >= 24 * 60 {
            return Err(bad(
                "subnet_lease_renew_margin",
                format!("{margin} minutes: use 1..1439 (the lease lasts 24 h)"),
            ));
        }
        Ok(EtcdSettings {
            endpoints,
            prefix,
            cafile: self.etcd_cafile.clone(),
            certfile: self.etcd_certfile.clone(),
            keyfile: self.etcd_keyfile.clone(),
            username: self.etcd_username.clone(),
            password,
            subnet_file: self.subnet_file.clone().unwrap_or_else(|| PathBuf::from("/run/flannel/subnet.env")),
            renew_margin_minutes: margin,
            ip_masq: self.ip_masq.unwrap_or(false),
        })
    }

    /// Fill in what etcd decided: the network config and our subnet.
    pub fn apply_lease(&mut self, network: &crate::NetworkConfig, subnet: Ipv4Net) {
        self.network = Some(network.network.to_string());
        self.subnet_len = Some(network.subnet_len);
        self.vni = Some(network.vni.get());
        self.backend = Some(network.backend.name().to_owned());
        self.direct_routing = Some(network.direct_routing);
        match network.backend {
            crate::BackendType::Vxlan => self.vxlan_port = Some(network.port),
            crate::BackendType::Udp => self.udp_port = Some(network.port),
            crate::BackendType::HostGw => {}
        }
        self.subnet = Some(subnet.to_string());
    }

    /// The public IP, validated (needed before the rest in etcd mode).
    pub fn public_ip(&self) -> Result<Ipv4Addr, SettingError> {
        ip(req(&self.public_ip, "public_ip", "192.168.77.1")?, "public_ip")
    }

    /// The configured VtepMAC, if any, validated.
    pub fn vtep_mac(&self) -> Result<Option<MacAddr>, SettingError> {
        self.vtep_mac.as_deref().map(|m| mac(m, "vtep_mac")).transpose()
    }

    /// Parse the TOML file text; unknown keys are errors that name them.
    pub fn from_toml(text: &str) -> Result<NodeFile, SettingError> {
        toml::from_str(text).map_err(|e| bad("config file", e.to_string()))
    }

    /// Validate into settings (static mode: network, subnet and public IP are required).
    pub fn resolve(&self) -> Result<NodeSettings, SettingError> {
        let network = net(req(&self.network, "network", "10.244.0.0/16")?, "network")?;
        let subnet = net(req(&self.subnet, "subnet", "10.244.1.0/24")?, "subnet")?;
        let subnet_len = self.subnet_len.unwrap_or(subnet.prefix_len());
        if subnet.prefix_len() != subnet_len {
            return Err(bad("subnet", format!("{subnet} is not a /{subnet_len} (subnet_len)")));
        }
        if !network.contains_net(&subnet) || subnet_len <= network.prefix_len() {
            return Err(bad("subnet", format!("{subnet} is not a subnet inside network {network}")));
        }
        if subnet_len > 30 {
            return Err(bad("subnet_len", format!("{subnet_len} leaves no room for pods: use at most 30")));
        }
        let vni = self.vni.unwrap_or(1);
        let vni = Vni::new(vni)
            .filter(|v| v.get() != 0)
            .ok_or_else(|| bad("vni", format!("{vni} is not a VXLAN network identifier (1..16777215)")))?;
        let vxlan_port = self.vxlan_port.unwrap_or(crate::DEFAULT_VXLAN_PORT);
        if vxlan_port == 0 {
            return Err(bad("vxlan_port", "0 is not a UDP port: use 8472 (flannel's default) or 4789"));
        }
        let backend: crate::BackendType = match self.backend.as_deref() {
            None => crate::BackendType::Vxlan,
            Some(b) => b.parse().map_err(|e: String| bad("backend", e))?,
        };
        let direct_routing = self.direct_routing.unwrap_or(false);
        if direct_routing && backend != crate::BackendType::Vxlan {
            return Err(bad("direct_routing", format!("is for the vxlan backend only; drop it for {backend}")));
        }
        let udp_port = self.udp_port.unwrap_or(crate::DEFAULT_UDP_PORT);
        if udp_port == 0 {
            return Err(bad("udp_port", "0 is not a UDP port: use 8285 (flannel's default)"));
        }
        let public_ip = ip(req(&self.public_ip, "public_ip", "192.168.77.1")?, "public_ip")?;
        let uplink = req(&self.uplink, "uplink", "net_af_packet0,iface=eth1")?.to_owned();
        if uplink.trim().is_empty() {
            return Err(bad("uplink", "empty: give DPDK devargs like net_af_packet0,iface=eth1 or a PCI address"));
        }
        let uplink = pci_uplink(&uplink)?;
        let underlay_mtu = self.underlay_mtu.unwrap_or(1500);
        if !(576..=9216).contains(&underlay_mtu) {
            return Err(bad("underlay_mtu", format!("{underlay_mtu} is outside 576..9216")));
        }
        let plen = self.underlay_prefix_len.unwrap_or(24);
        let underlay_net = crate::Ipv4Net::new(public_ip, plen)
            .ok_or_else(|| bad("underlay_prefix_len", format!("{plen} is above 32")))?;
        let underlay_gateway = self.underlay_gateway.as_deref().map(|g| ip(g, "underlay_gateway")).transpose()?;
        let vtep_mac = self.vtep_mac.as_deref().map(|m| mac(m, "vtep_mac")).transpose()?;
        if let Some(m) = vtep_mac {
            if m.is_multicast() {
                return Err(bad("vtep_mac", format!("{m} is a multicast address: use a unicast one")));
            }
        }
        let workers = self.workers.unwrap_or(1);
        if workers == 0 || workers > 16 {
            return Err(bad("workers", format!("{workers}: use 1..16 poll-mode workers")));
        }
        let lcores = self.lcores.clone().unwrap_or_else(|| format!("0-{workers}"));
        let file_prefix = self.file_prefix.clone().unwrap_or_else(|| "weftd".into());
        if file_prefix.is_empty()
            || !file_prefix.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(bad(
                "file_prefix",
                format!("{file_prefix:?} is not a DPDK file prefix: use letters, digits, '-', '_' or '.', like weftd"),
            ));
        }
        if self.eal_args.iter().flatten().any(|a| a.starts_with("--file-prefix")) {
            return Err(bad("eal_args", "--file-prefix is a setting of its own: give --file-prefix (file_prefix)"));
        }
        let mbufs = self.mbufs.unwrap_or(16383);
        if mbufs < 1024 {
            return Err(bad("mbufs", format!("{mbufs} is too few: use at least 1024")));
        }
        let max_vhost_pods = self.max_vhost_pods.unwrap_or(256);
        if max_vhost_pods > 1024 {
            return Err(bad(
                "max_vhost_pods",
                format!(
                    "{max_vhost_pods}: use 0..1024 (RTE_MAX_VHOST_DEVICE: the devices DPDK's vhost library serves)"
                ),
            ));
        }
        let metrics_addr = self.metrics_addr.as_deref().unwrap_or("127.0.0.1:9109");
        let metrics_addr = metrics_addr
            .parse()
            .map_err(|_| bad("metrics_addr", format!("{metrics_addr:?} is not an address:port like 127.0.0.1:9109")))?;
        let healthz_addr = match self.healthz_port.unwrap_or(0) {
            0 => None,
            port => {
                let ip = self.healthz_ip.as_deref().unwrap_or("0.0.0.0");
                let ip: Ipv4Addr =
                    ip.parse().map_err(|_| bad("healthz_ip", format!("{ip:?} is not an IPv4 address like 0.0.0.0")))?;
                let addr = std::net::SocketAddr::from((ip, port));
                if addr == metrics_addr {
                    return Err(bad(
                        "healthz_port",
                        format!("{addr} is metrics_addr too: give one of them another port"),
                    ));
                }
                Some(addr)
            }
        };
        let mut peers = Vec::new();
        for (i, p) in self.peers.iter().enumerate() {
            let f = |k: &str| format!("peers[{i}].{k}");
            let s = net(&p.subnet, &f("subnet"))?;
            if s.prefix_len() != subnet_len || !network.contains_net(&s) {
                return Err(bad(f("subnet"), format!("{s} is not a /{subnet_len} inside {network}")));
            }
            if s == subnet {
                return Err(bad(f("subnet"), format!("{s} is this node's own subnet")));
            }
            let vtep_mac = match (&p.vtep_mac, backend) {
                (Some(m), crate::BackendType::Vxlan) => mac(m, &f("vtep_mac"))?,
                (None, crate::BackendType::Vxlan) => {
                    return Err(bad(
                        f("vtep_mac"),
                        "missing: a vxlan peer needs its VtepMAC (SUBNET,PUBLIC_IP,VTEP_MAC)",
                    ))
                }
                (Some(_), _) => {
                    return Err(bad(f("vtep_mac"), format!("a {backend} peer has no VtepMAC: give SUBNET,PUBLIC_IP")))
                }
                (None, _) => MacAddr::ZERO,
            };
            peers.push(crate::Peer { subnet: s, public_ip: ip(&p.public_ip, &f("public_ip"))?, vtep_mac });
        }
        let mut pods = Vec::new();
        for (i, p) in self.pods.iter().enumerate() {
            let mut spec = check_pod_name(&p.name)
                .and_then(|()| PodSpec::parse(&p.name, &p.kind, p.ip.as_deref(), p.netns.as_deref()))
                .map_err(|e| bad(format!("pods[{i}].{}", e.field.trim_start_matches("pod ")), e.why))?;
            spec.vhost_client = p.vhost_client;
            pods.push(spec);
        }
        let api_socket = self.api_socket.clone().unwrap_or_else(|| PathBuf::from("/run/weft/weftd.sock"));
        let vhost_dir = self.vhost_dir.clone().unwrap_or_else(|| PathBuf::from("/run/weft-vhost"));
        if api_socket.parent() == Some(vhost_dir.as_path()) {
            return Err(bad(
                "vhost_dir",
                format!(
                    "{} also holds the API socket: give pods' vhost-user sockets a directory of their own",
                    vhost_dir.display()
                ),
            ));
        }
        let host_iface = match self.host_iface.as_deref() {
            None => Some("weft0".to_owned()),
            Some("") => None,
            Some(n) => {
                // IFNAMSIZ is 16 with the NUL; DPDK's devargs split on ',' and '='.
                if n.len() > 15
                    || n == "."
                    || n == ".."
                    || n.chars().any(|c| c == '/' || c == ',' || c == '=' || c.is_whitespace())
                {
                    return Err(bad("host_iface", format!("{n:?} is not an interface name: up to 15 characters, no '/', ',', '=' or spaces (like weft0; \"\" turns the host port off)")));
                }
                Some(n.to_owned())
            }
        };
        let ip_masq = self.ip_masq.unwrap_or(false);
        if ip_masq && host_iface.is_none() {
            return Err(bad("ip_masq", "masquerading needs the host port: drop host_iface = \"\" or ip_masq"));
        }
        Ok(NodeSettings {
            network,
            subnet_len,
            vni,
            vxlan_port,
            backend,
            direct_routing,
            udp_port,
            subnet,
            public_ip,
            uplink,
            underlay_mtu,
            underlay_net,
            underlay_gateway,
            vtep_mac,
            state_dir: self.state_dir.clone().unwrap_or_else(|| PathBuf::from("/var/lib/weft")),
            workers,
            lcores,
            eal_args: self.eal_args.clone().unwrap_or_default(),
            file_prefix,
            api_socket,
            api_group: self.api_group,
            debug_api: self.debug_api.unwrap_or(false),
            vhost_dir,
            host_iface,
            ipam_store: match self.ipam_store.as_deref() {
                None => Some(PathBuf::from("/var/lib/cni/networks/cbr0")),
                Some("") => None,
                Some(p) => Some(PathBuf::from(p)),
            },
            ip_masq,
            busy_poll: self.busy_poll.unwrap_or(false),
            kernel_cpus: match self.kernel_cpus.as_deref() {
                None => KernelCpus::NotWorkers,
                Some("") => KernelCpus::Unchanged,
                Some(list) => KernelCpus::List(cpu_list(list).map_err(|why| bad("kernel_cpus", why))?),
            },
            mbufs,
            max_vhost_pods: max_vhost_pods as usize,
            metrics_addr,
            healthz_addr,
            peers,
            pods,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
network = "10.244.0.0/16"
subnet = "10.244.1.0/24"
public_ip = "192.168.77.1"
uplink = "net_af_packet0,iface=eth0"

[[peers]]
subnet = "10.244.2.0/24"
public_ip = "192.168.77.2"
vtep_mac = "aa:c4:e1:93:50:bd"

[[pods]]
name = "web"
kind = "tap"
netns = "web-ns"
"#;

    #[test]
    fn flags_overlay_the_file() {
        use clap::Parser;
        let file = NodeFile::from_toml(&format!("busy_poll = true\nworkers = 2\n{GOOD}")).unwrap();
        let flags = NodeFile::try_parse_from([
            "weftd",
            "--workers",
            "3",
            "--busy-poll=false",
            "--peer",
            "10.244.3.0/24,192.168.77.3,aa:c4:e1:93:50:be",
            "--eal-arg",
            "--log-level=8",
        ])
        .unwrap();
        let f = file.overlay(flags).unwrap();
        assert_eq!(f.workers, Some(3), "a flag wins over the file");
        assert_eq!(f.busy_poll, Some(false), "a boolean flag turns a file's true off");
        assert_eq!(f.subnet.as_deref(), Some("10.244.1.0/24"), "the file's keys stay");
        assert_eq!(f.peers.len(), 2, "--peer adds to the file's peers");
        assert_eq!(f.pods.len(), 1, "pods come from the file only");
        assert_eq!(f.eal_args, Some(vec!["--log-level=8".to_string()]));
        let bare = NodeFile::try_parse_from(["weftd", "--busy-poll"]).unwrap();
        assert_eq!(bare.busy_poll, Some(true), "a bare boolean flag means true");
        let s = f.resolve().unwrap();
        assert_eq!((s.workers, s.busy_poll, s.peers.len()), (3, false, 2));
    }

    #[test]
    fn parse_good_file_with_defaults() {
        let s = NodeFile::from_toml(GOOD).unwrap().resolve().unwrap();
        assert_eq!((s.vni.get(), s.vxlan_port, s.underlay_mtu, s.workers), (1, 8472, 1500, 1));
        assert_eq!(s.lcores, "0-1");
        assert_eq!(s.peers.len(), 1);
        assert_eq!(s.pods[0].kind, PodKind::Tap);
        assert_eq!(s.underlay_net.to_string(), "192.168.77.0/24");
    }

    fn err_with(edit: impl Fn(&mut NodeFile)) -> String {
        let mut f = NodeFile::from_toml(GOOD).unwrap();
        edit(&mut f);
        f.resolve().unwrap_err().to_string()
    }

    /// The kernel's CPU list syntax; unset means the CPUs without workers, "" leaves RPS alone.
    #[test]
    fn kernel_cpus_take_cpu_lists() {
        assert_eq!(cpu_list("0,2-3, 3").unwrap(), vec![0, 2, 3]);
        let with = |v: Option<&str>| {
            let mut f = NodeFile::from_toml(GOOD).unwrap();
            f.kernel_cpus = v.map(String::from);
            f.resolve().unwrap().kernel_cpus
        };
        assert_eq!(with(None), KernelCpus::NotWorkers);
        assert_eq!(with(Some("")), KernelCpus::Unchanged);
        assert_eq!(with(Some("1-2")), KernelCpus::List(vec![1, 2]));
    }

    /// PCI addresses as lspci prints them get their domain; devargs after a comma stay.
    #[test]
    fn short_pci_addresses_are_accepted() {
        for (given, eal) in [
            ("3b:00.0", "0000:3b:00.0"),
            ("3B:00.1", "0000:3b:00.1"),
            ("0000:3b:00.0", "0000:3b:00.0"),
            ("0001:af:1f.7,rxq_cqe_comp_en=0", "0001:af:1f.7,rxq_cqe_comp_en=0"),
            ("af:00.0,txq_inline=128", "0000:af:00.0,txq_inline=128"),
            ("net_af_packet0,iface=eth1", "net_af_packet0,iface=eth1"),
        ] {
            assert_eq!(pci_uplink(given).unwrap(), eal, "{given}");
        }
    }

    #[test]
    fn every_bad_field_is_named() {
        assert!(err_with(|f| f.network = None).starts_with("network: missing"));
        assert!(err_with(|f| f.network = Some("10.244.0.0".into())).starts_with("network:"));
        assert!(err_with(|f| f.subnet = Some("10.245.1.0/24".into())).starts_with("subnet:"));
        assert!(err_with(|f| f.subnet_len = Some(26)).starts_with("subnet:"));
        assert!(err_with(|f| f.public_ip = Some("192.168.77".into())).starts_with("public_ip:"));
        assert!(err_with(|f| f.uplink = None).contains("--uplink"));
        assert!(err_with(|f| f.vni = Some(1 << 24)).starts_with("vni:"));
        assert!(err_with(|f| f.vxlan_port = Some(0)).starts_with("vxlan_port:"));
        assert!(err_with(|f| f.underlay_mtu = Some(100)).starts_with("underlay_mtu:"));
        assert!(err_with(|f| f.vtep_mac = Some("01:00:00:00:00:01".into())).starts_with("vtep_mac:"));
        assert!(err_with(|f| f.kernel_cpus = Some("0,x".into())).starts_with("kernel_cpus: \"x\""));
        assert!(err_with(|f| f.kernel_cpus = Some("3-1".into())).contains("write 1-3"));
        assert!(err_with(|f| f.kernel_cpus = Some("9000".into())).starts_with("kernel_cpus:"));
        assert!(err_with(|f| f.vtep_mac = Some("nonsense".into())).starts_with("vtep_mac:"));
        assert!(err_with(|f| f.workers = Some(0)).starts_with("workers:"));
        assert!(err_with(|f| f.mbufs = Some(10)).starts_with("mbufs:"));
        assert!(err_with(|f| f.file_prefix = Some("a/b".into())).starts_with("file_prefix:"));
        assert!(err_with(|f| f.eal_args = Some(vec!["--file-prefix=x".into()])).starts_with("eal_args:"));
        assert!(err_with(|f| f.max_vhost_pods = Some(5000)).starts_with("max_vhost_pods:"));
        assert!(err_with(|f| f.metrics_addr = Some("9109".into())).starts_with("metrics_addr:"));
        assert!(err_with(|f| f.peers[0].vtep_mac = Some("x".into())).starts_with("peers[0].vtep_mac:"));
        assert!(err_with(|f| f.peers[0].vtep_mac = None).starts_with("peers[0].vtep_mac:"));
        assert!(err_with(|f| f.backend = Some("ipip".into())).starts_with("backend:"));
        assert!(err_with(|f| f.backend = Some("host-gw".into())).starts_with("peers[0].vtep_mac:"));
        assert!(err_with(|f| {
            f.backend = Some("udp".into());
            f.direct_routing = Some(true);
        })
        .starts_with("direct_routing:"));
        assert!(err_with(|f| f.udp_port = Some(0)).starts_with("udp_port:"));
        for bad_uplink in ["eth1", "3b:00", "3b:00.8", "00003b:00.0", "zz:00.0", "0000:3b:0.0"] {
            assert!(err_with(|f| f.uplink = Some(bad_uplink.into())).starts_with("uplink:"), "{bad_uplink}");
        }
        assert!(err_with(|f| {
            f.healthz_ip = Some("localhost".into());
            f.healthz_port = Some(8471);
        })
        .starts_with("healthz_ip:"));
        assert!(err_with(|f| {
            f.healthz_ip = Some("127.0.0.1".into());
            f.healthz_port = Some(9109);
        })
        .starts_with("healthz_port:"));
        assert!(err_with(|f| f.peers[0].subnet = "10.244.1.0/24".into()).starts_with("peers[0].subnet:"));
        assert!(err_with(|f| f.pods[0].kind = "macvlan".into()).starts_with("pods[0].kind:"));
        assert!(err_with(|f| f.pods[0].name = "a/b".into()).starts_with("pods[0].name:"));
        assert!(err_with(|f| f.host_iface = Some("a-name-of-16-chr".into())).starts_with("host_iface:"));
        assert!(err_with(|f| f.host_iface = Some("weft0,mac=x".into())).starts_with("host_iface:"));
        assert!(err_with(|f| {
            f.host_iface = Some(String::new());
            f.ip_masq = Some(true);
        })
        .starts_with("ip_masq:"));
    }

    #[test]
    fn host_port_defaults_to_weft0_and_turns_off_with_an_empty_name() {
        let mut f = NodeFile::from_toml(GOOD).unwrap();
        assert_eq!(f.resolve().unwrap().host_iface.as_deref(), Some("weft0"));
        f.host_iface = Some("flannel-w".into());
        assert_eq!(f.resolve().unwrap().host_iface.as_deref(), Some("flannel-w"));
        f.host_iface = Some(String::new());
        assert_eq!(f.resolve().unwrap().host_iface, None);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = NodeFile::from_toml("netwrok = \"10.0.0.0/8\"").unwrap_err().to_string();
        assert!(e.contains("netwrok"), "{e}");
    }

    #[test]
    fn etcd_mode_settings() {
        let mut f = NodeFile::from_toml("public_ip = \"192.168.77.1\"\nuplink = \"net_null0\"").unwrap();
        assert!(!f.is_static());
        let e = f.etcd().unwrap();
        assert_eq!(e.endpoints, ["http://127.0.0.1:2379"]);
        assert_eq!((e.prefix.as_str(), e.renew_margin_minutes), ("/coreos.com/network", 60));
        f.etcd_endpoints = Some("127.0.0.1:2379".into());
        assert!(f.etcd().unwrap_err().to_string().starts_with("etcd_endpoints:"));
        f.etcd_endpoints = Some("http://a:1, http://b:2".into());
        assert_eq!(f.etcd().unwrap().endpoints.len(), 2);
        f.etcd_prefix = Some("coreos.com".into());
        assert!(f.etcd().unwrap_err().to_string().starts_with("etcd_prefix:"));
        f.etcd_prefix = None;
        f.etcd_certfile = Some("/nonexistent".into());
        assert!(f.etcd().unwrap_err().to_string().starts_with("etcd_certfile:"));
        f.etcd_certfile = None;
        f.subnet_lease_renew_margin = Some(0);
        assert!(f.etcd().unwrap_err().to_string().starts_with("subnet_lease_renew_margin:"));
        f.subnet_lease_renew_margin = None;
        // Contradictory TLS flags are refused at start, naming both.
        f.etcd_cafile = Some("/etc/hostname".into());
        let e = f.etcd().unwrap_err().to_string();
        assert!(e.starts_with("etcd_cafile:") && e.contains("etcd_endpoints"), "{e}");
        f.etcd_endpoints = Some("https://a:1,http://b:2".into());
        assert!(f.etcd().unwrap_err().to_string().starts_with("etcd_endpoints:"));
        f.etcd_endpoints = Some("https://a:1,https://b:2".into());
        assert!(f.etcd().is_ok(), "a CA file with https endpoints");
        f.etcd_cafile = None;
        f.etcd_endpoints = None;
        // The password from a file, not the command line.
        let pw = std::env::temp_dir().join(format!("weft-pw-{}", std::process::id()));
        std::fs::write(&pw, "s3cret\n").unwrap();
        f.etcd_username = Some("weft".into());
        f.etcd_password_file = Some(pw.clone());
        assert_eq!(f.etcd().unwrap().password.as_deref(), Some("s3cret"));
        f.etcd_password = Some("other".into());
        assert!(f.etcd().unwrap_err().to_string().starts_with("etcd_password_file:"));
        std::fs::remove_file(&pw).unwrap();
        f.etcd_password = None;
        f.etcd_password_file = None;
        f.etcd_username = None;
        let net = crate::NetworkConfig::from_json(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":3}}"#)
            .unwrap();
        f.apply_lease(&net, "10.244.9.0/24".parse().unwrap());
        let s = f.resolve().unwrap();
        assert_eq!((s.subnet.to_string().as_str(), s.vni.get()), ("10.244.9.0/24", 3));
    }
}

#[cfg(test)]
mod example_tests {
    use super::NodeFile;

    /// The shipped example parses and validates (in etcd mode, with a lease filled in).
    #[test]
    fn parse_shipped_example() {
        let text = include_str!("../examples/weftd.toml");
        let mut f = NodeFile::from_toml(text).unwrap();
        assert!(!f.is_static());
        let e = f.etcd().unwrap();
        assert_eq!(e.endpoints.len(), 3);
        let net = crate::NetworkConfig::from_json(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#).unwrap();
        f.apply_lease(&net, "10.244.1.0/24".parse().unwrap());
        let s = f.resolve().unwrap();
        assert_eq!((s.workers, s.lcores.as_str()), (2, "0-2"));
    }
}

#[cfg(test)]
mod pod_spec_tests {
    use super::*;

    #[test]
    fn names_interfaces_container_ids_and_namespaces() {
        assert!(check_pod_name("web-1").is_ok());
        assert_eq!(check_pod_name("a-name-too-long").unwrap_err().field, "pod name");
        assert!(check_ifname("eth0").is_ok() && check_ifname("net1.100").is_ok());
        for bad in ["", "a/b", "a:b", "with space", ".", "..", "sixteen-chars-xx"] {
            assert_eq!(check_ifname(bad).unwrap_err().field, "ifname", "{bad:?}");
        }
        let podman = "2f0c3b1e9a7d4c5b8e6f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d";
        assert!(check_container_id(podman).is_ok() && check_container_id("ctr_1.a-b").is_ok());
        for bad in ["", "-lead", "a/b", "a b", "x;y"] {
            assert_eq!(check_container_id(bad).unwrap_err().field, "container id", "{bad:?}");
        }
        assert!(check_netns("pod1").is_ok() && check_netns("/run/netns/cni-1234").is_ok());
        assert!(check_netns("/proc/42/ns/net").is_ok());
        for bad in ["", "run/netns/x", "/run/netns/../../etc", ".."] {
            assert_eq!(check_netns(bad).unwrap_err().field, "netns", "{bad:?}");
        }
    }

    #[test]
    fn a_container_pod_needs_no_name_and_checks_its_key() {
        let spec = PodSpec::parse("", "tap", None, Some("/run/netns/x")).unwrap();
        let spec = spec.for_container(Some("abc123"), Some("eth0")).unwrap();
        assert_eq!((spec.container_id.as_deref(), spec.ifname.as_deref()), (Some("abc123"), Some("eth0")));
        let e = PodSpec::parse("", "tap", None, None).unwrap().for_container(Some("abc"), Some("a/b")).unwrap_err();
        assert_eq!(e.field, "ifname");
        assert_eq!(PodSpec::parse("x", "tap", None, Some("a/b")).unwrap_err().field, "netns");
    }

    #[test]
    fn routes_round_trip_and_bad_ones_name_the_field() {
        for r in ["0.0.0.0/0", "10.96.0.0/12 via 10.244.1.1"] {
            assert_eq!(r.parse::<PodRoute>().unwrap().to_string(), r);
        }
        for bad in ["", "10.0.0.0", "10.0.0.0/8 via", "10.0.0.0/8 via x", "10.0.0.0/8 via 1.2.3.4 via 5.6.7.8"] {
            assert_eq!(bad.parse::<PodRoute>().unwrap_err().field, "routes", "{bad:?}");
        }
    }
}
