//! What a broken or hostile provider can do to the process: nothing. Each test serves one
//! bad answer from a loopback server and checks that the edit ends with a clear error (or
//! rides through), with bounded memory, no panic and no hang past the timeouts.

#[path = "../support/hosted/mod.rs"]
mod hosted;

mod http;
mod jobs;

use std::sync::Arc;
use std::time::{Duration, Instant};

use gstwanedit::backend::runtime::runtime;
use gstwanedit::backend::{Backend, BackendError, ClipFrame, EditRequest};

/// Runs one edit to its end: its decoded frames or its error, and how long it took.
fn edit_with(
    backend: &Arc<dyn Backend>,
    request: EditRequest,
) -> (Result<Vec<ClipFrame>, BackendError>, Duration) {
    let started = Instant::now();
    let edit = backend.edit(request);
    let result = runtime().block_on(async {
        tokio::time::timeout(Duration::from_secs(120), edit)
            .await
            .expect("no edit takes two minutes against a loopback server")
    });
    (
        result.and_then(|clip| clip.into_frames().collect()),
        started.elapsed(),
    )
}
