/* Writes the seed corpora of the fuzz targets (make fuzz-seeds):
     OUT/gguf, OUT/model  two small models shaped like `q4k synth --preset tiny`
                          (qwen2, byte-level BPE vocabulary, tied output) and a
                          llama one (SentencePiece vocabulary, rope_freqs),
                          shrunk to 1 layer, width 32 and ~300 tokens (~25 KB,
                          not 1.2 MB) so that libFuzzer mutates them quickly;
                          gguf also gets a file with every value type and
                          nested arrays
     OUT/tokenizer        the texts of tests/data/vocab-tests/qwen2.inp and a
                          few more, behind the selector byte fuzz_tokenizer reads
     OUT/chat             the published templates of tests/data/templates, with
                          and without messages
   Every model it writes must load: the seeds start where the loader accepts.
   usage: fuzz_seeds OUT [DATA_DIR (tests/data)] */
#include <dirent.h>
#include <sys/stat.h>
#include "q4k.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SP "\xE2\x96\x81"

static const char *out_dir;
static int n_written;

static void die(const char *what, const char *why) {
    fprintf(stderr, "fuzz_seeds: %s: %s\n", what, why);
    exit(1);
}

static void put(const char *target, const char *name, const void *p, size_t n) {
    char path[1024];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", out_dir, target);
    mkdir(path, 0777);
    snprintf(path, sizeof path, "%s/%s/%s", out_dir, target, name);
    if (!(f = fopen(path, "wb")) || fwrite(p, 1, n, f) != n || fclose(f)) die(path, "cannot write");
    n_written++;
}

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    unsigned char *p;
    long len;
    if (!f) die(path, "cannot open");
    fseek(f, 0, SEEK_END);
    len = ftell(f);
    fseek(f, 0, SEEK_SET);
    p = (unsigned char *)malloc((size_t)len + 1);
    if (!p || fread(p, 1, (size_t)len, f) != (size_t)len) die(path, "cannot read");
    fclose(f);
    p[len] = 0;
    *n = (size_t)len;
    return p;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float rnd(void) { /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 11) / 4503599627370496.0 - 1.0);
}

/* tensor data lives until the writer is written: freed by the caller */
static void *bufs[64];
static int n_bufs;

static void tensor(q4k_gguf_writer *w, const char *name, q4k_type type, int64_t ne0, int64_t ne1, float scale, float mean) {
    int64_t ne[2], i, n = ne0 * (ne1 ? ne1 : 1);
    float *x = (float *)malloc((size_t)n * sizeof(float));
    size_t rs = q4k_row_size(type, ne0), rows = (size_t)(ne1 ? ne1 : 1), r;
    unsigned char *q = (unsigned char *)malloc(rs * rows);
    for (i = 0; i < n; i++) x[i] = mean + scale * rnd();
    for (r = 0; r < rows; r++)
        if (q4k_quantize_row(type, x + r * (size_t)ne0, q + r * rs, ne0) != rs) die(name, "no quantizer for its type");
    free(x);
    ne[0] = ne0;
    ne[1] = ne1;
    if (q4k_gguf_writer_add_tensor(w, name, type, ne1 ? 2 : 1, ne, q) != Q4K_OK) die(name, "add_tensor");
    bufs[n_bufs++] = q;
}

/* write w to a temporary file, check that it loads as a model, and put it
   in the gguf and model corpora */
static void finish_model(q4k_gguf_writer *w, const char *name) {
    char path[1024];
    unsigned char *p;
    size_t n;
    q4k_error err;
    q4k_model *m = NULL;
    q4k_tokenizer *t = NULL;
    q4k_gguf *g = NULL;
    snprintf(path, sizeof path, "%s/%s.tmp", out_dir, name);
    if (q4k_gguf_writer_write_file(w, path, &err) != Q4K_OK) die(name, err.msg);
    q4k_gguf_writer_free(w);
    while (n_bufs) free(bufs[--n_bufs]);
    p = slurp(path, &n);
    remove(path);
    if (q4k_gguf_open_memory(p, n, NULL, &g, &err) != Q4K_OK) die(name, err.msg);
    if (q4k_model_from_gguf(g, NULL, &m, &err) != Q4K_OK) die(name, err.msg);
    if (q4k_tokenizer_from_gguf(g, &t, &err) != Q4K_OK) die(name, err.msg);
    q4k_tokenizer_free(t);
    q4k_model_free(m);
    q4k_gguf_close(g);
    put("gguf", name, p, n);
    put("model", name, p, n);
    free(p);
}

