//! weft's benchmarks: forwarding loops measured against baselines (dpdk-testpmd, OVS-DPDK, the kernel)
//! in the same invocation and reported as ratios, because absolute figures on a shared 2-core machine
//! are noise.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub mod frames;
pub mod hostport;
pub mod kernel;
pub mod ovs;
pub mod record;
pub mod replay;
pub mod stats;

/// Stop a child the benchmark started: `signal` first (SIGINT lets DPDK close its ports and sockets),
/// SIGKILL if it has not exited within 10 s.
pub fn stop_child(child: &mut Child, signal: &str) {
    let _ = Command::new("kill").args([signal, &child.id().to_string()]).status();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}
