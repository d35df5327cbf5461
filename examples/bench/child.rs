//! csp-sync as its own process: the binary built (or found up to date) by cargo, and one run of it with
//! its wall time, CPU time and peak memory from the kernel's accounting of that child (`wait4`).
//!
//! The runs are started by a launcher: this same program, started first while it is still small. Linux
//! counts into a child's peak memory (`ru_maxrss`) the memory of the process it was spawned from (exec
//! keeps the high-water mark of the address space it replaces), and the bench itself holds the emulator's
//! estate and the planners' 100,000 users; the launcher holds a few MB.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Builds `csp-sync` with the profile this example was built with (`cargo build` is a no-op when the
/// binary is up to date, so a stale binary is never run) and returns its path.
pub fn build_binary() -> Result<PathBuf, String> {
    // target/<profile>/examples/bench -> target/<profile>/csp-sync
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the bench's own path: {e}"))?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("the bench is not in target/<profile>/examples")?;
    let profile = profile_dir
        .file_name()
        .and_then(|p| p.to_str())
        .unwrap_or("release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "--quiet", "--bin", "csp-sync", "--manifest-path"])
        .arg(&manifest);
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    // The target directory of this example, whatever CARGO_TARGET_DIR said when it was built.
    if let Some(target) = profile_dir.parent() {
        cmd.arg("--target-dir").arg(target);
    }
    eprintln!("bench: cargo build --bin csp-sync ({profile} profile)");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {cargo} build: {e}"))?;
    if !status.success() {
        return Err(format!(
            "cargo build --bin csp-sync failed ({status}); fix the build, then run the bench again"
        ));
    }
    let bin = profile_dir.join(format!("csp-sync{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        return Err(format!(
            "cargo built csp-sync but {} is missing",
            bin.display()
        ));
    }
    Ok(bin)
}

/// One finished run.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Run {
    pub code: i32,
    pub wall: Duration,
    /// User + system CPU of csp-sync (`None` where the platform does not say).
    pub cpu: Option<Duration>,
    /// Peak resident memory of csp-sync, bytes.
    pub peak_bytes: Option<u64>,
    pub stdout_bytes: u64,
    /// The last 4 KB of stderr (shown when the run fails).
    pub stderr_tail: String,
}

/// Runs `bin args` with `env` added, stdout counted (not kept), to completion.
pub fn run(bin: &Path, args: &[&str], env: &[(String, String)]) -> Result<Run, String> {
    let start = Instant::now();
    let mut child = Command::new(bin)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let mut stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let mut stderr = child.stderr.take().ok_or("no stderr pipe")?;
    let out = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let mut n = 0u64;
        while let Ok(k) = stdout.read(&mut buf) {
            if k == 0 {
                break;
            }
            n += k as u64;
        }
        n
    });
    let err = std::thread::spawn(move || {
        let mut tail = Vec::new();
        let mut buf = vec![0u8; 1 << 14];
        while let Ok(k) = stderr.read(&mut buf) {
            if k == 0 {
                break;
            }
            tail.extend_from_slice(&buf[..k]);
            if tail.len() > 8192 {
                tail.drain(..tail.len() - 4096);
            }
        }
        String::from_utf8_lossy(&tail).into_owned()
    });
    let (code, cpu, peak_bytes) = wait(&mut child)?;
    let wall = start.elapsed();
    Ok(Run {
        code,
        wall,
        cpu,
        peak_bytes,
        stdout_bytes: out.join().unwrap_or(0),
        stderr_tail: err.join().unwrap_or_default(),
    })
}

/// Reaps the child with `wait4`, which reports that child's own resource use (not the bench's, not the
/// other children's).
#[cfg(unix)]
fn wait(child: &mut std::process::Child) -> Result<(i32, Option<Duration>, Option<u64>), String> {
    let pid = libc::pid_t::try_from(child.id()).map_err(|_| "child pid out of range")?;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data, fully written by wait4 on success.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to locals; pid is our own child, not yet reaped (std never waited on it).
        let r = unsafe { libc::wait4(pid, &raw mut status, 0, &raw mut usage) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("wait4 on csp-sync: {e}"));
        }
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    let cpu = tv(usage.ru_utime) + tv(usage.ru_stime);
    // Linux reports ru_maxrss in KiB, macOS in bytes.
    let peak = if cfg!(target_os = "macos") {
        usage.ru_maxrss as u64
    } else {
        usage.ru_maxrss as u64 * 1024
    };
    Ok((code, Some(cpu), Some(peak)))
}

#[cfg(not(unix))]
fn wait(child: &mut std::process::Child) -> Result<(i32, Option<Duration>, Option<u64>), String> {
    let status = child
        .wait()
        .map_err(|e| format!("waiting for csp-sync: {e}"))?;
    Ok((status.code().unwrap_or(1), None, None))
}

/// Set in the launcher's environment.
pub const LAUNCHER_ENV: &str = "CSP_SYNC_BENCH_LAUNCHER";

/// One request to the launcher.
#[derive(serde::Serialize, serde::Deserialize)]
struct Request {
    bin: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

/// The launcher process, spawned once and asked for each run over its stdin/stdout (one JSON line each
/// way).
pub struct Launcher {
    child: std::process::Child,
    /// `None` once closed (in `drop`, before waiting: the launcher ends its loop on EOF).
    stdin: Option<std::process::ChildStdin>,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Launcher {
    pub fn start() -> Result<Launcher, String> {
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot find the bench's own path: {e}"))?;
        let mut child = Command::new(exe)
            .env(LAUNCHER_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the bench's launcher: {e}"))?;
        let stdin = child.stdin.take().ok_or("no launcher stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no launcher stdout")?);
        Ok(Launcher {
            child,
            stdin: Some(stdin),
            stdout,
        })
    }

    /// Runs `bin args` with `env` added (see [`run`]) from the launcher.
    pub fn run(
        &mut self,
        bin: &Path,
        args: &[&str],
        env: &[(String, String)],
    ) -> Result<Run, String> {
        let req = Request {
            bin: bin.to_path_buf(),
            args: args.iter().map(ToString::to_string).collect(),
            env: env.to_vec(),
        };
        let mut line = serde_json::to_string(&req).map_err(|e| e.to_string())?;
        line.push('\n');
        let stdin = self.stdin.as_mut().ok_or("the launcher is closed")?;
        stdin
            .write_all(line.as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("the launcher is gone: {e}"))?;
        let mut reply = String::new();
        self.stdout
            .read_line(&mut reply)
            .map_err(|e| format!("the launcher is gone: {e}"))?;
        let reply: Result<Run, String> = serde_json::from_str(&reply)
            .map_err(|e| format!("the launcher answered {reply:?}: {e}"))?;
        reply
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        // Close its stdin first (fields drop only after this body): it ends its loop on EOF, then exits.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// The launcher's loop: one request per stdin line, one reply per stdout line, until stdin closes.
pub fn serve_launcher() {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let reply: Result<Run, String> = serde_json::from_str::<Request>(&line)
            .map_err(|e| format!("bad launcher request: {e}"))
            .and_then(|r| {
                let args: Vec<&str> = r.args.iter().map(String::as_str).collect();
                run(&r.bin, &args, &r.env)
            });
        let text = serde_json::to_string(&reply).unwrap_or_else(|e| format!("{{\"Err\":\"{e}\"}}"));
        if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
            break;
        }
    }
}
