//! weft's benchmarks: forwarding loops measured against baselines (dpdk-testpmd first) in the same
//! invocation and reported as ratios, because absolute figures on a shared 2-core machine are noise.

pub mod frames;
pub mod kernel;
pub mod ovs;
pub mod replay;
pub mod stats;
