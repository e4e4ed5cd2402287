/* Chat templates: the Jinja subset (q4k_chat_render) on hand-checked
   cases, every template in tests/data/templates/ (run under ASan too), the
   errors and bounds, strftime_now, the built-in formats and the template
   guess. tests/test_chat_template_py.py compares against jinja2 itself. */
#include "q4k.h"
#include <stdlib.h>
#include <string.h>
#include "t.h"

#define DS_USER "<\xEF\xBD\x9CUser\xEF\xBD\x9C>"
#define DS_ASSISTANT "<\xEF\xBD\234Assistant\xEF\xBD\x9C>"
#define DS_EOS "<\xEF\xBD\234end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>"
#define DS_BOS "<\xEF\xBD\234begin\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>"

static char *read_template(const char *name) {
    char path[512];
    size_t n;
    char *p;
    snprintf(path, sizeof path, "tests/data/templates/%s", name);
    p = (char *)t_read_file(path, &n);
    if (p) p[n] = 0; /* t_read_file leaves room for it */
    return p;
}

/* render; returns the code, *out (caller frees with q4k_free) on success */
static q4k_result render(const char *tmpl, const q4k_chat_msg *m, int64_t n, int add_gen, char **out, q4k_error *err) {
    q4k_chat_render_desc d;
    memset(&d, 0, sizeof d);
    d.bos_token = "<B>";
    d.eos_token = "<E>";
    d.add_generation_prompt = add_gen;
    d.now = 1721999109; /* 2024-07-26 13:05:09 UTC */
    return q4k_chat_render(tmpl, m, n, &d, out, err);
}

static void expect(const char *tmpl, const q4k_chat_msg *m, int64_t n, int add_gen, const char *want, const char *what) {
    char *out = NULL;
    q4k_error err;
    q4k_result r = render(tmpl, m, n, add_gen, &out, &err);
    T_CHECK(r == Q4K_OK && out && !strcmp(out, want), "%s: %s -> [%s], want [%s]", what, r ? err.msg : "ok",
            out ? out : "", want);
    q4k_free(out);
}

static void expect_fail(const char *tmpl, q4k_result code, const char *needle, const char *what) {
    q4k_chat_msg m;
    char *out = (char *)"unchanged";
    q4k_error err;
    q4k_result r;
    m.role = "user";
    m.content = "hi";
    r = render(tmpl, &m, 1, 1, &out, &err);
    T_CHECK(r == code && out == NULL && strstr(err.msg, needle), "%s: code %s, message [%s], want %s and [%s]", what,
            q4k_result_name(r), r ? err.msg : "", q4k_result_name(code), needle);
    if (r == Q4K_OK) q4k_free(out);
}

/* DeepSeek-R1-Distill-Qwen's template: the system prompt right after BOS,
   the earlier answer without its reasoning, <think> opening the new one. */
static void test_deepseek_template(void) {
    char *tmpl = read_template("deepseek-r1-distill-qwen.jinja");
    q4k_chat_msg m[4];
    if (!tmpl) T_SKIP("tests/data/templates/deepseek-r1-distill-qwen.jinja not found (run from the repository root)");
    m[0].role = "system"; m[0].content = "Be brief.";
    m[1].role = "user"; m[1].content = "2+2?";
    m[2].role = "assistant"; m[2].content = "<think>\nadd\n</think>\n\n4";
    m[3].role = "user"; m[3].content = "and 3+3?";
    expect(tmpl, m, 4, 1,
           "<B>Be brief." DS_USER "2+2?" DS_ASSISTANT "\n\n4" DS_EOS DS_USER "and 3+3?" DS_ASSISTANT "<think>\n",
           "two turns");
    expect(tmpl, m + 1, 1, 0, "<B>" DS_USER "2+2?", "no generation prompt");
    free(tmpl);
}

