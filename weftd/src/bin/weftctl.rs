//! weftctl: talks to a running weftd over its unix socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use weftd::daemon::api::Request;

#[derive(Debug, Parser)]
#[command(name = "weftctl", version, about = "Control a running weftd")]
struct Cli {
    /// weftd's API socket.
    #[arg(long, default_value = "/run/weft/weftd.sock")]
    api_socket: PathBuf,
    /// Seconds to wait for weftd's answer.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Pods attached to this node.
    Pod {
        #[command(subcommand)]
        cmd: PodCmd,
    },
    /// Ports, workers, table sizes and counters.
    Status,
    /// Every peer: subnet, PublicIP, VtepMAC, next hop and its MAC, path, frames sent to it.
    Peers,
    /// The next N packets the workers handle: headers received, table entry hit, verdict (the drop
    /// reason), headers sent; as VPP's `trace add` and `show trace`.
    Trace {
        /// How many packets (at most 1024).
        count: usize,
        /// Wait at most this long for them (at most 20).
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Debugging aids.
    Debug {
        #[command(subcommand)]
        cmd: DebugCmd,
    },
}

#[derive(Debug, Subcommand)]
enum DebugCmd {
    /// Make a worker stop polling for a while (its health turns bad after 2 s).
    PauseWorker {
        worker: usize,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
}

#[derive(Debug, Subcommand)]
enum PodCmd {
    /// Attach a pod; prints its name, kind, ip, prefix_len, gateway, mac, mtu and iface or socket.
    Add {
        /// weft's name for the pod (1-12 characters); may be left out with --container-id.
        #[arg(required_unless_present = "container_id")]
        name: Option<String>,
        /// veth: a kernel pod routed through the host port; tap: a kernel pod on a weft port of its own
        /// (a veth pair whose host end weft holds); vhost: a vhost-user socket for a DPDK pod or a VM.
        #[arg(long, value_parser = ["tap", "vhost", "veth"])]
        kind: String,
        /// Address in this node's subnet; default the next free one.
        #[arg(long)]
        ip: Option<String>,
        /// Network namespace to move a kernel pod's interface into and configure: a name under /run/netns
        /// or a path (/run/netns/NAME, /proc/PID/ns/net).
        #[arg(long)]
        netns: Option<String>,
        /// The interface's name in the namespace (default wt-NAME; eth0 with --container-id).
        #[arg(long)]
        ifname: Option<String>,
        /// Key the pod by this container id (and --ifname), as the CNI plugin does.
        #[arg(long)]
        container_id: Option<String>,
        /// vhost: weft connects as the vhost-user client (the pod runs virtio-user with server=1 and
        /// owns the socket), so the connection comes back after either side restarts.
        #[arg(long)]
        vhost_client: bool,
    },
    /// Detach a pod and free its address: by name, or by --container-id (and --ifname).
    Del {
        #[arg(required_unless_present = "container_id")]
        name: Option<String>,
        #[arg(long)]
        container_id: Option<String>,
        #[arg(long, requires = "container_id")]
        ifname: Option<String>,
    },
    /// List pods.
    List,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("weftctl: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let req = match cli.cmd {
        Cmd::Pod { cmd: PodCmd::Add { name, kind, ip, netns, ifname, container_id, vhost_client } } => {
            Request::PodAdd {
                name: name.unwrap_or_default(),
                kind,
                ip,
                netns,
                vhost_client,
                ifname,
                container_id,
                ip_reserved: false,
                routes: Vec::new(),
            }
        }
        Cmd::Pod { cmd: PodCmd::Del { name, container_id, ifname } } => {
            Request::PodDel { name: name.unwrap_or_default(), container_id, ifname }
        }
        Cmd::Pod { cmd: PodCmd::List } => Request::PodList,
        Cmd::Status => Request::Status,
        Cmd::Peers => Request::Peers,
        Cmd::Trace { count, seconds } => Request::Trace { count, seconds: Some(seconds) },
        Cmd::Debug { cmd: DebugCmd::PauseWorker { worker, seconds } } => Request::DebugPauseWorker { worker, seconds },
    };
    let mut s = UnixStream::connect(&cli.api_socket).with_context(|| {
        format!("connecting to weftd at {} (is it running? --api-socket)", cli.api_socket.display())
    })?;
    let timeout = Some(std::time::Duration::from_secs(cli.timeout.max(1)));
    s.set_read_timeout(timeout)?;
    s.set_write_timeout(timeout)?;
    writeln!(s, "{}", serde_json::to_string(&req)?)?;
    let mut line = String::new();
    BufReader::new(&s)
        .read_line(&mut line)
        .with_context(|| format!("no answer from weftd within {} s (--timeout)", cli.timeout))?;
    let resp: serde_json::Value = serde_json::from_str(&line).context("weftd's answer is not JSON")?;
    if resp["ok"].as_bool() == Some(true) {
        println!("{}", serde_json::to_string_pretty(&resp["result"])?);
        Ok(())
    } else {
        anyhow::bail!("{}", resp["error"].as_str().unwrap_or("weftd refused"))
    }
}
