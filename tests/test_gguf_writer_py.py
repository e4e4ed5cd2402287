#!/usr/bin/env python3
"""A model written by another GGUF writer: tests/gguf_writer_model.py makes a
small Qwen2 model (8 layers, hidden 256) with the gguf package's GGUFWriter
and random Q4_K/Q6_K blocks in the Q4_K_M layout, and q4k must take it as its
own: `q4k info` reads every key and tensor as written, the blocks decode (in
gguf's own dequantizer) to finite weights of the planned spread, `q4k qa
--backend cpu` passes in both arithmetic modes, q4k's tokenizer on the
file's vocabulary gives tiktoken's ids, and a file with general.alignment 64
loads and runs. The full 7B of the same script is the GPU stage's
(tests/gpu.sh model). Prints "ok NAME" / "FAIL NAME: detail"."""
import base64
import json
import os
import struct
import subprocess
import sys
import tempfile

os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

try:
    import numpy as np
    from gguf import GGUFReader, GGMLQuantizationType as QT, quants
except ImportError:
    print("skip test_gguf_writer_py: python package gguf missing")
    sys.exit(0)

sys.path.insert(0, "tests")
import gguf_writer_model as gw  # noqa: E402

Q4K = "./q4k"
QWEN_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
SMALL = ["--layers", "8", "--hidden", "256", "--ffn", "512", "--heads", "4", "--kv-heads", "2", "--vocab", "4096"]
failed = 0


def check(name, fn):
    global failed
    try:
        fn()
        print(f"ok {name}")
    except Exception as e:  # one line per failure, then carry on
        failed += 1
        print(f"FAIL {name}: {type(e).__name__}: {e}")
    sys.stdout.flush()


