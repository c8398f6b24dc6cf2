// Fused attention for Wan on CUDA: softmax(q k^T * scale) v for head dim 128 in bf16.
//
// One pass over the keys with an online softmax (running maximum and sum per query
// row, the output rescaled when the maximum grows), so that no score matrix is ever
// written to memory. Products run on the tensor cores through WMMA (bf16 in, f32
// accumulate); the softmax and the output accumulator stay in f32.
//
// Layout: q [heads, q_len, 128], k and v [heads, kv_len, 128], contiguous; o like q.
// Grid: (ceil(q_len / 64), heads); 4 warps of 32 threads, each warp owns 16 query rows.

#include <cuda_bf16.h>
#include <mma.h>
#include <stdint.h>

using namespace nvcuda;

namespace {

constexpr int D = 128;              // head dim
constexpr int BM = 64;              // query rows per block
constexpr int BN = 32;              // keys per tile
constexpr int WARPS = BM / 16;
constexpr int THREADS = WARPS * 32;
constexpr int VEC = 8;              // bf16 values per 16-byte load
constexpr int HALF = D / 2;         // output columns per P.V pass

typedef __nv_bfloat16 bf16;
typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> RowA;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> ColB;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> RowB;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> Acc;

// Copies `rows` rows of D values (row stride D) from global memory to shared memory,
// zero-filling rows from `valid` on so that tails need no special case in the products.
__device__ __forceinline__ void load_rows(bf16* dst, const bf16* src, int rows, int valid) {
    constexpr int per_row = D / VEC;
    for (int i = threadIdx.x; i < rows * per_row; i += THREADS) {
        const int r = i / per_row;
        const int c = (i % per_row) * VEC;
        uint4 value = make_uint4(0, 0, 0, 0);
        if (r < valid) {
            value = *reinterpret_cast<const uint4*>(src + (size_t)r * D + c);
        }
        *reinterpret_cast<uint4*>(dst + r * D + c) = value;
    }
}

}  // namespace

extern "C" __global__ void __launch_bounds__(THREADS)
wan_flash_attn_bf16_d128(const bf16* __restrict__ q, const bf16* __restrict__ k,
                         const bf16* __restrict__ v, bf16* __restrict__ o, int q_len,
                         int kv_len, float scale_log2) {
    // The K and V tiles; before the loop, the block's 64 query rows (the same size).
    __shared__ __align__(128) bf16 kv[2 * BN * D];
    __shared__ __align__(128) float scores[WARPS][16 * BN];
    __shared__ __align__(128) bf16 probs[WARPS][16 * BN];
    __shared__ __align__(128) float partial[WARPS][16 * HALF];

    const int warp = threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    const size_t head = blockIdx.y;
    const int q0 = blockIdx.x * BM;
    q += head * q_len * D;
    o += head * q_len * D;
    k += head * kv_len * D;
    v += head * kv_len * D;

    // The warp's queries stay in registers for the whole pass.
    load_rows(kv, q + (size_t)q0 * D, BM, min(BM, q_len - q0));
    __syncthreads();
    RowA qf[D / 16];
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
        wmma::load_matrix_sync(qf[kk], kv + warp * 16 * D + kk * 16, D);
    }
    __syncthreads();

    // Each lane owns half of one of the warp's rows: row lane / 2, and in each half of
    // the output columns the 32 starting at (lane % 2) * 32.
    const int row = lane / 2;
    const int side = lane % 2;
    float acc[2][32];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
#pragma unroll
        for (int c = 0; c < 32; ++c) acc[h][c] = 0.f;
    }
    float row_max = -INFINITY;
    float row_sum = 0.f;

    for (int k0 = 0; k0 < kv_len; k0 += BN) {
        const int valid = min(BN, kv_len - k0);
        load_rows(kv, k + (size_t)k0 * D, BN, valid);
        load_rows(kv + BN * D, v + (size_t)k0 * D, BN, valid);
        __syncthreads();

        // S = Q K^T for the warp's rows (K stored by rows is K^T stored by columns).
#pragma unroll
        for (int n = 0; n < BN / 16; ++n) {
            Acc s;
            wmma::fill_fragment(s, 0.f);
#pragma unroll
            for (int kk = 0; kk < D / 16; ++kk) {
                ColB kf;
                wmma::load_matrix_sync(kf, kv + n * 16 * D + kk * 16, D);
                wmma::mma_sync(s, qf[kk], kf, s);
            }
            wmma::store_matrix_sync(scores[warp] + n * 16, s, BN, wmma::mem_row_major);
        }
        __syncwarp();

        // Online softmax in base 2; the two lanes of a row each take 16 of its scores.
        const float* srow = scores[warp] + row * BN + side * 16;
        float x[16];
        float tile_max = -INFINITY;
#pragma unroll
        for (int j = 0; j < 16; ++j) {
            x[j] = side * 16 + j < valid ? srow[j] * scale_log2 : -INFINITY;
            tile_max = fmaxf(tile_max, x[j]);
        }
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
        // Finite: every tile holds at least one key.
        const float new_max = fmaxf(row_max, tile_max);
        const float rescale = exp2f(row_max - new_max);
        float tile_sum = 0.f;
        bf16* prow = probs[warp] + row * BN + side * 16;
#pragma unroll
        for (int j = 0; j < 16; ++j) {
            const float p = exp2f(x[j] - new_max);
            prow[j] = __float2bfloat16(p);
            tile_sum += p;
        }
        tile_sum += __shfl_xor_sync(0xffffffffu, tile_sum, 1);
        row_sum = row_sum * rescale + tile_sum;
        row_max = new_max;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
#pragma unroll
            for (int c = 0; c < 32; ++c) acc[h][c] *= rescale;
        }
        __syncwarp();

        // O += P V, one half of the columns at a time through the warp's scratch.
#pragma unroll
        for (int h = 0; h < 2; ++h) {
#pragma unroll
            for (int n = 0; n < HALF / 16; ++n) {
                Acc pv;
                wmma::fill_fragment(pv, 0.f);
#pragma unroll
                for (int kk = 0; kk < BN / 16; ++kk) {
                    RowA pf;
                    RowB vf;
                    wmma::load_matrix_sync(pf, probs[warp] + kk * 16, BN);
                    wmma::load_matrix_sync(vf, kv + BN * D + kk * 16 * D + h * HALF + n * 16, D);
                    wmma::mma_sync(pv, pf, vf, pv);
                }
                wmma::store_matrix_sync(partial[warp] + n * 16, pv, HALF, wmma::mem_row_major);
            }
            __syncwarp();
            const float* part = partial[warp] + row * HALF + side * 32;
#pragma unroll
            for (int c = 0; c < 32; ++c) acc[h][c] += part[c];
            __syncwarp();
        }
        // The next tile overwrites K and V.
        __syncthreads();
    }

    const int r = q0 + warp * 16 + row;
    if (r < q_len) {
        const float inv = 1.f / row_sum;
        bf16* out = o + (size_t)r * D + side * 32;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
#pragma unroll
            for (int c = 0; c < 32; ++c) out[h * HALF + c] = __float2bfloat16(acc[h][c] * inv);
        }
    }
}
