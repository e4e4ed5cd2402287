#!/usr/bin/env python3
"""q4k's tokenizer against tiktoken (an implementation we did not write).

Both load the same Qwen ranks (tests/data/qwen.tiktoken); thousands of
random texts from a fixed seed (mixed scripts, emoji with ZWJ, digits of
many kinds, white space runs, contractions in any case, combining marks)
go through build/tool_tokenize and through tiktoken with the qwen2,
llama-bpe and gpt2 patterns, and with special tokens. The ids must be
identical. Prints "ok NAME" / "FAIL NAME: ..." / "skip NAME: why" lines.
"""
import base64
import os
import random
import struct
import subprocess
import sys
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TOOL = os.path.join(ROOT, "build", "tool_tokenize")

QWEN_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
            "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
            "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
            "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"]

NAME = "test_tokenizer_py"


def rng_range(r, lo, hi):
    return chr(r.randint(lo, hi))


def assigned(cp):
    """Assigned in this Python's Unicode (and so in the newer tables of
    tiktoken and q4k alike); not a surrogate."""
    cat = unicodedata.category(chr(cp))
    return cat not in ("Cn", "Cs")


def word(r, lo, hi, n_min=1, n_max=8):
    return "".join(rng_range(r, lo, hi) for _ in range(r.randint(n_min, n_max)))


EMOJI = ["\U0001F600", "\U0001F999", "\U0001F44D\U0001F3FD", "\u2764\uFE0F", "\U0001F468\u200D\U0001F469\u200D\U0001F467",
         "\U0001F3F3\uFE0F\u200D\U0001F308", "\U0001F1E9\U0001F1EA", "\u2705", "\U0001F9D1\U0001F3FF\u200D\U0001F4BB",
         "\U0001F408\u200D\u2B1B", "\u263A", "\U0001F525\U0001F525"]
SPACES = [" ", " ", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "\r", "\x0b", "\x0c", "\u00a0", "\u2003", "\u3000",
          "\u0085", "\u2028", "\u2029", "\u202f", "\u1680", "\u205f", "\u200b", "\x1c", " \n ", "\t\t", "\n \n"]
CONTRACTIONS = ["'s", "'S", "'t", "'T", "'re", "'RE", "'Re", "'ve", "'VE", "'vE", "'m", "'M", "'ll", "'LL", "'Ll",
                "'d", "'D", "'x", "'", "''", "\u2019s", "'\u017f", "'\u212a", "n't", "N'T"]
PUNCT = list("!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~") + ["...", "\u2026", "\u2014", "\u00ab", "\u00bb", "\u00bf",
                                                     "\u00a1", "\u3002", "\u3001", "\u3010", "\u3011", "\u2211",
                                                     "\u221e", "\u20ac", "\u00a3", "\u00a5", "->", "==", "<|", "|>",
                                                     "\u00d7", "\u00b7"]
LATIN_EXTRA = "\u00e9\u00e8\u00ea\u00f1\u00fc\u00f6\u00e4\u00df\u00f8\u00e5\u00e7\u0153\u00c9\u00c4\u0141\u0142\u00c6"


def piece(r, specials):
    k = r.randint(0, 27)
    if k <= 3:  # ASCII words, any case
        w = word(r, ord("a"), ord("z"), 1, 10)
        c = r.random()
        return w.upper() if c < 0.15 else w.capitalize() if c < 0.4 else w
    if k == 4:
        return "".join(r.choice("abcdefghijklmnop" + LATIN_EXTRA) for _ in range(r.randint(1, 8)))
    if k == 5:  # decomposed accents: letters and combining marks
        return "".join(r.choice("aeiouAEIOU") + (rng_range(r, 0x300, 0x36F) if r.random() < 0.6 else "")
                       for _ in range(r.randint(1, 5)))
    if k == 6:
        return word(r, 0x410, 0x44F, 1, 9)  # Cyrillic
    if k == 7:
        return word(r, 0x4E00, 0x9FFF, 1, 6)  # CJK
    if k == 8:
        return word(r, 0x3041, 0x3096, 1, 5) + word(r, 0x30A1, 0x30FA, 0, 4)  # kana
    if k == 9:
        return word(r, 0xAC00, 0xD7A3, 1, 4)  # Hangul
    if k == 10:  # Arabic with vowel marks and Arabic-Indic digits
        return "".join(rng_range(r, 0x621, 0x64A) + (rng_range(r, 0x64B, 0x652) if r.random() < 0.3 else "")
                       for _ in range(r.randint(1, 6))) + (word(r, 0x660, 0x669, 1, 3) if r.random() < 0.2 else "")
    if k == 11:  # Devanagari: letters, vowel signs (Mc/Mn), digits
        return "".join(rng_range(r, 0x905, 0x939) + (rng_range(r, 0x93E, 0x94D) if r.random() < 0.5 else "")
                       for _ in range(r.randint(1, 5))) + (word(r, 0x966, 0x96F, 1, 2) if r.random() < 0.2 else "")
    if k == 12:
        return r.choice(EMOJI) * r.randint(1, 2)
    if k in (13, 14):  # ASCII digit runs
        return "".join(r.choice("0123456789") for _ in range(r.randint(1, 12)))
    if k == 15:  # other numbers: fullwidth, superscripts, fractions, Roman numerals, Thai digits
        return "".join(r.choice(["\uff11", "\uff19", "\u00b2", "\u00b3", "\u00b9", "\u00bd", "\u00be", "\u2160",
                                 "\u216b", "\u2188", "\u0e53", "\u2460", "\U0001D7CE", "\u3007"])
                       for _ in range(r.randint(1, 4)))
    if k in (16, 17, 18):
        return "".join(r.choice(SPACES) for _ in range(r.randint(1, 4)))
    if k in (19, 20):
        return r.choice(CONTRACTIONS)
    if k in (21, 22):
        return "".join(r.choice(PUNCT) for _ in range(r.randint(1, 4)))
    if k == 23:  # any assigned code point of the BMP
        out = ""
        while len(out) < r.randint(1, 4):
            cp = r.randint(0x80, 0xFFFD)
            if assigned(cp):
                out += chr(cp)
        return out
    if k == 24:  # any assigned code point above the BMP
        out = ""
        while len(out) < r.randint(1, 3):
            cp = r.randint(0x10000, 0x3134A)
            if assigned(cp):
                out += chr(cp)
        return out
    if k == 25:  # ASCII control characters
        return "".join(chr(r.choice([0, 1, 7, 8, 0x1b, 0x1f, 0x7f])) for _ in range(r.randint(1, 3)))
    if k == 26 and specials:
        return r.choice(SPECIALS + ["<|im_start", "im_end|>", "<tool_call", "<|<|im_end|>|>"])
    return " " + word(r, ord("a"), ord("z"), 1, 7)


