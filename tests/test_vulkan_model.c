/* Vulkan sessions against the CPU: the whole model on the device.

   - prepare_model: every tensor read back from the device bit for bit,
     bound in parts within the storage-buffer range at aligned offsets
     (forced small limits split every big tensor), shared by sessions;
   - the parity gate (CPU reference, prompt then 8 greedy steps, every op
     traced) passes on a tiny `synth --quant mixed` model (every weight
     type) in both arithmetic modes and both cache types, with the device's
     limits and with range=64K, alloc=256K;
   - a one-token step is recorded once and replayed: its logits after a
     rewind equal the first ones bit for bit, and equal a batched prefill's;
   - every gate fault (this file is a -DQ4K_FAULTS build) is caught at the
     step, layer and op the CPU's own faulted session is caught at
     (tests/test_gate.sh's table).
   The 7B-shaped model with the full vocabulary runs through `q4k qa` in
   tests/test_vulkan_run.sh. Q4K_TEST_VK_DEVICE names a device (default:
   the first, lavapipe in CI); Q4K_TEST_QUICK=1 (ASan) runs the default
   limits only, two of the four mode and cache pairs, every third fault. */
#define Q4K_FAULTS
#define Q4K_VK_TEST_FAULT
#define Q4K_IMPLEMENTATION
#include "q4k.h"
#include "q4k_vulkan.h"
#include "t.h"
#include "t_vk.h"
#include <unistd.h>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

static q4k_backend *cpu, *vk, *vk_small;
static char vk_why[600];
static char tmpdir[64];

static q4k_backend *make_backend(uint64_t range, uint64_t alloc, char *why) {
    return t_vk_backend(range, alloc, 0, why, 600);
}

#define NEED_VK()                                                              \
    do {                                                                       \
        if (!vk) {                                                             \
            char why_[200];                                                    \
            snprintf(why_, sizeof why_, "%.190s", vk_why);                     \
            T_SKIP(why_);                                                      \
        }                                                                      \
    } while (0)

/* a synthetic model from `q4k synth` (NULL on failure, reported) */
static q4k_model *synth_model(const char *name, const char *args, char *path, size_t cap) {
    char cmd[700];
    q4k_model *m = NULL;
    q4k_error err;
    snprintf(path, cap, "%s/%s.gguf", tmpdir, name);
    if (access(path, R_OK) != 0) {
        snprintf(cmd, sizeof cmd, "./q4k synth %s %s 2>/dev/null >/dev/null", path, args);
        if (system(cmd) != 0) {
            T_CHECK(0, "cannot make the %s model (%s)", name, cmd);
            return NULL;
        }
    }
    if (q4k_model_load(path, NULL, &m, &err) != Q4K_OK) {
        T_CHECK(0, "%s: %s", path, err.msg);
        return NULL;
    }
    return m;
}

/* bytes of a device binding, copied to host memory */
static int read_back(q4k__vk_backend *vb, const q4k__vk_slice *src, unsigned char *dst, q4k_error *err) {
    q4k__vk_arena host;
    q4k__vk_slice h;
    VkCommandBufferBeginInfo bi;
    VkBufferCopy c;
    int ok = 0;
    memset(&host, 0, sizeof host);
    if (q4k__vk_sub(vb, &host, src->size, src->size, 1, &h, err) == Q4K_OK) {
        memset(&bi, 0, sizeof bi);
        bi.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO;
        vb->vkResetCommandBuffer(vb->cmd, 0);
        vb->vkBeginCommandBuffer(vb->cmd, &bi);
        c.srcOffset = src->off;
        c.dstOffset = h.off;
        c.size = src->size;
        vb->vkCmdCopyBuffer(vb->cmd, src->buf, h.buf, 1, &c);
        vb->vkEndCommandBuffer(vb->cmd);
        if (q4k__vk_submit_wait(vb, vb->cmd, vb->fence, err) == Q4K_OK) {
            memcpy(dst, h.map, (size_t)src->size);
            ok = 1;
        }
    }
    q4k__vk_arena_free(vb, &host);
    return ok;
}

