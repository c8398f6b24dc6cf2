//! The soak in CI: two minutes of 480p30 video (3,600 frames) through `wanedit` and a
//! loopback provider that injects every transient fault the HTTP layer handles, and fails
//! some jobs. `scripts/soak.sh` runs the same for an hour of video.

#[path = "support/hosted/mod.rs"]
mod hosted;
#[path = "support/soak.rs"]
mod soak;

use std::time::Duration;

#[test]
fn two_minutes_through_faults_lose_no_frame() {
    let config = soak::Config {
        frames: 3_600,
        // Enough samples in a run of a minute or two to compare its halves.
        rss_every: Duration::from_secs(1),
        ..Default::default()
    };
    let report = soak::run(&config);
    println!("{report}");

    assert_eq!(report.frames_in, 3_600);
    assert_eq!(report.frames_out, 3_600, "one output frame per input frame");
    assert_eq!(report.pts_equal, 3_600, "every frame keeps its PTS");
    assert_eq!(report.windows_failed, 0, "every window got through");
    assert_eq!(report.warnings, 0);
    assert_eq!(
        report.frames_edited, 3_600,
        "every frame shows the provider's answer, none passed through"
    );
    // 3,600 frames are 56 windows: every 20th job fails, so some windows were submitted
    // again.
    assert!(
        report.jobs_made_to_fail >= 2,
        "{}",
        report.jobs_made_to_fail
    );
    assert!(
        report.resubmissions >= report.jobs_made_to_fail,
        "each failed job's window went again"
    );
    assert!(report.windows_retried > 0);
    // The faults really went out, of several kinds, at about the rate asked for.
    let kinds = report.faults.len();
    assert!(
        kinds >= 5,
        "only {kinds} kinds of fault: {:?}",
        report.faults
    );
    let share = report.faults_served() as f64 / report.requests as f64;
    assert!(
        (0.01..0.15).contains(&share),
        "{} faults in {} requests",
        report.faults_served(),
        report.requests
    );
    // Peak RSS within (max-in-flight + 2) windows of input frames + 150 MiB, and no
    // growth over the last half of the run (docs/reliability.md).
    assert_eq!(report.broken_rules(), Vec::<String>::new());
}
