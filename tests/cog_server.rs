//! The self-hosted backend against a real Cog server (`pip install cog`), whose predictor
//! (scripts/cog/predict.py) really edits: it inverts red and green and writes 3 × the
//! frame's index in its clip into blue, so every output pixel tells which window, and which
//! frame of it, it came from.
//!
//! Not installed means failed, with what to install: `scripts/ci/hosted.sh` installs it.

#[path = "support/hosted/pipeline.rs"]
mod pipeline;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use pipeline::{colour, run};

const FRAMES: u64 = 200;
const W: u64 = 81;
const O: u64 = 16;

/// A Cog server on a free loopback port, stopped (with its worker) when dropped.
struct CogServer {
    child: Child,
    url: String,
    log: PathBuf,
}

impl CogServer {
    fn start() -> CogServer {
        let python = std::env::var("WANEDIT_COG_PYTHON").unwrap_or_else(|_| "python3".into());
        let check = Command::new(&python)
            .args(["-c", "import cog.server.http, av, numpy"])
            .output();
        assert!(
            check.as_ref().is_ok_and(|o| o.status.success()),
            "Cog is not installed for {python}: run `{python} -m pip install -r \
             scripts/cog/requirements.txt` (or set WANEDIT_COG_PYTHON to a Python that has \
             it): {check:?}"
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::env::temp_dir().join(format!("wanedit-cog-{port}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(&python)
            .args(["-m", "cog.server.http", "--host", "127.0.0.1"])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cog"))
            .env("COG_PREDICT_TYPE_STUB", "predict.py:Predictor")
            .env("PORT", port.to_string())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            // Its own process group, so that the worker it spawns goes down with it.
            .process_group(0)
            .spawn()
            .unwrap();
        let server = CogServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        server.wait_ready(port);
        server
    }

    fn wait_ready(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = stream.write_all(
                    b"GET /health-check HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                );
                let mut answer = String::new();
                let _ = stream.read_to_string(&mut answer);
                if answer.contains("\"READY\"") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("the Cog server on port {port} was not READY within 90 s");
    }

    /// Predictions this server ran to the end.
    fn predictions(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .matches("edited 81 frames")
            .count()
    }
}

impl Drop for CogServer {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// The windows' first frames: every S = W - O frames, and at the end one that ends on the
/// last frame.
fn window_starts() -> Vec<u64> {
    let mut starts: Vec<u64> = (0..)
        .map(|k| k * (W - O))
        .take_while(|s| s + W <= FRAMES)
        .collect();
    if starts.last().unwrap() + W < FRAMES {
        starts.push(FRAMES - W);
    }
    starts
}

/// Blue of output frame `n`: 3 × its index in each window that holds it, crossfaded
/// linearly over the span two neighbours share.
fn expected_blue(n: u64) -> f64 {
    let starts = window_starts();
    let holding: Vec<usize> = (0..starts.len())
        .filter(|&k| (starts[k]..starts[k] + W).contains(&n))
        .collect();
    let value = |k: usize| (3 * (n - starts[k])).min(255) as f64;
    match holding.as_slice() {
        [k] => value(*k),
        [a, b] => {
            let span = starts[*a] + W - starts[*b];
            let w = (n - starts[*b] + 1) as f64 / (span + 1) as f64;
            (1.0 - w) * value(*a) + w * value(*b)
        }
        other => panic!("frame {n} in windows {other:?}"),
    }
}

fn check_every_frame(outcome: &pipeline::Outcome) {
    assert_eq!(outcome.error(), None);
    assert_eq!(outcome.frames.len() as u64, FRAMES);
    for (n, (pts, rgb)) in outcome.frames.iter().enumerate() {
        let n = n as u64;
        assert_eq!(*pts, pipeline::frame_pts(n));
        let input = colour(n);
        let want = [255 - input[0], 255 - input[1]];
        let blue = expected_blue(n);
        assert!(
            rgb[0].abs_diff(want[0]) <= 10 && rgb[1].abs_diff(want[1]) <= 10,
            "frame {n}: {rgb:?}, red and green should be about {want:?}"
        );
        assert!(
            (rgb[2] as f64 - blue).abs() <= 10.0,
            "frame {n}: blue {} should be about {blue:.1}",
            rgb[2]
        );
    }
}

#[test]
fn a_cog_server_edits_every_frame_of_a_stream() {
    let server = CogServer::start();
    let outcome = run(
        &format!(
            "backend=cog endpoint={} window-frames={W} overlap-frames={O}",
            server.url
        ),
        FRAMES,
    );
    check_every_frame(&outcome);
    assert_eq!(window_starts(), vec![0, 65, 119]);
    assert_eq!(server.predictions(), 3);
}

#[test]
fn a_fleet_of_two_cog_servers_shares_the_windows() {
    let (a, b) = (CogServer::start(), CogServer::start());
    let outcome = run(
        &format!(
            "backend=cog endpoint={},{} window-frames={W} overlap-frames={O} max-in-flight=2",
            a.url, b.url
        ),
        FRAMES,
    );
    check_every_frame(&outcome);
    let (on_a, on_b) = (a.predictions(), b.predictions());
    assert_eq!(on_a + on_b, 3);
    assert!(
        on_a >= 1 && on_b >= 1,
        "both servers edited: {on_a} and {on_b}"
    );
}
