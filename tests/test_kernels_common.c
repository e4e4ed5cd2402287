/* kernels_src/q4k_common.h (the GPU kernels' copy of the block layouts and
   of the activation scheme) agrees with q4k.h: every field at the same
   offset with the same size, and the same activation bytes. */
#include "q4k.h"
#include "t.h"
#include "../kernels_src/q4k_common.h"

#include <stddef.h>

#define SAME_FIELD(host, kern, f)                                                                     \
    T_CHECK(offsetof(host, f) == offsetof(kern, f) && sizeof(((host *)0)->f) == sizeof(((kern *)0)->f), \
            #kern "." #f ": offset %zu/%zu size %zu/%zu", offsetof(host, f), offsetof(kern, f),          \
            sizeof(((host *)0)->f), sizeof(((kern *)0)->f))

static void test_layouts(void) {
    T_CHECK(sizeof(block_q4_0) == sizeof(q4k_block_q4_0) && sizeof(block_q5_0) == sizeof(q4k_block_q5_0) &&
            sizeof(block_q8_0) == sizeof(q4k_block_q8_0) && sizeof(block_q4_K) == sizeof(q4k_block_q4_K) &&
            sizeof(block_q5_K) == sizeof(q4k_block_q5_K) && sizeof(block_q6_K) == sizeof(q4k_block_q6_K) &&
            sizeof(block_q8a) == sizeof(q4k_block_q8a), "block sizes differ");
    T_CHECK(QK == Q4K_QK && QK_K == Q4K_QK_K, "block lengths differ");
    SAME_FIELD(q4k_block_q4_0, block_q4_0, d);
    SAME_FIELD(q4k_block_q4_0, block_q4_0, qs);
    SAME_FIELD(q4k_block_q5_0, block_q5_0, d);
    SAME_FIELD(q4k_block_q5_0, block_q5_0, qh);
    SAME_FIELD(q4k_block_q5_0, block_q5_0, qs);
    SAME_FIELD(q4k_block_q8_0, block_q8_0, d);
    SAME_FIELD(q4k_block_q8_0, block_q8_0, qs);
    SAME_FIELD(q4k_block_q4_K, block_q4_K, d);
    SAME_FIELD(q4k_block_q4_K, block_q4_K, dmin);
    SAME_FIELD(q4k_block_q4_K, block_q4_K, scales);
    SAME_FIELD(q4k_block_q4_K, block_q4_K, qs);
    SAME_FIELD(q4k_block_q5_K, block_q5_K, d);
    SAME_FIELD(q4k_block_q5_K, block_q5_K, dmin);
    SAME_FIELD(q4k_block_q5_K, block_q5_K, scales);
    SAME_FIELD(q4k_block_q5_K, block_q5_K, qh);
    SAME_FIELD(q4k_block_q5_K, block_q5_K, qs);
    SAME_FIELD(q4k_block_q6_K, block_q6_K, ql);
    SAME_FIELD(q4k_block_q6_K, block_q6_K, qh);
    SAME_FIELD(q4k_block_q6_K, block_q6_K, scales);
    SAME_FIELD(q4k_block_q6_K, block_q6_K, d);
    SAME_FIELD(q4k_block_q8a, block_q8a, d);
    SAME_FIELD(q4k_block_q8a, block_q8a, sum);
    SAME_FIELD(q4k_block_q8a, block_q8a, qs);
}

/* random blocks of several scales, ties (x*id exactly k + 0.5), zeros */
static void test_activation_scheme(void) {
    t_rng r = {12345};
    int64_t nb = t_quick() ? 2000 : 20000, b, i, diff = 0;
    float *x = (float *)malloc((size_t)nb * QK * sizeof(float));
    q4k_block_q8a *host = (q4k_block_q8a *)malloc((size_t)nb * sizeof *host);
    block_q8a kern;
    for (b = 0; b < nb; b++) {
        double scale = pow(10.0, (double)(b % 9) - 4.0);
        for (i = 0; i < QK; i++) x[b * QK + i] = (float)(t_rng_gauss(&r) * scale);
        if (b % 7 == 1) /* ties: 127 at one place, halves elsewhere */
            for (i = 0; i < QK; i++) x[b * QK + i] = i == 0 ? 127.0f : (float)((int)(i % 11) - 5) + 0.5f;
        if (b % 13 == 2)
            for (i = 0; i < QK; i++) x[b * QK + i] = 0.0f;
    }
    q4k_quantize_act_q8(x, host, nb * QK);
    for (b = 0; b < nb; b++) {
        q4k_quantize_q8a_block(x + b * QK, &kern);
        if (memcmp(&kern, &host[b], sizeof kern)) {
            if (diff < 3) printf("  block %lld differs (d %g / %g)\n", (long long)b, (double)kern.d, (double)host[b].d);
            diff++;
        }
    }
    T_CHECK(diff == 0, "%lld of %lld blocks differ", (long long)diff, (long long)nb);
    /* the tie block rounds halves to even: 0.5 -> 0, 1.5 -> 2, -4.5 -> -4 */
    q4k_quantize_q8a_block(x + 1 * QK, &kern);
    T_CHECK(kern.d == 1.0f && kern.qs[0] == 127, "tie block scale %g", (double)kern.d);
    for (i = 1; i < QK; i++) {
        double v = (double)((int)(i % 11) - 5) + 0.5;
        double want = fmod(floor(v), 2.0) == 0 ? floor(v) : floor(v) + 1; /* the even neighbour */
        T_CHECK(kern.qs[i] == (int)want, "value %g rounds to %d, not %d", v, kern.qs[i], (int)want);
    }
    free(x);
    free(host);
}

int main(void) {
    T_RUN(test_layouts);
    T_RUN(test_activation_scheme);
    T_EXIT();
}
