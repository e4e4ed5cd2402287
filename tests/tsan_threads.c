/* The thread rules of q4k.h ("Threads") under ThreadSanitizer: `make tsan`,
   and tests/test_tsan.sh in `make test`, which fails on any report.

   What the rules allow, and nothing more: a model is shared by every thread;
   a backend, with its sessions, belongs to one thread at a time (so each
   thread here has its own); a session to one thread.
   - CPU: one model, two threads, each with its own CPU backend (a pool of 2
     threads, so the pool's hand-offs are checked too) and two sessions on
     it, evaluating a prompt and greedy steps at the same time; the tokens
     must be those of the same runs one after the other.
   - Vulkan (lavapipe in CI): each thread its own backend on the same device,
     matrix products of one shared Q4_K weight at the same time, checked
     against the CPU's. The forward pass is not on Vulkan yet; its sessions
     come under the same rule (one backend per thread).
   The model is the tiny synthetic one (./q4k synth). */
#if !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include "q4k.h"
#include "q4k_vulkan.h"
#include "t.h"
#include <pthread.h>
#include <unistd.h>

#define N_STEPS 6

static q4k_model *model;
static q4k_backend *shared_backend; /* --share-backend: the rule broken on purpose */

typedef struct cpu_job {
    int32_t first;
    int32_t out[2][N_STEPS];
    q4k_result r;
    char why[512];
} cpu_job;

/* a prompt from `first`, then greedy steps, on two sessions of one backend
   in turn (they share its preparation of the model) */
static void *cpu_run(void *p) {
    cpu_job *j = (cpu_job *)p;
    q4k_backend *b = NULL;
    q4k_session *s[2] = {NULL, NULL};
    q4k_cpu_backend_desc bd;
    q4k_session_desc sd;
    q4k_error err;
    int64_t nv = model->hp.n_vocab, k, i;
    float *lg = (float *)malloc((size_t)nv * sizeof(float));
    int32_t prompt[8], tok[2];
    memset(&bd, 0, sizeof bd);
    bd.n_threads = 2;
    memset(&sd, 0, sizeof sd);
    sd.n_ctx = 64;
    err.msg[0] = 0;
    j->r = shared_backend ? (b = shared_backend, Q4K_OK) : q4k_cpu_backend_create(&bd, &b, &err);
    for (k = 0; k < 2 && j->r == Q4K_OK; k++) j->r = q4k_session_create(b, model, &sd, &s[k], &err);
    for (i = 0; i < 8; i++) prompt[i] = (int32_t)((j->first + 37 * i) % nv);
    for (k = 0; k < 2 && j->r == Q4K_OK; k++) {
        prompt[0] = (int32_t)((j->first + k) % nv);
        if ((j->r = q4k_session_eval(s[k], prompt, 8, 0, lg, &err)) == Q4K_OK) tok[k] = (int32_t)q4k_argmax(lg, nv);
    }
    for (i = 0; i < N_STEPS && j->r == Q4K_OK; i++)
        for (k = 0; k < 2 && j->r == Q4K_OK; k++) {
            j->out[k][i] = tok[k];
            if ((j->r = q4k_session_eval(s[k], &tok[k], 1, 0, lg, &err)) == Q4K_OK) tok[k] = (int32_t)q4k_argmax(lg, nv);
        }
    if (j->r != Q4K_OK) snprintf(j->why, sizeof j->why, "%s", err.msg);
    q4k_session_free(s[0]);
    q4k_session_free(s[1]);
    if (b != shared_backend) q4k_backend_destroy(b);
    free(lg);
    return NULL;
}

static void test_cpu_two_threads(void) {
    cpu_job seq[2], par[2];
    pthread_t t[2];
    int k;
    memset(seq, 0, sizeof seq);
    seq[0].first = 11;
    seq[1].first = 500;
    cpu_run(&seq[0]);
    cpu_run(&seq[1]);
    T_CHECK(seq[0].r == Q4K_OK && seq[1].r == Q4K_OK, "sequential: %s %s", seq[0].why, seq[1].why);
    T_CHECK(memcmp(seq[0].out, seq[1].out, sizeof seq[0].out) != 0, "both prompts give the same tokens: a weak test");
    memcpy(par, seq, sizeof par);
    for (k = 0; k < 2; k++) memset(par[k].out, 0, sizeof par[k].out);
    for (k = 0; k < 2; k++) pthread_create(&t[k], NULL, cpu_run, &par[k]);
    for (k = 0; k < 2; k++) pthread_join(t[k], NULL);
    for (k = 0; k < 2; k++) {
        T_CHECK(par[k].r == Q4K_OK, "thread %d: %s", k, par[k].why);
        T_CHECK(!memcmp(par[k].out, seq[k].out, sizeof seq[k].out), "thread %d: other tokens than alone", k);
    }
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

/* `tsan_threads --share-backend` breaks the rule (one CPU backend, its
   sessions in two threads at once), so that tests/test_tsan.sh can see that
   ThreadSanitizer reports it: the clean run means something. */
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
        cpu_job par[2];
        pthread_t t[2];
        int k;
        memset(&bd, 0, sizeof bd);
        bd.n_threads = 1; /* two callers of one pool would deadlock before a report */
        q4k_cpu_backend_create(&bd, &shared_backend, &err);
        memset(par, 0, sizeof par);
        par[1].first = 500;
        for (k = 0; k < 2; k++) pthread_create(&t[k], NULL, cpu_run, &par[k]);
        for (k = 0; k < 2; k++) pthread_join(t[k], NULL);
        q4k_backend_destroy(shared_backend);
    } else {
        T_RUN(test_cpu_two_threads);
        T_RUN(test_vulkan_two_threads);
    }
    q4k_model_free(model);
    remove(path);
    T_EXIT();
}