/* Every published template renders a plain conversation (under ASan too). */
static void test_all_templates(void) {
    static const char *const names[] = {"qwen2.5-instruct.jinja", "llama-3.1-instruct.jinja", "llama-3.2-instruct.jinja",
                                        "llama-2-chat.jinja", "mistral-7b-instruct-v0.2.jinja",
                                        "mistral-7b-instruct-system.jinja", "deepseek-r1-distill-qwen.jinja"};
    static const q4k_chat_template fam[] = {Q4K_CHAT_CHATML, Q4K_CHAT_LLAMA3, Q4K_CHAT_LLAMA3, Q4K_CHAT_LLAMA2,
                                            Q4K_CHAT_LLAMA2, Q4K_CHAT_LLAMA2, Q4K_CHAT_DEEPSEEK};
    q4k_chat_msg m[3];
    size_t i;
    m[0].role = "user"; m[0].content = "first question";
    m[1].role = "assistant"; m[1].content = "an answer";
    m[2].role = "user"; m[2].content = "second question";
    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
        char *tmpl = read_template(names[i]), *out = NULL;
        q4k_error err;
        q4k_result r;
        if (!tmpl) T_SKIP("tests/data/templates not found (run from the repository root)");
        r = render(tmpl, m, 3, 1, &out, &err);
        T_CHECK(r == Q4K_OK && strstr(out, "first question") && strstr(out, "an answer") && strstr(out, "second question"),
                "%s: %s", names[i], r ? err.msg : out);
        T_CHECK(q4k_chat_template_guess(tmpl) == fam[i], "%s: guessed %d", names[i], (int)q4k_chat_template_guess(tmpl));
        q4k_free(out);
        free(tmpl);
    }
}

/* trim_blocks, lstrip_blocks and - as jinja2 renders them (checked there) */
static void test_whitespace(void) {
    expect("a\n  {% if true %}\n  b\n  {% endif %}\nc", NULL, 0, 0, "a\n  b\nc", "block lines vanish");
    expect("x  {%- if 1 -%}  y  {%- endif %}  z\n", NULL, 0, 0, "xy  z", "- strips, the last newline goes");
    expect("{# c #}\n  {{ 1 }}\n{% set x = 2 %}\n{{ x }}\n", NULL, 0, 0, "  1\n2", "comments and {{ }} keep their indent");
    expect("a\r\nb{{ 'c\\td' }}", NULL, 0, 0, "a\nbc\td", "\\r\\n becomes \\n, string escapes");
}

static void test_values(void) {
    q4k_chat_msg m[2];
    m[0].role = "user"; m[0].content = "  Hello World  ";
    m[1].role = "assistant"; m[1].content = "a,b";
    expect("{{ messages[0].content | trim | upper }}|{{ messages[-1]['content'].split(',') | length }}", m, 2, 0,
           "HELLO WORLD|2", "filters and methods");
    expect("{% set ns = namespace(k=0) %}{% for x in messages %}{% set ns.k = ns.k + loop.index %}{% endfor %}{{ ns.k }}",
           m, 2, 0, "3", "namespace across a loop");
    expect("{{ 7 // 2 }} {{ -7 % 3 }} {{ 'ab' * 2 }} {{ [1, 2][::-1] }} {{ 'h\xC3\xA9llo'[1:3] }} {{ none }} {{ 1.5 }}",
           NULL, 0, 0, "3 2 abab [2, 1] \xC3\xA9l None 1.5", "arithmetic, slices by character, printing");
    expect("{{ add_generation_prompt }} {{ bos_token }}{{ eos_token }} {{ undefined_thing }}.", NULL, 0, 1,
           "True <B><E> .", "globals; undefined prints nothing");
}

static void test_strftime(void) {
    static const struct { int64_t t; const char *want; } cases[] = {
        {951782400, "2000-02-29 Tue Tuesday Feb 060 00:00:00"},
        {-86400 * 365, "1969-01-01 Wed Wednesday Jan 001 00:00:00"},
        {4102444799, "2099-12-31 Thu Thursday Dec 365 23:59:59"},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        q4k_chat_render_desc d;
        char *out = NULL;
        q4k_error err;
        memset(&d, 0, sizeof d);
        d.now = cases[i].t;
        T_CHECK(q4k_chat_render("{{ strftime_now('%Y-%m-%d %a %A %b %j %H:%M:%S') }}", NULL, 0, &d, &out, &err) == Q4K_OK &&
                    !strcmp(out, cases[i].want),
                "t=%lld: [%s], want [%s]", (long long)cases[i].t, out ? out : err.msg, cases[i].want);
        q4k_free(out);
    }
}

