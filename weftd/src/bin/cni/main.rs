//! `weft`: the CNI plugin (spec 1.0.0; 0.3.x and 0.4.0 results too) that attaches a container's
//! interface to weft. A runtime runs it as `/opt/cni/bin/weft` with `"type": "weft"` in a network's
//! conf; it delegates the address to an IPAM plugin, as main plugins do (host-local over the node's
//! `FLANNEL_SUBNET` by default, in the store the `cni0` pods use), asks weftd over its API socket to
//! attach the pod (a tap interface moved into `CNI_NETNS` as `CNI_IFNAME`, or a vhost-user socket), and
//! prints CNI's result. Errors are CNI's error JSON on stdout with CNI's codes.
//!
//! It does not use the weftd library (nor link DPDK): a runtime starts it for every pod.

mod conf;
mod ipam;
mod result;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde_json::{json, Value};

use conf::{Env, NetConf};

/// Versions this plugin speaks; results are given in the conf's version.
pub const SUPPORTED: [&str; 4] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0"];

/// CNI's error: a code (1-99 are the spec's, 100 and up this plugin's), a message and details.
#[derive(Debug)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> CniError {
        CniError { code, msg: msg.into(), details: details.into() }
    }
}

/// CNI's well-known error codes.
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO: u32 = 5;
    pub const DECODE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// weftd refused the request (its reason is the message).
    pub const WEFTD_REFUSED: u32 = 100;
    /// The IPAM plugin failed (its own error is passed on when it gave one).
    pub const IPAM: u32 = 101;
}

fn main() {
    let mut stdin = Vec::new();
    let version_hint = std::io::stdin().read_to_end(&mut stdin).ok().and_then(|_| conf::version_of(&stdin));
    let out = match run(&stdin) {
        Ok(Some(v)) => v,
        Ok(None) => return,
        Err(e) => {
            let v = version_hint.unwrap_or_else(|| "1.0.0".to_owned());
            println!("{}", json!({"cniVersion": v, "code": e.code, "msg": e.msg, "details": e.details}));
            std::process::exit(1);
        }
    };
    println!("{out}");
}

fn run(stdin: &[u8]) -> Result<Option<Value>, CniError> {
    let command = std::env::var("CNI_COMMAND").map_err(|_| {
        CniError::new(code::INVALID_ENV, "CNI_COMMAND is not set", "this is a CNI plugin: a container runtime runs it")
    })?;
    if command == "VERSION" {
        let v = conf::version_of(stdin).unwrap_or_else(|| "1.0.0".to_owned());
        return Ok(Some(json!({"cniVersion": v, "supportedVersions": SUPPORTED})));
    }
    let conf = NetConf::parse(stdin)?;
    let env = Env::from_process(&command)?;
    match command.as_str() {
        "ADD" => add(&conf, &env).map(Some),
        "DEL" => del(&conf, &env).map(|()| None),
        "CHECK" => check(&conf, &env).map(|()| None),
        other => Err(CniError::new(code::INVALID_ENV, format!("CNI_COMMAND {other:?} is not a CNI verb"), "")),
    }
}

/// One request to weftd, one answer: `Ok(result)` or weftd's refusal. Unreachable is "try again later".
fn weftd(conf: &NetConf, req: &Value) -> Result<Value, CniError> {
    let sock = &conf.api_socket;
    let unreachable = |e: std::io::Error| {
        CniError::new(
            code::TRY_AGAIN_LATER,
            format!("weftd is not reachable at {sock}: {e}"),
            "is weftd running? (apiSocket)",
        )
    };
    let mut s = UnixStream::connect(sock).map_err(unreachable)?;
    s.set_read_timeout(Some(Duration::from_secs(60))).map_err(unreachable)?;
    s.set_write_timeout(Some(Duration::from_secs(10))).map_err(unreachable)?;
    writeln!(s, "{req}").map_err(unreachable)?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).map_err(unreachable)?;
    let resp: Value = serde_json::from_str(&line)
        .map_err(|e| CniError::new(code::IO, "weftd's answer is not JSON", format!("{e}: {line:?}")))?;
    if resp["ok"].as_bool() == Some(true) {
        Ok(resp["result"].clone())
    } else {
        Err(CniError::new(code::WEFTD_REFUSED, resp["error"].as_str().unwrap_or("weftd refused").to_owned(), ""))
    }
}

fn add(conf: &NetConf, env: &Env) -> Result<Value, CniError> {
    let netns = env.netns.as_deref().ok_or_else(|| {
        CniError::new(code::INVALID_ENV, "CNI_NETNS is not set", "ADD needs the container's network namespace")
    })?;
    let lease = ipam::exec(conf, env, "ADD")?;
    let lease = ipam::Lease::from_result(&lease)?;
    let req = json!({
        "cmd": "pod_add", "kind": conf.kind, "ip": lease.ip.to_string(), "netns": netns,
        "ifname": env.ifname, "container_id": env.container_id, "ip_reserved": true,
        "routes": lease.routes, "vhost_client": conf.vhost_client,
    });
    let pod = match weftd(conf, &req) {
        Ok(p) => p,
        Err(e) => {
            // Leave nothing behind: the address goes back to the IPAM plugin.
            if let Err(d) = ipam::exec(conf, env, "DEL") {
                eprintln!("weft: releasing {} after a failed ADD: {}", lease.ip, d.msg);
            }
            return Err(e);
        }
    };
    Ok(result::result(conf, env, netns, &lease, &pod))
}

fn del(conf: &NetConf, env: &Env) -> Result<(), CniError> {
    let req = json!({"cmd": "pod_del", "container_id": env.container_id, "ifname": env.ifname});
    let detached = match weftd(conf, &req) {
        Ok(_) => Ok(()),
        // weftd down: it has no port for the pod now, and at its start it forgets pods whose namespace
        // is gone; the address is freed here either way.
        Err(e) if e.code == code::TRY_AGAIN_LATER => {
            eprintln!("weft: DEL without weftd: {}", e.msg);
            Ok(())
        }
        Err(e) => Err(e),
    };
    ipam::exec(conf, env, "DEL")?;
    detached
}

fn check(conf: &NetConf, env: &Env) -> Result<(), CniError> {
    if conf.cni_version.starts_with("0.3.") {
        let msg = format!("CHECK is not defined for cniVersion {} (0.4.0 and later)", conf.cni_version);
        return Err(CniError::new(code::INCOMPATIBLE_VERSION, msg, ""));
    }
    if env.netns.is_none() {
        return Err(CniError::new(
            code::INVALID_ENV,
            "CNI_NETNS is not set",
            "CHECK needs the container's network namespace",
        ));
    }
    let req = json!({"cmd": "pod_check", "container_id": env.container_id, "ifname": env.ifname});
    let pod = weftd(conf, &req)?;
    if let Some(prev) = conf.prev_result.as_ref() {
        let want = ipam::Lease::from_result(prev)?;
        let have = pod["ip"].as_str().unwrap_or_default();
        if have != want.ip.to_string() {
            return Err(CniError::new(
                code::WEFTD_REFUSED,
                format!("the pod holds {have}, the previous result says {}", want.ip),
                "",
            ));
        }
    }
    ipam::exec(conf, env, "CHECK").map(drop)
}
