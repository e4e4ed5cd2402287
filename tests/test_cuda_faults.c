/* The gate's faults on CUDA, and the backend's failure paths. Built with
   -DQ4K_FAULTS and -DQ4K_CUDA_TEST_FAULT; without a CUDA GPU every test
   skips as [hardware].

   Faults: the CPU is the reference and a faulted CUDA session the test;
   q4k_gate_run must reject each fault of Q4K_FAULT_LIST (and perturb) at
   the step the CPU's own fault test expects and name the layer and op
   (tests/test_gate.c does the same with the CPU as the broken backend), on
   the tiny model and on Qwen2.5-7B's shapes with one layer.

   Failure paths: Q4K_DEVICE_MEM_LIMIT makes a context that cannot fit be
   refused before any weight is uploaded (bytes needed and free named);
   and, last because it loses the context, a kernel that writes to an
   unmapped address ($Q4K_CUDA_TEST_FAULT_EVAL) fails its eval as a lost
   context, after which every call says the backend is dead. */
#define Q4K_IMPLEMENTATION
#define Q4K_FAULTS
#define Q4K_CUDA_TEST_FAULT
#include "q4k.h"
#include "q4k_cuda.h"
#include "t.h"
#include "t_cuda.h"
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[256];

/* a synthetic model made by the q4k command, once per name */
static q4k_model *model(const char *name, const char *args) {
    char path[512], cmd[1024];
    q4k_model *m = NULL;
    q4k_error err;
    snprintf(path, sizeof path, "%s/%s.gguf", g_dir, name);
    snprintf(cmd, sizeof cmd, "./q4k synth %s %s --fast 2>/dev/null", path, args);
    if ((access(path, 0) != 0 && system(cmd) != 0) || q4k_model_load(path, NULL, &m, &err) != Q4K_OK) {
        T_CHECK(0, "cannot make the model %s (%s)", name, cmd);
        return NULL;
    }
    return m;
}

typedef struct fault_case {
    const char *fault;
    int64_t step;      /* the step that must fail (-1: any) */
    const char *where; /* the first divergence, exactly (NULL: a norm) */
} fault_case;

/* each case: CPU reference, faulted CUDA session under test, prompt then 3 steps */
static void fault_cases(const char *name, const char *args, const fault_case *cases, size_t n) {
    q4k_model *m = model(name, args);
    int32_t user[3] = {40, 41, 42};
    size_t i;
    if (!m) return;
    for (i = 0; i < n; i++) {
        const fault_case *f = &cases[i];
        q4k_session_desc sd;
        q4k_gate_desc gd;
        q4k_gate_report rep;
        q4k_error err;
        int named;
        memset(&sd, 0, sizeof sd);
        memset(&gd, 0, sizeof gd);
        gd.steps = 3;
        if (q4k_faults_parse(f->fault, &sd.faults, &err) != Q4K_OK) {
            T_CHECK(0, "%s: %s", f->fault, err.msg);
            continue;
        }
        if (q4k_gate_run(cpu, gpu, m, &sd, user, 3, &gd, &rep, &err) != Q4K_OK) {
            T_CHECK(0, "%s %s: gate: %s", name, f->fault, err.msg);
            continue;
        }
        named = f->where ? !strcmp(rep.where, f->where)
                         : (strstr(rep.where, "attn_norm") || strstr(rep.where, "ffn_norm") || strstr(rep.where, "output_norm"));
        printf("  %-8s %-22s %s at step %lld/3: %s (first divergence: %s)\n", name, f->fault, rep.pass ? "passed" : "rejected",
               (long long)rep.failed_step, rep.reason, rep.where);
        T_CHECK(!rep.pass, "%s %s: the gate passes a faulted CUDA session", name, f->fault);
        T_CHECK(f->step < 0 || rep.failed_step == f->step, "%s %s: failed at step %lld, expected %lld", name, f->fault,
                (long long)rep.failed_step, (long long)f->step);
        T_CHECK(named, "%s %s: first divergence '%s', expected '%s'", name, f->fault, rep.where, f->where ? f->where : "a norm");
    }
    q4k_model_free(m);
}

