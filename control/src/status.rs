//! What the control side reports about etcd, shared by the session (`etcd`) and the member choice
//! (`members`) without either importing the other.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64};

/// Counters and state for status and metrics.
#[derive(Debug, Default)]
pub struct ControlStatus {
    /// True only while the watch is live on a member that has a leader.
    pub connected: AtomicBool,
    pub revision: AtomicI64,
    pub resyncs: AtomicU64,
    pub bad_values: AtomicU64,
    /// Unix time at which our lease expires unless renewed.
    pub lease_expiry: AtomicI64,
    pub reacquired: AtomicU64,
    /// Times another node wrote our subnet's key with its own PublicIP.
    pub conflicts: AtomicU64,
    /// Set while our subnet's key names another node (u32 of its PublicIP; 0 when ours).
    pub claimed_by: std::sync::atomic::AtomicU32,
    /// Calls that failed on one member and were tried again on another.
    pub rpc_retries: AtomicU64,
    /// Calls that failed on every member (the session is then rebuilt).
    pub rpc_failures: AtomicU64,
    /// Times weft moved to another member.
    pub failovers: AtomicU64,
    /// Watches established (one per session; a steady connection keeps one).
    pub watches: AtomicU64,
    /// Set when `<prefix>/config` in etcd no longer says what this node started with: the change
    /// needs a restart, as with flanneld.
    pub config_changed: AtomicBool,
    /// The last thing that went wrong talking to etcd (a member, a TLS handshake), for status.
    last_error: std::sync::Mutex<String>,
}

impl ControlStatus {
    pub fn set_last_error(&self, e: String) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }

    pub fn last_error(&self) -> String {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// An error with its chain of causes (a TLS failure is three levels down a transport error).
pub(crate) fn cause(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}
