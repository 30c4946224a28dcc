//! Where the kernel handles the frames weft writes to its kernel-facing ports (the host port `weft0`
//! and the tap pods' interfaces, "tap ports" below: all veth pairs now, net_tap taps before).
//!
//! A frame written to such a port enters the kernel's receive path, which could run the host's bridge,
//! routing and netfilter and the receiving pod's TCP on the worker's core, which then forwards nothing
//! else meanwhile. Their NAPI threads are pinned to these CPUs ([`super::host::pin_new_napi`]), and
//! RPS (receive packet steering) on their receive queues hands what is left to another CPU's backlog,
//! as OVS-DPDK and VPP deployments keep their PMD cores for packet I/O. In the kernel-pod benchmark on
//! two CPUs, RPS on net_tap taps took TCP between cni0 pods on two weft nodes from 0.50 to 1.17 Gbit/s.

use std::fs;

use tracing::{info, warn};
use weft_config::node::{cpu_list, KernelCpus};

/// The RPS mask for weft's tap ports, resolved at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Steering {
    pub cpus: Vec<u32>,
    /// The mask as the kernel reads it: 32-bit hex groups, highest first, comma-separated.
    pub mask: String,
}

/// The CPUs for `setting`, given the CPUs the workers run on and the online CPUs; None leaves RPS
/// alone.
pub fn resolve(setting: &KernelCpus, worker_cpus: &[u32], online: &[u32]) -> Option<Steering> {
    let cpus = match setting {
        KernelCpus::Unchanged => return None,
        KernelCpus::List(cpus) => cpus.clone(),
        KernelCpus::NotWorkers => online.iter().copied().filter(|c| !worker_cpus.contains(c)).collect(),
    };
    if cpus.is_empty() {
        return None;
    }
    Some(Steering { mask: mask(&cpus), cpus })
}

/// The kernel's bitmap notation of `cpus` (non-empty).
fn mask(cpus: &[u32]) -> String {
    let top = cpus.iter().max().copied().unwrap_or(0) / 32;
    let mut groups = vec![0u32; top as usize + 1];
    for &c in cpus {
        groups[(c / 32) as usize] |= 1 << (c % 32);
    }
    groups.iter().rev().map(|g| format!("{g:08x}")).collect::<Vec<_>>().join(",")
}

/// Resolve the setting for this process's workers, and say what was chosen.
pub fn for_workers(setting: &KernelCpus, worker_cpus: &[u32]) -> Option<Steering> {
    const ONLINE: &str = "/sys/devices/system/cpu/online";
    let online = match fs::read_to_string(ONLINE).map_err(|e| e.to_string()).and_then(|t| cpu_list(t.trim())) {
        Ok(cpus) => cpus,
        Err(e) if *setting == KernelCpus::NotWorkers => {
            warn!(error = %e, "{ONLINE} unreadable: RPS of the tap ports left as it is (give kernel_cpus)");
            return None;
        }
        Err(_) => Vec::new(),
    };
    let s = resolve(setting, worker_cpus, &online);
    match (&s, setting) {
        (Some(s), _) => {
            info!(cpus = ?s.cpus, workers_on = ?worker_cpus, "the kernel handles what weft writes to its tap ports on these CPUs (RPS)")
        }
        (None, KernelCpus::NotWorkers) => info!(
            workers_on = ?worker_cpus,
            "every online CPU runs a worker: frames weft writes to its tap ports are handled by the kernel on the worker's CPU"
        ),
        (None, _) => {}
    }
    s
}

/// Steer every receive queue of the kernel interface `iface` (in weftd's network namespace). Logged,
/// never fatal: without it the port works, on the worker's CPU.
pub fn steer(iface: &str, s: &Steering) {
    let dir = format!("/sys/class/net/{iface}/queues");
    let queues = match fs::read_dir(&dir) {
        Ok(d) => d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().starts_with("rx-")),
        Err(e) => {
            warn!(iface, error = %e, "no RPS for the tap port: {dir} unreadable");
            return;
        }
    };
    for q in queues {
        let path = q.path().join("rps_cpus");
        if let Err(e) = fs::write(&path, &s.mask) {
            warn!(iface, path = %path.display(), mask = %s.mask, error = %e, "no RPS for the tap port");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_in_the_kernels_notation() {
        assert_eq!(mask(&[0]), "00000001");
        assert_eq!(mask(&[0, 2, 3]), "0000000d");
        assert_eq!(mask(&[1, 33]), "00000002,00000002");
    }

    #[test]
    fn the_cpus_without_workers_by_default() {
        let s = resolve(&KernelCpus::NotWorkers, &[1], &[0, 1, 2, 3]).unwrap();
        assert_eq!((s.cpus, s.mask.as_str()), (vec![0, 2, 3], "0000000d"));
        assert_eq!(resolve(&KernelCpus::NotWorkers, &[0, 1], &[0, 1]), None, "no CPU left: unchanged");
        assert_eq!(resolve(&KernelCpus::Unchanged, &[1], &[0, 1, 2, 3]), None);
        let s = resolve(&KernelCpus::List(vec![5]), &[1], &[0, 1, 2, 3]).unwrap();
        assert_eq!(s.mask, "00000020", "a list is taken as given");
    }
}
