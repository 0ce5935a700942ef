//! Compiling untrusted uploads in a child process, off the serving path.
//!
//! The parent runs the configured program (the `pbx` binary's hidden
//! `compile-plugin` subcommand) with [`CompileRequest::to_args`], writes the
//! component to its stdin and waits, at most [`CompileSandbox::wall`]. The
//! child ([`serve_compile_request`]) first limits itself (`RLIMIT_CPU`,
//! `RLIMIT_AS`), then reads the component, validates, compiles and pre-links it
//! exactly as the server would, and leaves the compiled code in the shared
//! wasmtime cache directory (keyed by content hash and compiler settings), so
//! the server's own compile of the same bytes is a cache load. It answers one
//! line on stdout: `ok <sha256>` or `refused <message>`. A child killed by a
//! limit, or one that does not answer that way, refuses the upload.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::error::ValidationError;
use crate::runtime::{PluginRuntime, RuntimeConfig, World};

/// How uploads are compiled in a child process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileSandbox {
    /// The program to run: the `pbx` binary.
    pub program: PathBuf,
    /// Arguments that select the compile mode (`["compile-plugin"]` for
    /// `pbx`); the request's own arguments follow them.
    pub args: Vec<OsString>,
    /// CPU seconds the child may use (`RLIMIT_CPU`).
    pub cpu_secs: u64,
    /// Address space the child may map beyond what it has mapped when it
    /// starts compiling (`RLIMIT_AS` is set to the sum).
    pub memory_bytes: u64,
    /// Wall-clock bound; the child is killed past it.
    pub wall: Duration,
}

impl CompileSandbox {
    /// A sandbox running `program args...`, with 20 s of CPU, 1 GiB of address
    /// space and 30 s of wall time (a compile bomb at the
    /// [`CompileLimits`](crate::CompileLimits) takes a few seconds; the shipped
    /// plugins compile in well under one).
    pub fn new(program: PathBuf, args: Vec<OsString>) -> Self {
        Self {
            program,
            args,
            cpu_secs: 20,
            memory_bytes: 1 << 30,
            wall: Duration::from_secs(30),
        }
    }
}

/// What the parent asks one compile child: passed on its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileRequest {
    /// The world the upload is for.
    pub world: World,
    /// The runtime's cache directory, where the compiled code is left.
    pub cache_dir: PathBuf,
    /// The runtime's memory limit (part of the compile settings).
    pub memory_limit_bytes: usize,
    /// The largest upload accepted.
    pub max_component_bytes: usize,
    /// `RLIMIT_CPU` to set on itself.
    pub cpu_secs: u64,
    /// Address space it may add to what it has mapped (`RLIMIT_AS`).
    pub memory_bytes: u64,
}

impl CompileRequest {
    /// The request as command-line arguments.
    pub fn to_args(&self) -> Vec<OsString> {
        vec![
            self.world.to_string().into(),
            self.cache_dir.clone().into_os_string(),
            self.memory_limit_bytes.to_string().into(),
            self.max_component_bytes.to_string().into(),
            self.cpu_secs.to_string().into(),
            self.memory_bytes.to_string().into(),
        ]
    }

    /// Parses what [`CompileRequest::to_args`] wrote.
    pub fn from_args(args: &[OsString]) -> Result<Self, String> {
        let [world, cache_dir, memory_limit, max_component, cpu, memory] = args else {
            return Err(format!("expected 6 arguments, got {}", args.len()));
        };
        let text = |a: &OsString| {
            a.to_str()
                .map(str::to_owned)
                .ok_or_else(|| "arguments must be UTF-8".to_string())
        };
        let number = |a: &OsString| -> Result<u64, String> {
            text(a)?.parse().map_err(|e| format!("bad number: {e}"))
        };
        let world = match text(world)?.as_str() {
            "dialplan" => World::Dialplan,
            "policy" => World::Policy,
            "call-handler" => World::CallHandler,
            other => return Err(format!("unknown world {other:?}")),
        };
        let size =
            |a: &OsString| number(a).and_then(|n| usize::try_from(n).map_err(|e| e.to_string()));
        Ok(Self {
            world,
            cache_dir: PathBuf::from(cache_dir),
            memory_limit_bytes: size(memory_limit)?,
            max_component_bytes: size(max_component)?,
            cpu_secs: number(cpu)?,
            memory_bytes: number(memory)?,
        })
    }
}

/// Most bytes of the child's answer read.
const MAX_ANSWER: u64 = 4096;

