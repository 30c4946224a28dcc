//! The OVS-DPDK baseline: Debian's `openvswitch-switch-dpdk` (userspace datapath) doing flannel's L3
//! VXLAN behaviour with OpenFlow rules, on one PMD core, wired to `weft-gen` over memif or vhost-user
//! exactly as weft is (over vhost-user with `dpdkvhostuserclient` ports, OVS's recommended kind: the
//! generator's virtio-user devices listen, `server=1`, and OVS connects to them). Its own ovsdb-server
//! and ovs-vswitchd in a directory and a network namespace of their own (the `br-phy` internal port is
//! a kernel tap that carries the tunnel endpoint's address), stopped by PID and deleted by exact name
//! on drop.
//!
//! ```text
//!  br-phy (netdev): up (dpdk, net_memif0 server)  + LOCAL 172.16.0.1/12, MAC = the uplink MAC
//!                   route 172.16.0.0/14 via 172.31.255.254 (the next hop, neighbour set by hand)
//!  br-int (netdev): pod (dpdk, net_memif1 server) + vxlan0 (key 1, dst_port 8472, remote_ip=flow)
//!    decap: in_port=vxlan0,ip,dl_dst=VtepMAC,nw_dst=<pod> -> set MACs, dec_ttl, output:pod
//!    encap: in_port=pod,ip,nw_dst=<peer subnet> -> tun_dst=<peer PublicIP>, set MACs, dec_ttl, output:vxlan0
//! ```
//!
//! ovs-vswitchd runs only while it is measured (its PMD thread polls a whole core), so other devices
//! under test get the machine to themselves; its database, bridges and ports stay between runs and the
//! flows are loaded again at each start.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::frames;

const VSWITCHD: &str = "/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk";
const SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";
const NEXT_HOP_IP: &str = "172.31.255.254";
/// The generator's vhost-user sockets for OVS's ports `up` and `pod`.
const VHOST_SOCKETS: [&str; 2] = ["up.vhost", "pod.vhost"];

#[derive(Debug)]
pub struct OvsSwitch {
    pub ns: String,
    pub dir: PathBuf,
    ovsdb: Option<Child>,
    vswitchd: Option<Child>,
    /// The generator's vdevs: memif clients of OVS's sockets, or virtio-user servers OVS connects to.
    pub gen_vdevs: [String; 2],
}

/// What OVS's uplink and pod ports are.
#[derive(Debug, Clone)]
pub enum OvsPorts {
    /// memif servers (`type=dpdk`) for the two-process topology.
    Memif,
    /// vhost-user clients (`type=dpdkvhostuserclient`) of the generator's sockets, which OVS connects to
    /// (and reconnects to after a restart) on its own.
    Vhost,
    /// These DPDK devargs (`type=dpdk`): the in-process topology, a `net_pcap` replay in, `net_null` out.
    Devargs([String; 2]),
}

fn run(cmd: &mut Command) -> anyhow::Result<String> {
    testkit::lab::run(cmd).map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
}

fn stop(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        crate::stop_child(&mut c, "-TERM");
    }
}

