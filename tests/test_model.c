/* The CPU forward pass against a plain float64 reference written here, plus
   model validation, sessions, sampler and chat templates. */
#define Q4K_IMPLEMENTATION
#define Q4K_FAULTS /* test_perturbation_growth perturbs every matrix product */
#include "q4k.h"
#include "t.h"
#include <pthread.h>
#include <unistd.h>
#include "t_share.h"

/* ---- a small random model written with our GGUF writer ------------------ */

typedef struct tm_cfg {
    q4k_arch arch;
    int64_t n_embd, n_head, n_head_kv, n_ff, n_vocab, n_layer, n_rot;
    int64_t n_layer_key; /* block_count written, when not 0 */
    int tied, rope_freqs;
    q4k_type wtype;
    uint64_t seed;
} tm_cfg;

typedef struct tm_file {
    q4k_gguf_writer *w;
    float *bufs[512];
    void *qbufs[512];
    int nb, nq;
    t_rng rng;
} tm_file;

static float *tm_gauss(tm_file *f, int64_t n, double std, double mean) {
    float *x = (float *)malloc((size_t)n * sizeof(float));
    int64_t i;
    for (i = 0; i < n; i++) x[i] = (float)(mean + std * t_rng_gauss(&f->rng));
    f->bufs[f->nb++] = x;
    return x;
}

static void tm_tensor(tm_file *f, const char *name, q4k_type type, int64_t ne0, int64_t ne1, double std, double mean) {
    int64_t ne[2];
    float *x = tm_gauss(f, ne0 * (ne1 ? ne1 : 1), std, mean);
    ne[0] = ne0;
    ne[1] = ne1;
    if (type == Q4K_TYPE_F32) {
        q4k_gguf_writer_add_tensor(f->w, name, type, ne1 ? 2 : 1, ne, x);
    } else {
        size_t rs = q4k_row_size(type, ne0);
        unsigned char *q = (unsigned char *)malloc(rs * (size_t)ne1);
        int64_t r;
        for (r = 0; r < ne1; r++) {
            if (q4k_quantize_row(type, x + r * ne0, q + (size_t)r * rs, ne0)) continue;
            /* no quantizer (Q5_K): random blocks, centred: every min equals its
               scale and dmin = 16 d, so a value is d * sc * (q - 16) */
            {
                size_t i, j, bs = q4k_type_traits(type).type_size;
                uint16_t d = q4k_fp32_to_fp16((float)(std / 60.0)), dmin = q4k_fp32_to_fp16((float)(16.0 * std / 60.0));
                unsigned char *row = q + (size_t)r * rs;
                for (i = 0; i < rs; i++) row[i] = (unsigned char)t_rng_next(&f->rng);
                for (i = 0; i < rs; i += bs) {
                    unsigned char *sc = row + i + 4;
                    memcpy(row + i, &d, 2);
                    memcpy(row + i + 2, &dmin, 2);
                    for (j = 0; j < 4; j++) {
                        sc[j] &= 0x47; /* scales up to 7 (+64 for the high bits of 4-7) */
                        sc[j + 4] = sc[j];
                        sc[j + 8] = (unsigned char)((sc[j + 8] & 7) * 0x11);
                    }
                }
            }
        }
        f->qbufs[f->nq++] = q;
        q4k_gguf_writer_add_tensor(f->w, name, type, 2, ne, q);
    }
}

/* Writes the model; `skip` drops one tensor, `extra` adds one, for the validation tests. */
static int tm_write(const tm_cfg *c, const char *path, const char *skip, const char *extra, const char *rope_scaling) {
    tm_file f;
    const char *arch = c->arch == Q4K_ARCH_QWEN2 ? "qwen2" : "llama";
    char key[128], name[96];
    int64_t hd = c->n_embd / c->n_head, qd = c->n_head * hd, kvd = c->n_head_kv * hd, l;
    int i, ok;
    q4k_error err;
    memset(&f, 0, sizeof f);
    f.rng.s = c->seed * 7919 + 1;
    f.w = q4k_gguf_writer_new(32);
    q4k_gguf_writer_set_str(f.w, "general.architecture", arch);
#define KEY_U32(k, v) snprintf(key, sizeof key, "%s." k, arch), q4k_gguf_writer_set_u32(f.w, key, (uint32_t)(v))
    KEY_U32("block_count", c->n_layer_key ? c->n_layer_key : c->n_layer);
    KEY_U32("context_length", 256);
    KEY_U32("embedding_length", c->n_embd);
    KEY_U32("feed_forward_length", c->n_ff);
    KEY_U32("attention.head_count", c->n_head);
    KEY_U32("attention.head_count_kv", c->n_head_kv);
    if (c->n_rot) KEY_U32("rope.dimension_count", c->n_rot);
#undef KEY_U32
    snprintf(key, sizeof key, "%s.rope.freq_base", arch);
    q4k_gguf_writer_set_f32(f.w, key, 10000.0f);
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", arch);
    q4k_gguf_writer_set_f32(f.w, key, 1e-6f);
    if (rope_scaling) {
        snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
        q4k_gguf_writer_set_str(f.w, key, rope_scaling);
    }
#define T(nm, type, ne0, ne1, std, mean)                                           \
    if (!skip || strcmp(skip, nm)) tm_tensor(&f, nm, type, ne0, ne1, std, mean)
    T("token_embd.weight", c->wtype, c->n_embd, c->n_vocab, 1.0, 0.0);
    T("output_norm.weight", Q4K_TYPE_F32, c->n_embd, 0, 0.1, 1.0);
    if (!c->tied) T("output.weight", c->wtype, c->n_embd, c->n_vocab, 1.0 / sqrt((double)c->n_embd), 0.0);
    if (c->rope_freqs) T("rope_freqs.weight", Q4K_TYPE_F32, (c->n_rot ? c->n_rot : hd) / 2, 0, 0.5, 2.0);
    for (l = 0; l < c->n_layer; l++) {
        double sd = 1.0 / sqrt((double)c->n_embd), deep = 1.0 / sqrt(2.0 * (double)c->n_layer);
#define LT(suffix, type, ne0, ne1, std, mean)                                     \
    snprintf(name, sizeof name, "blk.%d." suffix, (int)l);                        \
    T(name, type, ne0, ne1, std, mean)
        LT("attn_norm.weight", Q4K_TYPE_F32, c->n_embd, 0, 0.1, 1.0);
        LT("attn_q.weight", c->wtype, c->n_embd, qd, sd, 0.0);
        LT("attn_k.weight", c->wtype, c->n_embd, kvd, sd, 0.0);
        LT("attn_v.weight", c->wtype, c->n_embd, kvd, sd, 0.0);
        if (c->arch == Q4K_ARCH_QWEN2) {
            LT("attn_q.bias", Q4K_TYPE_F32, qd, 0, 0.5, 0.0);
            LT("attn_k.bias", Q4K_TYPE_F32, kvd, 0, 0.5, 0.0);
            LT("attn_v.bias", Q4K_TYPE_F32, kvd, 0, 0.5, 0.0);
        }
        LT("attn_output.weight", c->wtype, qd, c->n_embd, deep / sqrt((double)qd), 0.0);
        LT("ffn_norm.weight", Q4K_TYPE_F32, c->n_embd, 0, 0.1, 1.0);
        LT("ffn_gate.weight", c->wtype, c->n_embd, c->n_ff, sd, 0.0);
        LT("ffn_up.weight", c->wtype, c->n_embd, c->n_ff, sd, 0.0);
        LT("ffn_down.weight", c->wtype, c->n_ff, c->n_embd, deep / sqrt((double)c->n_ff), 0.0);
#undef LT
    }
    if (extra) T(extra, Q4K_TYPE_F32, 32, 0, 1.0, 0.0);
#undef T
    ok = q4k_gguf_writer_write_file(f.w, path, &err) == Q4K_OK;
    if (!ok) printf("  write %s: %s\n", path, err.msg);
    q4k_gguf_writer_free(f.w);
    for (i = 0; i < f.nb; i++) free(f.bufs[i]);
    for (i = 0; i < f.nq; i++) free(f.qbufs[i]);
    return ok;
}

/* ---- the float64 reference ---------------------------------------------- */

typedef struct ref_model {
    const q4k_model *m;
    double *kc, *vc; /* [layer][pos][kv_dim] */
    int64_t pos, n_ctx;
    double max_attn_prob_sum; /* sum over heads and positions > 0 of the largest attention weight */
    double uniform_sum;       /* the same for uniform attention (1 / (pos + 1)) */
    int64_t n_attn;
    /* the trace of the last token, as q4k_session_trace_* gives it */
    int kv_f16;                       /* round cached K and V to f16, as Q4K_KV_F16 does */
    int64_t tr_layer;                 /* layer whose ops are kept (-1: none) */
    double *tr_layers;                /* [n_layer][n_embd] */
    double *tr_ops[Q4K_OP_COUNT];     /* of tr_layer */
    double *tr_stages[Q4K_STAGE_COUNT];
} ref_model;

static void ref_keep(double **dst, const double *src, int64_t n) {
    if (!*dst) *dst = (double *)malloc((size_t)n * 8);
    memcpy(*dst, src, (size_t)n * 8);
}

static double *ref_deq(const q4k_tensor *t) {
    int64_t rows = t->ne[1] * t->ne[2] * t->ne[3], r, cols = t->ne[0];
    size_t rs = q4k_row_size(t->type, cols);
    float *tmp = (float *)malloc((size_t)cols * sizeof(float));
    double *out = (double *)malloc((size_t)(rows * cols) * sizeof(double));
    int64_t i;
    for (r = 0; r < rows; r++) {
        q4k_dequantize_row(t->type, (const char *)t->data + (size_t)r * rs, tmp, cols);
        for (i = 0; i < cols; i++) out[r * cols + i] = tmp[i];
    }
    free(tmp);
    return out;
}

/* y[rows] = W x */
static void ref_mv(const q4k_tensor *t, const double *x, double *y) {
    double *w = ref_deq(t);
    int64_t r, c, cols = t->ne[0];
    for (r = 0; r < t->ne[1]; r++) {
        double s = 0;
        for (c = 0; c < cols; c++) s += w[r * cols + c] * x[c];
        y[r] = s;
    }
    free(w);
}

static void ref_norm(const double *x, const q4k_tensor *w, double *y, int64_t n, double eps) {
    double ss = 0;
    int64_t i;
    const float *wf = (const float *)w->data;
    for (i = 0; i < n; i++) ss += x[i] * x[i];
    ss = 1.0 / sqrt(ss / (double)n + eps);
    for (i = 0; i < n; i++) y[i] = x[i] * ss * wf[i];
}