static void layer(q4k_gguf_writer *w, int64_t embd, int64_t kv, int64_t ff, int bias) {
    tensor(w, "blk.0.attn_norm.weight", Q4K_TYPE_F32, embd, 0, 0.1f, 1.0f);
    tensor(w, "blk.0.attn_q.weight", Q4K_TYPE_Q8_0, embd, embd, 0.3f, 0);
    tensor(w, "blk.0.attn_k.weight", Q4K_TYPE_Q4_0, embd, kv, 0.3f, 0);
    tensor(w, "blk.0.attn_v.weight", Q4K_TYPE_Q5_0, embd, kv, 0.3f, 0);
    if (bias) {
        tensor(w, "blk.0.attn_q.bias", Q4K_TYPE_F32, embd, 0, 0.1f, 0);
        tensor(w, "blk.0.attn_k.bias", Q4K_TYPE_F32, kv, 0, 0.1f, 0);
        tensor(w, "blk.0.attn_v.bias", Q4K_TYPE_F32, kv, 0, 0.1f, 0);
    }
    tensor(w, "blk.0.attn_output.weight", Q4K_TYPE_F16, embd, embd, 0.3f, 0);
    tensor(w, "blk.0.ffn_norm.weight", Q4K_TYPE_F32, embd, 0, 0.1f, 1.0f);
    tensor(w, "blk.0.ffn_gate.weight", Q4K_TYPE_Q8_0, embd, ff, 0.3f, 0);
    tensor(w, "blk.0.ffn_up.weight", Q4K_TYPE_BF16, embd, ff, 0.3f, 0);
    tensor(w, "blk.0.ffn_down.weight", Q4K_TYPE_Q8_0, ff, embd, 0.3f, 0);
}

/* the architecture's keys: one layer of two heads, 64 positions */
static void hparams(q4k_gguf_writer *w, const char *arch, int64_t embd, int64_t ff, int n_head_kv, float base, float eps) {
    char key[96];
    q4k_gguf_writer_set_str(w, "general.architecture", arch);
    q4k_gguf_writer_set_str(w, "general.name", "q4k synthetic");
#define FUZZ_KEY(name) (snprintf(key, sizeof key, "%s." name, arch), key)
    q4k_gguf_writer_set_u32(w, FUZZ_KEY("block_count"), 1);
    q4k_gguf_writer_set_u32(w, FUZZ_KEY("context_length"), 64);
    q4k_gguf_writer_set_u32(w, FUZZ_KEY("embedding_length"), (uint32_t)embd);
    q4k_gguf_writer_set_u32(w, FUZZ_KEY("feed_forward_length"), (uint32_t)ff);
    q4k_gguf_writer_set_u32(w, FUZZ_KEY("attention.head_count"), 2);
    q4k_gguf_writer_set_u32(w, FUZZ_KEY("attention.head_count_kv"), (uint32_t)n_head_kv);
    q4k_gguf_writer_set_f32(w, FUZZ_KEY("rope.freq_base"), base);
    q4k_gguf_writer_set_f32(w, FUZZ_KEY("attention.layer_norm_rms_epsilon"), eps);
#undef FUZZ_KEY
}