/* every tensor of the model on b, in parts within b's limits, equal to the file's bytes */
static void check_prepared(q4k_backend *b, const q4k_model *m, int64_t *max_parts) {
    q4k__vk_backend *vb = (q4k__vk_backend *)b->impl;
    const q4k__vk_model *vm = (const q4k__vk_model *)q4k_backend_prepared(b, m);
    int64_t i, k, bad = 0;
    q4k_error err;
    *max_parts = 0;
    T_CHECK(vm != NULL, "no prepared model");
    if (!vm) return;
    for (i = 0; i < vm->nt; i++) {
        const q4k__vk_split *w = &vm->wt[i];
        const q4k_tensor *t = q4k_gguf_tensor(m->gguf, i);
        uint64_t at = 0;
        if (w->n > *max_parts) *max_parts = w->n;
        T_CHECK(w->rows * w->row_bytes == t->nbytes, "%s: %llu rows of %llu bytes for %zu bytes", t->name, (unsigned long long)w->rows,
                (unsigned long long)w->row_bytes, t->nbytes);
        for (k = 0; k < w->n; k++) {
            const q4k__vk_slice *p = &w->part[k];
            uint64_t bytes = q4k__vk_split_rows(w, k) * w->row_bytes;
            unsigned char *got = (unsigned char *)malloc((size_t)p->size);
            T_CHECK(p->off % vb->align == 0 && p->size <= vb->range, "%s part %lld: offset %llu, %llu bytes (range %llu, align %llu)",
                    t->name, (long long)k, (unsigned long long)p->off, (unsigned long long)p->size, (unsigned long long)vb->range,
                    (unsigned long long)vb->align);
            if (!got || !read_back(vb, p, got, &err)) {
                T_CHECK(0, "read back %s: %s", t->name, err.msg);
            } else if (memcmp(got, (const unsigned char *)t->data + at, (size_t)bytes)) {
                bad++;
                T_CHECK(0, "%s part %lld differs from the file", t->name, (long long)k);
            }
            free(got);
            at += bytes;
        }
    }
    for (i = 0; i < vm->mem.n; i++)
        T_CHECK(vm->mem.blk[i].size <= vb->alloc, "allocation %lld: %llu bytes over the limit %llu", (long long)i,
                (unsigned long long)vm->mem.blk[i].size, (unsigned long long)vb->alloc);
    (void)bad;
}

/* Weights uploaded once per model, read back exactly, split under small
   limits; two sessions share them and compute the same logits. */
static void test_prepare(void) {
    char path[256];
    q4k_model *m;
    q4k_session *s1 = NULL, *s2 = NULL, *s3 = NULL;
    q4k_session_desc sd;
    q4k_error err;
    int32_t toks[5] = {3, 99, 1000, 7, 42};
    float *l1, *l2;
    int64_t n0, parts = 0;
    NEED_VK();
    if (!(m = synth_model("mixed", "--preset tiny --quant mixed --seed 3", path, sizeof path))) return;
    l1 = (float *)malloc(sizeof(float) * (size_t)m->hp.n_vocab);
    l2 = (float *)malloc(sizeof(float) * (size_t)m->hp.n_vocab);
    memset(&sd, 0, sizeof sd);
    sd.n_ctx = 64;
    n0 = vk->n_prepare;
    T_CHECK(q4k_session_create(vk, m, &sd, &s1, &err) == Q4K_OK && q4k_session_create(vk, m, &sd, &s2, &err) == Q4K_OK, "%s", err.msg);
    T_CHECK(vk->n_prepare == n0 + 1, "the model was prepared %lld times for two sessions", (long long)(vk->n_prepare - n0));
    check_prepared(vk, m, &parts);
    if (s1 && s2) {
        T_CHECK(q4k_session_eval(s1, toks, 5, 0, l1, &err) == Q4K_OK && q4k_session_eval(s2, toks, 5, 0, l2, &err) == Q4K_OK, "%s", err.msg);
        T_CHECK(memcmp(l1, l2, sizeof(float) * (size_t)m->hp.n_vocab) == 0, "two sessions of one model differ");
    }
    q4k_session_free(s1);
    T_CHECK(q4k_backend_prepared(vk, m) != NULL, "the model was released while a session uses it");
    q4k_session_free(s2);
    T_CHECK(q4k_backend_prepared(vk, m) == NULL, "the model is still held after its last session");
    if (vk_small) { /* range 64K: the 2048-row embedding and lm_head in several parts */
        T_CHECK(q4k_session_create(vk_small, m, &sd, &s3, &err) == Q4K_OK, "%s", err.msg);
        check_prepared(vk_small, m, &parts);
        T_CHECK(parts >= 4, "under range=64K the largest tensor is in %lld parts", (long long)parts);
        if (s3) {
            T_CHECK(q4k_session_eval(s3, toks, 5, 0, l2, &err) == Q4K_OK, "%s", err.msg);
            /* the same kernels over other bindings: the same sums, in the same order */
            T_CHECK(memcmp(l1, l2, sizeof(float) * (size_t)m->hp.n_vocab) == 0, "split weights change the logits");
        }
        q4k_session_free(s3);
    }
    free(l1);
    free(l2);
    q4k_model_free(m);
}

