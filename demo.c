#if !defined(_POSIX_C_SOURCE) && !defined(_WIN32)
#define _POSIX_C_SOURCE 200809L
#endif
/* q4k - the command-line tool: run, check and benchmark GGUF models.

   Built from the three headers; see `q4k --help`. Generated text goes to
   stdout, everything else to stderr. Exit codes: 0 ok, 1 error, 2 usage,
   3 parity failure. */
#define Q4K_IMPLEMENTATION
#include "q4k.h"
#include "q4k_cuda.h"
#include "q4k_vulkan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_OK = 0, EXIT_ERROR = 1, EXIT_USAGE = 2, EXIT_PARITY = 3 };

static const char *usage_text =
    "usage: q4k COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  run MODEL [PROMPT]     generate text (q4k run --help for the options)\n"
    "  info FILE [--json]     print a GGUF file's metadata and tensor table\n"
    "  bench MODEL [-p N] [-n N] [-t T] [--bw GB/s]\n"
    "                         prompt and decode speed (q4k bench --help)\n"
    "  synth OUT.gguf --preset tiny|0.5b|1.5b|7b [--layers N] [--vocab PATH.tiktoken]\n"
    "        [--quant q4_k_m|mixed|q8_0|f32] [--fast] [--outliers] [--seed S] [-t THREADS]\n"
    "                         write a synthetic model with Qwen2.5's shapes\n"
    "  devices                list the GPU devices and why any would be rejected\n"
    "  --version              version, compiler, CPU paths, GPU backends\n"
    "  --help                 this text\n"
    "\n"
    "exit codes: 0 ok, 1 error (bad file, backend that cannot start, I/O),\n"
    "            2 usage (bad or missing arguments), 3 parity failure\n"
    "\n"
    "environment: Q4K_CPU=scalar|avx2|avx512|neon forces a CPU kernel path\n";

static int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "q4k: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(see q4k --help)\n");
    return EXIT_USAGE;
}

static void paths_line(const char *label, unsigned mask) {
    int p;
    fprintf(stdout, "%s:", label);
    for (p = Q4K_CPU_SCALAR; p <= Q4K_CPU_NEON; p++)
        if (mask & (1u << p)) fprintf(stdout, " %s", q4k_cpu_path_name((q4k_cpu_path)p));
    fprintf(stdout, "\n");
}

static int cmd_version(void) {
    q4k_error err;
    q4k_cpu_path best;
    printf("q4k %s\n", q4k_version_string());
#if defined(__clang__)
    printf("compiler: clang %s\n", __clang_version__);
#elif defined(__GNUC__)
    printf("compiler: gcc %s\n", __VERSION__);
#elif defined(_MSC_VER)
    printf("compiler: msvc %d\n", _MSC_VER);
#else
    printf("compiler: unknown\n");
#endif
    paths_line("cpu paths compiled", q4k_cpu_paths_compiled());
    paths_line("cpu paths detected", q4k_cpu_paths_detected());
    if (q4k_cpu_resolve_path(Q4K_CPU_AUTO, &best, &err) == Q4K_OK)
        printf("cpu path used: %s\n", q4k_cpu_path_name(best));
    else
        printf("cpu path used: none (%s)\n", err.msg);
    printf("cuda backend: compiled; %s\n",
           q4k_cuda_probe(&err) == Q4K_OK ? "can start here" : err.msg);
    printf("vulkan backend: compiled; %s%s\n", q4k_vk_probe(&err) == Q4K_OK ? "can start here on " : "", err.msg);
    return EXIT_OK;
}

/* q4k devices, Vulkan part: every device the loader sees, with the limits
   the backend splits tensors by */
static void devices_vulkan(void) {
    q4k_vk_device_info d[16];
    q4k_error err;
    char feat[64];
    int n = 0, i;
    if (q4k_vk_list_devices(d, 16, &n, &err) != Q4K_OK) {
        printf("%s\n", err.msg);
        return;
    }
    printf("vulkan: %d device%s\n", n, n == 1 ? "" : "s");
    for (i = 0; i < n && i < 16; i++) {
        printf("  [%d] %s (%s), Vulkan %u.%u.%u, %.1f GiB device-local%s%s\n", i, d[i].name, d[i].type,
               VK_API_VERSION_MAJOR(d[i].api_version), VK_API_VERSION_MINOR(d[i].api_version),
               VK_API_VERSION_PATCH(d[i].api_version), (double)d[i].device_local_bytes / 1073741824.0,
               d[i].driver[0] ? ", driver " : "", d[i].driver);
        printf("      maxStorageBufferRange %llu, maxMemoryAllocationSize %llu, maxBufferSize %llu,\n"
               "      minStorageBufferOffsetAlignment %llu, maxComputeSharedMemorySize %u,\n"
               "      maxComputeWorkGroupCount %u x %u x %u, subgroup size %u\n",
               (unsigned long long)d[i].max_storage_buffer_range, (unsigned long long)d[i].max_memory_allocation_size,
               (unsigned long long)d[i].max_buffer_size, (unsigned long long)d[i].min_storage_buffer_offset_alignment,
               d[i].max_compute_shared_memory_size, d[i].max_compute_work_group_count[0],
               d[i].max_compute_work_group_count[1], d[i].max_compute_work_group_count[2], d[i].subgroup_size);
        printf("      optional features: %s\n", q4k_vk_feature_names(d[i].features, feat, sizeof feat));
        if (!d[i].usable) printf("      rejected: %s\n", d[i].reject);
        else if (!strcmp(d[i].type, "cpu")) printf("      usable when named (--device) or with --backend vulkan, never by auto\n");
        else printf("      usable\n");
    }
}

static int cmd_devices(int argc, char **argv) {
    (void)argv;
    if (argc > 0) return usage_error("devices takes no arguments (got '%s')", argv[0]);
    devices_vulkan();
    return EXIT_OK;
}

static int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    int json = 0, i;
    q4k_gguf *g;
    q4k_error err;
    q4k_gguf_desc desc;
    /* info shows any valid GGUF, also one with types q4k cannot run (the
       table marks them); run and the model loader refuse those */
    memset(&desc, 0, sizeof desc);
    desc.allow_unimplemented = 1;
    for (i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (argv[i][0] == '-' && argv[i][1]) return usage_error("info: unknown flag '%s'", argv[i]);
        else if (!path) path = argv[i];
        else return usage_error("info: unexpected argument '%s'", argv[i]);
    }
    if (!path) return usage_error("info: missing FILE%s", "");
    if (q4k_gguf_open_file(path, &desc, &g, &err) != Q4K_OK) {
        fprintf(stderr, "q4k: %s\n", err.msg);
        return EXIT_ERROR;
    }
    q4k_gguf_print(g, stdout, json);
    q4k_gguf_close(g);
    return EXIT_OK;
}


/* ---- q4k synth: synthetic models with real shapes ---------------------- */

typedef struct synth_preset {
    const char *name;
    int64_t n_embd, n_head, n_head_kv, n_ff, n_vocab, n_layer;
    int tied;
} synth_preset;

static const synth_preset synth_presets[] = {
    {"tiny", 256, 8, 2, 768, 2048, 4, 0},
    {"0.5b", 896, 14, 2, 4864, 151936, 24, 1},
    {"1.5b", 1536, 12, 2, 8960, 151936, 28, 1},
    {"7b", 3584, 28, 4, 18944, 152064, 28, 0},
};

