//! The etcd members weft talks to, one client per endpoint, and which of them to use.
//!
//! etcd-client balances requests over every endpoint it is given and keeps a dead one in the balancer,
//! so with one member of three down about a third of the requests fail ("tcp connect error"). Go's
//! clientv3 (etcdctl, flanneld) avoids that by pinning one healthy endpoint and moving on failure. weft
//! does the same: one `Client` per endpoint, a member is used while it answers and has a leader, and an
//! idempotent call that fails for a reason another member might not have (unavailable, timeout, no
//! leader) is tried again on the next healthy member before it counts as a failure.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};

use tracing::{info, warn};

use crate::status::{cause, ControlStatus};

/// How long a member may take to answer `Status` before it counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether another member might serve a call that failed with `e`: the member is gone, timed out, or
/// has no leader. Refusals (not found, permission, bad request) are the same everywhere.
pub fn worth_another_member(e: &etcd_client::Error) -> bool {
    use etcd_client::Error;
    use tonic::Code;
    match e {
        Error::GRpcStatus(s) => {
            matches!(
                s.code(),
                Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled | Code::Aborted
            )
        }
        Error::TransportError(_) | Error::IoError(_) | Error::WatchError(_) => true,
        _ => false,
    }
}

/// The configured endpoints and the one in use.
pub struct Members {
    urls: Vec<String>,
    opts: ConnectOptions,
    clients: Vec<Option<Client>>,
    current: usize,
    /// The last complaint logged per member (logged again only when it changes).
    said: Vec<String>,
    status: Arc<ControlStatus>,
}

impl std::fmt::Debug for Members {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Members").field("urls", &self.urls).field("current", &self.current).finish()
    }
}

impl Members {
    pub fn new(urls: Vec<String>, opts: ConnectOptions, status: Arc<ControlStatus>) -> Members {
        let n = urls.len();
        Members { urls, opts, clients: vec![None; n], current: 0, said: vec![String::new(); n], status }
    }

    pub fn len(&self) -> usize {
        self.urls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// The endpoint in use.
    pub fn current_url(&self) -> &str {
        &self.urls[self.current]
    }

    async fn client(&mut self, i: usize) -> Result<Client, etcd_client::Error> {
        if let Some(c) = &self.clients[i] {
            return Ok(c.clone());
        }
        let c = Client::connect([self.urls[i].as_str()], Some(self.opts.clone())).await?;
        self.clients[i] = Some(c.clone());
        Ok(c)
    }

    /// Member `i` if it answers within a second and has a leader.
    async fn probe(&mut self, i: usize) -> Result<Client, String> {
        let mut c = self.client(i).await.map_err(|e| cause(&e))?;
        match tokio::time::timeout(PROBE_TIMEOUT, c.status()).await {
            Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
            Ok(Err(e)) => {
                // A client that authenticates at connect (user/password) must do so again.
                if !matches!(e, etcd_client::Error::GRpcStatus(_)) {
                    self.clients[i] = None;
                }
                Err(cause(&e))
            }
            Ok(Ok(s)) if s.leader() == 0 => Err("the member has no leader".into()),
            Ok(Ok(_)) => Ok(c),
        }
    }

    /// A healthy member, the one in use first, then the others in order; `None` when none is.
    pub async fn healthy(&mut self) -> Option<Client> {
        let n = self.urls.len();
        for k in 0..n {
            let i = (self.current + k) % n;
            match self.probe(i).await {
                Ok(c) => {
                    if !self.said[i].is_empty() {
                        info!(member = %self.urls[i], "etcd member answers again");
                        self.said[i].clear();
                    }
                    if i != self.current {
                        info!(member = %self.urls[i], was = %self.urls[self.current], "using another etcd member");
                        self.status.failovers.fetch_add(1, Ordering::Relaxed);
                        self.current = i;
                    }
                    return Some(c);
                }
                Err(why) => {
                    if self.said[i] != why {
                        warn!(member = %self.urls[i], error = %why, "etcd member unusable");
                        self.status.set_last_error(format!("{}: {why}", self.urls[i]));
                        self.said[i] = why;
                    }
                }
            }
        }
        None
    }

    /// The member in use failed: prefer the next one from now on.
    pub fn skip_current(&mut self) {
        if self.urls.len() > 1 {
            self.status.failovers.fetch_add(1, Ordering::Relaxed);
        }
        self.current = (self.current + 1) % self.urls.len();
    }
}
