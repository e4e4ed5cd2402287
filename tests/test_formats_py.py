#!/usr/bin/env python3
"""Oracle test of the block formats: the gguf Python package (not written
here) against q4k's dequantizers and quantizers, through build/tool_formats.

Dequantization, all 9 types: random block bytes with finite fp16 scales
(random sign, magnitudes 2^-24..2^4, subnormal halves and zero included),
plus every one of the 65536 halves for F16 and BF16. Our floats must have
the same float32 bits as gguf.quants.dequantize; no tolerance is needed,
because both sides do the same float32 operations in the same order (d*sc
and dmin*m first, then d1*q - m1; Q6_K (d*sc)*q) and fp16 -> fp32 is exact.

Quantization, Q8_0, Q5_0, Q4_0 (and F16, BF16): Gaussian blocks at several
scales and hand-made edge blocks (zeros, -0, ties, extremes of both signs,
fp16 underflow and overflow of d) must give the same bytes as
gguf.quants.quantize. Q4_K and Q6_K have no quantizer in gguf: for those,
gguf must read our blocks to the floats we read, and the error must be small.

Prints "ok NAME" / "FAIL NAME: detail" per check, "skip ..." without gguf.
"""
import os
import subprocess
import sys

try:
    import numpy as np
    import gguf
    from gguf import GGMLQuantizationType as T
    from gguf import quants
except Exception:  # noqa: BLE001 - any import failure means the oracle is absent
    print("skip test_formats_py: python package gguf missing")
    sys.exit(0)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "build", "tool_formats")
N_BLOCKS = 2000
failures = 0


def report(name, ok, detail=""):
    global failures
    if ok:
        print(f"ok {name}")
    else:
        failures += 1
        print(f"FAIL {name}: {detail}")
    sys.stdout.flush()


