/* Tokenizer: the Qwen vocabulary (tests/data/qwen.tiktoken) against the
   reference vectors of llama.cpp's qwen2 test, a rank-based BPE written
   here, hand-split pre-tokens, special tokens, streaming UTF-8, errors. */
#define Q4K_IMPLEMENTATION
#include "q4k.h"
#include "t.h"

#include <sys/stat.h>
#include <unistd.h>


/* ---- the Qwen vocabulary ------------------------------------------------- */

#define QWEN_N_ORDINARY 151643
static const char *const qwen_specials[] = {
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>",
    "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"};
#define QWEN_N_SPECIAL ((int)(sizeof qwen_specials / sizeof qwen_specials[0]))

/* the tests run from the repository root (tests/run.sh changes there) */
static const char *const data_dir = "tests/data";

typedef struct qwen_vocab {
    q4k_vocab_strings v;
    const char **tokens; /* ordinary + special */
    int32_t *types;
    int64_t n;
} qwen_vocab;

static qwen_vocab qv;
static q4k_tokenizer *qtok; /* pre qwen2 */
static char qwen_why[240];

static void qwen_desc(q4k_vocab_desc *d, const char *pre) {
    memset(d, 0, sizeof *d);
    d->n_tokens = qv.n;
    d->tokens = qv.tokens;
    d->token_types = qv.types;
    d->n_merges = qv.v.n_merges;
    d->merges = (const char *const *)qv.v.merges;
    d->pre = pre;
    d->set_ids = 1;
    d->bos_id = 151643; /* as Qwen2.5 GGUF files have it */
    d->eos_id = 151645;
    d->eot_id = -1;
    d->pad_id = 151643;
}

/* Load once; 0 (with qwen_why) when the data is missing. */
static int qwen_load(void) {
    static int state; /* 0 not tried, 1 ok, -1 missing */
    char path[1200];
    q4k_error err;
    q4k_vocab_desc d;
    int64_t i;
    if (state) return state > 0;
    state = -1;
    snprintf(path, sizeof path, "%s/qwen.tiktoken", data_dir);
    if (q4k_vocab_from_tiktoken(path, &qv.v, &err) != Q4K_OK) {
        snprintf(qwen_why, sizeof qwen_why, "%.220s", err.msg);
        state = -2;
        return 0;
    }
    qv.n = qv.v.n_tokens + QWEN_N_SPECIAL;
    qv.tokens = (const char **)malloc((size_t)qv.n * sizeof *qv.tokens);
    qv.types = (int32_t *)malloc((size_t)qv.n * sizeof *qv.types);
    for (i = 0; i < qv.v.n_tokens; i++) {
        qv.tokens[i] = qv.v.tokens[i];
        qv.types[i] = Q4K_TOKEN_NORMAL;
    }
    for (i = 0; i < QWEN_N_SPECIAL; i++) {
        qv.tokens[qv.v.n_tokens + i] = qwen_specials[i];
        qv.types[qv.v.n_tokens + i] = Q4K_TOKEN_CONTROL;
    }
    qwen_desc(&d, "qwen2");
    if (q4k_tokenizer_create(&d, &qtok, &err) != Q4K_OK) {
        snprintf(qwen_why, sizeof qwen_why, "create: %.200s", err.msg);
        state = -2;
        return 0;
    }
    state = 1;
    return 1;
}

static void qwen_unload(void) {
    q4k_tokenizer_free(qtok);
    q4k_vocab_strings_free(&qv.v);
    free(qv.tokens);
    free(qv.types);
}

/* the vocabulary is part of the repository: failing to load it is a failure */
#define NEED_QWEN()                                                            \
    do {                                                                       \
        if (!qwen_load()) {                                                    \
            T_CHECK(0, "%s", qwen_why);                                        \
            return;                                                            \
        }                                                                      \
    } while (0)

/* tokenize into a malloc'd array */
static int32_t *tok_all(const q4k_tokenizer *t, const char *s, size_t n, unsigned flags, int64_t *count) {
    int64_t need = 0;
    int32_t *ids;
    q4k_error err;
    if (q4k_tokenize(t, s, n, flags, NULL, 0, &need, &err) != Q4K_OK) {
        printf("  tokenize failed: %s\n", err.msg);
        *count = -1;
        return NULL;
    }
    ids = (int32_t *)malloc((size_t)(need + 1) * sizeof *ids);
    if (q4k_tokenize(t, s, n, flags, ids, need, count, &err) != Q4K_OK || *count != need) {
        printf("  tokenize failed the second time: %s\n", err.msg);
        *count = -1;
    }
    return ids;
}

/* concatenated q4k_token_text of ids into buf (malloc'd) */
static char *detok(const q4k_tokenizer *t, const int32_t *ids, int64_t n, size_t *len) {
    size_t cap = 64, o = 0;
    char *buf = (char *)malloc(cap);
    int64_t i;
    for (i = 0; i < n; i++) {
        size_t l;
        const char *s = q4k_token_text(t, ids[i], &l);
        if (!s) { l = 0; s = ""; }
        if (o + l + 1 > cap) {
            while (o + l + 1 > cap) cap *= 2;
            buf = (char *)realloc(buf, cap);
        }
        memcpy(buf + o, s, l);
        o += l;
    }
    buf[o] = 0;
    *len = o;
    return buf;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = (char *)malloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) { fclose(f); free(buf); return NULL; }
    fclose(f);
    buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

/* ---- Unicode table and UTF-8 -------------------------------------------- */

static void test_unicode_classes(void) {
    static const struct { uint32_t cp; int cls; } cases[] = {
        {'A', Q4K__CC_L}, {'z', Q4K__CC_L}, {'5', Q4K__CC_N}, {' ', Q4K__CC_S}, {'\t', Q4K__CC_S},
        {'\n', Q4K__CC_S}, {0x0B, Q4K__CC_S}, {0x1C, Q4K__CC_OTHER}, {'_', Q4K__CC_OTHER}, {'\'', Q4K__CC_OTHER},
        {0x85, Q4K__CC_S}, {0xA0, Q4K__CC_S}, {0xAA, Q4K__CC_L} /* ª Lo */, {0xB2, Q4K__CC_N} /* ² No */,
        {0xBD, Q4K__CC_N} /* ½ */, {0xD7, Q4K__CC_OTHER} /* × Sm */, {0xE9, Q4K__CC_L}, {0x17F, Q4K__CC_L},
        {0x2B0, Q4K__CC_L} /* ʰ Lm */, {0x301, Q4K__CC_OTHER} /* combining acute Mn */, {0x1C5, Q4K__CC_L} /* Lt */,
        {0x663, Q4K__CC_N} /* Arabic-Indic 3 */, {0x93F, Q4K__CC_OTHER} /* Devanagari vowel sign Mc */,
        {0x905, Q4K__CC_L}, {0x1680, Q4K__CC_S}, {0x2000, Q4K__CC_S}, {0x200A, Q4K__CC_S}, {0x200B, Q4K__CC_OTHER},
        {0x200D, Q4K__CC_OTHER}, {0x2028, Q4K__CC_S}, {0x2029, Q4K__CC_S}, {0x202F, Q4K__CC_S}, {0x205F, Q4K__CC_S},
        {0x2160, Q4K__CC_N} /* Ⅰ Nl */, {0x3000, Q4K__CC_S}, {0x3007, Q4K__CC_N} /* 〇 Nl */,
        {0x3400, Q4K__CC_L} /* CJK ext A, a First> entry */, {0x4DBF, Q4K__CC_L} /* its Last> */,
        {0x4E00, Q4K__CC_L}, {0x9FFF, Q4K__CC_L}, {0xAC00, Q4K__CC_L}, {0xD7A3, Q4K__CC_L} /* Hangul range */,
        {0xD7A4, Q4K__CC_OTHER}, {0xD800, Q4K__CC_OTHER}, {0xE000, Q4K__CC_OTHER}, {0xFEFF, Q4K__CC_OTHER},
        {0xFF10, Q4K__CC_N}, {0xFF21, Q4K__CC_L}, {0x10400, Q4K__CC_L}, {0x1D7CE, Q4K__CC_N},
        {0x1F600, Q4K__CC_OTHER}, {0x1F3FB, Q4K__CC_OTHER}, {0x20000, Q4K__CC_L}, {0x2A6DF, Q4K__CC_L},
        {0x2A6E0, Q4K__CC_OTHER}, {0xE0001, Q4K__CC_OTHER}, {0x10FFFF, Q4K__CC_OTHER}, {0x110000, Q4K__CC_OTHER}};
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++)
        T_CHECK(q4k__ucd_class(cases[i].cp) == cases[i].cls, "U+%04lX: class %d, want %d", (unsigned long)cases[i].cp,
                q4k__ucd_class(cases[i].cp), cases[i].cls);
    T_CHECK(q4k__ucd_runs[0] >> 2 == 0, "the table starts at U+0000");
    for (i = 1; i < Q4K__UCD_RUNS; i++) {
        T_CHECK((q4k__ucd_runs[i] >> 2) > (q4k__ucd_runs[i - 1] >> 2), "run %d not sorted", (int)i);
        T_CHECK((q4k__ucd_runs[i] & 3) != (q4k__ucd_runs[i - 1] & 3), "runs %d and %d have one class", (int)i - 1,
                (int)i);
    }
    /* the ASCII shortcut agrees with the table */
    for (i = 0; i < 0x80; i++) {
        size_t k = 0;
        while (k + 1 < Q4K__UCD_RUNS && (q4k__ucd_runs[k + 1] >> 2) <= i) k++;
        T_CHECK((int)(q4k__ucd_runs[k] & 3) == q4k__ucd_class((uint32_t)i), "ASCII %d", (int)i);
    }
}

static void test_utf8_decode(void) {
    static const struct { const char *s; size_t n; uint32_t len, cp; } cases[] = {
        {"A", 1, 1, 'A'}, {"\xC2\x80", 2, 2, 0x80}, {"\xDF\xBF", 2, 2, 0x7FF}, {"\xE0\xA0\x80", 3, 3, 0x800},
        {"\xEF\xBF\xBF", 3, 3, 0xFFFF}, {"\xF0\x90\x80\x80", 4, 4, 0x10000}, {"\xF4\x8F\xBF\xBF", 4, 4, 0x10FFFF},
        {"\xC0\x80", 2, 0, 0}, {"\xC1\xBF", 2, 0, 0}, {"\xE0\x9F\xBF", 3, 0, 0}, {"\xED\xA0\x80", 3, 0, 0},
        {"\xF0\x8F\xBF\xBF", 4, 0, 0}, {"\xF4\x90\x80\x80", 4, 0, 0}, {"\xF5\x80\x80\x80", 4, 0, 0},
        {"\x80", 1, 0, 0}, {"\xE2\x82", 2, 0, 0}, {"\xE2\x82\x41", 3, 0, 0}, {"\xFF", 1, 0, 0}};
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint32_t cp = 0, l = q4k__utf8_decode((const unsigned char *)cases[i].s, cases[i].n, &cp);
        T_CHECK(l == cases[i].len && (!l || cp == cases[i].cp), "case %d: len %u cp %lx", (int)i, (unsigned)l,
                (unsigned long)cp);
    }
}

/* Split a byte stream into characters the way the stream must see them:
   a valid sequence, or one byte. is_start[k] = 1 where a character starts. */
static void char_starts(const unsigned char *s, size_t n, unsigned char *is_start) {
    size_t i = 0;
    memset(is_start, 0, n + 1);
    while (i < n) {
        uint32_t cp, l = q4k__utf8_decode(s + i, n - i, &cp);
        is_start[i] = 1;
        i += l ? l : 1;
    }
    is_start[n] = 1;
}

/* random bytes that are mostly UTF-8: valid characters of every length,
   truncated sequences, stray continuation bytes, invalid leads */
