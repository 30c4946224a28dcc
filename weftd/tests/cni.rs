//! The `weft` CNI plugin in the netns lab (root, hugepages): run by hand with CNI's environment for
//! every verb and error, and run by a real container runtime (podman with its CNI backend) whose
//! containers reach a pod on a kernel flannel node and a `cni0` pod, and leave nothing behind.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::lab::{exec, ping, Lab, WeftNode};
use testkit::podman::Podman;

const NETWORK_CONFIG: &str = r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#;

/// Labs are named by the process id: one at a time.
static ONE_LAB_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

const PLUGIN: &str = env!("CARGO_BIN_EXE_weft");

fn new_lab() -> Lab {
    Lab::new(Path::new(env!("CARGO_BIN_EXE_weftd")), Path::new(env!("CARGO_BIN_EXE_weftctl")))
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// A lab with etcd, a kernel flannel node (3) and a weft node (1) in etcd mode; the weft node's view
/// of itself has the subnet etcd gave it.
fn etcd_lab() -> (Lab, WeftNode, testkit::lab::KernelNode) {
    let mut lab = new_lab();
    let (n1, k3) = lab.etcd_weft_and_kernel(NETWORK_CONFIG).unwrap_or_else(|e| panic!("{e:#}"));
    (lab, n1, k3)
}

fn subnet_file(lab: &Lab, n: &WeftNode) -> PathBuf {
    lab.dir.join(format!("{}-subnet.env", n.ns))
}

/// The plugin's conf for node `n`, as a conflist carries it.
fn plugin_conf(lab: &Lab, n: &WeftNode, extra: Value) -> Value {
    let mut c = json!({
        "type": "weft",
        "apiSocket": n.api_socket,
        "subnetFile": subnet_file(lab, n),
        "ipamStore": lab.ipam_store(n),
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

/// Run the plugin as a runtime does; (exit success, its stdout as JSON or null).
fn cni(verb: &str, conf: &Value, cid: &str, netns: Option<&str>, ifname: &str) -> (bool, Value) {
    let mut cmd = Command::new(PLUGIN);
    cmd.env("CNI_COMMAND", verb).env("CNI_CONTAINERID", cid).env("CNI_IFNAME", ifname).env("CNI_PATH", "/usr/lib/cni");
    if let Some(ns) = netns {
        cmd.env("CNI_NETNS", ns);
    }
    run_plugin(cmd, conf)
}

fn run_plugin(mut cmd: Command, conf: &Value) -> (bool, Value) {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), conf.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    };
    (out.status.success(), v)
}

fn sh(ns: &str, cmd: &str) -> String {
    let out = exec(ns, &["sh", "-c", cmd]).unwrap();
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn store_file(lab: &Lab, n: &WeftNode, ip: &str) -> PathBuf {
    lab.ipam_store(n).join(ip)
}

fn pods(lab: &Lab, n: &WeftNode) -> Vec<Value> {
    lab.weftctl(n, &["pod", "list"]).unwrap().as_array().unwrap().clone()
}

#[test]
fn the_cni_plugin_speaks_cni_to_weftd() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (mut lab, n1, k3) = etcd_lab();
    let ns = format!("{}-c1", lab.prefix);
    lab.add_ns(&ns).unwrap();
    let nst = format!("{}-t1", lab.prefix);
    lab.add_ns(&nst).unwrap();
    let conf = |extra: Value| {
        let mut c = plugin_conf(&lab, &n1, extra);
        c["cniVersion"] = json!("1.0.0");
        c["name"] = json!("weftnet");
        c
    };
    let tap = conf(json!({"dns": {"nameservers": ["10.96.0.10"]}}));

    // VERSION, with or without a conf.
    let (ok, v) = cni("VERSION", &json!({"cniVersion": "0.4.0"}), "", None, "");
    assert!(ok && v["cniVersion"] == "0.4.0", "{v}");
    assert!(v["supportedVersions"].as_array().unwrap().contains(&json!("1.0.0")), "{v}");

    // ADD: host-local's address over the node's subnet, the interface moved into the namespace as eth0.
    let path = format!("/run/netns/{ns}");
    let cid = "0123456789abcdef0123456789abcdef";
    let (ok, r) = cni("ADD", &tap, cid, Some(&path), "eth0");
    assert!(ok, "ADD: {r:#}");
    let addr = r["ips"][0]["address"].as_str().unwrap().to_owned();
    let ip: Ipv4Addr = addr.split('/').next().unwrap().parse().unwrap();
    let subnet: weft_config::Ipv4Net = n1.subnet.parse().unwrap();
    assert!(subnet.contains(ip) && addr.ends_with("/24"), "{addr} in {subnet}");
    assert_eq!(r["ips"][0]["gateway"], subnet.first_host().to_string());
    assert_eq!(r["interfaces"][0]["name"], "eth0");
    assert_eq!(r["interfaces"][0]["sandbox"], path.as_str());
    assert_eq!(r["routes"], json!([{"dst": "0.0.0.0/0"}]));
    assert_eq!(r["dns"], json!({"nameservers": ["10.96.0.10"]}));
    let link = sh(&ns, "ip -o -4 addr show dev eth0; ip -o link show eth0; ip route");
    assert!(link.contains(&format!("inet {addr}")), "{link}");
    assert!(link.contains("mtu 1450") && link.contains(r["interfaces"][0]["mac"].as_str().unwrap()), "{link}");
    assert!(link.contains(&format!("default via {}", subnet.first_host())), "{link}");
    // host-local's reservation, in the store the cni0 pods share, keyed by the container.
    let held = std::fs::read_to_string(store_file(&lab, &n1, &ip.to_string())).unwrap();
    assert_eq!(held, format!("{cid}\r\neth0"));
    let listed = pods(&lab, &n1);
    assert!(
        listed.iter().any(|p| p["container_id"] == cid && p["ifname"] == "eth0" && p["ip_reserved"] == true),
        "{listed:?}"
    );
    // Traffic, to a pod on the kernel flannel node.
    let _ = ping(&ns, k3.pod_ip, 2, None, false);
    assert_eq!(ping(&ns, k3.pod_ip, 4, None, false), (4, 4), "container -> kernel node pod");

    // CHECK with the previous result; CHECK of a container weft does not have.
    let mut with_prev = tap.clone();
    with_prev["prevResult"] = r.clone();
    let (ok, v) = cni("CHECK", &with_prev, cid, Some(&path), "eth0");
    assert!(ok && v.is_null(), "CHECK: {v}");
    let (ok, v) = cni("CHECK", &with_prev, "nosuch", Some(&path), "eth0");
    assert!(!ok && v["code"] == 100 && v["msg"].as_str().unwrap().contains("no pod for container"), "{v}");
    // Someone took the address off the interface: CHECK says so.
    sh(&ns, &format!("ip addr del {addr} dev eth0"));
    let (ok, v) = cni("CHECK", &with_prev, cid, Some(&path), "eth0");
    assert!(!ok && v["msg"].as_str().unwrap().contains("does not hold"), "{v}");
    sh(&ns, &format!("ip addr add {addr} dev eth0"));

    // A second ADD for the same container and interface: host-local refuses it (its error and code
    // passed on), and the first ADD's address and pod stay.
    let (ok, v) = cni("ADD", &tap, cid, Some(&path), "eth0");
    assert!(!ok && v["msg"].as_str().unwrap().contains("duplicate allocation"), "{v}");
    assert!(store_file(&lab, &n1, &ip.to_string()).exists());
    assert!(pods(&lab, &n1).iter().any(|p| p["container_id"] == cid));

    // CNI's errors: each with its code, as JSON on stdout, exit status 1.
    let (ok, v) =
        cni("ADD", &json!({"cniVersion": "1.0.0", "name": "x", "kind": "macvlan"}), "e1", Some(&path), "eth1");
    assert!(!ok && v["code"] == 7, "invalid config: {v}");
    let (ok, v) = cni("ADD", &json!({"cniVersion": "9.0.0", "name": "x"}), "e1", Some(&path), "eth1");
    assert!(!ok && v["code"] == 1, "incompatible version: {v}");
    let (ok, v) = cni("ADD", &tap, "e1", None, "eth1");
    assert!(!ok && v["code"] == 4 && v["msg"].as_str().unwrap().contains("CNI_NETNS"), "invalid env: {v}");
    let (ok, v) = run_plugin(Command::new(PLUGIN), &tap);
    assert!(!ok && v["code"] == 4 && v["msg"].as_str().unwrap().contains("CNI_COMMAND"), "{v}");
    let (ok, v) = cni("ADD", &json!("{"), "e1", Some(&path), "eth1");
    assert!(!ok && v["code"] == 6, "decode: {v}");
    let (ok, v) = cni(
        "CHECK",
        &{
            let mut c = tap.clone();
            c["cniVersion"] = json!("0.3.1");
            c
        },
        cid,
        Some(&path),
        "eth0",
    );
    assert!(!ok && v["code"] == 1, "CHECK under 0.3.1: {v}");

    // A tap pod (a weft port of its own) in another namespace: traffic, then DEL closes its port.
    let patht = format!("/run/netns/{nst}");
    let ports = |lab: &Lab| lab.weftctl(&n1, &["status"]).unwrap()["ports"].as_array().unwrap().len();
    let before = ports(&lab);
    let (ok, rt) = cni("ADD", &conf(json!({"kind": "tap"})), "t1", Some(&patht), "eth0");
    assert!(ok, "tap ADD: {rt:#}");
    assert_eq!(ports(&lab), before + 1, "a tap pod has a weft port");
    let _ = ping(&nst, k3.pod_ip, 2, None, false);
    assert_eq!(ping(&nst, k3.pod_ip, 3, None, false), (3, 3), "tap container -> kernel node pod");
    assert!(cni("DEL", &conf(json!({"kind": "tap"})), "t1", Some(&patht), "eth0").0);
    assert_eq!(ports(&lab), before, "its port is closed");

    // A vhost pod: its socket in a directory of its own, and a card the pod reads.
    let (ok, rv) = cni("ADD", &conf(json!({"kind": "vhost"})), "vh1", Some(&path), "net1");
    assert!(ok, "vhost ADD: {rv:#}");
    let sock = PathBuf::from(rv["interfaces"][0]["socketPath"].as_str().unwrap());
    assert!(sock.ends_with("vh1/net1.sock") && sock.exists(), "{rv:#}");
    let card: Value = serde_json::from_str(&std::fs::read_to_string(sock.with_extension("json")).unwrap()).unwrap();
    assert_eq!(card["ip"], rv["ips"][0]["address"]);
    assert_eq!((card["mac"].clone(), card["mtu"].clone()), (rv["interfaces"][0]["mac"].clone(), json!(1450)));
    let (ok, v) = cni("DEL", &conf(json!({"kind": "vhost"})), "vh1", Some(&path), "net1");
    assert!(ok, "vhost DEL: {v}");
    assert!(!sock.exists() && !sock.parent().unwrap().exists(), "the socket and its directory are gone");

    // DEL: the pod, its interface and its address go; DEL again, and DEL of the unknown, succeed.
    let (ok, v) = cni("DEL", &with_prev, cid, Some(&path), "eth0");
    assert!(ok && v.is_null(), "DEL: {v}");
    assert!(!pods(&lab, &n1).iter().any(|p| p["container_id"] == cid));
    assert!(!store_file(&lab, &n1, &ip.to_string()).exists(), "host-local released {ip}");
    assert!(!sh(&ns, "ip -o link").contains("eth0"), "the tap interface is gone");
    for id in [cid, "never-added"] {
        let (ok, v) = cni("DEL", &tap, id, Some(&path), "eth0");
        assert!(ok && v.is_null(), "DEL {id} again: {v}");
    }

    // weftd down: ADD asks to try again later and leaves no address taken; DEL still frees, and the
    // next weftd forgets the pod whose namespace went meanwhile.
    let ns2 = format!("{}-c2", lab.prefix);
    lab.add_ns(&ns2).unwrap();
    let path2 = format!("/run/netns/{ns2}");
    let (ok, r2) = cni("ADD", &tap, "c2", Some(&path2), "eth0");
    assert!(ok, "{r2}");
    let ip2 = r2["ips"][0]["address"].as_str().unwrap().split('/').next().unwrap().to_owned();
    lab.stop_weftd(&n1.ns);
    let (ok, v) = cni("ADD", &tap, "c3", Some(&path), "eth1");
    assert!(!ok && v["code"] == 11, "weftd down: {v}");
    let held: Vec<String> = std::fs::read_dir(lab.ipam_store(&n1))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(held.iter().all(|f| !f.starts_with("10.") || *f == ip2), "only c2's address is held: {held:?}");
    let (ok, v) = cni("DEL", &tap, "c2", Some(&path2), "eth0");
    assert!(ok, "DEL without weftd: {v}");
    assert!(!store_file(&lab, &n1, &ip2).exists());
    lab.del_ns(&ns2).unwrap();
    lab.start_weftd_etcd(&n1, &[]).unwrap();
    assert!(pods(&lab, &n1).is_empty(), "the container's pod is forgotten: {:?}", pods(&lab, &n1));
    let log = std::fs::read_to_string(&n1.log).unwrap();
    assert!(log.contains("container gone"), "{log}");
    let st = lab.weftctl(&n1, &["status"]).unwrap();
    assert_eq!(st["state"]["pods_not_restored"], json!([]), "nothing left pending: {st:#}");
}

/// How long podman's network set-up may take on a loaded machine.
const SETTLE: Duration = Duration::from_secs(20);

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + SETTLE;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {SETTLE:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn container_pod(lab: &Lab, n: &WeftNode, cid: &str) -> Option<Value> {
    pods(lab, n).into_iter().find(|p| p["container_id"] == cid)
}

#[test]
fn podman_runs_containers_on_weft() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (mut lab, n1, k3) = etcd_lab();
    let (kpod, kpod_ip) = lab.cni0_pod(&n1, "kp").unwrap();
    // The plugin where the runtime looks: a directory holding `weft` only, before Debian's plugins.
    let bin = lab.dir.join("cni-bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(PLUGIN, bin.join("weft")).unwrap();
    let mut podman = Podman::new(&lab.prefix, &[&bin]).unwrap_or_else(|e| panic!("{e:#}"));
    let net = format!("weft-{}", lab.prefix);
    let conflist = json!({"cniVersion": "1.0.0", "name": net, "plugins": [plugin_conf(&lab, &n1, json!({}))]});
    podman.network(&net, &conflist).unwrap();

    // A container on weft: it reaches the kernel node's pod and the cni0 pod, and is reached.
    let cid = podman.run_detached("wa", &net, "sleep 600").unwrap();
    let pod = container_pod(&lab, &n1, &cid).unwrap_or_else(|| panic!("no pod for {cid}: {:?}", pods(&lab, &n1)));
    let ip: Ipv4Addr = pod["ip"].as_str().unwrap().parse().unwrap();
    assert_eq!((pod["ifname"].as_str(), pod["kind"].as_str()), (Some("eth0"), Some("veth")), "the default kind");
    let host_end = format!("wv-{}", pod["name"].as_str().unwrap());
    assert!(sh(&n1.ns, "ip -o link").contains(&host_end), "the veth's host end {host_end}");
    for (what, dst) in [("kernel node pod", k3.pod_ip), ("cni0 pod", kpod_ip)] {
        let _ = podman.exec("wa", &format!("ping -c 2 -w 5 {dst}"));
        let (ok, text) = podman.exec("wa", &format!("ping -c 4 -w 10 {dst}")).unwrap();
        assert!(ok && text.contains(" 0% packet loss"), "container -> {what} {dst}: {text}");
    }
    assert_eq!(ping(&kpod, ip, 4, None, false), (4, 4), "cni0 pod -> container");
    let (ok, text) = podman.exec("wa", "ip -o link show eth0; ip route").unwrap();
    assert!(ok && text.contains("mtu 1450") && text.contains("default via"), "{text}");

    // podman rm: DEL removes the veth pair and frees the address.
    let ports_with = lab.weftctl(&n1, &["status"]).unwrap()["ports"].as_array().unwrap().len();
    podman.rm("wa").unwrap();
    assert!(container_pod(&lab, &n1, &cid).is_none(), "pod gone after podman rm");
    assert!(!store_file(&lab, &n1, &ip.to_string()).exists(), "address {ip} freed");
    let ports_after = lab.weftctl(&n1, &["status"]).unwrap()["ports"].as_array().unwrap().len();
    assert_eq!(ports_after, ports_with, "a veth pod has no weft port");
    assert!(!sh(&n1.ns, "ip -o link").contains(&host_end), "the veth's host end {host_end} is gone");

    // The runtime killed between ADD and DEL (conmon and the container's process, SIGKILL): nothing
    // runs DEL, the pod stays; the next `podman rm` runs it, and nothing is left behind.
    let cid_b = podman.run_detached("wb", &net, "sleep 600").unwrap();
    let ip_b = container_pod(&lab, &n1, &cid_b).unwrap()["ip"].as_str().unwrap().to_owned();
    let (conmon, pid) = podman.pids("wb").unwrap();
    for p in [conmon, pid] {
        let _ = Command::new("kill").args(["-KILL", &p.to_string()]).status();
    }
    wait_for("the container's process to die", || !Path::new(&format!("/proc/{pid}")).exists());
    assert!(container_pod(&lab, &n1, &cid_b).is_some(), "no DEL ran: the pod is still attached");
    podman.rm("wb").unwrap();
    assert!(container_pod(&lab, &n1, &cid_b).is_none(), "pod gone after the next DEL");
    assert!(!store_file(&lab, &n1, &ip_b).exists(), "address {ip_b} freed");
    assert_eq!(lab.weftctl(&n1, &["status"]).unwrap()["ports"].as_array().unwrap().len(), ports_after);
    // The address is handed out again: host-local, weft and the cni0 pods still share one store.
    let cid_c = podman.run_detached("wc", &net, "sleep 600").unwrap();
    let ip_c = container_pod(&lab, &n1, &cid_c).unwrap()["ip"].as_str().unwrap().to_owned();
    assert_ne!(ip_c, kpod_ip.to_string());
    podman.rm("wc").unwrap();
}

/// `weftctl pod add` as a runtime's hook would call it: a namespace by path, the interface's name, the
/// container's id; weft reserves the address itself (host-local's format, weft's owner). The old form
/// (a name and a namespace name) keeps working beside it.
#[test]
fn weftctl_attaches_by_namespace_path_interface_and_container_id() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (mut lab, n1, k3) = etcd_lab();
    let ns = format!("{}-w1", lab.prefix);
    lab.add_ns(&ns).unwrap();
    let path = format!("/run/netns/{ns}");
    let args = ["pod", "add", "--kind", "tap", "--netns", &path, "--ifname", "net0", "--container-id", "ctr-1"];
    let info = lab.weftctl(&n1, &args).unwrap();
    let ip = info["ip"].as_str().unwrap().to_owned();
    assert_eq!((info["iface"].clone(), info["container_id"].clone()), (json!("net0"), json!("ctr-1")), "{info:#}");
    assert!(!info["ip_reserved"].as_bool().unwrap());
    let name = info["name"].as_str().unwrap().to_owned();
    assert!(name.len() == 12 && name.starts_with('c'), "weft names it: {name}");
    let held = std::fs::read_to_string(store_file(&lab, &n1, &ip)).unwrap();
    assert_eq!(held, format!("weft-{name}\r\nweft"));
    assert!(sh(&ns, "ip -o -4 addr show dev net0").contains(&format!("inet {ip}/24")));
    let _ = ping(&ns, k3.pod_ip, 2, None, false);
    assert_eq!(ping(&ns, k3.pod_ip, 3, None, false), (3, 3));
    // The same container and interface again: refused, naming the pod that has it.
    let e = lab.weftctl(&n1, &args).unwrap_err().to_string();
    assert!(e.contains("exists") && e.contains(&name), "{e}");
    // A bad interface name or container id is refused naming the field.
    let e =
        lab.weftctl(&n1, &["pod", "add", "--kind", "tap", "--netns", &path, "--ifname", "a/b", "--container-id", "x"]);
    assert!(e.unwrap_err().to_string().contains("ifname"));
    let e = lab.weftctl(&n1, &["pod", "add", "--kind", "tap", "--container-id", "a;b"]);
    assert!(e.unwrap_err().to_string().contains("container id"));
    // The old form beside it.
    let (old_ns, old_ip) = lab.tap_pod(&n1, "old").unwrap();
    assert_eq!(ping(&old_ns, k3.pod_ip, 2, None, false), (2, 2), "{old_ip}");
    // Deleted by its key: the interface and the reservation go.
    lab.weftctl(&n1, &["pod", "del", "--container-id", "ctr-1", "--ifname", "net0"]).unwrap();
    assert!(!sh(&ns, "ip -o link").contains("net0"));
    assert!(!store_file(&lab, &n1, &ip).exists());
    assert!(lab.weftctl(&n1, &["pod", "del", "--container-id", "ctr-1", "--ifname", "net0"]).unwrap().is_null());
    lab.weftctl(&n1, &["pod", "del", "old"]).unwrap();
}
