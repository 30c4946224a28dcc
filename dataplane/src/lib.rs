//! weft's fast path: the safe DPDK layer ([`dpdk`]), the tables the control side publishes ([`tables`]),
//! the packet paths ([`packet`]), the poll-mode workers ([`worker`]) and the vhost-user devices they
//! serve ([`vhost_devices`]). The wire formats come from the DPDK-free `weft-wire` crate; the daemon
//! around all this is the `weftd` crate.
#![deny(unsafe_code)]

/// The wire formats, from their own DPDK-free crate.
pub use weft_wire as wire;

pub mod dpdk;
pub mod packet;
pub mod tables;
pub mod trace;
pub mod vhost_devices;
pub mod worker;
