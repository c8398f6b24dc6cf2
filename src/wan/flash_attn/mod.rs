//! Fused flash-style attention on CUDA for head dim 128 in bf16 (the Wan models' case),
//! as a Candle custom op on `(q, k, v)`.
//!
//! The kernel (`flash_attn.cu`, compiled to PTX by `build.rs` with nvcc) keeps the scores
//! in registers: an online softmax over tiles of 64 keys, tensor-core products through
//! `mma.sync`, in the manner of FlashAttention-2. [`crate::wan::attention`] dispatches
//! to it once [`self_check`] has seen it agree with the blocked attention on the device;
//! `scripts/gpu-check.sh` compares the two at full size.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaStorage, WrapErr};
use candle_core::{
    CpuStorage, CustomOp3, DType, Device, DeviceLocation, Layout, Result, Shape, Tensor, bail,
};
use half::bf16;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/flash_attn.ptx"));
const KERNEL: &str = "wan_flash_attn_bf16_d128";
const HEAD_DIM: usize = 128;
/// Query rows per block and threads per block, as the kernel is written.
const BLOCK_ROWS: usize = 128;
const BLOCK_THREADS: u32 = 256;
/// Batch times heads: the grid's y dimension, which CUDA caps at 65,535.
const MAX_HEADS: usize = 65_535;
/// The largest relative L2 error against the blocked attention the kernel may have:
/// bf16's tolerance of the parity cases.
pub const TOLERANCE: f64 = 2e-2;

/// Whether the fused kernel computes attention of these queries.
pub fn supports(q: &Tensor) -> bool {
    q.device().is_cuda()
        && q.dtype() == DType::BF16
        && matches!(q.dims4(), Ok((b, h, sq, HEAD_DIM)) if sq > 0 && b * h <= MAX_HEADS)
}

/// What the first fused attention on a device found: the kernel is used only where it
/// agreed with the blocked attention.
#[derive(Debug, Clone)]
pub enum SelfCheck {
    /// Relative L2 error against the blocked attention within [`TOLERANCE`].
    Passed { error: f64 },
    /// The kernel ran but disagreed: the blocked attention is used instead.
    Disagreed { error: f64 },
    /// The kernel could not run (for example a GPU older than compute capability 8.0).
    Failed(String),
}

impl SelfCheck {
    pub fn passed(&self) -> bool {
        matches!(self, Self::Passed { .. })
    }
}

impl std::fmt::Display for SelfCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Passed { error } => write!(
                f,
                "the fused attention agrees with the blocked one (relative L2 error {error:.2e})"
            ),
            Self::Disagreed { error } => write!(
                f,
                "the fused attention disagrees with the blocked one (relative L2 error {error:.2e}, tolerance {TOLERANCE:.0e}); using the blocked attention"
            ),
            Self::Failed(why) => write!(
                f,
                "the fused attention cannot run ({why}); using the blocked attention"
            ),
        }
    }
}

/// Runs the kernel once against the blocked attention on `device`, on the first call for
/// that device, and returns what it found ever after.
///
/// The kernel is compiled from PTX by the driver of whatever GPU it meets; one small
/// comparison (tails of both tile sizes included) keeps a wrong result on an untested
/// GPU or driver from reaching a video. It cannot catch what this size does not show,
/// and a kernel that faults leaves the CUDA context unusable: such a failure fails the
/// window rather than falling back.
pub fn self_check(device: &Device) -> Arc<SelfCheck> {
    static CHECKS: Mutex<BTreeMap<usize, Arc<SelfCheck>>> = Mutex::new(BTreeMap::new());
    let DeviceLocation::Cuda { gpu_id } = device.location() else {
        return Arc::new(SelfCheck::Failed("not a CUDA device".into()));
    };
    let mut checks = CHECKS.lock().unwrap_or_else(|e| e.into_inner());
    checks
        .entry(gpu_id)
        // A query tail and a key tail.
        .or_insert_with(
            || match error_against_blocked(device, (1, 2, BLOCK_ROWS + 3, 67)) {
                Ok(error) if error <= TOLERANCE => Arc::new(SelfCheck::Passed { error }),
                Ok(error) => Arc::new(SelfCheck::Disagreed { error }),
                Err(why) => Arc::new(SelfCheck::Failed(why)),
            },
        )
        .clone()
}

