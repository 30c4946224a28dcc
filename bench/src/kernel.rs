//! The kernel baseline: a flannel node's VXLAN path in the Linux kernel, in a network namespace of its
//! own, programmed the way flanneld programs it (`flannel.1` VNI 1 dstport 8472 nolearning; per peer a
//! neighbour entry for the subnet address, an FDB entry to the PublicIP and a route through flannel.1),
//! with the benchmark node's addresses (`frames::node`), so `weft-gen` drives the same frames through
//! it as through weft. As a host-gw node: per peer the route to its subnet via its PublicIP on the
//! uplink (flanneld's hostgw `RouteAdd`) and the PublicIP's neighbour entry, the uplink holding the
//! benchmark underlay's prefix so every PublicIP is on link.
//!
//! ```text
//!  gen ns (weft-gen, net_af_packet)          node ns (the kernel)
//!   gu  <------ veth ------>  ku  172.16.0.1, uplink --- flannel.1 (VNI 1, 8472)
//!   gp  <------ veth ------>  kp  10.0.0.1/26, the pods 10.0.0.2.. (permanent neighbours)
//! ```
//!
//! The generator's veth ends sit in a namespace with no routes and forwarding off, so nothing it sends
//! or receives can reach the host's own stack. The kernel's receive work is steered by RPS to the CPU
//! given (the generator runs on another), so the kernel gets one core as every other baseline does.
//! Both namespaces are deleted by exact name on drop.

use std::fmt::Write as _;
use std::process::Command;

use anyhow::bail;

use crate::frames;

/// The two namespaces of a kernel baseline; deleted on drop.
#[derive(Debug)]
pub struct KernelNode {
    pub gen_ns: String,
    pub node_ns: String,
    /// The generator's DPDK vdevs (uplink first, then pod).
    pub gen_vdevs: [String; 2],
    dir: std::path::PathBuf,
}

fn sh(ns: &str, script: &str) -> anyhow::Result<()> {
    testkit::lab::exec(ns, &["sh", "-ec", script]).map(|_| ())
}

