//! weft-bench: runs weft and its baselines in one invocation and reports ratios.
//!
//! `weft-bench io`: weft-iofwd against `dpdk-testpmd --forward-mode=io`, both on two net_null ports.
//! `weft-bench fwd`: weft's decap and encap (weft-fwdbench: the real worker and tables) against
//! testpmd io on the same devices: `net_pcap` replaying from memory (`infinite_rx=1`) into `net_null`.
//! Each on one forwarding lcore, alternating runs, medians of the per-second samples.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use weft_bench::frames::{self, Backend};
use weft_bench::ovs::OvsPorts;
use weft_bench::record;
use weft_bench::stats::{best, median, own_cycles, testpmd_rx_pps};

#[derive(Debug, Parser)]
#[command(name = "weft-bench")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Alternating repetitions of each.
    #[arg(long, default_value_t = 3, global = true)]
    reps: usize,
    /// Seconds per run.
    #[arg(long, default_value_t = 8, global = true)]
    seconds: u64,
    /// Forwarding lcore (EAL gets main lcore 0 plus this one).
    #[arg(long, default_value_t = 1, global = true)]
    lcore: u32,
    /// Where runs are recorded (`<bench>.jsonl`); default bench/results of the checkout weft-bench runs
    /// in.
    #[arg(long, global = true)]
    results: Option<PathBuf>,
    /// Do not record this run (tests that run a benchmark only to see it work).
    #[arg(long, global = true)]
    no_record: bool,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// I/O forwarding ceiling: weft's loop vs testpmd io on net_null ports.
    Io,
    /// The cost of metrics: decap with and without a thread reading the counters as the collector does.
    Metrics,
    /// Table swaps under load: decap at full rate while N new tables are published; any drop is a loss.
    Swaps {
        #[arg(long, default_value_t = 1000)]
        swaps: u32,
        #[arg(long, default_value_t = 5000)]
        peers: u32,
    },
    /// Two processes: weft-gen drives each device under test over memif or vhost-user (the kernel over
    /// af_packet veths) and measures what comes back: Mpps, loss, latency; NDR/PDR with --search.
    Pair {
        #[command(flatten)]
        traffic: Traffic,
        /// Devices under test, comma-separated: testpmd (io), ovs (OVS-DPDK), weft, kernel.
        #[arg(long, value_delimiter = ',', default_value = "testpmd,ovs,weft,kernel")]
        duts: Vec<Dut>,
        #[arg(long, value_enum, default_value_t = Transport::Memif)]
        transport: Transport,
        /// NDR/PDR search per run instead of one full-speed trial.
        #[arg(long)]
        search: bool,
        /// Offered rate in Mpps for the trials (0 = full speed).
        #[arg(long, default_value_t = 0.0)]
        rate_mpps: f64,
    },
    /// Kernel pods: iperf3 TCP and 64-byte UDP between tap pods, cni0 pods and veth pods (the last two
    /// through host ports) on two weft nodes, and from a cni0 pod to a kernel flannel node's pod,
    /// against a pod pair on two kernel flannel nodes, in one netns lab (root, hugepages; weftd and weftctl built next to this
    /// binary).
    Hostport,
    /// Write the benchmark frames to a pcap (for Pktgen's -s, TRex's pcap streams, or tcpdump).
    Pcap {
        #[arg(long, value_enum, default_value_t = GenMode::Decap)]
        mode: GenMode,
        #[arg(long, value_enum, default_value_t = Backend::Vxlan)]
        backend: Backend,
        #[arg(long, default_value_t = 10)]
        peers: u32,
        #[arg(long, default_value_t = 256)]
        flows: u32,
        #[arg(long, default_value_t = 64)]
        size: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// How the last recorded run of each benchmark (or of BENCH) moved against the run before it on the
    /// same kind of machine.
    Compare { bench: Option<String> },
    /// Decap, encap and mixed Mpps vs testpmd io, replayed from memory into a sink, in one process.
    Fwd {
        #[command(flatten)]
        traffic: Traffic,
        /// Baselines, comma-separated: testpmd (io), ovs (OVS-DPDK).
        #[arg(long, value_delimiter = ',', default_value = "testpmd,ovs")]
        baselines: Vec<Dut>,
        /// The `weft-fwdbench` of another build (an older commit: `scripts/bench-against.sh` makes one),
        /// run as one more contender in the same repetitions, so both builds' ratios to the baselines
        /// come from one invocation.
        #[arg(long)]
        base_fwdbench: Option<PathBuf>,
    },
    /// Instructions per packet, counted by callgrind (valgrind): weft's packet path alone
    /// (`weft-pathloop`), and weft's whole forwarding loop in-process (`weft-fwdbench`) against testpmd
    /// io's on the same PMDs, whose difference is weft's own work (DPDK without hugepages under
    /// valgrind). The same on every run of a build, so a change smaller than the run-to-run spread of
    /// the forwarding rates still shows; cache misses and dependent loads do not.
    Icount {
        /// decap, encap (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "decap,encap")]
        modes: Vec<GenMode>,
        /// Table sizes (remote VTEPs), comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "10,100000")]
        peers: Vec<u32>,
        /// Packets through the path alone.
        #[arg(long, default_value_t = 32_000)]
        packets: u64,
        /// Seconds each forwarding process runs under callgrind (about 1.5 M packets a second there).
        #[arg(long, default_value_t = 4)]
        loop_seconds: u64,
        /// A directory holding another build's weft-pathloop and weft-fwdbench (such as
        /// target/bench-base/<commit>/target/release), counted next to this one's.
        #[arg(long)]
        base: Option<PathBuf>,
    },
}