static size_t random_utf8ish(t_rng *r, unsigned char *buf, size_t max) {
    size_t n = 0;
    while (n + 4 <= max) {
        unsigned k = (unsigned)(t_rng_next(r) % 10);
        uint32_t cp;
        if (k < 3) {
            buf[n++] = (unsigned char)(0x20 + t_rng_next(r) % 0x5F);
            continue;
        }
        if (k == 9) { /* a random byte */
            buf[n++] = (unsigned char)t_rng_next(r);
            continue;
        }
        cp = k < 5 ? 0x80 + (uint32_t)(t_rng_next(r) % 0x780)
             : k < 7 ? 0x800 + (uint32_t)(t_rng_next(r) % 0xF800)
                     : 0x10000 + (uint32_t)(t_rng_next(r) % 0x100000);
        if (cp >= 0xD800 && cp < 0xE000) cp = 0xE000;
        {
            unsigned char tmp[4];
            size_t l;
            if (cp < 0x800) { tmp[0] = (unsigned char)(0xC0 | (cp >> 6)); tmp[1] = (unsigned char)(0x80 | (cp & 0x3F)); l = 2; }
            else if (cp < 0x10000) {
                tmp[0] = (unsigned char)(0xE0 | (cp >> 12)); tmp[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
                tmp[2] = (unsigned char)(0x80 | (cp & 0x3F)); l = 3;
            } else {
                tmp[0] = (unsigned char)(0xF0 | (cp >> 18)); tmp[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
                tmp[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F)); tmp[3] = (unsigned char)(0x80 | (cp & 0x3F)); l = 4;
            }
            if (t_rng_next(r) % 8 == 0) l = 1 + (size_t)(t_rng_next(r) % l); /* truncated */
            memcpy(buf + n, tmp, l);
            n += l;
        }
    }
    return n;
}

static void test_utf8_stream_cases(void) {
    q4k_utf8_stream s;
    char out[16];
    size_t len, used;
    q4k_utf8_stream_init(&s);
    /* "€" = E2 82 AC fed one byte at a time */
    used = q4k_utf8_stream_push(&s, "\xE2", 1, out, sizeof out, &len);
    T_CHECK(used == 1 && len == 0, "E2: used %d len %d", (int)used, (int)len);
    used = q4k_utf8_stream_push(&s, "\x82", 1, out, sizeof out, &len);
    T_CHECK(used == 1 && len == 0, "82: used %d len %d", (int)used, (int)len);
    used = q4k_utf8_stream_push(&s, "\xAC!", 2, out, sizeof out, &len);
    T_CHECK(used == 2 && len == 4 && !memcmp(out, "\xE2\x82\xAC!", 4), "AC!: used %d len %d", (int)used, (int)len);
    /* a prefix that cannot complete goes out at once, byte by byte */
    used = q4k_utf8_stream_push(&s, "\xF0\x9F", 2, out, sizeof out, &len);
    T_CHECK(used == 2 && len == 0, "F0 9F held: len %d", (int)len);
    used = q4k_utf8_stream_push(&s, "A", 1, out, sizeof out, &len);
    T_CHECK(len == 3 && !memcmp(out, "\xF0\x9F" "A", 3), "F0 9F A: len %d", (int)len);
    /* an invalid second byte (E0 80 is overlong) is not held */
    used = q4k_utf8_stream_push(&s, "\xE0\x80", 2, out, sizeof out, &len);
    T_CHECK(len == 2 && !memcmp(out, "\xE0\x80", 2) && s.n_held == 0, "E0 80: len %d held %d", (int)len,
            (int)s.n_held);
    /* flush gives the held bytes back */
    used = q4k_utf8_stream_push(&s, "\xE4\xBD", 2, out, sizeof out, &len);
    T_CHECK(len == 0, "E4 BD held");
    T_CHECK(q4k_utf8_stream_flush(&s, out, 1, &len) == 1 && len == 1 && (unsigned char)out[0] == 0xE4,
            "flush with room for 1");
    T_CHECK(q4k_utf8_stream_flush(&s, out, sizeof out, &len) == 0 && len == 1 && (unsigned char)out[0] == 0xBD,
            "flush the rest");
    T_CHECK(q4k_utf8_stream_flush(&s, out, sizeof out, &len) == 0 && len == 0, "flush when empty");
    /* a small output buffer: progress at cap 4, everything eventually */
    {
        const char *in = "\xF0\x9F\xA6\x99\xE2\x82\xAC" "ab";
        size_t n = strlen(in), o = 0, got = 0;
        char all[32];
        q4k_utf8_stream_init(&s);
        while (got < n) {
            used = q4k_utf8_stream_push(&s, in + got, n - got, out, 4, &len);
            T_CHECK(used > 0 && len <= 4, "no progress at %d", (int)got);
            if (!used) break;
            memcpy(all + o, out, len);
            o += len;
            got += used;
        }
        T_CHECK(o == n && !memcmp(all, in, n), "small buffer: %d bytes out", (int)o);
    }
}

static void test_utf8_stream_random(void) {
    t_rng r = {0x5eed1234ULL};
    int iter, n_iter = t_quick() ? 200 : 2000;
    for (iter = 0; iter < n_iter; iter++) {
        unsigned char in[256], outall[512], starts[257];
        char out[300];
        size_t n = random_utf8ish(&r, in, sizeof in), pos = 0, o = 0, len;
        q4k_utf8_stream s;
        int bad = 0;
        char_starts(in, n, starts);
        q4k_utf8_stream_init(&s);
        while (pos < n) {
            size_t chunk = 1 + (size_t)(t_rng_next(&r) % 6), used;
            if (chunk > n - pos) chunk = n - pos;
            used = q4k_utf8_stream_push(&s, in + pos, chunk, out, sizeof out, &len);
            if (used != chunk) bad = 1;
            memcpy(outall + o, out, len);
            o += len;
            /* every output so far ends on a character boundary of the whole stream */
            if (!starts[o]) bad = 1;
            pos += chunk;
        }
        q4k_utf8_stream_flush(&s, out, sizeof out, &len);
        memcpy(outall + o, out, len);
        o += len;
        T_CHECK(!bad, "iteration %d: partial character emitted or input not taken", iter);
        T_CHECK(o == n && !memcmp(outall, in, n), "iteration %d: output differs from input", iter);
        if (t__failed_now) break;
    }
}

/* ---- pre-tokenizer -------------------------------------------------------- */

/* pre-tokens joined by '|' */
static void split_pretok(const char *s, int pre, char *out, size_t cap) {
    size_t n = strlen(s), i = 0, o = 0;
    while (i < n && o + 2 < cap) {
        size_t e = q4k__pretok_next((const unsigned char *)s, n, i, pre);
        if (e <= i || e > n) {
            snprintf(out + o, cap - o, "<no progress at %d>", (int)i);
            return;
        }
        if (o) out[o++] = '|';
        while (i < e && o + 1 < cap) out[o++] = s[i++];
    }
    out[o] = 0;
}

static void test_pretokenizer(void) {
    static const struct { int pre; const char *in, *want; } cases[] = {
        {Q4K__PRE_QWEN2, "Hello world", "Hello| world"},
        {Q4K__PRE_QWEN2, "   Hello", "  | Hello"},
        {Q4K__PRE_QWEN2, "a  \n\n  b", "a|  \n\n| | b"},
        {Q4K__PRE_QWEN2, "I'LL've 'Re 'x", "I|'LL|'ve| '|Re| '|x"},
        {Q4K__PRE_QWEN2, "x'\xC5\xBFx", "x|'\xC5\xBF|x"},
        {Q4K__PRE_QWEN2, "12345", "1|2|3|4|5"},
        {Q4K__PRE_LLAMA3, "12345", "123|45"},
        {Q4K__PRE_LLAMA3, "1234567 x", "123|456|7| x"},
        {Q4K__PRE_GPT2, "12345", "12345"},
        {Q4K__PRE_GPT2, "a 123", "a| 123"},
        {Q4K__PRE_QWEN2, "a 123", "a| |1|2|3"},
        {Q4K__PRE_QWEN2, "!!!\n\nabc", "!!!\n\n|abc"},
        {Q4K__PRE_GPT2, "!!!\n\nabc", "!!!|\n|\n|abc"},
        {Q4K__PRE_QWEN2, "\tfoo", "\tfoo"},
        {Q4K__PRE_GPT2, "\tfoo", "\t|foo"},
        {Q4K__PRE_GPT2, "I'LL", "I|'|LL"},
        {Q4K__PRE_QWEN2, ".cpp", ".cpp"},
        {Q4K__PRE_QWEN2, " .cpp", " .|cpp"},
        {Q4K__PRE_QWEN2, "a\xFF" "b", "a|\xFF" "b"},
        {Q4K__PRE_QWEN2, "\xE2\x82x", "\xE2\x82|x"},
        {Q4K__PRE_QWEN2, "a\xC2\xA0\xC2\xA0" "b", "a|\xC2\xA0|\xC2\xA0" "b"},
        {Q4K__PRE_QWEN2, "a \r\n  ", "a| \r\n|  "},
        {Q4K__PRE_QWEN2, "x  ", "x|  "},
        {Q4K__PRE_QWEN2, "x \x01", "x| \x01"},
        {Q4K__PRE_QWEN2, "x\r\ny", "x|\r\n|y"},
        {Q4K__PRE_QWEN2, "x;\r\n\r\ny", "x|;\r\n\r\n|y"},
        {Q4K__PRE_QWEN2, "\xC3\xA9t\xC3\xA9 2\xC2\xBD", "\xC3\xA9t\xC3\xA9| |2|\xC2\xBD"},
        {Q4K__PRE_QWEN2, "e\xCC\x81" "e", "e|\xCC\x81" "e"},
        {Q4K__PRE_QWEN2, "\xE0\xA4\xB9\xE0\xA4\xBF\xE0\xA4\x82", "\xE0\xA4\xB9|\xE0\xA4\xBF\xE0\xA4\x82"},
    };
    size_t i;
    char got[256];
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        split_pretok(cases[i].in, cases[i].pre, got, sizeof got);
        T_CHECK(!strcmp(got, cases[i].want), "case %d (pre %d): got [%s] want [%s]", (int)i, cases[i].pre, got,
                cases[i].want);
    }
}

/* ---- the Qwen vocabulary --------------------------------------------------- */

static void test_vocab_from_tiktoken(void) {
    int64_t i, n_pairs_bad = 0;
    NEED_QWEN();
    T_CHECK(qv.v.n_tokens == QWEN_N_ORDINARY, "%lld tokens", (long long)qv.v.n_tokens);
    /* 151643 tokens, 256 of them single bytes: every other one is one merge */
    T_CHECK(qv.v.n_merges == QWEN_N_ORDINARY - 256, "%lld merges", (long long)qv.v.n_merges);
    T_CHECK(!strcmp(qv.v.tokens[0], "!") && !strcmp(qv.v.tokens[220], "\xC4\xA0"), "tokens 0 and 220 (' ' = Ġ)");
    T_CHECK(q4k_tokenizer_n_vocab(qtok) == QWEN_N_ORDINARY + QWEN_N_SPECIAL, "n_vocab");
    /* each merge joins two tokens into one */
    for (i = 0; i < qv.v.n_merges && i < 2000; i++) {
        const char *m = qv.v.merges[i], *sp = strchr(m + 1, ' ');
        if (!sp || strchr(sp + 1, ' ')) n_pairs_bad++;
    }
    T_CHECK(n_pairs_bad == 0, "%lld merges not 'a b'", (long long)n_pairs_bad);
    T_CHECK(!strcmp(qv.v.merges[0], "\xC4\xA0 \xC4\xA0"), "first merge '%s' (Ġ Ġ)", qv.v.merges[0]);
    {
        size_t l;
        const char *s = q4k_token_bytes(qtok, 220, &l);
        T_CHECK(l == 1 && s[0] == ' ', "token 220 is a space");
        s = q4k_token_bytes(qtok, 198, &l);
        T_CHECK(l == 1 && s[0] == '\n', "token 198 is a newline");
        T_CHECK(q4k_tokenizer_find(qtok, " world") == 1879, "' world' = %d", (int)q4k_tokenizer_find(qtok, " world"));
        T_CHECK(q4k_tokenizer_max_token_len(qtok) >= 16, "max token length %d", (int)q4k_tokenizer_max_token_len(qtok));
    }
}

static void test_vectors(void) {
    char path[1200];
    char *inp, *outp, *p, *q;
    size_t n_inp, n_outp;
    static const char sep[] = "\n__ggml_vocab_test__\n";
    int k = 0, n_match = 0;
    NEED_QWEN();
    snprintf(path, sizeof path, "%s/vocab-tests/qwen2.inp", data_dir);
    inp = read_file(path, &n_inp);
    snprintf(path, sizeof path, "%s/vocab-tests/qwen2.out", data_dir);
    outp = read_file(path, &n_outp);
    if (!inp || !outp) {
        free(inp);
        free(outp);
        T_CHECK(0, "cannot read vocab-tests/qwen2.inp/.out in %s", data_dir);
        return;
    }
    p = inp;
    q = outp;
    while (p < inp + n_inp) {
        char *e = strstr(p, sep), *line_end;
        int64_t n, j, nw = 0;
        int32_t *ids, want[1024];
        if (!e) break;
        line_end = strchr(q, '\n');
        if (!line_end) { T_CHECK(0, "qwen2.out has too few lines (text %d)", k); break; }
        *line_end = 0;
        {
            char *c = q, *end;
            long v;
            for (;;) {
                v = strtol(c, &end, 10);
                if (end == c) break;
                want[nw++] = (int32_t)v;
                c = end;
            }
        }
        ids = tok_all(qtok, p, (size_t)(e - p), 0, &n);
        {
            int same = n == nw;
            for (j = 0; same && j < n; j++) same = ids[j] == want[j];
            if (same) n_match++;
            else {
                printf("  text %d [%.*s]: got", k, (int)(e - p), p);
                for (j = 0; j < n && j < 40; j++) printf(" %d", (int)ids[j]);
                printf("\n  want %s\n", q);
                T_CHECK(0, "vector %d differs", k);
            }
        }
        free(ids);
        q = line_end + 1;
        p = e + strlen(sep);
        k++;
    }
    T_CHECK(k == 46 && n_match == k, "%d of %d vectors match (the files hold 46)", n_match, k);
    T_CHECK(q == outp + n_outp, "qwen2.out has lines left over");
    printf("  %d/%d qwen2 vectors match\n", n_match, k);
    free(inp);
    free(outp);
}

/* A plain rank-based BPE (tiktoken's rule: join the adjacent pair whose
   joined bytes have the lowest rank, leftmost first), O(n^2), to check the
   library's merge-table BPE with a heap. */
static int32_t ref_rank(const unsigned char *s, size_t n) {
    char tmp[64];
    int32_t id;
    if (n > 32) return -1; /* no Qwen token is that long in the tests' words */
    memcpy(tmp, s, n);
    tmp[n] = 0;
    if (memchr(s, 0, n)) return -1;
    id = q4k_tokenizer_find(qtok, tmp);
    return id >= 0 && id < QWEN_N_ORDINARY ? id : -1;
}

