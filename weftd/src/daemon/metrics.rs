//! Prometheus `/metrics`, `/healthz` and `/readyz` on `--metrics-addr`, off the workers' threads.
//!
//! Workers never call into the exporter: they bump their own single-writer counters (see
//! [`dataplane::worker::WorkerCounters`]); a collector thread reads those with relaxed loads once a second and
//! on every scrape, and sets the `metrics` facade's values (counters as absolute values), which
//! `metrics-exporter-prometheus` renders. Names follow Prometheus conventions: `weft_` prefix, base
//! units, `_total` for counters.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrics::{counter, describe_counter, describe_gauge, gauge, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

use super::error::Error;
use super::mgmt::{serve_http, HttpAnswer, HttpHandler, HttpListener, Mgmt};
use super::{lock, Shared};
use dataplane::packet::DropReason;
use hyper::StatusCode;

/// A worker whose loop counter has not moved for this long is stalled.
/// With the health check collecting fresh at each request, a stall shows within 1 s (+ one request).
pub const STALL_AFTER: Duration = Duration::from_millis(1000);

struct Collector {
    /// (port, direction) -> (packets at the last tick, time): for the pps gauge.
    last_pps: HashMap<(u16, &'static str), (u64, Instant)>,
    /// worker -> (loops, when it last changed).
    progress: Vec<(u64, Instant)>,
}

fn describe() {
    describe_gauge!("weft_build_info", "weft's version and the DPDK it runs against (value 1)");
    describe_gauge!(
        "weft_host_port_info",
        "The host port's interface and its backend, virtio_user (vhost-net) or veth (af_packet on a veth pair) (value 1)"
    );
    describe_counter!("weft_port_packets_total", "Packets per port, queue (= worker) and direction");
    describe_counter!("weft_port_bytes_total", Unit::Bytes, "Bytes per port, queue (= worker) and direction");
    describe_gauge!(
        "weft_port_packets_per_second",
        "Packets per second per port and direction over the last second (for eyes; use rate() in queries)"
    );
    describe_counter!("weft_worker_packets_total", "Packets per worker and direction");
    describe_counter!("weft_drops_total", "Frames dropped, by worker and reason");
    describe_counter!(
        "weft_worker_cycles_total",
        "TSC cycles per worker in loops that found packets (state=busy) and that found none, sleeps included (state=idle)"
    );
    describe_counter!(
        "weft_worker_busy_loops_total",
        "Loops that found packets; rx packets / busy loops = packets per burst"
    );
    describe_gauge!("weft_tsc_hz", "TSC cycles per second (weft_worker_cycles_total / this = seconds)");
    describe_counter!("weft_tx_not_sent_total", "Frames a port's TX queue did not take (freed and counted)");
    describe_counter!(
        "weft_port_hw_rx_missed_total",
        "Frames the NIC dropped for lack of RX descriptors (PMD counter)"
    );
    describe_counter!("weft_port_hw_rx_nombuf_total", "RX mbuf allocation failures (PMD counter)");
    describe_counter!("weft_port_hw_rx_errors_total", "Erroneous frames received (PMD counter)");
    describe_counter!("weft_port_hw_tx_errors_total", "Failed transmissions (PMD counter)");
    describe_counter!(
        "weft_port_xstats_total",
        "The PMD's extended statistics by DPDK name (rx_good_packets, rx_missed_errors, the driver's own)"
    );
    describe_gauge!("weft_mempool_mbufs_in_use", "Mbufs allocated from weft's pool");
    describe_gauge!("weft_mempool_mbufs_available", "Mbufs free in weft's pool");
    describe_gauge!("weft_peers", "Remote VTEPs in the current table");
    describe_gauge!("weft_pods", "Pods attached to this node");
    describe_gauge!("weft_unresolved_next_hops", "Underlay next hops without a MAC yet");
    describe_gauge!(
        "weft_backend_info",
        "1, labelled with how the cluster crosses hosts (flannel's Backend.Type) and DirectRouting"
    );
    describe_gauge!("weft_peers_by_path", "Remote nodes by the path to them: vxlan, direct, udp, unresolved, off-link");
    describe_gauge!(
        "weft_network_config_changed",
        "1 when the network config in etcd differs from the one weftd started with (restart to apply)"
    );
    describe_gauge!("weft_table_generation", "Generation of the newest published table");
    describe_gauge!("weft_worker_up", "1 while the worker makes progress, 0 when stalled");
    describe_gauge!("weft_etcd_connected", "1 while the watch is live on an etcd member that has a leader");
    describe_counter!(
        "weft_etcd_rpc_retries_total",
        "etcd calls that failed on one member and were retried on another"
    );
    describe_counter!("weft_etcd_rpc_failures_total", "etcd calls that failed on every member");
    describe_counter!("weft_etcd_failovers_total", "Times weft moved to another etcd member");
    describe_gauge!("weft_state_file_problem", "1 when pods.json could not be read (moved aside) or written");
    describe_gauge!("weft_pods_not_restored", "Pods of the last run whose restore failed (retried)");
    describe_gauge!("weft_ready", "1 while /readyz says ready (lease held, workers forwarding, pods restored)");
    describe_gauge!(
        "weft_subnet_claimed_by_other",
        "1 while our subnet's key in etcd names another node's PublicIP (two nodes on one subnet)"
    );
    describe_gauge!("weft_etcd_revision", "Last etcd revision seen by the watch");
    describe_counter!("weft_etcd_resyncs_total", "Full re-lists after a compacted or cancelled watch");
    describe_counter!(
        "weft_etcd_bad_values_total",
        "Subnet keys or values that did not parse (logged with their key, skipped)"
    );
    describe_counter!("weft_etcd_lease_reacquired_total", "Times our lease had to be taken again");
    describe_counter!("weft_etcd_lease_conflicts_total", "Times another node wrote our subnet's key with its PublicIP");
    describe_gauge!(
        "weft_lease_expiry_timestamp_seconds",
        Unit::Seconds,
        "When our subnet lease expires unless renewed (Unix time)"
    );
}

/// How long a series lives after the collector last wrote it.
pub const SERIES_IDLE: Duration = Duration::from_secs(10);

impl Collector {
    fn collect(&mut self, shared: &Shared) {
        let now = Instant::now();
        gauge!("weft_build_info", "version" => env!("CARGO_PKG_VERSION"), "dpdk" => dataplane::dpdk::dpdk_version())
            .set(1.0);
        if let Some(h) = &shared.host {
            gauge!("weft_host_port_info", "iface" => h.name.clone(), "backend" => h.backend.label()).set(1.0);
        }
        let reading = super::stats::read(shared);
        for p in &reading.ports {
            for dir in ["rx", "tx"] {
                let mut total = 0;
                for (w, c) in p.per_worker.iter().enumerate() {
                    let (pk, by) = if dir == "rx" { (c.rx_packets, c.rx_bytes) } else { (c.tx_packets, c.tx_bytes) };
                    total += pk;
                    let labels = [
                        ("port", p.name.clone()),
                        ("kind", p.kind.clone()),
                        ("queue", w.to_string()),
                        ("direction", dir.to_string()),
                    ];
                    counter!("weft_port_packets_total", &labels).absolute(pk);
                    counter!("weft_port_bytes_total", &labels).absolute(by);
                }
                let last = self.last_pps.entry((p.id.0, dir)).or_insert((total, now));
                let dt = now.duration_since(last.1).as_secs_f64();
                if dt >= 0.5 {
                    gauge!("weft_port_packets_per_second", "port" => p.name.clone(), "direction" => dir)
                        .set(total.saturating_sub(last.0) as f64 / dt);
                    *last = (total, now);
                }
            }
        }
        let mut nics = vec![("uplink", &shared.uplink)];
        if let Some(h) = &shared.host {
            nics.push(("host", &h.port));
        }
        for (port, nic) in nics {
            if let Ok(s) = nic.stats() {
                counter!("weft_port_hw_rx_missed_total", "port" => port).absolute(s.rx_missed);
                counter!("weft_port_hw_rx_nombuf_total", "port" => port).absolute(s.rx_nombuf);
                counter!("weft_port_hw_rx_errors_total", "port" => port).absolute(s.rx_errors);
                counter!("weft_port_hw_tx_errors_total", "port" => port).absolute(s.tx_errors);
            }
            // Every extended statistic the PMD has, by DPDK's name, as `dpdk-proc-info --xstats` lists
            // them: queue counters, the driver's own error and discard counters.
            for (name, value) in nic.xstats().unwrap_or_default() {
                counter!("weft_port_xstats_total", "port" => port, "name" => name).absolute(value);
            }
        }
        for (w, c) in reading.workers.iter().enumerate() {
            let worker = w.to_string();
            counter!("weft_worker_packets_total", "worker" => worker.clone(), "direction" => "rx")
                .absolute(c.rx_packets);
            counter!("weft_worker_packets_total", "worker" => worker.clone(), "direction" => "tx")
                .absolute(c.tx_packets);
            for r in DropReason::ALL {
                counter!("weft_drops_total", "worker" => worker.clone(), "reason" => r.label())
                    .absolute(c.drops[*r as usize]);
            }
            for (state, v) in [("busy", c.busy_cycles), ("idle", c.idle_cycles)] {
                counter!("weft_worker_cycles_total", "worker" => worker.clone(), "state" => state).absolute(v);
            }
            counter!("weft_worker_busy_loops_total", "worker" => worker.clone()).absolute(c.busy_loops);
            let loops = c.loops;
            if self.progress.len() <= w {
                self.progress.push((loops, now));
            }
            if self.progress[w].0 != loops {
                self.progress[w] = (loops, now);
            }
            gauge!("weft_worker_up", "worker" => worker).set(if now.duration_since(self.progress[w].1) < STALL_AFTER {
                1.0
            } else {
                0.0
            });
        }
        counter!("weft_tx_not_sent_total").absolute(reading.drops(DropReason::TxFull));
        gauge!("weft_mempool_mbufs_in_use").set(shared.pool.in_use() as f64);
        gauge!("weft_mempool_mbufs_available").set(shared.pool.available() as f64);
        let snap = shared.tables.snapshot();
        gauge!("weft_peers").set(snap.vteps.len() as f64);
        gauge!("weft_tsc_hz").set(dataplane::dpdk::tsc::hz() as f64);
        gauge!("weft_pods").set(snap.pods.len() as f64);
        gauge!("weft_unresolved_next_hops").set(snap.unresolved.len() as f64);
        let node = &shared.node;
        gauge!("weft_backend_info", "backend" => node.backend.name(), "direct_routing" => if node.direct_routing { "true" } else { "false" })
            .set(1.0);
        for path in ["vxlan", "direct", "udp", "unresolved", "off-link"] {
            let n = snap.vteps.iter().filter(|v| v.path.name() == path).count();
            gauge!("weft_peers_by_path", "path" => path).set(n as f64);
        }
        gauge!("weft_table_generation").set(snap.generation as f64);
        gauge!("weft_state_file_problem").set(if shared.pods.state_problem().is_some() { 1.0 } else { 0.0 });
        gauge!("weft_pods_not_restored").set(shared.pods.pending().len() as f64);
        if let Some(e) = &shared.etcd_status {
            gauge!("weft_etcd_connected").set(if e.connected.load(Ordering::Relaxed) { 1.0 } else { 0.0 });
            gauge!("weft_etcd_revision").set(e.revision.load(Ordering::Relaxed) as f64);
            counter!("weft_etcd_resyncs_total").absolute(e.resyncs.load(Ordering::Relaxed));
            counter!("weft_etcd_bad_values_total").absolute(e.bad_values.load(Ordering::Relaxed));
            counter!("weft_etcd_lease_reacquired_total").absolute(e.reacquired.load(Ordering::Relaxed));
            counter!("weft_etcd_lease_conflicts_total").absolute(e.conflicts.load(Ordering::Relaxed));
            counter!("weft_etcd_rpc_retries_total").absolute(e.rpc_retries.load(Ordering::Relaxed));
            counter!("weft_etcd_rpc_failures_total").absolute(e.rpc_failures.load(Ordering::Relaxed));
            counter!("weft_etcd_failovers_total").absolute(e.failovers.load(Ordering::Relaxed));
            gauge!("weft_network_config_changed").set(if e.config_changed.load(Ordering::Relaxed) { 1.0 } else { 0.0 });
            let claimed = e.claimed_by.load(Ordering::Relaxed) != 0;
            gauge!("weft_subnet_claimed_by_other").set(if claimed { 1.0 } else { 0.0 });
            gauge!("weft_lease_expiry_timestamp_seconds").set(e.lease_expiry.load(Ordering::Relaxed) as f64);
        }
    }

