//! A real etcd for tests and the lab: Debian's `etcd` started on free loopback ports with its data in a
//! temporary directory, stopped by PID on drop. Clusters of several members too.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Ports for test servers come from below the kernel's ephemeral range (32768-60999 by default), so no
/// client socket of any process is ever given one by the kernel. Which process may use a port is
/// decided by an exclusive lock on a file named after it, held as long as the server runs: parallel
/// tests and parallel test binaries never get the same port, and a port is checked free by binding it.
/// (Binding port 0 and releasing it, as before, raced with every other socket on the machine.)
const PORT_RANGE: std::ops::Range<u32> = 20000..32000;

/// A loopback port reserved for this process until dropped.
#[derive(Debug)]
pub struct PortLease {
    pub port: u16,
    _lock: std::fs::File,
}

static NEXT_PORT: AtomicU32 = AtomicU32::new(0);

/// Reserve a free loopback port (see [`PORT_RANGE`]).
pub fn reserve_port() -> std::io::Result<PortLease> {
    let dir = std::env::temp_dir().join("weft-test-ports");
    std::fs::create_dir_all(&dir)?;
    let span = PORT_RANGE.end - PORT_RANGE.start;
    // Start at a different place in each process so they rarely even try the same ports.
    let _ = NEXT_PORT.compare_exchange(
        0,
        std::process::id().wrapping_mul(7919) % span + 1,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..span {
        let port = (PORT_RANGE.start + NEXT_PORT.fetch_add(1, Ordering::Relaxed) % span) as u16;
        let file =
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(port.to_string()))?;
        if file.try_lock().is_err() {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        return Ok(PortLease { port, _lock: file });
    }
    Err(std::io::Error::other(format!("no free port in {PORT_RANGE:?}")))
}

/// One etcd member.
#[derive(Debug)]
pub struct EtcdMember {
    pub name: String,
    pub client_url: String,
    peer_url: String,
    _ports: [PortLease; 2],
    dir: PathBuf,
    child: Option<Child>,
    cluster: String,
    state: &'static str,
    extra: Vec<String>,
}

/// A running etcd cluster (one member or more).
#[derive(Debug)]
pub struct EtcdServer {
    pub members: Vec<EtcdMember>,
    /// Extra etcdctl flags (the CA of an https cluster).
    pub etcdctl_args: Vec<String>,
}

impl EtcdMember {
    fn spawn(&mut self) -> std::io::Result<()> {
        let log = std::fs::File::create(self.dir.with_extension("log"))?;
        let child = Command::new("etcd")
            .args(["--name", &self.name, "--data-dir"])
            .arg(&self.dir)
            .args(["--listen-client-urls", &self.client_url, "--advertise-client-urls", &self.client_url])
            .args(["--listen-peer-urls", &self.peer_url, "--initial-advertise-peer-urls", &self.peer_url])
            .args(["--initial-cluster", &self.cluster, "--initial-cluster-state", self.state])
            .args(["--initial-cluster-token", "weft-test"])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| std::io::Error::new(e.kind(), format!("starting etcd (apt-get install etcd-server): {e}")))?;
        self.child = Some(child);
        Ok(())
    }

    /// Stop (SIGSTOP) this member: it keeps its sockets but answers nothing, as a hung or partitioned
    /// member does.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Let a paused member run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill").arg(sig).arg(c.id().to_string()).status();
        }
    }

    /// Whether the member's process has exited, with its status.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Kill (SIGKILL) this member.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again on the same ports and data.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.kill();
        self.state = "existing";
        self.spawn()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default()
    }
}

impl EtcdServer {
    /// A single-member etcd.
    pub fn start() -> std::io::Result<EtcdServer> {
        Self::cluster(1)
    }

    /// An n-member etcd cluster on loopback; waits until it answers.
    pub fn cluster(n: usize) -> std::io::Result<EtcdServer> {
        Self::cluster_with(n, "http", &[], None)
    }

