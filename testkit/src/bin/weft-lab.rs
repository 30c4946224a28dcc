//! weft-lab: the demo cluster. Two weft nodes and one kernel flannel node in network namespaces, a
//! pod on each, a ping matrix, a short TCP transfer, and each weft node's status. It ends by itself and
//! leaves nothing behind; `--keep` leaves it up (until Ctrl-C) with commands to try.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use testkit::lab::{exec, ping, Lab};

#[derive(Debug, Parser)]
#[command(name = "weft-lab", about = "weft's demo cluster in network namespaces")]
struct Cli {
    /// Keep the cluster up until Ctrl-C.
    #[arg(long)]
    keep: bool,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("weft-lab: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let dir: PathBuf = std::env::current_exe()?.parent().context("exe dir")?.to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;

    let mut lab = Lab::new(&dir.join("weftd"), &dir.join("weftctl"))?;
    println!("== building the lab: underlay bridge, etcd on a management network, weft nodes n1 and n2 (DPDK,");
    println!(
        "   net_af_packet uplinks), kernel flannel node k3 (flannel.1 + cni0, programmed from etcd like flanneld)"
    );
    lab.start_etcd(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":1,"Port":8472}}"#)?;
    let n1 = lab.weft_node(1)?;
    let n2 = lab.weft_node(2)?;
    let k3 = lab.kernel_node(3, &[])?;
    lab.kernel_flanneld(&k3)?;
    lab.start_weftd_etcd(&n1, &[])?;
    lab.start_weftd_etcd(&n2, &[])?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    for n in [&n1, &n2] {
        while lab.weftctl(n, &["status"]).map(|s| s["tables"]["peers"].as_u64() != Some(2)).unwrap_or(true) {
            anyhow::ensure!(std::time::Instant::now() < deadline, "{} did not learn its peers from etcd", n.ns);
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    println!("\n== leases in etcd (flannel's keys and JSON)");
    let leases = lab.etcdctl(&["get", "--prefix", "/coreos.com/network/subnets/"])?;
    for pair in leases.lines().collect::<Vec<_>>().chunks(2) {
        println!("   {}", pair.join("  "));
    }
    // Let the kernel node's flanneld program the weft nodes' leases.
    std::thread::sleep(std::time::Duration::from_millis(800));
    let (p1, ip1) = lab.tap_pod(&n1, "pa")?;
    let (p2, ip2) = lab.tap_pod(&n2, "pb")?;
    let pods = [
        ("weft n1 pod", p1.clone(), ip1),
        ("weft n2 pod", p2.clone(), ip2),
        ("kernel k3 pod", k3.pod_ns.clone(), k3.pod_ip),
    ];
    for (name, _, ip) in &pods {
        println!("   {name:<14} {ip}");
    }
    // Warm the underlay ARP caches.
    for (_, ns, _) in &pods {
        for (_, _, ip) in &pods {
            let _ = ping(ns, *ip, 1, None, false);
        }
    }
    println!("\n== ping matrix (5 pings each, answered/sent)");
    print!("{:<16}", "from \\ to");
    for (name, _, _) in &pods {
        print!("{name:>16}");
    }
    println!();
    let mut all_ok = true;
    for (from, ns, _) in &pods {
        print!("{from:<16}");
        for (_, _, ip) in &pods {
            let (sent, got) = ping(ns, *ip, 5, None, false);
            all_ok &= sent == got && sent > 0;
            print!("{:>16}", format!("{got}/{sent}"));
        }
        println!();
    }
    println!("\n== 1 MiB TCP transfer, kernel pod -> weft n1 pod, checked by SHA-256");
    let server = "import socket,hashlib\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(('0.0.0.0',5001));s.listen(1);s.settimeout(20)\nc,_=s.accept();h=hashlib.sha256();n=0\nwhile True:\n b=c.recv(65536)\n if not b: break\n h.update(b);n+=len(b)\nc.sendall(f'{n} {h.hexdigest()}'.encode())";
    lab.spawn(&p1, &["/usr/bin/python3", "-c", server], &lab.dir.join("server.log"))?;
    std::thread::sleep(std::time::Duration::from_millis(700));
    let client = format!("import socket,hashlib\nd=bytes(i%251 for i in range(1<<20))\nc=socket.create_connection(('{ip1}',5001),timeout=20);c.sendall(d);c.shutdown(socket.SHUT_WR)\nr=c.recv(200).decode();w=f'{{len(d)}} {{hashlib.sha256(d).hexdigest()}}'\nprint('received', r, 'OK' if r==w else 'MISMATCH')");
    match exec(&k3.pod_ns, &["timeout", "30", "/usr/bin/python3", "-c", &client]) {
        Ok(o) => print!("   {}", String::from_utf8_lossy(&o.stdout)),
        Err(e) => {
            all_ok = false;
            println!("   failed: {e}");
        }
    }
    for n in [&n1, &n2] {
        let st = lab.weftctl(n, &["status"])?;
        println!("\n== weftctl status ({}, subnet {} from etcd)", n.ns, st["node"]["subnet"].as_str().unwrap_or("?"));
        println!("   tables: {}", st["tables"]);
        for p in st["ports"].as_array().into_iter().flatten() {
            println!(
                "   port {:<8} rx {:>6} pkts  tx {:>6} pkts",
                p["name"].as_str().unwrap_or("?"),
                p["rx_packets"],
                p["tx_packets"]
            );
        }
        println!("   drops by reason: {}", st["drops"]);
        println!("   etcd: {}", st["etcd"]);
        for w in st["workers"].as_array().into_iter().flatten() {
            println!(
                "   worker {}: busy {} %, {} cycles per packet, {} packets per busy loop",
                w["id"], w["busy_percent"], w["cycles_per_packet"], w["packets_per_busy_loop"]
            );
        }
        println!("   weftctl peers:");
        for p in lab.weftctl(n, &["peers"])?.as_array().into_iter().flatten() {
            println!(
                "     {:<16} {:<14} vtep {}  next hop {} ({})  {} frames sent",
                p["subnet"].as_str().unwrap_or("?"),
                p["public_ip"].as_str().unwrap_or("?"),
                p["vtep_mac"].as_str().unwrap_or("-"),
                p["next_hop"].as_str().unwrap_or("?"),
                p["next_hop_mac"].as_str().unwrap_or("unresolved"),
                p["tx_packets"]
            );
        }
    }

    println!("\n== weftctl trace 2 on {} while the kernel pod pings its pod once", n1.ns);
    let pinger = {
        let ns = k3.pod_ns.clone();
        std::thread::spawn(move || exec(&ns, &["ping", "-c", "3", "-i", "0.3", &ip1.to_string()]))
    };
    let trace = lab.weftctl(&n1, &["trace", "2", "--seconds", "5"])?;
    let _ = pinger.join();
    for p in trace["packets"].as_array().into_iter().flatten() {
        println!("   worker {} took a frame on {}: {}", p["worker"], p["in"].as_str().unwrap_or("?"), p["verdict"]);
        for (what, key) in [("in ", "received"), ("out", "sent")] {
            for l in p[key].as_array().into_iter().flatten() {
                println!("     {what} {}", l.as_str().unwrap_or(""));
            }
        }
    }
    if cli.keep {
        println!("\n== the lab stays up until Ctrl-C. Try:");
        println!("   ip netns exec {p1} ping {}", k3.pod_ip);
        println!("   {}/weftctl --api-socket {} status", dir.display(), n1.api_socket.display());
        println!("   {}/weftctl --api-socket {} pod add web --kind tap", dir.display(), n1.api_socket.display());
        println!("   {}/weftctl --api-socket {} trace 10", dir.display(), n1.api_socket.display());
        println!("   dpdk-dumpcap --file-prefix={} -i 0 -c 10 -w /tmp/uplink.pcapng", n1.ns);
        println!("   ip netns exec {} tcpdump -ni br0 udp port 8472", lab.underlay_ns);
        println!(
            "   ip netns exec {} etcdctl --endpoints={} get --prefix /coreos.com/network",
            lab.underlay_ns,
            lab.etcd.as_deref().unwrap_or("")
        );
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
    println!("\n== tearing down (processes by PID, namespaces by name)");
    drop(lab);
    anyhow::ensure!(all_ok, "some pings or the transfer failed");
    println!("done");
    Ok(())
}
