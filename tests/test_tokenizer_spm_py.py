#!/usr/bin/env python3
"""q4k's SentencePiece tokenizer against sentencepiece (the reference
implementation, which we did not write).

From a fixed seed this generates a training text (Latin, Cyrillic, Greek,
a few CJK characters, digits, punctuation, white space runs, emoji), trains
a small BPE model with byte fallback, writes its vocabulary (pieces, scores,
types) into a GGUF file with the gguf package, and tokenizes thousands of
random texts -- with characters the model never saw, so that byte fallback
is used -- through build/tool_tokenize and through sentencepiece. The ids
must be identical:
  spm_plain    sp.encode(text) against q4k without flags
  spm_bos      [bos] + sp.encode(text) against q4k --bos
  spm_special  texts holding <s> and </s>: q4k --special against
               sentencepiece on each piece of text between them (each piece
               gets SentencePiece's space in front, as llama.cpp does it)
Then `q4k run` on a tiny random llama model with this vocabulary must use
the Llama 2 chat template with one BOS (q4k_run_llama2_prompt), and --raw
must send BOS + the text (q4k_run_llama2_raw): the prompt token counts
printed must equal sentencepiece's.
Prints "ok NAME" / "FAIL NAME: ..." / "skip NAME: why" lines.
"""
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

from test_tokenizer_py import compare, run_tool, TOOL, ROOT

NAME = "test_tokenizer_spm_py"

LATIN = "abcdefghijklmnopqrstuvwxyz"
WORDS = ["the", "of", "and", "to", "in", "is", "was", "that", "for", "on", "with", "token", "piece", "model",
         "sentence", "merge", "score", "byte", "fallback", "llama", "mistral", "über", "café", "naïve", "straße",
         "Москва", "привет", "мир", "слово", "Ελλάδα", "λόγος", "日本", "中文", "東京", "hello", "world", "don't",
         "it's", "C++", "e-mail", "x86_64", "HTTP/1.1"]
SEEN_EMOJI = ["\U0001F600", "\U0001F44D", "\u2764\uFE0F", "\U0001F680"]
PUNCT = list(".,;:!?\"'()[]{}<>-_/\\@#$%^&*+=~`|") + ["...", "--", "\u2014", "\u00ab", "\u00bb"]
SPACES = [" ", " ", " ", "  ", "   ", "\t", " \t ", "    "]


def train_piece(r):
    k = r.random()
    if k < 0.55:
        w = r.choice(WORDS)
        c = r.random()
        return w.capitalize() if c < 0.2 else w.upper() if c < 0.25 else w
    if k < 0.7:
        return "".join(r.choice(LATIN) for _ in range(r.randint(1, 9)))
    if k < 0.8:
        return "".join(r.choice("0123456789") for _ in range(r.randint(1, 6)))
    if k < 0.9:
        return r.choice(PUNCT)
    if k < 0.95:
        return r.choice(SEEN_EMOJI)
    return r.choice(SPACES)


def train_lines(seed, n):
    r = random.Random(seed)
    lines = []
    for _ in range(n):
        parts = []
        for _ in range(r.randint(3, 25)):
            parts.append(train_piece(r))
            parts.append(" " if r.random() < 0.8 else r.choice(SPACES))
        lines.append("".join(parts).rstrip("\n"))
    return lines


def unseen(r):
    """characters the training text never had"""
    k = r.randint(0, 6)
    if k == 0:
        return "".join(chr(r.randint(0x4E00, 0x9FFF)) for _ in range(r.randint(1, 4)))  # CJK
    if k == 1:
        return "".join(chr(r.randint(0xAC00, 0xD7A3)) for _ in range(r.randint(1, 3)))  # Hangul
    if k == 2:
        return "".join(chr(r.randint(0x0621, 0x064A)) for _ in range(r.randint(1, 5)))  # Arabic
    if k == 3:
        return r.choice(["\U0001F9D1\U0001F3FF\u200D\U0001F4BB", "\U0001F1E9\U0001F1EA", "\U0001F408\u200D\u2B1B",
                         "\U0001F999", "\U0001D7CE"])
    if k == 4:
        return r.choice(["\n", "\n\n", "\r\n", "\x0b", "\u00a0", "\u3000", "\u2028", "\x01", "\x7f"])
    if k == 5:
        return "\u2581" * r.randint(1, 2)  # SentencePiece's own space sign, written in the text
    return "".join(chr(r.randint(0x0900, 0x097F)) for _ in range(r.randint(1, 4)))  # Devanagari


