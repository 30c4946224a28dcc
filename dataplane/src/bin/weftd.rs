//! weftd: a flannel VXLAN node whose dataplane runs on DPDK.
//!
//! Settings come from `--config FILE` (TOML) and flags; a flag overrides the file key of the same name.

use std::path::PathBuf;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser};
use weft_config::node::{NodeFile, PeerFile};

#[derive(Debug, Parser)]
#[command(name = "weftd", about = "flannel-compatible VXLAN dataplane on DPDK")]
struct Cli {
    /// TOML config file (keys as the flags, with '_' for '-').
    #[arg(long)]
    config: Option<PathBuf>,
    /// Cluster network (flannel's Network), e.g. 10.244.0.0/16.
    #[arg(long)]
    network: Option<String>,
    /// Subnet length (flannel's SubnetLen); default: the subnet's prefix length.
    #[arg(long)]
    subnet_len: Option<u8>,
    /// VXLAN network identifier (flannel's Backend.VNI), default 1.
    #[arg(long)]
    vni: Option<u32>,
    /// VXLAN UDP port (flannel's Backend.Port), default 8472.
    #[arg(long)]
    vxlan_port: Option<u16>,
    /// This node's subnet, e.g. 10.244.1.0/24.
    #[arg(long)]
    subnet: Option<String>,
    /// This node's underlay address (flannel's --public-ip).
    #[arg(long)]
    public_ip: Option<String>,
    /// The uplink as DPDK devargs (net_af_packet0,iface=eth1) or a PCI address.
    #[arg(long)]
    uplink: Option<String>,
    /// Underlay MTU; pods get this minus 50. Default 1500.
    #[arg(long)]
    underlay_mtu: Option<u16>,
    /// Prefix length of the underlay network around public_ip (on-link peers). Default 24.
    #[arg(long)]
    underlay_prefix_len: Option<u8>,
    /// Underlay gateway for peers outside the underlay prefix.
    #[arg(long)]
    underlay_gateway: Option<String>,
    /// This node's VtepMAC; default: generated once and kept in state_dir.
    #[arg(long)]
    vtep_mac: Option<String>,
    /// Where weftd keeps state across restarts (VtepMAC). Default /var/lib/weft.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Poll-mode workers. Default 1.
    #[arg(long)]
    workers: Option<usize>,
    /// EAL lcore list; default 0-<workers> (main lcore 0, workers after it).
    #[arg(long)]
    lcores: Option<String>,
    /// Extra EAL argument (repeatable).
    #[arg(long = "eal-arg", allow_hyphen_values = true)]
    eal_args: Vec<String>,
    /// Unix socket for weftctl. Default /run/weft/weftd.sock.
    #[arg(long)]
    api_socket: Option<PathBuf>,
    /// Never sleep when idle (benchmarks, dedicated cores).
    #[arg(long)]
    busy_poll: bool,
    /// Mbufs in the pool. Default 16383.
    #[arg(long)]
    mbufs: Option<u32>,
    /// Static peer SUBNET,PUBLIC_IP,VTEP_MAC (repeatable).
    #[arg(long = "peer")]
    peers: Vec<String>,
}

fn version() -> String {
    format!("{} ({})", env!("CARGO_PKG_VERSION"), dataplane::dpdk::dpdk_version())
}

fn merge(cli: Cli) -> anyhow::Result<NodeFile> {
    let mut f = match &cli.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("--config {}: cannot read it", p.display()))?;
            NodeFile::from_toml(&text).map_err(|e| anyhow::anyhow!("--config {}: {e}", p.display()))?
        }
        None => NodeFile::default(),
    };
    macro_rules! over {
        ($($field:ident),*) => { $(if cli.$field.is_some() { f.$field = cli.$field.clone(); })* };
    }
    over!(
        network,
        subnet_len,
        vni,
        vxlan_port,
        subnet,
        public_ip,
        uplink,
        underlay_mtu,
        underlay_prefix_len,
        underlay_gateway,
        vtep_mac,
        state_dir,
        workers,
        lcores,
        api_socket,
        mbufs
    );
    if !cli.eal_args.is_empty() {
        f.eal_args = Some(cli.eal_args.clone());
    }
    if cli.busy_poll {
        f.busy_poll = Some(true);
    }
    for (i, p) in cli.peers.iter().enumerate() {
        let parts: Vec<&str> = p.split(',').collect();
        let [subnet, public_ip, vtep_mac] = parts[..] else {
            anyhow::bail!(
                "--peer #{}: {p:?} must be SUBNET,PUBLIC_IP,VTEP_MAC like 10.244.2.0/24,192.168.77.2,aa:c4:e1:93:50:bd",
                i + 1
            );
        };
        f.peers.push(PeerFile { subnet: subnet.into(), public_ip: public_ip.into(), vtep_mac: vtep_mac.into() });
    }
    Ok(f)
}

fn main() {
    let matches = Cli::command().version(version().leak() as &str).get_matches();
    let result = Cli::from_arg_matches(&matches)
        .map_err(anyhow::Error::from)
        .and_then(merge)
        .and_then(|f| f.resolve().map_err(|e| anyhow::anyhow!("{e}")))
        .and_then(dataplane::daemon::run);
    if let Err(e) = result {
        eprintln!("weftd: {e:#}");
        std::process::exit(1);
    }
}
