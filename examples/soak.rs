//! The soak: an hour of generated 480p30 video through `wanedit` and a loopback provider
//! that injects faults; prints the report and exits non-zero when a rule is broken.
//!
//!     cargo run --release --example soak -- [--frames 108000] [--seed 10] [--rate 0.05]
//!         [--fail-every 20] [--max-in-flight 4] [--min-job 0.5] [--max-job 3]
//!         [--request-timeout 3] [--stall 5] [--rss-every 10]
//!
//! What runs and what is checked: tests/support/soak.rs; `scripts/soak.sh` builds and runs
//! this example.

#[path = "../tests/support/hosted/mod.rs"]
mod hosted;
#[path = "../tests/support/soak.rs"]
mod soak;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};

const USAGE: &str = "usage: soak [--frames N] [--seed N] [--rate P] [--fail-every N] \
                     [--max-in-flight N] [--min-job S] [--max-job S] [--request-timeout S] \
                     [--stall S] [--rss-every S]";

fn parse_args() -> Result<soak::Config> {
    let mut config = soak::Config {
        progress: true,
        ..Default::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = args
            .next()
            .with_context(|| format!("{arg} needs a value\n{USAGE}"))?;
        let number = || {
            value
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .with_context(|| format!("{arg} takes a number, not {value:?}"))
        };
        let seconds = || number().map(Duration::from_secs_f64);
        match arg.as_str() {
            "--frames" => config.frames = number()? as u64,
            "--seed" => config.seed = number()? as u64,
            "--rate" => config.fault_rate = number()?,
            "--fail-every" => config.fail_every = number()? as usize,
            "--max-in-flight" => config.max_in_flight = number()? as u32,
            "--min-job" => config.job_times.0 = seconds()?,
            "--max-job" => config.job_times.1 = seconds()?,
            "--request-timeout" => config.request_timeout = seconds()?,
            "--stall" => config.stall = seconds()?,
            "--rss-every" => config.rss_every = seconds()?,
            _ => bail!("unknown option {arg}\n{USAGE}"),
        }
    }
    if config.job_times.0 > config.job_times.1 {
        bail!("--min-job is longer than --max-job");
    }
    Ok(config)
}

fn main() -> Result<ExitCode> {
    let config = parse_args()?;
    println!("{config:?}");
    let report = soak::run(&config);
    println!("\n{report}");
    let broken = report.broken_rules();
    if broken.is_empty() {
        println!("All rules hold.");
        return Ok(ExitCode::SUCCESS);
    }
    for rule in &broken {
        println!("BROKEN: {rule}");
    }
    Ok(ExitCode::FAILURE)
}