static const fault_case tiny_cases[] = {
    {"gqa", 0, "layer 0, attn"},
    {"bias", 0, "layer 0, q"},
    {"kv_step2", 2, "layer 0, attn"},
    {"q4k_scales", 0, "layer 0, q"},
    {"split", 0, "lm_head"},
    {"perturb:1:down:0.05", 0, "layer 1, down"},
    {"perturb:3:q_rope:0.05", 0, "layer 3, q_rope"},
    {"perturb:2:k_rope:0.05", 0, "layer 2, k_rope"},
    {"perturb:2:attn_norm:0.05", 0, "layer 2, attn_norm"},
    {"perturb:0:embedding:0.05", 0, "embedding"},
    {"perturb:0:output_norm:0.05", 0, "output_norm"},
    {"perturb:0:lm_head:0.05", 0, "lm_head"},
};

static void test_faults_tiny(void) {
    NEED_GPU();
    fault_cases("tiny", "--preset tiny --seed 3", tiny_cases, sizeof tiny_cases / sizeof tiny_cases[0]);
}

/* f16_acc overflows the fp16 sum of squares of the outlier channels */
static void test_fault_f16_acc(void) {
    static const fault_case c = {"f16_acc", 0, NULL};
    NEED_GPU();
    fault_cases("tinyo", "--preset tiny --outliers --seed 3", &c, 1);
}

static const fault_case big_cases[] = {
    {"gqa", 0, "layer 0, attn"},
    {"bias", 0, "layer 0, q"},
    {"kv_step2", 2, "layer 0, attn"},
    {"q4k_scales", 0, "layer 0, q"},
    {"split", 0, "lm_head"},
    {"perturb:0:down:0.05", 0, "layer 0, down"},
    {"perturb:0:v:0.05", 0, "layer 0, v"},
    {"perturb:0:embedding:0.05", 0, "embedding"},
};

static void test_faults_7b_layer(void) {
    const char *big = getenv("Q4K_TEST_BIG");
    NEED_GPU();
    if (big && !strcmp(big, "0")) T_SKIP("Q4K_TEST_BIG=0");
    fault_cases("7b1", "--preset 7b --layers 1 --seed 3", big_cases, sizeof big_cases / sizeof big_cases[0]);
}

/* a context that cannot fit under Q4K_DEVICE_MEM_LIMIT is refused before
   the weights go up (nothing allocated), naming bytes needed and free; one
   that fits under the same limit runs, and an allocation beyond it fails
   as out of memory */
static void test_mem_limit(void) {
    q4k_model *m;
    q4k_backend *lb = NULL;
    q4k_session *s = NULL;
    q4k_session_desc sd;
    q4k_error err;
    q4k__cuda_buf big = {0, 0};
    int32_t tok = 5;
    float *logits;
    NEED_GPU();
    if (!(m = model("tiny", "--preset tiny --seed 3"))) return;
    logits = (float *)malloc(sizeof(float) * (size_t)m->hp.n_vocab);
    setenv("Q4K_DEVICE_MEM_LIMIT", "67108864", 1); /* 64 MiB */
    T_CHECK(q4k_cuda_backend_create(NULL, &lb, &err) == Q4K_OK, "%s", err.msg);
    unsetenv("Q4K_DEVICE_MEM_LIMIT");
    if (lb) {
        q4k__cuda_backend *cb = (q4k__cuda_backend *)lb;
        memset(&sd, 0, sizeof sd);
        sd.n_ctx = 1 << 20; /* a KV cache far beyond 64 MiB */
        T_CHECK(q4k_session_create(lb, m, &sd, &s, &err) == Q4K_ERR_OUT_OF_MEMORY, "a session of 1M positions was created");
        printf("  %s\n", err.msg);
        /* the session check (mem_info) refuses it before any upload, with the limit as the device's memory */
        T_CHECK(strstr(err.msg, "needs") && strstr(err.msg, "on the cuda device") && strstr(err.msg, "67108864 bytes") &&
                    strstr(err.msg, "free") && strstr(err.msg, "at most"),
                "message: %s", err.msg);
        T_CHECK(cb->allocated == 0, "%llu bytes were allocated before the refusal", (unsigned long long)cb->allocated);
        sd.n_ctx = 64;
        T_CHECK(q4k_session_create(lb, m, &sd, &s, &err) == Q4K_OK, "64 positions under 64 MiB: %s", err.msg);
        if (s) T_CHECK(q4k_session_eval(s, &tok, 1, 0, logits, &err) == Q4K_OK, "%s", err.msg);
        T_CHECK(q4k__cuda_reserve(cb, &big, (size_t)64 << 20, "a test buffer", &err) == Q4K_ERR_OUT_OF_MEMORY,
                "64 MiB more were allocated under a 64 MiB limit");
        printf("  %s\n", err.msg);
        T_CHECK(strstr(err.msg, "67108864 bytes needed") != NULL, "message: %s", err.msg);
        q4k_session_free(s);
        q4k_backend_destroy(lb);
    }
    free(logits);
    q4k_model_free(m);
}

