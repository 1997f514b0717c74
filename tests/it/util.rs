//! Small helpers shared by the integration tests: temp dirs, polling instead of sleeping,
//! required external programs, and free ports.
#![allow(dead_code)] // each test uses a different part of the helpers

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long `mosquitto_pub` may run before the test fails.
const MOSQUITTO_PUB_TIMEOUT: Duration = Duration::from_secs(60);

/// How often `poll_until` and the bounded runs of programs look again.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// A fresh temporary directory, removed when the returned value is dropped.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("edge-gateway-it-").tempdir().expect("create a temporary directory")
}

/// Waits until `f` returns true, checking every 20 ms; panics naming `what` after `timeout`.
///
/// The deadline is wall-clock time on purpose: these waits are on real sockets and processes,
/// which a paused tokio clock would not slow down.
pub async fn poll_until<F: FnMut() -> bool>(what: &str, timeout: Duration, mut f: F) {
    if within_every(POLL_EVERY, timeout, async || f().then_some(())).await.is_none() {
        panic!("timed out after {timeout:?}: {what}");
    }
}

/// Waits until the async check `f` (a scrape, a client run, an API call) returns true, checking
/// every 100 ms; panics naming `what` after `timeout`.
pub async fn eventually(what: &str, timeout: Duration, mut f: impl AsyncFnMut() -> bool) {
    if within(timeout, async || f().await.then_some(())).await.is_none() {
        panic!("timed out after {timeout:?}: {what}");
    }
}

/// The first value `f` yields, checking every 100 ms; `None` after `timeout` (the caller says
/// what went wrong, with whatever state explains it).
pub async fn within<T>(timeout: Duration, f: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    within_every(Duration::from_millis(100), timeout, f).await
}

