//! Repository ids resolve through the local Hugging Face cache (`HF_HOME`,
//! `HF_HUB_CACHE`), offline.
//! In its own test binary because it sets `HF_HOME` for the process.

mod support;

use std::path::Path;

use candle_core::{DType, Device};
use gstwanedit::wan;

#[test]
fn repo_ids_resolve_through_the_cache() {
    let home = std::env::temp_dir().join(format!("wanedit-hf-home-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    let repo = home.join("hub/models--tiny--wan-t2v");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    let case = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parity/t2v_square_f5_1step/model");
    support::copy_dir(&case, &repo.join("snapshots").join(commit));
    // SAFETY: this binary's only test, so no other thread reads the environment.
    unsafe {
        std::env::set_var("HF_HOME", &home);
        std::env::set_var("HF_HUB_OFFLINE", "1");
    }

    let model = wan::load("tiny/wan-t2v", &Device::Cpu, DType::F32).unwrap();
    assert_eq!(model.kind(), wan::PipelineKind::TextToVideo);
    assert!(model.root().ends_with(commit));
    match wan::load("tiny/not-downloaded", &Device::Cpu, DType::F32) {
        Err(e) => assert!(e.to_string().contains("tiny/not-downloaded"), "{e}"),
        Ok(_) => panic!("an uncached repository loaded"),
    }

    // HF_HUB_CACHE names the hub directory itself and wins over HF_HOME.
    // SAFETY: as above.
    unsafe {
        std::env::set_var("HF_HOME", home.join("elsewhere"));
        std::env::set_var("HF_HUB_CACHE", home.join("hub"));
    }
    let model = wan::load("tiny/wan-t2v", &Device::Cpu, DType::F32).unwrap();
    assert!(model.root().ends_with(commit));
    let _ = std::fs::remove_dir_all(&home);
}
