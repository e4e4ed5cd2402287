/* Resource limits: a context, a KV cache, a file read into memory and a
   device's memory are checked before anything is allocated, read or
   uploaded, with the bytes needed and available in the message.

   Host memory is forced small with Q4K_HOST_MEM_LIMIT; device memory with a
   fake backend whose mem_info reports what its own allocations left (the
   CUDA and Vulkan backends fill mem_info themselves). The model is the tiny
   synthetic one (./q4k synth). */
#if !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include "q4k.h"
#include "t.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char model_path[256];
static q4k_model *model;

static int need_model(void) {
    char cmd[512];
    q4k_error err;
    if (model) return 1;
    snprintf(model_path, sizeof model_path, "%s/q4k_test_limits_%d.gguf", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             (int)getpid());
    snprintf(cmd, sizeof cmd, "./q4k synth %s --preset tiny --seed 3 2>/dev/null", model_path);
    if (system(cmd) != 0 || q4k_model_load(model_path, NULL, &model, &err) != Q4K_OK) return 0;
    return 1;
}

/* KV bytes per token, from the hyperparameters (K and V of every layer) */
static unsigned long long kv_per_token(const q4k_model *m, int bytes) {
    return 2ull * (unsigned long long)m->hp.n_layer * (unsigned long long)(m->hp.n_head_kv * m->hp.head_dim) *
           (unsigned long long)bytes;
}

/* the N of "at most N tokens fit" in a message, -1 when absent */
static long long fit_of(const char *msg) {
    const char *p = strstr(msg, "at most ");
    return p ? atoll(p + 8) : -1;
}

static void test_host_memory_env(void) {
    const char *src = NULL;
    uint64_t v;
    static const struct { const char *s; unsigned long long want; } cases[] = {
        {"123", 123ull}, {"4K", 4096ull}, {"3M", 3ull << 20}, {"2GiB", 2ull << 30}, {"1t", 1ull << 40}, {"7B", 7ull},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        setenv("Q4K_HOST_MEM_LIMIT", cases[i].s, 1);
        v = q4k_host_memory_available(&src);
        T_CHECK(v == cases[i].want && !strcmp(src, "Q4K_HOST_MEM_LIMIT"), "'%s' read as %llu (%s)", cases[i].s,
                (unsigned long long)v, src);
    }
    /* a limit asked for and not understood allows nothing, and says why */
    setenv("Q4K_HOST_MEM_LIMIT", "1.5G", 1);
    v = q4k_host_memory_available(&src);
    T_CHECK(v == 0 && strstr(src, "not a byte count"), "'1.5G' read as %llu (%s)", (unsigned long long)v, src);
    setenv("Q4K_HOST_MEM_LIMIT", "99999999999999999999", 1);
    T_CHECK(q4k_host_memory_available(&src) == 0, "an overflowing limit was accepted");
    unsetenv("Q4K_HOST_MEM_LIMIT");
    v = q4k_host_memory_available(&src);
#if defined(__linux__)
    {
        /* the same number as /proc/meminfo's MemAvailable, read here at about the same time */
        FILE *f = fopen("/proc/meminfo", "r");
        char line[256];
        unsigned long long kb = 0;
        while (f && fgets(line, sizeof line, f))
            if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
        if (f) fclose(f);
        T_CHECK(kb > 0 && strstr(src, "MemAvailable"), "source %s", src);
        T_CHECK(v > kb * 1024ull / 2 && v < kb * 1024ull * 2, "MemAvailable %llu kB, read %llu bytes", kb,
                (unsigned long long)v);
    }
#else
    T_CHECK(v > 0, "no host memory (%s)", src);
#endif
}

/* A CPU session too large for the host is refused before the backend
   prepares the model; the largest context the message names fits, one more
   token does not. */