def make_texts(seed, n, specials=False):
    r = random.Random(seed)
    texts = []
    for i in range(n):
        if i % 50 == 49:  # now and then a long text
            count = r.randint(100, 600)
        else:
            count = r.randint(1, 30)
        texts.append("".join(piece(r, specials) for _ in range(count)))
    return texts


def run_tool(vocab, texts, args):
    data = b"".join(struct.pack("<I", len(b)) + b for b in (t.encode("utf-8") for t in texts))
    p = subprocess.run([TOOL] + args + [vocab], input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=600)
    if p.returncode != 0:
        raise RuntimeError("tool_tokenize %s exited %d: %s" % (" ".join(args), p.returncode,
                                                               p.stderr.decode("utf-8", "replace")[:500]))
    lines = p.stdout.decode("ascii").split("\n")
    if len(lines) != len(texts) + 1 or lines[-1] != "":
        raise RuntimeError("tool_tokenize gave %d lines for %d texts" % (len(lines) - 1, len(texts)))
    return [[int(x) for x in line.split()] for line in lines[:-1]]


def compare(name, texts, ours, theirs, ref="tiktoken"):
    n_tokens = sum(len(t) for t in theirs)
    for t, a, b in zip(texts, ours, theirs):
        if a != b:
            j = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
            lo = max(0, j - 3)
            print("FAIL %s: first differing text %s\n  ids from %d: q4k %s, %s %s"
                  % (name, ascii(t)[:400], lo, a[lo:j + 6], ref, b[lo:j + 6]))
            return False
    print("ok %s (%d texts, %d tokens)" % (name, len(texts), n_tokens))
    return True


def main():
    try:
        import tiktoken
    except ImportError:
        print("skip %s: python package tiktoken missing" % NAME)
        return 0
    data = os.path.join(HERE, "data")
    if not os.path.exists(TOOL):
        print("FAIL %s: %s missing (run make test-bins)" % (NAME, TOOL))
        return 1
    vocab = os.path.join(data, "qwen.tiktoken")
    ranks = {}
    with open(vocab, "rb") as f:
        for line in f:
            if line.strip():
                tok, rank = line.split()
                ranks[base64.b64decode(tok)] = int(rank)
    specials = {s: len(ranks) + i for i, s in enumerate(SPECIALS)}
    quick = os.environ.get("Q4K_TEST_QUICK", "0") not in ("", "0")
    n = 300 if quick else 3000

    failed = 0
    cases = [
        ("tiktoken_qwen2", QWEN_PATTERN, ["--pre", "qwen2"], make_texts(1, n), False),
        ("tiktoken_llama_bpe", LLAMA3_PATTERN, ["--pre", "llama-bpe"], make_texts(2, n // 3), False),
        ("tiktoken_gpt2", GPT2_PATTERN, ["--pre", "gpt2"], make_texts(3, n // 3), False),
        ("tiktoken_qwen2_special", QWEN_PATTERN, ["--pre", "qwen2", "--special"], make_texts(4, n // 3, True), True),
        ("tiktoken_qwen2_special_as_text", QWEN_PATTERN, ["--pre", "qwen2"], make_texts(5, n // 6, True), False),
    ]
    for name, pattern, args, texts, allow_special in cases:
        enc = tiktoken.Encoding(name="q4k_" + name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=specials)
        if allow_special:
            theirs = [enc.encode(t, allowed_special="all") for t in texts]
        else:
            theirs = [enc.encode_ordinary(t) for t in texts]
        try:
            ours = run_tool(vocab, texts, args)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            print("FAIL %s: %s" % (name, e))
            failed += 1
            continue
        if not compare(name, texts, ours, theirs):
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