static int64_t ref_bpe(const unsigned char *w, size_t n, int32_t *out) {
    size_t b[512], np = n, k, best;
    int64_t o = 0;
    for (k = 0; k <= n; k++) b[k] = k;
    while (np > 1) {
        int32_t br = -1;
        best = 0;
        for (k = 0; k + 1 < np; k++) {
            int32_t r = ref_rank(w + b[k], b[k + 2] - b[k]);
            if (r >= 0 && (br < 0 || r < br)) { br = r; best = k; }
        }
        if (br < 0) break;
        for (k = best + 1; k < np; k++) b[k] = b[k + 1];
        np--;
    }
    for (k = 0; k < np; k++) {
        int32_t r;
        if (b[k + 1] - b[k] == 1) {
            char c[2];
            c[0] = (char)w[b[k]];
            c[1] = 0;
            r = w[b[k]] ? q4k_tokenizer_find(qtok, c) : qtok->byte_id[0];
        } else {
            r = ref_rank(w + b[k], b[k + 1] - b[k]);
        }
        out[o++] = r;
    }
    return o;
}

static void test_bpe_vs_reference(void) {
    t_rng r = {0xb9eULL};
    int iter, n_iter = t_quick() ? 300 : 3000, n_words = 0;
    NEED_QWEN();
    for (iter = 0; iter < n_iter; iter++) {
        unsigned char text[200];
        size_t n = random_utf8ish(&r, text, 120), i = 0;
        int64_t n_ids;
        int32_t *ids = tok_all(qtok, (const char *)text, n, 0, &n_ids), want[512];
        int64_t nw = 0, j;
        /* the same pre-tokens, merged by the reference */
        while (i < n) {
            size_t e = q4k__pretok_next(text, n, i, Q4K__PRE_QWEN2);
            nw += ref_bpe(text + i, e - i, want + nw);
            i = e;
            n_words++;
        }
        {
            int same = n_ids == nw;
            for (j = 0; same && j < nw; j++) same = ids[j] == want[j];
            T_CHECK(same, "text %d: library and reference BPE differ (%lld vs %lld ids)", iter, (long long)n_ids,
                    (long long)nw);
        }
        free(ids);
        if (t__failed_now) break;
    }
    printf("  %d texts, %d words\n", n_iter, n_words);
}

static void test_roundtrip_random(void) {
    t_rng r = {0x70c0ULL};
    int iter, n_iter = t_quick() ? 200 : 2000;
    NEED_QWEN();
    for (iter = 0; iter < n_iter; iter++) {
        unsigned char text[600];
        size_t n = random_utf8ish(&r, text, 1 + (size_t)(t_rng_next(&r) % 590)), back_len;
        int64_t n_ids, j;
        int32_t *ids = tok_all(qtok, (const char *)text, n, 0, &n_ids);
        char *back = detok(qtok, ids, n_ids, &back_len);
        int ok_ids = 1;
        for (j = 0; j < n_ids; j++) ok_ids &= ids[j] >= 0 && ids[j] < QWEN_N_ORDINARY;
        T_CHECK(ok_ids, "text %d: a special or invalid id without Q4K_TOKENIZE_SPECIAL", iter);
        T_CHECK(back_len == n && !memcmp(back, text, n), "text %d: round trip differs (%d -> %d bytes)", iter, (int)n,
                (int)back_len);
        free(ids);
        free(back);
        if (t__failed_now) break;
    }
    /* a long word and a long run of spaces (heap BPE on thousands of bytes) */
    {
        size_t n = 20000, back_len, i;
        char *s = (char *)malloc(n);
        int64_t n_ids;
        int32_t *ids;
        char *back;
        for (i = 0; i < n; i++) s[i] = i < n / 2 ? (char)('a' + (t_rng_next(&r) % 26)) : ' ';
        ids = tok_all(qtok, s, n, 0, &n_ids);
        back = detok(qtok, ids, n_ids, &back_len);
        T_CHECK(back_len == n && !memcmp(back, s, n), "long text round trip");
        T_CHECK(n_ids > 100 && n_ids < 10000, "long text: %lld ids", (long long)n_ids);
        free(s);
        free(ids);
        free(back);
    }
}

static void test_special_tokens(void) {
    const char *chat = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n";
    int64_t n, n2, j;
    int32_t *ids, *plain;
    size_t l;
    const char *s;
    NEED_QWEN();
    T_CHECK(q4k_tokenizer_find(qtok, "<|im_start|>") == 151644, "find <|im_start|>");
    T_CHECK(q4k_tokenizer_find(qtok, "<|file_sep|>") == 151664, "find <|file_sep|>");
    T_CHECK(q4k_tokenizer_find(qtok, "<|im_start|") == -1, "find of a prefix");
    T_CHECK(q4k_tokenizer_is_control(qtok, 151645) && !q4k_tokenizer_is_control(qtok, 220), "is_control");
    T_CHECK(q4k_tokenizer_is_eog(qtok, 151645) && q4k_tokenizer_is_eog(qtok, 151643) && !q4k_tokenizer_is_eog(qtok, 151644),
            "is_eog");
    T_CHECK(q4k_tokenizer_bos(qtok) == 151643 && q4k_tokenizer_eos(qtok) == 151645 && q4k_tokenizer_eot(qtok) == -1 &&
                q4k_tokenizer_pad(qtok) == 151643,
            "special ids");
    s = q4k_token_bytes(qtok, 151645, &l);
    T_CHECK(s && l == 0 && !*s, "token_bytes of <|im_end|> is empty");
    s = q4k_token_text(qtok, 151645, &l);
    T_CHECK(s && l == 10 && !strcmp(s, "<|im_end|>"), "token_text of <|im_end|>");
    T_CHECK(!q4k_token_bytes(qtok, -1, &l) && !q4k_token_bytes(qtok, 151665, &l), "ids out of range give NULL");

    ids = tok_all(qtok, chat, strlen(chat), Q4K_TOKENIZE_SPECIAL, &n);
    T_CHECK(n > 6 && ids[0] == 151644, "chat starts with <|im_start|>");
    {
        int n_start = 0, n_end = 0;
        for (j = 0; j < n; j++) {
            n_start += ids[j] == 151644;
            n_end += ids[j] == 151645;
        }
        T_CHECK(n_start == 2 && n_end == 1, "%d <|im_start|>, %d <|im_end|>", n_start, n_end);
    }
    /* between specials the text is tokenized on its own: "user\nhi" */
    plain = tok_all(qtok, "user\nhi", 7, 0, &n2);
    T_CHECK(n >= n2 + 2, "counts");
    for (j = 0; j < n2 && j + 1 < n; j++) T_CHECK(ids[1 + j] == plain[j], "id %d after <|im_start|>", (int)j);
    T_CHECK(ids[1 + n2] == 151645, "<|im_end|> follows 'user\\nhi'");
    free(ids);
    free(plain);
    /* without the flag the markers are plain text */
    ids = tok_all(qtok, chat, strlen(chat), 0, &n);
    for (j = 0; j < n; j++) T_CHECK(ids[j] < QWEN_N_ORDINARY, "special id %d without the flag", (int)ids[j]);
    {
        size_t bl;
        char *back = detok(qtok, ids, n, &bl);
        T_CHECK(bl == strlen(chat) && !memcmp(back, chat, bl), "plain round trip");
        free(back);
    }
    free(ids);
    /* a special token right at the end and back to back */
    ids = tok_all(qtok, "<|im_end|><|im_end|>x<|endoftext|>", 34, Q4K_TOKENIZE_SPECIAL, &n);
    T_CHECK(n == 4 && ids[0] == 151645 && ids[1] == 151645 && ids[3] == 151643, "back to back: %d ids", (int)n);
    free(ids);
    /* BOS: Qwen does not ask for it */
    ids = tok_all(qtok, "hi", 2, Q4K_TOKENIZE_ADD_BOS, &n);
    T_CHECK(n == 1 && ids[0] != 151643, "Qwen adds no BOS");
    free(ids);
}

static void test_capacity(void) {
    int32_t ids[4];
    int64_t n = -5;
    q4k_error err;
    const char *text = "Hello world, this is a test";
    NEED_QWEN();
    T_CHECK(q4k_tokenize(qtok, text, strlen(text), 0, NULL, 0, &n, &err) == Q4K_OK && n == 7, "count only: %d", (int)n);
    T_CHECK(q4k_tokenize(qtok, text, strlen(text), 0, ids, 4, &n, &err) == Q4K_ERR_OVERFLOW && n == 7,
            "too small: n = %d", (int)n);
    T_CHECK(ids[0] == 9707 && ids[1] == 1879, "first ids written: %d %d", (int)ids[0], (int)ids[1]);
    T_CHECK(strstr(err.msg, "7") != NULL, "message: %s", err.msg);
    T_CHECK(q4k_tokenize(qtok, "", 0, 0, ids, 4, &n, &err) == Q4K_OK && n == 0, "empty text");
    T_CHECK(q4k_tokenize(qtok, NULL, 0, 0, ids, 4, &n, &err) == Q4K_OK && n == 0, "NULL empty text");
    T_CHECK(q4k_tokenize(qtok, NULL, 3, 0, ids, 4, &n, &err) == Q4K_ERR_INVALID_ARG, "NULL text");
    T_CHECK(q4k_tokenize(qtok, text, 3, 0, NULL, 4, &n, &err) == Q4K_ERR_INVALID_ARG, "NULL out, cap 4");
}

/* llama-bpe over the Qwen vocabulary (which has no multi-digit tokens, so
   digit groups show only in test_small_vocab_pretokenizers): BOS handling
   and the whole-word lookup before BPE */
static void test_llama_bpe_qwen_vocab(void) {
    int64_t n, n2, j;
    int32_t *ids, *ids2;
    q4k_vocab_desc d;
    q4k_tokenizer *t;
    q4k_error err;
    const char *text = "Hello world, 1234567 o'clock I'M here \xF0\x9F\xA6\x99!!";
    NEED_QWEN();
    qwen_desc(&d, "llama-bpe");
    d.add_bos = 1;
    T_CHECK(q4k_tokenizer_create(&d, &t, &err) == Q4K_OK, "create llama-bpe: %s", err.msg);
    if (t__failed_now) return;
    T_CHECK(!strcmp(q4k_tokenizer_pre(t), "llama-bpe") && q4k_tokenizer_add_bos(t), "pre name, add_bos");
    ids = tok_all(t, "12345678", 8, 0, &n);
    T_CHECK(n == 8, "8 digits, no digit merges in this vocabulary: %d ids", (int)n);
    free(ids);
    ids = tok_all(t, text, strlen(text), Q4K_TOKENIZE_ADD_BOS, &n);
    ids2 = tok_all(qtok, text, strlen(text), 0, &n2);
    T_CHECK(n == n2 + 1 && ids[0] == 151643, "BOS first: %d vs %d ids", (int)n, (int)n2);
    for (j = 0; j < n2 && j + 1 < n; j++) T_CHECK(ids[j + 1] == ids2[j], "id %d: %d vs %d", (int)j, ids[j + 1], ids2[j]);
    free(ids);
    free(ids2);
    q4k_tokenizer_free(t);
}

/* ---- small hand-made vocabularies ----------------------------------------- */

/* The 256 byte tokens in byte-level form, plus extra tokens. */
typedef struct small_vocab {
    char strs[300][32];
    const char *tokens[300];
    int32_t types[300];
    int64_t n;
} small_vocab;

static void small_init(small_vocab *v) {
    int b;
    memset(v, 0, sizeof *v);
    for (b = 0; b < 256; b++) {
        unsigned char c = (unsigned char)b;
        size_t l = q4k__bytelevel_encode(&c, 1, v->strs[b]);
        v->strs[b][l] = 0;
        v->tokens[b] = v->strs[b];
        v->types[b] = Q4K_TOKEN_NORMAL;
    }
    v->n = 256;
}

static int32_t small_add(small_vocab *v, const char *s, int type) {
    snprintf(v->strs[v->n], sizeof v->strs[0], "%s", s);
    v->tokens[v->n] = v->strs[v->n];
    v->types[v->n] = type;
    return (int32_t)v->n++;
}

static void small_desc(const small_vocab *v, q4k_vocab_desc *d, const char *const *merges, int64_t n_merges,
                       const char *pre) {
    memset(d, 0, sizeof *d);
    d->n_tokens = v->n;
    d->tokens = v->tokens;
    d->token_types = v->types;
    d->merges = merges;
    d->n_merges = n_merges;
    d->pre = pre;
}

static void test_small_vocab_pretokenizers(void) {
    small_vocab v;
    static const char *const merges[] = {"1 2", "12 3", "6 7", "4 5", "45 6", "7 8"};
    int32_t t12, t123, t67, t45, t456, t78;
    q4k_vocab_desc d;
    q4k_tokenizer *t;
    q4k_error err;
    int64_t n;
    int32_t *ids;
    small_init(&v);
    t12 = small_add(&v, "12", 1);
    t123 = small_add(&v, "123", 1);
    t67 = small_add(&v, "67", 1);
    t45 = small_add(&v, "45", 1);
    t456 = small_add(&v, "456", 1);
    t78 = small_add(&v, "78", 1);
    (void)t12;
    small_desc(&v, &d, merges, 6, "llama-bpe");
    T_CHECK(q4k_tokenizer_create(&d, &t, &err) == Q4K_OK, "%s", err.msg);
    if (t__failed_now) return;
    ids = tok_all(t, "12345678", 8, 0, &n);
    T_CHECK(n == 3 && ids[0] == t123 && ids[1] == t456 && ids[2] == t78, "llama-bpe: %d ids", (int)n);
    free(ids);
    q4k_tokenizer_free(t);
    /* one pre-token under gpt2: "6 7" outranks "45 6" */
    small_desc(&v, &d, merges, 6, NULL);
    T_CHECK(q4k_tokenizer_create(&d, &t, &err) == Q4K_OK, "%s", err.msg);
    if (t__failed_now) return;
    T_CHECK(!strcmp(q4k_tokenizer_pre(t), "gpt2"), "NULL pre is gpt2");
    ids = tok_all(t, "12345678", 8, 0, &n);
    T_CHECK(n == 4 && ids[0] == t123 && ids[1] == t45 && ids[2] == t67 && ids[3] == '8', "gpt2: %d ids", (int)n);
    free(ids);
    q4k_tokenizer_free(t);
}

