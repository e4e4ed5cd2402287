/* The thread rules of q4k.h ("Threads") under ThreadSanitizer: `make tsan`,
   and tests/test_tsan.sh in `make test`, which fails on any report.

   What the rules allow: a model is shared by every thread; a backend too
   (each call holds its lock); a session belongs to one thread at a time.
   Each case runs two threads with two sessions each, a prompt and greedy
   steps at the same time (tests/t_share.h), and requires the tokens and
   logits of the same work done one thread after the other:
   - CPU: a backend per thread (a pool of 2 threads, so the pool's hand-offs
     are checked too), then one backend (a pool of 2) shared by both.
   - Vulkan (lavapipe in CI): a backend per thread on the same device, matrix
     products of one shared Q4_K weight checked against the CPU's; then one
     backend shared by both threads, whole-model sessions.
   The model is the tiny synthetic one (./q4k synth). */
#if !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include "q4k.h"
#include "q4k_vulkan.h"
#include "t.h"
#include <pthread.h>
#include <unistd.h>
#include "t_share.h"
#include "t_vk.h"

static q4k_model *model;

/* one model, two threads, each with its own CPU backend (a pool of 2
   threads, so the pool's hand-offs are checked too) */
static void test_cpu_two_threads(void) {
    q4k_session_desc sd;
    memset(&sd, 0, sizeof sd);
    sd.n_ctx = 64;
    t_share_check(NULL, model, &sd, 0, "cpu, a backend per thread");
}

/* one model, one CPU backend (a pool of 2) shared by two threads */
static void test_cpu_shared_backend(void) {
    q4k_cpu_backend_desc bd;
    q4k_session_desc sd;
    q4k_backend *b = NULL;
    q4k_error err;
    memset(&bd, 0, sizeof bd);
    bd.n_threads = 2;
    memset(&sd, 0, sizeof sd);
    sd.n_ctx = 64;
    T_CHECK(q4k_cpu_backend_create(&bd, &b, &err) == Q4K_OK, "cpu: %s", err.msg);
    if (!b) return;
    t_share_check(b, model, &sd, 0, "cpu, one backend");
    /* once per job alone, and once or twice for the two at once (as the
       threads overlap): sessions of one backend share its preparation */
    T_CHECK(b->n_prepare >= 3 && b->n_prepare <= 4, "the model was prepared %lld times for 8 sessions",
            (long long)b->n_prepare);
    q4k_backend_destroy(b);
}

#define VK_ROWS 96
#define VK_COLS 512

typedef struct vk_job {
    const void *w; /* shared, read-only */
    const float *x;
    float y[VK_ROWS];
    q4k_result r;
    char why[512];
} vk_job;

static void *vk_run(void *p) {
    vk_job *j = (vk_job *)p;
    q4k_vk_backend_desc d;
    q4k_backend *b = NULL;
    q4k_error err;
    int k;
    memset(&d, 0, sizeof d);
    d.allow_cpu = 1;
    err.msg[0] = 0;
    j->r = q4k_vk_backend_create(&d, &b, &err);
    for (k = 0; k < 3 && j->r == Q4K_OK; k++)
        j->r = b->matmul(b, Q4K_ACT_Q8, Q4K_TYPE_Q4_K, j->w, VK_ROWS, VK_COLS, j->x, 1, j->y, &err);
    if (j->r != Q4K_OK) snprintf(j->why, sizeof j->why, "%s", err.msg);
    q4k_backend_destroy(b);
    return NULL;
}

