/* tool_tokenize: tokenize texts with the Qwen vocabulary of a .tiktoken
   file, or with the vocabulary of a GGUF file, for tests written in other
   languages (tests/test_tokenizer_py.py, tests/test_tokenizer_spm_py.py).

   usage: build/tool_tokenize [--pre qwen2|llama-bpe|gpt2] [--special] [--bos] VOCAB.tiktoken
          build/tool_tokenize [--special] [--bos] VOCAB.gguf

   A .gguf file's tokenizer.ggml.* keys make the tokenizer, as
   q4k_tokenizer_from_gguf reads them (--pre does not apply).

   The vocabulary is the file's tokens (id = rank) followed by Qwen's 22
   special tokens (151643 <|endoftext|> ... 151664 <|file_sep|>) as CONTROL
   tokens; BOS is <|endoftext|>, added by --bos. stdin holds records: a
   little-endian u32 byte count, then the bytes of one text. For each record
   stdout gets one line: the ids separated by spaces. Exit 1 on errors. */
#include "q4k.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static const char *const specials[] = {
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>",
    "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"};
#define N_SPECIAL ((int64_t)(sizeof specials / sizeof specials[0]))

static int usage(void) {
    fprintf(stderr, "usage: tool_tokenize [--pre qwen2|llama-bpe|gpt2] [--special] [--bos] VOCAB.tiktoken|VOCAB.gguf "
                    "< records\n");
    return 2;
}

int main(int argc, char **argv) {
    const char *path = NULL, *pre = "qwen2";
    unsigned flags = 0;
    q4k_vocab_strings v;
    q4k_vocab_desc d;
    q4k_tokenizer *tok;
    q4k_error err;
    const char **tokens;
    int32_t *types, *ids = NULL;
    int64_t i, ids_cap = 0;
    char *text = NULL;
    size_t text_cap = 0;
    int a;
    for (a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--pre") && a + 1 < argc) pre = argv[++a];
        else if (!strcmp(argv[a], "--special")) flags |= Q4K_TOKENIZE_SPECIAL;
        else if (!strcmp(argv[a], "--bos")) flags |= Q4K_TOKENIZE_ADD_BOS;
        else if (argv[a][0] == '-') return usage();
        else if (!path) path = argv[a];
        else return usage();
    }
    if (!path) return usage();
    memset(&v, 0, sizeof v);
    tokens = NULL;
    types = NULL;
    if (strlen(path) > 5 && !strcmp(path + strlen(path) - 5, ".gguf")) {
        q4k_gguf *g;
        if (q4k_gguf_open_file(path, NULL, &g, &err) != Q4K_OK || q4k_tokenizer_from_gguf(g, &tok, &err) != Q4K_OK) {
            fprintf(stderr, "tool_tokenize: %s\n", err.msg);
            return 1;
        }
        q4k_gguf_close(g);
        goto run;
    }
    if (q4k_vocab_from_tiktoken(path, &v, &err) != Q4K_OK) {
        fprintf(stderr, "tool_tokenize: %s\n", err.msg);
        return 1;
    }
    tokens = (const char **)malloc((size_t)(v.n_tokens + N_SPECIAL) * sizeof *tokens);
    types = (int32_t *)malloc((size_t)(v.n_tokens + N_SPECIAL) * sizeof *types);
    if (!tokens || !types) return 1;
    for (i = 0; i < v.n_tokens; i++) {
        tokens[i] = v.tokens[i];
        types[i] = Q4K_TOKEN_NORMAL;
    }
    for (i = 0; i < N_SPECIAL; i++) {
        tokens[v.n_tokens + i] = specials[i];
        types[v.n_tokens + i] = Q4K_TOKEN_CONTROL;
    }
    memset(&d, 0, sizeof d);
    d.n_tokens = v.n_tokens + N_SPECIAL;
    d.tokens = tokens;
    d.token_types = types;
    d.n_merges = v.n_merges;
    d.merges = (const char *const *)v.merges;
    d.pre = pre;
    d.set_ids = 1;
    d.bos_id = (int32_t)v.n_tokens;
    d.eos_id = (int32_t)v.n_tokens + 2;
    d.eot_id = -1;
    d.pad_id = -1;
    d.add_bos = 1;
    if (q4k_tokenizer_create(&d, &tok, &err) != Q4K_OK) {
        fprintf(stderr, "tool_tokenize: %s\n", err.msg);
        return 1;
    }
run:
    for (;;) {
        unsigned char h[4];
        size_t len;
        int64_t n;
        q4k_result rc;
        size_t got = fread(h, 1, 4, stdin);
        if (got == 0) break;
        if (got != 4) {
            fprintf(stderr, "tool_tokenize: truncated record header\n");
            return 1;
        }
        len = (size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16 | (size_t)h[3] << 24;
        if (len + 1 > text_cap) {
            text_cap = len + 1;
            text = (char *)realloc(text, text_cap);
            if (!text) return 1;
        }
        if (fread(text, 1, len, stdin) != len) {
            fprintf(stderr, "tool_tokenize: truncated record\n");
            return 1;
        }
        rc = q4k_tokenize(tok, text, len, flags, ids, ids_cap, &n, &err);
        if ((rc == Q4K_OK || rc == Q4K_ERR_OVERFLOW) && n > ids_cap) { /* first call, or a longer text */
            ids_cap = n + 64;
            ids = (int32_t *)realloc(ids, (size_t)ids_cap * sizeof *ids);
            if (!ids) return 1;
            rc = q4k_tokenize(tok, text, len, flags, ids, ids_cap, &n, &err);
        }
        if (rc != Q4K_OK) {
            fprintf(stderr, "tool_tokenize: %s\n", err.msg);
            return 1;
        }
        for (i = 0; i < n; i++) printf(i ? " %ld" : "%ld", (long)ids[i]);
        printf("\n");
    }
    q4k_tokenizer_free(tok);
    q4k_vocab_strings_free(&v);
    free(tokens);
    free(types);
    free(ids);
    free(text);
    return fflush(stdout) == 0 ? 0 : 1;
}