static void test_session_host_limit(void) {
    q4k_backend *b = NULL;
    q4k_session *s = NULL;
    q4k_session_desc sd;
    q4k_error err;
    q4k_result r;
    long long fit16, fit32;
    char want[64];
    if (!need_model()) { T_CHECK(0, "no model (./q4k synth)"); return; }
    q4k_cpu_backend_create(NULL, &b, &err);
    if (!b) { T_CHECK(0, "cpu: %s", err.msg); return; }
    setenv("Q4K_HOST_MEM_LIMIT", "2M", 1);
    memset(&sd, 0, sizeof sd);
    sd.n_ctx = 100000;
    r = q4k_session_create(b, model, &sd, &s, &err);
    T_CHECK(r == Q4K_ERR_OUT_OF_MEMORY && !s, "n_ctx 100000 under 2 MiB: %s", q4k_result_string(r));
    T_CHECK(b->n_prepare == 0, "the model was prepared before the refusal");
    snprintf(want, sizeof want, "%llu bytes per token", kv_per_token(model, 2));
    T_CHECK(strstr(err.msg, want) != NULL, "'%s' not in: %s", want, err.msg);
    T_CHECK(strstr(err.msg, "2097152 bytes (2.0 MiB) are available (Q4K_HOST_MEM_LIMIT)") != NULL, "%s", err.msg);
    T_CHECK(strstr(err.msg, "a context of 100000 tokens") != NULL, "%s", err.msg);
    fit16 = fit_of(err.msg);
    T_CHECK(fit16 > 0 && fit16 < 100000, "fit %lld: %s", fit16, err.msg);
    sd.n_ctx = fit16;
    r = q4k_session_create(b, model, &sd, &s, &err);
    T_CHECK(r == Q4K_OK && s, "the %lld tokens the message promised do not fit: %s", fit16, err.msg);
    q4k_session_free(s);
    s = NULL;
    sd.n_ctx = fit16 + 1;
    r = q4k_session_create(b, model, &sd, &s, &err);
    T_CHECK(r == Q4K_ERR_OUT_OF_MEMORY && fit_of(err.msg) == fit16, "%lld + 1 tokens: %s", fit16, err.msg);
    q4k_session_free(s);
    s = NULL;
    /* an f32 cache takes twice the bytes per token: fewer tokens fit */
    sd.kv = Q4K_KV_F32;
    sd.n_ctx = 100000;
    r = q4k_session_create(b, model, &sd, &s, &err);
    snprintf(want, sizeof want, "%llu bytes per token", kv_per_token(model, 4));
    fit32 = fit_of(err.msg);
    T_CHECK(r == Q4K_ERR_OUT_OF_MEMORY && strstr(err.msg, want) && fit32 > 0 && fit32 < fit16, "f32: %s", err.msg);
    /* the check is the library's: q4k_session_check_memory says the same without a session */
    T_CHECK(q4k_session_check_memory(b, model, &sd, &err) == Q4K_ERR_OUT_OF_MEMORY && fit_of(err.msg) == fit32,
            "check_memory: %s", err.msg);
    sd.n_ctx = Q4K_MAX_CTX + 1;
    unsetenv("Q4K_HOST_MEM_LIMIT");
    r = q4k_session_create(b, model, &sd, &s, &err);
    T_CHECK(r == Q4K_ERR_INVALID_ARG && strstr(err.msg, "limit of 16777216"), "above Q4K_MAX_CTX: %s", err.msg);
    q4k_session_free(s);
    q4k_backend_destroy(b);
}

static void count_progress(float f, void *user) {
    (void)f;
    ++*(int *)user;
}

/* The loader checks the caller's context before it reads any weight (its
   progress callback reports the reading). */
