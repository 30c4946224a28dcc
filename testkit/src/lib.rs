//! weft's test kit: what tests, benchmarks and `make demo` share, and no production crate ships. The
//! netns lab ([`lab`]: weft nodes, kernel flannel nodes, pods, etcd on a management network), a real
//! etcd cluster on loopback ([`etcd`]), a sandboxed podman with its CNI backend ([`podman`]), the checks that a machine can run DPDK tests ([`eal`]), and
//! the byte fixtures kept in the repository ([`fixtures`]).

pub mod eal;
pub mod etcd;
pub mod fixtures;
pub mod lab;
pub mod podman;
