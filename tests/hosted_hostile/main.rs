//! What a broken or hostile provider can do to the process: nothing. Each test serves one
//! bad answer from a loopback server and checks that the edit ends with a clear error (or
//! rides through), with bounded memory, no panic and no hang past the timeouts.

#[path = "../support/hosted/mod.rs"]
mod hosted;

mod http;
mod jobs;
