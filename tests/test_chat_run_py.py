#!/usr/bin/env python3
"""`q4k run` on a tiny model that carries DeepSeek-R1-Distill-Qwen's real
tokenizer and chat template (issue 10's "done when").

The model: `q4k synth --vocab qwen.tiktoken --added-tokens deepseek-r1-qwen
--chat-template tests/data/templates/deepseek-r1-distill-qwen.jinja` writes
the Qwen2 byte-level vocabulary with DeepSeek's 22 added tokens at their
published ids (<｜end▁of▁sentence｜> 151643, <｜User｜> 151644,
<｜Assistant｜> 151645, <｜begin▁of▁sentence｜> 151646, <think> 151648, ...),
tokenizer.ggml.pre "deepseek-r1-qwen", BOS 151646, EOS 151643,
add_bos_token true and the published template. Its one layer is then made
transparent (attn_output and ffn_down zeroed, so the last hidden state is the
token's embedding) and the final norm keeps only dimension 0, so the logits
are output[:, 0] times the sign of embedding[token][0]: two rows of
output.weight decide what greedy decoding picks. After the prompt's last
token it picks a word K; after K it picks <｜end▁of▁sentence｜>.

Checked, with ids computed by tiktoken (not by q4k): the prompt q4k
evaluates is exactly BOS <｜User｜> text <｜Assistant｜> <think> \\n (one BOS,
though add_bos_token is set); the answer is K alone and generation stops
there with -n 20 (exit 0, one token evaluated); with --ignore-eos the logits
after K put <｜end▁of▁sentence｜> first, so the stop was that token. Then a
forced --pre, --chat-template NAME|FILE and the fallback of a template
outside the subset.
"""
import base64
import os
import re
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
Q4K = os.path.join(ROOT, "q4k")
TEMPLATE = os.path.join(HERE, "data", "templates", "deepseek-r1-distill-qwen.jinja")
NAME = "test_chat_run_py"

EOS, USER, ASSISTANT, BOS, THINK = 151643, 151644, 151645, 151646, 151648
QWEN_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def find_vocab():
    for d in (os.environ.get("Q4K_TEST_DATA"), os.path.join(HERE, "data")):
        if d and os.path.exists(os.path.join(d, "qwen.tiktoken")):
            return os.path.join(d, "qwen.tiktoken")
    return None


def run(args, **kw):
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def read_logits(path):
    b = open(path, "rb").read()
    assert b[:8] == b"Q4KLOGIT", "bad --logits-out magic"
    _, n_vocab = struct.unpack("<II", b[8:16])
    off, recs = 16, []
    while off < len(b):
        tok, pos = struct.unpack("<ii", b[off:off + 8])
        logits = struct.unpack("<%df" % n_vocab, b[off + 8:off + 8 + 4 * n_vocab])
        recs.append((tok, pos, logits))
        off += 8 + 4 * n_vocab
    return recs


def argmax(xs):
    best = 0
    for i, x in enumerate(xs):
        if x > xs[best]:
            best = i
    return best


def f16(v):
    return struct.unpack("<e", struct.pack("<e", v))[0]


def q8_first(row):
    """dimension 0 of a Q8_0 row (blocks: f16 scale, 32 int8)"""
    d = struct.unpack("<e", bytes(row[0:2]))[0]
    q = struct.unpack("<b", bytes(row[2:3]))[0]
    return d * q


def set_q8_row(row, first):
    """a Q8_0 row that is `first` in dimension 0 and zero elsewhere"""
    row[:] = 0
    row[0:2] = list(struct.pack("<e", abs(first) / 127.0))
    row[2] = (127 if first > 0 else -127) & 0xFF


class Checker:
    def __init__(self):
        self.fails = 0

    def check(self, name, cond, why=""):
        if cond:
            print("ok %s" % name)
        else:
            print("FAIL %s: %s" % (name, why))
            self.fails += 1


