/* Block formats: dequantizers against hand-computed blocks, fp16/bf16
   conversions, quantizer round trips and error bounds. */
#define Q4K_IMPLEMENTATION
#include "q4k.h"
#include "t.h"

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v & 0xFF); p[1] = (uint8_t)(v >> 8); }

static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

/* ---- dequantizers on hand-built blocks ---------------------------------- */

static void test_dequant_q4_0(void) {
    uint8_t b[18] = {0};
    float y[32];
    int i;
    put16(b, 0x3800); /* d = 0.5 */
    b[2 + 0] = 0x1F;  /* y[0] = (15-8)/2, y[16] = (1-8)/2 */
    b[2 + 15] = 0x80; /* y[15] = (0-8)/2, y[31] = 0 */
    b[2 + 7] = 0x9C;  /* y[7] = (12-8)/2, y[23] = (9-8)/2 */
    T_CHECK(q4k_dequantize_row(Q4K_TYPE_Q4_0, b, y, 32) == Q4K_OK, "status");
    T_CHECK(y[0] == 3.5f && y[16] == -3.5f, "%g %g", y[0], y[16]);
    T_CHECK(y[15] == -4.0f && y[31] == 0.0f, "%g %g", y[15], y[31]);
    T_CHECK(y[7] == 2.0f && y[23] == 0.5f, "%g %g", y[7], y[23]);
    for (i = 0; i < 32; i++)
        if (i != 0 && i != 16 && i != 15 && i != 31 && i != 7 && i != 23) T_CHECK(y[i] == -4.0f, "y[%d] = %g", i, y[i]);
}

static void test_dequant_q5_0(void) {
    uint8_t b[22] = {0};
    float y[32];
    int i;
    put16(b, 0x3400);   /* d = 0.25 */
    b[2] = 0x01;        /* qh bit 0 */
    b[4] = 0x02;        /* qh bit 17 */
    b[5] = 0x80;        /* qh bit 31 */
    b[6 + 0] = 0x3F;    /* y[0] = (15|16)-16 = 15, y[16] = 3-16 */
    b[6 + 1] = 0x21;    /* y[1] = 1-16, y[17] = (2|16)-16 = 2 */
    b[6 + 15] = 0xF0;   /* y[15] = -16, y[31] = (15|16)-16 = 15 */
    T_CHECK(q4k_dequantize_row(Q4K_TYPE_Q5_0, b, y, 32) == Q4K_OK, "status");
    T_CHECK(y[0] == 3.75f && y[16] == -3.25f, "%g %g", y[0], y[16]);
    T_CHECK(y[1] == -3.75f && y[17] == 0.5f, "%g %g", y[1], y[17]);
    T_CHECK(y[15] == -4.0f && y[31] == 3.75f, "%g %g", y[15], y[31]);
    for (i = 2; i < 15; i++) T_CHECK(y[i] == -4.0f && y[i + 16] == -4.0f, "y[%d] = %g", i, y[i]);
}

static void test_dequant_q8_0(void) {
    uint8_t b[2 * 34] = {0};
    float y[64];
    put16(b, 0x4000);       /* block 0: d = 2 */
    b[2] = 0x80;            /* -128 */
    b[3] = 0x7F;            /* 127 */
    b[33] = 0xFF;           /* -1 */
    put16(b + 34, 0xB400);  /* block 1: d = -0.25 */
    b[34 + 2] = 0x05;
    b[34 + 33] = 0x80;
    T_CHECK(q4k_dequantize_row(Q4K_TYPE_Q8_0, b, y, 64) == Q4K_OK, "status");
    T_CHECK(y[0] == -256.0f && y[1] == 254.0f && y[2] == 0.0f && y[31] == -2.0f, "%g %g %g %g", y[0], y[1], y[2], y[31]);
    T_CHECK(y[32] == -1.25f && y[63] == 32.0f && y[40] == 0.0f, "%g %g %g", y[32], y[63], y[40]);
}

/* scales and mins chosen so that every 6-bit value uses both of its top
   bits somewhere and the j >= 4 half needs the spare bits of bytes 0-7 */
