#!/usr/bin/env python3
"""Writes a Qwen2 model with the `gguf` package's GGUFWriter, not q4k's writer:
the "from outside" model of the CUDA issue. Nothing in it comes from q4k.

Shapes and metadata default to the published Qwen2.5-7B-Instruct config.json
(hidden 3584, 28 layers, 28 heads, 4 KV heads, FFN 18944, vocab 152064, rope
theta 1e6, RMS eps 1e-6, context 32768); --layers, --vocab, --hidden, --ffn,
--heads, --kv-heads make small ones for CI.

Weights are random but VALID k-quant blocks in the Q4_K_M layout: the llama.cpp
recipe as model cards describe it ("q4_k_m: uses Q6_K for half of the
attention.wv and feed_forward.w2 tensors, else Q4_K", e.g.
https://huggingface.co/about0/qwen-chat-GGUF-14B; which half: layers
i < n/8, i >= 7n/8 and every third one between, (i - n/8) % 3 == 2, its
use_more_bits rule), output.weight Q6_K, token_embd Q4_K; norms and the Qwen
q/k/v biases F32. Blocks are made directly (random quants, fp16 super-block
scales chosen so every weight tensor has a chosen standard deviation and mean
about 0), numpy-vectorised, so the full 7B (4.7 GB) takes seconds, not the
minutes a quantizer would.

Q4_K block (144 bytes): d f16, dmin f16, 12 bytes holding eight 6-bit scales
and eight 6-bit mins, 128 bytes of 4-bit quants; w = d*sc*q - dmin*m. Each
32-value sub-block gets m = sc*u/63 (u drawn per block) and dmin = 7.5*d*63/u,
so dmin*m = 7.5*d*sc: the sub-block is centred on 0.
Q6_K block (210 bytes): ql[128] low 4 bits, qh[64] high 2 bits, 16 int8
scales, d f16; w = d*scale*(q - 32).

The vocabulary is tests/data/qwen.tiktoken (ranks = ids) with Qwen2.5's 22
added tokens after it and [PADn] tokens up to --vocab; the merges come from
replaying byte-pair encoding on each token with the ranks below its own.
A --vocab smaller than the file keeps its first ranks (a closed BPE set).

usage: tests/gguf_writer_model.py OUT.gguf [--layers N] [--vocab V] ...
Prints one line with the sizes and the time taken.
"""
import argparse
import base64
import os
import sys
import time

import numpy as np

try:
    import gguf
    from gguf import GGMLQuantizationType as QT
except ImportError:
    print("gguf_writer_model: the python package gguf is missing (pip install gguf)", file=sys.stderr)
    sys.exit(1)

QK_K = 256
Q4K_BYTES = 144
Q6K_BYTES = 210

# Qwen2.5's added tokens after the 151643 byte-level ones, and their GGUF token
# types: CONTROL (3) for those its tokenizer_config.json marks special or that
# are spelled <|...|>, USER_DEFINED (4) for <tool_call> and </tool_call>
QWEN_ADDED = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
    "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"]
QWEN_ADDED_TYPES = [3] * 14 + [4, 4] + [3] * 6