static void test_loader_context(void) {
    q4k_model *m = NULL;
    q4k_model_desc md;
    q4k_error err;
    q4k_result r;
    int calls = 0;
    if (!need_model()) { T_CHECK(0, "no model (./q4k synth)"); return; }
    memset(&md, 0, sizeof md);
    md.progress = count_progress;
    md.progress_user = &calls;
    md.n_ctx = 1000000;
    setenv("Q4K_HOST_MEM_LIMIT", "64M", 1);
    r = q4k_model_load(model_path, &md, &m, &err);
    T_CHECK(r == Q4K_ERR_OUT_OF_MEMORY && !m, "n_ctx 1000000 under 64 MiB: %s", q4k_result_string(r));
    T_CHECK(calls == 0, "%d progress calls: weights were read before the refusal", calls);
    T_CHECK(strstr(err.msg, "model: a context of 1000000 tokens") && strstr(err.msg, "(Q4K_HOST_MEM_LIMIT)") &&
                fit_of(err.msg) > 0,
            "%s", err.msg);
    /* the default context (< 0) is the session's: min(training, 4096) */
    setenv("Q4K_HOST_MEM_LIMIT", "100K", 1);
    md.n_ctx = -1;
    r = q4k_model_load(model_path, &md, &m, &err);
    T_CHECK(r == Q4K_ERR_OUT_OF_MEMORY && strstr(err.msg, "a context of 4096 tokens"), "default: %s", err.msg);
    md.n_ctx = Q4K_MAX_CTX + 1;
    r = q4k_model_load(model_path, &md, &m, &err);
    T_CHECK(r == Q4K_ERR_INVALID_ARG, "above Q4K_MAX_CTX: %s", err.msg);
    /* what fits loads, and the weights are read (the test above can fail) */
    setenv("Q4K_HOST_MEM_LIMIT", "64M", 1);
    md.n_ctx = 1000;
    r = q4k_model_load(model_path, &md, &m, &err);
    T_CHECK(r == Q4K_OK && m && calls > 0, "n_ctx 1000 under 64 MiB: %s, %d progress calls", err.msg, calls);
    q4k_model_free(m);
    m = NULL;
    /* a file read into memory (no mmap) must fit too */
    memset(&md, 0, sizeof md);
    md.no_mmap = 1;
    setenv("Q4K_HOST_MEM_LIMIT", "1M", 1);
    r = q4k_model_load(model_path, &md, &m, &err);
    T_CHECK(r == Q4K_ERR_OUT_OF_MEMORY && strstr(err.msg, "1048576 are available"), "no_mmap under 1 MiB: %s", err.msg);
    unsetenv("Q4K_HOST_MEM_LIMIT");
    r = q4k_model_load(model_path, &md, &m, &err);
    T_CHECK(r == Q4K_OK, "no_mmap: %s", err.msg);
    q4k_model_free(m);
}

/* A device backend in miniature: mem_info reports what its uploads and
   KV caches left of `total`. */
typedef struct fake_backend {
    q4k_backend base;
    uint64_t total, used;
    int fail_info; /* mem_info fails as a dead driver would */
    int64_t sessions;
} fake_backend;

typedef struct fake_session {
    q4k_session base;
    uint64_t bytes;
} fake_session;

static q4k_result fake_mem_info(q4k_backend *b, uint64_t *free_bytes, uint64_t *total_bytes, q4k_error *err) {
    fake_backend *f = (fake_backend *)b;
    if (f->fail_info) return q4k__fail(err, Q4K_ERR_GPU, "fake: the driver is gone");
    *free_bytes = f->total - f->used;
    *total_bytes = f->total;
    return Q4K_OK;
}

static q4k_result fake_prepare(q4k_backend *b, const q4k_model *m, void **data, q4k_error *err) {
    fake_backend *f = (fake_backend *)b;
    (void)err;
    f->used += q4k_model_weight_bytes(m);
    *data = f;
    return Q4K_OK;
}

static void fake_release(q4k_backend *b, const q4k_model *m, void *data) {
    fake_backend *f = (fake_backend *)b;
    (void)data;
    f->used -= q4k_model_weight_bytes(m);
}

static q4k_result fake_eval(q4k_session *s, const int32_t *t, int64_t n, unsigned flags, float *logits, q4k_error *err) {
    (void)s; (void)t; (void)n; (void)flags; (void)logits;
    return q4k__fail(err, Q4K_ERR_UNSUPPORTED, "fake: no forward pass");
}

