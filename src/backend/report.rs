use std::sync::Arc;

/// A step in the life of a job, as a backend reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum JobUpdate {
    /// The job exists (remotely or locally) under this id.
    Submitted { job_id: String },
    /// The job is running; `progress` in [0, 1] where the backend knows it.
    Running { progress: Option<f64> },
}

/// Where a backend reports how its job goes. The element turns reports into
/// `wanedit-window` messages.
#[derive(Clone)]
pub struct JobReporter(Arc<dyn Fn(JobUpdate) + Send + Sync>);

impl JobReporter {
    pub fn new(f: impl Fn(JobUpdate) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// A reporter that drops every report.
    pub fn discard() -> Self {
        Self::new(|_| ())
    }

    pub fn report(&self, update: JobUpdate) {
        (self.0)(update)
    }
}

impl std::fmt::Debug for JobReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobReporter")
    }
}