/// The kernel's relative L2 error against the blocked attention in f32 of the same values,
/// on random bf16 queries, keys and values of `(batch, heads, queries, keys)`.
pub fn error_against_blocked(
    device: &Device,
    (b, h, queries, keys): (usize, usize, usize, usize),
) -> std::result::Result<f64, String> {
    let scale = 1.0 / (HEAD_DIM as f64).sqrt();
    let outputs = || -> Result<(Tensor, Tensor)> {
        let random = |len: usize| {
            Tensor::randn(0f32, 1.0, (b, h, len, HEAD_DIM), device)?.to_dtype(DType::BF16)
        };
        let (q, k, v) = (random(queries)?, random(keys)?, random(keys)?);
        let fused = flash_attention(&q, &k, &v, scale)?;
        let f32 = |t: &Tensor| t.to_dtype(DType::F32);
        let reference = super::blocked_attention(&f32(&q)?, &f32(&k)?, &f32(&v)?, scale)?;
        Ok((fused, reference))
    };
    let (fused, reference) = outputs().map_err(|e| e.to_string())?;
    super::parity::relative_l2(&fused, &reference)
}

/// `softmax(q k^T * scale) v` for `q: [B, H, Sq, 128]`, `k, v: [B, H, Skv, 128]` in bf16
/// on CUDA.
pub fn flash_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    let op = FlashAttention {
        scale: scale as f32,
    };
    q.contiguous()?
        .apply_op3_no_bwd(&k.contiguous()?, &v.contiguous()?, &op)
}

struct FlashAttention {
    scale: f32,
}

impl CustomOp3 for FlashAttention {
    fn name(&self) -> &'static str {
        "wan-flash-attention"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        bail!("the fused attention runs on CUDA only; the CPU uses the blocked attention")
    }

    fn cuda_fwd(
        &self,
        q: &CudaStorage,
        q_l: &Layout,
        k: &CudaStorage,
        k_l: &Layout,
        v: &CudaStorage,
        v_l: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let (b, h, q_len, d) = q_l.shape().dims4()?;
        let (kb, kh, kv_len, kd) = k_l.shape().dims4()?;
        if (kb, kh, kd) != (b, h, d) || v_l.shape() != k_l.shape() || d != HEAD_DIM {
            bail!(
                "fused attention needs q [B, H, Sq, 128] and k, v [B, H, Skv, 128]: got {:?}, {:?}, {:?}",
                q_l.shape(),
                k_l.shape(),
                v_l.shape()
            );
        }
        if kv_len == 0 || q_len == 0 || b * h > MAX_HEADS {
            bail!(
                "fused attention needs keys, queries and at most {MAX_HEADS} heads in all: got {kv_len} keys, {q_len} queries, {} heads",
                b * h
            );
        }
        // The kernel reads 16-byte vectors: each operand must start on 8 bf16 values.
        for l in [q_l, k_l, v_l] {
            if !l.is_contiguous() || l.start_offset() % 8 != 0 {
                bail!("fused attention needs contiguous operands starting on 16 bytes");
            }
        }
        let dev = q.device();
        let q = q.as_cuda_slice::<bf16>()?.slice(q_l.start_offset()..);
        let k = k.as_cuda_slice::<bf16>()?.slice(k_l.start_offset()..);
        let v = v.as_cuda_slice::<bf16>()?.slice(v_l.start_offset()..);
        let elements = b * h * q_len * d;
        // SAFETY: the kernel writes every element of the output.
        let mut out = unsafe { dev.alloc::<bf16>(elements)? };
        let func = dev.get_or_load_custom_func(KERNEL, "wan_flash_attention", PTX)?;
        let config = LaunchConfig {
            grid_dim: (q_len.div_ceil(BLOCK_ROWS) as u32, (b * h) as u32, 1),
            block_dim: (BLOCK_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let (q_len, kv_len) = (q_len as i32, kv_len as i32);
        let scale_log2 = self.scale * std::f32::consts::LOG2_E;
        let mut launch = func.builder();
        launch
            .arg(&q)
            .arg(&k)
            .arg(&v)
            .arg(&mut out)
            .arg(&q_len)
            .arg(&kv_len)
            .arg(&scale_log2);
        // SAFETY: the arguments match the kernel's signature, and the grid covers the
        // heads and query rows the buffers hold.
        unsafe { launch.launch(config) }.w()?;
        Ok((
            CudaStorage::wrap_cuda_slice(out, dev.clone()),
            q_l.shape().clone(),
        ))
    }
}