typedef enum { QUANT_Q4_K_M, QUANT_MIXED, QUANT_Q8_0, QUANT_F32 } synth_quant;

typedef enum { W_MATRIX, W_NORM, W_BIAS, W_EMBD } synth_kind;

typedef struct synth_tensor {
    char name[64];
    q4k_type type;
    int n_dims;
    int64_t ne[2];
    synth_kind kind;
    float scale; /* std of matrix weights */
} synth_tensor;

typedef struct synth_job {
    const synth_tensor *t;
    void *out;
    uint64_t seed;
    int fast;
    const void *pool_blocks; /* fast mode: quantized Gaussian blocks to draw from */
    int64_t pool_n;
    int outliers;
} synth_job;

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double unif(uint64_t *s) { return ((double)(splitmix(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
static void gauss_fill(float *x, int64_t n, uint64_t *s, float std) {
    int64_t i;
    for (i = 0; i < n; i += 2) {
        double r = sqrt(-2.0 * log(unif(s))), a = 6.283185307179586 * unif(s);
        x[i] = (float)(r * cos(a)) * std;
        if (i + 1 < n) x[i + 1] = (float)(r * sin(a)) * std;
    }
}

/* channels of the residual stream that --outliers makes hundreds of times larger */
static int is_outlier_channel(int64_t c, int64_t n_embd) { return c == 7 || c == n_embd / 3 || c == n_embd - 5; }

/* Rows [ith::nth] of a tensor: Gaussian values quantized to its type; in
   fast mode, blocks drawn from a pool of quantized Gaussian blocks. */
static void synth_rows(void *ctx, int ith, int nth) {
    synth_job *j = (synth_job *)ctx;
    const synth_tensor *t = j->t;
    int64_t cols = t->ne[0], rows = t->n_dims == 2 ? t->ne[1] : 1, r, c;
    size_t row_bytes = q4k_row_size(t->type, cols);
    q4k_type_info ti = q4k_type_traits(t->type);
    float *buf = (float *)malloc((size_t)cols * sizeof(float));
    if (!buf) return;
    for (r = ith; r < rows; r += nth) {
        uint64_t s = j->seed ^ ((uint64_t)r * 0xD1B54A32D192ED03ull);
        unsigned char *dst = (unsigned char *)j->out + (size_t)r * row_bytes;
        splitmix(&s);
        if (j->fast && j->pool_blocks && ti.block_size > 1) {
            int64_t b, nb = cols / ti.block_size;
            for (b = 0; b < nb; b++)
                memcpy(dst + (size_t)b * ti.type_size,
                       (const unsigned char *)j->pool_blocks + (size_t)(splitmix(&s) % (uint64_t)j->pool_n) * ti.type_size,
                       ti.type_size);
            continue;
        }
        switch (t->kind) {
        case W_NORM:
            for (c = 0; c < cols; c++) buf[c] = (float)(1.0 + 0.2 * (unif(&s) - 0.5));
            break;
        case W_BIAS:
            gauss_fill(buf, cols, &s, 0.5f);
            break;
        case W_EMBD:
            gauss_fill(buf, cols, &s, t->scale);
            if (j->outliers) /* every token: |x| >= 300 std in the outlier channels */
                for (c = 0; c < cols; c++)
                    if (is_outlier_channel(c, cols))
                        buf[c] = (buf[c] < 0 ? -t->scale : t->scale) * (300.0f + 100.0f * fabsf(buf[c]) / t->scale);
            break;
        case W_MATRIX:
            gauss_fill(buf, cols, &s, t->scale);
            break;
        }
        q4k_quantize_row(t->type, buf, dst, cols);
    }
    free(buf);
}

static q4k_type synth_fit(q4k_type want, int64_t cols) {
    if (cols % Q4K_QK_K == 0) return want;
    if (want == Q4K_TYPE_Q4_K || want == Q4K_TYPE_Q5_K) return Q4K_TYPE_Q5_0;
    if (want == Q4K_TYPE_Q6_K) return Q4K_TYPE_Q8_0;
    return want;
}

static q4k_type synth_matrix_type(synth_quant q, const char *what, int64_t layer, int64_t n_layer, int64_t cols,
                                  int *counter) {
    static const q4k_type mixed[] = {Q4K_TYPE_Q4_K, Q4K_TYPE_Q6_K, Q4K_TYPE_Q5_K, Q4K_TYPE_Q8_0, Q4K_TYPE_Q4_0,
                                     Q4K_TYPE_Q5_0, Q4K_TYPE_F16, Q4K_TYPE_BF16, Q4K_TYPE_F32};
    switch (q) {
    case QUANT_F32: return Q4K_TYPE_F32;
    case QUANT_Q8_0: return Q4K_TYPE_Q8_0;
    case QUANT_MIXED: return synth_fit(mixed[(*counter)++ % 9], cols);
    case QUANT_Q4_K_M:
        if (!strcmp(what, "output")) return synth_fit(Q4K_TYPE_Q6_K, cols);
        if (!strcmp(what, "attn_v") || !strcmp(what, "ffn_down")) {
            int64_t e = n_layer / 8;
            if (layer < e || layer >= 7 * n_layer / 8 || (layer - e) % 3 == 2) return synth_fit(Q4K_TYPE_Q6_K, cols);
        }
        return synth_fit(Q4K_TYPE_Q4_K, cols);
    }
    return Q4K_TYPE_F32;
}

/* The GGUF vocabulary of a synthetic model: the Qwen vocabulary when a
   .tiktoken file is given, else byte tokens plus letter-pair merges. Both
   end with Qwen's special tokens; padded to n_vocab. */
static int synth_vocab(q4k_gguf_writer *w, const char *tiktoken, int64_t *n_vocab, int fixed_vocab, q4k_error *err) {
    q4k_vocab_strings v;
    q4k_result r;
    int64_t i, n_special = 22;
    static const char *const specials[] = {
        "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
        "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
        "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
        "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"};
    int32_t *types;
    char pad[32];
    if (tiktoken) r = q4k_vocab_from_tiktoken(tiktoken, &v, err);
    else r = q4k_vocab_synthetic(fixed_vocab ? *n_vocab - n_special : 2048 - n_special, &v, err);
    if (r) return 0;
    if (!fixed_vocab) *n_vocab = v.n_tokens + n_special;
    if (v.n_tokens + n_special > *n_vocab) {
        snprintf(err->msg, sizeof err->msg, "vocabulary of %lld tokens does not fit the preset's %lld",
                 (long long)(v.n_tokens + n_special), (long long)*n_vocab);
        q4k_vocab_strings_free(&v);
        return 0;
    }
    {
        const char **toks = (const char **)malloc((size_t)*n_vocab * sizeof(char *));
        char *pads = (char *)malloc((size_t)*n_vocab * 32);
        types = (int32_t *)malloc((size_t)*n_vocab * sizeof(int32_t));
        if (!toks || !pads || !types) {
            free(toks); free(pads); free(types);
            q4k_vocab_strings_free(&v);
            snprintf(err->msg, sizeof err->msg, "out of memory for the vocabulary");
            return 0;
        }
        for (i = 0; i < v.n_tokens; i++) { toks[i] = v.tokens[i]; types[i] = 1; }
        for (i = 0; i < n_special; i++) { toks[v.n_tokens + i] = specials[i]; types[v.n_tokens + i] = 3; }
        for (i = v.n_tokens + n_special; i < *n_vocab; i++) {
            snprintf(pad, sizeof pad, "[PAD%lld]", (long long)i);
            memcpy(pads + i * 32, pad, 32);
            toks[i] = pads + i * 32;
            types[i] = 5; /* unused */
        }
        q4k_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
        q4k_gguf_writer_set_str(w, "tokenizer.ggml.pre", "qwen2");
        q4k_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, (uint64_t)*n_vocab);
        q4k_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", Q4K_GGUF_INT32, types, (uint64_t)*n_vocab);
        q4k_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)v.merges, (uint64_t)v.n_merges);
        q4k_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)(v.n_tokens + 2)); /* <|im_end|> */
        q4k_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)v.n_tokens);      /* <|endoftext|> */
        q4k_gguf_writer_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)v.n_tokens);
        q4k_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", 0);
        /* the writer copies metadata: the arrays can go */
        free(toks); free(pads); free(types);
    }
    q4k_vocab_strings_free(&v);
    return 1;
}