static const int k_sc[8] = {1, 2, 3, 4, 33, 45, 60, 63};
static const int k_m[8] = {5, 6, 7, 8, 50, 17, 36, 62};
/* the same, packed by hand (see the comment in the test) */
static const uint8_t k_scales[12] = {0x81, 0x82, 0xC3, 0xC4, 0xC5, 0x46, 0x87, 0xC8, 0x21, 0x1D, 0x4C, 0xEF};

static void test_dequant_q4_K(void) {
    /* s0..3 = sc0..3 | top2(sc4..7) << 6: 1|2<<6, 2|2<<6, 3|3<<6, 4|3<<6
       s4..7 = m0..3  | top2(m4..7) << 6:  5|3<<6, 6|1<<6, 7|2<<6, 8|3<<6
       s8..11 = low4(sc4..7) | low4(m4..7) << 4: 1|2<<4, 13|1<<4, 12|4<<4, 15|14<<4 */
    uint8_t b[144] = {0};
    float y[256];
    int s, l, bad = 0;
    put16(b, 0x3400);     /* d = 0.25 */
    put16(b + 2, 0x3800); /* dmin = 0.5 */
    memcpy(b + 4, k_scales, 12);
    for (l = 0; l < 128; l++) b[16 + l] = (uint8_t)((l % 16) | (15 - (l * 7) % 16) << 4);
    T_CHECK(q4k_dequantize_row(Q4K_TYPE_Q4_K, b, y, 256) == Q4K_OK, "status");
    for (s = 0; s < 8; s++)
        for (l = 0; l < 32; l++) {
            int byte = 32 * (s / 2) + l;
            int q = (s % 2 == 0) ? byte % 16 : 15 - (byte * 7) % 16;
            float want = 0.25f * (float)k_sc[s] * (float)q - 0.5f * (float)k_m[s];
            if (y[32 * s + l] != want && bad++ < 5)
                T_CHECK(0, "sub-block %d value %d: got %g want %g", s, l, y[32 * s + l], want);
        }
    T_CHECK(bad == 0, "%d values wrong", bad);
    /* two literal values: sub-block 5 (sc 45, m 17), high nibble of byte 64+3 */
    T_CHECK(y[5 * 32 + 3] == 0.25f * 45 * (15 - (67 * 7) % 16) - 8.5f, "%g", y[5 * 32 + 3]);
    T_CHECK(y[0] == -2.5f, "sub-block 0 value 0: %g", y[0]);
}

static void test_dequant_q5_K(void) {
    uint8_t b[176] = {0};
    float y[256];
    int s, l, bad = 0;
    put16(b, 0xB400);     /* d = -0.25 */
    put16(b + 2, 0x3C00); /* dmin = 1 */
    memcpy(b + 4, k_scales, 12);
    for (l = 0; l < 32; l++) b[16 + l] = (uint8_t)(((l * 37) >> 2) & 0xFF);
    for (l = 0; l < 128; l++) b[48 + l] = (uint8_t)((l * 5 + 3) % 16 | ((l * 11) % 16) << 4);
    T_CHECK(q4k_dequantize_row(Q4K_TYPE_Q5_K, b, y, 256) == Q4K_OK, "status");
    for (s = 0; s < 8; s++)
        for (l = 0; l < 32; l++) {
            int byte = 32 * (s / 2) + l;
            int q = (s % 2 == 0) ? (byte * 5 + 3) % 16 : (byte * 11) % 16;
            int hbit = ((((l * 37) >> 2) & 0xFF) >> s) & 1;
            float want = -0.25f * (float)k_sc[s] * (float)(q + 16 * hbit) - 1.0f * (float)k_m[s];
            if (y[32 * s + l] != want && bad++ < 5)
                T_CHECK(0, "sub-block %d value %d: got %g want %g", s, l, y[32 * s + l], want);
        }
    T_CHECK(bad == 0, "%d values wrong", bad);
    /* sub-block 7, value 31: qh[31] = (31*37)>>2 = 286 -> 0x1E, bit 7 = 0;
       q = high nibble of byte 127 = (127*11)%16 = 5; sc 63, m 62 */
    T_CHECK(y[255] == -0.25f * 63 * 5 - 62.0f, "%g", y[255]);
}