static void test_vulkan_two_threads(void) {
    q4k_backend *cpu = NULL, *probe = NULL;
    q4k_vk_backend_desc d;
    q4k_error err;
    vk_job job[2];
    pthread_t t[2];
    float *wf = (float *)malloc(VK_ROWS * VK_COLS * sizeof(float)), x[VK_COLS], ref[VK_ROWS];
    size_t row_bytes = q4k_row_size(Q4K_TYPE_Q4_K, VK_COLS);
    unsigned char *w;
    t_rng rng = {77};
    int64_t i, k;
    memset(&d, 0, sizeof d);
    d.allow_cpu = 1;
    if (q4k_vk_backend_create(&d, &probe, &err) != Q4K_OK) {
        char why[200];
        snprintf(why, sizeof why, "no Vulkan device: %.150s", err.msg);
        free(wf);
        T_SKIP(why);
    }
    q4k_backend_destroy(probe);
    w = (unsigned char *)malloc(row_bytes * VK_ROWS);
    for (i = 0; i < VK_ROWS * VK_COLS; i++) wf[i] = (float)t_rng_gauss(&rng);
    for (i = 0; i < VK_COLS; i++) x[i] = (float)t_rng_gauss(&rng);
    for (i = 0; i < VK_ROWS; i++) q4k_quantize_row(Q4K_TYPE_Q4_K, wf + i * VK_COLS, w + (size_t)i * row_bytes, VK_COLS);
    q4k_cpu_backend_create(NULL, &cpu, &err);
    T_CHECK(cpu && cpu->matmul(cpu, Q4K_ACT_Q8, Q4K_TYPE_Q4_K, w, VK_ROWS, VK_COLS, x, 1, ref, &err) == Q4K_OK,
            "cpu: %s", err.msg);
    for (k = 0; k < 2; k++) {
        memset(&job[k], 0, sizeof job[k]);
        job[k].w = w;
        job[k].x = x;
    }
    for (k = 0; k < 2; k++) pthread_create(&t[k], NULL, vk_run, &job[k]);
    for (k = 0; k < 2; k++) pthread_join(t[k], NULL);
    for (k = 0; k < 2; k++) {
        double worst = 0;
        T_CHECK(job[k].r == Q4K_OK, "thread %d: %s", (int)k, job[k].why);
        for (i = 0; i < VK_ROWS; i++) {
            double e = fabs((double)job[k].y[i] - (double)ref[i]) / (1e-3 + fabs((double)ref[i]));
            if (e > worst) worst = e;
        }
        T_CHECK(job[k].r != Q4K_OK || worst < 1e-4, "thread %d: relative error %g against the CPU", (int)k, worst);
    }
    q4k_backend_destroy(cpu);
    free(w);
    free(wf);
}

/* one model, one Vulkan backend shared by two threads: whole-model
   sessions (each its own command buffers and descriptor pools) submitting
   to the backend's one queue; both threads start on a fresh backend, whose
   pipelines are made on first use */
static void test_vulkan_shared_backend(void) {
    q4k_session_desc sd;
    char why[600];
    q4k_backend *b = t_vk_backend(0, 0, 0, why, sizeof why);
    if (!b) {
        char msg[200];
        snprintf(msg, sizeof msg, "no Vulkan device: %.150s", why);
        T_SKIP(msg);
    }
    memset(&sd, 0, sizeof sd);
    sd.n_ctx = 64;
    t_share_check(b, model, &sd, 1, "vulkan, one backend");
    T_CHECK(b->n_prepare >= 3 && b->n_prepare <= 4, "the model was prepared %lld times for 8 sessions",
            (long long)b->n_prepare);
    q4k_backend_destroy(b);
}

/* `tsan_threads --share-backend` shares one CPU backend (no pool: two
   callers of an unguarded pool would deadlock before a report) between two
   threads and nothing else. Built as tsan_threads_nolock (the lock compiled
   out, -DQ4K_TEST_NO_BACKEND_LOCK), ThreadSanitizer must report it, so that
   the clean run of the same sharing with the lock means something. */
int main(int argc, char **argv) {
    char path[256], cmd[512];
    q4k_error err;
    int share = argc > 1 && !strcmp(argv[1], "--share-backend");
    snprintf(path, sizeof path, "%s/q4k_tsan_%d.gguf", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
    snprintf(cmd, sizeof cmd, "./q4k synth %s --preset tiny --layers 2 --seed 6 2>/dev/null", path);
    if (system(cmd) != 0 || q4k_model_load(path, NULL, &model, &err) != Q4K_OK) {
        printf("FAIL tsan_model: ./q4k synth %s\n", path);
        return 1;
    }
    if (share) {
        q4k_cpu_backend_desc bd;
        q4k_backend *b = NULL;
        t_share_job par[2];
        pthread_t t[2];
        int k;
        memset(&bd, 0, sizeof bd);
        bd.n_threads = 1;
        q4k_cpu_backend_create(&bd, &b, &err);
        memset(par, 0, sizeof par);
        for (k = 0; k < 2; k++) {
            par[k].b = b;
            par[k].m = model;
            par[k].sd.n_ctx = 64;
            par[k].first = k ? 500 : 11;
        }
        for (k = 0; k < 2; k++) pthread_create(&t[k], NULL, t_share_run, &par[k]);
        for (k = 0; k < 2; k++) pthread_join(t[k], NULL);
        q4k_backend_destroy(b);
    } else {
        T_RUN(test_cpu_two_threads);
        T_RUN(test_cpu_shared_backend);
        T_RUN(test_vulkan_two_threads);
        T_RUN(test_vulkan_shared_backend);
    }
    q4k_model_free(model);
    remove(path);
    T_EXIT();
}
