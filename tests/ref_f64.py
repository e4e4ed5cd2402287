#!/usr/bin/env python3
"""An exact float64 forward pass of a qwen2 / llama GGUF, written apart from q4k.

The file is read and every tensor dequantized by the `gguf` package (not by
q4k's reader), the math is numpy in float64, and the logits of every prompt
position are compared with q4k's CPU backend (build/tool_hf logits) in a
chosen arithmetic mode and KV cache type.

    python3 tests/ref_f64.py MODEL.gguf [--act f32|q8] [--kv f16|f32]
        [--tokens N] [--seed S] [--round-kv] [--min-cos C] [--name NAME]

--round-kv rounds K and V to float16 on the float64 side, as an f16 KV cache
does (to tell the cache's rounding apart from everything else). Prints
per-position cosines and "ok NAME" / "FAIL NAME" against --min-cos.
"""
import argparse
import os
import subprocess
import sys

import numpy as np

try:
    import gguf
except ImportError as e:  # pragma: no cover
    print(f"skip ref_f64: {e}")
    sys.exit(0)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "build", "tool_hf")


class Model:
    def __init__(self, path):
        self.r = gguf.GGUFReader(path)
        self.t = {t.name: t for t in self.r.tensors}
        arch = self.kv("general.architecture")
        self.arch = arch
        self.n_layer = int(self.kv(f"{arch}.block_count"))
        self.n_embd = int(self.kv(f"{arch}.embedding_length"))
        self.n_head = int(self.kv(f"{arch}.attention.head_count"))
        self.n_head_kv = int(self.kv(f"{arch}.attention.head_count_kv", self.n_head))
        self.head_dim = int(self.kv(f"{arch}.attention.key_length", self.n_embd // self.n_head))
        self.n_rot = int(self.kv(f"{arch}.rope.dimension_count", self.head_dim))
        self.base = float(self.kv(f"{arch}.rope.freq_base", 10000.0))
        self.eps = float(self.kv(f"{arch}.attention.layer_norm_rms_epsilon"))
        self.neox = arch == "qwen2"

    def kv(self, key, default=None):
        f = self.r.fields.get(key)
        if f is None:
            if default is None:
                raise KeyError(key)
            return default
        v = f.contents()
        return v

    def has(self, name):
        return name in self.t

    def w(self, name):
        """float64 array of shape (ne1, ne0) (rows, cols), or (ne0,) for vectors"""
        t = self.t[name]
        a = gguf.quants.dequantize(t.data, t.tensor_type)
        ne = [int(x) for x in t.shape]
        return np.asarray(a, dtype=np.float64).reshape(ne[::-1] if len(ne) > 1 else ne)


def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope(x, pos, m, freqs):
    # x: [n_tok, n_head, head_dim]
    half = m.n_rot // 2
    i = np.arange(half, dtype=np.float64)
    theta = pos[:, None] * m.base ** (-2.0 * i / m.n_rot)[None, :]
    if freqs is not None:
        theta = theta / freqs[None, :]
    c, s = np.cos(theta)[:, None, :], np.sin(theta)[:, None, :]
    y = x.copy()
    if m.neox:
        a, b = x[..., :half], x[..., half:2 * half]
        y[..., :half] = a * c - b * s
        y[..., half:2 * half] = a * s + b * c
    else:
        a, b = x[..., 0:2 * half:2], x[..., 1:2 * half:2]
        y[..., 0:2 * half:2] = a * c - b * s
        y[..., 1:2 * half:2] = a * s + b * c
    return y


def forward(m, toks, round_kv):
    n = len(toks)
    emb = m.w("token_embd.weight")
    x = emb[toks].copy()
    out_w = emb if not m.has("output.weight") else None
    freqs = m.w("rope_freqs.weight") if m.has("rope_freqs.weight") else None
    pos = np.arange(n, dtype=np.float64)
    hd, nh, nkv = m.head_dim, m.n_head, m.n_head_kv
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for l in range(m.n_layer):
        p = f"blk.{l}."
        h = rmsnorm(x, m.w(p + "attn_norm.weight"), m.eps)
        q, k, v = h @ m.w(p + "attn_q.weight").T, h @ m.w(p + "attn_k.weight").T, h @ m.w(p + "attn_v.weight").T
        if m.has(p + "attn_q.bias"):
            q, k, v = q + m.w(p + "attn_q.bias"), k + m.w(p + "attn_k.bias"), v + m.w(p + "attn_v.bias")
        q = rope(q.reshape(n, nh, hd), pos, m, freqs)
        k = rope(k.reshape(n, nkv, hd), pos, m, freqs)
        v = v.reshape(n, nkv, hd)
        if round_kv:
            k = k.astype(np.float32).astype(np.float16).astype(np.float64)
            v = v.astype(np.float32).astype(np.float16).astype(np.float64)
        att = np.empty((n, nh, hd))
        g = nh // nkv
        for hh in range(nh):
            sc = q[:, hh, :] @ k[:, hh // g, :].T / np.sqrt(hd) + mask
            sc = np.exp(sc - sc.max(axis=1, keepdims=True))
            sc /= sc.sum(axis=1, keepdims=True)
            att[:, hh, :] = sc @ v[:, hh // g, :]
        x = x + att.reshape(n, nh * hd) @ m.w(p + "attn_output.weight").T
        h = rmsnorm(x, m.w(p + "ffn_norm.weight"), m.eps)
        gt, up = h @ m.w(p + "ffn_gate.weight").T, h @ m.w(p + "ffn_up.weight").T
        x = x + (gt / (1.0 + np.exp(-gt)) * up) @ m.w(p + "ffn_down.weight").T
    h = rmsnorm(x, m.w("output_norm.weight"), m.eps)
    return h @ (out_w if out_w is not None else m.w("output.weight")).T


def q4k_logits(path, act, kv, toks, n_vocab):
    env = dict(os.environ, Q4K_TEST_KV=kv)
    out = subprocess.run([TOOL, "logits", path, act] + [str(t) for t in toks], check=True, capture_output=True,
                         env=env).stdout
    return np.frombuffer(out, dtype=np.float32).reshape(len(toks), n_vocab).astype(np.float64)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--act", default="f32")
    ap.add_argument("--kv", default="f32")
    ap.add_argument("--tokens", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--round-kv", action="store_true")
    ap.add_argument("--min-cos", type=float, default=0.99999)
    ap.add_argument("--name", default="ref_f64")
    a = ap.parse_args()
    m = Model(a.model)
    n_vocab = int(m.t["token_embd.weight"].shape[1])
    rng = np.random.default_rng(a.seed)
    toks = [int(t) for t in rng.integers(0, n_vocab, a.tokens)]
    ref = forward(m, toks, a.round_kv)
    got = q4k_logits(a.model, a.act, a.kv, toks, n_vocab)
    cos = np.sum(ref * got, axis=1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    agree = int(np.sum(ref.argmax(axis=1) == got.argmax(axis=1)))
    print(f"{a.name}: {m.arch}, {m.n_layer} layers, vocab {n_vocab}, q4k act {a.act} kv {a.kv}, float64 side "
          f"{'rounds K,V to f16' if a.round_kv else 'exact'}; tokens {toks}")
    print(f"  cosine per position: {' '.join(f'{c:.8f}' for c in cos)}")
    print(f"  min cosine {cos.min():.8f}, argmax agrees at {agree}/{len(toks)} positions")
    if cos.min() >= a.min_cos:
        print(f"ok {a.name}")
    else:
        print(f"FAIL {a.name}: min cosine {cos.min():.8f} < {a.min_cos}")
        sys.exit(1)


if __name__ == "__main__":
    main()
