/* libFuzzer target: the chat-template interpreter (q4k_chat_render) on a
   template and messages. Input: the template text, then optionally a NUL
   and NUL-separated role, content, role, content... (at most 16 messages;
   without a NUL, a system, user and assistant message). The last byte's low
   bit is add_generation_prompt. Checks: a render gives a string within
   max_output; a refusal gives no string, a one-line message naming the
   chat template, and UNSUPPORTED or INVALID_ARG (raise_exception). The step,
   memory and nesting limits must turn every runaway template into a
   refusal, so a hang or an out-of-memory is a defect. */
#include "fuzz.h"

#define GC "chat"
#define FUZZ_MAX_MSGS 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const q4k_chat_msg dflt[3] = {{"system", "Be brief."}, {"user", "Hi <b>"}, {"assistant", "<think>x</think>Hello"}};
    q4k_chat_msg msgs[FUZZ_MAX_MSGS];
    q4k_chat_render_desc d;
    char *buf = (char *)malloc(size + 2), *p, *end, *out = NULL;
    int64_t n = 0;
    q4k_error err;
    q4k_result r;
    memcpy(buf, data, size);
    buf[size] = buf[size + 1] = 0;
    end = buf + size;
    p = buf + strlen(buf);
    if (p == end) {
        memcpy(msgs, dflt, sizeof dflt);
        n = 3;
    } else {
        for (p++; p < end && n < FUZZ_MAX_MSGS; n++) {
            msgs[n].role = p;
            p += strlen(p) + 1;
            msgs[n].content = p < end ? p : "";
            p += p < end ? strlen(p) + 1 : 0;
        }
    }
    memset(&d, 0, sizeof d);
    d.bos_token = "<s>";
    d.eos_token = "</s>";
    d.add_generation_prompt = size ? data[size - 1] & 1 : 0;
    d.now = 1700000000; /* 2023-11-14: renders do not depend on the clock */
    d.max_output = 1 << 16;
    r = q4k_chat_render(buf, msgs, n, &d, &out, &err);
    if (r == Q4K_OK) {
        FUZZ_CHECK(GC, out != NULL && strlen(out) <= d.max_output, "rendered %s", out ? "past max_output" : "no string");
    } else {
        FUZZ_CHECK(GC, out == NULL && FUZZ_ONE_LINE(&err) && !strncmp(err.msg, "chat template", 13) &&
                           (r == Q4K_ERR_UNSUPPORTED || r == Q4K_ERR_INVALID_ARG),
                   "refused with %s: '%s'", q4k_result_name(r), err.msg);
    }
    q4k_free(out);
    free(buf);
    return 0;
}
