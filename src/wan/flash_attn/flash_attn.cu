// Fused attention for Wan on CUDA: softmax(q k^T * scale) v for head dim 128 in bf16.
//
// One pass over the keys with an online softmax (running maximum and sum per query
// row, the output rescaled when the maximum grows), so that no score matrix is ever
// written to memory. The design follows FlashAttention-2: each warp owns 16 query rows,
// and the scores of a tile never leave the registers: the accumulator fragments of
// S = Q K^T are, element for element, the operand fragments of P for O += P V. Products
// are `mma.sync.m16n8k16` (bf16 in, f32 accumulate); K and V tiles reach shared memory
// through `cp.async`, the V tile of a step loading while S is computed and the next K
// tile while P V is.
//
// Layout: q [heads, q_len, 128], k and v [heads, kv_len, 128], contiguous, 16-byte
// aligned; o like q. Grid: (ceil(q_len / 128), heads); 8 warps of 32 threads.
//
// Fragment layouts (PTX ISA, "Matrix fragments for mma.m16n8k16"), with g = lane / 4 and
// t = lane % 4: A (16x16) holds rows g and g + 8, columns 2t, 2t + 1 and 2t + 8, 2t + 9;
// B (16x8) holds rows 2t, 2t + 1 and 2t + 8, 2t + 9 of column g; C (16x8) holds rows g
// and g + 8, columns 2t and 2t + 1.

#include <cuda_bf16.h>
#include <stdint.h>

namespace {

constexpr int D = 128;             // head dim
constexpr int BM = 128;            // query rows per block
constexpr int BN = 64;             // keys per tile
constexpr int WARPS = BM / 16;
constexpr int THREADS = WARPS * 32;
// Shared rows are padded by 16 bytes: the 8 row addresses of an ldmatrix phase then
// fall in 8 different groups of 4 banks.
constexpr int LD = D + 8;
constexpr int S_TILES = BN / 8;    // n8 tiles of a score tile
constexpr int D_TILES = D / 8;     // n8 tiles of an output row block

typedef __nv_bfloat16 bf16;

__device__ __forceinline__ uint32_t shared_address(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Starts copying `BN` rows of D values into shared memory; rows from `valid` on are
// zero-filled (a source size of 0), so that a tail tile needs no special case.
__device__ __forceinline__ void load_tile_async(bf16* dst, const bf16* src, int valid) {
    constexpr int chunks = D / 8;  // 16-byte chunks per row
    for (int i = threadIdx.x; i < BN * chunks; i += THREADS) {
        const int r = i / chunks;
        const int c = (i % chunks) * 8;
        const bool in = r < valid;
        const bf16* from = in ? src + (size_t)r * D + c : src;
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(
                         shared_address(dst + r * LD + c)),
                     "l"(from), "r"(in ? 16 : 0)
                     : "memory");
    }
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

// Waits for this thread's copies, then for every thread's: the tile is complete, and
// every warp is done with what the buffer held before.
__device__ __forceinline__ void wait_tiles() {
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
    __syncthreads();
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const bf16* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(shared_address(p))
                 : "memory");
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const bf16* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(shared_address(p))
                 : "memory");
}

// c += a b for a 16x16 A fragment and a 16x8 B fragment (b0, b1).
__device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                    uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two values as bf16x2, `lo` in the low half (the lower column of a fragment pair).
__device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
}

// Columns c and c + 1 of query row `row` (zero past the last row).
__device__ __forceinline__ uint32_t query_pair(const bf16* q, int row, int c, int q_len) {
    return row < q_len ? *reinterpret_cast<const uint32_t*>(q + (size_t)row * D + c) : 0u;
}

__device__ __forceinline__ float row_max(float x) {
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
    return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}

__device__ __forceinline__ float row_sum(float x) {
    x += __shfl_xor_sync(0xffffffffu, x, 1);
    return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

}  // namespace

extern "C" __global__ void __launch_bounds__(THREADS)
wan_flash_attn_bf16_d128(const bf16* __restrict__ q, const bf16* __restrict__ k,
                         const bf16* __restrict__ v, bf16* __restrict__ o, int q_len,
                         int kv_len, float scale_log2) {
    __shared__ __align__(128) bf16 k_tile[BN * LD];
    __shared__ __align__(128) bf16 v_tile[BN * LD];

    const int warp = threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    const int g = lane / 4;
    const int t = lane % 4;
    const size_t head = blockIdx.y;
    q += head * q_len * D;
    o += head * q_len * D;
    k += head * kv_len * D;
    v += head * kv_len * D;

    load_tile_async(k_tile, k, min(BN, kv_len));

    // The warp's 16 query rows as A fragments, read once from global memory while the
    // first K tile loads.
    const int rows[2] = {(int)blockIdx.x * BM + warp * 16 + g,
                         (int)blockIdx.x * BM + warp * 16 + g + 8};
    uint32_t qa[D / 16][4];
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
        const int c = kk * 16 + 2 * t;
        qa[kk][0] = query_pair(q, rows[0], c, q_len);
        qa[kk][1] = query_pair(q, rows[1], c, q_len);
        qa[kk][2] = query_pair(q, rows[0], c + 8, q_len);
        qa[kk][3] = query_pair(q, rows[1], c + 8, q_len);
    }

    // Per row (g, then g + 8): the output columns this lane holds, the running maximum
    // (base 2, scaled) and this lane's share of the running sum.
    float acc[D_TILES][4];