/* qwen2 as q4k synth writes it (the same keys), with a 300-token vocabulary */
static void seed_qwen2(void) {
    static const char *const specials[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    q4k_gguf_writer *w = q4k_gguf_writer_new(0);
    q4k_vocab_strings v;
    q4k_error err;
    const char **toks;
    int32_t *types;
    int64_t i, nv;
    const int64_t embd = 32, kv = 16, ff = 64;
    if (q4k_vocab_synthetic(300, &v, &err) != Q4K_OK) die("vocabulary", err.msg);
    nv = v.n_tokens + 3;
    toks = (const char **)malloc((size_t)nv * sizeof *toks);
    types = (int32_t *)malloc((size_t)nv * sizeof *types);
    for (i = 0; i < nv; i++) {
        toks[i] = i < v.n_tokens ? v.tokens[i] : specials[i - v.n_tokens];
        types[i] = i < v.n_tokens ? Q4K_TOKEN_NORMAL : Q4K_TOKEN_CONTROL;
    }
    q4k_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    q4k_gguf_writer_set_str(w, "tokenizer.ggml.pre", "qwen2");
    q4k_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, (uint64_t)nv);
    q4k_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", Q4K_GGUF_INT32, types, (uint64_t)nv);
    q4k_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)v.merges, (uint64_t)v.n_merges);
    q4k_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)nv - 1);
    q4k_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)nv - 3);
    q4k_gguf_writer_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)nv - 3);
    q4k_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", 0);
    q4k_gguf_writer_set_str(w, "tokenizer.chat_template",
                            "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
                            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}");
    hparams(w, "qwen2", embd, ff, 1, 1e6f, 1e-6f);
    q4k_gguf_writer_set_u32(w, "general.file_type", 7);
    tensor(w, "token_embd.weight", Q4K_TYPE_Q8_0, embd, nv, 1.0f, 0);
    tensor(w, "output_norm.weight", Q4K_TYPE_F32, embd, 0, 0.1f, 1.0f);
    layer(w, embd, kv, ff, 1);
    finish_model(w, "qwen2-tiny.gguf");
    free(toks);
    free(types);
    q4k_vocab_strings_free(&v);
}

/* llama with a SentencePiece vocabulary: <unk> <s> </s>, byte tokens, words */
static void seed_llama(void) {
    static const char *const words[] = {SP "the", SP "a", "ab", SP "hello", SP "world", "he", "ll", "o", SP, SP SP,
                                        "\xC3\xA9", SP "\xC3\xA9t\xC3\xA9", "\xE6\x97\xA5\xE6\x9C\xAC", "<tool>"};
    char names[256][8];
    const char *toks[300];
    int32_t types[300];
    float scores[300];
    q4k_gguf_writer *w = q4k_gguf_writer_new(0);
    int64_t nv = 0, i;
    const int64_t embd = 32, ff = 64;
    toks[nv] = "<unk>"; types[nv] = Q4K_TOKEN_UNKNOWN; scores[nv++] = 0;
    toks[nv] = "<s>"; types[nv] = Q4K_TOKEN_CONTROL; scores[nv++] = 0;
    toks[nv] = "</s>"; types[nv] = Q4K_TOKEN_CONTROL; scores[nv++] = 0;
    for (i = 0; i < 256; i++) {
        snprintf(names[i], sizeof names[i], "<0x%02X>", (unsigned)i);
        toks[nv] = names[i]; types[nv] = Q4K_TOKEN_BYTE; scores[nv++] = 0;
    }
    for (i = 0; i < (int64_t)(sizeof words / sizeof words[0]); i++) {
        toks[nv] = words[i];
        types[nv] = strcmp(words[i], "<tool>") ? Q4K_TOKEN_NORMAL : Q4K_TOKEN_USER_DEFINED;
        scores[nv++] = -1.0f - (float)i;
    }
    hparams(w, "llama", embd, ff, 2, 10000.0f, 1e-5f);
    q4k_gguf_writer_set_u32(w, "llama.rope.dimension_count", 16);
    q4k_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    q4k_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, (uint64_t)nv);
    q4k_gguf_writer_set_arr(w, "tokenizer.ggml.scores", Q4K_GGUF_FLOAT32, scores, (uint64_t)nv);
    q4k_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", Q4K_GGUF_INT32, types, (uint64_t)nv);
    q4k_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    q4k_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    q4k_gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    q4k_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", 1);
    q4k_gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", 1);
    tensor(w, "token_embd.weight", Q4K_TYPE_Q8_0, embd, nv, 1.0f, 0);
    tensor(w, "rope_freqs.weight", Q4K_TYPE_F32, 8, 0, 0.5f, 2.0f);
    tensor(w, "output_norm.weight", Q4K_TYPE_F32, embd, 0, 0.1f, 1.0f);
    tensor(w, "output.weight", Q4K_TYPE_Q4_0, embd, nv, 0.5f, 0);
    layer(w, embd, embd, ff, 0);
    finish_model(w, "llama-spm-tiny.gguf");
}

