#!/usr/bin/env python3
# The fragment indexing of src/wan/flash_attn/flash_attn.cu, checked without a GPU.
#
# Each step of the kernel (its ldmatrix addresses, mma calls, masking, online softmax and
# stores) is transcribed here lane by lane, on top of an emulation of what the PTX ISA
# manual says `ldmatrix.m8n8.x4[.trans]` and `mma.m16n8k16` hold in each lane's registers.
# In float64 the result must equal exact attention to rounding (~1e-15) for shapes with
# query and key tails. It checks the kernel's indexing against that reading of the
# manual, not the GPU (the kernel's self-check and scripts/gpu-check.sh do that); keep it
# in step with the kernel when the kernel changes.
#
#   python3 scripts/flash_attn_fragments.py      (numpy; a few seconds)
import numpy as np
D, BM, BN, LD = 128, 128, 64, 136
lanes = np.arange(32); G = lanes // 4; T = lanes % 4

def ldm(smem, addrs, trans):
    # addrs: per lane element offset of a row start; returns 4 regs, each (32, 2)
    regs = []
    for i in range(4):
        rows = np.stack([smem[addrs[8*i + r]: addrs[8*i + r] + 8] for r in range(8)])
        if not trans:
            regs.append(np.stack([rows[G, 2*T], rows[G, 2*T+1]], 1))
        else:
            regs.append(np.stack([rows[2*T, G], rows[2*T+1, G]], 1))
    return regs

def mma(c, a, b0, b1):
    A = np.zeros((16, 16)); B = np.zeros((16, 8)); C = np.zeros((16, 8))
    for l in range(32):
        g, t = l // 4, l % 4
        A[g, 2*t:2*t+2] = a[0][l]; A[g+8, 2*t:2*t+2] = a[1][l]
        A[g, 2*t+8:2*t+10] = a[2][l]; A[g+8, 2*t+8:2*t+10] = a[3][l]
        B[2*t:2*t+2, g] = b0[l]; B[2*t+8:2*t+10, g] = b1[l]
        C[g, 2*t:2*t+2] = c[l, 0:2]; C[g+8, 2*t:2*t+2] = c[l, 2:4]
    C += A @ B
    out = np.zeros((32, 4))
    for l in range(32):
        g, t = l // 4, l % 4
        out[l, 0:2] = C[g, 2*t:2*t+2]; out[l, 2:4] = C[g+8, 2*t:2*t+2]
    return out

def load_tile(src, valid):
    tile = np.zeros(BN * LD)
    for r in range(BN):
        if r < valid: tile[r*LD:r*LD+D] = src[r]
    return tile

def block(q, k, v, bx, scale_log2):
    q_len, kv_len = len(q), len(k)
    out = {}
    for warp in range(BM // 16):
        rows = [bx*BM + warp*16 + G, bx*BM + warp*16 + G + 8]
        def qp(row, c):
            return np.stack([q[r, c[i]:c[i]+2] if r < q_len else np.zeros(2) for i, r in enumerate(row)])
        qa = []
        for kk in range(D // 16):
            c = kk*16 + 2*T
            qa.append([qp(rows[0], c), qp(rows[1], c), qp(rows[0], c+8), qp(rows[1], c+8)])
        acc = np.zeros((D//8, 32, 4)); rmax = np.full((2, 32), -np.inf); rsum = np.zeros((2, 32))
        quad, qrow = lanes // 8, lanes % 8
        for k0 in range(0, kv_len, BN):
            kt = load_tile(k[k0:], min(BN, kv_len - k0)); vt = load_tile(v[k0:], min(BN, kv_len - k0))
            s = np.zeros((BN//8, 32, 4))
            for kk in range(0, D//16, 2):
                for n in range(BN//8):
                    b = ldm(kt, (n*8 + qrow)*LD + kk*16 + quad*8, False)
                    s[n] = mma(s[n], qa[kk], b[0], b[1]); s[n] = mma(s[n], qa[kk+1], b[2], b[3])
            tmax = np.full((2, 32), -np.inf)
            for n in range(BN//8):
                for e in range(4):
                    key = k0 + n*8 + 2*T + e % 2
                    s[n][:, e] = np.where(key < kv_len, s[n][:, e]*scale_log2, -np.inf)
                    tmax[e//2] = np.maximum(tmax[e//2], s[n][:, e])
            for i in range(2):
                x = tmax[i]; x = np.maximum(x, x[lanes ^ 1]); x = np.maximum(x, x[lanes ^ 2])
                nm = np.maximum(rmax[i], x); resc = np.exp2(rmax[i] - nm); rmax[i] = nm; rsum[i] *= resc
                acc[:, :, 2*i] *= resc; acc[:, :, 2*i+1] *= resc
            for n in range(BN//8):
                for e in range(4):
                    s[n][:, e] = np.exp2(s[n][:, e] - rmax[e//2]); rsum[e//2] += s[n][:, e]
            for j in range(BN//16):
                pa = [s[2*j][:, 0:2], s[2*j][:, 2:4], s[2*j+1][:, 0:2], s[2*j+1][:, 2:4]]
                for d in range(0, D//8, 2):
                    b = ldm(vt, (j*16 + (quad % 2)*8 + qrow)*LD + (d + quad//2)*8, True)
                    acc[d] = mma(acc[d], pa, b[0], b[1]); acc[d+1] = mma(acc[d+1], pa, b[2], b[3])
        for i in range(2):
            x = rsum[i]; x = x + x[lanes ^ 1]; x = x + x[lanes ^ 2]; inv = 1/x
            for l in range(32):
                r = rows[i][l]
                if r < q_len:
                    for d in range(D//8):
                        out[(r, d*8 + 2*T[l])] = acc[d][l, 2*i] * inv[l]
                        out[(r, d*8 + 2*T[l] + 1)] = acc[d][l, 2*i+1] * inv[l]
    return out

rng = np.random.default_rng(0)
for q_len, kv_len in [(150, 70), (40, 64), (130, 129)]:
    q, k, v = (rng.standard_normal((n, D)) for n in (q_len, kv_len, kv_len))
    scale = 1/np.sqrt(D)
    sc = q @ k.T * scale; p = np.exp(sc - sc.max(1, keepdims=True)); ref = (p / p.sum(1, keepdims=True)) @ v
    o = np.full((q_len, D), np.nan)
    for bx in range((q_len + BM - 1) // BM):
        for (r, c), val in block(q, k, v, bx, scale*np.log2(np.e)).items(): o[r, c] = val
    error = np.nanmax(np.abs(o - ref))
    print(f"q_len={q_len} kv_len={kv_len}: max error {error:.2e}, unwritten {np.isnan(o).sum()}")
    assert error < 1e-12 and not np.isnan(o).any(), "the fragment indexing is wrong"
print("fragment indexing agrees with exact attention")
