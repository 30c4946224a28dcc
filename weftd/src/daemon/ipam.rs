//! One address store for the node's subnet, shared with host-local, the IPAM plugin that flannel's CNI
//! plugin delegates to for the kernel pods on cni0: weft reserves its pods' addresses in host-local's own
//! store (`/var/lib/cni/networks/<network>`: one file per address, named by it, holding
//! `<id>\r\n<ifname>`, created with O_EXCL under an flock of `<dir>/lock`), so neither ever hands out an
//! address the other has. weft's reservations carry the id `weft-<pod>` and the ifname `weft`.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// host-local's store directory for one CNI network.
#[derive(Debug, Clone)]
pub struct HostLocalStore {
    dir: PathBuf,
}

/// Held while the store is read or changed (host-local takes the same lock).
struct Locked(File);

impl Drop for Locked {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

fn id_of(pod: &str) -> String {
    format!("weft-{pod}")
}

impl HostLocalStore {
    pub fn new(dir: &Path) -> HostLocalStore {
        HostLocalStore { dir: dir.to_owned() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> std::io::Result<Locked> {
        std::fs::create_dir_all(&self.dir)?;
        let f = OpenOptions::new().create(true).truncate(false).write(true).open(self.dir.join("lock"))?;
        f.lock()?;
        Ok(Locked(f))
    }

    fn file(&self, ip: Ipv4Addr) -> PathBuf {
        self.dir.join(ip.to_string())
    }

    /// Who holds `ip` in the store: its id, or None when it is free.
    fn holder(&self, ip: Ipv4Addr) -> std::io::Result<Option<String>> {
        match std::fs::read_to_string(self.file(ip)) {
            Ok(t) => Ok(Some(t.split(['\r', '\n']).next().unwrap_or_default().trim().to_owned())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn create(&self, ip: Ipv4Addr, pod: &str) -> std::io::Result<bool> {
        let mut f = match OpenOptions::new().write(true).create_new(true).open(self.file(ip)) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(e),
        };
        if let Err(e) = f.write_all(format!("{}\r\nweft", id_of(pod)).as_bytes()).and_then(|_| f.sync_all()) {
            let _ = std::fs::remove_file(self.file(ip));
            return Err(e);
        }
        Ok(true)
    }

    /// Reserve `wanted` for `pod` (already ours counts: a restart), or else the first of `candidates`
    /// that nobody holds. `Ok(None)`: `wanted` is someone else's, or no candidate is free.
    pub fn reserve(
        &self,
        pod: &str,
        wanted: Option<Ipv4Addr>,
        candidates: impl Iterator<Item = Ipv4Addr>,
    ) -> std::io::Result<Option<Ipv4Addr>> {
        let _held = self.lock()?;
        if let Some(ip) = wanted {
            return Ok(match self.holder(ip)? {
                Some(h) if h == id_of(pod) => Some(ip),
                Some(_) => None,
                None => self.create(ip, pod)?.then_some(ip),
            });
        }
        for ip in candidates {
            if self.create(ip, pod)? {
                return Ok(Some(ip));
            }
        }
        Ok(None)
    }

    /// Give `ip` back, if `pod` holds it.
    pub fn release(&self, pod: &str, ip: Ipv4Addr) -> std::io::Result<()> {
        let _held = self.lock()?;
        if self.holder(ip)?.is_some_and(|h| h == id_of(pod)) {
            std::fs::remove_file(self.file(ip))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (HostLocalStore, PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("weft-ipam-{}-{:?}", std::process::id(), std::thread::current().id()));
        let _ = std::fs::remove_dir_all(&dir);
        (HostLocalStore::new(&dir), dir)
    }

    fn hosts() -> impl Iterator<Item = Ipv4Addr> {
        (2..10).map(|i| Ipv4Addr::new(10, 244, 1, i))
    }

    #[test]
    fn weft_and_host_local_never_share_an_address() {
        let (s, dir) = store();
        std::fs::create_dir_all(&dir).unwrap();
        // What host-local wrote for a cni0 pod, in its own format.
        std::fs::write(dir.join("10.244.1.2"), "0123abcd\r\neth0").unwrap();
        let a = s.reserve("pa", None, hosts()).unwrap();
        assert_eq!(a, Some(Ipv4Addr::new(10, 244, 1, 3)), "host-local's .2 is skipped");
        assert_eq!(std::fs::read_to_string(dir.join("10.244.1.3")).unwrap(), "weft-pa\r\nweft");
        assert_eq!(s.reserve("pb", Some(Ipv4Addr::new(10, 244, 1, 2)), hosts()).unwrap(), None, "taken by a cni0 pod");
        assert_eq!(s.reserve("pa", Some(Ipv4Addr::new(10, 244, 1, 3)), hosts()).unwrap(), a, "ours after a restart");
        assert_eq!(s.reserve("pb", Some(Ipv4Addr::new(10, 244, 1, 3)), hosts()).unwrap(), None, "another weft pod's");
        s.release("pb", Ipv4Addr::new(10, 244, 1, 3)).unwrap();
        assert!(dir.join("10.244.1.3").exists(), "only the holder releases");
        s.release("pa", Ipv4Addr::new(10, 244, 1, 3)).unwrap();
        assert!(!dir.join("10.244.1.3").exists());
        s.release("x", Ipv4Addr::new(10, 244, 1, 2)).unwrap();
        assert!(dir.join("10.244.1.2").exists(), "host-local's reservation stays");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_full_range_is_none() {
        let (s, dir) = store();
        for (i, ip) in hosts().enumerate() {
            assert_eq!(s.reserve(&format!("p{i}"), None, hosts()).unwrap(), Some(ip));
        }
        assert_eq!(s.reserve("more", None, hosts()).unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
