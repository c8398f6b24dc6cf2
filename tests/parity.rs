//! Parity of the Candle port with diffusers, case by case (see PARITY.md).
//!
//! Every case directory under `tests/fixtures/parity/`, and under the directory named by
//! `WANEDIT_PARITY_CASES` when it is set, is loaded with the public loader, run on the
//! CPU in f32 with the case's noise, and each tensor of `expected.safetensors` is
//! compared by relative L2 error against the case's tolerance (default 1e-4).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use gstwanedit::wan::parity::run_case;

/// The case directories: the committed ones, then those of `WANEDIT_PARITY_CASES`.
fn case_dirs() -> Result<Vec<PathBuf>, String> {
    let mut roots = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity")];
    if let Some(extra) = std::env::var_os("WANEDIT_PARITY_CASES") {
        roots.push(PathBuf::from(extra));
    }
    let mut dirs = Vec::new();
    for root in roots {
        let entries = std::fs::read_dir(&root).map_err(|e| format!("{}: {e}", root.display()))?;
        let mut found: Vec<PathBuf> = entries
            .map(|entry| {
                entry
                    .map(|e| e.path())
                    .map_err(|e| format!("{}: {e}", root.display()))
            })
            .collect::<Result<_, _>>()?;
        found.retain(|p| p.is_dir());
        found.sort();
        if found.is_empty() {
            return Err(format!("{}: no case directories", root.display()));
        }
        dirs.extend(found);
    }
    Ok(dirs)
}

#[test]
fn parity_with_diffusers() {
    let dirs = case_dirs().unwrap_or_else(|e| panic!("parity cases unreadable: {e}"));
    let mut failures = Vec::new();
    for dir in &dirs {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match run_case(dir, &Device::Cpu, DType::F32, None) {
            Ok(stages) => {
                let ok = stages.iter().all(|s| s.passed());
                let lines: Vec<String> = stages.iter().map(|s| s.to_string()).collect();
                for line in &lines {
                    println!("{name}: {line}");
                }
                if !ok {
                    failures.push(format!("{name}:\n  {}", lines.join("\n  ")));
                }
            }
            Err(e) => {
                println!("{name}: FAILED: {e}");
                failures.push(format!("{name}: {e}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} parity cases failed:\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n")
    );
}
