/* One backend shared by two threads (q4k.h "Threads"), for the tests of
   every backend: each thread runs two sessions of one model in turn, a
   prompt of 8 tokens and then T_SHARE_STEPS greedy one-token steps, and
   keeps the tokens it chose and a hash of every logit it received.
   t_share_check runs the two threads' work one after the other on the
   backend and both at once, and requires the same tokens and the same
   logits, bit for bit. Include after q4k.h, t.h and <pthread.h>. */
#ifndef Q4K_T_SHARE_H
#define Q4K_T_SHARE_H

#define T_SHARE_STEPS 8

typedef struct t_share_job {
    q4k_backend *b;        /* shared; NULL: the job makes a CPU backend of its own (a pool of 2) */
    const q4k_model *m;
    q4k_session_desc sd;
    int32_t first;         /* seeds the prompts */
    int32_t tokens[2][T_SHARE_STEPS];
    uint64_t hash[2];      /* FNV-1a over the bytes of every logit vector, per session */
    q4k_result r;
    char why[400];
} t_share_job;

static uint64_t t_share_fnv(uint64_t h, const float *x, int64_t n) {
    const unsigned char *p = (const unsigned char *)x;
    size_t i;
    for (i = 0; i < (size_t)n * sizeof(float); i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static T__UNUSED void *t_share_run(void *p) {
    t_share_job *j = (t_share_job *)p;
    q4k_backend *b = j->b;
    q4k_session *s[2] = {NULL, NULL};
    q4k_error err;
    int64_t nv = j->m->hp.n_vocab, k, i;
    float *lg = (float *)malloc((size_t)nv * sizeof(float));
    int32_t prompt[8], tok[2] = {0, 0};
    err.msg[0] = 0;
    j->r = lg ? Q4K_OK : Q4K_ERR_OUT_OF_MEMORY;
    if (!b && j->r == Q4K_OK) {
        q4k_cpu_backend_desc bd;
        memset(&bd, 0, sizeof bd);
        bd.n_threads = 2;
        j->r = q4k_cpu_backend_create(&bd, &b, &err);
    }
    for (k = 0; k < 2 && j->r == Q4K_OK; k++) {
        j->hash[k] = 14695981039346656037ull;
        j->r = q4k_session_create(b, j->m, &j->sd, &s[k], &err);
    }
    for (i = 0; i < 8; i++) prompt[i] = (int32_t)((j->first + 37 * i) % nv);
    for (k = 0; k < 2 && j->r == Q4K_OK; k++) {
        prompt[0] = (int32_t)((j->first + k) % nv);
        if ((j->r = q4k_session_eval(s[k], prompt, 8, 0, lg, &err)) == Q4K_OK) {
            j->hash[k] = t_share_fnv(j->hash[k], lg, nv);
            tok[k] = (int32_t)q4k_argmax(lg, nv);
        }
    }
    for (i = 0; i < T_SHARE_STEPS && j->r == Q4K_OK; i++)
        for (k = 0; k < 2 && j->r == Q4K_OK; k++) {
            j->tokens[k][i] = tok[k];
            if ((j->r = q4k_session_eval(s[k], &tok[k], 1, 0, lg, &err)) == Q4K_OK) {
                j->hash[k] = t_share_fnv(j->hash[k], lg, nv);
                tok[k] = (int32_t)q4k_argmax(lg, nv);
            }
        }
    if (j->r != Q4K_OK) snprintf(j->why, sizeof j->why, "%.300s (%s)", err.msg, q4k_result_string(j->r));
    q4k_session_free(s[0]);
    q4k_session_free(s[1]);
    if (b != j->b) q4k_backend_destroy(b);
    free(lg);
    return NULL;
}

static void t_share_together(t_share_job *jobs) {
    pthread_t t[2];
    int k;
    for (k = 0; k < 2; k++) pthread_create(&t[k], NULL, t_share_run, &jobs[k]);
    for (k = 0; k < 2; k++) pthread_join(t[k], NULL);
}

/* b NULL: each thread its own CPU backend (the sequential runs too).
   together_first: the threads first, on a backend that has run nothing yet
   (a GPU backend's kernels are then loaded while both threads want them) */
static T__UNUSED void t_share_check(q4k_backend *b, const q4k_model *m, const q4k_session_desc *sd, int together_first,
                                    const char *what) {
    t_share_job seq[2], par[2];
    int k;
    memset(seq, 0, sizeof seq);
    for (k = 0; k < 2; k++) {
        seq[k].b = b;
        seq[k].m = m;
        seq[k].sd = *sd;
        seq[k].first = k ? 500 : 11;
    }
    memcpy(par, seq, sizeof par);
    if (together_first) t_share_together(par);
    t_share_run(&seq[0]);
    t_share_run(&seq[1]);
    if (!together_first) t_share_together(par);
    T_CHECK(seq[0].r == Q4K_OK && seq[1].r == Q4K_OK, "%s: one after the other: %s %s", what, seq[0].why, seq[1].why);
    T_CHECK(seq[0].r != Q4K_OK || memcmp(seq[0].tokens, seq[1].tokens, sizeof seq[0].tokens) != 0,
            "%s: both prompts give the same tokens: a weak test", what);
    for (k = 0; k < 2; k++) {
        T_CHECK(par[k].r == Q4K_OK, "%s: thread %d: %s", what, k, par[k].why);
        if (par[k].r != Q4K_OK || seq[k].r != Q4K_OK) continue;
        T_CHECK(!memcmp(par[k].tokens, seq[k].tokens, sizeof seq[k].tokens), "%s: thread %d: other tokens than alone", what, k);
        T_CHECK(par[k].hash[0] == seq[k].hash[0] && par[k].hash[1] == seq[k].hash[1],
                "%s: thread %d: other logits than alone (hashes %016llx %016llx, alone %016llx %016llx)", what, k,
                (unsigned long long)par[k].hash[0], (unsigned long long)par[k].hash[1],
                (unsigned long long)seq[k].hash[0], (unsigned long long)seq[k].hash[1]);
    }
}

#endif
