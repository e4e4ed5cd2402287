/* tool_formats - the block formats of q4k.h as a filter, for oracle tests.

     build/tool_formats dequant TYPE < blocks > floats
     build/tool_formats quant TYPE < floats > blocks
     build/tool_formats types

   TYPE is a ggml type name (F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q4_K, Q5_K,
   Q6_K). Floats are raw little-endian float32, blocks raw ggml bytes; the
   whole input is one row. `types` prints "NAME ID BLOCK_SIZE TYPE_SIZE" for
   the types q4k can dequantize. Exit codes: 0 ok, 1 error, 2 usage. */
#include "q4k.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(void) {
    fprintf(stderr, "usage: tool_formats dequant TYPE < blocks > floats\n"
                    "       tool_formats quant TYPE < floats > blocks\n"
                    "       tool_formats types\n");
    return 2;
}

static unsigned char *read_all(FILE *f, size_t *size) {
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = (unsigned char *)malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        {
            unsigned char *more = (unsigned char *)realloc(buf, cap * 2);
            if (!more) { free(buf); return NULL; }
            buf = more;
            cap *= 2;
        }
    }
    if (buf && ferror(f)) { free(buf); return NULL; }
    *size = n;
    return buf;
}

static int find_type(const char *name) {
    int t;
    for (t = 0; t < Q4K_TYPE_COUNT; t++)
        if (!strcmp(q4k_type_name(t), name)) return t;
    return -1;
}

int main(int argc, char **argv) {
    unsigned char *in, *out;
    size_t size, out_size;
    q4k_type_info ti;
    int64_t n;
    int t, rc = 0;
    if (argc == 2 && !strcmp(argv[1], "types")) {
        for (t = 0; t < Q4K_TYPE_COUNT; t++) {
            ti = q4k_type_traits(t);
            if (ti.implemented) printf("%s %d %lld %zu\n", ti.name, t, (long long)ti.block_size, ti.type_size);
        }
        return 0;
    }
    if (argc != 3 || (strcmp(argv[1], "dequant") && strcmp(argv[1], "quant"))) return usage();
    t = find_type(argv[2]);
    if (t < 0) {
        fprintf(stderr, "tool_formats: unknown type '%s'\n", argv[2]);
        return 2;
    }
    ti = q4k_type_traits(t);
    in = read_all(stdin, &size);
    if (!in) {
        fprintf(stderr, "tool_formats: cannot read stdin\n");
        return 1;
    }
    if (!strcmp(argv[1], "dequant")) {
        q4k_result r;
        if (size % ti.type_size) {
            fprintf(stderr, "tool_formats: %zu bytes is not a whole number of %s blocks (%zu bytes)\n", size, ti.name,
                    ti.type_size);
            free(in);
            return 1;
        }
        n = (int64_t)(size / ti.type_size) * ti.block_size;
        out_size = (size_t)n * sizeof(float);
        out = (unsigned char *)malloc(out_size ? out_size : 1);
        r = out ? q4k_dequantize_row((q4k_type)t, in, (float *)out, n) : Q4K_ERR_OUT_OF_MEMORY;
        if (r != Q4K_OK) {
            fprintf(stderr, "tool_formats: dequantize %s: %s\n", ti.name, q4k_result_string(r));
            rc = 1;
        }
    } else {
        float *x;
        if (size % (sizeof(float) * (size_t)ti.block_size)) {
            fprintf(stderr, "tool_formats: %zu bytes is not a whole number of %s blocks (%lld floats)\n", size,
                    ti.name, (long long)ti.block_size);
            free(in);
            return 1;
        }
        n = (int64_t)(size / sizeof(float));
        x = (float *)malloc(size ? size : 1); /* aligned copy of the input */
        out_size = q4k_row_size((q4k_type)t, n);
        out = (unsigned char *)malloc(out_size ? out_size : 1);
        if (!x || !out) {
            fprintf(stderr, "tool_formats: out of memory\n");
            rc = 1;
        } else {
            memcpy(x, in, size);
            if (n > 0 && q4k_quantize_row((q4k_type)t, x, out, n) != out_size) {
                fprintf(stderr, "tool_formats: q4k has no quantizer for %s\n", ti.name);
                rc = 1;
            }
        }
        free(x);
    }
    if (rc == 0 && out_size && fwrite(out, 1, out_size, stdout) != out_size) {
        fprintf(stderr, "tool_formats: write failed\n");
        rc = 1;
    }
    free(in);
    free(out);
    return rc;
}