static void test_errors(void) {
    char big[4096];
    q4k_chat_render_desc d;
    char *out = NULL;
    q4k_error err;
    int i;
    expect_fail("a\nb\n{% macro m() %}{% endmacro %}", Q4K_ERR_UNSUPPORTED, "line 3: '{% macro %}' is outside", "macro");
    expect_fail("{{ messages | map(attribute='role') }}", Q4K_ERR_UNSUPPORTED, "filter 'map'", "unknown filter");
    expect_fail("{{ 'x'.zfill(3) }}", Q4K_ERR_UNSUPPORTED, "method 'zfill' of a string", "unknown method");
    expect_fail("{{ x is prime }}", Q4K_ERR_UNSUPPORTED, "test 'prime'", "unknown test");
    expect_fail("{% if true %}x", Q4K_ERR_UNSUPPORTED, "not closed with '{% endif %}'", "unclosed if");
    expect_fail("{% endfor %}", Q4K_ERR_UNSUPPORTED, "unexpected '{% endfor %}'", "stray end");
    expect_fail("{{ 1 + }}", Q4K_ERR_UNSUPPORTED, "expected an expression", "syntax");
    expect_fail("{{ 'abc }}", Q4K_ERR_UNSUPPORTED, "not closed", "unclosed string");
    expect_fail("{{ x.y }}", Q4K_ERR_UNSUPPORTED, "'x' is undefined", "attribute of undefined");
    expect_fail("{{ raise_exception('roles must alternate') }}", Q4K_ERR_INVALID_ARG, "raise_exception: roles must alternate",
                "raise_exception");
    expect_fail("{% for i in range(3000) %}{% for j in range(3000) %}{% endfor %}{% endfor %}", Q4K_ERR_UNSUPPORTED,
                "rendering", "runaway loops");
    expect_fail("{{ 'x' * 100000000 }}", Q4K_ERR_UNSUPPORTED, "repeated 100000000 times", "a huge string");
    expect_fail("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
                Q4K_ERR_UNSUPPORTED, "MiB", "a string doubling");
    strcpy(big, "{{ ");
    for (i = 0; i < 300; i++) big[3 + i] = '(';
    big[303] = '1';
    for (i = 0; i < 300; i++) big[304 + i] = ')';
    strcpy(big + 604, " }}");
    expect_fail(big, Q4K_ERR_UNSUPPORTED, "nested more than", "deep nesting");
    memset(&d, 0, sizeof d);
    d.max_output = 100;
    T_CHECK(q4k_chat_render("{% for i in range(50) %}xxxxx{% endfor %}", NULL, 0, &d, &out, &err) == Q4K_ERR_UNSUPPORTED &&
                !out && strstr(err.msg, "longer than 100 bytes"),
            "output limit: %s", err.msg);
    T_CHECK(q4k_chat_render(NULL, NULL, 0, NULL, &out, &err) == Q4K_ERR_INVALID_ARG, "NULL template");
    T_CHECK(q4k_chat_render("x", NULL, 1, NULL, &out, &err) == Q4K_ERR_INVALID_ARG, "messages missing");
}

static void test_builtin_formats(void) {
    q4k_chat_msg m[3];
    q4k_chat_template t = Q4K_CHAT_NONE;
    char *s;
    m[0].role = "system"; m[0].content = "S";
    m[1].role = "user"; m[1].content = "U";
    m[2].role = "assistant"; m[2].content = "A";
    s = q4k_chat_format(Q4K_CHAT_DEEPSEEK, m, 3, 1);
    T_CHECK(s && !strcmp(s, "S" DS_USER "U" DS_ASSISTANT "A" DS_EOS DS_ASSISTANT "<think>\n"), "deepseek: [%s]", s ? s : "");
    q4k_free(s);
    T_CHECK(q4k_chat_template_from_name("deepseek", &t) && t == Q4K_CHAT_DEEPSEEK, "deepseek by name");
    T_CHECK(q4k_chat_template_from_name("chatml", &t) && t == Q4K_CHAT_CHATML, "chatml by name");
    T_CHECK(q4k_chat_template_from_name("none", &t) && t == Q4K_CHAT_NONE, "none by name");
    T_CHECK(!q4k_chat_template_from_name("vicuna", &t) && !q4k_chat_template_from_name(NULL, &t), "unknown names");
    T_CHECK(q4k_chat_template_guess("{{ messages }}") == Q4K_CHAT_NONE, "no markers");
}