/// The traffic matrix of `fwd` and `pair`.
#[derive(Debug, clap::Args)]
struct Traffic {
    /// decap, encap, mixed (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "decap,encap")]
    modes: Vec<GenMode>,
    /// Table sizes (remote VTEPs), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10")]
    peers: Vec<u32>,
    /// Pod-side frame size in bytes (VXLAN frames are 50 bytes longer).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Flows (distinct frames) per direction.
    #[arg(long, default_value_t = 256)]
    flows: u32,
    /// The flannel backend weft runs and the frames are of: vxlan, host-gw or udp. OVS-DPDK is a
    /// VXLAN baseline only; the kernel baseline of `pair` is VXLAN or host-gw.
    #[arg(long, value_enum, default_value_t = Backend::Vxlan)]
    backend: Backend,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum GenMode {
    Decap,
    Encap,
    Mixed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
enum Dut {
    Testpmd,
    Ovs,
    Weft,
    Kernel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Transport {
    Memif,
    Vhost,
}

fn name<T: clap::ValueEnum>(v: T) -> String {
    v.to_possible_value().map(|p| p.get_name().to_string()).unwrap_or_default()
}

/// Samples after the first two seconds (ramp-up).
fn steady(mut v: Vec<f64>) -> Vec<f64> {
    if v.len() > 3 {
        v.drain(..2);
    }
    v
}

struct Runner {
    seconds: u64,
    lcore: u32,
    tag: String,
    /// The TSC rate weft-fwdbench last reported (its EAL's calibration), for cycles a packet.
    tsc_hz: std::cell::Cell<Option<f64>>,
}

impl Runner {
    fn eal(&self, who: &str, rep: usize, vdevs: &[String]) -> Vec<String> {
        testkit::eal::vdev_eal_args(
            &format!("weft-bench-{who}-{}-{rep}", self.tag),
            &format!("0,{}", self.lcore),
            vdevs,
        )
    }

    fn testpmd(&self, rep: usize, vdevs: &[String]) -> anyhow::Result<f64> {
        let mut args = vec!["-s".to_string(), "INT".into(), format!("{}", self.seconds + 1), "dpdk-testpmd".into()];
        args.extend(self.eal("tp", rep, vdevs));
        args.extend(["--", "--forward-mode=io", "--stats-period", "1", "--nb-cores", "1"].map(String::from));
        let out =
            Command::new("timeout").args(&args).output().context("running dpdk-testpmd (apt-get install dpdk)")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let periods: Vec<f64> = testpmd_rx_pps(&text).into_iter().filter(|p| *p > 0.0).collect();
        if periods.is_empty() {
            bail!("testpmd printed no statistics:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(median(&mut steady(periods)).unwrap_or(0.0))
    }

    fn weft(&self, exe: &str, rep: usize, pre: &[String], vdevs: &[String]) -> anyhow::Result<f64> {
        // A bare name is a sibling of this binary; a path (another build's binary) is used as it is.
        let exe: PathBuf =
            if exe.contains('/') { PathBuf::from(exe) } else { std::env::current_exe()?.with_file_name(exe) };
        let mut args = pre.to_vec();
        args.extend(["--seconds".to_string(), self.seconds.to_string(), "--".into()]);
        args.extend(self.eal("wf", rep, vdevs));
        let out = Command::new(&exe).args(&args).output().with_context(|| format!("running {}", exe.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!("{} failed:\n{text}\n{}", exe.display(), String::from_utf8_lossy(&out.stderr));
        }
        if let Some(l) = text.lines().find(|l| l.starts_with("forwarded:")) {
            eprintln!("   {l}");
        }
        if let Some(hz) = weft_report(&text).and_then(|r| r["tsc_hz"].as_f64()) {
            self.tsc_hz.set(Some(hz));
        }
        let v: Vec<f64> = text
            .lines()
            .filter_map(|l| l.strip_prefix("Rx-pps-total:"))
            .filter_map(|x| x.trim().parse().ok())
            .collect();
        Ok(median(&mut steady(v)).unwrap_or(0.0))
    }
}

/// Run every contender once per repetition, alternating, and report medians; the last one is weft and
/// is reported as a ratio to each of the others.
type Contender<'a> = (&'a str, Box<dyn FnMut(usize) -> anyhow::Result<f64> + 'a>);

fn compare_many(name: &str, reps: usize, mut who: Vec<Contender<'_>>) -> anyhow::Result<serde_json::Value> {
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); who.len()];
    for rep in 0..reps {
        let mut line = format!("{name} rep {rep}:");
        for (i, (label, run)) in who.iter_mut().enumerate() {
            let v = run(rep)?;
            line += &format!(" {label} {:.2} Mpps", v / 1e6);
            samples[i].push(v);
        }
        println!("{line}");
    }
    let bests: Vec<f64> = samples.iter().map(|v| best(v).unwrap_or(0.0)).collect();
    let mut j = serde_json::json!({"bench": name, "reps": reps});
    // Every repetition as it came, in order: how far the machine moved them is part of the result.
    for ((label, _), v) in who.iter().zip(&samples) {
        j[format!("{label}_reps_mpps")] = v.iter().map(|x| x / 1e6).collect::<Vec<_>>().into();
    }
    let meds: Vec<f64> = samples.iter_mut().map(|v| median(v).unwrap_or(0.0)).collect();
    let (weft, weft_best) = (*meds.last().unwrap_or(&0.0), *bests.last().unwrap_or(&0.0));
    let mut line = format!("{name}:");
    for (((label, _), m), b) in who.iter().zip(&meds).zip(&bests) {
        j[format!("{label}_mpps")] = (m / 1e6).into();
        j[format!("{label}_best_mpps")] = (b / 1e6).into();
        line += &format!(" {label} {:.2} Mpps (best {:.2})", m / 1e6, b / 1e6);
    }
    for (((label, _), m), b) in who.iter().zip(&meds).zip(&bests).take(who.len() - 1) {
        let ratio = if *m > 0.0 { weft / m } else { 0.0 };
        let best_ratio = if *b > 0.0 { weft_best / b } else { 0.0 };
        j[format!("ratio_vs_{label}")] = ratio.into();
        j[format!("best_ratio_vs_{label}")] = best_ratio.into();
        line += &format!(", weft/{label} {ratio:.3} (best {best_ratio:.3})");
    }
    println!("{line}");
    Ok(j)
}

/// Weft's own cycles a packet in a row of `fwd` (and the older build's, with `--base-fwdbench`): its
/// cycles a packet less testpmd io's on the same devices, from the medians and from the fastest
/// repetitions (the performance issue's "own cycles"). Nothing without testpmd in the row or a TSC
/// rate from weft-fwdbench.
fn own_cycles_of(row: &mut serde_json::Value, hz: Option<f64>) -> Option<String> {
    let hz = hz?;
    let mut line = String::new();
    for who in ["weft", "base"] {
        let mut own = |rate: &str, key: String| {
            let c = own_cycles(
                hz,
                row[format!("{who}_{rate}")].as_f64()? * 1e6,
                row[format!("testpmd_{rate}")].as_f64()? * 1e6,
            )?;
            row[key] = c.into();
            Some(c)
        };
        let median = own("mpps", format!("{who}_own_cycles"));
        let fastest = own("best_mpps", format!("{who}_own_cycles_best"));
        if let (Some(m), Some(b)) = (median, fastest) {
            line += &format!(" {who} {m:.1} (best {b:.1})");
        }
    }
    (!line.is_empty()).then(|| format!("own cycles a packet ({:.0} MHz TSC):{line}", hz / 1e6))
}

fn compare(
    name: &str,
    base: &str,
    reps: usize,
    tp: impl FnMut(usize) -> anyhow::Result<f64>,
    wf: impl FnMut(usize) -> anyhow::Result<f64>,
) -> anyhow::Result<serde_json::Value> {
    let mut j = compare_many(name, reps, vec![(base, Box::new(tp)), ("weft", Box::new(wf))])?;
    j["baseline"] = base.into();
    j["baseline_mpps"] = j[format!("{base}_mpps")].clone();
    j["ratio"] = j[format!("ratio_vs_{base}")].clone();
    Ok(j)
}

/// OVS-DPDK fed from memory: started, left a second to warm up, its own TX counters (what it forwarded)
/// sampled each second.
fn ovs_in_process(r: &Runner, peers: u32, ports: [String; 2], rep: usize) -> anyhow::Result<f64> {
    let mut o =
        weft_bench::ovs::OvsSwitch::with_ports(&format!("{}-{rep}", r.tag), peers, r.lcore, OvsPorts::Devargs(ports))?;
    o.start()?;
    std::thread::sleep(Duration::from_secs(1));
    let mut last = (Instant::now(), o.tx_packets()?);
    let mut v = Vec::new();
    for _ in 0..r.seconds {
        std::thread::sleep(Duration::from_secs(1));
        let now = (Instant::now(), o.tx_packets()?);
        v.push(now.1.saturating_sub(last.1) as f64 / (now.0 - last.0).as_secs_f64());
        last = now;
    }
    if std::env::var_os("WEFT_BENCH_DEBUG").is_some() {
        eprintln!("ovs up: {}\novs pod: {}", o.port_stats("up").trim(), o.port_stats("pod").trim());
        eprintln!("{}\n{}", o.datapath_flows(), o.log());
    }
    o.stop();
    Ok(median(&mut steady(v)).unwrap_or(0.0))
}

fn write_pcap(path: &Path, frames: &[Vec<u8>]) -> anyhow::Result<()> {
    std::fs::write(path, dataplane::wire::pcap::write_pcap(frames.iter().map(|f| &f[..])))?;
    Ok(())
}

/// One two-process run: what the device under test, fed and drained by weft-gen, forwarded.
struct PairRun<'a> {
    r: &'a Runner,
    backend: Backend,
    mode: GenMode,
    peers: u32,
    size: usize,
    flows: u32,
    transport: Transport,
    search: bool,
    rate_mpps: f64,
}

impl PairRun<'_> {
    /// The generator's extra EAL args for the transport, whoever it is wired to.
    fn gen_eal(&self) -> Vec<String> {
        match self.transport {
            Transport::Memif => Vec::new(),
            // virtio-user shares its memory with the vhost side as file descriptors.
            Transport::Vhost => vec!["--in-memory".into(), "--single-file-segments".into()],
        }
    }

    /// (device-under-test vdevs, generator vdevs, generator's extra EAL args) for the transport.
    fn wiring(&self, dir: &Path) -> ([String; 2], [String; 2], Vec<String>) {
        let sock = |n: &str| dir.join(format!("{n}.sock")).display().to_string();
        match self.transport {
            Transport::Memif => {
                // 8192-slot rings (memif's default is 1024): at the smoke test's 50 kpps that is 160 ms of
                // buffering, so a process descheduled on a busy 2-core machine loses nothing (with 1024
                // slots, 20 ms, the low-rate check lost a burst now and then under a parallel build).
                let m = |i: usize, n: &str, role: &str| {
                    format!("net_memif{i},role={role},socket={},socket-abstract=no,rsize=13", sock(n))
                };
                (
                    [m(0, "up", "server"), m(1, "pod", "server")],
                    [m(0, "up", "client"), m(1, "pod", "client")],
                    self.gen_eal(),
                )
            }
            Transport::Vhost => (
                [
                    format!("net_vhost0,iface={},queues=1", sock("up")),
                    format!("net_vhost1,iface={},queues=1", sock("pod")),
                ],
                [
                    format!("net_virtio_user0,path={},queues=1", sock("up")),
                    format!("net_virtio_user1,path={},queues=1", sock("pod")),
                ],
                self.gen_eal(),
            ),
        }
    }

    fn port_names(vdevs: &[String; 2]) -> [String; 2] {
        vdevs.clone().map(|v| v.split(',').next().unwrap_or_default().to_string())
    }

    fn gen(
        &self,
        ns: Option<&str>,
        rep: usize,
        vdevs: &[String; 2],
        extra: &[String],
        rx_queues: u16,
    ) -> anyhow::Result<serde_json::Value> {
        let exe = std::env::current_exe()?.with_file_name("weft-gen");
        let names = Self::port_names(vdevs);
        // A bound on the whole run, so a generator that waits forever (a virtio-user server whose client
        // never connects waits in its start) fails the run instead of hanging it: its trials (one, or up
        // to 33 of a search) and their drains, and two minutes to start and stop.
        let trials = if self.search { 40 } else { 2 };
        let bound = 120 + (self.r.seconds + 1) * trials;
        let mut cmd = Command::new("timeout");
        cmd.args(["--kill-after=10", &bound.to_string()]);
        if let Some(ns) = ns {
            cmd.args(["ip", "netns", "exec", ns]);
        }
        cmd.arg(&exe);
        cmd.args(["--mode", &name(self.mode), "--backend", &name(self.backend)])
            .args(["--uplink", &names[0], "--pod", &names[1]])
            .args(["--peers", &self.peers.to_string(), "--flows", &self.flows.to_string()])
            .args(["--size", &self.size.to_string(), "--seconds", &self.r.seconds.to_string()])
            .args(["--rx-queues", &rx_queues.to_string(), "--rate-mpps", &self.rate_mpps.to_string()]);
        if self.search {
            cmd.arg("--search");
        }
        let mut eal = testkit::eal::vdev_eal_args(&format!("weft-gen-{}-{rep}", self.r.tag), "0", vdevs);
        if !extra.is_empty() {
            eal.retain(|a| a != "--huge-unlink");
            eal.extend(extra.iter().cloned());
        }
        cmd.arg("--").args(eal);
        let out = cmd.output().context("running weft-gen")?;
        let text = String::from_utf8_lossy(&out.stdout);
        if out.status.code() == Some(124) {
            bail!(
                "weft-gen did not finish in {bound} s and was stopped:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if !out.status.success() {
            bail!("weft-gen failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
        }
        for l in text.lines().filter(|l| l.contains("trial:") || l.starts_with("NDR")) {
            println!("     {l}");
        }
        let j = text.lines().find_map(|l| l.strip_prefix("result: ")).context("weft-gen printed no result")?;
        Ok(serde_json::from_str(j)?)
    }

    fn run(&self, dut: Dut, rep: usize, b: &mut Baselines) -> anyhow::Result<serde_json::Value> {
        match dut {
            Dut::Kernel => {
                let k = b.kernel.as_ref().context("kernel node not built")?;
                return self.gen(Some(&k.gen_ns), rep, &k.gen_vdevs, &[], 1);
            }
            Dut::Ovs => {
                let o = b.ovs.as_mut().context("OVS not set up")?;
                o.start()?;
                // Over memif OVS sends on one TX queue per thread: the generator polls two. Over vhost-user
                // the generator's one queue pair is all OVS has (it shares it among its threads).
                let rx_queues = match self.transport {
                    Transport::Memif => 2,
                    Transport::Vhost => 1,
                };
                let extra = self.gen_eal();
                let res = self.gen(None, rep, &o.gen_vdevs.clone(), &extra, rx_queues);
                if res.is_err() {
                    eprintln!("ovs-vswitchd log:\n{}", o.log());
                }
                o.stop();
                return res;
            }
            _ => {}
        }
        let dir = std::env::temp_dir().join(format!("weft-bench-{}-{}-{rep}", self.r.tag, name(dut)));
        std::fs::create_dir_all(&dir)?;
        let (dut_vdevs, gen_vdevs, extra) = self.wiring(&dir);
        // Over vhost-user, weft serves the pod's socket as weftd serves a vhost-user pod (DPDK's vhost
        // library, as OVS-DPDK's dpdkvhostuser ports do), not as a net_vhost ethdev; testpmd has only
        // the ethdev. The uplink stays an ethdev, as a NIC is.
        let pod_vhost = dut == Dut::Weft && self.transport == Transport::Vhost;
        let eal = self.r.eal(&name(dut), rep, if pod_vhost { &dut_vdevs[..1] } else { &dut_vdevs[..] });
        let names = Self::port_names(&dut_vdevs);
        let log = std::fs::File::create(dir.join("dut.log"))?;
        let mut cmd = match dut {
            Dut::Testpmd => {
                let mut c = Command::new("dpdk-testpmd");
                c.args(&eal).args(["--", "--forward-mode=io", "--nb-cores", "1", "--stats-period", "1"]);
                // Busy cycles per packet (iterations that received nothing are not counted).
                c.arg("--record-core-cycles");
                c
            }
            _ => {
                let mut c = Command::new(std::env::current_exe()?.with_file_name("weft-fwdbench"));
                c.args(["--mode", "decap", "--seconds", "0", "--peers", &self.peers.to_string()])
                    .args(["--backend", &name(self.backend)])
                    .args(["--uplink-dev", &names[0]]);
                if pod_vhost {
                    c.arg("--pod-vhost").arg(dir.join("pod.sock"));
                } else {
                    c.args(["--pod-dev", &names[1]]);
                }
                c.arg("--").args(&eal);
                c
            }
        };
        let mut child =
            cmd.stdout(log.try_clone()?).stderr(log).spawn().with_context(|| format!("starting {cmd:?}"))?;
        let socks = [dir.join("up.sock"), dir.join("pod.sock")];
        let t = Instant::now();
        while !socks.iter().all(|s| s.exists()) {
            if t.elapsed() > Duration::from_secs(60) || matches!(child.try_wait(), Ok(Some(_))) {
                weft_bench::stop_child(&mut child, "-INT");
                let log = std::fs::read_to_string(dir.join("dut.log")).unwrap_or_default();
                bail!("{} did not open its sockets:\n{log}", name(dut));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut res = self.gen(None, rep, &gen_vdevs, &extra, 1);
        weft_bench::stop_child(&mut child, "-INT");
        if let Ok(j) = res.as_mut() {
            let log = std::fs::read_to_string(dir.join("dut.log")).unwrap_or_default();
            j["dut_cycles_per_packet"] = dut_cycles_per_packet(&log).into();
            if let Some(p) = weft_report(&log).and_then(|r| r["packets_per_busy_loop"].as_f64()) {
                j["dut_packets_per_busy_loop"] = p.into();
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        res
    }
}

/// The device under test's busy cycles per packet received, from what it printed when it stopped:
/// testpmd's `CPU cycles/packet=` (`--record-core-cycles`), weft-fwdbench's report. Unlike the rate
/// the generator sees, this does not move when the generator is what holds the rate back.
fn dut_cycles_per_packet(log: &str) -> Option<f64> {
    log.lines()
        .rev()
        .find_map(|l| {
            let rest = l.split("CPU cycles/packet=").nth(1)?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .or_else(|| weft_report(log)?["cycles_per_packet"].as_f64())
}

/// The report weft-fwdbench prints when it stops.
fn weft_report(log: &str) -> Option<serde_json::Value> {
    log.lines().rev().find_map(|l| serde_json::from_str(l.strip_prefix("report: ")?).ok())
}

/// The baselines that live across runs (built once per table size).
#[derive(Default)]
struct Baselines {
    kernel: Option<weft_bench::kernel::KernelNode>,
    ovs: Option<weft_bench::ovs::OvsSwitch>,
}

/// Median of a field over repetitions.
fn med(runs: &[serde_json::Value], f: impl Fn(&serde_json::Value) -> Option<f64>) -> f64 {
    let mut v: Vec<f64> = runs.iter().filter_map(f).collect();
    median(&mut v).unwrap_or(0.0)
}

fn pair(
    r: &Runner,
    reps: usize,
    base: PairRun<'_>,
    modes: &[GenMode],
    peers: &[u32],
    duts: &[Dut],
) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    let mut duts = duts.to_vec();
    duts.sort();
    duts.dedup();
    for &p in peers {
        let mut b = Baselines::default();
        if duts.contains(&Dut::Kernel) {
            let t = Instant::now();
            b.kernel = Some(weft_bench::kernel::KernelNode::new(&r.tag, base.backend.config(), p, r.lcore)?);
            eprintln!("kernel node with {p} peers programmed in {:.1?}", t.elapsed());
        }
        if duts.contains(&Dut::Ovs) {
            if base.backend != Backend::Vxlan {
                bail!("the OVS-DPDK baseline is VXLAN only: drop ovs from --duts for {}", name(base.backend));
            }
            let ports = match base.transport {
                Transport::Memif => OvsPorts::Memif,
                Transport::Vhost => OvsPorts::Vhost,
            };
            b.ovs = Some(weft_bench::ovs::OvsSwitch::with_ports(&r.tag, p, r.lcore, ports)?);
        }
        for &mode in modes {
            let run = PairRun { mode, peers: p, ..base };
            let mut runs: Vec<Vec<serde_json::Value>> = vec![Vec::new(); duts.len()];
            for rep in 0..reps {
                for (i, &d) in duts.iter().enumerate() {
                    let res = run.run(d, rep, &mut b)?;
                    let metric = if base.search { res["ndr_mpps"].as_f64() } else { res["rx_mpps"].as_f64() };
                    println!(
                        "{} {p} peers {} B, {} rep {rep}: {:.3} Mpps{}{}",
                        name(mode),
                        base.size,
                        name(d),
                        metric.unwrap_or(0.0),
                        if base.search { " NDR" } else { "" },
                        res["dut_cycles_per_packet"]
                            .as_f64()
                            .map(|c| format!(", {c:.1} cycles per packet on its core"))
                            .unwrap_or_default()
                            + &res["dut_packets_per_busy_loop"]
                                .as_f64()
                                .map(|p| format!(", {p:.1} per busy loop"))
                                .unwrap_or_default()
                    );
                    runs[i].push(res);
                }
            }
            let lat = |q: &'static str| {
                move |v: &serde_json::Value| {
                    if base.search {
                        v["ndr"]["latency_us"][q].as_f64()
                    } else {
                        v["latency_us"][q].as_f64()
                    }
                }
            };
            let mut row = serde_json::json!({
                "topology": format!("two-process over {}", name(base.transport)),
                "backend": name(base.backend), "mode": name(mode), "peers": p, "size": base.size, "flows": base.flows, "reps": reps,
            });
            let mut weft = 0.0;
            for (i, &d) in duts.iter().enumerate() {
                let mpps = med(&runs[i], |v| v["rx_mpps"].as_f64());
                let mut j = serde_json::json!({
                    "mpps": mpps, "loss_ratio": med(&runs[i], |v| v["loss_ratio"].as_f64()),
                    "latency_p50_us": med(&runs[i], lat("p50")), "latency_p99_us": med(&runs[i], lat("p99")),
                    "lost": runs[i].iter().filter_map(|v| v["lost"].as_u64()).sum::<u64>(),
                    "sent": runs[i].iter().filter_map(|v| v["sent"].as_u64()).sum::<u64>(),
                    "reordered": runs[i].iter().filter_map(|v| v["reordered"].as_u64()).sum::<u64>(),
                });
                if runs[i].iter().any(|v| v["write_syscalls"].is_u64()) {
                    let writes: u64 = runs[i].iter().filter_map(|v| v["write_syscalls"].as_u64()).sum();
                    j["generator_write_syscalls"] = writes.into();
                }
                // Every repetition, and the fastest (see stats::best): on a shared machine its rates come
                // in states the time sets, not the device.
                let reps_mpps: Vec<f64> = runs[i].iter().filter_map(|v| v["rx_mpps"].as_f64()).collect();
                j["best_mpps"] = best(&reps_mpps).unwrap_or(0.0).into();
                j["reps_mpps"] = reps_mpps.into();
                if runs[i].iter().any(|v| v["dut_cycles_per_packet"].is_f64()) {
                    j["dut_cycles_per_packet"] = med(&runs[i], |v| v["dut_cycles_per_packet"].as_f64()).into();
                    // The fewest: the repetition the machine took least from the device under test.
                    let cycles: Vec<f64> = runs[i].iter().filter_map(|v| v["dut_cycles_per_packet"].as_f64()).collect();
                    j["best_dut_cycles_per_packet"] = cycles.iter().copied().reduce(f64::min).unwrap_or(0.0).into();
                }
                if runs[i].iter().any(|v| v["dut_packets_per_busy_loop"].is_f64()) {
                    j["dut_packets_per_busy_loop"] = med(&runs[i], |v| v["dut_packets_per_busy_loop"].as_f64()).into();
                }
                if base.search {
                    j["ndr_mpps"] = med(&runs[i], |v| v["ndr_mpps"].as_f64()).into();
                    j["pdr_mpps"] = med(&runs[i], |v| v["pdr_mpps"].as_f64()).into();
                    j["mpps"] = med(&runs[i], |v| v["ceiling"]["rx_mpps"].as_f64()).into();
                }
                if d == Dut::Weft {
                    weft = j["mpps"].as_f64().unwrap_or(0.0);
                }
                row[name(d)] = j;
            }
            let mut line = format!("{} {p} peers {} B:", name(mode), base.size);
            for &d in &duts {
                let v = &row[name(d)];
                line += &format!(
                    "  {} {:.3} Mpps (p50 {:.0} µs, p99 {:.0} µs{})",
                    name(d),
                    v["mpps"].as_f64().unwrap_or(0.0),
                    v["latency_p50_us"].as_f64().unwrap_or(0.0),
                    v["latency_p99_us"].as_f64().unwrap_or(0.0),
                    if base.search {
                        format!(
                            ", NDR {:.3}, PDR {:.3}",
                            v["ndr_mpps"].as_f64().unwrap_or(0.0),
                            v["pdr_mpps"].as_f64().unwrap_or(0.0)
                        )
                    } else {
                        String::new()
                    }
                );
            }
            println!("{line}");
            for &d in duts.iter().filter(|d| **d != Dut::Weft) {
                let b = row[name(d)]["mpps"].as_f64().unwrap_or(0.0);
                if b > 0.0 && duts.contains(&Dut::Weft) {
                    let best_of = |d: Dut| row[name(d)]["best_mpps"].as_f64().unwrap_or(0.0);
                    let best_ratio = if best_of(d) > 0.0 { best_of(Dut::Weft) / best_of(d) } else { 0.0 };
                    println!("  weft / {}: {:.3} (fastest repetitions: {best_ratio:.3})", name(d), weft / b);
                    row[format!("ratio_vs_{}", name(d))] = (weft / b).into();
                    row[format!("best_ratio_vs_{}", name(d))] = best_ratio.into();
                }
                // The same ratio where the device under test holds the rate back: its cycles per packet.
                let cycles = |d: Dut| row[name(d)]["dut_cycles_per_packet"].as_f64().filter(|c| *c > 0.0);
                if let (Some(theirs), Some(ours)) = (cycles(d), cycles(Dut::Weft)) {
                    println!(
                        "  device-under-test cycles per packet: {} {theirs:.1}, weft {ours:.1}; weft / {} at the device-bound rate: {:.3}",
                        name(d),
                        name(d),
                        theirs / ours
                    );
                    row[format!("cycles_ratio_vs_{}", name(d))] = (theirs / ours).into();
                }
                let fewest = |d: Dut| row[name(d)]["best_dut_cycles_per_packet"].as_f64().filter(|c| *c > 0.0);
                if let (Some(theirs), Some(ours)) = (fewest(d), fewest(Dut::Weft)) {
                    println!(
                        "  fewest cycles per packet: {} {theirs:.1}, weft {ours:.1} ({:.3})",
                        name(d),
                        theirs / ours
                    );
                    row[format!("best_cycles_ratio_vs_{}", name(d))] = (theirs / ours).into();
                }
            }
            out.push(row);
        }
    }
    Ok(out)
}

/// The subcommand's name, as runs are recorded under it.
fn bench_name(cmd: &Cmd) -> &'static str {
    match cmd {
        Cmd::Io => "io",
        Cmd::Metrics => "metrics",
        Cmd::Swaps { .. } => "swaps",
        Cmd::Pair { .. } => "pair",
        Cmd::Hostport => "hostport",
        Cmd::Pcap { .. } => "pcap",
        Cmd::Compare { .. } => "compare",
        Cmd::Fwd { .. } => "fwd",
        Cmd::Icount { .. } => "icount",
    }
}

/// Instructions per packet of `weft-pathloop` (`exe`) in its counted function (`path_burst`, the packet
/// path on bursts of 32), from callgrind's summary.
fn path_instructions(exe: &Path, mode: &str, peers: u32, packets: u64) -> anyhow::Result<f64> {
    let out = std::env::temp_dir().join(format!("weft-icount-{}-{mode}-{peers}.callgrind", std::process::id()));
    let o = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg("--toggle-collect=*path_burst*")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(exe)
        .args(["--mode", mode, "--peers", &peers.to_string(), "--packets", &packets.to_string()])
        .output()
        .context("valgrind: not installed? (apt install valgrind)")?;
    let text = std::fs::read_to_string(&out);
    let _ = std::fs::remove_file(&out);
    if !o.status.success() {
        let stderr = String::from_utf8_lossy(&o.stderr);
        bail!("{} under callgrind: {}{}\n{stderr}", exe.display(), o.status, undecoded(&stderr));
    }
    let ran: serde_json::Value = serde_json::from_slice(&o.stdout)
        .with_context(|| format!("{}: unexpected output {}", exe.display(), String::from_utf8_lossy(&o.stdout)))?;
    let counted = ran["packets"].as_u64().filter(|&n| n > 0).context("weft-pathloop counted no packets")?;
    let ir = callgrind_total(&text.with_context(|| format!("{}: callgrind wrote no profile", out.display()))?)
        .context("callgrind wrote no summary")?;
    if ir == 0 {
        bail!("callgrind counted nothing in path_burst: is {} a weft-pathloop?", exe.display());
    }
    Ok(ir as f64 / counted as f64)
}

/// testpmd io under valgrind (`valgrind` its arguments), stopped with SIGINT once it has forwarded for
/// `seconds` (its statistics each second say when it started: EAL's initialisation under valgrind
/// takes ten seconds or more), or by `timeout` after a limit that only catches a hang. Its exit
/// status, stdout and stderr.
fn testpmd_under_callgrind(
    valgrind: &[String],
    eal: &[String],
    seconds: u64,
) -> anyhow::Result<(std::process::ExitStatus, String, String)> {
    use std::io::{BufRead, Read};
    // timeout passes the SIGINT below on to valgrind, and stops a testpmd that never prints.
    let mut child = Command::new("timeout")
        .args(["-s", "INT", &callgrind_limit(seconds).to_string(), "valgrind"])
        .args(valgrind)
        .arg("dpdk-testpmd")
        .args(eal)
        .args(["--", "--forward-mode=io", "--nb-cores", "1", "--total-num-mbufs=16384", "--stats-period", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running valgrind (apt install valgrind) with dpdk-testpmd (apt install dpdk)")?;
    let mut err = child.stderr.take().context("no stderr")?;
    let drain = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let (mut text, mut forwarding_since, mut stopped) = (String::new(), None::<Instant>, false);
    for line in std::io::BufReader::new(child.stdout.take().context("no stdout")?).lines() {
        let line = line?;
        let rx: u64 = line
            .trim()
            .strip_prefix("RX-packets:")
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        if rx > 0 && forwarding_since.is_none() {
            forwarding_since = Some(Instant::now());
        }
        let done = forwarding_since.is_some_and(|t| t.elapsed() >= Duration::from_secs(seconds));
        if !stopped && done {
            let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
            stopped = true;
        }
        text += &line;
        text.push('\n');
    }
    let status = child.wait()?;
    Ok((status, text, drain.join().unwrap_or_default()))
}

/// What to do when valgrind met an instruction it does not decode: valgrind 3.19 stops at AVX2, and a
/// native build on a newer CPU has AVX-512 (EVEX) or GFNI instructions.
fn undecoded(stderr: &str) -> &'static str {
    if stderr.contains("unhandled instruction bytes") {
        " (an instruction valgrind does not decode: build the counted binaries, and any --base, with \
         RUSTFLAGS=\"-C target-cpu=x86-64-v3\", as `make bench-icount` does)"
    } else {
        ""
    }
}

/// Seconds after which a forwarding process under callgrind that runs `seconds` is taken to hang: its
/// startup under valgrind alone takes 10-14 s.
fn callgrind_limit(seconds: u64) -> u64 {
    seconds * 10 + 120
}

/// The instructions callgrind counted in one profile (its `summary:` line).
fn callgrind_total(profile: &str) -> Option<u64> {
    profile.lines().find_map(|l| l.strip_prefix("summary:")).and_then(|v| v.trim().parse().ok())
}

/// Instructions per packet forwarded of a whole forwarding process under callgrind: testpmd io (`weft`
/// None; stopped with SIGINT after `seconds`), or `weft-fwdbench` with its arguments. The forwarding
/// lcore's thread is the one that ran the most instructions (callgrind counts each thread apart);
/// DPDK runs without hugepages (`--no-huge`), which valgrind needs.
fn loop_instructions(
    r: &Runner,
    who: &str,
    weft: Option<(&Path, &[String])>,
    vdevs: &[String],
    seconds: u64,
    dir: &Path,
) -> anyhow::Result<f64> {
    let prefix = format!("weft-bench-icount-{who}-{}", r.tag);
    let mut eal = testkit::eal::vdev_eal_args(&prefix, &format!("0,{}", r.lcore), vdevs);
    // valgrind cannot map hugepages; EAL refuses --huge-unlink with --no-huge.
    eal.retain(|a| a != "--huge-unlink");
    eal.extend(["--no-huge".to_string(), "-m".into(), "512".into()]);
    let profiles = dir.join(format!("callgrind-{who}"));
    let _ = std::fs::remove_dir_all(&profiles);
    std::fs::create_dir_all(&profiles)?;
    let valgrind = [
        "--tool=callgrind".to_string(),
        "--separate-threads=yes".into(),
        format!("--callgrind-out-file={}/cg.%p", profiles.display()),
    ];
    let (status, text, stderr) = match weft {
        None => testpmd_under_callgrind(&valgrind, &eal, seconds)?,
        Some((exe, pre)) => {
            let o = Command::new("timeout")
                .args(["-s", "INT", &callgrind_limit(seconds).to_string(), "valgrind"])
                .args(valgrind)
                .arg(exe)
                .args(pre)
                .args(["--seconds", &seconds.to_string(), "--"])
                .args(&eal)
                .output()
                .context("running valgrind (apt install valgrind)")?;
            (o.status, String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
        }
    };
    // testpmd's last TX-packets line is the accumulated one; weft-fwdbench says `forwarded:`.
    let forwarded: Option<u64> = match weft {
        None => text.lines().filter_map(|l| l.trim().strip_prefix("TX-packets:")).next_back(),
        Some(_) => text.lines().find_map(|l| l.strip_prefix("forwarded:")),
    }
    .and_then(|l| l.split_whitespace().next()?.parse().ok());
    // Thread 1 is the main thread (EAL's initialisation, which touches all its memory: more
    // instructions than a short run forwards with).
    let busiest = std::fs::read_dir(&profiles)?
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().ends_with("-01"))
        .filter_map(|e| callgrind_total(&std::fs::read_to_string(e.path()).ok()?))
        .max();
    let _ = std::fs::remove_dir_all(&profiles);
    // Fewer packets would let the thread's start (and testpmd's idle polls before it forwards) count.
    match (forwarded.filter(|&n| n >= 1_000_000), busiest) {
        (Some(n), Some(ir)) => Ok(ir as f64 / n as f64),
        _ => bail!(
            "{who} under callgrind: forwarded {forwarded:?} (1 M at least: more --loop-seconds), busiest thread {busiest:?} instructions ({status}{}):\n{text}\n{stderr}", undecoded(&stderr)
        ),
    }
}

/// Print how the newest run of each benchmark file in `dir` (or of `only`) moved.
fn compare_recorded(dir: &Path, only: Option<&str>) -> anyhow::Result<()> {
    let mut files: Vec<PathBuf> = match only {
        Some(b) => vec![record::file(dir, b)],
        None => std::fs::read_dir(dir)
            .with_context(|| format!("{}: no recorded runs", dir.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect(),
    };
    files.sort();
    for f in files {
        let (records, bad) = record::load(&f).with_context(|| format!("{}: cannot read it", f.display()))?;
        if bad > 0 {
            println!("{}: {bad} lines are not records (skipped)", f.display());
        }
        match record::previous(&records) {
            Some((then, now)) => print!("{}", record::report(then, now)),
            None => println!("{}: no earlier run on this kind of machine to compare with", f.display()),
        }
    }
    Ok(())
}

/// Deletes, however the run ends, the DPDK runtime directories its processes (testpmd, OVS, weft-gen,
/// weft-fwdbench: prefixes named after this process's PID) leave under /var/run/dpdk.
struct Leftovers(String);

impl Drop for Leftovers {
    fn drop(&mut self) {
        testkit::eal::remove_dpdk_leftovers_of_run(&self.0);
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let r = Runner {
        seconds: cli.seconds,
        lcore: cli.lcore,
        tag: std::process::id().to_string(),
        tsc_hz: Default::default(),
    };
    let _leftovers = Leftovers(r.tag.clone());
    let mut results = Vec::new();
    let bench = bench_name(&cli.cmd);
    let results_dir = cli.results.clone().or_else(record::default_dir);
    // The checkout as it is when the run starts, which is what was built and runs: an edit made while a
    // benchmark runs (they take minutes) does not mark the run as another build's.
    let commit = record::commit_of(&std::env::current_dir()?);
    match cli.cmd {
        Cmd::Compare { bench } => {
            let dir = results_dir.context("not in a weft checkout: give --results DIR")?;
            return compare_recorded(&dir, bench.as_deref());
        }
        Cmd::Io => {
            let vdevs = ["net_null0".to_string(), "net_null1".into()];
            let res = compare(
                "io (2x net_null, 64 B)",
                "testpmd io",
                cli.reps,
                |rep| r.testpmd(rep, &vdevs),
                |rep| r.weft("weft-iofwd", rep, &[], &vdevs),
            )?;
            println!("target: ratio >= 0.95");
            results.push(res);
        }
        Cmd::Metrics => {
            let dir = std::env::temp_dir().join(format!("weft-bench-{}", r.tag));
            std::fs::create_dir_all(&dir)?;
            let pcap = dir.join("decap.pcap");
            write_pcap(&pcap, &frames::decap_frames(10, 256, 64))?;
            let vdevs = [format!("net_pcap0,rx_pcap={},infinite_rx=1", pcap.display()), "net_null0,no-rx=1".into()];
            let off = ["--mode".to_string(), "decap".into()];
            let on = ["--mode".to_string(), "decap".into(), "--read-counters".into()];
            let res = compare(
                "decap with counters read as the collector does",
                "metrics off",
                cli.reps,
                |rep| r.weft("weft-fwdbench", rep, &off, &vdevs),
                |rep| r.weft("weft-fwdbench", rep + 100, &on, &vdevs),
            )?;
            println!("target: on/off >= 0.99");
            results.push(res);
            let _ = std::fs::remove_dir_all(&dir);
        }
        Cmd::Swaps { swaps, peers } => {
            let dir = std::env::temp_dir().join(format!("weft-bench-{}", r.tag));
            std::fs::create_dir_all(&dir)?;
            let pcap = dir.join("decap.pcap");
            write_pcap(&pcap, &frames::decap_frames(peers.min(256), 256, 64))?;
            let vdevs = [format!("net_pcap0,rx_pcap={},infinite_rx=1", pcap.display()), "net_null0,no-rx=1".into()];
            let exe = std::env::current_exe()?.with_file_name("weft-fwdbench");
            let mut args = vec![
                "--mode".to_string(),
                "decap".into(),
                "--peers".into(),
                peers.to_string(),
                "--swaps".into(),
                swaps.to_string(),
                "--seconds".into(),
                cli.seconds.to_string(),
                "--".into(),
            ];
            args.extend(r.eal("sw", 0, &vdevs));
            let out = Command::new(&exe).args(&args).output()?;
            let text = String::from_utf8_lossy(&out.stdout);
            anyhow::ensure!(
                out.status.success(),
                "weft-fwdbench failed: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            for l in text.lines().filter(|l| l.starts_with("swaps:") || l.starts_with("forwarded:")) {
                println!("{l}");
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
        Cmd::Pair { traffic: Traffic { modes, peers, size, flows, backend }, duts, transport, search, rate_mpps } => {
            if !testkit::eal::is_root() {
                bail!(
                    "weft-bench pair needs root (hugepages for two DPDK processes, namespaces for the kernel baseline)"
                );
            }
            let base =
                PairRun { r: &r, backend, mode: GenMode::Decap, peers: 0, size, flows, transport, search, rate_mpps };
            results.extend(pair(&r, cli.reps, base, &modes, &peers, &duts)?);
        }
        Cmd::Hostport => {
            let bin = std::env::current_exe()?;
            let dir = bin.parent().context("no directory for weft-bench")?;
            results.extend(weft_bench::hostport::run(dir, cli.reps, cli.seconds)?);
        }
        Cmd::Pcap { mode, backend, peers, flows, size, out } => {
            let f = match mode {
                GenMode::Decap => frames::decap_frames_for(backend.config(), peers, flows, size),
                GenMode::Encap => frames::encap_frames(peers, flows, size),
                GenMode::Mixed => bail!("--mode mixed: write a decap and an encap pcap, one per port"),
            };
            write_pcap(&out, &f)?;
            println!("{}: {} {} frames", out.display(), f.len(), name(mode));
            return Ok(());
        }
        Cmd::Icount { modes, peers, packets, loop_seconds, base } => {
            if modes.contains(&GenMode::Mixed) {
                bail!("--modes mixed: icount counts decap and encap");
            }
            let here = std::env::current_exe()?.parent().context("weft-bench has no directory")?.to_path_buf();
            let mut builds = vec![("weft", here)];
            if let Some(b) = base {
                for exe in ["weft-pathloop", "weft-fwdbench"] {
                    if !b.join(exe).is_file() {
                        bail!("--base {}: no {exe} there", b.display());
                    }
                }
                builds.push(("base", std::fs::canonicalize(b)?));
            }
            let dir = std::env::temp_dir().join(format!("weft-bench-{}", r.tag));
            std::fs::create_dir_all(&dir)?;
            for &mode in &modes {
                for &peers in &peers {
                    let pcap = dir.join("frames.pcap");
                    let frames = match mode {
                        GenMode::Decap => frames::decap_frames(peers, 256, 64),
                        _ => frames::encap_frames(peers, 256, 64),
                    };
                    write_pcap(&pcap, &frames)?;
                    let vdevs =
                        [format!("net_pcap0,rx_pcap={},infinite_rx=1", pcap.display()), "net_null0,no-rx=1".into()];
                    let mut row = serde_json::json!({
                        "bench": format!("vxlan {} ({peers} peers, 256 flows, 64 B inner): instructions per packet", name(mode)),
                        "mode": name(mode), "peers": peers,
                    });
                    let mut line = format!("{} {peers:>6} peers:", name(mode));
                    let tp = loop_instructions(&r, "testpmd", None, &vdevs, loop_seconds, &dir)?;
                    row["testpmd_instructions"] = tp.into();
                    line += &format!(" testpmd io {tp:.1};");
                    for (who, bin) in &builds {
                        let path = path_instructions(&bin.join("weft-pathloop"), &name(mode), peers, packets)?;
                        let pre = ["--mode".to_string(), name(mode), "--peers".into(), peers.to_string()];
                        let whole = loop_instructions(
                            &r,
                            who,
                            Some((&bin.join("weft-fwdbench"), &pre)),
                            &vdevs,
                            loop_seconds,
                            &dir,
                        )?;
                        row[format!("{who}_instructions")] = whole.into();
                        row[format!("{who}_own_instructions")] = (whole - tp).into();
                        row[format!("{who}_path_instructions")] = path.into();
                        line += &format!(" {who} {whole:.1} (own {:.1}, path {path:.1});", whole - tp);
                    }
                    if let (Some(w), Some(b)) =
                        (row["weft_own_instructions"].as_f64(), row["base_own_instructions"].as_f64())
                    {
                        row["own_change_pct"] = ((w / b - 1.0) * 100.0).into();
                        line += &format!(" own {:+.1} %", (w / b - 1.0) * 100.0);
                    }
                    println!("{line}");
                    results.push(row);
                }
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
        Cmd::Fwd { traffic: Traffic { modes, peers, size, flows, backend }, baselines, base_fwdbench } => {
            if backend != Backend::Vxlan && baselines.contains(&Dut::Ovs) {
                bail!("--baselines ovs: OVS-DPDK is a VXLAN baseline; use --baselines testpmd for {}", name(backend));
            }
            let base_exe = match &base_fwdbench {
                Some(p) if !p.is_file() => bail!("--base-fwdbench {}: no such file", p.display()),
                Some(p) => Some(std::fs::canonicalize(p)?.display().to_string()),
                None => None,
            };
            let dir = std::env::temp_dir().join(format!("weft-bench-{}", r.tag));
            std::fs::create_dir_all(&dir)?;
            for &peers in &peers {
                let decap = dir.join("decap.pcap");
                write_pcap(&decap, &frames::decap_frames_for(backend.config(), peers, flows, size))?;
                let encap = dir.join("encap.pcap");
                write_pcap(&encap, &frames::encap_frames(peers, flows, size))?;
                let replay = |i: usize, f: &Path| format!("net_pcap{i},rx_pcap={},infinite_rx=1", f.display());
                for &mode in &modes {
                    // The pcap devices have no TX file, so what is sent to them is dropped (and counted).
                    let vdevs = match mode {
                        GenMode::Decap => vec![replay(0, &decap), "net_null0,no-rx=1".into()],
                        GenMode::Encap => vec![replay(0, &encap), "net_null0,no-rx=1".into()],
                        GenMode::Mixed => vec![replay(0, &decap), replay(1, &encap)],
                    };
                    let mut pre = vec!["--mode".to_string(), name(mode), "--peers".into(), peers.to_string()];
                    // Named only when it is not the default, so an older build (--base-fwdbench) that
                    // predates the flag still runs the vxlan rows.
                    if backend != Backend::Vxlan {
                        pre.extend(["--backend".to_string(), name(backend)]);
                    }
                    let title =
                        format!("{} {} ({peers} peers, {flows} flows, {size} B inner)", name(backend), name(mode));
                    let mut who: Vec<Contender<'_>> = Vec::new();
                    if baselines.contains(&Dut::Testpmd) {
                        who.push(("testpmd", Box::new(|rep| r.testpmd(rep, &vdevs))));
                    }
                    if baselines.contains(&Dut::Ovs) {
                        let ports = [vdevs[0].clone(), vdevs[1].clone()];
                        let ports = if mode == GenMode::Encap { [ports[1].clone(), ports[0].clone()] } else { ports };
                        let r = &r;
                        who.push(("ovs", Box::new(move |rep| ovs_in_process(r, peers, ports.clone(), rep))));
                    }
                    if baselines.iter().any(|b| !matches!(b, Dut::Testpmd | Dut::Ovs)) {
                        bail!("--baselines: in-process baselines are testpmd and ovs (the kernel runs in `pair`)");
                    }
                    if let Some(exe) = &base_exe {
                        let (r, pre, vdevs) = (&r, &pre, &vdevs);
                        who.push(("base", Box::new(move |rep| r.weft(exe, rep + 200, pre, vdevs))));
                    }
                    who.push(("weft", Box::new(|rep| r.weft("weft-fwdbench", rep, &pre, &vdevs))));
                    let mut row = compare_many(&title, cli.reps, who)?;
                    if base_exe.is_some() {
                        // The older build's ratios, and how far this build's moved from them.
                        let mut line = format!("{title}: base");
                        for b in ["testpmd", "ovs"] {
                            let (Some(base), Some(other), Some(now)) = (
                                row["base_mpps"].as_f64(),
                                row[format!("{b}_mpps")].as_f64(),
                                row[format!("ratio_vs_{b}")].as_f64(),
                            ) else {
                                continue;
                            };
                            let then = if other > 0.0 { base / other } else { 0.0 };
                            let drift = if then > 0.0 { (now / then - 1.0) * 100.0 } else { 0.0 };
                            row[format!("base_ratio_vs_{b}")] = then.into();
                            row[format!("drift_pct_vs_{b}")] = drift.into();
                            line += &format!(", base/{b} {then:.3} (weft/{b} {now:.3}, {drift:+.1} %)");
                        }
                        println!("{line}");
                    }
                    if let Some(line) = own_cycles_of(&mut row, r.tsc_hz.get()) {
                        println!("{title}: {line}");
                    }
                    row["topology"] = "in-process: net_pcap replay -> net_null".into();
                    row["backend"] = name(backend).into();
                    row["mode"] = name(mode).into();
                    row["peers"] = peers.into();
                    results.push(row);
                }
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    println!("{}", serde_json::to_string(&results)?);
    match results_dir.filter(|_| !cli.no_record && !results.is_empty()) {
        Some(dir) => {
            let rec = record::Record {
                bench: bench.to_owned(),
                args: std::env::args().skip(1).collect(),
                commit,
                machine: record::Machine::this(),
                time: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs(),
                results,
            };
            let path = record::append(&dir, &rec)?;
            println!("recorded in {}", path.display());
            compare_recorded(&dir, Some(bench))?;
        }
        None if !cli.no_record && !results.is_empty() => {
            println!("not recorded: not in a weft checkout (give --results DIR)");
        }
        None => {}
    }
    Ok(())
}
