/* libFuzzer target: the model loader and the GGUF tokenizer on top of the
   GGUF reader, as `q4k run` uses them: a model that loads evaluates two
   tokens on the CPU backend (or says why not, in one line), a vocabulary
   that builds tokenizes a fixed text into ids in range, and the file's chat
   template renders or is refused in one line. */
#include "fuzz.h"

#define GM "model"

static void fuzz_model_tokenizer(const q4k_gguf *g) {
    static const char text[] = "Hello, world!  <|im_end|><s> \xC3\xA9\xE6\x97\xA5\xE6\x9C\xAC 123\n\xFF";
    q4k_tokenizer *t = NULL;
    q4k_error err;
    int32_t ids[256];
    int64_t n = 0, i, nv;
    q4k_result r = q4k_tokenizer_from_gguf(g, &t, &err);
    if (r != Q4K_OK) {
        FUZZ_CHECK(GM, t == NULL && err.code == r && FUZZ_ONE_LINE(&err), "tokenizer refused (%s) without a one-line message: '%s'",
                   q4k_result_name(r), err.msg);
        return;
    }
    nv = q4k_tokenizer_n_vocab(t);
    r = q4k_tokenize(t, text, sizeof text - 1, Q4K_TOKENIZE_SPECIAL | Q4K_TOKENIZE_ADD_BOS, ids, 256, &n, &err);
    FUZZ_CHECK(GM, r == Q4K_OK, "a tokenizer that built cannot tokenize: %s", err.msg);
    for (i = 0; i < n; i++) {
        size_t len;
        FUZZ_CHECK(GM, ids[i] >= 0 && ids[i] < nv, "id %d out of range %lld", (int)ids[i], (long long)nv);
        FUZZ_CHECK(GM, q4k_token_text(t, ids[i], &len) != NULL && q4k_token_bytes(t, ids[i], &len) != NULL, "id %d has no text",
                   (int)ids[i]);
    }
    q4k_tokenizer_free(t);
}

/* the file's chat template, as q4k run renders it */
static void fuzz_model_template(const q4k_gguf *g) {
    static const q4k_chat_msg msgs[2] = {{"system", "Be brief."}, {"user", "Hi"}};
    const char *tmpl;
    char *out = NULL;
    q4k_chat_render_desc d;
    q4k_error err;
    q4k_result r;
    if (q4k_gguf_get_str(g, "tokenizer.chat_template", &tmpl) != Q4K_OK) return;
    memset(&d, 0, sizeof d);
    d.add_generation_prompt = 1;
    d.now = 1700000000;
    d.max_output = 1 << 16;
    r = q4k_chat_render(tmpl, msgs, 2, &d, &out, &err);
    FUZZ_CHECK(GM, r == Q4K_OK ? out != NULL : out == NULL && FUZZ_ONE_LINE(&err), "chat template: %s: '%s'", q4k_result_name(r),
               err.msg);
    q4k_free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static q4k_backend *cpu;
    q4k_gguf *g = NULL;
    q4k_model *m = NULL;
    q4k_error err;
    q4k_result r;
    if (!cpu) {
        q4k_cpu_backend_desc bd;
        memset(&bd, 0, sizeof bd);
        bd.n_threads = 1;
        FUZZ_CHECK(GM, q4k_cpu_backend_create(&bd, &cpu, &err) == Q4K_OK, "cpu backend: %s", err.msg);
    }
    if (q4k_gguf_open_memory(data, size, NULL, &g, &err) != Q4K_OK) return 0; /* fuzz_gguf checks the reader */
    fuzz_model_tokenizer(g);
    fuzz_model_template(g);
    r = q4k_model_from_gguf(g, NULL, &m, &err);
    if (r != Q4K_OK) {
        FUZZ_CHECK(GM, m == NULL && err.code == r && FUZZ_ONE_LINE(&err), "model refused (%s) without a one-line message: '%s'",
                   q4k_result_name(r), err.msg);
    } else {
        q4k_session *s = NULL;
        q4k_session_desc sd;
        int64_t nv = m->hp.n_vocab;
        int32_t toks[2];
        FUZZ_CHECK(GM, nv > 0 && m->hp.n_layer > 0 && m->hp.n_embd > 0, "loaded with n_vocab %lld", (long long)nv);
        (void)q4k_model_n_params(m);
        (void)q4k_model_weight_bytes(m);
        memset(&sd, 0, sizeof sd);
        sd.n_ctx = 4;
        toks[0] = (int32_t)(size % (size_t)nv);
        toks[1] = (int32_t)(nv - 1);
        /* the weights lie in the input, so their size is bounded by -max_len;
           the KV cache and scratch are not */
        if (q4k_session_memory_estimate(m, 4, 2) < ((uint64_t)64 << 20)) {
            float *logits = (float *)malloc((size_t)nv * sizeof(float));
            r = q4k_session_create(cpu, m, &sd, &s, &err);
            FUZZ_CHECK(GM, r == Q4K_OK || FUZZ_ONE_LINE(&err), "session refused (%s) without a one-line message", q4k_result_name(r));
            if (r == Q4K_OK) {
                r = q4k_session_eval(s, toks, 2, 0, logits, &err);
                /* a non-finite logit is refused with BAD_MODEL; nothing else may fail */
                FUZZ_CHECK(GM, r == Q4K_OK || (r == Q4K_ERR_BAD_MODEL && FUZZ_ONE_LINE(&err)), "eval: %s: %s",
                           q4k_result_name(r), err.msg);
                q4k_session_free(s);
            }
            free(logits);
        }
        q4k_model_free(m);
    }
    q4k_gguf_close(g);
    return 0;
}