/* the gate (CPU reference) on b: prompt then `steps` greedy steps pass */
static void gate_pass(q4k_backend *b, const char *what, const q4k_model *m, q4k_act_mode act, q4k_kv_type kv, int64_t steps) {
    q4k_session_desc sd;
    q4k_gate_desc gd;
    q4k_gate_report rep;
    q4k_error err;
    int32_t toks[20];
    double worst = 1.0, opc = 1.0;
    int64_t i;
    for (i = 0; i < 20; i++) toks[i] = (int32_t)((i * 7919 + 13) % m->hp.n_vocab);
    memset(&sd, 0, sizeof sd);
    memset(&gd, 0, sizeof gd);
    sd.act = act;
    sd.kv = kv;
    gd.steps = steps;
    if (q4k_gate_run(cpu, b, m, &sd, toks, 20, &gd, &rep, &err) != Q4K_OK) {
        T_CHECK(0, "%s: gate: %s", what, err.msg);
        return;
    }
    for (i = 0; i < rep.n_steps; i++) {
        if (!(rep.step[i].logits.cosine >= worst)) worst = rep.step[i].logits.cosine;
        if (!(rep.step[i].op_cos >= opc)) opc = rep.step[i].op_cos;
    }
    printf("  gate %s %s, %s cache: %s, %lld steps, worst logits cosine %.9f, op %.9f\n", what, act == Q4K_ACT_F32 ? "f32" : "q8",
           q4k_kv_type_name(kv), rep.pass ? "pass" : "FAIL", (long long)rep.n_steps, worst, opc);
    T_CHECK(rep.pass, "%s: the gate rejects Vulkan at step %lld: %s (%s)", what, (long long)rep.failed_step, rep.reason, rep.where);
    T_CHECK(rep.n_steps == steps + 1, "%s: %lld steps judged, not %lld", what, (long long)rep.n_steps, (long long)(steps + 1));
    /* float activations over an f32 cache: the same sums as the CPU's, in another order */
    if (act == Q4K_ACT_F32 && kv == Q4K_KV_F32) T_CHECK(worst > 0.999999, "%s: float mode logits cosine %.9f", what, worst);
}

static void test_gate_tiny(void) {
    char path[256];
    q4k_model *m;
    int mode, kv;
    NEED_VK();
    if (!(m = synth_model("mixed", "--preset tiny --quant mixed --seed 3", path, sizeof path))) return;
    for (mode = 0; mode < 2; mode++)
        for (kv = 0; kv < 2; kv++) {
            if (t_quick() && mode != kv) continue; /* ASan: 8-bit over f16, float over f32 */
            gate_pass(vk, "tiny mixed", m, mode ? Q4K_ACT_F32 : Q4K_ACT_Q8, kv ? Q4K_KV_F32 : Q4K_KV_F16, 8);
            if (vk_small) gate_pass(vk_small, "tiny mixed, range=64K alloc=256K", m, mode ? Q4K_ACT_F32 : Q4K_ACT_Q8,
                                    kv ? Q4K_KV_F32 : Q4K_KV_F16, 8);
        }
    q4k_model_free(m);
}

