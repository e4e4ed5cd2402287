/* The parity gate's cost at load: `build/tool_gate_cost MODEL [STEPS] [THREADS]`
   times q4k_gate_run with the reference and the backend under test both on
   the CPU's fast path (what a GPU run pays on the CPU side, plus the GPU's
   own time), next to a plain prompt + greedy steps of one session. */
#include "q4k.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
    q4k_model *m = NULL;
    q4k_backend *ref = NULL, *test = NULL;
    q4k_cpu_backend_desc bd;
    q4k_session_desc sd;
    q4k_session *s = NULL;
    q4k_gate_desc gd;
    q4k_gate_report rep;
    q4k_error err;
    int32_t prompt[16];
    int64_t i, steps = argc > 2 ? atoi(argv[2]) : 3;
    float *lg;
    double t0, t_gate, t_plain;
    if (argc < 2) { fprintf(stderr, "usage: tool_gate_cost MODEL [STEPS] [THREADS]\n"); return 2; }
    if (q4k_model_load(argv[1], NULL, &m, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
    memset(&bd, 0, sizeof bd);
    bd.n_threads = argc > 3 ? atoi(argv[3]) : 0;
    if (q4k_cpu_backend_create(&bd, &ref, &err) || q4k_cpu_backend_create(&bd, &test, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
    for (i = 0; i < 16; i++) prompt[i] = (int32_t)((i * 7919 + 13) % m->hp.n_vocab);
    memset(&sd, 0, sizeof sd);
    memset(&gd, 0, sizeof gd);
    gd.steps = steps;
    t0 = ms();
    if (q4k_gate_run(ref, test, m, &sd, prompt, 16, &gd, &rep, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
    t_gate = ms() - t0;
    lg = (float *)malloc((size_t)m->hp.n_vocab * sizeof(float));
    sd.n_ctx = rep.n_prompt + steps + 1;
    if (q4k_session_create(test, m, &sd, &s, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
    t0 = ms();
    q4k_session_eval(s, prompt, 16, 0, lg, &err);
    for (i = 0; i < steps; i++) {
        int32_t t = (int32_t)q4k_argmax(lg, m->hp.n_vocab);
        q4k_session_eval(s, &t, 1, 0, lg, &err);
    }
    t_plain = ms() - t0;
    printf("%s: %lld layers; gate (%lld prompt tokens, %lld steps): %s in %.0f ms; one session's prompt + steps: %.0f ms\n",
           argv[1], (long long)m->hp.n_layer, (long long)rep.n_prompt, (long long)steps, rep.pass ? "passed" : "failed",
           t_gate, t_plain);
    free(lg);
    q4k_session_free(s);
    q4k_backend_destroy(ref);
    q4k_backend_destroy(test);
    q4k_model_free(m);
    return 0;
}
