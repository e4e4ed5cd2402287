/* libFuzzer target: q4k_tokenize on arbitrary text with five tokenizers,
   built once: the Qwen vocabulary (tests/data/qwen.tiktoken, pre-tokenizer
   qwen2), a synthetic byte-level BPE vocabulary with the llama-bpe and gpt2
   pre-tokenizers, and two SentencePiece vocabularies (byte tokens and the
   dummy space prefix; no byte tokens, so unknown characters, and no prefix).
   Input: byte 0 picks the tokenizer (low 3 bits, mod 5), bit 3 sets
   Q4K_TOKENIZE_SPECIAL, bit 4 Q4K_TOKENIZE_ADD_BOS; the rest is the text.
   Checks: counting, filling and overflowing agree; every id is in range;
   byte-level BPE gives the text back byte for byte; q4k_utf8_stream passes
   the tokens' bytes through unchanged. */
#include "fuzz.h"

#define GT "tokenizer"
#define FUZZ_N_TOK 5
#define FUZZ_SP "\xE2\x96\x81" /* U+2581, SentencePiece's space */

static q4k_tokenizer *fuzz_tok[FUZZ_N_TOK];

static q4k_tokenizer *fuzz_bpe(const q4k_vocab_strings *v, const char *const *extra, const int32_t *extra_types, int n_extra,
                               const char *pre) {
    const char **toks = (const char **)malloc((size_t)(v->n_tokens + n_extra) * sizeof *toks);
    int32_t *types = (int32_t *)malloc((size_t)(v->n_tokens + n_extra) * sizeof *types);
    q4k_vocab_desc d;
    q4k_tokenizer *t = NULL;
    q4k_error err;
    int64_t i;
    for (i = 0; i < v->n_tokens; i++) {
        toks[i] = v->tokens[i];
        types[i] = Q4K_TOKEN_NORMAL;
    }
    for (i = 0; i < n_extra; i++) {
        toks[v->n_tokens + i] = extra[i];
        types[v->n_tokens + i] = extra_types[i];
    }
    memset(&d, 0, sizeof d);
    d.model = "gpt2";
    d.n_tokens = v->n_tokens + n_extra;
    d.tokens = toks;
    d.token_types = types;
    d.n_merges = v->n_merges;
    d.merges = (const char *const *)v->merges;
    d.pre = pre;
    d.set_ids = 1;
    d.bos_id = (int32_t)v->n_tokens;
    d.eos_id = (int32_t)v->n_tokens + 1;
    d.eot_id = d.pad_id = d.unk_id = -1;
    d.add_bos = 1;
    FUZZ_CHECK(GT, q4k_tokenizer_create(&d, &t, &err) == Q4K_OK, "bpe vocabulary (%s): %s", pre, err.msg);
    free(toks);
    free(types);
    return t;
}

static char *fuzz_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = (char *)malloc(n);
    return d ? (char *)memcpy(d, s, n) : NULL;
}

/* SentencePiece: <unk> <s> </s>, optionally the 256 byte tokens, then the
   words of the synthetic BPE vocabulary with their spaces as U+2581 (scored
   by rank), a few multi-byte ones, and two special tokens */
