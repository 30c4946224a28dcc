//! weftd's control API: one JSON request per line on a unix socket, one JSON response line back.
//! `weftctl` is its client. Only root (or the group given by `--api-group`) may connect; the debugging
//! verbs answer only with `--debug-api`.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use weft_config::node::PodSpec;

use super::error::{DebugError, Error, PodError};
use super::mgmt::{ApiAccess, ApiServer, Mgmt};
use super::Shared;
use dataplane::packet::DropReason;

/// A request to weftd.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Attach a pod. Keyed by `name`, or by `container_id` and `ifname` (CNI) when `name` is empty.
    PodAdd {
        #[serde(default)]
        name: String,
        kind: String,
        ip: Option<String>,
        /// A namespace name under /run/netns, or a path.
        netns: Option<String>,
        #[serde(default)]
        vhost_client: bool,
        #[serde(default)]
        ifname: Option<String>,
        #[serde(default)]
        container_id: Option<String>,
        /// `ip` was reserved by the caller's IPAM: weftd neither reserves nor releases it.
        #[serde(default)]
        ip_reserved: bool,
        /// Routes in the pod's namespace: `dst` or `dst via gw`; the default route when empty.
        #[serde(default)]
        routes: Vec<String>,
    },
    /// Detach a pod by name, or a container's interface (`name` empty). A container's interface that
    /// is not attached is no error (CNI's DEL is idempotent): the result is null.
    PodDel {
        #[serde(default)]
        name: String,
        #[serde(default)]
        container_id: Option<String>,
        #[serde(default)]
        ifname: Option<String>,
    },
    /// CNI's CHECK for a container's interface.
    PodCheck {
        container_id: String,
        ifname: String,
    },
    PodList,
    Status,
    /// Every peer: lease, next hop, path and frames sent to it.
    Peers,
    /// Trace the next `count` packets the workers handle (waiting up to `seconds`, default 10).
    Trace {
        count: usize,
        #[serde(default)]
        seconds: Option<u64>,
    },
    /// Pause one worker (debugging aid; tests use it to see /healthz turn 503).
    DebugPauseWorker {
        worker: usize,
        seconds: u64,
    },
}

/// The longest pause the debugging verb grants.
pub const MAX_PAUSE: Duration = Duration::from_secs(10);

/// Make the API socket at `path`, for root and `group`; it answers once [`serve`]d.
pub(super) fn bind(mgmt: &Mgmt, path: &Path, group: Option<u32>) -> Result<ApiServer, Error> {
    ApiServer::bind(mgmt, path, ApiAccess { group })
        .map_err(Error::io(format!("api_socket {}: cannot listen", path.display())))
}

/// Answer the API on `server` (see [`super::mgmt`] for what a client may cost).
pub(super) fn serve(shared: Arc<Shared>, mgmt: &Mgmt, server: ApiServer) -> ApiServer {
    let handler = Arc::new(move |line: &str| {
        let resp = match serde_json::from_str::<Request>(line) {
            Ok(req) => handle(&shared, req),
            Err(e) => json!({"ok": false, "error": format!("bad request: {e}")}),
        };
        resp.to_string()
    });
    server.serve(mgmt, handler)
}

/// Pause a worker, if the debugging verbs are on and no pause is under way.
fn pause(shared: &Shared, worker: usize, seconds: u64) -> Result<Value, DebugError> {
    if !shared.settings.debug_api {
        return Err(DebugError::Off);
    }
    let w = shared.workers.get(worker).ok_or(DebugError::NoWorker { worker, count: shared.workers.len() })?;
    let d = Duration::from_secs(seconds).min(MAX_PAUSE);
    let mut until = super::lock(&shared.paused_until);
    let now = std::time::Instant::now();
    if until.is_some_and(|t| t > now) {
        return Err(DebugError::PauseUnderWay);
    }
    w.try_send(dataplane::worker::WorkerCommand::Pause(d)).map_err(|_| DebugError::WorkerBusy(worker))?;
    *until = Some(now + d);
    Ok(json!({"paused": worker, "seconds": d.as_secs()}))
}

fn handle(shared: &Shared, req: Request) -> Value {
    let r: Result<Value, String> = match req {
        Request::PodAdd { name, kind, ip, netns, vhost_client, ifname, container_id, ip_reserved, routes } => {
            PodSpec::parse(&name, &kind, ip.as_deref(), netns.as_deref())
                .and_then(|spec| spec.for_container(container_id.as_deref(), ifname.as_deref()))
                .and_then(|spec| {
                    Ok(PodSpec {
                        vhost_client,
                        ip_reserved,
                        routes: routes.iter().map(|r| r.parse()).collect::<Result<_, _>>()?,
                        ..spec
                    })
                })
                .map_err(PodError::from)
                .and_then(|spec| shared.pods.add(spec))
                .map(|info| json!(info))
                .map_err(|e| e.to_string())
        }
        Request::PodDel { name, container_id: Some(cid), ifname } if name.is_empty() => shared
            .pods
            .del_container(&cid, ifname.as_deref().unwrap_or("eth0"))
            .map(|info| json!(info))
            .map_err(|e| e.to_string()),
        Request::PodDel { name, .. } => shared.pods.del(&name).map(|info| json!(info)).map_err(|e| e.to_string()),
        Request::PodCheck { container_id, ifname } => {
            shared.pods.check(&container_id, &ifname).map(|info| json!(info)).map_err(|e| e.to_string())
        }
        Request::PodList => Ok(json!(shared.pods.list())),
        Request::Status => Ok(status(shared)),
        Request::Peers => Ok(super::trace::peers(shared)),
        Request::Trace { count, seconds } => {
            super::trace::trace(shared, count, seconds.map(Duration::from_secs).unwrap_or(super::trace::DEFAULT_WAIT))
        }
        Request::DebugPauseWorker { worker, seconds } => pause(shared, worker, seconds).map_err(|e| e.to_string()),
    };
    match r {
        Ok(v) => json!({"ok": true, "result": v}),
        Err(e) => json!({"ok": false, "error": e}),
    }
}

