//! systemd's service notification (`sd_notify(3)`) for `Type=notify`: `READY=1` once weftd is ready as
//! `/readyz` means it (the lease held, every worker forwarding with a table, the last run's pods back),
//! `WATCHDOG=1` at half of `WATCHDOG_USEC` while every worker makes progress and never while one is
//! stalled (so systemd restarts a weftd whose dataplane hangs), `STATUS=` lines for `systemctl status`,
//! and `STOPPING=1` on the way out. Without `NOTIFY_SOCKET` (not under systemd) it does nothing.
//!
//! The protocol is one datagram per message on the unix socket named by `NOTIFY_SOCKET` (a path, or an
//! abstract name after `@`), so no libsystemd is linked.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

use tracing::warn;

/// A connection to systemd's notification socket and what has been said on it.
pub(super) struct Notifier {
    socket: UnixDatagram,
    to: SocketAddr,
    ready: bool,
    /// Half the watchdog interval systemd asked for, if it asked.
    ping_every: Option<Duration>,
    last_ping: Option<Instant>,
    status: String,
}

impl Notifier {
    /// From `NOTIFY_SOCKET` and `WATCHDOG_USEC` (honoured only when `WATCHDOG_PID` is unset or ours, as
    /// `sd_watchdog_enabled` does); `None` when weftd does not run under a notify service.
    pub(super) fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let path = path.to_string_lossy().into_owned();
        let to = match path.strip_prefix('@') {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name.as_bytes())
            }
            None => SocketAddr::from_pathname(&path),
        };
        let (socket, to) = match (UnixDatagram::unbound(), to) {
            (Ok(s), Ok(to)) => (s, to),
            (Err(e), _) | (_, Err(e)) => {
                warn!(socket = %path, error = %e, "NOTIFY_SOCKET: cannot reach systemd; not notifying");
                return None;
            }
        };
        let ours = !matches!(std::env::var("WATCHDOG_PID"), Ok(p) if p.trim() != std::process::id().to_string());
        let ping_every = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|u| *u > 0 && ours)
            .map(|u| Duration::from_micros(u / 2));
        Some(Notifier { socket, to, ready: false, ping_every, last_ping: None, status: String::new() })
    }

    fn send(&self, msg: &str) {
        if let Err(e) = self.socket.send_to_addr(msg.as_bytes(), &self.to) {
            warn!(error = %e, message = msg, "sd_notify failed");
        }
    }

    /// Called by the metrics thread after each collection: `unready` is why weftd is not ready (as
    /// `/readyz` says it), `stalled` the workers that made no progress lately.
    pub(super) fn tick(&mut self, unready: Option<String>, stalled: &[usize]) {
        let status = match (&unready, stalled) {
            (_, [_, ..]) => format!("workers stalled: {stalled:?}"),
            (Some(why), _) => format!("not ready: {why}"),
            (None, _) => "forwarding".to_string(),
        };
        if !self.ready && unready.is_none() && stalled.is_empty() {
            self.ready = true;
            self.send(&format!("READY=1\nSTATUS={status}"));
            self.status = status;
        } else if status != self.status {
            self.send(&format!("STATUS={status}"));
            self.status = status;
        }
        let Some(every) = self.ping_every else { return };
        // Fed only while every worker makes progress: a hung dataplane lets the watchdog fire.
        if stalled.is_empty() && !matches!(self.last_ping, Some(t) if t.elapsed() < every) {
            self.send("WATCHDOG=1");
            self.last_ping = Some(Instant::now());
        }
    }

    pub(super) fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping");
    }
}
