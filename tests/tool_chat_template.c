/* Renders a chat template through q4k's Jinja subset, for
   tests/test_chat_template_py.py (which renders the same conversation with
   jinja2 and compares the bytes).

   usage: build/tool_chat_template TEMPLATE_FILE BOS EOS ADD_GENERATION_PROMPT(0|1) NOW [ROLE CONTENT]...
   NOW: strftime_now's clock in seconds since 1970 UTC.
   Writes the rendered text to stdout. Exit codes: 0 rendered, 3 the template
   called raise_exception (its message on stderr), 4 outside the subset or
   another template error (message on stderr), 1 other errors, 2 usage. */
#include "q4k.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    char *p = NULL;
    size_t n = 0, cap = 0, got;
    if (!f) return NULL;
    do {
        if (n + 4096 + 1 > cap) {
            char *q = (char *)realloc(p, cap = 2 * (n + 4096 + 1));
            if (!q) { free(p); fclose(f); return NULL; }
            p = q;
        }
        got = fread(p + n, 1, 4096, f);
        n += got;
    } while (got == 4096);
    fclose(f);
    p[n] = 0;
    return p;
}

int main(int argc, char **argv) {
    q4k_chat_render_desc d;
    q4k_chat_msg msgs[64];
    q4k_error err;
    q4k_result r;
    char *tmpl, *out = NULL;
    int i, n = 0;
    if (argc < 6 || (argc - 6) % 2 || (argc - 6) / 2 > 64) {
        fprintf(stderr, "usage: tool_chat_template TEMPLATE BOS EOS ADD_GEN NOW [ROLE CONTENT]...\n");
        return 2;
    }
    tmpl = read_all(argv[1]);
    if (!tmpl) {
        fprintf(stderr, "tool_chat_template: cannot read %s\n", argv[1]);
        return 1;
    }
    memset(&d, 0, sizeof d);
    d.bos_token = argv[2];
    d.eos_token = argv[3];
    d.add_generation_prompt = atoi(argv[4]);
    d.now = (int64_t)strtoll(argv[5], NULL, 10);
    for (i = 6; i + 1 < argc; i += 2, n++) {
        msgs[n].role = argv[i];
        msgs[n].content = argv[i + 1];
    }
    r = q4k_chat_render(tmpl, msgs, n, &d, &out, &err);
    free(tmpl);
    if (r != Q4K_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return r == Q4K_ERR_INVALID_ARG ? 3 : r == Q4K_ERR_UNSUPPORTED ? 4 : 1;
    }
    fwrite(out, 1, strlen(out), stdout);
    q4k_free(out);
    return 0;
}