static void test_dequant_q6_K(void) {
    /* layout: ql[128] qh[64] scales[16] d; all quants zero (q = -32) except: */
    uint8_t b[210] = {0};
    float y[256], want[256];
    int i, bad = 0;
    for (i = 0; i < 16; i++) b[192 + i] = (uint8_t)(int8_t)(2 * i - 15);
    put16(b + 208, 0x3800); /* d = 0.5 */
    for (i = 0; i < 256; i++) want[i] = 0.5f * (float)(2 * (i / 16) - 15) * -32.0f;
    b[0] = 0x5A; b[128 + 0] = 0xE4;        /* qh bits 0-1 = 0, 2-3 = 1, 4-5 = 2, 6-7 = 3 */
    want[0] = 0.5f * -15 * (10 - 32);      /* low nibble of ql[0], qh bits 0-1 */
    want[32] = 0.5f * -11 * (16 - 32);     /* low nibble of ql[32] (0), qh bits 2-3 */
    want[64] = 0.5f * -7 * (5 + 32 - 32);  /* high nibble of ql[0], qh bits 4-5 */
    want[96] = 0.5f * -3 * (48 - 32);      /* high nibble of ql[32], qh bits 6-7 */
    b[49] = 0xC3;                          /* ql[32+17]: values 49 and 113 */
    want[49] = 0.5f * -9 * (3 - 32);
    want[113] = 0.5f * -1 * (12 - 32);
    b[69] = 0xF0; b[128 + 37] = 0x1B;      /* second half, l = 5; qh = 3,2,1,0 */
    want[133] = 0.5f * 1 * (48 - 32);
    want[165] = 0.5f * 5 * (32 - 32);
    want[197] = 0.5f * 9 * (31 - 32);
    want[229] = 0.5f * 13 * (0 - 32);
    T_CHECK(q4k_dequantize_row(Q4K_TYPE_Q6_K, b, y, 256) == Q4K_OK, "status");
    for (i = 0; i < 256; i++)
        if (!same_bits(y[i], want[i]) && bad++ < 5) T_CHECK(0, "value %d: got %g want %g", i, y[i], want[i]);
    T_CHECK(bad == 0, "%d values wrong", bad);
}

static void test_dequant_float_types(void) {
    uint8_t h[10], bf[4], f[8];
    float y[5], one = 1.0f, m = -0.375f;
    put16(h, 0x3C00); put16(h + 2, 0xC000); put16(h + 4, 0x0001); put16(h + 6, 0x7BFF); put16(h + 8, 0xFC00);
    T_CHECK(q4k_dequantize_row(Q4K_TYPE_F16, h, y, 5) == Q4K_OK, "status");
    T_CHECK(y[0] == 1.0f && y[1] == -2.0f && y[2] == ldexpf(1.0f, -24) && y[3] == 65504.0f && isinf(y[4]) && y[4] < 0,
            "%g %g %g %g %g", y[0], y[1], y[2], y[3], y[4]);
    put16(bf, 0x3F80); put16(bf + 2, 0xC040);
    T_CHECK(q4k_dequantize_row(Q4K_TYPE_BF16, bf, y, 2) == Q4K_OK, "status");
    T_CHECK(y[0] == 1.0f && y[1] == -3.0f, "%g %g", y[0], y[1]);
    memcpy(f, &one, 4); memcpy(f + 4, &m, 4);
    T_CHECK(q4k_dequantize_row(Q4K_TYPE_F32, f, y, 2) == Q4K_OK, "status");
    T_CHECK(y[0] == 1.0f && y[1] == -0.375f, "%g %g", y[0], y[1]);
}

