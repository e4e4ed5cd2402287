/* The parity gate, proven with the CPU alone: the reference is the scalar
   path, the "backend under test" the SIMD path with threads, and a faulted
   test session plays a broken GPU. Every fault must fail the gate and be
   localised to the right layer and op; without a fault the gate passes. */
#define Q4K_IMPLEMENTATION
#define Q4K_FAULTS
#include "q4k.h"
#include "t.h"
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[256];

/* a synthetic model made by the q4k command (cached per name) */
static const char *model(const char *name, const char *synth_args) {
    static char path[16][512];
    static int n;
    char cmd[1024];
    int i = n++ % 16;
    snprintf(path[i], sizeof path[i], "%s/%s.gguf", g_dir, name);
    if (access(path[i], 0) == 0) return path[i];
    snprintf(cmd, sizeof cmd, "./q4k synth %s %s --fast 2>/dev/null", path[i], synth_args);
    if (system(cmd) != 0) {
        printf("  %s failed\n", cmd);
        return NULL;
    }
    return path[i];
}

typedef struct gate_case {
    const char *fault;   /* NULL: none */
    q4k_act_mode act;
    q4k_kv_type kv;
    int64_t steps;
    const int32_t *prompt;
    int64_t n_prompt;
} gate_case;

/* reference: scalar, 1 thread; test: the best SIMD path, 2 threads */
static q4k_result gate_on(const q4k_model *m, const gate_case *c, q4k_gate_report *rep, q4k_error *err) {
    q4k_backend *rb = NULL, *tb = NULL;
    q4k_cpu_backend_desc bd;
    q4k_session_desc sd;
    q4k_gate_desc gd;
    q4k_result r;
    memset(&bd, 0, sizeof bd);
    bd.n_threads = 1;
    bd.path = Q4K_CPU_SCALAR;
    if ((r = q4k_cpu_backend_create(&bd, &rb, err))) return r;
    bd.n_threads = 2;
    bd.path = Q4K_CPU_AUTO;
    if ((r = q4k_cpu_backend_create(&bd, &tb, err))) {
        q4k_backend_destroy(rb);
        return r;
    }
    memset(&sd, 0, sizeof sd);
    sd.act = c->act;
    sd.kv = c->kv;
    if (c->fault && (r = q4k_faults_parse(c->fault, &sd.faults, err))) goto out;
    memset(&gd, 0, sizeof gd);
    gd.steps = c->steps;
    r = q4k_gate_run(rb, tb, m, &sd, c->prompt, c->n_prompt, &gd, rep, err);
out:
    q4k_backend_destroy(rb);
    q4k_backend_destroy(tb);
    return r;
}

static double worst_layer(const q4k_gate_report *rep) {
    double w = 1;
    int64_t i;
    for (i = 0; i < rep->n_steps; i++)
        if (rep->step[i].op_cos < w) w = rep->step[i].op_cos;
    return w;
}
static double worst_logit(const q4k_gate_report *rep) {
    double w = 1;
    int64_t i;
    for (i = 0; i < rep->n_steps; i++)
        if (rep->step[i].logits.cosine < w) w = rep->step[i].logits.cosine;
    return w;
}

static q4k_model *load(const char *path) {
    q4k_model *m = NULL;
    q4k_error err;
    if (!path || q4k_model_load(path, NULL, &m, &err) != Q4K_OK) return NULL;
    return m;
}

/* Without a fault the gate passes, in both modes and both cache types. */
static void test_gate_passes(void) {
    const char *names[2] = {"tiny", "05b2"}, *args[2] = {"--preset tiny --seed 3", "--preset 0.5b --layers 2 --seed 3"};
    int32_t user[5] = {17, 300, 1001, 5, 77};
    int k, mode;
    for (k = 0; k < (t_quick() ? 1 : 2); k++) {
        q4k_model *m = load(model(names[k], args[k]));
        T_CHECK(m != NULL, "model %s", names[k]);
        if (!m) continue;
        for (mode = 0; mode < 3; mode++) {
            gate_case c;
            q4k_gate_report rep;
            q4k_error err;
            memset(&c, 0, sizeof c);
            c.act = mode == 1 ? Q4K_ACT_F32 : Q4K_ACT_Q8;
            c.kv = mode == 2 ? Q4K_KV_F32 : Q4K_KV_F16;
            c.steps = 3;
            c.prompt = user;
            c.n_prompt = 5;
            T_CHECK(gate_on(m, &c, &rep, &err) == Q4K_OK, "gate: %s", err.msg);
            printf("  %s %s/%s: worst layer-update cosine %.7f, worst logit cosine %.7f\n", names[k],
                   c.act == Q4K_ACT_Q8 ? "q8" : "f32", q4k_kv_type_name(c.kv), worst_layer(&rep), worst_logit(&rep));
            T_CHECK(rep.pass, "%s: the gate fails without a fault: step %lld: %s (%s)", names[k],
                    (long long)rep.failed_step, rep.reason, rep.where);
            T_CHECK(rep.n_steps == 4 && rep.n_prompt == 12 + 5, "steps %lld, prompt %lld", (long long)rep.n_steps,
                    (long long)rep.n_prompt);
        }
        q4k_model_free(m);
    }
}