/// Runs the compile child for `wasm`; Ok when it compiled and cached it.
pub(crate) fn compile(
    sandbox: &CompileSandbox,
    config: &RuntimeConfig,
    world: World,
    wasm: &[u8],
) -> Result<(), ValidationError> {
    let cache_dir = config
        .cache_dir
        .clone()
        .ok_or_else(|| ValidationError::Sandbox("no cache directory".into()))?;
    let request = CompileRequest {
        world,
        cache_dir,
        memory_limit_bytes: config.memory_limit_bytes,
        max_component_bytes: config.max_component_bytes,
        cpu_secs: sandbox.cpu_secs,
        memory_bytes: sandbox.memory_bytes,
    };
    let failed = |e: std::io::Error| ValidationError::Sandbox(e.to_string());
    let mut child = Command::new(&sandbox.program)
        .args(&sandbox.args)
        .args(request.to_args())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env_clear()
        .spawn()
        .map_err(failed)?;
    let started = Instant::now();
    // The child reads all of stdin before it compiles anything; a child that
    // dies first only makes this write fail, which its status then explains.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(wasm);
    }
    let status = loop {
        if let Some(status) = child.try_wait().map_err(failed)? {
            break status;
        }
        if started.elapsed() >= sandbox.wall {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ValidationError::CompileExhausted("wall-clock time"));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut answer = String::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = stdout.take(MAX_ANSWER).read_to_string(&mut answer);
    }
    let answer = answer.trim_end();
    if let Some(message) = answer.strip_prefix("refused ") {
        return Err(ValidationError::Refused(message.to_string()));
    }
    let hash = hex::encode(Sha256::digest(wasm));
    if status.success() && answer == format!("ok {hash}") {
        return Ok(());
    }
    if status.code().is_none() || started.elapsed() >= sandbox.wall {
        // Killed by a signal: SIGXCPU/SIGKILL at RLIMIT_CPU, or SIGABRT when
        // an allocation failed under RLIMIT_AS.
        return Err(ValidationError::CompileExhausted("CPU time or memory"));
    }
    Err(ValidationError::Sandbox(format!(
        "the compiler exited with {status} without an answer"
    )))
}

/// The child's side: limit this process, read a component from stdin,
/// compile it into the cache and answer on stdout (see the module docs).
/// The `pbx` binary's hidden `compile-plugin` subcommand calls this.
pub fn serve_compile_request(request: &CompileRequest) -> ExitCode {
    use rustix::process::{Resource, Rlimit, setrlimit};
    let limit = |n: u64| Rlimit {
        current: Some(n),
        maximum: Some(n),
    };
    // The limit is on what compiling may add: the process already maps its
    // allocator's arenas and its threads' stacks.
    let mapped = mapped_bytes().unwrap_or(0);
    let limited = setrlimit(Resource::Cpu, limit(request.cpu_secs)).and_then(|()| {
        setrlimit(
            Resource::As,
            limit(mapped.saturating_add(request.memory_bytes)),
        )
    });
    let answer = match limited {
        Err(e) => format!("refused could not limit the compiler: {e}"),
        Ok(()) => match compile_stdin(request) {
            Ok(hash) => format!("ok {hash}"),
            Err(e) => format!("refused {}", e.to_string().replace('\n', " ")),
        },
    };
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{answer}")
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// This process's address space (`VmSize`), in bytes.
fn mapped_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmSize:"))?;
    let kib: u64 = line
        .trim_start_matches("VmSize:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

fn compile_stdin(request: &CompileRequest) -> Result<String, ValidationError> {
    let mut wasm = Vec::new();
    let limit = u64::try_from(request.max_component_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    std::io::stdin()
        .lock()
        .take(limit)
        .read_to_end(&mut wasm)
        .map_err(|e| ValidationError::Sandbox(format!("reading the component: {e}")))?;
    let config = RuntimeConfig {
        memory_limit_bytes: request.memory_limit_bytes,
        max_component_bytes: request.max_component_bytes,
        cache_dir: Some(request.cache_dir.clone()),
        max_instances: 1,
        ..RuntimeConfig::default()
    };
    let runtime = PluginRuntime::for_compiling(config)
        .map_err(|e| ValidationError::Sandbox(e.to_string()))?;
    let plugin = runtime.load(request.world, &wasm)?;
    Ok(plugin.hash().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_through_arguments() {
        let request = CompileRequest {
            world: World::Policy,
            cache_dir: PathBuf::from("/tmp/cache"),
            memory_limit_bytes: 16 << 20,
            max_component_bytes: 1 << 24,
            cpu_secs: 20,
            memory_bytes: 1 << 30,
        };
        for world in [World::Dialplan, World::Policy, World::CallHandler] {
            let request = CompileRequest {
                world,
                ..request.clone()
            };
            assert_eq!(CompileRequest::from_args(&request.to_args()), Ok(request));
        }
        assert!(CompileRequest::from_args(&[]).is_err());
    }

    #[test]
    fn a_child_that_does_not_answer_refuses_the_upload() {
        // `true` exits 0 without the `ok <hash>` line a real compiler prints.
        let dir = tempfile::tempdir().unwrap();
        let config = RuntimeConfig {
            cache_dir: Some(dir.path().to_path_buf()),
            ..RuntimeConfig::default()
        };
        let sandbox = CompileSandbox::new("/bin/true".into(), Vec::new());
        let err = compile(
            &sandbox,
            &config,
            World::Dialplan,
            crate::shipped::DEFAULT_DIALPLAN,
        )
        .unwrap_err();
        assert!(matches!(err, ValidationError::Sandbox(_)), "{err}");
    }
}