    /// Workers that have not moved for STALL_AFTER.
    fn stalled(&self) -> Vec<(usize, Duration)> {
        let now = Instant::now();
        self.progress
            .iter()
            .enumerate()
            .filter_map(|(w, (_, t))| {
                let idle = now.duration_since(*t);
                (idle >= STALL_AFTER).then_some((w, idle))
            })
            .collect()
    }
}

/// The metrics listener and flannel's separate healthz listener, bound and not yet answering.
#[derive(Debug)]
pub(super) struct Listeners {
    metrics: HttpListener,
    healthz: Option<HttpListener>,
}

/// Bind the metrics address and the healthz one: a port in use fails here, naming the setting.
pub(super) fn bind(mgmt: &Mgmt, addr: SocketAddr, healthz: Option<SocketAddr>) -> Result<Listeners, Error> {
    let healthz = healthz
        .map(|h| {
            HttpListener::bind(mgmt, h).map_err(Error::io(format!("healthz_port {h}: cannot listen (port in use?)")))
        })
        .transpose()?;
    let metrics = HttpListener::bind(mgmt, addr)
        .map_err(Error::io(format!("metrics_addr {addr}: cannot listen (port in use?)")))?;
    Ok(Listeners { metrics, healthz })
}

/// Start the collector, and answer on the bound listeners from the management runtime.
pub(super) fn serve(
    shared: Arc<Shared>,
    mgmt: &Mgmt,
    listeners: Listeners,
) -> Result<std::thread::JoinHandle<()>, Error> {
    // A series the collector stopped writing (a deleted pod's port, say) leaves the exposition after
    // SERIES_IDLE; every live one is written every 200 ms.
    let recorder = PrometheusBuilder::new().idle_timeout(MetricKindMask::ALL, Some(SERIES_IDLE)).build_recorder();
    let handle: PrometheusHandle = recorder.handle();
    // One recorder per process; a second weftd in one process (tests) keeps the first.
    let _ = metrics::set_global_recorder(recorder);
    describe();
    let collector = Arc::new(Mutex::new(Collector { last_pps: HashMap::new(), progress: Vec::new() }));
    let ticker = {
        let (shared, collector) = (shared.clone(), collector.clone());
        std::thread::Builder::new()
            .name("weft-metrics".into())
            .spawn(move || {
                let mut notifier = super::notify::Notifier::from_env();
                while !shared.stop.load(Ordering::Relaxed) {
                    let stalled: Vec<usize> = {
                        let mut c = lock(&collector);
                        c.collect(&shared);
                        c.stalled().iter().map(|(w, _)| *w).collect()
                    };
                    let why = unready(&shared);
                    gauge!("weft_ready").set(if why.is_none() { 1.0 } else { 0.0 });
                    if let Some(n) = notifier.as_mut() {
                        n.tick(why, &stalled);
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                if let Some(n) = &notifier {
                    n.stopping();
                }
            })
            .map_err(Error::io("starting the metrics thread"))?
    };
    if let Some(h) = listeners.healthz {
        // flannel's --healthz-ip/--healthz-port: the probes only, apart from the metrics.
        let (shared, collector, handle) = (shared.clone(), collector.clone(), handle.clone());
        let probes: HttpHandler = Arc::new(move |path: &str| match path {
            "/healthz" | "/readyz" => route(path, &shared, &collector, &handle),
            _ => (
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "this listener serves /healthz and /readyz\n".into(),
            ),
        });
        serve_http(mgmt, h, probes);
    }
    let handler: HttpHandler = Arc::new(move |path: &str| route(path, &shared, &collector, &handle));
    serve_http(mgmt, listeners.metrics, handler);
    Ok(ticker)
}

fn route(path: &str, shared: &Shared, collector: &Mutex<Collector>, handle: &PrometheusHandle) -> HttpAnswer {
    const TEXT: &str = "text/plain; charset=utf-8";
    let unavailable = StatusCode::SERVICE_UNAVAILABLE;
    match path {
        "/metrics" => {
            lock(collector).collect(shared);
            (StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", handle.render())
        }
        "/healthz" => {
            let stalled = {
                let mut c = lock(collector);
                c.collect(shared);
                c.stalled()
            };
            if stalled.is_empty() {
                (StatusCode::OK, TEXT, format!("ok: {} workers making progress\n", shared.counters.len()))
            } else {
                let who: Vec<String> =
                    stalled.iter().map(|(w, d)| format!("worker {w} stalled for {:.1} s", d.as_secs_f64())).collect();
                (unavailable, TEXT, who.join("\n") + "\n")
            }
        }
        "/readyz" => match unready(shared) {
            Some(why) => (unavailable, TEXT, format!("{why}\n")),
            None => (StatusCode::OK, TEXT, "ready\n".to_string()),
        },
        _ => (StatusCode::NOT_FOUND, TEXT, "weftd serves /metrics, /healthz and /readyz\n".to_string()),
    }
}

/// Why weftd is not ready, or `None` when it is: the lease held (the dataplane only starts after it in
/// etcd mode) and ours, every worker forwarding with a published table, and the pods of the last run
/// all back. `/readyz` and systemd's READY=1 both go by it.
fn unready(shared: &Shared) -> Option<String> {
    let unready: Vec<usize> = shared
        .counters
        .iter()
        .enumerate()
        .filter(|(_, c)| c.generation.load(Ordering::Relaxed) == 0)
        .map(|(w, _)| w)
        .collect();
    let etcd_lost = shared.etcd_status.as_ref().is_some_and(|e| e.lease_expiry.load(Ordering::Relaxed) <= unix_now());
    let claimed = shared.etcd_status.as_ref().map(|e| e.claimed_by.load(Ordering::Relaxed)).filter(|ip| *ip != 0);
    let pending = shared.pods.pending();
    if let Some(ip) = claimed {
        Some(format!("our subnet's key is claimed by {}", std::net::Ipv4Addr::from(ip)))
    } else if etcd_lost {
        Some("our subnet lease has expired".to_string())
    } else if !unready.is_empty() {
        Some(format!("workers without a table yet: {unready:?}"))
    } else if let Some(p) = shared.pods.state_problem() {
        Some(p.to_string())
    } else if !pending.is_empty() {
        Some(format!("pods of the last run not restored yet: {}", pending.join(", ")))
    } else {
        None
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
