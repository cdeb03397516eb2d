//! The integration harness: the example guests, built once by `build.rs`, and
//! the real `weft` binary, started as a user would start it.

#![allow(unsafe_code)] // `wait4` for a child's peak memory; see `Weft::output_with_rusage`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Paths of the example guests (`examples/`), one constant each.
pub mod examples {
    include!(concat!(env!("OUT_DIR"), "/examples.rs"));
}

/// The workspace's `target/<profile>` directory, found from the running test
/// binary (`target/<profile>/deps/<test>`).
fn target_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current test executable");
    let deps = exe.parent().expect("test binary in a directory");
    deps.parent()
        .expect("deps directory in a profile directory")
        .to_owned()
}

/// The `weft` binary under test, built by `cargo build` beside the tests.
///
/// Panics with the command to run when it is missing or older than the
/// `weft` library the tests were built against.
pub fn weft_bin() -> PathBuf {
    let dir = target_profile_dir();
    let bin = dir.join("weft");
    let modified = |path: &Path| path.metadata().and_then(|m| m.modified()).ok();
    let Some(bin_time) = modified(&bin) else {
        panic!(
            "{} is missing: build it first with `cargo build -p weft-host` (`make test` does)",
            bin.display()
        );
    };
    if let Some(lib_time) = modified(&dir.join("libweft.rlib")) {
        assert!(
            bin_time + Duration::from_secs(2) >= lib_time,
            "{} is older than the weft library: rebuild it with `cargo build -p weft-host` (`make test` does)",
            bin.display()
        );
    }
    bin
}

/// A `weft` command with its own fresh data directory.
#[derive(Debug)]
pub struct Weft {
    data: tempfile::TempDir,
}

impl Default for Weft {
    fn default() -> Self {
        Weft::new()
    }
}

/// What a finished `weft` process left behind.
#[derive(Debug)]
pub struct Finished {
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Its stdout.
    pub stdout: Vec<u8>,
    /// Its stderr, as text.
    pub stderr: String,
    /// Wall-clock time it ran.
    pub elapsed: Duration,
    /// Peak resident memory, in KiB.
    pub max_rss_kib: u64,
}

impl Finished {
    /// stdout as text.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

impl Weft {
    /// A harness with an empty data directory.
    pub fn new() -> Weft {
        Weft {
            data: tempfile::tempdir().expect("creating a temporary data directory"),
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// `weft ARGS` with this harness's data directory.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut command = Command::new(weft_bin());
        command
            .args(args)
            .env("WEFT_DATA", self.data.path())
            .env_remove("WEFT_LOG");
        command
    }

    /// Runs `weft ARGS` with `stdin`, waits, and reports how it went,
    /// including its peak memory.
    pub fn run<I, S>(&self, args: I, stdin: &[u8]) -> Finished
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        output_with_rusage(self.command(args), stdin)
    }
}

/// Runs `command` to completion, feeding `stdin`, and measures its peak RSS.
pub fn output_with_rusage(mut command: Command, stdin: &[u8]) -> Finished {
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning weft");
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out, &mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err, &mut buf);
        buf
    });

    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is plain old data that `wait4` fills in; `pid` is our
    // own child, which we reap exactly once here (the `Child` handle is then
    // forgotten so it does not try to reap it again).
    let mut rusage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut rusage) };
    assert_eq!(
        reaped,
        pid,
        "wait4 failed: {}",
        std::io::Error::last_os_error()
    );
    std::mem::forget(child);
    let elapsed = started.elapsed();
    let _ = feeder.join();
    let stdout = out_reader.join().unwrap();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap()).into_owned();
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    Finished {
        code,
        stdout,
        stderr,
        elapsed,
        max_rss_kib: rusage.ru_maxrss as u64,
    }
}

/// Writes `contents` to a file named `name` in a fresh temporary directory.
pub fn temp_file(name: &str, contents: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, contents).unwrap();
    (dir, path)
}