def test_texts(seed, n, specials=False):
    r = random.Random(seed)
    texts = ["", " ", "  ", "a", " a", "a ", "\n", "<s>", "<unk>", "\u2581"]
    while len(texts) < n:
        count = r.randint(100, 400) if len(texts) % 50 == 49 else r.randint(1, 30)
        parts = []
        for _ in range(count):
            k = r.random()
            if k < 0.6:
                parts.append(train_piece(r))
            elif k < 0.75:
                parts.append(unseen(r))
            elif specials and k < 0.82:
                parts.append(r.choice(["<s>", "</s>", "</s><s>", "<s", "s>"]))
            else:
                parts.append(r.choice(SPACES))
        texts.append("".join(parts))
    return texts


def split_specials(text, specials):
    """text -> list of (is_special, str), specials matched leftmost, longest first"""
    out, i, frag = [], 0, 0
    order = sorted(specials, key=len, reverse=True)
    while i < len(text):
        hit = next((s for s in order if text.startswith(s, i)), None)
        if hit is None:
            i += 1
            continue
        if i > frag:
            out.append((False, text[frag:i]))
        out.append((True, hit))
        i += len(hit)
        frag = i
    if frag < len(text):
        out.append((False, text[frag:]))
    return out


def add_vocab(w, pieces, scores, types, sp):
    """the SentencePiece vocabulary keys, as GGUF converters write them"""
    w.add_tokenizer_model("llama")
    w.add_token_list(pieces)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_unk_token_id(sp.unk_id())