/* rotate with the pairing of the architecture, angles written out here */
static void ref_rope(double *v, int64_t pos, const q4k_model *m) {
    const q4k_hparams *hp = &m->hp;
    int64_t i, half = hp->n_rot / 2;
    for (i = 0; i < half; i++) {
        double freq = pow((double)hp->rope_freq_base, -(double)(2 * i) / (double)hp->n_rot);
        double ang, c, s, x0, x1;
        int64_t a = hp->arch == Q4K_ARCH_QWEN2 ? i : 2 * i, b = hp->arch == Q4K_ARCH_QWEN2 ? i + half : 2 * i + 1;
        if (m->rope_freqs) freq /= ((const float *)m->rope_freqs->data)[i];
        ang = (double)pos * freq;
        c = cos(ang);
        s = sin(ang);
        x0 = v[a];
        x1 = v[b];
        v[a] = x0 * c - x1 * s;
        v[b] = x0 * s + x1 * c;
    }
}

static void ref_token(ref_model *R, int32_t tok, double *logits) {
    const q4k_model *m = R->m;
    const q4k_hparams *hp = &m->hp;
    int64_t d = hp->n_embd, hd = hp->head_dim, qd = hp->n_head * hd, kvd = hp->n_head_kv * hd, ff = hp->n_ff;
    double *x = (double *)calloc((size_t)d, 8), *xb = (double *)calloc((size_t)d, 8), *tmp = (double *)calloc((size_t)d, 8);
    double *q = (double *)calloc((size_t)qd, 8), *k = (double *)calloc((size_t)kvd, 8), *v = (double *)calloc((size_t)kvd, 8);
    double *att = (double *)calloc((size_t)qd, 8), *g = (double *)calloc((size_t)ff, 8), *u = (double *)calloc((size_t)ff, 8);
    double *sc = (double *)calloc((size_t)R->n_ctx, 8);
    double *emb = ref_deq(m->tok_embd);
    int64_t l, i, h, t, j;
    for (i = 0; i < d; i++) x[i] = emb[(int64_t)tok * d + i];
    free(emb);
    ref_keep(&R->tr_stages[Q4K_STAGE_EMBEDDING], x, d);
    for (l = 0; l < hp->n_layer; l++) {
        const q4k_layer *L = &m->layers[l];
#define KEEP(op, buf, n) if (l == R->tr_layer) ref_keep(&R->tr_ops[op], buf, n)
        ref_norm(x, L->attn_norm, xb, d, hp->norm_eps);
        KEEP(Q4K_OP_ATTN_NORM, xb, d);
        ref_mv(L->wq, xb, q);
        ref_mv(L->wk, xb, k);
        ref_mv(L->wv, xb, v);
        if (L->bq) {
            for (i = 0; i < qd; i++) q[i] += ((const float *)L->bq->data)[i];
            for (i = 0; i < kvd; i++) k[i] += ((const float *)L->bk->data)[i];
            for (i = 0; i < kvd; i++) v[i] += ((const float *)L->bv->data)[i];
        }
        KEEP(Q4K_OP_Q, q, qd);
        KEEP(Q4K_OP_K, k, kvd);
        KEEP(Q4K_OP_V, v, kvd);
        for (h = 0; h < hp->n_head; h++) ref_rope(q + h * hd, R->pos, m);
        for (h = 0; h < hp->n_head_kv; h++) ref_rope(k + h * hd, R->pos, m);
        KEEP(Q4K_OP_Q_ROPE, q, qd);
        KEEP(Q4K_OP_K_ROPE, k, kvd);
        memcpy(R->kc + (l * R->n_ctx + R->pos) * kvd, k, (size_t)kvd * 8);
        memcpy(R->vc + (l * R->n_ctx + R->pos) * kvd, v, (size_t)kvd * 8);
        if (R->kv_f16)
            for (i = 0; i < kvd; i++) {
                R->kc[(l * R->n_ctx + R->pos) * kvd + i] = q4k_fp16_to_fp32(q4k_fp32_to_fp16((float)k[i]));
                R->vc[(l * R->n_ctx + R->pos) * kvd + i] = q4k_fp16_to_fp32(q4k_fp32_to_fp16((float)v[i]));
            }
        for (h = 0; h < hp->n_head; h++) {
            int64_t kvh = h / (hp->n_head / hp->n_head_kv);
            double mx = -1e300, sum = 0, pmax = 0;
            for (t = 0; t <= R->pos; t++) {
                const double *kk = R->kc + (l * R->n_ctx + t) * kvd + kvh * hd;
                double s = 0;
                for (j = 0; j < hd; j++) s += q[h * hd + j] * kk[j];
                sc[t] = s / sqrt((double)hd);
                if (sc[t] > mx) mx = sc[t];
            }
            for (t = 0; t <= R->pos; t++) sum += (sc[t] = exp(sc[t] - mx));
            for (j = 0; j < hd; j++) att[h * hd + j] = 0;
            for (t = 0; t <= R->pos; t++) {
                const double *vv = R->vc + (l * R->n_ctx + t) * kvd + kvh * hd;
                if (sc[t] / sum > pmax) pmax = sc[t] / sum;
                for (j = 0; j < hd; j++) att[h * hd + j] += sc[t] / sum * vv[j];
            }
            if (R->pos > 0) {
                R->max_attn_prob_sum += pmax;
                R->uniform_sum += 1.0 / (double)(R->pos + 1);
                R->n_attn++;
            }
        }
        KEEP(Q4K_OP_ATTN, att, qd);
        ref_mv(L->wo, att, tmp);
        KEEP(Q4K_OP_ATTN_OUT, tmp, d);
        for (i = 0; i < d; i++) x[i] += tmp[i];
        KEEP(Q4K_OP_RESID_ATTN, x, d);
        ref_norm(x, L->ffn_norm, xb, d, hp->norm_eps);
        KEEP(Q4K_OP_FFN_NORM, xb, d);
        ref_mv(L->w_gate, xb, g);
        ref_mv(L->w_up, xb, u);
        KEEP(Q4K_OP_GATE, g, ff);
        KEEP(Q4K_OP_UP, u, ff);
        for (i = 0; i < ff; i++) g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
        KEEP(Q4K_OP_ACT, g, ff);
        ref_mv(L->w_down, g, tmp);
        KEEP(Q4K_OP_DOWN, tmp, d);
        for (i = 0; i < d; i++) x[i] += tmp[i];
        KEEP(Q4K_OP_RESID_FFN, x, d);
#undef KEEP
        if (!R->tr_layers) R->tr_layers = (double *)malloc((size_t)(hp->n_layer * d) * 8);
        memcpy(R->tr_layers + l * d, x, (size_t)d * 8);
    }
    ref_norm(x, m->output_norm, xb, d, hp->norm_eps);
    ref_keep(&R->tr_stages[Q4K_STAGE_OUTPUT_NORM], xb, d);
    ref_mv(m->output, xb, logits);
    ref_keep(&R->tr_stages[Q4K_STAGE_LM_HEAD], logits, hp->n_vocab);
    R->pos++;
    free(x); free(xb); free(tmp); free(q); free(k); free(v); free(att); free(g); free(u); free(sc);
}

static void ref_init(ref_model *R, const q4k_model *m, int64_t n_ctx) {
    int64_t kvd = m->hp.n_head_kv * m->hp.head_dim;
    memset(R, 0, sizeof *R);
    R->m = m;
    R->n_ctx = n_ctx;
    R->kc = (double *)calloc((size_t)(m->hp.n_layer * n_ctx * kvd), 8);
    R->vc = (double *)calloc((size_t)(m->hp.n_layer * n_ctx * kvd), 8);
    R->tr_layer = -1;
}
static void ref_free(ref_model *R) {
    int i;
    free(R->kc);
    free(R->vc);
    free(R->tr_layers);
    for (i = 0; i < Q4K_OP_COUNT; i++) free(R->tr_ops[i]);
    for (i = 0; i < Q4K_STAGE_COUNT; i++) free(R->tr_stages[i]);
}

static double cosine(const float *a, const double *b, int64_t n) {
    double ab = 0, aa = 0, bb = 0;
    int64_t i;
    for (i = 0; i < n; i++) { ab += a[i] * b[i]; aa += (double)a[i] * a[i]; bb += b[i] * b[i]; }
    return ab / sqrt(aa * bb + 1e-300);
}

static const char *tmp_path(const char *name) {
    static char buf[8][256];
    static int k;
    const char *dir = getenv("TMPDIR");
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/q4k_test_model_%d_%s", dir ? dir : "/tmp", (int)getpid(), name);
    return buf[k];
}

/* Our forward pass (float activations, and 8-bit activations) against float64,
   for the prompt and 8 greedy steps steered by the reference. */
static void check_against_ref(const tm_cfg *c, const char *label, double min_cos_f32, double min_cos_q8) {
    const char *path = tmp_path(label);
    q4k_model *m = NULL;
    q4k_backend *b = NULL;
    q4k_session *s32 = NULL, *s8 = NULL;
    q4k_session_desc sd;
    q4k_error err;
    ref_model R;
    int32_t prompt[5] = {1, 5, 9, 2, 7}, tok;
    int64_t i, step, nv;
    float *lg32, *lg8;
    double *lref, worst32 = 1, worst8 = 1;
    if (!tm_write(c, path, NULL, NULL, NULL)) { T_CHECK(0, "cannot write %s", path); return; }
    T_CHECK(q4k_model_load(path, NULL, &m, &err) == Q4K_OK, "load: %s", err.msg);
    if (!m) return;
    T_CHECK(q4k_cpu_backend_create(NULL, &b, &err) == Q4K_OK, "backend: %s", err.msg);
    memset(&sd, 0, sizeof sd);
    sd.n_ctx = 32;
    sd.act = Q4K_ACT_F32;
    T_CHECK(q4k_session_create(b, m, &sd, &s32, &err) == Q4K_OK, "session: %s", err.msg);
    sd.act = Q4K_ACT_Q8;
    T_CHECK(q4k_session_create(b, m, &sd, &s8, &err) == Q4K_OK, "session: %s", err.msg);
    nv = m->hp.n_vocab;
    lg32 = (float *)malloc((size_t)nv * 4);
    lg8 = (float *)malloc((size_t)nv * 4);
    lref = (double *)malloc((size_t)nv * 8);
    ref_init(&R, m, 32);
    for (i = 0; i < 5; i++) ref_token(&R, prompt[i], lref);
    T_CHECK(q4k_session_eval(s32, prompt, 5, 0, lg32, &err) == Q4K_OK, "eval: %s", err.msg);
    T_CHECK(q4k_session_eval(s8, prompt, 5, 0, lg8, &err) == Q4K_OK, "eval: %s", err.msg);
    for (step = 0; step < 9; step++) {
        double c32 = cosine(lg32, lref, nv), c8 = cosine(lg8, lref, nv);
        if (!(c32 >= worst32)) worst32 = c32; /* NaN sticks */
        if (!(c8 >= worst8)) worst8 = c8;
        if (step == 8) break;
        {
            int64_t best = 0;
            for (i = 1; i < nv; i++) if (lref[i] > lref[best]) best = i;
            tok = (int32_t)best;
        }
        ref_token(&R, tok, lref);
        q4k_session_eval(s32, &tok, 1, 0, lg32, &err);
        q4k_session_eval(s8, &tok, 1, 0, lg8, &err);
    }
    printf("  %s: worst cosine vs float64 over prompt + 8 steps: f32 activations %.9f, q8 activations %.7f\n",
           label, worst32, worst8);
    T_CHECK(worst32 >= min_cos_f32, "%s: f32-activation cosine %.9f < %.9f", label, worst32, min_cos_f32);
    T_CHECK(worst8 >= min_cos_q8, "%s: q8-activation cosine %.7f < %.7f", label, worst8, min_cos_q8);
    ref_free(&R);
    free(lg32); free(lg8); free(lref);
    q4k_session_free(s32);
    q4k_session_free(s8);
    q4k_backend_destroy(b);
    q4k_model_free(m);
    remove(path);
}