/* a launch the driver refuses (more threads than a block may have) names
   the kernel and leaves the backend alive */
static void test_launch_error(void) {
    q4k__cuda_backend *cb;
    q4k__cuda_buf x = {0, 0};
    q4k_error err;
    long long n = 1;
    void *p[3];
    q4k_result r;
    NEED_GPU();
    cb = (q4k__cuda_backend *)gpu;
    T_CHECK(q4k__cuda_alloc(cb, &x, 4096, &err) == Q4K_OK, "%s", err.msg);
    p[0] = &x.p;
    p[1] = &x.p;
    p[2] = &n;
    r = q4k__cuda_launch(cb, cb->op[Q4K__CUDA_OP_add], "q4k_add", 1, 1, 4096, p, &err);
    printf("  %s\n", err.msg);
    T_CHECK(r == Q4K_ERR_GPU && strstr(err.msg, "kernel q4k_add"), "%d %s", (int)r, err.msg);
    T_CHECK(!cb->dead, "a refused launch marked the backend dead");
    q4k__cuda_free(cb, &x);
}

/* the last test: an asynchronous fault loses the context */
static void test_async_fault(void) {
    q4k_model *m;
    q4k_session *s = NULL, *s2 = NULL;
    q4k_session_desc sd;
    q4k_error err;
    int32_t toks[3] = {5, 6, 7};
    float *logits;
    q4k_result r;
    NEED_GPU();
    if (!(m = model("tiny", "--preset tiny --seed 3"))) return;
    logits = (float *)malloc(sizeof(float) * (size_t)m->hp.n_vocab);
    memset(&sd, 0, sizeof sd);
    sd.n_ctx = 64;
    setenv("Q4K_CUDA_TEST_FAULT_EVAL", "2", 1);
    T_CHECK(q4k_session_create(gpu, m, &sd, &s, &err) == Q4K_OK, "%s", err.msg);
    if (s) {
        T_CHECK(q4k_session_eval(s, toks, 3, 0, logits, &err) == Q4K_OK, "eval 1: %s", err.msg);
        r = q4k_session_eval(s, toks, 1, 0, logits, &err);
        printf("  eval 2: %s\n", err.msg);
        T_CHECK(r == Q4K_ERR_GPU && strstr(err.msg, "context is lost"), "eval 2 (faulted): %d %s", (int)r, err.msg);
        r = q4k_session_eval(s, toks, 1, 0, logits, &err);
        printf("  eval 3: %s\n", err.msg);
        T_CHECK(r == Q4K_ERR_GPU && strstr(err.msg, "dead after an earlier fault"), "eval 3: %d %s", (int)r, err.msg);
        T_CHECK(q4k_session_pos(s) == 3, "the position moved to %lld", (long long)q4k_session_pos(s));
        q4k_session_free(s);
    }
    r = q4k_session_create(gpu, m, &sd, &s2, &err);
    T_CHECK(r != Q4K_OK && strstr(err.msg, "dead"), "a session on a dead backend: %d %s", (int)r, err.msg);
    q4k_session_free(s2);
    unsetenv("Q4K_CUDA_TEST_FAULT_EVAL");
    free(logits);
    q4k_model_free(m);
}

int main(void) {
    q4k_cpu_backend_desc cd;
    q4k_error err;
    const char *tmp = getenv("TMPDIR");
    char cmd[400];
    memset(&cd, 0, sizeof cd);
    if (q4k_cpu_backend_create(&cd, &cpu, &err) != Q4K_OK) {
        printf("FAIL cpu_backend %s\n", err.msg);
        return 1;
    }
    snprintf(g_dir, sizeof g_dir, "%s/q4k_test_cuda_faults_%d", tmp ? tmp : "/tmp", (int)getpid());
    mkdir(g_dir, 0755);
    T_RUN(test_faults_tiny);
    T_RUN(test_fault_f16_acc);
    T_RUN(test_faults_7b_layer);
    T_RUN(test_mem_limit);
    T_RUN(test_launch_error);
    T_RUN(test_async_fault);
    if (gpu) q4k_backend_destroy(gpu);
    q4k_backend_destroy(cpu);
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd)) {}
    T_EXIT();
}