def tool(mode, tname, data):
    p = subprocess.run([TOOL, mode, tname], input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise RuntimeError(f"tool_formats {mode} {tname}: exit {p.returncode}: {p.stderr.decode(errors='replace')}")
    return p.stdout


def first_diff(a, b, unit):
    """index of the first differing unit (block or value) of two byte strings"""
    a = np.frombuffer(a, np.uint8)
    b = np.frombuffer(b, np.uint8)
    if a.size != b.size:
        return f"sizes differ: {a.size} vs {b.size} bytes"
    bad = np.nonzero(a != b)[0]
    i = int(bad[0]) // unit
    return f"{bad.size} bytes differ, first in unit {i}: ours {a[i*unit:(i+1)*unit].tobytes().hex()} gguf {b[i*unit:(i+1)*unit].tobytes().hex()}"


def random_halves(rng, n):
    """finite fp16 scales: random sign, magnitude 2^-24..2^4, some zero"""
    mag = np.exp2(rng.uniform(-24, 4, n)).astype(np.float32)
    mag[rng.random(n) < 0.02] = 0
    sign = np.where(rng.random(n) < 0.5, -1, 1).astype(np.float32)
    return (mag * sign).astype(np.float16)


# byte offsets of the fp16 scales in each block
SCALE_OFFSETS = {"Q4_0": [0], "Q5_0": [0], "Q8_0": [0], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}
QTYPES = {"F32": T.F32, "F16": T.F16, "BF16": T.BF16, "Q8_0": T.Q8_0, "Q4_0": T.Q4_0, "Q5_0": T.Q5_0,
          "Q4_K": T.Q4_K, "Q5_K": T.Q5_K, "Q6_K": T.Q6_K}


def dequant_input(rng, name):
    block_size, type_size = gguf.GGML_QUANT_SIZES[QTYPES[name]]
    if name in ("F16", "BF16"):
        every = np.arange(65536, dtype=np.uint32).astype(np.uint16)
        return np.concatenate([every, rng.integers(0, 65536, 32 * N_BLOCKS).astype(np.uint16)]).view(np.uint8)
    if name == "F32":  # any bits, NaN payloads and all: dequantizing F32 is a copy
        return rng.integers(0, 256, 4 * 32 * N_BLOCKS, dtype=np.uint8)
    raw = rng.integers(0, 256, (N_BLOCKS, type_size), dtype=np.uint8)
    for off in SCALE_OFFSETS[name]:
        raw[:, off:off + 2] = random_halves(rng, N_BLOCKS).view(np.uint8).reshape(N_BLOCKS, 2)
    return raw.reshape(-1)


def check_dequant(rng):
    for name, qt in QTYPES.items():
        raw = dequant_input(rng, name)
        want = np.ascontiguousarray(quants.dequantize(raw, qt), dtype=np.float32).reshape(-1)
        got = np.frombuffer(tool("dequant", name, raw.tobytes()), dtype=np.float32)
        if got.size != want.size:
            report(f"dequant_{name}", False, f"{got.size} values, gguf {want.size}")
            continue
        bad = np.nonzero(got.view(np.uint32) != want.view(np.uint32))[0]
        detail = ""
        if bad.size:
            i = int(bad[0])
            detail = f"{bad.size} of {got.size} values differ; first [{i}]: ours {got[i]!r} gguf {want[i]!r}"
        report(f"dequant_{name} ({got.size} values, bit-identical)", bad.size == 0, detail)


def edge_blocks(nmax_pos, nmax_neg):
    """hand-made 32-value blocks for the legacy quantizers"""
    b = []
    z = np.zeros(32, np.float32)
    b.append(z.copy())                                   # all zero
    x = z.copy(); x[0] = -0.0; b.append(x)               # -0 first
    x = z.copy(); x[5] = 1.0; b.append(x)                # one value
    b.append(np.full(32, 0.7, np.float32))                # constants
    b.append(np.full(32, -0.7, np.float32))
    x = np.arange(32, dtype=np.float32) - 16; b.append(x)
    x = (np.arange(32, dtype=np.float32) - 16) + 0.5; b.append(x)  # halves: ties for d = 1
    x = np.linspace(-1, 1, 32).astype(np.float32); x[3] = 1; x[9] = -1; b.append(x)   # equal |max|, both signs
    x = np.linspace(-1, 1, 32).astype(np.float32); x[3] = -1; x[9] = 1; b.append(x)
    x = z.copy(); x[0] = nmax_neg; x[1:] = (np.arange(31) - 15) * 0.5; b.append(x)  # d = 1: exact ties
    x = z.copy(); x[0] = nmax_pos; x[1:] = (np.arange(31) - 15) * 0.5; b.append(x)
    x = np.linspace(-3e-8, 3e-8, 32).astype(np.float32); b.append(x)  # d underflows fp16
    x = np.linspace(-1e7, 2e7, 32).astype(np.float32); b.append(x)    # d overflows fp16
    x = np.linspace(-1e-3, 1e-3, 32).astype(np.float32); b.append(x)  # fp16 subnormal d
    return np.stack(b)


def check_quant(rng):
    gauss = rng.standard_normal((N_BLOCKS, 32)).astype(np.float32)
    scales = np.exp(rng.uniform(-9, 9, (N_BLOCKS, 1))).astype(np.float32)
    legacy = {"Q8_0": (127.0, -127.0), "Q5_0": (16.0, -16.0), "Q4_0": (8.0, -8.0)}
    for name, (pos, neg) in legacy.items():
        qt = QTYPES[name]
        type_size = gguf.GGML_QUANT_SIZES[qt][1]
        for label, x in (("gaussian", gauss), ("gaussian_scaled", gauss * scales),
                         ("edge", edge_blocks(pos, neg)), ("rounding_grid", grid_blocks(rng, pos, neg))):
            x = np.ascontiguousarray(x, dtype=np.float32)
            with np.errstate(over="ignore"):  # the edge blocks overflow fp16 d on purpose
                want = np.ascontiguousarray(quants.quantize(x, qt)).tobytes()
            got = tool("quant", name, x.tobytes())
            report(f"quant_{name}_{label} ({x.shape[0]} blocks, byte-identical)", got == want,
                   first_diff(got, want, type_size) if got != want else "")
    for name in ("F16", "BF16"):
        x = np.concatenate([(gauss * scales).reshape(-1), edge_blocks(65520, -65520).reshape(-1),
                            np.array([65504, 65519.99, 65520, 1 + 2**-11, 1 + 3 * 2**-11, 2**-25, 3 * 2**-25,
                                      3.0e38, 3.4e38, np.inf, -np.inf], np.float32)]).astype(np.float32)
        with np.errstate(over="ignore"):
            want = np.ascontiguousarray(quants.quantize(x, QTYPES[name])).tobytes()
        got = tool("quant", name, x.tobytes())
        report(f"quant_{name} ({x.size} values, byte-identical)", got == want, first_diff(got, want, 2) if got != want else "")


def grid_blocks(rng, pos, neg):
    """values on and next to the rounding boundaries of d = +-1: multiples of
    0.5 (ties) and their float neighbours"""
    n = 500
    x = (rng.integers(-2 * int(abs(neg)), 2 * int(pos) + 1, (n, 32)) * 0.5).astype(np.float32)
    nudge = rng.integers(-1, 2, (n, 32))
    x = np.where(nudge > 0, np.nextafter(x, np.float32(np.inf)), np.where(nudge < 0, np.nextafter(x, np.float32(-np.inf)), x))
    x = np.clip(x, neg, pos).astype(np.float32)
    x[:, 0] = np.where(rng.random(n) < 0.5, neg, pos)
    return x


def check_k_quants(rng):
    """Q4_K/Q6_K: gguf reads what we write, and the error is that of a good quantizer"""
    x = rng.standard_normal(256 * N_BLOCKS // 4).astype(np.float32)
    bounds = {"Q4_K": 1.05 * 0.2760 / 12 ** 0.5, "Q6_K": 1.05 * 0.06484 / 12 ** 0.5}  # derived in test_formats.c
    for name, bound in bounds.items():
        blocks = tool("quant", name, x.tobytes())
        ours = np.frombuffer(tool("dequant", name, blocks), np.float32)
        theirs = np.asarray(quants.dequantize(np.frombuffer(blocks, np.uint8), QTYPES[name]), np.float32).reshape(-1)
        same = ours.size == theirs.size and np.array_equal(ours.view(np.uint32), theirs.view(np.uint32))
        err = float(np.sqrt(np.mean((theirs.astype(np.float64) - x) ** 2))) if theirs.size == x.size else float("inf")
        report(f"quant_{name}_read_by_gguf (rmse {err:.5f}, bound {bound:.5f})", same and err < bound,
               f"identical={same} rmse={err}")


def main():
    if not os.access(TOOL, os.X_OK):
        report("tool_formats", False, f"{TOOL} missing: run make")
        return 1
    rng = np.random.default_rng(20240611)
    check_dequant(rng)
    check_quant(rng)
    check_k_quants(rng)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
