//! The self-hosted backend against a real Cog server (`pip install cog`), whose predictor
//! (scripts/cog/predict.py) really edits: it inverts red and green and writes 3 × the
//! frame's index in its clip into blue, so every output pixel tells which window, and which
//! frame of it, it came from.
//!
//! Not installed means failed, with what to install: `scripts/ci/hosted.sh` installs it.

#[path = "support/cog.rs"]
mod cog;
#[path = "support/hosted/pipeline.rs"]
mod pipeline;

use cog::{CogServer, Predictor};
use pipeline::{colour, run};

const FRAMES: u64 = 200;
const W: u64 = 81;
const O: u64 = 16;

fn stand_in() -> CogServer {
    CogServer::start(&Predictor::stand_in())
}

/// Predictions `server` ran to the end.
fn predictions(server: &CogServer) -> usize {
    server.log().matches("edited 81 frames").count()
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
    let server = stand_in();
    let outcome = run(
        &format!(
            "backend=cog endpoint={} window-frames={W} overlap-frames={O}",
            server.url
        ),
        FRAMES,
    );
    check_every_frame(&outcome);
    assert_eq!(window_starts(), vec![0, 65, 119]);
    assert_eq!(predictions(&server), 3);
}

#[test]
fn a_fleet_of_two_cog_servers_shares_the_windows() {
    let (a, b) = (stand_in(), stand_in());
    let outcome = run(
        &format!(
            "backend=cog endpoint={},{} window-frames={W} overlap-frames={O} max-in-flight=2",
            a.url, b.url
        ),
        FRAMES,
    );
    check_every_frame(&outcome);
    let (on_a, on_b) = (predictions(&a), predictions(&b));
    assert_eq!(on_a + on_b, 3);
    assert!(
        on_a >= 1 && on_b >= 1,
        "both servers edited: {on_a} and {on_b}"
    );
}