/* A decode step is recorded once and replayed at every position: 6 steps,
   one recording; after a rewind the replayed steps give the same bits; and
   token by token equals one batched pass (float mode, f32 cache). */
static void test_replay(void) {
    char path[256];
    q4k_model *m;
    q4k_session *s = NULL, *t = NULL;
    q4k_session_desc sd;
    q4k_error err;
    int32_t toks[8] = {5, 77, 300, 1999, 4, 1024, 12, 600};
    float *a, *b, *all;
    int64_t nv, i, rec0;
    double dot = 0, na = 0, nb = 0;
    NEED_VK();
    if (!(m = synth_model("mixed", "--preset tiny --quant mixed --seed 3", path, sizeof path))) return;
    nv = m->hp.n_vocab;
    a = (float *)malloc(sizeof(float) * (size_t)(nv * 8));
    b = (float *)malloc(sizeof(float) * (size_t)(nv * 8));
    all = (float *)malloc(sizeof(float) * (size_t)(nv * 8));
    memset(&sd, 0, sizeof sd);
    sd.n_ctx = 32;
    sd.act = Q4K_ACT_F32;
    sd.kv = Q4K_KV_F32;
    if (q4k_session_create(vk, m, &sd, &s, &err) != Q4K_OK || q4k_session_create(vk, m, &sd, &t, &err) != Q4K_OK) {
        T_CHECK(0, "%s", err.msg);
        goto done;
    }
    T_CHECK(q4k_session_eval(s, toks, 2, 0, a, &err) == Q4K_OK, "%s", err.msg);
    rec0 = ((q4k__vk_session *)s)->n_recorded;
    for (i = 2; i < 8; i++) T_CHECK(q4k_session_eval(s, &toks[i], 1, 0, a + i * nv, &err) == Q4K_OK, "%s", err.msg);
    T_CHECK(((q4k__vk_session *)s)->n_recorded == rec0 + 1, "6 one-token steps recorded %lld times",
            (long long)(((q4k__vk_session *)s)->n_recorded - rec0));
    T_CHECK(q4k_session_rewind(s, 4) == Q4K_OK, "rewind");
    for (i = 4; i < 8; i++) T_CHECK(q4k_session_eval(s, &toks[i], 1, 0, b + i * nv, &err) == Q4K_OK, "%s", err.msg);
    T_CHECK(memcmp(a + 4 * nv, b + 4 * nv, sizeof(float) * (size_t)(4 * nv)) == 0, "replayed steps after a rewind differ");
    T_CHECK(((q4k__vk_session *)s)->n_recorded == rec0 + 1, "a rewind re-recorded the step");
    T_CHECK(q4k_session_eval(t, toks, 8, Q4K_EVAL_ALL_LOGITS, all, &err) == Q4K_OK, "%s", err.msg);
    for (i = 0; i < nv; i++) { /* the last token's logits, stepped against batched */
        dot += (double)a[7 * nv + i] * all[7 * nv + i];
        na += (double)a[7 * nv + i] * a[7 * nv + i];
        nb += (double)all[7 * nv + i] * all[7 * nv + i];
    }
    T_CHECK(dot / sqrt(na * nb) > 0.999999, "stepped and batched logits: cosine %.9f", dot / sqrt(na * nb));
    T_CHECK(q4k_session_pos(s) == 8 && q4k_session_pos(t) == 8, "positions %lld, %lld", (long long)q4k_session_pos(s),
            (long long)q4k_session_pos(t));
done:
    q4k_session_free(s);
    q4k_session_free(t);
    free(a);
    free(b);
    free(all);
    q4k_model_free(m);
}

/* Every fault of Q4K_FAULT_LIST (and perturb) makes the gate fail at the
   step, layer and op tests/test_gate.sh expects of the CPU. */