/* a row of several blocks is the blocks one after another, for every type */
static void test_dequant_rows(void) {
    static const q4k_type types[] = {Q4K_TYPE_F16, Q4K_TYPE_BF16, Q4K_TYPE_Q4_0, Q4K_TYPE_Q5_0, Q4K_TYPE_Q8_0,
                                     Q4K_TYPE_Q4_K, Q4K_TYPE_Q5_K, Q4K_TYPE_Q6_K};
    uint8_t buf[4 * 210];
    float row[4 * 256], one[256];
    t_rng r = {0x1234567ULL};
    size_t t;
    for (t = 0; t < sizeof types / sizeof types[0]; t++) {
        q4k_type_info ti = q4k_type_traits(types[t]);
        int64_t bs = ti.block_size == 1 ? 64 : ti.block_size, k, i;
        size_t i2;
        for (i2 = 0; i2 < sizeof buf; i2++) buf[i2] = (uint8_t)t_rng_next(&r);
        if (ti.block_size > 1) /* finite scales: fp16 d in [-2, 2] where the type keeps them */
            for (k = 0; k < 4; k++) {
                uint8_t *blk = buf + (size_t)k * ti.type_size;
                uint16_t d = (uint16_t)(0x2000 + t_rng_next(&r) % 0x1C00) | (uint16_t)((t_rng_next(&r) & 1) << 15);
                if (types[t] == Q4K_TYPE_Q6_K) put16(blk + 208, d);
                else put16(blk, d);
                if (types[t] == Q4K_TYPE_Q4_K || types[t] == Q4K_TYPE_Q5_K) put16(blk + 2, (uint16_t)(d ^ 0x0155));
            }
        T_CHECK(q4k_dequantize_row(types[t], buf, row, 4 * bs) == Q4K_OK, "%s row", ti.name);
        for (k = 0; k < 4; k++) {
            T_CHECK(q4k_dequantize_row(types[t], buf + q4k_row_size(types[t], k * bs), one, bs) == Q4K_OK, "block");
            for (i = 0; i < bs; i++)
                T_CHECK(same_bits(one[i], row[k * bs + i]), "%s block %d value %d", ti.name, (int)k, (int)i);
        }
        if (ti.block_size > 1)
            for (i = 0; i < 4 * bs; i++) T_CHECK(!isnan(row[i]), "%s value %d is NaN", ti.name, (int)i);
    }
    (void)t_rng_gauss;
    (void)t_quick;
}

static void test_dequant_errors(void) {
    uint8_t b[512] = {0};
    float y[512];
    T_CHECK(q4k_dequantize_row(Q4K_TYPE_Q4_0, b, y, 31) == Q4K_ERR_INVALID_ARG, "n = 31");
    T_CHECK(q4k_dequantize_row(Q4K_TYPE_Q8_0, b, y, -32) == Q4K_ERR_INVALID_ARG, "n < 0");
    T_CHECK(q4k_dequantize_row(Q4K_TYPE_Q4_K, b, y, 128) == Q4K_ERR_INVALID_ARG, "n = 128");
    T_CHECK(q4k_dequantize_row(Q4K_TYPE_Q6_K, b, y, 288) == Q4K_ERR_INVALID_ARG, "n = 288");
    T_CHECK(q4k_dequantize_row(Q4K_TYPE_Q4_1, b, y, 32) == Q4K_ERR_UNSUPPORTED_TYPE, "Q4_1");
    T_CHECK(q4k_dequantize_row(Q4K_TYPE_Q2_K, b, y, 256) == Q4K_ERR_UNSUPPORTED_TYPE, "Q2_K");
    T_CHECK(q4k_dequantize_row((q4k_type)99, b, y, 32) == Q4K_ERR_UNSUPPORTED_TYPE, "99");
    T_CHECK(q4k_dequantize_row(Q4K_TYPE_Q4_0, NULL, y, 32) == Q4K_ERR_INVALID_ARG, "NULL src");
    T_CHECK(q4k_dequantize_row(Q4K_TYPE_Q4_0, b, y, 0) == Q4K_OK, "n = 0");
}

int main(void) {
    T_RUN(test_dequant_q4_0);
    T_RUN(test_dequant_q5_0);
    T_RUN(test_dequant_q8_0);
    T_RUN(test_dequant_q4_K);
    T_RUN(test_dequant_q5_K);
    T_RUN(test_dequant_q6_K);
    T_RUN(test_dequant_float_types);
    T_RUN(test_dequant_rows);
    T_RUN(test_dequant_errors);
    T_EXIT();
}