static int cmd_synth(int argc, char **argv) {
    const char *out = NULL, *preset_name = NULL, *vocab = NULL, *quant_name = "q4_k_m";
    int64_t layers = 0, i, l, n_vocab;
    uint64_t seed = 42;
    int fast = 0, outliers = 0, counter = 0, n_threads = 0;
    synth_preset p;
    synth_quant quant;
    synth_tensor *ts;
    int64_t nt = 0;
    q4k_gguf_writer *w;
    q4k_error err;
    q4k_pool *pool;
    char *end;
    memset(&p, 0, sizeof p);
    memset(&err, 0, sizeof err);
    for (i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--preset") && i + 1 < argc) preset_name = argv[++i];
        else if (!strcmp(a, "--layers") && i + 1 < argc) {
            layers = strtoll(argv[++i], &end, 10);
            if (*end || layers <= 0 || layers > 1000) return usage_error("synth: --layers wants a count from 1 to 1000, not '%s'", argv[i]);
        } else if (!strcmp(a, "--vocab") && i + 1 < argc) vocab = argv[++i];
        else if (!strcmp(a, "--quant") && i + 1 < argc) quant_name = argv[++i];
        else if (!strcmp(a, "--seed") && i + 1 < argc) {
            seed = strtoull(argv[++i], &end, 10);
            if (*end) return usage_error("synth: --seed wants a number, not '%s'", argv[i]);
        } else if (!strcmp(a, "-t") && i + 1 < argc) {
            n_threads = (int)strtol(argv[++i], &end, 10);
            if (*end || n_threads <= 0) return usage_error("synth: -t wants a thread count, not '%s'", argv[i]);
        } else if (!strcmp(a, "--fast")) fast = 1;
        else if (!strcmp(a, "--outliers")) outliers = 1;
        else if (a[0] == '-' && a[1]) return usage_error("synth: unknown flag or missing value '%s'", a);
        else if (!out) out = a;
        else return usage_error("synth: unexpected argument '%s'", a);
    }
    if (!out) return usage_error("synth: missing OUT.gguf%s", "");
    if (!preset_name) return usage_error("synth: missing --preset tiny|0.5b|1.5b|7b%s", "");
    for (i = 0; i < (int64_t)(sizeof synth_presets / sizeof synth_presets[0]); i++)
        if (!strcmp(preset_name, synth_presets[i].name)) p = synth_presets[i];
    if (!p.name) return usage_error("synth: unknown preset '%s' (tiny, 0.5b, 1.5b, 7b)", preset_name);
    if (!strcmp(quant_name, "q4_k_m")) quant = QUANT_Q4_K_M;
    else if (!strcmp(quant_name, "mixed")) quant = QUANT_MIXED;
    else if (!strcmp(quant_name, "q8_0")) quant = QUANT_Q8_0;
    else if (!strcmp(quant_name, "f32")) quant = QUANT_F32;
    else return usage_error("synth: unknown --quant '%s' (q4_k_m, mixed, q8_0, f32)", quant_name);
    if (layers) p.n_layer = layers;

    w = q4k_gguf_writer_new(32);
    if (!w) { fprintf(stderr, "q4k: out of memory\n"); return EXIT_ERROR; }
    n_vocab = p.n_vocab;
    if (!synth_vocab(w, vocab, &n_vocab, strcmp(p.name, "tiny") != 0, &err)) {
        fprintf(stderr, "q4k: synth: %s\n", err.msg);
        q4k_gguf_writer_free(w);
        return EXIT_ERROR;
    }
    q4k_gguf_writer_set_str(w, "general.architecture", "qwen2");
    q4k_gguf_writer_set_str(w, "general.name", "q4k synthetic");
    q4k_gguf_writer_set_u32(w, "qwen2.block_count", (uint32_t)p.n_layer);
    q4k_gguf_writer_set_u32(w, "qwen2.context_length", 32768);
    q4k_gguf_writer_set_u32(w, "qwen2.embedding_length", (uint32_t)p.n_embd);
    q4k_gguf_writer_set_u32(w, "qwen2.feed_forward_length", (uint32_t)p.n_ff);
    q4k_gguf_writer_set_u32(w, "qwen2.attention.head_count", (uint32_t)p.n_head);
    q4k_gguf_writer_set_u32(w, "qwen2.attention.head_count_kv", (uint32_t)p.n_head_kv);
    q4k_gguf_writer_set_f32(w, "qwen2.rope.freq_base", 1000000.0f);
    q4k_gguf_writer_set_f32(w, "qwen2.attention.layer_norm_rms_epsilon", 1e-6f);
    q4k_gguf_writer_set_u32(w, "general.file_type", quant == QUANT_Q4_K_M ? 15 : quant == QUANT_Q8_0 ? 7 : 0);

    ts = (synth_tensor *)calloc((size_t)(4 + 12 * p.n_layer), sizeof *ts);
    if (!ts) { q4k_gguf_writer_free(w); fprintf(stderr, "q4k: out of memory\n"); return EXIT_ERROR; }
#define ADD(kind_, type_, ne0, ne1, scale_, ...)                                     \
    do {                                                                              \
        synth_tensor *t_ = &ts[nt++];                                                 \
        snprintf(t_->name, sizeof t_->name, __VA_ARGS__);                            \
        t_->kind = kind_; t_->type = type_; t_->ne[0] = ne0; t_->ne[1] = ne1;        \
        t_->n_dims = ne1 ? 2 : 1; t_->scale = scale_;                                \
    } while (0)
    {
        int64_t d = p.n_embd, hd = p.n_embd / p.n_head, qd = p.n_head * hd, kvd = p.n_head_kv * hd;
        /* output projections shrink with depth so that 28 layers stay well conditioned */
        float deep = (float)(1.0 / sqrt(2.0 * (double)p.n_layer));
        q4k_type emb_type = p.tied ? synth_matrix_type(quant, "output", 0, p.n_layer, d, &counter)
                                   : synth_matrix_type(quant, "token_embd", 0, p.n_layer, d, &counter);
        /* tied: the embedding is also the output projection, scaled for logits of std ~3 */
        ADD(W_EMBD, emb_type, d, n_vocab, p.tied ? (float)(3.0 / sqrt((double)d)) : 1.0f, "token_embd.weight");
        ADD(W_NORM, Q4K_TYPE_F32, d, 0, 0.0f, "output_norm.weight");
        /* logits with a std of about 3, as trained models have */
        if (!p.tied) ADD(W_MATRIX, synth_matrix_type(quant, "output", 0, p.n_layer, d, &counter), d, n_vocab,
                         (float)(3.0 / sqrt((double)d)), "output.weight");
        for (l = 0; l < p.n_layer; l++) {
            float sd = (float)(1.0 / sqrt((double)d)), sf = (float)(1.0 / sqrt((double)p.n_ff));
            float so = (float)(1.0 / sqrt((double)qd));
            ADD(W_NORM, Q4K_TYPE_F32, d, 0, 0.0f, "blk.%lld.attn_norm.weight", (long long)l);
            ADD(W_MATRIX, synth_matrix_type(quant, "attn_q", l, p.n_layer, d, &counter), d, qd, sd, "blk.%lld.attn_q.weight", (long long)l);
            ADD(W_BIAS, Q4K_TYPE_F32, qd, 0, 0.0f, "blk.%lld.attn_q.bias", (long long)l);
            ADD(W_MATRIX, synth_matrix_type(quant, "attn_k", l, p.n_layer, d, &counter), d, kvd, sd, "blk.%lld.attn_k.weight", (long long)l);
            ADD(W_BIAS, Q4K_TYPE_F32, kvd, 0, 0.0f, "blk.%lld.attn_k.bias", (long long)l);
            ADD(W_MATRIX, synth_matrix_type(quant, "attn_v", l, p.n_layer, d, &counter), d, kvd, sd, "blk.%lld.attn_v.weight", (long long)l);
            ADD(W_BIAS, Q4K_TYPE_F32, kvd, 0, 0.0f, "blk.%lld.attn_v.bias", (long long)l);
            ADD(W_MATRIX, synth_matrix_type(quant, "attn_output", l, p.n_layer, qd, &counter), qd, d, so * deep, "blk.%lld.attn_output.weight", (long long)l);
            ADD(W_NORM, Q4K_TYPE_F32, d, 0, 0.0f, "blk.%lld.ffn_norm.weight", (long long)l);
            ADD(W_MATRIX, synth_matrix_type(quant, "ffn_gate", l, p.n_layer, d, &counter), d, p.n_ff, sd, "blk.%lld.ffn_gate.weight", (long long)l);
            ADD(W_MATRIX, synth_matrix_type(quant, "ffn_up", l, p.n_layer, d, &counter), d, p.n_ff, sd, "blk.%lld.ffn_up.weight", (long long)l);
            ADD(W_MATRIX, synth_matrix_type(quant, "ffn_down", l, p.n_layer, p.n_ff, &counter), p.n_ff, d, sf * deep, "blk.%lld.ffn_down.weight", (long long)l);
        }
    }
#undef ADD
    for (i = 0; i < nt; i++)
        q4k_gguf_writer_add_tensor(w, ts[i].name, ts[i].type, ts[i].n_dims, ts[i].ne, NULL);
    if (q4k_gguf_writer_begin(w, out, &err) != Q4K_OK) {
        fprintf(stderr, "q4k: synth: %s\n", err.msg);
        free(ts);
        q4k_gguf_writer_free(w);
        return EXIT_ERROR;
    }
    pool = q4k_pool_create(n_threads ? n_threads : 2);
    for (i = 0; i < nt; i++) {
        synth_tensor *t = &ts[i];
        int64_t rows = t->n_dims == 2 ? t->ne[1] : 1;
        size_t bytes = q4k_row_size(t->type, t->ne[0]) * (size_t)rows;
        q4k_type_info ti = q4k_type_traits(t->type);
        synth_job job;
        void *buf = malloc(bytes), *blocks = NULL;
        memset(&job, 0, sizeof job);
        if (!buf) { fprintf(stderr, "q4k: synth: out of memory for tensor '%s' (%zu bytes)\n", t->name, bytes); break; }
        job.t = t;
        job.out = buf;
        job.seed = seed * 0x9E3779B97F4A7C15ull + (uint64_t)i;
        job.fast = fast && (t->kind == W_MATRIX || (t->kind == W_EMBD && !outliers));
        job.outliers = outliers;
        if (job.fast && ti.block_size > 1) {
            /* a pool of 4096 quantized Gaussian blocks to draw rows from */
            synth_tensor pt = *t;
            synth_job pj = job;
            pt.ne[0] = 4096 * ti.block_size;
            pt.ne[1] = 1;
            blocks = malloc(4096 * ti.type_size);
            if (!blocks) { free(buf); break; }
            pj.t = &pt; pj.out = blocks; pj.fast = 0;
            synth_rows(&pj, 0, 1);
            job.pool_blocks = blocks;
            job.pool_n = 4096;
        }
        if (pool) q4k_pool_run(pool, synth_rows, &job);
        else synth_rows(&job, 0, 1);
        free(blocks);
        if (q4k_gguf_writer_write_tensor(w, buf, &err) != Q4K_OK) {
            free(buf);
            break;
        }
        free(buf);
    }
    q4k_pool_destroy(pool);
    if (i < nt || q4k_gguf_writer_end(w, &err) != Q4K_OK) {
        fprintf(stderr, "q4k: synth: %s\n", i < nt && err.msg[0] ? err.msg : "writing failed");
        free(ts);
        q4k_gguf_writer_free(w);
        return EXIT_ERROR;
    }
    fprintf(stderr, "q4k: wrote %s: preset %s, %lld layers, vocab %lld, %s%s\n", out, p.name, (long long)p.n_layer,
            (long long)n_vocab, quant_name, fast ? " (fast)" : "");
    free(ts);
    q4k_gguf_writer_free(w);
    return EXIT_OK;
}