/// The one polling loop behind the helpers above (wall-clock deadline, see [`poll_until`]).
async fn within_every<T>(every: Duration, timeout: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

/// The full path of `bin` on PATH; panics with how to install it otherwise (tests never skip).
pub fn require(bin: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(bin))
        .find(|candidate| is_executable(candidate));
    found.unwrap_or_else(|| {
        panic!(
            "required program `{bin}` is not on PATH; install it with \
             `apt-get install -y {}` (the integration tests need it and never skip)",
            debian_package(bin)
        )
    })
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The Debian package that ships `bin`.
fn debian_package(bin: &str) -> &str {
    match bin {
        "mosquitto_pub" | "mosquitto_sub" | "mosquitto_rr" | "mosquitto_passwd" => "mosquitto-clients",
        "promtool" => "prometheus",
        other => other,
    }
}

/// Runs `mosquitto_pub ARGS` and returns its output; panics if it runs longer than 60 s.
///
/// Uses `std::process` polled from async code rather than `tokio::process`, which would need
/// tokio's `process` feature that the workspace does not enable.
pub async fn mosquitto_pub(args: &[&str]) -> Output {
    mosquitto("mosquitto_pub", args).await
}

/// One QoS1 message as client `dev-1` to `devices/dev-1/t` on the plain listener at `addr`;
/// panics unless mosquitto_pub reports success.
pub async fn publish_one(addr: std::net::SocketAddr, payload: &str) {
    let port = addr.port().to_string();
    let out = mosquitto_pub(&["-h", "127.0.0.1", "-p", &port, "-q", "1", "-i", "dev-1", "-t", "devices/dev-1/t", "-m", payload]).await;
    assert!(out.status.success(), "{out:?}");
}

/// The Python with the test peers' packages (paho-mqtt, the OTLP receiver's): scripts/test.sh
/// points `EDGE_GATEWAY_TEST_PYTHON` at its venv.
pub fn python() -> String {
    std::env::var("EDGE_GATEWAY_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// A finished program's stdout and stderr, as text (for assertions on what it printed).
pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Runs a mosquitto client (`mosquitto_pub`, `mosquitto_sub`) and returns its output; panics if
/// it runs longer than 60 s.
pub async fn mosquitto(client: &str, args: &[&str]) -> Output {
    let program = require(client);
    bounded_output(Command::new(&program).args(args), MOSQUITTO_PUB_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()))
}

/// How long a peer or a CLI run started by a test may take before the test fails: a hung peer
/// must fail its test, not run CI past its 90 minutes.
pub const RUN_LIMIT: Duration = Duration::from_secs(120);

/// `Command::output` bounded by [`RUN_LIMIT`]: stdin closed, stdout and stderr captured; an
/// error if it cannot start, a panic (after killing it) if it is still running at the limit.
pub trait OutputWithin {
    /// From a thread that may block (a plain test, or where the test blocked before).
    fn output_within(&mut self) -> std::io::Result<Output>;
}

impl OutputWithin for Command {
    fn output_within(&mut self) -> std::io::Result<Output> {
        let mut running = Running::start(self, RUN_LIMIT)?;
        loop {
            if let Some(out) = running.done() {
                return Ok(out);
            }
            std::thread::sleep(POLL_EVERY);
        }
    }
}

/// [`OutputWithin`] from async code: waits without blocking the runtime's thread.
pub async fn bounded_output(cmd: &mut Command, limit: Duration) -> std::io::Result<Output> {
    let mut running = Running::start(cmd, limit)?;
    loop {
        if let Some(out) = running.done() {
            return Ok(out);
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// What a thread read from one of a child's pipes.
type Drained = std::thread::JoinHandle<Vec<u8>>;

/// A program started by [`OutputWithin`] or [`bounded_output`].
struct Running {
    child: std::process::Child,
    /// Its pipes' readers (taken when it has ended).
    pipes: Option<(Drained, Drained)>,
    deadline: Instant,
    limit: Duration,
    what: String,
}

impl Running {
    fn start(cmd: &mut Command, limit: Duration) -> std::io::Result<Self> {
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        let pipes = Some((drain(child.stdout.take().expect("piped stdout")), drain(child.stderr.take().expect("piped stderr"))));
        let what = format!("{cmd:?}").chars().take(300).collect();
        Ok(Running { child, pipes, deadline: Instant::now() + limit, limit, what })
    }

    /// Its output once it has ended; a panic once it ran past its limit (killed first).
    fn done(&mut self) -> Option<Output> {
        if let Some(status) = self.child.try_wait().expect("wait for a child process") {
            let (stdout, stderr) = self.pipes.take().expect("a child's output is taken once");
            return Some(Output { status, stdout: stdout.join().expect("stdout reader"), stderr: stderr.join().expect("stderr reader") });
        }
        if Instant::now() >= self.deadline {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!("{} still running after {:?}; killed", self.what, self.limit);
        }
        None
    }
}

/// Reads a child's pipe to the end on a thread, so a chatty child never blocks on a full pipe.
fn drain(mut pipe: impl Read + Send + 'static) -> Drained {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// A port that was free a moment ago on 127.0.0.1, for a test that must restart a process on
/// the same address. Taken below Linux's ephemeral range (32768-60999), so that no other test's
/// port-0 bind can take it between its release and its reuse; each call of this process gets
/// another one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::process::id() % 12_000;
    for _ in 0..12_000 {
        let port = 20_000 + ((base + NEXT.fetch_add(1, Ordering::Relaxed)) % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000-31999 on 127.0.0.1");
}

/// A child process killed when the test ends, also when it fails.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A mosquitto 2 broker for comparison (anonymous, in memory), killed when dropped.
pub struct Mosquitto {
    _process: Killed,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Mosquitto {
    /// Start one with its config in `dir`, on a free port.
    pub async fn start(dir: &Path) -> Mosquitto {
        Self::start_at(dir, free_port()).await
    }

    /// The same, on `port` (to start one again where the last one was).
    pub async fn start_at(dir: &Path, port: u16) -> Mosquitto {
        let conf = dir.join("mosquitto.conf");
        std::fs::write(&conf, format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")).unwrap();
        let child =
            Command::new(require("mosquitto")).arg("-c").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("mosquitto");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        poll_until("mosquitto listening", Duration::from_secs(15), || std::net::TcpStream::connect(addr).is_ok()).await;
        Mosquitto { _process: Killed(child), port }
    }

    /// SIGTERM, and wait for it to exit.
    pub fn terminate(mut self) {
        let _ = std::process::Command::new("kill").args(["-TERM", &self._process.0.id().to_string()]).status();
        let _ = self._process.0.wait();
    }
}

/// libfaketime (from the `faketime` package), preloaded into the gateway itself so that signals
/// and exit codes are the gateway's, not a wrapper's.
pub fn libfaketime() -> String {
    require("faketime");
    let found = std::fs::read_dir("/usr/lib")
        .expect("/usr/lib")
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("faketime/libfaketime.so.1"))
        .find(|p| p.exists());
    found.expect("libfaketime.so.1 under /usr/lib/*/faketime (package libfaketime)").display().to_string()
}