static tm_cfg base_cfg(q4k_arch arch) {
    tm_cfg c;
    memset(&c, 0, sizeof c);
    c.arch = arch;
    c.n_embd = 64;
    c.n_head = 4;
    c.n_head_kv = 2;
    c.n_ff = 96;
    c.n_vocab = 50;
    c.n_layer = 2;
    c.wtype = Q4K_TYPE_F32;
    c.seed = 1;
    return c;
}

static void test_forward_qwen2_f32(void) {
    tm_cfg c = base_cfg(Q4K_ARCH_QWEN2);
    check_against_ref(&c, "qwen2_f32", 0.999999, 0.999);
}

static void test_forward_llama_f32_rope_freqs(void) {
    tm_cfg c = base_cfg(Q4K_ARCH_LLAMA);
    c.rope_freqs = 1;
    c.n_head_kv = 1;
    c.tied = 1;
    check_against_ref(&c, "llama_f32", 0.999999, 0.999);
}

static void test_forward_quantized_types(void) {
    tm_cfg c = base_cfg(Q4K_ARCH_QWEN2);
    q4k_type types[] = {Q4K_TYPE_Q8_0, Q4K_TYPE_Q4_0, Q4K_TYPE_Q5_0, Q4K_TYPE_F16, Q4K_TYPE_BF16};
    size_t i;
    for (i = 0; i < sizeof types / sizeof types[0]; i++) {
        char label[32];
        c.wtype = types[i];
        c.seed = 10 + i;
        snprintf(label, sizeof label, "qwen2_%s", q4k_type_name(types[i]));
        /* weights are exact on both sides (dequantized the same way): only activations differ */
        check_against_ref(&c, label, 0.999999, 0.999);
    }
    c.wtype = Q4K_TYPE_Q4_K;
    c.n_embd = 256;
    c.n_ff = 512;
    c.n_head = 4;
    check_against_ref(&c, "qwen2_Q4_K", 0.999999, 0.999);
    c.wtype = Q4K_TYPE_Q6_K;
    check_against_ref(&c, "qwen2_Q6_K", 0.999999, 0.999);
    c.wtype = Q4K_TYPE_Q5_K;
    check_against_ref(&c, "qwen2_Q5_K", 0.999999, 0.999);
}

/* batch prefill == one token at a time; threads do not change a bit */
static void test_prefill_decode_threads(void) {
    tm_cfg c = base_cfg(Q4K_ARCH_QWEN2);
    const char *path = tmp_path("threads");
    q4k_model *m = NULL;
    q4k_backend *b1 = NULL, *b3 = NULL;
    q4k_cpu_backend_desc bd;
    q4k_session *sa = NULL, *sb = NULL, *sc = NULL;
    q4k_session_desc sd;
    q4k_error err;
    int32_t toks[70];
    int64_t i, nv;
    float *la, *lb, *lc, *all;
    c.wtype = Q4K_TYPE_Q8_0;
    if (!tm_write(&c, path, NULL, NULL, NULL)) { T_CHECK(0, "write"); return; }
    T_CHECK(q4k_model_load(path, NULL, &m, &err) == Q4K_OK, "load: %s", err.msg);
    if (!m) return;
    memset(&bd, 0, sizeof bd);
    bd.n_threads = 1;
    q4k_cpu_backend_create(&bd, &b1, &err);
    bd.n_threads = 3;
    q4k_cpu_backend_create(&bd, &b3, &err);
    memset(&sd, 0, sizeof sd);
    sd.n_ctx = 80;
    q4k_session_create(b1, m, &sd, &sa, &err);
    q4k_session_create(b3, m, &sd, &sb, &err);
    q4k_session_create(b1, m, &sd, &sc, &err);
    nv = m->hp.n_vocab;
    la = (float *)malloc((size_t)nv * 4);
    lb = (float *)malloc((size_t)nv * 4);
    lc = (float *)malloc((size_t)nv * 4);
    all = (float *)malloc((size_t)(70 * nv) * 4);
    for (i = 0; i < 70; i++) toks[i] = (int32_t)((i * 7 + 3) % nv);
    /* 70 tokens: more than one prefill batch */
    T_CHECK(q4k_session_eval(sa, toks, 70, Q4K_EVAL_ALL_LOGITS, all, &err) == Q4K_OK, "eval: %s", err.msg);
    T_CHECK(q4k_session_eval(sb, toks, 70, 0, lb, &err) == Q4K_OK, "eval: %s", err.msg);
    T_CHECK(!memcmp(all + 69 * nv, lb, (size_t)nv * 4), "1 thread and 3 threads differ");
    for (i = 0; i < 70; i++) {
        q4k_session_eval(sc, &toks[i], 1, 0, lc, &err);
        if (i == 0 || i == 35 || i == 69) {
            double ab = 0, aa = 0, bb = 0;
            int64_t j;
            for (j = 0; j < nv; j++) { ab += all[i * nv + j] * lc[j]; aa += all[i * nv + j] * all[i * nv + j]; bb += lc[j] * lc[j]; }
            T_CHECK(ab / sqrt(aa * bb) > 0.99999, "token-by-token differs from batch at %d: cos %.8f", (int)i, ab / sqrt(aa * bb));
        }
    }
    T_CHECK(q4k_session_pos(sc) == 70, "pos %lld", (long long)q4k_session_pos(sc));
    /* rewind and redo the last token: same logits */
    T_CHECK(q4k_session_rewind(sc, 69) == Q4K_OK, "rewind");
    q4k_session_eval(sc, &toks[69], 1, 0, la, &err);
    T_CHECK(!memcmp(la, lc, (size_t)nv * 4), "rewind + re-eval gives other logits");
    T_CHECK(q4k_session_rewind(sc, 71) == Q4K_ERR_INVALID_ARG, "rewind past the end accepted");
    /* the context is full at 80 */
    T_CHECK(q4k_session_eval(sc, toks, 11, 0, la, &err) == Q4K_ERR_CONTEXT_FULL, "context overflow accepted");
    T_CHECK(strstr(err.msg, "context is full") != NULL, "message: %s", err.msg);
    T_CHECK(q4k_session_pos(sc) == 70, "failed eval moved pos");
    toks[0] = (int32_t)nv;
    T_CHECK(q4k_session_eval(sc, toks, 1, 0, la, &err) == Q4K_ERR_INVALID_ARG, "token id out of range accepted");
    free(la); free(lb); free(lc); free(all);
    q4k_session_free(sa); q4k_session_free(sb); q4k_session_free(sc);
    q4k_backend_destroy(b1); q4k_backend_destroy(b3);
    q4k_model_free(m);
    remove(path);
}

/* The trace against the float64 reference, layer by layer: the residual after
   every layer, every op of one layer and the stages outside the layers, at
   the prompt's last token and at two decode steps (float activations over an
   f32 cache, so both sides compute the same function). Tracing does not
   change a bit of the logits; eval_layer recomputes a layer bit for bit and
   leaves the cache as it was; a zeroed descriptor traces nothing. */