fn status(shared: &Shared) -> Value {
    let snap = shared.tables.snapshot();
    let reading = super::stats::read(shared);
    let ports: Vec<Value> = reading
        .ports
        .iter()
        .map(|p| {
            let t = p.total();
            json!({
                "port_id": p.id.0, "name": p.name, "kind": p.kind,
                "rx_packets": t.rx_packets, "rx_bytes": t.rx_bytes,
                "tx_packets": t.tx_packets, "tx_bytes": t.tx_bytes,
            })
        })
        .collect();
    let drops: serde_json::Map<String, Value> = DropReason::ALL
        .iter()
        .map(|r| (r.label().to_string(), json!(reading.drops(*r))))
        .filter(|(_, v)| v.as_u64() != Some(0))
        .collect();
    let workers: Vec<Value> = reading
        .workers
        .iter()
        .enumerate()
        .map(|(i, w)| {
            json!({
                "id": i,
                "loops": w.loops,
                "generation": w.generation,
                "rx_packets": w.rx_packets,
                "tx_packets": w.tx_packets,
                "dropped": w.drops.iter().sum::<u64>(),
                "busy_cycles": w.busy_cycles,
                "idle_cycles": w.idle_cycles,
                "busy_percent": (w.busy_percent() * 10.0).round() / 10.0,
                "cycles_per_packet": w.cycles_per_packet().map(|c| c.round()),
                "packets_per_busy_loop": w.packets_per_busy_loop().map(|p| (p * 10.0).round() / 10.0),
            })
        })
        .collect();
    json!({
        "node": {
            "subnet": shared.node.subnet.to_string(),
            "public_ip": shared.node.public_ip.to_string(),
            "vtep_mac": shared.node.vtep_mac.to_string(),
            "uplink_mac": shared.node.uplink_mac.to_string(),
            "pod_mtu": shared.node.pod_mtu(),
            "backend": shared.node.backend.name(),
            "direct_routing": shared.node.direct_routing,
            // The CPUs that take the kernel's work for what weft writes to its tap ports (their RPS).
            "kernel_cpus": shared.pods.steering().map(|s| s.cpus.clone()),
        },
        "tables": {
            "generation": snap.generation,
            "peers": snap.vteps.len(),
            "pods": snap.pods.len(),
            "unresolved_next_hops": snap.unresolved.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
            "paths": snap.vteps.iter().map(|v| json!({
                "subnet": v.peer.subnet.to_string(),
                "public_ip": v.peer.public_ip.to_string(),
                "next_hop": v.next_hop.to_string(),
                "path": v.path.name(),
            })).collect::<Vec<_>>(),
        },
        "ports": ports,
        "workers": workers,
        "drops": drops,
        "mempool": {"in_use": shared.pool.in_use(), "available": shared.pool.available()},
        "etcd": shared.etcd_status.as_ref().map(|e| json!({
            "connected": e.connected.load(Ordering::Relaxed),
            "revision": e.revision.load(Ordering::Relaxed),
            "resyncs": e.resyncs.load(Ordering::Relaxed),
            "bad_values": e.bad_values.load(Ordering::Relaxed),
            "lease_expiry_unix": e.lease_expiry.load(Ordering::Relaxed),
            "reacquired": e.reacquired.load(Ordering::Relaxed),
            "conflicts": e.conflicts.load(Ordering::Relaxed),
            "network_config_changed": e.config_changed.load(Ordering::Relaxed),
            "claimed_by": Some(e.claimed_by.load(Ordering::Relaxed)).filter(|ip| *ip != 0).map(|ip| std::net::Ipv4Addr::from(ip).to_string()),
            "rpc_retries": e.rpc_retries.load(Ordering::Relaxed),
            "rpc_failures": e.rpc_failures.load(Ordering::Relaxed),
            "failovers": e.failovers.load(Ordering::Relaxed),
            "last_error": Some(e.last_error()).filter(|s| !s.is_empty()),
        })),
        "state": {
            "pods_file_problem": shared.pods.state_problem().map(|p| p.to_string()),
            "pods_not_restored": shared.pods.pending(),
        },
    })
}
