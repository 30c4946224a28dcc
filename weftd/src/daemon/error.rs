//! The daemon library's errors as values: what failed, on which object, and DPDK's or the OS's words
//! for why (`anyhow` is only in the binaries). Every message names the setting or object involved, since
//! it reaches a person through the log, `weftctl` or the exit message unchanged. The cause is part of
//! the message rather than a `source` chain, so each error prints once whoever formats it.

use std::net::Ipv4Addr;

use dataplane::dpdk::{DpdkError, LaunchError, PortId};
use weft_config::node::SettingError;
use weft_config::Ipv4Net;

/// Why weftd could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting that cannot work on this machine, found at start.
    #[error("{field}: {reason}")]
    Setting { field: &'static str, reason: String },
    #[error("{what}: {cause}")]
    Io { what: String, cause: std::io::Error },
    #[error("{what}: {cause}")]
    Dpdk { what: String, cause: DpdkError },
    #[error("starting a worker: {0}")]
    Launch(#[from] LaunchError),
}

impl Error {
    /// For `map_err`: an I/O error while doing `what`.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |cause| Error::Io { what, cause }
    }

    /// For `map_err`: a DPDK call that failed while doing `what`.
    pub fn dpdk(what: impl Into<String>) -> impl FnOnce(DpdkError) -> Error {
        let what = what.into();
        move |cause| Error::Dpdk { what, cause }
    }
}

/// Why a pod was not added, deleted or restored.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error(transparent)]
    Spec(#[from] SettingError),
    #[error("pod {0:?} exists already")]
    Exists(String),
    #[error("no pod named {0:?}")]
    NoSuchPod(String),
    #[error("no pod for container {container_id} interface {ifname}")]
    NoSuchContainer { container_id: String, ifname: String },
    #[error("kind veth: the pod rides the host port, which is off (host_iface \"\"): set host_iface, or use kind tap")]
    VethNeedsHostPort,
    #[error("kind veth: a veth pod needs a network namespace (netns)")]
    VethNeedsNetns,
    #[error("a pod needs a name, or a container id (weft then names it)")]
    NoName,
    #[error("ip: an address reserved by the caller's IPAM must be given (ip_reserved without ip)")]
    ReservedWithoutIp,
    #[error("pod {name:?} is not restored yet: {why}")]
    NotRestored { name: String, why: String },
    #[error("pod {name:?} is not as it was attached: {why}")]
    Broken { name: String, why: String },
    #[error("ip: {ip} is not a pod address of this node's subnet {subnet} (not the network, gateway or broadcast)")]
    NotPodAddress { ip: Ipv4Addr, subnet: Ipv4Net },
    #[error("ip: {0} is already used by another pod")]
    AddressInUse(Ipv4Addr),
    #[error("no free address left in {0}")]
    SubnetFull(Ipv4Net),
    #[error(
        "DPDK gave the pod port id {port} but the workers hold {max} ports: this node has as many pods as it can take"
    )]
    NoPortSlot { port: u16, max: usize },
    #[error("{what}: {cause}")]
    Dpdk { what: String, cause: DpdkError },
    #[error("{what}: {cause}")]
    Io { what: String, cause: std::io::Error },
    #[error("setting up {iface} in netns {netns}: {reason}")]
    Netns { iface: String, netns: String, reason: String },
    #[error("this node holds its max_vhost_pods ({0}) vhost pods already: raise max_vhost_pods")]
    VhostFull(usize),
    #[error("worker {0} is gone")]
    WorkerGone(usize),
    #[error("pod {name:?} is out of the tables and the state file, but a worker did not release port {port} within 5 s; the port is closed when it does (at the latest at shutdown)")]
    DetachTimeout { name: String, port: PortId },
}

/// Why a debugging verb was refused.
#[derive(Debug, thiserror::Error)]
pub enum DebugError {
    #[error("debugging verbs are off: start weftd with --debug-api to use them")]
    Off,
    #[error("no worker {worker}: there are {count}")]
    NoWorker { worker: usize, count: usize },
    #[error("a pause is under way; one at a time")]
    PauseUnderWay,
    #[error("worker {0} is busy or gone")]
    WorkerBusy(usize),
}

/// Why the pod state file is not in use, as `weftctl status`, `/readyz` and `/metrics` report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateProblem {
    /// The file could not be read or did not parse (and was moved aside): its pods were not restored.
    Unreadable(String),
    /// The last write failed: a restart would not see the newest pods. Cleared by the next good write.
    Unwritable(String),
}

impl std::fmt::Display for StateProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateProblem::Unreadable(m) | StateProblem::Unwritable(m) => f.write_str(m),
        }
    }
}