def write_llama_model(gguf, np, path, pieces, scores, types, sp):
    """a one-layer llama model with random float weights and this vocabulary"""
    n_embd, n_head, n_head_kv, n_ff, n_vocab = 32, 4, 2, 64, len(pieces)
    hd = n_embd // n_head
    r = np.random.default_rng(5)
    w = gguf.GGUFWriter(path, "llama")
    w.add_block_count(1)
    w.add_context_length(256)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-6)
    add_vocab(w, pieces, scores, types, sp)

    def t(name, *shape):  # numpy shape: (rows, row length)
        w.add_tensor(name, (r.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32))
    t("token_embd.weight", n_vocab, n_embd)
    w.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    t("output.weight", n_vocab, n_embd)
    w.add_tensor("blk.0.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
    t("blk.0.attn_q.weight", n_head * hd, n_embd)
    t("blk.0.attn_k.weight", n_head_kv * hd, n_embd)
    t("blk.0.attn_v.weight", n_head_kv * hd, n_embd)
    t("blk.0.attn_output.weight", n_embd, n_head * hd)
    w.add_tensor("blk.0.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
    t("blk.0.ffn_gate.weight", n_ff, n_embd)
    t("blk.0.ffn_up.weight", n_ff, n_embd)
    t("blk.0.ffn_down.weight", n_embd, n_ff)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def q4k_run_prompt_tokens(model, prompt, args):
    """the prompt token count `q4k run` reports, and its stderr"""
    q4k = os.path.join(ROOT, "q4k")
    p = subprocess.run([q4k, "run", model, prompt, "-n", "1", "--temp", "0", "-t", "1"] + args,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    err = p.stderr.decode("utf-8", "replace")
    m = re.search(r"prompt eval time = .*/ *(\d+) tokens", err)
    return (int(m.group(1)) if p.returncode == 0 and m else None), err


def main():
    try:
        import sentencepiece as spm
    except ImportError:
        print("skip %s: python package sentencepiece missing (pip install sentencepiece)" % NAME)
        return 0
    try:
        import gguf
    except ImportError:
        print("skip %s: python package gguf missing" % NAME)
        return 0
    if not os.path.exists(TOOL):
        print("FAIL %s: %s missing (run make test-bins)" % (NAME, TOOL))
        return 1
    quick = os.environ.get("Q4K_TEST_QUICK", "0") not in ("", "0")
    n = 300 if quick else 3000
    tmp = tempfile.mkdtemp(prefix="q4k_spm_")
    try:
        corpus = os.path.join(tmp, "corpus.txt")
        with open(corpus, "w", encoding="utf-8") as f:
            f.write("\n".join(train_lines(7, 4000)) + "\n")
        prefix = os.path.join(tmp, "m")
        spm.SentencePieceTrainer.train(
            input=corpus, model_prefix=prefix, model_type="bpe", vocab_size=1200, byte_fallback=True,
            normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=True,
            split_digits=True, allow_whitespace_only_pieces=True, character_coverage=1.0, num_threads=2,
            minloglevel=2)
        sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
        pieces, scores, types = [], [], []
        for i in range(sp.get_piece_size()):
            pieces.append(sp.id_to_piece(i))
            scores.append(sp.get_score(i))
            types.append(2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 5 if sp.is_unused(i)
                         else 6 if sp.is_byte(i) else 1)
        n_byte = types.count(6)
        if n_byte != 256:
            print("FAIL %s: the trained model has %d byte pieces, not 256" % (NAME, n_byte))
            return 1
        path = os.path.join(tmp, "spm.gguf")
        w = gguf.GGUFWriter(path, "llama")
        add_vocab(w, pieces, scores, types, sp)
        w.add_add_bos_token(True)
        w.add_add_space_prefix(True)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()

        failed = 0
        plain = test_texts(11, n)
        cases = [("spm_plain", plain, [], [sp.encode(t) for t in plain])]
        bos = test_texts(12, n // 3)
        cases.append(("spm_bos", bos, ["--bos"], [[sp.bos_id()] + sp.encode(t) for t in bos]))
        special = test_texts(13, n // 3, specials=True)
        ids = {"<s>": sp.bos_id(), "</s>": sp.eos_id()}
        want = []
        for t in special:
            out = []
            for is_special, s in split_specials(t, list(ids)):
                out += [ids[s]] if is_special else sp.encode(s)
            want.append(out)
        cases.append(("spm_special", special, ["--special"], want))
        n_fallback = sum(1 for t in plain for i in sp.encode(t) if types[i] == 6)
        for name, texts, args, theirs in cases:
            try:
                ours = run_tool(path, texts, args)
            except Exception as e:  # a crash or a timeout of the tool
                print("FAIL %s: %s" % (name, e))
                failed += 1
                continue
            if not compare(name, texts, ours, theirs, "sentencepiece"):
                failed += 1
        try:
            import numpy as np
        except ImportError:
            print("skip q4k_run_llama2_prompt: python package numpy missing")
            np = None
        if np is not None:
            model = os.path.join(tmp, "llama.gguf")
            write_llama_model(gguf, np, model, pieces, scores, types, sp)
            user = "Hello world, ça va? 東京"
            for name, args, text in [("q4k_run_llama2_prompt", [], "[INST] %s [/INST]" % user),
                                     ("q4k_run_llama2_raw", ["--raw"], user)]:
                want = 1 + len(sp.encode(text))
                got, err = q4k_run_prompt_tokens(model, user, args)
                if got != want or "no known chat template" in err:
                    print("FAIL %s: q4k run reports %s prompt tokens, sentencepiece gives BOS + %d\n%s"
                          % (name, got, want - 1, err[-1500:]))
                    failed += 1
                else:
                    print("ok %s (%d tokens)" % (name, got))
        if n_fallback < 100:
            print("FAIL spm_byte_fallback_used: only %d byte tokens in the expected ids" % n_fallback)
            failed += 1
        else:
            print("ok spm_byte_fallback_used (%d byte tokens)" % n_fallback)
        return 1 if failed else 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
