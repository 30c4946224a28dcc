//! The servers of weftd's management side: `/metrics`, `/healthz`, `/readyz` over HTTP (hyper), and the
//! control API over a unix socket. Both run on one small async runtime off the workers' lcores, take
//! many clients at once, and bound what one client may cost: its request size, how long it may take to
//! send it, and how many connections may be open. A slow or idle client holds only its own task.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{watch, Semaphore};

/// Connections open at once per server; more are closed at accept.
pub const MAX_CONNECTIONS: usize = 1024;
/// The whole request head (line and headers) must arrive within this.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Request head size; hyper answers 431 and closes beyond it.
pub const MAX_HEAD: usize = 16 * 1024;
/// One API request line.
pub const MAX_API_LINE: usize = 64 * 1024;
/// An API client must send its request line within this, and read the answer within it.
pub const API_IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The management runtime and the stop signal its servers watch.
#[derive(Debug)]
pub struct Mgmt {
    rt: tokio::runtime::Runtime,
    stop: watch::Sender<bool>,
}

impl Mgmt {
    pub fn new() -> io::Result<Mgmt> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(16)
            .thread_name("weft-mgmt")
            .enable_all()
            .build()?;
        Ok(Mgmt { rt, stop: watch::channel(false).0 })
    }

    pub fn handle(&self) -> tokio::runtime::Handle {
        self.rt.handle().clone()
    }

    /// Stop every server and abandon what clients are still doing: returns within `grace`.
    pub fn shutdown(self, grace: Duration) {
        let _ = self.stop.send(true);
        self.rt.shutdown_timeout(grace);
    }

    fn stopped(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }
}

/// What an HTTP handler answers: status, content type, body.
pub type HttpAnswer = (StatusCode, &'static str, String);
/// The HTTP handler: a path in, an answer out. Called on a blocking thread (it may take locks).
pub type HttpHandler = Arc<dyn Fn(&str) -> HttpAnswer + Send + Sync>;

/// A bound HTTP listener: the address is taken (a port in use fails here, before weftd changes the
/// host), and what connects waits in the kernel's backlog until [`serve_http`] answers it.
#[derive(Debug)]
pub struct HttpListener(tokio::net::TcpListener);

impl HttpListener {
    pub fn bind(mgmt: &Mgmt, addr: SocketAddr) -> io::Result<HttpListener> {
        mgmt.rt.block_on(tokio::net::TcpListener::bind(addr)).map(HttpListener)
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// Serve HTTP/1.1 GETs on `listener` with `handler`.
pub fn serve_http(mgmt: &Mgmt, listener: HttpListener, handler: HttpHandler) {
    let HttpListener(listener) = listener;
    let mut stop = mgmt.stopped();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    mgmt.rt.spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(_) => { tokio::time::sleep(Duration::from_millis(10)).await; continue }
                },
                _ = stop.changed() => break,
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else { continue };
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let handler = handler.clone();
                    async move { Ok::<_, std::convert::Infallible>(answer(req, handler).await) }
                });
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .max_buf_size(MAX_HEAD)
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service);
                // A client that keeps a connection open without asking anything is let go after a
                // while too (keep-alive between requests is bounded by the header timeout already).
                let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
                drop(slot);
            });
        }
    });
}

async fn answer(req: Request<hyper::body::Incoming>, handler: HttpHandler) -> Response<Full<Bytes>> {
    let (status, ctype, body) = if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        (StatusCode::METHOD_NOT_ALLOWED, "text/plain", "weftd serves GET only\n".to_string())
    } else {
        // The body, if any, is never read.
        let path = req.uri().path().to_owned();
        match tokio::task::spawn_blocking(move || handler(&path)).await {
            Ok(a) => a,
            Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "text/plain", "handler failed\n".to_string()),
        }
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// Who may use the API: root, and members of one group when a group is given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApiAccess {
    pub group: Option<u32>,
}

impl ApiAccess {
    pub fn allows(&self, uid: u32, gid: u32, supplementary: &[u32]) -> bool {
        uid == 0 || self.group.is_some_and(|g| gid == g || supplementary.contains(&g))
    }
}

/// The API handler: one request line in, one answer line out. Called on a blocking thread.
pub type ApiHandler = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// Make the API socket's directory (0700, or 0750 owned by the API group), refusing a directory that
/// others could use to replace the socket. A directory that exists already keeps its mode and group
/// (it may be shared, like /tmp): only one weftd made is set up for the group.
fn api_dir(path: &Path, access: ApiAccess) -> io::Result<()> {
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else { return Ok(()) };
    let mode = if access.group.is_some() { 0o750 } else { 0o700 };
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))?;
            if let Some(g) = access.group {
                std::os::unix::fs::chown(dir, None, Some(g))?;
            }
        }
        Err(e) => return Err(e),
        Ok(m) => {
            let perm = m.permissions().mode();
            // Writable by others without the sticky bit: anyone could swap the socket for their own.
            if perm & 0o022 != 0 && perm & 0o1000 == 0 {
                return Err(io::Error::other(format!(
                    "{} is writable by other users (mode {:o}): give api_socket a path in a directory of its own, like /run/weft/weftd.sock",
                    dir.display(),
                    perm & 0o7777
                )));
            }
        }
    }
    Ok(())
}