def run(args, timeout=300):
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def main():
    if not os.access(Q4K, os.X_OK):
        print("FAIL test_gguf_writer_py: ./q4k is not built (make q4k)")
        return 1
    tmp = tempfile.mkdtemp(prefix="q4k_gw_")
    model = os.path.join(tmp, "gw.gguf")
    p = run([sys.executable, "tests/gguf_writer_model.py", model, "--seed", "7"] + SMALL)
    if p.returncode != 0:
        print(f"FAIL write_small: exit {p.returncode}: {p.stderr.decode(errors='replace')[-400:]}")
        return 1
    print("ok write_small")

    class A:  # the small model's arguments, as gguf_writer_model.plan takes them
        layers, hidden, ffn, heads, kv_heads = 8, 256, 512, 4, 2
    plan = {t[0]: t for t in gw.plan(A, 4096)}
    info = {}

    def q4k_info():
        p = run([Q4K, "info", model, "--json"])
        expect(p.returncode == 0, f"q4k info exit {p.returncode}: {p.stderr.decode(errors='replace')}")
        info.update(json.loads(p.stdout))
        kv = {m["key"]: m["value"] for m in info["metadata"]}
        want = {"general.architecture": "qwen2", "qwen2.block_count": 8, "qwen2.embedding_length": 256,
                "qwen2.feed_forward_length": 512, "qwen2.attention.head_count": 4,
                "qwen2.attention.head_count_kv": 2, "qwen2.rope.freq_base": 1e6,
                "qwen2.attention.layer_norm_rms_epsilon": 1e-6, "tokenizer.ggml.model": "gpt2",
                "tokenizer.ggml.pre": "qwen2", "general.file_type": 15}
        for k, v in want.items():
            got = kv.get(k)
            ok = abs(got - v) <= 1e-6 * abs(v) if isinstance(v, float) and got is not None else got == v
            expect(ok, f"{k} = {got!r}, written {v!r}")
        expect(info["tensor_count"] == len(plan), f"{info['tensor_count']} tensors, written {len(plan)}")

    def q4_k_m_layout():
        # the recipe: attn_v and ffn_down Q6_K in layers 0, 3, 6, 7 of 8
        # (first and last eighth, every third between), output Q6_K, the rest Q4_K
        six = {"output.weight"} | {f"blk.{i}.{n}.weight" for i in (0, 3, 6, 7) for n in ("attn_v", "ffn_down")}
        for t in info["tensors"]:
            name, typ = t["name"], t["type"]
            _, qt, shape, kind, _ = plan[name]
            want = "F32" if kind in ("norm", "bias") else "Q6_K" if name in six else "Q4_K"
            expect(typ == want, f"{name} is {typ}, the Q4_K_M recipe wants {want}")
            expect(typ == qt.name, f"{name} is {typ}, the writer was asked for {qt.name}")
            expect(t["shape"] == list(reversed(shape)), f"{name} shape {t['shape']}, written {list(reversed(shape))}")

    def blocks_sane():
        r = GGUFReader(model)
        n_quant = 0
        for t in r.tensors:
            _, qt, shape, kind, std = plan[t.name]
            if kind in ("norm", "bias"):
                continue
            n_quant += 1
            w = quants.dequantize(np.asarray(t.data), t.tensor_type).reshape(-1)
            expect(np.isfinite(w).all(), f"{t.name}: non-finite weights")
            # d, dmin of every Q4_K block (Q6_K: d) are finite, positive fp16
            b = np.asarray(t.data).reshape(-1, 144 if qt == QT.Q4_K else 210)
            d = (b[:, 0:4] if qt == QT.Q4_K else b[:, 208:210]).copy().view(np.float16).astype(np.float32)
            expect(np.isfinite(d).all() and (d > 0).all(), f"{t.name}: a super-block scale is not finite and > 0")
            s = float(w.std())
            expect(0.5 * std < s < 2 * std, f"{t.name}: weight std {s:.3g}, planned {std:.3g}")
            expect(abs(float(w.mean())) < 0.2 * s, f"{t.name}: weight mean {w.mean():.3g} (std {s:.3g})")
        expect(n_quant == 2 + 7 * 8, f"{n_quant} quantized tensors")

    def qa_cpu():
        p = run([Q4K, "qa", model, "--backend", "cpu", "--mode", "both", "--steps", "4", "-t", "2"])
        out = p.stdout.decode(errors="replace")
        expect(p.returncode == 0, f"q4k qa exit {p.returncode}: {out[-600:]} {p.stderr.decode(errors='replace')[-300:]}")
        last = [l for l in out.splitlines() if l.startswith("summary:")]
        expect(last and last[-1].split()[1].split("/")[0] == last[-1].split()[1].split("/")[1], f"{last}")

    def tokenizer_matches_tiktoken():
        try:
            import tiktoken
        except ImportError:
            raise AssertionError("python package tiktoken missing (the oracle of this check)")
        n_plain = 4096 - len(gw.QWEN_ADDED)
        ranks = {}
        with open("tests/data/qwen.tiktoken", "rb") as f:
            for line in f:
                tok, rank = line.split()
                if int(rank) < n_plain:
                    ranks[base64.b64decode(tok)] = int(rank)
        enc = tiktoken.Encoding(name="q4k_gw", pat_str=QWEN_PATTERN, mergeable_ranks=ranks, special_tokens={})
        text = "The quick brown fox jumps over the lazy dog's 1234 tails;\n  indented   words, tokens!"
        want = enc.encode_ordinary(text)
        logits = os.path.join(tmp, "logits.bin")
        p = run([Q4K, "run", model, text, "--raw", "-n", "1", "--temp", "0", "--backend", "cpu", "-t", "2",
                 "--logits-out", logits, "--quiet"])
        expect(p.returncode == 0, f"q4k run exit {p.returncode}: {p.stderr.decode(errors='replace')[-400:]}")
        with open(logits, "rb") as f:
            data = f.read()
        expect(data[:8] == b"Q4KLOGIT", "logits file magic")
        _, n_vocab = struct.unpack_from("<II", data, 8)
        rec = 8 + 4 * n_vocab
        got = [struct.unpack_from("<i", data, 16 + i * rec)[0] for i in range((len(data) - 16) // rec)]
        expect(got[:len(want)] == want, f"q4k's prompt ids {got[:len(want)]}, tiktoken's {want}")
        row = np.frombuffer(data, dtype=np.float32, count=n_vocab, offset=16 + 8)
        expect(np.isfinite(row).all() and row.std() > 0.1, f"logits of the first position: std {row.std():.3g}")

    def alignment_64():
        m64 = os.path.join(tmp, "gw64.gguf")
        p = run([sys.executable, "tests/gguf_writer_model.py", m64, "--alignment", "64", "--layers", "1",
                 "--hidden", "256", "--ffn", "256", "--heads", "2", "--kv-heads", "1", "--vocab", "600"])
        expect(p.returncode == 0, f"writer exit {p.returncode}: {p.stderr.decode(errors='replace')[-300:]}")
        p = run([Q4K, "info", m64, "--json"])
        expect(p.returncode == 0 and json.loads(p.stdout)["alignment"] == 64, "q4k info does not read alignment 64")
        p = run([Q4K, "qa", m64, "--backend", "cpu", "-t", "2"])
        expect(p.returncode == 0, f"q4k qa exit {p.returncode}: {p.stdout.decode(errors='replace')[-400:]}")

    check("q4k_info_reads_every_key_and_tensor", q4k_info)
    if info:
        check("q4_k_m_layout", q4_k_m_layout)
    check("blocks_decode_finite_with_planned_spread", blocks_sane)
    check("qa_cpu_both_modes", qa_cpu)
    check("tokenizer_matches_tiktoken", tokenizer_matches_tiktoken)
    check("alignment_64", alignment_64)
    for f in os.listdir(tmp):
        os.unlink(os.path.join(tmp, f))
    os.rmdir(tmp)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