static void test_trace(void) {
    tm_cfg c = base_cfg(Q4K_ARCH_QWEN2);
    const char *path = tmp_path("trace");
    q4k_model *m = NULL;
    q4k_backend *b = NULL;
    q4k_session *s = NULL, *plain = NULL, *s8 = NULL, *plain8 = NULL, *zero = NULL;
    q4k_session_desc sd;
    q4k_error err;
    ref_model R;
    int32_t toks[5] = {4, 8, 15, 16, 23};
    int64_t len = 0, i, l, step, nv, d;
    float *lg, *lg2, *xo;
    double *lref, worst = 1.0;
    if (!tm_write(&c, path, NULL, NULL, NULL)) { T_CHECK(0, "write"); return; }
    q4k_model_load(path, NULL, &m, &err);
    if (!m) { T_CHECK(0, "load: %s", err.msg); return; }
    q4k_cpu_backend_create(NULL, &b, &err);
    nv = m->hp.n_vocab;
    d = m->hp.n_embd;
    memset(&sd, 0, sizeof sd);
    sd.n_ctx = 8;
    T_CHECK(q4k_session_create(b, m, &sd, &zero, &err) == Q4K_OK, "zeroed desc: %s", err.msg);
    sd.act = Q4K_ACT_F32;
    sd.kv = Q4K_KV_F32;
    T_CHECK(q4k_session_create(b, m, &sd, &plain, &err) == Q4K_OK, "session: %s", err.msg);
    sd.trace = Q4K_TRACE_LAYERS | Q4K_TRACE_OPS;
    sd.trace_layer = 1;
    T_CHECK(q4k_session_create(b, m, &sd, &s, &err) == Q4K_OK, "session: %s", err.msg);
    sd.act = Q4K_ACT_Q8;
    sd.kv = Q4K_KV_F16;
    T_CHECK(q4k_session_create(b, m, &sd, &s8, &err) == Q4K_OK, "session: %s", err.msg);
    sd.trace = 0;
    T_CHECK(q4k_session_create(b, m, &sd, &plain8, &err) == Q4K_OK, "session: %s", err.msg);
    if (!s || !plain || !s8 || !plain8 || !zero) return;
    lg = (float *)malloc((size_t)nv * 4);
    lg2 = (float *)malloc((size_t)nv * 4);
    xo = (float *)malloc((size_t)d * 8);
    lref = (double *)malloc((size_t)nv * 8);
    ref_init(&R, m, 8);
    R.tr_layer = 1;
    for (step = 0; step < 3; step++) {
        const int32_t *t = step == 0 ? toks : &toks[2 + step];
        int64_t n = step == 0 ? 3 : 1;
        for (i = 0; i < n; i++) ref_token(&R, t[i], lref);
        T_CHECK(q4k_session_eval(s, t, n, 0, lg, &err) == Q4K_OK, "eval: %s", err.msg);
        T_CHECK(q4k_session_eval(plain, t, n, 0, lg2, &err) == Q4K_OK, "eval: %s", err.msg);
        T_CHECK(!memcmp(lg, lg2, (size_t)nv * 4), "step %lld: f32 logits differ with the trace on", (long long)step);
        T_CHECK(q4k_session_eval(s8, t, n, 0, lg, &err) == Q4K_OK, "eval: %s", err.msg);
        T_CHECK(q4k_session_eval(plain8, t, n, 0, lg2, &err) == Q4K_OK, "eval: %s", err.msg);
        T_CHECK(!memcmp(lg, lg2, (size_t)nv * 4), "step %lld: q8 logits differ with the trace on", (long long)step);
        T_CHECK(q4k_session_eval(zero, t, n, 0, NULL, &err) == Q4K_OK, "eval: %s", err.msg);
        for (l = 0; l < m->hp.n_layer; l++) {
            const float *x = q4k_session_trace_layer(s, l);
            double cs = x ? cosine(x, R.tr_layers + l * d, d) : 0;
            if (!(cs >= worst)) worst = cs;
            T_CHECK(cs > 0.999999, "step %lld: residual after layer %lld: cosine %.9f", (long long)step, (long long)l, cs);
        }
        for (i = 0; i < Q4K_OP_COUNT; i++) {
            const float *x = q4k_session_trace_op(s, (q4k_op)i, &len);
            double cs = x ? cosine(x, R.tr_ops[i], len) : 0;
            if (!(cs >= worst)) worst = cs;
            T_CHECK(cs > 0.999999, "step %lld: op %s of layer 1: cosine %.9f", (long long)step, q4k_op_name((q4k_op)i), cs);
        }
        for (i = 0; i < Q4K_STAGE_COUNT; i++) {
            const float *x = q4k_session_trace_stage(s, (q4k_stage)i, &len);
            double cs = x ? cosine(x, R.tr_stages[i], len) : 0;
            if (!(cs >= worst)) worst = cs;
            T_CHECK(cs > 0.999999, "step %lld: stage %s: cosine %.9f", (long long)step, q4k_stage_name((q4k_stage)i), cs);
        }
        /* recomputing a layer from its traced input gives its traced output */
        for (l = 0; l < m->hp.n_layer; l++) {
            const float *in = l ? q4k_session_trace_layer(s, l - 1) : q4k_session_trace_stage(s, Q4K_STAGE_EMBEDDING, NULL);
            T_CHECK(q4k_session_eval_layer(s, l, in, xo + d, xo, &err) == Q4K_OK, "eval_layer: %s", err.msg);
            T_CHECK(!memcmp(xo, q4k_session_trace_layer(s, l), (size_t)d * 4) &&
                        !memcmp(xo + d, q4k_session_trace_layer_attn(s, l), (size_t)d * 4),
                    "step %lld: eval_layer %lld differs", (long long)step, (long long)l);
        }
    }
    printf("  trace vs float64 (f32 activations, f32 cache): worst cosine %.10f\n", worst);
    /* eval_layer left the cache as it was: the next token agrees bit for bit */
    q4k_session_eval(s, &toks[0], 1, 0, lg, &err);
    q4k_session_eval(plain, &toks[0], 1, 0, lg2, &err);
    T_CHECK(!memcmp(lg, lg2, (size_t)nv * 4), "eval_layer changed the cache");
    T_CHECK(q4k_session_trace_layer(zero, 0) == NULL && q4k_session_trace_op(zero, Q4K_OP_Q, NULL) == NULL &&
                q4k_session_trace_stage(zero, Q4K_STAGE_EMBEDDING, NULL) == NULL,
            "a zeroed descriptor traces");
    /* without logits there are no output stages */
    q4k_session_eval(s, &toks[1], 1, 0, NULL, &err);
    T_CHECK(q4k_session_trace_stage(s, Q4K_STAGE_LM_HEAD, NULL) == NULL, "lm_head traced without logits");
    T_CHECK(q4k_session_trace_stage(s, Q4K_STAGE_EMBEDDING, NULL) != NULL, "embedding not traced");
    T_CHECK(q4k_session_trace_layer(s, 2) == NULL, "trace of a layer that does not exist");
    T_CHECK(q4k_session_set_trace_layer(s, 0) == Q4K_OK && q4k_session_set_trace_layer(s, 2) == Q4K_ERR_INVALID_ARG,
            "set_trace_layer range");
    T_CHECK(q4k_session_set_trace_layer(zero, 0) == Q4K_ERR_INVALID_ARG, "set_trace_layer without op trace");
    q4k_session_free(s);
    sd.trace = Q4K_TRACE_OPS;
    sd.trace_layer = 5;
    T_CHECK(q4k_session_create(b, m, &sd, &s, &err) == Q4K_ERR_INVALID_ARG, "trace_layer out of range accepted");
    sd.trace = 0;
    sd.kv = (q4k_kv_type)7;
    T_CHECK(q4k_session_create(b, m, &sd, &s, &err) == Q4K_ERR_INVALID_ARG && strstr(err.msg, "KV cache type"),
            "bad KV type accepted: %s", err.msg);
    ref_free(&R);
    free(lg); free(lg2); free(xo); free(lref);
    q4k_session_free(plain); q4k_session_free(s8); q4k_session_free(plain8); q4k_session_free(zero);
    q4k_backend_destroy(b);
    q4k_model_free(m);
    remove(path);
}

/* The op-level entry points compute what the forward pass computes: each
   reproduces a traced value of layer 0 bit for bit. */
static void test_backend_ops(void) {
    tm_cfg c = base_cfg(Q4K_ARCH_QWEN2);
    const char *path = tmp_path("ops");
    q4k_model *m = NULL;
    q4k_backend *b = NULL;
    q4k_session *s = NULL;
    q4k_session_desc sd;
    q4k_error err;
    const q4k_hparams *hp;
    const q4k_layer *L;
    int32_t toks[3] = {3, 1, 4};
    int64_t i, d, qd, kvd, kvt[] = {Q4K_KV_F16, Q4K_KV_F32}, kk;
    float *K, *V, *y, *q;
    q4k_block_q8a qa[8], qb[8];
    c.wtype = Q4K_TYPE_Q8_0;
    if (!tm_write(&c, path, NULL, NULL, NULL)) { T_CHECK(0, "write"); return; }
    q4k_model_load(path, NULL, &m, &err);
    if (!m) { T_CHECK(0, "load: %s", err.msg); return; }
    q4k_cpu_backend_create(NULL, &b, &err);
    hp = &m->hp;
    L = &m->layers[0];
    for (i = 0; i < q4k_gguf_tensor_count(m->gguf); i++)
        if (q4k_gguf_tensor(m->gguf, i)->index != i) break;
    T_CHECK(i == q4k_gguf_tensor_count(m->gguf) && L->wq->index > 0, "tensor %lld has index %lld", (long long)i,
            i < q4k_gguf_tensor_count(m->gguf) ? (long long)q4k_gguf_tensor(m->gguf, i)->index : -1LL);
    d = hp->n_embd;
    qd = hp->n_head * hp->head_dim;
    kvd = hp->n_head_kv * hp->head_dim;
    K = (float *)malloc((size_t)(3 * kvd) * 4);
    V = (float *)malloc((size_t)(3 * kvd) * 4);
    y = (float *)malloc((size_t)(qd + d) * 4);
    q = (float *)malloc((size_t)qd * 4);
    for (kk = 0; kk < 2; kk++) {
        memset(&sd, 0, sizeof sd);
        sd.n_ctx = 8;
        sd.kv = (q4k_kv_type)kvt[kk];
        sd.trace = Q4K_TRACE_LAYERS | Q4K_TRACE_OPS;
        T_CHECK(q4k_session_create(b, m, &sd, &s, &err) == Q4K_OK, "session: %s", err.msg);
        if (!s) break;
        for (i = 0; i < 3; i++) { /* token by token, keeping layer 0's keys and values */
            q4k_session_eval(s, &toks[i], 1, 0, NULL, &err);
            memcpy(K + i * kvd, q4k_session_trace_op(s, Q4K_OP_K_ROPE, NULL), (size_t)kvd * 4);
            memcpy(V + i * kvd, q4k_session_trace_op(s, Q4K_OP_V, NULL), (size_t)kvd * 4);
        }
        T_CHECK(b->attention(b, sd.kv, q4k_session_trace_op(s, Q4K_OP_Q_ROPE, NULL), K, V, 3, hp->n_head, hp->n_head_kv,
                             hp->head_dim, y, &err) == Q4K_OK, "attention: %s", err.msg);
        T_CHECK(!memcmp(y, q4k_session_trace_op(s, Q4K_OP_ATTN, NULL), (size_t)qd * 4), "attention op (%s cache) differs",
                q4k_kv_type_name(sd.kv));
        if (kk) break;
        T_CHECK(b->embedding(b, m->tok_embd->type, m->tok_embd->data, d, toks[2], y, &err) == Q4K_OK, "embedding");
        T_CHECK(!memcmp(y, q4k_session_trace_stage(s, Q4K_STAGE_EMBEDDING, NULL), (size_t)d * 4), "embedding op differs");
        b->rmsnorm(b, y, (const float *)L->attn_norm->data, d, 1, hp->norm_eps, y + d, &err);
        T_CHECK(!memcmp(y + d, q4k_session_trace_op(s, Q4K_OP_ATTN_NORM, NULL), (size_t)d * 4), "rmsnorm op differs");
        T_CHECK(b->matmul(b, Q4K_ACT_Q8, L->wq->type, L->wq->data, qd, d, y + d, 1, q, &err) == Q4K_OK, "matmul");
        for (i = 0; i < qd; i++) q[i] += ((const float *)L->bq->data)[i];
        T_CHECK(!memcmp(q, q4k_session_trace_op(s, Q4K_OP_Q, NULL), (size_t)qd * 4), "matmul op differs");
        b->rope(b, q, 1, hp->n_head, hp->head_dim, hp->n_rot, hp->rope_neox, 2, hp->rope_freq_base, NULL, &err);
        T_CHECK(!memcmp(q, q4k_session_trace_op(s, Q4K_OP_Q_ROPE, NULL), (size_t)qd * 4), "rope op differs");
        T_CHECK(b->quantize_act(b, y, 128, qa, &err) == Q4K_OK, "quantize_act");
        q4k_quantize_act_q8(y, qb, 128);
        T_CHECK(!memcmp(qa, qb, 4 * sizeof qa[0]), "quantize_act op differs");
        T_CHECK(b->quantize_act(b, y, 33, qa, &err) == Q4K_ERR_INVALID_ARG, "quantize_act of 33 values accepted");
        q4k_session_free(s);
        s = NULL;
    }
    q4k_session_free(s);
    free(K); free(V); free(y); free(q);
    q4k_backend_destroy(b);
    q4k_model_free(m);
    remove(path);
}

