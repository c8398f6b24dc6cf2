fn main() {
    gst_plugin_version_helper::info();
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        flash_attention_ptx();
    }
}

/// Compiles the fused attention kernel to PTX with nvcc; the driver compiles the PTX for
/// the GPU at load time. bf16 tensor-core products need compute capability 8.0 or later.
fn flash_attention_ptx() {
    let source = "src/wan/flash_attn/flash_attn.cu";
    println!("cargo::rerun-if-changed={source}");
    println!("cargo::rerun-if-env-changed=CUDA_COMPUTE_CAP");
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "80".into());
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("flash_attn.ptx");
    let status = std::process::Command::new("nvcc")
        .args(["--ptx", "-O3", "-std=c++17"])
        .arg(format!("--gpu-architecture=compute_{cap}"))
        .arg("-o")
        .arg(&out)
        .arg(source)
        .status()
        .unwrap_or_else(|e| panic!("nvcc is needed for --features cuda: {e}"));
    assert!(status.success(), "nvcc failed on {source}");
}
