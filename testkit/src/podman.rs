//! A real container runtime for the CNI tests: Debian's podman with its CNI network backend, in a
//! sandbox of its own (storage, run and network-config directories, `containers.conf` naming the
//! plugin directories) so that nothing of the host's podman is touched, and an image made from
//! Debian's `busybox-static` (no registry is reachable). Dropping it removes its containers (their CNI
//! DEL runs), its image and its directories.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{anyhow, bail, Context};

/// The busybox applets the image links.
const APPLETS: [&str; 10] = ["sh", "ping", "ip", "wget", "sleep", "cat", "nc", "ifconfig", "route", "dd"];
pub const IMAGE: &str = "localhost/weft-bb:test";

#[derive(Debug)]
pub struct Podman {
    pub dir: PathBuf,
    conf: PathBuf,
    net_dir: PathBuf,
    containers: Vec<String>,
}

impl Podman {
    /// A sandboxed podman whose CNI plugins are `plugin_dirs` (first) and Debian's /usr/lib/cni, with the
    /// busybox image imported. Fails naming the package when podman, runc or busybox-static is missing.
    pub fn new(tag: &str, plugin_dirs: &[&Path]) -> anyhow::Result<Podman> {
        for (bin, pkg) in
            [("/usr/bin/podman", "podman"), ("/usr/sbin/runc", "runc"), ("/bin/busybox", "busybox-static")]
        {
            if !Path::new(bin).exists() {
                bail!("{bin} is missing: apt-get install {pkg} (make setup installs it)");
            }
        }
        let dir = std::env::temp_dir().join(format!("weft-podman-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let net_dir = dir.join("net.d");
        fs::create_dir_all(&net_dir)?;
        let mut dirs: Vec<String> = plugin_dirs.iter().map(|d| format!("{:?}", d.display().to_string())).collect();
        dirs.push("\"/usr/lib/cni\"".into());
        let conf = dir.join("containers.conf");
        fs::write(
            &conf,
            format!(
                "[network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [{}]\nnetwork_config_dir = {:?}\n\
                 [engine]\nevents_logger = \"file\"\ncgroup_manager = \"cgroupfs\"\nruntime = \"runc\"\n",
                dirs.join(", "),
                net_dir.display().to_string()
            ),
        )?;
        let p = Podman { dir, conf, net_dir, containers: Vec::new() };
        let rootfs = p.dir.join("rootfs");
        fs::create_dir_all(rootfs.join("bin"))?;
        fs::copy("/bin/busybox", rootfs.join("bin/busybox"))?;
        for a in APPLETS {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a))?;
        }
        let tar = p.dir.join("rootfs.tar");
        let st = Command::new("tar").arg("-C").arg(&rootfs).arg("-cf").arg(&tar).arg(".").status()?;
        if !st.success() {
            bail!("tar of the busybox rootfs failed");
        }
        p.run(&["import", &tar.display().to_string(), IMAGE])?;
        Ok(p)
    }

    fn command(&self) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", &self.conf)
            .arg("--root")
            .arg(self.dir.join("storage"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--runtime", "runc"])
            .arg("--network-config-dir")
            .arg(&self.net_dir)
            .args(["--events-backend", "file"]);
        c
    }

    /// Run podman; its output, whatever the exit status.
    pub fn output(&self, args: &[&str]) -> anyhow::Result<Output> {
        self.command().args(args).output().with_context(|| format!("running podman {}", args.join(" ")))
    }

    /// Run podman; its stdout, or its complaint.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.output(args)?;
        if !out.status.success() {
            bail!(
                "podman {}: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A CNI network: `conflist` written as `<name>.conflist` in the sandbox's network directory.
    pub fn network(&self, name: &str, conflist: &serde_json::Value) -> anyhow::Result<()> {
        fs::write(self.net_dir.join(format!("{name}.conflist")), format!("{conflist:#}"))?;
        Ok(())
    }

    /// `podman run -d` of the image on `network` with `sh -c cmd`; the container's id. The flags the
    /// sandboxed machines need: NET_RAW for ping, explicit ulimits (the runtime may not raise them).
    pub fn run_detached(&mut self, name: &str, network: &str, cmd: &str) -> anyhow::Result<String> {
        self.containers.push(name.to_owned());
        let out = self.run(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            network,
            "--cap-add",
            "NET_RAW",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1000:1000",
            IMAGE,
            "sh",
            "-c",
            cmd,
        ])?;
        let id = out.trim().to_owned();
        if id.len() != 64 {
            bail!("podman run printed {out:?}, not a container id");
        }
        Ok(id)
    }

    /// `podman exec` in a running container; (exit status, stdout and stderr).
    pub fn exec(&self, name: &str, cmd: &str) -> anyhow::Result<(bool, String)> {
        let out = self.output(&["exec", name, "sh", "-c", cmd])?;
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        Ok((out.status.success(), text))
    }

    /// The PIDs of a container's conmon and of its first process.
    pub fn pids(&self, name: &str) -> anyhow::Result<(u32, u32)> {
        let out = self.run(&["inspect", "-f", "{{.State.ConmonPid}} {{.State.Pid}}", name])?;
        let mut it = out.split_whitespace().map(|s| s.parse::<u32>());
        match (it.next(), it.next()) {
            (Some(Ok(c)), Some(Ok(p))) if c > 0 && p > 0 => Ok((c, p)),
            _ => Err(anyhow!("podman inspect {name}: {out:?}")),
        }
    }

    /// `podman rm -f`: stops the container, its network is torn down (CNI DEL).
    pub fn rm(&mut self, name: &str) -> anyhow::Result<()> {
        self.run(&["rm", "-f", "-t", "1", name])?;
        self.containers.retain(|c| c != name);
        Ok(())
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        for c in std::mem::take(&mut self.containers) {
            let _ = self.output(&["rm", "-f", "-t", "1", &c]);
        }
        let _ = self.output(&["rmi", "-f", IMAGE]);
        // vfs keeps plain directories; unmount whatever podman left mounted under the sandbox first.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!("grep -o ' {}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l", self.dir.display()))
            .status();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