static void test_faults(void) {
    static const struct { const char *spec, *model, *args, *where; int64_t step; } cases[] = {
        {"gqa", "tiny", "--preset tiny --seed 3 --fast", "layer 0, attn", 0},
        {"bias", "tiny", "--preset tiny --seed 3 --fast", "layer 0, q", 0},
        {"kv_step2", "tiny", "--preset tiny --seed 3 --fast", "layer 0, attn", 2},
        {"q4k_scales", "tiny", "--preset tiny --seed 3 --fast", "layer 0, q", 0},
        {"f16_acc", "tinyo", "--preset tiny --outliers --seed 3 --fast", "layer 0, attn_norm", 0},
        {"split", "tiny", "--preset tiny --seed 3 --fast", "lm_head", 0},
        {"split", "b05", "--preset 0.5b --layers 2 --seed 3 --fast", "lm_head", 0},
        {"perturb:1:down:0.05", "tiny", "--preset tiny --seed 3 --fast", "layer 1, down", 0},
        {"perturb:3:q_rope:0.05", "tiny", "--preset tiny --seed 3 --fast", "layer 3, q_rope", 0},
        {"perturb:0:embedding:0.05", "tiny", "--preset tiny --seed 3 --fast", "embedding", 0},
        {"perturb:1:k:0.05", "b05", "--preset 0.5b --layers 2 --seed 3 --fast", "layer 1, k", 0},
    };
    size_t c;
    NEED_VK();
    for (c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char path[256];
        q4k_model *m;
        q4k_session_desc sd;
        q4k_gate_desc gd;
        q4k_gate_report rep;
        q4k_error err;
        int32_t toks[2] = {72, 101}; /* "He" */
        if (t_quick() && c % 3) continue;
        if (!(m = synth_model(cases[c].model, cases[c].args, path, sizeof path))) continue;
        memset(&sd, 0, sizeof sd);
        memset(&gd, 0, sizeof gd);
        gd.steps = 3;
        if (q4k_faults_parse(cases[c].spec, &sd.faults, &err) != Q4K_OK || q4k_gate_run(cpu, vk, m, &sd, toks, 2, &gd, &rep, &err) != Q4K_OK) {
            T_CHECK(0, "%s: %s", cases[c].spec, err.msg);
        } else {
            printf("  fault %-26s %s at step %lld: %s (%s)\n", cases[c].spec, rep.pass ? "MISSED" : "caught", (long long)rep.failed_step,
                   rep.where, rep.reason);
            T_CHECK(!rep.pass, "fault %s: the gate passed", cases[c].spec);
            T_CHECK(rep.failed_step == cases[c].step && !strcmp(rep.where, cases[c].where), "fault %s: caught at step %lld, %s; want step %lld, %s",
                    cases[c].spec, (long long)rep.failed_step, rep.where, (long long)cases[c].step, cases[c].where);
        }
        q4k_model_free(m);
    }
}

/* limits too small for a session are said, not run; a fault build takes faulted sessions */
static void test_refusals(void) {
    char path[256];
    q4k_model *m;
    q4k_session *s = NULL;
    q4k_session_desc sd;
    q4k_error err;
    q4k_backend *tiny_range;
    NEED_VK();
    if (!(m = synth_model("mixed", "--preset tiny --quant mixed --seed 3", path, sizeof path))) return;
    memset(&sd, 0, sizeof sd);
    sd.n_ctx = 16;
    /* a range under one token's logits (2048 floats): said, not run */
    if ((tiny_range = make_backend(4096, 1 << 20, vk_why))) {
        T_CHECK(q4k_session_create(tiny_range, m, &sd, &s, &err) != Q4K_OK && strstr(err.msg, "storage-buffer range"),
                "a 4K range: %s", s ? "accepted" : err.msg);
        q4k_session_free(s);
        q4k_backend_destroy(tiny_range);
    }
    s = NULL;
    sd.faults.mask = 1u << Q4K_FAULT_GQA;
    T_CHECK(q4k_session_create(vk, m, &sd, &s, &err) == Q4K_OK, "a faulted session in a fault build: %s", err.msg);
    q4k_session_free(s);
    q4k_model_free(m);
}

