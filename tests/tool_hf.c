/* Helper for tests/hf_compare.py (the transformers oracle):

     tool_hf write MANIFEST OUT.gguf [f32|q8_0]
        MANIFEST lines:  kv KEY u32|f32|str VALUE
                         tensor NAME NE0 [NE1] FILE   (FILE: raw little-endian float32)
        Matrices (2-d) are stored as the given type, vectors as F32; written
        with q4k's GGUF writer.
     tool_hf logits MODEL.gguf f32|q8 TOKEN...
        evaluates the tokens in one pass on the CPU backend and writes the
        float32 logits of every position to stdout (n x n_vocab); the KV
        cache is f16, or f32 with Q4K_TEST_KV=f32.          */
#include "q4k.h"

#include <stdlib.h>
#include <string.h>

static float *read_floats(const char *path, size_t n) {
    FILE *f = fopen(path, "rb");
    float *x = (float *)malloc(n * sizeof(float));
    if (!f || !x || fread(x, sizeof(float), n, f) != n) {
        fprintf(stderr, "tool_hf: cannot read %zu floats from %s\n", n, path);
        exit(1);
    }
    fclose(f);
    return x;
}

static int cmd_write(const char *manifest, const char *out, const char *type_name) {
    FILE *f = fopen(manifest, "r");
    char line[4096];
    q4k_gguf_writer *w = q4k_gguf_writer_new(32);
    q4k_type mtype = strcmp(type_name, "q8_0") ? Q4K_TYPE_F32 : Q4K_TYPE_Q8_0;
    void *bufs[4096];
    int nbuf = 0, i;
    q4k_error err;
    if (!f) { fprintf(stderr, "tool_hf: cannot open %s\n", manifest); return 1; }
    while (fgets(line, sizeof line, f)) {
        char a[512], b[512], c[512], d[512], e[512];
        int n = sscanf(line, "%511s %511s %511s %511s %511s", a, b, c, d, e);
        if (n >= 4 && !strcmp(a, "kv")) {
            int off = 0;
            char *val;
            sscanf(line, "%*s %*s %*s %n", &off);
            val = line + off;
            val[strcspn(val, "\n")] = 0;
            if (!strcmp(c, "u32")) q4k_gguf_writer_set_u32(w, b, (uint32_t)strtoul(val, NULL, 10));
            else if (!strcmp(c, "f32")) q4k_gguf_writer_set_f32(w, b, strtof(val, NULL));
            else q4k_gguf_writer_set_str(w, b, val);
        } else if (n >= 4 && !strcmp(a, "tensor")) {
            int64_t ne[2];
            const char *file = n == 5 ? e : d;
            float *x;
            ne[0] = strtoll(c, NULL, 10);
            ne[1] = n == 5 ? strtoll(d, NULL, 10) : 1;
            x = read_floats(file, (size_t)(ne[0] * ne[1]));
            bufs[nbuf++] = x;
            if (n == 5 && mtype != Q4K_TYPE_F32) {
                size_t rs = q4k_row_size(mtype, ne[0]);
                unsigned char *q = (unsigned char *)malloc(rs * (size_t)ne[1]);
                int64_t r;
                for (r = 0; r < ne[1]; r++) q4k_quantize_row(mtype, x + r * ne[0], q + (size_t)r * rs, ne[0]);
                bufs[nbuf++] = q;
                q4k_gguf_writer_add_tensor(w, b, mtype, 2, ne, q);
            } else {
                q4k_gguf_writer_add_tensor(w, b, Q4K_TYPE_F32, n == 5 ? 2 : 1, ne, x);
            }
        }
    }
    fclose(f);
    if (q4k_gguf_writer_write_file(w, out, &err) != Q4K_OK) {
        fprintf(stderr, "tool_hf: %s\n", err.msg);
        return 1;
    }
    q4k_gguf_writer_free(w);
    for (i = 0; i < nbuf; i++) free(bufs[i]);
    return 0;
}

static int cmd_logits(const char *path, const char *act, int n, char **toks_s) {
    q4k_model *m;
    q4k_backend *b;
    q4k_session *s;
    q4k_session_desc sd;
    q4k_error err;
    int32_t *toks = (int32_t *)malloc((size_t)n * sizeof(int32_t));
    float *logits;
    int i;
    for (i = 0; i < n; i++) toks[i] = (int32_t)atoi(toks_s[i]);
    if (q4k_model_load(path, NULL, &m, &err) || q4k_cpu_backend_create(NULL, &b, &err)) {
        fprintf(stderr, "tool_hf: %s\n", err.msg);
        return 1;
    }
    memset(&sd, 0, sizeof sd);
    sd.n_ctx = n;
    sd.act = strcmp(act, "f32") ? Q4K_ACT_Q8 : Q4K_ACT_F32;
    /* Q4K_TEST_KV=f32: an f32 KV cache (tests/ref_f64.py); default f16 */
    sd.kv = getenv("Q4K_TEST_KV") && !strcmp(getenv("Q4K_TEST_KV"), "f32") ? Q4K_KV_F32 : Q4K_KV_F16;
    logits = (float *)malloc((size_t)n * (size_t)m->hp.n_vocab * sizeof(float));
    if (q4k_session_create(b, m, &sd, &s, &err) ||
        q4k_session_eval(s, toks, n, Q4K_EVAL_ALL_LOGITS, logits, &err)) {
        fprintf(stderr, "tool_hf: %s\n", err.msg);
        return 1;
    }
    fwrite(logits, sizeof(float), (size_t)n * (size_t)m->hp.n_vocab, stdout);
    q4k_session_free(s);
    q4k_backend_destroy(b);
    q4k_model_free(m);
    free(logits);
    free(toks);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 4 && !strcmp(argv[1], "write")) return cmd_write(argv[2], argv[3], argc > 4 ? argv[4] : "f32");
    if (argc >= 5 && !strcmp(argv[1], "logits")) return cmd_logits(argv[2], argv[3], argc - 4, argv + 4);
    fprintf(stderr, "usage: tool_hf write MANIFEST OUT.gguf [f32|q8_0] | tool_hf logits MODEL.gguf f32|q8 TOKEN...\n");
    return 2;
}