def main():
    vocab = find_vocab()
    if not os.path.exists(Q4K):
        print("FAIL %s: %s is missing (make q4k)" % (NAME, Q4K))
        return 1
    if not vocab:
        print("skip %s: qwen.tiktoken not found (tests/data/ or $Q4K_TEST_DATA)" % NAME)
        return 0
    try:
        import numpy as np
        import gguf
        import tiktoken
    except ImportError as e:
        print("skip %s: %s (pip install gguf numpy tiktoken)" % (NAME, e))
        return 0
    c = Checker()
    ranks = {}
    for line in open(vocab, "rb"):
        if line.strip():
            tok, rank = line.split()
            ranks[base64.b64decode(tok)] = int(rank)
    specials = {"<\uff5cend\u2581of\u2581sentence\uff5c>": EOS, "<\uff5cUser\uff5c>": USER,
                "<\uff5cAssistant\uff5c>": ASSISTANT, "<\uff5cbegin\u2581of\u2581sentence\uff5c>": BOS,
                "<think>": THINK}
    enc = tiktoken.Encoding("qwen", pat_str=QWEN_PATTERN, mergeable_ranks=ranks, special_tokens=specials)
    id_bytes = {v: k for k, v in ranks.items()}

    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "ds.gguf")
        p = run([Q4K, "synth", model, "--preset", "tiny", "--layers", "1", "--quant", "q8_0", "--vocab", vocab,
                 "--added-tokens", "deepseek-r1-qwen", "--chat-template", TEMPLATE, "--seed", "7"])
        c.check("synth_deepseek_vocab", p.returncode == 0, p.stderr.decode()[-300:])
        if p.returncode:
            return 1
        r = gguf.GGUFReader(model, "r+")
        kv = {f.name: f for f in r.fields.values()}

        def kv_str(k):
            f = kv[k]
            return bytes(f.parts[f.data[0]]).decode()

        def kv_u32(k):
            f = kv[k]
            return int(f.parts[f.data[0]][0])
        c.check("synth_deepseek_metadata",
                kv_str("tokenizer.ggml.pre") == "deepseek-r1-qwen" and kv_u32("tokenizer.ggml.bos_token_id") == BOS and
                kv_u32("tokenizer.ggml.eos_token_id") == EOS and kv_str("tokenizer.chat_template") ==
                open(TEMPLATE, encoding="utf-8").read(),
                "pre, ids or template differ")
        t = {x.name: x for x in r.tensors}
        emb, out = t["token_embd.weight"].data, t["output.weight"].data
        for name in ("blk.0.attn_output.weight", "blk.0.ffn_down.weight"):
            t[name].data[:] = 0
        norm = t["output_norm.weight"].data
        norm[:] = 0
        norm[0] = 1.0
        prompt_text = "Hi there, what is 2+2?"
        nl = 198  # "\n", the prompt's last token (after <think>)
        s = 1.0 if q8_first(emb[nl]) > 0 else -1.0
        # K: a plain word whose embedding points the other way in dimension 0
        k = next(i for i in range(1000, 5000)
                 if q8_first(emb[i]) * s < -0.01 and re.fullmatch(rb"[ A-Za-z]+", id_bytes[i]))
        set_q8_row(out[k], 100.0 * s)     # after "\n": K
        set_q8_row(out[EOS], -100.0 * s)  # after K: <｜end▁of▁sentence｜>
        r.data.flush()
        del r, emb, out, norm, t

        want_prompt = [BOS, USER] + enc.encode(prompt_text) + [ASSISTANT, THINK, nl]
        lo = os.path.join(tmp, "lo.bin")
        p = run([Q4K, "run", model, prompt_text, "--temp", "0", "-n", "20", "--logits-out", lo])
        err = p.stderr.decode("utf-8", "replace")
        recs = read_logits(lo) if os.path.exists(lo) else []
        got_prompt = [tok for tok, _, _ in recs[:len(want_prompt)]]
        c.check("run_deepseek_prompt_bos_user_assistant", got_prompt == want_prompt,
                "evaluated %s, want %s" % (got_prompt, want_prompt))
        c.check("run_deepseek_one_bos", [tok for tok, _, _ in recs].count(BOS) == 1, "BOS count")
        c.check("run_deepseek_answer_then_stop",
                p.returncode == 0 and p.stdout.rstrip(b"\n") == id_bytes[k] and
                re.search(r"eval time = .*/\s+1 tokens", err) is not None,
                "rc %d, stdout %r (want %r), stderr %s" % (p.returncode, p.stdout, id_bytes[k], err[-300:]))
        c.check("run_deepseek_picks_k_after_prompt", len(recs) >= len(want_prompt) and
                argmax(recs[len(want_prompt) - 1][2]) == k, "argmax after the prompt")
        p = run([Q4K, "run", model, prompt_text, "--temp", "0", "-n", "3", "--ignore-eos", "--quiet", "--logits-out", lo])
        recs = read_logits(lo)
        after_k = [lg for tok, _, lg in recs[len(want_prompt):] if tok == k]
        c.check("run_deepseek_stop_token_is_end_of_sentence",
                p.returncode == 0 and after_k and argmax(after_k[0]) == EOS,
                "rc %d, records after K %d" % (p.returncode, len(after_k)))

        # -i: the second turn renders the whole conversation; the cache keeps the
        # tokens the renders share (up to the first <｜Assistant｜>: the template
        # writes the earlier answer without <think>) and evaluates the rest
        p = run([Q4K, "run", model, "-i", "--temp", "0", "-n", "20", "--quiet", "--logits-out", lo],
                input=b"Hi\nsecond question\n")
        recs = read_logits(lo)
        k_text = id_bytes[k].decode()
        full = ([BOS, USER] + enc.encode("Hi") + [ASSISTANT] + enc.encode(k_text) + [EOS, USER] +
                enc.encode("second question") + [ASSISTANT, THINK, nl])
        shared = len([BOS, USER] + enc.encode("Hi") + [ASSISTANT])
        # the second turn starts where the positions go back
        starts = [i for i in range(1, len(recs)) if recs[i][1] <= recs[i - 1][1]]
        turn2 = [(tok, pos) for tok, pos, _ in recs[starts[0]:]] if len(starts) == 1 else []
        c.check("run_interactive_evaluates_only_the_new_part",
                p.returncode == 0 and p.stdout.count(id_bytes[k]) == 2 and turn2 and
                [tok for tok, _ in turn2][:len(full) - shared] == full[shared:] and
                [pos for _, pos in turn2][:len(full) - shared] == list(range(shared, len(full))),
                "rc %d stdout %r turn 2 %s, want %s from position %d" % (p.returncode, p.stdout, turn2, full[shared:],
                                                                         shared))

        # --chat-template NAME: the built-in DeepSeek format gives the same prompt
        p = run([Q4K, "run", model, prompt_text, "--temp", "0", "-n", "1", "--quiet", "--chat-template", "deepseek",
                 "--logits-out", lo])
        got = [tok for tok, _, _ in read_logits(lo)[:len(want_prompt)]]
        c.check("run_chat_template_builtin_deepseek", p.returncode == 0 and got == want_prompt, "%s" % got)
        # --chat-template FILE, and a template outside the subset: one warning, then the format its markers name
        bad = os.path.join(tmp, "bad.jinja")
        with open(bad, "w", encoding="utf-8") as f:
            f.write("{% macro m() %}{% endmacro %}{{ bos_token }}<\uff5cUser\uff5c>{{ messages[0].content }}")
        # (--backend cpu: auto's fallback on a machine without a GPU is a warning of its own)
        p = run([Q4K, "run", model, prompt_text, "--temp", "0", "-n", "1", "--quiet", "--chat-template", bad,
                 "--logits-out", lo, "--backend", "cpu"])
        err = p.stderr.decode("utf-8", "replace")
        got = [tok for tok, _, _ in read_logits(lo)[:len(want_prompt)]]
        warns = [ln for ln in err.splitlines() if "warning" in ln]
        c.check("run_template_outside_subset_falls_back",
                p.returncode == 0 and len(warns) == 1 and "macro" in warns[0] and "deepseek" in warns[0] and
                got == want_prompt, "rc %d, warnings %r, prompt %s" % (p.returncode, warns, got))
        p = run([Q4K, "run", model, prompt_text, "-n", "1", "--chat-template", os.path.join(tmp, "nonexistent")])
        c.check("run_chat_template_unknown_refused", p.returncode != 0 and b"neither a built-in" in p.stderr,
                "rc %d %r" % (p.returncode, p.stderr[-200:]))
        # --pre: a forced pre-tokenizer is used (gpt2 splits "\n\n" before a word and "'S" apart; qwen2 does not)
        text = "a\n\nb IT'S"
        enc_gpt2 = tiktoken.Encoding("gpt2ish", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={})
        want = [BOS] + enc_gpt2.encode(text)
        for pre in ("gpt2", "qwen9"):
            p = run([Q4K, "run", model, text, "--raw", "--temp", "0", "-n", "1", "--quiet", "--pre", pre,
                     "--logits-out", lo])
            if pre == "gpt2":
                toks = [tok for tok, _, _ in read_logits(lo)]
                c.check("run_pre_forced_gpt2", p.returncode == 0 and enc.encode(text) != enc_gpt2.encode(text) and
                        len(toks) >= len(want) - 1 and toks == want[:len(toks)],
                        "rc %d tokens %s, want %s" % (p.returncode, toks, want))
            else:
                c.check("run_pre_unknown_refused", p.returncode == 1 and b"qwen9" in p.stderr and
                        b"deepseek-r1-qwen" in p.stderr, "rc %d %r" % (p.returncode, p.stderr[-300:]))
    return 1 if c.fails else 0


if __name__ == "__main__":
    sys.exit(main())