static void fake_session_destroy(q4k_session *s) {
    fake_backend *f = (fake_backend *)s->backend;
    f->used -= ((fake_session *)s)->bytes;
    f->sessions--;
    free(s);
}

static q4k_result fake_session_create(q4k_backend *b, const q4k_model *m, const q4k_session_desc *d, q4k_session **out,
                                      q4k_error *err) {
    fake_backend *f = (fake_backend *)b;
    fake_session *s = (fake_session *)calloc(1, sizeof *s);
    if (!s) return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "fake: out of memory");
    q4k__session_init(&s->base, b, m, d);
    s->base.eval = fake_eval;
    s->base.destroy = fake_session_destroy;
    s->bytes = kv_per_token(m, d->kv == Q4K_KV_F32 ? 4 : 2) * (uint64_t)d->n_ctx;
    f->used += s->bytes;
    f->sessions++;
    *out = &s->base;
    return Q4K_OK;
}

static void fake_init(fake_backend *f, uint64_t total) {
    memset(f, 0, sizeof *f);
    f->base.name = "fake";
    f->base.prepare_model = fake_prepare;
    f->base.release_model = fake_release;
    f->base.session_create = fake_session_create;
    f->base.mem_info = fake_mem_info;
    f->total = total;
}

static void test_device_memory(void) {
    fake_backend f;
    q4k_session *s1 = NULL, *s2 = NULL;
    q4k_session_desc sd;
    q4k_error err;
    q4k_result r;
    uint64_t w, per_tok;
    long long fit;
    char want[96];
    if (!need_model()) { T_CHECK(0, "no model (./q4k synth)"); return; }
    w = q4k_model_weight_bytes(model);
    per_tok = kv_per_token(model, 2);
    memset(&sd, 0, sizeof sd);
    sd.n_ctx = 64;
    /* less than the weights: refused before anything is uploaded */
    fake_init(&f, w / 2);
    r = q4k_session_create(&f.base, model, &sd, &s1, &err);
    T_CHECK(r == Q4K_ERR_OUT_OF_MEMORY && !s1 && f.base.n_prepare == 0 && f.used == 0, "weights > device: %s",
            q4k_result_string(r));
    snprintf(want, sizeof want, "weights to upload %llu bytes", (unsigned long long)w);
    T_CHECK(strstr(err.msg, want) && strstr(err.msg, "not even the weights fit") && strstr(err.msg, "fake device"),
            "%s", err.msg);
    snprintf(want, sizeof want, "the device has %llu bytes", (unsigned long long)(w / 2));
    T_CHECK(strstr(err.msg, want) != NULL, "'%s' not in: %s", want, err.msg);
    /* room for the weights, the scratch and 64 + 1000 tokens of cache: the
       first session uploads, a second one of 1000 tokens pays only its cache */
    fake_init(&f, w + 4 * 1024 * 1024 + 1064 * per_tok);
    r = q4k_session_create(&f.base, model, &sd, &s1, &err);
    T_CHECK(r == Q4K_OK && f.base.n_prepare == 1 && f.used == w + 64 * per_tok, "first session: %s", err.msg);
    sd.n_ctx = 1000;
    r = q4k_session_create(&f.base, model, &sd, &s2, &err);
    T_CHECK(r == Q4K_OK && f.base.n_prepare == 1 && f.sessions == 2, "second session (weights counted twice?): %s",
            err.msg);
    q4k_session_free(s2);
    s2 = NULL;
    /* a cache larger than what is left: refused, the largest context named and true */
    sd.n_ctx = 100000;
    r = q4k_session_create(&f.base, model, &sd, &s2, &err);
    fit = fit_of(err.msg);
    T_CHECK(r == Q4K_ERR_OUT_OF_MEMORY && !s2 && strstr(err.msg, "weights to upload 0 bytes") && fit >= 1000 &&
                fit < 100000,
            "100000 tokens: %s", err.msg);
    sd.n_ctx = fit;
    r = q4k_session_create(&f.base, model, &sd, &s2, &err);
    T_CHECK(r == Q4K_OK, "the %lld tokens promised: %s", fit, err.msg);
    q4k_session_free(s2);
    s2 = NULL;
    sd.n_ctx = fit + 1;
    T_CHECK(q4k_session_create(&f.base, model, &sd, &s2, &err) == Q4K_ERR_OUT_OF_MEMORY, "%lld + 1 tokens fit", fit);
    /* host memory is not the device's: a tiny host limit does not refuse it */
    setenv("Q4K_HOST_MEM_LIMIT", "1", 1);
    sd.n_ctx = 64;
    r = q4k_session_create(&f.base, model, &sd, &s2, &err);
    T_CHECK(r == Q4K_OK, "a device session checked against the host: %s", err.msg);
    unsetenv("Q4K_HOST_MEM_LIMIT");
    q4k_session_free(s2);
    s2 = NULL;
    q4k_session_free(s1);
    T_CHECK(f.used == 0 && f.sessions == 0 && f.base.n_prepare == 1, "fake bookkeeping: %llu bytes used",
            (unsigned long long)f.used);
    /* mem_info's own error comes through, nothing prepared */
    fake_init(&f, (uint64_t)1 << 40);
    f.fail_info = 1;
    r = q4k_session_create(&f.base, model, &sd, &s1, &err);
    T_CHECK(r == Q4K_ERR_GPU && strstr(err.msg, "driver is gone") && f.base.n_prepare == 0, "mem_info failing: %s",
            err.msg);
    q4k_session_free(s1);
}