/* a device lost during a step (the test build's Q4K_VK_TEST_FAULT_EVAL): that
   eval fails saying so, every later call of the session and of new sessions
   says the backend is dead, nothing is submitted again */
static void test_device_lost(void) {
    char path[256];
    q4k_model *m;
    q4k_session *s = NULL, *s2 = NULL;
    q4k_session_desc sd;
    q4k_error err;
    q4k_backend *b;
    float *logits;
    int32_t tok = 1;
    int i;
    q4k_result r[4];
    NEED_VK();
    if (!(m = synth_model("mixed", "--preset tiny --quant mixed --seed 3", path, sizeof path))) return;
    setenv("Q4K_VK_TEST_FAULT_EVAL", "3", 1);
    b = make_backend(0, 0, vk_why);
    unsetenv("Q4K_VK_TEST_FAULT_EVAL");
    if (!b) {
        T_CHECK(0, "backend: %s", vk_why);
        q4k_model_free(m);
        return;
    }
    logits = (float *)malloc((size_t)m->hp.n_vocab * sizeof *logits);
    memset(&sd, 0, sizeof sd);
    sd.n_ctx = 16;
    T_CHECK(q4k_session_create(b, m, &sd, &s, &err) == Q4K_OK, "session: %s", err.msg);
    if (s && logits) {
        for (i = 0; i < 4; i++) {
            r[i] = q4k_session_eval(s, &tok, 1, 0, logits, &err);
            if (i == 2) T_CHECK(r[i] == Q4K_ERR_GPU && strstr(err.msg, "the device was lost") && strstr(err.msg, "dead"),
                                "eval 3: %s", err.msg);
            if (i == 3) T_CHECK(r[i] == Q4K_ERR_GPU && strstr(err.msg, "the backend is dead"), "eval 4: %s", err.msg);
        }
        T_CHECK(r[0] == Q4K_OK && r[1] == Q4K_OK, "evals 1 and 2 ran (%d %d)", (int)r[0], (int)r[1]);
        T_CHECK(q4k_session_create(b, m, &sd, &s2, &err) != Q4K_OK && strstr(err.msg, "dead") && !s2,
                "a new session on a dead backend: %s", s2 ? "accepted" : err.msg);
    }
    q4k_session_free(s2);
    q4k_session_free(s);
    free(logits);
    q4k_backend_destroy(b);
    q4k_model_free(m);
}

int main(void) {
    q4k_cpu_backend_desc cd;
    q4k_error err;
    char cmd[128];
#if defined(__SANITIZE_ADDRESS__)
    __lsan_disable(); /* lavapipe's JIT code leaks blocks LeakSanitizer cannot attribute (test_vulkan.c) */
#endif
    memset(&cd, 0, sizeof cd);
    if (q4k_cpu_backend_create(&cd, &cpu, &err) != Q4K_OK) {
        printf("FAIL cpu_backend %s\n", err.msg);
        return 1;
    }
    snprintf(tmpdir, sizeof tmpdir, "/tmp/q4k_vkmodel_%ld", (long)getpid());
    snprintf(cmd, sizeof cmd, "mkdir -p %s", tmpdir);
    if (system(cmd) != 0) printf("  cannot make %s\n", tmpdir);
    vk = make_backend(0, 0, vk_why);
    if (vk && !t_quick()) vk_small = make_backend(64 << 10, 256 << 10, vk_why);
    T_RUN(test_prepare);
    T_RUN(test_gate_tiny);
    T_RUN(test_replay);
    T_RUN(test_faults);
    T_RUN(test_refusals);
    T_RUN(test_device_lost);
    q4k_backend_destroy(vk_small);
    q4k_backend_destroy(vk);
    q4k_backend_destroy(cpu);
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) printf("  cannot remove %s\n", tmpdir);
    T_EXIT();
}
