//! `backend=cog` with an endpoint whose name resolves to several addresses, as a Kubernetes
//! headless Service does: each address is one server, and the name is followed as pods
//! come and go. The servers are loopback stand-ins on 127.0.0.1, 127.0.0.2 and 127.0.0.3
//! at one port, and the names are resolved by a resolver the test controls
//! (`WanEdit::set_resolver`).

#[path = "support/hosted/mod.rs"]
mod hosted;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use gst::prelude::*;
use gstwanedit::WanEdit;
use gstwanedit::backend::hosted::Resolve;
use hosted::pipeline::{Outcome, invert, run_configured};
use hosted::{Kind, Mock, Route};

/// 15 windows of 5 frames overlapping by 1.
const FRAMES: u64 = 61;
/// How long a name's answer holds: the fleet follows a change within a window or two.
const TTL: Duration = Duration::from_millis(50);

/// Answers for each name the last octets of the 127.0.0.x addresses the test gave it.
#[derive(Default)]
struct Names {
    answers: Mutex<HashMap<&'static str, Vec<u8>>>,
    lookups: AtomicUsize,
}

impl Names {
    fn answer(&self, name: &'static str, hosts: &[u8]) {
        self.answers.lock().unwrap().insert(name, hosts.to_vec());
    }

    /// Waits until the element has asked again.
    fn wait_for_a_lookup(&self) {
        let from = self.lookups.load(Ordering::SeqCst);
        wait_until(|| self.lookups.load(Ordering::SeqCst) > from);
    }
}

impl Resolve for Names {
    fn resolve(&self, host: &str, _port: u16) -> BoxFuture<'static, io::Result<Vec<IpAddr>>> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let answer = match self.answers.lock().unwrap().get(host) {
            Some(hosts) => Ok(hosts
                .iter()
                .map(|&h| IpAddr::V4(Ipv4Addr::new(127, 0, 0, h)))
                .collect()),
            None => Err(io::Error::other(format!("{host}: no such name"))),
        };
        futures::future::ready(answer).boxed()
    }

    fn ttl(&self) -> Duration {
        TTL
    }
}

/// Cog stand-ins on 127.0.0.1 to 127.0.0.`n`, all at one port, each prediction taking
/// 200 ms; and the port.
fn servers(n: u8) -> (Vec<Arc<Mock>>, u16) {
    for _ in 0..20 {
        let first = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = first.local_addr().unwrap().port();
        let Ok(rest) = (2..=n)
            .map(|h| TcpListener::bind((Ipv4Addr::new(127, 0, 0, h), port)))
            .collect::<io::Result<Vec<_>>>()
        else {
            continue;
        };
        let mocks: Vec<Arc<Mock>> = std::iter::once(first)
            .chain(rest)
            .map(|listener| Mock::serve(Kind::Cog, listener))
            .collect();
        for mock in &mocks {
            *mock.job_time.lock().unwrap() = Duration::from_millis(200);
        }
        return (mocks, port);
    }
    panic!("no port free on 127.0.0.1 to 127.0.0.{n}");
}

/// Runs `FRAMES` frames through `wanedit backend=cog endpoint=...` with `names` resolving.
fn stream(endpoint: &str, names: &Arc<Names>, properties: &str, frames: u64) -> Outcome {
    let resolver: Arc<dyn Resolve> = names.clone();
    run_configured(
        &format!(
            "backend=cog endpoint={endpoint} window-frames=5 overlap-frames=1 \
             max-in-flight=3 {properties}"
        ),
        frames,
        move |element| {
            element
                .downcast_ref::<WanEdit>()
                .unwrap()
                .set_resolver(resolver);
        },
    )
}

/// Predictions each server was sent.
fn predictions(mocks: &[Arc<Mock>]) -> Vec<usize> {
    mocks.iter().map(|m| m.count(Route::Create)).collect()
}

/// Waits until `ready` holds, or a minute has passed.
fn wait_until(ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits (on a thread of its own) until `ready` holds, then runs `then`.
fn when<T: Send + 'static>(
    ready: impl Fn() -> bool + Send + 'static,
    then: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::spawn(move || {
        wait_until(ready);
        then()
    })
}