/* Sessions of one model on one backend share one preparation; two threads,
   each with its own backend and session on one model, produce the tokens of
   sequential runs; and so do two threads sharing one backend (a pool of 2),
   two sessions each, tokens and logits bit for bit (tests/t_share.h). */
typedef struct share_job {
    q4k_session *s;
    int32_t first;
    int32_t out[12];
    q4k_result r;
} share_job;

static void *share_run(void *p) {
    share_job *j = (share_job *)p;
    int64_t nv = j->s->model->hp.n_vocab, k;
    float *lg = (float *)malloc((size_t)nv * 4);
    int32_t tok = j->first;
    q4k_error err;
    q4k_session_rewind(j->s, 0);
    j->r = Q4K_OK;
    for (k = 0; k < 12 && j->r == Q4K_OK; k++) {
        j->r = q4k_session_eval(j->s, &tok, 1, 0, lg, &err);
        tok = (int32_t)q4k_argmax(lg, nv);
        j->out[k] = tok;
    }
    free(lg);
    return NULL;
}

static void test_backend_sharing_threads(void) {
    tm_cfg c = base_cfg(Q4K_ARCH_LLAMA);
    const char *path = tmp_path("share");
    q4k_model *m = NULL;
    q4k_backend *b1 = NULL, *b2 = NULL;
    q4k_session *s1 = NULL, *s2 = NULL, *s3 = NULL;
    q4k_cpu_backend_desc bd;
    q4k_session_desc sd;
    q4k_error err;
    share_job seq[2], par[2];
    c.wtype = Q4K_TYPE_Q4_0;
    if (!tm_write(&c, path, NULL, NULL, NULL)) { T_CHECK(0, "write"); return; }
    q4k_model_load(path, NULL, &m, &err);
    if (!m) { T_CHECK(0, "load: %s", err.msg); return; }
    memset(&bd, 0, sizeof bd);
    bd.n_threads = 2;
    q4k_cpu_backend_create(&bd, &b1, &err);
    q4k_cpu_backend_create(&bd, &b2, &err);
    memset(&sd, 0, sizeof sd);
    sd.n_ctx = 16;
    T_CHECK(b1->n_prepare == 0 && q4k_backend_prepared(b1, m) == NULL, "prepared before any session");
    q4k_session_create(b1, m, &sd, &s1, &err);
    q4k_session_create(b1, m, &sd, &s3, &err);
    q4k_session_create(b2, m, &sd, &s2, &err);
    if (!s1 || !s2 || !s3) { T_CHECK(0, "sessions: %s", err.msg); return; }
    T_CHECK(b1->n_prepare == 1 && s1->prepared && s1->prepared == s3->prepared, "two sessions, %lld preparations",
            (long long)b1->n_prepare);
    T_CHECK(b2->n_prepare == 1 && s2->prepared != s1->prepared, "another backend prepares its own");
    q4k_session_free(s3);
    T_CHECK(q4k_backend_prepared(b1, m) == s1->prepared, "freeing one session released the model");
    seq[0].s = s1; seq[0].first = 5;
    seq[1].s = s1; seq[1].first = 9;
    share_run(&seq[0]);
    share_run(&seq[1]);
    par[0] = seq[0];
    par[1] = seq[1];
    par[1].s = s2;
    {
        pthread_t t0, t1;
        pthread_create(&t0, NULL, share_run, &par[0]);
        pthread_create(&t1, NULL, share_run, &par[1]);
        pthread_join(t0, NULL);
        pthread_join(t1, NULL);
    }
    T_CHECK(seq[0].r == Q4K_OK && par[0].r == Q4K_OK && par[1].r == Q4K_OK, "eval failed");
    T_CHECK(!memcmp(seq[0].out, par[0].out, sizeof seq[0].out) && !memcmp(seq[1].out, par[1].out, sizeof seq[1].out),
            "two threads give other tokens than sequential runs");
    T_CHECK(memcmp(seq[0].out, seq[1].out, sizeof seq[0].out) != 0, "the two prompts give the same tokens: a weak test");
    q4k_session_free(s1);
    T_CHECK(q4k_backend_prepared(b1, m) == NULL, "the last session's free kept the model prepared");
    q4k_session_create(b1, m, &sd, &s1, &err);
    T_CHECK(b1->n_prepare == 2, "a model released and used again is prepared again (%lld)", (long long)b1->n_prepare);
    q4k_session_free(s1);
    q4k_session_free(s2);
    sd.n_ctx = 32;
    t_share_check(b1, m, &sd, 0, "cpu, one backend shared");
    T_CHECK(b1->n_prepare >= 5 && b1->n_prepare <= 6, "%lld preparations for 8 more sessions", (long long)b1->n_prepare);
    q4k_backend_destroy(b1);
    q4k_backend_destroy(b2);
    q4k_model_free(m);
    remove(path);
}

/* --ref over each KV cache type against the float64 forward pass: with an f32
   cache the CPU is a float reference; with the default f16 cache it agrees
   with a float64 pass that rounds K and V to f16 as q4k does, better than
   with the exact one. */
static void test_kv_cache_types(void) {
    tm_cfg c = base_cfg(Q4K_ARCH_QWEN2);
    const char *path = tmp_path("kv");
    q4k_model *m = NULL;
    q4k_backend *b = NULL;
    q4k_session *s16 = NULL, *s32 = NULL;
    q4k_session_desc sd;
    q4k_error err;
    ref_model R, R16;
    int32_t toks[6] = {3, 14, 15, 9, 26, 5};
    int64_t nv, i;
    float *l16, *l32;
    double *lr, *lr16, w32 = 1, w16 = 1, w16x = 1;
    c.wtype = Q4K_TYPE_Q4_K;
    c.n_embd = 256;
    c.n_ff = 512;
    c.n_layer = 3;
    c.seed = 77;
    if (!tm_write(&c, path, NULL, NULL, NULL)) { T_CHECK(0, "write"); return; }
    q4k_model_load(path, NULL, &m, &err);
    if (!m) { T_CHECK(0, "load: %s", err.msg); return; }
    q4k_cpu_backend_create(NULL, &b, &err);
    memset(&sd, 0, sizeof sd);
    sd.n_ctx = 8;
    sd.act = Q4K_ACT_F32;
    q4k_session_create(b, m, &sd, &s16, &err);
    sd.kv = Q4K_KV_F32;
    q4k_session_create(b, m, &sd, &s32, &err);
    nv = m->hp.n_vocab;
    l16 = (float *)malloc((size_t)nv * 4);
    l32 = (float *)malloc((size_t)nv * 4);
    lr = (double *)malloc((size_t)nv * 8);
    lr16 = (double *)malloc((size_t)nv * 8);
    ref_init(&R, m, 8);
    ref_init(&R16, m, 8);
    R16.kv_f16 = 1;
    for (i = 0; i < 6; i++) {
        double a, b2, x;
        ref_token(&R, toks[i], lr);
        ref_token(&R16, toks[i], lr16);
        q4k_session_eval(s16, &toks[i], 1, 0, l16, &err);
        q4k_session_eval(s32, &toks[i], 1, 0, l32, &err);
        a = cosine(l32, lr, nv);
        b2 = cosine(l16, lr16, nv);
        x = cosine(l16, lr, nv);
        if (a < w32) w32 = a;
        if (b2 < w16) w16 = b2;
        if (x < w16x) w16x = x;
    }
    printf("  --ref vs float64: f32 cache %.10f; f16 cache %.10f (float64 rounding K, V to f16), %.10f (exact)\n", w32,
           w16, w16x);
    T_CHECK(w32 > 0.9999999 && w16 > 0.9999999, "kv f32 %.10f, kv f16 %.10f", w32, w16);
    T_CHECK(1 - w16x > 3 * (1 - w16), "the f16 cache is not what separates q4k from the exact pass");
    ref_free(&R);
    ref_free(&R16);
    free(l16); free(l32); free(lr); free(lr16);
    q4k_session_free(s16);
    q4k_session_free(s32);
    q4k_backend_destroy(b);
    q4k_model_free(m);
    remove(path);
}

static void expect_load_error(const tm_cfg *c, const char *skip, const char *extra, const char *scaling,
                              q4k_result want, const char *needle) {
    const char *path = tmp_path("bad");
    q4k_model *m = NULL;
    q4k_error err;
    q4k_result r;
    memset(&err, 0, sizeof err);
    if (!tm_write(c, path, skip, extra, scaling)) { T_CHECK(0, "write"); return; }
    r = q4k_model_load(path, NULL, &m, &err);
    T_CHECK(r == want, "load of a model without '%s' / with '%s': %s, expected %s (%s)", skip ? skip : "-",
            extra ? extra : "-", q4k_result_name(r), q4k_result_name(want), err.msg);
    T_CHECK(strstr(err.msg, needle) != NULL, "message '%s' does not name '%s'", err.msg, needle);
    q4k_model_free(m);
    remove(path);
}

static void test_model_validation(void) {
    tm_cfg c = base_cfg(Q4K_ARCH_QWEN2);
    expect_load_error(&c, "blk.1.attn_k.weight", NULL, NULL, Q4K_ERR_BAD_MODEL, "blk.1.attn_k.weight");
    expect_load_error(&c, "blk.0.attn_q.bias", NULL, NULL, Q4K_ERR_BAD_MODEL, "blk.0.attn_q.bias");
    expect_load_error(&c, "output_norm.weight", NULL, NULL, Q4K_ERR_BAD_MODEL, "output_norm.weight");
    expect_load_error(&c, NULL, "blk.0.attn_sinks.weight", NULL, Q4K_ERR_UNSUPPORTED, "blk.0.attn_sinks.weight");
    expect_load_error(&c, NULL, "blk.7.attn_norm.weight", NULL, Q4K_ERR_UNSUPPORTED, "blk.7.attn_norm.weight");
    expect_load_error(&c, NULL, NULL, "yarn", Q4K_ERR_UNSUPPORTED, "yarn");
    c.n_head_kv = 3;
    expect_load_error(&c, NULL, NULL, NULL, Q4K_ERR_BAD_MODEL, "head_count_kv");
    c = base_cfg(Q4K_ARCH_QWEN2);
    c.n_layer_key = 50000000; /* tensors for 2 layers, a block_count of 50M: refused before any allocation */
    expect_load_error(&c, NULL, NULL, NULL, Q4K_ERR_BAD_MODEL, "block_count 50000000");
    c = base_cfg(Q4K_ARCH_LLAMA);
    /* a llama model with qwen2's biases has an unexpected tensor */
    expect_load_error(&c, NULL, "blk.0.attn_q.bias", NULL, Q4K_ERR_UNSUPPORTED, "blk.0.attn_q.bias");
    c.n_rot = 5;
    expect_load_error(&c, NULL, NULL, NULL, Q4K_ERR_BAD_MODEL, "rope.dimension_count");
}