/* Mutated templates (bytes changed, dropped, repeated; pieces of Jinja
   syntax spliced in) never crash the interpreter (ASan runs this too): each
   renders or fails with a message. */
static void test_fuzz(void) {
    static const char *const names[] = {"qwen2.5-instruct.jinja", "llama-3.1-instruct.jinja", "deepseek-r1-distill-qwen.jinja",
                                        "llama-2-chat.jinja"};
    static const char *const bits[] = {"{%", "%}", "{{", "}}", "{#", "#}", "-", "(", ")", "[", "]", "'", "\"", "|",
                                       " if ", " for ", " endfor ", " in ", "loop.", "ns.", "[-1]", "[1:]", ".split(",
                                       " is defined", "~", "+", "*", "//", "%", "\\", "\n", "\xC3", "{% set x = ", "{% endif %}"};
    t_rng r;
    q4k_chat_msg m[2];
    int it, n_ok = 0, n_fail = 0, iters = t_quick() ? 600 : 3000;
    r.s = 12345;
    m[0].role = "user"; m[0].content = "q";
    m[1].role = "assistant"; m[1].content = "<think>x</think>a";
    for (it = 0; it < iters; it++) {
        char *base = read_template(names[it % 4]), *mut, *out = NULL;
        size_t n, j, k;
        int edits = 1 + (int)(t_rng_next(&r) % 4), e;
        q4k_error err;
        q4k_result rc;
        if (!base) T_SKIP("tests/data/templates not found (run from the repository root)");
        n = strlen(base);
        mut = (char *)malloc(2 * n + 256);
        memcpy(mut, base, n + 1);
        for (e = 0; e < edits; e++) {
            size_t len = strlen(mut), at = len ? (size_t)(t_rng_next(&r) % len) : 0;
            switch (t_rng_next(&r) % 4) {
            case 0: if (len) mut[at] = (char)(t_rng_next(&r) % 255 + 1); break;
            case 1: k = (size_t)(t_rng_next(&r) % 16); if (at + k > len) k = len - at; memmove(mut + at, mut + at + k, len - at - k + 1); break;
            case 2: {
                const char *b = bits[t_rng_next(&r) % (sizeof bits / sizeof bits[0])];
                size_t bl = strlen(b);
                if (len + bl < 2 * n + 200) { memmove(mut + at + bl, mut + at, len - at + 1); memcpy(mut + at, b, bl); }
                break;
            }
            default:
                k = (size_t)(t_rng_next(&r) % 24);
                if (at + k > len) k = len - at;
                if (len + k < 2 * n + 200) { memmove(mut + at + k, mut + at, len - at + 1); for (j = 0; j < k; j++) mut[at + k + j] = mut[at + j]; }
            }
        }
        rc = render(mut, m, 2, (int)(it & 1), &out, &err);
        if (rc == Q4K_OK) {
            n_ok++;
            T_CHECK(out != NULL, "rendered without output");
        } else {
            n_fail++;
            T_CHECK(!out && err.msg[0] && !strncmp(err.msg, "chat template", 13) &&
                        (rc == Q4K_ERR_UNSUPPORTED || rc == Q4K_ERR_INVALID_ARG),
                    "failure %s: %s", q4k_result_name(rc), err.msg);
        }
        q4k_free(out);
        free(mut);
        free(base);
        if (t__failed_now) break;
    }
    printf("  %d mutated templates: %d rendered, %d refused with a message\n", iters, n_ok, n_fail);
}

int main(void) {
    T_RUN(test_deepseek_template);
    T_RUN(test_all_templates);
    T_RUN(test_whitespace);
    T_RUN(test_values);
    T_RUN(test_strftime);
    T_RUN(test_errors);
    T_RUN(test_builtin_formats);
    T_RUN(test_fuzz);
    T_EXIT();
}