/* ---- q4k run ------------------------------------------------------------ */

static volatile sig_atomic_t g_interrupted;
static void on_sigint(int sig) { (void)sig; g_interrupted = 1; }

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void progress_bar(float f, void *user) {
    int i, w = 40, filled = (int)(f * (float)w);
    (void)user;
    fprintf(stderr, "\rloading [");
    for (i = 0; i < w; i++) fputc(i < filled ? '#' : ' ', stderr);
    fprintf(stderr, "] %3d%%", (int)(f * 100.0f));
    if (f >= 1.0f) fputc('\n', stderr);
}

static void log_to_stderr(q4k_log_level level, const char *msg, void *user) {
    int verbose = *(const int *)user;
    if ((int)level <= (verbose ? Q4K_LOG_DEBUG : Q4K_LOG_WARN)) fprintf(stderr, "q4k: %s\n", msg);
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0, n = 0;
    if (!f) return NULL;
    for (;;) {
        size_t got;
        if (n + 4096 + 1 > cap) {
            char *nb = (char *)realloc(buf, cap = (n + 4096 + 1) * 2);
            if (!nb) { free(buf); fclose(f); return NULL; }
            buf = nb;
        }
        got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

static void print_model_summary(const q4k_model *m, const char *path, int64_t n_ctx) {
    const q4k_hparams *hp = &m->hp;
    int64_t counts[Q4K_TYPE_COUNT], i;
    memset(counts, 0, sizeof counts);
    for (i = 0; i < q4k_gguf_tensor_count(m->gguf); i++) counts[q4k_gguf_tensor(m->gguf, i)->type]++;
    fprintf(stderr, "model: %s\n", path);
    fprintf(stderr, "  arch %s, %.3fB params, %lld layers, embd %lld, ff %lld, heads %lld/%lld (kv), head_dim %lld, vocab %lld%s\n",
            q4k_arch_name(hp->arch), (double)q4k_model_n_params(m) / 1e9, (long long)hp->n_layer,
            (long long)hp->n_embd, (long long)hp->n_ff, (long long)hp->n_head, (long long)hp->n_head_kv,
            (long long)hp->head_dim, (long long)hp->n_vocab, hp->tied_embeddings ? ", tied embeddings" : "");
    fprintf(stderr, "  quant mix:");
    for (i = 0; i < Q4K_TYPE_COUNT; i++)
        if (counts[i]) fprintf(stderr, " %s x%lld", q4k_type_name((int)i), (long long)counts[i]);
    fprintf(stderr, "\n  file %.2f GiB, weights %.2f GiB, context %lld (trained %lld), KV cache %.1f MiB\n",
            (double)q4k_gguf_file_size(m->gguf) / 1073741824.0, (double)q4k_model_weight_bytes(m) / 1073741824.0,
            (long long)n_ctx, (long long)hp->n_ctx_train,
            (double)(2ull * (uint64_t)hp->n_layer * (uint64_t)n_ctx * (uint64_t)(hp->n_head_kv * hp->head_dim) * 2ull) / 1048576.0);
}

/* --logits-out: "Q4KLOGIT" (8 bytes), u32 version 1, u32 n_vocab, then for
   every evaluated position: i32 token id, i32 position, n_vocab x f32. All
   little-endian. */
static int write_logits(FILE *f, const int32_t *toks, int64_t n, int64_t pos0, const float *logits, int64_t n_vocab) {
    int64_t j;
    for (j = 0; j < n; j++) {
        int32_t hdr[2];
        hdr[0] = toks[j];
        hdr[1] = (int32_t)(pos0 + j);
        if (fwrite(hdr, 4, 2, f) != 2 || fwrite(logits + j * n_vocab, 4, (size_t)n_vocab, f) != (size_t)n_vocab) return 0;
    }
    return 1;
}

typedef struct run_opts {
    const char *model, *prompt, *prompt_file, *system, *backend, *logits_out;
    int64_t n_predict, n_ctx;
    int n_threads, raw, interactive, verbose, quiet, ref, ignore_eos;
    q4k_sampler_params sp;
} run_opts;

typedef struct run_state {
    run_opts *o;
    q4k_model *model;
    q4k_tokenizer *tok;
    q4k_session *sess;
    q4k_sampler *sampler;
    q4k_chat_template tmpl;
    FILE *logits_f;
    q4k_utf8_stream utf8;
    int32_t prev;  /* the token whose logits come next */
    int64_t n_gen; /* tokens generated in this turn */
    double t_first;
    int32_t *toks;
    int64_t toks_cap;
    double t_prompt_ms, t_eval_ms;
    int64_t n_prompt, n_eval;
    int answer_open; /* the last answer stopped at -n, before its end-of-turn token */
} run_state;

/* tokenize text (special tokens parsed) into st->toks; returns the count or -1 */
static int64_t run_tokenize(run_state *st, const char *text, int add_bos) {
    int64_t n = 0;
    unsigned flags = Q4K_TOKENIZE_SPECIAL | (add_bos ? Q4K_TOKENIZE_ADD_BOS : 0u);
    q4k_error err;
    if (q4k_tokenize(st->tok, text, strlen(text), flags, NULL, 0, &n, &err) == Q4K_OK && n > st->toks_cap) {
        int32_t *nt = (int32_t *)realloc(st->toks, (size_t)n * sizeof(int32_t));
        if (!nt) {
            fprintf(stderr, "q4k: out of memory for %lld prompt tokens\n", (long long)n);
            return -1;
        }
        st->toks = nt;
        st->toks_cap = n;
    }
    if (q4k_tokenize(st->tok, text, strlen(text), flags, st->toks, st->toks_cap, &n, &err) == Q4K_OK) return n;
    fprintf(stderr, "q4k: cannot tokenize the prompt: %s\n", err.msg);
    return -1;
}

/* --logits-out wants the logits of every prompt position: all but the last
   prompt token are evaluated here, the last one by q4k_generate. */
static int run_prompt_prefix(run_state *st, const int32_t *toks, int64_t n) {
    q4k_error err;
    int64_t n_vocab = st->model->hp.n_vocab, pos0 = q4k_session_pos(st->sess);
    float *all;
    if (n <= 0) return 1;
    all = (float *)malloc((size_t)(n * n_vocab) * sizeof(float));
    if (!all) { fprintf(stderr, "q4k: out of memory for --logits-out\n"); return 0; }
    if (q4k_session_eval(st->sess, toks, n, Q4K_EVAL_ALL_LOGITS, all, &err) != Q4K_OK) {
        fprintf(stderr, "q4k: %s\n", err.msg);
        free(all);
        return 0;
    }
    if (!write_logits(st->logits_f, toks, n, pos0, all, n_vocab)) {
        fprintf(stderr, "q4k: cannot write --logits-out %s\n", st->o->logits_out);
        free(all);
        return 0;
    }
    free(all);
    return 1;
}

/* per sampled token: timing, the logits record, streamed UTF-8 text */
static int on_token(void *user, int32_t id, const float *logits) {
    run_state *st = (run_state *)user;
    const char *bytes;
    char out[64];
    size_t blen, len;
    if (st->n_gen == 0) st->t_first = now_ms();
    if (st->logits_f && !write_logits(st->logits_f, &st->prev, 1, q4k_session_pos(st->sess) - 1, logits, st->model->hp.n_vocab)) {
        fprintf(stderr, "q4k: cannot write --logits-out %s\n", st->o->logits_out);
        return 1;
    }
    st->prev = id;
    st->n_gen++;
    bytes = q4k_token_bytes(st->tok, id, &blen);
    while (blen > 0) {
        size_t used = q4k_utf8_stream_push(&st->utf8, bytes, blen, out, sizeof out, &len);
        fwrite(out, 1, len, stdout);
        bytes += used;
        blen -= used;
    }
    fflush(stdout);
    return g_interrupted != 0;
}

/* one turn: the prompt tokens, then generation; 0 on error */
static int run_turn(run_state *st, const int32_t *toks, int64_t n) {
    q4k_error err;
    q4k_result r;
    char out[8];
    size_t len;
    int64_t n_gen = 0, pos0 = q4k_session_pos(st->sess);
    double t0 = now_ms(), t1;
    if (st->logits_f && !run_prompt_prefix(st, toks, n - 1)) return 0;
    st->prev = toks[n - 1];
    st->n_gen = 0;
    q4k_utf8_stream_init(&st->utf8);
    r = q4k_generate(st->sess, st->tok, st->sampler, st->logits_f ? toks + n - 1 : toks, st->logits_f ? 1 : n,
                     st->o->n_predict,
                     (st->o->interactive ? Q4K_GEN_EVAL_EOG : 0u) | (st->o->ignore_eos ? Q4K_GEN_IGNORE_EOG : 0u),
                     on_token, st, &n_gen, &err);
    t1 = now_ms();
    /* q4k_generate ends with Q4K_OK before n_predict tokens only at an end-of-generation token */
    st->answer_open = r == Q4K_OK && st->o->n_predict >= 0 && n_gen >= st->o->n_predict;
    q4k_utf8_stream_flush(&st->utf8, out, sizeof out, &len);
    fwrite(out, 1, len, stdout);
    fflush(stdout);
    if (st->n_gen == 0) st->t_first = t1;
    st->t_prompt_ms += st->t_first - t0;
    st->t_eval_ms += t1 - st->t_first;
    {
        /* a prompt that did not fit was not evaluated: count what was */
        int64_t done = q4k_session_pos(st->sess) - pos0;
        st->n_prompt += done < n ? done : n;
        st->n_eval += done > n ? done - n : 0;
    }
    if (r == Q4K_ERR_CONTEXT_FULL) {
        fprintf(stderr, "\nq4k: context is full (%lld tokens): generation stops; use -c to allow more\n",
                (long long)st->sess->n_ctx);
        return q4k_session_pos(st->sess) > pos0; /* a prompt that never fit is an error */
    }
    if (r != Q4K_OK && r != Q4K_ERR_STOPPED) {
        fprintf(stderr, "q4k: %s\n", err.msg);
        return 0;
    }
    return 1;
}

static void print_timings(const run_state *st) {
    if (st->o->quiet) return;
    fprintf(stderr, "\nprompt eval time = %10.2f ms / %5lld tokens (%8.2f ms per token, %8.2f tokens per second)\n",
            st->t_prompt_ms, (long long)st->n_prompt, st->n_prompt ? st->t_prompt_ms / (double)st->n_prompt : 0.0,
            st->t_prompt_ms > 0 ? 1e3 * (double)st->n_prompt / st->t_prompt_ms : 0.0);
    fprintf(stderr, "       eval time = %10.2f ms / %5lld tokens (%8.2f ms per token, %8.2f tokens per second)\n",
            st->t_eval_ms, (long long)st->n_eval, st->n_eval ? st->t_eval_ms / (double)st->n_eval : 0.0,
            st->t_eval_ms > 0 ? 1e3 * (double)st->n_eval / st->t_eval_ms : 0.0);
}

static const char *run_help =
    "usage: q4k run MODEL [PROMPT] [options]\n"
    "  -p PROMPT          the prompt (or give it after MODEL)\n"
    "  -f FILE            read the prompt from FILE\n"
    "  -n N               tokens to generate (default 256; -1: until the context is full)\n"
    "  -t THREADS         CPU threads (default: all cores)\n"
    "  -c CTX             context size (default: min(trained, 4096))\n"
    "  --temp T           temperature (default 0.8; 0 = greedy)\n"
    "  --top-k K          (default 40; 0 = off)\n"
    "  --top-p P          (default 0.95; 1 = off)\n"
    "  --min-p P          (default 0.05; 0 = off)\n"
    "  --seed S           sampling seed (default: from the clock; echoed)\n"
    "  --system TEXT      system prompt (qwen2 default: \"" Q4K_QWEN_DEFAULT_SYSTEM "\")\n"
    "  --raw              send the prompt as is, without the chat template (chosen from the\n"
    "                     vocabulary: ChatML for qwen2, Llama 3, or Llama 2's [INST] for llama\n"
    "                     models with a SentencePiece vocabulary)\n"
    "  -i                 interactive chat; the conversation stays in the KV cache\n"
    "  --backend cpu      the backend (cpu)\n"
    "  --ignore-eos       go on past end-of-generation tokens (benchmarks)\n"
    "  --ref              reference mode: float activations (no 8-bit activation quantization)\n"
    "  --logits-out FILE  write the logits of every evaluated position: \"Q4KLOGIT\", u32 version 1,\n"
    "                     u32 n_vocab, then per position i32 token, i32 position, n_vocab x f32\n"
    "                     (little-endian)\n"
    "  -v                 verbose;  --quiet  no summary or timings\n"
    "exit codes: 0 ok, 1 error, 2 usage, 3 parity failure\n";

static int parse_num(const char *flag, const char *s, double lo, double hi, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (*end || end == s || v < lo || v > hi) {
        fprintf(stderr, "q4k: run: %s wants a number from %g to %g, not '%s'\n(see q4k run --help)\n", flag, lo, hi, s);
        return 0;
    }
    *out = v;
    return 1;
}

static int cmd_run(int argc, char **argv) {
    run_opts o;
    run_state st;
    q4k_error err;
    q4k_model_desc md;
    q4k_cpu_backend_desc bd;
    q4k_session_desc sd;
    q4k_backend *backend = NULL;
    char *prompt_buf = NULL, *text = NULL;
    int i, rc = EXIT_ERROR;
    int seed_given = 0;
    double v;
    memset(&o, 0, sizeof o);
    memset(&st, 0, sizeof st);
    o.n_predict = 256;
    o.sp = q4k_sampler_defaults();
    o.backend = "cpu";
    for (i = 0; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(run_help, stdout); return EXIT_OK; }
        else if (!strcmp(a, "-p") && has) o.prompt = argv[++i];
        else if (!strcmp(a, "-f") && has) o.prompt_file = argv[++i];
        else if (!strcmp(a, "-n") && has) { if (!parse_num(a, argv[++i], -1, 1e9, &v)) return EXIT_USAGE; o.n_predict = (int64_t)v; }
        else if (!strcmp(a, "-t") && has) { if (!parse_num(a, argv[++i], 1, 1024, &v)) return EXIT_USAGE; o.n_threads = (int)v; }
        else if (!strcmp(a, "-c") && has) { if (!parse_num(a, argv[++i], 1, 1 << 24, &v)) return EXIT_USAGE; o.n_ctx = (int64_t)v; }
        else if (!strcmp(a, "--temp") && has) { if (!parse_num(a, argv[++i], 0, 100, &v)) return EXIT_USAGE; o.sp.temp = (float)v; }
        else if (!strcmp(a, "--top-k") && has) { if (!parse_num(a, argv[++i], 0, 1e9, &v)) return EXIT_USAGE; o.sp.top_k = (int32_t)v; }
        else if (!strcmp(a, "--top-p") && has) { if (!parse_num(a, argv[++i], 0, 1, &v)) return EXIT_USAGE; o.sp.top_p = (float)v; }
        else if (!strcmp(a, "--min-p") && has) { if (!parse_num(a, argv[++i], 0, 1, &v)) return EXIT_USAGE; o.sp.min_p = (float)v; }
        else if (!strcmp(a, "--seed") && has) { if (!parse_num(a, argv[++i], 0, 1.8e19, &v)) return EXIT_USAGE; o.sp.seed = (uint64_t)v; seed_given = 1; }
        else if (!strcmp(a, "--system") && has) o.system = argv[++i];
        else if (!strcmp(a, "--backend") && has) o.backend = argv[++i];
        else if (!strcmp(a, "--logits-out") && has) o.logits_out = argv[++i];
        else if (!strcmp(a, "--raw")) o.raw = 1;
        else if (!strcmp(a, "-i")) o.interactive = 1;
        else if (!strcmp(a, "--ref")) o.ref = 1;
        else if (!strcmp(a, "--ignore-eos")) o.ignore_eos = 1;
        else if (!strcmp(a, "-v")) o.verbose = 1;
        else if (!strcmp(a, "--quiet")) o.quiet = 1;
        else if (a[0] == '-' && a[1]) return usage_error("run: unknown flag or missing value '%s'", a);
        else if (!o.model) o.model = a;
        else if (!o.prompt) o.prompt = a;
        else return usage_error("run: unexpected argument '%s'", a);
    }
    if (!o.model) return usage_error("run: missing MODEL%s", "");
    if (strcmp(o.backend, "cpu"))
        return usage_error("run: backend '%s' is not available (this build runs: cpu)", o.backend);
    if (o.prompt_file) {
        size_t len;
        if (o.prompt) return usage_error("run: give the prompt once (-f %s and a prompt)", o.prompt_file);
        prompt_buf = read_file(o.prompt_file, &len);
        if (!prompt_buf) { fprintf(stderr, "q4k: cannot read prompt file %s\n", o.prompt_file); return EXIT_ERROR; }
        o.prompt = prompt_buf;
    }
    if (!o.prompt && !o.interactive) return usage_error("run: missing PROMPT (or -p, -f, -i)%s", "");
    if (!seed_given) o.sp.seed = (uint64_t)time(NULL);
    st.o = &o;

    memset(&md, 0, sizeof md);
    md.log = log_to_stderr;
    md.log_user = &o.verbose;
    if (!o.quiet && isatty(2)) md.progress = progress_bar;
    {
        double t0 = now_ms();
        if (q4k_model_load(o.model, &md, &st.model, &err) != Q4K_OK) {
            fprintf(stderr, "q4k: %s\n", err.msg);
            free(prompt_buf);
            return EXIT_ERROR;
        }
        if (!o.quiet) fprintf(stderr, "load time = %.2f ms\n", now_ms() - t0);
    }
    if (q4k_tokenizer_from_gguf(st.model->gguf, &st.tok, &err) != Q4K_OK) {
        fprintf(stderr, "q4k: %s\n", err.msg);
        goto done;
    }
    if (st.model->hp.arch == Q4K_ARCH_QWEN2 && q4k_tokenizer_find(st.tok, "<|im_start|>") >= 0) st.tmpl = Q4K_CHAT_CHATML;
    else if (q4k_tokenizer_find(st.tok, "<|start_header_id|>") >= 0) st.tmpl = Q4K_CHAT_LLAMA3;
    else if (st.model->hp.arch == Q4K_ARCH_LLAMA && !strcmp(q4k_tokenizer_pre(st.tok), "spm")) st.tmpl = Q4K_CHAT_LLAMA2;
    if (st.tmpl == Q4K_CHAT_NONE && !o.raw) {
        fprintf(stderr, "q4k: this model's vocabulary has no known chat template: the prompt is sent raw\n");
        o.raw = 1;
    }
    if (o.n_ctx == 0) o.n_ctx = st.model->hp.n_ctx_train < 4096 ? st.model->hp.n_ctx_train : 4096;
    if (!o.quiet) {
        print_model_summary(st.model, o.model, o.n_ctx);
        fprintf(stderr, "sampling: temp %.2f, top-k %d, top-p %.2f, min-p %.2f, seed %llu\n", (double)o.sp.temp,
                (int)o.sp.top_k, (double)o.sp.top_p, (double)o.sp.min_p, (unsigned long long)o.sp.seed);
    }
    memset(&bd, 0, sizeof bd);
    bd.n_threads = o.n_threads;
    if (q4k_cpu_backend_create(&bd, &backend, &err) != Q4K_OK) {
        fprintf(stderr, "q4k: %s\n", err.msg);
        goto done;
    }
    memset(&sd, 0, sizeof sd);
    sd.n_ctx = o.n_ctx;
    sd.act = o.ref ? Q4K_ACT_F32 : Q4K_ACT_Q8;
    sd.trace_layer = -1;
    if (q4k_session_create(backend, st.model, &sd, &st.sess, &err) != Q4K_OK) {
        fprintf(stderr, "q4k: %s\n", err.msg);
        goto done;
    }
    st.sampler = q4k_sampler_create(&o.sp, st.model->hp.n_vocab);
    if (!st.sampler) { fprintf(stderr, "q4k: out of memory\n"); goto done; }
    if (o.logits_out) {
        uint32_t hdr[2];
        hdr[0] = 1;
        hdr[1] = (uint32_t)st.model->hp.n_vocab;
        st.logits_f = fopen(o.logits_out, "wb");
        if (!st.logits_f || fwrite("Q4KLOGIT", 1, 8, st.logits_f) != 8 || fwrite(hdr, 4, 2, st.logits_f) != 2) {
            fprintf(stderr, "q4k: cannot write --logits-out %s\n", o.logits_out);
            goto done;
        }
    }
    signal(SIGINT, on_sigint);

    {
        int first = 1;
        char line[8192];
        const char *user = o.prompt;
        for (;;) {
            int64_t n;
            if (!user) {
                if (!o.interactive) break;
                fprintf(stderr, "\n> ");
                if (!fgets(line, sizeof line, stdin)) break;
                line[strcspn(line, "\n")] = 0;
                user = line;
            }
            free(text);
            if (o.raw) {
                text = (char *)malloc(strlen(user) + 1);
                if (text) strcpy(text, user);
            } else {
                q4k_chat_msg msgs[2];
                int nm = 0;
                const char *sys = o.system ? o.system : (st.tmpl == Q4K_CHAT_CHATML ? Q4K_QWEN_DEFAULT_SYSTEM : NULL);
                if (first && sys) { msgs[nm].role = "system"; msgs[nm].content = sys; nm++; }
                msgs[nm].role = "user"; msgs[nm].content = user; nm++;
                text = q4k_chat_format(st.tmpl, msgs, nm, 1);
                /* a later turn follows the end-of-turn token of the last
                   answer; an answer cut by -n gets that token here */
                if (!first && text) {
                    const char *close = !st.answer_open ? ""
                                      : st.tmpl == Q4K_CHAT_CHATML ? "<|im_end|>"
                                      : st.tmpl == Q4K_CHAT_LLAMA3 ? "<|eot_id|>" : "</s>";
                    const char *nl = st.tmpl == Q4K_CHAT_CHATML ? "\n" : "";
                    size_t lc = strlen(close), ln = strlen(nl);
                    char *t2 = (char *)malloc(lc + ln + strlen(text) + 1);
                    if (t2) {
                        memcpy(t2, close, lc);
                        memcpy(t2 + lc, nl, ln);
                        strcpy(t2 + lc + ln, text);
                    }
                    q4k_free(text);
                    text = t2;
                } else if (text) {
                    char *t2 = (char *)malloc(strlen(text) + 1);
                    if (t2) strcpy(t2, text);
                    q4k_free(text);
                    text = t2;
                }
            }
            if (!text) { fprintf(stderr, "q4k: out of memory\n"); goto done; }
            /* the Llama 2 template writes BOS itself, as <s> */
            n = run_tokenize(&st, text, first && (o.raw || st.tmpl != Q4K_CHAT_LLAMA2));
            if (n < 0) goto done;
            if (n == 0) { user = NULL; continue; }
            if (!run_turn(&st, st.toks, n)) goto timings;
            first = 0;
            user = NULL;
            if (g_interrupted) break;
            if (!o.interactive) break;
        }
        printf("\n");
    }
    rc = EXIT_OK;
timings:
    print_timings(&st);
done:
    if (st.logits_f) fclose(st.logits_f);
    free(text);
    free(st.toks);
    q4k_sampler_free(st.sampler);
    q4k_session_free(st.sess);
    q4k_backend_destroy(backend);
    q4k_tokenizer_free(st.tok);
    q4k_model_free(st.model);
    free(prompt_buf);
    return rc;
}

/* ---- q4k bench ---------------------------------------------------------- */

static const char *bench_help =
    "usage: q4k bench MODEL [-p N] [-n N] [-t THREADS] [--ref] [--bw GB/s] [--backend cpu]\n"
    "  evaluates N prompt tokens in one pass (default 128), then N single-token decode\n"
    "  steps (default 32), and prints tokens/s and the bytes a decode step reads.\n"
    "  --bw GB/s: the device's memory bandwidth, to print the fraction of the floor\n"
    "  (decode time >= weight bytes / bandwidth) that decode reached.\n";

static int cmd_bench(int argc, char **argv) {
    const char *path = NULL, *backend_name = "cpu";
    int64_t n_prompt = 128, n_gen = 32, i, n_vocab;
    int n_threads = 0, ref = 0;
    double bw = 0, v, t0, t_prompt, t_gen;
    q4k_model *m = NULL;
    q4k_backend *b = NULL;
    q4k_session *s = NULL;
    q4k_session_desc sd;
    q4k_cpu_backend_desc bd;
    q4k_error err;
    int32_t *toks = NULL;
    float *logits = NULL;
    uint64_t step_bytes;
    q4k_cpu_path path_used;
    int rc = EXIT_ERROR;
    for (i = 0; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(bench_help, stdout); return EXIT_OK; }
        else if (!strcmp(a, "-p") && has) { if (!parse_num(a, argv[++i], 1, 1 << 20, &v)) return EXIT_USAGE; n_prompt = (int64_t)v; }
        else if (!strcmp(a, "-n") && has) { if (!parse_num(a, argv[++i], 1, 1 << 20, &v)) return EXIT_USAGE; n_gen = (int64_t)v; }
        else if (!strcmp(a, "-t") && has) { if (!parse_num(a, argv[++i], 1, 1024, &v)) return EXIT_USAGE; n_threads = (int)v; }
        else if (!strcmp(a, "--bw") && has) { if (!parse_num(a, argv[++i], 0.001, 1e6, &v)) return EXIT_USAGE; bw = v; }
        else if (!strcmp(a, "--backend") && has) backend_name = argv[++i];
        else if (!strcmp(a, "--ref")) ref = 1;
        else if (a[0] == '-' && a[1]) return usage_error("bench: unknown flag or missing value '%s'", a);
        else if (!path) path = a;
        else return usage_error("bench: unexpected argument '%s'", a);
    }
    if (!path) return usage_error("bench: missing MODEL%s", "");
    if (strcmp(backend_name, "cpu")) return usage_error("bench: backend '%s' is not available (this build runs: cpu)", backend_name);
    if (q4k_model_load(path, NULL, &m, &err) != Q4K_OK) { fprintf(stderr, "q4k: %s\n", err.msg); return EXIT_ERROR; }
    memset(&bd, 0, sizeof bd);
    bd.n_threads = n_threads;
    memset(&sd, 0, sizeof sd);
    sd.n_ctx = n_prompt + n_gen + 1;
    sd.act = ref ? Q4K_ACT_F32 : Q4K_ACT_Q8;
    sd.trace_layer = -1;
    n_vocab = m->hp.n_vocab;
    toks = (int32_t *)malloc((size_t)n_prompt * sizeof(int32_t));
    logits = (float *)malloc((size_t)n_vocab * sizeof(float));
    if (!toks || !logits) { fprintf(stderr, "q4k: out of memory\n"); goto done; }
    if (q4k_cpu_backend_create(&bd, &b, &err) || q4k_session_create(b, m, &sd, &s, &err)) {
        fprintf(stderr, "q4k: %s\n", err.msg);
        goto done;
    }
    for (i = 0; i < n_prompt; i++) toks[i] = (int32_t)((i * 7919 + 13) % n_vocab);
    /* warm-up: one token through every weight, then forget it */
    if (q4k_session_eval(s, toks, 1, 0, logits, &err)) { fprintf(stderr, "q4k: %s\n", err.msg); goto done; }
    q4k_session_rewind(s, 0);
    t0 = now_ms();
    if (q4k_session_eval(s, toks, n_prompt, 0, logits, &err)) { fprintf(stderr, "q4k: %s\n", err.msg); goto done; }
    t_prompt = now_ms() - t0;
    t0 = now_ms();
    for (i = 0; i < n_gen; i++) {
        int32_t id = (int32_t)q4k_argmax(logits, n_vocab);
        if (q4k_session_eval(s, &id, 1, 0, logits, &err)) { fprintf(stderr, "q4k: %s\n", err.msg); goto done; }
    }
    t_gen = now_ms() - t0;
    /* a decode step reads every weight once, but only one row of the embedding */
    step_bytes = q4k_model_weight_bytes(m) - m->tok_embd->nbytes + (uint64_t)q4k_row_size(m->tok_embd->type, m->hp.n_embd);
    if (m->hp.tied_embeddings) step_bytes += m->tok_embd->nbytes;
    printf("model: %s (%s, %lld layers, %.2f GiB of weights)\n", path, q4k_arch_name(m->hp.arch),
           (long long)m->hp.n_layer, (double)q4k_model_weight_bytes(m) / 1073741824.0);
    if (q4k_cpu_resolve_path(Q4K_CPU_AUTO, &path_used, &err) != Q4K_OK) path_used = Q4K_CPU_SCALAR;
    printf("backend: cpu, %s kernels, %d threads, %s activations\n", q4k_cpu_path_name(path_used),
           n_threads ? n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN), ref ? "f32" : "q8");
    printf("prompt: %lld tokens in %.1f ms: %.2f tokens/s\n", (long long)n_prompt, t_prompt, 1e3 * (double)n_prompt / t_prompt);
    printf("decode: %lld tokens in %.1f ms: %.2f tokens/s (%.2f ms/token)\n", (long long)n_gen, t_gen,
           1e3 * (double)n_gen / t_gen, t_gen / (double)n_gen);
    printf("decode reads %.3f GB a token: %.1f GB/s", (double)step_bytes / 1e9, (double)step_bytes / 1e6 / (t_gen / (double)n_gen));
    if (bw > 0)
        printf(", %.0f%% of the %.0f GB/s floor (%.1f tokens/s at most)", 100.0 * ((double)step_bytes / 1e6 / (t_gen / (double)n_gen)) / bw,
               bw, bw * 1e9 / (double)step_bytes);
    printf("\n");
    rc = EXIT_OK;
done:
    q4k_session_free(s);
    q4k_backend_destroy(b);
    q4k_model_free(m);
    free(toks);
    free(logits);
    return rc;
}

int main(int argc, char **argv) {
    const char *cmd;
    if (argc < 2) {
        fputs(usage_text, stderr);
        return EXIT_USAGE;
    }
    cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fputs(usage_text, stdout);
        return EXIT_OK;
    }
    if (!strcmp(cmd, "--version")) return cmd_version();
    if (!strcmp(cmd, "info")) return cmd_info(argc - 2, argv + 2);
    if (!strcmp(cmd, "devices")) return cmd_devices(argc - 2, argv + 2);
    if (!strcmp(cmd, "synth")) return cmd_synth(argc - 2, argv + 2);
    if (!strcmp(cmd, "run")) return cmd_run(argc - 2, argv + 2);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc - 2, argv + 2);
    return usage_error("unknown command '%s'", cmd);
}