static void test_user_defined_tokens(void) {
    small_vocab v;
    q4k_vocab_desc d;
    q4k_tokenizer *t;
    q4k_error err;
    int64_t n;
    int32_t *ids, ud, ctl, longer;
    size_t l;
    small_init(&v);
    ud = small_add(&v, "<tool>", Q4K_TOKEN_USER_DEFINED);
    ctl = small_add(&v, "<|ctl|>", Q4K_TOKEN_CONTROL);
    longer = small_add(&v, "<|ctl|>!", Q4K_TOKEN_CONTROL);
    small_desc(&v, &d, NULL, 0, "qwen2");
    T_CHECK(q4k_tokenizer_create(&d, &t, &err) == Q4K_OK, "%s", err.msg);
    if (t__failed_now) return;
    ids = tok_all(t, "a<tool>b<|ctl|>", 15, 0, &n);
    T_CHECK(n == 10 && ids[1] == ud && ids[2] == 'b', "user-defined tokens match without the flag: %d ids", (int)n);
    free(ids);
    ids = tok_all(t, "<|ctl|>!<|ctl|>", 15, Q4K_TOKENIZE_SPECIAL, &n);
    T_CHECK(n == 2 && ids[0] == longer && ids[1] == ctl, "longest special token first: %d ids", (int)n);
    free(ids);
    T_CHECK(q4k_token_bytes(t, ud, &l) && l == 6, "user-defined tokens print");
    T_CHECK(!q4k_tokenizer_is_eog(t, ctl), "<|ctl|> does not end generation");
    q4k_tokenizer_free(t);
}

/* merges that would make a control, unknown or unused token out of plain
   text are left out; ordinary merges still apply */
static void test_merges_never_make_special_tokens(void) {
    small_vocab v;
    static const char *const merges[] = {"a b", "c d", "e f", "g h"};
    q4k_vocab_desc d;
    q4k_tokenizer *t;
    q4k_error err;
    int64_t n;
    int32_t *ids, ab, cd, ef, gh;
    small_init(&v);
    ab = small_add(&v, "ab", Q4K_TOKEN_CONTROL);
    cd = small_add(&v, "cd", Q4K_TOKEN_NORMAL);
    ef = small_add(&v, "ef", Q4K_TOKEN_UNUSED);
    gh = small_add(&v, "gh", Q4K_TOKEN_UNKNOWN);
    small_desc(&v, &d, merges, 4, "qwen2");
    d.set_ids = 1;
    d.bos_id = d.eot_id = d.pad_id = -1;
    d.eos_id = ab; /* the worst case: the merge would end generation */
    T_CHECK(q4k_tokenizer_create(&d, &t, &err) == Q4K_OK, "%s", err.msg);
    if (t__failed_now) return;
    ids = tok_all(t, "abcdefgh", 8, 0, &n);
    T_CHECK(n == 7 && ids[0] == 'a' && ids[1] == 'b' && ids[2] == cd && ids[3] == 'e' && ids[5] == 'g',
            "plain text gave %d ids, first %d", (int)n, n ? (int)ids[0] : -1);
    T_CHECK(n < 1 || ids[0] != ab, "plain text became the control token");
    free(ids);
    ids = tok_all(t, "ab", 2, Q4K_TOKENIZE_SPECIAL, &n);
    T_CHECK(n == 1 && ids[0] == ab, "the control token still matches as special text: %d ids", (int)n);
    free(ids);
    (void)ef;
    (void)gh;
    q4k_tokenizer_free(t);
}

static void test_synthetic_vocab(void) {
    q4k_vocab_strings v;
    q4k_vocab_desc d;
    q4k_tokenizer *t;
    q4k_error err;
    int64_t n, j;
    int32_t *ids;
    size_t bl;
    char *back;
    const char *text = " hello world  and zebras\n";
    T_CHECK(q4k_vocab_synthetic(2026, &v, &err) == Q4K_OK, "%s", err.msg);
    if (t__failed_now) return;
    T_CHECK(v.n_tokens == 2026 && v.n_merges == 2026 - 256, "%lld tokens %lld merges", (long long)v.n_tokens,
            (long long)v.n_merges);
    T_CHECK(!strcmp(v.tokens[256], "\xC4\xA0" "a") && !strcmp(v.merges[0], "\xC4\xA0 a"), "token 256 = 'Ġa'");
    T_CHECK(!strcmp(v.tokens[282], "aa") && !strcmp(v.merges[26], "a a"), "token 282 = 'aa'");
    memset(&d, 0, sizeof d);
    d.n_tokens = v.n_tokens;
    d.tokens = (const char *const *)v.tokens;
    d.n_merges = v.n_merges;
    d.merges = (const char *const *)v.merges;
    d.pre = "qwen2";
    T_CHECK(q4k_tokenizer_create(&d, &t, &err) == Q4K_OK, "%s", err.msg);
    if (!t__failed_now) {
        ids = tok_all(t, text, strlen(text), 0, &n);
        back = detok(t, ids, n, &bl);
        T_CHECK(bl == strlen(text) && !memcmp(back, text, bl), "round trip");
        T_CHECK(4 * n < 3 * (int64_t)strlen(text), "%lld ids: merges are used", (long long)n);
        for (j = 0; j < n; j++) T_CHECK(ids[j] >= 0 && ids[j] < 2026, "id %d", (int)ids[j]);
        free(ids);
        free(back);
        ids = tok_all(t, "ab", 2, 0, &n);
        T_CHECK(n == 1 && ids[0] == 283 && q4k_tokenizer_find(t, "ab") == 283, "'ab' is token 283");
        free(ids);
        q4k_tokenizer_free(t);
    }
    q4k_vocab_strings_free(&v);
    T_CHECK(v.tokens == NULL && v.n_tokens == 0, "free zeroes");
    T_CHECK(q4k_vocab_synthetic(100, &v, &err) == Q4K_ERR_INVALID_ARG, "too small");
    /* a big one: 7B-sized */
    T_CHECK(q4k_vocab_synthetic(152064 - 22, &v, &err) == Q4K_OK && v.n_merges == 152064 - 22 - 256, "7B size");
    q4k_vocab_strings_free(&v);
}

typedef struct warn_log {
    int n;
    char last[512];
} warn_log;

static void count_warnings(q4k_log_level level, const char *msg, void *user) {
    warn_log *w = (warn_log *)user;
    if (level != Q4K_LOG_WARN) return;
    w->n++;
    snprintf(w->last, sizeof w->last, "%s", msg);
}

/* Every tokenizer.ggml.pre name q4k accepts, with the pattern llama.cpp's
   llama-vocab.cpp gives it (written out here, not read from q4k's table),
   and whether a whole pre-token that is a token skips BPE. */
static const struct {
    const char *name, *family;
    int ignore_merges;
} pre_names[] = {
    {"qwen2", "qwen2", 0}, {"deepseek-r1-qwen", "qwen2", 0}, {"megrez", "qwen2", 0}, {"kormo", "qwen2", 0},
    {"stablelm2", "qwen2", 0}, {"hunyuan", "qwen2", 0}, {"grok-2", "qwen2", 0},
    {"llama-bpe", "llama-bpe", 1}, {"llama3", "llama-bpe", 1}, {"llama-v3", "llama-bpe", 1}, {"falcon3", "llama-bpe", 1},
    {"falcon-h1", "llama-bpe", 1}, {"pixtral", "llama-bpe", 1}, {"midm-2.0", "llama-bpe", 1}, {"lfm2", "llama-bpe", 1},
    {"smaug-bpe", "llama-bpe", 0}, {"dbrx", "llama-bpe", 0},
    {"gpt2", "gpt2", 0}, {"gpt-2", "gpt2", 0}, {"phi-2", "gpt2", 0}, {"jina-es", "gpt2", 0}, {"jina-de", "gpt2", 0},
    {"jina-v2-es", "gpt2", 0}, {"jina-v2-de", "gpt2", 0}, {"gigachat", "gpt2", 0}, {"a.x-4.0", "gpt2", 0},
    {"mellum", "gpt2", 0}, {"exaone4", "gpt2", 0}, {"mpt", "gpt2", 0}, {"olmo", "gpt2", 0}, {"jais", "gpt2", 0},
    {"trillion", "gpt2", 0}, {"granite-docling", "gpt2", 0},
};

/* Each name gives its pattern: "12345678" splits as 1|2|...|8 under qwen2,
   123|456|78 under llama-bpe and whole under gpt2; "xy" is a token no
   merge makes, found whole only where merges are ignored. */
static void test_pre_names(void) {
    small_vocab v;
    static const char *const merges[] = {"1 2", "12 3", "6 7", "4 5", "45 6", "7 8"};
    int64_t i, n_q4k = 0;
    int32_t xy;
    small_init(&v);
    small_add(&v, "12", 1);
    small_add(&v, "123", 1);
    small_add(&v, "67", 1);
    small_add(&v, "45", 1);
    small_add(&v, "456", 1);
    small_add(&v, "78", 1);
    xy = small_add(&v, "xy", 1);
    while (q4k_pre_tokenizer_name(n_q4k, NULL)) n_q4k++;
    T_CHECK(n_q4k == (int64_t)(sizeof pre_names / sizeof pre_names[0]), "q4k knows %d names, the test %d", (int)n_q4k,
            (int)(sizeof pre_names / sizeof pre_names[0]));
    for (i = 0; i < (int64_t)(sizeof pre_names / sizeof pre_names[0]); i++) {
        const char *name = pre_names[i].name, *fam = NULL, *q = q4k_pre_tokenizer_name(i, &fam);
        q4k_vocab_desc d;
        q4k_tokenizer *t;
        q4k_error err;
        int64_t n, want = !strcmp(pre_names[i].family, "qwen2") ? 8 : !strcmp(pre_names[i].family, "gpt2") ? 4 : 3;
        int32_t *ids;
        T_CHECK(q && !strcmp(q, name) && fam && !strcmp(fam, pre_names[i].family), "name %d: %s (%s)", (int)i,
                q ? q : "NULL", fam ? fam : "NULL");
        small_desc(&v, &d, merges, 6, name);
        if (q4k_tokenizer_create(&d, &t, &err) != Q4K_OK) {
            T_CHECK(0, "%s: %s", name, err.msg);
            continue;
        }
        T_CHECK(!strcmp(q4k_tokenizer_pre(t), pre_names[i].family), "%s: pattern %s", name, q4k_tokenizer_pre(t));
        ids = tok_all(t, "12345678", 8, 0, &n);
        T_CHECK(n == want, "%s: \"12345678\" gives %d ids, not %d", name, (int)n, (int)want);
        free(ids);
        ids = tok_all(t, "xy", 2, 0, &n);
        T_CHECK(pre_names[i].ignore_merges ? (n == 1 && ids[0] == xy) : (n == 2 && ids[0] == 'x'),
                "%s: ignore_merges %d: %d ids", name, pre_names[i].ignore_merges, (int)n);
        free(ids);
        q4k_tokenizer_free(t);
    }
    T_CHECK(q4k_pre_tokenizer_name(-1, NULL) == NULL && q4k_pre_tokenizer_name(n_q4k, NULL) == NULL, "out of range");
}

