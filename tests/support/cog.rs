//! Real Cog servers (coglet) on loopback ports, for the tests of `backend=cog`: the
//! stand-in predictor of scripts/cog/ and the plugin's own model in deploy/cog/.
#![allow(dead_code)] // each test binary uses its own part

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A predictor folder, the Python that runs it and the environment it needs.
pub struct Predictor {
    dir: PathBuf,
    python: PathBuf,
    /// A folder to put first on PATH: Cog's server starts its worker as the `python`
    /// found there.
    bin: Option<PathBuf>,
    env: Vec<(String, String)>,
    /// Python modules the predictor imports, checked before a server starts.
    imports: &'static str,
    install: &'static str,
}

impl Predictor {
    /// scripts/cog/: the stand-in that inverts red and green and writes each frame's index
    /// into blue.
    pub fn stand_in() -> Self {
        let python = std::env::var("WANEDIT_COG_PYTHON").unwrap_or_else(|_| "python3".into());
        Self {
            dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cog"),
            python: python.into(),
            bin: None,
            env: Vec::new(),
            imports: "import cog.server.http, av, numpy",
            install: "scripts/ci/hosted.sh (or `pip install -r scripts/cog/requirements.txt` \
                      and WANEDIT_COG_PYTHON set to that Python)",
        }
    }

    /// deploy/cog/: the plugin's `backend=candle` served, with `model` on the CPU; the
    /// plugin is the one `cargo build --release` made.
    pub fn served_model(model: &Path, plugin_dir: &Path) -> Self {
        let venv = std::env::var("WANEDIT_COG_MODEL_VENV").map_or_else(
            |_| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/cog-model-venv"),
            PathBuf::from,
        );
        let registry = std::env::temp_dir().join(format!(
            "wanedit-cog-model-registry-{}.bin",
            std::process::id()
        ));
        Self {
            dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/cog"),
            python: venv.join("bin/python"),
            bin: Some(venv.join("bin")),
            env: vec![
                ("WANEDIT_MODEL".into(), model.display().to_string()),
                ("WANEDIT_DEVICE".into(), "cpu".into()),
                ("GST_PLUGIN_PATH".into(), plugin_dir.display().to_string()),
                ("GST_REGISTRY".into(), registry.display().to_string()),
            ],
            imports: "import cog.server.http, gi",
            install: "`source scripts/ci/cog_model.sh` (a virtual environment of the \
                      system Python, which has python3-gi, with Cog)",
        }
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
        self
    }
}

/// A Cog server on a free loopback port, stopped (with its worker) when dropped.
pub struct CogServer {
    child: Child,
    pub url: String,
    port: u16,
    log: PathBuf,
}

impl CogServer {
    /// A server of `predictor`, once its health check says READY.
    pub fn start(predictor: &Predictor) -> CogServer {
        let server = Self::spawn(predictor);
        server.wait_for("READY");
        server
    }

    /// A server of `predictor`, as soon as it runs.
    pub fn spawn(predictor: &Predictor) -> CogServer {
        let python = &predictor.python;
        let check = Command::new(python)
            .args(["-c", predictor.imports])
            .output();
        assert!(
            check.as_ref().is_ok_and(|o| o.status.success()),
            "{} cannot run {}: {} is missing; install it with {}: {check:?}",
            python.display(),
            predictor.dir.display(),
            predictor.imports,
            predictor.install
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::env::temp_dir().join(format!("wanedit-cog-{port}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(python);
        command
            .args(["-m", "cog.server.http", "--host", "127.0.0.1"])
            .current_dir(&predictor.dir)
            .env("COG_PREDICT_TYPE_STUB", "predict.py:Predictor")
            .env("PORT", port.to_string())
            .envs(predictor.env.iter().map(|(k, v)| (k, v)))
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            // Its own process group, so that the worker it spawns goes down with it.
            .process_group(0);
        if let Some(bin) = &predictor.bin {
            let path = std::env::var("PATH").unwrap_or_default();
            command.env("PATH", format!("{}:{path}", bin.display()));
        }
        CogServer {
            child: command.spawn().unwrap(),
            url: format!("http://127.0.0.1:{port}"),
            port,
            log,
        }
    }

    /// The server's `/health-check` answer (empty when it does not answer).
    pub fn health(&self) -> String {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return String::new();
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = stream.write_all(
            b"GET /health-check HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        );
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    }

    /// Waits (90 s at most) until the health check says `status`.
    pub fn wait_for(&self, status: &str) {
        let deadline = Instant::now() + Duration::from_secs(90);
        let wanted = format!("\"status\":\"{status}\"");
        while Instant::now() < deadline {
            if self.health().contains(&wanted) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "the Cog server on port {} did not say {status} within 90 s:\n{}",
            self.port,
            self.log()
        );
    }

    /// What the server and its predictor wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the server and its worker at once, as a machine that goes away.
    pub fn kill(&mut self) {
        self.signal("-KILL");
        let _ = self.child.wait();
    }

    fn signal(&self, signal: &str) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args([signal, "--", &group]).status();
    }
}

impl Drop for CogServer {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        self.signal("-TERM");
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.kill();
    }
}
