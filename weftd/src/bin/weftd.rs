//! weftd: a flannel node whose dataplane runs on DPDK.
//!
//! Settings come from `--config FILE` (TOML), the environment and flags: a flag wins over its variable
//! (`WEFTD_<FLAG>`, or flannel's `FLANNELD_<FLAG>` for the flags that carry flannel's names), which wins
//! over the file key of the same name.

use std::path::PathBuf;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches};
use weft_config::node::NodeFile;
use weft_control::etcd::{EtcdConfig, Identity};
use weftd::daemon::{load_or_create_vtep_mac, EtcdMode};

fn version() -> String {
    format!("{} ({})", env!("CARGO_PKG_VERSION"), dataplane::dpdk::dpdk_version())
}

/// The settings: the TOML file given by `--config`, with the flags laid over it (one struct for both,
/// `weft_config::node::NodeFile`), and the etcd password from the environment when no flag or key gives it.
fn settings(flags: NodeFile) -> anyhow::Result<NodeFile> {
    let file = match &flags.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("--config {}: cannot read it", p.display()))?;
            NodeFile::from_toml(&text).map_err(|e| anyhow::anyhow!("--config {}: {e}", p.display()))?
        }
        None => NodeFile::default(),
    };
    let mut f = file.overlay(flags).map_err(|e| anyhow::anyhow!("{e}"))?;
    if f.etcd_password.is_none() && f.etcd_password_file.is_none() {
        f.etcd_password = ["WEFTD_ETCD_PASSWORD", "FLANNELD_ETCD_PASSWORD"].iter().find_map(|v| std::env::var(v).ok());
    }
    Ok(f)
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
    let mut f = settings(NodeFile::from_arg_matches(&matches)?)?;
    let etcd = if f.is_static() {
        if f.etcd_endpoints.is_some() {
            anyhow::bail!("subnet: static mode (subnet given) and etcd_endpoints exclude each other; drop one");
        }
        None
    } else {
        Some(join_etcd(&mut f, &stop)?)
    };
    let settings = f.resolve().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(weftd::daemon::run(settings, etcd, stop)?)
}

/// Logs: one line per event with key=value fields, levels under RUST_LOG (default `info`; the etcd
/// client's libraries, tonic and h2, only from `warn` unless RUST_LOG names them).
fn init_logs() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,h2=warn,tonic=warn,hyper=warn,tower=warn,rustls=warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(false).init();
}

/// The flags that mean what flanneld's flags of the same name mean, so `FLANNELD_<FLAG>` sets them as it
/// sets flanneld's (flannel reads its flags from `FLANNELD_` variables).
const FLANNEL_FLAGS: &[&str] = &[
    "etcd-endpoints",
    "etcd-prefix",
    "etcd-cafile",
    "etcd-certfile",
    "etcd-keyfile",
    "etcd-username",
    "etcd-password",
    "public-ip",
    "subnet-file",
    "subnet-lease-renew-margin",
    "ip-masq",
    "healthz-ip",
    "healthz-port",
];

/// `--etcd-endpoints` -> `ETCD_ENDPOINTS`.
fn env_suffix(long: &str) -> String {
    long.to_ascii_uppercase().replace('-', "_")
}

/// Every flag also from the environment: `WEFTD_<FLAG>`, else (flannel's flags) `FLANNELD_<FLAG>`.
fn with_env(cmd: clap::Command) -> clap::Command {
    cmd.mut_args(|a| {
        let Some(long) = a.get_long().map(str::to_owned) else { return a };
        if long == "help" || long == "version" {
            return a;
        }
        let ours = format!("WEFTD_{}", env_suffix(&long));
        let flannel = format!("FLANNELD_{}", env_suffix(&long));
        if std::env::var_os(&ours).is_none()
            && FLANNEL_FLAGS.contains(&long.as_str())
            && std::env::var_os(&flannel).is_some()
        {
            a.env(flannel)
        } else {
            a.env(ours)
        }
    })
}

fn main() {
    // flanneld prints its bare version (`v0.26.1`) to stderr; scripts that check a node's flannel with
    // `flanneld --version` get weft's in the same form there, and weft's own line on stdout.
    if std::env::args().skip(1).any(|a| a == "--version" || a == "-V") {
        println!("weftd {}", version());
        eprintln!("v{}", env!("CARGO_PKG_VERSION"));
        return;
    }
    init_logs();
    let matches = with_env(NodeFile::command().version(version().leak() as &str)).get_matches();
    let result = start(matches);
    if let Err(e) = result {
        eprintln!("weftd: {e:#}");
        std::process::exit(1);
    }
}