impl OvsSwitch {
    /// Database, bridges, ports (as `ports` says) and the flow file for `peers` remote VTEPs;
    /// ovs-vswitchd not started.
    pub fn with_ports(tag: &str, peers: u32, pmd_cpu: u32, ports: OvsPorts) -> anyhow::Result<OvsSwitch> {
        if !Path::new(VSWITCHD).exists() {
            bail!("{VSWITCHD} missing: apt-get install openvswitch-switch-dpdk (make setup does)");
        }
        let dir = std::env::temp_dir().join(format!("weft-bench-ovs-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let ns = format!("wbo-{tag}");
        let sock = |n: &str| dir.join(format!("{n}.sock")).display().to_string();
        let gen_vdevs = match ports {
            // The generator listens (and waits at its start for OVS to connect); a restarted OVS reconnects.
            OvsPorts::Vhost => [0, 1]
                .map(|i| format!("net_virtio_user{i},path={},queues=1,server=1", dir.join(VHOST_SOCKETS[i]).display())),
            _ => {
                [0, 1].map(|i| format!("net_memif{i},role=client,socket={},socket-abstract=no", sock(["up", "pod"][i])))
            }
        };
        let mut o = OvsSwitch { ns: String::new(), dir: dir.clone(), ovsdb: None, vswitchd: None, gen_vdevs };
        run(Command::new("ip").args(["netns", "add", &ns]))?;
        o.ns = ns.clone();
        run(Command::new("ip").args(["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]))?;
        run(Command::new("ip").args(["netns", "exec", &ns]).args([
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ]))?;
        let db = dir.join("conf.db");
        run(Command::new("ovsdb-tool").arg("create").arg(&db).arg(SCHEMA))?;
        let log = std::fs::File::create(dir.join("ovsdb-server.out"))?;
        o.ovsdb = Some(
            Command::new("ip")
                .args(["netns", "exec", &ns, "ovsdb-server"])
                .arg(&db)
                .arg(format!("--remote=punix:{}", dir.join("db.sock").display()))
                .arg(format!("--unixctl={}", dir.join("ovsdb-server.ctl").display()))
                .arg(format!("--log-file={}", dir.join("ovsdb-server.log").display()))
                .envs(o.env())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting ovsdb-server")?,
        );
        let t = Instant::now();
        while !dir.join("db.sock").exists() {
            if t.elapsed() > Duration::from_secs(10) {
                bail!("ovsdb-server did not open {}", dir.join("db.sock").display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let node = frames::node();
        o.vsctl(&["--no-wait", "init"])?;
        o.vsctl(&[
            "--no-wait",
            "set",
            "Open_vSwitch",
            ".",
            "other_config:dpdk-init=true",
            "other_config:dpdk-lcore-mask=0x1",
            &format!("other_config:pmd-cpu-mask={:#x}", 1u64 << pmd_cpu),
            "other_config:dpdk-socket-mem=512",
            "other_config:dpdk-socket-limit=512",
            &format!("other_config:dpdk-extra=--no-pci --file-prefix=ovs-{tag} --huge-unlink --no-telemetry"),
        ])?;
        // Each port's type and its options: a DPDK port's devargs, a vhost-user client's server path.
        let [up_port, pod_port] = match ports {
            OvsPorts::Memif => [0, 1].map(|i| {
                let dev = format!("net_memif{i},role=server,socket={},socket-abstract=no", sock(["up", "pod"][i]));
                ["type=dpdk".to_string(), format!("options:dpdk-devargs={dev}")]
            }),
            OvsPorts::Vhost => [0, 1].map(|i| {
                let path = dir.join(VHOST_SOCKETS[i]);
                ["type=dpdkvhostuserclient".to_string(), format!("options:vhost-server-path={}", path.display())]
            }),
            OvsPorts::Devargs(devs) => devs.map(|dev| ["type=dpdk".to_string(), format!("options:dpdk-devargs={dev}")]),
        };
        // The benchmark underlay's MTU, so full-size pod frames fit once encapsulated (as for weft).
        let mtu = format!("mtu_request={}", node.underlay_mtu);
        let add_port = |bridge: &str, port: &str, [kind, options]: &[String; 2]| {
            let mut args = vec!["--no-wait", "add-port", bridge, port, "--", "set", "Interface", port, kind];
            args.extend([options.as_str(), mtu.as_str()].into_iter().filter(|a| !a.is_empty()));
            o.vsctl(&args)
        };
        o.vsctl(&["--no-wait", "add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev"])?;
        o.vsctl(&["--no-wait", "set", "bridge", "br-phy", &format!("other-config:hwaddr={}", frames::UPLINK_MAC)])?;
        add_port("br-phy", "up", &up_port)?;
        o.vsctl(&["--no-wait", "add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev"])?;
        add_port("br-int", "pod", &pod_port)?;
        o.vsctl(&[
            "--no-wait",
            "add-port",
            "br-int",
            "vxlan0",
            "--",
            "set",
            "Interface",
            "vxlan0",
            "type=vxlan",
            "options:remote_ip=flow",
            &format!("options:key={}", node.vni.get()),
            &format!("options:dst_port={}", node.vxlan_port),
            &format!("options:local_ip={}", node.public_ip),
        ])?;
        // flannel's behaviour as OpenFlow: the kernel node routes pod traffic through flannel.1 (TTL - 1,
        // MACs rewritten), one rule per local pod and one per remote subnet.
        let mut flows = String::from("table=0,priority=0,actions=drop\n");
        let vtep = node.vtep_mac;
        for p in frames::inputs(0, 0).pods {
            let _ = writeln!(
                flows,
                "table=0,priority=10,in_port=vxlan0,ip,dl_dst={vtep},nw_dst={},actions=mod_dl_src:{vtep},mod_dl_dst:{},dec_ttl,output:pod",
                p.ip, p.mac
            );
        }
        for i in 0..peers {
            let p = frames::peer(i);
            let _ = writeln!(
                flows,
                "table=0,priority=10,in_port=pod,ip,nw_dst={},actions=set_field:{}->tun_dst,mod_dl_src:{vtep},mod_dl_dst:{},dec_ttl,output:vxlan0",
                p.subnet, p.public_ip, p.vtep_mac
            );
        }
        std::fs::write(dir.join("flows.txt"), flows)?;
        Ok(o)
    }

    fn env(&self) -> Vec<(&'static str, PathBuf)> {
        ["OVS_RUNDIR", "OVS_LOGDIR", "OVS_DBDIR", "OVS_SYSCONFDIR"].into_iter().map(|k| (k, self.dir.clone())).collect()
    }

    fn vsctl(&self, args: &[&str]) -> anyhow::Result<String> {
        run(Command::new("ovs-vsctl")
            .arg(format!("--db=unix:{}", self.dir.join("db.sock").display()))
            .arg("--timeout=60")
            .args(args)
            .envs(self.env()))
    }

    fn appctl(&self, args: &[&str]) -> anyhow::Result<String> {
        run(Command::new("ovs-appctl").arg("-t").arg(self.dir.join("ovs-vswitchd.ctl")).args(args).envs(self.env()))
    }

    /// Start ovs-vswitchd and bring the tunnel endpoint, its route and next hop, and the flows up.
    pub fn start(&mut self) -> anyhow::Result<()> {
        let node = frames::node();
        let log = std::fs::File::create(self.dir.join("ovs-vswitchd.out"))?;
        let ctl = self.dir.join("ovs-vswitchd.ctl");
        // A stopped ovs-vswitchd leaves its memif listening sockets behind; a server will not reuse them.
        for f in [ctl.clone(), self.dir.join("up.sock"), self.dir.join("pod.sock")] {
            let _ = std::fs::remove_file(f);
        }
        self.vswitchd = Some(
            Command::new("ip")
                .args(["netns", "exec", &self.ns, VSWITCHD])
                .arg(format!("unix:{}", self.dir.join("db.sock").display()))
                .arg(format!("--unixctl={}", ctl.display()))
                .arg(format!("--log-file={}", self.dir.join("ovs-vswitchd.log").display()))
                .envs(self.env())
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting ovs-vswitchd-dpdk")?,
        );
        let t = Instant::now();
        let mgmt = format!("unix:{}", self.dir.join("br-int.mgmt").display());
        // The flows name the ports, which ovs-vswitchd adds after it opens the bridge.
        while !run(Command::new("ovs-ofctl").args(["show", &mgmt]))
            .map(|s| s.contains("(pod)") && s.contains("(vxlan0)"))
            .unwrap_or(false)
        {
            if t.elapsed() > Duration::from_secs(60) {
                let log = std::fs::read_to_string(self.dir.join("ovs-vswitchd.log")).unwrap_or_default();
                bail!("ovs-vswitchd did not bring its ports up in 60 s:\n{log}");
            }
            if let Some(Ok(Some(st))) = self.vswitchd.as_mut().map(|c| c.try_wait()) {
                let log = std::fs::read_to_string(self.dir.join("ovs-vswitchd.log")).unwrap_or_default();
                bail!("ovs-vswitchd exited ({st}):\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let ul = node.underlay_net.prefix_len();
        run(Command::new("ip").args(["netns", "exec", &self.ns, "sh", "-ec"]).arg(format!(
            "ip link set br-phy up
             ip addr replace {}/{ul} dev br-phy
             ip link set br-int up",
            node.public_ip
        )))?;
        // The peers (172.16.0.2 + i) through the one next hop; a /14 beats the connected /12.
        let t = Instant::now();
        loop {
            match self.appctl(&["ovs/route/add", "172.16.0.0/14", "br-phy", NEXT_HOP_IP]) {
                Ok(_) => break,
                // The route table learns br-phy's address asynchronously.
                Err(e) if t.elapsed() > Duration::from_secs(10) => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        self.appctl(&["tnl/neigh/set", "br-phy", NEXT_HOP_IP, &frames::NEXT_HOP_MAC.to_string()])?;
        run(Command::new("ovs-ofctl").args(["--bundle", "replace-flows", &mgmt]).arg(self.dir.join("flows.txt")))?;
        Ok(())
    }

    /// Packets the two DPDK ports sent, together: what OVS forwarded. Read live from ovs-vswitchd
    /// (`ovs-ofctl dump-ports`); the database's statistics column lags by its 5 s update interval.
    pub fn tx_packets(&self) -> anyhow::Result<u64> {
        let mut sum = 0;
        for (bridge, port) in [("br-phy", "up"), ("br-int", "pod")] {
            let mgmt = format!("unix:{}", self.dir.join(format!("{bridge}.mgmt")).display());
            let out = run(Command::new("ovs-ofctl").args(["dump-ports", &mgmt, port]))?;
            sum += tx_pkts(&out).with_context(|| format!("no tx pkts for {port} in: {out}"))?;
        }
        Ok(sum)
    }

    /// The datapath flows (for a failure report).
    pub fn datapath_flows(&self) -> String {
        self.appctl(&["dpctl/dump-flows"]).unwrap_or_else(|e| e.to_string())
    }

    /// OVS's statistics of a port, as ovs-vsctl prints them.
    pub fn port_stats(&self, port: &str) -> String {
        self.vsctl(&["get", "Interface", port, "statistics"]).unwrap_or_default()
    }

    pub fn stop(&mut self) {
        stop(&mut self.vswitchd);
    }

    /// ovs-vswitchd's log (for a failure report).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("ovs-vswitchd.log")).unwrap_or_default()
    }
}

/// The `tx pkts=N` of an `ovs-ofctl dump-ports` reply for one port.
fn tx_pkts(reply: &str) -> Option<u64> {
    let rest = &reply[reply.find("tx pkts=")? + "tx pkts=".len()..];
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

impl Drop for OvsSwitch {
    fn drop(&mut self) {
        stop(&mut self.vswitchd);
        stop(&mut self.ovsdb);
        if !self.ns.is_empty() {
            let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::tx_pkts;

    #[test]
    fn parse_dump_ports_tx() {
        let reply = "OFPST_PORT reply (xid=0x2): 1 ports
  port  up: rx pkts=12, bytes=768, drop=0, errs=0, frame=?, over=?, crc=?
           tx pkts=4242, bytes=474, drop=0, errs=0, coll=?
           duration=5.1s
";
        assert_eq!(tx_pkts(reply), Some(4242));
        assert_eq!(tx_pkts("port up: rx pkts=1"), None);
    }
}