#pragma unroll
    for (int d = 0; d < D_TILES; ++d) {
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[d][e] = 0.f;
    }
    float running_max[2] = {-INFINITY, -INFINITY};
    float running_sum[2] = {0.f, 0.f};

    // The ldmatrix row this lane addresses: lanes 8i..8i+7 give the rows of matrix i.
    const int quad = lane / 8;
    const int quad_row = lane % 8;

    for (int k0 = 0; k0 < kv_len; k0 += BN) {
        wait_tiles();  // K in; every warp is done with the previous V
        load_tile_async(v_tile, v + (size_t)k0 * D, min(BN, kv_len - k0));

        // S = Q K^T. Matrices 0..3 of an x4 load: keys n*8.., dims kk*16 + 0, 8, 16, 24:
        // the B fragments of two consecutive k16 steps.
        float s[S_TILES][4];
#pragma unroll
        for (int n = 0; n < S_TILES; ++n) {
#pragma unroll
            for (int e = 0; e < 4; ++e) s[n][e] = 0.f;
        }
#pragma unroll
        for (int kk = 0; kk < D / 16; kk += 2) {
#pragma unroll
            for (int n = 0; n < S_TILES; ++n) {
                uint32_t b[4];
                ldmatrix_x4(b, k_tile + (n * 8 + quad_row) * LD + kk * 16 + quad * 8);
                mma(s[n], qa[kk], b[0], b[1]);
                mma(s[n], qa[kk + 1], b[2], b[3]);
            }
        }

        // Online softmax in base 2. Element e of a C fragment is in row e / 2 (g or
        // g + 8) and key column 2t + e % 2 of its n8 tile.
        float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int n = 0; n < S_TILES; ++n) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int key = k0 + n * 8 + 2 * t + e % 2;
                s[n][e] = key < kv_len ? s[n][e] * scale_log2 : -INFINITY;
                tile_max[e / 2] = fmaxf(tile_max[e / 2], s[n][e]);
            }
        }
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            // Finite: every tile holds at least one key.
            const float new_max = fmaxf(running_max[i], row_max(tile_max[i]));
            const float rescale = exp2f(running_max[i] - new_max);
            running_max[i] = new_max;
            running_sum[i] *= rescale;
#pragma unroll
            for (int d = 0; d < D_TILES; ++d) {
                acc[d][2 * i] *= rescale;
                acc[d][2 * i + 1] *= rescale;
            }
        }
#pragma unroll
        for (int n = 0; n < S_TILES; ++n) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                s[n][e] = exp2f(s[n][e] - running_max[e / 2]);
                running_sum[e / 2] += s[n][e];
            }
        }

        wait_tiles();  // V in; every warp is done with K
        if (k0 + BN < kv_len) {
            load_tile_async(k_tile, k + (size_t)(k0 + BN) * D, min(BN, kv_len - k0 - BN));
        }

        // O += P V. The C fragments of score tiles 2j and 2j + 1 are the A fragment of
        // keys 16j..16j+15. Matrices 0..3 of a transposed x4 load: keys 16j + 0, 8,
        // 0, 8 and dims d*8, d*8, d*8 + 8, d*8 + 8: the B fragments of two n8 tiles.
#pragma unroll
        for (int j = 0; j < BN / 16; ++j) {
            const uint32_t pa[4] = {pack(s[2 * j][0], s[2 * j][1]),
                                    pack(s[2 * j][2], s[2 * j][3]),
                                    pack(s[2 * j + 1][0], s[2 * j + 1][1]),
                                    pack(s[2 * j + 1][2], s[2 * j + 1][3])};
#pragma unroll
            for (int d = 0; d < D_TILES; d += 2) {
                uint32_t b[4];
                ldmatrix_x4_trans(
                    b, v_tile + (j * 16 + (quad % 2) * 8 + quad_row) * LD + (d + quad / 2) * 8);
                mma(acc[d], pa, b[0], b[1]);
                mma(acc[d + 1], pa, b[2], b[3]);
            }
        }
    }

#pragma unroll
    for (int i = 0; i < 2; ++i) {
        // Every lane shuffles, whether or not its row exists.
        const float inv = 1.f / row_sum(running_sum[i]);
        if (rows[i] < q_len) {
            uint32_t* out = reinterpret_cast<uint32_t*>(o + (size_t)rows[i] * D + 2 * t);
#pragma unroll
            for (int d = 0; d < D_TILES; ++d) {
                out[d * 4] = pack(acc[d][2 * i] * inv, acc[d][2 * i + 1] * inv);
            }
        }
    }
}
