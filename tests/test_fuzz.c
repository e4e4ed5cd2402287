/* Replays every file under tests/data/fuzz/<target>/ (inputs that once
   crashed, hung or ran out of memory in a libFuzzer target, minimised) through
   the same entry function, built without libFuzzer: here and under ASan and
   UBSan (build/asan/test_fuzz). Also feeds the published templates to the chat
   target and the Qwen tokenizer test texts to the tokenizer target, so the
   targets' own checks run in every `make test`. A target's check that fails
   prints FAIL and aborts; a sanitizer report ends the program. */
#include <dirent.h>
#include "t.h"

#define LLVMFuzzerTestOneInput fuzz_gguf_one
#include "fuzz/fuzz_gguf.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_model_one
#include "fuzz/fuzz_model.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_tokenizer_one
#include "fuzz/fuzz_tokenizer.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_chat_one
#include "fuzz/fuzz_chat.c"
#undef LLVMFuzzerTestOneInput

typedef int (*fuzz_fn)(const uint8_t *data, size_t size);

static int name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* every regular file in dir, sorted, through fn; returns how many (-1: no dir) */
static int replay_dir(const char *dir, const char *label, fuzz_fn fn, const char *suffix) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char **names = NULL, path[1024];
    int n = 0, cap = 0, i;
    if (!d) return -1;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name), sl = suffix ? strlen(suffix) : 0;
        if (e->d_name[0] == '.' || (suffix && (len < sl || strcmp(e->d_name + len - sl, suffix)))) continue;
        if (n == cap) names = (char **)realloc(names, (size_t)(cap = cap ? 2 * cap : 16) * sizeof *names);
        names[n] = (char *)malloc(len + 1);
        memcpy(names[n++], e->d_name, len + 1);
    }
    closedir(d);
    if (n) qsort(names, (size_t)n, sizeof *names, name_cmp);
    for (i = 0; i < n; i++) {
        size_t size = 0;
        unsigned char *p;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        p = t_read_file(path, &size);
        T_CHECK(p != NULL, "cannot read %s", path);
        if (p) {
            fn(p, size);
            printf("ok %s_%s\n", label, names[i]);
        }
        free(p);
        free(names[i]);
    }
    free(names);
    return n;
}

static const char *const targets[] = {"gguf", "model", "tokenizer", "chat"};
static const fuzz_fn fns[] = {fuzz_gguf_one, fuzz_model_one, fuzz_tokenizer_one, fuzz_chat_one};

static void test_regressions(void) {
    int i, total = 0;
    for (i = 0; i < 4; i++) {
        char dir[256], label[64];
        int n;
        snprintf(dir, sizeof dir, "tests/data/fuzz/%s", targets[i]);
        snprintf(label, sizeof label, "fuzz_regress_%s", targets[i]);
        n = replay_dir(dir, label, fns[i], NULL);
        if (n > 0) total += n;
    }
    printf("  %d regression files replayed\n", total);
}

/* the templates as they are, with the target's default messages */
static void test_chat_templates(void) {
    int n = replay_dir("tests/data/templates", "fuzz_chat_template", fuzz_chat_one, ".jinja");
    T_CHECK(n >= 5, "%d templates in tests/data/templates (run from the repository root)", n);
}

/* each test text with each of the five tokenizers, plain and with
   SPECIAL | ADD_BOS: the byte-level ones must give the text back */
static void test_tokenizer_texts(void) {
    static const char sep[] = "\n__ggml_vocab_test__\n";
    size_t n = 0;
    unsigned char *inp = t_read_file("tests/data/vocab-tests/qwen2.inp", &n), *p, *end, *buf;
    int texts = 0;
    T_CHECK(inp != NULL, "tests/data/vocab-tests/qwen2.inp (run from the repository root)");
    if (!inp) return;
    buf = (unsigned char *)malloc(n + 2);
    for (p = inp, end = inp + n; p < end; texts++) {
        unsigned char *q = (unsigned char *)strstr((char *)p, sep);
        size_t len = (size_t)((q ? q : end) - p);
        int sel;
        memcpy(buf + 1, p, len);
        for (sel = 0; sel < 5; sel++) {
            buf[0] = (unsigned char)sel;
            fuzz_tokenizer_one(buf, len + 1);
            buf[0] = (unsigned char)(sel | 8 | 16);
            fuzz_tokenizer_one(buf, len + 1);
        }
        p = q ? q + strlen(sep) : end;
    }
    T_CHECK(texts > 10, "%d texts", texts);
    free(buf);
    free(inp);
}

int main(void) {
    T_RUN(test_regressions);
    T_RUN(test_chat_templates);
    T_RUN(test_tokenizer_texts);
    T_EXIT();
}