static q4k_tokenizer *fuzz_spm(const q4k_tokenizer *words, int bytes, int space_prefix) {
    static const char *const more[] = {"\xC3\xA9", FUZZ_SP "\xC3\xA9t\xC3\xA9", "\xE6\x97\xA5\xE6\x9C\xAC", FUZZ_SP FUZZ_SP, FUZZ_SP};
    int64_t nw = q4k_tokenizer_n_vocab(words), cap = nw + 300, n = 0, i;
    char **strs = (char **)calloc((size_t)cap, sizeof *strs);
    int32_t *types = (int32_t *)malloc((size_t)cap * sizeof *types);
    float *scores = (float *)malloc((size_t)cap * sizeof *scores);
    q4k_vocab_desc d;
    q4k_tokenizer *t = NULL;
    q4k_error err;
#define FUZZ_ADD(s, ty, sc) (strs[n] = fuzz_strdup(s), types[n] = (ty), scores[n] = (sc), n++)
    FUZZ_ADD("<unk>", Q4K_TOKEN_UNKNOWN, 0.0f);
    FUZZ_ADD("<s>", Q4K_TOKEN_CONTROL, 0.0f);
    FUZZ_ADD("</s>", Q4K_TOKEN_CONTROL, 0.0f);
    for (i = 0; bytes && i < 256; i++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", (unsigned)i);
        FUZZ_ADD(name, Q4K_TOKEN_BYTE, 0.0f);
    }
    for (i = 0; i < (int64_t)(sizeof more / sizeof more[0]); i++) FUZZ_ADD(more[i], Q4K_TOKEN_NORMAL, -2.0f - (float)i);
    FUZZ_ADD("<tool>", Q4K_TOKEN_USER_DEFINED, 0.0f);
    FUZZ_ADD("<|im_end|>", Q4K_TOKEN_CONTROL, 0.0f);
    for (i = 256; i < nw; i++) {
        size_t len, j, k = 0;
        const char *b = q4k_token_bytes(words, (int32_t)i, &len);
        char buf[256];
        if (!b || !len || len > 60 || q4k_tokenizer_token_type(words, (int32_t)i) != Q4K_TOKEN_NORMAL) continue;
        for (j = 0; j < len; j++) {
            if (b[j] == ' ') { memcpy(buf + k, FUZZ_SP, 3); k += 3; }
            else buf[k++] = b[j];
        }
        buf[k] = 0;
        if (strlen(buf) != k) continue;
        FUZZ_ADD(buf, Q4K_TOKEN_NORMAL, -10.0f - (float)i);
    }
#undef FUZZ_ADD
    memset(&d, 0, sizeof d);
    d.model = "llama";
    d.n_tokens = n;
    d.tokens = (const char *const *)strs;
    d.token_types = types;
    d.scores = scores;
    d.add_space_prefix = space_prefix;
    d.set_ids = 1;
    d.bos_id = 1;
    d.eos_id = 2;
    d.eot_id = d.pad_id = -1;
    d.unk_id = 0;
    d.add_bos = 1;
    FUZZ_CHECK(GT, q4k_tokenizer_create(&d, &t, &err) == Q4K_OK, "spm vocabulary: %s", err.msg);
    for (i = 0; i < n; i++) free(strs[i]);
    free(strs);
    free(types);
    free(scores);
    return t;
}