def byte_to_unicode():
    """GPT-2's byte-level alphabet: printable Latin-1 bytes stand for
    themselves, the other 68 take code points 256, 257, ... in byte order."""
    keep = set(range(0x21, 0x7F)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def read_tiktoken(path, limit):
    """The first `limit` tokens of a .tiktoken file (BASE64 RANK lines), by rank."""
    toks = {}
    with open(path, "rb") as f:
        for line in f:
            parts = line.split()
            if len(parts) != 2:
                continue
            rank = int(parts[1])
            if rank < limit:
                toks[rank] = base64.b64decode(parts[0])
    n = len(toks)
    if sorted(toks) != list(range(n)):
        raise ValueError(f"{path}: ranks are not 0..{n - 1}")
    return [toks[i] for i in range(n)]


def bpe_merges(tokens):
    """For each multi-byte token, the two parts BPE joins last to make it:
    replay the merges on its bytes allowing only ranks below its own."""
    rank = {t: i for i, t in enumerate(tokens)}
    merges = []
    for r, t in enumerate(tokens):
        if len(t) < 2:
            continue
        parts = [t[i:i + 1] for i in range(len(t))]
        while len(parts) > 2:
            best, at = r, -1
            for i in range(len(parts) - 1):
                q = rank.get(parts[i] + parts[i + 1], r)
                if q < best:
                    best, at = q, i
            if at < 0:
                raise ValueError(f"token {r} {t!r} cannot be built from lower ranks")
            parts[at:at + 2] = [parts[at] + parts[at + 1]]
        if rank.get(parts[0], r) >= r or rank.get(parts[1], r) >= r:
            raise ValueError(f"token {r} {t!r}: parts {parts!r} are not earlier tokens")
        merges.append((parts[0], parts[1]))
    return merges


def vocabulary(tiktoken_path, n_vocab):
    """tokens, token types, merges (GGUF strings), and the ids of the added tokens"""
    n_added = len(QWEN_ADDED)
    if n_vocab < 256 + n_added:
        raise ValueError(f"--vocab {n_vocab}: at least {256 + n_added} (256 bytes and {n_added} added tokens)")
    raw = read_tiktoken(tiktoken_path, n_vocab - n_added)
    enc = byte_to_unicode()
    spell = lambda b: "".join(enc[c] for c in b)
    tokens = [spell(t) for t in raw] + QWEN_ADDED
    types = [1] * len(raw) + QWEN_ADDED_TYPES
    pad0 = len(tokens)
    tokens += [f"[PAD{i}]" for i in range(pad0, n_vocab)]
    types += [5] * (n_vocab - pad0)  # UNUSED
    merges = [spell(a) + " " + spell(b) for a, b in bpe_merges(raw)]
    return tokens, types, merges, len(raw)


def f16_bytes(x):
    return np.asarray(x, dtype=np.float16).view(np.uint8).reshape(-1, 2)


def random_bytes(rng, shape):
    """uniform random bytes straight from the bit generator (Generator.bytes
    is ten times slower, and the 7B needs 4.7 GB of them)"""
    n = int(np.prod(shape))
    return rng.bit_generator.random_raw((n + 7) // 8).view(np.uint8)[:n].reshape(shape)


def q4_k_blocks(rng, n_blocks, std):
    """n_blocks random Q4_K blocks whose weights have standard deviation ~std, mean ~0"""
    blk = random_bytes(rng, (n_blocks, Q4K_BYTES))
    # q uniform on 0..15 (std 4.61); sc uniform on 16..63 (rms 41.8)
    d = (std / (4.61 * 41.8)) * rng.uniform(0.75, 1.5, n_blocks)
    u = rng.integers(32, 64, n_blocks)
    dmin = 7.5 * d * 63.0 / u
    # multiply-and-shift, not % and //: those cost more than all the rest
    r = random_bytes(rng, (n_blocks, 16)).astype(np.int32)
    sc = 16 + ((r[:, :8] * 48) >> 8)
    m = np.clip(((sc * (u * 1040)[:, None].astype(np.int32)) >> 16) + ((r[:, 8:] * 3) >> 8) - 1, 0, 63)
    blk[:, 0:2] = f16_bytes(d)
    blk[:, 2:4] = f16_bytes(dmin)
    s = np.empty((n_blocks, 12), dtype=np.int32)
    # sub-blocks 0-3: 6 bits in bytes 0-3 (scales) and 4-7 (mins); 4-7: low 4
    # bits in bytes 8-11 (scale low nibble, min high nibble), high 2 bits in
    # the top bits of bytes 0-3 (scales) and 4-7 (mins)
    s[:, 0:4] = sc[:, 0:4] | ((sc[:, 4:8] >> 4) << 6)
    s[:, 4:8] = m[:, 0:4] | ((m[:, 4:8] >> 4) << 6)
    s[:, 8:12] = (sc[:, 4:8] & 15) | ((m[:, 4:8] & 15) << 4)
    blk[:, 4:16] = s.astype(np.uint8)
    return blk


def q6_k_blocks(rng, n_blocks, std):
    """n_blocks random Q6_K blocks whose weights have standard deviation ~std"""
    blk = random_bytes(rng, (n_blocks, Q6K_BYTES))
    # q - 32 uniform on -32..31 (std 18.47); scale 64..127 (rms 97.2) from a
    # random byte's low 6 bits, its sign from the top bit
    r = blk[:, 192:208].astype(np.int16)
    sc = (64 + (r & 63)) * (1 - ((r >> 6) & 2))
    blk[:, 192:208] = sc.astype(np.int8).view(np.uint8)
    blk[:, 208:210] = f16_bytes((std / (18.47 * 97.2)) * rng.uniform(0.75, 1.5, n_blocks))
    return blk


def use_more_bits(layer, n_layer):
    return layer < n_layer // 8 or layer >= 7 * n_layer // 8 or (layer - n_layer // 8) % 3 == 2


def plan(a, n_vocab):
    """(name, type, shape as numpy rows x cols, kind, std) in the order written:
    the embedding, each layer's tensors by name (as converted files list
    them), then the final norm and the output (q4k's own writer puts those
    two right after the embedding)."""
    d, ff, L = a.hidden, a.ffn, a.layers
    hd = d // a.heads
    qd, kvd = a.heads * hd, a.kv_heads * hd
    t = [("token_embd.weight", QT.Q4_K, (n_vocab, d), "w", 1.0)]
    for i in range(L):
        v_type = QT.Q6_K if use_more_bits(i, L) else QT.Q4_K
        b = f"blk.{i}."
        # matrices keep unit-variance inputs at unit variance; the two that
        # write into the residual stream at half that
        t += [(b + "attn_k.bias", QT.F32, (kvd,), "bias", 1.0),
              (b + "attn_k.weight", QT.Q4_K, (kvd, d), "w", d ** -0.5),
              (b + "attn_norm.weight", QT.F32, (d,), "norm", 0),
              (b + "attn_output.weight", QT.Q4_K, (d, qd), "w", 0.5 * qd ** -0.5),
              (b + "attn_q.bias", QT.F32, (qd,), "bias", 0.5),
              (b + "attn_q.weight", QT.Q4_K, (qd, d), "w", d ** -0.5),
              (b + "attn_v.bias", QT.F32, (kvd,), "bias", 0.1),
              (b + "attn_v.weight", v_type, (kvd, d), "w", d ** -0.5),
              (b + "ffn_down.weight", v_type, (d, ff), "w", 0.5 * ff ** -0.5),
              (b + "ffn_gate.weight", QT.Q4_K, (ff, d), "w", d ** -0.5),
              (b + "ffn_norm.weight", QT.F32, (d,), "norm", 0),
              (b + "ffn_up.weight", QT.Q4_K, (ff, d), "w", d ** -0.5)]
    # logits with a standard deviation of about 3, as trained models have
    t += [("output_norm.weight", QT.F32, (d,), "norm", 0),
          ("output.weight", QT.Q6_K, (n_vocab, d), "w", 3.0 * d ** -0.5)]
    return t


def tensor_data(rng, qtype, shape, kind, std):
    if kind == "norm":
        return rng.uniform(0.9, 1.1, shape).astype(np.float32)
    if kind == "bias":
        return (rng.standard_normal(shape) * std).astype(np.float32)
    rows, cols = shape
    nb = rows * cols // QK_K
    blocks = q4_k_blocks(rng, nb, std) if qtype == QT.Q4_K else q6_k_blocks(rng, nb, std)
    return blocks.reshape(rows, -1)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out")
    p.add_argument("--layers", type=int, default=28)
    p.add_argument("--vocab", type=int, default=152064)
    p.add_argument("--hidden", type=int, default=3584)
    p.add_argument("--ffn", type=int, default=18944)
    p.add_argument("--heads", type=int, default=28)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--ctx", type=int, default=32768)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--alignment", type=int, default=0, help="general.alignment (default: the key is absent, 32)")
    p.add_argument("--tiktoken", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "qwen.tiktoken"))
    p.add_argument("--chat-template", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                                                           "templates", "qwen2.5-instruct.jinja"))
    a = p.parse_args()
    if a.hidden % QK_K or a.ffn % QK_K:
        p.error(f"--hidden {a.hidden} and --ffn {a.ffn} must be multiples of {QK_K} (k-quant super-blocks)")
    if a.hidden % a.heads or a.heads % a.kv_heads or (a.hidden // a.heads) % 2:
        p.error("--hidden / --heads must be an even head size and --heads a multiple of --kv-heads")
    if a.layers < 1:
        p.error("--layers must be at least 1")
    t0 = time.time()
    tokens, types, merges, n_plain = vocabulary(a.tiktoken, a.vocab)
    t_vocab = time.time() - t0

    w = gguf.GGUFWriter(a.out, "qwen2")
    w.add_name("gguf-writer random Qwen2.5-7B-Instruct shapes")
    w.add_file_type(15)  # MOSTLY_Q4_K_M
    w.add_quantization_version(2)
    if a.alignment:
        w.add_custom_alignment(a.alignment)
    w.add_context_length(a.ctx)
    w.add_embedding_length(a.hidden)
    w.add_block_count(a.layers)
    w.add_feed_forward_length(a.ffn)
    w.add_head_count(a.heads)
    w.add_head_count_kv(a.kv_heads)
    w.add_rope_freq_base(1e6)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_eos_token_id(n_plain + 2)  # <|im_end|>
    w.add_pad_token_id(n_plain)      # <|endoftext|>
    w.add_bos_token_id(n_plain)
    w.add_add_bos_token(False)
    if a.chat_template and os.path.exists(a.chat_template):
        with open(a.chat_template, encoding="utf-8") as f:
            w.add_chat_template(f.read())

    rng = np.random.default_rng(a.seed)
    tensors = plan(a, a.vocab)
    for name, qtype, shape, kind, std in tensors:
        if qtype == QT.F32:
            w.add_tensor_info(name, shape, np.dtype(np.float32), 4 * int(np.prod(shape)))
        else:
            rows, cols = shape
            row_bytes = cols // QK_K * (Q4K_BYTES if qtype == QT.Q4_K else Q6K_BYTES)
            w.add_tensor_info(name, (rows, row_bytes), np.dtype(np.uint8), rows * row_bytes, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    # one tensor at a time: the 7B never sits in memory whole
    nbytes = 0
    for name, qtype, shape, kind, std in tensors:
        data = tensor_data(rng, qtype, shape, kind, std)
        w.write_tensor_data(data)
        nbytes += data.nbytes
    w.close()
    q6 = sum(1 for t in tensors if t[1] == QT.Q6_K)
    q4 = sum(1 for t in tensors if t[1] == QT.Q4_K)
    print(f"gguf_writer_model: wrote {a.out}: {a.layers} layers, hidden {a.hidden}, ffn {a.ffn}, "
          f"heads {a.heads}/{a.kv_heads}, vocab {a.vocab} ({len(merges)} merges), Q4_K x{q4} Q6_K x{q6} "
          f"F32 x{len(tensors) - q4 - q6}, {nbytes / 1e9:.3f} GB of tensors in {time.time() - t0:.1f} s "
          f"(vocabulary {t_vocab:.1f} s)")


if __name__ == "__main__":
    main()