    /// An n-member cluster whose clients use `scheme` (`https` with `client_args` naming the server's
    /// certificate and key, and `ca` the CA that etcdctl trusts); members talk to each other over
    /// plain http.
    pub fn cluster_with(
        n: usize,
        scheme: &str,
        client_args: &[String],
        ca: Option<&std::path::Path>,
    ) -> std::io::Result<EtcdServer> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let base = std::env::temp_dir().join(format!(
            "weft-etcd-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base)?;
        let mut members = Vec::new();
        for i in 0..n {
            let (client, peer) = (reserve_port()?, reserve_port()?);
            members.push(EtcdMember {
                name: format!("m{i}"),
                client_url: format!("{scheme}://127.0.0.1:{}", client.port),
                peer_url: format!("http://127.0.0.1:{}", peer.port),
                _ports: [client, peer],
                extra: client_args.to_vec(),
                dir: base.join(format!("m{i}")),
                child: None,
                cluster: String::new(),
                state: "new",
            });
        }
        let cluster = members.iter().map(|m| format!("{}={}", m.name, m.peer_url)).collect::<Vec<_>>().join(",");
        for m in &mut members {
            m.cluster = cluster.clone();
            m.spawn()?;
        }
        let etcdctl_args = ca.map(|c| vec![format!("--cacert={}", c.display())]).unwrap_or_default();
        let mut s = EtcdServer { members, etcdctl_args };
        s.wait_healthy(Duration::from_secs(30))?;
        Ok(s)
    }

    /// Comma-separated client URLs (flannel's --etcd-endpoints).
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// Wait until every running member answers `etcdctl endpoint health` (a quorum read through it).
    pub fn wait_healthy(&mut self, timeout: Duration) -> std::io::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            for m in &mut self.members {
                if let Some(st) = m.exited() {
                    m.child = None;
                    return Err(std::io::Error::other(format!(
                        "etcd member {} exited ({st}) before it was healthy:\n{}",
                        m.name,
                        m.log()
                    )));
                }
            }
            let live: Vec<String> =
                self.members.iter().filter(|m| m.child.is_some()).map(|m| m.client_url.clone()).collect();
            if live.iter().all(|ep| self.etcdctl_at(std::slice::from_ref(ep), &["endpoint", "health"]).is_ok()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = self.members.iter().map(|m| m.log()).collect();
                return Err(std::io::Error::other(format!("etcd did not become healthy:\n{}", logs.join("\n"))));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn etcdctl_at(&self, endpoints: &[String], args: &[&str]) -> std::io::Result<String> {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", endpoints.join(",")))
            .arg("--dial-timeout=2s")
            .arg("--command-timeout=5s")
            .args(&self.etcdctl_args)
            .args(args)
            .output()?;
        if !out.status.success() {
            return Err(std::io::Error::other(format!(
                "etcdctl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Run etcdctl (v3 API) against the cluster.
    pub fn etcdctl(&self, args: &[&str]) -> std::io::Result<String> {
        let live: Vec<String> =
            self.members.iter().filter(|m| m.child.is_some()).map(|m| m.client_url.clone()).collect();
        self.etcdctl_at(&live, args)
    }

    /// Put a value; retried for up to 15 s, since a cluster that just lost its leader answers nothing
    /// until it has elected another.
    pub fn put(&self, key: &str, value: &str) -> std::io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match self.etcdctl(&["put", key, value]) {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    pub fn get(&self, key: &str) -> std::io::Result<Option<String>> {
        let out = self.etcdctl(&["get", key, "--print-value-only"])?;
        let v = out.trim_end_matches('\n');
        Ok(if v.is_empty() { None } else { Some(v.to_owned()) })
    }

    pub fn delete(&self, key: &str) -> std::io::Result<()> {
        self.etcdctl(&["del", key]).map(|_| ())
    }

    /// Keys under a prefix.
    pub fn keys(&self, prefix: &str) -> std::io::Result<Vec<String>> {
        Ok(self
            .etcdctl(&["get", prefix, "--prefix", "--keys-only"])?
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// Compact the history up to the current revision.
    pub fn compact(&self) -> std::io::Result<()> {
        let status = self.etcdctl(&["endpoint", "status", "-w", "json"])?;
        let rev = status
            .split("\"revision\":")
            .nth(1)
            .and_then(|s| s.split([',', '}']).next())
            .and_then(|s| s.trim().parse::<i64>().ok())
            .ok_or_else(|| std::io::Error::other(format!("no revision in {status}")))?;
        self.etcdctl(&["compact", &rev.to_string()]).map(|_| ())
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        for m in &mut self.members {
            m.kill();
        }
        if let Some(base) = self.members.first().and_then(|m| m.dir.parent().map(PathBuf::from)) {
            let _ = std::fs::remove_dir_all(base);
        }
    }
}
