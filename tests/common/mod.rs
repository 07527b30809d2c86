//! Test harness: real `redis-server` processes on free ports.
//!
//! Each server runs under a small shell supervisor that holds the read end
//! of a pipe from the test process: when the test process exits, however it
//! exits, the pipe closes and the supervisor kills the server. No server
//! outlives its tests, and no test ever talks to a shared server.
//!
//! A test that needs Redis fails loudly when `redis-server` is missing.
//! `cluster` starts a real local Redis Cluster the same way.
#![allow(dead_code)]

use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{LazyLock, OnceLock};
use std::time::{Duration, Instant};

pub mod cluster;
pub mod load;

/// One tokio runtime for every test of a binary: the global cache's
/// connection lives on it, so tests running side by side never see it torn
/// down by another test's runtime ending.
pub static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
});

/// Runs a test body on the shared runtime.
pub fn run<F: Future>(f: F) -> F::Output {
    RUNTIME.block_on(f)
}

/// The `redis-server` binary: `$REDIS_SERVER`, or the one on `PATH`.
pub fn redis_server_binary() -> String {
    let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
    match Command::new(&binary).arg("--version").output() {
        Ok(out) if out.status.success() => binary,
        _ => panic!(
            "these tests need a real Redis: `{binary}` was not found or does not run. \
             Install it (Debian/Ubuntu: `apt-get install redis-server`) or set REDIS_SERVER to its path. \
             `bash .ci/run` installs it when missing."
        ),
    }
}

fn redis_major_version(binary: &str) -> u32 {
    let out = Command::new(binary)
        .arg("--version")
        .output()
        .expect("redis-server --version");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("v=")
        .nth(1)
        .and_then(|v| v.split('.').next())
        .and_then(|major| major.parse().ok())
        .unwrap_or(6)
}

/// A free TCP port on 127.0.0.1 (free when asked; servers retry on a clash).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A running `redis-server`.
pub struct RedisServer {
    pub port: u16,
    pid: u32,
    supervisor: Option<(Child, ChildStdin)>,
    extra: Vec<String>,
    dir: PathBuf,
    /// The `--requirepass` among the extra arguments, if any.
    password: Option<String>,
    /// Serves TLS only (`--port 0 --tls-port port`).
    tls: bool,
}

impl RedisServer {
    /// Starts a server on a free port.
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            match Self::spawn(port, &extra, false) {
                Ok(server) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("could not start redis-server: {last_error}");
    }

    /// Starts a server on `port`; panics if it cannot.
    pub fn start_on_port(port: u16) -> RedisServer {
        Self::spawn(port, &[], false)
            .unwrap_or_else(|e| panic!("could not start redis-server on {port}: {e}"))
    }