/// A large, valid wasm module (text form): `functions` distinct functions,
/// each doing some arithmetic, plus a `_start`. Compiling it takes a while,
/// which is what the compile-cache tests want.
pub fn large_module_wat(functions: usize) -> String {
    let mut wat = String::from("(module\n");
    for i in 0..functions {
        wat.push_str(&format!(
            "  (func $f{i} (param i64) (result i64)\n    local.get 0 i64.const {k} i64.mul i64.const {i} i64.add\n    local.get 0 i64.const 7 i64.rotl i64.xor\n    local.get 0 i64.const {i} i64.lt_u (if (result i64) (then i64.const 1) (else i64.const 2)) i64.add)\n",
            k = i * 2 + 1
        ));
    }
    wat.push_str("  (func (export \"_start\") i64.const 1 call $f0 drop)\n)\n");
    wat
}

pub mod baseline;
pub mod browser;
pub mod http;
pub mod netkit;

/// A running `weft serve` or `weft dev`, killed when dropped.
#[derive(Debug)]
pub struct Served {
    child: std::process::Child,
    /// The address it listens on.
    pub addr: std::net::SocketAddr,
    /// Lines it printed to stdout after the listening line, as they come.
    pub stdout: std::sync::mpsc::Receiver<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Served {
    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends a request.
    pub fn send(&self, request: http::Request<'_>) -> http::Response {
        http::send(self.addr, request)
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> http::Response {
        self.send(http::Request::new("GET", path))
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (up to `within`) for a stdout line containing `needle`; returns
    /// the lines read, ending with that one.
    pub fn wait_for_line(&self, needle: &str, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    seen.push(line);
                    if found {
                        return seen;
                    }
                }
                Err(_) => panic!(
                    "no line with {needle:?} within {within:?}; stdout so far: {seen:#?}\nstderr: {}",
                    self.stderr()
                ),
            }
        }
    }

    /// Stops it with SIGTERM and waits for it to exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: signalling our own child process by its pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Weft {
    /// Starts `weft serve --listen 127.0.0.1:0 ARGS` and waits until it
    /// listens.
    pub fn serve(&self, args: &[&str]) -> Served {
        let mut full = vec!["serve", "--listen", "127.0.0.1:0"];
        full.extend_from_slice(args);
        self.start(&full)
    }

    /// Starts `weft ARGS` (a `serve` or `dev`) and waits for the line that
    /// says where it listens.
    pub fn start(&self, args: &[&str]) -> Served {
        self.start_command(self.command(args), args)
    }

    /// Starts `weft serve` as the unprivileged user `nobody` (65534), with
    /// no capabilities, via `setpriv`.
    pub fn serve_as_nobody(&self, args: &[&str]) -> Served {
        let mut command = Command::new("setpriv");
        command
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
            ])
            .arg(weft_bin())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("WEFT_DATA", self.data.path())
            .env_remove("WEFT_LOG");
        self.start_command(command, args)
    }

    fn start_command(&self, mut command: Command, args: &[&str]) -> Served {
        use std::io::BufRead;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting weft");
        let stderr_text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = stderr_text.clone();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                let mut text = sink.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "weft {args:?} did not start: {}",
                    stderr_text.lock().unwrap()
                )
            });
        let addr = first
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no address in {first:?}"));
        Served {
            child,
            addr,
            stdout: rx,
            stderr: stderr_text,
        }
    }
}

/// Runs `f` on a thread inside the network namespace `name` (made with
/// `ip netns add`): its sockets, and the processes it starts, live there.
#[allow(unsafe_code)] // setns(2) on a thread of our own.
pub fn in_netns<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> T {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(format!("/var/run/netns/{name}"))
        .unwrap_or_else(|e| panic!("namespace {name}: {e}"));
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: a valid namespace descriptor; only this thread
                // (which ends with `f`) changes namespace.
                let entered = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(entered, 0, "setns: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
