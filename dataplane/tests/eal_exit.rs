//! An EAL kept for the whole process (`Eal::clean_up_at_exit`, as a test binary's shared EAL in a
//! `static`) leaves nothing behind when the process exits: the test runs itself as a child process and
//! looks for the child's EAL runtime directory afterwards. Needs root and hugepages; fails (does not
//! skip) without.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

use std::path::Path;
use std::process::Command;

use dataplane::dpdk::Eal;
use testkit::eal::{check_dpdk_preconditions, vdev_eal_args};

const CHILD: &str = "WEFT_EAL_EXIT_CHILD";
const TEST: &str = "eal_kept_for_the_process_is_cleaned_up_at_exit";

#[test]
fn eal_kept_for_the_process_is_cleaned_up_at_exit() {
    if let Ok(prefix) = std::env::var(CHILD) {
        // The child: EAL up, its runtime directory there, then kept until exit.
        let eal = Eal::init(&vdev_eal_args(&prefix, "0", &["net_null0".to_string()])).unwrap();
        assert!(Path::new("/var/run/dpdk").join(&prefix).is_dir(), "EAL made no runtime directory");
        eal.clean_up_at_exit().unwrap();
        return;
    }
    check_dpdk_preconditions(8).unwrap_or_else(|e| panic!("{e}"));
    let prefix = format!("weft-exit-{}", std::process::id());
    let dir = Path::new("/var/run/dpdk").join(&prefix);
    let out = Command::new(std::env::current_exe().unwrap())
        .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, &prefix)
        .output()
        .unwrap();
    let left = dir.exists();
    // Whatever the child left, this test does not leave it.
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "child failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"), "the child ran no test");
    assert!(!left, "{} is left after the child exited", dir.display());
}