impl KernelNode {
    /// Build it as a node of `backend` (vxlan or host-gw) for `peers` remote nodes, kernel receive work
    /// on `cpu`.
    pub fn new(tag: &str, backend: weft_config::BackendType, peers: u32, cpu: u32) -> anyhow::Result<KernelNode> {
        let host_gw = match backend {
            weft_config::BackendType::Vxlan => false,
            weft_config::BackendType::HostGw => true,
            weft_config::BackendType::Udp => {
                bail!("no kernel baseline for udp: flanneld's udp backend is a userspace relay, not the kernel")
            }
        };
        let gen_ns = format!("wbg-{tag}");
        let node_ns = format!("wbk-{tag}");
        let dir = std::env::temp_dir().join(format!("weft-bench-kernel-{tag}"));
        std::fs::create_dir_all(&dir)?;
        let mut k = KernelNode {
            gen_ns: String::new(),
            node_ns: String::new(),
            // 8192-frame rings (the PMD's default is 512, 10 ms at 50 kpps): a generator descheduled
            // on a busy machine still finds the kernel's frames waiting.
            gen_vdevs: [
                "net_af_packet0,iface=gu,qpairs=1,framecnt=8192".into(),
                "net_af_packet1,iface=gp,qpairs=1,framecnt=8192".into(),
            ],
            dir,
        };
        for (i, ns) in [&gen_ns, &node_ns].into_iter().enumerate() {
            let st = Command::new("ip").args(["netns", "add", ns]).status()?;
            if !st.success() {
                bail!("ip netns add {ns} failed (root needed; a stale one from a killed run? ip netns del {ns})");
            }
            // Owned from here on, so a failure below still deletes it.
            *(if i == 0 { &mut k.gen_ns } else { &mut k.node_ns }) = ns.clone();
        }
        let node = frames::node();
        let mtu = node.underlay_mtu;
        let pod_mtu = mtu - backend.overhead();
        let pod_port_mac = node.vtep_mac; // pods address their gateway by this MAC in the generated frames
        sh(
            &gen_ns,
            &format!(
                "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 net.ipv4.ip_forward=0
                 ip link set lo up
                 ip link add gu mtu {mtu} type veth peer name ku mtu {mtu} netns {node_ns}
                 ip link add gp mtu {mtu} type veth peer name kp mtu {mtu} netns {node_ns}
                 ip link set gu up
                 ip link set gp up"
            ),
        )?;
        let uplink = if host_gw {
            // Every PublicIP on link, as host-gw requires.
            format!("ip addr add {pip}/{plen} dev ku", pip = node.public_ip, plen = node.underlay_net.prefix_len())
        } else {
            format!(
                "ip addr add {pip}/32 dev ku
                 ip route add 172.31.255.254/32 dev ku
                 ip neigh add 172.31.255.254 lladdr {nh} dev ku nud permanent
                 ip route add {ul} via 172.31.255.254 dev ku
                 ip link add flannel.1 address {vmac} type vxlan id {vni} local {pip} dev ku dstport {port} nolearning
                 ip link set flannel.1 mtu {pod_mtu} up
                 ip addr add {net0}/32 dev flannel.1",
                pip = node.public_ip,
                nh = frames::NEXT_HOP_MAC,
                ul = node.underlay_net,
                vmac = node.vtep_mac,
                vni = node.vni.get(),
                port = node.vxlan_port,
                net0 = node.subnet.addr(),
            )
        };
        let mut script = format!(
            "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
             sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
             ip link set lo up
             ip link set ku address {umac} up
             {uplink}
             ip link set kp address {pod_port_mac} mtu {mtu} up
             ip addr add {gw}/{len} dev kp
             echo {mask:x} > /sys/class/net/ku/queues/rx-0/rps_cpus
             echo {mask:x} > /sys/class/net/kp/queues/rx-0/rps_cpus
             ",
            umac = frames::UPLINK_MAC,
            gw = std::net::Ipv4Addr::from(node.subnet.addr_u32() + 1),
            len = node.subnet.prefix_len(),
            mask = 1u64 << cpu,
        );
        for p in frames::inputs(0, 0).pods {
            let _ = writeln!(script, "ip neigh add {} lladdr {} dev kp nud permanent", p.ip, p.mac);
        }
        sh(&node_ns, &script)?;
        // flanneld's per-lease entries, as batches (100k peers are 300k entries).
        let (mut ipb, mut fdb) = (String::new(), String::new());
        for i in 0..peers {
            let p = frames::peer(i);
            if host_gw {
                let _ =
                    writeln!(ipb, "neigh replace {} lladdr {} dev ku nud permanent", p.public_ip, frames::NEXT_HOP_MAC);
                let _ = writeln!(ipb, "route replace {} via {} dev ku", p.subnet, p.public_ip);
                continue;
            }
            let gw = p.subnet.addr();
            let _ = writeln!(ipb, "neigh replace {gw} lladdr {} dev flannel.1 nud permanent", p.vtep_mac);
            let _ = writeln!(ipb, "route replace {} via {gw} dev flannel.1 onlink", p.subnet);
            let _ = writeln!(fdb, "fdb append {} dev flannel.1 dst {} self permanent", p.vtep_mac, p.public_ip);
        }
        let (ipf, fdbf) = (k.dir.join("ip.batch"), k.dir.join("fdb.batch"));
        std::fs::write(&ipf, ipb)?;
        std::fs::write(&fdbf, fdb)?;
        sh(&node_ns, &format!("ip -batch {} && bridge -batch {}", ipf.display(), fdbf.display()))?;
        Ok(k)
    }
}

impl Drop for KernelNode {
    fn drop(&mut self) {
        for ns in [&self.gen_ns, &self.node_ns] {
            if !ns.is_empty() {
                let _ = Command::new("ip").args(["netns", "del", ns]).status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