typedef struct fault_case {
    const char *fault;
    const char *model, *synth;
    int64_t step;      /* the step that must fail (-1: any) */
    const char *where; /* the first divergence, exactly */
} fault_case;

static int run_fault(const fault_case *f, q4k_act_mode act, int quiet) {
    q4k_model *m = load(model(f->model, f->synth));
    gate_case c;
    q4k_gate_report rep;
    q4k_error err;
    int ok;
    int32_t user[3] = {40, 41, 42};
    if (!m) { T_CHECK(0, "model %s", f->model); return 0; }
    memset(&c, 0, sizeof c);
    c.fault = f->fault;
    c.act = act;
    c.steps = 3;
    c.prompt = user;
    c.n_prompt = 3;
    T_CHECK(gate_on(m, &c, &rep, &err) == Q4K_OK, "gate: %s", err.msg);
    ok = !rep.pass && (f->step < 0 || rep.failed_step == f->step) && (!f->where || !strcmp(rep.where, f->where));
    if (!quiet || !ok)
        printf("  %-22s %-5s %s: %s at step %lld/3: %s (first divergence: %s)\n", f->fault, f->model,
               act == Q4K_ACT_Q8 ? "q8" : "f32", rep.pass ? "passed" : "rejected", (long long)rep.failed_step, rep.reason,
               rep.where);
    if (!quiet) {
        T_CHECK(!rep.pass, "%s: the gate passes", f->fault);
        T_CHECK(f->step < 0 || rep.failed_step == f->step, "%s: failed at step %lld, expected %lld", f->fault,
                (long long)rep.failed_step, (long long)f->step);
        T_CHECK(!f->where || !strcmp(rep.where, f->where), "%s: first divergence '%s', expected '%s'", f->fault, rep.where,
                f->where);
    }
    q4k_model_free(m);
    return ok;
}

#define TINY "tiny", "--preset tiny --seed 3"
#define TINYO "tinyo", "--preset tiny --outliers --seed 3"
#define B05 "05b2", "--preset 0.5b --layers 2 --seed 3"

/* Each named fault fails the gate at the right step and is localised. */
static void test_gate_faults(void) {
    static const fault_case cases[] = {
        {"gqa", TINY, 0, "layer 0, attn"},
        {"bias", TINY, 0, "layer 0, q"},
        {"kv_step2", TINY, 2, "layer 0, attn"},
        {"q4k_scales", TINY, 0, "layer 0, q"},
        {"split", TINY, 0, "lm_head"},
        {"split", B05, 0, "lm_head"},
        {"gqa", B05, 0, "layer 0, attn"},
        {"kv_step2", B05, 2, "layer 0, attn"},
    };
    size_t i;
    for (i = 0; i < (t_quick() ? 5 : sizeof cases / sizeof cases[0]); i++) {
        run_fault(&cases[i], Q4K_ACT_Q8, 0);
        if (i < 3 && !t_quick()) run_fault(&cases[i], Q4K_ACT_F32, 0);
    }
}

