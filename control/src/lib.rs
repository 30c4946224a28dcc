//! weft's control side: flannel's etcd schema and lease logic, without DPDK. The etcd client and watch
//! loop build on these pieces; everything here is plain data and is tested without a server.

pub mod allocate;
pub mod etcd;
pub mod members;
pub mod status;
/// flannel's subnet file lives with the rest of flannel's formats in the config crate (the CNI plugin reads it).
pub use weft_config::subnet_file;
