//! weftd: a flannel VXLAN node whose dataplane runs on DPDK.
//!
//! Settings come from `--config FILE` (TOML) and flags; a flag overrides the file key of the same name.

use std::path::PathBuf;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser};
use weft_config::node::{NodeFile, PeerFile};
use weft_control::etcd::{EtcdConfig, Identity};
use weftd::daemon::{load_or_create_vtep_mac, EtcdMode};

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
    /// A group (name or id) whose members may use the API socket besides root.
    #[arg(long)]
    api_group: Option<String>,
    /// Allow the API's debugging verbs (pausing a worker).
    #[arg(long)]
    debug_api: bool,
    /// Directory for pods' vhost-user sockets. Default /run/weft-vhost.
    #[arg(long)]
    vhost_dir: Option<PathBuf>,
    /// Never sleep when idle (benchmarks, dedicated cores).
    #[arg(long)]
    busy_poll: bool,
    /// Mbufs in the pool. Default 16383.
    #[arg(long)]
    mbufs: Option<u32>,
    /// Where /metrics, /healthz and /readyz are served. Default 127.0.0.1:9109.
    #[arg(long)]
    metrics_addr: Option<String>,
    /// Static peer SUBNET,PUBLIC_IP,VTEP_MAC (repeatable; static mode only).
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// etcd mode (no --subnet): comma list of etcd URLs. Default http://127.0.0.1:2379.
    #[arg(long)]
    etcd_endpoints: Option<String>,
    /// etcd key prefix. Default /coreos.com/network.
    #[arg(long)]
    etcd_prefix: Option<String>,
    #[arg(long)]
    etcd_cafile: Option<PathBuf>,
    #[arg(long)]
    etcd_certfile: Option<PathBuf>,
    #[arg(long)]
    etcd_keyfile: Option<PathBuf>,
    #[arg(long)]
    etcd_username: Option<String>,
    /// etcd password; better from a file (--etcd-password-file) or the environment
    /// (WEFTD_ETCD_PASSWORD or FLANNELD_ETCD_PASSWORD), which `ps` does not show.
    #[arg(long)]
    etcd_password: Option<String>,
    /// A file holding the etcd password.
    #[arg(long)]
    etcd_password_file: Option<PathBuf>,
    /// flannel's subnet file. Default /run/flannel/subnet.env.
    #[arg(long)]
    subnet_file: Option<PathBuf>,
    /// Minutes before expiry to renew the lease. Default 60.
    #[arg(long)]
    subnet_lease_renew_margin: Option<u64>,
    /// Written to the subnet file as FLANNEL_IPMASQ (weft does no masquerading itself).
    #[arg(long)]
    ip_masq: bool,
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
        mbufs,
        metrics_addr
    );
    over!(
        etcd_endpoints,
        etcd_prefix,
        etcd_cafile,
        etcd_certfile,
        etcd_keyfile,
        etcd_username,
        etcd_password,
        etcd_password_file,
        vhost_dir,
        subnet_file,
        subnet_lease_renew_margin
    );
    if cli.ip_masq {
        f.ip_masq = Some(true);
    }
    if !cli.eal_args.is_empty() {
        f.eal_args = Some(cli.eal_args.clone());
    }
    if cli.busy_poll {
        f.busy_poll = Some(true);
    }
    if cli.debug_api {
        f.debug_api = Some(true);
    }
    if let Some(g) = &cli.api_group {
        f.api_group = Some(group_id(g)?);
    }
    if f.etcd_password.is_none() && f.etcd_password_file.is_none() {
        f.etcd_password = ["WEFTD_ETCD_PASSWORD", "FLANNELD_ETCD_PASSWORD"].iter().find_map(|v| std::env::var(v).ok());
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

/// A group by name (from /etc/group) or number.
fn group_id(g: &str) -> anyhow::Result<u32> {
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
        .ok_or_else(|| anyhow::anyhow!("api_group: no group {g:?} in /etc/group: give a group name or id"))
}

/// etcd mode: take a lease in flannel's schema first; the dataplane starts on the subnet it gives.
fn join_etcd(f: &mut NodeFile, stop: &AtomicBool) -> anyhow::Result<EtcdMode> {
    let e = f.etcd().map_err(|e| anyhow::anyhow!("{e}"))?;
    let public_ip = f.public_ip().map_err(|e| anyhow::anyhow!("{e}"))?;
    let state_dir = f.state_dir.clone().unwrap_or_else(|| PathBuf::from("/var/lib/weft"));
    let vtep_mac = load_or_create_vtep_mac(f.vtep_mac().map_err(|e| anyhow::anyhow!("{e}"))?, &state_dir)?;
    f.vtep_mac = Some(vtep_mac.to_string());
    let control = weft_control::etcd::start(
        EtcdConfig {
            endpoints: e.endpoints.clone(),
            prefix: e.prefix.clone(),
            cafile: e.cafile,
            certfile: e.certfile,
            keyfile: e.keyfile,
            username: e.username,
            password: e.password,
        },
        Identity {
            public_ip,
            vtep_mac,
            underlay_mtu: f.underlay_mtu.unwrap_or(1500),
            subnet_file: e.subnet_file,
            ipmasq: e.ip_masq,
            lease_ttl: Duration::from_secs(24 * 3600),
            renew_margin: Duration::from_secs(e.renew_margin_minutes * 60),
        },
    );
    tracing::info!(endpoints = %e.endpoints.join(","), prefix = %e.prefix, "taking a lease from etcd");
    loop {
        if stop.load(Ordering::Relaxed) {
            anyhow::bail!("stopped before etcd gave a lease");
        }
        match control.wait_acquired(Duration::from_secs(1)) {
            Ok((network, subnet, peers)) => {
                f.apply_lease(&network, subnet);
                return Ok(EtcdMode { control, peers });
            }
            Err(weft_control::etcd::AcquireError::NotYet(_)) => continue,
            Err(e) => anyhow::bail!("etcd: {e}"),
        }
    }
}

fn start(matches: clap::ArgMatches) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    let mut f = merge(Cli::from_arg_matches(&matches)?)?;
    let etcd = if f.is_static() {
        if f.etcd_endpoints.is_some() {
            anyhow::bail!("subnet: static mode (subnet given) and etcd_endpoints exclude each other; drop one");
        }
        None
    } else {
        Some(join_etcd(&mut f, &stop)?)
    };
    let settings = f.resolve().map_err(|e| anyhow::anyhow!("{e}"))?;
    weftd::daemon::run(settings, etcd, stop)
}

/// Logs: one line per event with key=value fields, levels under RUST_LOG (default `info`; the etcd
/// client's libraries, tonic and h2, only from `warn` unless RUST_LOG names them).
fn init_logs() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,h2=warn,tonic=warn,hyper=warn,tower=warn,rustls=warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(false).init();
}

fn main() {
    init_logs();
    let matches = Cli::command().version(version().leak() as &str).get_matches();
    let result = start(matches);
    if let Err(e) = result {
        eprintln!("weftd: {e:#}");
        std::process::exit(1);
    }
}