/// The unix-socket API server. [`ApiServer::bind`] makes the socket; clients that connect wait in the
/// backlog until [`ApiServer::serve`] answers them. The socket goes with the server.
#[derive(Debug)]
pub struct ApiServer {
    pub path: PathBuf,
    access: ApiAccess,
    /// Until it is served.
    listener: Option<tokio::net::UnixListener>,
}

impl ApiServer {
    /// Listen on `path` (0600, or 0660 for the API group).
    pub fn bind(mgmt: &Mgmt, path: &Path, access: ApiAccess) -> io::Result<ApiServer> {
        api_dir(path, access)?;
        match std::fs::symlink_metadata(path) {
            Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => std::fs::remove_file(path)?,
            Ok(_) => {
                return Err(io::Error::other(format!(
                    "{} exists and is not a socket: remove it or choose another api_socket",
                    path.display()
                )))
            }
            Err(_) => {}
        }
        let listener = {
            let _guard = mgmt.rt.enter();
            tokio::net::UnixListener::bind(path)?
        };
        // From here the socket file is the server's: dropped on an error below, it is removed.
        let server = ApiServer { path: path.to_owned(), access, listener: Some(listener) };
        std::fs::set_permissions(
            path,
            std::fs::Permissions::from_mode(if access.group.is_some() { 0o660 } else { 0o600 }),
        )?;
        if let Some(g) = access.group {
            std::os::unix::fs::chown(path, None, Some(g))?;
        }
        Ok(server)
    }