static void test_unknown_arch(void) {
    q4k_gguf_writer *w = q4k_gguf_writer_new(32);
    const char *path = tmp_path("arch");
    q4k_model *m = NULL;
    q4k_error err;
    q4k_gguf_writer_set_str(w, "general.architecture", "mamba");
    q4k_gguf_writer_write_file(w, path, &err);
    q4k_gguf_writer_free(w);
    T_CHECK(q4k_model_load(path, NULL, &m, &err) == Q4K_ERR_UNSUPPORTED, "unknown arch accepted");
    T_CHECK(strstr(err.msg, "mamba") != NULL, "message: %s", err.msg);
    remove(path);
    /* a name with control bytes is quoted, never sent raw to a terminal */
    w = q4k_gguf_writer_new(32);
    q4k_gguf_writer_set_str(w, "general.architecture", "ma\x1b[2Jmba");
    q4k_gguf_writer_write_file(w, path, &err);
    q4k_gguf_writer_free(w);
    T_CHECK(q4k_model_load(path, NULL, &m, &err) == Q4K_ERR_UNSUPPORTED, "unknown arch accepted");
    T_CHECK(strstr(err.msg, "'ma\\x1b[2Jmba'") != NULL && !strchr(err.msg, 0x1b), "message: %s", err.msg);
    remove(path);
}

static void test_sampler(void) {
    float logits[6] = {1.0f, 3.0f, 2.9f, -1.0f, 3.0f, 0.5f};
    q4k_sampler_params p = q4k_sampler_defaults();
    q4k_sampler *s;
    int counts[6] = {0}, i;
    T_CHECK(p.temp == 0.8f && p.top_k == 40 && p.top_p == 0.95f && p.min_p == 0.05f, "defaults differ from llama.cpp's");
    p.temp = 0;
    s = q4k_sampler_create(&p, 6);
    T_CHECK(q4k_sampler_sample(s, logits) == 1, "greedy picks the lowest id among equal maxima");
    q4k_sampler_free(s);
    /* top-k 2: only ids 1 and 4 can come out */
    p = q4k_sampler_defaults();
    p.top_k = 2;
    p.seed = 7;
    s = q4k_sampler_create(&p, 6);
    for (i = 0; i < 2000; i++) counts[q4k_sampler_sample(s, logits)]++;
    T_CHECK(counts[0] + counts[2] + counts[3] + counts[5] == 0, "top-k 2 let others through");
    T_CHECK(counts[1] > 800 && counts[4] > 800, "equal logits should split evenly: %d %d", counts[1], counts[4]);
    q4k_sampler_free(s);
    /* min-p 0.5: keeps logits within log(2) of the max: ids 1, 4, 2 */
    memset(counts, 0, sizeof counts);
    p = q4k_sampler_defaults();
    p.min_p = 0.5f;
    p.top_p = 1.0f;
    p.seed = 3;
    s = q4k_sampler_create(&p, 6);
    for (i = 0; i < 3000; i++) counts[q4k_sampler_sample(s, logits)]++;
    T_CHECK(counts[0] + counts[3] + counts[5] == 0 && counts[2] > 300, "min-p: %d %d %d %d %d %d", counts[0], counts[1],
            counts[2], counts[3], counts[4], counts[5]);
    q4k_sampler_free(s);
    /* same seed, same sequence; temperature 1 frequencies follow softmax */
    {
        q4k_sampler *a, *b2;
        int same = 1;
        p = q4k_sampler_defaults();
        p.seed = 99;
        a = q4k_sampler_create(&p, 6);
        b2 = q4k_sampler_create(&p, 6);
        for (i = 0; i < 100; i++) same &= q4k_sampler_sample(a, logits) == q4k_sampler_sample(b2, logits);
        T_CHECK(same, "same seed gave different samples");
        q4k_sampler_free(a);
        q4k_sampler_free(b2);
    }
    {
        double e1 = exp(3.0), e2 = exp(2.9), want;
        memset(counts, 0, sizeof counts);
        p = q4k_sampler_defaults();
        p.temp = 1.0f; p.top_k = 0; p.top_p = 1.0f; p.min_p = 0.0f; p.seed = 5;
        s = q4k_sampler_create(&p, 6);
        for (i = 0; i < 20000; i++) counts[q4k_sampler_sample(s, logits)]++;
        want = e2 / (2 * e1 + e2 + exp(1.0) + exp(-1.0) + exp(0.5));
        T_CHECK(fabs(counts[2] / 20000.0 - want) < 0.015, "id 2 drawn %.4f of the time, softmax says %.4f", counts[2] / 20000.0, want);
        q4k_sampler_free(s);
    }
}

/* llama.cpp's repetition penalty: a remembered token's positive logit is
   divided by the penalty, a negative one multiplied; each token once; only
   the last repeat_last_n accepted tokens count. */
static void test_sampler_repeat_penalty(void) {
    float pos[4] = {3.0f, 2.0f, 1.0f, 0.5f}, neg[4] = {-1.0f, -1.5f, -3.0f, -4.0f};
    q4k_sampler_params p = q4k_sampler_defaults();
    q4k_sampler *s;
    T_CHECK(p.repeat_penalty == 1.0f && p.repeat_last_n == 64, "defaults differ from llama.cpp's");
    p.temp = 0;
    p.repeat_penalty = 2.0f;
    p.repeat_last_n = 2;
    s = q4k_sampler_create(&p, 4);
    T_CHECK(q4k_sampler_sample(s, pos) == 0, "nothing accepted yet: no penalty");
    q4k_sampler_accept(s, 0);
    q4k_sampler_accept(s, 0); /* twice: still divided once, 3 / 2 = 1.5 < 2 */
    T_CHECK(q4k_sampler_sample(s, pos) == 1, "3/2 should lose to 2");
    T_CHECK(q4k_sampler_sample(s, neg) == 1, "-1 x 2 = -2 should lose to -1.5");
    q4k_sampler_accept(s, 1); /* remembered: 0, 1; 3/2 = 1.5 wins over 2/2 = 1 */
    T_CHECK(q4k_sampler_sample(s, pos) == 0, "1.5 should beat 1");
    q4k_sampler_accept(s, 2);
    q4k_sampler_accept(s, 3); /* 0 and 1 left the window of 2 */
    T_CHECK(q4k_sampler_sample(s, pos) == 0, "token 0 is out of the window");
    q4k_sampler_free(s);
    p.repeat_penalty = 1.0f; /* off */
    s = q4k_sampler_create(&p, 4);
    q4k_sampler_accept(s, 0);
    T_CHECK(q4k_sampler_sample(s, pos) == 0, "penalty 1 is off");
    q4k_sampler_free(s);
}

static void test_chat_templates(void) {
    q4k_chat_msg msgs[2] = {{"system", "S"}, {"user", "Hi"}};
    char *t = q4k_chat_format(Q4K_CHAT_CHATML, msgs, 2, 1);
    T_CHECK(t && !strcmp(t, "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"),
            "chatml: %s", t ? t : "(null)");
    q4k_free(t);
    t = q4k_chat_format(Q4K_CHAT_LLAMA3, msgs + 1, 1, 1);
    T_CHECK(t && !strcmp(t, "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"),
            "llama3: %s", t ? t : "(null)");
    q4k_free(t);
    t = q4k_chat_format(Q4K_CHAT_LLAMA2, msgs, 2, 1);
    T_CHECK(t && !strcmp(t, "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nHi [/INST]"), "llama2 with a system prompt: %s",
            t ? t : "(null)");
    q4k_free(t);
    t = q4k_chat_format(Q4K_CHAT_LLAMA2, msgs + 1, 1, 1);
    T_CHECK(t && !strcmp(t, "<s>[INST] Hi [/INST]"), "llama2 without: %s", t ? t : "(null)");
    q4k_free(t);
    {
        q4k_chat_msg conv[4] = {{"system", "S"}, {"user", "Hi"}, {"assistant", "Hello."}, {"user", "Bye"}};
        t = q4k_chat_format(Q4K_CHAT_LLAMA2, conv, 4, 1);
        T_CHECK(t && !strcmp(t, "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nHi [/INST] Hello. </s><s>[INST] Bye [/INST]"),
                "llama2 conversation: %s", t ? t : "(null)");
        q4k_free(t);
        t = q4k_chat_format(Q4K_CHAT_LLAMA2, conv, 1, 1);
        T_CHECK(t && !strcmp(t, "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\n [/INST]"), "llama2 system alone: %s",
                t ? t : "(null)");
        q4k_free(t);
    }
}

static void test_rope_angles(void) {
    float c, s;
    q4k_rope_cos_sin(3, 2, 8, 10000.0, 1.0, &c, &s);
    T_CHECK(c == (float)cos(3.0 * pow(10000.0, -0.5)) && s == (float)sin(3.0 * pow(10000.0, -0.5)), "rope angle");
    q4k_rope_cos_sin(3, 2, 8, 10000.0, 4.0, &c, &s);
    T_CHECK(c == (float)cos(0.75 * pow(10000.0, -0.5)), "rope frequency factor");
}

/* relative L2 distance of two logit vectors */
static double rel_err(const float *a, const float *b, int64_t n) {
    double d = 0, bb = 0;
    int64_t i;
    for (i = 0; i < n; i++) { d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]); bb += (double)b[i] * b[i]; }
    return sqrt(d / (bb + 1e-300));
}

/* The tiny synthetic model (./q4k synth) is usable for parity work: its
   logits are spread (std in [1, 10]) and its attention is far from uniform
   (checked in the float64 reference). */
