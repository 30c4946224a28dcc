//! weftd as a library: the process around the fast path. EAL, the uplink and the worker pool; pods and
//! their ports; the slow path (underlay ARP); the control API and the metrics/health endpoints. The
//! `weftd` and `weftctl` binaries are thin edges over it.

pub mod daemon;
