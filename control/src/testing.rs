//! A real etcd for tests and the lab: Debian's `etcd` started on free loopback ports with its data in a
//! temporary directory, stopped by PID on drop. Clusters of several members too.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One etcd member.
#[derive(Debug)]
pub struct EtcdMember {
    pub name: String,
    pub client_url: String,
    peer_url: String,
    dir: PathBuf,
    child: Option<Child>,
    cluster: String,
    state: &'static str,
}

/// A running etcd cluster (one member or more).
#[derive(Debug)]
pub struct EtcdServer {
    pub members: Vec<EtcdMember>,
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
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| std::io::Error::new(e.kind(), format!("starting etcd (apt-get install etcd-server): {e}")))?;
        self.child = Some(child);
        Ok(())
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
        let base = std::env::temp_dir().join(format!("weft-etcd-{}-{}", std::process::id(), free_port()?));
        std::fs::create_dir_all(&base)?;
        let mut members = Vec::new();
        for i in 0..n {
            members.push(EtcdMember {
                name: format!("m{i}"),
                client_url: format!("http://127.0.0.1:{}", free_port()?),
                peer_url: format!("http://127.0.0.1:{}", free_port()?),
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
        let s = EtcdServer { members };
        s.wait_healthy(Duration::from_secs(30))?;
        Ok(s)
    }

    /// Comma-separated client URLs (flannel's --etcd-endpoints).
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// Wait until every running member answers `etcdctl endpoint health` (a quorum read through it).
    pub fn wait_healthy(&self, timeout: Duration) -> std::io::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
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