static void test_synth_tiny_statistics(void) {
    const char *path = tmp_path("synth_tiny.gguf");
    char cmd[512];
    q4k_model *m = NULL;
    q4k_error err;
    ref_model R;
    int32_t toks[8] = {10, 200, 33, 1500, 7, 7, 99, 640};
    double *lg, mean = 0, var = 0, ratio;
    int64_t i, nv;
    snprintf(cmd, sizeof cmd, "./q4k synth %s --preset tiny --seed 5 2>/dev/null", path);
    T_CHECK(system(cmd) == 0, "%s failed", cmd);
    T_CHECK(q4k_model_load(path, NULL, &m, &err) == Q4K_OK, "load: %s", err.msg);
    if (!m) return;
    T_CHECK(m->hp.n_embd == 256 && m->hp.n_head == 8 && m->hp.n_head_kv == 2 && m->hp.n_ff == 768 &&
            m->hp.n_layer == 4 && m->hp.n_vocab == 2048 && !m->hp.tied_embeddings, "tiny preset shapes");
    nv = m->hp.n_vocab;
    lg = (double *)malloc((size_t)nv * 8);
    ref_init(&R, m, 8);
    for (i = 0; i < 8; i++) ref_token(&R, toks[i], lg);
    for (i = 0; i < nv; i++) mean += lg[i] / (double)nv;
    for (i = 0; i < nv; i++) var += (lg[i] - mean) * (lg[i] - mean) / (double)nv;
    ratio = R.max_attn_prob_sum / R.uniform_sum;
    printf("  tiny: logits std %.3f; mean largest attention weight %.3f = %.2f x uniform\n", sqrt(var),
           R.max_attn_prob_sum / (double)R.n_attn, ratio);
    T_CHECK(sqrt(var) >= 1.0 && sqrt(var) <= 10.0, "logits std %.3f outside [1, 10]", sqrt(var));
    T_CHECK(ratio > 1.5, "attention too close to uniform: largest weight %.2f x uniform", ratio);
    ref_free(&R);
    free(lg);
    q4k_model_free(m);
    remove(path);
}

typedef struct gen_log { int32_t toks[64]; int n, stop_at; } gen_log;
static int gen_cb(void *user, int32_t token, const float *logits) {
    gen_log *g = (gen_log *)user;
    (void)logits;
    g->toks[g->n++] = token;
    return g->n == g->stop_at;
}

/* q4k_generate: the same tokens as a hand-written greedy loop over eval; the
   callback can stop it; the context end is reported. */