    /// Starts a server that speaks TLS only, with `cert` (signed by
    /// whatever CA the test chose) and its key.
    pub fn start_tls(cert: &Path, key: &Path) -> RedisServer {
        let extra: Vec<String> = vec![
            "--tls-cert-file".into(),
            cert.display().to_string(),
            "--tls-key-file".into(),
            key.display().to_string(),
            // cachekit presents no client certificate.
            "--tls-auth-clients".into(),
            "no".into(),
        ];
        let mut last_error = String::new();
        for _ in 0..5 {
            match Self::spawn(free_port(), &extra, true) {
                Ok(server) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("could not start a TLS redis-server (is it built with TLS?): {last_error}");
    }

    fn spawn(port: u16, extra: &[String], tls: bool) -> Result<RedisServer, String> {
        let binary = redis_server_binary();
        let dir =
            std::env::temp_dir().join(format!("cachekit-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let mut args: Vec<String> = if tls {
            vec![
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port.to_string(),
            ]
        } else {
            vec!["--port".into(), port.to_string()]
        };
        args.extend([
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
            "--daemonize".into(),
            "no".into(),
            "--loglevel".into(),
            "warning".into(),
            "--dir".into(),
            dir.display().to_string(),
            "--logfile".into(),
            dir.join("redis.log").display().to_string(),
        ]);
        if redis_major_version(&binary) >= 7 {
            args.extend(["--enable-debug-command".into(), "yes".into()]);
        }
        args.extend(extra.iter().cloned());
        // The supervisor prints the server's pid, then waits for its stdin
        // to close (the test process ended) and kills the server.
        let script = r#"bin="$1"; shift; "$bin" "$@" </dev/null & pid=$!; echo "$pid"; read _ignored; kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null"#;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(&binary)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run sh: {e}"))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let pid: u32 = line
            .trim()
            .parse()
            .map_err(|_| format!("supervisor printed {line:?}"))?;
        let password = extra
            .iter()
            .position(|a| a == "--requirepass")
            .and_then(|i| extra.get(i + 1).cloned());
        let server = RedisServer {
            port,
            pid,
            supervisor: Some((child, stdin)),
            extra: extra.to_vec(),
            dir,
            password,
            tls,
        };
        server.wait_ready(Duration::from_secs(10))?;
        Ok(server)
    }

    fn wait_ready(&self, within: Duration) -> Result<(), String> {
        let started = Instant::now();
        loop {
            // A TLS server is ready when it accepts connections; the tests
            // talk TLS to it through cachekit.
            if self.tls && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if let Ok(mut conn) = redis::Client::open(self.url())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
                && redis::cmd("PING").query::<String>(&mut conn).is_ok()
            {
                return Ok(());
            }
            if !self.is_running() {
                let log = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
                return Err(format!("redis-server on port {} exited: {log}", self.port));
            }
            if started.elapsed() > within {
                return Err(format!(
                    "redis-server on port {} did not answer within {within:?}",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the server process is alive.
    pub fn is_running(&self) -> bool {
        Command::new("kill")
            .args(["-0", &self.pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, &self.pid.to_string()])
            .stderr(Stdio::null())
            .status();
    }

    /// `redis://127.0.0.1:port` (`rediss://` for TLS), with the password if
    /// the server requires one.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        match &self.password {
            Some(password) => format!("{scheme}://:{password}@127.0.0.1:{}", self.port),
            None => format!("{scheme}://127.0.0.1:{}", self.port),
        }
    }

    /// A plain (blocking) connection, to look at what cachekit stored.
    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .expect("client")
            .get_connection_with_timeout(Duration::from_secs(2))
            .expect("connect to the test redis-server")
    }

    /// Runs a command on a plain connection.
    pub fn cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut self.conn())
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// Runs a command on a plain connection, returning its error.
    pub fn try_cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> redis::RedisResult<T> {
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        let mut conn =
            redis::Client::open(self.url())?.get_connection_with_timeout(Duration::from_secs(2))?;
        cmd.query(&mut conn)
    }

    /// Kills the server (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        self.signal("-KILL");
        if let Some((mut child, stdin)) = self.supervisor.take() {
            drop(stdin);
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts the server again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Self::spawn(self.port, &self.extra, self.tls) {
                Ok(mut fresh) => {
                    self.pid = fresh.pid;
                    self.supervisor = fresh.supervisor.take();
                    // `fresh` must not kill the process it handed over.
                    std::mem::forget(fresh);
                    return;
                }
                Err(e) if Instant::now() > deadline => panic!("restart failed: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Resumes a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.signal("-CONT");
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The server shared by the tests of one binary (they use distinct keys).
pub fn shared_server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(RedisServer::start)
}

/// A name unique within this test process, for keys and namespaces.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Writes a line to stderr right away (test output is captured otherwise).
pub fn note(message: impl std::fmt::Display) {
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// Certificates made at test time with the `openssl` CLI: a CA, and server
/// certificates it signs, for TLS servers on 127.0.0.1.
pub mod pki {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// A certificate authority in its own temporary directory.
    pub struct Ca {
        pub dir: PathBuf,
        pub cert: PathBuf,
        key: PathBuf,
    }

    /// A server certificate and its private key.
    pub struct ServerCert {
        pub cert: PathBuf,
        pub key: PathBuf,
    }

    fn openssl(dir: &Path, args: &[&str]) {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "these tests need the `openssl` CLI to make certificates ({e}); \
                     install it (Debian/Ubuntu: `apt-get install openssl`)"
                )
            });
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    impl Ca {
        /// A new CA named `name` (EC P-256, valid two days).
        pub fn new(name: &str) -> Ca {
            let dir = std::env::temp_dir().join(format!(
                "cachekit-pki-{}-{}",
                std::process::id(),
                super::unique(name)
            ));
            std::fs::create_dir_all(&dir).expect("pki dir");
            std::fs::write(
                dir.join("ca.cnf"),
                format!(
                    "[req]\ndistinguished_name = dn\nprompt = no\nx509_extensions = ext\n\
                     [dn]\nCN = {name}\n\
                     [ext]\nbasicConstraints = critical,CA:TRUE\n\
                     keyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n"
                ),
            )
            .expect("ca.cnf");
            openssl(
                &dir,
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.crt",
                    "-days",
                    "2",
                    "-config",
                    "ca.cnf",
                ],
            );
            Ca {
                cert: dir.join("ca.crt"),
                key: dir.join("ca.key"),
                dir,
            }
        }

        /// A server certificate signed by this CA for the given subject
        /// alternative names (`IP:127.0.0.1`, `DNS:localhost`, ...).
        pub fn server_cert(&self, name: &str, alt_names: &str) -> ServerCert {
            let (key, csr, cert, ext) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.crt"),
                format!("{name}.ext"),
            );
            std::fs::write(
                self.dir.join(&ext),
                format!(
                    "subjectAltName={alt_names}\nbasicConstraints=CA:FALSE\n\
                     keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
                ),
            )
            .expect("ext file");
            openssl(
                &self.dir,
                &[
                    "req",
                    "-new",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                    "-keyout",
                    &key,
                    "-out",
                    &csr,
                    "-subj",
                    "/CN=cachekit-test-server",
                ],
            );
            let serial = format!("{}", std::process::id() as u64 * 1000 + fastrand_serial());
            openssl(
                &self.dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    &self.cert.display().to_string(),
                    "-CAkey",
                    &self.key.display().to_string(),
                    "-set_serial",
                    &serial,
                    "-out",
                    &cert,
                    "-days",
                    "2",
                    "-extfile",
                    &ext,
                ],
            );
            ServerCert {
                cert: self.dir.join(cert),
                key: self.dir.join(key),
            }
        }
    }

    fn fastrand_serial() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(1);
        NEXT.fetch_add(1, Ordering::Relaxed)
    }

    impl Drop for Ca {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A TCP proxy in front of a server, that can cut its connections in the
/// middle of a reply: the fault a real server cannot produce on demand.
pub mod proxy {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct State {
        /// Cut every connection at the next reply bytes.
        cut: AtomicBool,
        cuts: AtomicU64,
        open: Mutex<Vec<TcpStream>>,
        closed: AtomicBool,
    }

    /// A proxy on a free port of 127.0.0.1 forwarding to `upstream`.
    pub struct Proxy {
        pub port: u16,
        state: Arc<State>,
    }

    impl Proxy {
        pub fn start(upstream_port: u16) -> Proxy {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
            let port = listener.local_addr().expect("addr").port();
            let state = Arc::new(State::default());
            let shared = state.clone();
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if shared.closed.load(Ordering::Acquire) {
                        return;
                    }
                    let Ok(client) = client else { continue };
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)) else {
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    {
                        let mut open = shared.open.lock().unwrap();
                        open.retain(|s| s.peer_addr().is_ok());
                        open.push(client.try_clone().unwrap());
                        open.push(server.try_clone().unwrap());
                    }
                    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                    std::thread::spawn(move || pump(client, server, None));
                    let state = shared.clone();
                    std::thread::spawn(move || pump(s2, c2, Some(state)));
                }
            });
            Proxy { port, state }
        }

        /// `redis://127.0.0.1:port` of the proxy.
        pub fn url(&self) -> String {
            format!("redis://127.0.0.1:{}", self.port)
        }

        /// A handle that can cut connections from another thread.
        pub fn cutter(&self) -> Cutter {
            Cutter(self.state.clone())
        }

        /// Cuts made so far.
        pub fn cuts(&self) -> u64 {
            self.state.cuts.load(Ordering::Acquire)
        }
    }