    /// Answer each line with `handler` (a server already serving is left as it is).
    pub fn serve(mut self, mgmt: &Mgmt, handler: ApiHandler) -> ApiServer {
        let Some(listener) = self.listener.take() else { return self };
        let access = self.access;
        let mut stop = mgmt.stopped();
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        mgmt.rt.spawn(async move {
            loop {
                let stream = tokio::select! {
                    r = listener.accept() => match r {
                        Ok((s, _)) => s,
                        Err(_) => { tokio::time::sleep(Duration::from_millis(10)).await; continue }
                    },
                    _ = stop.changed() => break,
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else { continue };
                let handler = handler.clone();
                tokio::spawn(async move {
                    let _ = api_client(stream, access, handler).await;
                    drop(slot);
                });
            }
        });
        self
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The groups of a process, from /proc (the peer's supplementary groups are not in SO_PEERCRED).
fn groups_of(pid: Option<i32>) -> Vec<u32> {
    let Some(pid) = pid else { return Vec::new() };
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return Vec::new() };
    text.lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| g.split_whitespace().filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_default()
}

async fn api_client(stream: tokio::net::UnixStream, access: ApiAccess, handler: ApiHandler) -> io::Result<()> {
    let cred = stream.peer_cred()?;
    let (rd, mut wr) = stream.into_split();
    if !access.allows(cred.uid(), cred.gid(), &groups_of(cred.pid())) {
        let msg = serde_json::json!({"ok": false, "error": format!("uid {} is not allowed to use weftd's API (root only, or the group given by --api-group)", cred.uid())});
        let _ = tokio::time::timeout(API_IO_TIMEOUT, wr.write_all(format!("{msg}\n").as_bytes())).await;
        return Ok(());
    }
    // One line at most MAX_API_LINE long: a longer one is answered with an error and the connection
    // closed, having cost at most that much memory.
    let mut reader = BufReader::new(rd);
    loop {
        let mut line = Vec::new();
        let read = tokio::time::timeout(API_IO_TIMEOUT, async {
            let mut limited = (&mut reader).take(MAX_API_LINE as u64 + 1);
            limited.read_until(b'\n', &mut line).await
        })
        .await;
        let n = match read {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()), // idle: let it go
        };
        if n == 0 {
            return Ok(());
        }
        if line.last() != Some(&b'\n') {
            let msg = if line.len() > MAX_API_LINE {
                format!("request longer than {MAX_API_LINE} bytes")
            } else {
                "request not terminated by a newline".to_string()
            };
            let err = serde_json::json!({"ok": false, "error": msg});
            let _ = tokio::time::timeout(API_IO_TIMEOUT, wr.write_all(format!("{err}\n").as_bytes())).await;
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line).trim().to_string();
        let h = handler.clone();
        let answer = tokio::task::spawn_blocking(move || h(&text)).await.unwrap_or_else(|_| {
            serde_json::json!({"ok": false, "error": "the request failed inside weftd"}).to_string()
        });
        match tokio::time::timeout(API_IO_TIMEOUT, wr.write_all(format!("{answer}\n").as_bytes())).await {
            Ok(Ok(())) => {}
            _ => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Instant;

    fn rss_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    fn get(addr: SocketAddr, path: &str) -> (String, Duration) {
        let t0 = Instant::now();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        (out, t0.elapsed())
    }

    fn ok_handler() -> HttpHandler {
        Arc::new(|p: &str| (StatusCode::OK, "text/plain", format!("ok {p}\n")))
    }

    fn serve_local(mgmt: &Mgmt) -> SocketAddr {
        let listener = HttpListener::bind(mgmt, "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        serve_http(mgmt, listener, ok_handler());
        addr
    }

    /// A client that connects between bind and serve (weftd installs its iptables rules there) is
    /// answered once serving starts; a port in use fails at bind.
    #[test]
    fn bound_listeners_answer_once_served() {
        let mgmt = Mgmt::new().unwrap();
        let listener = HttpListener::bind(&mgmt, "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let e = HttpListener::bind(&mgmt, addr).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
        let early = std::thread::spawn(move || get(addr, "/early"));
        std::thread::sleep(Duration::from_millis(300));
        assert!(!early.is_finished(), "answered before serving");
        serve_http(&mgmt, listener, ok_handler());
        let (out, _) = early.join().unwrap();
        assert!(out.ends_with("ok /early\n"), "{out}");

        let dir = tmp("bind");
        let path = dir.join("weftd.sock");
        let server = ApiServer::bind(&mgmt, &path, ApiAccess::default()).unwrap();
        assert!(path.exists());
        let p = path.clone();
        let early = std::thread::spawn(move || api_call(&p, "{}"));
        std::thread::sleep(Duration::from_millis(300));
        assert!(!early.is_finished(), "the API answered before serving");
        let handler: ApiHandler = Arc::new(|l: &str| format!("{{\"echo\":{}}}", l.len()));
        let server = server.serve(&mgmt, handler);
        assert_eq!(early.join().unwrap(), "{\"echo\":2}\n");
        drop(server);
        assert!(!path.exists(), "the socket is removed with the server");
        // A server bound and never served (weftd failed before serving) takes its socket with it.
        drop(ApiServer::bind(&mgmt, &path, ApiAccess::default()).unwrap());
        assert!(!path.exists(), "an unserved socket was left behind");
        mgmt.shutdown(Duration::from_secs(1));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Issue #11.4: 100 idle and 100 byte-a-second clients do not delay /healthz.
    #[test]
    fn slow_clients_do_not_delay_others() {
        let mgmt = Mgmt::new().unwrap();
        let addr = serve_local(&mgmt);
        let mut idle = Vec::new();
        for _ in 0..100 {
            idle.push(std::net::TcpStream::connect(addr).unwrap());
        }
        let slow: Vec<_> = (0..100).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
        let dribble = std::thread::spawn(move || {
            let mut slow = slow;
            for i in 0..3 {
                for s in &mut slow {
                    let _ = s.write_all(&[b"GET "[i]]);
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        std::thread::sleep(Duration::from_millis(200));
        let mut worst = Duration::ZERO;
        for _ in 0..20 {
            let (out, took) = get(addr, "/healthz");
            assert!(out.starts_with("HTTP/1.1 200"), "{out}");
            assert!(out.ends_with("ok /healthz\n"), "{out}");
            worst = worst.max(took);
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("/healthz with 100 idle and 100 byte-a-second clients: worst {worst:?}");
        assert!(worst < Duration::from_millis(100), "/healthz took {worst:?}");
        dribble.join().unwrap();
        drop(idle);
        let t0 = Instant::now();
        mgmt.shutdown(Duration::from_secs(1));
        assert!(t0.elapsed() < Duration::from_secs(2));
    }

    /// Issue #11.4: a request line of up to 1 GiB is cut off after the head limit, costing no memory.
    #[test]
    fn a_huge_request_costs_nothing() {
        let mgmt = Mgmt::new().unwrap();
        let addr = serve_local(&mgmt);
        let before = rss_kib();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        let chunk = vec![b'A'; 64 * 1024];
        s.write_all(b"GET /").unwrap();
        let mut sent = 0usize;
        while sent < (1 << 30) {
            if s.write_all(&chunk).is_err() {
                break;
            }
            sent += chunk.len();
        }
        let grown = rss_kib().saturating_sub(before);
        eprintln!("1 GiB request line: server closed after {sent} bytes; RSS grew {grown} KiB");
        assert!(sent < 16 << 20, "the server read {sent} bytes of one request");
        assert!(grown < 1024, "RSS grew {grown} KiB");
        // And it still serves.
        assert!(get(addr, "/healthz").0.starts_with("HTTP/1.1 200"));
        mgmt.shutdown(Duration::from_secs(1));
    }

    fn api_call(path: &Path, line: &str) -> String {
        let mut s = std::os::unix::net::UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        writeln!(s, "{line}").unwrap();
        let mut out = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(&s), &mut out).unwrap();
        out
    }

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("weft-mgmt-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// Issue #11.5: the API socket is 0600 in a 0700 directory, takes many clients at once, bounds a
    /// line, and an idle client does not hold it.
    #[test]
    fn api_socket_is_private_concurrent_and_bounded() {
        let dir = tmp("api");
        let path = dir.join("weftd.sock");
        let mgmt = Mgmt::new().unwrap();
        let handler: ApiHandler = Arc::new(|l: &str| format!("{{\"echo\":{}}}", l.len()));
        let server = ApiServer::bind(&mgmt, &path, ApiAccess::default()).unwrap().serve(&mgmt, handler);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir), 0o700);
        let idle: Vec<_> = (0..50).map(|_| std::os::unix::net::UnixStream::connect(&path).unwrap()).collect();
        let t0 = Instant::now();
        assert_eq!(api_call(&path, "{\"cmd\":\"status\"}"), "{\"echo\":16}\n");
        assert!(t0.elapsed() < Duration::from_millis(500), "status took {:?} behind idle clients", t0.elapsed());
        drop(idle);
        // A 1 GiB line: refused once it passes the limit, memory bounded.
        let before = rss_kib();
        let mut s = std::os::unix::net::UnixStream::connect(&path).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0usize;
        while sent < (1 << 30) && s.write_all(&chunk).is_ok() {
            sent += chunk.len();
        }
        let mut answer = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(&s), &mut answer);
        let grown = rss_kib().saturating_sub(before);
        eprintln!("API: 1 GiB line cut after {sent} bytes; RSS grew {grown} KiB; answer {answer:?}");
        assert!(sent < 16 << 20, "the API read {sent} bytes of one line");
        assert!(answer.contains("longer than"), "{answer}");
        assert!(grown < 1024, "RSS grew {grown} KiB");
        // A directory others can write to (no sticky bit) is refused.
        let open = tmp("open");
        std::fs::create_dir_all(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = ApiServer::bind(&mgmt, &open.join("s.sock"), ApiAccess::default()).unwrap_err();
        assert!(e.to_string().contains("writable by other users"), "{e}");
        drop(server);
        assert!(!path.exists(), "the socket is removed with the server");
        mgmt.shutdown(Duration::from_secs(1));
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&open);
    }

    /// Issue #11.5: another user is refused: by the socket's mode, and by SO_PEERCRED when the
    /// socket is opened to a group the user is not root in.
    #[test]
    fn api_refuses_other_users() {
        assert!(ApiAccess::default().allows(0, 0, &[]));
        assert!(!ApiAccess::default().allows(1000, 1000, &[]));
        let g = ApiAccess { group: Some(4242) };
        assert!(g.allows(1000, 4242, &[]) && g.allows(1000, 1000, &[4242]) && !g.allows(1000, 1000, &[27]));

        assert_eq!(euid(), 0, "this test needs root (it runs a client as another user)");
        let dir = tmp("peer");
        let path = dir.join("weftd.sock");
        let mgmt = Mgmt::new().unwrap();
        let handler: ApiHandler = Arc::new(|_: &str| "{\"ok\":true}".to_string());
        // Opened to group 65534 (nogroup): the file mode lets its members in; SO_PEERCRED decides.
        let _server = ApiServer::bind(&mgmt, &path, ApiAccess { group: Some(65534) }).unwrap().serve(&mgmt, handler);
        let client = |uid: &str, gid: &str| {
            let py = format!(
                "import socket;s=socket.socket(socket.AF_UNIX);s.connect('{}');s.sendall(b'{{}}\\n');print(s.makefile().readline())",
                path.display()
            );
            std::process::Command::new("setpriv")
                .args(["--reuid", uid, "--regid", gid, "--clear-groups", "/usr/bin/python3", "-c", &py])
                .output()
                .unwrap()
        };
        let member = client("65534", "65534");
        assert!(String::from_utf8_lossy(&member.stdout).contains("\"ok\":true"), "{member:?}");
        // Same user, not in the group: the socket's mode already keeps it out.
        let outsider = client("65534", "12345");
        assert!(!String::from_utf8_lossy(&outsider.stdout).contains("\"ok\":true"), "{outsider:?}");
        mgmt.shutdown(Duration::from_secs(1));
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn euid() -> u32 {
        std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m)).unwrap_or(u32::MAX)
    }
}