static void test_errors(void) {
    small_vocab v;
    q4k_vocab_desc d;
    q4k_tokenizer *t = NULL;
    q4k_error err;
    static const char *const bad_missing[] = {"a b", "ab zz"};
    static const char *const bad_nospace[] = {"ab"};
    static const char *const bad_result[] = {"a c", "a b"};
    warn_log warned;
    int32_t ab;
    static const char *const good[] = {"a b"};
    small_init(&v);
    ab = small_add(&v, "ab", 1);

    small_desc(&v, &d, bad_missing, 2, "qwen2");
    T_CHECK(q4k_tokenizer_create(&d, &t, &err) == Q4K_ERR_INVALID_ARG && !t, "merge naming a missing token");
    T_CHECK(strstr(err.msg, "merges[1]") && strstr(err.msg, "'zz'"), "message: %s", err.msg);

    small_desc(&v, &d, bad_nospace, 1, "qwen2");
    T_CHECK(q4k_tokenizer_create(&d, &t, &err) == Q4K_ERR_INVALID_ARG, "merge without a space");
    T_CHECK(strstr(err.msg, "merges[0]") != NULL, "message: %s", err.msg);

    /* a merge whose result is no token: left out, with one warning */
    small_desc(&v, &d, bad_result, 2, "qwen2");
    d.log = count_warnings;
    d.log_user = &warned;
    warned.n = 0;
    T_CHECK(q4k_tokenizer_create(&d, &t, &err) == Q4K_OK && t, "merge making a missing token: %s", err.msg);
    T_CHECK(warned.n == 1 && strstr(warned.last, "not in the vocabulary") && strstr(warned.last, "merges[0] = 'a c'") &&
                strstr(warned.last, "1 merges"),
            "one warning naming it (%d): %s", warned.n, warned.last);
    if (t) {
        int64_t n;
        int32_t *ids = tok_all(t, "acab", 4, 0, &n);
        T_CHECK(n == 3 && ids[0] == 'a' && ids[1] == 'c' && ids[2] == ab, "the other merges still apply (%d ids)", (int)n);
        free(ids);
        q4k_tokenizer_free(t);
        t = NULL;
    }

    small_desc(&v, &d, good, 1, "qwen2");
    d.set_ids = 1;
    d.bos_id = -1;
    d.eos_id = (int32_t)v.n; /* one past the end */
    d.eot_id = -1;
    d.pad_id = -1;
    T_CHECK(q4k_tokenizer_create(&d, &t, &err) == Q4K_ERR_INVALID_ARG, "eos out of range");
    T_CHECK(strstr(err.msg, "eos_token_id = 257") != NULL, "message: %s", err.msg);
    d.eos_id = -2;
    T_CHECK(q4k_tokenizer_create(&d, &t, &err) == Q4K_ERR_INVALID_ARG, "eos = -2");

    small_desc(&v, &d, good, 1, "qwen2");
    v.types[5] = 9;
    T_CHECK(q4k_tokenizer_create(&d, &t, &err) == Q4K_ERR_INVALID_ARG, "token type 9");
    T_CHECK(strstr(err.msg, "token_type[5] = 9") != NULL, "message: %s", err.msg);
    v.types[5] = 1;

    small_desc(&v, &d, good, 1, "bloom");
    T_CHECK(q4k_tokenizer_create(&d, &t, &err) == Q4K_ERR_UNSUPPORTED, "unknown pre-tokenizer");
    T_CHECK(strstr(err.msg, "'bloom'") && strstr(err.msg, "deepseek-r1-qwen") && strstr(err.msg, "smaug-bpe"),
            "message names it and lists the known ones: %s", err.msg);
    small_desc(&v, &d, good, 1, "default"); /* llama.cpp splits "default" with other patterns */
    T_CHECK(q4k_tokenizer_create(&d, &t, &err) == Q4K_ERR_UNSUPPORTED, "'default' refused");

    /* a missing byte: 'x' is a control token, so no ordinary token spells it */
    small_desc(&v, &d, good, 1, "qwen2");
    v.types[0x78] = Q4K_TOKEN_CONTROL;
    T_CHECK(q4k_tokenizer_create(&d, &t, &err) == Q4K_ERR_INVALID_ARG, "missing byte token");
    T_CHECK(strstr(err.msg, "0x78") != NULL, "message: %s", err.msg);
    v.types[0x78] = Q4K_TOKEN_NORMAL;

    small_desc(&v, &d, good, 1, "qwen2");
    d.n_tokens = 100;
    T_CHECK(q4k_tokenizer_create(&d, &t, &err) == Q4K_ERR_INVALID_ARG, "100 tokens");
    T_CHECK(q4k_tokenizer_create(NULL, &t, &err) == Q4K_ERR_INVALID_ARG, "NULL desc");

    small_desc(&v, &d, good, 1, "qwen2");
    T_CHECK(q4k_tokenizer_create(&d, &t, &err) == Q4K_OK && t, "the good one: %s", err.msg);
    q4k_tokenizer_free(t);

    {
        q4k_vocab_strings vs;
        T_CHECK(q4k_vocab_from_tiktoken("/nonexistent/x.tiktoken", &vs, &err) == Q4K_ERR_IO && !vs.tokens,
                "missing tiktoken file");
        T_CHECK(strstr(err.msg, "/nonexistent/x.tiktoken") != NULL, "message: %s", err.msg);
    }
}

/* ---- GGUF ----------------------------------------------------------------- */

typedef struct gbuf {
    unsigned char *p;
    size_t n, cap;
} gbuf;