static void test_generate(void) {
    const char *path = tmp_path("gen.gguf");
    char cmd[512];
    q4k_model *m = NULL;
    q4k_backend *b = NULL;
    q4k_session *s = NULL;
    q4k_tokenizer *tok = NULL;
    q4k_sampler *smp;
    q4k_sampler_params sp = q4k_sampler_defaults();
    q4k_session_desc sd;
    q4k_error err;
    int32_t prompt[3] = {72, 101, 108}, manual[12];
    float *lg;
    gen_log g;
    int64_t n_gen, i;
    q4k_result r;
    snprintf(cmd, sizeof cmd, "./q4k synth %s --preset tiny --layers 2 --seed 8 2>/dev/null", path);
    T_CHECK(system(cmd) == 0, "%s failed", cmd);
    if (q4k_model_load(path, NULL, &m, &err) != Q4K_OK) { T_CHECK(0, "load: %s", err.msg); return; }
    T_CHECK(q4k_tokenizer_from_gguf(m->gguf, &tok, &err) == Q4K_OK, "tokenizer: %s", err.msg);
    q4k_cpu_backend_create(NULL, &b, &err);
    memset(&sd, 0, sizeof sd);
    sd.n_ctx = 16;
    q4k_session_create(b, m, &sd, &s, &err);
    lg = (float *)malloc((size_t)m->hp.n_vocab * 4);
    /* by hand */
    q4k_session_eval(s, prompt, 3, 0, lg, &err);
    for (i = 0; i < 12; i++) {
        manual[i] = (int32_t)q4k_argmax(lg, m->hp.n_vocab);
        if (i < 11) q4k_session_eval(s, &manual[i], 1, 0, lg, &err);
    }
    sp.temp = 0;
    smp = q4k_sampler_create(&sp, m->hp.n_vocab);
    /* stopped by the callback after 5 */
    q4k_session_rewind(s, 0);
    memset(&g, 0, sizeof g);
    g.stop_at = 5;
    r = q4k_generate(s, tok, smp, prompt, 3, 100, 0, gen_cb, &g, &n_gen, &err);
    T_CHECK(r == Q4K_ERR_STOPPED && n_gen == 5 && g.n == 5, "stop: %s, %lld generated", q4k_result_name(r), (long long)n_gen);
    T_CHECK(q4k_session_pos(s) == 3 + 4, "pos after a stop: %lld", (long long)q4k_session_pos(s));
    for (i = 0; i < 5; i++) T_CHECK(g.toks[i] == manual[i], "token %d: %d, by hand %d", (int)i, g.toks[i], manual[i]);
    /* n_predict 4: the 4th token is not evaluated, nothing would use its logits */
    q4k_session_rewind(s, 0);
    memset(&g, 0, sizeof g);
    r = q4k_generate(s, tok, smp, prompt, 3, 4, 0, gen_cb, &g, &n_gen, &err);
    T_CHECK(r == Q4K_OK && n_gen == 4 && g.n == 4, "n_predict 4: %s, %lld generated", q4k_result_name(r), (long long)n_gen);
    T_CHECK(q4k_session_pos(s) == 3 + 3, "pos after n_predict 4: %lld", (long long)q4k_session_pos(s));
    for (i = 0; i < 4; i++) T_CHECK(g.toks[i] == manual[i], "n_predict 4: token %d differs", (int)i);
    /* the context (16) ends it: 3 prompt + 13 generated tokens fill it */
    q4k_session_rewind(s, 0);
    memset(&g, 0, sizeof g);
    r = q4k_generate(s, tok, smp, prompt, 3, -1, 0, gen_cb, &g, &n_gen, &err);
    if (g.n < 14 && r == Q4K_OK) {
        /* an end-of-generation token came first: fine, but then all before it match */
        for (i = 0; i < g.n && i < 12; i++) T_CHECK(g.toks[i] == manual[i], "token %d differs", (int)i);
    } else {
        T_CHECK(r == Q4K_ERR_CONTEXT_FULL, "at the context end: %s", q4k_result_name(r));
        for (i = 0; i < 12; i++) T_CHECK(g.toks[i] == manual[i], "token %d: %d, by hand %d", (int)i, g.toks[i], manual[i]);
        T_CHECK(q4k_session_pos(s) == 16, "pos %lld", (long long)q4k_session_pos(s));
    }
    free(lg);
    q4k_sampler_free(smp);
    q4k_session_free(s);
    q4k_backend_destroy(b);
    q4k_tokenizer_free(tok);
    q4k_model_free(m);
    remove(path);
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* --outliers: a few channels of the residual stream hundreds of times larger
   than the rest, as trained models have; and the memory estimate. */
static void test_synth_outliers_and_memory(void) {
    const char *path = tmp_path("outliers.gguf");
    char cmd[512];
    q4k_model *m = NULL;
    q4k_backend *b = NULL;
    q4k_session *s = NULL;
    q4k_session_desc sd;
    q4k_error err;
    int32_t toks[4] = {300, 301, 302, 303};
    const float *x;
    float *mag, median;
    int64_t i, d;
    uint64_t e1, e2, kv_per_pos;
    snprintf(cmd, sizeof cmd, "./q4k synth %s --preset tiny --layers 2 --outliers 2>/dev/null", path);
    T_CHECK(system(cmd) == 0, "%s failed", cmd);
    if (q4k_model_load(path, NULL, &m, &err) != Q4K_OK) { T_CHECK(0, "load: %s", err.msg); return; }
    q4k_cpu_backend_create(NULL, &b, &err);
    memset(&sd, 0, sizeof sd);
    sd.n_ctx = 8;
    sd.trace = Q4K_TRACE_LAYERS;
    q4k_session_create(b, m, &sd, &s, &err);
    T_CHECK(q4k_session_eval(s, toks, 4, 0, NULL, &err) == Q4K_OK, "eval: %s", err.msg);
    d = m->hp.n_embd;
    x = q4k_session_trace_layer(s, 0);
    mag = (float *)malloc((size_t)d * 4);
    for (i = 0; i < d; i++) mag[i] = fabsf(x[i]);
    qsort(mag, (size_t)d, 4, cmp_float);
    median = mag[d / 2];
    printf("  --outliers: |x| after layer 0: channel 7 %.1f, channel %lld %.1f, median %.3f\n", fabsf(x[7]),
           (long long)(d / 3), fabsf(x[d / 3]), median);
    T_CHECK(fabsf(x[7]) > 100 * median && fabsf(x[d / 3]) > 100 * median && fabsf(x[d - 5]) > 100 * median,
            "outlier channels are not hundreds of times the median");
    T_CHECK(mag[d - 4] < 100 * median, "more than three outlier channels");
    /* the estimate grows by exactly the f16 KV cache of the added positions */
    e1 = q4k_session_memory_estimate(m, 100, 1);
    e2 = q4k_session_memory_estimate(m, 200, 1);
    kv_per_pos = 2ull * 2ull * (uint64_t)m->hp.n_layer * (uint64_t)(m->hp.n_head_kv * m->hp.head_dim);
    T_CHECK(e2 - e1 >= 100 * kv_per_pos && e2 - e1 <= 100 * kv_per_pos + 100 * 64 * 4, "estimate %llu -> %llu",
            (unsigned long long)e1, (unsigned long long)e2);
    T_CHECK(e1 >= 100 * kv_per_pos, "estimate %llu below the KV cache alone", (unsigned long long)e1);
    free(mag);
    q4k_session_free(s);
    q4k_backend_destroy(b);
    q4k_model_free(m);
    remove(path);
}

/* How much a relative 1e-5 error in every matmul output grows by the
   logits, on the synthetic presets (Q4K_TEST_PRESETS, default "tiny 0.5b").
   DESIGN.md's gate thresholds assume growth well under 1000x. */
static void test_perturbation_growth(void) {
    const char *env = getenv("Q4K_TEST_PRESETS");
    char presets[256], *p, *save = NULL;
    snprintf(presets, sizeof presets, "%s", env ? env : (t_quick() ? "tiny" : "tiny 0.5b"));
    for (p = strtok_r(presets, " ", &save); p; p = strtok_r(NULL, " ", &save)) {
        const char *path = tmp_path("perturb.gguf");
        char cmd[512];
        q4k_model *m = NULL;
        q4k_backend *b = NULL;
        q4k_session *s0 = NULL, *s1 = NULL;
        q4k_session_desc sd;
        q4k_error err;
        int32_t toks[6] = {11, 220, 1999, 17, 900, 3};
        float *l0, *l1;
        double growth = 0;
        int step;
        snprintf(cmd, sizeof cmd, "./q4k synth %s --preset %s --fast --seed 9 2>/dev/null", path, p);
        T_CHECK(system(cmd) == 0, "%s failed", cmd);
        if (q4k_model_load(path, NULL, &m, &err) != Q4K_OK) { T_CHECK(0, "load %s: %s", p, err.msg); continue; }
        q4k_cpu_backend_create(NULL, &b, &err);
        memset(&sd, 0, sizeof sd);
        sd.n_ctx = 16;
        sd.act = Q4K_ACT_F32;
        q4k_session_create(b, m, &sd, &s0, &err);
        sd.faults.perturb_eps = 1e-5f;
        sd.faults.perturb_layer = -1;
        sd.faults.perturb_op = -1;
        sd.faults.seed = 1;
        q4k_session_create(b, m, &sd, &s1, &err);
        l0 = (float *)malloc((size_t)m->hp.n_vocab * 4);
        l1 = (float *)malloc((size_t)m->hp.n_vocab * 4);
        for (step = 0; step < 3; step++) {
            int64_t n = step == 0 ? 4 : 1;
            const int32_t *t = step == 0 ? toks : &toks[3 + step];
            double e;
            q4k_session_eval(s0, t, n, 0, l0, &err);
            q4k_session_eval(s1, t, n, 0, l1, &err);
            e = rel_err(l1, l0, m->hp.n_vocab) / 1e-5;
            if (e > growth) growth = e;
        }
        printf("  preset %s (%lld layers): a 1e-5 relative error in every matmul grows %.1fx by the logits\n", p,
               (long long)m->hp.n_layer, growth);
        T_CHECK(growth > 0.1, "%s: the perturbation did not reach the logits (%.3g)", p, growth);
        T_CHECK(growth < 1000.0, "%s: errors grow %.0fx: badly conditioned synthetic model", p, growth);
        free(l0);
        free(l1);
        q4k_session_free(s0);
        q4k_session_free(s1);
        q4k_backend_destroy(b);
        q4k_model_free(m);
        remove(path);
    }
}

/* ---- fuzz: mutated model files ------------------------------------------ */

/* A small model whose header is mutated at random (byte flips, and integer or
   float hyperparameters overwritten with edge values): every file is either
   refused with a one-line message or loads a model that evaluates without a
   fault (ASan and UBSan builds run this too). */
static void test_model_fuzz(void) {
    static const uint64_t edge[] = {0, 1, 2, 3, 5, 7, 8, 64, 255, 256, 4096, 0x7fffffffu, 0x80000000u, 0xffffffffu,
                                    (uint64_t)1 << 40, ((uint64_t)1 << 40) + 1, ~(uint64_t)0};
    static const float fedge[] = {0.0f, -1.0f, 1e-30f, 1e30f, 3e38f, 1.0f, 1e6f};
    tm_cfg c = base_cfg(Q4K_ARCH_QWEN2);
    const char *path = tmp_path("fuzz");
    unsigned char *file, *m;
    size_t n = 0, data_off = 0;
    int iters = t_quick() ? 400 : 3000, it, loaded = 0, refused = 0, evaluated = 0;
    q4k_backend *b = NULL;
    q4k_gguf *g;
    q4k_error err;
    t_rng rng;
    rng.s = 777;
    c.n_layer = 2;
    c.wtype = Q4K_TYPE_Q8_0;
    if (!tm_write(&c, path, NULL, NULL, NULL)) { T_CHECK(0, "cannot write %s", path); return; }
    file = t_read_file(path, &n);
    remove(path);
    T_CHECK(file != NULL, "read %s", path);
    if (!file) return;
    if (q4k_gguf_open_memory(file, n, NULL, &g, &err) == Q4K_OK) {
        data_off = (size_t)q4k_gguf_data_offset(g);
        q4k_gguf_close(g);
    }
    T_CHECK(data_off > 0, "seed file opens");
    T_CHECK(q4k_cpu_backend_create(NULL, &b, &err) == Q4K_OK, "backend: %s", err.msg);
    if (!data_off || !b) { free(file); return; }
    m = (unsigned char *)malloc(n);
    for (it = 0; it < iters; it++) {
        q4k_model *mod = NULL;
        q4k_result r;
        int k, muts = 1 + (int)(t_rng_next(&rng) % 3);
        memcpy(m, file, n);
        for (k = 0; k < muts; k++) {
            if (t_rng_next(&rng) % 3) {
                /* overwrite a numeric metadata value */
                q4k_gguf_value v;
                int64_t key;
                if (q4k_gguf_open_memory(m, n, NULL, &g, &err) != Q4K_OK) break;
                key = (int64_t)(t_rng_next(&rng) % (uint64_t)q4k_gguf_key_count(g));
                if (q4k_gguf_key_value(g, key, &v) == Q4K_OK && v.type != Q4K_GGUF_STRING && v.type != Q4K_GGUF_ARRAY &&
                    v.file_offset + v.size <= n) {
                    if (v.type == Q4K_GGUF_FLOAT32) {
                        float f = fedge[t_rng_next(&rng) % (sizeof fedge / sizeof fedge[0])];
                        memcpy(m + v.file_offset, &f, 4);
                    } else {
                        uint64_t e = edge[t_rng_next(&rng) % (sizeof edge / sizeof edge[0])];
                        size_t j;
                        for (j = 0; j < v.size && j < 8; j++) m[v.file_offset + j] = (unsigned char)(e >> (8 * j));
                    }
                }
                q4k_gguf_close(g);
            } else {
                size_t pos = (size_t)(t_rng_next(&rng) % data_off);
                m[pos] ^= (unsigned char)(1u << (t_rng_next(&rng) % 8));
            }
        }
        if (q4k_gguf_open_memory(m, n, NULL, &g, &err) != Q4K_OK) {
            refused++;
            T_CHECK(err.msg[0] && !strchr(err.msg, '\n'), "iteration %d: gguf message '%s'", it, err.msg);
            continue;
        }
        r = q4k_model_from_gguf(g, NULL, &mod, &err);
        if (r != Q4K_OK) {
            refused++;
            T_CHECK(err.code == r && err.msg[0] && !strchr(err.msg, '\n'), "iteration %d: model message '%s'", it, err.msg);
            T_CHECK(mod == NULL, "iteration %d: a refused model is returned", it);
        } else {
            q4k_session *s = NULL;
            q4k_session_desc sd;
            int32_t toks[2];
            float *lg = (float *)malloc((size_t)mod->hp.n_vocab * sizeof(float));
            loaded++;
            memset(&sd, 0, sizeof sd);
            sd.n_ctx = 8;
            toks[0] = (int32_t)(it % mod->hp.n_vocab);
            toks[1] = (int32_t)((it * 7 + 1) % mod->hp.n_vocab);
            if (q4k_session_memory_estimate(mod, 8, 2) < ((uint64_t)256 << 20) &&
                q4k_session_create(b, mod, &sd, &s, &err) == Q4K_OK) {
                r = q4k_session_eval(s, toks, 2, 0, lg, &err);
                T_CHECK(r == Q4K_OK, "iteration %d: a model that loaded fails to evaluate: %s", it, err.msg);
                evaluated++;
                q4k_session_free(s);
            }
            free(lg);
            q4k_model_free(mod);
        }
        q4k_gguf_close(g);
    }
    printf("  %d mutated models: %d refused, %d loaded (%d evaluated)\n", iters, refused, loaded, evaluated);
    T_CHECK(refused > iters / 4 && loaded > iters / 20, "the mutations are too %s", refused <= iters / 4 ? "mild" : "harsh");
    free(m);
    free(file);
    q4k_backend_destroy(b);
}

/* A NaN in the weights never comes out as logits: eval fails and says so. */
static void test_nonfinite_logits(void) {
    tm_cfg c = base_cfg(Q4K_ARCH_QWEN2);
    const char *path = tmp_path("nan");
    q4k_model *m = NULL;
    q4k_backend *b = NULL;
    q4k_session *s = NULL;
    q4k_session_desc sd;
    q4k_error err;
    const q4k_tensor *t;
    unsigned char *file;
    size_t n = 0;
    float nan_v, *lg;
    int32_t toks[3] = {1, 2, 3};
    FILE *f;
    if (!tm_write(&c, path, NULL, NULL, NULL)) { T_CHECK(0, "cannot write %s", path); return; }
    T_CHECK(q4k_model_load(path, NULL, &m, &err) == Q4K_OK, "load: %s", err.msg);
    if (!m) return;
    t = q4k_gguf_find_tensor(m->gguf, "output_norm.weight");
    file = t_read_file(path, &n);
    nan_v = (float)(0.0 * HUGE_VAL); /* NaN */
    if (t && file) memcpy(file + t->file_offset + 4 * 5, &nan_v, 4); /* channel 5 of the final norm */
    q4k_model_free(m);
    m = NULL;
    f = fopen(path, "wb");
    if (f && file) fwrite(file, 1, n, f);
    if (f) fclose(f);
    free(file);
    T_CHECK(q4k_model_load(path, NULL, &m, &err) == Q4K_OK, "load: %s", err.msg);
    T_CHECK(q4k_cpu_backend_create(NULL, &b, &err) == Q4K_OK, "backend: %s", err.msg);
    if (!m || !b) { q4k_model_free(m); q4k_backend_destroy(b); return; }
    memset(&sd, 0, sizeof sd);
    sd.n_ctx = 16;
    T_CHECK(q4k_session_create(b, m, &sd, &s, &err) == Q4K_OK, "session: %s", err.msg);
    lg = (float *)malloc((size_t)m->hp.n_vocab * 3 * sizeof(float));
    if (s) {
        T_CHECK(q4k_session_eval(s, toks, 3, Q4K_EVAL_ALL_LOGITS, lg, &err) == Q4K_ERR_BAD_MODEL, "NaN logits accepted");
        T_CHECK(strstr(err.msg, "NaN") && strstr(err.msg, "position 0"), "message: %s", err.msg);
        /* without logits asked for there is nothing to hand out */
        T_CHECK(q4k_session_eval(s, toks, 1, 0, NULL, &err) == Q4K_OK, "eval without logits: %s", err.msg);
    }
    free(lg);
    q4k_session_free(s);
    q4k_backend_destroy(b);
    q4k_model_free(m);
    remove(path);
}

int main(void) {
    T_RUN(test_rope_angles);
    T_RUN(test_chat_templates);
    T_RUN(test_sampler);
    T_RUN(test_sampler_repeat_penalty);
    T_RUN(test_forward_qwen2_f32);
    T_RUN(test_forward_llama_f32_rope_freqs);
    T_RUN(test_forward_quantized_types);
    T_RUN(test_prefill_decode_threads);
    T_RUN(test_trace);
    T_RUN(test_backend_ops);
    T_RUN(test_kv_cache_types);
    T_RUN(test_backend_sharing_threads);
    T_RUN(test_model_validation);
    T_RUN(test_unknown_arch);
    T_RUN(test_synth_tiny_statistics);
    T_RUN(test_generate);
    T_RUN(test_synth_outliers_and_memory);
    T_RUN(test_perturbation_growth);
    T_RUN(test_model_fuzz);
    T_RUN(test_nonfinite_logits);
    T_EXIT();
}