#[test]
fn a_name_that_resolves_to_two_addresses_then_three_sends_windows_to_all() {
    let (mocks, port) = servers(3);
    let names = Arc::new(Names::default());
    names.answer("cog.test", &[1, 2]);
    let scale_up = {
        let (a, b, names) = (mocks[0].clone(), mocks[1].clone(), names.clone());
        when(
            move || a.count(Route::Create) >= 1 && b.count(Route::Create) >= 1,
            move || names.answer("cog.test", &[1, 2, 3]),
        )
    };
    let outcome = stream(&format!("http://cog.test:{port}"), &names, "", FRAMES);
    scale_up.join().unwrap();
    outcome.assert_frames(FRAMES, invert);
    let sent = predictions(&mocks);
    assert_eq!(
        sent.iter().sum::<usize>(),
        15,
        "one prediction a window: {sent:?}"
    );
    assert!(
        sent.iter().all(|&n| n >= 1),
        "every address edited: {sent:?}"
    );
    for mock in &mocks {
        assert_eq!(mock.most_running.load(Ordering::SeqCst), 1);
    }
}

#[test]
fn a_comma_list_of_two_names_is_one_fleet() {
    let (mocks, port) = servers(3);
    let names = Arc::new(Names::default());
    names.answer("left.test", &[1, 2]);
    names.answer("right.test", &[3]);
    let outcome = stream(
        &format!("http://left.test:{port},http://right.test:{port}"),
        &names,
        "",
        FRAMES,
    );
    outcome.assert_frames(FRAMES, invert);
    let sent = predictions(&mocks);
    assert_eq!(sent.iter().sum::<usize>(), 15, "{sent:?}");
    assert!(
        sent.iter().all(|&n| n >= 1),
        "every address edited: {sent:?}"
    );
}

#[test]
fn a_pod_that_leaves_the_answer_finishes_its_window_and_gets_no_other() {
    let (mocks, port) = servers(3);
    let leaving = mocks[2].clone();
    // Its first prediction is still running when it leaves.
    *leaving.job_time.lock().unwrap() = Duration::from_secs(1);
    let names = Arc::new(Names::default());
    names.answer("cog.test", &[1, 2, 3]);
    let scale_down = {
        let (watched, leaving, names) = (leaving.clone(), leaving.clone(), names.clone());
        when(
            move || watched.count(Route::Create) >= 1,
            move || {
                names.answer("cog.test", &[1, 2]);
                names.wait_for_a_lookup();
                // Past a window that had taken it and was checking its health.
                std::thread::sleep(Duration::from_millis(100));
                leaving.count(Route::Create)
            },
        )
    };
    let outcome = stream(&format!("http://cog.test:{port}"), &names, "", FRAMES);
    let before_leaving = scale_down.join().unwrap();
    outcome.assert_frames(FRAMES, invert);
    assert_eq!(
        leaving.count(Route::Create),
        before_leaving,
        "no window after it left"
    );
    let sent = predictions(&mocks);
    assert_eq!(sent.iter().sum::<usize>(), 15, "{sent:?}");
    assert_eq!(
        outcome.window_errors("retrying"),
        Vec::<String>::new(),
        "its window finished there"
    );
}

#[test]
fn a_pod_that_goes_away_mid_window_leaves_its_window_to_the_others() {
    let (mocks, port) = servers(3);
    let gone = mocks[2].clone();
    // Its first prediction is still running when it goes.
    *gone.job_time.lock().unwrap() = Duration::from_secs(5);
    let names = Arc::new(Names::default());
    names.answer("cog.test", &[1, 2, 3]);
    let scale_down = {
        let (watched, gone, names) = (gone.clone(), gone.clone(), names.clone());
        when(
            move || watched.count(Route::Create) >= 1,
            move || {
                std::thread::sleep(Duration::from_millis(100));
                names.answer("cog.test", &[1, 2]);
                gone.kill();
            },
        )
    };
    let outcome = stream(&format!("http://cog.test:{port}"), &names, "", FRAMES);
    scale_down.join().unwrap();
    outcome.assert_frames(FRAMES, invert);
    assert_eq!(
        gone.count(Route::Create),
        1,
        "one window went to the pod that went"
    );
    let sent = predictions(&mocks[..2]);
    assert_eq!(
        sent.iter().sum::<usize>(),
        15,
        "the others edited every window: {sent:?}"
    );
    let retrying = outcome.window_errors("retrying");
    assert_eq!(retrying.len(), 1, "{retrying:?}");
}

#[test]
fn a_name_that_does_not_resolve_is_named_in_the_error() {
    let names = Arc::new(Names::default());
    let outcome = stream(
        "http://u:s3cret@nowhere.test:5000",
        &names,
        "window-retries=0 allow-insecure-http=true",
        5,
    );
    let error = outcome.error().expect("no server to edit on");
    assert!(
        error.contains(
            "every Cog server is down: http://***@nowhere.test:5000/ (cannot resolve it: \
             nowhere.test: no such name)"
        ),
        "{error}"
    );
    assert!(!error.contains("s3cret"), "{error}");
}