    /// Cuts the connections of a [`Proxy`].
    pub struct Cutter(Arc<State>);

    impl Cutter {
        /// Cuts every connection in the middle of the next reply it
        /// carries: half of the bytes reach the client, then both sides
        /// are closed. Blocks until a cut happened (or 2 s passed).
        pub fn cut_mid_reply(&self) -> bool {
            let state = &self.0;
            let before = state.cuts.load(Ordering::Acquire);
            state.cut.store(true, Ordering::Release);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            while std::time::Instant::now() < deadline {
                if state.cuts.load(Ordering::Acquire) > before {
                    return true;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            state.cut.store(false, Ordering::Release);
            false
        }
    }

    impl Drop for Proxy {
        fn drop(&mut self) {
            self.state.closed.store(true, Ordering::Release);
            for s in self.state.open.lock().unwrap().drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
            // Wake the accept loop so that it sees `closed`.
            let _ = TcpStream::connect(("127.0.0.1", self.port));
        }
    }

    /// Copies `from` to `to`; replies (`cut` given) may be cut halfway.
    fn pump(mut from: TcpStream, mut to: TcpStream, cut: Option<Arc<State>>) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if let Some(state) = &cut
                && n >= 2
                && state.cut.swap(false, Ordering::AcqRel)
            {
                let _ = to.write_all(&buf[..n / 2]);
                state.cuts.fetch_add(1, Ordering::AcqRel);
                for s in state.open.lock().unwrap().drain(..) {
                    let _ = s.shutdown(Shutdown::Both);
                }
                break;
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    }
}