/* f16_acc overflows the fp16 sum of squares of the outlier channels. */
static void test_gate_f16_acc(void) {
    fault_case f = {"f16_acc", TINYO, 0, NULL};
    fault_case plain = {"f16_acc", TINY, -1, NULL};
    q4k_model *m = load(model(f.model, f.synth));
    gate_case c;
    q4k_gate_report rep;
    q4k_error err;
    int32_t user[3] = {40, 41, 42};
    if (!m) { T_CHECK(0, "model"); return; }
    memset(&c, 0, sizeof c);
    c.fault = f.fault;
    c.steps = 3;
    c.prompt = user;
    c.n_prompt = 3;
    T_CHECK(gate_on(m, &c, &rep, &err) == Q4K_OK, "gate: %s", err.msg);
    printf("  f16_acc on --outliers: %s at step %lld: %s (first divergence: %s)\n", rep.pass ? "passed" : "rejected",
           (long long)rep.failed_step, rep.reason, rep.where);
    T_CHECK(!rep.pass, "f16_acc passes on an outlier model");
    T_CHECK(strstr(rep.where, "attn_norm") || strstr(rep.where, "ffn_norm") || strstr(rep.where, "output_norm"),
            "f16_acc localised to '%s', not a norm", rep.where);
    q4k_model_free(m);
    printf("  f16_acc without outliers: %s\n", run_fault(&plain, Q4K_ACT_Q8, 1) ? "rejected" : "passed");
}

/* perturb:L:OP:0.05 fails on every op of a layer, named exactly. */
static void test_gate_perturb_ops(void) {
    int op;
    char spec[64], where[96];
    for (op = 0; op < Q4K_OP_COUNT + Q4K_STAGE_COUNT; op++) {
        fault_case f = {spec, TINY, 0, where};
        int layer = op < Q4K_OP_COUNT ? 2 : 0;
        if (t_quick() && op % 5) continue;
        snprintf(spec, sizeof spec, "perturb:%d:%s:0.05", layer, q4k_gate_op_name(op));
        if (op < Q4K_OP_COUNT) snprintf(where, sizeof where, "layer %d, %s", layer, q4k_gate_op_name(op));
        else snprintf(where, sizeof where, "%s", q4k_gate_op_name(op));
        run_fault(&f, Q4K_ACT_Q8, 0);
        if (op % 4 == 0 && !t_quick()) {
            fault_case g = {spec, B05, 0, where};
            snprintf(spec, sizeof spec, "perturb:%d:%s:0.05", layer > 1 ? 1 : layer, q4k_gate_op_name(op));
            if (op < Q4K_OP_COUNT) snprintf(where, sizeof where, "layer %d, %s", layer > 1 ? 1 : layer, q4k_gate_op_name(op));
            run_fault(&g, Q4K_ACT_Q8, 0);
        }
    }
}

/* The smallest perturbation the gate catches, per op (printed for the
   README); 0.05 must always be caught. */
static void test_gate_smallest_eps(void) {
    static const double eps[] = {0.002, 0.005, 0.01, 0.02, 0.03, 0.05};
    static const char *const ops[] = {"q", "attn", "down", "resid_ffn", "lm_head"};
    q4k_model *m = load(model(TINY));
    size_t o, e;
    int32_t user[3] = {40, 41, 42};
    if (!m) { T_CHECK(0, "model"); return; }
    for (o = 0; o < sizeof ops / sizeof ops[0]; o++) {
        double smallest = 0;
        for (e = 0; e < sizeof eps / sizeof eps[0] && !smallest; e++) {
            char spec[64];
            gate_case c;
            q4k_gate_report rep;
            q4k_error err;
            snprintf(spec, sizeof spec, "perturb:1:%s:%g", ops[o], eps[e]);
            memset(&c, 0, sizeof c);
            c.fault = spec;
            c.steps = 3;
            c.prompt = user;
            c.n_prompt = 3;
            if (gate_on(m, &c, &rep, &err) == Q4K_OK && !rep.pass) smallest = eps[e];
        }
        printf("  perturb on layer 1 (tiny), op %-10s: smallest EPS caught %g\n", ops[o], smallest);
        T_CHECK(smallest > 0 && smallest <= 0.05, "op %s: 0.05 not caught", ops[o]);
    }
    q4k_model_free(m);
}

int main(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/q4k_test_gate_%d", tmp ? tmp : "/tmp", (int)getpid());
    mkdir(g_dir, 0755);
    T_RUN(test_gate_passes);
    T_RUN(test_gate_faults);
    T_RUN(test_gate_f16_acc);
    T_RUN(test_gate_perturb_ops);
    if (!t_quick()) T_RUN(test_gate_smallest_eps);
    {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
        if (system(cmd)) {}
    }
    T_EXIT();
}