/* every value type, nested arrays, another alignment, tensors of several
   types (one q4k cannot run) */
static void seed_all_types(void) {
    static const uint8_t u8[] = {0, 1, 255};
    static const int16_t i16[] = {-32768, 0, 32767};
    static const double f64[] = {-1.5, 0.0, 1e300};
    static const char *const strs[] = {"", "a", "\xC3\xA9 \"q\"\n"};
    static const int32_t in1[] = {1, 2}, in2[] = {3};
    q4k_gguf_arr inner[3], outer;
    q4k_gguf_writer *w = q4k_gguf_writer_new(64);
    uint8_t b = 1;
    int8_t i8 = -5;
    uint16_t u16v = 65535;
    uint64_t u64v = ~(uint64_t)0;
    int64_t i64v = -((int64_t)1 << 62);
    double d = 3.25;
    char path[1024];
    unsigned char *p;
    size_t n;
    q4k_error err;
    q4k_gguf_writer_set(w, "t.u8", Q4K_GGUF_UINT8, &u8[2]);
    q4k_gguf_writer_set(w, "t.i8", Q4K_GGUF_INT8, &i8);
    q4k_gguf_writer_set(w, "t.u16", Q4K_GGUF_UINT16, &u16v);
    q4k_gguf_writer_set(w, "t.i16", Q4K_GGUF_INT16, &i16[0]);
    q4k_gguf_writer_set_u32(w, "t.u32", 4000000000u);
    q4k_gguf_writer_set_i32(w, "t.i32", -7);
    q4k_gguf_writer_set_f32(w, "t.f32", -0.5f);
    q4k_gguf_writer_set(w, "t.bool", Q4K_GGUF_BOOL, &b);
    q4k_gguf_writer_set_str(w, "t.str", "q4k \xE2\x9C\x93");
    q4k_gguf_writer_set(w, "t.u64", Q4K_GGUF_UINT64, &u64v);
    q4k_gguf_writer_set(w, "t.i64", Q4K_GGUF_INT64, &i64v);
    q4k_gguf_writer_set(w, "t.f64", Q4K_GGUF_FLOAT64, &d);
    q4k_gguf_writer_set_arr(w, "a.u8", Q4K_GGUF_UINT8, u8, 3);
    q4k_gguf_writer_set_arr(w, "a.i16", Q4K_GGUF_INT16, i16, 3);
    q4k_gguf_writer_set_arr(w, "a.f64", Q4K_GGUF_FLOAT64, f64, 3);
    q4k_gguf_writer_set_arr(w, "a.bool", Q4K_GGUF_BOOL, u8, 2);
    q4k_gguf_writer_set_arr(w, "a.empty", Q4K_GGUF_INT32, in1, 0);
    q4k_gguf_writer_set_arr_str(w, "a.str", strs, 3);
    inner[0].elem_type = Q4K_GGUF_INT32; inner[0].count = 2; inner[0].data = in1;
    inner[1].elem_type = Q4K_GGUF_INT32; inner[1].count = 1; inner[1].data = in2;
    inner[2].elem_type = Q4K_GGUF_STRING; inner[2].count = 3; inner[2].data = strs;
    outer.elem_type = Q4K_GGUF_ARRAY; outer.count = 3; outer.data = inner;
    q4k_gguf_writer_set_array(w, "a.nested", &outer);
    tensor(w, "f32", Q4K_TYPE_F32, 8, 2, 1.0f, 0);
    tensor(w, "q4_k", Q4K_TYPE_Q4_K, 256, 1, 1.0f, 0);
    tensor(w, "q6_k", Q4K_TYPE_Q6_K, 256, 1, 1.0f, 0);
    {
        int64_t ne[3] = {256, 1, 1};
        unsigned char *q = (unsigned char *)calloc(1, q4k_row_size(Q4K_TYPE_Q3_K, 256));
        q4k_gguf_writer_add_tensor(w, "q3_k.3d", Q4K_TYPE_Q3_K, 3, ne, q);
        bufs[n_bufs++] = q;
    }
    snprintf(path, sizeof path, "%s/all-types.tmp", out_dir);
    if (q4k_gguf_writer_write_file(w, path, &err) != Q4K_OK) die("all-types", err.msg);
    q4k_gguf_writer_free(w);
    while (n_bufs) free(bufs[--n_bufs]);
    p = slurp(path, &n);
    remove(path);
    put("gguf", "all-types.gguf", p, n);
    free(p);
}