/* ---- memory cgroups, on imitated /proc and /sys trees (the real one is
   tests/test_cgroup.sh) */
static char cg_root[256];

static void cg_write(const char *rel, const char *text) {
    char path[512], cmd[600];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", cg_root, rel);
    snprintf(cmd, sizeof cmd, "mkdir -p \"$(dirname '%s')\"", path);
    if (system(cmd) != 0) return;
    if ((f = fopen(path, "w")) != NULL) {
        fputs(text, f);
        fclose(f);
    }
}

static void cg_reset(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", cg_root);
    if (system(cmd) != 0) return;
}

static void test_cgroup_v2(void) {
    const char *src = "x";
    uint64_t v;
    snprintf(cg_root, sizeof cg_root, "%s/q4k_cg_%d", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
    cg_reset();
    cg_write("proc/self/cgroup", "0::/user.slice/app.scope\n");
    cg_write("proc/self/mountinfo",
             "22 1 0:21 / /proc rw,nosuid - proc proc rw\n"
             "31 23 0:27 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate\n");
    /* the process's cgroup: 1000 MB limit, 300 MB used of which 100 MB inactive page cache */
    cg_write("sys/fs/cgroup/user.slice/app.scope/memory.max", "1000000000\n");
    cg_write("sys/fs/cgroup/user.slice/app.scope/memory.current", "300000000\n");
    cg_write("sys/fs/cgroup/user.slice/app.scope/memory.stat",
             "anon 150000000\nfile 150000000\nactive_file 50000000\ninactive_file 100000000\n");
    cg_write("sys/fs/cgroup/user.slice/memory.max", "max\n");
    cg_write("sys/fs/cgroup/user.slice/memory.current", "400000000\n");
    v = q4k__cgroup_memory_available(cg_root, &src);
    T_CHECK(v == 800000000ull, "v2 leaf limit: %llu, want 1000 MB - (300 - 100) MB", (unsigned long long)v);
    T_CHECK(src && !strcmp(src, "memory.max"), "source %s", src ? src : "(null)");
    /* a tighter parent binds: 500 MB limit, 450 MB used, no stat file */
    cg_write("sys/fs/cgroup/user.slice/memory.max", "500000000\n");
    cg_write("sys/fs/cgroup/user.slice/memory.current", "450000000\n");
    v = q4k__cgroup_memory_available(cg_root, &src);
    T_CHECK(v == 50000000ull, "v2 parent limit: %llu, want 50 MB", (unsigned long long)v);
    /* usage past the limit: nothing is left, not a wrapped-around huge number */
    cg_write("sys/fs/cgroup/user.slice/memory.current", "600000000\n");
    v = q4k__cgroup_memory_available(cg_root, &src);
    T_CHECK(v == 0, "usage over the limit: %llu", (unsigned long long)v);
    /* no limit anywhere */
    cg_write("sys/fs/cgroup/user.slice/memory.max", "max\n");
    cg_write("sys/fs/cgroup/user.slice/app.scope/memory.max", "max\n");
    v = q4k__cgroup_memory_available(cg_root, &src);
    T_CHECK(v == UINT64_MAX && src == NULL, "no limit: %llu", (unsigned long long)v);
    /* a cgroup file that is not there: no limit, no crash */
    cg_reset();
    v = q4k__cgroup_memory_available(cg_root, &src);
    T_CHECK(v == UINT64_MAX, "no /proc: %llu", (unsigned long long)v);
    cg_reset();
}

static void test_cgroup_v1(void) {
    const char *src = "x";
    uint64_t v;
    cg_reset();
    /* a container on a v1 host (as Docker mounts it): the memory hierarchy's
       root shown is the container's own cgroup; an empty unified v2 mount beside it */
    cg_write("proc/self/cgroup", "9:name=systemd:/docker/abc\n5:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n0::/\n");
    cg_write("proc/self/mountinfo",
             "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
             "32 31 0:29 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
             "35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
             "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n");
    cg_write("sys/fs/cgroup/memory/memory.limit_in_bytes", "268435456\n");
    cg_write("sys/fs/cgroup/memory/memory.usage_in_bytes", "100000000\n");
    cg_write("sys/fs/cgroup/memory/memory.stat", "cache 30000000\ninactive_file 1\ntotal_inactive_file 20000000\n");
    cg_write("sys/fs/cgroup/cpu,cpuacct/memory.limit_in_bytes", "1000\n"); /* not the memory hierarchy */
    v = q4k__cgroup_memory_available(cg_root, &src);
    T_CHECK(v == 268435456ull - 80000000ull, "v1 container: %llu", (unsigned long long)v);
    T_CHECK(src && !strcmp(src, "memory.limit_in_bytes"), "source %s", src ? src : "(null)");
    /* v1's "no limit" (the largest page-aligned int64) */
    cg_write("sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");
    v = q4k__cgroup_memory_available(cg_root, &src);
    T_CHECK(v == UINT64_MAX, "v1 unlimited: %llu", (unsigned long long)v);
    /* a host process in a nested v1 cgroup: the walk stops at the mount point */
    cg_write("proc/self/cgroup", "4:memory:/a/b\n");
    cg_write("proc/self/mountinfo", "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n");
    cg_write("sys/fs/cgroup/memory/a/b/memory.limit_in_bytes", "9223372036854771712\n");
    cg_write("sys/fs/cgroup/memory/a/memory.limit_in_bytes", "104857600\n");
    cg_write("sys/fs/cgroup/memory/a/memory.usage_in_bytes", "4857600\n");
    v = q4k__cgroup_memory_available(cg_root, &src);
    T_CHECK(v == 100000000ull, "v1 parent: %llu", (unsigned long long)v);
    cg_reset();
}

int main(void) {
    T_RUN(test_cgroup_v2);
    T_RUN(test_cgroup_v1);
    T_RUN(test_host_memory_env);
    T_RUN(test_session_host_limit);
    T_RUN(test_loader_context);
    T_RUN(test_device_memory);
    q4k_model_free(model);
    if (model_path[0]) remove(model_path);
    T_EXIT();
}
