#!/usr/bin/env python3
"""The forward pass against an outside reference: Hugging Face transformers.

Builds random-config Qwen2 and Llama models in transformers (float64), writes
them with q4k's own GGUF writer (build/tool_hf write) as F32 and Q8_0, and
checks q4k's CPU logits (build/tool_hf logits) against transformers' for a
prompt and 8 greedy steps chosen by transformers. Needs torch and
transformers (the lent GPU machine has them; CI does not), so it is not part
of `make test`: tests/gpu.sh runs it and its log is committed under docs/logs/.

Prints "ok NAME" / "FAIL NAME" lines like the other tests.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

try:
    import torch
    import transformers
except ImportError as e:  # pragma: no cover
    print(f"skip hf_compare: {e}")
    sys.exit(0)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "build", "tool_hf")


def permute_for_gguf(w, n_head):
    # HF stores Llama's q/k rows with the rotary pairs split in halves; GGUF
    # (and q4k's "normal" RoPE) wants adjacent pairs: undo that split.
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def randomize(model, seed):
    # HF's default init (std 0.02) makes attention nearly uniform; use the
    # scales of a trained model instead so that every part of the math matters.
    g = torch.Generator().manual_seed(seed)
    n_layer = model.config.num_hidden_layers
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * (2 * torch.rand(p.shape, generator=g, dtype=p.dtype) - 1))
            elif name.endswith("bias"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))
            else:
                std = 1.0 / np.sqrt(p.shape[-1])
                if "o_proj" in name or "down_proj" in name:
                    std /= np.sqrt(2 * n_layer)
                if "embed_tokens" in name:
                    std = 1.0
                p.copy_(std * torch.randn(p.shape, generator=g, dtype=p.dtype))


def export(model, arch, d, rope_freqs=None, permute=True):
    cfg = model.config
    sd = {k: v.detach().to(torch.float64).numpy() for k, v in model.state_dict().items()}
    lines = []
    hd = cfg.hidden_size // cfg.num_attention_heads

    def tensor(name, arr):
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        path = os.path.join(d, name + ".f32")
        arr.tofile(path)
        ne = list(reversed(arr.shape))
        lines.append(f"tensor {name} {' '.join(str(x) for x in ne)} {path}")

    lines.append(f"kv general.architecture str {arch}")
    for k, v in [("block_count", cfg.num_hidden_layers), ("context_length", cfg.max_position_embeddings),
                 ("embedding_length", cfg.hidden_size), ("feed_forward_length", cfg.intermediate_size),
                 ("attention.head_count", cfg.num_attention_heads),
                 ("attention.head_count_kv", cfg.num_key_value_heads)]:
        lines.append(f"kv {arch}.{k} u32 {v}")
    lines.append(f"kv {arch}.rope.freq_base f32 {rope_base(model)}")
    lines.append(f"kv {arch}.attention.layer_norm_rms_epsilon f32 {cfg.rms_norm_eps}")
    tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    tensor("output_norm.weight", sd["model.norm.weight"])
    if not cfg.tie_word_embeddings:
        tensor("output.weight", sd["lm_head.weight"])
    if rope_freqs is not None:
        tensor("rope_freqs.weight", rope_freqs)
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        q, k = sd[p + "self_attn.q_proj.weight"], sd[p + "self_attn.k_proj.weight"]
        if arch == "llama" and permute:
            q = permute_for_gguf(q, cfg.num_attention_heads)
            k = permute_for_gguf(k, cfg.num_key_value_heads)
        tensor(f"blk.{i}.attn_norm.weight", sd[p + "input_layernorm.weight"])
        tensor(f"blk.{i}.attn_q.weight", q)
        tensor(f"blk.{i}.attn_k.weight", k)
        tensor(f"blk.{i}.attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        if arch == "qwen2":
            tensor(f"blk.{i}.attn_q.bias", sd[p + "self_attn.q_proj.bias"])
            tensor(f"blk.{i}.attn_k.bias", sd[p + "self_attn.k_proj.bias"])
            tensor(f"blk.{i}.attn_v.bias", sd[p + "self_attn.v_proj.bias"])
        tensor(f"blk.{i}.attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        tensor(f"blk.{i}.ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        tensor(f"blk.{i}.ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
        tensor(f"blk.{i}.ffn_up.weight", sd[p + "mlp.up_proj.weight"])
        tensor(f"blk.{i}.ffn_down.weight", sd[p + "mlp.down_proj.weight"])
    man = os.path.join(d, "manifest.txt")
    with open(man, "w") as f:
        f.write("\n".join(lines) + "\n")
    return man


def rope_base(model):
    # read the base back from the model's own frequencies: config field names
    # moved between transformers versions (rope_theta, rope_parameters)
    inv = model.model.rotary_emb.original_inv_freq if hasattr(model.model.rotary_emb, "original_inv_freq") \
        else model.model.rotary_emb.inv_freq
    inv = inv.detach().to(torch.float64).numpy()
    hd = 2 * len(inv)
    return float(round(inv[1] ** (-hd / 2.0)))


def make_config(cls, rope_theta, rope_scaling=None, **kw):
    params = {"rope_type": "default", "rope_theta": rope_theta}
    if rope_scaling:
        params = {**rope_scaling, "rope_theta": rope_theta}
    try:
        cfg = cls(rope_parameters=params, **kw)
        if getattr(cfg, "rope_parameters", None) is None:
            raise TypeError
    except TypeError:
        cfg = cls(rope_theta=rope_theta, rope_scaling=rope_scaling, **kw)
    return cfg


def hf_greedy(model, prompt, steps):
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(steps):
            out = model(torch.tensor([ids])).logits[0]
            ids.append(int(out[-1].argmax()))
        logits = model(torch.tensor([ids])).logits[0].numpy()
    return ids, logits


def q4k_logits(gguf, act, ids, n_vocab):
    r = subprocess.run([TOOL, "logits", gguf, act] + [str(i) for i in ids], capture_output=True)
    if r.returncode != 0:
        raise RuntimeError(f"tool_hf logits failed: {r.stderr.decode()}")
    out = r.stdout
    return np.frombuffer(out, dtype=np.float32).reshape(len(ids), n_vocab).astype(np.float64)


def cosines(a, b):
    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


def case(name, model, arch, bounds, rope_freqs=None, seed=0, expect_fail=False, permute=True):
    randomize(model, seed)
    model = model.to(torch.float64).eval()
    rng = np.random.default_rng(seed)
    n_vocab = model.config.vocab_size
    prompt = [int(x) for x in rng.integers(0, n_vocab, 12)]
    ids, ref = hf_greedy(model, prompt, 8)
    failed = False
    with tempfile.TemporaryDirectory() as d:
        man = export(model, arch, d, rope_freqs, permute)
        for wtype, act, bound in bounds:
            gguf = os.path.join(d, f"m_{wtype}.gguf")
            subprocess.run([TOOL, "write", man, gguf, wtype], check=True)
            ours = q4k_logits(gguf, act, ids, n_vocab)
            # the prompt's last position and the 8 greedy steps
            c = cosines(ours[len(prompt) - 1:], ref[len(prompt) - 1:])
            agree = int((ours[len(prompt) - 1:].argmax(1) == ref[len(prompt) - 1:].argmax(1)).sum())
            line = (f"{name} weights {wtype} activations {act}: min cosine {c.min():.7f} over {len(c)} positions, "
                    f"argmax agrees at {agree}/{len(c)} (bound {bound})")
            ok = (c.min() >= bound) != expect_fail
            failed |= not ok
            if expect_fail:
                line = "control (must miss the bound): " + line
            print(("ok " if ok else "FAIL ") + line, flush=True)
    return not failed


def main():
    torch.manual_seed(0)
    results = []
    bounds = [("f32", "f32", 0.9999), ("f32", "q8", 0.999), ("q8_0", "f32", 0.999), ("q8_0", "q8", 0.999)]
    qkw = dict(vocab_size=320, hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=8,
               num_key_value_heads=2, rms_norm_eps=1e-6, max_position_embeddings=512, use_sliding_window=False)
    qcfg = make_config(transformers.Qwen2Config, 1000000.0, tie_word_embeddings=False, **qkw)
    results.append(case("qwen2", transformers.Qwen2ForCausalLM(qcfg), "qwen2", bounds, seed=1))
    qcfg = make_config(transformers.Qwen2Config, 1000000.0, tie_word_embeddings=True, **qkw)
    results.append(case("qwen2_tied", transformers.Qwen2ForCausalLM(qcfg), "qwen2", bounds[:1], seed=2))
    lkw = dict(vocab_size=300, hidden_size=128, intermediate_size=320, num_hidden_layers=3, num_attention_heads=4,
               num_key_value_heads=1, rms_norm_eps=1e-5, max_position_embeddings=512, tie_word_embeddings=False)
    lcfg = make_config(transformers.LlamaConfig, 500000.0, **lkw)
    results.append(case("llama", transformers.LlamaForCausalLM(lcfg), "llama", bounds, seed=3))
    # Llama 3.1 rope scaling: q4k takes the frequency factors GGUF stores in rope_freqs.weight
    lcfg31 = make_config(transformers.LlamaConfig, 500000.0, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64}, **lkw)
    m31 = transformers.LlamaForCausalLM(lcfg31)
    hd = lcfg31.hidden_size // lcfg31.num_attention_heads
    base = 1.0 / (500000.0 ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
    scaled = m31.model.rotary_emb.inv_freq.detach().to(torch.float64).numpy()
    factors = base / scaled
    print(f"llama3.1 rope factors: min {factors.min():.3f} max {factors.max():.3f}")
    results.append(case("llama3.1_rope", m31, "llama", bounds[:1], rope_freqs=factors, seed=4))
    # controls: the comparison can fail. Without the factors the rope is wrong;
    # without the q/k row permutation the rotary pairs are wrong.
    results.append(case("llama3.1_rope_without_factors", m31, "llama", bounds[:1], rope_freqs=None, seed=4,
                        expect_fail=True))
    results.append(case("llama_without_permutation", transformers.LlamaForCausalLM(lcfg), "llama", bounds[:1],
                        seed=3, expect_fail=True, permute=False))
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