static void seed_tokenizer(const char *data_dir) {
    static const char *const more[] = {"<|im_start|>user\nhi<|im_end|>\n", SP SP "x " SP, "\xFF\xFE\xC3", "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E",
                                       "<s>a</s><tool> b", "  \t\n\n 123456 ab cd'll'S", "\xF0\x9F\x98\x80 \xCC\x81" "e\xCC\x81"};
    static const char sep[] = "\n__ggml_vocab_test__\n";
    char path[1024], name[64];
    unsigned char buf[4096];
    size_t n, k = 0, i;
    unsigned char *inp, *p, *end;
    snprintf(path, sizeof path, "%s/vocab-tests/qwen2.inp", data_dir);
    inp = slurp(path, &n);
    for (p = inp, end = inp + n; p < end; k++) {
        unsigned char *q = (unsigned char *)strstr((char *)p, sep);
        size_t len = (size_t)((q ? q : end) - p);
        if (len + 1 > sizeof buf) len = sizeof buf - 1;
        buf[0] = (unsigned char)(k % 5 | (k & 8) | (k & 16));
        memcpy(buf + 1, p, len);
        snprintf(name, sizeof name, "vocab-test-%02zu", k);
        put("tokenizer", name, buf, len + 1);
        p = q ? q + strlen(sep) : end;
    }
    for (i = 0; i < sizeof more / sizeof more[0]; i++) {
        size_t len = strlen(more[i]);
        unsigned sel;
        for (sel = 0; sel < 5; sel++) {
            buf[0] = (unsigned char)(sel | 8 | (i & 1 ? 16 : 0));
            memcpy(buf + 1, more[i], len);
            snprintf(name, sizeof name, "text-%zu-%u", i, sel);
            put("tokenizer", name, buf, len + 1);
        }
    }
    free(inp);
}

static void seed_chat(const char *data_dir) {
    static const char msgs[] = "\0system\0You are terse.\0user\0Hi <b>\0assistant\0<think>x</think>Hello\0user\0Bye\1";
    char path[1024];
    DIR *dir;
    struct dirent *e;
    snprintf(path, sizeof path, "%s/templates", data_dir);
    if (!(dir = opendir(path))) die(path, "cannot open");
    while ((e = readdir(dir)) != NULL) {
        size_t n, len = strlen(e->d_name);
        unsigned char *t, *all;
        char name[300];
        if (len < 7 || strcmp(e->d_name + len - 6, ".jinja")) continue;
        snprintf(path, sizeof path, "%s/templates/%s", data_dir, e->d_name);
        t = slurp(path, &n);
        put("chat", e->d_name, t, n);
        all = (unsigned char *)malloc(n + sizeof msgs);
        memcpy(all, t, n);
        memcpy(all + n, msgs, sizeof msgs - 1);
        snprintf(name, sizeof name, "%s.msgs", e->d_name);
        put("chat", name, all, n + sizeof msgs - 1);
        free(all);
        free(t);
    }
    closedir(dir);
}

int main(int argc, char **argv) {
    const char *data_dir = argc > 2 ? argv[2] : "tests/data";
    if (argc < 2) die("usage", "fuzz_seeds OUT [DATA_DIR]");
    out_dir = argv[1];
    mkdir(out_dir, 0777);
    seed_qwen2();
    seed_llama();
    seed_all_types();
    seed_tokenizer(data_dir);
    seed_chat(data_dir);
    printf("fuzz_seeds: %d files in %s\n", n_written, out_dir);
    return 0;
}