static void gb_put(gbuf *b, const void *s, size_t n) {
    if (b->n + n > b->cap) {
        while (b->n + n > b->cap) b->cap = b->cap ? 2 * b->cap : 4096;
        b->p = (unsigned char *)realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}
static void gb_u32(gbuf *b, uint32_t v) {
    unsigned char x[4];
    int i;
    for (i = 0; i < 4; i++) x[i] = (unsigned char)(v >> (8 * i));
    gb_put(b, x, 4);
}
static void gb_u64(gbuf *b, uint64_t v) {
    unsigned char x[8];
    int i;
    for (i = 0; i < 8; i++) x[i] = (unsigned char)(v >> (8 * i));
    gb_put(b, x, 8);
}
static void gb_str(gbuf *b, const char *s) {
    gb_u64(b, strlen(s));
    gb_put(b, s, strlen(s));
}
static void gb_kv_str(gbuf *b, const char *k, const char *v) {
    gb_str(b, k);
    gb_u32(b, Q4K_GGUF_STRING);
    gb_str(b, v);
}
static void gb_kv_u32(gbuf *b, const char *k, uint32_t v) {
    gb_str(b, k);
    gb_u32(b, Q4K_GGUF_UINT32);
    gb_u32(b, v);
}
static void gb_kv_strs(gbuf *b, const char *k, const char *const *v, int64_t n) {
    int64_t i;
    gb_str(b, k);
    gb_u32(b, Q4K_GGUF_ARRAY);
    gb_u32(b, Q4K_GGUF_STRING);
    gb_u64(b, (uint64_t)n);
    for (i = 0; i < n; i++) gb_str(b, v[i]);
}

/* a GGUF file with only tokenizer metadata; `drop` leaves out one key,
   `model`/`pre`/`eos` vary */
/* eom < 0: no tokenizer.ggml.eom_token_id */
static void make_gguf_eom(gbuf *b, const small_vocab *v, const char *const *merges, int64_t n_merges, const char *model,
                          const char *pre, uint32_t eos, int64_t eom) {
    int64_t i;
    uint32_t n_kv = 6 + (pre != NULL) + (eom >= 0);
    b->n = 0;
    gb_put(b, "GGUF", 4);
    gb_u32(b, 3);
    gb_u64(b, 0);
    gb_u64(b, n_kv);
    gb_kv_str(b, "general.architecture", "qwen2");
    gb_kv_str(b, "tokenizer.ggml.model", model);
    if (pre) gb_kv_str(b, "tokenizer.ggml.pre", pre);
    gb_kv_strs(b, "tokenizer.ggml.tokens", v->tokens, v->n);
    gb_str(b, "tokenizer.ggml.token_type");
    gb_u32(b, Q4K_GGUF_ARRAY);
    gb_u32(b, Q4K_GGUF_INT32);
    gb_u64(b, (uint64_t)v->n);
    for (i = 0; i < v->n; i++) gb_u32(b, (uint32_t)v->types[i]);
    gb_kv_strs(b, "tokenizer.ggml.merges", merges, n_merges);
    gb_kv_u32(b, "tokenizer.ggml.eos_token_id", eos);
    if (eom >= 0) gb_kv_u32(b, "tokenizer.ggml.eom_token_id", (uint32_t)eom);
    while (b->n % 32) gb_put(b, "", 1);
}

static void make_gguf(gbuf *b, const small_vocab *v, const char *const *merges, int64_t n_merges, const char *model,
                      const char *pre, uint32_t eos) {
    make_gguf_eom(b, v, merges, n_merges, model, pre, eos, -1);
}

static void test_from_gguf(void) {
    small_vocab v;
    static const char *const merges[] = {"a b", "\xC4\xA0 ab"};
    static const char *const bad_merges[] = {"a b", "\xC4\xA0 zz"};
    gbuf b = {NULL, 0, 0};
    q4k_gguf *g;
    q4k_tokenizer *t;
    q4k_error err;
    int32_t ab, sab, ctl, *ids;
    int64_t n;
    small_init(&v);
    ab = small_add(&v, "ab", 1);
    sab = small_add(&v, "\xC4\xA0" "ab", 1);
    ctl = small_add(&v, "<|im_end|>", Q4K_TOKEN_CONTROL);

    make_gguf(&b, &v, merges, 2, "gpt2", "qwen2", (uint32_t)ctl);
    T_CHECK(q4k_gguf_open_memory(b.p, b.n, NULL, &g, &err) == Q4K_OK, "open: %s", err.msg);
    if (t__failed_now) { free(b.p); return; }
    T_CHECK(q4k_tokenizer_from_gguf(g, &t, &err) == Q4K_OK, "from_gguf: %s", err.msg);
    q4k_gguf_close(g);
    if (!t__failed_now) {
        ids = tok_all(t, "ab ab<|im_end|>", 15, Q4K_TOKENIZE_SPECIAL, &n);
        T_CHECK(n == 3 && ids[0] == ab && ids[1] == sab && ids[2] == ctl, "ids from the GGUF vocabulary (%d)", (int)n);
        free(ids);
        T_CHECK(q4k_tokenizer_eos(t) == ctl && q4k_tokenizer_bos(t) == -1 && !q4k_tokenizer_add_bos(t), "ids, add_bos");
        T_CHECK(!strcmp(q4k_tokenizer_pre(t), "qwen2"), "pre");
        q4k_tokenizer_free(t);
    }

    make_gguf(&b, &v, merges, 2, "llama", "qwen2", (uint32_t)ctl);
    if (q4k_gguf_open_memory(b.p, b.n, NULL, &g, &err) == Q4K_OK) {
        T_CHECK(q4k_tokenizer_from_gguf(g, &t, &err) == Q4K_ERR_BAD_MODEL, "SentencePiece without scores");
        T_CHECK(strstr(err.msg, "tokenizer.ggml.scores is missing") != NULL, "message: %s", err.msg);
        q4k_gguf_close(g);
    }
    make_gguf(&b, &v, merges, 2, "bert", "qwen2", (uint32_t)ctl);
    if (q4k_gguf_open_memory(b.p, b.n, NULL, &g, &err) == Q4K_OK) {
        T_CHECK(q4k_tokenizer_from_gguf(g, &t, &err) == Q4K_ERR_UNSUPPORTED, "unknown model refused");
        T_CHECK(strstr(err.msg, "'bert'") != NULL, "message: %s", err.msg);
        q4k_gguf_close(g);
    }
    make_gguf(&b, &v, merges, 2, "gpt2", NULL, (uint32_t)ctl);
    if (q4k_gguf_open_memory(b.p, b.n, NULL, &g, &err) == Q4K_OK) {
        T_CHECK(q4k_tokenizer_from_gguf(g, &t, &err) == Q4K_ERR_UNSUPPORTED, "missing pre refused");
        T_CHECK(strstr(err.msg, "tokenizer.ggml.pre") != NULL, "message: %s", err.msg);
        q4k_gguf_close(g);
    }
    make_gguf(&b, &v, merges, 2, "gpt2", "qwen2", 5000);
    if (q4k_gguf_open_memory(b.p, b.n, NULL, &g, &err) == Q4K_OK) {
        T_CHECK(q4k_tokenizer_from_gguf(g, &t, &err) == Q4K_ERR_INVALID_ARG, "eos out of range");
        T_CHECK(strstr(err.msg, "tokenizer.ggml.eos_token_id = 5000") != NULL, "message: %s", err.msg);
        q4k_gguf_close(g);
    }
    make_gguf(&b, &v, bad_merges, 2, "gpt2", "qwen2", (uint32_t)ctl);
    if (q4k_gguf_open_memory(b.p, b.n, NULL, &g, &err) == Q4K_OK) {
        T_CHECK(q4k_tokenizer_from_gguf(g, &t, &err) == Q4K_ERR_INVALID_ARG, "bad merge");
        T_CHECK(strstr(err.msg, "tokenizer.ggml.merges[1]") != NULL, "message: %s", err.msg);
        q4k_gguf_close(g);
    }
    free(b.p);
}

/* A GGUF file's pre-tokenizer name (an alias), a forced one, and every
   end-of-generation token the file names. */
static void test_from_gguf_pre_and_eog(void) {
    small_vocab v;
    static const char *const merges[] = {"1 2", "12 3"};
    gbuf b = {NULL, 0, 0};
    q4k_gguf *g;
    q4k_tokenizer *t;
    q4k_error err;
    int32_t eos, eom, eos_ds, im_end, user, plain;
    int64_t n;
    int32_t *ids;
    small_init(&v);
    small_add(&v, "12", 1);
    small_add(&v, "123", 1);
    eos = small_add(&v, "<|endoftext|>", Q4K_TOKEN_CONTROL);
    eom = small_add(&v, "<|x_eom|>", Q4K_TOKEN_CONTROL);
    eos_ds = small_add(&v, "<\xEF\xBD\234end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>", Q4K_TOKEN_USER_DEFINED);
    im_end = small_add(&v, "<|im_end|>", Q4K_TOKEN_CONTROL);
    user = small_add(&v, "<\xEF\xBD\x9CUser\xEF\xBD\x9C>", Q4K_TOKEN_USER_DEFINED);
    plain = small_add(&v, "<|im_end|>x", Q4K_TOKEN_CONTROL);

    make_gguf_eom(&b, &v, merges, 2, "gpt2", "deepseek-r1-qwen", (uint32_t)eos, eom);
    T_CHECK(q4k_gguf_open_memory(b.p, b.n, NULL, &g, &err) == Q4K_OK, "open: %s", err.msg);
    if (t__failed_now) { free(b.p); return; }
    T_CHECK(q4k_tokenizer_from_gguf(g, &t, &err) == Q4K_OK, "deepseek-r1-qwen accepted: %s", err.msg);
    if (!t__failed_now) {
        T_CHECK(!strcmp(q4k_tokenizer_pre(t), "qwen2"), "its pattern: %s", q4k_tokenizer_pre(t));
        ids = tok_all(t, "123", 3, 0, &n);
        T_CHECK(n == 3, "qwen2 splits digits: %d ids", (int)n);
        free(ids);
        T_CHECK(q4k_tokenizer_is_eog(t, eos) && q4k_tokenizer_is_eog(t, eom) && q4k_tokenizer_is_eog(t, eos_ds) &&
                    q4k_tokenizer_is_eog(t, im_end),
                "eos, eom, <\xEF\xBD\234end of sentence\xEF\xBD\x9C>, <|im_end|> end generation");
        T_CHECK(!q4k_tokenizer_is_eog(t, user) && !q4k_tokenizer_is_eog(t, plain) && !q4k_tokenizer_is_eog(t, '1'),
                "other tokens do not");
        q4k_tokenizer_free(t);
    }
    /* --pre: a forced name wins over the file's */
    T_CHECK(q4k_tokenizer_from_gguf_pre(g, "llama3", &t, &err) == Q4K_OK, "forced llama3: %s", err.msg);
    if (!t__failed_now) {
        ids = tok_all(t, "123", 3, 0, &n);
        T_CHECK(n == 1 && !strcmp(q4k_tokenizer_pre(t), "llama-bpe"), "llama3 keeps three digits: %d ids", (int)n);
        free(ids);
        q4k_tokenizer_free(t);
    }
    T_CHECK(q4k_tokenizer_from_gguf_pre(g, "qwen9", &t, &err) == Q4K_ERR_UNSUPPORTED, "forcing an unknown name");
    T_CHECK(strstr(err.msg, "'qwen9'") && strstr(err.msg, "qwen2, deepseek-r1-qwen"), "message: %s", err.msg);
    q4k_gguf_close(g);

    make_gguf(&b, &v, merges, 2, "gpt2", "qwen9", (uint32_t)eos);
    if (q4k_gguf_open_memory(b.p, b.n, NULL, &g, &err) == Q4K_OK) {
        T_CHECK(q4k_tokenizer_from_gguf(g, &t, &err) == Q4K_ERR_UNSUPPORTED, "unknown name in the file");
        T_CHECK(strstr(err.msg, "tokenizer.ggml.pre = 'qwen9'") && strstr(err.msg, "llama-bpe") &&
                    strstr(err.msg, "gpt-2"),
                "message lists the known names: %s", err.msg);
        T_CHECK(q4k_tokenizer_from_gguf_pre(g, "qwen2", &t, &err) == Q4K_OK, "forced over an unknown name: %s", err.msg);
        if (t) q4k_tokenizer_free(t);
        q4k_gguf_close(g);
    }
    make_gguf_eom(&b, &v, merges, 2, "gpt2", "qwen2", (uint32_t)eos, 99999);
    if (q4k_gguf_open_memory(b.p, b.n, NULL, &g, &err) == Q4K_OK) {
        T_CHECK(q4k_tokenizer_from_gguf(g, &t, &err) == Q4K_ERR_INVALID_ARG, "eom out of range");
        T_CHECK(strstr(err.msg, "eom_token_id = 99999") != NULL, "message: %s", err.msg);
        q4k_gguf_close(g);
    }
    free(b.p);
}

/* ---- SentencePiece ---------------------------------------------------------- */

#define SP "\xE2\x96\x81" /* U+2581, SentencePiece's space */

/* <unk> <s> </s>, optionally the 256 byte tokens <0x00>..<0xFF>, then
   tokens added with spm_add */
typedef struct spm_vocab {
    char strs[600][24];
    const char *tokens[600];
    int32_t types[600];
    float scores[600];
    int64_t n;
} spm_vocab;

static int32_t spm_add(spm_vocab *v, const char *s, int type, float score) {
    snprintf(v->strs[v->n], sizeof v->strs[0], "%s", s);
    v->tokens[v->n] = v->strs[v->n];
    v->types[v->n] = type;
    v->scores[v->n] = score;
    return (int32_t)v->n++;
}

static void spm_init(spm_vocab *v, int bytes) {
    int b;
    memset(v, 0, sizeof *v);
    spm_add(v, "<unk>", Q4K_TOKEN_UNKNOWN, 0);
    spm_add(v, "<s>", Q4K_TOKEN_CONTROL, 0);
    spm_add(v, "</s>", Q4K_TOKEN_CONTROL, 0);
    for (b = 0; bytes && b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        spm_add(v, name, Q4K_TOKEN_BYTE, 0);
    }
}

static void spm_desc(const spm_vocab *v, q4k_vocab_desc *d, int space_prefix) {
    memset(d, 0, sizeof *d);
    d->model = "llama";
    d->n_tokens = v->n;
    d->tokens = v->tokens;
    d->token_types = v->types;
    d->scores = v->scores;
    d->add_space_prefix = space_prefix;
    d->set_ids = 1;
    d->bos_id = 1;
    d->eos_id = 2;
    d->eot_id = -1;
    d->pad_id = -1;
    d->unk_id = 0;
    d->add_bos = 1;
}

static q4k_tokenizer *spm_make(const spm_vocab *v, int space_prefix) {
    q4k_vocab_desc d;
    q4k_tokenizer *t = NULL;
    q4k_error err;
    spm_desc(v, &d, space_prefix);
    T_CHECK(q4k_tokenizer_create(&d, &t, &err) == Q4K_OK, "create: %s", err.msg);
    return t;
}

/* ids equal want[0..n_want) */
static int ids_are(const q4k_tokenizer *t, const char *text, unsigned flags, const int32_t *want, int64_t n_want) {
    int64_t n, i;
    int32_t *ids = tok_all(t, text, strlen(text), flags, &n);
    int ok = n == n_want;
    for (i = 0; ok && i < n; i++) ok = ids[i] == want[i];
    if (!ok) {
        printf("  '%s': got", text);
        for (i = 0; i < n; i++) printf(" %d", (int)ids[i]);
        printf(", want");
        for (i = 0; i < n_want; i++) printf(" %d", (int)want[i]);
        printf("\n");
    }
    free(ids);
    return ok;
}
#define IDS_ARE(t, text, flags, ...)                                                                           \
    do {                                                                                                       \
        const int32_t want_[] = {__VA_ARGS__};                                                                 \
        T_CHECK(ids_are(t, text, flags, want_, (int64_t)(sizeof want_ / sizeof want_[0])), "ids of '%s'", text); \
    } while (0)
#define BYTE_TOK(b) (3 + (b))

static void test_spm_merge_order(void) {
    spm_vocab v;
    q4k_tokenizer *t;
    int32_t sp, a, b, c, spa, ab, bc, abc, aa;
    /* "▁a" scores best: "▁abc" is ▁a + bc; then "ab" scoring best: ▁ + abc */
    spm_init(&v, 1);
    sp = spm_add(&v, SP, 1, -10);
    a = spm_add(&v, "a", 1, -11);
    b = spm_add(&v, "b", 1, -12);
    c = spm_add(&v, "c", 1, -13);
    spa = spm_add(&v, SP "a", 1, -0.5f);
    ab = spm_add(&v, "ab", 1, -1);
    bc = spm_add(&v, "bc", 1, -2);
    abc = spm_add(&v, "abc", 1, -3);
    aa = spm_add(&v, "aa", 1, -4);
    t = spm_make(&v, 1);
    if (!t) return;
    IDS_ARE(t, "abc", 0, spa, bc);
    IDS_ARE(t, "abc abc", 0, spa, bc, spa, bc);
    q4k_tokenizer_free(t);
    /* without the prefix "ab" scores best, then "abc" */
    t = spm_make(&v, 0);
    if (!t) return;
    IDS_ARE(t, "abc", 0, abc);
    IDS_ARE(t, "cab", 0, c, ab);
    IDS_ARE(t, "bca", 0, bc, a);
    /* ties: the leftmost pair */
    IDS_ARE(t, "aaa", 0, aa, a);
    IDS_ARE(t, "aaaaa", 0, aa, aa, a);
    IDS_ARE(t, " a", 0, spa);
    q4k_tokenizer_free(t);
    v.scores[spa] = -5; /* now "ab" is best everywhere */
    t = spm_make(&v, 1);
    if (!t) return;
    IDS_ARE(t, "abc", 0, sp, abc);
    IDS_ARE(t, "b", 0, sp, b);
    T_CHECK(!strcmp(q4k_tokenizer_pre(t), "spm"), "pre %s", q4k_tokenizer_pre(t));
    q4k_tokenizer_free(t);
}

static void test_spm_byte_fallback_and_unknown(void) {
    spm_vocab v;
    q4k_tokenizer *t;
    int32_t sp, a, spa;
    spm_init(&v, 1);
    sp = spm_add(&v, SP, 1, -10);
    a = spm_add(&v, "a", 1, -11);
    spa = spm_add(&v, SP "a", 1, -1);
    /* a NORMAL token for one byte wins over its BYTE token */
    t = spm_make(&v, 1);
    if (!t) return;
    IDS_ARE(t, "a\xC3\xA9" "a", 0, spa, BYTE_TOK(0xC3), BYTE_TOK(0xA9), a);
    IDS_ARE(t, "\xFF" "a", 0, sp, BYTE_TOK(0xFF), a);            /* a byte that is no UTF-8 */
    IDS_ARE(t, "\xE2\x82", 0, sp, BYTE_TOK(0xE2), BYTE_TOK(0x82)); /* a cut sequence: each byte */
    IDS_ARE(t, "\xF0\x9F\x98\x80", 0, sp, BYTE_TOK(0xF0), BYTE_TOK(0x9F), BYTE_TOK(0x98), BYTE_TOK(0x80));
    IDS_ARE(t, "\n", 0, sp, BYTE_TOK('\n'));
    T_CHECK(q4k_tokenizer_find(t, "a") == a, "find 'a' gives the NORMAL token: %d", (int)q4k_tokenizer_find(t, "a"));
    T_CHECK(q4k_tokenizer_find(t, " a") == spa, "find ' a'");
    T_CHECK(q4k_tokenizer_find(t, SP "a") == -1, "tokens are found by their bytes, not by their '▁' form");
    T_CHECK(q4k_tokenizer_unk(t) == 0, "unk %d", (int)q4k_tokenizer_unk(t));
    q4k_tokenizer_free(t);
    /* no byte tokens: one unknown token per character that has no token */
    spm_init(&v, 0);
    sp = spm_add(&v, SP, 1, -10);
    a = spm_add(&v, "a", 1, -11);
    spa = spm_add(&v, SP "a", 1, -1);
    t = spm_make(&v, 1);
    if (!t) return;
    IDS_ARE(t, "a\xC3\xA9\xC3\xA9" "a", 0, spa, 0, 0, a);
    IDS_ARE(t, "\xFF", 0, sp, 0);
    q4k_tokenizer_free(t);
}

static void test_spm_space_prefix_and_specials(void) {
    spm_vocab v;
    q4k_tokenizer *t;
    int32_t sp, a, b, spa, spb, ud, unused, ab;
    spm_init(&v, 1);
    sp = spm_add(&v, SP, 1, -10);
    a = spm_add(&v, "a", 1, -11);
    b = spm_add(&v, "b", 1, -12);
    spa = spm_add(&v, SP "a", 1, -1);
    spb = spm_add(&v, SP "b", 1, -2);
    ud = spm_add(&v, "<u>", Q4K_TOKEN_USER_DEFINED, 0);
    unused = spm_add(&v, "bb", Q4K_TOKEN_UNUSED, 100);
    ab = spm_add(&v, "ab", Q4K_TOKEN_CONTROL, 100);
    t = spm_make(&v, 1);
    if (!t) return;
    IDS_ARE(t, " a", 0, sp, spa);
    IDS_ARE(t, "a b", 0, spa, spb);
    IDS_ARE(t, "a  b", 0, spa, sp, spb);
    IDS_ARE(t, "a" SP "b", 0, spa, spb); /* "▁" in the text is a space */
    /* a special token in the middle: the text after it gets the space too */
    IDS_ARE(t, "a</s>b", Q4K_TOKENIZE_SPECIAL, spa, 2, spb);
    IDS_ARE(t, "</s>", Q4K_TOKENIZE_SPECIAL, 2);
    IDS_ARE(t, "</s></s>a", Q4K_TOKENIZE_SPECIAL, 2, 2, spa);
    IDS_ARE(t, "<s>a", Q4K_TOKENIZE_SPECIAL | Q4K_TOKENIZE_ADD_BOS, 1, 1, spa);
    IDS_ARE(t, "a</s>", 0, spa, BYTE_TOK('<'), BYTE_TOK('/'), BYTE_TOK('s'), BYTE_TOK('>'));
    IDS_ARE(t, "a<u>b", 0, spa, ud, spb); /* USER_DEFINED always */
    /* never merged into UNUSED or CONTROL tokens, however high they score */
    IDS_ARE(t, "bb", 0, spb, b);
    IDS_ARE(t, "ab", 0, spa, b);
    /* BOS, empty text */
    IDS_ARE(t, "a", Q4K_TOKENIZE_ADD_BOS, 1, spa);
    {
        int64_t n = -1;
        T_CHECK(q4k_tokenize(t, "", 0, 0, NULL, 0, &n, NULL) == Q4K_OK && n == 0, "empty text: %d ids", (int)n);
        T_CHECK(q4k_tokenize(t, "", 0, Q4K_TOKENIZE_ADD_BOS, NULL, 0, &n, NULL) == Q4K_OK && n == 1,
                "empty text with BOS: %d ids", (int)n);
    }
    T_CHECK(q4k_tokenizer_bos(t) == 1 && q4k_tokenizer_eos(t) == 2 && q4k_tokenizer_add_bos(t), "ids");
    T_CHECK(q4k_tokenizer_is_eog(t, 2) && !q4k_tokenizer_is_eog(t, 1), "</s> ends generation");
    q4k_tokenizer_free(t);
    /* without the prefix space */
    t = spm_make(&v, 0);
    if (!t) return;
    IDS_ARE(t, "a b", 0, a, spb);
    IDS_ARE(t, "a</s>b", Q4K_TOKENIZE_SPECIAL, a, 2, b);
    IDS_ARE(t, " a", 0, spa);
    q4k_tokenizer_free(t);
    (void)unused;
    (void)ab;
}

static void test_spm_detokenize(void) {
    spm_vocab v;
    q4k_tokenizer *t;
    int32_t sp, spa, ud;
    size_t l;
    const char *s;
    spm_init(&v, 1);
    sp = spm_add(&v, SP, 1, -10);
    spm_add(&v, "a", 1, -11);
    spa = spm_add(&v, SP "a", 1, -1);
    ud = spm_add(&v, SP "x" SP, Q4K_TOKEN_USER_DEFINED, 0);
    t = spm_make(&v, 1);
    if (!t) return;
    s = q4k_token_bytes(t, spa, &l);
    T_CHECK(s && l == 2 && !memcmp(s, " a", 2), "'▁a' prints ' a'");
    s = q4k_token_bytes(t, BYTE_TOK(0xE2), &l);
    T_CHECK(s && l == 1 && (unsigned char)s[0] == 0xE2, "<0xE2> prints its byte");
    s = q4k_token_bytes(t, BYTE_TOK(0), &l);
    T_CHECK(s && l == 1 && s[0] == 0, "<0x00> prints a NUL byte");
    s = q4k_token_bytes(t, 1, &l);
    T_CHECK(s && l == 0, "<s> prints nothing");
    s = q4k_token_bytes(t, 0, &l);
    T_CHECK(s && l == 0, "<unk> prints nothing");
    s = q4k_token_text(t, 2, &l);
    T_CHECK(s && l == 4 && !strcmp(s, "</s>"), "text of </s>");
    s = q4k_token_bytes(t, ud, &l);
    T_CHECK(s && l == 3 && !strcmp(s, " x "), "user-defined '▁x▁' prints ' x '");
    /* matched as " x " in the text; "b" after it gets its own space */
    IDS_ARE(t, "a x b", 0, spa, ud, sp, BYTE_TOK('b'));
    q4k_tokenizer_free(t);
}

/* a slow SentencePiece BPE: scan every pair at each step */
static int64_t ref_spm(const q4k_tokenizer *t, const char *text, size_t n, int32_t *out) {
    char w[512];
    size_t len[512], m = 0, i, wl = 0, pos;
    int64_t k = 0;
    if (!n) return 0; /* no text, no space in front */
    w[wl++] = ' ';
    for (i = 0; i < n; i++) w[wl++] = text[i];
    for (i = 0; i < wl;) {
        uint32_t cp, l = q4k__utf8_decode((const unsigned char *)w + i, wl - i, &cp);
        if (!l) l = 1;
        len[m++] = l;
        i += l;
    }
    for (;;) {
        size_t best = m;
        float best_score = 0;
        for (i = 0, pos = 0; i + 1 < m; pos += len[i], i++) {
            int32_t id = q4k__map_find(t, (const unsigned char *)w + pos, len[i] + len[i + 1]);
            if (id < 0 || t->type[id] != Q4K_TOKEN_NORMAL) continue;
            if (best == m || t->score[id] > best_score) {
                best = i;
                best_score = t->score[id];
            }
        }
        if (best == m) break;
        len[best] += len[best + 1];
        memmove(len + best + 1, len + best + 2, (m - best - 2) * sizeof len[0]);
        m--;
    }
    for (i = 0, pos = 0; i < m; pos += len[i], i++) {
        int32_t id = q4k__map_find(t, (const unsigned char *)w + pos, len[i]);
        size_t j;
        if (id >= 0 && t->type[id] == Q4K_TOKEN_NORMAL) out[k++] = id;
        else for (j = 0; j < len[i]; j++) out[k++] = BYTE_TOK((unsigned char)w[pos + j]);
    }
    return k;
}

/* random vocabularies over a small alphabet (scores with ties), random
   texts: the heap-driven merge equals the slow one, and detokenizing gives
   the text back after the prefix space */
static void test_spm_random_vs_reference(void) {
    static const char *const alpha[] = {" ", "a", "b", "c", "\xC3\xA9", "\xE4\xB8\xAD"};
    t_rng r = {0x5EEDull};
    int round, n_texts = 0;
    int64_t n_ids = 0, n_chars = 0;
    for (round = 0; round < 20; round++) {
        spm_vocab v;
        q4k_tokenizer *t;
        int i, k, n_extra = 40 + (int)(t_rng_next(&r) % 200);
        spm_init(&v, 1);
        for (i = 0; i < n_extra; i++) {
            char s[24];
            int len = 1 + (int)(t_rng_next(&r) % 4), o = 0, j;
            for (j = 0; j < len; j++) {
                const char *c = alpha[t_rng_next(&r) % 6];
                if (c[0] == ' ') { memcpy(s + o, SP, 3); o += 3; }
                else { memcpy(s + o, c, strlen(c)); o += (int)strlen(c); }
            }
            s[o] = 0;
            spm_add(&v, s, 1, -(float)(t_rng_next(&r) % 8)); /* few distinct scores: many ties */
        }
        {
            /* of duplicate tokens the first one counts, in both implementations */
            q4k_vocab_desc d;
            q4k_error err;
            spm_desc(&v, &d, 1);
            t = NULL;
            T_CHECK(q4k_tokenizer_create(&d, &t, &err) == Q4K_OK, "create: %s", err.msg);
            if (!t) return;
        }
        for (k = 0; k < 50; k++) {
            char text[200];
            int32_t ours[600], ref[600];
            size_t tl = 0, bl;
            int64_t n, nr, j;
            int pieces = (int)(t_rng_next(&r) % 30);
            char *back;
            int32_t *ids;
            for (i = 0; i < pieces; i++) {
                const char *c = t_rng_next(&r) % 20 ? alpha[t_rng_next(&r) % 6] : "\xFF";
                memcpy(text + tl, c, strlen(c));
                tl += strlen(c);
            }
            text[tl] = 0;
            ids = tok_all(t, text, tl, 0, &n);
            nr = ref_spm(t, text, tl, ref);
            T_CHECK(n == nr, "'%s': %d ids, the reference %d", text, (int)n, (int)nr);
            n_ids += n;
            n_chars += pieces;
            for (j = 0; j < n && j < nr; j++) T_CHECK(ids[j] == ref[j], "'%s': id %d: %d vs %d", text, (int)j, ids[j], ref[j]);
            memcpy(ours, ids, (size_t)(n < 600 ? n : 600) * sizeof *ids);
            back = (char *)malloc(tl + 8);
            bl = 0;
            for (j = 0; j < n; j++) {
                size_t l;
                const char *s = q4k_token_bytes(t, ours[j], &l);
                if (bl + l <= tl + 1) memcpy(back + bl, s, l);
                bl += l;
            }
            T_CHECK(tl ? bl == tl + 1 && back[0] == ' ' && !memcmp(back + 1, text, tl) : bl == 0, "round trip of '%s'",
                    text);
            free(back);
            free(ids);
            n_texts++;
        }
        q4k_tokenizer_free(t);
    }
    T_CHECK(n_texts == 1000, "%d texts", n_texts);
    T_CHECK(2 * n_ids < 3 * n_chars, "%lld ids for %lld characters: merges are used", (long long)n_ids,
            (long long)n_chars);
}

static void test_spm_errors(void) {
    spm_vocab v;
    q4k_vocab_desc d;
    q4k_tokenizer *t = NULL;
    q4k_error err;
    static const char *const merges[] = {"a b"};
    spm_init(&v, 1);
    spm_add(&v, "a", 1, -1);

    spm_desc(&v, &d, 1);
    d.scores = NULL;
    T_CHECK(q4k_tokenizer_create(&d, &t, &err) == Q4K_ERR_INVALID_ARG && !t, "no scores");
    T_CHECK(strstr(err.msg, "scores") != NULL, "message: %s", err.msg);

    spm_desc(&v, &d, 1);
    v.scores[200] = (float)(1e38 * 10.0);
    T_CHECK(q4k_tokenizer_create(&d, &t, &err) == Q4K_ERR_INVALID_ARG, "infinite score");
    T_CHECK(strstr(err.msg, "scores[200]") != NULL, "message: %s", err.msg);
    v.scores[200] = 0;

    spm_desc(&v, &d, 1);
    snprintf(v.strs[7], sizeof v.strs[7], "<0xZ4>");
    T_CHECK(q4k_tokenizer_create(&d, &t, &err) == Q4K_ERR_INVALID_ARG, "bad BYTE token");
    T_CHECK(strstr(err.msg, "tokens[7] = '<0xZ4>'") != NULL, "message: %s", err.msg);
    snprintf(v.strs[7], sizeof v.strs[7], "<0x04>");

    spm_desc(&v, &d, 1);
    d.unk_id = (int32_t)v.n;
    T_CHECK(q4k_tokenizer_create(&d, &t, &err) == Q4K_ERR_INVALID_ARG, "unk out of range");
    T_CHECK(strstr(err.msg, "unknown_token_id") != NULL, "message: %s", err.msg);

    spm_desc(&v, &d, 1);
    d.n_merges = 1;
    d.merges = merges;
    T_CHECK(q4k_tokenizer_create(&d, &t, &err) == Q4K_ERR_INVALID_ARG, "merges with SentencePiece");
    T_CHECK(strstr(err.msg, "merges") != NULL, "message: %s", err.msg);

    spm_desc(&v, &d, 1);
    d.model = "wordpiece";
    T_CHECK(q4k_tokenizer_create(&d, &t, &err) == Q4K_ERR_UNSUPPORTED, "unknown model");
    T_CHECK(strstr(err.msg, "'wordpiece'") != NULL, "message: %s", err.msg);

    /* byte 0x41 lost its token (it is NORMAL now) and there is no unknown
       token: some text could not be tokenized */
    spm_desc(&v, &d, 1);
    v.types[BYTE_TOK(0x41)] = Q4K_TOKEN_NORMAL;
    d.unk_id = -1;
    T_CHECK(q4k_tokenizer_create(&d, &t, &err) == Q4K_ERR_INVALID_ARG, "no byte token and no unk");
    T_CHECK(strstr(err.msg, "<0x41>") != NULL, "message: %s", err.msg);
    d.unk_id = 0;
    T_CHECK(q4k_tokenizer_create(&d, &t, &err) == Q4K_OK, "with unk: %s", err.msg);
    if (t) {
        IDS_ARE(t, "A", 0, BYTE_TOK(' '), 0);
        q4k_tokenizer_free(t);
        t = NULL;
    }
    v.types[BYTE_TOK(0x41)] = Q4K_TOKEN_BYTE;

    spm_desc(&v, &d, 1);
    d.set_ids = 0; /* the unknown token is the first UNKNOWN one */
    T_CHECK(q4k_tokenizer_create(&d, &t, &err) == Q4K_OK && q4k_tokenizer_unk(t) == 0 && q4k_tokenizer_bos(t) == -1,
            "without set_ids: %s", err.msg);
    q4k_tokenizer_free(t);
}

/* the Llama 2 chat prompt as demo.c tokenizes it: BOS once, from the
   text <s>; each piece after a special token gets its space */
static void test_spm_llama2_chat_prompt(void) {
    spm_vocab v;
    q4k_tokenizer *t;
    q4k_chat_msg conv[3] = {{"user", "a"}, {"assistant", "b"}, {"user", "a"}};
    int32_t sp, spa, spb, inst, einst;
    char *text;
    spm_init(&v, 1);
    sp = spm_add(&v, SP, 1, -10);
    spa = spm_add(&v, SP "a", 1, -1);
    spb = spm_add(&v, SP "b", 1, -2);
    inst = spm_add(&v, SP "[INST]", 1, 0);
    einst = spm_add(&v, SP "[/INST]", 1, 0);
    /* the pieces "▁[INST]" is merged from */
    spm_add(&v, SP "[", 1, -3);
    spm_add(&v, SP "[I", 1, -3);
    spm_add(&v, SP "[IN", 1, -3);
    spm_add(&v, SP "[INS", 1, -3);
    spm_add(&v, SP "[INST", 1, -3);
    spm_add(&v, SP "[/", 1, -3);
    spm_add(&v, SP "[/I", 1, -3);
    spm_add(&v, SP "[/IN", 1, -3);
    spm_add(&v, SP "[/INS", 1, -3);
    spm_add(&v, SP "[/INST", 1, -3);
    t = spm_make(&v, 1);
    if (!t) return;
    text = q4k_chat_format(Q4K_CHAT_LLAMA2, conv, 3, 1);
    T_CHECK(text != NULL, "format");
    if (text) IDS_ARE(t, text, Q4K_TOKENIZE_SPECIAL, 1, inst, spa, einst, spb, sp, 2, 1, inst, spa, einst);
    q4k_free(text);
    q4k_tokenizer_free(t);
}

/* a SentencePiece vocabulary in a GGUF file written by q4k's writer */
static void spm_write_gguf(const char *path, const spm_vocab *v, int n_scores, q4k_gguf_type score_type,
                           int space_prefix, int add_bos, uint32_t unk) {
    q4k_gguf_writer *w = q4k_gguf_writer_new(0);
    q4k_error err;
    double sc64[600];
    int64_t i;
    q4k_gguf_writer_set_str(w, "general.architecture", "llama");
    q4k_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    q4k_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", v->tokens, (uint64_t)v->n);
    if (score_type == Q4K_GGUF_FLOAT32) {
        q4k_gguf_writer_set_arr(w, "tokenizer.ggml.scores", Q4K_GGUF_FLOAT32, v->scores, (uint64_t)n_scores);
    } else {
        for (i = 0; i < v->n; i++) sc64[i] = v->scores[i];
        q4k_gguf_writer_set_arr(w, "tokenizer.ggml.scores", Q4K_GGUF_FLOAT64, sc64, (uint64_t)n_scores);
    }
    q4k_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", Q4K_GGUF_INT32, v->types, (uint64_t)v->n);
    q4k_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    q4k_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    q4k_gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", unk);
    if (space_prefix >= 0) q4k_gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", space_prefix);
    if (add_bos >= 0) q4k_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", add_bos);
    T_CHECK(q4k_gguf_writer_write_file(w, path, &err) == Q4K_OK, "write %s: %s", path, err.msg);
    q4k_gguf_writer_free(w);
}

static q4k_result spm_load_gguf(const char *path, q4k_tokenizer **t, q4k_error *err) {
    q4k_gguf *g;
    q4k_result rc = q4k_gguf_open_file(path, NULL, &g, err);
    *t = NULL;
    if (rc != Q4K_OK) return rc;
    rc = q4k_tokenizer_from_gguf(g, t, err);
    q4k_gguf_close(g);
    return rc;
}

static void test_spm_from_gguf(void) {
    spm_vocab v;
    q4k_tokenizer *t;
    q4k_error err;
    char path[512];
    const char *dir = getenv("TMPDIR");
    int32_t spa, spb;
    snprintf(path, sizeof path, "%s/q4k_test_tokenizer_%ld.gguf", dir && *dir ? dir : "/tmp", (long)getpid());
    spm_init(&v, 1);
    spm_add(&v, SP, 1, -10);
    spa = spm_add(&v, SP "a", 1, -1);
    spb = spm_add(&v, SP "b", 1, -2);

    /* add_bos_token and add_space_prefix absent: both default to true */
    spm_write_gguf(path, &v, (int)v.n, Q4K_GGUF_FLOAT32, -1, -1, 0);
    T_CHECK(spm_load_gguf(path, &t, &err) == Q4K_OK, "from_gguf: %s", err.msg);
    if (t) {
        IDS_ARE(t, "a b", Q4K_TOKENIZE_ADD_BOS, 1, spa, spb);
        IDS_ARE(t, "a</s>b", Q4K_TOKENIZE_SPECIAL, spa, 2, spb);
        T_CHECK(!strcmp(q4k_tokenizer_pre(t), "spm") && q4k_tokenizer_unk(t) == 0 && q4k_tokenizer_eos(t) == 2,
                "getters");
        q4k_tokenizer_free(t);
    }
    spm_write_gguf(path, &v, (int)v.n, Q4K_GGUF_FLOAT32, 0, 0, 0);
    T_CHECK(spm_load_gguf(path, &t, &err) == Q4K_OK, "from_gguf: %s", err.msg);
    if (t) {
        IDS_ARE(t, "a b", Q4K_TOKENIZE_ADD_BOS, BYTE_TOK('a'), spb);
        q4k_tokenizer_free(t);
    }
    spm_write_gguf(path, &v, (int)v.n - 1, Q4K_GGUF_FLOAT32, 1, 1, 0);
    T_CHECK(spm_load_gguf(path, &t, &err) == Q4K_ERR_BAD_COUNT && !t, "scores count");
    T_CHECK(strstr(err.msg, "tokenizer.ggml.scores has 261 entries for 262 tokens") != NULL, "message: %s", err.msg);
    spm_write_gguf(path, &v, (int)v.n, Q4K_GGUF_FLOAT64, 1, 1, 0);
    T_CHECK(spm_load_gguf(path, &t, &err) == Q4K_ERR_TYPE_MISMATCH && !t, "scores of FLOAT64");
    T_CHECK(strstr(err.msg, "tokenizer.ggml.scores") && strstr(err.msg, "FLOAT64"), "message: %s", err.msg);
    spm_write_gguf(path, &v, (int)v.n, Q4K_GGUF_FLOAT32, 1, 1, 5000);
    T_CHECK(spm_load_gguf(path, &t, &err) == Q4K_ERR_INVALID_ARG && !t, "unk out of range");
    T_CHECK(strstr(err.msg, "tokenizer.ggml.unknown_token_id = 5000") != NULL, "message: %s", err.msg);
    v.types[10] = 7;
    spm_write_gguf(path, &v, (int)v.n, Q4K_GGUF_FLOAT32, 1, 1, 0);
    T_CHECK(spm_load_gguf(path, &t, &err) == Q4K_ERR_INVALID_ARG && !t, "token type 7");
    T_CHECK(strstr(err.msg, "tokenizer.ggml.token_type[10] = 7") != NULL, "message: %s", err.msg);
    remove(path);
}

/* ---- fuzz: mutated vocabularies ------------------------------------------ */

/* Byte-level and SentencePiece vocabularies in GGUF files, mutated at
   random (byte flips, integer values set to edge values): each is refused
   with a one-line message, or builds a tokenizer whose ids are all in range
   and whose tokens all detokenize (ASan and UBSan builds run this too). */
static void test_vocab_fuzz(void) {
    static const uint64_t edge[] = {0, 1, 2, 3, 6, 7, 255, 256, 0x7fffffffu, 0x80000000u, 0xffffffffu, ~(uint64_t)0};
    static const char *const merges[] = {"a b", "\xC4\xA0 ab", "c d"};
    small_vocab v;
    spm_vocab sv;
    gbuf b = {NULL, 0, 0};
    unsigned char *seed[2], *m;
    size_t seed_n[2];
    char path[512];
    const char *dir = getenv("TMPDIR");
    int iters = t_quick() ? 600 : 4000, it, built = 0, refused = 0, k;
    t_rng rng;
    rng.s = 4242;
    small_init(&v);
    small_add(&v, "ab", 1);
    small_add(&v, "\xC4\xA0" "ab", 1);
    small_add(&v, "cd", 1);
    small_add(&v, "<|im_end|>", Q4K_TOKEN_CONTROL);
    make_gguf(&b, &v, merges, 3, "gpt2", "qwen2", (uint32_t)(v.n - 1));
    seed[0] = b.p;
    seed_n[0] = b.n;
    snprintf(path, sizeof path, "%s/q4k_test_vocab_fuzz_%ld.gguf", dir && *dir ? dir : "/tmp", (long)getpid());
    spm_init(&sv, 1);
    spm_add(&sv, SP, 1, -10);
    spm_add(&sv, SP "a", 1, -1);
    spm_add(&sv, "ab", 1, -3);
    spm_add(&sv, "<tool>", Q4K_TOKEN_USER_DEFINED, 0);
    spm_write_gguf(path, &sv, (int)sv.n, Q4K_GGUF_FLOAT32, 1, 1, 0);
    seed[1] = t_read_file(path, &seed_n[1]);
    remove(path);
    T_CHECK(seed[0] && seed[1], "seed files");
    if (!seed[0] || !seed[1]) { free(seed[0]); free(seed[1]); return; }
    m = (unsigned char *)malloc(seed_n[0] > seed_n[1] ? seed_n[0] : seed_n[1]);
    for (it = 0; it < iters; it++) {
        int which = it & 1, muts = 1 + (int)(t_rng_next(&rng) % 3);
        size_t n = seed_n[which];
        q4k_gguf *g;
        q4k_tokenizer *t = NULL;
        q4k_error err;
        q4k_result r;
        memcpy(m, seed[which], n);
        for (k = 0; k < muts; k++) {
            if (t_rng_next(&rng) % 2) {
                /* an integer scalar, or one element of an integer array */
                q4k_gguf_value val;
                int64_t key;
                if (q4k_gguf_open_memory(m, n, NULL, &g, &err) != Q4K_OK) break;
                key = (int64_t)(t_rng_next(&rng) % (uint64_t)q4k_gguf_key_count(g));
                if (q4k_gguf_key_value(g, key, &val) == Q4K_OK) {
                    uint64_t off = val.file_offset, w = 0;
                    q4k_gguf_type ty = val.type == Q4K_GGUF_ARRAY ? val.elem_type : val.type;
                    w = ty == Q4K_GGUF_UINT32 || ty == Q4K_GGUF_INT32 || ty == Q4K_GGUF_FLOAT32 ? 4
                        : ty == Q4K_GGUF_UINT64 || ty == Q4K_GGUF_INT64 ? 8 : ty == Q4K_GGUF_BOOL ? 1 : 0;
                    if (w && val.type == Q4K_GGUF_ARRAY && val.count) off += w * (t_rng_next(&rng) % val.count);
                    if (w && off + w <= n) {
                        uint64_t e = edge[t_rng_next(&rng) % (sizeof edge / sizeof edge[0])];
                        uint64_t j;
                        for (j = 0; j < w; j++) m[off + j] = (unsigned char)(e >> (8 * j));
                    }
                }
                q4k_gguf_close(g);
            } else {
                m[t_rng_next(&rng) % n] ^= (unsigned char)(1u << (t_rng_next(&rng) % 8));
            }
        }
        if (q4k_gguf_open_memory(m, n, NULL, &g, &err) != Q4K_OK) {
            refused++;
            continue;
        }
        r = q4k_tokenizer_from_gguf(g, &t, &err);
        q4k_gguf_close(g);
        if (r != Q4K_OK) {
            refused++;
            T_CHECK(!t && err.code == r && err.msg[0] && !strchr(err.msg, '\n'), "iteration %d: message '%s'", it,
                    err.msg);
            continue;
        }
        built++;
        {
            char text[40];
            int32_t ids[128];
            int64_t nid = 0, i, nv = q4k_tokenizer_n_vocab(t);
            size_t len, tl = 1 + (size_t)(t_rng_next(&rng) % (sizeof text - 1));
            static const char alphabet[] = "ab cd<|im_end|><tool>\xC3\xA9\xF0\x9F\x98\x80\x80x";
            for (i = 0; i < (int64_t)tl; i++) text[i] = alphabet[t_rng_next(&rng) % (sizeof alphabet - 1)];
            r = q4k_tokenize(t, text, tl, Q4K_TOKENIZE_SPECIAL | Q4K_TOKENIZE_ADD_BOS, ids, 128, &nid, &err);
            T_CHECK(r == Q4K_OK, "iteration %d: a tokenizer that built cannot tokenize: %s", it, err.msg);
            for (i = 0; r == Q4K_OK && i < nid && i < 128; i++)
                T_CHECK(ids[i] >= 0 && ids[i] < nv && q4k_token_bytes(t, ids[i], &len) != NULL,
                        "iteration %d: id %d out of range", it, (int)ids[i]);
            for (i = 0; i < nv; i++) T_CHECK(q4k_token_text(t, (int32_t)i, &len) != NULL, "token %d has no text", (int)i);
        }
        q4k_tokenizer_free(t);
    }
    printf("  %d mutated vocabularies: %d refused, %d built\n", iters, refused, built);
    T_CHECK(refused > iters / 10 && built > iters / 10, "the mutations are too %s", built <= iters / 10 ? "harsh" : "mild");
    free(m);
    free(seed[0]);
    free(seed[1]);
}

int main(void) {
    (void)t_rng_gauss; /* t.h's, unused here */
    T_RUN(test_unicode_classes);
    T_RUN(test_utf8_decode);
    T_RUN(test_utf8_stream_cases);
    T_RUN(test_utf8_stream_random);
    T_RUN(test_pretokenizer);
    T_RUN(test_vocab_from_tiktoken);
    T_RUN(test_vectors);
    T_RUN(test_bpe_vs_reference);
    T_RUN(test_roundtrip_random);
    T_RUN(test_special_tokens);
    T_RUN(test_capacity);
    T_RUN(test_llama_bpe_qwen_vocab);
    T_RUN(test_small_vocab_pretokenizers);
    T_RUN(test_user_defined_tokens);
    T_RUN(test_merges_never_make_special_tokens);
    T_RUN(test_synthetic_vocab);
    T_RUN(test_pre_names);
    T_RUN(test_errors);
    T_RUN(test_from_gguf);
    T_RUN(test_from_gguf_pre_and_eog);
    T_RUN(test_spm_merge_order);
    T_RUN(test_spm_byte_fallback_and_unknown);
    T_RUN(test_spm_space_prefix_and_specials);
    T_RUN(test_spm_detokenize);
    T_RUN(test_spm_random_vs_reference);
    T_RUN(test_spm_errors);
    T_RUN(test_spm_from_gguf);
    T_RUN(test_spm_llama2_chat_prompt);
    T_RUN(test_vocab_fuzz);
    qwen_unload();
    T_EXIT();
}
