//! Helpers for tests and tools that start EAL on virtual devices: precondition checks that fail with a
//! message naming what is missing (never a silent skip), and the EAL arguments weft uses everywhere.

use std::fs;
use std::os::unix::fs::MetadataExt;

/// Why this machine cannot run a DPDK test.
#[derive(Debug, thiserror::Error)]
pub enum Precondition {
    #[error("this test needs root (DPDK maps hugepages and creates devices); run it as root, e.g. `sudo make test`")]
    NotRoot,
    #[error("this test needs free 2 MiB hugepages ({free} free) and a hugetlbfs mount ({mounted}); run `make setup` as root")]
    NoHugepages { free: u64, mounted: bool },
}

pub fn is_root() -> bool {
    fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// Free hugepages of the default size, and whether hugetlbfs is mounted.
pub fn hugepages() -> (u64, bool) {
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let free = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("HugePages_Free:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    (free, !hugetlbfs_mounts().is_empty())
}

/// Where hugetlbfs is mounted.
pub fn hugetlbfs_mounts() -> Vec<String> {
    fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split_whitespace().nth(2) == Some("hugetlbfs"))
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .collect()
}

/// Delete what DPDK processes named `<prefix>...` left behind when killed: their hugepage files (which
/// hold their pages until deleted) and their runtime directories under /var/run/dpdk.
pub fn remove_dpdk_leftovers(prefix: &str) {
    remove_dpdk_leftovers_where(|name| name.starts_with(prefix));
}

/// As [`remove_dpdk_leftovers`], for the DPDK processes of one run named `...-<tag>-...` or
/// `...-<tag>` (the benchmarks name their processes' prefixes after their own PID).
pub fn remove_dpdk_leftovers_of_run(tag: &str) {
    let (inner, last) = (format!("-{tag}-"), format!("-{tag}"));
    remove_dpdk_leftovers_where(|name| name.contains(&inner) || name.ends_with(&last));
}

fn remove_dpdk_leftovers_where(matches: impl Fn(&str) -> bool) {
    for dir in hugetlbfs_mounts().iter().map(String::as_str).chain(["/var/run/dpdk"]) {
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            if matches(&e.file_name().to_string_lossy()) {
                let _ = fs::remove_dir_all(e.path()).or_else(|_| fs::remove_file(e.path()));
            }
        }
    }
}

/// Root, at least `min_free` hugepages, and a hugetlbfs mount.
pub fn check_dpdk_preconditions(min_free: u64) -> Result<(), Precondition> {
    if !is_root() {
        return Err(Precondition::NotRoot);
    }
    let (free, mounted) = hugepages();
    if free < min_free || !mounted {
        return Err(Precondition::NoHugepages { free, mounted });
    }
    Ok(())
}

/// EAL arguments for a process on virtual devices only: no PCI scan, its own file prefix (so several
/// DPDK processes coexist), hugepage files unlinked right after mapping (so none are left behind when the
/// process dies, however it dies), quiet logs.
pub fn vdev_eal_args(prefix: &str, lcores: &str, vdevs: &[String]) -> Vec<String> {
    let mut a = vec![
        "-l".to_string(),
        lcores.to_string(),
        "--no-pci".into(),
        "--no-telemetry".into(),
        format!("--file-prefix={prefix}"),
        "--huge-unlink".into(),
        "--log-level=lib.eal:warning".into(),
    ];
    for v in vdevs {
        a.push(format!("--vdev={v}"));
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_hugepages_is_an_error_that_says_what_to_do() {
        let e = check_dpdk_preconditions(u64::MAX).unwrap_err().to_string();
        assert!(e.contains("make setup") || e.contains("root"), "{e}");
    }

    #[test]
    fn eal_args_isolate_the_process() {
        let a = vdev_eal_args("p1", "0,1", &["net_null0".into()]);
        assert!(a.contains(&"--file-prefix=p1".to_string()));
        assert!(a.contains(&"--huge-unlink".to_string()));
        assert!(a.contains(&"--vdev=net_null0".to_string()));
    }
}
