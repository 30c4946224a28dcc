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
        name: String,
        #[arg(long, value_parser = ["tap", "vhost"])]
        kind: String,
        /// Address in this node's subnet; default the next free one.
        #[arg(long)]
        ip: Option<String>,
        /// Network namespace to move a tap pod's interface into and configure.
        #[arg(long)]
        netns: Option<String>,
        /// vhost: weft connects as the vhost-user client (the pod runs virtio-user with server=1 and
        /// owns the socket), so the connection comes back after either side restarts.
        #[arg(long)]
        vhost_client: bool,
    },
    /// Detach a pod and free its address.
    Del { name: String },
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
        Cmd::Pod { cmd: PodCmd::Add { name, kind, ip, netns, vhost_client } } => {
            Request::PodAdd { name, kind, ip, netns, vhost_client }
        }
        Cmd::Pod { cmd: PodCmd::Del { name } } => Request::PodDel { name },
        Cmd::Pod { cmd: PodCmd::List } => Request::PodList,
        Cmd::Status => Request::Status,
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