static void fuzz_tokenizer_init(void) {
    static const char *const qwen_specials[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>"};
    static const int32_t qwen_types[] = {Q4K_TOKEN_CONTROL, Q4K_TOKEN_CONTROL, Q4K_TOKEN_CONTROL, Q4K_TOKEN_USER_DEFINED,
                                         Q4K_TOKEN_USER_DEFINED};
    static const char *const synth_specials[] = {"<s>", "</s>", "<|im_end|>", "<tool>"};
    static const int32_t synth_types[] = {Q4K_TOKEN_CONTROL, Q4K_TOKEN_CONTROL, Q4K_TOKEN_CONTROL, Q4K_TOKEN_USER_DEFINED};
    const char *dir = getenv("Q4K_FUZZ_DATA");
    char path[1024];
    q4k_vocab_strings v;
    q4k_error err;
    snprintf(path, sizeof path, "%s/qwen.tiktoken", dir && *dir ? dir : "tests/data");
    FUZZ_CHECK(GT, q4k_vocab_from_tiktoken(path, &v, &err) == Q4K_OK, "%s (run from the repository root or set Q4K_FUZZ_DATA)",
               err.msg);
    fuzz_tok[0] = fuzz_bpe(&v, qwen_specials, qwen_types, 5, "qwen2");
    q4k_vocab_strings_free(&v);
    FUZZ_CHECK(GT, q4k_vocab_synthetic(2048, &v, &err) == Q4K_OK, "synthetic vocabulary: %s", err.msg);
    fuzz_tok[1] = fuzz_bpe(&v, synth_specials, synth_types, 4, "llama-bpe");
    fuzz_tok[2] = fuzz_bpe(&v, synth_specials, synth_types, 4, "gpt2");
    q4k_vocab_strings_free(&v);
    fuzz_tok[3] = fuzz_spm(fuzz_tok[1], 1, 1);
    fuzz_tok[4] = fuzz_spm(fuzz_tok[1], 0, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const q4k_tokenizer *t;
    const char *text = (const char *)data + 1;
    size_t len = size ? size - 1 : 0, got = 0;
    unsigned flags;
    int sel;
    int64_t n = -1, n2 = -1, i, nv;
    int32_t *ids;
    q4k_error err;
    q4k_result r;
    if (!fuzz_tok[0]) fuzz_tokenizer_init();
    if (!size) return 0;
    sel = (data[0] & 7) % FUZZ_N_TOK;
    flags = (data[0] & 8 ? Q4K_TOKENIZE_SPECIAL : 0u) | (data[0] & 16 ? Q4K_TOKENIZE_ADD_BOS : 0u);
    t = fuzz_tok[sel];
    nv = q4k_tokenizer_n_vocab(t);
    r = q4k_tokenize(t, text, len, flags, NULL, 0, &n, &err);
    FUZZ_CHECK(GT, r == Q4K_OK && n >= 0, "tokenizer %d: counting gives %s: %s", sel, q4k_result_name(r), err.msg);
    ids = (int32_t *)malloc((size_t)(n + 1) * sizeof *ids);
    r = q4k_tokenize(t, text, len, flags, ids, n, &n2, &err);
    FUZZ_CHECK(GT, r == Q4K_OK && n2 == n, "tokenizer %d: %lld ids counted, %lld written (%s)", sel, (long long)n,
               (long long)n2, q4k_result_name(r));
    if (n > 0) {
        int64_t n3 = -1;
        int32_t last = ids[n - 1];
        r = q4k_tokenize(t, text, len, flags, ids, n - 1, &n3, &err);
        FUZZ_CHECK(GT, r == Q4K_ERR_OVERFLOW && n3 == n && ids[n - 1] == last, "tokenizer %d: cap %lld of %lld gives %s, n %lld",
                   sel, (long long)(n - 1), (long long)n, q4k_result_name(r), (long long)n3);
    }
    {
        /* the streaming printer gives the tokens' bytes back, whole characters first */
        q4k_utf8_stream st;
        size_t in = 0, outn = 0, w;
        char *bytes = (char *)malloc(len * 4 + 64), *shown = (char *)malloc(len * 4 + 64);
        q4k_utf8_stream_init(&st);
        for (i = 0; i < n; i++) {
            size_t tl = 0;
            const char *b;
            FUZZ_CHECK(GT, ids[i] >= 0 && ids[i] < nv, "tokenizer %d: id %d out of range", sel, (int)ids[i]);
            b = q4k_token_bytes(t, ids[i], &tl);
            FUZZ_CHECK(GT, b != NULL && in + tl <= len * 4 + 60, "tokenizer %d: id %d has no bytes (or too many)", sel, (int)ids[i]);
            memcpy(bytes + in, b, tl);
            in += tl;
            FUZZ_CHECK(GT, q4k_utf8_stream_push(&st, b, tl, shown + outn, tl + 3, &w) == tl, "tokenizer %d: stream took less", sel);
            outn += w;
        }
        FUZZ_CHECK(GT, q4k_utf8_stream_flush(&st, shown + outn, 3, &w) == 0, "tokenizer %d: stream holds bytes", sel);
        outn += w;
        FUZZ_CHECK(GT, outn == in && !memcmp(bytes, shown, in), "tokenizer %d: the stream gave %zu of %zu bytes", sel, outn, in);
        free(bytes);
        free(shown);
    }
    if (sel < 3) {
        /* byte-level BPE loses nothing: the tokens' texts are the text */
        i = 0;
        if ((flags & Q4K_TOKENIZE_ADD_BOS) && q4k_tokenizer_add_bos(t)) {
            FUZZ_CHECK(GT, n > 0 && ids[0] == q4k_tokenizer_bos(t), "tokenizer %d: no BOS first", sel);
            i = 1;
        }
        for (; i < n; i++) {
            size_t tl;
            const char *s = q4k_token_text(t, ids[i], &tl);
            FUZZ_CHECK(GT, got + tl <= len && !memcmp(text + got, s, tl), "tokenizer %d: token %lld (id %d) does not match the text at byte %zu",
                       sel, (long long)i, (int)ids[i], got);
            got += tl;
        }
        FUZZ_CHECK(GT, got == len, "tokenizer %d: the tokens spell %zu of %zu bytes", sel, got, len);
    }
    free(ids);
    return 0;
}
