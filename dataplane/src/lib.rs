//! weft's dataplane: the safe DPDK layer ([`dpdk`]), DPDK-agnostic wire formats ([`wire`]), and the
//! poll-mode packet paths of `weftd`.
#![deny(unsafe_code)]

pub mod daemon;
pub mod dpdk;
pub mod lab;
pub mod packet;
pub mod tables;
pub mod testing;
pub mod wire;
pub mod worker;
